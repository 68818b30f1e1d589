// The security findings against REAL components (docs/security.md): a real ovsdb-server holding hostile rows, the real planner
// daemon (in-process) running a real fence hook through /bin/sh. Every server is a child process in a private temp
// dir, stopped by its own PID; the dir is removed afterwards. No namespaces in this file's first block.

import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { parseConfig } from '../../src/model/schema.ts';
import { OvsdbClient } from '../../src/ovsdb/client.ts';
import { encodeRow } from '../../src/ovsdb/protocol.ts';
import { SLUICE_DB, startStandalone } from '../../src/ovsdb/server.ts';
import { desiredStateMonitor, desiredStateOps, nodeStatusOps } from '../../src/ovsdb/store.ts';
import { PlannerDaemon } from '../../src/planner/daemon.ts';

const dir = mkdtempSync(join(tmpdir(), 'slt-security-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A pino logger whose records land in `lines` (JSON objects). */
function captureLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const HOSTILE = 'gw1;echo INJECTED >injected;#';

describe('finding 1: a hostile Node name in a real store reaches no shell', () => {
  test('the planner fences nothing while the name is in the store, then fences valid names verbatim', async () => {
    const work = mkdtempSync(join(dir, 'fence-'));
    const srv = await startStandalone(work);
    const client = new OvsdbClient({ remotes: [srv.unixRemote], database: SLUICE_DB });
    const { log, lines } = captureLog();
    let planner: PlannerDaemon | undefined;
    try {
      const schema = await client.getSchema(SLUICE_DB);
      const m = await client.monitor(SLUICE_DB, { ...desiredStateMonitor(), Node_Status: {} });
      const config = parseConfig({
        nodes: [
          { name: 'gw1', role: 'gateway', tunnelIp: '192.168.100.1' },
          { name: 'gw2', role: 'gateway', tunnelIp: '192.168.100.2' },
          { name: 'host1', role: 'host', tunnelIp: '192.168.100.11' },
        ],
        loadBalancers: [
          {
            name: 'web',
            vip: '203.0.113.10',
            ports: [80],
            backends: [{ address: '10.0.1.11', host: 'host1' }],
          },
        ],
      });
      await client.transact(SLUICE_DB, ...desiredStateOps(schema, m.replica, config));
      // What any store writer can do (no validation on the way in): rename gw2 to a shell payload, and give both
      // gateways one heartbeat so they go silent from the planner's start.
      await client.transact(SLUICE_DB, {
        op: 'update',
        table: 'Node',
        where: [['name', '==', 'gw2']],
        row: encodeRow(schema.tables.Node!, { name: HOSTILE }),
      });
      for (const node of ['gw1', HOSTILE]) {
        await client.transact(
          SLUICE_DB,
          ...nodeStatusOps(schema, m.replica, {
            node,
            appliedGeneration: 0,
            appliedCfg: 0,
            appliedAt: 0,
            heartbeatAt: 1,
            error: undefined,
          }),
        );
      }
      const fenceLog = join(work, 'fenced');
      planner = new PlannerDaemon({
        remotes: [srv.unixRemote],
        log,
        leaseMs: 500,
        tickMs: 100,
        // The operator's hook: runs in `work`, appends its argument and SLUICE_NODE.
        fenceCmd: `cd '${work}' && printf '%s|%s\\n' "$1" "$SLUICE_NODE" >>fenced`,
      });
      await planner.start();
      await until('the planner to refuse the desired state', () =>
        lines.find((l) => l.event === 'invalid' && /gw1;echo/.test(String(l.msg))),
      );
      await sleep(2000); // four leases: a planner acting on the raw name would have fenced by now
      assert.equal(existsSync(join(work, 'injected')), false, 'the payload ran');
      assert.equal(existsSync(fenceLog), false, 'fenced a name from an invalid desired state');
      // Negative control: valid names, the same silence: both gateways fenced, each name passed verbatim.
      await client.transact(SLUICE_DB, {
        op: 'update',
        table: 'Node',
        where: [['name', '==', HOSTILE]],
        row: encodeRow(schema.tables.Node!, { name: 'gw2' }),
      });
      await until(
        'both fences',
        () => existsSync(fenceLog) && readFileSync(fenceLog, 'utf8').split('\n').length > 2,
      );
      assert.deepEqual(readFileSync(fenceLog, 'utf8').trim().split('\n').sort(), ['gw1|gw1', 'gw2|gw2']);
      assert.equal(existsSync(join(work, 'injected')), false);
    } finally {
      await planner?.stop();
      client.close();
      await srv.stop();
    }
  });
});
