// Health checks of a host's local backends, per load balancer (docs/config.md, "Health checks"): a TCP connect, a
// UDP datagram (healthy on a reply, or on no ICMP port-unreachable, as configured) or an HTTP(S) GET with an expected
// status, every `intervalMs`, failing after `timeoutMs`; a backend turns `up` after `rise` consecutive successes and
// `down` after `fall` consecutive failures (HAProxy's rise/fall). A load balancer's check overrides the agent's
// defaults field by field. The transition table is explicit (one row per allowed change, a test each); the probe is
// injectable (tests, lab namespaces).

import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { endStdin } from '../child-input.ts';
import { fnv1a32 } from '../hashing/hash.ts';
import type { HealthCheck } from '../model/types.ts';

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
  /** Probes in flight at once, at most (default 64): each holds a socket or a child process, and a host with
   *  thousands of backends must not open them all in one instant (HealthChecker). */
  readonly maxInFlight?: number;
}

/** What a probe does (the probing part of a HealthCheck); absent: a TCP connect. */
export type ProbeSpec = Pick<HealthCheck, 'type' | 'send' | 'expect' | 'path' | 'status'>;

/** A probe: resolves true when the backend passed `spec` (default: accepted a TCP connection) within the timeout. */
export type Probe = (address: string, port: number, timeoutMs: number, spec?: ProbeSpec) => Promise<boolean>;

/** The UDP payload when a check gives none: says who sends it, in a backend's logs. */
export const DEFAULT_UDP_PAYLOAD = 'sluice-health\n';

export interface HealthTarget {
  /** Stable id, e.g. `${lb} ${backendKey}`. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** The load balancer's check; undefined: a TCP connect with the checker's defaults. */
  readonly check?: HealthCheck;
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

/** The probe for `spec`'s type, from this process's network namespace. */
export const localProbe: Probe = (address, port, timeoutMs, spec) => {
  switch (spec?.type ?? 'tcp') {
    case 'udp':
      return udpProbe(address, port, timeoutMs, spec);
    case 'http':
    case 'https':
      return httpProbe(address, port, timeoutMs, spec);
    default:
      return tcpProbe(address, port, timeoutMs);
  }
};

/**
 * UDP: sends one datagram on a connected socket. `reply`: healthy when an answer comes within the timeout.
 * `no-icmp` (default): healthy unless an ICMP port-unreachable comes back (the kernel reports it on a connected
 * socket as ECONNREFUSED) within the timeout, or the backend answers first (healthy at once).
 */
export const udpProbe: Probe = (address, port, timeoutMs, spec) =>
  new Promise((resolve) => {
    const s = createSocket(address.includes(':') ? 'udp6' : 'udp4');
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.close();
      resolve(ok);
    };
    const t = setTimeout(() => done(spec?.expect === 'no-icmp' || spec?.expect === undefined), timeoutMs);
    s.once('message', () => done(true));
    s.once('error', () => done(false));
    s.connect(port, address, () => s.send(spec?.send ?? DEFAULT_UDP_PAYLOAD));
  });

/** HTTP(S) GET of `spec.path` (default `/`): healthy when the status is `spec.status` (default 200). HTTPS does not
 *  verify the certificate (a backend's certificate names the service, not the address the host probes). */
export const httpProbe: Probe = (address, port, timeoutMs, spec) =>
  new Promise((resolve) => {
    const request = spec?.type === 'https' ? httpsRequest : httpRequest;
    const req = request(
      {
        host: address,
        port,
        path: spec?.path ?? '/',
        method: 'GET',
        timeout: timeoutMs,
        rejectUnauthorized: false,
        headers: { 'user-agent': 'sluice-health' },
      },
      (res) => {
        res.resume();
        finish(res.statusCode === (spec?.status ?? 200));
      },
    );
    const t = setTimeout(() => finish(false), timeoutMs);
    let settled = false;
    function finish(ok: boolean): void {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      req.destroy();
      resolve(ok);
    }
    req.on('error', () => finish(false));
    req.on('timeout', () => finish(false));
    req.end();
  });

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

/**
 * The probes run from inside a network namespace (the lab's backends live in their own), with the same meaning as
 * localProbe: TCP with bash's /dev/tcp, UDP with socat (exit 1 on an ICMP error; `reply` also needs output), HTTP(S)
 * with curl (status compared; -k for HTTPS). Arguments are passed as a list, never through a shell string, except
 * the /dev/tcp path, built from a parsed address and a number.
 */
export function netnsProbe(netnsOf: (address: string) => string | undefined): Probe {
  return (address, port, timeoutMs, spec) => {
    const ns = netnsOf(address);
    if (ns === undefined) return localProbe(address, port, timeoutMs, spec);
    const secs = String(timeoutMs / 1000);
    const bracketed = address.includes(':') ? `[${address}]` : address;
    // The outer `timeout` ends a tool without its own deadline (bash); socat and curl end by themselves first.
    const run = (argv: string[], input: string | undefined, ok: (stdout: string) => boolean, outer = secs) =>
      new Promise<boolean>((resolve) => {
        const child = execFile(
          'ip',
          ['netns', 'exec', ns, 'timeout', outer, ...argv],
          { timeout: timeoutMs + 2000 },
          (err, stdout) => resolve(err === null && ok(String(stdout))),
        );
        endStdin(child, input);
      });
    switch (spec?.type ?? 'tcp') {
      case 'udp': {
        const family = address.includes(':') ? 'UDP6' : 'UDP4';
        // -t: after sending, wait the timeout for an answer or an ICMP error (exit 1), then exit 0.
        return run(
          ['socat', `-t${secs}`, `-T${secs}`, '-', `${family}:${bracketed}:${port}`],
          spec?.send ?? DEFAULT_UDP_PAYLOAD,
          (out) => spec?.expect !== 'reply' || out.length > 0,
          String(timeoutMs / 1000 + 1),
        );
      }
      case 'http':
      case 'https': {
        const url = `${spec?.type}://${bracketed}:${port}${spec?.path ?? '/'}`;
        return run(
          ['curl', '-s', '-k', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', secs, url],
          undefined,
          (out) => out.trim() === String(spec?.status ?? 200),
          String(timeoutMs / 1000 + 1),
        );
      }
      default:
        return run(['bash', '-c', `exec 3<>/dev/tcp/${address}/${port}`], undefined, () => true);
    }
  };
}

interface Tracked {
  target: HealthTarget;
  /** The target's check with the checker's defaults filled in. */
  check: Required<Pick<HealthCheck, 'intervalMs' | 'timeoutMs' | 'rise' | 'fall'>> & ProbeSpec;
  /** `check` as JSON, kept so a target skipped by setTargets can still offer its check to new targets. */
  checkText: string;
  state: HealthState;
  okStreak: number;
  failStreak: number;
  checkedAt: number;
  /** Whether its latest probe passed (undefined: not probed yet). */
  lastOk: boolean | undefined;
  /** When the target is due for its next probe (start()'s ticks), ms. */
  nextAt: number;
  /** The probe it shares with every target of the same address, port and check (probeKey). */
  key: string;
  /** The last setTargets call that had it. */
  round: number;
}

/** How often start() looks for targets due for a probe (each target keeps its own interval). */
const TICK_MS = 100;

/** One probe per distinct address, port and check: its result counts for every target with the same ones. */
function probeKey(address: string, port: number, check: Tracked['check']): string {
  return `${address} ${port} ${JSON.stringify(check)}`;
}

/**
 * When a probe that ran at `now` is next due: the first time after `now + interval / 2` at its own phase within the
 * interval (a hash of its key). Probes of thousands of backends are thus spread evenly over the interval instead of
 * all falling due in the same tick, round after round, and each keeps a steady period of `interval` after its first.
 */
export function nextProbeAt(now: number, intervalMs: number, key: string): number {
  const phase = fnv1a32(key) % intervalMs;
  const earliest = now + intervalMs / 2;
  const base = earliest - ((((earliest - phase) % intervalMs) + intervalMs) % intervalMs);
  return base >= earliest ? base : base + intervalMs;
}

/** Runs `jobs` with at most `limit` of them in flight. */
async function runLimited(jobs: readonly (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) await jobs[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
}

/** Probes a set of targets periodically (each at its own check's interval) and keeps their state. */
export class HealthChecker {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  readonly maxInFlight: number;
  readonly #probe: Probe;
  readonly #tracked = new Map<string, Tracked>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  /** Called when a target changes state. */
  onChange: ((id: string, from: HealthState, to: HealthState) => void) | undefined;

  constructor(opts: HealthOptions = {}, probe: Probe = localProbe) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.timeoutMs = opts.timeoutMs ?? 500;
    this.rise = opts.rise ?? 2;
    this.fall = opts.fall ?? 3;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 64);
    this.#probe = probe;
  }

  /** A target's check with this checker's defaults for what it leaves out (a TCP connect when it has none). */
  #resolve(t: HealthTarget): Tracked['check'] {
    const c = t.check;
    return {
      type: c?.type ?? 'tcp',
      ...(c?.send === undefined ? {} : { send: c.send }),
      ...(c?.expect === undefined ? {} : { expect: c.expect }),
      ...(c?.path === undefined ? {} : { path: c.path }),
      ...(c?.status === undefined ? {} : { status: c.status }),
      intervalMs: c?.intervalMs ?? this.intervalMs,
      timeoutMs: Math.min(c?.timeoutMs ?? this.timeoutMs, c?.intervalMs ?? Number.POSITIVE_INFINITY),
      rise: c?.rise ?? this.rise,
      fall: c?.fall ?? this.fall,
    };
  }

  /** Sets the targets (new or changed ones start `unknown`; gone ones are forgotten). Targets with the same check
   *  share one resolved check object, and those with the same address and port too one probe key: a host at
   *  10,000 VIPs has 100,000 targets over a few backends, which each held their own copies. */
  setTargets(targets: Iterable<HealthTarget>): void {
    this.#version++;
    // Targets not in this call are forgotten after it: each one seen is stamped with the call's round (a set of
    // every id was garbage a full collection had to free, 100,000 ids per config change at 10,000 VIPs).
    const round = ++this.#round;
    const checks = new Map<string, { check: Tracked['check']; text: string }>();
    const keys = new Map<string, string>();
    for (const t of targets) {
      const cur = this.#tracked.get(t.id);
      if (cur?.target === t) {
        // The very target object set before (the agent keeps those of unchanged load balancers): nothing changed.
        // Its check and probe key still count for sharing with the new targets of this call.
        cur.round = round;
        if (!checks.has(cur.checkText)) checks.set(cur.checkText, { check: cur.check, text: cur.checkText });
        if (!keys.has(cur.key)) keys.set(cur.key, cur.key);
        continue;
      }
      const resolved = this.#resolve(t);
      const text = JSON.stringify(resolved);
      let shared = checks.get(text);
      if (shared === undefined) {
        // A target that stays keeps its check object, and the next targets with this check share it.
        const kept = cur !== undefined && cur.checkText === text ? cur : undefined;
        shared = kept === undefined ? { check: resolved, text } : { check: kept.check, text: kept.checkText };
        checks.set(text, shared);
      }
      const check = shared.check;
      if (
        cur === undefined ||
        cur.target.address !== t.address ||
        cur.target.port !== t.port ||
        (cur.check !== check && cur.checkText !== text)
      ) {
        const k = probeKey(t.address, t.port, check);
        const key = keys.get(k) ?? k;
        keys.set(key, key);
        this.#tracked.set(t.id, {
          target: t,
          check,
          checkText: shared.text,
          state: 'unknown',
          okStreak: 0,
          failStreak: 0,
          checkedAt: 0,
          lastOk: undefined,
          nextAt: 0,
          key,
          round,
        });
      } else {
        cur.round = round;
        // The same target in a new object: kept, and it points at the target the caller holds now.
        cur.target = t;
        if (cur.check !== check) {
          cur.check = check;
          cur.checkText = shared.text;
        }
      }
    }
    for (const [id, t] of this.#tracked) if (t.round !== round) this.#tracked.delete(id);
  }

  /** Counts setTargets calls (Tracked.round). */
  #round = 0;

  #version = 0;

  /** Grows whenever a target's state or latest probe result changes, or the targets do (readers skip what did not). */
  get version(): number {
    return this.#version;
  }

  state(id: string): HealthState {
    return this.#tracked.get(id)?.state ?? 'unknown';
  }

  /** The check a target runs (its load balancer's, defaults filled in), for status output. */
  check(id: string): Tracked['check'] | undefined {
    return this.#tracked.get(id)?.check;
  }

  /** Whether a target's latest probe passed (undefined: not probed yet): `up` with a failed last probe is falling. */
  lastOk(id: string): boolean | undefined {
    return this.#tracked.get(id)?.lastOk;
  }

  /** Whether any target is down (without building states(): the agent asks on every connection report). */
  anyDown(): boolean {
    for (const t of this.#tracked.values()) if (t.state === 'down') return true;
    return false;
  }

  states(): Map<string, { state: HealthState; checkedAt: number }> {
    return new Map([...this.#tracked].map(([id, t]) => [id, { state: t.state, checkedAt: t.checkedAt }]));
  }

  /** One round of probes of every target (at most maxInFlight at once). */
  checkOnce(): Promise<void> {
    return this.#checkTargets([...this.#tracked.values()], Date.now());
  }

  /** Probes the targets due at `now` (each at its own phase of its interval: nextProbeAt). */
  checkDue(now = Date.now()): Promise<void> {
    // Runs every TICK_MS: collect the few due targets without copying all of them first.
    const due: Tracked[] = [];
    for (const t of this.#tracked.values()) if (t.nextAt <= now) due.push(t);
    return this.#checkTargets(due, now);
  }

  /** One probe per distinct address, port and check, whose result counts for every target with the same ones (a
   *  backend behind 1000 VIPs with one check is one probe, not 1000 processes per round); at most maxInFlight
   *  probes at once, each with its full deadline from when it starts (a queued probe is not timed). */
  async #checkTargets(due: readonly Tracked[], now: number): Promise<void> {
    const byKey = new Map<string, Tracked[]>();
    for (const t of due) {
      t.nextAt = nextProbeAt(now, t.check.intervalMs, t.key);
      const same = byKey.get(t.key);
      if (same === undefined) byKey.set(t.key, [t]);
      else same.push(t);
    }
    const jobs = [...byKey.values()].map((targets) => async () => {
      const { target, check } = targets[0]!;
      const { type, send, expect, path, status } = check;
      const ok = await this.#probe(target.address, target.port, check.timeoutMs, {
        type,
        send,
        expect,
        path,
        status,
      }).catch(() => false);
      for (const t of targets) this.#record(t, ok);
    });
    await runLimited(jobs, this.maxInFlight);
  }

  /** A probe result for one target: streaks, state, onChange. */
  #record(t: Tracked, ok: boolean): void {
    if (this.#tracked.get(t.target.id) !== t) return;
    if (ok) {
      t.okStreak++;
      t.failStreak = 0;
    } else {
      t.failStreak++;
      t.okStreak = 0;
    }
    t.checkedAt = Date.now();
    if (t.lastOk !== ok) this.#version++;
    t.lastOk = ok;
    const to = nextHealth(t.state, ok, ok ? t.okStreak : t.failStreak, t.check.rise, t.check.fall);
    if (to !== t.state) {
      const from = t.state;
      t.state = to;
      this.#version++;
      this.onChange?.(t.target.id, from, to);
    }
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (this.#running) return;
      this.#running = true;
      this.checkDue().finally(() => {
        this.#running = false;
      });
    }, TICK_MS);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}
