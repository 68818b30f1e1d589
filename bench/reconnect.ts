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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OvsdbClient } from '../src/ovsdb/client.ts';
import { startCluster, startStandalone } from '../src/ovsdb/server.ts';
import { ALL_TABLES_MONITOR, agentMonitor, DB_NAME, splitMonitor } from '../src/store/db/index.ts';
import { finish, machine, machineLine, median, ratio, say, writeSection } from './perf/common.ts';
import {
  CountingProxy,
  DEADLINE_MS,
  freshMonitor,
  kb,
  type MonitorRequests,
  nextUpdate,
  type Sample,
  Writer,
  withDeadline,
} from './reconnect-fixture.ts';

const SIZES = (process.env.RECONNECT_VIPS ?? '1000,10000').split(',').map(Number);
const CHANGES = (process.env.RECONNECT_CHANGES ?? '1,10').split(',').map(Number);
/** Heartbeat transactions (another node's Node_Status) while away, one round each with k = 1: whether the store's
 *  transaction history outlasts a busy disconnect. */
const BEATS = (process.env.RECONNECT_BEATS ?? '90,1000')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);

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
      // Each daemon's monitor of Sluice (the large one; its status rows are in Sluice_Status, a monitor of its own).
      ...(await subject(store, vips, w, proxy, remote, 'agent', splitMonitor(agentMonitor('host1'))[0]![1])),
      ...(await subject(store, vips, w, proxy, remote, 'planner', splitMonitor(ALL_TABLES_MONITOR)[0]![1])),
    ];
  } finally {
    w?.close();
    proxy.close();
    await servers.stop();
    running.delete(servers);
    rmSync(dir, { recursive: true, force: true });
  }
}

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
