// The desired-state model: what an operator declares. Pure data, no I/O.
// The validated form is produced by `parseConfig` (schema.ts) and is deeply frozen.

export type HashMode = 'dp_hash' | 'fields';
export type Protocol = 'tcp' | 'udp';
export type IpFamily = 4 | 6;

/** Admin state of a backend, as the operator declares it (docs/design/overview.md "Backend states"). */
export type AdminState = 'active' | 'draining' | 'down';

export type NodeRole = 'gateway' | 'host';

export interface Node {
  readonly name: string;
  readonly role: NodeRole;
  /** Underlay address of the node's Geneve tunnel endpoint (IPv4). */
  readonly tunnelIp: string;
}

export interface Backend {
  readonly address: string;
  /** Target port; undefined means "the port the client dialled" (no port translation). */
  readonly port: number | undefined;
  /** Name of the host node this backend runs on. */
  readonly host: string;
  readonly weight: number;
  readonly state: AdminState;
  /** The backend's own MAC, lowercase: its OVN logical port's, written by `sluice ovn sync` (docs/ovn.md).
   *  Undefined: none given. */
  readonly mac?: string;
}

export interface LoadBalancer {
  readonly name: string;
  readonly vip: string;
  readonly family: IpFamily;
  readonly protocol: Protocol;
  readonly ports: readonly number[];
  readonly backends: readonly Backend[];
  /** How hosts probe this load balancer's backends; undefined: the default for its protocol (healthCheckOf). */
  readonly healthCheck?: HealthCheck;
}

export type HealthCheckType = 'tcp' | 'udp' | 'http' | 'https';
/** UDP: healthy when the backend answers (`reply`), or when no ICMP port-unreachable came back (`no-icmp`). */
export type UdpExpect = 'reply' | 'no-icmp';

/** A load balancer's health check (docs/config.md, "Health checks"). Unset fields take the host agent's defaults. */
export interface HealthCheck {
  readonly type: HealthCheckType;
  /** Port to probe; undefined: the backend's port (the LB's first port for a backend without one). */
  readonly port?: number;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
  /** Consecutive successes to turn up. */
  readonly rise?: number;
  /** Consecutive failures to turn down. */
  readonly fall?: number;
  /** UDP: the datagram sent (text). Default empty. */
  readonly send?: string;
  /** UDP: what counts as healthy. Default `no-icmp`. */
  readonly expect?: UdpExpect;
  /** HTTP(S): the path of the GET. Default `/`. */
  readonly path?: string;
  /** HTTP(S): the status that counts as healthy. Default 200. */
  readonly status?: number;
}

/** The health check hosts run for `lb`: its own, or by protocol: TCP connect for TCP, UDP `no-icmp` for UDP (a
 *  UDP load balancer is never probed with TCP unless its config says so). */
export function healthCheckOf(lb: Pick<LoadBalancer, 'protocol' | 'healthCheck'>): HealthCheck {
  return lb.healthCheck ?? (lb.protocol === 'udp' ? { type: 'udp', expect: 'no-icmp' } : { type: 'tcp' });
}

/** What a check probes, in a few words for status output: `tcp`, `udp no-icmp`, `udp:5353 reply`,
 *  `http :8081/health 200` (a port only when the check names its own). */
export function healthCheckText(c: HealthCheck): string {
  const port = c.port === undefined ? '' : `:${c.port}`;
  switch (c.type) {
    case 'udp':
      return `udp${port} ${c.expect ?? 'no-icmp'}`;
    case 'http':
    case 'https':
      return `${c.type} ${port}${c.path ?? '/'} ${c.status ?? 200}`;
    default:
      return `tcp${port}`;
  }
}

export interface Config {
  readonly hashMode: HashMode;
  /** k: every load balancer has 2^k slots. */
  readonly slotBits: number;
  /**
   * The operator's deadline, optional: a slot whose chain of previous owners is full may drop one that still holds
   * connections once the slot's last move is this old (the connections dropped are counted and reported).
   * Undefined: no deadline, previous owners are kept for as long as their connections last.
   */
  readonly drainWindowSeconds?: number;
  /**
   * L: previous owners (chain members) a slot may keep; a slot whose chain is full waits to move. A validated
   * config always has it; undefined (hand-built configs) means the default, DEFAULT_CHAIN_LENGTH.
   */
  readonly chainLength?: number;
  readonly nodes: readonly Node[];
  readonly loadBalancers: readonly LoadBalancer[];
}

/** The default chain bound L (docs/design/rollout.md, "The chain bound"). */
export const DEFAULT_CHAIN_LENGTH = 4;

/** Stable identity of a backend inside one load balancer: `address:port` (`[v6]:port`, `*` = dialled port). */
export function backendKey(b: Pick<Backend, 'address' | 'port'>): string {
  const port = b.port === undefined ? '*' : String(b.port);
  return b.address.includes(':') ? `[${b.address}]:${port}` : `${b.address}:${port}`;
}
