// `sluice backend add` / `del` against a store of 1 and of 10,000 VIPs x 20 backends (`npm run bench -- cli-edit`):
// a standalone ovsdb-server on sluice's schema (private temp dir, stopped by its own PID; no lab, no agents), the
// desired state written in batches of 1000 load balancers, then CLI edits run in-process through main() (no Node
// start-up), alternately adding and removing one backend of v0. Median and max over the edits, per size, and the
// ratio against 1 VIP in the same run. The edit reads and writes only v0 (editLoadBalancer); before that path it
// monitored every desired-state table (9.7 s at 1000 VIPs in the convergence benchmark). Writes its section of
// docs/benchmarks.md. Options (environment): CLI_EDIT_VIPS (default 10000), CLI_EDIT_RUNS (default 7),
// CLI_EDIT_NO_WRITE=1 (print only).

import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main as cliMain } from '../src/cli/main.ts';
import { parseConfig } from '../src/model/schema.ts';
import { OvsdbClient } from '../src/ovsdb/client.ts';
import type { Operation } from '../src/ovsdb/protocol.ts';
import { startStandalone } from '../src/ovsdb/server.ts';
import { DB_NAME, DESIRED_STATE_MONITOR, desiredStateOps } from '../src/store/db/index.ts';
import { finish, machine, machineLine, median, ratio, say, writeSection } from './perf/common.ts';
import { syntheticDesiredDoc, writeInBatches } from './store-fixture.ts';

const LARGE = Number(process.env.CLI_EDIT_VIPS ?? 10_000);
const RUNS = Number(process.env.CLI_EDIT_RUNS ?? 7);

interface SizeResult {
  vips: number;
  writeMs: number;
  storeBytes: number;
  editsMs: number[];
}

/** Quiet stdout for the CLI's own output (the edit lines), then the exit code. */
async function cli(argv: string[]): Promise<number> {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await cliMain(argv);
  } finally {
    process.stdout.write = write;
  }
}

async function size(vips: number): Promise<SizeResult> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cli-edit-'));
  const srv = await startStandalone(dir);
  const client = new OvsdbClient({ remotes: [srv.unixRemote] });
  try {
    await client.connect();
    const m = await client.monitor(DB_NAME, DESIRED_STATE_MONITOR);
    const doc = syntheticDesiredDoc(vips);
    const t0 = performance.now();
    await writeInBatches(
      vips,
      (k) =>
        desiredStateOps(m.replica, parseConfig({ ...doc, loadBalancers: doc.loadBalancers.slice(0, k) })),
      (ops) => client.transact(DB_NAME, ...(ops as Operation[])),
    );
    const writeMs = performance.now() - t0;
    client.close();
    const editsMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const add = i % 2 === 0;
      const argv = add
        ? ['backend', 'add', 'v0', '10.0.3.13', '--host', 'host2', '--port', '80']
        : ['backend', 'del', 'v0', '10.0.3.13:80'];
      const t = performance.now();
      const code = await cli([...argv, '--db', srv.unixRemote]);
      editsMs.push(performance.now() - t);
      if (code !== 0) throw new Error(`sluice ${argv.join(' ')} exited ${code}`);
    }
    const storeBytes = statSync(join(dir, 'ovsdb.db')).size;
    say(`[${vips} VIPs] edits ${editsMs.map((x) => Math.round(x)).join(', ')} ms`);
    return { vips, writeMs, storeBytes, editsMs };
  } finally {
    client.close();
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const ms = (x: number) => `${Math.round(x)} ms`;

function report(results: readonly SizeResult[], m: ReturnType<typeof machine>): string {
  const lines = ['## `sluice backend add` / `del` against a large store', ''];
  lines.push(machineLine(m, 'npm run bench -- cli-edit'));
  lines.push('');
  lines.push(
    "A standalone ovsdb-server on sluice's schema, no lab and no agents; every VIP has 20 backends; the CLI runs " +
      `in-process (no Node start-up) and alternately adds and removes one backend of v0, ${RUNS} edits per size. ` +
      'An edit of one load balancer selects Global, the nodes, that load balancer and its backends, and writes one ' +
      'transaction guarded by desired_cfg (docs/design/control-plane.md). Adds (the 1st, 3rd, ... edit) cost more ' +
      'than deletes: only an add carries the waits that check the new address against the other load balancers, ' +
      'which ovsdb-server answers by scanning the Backend table (Backend.address has no index).',
  );
  lines.push('');
  lines.push(`| | ${results.map((r) => `${r.vips} VIP${r.vips > 1 ? 's' : ''} × 20`).join(' | ')} |`);
  lines.push(`| --- | ${results.map(() => '---:').join(' | ')} |`);
  const row = (name: string, f: (r: SizeResult) => string) =>
    lines.push(`| ${name} | ${results.map(f).join(' | ')} |`);
  row(
    'edit (connect, read, validate, guarded write): median; max',
    (r) => `${ms(median(r.editsMs))}; ${ms(Math.max(...r.editsMs))}`,
  );
  row('edits', (r) => r.editsMs.map((x) => String(Math.round(x))).join(', '));
  row('initial desired state write (for reference)', (r) => ms(r.writeMs));
  row('store database file', (r) => `${(r.storeBytes / 1e6).toFixed(1)} MB`);
  const [one, big] = [results[0], results.at(-1)];
  if (one !== undefined && big !== undefined && big !== one) {
    lines.push('');
    lines.push(
      `${big.vips} VIPs against 1 VIP, same run: edit median ${ratio(median(big.editsMs), median(one.editsMs), 1)} ` +
        `(${ms(median(big.editsMs))} vs ${ms(median(one.editsMs))}); max ${ms(Math.max(...big.editsMs))}.`,
    );
  }
  return lines.join('\n');
}

const m = machine();
const results: SizeResult[] = [];
for (const vips of [1, LARGE]) results.push(await size(vips));
const section = report(results, finish(m));
process.stdout.write(`${section}\n`);
if (process.env.CLI_EDIT_NO_WRITE !== '1') writeSection('cli-edit', section);
