// The strategy simulator's defining behaviours, at a small scale (a few thousand connections, fast).
// Strategy 7 runs the real planner (src/rollout) and slot tables (src/hashing); nothing here is faked.

import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CT_ENTRY_BYTES, costModel, SYNC_MSGS_PER_CONN } from '../../src/sim/costs.ts';
import {
  runSim,
  type SimResult,
  STRATEGIES,
  STRATEGY_TITLES,
  type StrategyId,
} from '../../src/sim/engine.ts';
import { formatResult, resultJson } from '../../src/sim/report.ts';
import { findScenario, SCENARIOS } from '../../src/sim/scenarios.ts';
import { DEFAULT_LIFETIMES, DEFAULT_TIMING, type Trace, type TraceEvent } from '../../src/sim/trace.ts';

function tiny(events: TraceEvent[], over: Partial<Trace> = {}, timing: Partial<Trace['timing']> = {}): Trace {
  return {
    name: 'test',
    description: 'test',
    topology: { connections: 6000, gateways: 6, backends: 12, vips: 1, sharedFraction: 0, slotBits: 8 },
    ecmp: 'hash-threshold',
    timing: { ...DEFAULT_TIMING, drainWindowSeconds: 30, drainCheckSeconds: 2, ...timing },
    lifetimes: DEFAULT_LIFETIMES,
    durationSeconds: Math.max(0, ...events.map((e) => e.at)) + 45,
    events,
    ...over,
  };
}

const broken = (r: SimResult, ev: number, s: StrategyId) => {
  const c = r.events[ev].strategies[s];
  return c.avoidable + c.unavoidable + c.drainExpired;
};

describe('sim: strategy behaviours', () => {
  it('stateful loses every connection when its active gateway crashes, none when a standby crashes', () => {
    const r = runSim(tiny([{ at: 10, type: 'gateway-crash', gateway: 0 }]));
    const c = r.events[0].strategies.stateful;
    assert.ok(c.avoidable > 0.95 * 6000, `active crash broke ${c.avoidable}`);
    const standby = runSim(tiny([{ at: 10, type: 'gateway-crash', gateway: 3 }]));
    assert.equal(broken(standby, 0, 'stateful'), 0);
    // Stateless strategies survive a gateway crash: every gateway computes the same pick.
    for (const s of ['stateless_nat', 'hash_hrw', 'slot_table', 'sluice'] as const) {
      assert.equal(broken(r, 0, s), 0, s);
    }
  });

  it('stateless_nat remaps many connections on one backend add; HRW and the slot table move about 1/N', () => {
    const r = runSim(tiny([{ at: 10, type: 'backend-add', vip: 0 }]));
    const nat = r.events[0].strategies.stateless_nat.avoidable;
    const hrw = r.events[0].strategies.hash_hrw.avoidable;
    const slot = r.events[0].strategies.slot_table.avoidable;
    // 12 -> 13 buckets, 16 hash values: values 12..15 change bucket (4/16 of flows), 1/13 would be ideal.
    assert.ok(nat > 0.15 * 6000, `nat ${nat}`);
    const ideal = 6000 / 13;
    for (const [name, v] of [
      ['hrw', hrw],
      ['slot', slot],
    ] as const) {
      assert.ok(v > 0.6 * ideal && v < 1.4 * ideal, `${name} ${v} vs ideal ${ideal.toFixed(0)}`);
    }
    assert.equal(r.events[0].strategies.stateful.avoidable, 0, 'conntrack pins existing connections');
    assert.equal(
      r.events[0].strategies.sticky.avoidable,
      0,
      'sticky entries keep connections on their gateway',
    );
  });

  it('sluice breaks no connection avoidably across backend and gateway churn with staggered rollouts', () => {
    const events: TraceEvent[] = [
      { at: 5, type: 'backend-add', vip: 0 },
      { at: 7, type: 'gateway-crash', gateway: 2 },
      { at: 60, type: 'backend-drain', backend: 3 },
      { at: 62, type: 'gateway-add' },
      { at: 120, type: 'backend-remove', backend: 5 },
      { at: 121, type: 'gateway-remove', gateway: 4 },
      { at: 180, type: 'backend-fail', backend: 7 },
      { at: 182, type: 'gateway-crash', gateway: 0 },
    ];
    const r = runSim(tiny(events, {}, { applySpreadSeconds: 10 }));
    assert.equal(r.totals.sluice.avoidable, 0);
    assert.ok(r.totals.sluice.secondChancePeak > 0, 'second chance was used');
    // Gating: no two live gateways ever ran sluice generations more than one apart.
    assert.ok(r.sluiceGenerations > 6);
    assert.equal(r.sluiceMaxGenerationSpread, 1);
    // Negative control: the same table without second chance and phases breaks connections.
    assert.ok(r.totals.slot_table.avoidable > 0, 'slot_table must break some');
    assert.ok(r.totals.stateless_nat.avoidable > r.totals.slot_table.avoidable);
  });

  it('gating matters: sluice without acknowledgements lets gateways drift two generations apart and break', () => {
    // Negative control for the test above: the same kind of churn during a slow rollout.
    const events: TraceEvent[] = [
      { at: 5, type: 'backend-add', vip: 0 },
      { at: 25, type: 'gateway-crash', gateway: 2 },
      { at: 35, type: 'gateway-add' },
      { at: 45, type: 'gateway-remove', gateway: 4 },
      { at: 55, type: 'gateway-crash', gateway: 0 },
    ];
    const run = (gating: boolean) =>
      runSim(tiny(events, {}, { applySpreadSeconds: 60, sluiceGating: gating }), {
        seed: 1,
        strategies: ['sluice'],
      });
    const gated = run(true);
    assert.equal(gated.totals.sluice.avoidable, 0);
    assert.equal(gated.sluiceMaxGenerationSpread, 1);
    const ungated = run(false);
    assert.ok(ungated.sluiceMaxGenerationSpread >= 2);
    assert.ok(ungated.totals.sluice.avoidable > 0, 'ungated sluice must break some connections');
  });

  it('on a backend failure sluice loses exactly the dead backend connections', () => {
    const r = runSim(tiny([{ at: 10, type: 'backend-fail', backend: 4 }]));
    const s = r.events[0].strategies.sluice;
    const slot = r.events[0].strategies.slot_table;
    assert.equal(s.avoidable, 0);
    assert.ok(s.unavoidable > 0);
    // Same initial table (buildTable of the same pool): the same connections sit on backend 4.
    assert.equal(s.unavoidable, slot.unavoidable);
    // New connections sent to the dead backend before detection and application fail to set up.
    assert.ok(s.failedSetups > 0);
  });

  it('sluice keeps a drained backend connections through the chain until the operator stops its server', () => {
    const r = runSim(tiny([{ at: 10, type: 'backend-drain', backend: 2 }]));
    const s = r.events[0].strategies.sluice;
    assert.equal(s.avoidable, 0);
    // No drain window by default: nothing is dropped on purpose while the server lives.
    assert.equal(s.drainExpired, 0);
    // Long-lived connections outlive the 30 s the drained server keeps serving: the server stops, they break
    // (unavoidable, for every strategy that kept them).
    assert.ok(s.unavoidable > 0);
    assert.ok(r.events[0].strategies.slot_table.avoidable > 0);
  });

  it('sluice with chain bound 1 and an operator window drops connections on purpose when slots move again', () => {
    // Changes 10 s apart: slots move again while their previous owners hold connections. Drained servers keep
    // serving past the run (300 s), so every break here is the planner's choice.
    const events: TraceEvent[] = [
      { at: 10, type: 'backend-add', vip: 0 },
      { at: 20, type: 'backend-drain', backend: 0 },
      { at: 30, type: 'backend-add', vip: 0 },
      { at: 40, type: 'backend-drain', backend: 5 },
      { at: 50, type: 'backend-add', vip: 0 },
    ];
    const timing = { drainWindowSeconds: 300 };
    const over = { durationSeconds: 150 };
    const forced = runSim(
      tiny(events, over, { ...timing, sluiceChainLength: 1, sluiceDrainWindowSeconds: 5 }),
    );
    assert.equal(forced.totals.sluice.avoidable, 0);
    assert.ok(forced.totals.sluice.drainExpired > 0, 'a full chain dropped previous owners: counted apart');
    // The same run with the defaults (L = 4, no window): chains keep them, nothing breaks.
    const d = runSim(tiny(events, over, timing));
    assert.equal(d.totals.sluice.drainExpired, 0);
    assert.equal(d.totals.sluice.broken, 0);
    assert.ok((d.sluiceChains?.maxChain ?? 0) >= 2, 'slots held two previous owners at once');
  });

  it('sticky survives backend changes but not a re-hash to a gateway whose table moved the slot', () => {
    const r = runSim(
      tiny([
        { at: 5, type: 'backend-add', vip: 0 },
        { at: 20, type: 'gateway-crash', gateway: 1 },
      ]),
    );
    assert.equal(broken(r, 0, 'sticky'), 0);
    assert.ok(r.events[1].strategies.sticky.avoidable > 0);
    assert.equal(r.events[1].strategies.sluice.avoidable, 0);
  });

  it('ct_sync loses only connections younger than the replication lag when a gateway crashes', () => {
    const ev: TraceEvent[] = [{ at: 10, type: 'gateway-crash', gateway: 3 }];
    const lagged = runSim(tiny(ev, {}, { syncLagSeconds: 2 }));
    const c = lagged.events[0].strategies.ct_sync.avoidable;
    // Arrivals in 2 s are ~ 6000 / 56.7 * 2 = 212; only those ECMP moves break.
    assert.ok(c > 0 && c < 212, `ct_sync ${c}`);
    const noLag = runSim(tiny(ev, {}, { syncLagSeconds: 0 }));
    assert.equal(noLag.events[0].strategies.ct_sync.avoidable, 0);
  });

  it('stateless_nat answers connections of a backend shared by two VIPs from the wrong VIP', () => {
    const t = tiny([{ at: 10, type: 'backend-add', vip: 0 }]);
    const r = runSim({ ...t, topology: { ...t.topology, vips: 2, sharedFraction: 0.5 } });
    assert.ok(r.totals.stateless_nat.wrongVip > 0);
    for (const s of ['stateful', 'hash_hrw', 'slot_table', 'sticky', 'ct_sync', 'sluice'] as const) {
      assert.equal(r.totals[s].wrongVip, 0, s);
    }
  });

  it('gateways that seed dp_hash differently (kernel datapath) break moved connections of dp_hash strategies', () => {
    const t = tiny([{ at: 10, type: 'gateway-crash', gateway: 3 }]);
    const shared = runSim(t);
    const kernel = runSim({ ...t, datapathHash: 'per-gateway' });
    const moved = kernel.events[0].ecmpMoved!.measured * 6000;
    for (const s of ['slot_table', 'sticky', 'sluice', 'stateless_nat'] as const) {
      assert.equal(broken(shared, 0, s), 0, s);
      const b = kernel.events[0].strategies[s].avoidable;
      // A moved connection survives only if the other gateway's hash lands on the same backend (~1/12).
      assert.ok(b > 0.8 * moved && b <= moved, `${s}: ${b} of ${moved.toFixed(0)} moved`);
    }
    // selection_method=hash hashes the fields in userspace: every gateway agrees.
    assert.equal(broken(kernel, 0, 'hash_hrw'), 0);
  });

  it('is deterministic for a seed and varies with it', () => {
    const t = tiny([
      { at: 5, type: 'backend-add', vip: 0 },
      { at: 8, type: 'gateway-crash', gateway: 1 },
    ]);
    const strip = (r: SimResult) => ({ events: r.events, totals: r.totals, arrivals: r.arrivals });
    const a = runSim(t, { seed: 7 });
    const b = runSim(t, { seed: 7 });
    assert.deepEqual(strip(a), strip(b));
    const c = runSim(t, { seed: 8 });
    assert.notDeepEqual(strip(a), strip(c));
  });

  it('the default lifetime mix is heavy-tailed and its arrival rate obeys Little (N = rate x mean lifetime)', () => {
    // No event: only the renewal processes. A wrong lifetime sampler or a non-stationary start shows here.
    const r = runSim(tiny([], { durationSeconds: 600 }), { strategies: ['slot_table'] });
    assert.ok(Math.abs(r.meanLifetime - 56.7) < 0.05, `mean ${r.meanLifetime}`);
    const expected = 6000 / r.meanLifetime;
    assert.ok(Math.abs(r.arrivalsPerSecond / expected - 1) < 0.05, `${r.arrivalsPerSecond} vs ${expected}`);
    // Heavy tail: 1% of arrivals (the long class) hold over half of the open connections at any instant.
    const w = DEFAULT_LIFETIMES.map((c) => c.share * c.medianSeconds * Math.exp((c.sigma * c.sigma) / 2));
    const longest = Math.max(...w);
    assert.ok(longest / w.reduce((a, b) => a + b, 0) > 0.5);
  });

  it('builds every named scenario at both scales', () => {
    for (const s of SCENARIOS) {
      for (const scale of ['small', 'full'] as const) {
        const t = s.build(scale);
        assert.equal(t.name, s.name);
        assert.ok(t.events.length > 0);
      }
    }
    assert.equal(findScenario('nope'), undefined);
  });
});

describe('sim: cost model and reports', () => {
  it('puts per-connection state where each strategy keeps it', () => {
    const t = findScenario('churn')!.build('full');
    const rows = new Map(costModel(t, 17_600, 110).map((r) => [r.strategy, r]));
    assert.equal(rows.get('stateful')!.gatewayEntries, 1_000_000);
    assert.equal(rows.get('stateful')!.gatewayStateBytes, 1_000_000 * CT_ENTRY_BYTES);
    assert.equal(rows.get('ct_sync')!.gatewayEntries, 1_000_000);
    assert.equal(rows.get('ct_sync')!.syncMessagesPerSecond, 17_600 * SYNC_MSGS_PER_CONN);
    assert.equal(rows.get('sticky')!.gatewayEntries, 10_000);
    assert.equal(rows.get('sluice')!.gatewayEntries, 0);
    assert.equal(rows.get('hash_hrw')!.upcallsPerNewConnection, 1);
    // dp_hash slot copy: bounded by 2^(k+1) values per VIP, below one flow per connection.
    const flows = rows.get('sluice')!.datapathFlowsPerGateway;
    assert.ok(flows <= 10 * 2 ** 13 && flows < 10_000, `flows ${flows}`);
    // OVN's group of 128 hash values per VIP is saturated by ~1,000 connections per VIP and gateway.
    assert.ok(rows.get('stateless_nat')!.upcallsPerNewConnection < 0.001);
    // Conntrack is not in the megaflow key (lab baseline, docs/benchmarks.md): the stateful gateways' select
    // groups saturate the same way, with a bounded flow count, however many entries conntrack holds.
    for (const s of ['stateful', 'ct_sync'] as const) {
      assert.ok(rows.get(s)!.upcallsPerNewConnection < 0.001, s);
      assert.ok(rows.get(s)!.datapathFlowsPerGateway <= 10 * 128, s);
    }
  });

  it('prints every strategy in the tables and the JSON', () => {
    const r = runSim(tiny([{ at: 5, type: 'gateway-add' }]));
    const text = formatResult(r);
    for (const s of STRATEGIES) assert.ok(text.includes(STRATEGY_TITLES[s]), s);
    assert.match(text, /ECMP moved 50\.\d+% of flows; exact 50\.0%/);
    const json = resultJson(r) as { events: unknown[]; costs: unknown[] };
    assert.equal(json.events.length, 2);
    assert.equal(json.costs.length, STRATEGIES.length);
    assert.doesNotThrow(() => JSON.stringify(json));
  });
});
