// Load balancer ids (src/rollout/lb-ids.ts, src/compile/registry.ts lbIdsOf, the Plan_Pool.lb_id encoding): an id is
// assigned once and kept while its load balancer lives, whatever else is added. Pure; no store, no OVS.
//
// The crafted collision: `lb-47` and `lb-79` prefer the same id (the 16-bit fold of FNV-1a), and `lb-47` sorts
// first, so the computed ids of schema 2.0.0 give `lb-79` another id as soon as `lb-47` exists. The negative
// controls run the same check over those computed ids and show it fails there.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { lbInputs } from '../../src/compile/index.ts';
import { lbIds, lbIdsOf } from '../../src/compile/registry.ts';
import { preferredLbId } from '../../src/hashing/lb-ids.ts';
import type { Config } from '../../src/model/types.ts';
import { RETIRED_LB_ID_HOLD_MS } from '../../src/rollout/lb-ids.ts';
import { planNext } from '../../src/rollout/planner.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { decodeRetiredLbIds, encodeRetiredLbIds, poolToRow, rowToPool } from '../../src/store/db/index.ts';
import { activeBackend, testConfig, testLb, testNodes } from '../scenarios/configs.ts';

const [FIRST, SECOND] = ['lb-47', 'lb-79'];
const nodes = testNodes(['gw1'], ['h1']);
const lb = (name: string, i: number) =>
  testLb(name, `203.0.113.${i}`, 'tcp', [80], [activeBackend(`10.0.1.${i}`, 'h1')]);
const config = (...names: string[]): Config =>
  testConfig(
    nodes,
    names.map((n) => lb(n, 10 + Number(n.replace(/\D/g, '')) / 2)),
  );

/** The check both paths are held to: every load balancer of `before` has the same id in `after`. */
function keepsIds(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): boolean {
  return [...before].every(([name, id]) => after.get(name) === id);
}

function publish(latest: Generation | null, c: Config, now = 1000): Generation {
  const next = planNext({ config: c, latest, connections: () => 0, now }).next;
  assert.ok(next !== null, 'planNext publishes');
  return next;
}

test('the crafted names collide: same preferred id, and the first sorts first', () => {
  assert.equal(preferredLbId(FIRST), preferredLbId(SECOND));
  assert.ok(FIRST < SECOND);
});

test('adding a colliding load balancer leaves the existing id alone (negative control: computed ids shift it)', () => {
  const c1 = config(SECOND);
  const c2 = config(SECOND, FIRST);
  const g1 = publish(null, c1);
  const g2 = publish(g1, c2);
  const before = lbIdsOf(c1, g1);
  const after = lbIdsOf(c2, g2);
  assert.equal(
    before.get(SECOND),
    preferredLbId(SECOND),
    'no collision yet: the id the old code computed too',
  );
  assert.ok(keepsIds(before, after), `${SECOND} kept its id: ${before.get(SECOND)} -> ${after.get(SECOND)}`);
  assert.notEqual(after.get(FIRST), after.get(SECOND));
  // What the compiler puts into cookies, ct_mark and Geneve: the same ids.
  assert.equal(lbInputs(c2, g2).find((x) => x.lb.name === SECOND)?.id, before.get(SECOND));
  // Negative control: the computed ids of schema 2.0.0, held to the same check, fail it.
  const oldBefore = lbIds([SECOND]);
  const oldAfter = lbIds([SECOND, FIRST]);
  assert.equal(keepsIds(oldBefore, oldAfter), false, 'the computed ids shift the existing load balancer');
});

test('upgrade: a plan without stored ids keeps the ids its agents computed, collisions included', () => {
  // Schema 2.0.0 plan of both names: the agents computed FIRST = preferred, SECOND = preferred + 1.
  const c = config(SECOND, FIRST);
  const legacy = stripIds(publish(null, c));
  const computed = lbIdsOf(c, legacy);
  assert.deepEqual(computed, lbIds([FIRST, SECOND]));
  // The first generation of a new planner adds a third load balancer, sorted first, whose preferred id is SECOND's.
  let third = '';
  for (let i = 0; third === ''; i++) if (preferredLbId(`a${i}`) === computed.get(SECOND)) third = `a${i}`;
  const c3 = { ...c, loadBalancers: [...c.loadBalancers, lb(third, 99)] };
  const g = publish(legacy, c3);
  const ids = lbIdsOf(c3, g);
  assert.ok(
    keepsIds(computed, ids),
    `kept ${JSON.stringify([...computed])}, got ${JSON.stringify([...ids])}`,
  );
  assert.equal(new Set(ids.values()).size, 3);
  // Negative control: recomputing from the names (what a 2.0.0 agent would do) moves an existing one.
  assert.equal(keepsIds(computed, lbIds(c3.loadBalancers.map((l) => l.name))), false);
});

test('a removed load balancer id is held for the hold time, then free again', () => {
  const g1 = publish(null, config(SECOND));
  const held = lbIdsOf(config(SECOND), g1).get(SECOND)!;
  const g2 = publish(g1, config('lb-3'), 2000); // SECOND removed, another added
  assert.deepEqual([...(g2.retiredLbIds ?? [])], [[held, 2000]]);
  // FIRST prefers the held id: it gets the next one while the hold lasts.
  const g3 = publish(g2, config('lb-3', FIRST), 3000);
  assert.notEqual(lbIdsOf(config('lb-3', FIRST), g3).get(FIRST), held);
  assert.ok(g3.retiredLbIds?.has(held), 'still held');
  // After the hold, the retired entry is gone and a new load balancer may take the id.
  const late = 2000 + RETIRED_LB_ID_HOLD_MS;
  const g4 = publish(g2, config('lb-3', FIRST), late);
  assert.equal(lbIdsOf(config('lb-3', FIRST), g4).get(FIRST), held);
  assert.equal(g4.retiredLbIds, undefined);
});

test('ids of older stored plans are not taken (reservedLbIds)', () => {
  const g1 = publish(null, config('lb-3'));
  const want = preferredLbId(SECOND);
  const next = planNext({
    config: config('lb-3', SECOND),
    latest: g1,
    connections: () => 0,
    now: 1,
    reservedLbIds: [want],
  }).next!;
  assert.equal(next.pools.get(SECOND)?.id, want === 0xfffe ? 1 : want + 1);
});

test('unchanged pools keep their objects (the store recognises them without encoding them again)', () => {
  const g1 = publish(null, config(SECOND, 'lb-3'));
  const g2 = publish(g1, config(SECOND, 'lb-3', FIRST));
  assert.equal(g2.pools.get(SECOND), g1.pools.get(SECOND));
});

test('lbIdsOf refuses a plan with ids on some pools only, or one id twice', () => {
  const c = config(SECOND, FIRST);
  const g = publish(null, c);
  const p = (name: string) => g.pools.get(name)!;
  const some: Generation = {
    ...g,
    pools: new Map([
      [SECOND, p(SECOND)],
      [FIRST, { ...p(FIRST), id: undefined }],
    ]),
  };
  assert.throws(() => lbIdsOf(c, some), /lb-47 has no id, others do/);
  const twice: Generation = {
    ...g,
    pools: new Map([
      [SECOND, p(SECOND)],
      [FIRST, { ...p(FIRST), id: p(SECOND).id }],
    ]),
  };
  assert.throws(() => lbIdsOf(c, twice), /both have id/);
});

test('Plan_Pool.lb_id and Plan.external_ids:retired_lb_ids round-trip; a bad value is refused by name', () => {
  const pool = publish(null, config(SECOND)).pools.get(SECOND)!;
  const row = poolToRow(pool);
  assert.equal(row.lb_id, pool.id);
  assert.equal(rowToPool(row).id, pool.id);
  assert.equal(rowToPool({ ...row, lb_id: undefined }).id, undefined, 'a row written before 2.1.0');
  assert.throws(() => rowToPool({ ...row, lb_id: 0 }), /Plan_Pool row lb-79: lb_id 0 is not an integer/);
  const retired = new Map([
    [7, 1000],
    [65534, 2_000_000_000_000],
  ]);
  assert.deepEqual(decodeRetiredLbIds(encodeRetiredLbIds(retired), 3), retired);
  assert.throws(() => decodeRetiredLbIds('7:1000 x', 3), /Plan 3 retired_lb_ids: bad pair "x"/);
});

function stripIds(g: Generation): Generation {
  return { ...g, pools: new Map([...g.pools].map(([n, p]) => [n, { ...p, id: undefined }])) };
}
