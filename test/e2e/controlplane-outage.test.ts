// A control-plane outage must never take the data plane down (root, REAL ovsdb-server, planners and agents on the
// lab; design: docs/design/control-plane.md "Fencing"). 200 long-lived connections (the lab's clients: an echo every
// 200 ms that must come back within 3 s, the application-level TCP_USER_TIMEOUT of src/lab/conn-runner.ts; at least
// as strict as the socket option: an echo comes back only after its bytes were acknowledged, so any stall that
// leaves sent data unacknowledged for 3 s, which is what the option detects, also misses the echo deadline) run
// through, on one lab:
//   1. the standalone store SIGKILLed for 60 s, then restarted: 0 broken, new connections open during the outage,
//      no gateway leaves ECMP, everything converges afterwards without an operator;
//   3. every gateway cut off from the store (their agents reach it only through proxies the test closes) while the
//      planners and the store are fine, and a change published meanwhile: the planner holds the fence (`fence-held`),
//      publishes nothing past the generation the gateways could not acknowledge, 0 broken;
//   4. one gateway cut off while a backend add rolls out: the planner fences it (its next hop leaves the lab
//      router's ECMP routes) before it publishes past it; it rejoins through the record; 0 broken;
//   5. the store SIGKILLed the moment a rollout's phase-1 generation is published (30 s): 0 broken, and the rollout
//      resumes (phase 2 published) when the store returns;
//   negative control: the same as 1 (20 s) with the gateways' agents on the old rule (`--withdraw-on-store-silence`):
//      both gateways withdraw and the connections break, so test 1 can fail;
//   2. the lab's control plane moved onto a 3-member Raft store, two members SIGKILLed for 60 s (quorum lost), then
//      restarted: 0 broken on 200 new connections, new connections during the outage, converges afterwards.
// Every process is started through src/lab/control-plane.ts (pid files under the lab's run dir; labDown removes them)
// or is the Raft cluster this test started (stopped in `after`).

import * as assert from 'node:assert/strict';
import { cpSync, lstatSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ControlPlane,
  type ControlPlaneOptions,
  startAgent,
  startPlanner,
  startSluiceProcess,
  startStore,
  writeDesiredState,
} from '../../src/lab/control-plane.ts';
import { labFenceTemplate } from '../../src/lab/ecmp.ts';
import { killPidFile } from '../../src/lab/exec.ts';
import { expectedProgram, type Lab, labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic, type TrafficCounters } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import { type Monitor, type MonitorSet, OvsdbClient } from '../../src/ovsdb/client.ts';
import { type Cluster, startCluster } from '../../src/ovsdb/server.ts';
import { DB_NAME, DESIRED_STATE_MONITOR, desiredStateOps, splitMonitor } from '../../src/store/db/index.ts';
import { StoreProxy } from './helpers/store-proxy.ts';
import { readStoreState, STORE_STATE_TABLES, storeWatch } from './helpers/store-state.ts';

const PREFIX = 'slt-out-';
const isRoot = process.getuid?.() === 0;
const WEB = { vip: '203.0.113.10', port: 80 } as const;
const ADDED = 'host3-b2';
const DRAINED = 'host1-b1';
const CONNS = 200;
/** Default drain window (survival tests do not lengthen it). */
const OPTS: ControlPlaneOptions = { leaseSeconds: 10, marginSeconds: 5 };
const GATEWAYS = ['gw1', 'gw2'];

let lab: Lab;
let cp: ControlPlane;
let config: Config;
let remotes: () => string[] = () => [];
let status: MonitorSet | undefined;
let desired: Monitor | undefined;
let client: OvsdbClient | undefined;
/** The desired state the tests start from (without ADDED). */
let base: Config;
let cluster: Cluster | undefined;
const proxies = new Map<string, StoreProxy>();
const results: string[] = [];
let currentTraffic: Traffic | undefined;
const traffic0 = () => currentTraffic;

/** A monitor of the store's state through `remotes()` (reconnects by itself across outages). */
async function watchStore(): Promise<void> {
  client?.close();
  client = new OvsdbClient({ remotes: remotes(), database: DB_NAME, probeIntervalMs: 2000 });
  await client.connect();
  status = await client.monitorDatabases(splitMonitor(STORE_STATE_TABLES));
  desired = await client.monitor(DB_NAME, DESIRED_STATE_MONITOR);
}

const { storeState, waitConverged } = storeWatch(
  () => status!.replica,
  () => lab.nodes.map((n) => n.name),
  180_000,
  (node) => cp.startedAt(`agent-${node}`),
  (gen, desiredCfg) => cp.plannerIdleAt(gen, desiredCfg),
);

async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(100);
  }
}

const records = (name: string) => cp.records(name);
const plannerRecords = () => ['planner-a', 'planner-b'].flatMap((p) => records(p));
/** Records of `name` logged after `t` (ms). */
const since = (name: string, t: number) => records(name).filter((r) => (r.time as number) >= t);

async function ecmpSets(): Promise<string[][]> {
  return Object.values(await lab.ecmpGateways()).map((v) => [...v].sort());
}

/** `c` with the lab's backend `name` added to `web`. */
function withBackend(c: Config, name: string): Config {
  const b = lab.backend(name);
  const backend = {
    address: b.ip,
    port: lab.config.backendPort,
    host: b.host,
    weight: 1,
    state: 'active' as const,
  };
  return {
    ...c,
    loadBalancers: c.loadBalancers.map((lb) =>
      lb.name === 'web' ? { ...lb, backends: [...lb.backends, backend] } : lb,
    ),
  };
}

function withState(c: Config, name: string, state: 'active' | 'draining'): Config {
  const ip = lab.backend(name).ip;
  return {
    ...c,
    loadBalancers: c.loadBalancers.map((lb) => ({
      ...lb,
      backends: lb.backends.map((b) => (b.address === ip ? { ...b, state } : b)),
    })),
  };
}

/** Writes `c` as the desired state (the smallest transaction), retried while the store is not back yet. */
async function writeDesired(c: Config): Promise<void> {
  for (let i = 0; ; i++) {
    const ops = desiredStateOps(desired!.replica, c); // a bad config throws here, at once
    try {
      if (ops.length > 0) await client!.transact(DB_NAME, ...ops);
      break;
    } catch (e) {
      if (i > 60) throw e; // a Raft cluster may take a while to elect a leader again
      await sleep(1000);
    }
  }
  config = c;
}

/** Kills the standalone store (SIGKILL, by its pid file). */
async function killStore(): Promise<void> {
  const pid = await killPidFile(cp.pidFile('store'), expectedProgram(cp.pidFile('store'))!, {
    signal: 'SIGKILL',
  });
  assert.ok(pid !== undefined, 'the store was running');
}

/** Restarts the standalone store if a failed test left it down (so one failure does not fail the tests after it). */
async function ensureStore(): Promise<void> {
  if (cluster === undefined && cp.pid('store') === undefined) await startStore(cp);
}

/** Opens `n` new connections and waits until they all opened (greeting from a backend). */
async function openMore(traffic: Traffic, n: number): Promise<TrafficCounters> {
  const before = (await traffic.report()).opened;
  traffic.open(n, 50);
  return traffic.waitOpened(before + n, 30_000);
}

/** Starts a gateway's agent through its proxy (so the test can cut it off), hosts directly. */
function startNodeAgent(node: string, extra: readonly string[] = [], db?: string): void {
  const proxy = proxies.get(node);
  startAgent(cp, node, { ...OPTS, agentArgs: extra }, db ?? proxy?.remote ?? cp.db);
}

/** Why and where connections broke: by reason, by backend, and the ages at which they broke. */
function brokenDetail(c: TrafficCounters): string {
  const perBackend = Object.entries(c.perBackend)
    .filter(([, b]) => b.broken > 0)
    .map(([k, b]) => `${k} ${b.broken}/${b.opened}`);
  const ages = traffic0()
    ?.brokenEvents()
    .map((e) => Math.round(e.ageMs / 1000))
    .sort((a, b) => a - b);
  return `${JSON.stringify(c.brokenByReason)}; broken per backend: ${perBackend.join(', ')}; ages (s): ${ages?.join(',')}`;
}

function report(line: string): void {
  results.push(line);
  process.stderr.write(`${line}\n`);
}

describe('control-plane outages: the data plane keeps forwarding', { skip: !isRoot && 'needs root' }, () => {
  let traffic: Traffic | undefined;

  before(async () => {
    lab = await labUp({ prefix: PREFIX }, { replace: true });
    cp = new ControlPlane(lab);
    const full = lab.sluiceConfig();
    const added = lab.backend(ADDED).ip;
    config = {
      ...full,
      loadBalancers: full.loadBalancers.map((lb) =>
        lb.name === 'web' ? { ...lb, backends: lb.backends.filter((b) => b.address !== added) } : lb,
      ),
    };
    base = config;
    mkdirSync(cp.dir, { recursive: true });
    await startStore(cp);
    remotes = () => [cp.db];
    await writeDesiredState(cp.db, config);
    await watchStore();
    for (const gw of GATEWAYS) {
      const p = new StoreProxy(() => cp.socket);
      await p.open();
      proxies.set(gw, p);
    }
  });

  after(async () => {
    await traffic?.kill().catch(() => {});
    client?.close();
    for (const p of proxies.values()) p.cut();
    if (lab && process.env.SLUICE_KEEP_LOGS) {
      const dir = mkdtempSync(join(tmpdir(), 'sluice-outage-'));
      cpSync(cp.dir, dir, { recursive: true, filter: (src) => !lstatSync(src).isSocket() });
      process.stderr.write(`logs kept in ${dir}\n`);
    }
    if (lab) await labDown(PREFIX); // store, planners and agents (pid files under the run dir)
    await cluster?.stop();
    process.stderr.write(`outage results:\n  ${results.join('\n  ')}\n`);
  });

  test('control plane up with --fence-cmd, 200 long-lived connections', async () => {
    startPlanner(cp, 'planner-a', OPTS);
    await waitFor(() => cp.activePlanner() === 'planner-a', 120_000, 'planner-a holds the lock');
    startPlanner(cp, 'planner-b', OPTS);
    for (const n of lab.nodes) startNodeAgent(n.name);
    await waitConverged(0, 180_000, 1000);
    await waitFor(
      () => GATEWAYS.every((g) => records(`agent-${g}`).some((r) => r.event === 'announced')),
      60_000,
      'gateways announced',
    );
    for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS);
    traffic = await startTraffic(lab, { ...WEB, count: CONNS, rate: 200 });
    currentTraffic = traffic;
    await traffic.waitOpened(CONNS, 60_000);
  });

  test('1. the store SIGKILLed for 60 s: 0 broken, new connections open, no gateway leaves, converges', async (t) => {
    t.after(ensureStore);
    const t0 = Date.now();
    const g0 = storeState().gen;
    await killStore();
    await sleep(15_000); // past the lease: the old rule would have withdrawn both gateways by now
    for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS, 'both gateways still in ECMP');
    const during = await openMore(traffic!, 20);
    await waitFor(
      () => GATEWAYS.every((g) => since(`agent-${g}`, t0).some((r) => r.event === 'store-silent')),
      30_000,
      'both gateways noticed the silence',
    );
    await sleep(Math.max(0, t0 + 60_000 - Date.now()));
    for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS, 'both gateways still in ECMP after 60 s');
    const tUp = Date.now();
    await startStore(cp);
    // Converges without an operator: a planner takes the lock again, every agent reconnects.
    await waitFor(
      () =>
        plannerRecords().some((r) => r.event === 'lock' && r.state === 'held' && (r.time as number) >= tUp),
      60_000,
      'a planner holds the lock again',
    );
    await waitFor(
      () =>
        lab.nodes.every((n) =>
          since(`agent-${n.name}`, tUp).some((r) => r.event === 'ovsdb-state' && r.state === 'connected'),
        ),
      60_000,
      'every agent reconnected',
    );
    await waitConverged(g0 - 1, 120_000, 3000);
    const converged = Date.now() - tUp;
    for (const g of GATEWAYS)
      assert.ok(!since(`agent-${g}`, t0).some((r) => r.event === 'withdrawn'), `${g} withdrew`);
    assert.ok(
      !plannerRecords().some((r) => r.event === 'fence' && (r.time as number) >= t0),
      'nobody fenced',
    );
    const c = await traffic!.report();
    assert.equal(c.broken, 0, brokenDetail(c));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    report(
      `1 store killed 60 s: broken ${c.broken}/${c.opened} (20 opened during the outage: opened ${during.opened}), ` +
        `converged ${converged} ms after restart, run ${Date.now() - t0} ms`,
    );
  });

  test('3. every gateway cut off from the store: the planner holds the fence and waits; 0 broken', async () => {
    const t0 = Date.now();
    const g0 = storeState().gen;
    for (const p of proxies.values()) p.cut();
    try {
      await sleep(2000);
      await writeDesired(withState(config, DRAINED, 'draining'));
      const held = () => plannerRecords().filter((r) => r.event === 'fence-held' && (r.time as number) >= t0);
      await waitFor(
        () => held().some((r) => (r.nodes as string[]).length === 2),
        40_000,
        'the planner held the fence',
      );
      await sleep(Math.max(0, t0 + 22_000 - Date.now()));
      assert.deepEqual(
        plannerRecords().filter(
          (r) => (r.event === 'fence' || r.event === 'fenced') && (r.time as number) >= t0,
        ),
        [],
        'no gateway fenced',
      );
      for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS);
      const s = storeState();
      assert.equal(s.gen, g0 + 1, `published g${g0 + 1} (hosts) and nothing past it`);
      assert.equal(s.released, g0 + 1, 'released to the gateways, which could not acknowledge it');
      report(
        `3 gateways cut off ${Date.now() - t0} ms: fence held (${String(held()[0]?.msg)}), waited at g${s.gen}`,
      );
    } finally {
      for (const p of proxies.values()) await p.open();
    }
    await waitConverged(g0 + 1, 120_000, 3000);
    for (const g of GATEWAYS) assert.ok(!since(`agent-${g}`, t0).some((r) => r.event === 'withdrawn'));
    const gDrained = storeState().gen;
    await writeDesired(withState(config, DRAINED, 'active'));
    await waitConverged(gDrained, 120_000, 3000);
    const c = await traffic!.report();
    assert.equal(c.broken, 0, brokenDetail(c));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    report(`3 done: broken ${c.broken}/${c.opened}, run ${Date.now() - t0} ms`);
  });

  test('4. one gateway cut off while a backend add rolls out: fenced before the planner publishes past it', async () => {
    const t0 = Date.now();
    const g0 = storeState().gen;
    proxies.get('gw2')!.cut();
    let tFenced = 0;
    try {
      await writeDesired(withBackend(config, ADDED));
      const fenced = () =>
        plannerRecords().filter((r) => r.event === 'fenced' && r.node === 'gw2' && (r.time as number) >= t0);
      const past = () =>
        plannerRecords().filter(
          (r) => r.event === 'publish' && (r.generation as number) >= g0 + 2 && (r.time as number) >= t0,
        );
      await waitFor(() => past().length > 0, 90_000, `a generation past g${g0 + 1} published`);
      assert.equal(fenced().length, 1, 'gw2 fenced once');
      tFenced = fenced()[0]!.time as number;
      assert.ok((past()[0]!.time as number) > tFenced, 'the fence came first');
      for (const v of await ecmpSets()) assert.deepEqual(v, ['gw1'], 'gw2 out of ECMP');
      report(
        `4 gw2 cut at 0: fenced at ${tFenced - t0} ms, g${g0 + 2} published at ${(past()[0]!.time as number) - t0} ms`,
      );
    } finally {
      await proxies.get('gw2')!.open();
    }
    await waitFor(
      () => since('agent-gw2', tFenced).some((r) => r.event === 'announced'),
      90_000,
      'gw2 rejoined through the record',
    );
    assert.ok(since('agent-gw2', t0).some((r) => r.event === 'fenced-by-planner'));
    await waitConverged(g0 + 1, 180_000, 3000);
    for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS);
    const c = await traffic!.report();
    assert.equal(c.broken, 0, brokenDetail(c));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    report(`4 done: broken ${c.broken}/${c.opened}, run ${Date.now() - t0} ms`);
    // Removed again, so that no second chance waits for the (default, 300 s) drain window in the tests after this.
    const ip = lab.backend(ADDED).ip;
    const gAdded = storeState().gen;
    await writeDesired({
      ...config,
      loadBalancers: config.loadBalancers.map((lb) =>
        lb.name === 'web' ? { ...lb, backends: lb.backends.filter((b) => b.address !== ip) } : lb,
      ),
    });
    await waitConverged(gAdded, 120_000, 3000);
  });

  test('5. the store killed the moment phase 1 is published: forwarding holds, the rollout resumes', async (t) => {
    t.after(ensureStore);
    const t0 = Date.now();
    const g0 = storeState().gen;
    await writeDesired(withState(config, DRAINED, 'draining'));
    // The moment the planner publishes the phase-1 generation (hosts first), the store dies.
    let s = readStoreState(status!.replica);
    await waitFor(
      () => {
        s = readStoreState(status!.replica);
        return s.gen > g0 && s.phase1Slots > 0;
      },
      60_000,
      'a phase-1 generation published',
    );
    await killStore();
    const g1 = s.gen;
    const phase1 = s.phase1Slots;
    const releasedAtKill = s.released;
    await sleep(5000);
    const during = await openMore(traffic!, 20);
    await sleep(Math.max(0, t0 + 30_000 - Date.now()));
    for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS);
    const tUp = Date.now();
    await startStore(cp);
    // The rollout resumes: the phase-1 generation is released, acknowledged, and phase 2 follows.
    await waitConverged(g1, 180_000, 3000);
    assert.equal(storeState().phase1Slots, 0);
    assert.ok(
      plannerRecords().some(
        (r) => r.event === 'publish' && (r.generation as number) > g1 && (r.time as number) >= tUp,
      ),
      `the rollout resumed: a generation past g${g1} published after the store returned`,
    );
    const c = await traffic!.report();
    assert.equal(c.broken, 0, brokenDetail(c));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    report(
      `5 store killed at g${g1} (${phase1} phase-1 slots; released to gateways: g${releasedAtKill}) for 30 s: broken ${c.broken}/${c.opened} ` +
        `(opened ${during.opened} incl. 20 during), resumed to g${storeState().gen} ${Date.now() - tUp} ms after ` +
        `restart, run ${Date.now() - t0} ms`,
    );
    const gDrained = storeState().gen;
    await writeDesired(withState(config, DRAINED, 'active'));
    await waitConverged(gDrained, 120_000, 3000);
  });

  test('negative control: the old rule (withdraw on store silence) breaks the connections of test 1', async (t) => {
    t.after(ensureStore);
    // The gateways' agents restarted on the old rule (a restarted agent re-announces with an empty diff).
    const tRestart = Date.now();
    for (const g of GATEWAYS) {
      await killPidFile(cp.pidFile(`agent-${g}`), expectedProgram(cp.pidFile(`agent-${g}`))!, {
        signal: 'SIGTERM',
      });
      startNodeAgent(g, ['--withdraw-on-store-silence']);
    }
    await waitFor(
      () => GATEWAYS.every((g) => since(`agent-${g}`, tRestart).some((r) => r.event === 'announced')),
      90_000,
      'old-rule gateways announced',
    );
    const before = await traffic!.report();
    const t0 = Date.now();
    await killStore();
    // Lease 10 s + the withdraw + the clients' 3 s echo timeout, with room: at most the 20 s this always waited, but
    // no longer than until every gateway left ECMP and 90% of the connections broke (neither comes back while the
    // store is down).
    let sets = await ecmpSets();
    let c = await traffic!.report();
    const failed = () => sets.every((v) => v.length === 0) && c.broken - before.broken >= before.alive * 0.9;
    while (!failed() && Date.now() < t0 + 20_000) {
      await sleep(500);
      [sets, c] = await Promise.all([ecmpSets(), traffic!.report()]);
    }
    const broken = c.broken - before.broken;
    report(
      `negative control (old rule, store killed, read ${Date.now() - t0} ms after): broken ${broken}/${before.alive}, ` +
        `ECMP ${JSON.stringify(sets)}, ` +
        `withdrawn: ${GATEWAYS.filter((g) => since(`agent-${g}`, t0).some((r) => r.event === 'withdrawn')).join(',')}`,
    );
    await startStore(cp);
    assert.ok(
      broken >= before.alive * 0.9,
      `only ${broken} of ${before.alive} connections broke under the old rule`,
    );
    for (const v of sets) assert.deepEqual(v, [], 'every gateway withdrew');
    // Back to the new rule for what follows.
    const tBack = Date.now();
    for (const g of GATEWAYS) {
      await killPidFile(cp.pidFile(`agent-${g}`), expectedProgram(cp.pidFile(`agent-${g}`))!, {
        signal: 'SIGTERM',
      });
      startNodeAgent(g);
    }
    await waitFor(
      () => GATEWAYS.every((g) => since(`agent-${g}`, tBack).some((r) => r.event === 'announced')),
      90_000,
      'gateways announced again',
    );
  });

  test('2. a 3-member Raft store loses two members for 60 s: 0 broken, new connections open, converges', async () => {
    // Move the lab's control plane onto a Raft cluster: planners and agents given every member.
    await traffic?.stop();
    await cp.stop();
    const raftDir = join(cp.dir, 'raft');
    mkdirSync(raftDir, { recursive: true });
    // Raft between the members over mutual TLS with the lab store's certificate (made by startStore).
    cluster = await startCluster(raftDir, 3, { tls: cp.pki.files('store') });
    remotes = () => [...cluster!.remotes];
    await watchStore();
    await writeDesired(base);
    const db = remotes().join(',');
    const plannerArgs = [
      'planner',
      '--db',
      db,
      '--lease',
      '10',
      '--margin',
      '5',
      '--fence-cmd',
      labFenceTemplate(lab),
      '--metrics',
      '127.0.0.1:0',
    ];
    startSluiceProcess(cp, 'planner-a', plannerArgs);
    startSluiceProcess(cp, 'planner-b', plannerArgs);
    const tStart = Date.now();
    for (const n of lab.nodes) startNodeAgent(n.name, [], db);
    await waitConverged(0, 180_000, 2000);
    await waitFor(
      () => GATEWAYS.every((g) => since(`agent-${g}`, tStart).some((r) => r.event === 'announced')),
      60_000,
      'gateways announced',
    );
    traffic = await startTraffic(lab, { ...WEB, count: CONNS, rate: 200 });
    currentTraffic = traffic;
    await traffic.waitOpened(CONNS, 60_000);
    const g0 = storeState().gen;
    const t0 = Date.now();
    const victims = cluster.members.slice(1);
    for (const m of victims) await m.stop('SIGKILL');
    await sleep(15_000);
    for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS);
    const during = await openMore(traffic, 20);
    await sleep(Math.max(0, t0 + 60_000 - Date.now()));
    for (const v of await ecmpSets()) assert.deepEqual(v, GATEWAYS, 'both gateways still in ECMP after 60 s');
    const tUp = Date.now();
    for (const m of victims) await m.start();
    await waitConverged(g0 - 1, 180_000, 3000);
    const converged = Date.now() - tUp;
    // And a change rolls out again.
    await writeDesired(withState(config, DRAINED, 'draining'));
    await waitConverged(g0, 180_000, 3000);
    for (const g of GATEWAYS)
      assert.ok(!since(`agent-${g}`, t0).some((r) => r.event === 'withdrawn'), `${g} withdrew`);
    const c = await traffic.report();
    assert.equal(c.broken, 0, brokenDetail(c));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    report(
      `2 Raft quorum lost 60 s: broken ${c.broken}/${c.opened} (opened ${during.opened} incl. 20 during), ` +
        `converged ${converged} ms after the members restarted, run ${Date.now() - t0} ms`,
    );
  });
});
