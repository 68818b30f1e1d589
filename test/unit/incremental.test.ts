// Incremental compile and apply (src/compile/incremental.ts, flowset/diff.ts diffParts, agent/node-ops.ts
// NodeProgrammer): the incremental result must equal a full compile, and the switch must end up exactly where the
// stateless path (read, diff, verify) would put it. The switch is a FAKE (test/scenarios/fake-switch.ts); facts are
// FAKE (fake-facts.ts). Real OVS: test/e2e/controlplane.test.ts and bench/convergence.ts.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fc from 'fast-check';
import { NodeProgrammer } from '../../src/agent/node-ops.ts';
import {
  compileNodeParts,
  isLbPart,
  lbPart,
  NODE_PART,
  type NodeParts,
  partsFlowSet,
  vipPart,
} from '../../src/compile/incremental.ts';
import { compileNode } from '../../src/compile/index.ts';
import { lbIds } from '../../src/compile/registry.ts';
import { bundleLineCount, bundleLines, diffParts } from '../../src/flowset/diff.ts';
import { hex, renderFlowSet } from '../../src/flowset/text.ts';
import type { BridgeState } from '../../src/flowset/types.ts';
import { LayeredMap } from '../../src/model/layered-map.ts';
import type { Backend, Config, LoadBalancer } from '../../src/model/types.ts';
import { incrementalPieces } from '../../src/openflow/applier.ts';
import { planNext } from '../../src/rollout/planner.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';
import { FakeSwitch } from '../scenarios/fake-switch.ts';

const NODES: Config['nodes'] = [
  { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
  { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
  { name: 'host2', role: 'host', tunnelIp: '192.168.100.12' },
];

/** Every backend any step may use: 3 per host. */
const POOL: Backend[] = [1, 2].flatMap((h) =>
  [1, 2, 3].map((i) => ({
    address: `10.0.${h}.${10 + i}`,
    port: 8080,
    host: `host${h}`,
    weight: 1,
    state: 'active' as const,
  })),
);

function lbOf(i: number, backends: Backend[]): LoadBalancer {
  return {
    name: `v${i}`,
    vip: `203.0.113.${10 + i}`,
    family: 4,
    protocol: i % 3 === 2 ? 'udp' : 'tcp',
    ports: [80],
    backends,
  };
}

/** A config from `members[i]` = the POOL indices behind LB i (each LB keeps at least one backend). */
function configOf(members: readonly (readonly number[])[], hashMode: Config['hashMode']): Config {
  return {
    hashMode,
    slotBits: 4,
    drainWindowSeconds: 30,
    nodes: NODES,
    loadBalancers: members.map((m, i) =>
      lbOf(
        i,
        m.map((j) => POOL[j]!),
      ),
    ),
  };
}

/** Facts that know every backend of POOL (a backend leaving the config keeps its port, as in the lab). */
const allConfig = configOf([[0, 1, 2, 3, 4, 5]], 'dp_hash');
const facts = (node: string) => fakeFacts(allConfig, node);

const full = (config: Config, gen: Generation, node: string) =>
  renderFlowSet(compileNode(config, gen, facts(node)));

/** Steps: each is the set of backends per LB (3 LBs); drives the real planner through every generation. */
const stepsArb = fc.array(
  fc.array(fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 6 }), {
    minLength: 3,
    maxLength: 3,
  }),
  { minLength: 1, maxLength: 4 },
);

/** Every generation the planner publishes through the steps (connections = 0, drain windows ignored). */
function generations(
  steps: readonly (readonly (readonly number[])[])[],
  hashMode: Config['hashMode'],
): { config: Config; gen: Generation }[] {
  return generationsOf(steps.map((step) => configOf(step, hashMode)));
}

/** Every generation the planner publishes through these configs in turn. */
function generationsOf(configs: readonly Config[]): { config: Config; gen: Generation }[] {
  const out: { config: Config; gen: Generation }[] = [];
  let latest: Generation | null = null;
  for (const config of configs) {
    for (let i = 0; i < 20; i++) {
      const r = planNext({ config, latest, connections: () => 0, now: 1000 * out.length });
      if (r.next === null) break;
      latest = r.next;
      out.push({ config, gen: latest });
    }
  }
  return out;
}

test('incremental compile equals a full compile through random rollouts (gateway and host, both hash modes)', () => {
  fc.assert(
    fc.property(stepsArb, fc.constantFrom('dp_hash' as const, 'fields' as const), (steps, hashMode) => {
      for (const node of ['gw1', 'host1', 'host2']) {
        let prev: NodeParts | undefined;
        for (const { config, gen } of generations(steps, hashMode)) {
          const parts = compileNodeParts(config, gen, facts(node), prev);
          assert.equal(renderFlowSet(partsFlowSet(parts)), full(config, gen, node));
          prev = parts;
        }
      }
    }),
    { numRuns: 60 },
  );
});

/** One load balancer of a random config: present or not, its VIP (of three, so VIPs are shared), its protocol and
 *  its backends. The port follows the name, so no two load balancers clash on (protocol, VIP, port). */
const lbArb = fc.option(
  fc.record({
    vip: fc.integer({ min: 0, max: 2 }),
    udp: fc.boolean(),
    backends: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 6 }),
  }),
  { freq: 4 },
);
/** Sequences of configs of up to five load balancers that come and go, share and change VIPs and protocols. */
type ChurnLb = { vip: number; udp: boolean; backends: number[] } | null;
const churnArb: fc.Arbitrary<ChurnLb[][]> = fc.array(fc.array(lbArb, { minLength: 5, maxLength: 5 }), {
  minLength: 2,
  maxLength: 5,
});

function churnConfig(step: readonly ChurnLb[], hashMode: Config['hashMode']): Config {
  const lbs: LoadBalancer[] = [];
  step.forEach((x, i) => {
    if (x === null) return;
    lbs.push({
      name: `v${i}`,
      vip: `203.0.113.${10 + x.vip}`,
      family: 4,
      protocol: x.udp ? 'udp' : 'tcp',
      ports: [80 + i],
      backends: x.backends.map((j) => POOL[j]!),
    });
  });
  return { hashMode, slotBits: 4, drainWindowSeconds: 30, nodes: NODES, loadBalancers: lbs };
}

type Compile = typeof compileNodeParts;

/** The property: through every churn, the incremental result renders exactly as a full compile. */
function churnProperty(compile: Compile) {
  return fc.property(churnArb, fc.constantFrom('dp_hash' as const, 'fields' as const), (steps, hashMode) => {
    for (const node of ['gw1', 'host1', 'host2']) {
      let prev: NodeParts | undefined;
      for (const { config, gen } of generationsOf(steps.map((st) => churnConfig(st, hashMode)))) {
        const parts = compile(config, gen, facts(node), prev);
        assert.equal(renderFlowSet(partsFlowSet(parts)), full(config, gen, node));
        prev = parts;
      }
    }
  });
}

test('incremental compile equals a full compile while load balancers come and go, share and change VIPs', () => {
  fc.assert(churnProperty(compileNodeParts), { numRuns: 80 });
});

test('negative control: VIP and node parts wrongly kept from the previous result fail the churn property', () => {
  // The optimisation going wrong: every `vip:` part and the node part taken over from `prev` whatever changed.
  const stale: Compile = (config, gen, f, prev, opts) => {
    const parts = compileNodeParts(config, gen, f, prev, opts);
    if (prev === undefined) return parts;
    const bridges = new Map(
      [...parts.bridges].map(([b, m]) => {
        const kept = new Map(m);
        for (const [name, old] of prev.bridges.get(b) ?? []) if (!isLbPart(name)) kept.set(name, old);
        return [b, LayeredMap.of(kept)] as const;
      }),
    );
    return { ...parts, bridges };
  };
  const r = fc.check(churnProperty(stale), { numRuns: 80 });
  assert.equal(r.failed, true, 'the property catches stale VIP parts');
});

test('a one-backend change recompiles one load balancer and the others are reused as the same objects', () => {
  const before = configOf(
    [
      [0, 1, 3],
      [0, 1, 3],
      [1, 4],
    ],
    'dp_hash',
  );
  const g1 = planNext({ config: before, latest: null, connections: () => 0, now: 0 }).next!;
  const p1 = compileNodeParts(before, g1, facts('gw1'));
  const after = configOf(
    [
      [0, 1, 3, 4],
      [0, 1, 3],
      [1, 4],
    ],
    'dp_hash',
  );
  const g2 = planNext({ config: after, latest: g1, connections: () => 0, now: 1 }).next!;
  const p2 = compileNodeParts(after, g2, facts('gw1'), p1);
  assert.equal(p2.reused, 2);
  const int1 = p1.bridges.get('br-int')!;
  const int2 = p2.bridges.get('br-int')!;
  assert.equal(int2.get('lb:v1'), int1.get('lb:v1'));
  assert.notEqual(int2.get('lb:v0'), int1.get('lb:v0'));
  // The other VIPs' parts and the node part are taken over too; the changed load balancer's VIP is compiled again.
  assert.equal(int2.get(vipPart('4/203.0.113.11')), int1.get(vipPart('4/203.0.113.11')));
  assert.notEqual(int2.get(vipPart('4/203.0.113.10')), int1.get(vipPart('4/203.0.113.10')));
  assert.equal(int2.get(NODE_PART), int1.get(NODE_PART));
  assert.equal(p2.bridges.get('br-phy')!.get(NODE_PART), p1.bridges.get('br-phy')!.get(NODE_PART));
  assert.equal(renderFlowSet(partsFlowSet(p2)), full(after, g2, 'gw1'));
  // Another context (a node added) recompiles everything.
  const moreNodes = {
    ...after,
    nodes: [...NODES, { name: 'gw2', role: 'gateway' as const, tunnelIp: '192.168.100.2' }],
  };
  assert.equal(compileNodeParts(moreNodes, g2, facts('gw1'), p2).reused, 0);
});

/** The fake switch's sluice state of one bridge as sorted text, to compare with a full compile. */
function switchText(sw: FakeSwitch, bridge: string): string {
  const flows = [...(sw.flows.get(bridge)?.values() ?? [])]
    .map((f) => `${hex(f.cookie)} ${f.table} ${f.priority} ${f.match} ${f.actions}`)
    .sort();
  const groups = [...(sw.groups.get(bridge) ?? [])].map(([id, spec]) => `${id} ${spec}`).sort();
  return [...flows, ...groups].join('\n');
}

function fsText(config: Config, gen: Generation, node: string, bridge: string): string {
  const b = compileNode(config, gen, facts(node)).bridges.get(bridge)!;
  const flows = b.flows
    .map((f) => `${hex(f.cookie)} ${f.table} ${f.priority} ${f.match} ${f.actions}`)
    .sort();
  const groups = b.groups.map((g) => `${g.groupId} ${g.spec}`).sort();
  return [...flows, ...groups].join('\n');
}

test('NodeProgrammer: one full read at start, then bundles of only the changes without reading the switch', async () => {
  await fc.assert(
    fc.asyncProperty(stepsArb, async (steps) => {
      for (const node of ['gw1', 'host1']) {
        const sw = new FakeSwitch();
        const p = new NodeProgrammer(sw, { fullReconcileMs: 3_600_000 });
        let first = true;
        for (const { config, gen } of generations(steps, 'dp_hash')) {
          const bundlesBefore = sw.bundles.length;
          const r = await p.program(config, gen, facts(node));
          assert.equal(r.mode, first ? 'full' : 'incremental');
          // The full apply reads each bridge twice (diff, verify); afterwards nothing is read.
          assert.equal(sw.reads, 4);
          for (const br of ['br-int', 'br-phy'])
            assert.equal(switchText(sw, br), fsText(config, gen, node, br));
          assert.equal(
            sw.bundles.length - bundlesBefore,
            Object.values(r.bundleLines).filter((n) => n > 0).length,
          );
          first = false;
        }
      }
    }),
    { numRuns: 25 },
  );
});

test('NodeProgrammer: after invalidate (ovs-vswitchd restart: empty switch) the next apply reads and restores everything', async () => {
  const config = configOf(
    [
      [0, 1, 3],
      [1, 4],
      [2, 5],
    ],
    'dp_hash',
  );
  const g1 = planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
  const sw = new FakeSwitch();
  const p = new NodeProgrammer(sw, { fullReconcileMs: 3_600_000 });
  await p.program(config, g1, facts('gw1'));
  // ovs-vswitchd restarts: its tables are empty. Without invalidate the programmer would send nothing.
  sw.flows.clear();
  sw.groups.clear();
  sw.tlv.clear();
  const idle = await p.program(config, g1, facts('gw1'));
  assert.equal(idle.mode, 'incremental');
  assert.equal(idle.changed, false);
  p.invalidate('ovs-vswitchd restarted');
  const reads = sw.reads;
  const r = await p.program(config, g1, facts('gw1'));
  assert.equal(r.mode, 'full');
  assert.equal(r.fullReason, 'ovs-vswitchd restarted');
  assert.ok(sw.reads > reads);
  assert.ok(r.bundleLines['br-int']! > 0);
  assert.equal(sw.tlv.get('br-int')!.length, 3);
  for (const br of ['br-int', 'br-phy']) assert.equal(switchText(sw, br), fsText(config, g1, 'gw1', br));
});

test('NodeProgrammer: a rejected bundle makes the next apply a full one; the periodic reconcile reads too', async () => {
  let t = 0;
  const config = configOf(
    [
      [0, 1],
      [1, 4],
      [2, 5],
    ],
    'dp_hash',
  );
  const g1 = planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
  const sw = new FakeSwitch();
  const p = new NodeProgrammer(sw, { fullReconcileMs: 60_000, now: () => t });
  await p.program(config, g1, facts('gw1'));
  const config2 = configOf(
    [
      [0, 1, 3],
      [1, 4],
      [2, 5],
    ],
    'dp_hash',
  );
  const g2 = planNext({ config: config2, latest: g1, connections: () => 0, now: 1 }).next!;
  const real = sw.ofctl.bind(sw);
  sw.ofctl = async (bridge, args, opts) =>
    args[0] === 'bundle' ? { code: 1, stdout: '', stderr: 'OFPBFC_MSG_FAILED' } : real(bridge, args, opts);
  await assert.rejects(p.program(config2, g2, facts('gw1')), { code: 'SLUICE_E_OPENFLOW_REJECTED' });
  sw.ofctl = real;
  const r = await p.program(config2, g2, facts('gw1'));
  assert.equal(r.mode, 'full');
  assert.equal(r.fullReason, 'previous apply failed');
  assert.equal(switchText(sw, 'br-int'), fsText(config2, g2, 'gw1', 'br-int'));
  assert.equal((await p.program(config2, g2, facts('gw1'))).mode, 'incremental');
  t = 60_000;
  assert.equal(p.fullDue(), true);
  const periodic = await p.program(config2, g2, facts('gw1'));
  assert.equal(periodic.mode, 'full');
  assert.equal(periodic.fullReason, 'periodic reconcile');
  assert.equal(periodic.changed, false);
  assert.equal(p.fullDue(), false);
  // fullReconcileMs 0 (the stateless path): every program() is full, and there is never a periodic one due.
  const every = new NodeProgrammer(sw, { fullReconcileMs: 0, now: () => t });
  assert.equal((await every.program(config2, g2, facts('gw1'))).mode, 'full');
  t += 3_600_000;
  assert.equal(every.fullDue(), false);
  assert.equal((await every.program(config2, g2, facts('gw1'))).fullReason, 'every generation');
});

test("NodeProgrammer: a host's SYN meter follows --syn-rate on the incremental path too", async () => {
  const config = configOf([[1], [4], [5]], 'dp_hash');
  const sw = new FakeSwitch();
  const p = new NodeProgrammer(sw, { fullReconcileMs: 3_600_000 });
  const g1 = planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
  await p.program(config, g1, { ...facts('host1'), synRate: 1000 });
  assert.equal(sw.meters.get('br-int')!.size, 1);
  const r = await p.program(config, g1, { ...facts('host1'), synRate: 3000 });
  assert.equal(r.mode, 'incremental');
  assert.deepEqual(
    sw.meterLog.at(-1),
    'br-int mod-meter meter=1358954497,pktps,burst,band=type=drop,rate=3000,burst_size=3000',
  );
  await p.program(config, g1, facts('host1'));
  assert.equal(sw.meters.get('br-int')!.size, 0);
  for (const br of ['br-int', 'br-phy']) assert.equal(switchText(sw, br), fsText(config, g1, 'host1', br));
});

test("NodeProgrammer: a new load balancer that takes an existing one's id (hash collision) applies incrementally", async () => {
  // A name that sorts before v0 and folds to v0's id: added, it takes that id and v0 moves to the next free one.
  let taker = '';
  const id0 = lbIds(['v0']).get('v0');
  for (let i = 0; taker === ''; i++) if (lbIds([`a${i}`]).get(`a${i}`) === id0) taker = `a${i}`;
  const base = configOf([[0, 3]], 'dp_hash');
  const grown: Config = {
    ...base,
    loadBalancers: [...base.loadBalancers, { ...lbOf(1, [POOL[1]!]), name: taker }],
  };
  const ids = lbIds(grown.loadBalancers.map((l) => l.name));
  assert.equal(ids.get(taker), id0, `${taker} takes v0's id`);
  assert.notEqual(ids.get('v0'), id0, 'v0 moves');
  const sw = new FakeSwitch();
  const p = new NodeProgrammer(sw, { fullReconcileMs: 3_600_000 });
  const g1 = planNext({ config: base, latest: null, connections: () => 0, now: 0 }).next!;
  await p.program(base, g1, facts('gw1'));
  const g2 = planNext({ config: grown, latest: g1, connections: () => 0, now: 0 }).next!;
  const r = await p.program(grown, g2, facts('gw1'));
  assert.equal(r.mode, 'incremental');
  for (const br of ['br-int', 'br-phy']) assert.equal(switchText(sw, br), fsText(grown, g2, 'gw1', br));
});

/** Seven load balancers over POOL (each one's backend indices). */
const SEVEN_LBS = [
  [0, 1],
  [2, 3],
  [0, 4],
  [1, 5],
  [2, 4],
  [3, 5],
  [0, 5],
] as const;

test('a large incremental bundle goes in pieces: whole new load balancers first, the rest in the last bundle', () => {
  const small = configOf(
    [
      [0, 1],
      [2, 3],
    ],
    'dp_hash',
  );
  const big = configOf(SEVEN_LBS, 'dp_hash');
  const g1 = planNext({ config: small, latest: null, connections: () => 0, now: 0 }).next!;
  const g2 = planNext({ config: big, latest: g1, connections: () => 0, now: 1000 }).next!;
  const f = facts('gw1');
  const have = compileNodeParts(small, g1, f).bridges.get(f.bridges.int)!;
  const want = compileNodeParts(big, g2, f).bridges.get(f.bridges.int)!;
  const diff = diffParts(want, have);
  const total = bundleLineCount(diff);
  const perLb = want.get(lbPart('v2'))!.flows.length + 1;
  // Small enough: one bundle, the same object.
  assert.deepEqual(incrementalPieces(want, have, [], diff, total), [diff]);
  const pieces = incrementalPieces(want, have, [], diff, 2 * perLb);
  assert.ok(pieces.length >= 3, `${pieces.length} pieces`);
  // Together they send exactly the single bundle's lines.
  assert.deepEqual(pieces.flatMap(bundleLines).sort(), bundleLines(diff).sort());
  const early = pieces.slice(0, -1);
  const newLbs = ['v2', 'v3', 'v4', 'v5', 'v6'].map((n) => want.get(lbPart(n))!);
  for (const p of early) {
    // Only additions, of whole new load balancers (each one's group with all its flows), at most the limit.
    assert.equal(p.deleteFlows.length + p.modifyGroups.length + p.deleteGroups.length, 0);
    assert.ok(bundleLineCount(p) <= 2 * perLb);
    const lbs = newLbs.filter((lb) => p.addGroups.some((g) => g.groupId === lb.groups[0]!.groupId));
    assert.equal(
      p.addFlows.length,
      lbs.reduce((t, lb) => t + lb.flows.length, 0),
    );
    assert.equal(p.addGroups.length, lbs.length);
  }
  // The changes outside load balancer parts (br-int's ICMP flows for the new VIPs, in their VIP parts) come last.
  const notLb = (m: ReadonlyMap<string, BridgeState>) => new Map([...m].filter(([n]) => !isLbPart(n)));
  const nodeChanges = diffParts(notLb(want), notLb(have));
  assert.ok(bundleLineCount(nodeChanges) > 0);
  assert.deepEqual(
    bundleLines(pieces.at(-1)!)
      .filter((l) => bundleLines(nodeChanges).includes(l))
      .sort(),
    bundleLines(nodeChanges).sort(),
  );
});

test('a new load balancer taking a group id that another one gives up stays in the last bundle', () => {
  const flow = (match: string, group: number) => ({
    table: 10,
    priority: 100,
    match,
    actions: `group:${group}`,
    cookie: 1n,
  });
  const part = (match: string, group: number) => ({
    flows: [flow(match, group)],
    groups: [{ groupId: group, spec: 'type=select' }],
    tlvMap: [],
  });
  const have = new Map([['lb:a', part('ip,nw_dst=198.18.0.1', 5)]]);
  const want = new Map([
    ['lb:b', part('ip,nw_dst=198.18.0.2', 5)],
    ['lb:c', part('ip,nw_dst=198.18.0.3', 6)],
  ]);
  const diff = diffParts(want, have);
  assert.deepEqual(
    diff.modifyGroups.map((g) => g.groupId),
    [5],
  );
  const pieces = incrementalPieces(want, have, [], diff, 1);
  // lb:c (a fresh id) may go first; lb:b must not (its group is a modify after a's flow is deleted).
  assert.equal(pieces.length, 2);
  assert.deepEqual(
    pieces[0]!.addGroups.map((g) => g.groupId),
    [6],
  );
  assert.deepEqual(
    pieces[1]!.modifyGroups.map((g) => g.groupId),
    [5],
  );
  assert.deepEqual(pieces.flatMap(bundleLines).sort(), bundleLines(diff).sort());
});

/** `have` -> `want` on one bridge in pieces of about `limit` lines: checks what every split must hold, returns them. */
function checkedPieces(
  want: ReadonlyMap<string, import('../../src/flowset/types.ts').BridgeState>,
  have: ReadonlyMap<string, import('../../src/flowset/types.ts').BridgeState>,
  limit: number,
) {
  const diff = diffParts(want, have);
  const pieces = incrementalPieces(want, have, [], diff, limit);
  // Together they send exactly the single bundle's lines.
  assert.deepEqual(pieces.flatMap(bundleLines).sort(), bundleLines(diff).sort());
  // Every load balancer's lines are in one bundle: after each bundle it is wholly as installed or wholly as wanted.
  for (const name of [...want.keys()].filter(isLbPart)) {
    const own = bundleLines(
      diffParts(new Map([[name, want.get(name)!]]), new Map([[name, have.get(name)!]])),
    );
    const holders = pieces.filter((p) => own.some((l) => bundleLines(p).includes(l)));
    assert.ok(holders.length <= 1, `${name} is split over ${holders.length} bundles`);
  }
  // The changes of the node part and the VIP parts come last.
  const notLb = (m: ReadonlyMap<string, BridgeState>) => new Map([...m].filter(([n]) => !isLbPart(n)));
  const node = bundleLines(diffParts(notLb(want), notLb(have)));
  for (const p of pieces.slice(0, -1)) assert.ok(!bundleLines(p).some((l) => node.includes(l)));
  return { diff, pieces };
}

test('a change of every load balancer (slot bits, hash mode, a host address) goes in bounded bundles, each one whole', () => {
  const base = configOf(SEVEN_LBS, 'dp_hash');
  const g1 = planNext({ config: base, latest: null, connections: () => 0, now: 0 }).next!;
  const bits = { ...base, slotBits: 5 };
  const g2 = planNext({ config: bits, latest: g1, connections: () => 0, now: 1000 }).next!;
  const moved = NODES.map((n) => (n.name === 'host1' ? { ...n, tunnelIp: '192.168.100.21' } : n));
  const changes: [string, Config, Generation, string][] = [
    ['slot bits 4 -> 5', bits, g2, 'gw1'],
    ['hash mode dp_hash -> fields', { ...base, hashMode: 'fields' }, g1, 'gw1'],
    ["host1's address (gateway slot flows)", { ...base, nodes: moved }, g1, 'gw1'],
  ];
  for (const [what, config, gen, node] of changes) {
    const f = facts(node);
    const have = compileNodeParts(base, g1, f).bridges.get(f.bridges.int)!;
    const want = compileNodeParts(
      config,
      gen,
      fakeFacts({ ...allConfig, nodes: config.nodes }, node),
    ).bridges.get(f.bridges.int)!;
    const partLines = (n: string) =>
      bundleLineCount(diffParts(new Map([[n, want.get(n)!]]), new Map([[n, have.get(n)!]])));
    const changed = [...want.keys()].filter((n) => isLbPart(n) && partLines(n) > 0);
    assert.ok(changed.length >= 4, `${what}: ${changed.length} load balancers change`);
    const perLb = Math.max(...changed.map(partLines));
    const { diff, pieces } = checkedPieces(want, have, 2 * perLb);
    // Before, a change of existing load balancers was one bundle of every line; now none is larger than the limit
    // but by one part.
    const largest = Math.max(...pieces.map(bundleLineCount));
    assert.ok(
      pieces.length >= 3,
      `${what}: ${pieces.length} bundles ${pieces.map(bundleLineCount)} per ${perLb} of ${changed.length}`,
    );
    assert.ok(
      largest < bundleLineCount(diff) && largest <= 3 * perLb,
      `${what}: ${largest} of ${bundleLineCount(diff)} lines`,
    );
  }
});

test('two load balancers trading a VIP stay in the last bundle together (the delete before the add)', () => {
  const base = configOf(
    [
      [0, 1],
      [2, 3],
      [0, 4],
      [1, 5],
    ],
    'dp_hash',
  );
  // v0 and v1 swap VIPs: each one's CLASSIFY flow key is deleted by the other's part.
  const lbs = base.loadBalancers.map((lb, i) =>
    i === 0
      ? { ...lb, vip: base.loadBalancers[1]!.vip }
      : i === 1
        ? { ...lb, vip: base.loadBalancers[0]!.vip }
        : lb,
  );
  const swapped = { ...base, slotBits: 5, loadBalancers: lbs };
  const g1 = planNext({ config: base, latest: null, connections: () => 0, now: 0 }).next!;
  const g2 = planNext({ config: { ...base, slotBits: 5 }, latest: g1, connections: () => 0, now: 1000 })
    .next!;
  const f = facts('gw1');
  const have = compileNodeParts(base, g1, f).bridges.get(f.bridges.int)!;
  const want = compileNodeParts(swapped, g2, f).bridges.get(f.bridges.int)!;
  const { pieces } = checkedPieces(want, have, 1);
  const classify = (p: ReturnType<typeof diffParts>, vip: string) =>
    p.addFlows.some((x) => x.match.includes(`nw_dst=${vip}`) && x.table === 0);
  const last = pieces.at(-1)!;
  assert.ok(classify(last, base.loadBalancers[0]!.vip) && classify(last, base.loadBalancers[1]!.vip));
  // The other two went early, one bundle each (limit 1: one part per bundle).
  assert.equal(pieces.length, 3);
});
