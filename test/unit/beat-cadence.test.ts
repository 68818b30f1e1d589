// src/agent/beat-cadence.ts: the agent's heartbeat interval (fast while the plan moves, the idle interval once it
// has not changed for ACTIVE_WINDOW_MS), which monitor updates count as changes, and the lease check of
// --idle-heartbeat. Pure.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ACTIVE_WINDOW_MS,
  effectiveInterval,
  heartbeatInterval,
  idleHeartbeatProblem,
  isPlanChange,
} from '../../src/agent/beat-cadence.ts';

test('without an idle interval every heartbeat is at the fast pace', () => {
  assert.equal(heartbeatInterval({ heartbeatMs: 1000 }, 1e9, 0), 1000);
});

test('the fast pace lasts ACTIVE_WINDOW_MS after a change, then the idle interval', () => {
  const c = { heartbeatMs: 1000, idleHeartbeatMs: 2500 };
  const change = 50_000;
  assert.equal(heartbeatInterval(c, change, change), 1000);
  assert.equal(heartbeatInterval(c, change + ACTIVE_WINDOW_MS - 1, change), 1000);
  assert.equal(heartbeatInterval(c, change + ACTIVE_WINDOW_MS, change), 2500);
  // An idle interval below the heartbeat never speeds the heartbeat up.
  assert.equal(heartbeatInterval({ heartbeatMs: 1000, idleHeartbeatMs: 500 }, 1e9, 0), 1000);
});

test("the agent's own status rows echoing back are not a change; plans and Global are", () => {
  assert.equal(isPlanChange([{ table: 'Node_Status' }, { table: 'Slot_Connections' }]), false);
  assert.equal(isPlanChange([{ table: 'Backend_Status' }]), false);
  assert.equal(isPlanChange([]), false);
  assert.equal(isPlanChange([{ table: 'Node_Status' }, { table: 'Plan_LB' }]), true);
  assert.equal(isPlanChange([{ table: 'Global' }]), true);
});

test('the interval kept is a whole number of heartbeat ticks (due at 90 %)', () => {
  assert.equal(effectiveInterval(1000, 1000), 1000);
  assert.equal(effectiveInterval(2000, 1000), 2000);
  assert.equal(effectiveInterval(2222, 1000), 2000); // 1,999.8 ms: due at the second tick
  assert.equal(effectiveInterval(2500, 1000), 3000);
  assert.equal(effectiveInterval(500, 1000), 1000);
});

test('--idle-heartbeat must leave at least four heartbeats per lease and not be below the heartbeat', () => {
  assert.equal(idleHeartbeatProblem(2000, 1000, 10_000), undefined);
  assert.equal(idleHeartbeatProblem(2500, 500, 10_000), undefined); // a 500 ms tick keeps 2,500 ms
  assert.match(
    idleHeartbeatProblem(2500, 1000, 10_000) ?? '',
    /beats every 3000 ms on a 1000 ms heartbeat, more than a quarter of the lease \(10000 ms\)/,
  );
  assert.match(idleHeartbeatProblem(500, 1000, 10_000) ?? '', /at least the heartbeat \(1000 ms\), got 500/);
  assert.match(idleHeartbeatProblem(Number.NaN, 1000, 10_000) ?? '', /--idle-heartbeat/);
});
