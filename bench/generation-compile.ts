// An agent's cost per generation at scale, in-process (`npm run bench -- --only generation-compile`).
//
// What an agent does between "a new plan is in its replica" and "the bundle is ready to send" (src/agent/daemon.ts
// #apply, then src/agent/node-ops.ts NodeProgrammer.program up to applyBridgeDelta's diff): read the generation and
// its config documents from the replica (PlanIndex, following its rows, as the daemon), build the config from the documents that changed
// (PlanConfigReader, as the daemon), compile the node reusing unchanged load balancers
// (compileNodeParts, told which ones may have changed), diff every bridge's parts against what it installed last
// (diffParts, told which parts the compile changed) and render the bundle
// lines. The store is an in-memory stand-in (bench/memory-store.ts) that runs the planner's publish, release and
// prune transactions on a Replica, so rows change as a monitor delivers them; no ovsdb-server, no OVS.
//
// Sizes: 1 VIP (the baseline), 1,000 and 10,000 VIPs x 20 backends on two hosts (bench/store-fixture.ts), each in its
// own child process. After the first generation (compiled, not timed), CHANGES backend changes to VIP v0 (add its
// 20th backend, then remove it, alternately); every generation the planner publishes for them (phases included) is
// applied by a gateway agent (gw1) and a host agent (host1) and timed. Writes docs/benchmarks.md between the
// bench:generation-compile markers. Env: GEN_COMPILE_VIPS (default 1,1000,10000), GEN_COMPILE_CHANGES (default 4),
// GEN_COMPILE_NO_WRITE=1, GEN_COMPILE_CHILD (internal: one size, JSON on stdout).

import { fileURLToPath } from 'node:url';
import { PlanConfigReader } from '../src/agent/plan-config.ts';
import { compileNodeParts, type NodeParts } from '../src/compile/incremental.ts';
import type { NodeFacts } from '../src/compile/index.ts';
import { ovnPatchEntries, withDeliveryEntries } from '../src/compile/ovn-patch.ts';
import { bundleLines, diffParts } from '../src/flowset/diff.ts';
import type { BridgeState } from '../src/flowset/types.ts';
import { parseConfig } from '../src/model/schema.ts';
import { PlanCache } from '../src/rollout/plan-cache.ts';
import { planNext } from '../src/rollout/planner.ts';
import type { Generation } from '../src/rollout/types.ts';
import {
  GlobalTable,
  gatewayGeneration,
  insert,
  PlanIndex,
  prunePlansOps,
  publishedGeneration,
  publishGenerationOps,
  releaseOps,
  splitPlanDocument,
} from '../src/store/db/index.ts';
import { fakeFacts } from '../test/scenarios/fake-facts.ts';
import { MemoryStore } from './memory-store.ts';
import {
  finish,
  machine,
  machineLine,
  median,
  n0,
  ratio,
  runJsonChild,
  say,
  writeSection,
} from './perf/common.ts';
import { syntheticDesiredDoc } from './store-fixture.ts';

const SIZES = (process.env.GEN_COMPILE_VIPS ?? '1,1000,10000').split(',').map(Number);
const CHANGES = Number(process.env.GEN_COMPILE_CHANGES ?? 4);

/** One agent's per-generation timings, ms. */
interface Step {
  readonly readMs: number;
  readonly compileMs: number;
  readonly diffMs: number;
  readonly totalMs: number;
  readonly lines: number;
  readonly reused: number;
}

interface SizeResult {
  readonly vips: number;
  readonly generations: number;
  readonly gateway: readonly Step[];
  readonly host: readonly Step[];
  readonly publishMs: readonly number[];
}

/** Generations followed per change at most (a backend add takes phase 1, phase 2 and the stable step). */
const MAX_STEPS = 6;
/** Changes applied before the timed ones (an even number: v0 is back to 19 backends). */
const WARMUP = 2;

/** One agent's apply path without the switch (see the top of this file). */
class AgentModel {
  readonly #facts: NodeFacts;
  readonly #planConfig = new PlanConfigReader();
  #plans: PlanIndex | undefined;
  #compiled: NodeParts | undefined;
  #compiledFrom: Generation | undefined;
  #installed: ReadonlyMap<string, ReadonlyMap<string, BridgeState>> | undefined;

  constructor(facts: NodeFacts) {
    this.#facts = facts;
  }

  apply(store: MemoryStore): Step {
    const r = store.replica;
    const t0 = performance.now();
    const target = this.#facts.role === 'gateway' ? gatewayGeneration(r) : publishedGeneration(r);
    this.#plans ??= new PlanIndex(r);
    const plans = this.#plans;
    const plan = plans.read(target)!;
    const config = this.#planConfig.read(plan.docs!, plan.configRef, target, (a, b) => plans.changed(a, b));
    const t1 = performance.now();
    const entries = ovnPatchEntries(config, plan.generation, this.#facts, {});
    const facts = withDeliveryEntries(this.#facts, entries);
    const from = this.#compiledFrom;
    const hint = from === undefined ? undefined : plans.changed(from, plan.generation);
    const parts = compileNodeParts(config, plan.generation, facts, this.#compiled, {}, hint);
    this.#compiled = parts;
    this.#compiledFrom = plan.generation;
    const t2 = performance.now();
    let lines = 0;
    if (this.#installed !== undefined)
      for (const name of [...parts.bridges.keys()].sort()) {
        const have = this.#installed.get(name) ?? new Map();
        const changed = parts.changed.get(name);
        const only = changed?.from === have ? changed.names : undefined;
        const diff = diffParts(parts.bridges.get(name)!, have, [], only);
        lines += bundleLines(diff).length;
      }
    this.#installed = parts.bridges;
    const t3 = performance.now();
    return {
      readMs: t1 - t0,
      compileMs: t2 - t1,
      diffMs: t3 - t2,
      totalMs: t3 - t0,
      lines,
      reused: parts.reused,
    };
  }
}

function measureSize(vips: number): SizeResult {
  const doc = syntheticDesiredDoc(vips);
  const store = new MemoryStore();
  store.transact([insert(GlobalTable, { hash_mode: 'dp_hash', slot_bits: 8 })]);
  const gw = new AgentModel(fakeFacts(parseConfig(doc), 'gw1'));
  const host = new AgentModel(fakeFacts(parseConfig(syntheticDesiredDoc(2)), 'host1'));
  let now = 1_000;
  let desiredCfg = 1;
  const publishMs: number[] = [];
  const publish = (gen: Generation) => {
    const t0 = performance.now();
    store.transact([
      ...publishGenerationOps(store.replica, gen, desiredCfg, splitPlanDocument(doc)),
      ...prunePlansOps(store.replica, Math.max(1, gen.number - 4)),
    ]);
    store.transact(releaseOps(gen.number));
    publishMs.push(performance.now() - t0);
  };
  let latest = planNext({ config: parseConfig(doc), latest: null, connections: () => 0, now }).next!;
  publish(latest);
  gw.apply(store);
  host.apply(store);
  const gateway: Step[] = [];
  const hostSteps: Step[] = [];
  const all = syntheticDesiredDoc(2).loadBalancers[1]!.backends;
  // WARMUP changes first, not timed (the JIT compiles the incremental path on them).
  const cache = new PlanCache(); // the planner's memory of its steps
  for (let k = 0; k < WARMUP + CHANGES; k++) {
    // Add v0's 20th backend, then remove it, alternately.
    doc.loadBalancers[0]!.backends = k % 2 === 0 ? all : all.slice(0, 19);
    desiredCfg++;
    const config = parseConfig(doc);
    for (let s = 0; s < MAX_STEPS; s++) {
      now += 60_000;
      const next = planNext({ config, latest, connections: () => 0, now, cache }).next;
      if (next === null) break;
      publish(next);
      const [g, h] = [gw.apply(store), host.apply(store)];
      if (k >= WARMUP) {
        gateway.push(g);
        hostSteps.push(h);
      }
      latest = next;
    }
  }
  return { vips, generations: gateway.length, gateway, host: hostSteps, publishMs };
}

const n1 = (x: number) => x.toFixed(1);

function render(m: ReturnType<typeof machine>, results: readonly SizeResult[]): string {
  const base = results[0]!;
  const head = `| | ${results.map((r) => `${n0(r.vips)} VIP${r.vips === 1 ? '' : 's'}`).join(' | ')} | ${results
    .slice(1)
    .map((r) => `ratio ${n0(r.vips)} : 1`)
    .join(' | ')} |`;
  const sep = `| --- |${results.map(() => ' ---: |').join('')}${results
    .slice(1)
    .map(() => ' ---: |')
    .join('')}`;
  const row = (what: string, f: (r: SizeResult) => number, fmt = n1, withRatio = true) =>
    `| ${what} | ${results.map((r) => fmt(f(r))).join(' | ')} | ${results
      .slice(1)
      .map((r) => (withRatio ? ratio(f(r), f(base), 1) : ''))
      .join(' | ')} |`;
  const med = (pick: (r: SizeResult) => readonly Step[], k: keyof Step) => (r: SizeResult) =>
    median(pick(r).map((s) => s[k]));
  const max = (pick: (r: SizeResult) => readonly Step[], k: keyof Step) => (r: SizeResult) =>
    Math.max(...pick(r).map((s) => s[k]));
  const gw = (r: SizeResult) => r.gateway;
  const host = (r: SizeResult) => r.host;
  const agentRows = (who: string, pick: (r: SizeResult) => readonly Step[]) => [
    row(`**${who}: total**`, med(pick, 'totalMs')),
    row('… max', max(pick, 'totalMs')),
    row('… read (PlanIndex + config parts)', med(pick, 'readMs')),
    row('… compile (compileNodeParts)', med(pick, 'compileMs')),
    row('… diff (diffParts + bundle lines)', med(pick, 'diffMs')),
    row('… bundle lines', med(pick, 'lines'), n0, false),
  ];
  const L = [
    '## An agent’s cost per generation at scale (in-process, no OVS)',
    '',
    machineLine(m, 'npm run bench -- --only generation-compile'),
    '',
    `From a new generation in the agent's replica to its bundle ready to send: the plan followed from the changed ` +
      'Plan_LB rows (PlanIndex) and the config built from the documents that changed (read), compileNodeParts told ' +
      'which load balancers changed (compile), diffParts of the parts it changed on every bridge and the bundle ' +
      'lines (diff). The store is an in-memory stand-in running the planner’s publish, ' +
      `release and prune transactions on a Replica (bench/memory-store.ts). ${CHANGES} changes to VIP v0 (its 20th ` +
      'backend added, then removed, alternately); every generation the planner published for them timed, ' +
      `${base.generations} per size. 20 backends per VIP on 2 hosts, 2^8 slots, dp_hash; each size in its own process. ` +
      'Milliseconds per generation, median (max).',
    '',
    head,
    sep,
    ...agentRows('gateway gw1', gw),
    ...agentRows('host host1', host),
    row('planner’s publish + release + prune in the stand-in (not the agent’s)', (r) => median(r.publishMs)),
  ];
  return L.join('\n');
}

async function main(): Promise<void> {
  const child = process.env.GEN_COMPILE_CHILD;
  if (child !== undefined) {
    process.stdout.write(JSON.stringify(measureSize(Number(child))));
    return;
  }
  const m = machine();
  const results: SizeResult[] = [];
  for (const vips of SIZES) {
    say(`[generation-compile] ${vips} VIPs`);
    results.push(
      await runJsonChild<SizeResult>(
        fileURLToPath(import.meta.url),
        { GEN_COMPILE_CHILD: String(vips), NODE_OPTIONS: '--max-old-space-size=6000' },
        `${vips} VIPs`,
      ),
    );
  }
  const md = render(finish(m), results);
  process.stdout.write(`${md}\n`);
  if (process.env.GEN_COMPILE_NO_WRITE !== '1') writeSection('generation-compile', md);
}

await main();
