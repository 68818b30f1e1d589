// The lab's sizes and address plan (docs/design/lab.md), and the sluice Config the lab's topology implies.
// Pure functions: no I/O here, so tests and the demo can compute names and addresses without root.

import { SluiceError } from '../model/errors.ts';
import { parseConfig } from '../model/schema.ts';
import type { Config, IpFamily, NodeRole, Protocol } from '../model/types.ts';

/** One load-balanced service of the lab: a VIP, a port and the names of the backends behind it. */
export interface LabVip {
  readonly name: string;
  readonly vip: string;
  readonly family: IpFamily;
  readonly protocol: Protocol;
  readonly port: number;
  /** Backend names (`hostN-bM`). */
  readonly backends: readonly string[];
}

export interface LabConfig {
  /** Prefix of every namespace the lab creates (e.g. `sl-` gives `sl-gw1`, `sl-host2-b1`). */
  readonly prefix: string;
  readonly gateways: number;
  readonly hosts: number;
  readonly backendsPerHost: number;
  readonly clients: number;
  /** Port every backend listens on (TCP, and UDP when `udp`). */
  readonly backendPort: number;
  /** Backends also answer UDP datagrams on `backendPort`. */
  readonly udp: boolean;
  /** Add the IPv6 VIP (2001:db8::10, IPv4 underlay). */
  readonly ipv6: boolean;
  /** Services; default: defaultVips(). */
  readonly vips: readonly LabVip[];
  /** Parent of the lab's run directory (`<runRoot>/<prefix>/`). */
  readonly runRoot: string;
}

export const DEFAULT_PREFIX = 'sl-';
export const DEFAULT_RUN_ROOT = '/run/sluice-lab';

export const UNDERLAY_PREFIX = '192.168.100';
export const UNDERLAY_MTU = 1600;
export const ROUTER_UNDERLAY_IP = `${UNDERLAY_PREFIX}.254`;
export const ROUTER_UNDERLAY_MAC = '02:00:c0:a8:64:fe';
/** IPv6 underlay (ULA) used only as the router's next-hop addresses for IPv6 VIPs: Linux does not accept an IPv4
 * next hop for an IPv6 route (`ip -6 route ... via inet`: "IPv6 routes can not use an IPv4 nexthop", kernel 6.18),
 * so gateway gwN is next hop fd00:100::N, pinned to its br-phy MAC by a permanent neighbour entry on the router. */
export const UNDERLAY6_PREFIX = 'fd00:100::';
export const ROUTER_UNDERLAY_IP6 = `${UNDERLAY6_PREFIX}fe`;
export function underlayIp6(tunnelIp: string): string {
  return `${UNDERLAY6_PREFIX}${Number(tunnelIp.split('.')[3]).toString(16)}`;
}
export const CLIENT_NET = '10.200.0';
export const ROUTER_CLIENT_IP = `${CLIENT_NET}.1`;
export const ROUTER_CLIENT_IP6 = 'fd00:200::1';
export const ROUTER_CLIENT_MAC = '02:00:0a:c8:00:01';

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** Lab-local names: `gwN`, `hostN`, `hostN-bM`, `cN`. */
export const gatewayName = (i: number) => `gw${i}`;
export const hostName = (i: number) => `host${i}`;
export const backendName = (host: number, m: number) => `host${host}-b${m}`;
export const clientName = (i: number) => `c${i}`;

export function nodeTunnelIp(role: NodeRole, i: number): string {
  return role === 'gateway' ? `${UNDERLAY_PREFIX}.${i}` : `${UNDERLAY_PREFIX}.${10 + i}`;
}
/** MAC of the node's br-phy LOCAL port (holds the tunnel IP). */
export function nodeBrPhyMac(tunnelIp: string): string {
  return `02:00:c0:a8:64:${hex2(Number(tunnelIp.split('.')[3]))}`;
}
/** MAC of the node's underlay NIC `eth0` (its own, distinct from br-phy's; `arp off`). */
export function nodeEth0Mac(tunnelIp: string): string {
  return `02:01:c0:a8:64:${hex2(Number(tunnelIp.split('.')[3]))}`;
}
export const backendIp = (host: number, m: number) => `10.0.${host}.${10 + m}`;
export const backendIp6 = (host: number, m: number) => `fd00:0:${host}::${10 + m}`;
export const backendMac = (host: number, m: number) => `02:00:0a:00:${hex2(host)}:${hex2(10 + m)}`;
/** The router address a backend uses as default gateway (answered by OVS; static neighbour in the backend). */
export const backendGatewayIp = (host: number) => `10.0.${host}.1`;
export const backendGatewayIp6 = (host: number) => `fd00:0:${host}::1`;
export const backendGatewayMac = (host: number) => `02:00:00:00:${hex2(host)}:01`;
export const clientIp = (i: number) => `${CLIENT_NET}.${10 + i}`;
export const clientIp6 = (i: number) => `fd00:200::${10 + i}`;
export const clientMac = (i: number) => `02:00:0a:c8:00:${hex2(10 + i)}`;

/** The default services: 203.0.113.10:80 (4 backends), 203.0.113.20:80 (3, one shared), optional 2001:db8::10. */
export function defaultVips(
  sizes: Pick<LabConfig, 'hosts' | 'backendsPerHost' | 'backendPort' | 'ipv6'>,
): LabVip[] {
  // Backends in host-interleaved order: host1-b1, host2-b1, host3-b1, host1-b2, ...
  const all: string[] = [];
  for (let m = 1; m <= sizes.backendsPerHost; m++) {
    for (let h = 1; h <= sizes.hosts; h++) all.push(backendName(h, m));
  }
  const first = all.slice(0, Math.min(4, all.length));
  // The second VIP shares the last backend of the first and takes the next two.
  const second = [first[first.length - 1], ...all.slice(first.length, first.length + 2)];
  const vips: LabVip[] = [
    {
      name: 'web',
      vip: '203.0.113.10',
      family: 4,
      protocol: 'tcp',
      port: sizes.backendPort,
      backends: first,
    },
    {
      name: 'api',
      vip: '203.0.113.20',
      family: 4,
      protocol: 'tcp',
      port: sizes.backendPort,
      backends: second,
    },
  ];
  if (sizes.ipv6) {
    vips.push({
      name: 'web6',
      vip: '2001:db8::10',
      family: 6,
      protocol: 'tcp',
      port: sizes.backendPort,
      backends: first.slice(0, 3),
    });
  }
  return vips;
}

export type LabConfigInput = Partial<LabConfig>;

/** Fills defaults and checks sizes and names; throws SLUICE_E_USAGE listing every problem. */
export function resolveLabConfig(input: LabConfigInput = {}): LabConfig {
  const base = {
    prefix: input.prefix ?? DEFAULT_PREFIX,
    gateways: input.gateways ?? 2,
    hosts: input.hosts ?? 3,
    backendsPerHost: input.backendsPerHost ?? 2,
    clients: input.clients ?? 2,
    backendPort: input.backendPort ?? 80,
    udp: input.udp ?? true,
    ipv6: input.ipv6 ?? false,
    runRoot: input.runRoot ?? DEFAULT_RUN_ROOT,
  };
  const problems: string[] = [];
  if (!/^[a-z][a-z0-9-]{0,11}$/.test(base.prefix)) {
    problems.push(`prefix ${JSON.stringify(base.prefix)} must match [a-z][a-z0-9-]{0,11}`);
  }
  const range = (name: string, v: number, lo: number, hi: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi) problems.push(`${name} must be an integer in ${lo}..${hi}`);
  };
  range('gateways', base.gateways, 1, 9); // gateways are .1-.9, hosts start at .11
  range('hosts', base.hosts, 1, 200);
  range('backendsPerHost', base.backendsPerHost, 1, 200);
  range('clients', base.clients, 1, 200);
  range('backendPort', base.backendPort, 1, 65535);
  const vips = input.vips ?? (problems.length === 0 ? defaultVips(base) : []);
  const names = new Set<string>();
  for (let h = 1; h <= base.hosts; h++) {
    for (let m = 1; m <= base.backendsPerHost; m++) names.add(backendName(h, m));
  }
  for (const v of vips) {
    for (const b of v.backends) {
      if (!names.has(b)) problems.push(`vip ${v.name}: unknown backend ${b}`);
    }
  }
  if (problems.length > 0) {
    throw new SluiceError('SLUICE_E_USAGE', `invalid lab config: ${problems.join('; ')}`);
  }
  return Object.freeze({ ...base, vips: Object.freeze(vips.map((v) => Object.freeze({ ...v }))) });
}

/** Planned (pre-start) identity of one backend. */
export interface LabBackendPlan {
  readonly name: string;
  readonly host: string;
  readonly hostIndex: number;
  readonly index: number;
  readonly netns: string;
  readonly ip: string;
  readonly ip6: string;
  readonly mac: string;
  readonly gatewayIp: string;
  readonly gatewayIp6: string;
  readonly gatewayMac: string;
  /** Name of the backend's port on the host's br-int (and of the veth end in the host namespace). */
  readonly vmPort: string;
  /** OpenFlow port number requested for the vm port (`ofport_request`). */
  readonly ofportRequest: number;
}

export interface LabNodePlan {
  readonly name: string;
  readonly role: NodeRole;
  readonly index: number;
  readonly netns: string;
  readonly tunnelIp: string;
  readonly brPhyMac: string;
  readonly eth0Mac: string;
  readonly backends: readonly LabBackendPlan[];
}

export interface LabClientPlan {
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  readonly ip6: string;
  readonly mac: string;
}

export interface LabPlan {
  readonly config: LabConfig;
  readonly runDir: string;
  readonly fabricNetns: string;
  readonly routerNetns: string;
  readonly nodes: readonly LabNodePlan[];
  readonly clients: readonly LabClientPlan[];
}

/** Requested OpenFlow port numbers (the lab also reads the real ones back from OVSDB). */
export const OFPORT_REQUEST = { eth0: 1, phyToInt: 2, intToPhy: 1, geneve: 2, vmBase: 10 } as const;

/** Every name and address of the lab, derived from its config. */
export function labPlan(cfg: LabConfig): LabPlan {
  const p = cfg.prefix;
  const nodes: LabNodePlan[] = [];
  const mk = (role: NodeRole, i: number, backends: LabBackendPlan[]): LabNodePlan => {
    const name = role === 'gateway' ? gatewayName(i) : hostName(i);
    const tunnelIp = nodeTunnelIp(role, i);
    return {
      name,
      role,
      index: i,
      netns: p + name,
      tunnelIp,
      brPhyMac: nodeBrPhyMac(tunnelIp),
      eth0Mac: nodeEth0Mac(tunnelIp),
      backends,
    };
  };
  for (let i = 1; i <= cfg.gateways; i++) nodes.push(mk('gateway', i, []));
  for (let h = 1; h <= cfg.hosts; h++) {
    const backends: LabBackendPlan[] = [];
    for (let m = 1; m <= cfg.backendsPerHost; m++) {
      const name = backendName(h, m);
      backends.push({
        name,
        host: hostName(h),
        hostIndex: h,
        index: m,
        netns: p + name,
        ip: backendIp(h, m),
        ip6: backendIp6(h, m),
        mac: backendMac(h, m),
        gatewayIp: backendGatewayIp(h),
        gatewayIp6: backendGatewayIp6(h),
        gatewayMac: backendGatewayMac(h),
        vmPort: `vm-${name}`,
        ofportRequest: OFPORT_REQUEST.vmBase + m,
      });
    }
    nodes.push(mk('host', h, backends));
  }
  const clients: LabClientPlan[] = [];
  for (let i = 1; i <= cfg.clients; i++) {
    clients.push({
      name: clientName(i),
      netns: p + clientName(i),
      ip: clientIp(i),
      ip6: clientIp6(i),
      mac: clientMac(i),
    });
  }
  return {
    config: cfg,
    runDir: `${cfg.runRoot}/${cfg.prefix}`,
    fabricNetns: `${p}fabric`,
    routerNetns: `${p}router`,
    nodes,
    clients,
  };
}

/** Every namespace name the lab with this plan creates. */
export function planNamespaces(plan: LabPlan): string[] {
  const out = [plan.fabricNetns, plan.routerNetns];
  for (const n of plan.nodes) {
    out.push(n.netns);
    for (const b of n.backends) out.push(b.netns);
  }
  for (const c of plan.clients) out.push(c.netns);
  return out;
}

/** Matches exactly the namespace names a lab with `prefix` can create (and nothing of a longer prefix). */
export function labNamespacePattern(prefix: string): RegExp {
  const esc = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${esc}(?:fabric|router|gw\\d+|host\\d+|host\\d+-b\\d+|c\\d+)$`);
}

export interface SluiceConfigOptions {
  readonly hashMode?: Config['hashMode'];
  readonly slotBits?: number;
  readonly drainWindowSeconds?: number;
}

/**
 * The lab's desired state as a config document (the file format `sluice apply -f` reads; YAML/JSON-able): its
 * nodes and one load balancer per lab VIP, every backend with the lab's backend port.
 */
export function labConfigDocument(cfg: LabConfig, opts: SluiceConfigOptions = {}): Record<string, unknown> {
  const plan = labPlan(cfg);
  const byName = new Map<string, LabBackendPlan>();
  for (const n of plan.nodes) for (const b of n.backends) byName.set(b.name, b);
  return {
    hashMode: opts.hashMode ?? 'dp_hash',
    slotBits: opts.slotBits ?? 8,
    drainWindowSeconds: opts.drainWindowSeconds ?? 30,
    nodes: plan.nodes.map((n) => ({ name: n.name, role: n.role, tunnelIp: n.tunnelIp })),
    loadBalancers: cfg.vips.map((v) => ({
      name: v.name,
      vip: v.vip,
      protocol: v.protocol,
      ports: [v.port],
      backends: v.backends.map((name) => {
        const b = byName.get(name)!;
        return {
          address: v.family === 6 ? b.ip6 : b.ip,
          port: cfg.backendPort,
          host: b.host,
          weight: 1,
          state: 'active',
        };
      }),
    })),
  };
}

/** The sluice desired state for this lab, validated and frozen by the model's parseConfig. */
export function labSluiceConfig(cfg: LabConfig, opts: SluiceConfigOptions = {}): Config {
  return parseConfig(labConfigDocument(cfg, opts), `lab ${cfg.prefix}`);
}
