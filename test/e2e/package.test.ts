// The npm package end to end: `npm pack` (which builds dist/ through `prepare`), install the tarball into a temporary
// directory, and run the installed `sluice` from there, outside the repository: `--version`, `plan -f` on the shipped
// example, and as root `sluice demo` (prefix slt-pkg-, fewer connections), which needs the files the lab uses at run
// time (scripts/ensure-deps.sh, scripts/lab-ecmp.sh, the schema, the lab's helper programs), and the XDP gateway
// program built from the shipped C sources with the shipped scripts/build-xdp.sh (what `--xdp-object` loads). The
// install takes the dependencies from npm's cache when it has them.

import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { labDown } from '../../src/lab/topology.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PREFIX = 'slt-pkg-';
const isRoot = process.getuid?.() === 0;
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

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

  test('sluice demo runs from the installed package (root)', { skip: !isRoot && 'needs root' }, async (t) => {
    await labDown(PREFIX);
    const t0 = Date.now();
    const demo = await run(bin, ['demo', '--prefix', PREFIX, '--connections', '60'], dir, 400_000);
    t.diagnostic(`demo from the package: exit ${demo.code} in ${Date.now() - t0} ms`);
    assert.equal(demo.code, 0, `${demo.stdout.slice(-3000)}\n${demo.stderr.slice(-3000)}`);
    assert.match(`${demo.stdout}\n${demo.stderr}`, /^OK: \d+ connections opened, 0 broken;/m);
  });
});
