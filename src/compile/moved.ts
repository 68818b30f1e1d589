// Moved backends (live migration), hosts with `followMoves` (the agent's `sluice-follow-moves=true`). Pure.
//
// A backend VM that migrates keeps its TCP state, but sluice's state for its connections (the conntrack entry with
// the VIP -> backend DNAT) stays on the old host, and the VM's replies now leave through the new host, which has no
// entry to un-NAT them. The old host keeps owning those connections; the new host learns, from the packets the old
// host hands it, the way back (docs/ovn.md "Live migration"):
//
//   old host, CT_IN: an established connection (ct_mark: its load balancer) to a backend the config places on
//     another host -> Geneve to that host, VNI TUN_ID_MOVED (already DNATed; the old host keeps the entry).
//   new host, TUN_IN: VNI TUN_ID_MOVED to a local backend address -> `learn` two per-connection flows, deliver:
//     MOVED_BACK: the backend's replies of that connection (reversed 5-tuple) -> the sender, VNI TUN_ID_RETURN;
//     MOVED_FWD:  the client's packets of that connection (source address and port, load balancer) that a gateway
//                 now sends here (no entry: new non-SYN TCP) -> the sender, as they came (VNI 0).
//   new host, CT_OUT: a backend's packet with no connection here (-est) -> MOVED_BACK (else dropped, as before).
//   old host, TUN_IN: VNI TUN_ID_RETURN -> ct lookup with NAT -> CT_OUT: a reply of a connection it holds is
//     un-NATed and takes direct return from the old host; anything else is dropped there.
//   new host, MOVED_FWD, per member whose plan names its old host (PlanMember.movedFrom): a client's packet the
//     gateway sent for that member, with no state and nothing learned here yet -> the old host, as it came. The old
//     host's conntrack has the connection and hands it back (VNI TUN_ID_MOVED), so the new host learns it. Without
//     this, a connection whose client sent nothing between the old host's and the gateways' switch to the new
//     generation was never handed over: a host change moves no slot, so no chain names the old host.
//
// Per packet it is one more flow lookup on each host (O(1)); the state is the old host's conntrack entry and two
// learned flows per moved connection on the new host (idle timeout MOVED_IDLE_TIMEOUT, cookie LEARNED_COOKIE, which
// the applier does not own). A reply leaves with the VIP only if the old host's conntrack says it belongs to a
// connection it DNATed, so a backend gains no way to send as the VIP.

import type { Flow } from '../flowset/types.ts';
import type { IpFamily } from '../model/types.ts';
import { actions, dstField, familyOf, l3, match, ofNum } from './common.ts';
import type { NodeFacts } from './facts.ts';
import { dropFlow, type LbInput } from './gateway.ts';
import { deliverActions, localBackends } from './host.ts';
import {
  cookie,
  ctZoneOf,
  LEARNED_COOKIE,
  MOVED_IDLE_TIMEOUT,
  PRIO,
  REG_T_LB_SLOT,
  REG_T_MEMBER,
  T,
  TUN_ID_MOVED,
  TUN_ID_RETURN,
} from './registry.ts';

/** NXM names per family: the learned flows match and reverse the 5-tuple. */
const NXM = {
  4: { ethType: '0x800', src: 'NXM_OF_IP_SRC[]', dst: 'NXM_OF_IP_DST[]' },
  6: { ethType: '0x86dd', src: 'NXM_NX_IPV6_SRC[]', dst: 'NXM_NX_IPV6_DST[]' },
} as const;
const L4 = {
  tcp: { proto: 6, src: 'NXM_OF_TCP_SRC[]', dst: 'NXM_OF_TCP_DST[]' },
  udp: { proto: 17, src: 'NXM_OF_UDP_SRC[]', dst: 'NXM_OF_UDP_DST[]' },
} as const;

/**
 * CT_IN (old host), per load balancer: an established connection of a member the config places on another host
 * goes there, already translated. One flow per such member address:
 *   table=21 priority=105,ct_state=-new+est+trk,ct_mark=0xb3490000/0xffff0000,ip,nw_dst=10.0.1.12
 *            actions=set_field:0x5101->tun_id,set_field:192.168.100.12->tun_dst,set_field:0->in_port,output:3
 */
export function movedOutLbFlows(
  hostIp: ReadonlyMap<string, string>,
  { id, plan }: LbInput,
  facts: NodeFacts,
): Flow[] {
  if (facts.followMoves !== true) return [];
  const flows: Flow[] = [];
  const seen = new Set<string>();
  plan.members.forEach((m, index) => {
    const ip = m.host === facts.name ? undefined : hostIp.get(m.host);
    if (ip === undefined || seen.has(m.address)) return;
    seen.add(m.address);
    const fam = familyOf(m.address);
    flows.push({
      table: T.CT_IN,
      priority: PRIO.MOVED,
      match: match(
        'ct_state=-new+est+trk',
        `ct_mark=${ofNum((id << 16) >>> 0)}/0xffff0000`,
        l3(fam),
        `${dstField(fam)}=${m.address}`,
      ),
      actions: actions(
        `set_field:${ofNum(TUN_ID_MOVED)}->tun_id`,
        `set_field:${ip}->tun_dst`,
        'set_field:0->in_port',
        `output:${facts.ports.geneve}`,
      ),
      cookie: cookie('MOVED_OUT', id, index),
    });
  });
  return flows;
}

/**
 * MOVED_FWD (new host), per load balancer and per local member the plan says moved here (`movedFrom`): the client's
 * packets of a connection the old host holds, which the gateway sent here (the member's index in the Geneve options)
 * before this host learned the connection -> the old host, unchanged (below the learned flows, above the miss):
 *   table=23 priority=50,reg2=0xb3490000/0xffff0000,reg3=0x10000/0xffff0000
 *            actions=set_field:192.168.100.12->tun_dst,set_field:0->in_port,output:3
 * A packet the old host has no connection for either walks the chain there (its hop counter unchanged), so it
 * cannot loop: only the walk sends packets on, and it raises the counter.
 */
export function movedFromLbFlows(
  hostIp: ReadonlyMap<string, string>,
  { lb, id, plan }: LbInput,
  facts: NodeFacts,
): Flow[] {
  if (facts.followMoves !== true || facts.role !== 'host' || lb.protocol !== 'tcp') return [];
  const flows: Flow[] = [];
  plan.members.forEach((m, index) => {
    const ip = m.movedFrom === undefined || m.host !== facts.name ? undefined : hostIp.get(m.movedFrom);
    if (ip === undefined || m.movedFrom === facts.name) return;
    flows.push({
      table: T.MOVED_FWD,
      priority: PRIO.LOW,
      match: match(
        `${REG_T_LB_SLOT.match}=${ofNum((id << 16) >>> 0)}/0xffff0000`,
        `${REG_T_MEMBER.match}=${ofNum((index << 16) >>> 0)}/0xffff0000`,
      ),
      actions: actions(`set_field:${ip}->tun_dst`, 'set_field:0->in_port', `output:${facts.ports.geneve}`),
      cookie: cookie('MOVED_FROM', id, index),
    });
  });
  return flows;
}

/** The two `learn` actions of a handed-over packet (see the top of this file). */
function learnActions(fam: IpFamily, protocol: 'tcp' | 'udp'): string[] {
  const ip = NXM[fam];
  const l4 = L4[protocol];
  const head = (table: number) =>
    `table=${table},idle_timeout=${MOVED_IDLE_TIMEOUT},priority=${PRIO.NORMAL},` +
    `cookie=0x${LEARNED_COOKIE.toString(16)},eth_type=${ip.ethType},nw_proto=${l4.proto}`;
  const back = [
    head(T.MOVED_BACK),
    `${ip.src}=${ip.dst}`,
    `${ip.dst}=${ip.src}`,
    `${l4.src}=${l4.dst}`,
    `${l4.dst}=${l4.src}`,
    `load:${ofNum(TUN_ID_RETURN)}->NXM_NX_TUN_ID[]`,
    'load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[]',
    'output:NXM_OF_IN_PORT[]',
  ];
  const forward = [
    head(T.MOVED_FWD),
    ip.src,
    l4.src,
    `${REG_T_LB_SLOT.nxm}[16..31]=NXM_NX_TUN_METADATA0[16..31]`,
    'load:0->NXM_OF_IN_PORT[]',
    'load:NXM_NX_TUN_IPV4_SRC[]->NXM_NX_TUN_IPV4_DST[]',
    'output:NXM_OF_IN_PORT[]',
  ];
  // The client's packets only come through a gateway for TCP (UDP has no chain: a moved UDP flow's next datagram
  // through the new host starts a new flow there).
  return protocol === 'tcp'
    ? [`learn(${back.join(',')})`, `learn(${forward.join(',')})`]
    : [`learn(${back.join(',')})`];
}

/**
 * The node-wide flows of a host with followMoves (none without):
 *   TUN_IN, per local backend address and protocol (new host):
 *     table=20 priority=200,tcp,tun_id=0x5101,nw_dst=10.0.1.12 actions=learn(...),learn(...),
 *              set_field:<vm router MAC>->eth_src,set_field:<vm MAC>->eth_dst,output:5
 *   TUN_IN, per family (old host): table=20 priority=200,ip,tun_id=0x5102 actions=ct(table=30,zone=1,nat)
 *   CT_IN -> MOVED_FWD, per family: table=21 priority=95,ct_state=+new+trk,tcp,tcp_flags=-syn actions=resubmit(,23)
 *   MOVED_FWD miss -> the chain:    table=23 priority=1 actions=resubmit(,22)
 *   CT_OUT -> MOVED_BACK, per family: table=30 priority=50,ct_state=-est+trk,ip actions=resubmit(,31)
 *   MOVED_BACK miss:                table=31 priority=1 actions=drop
 */
export function movedNodeFlows(facts: NodeFacts): Flow[] {
  if (facts.followMoves !== true || facts.role !== 'host') return [];
  const flows: Flow[] = [];
  for (const { address, vm, fam } of localBackends(facts)) {
    for (const protocol of ['tcp', 'udp'] as const)
      flows.push({
        table: T.TUN_IN,
        priority: PRIO.HIGH,
        match: match(
          fam === 6 ? `${protocol}6` : protocol,
          `tun_id=${ofNum(TUN_ID_MOVED)}`,
          `${dstField(fam)}=${address}`,
        ),
        actions: actions(...learnActions(fam, protocol), deliverActions(facts, vm)),
        cookie: cookie('MOVED_IN', 0, vm.ofport, (fam << 8) | L4[protocol].proto),
      });
  }
  for (const fam of [4, 6] as const) {
    flows.push(
      {
        table: T.TUN_IN,
        priority: PRIO.HIGH,
        match: match(l3(fam), `tun_id=${ofNum(TUN_ID_RETURN)}`),
        actions: `ct(table=${T.CT_OUT},zone=${ctZoneOf(facts)},nat)`,
        cookie: cookie('MOVED_RETURN', 0, 0, fam),
      },
      {
        table: T.CT_IN,
        priority: PRIO.MOVED_LOOKUP,
        match: match('ct_state=+new+trk', fam === 6 ? 'tcp6' : 'tcp', 'tcp_flags=-syn'),
        actions: `resubmit(,${T.MOVED_FWD})`,
        cookie: cookie('MOVED_LOOKUP', 0, T.CT_IN, fam),
      },
      {
        table: T.CT_OUT,
        priority: PRIO.LOW,
        match: match('ct_state=-est+trk', l3(fam)),
        actions: `resubmit(,${T.MOVED_BACK})`,
        cookie: cookie('MOVED_BACK_LOOKUP', 0, 0, fam),
      },
    );
  }
  flows.push(
    {
      table: T.MOVED_FWD,
      priority: PRIO.DROP,
      match: '',
      actions: `resubmit(,${T.CHAIN})`,
      cookie: cookie('MOVED_LOOKUP', 0, T.MOVED_FWD),
    },
    dropFlow(T.MOVED_BACK),
  );
  return flows;
}
