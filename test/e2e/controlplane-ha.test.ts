// The control plane's high availability end to end (root, REAL ovsdb-server Raft cluster + the lab): a
// 3-member clustered store (src/ovsdb/server.ts startCluster), two `sluice planner` processes (with the lab's
// --fence-cmd) and one `sluice agent` per lab node, every process given all three members, all child processes of
// this test (killed by their own PIDs). Long-lived connections run through everything:
//   - the store's first member is frozen (SIGSTOP: it accepts connections, answers nothing) before any daemon starts:
//     every planner and agent leaves it for a live member and the control plane converges;
//   - the store's Raft leader is killed: a change made through the CLI (`sluice backend drain --db <all members>`)
//     converges on the two members left, 0 broken; the member restarted rejoins the cluster and catches up;
//   - a gateway's agent is SIGKILLed (it cannot withdraw itself): the active planner runs the fence command (the
//     gateway leaves the lab router's ECMP set) before it publishes past the generation the gateway could not
//     acknowledge, `sluice status` shows the gateway fenced by the planner, 0 broken; the agent restarted
//     re-announces and the control plane converges with both gateways;
//   - a gateway's agent frozen (SIGSTOP) past the planner's lease is fenced the same way; thawed (before its own, longer
//     lease), it finds the planner's record on its Node_Status row and rejoins: both gateways back in ECMP, 0 broken;
//   - a host's agent frozen while 150 heartbeat transactions commit (Sluice_Status), then every session dropped: its
//     monitor of Sluice resumes from its last transaction; with the 150 transactions in Sluice instead, it does not.

import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { labEcmpCommand, labFenceTemplate } from '../../src/lab/ecmp.ts';
import { Pki } from '../../src/lab/pki.ts';
import { type Lab, labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import { type MonitorSet, OvsdbClient } from '../../src/ovsdb/client.ts';
import { type Cluster, type OvsdbServerProcess, startCluster } from '../../src/ovsdb/server.ts';
import {
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  fenceMarks,
  GlobalTable,
  insert,
  mapDelete,
  mapPut,
  mutate,
  NodeHeartbeatTable,
  nodeStatus,
  publishedGeneration,
  STATUS_DB_NAME,
  splitMonitor,
  update,
  where,
} from '../../src/store/db/index.ts';
import { runSluice, SluiceChildren } from './helpers/sluice-children.ts';
import { STORE_STATE_TABLES, storeWatch } from './helpers/store-state.ts';

const PREFIX = 'slt-ha-';
const isRoot = process.getuid?.() === 0;
const WEB = { vip: '203.0.113.10', port: 80 } as const;
const PLANNERS = ['planner-a', 'planner-b'];

let lab: Lab;
let dir: string;
let cluster: Cluster;
let client: OvsdbClient;
let status: MonitorSet;
const children = new SluiceChildren(() => dir);

/** Every member's client remote: what every process and CLI call of this test is given. */
const allMembers = () => cluster.remotes.join(',');

const plannerRecords = (): Array<Record<string, unknown>> =>
  PLANNERS.flatMap((p) => children.records(p).map((r) => ({ ...r, planner: p })));

function startPlanner(name: string): void {
  children.start(name, [
    'planner',
    '--db',
    allMembers(),
    '--lease',
    '10',
    '--margin',
    '3',
    '--fence-cmd',
    labFenceTemplate(lab),
    '--metrics',
    '127.0.0.1:0',
  ]);
}

/** gw1's agent has a lease far longer than the planner's: frozen and thawed, it must learn from the planner's record
 *  (not from its own lease) that it was fenced. */
const AGENT_LEASE: Record<string, string> = { gw1: '60' };

function startAgent(node: string): void {
  const n = lab.node(node);
  const ecmp = (action: 'withdraw' | 'announce') => labEcmpCommand(lab, node, action);
  children.start(`agent-${node}`, [
    'agent',
    '--role',
    n.role,
    '--node',
    node,
    '--db',
    allMembers(),
    '--facts',
    join(dir, `${node}.json`),
    '--ovs-rundir',
    n.ovsDir,
    '--lease',
    AGENT_LEASE[node] ?? '10',
    '--metrics',
    '127.0.0.1:0',
    ...(n.role === 'gateway' ? ['--withdraw-cmd', ecmp('withdraw'), '--announce-cmd', ecmp('announce')] : []),
  ]);
}

const { storeState, waitConverged } = storeWatch(
  () => status.replica,
  () => lab.nodes.map((n) => n.name),
  120_000,
  (node) => children.startedAt(`agent-${node}`),
);

async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      // The planners' last decisions say why (CI keeps only this message).
      const last = plannerRecords()
        .filter((r) => r.event !== undefined)
        .sort((a, b) => (a.time as number) - (b.time as number))
        .slice(-25)
        .map((r) => JSON.stringify(r));
      throw new Error(`timed out waiting for: ${what}; planners' last records:\n${last.join('\n')}`);
    }
    await sleep(200);
  }
}

/** The member that says it is the Raft leader (cluster/status), if one does. */
async function leader(): Promise<OvsdbServerProcess | undefined> {
  for (const m of cluster.members) {
    if (!m.running) continue;
    const s = await m.appctl('cluster/status', DB_NAME).catch(() => '');
    if (/^Role: leader$/m.test(s)) return m;
  }
  return undefined;
}

async function ecmpSets(): Promise<string[][]> {
  return Object.values(await lab.ecmpGateways()).map((v) => [...v].sort());
}

describe('control plane HA: Raft store members and agents lost', { skip: !isRoot && 'needs root' }, () => {
  let config: Config;
  let traffic: Traffic | undefined;
  const web = () => config.loadBalancers.find((l) => l.name === 'web')!;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ha-'));
    lab = await labUp({ prefix: PREFIX, hosts: 2 }, { replace: true });
    config = lab.sluiceConfig();
    for (const n of lab.nodes) {
      const probeNetns: Record<string, string> = {};
      for (const b of n.backends) {
        probeNetns[b.ip] = b.netns;
        probeNetns[b.ip6] = b.netns;
      }
      writeFileSync(
        join(dir, `${n.name}.json`),
        JSON.stringify({ ...lab.compilerFacts(n.name), probeNetns }),
      );
    }
    // Raft between the members over mutual TLS, as deployed (examples/systemd/sluice-store-init.sh).
    const pki = new Pki(join(dir, 'pki'));
    await pki.issue(['store']);
    cluster = await startCluster(dir, 3, { tls: pki.files('store') });
    client = new OvsdbClient({ remotes: cluster.remotes });
    await client.connect();
    const desired = await client.monitor(DB_NAME, DESIRED_STATE_MONITOR);
    status = await client.monitorDatabases(splitMonitor(STORE_STATE_TABLES));
    await client.transact(DB_NAME, ...desiredStateOps(desired.replica, config));
  });

  after(async () => {
    await traffic?.kill().catch(() => {});
    await children.killAll();
    client?.close();
    await cluster?.stop();
    if (lab) await labDown(PREFIX);
    if (process.env.SLUICE_KEEP_LOGS) process.stderr.write(`logs kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  });

  test('store on a 3-member cluster, its first member frozen: planners and agents converge; traffic flows', async () => {
    // Security finding 2: the first remote every process is given accepts connections but never answers (SIGSTOP);
    // each must give up negotiating with it and use a live member.
    // The members talk Raft over TLS (ssl: addresses in the cluster's status), not plain tcp.
    const raft = await cluster.members[1]!.appctl('cluster/status', DB_NAME);
    assert.match(raft, /Address: ssl:127\.0\.0\.1:\d+/, raft);
    assert.doesNotMatch(raft, /tcp:127/, raft);
    const frozen = cluster.members[0]!;
    frozen.signal('SIGSTOP');
    startPlanner('planner-a');
    await sleep(1500);
    startPlanner('planner-b');
    for (const n of lab.nodes) startAgent(n.name);
    const t0 = Date.now();
    const g = await waitConverged(0, 180_000, 1000);
    process.stderr.write(
      `initial (member 1 frozen): g${g} acknowledged by every node in ${Date.now() - t0} ms\n`,
    );
    frozen.signal('SIGCONT');
    await waitFor(
      async () => {
        const s = await frozen.appctl('cluster/status', DB_NAME).catch(() => '');
        return /Status: cluster member/.test(s) && /Leader: (?!unknown)/.test(s);
      },
      60_000,
      'the thawed member back in the cluster',
    );
    await waitFor(
      () =>
        lab.gateways.every((gw) => children.records(`agent-${gw.name}`).some((r) => r.event === 'announced')),
      60_000,
      'gateways announced',
    );
    for (const v of await ecmpSets()) assert.deepEqual(v, ['gw1', 'gw2']);
    traffic = await startTraffic(lab, {
      ...WEB,
      count: 200,
      rate: 200,
      expectBackends: lab.backends().map((b) => b.name),
    });
    await traffic.waitOpened(200, 60_000);
  });

  test('a daemon away while 150 status transactions commit resumes its plan monitor; 150 in Sluice do not', async () => {
    // Heartbeats and reports are in Sluice_Status, and ovsdb-server keeps the last 100 transactions per database: a
    // daemon away while more than 100 heartbeats commit still finds its last Sluice transaction (docs/design/ovsdb.md,
    // "Two databases"). host1's agent is frozen, 150 transactions are written, every member drops every session
    // (ovsdb-server/reconnect: a store-wide blip), and the agent is thawed; it logs how each monitor came back.
    const agent = 'agent-host1';
    const pid = children.get(agent)!.pid!;
    let n = 0;
    const heartbeat = (i: number) =>
      client.transact(
        STATUS_DB_NAME,
        i === 0 && n++ === 0
          ? insert(NodeHeartbeatTable, { node: 'blip-ghost', heartbeat_at: 0, external_ids: new Map() })
          : update(NodeHeartbeatTable, [where(NodeHeartbeatTable, 'node', '==', 'blip-ghost')], {
              heartbeat_at: Date.now() * 1000 + i,
            }),
      );
    const planWrite = (i: number) =>
      client.transact(
        DB_NAME,
        mutate(GlobalTable, [], mapPut(GlobalTable, 'external_ids', { e2e_blip: String(i) })),
      );
    const blip = async (write: (i: number) => Promise<unknown>) => {
      const from = children.records(agent).length;
      process.kill(pid, 'SIGSTOP');
      try {
        for (let i = 0; i < 150; i++) await write(i);
        for (const m of cluster.members) await m.appctl('ovsdb-server/reconnect');
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      const back = () =>
        children
          .records(agent)
          .slice(from)
          .filter((r) => r.event === 'store-monitor');
      await waitFor(() => back().length >= 2, 30_000, `${agent}: both monitors back`);
      return new Map(back().map((r) => [r.db as string, r]));
    };
    const moved = await blip(heartbeat);
    process.stderr.write(`blip, 150 status transactions: ${JSON.stringify([...moved.values()])}\n`);
    assert.equal(moved.get(DB_NAME)?.resumed, true, 'the plan monitor resumed');
    // The same blip exceeded Sluice_Status's history: that monitor downloaded its (own, small) rows again.
    assert.equal(moved.get(STATUS_DB_NAME)?.resumed, false);
    // Negative control: the same 150 transactions in Sluice (where heartbeats were before 3.0.0): no resume there.
    const inPlan = await blip(planWrite);
    process.stderr.write(`blip, 150 Sluice transactions: ${JSON.stringify([...inPlan.values()])}\n`);
    assert.equal(inPlan.get(DB_NAME)?.resumed, false, 'a plan monitor past 100 Sluice transactions resyncs');
    await client.transact(
      DB_NAME,
      mutate(GlobalTable, [], [mapDelete(GlobalTable, 'external_ids', ['e2e_blip'])]),
    );
    await waitConverged(0, 60_000, 1000);
  });

  test('the Raft leader killed: a CLI change converges on the members left, 0 broken; the member rejoins', async () => {
    // The thawed member may start an election of its own: wait for the cluster to settle on a leader.
    await waitFor(async () => (await leader()) !== undefined, 30_000, 'a Raft leader');
    const victim = (await leader())!;
    const g0 = storeState().gen;
    const tKill = Date.now();
    await victim.stop('SIGKILL');
    const drained = web().backends[0]!.address;
    // The CLI is given every member (the dead one first when it was member 1): it must find a live one.
    await runSluice(['backend', 'drain', 'web', drained, '--db', allMembers()]);
    const tChange = Date.now();
    const g1 = await waitConverged(g0, 120_000);
    const tConverged = Date.now();
    assert.ok(g1 > g0, `the drain was published (g${g0} -> g${g1})`);
    const newLeader = await leader();
    assert.ok(newLeader && newLeader !== victim, 'another member leads');
    process.stderr.write(
      `leader kill: CLI change done ${tChange - tKill} ms after the kill; g${g0} -> g${g1} acknowledged by every node ${tConverged - tKill} ms after the kill\n`,
    );
    const c = await traffic!.report();
    assert.equal(c.broken, 0, `broken: ${JSON.stringify(c.brokenByReason)}`);
    assert.equal(c.failed, 0, `failed: ${JSON.stringify(c.failedByReason)}`);
    // The member restarted: it rejoins (cluster member, knows the leader) and serves the latest generation.
    await victim.start();
    await waitFor(
      async () => {
        const s = await victim.appctl('cluster/status', DB_NAME).catch(() => '');
        return /Status: cluster member/.test(s) && /Leader: (?!unknown)/.test(s);
      },
      60_000,
      'the restarted member rejoined',
    );
    const direct = new OvsdbClient({ remotes: [victim.unixRemote] });
    try {
      await direct.connect();
      const m = await direct.monitor(DB_NAME, { Global: {} });
      await waitFor(
        () => publishedGeneration(m.replica) === storeState().gen,
        60_000,
        'the restarted member serves the latest generation',
      );
    } finally {
      direct.close();
    }
    process.stderr.write(`leader kill: member restarted and caught up ${Date.now() - tConverged} ms later\n`);
  });

  test("a gateway agent SIGKILLed: the planner fences the gateway before it publishes past gw2's generation", async () => {
    const n0 = children.records('agent-gw2').length;
    const g0 = await waitConverged(0, 120_000, 1000);
    const tKill = Date.now();
    await children.kill('agent-gw2');
    // A change whose rollout needs gw2: drain a second backend (phased, so g0+1 is followed by g0+2).
    const drained = web().backends[1]!.address;
    await runSluice(['backend', 'drain', 'web', drained, '--db', allMembers()]);
    const fresh = () => plannerRecords().filter((r) => (r.time as number) >= tKill);
    // Wait on the planner's log records (not the store: the monitor update can arrive before the log line).
    const fencedRec = () => fresh().find((r) => r.event === 'fenced' && r.node === 'gw2');
    await waitFor(() => fencedRec() !== undefined, 90_000, 'the planner fenced gw2');
    const tFenced = fencedRec()!.time as number;
    for (const v of await ecmpSets()) assert.deepEqual(v, ['gw1'], 'gw2 left the ECMP set');
    const pastRec = () => fresh().filter((r) => r.event === 'publish' && (r.generation as number) === g0 + 2);
    await waitFor(() => pastRec().length > 0, 90_000, `g${g0 + 2} published without gw2`);
    assert.equal(pastRec().length, 1);
    const tPast = pastRec()[0]!.time as number;
    assert.ok(tPast > tFenced, `g${g0 + 2} published ${tPast - tFenced} ms after gw2 was fenced`);
    assert.equal(fencedRec()!.planner, pastRec()[0]!.planner, 'fenced and published by the active planner');
    // The store says so, and `sluice status` shows it.
    const row = nodeStatus(status.replica, 'gw2');
    assert.ok(fenceMarks(row).byPlanner !== undefined, 'fence recorded in Node_Status');
    const st = JSON.parse(await runSluice(['status', '--format', 'json', '--db', allMembers()])) as {
      nodes: Array<{ name: string; fenced: boolean; fencedBy: string | null }>;
    };
    const gw2 = st.nodes.find((n) => n.name === 'gw2');
    assert.deepEqual([gw2?.fenced, gw2?.fencedBy], [true, 'planner']);
    process.stderr.write(
      `dead agent: killed at 0, fenced at ${tFenced - tKill} ms, g${g0 + 2} published at ${tPast - tKill} ms\n`,
    );
    assert.ok(
      !children
        .records('agent-gw2')
        .slice(n0)
        .some((r) => r.event === 'withdrawn'),
      'the dead agent did not',
    );
    let c = await traffic!.report();
    assert.equal(c.broken, 0, `broken: ${JSON.stringify(c.brokenByReason)}`);
    // The agent restarted: it applies the released generation, acknowledges (deleting the record), re-announces.
    const n1 = children.records('agent-gw2').length;
    const tStart = Date.now();
    startAgent('gw2');
    await waitFor(
      () =>
        children
          .records('agent-gw2')
          .slice(n1)
          .some((r) => r.event === 'announced'),
      90_000,
      'gw2 re-announced',
    );
    const g = await waitConverged(g0 + 1, 120_000);
    process.stderr.write(`dead agent: restarted, converged at g${g} ${Date.now() - tStart} ms later\n`);
    for (const v of await ecmpSets()) assert.deepEqual(v, ['gw1', 'gw2']);
    const row2 = nodeStatus(status.replica, 'gw2');
    assert.equal(fenceMarks(row2).byPlanner, undefined, 'the rejoin deleted the record');
    traffic!.open(50);
    await sleep(3000);
    c = await traffic!.report();
    assert.equal(c.broken, 0, `broken: ${JSON.stringify(c.brokenByReason)}`);
    assert.equal(c.failed, 0, `failed: ${JSON.stringify(c.failedByReason)}`);
  });

  test('a gateway agent frozen (SIGSTOP) past the lease: fenced by the planner; thawed, it sees the record and rejoins', async () => {
    const g0 = await waitConverged(0, 120_000, 1000);
    const agent = children.get('agent-gw1')!;
    const n0 = children.records('agent-gw1').length;
    const tStop = Date.now();
    agent.kill('SIGSTOP');
    try {
      const fenced = () =>
        plannerRecords().find((r) => r.event === 'fenced' && r.node === 'gw1' && (r.time as number) >= tStop);
      await waitFor(() => fenced() !== undefined, 90_000, 'the planner fenced gw1');
      for (const v of await ecmpSets()) assert.deepEqual(v, ['gw2'], 'gw1 left the ECMP set');
      process.stderr.write(
        `frozen agent: stopped at 0, fenced at ${(fenced()!.time as number) - tStop} ms\n`,
      );
    } finally {
      agent.kill('SIGCONT');
    }
    const fresh = () => children.records('agent-gw1').slice(n0);
    await waitFor(() => fresh().some((r) => r.event === 'announced'), 90_000, 'gw1 re-announced');
    const how = fresh()
      .filter((r) => r.event === 'fenced-by-planner' || r.event === 'withdrawn')
      .map((r) => r.event);
    assert.deepEqual(
      how,
      ['fenced-by-planner'],
      'the thawed agent learnt from the record (its lease is 60 s)',
    );
    await waitFor(
      async () => (await ecmpSets()).every((v) => v.join() === 'gw1,gw2'),
      30_000,
      'both gateways in ECMP',
    );
    await waitFor(
      () => fenceMarks(nodeStatus(status.replica, 'gw1')).byPlanner === undefined,
      30_000,
      'the rejoin deleted the record',
    );
    await waitConverged(g0 - 1, 120_000);
    process.stderr.write(`frozen agent: thawed, rejoined via ${how.join(', ')}\n`);
    const c = await traffic!.report();
    assert.equal(c.broken, 0, `broken: ${JSON.stringify(c.brokenByReason)}`);
  });
});
