// What the planner publishes and every agent compiles: one generation of slot plans. Pure data.
// The planner's own state lives here too (phase, since), so a restarted planner resumes from the latest
// published generation alone. Design and safety argument: docs/design/rollout.md.

/** A backend as a plan refers to it: enough to compile flows without the config (it may have left it). */
export interface PlanMember {
  readonly key: string;
  readonly address: string;
  /** Target port; undefined = the port the client dialled. */
  readonly port: number | undefined;
  /** Host node name. */
  readonly host: string;
}

/**
 * Phase of one slot (docs/design/rollout.md):
 * - STABLE: (P, none): no second chance.
 * - PHASE1: (P, N): primary still the old owner P, second chance the incoming owner N.
 * - PHASE2: (N, P): primary the new owner N, second chance the previous owner P (kept while P may hold
 *   connections of the slot).
 */
export const PHASE_STABLE = 0;
export const PHASE1 = 1;
export const PHASE2 = 2;
export type Phase = typeof PHASE_STABLE | typeof PHASE1 | typeof PHASE2;

/** The slot plan of one load balancer in one generation. */
export interface PoolPlan {
  readonly lb: string;
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
}

export interface Generation {
  /** Monotonic, starts at 1. */
  readonly number: number;
  /** When the planner made it (ms, the `now` it was given). */
  readonly createdAt: number;
  /** By load balancer name. */
  readonly pools: ReadonlyMap<string, PoolPlan>;
}
