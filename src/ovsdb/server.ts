// Runs Debian's ovsdb-server for sluice: one standalone server (the embedded default the lab/CLI starts) or a
// Raft cluster of N members on 127.0.0.1. Every file (database, sockets, pidfile, unixctl, log) lives in a
// directory the caller owns; servers run as child processes (no --detach) and are stopped by their own PID.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { OvsdbError } from './errors.ts';
import type { TlsFiles } from './jsonrpc.ts';

const run = promisify(execFile);

/** Path of schema/<file>, from the source tree or the built package. */
function schemaFile(file: string): string {
  for (const rel of [`../../schema/${file}`, `../../../schema/${file}`]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new OvsdbError('SLUICE_E_IO', `schema/${file} not found`);
}

/** Path of schema/sluice.ovsschema (database Sluice: desired state, plans, acknowledgements). */
export function sluiceSchemaPath(): string {
  return schemaFile('sluice.ovsschema');
}

/** Path of schema/sluice-status.ovsschema (database Sluice_Status: heartbeats and reports), which every sluice store
 *  serves next to Sluice. */
export function sluiceStatusSchemaPath(): string {
  return schemaFile('sluice-status.ovsschema');
}

/** Both schemas of a sluice store, Sluice first. */
export function sluiceSchemaPaths(): string[] {
  return [sluiceSchemaPath(), sluiceStatusSchemaPath()];
}

/** The file a store keeps database `d` of `schemas` in: `<base>.db` for the first (the historical name), else
 *  `<base>-<database name>.db`. */
export function databaseFile(dir: string, base: string, schemaPath: string, first: boolean): string {
  return join(dir, first ? `${base}.db` : `${base}-${schemaName(schemaPath)}.db`);
}

/** The database name a schema file declares (its "name"). */
export function schemaName(schemaPath: string): string {
  const name: unknown = JSON.parse(readFileSync(schemaPath, 'utf8')).name;
  if (typeof name !== 'string') throw new OvsdbError('SLUICE_E_IO', `${schemaPath}: the schema has no name`);
  return name;
}

async function tool(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, [...args], { timeout: 30_000 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new OvsdbError('SLUICE_E_IO', `${cmd} ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** `ovsdb-tool create db schema`: a standalone database file. */
export async function createDatabase(dbFile: string, schemaPath = sluiceSchemaPath()): Promise<void> {
  await tool('ovsdb-tool', ['create', dbFile, schemaPath]);
}

/** A free TCP port on 127.0.0.1 (bound then released; a race with other programs is possible but unlikely). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface OvsdbServerOptions {
  /** Directory for the socket, pidfile, unixctl socket and log (must exist). */
  readonly dir: string;
  /** Database file(s) to serve. */
  readonly dbFiles: readonly string[];
  /** Name used for the files in `dir` (several servers may share a dir). */
  readonly name?: string;
  /** Client TCP port on 127.0.0.1; 0 or undefined picks a free one. */
  readonly tcpPort?: number;
  /**
   * Run in its own session and do not keep this process alive for it (the lab's store outlives `sluice lab up`;
   * it is stopped by its pidfile `<dir>/<name>.pid`). Default false: a plain child process.
   */
  readonly detached?: boolean;
  /**
   * Also serve the TLS remotes listed in the database (`--remote=db:Sluice,Store,connections`, each with its RBAC
   * role; src/store/db/rbac.ts) with this server key, certificate and CA (client certificates must chain to it).
   */
  readonly tls?: TlsFiles;
}

export class OvsdbServerProcess {
  readonly options: OvsdbServerOptions;
  readonly unixPath: string;
  readonly ctlPath: string;
  readonly logPath: string;
  readonly tcpPort: number;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  constructor(options: OvsdbServerOptions, tcpPort: number) {
    this.options = options;
    const name = options.name ?? 'ovsdb';
    this.unixPath = join(options.dir, `${name}.sock`);
    this.ctlPath = join(options.dir, `${name}.ctl`);
    this.logPath = join(options.dir, `${name}.log`);
    this.tcpPort = tcpPort;
  }

  get unixRemote(): string {
    return `unix:${this.unixPath}`;
  }

  get tcpRemote(): string {
    return `tcp:127.0.0.1:${this.tcpPort}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Starts the server and waits until its unix socket accepts connections. */
  async start(timeoutMs = 10_000): Promise<void> {
    if (this.running) return;
    const name = this.options.name ?? 'ovsdb';
    const args = [
      ...this.options.dbFiles,
      `--remote=punix:${this.unixPath}`,
      `--remote=ptcp:${this.tcpPort}:127.0.0.1`,
      `--pidfile=${join(this.options.dir, `${name}.pid`)}`,
      `--unixctl=${this.ctlPath}`,
      `--log-file=${this.logPath}`,
      '-vconsole:off',
      ...(this.options.tls === undefined
        ? []
        : [
            // Sluice is schema/sluice.ovsschema's database name.
            '--remote=db:Sluice,Store,connections',
            `--private-key=${this.options.tls.privateKey}`,
            `--certificate=${this.options.tls.certificate}`,
            `--ca-cert=${this.options.tls.caCert}`,
          ]),
    ];
    const child = spawn('ovsdb-server', args, { stdio: 'ignore', detached: this.options.detached ?? false });
    if (this.options.detached) child.unref();
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) {
        const err = await Promise.race([spawnError, sleep(10).then(() => undefined)]);
        throw new OvsdbError(
          'SLUICE_E_IO',
          `ovsdb-server exited at start (${err?.message ?? `see ${this.logPath}`})`,
        );
      }
      if (await canConnect(this.unixPath)) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new OvsdbError(
          'SLUICE_E_IO',
          `ovsdb-server did not listen on ${this.unixPath} in ${timeoutMs} ms`,
        );
      }
      await sleep(20);
    }
  }

  /** Stops the server (SIGTERM, then SIGKILL after `graceMs`) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    const child = this.#child;
    if (child === undefined || !this.running) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Sends a signal to the server's own PID (e.g. SIGSTOP / SIGCONT to freeze it). */
  signal(sig: NodeJS.Signals): void {
    if (this.#child?.pid !== undefined) process.kill(this.#child.pid, sig);
  }

  /** `ovs-appctl -t <ctl> <command>` against this server. */
  appctl(...args: string[]): Promise<string> {
    return tool('ovs-appctl', ['-t', this.ctlPath, ...args]);
  }
}

/** Creates `<dir>/<name>.db` (and one file per further schema, databaseFile) if missing and starts a standalone server
 *  on them. Default: both databases of a sluice store. */
export async function startStandalone(
  dir: string,
  schemaPath: string | readonly string[] = sluiceSchemaPaths(),
  name = 'ovsdb',
): Promise<OvsdbServerProcess> {
  const schemas = typeof schemaPath === 'string' ? [schemaPath] : schemaPath;
  const dbFiles: string[] = [];
  for (const [i, schema] of schemas.entries()) {
    const db = databaseFile(dir, name, schema, i === 0);
    if (!existsSync(db)) await createDatabase(db, schema);
    dbFiles.push(db);
  }
  const srv = new OvsdbServerProcess({ dir, dbFiles, name }, await freePort());
  await srv.start();
  return srv;
}

export interface Cluster {
  readonly members: readonly OvsdbServerProcess[];
  /** Client remotes of every member (unix sockets), in member order. */
  readonly remotes: readonly string[];
  readonly tcpRemotes: readonly string[];
  stop(): Promise<void>;
}

export interface ClusterOptions {
  readonly schemaPath?: string;
  /** How long every member has to join, ms. Default 30 000. */
  readonly timeoutMs?: number;
  /** Raft between the members over mutual TLS (`ssl:` addresses) with this key, certificate and CA, which every
   *  member also serves its TLS client remotes with (OvsdbServerOptions.tls). Default: plain `tcp:`. */
  readonly tls?: TlsFiles;
  /** More databases every member serves, each its own Raft cluster on its own ports (ovsdb-server keeps transaction
   *  history per database: writes to one never push another's out). Default: Sluice_Status when `schemaPath` is
   *  not given (a sluice store), else none. */
  readonly moreSchemaPaths?: readonly string[];
}

/**
 * Creates and starts an `n`-member Raft cluster on 127.0.0.1 (`ovsdb-tool create-cluster` on the first member,
 * `join-cluster` on the others) and waits until every member reports the database connected.
 */
export async function startCluster(dir: string, n = 3, opts: ClusterOptions = {}): Promise<Cluster> {
  const schemaPath = opts.schemaPath ?? sluiceSchemaPath();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const more = opts.moreSchemaPaths ?? (opts.schemaPath === undefined ? [sluiceStatusSchemaPath()] : []);
  const schemas = [schemaPath, ...more];
  const proto = opts.tls ? 'ssl' : 'tcp';
  // dbs[i][d]: member i's file of database d (database 0 keeps the historical name member<i>.db).
  const dbs: string[][] = Array.from({ length: n }, () => []);
  for (const [d, schema] of schemas.entries()) {
    const raftPorts: number[] = [];
    for (let i = 0; i < n; i++) raftPorts.push(await freePort());
    const raft = (i: number) => `${proto}:127.0.0.1:${raftPorts[i]}`;
    const file = (i: number) => databaseFile(dir, `member${i + 1}`, schema, d === 0);
    await tool('ovsdb-tool', ['create-cluster', file(0), schema, raft(0)]);
    for (let i = 1; i < n; i++)
      await tool('ovsdb-tool', ['join-cluster', file(i), schemaName(schema), raft(i), raft(0)]);
    for (let i = 0; i < n; i++) dbs[i]!.push(file(i));
  }
  const members: OvsdbServerProcess[] = [];
  const cluster: Cluster = {
    members,
    get remotes() {
      return members.map((m) => m.unixRemote);
    },
    get tcpRemotes() {
      return members.map((m) => m.tcpRemote);
    },
    async stop() {
      await Promise.all(members.map((m) => m.stop()));
    },
  };
  try {
    for (let i = 0; i < n; i++) {
      const m = new OvsdbServerProcess(
        { dir, dbFiles: dbs[i]!, name: `member${i + 1}`, ...(opts.tls ? { tls: opts.tls } : {}) },
        await freePort(),
      );
      members.push(m);
      await m.start();
    }
    const deadline = Date.now() + timeoutMs;
    for (const m of members) {
      for (const dbName of schemas.map(schemaName))
        for (;;) {
          const status = await m.appctl('cluster/status', dbName).catch(() => '');
          if (/Status: cluster member/.test(status) && /Leader: (?!unknown)/.test(status)) break;
          if (Date.now() > deadline)
            throw new OvsdbError('SLUICE_E_IO', `cluster member ${m.unixPath} did not join:\n${status}`);
          await sleep(100);
        }
    }
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
