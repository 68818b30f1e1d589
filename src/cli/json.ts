// JSON renderings of core data for `--json` output. Slot arrays become plain number arrays (NO_OWNER -> null).

import { NO_OWNER } from '../hashing/slots.ts';
import type { Generation, PoolPlan } from '../rollout/types.ts';

function owners(a: Uint16Array): (number | null)[] {
  return Array.from(a, (v) => (v === NO_OWNER ? null : v));
}

export function poolJson(p: PoolPlan) {
  return {
    lb: p.lb,
    bits: p.bits,
    members: p.members,
    primary: owners(p.primary),
    second: owners(p.second),
    phase: Array.from(p.phase),
  };
}

export function generationJson(g: Generation) {
  return { number: g.number, pools: [...g.pools.values()].map(poolJson) };
}
