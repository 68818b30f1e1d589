// Reading the planner's StoreView (core.ts) out of an OVSDB replica, and the small encodings the control plane adds
// to sluice's schema without new columns: Global.options:gateway_generation (the generation released to gateways), Node_Status.external_ids
// (fenced, role; fenced_by_planner, fenced_by_operator), Slot_Connections.counts (JSON {slot: {backendKey: n}}).

import type { Operation } from '../ovsdb/protocol.ts';
import type { Replica } from '../ovsdb/replica.ts';
import { readDesiredState, readGeneration, readPlanConfig } from '../ovsdb/store.ts';
import type { Generation } from '../rollout/types.ts';
import type { Health, NodeStatusView, SlotReport, StoreView } from './core.ts';

export const PLANNER_LOCK = 'sluice_planner';
export const DB = 'Sluice';
export const GATEWAY_GENERATION_KEY = 'gateway_generation';
/** Node_Status.external_ids key the planner sets (value: when, ms) after its fence command took a gateway out of
 *  ECMP; the gateway's agent deletes it when it rejoins (acknowledges the released generation, then announces). */
export const PLANNER_FENCED_KEY = 'fenced_by_planner';
/** Node_Status.external_ids key `sluice node confirm-fenced` sets (value: when, ms): the operator took the gateway
 *  out of ECMP by hand (STONITH's manual confirmation, for when the fence command cannot). Read and cleared like
 *  PLANNER_FENCED_KEY. */
export const OPERATOR_FENCED_KEY = 'fenced_by_operator';

/** Records a fence from outside the gateway (`key`: PLANNER_FENCED_KEY or OPERATOR_FENCED_KEY) on its Node_Status
 *  row; a gateway that never reported gets a row that says only this. */
export function fenceRecordOp(r: Replica, node: string, key: string, at: number): Operation {
  const exists = r.find('Node_Status', (row) => row.node === node) !== undefined;
  return exists
    ? {
        op: 'mutate',
        table: 'Node_Status',
        where: [['node', '==', node]],
        mutations: [
          ['external_ids', 'delete', ['set', [key]]],
          ['external_ids', 'insert', ['map', [[key, String(at)]]]],
        ],
      }
    : {
        op: 'insert',
        table: 'Node_Status',
        row: {
          node,
          applied_generation: 0,
          applied_cfg: 0,
          applied_at: 0,
          heartbeat_at: 0,
          external_ids: ['map', [[key, String(at)]]],
        },
      };
}

/** Every table the planner monitors. */
export const PLANNER_TABLES = [
  'Global',
  'Load_Balancer',
  'Backend',
  'Node',
  'Plan',
  'Plan_Pool',
  'Plan_Config',
  'Node_Status',
  'Backend_Status',
  'Slot_Connections',
] as const;

export function mapGet(v: unknown, key: string): string | undefined {
  return v instanceof Map ? (v.get(key) as string | undefined) : undefined;
}

export function gatewayGeneration(r: Replica): number {
  const g = r.rows('Global')[0];
  return Number(mapGet(g?.options, GATEWAY_GENERATION_KEY) ?? 0) || 0;
}

/**
 * Generation `number` (default: Global.generation) with the config document it was planned from (Plan.config ->
 * Plan_Config, shared by the generations of one config) and that document's row UUID (`configRef`, a cache key).
 */
export function readPlan(
  r: Replica,
  number?: number,
): { generation: Generation; config: string | undefined; configRef: string | undefined } | undefined {
  const rec = readGeneration(r, number);
  if (rec === undefined) return undefined;
  const doc = readPlanConfig(r, rec.number);
  return {
    generation: { number: rec.number, createdAt: rec.createdAt, pools: rec.pools },
    config: doc?.document,
    configRef: doc?.ref,
  };
}

export function encodeSlotCounts(counts: ReadonlyMap<number, ReadonlyMap<string, number>>): string {
  const o: Record<string, Record<string, number>> = {};
  for (const [slot, perKey] of [...counts].sort((a, b) => a[0] - b[0])) {
    const k: Record<string, number> = {};
    for (const [key, n] of [...perKey].sort()) if (n > 0) k[key] = n;
    if (Object.keys(k).length > 0) o[String(slot)] = k;
  }
  return JSON.stringify(o);
}

export function decodeSlotCounts(s: string): Map<number, Map<string, number>> {
  const out = new Map<number, Map<string, number>>();
  let raw: unknown;
  try {
    raw = JSON.parse(s);
  } catch {
    return out;
  }
  if (raw === null || typeof raw !== 'object') return out;
  for (const [slot, perKey] of Object.entries(raw as Record<string, unknown>)) {
    if (perKey === null || typeof perKey !== 'object') continue;
    const m = new Map<string, number>();
    for (const [key, n] of Object.entries(perKey as Record<string, unknown>))
      if (typeof n === 'number') m.set(key, n);
    out.set(Number(slot), m);
  }
  return out;
}

export function readStoreView(r: Replica): StoreView {
  const g = r.rows('Global')[0];
  const desired = g === undefined ? undefined : readDesiredState(r);
  const plan = readPlan(r);
  const nodeStatus = new Map<string, NodeStatusView>();
  for (const row of r.rows('Node_Status')) {
    nodeStatus.set(row.node as string, {
      appliedGeneration: row.applied_generation as number,
      heartbeatAt: row.heartbeat_at as number,
      fenced: mapGet(row.external_ids, 'fenced') === 'true',
      plannerFenced: mapGet(row.external_ids, PLANNER_FENCED_KEY) !== undefined,
      operatorFenced: mapGet(row.external_ids, OPERATOR_FENCED_KEY) !== undefined,
      error: row.error as string | undefined,
    });
  }
  const backendHealth = new Map<string, Health>();
  for (const row of r.rows('Backend_Status')) {
    const k = `${row.lb as string} ${row.backend as string}`;
    const h = row.health as Health;
    if (backendHealth.get(k) !== 'down') backendHealth.set(k, h);
  }
  const slotReports = new Map<string, Map<string, SlotReport>>();
  for (const row of r.rows('Slot_Connections')) {
    const node = row.node as string;
    let m = slotReports.get(node);
    if (m === undefined) {
      m = new Map();
      slotReports.set(node, m);
    }
    m.set(row.lb as string, { bits: row.bits as number, counts: decodeSlotCounts(row.counts as string) });
  }
  return {
    desiredCfg: desired?.desiredCfg ?? 0,
    desired: desired?.config,
    latest: plan?.generation ?? null,
    latestConfig: plan?.config,
    gatewayGeneration: gatewayGeneration(r),
    nodeStatus,
    backendHealth,
    slotReports,
  };
}

/** Sets one key of a map column (delete then insert: RFC 7047 map insert does not overwrite). */
export function setMapKeyOp(table: string, column: string, key: string, value: string): Operation {
  return {
    op: 'mutate',
    table,
    where: [],
    mutations: [
      [column, 'delete', ['set', [key]]],
      [column, 'insert', ['map', [[key, value]]]],
    ],
  };
}
