// Gateway agent start at scale: compile + first install, in-process, no OVS (`npm run bench -- --only agent-start`).
//
// What a gateway agent does when it starts on a switch that has none of sluice's flows (src/agent/node-ops.ts
// NodeProgrammer, first program()): compileNodeParts of the whole node, then per bridge the diff against what is
// installed (nothing) and one bundle whose text is streamed to ovs-ofctl's stdin in chunks as it is rendered
// (src/openflow/applier.ts sendBundleDiff). Here the bundle goes through the same stdin path (src/child-input.ts
// endStdin) into `wc -c` instead of ovs-ofctl, so the agent's side is measured without ovs-vswitchd's.
//
// Sizes: 1 VIP (the baseline) and 10,000 VIPs, x 20 backends, 2^8 slots, 100 hosts, dp_hash (bench/perf/cp.ts's
// synthetic state). Each size runs in its own child process (fresh heap: its peak RSS is its own). Measured per size:
// compile CPU and wall time, JS heap the compiled parts retain (forced GC before and after), the diff + streamed
// bundle (CPU, wall, bytes, chunks, largest chunk, the bytes `wc -c` counted), the process's peak RSS (VmHWM).
// Writes docs/benchmarks.md between the bench:agent-start markers. Env: AGENT_START_VIPS (default 10000),
// AGENT_START_NO_WRITE=1.

import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { endStdin } from '../src/child-input.ts';
import { compileNodeParts, joinParts } from '../src/compile/incremental.ts';
import { bundleChunks, bundleLineCount, diffBridge } from '../src/flowset/diff.ts';
import { planNext } from '../src/rollout/planner.ts';
import {
  finish,
  machine,
  machineLine,
  n0,
  pairRow,
  ratio,
  runJsonChild,
  say,
  writeSection,
} from './perf/common.ts';
import { makeConfig, syntheticFacts } from './perf/cp.ts';

const LARGE = Number(process.env.AGENT_START_VIPS ?? 10_000);

interface SizeResult {
  readonly vips: number;
  readonly flows: number;
  readonly compileCpuMs: number;
  readonly compileMs: number;
  readonly retainedMiB: number;
  readonly installCpuMs: number;
  readonly installMs: number;
  readonly bundleLines: number;
  readonly bundleMiB: number;
  readonly chunks: number;
  readonly largestChunkMiB: number;
  readonly received: number;
  readonly peakRssMiB: number;
  /** Peak RSS during the compile (VmHWM reset just before it: /proc/self/clear_refs 5). */
  readonly compilePeakRssMiB: number;
  /** Peak RSS during the diff and the streamed bundle (reset just before them). */
  readonly installPeakRssMiB: number;
}

const MiB = 2 ** 20;

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(since);
  return (c.user + c.system) / 1000;
}

/** The process's peak resident set (VmHWM), MiB. */
function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Resets VmHWM to the current RSS (Linux: writing 5 to /proc/self/clear_refs), so a phase's own peak can be read. */
function resetPeakRss(): void {
  writeFileSync('/proc/self/clear_refs', '5');
}

/** Streams `chunks` into `wc -c` through endStdin (the path a bundle takes to ovs-ofctl); resolves with its count. */
function countThroughStdin(chunks: Iterable<Uint8Array>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = execFile('wc', ['-c'], (err, stdout) =>
      err ? reject(err) : resolve(Number(stdout.trim())),
    );
    endStdin(child, chunks);
  });
}

async function measureSize(vips: number): Promise<SizeResult> {
  const config = makeConfig({ name: '', vips, backends: 20, hosts: 100, slotBits: 8 });
  const gen = planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
  const facts = syntheticFacts(config, 'gw1');
  gc();
  const h0 = process.memoryUsage().heapUsed;
  const peakBefore = peakRssMiB();
  resetPeakRss();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const parts = compileNodeParts(config, gen, facts);
  const compileMs = performance.now() - t0;
  const compileCpuMs = cpuMs(c0);
  const compilePeakRssMiB = peakRssMiB();
  gc();
  const retainedMiB = (process.memoryUsage().heapUsed - h0) / MiB;
  let flows = 0;
  for (const bridge of parts.bridges.values()) for (const p of bridge.values()) flows += p.flows.length;

  const peakCompile = peakRssMiB();
  resetPeakRss();
  const i0 = process.cpuUsage();
  const t1 = performance.now();
  let bytes = 0;
  let chunks = 0;
  let largest = 0;
  let lines = 0;
  let received = 0;
  for (const name of [...parts.bridges.keys()].sort()) {
    const diff = diffBridge(joinParts(parts.bridges.get(name)!), { flows: [], groups: [], tlvMap: [] });
    lines += bundleLineCount(diff);
    const counted = function* () {
      for (const c of bundleChunks(diff)) {
        bytes += c.length;
        chunks++;
        largest = Math.max(largest, c.length);
        yield c;
      }
    };
    received += await countThroughStdin(counted());
  }
  return {
    vips,
    flows,
    compileCpuMs,
    compileMs,
    retainedMiB,
    installCpuMs: cpuMs(i0),
    installMs: performance.now() - t1,
    bundleLines: lines,
    bundleMiB: bytes / MiB,
    chunks,
    largestChunkMiB: largest / MiB,
    received,
    installPeakRssMiB: peakRssMiB(),
    compilePeakRssMiB,
    peakRssMiB: Math.max(peakBefore, peakCompile, peakRssMiB()),
  };
}

function runChild(vips: number): Promise<SizeResult> {
  return runJsonChild(fileURLToPath(import.meta.url), { AGENT_START_CHILD: String(vips) }, `${vips} VIPs`);
}

const n1 = (x: number) => x.toFixed(1);

function render(m: ReturnType<typeof machine>, one: SizeResult, big: SizeResult): string {
  const row = pairRow(one, big);
  const L = [
    '## Gateway agent start at scale: compile + first install (in-process, no OVS)',
    '',
    machineLine(m, 'npm run bench -- --only agent-start'),
    '',
    'What a gateway agent does when it starts on a switch without sluice flows: compileNodeParts of the whole node, the ' +
      'diff of each bridge against nothing, and one bundle per bridge whose text is rendered chunk by chunk while it ' +
      "is written to the child's stdin (src/openflow/applier.ts sendBundleDiff; here the child is `wc -c`, which " +
      'counts the bytes, instead of ovs-ofctl). 20 backends per VIP, 2^8 slots, 100 hosts, dp_hash; each size in its ' +
      'own process (peak RSS is that process’s VmHWM, Node start-up included).',
    '',
    `| | 1 VIP | ${n0(big.vips)} VIPs | ratio |`,
    '| --- | ---: | ---: | ---: |',
    row(
      'gateway flows (all bridges)',
      (r) => n0(r.flows),
      (a, b) => ratio(a.flows, b.flows, 0),
    ),
    row(
      '**compile, CPU**',
      (r) => `${n0(r.compileCpuMs)} ms`,
      (a, b) => ratio(a.compileCpuMs, b.compileCpuMs, 0),
    ),
    row('compile, wall', (r) => `${n0(r.compileMs)} ms`),
    row('JS heap retained by the compiled node', (r) => `${n1(r.retainedMiB)} MiB`),
    row('… per flow', (r) => `${n0((r.retainedMiB * MiB) / r.flows)} B`),
    row('diff + bundle streamed, CPU', (r) => `${n0(r.installCpuMs)} ms`),
    row('diff + bundle streamed, wall', (r) => `${n0(r.installMs)} ms`),
    row('bundle lines / text', (r) => `${n0(r.bundleLines)} / ${n1(r.bundleMiB)} MiB`),
    row('chunks written (largest)', (r) => `${n0(r.chunks)} (${r.largestChunkMiB.toFixed(2)} MiB)`),
    row('bytes the reader counted = bytes rendered', (r) =>
      r.received === Math.round(r.bundleMiB * MiB) ? 'yes' : `NO (${r.received})`,
    ),
    row('peak RSS during the compile', (r) => `${n0(r.compilePeakRssMiB)} MiB`),
    row('peak RSS during the diff and the streamed bundle', (r) => `${n0(r.installPeakRssMiB)} MiB`),
    row(
      '**process peak RSS**',
      (r) => `${n0(r.peakRssMiB)} MiB`,
      (a, b) => ratio(a.peakRssMiB, b.peakRssMiB, 1),
    ),
    '',
    `Targets at ${n0(big.vips)} VIPs: compile ≤ 5 s CPU: ${big.compileCpuMs <= 5000 ? 'met' : 'not met'} ` +
      `(${n0(big.compileCpuMs)} ms); agent RSS ≤ 1 GB: ${big.peakRssMiB <= 1024 ? 'met' : 'not met'} ` +
      `(peak ${n0(big.peakRssMiB)} MiB); install streamed: the largest piece of bundle text alive at once was ` +
      `${big.largestChunkMiB.toFixed(2)} MiB of ${n1(big.bundleMiB)} MiB.`,
    '',
    'Before (bench perf-cp, 2026-11-26, the same synthetic state): compile 12,875 ms CPU (46,679 ms wall), one gateway ' +
      'FlowSet retained 714.8 MiB (291 B per flow: match and actions text and a BigInt cookie per flow), process RSS ' +
      '3,603 MiB, and the first install was one 549.6 MiB string (more than a JavaScript string can hold). Slot flows ' +
      'are now numbers and shared strings that render their text only when read (src/compile/gateway.ts).',
    '',
    "Not covered by this benchmark: the Node process is the agent's only part measured above. The same start " +
      'against a real ovs-vswitchd (its `ovs-ofctl bundle` children, which parse their whole input first, about ' +
      '5 KiB per line, now fed at most 100,000 lines each; the switch; the streamed verification) is in section ' +
      '`agent-start-ovs` (bench/agent-start-ovs.ts).',
  ];
  return L.join('\n');
}

async function main(): Promise<void> {
  const child = process.env.AGENT_START_CHILD;
  if (child !== undefined) {
    process.stdout.write(JSON.stringify(await measureSize(Number(child))));
    return;
  }
  const m = machine();
  say('[agent-start] 1 VIP');
  const one = await runChild(1);
  say(`[agent-start] ${LARGE} VIPs`);
  const big = await runChild(LARGE);
  const md = render(finish(m), one, big);
  process.stdout.write(`${md}\n`);
  if (process.env.AGENT_START_NO_WRITE !== '1') writeSection('agent-start', md);
}

await main();
