// FAKE node facts for the compiler's unit and golden tests: deterministic port numbers and MACs (no OVS involved).

import type { NodeFacts, VmPort } from '../../src/compile/facts.ts';
import type { Config } from '../../src/model/types.ts';

/** Deterministic fake facts: the lab's requested port numbers; a backend's port is 10 + the last number of its
 *  address (10.0.1.11 and fd00:0:1::11 share port 21, as one lab backend's two addresses share a veth). */
export function fakeFacts(config: Config, name: string): NodeFacts {
  const node = config.nodes.find((n) => n.name === name)!;
  const addrs = [
    ...new Set(
      config.loadBalancers.flatMap((l) => l.backends.filter((b) => b.host === name).map((b) => b.address)),
    ),
  ].sort();
  const vms: Record<string, VmPort> = {};
  for (const a of addrs) {
    const n = Number(/(\d+)$/.exec(a)![1]);
    vms[a] = { ofport: 10 + n, mac: `02:00:0a:00:00:${n.toString(16).padStart(2, '0')}` };
  }
  const last = Number(node.tunnelIp.split('.')[3]);
  return {
    name,
    role: node.role,
    tunnelIp: node.tunnelIp,
    bridges: { int: 'br-int', phy: 'br-phy' },
    phyMac: `02:00:c0:a8:64:${last.toString(16).padStart(2, '0')}`,
    ports: { eth0: 1, phyToInt: 2, intToPhy: 1, geneve: 2 },
    vms,
    vmRouterMac: '02:00:00:00:00:01',
    router: { ip: '192.168.100.254', mac: '02:00:c0:a8:64:fe' },
  };
}

/**
 * The lab's host1 as its agent reads it from its own OVS (test/fixtures/ovs-facts-host1.vsctl.jsonl), with the
 * backend ports given (none by default). A fresh object on every call.
 */
export function labHost1Facts(vms: Record<string, VmPort> = {}): NodeFacts {
  return {
    name: 'host1',
    role: 'host',
    tunnelIp: '192.168.100.11',
    bridges: { int: 'br-int', phy: 'br-phy' },
    phyMac: '02:00:c0:a8:64:0b',
    ports: { eth0: 1, phyToInt: 2, intToPhy: 1, geneve: 2 },
    vms,
    vmRouterMac: '02:00:00:00:01:01',
    router: { ip: '192.168.100.254', mac: '02:00:c0:a8:64:fe' },
  };
}
