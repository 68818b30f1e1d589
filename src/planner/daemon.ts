// `sluice planner`: the ovn-northd of sluice. Holds the OVSDB lock `sluice_planner` (one active planner, the others
// stand by and take over when the lock is released or its holder's session dies), monitors the desired state, the
// agents' Node_Status, Backend_Status and Slot_Connections, and carries out PlannerCore's decisions: publish a
// generation (hosts), release it to the gateways, prune old plans. Every write starts with `assert` on the lock, so a
// planner that lost the lock (stolen, or its session dropped) cannot publish even before it notices.
// With --fence-cmd, the active planner fences a gateway that went silent for the lease (STONITH: runs the command,
// then records Node_Status external_ids:fenced_by_planner) and stops waiting for it only then; it holds the fence
// (logs `fence-held`) when that would take a majority of the gateways out of ECMP.

import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { runHookCommand } from '../hook-command.ts';
import {
  logReestablished,
  logSessionState,
  type Monitor,
  type MonitorSet,
  OvsdbClient,
  type OvsdbLock,
  type Reestablished,
} from '../ovsdb/client.ts';
import type { TlsFiles } from '../ovsdb/jsonrpc.ts';
import type { DatabaseSchema, Operation } from '../ovsdb/protocol.ts';
import type { Replica } from '../ovsdb/replica.ts';
import type { PlanNote } from '../rollout/planner.ts';
import { describeGeneration } from '../rollout/summary.ts';
import { SerialLoop } from '../serial-loop.ts';
import {
  ALL_TABLES_MONITOR,
  DB_NAME,
  fenceRecordOp,
  find,
  PLANNER_FENCED_KEY,
  PlanTable,
  prunePlansOps,
  publishGenerationOps,
  readStoreView,
  releaseOps,
  reportRoundOps,
  SCHEMA_NEEDS,
  STATUS_DB_HINT,
  STATUS_DB_NAME,
  splitMonitor,
} from '../store/db/index.ts';
import { type PageState, pageState } from '../web/page-model.ts';
import { AckLatency } from './ack-latency.ts';
import { type Decision, PlannerCore } from './core.ts';

/** The OVSDB lock the active planner holds (the others stand by). */
export const PLANNER_LOCK = 'sluice_planner';

export interface PlannerDaemonOptions {
  readonly remotes: readonly string[];
  /** Credentials for ssl: remotes (mutual TLS). */
  readonly tls?: TlsFiles;
  readonly log: Logger;
  readonly leaseMs?: number;
  readonly marginMs?: number;
  /** Plans kept in the store (the latest and the ones before it), default 5. */
  readonly keepPlans?: number;
  /** Re-evaluation period even without store updates (lease expiry, drain windows), ms. Default 500. */
  readonly tickMs?: number;
  readonly registry?: Registry;
  /** Shell command template that takes a gateway out of the upstream ECMP set; the gateway's name is its `$1` and
   *  SLUICE_NODE (`{node}` = `"$1"`; see hook-command.ts: the name is never pasted into the shell text). Without
   *  it, a silent gateway is dropped after lease + margin (trusting its agent to have withdrawn itself). */
  readonly fenceCmd?: string;
  /** Timeout of one fence command run, ms (default 30 000). */
  readonly fenceTimeoutMs?: number;
}

export interface PlannerStatus {
  readonly active: boolean;
  readonly lock: string;
  readonly remote: string | undefined;
  readonly generation: number;
  readonly gatewayGeneration: number;
  readonly lastDecision: string;
  /** Silent gateways the planner does not fence (too many at once), and why. */
  readonly fenceHeld: { readonly nodes: readonly string[]; readonly message: string } | undefined;
  readonly nodes: Record<
    string,
    {
      applied: number;
      live: boolean;
      silentMs: number | undefined;
      fenced: boolean;
      fencedByPlanner: boolean;
      fencedByOperator: boolean;
      error?: string;
    }
  >;
}

function plannerMetrics(registry: Registry) {
  return {
    active: new Gauge({
      name: 'sluice_planner_active',
      help: '1 while this planner holds the lock',
      registers: [registry],
    }),
    published: new Gauge({
      name: 'sluice_planner_generation_published',
      help: 'latest generation in the store',
      registers: [registry],
    }),
    released: new Gauge({
      name: 'sluice_planner_gateway_generation',
      help: 'generation released to gateways',
      registers: [registry],
    }),
    publications: new Counter({
      name: 'sluice_planner_publications_total',
      help: 'generations published by this planner',
      registers: [registry],
    }),
    waiting: new Gauge({
      name: 'sluice_planner_waiting_gateways',
      help: 'live gateways that have not acknowledged the latest generation',
      registers: [registry],
    }),
    waitingHosts: new Gauge({
      name: 'sluice_planner_waiting_hosts',
      help: 'live hosts that have not acknowledged the latest generation',
      registers: [registry],
    }),
    silent: new Gauge({
      name: 'sluice_planner_node_silent_seconds',
      help: 'seconds since the node last heartbeat (planner clock)',
      labelNames: ['node'],
      registers: [registry],
    }),
    live: new Gauge({
      name: 'sluice_planner_node_live',
      help: '1 while the planner waits for the node',
      labelNames: ['node'],
      registers: [registry],
    }),
    fenceHeld: new Gauge({
      name: 'sluice_planner_fence_held',
      help: 'silent gateways not fenced because fencing them would take a majority of the gateways out',
      registers: [registry],
    }),
    ackLatency: new Histogram({
      name: 'sluice_planner_ack_latency_seconds',
      help: 'from the desired-state change a generation was planned from to the node acknowledging it (planner clock)',
      labelNames: ['node'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    }),
    dropped: new Counter({
      name: 'sluice_planner_dropped_connections_total',
      help: "connections of live backends dropped on purpose: a full chain dropped a previous owner once the operator's drain window passed",
      labelNames: ['lb'],
      registers: [registry],
    }),
    chainFull: new Gauge({
      name: 'sluice_planner_chain_full_slots',
      help: 'slots that wait to move: their chain of previous owners is full of owners that hold connections',
      registers: [registry],
    }),
    silentHostSlots: new Gauge({
      name: 'sluice_planner_silent_host_slots',
      help: 'slots that wait to move because an owner (or the target) is on a host whose agent went silent',
      labelNames: ['host'],
      registers: [registry],
    }),
    fences: new Counter({
      name: 'sluice_planner_fences_total',
      help: 'fence commands run by this planner, by result',
      labelNames: ['node', 'result'],
      registers: [registry],
    }),
  };
}

export class PlannerDaemon {
  readonly client: OvsdbClient;
  readonly core: PlannerCore;
  readonly registry: Registry;
  readonly #opts: PlannerDaemonOptions;
  readonly #log: Logger;
  readonly #metrics: ReturnType<typeof plannerMetrics>;
  #schema: DatabaseSchema | undefined;
  #monitor: MonitorSet | undefined;
  #lock: OvsdbLock | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #loop = new SerialLoop(
    () => this.#step(),
    (e) => this.#log.warn({ event: 'step-failed', err: e.message }, `planner step failed: ${e.message}`),
    () => this.#stopped,
  );
  #lastDecision = '';
  #lastWaitLog = '';
  /** A failed fence command is retried after 2 s (the gateway is waited for meanwhile). */
  readonly #fenceRetryAt = new Map<string, number>();
  /** Gateways this planner fenced whose record is not in the store yet: when and command run time (ms), and the
   *  rejoin token the fence was decided on. */
  readonly #unrecorded = new Map<string, { at: number; ms: number; rejoin: string | undefined }>();
  readonly #acks = new AckLatency();
  #page: { at: number; state: PageState } | undefined;

  constructor(opts: PlannerDaemonOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.core = new PlannerCore({
      leaseMs: opts.leaseMs,
      marginMs: opts.marginMs,
      fencing: opts.fenceCmd !== undefined,
    });
    this.registry = opts.registry ?? new Registry();
    this.#metrics = plannerMetrics(this.registry);
    this.client = new OvsdbClient({
      remotes: opts.remotes,
      tls: opts.tls,
      database: DB_NAME,
      // Locks live per server process: every planner must use the Raft leader to contend for the same lock.
      leaderOnly: opts.remotes.length > 1,
      probeIntervalMs: 2000,
      log: (event, fields) => this.#log.debug({ event, ...fields }, `ovsdb ${event}`),
    });
  }

  get active(): boolean {
    return this.#lock?.held ?? false;
  }

  async start(): Promise<void> {
    this.client.on('state', (to: string, _from: string, why?: Error) => {
      // Back with a fresh replica (monitors are re-established before `connected`): silences are measured from now.
      if (to === 'connected') this.core.resync(Date.now());
      logSessionState(this.#log, to, this.client.remote, why);
    });
    await this.client.connect();
    this.#schema = await this.client.getSchema(DB_NAME);
    // Sluice and Sluice_Status, one monitor each (each resumes from its own last transaction), read as one replica.
    this.#monitor = await this.client.monitorDatabases(
      splitMonitor(ALL_TABLES_MONITOR),
      STATUS_DB_HINT,
      SCHEMA_NEEDS,
    );
    this.#monitor.on('update', () => this.#schedule());
    this.#monitor.on('reestablished', (r: Reestablished, m: Monitor) => logReestablished(this.#log, r, m));
    this.#lock = await this.client.lock(PLANNER_LOCK);
    this.#lock.on('state', (state: string, reason: string) => {
      this.#metrics.active.set(state === 'held' ? 1 : 0);
      this.#log.info(
        { event: 'lock', state, reason },
        state === 'held' ? 'planner active (lock held)' : `planner standing by (lock ${state}: ${reason})`,
      );
      if (state === 'held') this.#schedule();
    });
    this.#metrics.active.set(this.#lock.held ? 1 : 0);
    this.#log.info(
      { event: 'lock', state: this.#lock.state },
      this.#lock.held ? 'planner active (lock held)' : 'planner standing by',
    );
    this.#timer = setInterval(() => this.#schedule(), this.#opts.tickMs ?? 500);
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.client.close();
  }

  status(): PlannerStatus {
    const now = Date.now();
    const r = this.#monitor?.replica;
    const view = r ? readStoreView(r) : undefined;
    const nodes: PlannerStatus['nodes'] = {};
    for (const n of view?.desired?.nodes ?? []) {
      const s = view?.nodeStatus.get(n.name);
      nodes[n.name] = {
        applied: s?.appliedGeneration ?? 0,
        live: this.core.isLive(n.name, now),
        silentMs: this.core.silentFor(n.name, now),
        fenced: s?.fenced ?? false,
        fencedByPlanner: s?.plannerFenced ?? false,
        fencedByOperator: s?.operatorFenced ?? false,
        ...(s?.error ? { error: s.error } : {}),
      };
    }
    return {
      active: this.active,
      lock: PLANNER_LOCK,
      remote: this.client.remote,
      generation: view?.latest?.number ?? 0,
      gatewayGeneration: view?.gatewayGeneration ?? 0,
      lastDecision: this.#lastDecision,
      fenceHeld: this.core.fenceHeld(now),
      nodes,
    };
  }

  /** What the status page shows (src/web/page-model.ts), from this planner's replica of the store. */
  pageState(): PageState {
    const r = this.#monitor?.replica;
    if (r === undefined) throw new Error('not connected to the store yet');
    // One computation per second however many pages poll (it replans to find the waiting slots).
    const now = Date.now();
    if (this.#page === undefined || now - this.#page.at >= 1000)
      this.#page = {
        at: now,
        state: pageState(r, { active: this.active, lastDecision: this.#lastDecision }, now, this.core.plans),
      };
    return this.#page.state;
  }

  #schedule(): void {
    this.#loop.schedule();
  }

  async #step(): Promise<void> {
    const replica = this.#monitor?.replica;
    if (replica === undefined || this.#schema === undefined) return;
    const now = Date.now();
    const view = readStoreView(replica);
    this.core.observe(view, now);
    this.#metrics.published.set(view.latest?.number ?? 0);
    this.#metrics.released.set(view.gatewayGeneration);
    this.#observeAcks(view, replica, now);
    for (const n of view.desired?.nodes ?? []) {
      this.#metrics.silent.set({ node: n.name }, (this.core.silentFor(n.name, now) ?? 0) / 1000);
      this.#metrics.live.set({ node: n.name }, this.core.isLive(n.name, now) ? 1 : 0);
    }
    // A fence that ran is a fact: recorded even by a planner that has lost the lock since (else a gateway whose agent
    // is in fact alive could stay out of ECMP with no record telling it to rejoin).
    if (this.#unrecorded.size > 0 && this.client.state === 'connected') await this.#recordFences(replica);
    if (!this.active || this.client.state !== 'connected') return;
    this.#noteFenceHeld(now);
    let d: Decision;
    try {
      d = this.core.decide(now);
    } catch (e) {
      this.#note('invalid', `desired state not plannable: ${(e as Error).message}`, 'error');
      return;
    }
    this.#metrics.waiting.set(d.kind === 'wait' && d.on === 'gateways' ? d.nodes.length : 0);
    this.#metrics.waitingHosts.set(d.kind === 'wait' && d.on === 'hosts' ? d.nodes.length : 0);
    const lockOp: Operation = { op: 'assert', lock: PLANNER_LOCK };
    switch (d.kind) {
      case 'publish': {
        const gen = d.generation;
        // The config document goes in a Plan_Config row shared by every generation planned from it.
        const ops = publishGenerationOps(replica, gen, view.desiredCfg, d.config);
        const keep = this.#opts.keepPlans ?? 5;
        const prune = prunePlansOps(replica, Math.min(gen.number - keep + 1, view.gatewayGeneration));
        await this.client.transact(DB_NAME, lockOp, ...ops, ...prune);
        this.#metrics.publications.inc();
        this.#reportChainNotes(d.notes);
        // Names what moves ("web: 21 slots 10.0.1.11:80 -> 10.0.2.12:80, phase 1"), not just how many.
        const moves = describeGeneration(view.latest, gen);
        const summary = moves.length > 0 ? moves.join('; ') : 'config only, no slot moves';
        this.#note('publish', `published g${gen.number}${summary ? ` (${summary})` : ''}`, 'info', {
          generation: gen.number,
          moves,
          notes: d.notes.map((n) => n.message),
        });
        return;
      }
      case 'release': {
        await this.client.transact(DB_NAME, lockOp, ...releaseOps(d.generation));
        this.#note(
          'release',
          `g${d.generation} released to gateways (every live host acknowledged it)`,
          'info',
          { generation: d.generation },
        );
        return;
      }
      case 'mark-round': {
        await this.client.transact(STATUS_DB_NAME, lockOp, ...reportRoundOps(replica, d.generation, now));
        this.#note(
          'mark-round',
          `g${d.generation}: ack round complete, waiting for fresh connection reports`,
          'info',
          {
            generation: d.generation,
          },
        );
        return;
      }
      case 'fence': {
        this.#note('fence', d.message, 'warn', { nodes: d.nodes });
        for (const node of d.nodes) await this.#fence(node, d.rejoins.get(node));
        return;
      }
      case 'wait': {
        const level =
          d.on === 'gateways' && d.nodes.some((n) => (this.core.silentFor(n, now) ?? 0) > 2000)
            ? 'warn'
            : 'info';
        this.#note('wait', d.message, level, { on: d.on, nodes: d.nodes });
        return;
      }
      case 'idle':
        this.#reportChainNotes(d.notes);
        // What it is idle at: a reader (the e2e tests' convergence wait) knows nothing more comes for this state.
        this.#note('idle', d.message, 'info', {
          generation: view.latest?.number ?? 0,
          desiredCfg: view.desiredCfg,
          waits: d.notes
            .filter((n) => n.kind === 'waits' || n.kind === 'chain-full' || n.kind === 'silent-host')
            .map((n) => n.message),
        });
        return;
    }
  }

  #fenceHeld = '';

  /** Logs (once per change) the silent gateways the planner does not fence because they are too many at once. */
  #noteFenceHeld(now: number): void {
    const held = this.core.fenceHeld(now);
    const key = held?.nodes.join(',') ?? '';
    this.#metrics.fenceHeld.set(held?.nodes.length ?? 0);
    if (key === this.#fenceHeld) return;
    this.#fenceHeld = key;
    if (held) this.#log.warn({ event: 'fence-held', nodes: held.nodes }, held.message);
    else this.#log.info({ event: 'fence-held', nodes: [] }, 'no fence held');
  }

  /** Runs the fence command for a gateway, then records it (only after it succeeded: the record is what stops the
   *  planner waiting for the gateway). A failure is retried 2 s later; the gateway is waited for meanwhile. */
  async #fence(node: string, rejoin: string | undefined): Promise<void> {
    const t0 = Date.now();
    if ((this.#fenceRetryAt.get(node) ?? 0) > t0) return;
    try {
      await runHookCommand(this.#opts.fenceCmd!, node, this.#opts.fenceTimeoutMs ?? 30_000);
      this.#fenceRetryAt.delete(node);
    } catch (e) {
      this.#fenceRetryAt.set(node, Date.now() + 2000);
      this.#metrics.fences.inc({ node, result: 'failed' });
      this.#note('fence-failed', `fencing ${node} failed: ${(e as Error).message}`, 'error', { node });
      return;
    }
    this.#metrics.fences.inc({ node, result: 'ok' });
    this.#unrecorded.set(node, { at: Date.now(), ms: Date.now() - t0, rejoin });
    const replica = this.#monitor?.replica;
    if (replica !== undefined) await this.#recordFences(replica);
  }

  /** Writes Node_Status external_ids:fenced_by_planner for every fence not recorded yet (retried at every step). */
  async #recordFences(replica: Replica): Promise<void> {
    for (const [node, { at, ms, rejoin }] of [...this.#unrecorded]) {
      // With the rejoin token the fence was decided on: a rejoin since then voids the record (fenceMarks).
      const op = fenceRecordOp(replica, node, PLANNER_FENCED_KEY, at, rejoin);
      try {
        await this.client.transact(DB_NAME, op);
      } catch (e) {
        this.#note(
          'fence-record-failed',
          `recording the fence of ${node} failed: ${(e as Error).message}`,
          'warn',
          {
            node,
          },
        );
        continue;
      }
      this.#unrecorded.delete(node);
      this.#log.warn(
        { event: 'fenced', node, ms, silentMs: this.core.silentFor(node, Date.now()) },
        `fenced ${node} (fence command succeeded in ${ms} ms; recorded in the store)`,
      );
    }
  }

  /** Change-to-acknowledged latency of every new acknowledgement (active planner only: one series per cluster). */
  #observeAcks(view: ReturnType<typeof readStoreView>, replica: Replica, now: number): void {
    const acked = new Map([...view.nodeStatus].map(([n, s]) => [n, s.appliedGeneration]));
    const plan = (g: number) => {
      const row = find(replica, PlanTable, (p) => p.generation === g);
      return row === undefined ? undefined : { desiredCfg: row.desired_cfg, createdAt: row.created_at };
    };
    for (const s of this.#acks.observe(view.desiredCfg, acked, plan, now))
      if (this.active) this.#metrics.ackLatency.observe({ node: s.node }, s.seconds);
  }

  /**
   * Connections dropped on purpose (gave-up: the operator's drain window let a full chain drop a previous owner)
   * are counted and logged as warnings, never silent; slots waiting on a full chain are a gauge (and `sluice
   * status` recomputes the planner's notes from the store: store/operator.ts slotWaits).
   */
  #reportChainNotes(notes: readonly PlanNote[]): void {
    for (const n of notes) {
      if (n.kind !== 'gave-up') continue;
      this.#metrics.dropped.inc({ lb: n.lb }, n.connections ?? 0);
      this.#log.warn({ event: 'gave-up', lb: n.lb, connections: n.connections ?? null }, n.message);
    }
    const full = notes.filter((n) => n.kind === 'chain-full');
    this.#metrics.chainFull.set(full.reduce((t, n) => t + n.slots.length, 0));
    // Slots held by a silent host, per host; a host that no longer holds any goes back to 0.
    const held = new Map<string, number>([...this.#silentHostsSeen].map((h) => [h, 0]));
    for (const n of notes)
      if (n.kind === 'silent-host' && n.host !== undefined)
        held.set(n.host, (held.get(n.host) ?? 0) + n.slots.length);
    for (const [host, slots] of held) {
      this.#metrics.silentHostSlots.set({ host }, slots);
      this.#silentHostsSeen.add(host);
      if (slots > 0 && !this.#silentLogged.has(host))
        this.#log.warn({ event: 'silent-host', host, slots }, `${slots} slots wait on silent host ${host}`);
    }
    this.#silentLogged = new Set([...held].filter(([, n]) => n > 0).map(([h]) => h));
  }

  readonly #silentHostsSeen = new Set<string>();
  /** Hosts whose held slots were logged (logged again only after they held none). */
  #silentLogged = new Set<string>();

  /** Logs a decision once (not on every tick). */
  #note(
    event: string,
    message: string,
    level: 'info' | 'warn' | 'error',
    fields: Record<string, unknown> = {},
  ): void {
    this.#lastDecision = message;
    if (event !== 'publish' && event !== 'release' && message === this.#lastWaitLog) return;
    this.#lastWaitLog = message;
    this.#log[level]({ event, ...fields }, message);
  }
}
