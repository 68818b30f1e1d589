// Load balancer ids as plans before schema 2.1.0 implied them: computed by every node from the set of names. Pure.
// Kept for reading those plans (and hand-built generations); new plans store each id (src/rollout/lb-ids.ts).

import { fnv1a32 } from './hash.ts';

/** The largest load balancer id: ids are 1..LB_ID_MAX (16 bits in cookies, ct_mark and Geneve; 0 = no LB). */
export const LB_ID_MAX = 0xfffe;

/** The id a name prefers: the 16-bit fold of FNV-1a(name), in 1..LB_ID_MAX. */
export function preferredLbId(name: string): number {
  const h = fnv1a32(name);
  return (((h >>> 16) ^ (h & 0xffff)) % LB_ID_MAX) + 1;
}

/** The id after `id`, wrapping from LB_ID_MAX to 1. */
export function nextLbId(id: number): number {
  return id === LB_ID_MAX ? 1 : id + 1;
}

/**
 * The computed ids (before schema 2.1.0): each name's preferred id, and on a collision the next free one, names
 * taken in sorted order. Adding a name that collides can shift another name's id, which is why new plans store ids
 * instead (docs/design/control-plane.md, "Load balancer ids").
 */
export function computedLbIds(names: Iterable<string>): Map<string, number> {
  const used = new Set<number>();
  const ids = new Map<string, number>();
  for (const name of [...new Set(names)].sort()) {
    let id = preferredLbId(name);
    while (used.has(id)) id = nextLbId(id);
    used.add(id);
    ids.set(name, id);
  }
  return ids;
}
