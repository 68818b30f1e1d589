// One lab node (gateway or host): its facts (what the compiler needs: tunnel IP, MACs, OpenFlow port numbers) and
// the hooks that run ovs-ofctl / ovs-appctl / ovs-vsctl against the node's OWN ovs-vswitchd (private OVS_RUNDIR;
// these reach the daemon through unix sockets, so they need no `ip netns exec`).

import { TLV_OPTIONS } from '../compile/registry.ts';
import type { NodeRole } from '../model/types.ts';
import type { LabBackendPlan } from './config.ts';
import {
  killPidFile,
  nsRun,
  nsScript,
  pidAlive,
  type RunOptions,
  type RunResult,
  readPidFile,
  run,
} from './exec.ts';

/** One backend as it runs: its plan plus the OpenFlow port of its veth on the host's br-int. */
export interface LabBackendFacts extends LabBackendPlan {
  readonly ofport: number;
}

/** OpenFlow port numbers of a node, read with `ovs-vsctl` after ovs-vswitchd created the ports. */
export interface LabNodePorts {
  /** br-phy: the underlay NIC. */
  readonly eth0: number;
  /** br-phy: patch port to br-int (`phy-to-int`). */
  readonly phyToInt: number;
  /** br-int: patch port to br-phy (`int-to-phy`). */
  readonly intToPhy: number;
  /** br-int: the Geneve port `geneve0` (remote_ip=flow, key=flow). */
  readonly geneve: number;
  /** br-int: backend veths by backend name (hosts only; empty on gateways). */
  readonly vms: Readonly<Record<string, number>>;
}

/** A tunnel neighbour entry pre-populated with `ovs-appctl tnl/arp/set br-phy <ip> <mac>`. */
export interface LabNeighbour {
  readonly ip: string;
  readonly mac: string;
}

/** Plain, JSON-serialisable facts about one node (stored in the lab's lab.json). */
export interface LabNodeFacts {
  readonly name: string;
  readonly role: NodeRole;
  readonly netns: string;
  readonly tunnelIp: string;
  /** MAC of br-phy's LOCAL port (owner of the tunnel IP): the MAC other nodes send Geneve to. */
  readonly brPhyMac: string;
  /** MAC of the underlay NIC eth0 (its own; `arp off`). */
  readonly eth0Mac: string;
  readonly ports: LabNodePorts;
  /** Backends on this host (empty on gateways). */
  readonly backends: readonly LabBackendFacts[];
  /** Every other node and the router, as installed in the tunnel neighbour table. */
  readonly neighbours: readonly LabNeighbour[];
  /** Private OVS directory (OVS_RUNDIR = OVS_DBDIR = OVS_LOGDIR = OVS_SYSCONFDIR). */
  readonly ovsDir: string;
}

/** The Geneve TLV map of the compiler's registry, in `ovs-ofctl add-tlv-map` syntax. */
export const LAB_TLV_MAP = TLV_OPTIONS.map(
  (o) =>
    `{class=0x${o.optClass.toString(16)},type=0x${o.type.toString(16)},len=${o.len}}->tun_metadata${o.index}`,
).join(',');

export function ovsEnv(ovsDir: string): Record<string, string> {
  return { OVS_RUNDIR: ovsDir, OVS_DBDIR: ovsDir, OVS_LOGDIR: ovsDir, OVS_SYSCONFDIR: ovsDir };
}

export class LabNode implements LabNodeFacts {
  readonly name: string;
  readonly role: NodeRole;
  readonly netns: string;
  readonly tunnelIp: string;
  readonly brPhyMac: string;
  readonly eth0Mac: string;
  readonly ports: LabNodePorts;
  readonly backends: readonly LabBackendFacts[];
  readonly neighbours: readonly LabNeighbour[];
  readonly ovsDir: string;

  constructor(facts: LabNodeFacts) {
    this.name = facts.name;
    this.role = facts.role;
    this.netns = facts.netns;
    this.tunnelIp = facts.tunnelIp;
    this.brPhyMac = facts.brPhyMac;
    this.eth0Mac = facts.eth0Mac;
    this.ports = facts.ports;
    this.backends = facts.backends;
    this.neighbours = facts.neighbours;
    this.ovsDir = facts.ovsDir;
  }

  /** The plain facts (what lab.json stores). */
  toJSON(): LabNodeFacts {
    const { name, role, netns, tunnelIp, brPhyMac, eth0Mac, ports, backends, neighbours, ovsDir } = this;
    return { name, role, netns, tunnelIp, brPhyMac, eth0Mac, ports, backends, neighbours, ovsDir };
  }

  /** Environment that points ovs-* tools at this node's daemons. */
  get env(): Record<string, string> {
    return ovsEnv(this.ovsDir);
  }

  /**
   * `ovs-ofctl -O OpenFlow15 [options] <command> <bridge> [rest]` against this node, where
   * `args = [...options starting with '-', command, ...rest]`. E.g. `ofctl('br-int', ['dump-flows'])`,
   * `ofctl('br-int', ['bundle', '-'], { input: text })`, `ofctl('br-int', ['--strict', 'del-flows', 'priority=5'])`.
   */
  ofctl(bridge: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const i = args.findIndex((a) => !a.startsWith('-'));
    if (i < 0) throw new TypeError('ofctl: args must contain an ovs-ofctl command');
    const argv = ['-O', 'OpenFlow15', ...args.slice(0, i), args[i], bridge, ...args.slice(i + 1)];
    return run('ovs-ofctl', argv, { ...opts, env: { ...this.env, ...opts.env } });
  }

  /** `ovs-appctl <args>` against this node's ovs-vswitchd (e.g. `['revalidator/wait']`, `['dpctl/dump-flows']`). */
  appctl(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run('ovs-appctl', ['-t', `${this.ovsDir}/ovs-vswitchd.${this.#requirePid()}.ctl`, ...args], {
      ...opts,
      env: { ...this.env, ...opts.env },
    });
  }

  /** `ovs-vsctl --timeout=10 <args>` against this node's ovsdb-server. */
  vsctl(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run('ovs-vsctl', ['--timeout=10', ...args], { ...opts, env: { ...this.env, ...opts.env } });
  }

  /** Runs a command inside this node's network namespace. */
  exec(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return nsRun(this.netns, cmd, args, opts);
  }

  get vswitchdPidFile(): string {
    return `${this.ovsDir}/ovs-vswitchd.pid`;
  }
  get ovsdbPidFile(): string {
    return `${this.ovsDir}/ovsdb-server.pid`;
  }

  /** Pid of the running ovs-vswitchd, or undefined. */
  vswitchdPid(): number | undefined {
    const pid = readPidFile(this.vswitchdPidFile);
    return pid !== undefined && pidAlive(pid, 'ovs-vswitchd') ? pid : undefined;
  }

  #requirePid(): number {
    const pid = this.vswitchdPid();
    if (pid === undefined) {
      // Let ovs-appctl report "cannot connect" with the path it tried.
      return readPidFile(this.vswitchdPidFile) ?? 0;
    }
    return pid;
  }

  /**
   * Kills this node's ovs-vswitchd by its pid file (SIGKILL by default: a crash). Userspace conntrack lives in
   * ovs-vswitchd, so a host loses its connections' state. Returns the pid killed.
   */
  async killVswitchd(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | undefined> {
    return killPidFile(this.vswitchdPidFile, 'ovs-vswitchd', { signal, graceMs: 3000, keepPidFile: true });
  }

  /**
   * Starts ovs-vswitchd again (after killVswitchd or a crash) and restores what lives only in its memory and the
   * lab owns: the Geneve TLV map and the tunnel neighbour table. Flows and groups are the applier's to restore.
   * Returns the new pid.
   */
  async restartVswitchd(): Promise<number> {
    if (this.vswitchdPid() !== undefined) await this.killVswitchd('SIGTERM');
    await nsScript(this.netns, [...vswitchdStartCommands(this.ovsDir)], { env: this.env, timeoutMs: 30_000 });
    await this.restoreRuntimeState();
    const pid = this.vswitchdPid();
    if (pid === undefined) throw new Error(`ovs-vswitchd of ${this.name} did not start`);
    return pid;
  }

  /** Re-installs the TLV map (if missing), the tunnel neighbours and (if the tap was lost) br-phy's address. */
  async restoreRuntimeState(): Promise<void> {
    await nsScript(this.netns, [
      `ip addr replace ${this.tunnelIp}/24 dev br-phy`,
      'ip link set br-phy up',
      ...this.neighbours.map((n) => `ip neigh replace ${n.ip} lladdr ${n.mac} dev br-phy nud permanent`),
    ]);
    await installTlvMap(this);
    await Promise.all(this.neighbours.map((n) => this.appctl(['tnl/arp/set', 'br-phy', n.ip, n.mac])));
  }
}

/** Shell commands (run inside the node's namespace, OVS env set) that start ovs-vswitchd and wait until it has
 * applied the database (ovs-vsctl without --no-wait waits for ovs-vswitchd's cur_cfg to catch up). */
export function vswitchdStartCommands(ovsDir: string): string[] {
  return [
    `ovs-vswitchd unix:${ovsDir}/db.sock --pidfile --detach --no-chdir --log-file`,
    'ovs-vsctl --timeout=20 set Open_vSwitch . external_ids:sluice-lab-ready=true',
  ];
}

async function tlvMapPresent(node: Pick<LabNode, 'ofctl'>): Promise<boolean> {
  const cur = (await node.ofctl('br-int', ['dump-tlv-map'])).stdout;
  // Rows look like ` 0xffff  0x80       4  tun_metadata0`.
  return TLV_OPTIONS.every((o) =>
    new RegExp(
      `0x${o.optClass.toString(16)}\\s+0x${o.type.toString(16)}\\s+${o.len}\\s+tun_metadata${o.index}\\b`,
    ).test(cur),
  );
}

/** Installs the lab's Geneve TLV map on br-int unless it is already there (add-tlv-map of an existing mapping
 * fails). An agent restoring the same switch may add it between our check and our add: then it is there. */
export async function installTlvMap(node: Pick<LabNode, 'ofctl'>): Promise<void> {
  if (await tlvMapPresent(node)) return;
  try {
    await node.ofctl('br-int', ['add-tlv-map', LAB_TLV_MAP]);
  } catch (e) {
    if (!(await tlvMapPresent(node))) throw e;
  }
}
