// The `sluice` command end to end in-process: plan, explain, errors and exit codes (no OVS needed).
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { main } from '../../src/cli/main.ts';

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => out.push(String(s)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => err.push(String(s)) > 0) as typeof process.stderr.write;
  const saved = process.exitCode;
  try {
    const code = await main(argv);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
    process.exitCode = saved;
  }
}

test('plan prints every pool with its balance', async () => {
  const r = await capture(['plan', '-f', 'examples/lb.yaml']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^web: 256 slots \(k=8\)/m);
  assert.match(r.out, /^api: 256 slots/m);
  assert.match(r.out, /balance: min 64, max 64/);
});

test('plan --from lists the generations of a change: phase 1, phase 2, then second chances dropped', async () => {
  const r = await capture(['plan', '-f', 'examples/lb-change.yaml', '--from', 'examples/lb.yaml', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.ok(j.generations.length >= 3, `expected phased generations, got ${j.generations.length}`);
  const web = (g: { pools: { lb: string; phase: number[] }[] }) => g.pools.find((p) => p.lb === 'web')!;
  assert.ok(
    web(j.generations[1]).phase.some((p: number) => p === 1),
    'generation 2 has phase-1 slots',
  );
  assert.ok(
    web(j.generations[2]).phase.some((p: number) => p === 2),
    'generation 3 has phase-2 slots',
  );
  assert.ok(
    web(j.generations.at(-1)).phase.every((p: number) => p === 0),
    'the last generation is stable',
  );
});

test('explain names slot, primary and host for a hash', async () => {
  const r = await capture([
    'explain',
    '-f',
    'examples/lb.yaml',
    'tcp',
    '10.200.0.11',
    '40000',
    '203.0.113.10',
    '80',
    '--hash',
    '0x1234',
    '--json',
  ]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.lb, 'web');
  assert.equal(j.slot, 0x34);
  assert.ok(j.primary.key.endsWith(':8080'));
});

test('explain of an address no load balancer serves exits 1 and says so', async () => {
  const r = await capture([
    'explain',
    '-f',
    'examples/lb.yaml',
    'tcp',
    '10.200.0.11',
    '1',
    '203.0.113.99',
    '80',
  ]);
  assert.equal(r.code, 1);
  assert.match(r.out, /no load balancer for 203\.0\.113\.99:80\/tcp/);
});

test('a bad config prints every problem with its path and exits 2', async () => {
  const r = await capture(['plan', '-f', 'examples/bad.yaml']);
  assert.equal(r.code, 2);
  assert.match(r.err, /12 problems/);
  assert.match(r.err, /loadBalancers\[0\]\.backends\[0\]\.host: unknown node "host9"/);
  assert.match(r.err, /SLUICE_E_CONFIG_INVALID/);
});

test('bad arguments are usage errors (exit 2), a missing file an I/O error (exit 1)', async () => {
  assert.equal(
    (await capture(['explain', '-f', 'examples/lb.yaml', 'icmp', '1.2.3.4', '1', '203.0.113.10', '80'])).code,
    2,
  );
  assert.equal(
    (await capture(['explain', '-f', 'examples/lb.yaml', 'tcp', 'x', '1', '203.0.113.10', '80'])).code,
    2,
  );
  const missing = await capture(['plan', '-f', 'examples/nope.yaml']);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /SLUICE_E_IO/);
});
