// Reading the planner's StoreView (core.ts) out of the Sluice database (through src/store/db), and the planner's
// lock name.

import type { Replica } from '../ovsdb/replica.ts';
import {
  BackendStatusTable,
  decodeSlotCounts,
  fenceMarks,
  GlobalTable,
  gatewayGeneration,
  NodeStatusTable,
  readDesiredState,
  readPlan,
  rows,
  SlotConnectionsTable,
  single,
} from '../store/db/index.ts';
import type { Health, NodeStatusView, SlotReport, StoreView } from './core.ts';

export const PLANNER_LOCK = 'sluice_planner';

export function readStoreView(r: Replica): StoreView {
  const desired = single(r, GlobalTable) === undefined ? undefined : readDesiredState(r);
  const plan = readPlan(r);
  const nodeStatus = new Map<string, NodeStatusView>();
  for (const row of rows(r, NodeStatusTable)) {
    const marks = fenceMarks(row);
    nodeStatus.set(row.node, {
      appliedGeneration: row.applied_generation,
      heartbeatAt: row.heartbeat_at,
      fenced: marks.byAgent,
      plannerFenced: marks.byPlanner !== undefined,
      operatorFenced: marks.byOperator !== undefined,
      error: row.error,
    });
  }
  const backendHealth = new Map<string, Health>();
  for (const row of rows(r, BackendStatusTable)) {
    const k = `${row.lb} ${row.backend}`;
    if (backendHealth.get(k) !== 'down') backendHealth.set(k, row.health);
  }
  const slotReports = new Map<string, Map<string, SlotReport>>();
  for (const row of rows(r, SlotConnectionsTable)) {
    let m = slotReports.get(row.node);
    if (m === undefined) {
      m = new Map();
      slotReports.set(row.node, m);
    }
    m.set(row.lb, { bits: row.bits, counts: decodeSlotCounts(row.counts) });
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
