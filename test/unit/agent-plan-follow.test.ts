// An agent's per-generation read and compile followed from the replica's changes (src/store/db/plan-index.ts
// PlanIndex; the hints it gives src/model/config-parts.ts and src/compile/incremental.ts) against the whole read and
// compile they replace, over random change sequences: load balancers come and go, share and change VIPs, their
// backends change; every generation the planner publishes is read by a gateway (the released generation, which
// lags) and a host (the published one), and sometimes an older stored generation. TCP and UDP (the host's chain
// jumps follow which protocols walk). Pure: the planner's own publish,
// release and prune transactions on an in-memory stand-in for ovsdb-server (bench/memory-store.ts), no OVS; a
// seeded generator, so a failure repeats. Negative controls: an index that misses Plan_LB's changes, and a hint that
// leaves out a changed load balancer, are caught by the same comparisons.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryStore } from '../../bench/memory-store.ts';
import { syntheticDesiredDoc } from '../../bench/store-fixture.ts';
import { PlanConfigReader } from '../../src/agent/plan-config.ts';
import { compileNodeParts, type NodeParts, partsFlowSet } from '../../src/compile/incremental.ts';
import { compileNode } from '../../src/compile/index.ts';
import { bundleLines, diffParts } from '../../src/flowset/diff.ts';
import { renderFlowSet } from '../../src/flowset/text.ts';
import type { BridgeState } from '../../src/flowset/types.ts';
import { parseConfig } from '../../src/model/schema.ts';
import type { Replica } from '../../src/ovsdb/replica.ts';
import { planNext } from '../../src/rollout/planner.ts';
import type { Generation } from '../../src/rollout/types.ts';
import {
  GlobalTable,
  gatewayGeneration,
  insert,
  PlanIndex,
  PlanTable,
  type PublishedPlan,
  prunePlansOps,
  publishedGeneration,
  publishGenerationOps,
  readPlan,
  releaseOps,
  rows,
  splitPlanDocument,
} from '../../src/store/db/index.ts';
import { DeafReplica } from '../scenarios/deaf-replica.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';
import { pick, random } from '../scenarios/random.ts';

class DeafStore extends MemoryStore {
  override readonly replica: Replica = new DeafReplica('Plan_LB');
}

type Doc = ReturnType<typeof syntheticDesiredDoc>;
type LbDoc = Doc['loadBalancers'][number];

const VIPS = ['198.18.0.1', '198.18.0.2', '198.18.0.3', '198.18.0.4'];
const PORTS = [80, 443, 8080];
const ALL_BACKENDS = syntheticDesiredDoc(2).loadBalancers[1]!.backends;

/** One random edit of the desired document (every result valid: listeners stay unique). */
function edit(doc: Doc, rnd: () => number, names: { next: number }): void {
  const lbs = doc.loadBalancers;
  const taken = (vip: string, port: number, except?: LbDoc) =>
    lbs.some((l) => l !== except && l.vip === vip && l.ports.includes(port));
  const backends = () => {
    const out = ALL_BACKENDS.filter(() => rnd() < 0.5);
    return out.length > 0 ? out : [ALL_BACKENDS[0]!];
  };
  const k = rnd();
  if (k < 0.25 || lbs.length < 2) {
    const vip = pick(rnd, VIPS);
    const port = pick(rnd, PORTS);
    if (!taken(vip, port))
      lbs.push({
        name: `lb${names.next++}`,
        vip,
        protocol: rnd() < 0.5 ? 'udp' : 'tcp',
        ports: [port],
        backends: backends(),
      });
  } else if (k < 0.45) lbs.splice(Math.floor(rnd() * lbs.length), 1);
  else if (k < 0.55) {
    const lb = pick(rnd, lbs);
    const vip = pick(rnd, VIPS);
    if (!taken(vip, lb.ports[0]!, lb)) lbs[lbs.indexOf(lb)] = { ...lb, vip };
  } else {
    const lb = pick(rnd, lbs);
    lbs[lbs.indexOf(lb)] = { ...lb, backends: backends() };
  }
  lbs.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The parts of a read two readers must agree on; pools by identity (both decode a Plan_Pool row once). */
function assertSamePlan(got: PublishedPlan | undefined, want: PublishedPlan | undefined, what: string): void {
  assert.equal(got === undefined, want === undefined, `${what}: found`);
  if (got === undefined || want === undefined) return;
  const g = got.generation;
  const w = want.generation;
  assert.equal(g.number, w.number, what);
  assert.equal(g.createdAt, w.createdAt, what);
  assert.equal(got.desiredCfg, want.desiredCfg, what);
  assert.deepEqual(
    [...(g.retiredLbIds ?? [])].sort(),
    [...(w.retiredLbIds ?? [])].sort(),
    `${what}: retired`,
  );
  assert.deepEqual([...g.pools.keys()].sort(), [...w.pools.keys()].sort(), `${what}: pools`);
  for (const [name, pool] of w.pools) assert.equal(g.pools.get(name), pool, `${what}: pool ${name}`);
  assert.equal(got.docs?.base, want.docs?.base, `${what}: base`);
  const docs = (p: PublishedPlan) => [...(p.docs?.lbs ?? [])].sort(([a], [b]) => (a < b ? -1 : 1));
  assert.deepEqual(docs(got), docs(want), `${what}: documents`);
  assert.equal(got.config, want.config, `${what}: whole document`);
}

/** The load balancers whose pool object or document differ between two whole reads. */
function actuallyChanged(a: PublishedPlan, b: PublishedPlan): Set<string> {
  const out = new Set<string>();
  for (const n of new Set([...a.generation.pools.keys(), ...b.generation.pools.keys()]))
    if (a.generation.pools.get(n) !== b.generation.pools.get(n)) out.add(n);
  const da = a.docs?.lbs ?? new Map<string, string>();
  const db = b.docs?.lbs ?? new Map<string, string>();
  for (const n of new Set([...da.keys(), ...db.keys()])) if (da.get(n) !== db.get(n)) out.add(n);
  return out;
}

interface Reader {
  readonly name: string;
  readonly index: PlanIndex;
  readonly target: (store: MemoryStore) => number;
  /** The node that compiles what it reads, and how it is told what changed. */
  readonly node?: string;
  readonly hint?: (index: PlanIndex, from: Generation, to: Generation) => ReadonlySet<string> | undefined;
  readonly configs?: PlanConfigReader;
  last?: { followed: PublishedPlan; whole: PublishedPlan };
  compiled?: { parts: NodeParts; from: Generation };
}

/** Every backend any edit may use on the nodes (the facts stay the same, as an agent's between reads). */
const FACTS_CONFIG = parseConfig({
  ...syntheticDesiredDoc(1),
  loadBalancers: [{ ...syntheticDesiredDoc(1).loadBalancers[0]!, backends: ALL_BACKENDS }],
});

const told = (index: PlanIndex, from: Generation, to: Generation) => index.changed(from, to);

/** The compile an agent does on a followed read against a whole compile of the whole read, and the diff told which
 *  parts changed against the diff of every part. */
function checkCompile(reader: Reader, target: number, followed: PublishedPlan, whole: PublishedPlan): void {
  if (reader.node === undefined || followed.docs === undefined) return;
  const what = `${reader.name} g${target}`;
  const facts = fakeFacts(FACTS_CONFIG, reader.node);
  const config = reader.configs!.read(followed.docs, followed.configRef, target, (a, b) =>
    reader.index.changed(a, b),
  );
  const wantConfig = parseConfig(JSON.parse(whole.config!));
  assert.deepEqual(config, wantConfig, `${what}: config`);
  const before = reader.compiled;
  const hint =
    before === undefined ? undefined : reader.hint!(reader.index, before.from, followed.generation);
  const parts = compileNodeParts(config, followed.generation, facts, before?.parts, {}, hint);
  assert.equal(
    renderFlowSet(partsFlowSet(parts)),
    renderFlowSet(compileNode(wantConfig, whole.generation, facts)),
    `${what}: compiled`,
  );
  if (before !== undefined)
    for (const [bridge, want] of parts.bridges) {
      const had: ReadonlyMap<string, BridgeState> = before.parts.bridges.get(bridge)!;
      const changed = parts.changed.get(bridge);
      assert.equal(changed?.from, had, `${what}: ${bridge} changes are against the previous parts`);
      // The same lines; their order follows the parts' (a bundle is atomic, and bundleLines orders by kind).
      assert.deepEqual(
        bundleLines(diffParts(want, had, [], changed!.names)).sort(),
        bundleLines(diffParts(want, had)).sort(),
        `${what}: ${bridge} diff`,
      );
    }
  reader.compiled = { parts, from: followed.generation };
}

/** Runs `edits` random edits through the planner into `store`, calling `check` after every publish. */
function run(seed: number, edits: number, store: MemoryStore, check: (rnd: () => number) => void): void {
  const rnd = random(seed);
  const doc = syntheticDesiredDoc(3);
  for (const lb of doc.loadBalancers) lb.backends = lb.backends.slice(0, 4);
  doc.slotBits = 4;
  store.transact([insert(GlobalTable, { hash_mode: 'dp_hash', slot_bits: 4 })]);
  const names = { next: 3 };
  let latest: Generation | null = null;
  let now = 1_000;
  let cfg = 0;
  let released = 0;
  for (let e = 0; e < edits; e++) {
    if (e > 0) edit(doc, rnd, names);
    cfg++;
    const config = parseConfig(doc);
    for (let s = 0; s < 8; s++) {
      now += 60_000;
      const next: Generation | null = planNext({ config, latest, connections: () => 0, now }).next;
      if (next === null) break;
      // Prune at most down to the released generation, sometimes less (older plans stay readable).
      const keepFrom = Math.max(1, Math.min(released || next.number, next.number - Math.floor(rnd() * 5)));
      store.transact([
        ...publishGenerationOps(store.replica, next, cfg, splitPlanDocument(doc)),
        ...prunePlansOps(store.replica, keepFrom),
      ]);
      // Gateways lag: the release comes later, sometimes after more generations.
      if (rnd() < 0.6) {
        store.transact(releaseOps(next.number));
        released = next.number;
      }
      latest = next;
      check(rnd);
    }
  }
}

function checkReaders(store: MemoryStore, readers: Reader[], rnd: () => number): void {
  for (const reader of readers) {
    const target = reader.target(store);
    if (target === 0) continue;
    const followed = reader.index.read(target);
    const whole = readPlan(store.replica, target);
    assertSamePlan(followed, whole, `${reader.name} g${target}`);
    if (followed === undefined || whole === undefined) continue;
    if (reader.last !== undefined) {
      const hint = reader.index.changed(reader.last.followed.generation, followed.generation);
      if (hint !== undefined)
        for (const n of actuallyChanged(reader.last.whole, whole))
          assert.ok(hint.has(n), `${reader.name} g${target}: ${n} changed, not in the hint`);
    }
    checkCompile(reader, target, followed, whole);
    reader.last = { followed, whole };
  }
  // Sometimes an older stored generation (a target that moves back: a restart that acknowledges an older plan).
  if (rnd() < 0.2) {
    const stored = rows(store.replica, PlanTable).map((p) => p.generation);
    const g = pick(rnd, stored);
    assertSamePlan(readers[0]!.index.read(g), readPlan(store.replica, g), `older g${g}`);
  }
}

/** A reader that compiles what it reads, as node `node`'s agent does. */
function agent(
  store: MemoryStore,
  name: string,
  node: string,
  target: Reader['target'],
  hint: NonNullable<Reader['hint']>,
): Reader {
  return { name, index: new PlanIndex(store.replica), target, node, hint, configs: new PlanConfigReader() };
}

test('PlanIndex: the same plan as readPlan, and the compile told what changed the same as a whole compile, over random change sequences', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const store = new MemoryStore();
    const readers = [
      agent(store, 'gateway', 'gw1', (s) => gatewayGeneration(s.replica), told),
      agent(store, 'host', 'host1', (s) => publishedGeneration(s.replica), told),
    ];
    run(seed, 40, store, (rnd) => checkReaders(store, readers, rnd));
  }
});

test('PlanIndex negative control: an index deaf to Plan_LB changes is caught by the same comparison', () => {
  const store = new DeafStore();
  const readers: Reader[] = [
    { name: 'deaf host', index: new PlanIndex(store.replica), target: (s) => publishedGeneration(s.replica) },
  ];
  assert.throws(
    () => run(1, 40, store, (rnd) => checkReaders(store, readers, rnd)),
    (e: Error) => e instanceof assert.AssertionError,
  );
});

test('negative control: a hint that leaves out one changed load balancer is caught by the compile comparison', () => {
  const store = new MemoryStore();
  // The first name the index reports as changed is dropped (a follower that missed one row).
  const lossy = (index: PlanIndex, from: Generation, to: Generation) => {
    const h = index.changed(from, to);
    if (h === undefined || h.size === 0) return h;
    const out = new Set(h);
    out.delete([...h][0]!);
    return out;
  };
  const readers = [agent(store, 'lossy gateway', 'gw1', (s) => gatewayGeneration(s.replica), lossy)];
  assert.throws(
    () => run(1, 40, store, (rnd) => checkReaders(store, readers, rnd)),
    (e: Error) => e instanceof assert.AssertionError && /compiled|diff/.test(e.message),
  );
});
