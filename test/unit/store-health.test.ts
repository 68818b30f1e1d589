// The planner's view of backend health kept incrementally (src/store/db/health.ts, view.ts effectiveConfig) against
// the whole computation it replaces, over random changes. Pure: a Replica filled by hand (no ovsdb-server), the
// planner's rollout step computed both ways; a seeded generator, so a failure repeats.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/model/schema.ts';
import type { JsRow } from '../../src/ovsdb/protocol.ts';
import { Replica, type RowChange } from '../../src/ovsdb/replica.ts';
import type { Generation } from '../../src/rollout/types.ts';
import {
  BackendHealthIndex,
  BackendStatusTable,
  type DesiredDoc,
  effectiveConfig,
  effectiveDoc,
  type Health,
  plannerStep,
  readStoreView,
  rows,
  splitPlanDocument,
} from '../../src/store/db/index.ts';
import { testNodes } from '../scenarios/configs.ts';
import { pick, random } from '../scenarios/random.ts';
import { storeView } from '../scenarios/store-view.ts';

const HEALTHS: readonly Health[] = ['unknown', 'up', 'down', 'gone'];

/** What readStoreView computed before the index: every row read, `down` if any row of a backend says so, else the
 *  last row's health; only `down` and `gone` kept (the only ones that change the plan). */
function unhealthyByFullRead(r: Replica): Map<string, Health> {
  const all = new Map<string, Health>();
  for (const row of rows(r, BackendStatusTable)) {
    const k = `${row.lb} ${row.backend}`;
    if (all.get(k) !== 'down') all.set(k, row.health);
  }
  return new Map([...all].filter(([, h]) => h === 'down' || h === 'gone'));
}

function statusRow(uuid: string, node: string, lb: string, backend: string, health: Health): JsRow {
  return Object.freeze({
    _uuid: uuid,
    node,
    lb,
    backend,
    health,
    connections: 0,
    checked_at: 1,
    last_ok: undefined,
  }) as JsRow;
}

test('the health index follows inserts, updates, deletes, moved rows and resyncs like a full read', () => {
  const rnd = random(14);
  const r = new Replica();
  const index = new BackendHealthIndex(r);
  const keys = Array.from({ length: 12 }, (_, i) => [`lb${i % 3}`, `10.0.0.${i % 4}:80`] as const);
  let next = 0;
  const deleted: string[] = [];
  let unchangedReads = 0;
  for (let step = 0; step < 2000; step++) {
    const batch: RowChange[] = [];
    const live = () => [...r.table(BackendStatusTable.name).values()];
    for (let n = 1 + Math.floor(rnd() * 4); n > 0; n--) {
      const roll = rnd();
      const rowsNow = live();
      const old = rowsNow.length > 0 ? pick(rnd, rowsNow) : undefined;
      const [lb, backend] = pick(rnd, keys);
      if (old === undefined || roll < 0.35) {
        // Mostly new UUIDs; sometimes one deleted before comes back (it goes last in the replica's order).
        const back =
          deleted.length > 0 && rnd() < 0.5
            ? deleted.splice(Math.floor(rnd() * deleted.length), 1)[0]
            : undefined;
        const uuid = back ?? `u${next++}`;
        batch.push({
          table: 'Backend_Status',
          uuid,
          old: undefined,
          new: statusRow(uuid, pick(rnd, ['h1', 'h2']), lb, backend, pick(rnd, HEALTHS)),
        });
      } else if (roll < 0.7) {
        const row = { ...old, health: pick(rnd, HEALTHS), connections: Math.floor(rnd() * 3) };
        batch.push({
          table: 'Backend_Status',
          uuid: old._uuid as string,
          old,
          new: Object.freeze(row) as JsRow,
        });
      } else if (roll < 0.75) {
        // A row that now names another backend (agents never do this; the index must still follow).
        const row = statusRow(old._uuid as string, old.node as string, lb, backend, old.health as Health);
        batch.push({ table: 'Backend_Status', uuid: old._uuid as string, old, new: row });
      } else {
        deleted.push(old._uuid as string);
        batch.push({ table: 'Backend_Status', uuid: old._uuid as string, old, new: undefined });
      }
      r.apply(batch.splice(0));
    }
    if (rnd() < 0.01)
      r.replace(
        new Map([
          [
            'Backend_Status',
            new Map(
              live()
                .reverse()
                .map((x) => [x._uuid as string, x]),
            ),
          ],
        ]),
      );
    const before = index.unhealthy();
    if (rnd() < 0.5) continue; // several batches between two reads, too
    const want = unhealthyByFullRead(r);
    const got = index.unhealthy();
    assert.deepEqual(new Map([...got].sort()), new Map([...want].sort()), `step ${step}`);
    if (got === before) unchangedReads++;
  }
  // The same map object while nothing unhealthy changed (what lets the planner skip its work).
  assert.ok(unchangedReads > 100, `${unchangedReads} reads returned the previous object`);
});

/** A desired state with what makes health matter: shared addresses, admin states, a non-canonical IPv6 address. */
function desired(): DesiredDoc {
  const be = (address: string, host: string, state = 'active') => ({
    address,
    port: 80,
    host,
    weight: 1,
    state,
  });
  const lbs = Array.from({ length: 7 }, (_, i) => ({
    name: `lb${i}`,
    vip: `203.0.113.${10 + i}`,
    protocol: 'tcp',
    ports: [80],
    backends: [
      be('10.0.1.11', 'h1'),
      be('10.0.2.11', 'h2', i % 3 === 0 ? 'draining' : 'active'),
      be(`10.0.1.${20 + i}`, 'h1', i === 5 ? 'down' : 'active'),
      be(`10.0.2.${20 + i}`, 'h2'),
    ],
  }));
  const v6 = [be('2001:db8::0:7', 'h2'), be('2001:db8::11', 'h1')];
  lbs.push({ name: 'lb7', vip: '2001:db8:100::7', protocol: 'tcp', ports: [80], backends: v6 });
  return { hashMode: 'dp_hash', slotBits: 4, nodes: testNodes(['gw1'], ['h1', 'h2']), loadBalancers: lbs };
}

test('effectiveConfig patched per load balancer equals the whole computation, and so does the planner step', () => {
  const rnd = random(7);
  const doc = desired();
  const keys = doc.loadBalancers.flatMap((lb) =>
    lb.backends.map((b) => `${lb.name} ${b.address.includes(':') ? `[${b.address}]` : b.address}:80`),
  );
  keys.push('lb7 [2001:db8::7]:80', 'nosuchlb 10.0.1.11:80');
  let health = new Map<string, Health>();
  let latest: Generation | null = null;
  let prev = effectiveConfig(storeView(doc, health, latest), 'test')!;
  let reused = 0;
  for (let step = 0; step < 400; step++) {
    health = new Map(health);
    for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
      const k = pick(rnd, keys);
      if (rnd() < 0.2) health.delete(k);
      else health.set(k, pick(rnd, HEALTHS));
    }
    const v = storeView(doc, health, latest);
    const got = effectiveConfig(v, 'test')!;
    const whole = effectiveDoc(doc, health);
    const want = { config: parseConfig(whole, 'test'), doc: splitPlanDocument(whole) };
    assert.deepEqual(got.config, want.config, `config, step ${step}`);
    assert.equal(got.doc.base, want.doc.base);
    assert.deepEqual(
      new Map([...got.doc.lbs].sort()),
      new Map([...want.doc.lbs].sort()),
      `documents, step ${step}`,
    );
    // The decisions: the rollout step from the patched config and from the whole one.
    const a = plannerStep(v, got, 1000 + step, new Set(['h1', 'h2']));
    const b = plannerStep(v, want, 1000 + step, new Set(['h1', 'h2']));
    assert.deepEqual(a.next, b.next, `next generation, step ${step}`);
    assert.deepEqual(a.notes, b.notes, `notes, step ${step}`);
    if (a.next !== null) latest = a.next;
    reused += got.config.loadBalancers.filter((lb, i) => lb === prev.config.loadBalancers[i]).length;
    prev = got;
  }
  // Incremental, not the whole computation again: most load balancers stay the very objects of the step before.
  assert.ok(reused > 400 * 4, `${reused} load balancers reused`);
  // Negative control: the comparison sees one backend's health. The same doc with lb1's 10.0.1.21 gone differs.
  const gone = new Map([['lb1 10.0.1.21:80', 'gone' as Health]]);
  const other = effectiveDoc(doc, gone);
  assert.notDeepEqual(parseConfig(other, 'test'), parseConfig(effectiveDoc(doc, new Map()), 'test'));
});

test('readStoreView lists only the unhealthy backends, as one object while they do not change', () => {
  const r = new Replica();
  r.apply([
    {
      table: 'Backend_Status',
      uuid: 'a',
      old: undefined,
      new: statusRow('a', 'h1', 'web', '10.0.1.11:80', 'up'),
    },
    {
      table: 'Backend_Status',
      uuid: 'b',
      old: undefined,
      new: statusRow('b', 'h2', 'web', '10.0.2.11:80', 'down'),
    },
  ]);
  const first = readStoreView(r).backendHealth;
  assert.deepEqual([...first], [['web 10.0.2.11:80', 'down']]);
  const up = statusRow('a', 'h1', 'web', '10.0.1.11:80', 'up');
  r.apply([
    { table: 'Backend_Status', uuid: 'a', old: r.get('Backend_Status', 'a'), new: { ...up, connections: 5 } },
  ]);
  assert.equal(readStoreView(r).backendHealth, first, 'a connection count moved: same object');
  r.apply([
    { table: 'Backend_Status', uuid: 'a', old: r.get('Backend_Status', 'a'), new: { ...up, health: 'gone' } },
  ]);
  assert.deepEqual(
    new Map(readStoreView(r).backendHealth),
    new Map([
      ['web 10.0.2.11:80', 'down'],
      ['web 10.0.1.11:80', 'gone'],
    ]),
  );
});
