import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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

const BASELINE = process.env.PLANNER_STEP_BASELINE_COMMIT ?? '91797dc7aeb297ed5ef2f9634977e0168144a7c1';
const SIZES = (process.env.PLANNER_STEP_VIPS ?? '1,1000,10000').split(',').map(Number);
const ROUNDS = Number(process.env.PLANNER_STEP_ROUNDS ?? 5);
const NODES = ['gw1', 'host1', 'host2'];

const root = fileURLToPath(new URL('..', import.meta.url));

/** The store-side modules of one version (its readStoreView, effectiveConfig, plannerStep, client). */
interface Impl {
  readonly label: string;
  readonly db: typeof db;
  readonly client: typeof import('../src/ovsdb/client.ts');
  /** The planner's PlanCache, as PlannerCore holds one (undefined in trees before it: their memos were global). */
  readonly cache: unknown;
}

async function loadImpl(label: string, tree: string): Promise<Impl> {
  const at = (p: string) => import(pathToFileURL(join(tree, p)).href);
  const cacheModule = join(tree, 'src/rollout/plan-cache.ts');
  const cache = existsSync(cacheModule) ? new (await at('src/rollout/plan-cache.ts')).PlanCache() : undefined;
  return { label, db: await at('src/store/db/index.ts'), client: await at('src/ovsdb/client.ts'), cache };
}

const KINDS = [
  'heartbeat',
  'connections',
  'health',
  'slot report',
  'backend add',
  'backend del',
  'no-op',
] as const;
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
  const cache = impl.cache as Parameters<typeof impl.db.plannerStep>[5];
  const step = impl.db.plannerStep(view, effective, now, new Set(['host1', 'host2']), new Set(), cache);
  return step.next === null ? (step.configChanged ? 'config' : 'idle') : 'moves';
}

/** plannerWork under one function name per kind of change, so a --cpu-prof profile tells the kinds apart. */
const STEPS: Record<Kind, typeof plannerWork> = {
  heartbeat: function stepHeartbeat(...a) {
    return plannerWork(...a);
  },
  connections: function stepConnections(...a) {
    return plannerWork(...a);
  },
  health: function stepHealth(...a) {
    return plannerWork(...a);
  },
  'slot report': function stepSlotReport(...a) {
    return plannerWork(...a);
  },
  'backend add': function stepBackendAdd(...a) {
    return plannerWork(...a);
  },
  'backend del': function stepBackendDel(...a) {
    return plannerWork(...a);
  },
  'no-op': function stepNoop(...a) {
    return plannerWork(...a);
  },
};

/** The store a size is measured on: desired state, released initial generation, status rows. */
async function fill(client: OvsdbClient, r: Replica, vips: number): Promise<number> {
  const doc = syntheticDesiredDoc(vips);
  const tx = (ops: readonly unknown[]) => client.transact(db.DB_NAME, ...(ops as Operation[]));
  // Heartbeats and reports are in Sluice_Status (schema 3.0.0).
  const txStatus = (ops: readonly unknown[]) => client.transact(db.STATUS_DB_NAME, ...(ops as Operation[]));
  await writeInBatches(
    vips,
    (k) => db.desiredStateOps(r, parseConfig({ ...doc, loadBalancers: doc.loadBalancers.slice(0, k) })),
    tx,
  );
  const config = parseConfig(doc);
  const first = planNext({ config, latest: null, connections: () => 0, now: Date.now() }).next!;
  await tx(db.publishGenerationOps(r, first, db.storedDesiredCfg(r), JSON.stringify(doc)));
  await tx(db.releaseOps(first.number));
  const ack = { appliedGeneration: 1, appliedCfg: 1, appliedAt: Date.now(), error: undefined };
  await tx(NODES.flatMap((node) => db.nodeStatusOps(r, { node, ...ack })));
  await txStatus(NODES.flatMap((node) => db.heartbeatOps(r, node, Date.now(), { role: 'host' })));
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
  for (let i = 0; i < rows.length; i += 10_000) await txStatus(rows.slice(i, i + 10_000));
  // A connection report per host and load balancer (a host writes rows only for load balancers with connections:
  // here every one has some).
  const reports = config.loadBalancers.flatMap((lb, i) =>
    ['host1', 'host2'].map((node, h) =>
      db.insert(db.SlotConnectionsTable, {
        node,
        lb: lb.name,
        generation: 1,
        bits: 8,
        counts: db.encodeSlotCounts(new Map([[i & 255, new Map([[backendKey(lb.backends[h * 10]), 1]])]])),
        reported_at: Date.now(),
      }),
    ),
  );
  for (let i = 0; i < reports.length; i += 10_000) await txStatus(reports.slice(i, i + 10_000));
  return rows.length;
}

/** Waits until `r` saw a change of `table` (its version moved from `from`). */
async function seen(r: Replica, table: string, from: string): Promise<void> {
  for (const t0 = Date.now(); r.version(table) === from; await sleep(2))
    if (Date.now() - t0 > 60_000) throw new Error(`the replica did not see ${table} change in 60 s`);
}

/** Connection counts written so far (each write a new value, so every version sees a change). */
let written = 0;

/** The changes of one round, written by `writer` (this tree's code), each followed by one measured step (a no-op
 *  writes nothing). A backend is added to one load balancer and removed again, so every round starts from the same
 *  desired state. */
function changes(
  writer: Replica,
  round: number,
  vips: number,
): { kind: Kind; table: string | undefined; ops: () => Operation[] }[] {
  const lb = `v${(1 + round) % vips}`;
  const status = () =>
    db.find(writer, db.BackendStatusTable, (x) => x.lb === lb && x.backend === '10.0.1.13:80')!;
  const set = (columns: Partial<db.BackendStatusRow>) => () => [
    db.update(db.BackendStatusTable, db.byUuid(status()._uuid), columns),
  ];
  const host = db.nodeHeartbeat(writer, 'host1')!;
  const lbRow = () => db.find(writer, db.LoadBalancerTable, (x) => x.name === lb)!;
  const address = `10.0.9.${10 + round}`;
  const bump = db.mutate(db.GlobalTable, [], [db.add(db.GlobalTable, 'desired_cfg', 1)]);
  const report = () => db.find(writer, db.SlotConnectionsTable, (x) => x.lb === lb && x.node === 'host1')!;
  return [
    {
      kind: 'heartbeat',
      table: db.NodeHeartbeatTable.name,
      ops: () => [
        db.update(db.NodeHeartbeatTable, db.byUuid(host._uuid), { heartbeat_at: Date.now() + round }),
      ],
    },
    { kind: 'connections', table: db.BackendStatusTable.name, ops: set({ connections: ++written }) },
    { kind: 'health', table: db.BackendStatusTable.name, ops: set({ health: 'down' }) },
    { kind: 'health', table: db.BackendStatusTable.name, ops: set({ health: 'up' }) },
    {
      kind: 'slot report',
      table: db.SlotConnectionsTable.name,
      ops: () => [
        db.update(db.SlotConnectionsTable, db.byUuid(report()._uuid), {
          counts: db.encodeSlotCounts(new Map([[round, new Map([['10.0.1.10:80', ++written]])]])),
          reported_at: Date.now(),
        }),
      ],
    },
    { kind: 'no-op', table: undefined, ops: () => [] },
    {
      kind: 'backend add',
      table: db.LoadBalancerTable.name,
      ops: () => [
        db.insert(
          db.BackendTable,
          { address, port: 80, host: 'host1', weight: 1, admin_state: 'active' },
          'added',
        ),
        db.mutate(db.LoadBalancerTable, db.byUuid(lbRow()._uuid), [
          db.setInsert(db.LoadBalancerTable, 'backends', ['added']),
        ]),
        bump,
      ],
    },
    {
      kind: 'backend del',
      table: db.LoadBalancerTable.name,
      ops: () => {
        const gone = lbRow().backends.find((u) => db.get(writer, db.BackendTable, u)?.address === address)!;
        return [
          db.mutate(db.LoadBalancerTable, db.byUuid(lbRow()._uuid), [
            db.setDelete(db.LoadBalancerTable, 'backends', [gone]),
          ]),
          bump,
        ];
      },
    },
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
    // Both databases (a baseline older than schema 3.0.0 read its status tables from Sluice, and cannot run here).
    const m = await client.monitorDatabases(impl.db.splitMonitor(impl.db.ALL_TABLES_MONITOR));
    const r = m.replica as unknown as Replica;
    while (r.table(db.BackendStatusTable.name).size < rows) await sleep(10);
    const c0 = process.cpuUsage();
    (function stepFirst() {
      plannerWork(impl, r, Date.now());
    })();
    const firstMs = cpuMs(c0);
    plannerWork(impl, r, Date.now());
    const ms = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
    for (let round = 0; round < ROUNDS; round++)
      for (const c of changes(writer.replica, round, vips)) {
        if (c.table !== undefined) {
          const from = r.version(c.table);
          // Heartbeats and reports are in Sluice_Status, the desired state in Sluice.
          const inDb = db.STATUS_MONITOR_TABLES.includes(c.table) ? db.STATUS_DB_NAME : db.DB_NAME;
          await writer.client.transact(inDb, ...c.ops());
          await seen(r, c.table, from);
        }
        const t0 = process.cpuUsage();
        STEPS[c.kind](impl, r, Date.now());
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
    const m = await writer.monitorDatabases(db.splitMonitor(db.ALL_TABLES_MONITOR));
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
  const n = (v: number) => v.toLocaleString('en');
  const lines = [`## Planner step per change: ${sizes.map(n).join(', ')} VIPs, before and after`, ''];
  lines.push(machineLine(m, 'npm run bench -- planner-step'), '');
  lines.push(
    'A standalone ovsdb-server, no lab and no agents; every VIP has 20 backends (slotBits 8), each with a ' +
      'Backend_Status row (health up), a Slot_Connections row per host and VIP, nodes gw1, host1, host2 with a ' +
      'Node_Status row, the initial generation published and released. Each version monitors every table as ' +
      '`sluice planner` does; after each change has reached its replica it runs what the planner runs per step ' +
      'from the store (readStoreView, effectiveConfig, plannerStep; PlannerCore adds loops over the three nodes). ' +
      "Changes, per round: a heartbeat (Node_Status), one backend's connection count (Backend_Status), that " +
      'backend down and up again (two steps, both under "health"), one host\'s connection report for one VIP ' +
      "(one Slot_Connections row), a step with no change (the planner's tick), a backend added to one VIP and " +
      `removed again (Backend + Load_Balancer + Global.desired_cfg, as \`sluice backend add/del\` writes); ${ROUNDS} ` +
      `rounds, a different VIP each. **before**: src/ at ${BASELINE.slice(0, 7)}; **after**: this tree. CPU: this ` +
      'process, user + system.',
    '',
  );
  const labels = ['before', 'after'];
  const cols = sizes.flatMap((v) => labels.map((i) => ({ v, i })));
  lines.push(`| per step | ${cols.map((c) => `${n(c.v)} VIPs, ${c.i}`).join(' | ')} |`);
  lines.push(`| --- | ${cols.map(() => '---:').join(' | ')} |`);
  const row = (name: string, f: (r: SizeResult) => string) =>
    lines.push(`| ${name} | ${cols.map((c) => f(get(c.i, c.v))).join(' | ')} |`);
  row('Backend_Status rows', (r) => n(r.statusRows));
  for (const k of KINDS)
    row(`**${k}** (median; max)`, (r) => `${fmt(median(r.ms[k]))}; ${fmt(Math.max(...r.ms[k]))}`);
  row('first step (builds everything)', (r) => fmt(r.firstMs));
  lines.push('');
  for (const v of sizes)
    lines.push(
      `${n(v)} VIPs, after against before (medians): ` +
        KINDS.map(
          (k) => `${k} ${ratio(median(get('after', v).ms[k]), median(get('before', v).ms[k]), 3)}`,
        ).join(', ') +
        '.',
      '',
    );
  const small = Math.min(...sizes);
  for (const v of sizes.filter((x) => x !== small))
    for (const i of labels)
      lines.push(
        `${i}, ${n(v)} VIPs against ${n(small)} (medians): ` +
          KINDS.map((k) => `${k} ${ratio(median(get(i, v).ms[k]), median(get(i, small).ms[k]), 1)}`).join(
            ', ',
          ) +
          '.',
        '',
      );
  return lines.join('\n').trimEnd();
}

/** Both versions at every size, on the same store per size; the section for docs/benchmarks.md. */
async function run(): Promise<string> {
  const started = machine();
  const current = await loadImpl('after', root);
  // PLANNER_STEP_AFTER_ONLY=1: this tree only (a profile, --cpu-prof), no report.
  if (process.env.PLANNER_STEP_AFTER_ONLY === '1') {
    for (const vips of SIZES) await size([current], vips);
    return '';
  }
  const baseline = await loadImpl('before', extractTree(BASELINE, 'sluice-planner-step-baseline'));
  const results: SizeResult[] = [];
  for (const vips of SIZES) results.push(...(await size([baseline, current], vips)));
  return report(results, finish(started));
}

const section = await run();
process.stdout.write(`${section}\n`);
if (section !== '' && process.env.PLANNER_STEP_NO_WRITE !== '1') writeSection('planner-step', section);
