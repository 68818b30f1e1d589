// Published plans in the Sluice database: what the planner publishes and agents apply (tables Plan, Plan_Pool,
// Plan_Config; Global.generation, Global.plan and Global.options:gateway_generation). Pure: callers run the ops
// with client.transact.

import { OvsdbError } from '../../ovsdb/errors.ts';
import type { Operation } from '../../ovsdb/protocol.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import { type PoolPlanRecord, poolToRow, rowToPool } from './encoding.ts';
import { insert, mapPut, mutate, remove, update, waitUnchanged, where } from './ops.ts';
import { find, get, PLAN_HEAD_COLUMNS, rows, rowsWith, single } from './read.ts';
import {
  GATEWAY_GENERATION_KEY,
  GlobalTable,
  LEGACY_PLAN_CONFIG_KEY,
  PlanConfigTable,
  type PlanPoolRow,
  PlanPoolTable,
  type PlanRow,
  PlanTable,
} from './tables.ts';

/** One published generation (same shape as rollout's Generation). */
export interface GenerationRecord {
  readonly number: number;
  /** ms, the planner's clock. */
  readonly createdAt: number;
  readonly pools: ReadonlyMap<string, PoolPlanRecord>;
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
 * The transaction that publishes `gen` for `desiredCfg`: a `wait` that `Global.generation` is still the one
 * `current` saw (a second planner, or a stale replica, fails it: isConflict), Plan_Pool rows for pools that are not
 * already stored byte for byte (identical pools are shared by reference between generations), the Plan row, and
 * `Global.generation`/`Global.plan` pointing at it. `config` (the effective config document the generation was
 * planned from) goes in a Plan_Config row that the Plan references; like pools, a document already stored is
 * referenced, not copied, so the rollout's generations of one config change share one document (rows are never
 * modified: a reader may cache the parsed document by the row's UUID). `current` must replicate PLAN_MONITOR.
 * Prepend `{op: 'assert', lock}` to make it conditional on holding the planner lock.
 */
export function publishGenerationOps(
  current: Replica,
  gen: GenerationRecord,
  desiredCfg: number,
  config?: string,
): Operation[] {
  const g = single(current, GlobalTable);
  if (g === undefined) throw new OvsdbError('SLUICE_E_OVSDB_VALUE', 'no Global row: nothing to plan for');
  const ops: Operation[] = [waitUnchanged(GlobalTable, [], { generation: g.generation })];
  const refs: string[] = [];
  // By content, not by scanning: a plan of 1,000 pools against 5 stored plans is 1,000 lookups, not 5 million.
  const stored = new Map(rows(current, PlanPoolTable).map((r) => [poolRowKey(r), r]));
  let n = 0;
  for (const name of [...gen.pools.keys()].sort()) {
    const row = poolToRow(gen.pools.get(name)!);
    const same = stored.get(poolRowKey(row));
    if (same !== undefined) {
      refs.push(same._uuid);
      continue;
    }
    const id = `pool${n++}`;
    ops.push(insert(PlanPoolTable, row, id));
    refs.push(id);
  }
  let configRef: string | undefined;
  if (config !== undefined) {
    const same = find(current, PlanConfigTable, (r) => r.document === config);
    if (same !== undefined) configRef = same._uuid;
    else {
      ops.push(insert(PlanConfigTable, { document: config }, 'config'));
      configRef = 'config';
    }
  }
  ops.push(
    insert(
      PlanTable,
      {
        generation: gen.number,
        desired_cfg: desiredCfg,
        created_at: Math.round(gen.createdAt),
        pools: refs,
        ...(configRef === undefined ? {} : { config: configRef }),
      },
      'plan',
    ),
  );
  ops.push(update(GlobalTable, [], { generation: gen.number, plan: 'plan' }));
  return ops;
}

/** The transaction that releases `generation` to gateways, if it is still the latest published one. */
export function releaseOps(generation: number): Operation[] {
  return [
    waitUnchanged(GlobalTable, [], { generation }),
    mutate(GlobalTable, [], mapPut(GlobalTable, 'options', { [GATEWAY_GENERATION_KEY]: String(generation) })),
  ];
}

/** The published generation `number` (default: the one Global.generation names), or undefined. */
export function readGeneration(
  current: Replica,
  number?: number,
): (GenerationRecord & { readonly desiredCfg: number }) | undefined {
  const want = number ?? single(current, GlobalTable)?.generation;
  if (want === undefined) return undefined;
  const plan = find(current, PlanTable, (p) => p.generation === want);
  if (plan === undefined) return undefined;
  const pools = new Map<string, PoolPlanRecord>();
  for (const u of plan.pools) {
    const row = get(current, PlanPoolTable, u);
    if (row === undefined)
      throw new OvsdbError('SLUICE_E_OVSDB_VALUE', `Plan ${want} references a missing Plan_Pool ${u}`);
    const pool = rowToPool(row);
    pools.set(pool.lb, pool);
  }
  return { number: want, createdAt: plan.created_at, desiredCfg: plan.desired_cfg, pools };
}

/**
 * The config document generation `number` was planned from, and the UUID of its Plan_Config row (a cache key:
 * rows are never modified). Plans written before schema 1.2.0 kept it in `external_ids:config` (ref undefined).
 */
export function readPlanConfig(
  current: Replica,
  number: number,
): { document: string; ref: string | undefined } | undefined {
  const plan = find(current, PlanTable, (p) => p.generation === number);
  if (plan === undefined) return undefined;
  const ref = plan.config;
  if (ref !== undefined) {
    const row = get(current, PlanConfigTable, ref);
    return row === undefined ? undefined : { document: row.document, ref };
  }
  const old = plan.external_ids.get(LEGACY_PLAN_CONFIG_KEY);
  return old === undefined ? undefined : { document: old, ref: undefined };
}

/** A published generation with the config it was planned from. */
export interface PublishedPlan {
  readonly generation: GenerationRecord;
  /** The desired_cfg the generation was planned from. */
  readonly desiredCfg: number;
  /** The config document (JSON), undefined when the plan has none. */
  readonly config: string | undefined;
  /** The UUID of the config's Plan_Config row: a cache key (rows are never modified). */
  readonly configRef: string | undefined;
}

/** Generation `number` (default: Global.generation) with the config document it was planned from. */
export function readPlan(r: Replica, number?: number): PublishedPlan | undefined {
  const rec = readGeneration(r, number);
  if (rec === undefined) return undefined;
  const doc = readPlanConfig(r, rec.number);
  return {
    generation: { number: rec.number, createdAt: rec.createdAt, pools: rec.pools },
    desiredCfg: rec.desiredCfg,
    config: doc?.document,
    configRef: doc?.ref,
  };
}

/** Deletes Plan rows older than `keepFrom` (their pools go with them unless a kept plan shares them). */
export function prunePlansOps(current: Replica, keepFrom: number): Operation[] {
  return rows(current, PlanTable).some((p) => p.generation < keepFrom)
    ? [remove(PlanTable, [where(PlanTable, 'generation', '<', keepFrom)])]
    : [];
}
