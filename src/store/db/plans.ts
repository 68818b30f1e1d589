// Published plans in the Sluice database: what the planner publishes and agents apply (tables Plan, Plan_LB,
// Plan_Pool, Plan_Config; Global.generation, Global.plan and Global.options:gateway_generation). Pure: callers run the ops
// with client.transact.

import { OvsdbError } from '../../ovsdb/errors.ts';
import type { Operation } from '../../ovsdb/protocol.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import type { Columns } from './columns.ts';
import { type PoolPlanRecord, poolToRow, rowToPool } from './encoding.ts';
import { byUuid, insert, mapPut, mutate, remove, update, waitUnchanged, where } from './ops.ts';
import { find, get, PLAN_HEAD_COLUMNS, rows, rowsWith, single } from './read.ts';
import {
  GATEWAY_GENERATION_KEY,
  GlobalTable,
  LEGACY_PLAN_CONFIG_KEY,
  PLAN_LAYOUT_KEY,
  PLAN_LB_ROWS,
  PlanConfigTable,
  type PlanLbRow,
  PlanLbTable,
  type PlanPoolRow,
  PlanPoolTable,
  type PlanRow,
  PlanTable,
  RETIRED_LB_IDS_KEY,
} from './tables.ts';

/** One published generation (same shape as rollout's Generation). */
export interface GenerationRecord {
  readonly number: number;
  /** ms, the planner's clock. */
  readonly createdAt: number;
  readonly pools: ReadonlyMap<string, PoolPlanRecord>;
  /** Ids of load balancers that left -> when (ms): Plan.external_ids:retired_lb_ids (rollout's Generation). */
  readonly retiredLbIds?: ReadonlyMap<number, number>;
}

/** Plan.external_ids:retired_lb_ids: `id:ms` pairs separated by spaces. */
export function encodeRetiredLbIds(retired: ReadonlyMap<number, number>): string {
  return [...retired].map(([id, at]) => `${id}:${Math.round(at)}`).join(' ');
}

/** Inverse of encodeRetiredLbIds; throws SLUICE_E_OVSDB_VALUE naming the plan on a malformed pair. */
export function decodeRetiredLbIds(s: string, generation: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const pair of s.split(' ').filter((x) => x !== '')) {
    const m = /^(\d+):(\d+)$/.exec(pair);
    if (m === null)
      throw new OvsdbError(
        'SLUICE_E_OVSDB_VALUE',
        `Plan ${generation} retired_lb_ids: bad pair ${JSON.stringify(pair)}`,
      );
    out.set(Number(m[1]), Number(m[2]));
  }
  return out;
}

/** The latest published generation (Global.generation; 0: none). Hosts apply it. */
export function publishedGeneration(r: Replica): number {
  return single(r, GlobalTable)?.generation ?? 0;
}

/** The generation released to gateways (Global.options:gateway_generation; 0: none). */
export function gatewayGeneration(r: Replica): number {
  return Number(single(r, GlobalTable)?.options.get(GATEWAY_GENERATION_KEY) ?? 0) || 0;
}

/** The head (generation, desired_cfg, created_at) of the latest published plan; works on PLAN_HEAD_MONITOR. */
export function publishedPlanHead(
  r: Replica,
): Pick<PlanRow, 'generation' | 'desired_cfg' | 'created_at'> | undefined {
  const generation = publishedGeneration(r);
  return rowsWith(r, PlanTable, PLAN_HEAD_COLUMNS).find((p) => p.generation === generation);
}

/** A stored pool row's content as one string (every column, in the schema's order): equal rows, equal keys. */
function poolRowKey(row: Omit<PlanPoolRow, '_uuid'>): string {
  return JSON.stringify(Object.keys(PlanPoolTable.columns).map((k) => row[k as keyof typeof row]));
}

/**
 * The config a generation was planned from, as the store keeps it (schema 2.0.0): `base` is the document (JSON,
 * config-file shape) with `loadBalancers` replaced by their names in order, `lbs` each load balancer's own JSON.
 * A change to one load balancer changes one entry; the base changes with the nodes, the global settings, or the
 * set of load balancers.
 */
export interface PlanDocs {
  readonly base: string;
  readonly lbs: ReadonlyMap<string, string>;
}

/** A config document (config-file shape) split as PlanDocs. */
export function splitPlanDocument(doc: {
  readonly loadBalancers: readonly { readonly name: string }[];
}): PlanDocs {
  const lbs = new Map(doc.loadBalancers.map((lb) => [lb.name, JSON.stringify(lb)]));
  return { base: JSON.stringify({ ...doc, loadBalancers: doc.loadBalancers.map((lb) => lb.name) }), lbs };
}

/** The config document PlanDocs hold (config-file shape, for parseConfig); throws SLUICE_E_OVSDB_VALUE when a load
 *  balancer the base names has no document. */
export function planDocument(docs: PlanDocs): Record<string, unknown> {
  const base = JSON.parse(docs.base) as Record<string, unknown>;
  const names = Array.isArray(base.loadBalancers) ? (base.loadBalancers as unknown[]) : [];
  base.loadBalancers = names.map((name) => {
    const lb = docs.lbs.get(String(name));
    if (lb === undefined)
      throw new OvsdbError(
        'SLUICE_E_OVSDB_VALUE',
        `plan config names load balancer ${name}, which has no document`,
      );
    return JSON.parse(lb) as unknown;
  });
  return base;
}

/** Same documents (the planner publishes a generation when the effective config's differ from the latest plan's). */
export function samePlanDocs(a: PlanDocs | undefined, b: PlanDocs | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  // The planner asks on every step with the same two objects while neither moved: 10,000 documents (16 MB) compared
  // character by character each time, unless remembered.
  const known = sameDocsMemo.get(a)?.get(b);
  if (known !== undefined) return known;
  let same = a.base === b.base && a.lbs.size === b.lbs.size;
  if (same) for (const [name, doc] of a.lbs) if (b.lbs.get(name) !== doc) same = false;
  const m = sameDocsMemo.get(a) ?? new WeakMap<PlanDocs, boolean>();
  sameDocsMemo.set(a, m);
  m.set(b, same);
  return same;
}

/** samePlanDocs answers by the two (immutable) PlanDocs objects. */
const sameDocsMemo = new WeakMap<PlanDocs, WeakMap<PlanDocs, boolean>>();

/** Plan_LB rows of the latest published generation (until_generation 0), by load balancer. */
function currentLbRows(current: Replica): Map<string, PlanLbRow> {
  const out = new Map<string, PlanLbRow>();
  for (const row of rows(current, PlanLbTable)) if (row.until_generation === 0) out.set(row.lb, row);
  return out;
}

/** The Plan_Pool row each pool read by readGeneration came from (rows are never modified): an unchanged pool is
 *  known by identity, without encoding it again. */
const poolSource = new WeakMap<PoolPlanRecord, string>();

/**
 * The transaction that publishes `gen` for `desiredCfg`: a `wait` that `Global.generation` is still the one
 * `current` saw (a second planner, or a stale replica, fails it: isConflict), then, per load balancer whose pool or
 * config document differs from its row in the latest generation, that row ended (`until_generation`) and a new one
 * started, with a Plan_Pool row and a Plan_Config row for its document only where those changed; load balancers that
 * left end their row. The Plan row references the base document (PlanDocs: a Plan_Config row, shared with the latest
 * plan when equal) and `Global.generation`/`Global.plan` point at it. So a generation that changes one pool writes
 * that pool, whatever the number of load balancers; one transaction, so a reader sees all of it or none. Rows are
 * never modified but for `until_generation`: a reader may cache what it parsed by a row's UUID. `config` may be the
 * whole document as JSON (split here). `current` must replicate PLAN_MONITOR. Prepend `{op: 'assert', lock}` to make
 * it conditional on holding the planner lock.
 */
export function publishGenerationOps(
  current: Replica,
  gen: GenerationRecord,
  desiredCfg: number,
  config?: PlanDocs | string,
): Operation[] {
  const g = single(current, GlobalTable);
  if (g === undefined) throw new OvsdbError('SLUICE_E_OVSDB_VALUE', 'no Global row: nothing to plan for');
  const docs = typeof config === 'string' ? splitPlanDocument(JSON.parse(config)) : config;
  const ops: Operation[] = [waitUnchanged(GlobalTable, [], { generation: g.generation })];
  const live = currentLbRows(current);
  const end = (row: PlanLbRow) => update(PlanLbTable, byUuid(row._uuid), { until_generation: gen.number });
  let n = 0;
  for (const name of [...gen.pools.keys()].sort()) {
    const pool = gen.pools.get(name)!;
    const cur = live.get(name);
    const doc = docs?.lbs.get(name);
    // A pool read from a row that is still stored (the planner's unchanged pools, also from a plan of before 2.0.0)
    // is that row; another is compared with its load balancer's current row.
    let poolRef = poolSource.get(pool);
    if (poolRef !== undefined && get(current, PlanPoolTable, poolRef) === undefined) poolRef = undefined;
    let row: Columns<PlanPoolRow> | undefined;
    if (poolRef === undefined) {
      row = poolToRow(pool);
      const stored = cur === undefined ? undefined : get(current, PlanPoolTable, cur.pool);
      if (stored !== undefined && poolRowKey(stored) === poolRowKey(row)) poolRef = stored._uuid;
    }
    const curDoc =
      cur?.config === undefined ? undefined : get(current, PlanConfigTable, cur.config)?.document;
    const configRef = doc === undefined ? undefined : doc === curDoc ? cur?.config : undefined;
    if (cur !== undefined && poolRef === cur.pool && configRef === cur.config) continue;
    const id = n++;
    if (poolRef === undefined) ops.push(insert(PlanPoolTable, row ?? poolToRow(pool), `pool${id}`));
    if (doc !== undefined && configRef === undefined)
      ops.push(insert(PlanConfigTable, { document: doc }, `doc${id}`));
    if (cur !== undefined) ops.push(end(cur));
    ops.push(
      insert(PlanLbTable, {
        lb: name,
        from_generation: gen.number,
        until_generation: 0,
        pool: poolRef ?? `pool${id}`,
        config: doc === undefined ? undefined : (configRef ?? `doc${id}`),
      }),
    );
  }
  for (const [name, row] of live) if (!gen.pools.has(name)) ops.push(end(row));
  const configRef = docs === undefined ? undefined : baseConfigRef(current, g.plan, docs.base, ops);
  ops.push(
    insert(
      PlanTable,
      {
        generation: gen.number,
        desired_cfg: desiredCfg,
        created_at: Math.round(gen.createdAt),
        pools: [],
        ...(configRef === undefined ? {} : { config: configRef }),
        external_ids: new Map([
          [PLAN_LAYOUT_KEY, PLAN_LB_ROWS],
          ...(gen.retiredLbIds !== undefined && gen.retiredLbIds.size > 0
            ? [[RETIRED_LB_IDS_KEY, encodeRetiredLbIds(gen.retiredLbIds)] as const]
            : []),
        ]),
      },
      'plan',
    ),
  );
  ops.push(update(GlobalTable, [], { generation: gen.number, plan: 'plan' }));
  return ops;
}

/** The base document's Plan_Config row: the latest plan's when it holds the same document, else a new one (its
 *  insert appended to `ops`). */
function baseConfigRef(
  current: Replica,
  latestPlan: string | undefined,
  base: string,
  ops: Operation[],
): string {
  const ref = latestPlan === undefined ? undefined : get(current, PlanTable, latestPlan)?.config;
  if (ref !== undefined && get(current, PlanConfigTable, ref)?.document === base) return ref;
  ops.push(insert(PlanConfigTable, { document: base }, 'config'));
  return 'config';
}

/** The transaction that releases `generation` to gateways, if it is still the latest published one. */
export function releaseOps(generation: number): Operation[] {
  return [
    waitUnchanged(GlobalTable, [], { generation }),
    mutate(GlobalTable, [], mapPut(GlobalTable, 'options', { [GATEWAY_GENERATION_KEY]: String(generation) })),
  ];
}

/** Whether `plan` keeps its load balancers in Plan_LB rows (schema 2.0.0) rather than in Plan.pools. */
export function hasLbRows(plan: PlanRow): boolean {
  return plan.external_ids.get(PLAN_LAYOUT_KEY) === PLAN_LB_ROWS;
}

/** The Plan_LB rows generation `number` is made of. */
function lbRowsOf(current: Replica, number: number): PlanLbRow[] {
  return rows(current, PlanLbTable).filter(
    (r) => r.from_generation <= number && (r.until_generation === 0 || r.until_generation > number),
  );
}

/** Decoded pools by their (frozen, never modified) row object: a generation that changes one pool decodes one. */
const decodedPools = new WeakMap<PlanPoolRow, PoolPlanRecord>();

/** Plan_Pool row `u` decoded (once per row object); throws SLUICE_E_OVSDB_VALUE naming plan `want` when it is missing. */
export function decodePool(current: Replica, want: number, u: string): PoolPlanRecord {
  const row = get(current, PlanPoolTable, u);
  if (row === undefined)
    throw new OvsdbError('SLUICE_E_OVSDB_VALUE', `Plan ${want} references a missing Plan_Pool ${u}`);
  let pool = decodedPools.get(row);
  if (pool === undefined) {
    pool = rowToPool(row);
    decodedPools.set(row, pool);
    poolSource.set(pool, u);
  }
  return pool;
}

/** The published generation `number` (default: the one Global.generation names), or undefined. */
export function readGeneration(
  current: Replica,
  number?: number,
): (GenerationRecord & { readonly desiredCfg: number }) | undefined {
  const want = number ?? single(current, GlobalTable)?.generation;
  if (want === undefined) return undefined;
  const plan = find(current, PlanTable, (p) => p.generation === want);
  return plan === undefined ? undefined : generationOf(current, plan, lbRowsFor(current, plan));
}

/** The Plan_LB rows of `plan` (undefined for a plan of before 2.0.0, which lists its pools itself). */
function lbRowsFor(current: Replica, plan: PlanRow): PlanLbRow[] | undefined {
  return hasLbRows(plan) ? lbRowsOf(current, plan.generation) : undefined;
}

function generationOf(
  current: Replica,
  plan: PlanRow,
  lbRows: readonly PlanLbRow[] | undefined,
): GenerationRecord & { readonly desiredCfg: number } {
  const want = plan.generation;
  const pools = new Map<string, PoolPlanRecord>();
  const refs = lbRows !== undefined ? lbRows.map((r) => r.pool) : plan.pools;
  for (const u of refs) {
    const pool = decodePool(current, want, u);
    pools.set(pool.lb, pool);
  }
  const retired = plan.external_ids.get(RETIRED_LB_IDS_KEY);
  return {
    number: want,
    createdAt: plan.created_at,
    desiredCfg: plan.desired_cfg,
    pools,
    ...(retired !== undefined ? { retiredLbIds: decodeRetiredLbIds(retired, want) } : {}),
  };
}

/**
 * The config documents generation `number` was planned from, and a cache key for them (`ref`: the UUIDs of the
 * Plan_Config rows they came from, which are never modified; undefined for plans written before schema 1.2.0, whose
 * document was in `external_ids:config`). Plans written before 2.0.0 held the whole document in one row: split here.
 */
export function readPlanConfig(
  current: Replica,
  number: number,
): { docs: PlanDocs; ref: string | undefined } | undefined {
  const plan = find(current, PlanTable, (p) => p.generation === number);
  return plan === undefined ? undefined : planConfigOf(current, plan, lbRowsFor(current, plan));
}

function planConfigOf(
  current: Replica,
  plan: PlanRow,
  lbRows: readonly PlanLbRow[] | undefined,
): { docs: PlanDocs; ref: string | undefined } | undefined {
  const ref = plan.config;
  const whole = (doc: string) =>
    splitPlanDocument(JSON.parse(doc) as Parameters<typeof splitPlanDocument>[0]);
  if (ref === undefined) {
    const old = plan.external_ids.get(LEGACY_PLAN_CONFIG_KEY);
    return old === undefined ? undefined : { docs: whole(old), ref: undefined };
  }
  const base = get(current, PlanConfigTable, ref)?.document;
  if (base === undefined) return undefined;
  if (lbRows === undefined) return { docs: whole(base), ref };
  const lbs = new Map<string, string>();
  const key = [ref];
  for (const row of lbRows) {
    const doc = row.config === undefined ? undefined : get(current, PlanConfigTable, row.config)?.document;
    if (doc === undefined) continue;
    lbs.set(row.lb, doc);
    key.push(`${row.lb}=${row.config}`);
  }
  return { docs: { base, lbs }, ref: key.sort().join(' ') };
}

/** A published generation with the config it was planned from. */
export interface PublishedPlan {
  readonly generation: GenerationRecord;
  /** The desired_cfg the generation was planned from. */
  readonly desiredCfg: number;
  /** The config documents, undefined when the plan has none. */
  readonly docs: PlanDocs | undefined;
  /** The whole config document (JSON), undefined when the plan has none; assembled from `docs` when first read. */
  readonly config: string | undefined;
  /** A cache key of the config's Plan_Config rows (rows are never modified); undefined for plans before 1.2.0. */
  readonly configRef: string | undefined;
}

/** Generation `number` (default: Global.generation) with the config documents it was planned from. */
export function readPlan(r: Replica, number?: number): PublishedPlan | undefined {
  const want = number ?? single(r, GlobalTable)?.generation;
  if (want === undefined) return undefined;
  const plan = find(r, PlanTable, (p) => p.generation === want);
  if (plan === undefined) return undefined;
  // One pass over Plan_LB for both the pools and the documents (10,000 rows at 10,000 VIPs).
  const lbRows = lbRowsFor(r, plan);
  const rec = generationOf(r, plan, lbRows);
  const doc = planConfigOf(r, plan, lbRows);
  let whole: string | undefined;
  return {
    generation: {
      number: rec.number,
      createdAt: rec.createdAt,
      pools: rec.pools,
      ...(rec.retiredLbIds !== undefined ? { retiredLbIds: rec.retiredLbIds } : {}),
    },
    desiredCfg: rec.desiredCfg,
    docs: doc?.docs,
    get config() {
      if (doc !== undefined) whole ??= JSON.stringify(planDocument(doc.docs));
      return whole;
    },
    configRef: doc?.ref,
  };
}

/** Deletes Plan rows older than `keepFrom`, and the Plan_LB rows only those used (their pools and documents go with
 *  them unless a kept row shares them). */
export function prunePlansOps(current: Replica, keepFrom: number): Operation[] {
  const ops: Operation[] = [];
  if (rows(current, PlanTable).some((p) => p.generation < keepFrom))
    ops.push(remove(PlanTable, [where(PlanTable, 'generation', '<', keepFrom)]));
  const ended = (r: PlanLbRow) => r.until_generation > 0 && r.until_generation <= keepFrom;
  if (rows(current, PlanLbTable).some(ended))
    ops.push(
      remove(PlanLbTable, [
        where(PlanLbTable, 'until_generation', '>', 0),
        where(PlanLbTable, 'until_generation', '<=', keepFrom),
      ]),
    );
  return ops;
}
