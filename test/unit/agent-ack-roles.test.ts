// An upgrade that converted the store to Sluice_Status 1.1.0 but skipped `sluice store access`: the roles it kept
// deny agents Node_Heartbeat's acknowledgement columns, and ovsdb-server would refuse every heartbeat that writes them.
// The real AgentDaemon on a real store (a bare ovsdb-server on a temp unix socket, no lab; a FAKE switch,
// test/scenarios/fake-switch.ts) then acknowledges in Node_Status and logs the missed step, `sluice status` (the real
// CLI, in process) prints it, and once the roles are written again the same agent acknowledges in its heartbeat. The
// unix socket has no role, so ovsdb-server refuses nothing here (the security e2e checks the roles on TLS remotes):
// what is checked is that the agent and the CLI read the roles and act on them.

import * as assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { main } from '../../src/cli/main.ts';
import type { Operation } from '../../src/ovsdb/protocol.ts';
import { nodeAcks, nodeHeartbeat, nodeStatus, STATUS_DB_NAME } from '../../src/store/db/index.ts';
import {
  HEARTBEAT_ACK_COLUMNS,
  heartbeatAckDenied,
  ROLES_MONITOR,
  statusAccessOps,
} from '../../src/store/db/rbac.ts';
import { type PublishedStore, publishedStore, until, WEB } from '../scenarios/published-store.ts';

let store: PublishedStore;

before(async () => {
  store = await publishedStore('ack-roles', [WEB]);
});

after(() => store.stop());

/** The roles `sluice store access` wrote before Sluice_Status 1.1.0: an agent's Node_Heartbeat without the ack. */
function rolesBefore110(): Operation[] {
  return statusAccessOps().map((op) => {
    if (op.op !== 'insert' || op.table !== 'RBAC_Permission' || op.row.table !== 'Node_Heartbeat') return op;
    const [, columns] = op.row.update as ['set', string[]];
    const kept = columns.filter((c) => !(HEARTBEAT_ACK_COLUMNS as readonly string[]).includes(c));
    assert.ok(kept.length < columns.length, 'the current roles grant the acknowledgement');
    return { ...op, row: { ...op.row, update: ['set', kept] } };
  });
}

async function status(): Promise<string> {
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => out.push(String(s)) > 0) as typeof process.stdout.write;
  const saved = process.exitCode;
  try {
    assert.equal(await main(['status', '--db', `unix:${store.srv.unixPath}`]), 0);
  } finally {
    process.stdout.write = write;
    process.exitCode = saved;
  }
  return out.join('');
}

test('roles without the acknowledgement: the agent acknowledges in Node_Status and says so, then in its heartbeat', async () => {
  await store.client.transact(STATUS_DB_NAME, ...rolesBefore110());
  const roles = await store.client.monitor(STATUS_DB_NAME, ROLES_MONITOR);
  assert.deepEqual(heartbeatAckDenied(roles.replica), [...HEARTBEAT_ACK_COLUMNS]);
  const logs: { event?: string; msg?: string }[] = [];
  const agent = store.hostAgent({
    log: pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) }),
    probe: async () => true,
  });
  await agent.start();
  try {
    // Denied: the ack in Node_Status (where a new planner reads it when the heartbeat row has none), heartbeats on.
    await until('the ack in Node_Status', () =>
      nodeStatus(store.mon.replica, 'host1')?.applied_generation === store.generation ? true : undefined,
    );
    const beat = await until('a heartbeat', () => nodeHeartbeat(store.mon.replica, 'host1'));
    assert.equal(
      beat.applied_generation,
      undefined,
      'the heartbeat row holds no ack while the roles deny it',
    );
    assert.equal(nodeAcks(store.mon.replica).get('host1')?.appliedGeneration, store.generation);
    const denied = logs.filter((l) => l.event === 'ack-denied');
    assert.equal(denied.length, 1, JSON.stringify(logs.map((l) => l.event)));
    assert.match(denied[0]!.msg!, /Node_Heartbeat\.applied_generation.*run `sluice store access` again/);
    assert.match(
      await status(),
      /^WARNING .*Node_Heartbeat\.applied_generation.*run `sluice store access` again/m,
    );

    // The missed step, with the agent running: it acknowledges in its heartbeat from its next one on.
    await store.client.transact(STATUS_DB_NAME, ...statusAccessOps());
    await until('the ack in Node_Heartbeat', () =>
      nodeHeartbeat(store.mon.replica, 'host1')?.applied_generation === store.generation ? true : undefined,
    );
    assert.equal(nodeAcks(store.mon.replica).get('host1')?.appliedGeneration, store.generation);
    assert.ok(logs.some((l) => l.event === 'ack-granted'));
    assert.deepEqual(heartbeatAckDenied(roles.replica), []);
    assert.doesNotMatch(await status(), /WARNING|sluice store access/);
  } finally {
    await agent.stop();
  }
});
