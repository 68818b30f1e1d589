// Shared helpers of the perf benchmarks: machine info, medians, writing one marked section of docs/benchmarks.md
// (keeping every other section), two-size tables, child runs, a lab config document, the memory of child processes.

import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import type { Lab } from '../../src/lab/topology.ts';

export const DOC = new URL('../../docs/benchmarks.md', import.meta.url);

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly loadStart: number[];
  loadEnd: number[];
  readonly ovs: string;
  readonly kernel: string;
  readonly node: string;
  readonly date: string;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

export function machine(): Machine {
  let ovs = 'not installed';
  try {
    ovs = execFileSync('ovs-vswitchd', ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    /* pure benchmarks do not need OVS */
  }
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    loadStart: loadavg().map(round2),
    loadEnd: [],
    ovs,
    kernel: release(),
    node: process.version,
    date: new Date().toISOString(),
  };
}

export function finish(m: Machine): Machine {
  m.loadEnd = loadavg().map(round2);
  return m;
}

export function machineLine(m: Machine, command: string): string {
  return (
    `Written by \`${command}\` on ${m.date}: ${m.cpu}, ${m.cores} cores (shared; load average ` +
    `${m.loadStart.join(' / ')} at start, ${m.loadEnd.join(' / ')} at end), ${m.ovs}, kernel ${m.kernel}, ` +
    `Node ${m.node}.`
  );
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A whole number with thousands separators (NaN prints as NaN). */
export const n0 = (x: number): string => Math.round(x).toLocaleString('en-US');

export function ratio(a: number, b: number, digits = 2): string {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return 'n/a';
  if (b === 0) return a === 0 ? '–' : '∞';
  return `${(a / b).toFixed(digits)}x`;
}

/** Replaces (or appends) the section between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`. */
export function writeSection(name: string, body: string): void {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  let text = '';
  try {
    text = readFileSync(DOC, 'utf8');
  } catch {
    text = '# Benchmarks\n';
  }
  const block = `${start}\n${body.trimEnd()}\n${end}`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) text = text.slice(0, i) + block + text.slice(j + end.length);
  else text = `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(DOC, text);
}

export const say = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
export { setTimeout as sleep } from 'node:timers/promises';

/** A row of a two-size markdown table (`one`, the baseline, and `big`), with an optional ratio column. */
export function pairRow<T>(one: T, big: T) {
  return (what: string, f: (r: T) => string, r?: (a: T, b: T) => string): string =>
    `| ${what} | ${f(one)} | ${f(big)} | ${r ? r(big, one) : ''} |`;
}

/** Runs benchmark `file` again as a child (fresh heap, its own peak RSS) with `env`; resolves with the JSON it
 *  prints on stdout. */
export function runJsonChild<T>(
  file: string,
  env: Readonly<Record<string, string>>,
  what: string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', file], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('exit', (code, signal) =>
      code === 0 ? resolve(JSON.parse(out) as T) : reject(new Error(`${what}: child exit ${code ?? signal}`)),
    );
  });
}

/** A config document on a lab: its nodes and `vips` VIPs (198.18.0.0/15, tcp/80) behind every lab backend, but
 *  VIP v0 without `omitFromV0` (an address). */
export function labVipsDoc(lab: Lab, vips: number, omitFromV0?: string): Record<string, unknown> {
  const backends = lab.backends().map((b) => ({
    address: b.ip,
    port: lab.config.backendPort,
    host: b.host,
    weight: 1,
    state: 'active',
  }));
  return {
    hashMode: 'dp_hash',
    slotBits: 8,
    nodes: lab.nodes.map((n) => ({ name: n.name, role: n.role, tunnelIp: n.tunnelIp })),
    loadBalancers: Array.from({ length: vips }, (_, i) => ({
      name: `v${i}`,
      vip: `198.18.${(i + 1) >> 8}.${(i + 1) & 255}`,
      protocol: 'tcp',
      ports: [80],
      backends: i === 0 ? backends.filter((b) => b.address !== omitFromV0) : backends,
    })),
  };
}

/** A field of /proc/<pid>/status in kB (0 when the process is gone). */
export function statusKb(pid: number | string, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Largest VmHWM among this process's `ovs-ofctl` children (they are gone after exiting: sample while alive). */
export function ofctlChildrenPeakKb(): number {
  let max = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && stat.includes('(ovs-ofctl)')) max = Math.max(max, statusKb(d, 'VmHWM'));
    } catch {}
  }
  return max;
}
