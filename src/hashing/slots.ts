// Consistent, weighted slot tables. Pure. (Interface fixed first; implementation in progress.)

/** Marks a slot with no owner (a pool with no member that takes slots) or no second chance. */
export const NO_OWNER = 0xffff;

export interface PoolMember {
  /** Stable identity (model/types.ts backendKey). */
  readonly key: string;
  /** Relative weight; 0 means the member takes no slots (draining, down). */
  readonly weight: number;
}

export interface SlotTable {
  readonly bits: number;
  /** Member keys in canonical (sorted) order; `owners` holds indices into this list. */
  readonly members: readonly string[];
  /** Length 2^bits. Owner index per slot, or NO_OWNER. */
  readonly owners: Uint16Array;
}
