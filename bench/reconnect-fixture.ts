// What the store reconnect benchmarks share (reconnect.ts, reconnect-window.ts): a byte-counting proxy that can cut a
// daemon off its store, the store's writer (desired state and the planner's publications, as the planner writes them)
// and a fresh monitor's cost on the same state.

import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { parseConfig } from '../src/model/schema.ts';
import { type Monitor, OvsdbClient } from '../src/ovsdb/client.ts';
import type { MonitorCondRequest } from '../src/ovsdb/protocol.ts';
import { PlanCache } from '../src/rollout/plan-cache.ts';
import { planNext } from '../src/rollout/planner.ts';
import {
  DB_NAME,
  DESIRED_STATE_MONITOR,
  desiredStateOps,
  GlobalTable,
  insert,
  mapPut,
  mutate,
  NodeHeartbeatTable,
  PLAN_MONITOR,
  prunePlansOps,
  publishedGeneration,
  publishGenerationOps,
  readGeneration,
  STATUS_DB_NAME,
  storedDesiredCfg,
  update,
  where,
} from '../src/store/db/index.ts';
import { syntheticDesiredDoc, writeInBatches } from './store-fixture.ts';

const KEEP = 5;

export type MonitorRequests = { readonly [table: string]: MonitorCondRequest };
export const DEADLINE_MS = 600_000;

/** A TCP proxy to one ovsdb-server unix socket that counts what the server sends and can cut and refuse. */
export class CountingProxy {
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

export interface Sample {
  readonly bytes: number;
  readonly ms: number;
  readonly resumed: boolean;
}

export function withDeadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${DEADLINE_MS} ms`)), DEADLINE_MS);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** The store's writer: the desired state and the planner's publications, through its own direct session. */
export class Writer {
  doc = syntheticDesiredDoc(0);
  added = 0;
  readonly client: OvsdbClient;
  readonly m: Monitor;
  /** The planner's memory of its steps (a step visits what changed). */
  readonly #plans = new PlanCache();
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
      const next = planNext({
        config,
        latest,
        connections: () => 0,
        now: Date.now(),
        cache: this.#plans,
      }).next;
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

  /** `n` heartbeat transactions of one node (its Node_Heartbeat row), one at a time as agents write them: in
   *  Sluice_Status, where agents write them (schema 3.0.0), so they never push Sluice's transactions out. */
  async beats(n: number): Promise<void> {
    if (n === 0) return;
    const node = `gw-beat-${this.added}`;
    await this.client.transact(
      STATUS_DB_NAME,
      insert(NodeHeartbeatTable, { node, heartbeat_at: 0, external_ids: new Map() }),
    );
    for (let i = 1; i <= n; i++)
      await this.client.transact(
        STATUS_DB_NAME,
        update(NodeHeartbeatTable, [where(NodeHeartbeatTable, 'node', '==', node)], { heartbeat_at: i }),
      );
  }

  /** `n` transactions in Sluice that change nothing a daemon monitors (Global external_ids): what heartbeats were
   *  there before schema 3.0.0, the negative control of a resume. */
  async sluiceWrites(n: number): Promise<void> {
    for (let i = 1; i <= n; i++)
      await this.client.transact(
        DB_NAME,
        mutate(GlobalTable, [], mapPut(GlobalTable, 'external_ids', { bench_write: String(i) })),
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

/** A new client with the same monitors as a daemon (one per database): bytes the store sent it and the time to its
 *  snapshots. */
export async function freshMonitors(
  proxy: CountingProxy,
  remote: string,
  parts: readonly (readonly [string, MonitorRequests])[],
): Promise<Sample> {
  proxy.admit();
  const t0 = performance.now();
  const client = new OvsdbClient({ remotes: [remote] });
  try {
    await client.connect();
    await withDeadline(client.monitorDatabases(parts), 'fresh snapshots');
    return { bytes: proxy.bytes, ms: performance.now() - t0, resumed: false };
  } finally {
    client.close();
  }
}

/** A new client with the same monitor of Sluice: bytes the store sent it and the time to its snapshot. */
export function freshMonitor(
  proxy: CountingProxy,
  remote: string,
  requests: MonitorRequests,
): Promise<Sample> {
  return freshMonitors(proxy, remote, [[DB_NAME, requests]]);
}

export const kb = (b: number) => (b >= 1e6 ? `${(b / 1e6).toFixed(2)} MB` : `${(b / 1e3).toFixed(1)} kB`);
