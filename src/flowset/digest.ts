// Order-independent digests of flows, per bucket (the applier buckets by load balancer): two sides are compared one
// flow at a time without holding either (a gateway at 10,000 VIPs has 2.6 M flows, its dump-flows text 695 MiB).
// Pure.

import { type Flow, flowKey } from './types.ts';

/** Two independent 32-bit FNV-1a lanes over a flow's identity, actions and cookie: what diffBridge compares. */
function flowHashes(f: Flow): [number, number] {
  const s = `${flowKey(f)}\n${f.actions}\n${f.cookie.toString(16)}`;
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return [a >>> 0, b >>> 0];
}

/**
 * Adds flows of one side (+1) and subtracts those of the other (-1); a bucket where both sides hold the same multiset
 * of flows ends at zero. A difference escapes only if two different multisets collide on 64 bits and the count.
 */
export class FlowDigest {
  readonly #bucketOf: (f: Flow) => number;
  /** Per bucket: flow count, lane a, lane b (mod 2^32). */
  readonly #buckets = new Map<number, [number, number, number]>();

  constructor(bucketOf: (f: Flow) => number) {
    this.#bucketOf = bucketOf;
  }

  add(f: Flow, sign: 1 | -1): void {
    const k = this.#bucketOf(f);
    let d = this.#buckets.get(k);
    if (d === undefined) {
      d = [0, 0, 0];
      this.#buckets.set(k, d);
    }
    const [a, b] = flowHashes(f);
    d[0] += sign;
    d[1] = (d[1] + sign * a) >>> 0;
    d[2] = (d[2] + sign * b) >>> 0;
  }

  /** The buckets whose two sides differ, ascending. */
  unequal(): number[] {
    return [...this.#buckets]
      .filter(([, d]) => d[0] !== 0 || d[1] !== 0 || d[2] !== 0)
      .map(([k]) => k)
      .sort((x, y) => x - y);
  }
}
