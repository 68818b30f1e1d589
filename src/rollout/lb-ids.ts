// Load balancer ids, assigned once by the planner and carried in every generation (PoolPlan.id). Pure.
//
// An id is what cookies, ct_mark and the Geneve option TUN_LB_SLOT carry, so it must not change while the load
// balancer lives: nodes one generation apart (hosts before gateways) and connections committed under an older
// generation must agree on it. Before schema 2.1.0 every node computed ids from the set of names
// (hashing/lb-ids.ts computedLbIds), and a new name that collided could shift an existing load balancer's id.
// Now: a load balancer keeps the id of its pool in the latest generation; a new one takes its preferred id (the
// hash of its name, so ids stay the ones the old computation gave whenever nothing collides) or the next free
// one; an id is free when no load balancer of the latest generation has it and it was not retired in the last
// RETIRED_LB_ID_HOLD_MS (connections of a removed load balancer keep their marks until conntrack forgets them).
// Design: docs/design/control-plane.md, "Load balancer ids".

import { computedLbIds, LB_ID_MAX, nextLbId, preferredLbId } from '../hashing/lb-ids.ts';
import type { Generation, PoolPlan } from './types.ts';

/** How long an id stays reserved after its load balancer left the plan: 5 days, Linux conntrack's default timeout
 *  of an established TCP connection (the userspace datapath's is shorter), after which no committed connection of
 *  the removed load balancer can still carry it. */
export const RETIRED_LB_ID_HOLD_MS = 5 * 24 * 3600 * 1000;

export interface LbIdInput {
  /** The latest published generation (null: none yet). */
  readonly latest: Generation | null;
  /** The planner's clock, ms. */
  readonly now: number;
  /** Names the latest generation's agents computed ids over, when its pools carry no ids (a plan published before
   *  schema 2.1.0: the names of its config document). Default: the latest generation's pool names. */
  readonly legacyLbNames?: readonly string[];
  /** Ids no new load balancer may take besides the latest generation's (ids of older plans still stored). */
  readonly reservedLbIds?: Iterable<number>;
}

/** The ids the latest generation gives its load balancers: stored ones, or for a plan without them the ids its
 *  agents computed (so live connections keep their marks across the upgrade). */
function latestIds(input: LbIdInput): Map<string, number> {
  const out = new Map<string, number>();
  const latest = input.latest;
  if (latest === null) return out;
  let computed: Map<string, number> | undefined;
  for (const [name, pool] of latest.pools) {
    if (pool.id !== undefined) {
      out.set(name, pool.id);
      continue;
    }
    computed ??= computedLbIds(input.legacyLbNames ?? latest.pools.keys());
    const id = computed.get(name);
    if (id !== undefined) out.set(name, id);
  }
  return out;
}

/**
 * `pools` (the next generation's) with an id on every pool, and the ids retired so far (id -> ms when its load
 * balancer left, kept for RETIRED_LB_ID_HOLD_MS). Pools that already carry their id are returned as they are (the
 * same objects). Throws when no id is free (65,534 in use or held).
 */
export function assignLbIds(
  pools: ReadonlyMap<string, PoolPlan>,
  input: LbIdInput,
): { pools: ReadonlyMap<string, PoolPlan>; retired: Map<number, number> } {
  const known = latestIds(input);
  const retired = new Map<number, number>();
  for (const [id, at] of input.latest?.retiredLbIds ?? [])
    if (input.now - at < RETIRED_LB_ID_HOLD_MS) retired.set(id, at);
  for (const [name, id] of known) if (!pools.has(name)) retired.set(id, input.now);
  const taken = new Set<number>([...known.values(), ...retired.keys(), ...(input.reservedLbIds ?? [])]);
  const out = new Map<string, PoolPlan>();
  const fresh: string[] = [];
  for (const [name, pool] of pools) {
    const id = known.get(name);
    if (id === undefined) fresh.push(name);
    else out.set(name, pool.id === id ? pool : { ...pool, id });
  }
  for (const name of fresh.sort()) {
    const id = freeId(preferredLbId(name), taken);
    taken.add(id);
    out.set(name, { ...pools.get(name)!, id });
  }
  // The same map when every pool already carried its id; else the caller's order (the config's).
  if ([...pools].every(([n, p]) => out.get(n) === p)) return { pools, retired };
  return { pools: new Map([...pools.keys()].map((n) => [n, out.get(n)!])), retired };
}

function freeId(from: number, taken: ReadonlySet<number>): number {
  let id = from;
  for (let n = 0; n < LB_ID_MAX; n++, id = nextLbId(id)) if (!taken.has(id)) return id;
  throw new Error(
    `no free load balancer id: all ${LB_ID_MAX} are in use or held after their load balancer left`,
  );
}

/** A generation with ids on every pool (assignLbIds) and its retired ids. */
export function withLbIds(gen: Generation, input: LbIdInput): Generation {
  const { pools, retired } = assignLbIds(gen.pools, input);
  return { ...gen, pools, ...(retired.size > 0 ? { retiredLbIds: retired } : {}) };
}
