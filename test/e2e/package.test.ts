// The npm package end to end: `npm pack` (which builds dist/ through `prepare`), install the tarball into a temporary
// directory, and run the installed `sluice` from there, outside the repository: `--version`, `plan -f` on the shipped
// example, the XDP gateway program built from the shipped C sources with the shipped scripts/build-xdp.sh (what
// `--xdp-object` loads), and as root `sluice demo` (prefix slt-pkg-, 90 connections), which needs the files the lab
// uses at run time (scripts/ensure-deps.sh, scripts/lab-ecmp.sh, the schema, the lab's helper programs). The install
// takes the dependencies from npm's cache when it has them.
//
// That demo run is also the demo's end-to-end test (one run of ~2.5 min serves both; a separate demo test file used
// to run runDemo in-process on a lab of its own): the lab's real control plane (a store ovsdb-server, 2 planners and 5
// agents as processes), every change through the store. It checks that no connection broke, that each change step
// published generations (the store and the planners' logs agree), that the two gateways really ran different
// generations during the skewed rollout, that every backend was up by its check first (web TCP, api HTTP, dns UDP),
// that the UDP flows to dns kept their backends, and that nothing of the prefix is left afterwards (namespaces,
// processes, run dir). What runDemo returned is read from `--result-file`, the narration from stdout.

import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RUN_ROOT, labNamespacePattern } from '../../src/lab/config.ts';
import type { DemoResult } from '../../src/lab/demo.ts';
import { labDown, listNamespaces } from '../../src/lab/topology.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PREFIX = 'slt-pkg-';
const isRoot = process.getuid?.() === 0;
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Pids of processes whose command line names this lab's run directory (agents, planners, OVS, backends). */
function processesOfPrefix(): number[] {
  const mark = `${DEFAULT_RUN_ROOT}/${PREFIX}`;
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ').includes(mark))
        out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

function run(
  cmd: string,
  args: readonly string[],
  cwd: string,
  timeoutMs = 180_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm package: installed from the tarball, run from a temporary directory', {
  timeout: 600_000,
}, () => {
  let dir: string;
  let tarball: string;
  let pkg: string;
  let bin: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-pkg-'));
    const pack = await run('npm', ['pack', '--json', '--pack-destination', dir], ROOT);
    assert.equal(pack.code, 0, pack.stderr);
    const info = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as {
      filename: string;
      files: { path: string }[];
    }[];
    tarball = join(dir, info[0]!.filename);
    const files = new Set(info[0]!.files.map((f) => f.path));
    for (const f of [
      'dist/cli/bin.js',
      'dist/lab/backend-server.js',
      'schema/sluice.ovsschema',
      'scripts/ensure-deps.sh',
      'scripts/lab-ecmp.sh',
      'scripts/build-xdp.sh',
      'src/xdp/gateway.bpf.c',
      'src/xdp/pass.bpf.c',
      'examples/lb.yaml',
      'examples/systemd/sluice-store.service',
      'examples/grafana/sluice-dashboard.json',
      'docs/deploy.md',
    ])
      assert.ok(files.has(f), `${f} is in the tarball`);
    // The only sources shipped: the XDP programs' C, which a gateway node compiles for its own kernel.
    const sources = [...files].filter((f) => f.startsWith('test/') || f.startsWith('src/'));
    const notC = sources.filter((f) => !/^src\/xdp\/[\w.-]+\.(bpf\.c|h)$/.test(f));
    assert.deepEqual(notC, [], 'no tests or sources but the XDP programs');
    const install = await run(
      'npm',
      ['install', '--prefix', join(dir, 'app'), '--no-audit', '--no-fund', '--prefer-offline', tarball],
      dir,
    );
    assert.equal(install.code, 0, install.stderr);
    pkg = join(dir, 'app', 'node_modules', 'sluice');
    bin = join(dir, 'app', 'node_modules', '.bin', 'sluice');
    assert.ok(existsSync(bin), bin);
  });

  after(async () => {
    if (isRoot) await labDown(PREFIX).catch(() => {});
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('sluice --version and plan -f run from the installed package', async () => {
    const v = await run(bin, ['--version'], dir);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout.trim(), VERSION);
    const plan = await run(bin, ['plan', '-f', join(pkg, 'examples', 'lb.yaml')], dir);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /^web: 256 slots \(k=8\)/m);
    const bad = await run(bin, ['plan', '-f', join(pkg, 'examples', 'bad.yaml')], dir);
    assert.equal(bad.code, 2, 'a bad config exits 2 from the package too');
  });

  test('the installed package builds the XDP programs (scripts/build-xdp.sh, clang)', async (t) => {
    const out = join(dir, 'xdp');
    const build = await run('bash', [join(pkg, 'scripts', 'build-xdp.sh'), out], dir);
    assert.equal(build.code, 0, build.stderr);
    for (const o of ['gateway.bpf.o', 'pass.bpf.o']) assert.ok(existsSync(join(out, o)), `${o} built`);
    t.diagnostic(`built from the package: ${readdirSync(out).join(', ')}`);
  });

  test('sluice demo from the installed package: every step, 0 broken, each change through the store (root)', {
    skip: !isRoot && 'needs root',
  }, async (t) => {
    await labDown(PREFIX);
    const t0 = Date.now();
    const resultFile = join(dir, 'demo-result.json');
    const demo = await run(
      bin,
      ['demo', '--prefix', PREFIX, '--connections', '90', '--result-file', resultFile],
      dir,
      400_000,
    );
    t.diagnostic(`demo from the package: exit ${demo.code} in ${Date.now() - t0} ms`);
    const lines = demo.stdout.split('\n');
    if (demo.code !== 0 || process.env.SLUICE_E2E_LOG)
      process.stderr.write(`${demo.stdout}\n${demo.stderr}\n`);
    assert.equal(demo.code, 0, `${demo.stdout.slice(-3000)}\n${demo.stderr.slice(-3000)}`);
    assert.match(`${demo.stdout}\n${demo.stderr}`, /^OK: \d+ connections opened, 0 broken;/m);
    const r = JSON.parse(readFileSync(resultFile, 'utf8')) as DemoResult;
    t.diagnostic(`demo: ${r.opened} opened, ${r.broken} broken, ${r.failed} failed in ${r.ms} ms`);
    for (const s of r.steps)
      t.diagnostic(
        `${s.name}: g${s.generations.join(', g') || ' -'}, ${s.secondChance} second-chance packets, ${s.broken} broken`,
      );
    assert.equal(r.broken, 0, `broken: ${JSON.stringify(r.final.brokenByReason)}`);
    assert.equal(r.failed, 0, `failed: ${JSON.stringify(r.final.failedByReason)}`);
    assert.ok(r.opened >= 90 + 150 + 30, `opened ${r.opened}`);
    assert.deepEqual(
      r.steps.map((s) => s.broken),
      [0, 0, 0, 0, 0, 0, 0],
    );
    // Each step's own check (what must hold once it settled) held.
    assert.deepEqual(
      r.steps.filter((s) => s.problem !== undefined).map((s) => `${s.name}: ${s.problem}`),
      [],
    );
    // The four desired-state changes (add, drain, remove, weight) each published generations; the gateway events
    // (ECMP withdraw, ovs-vswitchd killed) changed nothing in the store.
    const [add, drain, remove, leave, kill, skew, storeDown] = r.steps;
    for (const s of [add!, drain!, remove!, skew!])
      assert.ok(s.generations.length > 0, `${s.name}: no generation`);
    assert.ok(add!.generations.length >= 2, 'the add rolled out in phases');
    assert.deepEqual([leave!.generations, kill!.generations], [[], []]);
    // The store down for 30 s: its own check held (both gateways stayed in ECMP past the lease, the 30 connections
    // opened meanwhile did open). A rollout still in progress from the step before may publish around it.
    assert.equal(storeDown!.problem, undefined, storeDown!.problem);
    assert.ok(lines.some((l) => /past the agents' 10 s lease: router ECMP set gw1, gw2$/.test(l)));
    // Before the steps, every backend was reported up by its load balancer's check (what `sluice status` shows):
    // dns by UDP probes, api by HTTP GETs on the health port, web by TCP connects.
    for (const [lb, check, n] of [
      ['dns', 'udp no-icmp', 3],
      ['api', 'http :8081/health 200', 3],
      ['web', 'tcp', 4],
    ] as const)
      assert.ok(
        lines.some((l) => l.includes(`health: ${lb} (${check}): ${n} of ${n} backends up`)),
        `${lb}: no "${check}" line with ${n} backends up`,
      );
    t.diagnostic(`udp flows to dns: ${JSON.stringify(r.udp)}`);
    assert.ok((r.udp?.opened ?? 0) >= 30, `udp flows opened: ${r.udp?.opened}`);
    // Every change of the demo leaves the UDP flows on their first backend (none answered by another one).
    assert.equal(r.udp?.brokenByReason['backend-changed'] ?? 0, 0, JSON.stringify(r.udp?.brokenByReason));
    // What the store showed is what the planners logged they published.
    assert.deepEqual(r.plannerPublished, r.generations);
    assert.deepEqual(
      r.generations,
      r.generations.map((_, i) => i + 1),
      'generations 1, 2, 3, ... with no gap',
    );
    // Every change was an edit of the desired state, as the CLI makes it.
    for (const cli of ['backend add web', 'backend drain web', 'backend del web', 'apply -f'])
      assert.ok(
        lines.some((l) => l.includes(`$ sluice ${cli}`)),
        `no "${cli}" edit in the narration`,
      );
    // The skewed rollout: the store showed the two gateways on different generations.
    const skewed = lines
      .map((l) => /store: gw1 on g(\d+), gw2 on g(\d+)/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [Number(m[1]), Number(m[2])]);
    assert.ok(skewed.length >= 1, 'no skew seen in the store');
    for (const [g1, g2] of skewed) assert.equal(g2, g1! + 1, `gw1 on g${g1}, gw2 on g${g2}`);
    // The gateway whose ovs-vswitchd was killed: its agent reported it and re-applied every flow.
    assert.ok(lines.some((l) => /store: gw2 reports "ovs-vswitchd is not running"/.test(l)));
    const restored = lines
      .slice(lines.findIndex((l) => l.includes('gw2 reports "ovs-vswitchd is not running"')))
      .map((l) => /gw2 agent: applied g\d+ \(br-int (\d+) lines/.exec(l))
      .find((m) => m !== null);
    assert.ok(Number(restored?.[1] ?? 0) > 100, `gw2 re-installed every flow: ${restored?.[0]}`);
    // The demo tore its lab down: nothing of the prefix is left.
    const pattern = labNamespacePattern(PREFIX);
    assert.deepEqual(
      (await listNamespaces()).filter((n) => pattern.test(n)),
      [],
    );
    assert.deepEqual(processesOfPrefix(), []);
    assert.equal(existsSync(`${DEFAULT_RUN_ROOT}/${PREFIX}`), false);
  });
});
