// `sluice agent`: the ovn-controller of one node. Monitors the store (Global, Plan, Plan_Pool, Plan_Config, its own
// status rows), applies the generation meant for its role with a NodeProgrammer (incremental: compile the load
// balancers that changed -> diff against what it installed last -> one bundle per bridge -> revalidator/wait)
// and acknowledges it with its next heartbeat (Node_Heartbeat, database Sluice_Status: applied_generation = the
// datapath obeys it: what was applied, not what was asked). Every `heartbeatMs` it writes its heartbeat there (the
// frequent writes stay out of the plans' transaction history; its fence marks stay in Node_Status, Sluice); hosts
// add their backends' health (Backend_Status) and live connections per slot (Slot_Connections) in the same
// transaction (the planner relies on that: see docs/design/control-plane.md). One session, one monitor per database,
// each resuming on its own, and one of Sluice_Status's roles: while they deny agents the acknowledgement's columns
// (an upgrade that skipped `sluice store access`), it acknowledges in Node_Status as agents before 1.1.0 did, and
// says which step was missed.
//
// Which generation: hosts follow Global.generation, gateways Global.options:gateway_generation (released by the
// planner once every live host has the generation).
//
// Gateway fencing: the state machine is src/agent/fencing.ts (nextFence); this file detects its events and runs its
// actions. A gateway never leaves ECMP merely because the store is silent: it keeps forwarding on what it
// applied. It leaves when its apply keeps failing, when it sees the others two generations ahead, or (no command)
// when it finds the planner's or the operator's fence record on its row; it rejoins by applying the released
// generation, acknowledging it with `wait gateway_generation == applied`, then announcing. A restarted agent starts
// `unknown` (it may be in the ECMP set): it applies (an empty diff when nothing changed), acknowledges, and
// re-announces (idempotent), so traffic is not disturbed. While out it tells the planner (Node_Status
// external_ids:fenced=true) so the planner does not wait for it.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { NodeFacts } from '../compile/facts.ts';
import { icmpRate } from '../compile/icmp.ts';
import { type DeliveryEntries, ovnPatchEntries, withDeliveryEntries } from '../compile/ovn-patch.ts';
import { ctZoneOf, ICMP_METER_ID, lbIdsOf, SYN_METER_ID } from '../compile/registry.ts';
import type { Datapath } from '../explain.ts';
import { runHookCommand } from '../hook-command.ts';
import { lbSlotBits } from '../model/slot-bits.ts';
import type { Config, LoadBalancer } from '../model/types.ts';
import { backendKey, healthCheckOf } from '../model/types.ts';
import type { Runner } from '../openflow/runner.ts';
import {
  logReestablished,
  logSessionState,
  type Monitor,
  type MonitorSet,
  OvsdbClient,
  type Reestablished,
} from '../ovsdb/client.ts';
import type { TlsFiles } from '../ovsdb/jsonrpc.ts';
import type { DatabaseSchema, Operation } from '../ovsdb/protocol.ts';
import type { Replica, RowChange } from '../ovsdb/replica.ts';
import type { Generation } from '../rollout/types.ts';
import { SerialLoop } from '../serial-loop.ts';
import {
  agentMarksCurrent,
  agentMarksOp,
  agentMonitor,
  type BackendStatusRow,
  BackendStatusTable,
  byUuid,
  DB_NAME,
  DEFAULT_LEASE_MS,
  encodeSlotCounts,
  fenceMarks,
  gatewayGeneration,
  heartbeatOps,
  insert,
  isConflict,
  nodeRowOps,
  nodeStatus,
  nodeStatusAckOps,
  PlanIndex,
  publishedGeneration,
  remove,
  SCHEMA_NEEDS,
  type SlotConnectionsRow,
  SlotConnectionsTable,
  STATUS_DB_HINT,
  STATUS_DB_NAME,
  splitMonitor,
  stillReleasedOp,
  update,
} from '../store/db/index.ts';
import { ackDeniedHint, heartbeatAckDenied, ROLES_MONITOR } from '../store/db/rbac.ts';
import { XdpDatapathError } from '../xdp/datapath.ts';
import { heartbeatInterval, isPlanChange } from './beat-cadence.ts';
import { BirdControl, formatRoutingState, type RoutingState } from './bird-control.ts';
import { HashAgreement, readDatapath } from './datapath.ts';
import { keepUnchangedFacts } from './facts.ts';
import { type FenceEvent, type FenceState, mayRejoin, nextFence, reportsFenced } from './fencing.ts';
import { FlowCounter, lbNamesById, parseMeterStats, ReadingCounters } from './flow-counts.ts';
import { HealthChecker, type HealthOptions, type HealthTarget, type Probe } from './health.ts';
import { PeriodicSlotAudit } from './live-audit.ts';
import {
  type CtEntry,
  countSlotConnections,
  NodeProgrammer,
  readConntrack,
  type SlotConnections,
} from './node-ops.ts';
import { PlanConfigReader } from './plan-config.ts';
import { goneReportRows, type ReportScope, reportScope } from './report-scope.ts';
import { StatusIndex } from './status-index.ts';
import type { XdpGateway } from './xdp-gateway.ts';

export type { FenceState } from './fencing.ts';

export interface AgentOptions {
  readonly role: 'gateway' | 'host';
  readonly node: string;
  readonly remotes: readonly string[];
  /** Credentials for ssl: remotes (mutual TLS). */
  readonly tls?: TlsFiles;
  readonly runner: Runner;
  readonly facts: NodeFacts;
  /** Reads the node's facts again (from its OVS: src/agent/facts.ts) before each apply, so ofports that changed
   *  (an ovs-vswitchd restart, a backend port plugged in) are used; undefined = `facts` are fixed (a facts file). */
  readonly readFacts?: () => Promise<NodeFacts>;
  readonly log: Logger;
  /** Default 10 000 ms. */
  readonly leaseMs?: number;
  /** Heartbeat, connection report and vswitchd check period, ms. Default 1000. */
  readonly heartbeatMs?: number;
  /** Heartbeat period once nothing the agent watches changed for a while, ms (src/agent/beat-cadence.ts). Default:
   *  none, every heartbeat at `heartbeatMs`. */
  readonly idleHeartbeatMs?: number;
  readonly withdrawCmd?: string;
  readonly announceCmd?: string;
  /** Gateway: the control socket of this gateway's BIRD (docs/design/routing.md). Announce = enable its VIP routes,
   *  withdraw = disable them; with it the agent also withdraws on shutdown and reports BGP and BFD state. */
  readonly birdSocket?: string;
  /** The old rule (withdraw after a lease without the store), kept only as the negative control of
   *  the outage tests: with it a store outage takes every gateway out of ECMP. */
  readonly withdrawOnStoreSilence?: boolean;
  /** Pid of the node's ovs-vswitchd (undefined = not running): a change means it restarted. */
  readonly vswitchdPid?: () => number | undefined;
  readonly health?: HealthOptions;
  readonly probe?: Probe;
  readonly registry?: Registry;
  /** Full read + diff + verify of the switch at least this often, ms (0 = every generation, the stateless path).
   *  Default 15 minutes (NodeProgrammer). */
  readonly fullReconcileMs?: number;
  /** How long one read of the flow counters serves scrapes, ms. Default 5000. */
  readonly flowCacheMs?: number;
  /** Hosts: a connection report (conntrack read) that takes longer is abandoned, ms. Default 5000. The heartbeat
   *  never waits for it: it carries the latest finished report, or none. */
  readonly reportTimeoutMs?: number;
  /** Hosts: the most conntrack entries sluice's zone may hold (`dpctl/ct-set-limits`); 0 = no limit. Default
   *  200,000 (docs/security.md "Floods"). */
  readonly ctLimit?: number;
  /** Hosts: TCP SYNs per second committed to conntrack (an OpenFlow meter, NodeFacts.synRate); 0 or undefined = no
   *  meter (the default, docs/security.md "Floods"). */
  readonly synRate?: number;
  /** Gateways: how often the continuous audit reads the datapath (besides after every applied generation), ms.
   *  Default 5000 (src/agent/datapath.ts). */
  readonly auditMs?: number;
  /** Hosts: how often the live slot audit compares each live connection's committed slot with the model's, ms; 0 =
   *  off. Default 10,000. It reuses the connection report's conntrack read (src/agent/live-audit.ts). */
  readonly slotAuditMs?: number;
  /** Hosts: the gateways' datapath the live audit models in `dp_hash` mode. Default `netdev`, the only datapath a
   *  gateway announces on in that mode (its own continuous audit withdraws it otherwise). */
  readonly slotAuditDatapath?: Datapath;
  /** Gateways: ICMP errors per second copied to hosts (an OpenFlow meter, NodeFacts.icmpRate); undefined = the
   *  compiler's default (1000), 0 = no meter (docs/design/icmp.md "The meter"). */
  readonly icmpRate?: number;
  /** Gateways whose node facts say `sluice-gateway-datapath=xdp`: each generation is also installed in the XDP
   *  program on the uplink (after the OVS flows, before the acknowledgement). docs/design/xdp.md "In the agent". */
  readonly xdp?: XdpGateway;
}

/** The meters' metrics: a host's SYN meter, a gateway's ICMP meter (agentMetrics). */
function meterMetrics(r: Registry[], collectFlows: () => Promise<void>) {
  return {
    synRate: new Gauge({
      name: 'sluice_agent_syn_rate_limit',
      help: 'hosts: TCP SYNs per second this host commits to conntrack (the SYN meter; 0 = unmetered)',
      registers: r,
    }),
    synMeterPackets: new Counter({
      name: 'sluice_agent_syn_meter_packets_total',
      help: 'hosts: TCP SYNs for a local backend that reached the SYN meter',
      registers: r,
      collect: collectFlows,
    }),
    synMeterDropped: new Counter({
      name: 'sluice_agent_syn_meter_dropped_total',
      help: 'hosts: TCP SYNs the SYN meter dropped over the rate (a SYN flood shows here)',
      registers: r,
      collect: collectFlows,
    }),
    icmpMeterPackets: new Counter({
      name: 'sluice_agent_icmp_meter_packets_total',
      help: 'gateways: ICMP errors to VIPs that reached the ICMP meter (before they are copied to hosts)',
      registers: r,
      collect: collectFlows,
    }),
    icmpMeterDropped: new Counter({
      name: 'sluice_agent_icmp_meter_dropped_total',
      help: 'gateways: ICMP errors to VIPs the ICMP meter dropped over the rate (a flood of errors shows here)',
      registers: r,
      collect: collectFlows,
    }),
  };
}

function agentMetrics(registry: Registry, collectFlows: () => Promise<void>) {
  const r = [registry];
  return {
    applied: new Gauge({
      name: 'sluice_agent_generation_applied',
      help: 'generation applied and acknowledged',
      registers: r,
    }),
    target: new Gauge({
      name: 'sluice_agent_generation_target',
      help: 'generation the store asks this node to apply',
      registers: r,
    }),
    applySeconds: new Histogram({
      name: 'sluice_agent_apply_seconds',
      help: 'compile + bundles + revalidator/wait',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    bundleLines: new Gauge({
      name: 'sluice_agent_bundle_lines',
      help: 'lines of the last bundle per bridge',
      labelNames: ['bridge'],
      registers: r,
    }),
    bgpEstablished: new Gauge({
      name: 'sluice_agent_bgp_established',
      help: "1 while the gateway's BGP session to its router is established (gateways with --bird-socket)",
      registers: r,
    }),
    applyErrors: new Counter({
      name: 'sluice_agent_apply_errors_total',
      help: 'failed applications',
      registers: r,
    }),
    flows: new Gauge({
      name: 'sluice_agent_flows',
      help: 'installed sluice flows by kind (cookie)',
      labelNames: ['kind'],
      registers: r,
      // Read from the bridges at scrape time; one dump per scrape is shared by the three gauges (prom-client collects
      // them concurrently).
      collect: collectFlows,
    }),
    packets: new Counter({
      name: 'sluice_agent_flow_packets_total',
      help: 'packets that hit sluice flows, by kind (n_packets, summed)',
      labelNames: ['kind'],
      registers: r,
      collect: collectFlows,
    }),
    secondChanceSent: new Counter({
      name: 'sluice_agent_second_chance_sent_packets_total',
      help: 'packets this host had no connection for and handed on to their second chance (SECOND_CHANCE flows)',
      registers: r,
      collect: collectFlows,
    }),
    secondChance: new Counter({
      name: 'sluice_agent_second_chance_packets_total',
      help: 'packets another host handed to this one by second chance, per load balancer: each would have broken a connection without sluice',
      labelNames: ['lb'],
      registers: r,
      collect: collectFlows,
    }),
    health: new Gauge({
      name: 'sluice_agent_backend_up',
      help: 'backend health (1 up, 0 down, -1 unknown)',
      labelNames: ['lb', 'backend'],
      registers: r,
    }),
    connections: new Gauge({
      name: 'sluice_agent_backend_connections',
      help: 'live connections per backend (conntrack)',
      labelNames: ['lb', 'backend'],
      registers: r,
    }),
    ctEntries: new Gauge({
      name: 'sluice_agent_conntrack_entries',
      help: "hosts: entries in sluice's conntrack zone by TCP state (syn_sent = half-open: a SYN flood shows here)",
      labelNames: ['state'],
      registers: r,
    }),
    ctLimit: new Gauge({
      name: 'sluice_agent_conntrack_limit',
      help: "hosts: the limit set on sluice's conntrack zone (0 = none)",
      registers: r,
    }),
    ...meterMetrics(r, collectFlows),
    reportFailures: new Counter({
      name: 'sluice_agent_report_failures_total',
      help: 'hosts: connection reports that failed or timed out (the heartbeat went on without them)',
      registers: r,
    }),
    slotAudit: new Gauge({
      name: 'sluice_agent_slot_audit_connections',
      help: "hosts: live connections by the live slot audit's verdict per load balancer: agree (committed in the model's slot for their 5-tuple), disagree (another slot: a gateway hashes differently), unknown (the hash cannot be known)",
      labelNames: ['lb', 'verdict'],
      registers: r,
    }),
    hashAgrees: new Gauge({
      name: 'sluice_agent_hash_agrees',
      help: "gateways: 1 when the datapath's hash can agree with the other gateways' in the applied hash mode, 0 when it cannot (the gateway stays withdrawn)",
      registers: r,
    }),
    fenced: new Gauge({
      name: 'sluice_agent_fenced',
      help: '1 while the gateway is withdrawn from ECMP',
      registers: r,
    }),
    storeConnected: new Gauge({
      name: 'sluice_agent_store_connected',
      help: '1 while the store session is up',
      registers: r,
    }),
    vswitchdRestarts: new Counter({
      name: 'sluice_agent_vswitchd_restarts_total',
      help: 'ovs-vswitchd restarts detected',
      registers: r,
    }),
    applies: new Counter({
      name: 'sluice_agent_applies_total',
      help: 'applications by mode (incremental: diff against what the agent installed; full: switch read and verified)',
      labelNames: ['mode'],
      registers: r,
    }),
    compileSeconds: new Gauge({
      name: 'sluice_agent_compile_seconds',
      help: 'compile time of the last application',
      registers: r,
    }),
  };
}

/** The applied generation's load balancer ids (lbIdsOf) and their inverse, kept per generation. */
interface AppliedIdMaps {
  readonly config: Config;
  readonly generation: Generation;
  readonly ids: ReadonlyMap<string, number>;
  readonly names: ReadonlyMap<number, string>;
}

export class AgentDaemon {
  readonly client: OvsdbClient;
  readonly registry: Registry;
  readonly health: HealthChecker | undefined;
  readonly #o: AgentOptions;
  readonly #log: Logger;
  readonly #m: ReturnType<typeof agentMetrics>;
  #schema: DatabaseSchema | undefined;
  #monitor: MonitorSet | undefined;
  /** Sluice_Status's RBAC tables: whether the store lets this agent acknowledge in its heartbeat. */
  #roles: Monitor | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  // What this node obeys.
  #applied = 0;
  #appliedAt = 0;
  /** The desired_cfg the applied generation was planned from. */
  #appliedCfg = 0;
  #appliedConfig: Config | undefined;
  #appliedGeneration: Generation | undefined;
  #facts: NodeFacts;
  /** Hosts with an OVN patch: its delivery entries derived from the applied config (compile/ovn-patch.ts). */
  #ovnEntries: DeliveryEntries = {};
  #vmsMemo: { facts: NodeFacts['vms']; entries: DeliveryEntries; vms: NodeFacts['vms'] } | undefined;
  #error: string | undefined;
  /** Since when applying the target fails (ms), undefined = not failing. */
  #failingSince: number | undefined;
  #forceApply = false;
  /** ovs-vswitchd is gone, or restarted and not yet programmed again (cleared by a successful apply). */
  #datapathLost = false;
  #vswitchdPid: number | undefined;
  readonly #bird: BirdControl | undefined;
  #routing: RoutingState | undefined;
  #routingError: string | undefined;
  readonly #programmer: NodeProgrammer;
  /** The plan's config, built from the documents that changed (src/agent/plan-config.ts). */
  readonly #planConfig = new PlanConfigReader();
  /** Last successful store transaction (ms). */
  #lastStoreOk = Date.now();
  #fence: FenceState = 'unknown';
  /** The token of this agent's latest rejoin whose announce command ended (Node_Status external_ids:announced). */
  #announced: string | undefined;
  #conns: SlotConnections | undefined;
  #lastHeartbeat = 0;
  /** When the agent last saw a change of what it applies or reports urgently (plans, its fence state, a backend's
   *  health): the heartbeat keeps its fast pace for a while after (src/agent/beat-cadence.ts). */
  #lastChangeAt = Date.now();
  /** Hosts: the latest finished connection report and when its conntrack read started (ms). */
  #report: { conns: SlotConnections; startedAt: number } | undefined;
  /** When the heartbeat that carried the last report was written (a report counts once, if read after it). */
  #reportWrittenAt = 0;
  #reporting = false;
  #reportTimer: NodeJS.Timeout | undefined;
  #reportError: string | undefined;
  /** Gateways with ovs-vsctl: the continuous audit (can this datapath's hash agree with the others'?). */
  readonly #agreement: HashAgreement | undefined;
  #auditTimer: NodeJS.Timeout | undefined;
  /** Hosts: the live slot audit (its summary line goes to Node_Status SLOT_AUDIT_KEY). */
  readonly #slotAudit: PeriodicSlotAudit;

  constructor(o: AgentOptions) {
    this.#o = o;
    this.#facts = o.facts;
    this.#log = o.log;
    this.registry = o.registry ?? new Registry();
    this.#m = agentMetrics(this.registry, () => this.#sharedFlowScrape());
    this.#programmer = new NodeProgrammer(o.runner, { fullReconcileMs: o.fullReconcileMs });
    this.#slotAudit = new PeriodicSlotAudit(
      o.role === 'host' ? (o.slotAuditMs ?? 10_000) : 0,
      this.#m.slotAudit,
      o.slotAuditDatapath,
    );
    o.xdp?.registerMetrics(this.registry);
    this.#bird =
      o.role === 'gateway' && o.birdSocket !== undefined ? new BirdControl(o.birdSocket) : undefined;
    const vsctl = o.runner.vsctl?.bind(o.runner);
    this.#agreement =
      o.role === 'gateway' && vsctl !== undefined
        ? new HashAgreement(() => readDatapath({ vsctl }, o.facts.bridges.int))
        : undefined;
    this.client = new OvsdbClient({
      remotes: o.remotes,
      tls: o.tls,
      database: DB_NAME,
      probeIntervalMs: 2000,
      waitConnectedMs: 30_000,
      // Generous: the first monitor reply carries every plan's pools (several MB at 1000 VIPs) and a CPU-starved
      // server sends it slowly; a silent server is caught by the probe (no bytes for twice its interval) instead.
      requestTimeoutMs: 60_000,
      log: (event, fields) => this.#log.debug({ event, ...fields }, `ovsdb ${event}`),
    });
    if (o.role === 'host') {
      this.health = new HealthChecker(o.health, o.probe);
      this.health.onChange = (id, from, to) => {
        this.#log.info({ event: 'health', backend: id, from, to }, `backend ${id}: ${from} -> ${to}`);
        this.#lastChangeAt = Date.now();
        this.#schedule();
      };
    }
  }

  get fence(): FenceState {
    return this.#fence;
  }
  get applied(): number {
    return this.#applied;
  }

  async start(): Promise<void> {
    this.client.on('state', (to: string, _from: string, why?: Error) => {
      this.#m.storeConnected.set(to === 'connected' ? 1 : 0);
      logSessionState(this.#log, to, this.client.remote, why);
    });
    this.#vswitchdPid = this.#o.vswitchdPid?.();
    // No switch at start: nothing can be programmed, so a gateway must not be (or stay) announced.
    if (this.#o.vswitchdPid && this.#vswitchdPid === undefined) this.#datapathLost = true;
    this.#timer = setInterval(() => this.#schedule(), this.#o.heartbeatMs ?? 1000);
    if (this.#agreement)
      this.#auditTimer = setInterval(() => this.#auditLoop.schedule(), this.#o.auditMs ?? 5000);
    if (this.#o.role === 'host') {
      this.#m.synRate.set(this.#o.synRate ?? 0);
      await this.#limitConntrack();
      this.#reportTimer = setInterval(() => void this.#reportTick(), this.#o.heartbeatMs ?? 1000);
    }
    this.health?.start();
    // Keep trying until the store answers (it may be down, or slow to send the first monitor reply): an agent that
    // exits here only gets restarted to start over.
    for (;;) {
      try {
        await this.client.connect();
        this.#schema = await this.client.getSchema(DB_NAME);
        // Plans and its fence marks in Sluice, its heartbeat, ack and reports in Sluice_Status: one monitor each,
        // each resuming from its own last transaction after a reconnect.
        // (Each kept once it started: monitors survive reconnects, and a retry must not start a second one.)
        this.#monitor ??= await this.client.monitorDatabases(
          splitMonitor(agentMonitor(this.#o.node)),
          STATUS_DB_HINT,
          SCHEMA_NEEDS,
        );
        this.#roles ??= await this.client.monitor(STATUS_DB_NAME, ROLES_MONITOR);
        break;
      } catch (e) {
        if (this.#stopped) throw e;
        this.#log.warn(
          { event: 'store-wait', err: (e as Error).message },
          `store not ready (${(e as Error).message}): retrying`,
        );
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    this.#monitor.on('update', (changes: readonly RowChange[]) => {
      if (isPlanChange(changes)) this.#lastChangeAt = Date.now();
      this.#schedule();
    });
    this.#monitor.on('reestablished', (r: Reestablished, m: Monitor) => logReestablished(this.#log, r, m));
    this.#lastStoreOk = Date.now();
    this.#lastChangeAt = Date.now();
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#auditTimer) clearInterval(this.#auditTimer);
    if (this.#reportTimer) clearInterval(this.#reportTimer);
    this.health?.stop();
    // A gateway that stops leaves ECMP first (its routes withdrawn while the datapath still forwards).
    if (this.#bird !== undefined)
      await this.#bird.withdraw().then(
        () => this.#log.info({ event: 'withdrawn', reason: 'shutdown' }, 'withdrawn from ECMP (shutdown)'),
        (e: unknown) =>
          this.#log.error(
            { event: 'withdraw-failed', err: (e as Error).message },
            `withdraw failed: ${(e as Error).message}`,
          ),
      );
    this.client.close();
  }

  status(): Record<string, unknown> {
    const r = this.#monitor?.replica;
    return {
      node: this.#o.node,
      role: this.#o.role,
      applied: this.#applied,
      appliedAt: this.#appliedAt,
      target: r ? this.#target(r) : undefined,
      error: this.#error,
      fence: this.#fence,
      routing: this.#routing === undefined ? this.#routingError : formatRoutingState(this.#routing),
      hashAgreement: this.#agreement?.text(),
      slotAudit: this.#slotAudit.text,
      store: this.client.state,
      vswitchdPid: this.#vswitchdPid,
      health: this.health ? Object.fromEntries(this.health.states()) : undefined,
      connections: this.#conns?.total,
      ...(this.#o.xdp === undefined ? {} : { xdp: this.#o.xdp.status() }),
    };
  }

  #target(r: Replica): number {
    if (this.#o.role === 'host') return publishedGeneration(r);
    return gatewayGeneration(r);
  }

  /** Apply and heartbeat run as two independent serial loops: a slow apply (or a slow command) never delays the
   *  heartbeat, which is what the planner's lease and this agent's own fencing measure. */
  #schedule(): void {
    this.#fenceLoop.schedule();
    this.#applyLoop.schedule();
    this.#beatLoop.schedule();
  }

  /** The fencing check has its own loop: a heartbeat stuck waiting for the store must not delay it. */
  readonly #fenceLoop = new SerialLoop(
    () => this.#maybeFence(Date.now()),
    (e) => this.#log.warn({ event: 'fence-failed', err: e.message }, `fence check failed: ${e.message}`),
    () => this.#stopped,
  );

  readonly #applyLoop = new SerialLoop(
    () => this.#applyStep(),
    (e) =>
      this.#log.warn({ event: 'apply-step-failed', err: e.message }, `agent apply step failed: ${e.message}`),
    () => this.#stopped,
  );
  readonly #auditLoop = new SerialLoop(
    () => this.#auditStep(),
    (e) => this.#log.warn({ event: 'audit-failed', err: e.message }, `hash audit failed: ${e.message}`),
    () => this.#stopped,
  );

  /** The continuous audit: can this gateway's datapath agree with the others in the applied hash mode? */
  async #auditStep(): Promise<void> {
    const mode = this.#appliedConfig?.hashMode;
    if (this.#agreement === undefined || mode === undefined) return;
    const changed = await this.#agreement.check(mode);
    if (changed === undefined) return;
    this.#m.hashAgrees.set(changed.state === 'agrees' ? 1 : 0);
    const text = this.#agreement.text();
    if (changed.state === 'cannot-agree')
      this.#log.error({ event: 'hash-cannot-agree', datapath: changed.datapath, why: changed.why }, text);
    else this.#log.info({ event: 'hash-audit', verdict: changed.state }, `hash audit: ${text}`);
    this.#fenceLoop.schedule();
    this.#beatLoop.schedule();
  }

  readonly #beatLoop = new SerialLoop(
    () => this.#beatStep(),
    (e) => this.#log.warn({ event: 'heartbeat-failed', err: e.message }, `heartbeat failed: ${e.message}`),
    () => this.#stopped,
  );

  async #applyStep(): Promise<void> {
    this.#checkVswitchd();
    const r = this.#monitor?.replica;
    if (r === undefined || this.#schema === undefined) return;
    const target = this.#target(r);
    this.#m.target.set(target);
    const due = this.#programmer.fullDue(); // the periodic full reconcile (NodeProgrammer)
    if (target > 0 && (target !== this.#applied || this.#forceApply || this.#error !== undefined || due)) {
      await this.#apply(r, target);
      this.#beatLoop.schedule();
    }
  }

  async #beatStep(): Promise<void> {
    const now = Date.now();
    const r = this.#monitor?.replica;
    // (Not before the roles are read: a first heartbeat inserts its row, with an ack they may not let it update.)
    if (r === undefined || this.#schema === undefined || this.#roles === undefined) return;
    if (this.client.state !== 'connected') return;
    const target = this.#target(r);
    const cadence = { heartbeatMs: this.#o.heartbeatMs ?? 1000, idleHeartbeatMs: this.#o.idleHeartbeatMs };
    const beatDue = now - this.#lastHeartbeat >= heartbeatInterval(cadence, now, this.#lastChangeAt) * 0.9;
    const ackDue = this.#acked !== this.#applied || this.#ackedError !== this.#error;
    const rejoin =
      this.#o.role === 'gateway' &&
      mayRejoin(this.#fence) &&
      !this.#datapathLost &&
      (this.#agreement === undefined || this.#agreement.mayAnnounce(this.#appliedConfig?.hashMode)) &&
      this.#applied === target &&
      this.#error === undefined &&
      target > 0;
    if (beatDue || ackDue || rejoin) await this.#writeStatus(r, target, rejoin);
    if (beatDue) this.#refreshRouting();
  }

  #readingRouting = false;

  /** Reads BGP and BFD state from this gateway's BIRD for the next heartbeat (never waited for). */
  #refreshRouting(): void {
    if (this.#bird === undefined || this.#readingRouting) return;
    this.#readingRouting = true;
    this.#bird
      .state()
      .then(
        (st) => {
          this.#routing = st;
          this.#routingError = undefined;
          this.#m.bgpEstablished.set(Object.values(st.bgp).some((x) => x === 'Established') ? 1 : 0);
        },
        (e: unknown) => {
          this.#routing = undefined;
          this.#routingError = `BIRD: ${(e as Error).message.split('\n')[0]}`;
          this.#m.bgpEstablished.set(0);
        },
      )
      .finally(() => {
        this.#readingRouting = false;
      });
  }

  #acked = -1;
  #ackedError: string | undefined;

  #checkVswitchd(): void {
    if (!this.#o.vswitchdPid) return;
    const pid = this.#o.vswitchdPid();
    if (pid !== this.#vswitchdPid) {
      if (pid !== undefined) {
        this.#log.warn(
          { event: 'vswitchd-restart', old: this.#vswitchdPid, pid },
          `ovs-vswitchd restarted (pid ${this.#vswitchdPid} -> ${pid}): re-applying`,
        );
        this.#m.vswitchdRestarts.inc();
        this.#forceApply = true;
        this.#datapathLost = true;
        this.#programmer.invalidate('ovs-vswitchd restarted');
      } else {
        this.#log.warn({ event: 'vswitchd-down', old: this.#vswitchdPid }, 'ovs-vswitchd is not running');
        this.#error = 'ovs-vswitchd is not running';
        this.#failingSince ??= Date.now();
        this.#datapathLost = true;
      }
      this.#vswitchdPid = pid;
    }
  }

  /** The facts the compiler sees: the node's, plus the SYN rate (hosts) or ICMP rate (gateways) of this agent's
   *  options; on an XDP gateway, ICMP errors are the XDP datapath's (its tc program copies them, not OVS). */
  #compileFacts(): NodeFacts {
    const rate = this.#o.synRate ?? 0;
    if (this.#o.role === 'host') return rate > 0 ? { ...this.#facts, synRate: rate } : this.#facts;
    return {
      ...this.#facts,
      ...(this.#o.icmpRate === undefined ? {} : { icmpRate: this.#o.icmpRate }),
      ...(this.#o.xdp === undefined ? {} : { icmpErrorsInXdp: true }),
    };
  }

  /** The delivery entries of the OVN patch just applied (logged when they change). */
  #setOvnEntries(entries: DeliveryEntries): void {
    if (JSON.stringify(entries) === JSON.stringify(this.#ovnEntries)) return;
    const list = Object.entries(entries).map(([ip, vm]) => `${ip}=${vm.mac}`);
    this.#log.info(
      { event: 'ovn-patch', entries: list },
      `OVN patch delivers to ${list.length} backend address(es) from the config`,
    );
    this.#ovnEntries = entries;
  }

  /** The backend ports this host delivers to: its OVSDB's, and its OVN patch's entries (the OVSDB's win). */
  #vms(): NodeFacts['vms'] {
    const m = this.#vmsMemo;
    if (m?.facts === this.#facts.vms && m.entries === this.#ovnEntries) return m.vms;
    // A patch gone since the last apply (ovn-controller deleted it) delivers nothing: its backends are gone here.
    const entries = this.#facts.ovnPatch === undefined ? {} : this.#ovnEntries;
    const vms = withDeliveryEntries(this.#facts, entries).vms;
    this.#vmsMemo = { facts: this.#facts.vms, entries: this.#ovnEntries, vms };
    return vms;
  }

  /** Re-reads the node's facts from its OVS (when the agent has no facts file); logs what changed. */
  async #refreshFacts(): Promise<void> {
    if (this.#o.readFacts === undefined) return;
    // The same objects when nothing changed: the report scope follows `vms` by identity.
    const f = keepUnchangedFacts(this.#facts, await this.#o.readFacts());
    if (f !== this.#facts) this.#log.info({ event: 'facts', facts: f }, 'node facts read from OVS changed');
    this.#facts = f;
  }

  /** The plans of the store's replica, followed row by row (src/store/db/plan-index.ts); a replaced replica (a
   *  reconnect's) gets a new index. */
  #planIndex: { replica: Replica; index: PlanIndex } | undefined;

  #plans(r: Replica): PlanIndex {
    if (this.#planIndex?.replica !== r) {
      this.#planIndex?.index.close();
      this.#planIndex = { replica: r, index: new PlanIndex(r) };
    }
    return this.#planIndex.index;
  }

  async #apply(r: Replica, target: number): Promise<void> {
    if (this.#o.vswitchdPid && this.#vswitchdPid === undefined) return;
    const t0 = performance.now();
    try {
      const plans = this.#plans(r);
      const plan = plans.read(target);
      if (plan === undefined) throw new Error(`generation ${target} is not in the store`);
      if (plan.docs === undefined) throw new Error(`generation ${target} has no config document`);
      const config = this.#planConfig.read(plan.docs, plan.configRef, target, (a, b) => plans.changed(a, b));
      const readMs = Math.round(performance.now() - t0);
      await this.#refreshFacts();
      const entries = ovnPatchEntries(config, plan.generation, this.#facts, this.#ovnEntries);
      const facts = withDeliveryEntries(this.#compileFacts(), entries);
      const res = await this.#programmer.program(config, plan.generation, facts, (a, b) =>
        plans.changed(a, b),
      );
      this.#setOvnEntries(entries);
      const xdp = await this.#o.xdp?.install(config, plan.generation, this.#compileFacts());
      const from = this.#applied;
      this.#applied = target;
      this.#appliedAt = Date.now();
      this.#appliedCfg = plan.desiredCfg;
      this.#appliedConfig = config;
      this.#appliedGeneration = plan.generation;
      this.#error = undefined;
      this.#failingSince = undefined;
      this.#forceApply = false;
      this.#datapathLost = false;
      this.#m.applied.set(target);
      this.#m.applySeconds.observe((performance.now() - t0) / 1000);
      for (const [b, n] of Object.entries(res.bundleLines)) this.#m.bundleLines.set({ bridge: b }, n);
      this.#m.applies.inc({ mode: res.mode });
      this.#m.compileSeconds.set(res.compileMs / 1000);
      this.#log.info(
        {
          event: 'applied',
          generation: target,
          from,
          changed: res.changed,
          bundleLines: res.bundleLines,
          ms: res.ms,
          revalidateMs: res.revalidateMs,
          compileMs: res.compileMs,
          readMs,
          mode: res.mode,
          fullReason: res.fullReason,
          flows: res.flows,
          reusedLbs: res.reusedLbs,
          ...(xdp === undefined ? {} : { xdp }),
        },
        `applied g${target} (${
          res.changed
            ? Object.entries(res.bundleLines)
                .map(([b, n]) => `${b} ${n} lines`)
                .join(', ')
            : 'no change'
        }; ${res.mode}; ${res.ms} ms)`,
      );
      if (this.health) this.#updateHealthTargets(config);
      this.#auditLoop.schedule();
    } catch (e) {
      // A generation that does not decode or validate (a rogue or broken writer) is refused: the switch keeps the
      // last good generation, which this node still forwards on correctly, so a gateway does not count it as
      // failing (no withdraw); the error in Node_Status says why it does not acknowledge.
      const refused = isRefusal(e);
      // The XDP program or its maps failed: this gateway's datapath is gone until an apply succeeds (withdraw now).
      if (e instanceof XdpDatapathError) this.#datapathLost = true;
      const msg = `${refused ? `refused g${target}: ` : ''}${(e as Error).message.split('\n')[0]!}`;
      if (this.#error !== msg)
        this.#log.error(
          { event: refused ? 'generation-refused' : 'apply-failed', generation: target, err: msg },
          refused ? msg : `applying g${target} failed: ${msg}`,
        );
      this.#error = msg;
      if (!refused) this.#failingSince ??= Date.now();
      this.#m.applyErrors.inc();
    }
  }

  #healthTargetsOf: Config | undefined;

  #updateHealthTargets(config: Config): void {
    // Once per config, not per generation (a rollout's generations share one config; 100,000 targets at 10,000 VIPs).
    if (config === this.#healthTargetsOf) return;
    this.#healthTargetsOf = config;
    this.health?.setTargets(this.#healthTargets(config));
  }

  /** The health targets of each load balancer object (a new config keeps those of unchanged load balancers). */
  readonly #lbTargets = new WeakMap<LoadBalancer, readonly HealthTarget[]>();

  /** This host's health targets in `config`, one load balancer at a time: those of an unchanged load balancer are
   *  the objects it had, which the checker skips (rebuilding 100,000 targets on every config change at 10,000 VIPs,
   *  with their ids and a check each, was garbage only a full collection frees). */
  *#healthTargets(config: Config): Generator<HealthTarget> {
    for (const lb of config.loadBalancers) {
      let targets = this.#lbTargets.get(lb);
      if (targets === undefined) {
        // The load balancer's check (by protocol when it has none: a UDP one is never probed with TCP).
        const check = healthCheckOf(lb);
        targets = lb.backends
          .filter((b) => b.host === this.#o.node)
          .map((b) => ({
            id: `${lb.name} ${backendKey(b)}`,
            address: b.address,
            port: check.port ?? b.port ?? lb.ports[0]!,
            check,
          }));
        this.#lbTargets.set(lb, targets);
      }
      yield* targets;
    }
  }

  /** The most pressing fencing event now, if any (src/agent/fencing.ts). */
  #fenceEvent(now: number): FenceEvent | undefined {
    const r = this.#monitor?.replica;
    const marks = fenceMarks(r === undefined ? undefined : nodeStatus(r, this.#o.node));
    if (marks.byPlanner !== undefined) return 'planner-record';
    if (marks.byOperator !== undefined) return 'operator-record';
    if (this.#datapathLost) return 'datapath-down';
    if (this.#agreement?.disagreement !== undefined) return 'cannot-agree';
    const lease = this.#o.leaseMs ?? DEFAULT_LEASE_MS;
    if (r !== undefined && this.#fence === 'announced' && this.#target(r) >= this.#applied + 2)
      return 'behind';
    if (this.#failingSince !== undefined && now - this.#failingSince > lease) return 'apply-failing';
    // After the reasons to leave: only `announced` acts on it, and it must not hide them from `unknown`.
    if (marks.plannerRaced !== undefined) return 'raced-record';
    if (now - this.#lastStoreOk > lease) return 'store-silent';
    return undefined;
  }

  #storeSilentLogged = false;

  async #maybeFence(now: number): Promise<void> {
    if (this.#o.role !== 'gateway') return;
    const event = this.#fenceEvent(now);
    if (event === 'store-silent' && !this.#storeSilentLogged) {
      this.#storeSilentLogged = true;
      this.#log.warn(
        { event: 'store-silent', generation: this.#applied, silentMs: now - this.#lastStoreOk },
        `no store for ${now - this.#lastStoreOk} ms: forwarding on g${this.#applied} as applied ` +
          '(the planner cannot publish past this gateway without fencing it)',
      );
    }
    if (event === undefined) return;
    const t = nextFence(this.#fence, event, { withdrawOnStoreSilence: this.#o.withdrawOnStoreSilence });
    if (t === undefined) return;
    if (t.action === 'withdraw') {
      try {
        await this.#bird?.withdraw();
        if (this.#o.withdrawCmd) await runHookCommand(this.#o.withdrawCmd, this.#o.node);
      } catch (e) {
        this.#log.error(
          { event: 'withdraw-failed', err: (e as Error).message },
          `withdraw failed: ${(e as Error).message}`,
        );
        return;
      }
    }
    const was = this.#fence;
    this.#setFence(t.to);
    if (t.to === 'withdrawn') {
      this.#log.warn({ event: 'withdrawn', reason: event, was }, `withdrawn from ECMP (${event})`);
    } else if (event === 'raced-record') {
      this.#log.warn(
        { event: 'fence-raced', was },
        "a planner's fence raced this gateway's rejoin (it may have taken it out after the announce): rejoining",
      );
    } else {
      // fenced-by-planner / fenced-by-operator: out already; rejoin (apply, ack, announce) like after a withdrawal.
      const by = t.to === 'fenced-by-planner' ? 'planner' : 'operator';
      this.#log.warn({ event: t.to, was }, `the ${by} fenced this gateway`);
    }
    this.#beatLoop.schedule();
  }

  #setFence(to: FenceState): void {
    if (to !== this.#fence) this.#lastChangeAt = Date.now();
    this.#fence = to;
    this.#m.fenced.set(reportsFenced(to) ? 1 : 0);
  }

  async #writeStatus(r: Replica, target: number, rejoin: boolean): Promise<void> {
    const now = Date.now();
    // Sluice_Status first: the heartbeat, the acknowledgement and, hosts, the latest report if its conntrack read
    // started after the last report went out (the planner counts reports by report_at, written in the same
    // transaction as the report's rows); the heartbeat never waits for a report (#reportTick reads conntrack in its
    // own loop). A rejoin's ack is committed here before the rejoin itself (below), so once the planner waits for
    // this gateway again it either sees the ack or waits for it (docs/design/ovsdb.md, "Acknowledgements").
    const rep = this.#report;
    const fresh = this.#o.role === 'host' && rep !== undefined && rep.startedAt > this.#reportWrittenAt;
    const ack = {
      node: this.#o.node,
      appliedGeneration: this.#applied,
      appliedCfg: this.#appliedCfg,
      appliedAt: this.#appliedAt,
      error: this.#error,
    };
    const inBeat = this.#ackInHeartbeat();
    const ops: Operation[] = heartbeatOps(
      r,
      this.#o.node,
      now,
      {
        role: this.#o.role,
        ...(this.#agreement === undefined ? {} : { hashAgreement: this.#agreement.text() }),
        ...(this.#bird === undefined
          ? {}
          : {
              routing:
                this.#routing === undefined
                  ? (this.#routingError ?? 'not read yet')
                  : formatRoutingState(this.#routing),
            }),
        ...(this.#slotAudit.text === undefined ? {} : { slotAudit: this.#slotAudit.text }),
        // Hosts: second-chance packets received per load balancer (the status page sums them).
        ...(this.#o.role === 'host' ? { secondChance: this.#secondChanceJson() } : {}),
        ...(fresh ? { reportAt: String(rep!.startedAt) } : {}),
      },
      inBeat ? ack : undefined,
    );
    if (this.#o.role === 'host') {
      if (fresh) ops.push(...this.#reportOps(r, now, rep!.conns));
      // Refresh the counters for the next heartbeat (at most one bridge read per flowCacheMs; never waited for).
      this.#sharedFlowScrape().catch(() => {});
    }
    await this.client.transact(STATUS_DB_NAME, ...ops);
    this.#lastStoreOk = Date.now();
    this.#storeSilentLogged = false;
    this.#lastHeartbeat = now;
    if (inBeat) [this.#acked, this.#ackedError] = [ack.appliedGeneration, ack.error];
    if (fresh) {
      this.#reportWrittenAt = Date.now();
      this.#committedReportScope = this.#pendingReportScope;
    }
    // Sluice: the fence marks, only when they change (the rollout gates on them), and the rejoin with a new token
    // (the planner sees every rejoin, and a fence it decided before this one does not count).
    const token = rejoin ? randomUUID() : undefined;
    const marks = {
      fenced: reportsFenced(this.#fence) && !rejoin,
      role: this.#o.role,
      clearFenceRecords: rejoin,
      ...(token === undefined ? {} : { rejoin: token }),
      ...(this.#announced === undefined ? {} : { announced: this.#announced }),
    };
    // Without the roles for it, the ack goes here as before 1.1.0, in the rejoin's own transaction.
    const ackDue = !inBeat && (this.#acked !== ack.appliedGeneration || this.#ackedError !== ack.error);
    if (!rejoin && !ackDue && agentMarksCurrent(nodeStatus(r, this.#o.node), marks)) return;
    // A rejoin commits only if the generation applied is still the released one: then the planner cannot get two
    // generations ahead of us before it waits for us again (it gates on us from the moment this commits). It also
    // deletes the planner's (or operator's) fence record: the ack and the announcement that follows supersede it.
    const marksOps = [
      ...(rejoin ? [stillReleasedOp(target)] : []),
      ...(inBeat ? nodeRowOps(r, this.#o.node) : nodeStatusAckOps(r, ack)),
      agentMarksOp(this.#o.node, marks),
    ];
    try {
      await this.client.transact(DB_NAME, ...marksOps);
    } catch (e) {
      if (rejoin && isConflict(e)) {
        this.#log.info(
          { event: 'rejoin-retry' },
          'a newer generation was released meanwhile: applying it before re-announcing',
        );
        return;
      }
      throw e;
    }
    if (!inBeat) [this.#acked, this.#ackedError] = [ack.appliedGeneration, ack.error];
    if (token !== undefined) this.#announce(token);
  }

  #ackDenied: readonly string[] = [];

  /** Whether the store's roles let this agent acknowledge in its heartbeat (heartbeatAckDenied); logs each change. A
   *  heartbeat they refuse would leave the node silent: a gateway the planner fences, a host it stops waiting for. */
  #ackInHeartbeat(): boolean {
    const denied = this.#roles === undefined ? [] : heartbeatAckDenied(this.#roles.replica);
    if (denied.join() !== this.#ackDenied.join()) {
      this.#acked = -1; // acknowledge again where it goes now
      if (denied.length > 0) this.#log.error({ event: 'ack-denied', columns: denied }, ackDeniedHint(denied));
      else
        this.#log.info(
          { event: 'ack-granted' },
          'the store lets this agent acknowledge in Node_Heartbeat again',
        );
      this.#ackDenied = denied;
    }
    return denied.length === 0;
  }

  /** After the rejoin ack: --announce-cmd in the background, heartbeats (fenced=false) go on meanwhile, so the
   *  planner keeps waiting for this gateway. When the command ended (either way), the next marks say so (the rejoin's
   *  token as `announced`): only then may the planner fence this gateway. */
  #announce(token: string): void {
    const was = this.#fence;
    const t = nextFence(was, 'rejoin-acked');
    if (t === undefined) return;
    this.#setFence(t.to);
    const cmd = this.#o.announceCmd;
    // The hook first (in the lab it re-opens the router's side of a fenced session), then the VIP routes.
    (cmd ? runHookCommand(cmd, this.#o.node) : Promise.resolve())
      .then(() => this.#bird?.announce())
      .then(() => {
        this.#setFence(nextFence(this.#fence, 'announce-ok')?.to ?? this.#fence);
        this.#log.info(
          { event: 'announced', generation: this.#applied, was },
          `announced in ECMP at g${this.#applied}`,
        );
      })
      .catch((e: unknown) => {
        this.#setFence(nextFence(this.#fence, 'announce-failed')?.to ?? this.#fence);
        this.#log.error(
          { event: 'announce-failed', err: (e as Error).message },
          `announce failed: ${(e as Error).message}`,
        );
      })
      .finally(() => {
        this.#announced = token;
        this.#beatLoop.schedule();
      });
  }

  /**
   * A backend's health as reported: the checker's state, except that a backend whose port is missing on this host
   * (not in the node facts) is `gone`. Only `gone` drops a backend's connections from the chains; a failing health
   * check alone (`down`) only stops new connections (docs/design/rollout.md, "Health").
   */
  #healthOf(id: string, address: string): 'unknown' | 'up' | 'down' | 'gone' {
    if (this.#vms()[address] === undefined) return 'gone';
    return this.health?.state(id) ?? 'unknown';
  }

  /** Hosts: caps sluice's conntrack zone (a SYN flood cannot grow it without bound, nor the report's read). */
  async #limitConntrack(): Promise<void> {
    const limit = this.#o.ctLimit ?? 200_000;
    if (limit <= 0) return;
    try {
      const zone = ctZoneOf(this.#facts);
      await this.#o.runner.appctl(['dpctl/ct-set-limits', `zone=${zone},limit=${limit}`]);
      this.#m.ctLimit.set(limit);
      this.#log.info({ event: 'ct-limit', zone, limit }, `conntrack zone ${zone} limited to ${limit}`);
    } catch (e) {
      this.#log.error(
        { event: 'ct-limit-failed', err: (e as Error).message },
        `ct-set-limits failed: ${(e as Error).message}`,
      );
    }
  }

  /** Hosts: one connection report (conntrack read and count) with a deadline, in its own loop. */
  async #reportTick(): Promise<void> {
    const config = this.#appliedConfig;
    const generation = this.#appliedGeneration;
    if (this.#reporting || this.#stopped || config === undefined) return;
    this.#reporting = true;
    const startedAt = Date.now();
    const limit = this.#o.reportTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const zone = ctZoneOf(this.#facts);
      const entries = await Promise.race([
        readConntrack(this.#o.runner, zone),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`conntrack read took more than ${limit} ms`)), limit);
        }),
      ]);
      const ids = generation === undefined ? undefined : this.#appliedIdMaps(config, generation).ids;
      const conns = countSlotConnections(entries, config, zone, ids);
      if (generation !== undefined)
        this.#maybeAuditSlots(
          config,
          generation,
          entries.filter((e) => e.zone === zone),
          startedAt,
        );
      // A failing check may mean the backend's port is gone: read the facts again to tell (cheap when all are up).
      if (this.health?.anyDown()) await this.#refreshFacts();
      this.#report = { conns, startedAt };
      this.#conns = conns;
      for (const [state, n] of Object.entries(conns.states)) this.#m.ctEntries.set({ state }, n);
      this.#reportError = undefined;
    } catch (e) {
      this.#m.reportFailures.inc();
      const msg = (e as Error).message;
      if (this.#reportError !== msg)
        this.#log.warn(
          { event: 'report-failed', err: msg },
          `connection report failed (heartbeats go on): ${msg}`,
        );
      this.#reportError = msg;
    } finally {
      clearTimeout(timer);
      this.#reporting = false;
    }
  }

  #idsMemo: AppliedIdMaps | undefined;

  /** lbIdsOf of the applied config and generation and its inverse, once per generation: connection reports (twice
   *  a second) and flow scrapes used to build these maps of every load balancer each time (four 10,000-entry maps at
   *  10,000 VIPs). */
  #appliedIdMaps(config: Config, generation: Generation): AppliedIdMaps {
    const m = this.#idsMemo;
    if (m?.config === config && m.generation === generation) return m;
    const ids = lbIdsOf(config, generation);
    this.#idsMemo = { config, generation, ids, names: lbNamesById(ids) };
    return this.#idsMemo;
  }

  /** Hosts: the live slot audit over the entries the connection report read, at most every `slotAuditMs`. */
  #maybeAuditSlots(config: Config, generation: Generation, entries: readonly CtEntry[], now: number): void {
    const was = this.#slotAudit.text;
    const summary = this.#slotAudit.maybeRun(config, generation, entries, now);
    const text = this.#slotAudit.text;
    if (summary === undefined || text === undefined) return;
    if (summary.state === 'disagree')
      this.#log.warn({ event: 'slot-audit-disagree', summary: text }, `live slot audit: ${text}`);
    else if (was?.split(':')[0] !== text.split(':')[0])
      this.#log.info({ event: 'slot-audit', state: summary.state }, `live slot audit: ${text}`);
  }

  /** Whether a full report set every local backend's gauges (after that, only those whose row changes are set). */
  #gaugesFilled = false;
  /** What the last written report covered (hosts; set once its transaction committed). */
  #committedReportScope: ReportScope | undefined;
  /** The scope of the report in the transaction being written. */
  #pendingReportScope: ReportScope | undefined;
  /** Backend_Status and Slot_Connections rows by key, following the replica's changes (src/agent/status-index.ts). */
  #statusIndex: { replica: Replica; index: StatusIndex } | undefined;

  #indexStatusRows(r: Replica): StatusIndex {
    if (this.#statusIndex?.replica !== r) {
      this.#statusIndex?.index.close();
      this.#statusIndex = { replica: r, index: new StatusIndex(r) };
    }
    return this.#statusIndex.index.current();
  }

  /**
   * A host's connection report: Slot_Connections per load balancer, Backend_Status per local backend, written where
   * they differ from the stored rows. Work proportional to what can have changed: after a report with the same
   * config, health results and facts, only the load balancers with connections now or in that report are looked at
   * (10,000 VIPs: 100,000 local backends, twice a second, used to keep a host agent's core busy).
   */
  #reportOps(r: Replica, now: number, conns: SlotConnections): Operation[] {
    const config = this.#appliedConfig;
    if (config === undefined) return [];
    const { scope, full, lbs } = reportScope(this.#committedReportScope, now, {
      config,
      health: this.health?.version ?? 0,
      vms: this.#vms(),
      active: new Set(conns.counts.keys()),
    });
    this.#pendingReportScope = scope;
    const { slots: slotRows, status: statusRows } = this.#indexStatusRows(r);
    const ops: Operation[] = [];
    const found = { slots: 0, status: 0 };
    for (const lb of lbs) ops.push(...this.#reportLbOps(lb, config, now, conns, slotRows, statusRows, found));
    if (!full) return ops;
    this.#gaugesFilled = true;
    // Rows of load balancers and backends that are gone (only a full report knows every one).
    const gone = goneReportRows(config, this.#o.node, slotRows, statusRows, found);
    for (const row of gone.slots) ops.push(remove(SlotConnectionsTable, byUuid(row._uuid)));
    for (const row of gone.status) ops.push(remove(BackendStatusTable, byUuid(row._uuid)));
    return ops;
  }

  /** One load balancer's part of #reportOps (`found` counts the stored rows it has). */
  #reportLbOps(
    lb: LoadBalancer,
    config: Config,
    now: number,
    conns: SlotConnections,
    slotRows: ReadonlyMap<string, SlotConnectionsRow>,
    statusRows: ReadonlyMap<string, BackendStatusRow>,
    found: { slots: number; status: number },
  ): Operation[] {
    const ops: Operation[] = [];
    const perSlot = conns.counts.get(lb.name) ?? new Map();
    const counts = encodeSlotCounts(perSlot);
    const bits = lbSlotBits(config.slotBits, lb.backends.length);
    const row = slotRows.get(lb.name);
    if (row !== undefined) found.slots++;
    if (row === undefined)
      ops.push(
        insert(SlotConnectionsTable, {
          node: this.#o.node,
          lb: lb.name,
          generation: this.#applied,
          bits,
          counts,
          reported_at: now,
        }),
      );
    else if (row.counts !== counts || row.bits !== bits)
      ops.push(
        update(SlotConnectionsTable, byUuid(row._uuid), {
          generation: this.#applied,
          bits,
          counts,
          reported_at: now,
        }),
      );
    for (const b of lb.backends) {
      if (b.host !== this.#o.node) continue;
      const key = backendKey(b);
      const id = `${lb.name} ${key}`;
      let n = 0;
      for (const perKey of perSlot.values()) n += perKey.get(key) ?? 0;
      const health = this.#healthOf(id, b.address);
      const cur = statusRows.get(id);
      if (cur !== undefined) found.status++;
      // The gauges where the stored row differs (each set replaces prom-client's entry: 200,000 long-lived objects
      // made garbage per full report at 10,000 VIPs), and all of them until a full report filled them once.
      if (!this.#gaugesFilled || cur === undefined || cur.health !== health || cur.connections !== n) {
        this.#m.health.set(
          { lb: lb.name, backend: key },
          health === 'up' ? 1 : health === 'unknown' ? -1 : 0,
        );
        this.#m.connections.set({ lb: lb.name, backend: key }, n);
      }
      // The latest probe's result is written when it changes (not every round): a falling or rising backend shows.
      const want = { health, connections: n, last_ok: this.health?.lastOk(id) };
      if (cur === undefined)
        ops.push(
          insert(BackendStatusTable, {
            node: this.#o.node,
            lb: lb.name,
            backend: key,
            ...want,
            checked_at: now,
          }),
        );
      else if (cur.health !== health || cur.connections !== n || cur.last_ok !== want.last_ok)
        ops.push(update(BackendStatusTable, byUuid(cur._uuid), { ...want, checked_at: now }));
    }
    return ops;
  }

  #flowScrape: Promise<void> | undefined;
  readonly #counts = new ReadingCounters();
  /** Second-chance packets this host received per load balancer, since the agent started (reported in heartbeats). */
  readonly #secondChanceTotals = new Map<string, number>();

  /** The heartbeat's second-chance totals: load balancers with none are left out (readers count them as 0), so a
   *  heartbeat carries what happened, not one entry per load balancer (10,000 VIPs: ~100 KB, twice a second). */
  #secondChanceJson(): string {
    const some = [...this.#secondChanceTotals].filter(([, n]) => n > 0).sort(([a], [b]) => (a < b ? -1 : 1));
    return JSON.stringify(Object.fromEntries(some));
  }

  /** One bridge dump shared by every gauge and every scrape for `flowCacheMs` (default 5 s): scrapes, the status
   *  page and several Prometheus servers cost at most one pair of `dump-flows` per period. */
  #sharedFlowScrape(): Promise<void> {
    this.#flowScrape ??= this.#collectFlows().finally(() => {
      setTimeout(() => {
        this.#flowScrape = undefined;
      }, this.#o.flowCacheMs ?? 5000).unref();
    });
    return this.#flowScrape;
  }

  async #collectFlows(): Promise<void> {
    const [config, generation] = [this.#appliedConfig, this.#appliedGeneration];
    const names =
      config === undefined || generation === undefined
        ? new Map<number, string>()
        : this.#appliedIdMaps(config, generation).names;
    const counter = new FlowCounter(names);
    // Line by line when the runner streams (never the whole dump in memory: src/agent/flow-counts.ts).
    const runner = this.#o.runner;
    for (const br of [this.#facts.bridges.int, this.#facts.bridges.phy]) {
      const add = (line: string) => counter.add(line);
      if (runner.ofctlLines) await runner.ofctlLines(br, ['dump-flows'], add, { allowFail: true });
      else
        for (const line of (await runner.ofctl(br, ['dump-flows'], { allowFail: true })).stdout.split('\n'))
          add(line);
    }
    const { byKind, perLb } = counter.counts();
    this.#m.flows.reset();
    for (const [kind, k] of byKind) {
      this.#m.flows.set({ kind }, k.flows);
      this.#counts.advance(this.#m.packets, { kind }, k.packets);
    }
    this.#counts.advance(this.#m.secondChanceSent, {}, byKind.get('SECOND_CHANCE')?.packets ?? 0);
    for (const [lb, n] of perLb)
      this.#secondChanceTotals.set(lb, this.#counts.advance(this.#m.secondChance, { lb }, n));
    const meter = this.#o.role === 'host' ? SYN_METER_ID : ICMP_METER_ID;
    if (this.#o.role === 'host' ? (this.#o.synRate ?? 0) > 0 : icmpRate(this.#compileFacts()) > 0) {
      const r = await this.#o.runner.ofctl(this.#facts.bridges.int, ['meter-stats', `meter=${meter}`], {
        allowFail: true,
      });
      const m = parseMeterStats(r.stdout).get(meter);
      const [packets, dropped] =
        this.#o.role === 'host'
          ? [this.#m.synMeterPackets, this.#m.synMeterDropped]
          : [this.#m.icmpMeterPackets, this.#m.icmpMeterDropped];
      this.#counts.advance(packets, {}, m?.packets ?? 0);
      this.#counts.advance(dropped, {}, m?.dropped ?? 0);
    }
  }
}

/** A generation the store holds but no agent may apply: a Plan_Pool that does not decode (SLUICE_E_OVSDB_VALUE) or a
 *  config document that does not validate. */
function isRefusal(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  // SLUICE_E_XDP without XdpDatapathError: a generation the XDP maps cannot hold, refused before any write.
  const xdpRefused = code === 'SLUICE_E_XDP' && !(e instanceof XdpDatapathError);
  return (
    code === 'SLUICE_E_OVSDB_VALUE' ||
    code === 'SLUICE_E_CONFIG_INVALID' ||
    xdpRefused ||
    e instanceof SyntaxError
  );
}
