// A small lab's config in the `fields` hash mode, its first generation, and FAKE XDP gateway facts (every host's
// neighbour MAC as the lab assigns it): the XDP unit tests' shared fixture (no kernel, no OVS).

import { initialGeneration } from '../../src/cli/explain.ts';
import type { XdpGatewayFacts } from '../../src/compile/xdp.ts';
import { labSluiceConfig, nodeBrPhyMac, resolveLabConfig } from '../../src/lab/config.ts';

export function xdpFixture(ipv6: boolean) {
  const config = labSluiceConfig(resolveLabConfig({ gateways: 1, hosts: 3, ipv6 }), {
    hashMode: 'fields',
    slotBits: 4,
  });
  const hosts = config.nodes.filter((n) => n.role === 'host').map((n) => n.tunnelIp);
  const facts: XdpGatewayFacts = {
    tunnelIp: '192.168.100.1',
    mac: '02:00:c0:a8:64:01',
    neighbours: new Map(hosts.map((h) => [h, nodeBrPhyMac(h)])),
  };
  return { config, gen: initialGeneration(config), hosts, facts };
}
