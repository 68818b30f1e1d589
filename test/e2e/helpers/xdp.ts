// Shared by the XDP gateway tests (not a test file): crafted frames, and what the OVS gateway emits for a frame,
// derived from its compiled flows (CLASSIFY's multipath, GW_SLOTS' set_field actions) and Open vSwitch 3.1's
// userspace tunnel push (lib/netdev-native-tnl.c, ofproto/tunnel.c): outer Ethernet from br-phy's MAC to the
// neighbour of tun_dst; IPv4 id 0, DF, TTL 64, ECN of the inner packet (CE sent as ECT(0)); UDP source port from
// the packet's 5-tuple hash scaled into [32768, 61000), no checksum (csum=false); Geneve with the critical bit,
// VNI 0 and the options in TLV order. test/e2e/xdp-gateway.test.ts pins this model against a live OVS gateway.

import type { Flow, Group } from '../../../src/flowset/types.ts';
import {
  fieldsModeHash,
  ovsHash5Tuple,
  ovsHashAdd,
  ovsHashFinish,
  ovsUserspaceDpHash,
  type PacketKey,
} from '../../../src/hashing/ovs.ts';
import { parseIp } from '../../../src/model/ip.ts';

export const ROUTER_MAC = '02:00:c0:a8:64:fe';

export function mac(text: string): Uint8Array {
  return Uint8Array.from(text.split(':').map((x) => Number.parseInt(x, 16)));
}

function ip(text: string): Uint8Array {
  const p = parseIp(text);
  if (!p) throw new Error(`not an address: ${text}`);
  return p.bytes;
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export interface FrameSpec {
  readonly src: string;
  readonly dst: string;
  /** IP protocol: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6. */
  readonly proto: number;
  readonly sport?: number;
  readonly dport?: number;
  /** L4 payload bytes (a counting pattern). */
  readonly payload?: number;
  /** IPv4 options (a multiple of 4 bytes). */
  readonly ipOptions?: Uint8Array;
  /** IPv6 extension headers before L4, by next-header number (0 hop-by-hop, 43 routing, 60 destination). */
  readonly v6Ext?: readonly number[];
  /** A fragment: offset in 8-byte units and the more-fragments flag (IPv6: a fragment header). */
  readonly frag?: { readonly offset: number; readonly more: boolean };
  /** Keep only this many bytes of the L4 header and payload (the IP lengths say so too: a short L4). */
  readonly l4Bytes?: number;
  /** IPv4 TOS / IPv6 traffic class (ECN in the low two bits). */
  readonly tos?: number;
  readonly dstMac: string;
}

/** L4 header: TCP (20 bytes, SYN), UDP (8) or ICMP echo (8); checksums left zero (neither OVS nor XDP checks). */
function l4Header(s: FrameSpec, payloadLen: number): Uint8Array {
  const h = new Uint8Array(s.proto === 6 ? 20 : 8);
  const v = new DataView(h.buffer);
  if (s.proto === 6 || s.proto === 17) {
    v.setUint16(0, s.sport ?? 0);
    v.setUint16(2, s.dport ?? 0);
  }
  if (s.proto === 6) {
    v.setUint32(4, 0x01020304);
    h[12] = 5 << 4;
    h[13] = 0x02;
    v.setUint16(14, 64240);
  } else if (s.proto === 17) {
    v.setUint16(4, 8 + payloadLen);
  } else {
    h[0] = s.proto === 58 ? 128 : 8;
  }
  return h;
}

/** An Ethernet frame from the router to `dstMac`, as specified. */
export function craftFrame(s: FrameSpec): Uint8Array {
  const family = s.src.includes(':') ? 6 : 4;
  const payload = Uint8Array.from({ length: s.payload ?? 0 }, (_, i) => i & 0xff);
  let l4 = cat(l4Header(s, payload.length), payload);
  if (s.l4Bytes !== undefined) l4 = l4.subarray(0, s.l4Bytes);
  const eth = cat(
    mac(s.dstMac),
    mac(ROUTER_MAC),
    Uint8Array.of(family === 6 ? 0x86 : 0x08, family === 6 ? 0xdd : 0),
  );
  if (family === 4) {
    const opts = s.ipOptions ?? new Uint8Array(0);
    const h = new Uint8Array(20 + opts.length);
    const v = new DataView(h.buffer);
    h[0] = 0x40 | (h.length / 4);
    h[1] = s.tos ?? 0;
    v.setUint16(2, h.length + l4.length);
    v.setUint16(4, 0x1234);
    v.setUint16(6, (s.frag ? s.frag.offset : 0) | (s.frag?.more ? 0x2000 : 0));
    h[8] = 63;
    h[9] = s.proto;
    h.set(ip(s.src), 12);
    h.set(ip(s.dst), 16);
    h.set(opts, 20);
    return cat(eth, h, l4);
  }
  const exts: Uint8Array[] = [];
  const chain = [...(s.v6Ext ?? []), ...(s.frag ? [44] : [])];
  for (let i = 0; i < chain.length; i++) {
    const next = i + 1 < chain.length ? chain[i + 1] : s.proto;
    const e = new Uint8Array(8);
    e[0] = next;
    if (chain[i] === 44 && s.frag) {
      new DataView(e.buffer).setUint16(2, (s.frag.offset << 3) | (s.frag.more ? 1 : 0));
      new DataView(e.buffer).setUint32(4, 0xabcdef);
    } else if (chain[i] === 43) {
      e[2] = 4; // routing type 4 (segment routing), segments left 0: skipped as OVS does
    } else {
      e[2] = 1; // a PadN option filling the header
      e[3] = 4;
    }
    exts.push(e);
  }
  const ext = cat(...exts);
  const h = new Uint8Array(40);
  const v = new DataView(h.buffer);
  v.setUint32(0, (6 << 28) | ((s.tos ?? 0) << 20) | 0x12345);
  v.setUint16(4, ext.length + l4.length);
  h[6] = chain.length > 0 ? chain[0] : s.proto;
  h[7] = 63;
  h.set(ip(s.src), 8);
  h.set(ip(s.dst), 24);
  return cat(eth, h, ext, l4);
}

/** What OVS's flow extraction reads from a frame (lib/flow.c miniflow_extract), or undefined when it is not IP. */
interface OvsFlowKey {
  readonly family: 4 | 6;
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  readonly proto: number;
  readonly frag: 'no' | 'first' | 'later';
  /** Ports when the L4 header was parsed (TCP/UDP), else 0. */
  readonly sport: number;
  readonly dport: number;
  readonly ecn: number;
  /** Offset of the L4 header in the frame, and the L4 bytes the IP header claims. */
  readonly l4: number;
  readonly l4Len: number;
}

function l4Ports(view: DataView, at: number, len: number, proto: number): [number, number] {
  if (proto === 6 && len >= 20) {
    const off = (view.getUint8(at + 12) >> 4) * 4;
    if (off >= 20 && off <= len) return [view.getUint16(at), view.getUint16(at + 2)];
  }
  if (proto === 17 && len >= 8) return [view.getUint16(at), view.getUint16(at + 2)];
  return [0, 0];
}

export function ovsFlowKey(f: Uint8Array): OvsFlowKey | undefined {
  const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
  if (f.length < 14) return undefined;
  const type = v.getUint16(12);
  if (type === 0x0800) {
    if (f.length < 34) return undefined;
    const ihl = (f[14] & 0xf) * 4;
    const tot = v.getUint16(16);
    if (ihl < 20 || tot > f.length - 14 || ihl > tot) return undefined;
    const fo = v.getUint16(20);
    const frag = (fo & 0x1fff) !== 0 ? 'later' : (fo & 0x2000) !== 0 ? 'first' : 'no';
    const proto = f[23];
    const [sport, dport] = frag === 'later' ? [0, 0] : l4Ports(v, 14 + ihl, tot - ihl, proto);
    const ecn = f[15] & 3;
    const l4 = { l4: 14 + ihl, l4Len: tot - ihl };
    return { family: 4, src: f.slice(26, 30), dst: f.slice(30, 34), proto, frag, sport, dport, ecn, ...l4 };
  }
  if (type !== 0x86dd || f.length < 54) return undefined;
  let len = v.getUint16(18);
  if (len > f.length - 54) return undefined;
  let next = f[20];
  let at = 54;
  let frag: OvsFlowKey['frag'] = 'no';
  while (next === 0 || next === 43 || next === 60 || next === 44) {
    if (len < 8) return undefined;
    const n = next === 44 ? 8 : (f[at + 1] + 1) * 8;
    if (next === 44) frag = (v.getUint16(at + 2) & 0xfff8) !== 0 ? 'later' : 'first';
    next = f[at];
    at += n;
    len -= n;
    if (len < 0) return undefined;
  }
  const [sport, dport] = frag === 'later' ? [0, 0] : l4Ports(v, at, len, next);
  const ecn = (f[15] >> 4) & 3;
  const l4 = { l4: at, l4Len: len };
  return {
    family: 6,
    src: f.slice(22, 38),
    dst: f.slice(38, 54),
    proto: next,
    frag,
    sport,
    dport,
    ecn,
    ...l4,
  };
}

/** The gateway's own addresses on the underlay and its tunnel neighbours. */
export interface GatewayUnderlay {
  readonly mac: string;
  readonly ip: string;
  readonly neighbours: ReadonlyMap<string, string>;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const OF_PROTO: Readonly<Record<string, number>> = { tcp: 6, udp: 17, tcp6: 6, udp6: 17 };

/**
 * CLASSIFY's VIP:port flow for the key: lb id, slots n and hash from its set_field and either its multipath
 * (fields mode) or its dp_hash group's bucket (dp_hash mode: the userspace datapath's dp_hash, basis 0), or
 * undefined.
 */
function classify(
  flows: readonly Flow[],
  groups: readonly Group[],
  k: OvsFlowKey,
): { id: number; n: number; mode: 'fields' | 'dp_hash' } | undefined {
  for (const fl of flows) {
    if (fl.table !== 0) continue;
    const m = /^(tcp6?|udp6?),(?:nw_dst|ipv6_dst)=([^,]+),tp_dst=(\d+)$/.exec(fl.match);
    if (!m || OF_PROTO[m[1]] !== k.proto || Number(m[3]) !== k.dport || !sameBytes(ip(m[2]), k.dst)) continue;
    const id = /set_field:(\w+)->reg0/.exec(fl.actions);
    const n = /multipath\(symmetric_l3l4\+udp,0,modulo_n,(\d+),/.exec(fl.actions);
    if (id && n) return { id: Number(id[1]), n: Number(n[1]), mode: 'fields' };
    const g = /group:(\d+)/.exec(fl.actions);
    const spec = groups.find((x) => g && x.groupId === Number(g[1]))?.spec ?? '';
    const bits = /selection_method=dp_hash,.*NXM_NX_DP_HASH\[0\.\.(\d+)\]/.exec(spec);
    if (!id || !bits) throw new Error(`unexpected CLASSIFY actions (or no dp_hash group): ${fl.actions}`);
    return { id: Number(id[1]), n: 2 ** (Number(bits[1]) + 1), mode: 'dp_hash' };
  }
  return undefined;
}

/** GW_SLOTS' flow for (lb, slot): its three option values and tun_dst. */
function slotFlow(
  flows: readonly Flow[],
  id: number,
  slot: number,
): { opts: number[]; dst: string } | undefined {
  const want = `reg0=${id === 0 ? '0' : `0x${id.toString(16)}`},reg1=${slot === 0 ? '0' : `0x${slot.toString(16)}`}`;
  const fl = flows.find((x) => x.table === 10 && x.match === want);
  if (!fl) return undefined;
  const opts = [0, 1, 2].map((i) =>
    Number(new RegExp(`set_field:(\\w+)->tun_metadata${i}`).exec(fl.actions)![1]),
  );
  return { opts, dst: /set_field:([\d.]+)->tun_dst/.exec(fl.actions)![1] };
}

function checksum(h: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += (h[i] << 8) | h[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * The frame an OVS gateway (userspace datapath) with these br-int flows and groups (fields or dp_hash mode) sends
 * for `frame` received on its uplink, or undefined when it sends none (not a VIP:port, a later fragment, a slot
 * without a primary, not IP). ICMP errors (copies to every host): `ovsIcmpCopies`.
 */
export function ovsGatewayOutput(
  flows: readonly Flow[],
  frame: Uint8Array,
  gw: GatewayUnderlay,
  groups: readonly Group[] = [],
): Uint8Array | undefined {
  const k = ovsFlowKey(frame);
  // OVS's `normal` fragment handling looks every fragment up with ports 0: no VIP:port flow matches.
  if (!k || (k.proto !== 6 && k.proto !== 17) || k.frag !== 'no') return undefined;
  const c = classify(flows, groups, k);
  if (!c) return undefined;
  const key: PacketKey = {
    proto: k.proto === 6 ? 'tcp' : 'udp',
    src: k.src,
    dst: k.dst,
    sport: k.sport,
    dport: k.dport,
  };
  const hash = c.mode === 'fields' ? fieldsModeHash(key) : ovsUserspaceDpHash(key, 0);
  const s = slotFlow(flows, c.id, hash % c.n);
  if (!s) return undefined;
  const options = s.opts.map((value, i) => [0x80 + i, value] as const);
  return tunnelPush(gw, s.dst, k.ecn, ovsHash5Tuple(key, 0), options, frame);
}

/** OVS's userspace tunnel push of `frame` to `dst` with Geneve `options` ([type, value], class 0xffff, 4 bytes),
 *  the UDP source port from the packet's 5-tuple hash `h5`. */
function tunnelPush(
  gw: GatewayUnderlay,
  dst: string,
  ecn: number,
  h5: number,
  options: ReadonlyArray<readonly [number, number]>,
  frame: Uint8Array,
): Uint8Array {
  const neighbour = gw.neighbours.get(dst);
  if (!neighbour) throw new Error(`no neighbour for ${dst}`);
  const len = 50 + 8 * options.length;
  const outer = new Uint8Array(len);
  const v = new DataView(outer.buffer);
  outer.set(mac(neighbour), 0);
  outer.set(mac(gw.mac), 6);
  v.setUint16(12, 0x0800);
  const ipLen = len - 14 + frame.length;
  outer[14] = 0x45;
  outer[15] = ecn === 3 ? 2 : ecn;
  v.setUint16(16, ipLen);
  v.setUint16(20, 0x4000);
  outer[22] = 64;
  outer[23] = 17;
  outer.set(ip(gw.ip), 26);
  outer.set(ip(dst), 30);
  v.setUint16(24, checksum(outer.subarray(14, 34)));
  v.setUint16(34, Math.floor((h5 * (61000 - 32768)) / 2 ** 32) + 32768);
  v.setUint16(36, 6081);
  v.setUint16(38, ipLen - 20);
  outer[42] = 2 * options.length;
  outer[43] = 0x40;
  v.setUint16(44, 0x6558);
  options.forEach(([type, value], i) => {
    v.setUint16(50 + 8 * i, 0xffff);
    outer[52 + 8 * i] = type;
    outer[53 + 8 * i] = 1;
    v.setUint32(54 + 8 * i, value >>> 0);
  });
  return cat(outer, frame);
}

/** lib/flow.c miniflow_hash_5tuple(flow, 0) of an ICMP(v6) packet: its ports are htons(type), htons(code). */
function icmpHash5(k: OvsFlowKey, type: number, code: number): number {
  const words = (b: Uint8Array) =>
    Array.from({ length: b.length / 4 }, (_, i) =>
      new DataView(b.buffer, b.byteOffset).getUint32(4 * i, true),
    );
  let h = 0;
  for (const w of [...words(k.src), ...words(k.dst)]) h = ovsHashAdd(h, w);
  h = ovsHashAdd(h, k.proto);
  h = ovsHashAdd(h, ((type << 8) | (code << 24)) >>> 0);
  return ovsHashFinish(h, 42);
}

/**
 * The copies an OVS gateway with these br-int flows sends for an ICMP error `frame` received on its uplink: its
 * GW_ICMP flow (src/compile/icmp.ts) sets TUN_LB_SLOT and outputs once per tun_dst, so one Geneve frame per host,
 * in the flow's order, with that one option. [] when no GW_ICMP flow matches (not an error to a VIP, a fragment:
 * OVS's `normal` fragment handling zeroes the ICMP type, a header cut short).
 */
export function ovsIcmpCopies(flows: readonly Flow[], frame: Uint8Array, gw: GatewayUnderlay): Uint8Array[] {
  const k = ovsFlowKey(frame);
  if (
    !k ||
    k.proto !== (k.family === 4 ? 1 : 58) ||
    k.frag !== 'no' ||
    k.l4Len < 8 ||
    k.l4 + 8 > frame.length
  )
    return [];
  const [type, code] = [frame[k.l4], frame[k.l4 + 1]];
  const fl = flows.find((x) => {
    const m = /^icmp6?,(?:nw_dst|ipv6_dst)=([^,]+),icmp_type=(\d+)$/.exec(x.match);
    return (
      x.table === 0 &&
      m !== null &&
      Number(m[2]) === type &&
      sameBytes(ip(m[1]), k.dst) &&
      x.actions.includes('tun_dst')
    );
  });
  if (!fl) return [];
  const lb = Number(/set_field:(\w+)->tun_metadata0/.exec(fl.actions)![1]);
  const h5 = icmpHash5(k, type, code);
  return [...fl.actions.matchAll(/set_field:([\d.]+)->tun_dst/g)].map((m) =>
    tunnelPush(gw, m[1], k.ecn, h5, [[0x80, lb]], frame),
  );
}

/** Ones-complement sum of 16-bit words (an odd byte padded with zero). */
function sum16(bytes: Uint8Array, start = 0): number {
  let sum = start;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * `frame` (Ethernet, IPv4 without options or IPv6 without extension headers, ICMP or ICMPv6) with its IPv4 header
 * checksum and its ICMP checksum computed in full (ICMPv6: with the pseudo-header).
 */
export function withIcmpChecksums(frame: Uint8Array): Uint8Array {
  const f = Uint8Array.from(frame);
  const v = new DataView(f.buffer);
  if (v.getUint16(12) === 0x0800) {
    v.setUint16(24, 0);
    v.setUint16(24, ~sum16(f.subarray(14, 34)) & 0xffff);
    v.setUint16(36, 0);
    v.setUint16(36, ~sum16(f.subarray(34)) & 0xffff);
  } else {
    const pseudo = sum16(Uint8Array.of(0, 0, (f.length - 54) >> 8, (f.length - 54) & 0xff, 0, 0, 0, 58));
    v.setUint16(56, 0);
    v.setUint16(56, ~sum16(f.subarray(54), sum16(f.subarray(22, 54), pseudo)) & 0xffff);
  }
  return f;
}

/**
 * What the OVS gateway's echo flow (src/compile/icmp.ts) sends for an echo request `frame` (as withIcmpChecksums
 * takes): Ethernet and IP addresses swapped, echo reply, TTL (hop limit) 64, checksums valid.
 */
export function ovsEchoReply(frame: Uint8Array): Uint8Array {
  const f = Uint8Array.from(frame);
  const four = f[12] === 0x08;
  const swap = (a: number, b: number, n: number) => {
    const t = f.slice(a, a + n);
    f.copyWithin(a, b, b + n);
    f.set(t, b);
  };
  swap(0, 6, 6);
  if (four) swap(26, 30, 4);
  else swap(22, 38, 16);
  f[four ? 22 : 21] = 64;
  f[four ? 34 : 54] = four ? 0 : 129;
  return withIcmpChecksums(f);
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** The frames of a classic pcap file (what `tcpdump -w` writes; either byte order, Ethernet link type). */
export function readPcap(file: Uint8Array): Uint8Array[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const magic = v.getUint32(0, true);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && v.getUint32(0, false) !== 0xa1b2c3d4 && v.getUint32(0, false) !== 0xa1b23c4d) {
    throw new Error('not a pcap file');
  }
  const frames: Uint8Array[] = [];
  for (let at = 24; at + 16 <= file.length; ) {
    const len = v.getUint32(at + 8, le);
    frames.push(file.slice(at + 16, at + 16 + len));
    at += 16 + len;
  }
  return frames;
}
