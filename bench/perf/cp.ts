// Control plane at scale: pure compile, no OVS.
//
//   node --max-old-space-size=8000 --import tsx bench/perf/cp.ts     (bench/run.ts adds the heap flag)
//
// For each scale (10,000 VIPs x 20 backends, 1,000 VIPs x 1,000 backends; 100 hosts, 2 gateways, TCP, one port):
// - planner: the initial generation (planNext from nothing: every slot table built);
// - compile: compileNode of one gateway (every slot flow) and of one host, time (wall and CPU) and flow counts;
// - memory: JS heap retained by one gateway FlowSet (forced GC before and after);
// - one backend change, the way the agent applies it: for every generation the planner publishes (phases), the
//   gateway's full FlowSet is compiled again and diffed against the previous one (src/flowset diff.ts); the bundle
//   (ovs-ofctl bundle lines and bytes) is compared with the number of slots that changed in that generation and
//   with the size of the table. Two changes: a backend ADDED to one VIP (phases 1, 2 and the stable step) and a
//   backend set DOWN in one VIP (its slots move at once).
// Results go to docs/benchmarks.md between the bench:perf-cp markers. Env: PERF_CP_SCALES=small (a quick run at
// 1/10 of the VIPs), PERF_CP_RUNS (compile repetitions, default 2),
// PERF_CP_STEPS (generations per change, default 1 at full scale), PERF_CP_NO_WRITE=1.

import { pathToFileURL } from 'node:url';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { compileNode, type NodeFacts } from '../../src/compile/index.ts';
import { bundleLines, diffBridge } from '../../src/flowset/diff.ts';
import type { FlowSet } from '../../src/flowset/types.ts';
import type { Backend, Config, LoadBalancer, Node } from '../../src/model/types.ts';
import { planNext } from '../../src/rollout/planner.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { finish, type Machine, machine, machineLine, median, ratio, say, writeSection } from './common.ts';

export interface CpScale {
  readonly name: string;
  readonly vips: number;
  readonly backends: number;
  readonly hosts: number;
  readonly slotBits: number;
}

/** slotBits: 2^8 = 256 slots for 20 backends (12.8 slots each, every backend within one slot of its share:
 *  +-8 %); 2^12 = 4096 slots for 1000 backends (4.1 each; 2^10 would give 1 or 2 slots per backend, a 2x
 *  imbalance). Each scale sets slotBits to its pools' own bits (lbSlotBits gives 20 backends 2^8 at slotBits 8 and
 *  1000 backends 2^12 at slotBits 12: the same tables). */
export const SCALES: readonly CpScale[] = [
  { name: '10,000 VIPs x 20 backends', vips: 10_000, backends: 20, hosts: 100, slotBits: 8 },
  { name: '1,000 VIPs x 1,000 backends', vips: 1_000, backends: 1_000, hosts: 100, slotBits: 12 },
];

export interface StepResult {
  readonly generation: number;
  /** Slots whose (primary, second chance) changed against the previous generation, over all LBs. */
  readonly slotsChanged: number;
  readonly bundleLines: number;
  readonly bundleBytes: number;
  readonly compileMs: number;
  readonly diffMs: number;
  readonly planMs: number;
}

export interface ChangeResult {
  readonly change: string;
  readonly steps: readonly StepResult[];
  /** Host of the changed backend: bundle lines over the generations run (compiled with that host's facts). */
  readonly hostBundleLines: number;
}

export interface ScaleResult {
  readonly scale: CpScale;
  /** Fraction of the scale's VIPs actually built (1 = full). */
  readonly built: number;
  readonly planMs: number;
  readonly gatewayFlows: number;
  readonly gatewaySlotFlows: number;
  readonly gatewayGroups: number;
  readonly hostFlows: number;
  readonly compileGwMs: number;
  readonly compileGwCpuMs: number;
  readonly compileHostMs: number;
  readonly retainedGwMiB: number;
  /** Characters of match + actions text per gateway flow. */
  readonly textPerFlow: number;
  readonly distinctCookies: number;
  /** Largest committed V8 heap seen at the phase boundaries (after compiles, diffs) of this scale. */
  readonly heapWatermarkMiB: number;
  readonly rssMiB: number;
  readonly bundleTextFullMiB: number;
  readonly changes: readonly ChangeResult[];
}

export interface CpReport {
  readonly machine: Machine;
  readonly runs: number;
  /** Generations of each change that were compiled and diffed (the rest of the rollout is not run). */
  readonly maxSteps: number;
  readonly scales: readonly ScaleResult[];
}

function getGc(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  return gc ?? (() => {});
}

// ---- synthetic desired state ---------------------------------------------------------------------------------

const ip4 = (base: number, n: number) =>
  `${(base >>> 24) & 255}.${((base >>> 16) + (n >>> 16)) & 255}.${(n >>> 8) & 255}.${n & 255}`;

function hostName(h: number): string {
  return `host${h}`;
}

/** VIP i: 198.18.x.y (i < 65536); backend g (global index): 100.64+.x.y, on host g mod hosts. */
export function makeConfig(s: CpScale, vips = s.vips): Config {
  const nodes: Node[] = [
    { name: 'gw1', role: 'gateway', tunnelIp: '192.168.0.1' },
    { name: 'gw2', role: 'gateway', tunnelIp: '192.168.0.2' },
  ];
  for (let h = 0; h < s.hosts; h++)
    nodes.push({ name: hostName(h), role: 'host', tunnelIp: `192.168.${1 + (h >> 8)}.${h & 255}` });
  const lbs: LoadBalancer[] = [];
  for (let i = 0; i < vips; i++) {
    const backends: Backend[] = [];
    for (let j = 0; j < s.backends; j++) {
      const g = i * s.backends + j;
      backends.push({
        address: ip4(0x64400000, g),
        port: 8080,
        host: hostName(g % s.hosts),
        weight: 1,
        state: 'active',
      });
    }
    lbs.push({
      name: `vip${String(i).padStart(5, '0')}`,
      vip: ip4(0xc6120000, i),
      family: 4,
      protocol: 'tcp',
      ports: [80],
      backends,
    });
  }
  return { hashMode: 'dp_hash', slotBits: s.slotBits, nodes, loadBalancers: lbs };
}

/** Facts of one synthetic node (bench/agent-start.ts uses them too). */
export function syntheticFacts(config: Config, name: string): NodeFacts {
  const node = config.nodes.find((n) => n.name === name)!;
  const vms: Record<string, { ofport: number; mac: string }> = {};
  if (node.role === 'host') {
    // A backend's port depends only on its own address (stable when other backends come and go).
    for (const lb of config.loadBalancers)
      for (const b of lb.backends) {
        if (b.host !== name || vms[b.address] !== undefined) continue;
        const [, x, y, z] = b.address.split('.').map(Number);
        const port = 10 + (((x - 64) << 16) | (y << 8) | z) / 100;
        const hex = (v: number) => (v & 255).toString(16).padStart(2, '0');
        vms[b.address] = { ofport: Math.floor(port), mac: `02:00:${hex(x)}:${hex(y)}:${hex(z)}:01` };
      }
  }
  return {
    name,
    role: node.role,
    tunnelIp: node.tunnelIp,
    bridges: { int: 'br-int', phy: 'br-phy' },
    phyMac: '02:00:c0:a8:00:01',
    ports: { eth0: 1, phyToInt: 2, intToPhy: 1, geneve: 2 },
    vms,
    vmRouterMac: '02:00:00:00:00:01',
    router: { ip: '192.168.0.254', mac: '02:00:c0:a8:00:fe' },
  };
}

function flowCount(fs: FlowSet): number {
  let n = 0;
  for (const b of fs.bridges.values()) n += b.flows.length;
  return n;
}

function slotsChanged(a: Generation, b: Generation): number {
  let n = 0;
  for (const [name, pb] of b.pools) {
    const pa = a.pools.get(name);
    if (!pa || pa.bits !== pb.bits) {
      n += pb.primary.length;
      continue;
    }
    if (pa === pb) continue;
    for (let s = 0; s < pb.primary.length; s++)
      if (pa.primary[s] !== pb.primary[s] || pa.second[s] !== pb.second[s]) n++;
  }
  return n;
}

function timed<T>(fn: () => T): { value: T; ms: number; cpuMs: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { value, ms, cpuMs: (c.user + c.system) / 1000 };
}

/** Committed V8 heap now, MiB; `watermark` keeps the largest value seen at the phase boundaries of a scale. */
const committedMiB = () => getHeapStatistics().total_heap_size / 2 ** 20;
let watermark = 0;
const mark = () => {
  watermark = Math.max(watermark, committedMiB());
};

/** Bytes of the full first-install bundle, one bridge at a time: its lines are never all alive at once. */
function fullBundleBytes(fs: FlowSet): number {
  let bytes = 0;
  for (const want of fs.bridges.values())
    for (const l of bundleLines(diffBridge(want, { flows: [], groups: [], tlvMap: [] })))
      bytes += l.length + 1;
  return bytes;
}

function bundleOf(desired: FlowSet, installed: FlowSet): { lines: string[]; diffMs: number } {
  const t0 = performance.now();
  const lines: string[] = [];
  for (const [br, want] of desired.bridges) {
    const have = installed.bridges.get(br) ?? { flows: [], groups: [], tlvMap: [] };
    for (const l of bundleLines(diffBridge(want, have))) lines.push(l);
  }
  return { lines, diffMs: performance.now() - t0 };
}

/** Rolls `to` out from `gen` (zero live connections: every second chance drains), gateway + one host. */
function measureChange(
  change: string,
  to: Config,
  gen: Generation,
  gwBefore: FlowSet,
  host: string,
  hostBefore: FlowSet,
  maxSteps: number,
): ChangeResult {
  const steps: StepResult[] = [];
  let latest = gen;
  let gwPrev = gwBefore;
  let hostPrev = hostBefore;
  let hostLines = 0;
  const gwFacts = syntheticFacts(to, 'gw1');
  const hFacts = syntheticFacts(to, host);
  for (let i = 1; i <= maxSteps; i++) {
    const p = timed(() => planNext({ config: to, latest, connections: () => 0, now: i * 1000 }));
    const next = p.value.next;
    if (next === null) break;
    const c = timed(() => compileNode(to, next, gwFacts));
    mark();
    const { lines, diffMs } = bundleOf(c.value, gwPrev);
    mark();
    const hostFs = compileNode(to, next, hFacts);
    hostLines += bundleOf(hostFs, hostPrev).lines.length;
    steps.push({
      generation: next.number,
      slotsChanged: slotsChanged(latest, next),
      bundleLines: lines.length,
      bundleBytes: lines.reduce((a, l) => a + l.length + 1, 0),
      compileMs: c.ms,
      diffMs,
      planMs: p.ms,
    });
    say(
      `[perf-cp]   ${change}: g${next.number}, ${steps.at(-1)!.slotsChanged} slots, ${lines.length} bundle lines`,
    );
    latest = next;
    gwPrev = c.value;
    hostPrev = hostFs;
  }
  return { change, steps, hostBundleLines: hostLines };
}

export function measureScale(
  s: CpScale,
  runs: number,
  gc: () => void,
  fraction = 1,
  maxSteps = 10,
): ScaleResult {
  const vips = Math.round(s.vips * fraction);
  say(`[perf-cp] ${s.name}: building ${vips} VIPs`);
  gc();
  watermark = committedMiB();
  const config = makeConfig(s, vips);
  const plan = timed(() => planNext({ config, latest: null, connections: () => 0, now: 0 }));
  const gen = plan.value.next!;
  const gwFacts = syntheticFacts(config, 'gw1');
  const host = 'host0';
  const hFacts = syntheticFacts(config, host);

  // Compile the gateway `runs` times (median). Retained heap: heapUsed after forced GCs with exactly one gateway
  // FlowSet alive (after the loop) minus heapUsed before the first compile.
  const wall: number[] = [];
  const cpu: number[] = [];
  let gw: FlowSet | null = null;
  gc();
  gc();
  const h0 = process.memoryUsage().heapUsed;
  for (let r = 0; r < runs; r++) {
    gw = null;
    const t = timed(() => compileNode(config, gen, gwFacts));
    wall.push(t.ms);
    cpu.push(t.cpuMs);
    say(`[perf-cp]   compile gw1: ${t.ms.toFixed(0)} ms (cpu ${t.cpuMs.toFixed(0)} ms)`);
    gw = t.value;
    mark();
  }
  gc();
  gc();
  const retainedGwMiB = (process.memoryUsage().heapUsed - h0) / 2 ** 20;
  if (gw === null) throw new Error('runs must be >= 1');
  const hostT = timed(() => compileNode(config, gen, hFacts));
  const gwInt = gw.bridges.get('br-int')!;
  const bundleTextFullMiB = fullBundleBytes(gw) / 2 ** 20;
  mark();
  // Where the retained FlowSet goes: the match and action text (one-byte strings), one object and one BigInt cookie
  // per flow (every slot flow has its own cookie value).
  let textChars = 0;
  const cookies = new Set<bigint>();
  let flowsSeen = 0;
  for (const b of gw.bridges.values())
    for (const f of b.flows) {
      textChars += f.match.length + f.actions.length;
      cookies.add(f.cookie);
      flowsSeen++;
    }
  const textPerFlow = textChars / Math.max(1, flowsSeen);
  const distinctCookies = cookies.size;
  cookies.clear();

  // Change 1: one backend added to vip00000 (a new address on host0).
  const lb0 = config.loadBalancers[0];
  const added: Backend = { address: '100.127.255.1', port: 8080, host, weight: 1, state: 'active' };
  const addCfg: Config = {
    ...config,
    loadBalancers: [{ ...lb0, backends: [...lb0.backends, added] }, ...config.loadBalancers.slice(1)],
  };
  const hostAfterFacts = hostT.value;
  const changes: ChangeResult[] = [];
  changes.push(
    measureChange('one backend added to one VIP', addCfg, gen, gw, host, hostAfterFacts, maxSteps),
  );
  // Change 2: vip00000's first backend (on host0) set down.
  const downCfg: Config = {
    ...config,
    loadBalancers: [
      { ...lb0, backends: lb0.backends.map((b, j) => (j === 0 ? { ...b, state: 'down' as const } : b)) },
      ...config.loadBalancers.slice(1),
    ],
  };
  changes.push(
    measureChange('one backend of one VIP down', downCfg, gen, gw, host, hostAfterFacts, maxSteps),
  );

  return {
    scale: s,
    built: fraction,
    planMs: plan.ms,
    gatewayFlows: flowCount(gw),
    gatewaySlotFlows: gwInt.flows.filter((f) => f.table === 10).length,
    gatewayGroups: gwInt.groups.length,
    hostFlows: flowCount(hostT.value),
    compileGwMs: median(wall),
    compileGwCpuMs: median(cpu),
    compileHostMs: hostT.ms,
    retainedGwMiB,
    textPerFlow,
    distinctCookies,
    heapWatermarkMiB: watermark,
    rssMiB: process.memoryUsage().rss / 2 ** 20,
    bundleTextFullMiB,
    changes,
  };
}

export function runCpBench(opts: { runs?: number; small?: boolean; maxSteps?: number } = {}): CpReport {
  const m = machine();
  const gc = getGc();
  const runs = opts.runs ?? 3;
  const maxSteps = opts.maxSteps ?? (opts.small ? 10 : 1);
  const scales = SCALES.map((s) => measureScale(s, runs, gc, opts.small ? 0.1 : 1, maxSteps));
  return { machine: finish(m), runs, maxSteps, scales };
}

// ---- report ----------------------------------------------------------------------------------------------

const f0 = (x: number) => x.toLocaleString('en-US', { maximumFractionDigits: 0 });
const f1 = (x: number) => x.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 });

export function renderCp(r: CpReport): string {
  const L: string[] = [];
  L.push('## Control plane at scale: compile, memory, bundle of one backend change (pure, no OVS)');
  L.push('');
  L.push(machineLine(r.machine, 'npm run bench -- --only perf-cp'));
  L.push('');
  L.push(
    'Synthetic desired state: 2 gateways, 100 hosts, TCP VIPs with one port, equal weights, `dp_hash` mode. ' +
      'slotBits: 2^8 for 20 backends per VIP (12.8 slots per backend), 2^12 for 1,000 backends per VIP (4.1 per ' +
      'backend; 2^10 would leave 1 or 2 slots per backend, a 2x imbalance); every VIP of a scale has the same ' +
      'backend count, so the same slot bits. A gateway has one slot flow per slot of every VIP: the gateway tables below are that big, ' +
      `and they are reported as measured. Compile times are medians of ${r.runs} runs (wall; CPU time beside it, ` +
      'less sensitive to the busy machine). A change is applied the way the agent does it: every generation the ' +
      'planner publishes is compiled in full and diffed against the previous FlowSet; the bundle is what the diff ' +
      `sends to ovs-vswitchd. At full scale only the first ${r.maxSteps} generation(s) of each change are compiled ` +
      'and diffed (each costs a full compile and diff of the node; a quick run at 1/10 of the VIPs, ' +
      '`PERF_CP_SCALES=small`, runs every step and shows the later phases give the same bundle size).',
  );
  for (const s of r.scales) {
    const slots = s.scale.vips * 2 ** s.scale.slotBits;
    L.push('');
    L.push(
      `### ${s.scale.name} (2^${s.scale.slotBits} slots each${s.built < 1 ? `; built ${s.built * 100}% of the VIPs` : ''})`,
    );
    L.push('');
    L.push('| metric | value |');
    L.push('| --- | ---: |');
    L.push(`| slots, all VIPs | ${f0(slots)} |`);
    L.push(
      `| gateway flows (br-int + br-phy) / of which slot flows | ${f0(s.gatewayFlows)} / ${f0(s.gatewaySlotFlows)} |`,
    );
    L.push(`| gateway groups (one dp_hash group per VIP) | ${f0(s.gatewayGroups)} |`);
    L.push(`| host flows (host0) | ${f0(s.hostFlows)} |`);
    L.push(`| planner, initial generation (every slot table built) | ${f0(s.planMs)} ms |`);
    L.push(
      `| compile one gateway, median (CPU time) | ${f0(s.compileGwMs)} ms (${f0(s.compileGwCpuMs)} ms) |`,
    );
    L.push(
      `| compile per slot flow | ${((s.compileGwCpuMs * 1000) / Math.max(1, s.gatewaySlotFlows)).toFixed(2)} µs CPU |`,
    );
    L.push(`| compile one host | ${f0(s.compileHostMs)} ms |`);
    L.push(
      `| JS heap retained by one gateway FlowSet | ${f1(s.retainedGwMiB)} MiB (${((s.retainedGwMiB * 2 ** 20) / Math.max(1, s.gatewayFlows)).toFixed(0)} B per flow) |`,
    );
    L.push(
      `| … of which match + actions text | ${f0(s.textPerFlow)} characters per flow (one-byte strings; ${f0(s.distinctCookies)} distinct cookies = one BigInt per flow) |`,
    );
    L.push(`| committed JS heap, largest seen after a compile or diff | ${f0(s.heapWatermarkMiB)} MiB |`);
    L.push(`| process RSS at the end | ${f0(s.rssMiB)} MiB |`);
    L.push(`| full gateway bundle text (first install) | ${f1(s.bundleTextFullMiB)} MiB |`);
    for (const c of s.changes) {
      L.push('');
      L.push(
        `${c.change} (host of the backend: ${c.hostBundleLines} bundle lines over the generations run):`,
      );
      L.push('');
      L.push(
        '| generation | slots changed | gateway bundle lines | bundle bytes | lines / slots changed | lines / gateway flows | plan | compile (full) | diff (full) |',
      );
      L.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
      for (const st of c.steps) {
        L.push(
          `| g${st.generation} | ${st.slotsChanged} | ${st.bundleLines} | ${f0(st.bundleBytes)} | ` +
            `${ratio(st.bundleLines, st.slotsChanged)} | ${(st.bundleLines / s.gatewayFlows).toExponential(1)} | ` +
            `${f0(st.planMs)} ms | ${f0(st.compileMs)} ms | ${f0(st.diffMs)} ms |`,
        );
      }
    }
  }
  L.push('');
  L.push(
    'Reading: the bundle of a one-backend change is at most one `flow add` per slot whose (primary, second chance) ' +
      "changed (fewer when a slot's flow text does not change, e.g. a second chance on the primary's own host), " +
      "independent of the table size. The agent's work to find that bundle is not: " +
      'it re-compiles and diffs the whole node (the compile and diff columns grow with the number of slot flows). ' +
      'At 2.56M (4.1M) slot flows a gateway holds that many OpenFlow rules in ovs-vswitchd as well; the first install ' +
      'is a bundle of the size in the table above (ovs-ofctl and the classifier at that size were not measured here).',
  );
  L.push('');
  L.push(
    'Memory: a gateway FlowSet costs about 290 B per flow, most of it the flow text (the match and actions ' +
      'strings, about 156 characters per slot flow, stored as one-byte strings with their headers), then one Flow ' +
      'object and one BigInt cookie per flow (every slot flow has its own cookie value). Re-compiling a change keeps ' +
      'two FlowSets alive (installed and desired) and the diff (src/flowset/diff.ts) adds two Maps keyed by a ' +
      'rebuilt `flowKey` string per flow (table, priority and the match text again); the committed-heap row is what ' +
      'that peaks at. This benchmark used to keep the full first-install bundle (every line of it, ~1.7x its text ' +
      'size in the heap) alive through the change measurements; it now sums it one bridge at a time, and the run ' +
      "fits in `--max-old-space-size=8000` (was 16,000). Further cuts belong in the agent's path, not here: a diff " +
      'keyed by table and priority, then match, without building the key strings; `groupRefs` skipping actions ' +
      'without `group:` (at 1/10 scale the scan of every action with the regex took 212 ms CPU, with an `includes` ' +
      'guard 30 ms); and compiling only the pools that changed (which also avoids holding two whole FlowSets).',
  );
  return L.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const report = runCpBench({
    runs: Number(process.env.PERF_CP_RUNS ?? 2),
    small: process.env.PERF_CP_SCALES === 'small',
    maxSteps: process.env.PERF_CP_STEPS ? Number(process.env.PERF_CP_STEPS) : undefined,
  });
  const md = renderCp(report);
  process.stdout.write(`${md}\n`);
  if (process.env.PERF_CP_NO_WRITE !== '1') writeSection('perf-cp', md);
}
