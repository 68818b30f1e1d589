// Shared helpers of the perf benchmarks: machine info, medians, and writing one marked section of
// docs/benchmarks.md (keeping every other section).

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';

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
