// Small validated configs for unit tests, built the way a test names them: which gateways and hosts, which load
// balancers with which backends. Everything a test does not name takes one fixed value (below).

import type { Backend, Config, LoadBalancer, Node, Protocol } from '../../src/model/types.ts';

/** Gateways on 192.168.100.<i>, hosts on 192.168.100.<10+i>, i counted from 1 in each list (the lab's plan). */
export function testNodes(gateways: readonly string[], hosts: readonly string[]): Node[] {
  return [
    ...gateways.map((name, i) => ({ name, role: 'gateway' as const, tunnelIp: `192.168.100.${1 + i}` })),
    ...hosts.map((name, i) => ({ name, role: 'host' as const, tunnelIp: `192.168.100.${11 + i}` })),
  ];
}

/** An active backend of weight 1; without a port it keeps the port the client dialled. */
export function activeBackend(address: string, host: string, port?: number): Backend {
  return { address, port, host, weight: 1, state: 'active' };
}

/** A load balancer; its address family is the VIP's. */
export function testLb(
  name: string,
  vip: string,
  protocol: Protocol,
  ports: readonly number[],
  backends: readonly Backend[],
): LoadBalancer {
  return { name, vip, family: vip.includes(':') ? 6 : 4, protocol, ports, backends };
}

/** dp_hash over 16 slots (k = 4), with a drain window. */
export function testConfig(
  nodes: readonly Node[],
  loadBalancers: readonly LoadBalancer[],
  drainWindowSeconds = 30,
): Config {
  return { hashMode: 'dp_hash', slotBits: 4, drainWindowSeconds, nodes, loadBalancers };
}
