// What an operator does to the store, shared by the CLI (src/cli/store-commands.ts) and the lab's control plane
// and demo (src/lab): a short session with the store, the desired state read, edited, validated and written (a
// transaction guarded by a wait on Global.desired_cfg: a bad edit changes nothing and reports every problem with its
// path; a concurrent writer makes the guard fail and the edit is redone on the fresh state), the pure edits of the
// config document, and the status report, which reads only what agents reported (Node_Status, Backend_Status),
// never what was asked. No commander, no process exit codes: those stay in src/cli.

import { SluiceError } from '../model/errors.ts';
import { ipEquals, parseIp } from '../model/ip.ts';
import { formatIssues, parseConfig } from '../model/schema.ts';
import type { Config } from '../model/types.ts';
import { backendKey, type HealthCheck, healthCheckOf, healthCheckText } from '../model/types.ts';
import { type Monitor, type MonitorSet, OvsdbClient } from '../ovsdb/client.ts';
import { OvsdbError } from '../ovsdb/errors.ts';
import type { TlsFiles } from '../ovsdb/jsonrpc.ts';
import type { DatabaseSchema, MonitorCondRequest } from '../ovsdb/protocol.ts';
import type { Replica } from '../ovsdb/replica.ts';
import type { PlanCache } from '../rollout/plan-cache.ts';
import type { Generation } from '../rollout/types.ts';
import { type ConfigChange, type ConfigDocument, configDocument, diffConfigs } from './config-diff.ts';
import {
  BackendStatusTable,
  CANNOT_AGREE,
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  fenceMarks,
  fenceRecordOp,
  formatOvnRow,
  gatewayGeneration,
  isConflict,
  lbScopeBackendOps,
  lbScopeConflictWaits,
  lbScopeReadOps,
  lbScopeReplica,
  NodeHeartbeatTable,
  NodeStatusTable,
  nodeAck,
  nodeStatus,
  OPERATOR_FENCED_KEY,
  type OvnSkippedRow,
  observedPlannerStep,
  PLAN_MONITOR,
  planDocument,
  publishedGeneration,
  publishedPlanHead,
  readDesiredState,
  readOvnSkipped,
  readPlan,
  readStoreView,
  rows,
  SCHEMA_NEEDS,
  SLOT_DISAGREE,
  STATUS_DB_HINT,
  splitMonitor,
  storedDesiredCfg,
} from './db/index.ts';

/** The operator's TLS credentials for ssl: remotes: SLUICE_SSL_PRIVATE_KEY, SLUICE_SSL_CERTIFICATE and
 *  SLUICE_SSL_CA_CERT (the CLI's --private-key/--certificate/--ca-cert set them), or none. */
export function envTls(): TlsFiles | undefined {
  const e = process.env;
  const [privateKey, certificate, caCert] = [
    e.SLUICE_SSL_PRIVATE_KEY,
    e.SLUICE_SSL_CERTIFICATE,
    e.SLUICE_SSL_CA_CERT,
  ];
  return privateKey && certificate && caCert ? { privateKey, certificate, caCert } : undefined;
}

export function parseRemotes(text: string): string[] {
  const r = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (r.length === 0 || r.some((x) => !/^(unix:.+|tcp:.+:\d+|ssl:.+:\d+)$/.test(x)))
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `--db: expected unix:/path, tcp:host:port or ssl:host:port, comma separated; got "${text}"`,
    );
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// A short session with the store: one client, one monitor whose replica holds the tables a command reads.

/** A connected client for one command (no keepalive probes: the command is short). */
async function connectStore(db: string, waitMs: number, tls: TlsFiles | undefined): Promise<OvsdbClient> {
  const remotes = parseRemotes(db);
  const client = new OvsdbClient({
    remotes,
    database: DB_NAME,
    probeIntervalMs: 0,
    connectTimeoutMs: Math.min(3000, waitMs),
    // A member that accepts but never answers is left in time to try the next one.
    negotiateTimeoutMs: Math.max(1000, Math.floor(waitMs / 2)),
    tls,
    waitConnectedMs: waitMs,
    backoffInitialMs: 50,
    backoffMaxMs: 500,
  });
  try {
    await client.connect();
    return client;
  } catch (e) {
    client.close();
    throw reachError(e, remotes);
  }
}

/** A connection failure, with the remotes named and how to set them. */
function reachError(e: unknown, remotes: readonly string[]): unknown {
  if (e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_CONNECT')
    return new OvsdbError(
      'SLUICE_E_OVSDB_CONNECT',
      `cannot reach the store at ${remotes.join(',')} (set --db or SLUICE_DB): ${e.message}`,
    );
  return e;
}

export class StoreSession {
  readonly client: OvsdbClient;
  /** One monitor per database the tables are in (Sluice, Sluice_Status), read as one replica. */
  readonly monitors: MonitorSet;

  private constructor(client: OvsdbClient, monitors: MonitorSet) {
    this.client = client;
    this.monitors = monitors;
  }

  /** The monitor of Sluice (the desired state, plans, acknowledgements). */
  get monitor(): Monitor {
    return this.monitors.of(DB_NAME) ?? this.monitors.monitors[0]!;
  }

  /** Connects to `db` (comma-separated remotes) and waits for a snapshot of `tables`. */
  static async open(
    db: string,
    tables: { readonly [table: string]: MonitorCondRequest },
    waitMs = 5000,
    tls = envTls(),
  ): Promise<StoreSession> {
    const client = await connectStore(db, waitMs, tls);
    try {
      const monitors = await client.monitorDatabases(splitMonitor(tables), STATUS_DB_HINT, SCHEMA_NEEDS);
      return new StoreSession(client, monitors);
    } catch (e) {
      client.close();
      throw reachError(e, parseRemotes(db));
    }
  }

  get replica(): Replica {
    return this.monitors.replica;
  }

  get schema(): DatabaseSchema {
    const s = this.monitor.schema;
    if (s === undefined) throw new OvsdbError('SLUICE_E_OVSDB_PROTOCOL', 'monitor has no schema');
    return s;
  }

  close(): void {
    this.client.close();
  }

  /** Resolves once `pred` holds on the replica (checked now and after each update), false after `timeoutMs`. */
  waitFor(pred: (r: Replica) => boolean, timeoutMs: number): Promise<boolean> {
    if (pred(this.replica)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const on = () => {
        if (!pred(this.replica)) return;
        clearTimeout(timer);
        this.monitors.off('update', on);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.monitors.off('update', on);
        resolve(false);
      }, timeoutMs);
      this.monitors.on('update', on);
    });
  }
}

export async function withStore<T>(
  db: string,
  tables: { readonly [table: string]: MonitorCondRequest },
  fn: (s: StoreSession) => Promise<T>,
): Promise<T> {
  const s = await StoreSession.open(db, tables);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Desired state: read, edit, validate, write

/** The stored desired state, validated (the planner reads the same thing). */
export function storedConfig(r: Replica): { desiredCfg: number; config: Config } {
  const stored = readDesiredState(r);
  try {
    return {
      desiredCfg: stored.desiredCfg,
      config: parseConfig(stored.config, '(the desired state in the store)'),
    };
  } catch (e) {
    if (e instanceof SluiceError)
      throw new SluiceError(
        e.code,
        `${e.message}\n(the store holds an invalid desired state: fix it with \`sluice apply -f\`)`,
        e.issues,
      );
    throw e;
  }
}

/** Mutable config document the edit functions change. */
export type EditableDocument = ConfigDocument;

export interface EditOptions {
  /** Attempts before giving up with SLUICE_E_STORE_CONFLICT (default 5). */
  readonly maxAttempts?: number;
  /** Called before each transaction (attempt 1, 2, ...); tests use it to race a concurrent writer. */
  readonly beforeTransact?: (attempt: number) => Promise<void>;
}

export interface EditResult {
  /** The desired_cfg the edit produced (unchanged when there was nothing to write). */
  readonly desiredCfg: number;
  readonly changed: boolean;
  readonly changes: readonly ConfigChange[];
  /** Transactions tried (more than 1: a concurrent writer won the guard and the edit was redone). */
  readonly attempts: number;
  readonly config: Config;
}

/** parseConfig of an edited document; each issue also names the node or load balancer its path points into. */
function validateEdit(doc: EditableDocument): Config {
  const source = '(the desired state after this edit; nothing was written)';
  try {
    return parseConfig(doc, source);
  } catch (e) {
    if (!(e instanceof SluiceError) || e.issues.length === 0) throw e;
    const issues = e.issues.map((i) => {
      const m = /^(loadBalancers|nodes)\[(\d+)\]/.exec(i.path);
      const name = m === null ? undefined : doc[m[1] as 'nodes' | 'loadBalancers'][Number(m[2])]?.name;
      const what = m?.[1] === 'nodes' ? 'node' : 'load balancer';
      return name === undefined ? i : { ...i, message: `${i.message} (${what} ${JSON.stringify(name)})` };
    });
    const n = issues.length;
    throw new SluiceError(
      e.code,
      `invalid config ${source}: ${n} problem${n === 1 ? '' : 's'}\n${formatIssues(issues)
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n')}`,
      issues,
    );
  }
}

/**
 * read desired state -> `edit` the document -> parseConfig -> desiredStateOps (guarded by desired_cfg) -> transact.
 * `edit` may throw (not found, exists: nothing is written) and returns the new document. When the guard fails (a
 * concurrent writer), waits for the replica to see the new desired_cfg and redoes the edit on it.
 */
export async function editDesiredState(
  s: StoreSession,
  edit: (doc: EditableDocument, current: Config) => EditableDocument,
  options: EditOptions = {},
): Promise<EditResult> {
  return retryOnConflict(options, async (attempt) => {
    const { desiredCfg, config: current } = storedConfig(s.replica);
    const doc = edit(structuredClone(configDocument(current)), current);
    const next = validateEdit(doc);
    const changes = diffConfigs(current, next);
    const ops = desiredStateOps(s.replica, next);
    if (ops.length === 0) return { desiredCfg, changed: false, changes, attempts: attempt, config: next };
    await options.beforeTransact?.(attempt);
    try {
      await s.client.transact(DB_NAME, ...ops);
      return { desiredCfg: desiredCfg + 1, changed: true, changes, attempts: attempt, config: next };
    } catch (e) {
      if (!isConflict(e)) throw e;
      // The replica catches up with the winner's write (its desired_cfg moves on) before the edit is redone.
      return new Conflict(e as Error, () => s.waitFor((r) => storedDesiredCfg(r) !== desiredCfg, 2000));
    }
  });
}

/** An attempt of an edit that lost its desired_cfg guard to a concurrent writer; `settle` runs before the next. */
class Conflict {
  readonly cause: Error | undefined;
  readonly settle: (() => Promise<unknown>) | undefined;
  constructor(cause?: Error, settle?: () => Promise<unknown>) {
    this.cause = cause;
    this.settle = settle;
  }
}

/**
 * Runs `attempt` (numbered from 1) until it returns something other than a Conflict, at most
 * `options.maxAttempts` (default 5) times; after the last, SLUICE_E_STORE_CONFLICT: nothing was written. Every
 * guarded edit of the desired state (the whole store, or one load balancer) retries through this one loop.
 */
async function retryOnConflict<T>(
  options: EditOptions,
  attempt: (n: number) => Promise<T | Conflict>,
): Promise<T> {
  const max = options.maxAttempts ?? 5;
  for (let n = 1; ; n++) {
    const r = await attempt(n);
    if (!(r instanceof Conflict)) return r;
    if (n >= max)
      throw new SluiceError(
        'SLUICE_E_STORE_CONFLICT',
        `the desired state changed under this edit ${n} time(s) (concurrent writers); nothing was written by it${r.cause === undefined ? '' : `: ${r.cause.message}`}`,
      );
    await r.settle?.();
  }
}

/** What an edit of one load balancer reports (editLoadBalancer: no whole config, it read only that one). */
export type LbEditResult = Omit<EditResult, 'config'>;

/**
 * `edit` confined to load balancer `lb` (backend add, del, drain, undrain) without reading the rest of the store:
 * two `select` transactions read Global, the nodes, that load balancer and its backends; the edit is validated on
 * that one-load-balancer document; one transaction writes it, guarded by desired_cfg and by waits that fail when a
 * new backend conflicts with another load balancer (lbScopeConflictWaits). A few small round trips, whatever the
 * store holds. What the scoped path cannot decide alone (the edit or its validation fails, or such a conflict) is
 * redone by editDesiredState on the whole store, so errors and their paths are exactly the full path's.
 */
export async function editLoadBalancer(
  db: string,
  lb: string,
  edit: (doc: EditableDocument) => EditableDocument,
  options: EditOptions = {},
): Promise<LbEditResult> {
  const scoped = await scopedEdit(db, lb, edit, options);
  if (scoped !== 'full') return scoped;
  const { config: _whole, ...r } = await withStore(db, DESIRED_STATE_MONITOR, (s) =>
    editDesiredState(s, edit, options),
  );
  return r;
}

async function scopedEdit(
  db: string,
  lb: string,
  edit: (doc: EditableDocument) => EditableDocument,
  options: EditOptions,
): Promise<LbEditResult | 'full'> {
  const client = await connectStore(db, 5000, envTls());
  try {
    return await retryOnConflict(options, async (attempt) => {
      const r = await scopedEditAttempt(client, lb, edit, () => options.beforeTransact?.(attempt));
      if (r === 'conflict') return new Conflict();
      return r === 'full' ? r : { ...r, attempts: attempt };
    });
  } finally {
    client.close();
  }
}

/** One read-edit-write of editLoadBalancer: its result, 'conflict' (read again) or 'full' (use the full path). */
async function scopedEditAttempt(
  client: OvsdbClient,
  lb: string,
  edit: (doc: EditableDocument) => EditableDocument,
  beforeTransact: () => Promise<void> | undefined,
): Promise<Omit<LbEditResult, 'attempts'> | 'conflict' | 'full'> {
  const first = await client.transact(DB_NAME, ...lbScopeReadOps(lb));
  let second: Awaited<ReturnType<OvsdbClient['transact']>>;
  try {
    second = await client.transact(DB_NAME, ...lbScopeBackendOps(first));
  } catch (e) {
    if (isConflict(e)) return 'conflict';
    throw e;
  }
  const replica = lbScopeReplica(first, second);
  if (storedDesiredCfg(replica) === 0) return 'full';
  let scoped: { desiredCfg: number; current: Config; next: Config };
  try {
    const { desiredCfg, config: current } = storedConfig(replica);
    scoped = { desiredCfg, current, next: validateEdit(edit(structuredClone(configDocument(current)))) };
  } catch (e) {
    if (e instanceof SluiceError) return 'full';
    throw e;
  }
  const { desiredCfg, current, next } = scoped;
  const changes = diffConfigs(current, next);
  const ops = desiredStateOps(replica, next);
  if (ops.length === 0) return { desiredCfg, changed: false, changes };
  // ops[0] is the desired_cfg guard; the conflict waits follow it, so a failed op tells which one failed.
  const waits = lbScopeConflictWaits(replica, next, lb);
  await beforeTransact();
  try {
    await client.transact(DB_NAME, ops[0]!, ...waits, ...ops.slice(1));
    return { desiredCfg: desiredCfg + 1, changed: true, changes };
  } catch (e) {
    if (!isConflict(e)) throw e;
    const i = (e as OvsdbError).opIndex ?? 0;
    return i >= 1 && i <= waits.length ? 'full' : 'conflict';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Edits (pure functions of the document)

function notFound(what: string): never {
  throw new SluiceError('SLUICE_E_STORE_NOT_FOUND', `${what} is not in the desired state`);
}

function findLb(doc: EditableDocument, name: string) {
  return doc.loadBalancers.find((lb) => lb.name === name) ?? notFound(`load balancer ${name}`);
}

/** `address`, `address:port`, `[v6]:port`, `address:*` (no port translation). `port: 'any'` = address only. */
export function parseBackendRef(text: string): { address: string; port: number | undefined | 'any' } {
  if (parseIp(text) !== undefined) return { address: text, port: 'any' };
  const m = /^\[([^\]]+)\]:(\d+|\*)$/.exec(text) ?? /^([^:[\]]+):(\d+|\*)$/.exec(text);
  if (m === null || parseIp(m[1]!) === undefined)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `backend: expected address, address:port or [v6-address]:port, got "${text}"`,
    );
  return { address: m[1]!, port: m[2] === '*' ? undefined : Number(m[2]) };
}

function sameIp(a: string, b: string): boolean {
  try {
    return ipEquals(a, b);
  } catch {
    return a === b;
  }
}

/** Index of the backend `ref` names in `lb` (an address alone must name exactly one). */
function findBackend(lb: EditableDocument['loadBalancers'][number], ref: string): number {
  const r = parseBackendRef(ref);
  const hits = lb.backends
    .map((b, i) => ({ b, i }))
    .filter(({ b }) => sameIp(b.address, r.address) && (r.port === 'any' || b.port === r.port));
  if (hits.length === 0) notFound(`backend ${ref} of load balancer ${lb.name}`);
  if (hits.length > 1)
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `backend ${ref} is ambiguous in ${lb.name}: ${hits.map(({ b }) => backendKey({ address: b.address, port: b.port })).join(', ')} (give address:port)`,
    );
  return hits[0]!.i;
}

export function parsePorts(text: string): number[] {
  const ports = text.split(',').map((p) => p.trim());
  if (ports.some((p) => !/^\d+$/.test(p)))
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `--port: expected a port or a comma-separated list, got "${text}"`,
    );
  return ports.map(Number);
}

export function parseInteger(name: string, text: string): number {
  if (!/^-?\d+$/.test(text))
    throw new SluiceError('SLUICE_E_USAGE', `${name}: expected an integer, got "${text}"`);
  return Number(text);
}

export const edits = {
  lbAdd:
    (name: string, vip: string, ports: number[], protocol: string) =>
    (doc: EditableDocument): EditableDocument => {
      if (doc.loadBalancers.some((lb) => lb.name === name))
        throw new SluiceError('SLUICE_E_STORE_EXISTS', `load balancer ${name} already exists`);
      doc.loadBalancers.push({ name, vip, protocol: protocol as 'tcp', ports, backends: [] });
      return doc;
    },
  lbDel:
    (name: string) =>
    (doc: EditableDocument): EditableDocument => {
      findLb(doc, name);
      doc.loadBalancers = doc.loadBalancers.filter((lb) => lb.name !== name);
      return doc;
    },
  backendAdd:
    (lbName: string, address: string, host: string, port: number | undefined, weight: number) =>
    (doc: EditableDocument): EditableDocument => {
      const lb = findLb(doc, lbName);
      if (lb.backends.some((b) => sameIp(b.address, address) && b.port === port))
        throw new SluiceError(
          'SLUICE_E_STORE_EXISTS',
          `backend ${backendKey({ address, port })} already exists in ${lbName}`,
        );
      lb.backends.push({ address, ...(port === undefined ? {} : { port }), host, weight, state: 'active' });
      return doc;
    },
  backendDel:
    (lbName: string, ref: string) =>
    (doc: EditableDocument): EditableDocument => {
      const lb = findLb(doc, lbName);
      lb.backends.splice(findBackend(lb, ref), 1);
      return doc;
    },
  backendState:
    (lbName: string, ref: string, state: 'active' | 'draining') =>
    (doc: EditableDocument): EditableDocument => {
      const lb = findLb(doc, lbName);
      lb.backends[findBackend(lb, ref)]!.state = state;
      return doc;
    },
  nodeAdd:
    (name: string, role: string, tunnelIp: string) =>
    (doc: EditableDocument): EditableDocument => {
      if (doc.nodes.some((n) => n.name === name))
        throw new SluiceError('SLUICE_E_STORE_EXISTS', `node ${name} already exists`);
      doc.nodes.push({ name, role: role as 'host', tunnelIp });
      return doc;
    },
  nodeDel:
    (name: string) =>
    (doc: EditableDocument): EditableDocument => {
      if (!doc.nodes.some((n) => n.name === name)) notFound(`node ${name}`);
      doc.nodes = doc.nodes.filter((n) => n.name !== name);
      return doc;
    },
};

// ---------------------------------------------------------------------------------------------------------
// Reports

// ---------------------------------------------------------------------------------------------------------
// Fencing by hand

export const FENCE_MONITOR = { ...DESIRED_STATE_MONITOR, Node_Status: {} };

/**
 * The operator confirms that a gateway is out of the upstream ECMP set (STONITH's manual confirmation: for when the
 * planner's fence command cannot take it out, e.g. the router is unreachable, and the operator did it by hand).
 * Writes Node_Status external_ids:fenced_by_operator, so the planner stops waiting for the gateway and goes on; the
 * gateway's agent, when it comes back, rejoins and deletes the record (docs/design/control-plane.md). Only gateways
 * in the desired state: hosts are never fenced.
 */
export async function confirmFenced(
  s: StoreSession,
  name: string,
  now = Date.now(),
): Promise<{ readonly node: string; readonly already: boolean }> {
  const { config } = storedConfig(s.replica);
  const node = config.nodes.find((n) => n.name === name);
  if (node === undefined) throw new SluiceError('SLUICE_E_STORE_NOT_FOUND', `node ${name} does not exist`);
  if (node.role !== 'gateway')
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `node ${name} is a ${node.role}: only gateways are fenced (a host leaves by \`sluice node del\`)`,
    );
  if (fenceMarks(nodeStatus(s.replica, name)).byOperator !== undefined) return { node: name, already: true };
  await s.client.transact(DB_NAME, fenceRecordOp(s.replica, name, OPERATOR_FENCED_KEY, now));
  return { node: name, already: false };
}

export interface NodeReport {
  readonly name: string;
  readonly role: string;
  /** false: the node is in Node_Status but not in the desired state (any more). */
  readonly desired: boolean;
  /** null: the node's agent has not reported yet. */
  readonly appliedGeneration: number | null;
  readonly appliedCfg: number | null;
  /** Latest published generation minus the applied one. */
  readonly lag: number | null;
  /** ms since the agent's last heartbeat (the agent's clock against ours; same machine in the lab). */
  readonly heartbeatAgeMs: number | null;
  /** Out of the upstream ECMP set: withdrawn by its own agent, fenced by the planner, or confirmed out by the
   *  operator (`fencedBy`). */
  readonly fenced: boolean;
  readonly fencedBy: 'agent' | 'planner' | 'operator' | null;
  readonly error: string | null;
  /** A gateway's BGP and BFD state as its agent last read it from its BIRD (null: no BIRD). */
  readonly routing: string | null;
  /** A gateway's continuous hash audit as its agent last ran it (null: not reported): `ok (...)`, or
   *  `CANNOT AGREE: <why>` (the agent keeps it withdrawn), or why it is unchecked. */
  readonly hashAgreement: string | null;
  /** A host's live slot audit as its agent last ran it (null: not reported): `ok: ...`, `DISAGREE: <lb> <n> of
   *  <m> ... (e.g. <5-tuple> ...)` (a gateway hashes differently from the model), `unknown: <why>`. */
  readonly slotAudit: string | null;
}

export interface BackendReport {
  readonly lb: string;
  readonly backend: string;
  readonly host: string;
  readonly adminState: string;
  /** The load balancer's health check, in words (healthCheckText): what the host agent probes. */
  readonly check: string;
  /** From the host agent's health check; `unknown` when no report. */
  readonly health: string;
  /** The latest probe's result: `pass`, `fail`, or null (none reported). `up` with `fail` is falling, `down` with
   *  `pass` rising. */
  readonly lastProbe: 'pass' | 'fail' | null;
  readonly connections: number | null;
  readonly reportedBy: string | null;
  readonly checkedAgeMs: number | null;
}

export interface StatusReport {
  readonly desiredCfg: number;
  /** desired_cfg the latest published generation was planned from (null: nothing published). */
  readonly plannedCfg: number | null;
  readonly generation: number;
  readonly gatewayGeneration: number;
  readonly nodes: readonly NodeReport[];
  readonly backends: readonly BackendReport[];
  readonly waiting: { readonly gateways: readonly string[]; readonly hosts: readonly string[] };
  /** Slots of the latest generation that keep a previous owner with connections ('waits'), or that cannot move
   *  because their chain is full ('chain-full') or an owner's host is silent ('silent-host'): the planner's own
   *  notes, recomputed from the same store state. */
  readonly waitingSlots: readonly SlotWait[];
  /** OVN rows `sluice ovn sync` does not serve, and why (docs/ovn.md); empty without the importer. */
  readonly ovnSkipped: readonly OvnSkippedRow[];
  /** Set while the store's roles deny agents their acknowledgement in Node_Heartbeat: the step that was missed
   *  (src/store/db/rbac.ts ackDeniedHint). */
  readonly rolesWarning?: string;
}

export interface SlotWait {
  readonly lb: string;
  readonly slots: readonly number[];
  /** The second chance that still holds connections. */
  readonly backend: string | undefined;
  readonly connections: number | undefined;
  /** Why, in words: "web slots 3, 17 wait: second chance 10.0.1.11:8080 has 4 connections". */
  readonly message: string;
}

/**
 * The slots that wait for connections to end: what the planner computes from the store (the latest generation, the
 * effective desired state, every host's connection report), so status shows the same reasons the planner logs.
 */
export function slotWaits(r: Replica, now = Date.now(), cache?: PlanCache): SlotWait[] {
  const view = readStoreView(r);
  if (view.latest === null) return [];
  return (observedPlannerStep(view, now, cache)?.notes ?? [])
    .filter((n) => n.kind === 'waits' || n.kind === 'chain-full' || n.kind === 'silent-host')
    .map((n) => ({
      lb: n.lb,
      slots: n.slots,
      backend: n.backend,
      connections: n.connections,
      message: n.message,
    }));
}

/** What `sluice status` reads: the desired state, plans and fence marks (Sluice), heartbeats, acknowledgements and
 *  reports (Sluice_Status). */
export const STATUS_MONITOR = {
  ...DESIRED_STATE_MONITOR,
  ...PLAN_MONITOR,
  Node_Status: {},
  Node_Heartbeat: {},
  Backend_Status: {},
  Slot_Connections: {},
};

/** The check hosts run for a stored load balancer (its health_check as stored: validated by the planner and the
 *  agents, not here, so a malformed one reads `invalid` instead of failing the whole report). */
function storedCheckText(lb: { readonly protocol: string; readonly healthCheck?: unknown }): string {
  const h = lb.healthCheck;
  if (h === undefined)
    return healthCheckText(healthCheckOf({ protocol: lb.protocol === 'udp' ? 'udp' : 'tcp' }));
  const typed = typeof h === 'object' && h !== null && typeof (h as { type?: unknown }).type === 'string';
  return typed ? healthCheckText(h as HealthCheck) : 'invalid';
}

/** Every backend of the desired state with its check and what its host reported (Backend_Status). */
export function backendReports(
  r: Replica,
  config: {
    readonly loadBalancers: ReadonlyArray<{
      readonly name: string;
      readonly protocol: string;
      readonly healthCheck?: unknown;
      readonly backends: ReadonlyArray<{ address: string; port?: number; host: string; state: string }>;
    }>;
  },
  now = Date.now(),
): BackendReport[] {
  // By the table's index (node, lb, backend): one lookup per backend, not a scan of every report (10,000 VIPs x 20
  // backends made that 4e10 comparisons per status page).
  const reports = new Map(rows(r, BackendStatusTable).map((x) => [`${x.node} ${x.lb} ${x.backend}`, x]));
  const backends: BackendReport[] = [];
  for (const lb of config.loadBalancers) {
    for (const b of lb.backends) {
      const key = backendKey({ address: b.address, port: b.port });
      const rep = reports.get(`${b.host} ${lb.name} ${key}`);
      backends.push({
        lb: lb.name,
        backend: key,
        host: b.host,
        adminState: b.state,
        check: storedCheckText(lb),
        health: rep?.health ?? 'unknown',
        lastProbe: rep?.last_ok === undefined ? null : rep.last_ok ? 'pass' : 'fail',
        connections: rep === undefined ? null : rep.connections,
        reportedBy: rep === undefined ? null : rep.node,
        checkedAgeMs: rep === undefined ? null : Math.max(0, now - rep.checked_at),
      });
    }
  }
  return backends;
}

/** What agents reported, joined with the desired state (nodes, backends) and the latest published generation. */
/** `cache`: a PlanCache for the planner's step it recomputes (observedPlannerStep). */
export function statusReport(r: Replica, now = Date.now(), cache?: PlanCache): StatusReport {
  const stored = readDesiredState(r);
  const generation = publishedGeneration(r);
  const plan = publishedPlanHead(r);
  const statusRows = new Map(rows(r, NodeStatusTable).map((row) => [row.node, row]));
  const beats = new Map(rows(r, NodeHeartbeatTable).map((row) => [row.node, row]));
  const names = new Set([...stored.config.nodes.map((n) => n.name), ...statusRows.keys(), ...beats.keys()]);
  const nodes: NodeReport[] = [...names].sort().map((name) => {
    const want = stored.config.nodes.find((n) => n.name === name);
    const st = statusRows.get(name);
    const beat = beats.get(name);
    const ack = nodeAck(st, beat);
    const applied = ack === undefined ? null : ack.appliedGeneration;
    const marks = fenceMarks(st, beat);
    const fencedBy = marks.byAgent
      ? 'agent'
      : marks.byPlanner !== undefined
        ? 'planner'
        : marks.byOperator !== undefined
          ? 'operator'
          : null;
    return {
      name,
      role: want?.role ?? marks.role ?? '?',
      desired: want !== undefined,
      appliedGeneration: applied,
      appliedCfg: ack === undefined ? null : ack.appliedCfg,
      lag: applied === null ? null : generation - applied,
      heartbeatAgeMs: beat === undefined ? null : Math.max(0, now - beat.heartbeat_at),
      fenced: fencedBy !== null,
      fencedBy,
      error: ack?.error ?? null,
      routing: marks.routing ?? null,
      hashAgreement: marks.hashAgreement ?? null,
      slotAudit: marks.slotAudit ?? null,
    };
  });
  const backends = backendReports(r, stored.config, now);
  const behind = (role: string) =>
    nodes
      .filter((n) => n.role === role && n.desired && !n.fenced && (n.appliedGeneration ?? 0) < generation)
      .map((n) => n.name);
  return {
    desiredCfg: stored.desiredCfg,
    plannedCfg: plan === undefined ? null : plan.desired_cfg,
    generation,
    gatewayGeneration: gatewayGeneration(r),
    nodes,
    backends,
    waiting: { gateways: behind('gateway'), hosts: behind('host') },
    waitingSlots: slotWaits(r, now, cache),
    ovnSkipped: readOvnSkipped(r),
  };
}

export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A table with a header row, or `none` when there are no rows. */
export function tableOr(
  none: string,
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  return rows.length === 0 ? none : table([header, ...rows]);
}

function age(ms: number | null): string {
  if (ms === null) return '-';
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s ago` : `${Math.round(ms / 1000)}s ago`;
}

const NODE_COLUMNS = ['NODE', 'ROLE', 'APPLIED', 'LAG', 'HEARTBEAT', 'FENCED', 'ERROR'];

function nodeRow(n: NodeReport): string[] {
  return [
    n.desired ? n.name : `${n.name} (not desired)`,
    n.role,
    n.appliedGeneration === null ? '-' : String(n.appliedGeneration),
    n.lag === null ? '-' : String(n.lag),
    age(n.heartbeatAgeMs),
    n.fencedBy === null ? 'no' : n.fencedBy === 'agent' ? 'yes' : `yes (${n.fencedBy})`,
    n.error ?? '-',
  ];
}

/** Gateways whose agent drives BIRD: their BGP and BFD state, as a table after the nodes'. */
function routingLines(nodes: readonly NodeReport[]): string[] {
  const routed = nodes.filter((n) => n.routing !== null);
  return routed.length === 0
    ? []
    : ['', table([['GATEWAY', 'BGP / BFD'], ...routed.map((n) => [n.name, n.routing!])])];
}

/** Gateways whose continuous audit says their hash cannot agree with the others' (they stay withdrawn), and hosts
 *  whose live slot audit found connections committed in another slot than the model's (a gateway hashes
 *  differently). */
export function hashWarnings(nodes: readonly NodeReport[]): string[] {
  const gateways = nodes
    .filter((n) => n.hashAgreement?.startsWith(CANNOT_AGREE) === true)
    .map(
      (n) =>
        `WARNING ${n.name} (withdrawn by its agent): ${n.hashAgreement!.slice(CANNOT_AGREE.length).trim()}`,
    );
  const hosts = nodes
    .filter((n) => n.slotAudit?.startsWith(SLOT_DISAGREE) === true)
    .map(
      (n) =>
        `WARNING ${n.name}: a gateway's hash disagrees with the model: ${n.slotAudit!.slice(SLOT_DISAGREE.length).trim()}`,
    );
  return [...gateways, ...hosts];
}

const BACKEND_COLUMNS = [
  'LB',
  'BACKEND',
  'HOST',
  'ADMIN',
  'CHECK',
  'HEALTH',
  'LAST PROBE',
  'CONNS',
  'REPORTED',
];

function backendRow(b: BackendReport): string[] {
  return [
    b.lb,
    b.backend,
    b.host,
    b.adminState,
    b.check,
    b.health,
    b.lastProbe ?? '-',
    b.connections === null ? '-' : String(b.connections),
    age(b.checkedAgeMs),
  ];
}

export function formatStatus(s: StatusReport): string {
  const lines: string[] = [];
  const planned =
    s.plannedCfg === null
      ? 'nothing published yet (is a planner running?)'
      : s.plannedCfg < s.desiredCfg
        ? `latest plan is from desired_cfg ${s.plannedCfg}: the planner has not caught up yet`
        : `latest plan is from desired_cfg ${s.plannedCfg}`;
  if (s.rolesWarning !== undefined) lines.push(`WARNING ${s.rolesWarning}`, '');
  lines.push(`desired_cfg ${s.desiredCfg}; ${planned}`);
  lines.push(`generation ${s.generation} published, ${s.gatewayGeneration} released to gateways`);
  lines.push(
    '',
    tableOr('no nodes', NODE_COLUMNS, s.nodes.map(nodeRow)),
    ...routingLines(s.nodes),
    ...hashWarnings(s.nodes).flatMap((w, i) => (i === 0 ? ['', w] : [w])),
    '',
    tableOr('no backends', BACKEND_COLUMNS, s.backends.map(backendRow)),
  );
  lines.push('');
  const w = s.waiting;
  lines.push(
    s.generation === 0
      ? 'no generation published yet'
      : w.gateways.length === 0 && w.hosts.length === 0
        ? `every live node applied generation ${s.generation}`
        : [
            w.hosts.length > 0 ? `hosts behind generation ${s.generation}: ${w.hosts.join(', ')}` : '',
            w.gateways.length > 0
              ? `gateways behind generation ${s.generation}: ${w.gateways.join(', ')}`
              : '',
          ]
            .filter((x) => x !== '')
            .join('\n'),
  );
  if (s.waitingSlots.length > 0) {
    lines.push('');
    lines.push('slots keeping previous owners that hold connections, or waiting to move on a full chain:');
    for (const w of s.waitingSlots) lines.push(`  ${w.message}`);
  }
  if (s.ovnSkipped.length > 0) {
    lines.push('');
    lines.push(`OVN rows sluice ovn sync does not serve (${s.ovnSkipped.length}):`);
    for (const o of s.ovnSkipped) lines.push(`  ${formatOvnRow(o)}: ${o.reason}`);
  }
  return lines.join('\n');
}

/** The latest published generation and the config it was planned from (for explain). */
export async function publishedState(db: string): Promise<{ config: Config; generation: Generation }> {
  return withStore(db, { ...DESIRED_STATE_MONITOR, ...PLAN_MONITOR }, async (s) => {
    const plan = readPlan(s.replica);
    if (plan === undefined)
      throw new SluiceError(
        'SLUICE_E_STORE_NOT_FOUND',
        'no generation is published in the store yet (is a planner running?)',
      );
    const config =
      plan.docs === undefined
        ? storedConfig(s.replica).config
        : parseConfig(planDocument(plan.docs), `(the config of generation ${plan.generation.number})`);
    return { config, generation: plan.generation };
  });
}
