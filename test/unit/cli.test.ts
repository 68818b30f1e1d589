// The `sluice` command end to end in-process: plan, explain, errors and exit codes (no OVS needed).
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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

/** A command line's words (none of the ones here holds a space). */
function words(line: string): string[] {
  return line.split(' ');
}

test('plan prints every pool with its balance', async () => {
  const r = await capture(['plan', '-f', 'examples/lb.yaml']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^web: 256 slots \(k=8\)/m);
  assert.match(r.out, /^api: 256 slots/m);
  assert.match(r.out, /balance: min 64, max 64/);
  // api: weights 1 and 2 over 256 slots: 85 and 171 slots for shares 85.33 and 170.67.
  assert.match(
    r.out,
    /balance: min 85, max 171 \(spread 86\); slots\/share 0\.996\.\.1\.002; max \|slots - share\| 0\.33/,
  );
});

test('plan --from lists the generations of a change: phase 1, phase 2, then second chances dropped', async () => {
  const r = await capture(['plan', '-f', 'examples/lb-change.yaml', '--from', 'examples/lb.yaml', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.ok(j.generations.length >= 3, `expected phased generations, got ${j.generations.length}`);
  const text = await capture(['plan', '-f', 'examples/lb-change.yaml', '--from', 'examples/lb.yaml']);
  assert.match(
    text.out,
    /^generations: 4 \(each published once every gateway acknowledged the previous one;/m,
  );
  assert.match(
    text.out,
    /^ {2}generation 2: web: 64 slots 10\.0\.1\.12:8080 -> 10\.0\.3\.12:8080, phase 1$/m,
  );
  assert.match(
    text.out,
    /^ {2}generation 3: web: 64 slots 10\.0\.1\.12:8080 -> 10\.0\.3\.12:8080, phase 2$/m,
  );
  assert.match(
    text.out,
    /^ {2}generation 4: web: 64 slots on 10\.0\.3\.12:8080, second chance 10\.0\.1\.12:8080 dropped$/m,
  );
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
  const r = await capture(
    words('explain -f examples/lb.yaml tcp 10.200.0.11 40000 203.0.113.10 80 --hash 0x1234 --json'),
  );
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.lb, 'web');
  assert.equal(j.slot, 0x34);
  assert.ok(j.primary.key.endsWith(':8080'));
});

test('explain without --hash computes the gateway hash from the 5-tuple', async () => {
  const args = words('explain -f examples/lb.yaml tcp 198.51.100.7 40000 203.0.113.10 80');
  const r = await capture([...args, '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  // examples/lb.yaml: dp_hash mode; 0x00ffe93e is what ovs-vswitchd 3.1 computed (test/unit/ovs-hash.test.ts).
  assert.equal(j.hash, 0x00ffe93e);
  assert.equal(j.slot, 0x00ffe93e & ((1 << j.bits) - 1));
  assert.match(j.hashHow, /userspace datapath/);
  const k = await capture([...args, '--datapath', 'system']);
  assert.equal(k.code, 1);
  assert.match(k.out, /cannot be known.*random value at boot: use hashMode fields, or pass --hash/);
});

test('explain of an address no load balancer serves exits 1 and says so', async () => {
  const r = await capture(words('explain -f examples/lb.yaml tcp 10.200.0.11 1 203.0.113.99 80'));
  assert.equal(r.code, 1);
  assert.match(r.out, /no load balancer for 203\.0\.113\.99:80\/tcp/);
});

test('a bad config prints every problem with its path and exits 2', async () => {
  const r = await capture(['plan', '-f', 'examples/bad.yaml']);
  assert.equal(r.code, 2);
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines[0], 'sluice: invalid config examples/bad.yaml: 12 problems [SLUICE_E_CONFIG_INVALID]');
  assert.equal(lines.length, 13, r.err);
  assert.match(r.err, /loadBalancers\[0\]\.backends\[0\]\.host: unknown node "host9"/);
  // Each problem the issue names, on its own line with its path and its own code (one code per line).
  for (const [path, code] of [
    ['slotBits', 'SLOT_BITS'],
    ['loadBalancers[0].backends[0].host', 'UNKNOWN_HOST'],
    ['loadBalancers[0].backends[1].port', 'PORT_RANGE'],
    ['loadBalancers[0].backends[3].address', 'FAMILY_MISMATCH'],
    ['loadBalancers[0].backends[5].weight', 'WEIGHT'],
    ['loadBalancers[1].port', 'DUPLICATE_LISTENER'],
  ]) {
    const line = lines.find((l) => l.startsWith(`  ${path}: `));
    assert.ok(line?.endsWith(` [SLUICE_E_CONFIG_${code}]`), `${path}: ${line}`);
  }
  for (const l of lines.slice(1)) assert.equal(l.match(/\[SLUICE_E_/g)?.length, 1, l);
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

test('the executable writes all of a large --json output into a pipe whose reader is slow', async () => {
  // bin.ts used to call process.exit() as soon as main() returned, dropping what the pipe had not taken yet:
  // `sluice plan --json | jq` got the first 64 KiB of ~110 KiB. A real pipe (spawn's own stdio is a socket pair
  // with a larger buffer): the reader takes one byte, which means the writer has issued its write, then waits
  // a second before reading the rest. The process must wait for it instead of exiting.
  const args = ['plan', '-f', 'examples/lb-change.yaml', '--from', 'examples/lb.yaml', '--json'];
  const whole = await capture(args);
  assert.equal(whole.code, 0, whole.err);
  const expected = Buffer.byteLength(whole.out);
  assert.ok(expected > 65536, `only ${expected} bytes: too small to fill a pipe`);
  const cmd =
    `"${process.execPath}" --import tsx src/cli/bin.ts ${args.join(' ')} | ` +
    '{ dd bs=1 count=1 status=none; sleep 1; cat; } | wc -c; exit $PIPESTATUS';
  const child = spawn('bash', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => {
    out += b;
  });
  child.stderr.on('data', (b: Buffer) => {
    err += b;
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(code, 0, err);
  assert.equal(Number(out.trim()), expected, 'bytes that reached the reader');
});

test('rollout status: bad --timeout or --format is a usage error (exit 2) before connecting; no store is exit 1', async () => {
  const t = await capture(words('rollout status --watch --timeout abc --db unix:/nonexistent.sock'));
  assert.equal(t.code, 2);
  assert.match(t.err, /--timeout: expected a number of seconds > 0, got "abc" \[SLUICE_E_USAGE\]/);
  const f = await capture(['rollout', 'status', '--format', 'yaml', '--db', 'unix:/nonexistent.sock']);
  assert.equal(f.code, 2);
  const s = await capture(['rollout', 'status', '--db', 'unix:/nonexistent.sock']);
  assert.equal(s.code, 1);
  assert.match(s.err, /cannot reach the store at unix:\/nonexistent\.sock .*\[SLUICE_E_OVSDB_CONNECT\]/);
});
