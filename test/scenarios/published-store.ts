// For unit tests that run the real AgentDaemon against a real store: a bare ovsdb-server on a temp unix socket (no
// lab) holding one generation of a desired document, published and released by hand (no planner), with a client
// monitoring every table. `stop` closes the client, stops the server (its own PID) and removes the directory.

import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { AgentDaemon, type AgentOptions } from '../../src/agent/daemon.ts';
import { parseConfig } from '../../src/model/schema.ts';
import { type MonitorSet, OvsdbClient } from '../../src/ovsdb/client.ts';
import { type OvsdbServerProcess, startStandalone } from '../../src/ovsdb/server.ts';
import { planNext } from '../../src/rollout/planner.ts';
import {
  ALL_TABLES_MONITOR,
  DB_NAME,
  GlobalTable,
  insert,
  publishGenerationOps,
  releaseOps,
  splitMonitor,
  splitPlanDocument,
} from '../../src/store/db/index.ts';
import { fakeFacts } from './fake-facts.ts';
import { FakeSwitch } from './fake-switch.ts';

/** One load balancer with one backend on host1: enough for a test about an agent, not about its load balancers. */
export const WEB = {
  name: 'web',
  vip: '198.18.0.1',
  protocol: 'tcp',
  ports: [80],
  backends: [{ address: '10.0.1.10', port: 80, host: 'host1' }],
};

export interface PublishedStore {
  /** The store's temp directory (removed by stop): a test may keep files of its own there. */
  readonly dir: string;
  readonly srv: OvsdbServerProcess;
  readonly client: OvsdbClient;
  readonly mon: MonitorSet;
  /** The generation published (Global.generation) and released to gateways. */
  readonly generation: number;
  /** The real AgentDaemon of host1 on this store: a FAKE switch (test/scenarios/fake-switch.ts, empty conntrack),
   *  heartbeats every 100 ms, silent unless `opts` says otherwise. Not started. */
  hostAgent(opts?: Partial<AgentOptions>): AgentDaemon;
  /** The same for gw1. */
  gatewayAgent(opts?: Partial<AgentOptions>): AgentDaemon;
  stop(): Promise<void>;
}

/** A store holding generation 1 of a desired document of gw1, host1 and `loadBalancers` (parseConfig's input; hash
 *  mode dp_hash, 8 slot bits). */
export async function publishedStore(
  name: string,
  loadBalancers: readonly { readonly name: string }[],
): Promise<PublishedStore> {
  const doc = {
    hashMode: 'dp_hash',
    slotBits: 8,
    nodes: [
      { name: 'gw1', role: 'gateway', tunnelIp: '192.0.2.1' },
      { name: 'host1', role: 'host', tunnelIp: '192.0.2.11' },
    ],
    loadBalancers,
  };
  const dir = mkdtempSync(join(tmpdir(), `sluice-${name}-`));
  const srv = await startStandalone(dir);
  const client = new OvsdbClient({ remotes: [`unix:${srv.unixPath}`] });
  await client.connect();
  const mon = await client.monitorDatabases(splitMonitor(ALL_TABLES_MONITOR));
  await client.transact(DB_NAME, insert(GlobalTable, { hash_mode: 'dp_hash', slot_bits: 8 }));
  const gen = planNext({ config: parseConfig(doc), latest: null, connections: () => 0, now: 1000 }).next!;
  await client.transact(DB_NAME, ...publishGenerationOps(mon.replica, gen, 1, splitPlanDocument(doc)));
  await client.transact(DB_NAME, ...releaseOps(gen.number));
  const agent = (node: 'gw1' | 'host1', opts: Partial<AgentOptions>) =>
    new AgentDaemon({
      role: node === 'gw1' ? 'gateway' : 'host',
      node,
      remotes: [`unix:${srv.unixPath}`],
      runner: new FakeSwitch(),
      facts: fakeFacts(parseConfig(doc), node),
      log: pino({ level: 'silent' }),
      heartbeatMs: 100,
      ...opts,
    });
  return {
    dir,
    srv,
    client,
    mon,
    generation: gen.number,
    hostAgent: (opts = {}) => agent('host1', opts),
    gatewayAgent: (opts = {}) => agent('gw1', opts),
    async stop() {
      client.close();
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `f` every 50 ms until it returns something; fails naming `what` after 20 s. */
export async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const x = await f();
    if (x !== undefined) return x;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
