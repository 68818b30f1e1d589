// What every step of `sluice demo` works with: the lab and its control plane, the store read the way `sluice status`
// reads it, the planners' decisions from their logs, the traffic, and the moves an operator or the network around
// sluice makes (a CLI edit, the router's ECMP set, a frozen agent). src/lab/demo-steps.ts uses it; demo.ts builds it.

import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceError } from '../model/errors.ts';
import {
  DESIRED_STATE_MONITOR,
  gatewayGeneration,
  nodeAck,
  nodeHeartbeat,
  nodeStatus,
  PLAN_HEAD_MONITOR,
  publishedGeneration,
  publishedPlanHead,
} from '../store/db/index.ts';
import {
  type BackendReport,
  type EditableDocument,
  editDesiredState,
  STATUS_MONITOR,
  StoreSession,
  statusReport,
} from '../store/operator.ts';
import type { ControlPlane } from './control-plane.ts';
import { describeRecord, LogFollower } from './demo-log.ts';
import { labEcmpCommand } from './ecmp.ts';
import { secondChancePackets } from './flow-counters.ts';
import type { Lab } from './topology.ts';
import { aggregate, startTraffic, type Traffic, type TrafficCounters } from './traffic.ts';

export interface DemoStep {
  readonly name: string;
  /** Wall time of the step including its watch period, ms. */
  readonly ms: number;
  /** Packets the hosts handed on by second chance during the step (SECOND_CHANCE flows' n_packets). */
  readonly secondChance: number;
  /** Generations published during the step (read from the store's Global.generation). */
  readonly generations: readonly number[];
  /** Connections broken during the step. */
  readonly broken: number;
  /** What the step's own check found wrong (undefined: it held). */
  readonly problem?: string;
}

/** One scenario of the demo: a change, and what must hold once it settled (besides no broken connection). */
export interface DemoScenario<T = unknown> {
  readonly name: string;
  /** Makes the change and waits until the system settled; returns what the check needs. */
  run(d: DemoSession): Promise<T>;
  /** What went wrong (undefined: the step did what it should). */
  check(d: DemoSession, facts: T): string | undefined;
}

/** The store (`$DB` in the narration) as the CLI names it. */
const DB = '$DB';

export class DemoSession {
  readonly lab: Lab;
  readonly cp: ControlPlane;
  readonly #store: StoreSession;
  readonly say: (line: string) => void;
  /** How long each step is watched with traffic after it happened, ms. */
  readonly watchMs: number;
  /** Every generation the store showed, in order. */
  readonly published: number[] = [];
  /** The planners' decisions (publish, release, wait, idle), from their logs. */
  readonly decisions: Record<string, unknown>[] = [];
  /** Generations the planners' logs say they published. */
  readonly plannerPublished: number[] = [];
  readonly steps: DemoStep[] = [];
  readonly #groups: Traffic[] = [];
  /** UDP flows, counted apart from the TCP connections (the demo's verdict is about those). */
  #udp: Traffic | undefined;
  readonly #frozen = new Set<string>();
  readonly #follower: LogFollower;
  #narrate = false;
  #follow: NodeJS.Timeout | undefined;

  private constructor(
    lab: Lab,
    cp: ControlPlane,
    store: StoreSession,
    say: (l: string) => void,
    watchMs: number,
  ) {
    this.lab = lab;
    this.cp = cp;
    this.#store = store;
    this.say = say;
    this.watchMs = watchMs;
    this.#follower = new LogFollower(cp, (proc, rec) => this.#onRecord(proc, rec));
  }

  /** Opens the store like `sluice status` does and starts following the control plane's logs. */
  static async open(
    lab: Lab,
    cp: ControlPlane,
    say: (l: string) => void,
    watchMs: number,
  ): Promise<DemoSession> {
    // As the operator: TLS with the operator's certificate, through RBAC (src/store/db/rbac.ts).
    const store = await StoreSession.open(
      cp.remoteFor('operator'),
      { ...DESIRED_STATE_MONITOR, ...PLAN_HEAD_MONITOR, ...STATUS_MONITOR },
      5000,
      cp.operatorTls(),
    );
    const d = new DemoSession(lab, cp, store, say, watchMs);
    d.#notePublished();
    store.monitor.on('update', () => d.#notePublished());
    d.#follower.poll();
    d.#narrate = true; // start-up records are summarised by startControlPlane's lines
    d.#follow = setInterval(() => d.#follower.poll(), 250);
    return d;
  }

  #notePublished(): void {
    const g = this.generation();
    if (g > (this.published.at(-1) ?? 0)) this.published.push(g);
  }

  #onRecord(proc: string, rec: Record<string, unknown>): void {
    if (proc.startsWith('planner-') && ['publish', 'release', 'wait', 'idle'].includes(String(rec.event))) {
      this.decisions.push(rec);
      if (rec.event === 'publish') this.plannerPublished.push(rec.generation as number);
    }
    const line = describeRecord(proc, rec);
    if (line !== undefined && this.#narrate) this.say(`  ${line}`);
  }

  /** Reads the logs now (the follower also polls every 250 ms). */
  pollLogs(): void {
    this.#follower.poll();
  }

  /** Stops traffic, thaws frozen agents, closes the store session and stops following logs. */
  async close(): Promise<void> {
    if (this.#follow) clearInterval(this.#follow);
    this.thawAll();
    this.#store.close();
    await Promise.all([...this.#groups, ...(this.#udp ? [this.#udp] : [])].map((g) => g.kill()));
  }

  // ---- the store, read like `sluice status` does ------------------------------------------------------------

  generation(): number {
    return publishedGeneration(this.#store.replica);
  }

  /** The generation released to gateways. */
  released(): number {
    return gatewayGeneration(this.#store.replica);
  }

  applied(node: string): number {
    return this.#ack(node)?.appliedGeneration ?? 0;
  }

  /** The node's last heartbeat value in the store (its own clock), undefined before its first. */
  heartbeat(node: string): number | undefined {
    return nodeHeartbeat(this.#store.replica, node)?.heartbeat_at;
  }

  nodeError(node: string): string | undefined {
    return this.#ack(node)?.error;
  }

  /** Every load balancer's backends as `sluice status` lists them (check, health, latest probe). */
  backendStatus(): readonly BackendReport[] {
    return statusReport(this.#store.replica).backends;
  }

  #status(node: string) {
    return nodeStatus(this.#store.replica, node);
  }

  #ack(node: string) {
    return nodeAck(this.#status(node), nodeHeartbeat(this.#store.replica, node));
  }

  /** desired_cfg the latest generation was planned from. */
  plannedCfg(): number {
    return publishedPlanHead(this.#store.replica)?.desired_cfg ?? 0;
  }

  /** Which generation each gateway applied, e.g. "gw1 on g3, gw2 on g4". */
  skew(): string {
    return this.lab.gateways.map((g) => `${g.name} on g${this.applied(g.name)}`).join(', ');
  }

  // ---- waiting ----------------------------------------------------------------------------------------------

  async until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new SluiceError('SLUICE_E_LAB_COMMAND', `timed out waiting: ${what}`);
      await sleep(100);
    }
  }

  /**
   * Until the planner published a generation for desired_cfg >= `cfg`, every node applied it, it was released to
   * gateways, and the planner's latest decision is `idle`. Resolves with what it still waits for (connections).
   */
  async settled(cfg: number, o: { noWaits?: boolean; timeoutMs?: number } = {}): Promise<string[]> {
    let waits: string[] = [];
    await this.until(
      () => {
        this.#follower.poll();
        const done = this.#rolledOut(cfg);
        const last = this.decisions.at(-1);
        waits = done ? ((last?.waits as string[] | undefined) ?? []) : [];
        return done && (!o.noWaits || waits.length === 0);
      },
      o.timeoutMs ?? 90_000,
      `rollout of desired_cfg ${cfg} (g${this.generation()}, released g${this.released()}, ${this.skew()})`,
    );
    return waits;
  }

  /** Whether desired_cfg `cfg` is planned, applied by every node, released, and the planner idle since. */
  #rolledOut(cfg: number): boolean {
    const g = this.generation();
    const last = this.decisions.at(-1);
    const publishedAt = this.decisions.find((d) => d.event === 'publish' && d.generation === g)?.time as
      | number
      | undefined;
    return (
      this.plannedCfg() >= cfg &&
      this.released() === g &&
      this.lab.nodes.every((n) => this.applied(n.name) === g) &&
      last?.event === 'idle' &&
      (publishedAt === undefined || (last.time as number) >= publishedAt)
    );
  }

  // ---- what the operator and the network around sluice do ----------------------------------------------------

  /** One operator edit, as the CLI makes it (read, edit, validate, guarded write); resolves with desired_cfg. */
  async edit(cli: string, fn: (doc: EditableDocument) => EditableDocument): Promise<number> {
    this.say(`  $ sluice ${cli} --db ${DB}`);
    const e = await editDesiredState(this.#store, fn);
    this.say(`    desired_cfg ${e.desiredCfg}`);
    return e.desiredCfg;
  }

  /** The router stops or starts sending to a gateway: with BGP its BIRD withdraws or announces the VIP routes (what
   *  its agent does), with static routing lab-ecmp.sh edits the router's routes (what its withdraw command runs). */
  async ecmp(gw: string, action: 'withdraw' | 'announce'): Promise<void> {
    if (this.lab.routing === 'bgp') {
      const set = new Set(Object.values(await this.lab.ecmpGateways()).flat());
      if (action === 'withdraw') set.delete(gw);
      else set.add(gw);
      await this.lab.setEcmpGateways([...set].sort());
    } else
      await new Promise<void>((resolve, reject) =>
        execFile('sh', ['-c', labEcmpCommand(this.lab, gw, action)], (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    const set = [...new Set(Object.values(await this.lab.ecmpGateways()).flat())].sort();
    this.say(`  router ECMP set: ${set.join(', ') || '(none)'}`);
  }

  /** Freezes a gateway's agent (SIGSTOP): it can neither apply nor acknowledge. */
  freeze(gw: string): void {
    this.cp.signal(`agent-${gw}`, 'SIGSTOP');
    this.#frozen.add(`agent-${gw}`);
  }

  thaw(gw: string): void {
    this.cp.signal(`agent-${gw}`, 'SIGCONT');
    this.#frozen.delete(`agent-${gw}`);
  }

  thawAll(): void {
    for (const a of this.#frozen) {
      try {
        this.cp.signal(a, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    this.#frozen.clear();
  }

  // ---- traffic ------------------------------------------------------------------------------------------------

  /** Opens `count` long-lived connections to `vip` and waits until they are open. */
  async traffic(vip: string, count: number): Promise<Traffic> {
    const t = await startTraffic(this.lab, {
      vip,
      port: this.lab.config.backendPort,
      count,
      rate: 150,
      intervalMs: 300,
      timeoutMs: 3000,
      expectBackends: this.lab.backends().map((b) => b.name),
    });
    this.#groups.push(t);
    await t.waitOpened(count, 60_000);
    return t;
  }

  /** Opens `count` UDP flows (a datagram a second each) to `vip`, kept apart from the TCP counters. */
  async udpFlows(vip: string, count: number): Promise<void> {
    this.#udp = await startTraffic(this.lab, {
      vip,
      port: this.lab.config.backendPort,
      protocol: 'udp',
      count,
      rate: 50,
      intervalMs: 1000,
      timeoutMs: 3000,
      expectBackends: this.lab.backends().map((b) => b.name),
    });
    await this.#udp.waitOpened(count, 60_000);
  }

  /** Stops the UDP flows; their final counters (undefined: none were opened). */
  async stopUdp(): Promise<TrafficCounters | undefined> {
    const t = this.#udp;
    this.#udp = undefined;
    return t?.stop();
  }

  counters(): TrafficCounters {
    return aggregate(this.#groups.map((g) => g.counters()));
  }

  /** Stops every connection and returns the final counters. */
  async stopTraffic(): Promise<TrafficCounters> {
    return aggregate(await Promise.all(this.#groups.map((g) => g.stop())));
  }

  /** A VIP's address by its name in the lab config. */
  vip(name: string): string {
    return this.lab.config.vips.find((v) => v.name === name)!.vip;
  }

  /** A backend's address by its lab name (e.g. host2-b2). */
  ip(name: string): string {
    return this.lab.backend(name).ip;
  }

  // ---- steps ----------------------------------------------------------------------------------------------

  /** Runs one scenario, watches it with traffic, checks it, and records what it did. */
  async step<T>(scenario: DemoScenario<T>): Promise<void> {
    const name = scenario.name;
    this.say(`=== ${name}`);
    const s0 = Date.now();
    const sc0 = await secondChancePackets(this.lab);
    const g0 = this.generation();
    const b0 = this.counters().broken;
    const facts = await scenario.run(this);
    await sleep(this.watchMs);
    const sc = (await secondChancePackets(this.lab)) - sc0;
    const gens = this.published.filter((n) => n > g0);
    const broken = this.counters().broken - b0;
    const problem = scenario.check(this, facts);
    this.steps.push({ name, ms: Date.now() - s0, secondChance: sc, generations: gens, broken, problem });
    this.say(
      `--- ${name}: ${broken} broken, ${sc} second-chance packets, generations ${gens.map((g) => `g${g}`).join(', ') || '-'}`,
    );
    if (problem !== undefined) this.say(`--- ${name}: CHECK FAILED: ${problem}`);
  }
}
