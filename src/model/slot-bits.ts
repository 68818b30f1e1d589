// Slot bits per load balancer: how many slots each load balancer's table is sized for. Pure, no imports, so the
// planner, the config check and the agents agree without pulling in the schema.

/** Smallest and largest slot bits a config or a pool may have (2^4 .. 2^16 slots). */
export const SLOT_BITS = { min: 4, max: 16 } as const;

/** A load balancer's table grows past `slotBits` until each of its backends has at least this many slots. With 4 the
 *  most a backend of equal weight can hold over another is 5 slots to 4 (docs/design/slot-tables.md, "Slot bits per
 *  load balancer"). */
export const SLOTS_PER_BACKEND = 4;

/**
 * The slot bits a load balancer's table is sized for: `slotBits` (the config's floor), or the fewest bits above it
 * that give each of its `backends` at least SLOTS_PER_BACKEND slots, at most SLOT_BITS.max. Depends only on
 * the load balancer's own backend count, so a VIP with 4 backends keeps 2^slotBits slots whatever another has.
 * The planner grows a pool to this and never shrinks one (docs/design/rollout.md).
 */
export function lbSlotBits(slotBits: number, backends: number): number {
  let bits = slotBits;
  while (bits < SLOT_BITS.max && 2 ** bits < SLOTS_PER_BACKEND * backends) bits++;
  return bits;
}
