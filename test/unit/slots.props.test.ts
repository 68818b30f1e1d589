// Slot tables: property tests over random pools (fast-check). Known answers: slots.test.ts.
// Random pools: 1..200 members, weights 1..10, bits 4..12 (a few runs at 16).
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
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

const keyArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 10 }),
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 65535 }))
    .map(([a, p]) => `10.0.0.${a}:${p}`),
);
const memberArb = fc.record({ key: keyArb, weight: fc.integer({ min: 1, max: 10 }) });
const poolArb = (min = 1, max = 200) =>
  fc.uniqueArray(memberArb, { selector: (m) => m.key, minLength: min, maxLength: max });
const bitsArb = fc.integer({ min: 4, max: 12 });

function share(pool: readonly PoolMember[], bits: number, key: string): number {
  const total = pool.reduce((s, m) => s + m.weight, 0);
  const w = pool.find((m) => m.key === key)!.weight;
  return total === 0 ? 0 : ((1 << bits) * w) / total;
}

/** Every member holds floor or ceil of its share (exactly the share when integral); all slots owned. */
function assertBalanced(t: SlotTable, pool: readonly PoolMember[]): void {
  const counts = slotCounts(t);
  const anyWeight = pool.some((m) => m.weight > 0);
  let sum = 0;
  for (const m of pool) {
    const c = counts.get(m.key)!;
    const x = share(pool, t.bits, m.key);
    assert.ok(c === Math.floor(x) || c === Math.ceil(x), `${m.key}: ${c} slots, share ${x}`);
    assert.ok(Math.abs(c - x) < 1);
    if (m.weight > 0 && x >= 1) assert.ok(c >= 1);
    sum += c;
  }
  assert.equal(sum, anyWeight ? 1 << t.bits : 0);
  assert.deepEqual(
    t.members,
    pool.map((m) => m.key).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/**
 * The movement bound for any change a -> b with pool `pool`: a slot moves only from a member that is gone or over
 * its new quota (or was NO_OWNER) to a member under it, and the number moved is
 * sum_i max(0, count_a(i) - quota_b(i)) + NO_OWNER slots of a that b fills; gone members have quota 0.
 */
function assertMinimalMove(a: SlotTable, b: SlotTable, pool: readonly PoolMember[]): number[] {
  const before = slotCounts(a);
  const q = quotas(pool, b.bits, before);
  const after = slotCounts(b);
  const moved = movedSlots(a, b);
  let bound = 0;
  for (const [k, c] of before) bound += Math.max(0, c - (q.get(k) ?? 0));
  let unowned = 0;
  for (let s = 0; s < b.owners.length; s++) {
    if (a.owners[s] === NO_OWNER && b.owners[s] !== NO_OWNER) unowned++;
  }
  assert.equal(moved.length, bound + unowned);
  for (const s of moved) {
    const from = a.owners[s] === NO_OWNER ? undefined : a.members[a.owners[s]];
    const to = b.owners[s] === NO_OWNER ? undefined : b.members[b.owners[s]];
    if (from !== undefined)
      assert.ok((before.get(from) ?? 0) > (q.get(from) ?? 0), `${from} gave up slot ${s}`);
    if (to !== undefined) assert.ok((before.get(to) ?? 0) < q.get(to)!, `${to} took slot ${s}`);
  }
  // Every member ends exactly on its quota.
  for (const [k, v] of q) assert.equal(after.get(k), v);
  return moved;
}

describe('slot table properties', () => {
  it('is deterministic and independent of input order', () => {
    fc.assert(
      fc.property(poolArb(), bitsArb, fc.integer(), (pool, bits, seed) => {
        const shuffled = fc.sample(fc.shuffledSubarray(pool, { minLength: pool.length }), {
          numRuns: 1,
          seed,
        })[0];
        const a = buildTable(pool, bits);
        const b = buildTable(shuffled, bits);
        assert.deepEqual(b.members, a.members);
        assert.deepEqual(b.owners, a.owners);
        assert.deepEqual(buildTable(pool, bits).owners, a.owners);
      }),
    );
  });

  it('balances within one slot of each weighted share', () => {
    fc.assert(
      fc.property(poolArb(), bitsArb, (pool, bits) => {
        assertBalanced(buildTable(pool, bits), pool);
      }),
    );
  });

  it('balances at 16 bits', () => {
    fc.assert(
      fc.property(poolArb(1, 1000), (pool) => {
        assertBalanced(buildTable(pool, 16), pool);
      }),
      { numRuns: 10 },
    );
  });

  it('removing one member moves exactly that member slots', () => {
    fc.assert(
      fc.property(poolArb(2), bitsArb, fc.nat(), (pool, bits, pick) => {
        const gone = pool[pick % pool.length];
        const rest = pool.filter((m) => m !== gone);
        const a = buildTable(pool, bits);
        const b = buildTable(rest, bits, a);
        assertBalanced(b, rest);
        const moved = movedSlots(a, b);
        const gi = a.members.indexOf(gone.key);
        assert.equal(moved.length, slotCounts(a).get(gone.key));
        for (const s of moved) assert.equal(a.owners[s], gi, `slot ${s} moved but was not ${gone.key}'s`);
        assertMinimalMove(a, b, rest);
      }),
    );
  });

  it('adding one member moves only the slots it takes, and it takes its quota', () => {
    fc.assert(
      fc.property(poolArb(1), bitsArb, memberArb, (pool, bits, extra) => {
        fc.pre(!pool.some((m) => m.key === extra.key));
        const grown = [...pool, extra];
        const a = buildTable(pool, bits);
        const b = buildTable(grown, bits, a);
        assertBalanced(b, grown);
        const moved = movedSlots(a, b);
        const ni = b.members.indexOf(extra.key);
        for (const s of moved) assert.equal(b.owners[s], ni, `slot ${s} moved to another member`);
        assert.equal(moved.length, quotas(grown, bits, slotCounts(a)).get(extra.key));
        assert.equal(slotCounts(b).get(extra.key), moved.length);
      }),
    );
  });

  it('a weight change moves only what the quotas require (sum of max(0, old - quota))', () => {
    fc.assert(
      fc.property(
        poolArb(1),
        bitsArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 10 })), { minLength: 1, maxLength: 5 }),
        (pool, bits, changes) => {
          const next = pool.map((m) => ({ ...m }));
          for (const [i, w] of changes) next[i % next.length].weight = w;
          const a = buildTable(pool, bits);
          const b = buildTable(next, bits, a);
          assertBalanced(b, next);
          assertMinimalMove(a, b, next);
        },
      ),
    );
  });

  it('keeps the movement bound over sequences of changes (tables with history)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), member: memberArb }),
      fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
      fc.record({
        kind: fc.constant('weight' as const),
        pick: fc.nat(),
        weight: fc.integer({ min: 0, max: 10 }),
      }),
    );
    fc.assert(
      fc.property(
        poolArb(1, 60),
        bitsArb,
        fc.array(op, { minLength: 1, maxLength: 12 }),
        (start, bits, ops) => {
          let pool: PoolMember[] = start;
          let table = buildTable(pool, bits);
          for (const o of ops) {
            // The one member the change touches, and whether the others' shares can only grow (removal,
            // weight down) or only shrink (addition, weight up).
            let changed: string;
            let othersGrow: boolean;
            if (o.kind === 'add') {
              if (pool.some((m) => m.key === o.member.key)) continue;
              pool = [...pool, o.member];
              changed = o.member.key;
              othersGrow = false;
            } else if (o.kind === 'remove') {
              if (pool.length < 2) continue;
              const gone = pool[o.pick % pool.length];
              pool = pool.filter((m) => m !== gone);
              changed = gone.key;
              othersGrow = true;
            } else {
              const i = o.pick % pool.length;
              changed = pool[i].key;
              othersGrow = o.weight < pool[i].weight;
              pool = pool.map((m, j) => (j === i ? { key: m.key, weight: o.weight } : m));
            }
            const next = buildTable(pool, bits, table);
            assertBalanced(next, pool);
            const moved = assertMinimalMove(table, next, pool);
            // Slots between two unchanged members (docs/design/slot-tables.md): when their shares grow, each
            // gives up at most one (count <= ceil(old share) <= floor(new share) + 1 <= quota + 1); when they
            // shrink, each takes at most one (count >= floor(old) >= floor(new) >= quota - 1).
            const perMember = new Map<string, number>();
            for (const s of moved) {
              if (table.owners[s] === NO_OWNER || next.owners[s] === NO_OWNER) continue;
              const from = table.members[table.owners[s]];
              const to = next.members[next.owners[s]];
              if (from === changed || to === changed) continue;
              const who = othersGrow ? from : to;
              perMember.set(who, (perMember.get(who) ?? 0) + 1);
            }
            for (const [k, v] of perMember) {
              assert.equal(
                v,
                1,
                `${k} ${othersGrow ? 'gave up' : 'took'} ${v} slots from other unchanged members`,
              );
            }
            table = next;
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('equal weights, any history: a removal moves only its slots, an addition only the slots it takes', () => {
    // Proven in docs/design/slot-tables.md for equal weights from any balanced table (not only from scratch).
    const op = fc.oneof(
      fc.record({ add: fc.constant(true as const), pick: fc.nat() }),
      fc.record({ pick: fc.nat() }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 80 }),
        bitsArb,
        fc.array(op, { minLength: 1, maxLength: 15 }),
        (n, bits, ops) => {
          let next = n;
          let pool: PoolMember[] = Array.from({ length: n }, (_, i) => ({ key: `m${i}`, weight: 1 }));
          let table = buildTable(pool, bits);
          for (const o of ops) {
            if ('add' in o || pool.length < 2) {
              const key = `m${next++}`;
              pool = [...pool, { key, weight: 1 }];
              const b = buildTable(pool, bits, table);
              const ni = b.members.indexOf(key);
              for (const s of movedSlots(table, b)) assert.equal(b.owners[s], ni);
              table = b;
            } else {
              const gone = pool[o.pick % pool.length];
              pool = pool.filter((m) => m !== gone);
              const b = buildTable(pool, bits, table);
              const gi = table.members.indexOf(gone.key);
              const moved = movedSlots(table, b);
              assert.equal(moved.length, slotCounts(table).get(gone.key));
              for (const s of moved) assert.equal(table.owners[s], gi);
              table = b;
            }
            assertBalanced(table, pool);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('growTable moves nothing; rebalancing the grown table moves at most N slots', () => {
    fc.assert(
      fc.property(poolArb(), fc.integer({ min: 4, max: 11 }), (pool, bits) => {
        const a = buildTable(pool, bits);
        const g = growTable(a, bits + 1);
        assert.deepEqual(movedSlots(a, g), []);
        const half = 1 << bits;
        for (let s = 0; s < half; s++) assert.equal(g.owners[s + half], g.owners[s]);
        const b = buildTable(pool, bits + 1, a);
        assertBalanced(b, pool);
        const moved = movedSlots(g, b).length;
        assert.ok(moved <= pool.length, `${moved} slots moved for ${pool.length} members`);
        assertMinimalMove(g, b, pool);
      }),
    );
  });

  it('respects keepSlots when the member has enough unmarked slots to give', () => {
    fc.assert(
      fc.property(
        poolArb(2, 60),
        bitsArb,
        fc.nat(),
        fc.integer({ min: 0, max: 9 }),
        fc.integer(),
        (pool, bits, pick, cut, seed) => {
          const a = buildTable(pool, bits);
          const next = pool.map((m, i) =>
            i === pick % pool.length ? { key: m.key, weight: Math.min(cut, m.weight) } : m,
          );
          // Mark pseudo-random slots (about a third) as not movable yet.
          const keep = new Uint8Array(1 << bits);
          let x = seed | 1;
          for (let s = 0; s < keep.length; s++) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            keep[s] = (x >>> 0) % 3 === 0 ? 1 : 0;
          }
          const b = buildTable(next, bits, a, { keepSlots: keep });
          assertBalanced(b, next);
          assertMinimalMove(a, b, next);
          const before = slotCounts(a);
          const q = quotas(next, bits, before);
          const movedBy = new Map<string, { kept: number; free: number }>();
          for (const s of movedSlots(a, b)) {
            const k = a.members[a.owners[s]];
            const e = movedBy.get(k) ?? { kept: 0, free: 0 };
            if (keep[s]) e.kept++;
            else e.free++;
            movedBy.set(k, e);
          }
          for (const [k, e] of movedBy) {
            const excess = before.get(k)! - q.get(k)!;
            let unmarked = 0;
            for (let s = 0; s < keep.length; s++) if (a.members[a.owners[s]] === k && !keep[s]) unmarked++;
            // Marked slots move only once every unmarked slot of that member has moved.
            assert.equal(e.kept, Math.max(0, excess - unmarked), `${k}: ${e.kept} marked slots moved`);
          }
        },
      ),
    );
  });

  it('a removal at 16 bits moves exactly the removed member slots', () => {
    fc.assert(
      fc.property(poolArb(2, 1000), fc.nat(), (pool, pick) => {
        const gone = pool[pick % pool.length];
        const a = buildTable(pool, 16);
        const b = buildTable(
          pool.filter((m) => m !== gone),
          16,
          a,
        );
        const gi = a.members.indexOf(gone.key);
        const moved = movedSlots(a, b);
        assert.equal(moved.length, slotCounts(a).get(gone.key));
        for (const s of moved) assert.equal(a.owners[s], gi);
      }),
      { numRuns: 5 },
    );
  });

  it('spreads the slots a new member takes over the whole table', () => {
    const pool = Array.from({ length: 16 }, (_, i) => ({ key: `m${i}`, weight: 1 }));
    const a = buildTable(pool, 12);
    const b = buildTable([...pool, { key: 'new', weight: 1 }], 12, a);
    const quarters = [0, 0, 0, 0];
    for (const s of movedSlots(a, b)) quarters[s >> 10]++;
    // 4096/17 = 240.9 slots; each quarter should get a fair part of them, not the lowest indices only.
    for (const q of quarters) assert.ok(q > 30, `quarters ${quarters}`);
  });
});
