// End-to-end: the data plane on REAL Open vSwitch and real kernel TCP (root; lab prefix `slt-e2e2-`,
// torn down in `after`). The default lab (2 gateways behind the router's ECMP, 3 hosts x 2 backends, 2 clients),
// driven by the LabController: every change goes through the planner's phases with ack gating, hosts first; each node
// programmed as its agent does (incremental; a restarted ovs-vswitchd is read and restored whole). Connections send a
// few bytes every 300 ms and need them echoed within 3 s: a reset, an echo timeout or a wrong greeting counts as
// broken.
//
// (2) host2-b2 added to web; host1-b1 drained (new connections stop going to it); host1-b1 removed once its
//     connections were closed (closed gracefully by the harness: the planner waits for them, then removes it).
// (3) gw1 withdrawn from the router's ECMP set and back; gw2's ovs-vswitchd killed (SIGKILL) and restarted, its
//     flows restored, then back in ECMP. The withdraw happens together with the kill, as a real router's BFD/BGP
//     session would drop the next hop of a dead gateway; the restarted gateway rejoins only after it has every flow.
// NEGATIVE CONTROL for (3): the same kill without the ECMP withdraw breaks the connections the router keeps sending to
// the dead gateway.
// Second-chance packets (SECOND_CHANCE flows' n_packets summed over the hosts) are printed per event.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addLabBackend,
  type LabController,
  removeLabBackend,
  setLabBackendState,
} from '../../src/lab/controller.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import {
  API,
  brokenInfo,
  expectAll,
  gatewayPackets,
  isRoot,
  labHooks,
  openTraffic,
  secondChancePackets,
  sleep,
  spread,
  WEB,
} from './lb-common.ts';

const PREFIX = 'slt-e2e2-';
let lab: Lab;
let ctl: LabController;
let config: Config;

function _allBackends(): string[] {
  return lab.backends().map((b) => b.name);
}

describe('lb churn: backends and gateways come and go, 0 broken', { skip: !isRoot && 'needs root' }, () => {
  labHooks(
    PREFIX,
    (s) => {
      ({ lab, ctl, config } = s);
    },
    {},
    { incremental: true },
  );

  test('(2) backend added, drained, removed after its connections closed: 0 broken', async (t) => {
    const exp = expectAll(lab);
    const t1: Traffic = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...exp });
    const tApi: Traffic = await startTraffic(lab, { ...API, count: 60, rate: 100, ...exp });
    const groups = [t1, tApi];
    let t2: Traffic | undefined;
    let t3: Traffic | undefined;
    try {
      await t1.waitOpened(200);
      await tApi.waitOpened(60);
      await sleep(1000);
      const sc0 = await secondChancePackets(lab);

      // Added: host2-b2 (already serves api) joins web.
      config = addLabBackend(lab, config, 'web', 'host2-b2');
      const add = await ctl.change(config);
      t.diagnostic(`add: published g${add.published.join(', g')}; settled=${add.settled}`);
      assert.ok(add.published.length >= 2, 'phase 1 and phase 2');
      await sleep(3500);
      t2 = await openTraffic(lab, WEB, 100, 150);
      groups.push(t2);
      const c2 = await t2.report();
      t.diagnostic(`after add, new web connections: ${spread(c2)}`);
      assert.ok((c2.perBackend['host2-b2']?.opened ?? 0) > 0, 'the added backend takes new connections');
      const sc1 = await secondChancePackets(lab);
      t.diagnostic(`second-chance packets during the add: ${sc1 - sc0}`);
      assert.ok(sc1 - sc0 > 0, 'established connections of moved slots took the second chance');
      for (const g of groups) assert.equal((await g.report()).broken, 0, brokenInfo(...groups));

      // Drained: host1-b1 gives up its slots; its connections stay (second chance).
      config = setLabBackendState(lab, config, 'web', 'host1-b1', 'draining');
      const drain = await ctl.change(config);
      t.diagnostic(`drain: published g${drain.published.join(', g')}; settled=${drain.settled}`);
      await sleep(3500);
      t3 = await openTraffic(lab, WEB, 200, 150);
      groups.push(t3);
      const c3 = await t3.report();
      t.diagnostic(`after drain, new web connections: ${spread(c3)}`);
      assert.equal(
        c3.perBackend['host1-b1']?.opened ?? 0,
        0,
        'no new connection goes to the drained backend',
      );
      const drained = (await t1.report()).perBackend['host1-b1']?.alive ?? 0;
      assert.ok(drained > 0, 'the drained backend keeps its connections');
      const sc2 = await secondChancePackets(lab);
      t.diagnostic(`second-chance packets during the drain: ${sc2 - sc1}`);
      for (const g of groups) assert.equal((await g.report()).broken, 0, brokenInfo(...groups));

      // Removed after its connections closed: close every connection opened before the drain (t1, t2: they hold all
      // of host1-b1's), keep t3 (opened after the drain, none on host1-b1) and api running through the removal.
      config = removeLabBackend(lab, config, 'web', 'host1-b1');
      const early = await ctl.change(config);
      t.diagnostic(
        `remove while connections remain: settled=${early.settled} (${early.notes.filter((n) => n.kind === 'waits').length} waits notes)`,
      );
      assert.equal(early.settled, false, "the planner waits for the drained backend's connections");
      const [a1, a2] = [await t1.report(), await t2.report()];
      t1.close(a1.alive);
      t2.close(a2.alive);
      const removal = await ctl.settle({ timeoutMs: 30_000 });
      t.diagnostic(`removal: published g${removal.published.join(', g')}; settled=${removal.settled}`);
      assert.ok(removal.settled);
      const last = ctl.latest!.pools.get('web')!;
      const ip = lab.backend('host1-b1').ip;
      const idx = last.members.findIndex((m) => m.address === ip);
      assert.ok(
        idx < 0 || (!last.primary.includes(idx) && !last.second.includes(idx)),
        'host1-b1 owns no slot',
      );
      await sleep(3500);
      const sc3 = await secondChancePackets(lab);
      t.diagnostic(`second-chance packets during the removal: ${sc3 - sc2}`);
      const c = await Promise.all(groups.map((g) => g.report()));
      for (const x of c) assert.equal(x.broken, 0, brokenInfo(...groups));
      assert.ok(c[3].alive >= 195, `t3 alive ${c[3].alive}`);
      t.diagnostic(`second-chance packets (2): add ${sc1 - sc0}, drain ${sc2 - sc1}, remove ${sc3 - sc2}`);
    } finally {
      await Promise.all(groups.map((g) => g.stop().catch(() => g.kill())));
    }
  });

  test('(3) a gateway withdrawn from ECMP, a gateway ovs-vswitchd killed and restored: 0 broken', async (t) => {
    const exp = expectAll(lab);
    const tw: Traffic = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...exp });
    const ta: Traffic = await startTraffic(lab, { ...API, count: 60, rate: 100, ...exp });
    try {
      await tw.waitOpened(200);
      await ta.waitOpened(60);
      await sleep(1000);
      const sc0 = await secondChancePackets(lab);

      await ctl.removeGateway('gw1');
      const g0 = await gatewayPackets(lab);
      await sleep(3500);
      const g1 = await gatewayPackets(lab);
      t.diagnostic(`gw1 withdrawn: tunnelled in 3.5 s gw1 ${g1.gw1 - g0.gw1}, gw2 ${g1.gw2 - g0.gw2}`);
      assert.ok(g1.gw1 - g0.gw1 < 50, 'gw1 gets (almost) nothing');
      for (const g of [tw, ta]) assert.equal((await g.report()).broken, 0, brokenInfo(tw, ta));
      await ctl.addGateway('gw1');
      await sleep(3500);
      for (const g of [tw, ta]) assert.equal((await g.report()).broken, 0, brokenInfo(tw, ta));

      await ctl.killGatewayVswitchd('gw2');
      await sleep(3500);
      for (const g of [tw, ta]) assert.equal((await g.report()).broken, 0, brokenInfo(tw, ta));
      await ctl.restoreGateway('gw2');
      await sleep(3500);
      const g2 = await gatewayPackets(lab);
      t.diagnostic(`gw2 restored: it tunnelled ${g2.gw2} packets since its restart`);
      assert.ok(g2.gw2 > 100, 'the restored gateway carries traffic again');
      const c = [await tw.report(), await ta.report()];
      for (const x of c) assert.equal(x.broken, 0, brokenInfo(tw, ta));
      assert.equal(c[0].alive + c[1].alive, 260);
      const sc1 = await secondChancePackets(lab);
      t.diagnostic(`second-chance packets (3): ${sc1 - sc0} (gateway churn moves no slot)`);
    } finally {
      await Promise.all([tw, ta].map((g) => g.stop().catch(() => g.kill())));
    }
  });

  test('NEGATIVE CONTROL (3): ovs-vswitchd killed WITHOUT the ECMP withdraw breaks the connections hashed to it', async (t) => {
    const tw = await openTraffic(lab, WEB, 200, 150);
    try {
      await sleep(1000);
      // Behind the controller's back: the router keeps sending to gw2 while it is dead.
      await lab.node('gw2').killVswitchd('SIGKILL');
      await sleep(4000);
      const c = await tw.report();
      t.diagnostic(`negative control: ${c.broken} of 200 broken (${JSON.stringify(c.brokenByReason)})`);
      // About half the connections hash to gw2 (client flow hashes pinned by the lab: net.core.txrehash=0).
      assert.ok(c.broken >= 30, 'a dead gateway left in the ECMP set must black-hole its connections');
      await lab.node('gw2').restartVswitchd();
      await ctl.addGateway('gw2');
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
  });
});
