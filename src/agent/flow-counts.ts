// The agent's flow counters: sluice's flows counted by kind (cookie), and the second-chance packets a host received
// per load balancer, from `ovs-ofctl dump-flows` text; a host's SYN meter from `meter-stats`. Pure, plus a small
// adapter that feeds prom-client Counters.

import type { Counter } from 'prom-client';
import { decodeCookie } from '../compile/registry.ts';

export interface FlowCounts {
  /** Flows and n_packets by cookie kind. */
  readonly byKind: ReadonlyMap<string, { readonly flows: number; readonly packets: number }>;
  /** n_packets of TUN_VIP_SECOND flows (packets handed to this host by second chance) by load balancer name. */
  readonly perLb: ReadonlyMap<string, number>;
}

/** Counts `dump-flows` text; `lbIds` are the ids of the applied generation's load balancers (name -> id,
 *  registry lbIdsOf: cookies carry the ids). */
export function countFlows(dump: string, lbIds: ReadonlyMap<string, number>): FlowCounts {
  const c = new FlowCounter(lbNamesById(lbIds));
  for (const line of dump.split('\n')) c.add(line);
  return c.counts();
}

/** The inverse of lbIdsOf's map (id -> load balancer name), which FlowCounter reads cookies with. */
export function lbNamesById(lbIds: ReadonlyMap<string, number>): ReadonlyMap<number, string> {
  return new Map([...lbIds].map(([n, id]) => [id, n]));
}

/**
 * countFlows one line at a time, for a dump read as a stream (Runner.ofctlLines): a host's dump at 10,000 VIPs is
 * tens of MB, read every few seconds for its heartbeat's counters; held whole (and split) it was garbage that only
 * a full collection frees, and a gateway's (695 MiB) does not fit in a string.
 */
export class FlowCounter {
  readonly #names: ReadonlyMap<number, string>;
  readonly #byKind = new Map<string, { flows: number; packets: number }>();
  readonly #perLb = new Map<string, number>();

  /** `names`: lbNamesById of the applied generation (the caller keeps it per generation, not per count). */
  constructor(names: ReadonlyMap<number, string>) {
    this.#names = names;
  }

  add(line: string): void {
    const c = /cookie=(0x[0-9a-f]+)/.exec(line);
    if (!c) return;
    const parts = decodeCookie(BigInt(c[1]!));
    if (parts === undefined) return;
    const p = Number(/n_packets=(\d+)/.exec(line)?.[1] ?? 0);
    const k = this.#byKind.get(parts.kind) ?? { flows: 0, packets: 0 };
    k.flows++;
    k.packets += p;
    this.#byKind.set(parts.kind, k);
    const lb = parts.kind === 'TUN_VIP_SECOND' ? this.#names.get(parts.lb) : undefined;
    if (lb !== undefined) this.#perLb.set(lb, (this.#perLb.get(lb) ?? 0) + p);
  }

  counts(): FlowCounts {
    return { byKind: this.#byKind, perLb: this.#perLb };
  }
}

/**
 * Parses `ovs-ofctl -O OpenFlow15 meter-stats <br>`: per meter id, the packets that reached it (packet_in_count) and
 * those its bands dropped (the bands' packet_count, summed). Lines look like
 *   meter:1358954497 flow_count:2 packet_in_count:4635 byte_in_count:250290 duration:5.100s bands:
 *   0: packet_count:4127 byte_count:222858
 */
export function parseMeterStats(text: string): Map<number, { packets: number; dropped: number }> {
  const out = new Map<number, { packets: number; dropped: number }>();
  let cur: { packets: number; dropped: number } | undefined;
  for (const line of text.split('\n')) {
    const m = /^\s*meter:(\d+) .*packet_in_count:(\d+)/.exec(line);
    if (m) {
      cur = { packets: Number(m[2]), dropped: 0 };
      out.set(Number(m[1]), cur);
      continue;
    }
    const band = /^\s*\d+: packet_count:(\d+)/.exec(line);
    if (band && cur) cur.dropped += Number(band[1]);
  }
  return out;
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
