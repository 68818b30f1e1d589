// sluice's desired state in a REAL ovsdb-server: desiredStateOps writes a config as the smallest transaction,
// readDesiredState reads it back from a monitor's replica. Private temp dir, child server stopped by its PID.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/model/schema.ts';
import type { Config } from '../../src/model/types.ts';
import { type Monitor, OvsdbClient } from '../../src/ovsdb/client.ts';
import { OvsdbError } from '../../src/ovsdb/errors.ts';
import type { RowChange } from '../../src/ovsdb/replica.ts';
import { type OvsdbServerProcess, SLUICE_DB, startStandalone } from '../../src/ovsdb/server.ts';
import { desiredStateMonitor, desiredStateOps, readDesiredState } from '../../src/ovsdb/store.ts';

const nodes = [
  { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
  { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
  { name: 'host2', role: 'host', tunnelIp: '192.168.100.12' },
];
const A = parseConfig({
  slotBits: 8,
  nodes,
  loadBalancers: [
    {
      name: 'web',
      vip: '203.0.113.10',
      ports: [80, 443],
      backends: [
        { address: '10.0.1.11', port: 8080, host: 'host1' },
        { address: '10.0.1.12', port: 8080, host: 'host2', weight: 2 },
        { address: '10.0.1.13', host: 'host2' },
      ],
    },
    {
      name: 'api',
      vip: '203.0.113.20',
      protocol: 'udp',
      ports: [53],
      backends: [{ address: '10.0.2.1', host: 'host1' }],
    },
  ],
});
const B = parseConfig({
  slotBits: 10,
  drainWindowSeconds: 12.5,
  nodes: [...nodes, { name: 'gw2', role: 'gateway', tunnelIp: '192.168.100.2' }],
  loadBalancers: [
    {
      name: 'web',
      vip: '203.0.113.10',
      ports: [443, 8443],
      backends: [
        { address: '10.0.1.11', port: 8080, host: 'host1' },
        { address: '10.0.1.12', port: 8080, host: 'host2', weight: 2, state: 'draining' },
        { address: '10.0.1.14', port: 8080, host: 'host1' },
      ],
    },
    {
      name: 'new',
      vip: '2001:db8::10',
      ports: [80],
      backends: [{ address: '2001:db8:1::1', host: 'host2' }],
    },
  ],
});

describe('desired state in ovsdb-server', () => {
  let dir: string;
  let srv: OvsdbServerProcess;
  let c: OvsdbClient;
  let m: Monitor;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-ovsdb-store-'));
    srv = await startStandalone(dir);
    c = new OvsdbClient({ remotes: [srv.unixRemote] });
    m = await c.monitor(SLUICE_DB, desiredStateMonitor());
  });

  after(async () => {
    c?.close();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function apply(config: Config): Promise<number> {
    const ops = desiredStateOps(m.schema!, m.replica, config);
    if (ops.length > 0) await c.transact(SLUICE_DB, ...ops);
    return ops.length;
  }

  const stored = () => parseConfig(readDesiredState(m.replica).config);

  test('an empty store takes a config in one transaction and reads back equal', async () => {
    assert.ok((await apply(A)) > 0);
    assert.deepEqual(stored(), A);
    assert.equal(readDesiredState(m.replica).desiredCfg, 1);
    assert.equal(desiredStateOps(m.schema!, m.replica, A).length, 0, 'nothing to do when equal');
  });

  test('a change touches only what changed; unchanged backends keep their rows', async () => {
    const uuidOf = (address: string) => m.replica.find('Backend', (b) => b.address === address)?._uuid;
    const kept = ['10.0.1.11', '10.0.1.12'].map(uuidOf);
    const seen: RowChange[] = [];
    m.on('update', (ch: RowChange[]) => seen.push(...ch));
    await apply(B);
    assert.deepEqual(stored(), B);
    assert.equal(readDesiredState(m.replica).desiredCfg, 2);
    assert.deepEqual(['10.0.1.11', '10.0.1.12'].map(uuidOf), kept);
    // 10.0.1.11 did not change at all: no update mentions its row.
    assert.ok(!seen.some((ch) => ch.uuid === kept[0]));
    // Removed backends were garbage-collected with their references.
    assert.equal(uuidOf('10.0.1.13'), undefined);
    assert.equal(uuidOf('10.0.2.1'), undefined);
    assert.equal(m.replica.rows('Backend').length, 4);
  });

  test('a transaction computed from a stale replica fails on its desired_cfg wait', async () => {
    const stale = desiredStateOps(m.schema!, m.replica, A);
    await apply(parseConfig({ ...readDesiredState(m.replica).config, slotBits: 12 }));
    await assert.rejects(
      c.transact(SLUICE_DB, ...stale),
      (e: unknown) => e instanceof OvsdbError && e.opIndex === 0 && e.ovsdbError === 'timed out',
    );
    assert.equal(stored().slotBits, 12);
  });
});
