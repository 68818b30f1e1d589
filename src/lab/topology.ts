// Builds and tears down the lab (docs/design/lab.md): a fabric namespace with the underlay bridge, an ECMP router
// with clients behind it, gateway and host nodes each running its own ovsdb-server + ovs-vswitchd (userspace
// datapath), and backend namespaces running backend-server. Everything it starts is recorded in pid files under
// its run directory, and every namespace carries the lab's prefix, so labDown can clean up after a crash.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { NodeFacts } from '../compile/facts.ts';
import { SluiceError } from '../model/errors.ts';
import type { Config } from '../model/types.ts';
import type { Progress } from '../progress.ts';
import { VIP_PROTOCOLS } from '../routing/bird.ts';
import {
  backendHttpPort,
  DEFAULT_RUN_ROOT,
  GENEVE_PORT,
  type LabClientPlan,
  type LabConfig,
  type LabConfigInput,
  type LabNodePlan,
  type LabPlan,
  type LabVip,
  labGatewayDatapath,
  labNamespacePattern,
  labPlan,
  labSluiceConfig,
  OFPORT_REQUEST,
  planNamespaces,
  ROUTER_CLIENT_IP,
  ROUTER_CLIENT_IP6,
  ROUTER_CLIENT_MAC,
  ROUTER_UNDERLAY_IP,
  ROUTER_UNDERLAY_IP6,
  ROUTER_UNDERLAY_MAC,
  resolveLabConfig,
  type SluiceConfigOptions,
  UNDERLAY_MTU,
  underlayIp6,
} from './config.ts';
import {
  killPidFile,
  type LabIdentity,
  netnsInode,
  nsRun,
  nsScript,
  pidAlive,
  pidExited,
  processCmdline,
  processStart,
  readPidFile,
  run,
  shQuote,
  startInNetns,
} from './exec.ts';
import {
  LAB_TLV_MAP,
  type LabBackendFacts,
  LabNode,
  type LabNodeFacts,
  type LabNodePorts,
  ovsEnv,
  vswitchdStartCommands,
} from './node.ts';
import { type GatewayRouting, labBirdc, routerView, startLabRouting } from './routing.ts';
import { runnableScript } from './scripts.ts';
import { datapathIdArgs, formatDatapath, labDatapathStatus, prepareLabXdp } from './xdp.ts';

export interface LabRouterFacts {
  readonly netns: string;
  readonly underlayIp: string;
  readonly underlayMac: string;
  readonly clientIp: string;
  readonly clientIp6: string;
  readonly clientMac: string;
}

/** Everything about a running lab; stored as `<runDir>/lab.json` so other processes can attach. */
export interface LabFacts {
  readonly version: 1;
  readonly state: 'starting' | 'up';
  readonly prefix: string;
  readonly runDir: string;
  readonly config: LabConfig;
  readonly fabricNetns: string;
  readonly router: LabRouterFacts;
  readonly nodes: readonly LabNodeFacts[];
  readonly clients: readonly LabClientPlan[];
  readonly createdAt: string;
  /** Wall-clock time labUp took, in milliseconds. */
  readonly upMs: number;
  /** The process that built the lab (pid and start time, processStart); absent in labs built before it was kept. */
  readonly builtBy?: { readonly pid: number; readonly start: number };
}

/**
 * The pid of the live process (not this one) that built the lab, if any: a test or a demo still using it. Another
 * process's `labUp --replace` then refuses instead of tearing down a lab in use (two runs of one test file at once
 * would otherwise take each other's namespaces and leave processes behind). `startOf` is processStart.
 */
export function labInUseBy(
  builtBy: LabFacts['builtBy'],
  self: number,
  startOf: (pid: number) => number | undefined,
): number | undefined {
  if (builtBy === undefined || builtBy.pid === self) return undefined;
  return startOf(builtBy.pid) === builtBy.start ? builtBy.pid : undefined;
}

function readLabFacts(runDir: string): LabFacts | undefined {
  try {
    return JSON.parse(readFileSync(labJsonPath(runDir), 'utf8')) as LabFacts;
  } catch {
    return undefined;
  }
}

export interface LabUpOptions {
  /** Tear down an existing lab with the same prefix first (otherwise labUp refuses: SLUICE_E_LAB_EXISTS). */
  readonly replace?: boolean;
  /** Probe every backend through its host's br-int after start (default true). */
  readonly probe?: boolean;
  /** Progress messages. */
  readonly log?: (msg: string) => void;
  /** Progress on a terminal (src/progress.ts): 5 steps. */
  readonly progress?: Progress;
}

/** The lab's facts file; it exists from the start of labUp until labDown removes the run directory. */
export function labJsonPath(runDir: string): string {
  return `${runDir}/lab.json`;
}

function requireRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new SluiceError('SLUICE_E_LAB_NOT_ROOT', 'the lab needs root (network namespaces, Open vSwitch)');
  }
}

/** Runs scripts/ensure-deps.sh (installs missing Debian packages), or checks the tools when it is not shipped. */
export async function ensureDeps(): Promise<void> {
  const candidates = ['../../scripts/ensure-deps.sh', '../../../scripts/ensure-deps.sh'].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  );
  const script = candidates.find((p) => existsSync(p));
  if (script) {
    await run('bash', [script], { timeoutMs: 600_000 });
    return;
  }
  const missing: string[] = [];
  for (const tool of ['ovs-vswitchd', 'ovsdb-server', 'ovs-vsctl', 'ip', 'ethtool', 'socat']) {
    const r = await run('sh', ['-c', `command -v ${tool}`], { allowFail: true });
    if (r.code !== 0) missing.push(tool);
  }
  if (missing.length > 0) {
    throw new SluiceError(
      'SLUICE_E_LAB_COMMAND',
      `missing tools: ${missing.join(', ')} (run scripts/ensure-deps.sh)`,
    );
  }
}

/** Names of existing network namespaces. */
export async function listNamespaces(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n !== undefined && n !== '');
}

// ---------------------------------------------------------------------------------------------------------------
// Scripts per namespace

function nodeScript(plan: LabPlan, node: LabNodePlan, ovsDir: string): string[] {
  const q = shQuote;
  const others = plan.nodes.filter((n) => n.name !== node.name);
  const cmds: string[] = [
    'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1',
    'ip link set lo up',
    `ip link set eth0 address ${node.eth0Mac} mtu ${UNDERLAY_MTU} arp off`,
    'ip link set eth0 up',
    'ethtool -K eth0 tx off >/dev/null',
  ];
  for (const b of node.backends) {
    cmds.push(`ip link set ${b.vmPort} mtu 1500 up`, `ethtool -K ${b.vmPort} tx off >/dev/null`);
  }
  const vsctl = [
    ...ovsIdentityArgs(plan, node),
    ...bridgeArgs(node, plan.config.genevePort ?? GENEVE_PORT),
    ...node.backends.flatMap((b) => backendPortArgs(b)),
  ];
  cmds.push(
    `ovsdb-tool create ${q(`${ovsDir}/conf.db`)} /usr/share/openvswitch/vswitch.ovsschema`,
    `ovsdb-server ${q(`${ovsDir}/conf.db`)} --remote=punix:${q(`${ovsDir}/db.sock`)} --pidfile --detach --no-chdir --log-file`,
    `ovs-vsctl ${vsctl.map(q).join(' ')}`,
    ...vswitchdStartCommands(ovsDir),
    `ip addr add ${node.tunnelIp}/24 dev br-phy`,
    'ip link set br-phy up',
    `ip neigh replace ${ROUTER_UNDERLAY_IP} lladdr ${ROUTER_UNDERLAY_MAC} dev br-phy nud permanent`,
    `ovs-appctl tnl/arp/set br-phy ${ROUTER_UNDERLAY_IP} ${ROUTER_UNDERLAY_MAC}`,
  );
  for (const o of others) {
    cmds.push(
      `ip neigh replace ${o.tunnelIp} lladdr ${o.brPhyMac} dev br-phy nud permanent`,
      `ovs-appctl tnl/arp/set br-phy ${o.tunnelIp} ${o.brPhyMac} >/dev/null`,
    );
  }
  cmds.push(`ovs-ofctl -O OpenFlow15 add-tlv-map br-int ${q(LAB_TLV_MAP)}`);
  return cmds;
}

/** `ovs-vsctl` arguments: init, and the node's identity in Open_vSwitch external_ids (the agent reads them). */
function ovsIdentityArgs(plan: LabPlan, node: LabNodePlan): string[] {
  return [
    '--no-wait',
    '--',
    'init',
    '--',
    'set',
    'Open_vSwitch',
    '.',
    'other_config:n-handler-threads=1',
    'other_config:n-revalidator-threads=1',
    `external_ids:sluice-lab=${plan.config.prefix}`,
    `external_ids:system-id=${node.name}`,
    // The agent's node facts (src/agent/facts.ts; docs/design/control-plane.md "Node facts from the local OVSDB").
    `external_ids:sluice-node=${node.name}`,
    `external_ids:sluice-role=${node.role}`,
    `external_ids:sluice-tunnel-ip=${node.tunnelIp}`,
    `external_ids:sluice-router-ip=${ROUTER_UNDERLAY_IP}`,
    `external_ids:sluice-router-mac="${ROUTER_UNDERLAY_MAC}"`,
    ...(node.backends.length > 0
      ? [`external_ids:sluice-vm-router-mac="${node.backends[0].gatewayMac}"`]
      : []),
    ...(node.role === 'gateway' ? datapathIdArgs(node, labGatewayDatapath(plan.config, node.index)) : []),
  ];
}

/** `ovs-vsctl` arguments: br-phy (underlay NIC, LOCAL tunnel endpoint) and br-int (patch to br-phy, Geneve). */
function bridgeArgs(node: LabNodePlan, genevePort: number): string[] {
  return [
    '--',
    'add-br',
    'br-phy',
    '--',
    'set',
    'Bridge',
    'br-phy',
    'datapath_type=netdev',
    `other_config:hwaddr="${node.brPhyMac}"`,
    'protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15',
    '--',
    'set',
    'Interface',
    'br-phy',
    `mtu_request=${UNDERLAY_MTU}`,
    '--',
    'add-port',
    'br-phy',
    'eth0',
    '--',
    'set',
    'Interface',
    'eth0',
    `ofport_request=${OFPORT_REQUEST.eth0}`,
    '--',
    'add-port',
    'br-phy',
    'phy-to-int',
    '--',
    'set',
    'Interface',
    'phy-to-int',
    'type=patch',
    'options:peer=int-to-phy',
    `ofport_request=${OFPORT_REQUEST.phyToInt}`,
    '--',
    'add-br',
    'br-int',
    '--',
    'set',
    'Bridge',
    'br-int',
    'datapath_type=netdev',
    'protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15',
    ...(node.backends.length > 0 ? [`other_config:hwaddr="${node.backends[0].gatewayMac}"`] : []),
    '--',
    'add-port',
    'br-int',
    'int-to-phy',
    '--',
    'set',
    'Interface',
    'int-to-phy',
    'type=patch',
    'options:peer=phy-to-int',
    `ofport_request=${OFPORT_REQUEST.intToPhy}`,
    '--',
    'add-port',
    'br-int',
    'geneve0',
    '--',
    'set',
    'Interface',
    'geneve0',
    'type=geneve',
    'options:remote_ip=flow',
    'options:key=flow',
    'options:csum=false',
    ...(genevePort === GENEVE_PORT ? [] : [`options:dst_port=${genevePort}`]),
    `ofport_request=${OFPORT_REQUEST.geneve}`,
  ];
}

/** `ovs-vsctl` arguments: a backend's port on br-int, with what the agent needs to know about it. */
function backendPortArgs(b: LabNodePlan['backends'][number]): string[] {
  return [
    '--',
    'add-port',
    'br-int',
    b.vmPort,
    '--',
    'set',
    'Interface',
    b.vmPort,
    `ofport_request=${b.ofportRequest}`,
    `external_ids:sluice-backend-ips="${b.ip},${b.ip6}"`,
    `external_ids:attached-mac="${b.mac}"`,
    `external_ids:sluice-probe-netns=${b.netns}`,
  ];
}

function fabricScript(plan: LabPlan): string[] {
  const ports = [...plan.nodes.map((n) => n.name), 'router'];
  const cmds = [
    'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1',
    'ip link set lo up',
    'ip link add br0 type bridge forward_delay 0 stp_state 0 mcast_snooping 0',
  ];
  for (const p of ports) {
    cmds.push(`ip link set ${p} mtu ${UNDERLAY_MTU} master br0 up`, `ethtool -K ${p} tx off >/dev/null`);
  }
  cmds.push(`ip link set br0 mtu ${UNDERLAY_MTU} up`);
  return cmds;
}

function routeCommand(vip: LabVip, gatewayIps: readonly string[]): string {
  const fam = vip.family === 6 ? '-6 ' : '';
  const dst = `${vip.vip}/${vip.family === 6 ? 128 : 32}`;
  if (gatewayIps.length === 0) return `ip ${fam}route replace unreachable ${dst}`;
  const hops = gatewayIps.map((ip) => `nexthop via ${vip.family === 6 ? underlayIp6(ip) : ip} dev eth0`);
  return `ip ${fam}route replace ${dst} ${hops.join(' ')}`;
}

function routerScript(plan: LabPlan): string[] {
  const cmds = [
    'sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0' +
      ' net.ipv4.fib_multipath_hash_policy=1 net.ipv6.conf.all.forwarding=1 net.ipv6.fib_multipath_hash_policy=1' +
      ' net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0',
    'ip link set lo up',
    `ip link set eth0 address ${ROUTER_UNDERLAY_MAC} mtu ${UNDERLAY_MTU} up`,
    'sysctl -qw net.ipv4.conf.eth0.rp_filter=0',
    'ethtool -K eth0 tx off >/dev/null',
    `ip addr add ${ROUTER_UNDERLAY_IP}/24 dev eth0`,
    `ip -6 addr add ${ROUTER_UNDERLAY_IP6}/64 dev eth0 nodad`,
    'ip link add brc type bridge forward_delay 0 stp_state 0',
    `ip link set brc address ${ROUTER_CLIENT_MAC} up`,
    'sysctl -qw net.ipv4.conf.brc.rp_filter=0',
    `ip addr add ${ROUTER_CLIENT_IP}/24 dev brc`,
    `ip -6 addr add ${ROUTER_CLIENT_IP6}/64 dev brc nodad`,
  ];
  for (const c of plan.clients) {
    cmds.push(`ip link set ${c.name} master brc up`, `ethtool -K ${c.name} tx off >/dev/null`);
  }
  for (const n of plan.nodes) {
    cmds.push(`ip neigh replace ${n.tunnelIp} lladdr ${n.brPhyMac} dev eth0 nud permanent`);
    if (n.role === 'gateway') {
      cmds.push(`ip -6 neigh replace ${underlayIp6(n.tunnelIp)} lladdr ${n.brPhyMac} dev eth0 nud permanent`);
    }
  }
  // With BGP, the router's BIRD installs the VIP routes once gateways announce them.
  if (plan.config.routing === 'static') {
    const gws = plan.nodes.filter((n) => n.role === 'gateway').map((n) => n.tunnelIp);
    for (const v of plan.config.vips) cmds.push(routeCommand(v, gws));
  }
  return cmds;
}

function clientScript(c: LabClientPlan): string[] {
  return [
    // Pin each socket's flow hash (Linux >= 6.0): the veth carries it into the router namespace, whose L4 ECMP
    // hash uses it, and with rehash on a connection black-holed by a gateway hops to another one after a
    // retransmission timeout. A real router hashes the headers; pinned, survival tests cannot pass by hopping
    // (measured: a gateway killed without ECMP withdraw broke 7-15 of 200 connections with rehash, 84-105 without).
    'sysctl -qw net.core.txrehash=0 2>/dev/null || true',
    'sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.eth0.accept_dad=0',
    'ip link set lo up',
    `ip link set eth0 address ${c.mac} up`,
    'ethtool -K eth0 tx off >/dev/null',
    `ip addr add ${c.ip}/24 dev eth0`,
    `ip -6 addr add ${c.ip6}/64 dev eth0 nodad`,
    `ip neigh replace ${ROUTER_CLIENT_IP} lladdr ${ROUTER_CLIENT_MAC} dev eth0 nud permanent`,
    `ip -6 neigh replace ${ROUTER_CLIENT_IP6} lladdr ${ROUTER_CLIENT_MAC} dev eth0 nud permanent`,
    `ip route add default via ${ROUTER_CLIENT_IP}`,
    `ip -6 route add default via ${ROUTER_CLIENT_IP6}`,
  ];
}

function backendScript(b: LabNodePlan['backends'][number]): string[] {
  return [
    'sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.eth0.accept_dad=0',
    'ip link set lo up',
    `ip link set eth0 address ${b.mac} mtu 1500 up`,
    'ethtool -K eth0 tx off >/dev/null',
    `ip addr add ${b.ip}/24 dev eth0`,
    `ip -6 addr add ${b.ip6}/64 dev eth0 nodad`,
    `ip neigh replace ${b.gatewayIp} lladdr ${b.gatewayMac} dev eth0 nud permanent`,
    `ip -6 neigh replace ${b.gatewayIp6} lladdr ${b.gatewayMac} dev eth0 nud permanent`,
    `ip route add default via ${b.gatewayIp}`,
    `ip -6 route add default via ${b.gatewayIp6}`,
  ];
}

/** `ip -batch` lines creating every namespace and veth pair (each end created directly in its namespace). */
function linkBatch(plan: LabPlan): string {
  const lines = planNamespaces(plan).map((ns) => `netns add ${ns}`);
  for (const n of plan.nodes) {
    lines.push(`link add eth0 netns ${n.netns} type veth peer name ${n.name} netns ${plan.fabricNetns}`);
    for (const b of n.backends) {
      lines.push(`link add eth0 netns ${b.netns} type veth peer name ${b.vmPort} netns ${n.netns}`);
    }
  }
  lines.push(`link add eth0 netns ${plan.routerNetns} type veth peer name router netns ${plan.fabricNetns}`);
  for (const c of plan.clients) {
    lines.push(`link add eth0 netns ${c.netns} type veth peer name ${c.name} netns ${plan.routerNetns}`);
  }
  return `${lines.join('\n')}\n`;
}

async function readPorts(node: LabNodePlan, ovsDir: string): Promise<LabNodePorts> {
  const r = await run(
    'ovs-vsctl',
    ['--timeout=10', '-f', 'csv', '--no-headings', '--columns=name,ofport', 'list', 'Interface'],
    {
      env: ovsEnv(ovsDir),
    },
  );
  const byName = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    const [name, ofport] = line.split(',').map((s) => s.trim().replace(/^"|"$/g, ''));
    if (name && ofport) byName.set(name, Number(ofport));
  }
  const get = (name: string): number => {
    const v = byName.get(name);
    if (v === undefined || !Number.isInteger(v) || v <= 0) {
      throw new SluiceError(
        'SLUICE_E_LAB_COMMAND',
        `node ${node.name}: interface ${name} has no OpenFlow port (${v})`,
      );
    }
    return v;
  };
  const vms: Record<string, number> = {};
  for (const b of node.backends) vms[b.name] = get(b.vmPort);
  return {
    eth0: get('eth0'),
    phyToInt: get('phy-to-int'),
    intToPhy: get('int-to-phy'),
    geneve: get('geneve0'),
    vms,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The Lab handle

export interface BackendProbe {
  readonly backend: string;
  readonly tcpGreeting: string;
  readonly udpReply: string | undefined;
  readonly ok: boolean;
}

export interface PingResult {
  readonly from: string;
  readonly to: string;
  readonly ok: boolean;
}

export class Lab {
  readonly facts: LabFacts;
  readonly nodes: readonly LabNode[];

  constructor(facts: LabFacts) {
    this.facts = facts;
    this.nodes = facts.nodes.map((n) => new LabNode(n));
  }

  get prefix(): string {
    return this.facts.prefix;
  }
  get config(): LabConfig {
    return this.facts.config;
  }
  get gateways(): LabNode[] {
    return this.nodes.filter((n) => n.role === 'gateway');
  }
  get hosts(): LabNode[] {
    return this.nodes.filter((n) => n.role === 'host');
  }
  get clients(): readonly LabClientPlan[] {
    return this.facts.clients;
  }

  node(name: string): LabNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new SluiceError('SLUICE_E_USAGE', `no lab node named ${name}`);
    return n;
  }

  backends(): LabBackendFacts[] {
    return this.hosts.flatMap((h) => h.backends);
  }

  backend(name: string): LabBackendFacts {
    const b = this.backends().find((x) => x.name === name);
    if (!b) throw new SluiceError('SLUICE_E_USAGE', `no lab backend named ${name}`);
    return b;
  }

  /** The sluice desired state for this lab (nodes + one load balancer per VIP). */
  sluiceConfig(opts: SluiceConfigOptions = {}): Config {
    return labSluiceConfig(this.config, opts);
  }

  /** The compiler's NodeFacts (src/compile/facts.ts) for one node. */
  compilerFacts(name: string): NodeFacts {
    const n = this.node(name);
    const vms: Record<string, { ofport: number; mac: string }> = {};
    for (const b of n.backends) {
      vms[b.ip] = { ofport: b.ofport, mac: b.mac };
      vms[b.ip6] = { ofport: b.ofport, mac: b.mac };
    }
    return {
      name: n.name,
      role: n.role,
      tunnelIp: n.tunnelIp,
      bridges: { int: 'br-int', phy: 'br-phy' },
      phyMac: n.brPhyMac,
      ports: {
        eth0: n.ports.eth0,
        phyToInt: n.ports.phyToInt,
        intToPhy: n.ports.intToPhy,
        geneve: n.ports.geneve,
      },
      vms,
      vmRouterMac: n.backends[0]?.gatewayMac ?? '00:00:00:00:00:00',
      router: { ip: this.facts.router.underlayIp, mac: this.facts.router.underlayMac },
    };
  }

  /** Pid of a backend's server, if it runs. */
  backendPid(name: string): number | undefined {
    this.backend(name);
    const pid = readPidFile(`${this.facts.runDir}/pids/backend-${name}.pid`);
    return pid !== undefined && pidAlive(pid, 'backend-server') ? pid : undefined;
  }

  /**
   * Stops a backend's server (by its pid file). SIGKILL: the kernel resets its connections (a crashed
   * application); the backend's namespace and veth stay. Returns the pid stopped.
   */
  async stopBackend(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<number | undefined> {
    this.backend(name);
    return killPidFile(`${this.facts.runDir}/pids/backend-${name}.pid`, 'backend-server', {
      signal,
      keepPidFile: true,
    });
  }

  /**
   * Makes a backend's server refuse new TCP connections (`refuse`: its listening socket closed, so SYNs are reset
   * and health probes fail) or accept them again, while its established connections keep working: a health-check
   * flap without a dead backend. Signals the server by its pid file (SIGUSR1 / SIGHUP).
   */
  async refuseNewConnections(name: string, refuse: boolean): Promise<void> {
    const pid = this.backendPid(name);
    if (pid === undefined) throw new Error(`backend ${name} does not run`);
    process.kill(pid, refuse ? 'SIGUSR1' : 'SIGHUP');
    await sleep(300);
  }

  /** Starts a backend's server again (after stopBackend); resolves when it listens. Returns its pid. */
  async startBackend(name: string): Promise<number> {
    const b = this.backend(name);
    if (this.backendPid(name) !== undefined) await this.stopBackend(name, 'SIGTERM');
    const js = await runnableScript('backend-server', this.config.runRoot);
    const pid = startBackend(this.facts.runDir, this.config, b, js);
    await waitForBackends(this.facts.runDir, this.config, [name]);
    return pid;
  }

  /** Runs a command in the router namespace. */
  routerExec(cmd: string, args: readonly string[]): ReturnType<typeof nsRun> {
    return nsRun(this.facts.router.netns, cmd, args);
  }

  /** How the router learns the gateways (lab.json of an older lab has no `routing`: static). */
  get routing(): 'bgp' | 'static' {
    return this.config.routing ?? 'static';
  }

  /**
   * Sets the router's ECMP next hops for every VIP to exactly these gateways (by name; [] = unreachable). With BGP,
   * as the agents would: enables the chosen gateways' VIP routes in their BIRD, disables the others', and waits until
   * the router's kernel routes say so.
   */
  async setEcmpGateways(names: readonly string[]): Promise<void> {
    const ips = names.map((n) => {
      const node = this.node(n);
      if (node.role !== 'gateway') throw new SluiceError('SLUICE_E_USAGE', `${n} is not a gateway`);
      return node.tunnelIp;
    });
    if (this.routing === 'static') {
      await nsScript(
        this.facts.router.netns,
        this.config.vips.map((v) => routeCommand(v, ips)),
      );
      return;
    }
    for (const g of this.gateways)
      for (const p of Object.values(VIP_PROTOCOLS))
        await labBirdc(this.facts.runDir, g.name, [names.includes(g.name) ? 'enable' : 'disable', p]);
    const want = [...names].sort().join(',');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const now = await this.ecmpGateways();
      if (Object.values(now).every((gws) => gws.join(',') === want)) return;
      if (Date.now() > deadline)
        throw new SluiceError(
          'SLUICE_E_LAB_COMMAND',
          `the router's ECMP set is ${JSON.stringify(now)}, not ${want || 'empty'}, 10 s after BGP changes`,
        );
      await sleep(20);
    }
  }

  /** The router's BGP and BFD session with every gateway ({} with static routing). */
  async routingView(): Promise<Record<string, GatewayRouting>> {
    return this.routing === 'bgp' ? routerView(this.facts.runDir, this.gateways) : {};
  }

  /** The gateways currently in the router's ECMP set, per VIP. */
  async ecmpGateways(): Promise<Record<string, string[]>> {
    return readEcmp(this.facts);
  }

  /**
   * Connects to every backend from its host namespace through br-int (a temporary address on br-int's LOCAL port,
   * removed afterwards) and returns the greeting. Only meaningful while br-int still forwards NORMAL (before
   * sluice's flows are installed). One try each: waitBackendsAnswer retries.
   */
  async probeBackends(): Promise<BackendProbe[]> {
    const out: BackendProbe[] = [];
    await Promise.all(
      this.hosts.map((h) =>
        this.#onBrInt(h, async () => {
          out.push(...(await Promise.all(h.backends.map((b) => this.#probe(h, b)))));
        }),
      ),
    );
    return out.sort((a, b) => a.backend.localeCompare(b.backend));
  }

  /**
   * Until every backend answers through its host's br-int (probeBackends' checks), probing again only those that
   * have not (on a loaded machine a first reply can come after a probe's 3 s). After `timeoutMs`, throws
   * naming per backend what did not answer and what of its path was not ready: br-int's neighbour entry for it (an
   * ARP that got no reply), its OVS port's link, its server, and flows on br-int other than the lab's NORMAL (the
   * switch programmed by something, e.g. an agent that outlived an earlier lab of this prefix).
   */
  async waitBackendsAnswer(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const problems: string[] = [];
    await Promise.all(
      this.hosts.map((h) =>
        this.#onBrInt(h, async () => {
          let pending: BackendProbe[] = [];
          let todo = h.backends;
          for (;;) {
            pending = (await Promise.all(todo.map((b) => this.#probe(h, b)))).filter((p) => !p.ok);
            if (pending.length === 0) return;
            if (Date.now() > deadline) break;
            todo = h.backends.filter((b) => pending.some((p) => p.backend === b.name));
            await sleep(200);
          }
          problems.push(...(await this.#probeProblems(h, pending)));
        }),
      ),
    );
    if (problems.length > 0)
      throw new SluiceError(
        'SLUICE_E_LAB_COMMAND',
        `backends did not answer through br-int within ${timeoutMs} ms: ${problems.sort().join('; ')}`,
      );
  }

  /** Runs `fn` with the first backend's gateway address on `h`'s br-int (its LOCAL port), then takes it away. */
  async #onBrInt(h: LabNode, fn: () => Promise<void>): Promise<void> {
    if (h.backends.length === 0) return;
    const gw = h.backends[0].gatewayIp;
    await nsScript(h.netns, [`ip addr replace ${gw}/24 dev br-int`, 'ip link set br-int up']);
    try {
      await fn();
    } finally {
      await nsScript(h.netns, [`ip addr del ${gw}/24 dev br-int`, 'ip link set br-int down']);
    }
  }

  /** One TCP greeting and (udp) one UDP reply from backend `b`, from `h`'s namespace. */
  async #probe(h: LabNode, b: LabBackendFacts): Promise<BackendProbe> {
    const port = this.config.backendPort;
    const tcp = await nsRun(
      h.netns,
      'timeout',
      ['3', 'bash', '-c', `exec 3<>/dev/tcp/${b.ip}/${port} && head -n1 <&3`],
      { allowFail: true },
    );
    let udp: string | undefined;
    if (this.config.udp) {
      // bash's /dev/udp socket is connected: one read gets the reply (or the port's ICMP error) as soon as it comes.
      const u = await nsRun(
        h.netns,
        'timeout',
        [
          '3',
          'bash',
          '-c',
          `exec 3<>/dev/udp/${b.ip}/${port} && printf probe >&3 && dd bs=512 count=1 status=none <&3`,
        ],
        { allowFail: true },
      );
      udp = u.stdout.trim();
    }
    const tcpGreeting = tcp.stdout.trim();
    return {
      backend: b.name,
      tcpGreeting,
      udpReply: udp,
      ok: tcpGreeting === b.name && (udp === undefined || udp === b.name),
    };
  }

  /** What each failed probe got, and the state of its path (read while br-int still has its address). */
  async #probeProblems(h: LabNode, failed: readonly BackendProbe[]): Promise<string[]> {
    const flows = (await h.ofctl('br-int', ['dump-flows'], { allowFail: true })).stdout
      .split('\n')
      .filter((l) => l.includes('actions='));
    const foreign = flows.filter((l) => !/^\s*cookie=0x0,.* priority=0 actions=NORMAL$/.test(l)).length;
    // Who may have: processes (other than its own OVS daemons) whose command line names this node's OVS directory.
    const programmers =
      foreign === 0
        ? ''
        : processesNaming(`${h.ovsDir}`)
            .filter((x) => !/ovs-vswitchd|ovsdb-server/.test(x.cmdline))
            .map((x) => `pid ${x.pid} (${x.cmdline.slice(0, 120)})`)
            .join(', ') || 'no process naming its OVS directory';
    return Promise.all(
      failed.map(async (p) => {
        const b = this.backend(p.backend);
        const neigh = (
          await nsRun(h.netns, 'ip', ['neigh', 'show', b.ip, 'dev', 'br-int'], { allowFail: true })
        ).stdout
          .trim()
          .replace(`${b.ip} `, '');
        const link = (
          await h.vsctl(['get', 'Interface', b.vmPort, 'link_state'], { allowFail: true })
        ).stdout.trim();
        return (
          `${p.backend} (tcp ${JSON.stringify(p.tcpGreeting)}, udp ${JSON.stringify(p.udpReply)}; ` +
          `br-int neighbour ${b.ip}: ${neigh || 'none'}; port ${b.vmPort} link ${link || '?'}; ` +
          `server ${this.backendPid(b.name) === undefined ? 'not running' : 'running'}; ` +
          `br-int flows ${flows.length}${foreign > 0 ? `, ${foreign} not the lab's NORMAL; programmed by ${programmers}` : ''})`
        );
      }),
    );
  }

  /** Pings every node's tunnel IP from every node namespace and from the router (one packet each). */
  async checkUnderlay(): Promise<PingResult[]> {
    const targets = this.nodes.map((n) => ({ name: n.name, ip: n.tunnelIp }));
    const sources = [
      ...this.nodes.map((n) => ({ name: n.name, ns: n.netns })),
      { name: 'router', ns: this.facts.router.netns },
    ];
    const results: PingResult[] = [];
    await Promise.all(
      sources.map(async (s) => {
        const ts = targets.filter((t) => t.name !== s.name);
        const script = ts.map(
          (t) => `ping -c1 -W2 -q ${t.ip} >/dev/null 2>&1 && echo ok ${t.name} || echo fail ${t.name}`,
        );
        const r = await run('ip', ['netns', 'exec', s.ns, 'sh', '-c', script.join('\n')], {
          timeoutMs: 30_000,
        });
        for (const line of r.stdout.trim().split('\n')) {
          const [st, to] = line.split(' ');
          results.push({ from: s.name, to, ok: st === 'ok' });
        }
      }),
    );
    return results;
  }

  /** Tears the lab down (labDown). */
  down(): Promise<LabDownReport> {
    return labDown(this.prefix, { runRoot: this.config.runRoot });
  }
}

async function readEcmp(
  facts: Pick<LabFacts, 'config' | 'router' | 'nodes'>,
): Promise<Record<string, string[]>> {
  const byIp = new Map(facts.nodes.map((n) => [n.tunnelIp, n.name]));
  for (const n of facts.nodes) byIp.set(underlayIp6(n.tunnelIp), n.name);
  const out: Record<string, string[]> = {};
  for (const v of facts.config.vips) {
    const r = await nsRun(
      facts.router.netns,
      'ip',
      ['-j', v.family === 6 ? '-6' : '-4', 'route', 'show', v.vip],
      {
        allowFail: true,
      },
    );
    const gws: string[] = [];
    try {
      const routes = JSON.parse(r.stdout || '[]') as Array<Record<string, unknown>>;
      for (const route of routes) {
        const multi = route.nexthops ?? route.multipath;
        const hops = Array.isArray(multi) ? (multi as Array<Record<string, unknown>>) : [route];
        for (const h of hops) {
          const ip =
            typeof h.gateway === 'string'
              ? h.gateway
              : typeof h.via === 'object' && h.via !== null
                ? String((h.via as { host?: string }).host)
                : undefined;
          if (ip) gws.push(byIp.get(ip) ?? ip);
        }
      }
    } catch {
      /* unreadable: report none */
    }
    out[v.vip] = gws.sort();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// up / down / status

/** Removes an earlier lab with this prefix (`replace`, and not in use: labInUseBy), or throws SLUICE_E_LAB_EXISTS. */
async function clearExistingLab(
  cfg: LabConfig,
  runDir: string,
  replace: boolean,
  log: (msg: string) => void,
): Promise<void> {
  const pattern = labNamespacePattern(cfg.prefix);
  const existing = (await listNamespaces()).filter((n) => pattern.test(n));
  if (existing.length === 0 && !existsSync(runDir)) return;
  if (!replace) {
    throw new SluiceError(
      'SLUICE_E_LAB_EXISTS',
      `a lab with prefix ${cfg.prefix} exists (${existing.length} namespaces); run \`sluice lab down --prefix ${cfg.prefix}\``,
    );
  }
  const user = labInUseBy(readLabFacts(runDir)?.builtBy, process.pid, processStart);
  if (user !== undefined)
    throw new SluiceError(
      'SLUICE_E_LAB_EXISTS',
      `the lab with prefix ${cfg.prefix} is in use: process ${user}, which built it, still runs; not replacing it`,
    );
  log(`removing the existing lab ${cfg.prefix}`);
  await labDown(cfg.prefix, { runRoot: cfg.runRoot });
}

/** Builds the whole lab. Needs root. Throws SLUICE_E_LAB_EXISTS if a lab with this prefix exists (see `replace`). */
export async function labUp(input: LabConfigInput = {}, opts: LabUpOptions = {}): Promise<Lab> {
  const t0 = Date.now();
  const log = opts.log ?? (() => {});
  const cfg = resolveLabConfig(input);
  requireRoot();
  await ensureDeps();
  const plan = labPlan(cfg);
  await clearExistingLab(cfg, plan.runDir, opts.replace === true, log);
  mkdirSync(`${plan.runDir}/pids`, { recursive: true });
  const router: LabRouterFacts = {
    netns: plan.routerNetns,
    underlayIp: ROUTER_UNDERLAY_IP,
    underlayMac: ROUTER_UNDERLAY_MAC,
    clientIp: ROUTER_CLIENT_IP,
    clientIp6: ROUTER_CLIENT_IP6,
    clientMac: ROUTER_CLIENT_MAC,
  };
  const partial: LabFacts = {
    version: 1,
    state: 'starting',
    prefix: cfg.prefix,
    runDir: plan.runDir,
    config: cfg,
    fabricNetns: plan.fabricNetns,
    router,
    nodes: [],
    clients: plan.clients,
    createdAt: new Date().toISOString(),
    upMs: 0,
    builtBy: { pid: process.pid, start: processStart(process.pid) ?? 0 },
  };
  writeFileSync(labJsonPath(plan.runDir), `${JSON.stringify(partial, null, 2)}\n`);
  try {
    const prog = opts.progress;
    log(`creating ${planNamespaces(plan).length} namespaces and their veths`);
    prog?.step(1, `creating ${planNamespaces(plan).length} namespaces and their veths`);
    await run('ip', ['-batch', '-'], { input: linkBatch(plan) });

    const ovsDirs = new Map(plan.nodes.map((n) => [n.name, `${plan.runDir}/nodes/${n.name}`]));
    for (const d of ovsDirs.values()) mkdirSync(d, { recursive: true });
    const backendJs = await runnableScript('backend-server', cfg.runRoot);

    log(`configuring namespaces; starting ${plan.nodes.length} ovsdb-server + ovs-vswitchd`);
    prog?.step(
      2,
      `starting ${plan.nodes.length} ovsdb-server + ovs-vswitchd and ${plan.nodes.flatMap((n) => n.backends).length} backends`,
    );
    const tNodes = Date.now();
    const backendPlans = plan.nodes.flatMap((n) => n.backends);
    await Promise.all([
      nsScript(plan.fabricNetns, fabricScript(plan)),
      nsScript(plan.routerNetns, routerScript(plan)),
      ...plan.clients.map((c) => nsScript(c.netns, clientScript(c))),
      // Backends start while the nodes' OVS instances come up.
      ...backendPlans.map(async (b) => {
        await nsScript(b.netns, backendScript(b));
        startBackend(plan.runDir, cfg, b, backendJs);
      }),
      ...plan.nodes.map((n) => {
        const dir = ovsDirs.get(n.name)!;
        return nsScript(n.netns, nodeScript(plan, n, dir), { env: ovsEnv(dir), timeoutMs: 60_000 });
      }),
    ]);
    log(`namespaces and OVS ready in ${Date.now() - tNodes} ms`);

    prog?.step(3, "reading the nodes' OpenFlow ports");
    const nodes: LabNodeFacts[] = [];
    for (const n of plan.nodes) {
      const dir = ovsDirs.get(n.name)!;
      const ports = await readPorts(n, dir);
      nodes.push({
        name: n.name,
        role: n.role,
        netns: n.netns,
        tunnelIp: n.tunnelIp,
        brPhyMac: n.brPhyMac,
        eth0Mac: n.eth0Mac,
        ports,
        backends: n.backends.map((b) => ({ ...b, ofport: ports.vms[b.name] })),
        neighbours: [
          { ip: ROUTER_UNDERLAY_IP, mac: ROUTER_UNDERLAY_MAC },
          ...plan.nodes.filter((o) => o.name !== n.name).map((o) => ({ ip: o.tunnelIp, mac: o.brPhyMac })),
        ],
        ovsDir: dir,
      });
    }

    prog?.step(4, `waiting for ${backendPlans.length} backends to listen`);
    await Promise.all([
      prepareLabXdp(
        cfg,
        plan.runDir,
        plan.fabricNetns,
        plan.nodes.filter((n) => n.role === 'gateway').map((n) => n.name),
      ),
      waitForBackends(
        plan.runDir,
        cfg,
        backendPlans.map((b) => b.name),
      ),
      startLabRouting(plan.runDir, cfg, plan.routerNetns, nodes),
    ]);
    const facts: LabFacts = { ...partial, state: 'up', nodes, upMs: Date.now() - t0 };
    const lab = new Lab(facts);
    if (opts.probe ?? true) {
      prog?.step(5, "probing every backend through its host's br-int");
      await lab.waitBackendsAnswer(30_000);
    }
    const done: LabFacts = { ...facts, upMs: Date.now() - t0 };
    writeFileSync(labJsonPath(plan.runDir), `${JSON.stringify(done, null, 2)}\n`);
    log(`lab ${cfg.prefix} up in ${done.upMs} ms`);
    return new Lab(done);
  } catch (err) {
    log(`lab up failed; cleaning up: ${(err as Error).message}`);
    await labDown(cfg.prefix, { runRoot: cfg.runRoot }).catch(() => {});
    throw err;
  }
}

/** Live processes whose command line contains `text` (a path), with it. */
function processesNaming(text: string): { pid: number; cmdline: string }[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((d) => {
      const cmdline = processCmdline(Number(d));
      return cmdline?.includes(text) ? [{ pid: Number(d), cmdline }] : [];
    });
}

function startBackend(
  runDir: string,
  cfg: LabConfig,
  b: Pick<LabBackendFacts, 'name' | 'netns'>,
  backendJs: string,
): number {
  rmSync(`${runDir}/backend-${b.name}.log`, { force: true });
  return startInNetns(
    b.netns,
    process.execPath,
    [
      '--max-old-space-size=24',
      '--max-semi-space-size=1',
      backendJs,
      '--name',
      b.name,
      '--port',
      String(cfg.backendPort),
      ...(cfg.udp ? ['--udp'] : []),
      '--http-port',
      String(backendHttpPort(cfg.backendPort)),
    ],
    { pidFile: `${runDir}/pids/backend-${b.name}.pid`, logFile: `${runDir}/backend-${b.name}.log` },
  );
}

async function waitForBackends(runDir: string, cfg: LabConfig, names: readonly string[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  const pending = new Set(names);
  while (pending.size > 0) {
    for (const name of [...pending]) {
      const log = `${runDir}/backend-${name}.log`;
      let text = '';
      try {
        text = readFileSync(log, 'utf8');
      } catch {
        /* not yet */
      }
      const want = cfg.udp
        ? /listening on tcp[\s\S]*listening on udp|listening on udp[\s\S]*listening on tcp/
        : /listening on tcp/;
      if (want.test(text)) pending.delete(name);
      else {
        // pidExited, not !pidAlive: while `ip netns exec` execs node, the process's cmdline can read empty for a
        // moment (that reported a starting server as exited under load).
        const pid = readPidFile(`${runDir}/pids/backend-${name}.pid`);
        if (pid === undefined || pidExited(pid)) {
          throw new SluiceError('SLUICE_E_LAB_COMMAND', `backend ${name} exited: ${text.trim().slice(-400)}`);
        }
      }
    }
    if (pending.size === 0) break;
    if (Date.now() > deadline) {
      throw new SluiceError(
        'SLUICE_E_LAB_COMMAND',
        `backends not listening after 15 s: ${[...pending].join(', ')}`,
      );
    }
    await sleep(25);
  }
}

/** Reads a running lab's facts (lab.json) and returns its handle. Throws SLUICE_E_LAB_NOT_FOUND. */
export function attachLab(prefix: string, runRoot: string = DEFAULT_RUN_ROOT): Lab {
  const path = labJsonPath(`${runRoot}/${prefix}`);
  let facts: LabFacts;
  try {
    facts = JSON.parse(readFileSync(path, 'utf8')) as LabFacts;
  } catch {
    throw new SluiceError('SLUICE_E_LAB_NOT_FOUND', `no lab with prefix ${prefix} (${path} missing)`);
  }
  if (facts.state !== 'up') {
    throw new SluiceError('SLUICE_E_LAB_NOT_FOUND', `lab ${prefix} is not up (state ${facts.state})`);
  }
  return new Lab(facts);
}

/**
 * Which program a pid file under the run directory belongs to (its command line must contain this). The control
 * plane (src/lab/control-plane.ts) names its pid files `store.pid` (ovsdb-server), `planner-*.pid` and `agent-*.pid`
 * (`sluice planner --db ...`, `sluice agent --role ...`: it starts them with these arguments first).
 */
export function expectedProgram(file: string): string | undefined {
  const base = file.split('/').pop() ?? '';
  if (base === 'ovsdb-server.pid' || base === 'store.pid') return 'ovsdb-server';
  if (base.startsWith('planner-')) return 'planner --db';
  if (base.startsWith('agent-')) return 'agent --role';
  if (base === 'ovs-vswitchd.pid') return 'ovs-vswitchd';
  if (base.startsWith('backend-')) return 'backend-server';
  if (base.startsWith('runner-')) return 'conn-runner';
  // Members of a Raft store a test starts under the lab's run dir (src/ovsdb/server.ts startCluster): killed with
  // the lab when the test that started them crashed.
  if (/^member\d+\.pid$/.test(base)) return 'ovsdb-server';
  if (base.startsWith('bird-')) return 'bird -f';
  return undefined;
}

function findPidFiles(dir: string): string[] {
  const out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = `${dir}/${e}`;
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) out.push(...findPidFiles(p));
    else if (e.endsWith('.pid')) out.push(p);
  }
  return out;
}

export interface LabDownReport {
  /** Pids that were alive and were killed. */
  readonly killed: readonly number[];
  readonly namespaces: readonly string[];
  readonly ms: number;
}

/**
 * Removes everything a lab with `prefix` made: kills the processes named by the pid files under its run directory
 * (only if their command line still matches the program and marks them as this lab's: startedByLab, so a recycled
 * pid of another lab's process is left alone), deletes its namespaces (exact lab name pattern, so a lab with a
 * similar prefix is untouched) and the run directory. Idempotent; works after a crash of the lab process.
 */
export async function labDown(prefix: string, opts: { runRoot?: string } = {}): Promise<LabDownReport> {
  const t0 = Date.now();
  requireRoot();
  if (!/^[a-z][a-z0-9-]{0,11}$/.test(prefix))
    throw new SluiceError('SLUICE_E_USAGE', `invalid lab prefix ${prefix}`);
  const runDir = `${opts.runRoot ?? DEFAULT_RUN_ROOT}/${prefix}`;
  const pattern = labNamespacePattern(prefix);
  const namespaces = (await listNamespaces()).filter((n) => pattern.test(n));
  const owner: LabIdentity = {
    runDir,
    netns: new Set(namespaces.map((name) => netnsInode({ name })).filter((i) => i !== undefined)),
  };
  const files = findPidFiles(runDir);
  // Order: traffic runners and backends first, then ovs-vswitchd, then ovsdb-server.
  const rank = (f: string) => {
    const p = expectedProgram(f);
    return p === 'ovsdb-server' ? 2 : p === 'ovs-vswitchd' ? 1 : 0;
  };
  const killed: number[] = [];
  for (const r of [0, 1, 2]) {
    const batch = files.filter((f) => rank(f) === r);
    const pids = await Promise.all(
      batch.map((f) => {
        const expect = expectedProgram(f);
        return expect
          ? killPidFile(f, expect, { signal: 'SIGTERM', graceMs: 3000, owner })
          : Promise.resolve(undefined);
      }),
    );
    for (const p of pids) if (p !== undefined) killed.push(p);
  }
  if (namespaces.length > 0) {
    await run('ip', ['-force', '-batch', '-'], {
      input: `${namespaces.map((n) => `netns del ${n}`).join('\n')}\n`,
      allowFail: true,
    });
  }
  rmSync(runDir, { recursive: true, force: true });
  return { killed, namespaces, ms: Date.now() - t0 };
}

export interface LabProcessStatus {
  readonly pidFile: string;
  readonly program: string;
  readonly pid: number | undefined;
  readonly alive: boolean;
}

export interface LabNodeStatus {
  readonly name: string;
  readonly role: string;
  readonly ovsdbAlive: boolean;
  readonly vswitchdAlive: boolean;
  readonly ovsVersion: string | undefined;
  /** Gateways: the datapath (`ovs`, or `xdp (program N on eth0)`), read from the node's OVSDB and its uplink. */
  readonly datapath?: string;
}

export interface LabStatus {
  readonly prefix: string;
  readonly exists: boolean;
  readonly state: LabFacts['state'] | undefined;
  readonly namespaces: readonly string[];
  readonly processes: readonly LabProcessStatus[];
  readonly nodes: readonly LabNodeStatus[];
  readonly ecmp: Readonly<Record<string, string[]>>;
  /** `bgp`: the router's BGP and BFD session with each gateway. */
  readonly routing: 'bgp' | 'static' | undefined;
  readonly sessions: Readonly<Record<string, GatewayRouting>>;
  /** The lab's services as built (from lab.json; empty when it is missing). */
  readonly vips: readonly LabVip[];
}

/** What exists of the lab with `prefix`: namespaces, processes from its pid files, OVS versions, ECMP set. */
export async function labStatus(prefix: string, opts: { runRoot?: string } = {}): Promise<LabStatus> {
  const runDir = `${opts.runRoot ?? DEFAULT_RUN_ROOT}/${prefix}`;
  const pattern = labNamespacePattern(prefix);
  const namespaces = (await listNamespaces()).filter((n) => pattern.test(n)).sort();
  const processes: LabProcessStatus[] = findPidFiles(runDir)
    .sort()
    .map((f) => {
      const program = expectedProgram(f) ?? 'unknown';
      const pid = readPidFile(f);
      return { pidFile: f, program, pid, alive: pid !== undefined && pidAlive(pid, program) };
    });
  const facts = readLabFacts(runDir);
  const nodes: LabNodeStatus[] = [];
  let ecmp: Record<string, string[]> = {};
  let sessions: Record<string, GatewayRouting> = {};
  if (facts) {
    for (const nf of facts.nodes) {
      const n = new LabNode(nf);
      const ovsdbPid = readPidFile(n.ovsdbPidFile);
      const vswitchdAlive = n.vswitchdPid() !== undefined;
      let ovsVersion: string | undefined;
      if (vswitchdAlive) {
        const v = await n.appctl(['version'], { allowFail: true, timeoutMs: 5000 }).catch(() => undefined);
        ovsVersion = v?.code === 0 ? v.stdout.trim().split('\n')[0] : undefined;
      }
      const ovsdbAlive = ovsdbPid !== undefined && pidAlive(ovsdbPid, 'ovsdb-server');
      const datapath =
        n.role === 'gateway' && ovsdbAlive && namespaces.includes(n.netns)
          ? formatDatapath(await labDatapathStatus(n))
          : undefined;
      nodes.push({ name: n.name, role: n.role, ovsdbAlive, vswitchdAlive, ovsVersion, datapath });
    }
    if (namespaces.includes(facts.router.netns)) ecmp = await readEcmp(facts);
    if (facts.config.routing === 'bgp')
      sessions = await routerView(
        runDir,
        facts.nodes.filter((n) => n.role === 'gateway'),
      );
  }
  return {
    prefix,
    exists: namespaces.length > 0 || facts !== undefined,
    state: facts?.state,
    namespaces,
    processes,
    nodes,
    ecmp,
    routing: facts === undefined ? undefined : (facts.config.routing ?? 'static'),
    sessions,
    vips: facts?.config.vips ?? [],
  };
}
