// ICMP errors about a load-balanced connection (Path MTU discovery and the other unreachable/time-exceeded
// messages). Pure. A gateway cannot hash the header an ICMP error carries (OpenFlow does not parse ICMP payloads),
// so it sends one copy to every host that holds a member of the VIP; each host's conntrack recognises the error
// as related to a connection it tracks (and rewrites the outer destination and the embedded header to the
// backend), and delivers it, or finds nothing and drops it. Replies' ICMP errors from backends (related) leave by
// direct return. Design, cost and limits: docs/design/icmp.md.

import type { Flow, Meter } from '../flowset/types.ts';
import type { Config, IpFamily } from '../model/types.ts';
import { actions, dstField, match, ofNum } from './common.ts';
import type { NodeFacts } from './facts.ts';
import type { LbInput } from './gateway.ts';
import { cookie, ICMP_METER_ID, PRIO, T, TUN_LB_SLOT } from './registry.ts';

/** ICMP errors per second a gateway copies when its facts name no rate: far above what routers send for Path MTU
 *  discovery (Linux sends at most about one per second per destination), far below a flood. */
export const DEFAULT_ICMP_RATE = 1000;

/** The rate of a gateway's ICMP meter: facts.icmpRate, else DEFAULT_ICMP_RATE; 0 = no meter. */
export function icmpRate(facts: NodeFacts): number {
  return facts.role === 'gateway' ? (facts.icmpRate ?? DEFAULT_ICMP_RATE) : 0;
}

/**
 * Gateways: one meter in front of every ICMP error copy (all VIPs share it), so a flood of ICMP errors to VIPs
 * reaches the hosts at no more than `rate` errors per second (times the copies per error) after a burst of about a
 * second's worth; the rest is dropped on the gateway and counted in the meter's band. One token per error, not per
 * copy. Echo requests do not pass it.
 *   meter=1358954498 pktps burst bands=type=drop rate=1000 burst_size=1000
 */
export function gatewayIcmpMeters(facts: NodeFacts): Meter[] {
  const rate = icmpRate(facts);
  if (rate <= 0 || facts.icmpErrorsInXdp) return [];
  return [{ meterId: ICMP_METER_ID, spec: `pktps burst bands=type=drop rate=${rate} burst_size=${rate}` }];
}

/** ICMP error types a gateway forwards, per family: v4 destination unreachable (3, code 4 = fragmentation needed)
 *  and time exceeded (11); v6 destination unreachable (1), packet too big (2), time exceeded (3). */
export const ICMP_ERROR_TYPES: Readonly<Record<IpFamily, readonly number[]>> = { 4: [3, 11], 6: [1, 2, 3] };

export function icmpMatch(family: IpFamily): string {
  return family === 6 ? 'icmp6' : 'icmp';
}

/** The ICMP type field of a set_field action: `icmp_type` is ICMPv4 only there (a match takes `icmp_type` for both,
 *  and ovs-ofctl prints it so, which the applier's verification compares against). */
function setTypeField(family: IpFamily): string {
  return family === 6 ? 'icmpv6_type' : 'icmp_type';
}

export interface VipHosts {
  readonly vip: string;
  readonly family: IpFamily;
  /** The id of the first load balancer (by name) on this VIP: what the tunnel metadata carries. */
  readonly id: number;
  /** Hosts of every member of every load balancer on this VIP, chain members included, sorted. */
  readonly hosts: readonly string[];
}

/** One entry per VIP, in the order of the (name-sorted) load balancers. */
export function vipHosts(lbs: readonly LbInput[]): VipHosts[] {
  const byVip = new Map<string, { vip: string; family: IpFamily; id: number; hosts: Set<string> }>();
  for (const { lb, id, plan } of lbs) {
    const key = `${lb.family}/${lb.vip}`;
    let v = byVip.get(key);
    if (v === undefined) {
      v = { vip: lb.vip, family: lb.family, id, hosts: new Set() };
      byVip.set(key, v);
    }
    for (const m of plan.members) v.hosts.add(m.host);
  }
  return [...byVip.values()].map((v) => ({ ...v, hosts: [...v.hosts].sort() }));
}

/**
 * Gateway CLASSIFY: an ICMP error addressed to a VIP -> one Geneve copy to each host of the VIP's members, with
 * TUN_LB_SLOT = lb id << 16 (slot 0: no slot is known) and no other option, after the gateway's ICMP meter when it
 * has one (gatewayIcmpMeters; OpenFlow wants the meter first). None when facts.icmpErrorsInXdp: the XDP
 * gateway's tc program makes the copies (src/compile/xdp.ts `icmp`); the echo flows stay.
 *
 *   table=0 priority=100,icmp,nw_dst=203.0.113.10,icmp_type=3
 *           actions=meter:1358954498,set_field:0x2a7c0000->tun_metadata0,set_field:192.168.100.11->tun_dst,
 *                   output:3,set_field:192.168.100.12->tun_dst,output:3
 */
export function gatewayIcmpFlows(config: Config, lbs: readonly LbInput[], facts: NodeFacts): Flow[] {
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  const flows: Flow[] = [];
  const meter = gatewayIcmpMeters(facts).map((m) => `meter:${m.meterId}`);
  for (const v of vipHosts(lbs)) {
    const outs = v.hosts.flatMap((h) => {
      const ip = hostIp.get(h);
      return ip === undefined ? [] : [`set_field:${ip}->tun_dst`, `output:${facts.ports.geneve}`];
    });
    flows.push(gatewayEchoFlow(v));
    if (outs.length === 0 || facts.icmpErrorsInXdp) continue;
    for (const type of ICMP_ERROR_TYPES[v.family]) {
      flows.push({
        table: T.CLASSIFY,
        priority: PRIO.NORMAL,
        match: match(icmpMatch(v.family), `${dstField(v.family)}=${v.vip}`, `icmp_type=${type}`),
        actions: actions(...meter, `set_field:${ofNum((v.id << 16) >>> 0)}->${TUN_LB_SLOT.field}`, ...outs),
        cookie: cookie('GW_ICMP', v.id, type),
      });
    }
  }
  return flows;
}

/** Echo request and reply types per family. */
const ECHO: Readonly<Record<IpFamily, readonly [number, number]>> = { 4: [8, 0], 6: [128, 129] };

/**
 * Gateway CLASSIFY: an echo request to a VIP is answered by the gateway itself, like a router answers for its own
 * address: swap the Ethernet and IP addresses, echo reply, TTL 64, back out the port it came in (br-phy forwards
 * it to the router). OVS updates the ICMP checksum when it rewrites the type. Why not a backend: docs/design/icmp.md.
 *
 *   table=0 priority=100,icmp,nw_dst=203.0.113.10,icmp_type=8
 *           actions=push:NXM_OF_ETH_SRC[],move:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[],pop:NXM_OF_ETH_DST[],
 *                   push:NXM_OF_IP_SRC[],move:NXM_OF_IP_DST[]->NXM_OF_IP_SRC[],pop:NXM_OF_IP_DST[],
 *                   set_field:0->icmp_type,set_field:64->nw_ttl,IN_PORT
 */
function gatewayEchoFlow(v: VipHosts): Flow {
  const [request, reply] = ECHO[v.family];
  const [src, dst] =
    v.family === 6 ? ['NXM_NX_IPV6_SRC[]', 'NXM_NX_IPV6_DST[]'] : ['NXM_OF_IP_SRC[]', 'NXM_OF_IP_DST[]'];
  return {
    table: T.CLASSIFY,
    priority: PRIO.NORMAL,
    match: match(icmpMatch(v.family), `${dstField(v.family)}=${v.vip}`, `icmp_type=${request}`),
    actions: actions(
      'push:NXM_OF_ETH_SRC[]',
      'move:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[]',
      'pop:NXM_OF_ETH_DST[]',
      `push:${src}`,
      `move:${dst}->${src}`,
      `pop:${dst}`,
      `set_field:${reply}->${setTypeField(v.family)}`,
      'set_field:64->nw_ttl',
      'IN_PORT',
    ),
    cookie: cookie('GW_ICMP_ECHO', v.id, request),
  };
}

/**
 * Host TUN_IN: an ICMP error a gateway copied here -> conntrack lookup with NAT; CT_IN delivers it if it is related
 * to a connection of this host (host.ts `hostDeliverFlows`, `+rel`), else the catch-all drops it.
 *
 *   table=20 priority=100,icmp,tun_metadata0=0x2a7c0000/0xffff0000,nw_dst=203.0.113.10
 *            actions=ct(table=21,zone=1,nat)
 */
export function hostIcmpTunInFlows(lbs: readonly LbInput[], zone: number): Flow[] {
  return vipHosts(lbs).map((v) => ({
    table: T.TUN_IN,
    priority: PRIO.NORMAL,
    match: match(
      icmpMatch(v.family),
      `${TUN_LB_SLOT.field}=${ofNum((v.id << 16) >>> 0)}/0xffff0000`,
      `${dstField(v.family)}=${v.vip}`,
    ),
    actions: `ct(table=${T.CT_IN},zone=${zone},nat)`,
    cookie: cookie('ICMP_IN', v.id),
  }));
}
