// Deterministic 32-bit hashing and random numbers for the simulator. Pure.
//
// `tupleHash` stands in for the datapath's 5-tuple hash (OVS dp_hash / RSS, the upstream router's ECMP hash):
// a MurmurHash3-style mix of the five fields. It is not bit-exact with any of them; the simulator only needs a
// uniform, deterministic hash that every gateway computes alike (docs/design/overview.md "Hash modes").

import { fmix32 } from '../hashing/hash.ts';
import { ovsHashAdd } from '../hashing/ovs.ts';

/** One MurmurHash3 body round (OVS's `hash_add`): mixes 32-bit word `k` into `h`. Signed 32-bit result (callers
 *  `>>> 0`). */
export function mix32(h: number, k: number): number {
  return ovsHashAdd(h, k) | 0;
}

/** Hash of a TCP/UDP 5-tuple with a seed (different seeds model different hash functions). Unsigned. */
export function tupleHash(
  srcIp: number,
  dstIp: number,
  srcPort: number,
  dstPort: number,
  proto: number,
  seed: number,
): number {
  let h = seed | 0;
  h = mix32(h, srcIp);
  h = mix32(h, dstIp);
  h = mix32(h, ((srcPort & 0xffff) << 16) | (dstPort & 0xffff));
  h = mix32(h, proto);
  return fmix32(h ^ 16);
}

/** OVS-style `hash_int(x, basis)` (murmur round + finaliser): scores a bucket id for rendezvous hashing. */
export function hashInt(x: number, basis: number): number {
  return fmix32(mix32(basis, x) ^ 4);
}

/** Small fast PRNG (mulberry32): deterministic for a seed, period 2^32; fine for simulation. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    this.#s = (this.#s + 0x6d2b79f5) | 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }
  /** Uniform in (0, 1]. */
  open(): number {
    return (this.u32() + 1) / 4294967296;
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    return Math.sqrt(-2 * Math.log(this.open())) * Math.cos(2 * Math.PI * this.next());
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** Derives an independent stream seed from a base seed and a stream number. */
export function streamSeed(seed: number, stream: number): number {
  return fmix32(mix32(seed | 0, stream) ^ 0x5eed);
}
