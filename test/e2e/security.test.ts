// The security findings against REAL components (docs/security.md): a real ovsdb-server holding hostile rows, the real planner
// daemon (in-process) running a real fence hook through /bin/sh. Every server is a child process in a private temp
// dir, stopped by its own PID; the dir is removed afterwards. No namespaces in this file's first block.

import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { AgentDaemon } from '../../src/agent/daemon.ts';
import { SYN_METER_ID } from '../../src/compile/registry.ts';
import { type ControlPlane, startControlPlane, waitConverged } from '../../src/lab/control-plane.ts';
import { Pki } from '../../src/lab/pki.ts';
import { type Lab, labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import { parseConfig } from '../../src/model/schema.ts';
import { type MonitorSet, OvsdbClient } from '../../src/ovsdb/client.ts';
import type { Operation } from '../../src/ovsdb/protocol.ts';
import { startStandalone } from '../../src/ovsdb/server.ts';
import { PlannerDaemon } from '../../src/planner/daemon.ts';
import { planNext } from '../../src/rollout/planner.ts';
import { configDocument } from '../../src/store/config-diff.ts';
import {
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  GATEWAY_GENERATION_KEY,
  GlobalTable,
  insert,
  mapPut,
  mutate,
  NodeHeartbeatTable,
  NodeTable,
  nodeAcks,
  nodeHeartbeat,
  nodeStatus,
  PLAN_MONITOR,
  publishGenerationOps,
  readGeneration,
  readPlanConfig,
  STATUS_DB_NAME,
  splitMonitor,
  update,
  where,
} from '../../src/store/db/index.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';

const dir = mkdtempSync(join(tmpdir(), 'slt-security-'));
const BIN = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A pino logger whose records land in `lines` (JSON objects). */
function captureLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const HOSTILE = 'gw1;echo INJECTED >injected;#';

/** A standalone store in a fresh directory under `dir`, a client on its unix socket and a captured log. */
async function openStore(prefix: string) {
  const work = mkdtempSync(join(dir, prefix));
  const srv = await startStandalone(work);
  return {
    work,
    srv,
    client: new OvsdbClient({ remotes: [srv.unixRemote], database: DB_NAME }),
    ...captureLog(),
  };
}

/** The desired state of the store-only tests: two gateways, one host, one load balancer. */
function storeConfig() {
  return parseConfig({
    nodes: [
      { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
      { name: 'gw2', role: 'gateway', tunnelIp: '192.168.100.2' },
      { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
    ],
    loadBalancers: [
      { name: 'web', vip: '203.0.113.10', ports: [80], backends: [{ address: '10.0.1.11', host: 'host1' }] },
    ],
  });
}

describe('finding 1: a hostile Node name in a real store reaches no shell', () => {
  test('the planner fences nothing while the name is in the store, then fences valid names verbatim', async () => {
    const { work, srv, client, log, lines } = await openStore('fence-');
    let planner: PlannerDaemon | undefined;
    let gw1Beats: NodeJS.Timeout | undefined;
    try {
      const m = await client.monitor(DB_NAME, { ...DESIRED_STATE_MONITOR, Node_Status: {} });
      const config = storeConfig();
      await client.transact(DB_NAME, ...desiredStateOps(m.replica, config));
      // What any store writer can do (no validation on the way in): rename gw2 to a shell payload, and give both
      // gateways one heartbeat so they go silent from the planner's start.
      await client.transact(
        DB_NAME,
        update(NodeTable, [where(NodeTable, 'name', '==', 'gw2')], { name: HOSTILE }),
      );
      // Heartbeats are in the status database (Sluice_Status; one row per node, inserted by the first).
      const beat = (node: string, at: number) =>
        client.transact(
          STATUS_DB_NAME,
          at === 1
            ? insert(NodeHeartbeatTable, { node, heartbeat_at: at, external_ids: new Map() })
            : update(NodeHeartbeatTable, [where(NodeHeartbeatTable, 'node', '==', node)], {
                heartbeat_at: at,
              }),
        );
      for (const node of ['gw1', HOSTILE]) await beat(node, 1);
      // gw1 keeps beating: the hostile gateway alone goes silent (the planner never fences a majority of gateways).
      let n = 1;
      gw1Beats = setInterval(() => void beat('gw1', ++n).catch(() => {}), 100);
      const fenceLog = join(work, 'fenced');
      planner = new PlannerDaemon({
        remotes: [srv.unixRemote],
        log,
        leaseMs: 500,
        tickMs: 100,
        // The operator's hook: runs in `work`, appends its argument and SLUICE_NODE.
        fenceCmd: `cd '${work}' && printf '%s|%s\\n' "$1" "$SLUICE_NODE" >>fenced`,
      });
      await planner.start();
      await until('the planner to refuse the desired state', () =>
        lines.find((l) => l.event === 'invalid' && /gw1;echo/.test(String(l.msg))),
      );
      await sleep(2000); // four leases: a planner acting on the raw name would have fenced by now
      assert.equal(existsSync(join(work, 'injected')), false, 'the payload ran');
      assert.equal(existsSync(fenceLog), false, 'fenced a name from an invalid desired state');
      // Negative control: a valid name, the same silence: the gateway is fenced, its name passed verbatim.
      await client.transact(
        DB_NAME,
        update(NodeTable, [where(NodeTable, 'name', '==', HOSTILE)], { name: 'gw2' }),
      );
      await until('the fence of gw2', () => existsSync(fenceLog));
      await sleep(500);
      assert.deepEqual(readFileSync(fenceLog, 'utf8').trim().split('\n'), ['gw2|gw2']);
      assert.equal(existsSync(join(work, 'injected')), false);
    } finally {
      clearInterval(gw1Beats);
      await planner?.stop();
      client.close();
      await srv.stop();
    }
  });
});

describe('finding 1: an agent whose Node name is hostile runs its hook with that name and nothing else', () => {
  test('a real store holding the hostile row, the real agent daemon, its withdraw hook through /bin/sh', async () => {
    const { work, srv, client, log, lines } = await openStore('agent-');
    let agent: AgentDaemon | undefined;
    const ofCalls: string[] = [];
    try {
      const m = await client.monitor(DB_NAME, { ...DESIRED_STATE_MONITOR, ...PLAN_MONITOR, Node_Status: {} });
      const config = storeConfig();
      await client.transact(DB_NAME, ...desiredStateOps(m.replica, config));
      // A generation for the valid names, released to gateways; then any store writer renames gw2 to a payload.
      const g1 = planNext({ config, latest: null, connections: () => 0, now: Date.now() }).next!;
      await client.transact(
        DB_NAME,
        ...publishGenerationOps(m.replica, g1, 1, JSON.stringify(configDocument(config))),
        mutate(
          GlobalTable,
          [],
          mapPut(GlobalTable, 'options', { [GATEWAY_GENERATION_KEY]: String(g1.number) }),
        ),
      );
      await client.transact(
        DB_NAME,
        update(NodeTable, [where(NodeTable, 'name', '==', 'gw2')], { name: HOSTILE }),
      );
      // The agent of that node, named as the store names it (the CLI refuses such a name: src/agent/facts.ts; the
      // daemon is started in-process to get past that). Its generation does not name it, so its apply fails and
      // after the lease it withdraws through the operator's hook. Its OpenFlow runner only records (it is never
      // reached: the compile refuses first).
      const runner = {
        ofctl: async (br: string, args: readonly string[]) => {
          ofCalls.push(`${br} ${args.join(' ')}`);
          return { code: 1, stdout: '', stderr: 'no switch here' };
        },
        appctl: async (args: readonly string[]) => {
          ofCalls.push(args.join(' '));
          return { code: 1, stdout: '', stderr: 'no switch here' };
        },
      };
      agent = new AgentDaemon({
        role: 'gateway',
        node: HOSTILE,
        remotes: [srv.unixRemote],
        runner,
        facts: { ...fakeFacts(config, 'gw2'), name: HOSTILE },
        log,
        leaseMs: 500,
        heartbeatMs: 100,
        withdrawCmd: `cd '${work}' && printf '%s|%s\\n' "$1" "$SLUICE_NODE" >>withdrawn`,
      });
      await agent.start();
      await until('the withdraw hook', () => existsSync(join(work, 'withdrawn')));
      await until('the agent to log its withdrawal', () => lines.find((l) => l.event === 'withdrawn'));
      assert.deepEqual(readFileSync(join(work, 'withdrawn'), 'utf8').split('\n').filter(Boolean), [
        `${HOSTILE}|${HOSTILE}`,
      ]);
      assert.equal(existsSync(join(work, 'injected')), false, 'the payload ran');
      assert.ok(
        lines.some((l) => /is not a gateway in the config/.test(String(l.err ?? l.msg))),
        'the apply failed for the reason above',
      );
      assert.deepEqual(ofCalls, [], 'the agent touched no switch');
      // Its status row carries the name verbatim too (written through the store, never through a shell).
      await until('its Node_Status row', () => nodeStatus(m.replica, HOSTILE));
    } finally {
      await agent?.stop();
      client.close();
      await srv.stop();
    }
  });
});

// ---- On the lab (root): real namespaces, one ovs-vswitchd per node, the lab's control plane (store, planner, one
// agent per node, src/lab/control-plane.ts) and 200 long-lived client connections through the ECMP router.

const PREFIX = 'slt-sec-';
const isRoot = process.getuid?.() === 0;
const WEB = { vip: '203.0.113.10', port: 80 } as const;
const CT_LIMIT = 3000;
/** Every host's SYN meter (--syn-rate): a 10 s flood through it stays below CT_LIMIT. */
const SYN_RATE = 200;

describe('on the lab: hostile store writes and floods', { skip: !isRoot && 'needs root' }, () => {
  let lab: Lab;
  let cp: ControlPlane;
  let traffic: Traffic | undefined;
  let client: OvsdbClient;
  let state: MonitorSet;

  before(async () => {
    lab = await labUp({ prefix: PREFIX, hosts: 2 }, { replace: true });
    // A small conntrack budget for sluice's zone on hosts, so that the SYN flood below reaches it in seconds, and a
    // SYN meter that keeps a flood below it.
    cp = await startControlPlane(lab, {
      planners: 1,
      agentArgs: ['--ct-limit', String(CT_LIMIT), '--syn-rate', String(SYN_RATE)],
    });
    client = new OvsdbClient({ remotes: [cp.db], database: DB_NAME });
    state = await client.monitorDatabases(
      splitMonitor({ ...PLAN_MONITOR, Node_Status: {}, Node_Heartbeat: {} }),
    );
    traffic = await startTraffic(lab, {
      ...WEB,
      count: 200,
      rate: 200,
      expectBackends: lab.backends().map((b) => b.name),
    });
    await traffic.waitOpened(200, 60_000);
  });

  after(async () => {
    await traffic?.kill().catch(() => {});
    client?.close();
    if (lab) await labDown(PREFIX);
  });

  const status = (node: string) => nodeAcks(state.replica).get(node);

  test('finding 4: the store is TLS-only for the daemons, with certificates, and RBAC limits each role', async () => {
    const ports = cp.tlsPorts!;
    assert.ok(ports, 'the lab store runs with TLS remotes by default');
    // The daemons are on TLS: every planner and agent was started with an ssl: remote and its own certificate.
    for (const p of cp.processes().filter((x) => x.name !== 'store')) {
      const cmd = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0');
      assert.match(cmd[cmd.indexOf('--db') + 1]!, /^ssl:127\.0\.0\.1:\d+$/, p.name);
      assert.ok(cmd.includes('--certificate'), p.name);
    }
    const agentDb = cp.remoteFor('agent');
    // 1. No certificate: the TLS handshake is refused; plain TCP on the TLS port gets no answer either.
    const noCert = await new Promise<string>((resolve) => {
      const sock = tlsConnect({
        host: '127.0.0.1',
        port: ports.agent,
        ca: readFileSync(cp.pki.caCert),
        checkServerIdentity: () => undefined,
      });
      sock.on('secureConnect', () => sock.write(JSON.stringify({ method: 'list_dbs', params: [], id: 1 })));
      sock.on('data', (d) => resolve(`answered: ${d}`));
      sock.on('error', (e) => resolve(`error: ${e.message}`));
      sock.on('close', () => resolve('closed'));
      setTimeout(() => resolve('timeout'), 5000);
    });
    assert.doesNotMatch(noCert, /answered/, noCert);
    const plain = new OvsdbClient({ remotes: [`tcp:127.0.0.1:${ports.agent}`], waitConnectedMs: 3000 });
    await assert.rejects(plain.listDbs(), /SLUICE_E_OVSDB|no usable|closed|timed out/i);
    plain.close();
    // A certificate from another CA (same names): refused as well.
    const rogue = new Pki(join(dir, 'rogue-pki'));
    await rogue.issue(['gw1']);
    const stranger = new OvsdbClient({
      remotes: [agentDb],
      tls: { ...rogue.files('gw1'), caCert: cp.pki.caCert },
      waitConnectedMs: 3000,
    });
    await assert.rejects(stranger.listDbs());
    stranger.close();
    // 2. An agent's certificate: its own Node_Status only; not another node's, not the desired state, not plans.
    const gw1 = new OvsdbClient({ remotes: [agentDb], tls: cp.pki.files('gw1'), database: DB_NAME });
    const as = (c: OvsdbClient, ...ops: Operation[]) => c.transact(DB_NAME, ...ops);
    // A write an agent makes to its Node_Status row (heartbeats are in Sluice_Status since schema 3.0.0): no error.
    const beat = (node: string): Operation => ({
      op: 'update',
      table: 'Node_Status',
      where: [['node', '==', node]],
      row: { error: ['set', []] },
    });
    try {
      await as(gw1, beat('gw1')); // negative control: its own row
      await assert.rejects(as(gw1, beat('host1')), /permission error/);
      await assert.rejects(
        as(gw1, { op: 'insert', table: 'Node_Status', row: { node: 'gw2', applied_generation: 1 } }),
        /permission error/,
      );
      await assert.rejects(
        as(gw1, {
          op: 'update',
          table: 'Node',
          where: [['name', '==', 'gw2']],
          row: { tunnel_ip: '192.168.100.99' },
        }),
        /permission error/,
      );
      await assert.rejects(
        as(gw1, { op: 'update', table: 'Global', where: [], row: { generation: 999 } }),
        /permission error/,
      );
      await assert.rejects(as(gw1, { op: 'delete', table: 'Plan', where: [] }), /permission error/);
      // 2b. The same limits in the second database (Sluice_Status: ovsdb-server looks the role's permissions up in the
      // database written, and that database carries its own RBAC tables): its own heartbeat and reports only.
      const inStatus = (c: OvsdbClient, ...ops: Operation[]) => c.transact(STATUS_DB_NAME, ...ops);
      const report = (node: string): Operation => ({
        op: 'insert',
        table: 'Backend_Status',
        row: { node, lb: 'rbac-check', backend: '10.9.9.9:1', health: 'up', connections: 0, checked_at: 1 },
      });
      const unreport: Operation = {
        op: 'delete',
        table: 'Backend_Status',
        where: [['lb', '==', 'rbac-check']],
      };
      await inStatus(gw1, report('gw1')); // negative control: its own row
      await inStatus(gw1, unreport);
      await assert.rejects(inStatus(gw1, report('host1')), /permission error/);
      await assert.rejects(
        inStatus(gw1, { op: 'insert', table: 'Node_Heartbeat', row: { node: 'gw2', heartbeat_at: 1 } }),
        /permission error/,
      );
      await assert.rejects(
        inStatus(gw1, { op: 'insert', table: 'Report_Round', row: { generation: 1 } }),
        /permission error/,
      );
    } finally {
      gw1.close();
    }
    // 3. The planner's certificate on the planner's remote: plans yes, desired state no; the operator's: the reverse.
    const planner = new OvsdbClient({
      remotes: [cp.remoteFor('planner')],
      tls: cp.pki.files('planner'),
      database: DB_NAME,
    });
    const operator = new OvsdbClient({
      remotes: [cp.remoteFor('operator')],
      tls: cp.pki.files('operator'),
      database: DB_NAME,
    });
    try {
      await assert.rejects(
        as(planner, { op: 'update', table: 'Backend', where: [], row: { admin_state: 'down' } }),
        /permission error/,
      );
      await assert.rejects(as(planner, beat('gw1')), /permission error/);
      await assert.rejects(
        planner.transact(STATUS_DB_NAME, {
          op: 'insert',
          table: 'Backend_Status',
          row: { node: 'planner', lb: 'x', backend: 'y', health: 'up', connections: 0, checked_at: 1 },
        }),
        /permission error/,
      );
      await assert.rejects(
        operator.transact(STATUS_DB_NAME, { op: 'delete', table: 'Backend_Status', where: [] }),
        /permission error/,
      );
      await assert.rejects(as(operator, { op: 'delete', table: 'Plan', where: [] }), /permission error/);
      await assert.rejects(
        as(operator, { op: 'update', table: 'Global', where: [], row: { generation: 999 } }),
        /permission error/,
      );
      await as(operator, {
        op: 'mutate',
        table: 'Global',
        where: [],
        mutations: [['external_ids', 'delete', ['set', ['x']]]],
      });
    } finally {
      planner.close();
      operator.close();
    }
    // 4. Everything still converges through TLS + RBAC: a drain written as the operator (the real CLI) rolls out.
    const before = readGeneration(state.replica)!.number;
    const drained = lab.backend('host1-b1').ip;
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', BIN, 'backend', 'drain', 'web', drained, ...cp.operatorArgs()],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const g = await waitConverged(cp, 90_000);
    assert.ok(g > before, `the drain rolled out (g${before} -> g${g})`);
    spawnSync(process.execPath, [
      '--import',
      'tsx',
      BIN,
      'backend',
      'undrain',
      'web',
      drained,
      ...cp.operatorArgs(),
    ]);
    const c = await traffic!.report();
    assert.equal(c.broken, 0, JSON.stringify(c.brokenByReason));
  });

  test('finding 5: a SYN flood during live connections: the SYN meter caps new entries, conntrack bounded, 0 broken', async () => {
    const hosts = lab.nodes.filter((n) => n.role === 'host');
    const flooder = lab.clients[lab.clients.length - 1]!;
    // hping3 (Debian) in a client namespace: TCP SYNs to the VIP from an unused address of the client network (the
    // backends' SYN-ACKs go nowhere, so every SYN that passes the meter leaves an entry) with a new source port each.
    const spoofed = '10.200.0.200';
    const zoneLines = async (h: (typeof hosts)[number]) =>
      (await h.appctl(['dpctl/dump-conntrack', 'zone=1']).catch(() => ({ stdout: '' }))).stdout
        .split('\n')
        .filter((l) => l.includes('zone=1'));
    const entries = async () =>
      new Map(await Promise.all(hosts.map(async (h) => [h.name, (await zoneLines(h)).length] as const)));
    /** Floods for `seconds` (one SYN every `gapUs`), sampling every host's zone and heartbeat each second. */
    const flood = async (gapUs: number, seconds: number, during: (t: number) => Promise<void>) => {
      const ct = new Map(hosts.map((h) => [h.name, [] as number[]]));
      const beats = new Map(hosts.map((h) => [h.name, new Set<unknown>()]));
      const args = [
        'netns',
        'exec',
        flooder.netns,
        'hping3',
        '-S',
        '-p',
        '80',
        '-i',
        `u${gapUs}`,
        '-q',
        '-a',
        spoofed,
        WEB.vip,
      ];
      const p = spawn('ip', args, { stdio: 'ignore' });
      const t0 = Date.now();
      try {
        for (let t = 0; t < seconds; t++) {
          await sleep(1000);
          for (const h of hosts) beats.get(h.name)!.add(nodeHeartbeat(state.replica, h.name)?.heartbeat_at);
          for (const [h, n] of await entries()) ct.get(h)!.push(n);
          await during(t);
        }
      } finally {
        p.kill('SIGTERM');
      }
      return { ct, beats, seconds: (Date.now() - t0) / 1000 };
    };
    /** 20 new connections from the first client while the flood runs (a connect may take 20 s of SYN retries). */
    const legitimate = () =>
      startTraffic(lab, { ...WEB, count: 20, rate: 10, clients: [lab.clients[0]!.name], timeoutMs: 20_000 });
    const scrape = () =>
      Promise.all(
        hosts.map(async (h) => {
          const addr = cp.records(`agent-${h.name}`).find((r) => r.event === 'metrics')?.address as string;
          return (await fetch(`http://${addr}/metrics`)).text();
        }),
      );
    const counter = (m: string, name: string) => Number(new RegExp(`${name} (\\d+)`).exec(m)?.[1] ?? NaN);

    // 1. Metered (every host agent runs with --syn-rate SYN_RATE): ~1,000 SYNs/s at the VIP for 10 s.
    const before = await entries();
    let served: Traffic | undefined;
    let sample: string[] = [];
    const metered = await flood(1000, 10, async (t) => {
      if (t === 1) served = await legitimate();
      if (t === 5) sample = (await zoneLines(hosts[0]!)).filter((l) => l.includes(spoofed)).slice(0, 2);
    });
    const legit = await served!.report();
    await served!.kill();
    const m1 = await scrape();
    // 2. The negative control: the same hosts with the meter's rate raised out of the way by hand (as if unmetered),
    // ~10,000 SYNs/s for 15 s: the zone fills up to its limit, and new connections are refused meanwhile.
    const raise = (rate: number) =>
      Promise.all(
        hosts.map((h) =>
          h.ofctl('br-int', [
            'mod-meter',
            `meter=${SYN_METER_ID},pktps,burst,band=type=drop,rate=${rate},burst_size=${rate}`,
          ]),
        ),
      );
    await raise(1_000_000);
    let refused: Traffic | undefined;
    let unmetered: Awaited<ReturnType<typeof flood>>;
    let legitUnmetered: Awaited<ReturnType<Traffic['report']>>;
    try {
      unmetered = await flood(100, 15, async (t) => {
        if (t === 3) refused = await legitimate();
      });
      legitUnmetered = await refused!.report();
    } finally {
      await refused?.kill();
      await raise(SYN_RATE);
    }
    const m2 = await scrape();
    const report = hosts.map((h, i) => ({
      host: h.name,
      seconds: metered.seconds,
      before: before.get(h.name),
      meteredMax: Math.max(...metered.ct.get(h.name)!),
      unmeteredMax: Math.max(...unmetered.ct.get(h.name)!),
      synMeterPackets: counter(m1[i]!, 'sluice_agent_syn_meter_packets_total'),
      synMeterDropped: counter(m1[i]!, 'sluice_agent_syn_meter_dropped_total'),
      // SYNs that reached the commit flows (before the meter), after each phase: the flood's rate shows here.
      commitPackets: [m1[i]!, m2[i]!].map((m) =>
        counter(m, 'sluice_agent_flow_packets_total\\{kind="CT_COMMIT"\\}'),
      ),
      beats: Math.min(metered.beats.get(h.name)!.size, unmetered.beats.get(h.name)!.size),
      reportFailures: counter(m2[i]!, 'sluice_agent_report_failures_total'),
      states: m2[i]!.match(/sluice_agent_conntrack_entries\{[^\n]*/g),
    }));
    process.stderr.write(
      `SYN flood: ${JSON.stringify({ hosts: report, legitimateMetered: legit, legitimateUnmetered: legitUnmetered, floodEntries: sample })}\n`,
    );
    // Metered: each host added at most SYN_RATE entries a second (the flood's wall time, plus the bucket's fill of
    // rate + burst = two seconds' worth, plus the 20 legitimate ones), the meter counted what it dropped, and
    // legitimate new connections were still served.
    for (const r of report) {
      const bound = Math.ceil(SYN_RATE * (metered.seconds + 2)) + 20;
      assert.ok(
        r.meteredMax - r.before! <= bound,
        `${r.host}: ${r.meteredMax - r.before!} new entries > ${bound}`,
      );
      assert.ok(r.synMeterDropped > 0, `${r.host}: the meter dropped nothing`);
      assert.ok(r.synMeterPackets > r.synMeterDropped, `${r.host}: the meter let nothing through`);
      assert.match(m1[report.indexOf(r)]!, new RegExp(`sluice_agent_syn_rate_limit ${SYN_RATE}`));
    }
    assert.ok(
      legit.opened >= 10,
      `legitimate connections during the metered flood: ${JSON.stringify(legit)}`,
    );
    // The negative control reached the limit (so the meter, not the limit, held the metered flood) and never passed
    // it; with the zone full, new connections fared worse than under the meter.
    assert.ok(
      report.some((r) => r.unmeteredMax >= CT_LIMIT * 0.9),
      JSON.stringify(report),
    );
    for (const r of report)
      assert.ok(r.unmeteredMax <= CT_LIMIT, `${r.host}: ${r.unmeteredMax} entries > ${CT_LIMIT}`);
    assert.ok(legitUnmetered.opened < legit.opened, JSON.stringify({ legit, legitUnmetered }));
    // Heartbeats went on (one per second; at least 8 different values in 10 s), and the limit is in the metrics.
    for (const r of report) assert.ok(r.beats >= 8, `${r.host} heartbeats: ${r.beats}`);
    for (const m of m2) assert.match(m, new RegExp(`sluice_agent_conntrack_limit ${CT_LIMIT}`));
    // No node fenced, no gateway withdrawn; 0 live connections broken.
    for (const p of cp.processes().filter((x) => x.name.startsWith('planner-')))
      assert.ok(
        !cp.records(p.name).some((x) => x.event === 'fence' || x.event === 'fenced'),
        `${p.name} fenced a node`,
      );
    for (const v of Object.values(await lab.ecmpGateways())) assert.deepEqual([...v].sort(), ['gw1', 'gw2']);
    const c = await traffic!.report();
    assert.equal(c.broken, 0, JSON.stringify(c.brokenByReason));
  });

  test('finding 7: a malformed Plan_Pool is refused by every agent; they keep forwarding and recover', async () => {
    const r = state.replica;
    const good = readGeneration(r)!;
    const g = good.number;
    const doc = readPlanConfig(r, g)!.docs;
    // A rogue writer (no planner lock needed to write rows): g+1 whose first pool names member 7 of a 2..4-member
    // pool, released to hosts and gateways at once.
    const [lb, pool] = [...good.pools][0]!;
    const primary = pool.primary.slice();
    primary[0] = 7;
    const rogue = new Map(good.pools).set(lb, { ...pool, primary });
    await client.transact(
      DB_NAME,
      ...publishGenerationOps(
        r,
        { number: g + 1, createdAt: Date.now(), pools: rogue },
        good.desiredCfg,
        doc,
      ),
      mutate(GlobalTable, [], mapPut(GlobalTable, 'options', { [GATEWAY_GENERATION_KEY]: String(g + 1) })),
    );
    await until('every agent to refuse g+1 in its status', () =>
      lab.nodes.every((n) =>
        new RegExp(`refused g${g + 1}: .*slot 0 names member 7`).test(String(status(n.name)?.error ?? '')),
      ),
    );
    for (const n of lab.nodes) assert.equal(status(n.name)?.appliedGeneration, g, `${n.name} still at g${g}`);
    // Past the agents' lease (10 s): no gateway withdrew, every gateway still in the router's ECMP set.
    await sleep(12_000);
    for (const v of Object.values(await lab.ecmpGateways())) assert.deepEqual([...v].sort(), ['gw1', 'gw2']);
    for (const gw of lab.gateways)
      assert.ok(!cp.records(`agent-${gw.name}`).some((x) => x.event === 'withdrawn'), `${gw.name} withdrew`);
    traffic!.open(50); // new connections still land on the last good generation
    await sleep(3000);
    let c = await traffic!.report();
    assert.equal(c.broken, 0, JSON.stringify(c.brokenByReason));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    // A good generation (g's own pools) comes: every agent applies it, clears its error; the planner carries on.
    await client.transact(
      DB_NAME,
      ...publishGenerationOps(
        r,
        { number: g + 2, createdAt: Date.now(), pools: good.pools },
        good.desiredCfg,
        doc,
      ),
      mutate(GlobalTable, [], mapPut(GlobalTable, 'options', { [GATEWAY_GENERATION_KEY]: String(g + 2) })),
    );
    await until('every agent to apply g+2 and clear its error', () =>
      lab.nodes.every((n) => status(n.name)?.appliedGeneration === g + 2 && !status(n.name)?.error),
    );
    assert.equal(await waitConverged(cp, 60_000), g + 2);
    c = await traffic!.report();
    assert.equal(c.broken, 0, JSON.stringify(c.brokenByReason));
    process.stderr.write(
      `rogue generation: refused by ${lab.nodes.length} agents, 0 of ${c.opened} connections broken\n`,
    );
  });
});
