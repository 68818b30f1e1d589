// sluice's state in the Sluice database: the desired state (read back as a config, and the smallest transaction
// that turns the stored state into a given config (desired -> diff -> one transaction, never "delete all and
// re-add": agents watching the tables see only what changed, and unchanged rows keep their UUIDs), published
// plans (generations) and node status.
// Pure apart from the types it shares with the client: no I/O here; callers run the ops with client.transact.

import type { Backend, Config, LoadBalancer, Node } from '../model/types.ts';
import { backendKey } from '../model/types.ts';
import { type PlanPoolRow, type PoolPlanRecord, poolToRow, rowToPool } from './encoding.ts';
import { OvsdbError } from './errors.ts';
import {
  type DatabaseSchema,
  encodeRow,
  type JsRow,
  type Mutation,
  namedUuid,
  type Operation,
  type TableSchema,
  uuid,
} from './protocol.ts';
import type { Replica } from './replica.ts';

/** Tables holding the desired state (what the CLI writes, the planner reads). */
export const DESIRED_TABLES = ['Global', 'Load_Balancer', 'Backend', 'Node'] as const;

/** `client.monitor(db, desiredStateMonitor())`: every column of the desired-state tables. */
export function desiredStateMonitor(): { [table: string]: Record<string, never> } {
  return Object.fromEntries(DESIRED_TABLES.map((t) => [t, {}]));
}

/** The config-file-shaped object (docs/config.md) the stored desired state describes; validate it with parseConfig. */
export interface StoredDesiredState {
  readonly desiredCfg: number;
  readonly config: {
    hashMode?: string;
    slotBits?: number;
    drainWindowSeconds?: number;
    nodes: { name: string; role: string; tunnelIp: string }[];
    loadBalancers: {
      name: string;
      vip: string;
      protocol: string;
      ports: number[];
      backends: { address: string; port?: number; host: string; weight: number; state: string }[];
    }[];
  };
}

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Reads the desired state from a replica that monitors DESIRED_TABLES. */
export function readDesiredState(r: Replica): StoredDesiredState {
  const g = r.rows('Global')[0];
  const nodes = r
    .rows('Node')
    .map((n) => ({ name: n.name as string, role: n.role as string, tunnelIp: n.tunnel_ip as string }))
    .sort(byName);
  const loadBalancers = r
    .rows('Load_Balancer')
    .map((lb) => ({
      name: lb.name as string,
      vip: lb.vip as string,
      protocol: lb.protocol as string,
      ports: [...(lb.ports as number[])].sort((a, b) => a - b),
      backends: (lb.backends as string[])
        .map((u) => r.get('Backend', u))
        .filter((b): b is JsRow => b !== undefined)
        .map((b) => ({
          address: b.address as string,
          ...(b.port === undefined ? {} : { port: b.port as number }),
          host: b.host as string,
          weight: b.weight as number,
          state: b.admin_state as string,
        })),
    }))
    .sort(byName);
  const config: StoredDesiredState['config'] = { nodes, loadBalancers };
  if (g !== undefined) {
    config.hashMode = g.hash_mode as string;
    config.slotBits = g.slot_bits as number;
    config.drainWindowSeconds = g.drain_window as number;
  }
  return { desiredCfg: g === undefined ? 0 : (g.desired_cfg as number), config };
}

function table(schema: DatabaseSchema, name: string): TableSchema {
  const t = schema.tables[name];
  if (t === undefined) throw new Error(`schema ${schema.name} has no table ${name}`);
  return t;
}

const nodeColumns = (n: Node) => ({ name: n.name, role: n.role, tunnel_ip: n.tunnelIp });
const backendColumns = (b: Backend) => ({
  address: b.address,
  port: b.port,
  host: b.host,
  weight: b.weight,
  admin_state: b.state,
});
const lbColumns = (lb: LoadBalancer) => ({ vip: lb.vip, protocol: lb.protocol, ports: [...lb.ports] });

/** Columns of `want` whose value differs from `row` (sets compared regardless of order). */
function changed(row: JsRow, want: { [c: string]: string | number | readonly number[] | undefined }): JsRow {
  const out: { [c: string]: string | number | readonly number[] | undefined } = {};
  for (const [c, v] of Object.entries(want)) {
    const have = row[c];
    const same = Array.isArray(v)
      ? Array.isArray(have) && JSON.stringify([...have].sort()) === JSON.stringify([...v].sort())
      : have === v;
    if (!same) out[c] = v;
  }
  return out as JsRow;
}

/**
 * The operations that turn the desired state in `current` (a replica of DESIRED_TABLES) into `config`, or `[]`
 * when they already agree. The transaction starts with a `wait` that the stored `desired_cfg` is still the one
 * `current` saw, so a concurrent writer makes it fail with "timed out" (retry with a fresh replica), and ends by
 * incrementing `desired_cfg` (like OVN's nb_cfg). Backends are matched by backendKey (address and port) within
 * their load balancer; a backend removed from every load balancer is garbage-collected by ovsdb-server.
 */
export function desiredStateOps(schema: DatabaseSchema, current: Replica, config: Config): Operation[] {
  const ops: Operation[] = [];
  const gT = table(schema, 'Global');
  const nodeT = table(schema, 'Node');
  const lbT = table(schema, 'Load_Balancer');
  const beT = table(schema, 'Backend');
  const byUuid = (u: string) => ['_uuid', '==', uuid(u)] as const;

  // Nodes, by name.
  const wantNodes = new Map(config.nodes.map((n) => [n.name, n]));
  for (const row of current.rows('Node')) {
    const want = wantNodes.get(row.name as string);
    if (want === undefined) ops.push({ op: 'delete', table: 'Node', where: [byUuid(row._uuid as string)] });
    else {
      const diff = changed(row, nodeColumns(want));
      if (Object.keys(diff).length > 0) {
        ops.push({
          op: 'update',
          table: 'Node',
          where: [byUuid(row._uuid as string)],
          row: encodeRow(nodeT, diff),
        });
      }
      wantNodes.delete(want.name);
    }
  }
  for (const n of wantNodes.values())
    ops.push({ op: 'insert', table: 'Node', row: encodeRow(nodeT, nodeColumns(n)) });

  // Load balancers, by name; their backends by key.
  let named = 0;
  const wantLbs = new Map(config.loadBalancers.map((lb) => [lb.name, lb]));
  for (const row of current.rows('Load_Balancer')) {
    const lbUuid = row._uuid as string;
    const want = wantLbs.get(row.name as string);
    if (want === undefined) {
      ops.push({ op: 'delete', table: 'Load_Balancer', where: [byUuid(lbUuid)] });
      continue;
    }
    wantLbs.delete(want.name);
    const diff = changed(row, lbColumns(want));
    if (Object.keys(diff).length > 0) {
      ops.push({ op: 'update', table: 'Load_Balancer', where: [byUuid(lbUuid)], row: encodeRow(lbT, diff) });
    }
    const wantBackends = new Map(want.backends.map((b) => [backendKey(b), b]));
    const drop: string[] = [];
    const add: string[] = [];
    for (const bu of row.backends as string[]) {
      const b = current.get('Backend', bu);
      if (b === undefined) continue;
      const key = backendKey({ address: b.address as string, port: b.port as number | undefined });
      const wb = wantBackends.get(key);
      if (wb === undefined) {
        drop.push(bu);
        continue;
      }
      wantBackends.delete(key);
      const bdiff = changed(b, backendColumns(wb));
      if (Object.keys(bdiff).length > 0) {
        ops.push({ op: 'update', table: 'Backend', where: [byUuid(bu)], row: encodeRow(beT, bdiff) });
      }
    }
    for (const b of wantBackends.values()) {
      const name = `backend${named++}`;
      ops.push({ op: 'insert', table: 'Backend', row: encodeRow(beT, backendColumns(b)), 'uuid-name': name });
      add.push(name);
    }
    const mutations: Mutation[] = [];
    if (drop.length > 0) mutations.push(['backends', 'delete', ['set', drop.map((u) => uuid(u))]]);
    if (add.length > 0)
      mutations.push(['backends', 'insert', ['set', add.map((n) => ['named-uuid', n] as const)]]);
    if (mutations.length > 0)
      ops.push({ op: 'mutate', table: 'Load_Balancer', where: [byUuid(lbUuid)], mutations });
  }
  for (const lb of wantLbs.values()) {
    const names = lb.backends.map(() => `backend${named++}`);
    lb.backends.forEach((b, i) => {
      ops.push({
        op: 'insert',
        table: 'Backend',
        row: encodeRow(beT, backendColumns(b)),
        'uuid-name': names[i]!,
      });
    });
    ops.push({
      op: 'insert',
      table: 'Load_Balancer',
      row: {
        ...encodeRow(lbT, { name: lb.name, ...lbColumns(lb) }),
        backends: ['set', names.map((n) => ['named-uuid', n] as const)],
      },
    });
  }

  // Global settings and the change counter.
  const g = current.rows('Global')[0];
  const settings = {
    hash_mode: config.hashMode,
    slot_bits: config.slotBits,
    drain_window: config.drainWindowSeconds,
  };
  if (g === undefined) {
    ops.push({ op: 'insert', table: 'Global', row: encodeRow(gT, { ...settings, desired_cfg: 1 }) });
    return ops;
  }
  const gdiff = changed(g, settings);
  if (Object.keys(gdiff).length > 0)
    ops.push({ op: 'update', table: 'Global', where: [], row: encodeRow(gT, gdiff) });
  if (ops.length === 0) return [];
  return [
    {
      op: 'wait',
      timeout: 0,
      table: 'Global',
      where: [],
      columns: ['desired_cfg'],
      until: '==',
      rows: [{ desired_cfg: g.desired_cfg as number }],
    },
    ...ops,
    { op: 'mutate', table: 'Global', where: [], mutations: [['desired_cfg', '+=', 1]] },
  ];
}

// ---------------------------------------------------------------------------------------------------------
// Plans: what the planner publishes and agents apply (tables Plan, Plan_Pool; Global.generation / Global.plan)

/** Tables an agent (or a standby planner) monitors to follow published plans. */
export const PLAN_TABLES = ['Global', 'Plan', 'Plan_Pool', 'Plan_Config'] as const;

/** One published generation (same shape as rollout's Generation). */
export interface GenerationRecord {
  readonly number: number;
  /** ms, the planner's clock. */
  readonly createdAt: number;
  readonly pools: ReadonlyMap<string, PoolPlanRecord>;
}

function samePoolRow(row: JsRow, want: PlanPoolRow): boolean {
  return (Object.keys(want) as (keyof PlanPoolRow)[]).every((k) => row[k] === want[k]);
}

/**
 * The transaction that publishes `gen` for `desiredCfg`: a `wait` that `Global.generation` is still the one
 * `current` saw (a second planner, or a stale replica, fails with "timed out"), Plan_Pool rows for pools that are
 * not already stored byte for byte (identical pools are shared by reference between generations), the Plan row,
 * and `Global.generation`/`Global.plan` pointing at it. `config` (the effective config document the generation was
 * planned from) goes in a Plan_Config row that the Plan references; like pools, a document already stored is
 * referenced, not copied, so the rollout's generations of one config change share one document (rows are never
 * modified: a reader may cache the parsed document by the row's UUID). `current` must replicate PLAN_TABLES.
 * Prepend `{op: 'assert', lock}` to make it conditional on holding the planner lock.
 */
export function publishGenerationOps(
  schema: DatabaseSchema,
  current: Replica,
  gen: GenerationRecord,
  desiredCfg: number,
  config?: string,
): Operation[] {
  const g = current.rows('Global')[0];
  if (g === undefined) throw new OvsdbError('SLUICE_E_OVSDB_VALUE', 'no Global row: nothing to plan for');
  const poolT = table(schema, 'Plan_Pool');
  const ops: Operation[] = [
    {
      op: 'wait',
      timeout: 0,
      table: 'Global',
      where: [],
      columns: ['generation'],
      until: '==',
      rows: [{ generation: g.generation as number }],
    },
  ];
  const refs: (readonly ['uuid', string] | readonly ['named-uuid', string])[] = [];
  const stored = current.rows('Plan_Pool');
  let n = 0;
  for (const name of [...gen.pools.keys()].sort()) {
    const row = poolToRow(gen.pools.get(name)!);
    const same = stored.find((r) => samePoolRow(r, row));
    if (same !== undefined) {
      refs.push(uuid(same._uuid as string));
      continue;
    }
    const id = `pool${n++}`;
    ops.push({ op: 'insert', table: 'Plan_Pool', row: encodeRow(poolT, { ...row }), 'uuid-name': id });
    refs.push(namedUuid(id));
  }
  let configRef: readonly ['uuid', string] | readonly ['named-uuid', string] | undefined;
  if (config !== undefined) {
    const same = current.rows('Plan_Config').find((r) => r.document === config);
    if (same !== undefined) configRef = uuid(same._uuid as string);
    else {
      ops.push({ op: 'insert', table: 'Plan_Config', row: { document: config }, 'uuid-name': 'config' });
      configRef = namedUuid('config');
    }
  }
  ops.push({
    op: 'insert',
    table: 'Plan',
    row: {
      generation: gen.number,
      desired_cfg: desiredCfg,
      created_at: Math.round(gen.createdAt),
      pools: ['set', refs],
      ...(configRef === undefined ? {} : { config: ['set', [configRef]] as const }),
    },
    'uuid-name': 'plan',
  });
  ops.push({
    op: 'update',
    table: 'Global',
    where: [],
    row: { generation: gen.number, plan: ['set', [namedUuid('plan')]] },
  });
  return ops;
}

/** The published generation `number` (default: the one Global.generation names), or undefined. */
export function readGeneration(
  current: Replica,
  number?: number,
): (GenerationRecord & { readonly desiredCfg: number }) | undefined {
  const want = number ?? (current.rows('Global')[0]?.generation as number | undefined);
  if (want === undefined) return undefined;
  const plan = current.find('Plan', (p) => p.generation === want);
  if (plan === undefined) return undefined;
  const pools = new Map<string, PoolPlanRecord>();
  for (const u of plan.pools as string[]) {
    const row = current.get('Plan_Pool', u);
    if (row === undefined)
      throw new OvsdbError('SLUICE_E_OVSDB_VALUE', `Plan ${want} references a missing Plan_Pool ${u}`);
    const pool = rowToPool(row);
    pools.set(pool.lb, pool);
  }
  return {
    number: want,
    createdAt: plan.created_at as number,
    desiredCfg: plan.desired_cfg as number,
    pools,
  };
}

/**
 * The config document generation `number` was planned from, and the UUID of its Plan_Config row (a cache key:
 * rows are never modified). Plans written before schema 1.2.0 kept it in `external_ids:config` (ref undefined).
 */
export function readPlanConfig(
  current: Replica,
  number: number,
): { document: string; ref: string | undefined } | undefined {
  const plan = current.find('Plan', (p) => p.generation === number);
  if (plan === undefined) return undefined;
  const ref = plan.config as string | undefined;
  if (ref !== undefined) {
    const row = current.get('Plan_Config', ref);
    return row === undefined ? undefined : { document: row.document as string, ref };
  }
  const old =
    plan.external_ids instanceof Map ? (plan.external_ids.get('config') as string | undefined) : undefined;
  return old === undefined ? undefined : { document: old, ref: undefined };
}

/** Deletes Plan rows older than `keepFrom` (their pools go with them unless a kept plan shares them). */
export function prunePlansOps(current: Replica, keepFrom: number): Operation[] {
  return current.rows('Plan').some((p) => (p.generation as number) < keepFrom)
    ? [{ op: 'delete', table: 'Plan', where: [['generation', '<', keepFrom]] }]
    : [];
}

// ---------------------------------------------------------------------------------------------------------
// Node status: what an agent applied (report what was applied, not what was asked)

export interface NodeStatusRecord {
  readonly node: string;
  readonly appliedGeneration: number;
  readonly appliedCfg: number;
  /** ms */
  readonly appliedAt: number;
  /** ms: the agent's lease heartbeat. */
  readonly heartbeatAt: number;
  readonly error: string | undefined;
}

/** Insert or update the node's Node_Status row (`current` must replicate Node_Status, at least this node's row). */
export function nodeStatusOps(schema: DatabaseSchema, current: Replica, s: NodeStatusRecord): Operation[] {
  const row = encodeRow(table(schema, 'Node_Status'), {
    node: s.node,
    applied_generation: s.appliedGeneration,
    applied_cfg: s.appliedCfg,
    applied_at: Math.round(s.appliedAt),
    heartbeat_at: Math.round(s.heartbeatAt),
    error: s.error,
  });
  const existing = current.find('Node_Status', (r) => r.node === s.node);
  return existing === undefined
    ? [{ op: 'insert', table: 'Node_Status', row }]
    : [{ op: 'update', table: 'Node_Status', where: [['_uuid', '==', uuid(existing._uuid as string)]], row }];
}
