// Health checks of a host's local backends: a TCP connect every `intervalMs`, failing after `timeoutMs`; a backend
// turns `up` after `rise` consecutive successes and `down` after `fall` consecutive failures (HAProxy's rise/fall).
// The transition table is explicit (one row per allowed change, a test each); the probe is injectable (tests, lab namespaces).

import { execFile } from 'node:child_process';
import { connect } from 'node:net';

export type HealthState = 'unknown' | 'up' | 'down';

export interface HealthOptions {
  /** Default 1000 ms. */
  readonly intervalMs?: number;
  /** Default 500 ms. */
  readonly timeoutMs?: number;
  /** Consecutive successes to turn up. Default 2. */
  readonly rise?: number;
  /** Consecutive failures to turn down. Default 3. */
  readonly fall?: number;
}

/** A probe: resolves true when the backend accepted a TCP connection within the timeout. */
export type Probe = (address: string, port: number, timeoutMs: number) => Promise<boolean>;

export interface HealthTarget {
  /** Stable id, e.g. `${lb} ${backendKey}`. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
}

/**
 * Transitions of one backend's health (ok = the probe succeeded; streak = consecutive results of that kind):
 *   unknown --ok x rise--> up        unknown --fail x fall--> down
 *   up      --fail x fall--> down    down    --ok x rise--> up
 */
export function nextHealth(
  state: HealthState,
  ok: boolean,
  streak: number,
  rise: number,
  fall: number,
): HealthState {
  if (ok) return state !== 'up' && streak >= rise ? 'up' : state;
  return state !== 'down' && streak >= fall ? 'down' : state;
}

/** TCP connect from this process's network namespace. */
export const tcpProbe: Probe = (address, port, timeoutMs) =>
  new Promise((resolve) => {
    const s = connect({ host: address, port });
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });

/** TCP connect from inside a network namespace (the lab's backends live in their own): bash's /dev/tcp. */
export function netnsProbe(netnsOf: (address: string) => string | undefined): Probe {
  return (address, port, timeoutMs) => {
    const ns = netnsOf(address);
    if (ns === undefined) return tcpProbe(address, port, timeoutMs);
    const host = address.includes(':') ? address : address;
    return new Promise((resolve) => {
      execFile(
        'ip',
        [
          'netns',
          'exec',
          ns,
          'timeout',
          String(timeoutMs / 1000),
          'bash',
          '-c',
          `exec 3<>/dev/tcp/${host}/${port}`,
        ],
        { timeout: timeoutMs + 2000 },
        (err) => resolve(err === null),
      );
    });
  };
}

interface Tracked {
  target: HealthTarget;
  state: HealthState;
  okStreak: number;
  failStreak: number;
  checkedAt: number;
}

/** Probes a set of targets periodically and keeps their state. */
export class HealthChecker {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  readonly #probe: Probe;
  readonly #tracked = new Map<string, Tracked>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  /** Called when a target changes state. */
  onChange: ((id: string, from: HealthState, to: HealthState) => void) | undefined;

  constructor(opts: HealthOptions = {}, probe: Probe = tcpProbe) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.timeoutMs = opts.timeoutMs ?? 500;
    this.rise = opts.rise ?? 2;
    this.fall = opts.fall ?? 3;
    this.#probe = probe;
  }

  /** Sets the targets (new ones start `unknown`; gone ones are forgotten). */
  setTargets(targets: readonly HealthTarget[]): void {
    const ids = new Set(targets.map((t) => t.id));
    for (const id of this.#tracked.keys()) if (!ids.has(id)) this.#tracked.delete(id);
    for (const t of targets) {
      const cur = this.#tracked.get(t.id);
      if (cur === undefined || cur.target.address !== t.address || cur.target.port !== t.port)
        this.#tracked.set(t.id, { target: t, state: 'unknown', okStreak: 0, failStreak: 0, checkedAt: 0 });
    }
  }

  state(id: string): HealthState {
    return this.#tracked.get(id)?.state ?? 'unknown';
  }

  states(): Map<string, { state: HealthState; checkedAt: number }> {
    return new Map([...this.#tracked].map(([id, t]) => [id, { state: t.state, checkedAt: t.checkedAt }]));
  }

  /** One round of probes, in parallel: one probe per distinct address and port, whose result counts for every target
   *  with that address and port (a backend behind 1000 VIPs is one probe, not 1000 processes per round). */
  async checkOnce(): Promise<void> {
    const probes = new Map<string, Promise<boolean>>();
    const probeOf = (t: Tracked) => {
      const key = `${t.target.address} ${t.target.port}`;
      let p = probes.get(key);
      if (p === undefined) {
        p = this.#probe(t.target.address, t.target.port, this.timeoutMs).catch(() => false);
        probes.set(key, p);
      }
      return p;
    };
    await Promise.all(
      [...this.#tracked.values()].map(async (t) => {
        const ok = await probeOf(t);
        if (this.#tracked.get(t.target.id) !== t) return;
        if (ok) {
          t.okStreak++;
          t.failStreak = 0;
        } else {
          t.failStreak++;
          t.okStreak = 0;
        }
        t.checkedAt = Date.now();
        const to = nextHealth(t.state, ok, ok ? t.okStreak : t.failStreak, this.rise, this.fall);
        if (to !== t.state) {
          const from = t.state;
          t.state = to;
          this.onChange?.(t.target.id, from, to);
        }
      }),
    );
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#running) return;
      this.#running = true;
      this.checkOnce().finally(() => {
        this.#running = false;
      });
    }, this.intervalMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}
