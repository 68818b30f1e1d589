// Open vSwitch's own hashes (the primitives live in src/hashing/ovs.ts, shared with `sluice explain`), and
// the basis a `select` group with `selection_method=hash,fields(...)` feeds to `group_best_live_bucket`
// (ofproto/ofproto-dpif-xlate.c). Written from reading those functions; checked against the real ovs-vswitchd by
// scripts/validate-sim.ts (every connection's predicted bucket = the backend it greeted with) and pinned by
// known answers in test/unit/sim-explicit.test.ts. Pure.
//
// Used by the simulator's explicit-connection mode (lab validation) for strategy 3. The simulator's stand-in
// `hashInt` in hash.ts is NOT this function (it only needs to be uniform); the two must not be mixed up.

import { ovsHashBytes, ovsHashInt, ovsHashUint64 } from '../hashing/ovs.ts';

export { ovsHashAdd, ovsHashBytes, ovsHashFinish, ovsHashInt, ovsHashUint64 } from '../hashing/ovs.ts';

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
