// Open vSwitch's own hashes, as OVS 3.1 computes them in userspace on x86-64 builds without SSE4.2 (Debian's
// generic amd64 package): the murmur-based `hash_add`/`hash_finish` of lib/hash.h, `hash_bytes` of lib/hash.c, and
// the basis a `select` group with `selection_method=hash,fields(...)` feeds to `group_best_live_bucket`
// (ofproto/ofproto-dpif-xlate.c). Written from reading those functions; checked against the real ovs-vswitchd by
// scripts/validate-sim.ts (every connection's predicted bucket = the backend it greeted with) and pinned by
// known answers in test/unit/sim-explicit.test.ts. Pure.
//
// Used by the simulator's explicit-connection mode (lab validation) for strategy 3. The simulator's stand-in
// `hashInt` in hash.ts is NOT this function (it only needs to be uniform); the two must not be mixed up.

import { fmix32 } from '../hashing/hash.ts';
import { mix32 } from './hash.ts';

/** lib/hash.h `mhash_add` (= `hash_add` without SSE4.2): one murmur3 body round. Unsigned. */
export function ovsHashAdd(hash: number, data: number): number {
  return mix32(hash, data) >>> 0;
}

/** lib/hash.h `hash_finish(hash, final)` = murmur3 fmix32 of `hash ^ final`. Unsigned. */
export function ovsHashFinish(hash: number, final: number): number {
  return fmix32(hash ^ final);
}

/** lib/hash.h `hash_int(x, basis)` = `hash_2words(x, basis)`: scores bucket `x` in `group_best_live_bucket`. */
export function ovsHashInt(x: number, basis: number): number {
  return ovsHashFinish(ovsHashAdd(ovsHashAdd(x >>> 0, 0), basis >>> 0), 8);
}

/** lib/hash.h `hash_uint64(x)` for x < 2^32 (the selection method parameter): `hash_add64` then finish with 8. */
export function ovsHashUint64(x: number): number {
  return ovsHashFinish(ovsHashAdd(ovsHashAdd(0, x >>> 0), Math.floor(x / 2 ** 32) >>> 0), 8);
}

/**
 * lib/hash.c `hash_bytes(p, n, basis)`: 4-byte words read in the CPU's (little-endian) order, a zero-padded tail
 * word, then `hash_finish(hash, n)`.
 */
export function ovsHashBytes(bytes: Uint8Array, basis: number): number {
  let h = basis >>> 0;
  const n = bytes.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    h = ovsHashAdd(h, (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) >>> 0);
  }
  if (i < n) {
    let tail = 0;
    for (let j = 0; i + j < n; j++) tail |= bytes[i + j] << (8 * j);
    h = ovsHashAdd(h, tail >>> 0);
  }
  return ovsHashFinish(h, n);
}

function ipv4Bytes(ip: string): Uint8Array {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) {
    throw new RangeError(`not an IPv4 address: ${ip}`);
  }
  return Uint8Array.from(p);
}

function portBytes(port: number): Uint8Array {
  return Uint8Array.of((port >>> 8) & 0xff, port & 0xff); // network order, as the flow stores it
}

/**
 * The basis `xlate_hash_fields_select_group` computes for a TCP/IPv4 packet in a group with
 * `selection_method=hash,fields(ip_src,ip_dst,tcp_src,tcp_dst)` and selection_method_param `param`: starts at
 * `hash_uint64(param)`, then `hash_bytes` of each field's (unmasked) value in meta-flow field-id order
 * (IPv4 source, IPv4 destination, TCP source port, TCP destination port), whatever order the group lists them in.
 */
export function ovsSelectHashBasis(
  srcIp: string,
  dstIp: string,
  srcPort: number,
  dstPort: number,
  param = 0,
): number {
  let basis = ovsHashUint64(param);
  basis = ovsHashBytes(ipv4Bytes(srcIp), basis);
  basis = ovsHashBytes(ipv4Bytes(dstIp), basis);
  basis = ovsHashBytes(portBytes(srcPort), basis);
  basis = ovsHashBytes(portBytes(dstPort), basis);
  return basis;
}

/**
 * `group_best_live_bucket`: every (live) bucket scores `(hash_int(bucket_id, basis) & 0xffff) * weight`; the best
 * wins, and on a tie the LATER bucket in list order (`>=`). Returns the list index, -1 for an empty list.
 */
export function ovsBestBucket(
  bucketIds: readonly number[],
  basis: number,
  weights?: readonly number[],
): number {
  let best = -1;
  let bestScore = 0;
  for (let i = 0; i < bucketIds.length; i++) {
    const score = (ovsHashInt(bucketIds[i], basis) & 0xffff) * (weights?.[i] ?? 1);
    if (score >= bestScore) {
      best = i;
      bestScore = score;
    }
  }
  return best;
}
