// The operator CLI (src/cli/store-commands.ts) against a REAL ovsdb-server on sluice's schema (standalone, private
// temp dir, stopped by its own PID; no namespaces, runs unprivileged). Commands run in-process through main() with
// stdout/stderr captured. Agent and planner reports (Node_Status, Backend_Status, a published Plan) are written
// directly with the store helpers the daemons use, so `status` and `explain` read real rows.
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { parse as parseYaml } from 'yaml';
import { main } from '../../src/cli/main.ts';
import { Pki } from '../../src/lab/pki.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { parseConfig } from '../../src/model/schema.ts';
import { type Monitor, OvsdbClient } from '../../src/ovsdb/client.ts';
import {
  createDatabase,
  databaseFile,
  freePort,
  OvsdbServerProcess,
  sluiceSchemaPaths,
  startStandalone,
} from '../../src/ovsdb/server.ts';
import { planNext } from '../../src/rollout/planner.ts';
import {
  BackendStatusTable,
  ConnectionTable,
  DB_NAME,
  DESIRED_STATE_MONITOR,
  insert,
  NodeHeartbeatTable,
  PLAN_MONITOR,
  publishGenerationOps,
  STATUS_DB_NAME,
  StoreTable,
  storedDesiredCfg,
  update,
  where,
} from '../../src/store/db/index.ts';
import { editDesiredState, editLoadBalancer, edits, StoreSession } from '../../src/store/operator.ts';

let dir: string;
let srv: OvsdbServerProcess;
let db: string;

async function sluice(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  // Only strings are ours: the node:test runner reports to stdout in binary chunks meanwhile; pass those on.
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) =>
    typeof s === 'string' ? out.push(s) > 0 : ow(s, ...rest)) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: never[]) =>
    typeof s === 'string' ? err.push(s) > 0 : ew(s, ...rest)) as typeof process.stderr.write;
  const saved = process.exitCode;
  process.exitCode = undefined;
  try {
    const code = await main([...argv, '--db', db]);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
    process.exitCode = saved;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: JSON output, shapes asserted field by field
async function json(...argv: string[]): Promise<any> {
  const r = await sluice(...argv, '--format', 'json');
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
  return JSON.parse(r.out);
}

async function showYaml(): Promise<string> {
  const r = await sluice('show');
  assert.equal(r.code, 0, r.err);
  return r.out;
}

describe('sluice CLI against a real ovsdb-server', () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-cli-store-'));
    srv = await startStandalone(dir);
    db = srv.unixRemote;
  });

  after(async () => {
    await srv?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('node, lb and backend commands build the desired state; list and show read it back', async () => {
    let r = await sluice('node', 'add', 'gw1', '--role', 'gateway', '--tunnel-ip', '192.168.100.1');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\+ node gw1 added\ndesired_cfg 1/);
    const j = await json('node', 'add', 'gw2', '--role', 'gateway', '--tunnel-ip', '192.168.100.2');
    assert.deepEqual(
      { ok: j.ok, command: j.command, changed: j.changed, desiredCfg: j.desiredCfg, attempts: j.attempts },
      { ok: true, command: 'node add', changed: true, desiredCfg: 2, attempts: 1 },
    );
    assert.deepEqual(j.changes, [{ kind: 'added', subject: 'node', name: 'gw2', fields: [] }]);
    for (const [n, ip] of [
      ['host1', '192.168.100.11'],
      ['host2', '192.168.100.12'],
    ] as const)
      assert.equal((await sluice('node', 'add', n, '--role', 'host', '--tunnel-ip', ip)).code, 0);
    r = await sluice('lb', 'add', 'web', '203.0.113.10', '--port', '80,443');
    assert.equal(r.code, 0, r.err);
    await json('lb', 'add', 'dns', '203.0.113.53', '--port', '53', '--protocol', 'udp');
    await json('backend', 'add', 'web', '10.0.1.11', '--host', 'host1', '--port', '8080');
    await json('backend', 'add', 'web', '10.0.1.12', '--host', 'host2', '--port', '8080', '--weight', '3');
    await json('backend', 'add', 'dns', '10.0.2.1', '--host', 'host1');

    const lbs = await json('lb', 'list');
    assert.deepEqual(lbs, [
      { name: 'dns', vip: '203.0.113.53', protocol: 'udp', ports: [53], backends: 1, active: 1 },
      { name: 'web', vip: '203.0.113.10', protocol: 'tcp', ports: [80, 443], backends: 2, active: 2 },
    ]);
    const nodes = await json('node', 'list');
    assert.deepEqual(
      nodes.map((n: { name: string; role: string; backends: number }) => [n.name, n.role, n.backends]),
      [
        ['gw1', 'gateway', 0],
        ['gw2', 'gateway', 0],
        ['host1', 'host', 2],
        ['host2', 'host', 1],
      ],
    );
    r = await sluice('lb', 'list');
    assert.match(r.out, /^web\s+203\.0\.113\.10\s+tcp\s+80,443\s+2 \(2 active\)$/m);

    // show: YAML that parses into the same config; show --format json is the same document.
    const yamlText = await showYaml();
    const doc = parseYaml(yamlText);
    const shown = parseConfig(doc);
    assert.equal(shown.loadBalancers.find((l) => l.name === 'web')!.backends[1]!.weight, 3);
    assert.deepEqual(await json('show'), doc);
  });

  test('show round-trips through apply -f: no change, nothing written', async () => {
    const file = join(dir, 'shown.yaml');
    writeFileSync(file, await showYaml());
    const before = (await json('show')) as unknown;
    const r = await json('apply', '-f', file);
    assert.equal(r.changed, false);
    assert.deepEqual(r.changes, []);
    assert.deepEqual(await json('show'), before);
  });

  test('drain and undrain change only the backend state; an address alone finds the backend', async () => {
    let j = await json('backend', 'drain', 'web', '10.0.1.11');
    assert.deepEqual(j.changes, [
      {
        kind: 'changed',
        subject: 'backend',
        name: 'web 10.0.1.11:8080',
        fields: [{ field: 'state', from: 'active', to: 'draining' }],
      },
    ]);
    assert.equal((await json('lb', 'list')).find((l: { name: string }) => l.name === 'web').active, 1);
    j = await json('backend', 'undrain', 'web', '10.0.1.11:8080');
    assert.equal(j.changes[0].fields[0].to, 'active');
    j = await json('backend', 'undrain', 'web', '10.0.1.11:8080');
    assert.equal(j.changed, false, 'undrain of an active backend writes nothing');
  });

  test('bad edits change nothing: every problem printed with its path, exit 2', async () => {
    const before = await showYaml();
    const cfg = (await json('lb', 'list')).length;

    // Validation by parseConfig on the would-be config.
    let r = await sluice('backend', 'add', 'web', '10.0.1.99', '--host', 'gw1', '--port', '8080');
    assert.equal(r.code, 2);
    assert.match(r.err, /SLUICE_E_CONFIG_INVALID/);
    assert.match(r.err, /loadBalancers\[1\]\.backends\[2\]\.host: .*\[SLUICE_E_CONFIG_BACKEND_ON_GATEWAY\]/);
    r = await sluice(
      'lb',
      'add',
      'bad',
      '300.1.1.1',
      '--port',
      '80',
      '--protocol',
      'sctp',
      '--format',
      'json',
    );
    assert.equal(r.code, 2);
    const err = JSON.parse(r.out).error;
    assert.equal(err.code, 'SLUICE_E_CONFIG_INVALID');
    assert.deepEqual(err.issues.map((i: { path: string; code: string }) => [i.path, i.code]).sort(), [
      ['loadBalancers[2].protocol', 'SLUICE_E_CONFIG_ENUM'],
      ['loadBalancers[2].vip', 'SLUICE_E_CONFIG_INVALID_IP'],
    ]);
    assert.ok(
      err.issues.every((i: { message: string }) => i.message.endsWith('(load balancer "bad")')),
      'each issue names the load balancer its path points into',
    );
    r = await sluice('node', 'del', 'host1');
    assert.equal(r.code, 2);
    assert.match(r.err, /SLUICE_E_CONFIG_UNKNOWN_HOST/);
    // Not found, exists, usage.
    r = await sluice('lb', 'del', 'nope');
    assert.equal(r.code, 2);
    assert.match(r.err, /load balancer nope is not in the desired state \[SLUICE_E_STORE_NOT_FOUND\]/);
    r = await sluice('backend', 'drain', 'web', '10.9.9.9');
    assert.match(r.err, /SLUICE_E_STORE_NOT_FOUND/);
    r = await sluice('node', 'add', 'gw1', '--role', 'gateway', '--tunnel-ip', '192.168.100.9');
    assert.equal(r.code, 2);
    assert.match(r.err, /SLUICE_E_STORE_EXISTS/);
    r = await sluice('lb', 'add', 'x', '203.0.113.99', '--port', 'eighty');
    assert.equal(r.code, 2);
    assert.match(r.err, /SLUICE_E_USAGE/);
    r = await sluice('backend', 'add', 'web', '10.0.1.50', '--port', '8080'); // --host missing (commander)
    assert.equal(r.code, 2);
    r = await sluice('lb', 'list', '--format', 'yaml');
    assert.equal(r.code, 2);

    assert.equal(await showYaml(), before, 'the store is unchanged');
    assert.equal((await json('lb', 'list')).length, cfg);
  });

  test('backend edits read and write one load balancer; conflicts with another are caught as before', async () => {
    // The backend commands take editLoadBalancer's path (Global, nodes, one load balancer and its backends).
    assert.equal((await sluice('lb', 'add', 'api', '203.0.113.20', '--port', '80')).code, 0);
    const before = await showYaml();
    const cfg = (await json('lb', 'list')).length;
    // 10.0.1.11 is a backend of web on host1: on host2 here it conflicts with another load balancer's backend.
    let r = await sluice('backend', 'add', 'api', '10.0.1.11', '--host', 'host2', '--port', '80');
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /backends\[0\]\.host: backend 10\.0\.1\.11 is on "host1" here but on "host2" .*\[SLUICE_E_CONFIG_BACKEND_HOST_CONFLICT\]/,
    );
    // The VIP of dns as a backend address of api.
    r = await sluice('backend', 'add', 'api', '203.0.113.53', '--host', 'host1', '--port', '80');
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /203\.0\.113\.53 is the VIP of .*\[SLUICE_E_CONFIG_ADDRESS_CONFLICT\]/);
    assert.equal(await showYaml(), before, 'the store is unchanged');
    // The same address on the same host as in web is no conflict; the scoped edit writes only api's rows.
    const j = await json('backend', 'add', 'api', '10.0.1.11', '--host', 'host1', '--port', '80');
    assert.equal(j.changed, true);
    assert.deepEqual(
      j.changes.map(
        (c: { kind: string; subject: string; name: string }) => `${c.kind} ${c.subject} ${c.name}`,
      ),
      ['added backend api 10.0.1.11:80'],
    );
    assert.equal((await json('lb', 'list')).length, cfg);

    // A concurrent writer between the scoped read and the write: the guard fails and the edit is redone.
    const raced = await editLoadBalancer(db, 'api', edits.backendAdd('api', '10.0.1.12', 'host2', 80, 1), {
      beforeTransact: async (attempt) => {
        if (attempt === 1) assert.equal((await sluice('backend', 'drain', 'api', '10.0.1.11')).code, 0);
      },
    });
    assert.equal(raced.attempts, 2);
    const api = (await json('show')).loadBalancers.find((l: { name: string }) => l.name === 'api');
    assert.deepEqual(
      api.backends.map((b: { address: string; state: string }) => `${b.address} ${b.state}`),
      ['10.0.1.11 draining', '10.0.1.12 active'],
      'both edits are in the store',
    );
    assert.equal((await sluice('lb', 'del', 'api')).code, 0);
    assert.deepEqual(
      (await json('lb', 'list')).map((l: { name: string }) => l.name),
      ['dns', 'web'],
    );
  });

  test('apply --dry-run prints the diff and the generations, and writes nothing; apply writes', async () => {
    const doc = parseYaml(await showYaml());
    const web = doc.loadBalancers.find((l: { name: string }) => l.name === 'web');
    web.backends.push({ address: '10.0.1.13', port: 8080, host: 'host2', weight: 1, state: 'active' });
    web.backends[0].state = 'draining';
    doc.loadBalancers = doc.loadBalancers.filter((l: { name: string }) => l.name !== 'dns');
    const file = join(dir, 'change.yaml');
    writeFileSync(file, JSON.stringify(doc));
    const before = await showYaml();

    const dry = await json('apply', '-f', file, '--dry-run');
    assert.equal(dry.dryRun, true);
    assert.deepEqual(dry.counts, { added: 1, changed: 1, removed: 1 });
    assert.deepEqual(
      dry.changes.map(
        (c: { kind: string; subject: string; name: string }) => `${c.kind} ${c.subject} ${c.name}`,
      ),
      ['removed load balancer dns', 'changed backend web 10.0.1.11:8080', 'added backend web 10.0.1.13:8080'],
    );
    // Generation 1 = the current state; the drain and the add roll out through phase 1, phase 2, then stable.
    assert.ok(dry.generations.length >= 3, `phased rollout, got ${dry.generations.length} generations`);
    const text = await sluice('apply', '-f', file, '--dry-run');
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^- load balancer dns removed$/m);
    assert.match(text.out, /^~ backend web 10\.0\.1\.11:8080 changed: state active -> draining$/m);
    assert.match(text.out, /^\+ backend web 10\.0\.1\.13:8080 added$/m);
    assert.match(text.out, /rolls out in \d+ more generation/);
    assert.match(text.out, /generation 2: .*phase 1/);
    assert.match(text.out, /nothing written/);
    assert.equal(await showYaml(), before, 'dry run wrote nothing');

    const applied = await json('apply', '-f', file);
    assert.equal(applied.changed, true);
    assert.deepEqual(applied.counts, { added: 1, changed: 1, removed: 1 });
    const now = await json('show');
    assert.deepEqual(
      now.loadBalancers.map((l: { name: string }) => l.name),
      ['web'],
    );
    // A bad file is rejected before the store is touched.
    writeFileSync(
      join(dir, 'bad.yaml'),
      'nodes: [{name: gw1, role: router, tunnelIp: 1.2.3}]\nloadBalancers: []\n',
    );
    const bad = await sluice('apply', '-f', join(dir, 'bad.yaml'));
    assert.equal(bad.code, 2);
    assert.match(bad.err, /nodes\[0\]\.role/);
    assert.match(bad.err, /nodes\[0\]\.tunnelIp/);
    assert.deepEqual(await json('show'), now);
  });

  test('a concurrent edit fails the desired_cfg guard: the edit is redone on the fresh state, or reported', async () => {
    const s = await StoreSession.open(db, DESIRED_STATE_MONITOR);
    try {
      const before = (await json('show')) as { loadBalancers: { backends: unknown[] }[] };
      const n0 = before.loadBalancers[0]!.backends.length;
      // Attempt 1 races another CLI writer between our read and our transaction: the guard fails, attempt 2 wins.
      const r = await editDesiredState(s, edits.backendAdd('web', '10.0.1.21', 'host1', 8080, 1), {
        beforeTransact: async (attempt) => {
          if (attempt === 1)
            assert.equal(
              (await sluice('backend', 'add', 'web', '10.0.1.22', '--host', 'host2', '--port', '8080')).code,
              0,
            );
        },
      });
      assert.equal(r.attempts, 2);
      assert.equal(r.changed, true);
      const after = (await json('show')) as { loadBalancers: { backends: { address: string }[] }[] };
      const addrs = after.loadBalancers[0]!.backends.map((b) => b.address);
      assert.equal(addrs.length, n0 + 2, 'both edits are in the store');
      assert.ok(addrs.includes('10.0.1.21') && addrs.includes('10.0.1.22'));

      // With one attempt allowed, the conflict is reported and our edit is not written.
      await assert.rejects(
        editDesiredState(s, edits.backendAdd('web', '10.0.1.23', 'host1', 8080, 1), {
          maxAttempts: 1,
          beforeTransact: async () => {
            assert.equal((await sluice('backend', 'drain', 'web', '10.0.1.22')).code, 0);
          },
        }),
        (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_STORE_CONFLICT',
      );
      const last = (await json('show')) as {
        loadBalancers: { backends: { address: string; state: string }[] }[];
      };
      const bs = last.loadBalancers[0]!.backends;
      assert.ok(!bs.some((b) => b.address === '10.0.1.23'), 'the losing edit wrote nothing');
      assert.equal(bs.find((b) => b.address === '10.0.1.22')!.state, 'draining', 'the winner is kept');
    } finally {
      s.close();
    }
  });

  test('status reports what agents applied (generation, lag, heartbeat, error), health, connections, waiting', async () => {
    // Publish generation 1 as the planner would, then write agent reports as the agents would.
    const client = new OvsdbClient({ remotes: [db] });
    let plans: Monitor | undefined;
    try {
      await client.connect();
      plans = await client.monitor(DB_NAME, { ...PLAN_MONITOR, ...DESIRED_STATE_MONITOR, Node_Status: {} });
      const shown = await json('show');
      const config = parseConfig(shown);
      const gen = planNext({ config, latest: null, connections: () => 0, now: Date.now() }).next!;
      const desiredCfg = storedDesiredCfg(plans.replica);
      await client.transact(
        DB_NAME,
        ...publishGenerationOps(plans.replica, { ...gen, number: 1, createdAt: Date.now() }, desiredCfg),
      );
      const now = Date.now();
      for (const [node, applied, error] of [
        ['gw1', 1, undefined],
        ['gw2', 0, undefined],
        ['host1', 1, undefined],
        ['host2', 1, 'bundle rejected'],
      ] as const) {
        // The acknowledgement travels with the heartbeat, in the status database (Sluice_Status 1.1.0).
        await client.transact(
          STATUS_DB_NAME,
          insert(NodeHeartbeatTable, {
            node,
            heartbeat_at: now - 1500,
            applied_generation: applied,
            applied_cfg: desiredCfg,
            applied_at: now,
            error,
            external_ids: new Map(),
          }),
        );
      }
      await client.transact(
        STATUS_DB_NAME,
        insert(BackendStatusTable, {
          node: 'host1',
          lb: 'web',
          backend: '10.0.1.11:8080',
          health: 'up',
          connections: 7,
          checked_at: now,
          // Up, but its latest probe failed: falling.
          last_ok: false,
        }),
      );

      const st = await json('status');
      assert.equal(st.generation, 1);
      assert.equal(st.plannedCfg, desiredCfg);
      assert.equal(st.desiredCfg, desiredCfg);
      const byName = new Map(st.nodes.map((n: { name: string }) => [n.name, n]));
      assert.deepEqual(
        ['gw1', 'gw2', 'host1', 'host2'].map((n) => {
          const x = byName.get(n) as { appliedGeneration: number; lag: number; error: string | null };
          return [n, x.appliedGeneration, x.lag, x.error];
        }),
        [
          ['gw1', 1, 0, null],
          ['gw2', 0, 1, null],
          ['host1', 1, 0, null],
          ['host2', 1, 0, 'bundle rejected'],
        ],
      );
      const hb = (byName.get('gw1') as { heartbeatAgeMs: number }).heartbeatAgeMs;
      assert.ok(hb >= 1500 && hb < 60_000, `heartbeat age ${hb}`);
      assert.deepEqual(st.waiting, { gateways: ['gw2'], hosts: [] });
      const b = st.backends.find((x: { backend: string }) => x.backend === '10.0.1.11:8080');
      assert.deepEqual(
        [b.check, b.health, b.lastProbe, b.connections, b.reportedBy, b.adminState],
        ['tcp', 'up', 'fail', 7, 'host1', 'draining'],
      );
      const unreported = st.backends.find((x: { backend: string }) => x.backend === '10.0.1.12:8080');
      assert.deepEqual(
        [unreported.health, unreported.lastProbe, unreported.connections],
        ['unknown', null, null],
      );

      const text = await sluice('status');
      assert.equal(text.code, 0, text.err);
      assert.match(text.out, /^gw2\s+gateway\s+0\s+1\s+1\.\ds ago\s+no\s+-$/m);
      assert.match(text.out, /^host2\s+host\s+1\s+0\s+.*bundle rejected$/m);
      assert.match(text.out, /gateways behind generation 1: gw2/);
      assert.match(
        text.out,
        /^LB\s+BACKEND\s+HOST\s+ADMIN\s+CHECK\s+HEALTH\s+LAST PROBE\s+CONNS\s+REPORTED$/m,
      );
      assert.match(text.out, /^web\s+10\.0\.1\.11:8080\s+host1\s+draining\s+tcp\s+up\s+fail\s+7\s+\d/m);
      // show: the same, as comments before each load balancer and backend (the YAML still applies as is).
      const withHealth = await showYaml();
      assert.match(withHealth, /# health check: tcp \(the default for tcp\)\n\s+- name: web\n/);
      assert.match(withHealth, /# health up, last probe fail, 7 connections\n\s+- address: 10\.0\.1\.11\n/);

      // explain without -f: the latest published generation from the store.
      const ex = await sluice(
        'explain',
        'tcp',
        '198.51.100.7',
        '40000',
        '203.0.113.10',
        '80',
        '--hash',
        '0x5',
        '--format',
        'json',
      );
      assert.equal(ex.code, 0, ex.err);
      const e = JSON.parse(ex.out);
      assert.equal(e.found, true);
      assert.equal(e.generation, 1);
      assert.equal(e.slot, 5);
      assert.ok(typeof e.primary.key === 'string');
    } finally {
      client.close();
    }
  });

  test('node confirm-fenced: the operator confirms a gateway out of ECMP; status shows it; hosts and unknown nodes refused', async () => {
    // (After the status test: gw2 reported generation 0 and is waited for.)
    let st = await json('status');
    assert.deepEqual(st.waiting.gateways, ['gw2']);
    const r = await sluice('node', 'confirm-fenced', 'gw2');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /gw2: confirmed fenced by the operator/);
    st = await json('status');
    const gw2 = st.nodes.find((n: { name: string }) => n.name === 'gw2');
    assert.deepEqual([gw2.fenced, gw2.fencedBy, gw2.appliedGeneration], [true, 'operator', 0]);
    assert.deepEqual(st.waiting.gateways, [], 'a fenced gateway is not waited for');
    const text = await sluice('status');
    assert.match(text.out, /^gw2\s+gateway\s+0\s+1\s+.*yes \(operator\)/m);
    assert.equal((await json('node', 'confirm-fenced', 'gw2')).already, true, 'a second call writes nothing');
    // A gateway that never reported gets a status row that says only this.
    assert.equal(
      (await sluice('node', 'add', 'gw3', '--role', 'gateway', '--tunnel-ip', '192.168.100.3')).code,
      0,
    );
    assert.equal((await json('node', 'confirm-fenced', 'gw3')).already, false);
    const gw3 = (await json('status')).nodes.find((n: { name: string }) => n.name === 'gw3');
    assert.deepEqual([gw3.fencedBy, gw3.appliedGeneration], ['operator', 0]);
    assert.equal((await sluice('node', 'del', 'gw3')).code, 0);
    // Refused, and nothing written: a host, an unknown node.
    const host = await sluice('node', 'confirm-fenced', 'host1');
    assert.equal(host.code, 2);
    assert.match(host.err, /node host1 is a host: only gateways are fenced.*\[SLUICE_E_USAGE\]/);
    const unknown = await sluice('node', 'confirm-fenced', 'gw9');
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /node gw9 does not exist \[SLUICE_E_STORE_NOT_FOUND\]/);
    const host1 = (await json('status')).nodes.find((n: { name: string }) => n.name === 'host1');
    assert.deepEqual([host1.fenced, host1.fencedBy], [false, null]);
  });

  test('an unreachable store is a runtime error (exit 1) naming the remote', async () => {
    const saved = db;
    db = `unix:${join(dir, 'nothing-here.sock')}`;
    try {
      const r = await sluice('lb', 'list', '--format', 'json');
      assert.equal(r.code, 1);
      assert.equal(JSON.parse(r.out).error.code, 'SLUICE_E_OVSDB_CONNECT');
      assert.match(r.err, /cannot reach the store at unix:.*nothing-here\.sock/);
    } finally {
      db = saved;
    }
  });
});

describe('sluice store access against a real ovsdb-server: the TLS remotes and its inactivity probe', () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'sluice-store-access-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  /** Runs `sluice` against the store at `remote` (the module's `db`, put back afterwards). */
  async function sluiceAt(remote: string, ...argv: string[]) {
    const saved = db;
    db = remote;
    try {
      return await sluice(...argv);
    } finally {
      db = saved;
    }
  }

  /** A TLS client with `files`' certificate that completes the handshake on `port` (retried while the remote
   *  opens) and then sends nothing, not even an answer to the server's echo: a daemon busy in one long task. */
  async function silentClient(port: number, files: ReturnType<Pki['files']>) {
    for (let tries = 0; ; tries++) {
      const sock: TLSSocket = tlsConnect({
        host: '127.0.0.1',
        port,
        key: readFileSync(files.privateKey),
        cert: readFileSync(files.certificate),
        ca: readFileSync(files.caCert),
        checkServerIdentity: () => undefined,
      });
      const up = await new Promise<boolean>((resolve) => {
        sock.once('secureConnect', () => resolve(true));
        sock.once('error', () => resolve(false));
      });
      if (up) {
        const client = { sock, received: '', closedAt: undefined as number | undefined };
        sock.on('data', (d) => {
          client.received += String(d);
        });
        sock.on('error', () => {});
        sock.on('close', () => {
          client.closedAt = Date.now();
        });
        return client;
      }
      sock.destroy();
      if (tries > 100) throw new Error(`pssl:${port} never accepted a TLS session`);
      await sleep(50);
    }
  }

  test('a client silent past 5 s keeps its session on the remotes it wrote; without the setting it is dropped', async () => {
    const pki = new Pki(join(work, 'pki'));
    await pki.issue(['store', 'host1']);
    const dbFiles = sluiceSchemaPaths().map((schema, i) => databaseFile(work, 'tls', schema, i === 0));
    for (const [i, schema] of sluiceSchemaPaths().entries()) await createDatabase(dbFiles[i]!, schema);
    const store = new OvsdbServerProcess(
      { dir: work, dbFiles, name: 'tls', tls: pki.files('store') },
      await freePort(),
    );
    await store.start();
    const sockets: TLSSocket[] = [];
    try {
      const [kept, dropped] = [await freePort(), await freePort()];
      const r = await sluiceAt(
        store.unixRemote,
        'store',
        'access',
        '--agent-remote',
        `pssl:${kept}:127.0.0.1,pssl:${dropped}:127.0.0.1`,
        '--format',
        'json',
      );
      assert.equal(r.code, 0, r.err);
      assert.equal(JSON.parse(r.out).inactivityProbeMs, 30_000);
      // The negative control: the second remote without the setting, as every remote had before schema 3.1.0
      // (ovsdb-server's default then: probe after 5 s of silence, drop 5 s later).
      const admin = new OvsdbClient({ remotes: [store.unixRemote], database: DB_NAME });
      try {
        await admin.transact(
          DB_NAME,
          update(ConnectionTable, [where(ConnectionTable, 'target', '==', `pssl:${dropped}:127.0.0.1`)], {
            inactivity_probe: undefined,
          }),
        );
      } finally {
        admin.close();
      }
      const t0 = Date.now();
      const a = await silentClient(kept, pki.files('host1'));
      const b = await silentClient(dropped, pki.files('host1'));
      sockets.push(a.sock, b.sock);
      for (let i = 0; i < 400 && b.closedAt === undefined; i++) await sleep(50);
      assert.ok(b.closedAt !== undefined, 'the control session was dropped within 20 s');
      assert.match(b.received, /"method":"echo"/, 'the server probed the control session first');
      assert.match(
        readFileSync(store.logPath, 'utf8'),
        /ssl:127\.0\.0\.1:\d+: no response to inactivity probe after 5 seconds/,
      );
      // Silent as long as the control (> 5 s, two of ovsdb-server's default intervals), the session on the remote
      // with the setting is still up, unprobed, and answers.
      const silentMs = b.closedAt - t0;
      assert.ok(silentMs > 5000, `the control was dropped after ${silentMs} ms`);
      await sleep(500);
      assert.equal(a.closedAt, undefined, `dropped after ${a.closedAt! - t0} ms`);
      assert.equal(a.received, '', 'no echo before 30 s');
      a.sock.write(JSON.stringify({ method: 'list_dbs', params: [], id: 1 }));
      for (let i = 0; i < 100 && !a.received.includes('Sluice_Status'); i++) await sleep(50);
      assert.match(a.received, /"result":\[.*"Sluice_Status"/);
      process.stderr.write(`inactivity probe: control dropped after ${silentMs} ms; the other kept\n`);
    } finally {
      for (const s of sockets) s.destroy();
      await store.stop();
    }
  });

  test('a store before schema 3.1.0 (no Connection.inactivity_probe) is refused, naming the upgrade; nothing written', async () => {
    // Schema 3.0.0's Sluice, as the store of an operator who has not converted yet.
    const schema = JSON.parse(readFileSync(sluiceSchemaPaths()[0]!, 'utf8'));
    schema.version = '3.0.0';
    delete schema.tables.Connection.columns.inactivity_probe;
    const oldSchema = join(work, 'sluice-3.0.0.ovsschema');
    writeFileSync(oldSchema, JSON.stringify(schema));
    const old = await startStandalone(work, [oldSchema, sluiceSchemaPaths()[1]!], 'old');
    try {
      const r = await sluiceAt(old.unixRemote, 'store', 'access', '--agent-remote', 'pssl:6642');
      assert.equal(r.code, 1, r.err);
      assert.match(
        r.err,
        /no Connection\.inactivity_probe \(schema before 3\.1\.0\): convert it first .*nothing was written \[SLUICE_E_OVSDB_VALUE\]/,
      );
      const c = new OvsdbClient({ remotes: [old.unixRemote], database: DB_NAME });
      try {
        const rows = await c.transact(DB_NAME, { op: 'select', table: StoreTable.name, where: [] });
        assert.deepEqual(rows[0], { rows: [] });
      } finally {
        c.close();
      }
    } finally {
      await old.stop();
    }
  });
});
