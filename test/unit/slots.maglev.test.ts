// The Maglev baseline used by bench/slots.bench.ts (bench/maglev.ts): checks that it is the paper's population.
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { maglevTable } from '../../bench/maglev.ts';

describe('maglev baseline', () => {
  it('fills every entry, and backends take turns (counts differ by at most one when unweighted)', () => {
    const backends = Array.from({ length: 7 }, (_, i) => ({ name: `b${i}` }));
    const t = maglevTable(backends, 251);
    assert.equal(t.length, 251);
    const c = new Array(7).fill(0);
    for (const e of t) {
      assert.ok(e < 7);
      c[e]++;
    }
    // 251 = 7 * 35 + 6: the first six backends in turn order get 36, the last 35.
    assert.deepEqual(c, [36, 36, 36, 36, 36, 36, 35]);
  });

  it('with weights, counts follow the weights', () => {
    const t = maglevTable(
      [
        { name: 'a', weight: 1 },
        { name: 'b', weight: 3 },
      ],
      65537,
    );
    let b = 0;
    for (const e of t) if (e === 1) b++;
    assert.ok(Math.abs(b / 65537 - 0.75) < 0.001, `b holds ${b}`);
  });

  it('is deterministic', () => {
    const backends = Array.from({ length: 50 }, (_, i) => ({ name: `10.0.0.${i}:80` }));
    assert.deepEqual(maglevTable(backends, 1009), maglevTable(backends, 1009));
  });
});
