// A host agent's connection report and health gauges, with the real AgentDaemon on a real store: a bare ovsdb-server
// on a temp unix socket (no lab) holding one generation published by hand (no planner), a FAKE switch
// (test/scenarios/fake-switch.ts, empty conntrack) and a FAKE health probe this test turns up and down.

import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { AgentDaemon } from '../../src/agent/daemon.ts';
import { parseConfig } from '../../src/model/schema.ts';
import { type MonitorSet, OvsdbClient } from '../../src/ovsdb/client.ts';
import { type OvsdbServerProcess, startStandalone } from '../../src/ovsdb/server.ts';
import { planNext } from '../../src/rollout/planner.ts';
import {
  ALL_TABLES_MONITOR,
  BackendStatusTable,
  DB_NAME,
  GlobalTable,
  insert,
  publishGenerationOps,
  releaseOps,
  rows,
  splitMonitor,
  splitPlanDocument,
} from '../../src/store/db/index.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';
import { FakeSwitch } from '../scenarios/fake-switch.ts';

const doc = {
  hashMode: 'dp_hash',
  slotBits: 8,
  nodes: [
    { name: 'gw1', role: 'gateway', tunnelIp: '192.0.2.1' },
    { name: 'host1', role: 'host', tunnelIp: '192.0.2.11' },
  ],
  loadBalancers: ['v0', 'v1', 'v2'].map((name, i) => ({
    name,
    vip: `198.18.0.${i + 1}`,
    protocol: 'tcp',
    ports: [80],
    backends: ['10.0.1.10', '10.0.1.11'].map((address) => ({ address, port: 80, host: 'host1' })),
  })),
};

let dir: string;
let srv: OvsdbServerProcess;
let client: OvsdbClient;
let mon: MonitorSet;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-agent-report-'));
  srv = await startStandalone(dir);
  client = new OvsdbClient({ remotes: [`unix:${srv.unixPath}`] });
  await client.connect();
  mon = await client.monitorDatabases(splitMonitor(ALL_TABLES_MONITOR));
  await client.transact(DB_NAME, insert(GlobalTable, { hash_mode: 'dp_hash', slot_bits: 8 }));
  const gen = planNext({ config: parseConfig(doc), latest: null, connections: () => 0, now: 1000 }).next!;
  await client.transact(DB_NAME, ...publishGenerationOps(mon.replica, gen, 1, splitPlanDocument(doc)));
  await client.transact(DB_NAME, ...releaseOps(gen.number));
});

after(async () => {
  client.close();
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const x = await f();
    if (x !== undefined) return x;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the backend gauges and rows follow each probe result (gauges set only where a row changes)', async () => {
  const down = new Set<string>();
  const agent = new AgentDaemon({
    role: 'host',
    node: 'host1',
    remotes: [`unix:${srv.unixPath}`],
    runner: new FakeSwitch(),
    facts: fakeFacts(parseConfig(doc), 'host1'),
    log: pino({ level: 'silent' }),
    heartbeatMs: 100,
    health: { intervalMs: 200, rise: 1, fall: 1 },
    probe: async (address) => !down.has(address),
  });
  const gauges = async () => {
    const m = (await agent.registry.getSingleMetric('sluice_agent_backend_up')!.get()).values;
    return new Map(m.map((v) => [`${v.labels.lb} ${v.labels.backend}`, v.value]));
  };
  const stored = () =>
    new Map(rows(mon.replica, BackendStatusTable).map((r) => [`${r.lb} ${r.backend}`, r.health]));
  /** Every backend's gauge and row once they show `want` (address -> 1 up / 0 down). */
  const settled = (want: (address: string) => number) =>
    until(`gauges and rows ${[...down]} down`, async () => {
      const [g, s] = [await gauges(), stored()];
      const keys = doc.loadBalancers.flatMap((lb) =>
        lb.backends.map((b) => [`${lb.name} ${b.address}:80`, b.address]),
      );
      const ok = keys.every(
        ([k, a]) => g.get(k!) === want(a!) && s.get(k!) === (want(a!) === 1 ? 'up' : 'down'),
      );
      return ok && g.size === 6 && s.size === 6 ? g : undefined;
    });
  await agent.start();
  try {
    await settled(() => 1);
    down.add('10.0.1.10');
    const g = await settled((a) => (down.has(a) ? 0 : 1));
    assert.equal(g.get('v1 10.0.1.10:80'), 0);
    assert.equal(g.get('v1 10.0.1.11:80'), 1);
    down.clear();
    await settled(() => 1);
  } finally {
    await agent.stop();
  }
});
