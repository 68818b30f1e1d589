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
import type * as db from '../src/store/db/index.ts';
import { finish, machine, machineLine, median, ratio, say, sleep, writeSection } from './perf/common.ts';
import { extractTree, syntheticDesiredDoc, writeInBatches } from './store-fixture.ts';

const BASELINE = process.env.PLANNER_STEP_BASELINE_COMMIT ?? '91797dc7aeb297ed5ef2f9634977e0168144a7c1';
const SIZES = (process.env.PLANNER_STEP_VIPS ?? '1,1000,10000').split(',').map(Number);
const ROUNDS = Number(process.env.PLANNER_STEP_ROUNDS ?? 5);
const NODES = ['gw1', 'host1', 'host2'];

const root = fileURLToPath(new URL('..', import.meta.url));

/** The store-side modules of one version (its readStoreView, effectiveConfig, plannerStep, client) and its schemas:
 *  each version is measured on a store of its own schema, written with its own row helpers. */
interface Impl {
  readonly label: string;
  readonly db: typeof db;
  readonly client: typeof import('../src/ovsdb/client.ts');
  readonly schemas: readonly string[];
  /** The planner's PlanCache, as PlannerCore holds one (undefined in trees before it: their memos were global). */
  readonly cache: unknown;
}

async function loadImpl(label: string, tree: string): Promise<Impl> {
  const at = (p: string) => import(pathToFileURL(join(tree, p)).href);
  // Schema 3.0.0 added Sluice_Status (heartbeats and reports); a version before it keeps them in Sluice.
  const schemas = ['sluice.ovsschema', 'sluice-status.ovsschema']
    .map((f) => join(tree, 'schema', f))
    .filter((f) => existsSync(f));
  const cacheModule = join(tree, 'src/rollout/plan-cache.ts');
  const cache = existsSync(cacheModule) ? new (await at('src/rollout/plan-cache.ts')).PlanCache() : undefined;
  return {
    label,
    db: await at('src/store/db/index.ts'),
    client: await at('src/ovsdb/client.ts'),
    schemas,
    cache,
  };
}

/** Where a version keeps what: before schema 3.0.0 every table is in Sluice and heartbeats in Node_Status. */
function layoutOf(d: typeof db) {
  const split = d.splitMonitor !== undefined;
  const statusTables: readonly string[] = split ? d.STATUS_MONITOR_TABLES : [];
  return {
    monitor: split ? d.splitMonitor(d.ALL_TABLES_MONITOR) : ([[d.DB_NAME, d.ALL_TABLES_MONITOR]] as const),
    dbOf: (table: string) => (statusTables.includes(table) ? d.STATUS_DB_NAME : d.DB_NAME),
    heartbeatTable: split ? d.NodeHeartbeatTable : d.NodeStatusTable,
    heartbeatRow: (r: Replica, node: string) => (split ? d.nodeHeartbeat(r, node) : d.nodeStatus(r, node)),
  };
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

/** The store a size is measured on, written with version `d`'s helpers: desired state, released initial generation,
 *  status rows. */
async function fill(d: typeof db, client: OvsdbClient, r: Replica, vips: number): Promise<number> {
  const doc = syntheticDesiredDoc(vips);
  const at = layoutOf(d);
  const tx = (table: string, ops: readonly unknown[]) =>
    client.transact(at.dbOf(table), ...(ops as Operation[]));
  await writeInBatches(
    vips,
    (k) => d.desiredStateOps(r, parseConfig({ ...doc, loadBalancers: doc.loadBalancers.slice(0, k) })),
    (ops) => tx(d.GlobalTable.name, ops),
  );
  const config = parseConfig(doc);
  const first = planNext({ config, latest: null, connections: () => 0, now: Date.now() }).next!;
  await tx(d.PlanTable.name, d.publishGenerationOps(r, first, d.storedDesiredCfg(r), JSON.stringify(doc)));
  await tx(d.GlobalTable.name, d.releaseOps(first.number));
  const ack = { appliedGeneration: 1, appliedCfg: 1, appliedAt: Date.now(), error: undefined };
  // Where a version writes acknowledgements: Node_Status (Sluice) before Sluice_Status 1.1.0, the heartbeat after.
  const legacyAcks = (d as { nodeStatusOps?: (r: Replica, s: object) => unknown[] }).nodeStatusOps;
  if (d.heartbeatOps === undefined) {
    // Before schema 3.0.0: the heartbeat is a Node_Status column.
    await tx(
      d.NodeStatusTable.name,
      NODES.flatMap((node) => legacyAcks!(r, { node, ...ack, heartbeatAt: Date.now() })),
    );
  } else {
    if (legacyAcks !== undefined)
      await tx(
        d.NodeStatusTable.name,
        NODES.flatMap((node) => legacyAcks(r, { node, ...ack })),
      );
    await tx(
      d.NodeHeartbeatTable.name,
      NODES.flatMap((node) => d.heartbeatOps(r, node, Date.now(), { role: 'host' }, { node, ...ack })),
    );
  }
  const rows = config.loadBalancers.flatMap((lb) =>
    lb.backends.map((b) =>
      d.insert(d.BackendStatusTable, {
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
  for (let i = 0; i < rows.length; i += 10_000)
    await tx(d.BackendStatusTable.name, rows.slice(i, i + 10_000));
  // A connection report per host and load balancer (a host writes rows only for load balancers with connections:
  // here every one has some).
  const reports = config.loadBalancers.flatMap((lb, i) =>
    ['host1', 'host2'].map((node, h) =>
      d.insert(d.SlotConnectionsTable, {
        node,
        lb: lb.name,
        generation: 1,
        bits: 8,
        counts: d.encodeSlotCounts(new Map([[i & 255, new Map([[backendKey(lb.backends[h * 10]), 1]])]])),
        reported_at: Date.now(),
      }),
    ),
  );
  for (let i = 0; i < reports.length; i += 10_000)
    await tx(d.SlotConnectionsTable.name, reports.slice(i, i + 10_000));
  return rows.length;
}

/** Waits until `r` saw a change of `table` (its version moved from `from`). */
async function seen(r: Replica, table: string, from: string): Promise<void> {
  for (const t0 = Date.now(); r.version(table) === from; await sleep(2))
    if (Date.now() - t0 > 60_000) throw new Error(`the replica did not see ${table} change in 60 s`);
}

/** Connection counts written so far (each write a new value, so every version sees a change). */
let written = 0;

/** The changes of one round, written by `writer` with version `d`'s helpers, each followed by one measured step (a
 *  no-op writes nothing). A backend is added to one load balancer and removed again, so every round starts from the
 *  same desired state. */
function changes(
  d: typeof db,
  writer: Replica,
  round: number,
  vips: number,
): { kind: Kind; table: string | undefined; ops: () => Operation[] }[] {
  const { heartbeatTable, heartbeatRow } = layoutOf(d);
  const lb = `v${(1 + round) % vips}`;
  const status = () =>
    d.find(writer, d.BackendStatusTable, (x) => x.lb === lb && x.backend === '10.0.1.13:80')!;
  const set = (columns: Partial<db.BackendStatusRow>) => () => [
    d.update(d.BackendStatusTable, d.byUuid(status()._uuid), columns),
  ];
  const host = heartbeatRow(writer, 'host1')!;
  const lbRow = () => d.find(writer, d.LoadBalancerTable, (x) => x.name === lb)!;
  const address = `10.0.9.${10 + round}`;
  const bump = d.mutate(d.GlobalTable, [], [d.add(d.GlobalTable, 'desired_cfg', 1)]);
  const report = () => d.find(writer, d.SlotConnectionsTable, (x) => x.lb === lb && x.node === 'host1')!;
  return [
    {
      kind: 'heartbeat',
      table: heartbeatTable.name,
      ops: () => [
        d.update(heartbeatTable as typeof d.NodeHeartbeatTable, d.byUuid(host._uuid), {
          heartbeat_at: Date.now() + round,
        }),
      ],
    },
    { kind: 'connections', table: d.BackendStatusTable.name, ops: set({ connections: ++written }) },
    { kind: 'health', table: d.BackendStatusTable.name, ops: set({ health: 'down' }) },
    { kind: 'health', table: d.BackendStatusTable.name, ops: set({ health: 'up' }) },
    {
      kind: 'slot report',
      table: d.SlotConnectionsTable.name,
      ops: () => [
        d.update(d.SlotConnectionsTable, d.byUuid(report()._uuid), {
          counts: d.encodeSlotCounts(new Map([[round, new Map([['10.0.1.10:80', ++written]])]])),
          reported_at: Date.now(),
        }),
      ],
    },
    { kind: 'no-op', table: undefined, ops: () => [] },
    {
      kind: 'backend add',
      table: d.LoadBalancerTable.name,
      ops: () => [
        d.insert(
          d.BackendTable,
          { address, port: 80, host: 'host1', weight: 1, admin_state: 'active' },
          'added',
        ),
        d.mutate(d.LoadBalancerTable, d.byUuid(lbRow()._uuid), [
          d.setInsert(d.LoadBalancerTable, 'backends', ['added']),
        ]),
        bump,
      ],
    },
    {
      kind: 'backend del',
      table: d.LoadBalancerTable.name,
      ops: () => {
        const gone = lbRow().backends.find((u) => d.get(writer, d.BackendTable, u)?.address === address)!;
        return [
          d.mutate(d.LoadBalancerTable, d.byUuid(lbRow()._uuid), [
            d.setDelete(d.LoadBalancerTable, 'backends', [gone]),
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
  const d = impl.db;
  const at = layoutOf(d);
  const client = new impl.client.OvsdbClient({ remotes: [remote], probeIntervalMs: 0 });
  try {
    await client.connect();
    // Every table, as `sluice planner` of that version monitors them (3.0.0: one monitor per database).
    const [only] = at.monitor;
    const r = (at.monitor.length === 1
      ? (await client.monitor(only![0], only![1])).replica
      : (await client.monitorDatabases(at.monitor)).replica) as unknown as Replica;
    while (r.table(d.BackendStatusTable.name).size < rows) await sleep(10);
    const c0 = process.cpuUsage();
    (function stepFirst() {
      plannerWork(impl, r, Date.now());
    })();
    const firstMs = cpuMs(c0);
    plannerWork(impl, r, Date.now());
    const ms = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;
    for (let round = 0; round < ROUNDS; round++)
      for (const c of changes(d, writer.replica, round, vips)) {
        if (c.table !== undefined) {
          const from = r.version(c.table);
          await writer.client.transact(at.dbOf(c.table), ...c.ops());
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

/** One version at one size, on a store of its own schema filled with its own helpers. */
async function sizeOf(impl: Impl, vips: number): Promise<SizeResult> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-planner-step-'));
  const srv = await startStandalone(dir, impl.schemas);
  // No inactivity probe: ovsdb-server is silent for seconds while it takes 10,000 VIPs; this measures the planner's
  // step, not the session.
  const writer = new OvsdbClient({ remotes: [srv.unixRemote], probeIntervalMs: 0 });
  try {
    await writer.connect();
    const m = await writer.monitorDatabases(layoutOf(impl.db).monitor);
    const rows = await fill(impl.db, writer, m.replica, vips);
    say(`[${impl.label} ${vips} VIPs] store filled: ${rows} Backend_Status rows`);
    while (m.replica.table(impl.db.BackendStatusTable.name).size < rows) await sleep(10);
    return await measure(impl, srv.unixRemote, { client: writer, replica: m.replica }, vips, rows);
  } finally {
    writer.close();
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function size(impls: readonly Impl[], vips: number): Promise<SizeResult[]> {
  const out: SizeResult[] = [];
  for (const impl of impls) out.push(await sizeOf(impl, vips));
  return out;
}

const fmt = (x: number) => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;

function report(results: readonly SizeResult[], m: ReturnType<typeof machine>): string {
  const get = (impl: string, vips: number) => results.find((r) => r.impl === impl && r.vips === vips)!;
  const sizes = [...new Set(results.map((r) => r.vips))];
  const n = (v: number) => v.toLocaleString('en');
  const lines = [`## Planner step per change: ${sizes.map(n).join(', ')} VIPs, before and after`, ''];
  lines.push(machineLine(m, 'npm run bench -- planner-step'), '');
  lines.push(
    "A standalone ovsdb-server per version and size, of that version's schema (from 3.0.0 heartbeats and reports " +
      'are in the Sluice_Status database), no lab and no agents; every VIP has 20 backends (slotBits 8), each with a ' +
      'Backend_Status row (health up), a Slot_Connections row per host and VIP, nodes gw1, host1, host2 with a ' +
      'Node_Status row (and a heartbeat row), the initial generation published and released. Each version ' +
      'monitors every table as its `sluice planner` does; after each change has reached its replica it runs what ' +
      'the planner runs per step ' +
      '`sluice planner` does; after each change has reached its replica it runs what the planner runs per step ' +
      'from the store (readStoreView, effectiveConfig, plannerStep; PlannerCore adds loops over the three nodes). ' +
      "Changes, per round: a heartbeat (Node_Status; Node_Heartbeat from 3.0.0), one backend's connection count (Backend_Status), that " +
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

/** Both versions at every size, each on a store of its own schema; the section for docs/benchmarks.md. */
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
