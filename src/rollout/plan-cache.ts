// What one planner remembers between its steps (PlanInput.cache), so that a step costs the load balancers that
// changed, not all of them. Owned by its caller (the planner daemon's PlannerCore, the simulator), passed in
// explicitly; planNext without one plans every pool from scratch and gives the same answer
// (test/unit/rollout.test.ts compares both over random sequences). Pure data: no I/O.

import type { Config, LoadBalancer } from '../model/types.ts';
import type { PlanNote } from './planner.ts';
import type { Generation, PoolPlan } from './types.ts';

/** What the last step saw and did (planner.ts planPools records it; stepChanged starts from it). */
export interface LastStep {
  readonly config: Config;
  readonly latest: Generation;
  /** Positions in config.loadBalancers of the load balancers the step stepped rather than skipped as settled. */
  readonly stepped: readonly number[];
  /** The notes that depend only on (config, latest), by position in config.loadBalancers: slot-bits refusals. */
  readonly refused: ReadonlyMap<number, PlanNote>;
  /**
   * latest's pools are exactly the config's load balancers, none grows, and every pool carries its id: a later step
   * whose config and latest differ from these in a few load balancers steps only those.
   */
  readonly aligned: boolean;
  /** Load balancer name -> position in config.loadBalancers (built when `aligned`). */
  readonly index: ReadonlyMap<string, number> | undefined;
  /** The step visited every load balancer (the first one, or a change the cache cannot follow). */
  readonly whole: boolean;
}

export class PlanCache {
  /**
   * Pools that a step left unchanged without deciding any slot (no chain, every slot already on its target owner),
   * with the backends (backendsKey) they were stepped with. Stepping such a pool again with the same backends gives
   * the pool itself: its target table depends only on the pool and the backends, and without a chain nothing else
   * enters (connections, the clock, silent hosts, the chain bound, the nodes). So planNext skips it.
   */
  readonly settled = new WeakMap<PoolPlan, string>();
  /** backendsKey by load balancer object: the planner plans from the same Config until the desired state changes. */
  readonly #keys = new WeakMap<LoadBalancer, string>();
  last: LastStep | undefined;

  /** Everything of a load balancer's backends that stepPool reads on a settled pool (desiredPool, statusMap). */
  backendsKey(lb: LoadBalancer): string {
    let k = this.#keys.get(lb);
    if (k === undefined) {
      k = lb.backends.map((b) => `${b.address} ${b.port ?? '*'} ${b.host} ${b.weight} ${b.state}`).join('\n');
      this.#keys.set(lb, k);
    }
    return k;
  }

  isSettled(pool: PoolPlan, lb: LoadBalancer): boolean {
    return this.settled.get(pool) === this.backendsKey(lb);
  }
}

/**
 * Positions in config.loadBalancers of the load balancers a step on (config, latest) must visit after `last`: those
 * `last` stepped, those whose object differs from last.config's (one pass comparing references), those whose pool
 * differs from last.latest's (one pass over the pools, only when the generation moved). Undefined: the change is not
 * of that kind (another set of load balancers, other settings or nodes, a pool without an id, a step that was not
 * aligned): plan the whole step.
 */
export function changedSince(last: LastStep, config: Config, latest: Generation): Set<number> | undefined {
  if (!last.aligned || last.index === undefined) return undefined;
  const out = new Set(last.stepped);
  if (config !== last.config) {
    const was = last.config;
    const keys = Object.keys(config) as (keyof Config)[];
    if (keys.length !== Object.keys(was).length) return undefined;
    for (const k of keys) if (k !== 'loadBalancers' && config[k] !== was[k]) return undefined;
    const [a, b] = [was.loadBalancers, config.loadBalancers];
    if (a.length !== b.length) return undefined;
    for (let i = 0; i < b.length; i++) {
      if (a[i] === b[i]) continue;
      if (a[i]!.name !== b[i]!.name) return undefined;
      out.add(i);
    }
  }
  if (latest !== last.latest) {
    const was = last.latest.pools;
    if (latest.pools.size !== was.size) return undefined;
    for (const [name, pool] of latest.pools) {
      const old = was.get(name);
      if (old === pool) continue;
      const i = last.index.get(name);
      if (old === undefined || i === undefined || pool.id === undefined) return undefined;
      out.add(i);
    }
  }
  return out;
}
