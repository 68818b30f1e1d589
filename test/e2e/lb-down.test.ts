// End-to-end: the data plane on REAL Open vSwitch and real kernel TCP (root; lab prefix `slt-e2e4-`, torn down
// in `after`): a backend fails. host3-b1's server is killed (SIGKILL: the kernel ends its sockets, a crashed
// application) and the desired state marks it `down` (what failed health checks would do): its slots move at once.
// Only its own connections break: every broken connection was on host3-b1, every one of host3-b1's broke, every
// other connection (web and api, 260 in all) stays alive and keeps exchanging data; new connections avoid host3-b1.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type LabController, setLabBackendState } from '../../src/lab/controller.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import { API, expectAll, isRoot, labHooks, sleep, spread, WEB } from './lb-common.ts';

const PREFIX = 'slt-e2e4-';
const DOWN = 'host3-b1';
let lab: Lab;
let ctl: LabController;
let config: Config;

describe('lb down: a failed backend loses only its own connections', {
  skip: !isRoot && 'needs root',
}, () => {
  labHooks(PREFIX, (s) => {
    ({ lab, ctl, config } = s);
  });

  test('(5) backend down: exactly its connections break, all others stay alive', async (t) => {
    const exp = expectAll(lab);
    const tw: Traffic = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...exp });
    const ta: Traffic = await startTraffic(lab, { ...API, count: 60, rate: 100, ...exp });
    try {
      await tw.waitOpened(200);
      await ta.waitOpened(60);
      await sleep(1000);
      const before = await tw.report();
      const onDown = before.perBackend[DOWN]?.alive ?? 0;
      t.diagnostic(`before: web ${spread(before)}; ${onDown} on ${DOWN}`);
      assert.ok(onDown > 0);

      await lab.stopBackend(DOWN, 'SIGKILL');
      config = setLabBackendState(lab, config, 'web', DOWN, 'down');
      const r = await ctl.change(config);
      t.diagnostic(`down: published g${r.published.join(', g')}; settled=${r.settled}`);
      await sleep(4000);

      const cw = await tw.report();
      const ca = await ta.report();
      const broken = [...tw.brokenEvents(), ...ta.brokenEvents()];
      t.diagnostic(
        `broken: ${broken.length} (${JSON.stringify(cw.brokenByReason)}), on ${[...new Set(broken.map((b) => b.backend))]}`,
      );
      assert.equal(broken.length, onDown, `every connection of ${DOWN} broke, nothing else`);
      assert.ok(
        broken.every((b) => b.backend === DOWN),
        'only the down backend lost connections',
      );
      assert.equal(ca.broken, 0);
      assert.equal(cw.alive, 200 - onDown, 'every other web connection is alive');
      assert.equal(ca.alive, 60);
      for (const [name, b] of Object.entries(cw.perBackend)) {
        if (name !== DOWN) assert.equal(b.broken, 0, name);
      }

      // New connections avoid the down backend and all work.
      tw.open(60, 100);
      await tw.waitOpened(260);
      await sleep(1000);
      const after = await tw.report();
      assert.equal(
        after.perBackend[DOWN]?.opened ?? 0,
        before.perBackend[DOWN]?.opened ?? 0,
        'none to the down backend',
      );
      assert.equal(after.failed, 0);
      assert.equal(after.broken, onDown);
    } finally {
      await Promise.all([tw, ta].map((x) => x.stop().catch(() => x.kill())));
    }
  });
});
