// How long a daemon can be away from the store and still resume its monitor (monitor_cond_since), at 10,000 VIPs x 20
// backends, with N agents writing while it is away (`npm run bench -- reconnect-window`).
//
// No lab, not root: one ovsdb-server (a one-member Raft cluster, the only kind that keeps transaction history) serving
// two databases: Sluice, and Sluice_Status (generated in the run's temp dir from
// schema/sluice-status.ovsschema plus the simulation's Node_Status table: where schema 3.0.0 puts heartbeats).
// The agents are SIMULATED: one client writes their heartbeats (each one transaction updating that agent's Node_Status
// row and marks, as the agent's heartbeat does, without connection reports). A blip of T seconds is written as the
// transactions N agents make in T seconds (N x T x 1000 / heartbeat ms), as fast as the server takes them: ovsdb-server
// trims its history by count and size, never by time (bench/txn-history.ts), so the count decides; the bench says
// what its model predicted and what the real server did.
// The subject: an agent's monitor of Sluice (plan tables and its own status rows) through a byte-counting proxy that
// cuts it for the blip. Layouts, in the same run on the same store: where the heartbeats go and how often, and where
// the acknowledgements go. Scenarios: `idle` (only heartbeats while away) and `rollout` (one VIP gets a backend and
// its generations are published, each acknowledged by every agent). Measured: resumed or not, bytes the store sent on
// the new connection and the time to the monitor's re-establishment, against a fresh monitor's snapshot.
// Options (environment): WINDOW_VIPS (default 10000), WINDOW_AGENTS (default "4,100"), WINDOW_BLIPS (seconds,
// default "5,30,120"), WINDOW_LAYOUTS (default all: "0,1,2,3"), WINDOW_NO_WRITE=1 (print only).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Monitor, OvsdbClient } from '../src/ovsdb/client.ts';
import type { Operation } from '../src/ovsdb/protocol.ts';
import { type Cluster, sluiceSchemaPath, sluiceStatusSchemaPath, startCluster } from '../src/ovsdb/server.ts';
import {
  agentMonitor,
  DB_NAME,
  mapDelete,
  mapInsert,
  mutate,
  NodeStatusTable,
  publishedGeneration,
  splitMonitor,
  where,
} from '../src/store/db/index.ts';
import { finish, machine, machineLine, ratio, say, writeSection } from './perf/common.ts';
import {
  CountingProxy,
  DEADLINE_MS,
  freshMonitor,
  kb,
  type MonitorRequests,
  type Sample,
  Writer,
  withDeadline,
} from './reconnect-fixture.ts';
import { canResume } from './txn-history.ts';

const VIPS = Number(process.env.WINDOW_VIPS ?? 10_000);
const AGENTS = (process.env.WINDOW_AGENTS ?? '4,100').split(',').map(Number);
const BLIPS = (process.env.WINDOW_BLIPS ?? '5,30,120').split(',').map(Number);
const STATUS_DB = 'Sluice_Status';
const SUBJECT = 'host1';
/** Writes in flight from the simulated agents' client. */
const IN_FLIGHT = 32;

type Db = typeof DB_NAME | typeof STATUS_DB;

interface Layout {
  readonly name: string;
  readonly beatsIn: Db;
  readonly beatMs: number;
  readonly acksIn: Db;
}

const ALL_LAYOUTS: readonly Layout[] = [
  { name: 'before 3.0.0: heartbeats in Sluice, 1 s', beatsIn: DB_NAME, beatMs: 1000, acksIn: DB_NAME },
  // Heartbeats every 2 s while nothing moves (`sluice agent --idle-heartbeat 2000`, the longest a 10 s lease allows:
  // src/agent/beat-cadence.ts); idle only: while the plan moves such an agent beats every second, as before.
  { name: '(b) idle heartbeats in Sluice, 2 s', beatsIn: DB_NAME, beatMs: 2000, acksIn: DB_NAME },
  // Schema 3.0.0 with Sluice_Status 1.0.0: heartbeats and reports in Sluice_Status, acknowledgements in Sluice.
  {
    name: 'Sluice_Status 1.0.0: heartbeats there, acks in Sluice',
    beatsIn: STATUS_DB,
    beatMs: 1000,
    acksIn: DB_NAME,
  },
  // Sluice_Status 1.1.0 (what the product does now): the acknowledgements there too, with the heartbeats.
  {
    name: 'Sluice_Status 1.1.0: heartbeats and acks there',
    beatsIn: STATUS_DB,
    beatMs: 1000,
    acksIn: STATUS_DB,
  },
];
/** WINDOW_LAYOUTS: which layouts run (indexes into ALL_LAYOUTS, default all); the first one always runs (the
 *  boundary rounds and the same-run baseline). */
const LAYOUTS: readonly Layout[] = [
  ALL_LAYOUTS[0]!,
  ...(process.env.WINDOW_LAYOUTS ?? ALL_LAYOUTS.map((_, i) => i).join(','))
    .split(',')
    .map(Number)
    .filter((i) => i > 0 && i < ALL_LAYOUTS.length)
    .map((i) => ALL_LAYOUTS[i]!),
];

type Scenario = 'idle' | 'rollout';

interface Round {
  readonly layout: string;
  readonly agents: number;
  readonly blipS: number;
  readonly scenario: Scenario;
  /** Transactions committed in Sluice while the subject was away. */
  readonly sluiceTxns: number;
  readonly predicted: boolean;
  readonly resume: Sample;
}

/** The simulation's schemas: its writers keep one row shape in both databases (the Node_Status row of schema 2.2.0,
 *  heartbeat_at included), so every layout writes the same atoms and only where they go differs. `Sluice`: the real
 *  schema plus Node_Status.heartbeat_at; `Sluice_Status`: the real status schema plus that Node_Status table. */
function simSchemas(dir: string): { sluice: string; status: string } {
  const sluice = JSON.parse(readFileSync(sluiceSchemaPath(), 'utf8'));
  const status = JSON.parse(readFileSync(sluiceStatusSchemaPath(), 'utf8'));
  sluice.tables.Node_Status.columns.heartbeat_at = { type: 'integer' };
  status.tables.Node_Status = sluice.tables.Node_Status;
  const paths = {
    sluice: join(dir, 'sim-sluice.ovsschema'),
    status: join(dir, 'sim-sluice-status.ovsschema'),
  };
  writeFileSync(paths.sluice, JSON.stringify(sluice));
  writeFileSync(paths.status, JSON.stringify(status));
  return paths;
}

const simName = (i: number) => `sim-host-${i}`;

/** The simulated agents: one client writing every agent's heartbeats and acknowledgements. */
class Agents {
  readonly client: OvsdbClient;
  #beat = 0;
  constructor(client: OvsdbClient) {
    this.client = client;
  }

  /** Node_Status rows for `n` agents and the subject in both databases (kept across rounds). */
  async ensure(n: number): Promise<void> {
    for (const db of [DB_NAME, STATUS_DB]) {
      const have = new Set(
        (
          (await this.client.transact(db, {
            op: 'select',
            table: NodeStatusTable.name,
            where: [],
            columns: ['node'],
          })) as { rows: { node: string }[] }[]
        )[0]!.rows.map((r) => r.node),
      );
      const want = [SUBJECT, ...Array.from({ length: n }, (_, i) => simName(i))].filter((x) => !have.has(x));
      if (want.length > 0)
        await this.client.transact(
          db,
          ...want.map(
            (node) =>
              ({
                op: 'insert',
                table: NodeStatusTable.name,
                row: { node, applied_generation: 0, applied_cfg: 0, applied_at: 0, heartbeat_at: 0 },
              }) as Operation,
          ),
        );
    }
  }

  /** One agent's heartbeat as agents of schema 2.2.0 wrote it (Node_Status columns and its marks), without a
   *  report. */
  #beatOps(node: string, generation?: number): Operation[] {
    const now = Date.now() + ++this.#beat; // distinct every time: a transaction that changes nothing is not kept
    const me = [where(NodeStatusTable, 'node', '==', node)];
    return [
      {
        op: 'update',
        table: NodeStatusTable.name,
        where: me,
        row: {
          heartbeat_at: now,
          ...(generation === undefined ? {} : { applied_generation: generation, applied_at: now }),
        },
      },
      mutate(NodeStatusTable, me, [
        mapDelete(NodeStatusTable, 'external_ids', ['fenced', 'role', 'second_chance_packets', 'report_at']),
        mapInsert(NodeStatusTable, 'external_ids', {
          fenced: 'false',
          role: 'host',
          second_chance_packets: '{}',
          report_at: String(now),
        }),
      ]),
    ];
  }

  /** `count` heartbeats of agents 0..n-1 in turn, into `db`, IN_FLIGHT at a time. */
  async beats(db: Db, n: number, count: number): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        await this.client.transact(db, ...this.#beatOps(simName(i % n)));
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  }

  /** Every agent acknowledges `generation`, one transaction each. */
  async acks(db: Db, n: number, generation: number): Promise<void> {
    await Promise.all(
      Array.from({ length: n }, (_, i) => this.client.transact(db, ...this.#beatOps(simName(i), generation))),
    );
  }

  /** The subject's own heartbeat in Sluice: its monitor sees it, so its last transaction is the newest one. */
  async subjectBeat(m: Monitor): Promise<void> {
    const ops = this.#beatOps(SUBJECT);
    await this.client.transact(DB_NAME, ...ops);
    const want = (ops[0] as unknown as { row: { heartbeat_at: number } }).row.heartbeat_at;
    const deadline = Date.now() + 10_000;
    while (!m.replica.rows(NodeStatusTable.name).some((r) => r.node === SUBJECT && r.heartbeat_at === want)) {
      if (Date.now() > deadline) throw new Error('the subject never saw its own heartbeat');
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

/** Waits until the monitor is established on a new connection (a resume with nothing new emits no update). */
async function reestablished(m: Monitor, before: string | undefined): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (m._activeId === undefined || m._activeId === before) {
    if (Date.now() > deadline) throw new Error(`no re-established monitor in ${DEADLINE_MS} ms`);
    await new Promise((r) => setImmediate(r));
  }
}

interface Env {
  readonly w: Writer;
  readonly agents: Agents;
  readonly proxy: CountingProxy;
  readonly m: Monitor;
}

/** One disconnect. `exactBeats`: exactly this many heartbeats instead of the blip's (the history's boundary). */
async function round(
  env: Env,
  layout: Layout,
  n: number,
  blipS: number,
  scenario: Scenario,
  exactBeats?: number,
): Promise<Round> {
  const { w, agents, proxy, m } = env;
  if (layout.beatsIn === DB_NAME) await agents.subjectBeat(m);
  const before = m._activeId;
  const resumes = m.resumes;
  proxy.cut();
  let sluiceTxns = 0;
  if (scenario === 'rollout') {
    const generations = await w.change(1);
    sluiceTxns += 1 + generations; // the desired-state edit, then one transaction per published generation
    const latest = publishedGeneration(w.m.replica);
    for (let g = latest - generations + 1; g <= latest; g++) await agents.acks(layout.acksIn, n, g);
    if (layout.acksIn === DB_NAME) sluiceTxns += n * generations;
  }
  const beats = exactBeats ?? Math.round((n * blipS * 1000) / layout.beatMs);
  await agents.beats(layout.beatsIn, n, beats);
  if (layout.beatsIn === DB_NAME) sluiceTxns += beats;
  proxy.admit();
  await withDeadline(reestablished(m, before), 'reconnect');
  const resume = {
    bytes: proxy.bytes,
    ms: performance.now() - proxy.acceptedAt,
    resumed: m.resumes > resumes,
  };
  const predicted = canResume(0, Array(sluiceTxns).fill(0), Number.POSITIVE_INFINITY);
  const r: Round = { layout: layout.name, agents: n, blipS, scenario, sluiceTxns, predicted, resume };
  say(
    `[${layout.name}, ${n} agents, ${blipS} s away, ${scenario}] ${sluiceTxns} Sluice transactions: ` +
      `${resume.resumed ? 'resumed' : 'NOT resumed'} (model: ${predicted ? 'resume' : 'snapshot'}), ` +
      `${kb(resume.bytes)}, ${resume.ms.toFixed(0)} ms`,
  );
  return r;
}

interface Run {
  readonly rounds: Round[];
  readonly fresh: Sample;
  /** The subject's own rows in Sluice_Status: what its second monitor re-downloads when that one cannot resume. */
  readonly statusFresh: Sample;
  readonly memory: string;
}

async function measure(servers: Cluster, proxy: CountingProxy, remote: string): Promise<Run> {
  const w = await Writer.open(servers.remotes[0]!, VIPS);
  const direct = new OvsdbClient({ remotes: [servers.remotes[0]!] });
  const subject = new OvsdbClient({ remotes: [remote], backoffInitialMs: 50, backoffMaxMs: 200 });
  try {
    await direct.connect();
    const agents = new Agents(direct);
    await agents.ensure(Math.max(...AGENTS));
    // The subject's monitor of Sluice (plans and its own Node_Status row, as the simulation writes it there).
    const requests: MonitorRequests = splitMonitor(agentMonitor(SUBJECT))[0]![1];
    const fresh = await freshMonitor(proxy, remote, requests);
    const statusFresh = await freshMonitor(proxy, remote, {
      Node_Status: { where: [['node', '==', SUBJECT]] },
    }).catch(() => ({ bytes: Number.NaN, ms: Number.NaN, resumed: false }));
    say(`fresh monitor: ${kb(fresh.bytes)} in ${fresh.ms.toFixed(0)} ms`);
    await subject.connect();
    const m = await subject.monitor(DB_NAME, requests);
    await withDeadline(m.ready(DEADLINE_MS), 'subject snapshot');
    const env = { w, agents, proxy, m };
    // The boundary first: the subject's own transaction plus 99 later ones are kept, 100 later ones are not.
    const rounds: Round[] = [];
    for (const exact of [99, 100]) rounds.push(await round(env, LAYOUTS[0]!, 1, 0, 'idle', exact));
    for (const scenario of ['idle', 'rollout'] as const)
      for (const layout of LAYOUTS) {
        // Idle, the two Sluice_Status layouts write the same: heartbeats into Sluice_Status only. During a rollout an agent
        // beating slower only while idle keeps the 1 s pace: (b) is the baseline's row there.
        if (scenario === 'idle' && layout.acksIn === STATUS_DB) continue;
        if (scenario === 'rollout' && layout.beatMs !== 1000) continue;
        for (const n of AGENTS)
          for (const blipS of BLIPS) rounds.push(await round(env, layout, n, blipS, scenario));
      }
    const memory = (await servers.members[0]!.appctl('memory/show').catch(() => '')).trim();
    return { rounds, fresh, statusFresh, memory };
  } finally {
    subject.close();
    direct.close();
    w.close();
  }
}

function report(run: Run, m: ReturnType<typeof machine>): string {
  const lines = [
    '## Store reconnect window: how long a daemon can be away and still resume',
    '',
    machineLine(m, 'npm run bench -- reconnect-window'),
    '',
    `${VIPS.toLocaleString('en')} VIPs x 20 backends on one ovsdb-server (a one-member Raft cluster) serving Sluice ` +
      'and Sluice_Status (the status database of schema 3.0.0, docs/design/ovsdb.md). The agents are ' +
      '**simulated**: one client writes their heartbeats (a Node_Status ' +
      "update and the agent's marks per heartbeat, no connection reports) and acknowledgements. A blip of T s is " +
      "written as the transactions N agents make in T s at the layout's heartbeat interval, as fast as the server " +
      "takes them (its history is trimmed by count and size, never by time). The subject is an agent's monitor of " +
      'Sluice (plan tables, its own status rows) behind a byte-counting proxy, whose own heartbeat (baseline and (b)) ' +
      'was the last transaction before the cut. `idle`: only heartbeats while away; `rollout`: one VIP also gets a ' +
      'backend and every generation of its rollout is published and acknowledged by every agent. Layouts: **before ' +
      "3.0.0** (every agent's heartbeat a transaction in Sluice every second: the same-run baseline); **(b)** agents " +
      'beating every 2 s while idle (every 2 s while the plan does not move, the longest a 10 s lease allows; during ' +
      'a rollout they beat every second, so the rollout rows of the baseline apply to them); **Sluice_Status ' +
      '1.0.0** (schema 3.0.0 as first built) heartbeats in Sluice_Status, acknowledgements in Sluice; **Sluice_Status ' +
      '1.1.0** (what the product does now) the acknowledgements in Sluice_Status too. **model**: what ' +
      "bench/txn-history.ts predicts from the count of Sluice transactions while away. Fresh monitor (the subject's " +
      `full snapshot) in the same run: ${kb(run.fresh.bytes)} in ${run.fresh.ms.toFixed(0)} ms; its own rows in ` +
      `Sluice_Status (what a reconnect that cannot resume there re-reads): ${kb(run.statusFresh.bytes)} in ` +
      `${run.statusFresh.ms.toFixed(0)} ms.`,
    '',
    '| layout | scenario | agents | away | Sluice transactions while away | model | resumed | bytes | vs fresh | time | vs fresh |',
    '| --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |',
  ];
  for (const r of run.rounds)
    lines.push(
      `| ${r.layout} | ${r.scenario} | ${r.blipS === 0 ? 'boundary' : r.agents} | ${r.blipS === 0 ? '-' : `${r.blipS} s`} | ${r.sluiceTxns.toLocaleString('en')} | ` +
        `${r.predicted ? 'resume' : 'snapshot'} | ${r.resume.resumed ? 'yes' : '**no**'} | ${kb(r.resume.bytes)} | ` +
        `${ratio(r.resume.bytes, run.fresh.bytes, 4)} | ${r.resume.ms.toFixed(0)} ms | ` +
        `${ratio(r.resume.ms, run.fresh.ms, 3)} |`,
    );
  const wrong = run.rounds.filter((r) => r.predicted !== r.resume.resumed).length;
  lines.push(
    '',
    `The model disagreed with the server in ${wrong} of ${run.rounds.length} rounds. ovsdb-server's ` +
      `\`memory/show\` at the end (both databases summed): \`${run.memory.replace(/\s+/g, ' ')}\`.`,
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  const m = machine();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-reconnect-window-'));
  let servers: Cluster | undefined;
  const stop = () => servers?.stop() ?? Promise.resolve();
  for (const signal of ['SIGTERM', 'SIGINT'] as const)
    process.once(signal, () => void stop().finally(() => process.exit(1)));
  try {
    const sim = simSchemas(dir);
    servers = await startCluster(dir, 1, { schemaPath: sim.sluice, moreSchemaPaths: [sim.status] });
    const proxy = new CountingProxy(servers.remotes[0]!.slice('unix:'.length));
    try {
      const remote = await proxy.listen();
      const run = await measure(servers, proxy, remote);
      const body = report(run, finish(m));
      if (process.env.WINDOW_NO_WRITE === '1') console.log(body);
      else writeSection('reconnect-window', body);
    } finally {
      proxy.close();
    }
  } finally {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
