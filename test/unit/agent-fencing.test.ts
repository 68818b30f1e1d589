// The gateway agent's fencing state machine (src/agent/fencing.ts): one test per transition of the table, the pairs
// that must not move (a silent store above all), and the old rule kept for the negative control. Pure: no store,
// no OVS.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  FENCE_TABLE,
  type FenceEvent,
  type FenceState,
  mayRejoin,
  nextFence,
  reportsFenced,
} from '../../src/agent/fencing.ts';

const STATES: readonly FenceState[] = [
  'unknown',
  'announced',
  'withdrawn',
  'fenced-by-planner',
  'fenced-by-operator',
  'rejoining',
];
const EVENTS: readonly FenceEvent[] = [
  'store-silent',
  'apply-failing',
  'datapath-down',
  'cannot-agree',
  'behind',
  'planner-record',
  'operator-record',
  'raced-record',
  'rejoin-acked',
  'announce-ok',
  'announce-failed',
];

/** Every transition of the table, as the design states it: [from, event, to, action]. */
const TRANSITIONS: ReadonlyArray<readonly [FenceState, FenceEvent, FenceState, string]> = [
  ['unknown', 'apply-failing', 'withdrawn', 'withdraw'],
  ['unknown', 'datapath-down', 'withdrawn', 'withdraw'],
  ['unknown', 'cannot-agree', 'withdrawn', 'withdraw'],
  ['unknown', 'planner-record', 'fenced-by-planner', 'none'],
  ['unknown', 'operator-record', 'fenced-by-operator', 'none'],
  ['unknown', 'rejoin-acked', 'rejoining', 'announce'],
  ['announced', 'apply-failing', 'withdrawn', 'withdraw'],
  ['announced', 'datapath-down', 'withdrawn', 'withdraw'],
  ['announced', 'cannot-agree', 'withdrawn', 'withdraw'],
  ['announced', 'behind', 'withdrawn', 'withdraw'],
  ['announced', 'planner-record', 'fenced-by-planner', 'none'],
  ['announced', 'operator-record', 'fenced-by-operator', 'none'],
  // A fence that raced the rejoin may have taken the gateway out after its announce: maybe in, maybe out, so
  // `unknown` (waited for) and rejoin again. In every other state the gateway rejoins anyway, or (rejoining) will
  // be announced and meet the record then.
  ['announced', 'raced-record', 'unknown', 'none'],
  ['withdrawn', 'rejoin-acked', 'rejoining', 'announce'],
  ['fenced-by-planner', 'rejoin-acked', 'rejoining', 'announce'],
  ['fenced-by-operator', 'rejoin-acked', 'rejoining', 'announce'],
  ['rejoining', 'announce-ok', 'announced', 'none'],
  ['rejoining', 'announce-failed', 'unknown', 'none'],
];

describe('gateway fencing state machine', () => {
  for (const [from, event, to, action] of TRANSITIONS) {
    test(`${from} --${event}--> ${to} (${action})`, () => {
      assert.deepEqual(nextFence(from, event), { to, action });
    });
  }

  test('the table holds exactly these transitions; every other pair leaves the state as it is', () => {
    const listed = new Set(TRANSITIONS.map(([f, e]) => `${f} ${e}`));
    let stays = 0;
    for (const s of STATES)
      for (const e of EVENTS) {
        if (listed.has(`${s} ${e}`)) continue;
        assert.equal(nextFence(s, e), undefined, `${s} --${e}--> should stay`);
        stays++;
      }
    assert.equal(stays, STATES.length * EVENTS.length - TRANSITIONS.length);
    const inTable = Object.values(FENCE_TABLE).reduce((n, row) => n + Object.keys(row).length, 0);
    assert.equal(inTable, TRANSITIONS.length, 'FENCE_TABLE has a transition this test does not name');
  });

  test('a silent store never takes a gateway out, in any state', () => {
    for (const s of STATES) assert.equal(nextFence(s, 'store-silent'), undefined, s);
  });

  test('the old rule (negative control only): a silent store withdraws an unknown or announced gateway', () => {
    const old = { withdrawOnStoreSilence: true };
    assert.deepEqual(nextFence('announced', 'store-silent', old), { to: 'withdrawn', action: 'withdraw' });
    assert.deepEqual(nextFence('unknown', 'store-silent', old), { to: 'withdrawn', action: 'withdraw' });
    for (const s of STATES.filter((x) => x !== 'announced' && x !== 'unknown'))
      assert.equal(nextFence(s, 'store-silent', old), undefined, s);
  });

  test('what the agent reports and when it rejoins', () => {
    assert.deepEqual(
      STATES.filter((s) => reportsFenced(s)),
      ['withdrawn', 'fenced-by-planner', 'fenced-by-operator'],
    );
    // `unknown` and `rejoining` may be in ECMP: never reported as fenced (the planner keeps waiting for them).
    assert.deepEqual(
      STATES.filter((s) => mayRejoin(s)),
      ['unknown', 'withdrawn', 'fenced-by-planner', 'fenced-by-operator'],
    );
  });
});
