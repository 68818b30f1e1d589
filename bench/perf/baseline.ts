// BASELINE FIXTURE (benchmarks only, not part of sluice): a stateful load-balancing gateway as OVN builds it today,
// programmed on the SAME lab nodes and the same Open vSwitch as sluice, so the two are compared on one machine in
// one run. Design and the flows: docs/design/baseline.md.
//
// Gateway br-int (conntrack on the gateway, OVN's ct_lb_mark shape):
//   table=0 priority=100,udp,in_port=<int-to-phy>,nw_dst=<VIP>,tp_dst=<port> actions=ct(table=1,zone=1,nat)
//   table=0 priority=100,ip,in_port=<geneve>                                 actions=ct(table=3,zone=1,nat)
//   table=1 priority=100,ct_state=+new+trk,udp,nw_dst=<VIP>,tp_dst=<port>    actions=group:<lb>
//   table=1 priority=90,ct_state=+est+trk,ip                                 actions=resubmit(,2)
//   group_id=<lb>,type=select,selection_method=dp_hash,
//     bucket=bucket_id:0,weight:100,actions=ct(commit,table=2,zone=1,nat(dst=B0:port),exec(set_field:0x2/0x2->ct_mark))
//     bucket=bucket_id:1,...                                                 (one bucket per backend)
//   table=2 priority=100,ip,nw_dst=<backend>  actions=set_field:<backend's host>->tun_dst,output:<geneve>
//   table=3 priority=100,ct_state=+est+rpl+trk,ip (replies, source = VIP again)
//           actions=set_field:<br-phy MAC>->eth_src,set_field:<router MAC>->eth_dst,output:<int-to-phy>
// Host br-int (plain delivery; the backend's default route leads back through the gateway):
//   table=0 priority=100,ip,in_port=<geneve>,nw_dst=<backend> actions=set MACs,output:<vm port>
//   table=0 priority=100,ip,in_port=<vm port>                 actions=set_field:<gateway>->tun_dst,output:<geneve>
// br-phy keeps sluice's flows (VIP -> br-int on the gateway, NORMAL otherwise), plus on the gateway one flow that
// sends what br-int returns (the replies) out of eth0, as sluice's hosts do for their direct return:
//   br-phy table=0 priority=100,in_port=<phy-to-int> actions=output:<eth0>
// Without it br-phy's NORMAL learns the gateway's own MAC (the replies' source) on the patch port and then sends the
// Geneve packets addressed to the gateway into br-int instead of the tunnel endpoint (measured: replies dropped).
//
// BOUND (the lab's ceiling, also only for benchmarks): the gateway forwards every VIP packet into one fixed Geneve
// tunnel with one flow and nothing else (no hash, no conntrack):
//   table=0 priority=100,ip,in_port=<int-to-phy>,nw_dst=<VIP> actions=set_field:<host1>->tun_dst,output:<geneve>

import type { LabNode } from '../../src/lab/node.ts';
import type { Lab } from '../../src/lab/topology.ts';
import type { Protocol } from '../../src/model/types.ts';

/** Cookie of every baseline/bound flow (not a sluice cookie: sluice's applier treats them as foreign). */
export const BASELINE_COOKIE = '0xba5e000000000000';
export const BASELINE_ZONE = 1;
export const BASELINE_GROUP_BASE = 0xba50;

export interface BaselineVip {
  readonly vip: string;
  readonly port: number;
  readonly protocol: Protocol;
  /** Backend names (lab `hostN-bM`). */
  readonly backends: readonly string[];
}

async function ofctl(n: LabNode, args: string[], input?: string): Promise<void> {
  await n.ofctl('br-int', args, input === undefined ? {} : { input });
}

/** Removes every flow and group of br-int (sluice's, the baseline's, the bound's) and the baseline's br-phy flow. */
export async function clearBrInt(n: LabNode): Promise<void> {
  await ofctl(n, ['del-flows']);
  await ofctl(n, ['del-groups']);
  await n.ofctl('br-phy', ['del-flows', `cookie=${BASELINE_COOKIE}/-1`]);
}

/** The baseline's flow and group texts for the gateway `gw` (ovs-ofctl add-flows / add-groups lines). */
export function baselineGateway(
  lab: Lab,
  gw: string,
  vips: readonly BaselineVip[],
): { flows: string[]; groups: string[] } {
  const n = lab.node(gw);
  const p = n.ports;
  const c = `cookie=${BASELINE_COOKIE}`;
  const flows: string[] = [];
  const groups: string[] = [];
  const routed = new Set<string>();
  vips.forEach((v, i) => {
    const gid = BASELINE_GROUP_BASE + i;
    const l4 = v.protocol;
    flows.push(
      `${c},table=0,priority=100,${l4},in_port=${p.intToPhy},nw_dst=${v.vip},tp_dst=${v.port},actions=ct(table=1,zone=${BASELINE_ZONE},nat)`,
    );
    flows.push(
      `${c},table=1,priority=100,ct_state=+new+trk,${l4},nw_dst=${v.vip},tp_dst=${v.port},actions=group:${gid}`,
    );
    const buckets = v.backends.map((name, j) => {
      const b = lab.backend(name);
      return `bucket=bucket_id:${j},weight:100,actions=ct(commit,table=2,zone=${BASELINE_ZONE},nat(dst=${b.ip}:${v.port}),exec(set_field:0x2/0x2->ct_mark))`;
    });
    groups.push(`group_id=${gid},type=select,selection_method=dp_hash,${buckets.join(',')}`);
    for (const name of v.backends) {
      if (routed.has(name)) continue;
      routed.add(name);
      const b = lab.backend(name);
      const host = lab.node(b.host);
      flows.push(
        `${c},table=2,priority=100,ip,nw_dst=${b.ip},actions=set_field:${host.tunnelIp}->tun_dst,output:${p.geneve}`,
      );
    }
  });
  flows.push(
    `${c},table=0,priority=100,ip,in_port=${p.geneve},actions=ct(table=3,zone=${BASELINE_ZONE},nat)`,
  );
  flows.push(`${c},table=1,priority=90,ct_state=+est+trk,ip,actions=resubmit(,2)`);
  flows.push(
    `${c},table=3,priority=100,ct_state=+est+rpl+trk,ip,actions=set_field:${n.brPhyMac}->eth_src,set_field:${lab.facts.router.underlayMac}->eth_dst,output:${p.intToPhy}`,
  );
  for (const t of [0, 1, 2, 3]) flows.push(`${c},table=${t},priority=1,actions=drop`);
  return { flows, groups };
}

/** The baseline's flows for one host: plain delivery in, everything from a backend back to the gateway. */
export function baselineHost(lab: Lab, host: string, gw: string): string[] {
  const n = lab.node(host);
  const p = n.ports;
  const c = `cookie=${BASELINE_COOKIE}`;
  const gwIp = lab.node(gw).tunnelIp;
  const flows: string[] = [];
  for (const b of n.backends) {
    flows.push(
      `${c},table=0,priority=100,ip,in_port=${p.geneve},nw_dst=${b.ip},actions=set_field:${b.gatewayMac}->eth_src,set_field:${b.mac}->eth_dst,output:${b.ofport}`,
    );
    flows.push(
      `${c},table=0,priority=100,ip,in_port=${b.ofport},actions=set_field:${gwIp}->tun_dst,output:${p.geneve}`,
    );
  }
  flows.push(`${c},table=0,priority=1,actions=drop`);
  return flows;
}

/** Programs the baseline on the gateway and every host (br-int replaced; br-phy untouched). */
export async function installBaseline(lab: Lab, gw: string, vips: readonly BaselineVip[]): Promise<void> {
  const g = baselineGateway(lab, gw, vips);
  const gn = lab.node(gw);
  await clearBrInt(gn);
  await ofctl(gn, ['add-groups', '-'], `${g.groups.join('\n')}\n`);
  await ofctl(gn, ['add-flows', '-'], `${g.flows.join('\n')}\n`);
  await gn.ofctl('br-phy', [
    'add-flow',
    `cookie=${BASELINE_COOKIE},table=0,priority=100,in_port=${gn.ports.phyToInt},actions=output:${gn.ports.eth0}`,
  ]);
  for (const h of lab.hosts) {
    await clearBrInt(h);
    await ofctl(h, ['add-flows', '-'], `${baselineHost(lab, h.name, gw).join('\n')}\n`);
  }
}

/** Programs the bound on the gateway: VIP packets into one fixed tunnel to `host`; nothing else. */
export async function installBound(
  lab: Lab,
  gw: string,
  host: string,
  vips: readonly BaselineVip[],
): Promise<void> {
  const gn = lab.node(gw);
  const c = `cookie=${BASELINE_COOKIE}`;
  const dst = lab.node(host).tunnelIp;
  const flows = [...new Set(vips.map((v) => v.vip))].map(
    (vip) =>
      `${c},table=0,priority=100,ip,in_port=${gn.ports.intToPhy},nw_dst=${vip},actions=set_field:${dst}->tun_dst,output:${gn.ports.geneve}`,
  );
  flows.push(`${c},table=0,priority=1,actions=drop`);
  await clearBrInt(gn);
  await ofctl(gn, ['add-flows', '-'], `${flows.join('\n')}\n`);
}
