// The planner's change-to-acknowledged latency (src/planner/ack-latency.ts): pure, clock given.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckLatency } from '../../src/planner/ack-latency.ts';

test('each node ack counts from when the planner saw the change its generation was planned from', () => {
  const a = new AckLatency();
  const plans = new Map([
    [5, { desiredCfg: 2, createdAt: 500 }],
    [6, { desiredCfg: 3, createdAt: 1_100 }],
    [7, { desiredCfg: 3, createdAt: 2_000 }],
  ]);
  const plan = (g: number) => plans.get(g);
  // Each step: desired_cfg the planner sees, each node's acked generation, the clock, what is measured.
  const steps: { cfg: number; gw1: number; host1: number; at: number; measured: unknown[] }[] = [
    // Planner starts: acks it finds are not measured (they predate it).
    { cfg: 2, gw1: 5, host1: 5, at: 1_000, measured: [] },
    // desired_cfg 3 appears at t=1000 (+0), generation 6 (phase 1) acked by host1 at 1500, gw1 at 1800.
    { cfg: 3, gw1: 5, host1: 5, at: 1_000, measured: [] },
    { cfg: 3, gw1: 5, host1: 6, at: 1_500, measured: [{ node: 'host1', generation: 6, seconds: 0.5 }] },
    { cfg: 3, gw1: 6, host1: 6, at: 1_800, measured: [{ node: 'gw1', generation: 6, seconds: 0.8 }] },
    // Generation 7 (phase 2 of the same change): counted from the same change.
    {
      cfg: 3,
      gw1: 7,
      host1: 7,
      at: 3_000,
      measured: [
        { node: 'gw1', generation: 7, seconds: 2 },
        { node: 'host1', generation: 7, seconds: 2 },
      ],
    },
    // Nothing new: nothing observed.
    { cfg: 3, gw1: 7, host1: 7, at: 4_000, measured: [] },
  ];
  for (const { cfg, gw1, host1, at, measured } of steps) {
    const acks = new Map([
      ['gw1', gw1],
      ['host1', host1],
    ]);
    assert.deepEqual(a.observe(cfg, acks, plan, at), measured, `at ${at}`);
  }
});

test('a generation from a change the planner never saw counts from its creation; unknown plans are skipped', () => {
  const a = new AckLatency();
  a.observe(9, new Map([['gw1', 1]]), () => undefined, 0);
  const plan = (g: number) => (g === 2 ? { desiredCfg: 8, createdAt: 400 } : undefined);
  assert.deepEqual(a.observe(9, new Map([['gw1', 2]]), plan, 1_400), [
    { node: 'gw1', generation: 2, seconds: 1 },
  ]);
  assert.deepEqual(a.observe(9, new Map([['gw1', 3]]), plan, 1_500), []);
});
