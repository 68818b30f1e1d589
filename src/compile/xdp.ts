// The XDP gateway's maps (src/xdp/gateway.bpf.c) for one generation: the same decisions as the OVS gateway's
// CLASSIFY and GW_SLOTS flows (gateway.ts; the slot entries are the very values those flows carry), as map keys
// and values in the C structs' byte layout. Pure. Design: docs/design/xdp.md.

import { SluiceError } from '../model/errors.ts';
import { parseIp } from '../model/ip.ts';
import type { Config, HashMode } from '../model/types.ts';
import type { Generation } from '../rollout/types.ts';
import { ipv4ToInt } from './common.ts';
import { gatewaySlotEntries } from './gateway.ts';
import { DEFAULT_ICMP_RATE, vipHosts } from './icmp.ts';
import { lbInputs } from './index.ts';

/** Map sizes compiled into the program (gateway.bpf.c MAX_VIPS, MAX_SLOT_ENTRIES): more entries are refused
 *  before they reach the maps. The slot map holds both copies. */
export const XDP_LIMITS = { vips: 1024, slotEntries: 262144, icmpHosts: 64 } as const;
/** The outer TTL OVS's tunnels use unless configured (`options:ttl`). */
export const XDP_DEFAULT_TTL = 64;

/** What an XDP gateway is on the underlay (an OVS gateway's br-phy MAC and tunnel IP). */
export interface XdpGatewayFacts {
  /** Tunnel source IPv4. */
  readonly tunnelIp: string;
  /** MAC the encapsulated frames leave with. */
  readonly mac: string;
  /** Next-hop MAC of every host tunnel IP (OVS: its tunnel neighbour table). */
  readonly neighbours: ReadonlyMap<string, string>;
  readonly ttl?: number;
  /** ICMP errors per second the tc program copies (its meter; docs/design/icmp.md "The meter"); absent:
   *  DEFAULT_ICMP_RATE; 0: unmetered. */
  readonly icmpRate?: number;
}

/** One VIP address whose ICMP errors icmp.bpf.c copies to its hosts (the OVS gateway's GW_ICMP flows). */
export interface XdpIcmpVip {
  readonly family: 4 | 6;
  readonly vip: string;
  /** The id of the VIP's first load balancer (by name): TUN_LB_SLOT = lbId << 16. */
  readonly lbId: number;
  /** Hosts of the VIP's members, sorted by name, with their next-hop MACs. */
  readonly hosts: ReadonlyArray<{ readonly ip: string; readonly mac: string }>;
}

/** One VIP:port/proto the program encapsulates; `counter` indexes the per-VIP statistics. */
export interface XdpVip {
  readonly lb: string;
  readonly lbId: number;
  readonly family: 4 | 6;
  /** `icmp` (port 0): the VIP address's echo requests, answered by the program as the OVS gateway's echo flow. */
  readonly proto: 'tcp' | 'udp' | 'icmp';
  readonly vip: string;
  readonly port: number;
  readonly bits: number;
  readonly counter: number;
}

export interface XdpSlot {
  readonly lbId: number;
  readonly slot: number;
  readonly dst: string;
  readonly dstMac: string;
  readonly options: readonly [number, number, number];
}

export interface XdpTables {
  /** The OVS gateways' hash in this config (`fields`: multipath; `dp_hash`: the userspace datapath's). */
  readonly hashMode: HashMode;
  readonly srcIp: string;
  readonly srcMac: string;
  readonly ttl: number;
  readonly vips: readonly XdpVip[];
  readonly slots: readonly XdpSlot[];
  readonly icmp: readonly XdpIcmpVip[];
  /** The ICMP meter: errors per second, burst one second's worth; 0: none. */
  readonly icmpRate: number;
}

/** A key or value of one map, as bytes. */
export interface MapEntry {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export type XdpMapName =
  | 'sluice_active'
  | 'sluice_config'
  | 'sluice_vips'
  | 'sluice_slots'
  | 'sluice_stats'
  | 'sluice_icmpvips'
  | 'sluice_icmpconf'
  | 'sluice_icmpstat';

/** One write to one of the program's maps. */
export type MapWrite =
  | { readonly kind: 'update'; readonly map: XdpMapName; readonly entry: MapEntry }
  | { readonly kind: 'delete'; readonly map: XdpMapName; readonly key: Uint8Array };

export interface XdpMapImage {
  readonly config: MapEntry;
  readonly vips: readonly MapEntry[];
  readonly slots: readonly MapEntry[];
  readonly icmpConf: MapEntry;
  readonly icmpVips: readonly MapEntry[];
}

function macBytes(mac: string, what: string): Uint8Array {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new SluiceError('SLUICE_E_XDP', `${what}: not a MAC address: ${mac}`);
  }
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

/** The tables of one generation for one XDP gateway. Throws SLUICE_E_XDP (naming what) on a host without a
 *  neighbour MAC or tables larger than the program's maps; nothing is half-built. */
export function xdpTables(config: Config, gen: Generation, facts: XdpGatewayFacts): XdpTables {
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  const vips: XdpVip[] = [];
  const slots: XdpSlot[] = [];
  const echo = new Set<string>();
  for (const input of lbInputs(config, gen)) {
    const { lb, id, plan } = input;
    // One echo entry per VIP address (the OVS gateway has one echo flow per address, src/compile/icmp.ts).
    if (!echo.has(`${lb.family}/${lb.vip}`)) {
      echo.add(`${lb.family}/${lb.vip}`);
      const e = {
        lb: lb.name,
        lbId: id,
        family: lb.family,
        proto: 'icmp',
        vip: lb.vip,
        port: 0,
        bits: 0,
      } as const;
      vips.push({ ...e, counter: vips.length });
    }
    for (const port of lb.ports) {
      vips.push({
        lb: lb.name,
        lbId: id,
        family: lb.family,
        proto: lb.protocol,
        vip: lb.vip,
        port,
        bits: plan.bits,
        counter: vips.length,
      });
    }
    for (const e of gatewaySlotEntries(hostIp, input)) {
      const dstMac = facts.neighbours.get(e.dst);
      if (dstMac === undefined) {
        throw new SluiceError(
          'SLUICE_E_XDP',
          `xdp: no neighbour MAC for host tunnel IP ${e.dst} (lb ${lb.name})`,
        );
      }
      slots.push({ lbId: id, slot: e.slot, dst: e.dst, dstMac, options: e.options });
    }
  }
  if (vips.length > XDP_LIMITS.vips) {
    throw new SluiceError(
      'SLUICE_E_XDP',
      `xdp: ${vips.length} VIP ports, the program holds ${XDP_LIMITS.vips}`,
    );
  }
  // Two copies share the slot map.
  if (2 * slots.length > XDP_LIMITS.slotEntries) {
    throw new SluiceError(
      'SLUICE_E_XDP',
      `xdp: ${slots.length} slots, the program holds ${XDP_LIMITS.slotEntries / 2}`,
    );
  }
  return {
    hashMode: config.hashMode,
    srcIp: facts.tunnelIp,
    srcMac: facts.mac,
    ttl: facts.ttl ?? XDP_DEFAULT_TTL,
    vips,
    slots,
    icmp: xdpIcmpVips(config, gen, facts),
    icmpRate: facts.icmpRate ?? DEFAULT_ICMP_RATE,
  };
}

/** The VIP addresses whose ICMP errors the tc program copies, with the hosts the OVS gateway's GW_ICMP flows name. */
function xdpIcmpVips(config: Config, gen: Generation, facts: XdpGatewayFacts): XdpIcmpVip[] {
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  return vipHosts(lbInputs(config, gen)).flatMap((v) => {
    const ips = v.hosts.flatMap((h) => hostIp.get(h) ?? []);
    if (ips.length === 0) return [];
    if (ips.length > XDP_LIMITS.icmpHosts) {
      throw new SluiceError(
        'SLUICE_E_XDP',
        `xdp: VIP ${v.vip} has members on ${ips.length} hosts, the ICMP program copies to ${XDP_LIMITS.icmpHosts}`,
      );
    }
    const hosts = ips.map((ip) => {
      const mac = facts.neighbours.get(ip);
      if (mac === undefined)
        throw new SluiceError(
          'SLUICE_E_XDP',
          `xdp: no neighbour MAC for host tunnel IP ${ip} (VIP ${v.vip})`,
        );
      return { ip, mac };
    });
    return [{ family: v.family, vip: v.vip, lbId: v.id, hosts }];
  });
}

const IP_PROTO = { tcp: 6, udp: 17 } as const;
const ICMP_PROTO = { 4: 1, 6: 58 } as const;

function u32le(view: DataView, at: number, n: number): void {
  view.setUint32(at, n >>> 0, true);
}

function ipv4Bytes(ip: string): Uint8Array {
  const n = ipv4ToInt(ip);
  return Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** The map entries of `tables` in copy `copy` (0 or 1), laid out as gateway.bpf.c's structs (x86-64/arm64 are
 *  little-endian, as is the BPF target clang picks there; addresses and ports in network order). */
export function xdpMapImage(tables: XdpTables, copy: 0 | 1): XdpMapImage {
  const cfg = new Uint8Array(12);
  cfg.set(ipv4Bytes(tables.srcIp), 0);
  cfg.set(macBytes(tables.srcMac, 'xdp gateway MAC'), 4);
  cfg[10] = tables.ttl;
  cfg[11] = tables.hashMode === 'dp_hash' ? 1 : 0;
  const cfgKey = new Uint8Array(4);
  u32le(new DataView(cfgKey.buffer), 0, copy);
  const vips = tables.vips.map((v) => {
    const key = new Uint8Array(24);
    const kv = new DataView(key.buffer);
    u32le(kv, 0, copy);
    key[4] = v.family;
    key[5] = v.proto === 'icmp' ? ICMP_PROTO[v.family] : IP_PROTO[v.proto];
    kv.setUint16(6, v.port, false);
    const addr = parseIp(v.vip);
    if (!addr) throw new SluiceError('SLUICE_E_XDP', `xdp: not an IP address: ${v.vip} (lb ${v.lb})`);
    key.set(addr.bytes, 8);
    const value = new Uint8Array(12);
    const vv = new DataView(value.buffer);
    u32le(vv, 0, v.lbId);
    u32le(vv, 4, v.bits);
    u32le(vv, 8, v.counter);
    return { key, value };
  });
  const slots = tables.slots.map((s) => {
    const key = new Uint8Array(12);
    const kv = new DataView(key.buffer);
    u32le(kv, 0, copy);
    u32le(kv, 4, s.lbId);
    u32le(kv, 8, s.slot);
    const value = new Uint8Array(24);
    const vv = new DataView(value.buffer);
    value.set(ipv4Bytes(s.dst), 0);
    for (let i = 0; i < 3; i++) u32le(vv, 4 + 4 * i, s.options[i]);
    value.set(macBytes(s.dstMac, `neighbour of ${s.dst}`), 16);
    return { key, value };
  });
  return { config: { key: cfgKey, value: cfg }, vips, slots, ...icmpImage(tables, copy) };
}

/** icmp.bpf.c's entries of copy `copy`: the meter's rate and burst, and per VIP address its hosts. */
function icmpImage(tables: XdpTables, copy: 0 | 1): Pick<XdpMapImage, 'icmpConf' | 'icmpVips'> {
  const copyKey = new Uint8Array(4);
  u32le(new DataView(copyKey.buffer), 0, copy);
  const conf = new Uint8Array(8);
  u32le(new DataView(conf.buffer), 0, tables.icmpRate);
  u32le(new DataView(conf.buffer), 4, tables.icmpRate);
  const icmpVips = tables.icmp.map((v) => {
    const key = new Uint8Array(24);
    u32le(new DataView(key.buffer), 0, copy);
    key[4] = v.family;
    const addr = parseIp(v.vip);
    if (!addr) throw new SluiceError('SLUICE_E_XDP', `xdp: not an IP address: ${v.vip}`);
    key.set(addr.bytes, 8);
    const value = new Uint8Array(8 + 12 * XDP_LIMITS.icmpHosts);
    const vv = new DataView(value.buffer);
    u32le(vv, 0, v.lbId);
    u32le(vv, 4, v.hosts.length);
    v.hosts.forEach((h, i) => {
      value.set(ipv4Bytes(h.ip), 8 + 12 * i);
      value.set(macBytes(h.mac, `neighbour of ${h.ip}`), 12 + 12 * i);
    });
    return { key, value };
  });
  return { icmpConf: { key: copyKey, value: conf }, icmpVips };
}

function keyHex(k: Uint8Array): string {
  return [...k].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** `image` as one `map key=value` line (hex) per entry, sorted: what a read-back of the maps is compared with. */
export function xdpImageLines(image: XdpMapImage): string[] {
  const line = (map: XdpMapName, e: MapEntry) => `${map} ${keyHex(e.key)}=${keyHex(e.value)}`;
  return [
    line('sluice_config', image.config),
    ...image.vips.map((e) => line('sluice_vips', e)),
    ...image.slots.map((e) => line('sluice_slots', e)),
  ].sort();
}

/** The write that makes `copy` the copy in force. */
export function xdpFlip(copy: 0 | 1): MapWrite {
  return {
    kind: 'update',
    map: 'sluice_active',
    entry: { key: new Uint8Array(4), value: Uint8Array.of(copy, 0, 0, 0) },
  };
}

/**
 * The writes that install `next` (an image of copy c) in place of `held` (what copy c holds now; undefined: nothing
 * or not known, then the caller starts from empty maps): every entry of `next`, the deletion of the keys of `held`
 * that `next` lacks, and last the flip to c. Copy c is not in force while it is written; each packet reads the index
 * once, so it sees the old copy or the whole new one.
 */
export function xdpInstallWrites(held: XdpMapImage | undefined, next: XdpMapImage, copy: 0 | 1): MapWrite[] {
  const writes: MapWrite[] = [
    { kind: 'update', map: 'sluice_config', entry: next.config },
    { kind: 'update', map: 'sluice_icmpconf', entry: next.icmpConf },
  ];
  for (const [map, entries, old] of [
    ['sluice_vips', next.vips, held?.vips ?? []],
    ['sluice_slots', next.slots, held?.slots ?? []],
    ['sluice_icmpvips', next.icmpVips, held?.icmpVips ?? []],
  ] as const) {
    const keep = new Set(entries.map((e) => keyHex(e.key)));
    for (const entry of entries) writes.push({ kind: 'update', map, entry });
    for (const e of old) if (!keep.has(keyHex(e.key))) writes.push({ kind: 'delete', map, key: e.key });
  }
  writes.push(xdpFlip(copy));
  return writes;
}
