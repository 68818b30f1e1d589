// Slot tables: known answers (pinned vectors), validation, edge cases. Properties: slots.props.test.ts.
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fmix32, fnv1a32 } from '../../src/hashing/hash.ts';
import {
  buildTable,
  growTable,
  movedSlots,
  NO_OWNER,
  type PoolMember,
  quotas,
  type SlotTable,
  slotCounts,
} from '../../src/hashing/slots.ts';

/** One hex digit per slot (members < 16), '-' for NO_OWNER. */
function hex(t: SlotTable): string {
  return Array.from(t.owners, (o) => (o === NO_OWNER ? '-' : o.toString(16))).join('');
}

const POOL: PoolMember[] = [1, 1, 2, 3, 1].map((weight, i) => ({ key: `10.0.0.${i + 1}:80`, weight }));
const POOL2: PoolMember[] = [1, 2, 3, 4, 5].map((weight, i) => ({ key: `b${i}`, weight }));

describe('hash known answers', () => {
  it('FNV-1a 32 matches the published test vectors', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
    assert.equal(fnv1a32('foobar'), 0xbf9cf968);
  });
  it('fmix32 is the MurmurHash3 finaliser', () => {
    assert.equal(fmix32(0), 0);
    assert.equal(fmix32(1), 0x514e28b7);
  });
});

describe('pinned tables (an algorithm change shows up here)', () => {
  it('weights 1,1,2,3,1 at 4 and 8 bits', () => {
    const t4 = buildTable(POOL, 4);
    assert.deepEqual(t4.members, ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80', '10.0.0.5:80']);
    assert.equal(hex(t4), '1203423312034233');
    assert.equal(hex(buildTable(POOL, 8)), '1203423312034233'.repeat(16));
  });

  it('weights 1,2,3,4,5 (shares not integral) at 4 and 8 bits', () => {
    assert.equal(hex(buildTable(POOL2, 4)), '3421434234140234');
    assert.equal(
      hex(buildTable(POOL2, 8)),
      [
        '3412432431402343421432434102344321434234102434321434234102434321',
        '4342341024343214342341024343214342341024342314342341024342314342',
        '3410243423143423410243423413424314023423414324314023434124324314',
        '0234341243243140234341243243140234341243243140234341243243140234',
      ].join(''),
    );
  });

  it('changes from the pinned table: remove a member, change a weight', () => {
    const t8 = buildTable(POOL, 8);
    const removed = buildTable(
      POOL.filter((m) => m.key !== '10.0.0.4:80'),
      8,
      t8,
    );
    assert.equal(
      hex(removed),
      [
        '1200321212033220120132231202320112023232120032121203322012013223',
        '1202320112023232120132201203322212013203120232211200323212023210',
        '1203322212013203120232211200323212023210120232321201320212033221',
        '1200322312023201120232321200321212033220120132231202320112023232',
      ].join(''),
    );
    const reweighted = buildTable(
      POOL.map((m) => (m.key === '10.0.0.1:80' ? { key: m.key, weight: 3 } : m)),
      8,
      t8,
    );
    assert.equal(
      hex(reweighted),
      [
        '1203423302004033120342301000423312034233100342331203023312030203',
        '1203023312004203120342300003423312034233100302331200423312000033',
        '1200400310034200020342330203423310004033120302330203423312034233',
        '1203420312034233120042331203403310004030120042331203423302034233',
      ].join(''),
    );
  });
});

describe('quotas', () => {
  it('gives exact shares when they are integers', () => {
    assert.deepEqual(
      [...quotas(POOL, 4).values()],
      [2, 2, 4, 6, 2], // 16 * w / 8
    );
  });

  it('gives floor or ceil and sums to 2^bits (shares 16*w/15)', () => {
    const q = quotas(POOL2, 4);
    let sum = 0;
    for (const m of POOL2) {
      const share = (16 * m.weight) / 15;
      const v = q.get(m.key)!;
      assert.ok(v === Math.floor(share) || v === Math.ceil(share), `${m.key}: ${v} vs ${share}`);
      sum += v;
    }
    assert.equal(sum, 16);
    // Shares 1.067 2.133 3.2 4.267 5.333: one ceiling to give, b4 has the largest remainder.
    assert.deepEqual([...q.values()], [1, 2, 3, 4, 6]);
  });

  it('prefers members that already hold the ceiling', () => {
    // Without history b4 (largest remainder) gets the ceiling; b0 holding 2 already keeps it instead.
    const q = quotas(POOL2, 4, new Map([['b0', 2]]));
    assert.deepEqual([...q.values()], [2, 2, 3, 4, 5]);
  });

  it('weight 0 gets 0; all weights 0 gets all 0', () => {
    const q = quotas(
      [
        { key: 'a', weight: 0 },
        { key: 'b', weight: 1 },
      ],
      4,
    );
    assert.deepEqual(
      [...q],
      [
        ['a', 0],
        ['b', 16],
      ],
    );
    assert.deepEqual([...quotas([{ key: 'a', weight: 0 }], 4)], [['a', 0]]);
  });
});

describe('validation', () => {
  it('rejects bad bits, weights, duplicate keys, keepSlots length', () => {
    for (const bits of [3, 17, 4.5, Number.NaN]) assert.throws(() => buildTable(POOL, bits), RangeError);
    for (const weight of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => buildTable([{ key: 'a', weight }], 4), RangeError);
    }
    assert.throws(
      () =>
        buildTable(
          [
            { key: 'a', weight: 1 },
            { key: 'a', weight: 2 },
          ],
          4,
        ),
      RangeError,
    );
    assert.throws(() => buildTable(POOL, 4, undefined, { keepSlots: new Uint8Array(8) }), RangeError);
    assert.throws(() => growTable(buildTable(POOL, 5), 4), RangeError);
    assert.throws(() => quotas(POOL, 2), RangeError);
  });
});

describe('edge cases', () => {
  it('empty pool and all-zero weights give NO_OWNER everywhere; weight-0 members are listed', () => {
    const empty = buildTable([], 4);
    assert.deepEqual(empty.members, []);
    assert.ok(empty.owners.every((o) => o === NO_OWNER));
    const zero = buildTable(
      [
        { key: 'b', weight: 0 },
        { key: 'a', weight: 0 },
      ],
      5,
    );
    assert.deepEqual(zero.members, ['a', 'b']);
    assert.equal(zero.owners.length, 32);
    assert.ok(zero.owners.every((o) => o === NO_OWNER));
    // From the all-NO_OWNER table, giving b weight fills every slot.
    const filled = buildTable(
      [
        { key: 'b', weight: 1 },
        { key: 'a', weight: 0 },
      ],
      5,
      zero,
    );
    assert.ok(filled.owners.every((o) => o === 1));
    assert.equal(movedSlots(zero, filled).length, 32);
  });

  it('sorts members in UTF-16 code-unit order', () => {
    const t = buildTable(
      ['a', 'B', '\uffff', '\ud83d\ude00', 'é'].map((key) => ({ key, weight: 1 })),
      4,
    );
    assert.deepEqual(t.members, ['B', 'a', 'é', '\ud83d\ude00', '\uffff']);
  });

  it('a member with a share below one slot may get 0 slots', () => {
    const pool = [
      { key: 'big', weight: 1000 },
      { key: 'small', weight: 1 },
    ];
    const c = slotCounts(buildTable(pool, 4));
    assert.equal(c.get('small'), 0);
    assert.equal(c.get('big'), 16);
  });

  it('growTable duplicates slots', () => {
    const t = buildTable(POOL2, 4);
    const g = growTable(t, 6);
    assert.equal(g.owners.length, 64);
    for (let s = 0; s < 64; s++) assert.equal(g.owners[s], t.owners[s % 16]);
    assert.deepEqual(movedSlots(t, g), []);
    assert.equal(growTable(t, 4).owners.length, 16);
  });

  it('shrinking starts from the low slots of the previous table', () => {
    const t = buildTable(POOL2, 4);
    const g = growTable(t, 6);
    const back = buildTable(POOL2, 4, g);
    assert.deepEqual(back.owners, t.owners);
  });

  it('movedSlots compares owner keys, with NO_OWNER as its own key', () => {
    const a: SlotTable = { bits: 4, members: ['x', 'y'], owners: new Uint16Array(16).fill(0) };
    const bOwners = new Uint16Array(16).fill(1); // 'x' is index 1 in b
    bOwners[3] = 0; // 'w'
    bOwners[5] = NO_OWNER;
    const b: SlotTable = { bits: 4, members: ['w', 'x'], owners: bOwners };
    assert.deepEqual(movedSlots(a, b), [3, 5]);
    assert.deepEqual(movedSlots(b, b), []);
  });

  it('slotCounts lists every member', () => {
    const t = buildTable([...POOL, { key: 'zero', weight: 0 }], 4);
    assert.deepEqual(
      [...slotCounts(t)],
      [
        ['10.0.0.1:80', 2],
        ['10.0.0.2:80', 2],
        ['10.0.0.3:80', 4],
        ['10.0.0.4:80', 6],
        ['10.0.0.5:80', 2],
        ['zero', 0],
      ],
    );
  });

  it('builds 2^16 slots x 1000 members, and a removal, well under a second', () => {
    const pool = Array.from({ length: 1000 }, (_, i) => ({
      key: `10.1.${i >> 8}.${i & 255}:443`,
      weight: 1 + (i % 7),
    }));
    const t0 = performance.now();
    const t = buildTable(pool, 16);
    const t1 = performance.now();
    const u = buildTable(pool.slice(1), 16, t);
    const t2 = performance.now();
    assert.ok(t1 - t0 < 1000, `build took ${t1 - t0} ms`);
    assert.ok(t2 - t1 < 1000, `change took ${t2 - t1} ms`);
    assert.equal(movedSlots(t, u).length, slotCounts(t).get(pool[0].key));
  });
});
