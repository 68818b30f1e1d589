// What the planner publishes and every agent compiles: one generation of slot plans. Pure data.
// The planner's own state lives here too (phase, since, lanes), so a restarted planner resumes from the latest
// published generation alone. Design and safety argument: docs/design/rollout.md.

import { NO_OWNER } from '../hashing/slots.ts';

/** A backend as a plan refers to it: enough to compile flows without the config (it may have left it). */
export interface PlanMember {
  readonly key: string;
  readonly address: string;
  /** Target port; undefined = the port the client dialled. */
  readonly port: number | undefined;
  /** Host node name. */
  readonly host: string;
  /**
   * The host this backend was on before its host last changed (a live-migrated VM: the same address and port on
   * another host), while that host may still hold its connections (it reports some, or has not reported). Hosts with
   * `sluice-follow-moves` send such connections' packets that reach the new host without state there back to it
   * (compile/moved.ts). Undefined: the backend did not move, or its old host holds none of its connections any more.
   */
  readonly movedFrom?: string;
}

/**
 * Phase of one slot (docs/design/rollout.md):
 * - STABLE: (P, none): no second chance, no chain.
 * - PHASE1: (P, N, ...): primary still the old owner P, second chance the incoming owner N; older previous owners
 *   may follow in the chain.
 * - PHASE2: (N, P, ...): primary the new owner N, second chance the previous owner P, then older previous owners
 *   (each kept while it may hold connections of the slot).
 */
export const PHASE_STABLE = 0;
export const PHASE1 = 1;
export const PHASE2 = 2;
export type Phase = typeof PHASE_STABLE | typeof PHASE1 | typeof PHASE2;

/** The slot plan of one load balancer in one generation. */
export interface PoolPlan {
  readonly lb: string;
  /** The load balancer's id (cookies, ct_mark, Geneve), assigned once by the planner and kept while the load
   *  balancer lives (rollout/lb-ids.ts). Undefined in plans published before schema 2.1.0 and in hand-built ones:
   *  every node then computes ids from the config's names (compile/registry.ts lbIdsOf). */
  readonly id?: number;
  readonly bits: number;
  /** Members referenced by `primary`/`second`, in canonical order. */
  readonly members: readonly PlanMember[];
  /** Length 2^bits: primary member index per slot, or NO_OWNER (hashing/slots.ts). */
  readonly primary: Uint16Array;
  /** Length 2^bits: second-chance member index per slot, or NO_OWNER. */
  readonly second: Uint16Array;
  /** Length 2^bits: Phase per slot (PHASE_STABLE iff second is NO_OWNER). */
  readonly phase: Uint8Array;
  /**
   * Length 2^bits: when (ms, the planner's clock) the slot's current second chance became its second chance;
   * 0 for stable slots, and 0 = not known (the drain window then never expires for that slot). The drain window
   * of a PHASE2 slot runs from here.
   */
  readonly since: Float64Array;
  /**
   * Length 2^bits * LANES: lane l of slot s at [s * LANES + l], a member index or NO_OWNER. The slot's owners:
   * primary, second chance and older previous owners (the chain), each in the lane it keeps while it stays an
   * owner. A stable slot has its primary in lane 0 and nothing else. Undefined: see planLanes.
   */
  readonly lanes?: Uint16Array;
}

/**
 * Lanes per slot: every owner of a slot (primary, second chance, older previous owners) holds one lane, and keeps
 * it from one generation to the next while it stays an owner. A host hands a packet it has no connection for to
 * the owner in the next lane (the hop counter in the Geneve metadata is that lane + 1), so the counter only grows:
 * no loops, at most LANES hops. The chain bound L (Config.chainLength) is at most LANES - 1.
 */
export const LANES = 8;

/** The lanes of a plan: `plan.lanes`, or, for a plan without them (hand-built, or read from a store that does not
 *  keep them), the primary in lane 0 and the second chance in lane 1. Length 2^bits * LANES. */
export function planLanes(plan: PoolPlan): Uint16Array {
  if (plan.lanes !== undefined) return plan.lanes;
  const size = plan.primary.length;
  const lanes = new Uint16Array(size * LANES).fill(NO_OWNER);
  for (let s = 0; s < size; s++) {
    lanes[s * LANES] = plan.primary[s];
    if (plan.second[s] !== NO_OWNER) lanes[s * LANES + 1] = plan.second[s];
  }
  return lanes;
}

export interface Generation {
  /** Monotonic, starts at 1. */
  readonly number: number;
  /** When the planner made it (ms, the `now` it was given). */
  readonly createdAt: number;
  /** By load balancer name. */
  readonly pools: ReadonlyMap<string, PoolPlan>;
  /** Ids of load balancers that left, and when (ms, the planner's clock): held, not reused, for
   *  RETIRED_LB_ID_HOLD_MS (rollout/lb-ids.ts). */
  readonly retiredLbIds?: ReadonlyMap<number, number>;
}
