// Controller side of the traffic harness: starts conn-runner processes inside client namespaces, follows their
// JSON-line output, and aggregates counters (opened / alive / broken / failed, spread per backend).
//
//   const t = await startTraffic(lab, { vip: '203.0.113.10', port: 80, count: 200, rate: 100 });
//   await t.waitOpened(200);
//   ... change something ...
//   const s = await t.stop();   // s.broken === 0, s.perBackend = { 'host1-b1': { opened, ... }, ... }
//
// Each runner's pid is written to `<lab run dir>/pids/runner-<id>.pid`, so labDown kills runners left behind by
// a crashed controller (runners also exit by themselves when their stdin closes).

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { SluiceError } from '../model/errors.ts';
import { runnableScript } from './scripts.ts';
import { tcpUserTimeoutLibrary, USER_TIMEOUT_ENV } from './tcp-user-timeout.ts';
import type { Lab } from './topology.ts';

export interface BackendCounters {
  opened: number;
  alive: number;
  broken: number;
  closed: number;
}

/** Counters of one runner (or an aggregate of several). */
export interface TrafficCounters {
  attempted: number;
  connecting: number;
  opened: number;
  alive: number;
  closed: number;
  broken: number;
  failed: number;
  echoes: number;
  brokenByReason: Record<string, number>;
  failedByReason: Record<string, number>;
  perBackend: Record<string, BackendCounters>;
}

export interface BrokenEvent {
  readonly runner: string;
  readonly id: number;
  readonly backend: string | undefined;
  readonly reason: string;
  readonly localPort: number | undefined;
  readonly ageMs: number;
  /** Date.now() when the runner saw it break; when it sent the oldest payload still unechoed then (about when the
   *  path stopped answering), absent when nothing was in flight. */
  readonly at?: number;
  readonly unechoedSince?: number;
}

export interface FailedEvent {
  readonly runner: string;
  readonly id: number;
  readonly reason: string;
  readonly localPort: number | undefined;
  /** From the connection's start to its failure, ms. */
  readonly ms: number | undefined;
  /** Date.now() when the controller read the event (when it failed, within a pipe's delay). */
  readonly at: number;
}

export interface RunnerOptions {
  /** Client name (`c1`) or namespace. Default: the lab's first client. */
  readonly client?: string;
  /** Run in this lab namespace instead of a client's (e.g. a backend's, to test the harness itself). */
  readonly netns?: string;
  readonly vip: string;
  readonly port: number;
  /** `udp`: each "connection" is a UDP flow (its own source port) answered by the backend's name (conn-runner.ts).
   *  Default `tcp`. */
  readonly protocol?: 'tcp' | 'udp';
  /** Connections to open at start. */
  readonly count?: number;
  /** New connections per second. Default 100. */
  readonly rate?: number;
  /** Milliseconds between two sends on one connection. Default 200. */
  readonly intervalMs?: number;
  /** Echo/connect/greeting timeout (application-level TCP_USER_TIMEOUT). Default 3000. */
  readonly timeoutMs?: number;
  /** TCP only: the kernel's TCP_USER_TIMEOUT on every client socket, ms (tcp-user-timeout.ts): a connection whose
   *  data stays unacknowledged this long fails with ETIMEDOUT (broken, reason `timeout`). Default: not set. */
  readonly tcpUserTimeoutMs?: number;
  /** Greetings accepted as valid backends (others count as `bad-greeting`). */
  readonly expectBackends?: readonly string[];
  /** Counter reports per second from the runner. Default every 500 ms. */
  readonly reportMs?: number;
  /** Emit an event for every opened connection. */
  readonly verbose?: boolean;
}

export function emptyCounters(): TrafficCounters {
  return {
    attempted: 0,
    connecting: 0,
    opened: 0,
    alive: 0,
    closed: 0,
    broken: 0,
    failed: 0,
    echoes: 0,
    brokenByReason: {},
    failedByReason: {},
    perBackend: {},
  };
}

/** Sums counters (pure). */
export function aggregate(list: readonly TrafficCounters[]): TrafficCounters {
  const out = emptyCounters();
  for (const c of list) {
    out.attempted += c.attempted;
    out.connecting += c.connecting;
    out.opened += c.opened;
    out.alive += c.alive;
    out.closed += c.closed;
    out.broken += c.broken;
    out.failed += c.failed;
    out.echoes += c.echoes;
    for (const [k, v] of Object.entries(c.brokenByReason))
      out.brokenByReason[k] = (out.brokenByReason[k] ?? 0) + v;
    for (const [k, v] of Object.entries(c.failedByReason))
      out.failedByReason[k] = (out.failedByReason[k] ?? 0) + v;
    for (const [k, b] of Object.entries(c.perBackend)) {
      const o = out.perBackend[k] ?? { opened: 0, alive: 0, broken: 0, closed: 0 };
      o.opened += b.opened;
      o.alive += b.alive;
      o.broken += b.broken;
      o.closed += b.closed;
      out.perBackend[k] = o;
    }
  }
  return out;
}

/** One line summary, e.g. `opened 400 alive 400 broken 0 failed 0 | host1-b1 101, host2-b1 99, ...`. */
export function formatCounters(c: TrafficCounters): string {
  const spread = Object.entries(c.perBackend)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, b]) => `${k} ${b.alive}/${b.opened}`)
    .join(', ');
  const reasons = (r: Record<string, number>) => {
    const text = Object.entries(r)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    return text ? ` (${text})` : '';
  };
  return (
    `opened ${c.opened} alive ${c.alive} closed ${c.closed} broken ${c.broken}${reasons(c.brokenByReason)}` +
    ` failed ${c.failed}${reasons(c.failedByReason)}${spread ? ` | alive/opened per backend: ${spread}` : ''}`
  );
}

let runnerSeq = 0;

/** One conn-runner process in one client namespace. */
export class TrafficRunner {
  readonly id: string;
  readonly netns: string;
  readonly options: RunnerOptions;
  /** Latest counters reported. */
  counters: TrafficCounters = emptyCounters();
  readonly brokenEvents: BrokenEvent[] = [];
  readonly failedEvents: FailedEvent[] = [];
  /** Opened-connection events (only with `verbose`). */
  readonly openEvents: Array<{ id: number; backend: string; localPort: number }> = [];
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #pidFile: string;
  readonly #waiters = new Set<() => void>();
  #stderr = '';
  #summary: TrafficCounters | undefined;
  readonly #exited: Promise<number | null>;

  private constructor(
    id: string,
    netns: string,
    options: RunnerOptions,
    child: ChildProcessWithoutNullStreams,
    pidFile: string,
  ) {
    this.id = id;
    this.netns = netns;
    this.options = options;
    this.#child = child;
    this.#pidFile = pidFile;
    this.#exited = new Promise((resolve) => {
      // 'close' (not 'exit'): fires after stdout is drained, so the summary line has been read.
      child.on('close', (code) => {
        rmSync(this.#pidFile, { force: true });
        this.#notify();
        resolve(code);
      });
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      this.#stderr = (this.#stderr + d).slice(-2000);
    });
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => this.#onLine(line));
  }

  /** Starts a runner in `lab`'s client namespace. Resolves once the runner reported ready. */
  static async start(lab: Lab, options: RunnerOptions): Promise<TrafficRunner> {
    let netns = options.netns;
    let label = netns?.slice(lab.prefix.length);
    if (netns === undefined) {
      const client = options.client ?? lab.clients[0]?.name;
      const c = lab.clients.find((x) => x.name === client || x.netns === client);
      if (!c) throw new SluiceError('SLUICE_E_USAGE', `no lab client ${String(client)}`);
      netns = c.netns;
      label = c.name;
    } else if (!netns.startsWith(lab.prefix)) {
      throw new SluiceError('SLUICE_E_USAGE', `namespace ${netns} is not part of lab ${lab.prefix}`);
    }
    const script = await runnableScript('conn-runner', lab.config.runRoot);
    const id = `${label}-${process.pid}-${++runnerSeq}`;
    const args = [
      'netns',
      'exec',
      netns,
      process.execPath,
      '--max-old-space-size=128',
      script,
      '--id',
      id,
      '--vip',
      options.vip,
      '--port',
      String(options.port),
      '--count',
      String(options.count ?? 0),
      '--rate',
      String(options.rate ?? 100),
      '--interval',
      String(options.intervalMs ?? 200),
      '--timeout',
      String(options.timeoutMs ?? 3000),
      '--report-ms',
      String(options.reportMs ?? 500),
      ...(options.expectBackends ? ['--expect', options.expectBackends.join(',')] : []),
      ...(options.verbose ? ['--verbose'] : []),
      ...(options.protocol === 'udp' ? ['--udp'] : []),
    ];
    const env =
      options.tcpUserTimeoutMs === undefined
        ? process.env
        : {
            ...process.env,
            LD_PRELOAD: await tcpUserTimeoutLibrary(lab.config.runRoot),
            [USER_TIMEOUT_ENV]: String(options.tcpUserTimeoutMs),
          };
    const child = spawn('ip', args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    const pidFile = `${lab.facts.runDir}/pids/runner-${id}.pid`;
    if (child.pid !== undefined) writeFileSync(pidFile, `${child.pid}\n`);
    const r = new TrafficRunner(id, netns, options, child, pidFile);
    await r.waitUntil(() => r.#ready, 10_000, 'runner ready');
    return r;
  }

  #ready = false;

  #onLine(line: string): void {
    let ev: Record<string, unknown>;
    try {
      ev = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    switch (ev.ev) {
      case 'ready':
        this.#ready = true;
        break;
      case 'counters':
        this.counters = pickCounters(ev);
        break;
      case 'summary':
        this.counters = pickCounters(ev);
        this.#summary = this.counters;
        break;
      case 'broken':
        this.brokenEvents.push({
          runner: this.id,
          id: ev.id as number,
          backend: ev.backend as string | undefined,
          reason: ev.reason as string,
          localPort: ev.localPort as number | undefined,
          ageMs: ev.ageMs as number,
          ...(typeof ev.at === 'number' ? { at: ev.at } : {}),
          ...(typeof ev.unechoedSince === 'number' ? { unechoedSince: ev.unechoedSince } : {}),
        });
        break;
      case 'failed':
        this.failedEvents.push({
          runner: this.id,
          id: ev.id as number,
          reason: ev.reason as string,
          localPort: ev.localPort as number | undefined,
          ms: ev.ms as number | undefined,
          at: Date.now(),
        });
        break;
      case 'open':
        this.openEvents.push({
          id: ev.id as number,
          backend: ev.backend as string,
          localPort: ev.localPort as number,
        });
        break;
      default:
        break;
    }
    this.#notify();
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  #send(obj: object): void {
    if (this.#child.stdin.writable) this.#child.stdin.write(`${JSON.stringify(obj)}\n`);
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Resolves when `pred()` holds (checked on every runner event); rejects after `timeoutMs`. */
  waitUntil(pred: () => boolean, timeoutMs: number, what = 'condition'): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pred()) {
          cleanup();
          resolve();
        } else if (!this.running) {
          cleanup();
          reject(new SluiceError('SLUICE_E_LAB_COMMAND', `runner ${this.id} exited: ${this.#stderr.trim()}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new SluiceError(
            'SLUICE_E_LAB_COMMAND',
            `runner ${this.id}: timed out after ${timeoutMs} ms waiting for ${what} (${formatCounters(this.counters)})${this.#stderr ? `; stderr: ${this.#stderr.trim()}` : ''}`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
    });
  }

  /** Opens `count` more connections (at `rate` per second if given). */
  open(count: number, rate?: number): void {
    this.#send({ cmd: 'open', count, rate });
  }

  /** Closes `count` alive connections gracefully (they count as closed, not broken). */
  close(count: number): void {
    this.#send({ cmd: 'close', count });
  }

  /** Asks for fresh counters and resolves with them. */
  async report(timeoutMs = 5000): Promise<TrafficCounters> {
    const before = this.counters;
    this.#send({ cmd: 'report' });
    await this.waitUntil(() => this.counters !== before, timeoutMs, 'a report');
    return this.counters;
  }

  /** Stops: closes every connection gracefully, resolves with the final summary. */
  async stop(timeoutMs = 10_000): Promise<TrafficCounters> {
    if (this.#summary) return this.#summary;
    this.#send({ cmd: 'stop' });
    this.#child.stdin.end();
    try {
      await this.waitUntil(() => this.#summary !== undefined, timeoutMs, 'the summary');
    } finally {
      if (this.running) this.#child.kill('SIGKILL');
      await this.#exited;
    }
    return this.#summary!;
  }

  /** Kills the runner without a summary (cleanup after a failed test). */
  async kill(): Promise<void> {
    if (this.running) this.#child.kill('SIGKILL');
    await this.#exited;
  }
}

function pickCounters(ev: Record<string, unknown>): TrafficCounters {
  const c = emptyCounters();
  for (const k of [
    'attempted',
    'connecting',
    'opened',
    'alive',
    'closed',
    'broken',
    'failed',
    'echoes',
  ] as const) {
    c[k] = Number(ev[k] ?? 0);
  }
  c.brokenByReason = (ev.brokenByReason as Record<string, number>) ?? {};
  c.failedByReason = (ev.failedByReason as Record<string, number>) ?? {};
  c.perBackend = (ev.perBackend as Record<string, BackendCounters>) ?? {};
  return c;
}

export interface TrafficOptions extends Omit<RunnerOptions, 'client' | 'count'> {
  /** Total connections, spread evenly over the clients. */
  readonly count: number;
  /** Clients to use (names). Default: every lab client. */
  readonly clients?: readonly string[];
}

/** Several runners (one per client) driven together. */
export class Traffic {
  readonly runners: readonly TrafficRunner[];
  constructor(runners: readonly TrafficRunner[]) {
    this.runners = runners;
  }

  /** Aggregate of the runners' latest counters. */
  counters(): TrafficCounters {
    return aggregate(this.runners.map((r) => r.counters));
  }

  brokenEvents(): BrokenEvent[] {
    return this.runners.flatMap((r) => r.brokenEvents);
  }

  failedEvents(): FailedEvent[] {
    return this.runners.flatMap((r) => r.failedEvents);
  }

  /** Fresh counters from every runner, aggregated. */
  async report(): Promise<TrafficCounters> {
    return aggregate(await Promise.all(this.runners.map((r) => r.report())));
  }

  /** Waits until at least `n` connections in total have opened (greeting received). */
  async waitOpened(n: number, timeoutMs = 30_000): Promise<TrafficCounters> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = this.counters();
      if (c.opened >= n) return c;
      if (c.opened + c.failed >= n && c.failed > 0) {
        const events = this.failedEvents().map(
          (e) =>
            `${e.runner}#${e.id} port ${e.localPort ?? '-'} ${e.reason} after ${e.ms ?? '-'} ms ` +
            `at ${new Date(e.at).toISOString().slice(11, 23)}`,
        );
        throw new SluiceError(
          'SLUICE_E_LAB_COMMAND',
          `connections failed to open: ${formatCounters(c)}; failed: ${events.join(', ')}`,
        );
      }
      if (Date.now() > deadline) {
        throw new SluiceError(
          'SLUICE_E_LAB_COMMAND',
          `only ${c.opened}/${n} connections opened: ${formatCounters(c)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Opens `count` more connections spread over the runners. */
  open(count: number, rate?: number): void {
    spread(count, this.runners.length).forEach((n, i) => {
      if (n > 0) this.runners[i].open(n, rate);
    });
  }

  /** Closes `count` connections spread over the runners. */
  close(count: number): void {
    spread(count, this.runners.length).forEach((n, i) => {
      if (n > 0) this.runners[i].close(n);
    });
  }

  async stop(): Promise<TrafficCounters> {
    return aggregate(await Promise.all(this.runners.map((r) => r.stop())));
  }

  async kill(): Promise<void> {
    await Promise.all(this.runners.map((r) => r.kill()));
  }
}

function spread(total: number, parts: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < parts; i++) out.push(Math.floor(total / parts) + (i < total % parts ? 1 : 0));
  return out;
}

/** Starts one runner per client (default: all lab clients), `count` connections spread over them. */
export async function startTraffic(lab: Lab, opts: TrafficOptions): Promise<Traffic> {
  const clients = opts.clients ?? lab.clients.map((c) => c.name);
  const counts = spread(opts.count, clients.length);
  const rate = (opts.rate ?? 100) / clients.length;
  const runners = await Promise.all(
    clients.map((client, i) => TrafficRunner.start(lab, { ...opts, client, count: counts[i], rate })),
  );
  return new Traffic(runners);
}
