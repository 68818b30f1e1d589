// The lab's control plane (docs/design/lab.md "Control plane"): a store (Debian's ovsdb-server on sluice's schema,
// standalone), planners (default 2: the first to take the lock is active, the others stand by) and one `sluice agent`
// per lab node, all detached processes with their pid files and logs under `<runDir>/cp/`, so that labDown removes
// them like every other lab process (also after a crash of the process that started them: it recognises them by
// pid-file name -> command line, see expectedProgram in topology.ts). Agents run in the root namespace and reach
// their node's OVS through its private OVS_RUNDIR; they read their node facts from that OVS (the lab sets the
// sluice-* external_ids, src/agent/facts.ts), so no facts file is written; gateways fence with the lab router's ECMP
// script (labEcmpCommand). Everything after start goes through the store, as with a real deployment:
// `--db unix:<runDir>/cp/store.sock`.

import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { SluiceError } from '../model/errors.ts';
import type { Config } from '../model/types.ts';
import { OvsdbClient } from '../ovsdb/client.ts';
import type { TlsFiles } from '../ovsdb/jsonrpc.ts';
import type { Replica } from '../ovsdb/replica.ts';
import {
  createDatabase,
  databaseFile,
  freePort,
  OvsdbServerProcess,
  sluiceSchemaPaths,
} from '../ovsdb/server.ts';
import type { Progress } from '../progress.ts';
import {
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  gatewayGeneration,
  nodeAcks,
  publishedGeneration,
  STATUS_DB_NAME,
  splitMonitor,
} from '../store/db/index.ts';
import { accessControlOps, statusAccessOps } from '../store/db/rbac.ts';
import { STATUS_MONITOR, type StatusReport, statusReport, withStore } from '../store/operator.ts';
import { labEcmpCommand, labFenceTemplate, labRouterSessionCommand } from './ecmp.ts';
import { killPidFile, pidAlive, readPidFile, startDetached } from './exec.ts';
import { Pki } from './pki.ts';
import { birdSocket } from './routing.ts';
import { expectedProgram, type Lab, labJsonPath } from './topology.ts';
import { labXdpObject } from './xdp.ts';

export interface ControlPlaneOptions {
  /** Planner processes (default 2: one active, one standby). */
  readonly planners?: number;
  /** Agents' lease and the planner's `--lease`, seconds (default 10). */
  readonly leaseSeconds?: number;
  /** Planner `--margin`, seconds (default 5). */
  readonly marginSeconds?: number;
  /**
   * Planners fence a silent gateway (`--fence-cmd`, labFenceTemplate: the lab router's ECMP withdraw) before they
   * stop waiting for it (default true; docs/design/control-plane.md "Fencing by the planner").
   */
  readonly fence?: boolean;
  /** Extra arguments for every planner (appended after the defaults). */
  readonly plannerArgs?: readonly string[];
  /** Extra arguments for every agent (appended after the defaults). */
  readonly agentArgs?: readonly string[];
  /** Initial desired state written to the store (default `lab.sluiceConfig()`). */
  readonly config?: Config;
  /** Wait until every node acknowledged the first generation and every gateway announced itself (default true). */
  readonly wait?: boolean;
  /** How long to wait for that, ms (default 180 s: `node --import tsx` start-up is slow on a loaded machine). */
  readonly timeoutMs?: number;
  readonly log?: (msg: string) => void;
  /** Progress on a terminal (src/progress.ts): 4 steps. */
  readonly progress?: Progress;
}

export interface ControlPlaneProcess {
  /** `store`, `planner-a`, `agent-gw1`, ... */
  readonly name: string;
  readonly pidFile: string;
  readonly logFile: string;
  readonly pid: number | undefined;
  readonly alive: boolean;
}

/** Where a lab's control plane lives (all paths under `<runDir>/cp/`). */
export class ControlPlane {
  readonly dir: string;
  readonly lab: Lab;

  constructor(lab: Lab) {
    this.lab = lab;
    this.dir = controlPlaneDir(lab.facts.runDir);
  }

  /** The store's unix socket. */
  get socket(): string {
    return `${this.dir}/store.sock`;
  }

  /** `--db` of the administrator's local socket (no role: full access; the lab's own tooling and tests). */
  get db(): string {
    return `unix:${this.socket}`;
  }

  /** The lab's PKI (`<cp>/pki`, ovs-pki): certificates for the store, `planner`, `operator` and every node. */
  get pki(): Pki {
    return new Pki(`${this.dir}/pki`);
  }

  /** The store's TLS remotes by role (written by startStore), or undefined for a store without TLS. */
  get tlsPorts(): TlsPorts | undefined {
    try {
      return JSON.parse(readFileSync(`${this.dir}/tls-ports.json`, 'utf8')) as TlsPorts;
    } catch {
      return undefined;
    }
  }

  /** The remote a client with `role` uses: TLS (mutual, with RBAC) when the store has it, else the local socket. */
  remoteFor(role: keyof TlsPorts): string {
    const port = this.tlsPorts?.[role];
    return port === undefined ? this.db : `ssl:127.0.0.1:${port}`;
  }

  /** The operator's certificate when the store has TLS remotes (with remoteFor('operator'): the lab's own edits). */
  operatorTls(): TlsFiles | undefined {
    return this.tlsPorts === undefined ? undefined : this.pki.files('operator');
  }

  /** `--db` and TLS flags for a `sluice` command run as the operator (desired-state edits through RBAC). */
  operatorArgs(): string[] {
    return this.tlsPorts === undefined
      ? ['--db', this.db]
      : ['--db', this.remoteFor('operator'), ...this.pki.args('operator')];
  }

  get plannerNames(): string[] {
    return this.processes()
      .map((p) => p.name)
      .filter((n) => n.startsWith('planner-'));
  }

  pidFile(name: string): string {
    return `${this.dir}/${name}.pid`;
  }

  logFile(name: string): string {
    return `${this.dir}/${name}.log`;
  }

  /** Pid of a running control-plane process (`store`, `planner-a`, `agent-gw1`), or undefined. */
  pid(name: string): number | undefined {
    const expect = expectedProgram(this.pidFile(name));
    const pid = readPidFile(this.pidFile(name));
    return pid !== undefined && pidAlive(pid, expect) ? pid : undefined;
  }

  /** Every control-plane process that has a pid file. */
  processes(): ControlPlaneProcess[] {
    return controlPlaneProcesses(this.lab.facts.runDir);
  }

  /** JSON log records (pino lines) of `planner-a`, `agent-gw1`, ... */
  records(name: string): Array<Record<string, unknown>> {
    return logRecords(this.logFile(name));
  }

  /** Those records written by the process the lab started last (its pid file's), not by one it replaced: the log is
   *  appended to across restarts. */
  currentRecords(name: string): Array<Record<string, unknown>> {
    const pid = readPidFile(this.pidFile(name));
    return pid === undefined ? [] : this.records(name).filter((r) => r.pid === pid);
  }

  /** When the lab last started `name` (ms: its pid file, written as it spawned it), or undefined. */
  startedAt(name: string): number | undefined {
    try {
      return statSync(this.pidFile(name)).mtimeMs;
    } catch {
      return undefined;
    }
  }

  /** What every node acknowledged (see currentAcks) from the agents this lab started last. */
  currentAcks(r: Replica): Map<string, number> {
    return currentAcks(r, (node) => this.startedAt(`agent-${node}`));
  }

  /** The planner currently holding the lock (its last `lock` record says held), if any. */
  activePlanner(): string | undefined {
    return this.plannerNames.find(
      (p) =>
        this.pid(p) !== undefined &&
        this.records(p)
          .filter((r) => r.event === 'lock')
          .at(-1)?.state === 'held',
    );
  }

  /** Whether the active planner's last decision was `idle` at generation `gen` planned from `desiredCfg`: nothing
   *  more is coming for that state (it decides on every store change, and logs a decision when it differs). */
  plannerIdleAt(gen: number, desiredCfg: number): boolean {
    const active = this.activePlanner();
    if (active === undefined) return false;
    const last = this.currentRecords(active)
      .filter((r) => DECISIONS.has(r.event as string))
      .at(-1);
    return last?.event === 'idle' && last.generation === gen && last.desiredCfg === desiredCfg;
  }

  /** Sends a signal to a control-plane process by its pid file (e.g. SIGSTOP/SIGCONT an agent). */
  signal(name: string, sig: NodeJS.Signals): number {
    const pid = this.pid(name);
    if (pid === undefined) throw new SluiceError('SLUICE_E_LAB_COMMAND', `${name} is not running`);
    process.kill(pid, sig);
    return pid;
  }

  /** SIGKILLs the store's ovsdb-server (by its pid file); its database file stays, and startStore(cp) starts it again
   *  on the same socket. Resolves with the pid killed (undefined: it was not running). */
  killStore(): Promise<number | undefined> {
    const pidFile = this.pidFile('store');
    return killPidFile(pidFile, expectedProgram(pidFile)!, { signal: 'SIGKILL' });
  }

  /** What every node reported (store `status`). */
  status(): Promise<StatusReport> {
    return controlPlaneStore(this.db);
  }

  /** Stops every control-plane process (agents and planners, then the store). */
  stop(): Promise<number[]> {
    return stopControlPlane(this.lab.facts.runDir);
  }
}

/** The store's TLS listening ports, one per RBAC role (src/store/db/rbac.ts). */
export interface TlsPorts {
  readonly agent: number;
  readonly planner: number;
  readonly operator: number;
}

export function controlPlaneDir(runDir: string): string {
  return `${runDir}/cp`;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The planner's log events that record a decision (src/planner/daemon.ts #step). */
const DECISIONS = new Set(['publish', 'release', 'mark-round', 'fence', 'wait', 'idle', 'invalid']);

/** How to run the `sluice` CLI from here: the built bin.js with plain node, or the source through tsx. */
function sluiceCommand(): string[] {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith('.js')) return [fileURLToPath(new URL('../cli/bin.js', import.meta.url))];
  return ['--import', 'tsx', fileURLToPath(new URL('../cli/bin.ts', import.meta.url))];
}

/** Arguments of a planner (the first two must stay `planner --db`: labDown recognises it by them). */
export function plannerArgs(cp: ControlPlane, opts: ControlPlaneOptions = {}): string[] {
  return [
    'planner',
    '--db',
    cp.remoteFor('planner'),
    ...(cp.tlsPorts === undefined ? [] : cp.pki.args('planner')),
    '--lease',
    String(opts.leaseSeconds ?? 10),
    '--margin',
    String(opts.marginSeconds ?? 5),
    '--metrics',
    '127.0.0.1:0',
    ...((opts.fence ?? true) ? ['--fence-cmd', labFenceTemplate(cp.lab)] : []),
    ...(opts.plannerArgs ?? []),
  ];
}

/** Arguments of the agent of `node` (the first two must stay `agent --role`, see plannerArgs). */
export function agentArgs(
  cp: ControlPlane,
  node: string,
  opts: ControlPlaneOptions = {},
  db = cp.remoteFor('agent'),
): string[] {
  const n = cp.lab.node(node);
  return [
    'agent',
    '--role',
    n.role,
    '--node',
    node,
    '--db',
    db,
    ...(cp.tlsPorts === undefined ? [] : cp.pki.args(node)),
    '--ovs-rundir',
    n.ovsDir,
    '--lease',
    String(opts.leaseSeconds ?? 10),
    '--metrics',
    '127.0.0.1:0',
    ...(n.role === 'gateway' && cp.lab.routing === 'bgp'
      ? [
          '--bird-socket',
          birdSocket(cp.lab.facts.runDir, node),
          // Re-opens the router's side of the session if the planner's fence shut it.
          '--announce-cmd',
          labRouterSessionCommand(cp.lab, node, 'announce'),
        ]
      : []),
    ...(n.role === 'gateway' && cp.lab.routing === 'static'
      ? [
          '--withdraw-cmd',
          labEcmpCommand(cp.lab, node, 'withdraw'),
          '--announce-cmd',
          labEcmpCommand(cp.lab, node, 'announce'),
        ]
      : []),
    // Read only by a gateway whose node facts say sluice-gateway-datapath=xdp (src/lab/xdp.ts).
    ...(n.role === 'gateway' && existsSync(labXdpObject(cp.lab.facts.runDir))
      ? ['--xdp-object', labXdpObject(cp.lab.facts.runDir)]
      : []),
    ...(opts.agentArgs ?? []),
  ];
}

/**
 * Throws unless the lab is still up: a control-plane process started after labDown (say a test's clean-up that
 * restarts the store, running after the lab's) would have nothing left to stop it and would outlive its lab.
 */
function requireLabUp(cp: ControlPlane): void {
  if (!existsSync(labJsonPath(cp.lab.facts.runDir)))
    throw new SluiceError(
      'SLUICE_E_LAB_NOT_FOUND',
      `lab ${cp.lab.prefix} is down (${cp.lab.facts.runDir} is gone): its control plane is not started again`,
    );
}

/** Starts one `sluice ...` process detached, with `<cp>/<name>.pid` and `<cp>/<name>.log`. */
export function startSluiceProcess(cp: ControlPlane, name: string, args: readonly string[]): number {
  requireLabUp(cp);
  return startDetached(process.execPath, [...sluiceCommand(), ...args], {
    pidFile: cp.pidFile(name),
    logFile: cp.logFile(name),
    cwd: ROOT,
  });
}

/** Starts an agent for `node` (also to restart one); `db` overrides the store remote (e.g. through a proxy). */
export function startAgent(
  cp: ControlPlane,
  node: string,
  opts: ControlPlaneOptions = {},
  db = cp.remoteFor('agent'),
): number {
  return startSluiceProcess(cp, `agent-${node}`, agentArgs(cp, node, opts, db));
}

/**
 * Creates the store's database (if missing) and starts its ovsdb-server, detached; resolves when it listens. With
 * `tls` (the default), the lab's PKI issues certificates (store, planner, operator, one per node, CN = the name) and
 * the store also listens on three TLS remotes on 127.0.0.1, one per RBAC role (src/store/db/rbac.ts), which the
 * planners and agents use; the unix socket stays the administrator's (no role).
 */
export async function startStore(cp: ControlPlane, tls = true): Promise<OvsdbServerProcess> {
  requireLabUp(cp);
  mkdirSync(cp.dir, { recursive: true });
  // Both databases of a sluice store (Sluice, Sluice_Status), in one ovsdb-server.
  const dbFiles = sluiceSchemaPaths().map((schema, i) => databaseFile(cp.dir, 'store', schema, i === 0));
  const restart = existsSync(dbFiles[0]!);
  for (const [i, schema] of sluiceSchemaPaths().entries())
    if (!existsSync(dbFiles[i]!)) await createDatabase(dbFiles[i]!, schema);
  if (tls) await cp.pki.issue(['store', 'planner', 'operator', ...cp.lab.nodes.map((n) => n.name)]);
  const store = new OvsdbServerProcess(
    {
      dir: cp.dir,
      dbFiles,
      name: 'store',
      detached: true,
      ...(tls ? { tls: cp.pki.files('store') } : {}),
    },
    await freePort(),
  );
  await store.start();
  if (tls) {
    // A restarted store keeps its remotes: planners and agents started against them must find them again.
    const ports: TlsPorts = (restart ? cp.tlsPorts : undefined) ?? {
      agent: await freePort(),
      planner: await freePort(),
      operator: await freePort(),
    };
    const client = new OvsdbClient({ remotes: [cp.db], database: DB_NAME });
    try {
      await client.transact(
        DB_NAME,
        ...accessControlOps([
          { target: `pssl:${ports.agent}:127.0.0.1`, role: 'sluice-agent' },
          { target: `pssl:${ports.planner}:127.0.0.1`, role: 'sluice-planner' },
          { target: `pssl:${ports.operator}:127.0.0.1`, role: 'sluice-operator' },
        ]),
      );
      await client.transact(STATUS_DB_NAME, ...statusAccessOps());
    } finally {
      client.close();
    }
    writeFileSync(`${cp.dir}/tls-ports.json`, `${JSON.stringify(ports)}\n`);
  }
  return store;
}

/** Starts planner `planner-<letter>`. */
export function startPlanner(cp: ControlPlane, name: string, opts: ControlPlaneOptions = {}): number {
  return startSluiceProcess(cp, name, plannerArgs(cp, opts));
}

/** JSON records of a pino log file (other lines skipped). */
export function logRecords(file: string): Array<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((l) => {
    if (!l.startsWith('{')) return [];
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Writes `config` as the desired state (desiredStateOps: the smallest transaction; nothing when equal). */
export async function writeDesiredState(db: string, config: Config, tls?: TlsFiles): Promise<void> {
  const client = new OvsdbClient({ remotes: [db], database: DB_NAME, ...(tls ? { tls } : {}) });
  await client.connect();
  try {
    const m = await client.monitor(DB_NAME, DESIRED_STATE_MONITOR);
    const ops = desiredStateOps(m.replica, config);
    if (ops.length > 0) await client.transact(DB_NAME, ...ops);
  } finally {
    client.close();
  }
}

/**
 * Starts the control plane of a running lab: the store (created empty, then `config` written as the desired
 * state), the planners and one agent per node; with `wait` (default), resolves once every node acknowledged the
 * latest generation, it was released to gateways, and every gateway agent announced itself. On failure the
 * processes already started are stopped and the error names the process and the end of its log.
 */
export async function startControlPlane(lab: Lab, opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  const prog = opts.progress;
  const cp = new ControlPlane(lab);
  if (existsSync(cp.dir) && cp.processes().some((p) => p.alive))
    throw new SluiceError(
      'SLUICE_E_LAB_EXISTS',
      `lab ${lab.prefix} already runs a control plane (${cp.dir})`,
    );
  mkdirSync(cp.dir, { recursive: true });
  const t0 = Date.now();
  try {
    prog?.step(1, 'starting the store (ovsdb-server) and writing the desired state');
    const store = await startStore(cp);
    log(`store: ovsdb-server on ${cp.socket} (pid ${store.pid})`);
    // As the operator, over TLS and RBAC (the unix socket is only for what no role may do: the RBAC rows above).
    await writeDesiredState(cp.remoteFor('operator'), opts.config ?? lab.sluiceConfig(), cp.operatorTls());
    const planners = Array.from({ length: opts.planners ?? 2 }, (_, i) => `planner-${'abcdefgh'[i]}`);
    // The first planner starts alone so that it takes the lock; the others start once it holds it.
    prog?.step(2, `starting ${planners[0]} and ${lab.nodes.length} agents; waiting for the planner's lock`);
    startPlanner(cp, planners[0]!, opts);
    for (const n of lab.nodes) startAgent(cp, n.name, opts);
    log(`started ${planners[0]} and ${lab.nodes.length} agents`);
    if (planners.length > 1) {
      await waitUntil(cp, () => cp.activePlanner() !== undefined, 120_000, `${planners[0]} holds the lock`);
      prog?.step(3, `starting ${planners.slice(1).join(', ')} (standby)`);
      for (const p of planners.slice(1)) startPlanner(cp, p, opts);
      log(`started ${planners.slice(1).join(', ')} (standby)`);
    }
    if (opts.wait ?? true) {
      prog?.step(4, 'waiting until every node acknowledged the first generation and every gateway announced');
      await waitConverged(cp, opts.timeoutMs ?? 180_000, (acked, total) =>
        prog?.detail(`${acked}/${total} nodes acknowledged`),
      );
      log(`control plane ready in ${Date.now() - t0} ms: every node acknowledged, every gateway announced`);
    }
    return cp;
  } catch (e) {
    await stopControlPlane(lab.facts.runDir).catch(() => {});
    throw e;
  }
}

/** Throws (naming the process and its log) when a started control-plane process died. */
function checkAlive(cp: ControlPlane): void {
  for (const p of cp.processes()) {
    if (!p.alive)
      throw new SluiceError(
        'SLUICE_E_LAB_COMMAND',
        `control plane: ${p.name} (pid ${p.pid}) is not running; end of ${p.logFile}:\n${tail(p.logFile)}`,
      );
  }
}

async function waitUntil(
  cp: ControlPlane,
  cond: () => boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    checkAlive(cp);
    if (Date.now() > deadline)
      throw new SluiceError('SLUICE_E_LAB_COMMAND', `control plane: timed out waiting until ${what}`);
    await sleep(200);
  }
}

/** A client of the lab's store as the operator (TLS when the lab has it), connected. */
export async function operatorClient(cp: ControlPlane): Promise<OvsdbClient> {
  const tls = cp.operatorTls();
  const client = new OvsdbClient({
    remotes: [cp.remoteFor('operator')],
    database: DB_NAME,
    ...(tls ? { tls } : {}),
  });
  await client.connect();
  return client;
}

/**
 * node -> the generation it acknowledged, counting only acknowledgements its current agent wrote: a status row
 * stays when its agent is killed, so a row applied before `startedAt(node)` (that agent's start, ms) is its
 * predecessor's and says nothing about the new one. A node without a start time counts as it is.
 */
export function currentAcks(
  r: Replica,
  startedAt: (node: string) => number | undefined,
): Map<string, number> {
  return new Map(
    [...nodeAcks(r).values()]
      .filter((s) => s.appliedAt >= (startedAt(s.node) ?? 0))
      .map((s) => [s.node, s.appliedGeneration]),
  );
}

/**
 * Every node's current agent applied the latest generation, it is released to gateways, and every gateway's current
 * agent announced itself (after a restart, neither the killed agent's acknowledgement nor its log lines count).
 */
export async function waitConverged(
  cp: ControlPlane,
  timeoutMs: number,
  onProgress?: (acked: number, total: number) => void,
): Promise<number> {
  const client = await operatorClient(cp);
  try {
    // The acks are in Node_Heartbeat (Sluice_Status), read with the fallback to Node_Status (nodeAcks).
    const m = await client.monitorDatabases(
      splitMonitor({ Global: {}, Node_Status: {}, Node_Heartbeat: {} }),
    );
    const r = m.replica;
    let gen = 0;
    let state = '';
    const gateways = cp.lab.gateways.map((g) => g.name);
    await waitUntil(
      cp,
      () => {
        gen = publishedGeneration(r);
        const acks = cp.currentAcks(r);
        const announced = gateways.filter((g) =>
          cp.currentRecords(`agent-${g}`).some((x) => x.event === 'announced'),
        );
        onProgress?.(
          cp.lab.nodes.filter((n) => gen > 0 && acks.get(n.name) === gen).length,
          cp.lab.nodes.length,
        );
        state = `g${gen} released g${gatewayGeneration(r)}; acks ${JSON.stringify(Object.fromEntries(acks))}; announced ${announced.join(',') || '-'}`;
        return (
          gen > 0 &&
          gatewayGeneration(r) === gen &&
          cp.lab.nodes.every((n) => acks.get(n.name) === gen) &&
          announced.length === gateways.length
        );
      },
      timeoutMs,
      `every node acknowledged and every gateway announced (${state})`,
    ).catch((e: Error) => {
      throw new SluiceError(
        e instanceof SluiceError ? e.code : 'SLUICE_E_LAB_COMMAND',
        `${e.message}: ${state}`,
      );
    });
    if (cp.lab.routing === 'bgp') await waitRoutes(cp, gateways, timeoutMs);
    return gen;
  } finally {
    client.close();
  }
}

/** BGP: the announcements reached the router (every VIP's ECMP route holds every gateway). */
async function waitRoutes(cp: ControlPlane, gateways: readonly string[], timeoutMs: number): Promise<void> {
  const want = [...gateways].sort().join(',');
  const deadline = Date.now() + timeoutMs;
  let ecmp: Record<string, string[]> = {};
  while (Date.now() < deadline) {
    ecmp = await cp.lab.ecmpGateways();
    if (Object.values(ecmp).every((g) => g.join(',') === want)) return;
    await sleep(50);
  }
  throw new SluiceError(
    'SLUICE_E_LAB_COMMAND',
    `the router's ECMP routes are ${JSON.stringify(ecmp)}, not ${want}`,
  );
}

/** The control-plane processes of the lab whose run directory is `runDir` (from their pid files). */
export function controlPlaneProcesses(runDir: string): ControlPlaneProcess[] {
  const dir = controlPlaneDir(runDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((f) => f.endsWith('.pid'))
    .map((f) => f.slice(0, -4))
    .filter((n) => expectedProgram(`${dir}/${n}.pid`) !== undefined)
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .map((name) => {
      const pidFile = `${dir}/${name}.pid`;
      const pid = readPidFile(pidFile);
      return {
        name,
        pidFile,
        logFile: `${dir}/${name}.log`,
        pid,
        alive: pid !== undefined && pidAlive(pid, expectedProgram(pidFile)),
      };
    });
}

function rank(name: string): number {
  return name === 'store' ? 0 : name.startsWith('planner-') ? 1 : 2;
}

/** Stops agents and planners (SIGTERM, SIGKILL after 3 s), then the store. Returns the pids stopped. */
export async function stopControlPlane(runDir: string): Promise<number[]> {
  const procs = controlPlaneProcesses(runDir);
  const killed: number[] = [];
  const stop = async (list: ControlPlaneProcess[]) => {
    const pids = await Promise.all(
      list.map((p) => {
        // A frozen (SIGSTOPped) process would only take the SIGTERM when continued.
        if (p.alive && p.pid !== undefined) {
          try {
            process.kill(p.pid, 'SIGCONT');
          } catch {
            /* gone */
          }
        }
        return killPidFile(p.pidFile, expectedProgram(p.pidFile)!, { graceMs: 3000 });
      }),
    );
    for (const p of pids) if (p !== undefined) killed.push(p);
  };
  await stop(procs.filter((p) => p.name !== 'store'));
  await stop(procs.filter((p) => p.name === 'store'));
  return killed;
}

/** The store's `status` report (what every node applied), or an error if the store does not answer. */
export function controlPlaneStore(db: string): Promise<StatusReport> {
  return withStore(db, STATUS_MONITOR, async (s) => statusReport(s.replica));
}
