// The terminal progress line (src/progress.ts) with a fake stream and clock: drawn in place on a terminal, nothing
// at all off one.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressLine, terminalProgress } from '../../src/progress.ts';

test('progress line: label, step of total, what, detail, elapsed; cut to the terminal width', () => {
  assert.equal(
    progressLine('lab up', 3, 6, 'starting 5 ovs-vswitchd', '', 4200),
    'lab up [3/6] starting 5 ovs-vswitchd (4.2 s)',
  );
  assert.equal(
    progressLine('control plane', 5, 5, 'waiting for every node', '3/5 acknowledged', 1000),
    'control plane [5/5] waiting for every node: 3/5 acknowledged (1.0 s)',
  );
  assert.equal(progressLine('x', 1, 1, 'a'.repeat(100), '', 0, 20).length, 19);
});

test('on a terminal each step redraws one line in place; off a terminal nothing is written', () => {
  const written: string[] = [];
  let t = 1000;
  const tty = { isTTY: true, columns: 200, write: (s: string) => written.push(s) > 0 };
  const p = terminalProgress('bench', 2, tty, () => t);
  p.step(1, 'slots');
  t += 2500;
  p.detail('half way');
  p.step(2, 'maglev');
  p.end();
  assert.deepEqual(written, [
    '\r\x1b[2Kbench [1/2] slots (0.0 s)',
    '\r\x1b[2Kbench [1/2] slots: half way (2.5 s)',
    '\r\x1b[2Kbench [2/2] maglev (0.0 s)',
    '\r\x1b[2K',
  ]);
  const piped: string[] = [];
  const q = terminalProgress('bench', 2, { isTTY: false, write: (s: string) => piped.push(s) > 0 });
  q.step(1, 'slots');
  q.end();
  assert.deepEqual(piped, []);
});
