// What the lab's waitConverged counts after agents restarted (src/lab/control-plane.ts), without a lab: a Replica
// built here, pid files and a log in a temp dir. A killed agent's Node_Status row and its `announced` log line stay;
// only what the agent the lab started last wrote may count.

import * as assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ControlPlane, currentAcks } from '../../src/lab/control-plane.ts';
import type { Lab } from '../../src/lab/topology.ts';
import type { JsRow } from '../../src/ovsdb/protocol.ts';
import { Replica } from '../../src/ovsdb/replica.ts';

const runDir = mkdtempSync(join(tmpdir(), 'sluice-lab-cp-'));
after(() => rmSync(runDir, { recursive: true, force: true }));
// Only facts.runDir is read by what is tested here.
const cp = new ControlPlane({ facts: { runDir } } as unknown as Lab);
mkdirSync(cp.dir);

/** A replica whose Node_Heartbeat (or, `legacy`, Node_Status) says: node -> [generation, applied_at (ms)]. */
function acked(rows: Record<string, [number, number]>, legacy?: Record<string, [number, number]>): Replica {
  const r = new Replica();
  r.replace(
    new Map([
      ['Node_Heartbeat', table(rows)],
      ['Node_Status', table(legacy ?? {})],
    ]),
  );
  return r;
}

function table(rows: Record<string, [number, number]>): Map<string, JsRow> {
  const table = new Map<string, JsRow>();
  for (const [i, [node, [gen, at]]] of Object.entries(rows).entries()) {
    const uuid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    const row = {
      _uuid: uuid,
      node,
      applied_generation: gen,
      applied_cfg: 1,
      applied_at: at,
      heartbeat_at: at,
      error: undefined,
      external_ids: new Map(),
    };
    table.set(uuid, row as unknown as JsRow);
  }
  return table;
}

test("an acknowledgement written before the node's agent started is its predecessor's: not counted", () => {
  // gw1 acknowledged g5 at 1,000 ms, was killed and started again at 2,000 ms: nothing from the new agent yet.
  const r = acked({ gw1: [5, 1000], host1: [5, 3000], host2: [4, 500] });
  const started: Record<string, number> = { gw1: 2000, host1: 2000 };
  assert.deepEqual([...currentAcks(r, (n) => started[n])].sort(), [
    ['host1', 5],
    ['host2', 4], // no start time known: counted as it is
  ]);
  // Negative control: without start times (what waitConverged read before), gw1's old row passes for current.
  assert.equal(currentAcks(r, () => undefined).get('gw1'), 5);
});

test('an ack is read from Node_Heartbeat, or from Node_Status where the heartbeat row has none (an older agent)', () => {
  // gw1's agent is new: its heartbeat row's ack wins over the stale one it left in Node_Status; host1's is older.
  const r = acked({ gw1: [7, 1000] }, { gw1: [5, 500], host1: [6, 500] });
  assert.deepEqual([...currentAcks(r, () => undefined)].sort(), [
    ['gw1', 7],
    ['host1', 6],
  ]);
});

test("the lab's agents: start times from their pid files, log records of the process started last", () => {
  const pidFile = cp.pidFile('agent-gw1');
  writeFileSync(pidFile, '222\n');
  utimesSync(pidFile, 2, 2); // seconds: started at 2,000 ms
  assert.equal(cp.startedAt('agent-gw1'), 2000);
  assert.equal(cp.startedAt('agent-gw2'), undefined);
  const r = acked({ gw1: [5, 1000], gw2: [5, 1000] });
  assert.deepEqual([...cp.currentAcks(r)], [['gw2', 5]]);
  // The log is appended to across restarts: pid 111 announced, then pid 222 (the restarted agent) only started.
  const lines = [{ pid: 111, event: 'announced' }, 'not json', { pid: 222, event: 'started' }].map((l) =>
    typeof l === 'string' ? l : JSON.stringify(l),
  );
  writeFileSync(cp.logFile('agent-gw1'), `${lines.join('\n')}\n`);
  assert.deepEqual(
    cp.currentRecords('agent-gw1').map((x) => x.event),
    ['started'],
  );
  // Negative control: every record of the file still holds the predecessor's announcement.
  assert.ok(cp.records('agent-gw1').some((x) => x.event === 'announced'));
  assert.deepEqual(cp.currentRecords('agent-gw2'), [], 'no pid file: nothing current');
});
