// What the planner publishes and every agent compiles: one generation of slot plans. Pure data.

/** A backend as a plan refers to it: enough to compile flows without the config (it may have left it). */
export interface PlanMember {
  readonly key: string;
  readonly address: string;
  /** Target port; undefined = the port the client dialled. */
  readonly port: number | undefined;
  /** Host node name. */
  readonly host: string;
}

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
}

export interface Generation {
  /** Monotonic, starts at 1. */
  readonly number: number;
  /** By load balancer name. */
  readonly pools: ReadonlyMap<string, PoolPlan>;
}
