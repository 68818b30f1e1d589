// The OVSDB client against a REAL ovsdb-server (Debian's), serving schema/sluice.ovsschema. Every server runs as
// a child process with all its files in a private temp dir; the tests stop only the PIDs they started and
// remove the dir. No namespaces: works as root and unprivileged.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type Monitor, OvsdbClient, type OvsdbClientOptions } from '../../src/ovsdb/client.ts';
import { OvsdbError } from '../../src/ovsdb/errors.ts';
import {
  type DatabaseSchema,
  decodeRow,
  encodeRow,
  type Insert,
  type JsRow,
  namedUuid,
  type Row,
  type SelectResult,
  type Wait,
} from '../../src/ovsdb/protocol.ts';
import type { RowChange } from '../../src/ovsdb/replica.ts';
import {
  createDatabase,
  type OvsdbServerProcess,
  schemaName,
  sluiceSchemaPath,
  sluiceStatusSchemaPath,
  startCluster,
  startStandalone,
} from '../../src/ovsdb/server.ts';
import { agentMonitor, SCHEMA_NEEDS, STATUS_DB_HINT, splitMonitor } from '../../src/store/db/index.ts';

const run = promisify(execFile);
const DB = schemaName(sluiceSchemaPath());

async function eventually<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(25);
  }
}

/** Inserts a Node row (most tests here need a row, any row, in a real table). */
function insertNode(name: string, role: string, tunnelIp: string): Insert {
  return { op: 'insert', table: 'Node', row: { name, role, tunnel_ip: tunnelIp } };
}

const clients: OvsdbClient[] = [];
function client(opts: OvsdbClientOptions): OvsdbClient {
  const c = new OvsdbClient({ backoffInitialMs: 50, backoffMaxMs: 500, waitConnectedMs: 15_000, ...opts });
  clients.push(c);
  return c;
}

/** Every row of `tables` on the server, decoded like the replica holds them. */
async function serverState(
  c: OvsdbClient,
  schema: DatabaseSchema,
  tables: string[],
): Promise<Record<string, unknown>> {
  const res = (await c.transact(
    DB,
    ...tables.map((table) => ({ op: 'select' as const, table, where: [] })),
  )) as SelectResult[];
  const out: Record<string, Record<string, JsRow>> = {};
  tables.forEach((t, i) => {
    out[t] = {};
    for (const row of res[i]!.rows) {
      const r = decodeRow(schema.tables[t]!, row, true) as Record<string, unknown>;
      delete r._version;
      out[t][r._uuid as string] = r as JsRow;
    }
  });
  return normalize(out);
}

function replicaState(m: Monitor, tables: string[]): Record<string, unknown> {
  const out: Record<string, Record<string, JsRow>> = {};
  for (const t of tables) {
    out[t] = {};
    for (const row of m.replica.rows(t)) {
      const r = { ...row } as Record<string, unknown>;
      delete r._version;
      out[t][r._uuid as string] = r as JsRow;
    }
  }
  return normalize(out);
}

/** Maps as sorted entries and sets sorted, so two states compare with deepEqual. */
function normalize(x: Record<string, Record<string, JsRow>>): Record<string, unknown> {
  const norm = (v: unknown): unknown =>
    v instanceof Map ? [...v.entries()].sort() : Array.isArray(v) ? [...v].sort() : v;
  return Object.fromEntries(
    Object.entries(x).map(([t, rows]) => [
      t,
      Object.fromEntries(
        Object.entries(rows).map(([u, r]) => [
          u,
          Object.fromEntries(Object.entries(r).map(([k, v]) => [k, norm(v)])),
        ]),
      ),
    ]),
  );
}

const backendRow = (schema: DatabaseSchema, address: string, port: number | undefined, host: string): Row =>
  encodeRow(schema.tables.Backend!, { address, port, host, weight: 1, admin_state: 'active' });

describe('ovsdb client against a real ovsdb-server', () => {
  let dir: string;
  let srv: OvsdbServerProcess;
  let schema: DatabaseSchema;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ovsdb-e2e-'));
    srv = await startStandalone(dir);
    schema = await client({ remotes: [srv.unixRemote] }).getSchema(DB);
  });

  after(async () => {
    for (const c of clients) c.close();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('schema/sluice.ovsschema is valid for ovsdb-tool and served as written', async () => {
    const db = join(dir, 'check.db');
    await createDatabase(db);
    const { stdout } = await run('ovsdb-tool', ['db-version', db]);
    const file = JSON.parse(readFileSync(sluiceSchemaPath(), 'utf8')) as DatabaseSchema;
    assert.equal(stdout.trim(), file.version);
    // A broken schema is rejected: the check can fail.
    const bad = join(dir, 'bad.ovsschema');
    writeFileSync(bad, JSON.stringify({ ...file, tables: { T: { columns: { c: { type: 'nope' } } } } }));
    await assert.rejects(createDatabase(join(dir, 'bad.db'), bad), /SLUICE_E_IO|ovsdb-tool/);
    const c = client({ remotes: [srv.unixRemote] });
    // Every sluice store serves its status database next to Sluice (docs/design/ovsdb.md, "Two databases").
    assert.deepEqual((await c.listDbs()).sort(), ['Sluice', 'Sluice_Status', '_Server']);
    schema = await c.getSchema(DB);
    assert.equal(schema.version, file.version);
    assert.deepEqual(Object.keys(schema.tables).sort(), Object.keys(file.tables).sort());
    const statusFile = JSON.parse(readFileSync(sluiceStatusSchemaPath(), 'utf8')) as DatabaseSchema;
    const status = await c.getSchema('Sluice_Status');
    assert.equal(status.version, statusFile.version);
    assert.deepEqual(Object.keys(status.tables).sort(), Object.keys(statusFile.tables).sort());
  });

  test('a store whose Sluice_Status predates the acknowledgements (1.0.0) is refused with what to do', async () => {
    // Sluice_Status 1.0.0: the schema file without Node_Heartbeat's acknowledgement columns (1.1.0).
    const d = mkdtempSync(join(dir, 'status10-'));
    const s10 = JSON.parse(readFileSync(sluiceStatusSchemaPath(), 'utf8'));
    s10.version = '1.0.0';
    for (const c of ['applied_generation', 'applied_cfg', 'applied_at', 'error'])
      delete s10.tables.Node_Heartbeat.columns[c];
    writeFileSync(join(d, 'status-1.0.0.ovsschema'), JSON.stringify(s10));
    const old = await startStandalone(d, [sluiceSchemaPath(), join(d, 'status-1.0.0.ovsschema')], 'old');
    try {
      const c = client({ remotes: [old.unixRemote] });
      await assert.rejects(
        c.monitorDatabases(splitMonitor(agentMonitor('host1')), STATUS_DB_HINT, SCHEMA_NEEDS),
        (e: unknown) =>
          e instanceof OvsdbError &&
          /database Sluice_Status is at schema 1\.0\.0, this sluice needs 1\.1\.0 or later: .*upgrade the store/.test(
            e.message,
          ),
      );
      // Negative control: the same request against a store of this version.
      const ok = await client({ remotes: [srv.unixRemote] }).monitorDatabases(
        splitMonitor(agentMonitor('host1')),
        STATUS_DB_HINT,
        SCHEMA_NEEDS,
      );
      assert.equal(ok.of('Sluice_Status')?.schema?.version, '1.1.0');
    } finally {
      await old.stop();
    }
  });

  test('a store without Sluice_Status (made before 3.0.0) is refused with what to do; nothing is monitored', async () => {
    const old = await startStandalone(mkdtempSync(join(dir, 'old-')), sluiceSchemaPath(), 'old');
    try {
      const c = client({ remotes: [old.unixRemote] });
      await assert.rejects(
        c.monitorDatabases(splitMonitor(agentMonitor('host1')), STATUS_DB_HINT),
        (e: unknown) =>
          e instanceof OvsdbError &&
          /does not serve database Sluice_Status \(it serves Sluice\): .*upgrade the store first/.test(
            e.message,
          ),
      );
      // Negative control: the same request against a store of this version.
      const ok = await client({ remotes: [srv.unixRemote] }).monitorDatabases(
        splitMonitor(agentMonitor('host1')),
      );
      assert.deepEqual(
        ok.monitors.map((m) => m.db),
        ['Sluice', 'Sluice_Status'],
      );
    } finally {
      await old.stop();
    }
  });

  test('transact: insert with named-uuid references, select, update, mutate, delete', async () => {
    const c = client({ remotes: [srv.tcpRemote] });
    const lbT = schema.tables.Load_Balancer!;
    const res = await c.transact(
      DB,
      { op: 'insert', table: 'Backend', row: backendRow(schema, '10.0.0.1', 80, 'h1'), 'uuid-name': 'b1' },
      {
        op: 'insert',
        table: 'Backend',
        row: backendRow(schema, '10.0.0.2', undefined, 'h2'),
        'uuid-name': 'b2',
      },
      {
        op: 'insert',
        table: 'Load_Balancer',
        row: {
          ...encodeRow(lbT, { name: 'web', vip: '192.0.2.10', protocol: 'tcp', ports: [80] }),
          backends: ['set', [namedUuid('b1'), namedUuid('b2')]],
        },
        'uuid-name': 'lb',
      },
      {
        op: 'insert',
        table: 'Global',
        row: encodeRow(schema.tables.Global!, { hash_mode: 'dp_hash', slot_bits: 8, drain_window: 30 }),
      },
    );
    const [b1, b2, lb] = res.map((r) => (r as { uuid: [string, string] }).uuid[1]);
    const sel = (
      await c.transact(DB, { op: 'select', table: 'Load_Balancer', where: [['name', '==', 'web']] })
    )[0] as SelectResult;
    assert.equal(sel.rows.length, 1);
    const row = decodeRow(lbT, sel.rows[0]!);
    assert.equal(row._uuid, lb);
    assert.deepEqual([...(row.backends as string[])].sort(), [b1, b2].sort());
    assert.deepEqual(row.ports, [80]);

    const upd = await c.transact(DB, {
      op: 'update',
      table: 'Backend',
      where: [['_uuid', '==', ['uuid', b2!]]],
      row: encodeRow(schema.tables.Backend!, { weight: 5, admin_state: 'draining' }),
    });
    assert.deepEqual(upd, [{ count: 1 }]);
    const mut = await c.transact(
      DB,
      {
        op: 'mutate',
        table: 'Load_Balancer',
        where: [['name', '==', 'web']],
        mutations: [['ports', 'insert', ['set', [443, 8080]]]],
      },
      { op: 'mutate', table: 'Global', where: [], mutations: [['desired_cfg', '+=', 1]] },
    );
    assert.deepEqual(mut, [{ count: 1 }, { count: 1 }]);
    const after = (await c.transact(
      DB,
      { op: 'select', table: 'Load_Balancer', where: [], columns: ['ports'] },
      { op: 'select', table: 'Global', where: [], columns: ['desired_cfg'] },
      {
        op: 'select',
        table: 'Backend',
        where: [['_uuid', '==', ['uuid', b2!]]],
        columns: ['weight', 'admin_state', 'port'],
      },
    )) as SelectResult[];
    assert.deepEqual(
      [...(decodeRow(lbT, after[0]!.rows[0]!).ports as number[])].sort((a, b) => a - b),
      [80, 443, 8080],
    );
    assert.equal(after[1]!.rows[0]!.desired_cfg, 1);
    assert.deepEqual(decodeRow(schema.tables.Backend!, after[2]!.rows[0]!), {
      weight: 5,
      admin_state: 'draining',
      port: undefined,
    });

    // Deleting the load balancer garbage-collects its (non-root) backends.
    assert.deepEqual(
      await c.transact(DB, { op: 'delete', table: 'Load_Balancer', where: [['name', '==', 'web']] }),
      [{ count: 1 }],
    );
    const left = (await c.transact(DB, { op: 'select', table: 'Backend', where: [] }))[0] as SelectResult;
    assert.equal(left.rows.length, 0);
  });

  test('a failing wait, a failing op and a commit-time violation surface with op index and ovsdb error', async () => {
    const c = client({ remotes: [srv.unixRemote] });
    /** A wait (no timeout) that holds while Global's desired_cfg is `n`. */
    const desiredCfgIs = (n: number): Wait => ({
      op: 'wait',
      timeout: 0,
      table: 'Global',
      where: [],
      columns: ['desired_cfg'],
      until: '==',
      rows: [{ desired_cfg: n }],
    });
    const err = await c.transact(DB, insertNode('gw1', 'gateway', '172.16.0.1'), desiredCfgIs(999)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof OvsdbError, String(err));
    assert.equal(err.code, 'SLUICE_E_OVSDB_TRANSACTION');
    assert.equal(err.opIndex, 1);
    assert.equal(err.ovsdbError, 'timed out');
    // The transaction is atomic: the insert before the failing wait did not happen.
    const nodes = (await c.transact(DB, { op: 'select', table: 'Node', where: [] }))[0] as SelectResult;
    assert.equal(nodes.rows.length, 0);

    await assert.rejects(
      c.transact(DB, insertNode('n', 'router', '1.1.1.1')),
      (e: unknown) => e instanceof OvsdbError && e.opIndex === 0 && e.ovsdbError === 'constraint violation',
    );
    // Two nodes with one name: the index makes the commit fail, reported after the last op.
    await assert.rejects(
      c.transact(DB, insertNode('dup', 'host', '172.16.0.2'), insertNode('dup', 'host', '172.16.0.3')),
      (e: unknown) => e instanceof OvsdbError && e.opIndex === 2 && e.ovsdbError === 'constraint violation',
    );
    // A wait that holds lets the transaction through.
    await c.transact(DB, desiredCfgIs(1), {
      op: 'mutate',
      table: 'Global',
      where: [],
      mutations: [['desired_cfg', '+=', 1]],
    });
  });

  for (const method of ['monitor_cond', 'monitor'] as const) {
    test(`${method}: initial snapshot, then insert, modify and delete updates; replica equals the server`, async () => {
      const writer = client({ remotes: [srv.unixRemote] });
      const reader = client({ remotes: [srv.tcpRemote] });
      await writer.transact(DB, insertNode(`pre-${method}`, 'host', '172.16.1.1'));
      const m = await reader.monitor(DB, { Node: {}, Node_Status: {} }, method);
      assert.ok(
        m.replica.find('Node', (r) => r.name === `pre-${method}`),
        'snapshot has the existing row',
      );
      const seen: RowChange[] = [];
      m.on('update', (changes: RowChange[]) => seen.push(...changes));

      const [ins] = await writer.transact(DB, {
        op: 'insert',
        table: 'Node',
        row: {
          name: `n-${method}`,
          role: 'gateway',
          tunnel_ip: '172.16.1.2',
          external_ids: ['map', [['rack', 'a']]],
        },
      });
      const u = (ins as { uuid: [string, string] }).uuid[1];
      await eventually('insert update', () => seen.some((c) => c.uuid === u && c.old === undefined));
      assert.deepEqual(m.replica.get('Node', u)!.external_ids, new Map([['rack', 'a']]));

      await writer.transact(DB, {
        op: 'mutate',
        table: 'Node',
        where: [['_uuid', '==', ['uuid', u]]],
        mutations: [
          ['external_ids', 'insert', ['map', [['zone', 'z1']]]],
          ['external_ids', 'delete', ['set', ['rack']]],
        ],
      });
      await writer.transact(DB, {
        op: 'update',
        table: 'Node',
        where: [['_uuid', '==', ['uuid', u]]],
        row: { tunnel_ip: '172.16.1.3' },
      });
      await eventually('modify update', () => m.replica.get('Node', u)?.tunnel_ip === '172.16.1.3');
      const mod = seen.filter((c) => c.uuid === u && c.old !== undefined && c.new !== undefined);
      assert.ok(mod.length >= 2);
      assert.deepEqual(m.replica.get('Node', u)!.external_ids, new Map([['zone', 'z1']]));

      await writer.transact(DB, { op: 'delete', table: 'Node', where: [['_uuid', '==', ['uuid', u]]] });
      await eventually('delete update', () => seen.some((c) => c.uuid === u && c.new === undefined));
      assert.equal(m.replica.get('Node', u), undefined);
      assert.deepEqual(
        replicaState(m, ['Node', 'Node_Status']),
        await serverState(writer, schema, ['Node', 'Node_Status']),
      );

      await m.cancel();
      await writer.transact(DB, insertNode(`late-${method}`, 'host', '172.16.1.9'));
      await sleep(200);
      assert.equal(
        m.replica.find('Node', (r) => r.name === `late-${method}`),
        undefined,
        'no updates after monitor_cancel',
      );
    });
  }

  test('monitor_cond with a where clause only replicates matching rows', async () => {
    const c = client({ remotes: [srv.unixRemote] });
    const m = await c.monitor(DB, {
      Node: { where: [['role', '==', 'gateway']], columns: ['name', 'role'] },
    });
    await c.transact(
      DB,
      insertNode('gw-w', 'gateway', '172.16.2.1'),
      insertNode('host-w', 'host', '172.16.2.2'),
    );
    await eventually('gateway row', () => m.replica.find('Node', (r) => r.name === 'gw-w'));
    assert.equal(
      m.replica.find('Node', (r) => r.role === 'host'),
      undefined,
    );
    assert.deepEqual(Object.keys(m.replica.find('Node', (r) => r.name === 'gw-w')!).sort(), [
      '_uuid',
      'name',
      'role',
    ]);
  });

  test('locks: one holder, waiters queue, unlock hands over, steal and disconnect', async () => {
    const [a, b, s] = [
      client({ remotes: [srv.unixRemote] }),
      client({ remotes: [srv.tcpRemote] }),
      client({ remotes: [srv.unixRemote] }),
    ];
    const la = await a.lock('planner');
    const lb = await b.lock('planner');
    assert.equal(la.state, 'held');
    assert.equal(lb.state, 'waiting');
    // assert op: only the holder may commit a transaction that asserts the lock.
    await a.transact(DB, { op: 'assert', lock: 'planner' }, { op: 'comment', comment: 'holder' });
    await assert.rejects(
      b.transact(DB, { op: 'assert', lock: 'planner' }),
      (e: unknown) => e instanceof OvsdbError && e.ovsdbError === 'not owner',
    );

    await la.unlock();
    await lb.waitHeld(5000);
    assert.equal(la.state, 'unlocked');

    const reasons: string[] = [];
    lb.on('state', (st: string, why: string) => reasons.push(`${st}:${why}`));
    const ls = await s.steal('planner');
    assert.equal(ls.state, 'held');
    await eventually('stolen', () => lb.state === 'waiting');
    assert.deepEqual(reasons, ['waiting:stolen']);
    // ovsdb-server keeps the victim queued: when the thief lets go, the victim gets it back.
    await ls.unlock();
    await lb.waitHeld(5000);

    // The holder's session dies: the lock passes to the next waiter.
    const la2 = await a.lock('planner');
    assert.equal(la2.state, 'waiting');
    b.close();
    await la2.waitHeld(5000);
  });

  test('echo: the server probes an idle TCP session, we answer and stay connected', async () => {
    const c = client({ remotes: [srv.tcpRemote], probeIntervalMs: 0 });
    await c.connect();
    // ovsdb-server's default inactivity probe for TCP sessions is 5 s: idle for longer than two probes.
    await eventually('server echo', () => c.serverEchoes >= 2, 20_000);
    assert.equal(c.state, 'connected');
    assert.equal(c.connects, 1);
    assert.deepEqual((await c.listDbs()).sort(), ['Sluice', 'Sluice_Status', '_Server']);
  });

  test('echo: our own probe detects a frozen server and reconnects once it is back', async () => {
    const c = client({ remotes: [srv.unixRemote], probeIntervalMs: 200 });
    await c.connect();
    const m = await c.monitor(DB, { Node: {} });
    srv.signal('SIGSTOP');
    try {
      const t0 = performance.now();
      await eventually('dead peer detected', () => c.state !== 'connected', 5000);
      const detectMs = performance.now() - t0;
      assert.ok(detectMs < 2000, `detected after ${detectMs} ms`);
    } finally {
      srv.signal('SIGCONT');
    }
    await eventually('reconnected', () => c.state === 'connected' && c.connects >= 2, 10_000);
    assert.deepEqual(replicaState(m, ['Node']), await serverState(c, schema, ['Node']));
  });

  test('server killed and restarted: the client reconnects, re-monitors, emits the difference, re-takes its lock', async () => {
    const c = client({ remotes: [srv.unixRemote, srv.tcpRemote] });
    const m = await c.monitor(DB, { Node: {}, Load_Balancer: {}, Backend: {} });
    await c.transact(DB, insertNode('doomed', 'host', '172.16.9.8'));
    const lock = await c.lock('restart_lock');
    assert.equal(lock.state, 'held');
    const before = m.replica.rows('Node').length;
    const resyncs: RowChange[][] = [];
    m.on('update', (changes: RowChange[], info: { resync: boolean }) => {
      if (info.resync) resyncs.push(changes);
    });

    const states: string[] = [];
    c.on('state', (to: string) => states.push(to));
    await srv.stop('SIGKILL');
    await eventually('client noticed', () => c.state !== 'connected');
    assert.equal(lock.state, 'waiting');
    // While the server is down, change the database file directly (ovsdb-tool transact works on an unserved file).
    const dbFile = srv.options.dbFiles[0]!;
    await run('ovsdb-tool', [
      'transact',
      dbFile,
      JSON.stringify([
        DB,
        insertNode('offline', 'host', '172.16.9.9'),
        { op: 'delete', table: 'Node', where: [['name', '==', 'doomed']] },
      ]),
    ]);
    const pending = c.transact(DB, insertNode('queued', 'host', '172.16.9.10'));
    await srv.start();
    await pending; // a request issued while disconnected waits for the reconnect
    await eventually('reconnected', () => c.state === 'connected');
    // connected -> backoff -> (connecting -> backoff)* -> connecting -> negotiating -> connected
    assert.match(states.join(' '), /^backoff (connecting backoff )*connecting negotiating connected$/);
    await lock.waitHeld(5000);
    await eventually('resync', () => m.replica.find('Node', (r) => r.name === 'queued'));
    const diff = resyncs.flat();
    assert.ok(
      diff.some((ch) => ch.new?.name === 'offline' && ch.old === undefined),
      'resync reports the offline insert',
    );
    assert.ok(
      diff.some((ch) => ch.old?.name === 'doomed' && ch.new === undefined),
      'resync reports the offline delete',
    );
    assert.ok(
      !diff.some((ch) => ch.old !== undefined && ch.new !== undefined),
      'unchanged rows are not reported',
    );
    assert.equal(m.resumes, 0, 'a restarted standalone server has no transaction history: a fresh snapshot');
    assert.equal(m.replica.rows('Node').length, before + 1); // +doomed -doomed +offline +queued
    assert.deepEqual(
      replicaState(m, ['Node', 'Load_Balancer', 'Backend']),
      await serverState(c, schema, ['Node', 'Load_Balancer', 'Backend']),
    );
  });

  test('a monitor the server refuses fails alone; the session stays up', async () => {
    const c = client({ remotes: [srv.unixRemote] });
    await assert.rejects(
      c.monitor(DB, { No_Such_Table: {} }),
      (e: unknown) => e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_VALUE',
    );
    await assert.rejects(
      c.monitor(DB, { Node: { where: [['no_such_column', '==', 1]] } }),
      (e: unknown) => e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_RPC',
    );
    assert.equal(c.state, 'connected');
    assert.equal(c.connects, 1);
    const m = await c.monitor(DB, { Node: {} });
    assert.ok(m.replica.rows('Node').length > 0);
  });

  test('requests fail with SLUICE_E_OVSDB_CONNECT when no remote answers, and with CLOSED after close()', async () => {
    const c = client({ remotes: [`unix:${join(dir, 'nobody.sock')}`], waitConnectedMs: 300 });
    await assert.rejects(
      c.listDbs(),
      (e: unknown) => e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_CONNECT',
    );
    c.close();
    await assert.rejects(
      c.listDbs(),
      (e: unknown) => e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_CLOSED',
    );
    assert.equal(c.state, 'closed');
  });
});

describe('ovsdb client against a 3-member Raft cluster', () => {
  let dir: string;
  let cluster: Awaited<ReturnType<typeof startCluster>>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ovsdb-raft-'));
    cluster = await startCluster(dir, 3);
  });

  after(async () => {
    for (const c of clients) c.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Restarts every stopped member and waits until each sees a leader. */
  async function reviveAll(): Promise<void> {
    for (const mem of cluster.members) if (!mem.running) await mem.start();
    for (const mem of cluster.members) {
      await eventually(
        'member rejoined',
        async () => /Leader: (?!unknown)/.test(await mem.appctl('cluster/status', DB)),
        20_000,
      );
    }
  }

  /** Retries a write across a leader election (a follower may answer "not leader" style errors meanwhile). */
  const retried: string[] = [];
  async function retry<T>(fn: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        retried.push((e as Error).message);
        if (Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
  }

  test('kill the member a client uses: it moves to another member, reads and writes go on, replica resyncs', async () => {
    const c = client({ remotes: cluster.remotes, database: DB });
    const leaderClient = client({ remotes: cluster.tcpRemotes, database: DB, leaderOnly: true });
    await c.connect();
    await leaderClient.connect();
    assert.equal(leaderClient.serverRow?.leader, true);
    assert.equal(leaderClient.serverRow?.model, 'clustered');
    const m = await c.monitor(DB, { Node: {} });
    await c.transact(DB, insertNode('before', 'host', '172.17.0.1'));
    await eventually('replicated', () => m.replica.find('Node', (r) => r.name === 'before'));

    const used = cluster.members.find((mem) => mem.unixRemote === c.remote)!;
    const firstRemote = c.remote;
    const t0 = performance.now();
    await used.stop('SIGKILL');
    await eventually('moved', () => c.state === 'connected' && c.remote !== firstRemote, 20_000);
    const movedMs = performance.now() - t0;

    await retry(() => c.transact(DB, insertNode('after', 'host', '172.17.0.2')));
    const writeMs = performance.now() - t0;
    await retry(() => leaderClient.transact(DB, insertNode('via-leader', 'gateway', '172.17.0.3')));
    await eventually('replica has both', () =>
      ['before', 'after', 'via-leader'].every((n) => m.replica.find('Node', (r) => r.name === n)),
    );
    const schema = m.schema!;
    let last = '';
    await eventually('replica equals a surviving member', async () => {
      const [mine, theirs] = [replicaState(m, ['Node']), await serverState(c, schema, ['Node'])];
      last = `replica ${JSON.stringify(mine)}\nserver  ${JSON.stringify(theirs)}`;
      assert.deepEqual(mine, theirs);
      return true;
    }).catch((e: Error) => {
      throw new Error(`${e.message}\n${last}`);
    });
    // The other member shares the Raft log: the monitor resumed from its last transaction (monitor_cond_since),
    // no snapshot; the replica still equals the server (above). The standalone restart above is the contrast.
    assert.ok(m.resumes >= 1, `the monitor resumed on the other member (resumes: ${m.resumes})`);
    const names = (
      (await c.transact(DB, { op: 'select', table: 'Node', where: [], columns: ['name'] }))[0] as SelectResult
    ).rows
      .map((r) => r.name)
      .sort();
    assert.deepEqual(names, ['after', 'before', 'via-leader']);
    assert.equal(leaderClient.serverRow?.leader, true);
    console.log(
      `# raft failover: reconnected after ${Math.round(movedMs)} ms, first write after ${Math.round(writeMs)} ms; retried: ${JSON.stringify([...new Set(retried)])}`,
    );
  });

  test('leaderOnly planners contend for one lock on the leader; killing the leader hands it to the new leader', async () => {
    // Bring the member the previous test killed back: it rejoins from its own file (3 members again, so losing
    // the leader next still leaves a majority).
    await reviveAll();
    const alive = cluster.members;
    const remotes = alive.map((mem) => mem.unixRemote);
    const p1 = client({ remotes, database: DB, leaderOnly: true });
    const p2 = client({ remotes: [...remotes].reverse(), database: DB, leaderOnly: true });
    const l1 = await p1.lock('planner');
    const l2 = await p2.lock('planner');
    assert.equal(p1.remote, p2.remote, 'both talk to the leader');
    assert.deepEqual([l1.state, l2.state].sort(), ['held', 'waiting']);

    const leader = alive.find((mem) => mem.unixRemote === p1.remote)!;
    const t0 = performance.now();
    await leader.stop('SIGKILL');
    await eventually(
      'a holder on the new leader',
      () =>
        p1.state === 'connected' &&
        p2.state === 'connected' &&
        p1.remote !== leader.unixRemote &&
        (l1.held || l2.held),
      20_000,
    );
    const ms = performance.now() - t0;
    assert.equal(p1.remote, p2.remote);
    assert.equal(p1.serverRow?.leader, true);
    assert.ok(l1.held !== l2.held, 'exactly one holder');
    // The holder's writes that assert the lock commit; the other's are refused.
    const [holder, other] = l1.held ? [p1, p2] : [p2, p1];
    await holder.transact(DB, { op: 'assert', lock: 'planner' }, { op: 'comment', comment: 'planner' });
    await assert.rejects(other.transact(DB, { op: 'assert', lock: 'planner' }), /not owner/);
    console.log(`# raft leader killed: lock held again on the new leader after ${Math.round(ms)} ms`);
  });

  test('a leader that is partitioned away and comes back as a follower is left at once (_Server monitor)', async () => {
    await reviveAll();
    // No probe: only the _Server Database row (leader: false) can tell the client to move.
    const events: string[] = [];
    const p = client({
      remotes: cluster.remotes,
      database: DB,
      leaderOnly: true,
      probeIntervalMs: 0,
      log: (event) => events.push(event),
    });
    await p.connect();
    const old = cluster.members.find((mem) => mem.unixRemote === p.remote)!;
    const connectsBefore = p.connects;
    old.signal('SIGSTOP');
    try {
      // The other two elect a new leader (election timer 1 s); the frozen one does not know yet.
      await eventually(
        'new leader elected',
        async () => {
          for (const mem of cluster.members) {
            if (mem === old) continue;
            if (/Role: leader/.test(await mem.appctl('cluster/status', DB))) return true;
          }
          return false;
        },
        20_000,
      );
    } finally {
      old.signal('SIGCONT');
    }
    // Back, the old leader learns the new term, steps down, and its _Server row says leader: false.
    await eventually(
      'moved to the new leader',
      () => p.connects > connectsBefore && p.state === 'connected',
      20_000,
    );
    assert.notEqual(p.remote, old.unixRemote);
    assert.equal(p.serverRow?.leader, true);
    assert.ok(
      events.includes('ovsdb.member_unusable'),
      `left because of the _Server row: ${events.join(' ')}`,
    );
    await p.transact(DB, { op: 'comment', comment: 'on the new leader' });
  });
});
