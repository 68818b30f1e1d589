// SerialLoop (src/serial-loop.ts), shared by the agent's loops and the planner's step: never two runs at once, a
// trigger during a run gives exactly one more run, errors do not stop it, a stopped loop does not run.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SerialLoop } from '../../src/serial-loop.ts';

test('serial: triggers during a run coalesce into one more run; never concurrent', async () => {
  let running = 0;
  let max = 0;
  let runs = 0;
  const loop = new SerialLoop(
    async () => {
      running++;
      max = Math.max(max, running);
      runs++;
      await sleep(20);
      running--;
    },
    () => assert.fail('no error expected'),
    () => false,
  );
  loop.schedule();
  assert.equal(loop.running, true);
  for (let i = 0; i < 5; i++) loop.schedule();
  await sleep(100);
  assert.equal(runs, 2, 'one run, then one more for the five triggers that came meanwhile');
  assert.equal(max, 1);
  assert.equal(loop.running, false);
});

test('an error is reported and the loop goes on; a stopped loop does not run', async () => {
  const errors: string[] = [];
  let stopped = false;
  let runs = 0;
  const loop = new SerialLoop(
    async () => {
      runs++;
      throw new Error(`boom ${runs}`);
    },
    (e) => errors.push(e.message),
    () => stopped,
  );
  loop.schedule();
  await sleep(10);
  loop.schedule();
  await sleep(10);
  assert.deepEqual(errors, ['boom 1', 'boom 2']);
  stopped = true;
  loop.schedule();
  await sleep(10);
  assert.equal(runs, 2);
});

test('a step starts after the timers that came due while the scheduling task ran (a keepalive goes out first)', async () => {
  const order: string[] = [];
  const loop = new SerialLoop(
    async () => {
      order.push('step');
    },
    () => assert.fail('no error expected'),
    () => false,
  );
  // A store client's probe timer, then a long synchronous task (a snapshot parsed) that schedules the step.
  setTimeout(() => order.push('keepalive'), 5);
  const until = performance.now() + 30;
  while (performance.now() < until) {} // busy: the timer comes due meanwhile
  loop.schedule();
  assert.equal(loop.running, true, 'running from schedule() on: a trigger now coalesces');
  assert.deepEqual(order, [], 'not inside the scheduling task');
  await sleep(20);
  assert.deepEqual(order, ['keepalive', 'step']);
});
