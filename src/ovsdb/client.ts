// OvsdbClient: an RFC 7047 session that survives failures. It owns one JsonRpcConnection at a time and moves
// through an explicit state machine (TRANSITIONS below). After every (re)connect it negotiates: checks the
// member's cluster role in the `_Server` database, re-issues every monitor (monitor_cond_since: resumed from the
// last transaction it saw when the server still has it, else a fresh snapshot; either way emitting only the
// difference to what the caller already saw) and re-requests every wanted lock. Design: docs/design/ovsdb.md.

import { EventEmitter } from 'node:events';
import { OvsdbError } from './errors.ts';
import { JsonRpcConnection, type TlsFiles } from './jsonrpc.ts';
import {
  applyColumnDiff,
  columnOf,
  type DatabaseSchema,
  decodeRow,
  type ErrorObject,
  ID_RE,
  isErrorObject,
  type JsRow,
  type MonitorCondRequest,
  type Operation,
  type OperationResult,
  type Row,
  type RowUpdate,
  type RowUpdate2,
  type TableSchema,
  type TableUpdates,
  type TableUpdates2,
  ZERO_UUID,
} from './protocol.ts';
import { diffTables, Replica, type ReplicaTables, ReplicaUnion, type RowChange } from './replica.ts';

// ---------------------------------------------------------------------------------------------------------
// Connection state machine
//
//   idle --start--> connecting --socket open--> negotiating --monitors+locks restored--> connected
//                      |                            |                                       |
//                      +--------- failure ----------+------------- failure / dead peer -----+--> backoff
//   backoff --timer (next remote)--> connecting          any state --close()--> closed (final)

export type ConnectionState = 'idle' | 'connecting' | 'negotiating' | 'connected' | 'backoff' | 'closed';

export const TRANSITIONS: { readonly [S in ConnectionState]: readonly ConnectionState[] } = {
  idle: ['connecting', 'closed'],
  connecting: ['negotiating', 'backoff', 'closed'],
  negotiating: ['connected', 'backoff', 'closed'],
  connected: ['backoff', 'closed'],
  backoff: ['connecting', 'closed'],
  closed: [],
};

export interface OvsdbClientOptions {
  /** Remotes to try in order (cluster members): `unix:/path` or `tcp:host:port`. */
  readonly remotes: readonly string[];
  /**
   * The database whose cluster role decides which member to use. When set, the client monitors
   * `_Server`.`Database` for it and skips a member whose copy is not `connected` (no quorum) or older than one
   * already seen (`index`), and, with `leaderOnly`, one that is not the Raft leader.
   */
  readonly database?: string;
  /**
   * Use only the cluster leader (as ovsdb-idl does by default). Needed for locks: ovsdb-server keeps locks per
   * server process, not in the Raft log, so two planners must talk to the same (leader) server to contend.
   */
  readonly leaderOnly?: boolean;
  /**
   * Inactivity probe: after this long without a byte we send "echo"; after twice this long (plus the allowance for
   * the size of the database, `silenceLimitMs`) we give up. Not while a monitor reply is pending (the server builds a
   * snapshot without sending anything): then the deadline is `negotiateTimeoutMs` of silence. 0 = off.
   */
  readonly probeIntervalMs?: number;
  readonly connectTimeoutMs?: number;
  /** How long a request waits for the client to be connected before failing with SLUICE_E_OVSDB_CONNECT. */
  readonly waitConnectedMs?: number;
  /** Per-request reply timeout once sent (default 60 s; 0 = none, a dead peer is then caught by the probe only). */
  readonly requestTimeoutMs?: number;
  /**
   * Deadline of one negotiation (the `_Server` check, every monitor's get_schema and snapshot, every lock request),
   * default 60 s: a member that accepts the connection but never answers (hung, SIGSTOPped: the kernel still
   * accepts) is left for the next remote. The inactivity probe also runs while negotiating, but not while a
   * monitor's snapshot is pending; this deadline also bounds the silence allowed then.
   */
  readonly negotiateTimeoutMs?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** Credentials for `ssl:` remotes (mutual TLS; docs/security.md). */
  readonly tls?: TlsFiles;
  /** Called for state changes and failures (structured logging hook). */
  readonly log?: (event: string, fields: Readonly<Record<string, unknown>>) => void;
}

interface Waiter {
  readonly resolve: (c: JsonRpcConnection) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Silence allowed per byte of the snapshots this client last received (ms), on top of two probe intervals: 0.5 s per
 * MB. ovsdb-server is single-threaded and sends nothing to anyone while it builds one client's snapshot or commits a
 * large transaction, so at scale a healthy store is silent for seconds (10,000 VIPs: 1.3 s for an agent's 48 MB
 * snapshot, 5.4 s for the planner's 86 MB, one after the other when a fleet reconnects). The snapshot this client
 * saw is its measure of the database's size; 2 MB/s is about a tenth of the server's build rate, i.e. room for
 * about ten such builds in a row. A small store keeps the fast detection (2 intervals plus milliseconds).
 */
const SILENCE_MS_PER_SNAPSHOT_BYTE = 0.5 / 1000;

/** A transaction's results, one per operation (ovsdb-server(7): wait/commit/comment yield `{}`). */
export type TransactResult = OperationResult[];

export class OvsdbClient extends EventEmitter {
  readonly #opts: Required<Omit<OvsdbClientOptions, 'database' | 'log' | 'tls'>> &
    Pick<OvsdbClientOptions, 'database' | 'log' | 'tls'>;
  #state: ConnectionState = 'idle';
  #conn: JsonRpcConnection | undefined;
  #remoteIndex = 0;
  #failures = 0;
  #backoffTimer: NodeJS.Timeout | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  #negotiateTimer: NodeJS.Timeout | undefined;
  #echoOutstanding = false;
  /** Monitor requests (snapshots) in flight per connection: the server may build one for long without a byte. */
  readonly #building = new WeakMap<JsonRpcConnection, number>();
  #waiters: Waiter[] = [];
  readonly #monitors = new Map<string, Monitor>();
  readonly #locks = new Map<string, OvsdbLock>();
  #serverMonitor: Monitor | undefined;
  /** Largest `_Server` Database `index` seen: never go back to a member with older data. */
  #maxIndex = 0;
  #nextMonitorId = 1;
  /** Remote of the current connection (or the last one tried). */
  remote: string | undefined;
  /** Number of completed negotiations (1 after the first connect; grows with every reconnect). */
  connects = 0;
  /** Echo requests the server sent us (its inactivity probe) and we answered. */
  serverEchoes = 0;

  constructor(options: OvsdbClientOptions) {
    super();
    if (options.remotes.length === 0)
      throw new OvsdbError('SLUICE_E_USAGE', 'OvsdbClient needs at least one remote');
    this.#opts = {
      remotes: [...options.remotes],
      database: options.database,
      leaderOnly: options.leaderOnly ?? false,
      probeIntervalMs: options.probeIntervalMs ?? 5000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      waitConnectedMs: options.waitConnectedMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
      negotiateTimeoutMs: options.negotiateTimeoutMs ?? 60_000,
      backoffInitialMs: options.backoffInitialMs ?? 100,
      backoffMaxMs: options.backoffMaxMs ?? 5000,
      log: options.log,
      tls: options.tls,
    };
    if (this.#opts.database !== undefined) {
      this.#serverMonitor = new Monitor(
        this,
        '_Server',
        {
          Database: {
            columns: ['name', 'model', 'connected', 'leader', 'index'],
            where: [['name', '==', this.#opts.database]],
          },
        },
        'monitor_cond',
        'server',
      );
      this.#serverMonitor.on('update', () => this.#checkServerRow(this.#conn));
    }
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The member of `_Server`.`Database` for `database` on the current server, when `database` is set. */
  get serverRow(): JsRow | undefined {
    return this.#serverMonitor?.replica.rows('Database')[0];
  }

  /** Starts connecting and resolves once connected (or rejects after `waitConnectedMs`). */
  async connect(): Promise<void> {
    if (this.#state === 'idle') this.#connectNext();
    await this.#whenConnected();
  }

  /** Closes the session for good: pending requests fail with SLUICE_E_OVSDB_CLOSED. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#transition('closed');
    clearTimeout(this.#backoffTimer);
    clearTimeout(this.#negotiateTimer);
    this.#stopProbe();
    const conn = this.#conn;
    this.#conn = undefined;
    conn?.close();
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new OvsdbError('SLUICE_E_OVSDB_CLOSED', 'OVSDB client closed'));
    }
    for (const lock of this.#locks.values()) lock._setState('unlocked', 'closed');
  }

  // -------------------------------------------------------------------------------------------------------
  // Requests

  /** Sends one JSON-RPC request once connected. */
  async request(method: string, params: readonly unknown[]): Promise<unknown> {
    const conn = await this.#whenConnected();
    return conn.request(method, params, this.#opts.requestTimeoutMs);
  }

  /** 4.1.1 list_dbs. */
  async listDbs(): Promise<string[]> {
    return (await this.request('list_dbs', [])) as string[];
  }

  /** 4.1.2 get_schema. */
  async getSchema(db: string): Promise<DatabaseSchema> {
    return (await this.request('get_schema', [db])) as DatabaseSchema;
  }

  /**
   * 4.1.3 transact. Resolves with one result per operation. RFC 7047: "If an operation fails, the result ...
   * is an error object ... and subsequent operations are not executed"; "the result array may contain one more
   * element than params ... if the transaction as a whole failed at commit" (e.g. a referential integrity or
   * constraint violation). Either way this throws OvsdbError SLUICE_E_OVSDB_TRANSACTION naming the op index.
   */
  async transact(db: string, ...ops: Operation[]): Promise<TransactResult> {
    const raw = await this.request('transact', [db, ...ops]);
    return checkTransactResult(db, ops, raw);
  }

  /**
   * Starts a monitor (`monitor_cond` by default, or RFC 7047 `monitor`) and resolves once its initial snapshot is
   * in `monitor.replica`. The monitor survives reconnects: it is re-issued and the difference emitted.
   */
  async monitor(
    db: string,
    requests: { readonly [table: string]: MonitorCondRequest },
    method: 'monitor_cond' | 'monitor' = 'monitor_cond',
  ): Promise<Monitor> {
    if (method === 'monitor' && Object.values(requests).some((r) => r.where !== undefined)) {
      throw new OvsdbError('SLUICE_E_USAGE', 'RFC 7047 monitor has no "where": use monitor_cond');
    }
    const m = new Monitor(this, db, requests, method, `m${this.#nextMonitorId++}`);
    this.#monitors.set(m.id, m);
    try {
      const conn = await this.#whenConnected();
      // Negotiation establishes registered monitors: only a monitor added while connected needs it here.
      if (!m._isEstablished)
        await m._establish(conn).catch((e: unknown) => {
          // A dropped connection is not the monitor's fault: negotiation re-establishes it.
          if (e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_DISCONNECTED') return;
          throw e;
        });
      // Connected, then the snapshot (its request has the same deadline): at 10,000 VIPs it can queue behind other
      // clients' snapshots for longer than waitConnectedMs alone.
      await m.ready(this._deadlines.snapshot);
    } catch (e) {
      // Given up, perhaps with the request still pending (a reconnect re-issued it): the server may set the monitor
      // up anyway, so it is cancelled there and its updates ignored.
      this.#monitors.delete(m.id);
      m._abandon().catch(() => {});
      throw e;
    }
    return m;
  }

  /**
   * One monitor per database of `parts` ([database, requests], each resuming from its own last transaction), read
   * as one replica (ReplicaUnion; table names must not overlap). A database the server does not serve fails with
   * SLUICE_E_OVSDB_PROTOCOL naming it (and `hint`: what to do), before any monitor starts.
   */
  async monitorDatabases(
    parts: readonly (readonly [string, { readonly [table: string]: MonitorCondRequest }])[],
    hint = '',
    needs: { readonly [db: string]: string } = {},
  ): Promise<MonitorSet> {
    const served = await this.listDbs();
    for (const [db] of parts)
      if (!served.includes(db))
        throw new OvsdbError(
          'SLUICE_E_OVSDB_PROTOCOL',
          `the store does not serve database ${db} (it serves ${served.filter((d) => d !== '_Server').join(', ')})` +
            (hint === '' ? '' : `: ${hint}`),
        );
    const monitors: Monitor[] = [];
    try {
      for (const [db, requests] of parts) {
        const m = await this.monitor(db, requests);
        monitors.push(m);
        // A store older than this client's schema would refuse or silently drop the columns it writes.
        const have = m.schema?.version ?? '0.0.0';
        if (needs[db] !== undefined && olderSchema(have, needs[db]))
          throw new OvsdbError(
            'SLUICE_E_OVSDB_PROTOCOL',
            `the store's database ${db} is at schema ${have}, this sluice needs ${needs[db]} or later` +
              (hint === '' ? '' : `: ${hint}`),
          );
      }
    } catch (e) {
      for (const m of monitors) await this.cancelMonitor(m).catch(() => {});
      throw e;
    }
    return new MonitorSet(monitors);
  }

  /** Stops a monitor (4.1.7 monitor_cancel) and forgets it; one whose request is pending is cancelled on reply. */
  async cancelMonitor(m: Monitor): Promise<void> {
    if (!this.#monitors.delete(m.id)) return;
    await m._abandon();
  }

  /** Reply deadlines (ms): `request` for short requests (0: none), `snapshot` for a monitor's reply. */
  get _deadlines(): { readonly request: number; readonly snapshot: number } {
    return {
      request: this.#opts.requestTimeoutMs,
      snapshot: this.#opts.waitConnectedMs + this.#opts.negotiateTimeoutMs,
    };
  }

  /**
   * 4.1.8 lock. Resolves once the server answered: the returned lock is `held`, or `waiting` until a "locked"
   * notification arrives. The lock is re-requested after every reconnect until `unlock()`.
   */
  async lock(id: string): Promise<OvsdbLock> {
    checkLockId(id);
    let lock = this.#locks.get(id);
    if (lock?._wanted && lock.state !== 'unlocked') return lock;
    if (lock === undefined) {
      lock = new OvsdbLock(this, id);
      this.#locks.set(id, lock);
    }
    lock._wanted = true;
    const conn = await this.#whenConnected();
    // A (re)connect negotiation may have requested it meanwhile.
    if (lock.state === 'unlocked') await lock._request(conn, 'lock');
    return lock;
  }

  /**
   * 4.1.9 steal: takes the lock from its owner, who gets a "stolen" notification. ovsdb-server refuses a
   * second request for a lock this session already asked for, so a waiting request is withdrawn first.
   */
  async steal(id: string): Promise<OvsdbLock> {
    checkLockId(id);
    let lock = this.#locks.get(id);
    if (lock === undefined) {
      lock = new OvsdbLock(this, id);
      this.#locks.set(id, lock);
    }
    lock._wanted = true;
    const conn = await this.#whenConnected();
    if (lock.state === 'held') return lock;
    if (lock.state === 'waiting') await conn.request('unlock', [id], this.#opts.requestTimeoutMs);
    await lock._request(conn, 'steal');
    return lock;
  }

  /** 4.1.8 unlock: releases the lock (or stops waiting for it) and stops re-requesting it. */
  async unlock(id: string): Promise<void> {
    const lock = this.#locks.get(id);
    if (lock === undefined) return;
    lock._wanted = false;
    this.#locks.delete(id);
    // While negotiating, the lock may already have been re-requested on the new session: withdraw it there too.
    const conn = this.#conn;
    if ((this.#state === 'connected' || this.#state === 'negotiating') && conn !== undefined) {
      await conn.request('unlock', [id], this.#opts.requestTimeoutMs);
    }
    lock._setState('unlocked', 'released');
  }

  // -------------------------------------------------------------------------------------------------------
  // Session internals

  /** Event `state` (to, from, why): `why` is the error that sent the session to backoff. */
  #transition(to: ConnectionState, why?: Error): void {
    const from = this.#state;
    if (!TRANSITIONS[from].includes(to)) throw new Error(`ovsdb client: illegal transition ${from} -> ${to}`);
    this.#state = to;
    this.#opts.log?.('ovsdb.state', { from, to, remote: this.remote });
    this.emit('state', to, from, why);
  }

  #connectNext(): void {
    if (this.#state === 'closed') return;
    this.#transition('connecting');
    const remote = this.#opts.remotes[this.#remoteIndex % this.#opts.remotes.length]!;
    this.remote = remote;
    const handlers = {
      onNotification: (method: string, params: readonly unknown[]) =>
        this.#onNotification(conn, method, params),
      onEcho: () => {
        this.serverEchoes++;
      },
      onClose: (error: Error | undefined) => {
        if (conn === this.#conn)
          this.#fail(error ?? new OvsdbError('SLUICE_E_OVSDB_DISCONNECTED', `${remote}: closed`));
      },
    };
    let conn: JsonRpcConnection | undefined;
    // A usage problem (an ssl: remote without credentials) throws here: fail like any connect failure.
    new Promise<JsonRpcConnection>((resolve, reject) => {
      JsonRpcConnection.open(remote, handlers, this.#opts.connectTimeoutMs, this.#opts.tls).then(
        resolve,
        reject,
      );
    }).then(
      (c) => {
        conn = c;
        if (this.#state !== 'connecting') {
          c.close();
          return;
        }
        this.#conn = c;
        this.#transition('negotiating');
        // Deadlines from the first byte: a peer that accepted but never answers must not hold us here.
        this.#startProbe(c);
        const limit = this.#opts.negotiateTimeoutMs;
        this.#negotiateTimer = setTimeout(() => {
          if (c === this.#conn && this.#state === 'negotiating')
            this.#fail(
              new OvsdbError(
                'SLUICE_E_OVSDB_TIMEOUT',
                `${remote}: negotiation did not finish in ${limit} ms`,
              ),
            );
        }, limit);
        this.#negotiate(c).catch((e: unknown) => {
          if (c === this.#conn) this.#fail(e as Error);
        });
      },
      (e: unknown) => this.#fail(e as Error),
    );
  }

  async #negotiate(conn: JsonRpcConnection): Promise<void> {
    if (this.#serverMonitor !== undefined) {
      await this.#serverMonitor._establish(conn);
      const why = this.#serverRowProblem();
      if (why !== undefined) throw new OvsdbError('SLUICE_E_OVSDB_CONNECT', `${conn.remote}: ${why}`);
    }
    for (const m of this.#monitors.values()) {
      try {
        await m._establish(conn);
      } catch (e) {
        // The server refused this monitor (unknown table, bad condition...): fail the monitor, not the session,
        // or every reconnect would fail the same way. Not one it served before: this member cannot serve it now (a
        // database of a monitor set not ready here), and dropping it would leave its replica stale for good while
        // the session looks healthy; the next member is tried instead.
        if (
          !(e instanceof OvsdbError) ||
          (e.code !== 'SLUICE_E_OVSDB_RPC' && e.code !== 'SLUICE_E_OVSDB_VALUE')
        )
          throw e;
        if (m.everReady)
          throw new OvsdbError('SLUICE_E_OVSDB_CONNECT', `monitor of ${m.db} refused: ${e.message}`);
        this.#monitors.delete(m.id);
        m._failed(e);
        this.#opts.log?.('ovsdb.monitor_failed', { db: m.db, error: e.message });
      }
    }
    for (const lock of this.#locks.values()) if (lock._wanted) await lock._request(conn, 'lock');
    if (conn !== this.#conn || this.#state !== 'negotiating') return;
    this.#transition('connected');
    clearTimeout(this.#negotiateTimer);
    this.#failures = 0;
    this.connects++;
    this.#opts.log?.('ovsdb.connected', { remote: conn.remote, connects: this.connects });
    this.emit('connected', conn.remote);
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.resolve(conn);
    }
  }

  /** Why the current member is unusable for `database`, or undefined. */
  #serverRowProblem(): string | undefined {
    const row = this.serverRow;
    if (row === undefined) return `database ${this.#opts.database} is not served here`;
    if (row.connected !== true) return `database ${this.#opts.database} is not connected to its cluster`;
    if (this.#opts.leaderOnly && row.model === 'clustered' && row.leader !== true)
      return 'not the cluster leader';
    const index = typeof row.index === 'number' ? row.index : 0;
    if (index < this.#maxIndex) return `stale data (index ${index} < ${this.#maxIndex} seen)`;
    this.#maxIndex = Math.max(this.#maxIndex, index);
    return undefined;
  }

  #checkServerRow(conn: JsonRpcConnection | undefined): void {
    if (conn === undefined || this.#state !== 'connected') return;
    const why = this.#serverRowProblem();
    if (why !== undefined) {
      this.#opts.log?.('ovsdb.member_unusable', { remote: conn.remote, why });
      this.#fail(new OvsdbError('SLUICE_E_OVSDB_CONNECT', `${conn.remote}: ${why}`));
    }
  }

  #fail(error: Error): void {
    if (this.#state === 'closed' || this.#state === 'backoff') return;
    const conn = this.#conn;
    this.#conn = undefined;
    this.#stopProbe();
    clearTimeout(this.#negotiateTimer);
    conn?.close();
    for (const m of this.#monitors.values()) m._disconnected();
    this.#serverMonitor?._disconnected();
    for (const lock of this.#locks.values())
      if (lock.state !== 'unlocked') lock._setState('waiting', 'disconnected');
    this.#failures++;
    this.#remoteIndex++;
    const rounds = Math.floor((this.#failures - 1) / this.#opts.remotes.length);
    const delay = Math.min(this.#opts.backoffMaxMs, this.#opts.backoffInitialMs * 2 ** rounds);
    this.#opts.log?.('ovsdb.disconnected', { remote: this.remote, error: error.message, retryInMs: delay });
    this.#transition('backoff', error);
    this.emit('disconnected', error);
    this.#backoffTimer = setTimeout(() => this.#connectNext(), delay);
  }

  #whenConnected(): Promise<JsonRpcConnection> {
    if (this.#state === 'connected' && this.#conn !== undefined) return Promise.resolve(this.#conn);
    if (this.#state === 'closed')
      return Promise.reject(new OvsdbError('SLUICE_E_OVSDB_CLOSED', 'OVSDB client closed'));
    if (this.#state === 'idle') this.#connectNext();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(
            new OvsdbError(
              'SLUICE_E_OVSDB_CONNECT',
              `no usable OVSDB remote within ${this.#opts.waitConnectedMs} ms (${this.#opts.remotes.join(', ')})`,
            ),
          );
        }, this.#opts.waitConnectedMs),
      };
      this.#waiters.push(waiter);
    });
  }

  /** A monitor request on `conn` started (+1) or ended (-1). */
  _building(conn: JsonRpcConnection, delta: 1 | -1): void {
    this.#building.set(conn, (this.#building.get(conn) ?? 0) + delta);
  }

  /**
   * How long `conn` may stay silent before the peer counts as dead. While a snapshot is pending, the negotiation
   * deadline: the server sends nothing until it has built the whole reply (at 10,000 VIPs, seconds), and giving up
   * earlier made every retry restart that work (117 drops in 5 minutes, no daemon reconnected). Otherwise two probe
   * intervals plus an allowance that grows with the replicas' size in snapshot bytes, as OVN deployments raise their probe
   * intervals at scale; capped by the negotiation deadline. A frozen server is still caught in 2 intervals on a
   * small store and within a minute on any.
   */
  silenceLimitMs(conn: JsonRpcConnection | undefined = this.#conn): number {
    const base = 2 * this.#opts.probeIntervalMs;
    const cap = Math.max(base, this.#opts.negotiateTimeoutMs);
    if (conn !== undefined && (this.#building.get(conn) ?? 0) > 0) return cap;
    let bytes = 0;
    for (const m of this.#monitors.values()) bytes += m.sizeEstimate;
    return Math.min(cap, Math.round(base + bytes * SILENCE_MS_PER_SNAPSHOT_BYTE));
  }

  // Keepalive (4.1.11 echo). ovsdb-server probes us on TCP; we answer in jsonrpc.ts. We also probe it: a
  // frozen or partitioned server sends nothing, so silence past `silenceLimitMs` means the peer is dead.
  #startProbe(conn: JsonRpcConnection): void {
    const interval = this.#opts.probeIntervalMs;
    if (interval <= 0) return;
    this.#echoOutstanding = false;
    const timer = setInterval(
      () => {
        const idle = performance.now() - conn.lastReceived;
        if (idle >= this.silenceLimitMs(conn)) {
          // Check again after this turn's I/O: when this process itself was busy (a long compile or parse), the
          // timer runs before the socket data waiting for it has been read; that is not the peer's silence.
          setImmediate(() => {
            const still = performance.now() - conn.lastReceived;
            if (still >= this.silenceLimitMs(conn) && this.#probeTimer === timer)
              this.#fail(
                new OvsdbError(
                  'SLUICE_E_OVSDB_TIMEOUT',
                  `${conn.remote}: no message for ${Math.round(still)} ms`,
                ),
              );
          });
        } else if (idle >= interval && !this.#echoOutstanding) {
          this.#echoOutstanding = true;
          conn.request('echo', ['sluice']).then(
            () => {
              this.#echoOutstanding = false;
            },
            () => {
              this.#echoOutstanding = false;
            },
          );
        }
      },
      Math.max(10, Math.floor(interval / 4)),
    );
    this.#probeTimer = timer;
    timer.unref();
  }

  #stopProbe(): void {
    clearInterval(this.#probeTimer);
    this.#probeTimer = undefined;
  }

  #onNotification(conn: JsonRpcConnection | undefined, method: string, params: readonly unknown[]): void {
    if (conn === undefined || conn !== this.#conn) return;
    switch (method) {
      case 'update':
      case 'update2':
      case 'update3': {
        const id = params[0];
        const target = [...this.#monitors.values(), this.#serverMonitor].find((m) => m?._owns(id));
        try {
          // update3 (monitor_cond_since): [id, last-txn-id, table-updates2].
          if (method === 'update3') target?._notify('update2', params[2], params[1] as string);
          else target?._notify(method, params[1]);
        } catch (e) {
          // An update we cannot apply (it does not fit the schema we fetched) leaves the replica unknown:
          // drop the session, and the reconnect resyncs every monitor from a fresh snapshot.
          this.#fail(
            new OvsdbError(
              'SLUICE_E_OVSDB_PROTOCOL',
              `${conn.remote}: bad ${method}: ${(e as Error).message}`,
            ),
          );
        }
        return;
      }
      case 'locked':
      case 'stolen': {
        const lock = this.#locks.get(String(params[0]));
        // 4.1.8: "locked" means "the client now owns the lock"; 4.1.10: "stolen" means "another client has
        // stolen the lock"; ovsdb-server keeps the victim's request queued, so it will get "locked" again later.
        lock?._setState(method === 'locked' ? 'held' : 'waiting', method);
        return;
      }
      case 'monitor_canceled': {
        this.#opts.log?.('ovsdb.monitor_canceled', { id: params[0] });
        conn.close();
        return;
      }
      default:
        this.#opts.log?.('ovsdb.notification_ignored', { method });
    }
  }
}

/** 4.1.8: "params": [<id>]; ovsdb-server rejects anything else ("lock request params must be <id>"). */
function checkLockId(id: string): void {
  if (!ID_RE.test(id))
    throw new OvsdbError(
      'SLUICE_E_USAGE',
      `lock id ${JSON.stringify(id)} is not an <id> ([a-zA-Z_][a-zA-Z0-9_]*)`,
    );
}

function opName(ops: readonly Operation[], i: number): string {
  return i < ops.length ? `${ops[i]!.op}` : 'commit';
}

/** Turns a transact reply into results or the OvsdbError of its first failed operation. */
export function checkTransactResult(db: string, ops: readonly Operation[], raw: unknown): TransactResult {
  if (!Array.isArray(raw)) {
    throw new OvsdbError('SLUICE_E_OVSDB_PROTOCOL', `transact on ${db}: result is not an array`, {
      method: 'transact',
    });
  }
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i] as unknown;
    if (isErrorObject(r)) {
      const e = r as ErrorObject;
      throw new OvsdbError(
        'SLUICE_E_OVSDB_TRANSACTION',
        `transact on ${db}: op ${i} (${opName(ops, i)}) failed: ${e.error}${e.details !== undefined ? `: ${e.details}` : ''}`,
        { opIndex: i, ovsdbError: e.error, details: e.details, method: 'transact' },
      );
    }
  }
  if (raw.length < ops.length) {
    throw new OvsdbError(
      'SLUICE_E_OVSDB_PROTOCOL',
      `transact on ${db}: ${raw.length} results for ${ops.length} ops`,
    );
  }
  return raw.slice(0, ops.length) as TransactResult;
}

// ---------------------------------------------------------------------------------------------------------
// Monitors

export interface UpdateInfo {
  /** The first snapshot after `client.monitor()`. */
  readonly initial: boolean;
  /** A fresh snapshot after a reconnect; `changes` is its difference to the previous replica. */
  readonly resync: boolean;
  /** A reconnect that resumed from the last transaction seen (monitor_cond_since "found"): `changes` are what
   *  happened meanwhile, no snapshot was sent. */
  readonly resumed?: boolean;
}

/** Event `reestablished` of a Monitor: after every reconnect, whether it resumed or downloaded a snapshot. */
export interface Reestablished {
  readonly resumed: boolean;
  /** Rows changed meanwhile (what an `update` then carries). */
  readonly changes: number;
  /** A snapshot's bytes (resumed: none). */
  readonly snapshotBytes?: number;
}

/** One log line per reconnect of a daemon's monitor: resumed, or the snapshot it downloaded (operators size the
 *  store's CPU by these; docs/design/ovsdb.md, "Two databases"). */
export function logReestablished(
  log: { info(o: object, msg: string): void },
  r: Reestablished,
  m: { readonly db: string },
): void {
  log.info(
    {
      event: 'store-monitor',
      db: m.db,
      resumed: r.resumed,
      changes: r.changes,
      snapshotBytes: r.snapshotBytes,
    },
    r.resumed
      ? `store monitor of ${m.db}: resumed from its last transaction (${r.changes} rows changed meanwhile)`
      : `store monitor of ${m.db}: downloaded a snapshot (${r.snapshotBytes ?? 0} bytes)`,
  );
}

/** One log line per change of a daemon's session state, with why a session ended: a reconnect loop (a member not
 *  the leader, a monitor refused...) explains itself from the daemon's log. */
export function logSessionState(
  log: { info(o: object, msg: string): void },
  to: string,
  remote: string | undefined,
  why?: Error,
): void {
  log.info(
    { event: 'ovsdb-state', state: to, remote, ...(why ? { error: why.message } : {}) },
    why ? `ovsdb ${to}: ${why.message}` : `ovsdb ${to}`,
  );
}

/**
 * Monitors of several databases on one client (monitorDatabases), read through one replica. Events: `update`
 * (changes, info, monitor) from any of them, after its replica was updated.
 */
export class MonitorSet extends EventEmitter {
  readonly monitors: readonly Monitor[];
  readonly replica: Replica;

  constructor(monitors: readonly Monitor[]) {
    super();
    this.monitors = monitors;
    this.replica =
      monitors.length === 1 ? monitors[0]!.replica : new ReplicaUnion(monitors.map((m) => m.replica));
    for (const m of monitors) {
      m.on('update', (changes: readonly RowChange[], info: UpdateInfo) =>
        this.emit('update', changes, info, m),
      );
      m.on('reestablished', (r: Reestablished) => this.emit('reestablished', r, m));
    }
  }

  /** The monitor of database `db`. */
  of(db: string): Monitor | undefined {
    return this.monitors.find((m) => m.db === db);
  }

  /** Reconnects that resumed, over every monitor. */
  get resumes(): number {
    return this.monitors.reduce((n, m) => n + m.resumes, 0);
  }
}

/**
 * A monitor and its replica. Events: `update` (changes: RowChange[], info: UpdateInfo), emitted after the
 * replica has been updated; `reestablished` (Reestablished) after each reconnect, even when nothing changed.
 */
export class Monitor extends EventEmitter {
  readonly db: string;
  readonly requests: { readonly [table: string]: MonitorCondRequest };
  readonly method: 'monitor_cond' | 'monitor';
  readonly id: string;
  readonly replica = new Replica();
  readonly #client: OvsdbClient;
  #schema: DatabaseSchema | undefined;
  #established = 0;
  /** json-value of the monitor on the current connection. */
  _activeId: string | undefined;
  /** The connection `_activeId` lives on. */
  #activeConn: JsonRpcConnection | undefined;
  /** Notifications that arrived for a monitor request whose reply is still being processed. */
  #pendingId: string | undefined;
  #buffer: { method: string; updates: unknown; txn: string | undefined }[] = [];
  /** Last transaction this replica reflects (monitor_cond_since); undefined: none yet, or not known. */
  #lastTxnId: string | undefined;
  /** The server answered monitor_cond_since with "unknown method": plain monitor_cond from then on. */
  #noSince = false;
  /** Reconnects that resumed from the last transaction instead of downloading a snapshot. */
  resumes = 0;
  /** Bytes received while the last snapshot (not a resume) was pending: the client's measure of the store's size. */
  snapshotBytes = 0;
  /** Rows that snapshot held. */
  #snapshotRows = 0;
  #readyResolve: (() => void) | undefined;
  #readyReject: ((e: Error) => void) | undefined;
  readonly #ready: Promise<void>;
  #detached = false;
  #everReady = false;

  constructor(
    client: OvsdbClient,
    db: string,
    requests: { readonly [table: string]: MonitorCondRequest },
    method: 'monitor_cond' | 'monitor',
    id: string,
  ) {
    super();
    this.#client = client;
    this.db = db;
    this.requests = requests;
    this.method = method;
    this.id = id;
    this.#ready = new Promise((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    this.#ready.catch(() => {}); // observed through ready()
  }

  /** What a snapshot of the replica would weigh now: the last snapshot's bytes per row (200 when it had no rows)
   *  times the rows it holds now, so a store that grew through updates since (set-up) counts at its current size. */
  get sizeEstimate(): number {
    let rows = 0;
    for (const t of this.replica.tables.values()) rows += t.size;
    return (this.#snapshotRows > 0 ? this.snapshotBytes / this.#snapshotRows : 200) * rows;
  }

  get schema(): DatabaseSchema | undefined {
    return this.#schema;
  }

  /** Stops this monitor (monitor_cancel). */
  cancel(): Promise<void> {
    return this.#client.cancelMonitor(this);
  }

  /** The server refused the monitor before it ever had a snapshot: it is dropped; `error` events carry why. */
  _failed(e: Error): void {
    this._detach();
    this.#readyReject?.(e);
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new OvsdbError('SLUICE_E_OVSDB_CONNECT', `monitor on ${this.db}: no snapshot in ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
    });
    return Promise.race([this.#ready, timeout]).finally(() => clearTimeout(timer));
  }

  /** It had a snapshot once (its replica is what the caller reads). */
  get everReady(): boolean {
    return this.#everReady;
  }

  get _isEstablished(): boolean {
    return this._activeId !== undefined || this.#pendingId !== undefined;
  }

  _owns(id: unknown): boolean {
    return id === this._activeId || id === this.#pendingId;
  }

  _detach(): void {
    this.#detached = true;
    this._activeId = undefined;
    this.#pendingId = undefined;
  }

  /**
   * Its caller gave it up: detached (no more updates), and cancelled on the server where it is set up. A request
   * still pending is cancelled when its reply arrives or its deadline passes (_establish).
   */
  _abandon(): Promise<void> {
    const id = this._activeId;
    const conn = this.#activeConn;
    this._detach();
    return id === undefined || conn === undefined ? Promise.resolve() : this.#cancelOn(conn, id);
  }

  /** 4.1.7 monitor_cancel of `mid` on `conn` (nothing to do once it closed: the server forgot its monitors). */
  async #cancelOn(conn: JsonRpcConnection, mid: string): Promise<void> {
    if (conn.closed) return;
    const { request, snapshot } = this.#client._deadlines;
    await conn.request('monitor_cancel', [mid], request > 0 ? request : snapshot);
  }

  _disconnected(): void {
    this._activeId = undefined;
    this.#activeConn = undefined;
    this.#pendingId = undefined;
    this.#buffer = [];
  }

  #table(name: string): TableSchema {
    const t = this.#schema?.tables[name];
    if (t === undefined) throw new OvsdbError('SLUICE_E_OVSDB_VALUE', `${this.db} has no table ${name}`);
    return t;
  }

  /** A received row with omitted monitored columns set to their defaults, plus `_uuid`. */
  #fullRow(table: string, uuid: string, row: Row): JsRow {
    const ts = this.#table(table);
    const cols = this.requests[table]?.columns;
    const decoded = decodeRow(ts, row, true) as Record<string, unknown>;
    if (cols !== undefined) {
      for (const c of Object.keys(ts.columns)) if (!cols.includes(c)) delete decoded[c];
    }
    return Object.freeze({ ...decoded, _uuid: uuid }) as JsRow;
  }

  /** Issues the monitor request on `conn`, replaces the replica with the snapshot and emits the difference. */
  async _establish(conn: JsonRpcConnection): Promise<void> {
    if (this.#detached) return;
    const deadlines = this.#client._deadlines;
    this.#schema = (await conn.request('get_schema', [this.db], deadlines.request)) as DatabaseSchema;
    if (this.#detached) return;
    const mid = `${this.id}.${conn.remote}.${++this.#established}`;
    const reqs: Record<string, unknown> = {};
    for (const [table, r] of Object.entries(this.requests)) {
      // Name the columns when the caller did not: otherwise ovsdb-server also sends `_version`, which differs
      // between cluster members and across restarts, so a resync would report every row as modified.
      const columns = r.columns ?? Object.keys(this.#table(table).columns);
      if (this.method === 'monitor_cond') reqs[table] = [{ ...r, columns }];
      else reqs[table] = [{ columns, select: r.select }];
    }
    this.#pendingId = mid;
    this.#buffer = [];
    const bytesBefore = conn.bytesReceived;
    let reply: { result: unknown; found: boolean } | undefined;
    try {
      reply = await this.#building(conn, () => this.#request(conn, mid, reqs, deadlines.snapshot));
    } catch (e) {
      // No reply in time: the server may still set it up (it answers a session's requests in order, so the cancel
      // arrives after it) and would send its updates for good.
      if (e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_TIMEOUT')
        this.#cancelOn(conn, mid).catch(() => {});
      throw e;
    }
    // Given up while pending (client.monitor's deadline, cancelMonitor): the server set it up for nobody.
    if (this.#detached) {
      if (reply !== undefined) await this.#cancelOn(conn, mid).catch(() => {});
      return;
    }
    if (reply === undefined || this.#pendingId !== mid) return; // the connection dropped meanwhile
    const { result, found } = reply;
    if (found && this.#everReady) {
      this.#resume(conn, mid, result);
      return;
    }
    this.snapshotBytes = conn.bytesReceived - bytesBefore;
    const snapshot = new Map<string, Map<string, JsRow>>();
    for (const table of Object.keys(this.requests)) snapshot.set(table, new Map());
    const updates = (result ?? {}) as Record<string, Record<string, RowUpdate | RowUpdate2>>;
    for (const [table, rows] of Object.entries(updates)) {
      const t = snapshot.get(table) ?? new Map<string, JsRow>();
      snapshot.set(table, t);
      for (const [uuid, u] of Object.entries(rows)) {
        const row = 'initial' in u ? u.initial : (u as RowUpdate).new;
        if (row !== undefined) t.set(uuid, this.#fullRow(table, uuid, row));
      }
    }
    const first = !this.#everReady;
    const changes = diffTables(this.replica.tables as ReplicaTables, snapshot);
    this.replica.replace(snapshot);
    this.#snapshotRows = [...snapshot.values()].reduce((n, t) => n + t.size, 0);
    this._activeId = mid;
    this.#activeConn = conn;
    this.#pendingId = undefined;
    const buffered = this.#buffer;
    this.#buffer = [];
    if (first) {
      this.#everReady = true;
      this.#emitUpdate(changes, { initial: true, resync: false });
      this.#readyResolve?.();
    } else {
      this.emit('reestablished', {
        resumed: false,
        changes: changes.length,
        snapshotBytes: this.snapshotBytes,
      } satisfies Reestablished);
    }
    if (!first && changes.length > 0) {
      this.#emitUpdate(changes, { initial: false, resync: true });
    }
    for (const b of buffered) this._notify(b.method, b.updates, b.txn);
  }

  /**
   * Runs `request` with the client's silence deadline lifted on `conn` (the server sends no byte while it builds the
   * snapshot). Not for `_Server`, which is small and answered at once, nor for get_schema: a member that accepted the
   * connection but answers nothing at all is still left by the probe.
   */
  async #building<T>(conn: JsonRpcConnection, request: () => Promise<T>): Promise<T> {
    if (this.db === '_Server') return request();
    this.#client._building(conn, 1);
    try {
      return await request();
    } finally {
      this.#client._building(conn, -1);
    }
  }

  /**
   * The monitor request: monitor_cond_since from the last transaction seen (ovsdb-server 2.12+; a server that keeps
   * transaction history, a Raft member, answers "found" and sends only what changed since), else the method asked
   * for. Undefined: a newer request superseded this one.
   */
  async #request(
    conn: JsonRpcConnection,
    mid: string,
    reqs: Record<string, unknown>,
    deadlineMs: number,
  ): Promise<{ result: unknown; found: boolean } | undefined> {
    // _Server (the session's own member checks) is small and kept by the server in memory: a snapshot is fine.
    if (this.method !== 'monitor_cond' || this.#noSince || this.db === '_Server')
      return { result: await conn.request(this.method, [this.db, mid, reqs], deadlineMs), found: false };
    try {
      const r = (await conn.request(
        'monitor_cond_since',
        [this.db, mid, reqs, this.#lastTxnId ?? ZERO_UUID],
        deadlineMs,
      )) as [boolean, string, unknown];
      this.#lastTxnId = r[1];
      return { result: r[2], found: r[0] === true };
    } catch (e) {
      if (!(e instanceof OvsdbError && e.ovsdbError === 'unknown method')) throw e;
      this.#noSince = true;
      if (this.#pendingId !== mid) return undefined;
      return { result: await conn.request(this.method, [this.db, mid, reqs], deadlineMs), found: false };
    }
  }

  /** A reconnect that resumed: `updates` (table-updates2) are the changes since the last transaction seen. */
  #resume(conn: JsonRpcConnection, mid: string, updates: unknown): void {
    const changes = this.#changesOf('update2', updates ?? {});
    this.replica.apply(changes);
    this._activeId = mid;
    this.#activeConn = conn;
    this.#pendingId = undefined;
    this.resumes++;
    const buffered = this.#buffer;
    this.#buffer = [];
    this.emit('reestablished', { resumed: true, changes: changes.length } satisfies Reestablished);
    if (changes.length > 0) this.#emitUpdate(changes, { initial: false, resync: true, resumed: true });
    for (const b of buffered) this._notify(b.method, b.updates, b.txn);
  }

  /** An update/update2 notification for this monitor. */
  _notify(method: string, updates: unknown, txn?: string): void {
    if (this.#pendingId !== undefined) {
      this.#buffer.push({ method, updates, txn });
      return;
    }
    const changes = this.#changesOf(method, updates);
    if (txn !== undefined) this.#lastTxnId = txn;
    if (changes.length === 0) return;
    this.replica.apply(changes);
    this.#emitUpdate(changes, { initial: false, resync: false });
  }

  /** The row changes an update (RFC 7047) or update2 (table-updates2) makes to the replica. */
  #changesOf(method: string, updates: unknown): RowChange[] {
    const changes: RowChange[] = [];
    if (method === 'update2') {
      for (const [table, rows] of Object.entries(updates as TableUpdates2)) {
        const ts = this.#table(table);
        for (const [uuid, u] of Object.entries(rows)) {
          const old = this.replica.get(table, uuid);
          if ('delete' in u) {
            if (old !== undefined) changes.push({ table, uuid, old, new: undefined });
          } else if ('modify' in u) {
            if (old === undefined) continue;
            const next: Record<string, unknown> = { ...old };
            for (const [col, diff] of Object.entries(u.modify)) {
              next[col] = applyColumnDiff(old[col], diff, columnOf(ts, col).type);
            }
            changes.push({ table, uuid, old, new: Object.freeze(next) as JsRow });
          } else {
            const row = 'insert' in u ? u.insert : u.initial;
            changes.push({ table, uuid, old, new: this.#fullRow(table, uuid, row) });
          }
        }
      }
    } else {
      // RFC 7047 4.1.6: ""old" ... present for "delete" and "modify" updates"; ""new" ... present for "initial",
      // "insert", and "modify" updates ... For "modify" updates, the new value of each monitored column".
      for (const [table, rows] of Object.entries(updates as TableUpdates)) {
        for (const [uuid, u] of Object.entries(rows)) {
          const old = this.replica.get(table, uuid);
          if (u.new === undefined) {
            if (old !== undefined) changes.push({ table, uuid, old, new: undefined });
          } else {
            const merged =
              old === undefined ? this.#fullRow(table, uuid, u.new) : this.#mergeNew(table, uuid, old, u.new);
            changes.push({ table, uuid, old, new: merged });
          }
        }
      }
    }
    return changes;
  }

  /** A listener's exception is the listener's: rethrown outside the protocol path, not taken as a bad update. */
  #emitUpdate(changes: RowChange[], info: UpdateInfo): void {
    try {
      this.emit('update', changes, info);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  #mergeNew(table: string, uuid: string, old: JsRow, row: Row): JsRow {
    const decoded = decodeRow(this.#table(table), row, false);
    return Object.freeze({ ...old, ...decoded, _uuid: uuid }) as JsRow;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Locks

export type LockState = 'unlocked' | 'waiting' | 'held';

/**
 * A named lock (RFC 7047 4.1.8-4.1.10). Events: `state` (state: LockState, reason: string) where reason is one
 * of lock, steal, locked, stolen, disconnected, released, closed.
 */
export class OvsdbLock extends EventEmitter {
  readonly id: string;
  readonly #client: OvsdbClient;
  #state: LockState = 'unlocked';
  _wanted = false;

  constructor(client: OvsdbClient, id: string) {
    super();
    this.#client = client;
    this.id = id;
  }

  get state(): LockState {
    return this.#state;
  }

  get held(): boolean {
    return this.#state === 'held';
  }

  unlock(): Promise<void> {
    return this.#client.unlock(this.id);
  }

  /** Resolves when the lock is held (rejects after `timeoutMs`). */
  waitHeld(timeoutMs: number): Promise<void> {
    if (this.held) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onState = (s: LockState) => {
        if (s === 'held') {
          clearTimeout(timer);
          this.off('state', onState);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.off('state', onState);
        reject(new OvsdbError('SLUICE_E_OVSDB_TIMEOUT', `lock ${this.id} not acquired in ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('state', onState);
    });
  }

  _setState(s: LockState, reason: string): void {
    if (s === this.#state) return;
    this.#state = s;
    this.emit('state', s, reason);
  }

  async _request(conn: JsonRpcConnection, method: 'lock' | 'steal'): Promise<void> {
    const r = (await conn.request(method, [this.id], this.#client._deadlines.request)) as {
      locked?: unknown;
    };
    this._setState(r?.locked === true ? 'held' : 'waiting', method);
  }
}

/** Whether schema version `have` (x.y.z) is older than `need` with the same major version, or of an older major. */
function olderSchema(have: string, need: string): boolean {
  const [a, b] = [have, need].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if (a![i] !== b![i]) return (a![i] ?? 0) < (b![i] ?? 0);
  return false;
}
