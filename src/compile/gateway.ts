// Gateway br-int: classify VIP:port/proto -> hash -> slot table -> Geneve to the primary's host. No conntrack.
// Unknown traffic (anything that is not a configured VIP:port/proto) is DROPPED by table CLASSIFY's catch-all.

import type { Flow, Group } from '../flowset/types.ts';
import { NO_OWNER } from '../hashing/slots.ts';
import type { Config, LoadBalancer } from '../model/types.ts';
import type { PoolPlan } from '../rollout/types.ts';
import { actions, dstField, ipv4ToInt, l4, lowBits, match, ofNum } from './common.ts';
import type { NodeFacts } from './facts.ts';
import {
  cookie,
  hashGroupId,
  PRIO,
  REG_LB,
  REG_SLOT,
  T,
  TUN_LB_SLOT,
  TUN_MEMBER_FLAGS,
  TUN_SECOND_HOST,
} from './registry.ts';

/** The `multipath` field set of the `fields` hash mode (must match `fieldsModeHash` in src/hashing/ovs.ts). */
export const FIELDS_HASH = 'symmetric_l3l4+udp';

export interface LbInput {
  readonly lb: LoadBalancer;
  readonly id: number;
  readonly plan: PoolPlan;
  /** false: UDP datagrams are committed where they first land, without the chain walk (the pipeline before UDP
   *  persistence; negative controls only, CompileOptions). Default true. */
  readonly udpWalk?: boolean;
}

/** Compiler switches for tests. */
export interface CompileOptions {
  /** false: compile UDP load balancers without the chain walk (negative controls of the UDP persistence tests). */
  readonly udpWalk?: boolean;
}

/**
 * CLASSIFY: one flow per VIP:port. dp_hash mode jumps to the LB's one-bucket dp_hash group (below); fields mode
 * hashes the 5-tuple with `multipath` (deterministic everywhere, one datapath flow per connection). Its field set
 * is `symmetric_l3l4+udp`: addresses, protocol and TCP *and UDP* ports, no MACs, so every gateway computes the
 * same slot (`symmetric_l4` also hashes the Ethernet addresses, which differ per gateway, and no UDP ports; see
 * docs/design/hash.md). `sluice explain` reproduces it (src/hashing/ovs.ts).
 *
 *   table=0 priority=100,tcp,nw_dst=203.0.113.10,tp_dst=80
 *           actions=set_field:0x2a7c->reg0,group:1359006844                                          (dp_hash)
 *   table=0 priority=100,tcp6,ipv6_dst=2001:db8::10,tp_dst=80
 *           actions=set_field:0x2a7c->reg0,multipath(symmetric_l3l4+udp,0,modulo_n,256,0,NXM_NX_REG1[0..7]),
 *                   resubmit(,10)                                                                    (fields)
 *   table=0 priority=1 actions=drop
 */
export function gatewayClassifyFlows(config: Config, lbs: readonly LbInput[]): Flow[] {
  return [...lbs.flatMap((x) => gatewayClassifyLbFlows(config, x)), dropFlow(T.CLASSIFY)];
}

/** CLASSIFY flows of one load balancer (one per port), without the catch-all. */
export function gatewayClassifyLbFlows(config: Config, { lb, id, plan }: LbInput): Flow[] {
  const jump =
    config.hashMode === 'dp_hash'
      ? `group:${hashGroupId(id)}`
      : actions(
          `multipath(${FIELDS_HASH},0,modulo_n,${2 ** plan.bits},0,${lowBits(REG_SLOT.nxm, plan.bits)})`,
          `resubmit(,${T.GW_SLOTS})`,
        );
  return lb.ports.map((port) => ({
    table: T.CLASSIFY,
    priority: PRIO.NORMAL,
    match: match(l4(lb.protocol, lb.family), `${dstField(lb.family)}=${lb.vip}`, `tp_dst=${port}`),
    actions: actions(`set_field:${ofNum(id)}->${REG_LB.match}`, jump),
    cookie: cookie('GW_CLASSIFY', id, 0, port),
  }));
}

/**
 * dp_hash mode: one group per LB. The group's dp_hash recirculation computes the datapath's 5-tuple hash; its only
 * bucket copies the low `bits` bits into REG_SLOT and continues in GW_SLOTS. Datapath flows then match only those
 * bits: at most 2^bits per LB, independent of the number of connections. Never re-created, only modified (when
 * `bits` changes).
 *
 *   group_id=1359006844,type=select,selection_method=dp_hash,
 *     bucket=bucket_id:0,actions=move:NXM_NX_DP_HASH[0..7]->NXM_NX_REG1[0..7],resubmit(,10)
 */
export function gatewayGroups(config: Config, lbs: readonly LbInput[]): Group[] {
  return lbs.flatMap((x) => gatewayLbGroups(config, x));
}

/** The dp_hash group of one load balancer ([] in fields mode). */
export function gatewayLbGroups(config: Config, { id, plan }: LbInput): Group[] {
  if (config.hashMode !== 'dp_hash') return [];
  return [
    {
      groupId: hashGroupId(id),
      spec:
        'type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=' +
        actions(
          `move:${lowBits('NXM_NX_DP_HASH', plan.bits)}->${lowBits(REG_SLOT.nxm, plan.bits)}`,
          `resubmit(,${T.GW_SLOTS})`,
        ),
    },
  ];
}

/**
 * GW_SLOTS: one flow per slot that has a primary. Sets all three Geneve options and the primary's host as tunnel
 * destination. A slot without a primary has no flow: its packets hit the catch-all drop.
 *
 *   table=10 priority=100,reg0=0x2a7c,reg1=0x5
 *            actions=set_field:0x2a7c0005->tun_metadata0,        lb id << 16 | slot
 *                    set_field:0x20000->tun_metadata1,           primary member index << 16 | flags (0)
 *                    set_field:0xc0a8640c->tun_metadata2,        second-chance host 192.168.100.12 (0 = none)
 *                    set_field:192.168.100.11->tun_dst,output:3  primary's host, Geneve port
 *   table=10 priority=1 actions=drop
 */
export function gatewaySlotFlows(config: Config, lbs: readonly LbInput[], facts: NodeFacts): Flow[] {
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  return [...lbs.flatMap((x) => gatewaySlotLbFlows(hostIp, x, facts)), dropFlow(T.GW_SLOTS)];
}

/**
 * One GW_SLOTS flow held as small numbers and shared strings: a gateway has one per slot of every load balancer
 * (2.56 M at 10,000 VIPs x 2^8 slots), and as plain text with a BigInt cookie each took ~290 bytes of heap
 * (docs/benchmarks.md). This form takes ~110 with its array slot (8 bytes a field: Node has no pointer
 * compression); `match`, `actions` and `cookie` render the same text (and value) when read: by the diff of a changed
 * load balancer and while a bundle streams to ovs-ofctl.
 */
class GatewaySlotFlow implements Flow {
  readonly table = T.GW_SLOTS;
  readonly priority = PRIO.NORMAL;
  readonly lbId: number;
  readonly slot: number;
  /** Primary member index. */
  readonly member: number;
  /** Second-chance host's tunnel IP as a number (0 = none). */
  readonly second: number;
  /** Primary's host tunnel IP (a string shared by every flow to that host). */
  readonly dst: string;
  readonly geneve: number;
  constructor(lbId: number, slot: number, member: number, second: number, dst: string, geneve: number) {
    this.lbId = lbId;
    this.slot = slot;
    this.member = member;
    this.second = second;
    this.dst = dst;
    this.geneve = geneve;
  }
  get match(): string {
    return match(`${REG_LB.match}=${ofNum(this.lbId)}`, `${REG_SLOT.match}=${ofNum(this.slot)}`);
  }
  get actions(): string {
    return actions(
      `set_field:${ofNum(((this.lbId << 16) | this.slot) >>> 0)}->${TUN_LB_SLOT.field}`,
      `set_field:${ofNum((this.member << 16) >>> 0)}->${TUN_MEMBER_FLAGS.field}`,
      `set_field:${ofNum(this.second)}->${TUN_SECOND_HOST.field}`,
      `set_field:${this.dst}->tun_dst`,
      `output:${this.geneve}`,
    );
  }
  get cookie(): bigint {
    return cookie('GW_SLOT', this.lbId, this.member, this.slot);
  }
}

/** What a gateway sends for one slot that has a primary (the OVS GW_SLOTS flow and the XDP slot map entry). */
export interface SlotEntry {
  readonly slot: number;
  /** Primary member index. */
  readonly primary: number;
  /** The three Geneve option values, in TLV order: TUN_LB_SLOT, TUN_MEMBER_FLAGS, TUN_SECOND_HOST. */
  readonly options: readonly [number, number, number];
  /** Tunnel IPv4 of the primary's host. */
  readonly dst: string;
}

/** The slots of one load balancer that have a primary on a known host. `hostIp`: node name -> tunnel IP. */
export function gatewaySlotEntries(hostIp: ReadonlyMap<string, string>, { id, plan }: LbInput): SlotEntry[] {
  const entries: SlotEntry[] = [];
  const size = 2 ** plan.bits;
  for (let slot = 0; slot < size; slot++) {
    const p = plan.primary[slot];
    if (p === NO_OWNER || p >= plan.members.length) continue;
    const primary = plan.members[p];
    const dst = hostIp.get(primary.host);
    if (dst === undefined) continue;
    const s = plan.second[slot];
    let second = 0;
    if (s !== NO_OWNER && s < plan.members.length) {
      const sHost = plan.members[s].host;
      const sIp = hostIp.get(sHost);
      if (sIp !== undefined && sHost !== primary.host) second = ipv4ToInt(sIp);
    }
    entries.push({ slot, primary: p, options: [((id << 16) | slot) >>> 0, (p << 16) >>> 0, second], dst });
  }
  return entries;
}

/** GW_SLOTS flows of one load balancer, without the catch-all. `hostIp`: node name -> tunnel IP. */
export function gatewaySlotLbFlows(
  hostIp: ReadonlyMap<string, string>,
  input: LbInput,
  facts: NodeFacts,
): Flow[] {
  return gatewaySlotEntries(hostIp, input).map(
    (e) => new GatewaySlotFlow(input.id, e.slot, e.primary, e.options[2], e.dst, facts.ports.geneve),
  );
}

/** `table=N priority=1 actions=drop` with a DROP cookie naming the table. */
export function dropFlow(table: number): Flow {
  return { table, priority: PRIO.DROP, match: '', actions: 'drop', cookie: cookie('DROP', 0, table, 0) };
}
