// bench/txn-history.ts: the model of ovsdb-server 3.1's transaction history (ovsdb_txn_history_run) that
// bench/reconnect-window.ts checks against the real server. Pure.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  canResume,
  HISTORY_MAX_TRANSACTIONS,
  resumeWindowSeconds,
  trimHistory,
} from '../../bench/txn-history.ts';

const BIG = 1e9; // a database far larger than any history: only the count rule binds

test('a resume needs the last transaction plus at most 99 later ones', () => {
  assert.equal(HISTORY_MAX_TRANSACTIONS, 100);
  assert.equal(canResume(10, Array(99).fill(10), BIG), true);
  assert.equal(canResume(10, Array(100).fill(10), BIG), false);
  assert.equal(canResume(10, [], BIG), true);
});

test('the atom rule: history never holds more atoms than the database', () => {
  // 40-atom heartbeats in a database of 400 atoms: 10 are kept, so a client is 9 transactions from a snapshot.
  assert.deepEqual(trimHistory(Array(30).fill(40), 400), Array(10).fill(40));
  assert.equal(canResume(40, Array(9).fill(40), 400), true);
  assert.equal(canResume(40, Array(10).fill(40), 400), false);
  // One large transaction (a plan) pushes out everything before it once it alone passes the bound.
  assert.deepEqual(trimHistory([5, 5, 500], 400), [500]);
});

test('at least one transaction stays, however large', () => {
  assert.deepEqual(trimHistory([1000], 10), [1000]);
  assert.deepEqual(trimHistory([], 10), []);
});

test('the window in seconds at a transaction rate', () => {
  assert.equal(resumeWindowSeconds(99), 1);
  assert.equal(resumeWindowSeconds(4), 24.75); // 4 agents, one heartbeat per second each
  assert.equal(resumeWindowSeconds(100), 0.99); // 100 agents
});
