// A host agent's health probes at 1,000 VIPs x 20 backends of their own (`npm run bench -- health-probes`): 20,000
// distinct backends probed by the agent's HealthChecker with the real TCP probe (localProbe, a connect from this
// process) against 20,000 loopback listeners, with the probes bounded in flight (maxInFlight, default 64) against
// the same checker unbounded (every due probe at once, as before the bound), same run, same machine.
//
// No lab, not root, loopback only: the listeners are child processes of this one (each accepts and closes), on
// free 127.0.0.1 ports from 10,000 up, stopped by their own PIDs at the end. Per mode: a fresh checker, started, for
// HEALTH_BENCH_ROUNDS intervals; measured: backends up / down / unknown at the end, health changes, probe latency
// (p50, p99, max, from the probe's start), probes that failed. Options (environment): HEALTH_BENCH_BACKENDS (20000),
// HEALTH_BENCH_INTERVAL_MS (10000), HEALTH_BENCH_TIMEOUT_MS (5000), HEALTH_BENCH_ROUNDS (4),
// HEALTH_BENCH_NO_WRITE=1 (print only).

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { HealthChecker, localProbe, type Probe } from '../src/agent/health.ts';
import { finish, machine, machineLine, median, say, sleep, writeSection } from './perf/common.ts';

const BACKENDS = Number(process.env.HEALTH_BENCH_BACKENDS ?? 20_000);
const INTERVAL_MS = Number(process.env.HEALTH_BENCH_INTERVAL_MS ?? 10_000);
const TIMEOUT_MS = Number(process.env.HEALTH_BENCH_TIMEOUT_MS ?? 5000);
const ROUNDS = Number(process.env.HEALTH_BENCH_ROUNDS ?? 4);
const PER_CHILD = 5000;

/** A child listening on up to `n` free loopback ports from `from`; resolves with the ports it holds. */
function listeners(from: number, n: number): Promise<{ child: ChildProcess; ports: number[]; next: number }> {
  const code = `
    const net = require('node:net');
    const [from, n] = process.argv.slice(1).map(Number);
    const ports = [];
    let port = from;
    const next = () => {
      if (ports.length === n || port > 60000) return console.log(JSON.stringify({ ports, next: port }));
      const p = port++;
      const s = net.createServer((c) => c.destroy());
      s.once('error', () => next());
      s.listen({ port: p, host: '127.0.0.1', backlog: 4096 }, () => { ports.push(p); next(); });
    };
    next();`;
  const child = spawn(process.execPath, ['-e', code, String(from), String(n)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => {
      const { ports, next } = JSON.parse(line) as { ports: number[]; next: number };
      resolve({ child, ports, next });
    });
    child.once('exit', (c) => reject(new Error(`listener child exited (${c})`)));
  });
}

interface ModeResult {
  readonly mode: string;
  readonly maxInFlight: number;
  readonly up: number;
  readonly down: number;
  readonly unknown: number;
  readonly changes: number;
  readonly probes: number;
  readonly failed: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly peakInFlight: number;
}

async function mode(name: string, ports: readonly number[], maxInFlight: number): Promise<ModeResult> {
  const latencies: number[] = [];
  let failed = 0;
  let inFlight = 0;
  let peakInFlight = 0;
  const probe: Probe = async (address, port, timeoutMs, spec) => {
    const t0 = performance.now();
    inFlight++;
    peakInFlight = Math.max(peakInFlight, inFlight);
    const ok = await localProbe(address, port, timeoutMs, spec);
    inFlight--;
    latencies.push(performance.now() - t0);
    if (!ok) failed++;
    return ok;
  };
  const c = new HealthChecker(
    { intervalMs: INTERVAL_MS, timeoutMs: TIMEOUT_MS, rise: 2, fall: 3, maxInFlight },
    probe,
  );
  let changes = 0;
  c.onChange = () => {
    changes++;
  };
  // 1,000 VIPs x 20 backends of their own: one target per backend, each its own address:port.
  c.setTargets(
    ports.map((port, i) => ({ id: `v${Math.floor(i / 20)} 127.0.0.1:${port}`, address: '127.0.0.1', port })),
  );
  c.start();
  await sleep(ROUNDS * INTERVAL_MS + TIMEOUT_MS);
  c.stop();
  while (inFlight > 0) await sleep(50);
  const states = [...c.states().values()].map((s) => s.state);
  const count = (s: string) => states.filter((x) => x === s).length;
  latencies.sort((a, b) => a - b);
  const q = (f: number) => latencies[Math.min(latencies.length - 1, Math.floor(f * latencies.length))] ?? 0;
  const r: ModeResult = {
    mode: name,
    maxInFlight,
    up: count('up'),
    down: count('down'),
    unknown: count('unknown'),
    changes,
    probes: latencies.length,
    failed,
    p50: median(latencies),
    p99: q(0.99),
    max: latencies.at(-1) ?? 0,
    peakInFlight,
  };
  say(`[${name}] ${JSON.stringify(r)}`);
  return r;
}

function report(results: readonly ModeResult[], n: number, m: ReturnType<typeof machine>): string {
  const lines = [
    `## Health probes at 1,000 VIPs x 20 backends of their own (${n.toLocaleString('en')} probes)`,
    '',
  ];
  lines.push(machineLine(m, 'npm run bench -- health-probes'));
  lines.push('');
  lines.push(
    `One host agent's HealthChecker with the real TCP probe (a connect from the agent's process) against ` +
      `${n.toLocaleString('en')} loopback listeners (child processes, one port each): interval ${INTERVAL_MS / 1000} s, ` +
      `deadline ${TIMEOUT_MS / 1000} s, rise 2, fall 3, run for ${ROUNDS} intervals. **bounded**: at most 64 probes ` +
      'in flight; **unbounded**: no limit in flight, so its first round puts every probe in flight in one tick, as ' +
      `every round of the checker before this change did (all ${n.toLocaleString('en')}); later rounds of both modes ` +
      'are spread over the interval (each probe at its own phase). Latency from the probe start to its answer. ' +
      `This process's file descriptor limit: ${fdLimit()}.`,
  );
  lines.push('');
  lines.push(
    '| mode | up | down | unknown | health changes | probes | failed | latency p50 | p99 | max | peak in flight |',
  );
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const ms = (x: number) => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
  for (const r of results)
    lines.push(
      `| ${r.mode} | ${r.up} | ${r.down} | ${r.unknown} | ${r.changes} | ${r.probes} | ${r.failed} | ${ms(r.p50)} | ` +
        `${ms(r.p99)} | ${ms(r.max)} | ${r.peakInFlight} |`,
    );
  return lines.join('\n').trimEnd();
}

function fdLimit(): string {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const line = limits.split('\n').find((l) => l.startsWith('Max open files'));
    return line?.replace(/\s+/g, ' ').replace('Max open files ', '').trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const m = machine();
  const children: ChildProcess[] = [];
  try {
    const ports: number[] = [];
    let from = 10_000;
    while (ports.length < BACKENDS) {
      const l = await listeners(from, Math.min(PER_CHILD, BACKENDS - ports.length));
      children.push(l.child);
      ports.push(...l.ports);
      if (l.ports.length === 0) throw new Error(`no free loopback ports from ${from}`);
      from = l.next;
    }
    say(`${ports.length} listeners on 127.0.0.1, ports ${ports[0]}..${ports.at(-1)}`);
    const results = [
      await mode('bounded', ports, 64),
      await mode('unbounded', ports, Number.POSITIVE_INFINITY),
    ];
    const body = report(results, ports.length, finish(m));
    if (process.env.HEALTH_BENCH_NO_WRITE === '1') console.log(body);
    else writeSection('health-probes', body);
  } finally {
    for (const c of children) c.kill('SIGTERM');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
