// A lab's clean-up touches only what that lab made (no root: the namespace pattern and the ownership rule are pure;
// the pid-file test kills only `node` children this test starts). The e2e side, a foreign namespace with a similar
// name and a foreign process surviving a real labDown, is in test/e2e/lab.test.ts.

import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { labNamespacePattern } from '../../src/lab/config.ts';
import { killPidFile, pidAlive, processStart, startedByLab } from '../../src/lab/exec.ts';
import { expectedProgram, labInUseBy } from '../../src/lab/topology.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Every lab prefix the repository uses: `sl-` (demo, CLI) and each `*PREFIX = '...'` in test/, bench/. */
function repoPrefixes(): string[] {
  const found = new Set(['sl-']);
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const rel = join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts'))
        for (const m of readFileSync(join(ROOT, rel), 'utf8').matchAll(/PREFIX = '([a-z][a-z0-9-]*)'/g))
          found.add(m[1]!);
    }
  };
  walk('test/e2e');
  walk('bench');
  return [...found].sort();
}

const SUFFIXES = ['fabric', 'router', 'gw1', 'gw12', 'host1', 'host3', 'host1-b1', 'host3-b12', 'c1', 'c2'];

test("no lab prefix the repository uses matches another prefix's namespaces", () => {
  const prefixes = repoPrefixes();
  assert.ok(
    prefixes.includes('slt-out-') && prefixes.includes('slt-pkg-') && prefixes.length > 15,
    `${prefixes}`,
  );
  const clashes: string[] = [];
  for (const p of prefixes) {
    const re = labNamespacePattern(p);
    for (const q of prefixes)
      if (q !== p) for (const s of SUFFIXES) if (re.test(q + s)) clashes.push(`${p} matches ${q}${s}`);
  }
  assert.deepEqual(clashes, []);
  // Names a lab never makes, close to slt-out-'s: untouched.
  const out = labNamespacePattern('slt-out-');
  for (const n of ['slt-out-x-gw1', 'slt-outx-gw1', 'slt-out-gw1x', 'slt-out-host1-b', 'slt-out-scratch'])
    assert.equal(out.test(n), false, n);
});

const LAB = { runDir: '/run/sluice-lab/slt-out-', netns: new Set([4026532499, 4026532500]) };

test('startedByLab: the program, and a path under the run dir or one of its namespaces', () => {
  const store =
    'ovsdb-server /run/sluice-lab/slt-out-/cp/store.db --remote=punix:/run/sluice-lab/slt-out-/cp/s.sock';
  assert.equal(startedByLab({ cmdline: store, netns: 1 }, 'ovsdb-server', LAB), true);
  // The same program of a lab whose prefix starts the same: its run dir is not under ours.
  const foreign = store.replaceAll('slt-out-', 'slt-out-2-');
  assert.equal(startedByLab({ cmdline: foreign, netns: 1 }, 'ovsdb-server', LAB), false);
  // Backends and traffic runners run a script every lab shares: known by their namespace.
  const backend = 'node /run/sluice-lab/bin/backend-server-1.mjs --name host1-b1 --port 80';
  assert.equal(startedByLab({ cmdline: backend, netns: 4026532499 }, 'backend-server', LAB), true);
  assert.equal(startedByLab({ cmdline: backend, netns: 4026530000 }, 'backend-server', LAB), false);
  assert.equal(startedByLab({ cmdline: backend, netns: undefined }, 'backend-server', LAB), false);
  // Another program at a recycled pid, or no process at all.
  assert.equal(startedByLab({ cmdline: store, netns: 4026532499 }, 'backend-server', LAB), false);
  assert.equal(startedByLab({ cmdline: undefined, netns: 4026532499 }, 'ovsdb-server', LAB), false);
});

test('expectedProgram knows the Raft members a test starts under the run dir', () => {
  assert.equal(expectedProgram('/run/sluice-lab/slt-out-/cp/raft/member2.pid'), 'ovsdb-server');
  assert.equal(expectedProgram('/run/sluice-lab/slt-out-/cp/raft/membership.pid'), undefined);
});

const dir = mkdtempSync(join(tmpdir(), 'sluice-lab-hygiene-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A `node` child that sleeps, its command line naming `program` and `path` (as a lab process's would). */
async function fakeProcess(program: string, path: string): Promise<number> {
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', program, path], {
    stdio: 'ignore',
  });
  children.push(c);
  for (let i = 0; i < 100 && !pidAlive(c.pid!, path); i++) await sleep(10);
  return c.pid!;
}

test('killPidFile with an owner: kills its own lab process, leaves a recycled pid of another lab alone', async () => {
  const owner = { runDir: join(dir, 'slt-out-'), netns: new Set<number>() };
  const pidFile = join(dir, 'store.pid');
  const other = await fakeProcess('ovsdb-server', join(dir, 'slt-out-2-', 'cp', 'store.db'));
  writeFileSync(pidFile, `${other}\n`);
  assert.equal(await killPidFile(pidFile, 'ovsdb-server', { signal: 'SIGKILL', owner }), undefined);
  assert.ok(pidAlive(other), "another lab's store survives");
  const own = await fakeProcess('ovsdb-server', join(dir, 'slt-out-', 'cp', 'store.db'));
  writeFileSync(pidFile, `${own}\n`);
  assert.equal(await killPidFile(pidFile, 'ovsdb-server', { signal: 'SIGKILL', owner }), own);
  assert.equal(pidAlive(own), false);
});

test('labInUseBy: a replace refuses only while the (same) process that built the lab still runs', async () => {
  const start = (table: Record<number, number>) => (pid: number) => table[pid];
  assert.equal(labInUseBy(undefined, 1, start({})), undefined, 'a lab.json from before builtBy');
  assert.equal(labInUseBy({ pid: 7, start: 100 }, 7, start({ 7: 100 })), undefined, 'its own lab');
  assert.equal(
    labInUseBy({ pid: 8, start: 100 }, 7, start({ 8: 100 })),
    8,
    'built by a process that still runs',
  );
  assert.equal(labInUseBy({ pid: 8, start: 100 }, 7, start({ 8: 250 })), undefined, 'pid 8 recycled since');
  assert.equal(labInUseBy({ pid: 8, start: 100 }, 7, start({})), undefined, 'the builder is gone');
  // processStart names a process for good: stable while it runs, undefined once it is gone.
  const own = processStart(process.pid);
  assert.ok(own !== undefined && own > 0 && processStart(process.pid) === own);
  const c = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => c.on('exit', r));
  await sleep(50);
  assert.equal(processStart(c.pid!), undefined);
});
