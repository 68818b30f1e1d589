// Published plans in both layouts, read from replicas built in memory (replicaOf: no ovsdb-server; the e2e test
// test/e2e/ovsdb-store.test.ts publishes and prunes against a real one): a plan of schema 1.x (Plan.pools and one
// whole document) and 2.0.0 plans (Plan_LB rows with generation ranges), what a publication writes, what pruning
// deletes.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import type { JsRow } from '../../src/ovsdb/protocol.ts';
import type { PoolPlanRecord } from '../../src/store/db/encoding.ts';
import {
  GlobalTable,
  PLAN_LAYOUT_KEY,
  PLAN_LB_ROWS,
  PlanConfigTable,
  PlanLbTable,
  PlanPoolTable,
  PlanTable,
  planDocument,
  poolToRow,
  prunePlansOps,
  publishGenerationOps,
  readGeneration,
  readPlanConfig,
  readStoreView,
  replicaOf,
  samePlanDocs,
  splitPlanDocument,
} from '../../src/store/db/index.ts';

/** A stable 2^4-slot pool of `lb` with one member owning every slot (`owner` tells pools apart). */
function pool(lb: string, owner: string): PoolPlanRecord {
  return {
    lb,
    bits: 4,
    members: [{ key: `${owner}:80`, address: owner, port: 80, host: 'h1' }],
    primary: new Uint16Array(16),
    second: new Uint16Array(16).fill(NO_OWNER),
    phase: new Uint8Array(16),
    since: new Float64Array(16),
  };
}

const row = (r: Record<string, unknown>) => Object.freeze(r) as JsRow;
const poolRow = (uuid: string, p: PoolPlanRecord) => row({ _uuid: uuid, ...poolToRow(p) });
const docRow = (uuid: string, document: string) => row({ _uuid: uuid, document });
const planRow = (uuid: string, generation: number, config: string, pools: string[] = [], lbRows = true) =>
  row({
    _uuid: uuid,
    generation,
    desired_cfg: generation,
    created_at: 1000 * generation,
    pools,
    config,
    external_ids: new Map(lbRows ? [[PLAN_LAYOUT_KEY, PLAN_LB_ROWS]] : []),
  });
const lbRow = (uuid: string, lb: string, from: number, until: number, p: string, config: string) =>
  row({ _uuid: uuid, lb, from_generation: from, until_generation: until, pool: p, config });
const global = (generation: number, plan: string) =>
  row({
    _uuid: '00000000-0000-4000-8000-000000000000',
    hash_mode: 'dp_hash',
    slot_bits: 4,
    drain_window: 0,
    desired_cfg: generation,
    generation,
    plan,
    options: new Map(),
    external_ids: new Map(),
  });

const doc = {
  hashMode: 'dp_hash',
  nodes: [{ name: 'h1', role: 'host', tunnelIp: '192.0.2.1' }],
  loadBalancers: [
    { name: 'a', vip: '198.18.0.1' },
    { name: 'b', vip: '198.18.0.2' },
  ],
};
const docs = splitPlanDocument(doc);

test('the config split per load balancer: base with the names in order, one document each, joined back', () => {
  assert.deepEqual(JSON.parse(docs.base), { ...doc, loadBalancers: ['a', 'b'] });
  assert.deepEqual(JSON.parse(docs.lbs.get('b')!), doc.loadBalancers[1]);
  assert.deepEqual(planDocument(docs), doc);
  assert.ok(samePlanDocs(docs, splitPlanDocument(structuredClone(doc))));
  const other = structuredClone(doc);
  other.loadBalancers[1]!.vip = '198.18.0.3';
  const otherDocs = splitPlanDocument(other);
  assert.ok(!samePlanDocs(docs, otherDocs));
  // Remembered per pair of objects: asked again, each pair keeps its own answer (a negative control for the memo).
  const same = splitPlanDocument(structuredClone(doc));
  for (let i = 0; i < 2; i++) {
    assert.ok(samePlanDocs(docs, same));
    assert.ok(!samePlanDocs(docs, otherDocs));
    assert.ok(!samePlanDocs(otherDocs, same));
  }
  assert.throws(
    () => planDocument({ base: docs.base, lbs: new Map([['a', docs.lbs.get('a')!]]) }),
    /names load balancer b, which has no document/,
  );
});

test('a plan of schema 1.x (Plan.pools, one whole document) reads as before', () => {
  const r = replicaOf([
    [GlobalTable, [global(7, 'p7')]],
    [PlanTable, [planRow('p7', 7, 'c7', ['pa', 'pb'], false)]],
    [PlanPoolTable, [poolRow('pa', pool('a', '10.0.0.1')), poolRow('pb', pool('b', '10.0.0.2'))]],
    [PlanConfigTable, [docRow('c7', JSON.stringify(doc))]],
  ]);
  const g = readGeneration(r)!;
  assert.equal(g.number, 7);
  assert.deepEqual([...g.pools.keys()].sort(), ['a', 'b']);
  assert.equal(g.pools.get('b')!.members[0]!.address, '10.0.0.2');
  const c = readPlanConfig(r, 7)!;
  assert.equal(c.ref, 'c7');
  assert.deepEqual(planDocument(c.docs), doc);
});

/** Generations 1 and 2 in Plan_LB rows: `a` changed pool in 2, `b` is one row for both. */
function twoGenerations() {
  return replicaOf([
    [GlobalTable, [global(2, 'p2')]],
    [PlanTable, [planRow('p1', 1, 'base'), planRow('p2', 2, 'base')]],
    [
      PlanLbTable,
      [
        lbRow('la1', 'a', 1, 2, 'pa1', 'da'),
        lbRow('la2', 'a', 2, 0, 'pa2', 'da'),
        lbRow('lb1', 'b', 1, 0, 'pb', 'db'),
      ],
    ],
    [
      PlanPoolTable,
      [
        poolRow('pa1', pool('a', '10.0.0.1')),
        poolRow('pa2', pool('a', '10.0.0.9')),
        poolRow('pb', pool('b', '10.0.0.2')),
      ],
    ],
    [
      PlanConfigTable,
      [docRow('base', docs.base), docRow('da', docs.lbs.get('a')!), docRow('db', docs.lbs.get('b')!)],
    ],
  ]);
}

test('Plan_LB rows: a generation is the rows whose range holds it', () => {
  const r = twoGenerations();
  assert.equal(readGeneration(r, 1)!.pools.get('a')!.members[0]!.address, '10.0.0.1');
  assert.equal(readGeneration(r, 2)!.pools.get('a')!.members[0]!.address, '10.0.0.9');
  assert.equal(
    readGeneration(r, 1)!.pools.get('b'),
    readGeneration(r, 2)!.pools.get('b'),
    'one row, decoded once',
  );
  assert.deepEqual(planDocument(readPlanConfig(r, 2)!.docs), doc);
  assert.equal(readPlanConfig(r, 1)!.ref, readPlanConfig(r, 2)!.ref, 'same documents, same cache key');
});

test('readStoreView reads the plan again when the generation moves, not on an edit of the desired state', () => {
  const r = twoGenerations();
  const first = readStoreView(r);
  const g = r.get(GlobalTable.name, global(2, 'p2')._uuid as string)!;
  // An edit bumps Global.desired_cfg: the same plan objects (planNext's and samePlanDocs' memos hold on them).
  r.apply([{ table: GlobalTable.name, uuid: g._uuid as string, old: g, new: row({ ...g, desired_cfg: 7 }) }]);
  const edited = readStoreView(r);
  assert.equal(edited.desiredCfg, 7);
  assert.equal(edited.latest, first.latest);
  assert.equal(edited.latestConfig, first.latestConfig);
  // Negative control: Global.generation back to 1 is another plan.
  const g7 = r.get(GlobalTable.name, g._uuid as string)!;
  r.apply([
    { table: GlobalTable.name, uuid: g._uuid as string, old: g7, new: row({ ...g7, generation: 1 }) },
  ]);
  const back = readStoreView(r).latest!;
  assert.equal(back.number, 1);
  assert.equal(back.pools.get('a')!.members[0]!.address, '10.0.0.1');
});

test('publishing writes only the load balancers that changed; pruning deletes what only old plans used', () => {
  const r = twoGenerations();
  const latest = readGeneration(r)!;
  const count = (ops: ReturnType<typeof publishGenerationOps>, op: string, table: string) =>
    ops.filter((o) => o.op === op && (o as { table?: string }).table === table).length;

  // Same pools and documents: nothing but the Plan row (its base document shared) and Global.
  const same = publishGenerationOps(r, { number: 3, createdAt: 3000, pools: latest.pools }, 3, docs);
  assert.deepEqual(
    same.map((o) => `${o.op} ${(o as { table?: string }).table}`),
    ['wait Global', 'insert Plan', 'update Global'],
  );

  // b changes pool: one Plan_Pool, its row ended and a new one; a is not written.
  const pools = new Map(latest.pools).set('b', pool('b', '10.0.0.3'));
  const one = publishGenerationOps(r, { number: 3, createdAt: 3000, pools }, 3, docs);
  assert.equal(count(one, 'insert', 'Plan_Pool'), 1);
  assert.equal(count(one, 'insert', 'Plan_LB'), 1);
  assert.equal(count(one, 'update', 'Plan_LB'), 1);
  assert.equal(count(one, 'insert', 'Plan_Config'), 0);
  assert.match(JSON.stringify(one), /"lb1"/, "ends b's row by its UUID");
  assert.doesNotMatch(JSON.stringify(one), /"la2"/, 'a is not touched');

  // b's document changes alone: a new document, the same pool row.
  const changed = structuredClone(doc);
  changed.loadBalancers[1]!.vip = '198.18.0.3';
  const docOnly = publishGenerationOps(
    r,
    { number: 3, createdAt: 3000, pools: latest.pools },
    3,
    JSON.stringify(changed),
  );
  assert.equal(count(docOnly, 'insert', 'Plan_Config'), 1);
  assert.equal(count(docOnly, 'insert', 'Plan_Pool'), 0);
  assert.match(JSON.stringify(docOnly.find((o) => o.op === 'insert' && o.table === 'Plan_LB')), /"pb"/);

  // a leaves: its row ends, nothing is inserted for it (the base document changes: it lists the names).
  const gone = publishGenerationOps(
    r,
    { number: 3, createdAt: 3000, pools: new Map([['b', latest.pools.get('b')!]]) },
    3,
    splitPlanDocument({ ...doc, loadBalancers: [doc.loadBalancers[1]!] }),
  );
  assert.equal(count(gone, 'update', 'Plan_LB'), 1);
  assert.equal(count(gone, 'insert', 'Plan_LB'), 0);

  // Keeping generation 2 on: plan 1 goes, and a's first row (until 2), which only plan 1 used.
  assert.deepEqual(prunePlansOps(r, 2), [
    { op: 'delete', table: 'Plan', where: [['generation', '<', 2]] },
    {
      op: 'delete',
      table: 'Plan_LB',
      where: [
        ['until_generation', '>', 0],
        ['until_generation', '<=', 2],
      ],
    },
  ]);
  assert.deepEqual(prunePlansOps(r, 1), [], 'nothing older than generation 1');
});
