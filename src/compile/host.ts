// Host br-int: accept Geneve only from known nodes, deferred DNAT in conntrack, the chain walk, direct return.

import type { Flow, Meter } from '../flowset/types.ts';
import { NO_OWNER } from '../hashing/slots.ts';
import { SluiceError } from '../model/errors.ts';
import { backendKey, type Config, type IpFamily } from '../model/types.ts';
import { LANES, planLanes } from '../rollout/types.ts';
import { actions, dstField, familyOf, ipv4ToInt, l3, l4, match, natTarget, ofNum } from './common.ts';
import type { NodeFacts, VmPort } from './facts.ts';
import { dropFlow, type LbInput } from './gateway.ts';
import { icmpMatch } from './icmp.ts';
import {
  cookie,
  ctZoneOf,
  FLAG_COMMIT,
  FLAG_RESERVED,
  HOP_MASK,
  PRIO,
  REG_T_LB_SLOT,
  REG_T_MEMBER,
  REG_T_SECOND,
  SYN_METER_ID,
  T,
  TUN_LB_SLOT,
  TUN_MEMBER_FLAGS,
  TUN_NXM_BITS,
  TUN_SECOND_HOST,
} from './registry.ts';

/**
 * CLASSIFY (host): Geneve is accepted only from the tunnel IP of another configured node (gateway or host);
 * Geneve from any other source is dropped by an explicit, counted flow. Packets from a backend go through the
 * conntrack lookup (reverse NAT). Everything else is dropped.
 *
 *   table=0 priority=100,tun_src=192.168.100.1,in_port=3 actions=resubmit(,20)
 *   table=0 priority=100,ip,in_port=5 actions=ct(table=30,zone=1,nat)
 *   table=0 priority=100,ipv6,in_port=5 actions=ct(table=30,zone=1,nat)
 *   table=0 priority=50,in_port=3 actions=drop
 *   table=0 priority=1 actions=drop
 */
export function hostClassifyFlows(config: Config, facts: NodeFacts): Flow[] {
  const flows: Flow[] = [];
  const g = facts.ports.geneve;
  for (const n of config.nodes) {
    if (n.name === facts.name) continue;
    flows.push({
      table: T.CLASSIFY,
      priority: PRIO.NORMAL,
      match: match(`tun_src=${n.tunnelIp}`, `in_port=${g}`),
      actions: `resubmit(,${T.TUN_IN})`,
      cookie: cookie('TUN_ACCEPT', 0, 0, ipv4ToInt(n.tunnelIp) & 0xffff),
    });
  }
  flows.push({
    table: T.CLASSIFY,
    priority: PRIO.LOW,
    match: `in_port=${g}`,
    actions: 'drop',
    cookie: cookie('TUN_REJECT'),
  });
  for (const ofport of vmPorts(facts)) {
    for (const fam of [4, 6] as const) {
      flows.push({
        table: T.CLASSIFY,
        priority: PRIO.NORMAL,
        match: match(l3(fam), `in_port=${ofport}`),
        actions: `ct(table=${T.CT_OUT},zone=${ctZoneOf(facts)},nat)`,
        cookie: cookie('FROM_VM', 0, ofport),
      });
    }
  }
  flows.push(dropFlow(T.CLASSIFY));
  return flows;
}

/**
 * TUN_IN: a tunnelled packet for a VIP:port (still addressed to the VIP: deferred DNAT) whose three sluice options
 * are present gets them copied into registers (see registry.ts "Why copies") and is looked up in the host's
 * conntrack zone with NAT, so an established connection comes back already translated to its backend. Presence:
 * TUN_LB_SLOT by the lb id, TUN_MEMBER_FLAGS by its reserved bit (0), TUN_SECOND_HOST by two flows, one for each
 * value of its top bit. Every configured LB gets these flows on every host (a host may be asked for a second chance
 * for any LB).
 *
 *   table=20 priority=100,tcp,tun_metadata0=0xb3490000/0xffff0000,tun_metadata1=0/0x8000,
 *            tun_metadata2=0/0x80000000,nw_dst=203.0.113.10,tp_dst=80             (and =0x80000000/0x80000000)
 *            actions=move:NXM_NX_TUN_METADATA0[0..31]->NXM_NX_REG2[],move:NXM_NX_TUN_METADATA1[0..31]->NXM_NX_REG3[],
 *                    move:NXM_NX_TUN_METADATA2[0..31]->NXM_NX_REG4[],ct(table=21,zone=1,nat)
 *   The same with a hop counter that is not 0 (tun_metadata1=0x1/0x8001, 0x2/0x8003, 0x4/0x8007, 0x8/0x800f) at
 *   priority 110 (cookie TUN_VIP_SECOND): a packet another host handed on along a chain, counted per VIP.
 *   table=20 priority=1 actions=drop
 */
export function hostTunInFlows(lbs: readonly LbInput[], zone: number): Flow[] {
  return [...lbs.flatMap((x) => hostTunInLbFlows(x, zone)), dropFlow(T.TUN_IN)];
}

/** TUN_IN flows of one load balancer (two per port), without the catch-all. */
export function hostTunInLbFlows({ lb, id }: LbInput, zone: number): Flow[] {
  const flows: Flow[] = [];
  const copy = actions(
    `move:${TUN_NXM_BITS[0]}->${REG_T_LB_SLOT.nxm}[]`,
    `move:${TUN_NXM_BITS[1]}->${REG_T_MEMBER.nxm}[]`,
    `move:${TUN_NXM_BITS[2]}->${REG_T_SECOND.nxm}[]`,
    `ct(table=${T.CT_IN},zone=${zone},nat)`,
  );
  for (const port of lb.ports) {
    for (const top of [0, 0x80000000]) {
      // The VIP's packets on this port and this top bit of the second host, member flags matching `flags`.
      const vipMatch = (flags: string) =>
        match(
          l4(lb.protocol, lb.family),
          `${TUN_LB_SLOT.field}=${ofNum((id << 16) >>> 0)}/0xffff0000`,
          `${TUN_MEMBER_FLAGS.field}=${flags}`,
          `${TUN_SECOND_HOST.field}=${ofNum(top)}/0x80000000`,
          `${dstField(lb.family)}=${lb.vip}`,
          `tp_dst=${port}`,
        );
      flows.push({
        table: T.TUN_IN,
        priority: PRIO.NORMAL,
        match: vipMatch(`0/${ofNum(FLAG_RESERVED)}`),
        actions: copy,
        cookie: cookie('TUN_VIP', id, 0, port),
      });
      // The same packet when another host handed it on along a chain (hop counter not 0: one flow per lowest set
      // bit): same actions, its own cookie, so the agent counts chain packets per VIP (TCP: the packets that would
      // have broken a connection; UDP: also the first datagrams of new flows in moving slots).
      for (const [value, mask] of HOP_NOT_ZERO)
        flows.push({
          table: T.TUN_IN,
          priority: PRIO.SECOND_CHANCED_IN,
          match: vipMatch(`${ofNum(value)}/${ofNum(FLAG_RESERVED | mask)}`),
          actions: copy,
          cookie: cookie('TUN_VIP_SECOND', id, 0, port),
        });
    }
  }
  return flows;
}

/** Hop counters that are not 0, as (value, mask) pairs on HOP_MASK's 4 bits: one per lowest set bit. */
const HOP_NOT_ZERO: readonly (readonly [number, number])[] = [
  [0x1, 0x1],
  [0x2, 0x3],
  [0x4, 0x7],
  [0x8, 0xf],
];

/**
 * CT_IN, after the conntrack lookup of a tunnelled packet:
 *
 * - established (already DNATed by the lookup) -> deliver to the backend that owns the address. One flow per local
 *   backend address (from the node facts, so connections of a backend that left the plan keep working):
 *     table=21 priority=100,ct_state=-new+est+trk,ip,nw_dst=10.0.1.11
 *              actions=set_field:02:00:00:00:01:01->eth_src,set_field:02:00:00:01:0b:00->eth_dst,output:5
 *
 * - new TCP SYN (SYN without ACK) whose primary member (REG_T_MEMBER high 16 bits) is a local backend of that LB
 *   (REG_T_LB_SLOT high 16 bits) -> commit with DNAT, mark the connection with lb id << 16 | slot (ct_mark, from
 *   REG_T_LB_SLOT), deliver. UDP: any new packet (no SYN in UDP).
 *     table=21 priority=100,ct_state=+new+trk,tcp,reg2=0xb3490000/0xffff0000,reg3=0x10000/0xffff0000,
 *              tcp_flags=+syn-ack
 *              actions=ct(commit,zone=1,nat(dst=10.0.1.11:8080),exec(move:NXM_NX_REG2[]->NXM_NX_CT_MARK[])),
 *                      set_field:..->eth_src,set_field:..->eth_dst,output:5
 *
 * - the chain (TCP only): a new non-SYN packet (no state here) -> CHAIN (hostChainLbFlows), which hands it to the
 *   slot's next owner on another host or drops it. One flow per family with TCP LBs:
 *     table=21 priority=90,ct_state=+new+trk,tcp,tcp_flags=-syn actions=resubmit(,22)
 *   UDP has NO chain: when a UDP slot moves, the next datagram of an existing UDP flow creates a new conntrack
 *   entry on the new owner (a new "session" with the new backend).
 *
 * - anything else (a SYN for a member that is not local, +inv) -> dropped:
 *     table=21 priority=1 actions=drop
 */
export function hostCtInFlows(lbs: readonly LbInput[], facts: NodeFacts): Flow[] {
  return [
    ...hostDeliverFlows(facts),
    ...lbs.flatMap((x) => hostCommitLbFlows(x, facts)),
    ...hostChainJumpFlows(lbs),
    dropFlow(T.CT_IN),
  ];
}

/** The node's backend addresses (facts), sorted, with their port and family. */
export function localBackends(facts: NodeFacts): { address: string; vm: VmPort; fam: IpFamily }[] {
  return Object.entries(facts.vms)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([address, vm]) => ({ address, vm, fam: familyOf(address) }));
}

/** The actions that hand a packet to a local backend: the backends' router MAC as source, its MAC, its port. */
export function deliverActions(facts: NodeFacts, vm: VmPort): string {
  return actions(
    `set_field:${facts.vmRouterMac}->eth_src`,
    `set_field:${vm.mac}->eth_dst`,
    `output:${vm.ofport}`,
  );
}

/** CT_IN: deliver established, one flow per local backend address (from the node facts). */
export function hostDeliverFlows(facts: NodeFacts): Flow[] {
  const flows: Flow[] = [];
  for (const { address, vm, fam } of localBackends(facts)) {
    const deliver = deliverActions(facts, vm);
    const to = `${dstField(fam)}=${address}`;
    flows.push(
      {
        table: T.CT_IN,
        priority: PRIO.NORMAL,
        match: match('ct_state=-new+est+trk', l3(fam), to),
        actions: deliver,
        cookie: cookie('CT_DELIVER', 0, vm.ofport),
      },
      // An ICMP error related to a connection here, rewritten to the backend by conntrack (compile/icmp.ts).
      {
        table: T.CT_IN,
        priority: PRIO.NORMAL,
        match: match('ct_state=+rel+trk', icmpMatch(fam), to),
        actions: deliver,
        cookie: cookie('ICMP_DELIVER', 0, vm.ofport),
      },
    );
  }
  return flows;
}

/**
 * Hosts with a SYN rate (facts.synRate, the agent's --syn-rate): one meter that every TCP commit flow passes first
 * (`actions=meter:1358954497,ct(commit,...)`, OpenFlow wants the meter before the other actions), so a SYN flood
 * adds at most `synRate` conntrack entries per second after a one-second burst; SYNs over the rate are dropped
 * before conntrack and counted in the meter's band. Established packets never pass a meter.
 *   meter=1358954497 pktps burst bands=type=drop rate=2000 burst_size=2000
 */
export function hostMeters(facts: NodeFacts): Meter[] {
  const rate = facts.synRate ?? 0;
  if (facts.role !== 'host' || rate <= 0) return [];
  return [{ meterId: SYN_METER_ID, spec: `pktps burst bands=type=drop rate=${rate} burst_size=${rate}` }];
}

/** CT_IN: commit + DNAT, one flow per local member of one load balancer (UDP: only a datagram marked FLAG_COMMIT,
 *  whose chain walk ended; an unmarked one walks first, hostChainJumpFlows). */
export function hostCommitLbFlows(x: LbInput, facts: NodeFacts): Flow[] {
  const { lb, id, plan } = x;
  const flows: Flow[] = [];
  const walks = udpWalks(x);
  // SYNs pass the SYN meter when the host has one (hostMeters); UDP commits do not.
  const meter = lb.protocol === 'tcp' && hostMeters(facts).length > 0 && `meter:${SYN_METER_ID}`;
  plan.members.forEach((m, index) => {
    const deliver = localMemberActions(lb, m, facts, meter);
    if (deliver === undefined) return;
    const member = (index << 16) >>> 0;
    flows.push({
      table: T.CT_IN,
      priority: PRIO.NORMAL,
      match: match(
        'ct_state=+new+trk',
        l4(lb.protocol, lb.family),
        `${REG_T_LB_SLOT.match}=${ofNum((id << 16) >>> 0)}/0xffff0000`,
        walks
          ? `${REG_T_MEMBER.match}=${ofNum((member | FLAG_COMMIT) >>> 0)}/${ofNum((0xffff0000 | FLAG_COMMIT) >>> 0)}`
          : `${REG_T_MEMBER.match}=${ofNum(member)}/0xffff0000`,
        lb.protocol === 'tcp' && 'tcp_flags=+syn-ack',
      ),
      actions: deliver,
      cookie: cookie('CT_COMMIT', id, index),
    });
  });
  return flows;
}

/** Whether a load balancer's datagrams walk the chain before they are committed (UDP, unless switched off). */
function udpWalks(x: LbInput): boolean {
  return x.lb.protocol === 'udp' && x.udpWalk !== false;
}

/**
 * The actions that commit a new connection to plan member `m` with DNAT, mark it with lb id << 16 | slot (ct_mark,
 * from REG_T_LB_SLOT) and deliver it; undefined when `m` is not a backend of this host.
 */
function localMemberActions(
  lb: LbInput['lb'],
  m: LbInput['plan']['members'][number],
  facts: NodeFacts,
  meter: string | false = false,
): string | undefined {
  if (m.host !== facts.name) return undefined;
  const vm = facts.vms[m.address];
  if (vm === undefined) {
    // A member that left the config keeps its plan position until reused (rollout/planner.ts); its VM may
    // be gone: no new connection can be committed to it any more. A configured backend without a port is an error.
    if (!lb.backends.some((b) => backendKey(b) === m.key)) return undefined;
    throw new SluiceError(
      'SLUICE_E_COMPILE_FACTS',
      `node ${facts.name}: no port for local backend ${m.address} of load balancer ${lb.name}`,
    );
  }
  return actions(
    meter,
    `ct(commit,zone=${ctZoneOf(facts)},nat(dst=${natTarget(m.address, m.port)}),exec(move:${REG_T_LB_SLOT.nxm}[]->NXM_NX_CT_MARK[]))`,
    `set_field:${facts.vmRouterMac}->eth_src`,
    `set_field:${vm.mac}->eth_dst`,
    `output:${vm.ofport}`,
  );
}

/**
 * CT_IN -> CHAIN, per protocol and family with such LBs: a new non-SYN TCP packet (this host has no connection for
 * it), and a new UDP datagram not marked FLAG_COMMIT (a UDP datagram cannot say whether its flow is new: it walks
 * the chain first, and is committed where the walk ends; docs/design/rollout.md, "UDP").
 */
export function hostChainJumpFlows(lbs: readonly LbInput[]): Flow[] {
  const flows: Flow[] = [];
  for (const protocol of ['tcp', 'udp'] as const) {
    const walking = lbs.filter((x) => (protocol === 'tcp' ? x.lb.protocol === 'tcp' : udpWalks(x)));
    const families = new Set<IpFamily>(walking.map((x) => x.lb.family));
    for (const fam of [4, 6] as const) {
      if (!families.has(fam)) continue;
      flows.push({
        table: T.CT_IN,
        priority: PRIO.SECOND_CHANCE,
        match: match(
          'ct_state=+new+trk',
          l4(protocol, fam),
          protocol === 'tcp' ? 'tcp_flags=-syn' : `${REG_T_MEMBER.match}=0/${ofNum(FLAG_COMMIT)}`,
        ),
        actions: `resubmit(,${T.CHAIN})`,
        cookie: cookie(protocol === 'tcp' ? 'SECOND_CHANCE' : 'UDP_WALK', 0, 0, fam),
      });
    }
  }
  return flows;
}

/**
 * CHAIN, per slot that has a chain (TCP and UDP): for each hop counter c a packet of the slot may carry, the owner of
 * the first lane >= c that lives on another host gets it, with the counter set to that lane + 1. The counter only
 * grows, so a packet visits each lane at most once (docs/design/rollout.md, "Where the chain lives"). The slot is
 * matched on the plan's low `bits` bits only, so a gateway one slot-bit growth ahead still finds it (slot s and
 * s + 2^bits have the same owners right after a growth). Stable slots have no flow: their TCP packets are dropped,
 * and UDP datagrams reach the end of the walk at once (hostUdpWalkEndFlows: committed at the primary, no hop).
 *
 *   table=22 priority=100,reg2=0xb3490005/0xffff000f,reg3=0/0xf
 *            actions=set_field:0x2/0xf->tun_metadata1,set_field:192.168.100.12->tun_dst,set_field:0->in_port,
 *                    output:3
 */
export function hostChainLbFlows(hostIp: ReadonlyMap<string, string>, x: LbInput, facts: NodeFacts): Flow[] {
  const { lb, id, plan } = x;
  if (lb.protocol === 'udp' && !udpWalks(x)) return [];
  const flows: Flow[] = lb.protocol === 'udp' ? hostUdpWalkEndFlows(hostIp, x, facts) : [];
  const lanes = planLanes(plan);
  const size = plan.primary.length;
  const slotMask = (0xffff0000 | (size - 1)) >>> 0;
  for (let slot = 0; slot < size; slot++) {
    if (plan.second[slot] === NO_OWNER) continue;
    // The owner of each lane that lives on another (configured) host.
    const target: (string | undefined)[] = [];
    for (let l = 0; l < LANES; l++) {
      const m = lanes[slot * LANES + l];
      const host = m === NO_OWNER || m >= plan.members.length ? undefined : plan.members[m].host;
      target.push(host === undefined || host === facts.name ? undefined : hostIp.get(host));
    }
    for (let c = 0; c < LANES; c++) {
      let l = c;
      while (l < LANES && target[l] === undefined) l++;
      if (l === LANES) break; // no lane left from here on
      flows.push({
        table: T.CHAIN,
        priority: PRIO.NORMAL,
        match: match(
          `${REG_T_LB_SLOT.match}=${ofNum(((id << 16) | slot) >>> 0)}/${ofNum(slotMask)}`,
          `${REG_T_MEMBER.match}=${ofNum(c)}/${ofNum(HOP_MASK)}`,
        ),
        actions: actions(
          `set_field:${ofNum(l + 1)}/${ofNum(HOP_MASK)}->${TUN_MEMBER_FLAGS.field}`,
          `set_field:${target[l]}->tun_dst`,
          'set_field:0->in_port',
          `output:${facts.ports.geneve}`,
        ),
        cookie: cookie('CHAIN_HOP', id, slot, c),
      });
    }
  }
  return flows;
}

/**
 * CHAIN, UDP, below every slot's hops: the walk found no conntrack entry for the datagram on any owner of its slot
 * (or the slot has no chain), so its flow is new here: one flow per plan member of the LB, matched on the primary
 * member the gateway wrote. A local member commits it (as a SYN would be); another host's member gets it back with
 * FLAG_COMMIT (the counter kept), and that host commits it in CT_IN. So a new UDP flow lands where a TCP SYN
 * through the same gateway would, and only after every owner that may hold it said no.
 *
 *   table=22 priority=40,udp,reg2=0xb3490000/0xffff0000,reg3=0x10000/0xffff0000 actions=ct(commit,...),...,output:5
 *   table=22 priority=40,udp,reg2=0xb3490000/0xffff0000,reg3=0x20000/0xffff0000
 *            actions=set_field:0x10/0x10->tun_metadata1,set_field:192.168.100.12->tun_dst,set_field:0->in_port,
 *                    output:3
 */
export function hostUdpWalkEndFlows(
  hostIp: ReadonlyMap<string, string>,
  { lb, id, plan }: LbInput,
  facts: NodeFacts,
): Flow[] {
  const flows: Flow[] = [];
  plan.members.forEach((m, index) => {
    const walkEnd = (actionText: string, kind: 'UDP_WALK_COMMIT' | 'UDP_WALK_RETURN'): Flow => ({
      table: T.CHAIN,
      priority: PRIO.WALK_END,
      // The protocol match is what lets ct(commit,nat(...)) through OpenFlow's prerequisite check.
      match: match(
        l4(lb.protocol, lb.family),
        `${REG_T_LB_SLOT.match}=${ofNum((id << 16) >>> 0)}/0xffff0000`,
        `${REG_T_MEMBER.match}=${ofNum((index << 16) >>> 0)}/0xffff0000`,
      ),
      actions: actionText,
      cookie: cookie(kind, id, index),
    });
    if (m.host === facts.name) {
      const deliver = localMemberActions(lb, m, facts);
      if (deliver !== undefined) flows.push(walkEnd(deliver, 'UDP_WALK_COMMIT'));
      return;
    }
    const ip = hostIp.get(m.host);
    if (ip === undefined) return; // its host left the config: nowhere to commit (dropped)
    flows.push(
      walkEnd(
        actions(
          `set_field:${ofNum(FLAG_COMMIT)}/${ofNum(FLAG_COMMIT)}->${TUN_MEMBER_FLAGS.field}`,
          `set_field:${ip}->tun_dst`,
          'set_field:0->in_port',
          `output:${facts.ports.geneve}`,
        ),
        'UDP_WALK_RETURN',
      ),
    );
  });
  return flows;
}

/** CHAIN: every load balancer's hops, then the catch-all drop. */
export function hostChainFlows(config: Config, lbs: readonly LbInput[], facts: NodeFacts): Flow[] {
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  return [...lbs.flatMap((x) => hostChainLbFlows(hostIp, x, facts)), dropFlow(T.CHAIN)];
}

/**
 * CT_OUT, after the conntrack lookup of a packet from a backend: a reply of a load-balanced connection has been
 * reverse-NATed (source is the VIP again, per connection, so a backend in several LBs answers with the VIP the
 * client dialled); it goes straight to the upstream router through br-phy (direct server return). Anything else
 * from a backend (connections it opens itself, ARP, ND) is dropped.
 *
 *   table=30 priority=100,ct_state=+est+rpl+trk,ip
 *            actions=set_field:<br-phy MAC>->eth_src,set_field:<router MAC>->eth_dst,output:<int-to-phy>
 *   table=30 priority=100,ct_state=+est+rpl+trk,ipv6 actions=(same)
 *   table=30 priority=1 actions=drop
 */
export function hostCtOutFlows(facts: NodeFacts): Flow[] {
  const flows: Flow[] = [];
  const back = actions(
    `set_field:${facts.phyMac}->eth_src`,
    `set_field:${facts.router.mac}->eth_dst`,
    `output:${facts.ports.intToPhy}`,
  );
  for (const fam of [4, 6] as const) {
    flows.push(
      {
        table: T.CT_OUT,
        priority: PRIO.NORMAL,
        match: match('ct_state=+est+rpl+trk', l3(fam)),
        actions: back,
        cookie: cookie('DIRECT_RETURN', 0, fam),
      },
      // An ICMP error a backend sends about a connection (related; conntrack restored the VIP): the same way back.
      {
        table: T.CT_OUT,
        priority: PRIO.NORMAL,
        match: match('ct_state=+rel+trk', icmpMatch(fam)),
        actions: back,
        cookie: cookie('ICMP_RETURN', 0, fam),
      },
    );
  }
  flows.push(dropFlow(T.CT_OUT));
  return flows;
}

/** Distinct backend ofports, ascending. */
function vmPorts(facts: NodeFacts): number[] {
  return [...new Set(Object.values(facts.vms).map((v) => v.ofport))].sort((a, b) => a - b);
}
