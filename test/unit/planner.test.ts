// The planner's decision logic (src/planner/core.ts) driven with a FAKE store: hand-made StoreViews stand for what
// the OVSDB replica would hold, and the clock is passed explicitly. No ovsdb-server, no OVS.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PlannerCore, type PlannerCoreOptions } from '../../src/planner/core.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { LANES, PHASE_STABLE, PHASE2, planLanes } from '../../src/rollout/types.ts';
import {
  type DesiredDoc,
  decodeSlotCounts,
  effectiveDoc,
  encodeSlotCounts,
  type Health,
  type NodeStatusView,
  observedPlannerStep,
  type PlanDocs,
  planDocument,
  type SlotReport,
  type StoreView,
} from '../../src/store/db/index.ts';
import { testNodes } from '../scenarios/configs.ts';

const A = { address: '10.0.1.11', host: 'h1', weight: 1, state: 'active' };
const B = { address: '10.0.2.11', host: 'h2', weight: 1, state: 'active' };
const C = { address: '10.0.1.12', host: 'h1', weight: 1, state: 'active' };

function doc(backends: DesiredDoc['loadBalancers'][number]['backends'], extraNode = false): DesiredDoc {
  return {
    hashMode: 'dp_hash',
    slotBits: 4,
    nodes: testNodes(['gw1', 'gw2'], ['h1', 'h2', ...(extraNode ? ['h3'] : [])]),
    loadBalancers: [{ name: 'web', vip: '203.0.113.10', protocol: 'tcp', ports: [80], backends }],
  };
}

/** A fake store: the planner's view is rebuilt from these fields at every step. */
class FakeStore {
  desired: DesiredDoc | undefined = doc([A, B]);
  latest: Generation | null = null;
  latestConfig: PlanDocs | undefined;
  gatewayGeneration = 0;
  status = new Map<string, NodeStatusView>();
  health = new Map<string, Health>();
  reports = new Map<string, Map<string, SlotReport>>();
  /** Report_Round (Sluice_Status). */
  reportRound = 0;

  view(): StoreView {
    return {
      desiredCfg: 1,
      desired: this.desired,
      latest: this.latest,
      latestConfig: this.latestConfig,
      gatewayGeneration: this.gatewayGeneration,
      nodeStatus: new Map(this.status),
      reportRound: this.reportRound,
      backendHealth: new Map(this.health),
      slotReports: new Map(this.reports),
    };
  }

  /** An agent writes its status (heartbeat = a new value each call). */
  beat(node: string, applied: number, extra: Partial<NodeStatusView> = {}): void {
    const prev = this.status.get(node);
    this.status.set(node, {
      appliedGeneration: applied,
      heartbeatAt: (prev?.heartbeatAt ?? 0) + 1,
      fenced: false,
      plannerFenced: prev?.plannerFenced ?? false,
      operatorFenced: prev?.operatorFenced ?? false,
      error: undefined,
      ...extra,
    });
  }

  beatAll(applied: number): void {
    for (const n of ['gw1', 'gw2', 'h1', 'h2']) this.beat(n, applied);
  }
}

/** Runs one planner step against the fake store and applies publish/release to it; a round mark is written and the
 *  planner steps again on the view that shows it (as the daemon's monitor delivers it). */
function step(core: PlannerCore, store: FakeStore, now: number): ReturnType<PlannerCore['decide']> {
  core.observe(store.view(), now);
  const d = core.decide(now);
  if (d.kind === 'mark-round') {
    store.reportRound = d.generation;
    return step(core, store, now);
  }
  if (d.kind === 'publish') {
    store.latest = d.generation;
    store.latestConfig = d.config;
  } else if (d.kind === 'release') store.gatewayGeneration = d.generation;
  return d;
}

/** What the daemon does after a fence command succeeded: records it in the node's status (heartbeat unchanged). */
function recordFence(store: FakeStore, node: string): void {
  const s = store.status.get(node)!;
  store.status.set(node, { ...s, plannerFenced: true });
}

/** A gateway's agent writes its rejoin and announce tokens (Node_Status, Sluice): its heartbeat, in the other
 *  database, stays as the planner last saw it (a lagging replica). */
function marks(store: FakeStore, node: string, tokens: { rejoin?: string; announced?: string }): void {
  const { rejoin: _r, announced: _a, ...s } = store.status.get(node)!;
  store.status.set(node, { ...s, ...tokens });
}

/** Every agent acknowledges the latest generation (hosts first, then the release, then gateways). */
function converge(core: PlannerCore, store: FakeStore, now: number): void {
  const g = store.latest!.number;
  store.beat('h1', g);
  store.beat('h2', g);
  assert.equal(step(core, store, now).kind, 'release');
  store.beat('gw1', g);
  store.beat('gw2', g);
}

/** A planner and a fake store where every agent is live and acknowledged g1 (gateways included), at t = 0. */
function convergedOnG1(opts: PlannerCoreOptions = {}): { core: PlannerCore; store: FakeStore } {
  const core = new PlannerCore(opts);
  const store = new FakeStore();
  store.beatAll(0);
  step(core, store, 0);
  converge(core, store, 0);
  return { core, store };
}

/**
 * Fencing scenarios: a planner with --fence-cmd (lease 10 s, margin 3 s) converged on g1; a config-only change (no
 * second chances) publishes g; `others(t)` has the hosts and gw1 apply it and steps the planner at t, while gw2 stays
 * silent from 0.
 */
function gw2SilentAfterChange() {
  const { core, store } = convergedOnG1({ leaseMs: 10_000, marginMs: 3000, fencing: true });
  step(core, store, 0);
  store.desired = { ...doc([A, B]), drainWindowSeconds: 60 };
  assert.equal(step(core, store, 100).kind, 'publish');
  const g = store.latest!.number;
  const others = (t: number) => {
    for (const n of ['h1', 'h2', 'gw1']) store.beat(n, n === 'gw1' && store.gatewayGeneration < g ? 1 : g);
    return step(core, store, t);
  };
  return { core, store, g, others };
}

/** Converged on g1, then a backend added (g2 moves slots in phases) and acknowledged by every agent at t = 20. */
function acksOfSecondChances(): { core: PlannerCore; store: FakeStore } {
  const { core, store } = convergedOnG1();
  step(core, store, 0);
  store.desired = doc([A, B, C]);
  assert.equal(step(core, store, 10).kind, 'publish');
  converge(core, store, 20);
  return { core, store };
}

const hasSecond = (g: Generation) =>
  [...g.pools.values()].some((p) => p.phase.some((x) => x !== PHASE_STABLE));

describe('planner core (fake store)', () => {
  test('initial generation, then hosts before gateways, then gating on every live gateway', () => {
    const core = new PlannerCore();
    const store = new FakeStore();
    store.beatAll(0);
    const d1 = step(core, store, 0);
    assert.equal(d1.kind, 'publish');
    assert.equal(store.latest?.number, 1);
    // Hosts have not applied g1: gateways do not get it yet.
    const w = step(core, store, 10);
    assert.equal(w.kind, 'wait');
    assert.deepEqual(w.kind === 'wait' && [w.on, w.nodes], ['hosts', ['h1', 'h2']]);
    store.beat('h1', 1);
    store.beat('h2', 1);
    assert.equal(step(core, store, 20).kind, 'release');
    assert.equal(store.gatewayGeneration, 1);
    // A desired change waits for gw2.
    store.desired = doc([A, B, C]);
    store.beat('gw1', 1);
    const w2 = step(core, store, 30);
    assert.deepEqual(w2.kind === 'wait' && [w2.on, w2.nodes], ['gateways', ['gw2']]);
    store.beat('gw2', 1);
    const d2 = step(core, store, 40);
    assert.equal(d2.kind, 'publish');
    assert.equal(store.latest?.number, 2);
    // Never two generations ahead: with g2 published and not acked, nothing more is published.
    assert.equal(step(core, store, 50).kind, 'wait');
  });

  test('without --fence-cmd a silent gateway is waited for however long it is silent; a host until lease + margin', () => {
    const { core, store } = convergedOnG1({ leaseMs: 10_000, marginMs: 3000 });
    step(core, store, 0);
    store.desired = doc([A, B, C]);
    // gw2 acked g1 but stays silent from t=0 (cut off from the store, still forwarding on g1); h2 too from 13 s.
    const d = step(core, store, 100);
    assert.equal(d.kind, 'publish');
    const g = store.latest!.number;
    for (let t = 1000; t <= 600_000; t += 1000) {
      for (const n of t <= 13_000 ? ['h1', 'h2', 'gw1'] : ['h1', 'gw1']) store.beat(n, g);
      const w = step(core, store, t);
      if (t >= 2000) {
        assert.equal(w.kind, 'wait', `t=${t}: ${JSON.stringify(w)}`);
        assert.deepEqual(w.kind === 'wait' && [w.on, w.nodes], ['gateways', ['gw2']]);
      }
    }
    assert.equal(store.latest!.number, g, 'nothing published past the silent gateway');
    assert.equal(core.isLive('gw2', 600_000), true);
    assert.equal(core.isLive('h2', 13_000 + 13_000), true, 'a host: waited for until lease + margin');
    assert.equal(core.isLive('h2', 13_000 + 13_001), false);
    // The operator confirms gw2 is out: the rollout goes on.
    const s2 = store.status.get('gw2')!;
    store.status.set('gw2', { ...s2, operatorFenced: true });
    store.beat('h1', g);
    store.beat('gw1', g);
    const after = step(core, store, 600_500);
    assert.notEqual(after.kind === 'wait' && after.on === 'gateways', true, JSON.stringify(after));
  });

  test('a host silent past lease + margin keeps its previous owners: no report is not 0 connections', () => {
    const { core, store } = convergedOnG1({ leaseMs: 10_000, marginMs: 3000 });
    // h1 reports a connection of A on every slot (A's key: no port).
    const counts = new Map(Array.from({ length: 16 }, (_, s) => [s, new Map([['10.0.1.11:*', 1]])]));
    store.reports.set('h1', new Map([['web', { bits: 4, counts }]]));
    store.desired = doc([{ ...A, state: 'draining' }, B]);
    const secondA = () => {
      const p = store.latest!.pools.get('web')!;
      return [...p.second].filter((m) => m !== 0xffff && p.members[m].address === A.address).length;
    };
    let d = step(core, store, 10);
    const run = (from: number, to: number, nodes: string[]) => {
      for (let t = from; t <= to; t += 500) {
        for (const n of nodes) store.beat(n, store.latest!.number);
        if (store.gatewayGeneration === store.latest!.number)
          for (const g of ['gw1', 'gw2']) store.beat(g, store.latest!.number);
        d = step(core, store, t);
      }
    };
    run(500, 20_000, ['h1', 'h2']);
    assert.ok(secondA() > 0, 'drained: A is the previous owner of the slots it gave up');
    // h1's agent stops; everyone else keeps acknowledging and reporting.
    run(20_500, 60_000, ['h2']);
    assert.equal(core.isLive('h1', 60_000), false, 'h1 is no longer waited for');
    assert.ok(secondA() > 0, 'A (on silent h1) is still the previous owner of the slots it gave up');
    assert.equal(d.kind, 'idle', JSON.stringify(d));
    assert.ok(d.kind === 'idle' && d.notes.some((n) => n.kind === 'waits' && n.connections === undefined));
    // A third backend: the slots A still holds as previous owner wait on h1, and say so.
    store.desired = doc([
      { ...A, state: 'draining' },
      B,
      { ...C, host: 'h2', address: '10.0.2.12', weight: 3 },
    ]);
    d = step(core, store, 60_500);
    const notes = d.kind === 'publish' || d.kind === 'idle' ? d.notes : [];
    assert.ok(
      notes.some((n) => n.kind === 'silent-host' && n.host === 'h1'),
      `a silent-host note: ${JSON.stringify(d)}`,
    );
    // h1 reports again, 0 connections: A leaves the chains.
    store.desired = doc([{ ...A, state: 'draining' }, B]);
    store.reports.set('h1', new Map([['web', { bits: 4, counts: new Map() }]]));
    run(61_000, 90_000, ['h1', 'h2']);
    assert.equal(secondA(), 0, 'back and reporting 0: A left every chain');
  });

  // The e2e freeze (test/e2e/controlplane.test.ts) can land anywhere in a rollout; here it lands where the planner's
  // next step would let a previous owner go: h2 acknowledged the phase-2 generation that made B a previous owner, and
  // stops with no report (or one) after the round's mark. Its last report, read before, stays in the store.
  for (const reportsAfterMark of [0, 1]) {
    test(`a host frozen after acking phase 2 (${reportsAfterMark} report after the mark) keeps its previous owners`, () => {
      const { core, store } = convergedOnG1({ leaseMs: 10_000, marginMs: 3000 });
      const counts = new Map(Array.from({ length: 16 }, (_, s) => [s, new Map([['10.0.2.11:*', 1]])]));
      store.reports.set('h2', new Map([['web', { bits: 4, counts }]]));
      store.desired = doc([A, { ...B, state: 'draining' }]);
      const ownedByB = (g: Generation) => {
        const p = g.pools.get('web')!;
        const b = p.members.findIndex((m) => m.address === B.address);
        return [...planLanes(p)].flatMap((m, i) => (m === b ? [Math.floor(i / LANES)] : []));
      };
      let frozenAt: number | undefined;
      let held: number[] = [];
      let markSeen: number | undefined;
      let after = 0;
      for (let t = 500; t <= 60_000; t += 500) {
        const g = store.latest!;
        const phase2 = g.pools.get('web')!.phase.some((x) => x === PHASE2);
        if (frozenAt === undefined) {
          store.beat('h2', g.number, { reportAt: t });
          if (phase2 && store.reportRound === g.number && markSeen !== g.number) markSeen = g.number;
          else if (markSeen === g.number) after++;
          if (phase2 && store.status.get('h2')?.appliedGeneration === g.number && after >= reportsAfterMark) {
            frozenAt = t;
            held = ownedByB(g);
          }
        }
        store.beat('h1', g.number, { reportAt: t });
        if (store.gatewayGeneration === g.number) for (const gw of ['gw1', 'gw2']) store.beat(gw, g.number);
        step(core, store, t);
        if (frozenAt !== undefined)
          assert.deepEqual(
            held.filter((s) => !ownedByB(store.latest!).includes(s)),
            [],
            `t=${t}: B (on frozen h2, its connections unknown) left slots it owned at ${frozenAt} ms`,
          );
      }
      assert.ok(frozenAt !== undefined && held.length > 0, 'h2 froze while B was a previous owner');
      assert.equal(core.isLive('h2', 60_000), false, 'h2 is silent by the end');
    });
  }

  test('a fenced gateway is not waited for; heartbeats again -> waited for again', () => {
    const { core, store } = convergedOnG1();
    store.desired = doc([A, B, C]);
    assert.equal(step(core, store, 10).kind, 'publish');
    converge(core, store, 20);
    store.desired = doc([A, B]);
    store.beat('gw2', 1, { fenced: true }); // withdrew itself, still on g1
    store.beat('h1', 2);
    store.beat('h2', 2);
    // latest g2 has second chances (C filling): reports needed first; give two heartbeats.
    for (let i = 0; i < 3; i++) {
      for (const n of ['h1', 'h2']) store.beat(n, 2);
      step(core, store, 100 + i);
    }
    const d = step(core, store, 200);
    assert.notEqual(
      d.kind === 'wait' && d.on === 'gateways',
      true,
      `not waiting for fenced gw2: ${JSON.stringify(d)}`,
    );
    store.beat('gw2', 1, { fenced: false });
    const w = step(core, store, 300);
    assert.equal(w.kind, 'wait');
  });

  test('fencing: a gateway silent for the lease is fenced, and waited for until the fence is recorded', () => {
    const { core, store, g, others } = gw2SilentAfterChange();
    others(500);
    assert.equal(store.gatewayGeneration, g, 'released to gateways');
    for (let t = 1000; t <= 10_000; t += 1000) {
      const d = others(t);
      assert.equal(d.kind, 'wait', `t=${t}: waiting, not fencing yet: ${JSON.stringify(d)}`);
      assert.deepEqual(d.kind === 'wait' && d.nodes, ['gw2']);
    }
    const f = others(10_001);
    assert.equal(f.kind, 'fence');
    assert.deepEqual(f.kind === 'fence' && f.nodes, ['gw2']);
    // The fence command keeps failing (nothing recorded): far past lease + margin, gw2 is still waited for and
    // nothing is published past g.
    for (let t = 11_000; t <= 60_000; t += 1000) {
      assert.equal(others(t).kind, 'fence');
      assert.equal(store.latest!.number, g);
      assert.equal(core.isLive('gw2', t), true);
    }
    store.desired = doc([A, B, C]);
    assert.equal(others(61_000).kind, 'fence', 'a new desired state does not get past an unfenced gateway');
    assert.equal(store.latest!.number, g);
    // The fence succeeded and was recorded: gw2 is out, the rollout goes on.
    recordFence(store, 'gw2');
    const d = others(61_500);
    assert.equal(core.isLive('gw2', 61_500), false);
    assert.equal(d.kind, 'publish', JSON.stringify(d));
    assert.equal(store.latest!.number, g + 1);
    // gw2's agent comes back: it applies the released generation and acknowledges, deleting the record.
    store.gatewayGeneration = g + 1;
    store.beat('gw2', g + 1, { plannerFenced: false });
    core.observe(store.view(), 62_000);
    assert.equal(core.isLive('gw2', 62_000), true);
    assert.equal(core.toFence(62_000).length, 0);
    // Silent again for the lease (gw1 keeps beating): fenced again.
    step(core, store, 62_000);
    store.beat('gw1', g + 1);
    core.observe(store.view(), 66_000);
    store.beat('gw1', g + 1);
    core.observe(store.view(), 70_000);
    assert.deepEqual(core.toFence(72_000), []);
    assert.deepEqual(core.toFence(72_001), ['gw2']);
  });

  test('fencing: never while the announce of a rejoin may run; the fence names the rejoin it was decided on', () => {
    const { store, g, others } = gw2SilentAfterChange();
    others(500);
    assert.equal(store.gatewayGeneration, g, 'released to gateways');
    // gw2's agent restarted and rejoined at 1 s: its rejoin (Sluice) is seen, its heartbeats (Sluice_Status) are
    // not (that replica lags), and its announce command runs (announced is not the rejoin's token yet).
    marks(store, 'gw2', { rejoin: 'r1' });
    for (let t = 1000; t <= 60_000; t += 1000) {
      const d = others(t);
      assert.equal(d.kind, 'wait', `t=${t}: a fence could land before the announce: ${JSON.stringify(d)}`);
      if (t > 11_000)
        assert.match(d.kind === 'wait' ? d.message : '', /not fencing gw2: silent since a rejoin/);
    }
    // The announce ended (announced = r1) at 60.5 s: heard, and fenced a lease later if still silent.
    marks(store, 'gw2', { rejoin: 'r1', announced: 'r1' });
    for (let t = 60_500; t <= 70_500; t += 1000) assert.equal(others(t).kind, 'wait');
    const f = others(70_501);
    assert.equal(f.kind, 'fence', JSON.stringify(f));
    assert.deepEqual(f.kind === 'fence' && [f.nodes, [...f.rejoins]], [['gw2'], [['gw2', 'r1']]]);
  });

  test('fencing: a rejoin seen without its heartbeat restarts the lease (the heartbeat replica lags)', () => {
    const { core, store, others } = gw2SilentAfterChange();
    others(500);
    others(9000);
    // At 9 s the planner sees gw2's rejoin, announce ended, but none of the heartbeats written before it.
    marks(store, 'gw2', { rejoin: 'r2', announced: 'r2' });
    others(9500);
    assert.equal(core.silentFor('gw2', 9500), 0, 'the rejoin is gw2 heard');
    for (let t = 10_500; t <= 19_500; t += 1000) assert.equal(others(t).kind, 'wait', `t=${t}`);
    assert.deepEqual(core.toFence(19_500), []);
    assert.deepEqual(core.toFence(19_501), ['gw2'], 'still silent a lease after its rejoin: fenced');
  });

  test('fencing: a fence command that keeps failing is unblocked by the operator confirming the fence by hand', () => {
    const { core, store, g, others } = gw2SilentAfterChange();
    // gw2 silent since 0; its fence command fails every time: the rollout waits.
    for (let t = 500; t <= 30_000; t += 500) others(t);
    assert.equal(others(30_500).kind, 'fence');
    store.desired = doc([A, B, C]);
    assert.equal(others(31_000).kind, 'fence');
    assert.equal(store.latest!.number, g);
    // `sluice node confirm-fenced gw2`: the record stops the wait and the fencing, like the planner's own record.
    const s = store.status.get('gw2')!;
    store.status.set('gw2', { ...s, operatorFenced: true });
    const d = others(31_500);
    assert.equal(d.kind, 'publish', JSON.stringify(d));
    assert.equal(store.latest!.number, g + 1);
    assert.equal(core.isLive('gw2', 31_500), false);
    assert.deepEqual(core.toFence(31_500), []);
    // gw2's agent comes back and acknowledges (deleting the record): waited for again.
    store.gatewayGeneration = g + 1;
    store.beat('gw2', g + 1, { operatorFenced: false });
    core.observe(store.view(), 32_000);
    assert.equal(core.isLive('gw2', 32_000), true);
  });

  test('fencing: never a gateway that withdrew itself, never a host, never without --fence-cmd', () => {
    const fencing = new PlannerCore({ leaseMs: 10_000, fencing: true });
    const plain = new PlannerCore({ leaseMs: 10_000, marginMs: 3000 });
    const store = new FakeStore();
    store.beatAll(0);
    for (const core of [fencing, plain]) core.observe(store.view(), 0);
    // gw1 keeps beating; gw2 and the hosts are silent for 20 s.
    for (let t = 1000; t <= 20_000; t += 1000) {
      store.beat('gw1', 0);
      for (const core of [fencing, plain]) core.observe(store.view(), t);
    }
    assert.deepEqual(fencing.toFence(20_000), ['gw2']);
    assert.equal(fencing.decide(20_000).kind, 'fence');
    assert.deepEqual(plain.toFence(20_000), []);
    assert.notEqual(plain.decide(20_000).kind, 'fence');
    assert.equal(plain.isLive('gw2', 20_000), true, 'without fencing: waited for, not dropped');
    assert.equal(fencing.isLive('gw2', 20_000), true, 'with fencing: waited for until fenced');
    assert.equal(fencing.isLive('h1', 20_000), false, 'hosts: dropped after lease + margin as before');
    // gw2 had withdrawn itself (fenced=true): neither fenced nor waited for.
    const s2 = store.status.get('gw2')!;
    store.status.set('gw2', { ...s2, fenced: true });
    store.beat('gw1', 0);
    fencing.observe(store.view(), 20_500);
    assert.deepEqual(fencing.toFence(20_500), []);
    assert.equal(fencing.isLive('gw2', 20_500), false, 'self-fenced: not waited for');
  });

  test('fencing: a planner cut off from the store restarts its lease clocks on reconnection (no fencing of all)', () => {
    const core = new PlannerCore({ leaseMs: 10_000, fencing: true });
    const store = new FakeStore();
    store.beatAll(0);
    core.observe(store.view(), 0);
    // The planner was cut off from 1 s to 15 s (its replica did not change); it reconnects at 15 s.
    core.resync(15_000);
    core.observe(store.view(), 15_000);
    assert.deepEqual(core.toFence(15_000), []);
    assert.deepEqual(core.toFence(25_000), []);
    // Still nobody heard a lease later: both gateways would be fenced, which the majority guard holds.
    assert.deepEqual(core.toFence(25_001), []);
    assert.deepEqual(core.fenceHeld(25_001)?.nodes, ['gw1', 'gw2']);
  });

  test('fencing: every gateway cut off together (hosts fine) -> the planner holds the fence and waits, says so', () => {
    const { core, store } = convergedOnG1({ leaseMs: 10_000, fencing: true });
    step(core, store, 0);
    // gw1 is cut off at 0, gw2 3 s later (not exactly together); hosts keep beating; a change arrives at 5 s.
    for (let t = 1000; t <= 120_000; t += 1000) {
      if (t === 5000) store.desired = doc([A, B, C]);
      if (t <= 3000) store.beat('gw2', 1);
      const g = store.latest!.number;
      store.beat('h1', g);
      store.beat('h2', g);
      const d = step(core, store, t);
      assert.notEqual(d.kind, 'fence', `t=${t}: ${JSON.stringify(d)}`);
      if (t > 13_000) {
        assert.deepEqual(core.fenceHeld(t)?.nodes, ['gw1', 'gw2']);
        assert.match(core.fenceHeld(t)!.message, /not fencing gw1, gw2: only 0 of 2 gateways/);
      }
    }
    const d = step(core, store, 120_500);
    assert.deepEqual(d.kind === 'wait' && [d.on, d.nodes], ['gateways', ['gw1', 'gw2']]);
    assert.match(d.kind === 'wait' ? d.message : '', /not fencing/);
    assert.equal(store.latest!.number, 2, 'g2 published and released; nothing past it');
    // gw2 comes back first: the hold ends, and gw1 (silent with it, 120 s) gets a fresh lease instead of a fence.
    store.beat('gw2', 2);
    for (let t = 121_000; t <= 131_000; t += 1000) {
      store.beat('h1', 2);
      store.beat('h2', 2);
      store.beat('gw2', 2);
      const d2 = step(core, store, t);
      assert.notEqual(d2.kind, 'fence', `t=${t}: gw1 fenced at once: ${JSON.stringify(d2)}`);
    }
    assert.equal(core.fenceHeld(131_000), undefined);
    // Still silent a lease after the hold ended: a fault of its own, fenced.
    store.beat('h1', 2);
    store.beat('gw2', 2);
    core.observe(store.view(), 131_001);
    assert.deepEqual(core.toFence(131_001), ['gw1']);
    // It comes back: nothing to fence.
    store.beat('gw1', 2);
    core.observe(store.view(), 131_500);
    assert.deepEqual(core.toFence(131_500), []);
  });

  test('fencing: never a majority of the gateways (3 gateways: one silent is fenced, two are held)', () => {
    const core = new PlannerCore({ leaseMs: 10_000, fencing: true });
    const store = new FakeStore();
    const base = doc([A, B]);
    store.desired = {
      ...base,
      nodes: [...base.nodes, { name: 'gw3', role: 'gateway', tunnelIp: '192.168.100.3' }],
    };
    for (const n of ['gw1', 'gw2', 'gw3', 'h1', 'h2']) store.beat(n, 0);
    core.observe(store.view(), 0);
    for (let t = 1000; t <= 11_000; t += 1000) {
      for (const n of ['gw1', 'gw2', 'h1', 'h2']) store.beat(n, 0);
      core.observe(store.view(), t);
    }
    assert.deepEqual(core.toFence(11_000), ['gw3'], 'one of three: fenced');
    for (let t = 12_000; t <= 30_000; t += 1000) {
      for (const n of ['gw1', 'h1', 'h2']) store.beat(n, 0);
      core.observe(store.view(), t);
    }
    assert.deepEqual(core.toFence(30_000), [], 'two of three: held');
    assert.deepEqual(core.fenceHeld(30_000)?.nodes, ['gw2', 'gw3']);
    // gw3's fence was recorded earlier (out of ECMP): gw2 still is not fenced (two of three out).
    const s3 = store.status.get('gw3')!;
    store.status.set('gw3', { ...s3, plannerFenced: true });
    store.beat('gw1', 0);
    core.observe(store.view(), 31_000);
    assert.deepEqual(core.toFence(31_000), []);
    assert.deepEqual(core.fenceHeld(31_000)?.nodes, ['gw2']);
  });

  test('the whole store silent (no node heard for half a lease), then back: every lease restarts', () => {
    const core = new PlannerCore({ leaseMs: 10_000, fencing: true });
    const store = new FakeStore();
    store.beatAll(0);
    core.observe(store.view(), 0);
    // A Raft cluster without quorum: the planner's session stays up, nothing changes for 60 s; then h1 beats.
    core.observe(store.view(), 60_000);
    store.beat('h1', 0);
    core.observe(store.view(), 60_000);
    assert.equal(core.silentFor('gw2', 60_000), 0, 'lease restarted at the first heartbeat after the gap');
    for (let t = 61_000; t <= 70_000; t += 1000) {
      store.beat('gw1', 0);
      core.observe(store.view(), t);
    }
    assert.deepEqual(core.toFence(70_000), []);
    assert.deepEqual(core.toFence(70_001), ['gw2'], 'gw2 still silent a lease after the gap: fenced');
  });

  test('second chances: connection reports must be newer than the ack round (two heartbeats per live host)', () => {
    const { core, store } = convergedOnG1();
    step(core, store, 0);
    store.desired = doc([A, B, C]);
    assert.equal(step(core, store, 10).kind, 'publish');
    assert.ok(hasSecond(store.latest!), 'g2 moves slots in phases');
    converge(core, store, 20);
    const w = step(core, store, 30);
    assert.deepEqual(w.kind === 'wait' && [w.on, w.nodes], ['reports', ['h1', 'h2']]);
    store.beat('h1', 2);
    store.beat('h2', 2);
    assert.equal(step(core, store, 40).kind, 'wait');
    store.beat('h1', 2);
    store.beat('h2', 2);
    assert.equal(step(core, store, 50).kind, 'publish');
  });

  test('second chances across two databases: reports count only from the view after the round mark', () => {
    const { core, store } = acksOfSecondChances();
    // The round completes: the planner asks to mark it (the acks are in Sluice, the reports in Sluice_Status).
    core.observe(store.view(), 30);
    const d = core.decide(30);
    assert.deepEqual(d, { kind: 'mark-round', generation: 2 });
    // A lagging status monitor: the view that shows the mark also shows a report from each host, which may have
    // been committed before the mark (and before the last ack): it does not count.
    store.reportRound = 2;
    store.beat('h1', 2, { reportAt: 100 });
    store.beat('h2', 2, { reportAt: 100 });
    core.observe(store.view(), 40);
    assert.equal(core.decide(40).kind, 'wait');
    store.beat('h1', 2, { reportAt: 200 });
    store.beat('h2', 2, { reportAt: 200 });
    core.observe(store.view(), 50);
    assert.equal(core.decide(50).kind, 'wait', 'one report after the mark is not enough');
    store.beat('h1', 2, { reportAt: 300 });
    store.beat('h2', 2, { reportAt: 300 });
    core.observe(store.view(), 60);
    assert.equal(core.decide(60).kind, 'publish', 'two reports committed after the mark');
  });

  test("a moved backend's old host is let go only on fresh reports of 0 connections", () => {
    const { core, store } = convergedOnG1();
    step(core, store, 0);
    // B's VM moved from h2 to h1: one host edit; the plan names h2 (h2 reported 3 connections of B).
    store.reports.set(
      'h2',
      new Map([['web', { bits: 4, counts: new Map([[0, new Map([['10.0.2.11:*', 3]])]]) }]]),
    );
    store.desired = doc([A, { ...B, host: 'h1' }]);
    assert.equal(step(core, store, 10).kind, 'publish');
    const moved = () => store.latest!.pools.get('web')!.members.find((m) => m.address === B.address)!;
    assert.equal(moved().movedFrom, 'h2');
    converge(core, store, 20);
    // h2 reports none now, but the planner waits for two reports after the ack round, as for second chances.
    store.reports.delete('h2');
    const w = step(core, store, 30);
    assert.deepEqual(w.kind === 'wait' && [w.on, w.nodes], ['reports', ['h1', 'h2']]);
    for (const t of [40, 50]) {
      store.beat('h1', 2);
      store.beat('h2', 2);
      if (t === 40) assert.equal(step(core, store, t).kind, 'wait');
    }
    assert.equal(step(core, store, 60).kind, 'publish');
    assert.equal(moved().movedFrom, undefined, 'h2 let go');
  });

  test('second chances: hosts that report in their own loop count reports (report_at), not heartbeats', () => {
    const { core, store } = acksOfSecondChances();
    // Hosts whose reports are slow (a flood): heartbeats go on, report_at stays: the planner keeps waiting.
    for (let t = 30; t < 90; t += 10) {
      store.beat('h1', 2, { reportAt: 5 });
      store.beat('h2', 2, { reportAt: 5 });
      const w = step(core, store, t);
      assert.deepEqual(w.kind === 'wait' && [w.on, w.nodes], ['reports', ['h1', 'h2']], `t=${t}`);
    }
    // Two fresh reports each: now it may move on.
    store.beat('h1', 2, { reportAt: 100 });
    store.beat('h2', 2, { reportAt: 100 });
    assert.equal(step(core, store, 100).kind, 'wait');
    store.beat('h1', 2, { reportAt: 200 });
    store.beat('h2', 2, { reportAt: 200 });
    assert.equal(step(core, store, 200).kind, 'publish');
  });

  test("status's slot waits are the planner's own: one shared function (observedPlannerStep)", () => {
    const { core, store } = convergedOnG1();
    step(core, store, 0);
    // B drains while h2 reports 5 connections on each slot B held: those slots keep B as their second chance.
    const pool = store.latest!.pools.get('web')!;
    const bIdx = pool.members.findIndex((m) => m.address === B.address);
    const held = [...pool.primary].flatMap((m, slot) => (m === bIdx ? [slot] : []));
    assert.ok(held.length > 0);
    const counts = new Map(held.map((slot) => [slot, new Map([['10.0.2.11:*', 5]])]));
    store.reports.set('h2', new Map([['web', { bits: 4, counts }]]));
    store.desired = doc([A, { ...B, state: 'draining' }]);
    let d = step(core, store, 10);
    for (let t = 20; d.kind !== 'idle' && t < 1000; t += 10) {
      for (const h of ['h1', 'h2']) store.beat(h, store.latest!.number);
      for (const g of ['gw1', 'gw2']) store.beat(g, store.gatewayGeneration);
      d = step(core, store, t);
    }
    assert.equal(d.kind, 'idle');
    const waits = d.kind === 'idle' ? d.notes.filter((n) => n.kind === 'waits') : [];
    assert.deepEqual(
      waits.flatMap((n) => n.slots),
      held,
      'the planner waits on every slot B held',
    );
    assert.deepEqual(observedPlannerStep(store.view(), 1000)?.notes, d.kind === 'idle' ? d.notes : []);
  });

  test('health down -> the effective config drains the backend (the desired state is untouched); recovery -> active', () => {
    const { core, store } = convergedOnG1();
    step(core, store, 0);
    const desiredBefore = JSON.stringify(store.desired);
    store.health.set('web 10.0.2.11:*', 'down');
    const d = step(core, store, 10);
    assert.equal(d.kind, 'publish');
    assert.equal(JSON.stringify(store.desired), desiredBefore);
    const eff = planDocument(store.latestConfig!) as unknown as DesiredDoc;
    // A failed health check is not a dead backend: no new connections, but kept in the chains (draining).
    assert.equal(eff.loadBalancers[0]!.backends.find((b) => b.address === B.address)?.state, 'draining');
    // Step the rollout to its end (B reports no connections): agents follow (hosts: latest; gateways: released).
    let t = 20;
    for (let i = 0; i < 50; i++) {
      for (const h of ['h1', 'h2']) store.beat(h, store.latest!.number);
      for (const g of ['gw1', 'gw2']) store.beat(g, store.gatewayGeneration);
      if (step(core, store, t++).kind === 'idle') break;
    }
    const pool = store.latest!.pools.get('web')!;
    const bIdx = pool.members.findIndex((m) => m.address === B.address);
    assert.ok(!pool.primary.includes(bIdx), 'no slot keeps the down backend as primary');
    assert.ok(!pool.second.includes(bIdx), 'nor as second chance (it reported no connections)');
    // Recovery: back to active (it fills through the phases).
    store.health.set('web 10.0.2.11:*', 'up');
    const d2 = step(core, store, t++);
    assert.equal(d2.kind, 'publish');
    assert.equal(
      (planDocument(store.latestConfig!) as unknown as DesiredDoc).loadBalancers[0]!.backends[1]!.state,
      'active',
    );
    assert.ok(d2.kind === 'publish' && d2.notes.some((n) => n.kind === 'phase1'));
  });

  test('a config-only change (a new node) publishes the same pools under a new generation', () => {
    const { core, store } = convergedOnG1();
    assert.equal(step(core, store, 1).kind, 'idle');
    const before = store.latest!.pools;
    store.desired = doc([A, B], true);
    const d = step(core, store, 2);
    assert.equal(d.kind, 'publish');
    assert.equal(d.kind === 'publish' && d.generation.number, 2);
    assert.equal(d.kind === 'publish' && d.generation.pools, before);
    assert.equal(step(core, store, 2).kind, 'wait', 'gated like any generation');
    // h3 never reported: waited for during one lease + margin from first sight (t=2), then not.
    store.beat('h1', 2);
    store.beat('h2', 2);
    const w = step(core, store, 3);
    assert.deepEqual(w.kind === 'wait' && [w.on, w.nodes], ['hosts', ['h3']]);
    for (let t = 1000; t <= 15_000; t += 1000) {
      store.beat('h1', 2);
      store.beat('h2', 2);
      core.observe(store.view(), t);
    }
    assert.equal(step(core, store, 2 + 15_001).kind, 'release');
  });

  test('effectiveDoc and slot count encoding', () => {
    // Health down: no new connections (draining); gone (its port is missing): down, dropped from the chains.
    const e = effectiveDoc(doc([A, B]), new Map([['web 10.0.1.11:*', 'down' as const]]));
    assert.deepEqual(
      e.loadBalancers[0]!.backends.map((b) => b.state),
      ['draining', 'active'],
    );
    const g = effectiveDoc(doc([A, B]), new Map([['web 10.0.2.11:*', 'gone' as const]]));
    assert.deepEqual(
      g.loadBalancers[0]!.backends.map((b) => b.state),
      ['active', 'down'],
    );
    const m = new Map([
      [3, new Map([['10.0.1.11:*', 2]])],
      [1, new Map([['10.0.2.11:*', 0]])],
    ]);
    const s = encodeSlotCounts(m);
    assert.equal(s, '{"3":{"10.0.1.11:*":2}}');
    assert.deepEqual(decodeSlotCounts(s), new Map([[3, new Map([['10.0.1.11:*', 2]])]]));
  });
});
