// Loaded into a daemon with `--import` (bench/convergence.ts with CONV_MEM=1): on SIGUSR2 it writes the process's
// memory to `$MEM_PROBE_DIR/<pid>-<n>.json`: VmRSS/VmHWM, process.memoryUsage() and V8's heap spaces, before and
// after a full garbage collection (when started with --expose-gc); with MEM_PROBE_SNAPSHOT=1 also a heap snapshot
// (`<pid>-<n>.heapsnapshot`, after the collection). Nothing is written to the daemon's own output.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as v8 from 'node:v8';

const dir = process.env.MEM_PROBE_DIR;
let n = 0;

function status(): Record<string, number> {
  const out: Record<string, number> = {};
  const text = readFileSync('/proc/self/status', 'utf8');
  for (const k of ['VmRSS', 'VmHWM', 'RssAnon', 'RssFile']) {
    const m = new RegExp(`${k}:\\s+(\\d+) kB`).exec(text);
    if (m) out[k] = Number(m[1]) * 1024;
  }
  return out;
}

function sample(): Record<string, unknown> {
  return {
    status: status(),
    usage: process.memoryUsage(),
    spaces: Object.fromEntries(
      v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]),
    ),
  };
}

if (dir !== undefined)
  process.on('SIGUSR2', () => {
    const i = n++;
    const before = sample();
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const after = sample();
    let snapshot: string | undefined;
    if (process.env.MEM_PROBE_SNAPSHOT === '1')
      snapshot = v8.writeHeapSnapshot(join(dir, `${process.pid}-${i}.heapsnapshot`));
    writeFileSync(
      join(dir, `${process.pid}-${i}.json`),
      JSON.stringify({ pid: process.pid, argv: process.argv.slice(2), before, afterGc: after, snapshot }),
    );
  });
