// sluice's desired state in a REAL ovsdb-server: desiredStateOps writes a config as the smallest transaction,
// readDesiredState reads it back from a monitor's replica. Private temp dir, child server stopped by its PID.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/model/schema.ts';
import type { Config } from '../../src/model/types.ts';
import { type Monitor, OvsdbClient } from '../../src/ovsdb/client.ts';
import { OvsdbError } from '../../src/ovsdb/errors.ts';
import type { RowChange } from '../../src/ovsdb/replica.ts';
import { type OvsdbServerProcess, startStandalone } from '../../src/ovsdb/server.ts';
import {
  BackendTable,
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  find,
  type GenerationRecord,
  GlobalTable,
  heartbeatOps,
  insert,
  isConflict,
  NodeHeartbeatTable,
  NodeStatusTable,
  nodeAck,
  nodeRowOps,
  PLAN_MONITOR,
  PlanConfigTable,
  PlanLbTable,
  PlanPoolTable,
  PlanTable,
  type PoolPlanRecord,
  planDocument,
  prunePlansOps,
  publishGenerationOps,
  REPORT_AT_KEY,
  readDesiredState,
  readGeneration,
  readPlanConfig,
  rows,
  STATUS_DB_NAME,
} from '../../src/store/db/index.ts';

const nodes = [
  { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
  { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
  { name: 'host2', role: 'host', tunnelIp: '192.168.100.12' },
];
const A = parseConfig({
  slotBits: 8,
  nodes,
  loadBalancers: [
    {
      name: 'web',
      vip: '203.0.113.10',
      ports: [80, 443],
      backends: [
        { address: '10.0.1.11', port: 8080, host: 'host1', mac: '02:00:0a:00:01:0b' },
        { address: '10.0.1.12', port: 8080, host: 'host2', weight: 2 },
        { address: '10.0.1.13', host: 'host2' },
      ],
    },
    {
      name: 'api',
      vip: '203.0.113.20',
      protocol: 'udp',
      ports: [53],
      healthCheck: { type: 'udp', send: 'ping', expect: 'reply', intervalMs: 500, fall: 2 },
      backends: [{ address: '10.0.2.1', host: 'host1' }],
    },
  ],
});
const B = parseConfig({
  slotBits: 10,
  drainWindowSeconds: 12.5,
  nodes: [...nodes, { name: 'gw2', role: 'gateway', tunnelIp: '192.168.100.2' }],
  loadBalancers: [
    {
      name: 'web',
      vip: '203.0.113.10',
      ports: [443, 8443],
      healthCheck: { type: 'https', port: 8443, path: '/healthz', status: 204 },
      backends: [
        { address: '10.0.1.11', port: 8080, host: 'host1', mac: '02:00:0a:00:01:0b' },
        {
          address: '10.0.1.12',
          port: 8080,
          host: 'host2',
          weight: 2,
          state: 'draining',
          mac: '02:00:0a:00:01:0c',
        },
        { address: '10.0.1.14', port: 8080, host: 'host1' },
      ],
    },
    {
      name: 'new',
      vip: '2001:db8::10',
      ports: [80],
      backends: [{ address: '2001:db8:1::1', host: 'host2' }],
    },
  ],
});

describe('desired state in ovsdb-server', () => {
  let dir: string;
  let srv: OvsdbServerProcess;
  let c: OvsdbClient;
  let m: Monitor;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ovsdb-store-'));
    srv = await startStandalone(dir);
    c = new OvsdbClient({ remotes: [srv.unixRemote] });
    m = await c.monitor(DB_NAME, DESIRED_STATE_MONITOR);
  });

  after(async () => {
    c?.close();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function apply(config: Config): Promise<number> {
    const ops = desiredStateOps(m.replica, config);
    if (ops.length > 0) await c.transact(DB_NAME, ...ops);
    return ops.length;
  }

  const stored = () => parseConfig(readDesiredState(m.replica).config);

  test('an empty store takes a config in one transaction and reads back equal', async () => {
    assert.ok((await apply(A)) > 0);
    assert.deepEqual(stored(), A);
    assert.equal(readDesiredState(m.replica).desiredCfg, 1);
    assert.equal(desiredStateOps(m.replica, A).length, 0, 'nothing to do when equal');
  });

  test('a change touches only what changed; unchanged backends keep their rows', async () => {
    const uuidOf = (address: string) => find(m.replica, BackendTable, (b) => b.address === address)?._uuid;
    const kept = ['10.0.1.11', '10.0.1.12'].map(uuidOf);
    const seen: RowChange[] = [];
    m.on('update', (ch: RowChange[]) => seen.push(...ch));
    await apply(B);
    assert.deepEqual(stored(), B);
    assert.equal(readDesiredState(m.replica).desiredCfg, 2);
    assert.deepEqual(['10.0.1.11', '10.0.1.12'].map(uuidOf), kept);
    // 10.0.1.11 did not change at all: no update mentions its row.
    assert.ok(!seen.some((ch) => ch.uuid === kept[0]));
    // Removed backends were garbage-collected with their references.
    assert.equal(uuidOf('10.0.1.13'), undefined);
    assert.equal(uuidOf('10.0.2.1'), undefined);
    assert.equal(rows(m.replica, BackendTable).length, 4);
    // Backend.mac (2.2.0): written, read back, and empty where the config gives none.
    const macOf = (address: string) => find(m.replica, BackendTable, (b) => b.address === address)?.mac;
    assert.deepEqual(['10.0.1.11', '10.0.1.12', '10.0.1.14'].map(macOf), [
      '02:00:0a:00:01:0b',
      '02:00:0a:00:01:0c',
      undefined,
    ]);
  });

  test('a transaction computed from a stale replica fails on its desired_cfg wait', async () => {
    const stale = desiredStateOps(m.replica, A);
    await apply(parseConfig({ ...readDesiredState(m.replica).config, slotBits: 12 }));
    await assert.rejects(
      c.transact(DB_NAME, ...stale),
      (e: unknown) =>
        e instanceof OvsdbError && e.opIndex === 0 && e.ovsdbError === 'timed out' && isConflict(e),
    );
    assert.equal(stored().slotBits, 12);
  });
});

/** A synthetic pool plan: `members` backends, slots dealt round robin, some slots in phase 2. */
function pool(lb: string, bits: number, members: number, salt: number): PoolPlanRecord {
  const n = 2 ** bits;
  const primary = new Uint16Array(n);
  const second = new Uint16Array(n).fill(0xffff);
  const phase = new Uint8Array(n);
  const since = new Float64Array(n);
  for (let s = 0; s < n; s++) {
    primary[s] = (s + salt) % members;
    if (s % 17 === salt % 17) {
      second[s] = (s + salt + 1) % members;
      phase[s] = 2;
      since[s] = 1_764_000_000_000 + s;
    }
  }
  return {
    lb,
    bits,
    members: Array.from({ length: members }, (_, i) => ({
      key: `10.1.${i >> 8}.${i & 255}:8080`,
      address: `10.1.${i >> 8}.${i & 255}`,
      port: 8080,
      host: `host${i % 4}`,
    })),
    primary,
    second,
    phase,
    since,
  };
}

describe('plans and node status in ovsdb-server', () => {
  let dir: string;
  let srv: OvsdbServerProcess;
  let planner: OvsdbClient;
  let agent: OvsdbClient;
  let pm: Monitor;
  let am: Monitor;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ovsdb-plans-'));
    srv = await startStandalone(dir);
    planner = new OvsdbClient({ remotes: [srv.unixRemote] });
    agent = new OvsdbClient({ remotes: [srv.tcpRemote] });
    await planner.transact(
      DB_NAME,
      insert(GlobalTable, { hash_mode: 'dp_hash', slot_bits: 8, drain_window: 300, desired_cfg: 1 }),
    );
    pm = await planner.monitor(DB_NAME, { ...PLAN_MONITOR, Node_Status: {} });
    am = await agent.monitor(DB_NAME, PLAN_MONITOR);
  });

  after(async () => {
    planner?.close();
    agent?.close();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('1000 pools x 256 slots x 20 members: published once, shared when unchanged, pruned', async () => {
    const pools = new Map(Array.from({ length: 1000 }, (_, i) => [`vip${i}`, pool(`vip${i}`, 8, 20, i)]));
    const g1: GenerationRecord = { number: 1, createdAt: 1_764_000_000_500, pools };
    let t = performance.now();
    // The config document (1.6 MB at 1000 VIPs x 20 backends) is stored once per load balancer (Plan_LB.config) and
    // shared by the generations that do not change it, not repeated in every plan.
    const doc = JSON.stringify({
      loadBalancers: [...pools.keys()].map((name) => ({ name, pad: 'x'.repeat(1600) })),
    });
    const ops = desiredOpsBytes(publishGenerationOps(pm.replica, g1, 1, doc));
    const buildMs = performance.now() - t;
    t = performance.now();
    await planner.transact(DB_NAME, ...ops.ops);
    const commitMs = performance.now() - t;
    await eventually(() => readGeneration(am.replica)?.number === 1);
    const seenMs = performance.now() - t;
    const got = readGeneration(am.replica)!;
    assert.equal(got.desiredCfg, 1);
    assert.equal(got.pools.size, 1000);
    assert.deepEqual(got.pools.get('vip7'), pools.get('vip7'));
    assert.deepEqual(got.pools.get('vip999'), pools.get('vip999'));

    // Generation 2 changes one pool: one Plan_Pool row and one Plan_LB row (its predecessor ended), nothing for the
    // other 999 load balancers and no document: bytes proportional to the one pool, not to the 1000.
    const pools2 = new Map(pools);
    pools2.set('vip3', pool('vip3', 8, 20, 4));
    const ops2 = publishGenerationOps(
      pm.replica,
      { number: 2, createdAt: 1_764_000_001_000, pools: pools2 },
      2,
      doc,
    );
    const count = (o: typeof ops2, op: string, table: string) =>
      o.filter((x) => x.op === op && (x as { table?: string }).table === table).length;
    assert.equal(count(ops2, 'insert', 'Plan_Pool'), 1);
    assert.equal(count(ops2, 'insert', 'Plan_LB'), 1);
    assert.equal(count(ops2, 'update', 'Plan_LB'), 1);
    assert.equal(count(ops2, 'insert', 'Plan_Config'), 0);
    const bytes2 = Buffer.byteLength(JSON.stringify(ops2));
    assert.ok(bytes2 < 10_000, `generation 2 is ${bytes2} bytes of operations`);
    t = performance.now();
    await planner.transact(DB_NAME, ...ops2);
    const commit2Ms = performance.now() - t;
    await eventually(() => readGeneration(am.replica)?.number === 2);
    assert.deepEqual(readGeneration(am.replica)!.pools.get('vip3'), pools2.get('vip3'));
    assert.equal(readGeneration(am.replica)!.pools.size, 1000);
    assert.equal(readGeneration(am.replica, 1)!.pools.get('vip3')!.primary[0], pools.get('vip3')!.primary[0]);
    assert.equal(rows(am.replica, PlanPoolTable).length, 1001);
    assert.equal(rows(am.replica, PlanLbTable).length, 1001);
    assert.equal(rows(am.replica, PlanConfigTable).length, 1001); // the base document and one per load balancer
    assert.deepEqual(planDocument(readPlanConfig(am.replica, 2)!.docs), JSON.parse(doc));
    assert.equal(readPlanConfig(am.replica, 2)!.ref, readPlanConfig(am.replica, 1)!.ref);

    // A publisher working from a stale replica (generation moved on) is refused.
    await assert.rejects(
      planner.transact(DB_NAME, ...ops2),
      (e: unknown) => e instanceof OvsdbError && e.opIndex === 0 && e.ovsdbError === 'timed out',
    );

    await planner.transact(DB_NAME, ...prunePlansOps(pm.replica, 2));
    await eventually(() => rows(am.replica, PlanTable).length === 1);
    await eventually(() => rows(am.replica, PlanPoolTable).length === 1000);
    assert.equal(rows(am.replica, PlanLbTable).length, 1000);
    assert.equal(readGeneration(am.replica)!.number, 2);
    assert.equal(rows(am.replica, PlanConfigTable).length, 1001);
    // One load balancer's document changes: one new document and Plan_LB row; once no kept plan uses the old row,
    // ovsdb-server collects its document.
    const ref2 = readPlanConfig(am.replica, 2)!.ref;
    const changed = JSON.parse(doc) as { loadBalancers: { name: string; pad: string }[] };
    changed.loadBalancers[3]!.pad = 'y';
    const ops3 = publishGenerationOps(
      pm.replica,
      { number: 3, createdAt: 1_764_000_002_000, pools: pools2 },
      3,
      JSON.stringify(changed),
    );
    assert.equal(count(ops3, 'insert', 'Plan_Config'), 1);
    assert.equal(count(ops3, 'insert', 'Plan_Pool'), 0);
    await planner.transact(DB_NAME, ...ops3);
    await eventually(() => rows(am.replica, PlanConfigTable).length === 1002);
    await planner.transact(DB_NAME, ...prunePlansOps(pm.replica, 3));
    await eventually(() => rows(am.replica, PlanConfigTable).length === 1001);
    assert.deepEqual(planDocument(readPlanConfig(am.replica, 3)!.docs), changed);
    assert.notEqual(readPlanConfig(am.replica, 3)!.ref, ref2);
    console.log(
      `# publish 1000 pools x 256 slots: ${(ops.bytes / 1e6).toFixed(2)} MB JSON, build ${Math.round(buildMs)} ms, ` +
        `commit ${Math.round(commitMs)} ms, seen by a monitoring agent after ${Math.round(seenMs)} ms; ` +
        `generation 2 with one changed pool: ${bytes2} bytes, commit ${Math.round(commit2Ms)} ms`,
    );
  });

  test('node status and heartbeat (two databases): inserted once, then updated in place', async () => {
    const ack = {
      node: 'gw1',
      appliedGeneration: 1,
      appliedCfg: 1,
      appliedAt: 1000,
      error: undefined,
    };
    // Sluice: the row of the fence marks, inserted once.
    await planner.transact(DB_NAME, ...nodeRowOps(pm.replica, 'gw1'));
    assert.deepEqual(nodeRowOps(pm.replica, 'gw1'), []);
    assert.equal(rows(pm.replica, NodeStatusTable).length, 1);
    // Sluice_Status: the heartbeat with the acknowledgement, inserted, then updated; a key left out keeps its value
    // (report_at), a heartbeat without an ack keeps the ack.
    const beats = await planner.monitor(STATUS_DB_NAME, { Node_Heartbeat: {} });
    await planner.transact(
      STATUS_DB_NAME,
      ...heartbeatOps(beats.replica, 'gw1', 1000, { role: 'gateway', reportAt: '900' }, ack),
    );
    await planner.transact(
      STATUS_DB_NAME,
      ...heartbeatOps(
        beats.replica,
        'gw1',
        2000,
        { role: 'gateway' },
        { ...ack, appliedGeneration: 2, error: 'bundle rejected' },
      ),
    );
    const beatRows = rows(beats.replica, NodeHeartbeatTable);
    assert.equal(beatRows.length, 1);
    assert.equal(beatRows[0]!.heartbeat_at, 2000);
    assert.equal(beatRows[0]!.applied_generation, 2);
    assert.equal(beatRows[0]!.error, 'bundle rejected');
    assert.equal(beatRows[0]!.external_ids.get(REPORT_AT_KEY), '900');
    await planner.transact(
      STATUS_DB_NAME,
      ...heartbeatOps(beats.replica, 'gw1', 3000, { role: 'gateway' }, { ...ack, appliedGeneration: 3 }),
    );
    await planner.transact(STATUS_DB_NAME, ...heartbeatOps(beats.replica, 'gw1', 4000, { role: 'gateway' }));
    const [beat] = rows(beats.replica, NodeHeartbeatTable);
    assert.equal(beat!.applied_generation, 3);
    assert.equal(beat!.error, undefined);
    assert.equal(nodeAck(undefined, beat)?.appliedGeneration, 3);
  });
});

function desiredOpsBytes<T>(ops: T[]): { ops: T[]; bytes: number } {
  return { ops, bytes: Buffer.byteLength(JSON.stringify(ops)) };
}

async function eventually(fn: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
