// How far the latest change has rolled out (`sluice rollout status`, like `kubectl rollout status`), read from the
// store: what the planner published, what every node acknowledged, what the planner still has to publish. Only
// reported state, never what was asked; the planner's next step is recomputed with the same pure core it runs.

import type { Replica } from '../ovsdb/replica.ts';
import type { PlanCache } from '../rollout/plan-cache.ts';
import { PHASE1, PHASE2 } from '../rollout/types.ts';
import { observedPlannerStep, readStoreView } from './db/index.ts';
import { statusReport } from './operator.ts';

export interface RolloutProgress {
  readonly desiredCfg: number;
  /** desired_cfg the latest generation was planned from (null: nothing published). */
  readonly plannedCfg: number | null;
  readonly generation: number;
  readonly gatewayGeneration: number;
  /** Nodes that must acknowledge (desired, not fenced) and those that did, per role. */
  readonly gateways: { readonly acked: number; readonly total: number; readonly behind: readonly string[] };
  readonly hosts: { readonly acked: number; readonly total: number; readonly behind: readonly string[] };
  readonly phase1: number;
  readonly phase2: number;
  /** The planner has another generation to publish now (the change is not fully planned yet). */
  readonly morePending: boolean;
  /** Slots whose second chance waits for connections to end (does not hold the rollout: the change is in effect). */
  readonly waitingSlots: readonly string[];
  /** Every node acknowledged the latest generation and the planner has nothing more to publish. */
  readonly done: boolean;
  /** What the rollout waits for now, in words (empty when done). */
  readonly waitingFor: string;
  /** Desired, unfenced nodes whose agent has not written a heartbeat for SILENT_MS (a stopped or cut-off agent: the
   *  usual reason a rollout stops). */
  readonly silent: readonly { readonly name: string; readonly heartbeatAgeMs: number | null }[];
}

/** A heartbeat older than this (agents beat every second by default) makes a node "silent" in the progress. */
export const SILENT_MS = 3000;

function acks(nodes: ReturnType<typeof statusReport>['nodes'], role: string, generation: number) {
  const want = nodes.filter((n) => n.role === role && n.desired && !n.fenced);
  const behind = want.filter((n) => (n.appliedGeneration ?? 0) < generation).map((n) => n.name);
  return { acked: want.length - behind.length, total: want.length, behind };
}

/** Would the planner publish another generation now (same inputs as the planner: effective config, reports)? */
function plannerHasMore(r: Replica, now: number, cache: PlanCache | undefined): boolean {
  const view = readStoreView(r);
  if (view.desired === undefined) return false;
  if (view.latest === null) return true;
  const step = observedPlannerStep(view, now, cache);
  return step !== undefined && (step.next !== null || step.configChanged);
}

/** `cache`: a PlanCache for the planner's step it recomputes (observedPlannerStep). */
export function rolloutProgress(r: Replica, now = Date.now(), cache?: PlanCache): RolloutProgress {
  const st = statusReport(r, now, cache);
  const gateways = acks(st.nodes, 'gateway', st.generation);
  const hosts = acks(st.nodes, 'host', st.generation);
  const view = readStoreView(r);
  let phase1 = 0;
  let phase2 = 0;
  for (const p of view.latest?.pools.values() ?? [])
    for (const x of p.phase) {
      if (x === PHASE1) phase1++;
      else if (x === PHASE2) phase2++;
    }
  const caughtUp = st.plannedCfg !== null && st.plannedCfg >= st.desiredCfg;
  const morePending = plannerHasMore(r, now, cache);
  const acked =
    gateways.behind.length === 0 && hosts.behind.length === 0 && st.gatewayGeneration >= st.generation;
  const done = caughtUp && acked && !morePending && phase1 === 0;
  const silent = st.nodes
    .filter((n) => n.desired && !n.fenced && (n.heartbeatAgeMs === null || n.heartbeatAgeMs > SILENT_MS))
    .map((n) => ({ name: n.name, heartbeatAgeMs: n.heartbeatAgeMs }));
  const silentText =
    silent.length === 0
      ? ''
      : `; silent: ${silent.map((n) => `${n.name} (${n.heartbeatAgeMs === null ? 'never reported' : `heartbeat ${(n.heartbeatAgeMs / 1000).toFixed(0)} s ago`})`).join(', ')}`;
  const step = done
    ? ''
    : !caughtUp
      ? `the planner to plan desired_cfg ${st.desiredCfg} (latest plan: ${st.plannedCfg ?? 'none'}; is a planner running?)`
      : hosts.behind.length > 0
        ? `hosts ${hosts.behind.join(', ')} to acknowledge generation ${st.generation}`
        : st.gatewayGeneration < st.generation
          ? `the planner to release generation ${st.generation} to the gateways`
          : gateways.behind.length > 0
            ? `gateways ${gateways.behind.join(', ')} to acknowledge generation ${st.generation}`
            : `the planner to publish the next phase (${phase1} slots in phase 1)`;
  const waitingFor = done ? '' : `${step}${silentText}`;
  return {
    desiredCfg: st.desiredCfg,
    plannedCfg: st.plannedCfg,
    generation: st.generation,
    gatewayGeneration: st.gatewayGeneration,
    gateways,
    hosts,
    phase1,
    phase2,
    morePending,
    waitingSlots: st.waitingSlots.map((w) => w.message),
    done,
    waitingFor,
    silent,
  };
}

/** One progress line: "generation 7 (desired_cfg 4): gateways 1/2, hosts 3/3 acknowledged; 21 slots in phase 1". */
export function formatProgress(p: RolloutProgress): string {
  const phases = [
    p.phase1 > 0 ? `${p.phase1} slots in phase 1` : '',
    p.phase2 > 0 ? `${p.phase2} in phase 2` : '',
  ]
    .filter((x) => x !== '')
    .join(', ');
  const head =
    `generation ${p.generation} (desired_cfg ${p.plannedCfg ?? '-'}/${p.desiredCfg}): ` +
    `gateways ${p.gateways.acked}/${p.gateways.total}, hosts ${p.hosts.acked}/${p.hosts.total} acknowledged` +
    (phases ? `; ${phases}` : '');
  return p.done ? `${head}; rollout complete` : `${head}; waiting for ${p.waitingFor}`;
}
