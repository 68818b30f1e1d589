// End-to-end: the survival scenarios with XDP gateways (root; lab prefix `slt-xdps-`, torn down in `after`). One lab
// built with `gatewayDatapath: 'mixed'` (gw1 OVS, gw2 the XDP program on its uplink, OVS behind it; `fields` hash
// mode), driven by the LabController, which installs each generation in the XDP maps (inactive copy, then the
// flip) before it counts the acknowledgement, as the agent does (src/agent/xdp-gateway.ts). Real kernel TCP from
// two clients through the router's ECMP; a connection echoes every 300 ms and breaks on a reset or 3 s of silence.
//
// (1) Both gateways XDP (gw1 switched to XDP in service), then (2) the mixed set (gw1 back to OVS): on the same
//     connections, a backend added, a skewed rollout (gw1 held one generation behind gw2, ECMP flipping between
//     {gw1}, {gw2} and both), a backend drained, then removed once its connections closed, and gw2 crashed (its
//     ovs-vswitchd killed and its XDP program detached, withdrawn from ECMP with it) and restored: 0 broken.
// NEGATIVE CONTROLS (mixed set): slots moved with no phase while gw1 is held breaks connections; gw2 crashed
// WITHOUT the ECMP withdraw black-holes the connections hashed to it.

import * as assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import {
  addLabBackend,
  removeLabBackend,
  setLabBackendState,
  setLabBackendWeight,
} from '../../src/lab/controller.ts';
import { type Lab, labStatus } from '../../src/lab/topology.ts';
import type { Traffic } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import {
  API,
  brokenInfo,
  ecmpFlips,
  finalTable,
  gatewayPackets,
  isRoot,
  type LabSetup,
  labHooks,
  openTraffic,
  publishBreaks,
  skewedChange,
  sleep,
  WEB,
} from './lb-common.ts';

const PREFIX = 'slt-xdps-';
let lab: Lab;
let ctl: LabSetup['ctl'];
let config: Config;

/** The backends each run adds, skews, drains and removes from web (the second run undoes the first's edits). */
interface Churn {
  readonly add: string;
  readonly skew: readonly [string, number];
  readonly drain: string;
}

async function assertNoneBroken(groups: readonly Traffic[]): Promise<number> {
  let alive = 0;
  for (const g of groups) {
    const c = await g.report();
    assert.equal(c.broken, 0, brokenInfo(...groups));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    alive += c.alive;
  }
  return alive;
}

/** Packets the XDP program of `gw` sent since it was attached (its per-VIP counters), 0 when it runs none. */
function xdpSent(gw: string): Promise<number> {
  return ctl.xdpPackets(gw);
}

/** The survival scenarios on one set of connections; returns the connections opened. */
async function survival(t: TestContext, churn: Churn): Promise<{ opened: number; broken: number }> {
  const tw = await openTraffic(lab, WEB, 120, 150);
  const ta = await openTraffic(lab, API, 40, 100);
  const groups = [tw, ta];
  try {
    await sleep(1000);
    config = addLabBackend(lab, config, 'web', churn.add);
    const add = await ctl.change(config);
    t.diagnostic(`add ${churn.add}: published g${add.published.join(', g')}`);
    await sleep(1500);
    await assertNoneBroken(groups);

    config = setLabBackendWeight(lab, config, 'web', churn.skew[0], churn.skew[1]);
    const skew = await skewedChange(ctl, config, () => ecmpFlips(lab, groups, 10));
    t.diagnostic(`skewed rollout (${churn.skew.join(' weight ')}): published g${skew.published.join(', g')}`);
    await assertNoneBroken(groups);

    config = setLabBackendState(lab, config, 'web', churn.drain, 'draining');
    await ctl.change(config);
    // Connections opened after the drain go elsewhere and stay through the removal.
    const after = await openTraffic(lab, WEB, 40, 150);
    groups.push(after);
    assert.equal(
      (await after.report()).perBackend[churn.drain]?.opened ?? 0,
      0,
      'drained: no new connection',
    );
    config = removeLabBackend(lab, config, 'web', churn.drain);
    const early = await ctl.change(config);
    assert.equal(early.settled, false, "the planner waits for the drained backend's connections");
    tw.close((await tw.report()).alive);
    const removal = await ctl.settle({ timeoutMs: 30_000 });
    t.diagnostic(`drain and remove ${churn.drain}: settled=${removal.settled}`);
    assert.ok(removal.settled);
    await assertNoneBroken(groups);

    const before = await xdpSent('gw2');
    await ctl.killGatewayVswitchd('gw2');
    await sleep(2500);
    await assertNoneBroken(groups);
    await ctl.restoreGateway('gw2');
    await sleep(2500);
    const carried = await xdpSent('gw2');
    t.diagnostic(`gw2 crashed and restored: its new program sent ${carried} packets (the old one ${before})`);
    assert.ok(carried > 50, 'the restored XDP gateway carries traffic in XDP again');
    const c = await Promise.all(groups.map((g) => g.report()));
    await assertNoneBroken(groups);
    return { opened: c.reduce((n, x) => n + x.opened, 0), broken: 0 };
  } finally {
    await Promise.all(groups.map((g) => g.stop().catch(() => g.kill())));
  }
}

describe('XDP survival: XDP and mixed gateway sets through the scenarios', {
  skip: !isRoot && 'needs root',
}, () => {
  labHooks(
    PREFIX,
    (s) => {
      ({ lab, ctl, config } = s);
    },
    { gatewayDatapath: 'mixed' },
  );

  test('(1) both gateways XDP: add, skewed rollout, drain, remove, gateway crash: 0 broken', async (t) => {
    assert.equal(config.hashMode, 'fields');
    const dp = async () =>
      Object.fromEntries(
        (await labStatus(PREFIX)).nodes.flatMap((n) => (n.datapath ? [[n.name, n.datapath]] : [])),
      );
    const built = await dp();
    t.diagnostic(`lab status as built: ${JSON.stringify(built)}`);
    assert.equal(built.gw1, 'ovs');
    assert.match(built.gw2, /^xdp \(program \d+ on eth0\)$/);
    await ctl.setGatewayDatapath('gw1', 'xdp');
    assert.deepEqual(ctl.xdpGateways(), ['gw1', 'gw2']);
    assert.match((await dp()).gw1, /^xdp \(program \d+ on eth0\)$/);
    const g0 = await gatewayPackets(lab);
    const r = await survival(t, { add: 'host2-b2', skew: ['host3-b1', 3], drain: 'host1-b1' });
    const g1 = await gatewayPackets(lab);
    const xdp = [await xdpSent('gw1'), await xdpSent('gw2')];
    t.diagnostic(
      `XDP set: ${r.opened} connections, ${r.broken} broken; XDP sent gw1 ${xdp[0]}, gw2 ${xdp[1]}; ` +
        `OVS GW_SLOT packets gw1 ${g1.gw1 - g0.gw1}`,
    );
    assert.ok(xdp[0] > 500 && xdp[1] > 50, 'both gateways forwarded in XDP');
    assert.ok(g1.gw1 - g0.gw1 < 50, "gw1's OVS saw (almost) no VIP packet");
  });

  test('(2) mixed set (gw1 OVS, gw2 XDP): the same scenarios: 0 broken', async (t) => {
    await ctl.setGatewayDatapath('gw1', 'ovs');
    assert.deepEqual(ctl.xdpGateways(), ['gw2']);
    const g0 = await gatewayPackets(lab);
    const r = await survival(t, { add: 'host1-b1', skew: ['host3-b1', 1], drain: 'host2-b2' });
    const g1 = await gatewayPackets(lab);
    t.diagnostic(
      `mixed set: ${r.opened} connections, ${r.broken} broken; OVS GW_SLOT packets gw1 ${g1.gw1 - g0.gw1}, ` +
        `XDP gw2 ${await xdpSent('gw2')}`,
    );
    assert.ok(g1.gw1 - g0.gw1 > 500, 'gw1 forwarded in OVS');
  });

  test('NEGATIVE CONTROLS (mixed set): slots moved with no phase; gw2 crashed without the withdraw', async (t) => {
    const tw = await openTraffic(lab, WEB, 120, 150);
    try {
      await sleep(1000);
      ctl.holdGateway('gw1');
      config = setLabBackendWeight(lab, config, 'web', 'host3-b1', 4);
      const what = 'slots moved with no phase, gw1 held';
      t.diagnostic(await publishBreaks(ctl, tw, finalTable(ctl, config), what));
      await ctl.releaseGateway('gw1');
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
    const tc = await openTraffic(lab, WEB, 120, 150);
    try {
      await sleep(1000);
      await ctl.killGatewayVswitchd('gw2', { withdraw: false });
      await sleep(4000);
      const c = await tc.report();
      t.diagnostic(`gw2 crashed, left in ECMP: ${c.broken} of ${c.opened} broken`);
      assert.ok(c.broken >= 20, 'a dead XDP gateway left in the ECMP set black-holes its connections');
      await ctl.restoreGateway('gw2');
    } finally {
      await tc.stop().catch(() => tc.kill());
    }
  });
});
