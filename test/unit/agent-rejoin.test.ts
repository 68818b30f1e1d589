// A gateway agent's rejoin tokens, and a planner's fence that raced its rejoin, with the real AgentDaemon on a real
// store: a bare ovsdb-server on a temp unix socket (no lab) holding one generation published and released by hand
// (no planner), a FAKE switch (test/scenarios/fake-switch.ts) and an announce command that runs until this test lets
// it end. Design: docs/design/control-plane.md, "A fence that races a rejoin".

import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import {
  DB_NAME,
  fenceMarks,
  fenceRecordOp,
  nodeStatus,
  PLANNER_FENCED_KEY,
} from '../../src/store/db/index.ts';
import { type PublishedStore, publishedStore, until, WEB } from '../scenarios/published-store.ts';

let store: PublishedStore;

before(async () => {
  store = await publishedStore('agent-rejoin', [WEB]);
});

after(() => store.stop());

test('a rejoin writes a new token, its end of announce that token; a raced fence record is announced over', async () => {
  const events: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) events.push(JSON.parse(line).event);
      done();
    },
  });
  const go = join(store.dir, 'announce-may-end');
  const agent = store.gatewayAgent({
    log: pino({ level: 'info' }, sink),
    // The operator's hook: runs until the test creates the file (the path is this test's own temp directory).
    announceCmd: `while [ ! -e '${go}' ]; do sleep 0.05; done`,
  });
  const marks = () => fenceMarks(nodeStatus(store.mon.replica, 'gw1'));
  await agent.start();
  try {
    // Started `unknown`: applies the released g1, rejoins with a token, and runs its announce command.
    const first = await until('the rejoin', () => marks().rejoin);
    await until('rejoining', () => (agent.fence === 'rejoining' ? true : undefined));
    assert.equal(marks().announced, undefined, 'the announce command has not ended: no `announced` yet');
    writeFileSync(go, '');
    await until('announced = the rejoin token', () => (marks().announced === first ? true : undefined));
    assert.equal(agent.fence, 'announced');

    // A planner decided a fence on a view older than this rejoin (another token): its record does not count, and
    // since its command may have run after the announce, the agent announces again through a new rejoin, which
    // deletes the record. It never says fenced=true meanwhile (it may be in ECMP).
    await store.client.transact(
      DB_NAME,
      fenceRecordOp(store.mon.replica, 'gw1', PLANNER_FENCED_KEY, Date.now(), 'older'),
    );
    assert.equal(marks().byPlanner, undefined, 'a raced record is not a fence');
    assert.ok(marks().plannerRaced !== undefined);
    const second = await until('a new rejoin', () => (marks().rejoin !== first ? marks().rejoin : undefined));
    await until('announced again', () => (marks().announced === second ? true : undefined));
    assert.equal(marks().plannerRaced, undefined, 'the rejoin deleted the raced record');
    assert.ok(events.includes('fence-raced'), `events: ${events.join(' ')}`);
    assert.ok(!events.includes('fenced-by-planner'), 'a raced record is not taken for a fence');

    // The control: a record decided on the current rejoin is a fence (the agent is out, and rejoins as after one).
    await store.client.transact(
      DB_NAME,
      fenceRecordOp(store.mon.replica, 'gw1', PLANNER_FENCED_KEY, Date.now(), second),
    );
    assert.ok(marks().byPlanner !== undefined, 'a record on the current rejoin is a fence');
    const third = await until('a rejoin after the fence', () =>
      marks().rejoin !== second ? marks().rejoin : undefined,
    );
    await until('announced after the fence', () => (marks().announced === third ? true : undefined));
    assert.ok(events.includes('fenced-by-planner'), `events: ${events.join(' ')}`);
  } finally {
    writeFileSync(go, ''); // the announce command ends, whatever failed
    await agent.stop();
  }
});
