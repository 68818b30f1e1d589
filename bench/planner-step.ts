import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseConfig } from '../src/model/schema.ts';
import { backendKey } from '../src/model/types.ts';
import { OvsdbClient } from '../src/ovsdb/client.ts';
import type { Operation } from '../src/ovsdb/protocol.ts';
import type { Replica } from '../src/ovsdb/replica.ts';
import { startStandalone } from '../src/ovsdb/server.ts';
import { planNext } from '../src/rollout/planner.ts';
import * as db from '../src/store/db/index.ts';
import { finish, machine, machineLine, median, ratio, say, sleep, writeSection } from './perf/common.ts';
import { extractTree, syntheticDesiredDoc, writeInBatches } from './store-fixture.ts';

const BASELINE = process.env.PLANNER_STEP_BASELINE_COMMIT ?? '36c3e39fdf45413868abe8e26b35f669e7b5d685';
const SIZES = (process.env.PLANNER_STEP_VIPS ?? '1000,10000').split(',').map(Number);
const ROUNDS = Number(process.env.PLANNER_STEP_ROUNDS ?? 5);
const NODES = ['gw1', 'host1', 'host2'];

const root = fileURLToPath(new URL('..', import.meta.url));

/** The store-side modules of one version (its readStoreView, effectiveConfig, plannerStep, client). */
interface Impl {
  readonly label: string;
  readonly db: typeof db;
  readonly client: typeof import('../src/ovsdb/client.ts');
}

async function loadImpl(label: string, tree: string): Promise<Impl> {
  const at = (p: string) => import(pathToFileURL(join(tree, p)).href);
  return { label, db: await at('src/store/db/index.ts'), client: await at('src/ovsdb/client.ts') };
}

const KINDS = ['heartbeat', 'connections', 'health'] as const;
type Kind = (typeof KINDS)[number];

interface SizeResult {
  readonly impl: string;
  readonly vips: number;
  readonly statusRows: number;
  readonly firstMs: number;
  readonly ms: Record<Kind, number[]>;
}

const cpuMs = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};

/** What the planner computes per step from its replica (PlannerCore.observe/decide around it loop over the nodes). */
function plannerWork(impl: Impl, r: Replica, now: number): string {
  const view = impl.db.readStoreView(r);
  const effective = impl.db.effectiveConfig(view, 'store (effective)')!;
  const step = impl.db.plannerStep(view, effective, now, new Set(['host1', 'host2']), new Set());
  return step.next === null ? (step.configChanged ? 'config' : 'idle') : 'moves';
}

/** The store a size is measured on: desired state, released initial generation, status rows. */
async function fill(client: OvsdbClient, r: Replica, vips: number): Promise<number> {
  const doc = syntheticDesiredDoc(vips);
  const tx = (ops: readonly unknown[]) => client.transact(db.DB_NAME, ...(ops as Operation[]));
  await writeInBatches(
    vips,
    (k) => db.desiredStateOps(r, parseConfig({ ...doc, loadBalancers: doc.loadBalancers.slice(0, k) })),
    tx,
  );
  const config = parseConfig(doc);
  const first = planNext({ config, latest: null, connections: () => 0, now: Date.now() }).next!;
  await tx(db.publishGenerationOps(r, first, db.storedDesiredCfg(r), JSON.stringify(doc)));
  await tx(db.releaseOps(first.number));
  const beat = {
    appliedGeneration: 1,
    appliedCfg: 1,
    appliedAt: Date.now(),
    heartbeatAt: Date.now(),
    error: undefined,
  };
  await tx(NODES.flatMap((node) => db.nodeStatusOps(r, { node, ...beat })));
  const rows = config.loadBalancers.flatMap((lb) =>
    lb.backends.map((b) =>
      db.insert(db.BackendStatusTable, {
        node: b.host,
        lb: lb.name,
        backend: backendKey(b),
        health: 'up',
        connections: 0,
        checked_at: Date.now(),
        last_ok: true,
      }),
    ),
  );
  for (let i = 0; i < rows.length; i += 10_000) await tx(rows.slice(i, i + 10_000));
  return rows.length;
}

/** Waits until `r` saw a change of `table` (its version moved from `from`). */
async function seen(r: Replica, table: string, from: string): Promise<void> {
  for (const t0 = Date.now(); r.version(table) === from; await sleep(2))
    if (Date.now() - t0 > 60_000) throw new Error(`the replica did not see ${table} change in 60 s`);
}

/** Connection counts written so far (each write a new value, so every version sees a change). */
let written = 0;

/** The changes of one round, written by `writer` (this tree's code), each followed by one measured step. */
function changes(writer: Replica, round: number): { kind: Kind; table: string; ops: () => Operation[] }[] {
  const status = (lb: string) =>
    db.find(writer, db.BackendStatusTable, (x) => x.lb === lb && x.backend === '10.0.1.13:80')!;
  const lb = `v${1 + round}`;
  const set = (columns: Partial<db.BackendStatusRow>) => () => [
    db.update(db.BackendStatusTable, db.byUuid(status(lb)._uuid), columns),
  ];
  const host = db.nodeStatus(writer, 'host1')!;
  return [
    {
      kind: 'heartbeat',
      table: db.NodeStatusTable.name,
      ops: () => [db.update(db.NodeStatusTable, db.byUuid(host._uuid), { heartbeat_at: Date.now() + round })],
    },
    { kind: 'connections', table: db.BackendStatusTable.name, ops: set({ connections: ++written }) },
    { kind: 'health', table: db.BackendStatusTable.name, ops: set({ health: 'down' }) },
    { kind: 'health', table: db.BackendStatusTable.name, ops: set({ health: 'up' }) },
  ];
}

async function measure(
  impl: Impl,
  remote: string,
  writer: { client: OvsdbClient; replica: Replica },
  vips: number,
  rows: number,
) {
  const client = new impl.client.OvsdbClient({ remotes: [remote], probeIntervalMs: 0 });
  try {
    await client.connect();
    const m = await client.monitor(db.DB_NAME, impl.db.ALL_TABLES_MONITOR);
    const r = m.replica as unknown as Replica;
    while (r.table(db.BackendStatusTable.name).size < rows) await sleep(10);
    const c0 = process.cpuUsage();
    plannerWork(impl, r, Date.now());
    const firstMs = cpuMs(c0);
    plannerWork(impl, r, Date.now());
    const ms: Record<Kind, number[]> = { heartbeat: [], connections: [], health: [] };
    for (let round = 0; round < ROUNDS; round++)
      for (const c of changes(writer.replica, round)) {
        const from = r.version(c.table);
        await writer.client.transact(db.DB_NAME, ...c.ops());
        await seen(r, c.table, from);
        const t0 = process.cpuUsage();
        plannerWork(impl, r, Date.now());
        ms[c.kind].push(cpuMs(t0));
      }
    const show = (k: Kind) => ms[k].map((x) => x.toFixed(1)).join(', ');
    say(
      `[${impl.label} ${vips} VIPs] first ${firstMs.toFixed(0)} ms; ${KINDS.map((k) => `${k}: ${show(k)}`).join('; ')} ms`,
    );
    return { impl: impl.label, vips, statusRows: rows, firstMs, ms };
  } finally {
    client.close();
  }
}

async function size(impls: readonly Impl[], vips: number): Promise<SizeResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-planner-step-'));
  const srv = await startStandalone(dir);
  // No inactivity probe: ovsdb-server is silent for seconds while it takes 10,000 VIPs; this measures the planner's
  // step, not the session.
  const writer = new OvsdbClient({ remotes: [srv.unixRemote], probeIntervalMs: 0 });
  try {
    await writer.connect();
    const m = await writer.monitor(db.DB_NAME, db.ALL_TABLES_MONITOR);
    const rows = await fill(writer, m.replica, vips);
    say(`[${vips} VIPs] store filled: ${rows} Backend_Status rows`);
    while (m.replica.table(db.BackendStatusTable.name).size < rows) await sleep(10);
    const out: SizeResult[] = [];
    for (const impl of impls)
      out.push(await measure(impl, srv.unixRemote, { client: writer, replica: m.replica }, vips, rows));
    return out;
  } finally {
    writer.close();
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (x: number) => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;

function report(results: readonly SizeResult[], m: ReturnType<typeof machine>): string {
  const get = (impl: string, vips: number) => results.find((r) => r.impl === impl && r.vips === vips)!;
  const sizes = [...new Set(results.map((r) => r.vips))];
  const lines = ['## Planner step per report: 1,000 and 10,000 VIPs, health followed row by row', ''];
  lines.push(machineLine(m, 'npm run bench -- planner-step'), '');
  lines.push(
    'A standalone ovsdb-server, no lab and no agents; every VIP has 20 backends (slotBits 8), each with a ' +
      'Backend_Status row (health up), nodes gw1, host1, host2 with a Node_Status row, the initial generation ' +
      'published and released. Each version monitors every table as `sluice planner` does; after each change has ' +
      'reached its replica it runs what the planner runs per step from the store (readStoreView, effectiveConfig, ' +
      'plannerStep; PlannerCore adds loops over the three nodes). Changes, per round: a heartbeat (Node_Status), ' +
      "one backend's connection count (Backend_Status), that backend down and up again (two steps, both under " +
      `"health"); ${ROUNDS} rounds, a different load balancer each. **full walk**: src/ at ${BASELINE.slice(0, 7)} ` +
      '(every step: the health of every backend re-read from all Backend_Status rows when the table moved, every ' +
      'entry walked to find the unhealthy ones, and on a health change the whole effective config parsed again); ' +
      '**incremental**: this tree (the unhealthy backends followed from the rows that changed, the effective config ' +
      'made again only for the load balancers whose backends changed health). CPU: this process, user + system.',
    '',
  );
  const cols = sizes.flatMap((v) => ['full walk', 'incremental'].map((i) => ({ v, i })));
  lines.push(`| per step | ${cols.map((c) => `${c.v.toLocaleString('en')} VIPs, ${c.i}`).join(' | ')} |`);
  lines.push(`| --- | ${cols.map(() => '---:').join(' | ')} |`);
  const row = (name: string, f: (r: SizeResult) => string) =>
    lines.push(`| ${name} | ${cols.map((c) => f(get(c.i, c.v))).join(' | ')} |`);
  row('Backend_Status rows', (r) => r.statusRows.toLocaleString('en'));
  for (const k of KINDS)
    row(`**${k}** (median; max)`, (r) => `${fmt(median(r.ms[k]))}; ${fmt(Math.max(...r.ms[k]))}`);
  row('first step (builds everything)', (r) => fmt(r.firstMs));
  lines.push('');
  for (const v of sizes)
    lines.push(
      `${v.toLocaleString('en')} VIPs, incremental against the full walk (medians): ` +
        KINDS.map(
          (k) => `${k} ${ratio(median(get('incremental', v).ms[k]), median(get('full walk', v).ms[k]), 3)}`,
        ).join(', ') +
        '.',
      '',
    );
  lines.push(
    "Reading: what is left per step at 10,000 VIPs is proportional to the load balancers, not to the backends' rows: " +
      "planNext's loop over the pools (a settled pool is skipped by one lookup) and the plan's load balancer names " +
      'gathered for the ids (lbIdContext). The first step after a start still reads every row once.',
  );
  return lines.join('\n').trimEnd();
}

/** Both versions at every size, on the same store per size; the section for docs/benchmarks.md. */
async function run(): Promise<string> {
  const started = machine();
  const baseline = await loadImpl('full walk', extractTree(BASELINE, 'sluice-planner-step-baseline'));
  const current = await loadImpl('incremental', root);
  const results: SizeResult[] = [];
  for (const vips of SIZES) results.push(...(await size([baseline, current], vips)));
  return report(results, finish(started));
}

const section = await run();
process.stdout.write(`${section}\n`);
if (process.env.PLANNER_STEP_NO_WRITE !== '1') writeSection('planner-step', section);
