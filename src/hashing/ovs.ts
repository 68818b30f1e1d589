// The hashes Open vSwitch 3.1 computes for a packet, so that `sluice explain` can say which slot the switch picks.
// Written from reading OVS's lib/hash.h, lib/hash.c, lib/jhash.c, lib/flow.c, lib/multipath.c, lib/odp-execute.c,
// lib/dpif-netdev*.c and ofproto/ofproto-dpif*.c (v3.1.0); pinned against the real ovs-vswitchd by
// test/unit/ovs-hash.test.ts (answers read from a live switch).
// Pure. Design and limits: docs/design/hash.md.
//
// The build matters: x86-64 packages compiled without SSE4.2 (Debian's generic amd64 build) use the murmur-based
// `hash_add` below; a build with SSE4.2 (or on aarch64 with CRC32) uses CRC32 instructions and other values.

import type { Protocol } from '../model/types.ts';
import { fmix32 } from './hash.ts';

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** lib/hash.h `hash_add` (mhash_add without SSE4.2): one murmur3 body round. Unsigned. */
export function ovsHashAdd(hash: number, data: number): number {
  let d = Math.imul(data >>> 0, 0xcc9e2d51);
  d = rotl(d, 15);
  d = Math.imul(d, 0x1b873593);
  let h = (hash ^ d) >>> 0;
  h = rotl(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

/** lib/hash.h `hash_finish(hash, final)` = murmur3 fmix32 of `hash ^ final`. Unsigned. */
export function ovsHashFinish(hash: number, final: number): number {
  return fmix32((hash ^ final) >>> 0);
}

/** lib/hash.h `hash_int(x, basis)` = `hash_2words(x, basis)`. Unsigned. */
export function ovsHashInt(x: number, basis: number): number {
  return ovsHashFinish(ovsHashAdd(ovsHashAdd(x >>> 0, 0), basis >>> 0), 8);
}

/** lib/hash.h `hash_uint64(x)` for x < 2^53: `hash_add64` then finish with 8. */
export function ovsHashUint64(x: number): number {
  return ovsHashFinish(ovsHashAdd(ovsHashAdd(0, x >>> 0), Math.floor(x / 2 ** 32) >>> 0), 8);
}

/** A 32-bit word as a little-endian CPU loads it from `bytes[i..i+3]` (OVS casts network-order fields). */
function loadLe32(bytes: Uint8Array, i: number): number {
  return (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) >>> 0;
}

/** A network-order 16-bit port as a little-endian CPU reads the `ovs_be16` (bytes swapped). */
function loadLe16(port: number): number {
  return ((port >>> 8) & 0xff) | ((port & 0xff) << 8);
}

/** lib/hash.c `hash_bytes(p, n, basis)`: 4-byte words, a zero-padded tail word, then `hash_finish(hash, n)`. */
export function ovsHashBytes(bytes: Uint8Array, basis: number): number {
  let h = basis >>> 0;
  const n = bytes.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) h = ovsHashAdd(h, loadLe32(bytes, i));
  if (i < n) {
    let tail = 0;
    for (let j = 0; i + j < n; j++) tail |= bytes[i + j] << (8 * j);
    h = ovsHashAdd(h, tail >>> 0);
  }
  return ovsHashFinish(h, n);
}

// lib/jhash.c `jhash_mix` and `jhash_final` on the state [a, b, c], one row per line of the C macros:
// mix: s[p] -= s[q]; s[p] ^= rot(s[q], r); s[q] += s[w].  final: s[p] ^= s[q]; s[p] -= rot(s[q], r).
const JHASH_MIX: readonly (readonly [number, number, number, number])[] = [
  [0, 2, 1, 4],
  [1, 0, 2, 6],
  [2, 1, 0, 8],
  [0, 2, 1, 16],
  [1, 0, 2, 19],
  [2, 1, 0, 4],
];
const JHASH_FINAL: readonly (readonly [number, number, number])[] = [
  [2, 1, 14],
  [0, 2, 11],
  [1, 0, 25],
  [2, 1, 16],
  [0, 2, 4],
  [1, 0, 14],
  [2, 1, 24],
];

function jhashMix(s: Uint32Array): void {
  for (const [p, q, w, r] of JHASH_MIX) {
    s[p] -= s[q];
    s[p] ^= rotl(s[q], r);
    s[q] += s[w];
  }
}

function jhashFinal(s: Uint32Array): void {
  for (const [p, q, r] of JHASH_FINAL) {
    s[p] ^= s[q];
    s[p] -= rotl(s[q], r);
  }
}

/** lib/jhash.c `jhash_bytes(p, n, basis)` (Bob Jenkins' lookup3, little-endian loads). Unsigned. */
export function ovsJhashBytes(bytes: Uint8Array, basis: number): number {
  const s = new Uint32Array(3);
  s[0] = s[1] = s[2] = 0xdeadbeef + bytes.length + basis;
  let i = 0;
  let n = bytes.length;
  for (; n >= 12; n -= 12, i += 12) {
    s[0] += loadLe32(bytes, i);
    s[1] += loadLe32(bytes, i + 4);
    s[2] += loadLe32(bytes, i + 8);
    jhashMix(s);
  }
  if (n > 0) {
    const tail = new Uint8Array(12);
    tail.set(bytes.subarray(i));
    s[0] += loadLe32(tail, 0);
    s[1] += loadLe32(tail, 4);
    s[2] += loadLe32(tail, 8);
    jhashFinal(s);
  }
  return s[2];
}

/** A packet as the gateway sees it: addresses in network order (4 or 16 bytes, both the same family). */
export interface PacketKey {
  readonly proto: Protocol;
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  readonly sport: number;
  readonly dport: number;
}

const IP_PROTO: Readonly<Record<Protocol, number>> = { tcp: 6, udp: 17 };

function checkKey(key: PacketKey): void {
  const n = key.src.length;
  if ((n !== 4 && n !== 16) || key.dst.length !== n) {
    throw new RangeError('source and destination must both be IPv4 (4 bytes) or both IPv6 (16 bytes)');
  }
}

/** The address words OVS feeds to `hash_add`, as a little-endian CPU loads them (IPv6: 64-bit halves, low first). */
function addAddress(hash: number, bytes: Uint8Array): number {
  let h = hash;
  for (let i = 0; i < bytes.length; i += 4) h = ovsHashAdd(h, loadLe32(bytes, i));
  return h;
}

/**
 * lib/flow.c `miniflow_hash_5tuple(flow, basis)` (= `flow_hash_5tuple`): addresses, IP protocol, both ports in one
 * word, finished with 42. The userspace datapath stores it as the packet's RSS hash when the NIC gave none.
 */
export function ovsHash5Tuple(key: PacketKey, basis = 0): number {
  checkKey(key);
  let h = addAddress(basis >>> 0, key.src);
  h = addAddress(h, key.dst);
  h = ovsHashAdd(h, IP_PROTO[key.proto]);
  h = ovsHashAdd(h, (loadLe16(key.sport) | (loadLe16(key.dport) << 16)) >>> 0);
  return ovsHashFinish(h, 42);
}

/**
 * The `dp_hash` the userspace datapath (dpif-netdev) gives a packet that a `select` group with
 * `selection_method=dp_hash` (algorithm L4, `selection_method_param` = basis) sends through its `hash` action:
 * `hash_int(rss, basis)`, where `rss` is the packet's RSS hash, i.e. `miniflow_hash_5tuple(packet, 0)` for a packet
 * received without one (veth, tap, AF_PACKET; not DPDK or AF_XDP NICs that supply their own).
 */
export function ovsUserspaceDpHash(key: PacketKey, basis = 0): number {
  return ovsHashInt(ovsHash5Tuple(key, 0), basis);
}

/**
 * lib/flow.c `flow_hash_symmetric_l3l4(flow, basis, inc_udp_ports)`: the XOR of the addresses, the IP protocol and,
 * for TCP (and UDP when `includeUdp`, the `symmetric_l3l4+udp` field set), the XOR of the ports, finished with the
 * basis. Unfragmented packets only (a fragment hashes without ports).
 */
export function ovsHashSymmetricL3L4(key: PacketKey, basis = 0, includeUdp = true): number {
  checkKey(key);
  const x = new Uint8Array(key.src.length);
  for (let i = 0; i < x.length; i++) x[i] = key.src[i] ^ key.dst[i];
  let h = addAddress(basis >>> 0, x);
  h = ovsHashAdd(h, IP_PROTO[key.proto]);
  if (key.proto === 'tcp' || includeUdp) h = ovsHashAdd(h, loadLe16(key.sport ^ key.dport));
  return ovsHashFinish(h, basis >>> 0);
}

/**
 * lib/multipath.c with algorithm `modulo_n` over `n` links: `hash % n`. sluice's `fields` hash mode runs
 * `multipath(symmetric_l3l4+udp,0,modulo_n,2^k,0,reg)`, so its slot is the low k bits of the symmetric L3/L4 hash.
 */
export function ovsMultipathModuloN(hash: number, n: number): number {
  return (hash >>> 0) % n;
}

/** sluice's `fields` hash mode: `multipath(symmetric_l3l4+udp,0,...)` (src/compile/gateway.ts `FIELDS_HASH`). */
export function fieldsModeHash(key: PacketKey): number {
  return ovsHashSymmetricL3L4(key, 0, true);
}
