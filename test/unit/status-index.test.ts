// StatusIndex (src/agent/status-index.ts): a host's own status rows by key, followed change by change, must equal a
// rebuild from every row after any sequence of inserts, updates, deletes and snapshot replacements. Replicas are
// built in memory (no ovsdb-server).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fc from 'fast-check';
import { StatusIndex } from '../../src/agent/status-index.ts';
import type { JsRow } from '../../src/ovsdb/protocol.ts';
import { Replica, type RowChange } from '../../src/ovsdb/replica.ts';
import { BackendStatusTable, rows, SlotConnectionsTable } from '../../src/store/db/index.ts';

const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

function slotRow(id: number, lb: string, counts: string): JsRow {
  return Object.freeze({
    _uuid: uuid(id),
    node: 'host1',
    lb,
    generation: 1,
    bits: 4,
    counts,
    reported_at: 1,
  });
}

function statusRow(id: number, lb: string, backend: string, connections: number): JsRow {
  return Object.freeze({
    _uuid: uuid(id),
    node: 'host1',
    lb,
    backend,
    health: 'up',
    connections,
    checked_at: 1,
    last_ok: undefined,
  });
}

/** What the agent rebuilt from every row before (the reference). */
function rebuilt(r: Replica) {
  return {
    slots: new Map(rows(r, SlotConnectionsTable).map((x) => [x.lb, x])),
    status: new Map(rows(r, BackendStatusTable).map((x) => [`${x.lb} ${x.backend}`, x])),
  };
}

function same(index: StatusIndex, r: Replica): boolean {
  const want = rebuilt(r);
  const eq = <T>(a: ReadonlyMap<string, T>, b: ReadonlyMap<string, T>) =>
    a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
  return eq(index.slots, want.slots) && eq(index.status, want.status);
}

/** Random steps on rows 0..9 of each table: write (insert or update) a row with a key of a few, or delete it. */
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant('slot' as const),
    id: fc.integer({ min: 0, max: 9 }),
    lb: fc.integer({ min: 0, max: 3 }),
    del: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('status' as const),
    id: fc.integer({ min: 10, max: 19 }),
    lb: fc.integer({ min: 0, max: 3 }),
    del: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('replace' as const) }),
);

type Step = { kind: 'slot' | 'status'; id: number; lb: number; del: boolean } | { kind: 'replace' };

function run(target: Replica, watched: Replica, steps: readonly Step[]) {
  const index = new StatusIndex(watched);
  let n = 0;
  for (const s of steps) {
    n++;
    if (s.kind === 'replace') {
      target.replace(new Map([...target.tables].map(([t, m]) => [t, new Map(m)])));
      continue;
    }
    const table = s.kind === 'slot' ? SlotConnectionsTable.name : BackendStatusTable.name;
    const old = target.get(table, uuid(s.id));
    const row =
      s.kind === 'slot' ? slotRow(s.id, `v${s.lb}`, `c${n}`) : statusRow(s.id, `v${s.lb}`, '10.0.1.11:80', n);
    const change: RowChange = { table, uuid: uuid(s.id), old, new: s.del ? undefined : row };
    target.apply([change]);
    // The agent reads the index at some steps only (a report every heartbeat).
    if (n % 3 === 0 && !same(index.current(), target)) return false;
  }
  return same(index.current(), target);
}

test('the status index follows inserts, updates, deletes and replacements exactly as a rebuild', () => {
  fc.assert(
    fc.property(fc.array(stepArb, { maxLength: 60 }), (steps) => {
      const r = new Replica();
      assert.ok(run(r, r, steps));
    }),
    { numRuns: 300 },
  );
});

test('negative control: an index that misses the changes differs from the rebuild', () => {
  // The index watches another replica than the one that changes: stale maps, which the comparison must catch.
  const r = fc.check(
    fc.property(fc.array(stepArb, { maxLength: 60 }), (steps) => run(new Replica(), new Replica(), steps)),
    { numRuns: 300 },
  );
  assert.equal(r.failed, true);
});

test('close: the index no longer follows its replica (a rebuild on the next read)', () => {
  // What close() stops is the following: a closed index is not called by the replica's changes (an index dropped
  // before its replica is not kept alive by it). Counted by the rows it decodes as changes arrive.
  const r = new Replica();
  const index = new StatusIndex(r);
  index.current();
  let decoded = 0;
  const counting = (row: JsRow) =>
    new Proxy(row, {
      get(t, k, rcv) {
        if (k === 'lb') decoded++;
        return Reflect.get(t, k, rcv);
      },
    });
  const write = (id: number) =>
    r.apply([
      {
        table: SlotConnectionsTable.name,
        uuid: uuid(id),
        old: undefined,
        new: counting(slotRow(id, `v${id}`, 'c')),
      },
    ]);
  write(1);
  assert.equal(decoded, 1, 'followed while open');
  index.close();
  write(2);
  assert.equal(decoded, 1, 'not called once closed');
});
