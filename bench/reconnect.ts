// A daemon's store reconnect at 1,000 and 10,000 VIPs x 20 backends (`npm run bench -- reconnect`): the client's
// monitor_cond_since resume (src/ovsdb/client.ts) against fresh monitors in the same run, on the same store.
//
// No lab, no agents, not root: a one-member Raft store (ovsdb-server keeps transaction history only for clustered
// databases, so only there can a reconnect resume), and for comparison a standalone one, each in a private temp dir,
// stopped by its own PID, each serving Sluice and Sluice_Status. A writer fills the desired state and publishes the
// initial generation as the planner does (planNext, publishGenerationOps). The subjects are an agent's session and
// the planner's, as the daemons open them (monitorDatabases: one monitor of Sluice, one of Sluice_Status); each
// reaches the store through a byte-counting TCP proxy in this process, which can cut every connection and refuse new
// ones. Per size and subject: connect and wait for the snapshots; cut; while it is away the writer makes `k` changes
// (k VIPs each get a backend, then every generation planNext plans until it has nothing left is published: the
// rollout of those edits), and in some rounds heartbeats (Sluice_Status) or, the negative control, as many other
// transactions in Sluice; let it back in; measured: the bytes the store sent on the new connection and the time from
// the proxy accepting it to both monitors' re-establishment. Then a fresh client with the same monitors on the same
// state: bytes and time to its snapshots. k = 1 and 10 show whether a resume grows with what changed (it should) or
// with the store (it should not).
// Options (environment): RECONNECT_VIPS (default "1000,10000"), RECONNECT_CHANGES (default "1,10"),
// RECONNECT_BEATS (default "90,1000"), RECONNECT_SLUICE_WRITES (default 1000; 0: no negative control),
// RECONNECT_STORES (default "raft,standalone"), RECONNECT_PREVIOUS / RECONNECT_SAVE (results of another run, by
// size), RECONNECT_NO_WRITE=1 (print only).

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Monitor, type MonitorSet, OvsdbClient, type Reestablished } from '../src/ovsdb/client.ts';
import { startCluster, startStandalone } from '../src/ovsdb/server.ts';
import {
  ALL_TABLES_MONITOR,
  agentMonitor,
  DB_NAME,
  STATUS_DB_NAME,
  splitMonitor,
} from '../src/store/db/index.ts';
import { finish, machine, machineLine, median, ratio, say, writeSection } from './perf/common.ts';
import {
  CountingProxy,
  freshMonitors,
  kb,
  type MonitorRequests,
  type Sample,
  Writer,
  withDeadline,
} from './reconnect-fixture.ts';

const SIZES = (process.env.RECONNECT_VIPS ?? '1000,10000').split(',').map(Number);
const CHANGES = (process.env.RECONNECT_CHANGES ?? '1,10').split(',').map(Number);
/** Heartbeat transactions (another node's Node_Heartbeat, in Sluice_Status) while away, one round each with k = 1:
 *  whether the store's transaction history outlasts a busy disconnect. */
const BEATS = (process.env.RECONNECT_BEATS ?? '90,1000')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
/** The negative control: that many transactions in Sluice itself while away (where heartbeats were before 3.0.0). */
const SLUICE_WRITES = Number(process.env.RECONNECT_SLUICE_WRITES ?? 1000);

interface Result {
  readonly store: 'raft' | 'standalone';
  readonly vips: number;
  readonly subject: string;
  readonly changes: number;
  /** Heartbeat transactions of another node while away (Sluice_Status). */
  readonly beats: number;
  /** Other transactions in Sluice while away (the negative control). */
  readonly sluiceWrites?: number;
  /** Generations published while the subject was away. */
  readonly generations: number;
  /** `resumed`: its monitor of Sluice resumed; `statusResumed`: its monitor of Sluice_Status did. */
  readonly resume: Sample & { readonly statusResumed?: boolean };
  readonly fresh: Sample;
}

type Parts = readonly (readonly [string, MonitorRequests])[];

/** Resolves once every monitor of `set` was re-established after a reconnect, with how each came back. */
function reestablished(set: MonitorSet): Promise<Map<string, Reestablished>> {
  return new Promise((resolve) => {
    const seen = new Map<string, Reestablished>();
    const on = (r: Reestablished, m: Monitor) => {
      seen.set(m.db, r);
      if (seen.size < set.monitors.length) return;
      set.off('reestablished', on);
      resolve(seen);
    };
    set.on('reestablished', on);
  });
}

async function subject(
  store: Result['store'],
  vips: number,
  w: Writer,
  proxy: CountingProxy,
  remote: string,
  name: string,
  parts: Parts,
): Promise<Result[]> {
  const client = new OvsdbClient({ remotes: [remote], backoffInitialMs: 50, backoffMaxMs: 200 });
  const out: Result[] = [];
  try {
    await client.connect();
    // As the daemon monitors the store since schema 3.0.0: one session, a monitor per database.
    const set = await withDeadline(client.monitorDatabases(parts), `${name} snapshot`);
    const rounds = [
      ...CHANGES.map((k) => ({ k, beats: 0, sluiceWrites: 0 })),
      ...BEATS.map((beats) => ({ k: 1, beats, sluiceWrites: 0 })),
      ...(SLUICE_WRITES > 0 ? [{ k: 1, beats: 0, sluiceWrites: SLUICE_WRITES }] : []),
    ];
    for (const { k, beats, sluiceWrites } of rounds) {
      proxy.cut();
      const generations = await w.change(k);
      await w.beats(beats);
      await w.sluiceWrites(sluiceWrites);
      const back = reestablished(set);
      proxy.admit();
      const how = await withDeadline(back, `${name} reconnect`);
      const resume = {
        bytes: proxy.bytes,
        ms: performance.now() - proxy.acceptedAt,
        resumed: how.get(DB_NAME)?.resumed === true,
        statusResumed: how.get(STATUS_DB_NAME)?.resumed === true,
      };
      const fresh = await freshMonitors(proxy, remote, parts);
      out.push({ store, vips, subject: name, changes: k, beats, sluiceWrites, generations, resume, fresh });
      say(
        `[${store} ${vips} VIPs ${name}, ${k} change(s), ${generations} generation(s), ${beats} beats, ` +
          `${sluiceWrites} Sluice writes] Sluice ${resume.resumed ? 'resumed' : 'NOT resumed (snapshot)'}, ` +
          `Sluice_Status ${resume.statusResumed ? 'resumed' : 'snapshot'}: ${resume.bytes} B, ` +
          `${resume.ms.toFixed(0)} ms; fresh monitors: ${fresh.bytes} B, ${fresh.ms.toFixed(0)} ms`,
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
      // Each daemon's monitors: Sluice (the large one) and its rows of Sluice_Status.
      ...(await subject(store, vips, w, proxy, remote, 'agent', splitMonitor(agentMonitor('host1')))),
      ...(await subject(store, vips, w, proxy, remote, 'planner', splitMonitor(ALL_TABLES_MONITOR))),
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
    'clustered databases) and a standalone one for comparison, each serving Sluice and Sluice_Status (schema ' +
    '3.0.0); every VIP has 20 backends, slotBits 8, and the initial generation is published. The subject is a ' +
    "daemon's session as `sluice agent` and `sluice planner` open it: one monitor of Sluice (the agent's: plan " +
    "tables and its acknowledgement row; the planner's: every table) and one of Sluice_Status (the agent's own " +
    "rows; the planner's: every status row), through a byte-counting proxy that cuts it. While it is away, k VIPs " +
    'each get a backend and every generation of that rollout is published (with pruning, 5 plans kept); in the ' +
    'heartbeat rounds another node also writes its heartbeat that many times (Sluice_Status, where agents write ' +
    'them); in the **negative control** round as many transactions are written into Sluice itself (where ' +
    'heartbeats were before 3.0.0). Then it is let back in. **resume**: the bytes the store sent on the new ' +
    'connection (schema, `_Server` monitor and both monitor replies, everything) and the time from the proxy ' +
    "accepting it to both monitors' re-establishment; **fresh**: a new client with the same two monitors on the " +
    'same state, bytes and time to its snapshots.';
  const title = '## Store reconnect: monitor_cond_since resume vs a fresh full monitor';
  const lines = [title, '', machineLine(m, 'npm run bench -- reconnect'), '', prose, ''];
  lines.push(
    '| store | VIPs | daemon | k | heartbeats while away (Sluice_Status) | other Sluice transactions while away | generations while away | Sluice resumed | Sluice_Status resumed | resume bytes | fresh bytes | bytes ratio | resume time | fresh time | time ratio |',
  );
  lines.push(
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of results)
    lines.push(
      `| ${r.store} | ${r.vips.toLocaleString('en')} | ${r.subject} | ${r.changes} | ${r.beats} | ` +
        `${r.sluiceWrites ?? 0} | ${r.generations} | ${r.resume.resumed ? 'yes' : '**no**'} | ` +
        `${r.resume.statusResumed ? 'yes' : 'no'} | ${kb(r.resume.bytes)} | ${kb(r.fresh.bytes)} | ` +
        `${ratio(r.resume.bytes, r.fresh.bytes, 4)} | ${r.resume.ms.toFixed(0)} ms | ${r.fresh.ms.toFixed(0)} ms | ` +
        `${ratio(r.resume.ms, r.fresh.ms, 3)} |`,
    );
  lines.push('');
  const raft = results.filter((r) => r.store === 'raft' && r.resume.resumed);
  if (raft.length > 0)
    lines.push(
      `Raft, Sluice resumed: median resume ${kb(median(raft.map((r) => r.resume.bytes)))} against ` +
        `${kb(median(raft.map((r) => r.fresh.bytes)))} for fresh monitors.`,
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
  // Standalone never resumes (no transaction history): shown at the smallest size only (RECONNECT_STORES=raft: never).
  const stores = (process.env.RECONNECT_STORES ?? 'raft,standalone').split(',');
  for (const vips of SIZES)
    for (const store of ['raft', 'standalone'] as const)
      if (stores.includes(store) && (store === 'raft' || vips === Math.min(...SIZES))) {
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
