// RFC 7047 notation helpers (src/ovsdb/protocol.ts), the update2 diff rules, transact result checking, replica
// diffs and the slot-array encodings. Pure: no server here (test/e2e/ovsdb-client.test.ts uses a real one).
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { checkTransactResult, TRANSITIONS } from '../../src/ovsdb/client.ts';
import { OvsdbError } from '../../src/ovsdb/errors.ts';
import {
  type AtomicType,
  applyColumnDiff,
  columnKind,
  condition,
  decodeRow,
  decodeValue,
  encodeRow,
  encodeValue,
  type JsAtom,
  type JsRow,
  type JsValue,
  mutation,
  OvsdbValueError,
  type TableSchema,
  type Type,
  type Value,
} from '../../src/ovsdb/protocol.ts';
import { diffTables, Replica, ReplicaUnion, rowsEqual } from '../../src/ovsdb/replica.ts';
import {
  decodeF64,
  decodeMembers,
  decodeU8,
  decodeU16,
  decodeU32,
  encodeF64,
  encodeMembers,
  encodeU8,
  encodeU16,
  encodeU32,
  poolToRow,
  rowToPool,
} from '../../src/store/db/encoding.ts';

const atomOf = (t: AtomicType): fc.Arbitrary<JsAtom> => {
  switch (t) {
    case 'integer':
      return fc.integer({ min: -(2 ** 40), max: 2 ** 40 });
    case 'real':
      return fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x));
    case 'boolean':
      return fc.boolean();
    case 'string':
      return fc.string({ maxLength: 8 });
    case 'uuid':
      return fc.uuid();
  }
};
const atomicType = fc.constantFrom<AtomicType>('integer', 'real', 'boolean', 'string', 'uuid');

/** A column type: bare atomic, scalar, optional, set or map. */
const typeArb: fc.Arbitrary<Type> = fc
  .record({
    key: atomicType,
    value: atomicType,
    kind: fc.constantFrom('scalar', 'optional', 'set', 'map', 'bare'),
  })
  .map(({ key, value, kind }): Type => {
    switch (kind) {
      case 'bare':
        return key;
      case 'scalar':
        return { key };
      case 'optional':
        return { key, min: 0, max: 1 };
      case 'set':
        return { key, min: 0, max: 'unlimited' };
      default:
        return { key, value, min: 0, max: 'unlimited' };
    }
  });

/** JS values of column type `t`. */
function valuesOf(t: Type): fc.Arbitrary<JsValue> {
  const key = (typeof t === 'string' ? t : t.key) as AtomicType;
  switch (columnKind(t)) {
    case 'scalar':
      return atomOf(key);
    case 'optional':
      return fc.option(atomOf(key), { nil: undefined });
    case 'set':
      return fc.uniqueArray(atomOf(key), { maxLength: 6, selector: (a) => JSON.stringify(a) });
    case 'map': {
      const value = (t as { value: AtomicType }).value;
      return fc
        .uniqueArray(fc.tuple(atomOf(key), atomOf(value)), {
          maxLength: 6,
          selector: (p) => JSON.stringify(p[0]),
        })
        .map((pairs) => new Map(pairs));
    }
  }
}

const typedValue = typeArb.chain((type) => valuesOf(type).map((value) => ({ type, value })));

test('decodeValue(encodeValue(v)) === v for every column kind, also through JSON text', () => {
  fc.assert(
    fc.property(typedValue, ({ type, value }) => {
      const wire = encodeValue(value, type);
      assert.deepEqual(decodeValue(wire, type), value);
      assert.deepEqual(decodeValue(JSON.parse(JSON.stringify(wire)) as Value, type), value);
    }),
    { numRuns: 500 },
  );
});

test('encodeValue speaks RFC 7047 notation', () => {
  const ref = { key: { type: 'uuid', refTable: 'Backend' }, min: 0, max: 'unlimited' } as const;
  const u = '01234567-89ab-cdef-0123-456789abcdef';
  assert.deepEqual(encodeValue([u, 'b1'], ref), [
    'set',
    [
      ['uuid', u],
      ['named-uuid', 'b1'],
    ],
  ]);
  assert.deepEqual(encodeValue(80, { key: 'integer', min: 0, max: 1 }), ['set', [80]]);
  assert.deepEqual(encodeValue(undefined, { key: 'integer', min: 0, max: 1 }), ['set', []]);
  assert.deepEqual(
    encodeValue(new Map([['a', 'b']]), { key: 'string', value: 'string', min: 0, max: 'unlimited' }),
    ['map', [['a', 'b']]],
  );
  assert.equal(encodeValue('x', 'string'), 'x');
  assert.throws(() => encodeValue('not a uuid!', 'uuid'), OvsdbValueError);
  assert.throws(() => encodeValue(1.5, 'integer'), OvsdbValueError);
  assert.throws(() => encodeValue(['a'], 'string'), OvsdbValueError);
});

test('a set of one may arrive as the bare atom (RFC 7047 5.1)', () => {
  assert.deepEqual(decodeValue(5, { key: 'integer', min: 0, max: 'unlimited' }), [5]);
  assert.equal(decodeValue(5, { key: 'integer', min: 0, max: 1 }), 5);
  assert.equal(decodeValue(['set', []], { key: 'integer', min: 0, max: 1 }), undefined);
  assert.equal(decodeValue(['uuid', 'abc'], 'uuid'), 'abc');
});

test('columnKind follows min/max/value', () => {
  assert.equal(columnKind('string'), 'scalar');
  assert.equal(columnKind({ key: 'string', min: 0, max: 1 }), 'optional');
  assert.equal(columnKind({ key: 'string', max: 'unlimited' }), 'set');
  assert.equal(columnKind({ key: 'string', value: 'integer', min: 0, max: 'unlimited' }), 'map');
});

/** The update2 difference ovsdb-server sends for old -> new (ovsdb-server(7) 4.1.14). */
function update2Diff(old: JsValue, next: JsValue, type: Type): Value {
  const kind = columnKind(type);
  if (kind === 'scalar' || kind === 'optional') return encodeValue(next, type);
  if (kind === 'map') {
    const a = old as ReadonlyMap<JsAtom, JsAtom>;
    const b = next as ReadonlyMap<JsAtom, JsAtom>;
    const d = new Map<JsAtom, JsAtom>();
    for (const [k, v] of a) if (!b.has(k)) d.set(k, v);
    for (const [k, v] of b) if (!a.has(k) || a.get(k) !== v) d.set(k, v);
    return encodeValue(d, type);
  }
  const a = old as JsAtom[];
  const b = next as JsAtom[];
  const key = (x: JsAtom) => JSON.stringify(x);
  const sym = [
    ...a.filter((x) => !b.some((y) => key(y) === key(x))),
    ...b.filter((x) => !a.some((y) => key(y) === key(x))),
  ];
  return encodeValue(sym, { ...(typeof type === 'string' ? { key: type } : type), min: 0, max: 'unlimited' });
}

test('applyColumnDiff(old, update2 diff(old, new)) === new for every column kind', () => {
  const pair = typeArb.chain((t) => fc.tuple(fc.constant(t), valuesOf(t), valuesOf(t)));
  fc.assert(
    fc.property(pair, ([type, a, b]) => {
      const got = applyColumnDiff(a, update2Diff(a, b, type), type);
      assert.ok(rowsEqual({ c: got }, { c: b }));
    }),
    { numRuns: 500 },
  );
});

test('applyColumnDiff on concrete update2 examples', () => {
  const map = { key: 'string', value: 'string', min: 0, max: 'unlimited' } as const;
  const old = new Map([
    ['a', '1'],
    ['b', '2'],
  ]);
  // remove a, change b, add c
  const diff: Value = [
    'map',
    [
      ['a', '1'],
      ['b', '3'],
      ['c', '4'],
    ],
  ];
  assert.deepEqual(
    applyColumnDiff(old, diff, map),
    new Map([
      ['b', '3'],
      ['c', '4'],
    ]),
  );
  const opt = { key: 'integer', min: 0, max: 1 } as const;
  // Optional columns carry the new value (what ovsdb-server 3.1 sends), not a set difference.
  assert.equal(applyColumnDiff(undefined, 80, opt), 80);
  assert.equal(applyColumnDiff(80, 81, opt), 81);
  assert.equal(applyColumnDiff(80, ['set', []], opt), undefined);
  assert.deepEqual(applyColumnDiff([1, 2], ['set', [2, 3]], { key: 'integer', max: 'unlimited' }), [1, 3]);
});

const lbTable: TableSchema = {
  columns: {
    name: { type: 'string' },
    ports: { type: { key: { type: 'integer', minInteger: 1, maxInteger: 65535 }, min: 1, max: 'unlimited' } },
    backends: { type: { key: { type: 'uuid', refTable: 'Backend' }, min: 0, max: 'unlimited' } },
    external_ids: { type: { key: 'string', value: 'string', min: 0, max: 'unlimited' } },
  },
};

test('rows: encodeRow/decodeRow, defaults for omitted columns, _uuid', () => {
  const row: JsRow = { name: 'web', ports: [80, 443], backends: ['b1'], external_ids: new Map([['k', 'v']]) };
  assert.deepEqual(encodeRow(lbTable, row), {
    name: 'web',
    ports: ['set', [80, 443]],
    backends: ['set', [['named-uuid', 'b1']]],
    external_ids: ['map', [['k', 'v']]],
  });
  const u = '11111111-2222-3333-4444-555555555555';
  assert.deepEqual(decodeRow(lbTable, { _uuid: ['uuid', u], name: 'x' }, true), {
    _uuid: u,
    name: 'x',
    ports: [],
    backends: [],
    external_ids: new Map(),
  });
  assert.throws(() => encodeRow(lbTable, { nope: 1 }), /unknown column nope/);
});

test('condition and mutation builders encode for the column type', () => {
  assert.deepEqual(condition(lbTable, 'name', '==', 'web'), ['name', '==', 'web']);
  assert.deepEqual(condition(lbTable, '_uuid', '==', '11111111-2222-3333-4444-555555555555'), [
    '_uuid',
    '==',
    ['uuid', '11111111-2222-3333-4444-555555555555'],
  ]);
  assert.deepEqual(mutation(lbTable, 'ports', 'insert', [8080]), ['ports', 'insert', ['set', [8080]]]);
  assert.deepEqual(mutation(lbTable, 'external_ids', 'delete', ['k']), [
    'external_ids',
    'delete',
    ['set', ['k']],
  ]);
  assert.deepEqual(mutation({ columns: { n: { type: 'integer' } } }, 'n', '+=', 1), ['n', '+=', 1]);
});

test('checkTransactResult names the failing op, or the commit', () => {
  const ops = [
    { op: 'comment', comment: 'x' },
    { op: 'delete', table: 'T', where: [] },
  ] as const;
  assert.deepEqual(checkTransactResult('D', [...ops], [{}, { count: 2 }]), [{}, { count: 2 }]);
  assert.throws(
    () => checkTransactResult('D', [...ops], [{}, { error: 'timed out', details: 'x' }]),
    (e: unknown) => e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_TRANSACTION' && e.opIndex === 1,
  );
  assert.throws(
    () => checkTransactResult('D', [...ops], [{}, { count: 0 }, { error: 'constraint violation' }]),
    (e: unknown) => e instanceof OvsdbError && e.opIndex === 2 && /\(commit\)/.test(e.message),
  );
  assert.throws(() => checkTransactResult('D', [...ops], { nope: 1 }), /not an array/);
});

test('the connection state machine: every state reachable from idle, closed is final', () => {
  const seen = new Set(['idle']);
  const queue = ['idle'];
  while (queue.length > 0) {
    for (const n of TRANSITIONS[queue.shift() as keyof typeof TRANSITIONS]) {
      if (!seen.has(n)) {
        seen.add(n);
        queue.push(n);
      }
    }
  }
  assert.deepEqual([...seen].sort(), Object.keys(TRANSITIONS).sort());
  assert.deepEqual(TRANSITIONS.closed, []);
  for (const s of Object.keys(TRANSITIONS) as (keyof typeof TRANSITIONS)[]) {
    if (s !== 'closed') assert.ok(TRANSITIONS[s].includes('closed'), `${s} can close`);
  }
});

const rowsArb = fc.dictionary(
  fc.constantFrom('u1', 'u2', 'u3', 'u4'),
  fc.record({
    a: fc.integer({ min: 0, max: 3 }),
    s: fc.uniqueArray(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
  }),
);
const tablesArb = fc
  .record({ T: rowsArb, U: rowsArb })
  .map(
    (t) =>
      new Map(Object.entries(t).map(([n, rows]) => [n, new Map(Object.entries(rows) as [string, JsRow][])])),
  );

test('replica: applying diffTables(a, b) to a yields b', () => {
  fc.assert(
    fc.property(tablesArb, tablesArb, (a, b) => {
      const r = new Replica();
      r.replace(a);
      r.apply(diffTables(a, b));
      const expect = new Replica();
      expect.replace(b);
      assert.deepEqual(r.toJSON(), expect.toJSON());
    }),
  );
  // Sets compare regardless of order: no change reported.
  const x = new Map([['T', new Map([['u', { s: [1, 2] } as JsRow]])]]);
  const y = new Map([['T', new Map([['u', { s: [2, 1] } as JsRow]])]]);
  assert.deepEqual(diffTables(x, y), []);
});

test('replica watchers: each hears its table until stopped; a stop inside apply skips no other watcher', () => {
  const r = new Replica();
  const heard: string[] = [];
  const change = (uuid: string) => ({ table: 'T', uuid, old: undefined, new: { _uuid: uuid } as JsRow });
  const stopA = r.watch('T', (c) => heard.push(`a ${c?.uuid ?? 'replaced'}`));
  // b stops c while a change is being delivered: c is still called for this change (the list apply started with)
  // and for no later one; d, after c, is called every time.
  let stopC = () => {};
  const stopB = r.watch('T', (c) => {
    heard.push(`b ${c?.uuid}`);
    stopC();
  });
  stopC = r.watch('T', (c) => heard.push(`c ${c?.uuid}`));
  r.watch('T', (c) => heard.push(`d ${c?.uuid ?? 'replaced'}`));
  r.watch('U', () => heard.push('u'));
  r.apply([change('1')]);
  stopA();
  stopB();
  stopA(); // twice: nothing more
  r.apply([change('2')]);
  r.replace(new Map());
  // U's watcher hears only the replace, which every watcher hears.
  assert.deepEqual(heard, ['a 1', 'b 1', 'c 1', 'd 1', 'd 2', 'd replaced', 'u']);

  // A union watches every part; its stop stops every part's watcher.
  const parts = [new Replica(), new Replica()];
  const union = new ReplicaUnion(parts);
  const fromUnion: string[] = [];
  const stop = union.watch('T', (c) => fromUnion.push(c?.uuid ?? 'replaced'));
  parts[0]!.apply([change('3')]);
  parts[1]!.apply([change('4')]);
  stop();
  parts[0]!.apply([change('5')]);
  parts[1]!.replace(new Map());
  assert.deepEqual(fromUnion, ['3', '4']);
});

test('slot arrays: base64 little-endian round trips and pinned bytes', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 0xffff })),
      fc.array(fc.nat()),
      fc.uint8Array(),
      fc.float64Array({ noNaN: true }),
      (a16, a32, u8, f64) => {
        const u16 = Uint16Array.from(a16);
        const u32 = Uint32Array.from(a32.map((x) => x >>> 0));
        assert.deepEqual(decodeU16(encodeU16(u16), u16.length), u16);
        assert.deepEqual(decodeU32(encodeU32(u32)), u32);
        assert.deepEqual(decodeU8(encodeU8(u8), u8.length), u8);
        assert.deepEqual(decodeF64(encodeF64(f64), f64.length), f64);
      },
    ),
  );
  // [1, 0xffff] -> bytes 01 00 ff ff
  assert.equal(encodeU16(Uint16Array.from([1, 0xffff])), Buffer.from([1, 0, 0xff, 0xff]).toString('base64'));
  assert.equal(encodeU32(Uint32Array.from([0x01020304])), Buffer.from([4, 3, 2, 1]).toString('base64'));
  assert.equal(
    encodeF64(Float64Array.from([1])),
    Buffer.from([0, 0, 0, 0, 0, 0, 0xf0, 0x3f]).toString('base64'),
  );
  assert.throws(() => decodeU16(encodeU16(new Uint16Array(4)), 8), /4 values, expected 8/);
  assert.throws(() => decodeU16('AAA'), /not base64/);
});

test('Plan_Pool rows round trip', () => {
  const pool = {
    lb: 'web',
    bits: 4,
    members: [
      { key: '10.0.0.1:80', address: '10.0.0.1', port: 80, host: 'h1' },
      { key: '10.0.0.2:*', address: '10.0.0.2', port: undefined, host: 'h2' },
    ],
    primary: Uint16Array.from({ length: 16 }, (_, s) => s % 2),
    second: Uint16Array.from({ length: 16 }, (_, s) => (s === 2 ? 1 : 0xffff)),
    phase: Uint8Array.from({ length: 16 }, (_, s) => (s === 2 ? 2 : 0)),
    since: Float64Array.from({ length: 16 }, (_, s) => (s === 2 ? 1764150000123 : 0)),
  };
  assert.deepEqual(rowToPool(poolToRow(pool)), pool);
  assert.deepEqual(decodeMembers(encodeMembers(pool.members)), pool.members);
  assert.throws(() => poolToRow({ ...pool, bits: 5 }), /must have 32 entries/);
  assert.throws(() => decodeMembers('[{"key":1}]'), /needs string key/);
  // A moved member's old host (PlanMember.movedFrom) round-trips; members without one are stored as before.
  const moved = [{ key: '10.0.0.9:80', address: '10.0.0.9', port: 80, host: 'h2', movedFrom: 'h1' }];
  assert.deepEqual(decodeMembers(encodeMembers(moved)), moved);
  assert.ok(!encodeMembers(pool.members).includes('movedFrom'));
  assert.throws(
    () => decodeMembers('[{"key":"k","address":"a","host":"h","movedFrom":3}]'),
    /movedFrom must be a string/,
  );
  // Lanes (schema 1.3.0): only slots with a second chance are stored; stable slots have the primary in lane 0.
  const lanes = new Uint16Array(16 * 8).fill(0xffff);
  for (let s = 0; s < 16; s++) lanes[s * 8] = pool.primary[s]!;
  lanes[2 * 8] = 0xffff; // slot 2: primary 0 in lane 3, second 1 in lane 1, a third owner 2 in lane 0
  lanes[2 * 8 + 3] = 0;
  lanes[2 * 8 + 1] = 1;
  lanes[2 * 8] = 2;
  const chained = {
    ...pool,
    members: [...pool.members, { key: '10.0.0.3:80', address: '10.0.0.3', port: 80, host: 'h3' }],
    lanes,
  };
  const row = poolToRow(chained);
  assert.equal(Buffer.from(row.lanes, 'base64').length, 8 * 2, 'one slot with a chain: 8 lanes stored');
  assert.deepEqual(rowToPool(row), chained);
  assert.equal(poolToRow(pool).lanes, '', 'no lanes given: none stored');
  assert.equal(rowToPool(poolToRow(pool)).lanes, undefined, '... and derived by the reader');
  // A lane that names no member is refused like any other rogue index.
  const rogue = { ...chained, lanes: lanes.slice() };
  rogue.lanes[2 * 8 + 5] = 7;
  assert.throws(() => rowToPool(poolToRow(rogue)), /slot 2 lane 5 names member 7/);
});
