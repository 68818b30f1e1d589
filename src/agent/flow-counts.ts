// The agent's flow counters: sluice's flows counted by kind (cookie), and the second-chance packets a host received
// per load balancer, from `ovs-ofctl dump-flows` text. Pure, plus a small adapter that feeds prom-client Counters.

import type { Counter } from 'prom-client';
import { decodeCookie, lbIds } from '../compile/registry.ts';

export interface FlowCounts {
  /** Flows and n_packets by cookie kind. */
  readonly byKind: ReadonlyMap<string, { readonly flows: number; readonly packets: number }>;
  /** n_packets of TUN_VIP_SECOND flows (packets handed to this host by second chance) by load balancer name. */
  readonly perLb: ReadonlyMap<string, number>;
}

/** Counts `dump-flows` text; `lbNames` are the load balancers of the applied config (cookies carry their ids). */
export function countFlows(dump: string, lbNames: Iterable<string>): FlowCounts {
  const names = new Map([...lbIds(lbNames)].map(([n, id]) => [id, n]));
  const byKind = new Map<string, { flows: number; packets: number }>();
  const perLb = new Map<string, number>();
  for (const line of dump.split('\n')) {
    const c = /cookie=(0x[0-9a-f]+)/.exec(line);
    if (!c) continue;
    const parts = decodeCookie(BigInt(c[1]!));
    if (parts === undefined) continue;
    const p = Number(/n_packets=(\d+)/.exec(line)?.[1] ?? 0);
    const k = byKind.get(parts.kind) ?? { flows: 0, packets: 0 };
    k.flows++;
    k.packets += p;
    byKind.set(parts.kind, k);
    const lb = parts.kind === 'TUN_VIP_SECOND' ? names.get(parts.lb) : undefined;
    if (lb !== undefined) perLb.set(lb, (perLb.get(lb) ?? 0) + p);
  }
  return { byKind, perLb };
}

/**
 * Feeds prom-client Counters from readings that only grow until they restart from 0 (flow n_packets: a re-installed
 * flow starts over). Each counter grows by what its reading grew by, or by the whole reading after a restart, so it
 * never goes down. Returns the counter's total.
 */
export class ReadingCounters {
  readonly #last = new Map<Counter<string>, Map<string, { reading: number; total: number }>>();

  advance(counter: Counter<string>, labels: Record<string, string>, reading: number): number {
    const key = JSON.stringify(labels);
    let byLabels = this.#last.get(counter);
    if (byLabels === undefined) {
      byLabels = new Map();
      this.#last.set(counter, byLabels);
    }
    const last = byLabels.get(key) ?? { reading: 0, total: 0 };
    const delta = reading >= last.reading ? reading - last.reading : reading;
    if (delta > 0) counter.inc(labels, delta);
    else counter.inc(labels, 0); // the series exists from the first reading on
    const total = last.total + delta;
    byLabels.set(key, { reading, total });
    return total;
  }
}
