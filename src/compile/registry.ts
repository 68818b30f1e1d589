// The ONE registry of sluice's OpenFlow vocabulary: tables, registers, Geneve TLV options, conntrack zone,
// group ids and the cookie layout. Pure. Nothing else in the code base writes a bare table number, `reg0`,
// `tun_metadata1` or a cookie bit position: it imports the name from here, so a layout change is one edit.
//
// Usage map (who writes / who reads; see docs/design/ovs-pipeline.md for one section per table):
//
//   br-int, gateway                          br-int, host                              br-phy (both roles)
//   ---------------                          ------------                              -------------------
//   T.CLASSIFY (0)  VIP:port/proto ->        T.CLASSIFY (0)  tun_src known -> TUN_IN   T.PHY (0)  VIP -> br-int (gw)
//     writes REG_LB, hashes into REG_SLOT      vm port -> ct(nat) -> CT_OUT                 patch -> eth0 (host)
//     (dp_hash group or multipath)             unknown tunnel source: drop                  LOCAL -> eth0
//   T.GW_SLOTS (10) reads REG_LB, REG_SLOT   T.TUN_IN (20)   VIP:port, options present:     rest: NORMAL
//     writes TUN_LB_SLOT, TUN_MEMBER_FLAGS,    copies them to REG_T_*; ct(nat) -> CT_IN
//     TUN_SECOND_HOST, tun_dst; -> geneve0   T.CT_IN (21)    reads REG_T_*; writes ct_mark (= REG_T_LB_SLOT);
//                                              new non-SYN TCP, new UDP without FLAG_COMMIT -> CHAIN
//                                            T.CHAIN (22)    reads REG_T_LB_SLOT, the hop counter of REG_T_MEMBER;
//                                              writes the hop counter of TUN_MEMBER_FLAGS, tun_dst -> geneve0;
//                                              UDP at the walk's end: commit, or FLAG_COMMIT -> the primary's host
//                                            T.CT_OUT (30)   +est+rpl -> direct return to router
//
//   Registers, gateway (set before the dp_hash recirculation, so they stay low-entropy: one value per LB):
//     REG_LB   = reg0  load balancer id (16 bits)            written in CLASSIFY, read in GW_SLOTS
//     REG_SLOT = reg1  slot number (low `bits` bits)         written by the hash, read in GW_SLOTS
//   Registers, host (set in TUN_IN before the conntrack recirculation):
//     REG_T_LB_SLOT = reg2  copy of TUN_LB_SLOT              read in CT_IN (commit match, ct_mark)
//     REG_T_MEMBER  = reg3  copy of TUN_MEMBER_FLAGS         read in CT_IN (commit match), CHAIN (hop counter)
//     REG_T_SECOND  = reg4  copy of TUN_SECOND_HOST          not read (the chain lives in the hosts' CHAIN table)
//   Why copies: OVS 3.1 (userspace) freezes the flow's tunnel metadata with the recirculation id of ct(table=..),
//   and the first pass's datapath flow does not match the Geneve options unless an action reads them. Without the
//   copies every packet of a VIP:port from one tunnel source resumed in CT_IN with the options of the FIRST packet
//   that created the recirculation (measured: a packet whose flag was set got a second chance again). The moves
//   read every option bit, so first-pass datapath flows match the options exactly (one per slot, member, flag and
//   second-chance host seen: bounded by the slot count, not by connections) and the registers are always right.
//   TUN_IN moves only from options it proved present (docs/design/ovs-facts.md: a move from an absent option reads stale bytes):
//   TUN_LB_SLOT by its lb-id match, TUN_MEMBER_FLAGS by FLAG_RESERVED = 0, TUN_SECOND_HOST by one flow for each
//   value of its top bit.
//
//   Geneve options (class 0xffff, types >= 0x80 = critical, 4 bytes each; the gateway always sends all three):
//     tun_metadata0 TUN_LB_SLOT      = lb id << 16 | slot
//     tun_metadata1 TUN_MEMBER_FLAGS = primary member index << 16 | flags (bits 0..3 = hop counter: 0 from a
//                                      gateway, lane + 1 after a host handed the packet to that lane's owner;
//                                      bit 4 = FLAG_COMMIT, UDP only; bit 15 reserved, always 0)
//     tun_metadata2 TUN_SECOND_HOST  = second-chance host tunnel IPv4 as a 32-bit number (0 = none); still sent
//                                      by gateways, no longer read by hosts
//
//   Conntrack: one zone (CT_ZONE) for every LB on a host: a reply from a backend cannot know its LB before the
//   lookup. ct_mark of every committed connection = TUN_LB_SLOT (lb id << 16 | slot), so live connections can be
//   counted per slot (`ovs-appctl dpctl/dump-conntrack zone=CT_ZONE`, mark field).
//
//   Cookies (64 bits):  0x51 (8 bits, "sluice") | kind (8) | lb id (16) | a (16) | b (16)
//     a and b depend on the kind (see COOKIE_KINDS). A flow without the 0x51 tag is not sluice's and is never
//     touched.

import { computedLbIds } from '../hashing/lb-ids.ts';
import type { Config } from '../model/types.ts';
import type { Generation } from '../rollout/types.ts';

/** OpenFlow table numbers. */
export const T = {
  /** br-int, both roles: first table. Gateway: classify VIP:port/proto. Host: classify by in_port / tun_src. */
  CLASSIFY: 0,
  /** br-int, gateway: slot -> Geneve to the primary's host. */
  GW_SLOTS: 10,
  /** br-int, host: tunnelled packet for a VIP:port -> conntrack lookup (with NAT). */
  TUN_IN: 20,
  /** br-int, host: after the lookup: commit+DNAT a SYN, deliver established, new non-SYN TCP -> CHAIN, or drop. */
  CT_IN: 21,
  /** br-int, host: a packet this host has no connection for -> the owner of the slot's next lane (hop counter). */
  CHAIN: 22,
  /** br-int, host (sluice-follow-moves): a connection a moved backend's old host hands over -> that host. */
  MOVED_FWD: 23,
  /** br-int, host: packet from a backend after the lookup: reverse NAT and direct return. */
  CT_OUT: 30,
  /** br-int, host (sluice-follow-moves): a backend's reply without a connection here -> its connection's old host. */
  MOVED_BACK: 31,
  /** br-phy, both roles: the underlay bridge's only table. */
  PHY: 0,
} as const;

export const TABLE_NAMES: Readonly<Record<number, string>> = {
  [T.CLASSIFY]: 'CLASSIFY',
  [T.GW_SLOTS]: 'GW_SLOTS',
  [T.TUN_IN]: 'TUN_IN',
  [T.CT_IN]: 'CT_IN',
  [T.CHAIN]: 'CHAIN',
  [T.MOVED_FWD]: 'MOVED_FWD',
  [T.CT_OUT]: 'CT_OUT',
  [T.MOVED_BACK]: 'MOVED_BACK',
};

/** Registers, in the names `ovs-ofctl` prints in matches/set_field (`reg0`) and in move/multipath (`NXM_NX_REG0`). */
export const REG_LB = { match: 'reg0', nxm: 'NXM_NX_REG0' } as const;
export const REG_SLOT = { match: 'reg1', nxm: 'NXM_NX_REG1' } as const;
export const REG_T_LB_SLOT = { match: 'reg2', nxm: 'NXM_NX_REG2' } as const;
export const REG_T_MEMBER = { match: 'reg3', nxm: 'NXM_NX_REG3' } as const;
export const REG_T_SECOND = { match: 'reg4', nxm: 'NXM_NX_REG4' } as const;

/** One Geneve option <-> tun_metadataN mapping. */
export interface TlvOption {
  readonly optClass: number;
  readonly type: number;
  readonly len: number;
  /** N in tun_metadataN. */
  readonly index: number;
}

export const TUN_LB_SLOT = {
  optClass: 0xffff,
  type: 0x80,
  len: 4,
  index: 0,
  field: 'tun_metadata0',
} as const;
export const TUN_MEMBER_FLAGS = {
  optClass: 0xffff,
  type: 0x81,
  len: 4,
  index: 1,
  field: 'tun_metadata1',
} as const;
export const TUN_SECOND_HOST = {
  optClass: 0xffff,
  type: 0x82,
  len: 4,
  index: 2,
  field: 'tun_metadata2',
} as const;
/** The TLV map every node's br-int needs before traffic. */
export const TLV_OPTIONS: readonly TlvOption[] = [TUN_LB_SLOT, TUN_MEMBER_FLAGS, TUN_SECOND_HOST];
/** NXM names of the options' 32 bits (tun_metadata fields are 992 bits wide; a 4-byte option is the low 32). */
export const TUN_NXM_BITS = [
  'NXM_NX_TUN_METADATA0[0..31]',
  'NXM_NX_TUN_METADATA1[0..31]',
  'NXM_NX_TUN_METADATA2[0..31]',
] as const;
/** Always 0 when sent; TUN_IN matches it to prove TUN_MEMBER_FLAGS is present. */
export const FLAG_RESERVED = 0x8000;
/** The hop counter in the low bits of TUN_MEMBER_FLAGS: 0 = sent by a gateway; lane + 1 = handed to that lane's
 *  owner by a host. Only grows along a packet's way (docs/design/rollout.md, "Where the chain lives"). */
export const HOP_MASK = 0xf;
/** UDP: "commit here". A host whose chain walk found no conntrack entry for a new UDP datagram sends it back to the
 *  host of the gateway's primary member with this bit set; that host commits it (docs/design/rollout.md, "UDP"). */
export const FLAG_COMMIT = 0x10;

/** Geneve VNIs (tun_id) of the moved-backend hand-over between hosts (compile/moved.ts, `sluice-follow-moves`).
 *  Gateways and chain hops send VNI 0; these mark a packet as already translated by the host that sent it. */
export const TUN_ID_MOVED = 0x5101;
/** A moved backend's reply, sent back to the host whose conntrack holds its connection. */
export const TUN_ID_RETURN = 0x5102;
/** Cookie of the flows OpenFlow `learn` adds for moved connections: not sluice's tag (0x51), so the applier never
 *  deletes them; they leave by their idle timeout. */
export const LEARNED_COOKIE = 0x5200000000000000n;
/** Seconds a learned moved-connection flow lives without a packet. */
export const MOVED_IDLE_TIMEOUT = 3600;

/** The conntrack zone every host uses for all its load-balanced connections, unless its facts name another
 *  (`NodeFacts.ctZone`: beside ovn-controller, whose zones start at 1; docs/ovn.md). */
export const CT_ZONE = 1;

/** The zone of one host's load-balanced connections. */
export function ctZoneOf(facts: { readonly ctZone?: number }): number {
  return facts.ctZone ?? CT_ZONE;
}

/** Priorities (bigger first). */
export const PRIO = {
  HIGH: 200,
  /** TUN_IN: the per-VIP counting twin of a NORMAL flow for second-chanced packets. */
  SECOND_CHANCED_IN: 110,
  /** CT_IN: an established connection of a backend that moved to another host (above CT_DELIVER). */
  MOVED: 105,
  NORMAL: 100,
  /** CT_IN: a new non-SYN TCP packet looks for a handed-over connection before the chain. */
  MOVED_LOOKUP: 95,
  SECOND_CHANCE: 90,
  LOW: 50,
  /** CHAIN, UDP: the end of a walk (below every slot's hops). */
  WALK_END: 40,
  /** Catch-alls (br-int drops, br-phy NORMAL) sit at 1, not 0: a bridge in standalone fail mode has its own
   *  `priority=0 actions=NORMAL` flow with cookie 0, which is not sluice's to replace; ours shadows it. */
  PHY_DEFAULT: 1,
  DROP: 1,
} as const;

/** Group ids sluice owns: GROUP_BASE | lb id. Groups outside [GROUP_BASE, GROUP_BASE + 0xffff] are not ours. */
export const GROUP_BASE = 0x51000000;
export function hashGroupId(lbId: number): number {
  return GROUP_BASE + lbId;
}
export function isSluiceGroup(groupId: number): boolean {
  return groupId >= GROUP_BASE && groupId <= GROUP_BASE + 0xffff;
}

/** Meter ids sluice owns: METER_BASE + n, n < 0x10000 (ids this high are accepted by the userspace datapath, whose
 *  meter-features say max_meter 262144: docs/design/ovs-facts.md "Meters"). Meters outside the range are not ours. */
export const METER_BASE = 0x51000000;
/** Hosts: the meter every TCP SYN passes before it is committed to conntrack (the agent's --syn-rate). */
export const SYN_METER_ID = METER_BASE + 1;
/** Gateways: the meter every ICMP error to a VIP passes before it is copied to the hosts (the agent's --icmp-rate). */
export const ICMP_METER_ID = METER_BASE + 2;
export function isSluiceMeter(meterId: number): boolean {
  return meterId >= METER_BASE && meterId <= METER_BASE + 0xffff;
}

// ---- cookies -------------------------------------------------------------------------------------------------

export const COOKIE_TAG = 0x51n;
/** `ovs-ofctl` cookie filter selecting exactly sluice's flows. */
export const COOKIE_FILTER = 'cookie=0x5100000000000000/0xff00000000000000';

/** Cookie kinds. The comment says what lb, a and b hold. */
export const COOKIE_KINDS = {
  /** Catch-all drop of a table. a = table. */
  DROP: 0x01,
  /** gw CLASSIFY: VIP:port -> hash. lb, b = port. */
  GW_CLASSIFY: 0x02,
  /** gw GW_SLOTS: one slot. lb, a = primary member index, b = slot. */
  GW_SLOT: 0x03,
  /** host CLASSIFY: accept Geneve from a known node. b = low 16 bits of its tunnel IPv4. */
  TUN_ACCEPT: 0x04,
  /** host CLASSIFY: drop Geneve from an unknown source. */
  TUN_REJECT: 0x05,
  /** host TUN_IN: VIP:port -> ct lookup. lb, b = port. */
  TUN_VIP: 0x06,
  /** host CT_IN: commit + DNAT a new connection to a local member. lb, a = member index. */
  CT_COMMIT: 0x07,
  /** host CT_IN: deliver an established connection to a local backend address. a = vm ofport. */
  CT_DELIVER: 0x08,
  /** host CT_IN: a new non-SYN TCP packet (no connection here) -> CHAIN. b = IP family (4 or 6). */
  SECOND_CHANCE: 0x09,
  /** host CLASSIFY: packet from a backend -> ct lookup. a = vm ofport. */
  FROM_VM: 0x0a,
  /** host CT_OUT: reply -> direct return. */
  DIRECT_RETURN: 0x0b,
  /** br-phy (gateway): VIP, in a frame addressed to this gateway's MAC -> br-int. lb. */
  PHY_VIP: 0x0c,
  /** br-phy: everything else NORMAL. */
  PHY_NORMAL: 0x0d,
  /** br-phy (host): from br-int -> eth0. */
  PHY_RETURN: 0x0e,
  /** br-phy: from the LOCAL port (tunnel endpoint: Geneve out, ARP) -> eth0. */
  PHY_LOCAL_OUT: 0x0f,
  /** host TUN_IN: VIP:port, a packet another host handed on by second chance (counted per VIP). lb, b = port. */
  TUN_VIP_SECOND: 0x10,
  /** host CHAIN: hand a packet of one slot, at one hop counter, to the next lane's owner. lb, a = slot, b = counter. */
  CHAIN_HOP: 0x11,
  /** host CHAIN, UDP: the walk found no conntrack entry: commit at the local primary member. lb, a = member index. */
  UDP_WALK_COMMIT: 0x12,
  /** host CHAIN, UDP: the walk found no conntrack entry: back to the primary's host with FLAG_COMMIT. lb, a = member. */
  UDP_WALK_RETURN: 0x13,
  /** host CT_IN: a new UDP datagram without FLAG_COMMIT (no flow here; new or not, it walks) -> CHAIN. b = family. */
  UDP_WALK: 0x14,
  /** br-phy (gateway): a VIP-bound frame addressed to another MAC (flooded by a switch) -> drop. lb. */
  PHY_VIP_NOT_MINE: 0x15,
  /** gw CLASSIFY: an ICMP error to a VIP -> a copy to every host of its members. lb, a = ICMP type. */
  GW_ICMP: 0x20,
  /** host TUN_IN: an ICMP error from a gateway -> ct lookup. lb. */
  ICMP_IN: 0x21,
  /** host CT_IN: an ICMP error related to a local connection -> its backend. a = vm ofport. */
  ICMP_DELIVER: 0x22,
  /** host CT_OUT: an ICMP error from a backend, related to a connection -> direct return. b = IP family. */
  ICMP_RETURN: 0x23,
  /** gw CLASSIFY: an echo request to a VIP, answered by the gateway. lb, a = request type. */
  GW_ICMP_ECHO: 0x24,
  /** host CT_IN: an established connection of a backend configured on another host -> that host. lb, a = member. */
  MOVED_OUT: 0x25,
  /** host TUN_IN: a moved connection's packet from its old host -> learn its way back, deliver. a = vm ofport,
   *  b = family << 8 | IP protocol. */
  MOVED_IN: 0x26,
  /** host TUN_IN: a moved backend's reply from its new host -> ct lookup (un-NAT) -> CT_OUT. b = family. */
  MOVED_RETURN: 0x27,
  /** host CT_IN -> MOVED_FWD, and MOVED_FWD's miss -> CHAIN. a = table, b = family. */
  MOVED_LOOKUP: 0x28,
  /** host CT_OUT: a backend's packet without a connection here -> MOVED_BACK. b = family. */
  MOVED_BACK_LOOKUP: 0x29,
  /** host MOVED_FWD: a moved member's packet with no state here -> its old host (PlanMember.movedFrom). lb,
   *  a = member. */
  MOVED_FROM: 0x2a,
} as const;
export type CookieKind = keyof typeof COOKIE_KINDS;

export interface CookieParts {
  readonly kind: CookieKind;
  readonly lb: number;
  readonly a: number;
  readonly b: number;
}

export function cookie(kind: CookieKind, lb = 0, a = 0, b = 0): bigint {
  return (
    (COOKIE_TAG << 56n) |
    (BigInt(COOKIE_KINDS[kind]) << 48n) |
    (BigInt(lb & 0xffff) << 32n) |
    (BigInt(a & 0xffff) << 16n) |
    BigInt(b & 0xffff)
  );
}

export function isSluiceCookie(c: bigint): boolean {
  return c >> 56n === COOKIE_TAG;
}

/** The load balancer id field of a cookie (0 for a node-wide flow). */
export function cookieLb(c: bigint): number {
  return Number((c >> 32n) & 0xffffn);
}

/** The `cookie=value/mask` argument of `ovs-ofctl dump-flows` that selects sluice's flows of load balancer id `lb`
 *  (every kind). */
export function cookieLbMatch(lb: number): string {
  const value = (COOKIE_TAG << 56n) | (BigInt(lb & 0xffff) << 32n);
  return `cookie=0x${value.toString(16)}/0xff00ffff00000000`;
}

/** Decodes a sluice cookie; undefined if it is not one (or has an unknown kind). */
export function decodeCookie(c: bigint): CookieParts | undefined {
  if (!isSluiceCookie(c)) return undefined;
  const code = Number((c >> 48n) & 0xffn);
  const kind = (Object.keys(COOKIE_KINDS) as CookieKind[]).find((k) => COOKIE_KINDS[k] === code);
  if (kind === undefined) return undefined;
  return {
    kind,
    lb: Number((c >> 32n) & 0xffffn),
    a: Number((c >> 16n) & 0xffffn),
    b: Number(c & 0xffffn),
  };
}

// ---- load balancer ids ---------------------------------------------------------------------------------------

/** The ids plans before schema 2.1.0 implied (computed from the set of names; hashing/lb-ids.ts). */
export { computedLbIds as lbIds } from '../hashing/lb-ids.ts';

/**
 * The id of every load balancer of `config` that `gen` plans: the ids its pools carry (assigned once by the planner
 * and never shifted by another load balancer: rollout/lb-ids.ts), or, for a generation without any (a plan of
 * before schema 2.1.0, a hand-built one), the ids computed from the config's names as those plans' agents did.
 * Throws when some planned pools carry an id and others do not, or two carry the same id (a broken plan).
 */
export function lbIdsOf(
  config: Pick<Config, 'loadBalancers'>,
  gen: Pick<Generation, 'number' | 'pools'>,
): Map<string, number> {
  const names = config.loadBalancers.map((l) => l.name);
  const planned = names.filter((n) => gen.pools.has(n));
  if (planned.every((n) => gen.pools.get(n)!.id === undefined)) return computedLbIds(names);
  const ids = new Map<string, number>();
  const owner = new Map<number, string>();
  for (const name of planned) {
    const id = gen.pools.get(name)!.id;
    if (id === undefined)
      throw new Error(`generation ${gen.number}: load balancer ${name} has no id, others do`);
    const other = owner.get(id);
    if (other !== undefined)
      throw new Error(`generation ${gen.number}: load balancers ${other} and ${name} both have id ${id}`);
    owner.set(id, name);
    ids.set(name, id);
  }
  return ids;
}
