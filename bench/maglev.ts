// A straightforward Maglev lookup-table population, written from the algorithm as published in
// Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016, section 3.4
// (Pseudocode 1). Used only as the baseline of bench/slots.bench.ts; sluice does not use it.
//
// Per backend i: offset_i = h1(name_i) mod M, skip_i = h2(name_i) mod (M - 1) + 1; its preference list is
// permutation_i[j] = (offset_i + j * skip_i) mod M, a permutation of 0..M-1 because M is prime. Backends take
// turns in order; on its turn a backend claims the next entry of its preference list that is still empty.
// The table is full after exactly M claims.

import { fmix32, fnv1a32 } from '../src/hashing/hash.ts';

/** The table size the paper uses for its measurement (a prime). */
export const MAGLEV_M = 65537;

export interface MaglevBackend {
  readonly name: string;
  /** Relative weight; the paper's algorithm is unweighted (every weight equal). */
  readonly weight?: number;
}

/** h1: FNV-1a 32 of the name. */
function h1(name: string): number {
  return fnv1a32(name);
}

/** h2: an independent second hash (FNV-1a over the name with a different suffix, then avalanche-mixed). */
function h2(name: string): number {
  return fmix32(fnv1a32(`${name}\u0000maglev-skip`) ^ 0x27d4eb2f);
}

/**
 * Populates a Maglev lookup table of size `m` (prime) for `backends`. Entry value = backend index.
 * Without weights this is the paper's Pseudocode 1 (the preference list is walked incrementally:
 * next position = position + skip mod M). With weights, a backend takes a turn in a round only once its
 * accumulated credit (weight per round) reaches the largest weight: the usual weighted extension (as in
 * Envoy and Cilium), not part of the paper.
 */
export function maglevTable(backends: readonly MaglevBackend[], m: number = MAGLEV_M): Uint16Array {
  const n = backends.length;
  if (n === 0 || n >= 0xffff) throw new RangeError(`maglev: need 1..65534 backends, got ${n}`);
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const pos = new Uint32Array(n); // permutation_i[next_i], advanced incrementally
  const weight = new Float64Array(n);
  const credit = new Float64Array(n);
  let maxWeight = 0;
  for (let i = 0; i < n; i++) {
    const name = backends[i].name;
    offset[i] = h1(name) % m;
    skip[i] = (h2(name) % (m - 1)) + 1;
    pos[i] = offset[i];
    weight[i] = backends[i].weight ?? 1;
    if (weight[i] > maxWeight) maxWeight = weight[i];
  }
  const entry = new Uint16Array(m).fill(0xffff);
  const weighted = backends.some((b) => (b.weight ?? 1) !== maxWeight);
  let filled = 0;
  while (true) {
    for (let i = 0; i < n; i++) {
      if (weighted) {
        credit[i] += weight[i];
        if (credit[i] < maxWeight) continue;
        credit[i] -= maxWeight;
      }
      let c = pos[i];
      const s = skip[i];
      while (entry[c] !== 0xffff) {
        c += s;
        if (c >= m) c -= m;
      }
      entry[c] = i;
      c += s;
      if (c >= m) c -= m;
      pos[i] = c;
      filled++;
      if (filled === m) return entry;
    }
  }
}
