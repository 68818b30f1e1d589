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
 * Gateway: packets for a VIP arriving from the underlay go to br-int.
 *   table=0 priority=100,ip,in_port=1,nw_dst=203.0.113.10 actions=output:2
 *   table=0 priority=100,ipv6,in_port=1,ipv6_dst=2001:db8::10 actions=output:2
 *   table=0 priority=100,in_port=LOCAL actions=output:1
 *   table=0 priority=1 actions=NORMAL
 *
 * Host: direct-return frames from br-int leave through eth0.
 *   table=0 priority=100,in_port=2 actions=output:1
 *   table=0 priority=100,in_port=LOCAL actions=output:1
 *   table=0 priority=1 actions=NORMAL
 */
export function phyFlows(_config: Config, lbs: readonly LbInput[], facts: NodeFacts): Flow[] {
  const flows: Flow[] = [];
  if (facts.role === 'gateway') {
    const seen = new Set<string>();
    for (const { lb, id } of lbs) {
      if (seen.has(lb.vip)) continue;
      seen.add(lb.vip);
      flows.push({
        table: T.PHY,
        priority: PRIO.NORMAL,
        match: match(l3(lb.family), `in_port=${facts.ports.eth0}`, `${dstField(lb.family)}=${lb.vip}`),
        actions: `output:${facts.ports.phyToInt}`,
        cookie: cookie('PHY_VIP', id),
      });
    }
  } else {
    flows.push({
      table: T.PHY,
      priority: PRIO.NORMAL,
      match: `in_port=${facts.ports.phyToInt}`,
      actions: `output:${facts.ports.eth0}`,
      cookie: cookie('PHY_RETURN'),
    });
  }
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
