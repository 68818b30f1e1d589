// What the control-plane e2e tests read from the store: the published generation, the one released to gateways,
// what every node acknowledged, and a wait for all of them to agree (shared by controlplane and controlplane-ha).

import { currentAcks } from '../../../src/lab/control-plane.ts';
import type { Replica } from '../../../src/ovsdb/replica.ts';
import { PHASE1 } from '../../../src/rollout/types.ts';
import {
  gatewayGeneration,
  publishedGeneration,
  readGeneration,
  storedDesiredCfg,
} from '../../../src/store/db/index.ts';

/** When a node's agent was last started (ms), if known: an acknowledgement from before is its predecessor's. */
export type AgentStarts = (node: string) => number | undefined;

/** Whether the planner said it is idle at (generation, desired_cfg): ControlPlane.plannerIdleAt. */
export type PlannerIdle = (gen: number, desiredCfg: number) => boolean;

/** What a test's status monitors must watch for readStoreState (the plan tables give the rollout's phases; the acks
 *  are in Node_Heartbeat, Sluice_Status: monitor with splitMonitor). */
export const STORE_STATE_TABLES = {
  Global: {},
  Node_Status: {},
  Node_Heartbeat: {},
  Plan: {},
  Plan_LB: {},
  Plan_Pool: {},
} as const;

export interface StoreState {
  readonly gen: number;
  readonly released: number;
  readonly acks: ReadonlyMap<string, number>;
  /** Slots of the latest generation in phase 1 (a rollout's gated step still ahead: phase 2 follows). */
  readonly phase1Slots: number;
  readonly desiredCfg: number;
}

/** The store's published generation, the one released to gateways, and what every node acknowledged (with
 *  `startedAt`, only what its current agent acknowledged). */
export function readStoreState(r: Replica, startedAt: AgentStarts = () => undefined): StoreState {
  const gen = publishedGeneration(r);
  const acks = currentAcks(r, startedAt);
  let phase1Slots = 0;
  for (const pool of readGeneration(r)?.pools.values() ?? []) {
    for (const ph of pool.phase) if (ph === PHASE1) phase1Slots++;
  }
  return { gen, released: gatewayGeneration(r), acks, phase1Slots, desiredCfg: storedDesiredCfg(r) };
}

/**
 * Waits until every node in `nodes` acknowledged the latest generation (> `after`), it was released to gateways, no
 * slot of it is in phase 1 (else the rollout's next step is still to come, however quiet the planner is for a while),
 * and nothing new was published for `quietMs`, or, with `idle`, the planner said it is idle at that generation and
 * the stored desired_cfg (it has nothing more to publish: no need to wait out the quiet period). Resolves with that
 * generation.
 */
export async function waitStoreConverged(
  replica: () => Replica,
  nodes: readonly string[],
  after: number,
  timeoutMs: number,
  quietMs: number,
  startedAt?: AgentStarts,
  idle?: PlannerIdle,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  for (;;) {
    const s = readStoreState(replica(), startedAt);
    const all =
      nodes.every((n) => s.acks.get(n) === s.gen) &&
      s.released === s.gen &&
      s.gen > after &&
      s.phase1Slots === 0;
    if (s.gen !== last || !all) {
      last = s.gen;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return s.gen;
    else if (idle?.(s.gen, s.desiredCfg)) {
      process.stderr.write(
        `converged at g${s.gen}: planner idle ${Date.now() - since} ms into the ${quietMs} ms quiet wait\n`,
      );
      return s.gen;
    }
    if (Date.now() > deadline)
      throw new Error(
        `not converged: g${s.gen} released g${s.released} acks ${JSON.stringify([...s.acks])} phase-1 slots ${s.phase1Slots}`,
      );
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A test's view of the store through its status monitor: the state now, and a wait for convergence of `nodes`
 *  (each test file's own default timeout); with `startedAt`, acknowledgements from before an agent's restart do not
 *  count. */
export function storeWatch(
  replica: () => Replica,
  nodes: () => readonly string[],
  defaultTimeoutMs: number,
  startedAt?: AgentStarts,
  idle?: PlannerIdle,
) {
  return {
    storeState: () => readStoreState(replica(), startedAt),
    waitConverged: (after = 0, timeoutMs = defaultTimeoutMs, quietMs = 3000) =>
      waitStoreConverged(replica, nodes(), after, timeoutMs, quietMs, startedAt, idle),
  };
}
