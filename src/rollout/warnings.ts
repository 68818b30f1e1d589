// Warnings about a valid config (docs/config.md "Warnings"): things that are allowed but probably not meant. Pure.

import { quotas } from '../hashing/slots.ts';
import { lbSlotBits } from '../model/slot-bits.ts';
import type { Config } from '../model/types.ts';
import { desiredPool } from './planner.ts';

export interface ConfigWarning {
  readonly path: string;
  readonly message: string;
}

/** Active backends whose weighted share of their load balancer's slots (2^lbSlotBits) rounds to none. */
export function configWarnings(config: Config): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  config.loadBalancers.forEach((lb, i) => {
    const pool = desiredPool(lb);
    if (!pool.some((m) => m.weight > 0)) return;
    const bits = lbSlotBits(config.slotBits, lb.backends.length);
    const slots = 2 ** bits;
    const q = quotas(pool, bits);
    const starved = lb.backends.filter((_b, j) => pool[j]!.weight > 0 && (q.get(pool[j]!.key) ?? 0) === 0);
    if (starved.length === 0) return;
    const active = pool.filter((m) => m.weight > 0).length;
    out.push({
      path: `loadBalancers[${i}] (${lb.name})`,
      message:
        `${starved.length} of ${active} active backends get 0 of ${slots} slots and receive no new connections ` +
        `(${starved
          .slice(0, 5)
          .map((b) => b.address + (b.port === undefined ? '' : `:${b.port}`))
          .join(', ')}${starved.length > 5 ? ', ...' : ''}); raise slotBits or their weight`,
    });
  });
  return out;
}

/** One line per warning, for stderr. */
export function formatWarnings(warnings: readonly ConfigWarning[]): string {
  return warnings.map((w) => `sluice: warning: ${w.path}: ${w.message}\n`).join('');
}
