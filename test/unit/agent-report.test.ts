// A host agent's connection report and health gauges, with the real AgentDaemon on a real store: a bare ovsdb-server
// on a temp unix socket (no lab) holding one generation published by hand (no planner), a FAKE switch
// (test/scenarios/fake-switch.ts, empty conntrack) and a FAKE health probe this test turns up and down.

import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BackendStatusTable, rows } from '../../src/store/db/index.ts';
import { type PublishedStore, publishedStore, until } from '../scenarios/published-store.ts';

const LBS = ['v0', 'v1', 'v2'].map((name, i) => ({
  name,
  vip: `198.18.0.${i + 1}`,
  protocol: 'tcp',
  ports: [80],
  backends: ['10.0.1.10', '10.0.1.11'].map((address) => ({ address, port: 80, host: 'host1' })),
}));

let store: PublishedStore;

before(async () => {
  store = await publishedStore('agent-report', LBS);
});

after(() => store.stop());

test('the backend gauges and rows follow each probe result (gauges set only where a row changes)', async () => {
  const down = new Set<string>();
  const agent = store.hostAgent({
    health: { intervalMs: 200, rise: 1, fall: 1 },
    probe: async (address) => !down.has(address),
  });
  const gauges = async () => {
    const m = (await agent.registry.getSingleMetric('sluice_agent_backend_up')!.get()).values;
    return new Map(m.map((v) => [`${v.labels.lb} ${v.labels.backend}`, v.value]));
  };
  const stored = () =>
    new Map(rows(store.mon.replica, BackendStatusTable).map((r) => [`${r.lb} ${r.backend}`, r.health]));
  /** Every backend's gauge and row once they show `want` (address -> 1 up / 0 down). */
  const settled = (want: (address: string) => number) =>
    until(`gauges and rows ${[...down]} down`, async () => {
      const [g, s] = [await gauges(), stored()];
      const keys = LBS.flatMap((lb) => lb.backends.map((b) => [`${lb.name} ${b.address}:80`, b.address]));
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
