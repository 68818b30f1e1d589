// The lab's sizes and address plan (docs/design/lab.md), and the sluice Config the lab's topology implies.
// Pure functions: no I/O here, so tests and the demo can compute names and addresses without root.

import { z } from 'zod';
import { type ErrorCode, type Issue, SluiceError } from '../model/errors.ts';
import { expandIPv6, ipFamily, normalizeIp } from '../model/ip.ts';
import { addressField, fail, nameField, parseConfig, portField, zodIssues } from '../model/schema.ts';
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
  /** Add the default IPv6 VIP (2001:db8::10, IPv4 underlay); no effect when `vips` is given. */
  readonly ipv6: boolean;
  /** Services; default: defaultVips(). */
  readonly vips: readonly LabVip[];
  /** Parent of the lab's run directory (`<runRoot>/<prefix>/`). */
  readonly runRoot: string;
  /** How the router learns which gateways serve the VIPs: `bgp` (BIRD on the router and every gateway, BFD; the
   *  agents announce) or `static` (a script edits the router's ECMP routes; for users without BGP).
   *  docs/design/routing.md. */
  readonly routing: LabRouting;
  /** The gateways' datapath: `ovs` (every gateway), `xdp` (every gateway runs the XDP program on its uplink, OVS
   *  behind it) or `mixed` (odd gateways OVS, even ones XDP: gw1 OVS, gw2 XDP). docs/design/xdp.md. */
  readonly gatewayDatapath: LabGatewayDatapath;
  /** UDP port of every node's sluice Geneve (`geneve0` `options:dst_port`). Default 6081, Geneve's own; an OVN
   *  chassis lab takes another (6082), since ovn-controller's tunnel ports take 6081 (docs/ovn.md "What collides"). */
  readonly genevePort: number;
}

export type LabRouting = 'bgp' | 'static';

/** Geneve's IANA UDP port: the default of `LabConfig.genevePort` (and of OVS's Geneve ports). */
export const GENEVE_PORT = 6081;
export const LAB_ROUTINGS: readonly LabRouting[] = ['bgp', 'static'];
export type LabGatewayDatapath = 'ovs' | 'xdp' | 'mixed';
export const LAB_GATEWAY_DATAPATHS: readonly LabGatewayDatapath[] = ['ovs', 'xdp', 'mixed'];

/** The datapath gateway `index` (1-based) is built with (a lab.json of an older lab has none: ovs). */
export function labGatewayDatapath(cfg: Pick<LabConfig, 'gatewayDatapath'>, index: number): 'ovs' | 'xdp' {
  const kind = cfg.gatewayDatapath ?? 'ovs';
  return kind === 'xdp' || (kind === 'mixed' && index % 2 === 0) ? 'xdp' : 'ovs';
}

export const DEFAULT_PREFIX = 'sl-';

/** The port of every lab backend's HTTP health endpoint: 8081 (8082 when the backends' own port is 8081). */
export function backendHttpPort(backendPort: number): number {
  return backendPort === 8081 ? 8082 : 8081;
}
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

// ---------------------------------------------------------------------------------------------------------------
// Checks shared by the API/flags (resolveLabConfig) and the lab config file (parseLabConfigFile). Each problem has a
// path (`gateways`, `vips[1].backends[0]`) and a code; every problem is reported at once.

/** Size fields of the lab and their ranges (gateways are underlay .1-.9; hosts start at .11). */
const SIZE_RANGES = {
  gateways: [1, 9],
  hosts: [1, 200],
  backendsPerHost: [1, 200],
  clients: [1, 200],
  backendPort: [1, 65535],
  genevePort: [1, 65535],
} as const satisfies Record<string, readonly [number, number]>;
type SizeField = keyof typeof SIZE_RANGES;

const PREFIX_RE = /^[a-z][a-z0-9-]{0,11}$/;

/** Address ranges of the fixed infrastructure plan a VIP must stay out of (the router routes them itself). */
const RESERVED_V4: readonly (readonly [string, number, string])[] = [
  [UNDERLAY_PREFIX, 3, 'the underlay 192.168.100.0/24'],
  [CLIENT_NET, 3, 'the client network 10.200.0.0/24'],
  ['10.0', 2, 'the backend networks 10.0.0.0/16'],
];
const RESERVED_V6: readonly (readonly [string, string])[] = [
  ['fd00:0000:0', 'the backend networks fd00:0:H::/48'],
  ['fd00:0100:0000:0000:', 'the IPv6 underlay fd00:100::/64'],
  ['fd00:0200:0000:0000:', 'the IPv6 client network fd00:200::/64'],
];

function reservedRange(vip: string, family: IpFamily): string | undefined {
  if (family === 4) {
    const octets = vip.split('.');
    for (const [net, n, what] of RESERVED_V4) if (octets.slice(0, n).join('.') === net) return what;
    return undefined;
  }
  const full = expandIPv6(vip);
  for (const [start, what] of RESERVED_V6) if (full.startsWith(start)) return what;
  return undefined;
}

function labIssue(path: string, message: string, code: ErrorCode = 'SLUICE_E_LAB_CONFIG'): Issue {
  return { code, path, message };
}

/**
 * The semantic checks over already-typed values: sizes and prefix in range, every VIP's name unique, its
 * address and port free (no two VIPs with the same address, protocol and port), its address outside the fixed
 * plan, its backends known and listed once. `sizesKnown` is false when hosts or backendsPerHost was unreadable
 * (then backend names cannot be checked and are not).
 */
/** A VIP whose fields may be missing: those that failed the shape check (their problems are already reported). */
type PartialVip = { readonly [K in keyof LabVip]?: LabVip[K] };

function checkLab(
  base: Omit<LabConfig, 'vips'>,
  vips: readonly (readonly [number, PartialVip])[],
  sizesKnown: boolean,
): Issue[] {
  const issues: Issue[] = [];
  if (!PREFIX_RE.test(base.prefix)) {
    issues.push(labIssue('prefix', `${JSON.stringify(base.prefix)} must match [a-z][a-z0-9-]{0,11}`));
  }
  if (!LAB_ROUTINGS.includes(base.routing))
    issues.push(
      labIssue('routing', `${JSON.stringify(base.routing)} must be one of ${LAB_ROUTINGS.join(', ')}`),
    );
  if (!LAB_GATEWAY_DATAPATHS.includes(base.gatewayDatapath))
    issues.push(
      labIssue(
        'gatewayDatapath',
        `${JSON.stringify(base.gatewayDatapath)} must be one of ${LAB_GATEWAY_DATAPATHS.join(', ')}`,
      ),
    );
  let sizesOk = sizesKnown;
  for (const [field, [lo, hi]] of Object.entries(SIZE_RANGES) as [SizeField, readonly [number, number]][]) {
    const v = base[field];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      issues.push(
        labIssue(
          field,
          `must be an integer in ${lo}..${hi} (got ${v})`,
          field === 'backendPort' || field === 'genevePort'
            ? 'SLUICE_E_CONFIG_PORT_RANGE'
            : 'SLUICE_E_LAB_CONFIG',
        ),
      );
      if (field === 'hosts' || field === 'backendsPerHost') sizesOk = false;
    }
  }
  const names = new Map<string, number>();
  const listeners = new Map<string, number>();
  for (const [i, v] of vips) {
    const at = `vips[${i}]`;
    const prevName = v.name === undefined ? undefined : names.get(v.name);
    if (v.name === undefined) {
      // unreadable: reported by the shape check
    } else if (prevName !== undefined) {
      issues.push(
        labIssue(
          `${at}.name`,
          `duplicate VIP name ${v.name} (also vips[${prevName}])`,
          'SLUICE_E_CONFIG_DUPLICATE_LB',
        ),
      );
    } else names.set(v.name, i);
    const key =
      v.vip === undefined || v.protocol === undefined || v.port === undefined
        ? undefined
        : `${normalizeIp(v.vip)}|${v.protocol}|${v.port}`;
    const prevListener = key === undefined ? undefined : listeners.get(key);
    if (key === undefined) {
      // unreadable: reported by the shape check
    } else if (prevListener !== undefined) {
      issues.push(
        labIssue(
          `${at}.vip`,
          `${v.vip} ${v.protocol}/${v.port} is already vips[${prevListener}]'s`,
          'SLUICE_E_CONFIG_DUPLICATE_LISTENER',
        ),
      );
    } else listeners.set(key, i);
    const reserved =
      v.vip === undefined || v.family === undefined ? undefined : reservedRange(v.vip, v.family);
    if (reserved !== undefined) {
      issues.push(labIssue(`${at}.vip`, `${v.vip} is inside ${reserved}, fixed by the lab's address plan`));
    }
    if (v.protocol === 'udp' && !base.udp) {
      issues.push(labIssue(`${at}.protocol`, 'a UDP VIP needs backends that answer UDP (udp: true)'));
    }
    if (v.backends?.length === 0) issues.push(labIssue(`${at}.backends`, 'a VIP needs at least one backend'));
    const seen = new Set<string>();
    (v.backends ?? []).forEach((b, j) => {
      const m = /^host(\d+)-b(\d+)$/.exec(b);
      const known =
        m !== null &&
        Number(m[1]) >= 1 &&
        Number(m[1]) <= base.hosts &&
        Number(m[2]) >= 1 &&
        Number(m[2]) <= base.backendsPerHost;
      if (seen.has(b)) {
        issues.push(
          labIssue(`${at}.backends[${j}]`, `backend ${b} listed twice`, 'SLUICE_E_CONFIG_DUPLICATE_BACKEND'),
        );
      } else if (sizesOk && (!known || backendName(Number(m![1]), Number(m![2])) !== b)) {
        issues.push(
          labIssue(
            `${at}.backends[${j}]`,
            `unknown backend ${b} (this lab has host1..host${base.hosts}, each with b1..b${base.backendsPerHost})`,
          ),
        );
      }
      seen.add(b);
    });
  }
  return issues;
}

function freezeLab(base: Omit<LabConfig, 'vips'>, vips: readonly LabVip[]): LabConfig {
  return Object.freeze({
    ...base,
    vips: Object.freeze(vips.map((v) => Object.freeze({ ...v, backends: Object.freeze([...v.backends]) }))),
  });
}

function baseOf(input: LabConfigInput): Omit<LabConfig, 'vips'> {
  return {
    prefix: input.prefix ?? DEFAULT_PREFIX,
    gateways: input.gateways ?? 2,
    hosts: input.hosts ?? 3,
    backendsPerHost: input.backendsPerHost ?? 2,
    clients: input.clients ?? 2,
    backendPort: input.backendPort ?? 80,
    udp: input.udp ?? true,
    ipv6: input.ipv6 ?? false,
    runRoot: input.runRoot ?? DEFAULT_RUN_ROOT,
    routing: input.routing ?? 'static',
    gatewayDatapath: input.gatewayDatapath ?? 'ovs',
    genevePort: input.genevePort ?? GENEVE_PORT,
  };
}

/** `  path: message [CODE]` lines under a head line. */
function issueText(head: string, issues: readonly Issue[]): string {
  const n = issues.length;
  return `${head}: ${n} problem${n === 1 ? '' : 's'}\n${issues.map((i) => `  ${i.path}: ${i.message} [${i.code}]`).join('\n')}`;
}

/** Fills defaults and checks sizes and names; throws SLUICE_E_USAGE listing every problem (error.issues). */
export function resolveLabConfig(input: LabConfigInput = {}): LabConfig {
  const base = baseOf(input);
  const vips = input.vips;
  const issues = checkLab(
    base,
    (vips ?? []).map((v, i) => [i, v] as const),
    true,
  );
  if (issues.length > 0)
    throw new SluiceError('SLUICE_E_USAGE', issueText('invalid lab config', issues), issues);
  return freezeLab(base, vips ?? defaultVips(base));
}

// ---------------------------------------------------------------------------------------------------------------
// The lab config file (`sluice lab up --config FILE`): the fields of LabConfigInput except runRoot, VIPs without
// `family` (derived from the address). Shape checks are zod; each VIP is checked on its own so one broken VIP does
// not hide the problems of the others.

export const LabVipFileSchema = z.strictObject({
  name: nameField,
  vip: addressField('a VIP'),
  /** Default tcp. */
  protocol: z.enum(['tcp', 'udp']).optional(),
  /** Default: the lab's backendPort. */
  port: portField.optional(),
  /** Backend names `hostN-bM`; the VIP's backends listen on backendPort (sluice translates the port). */
  backends: z.array(z.string()).check((ctx) => {
    if (ctx.value.length === 0) fail(ctx, 'SLUICE_E_LAB_CONFIG', 'a VIP needs at least one backend');
  }),
});

const LAB_FILE_FIELDS = {
  prefix: z.string().optional(),
  gateways: z.number().optional(),
  hosts: z.number().optional(),
  backendsPerHost: z.number().optional(),
  clients: z.number().optional(),
  backendPort: z.number().optional(),
  udp: z.boolean().optional(),
  ipv6: z.boolean().optional(),
  routing: z.enum(['bgp', 'static']).optional(),
  gatewayDatapath: z.enum(['ovs', 'xdp', 'mixed']).optional(),
  genevePort: z.number().optional(),
};

/** The top level with `vips` items left unchecked (validated one by one). */
const LabFileTopSchema = z.strictObject({ ...LAB_FILE_FIELDS, vips: z.array(z.unknown()).optional() });

/** The whole lab config file format in one schema (documentation; parseLabConfigFile is the validator). */
export const LabConfigFileSchema = z.strictObject({
  ...LAB_FILE_FIELDS,
  vips: z.array(LabVipFileSchema).optional(),
});

/** Result of validating a decoded lab config file: the LabConfig, or every problem with its path. */
export type LabFileResult =
  | { readonly ok: true; readonly config: LabConfig }
  | { readonly ok: false; readonly issues: readonly Issue[] };

/**
 * Validates a decoded lab config file (YAML/JSON already parsed) merged with `overrides` (flags the user gave
 * explicitly; they win over the file, and defaults apply when neither says). Pure.
 */
export function validateLabConfigFile(doc: unknown, overrides: LabConfigInput = {}): LabFileResult {
  const issues: Issue[] = [];
  const top = LabFileTopSchema.safeParse(doc ?? {}, { reportInput: true });
  const fileValues: Record<string, unknown> = {};
  let rawVips: unknown[] | undefined;
  let sizesKnown = true;
  if (top.success) {
    Object.assign(fileValues, top.data);
    rawVips = top.data.vips;
  } else {
    issues.push(...zodIssues(top.error, [], Object.keys(LabFileTopSchema.shape)));
    // Keep the fields that are fine, so their problems (and the VIPs') are still reported.
    if (typeof doc === 'object' && doc !== null && !Array.isArray(doc)) {
      const bad = new Set(top.error.issues.map((zi) => String(zi.path[0] ?? '')));
      for (const [k, v] of Object.entries(doc)) {
        if (k in LAB_FILE_FIELDS && !bad.has(k)) fileValues[k] = v;
        if (k === 'vips' && Array.isArray(v)) rawVips = v;
        if (bad.has(k) && (k === 'hosts' || k === 'backendsPerHost')) sizesKnown = false;
      }
    }
  }
  const { vips: _ignored, ...fileSizes } = fileValues as LabConfigInput;
  const merged: LabConfigInput = { ...fileSizes };
  for (const [k, v] of Object.entries(overrides))
    if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
  const base = baseOf(merged);
  const vips: [number, LabVip][] = [];
  const partial: [number, PartialVip][] = [];
  (rawVips ?? []).forEach((raw, i) => {
    const r = LabVipFileSchema.safeParse(raw, { reportInput: true });
    if (!r.success) {
      issues.push(...zodIssues(r.error, ['vips', i], Object.keys(LabVipFileSchema.shape)));
      // The fields that are fine still take part in the semantic checks (e.g. an unknown backend of a VIP whose
      // address is bad is reported too).
      const bad = new Set(r.error.issues.map((zi) => String(zi.path[0] ?? '')));
      const obj = (typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw : {}) as Record<
        string,
        unknown
      >;
      const ok = (k: string) => !bad.has(k) && typeof raw === 'object' && raw !== null && !Array.isArray(raw);
      const vip = ok('vip') ? (obj.vip as string) : undefined;
      partial.push([
        i,
        {
          name: ok('name') ? (obj.name as string) : undefined,
          vip: vip === undefined ? undefined : normalizeIp(vip),
          family: vip === undefined ? undefined : ipFamily(vip),
          protocol: ok('protocol') ? ((obj.protocol as Protocol | undefined) ?? 'tcp') : undefined,
          port: ok('port') ? ((obj.port as number | undefined) ?? base.backendPort) : undefined,
          backends: ok('backends') ? (obj.backends as string[]) : undefined,
        },
      ]);
      return;
    }
    const v = r.data;
    vips.push([
      i,
      {
        name: v.name,
        vip: normalizeIp(v.vip),
        family: ipFamily(v.vip)!,
        protocol: v.protocol ?? 'tcp',
        port: v.port ?? base.backendPort,
        backends: v.backends,
      },
    ]);
  });
  const all = [...vips, ...partial].sort((a, b) => a[0] - b[0]);
  issues.push(...checkLab(base, all, sizesKnown));
  if (issues.length > 0) return { ok: false, issues };
  return {
    ok: true,
    config: freezeLab(base, rawVips === undefined ? defaultVips(base) : vips.map(([, v]) => v)),
  };
}

/**
 * Validates a decoded lab config file (see validateLabConfigFile). Throws SluiceError('SLUICE_E_CONFIG_INVALID')
 * listing every problem with its path (error.issues); `source` (the file name) names it in the message.
 */
export function parseLabConfigFile(doc: unknown, source: string, overrides: LabConfigInput = {}): LabConfig {
  const r = validateLabConfigFile(doc, overrides);
  if (r.ok) return r.config;
  throw new SluiceError(
    'SLUICE_E_CONFIG_INVALID',
    issueText(`invalid lab config ${source}`, r.issues),
    r.issues,
  );
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
  /** Absent: no drain window (the default). */
  readonly drainWindowSeconds?: number;
  /** Absent: the default chain bound. */
  readonly chainLength?: number;
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
    // Labs with XDP gateways default to `fields`, the mode their survival tests run in (docs/design/xdp.md).
    hashMode: opts.hashMode ?? ((cfg.gatewayDatapath ?? 'ovs') === 'ovs' ? 'dp_hash' : 'fields'),
    slotBits: opts.slotBits ?? 8,
    ...(opts.drainWindowSeconds !== undefined ? { drainWindowSeconds: opts.drainWindowSeconds } : {}),
    ...(opts.chainLength !== undefined ? { chainLength: opts.chainLength } : {}),
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
