// LayeredMap (src/model/layered-map.ts) against a plain Map over random versions: sets, deletes (of keys present,
// absent, and deleted twice), folds past the threshold, and old versions read after newer ones were made. Pure; a
// seeded generator, so a failure repeats.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { LayeredMap } from '../../src/model/layered-map.ts';
import { random } from '../scenarios/random.ts';

function assertSame(got: LayeredMap<number, string>, want: ReadonlyMap<number, string>, what: string): void {
  assert.equal(got.size, want.size, `${what}: size`);
  assert.deepEqual(
    [...got].sort(([a], [b]) => a - b),
    [...want].sort(([a], [b]) => a - b),
    `${what}: entries`,
  );
  for (let k = 0; k < 600; k += 7) {
    assert.equal(got.get(k), want.get(k), `${what}: get ${k}`);
    assert.equal(got.has(k), want.has(k), `${what}: has ${k}`);
  }
  assert.deepEqual(
    [...got.keys()],
    [...got].map(([k]) => k),
    `${what}: keys in entry order`,
  );
  assert.deepEqual(
    [...got.values()],
    [...got].map(([, v]) => v),
    `${what}: values in entry order`,
  );
}

test('every version equals a plain Map with the same changes, and stays so after newer versions', () => {
  const rnd = random(7);
  const start = new Map<number, string>(Array.from({ length: 300 }, (_, i) => [i, `v${i}`]));
  let map = LayeredMap.of(start);
  let model = new Map(start);
  const kept: [LayeredMap<number, string>, Map<number, string>][] = [];
  for (let step = 0; step < 400; step++) {
    const n = 1 + Math.floor(rnd() * (step % 50 === 0 ? 80 : 6));
    const set: [number, string][] = [];
    const remove: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = Math.floor(rnd() * 600);
      if (rnd() < 0.4) remove.push(k, k);
      else set.push([k, `s${step}.${i}`]);
    }
    map = map.with(set, remove);
    model = new Map(model);
    for (const k of remove) model.delete(k);
    for (const [k, v] of set) model.set(k, v);
    assertSame(map, model, `step ${step}`);
    if (step % 37 === 0) kept.push([map, model]);
  }
  for (const [i, [m, want]] of kept.entries()) assertSame(m, want, `kept version ${i}`);
});

test('a key deleted and set again in one change is set; a value undefined is stored', () => {
  const m = LayeredMap.of<string, number | undefined>([['a', 1]]).with([['a', 2]], ['a']);
  assert.equal(m.get('a'), 2);
  assert.equal(m.size, 1);
  const u = m.with([['b', undefined]]);
  assert.equal(u.has('b'), true);
  assert.equal(u.size, 2);
});
