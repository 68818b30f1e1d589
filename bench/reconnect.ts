// A daemon's store reconnect at 1,000 and 10,000 VIPs x 20 backends (`npm run bench -- reconnect`): the client's
// monitor_cond_since resume (src/ovsdb/client.ts) against a fresh full monitor in the same run, on the same store.
//
// No lab, no agents, not root: a one-member Raft store (ovsdb-server keeps transaction history only for clustered
// databases, so only there can a reconnect resume), and for comparison a standalone one, each in a private temp dir,
// stopped by its own PID. A writer fills the desired state and publishes the initial generation as the planner does
// (planNext, publishGenerationOps). The subjects are an agent's monitor (agentMonitor: the plan tables and its own
// status rows) and the planner's (every table); each reaches the store through a byte-counting TCP proxy in this
// process, which can cut every connection and refuse new ones. Per size and subject: connect and wait for the
// snapshot; cut; while it is away the writer makes `k` changes (k VIPs each get a backend, then every generation
// planNext plans until it has nothing left is published: the rollout of those edits); let it back in; measured: the
// bytes the store sent on the new connection and the time from the proxy accepting it to the monitor's update
// (resumed or resynced). Then a fresh client with the same monitor on the same state: bytes and time to its
// snapshot. k = 1 and 10 show whether a resume grows with what changed (it should) or with the store (it should not).
// Options (environment): RECONNECT_VIPS (default "1000,10000"), RECONNECT_CHANGES (default "1,10"),
// RECONNECT_BEATS (default "90,1000"), RECONNECT_PREVIOUS / RECONNECT_SAVE (results of another run, by size),
// RECONNECT_NO_WRITE=1 (print only).

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/model/schema.ts';
import { type Monitor, OvsdbClient, type UpdateInfo } from '../src/ovsdb/client.ts';
import type { MonitorCondRequest } from '../src/ovsdb/protocol.ts';
import { startCluster, startStandalone } from '../src/ovsdb/server.ts';
import { planNext } from '../src/rollout/planner.ts';
import {
  ALL_TABLES_MONITOR,
  agentMonitor,
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  insert,
  NodeStatusTable,
  PLAN_MONITOR,
  prunePlansOps,
  publishedGeneration,
  publishGenerationOps,
  readGeneration,
  storedDesiredCfg,
  update,
  where,
} from '../src/store/db/index.ts';
import { finish, machine, machineLine, median, ratio, say, writeSection } from './perf/common.ts';
import { syntheticDesiredDoc, writeInBatches } from './store-fixture.ts';

const SIZES = (process.env.RECONNECT_VIPS ?? '1000,10000').split(',').map(Number);
const CHANGES = (process.env.RECONNECT_CHANGES ?? '1,10').split(',').map(Number);
/** Heartbeat transactions (another node's Node_Status) while away, one round each with k = 1: whether the store's
 *  transaction history outlasts a busy disconnect. */
const BEATS = (process.env.RECONNECT_BEATS ?? '90,1000')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const KEEP = 5;

type MonitorRequests = { readonly [table: string]: MonitorCondRequest };
const DEADLINE_MS = 600_000;

/** A TCP proxy to one ovsdb-server unix socket that counts what the server sends and can cut and refuse. */
class CountingProxy {
  readonly #server: Server;
  readonly #pairs = new Set<[Socket, Socket]>();
  #refusing = false;
  /** Bytes from the server to clients, and when the latest connection was accepted. */
  bytes = 0;
  acceptedAt = 0;

  constructor(upstreamPath: string) {
    this.#server = createServer((down) => {
      if (this.#refusing) {
        down.destroy();
        return;
      }
      this.acceptedAt = performance.now();
      const up = tcpConnect({ path: upstreamPath });
      const pair: [Socket, Socket] = [down, up];
      this.#pairs.add(pair);
      up.on('data', (b: Buffer) => {
        this.bytes += b.length;
      });
      up.pipe(down);
      down.pipe(up);
      const end = () => {
        this.#pairs.delete(pair);
        up.destroy();
        down.destroy();
      };
      up.on('error', end).on('close', end);
      down.on('error', end).on('close', end);
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const addr = this.#server.address();
    if (addr === null || typeof addr === 'string') throw new Error('proxy has no TCP address');
    return `tcp:127.0.0.1:${addr.port}`;
  }

  /** Cuts every connection and refuses new ones until admit(). */
  cut(): void {
    this.#refusing = true;
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    this.#pairs.clear();
  }

  admit(): void {
    this.bytes = 0;
    this.#refusing = false;
  }

  close(): void {
    this.cut();
    this.#server.close();
  }
}

interface Sample {
  readonly bytes: number;
  readonly ms: number;
  readonly resumed: boolean;
}

interface Result {
  readonly store: 'raft' | 'standalone';
  readonly vips: number;
  readonly subject: string;
  readonly changes: number;
  /** Heartbeat transactions of another node while away. */
  readonly beats: number;
  /** Generations published while the subject was away. */
  readonly generations: number;
  readonly resume: Sample;
  readonly fresh: Sample;
}

function nextUpdate(m: Monitor): Promise<UpdateInfo> {
  return new Promise((resolve) => m.once('update', (_changes, info: UpdateInfo) => resolve(info)));
}

function withDeadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${DEADLINE_MS} ms`)), DEADLINE_MS);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** The store's writer: the desired state and the planner's publications, through its own direct session. */
class Writer {
  doc = syntheticDesiredDoc(0);
  added = 0;
  readonly client: OvsdbClient;
  readonly m: Monitor;
  constructor(client: OvsdbClient, m: Monitor) {
    this.client = client;
    this.m = m;
  }

  static async open(remote: string, vips: number): Promise<Writer> {
    const client = new OvsdbClient({ remotes: [remote] });
    await client.connect();
    const m = await client.monitor(DB_NAME, { ...DESIRED_STATE_MONITOR, ...PLAN_MONITOR });
    const w = new Writer(client, m);
    w.doc = syntheticDesiredDoc(vips);
    const doc = w.doc;
    await writeInBatches(
      vips,
      (k) =>
        desiredStateOps(m.replica, parseConfig({ ...doc, loadBalancers: doc.loadBalancers.slice(0, k) })),
      (ops) => client.transact(DB_NAME, ...(ops as Parameters<typeof client.transact>[1][])),
    );
    await w.rollout();
    return w;
  }

  /** Publishes every generation planNext plans for the current desired state; returns how many. */
  async rollout(): Promise<number> {
    const config = parseConfig(this.doc);
    let n = 0;
    for (;;) {
      const latest = readGeneration(this.m.replica) ?? null;
      const next = planNext({ config, latest, connections: () => 0, now: Date.now() }).next;
      if (next === null) return n;
      await this.client.transact(
        DB_NAME,
        ...publishGenerationOps(
          this.m.replica,
          next,
          storedDesiredCfg(this.m.replica),
          JSON.stringify(this.doc),
        ),
        ...prunePlansOps(this.m.replica, next.number - KEEP + 1),
      );
      while (publishedGeneration(this.m.replica) !== next.number) await new Promise((r) => setTimeout(r, 5));
      n++;
    }
  }

  /** `n` heartbeat transactions of node gw1 (its Node_Status row), one at a time as agents write them. */
  async beats(n: number): Promise<void> {
    if (n === 0) return;
    const node = `gw-beat-${this.added}`;
    await this.client.transact(DB_NAME, insert(NodeStatusTable, { node, heartbeat_at: 0 }));
    for (let i = 1; i <= n; i++)
      await this.client.transact(
        DB_NAME,
        update(NodeStatusTable, [where(NodeStatusTable, 'node', '==', node)], { heartbeat_at: i }),
      );
  }

  /** `k` VIPs get one more backend each (a new address every time), then their rollout. */
  async change(k: number): Promise<number> {
    const doc = structuredClone(this.doc);
    for (let i = 0; i < k; i++) {
      const n = this.added++;
      // A new array: the fixture's load balancers share one backends array (structuredClone keeps that sharing).
      const lb = doc.loadBalancers[1 + (n % (doc.loadBalancers.length - 1 || 1))]!;
      lb.backends = [
        ...lb.backends,
        { address: `10.1.${n >> 8}.${n & 255}`, port: 80, host: 'host2', weight: 1, state: 'active' },
      ];
    }
    this.doc = doc;
    await this.client.transact(DB_NAME, ...desiredStateOps(this.m.replica, parseConfig(doc)));
    return this.rollout();
  }

  close(): void {
    this.client.close();
  }
}

async function subject(
  store: Result['store'],
  vips: number,
  w: Writer,
  proxy: CountingProxy,
  remote: string,
  name: string,
  requests: MonitorRequests,
): Promise<Result[]> {
  const client = new OvsdbClient({ remotes: [remote], backoffInitialMs: 50, backoffMaxMs: 200 });
  const out: Result[] = [];
  try {
    await client.connect();
    const m = await client.monitor(DB_NAME, requests);
    await withDeadline(m.ready(DEADLINE_MS), `${name} snapshot`);
    const rounds = [...CHANGES.map((k) => ({ k, beats: 0 })), ...BEATS.map((beats) => ({ k: 1, beats }))];
    for (const { k, beats } of rounds) {
      proxy.cut();
      const generations = await w.change(k);
      await w.beats(beats);
      const update = nextUpdate(m);
      proxy.admit();
      const info = await withDeadline(update, `${name} reconnect`);
      const resume = {
        bytes: proxy.bytes,
        ms: performance.now() - proxy.acceptedAt,
        resumed: info.resumed === true,
      };
      const fresh = await freshMonitor(proxy, remote, requests);
      out.push({ store, vips, subject: name, changes: k, beats, generations, resume, fresh });
      say(
        `[${store} ${vips} VIPs ${name}, ${k} change(s), ${generations} generation(s), ${beats} beats] ` +
          `${resume.resumed ? 'resumed' : 'NOT resumed (snapshot)'}: ${resume.bytes} B, ${resume.ms.toFixed(0)} ms; ` +
          `fresh monitor: ${fresh.bytes} B, ${fresh.ms.toFixed(0)} ms`,
      );
    }
  } finally {
    client.close();
  }
  return out;
}

/** A new client with the same monitor: bytes the store sent it and the time to its snapshot. */
async function freshMonitor(
  proxy: CountingProxy,
  remote: string,
  requests: MonitorRequests,
): Promise<Sample> {
  proxy.admit();
  const t0 = performance.now();
  const client = new OvsdbClient({ remotes: [remote] });
  try {
    await client.connect();
    const m = await client.monitor(DB_NAME, requests);
    await withDeadline(m.ready(DEADLINE_MS), 'fresh snapshot');
    return { bytes: proxy.bytes, ms: performance.now() - t0, resumed: false };
  } finally {
    client.close();
  }
}

/** The stores of the size being measured: stopped on SIGTERM/SIGINT too (a deadline), never left running. */
const running = new Set<{ stop(): Promise<void> }>();
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.once(signal, () => {
    void Promise.all([...running].map((s) => s.stop())).finally(() => process.exit(1));
  });

async function size(store: Result['store'], vips: number): Promise<Result[]> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-reconnect-'));
  const servers =
    store === 'raft'
      ? await startCluster(dir, 1)
      : await startStandalone(dir).then((s) => ({ remotes: [s.unixRemote], stop: () => s.stop() }));
  running.add(servers);
  const upstream = servers.remotes[0]!.slice('unix:'.length);
  const proxy = new CountingProxy(upstream);
  let w: Writer | undefined;
  try {
    const remote = await proxy.listen();
    w = await Writer.open(servers.remotes[0]!, vips);
    return [
      ...(await subject(store, vips, w, proxy, remote, 'agent', agentMonitor('host1'))),
      ...(await subject(store, vips, w, proxy, remote, 'planner', ALL_TABLES_MONITOR)),
    ];
  } finally {
    w?.close();
    proxy.close();
    await servers.stop();
    running.delete(servers);
    rmSync(dir, { recursive: true, force: true });
  }
}

const kb = (b: number) => (b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);

function report(results: readonly Result[], m: ReturnType<typeof machine>): string {
  const prose =
    'No lab, no agents: a one-member Raft store (ovsdb-server keeps the transaction history a resume needs only for ' +
    'clustered databases) and a standalone one for comparison; every VIP has 20 backends, slotBits 8, and the ' +
    "initial generation is published. The subject (an agent's monitor: plan tables and its own status rows; the " +
    "planner's: every table) reaches the store through a byte-counting proxy that cuts its connection; while it is " +
    'away, k VIPs each get a backend and every generation of that rollout is published (with pruning, 5 plans ' +
    'kept), and in the last round another node also writes its heartbeat that many times; then it is let back in. **resume**: the bytes the store sent on the new connection (schema, `_Server` ' +
    "monitor and the monitor reply, everything) and the time from the proxy accepting it to the monitor's update; " +
    '**fresh**: a new client with the same monitor on the same state, bytes and time to its snapshot.';
  const title = '## Store reconnect: monitor_cond_since resume vs a fresh full monitor';
  const lines = [title, '', machineLine(m, 'npm run bench -- reconnect'), '', prose, ''];
  lines.push(
    '| store | VIPs | monitor | k | other transactions while away | generations while away | resumed | resume bytes | fresh bytes | bytes ratio | resume time | fresh time | time ratio |',
  );
  lines.push('| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results)
    lines.push(
      `| ${r.store} | ${r.vips.toLocaleString('en')} | ${r.subject} | ${r.changes} | ${r.beats} | ${r.generations} | ` +
        `${r.resume.resumed ? 'yes' : '**no**'} | ${kb(r.resume.bytes)} | ${kb(r.fresh.bytes)} | ` +
        `${ratio(r.resume.bytes, r.fresh.bytes, 4)} | ${r.resume.ms.toFixed(0)} ms | ${r.fresh.ms.toFixed(0)} ms | ` +
        `${ratio(r.resume.ms, r.fresh.ms, 3)} |`,
    );
  lines.push('');
  const raft = results.filter((r) => r.store === 'raft' && r.resume.resumed);
  if (raft.length > 0)
    lines.push(
      `Raft, resumed: median resume ${kb(median(raft.map((r) => r.resume.bytes)))} against ` +
        `${kb(median(raft.map((r) => r.fresh.bytes)))} for a fresh monitor.`,
    );
  return lines.join('\n').trimEnd();
}

/** Results of an earlier run to keep for the sizes this run does not measure (RECONNECT_PREVIOUS: the JSON this bench
 *  saves to RECONNECT_SAVE after every size), so 1,000 and 10,000 VIPs can run in separate lock holds. */
function previous(): Result[] {
  const file = process.env.RECONNECT_PREVIOUS;
  if (file === undefined || !existsSync(file)) return [];
  return (JSON.parse(readFileSync(file, 'utf8')) as Result[]).filter((r) => !SIZES.includes(r.vips));
}

async function main(): Promise<void> {
  const m = machine();
  const results: Result[] = previous();
  const save = process.env.RECONNECT_SAVE ?? join(tmpdir(), 'sluice-reconnect-results.json');
  // Standalone never resumes (no transaction history): shown at the smallest size only.
  for (const vips of SIZES)
    for (const store of ['raft', 'standalone'] as const)
      if (store === 'raft' || vips === Math.min(...SIZES)) {
        results.push(...(await size(store, vips)));
        writeFileSync(save, JSON.stringify(results));
        // The section after every size: a run stopped by its deadline keeps what it measured.
        results.sort((a, b) => a.vips - b.vips || a.store.localeCompare(b.store));
        const body = report(results, finish(m));
        if (process.env.RECONNECT_NO_WRITE === '1') console.log(body);
        else writeSection('reconnect', body);
      }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
