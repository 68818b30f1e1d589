// br-phy (the underlay bridge: eth0 + LOCAL port with the tunnel IP + patch to br-int), both roles.

import type { Flow } from '../flowset/types.ts';
import type { Config } from '../model/types.ts';
import { dstField, l3, match } from './common.ts';
import type { NodeFacts } from './facts.ts';
import type { LbInput } from './gateway.ts';
import { cookie, PRIO, T } from './registry.ts';

/**
 * Both roles: what the LOCAL port sends (encapsulated Geneve from the tunnel endpoint, its ARP) leaves through eth0
 * (without it, NORMAL floods frames to a not-yet-learned MAC into br-int too). Everything not matched below is
 * switched NORMAL (ARP, Geneve to the LOCAL tunnel IP, which the userspace datapath pops on its way to LOCAL).
 *
 * Gateway: packets for a VIP arriving from the underlay in frames addressed to this gateway (br-phy's MAC, the one
 * that answers ARP/ND for its underlay address, so the MAC an upstream router sends to) go to br-int; the same
 * packets in frames addressed to any other MAC are dropped. A switch floods a frame whose destination MAC it has
 * not learned (or no longer knows) to every port: without the MAC match every gateway that got a copy would forward
 * it, and the backend would see it as many times.
 *   table=0 priority=100,ip,in_port=1,dl_dst=02:00:c0:a8:64:01,nw_dst=203.0.113.10 actions=output:2
 *   table=0 priority=50,ip,in_port=1,nw_dst=203.0.113.10 actions=drop
 *   table=0 priority=100,ipv6,in_port=1,dl_dst=02:00:c0:a8:64:01,ipv6_dst=2001:db8::10 actions=output:2
 *   table=0 priority=50,ipv6,in_port=1,ipv6_dst=2001:db8::10 actions=drop
 *   table=0 priority=100,in_port=LOCAL actions=output:1
 *   table=0 priority=1 actions=NORMAL
 *
 * Host: direct-return frames from br-int leave through eth0.
 *   table=0 priority=100,in_port=2 actions=output:1
 *   table=0 priority=100,in_port=LOCAL actions=output:1
 *   table=0 priority=1 actions=NORMAL
 */
export function phyFlows(_config: Config, lbs: readonly LbInput[], facts: NodeFacts): Flow[] {
  return [...phyVipFlows(lbs, facts), ...phyNodeFlows(facts)];
}

/** A gateway's VIP flows of `lbs` (two per distinct VIP, with the id of its first load balancer); [] on a host. */
export function phyVipFlows(lbs: readonly LbInput[], facts: NodeFacts): Flow[] {
  const flows: Flow[] = [];
  if (facts.role !== 'gateway') return flows;
  const seen = new Set<string>();
  for (const { lb, id } of lbs) {
    if (seen.has(lb.vip)) continue;
    seen.add(lb.vip);
    const inPort = `in_port=${facts.ports.eth0}`;
    const dst = `${dstField(lb.family)}=${lb.vip}`;
    flows.push(
      {
        table: T.PHY,
        priority: PRIO.NORMAL,
        match: match(l3(lb.family), inPort, `dl_dst=${facts.phyMac}`, dst),
        actions: `output:${facts.ports.phyToInt}`,
        cookie: cookie('PHY_VIP', id),
      },
      {
        table: T.PHY,
        priority: PRIO.LOW,
        match: match(l3(lb.family), inPort, dst),
        actions: 'drop',
        cookie: cookie('PHY_VIP_NOT_MINE', id),
      },
    );
  }
  return flows;
}

/** br-phy's flows that do not depend on the load balancers. */
export function phyNodeFlows(facts: NodeFacts): Flow[] {
  const flows: Flow[] = [];
  if (facts.role === 'host')
    flows.push({
      table: T.PHY,
      priority: PRIO.NORMAL,
      match: `in_port=${facts.ports.phyToInt}`,
      actions: `output:${facts.ports.eth0}`,
      cookie: cookie('PHY_RETURN'),
    });
  flows.push({
    table: T.PHY,
    priority: PRIO.NORMAL,
    match: 'in_port=LOCAL',
    actions: `output:${facts.ports.eth0}`,
    cookie: cookie('PHY_LOCAL_OUT'),
  });
  flows.push({
    table: T.PHY,
    priority: PRIO.PHY_DEFAULT,
    match: '',
    actions: 'NORMAL',
    cookie: cookie('PHY_NORMAL'),
  });
  return flows;
}
