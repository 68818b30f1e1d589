// End-to-end: the data plane on REAL Open vSwitch and real kernel TCP (root; lab prefix `slt-v6-`, torn down in
// `after`): an IPv6 VIP over the IPv4 underlay. The default lab with `ipv6: true` (2 gateways behind the router's
// ECMP, 3 hosts x 2 backends, 2 clients) adds VIP web6 = [2001:db8::10]:80 with backends host1-b1, host2-b1,
// host3-b1 at fd00:0:N::(10+M); the router's IPv6 route to the VIP is a multipath route over both gateways (L4 hash
// policy), the gateways tunnel to the hosts over Geneve/IPv4, the hosts DNAT to the IPv6 backend and return directly.
// Driven by the LabController: every change goes through the planner's phases with ack gating, hosts first.
// Connections send a few bytes every 300 ms and need them echoed within 3 s: a reset, an echo timeout or a wrong
// greeting counts as broken.
//
// - Basic: 240 connections spread over all three IPv6 backends and both gateways; every client socket's peer is
//   the VIP (a reply from a backend address could not reach the socket); host conntrack holds the IPv6 DNAT.
// - Backend add: host1-b2 (fd00:0:1::12) joins web6 with data flowing before, during and after: 0 broken, the new
//   backend takes new connections, established connections of moved slots took the second chance.
// - NEGATIVE CONTROL: on fresh connections, host2-b2 added by publishing the final table at once (no phases, no
//   second chance) must break connections, or the test above could not fail.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConntrack } from '../../src/agent/node-ops.ts';
import { editBackends, type LabController } from '../../src/lab/controller.ts';
import { nsRun } from '../../src/lab/exec.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import {
  brokenInfo,
  expectAll,
  finalTable,
  gatewayPackets,
  isRoot,
  labHooks,
  publishBreaks,
  secondChancePackets,
  sleep,
  spread,
} from './lb-common.ts';

const PREFIX = 'slt-v6-';
const WEB6 = { vip: '2001:db8::10', port: 80 } as const;
let lab: Lab | undefined;
let ctl: LabController;
let config: Config;

function L(): Lab {
  if (!lab) throw new Error('lab not up');
  return lab;
}

/** `config` with lab backend `name` (its IPv6 address) added to web6, active, weight 1. */
function addV6Backend(c: Config, name: string): Config {
  const b = L().backend(name);
  return editBackends(c, 'web6', (bs) => [
    ...bs,
    { address: b.ip6, port: L().config.backendPort, host: b.host, weight: 1, state: 'active' },
  ]);
}

/** Established peers of every client socket (`ss` in the client namespaces). */
async function clientPeers(): Promise<string[]> {
  const out: string[] = [];
  for (const c of L().clients) {
    const r = await nsRun(c.netns, 'ss', ['-Htn', 'state', 'established']);
    for (const l of r.stdout.split('\n')) if (l.trim()) out.push(l.trim().split(/\s+/).at(-1)!);
  }
  return out;
}

describe('lb IPv6 VIP: spread and backend add, 0 broken', { skip: !isRoot && 'needs root' }, () => {
  labHooks(
    PREFIX,
    (s) => {
      ({ lab, ctl, config } = s);
    },
    { ipv6: true },
  );

  test('240 connections to [2001:db8::10]:80 spread over every IPv6 backend and both gateways; then a backend added: 0 broken', async (t) => {
    const lab = L();
    const web6 = lab.config.vips.find((v) => v.name === 'web6')!;
    assert.deepEqual([...web6.backends], ['host1-b1', 'host2-b1', 'host3-b1']);
    const exp = expectAll(lab);
    const gw0 = await gatewayPackets(lab);
    const t1: Traffic = await startTraffic(lab, { ...WEB6, count: 240, rate: 150, ...exp });
    const groups = [t1];
    try {
      // ---- basic load balancing ----
      await t1.waitOpened(240);
      await sleep(3000); // data both ways on every connection
      const c1 = await t1.report();
      t.diagnostic(`web6 spread (opened per backend): ${spread(c1)}`);
      assert.equal(c1.broken + c1.failed, 0, brokenInfo(t1));
      assert.ok(c1.echoes > 240 * 3, `data flows on the connections (${c1.echoes} echoes)`);
      assert.deepEqual(Object.keys(c1.perBackend).sort(), [...web6.backends].sort(), 'only web6 backends');
      for (const b of web6.backends)
        assert.ok((c1.perBackend[b]?.opened ?? 0) >= 30, `${b} got ${c1.perBackend[b]?.opened ?? 0}`);
      const gw1 = await gatewayPackets(lab);
      const perGw = Object.fromEntries(Object.entries(gw1).map(([g, n]) => [g, n - (gw0[g] ?? 0)]));
      t.diagnostic(`packets tunnelled per gateway: ${JSON.stringify(perGw)}`);
      for (const g of lab.gateways) assert.ok(perGw[g.name] > 200, `${g.name} carried IPv6 traffic`);
      const peers = await clientPeers();
      assert.equal(peers.length, 240, 'every connection established in the clients');
      assert.deepEqual(
        peers.filter((p) => p !== `[${WEB6.vip}]:80`),
        [],
        'every client socket talks to the VIP',
      );
      // The hosts DNATed the VIP to the IPv6 backend addresses (conntrack of host1: zone 1).
      const b1 = lab.backend('host1-b1');
      const ct = parseConntrack(
        (await lab.node('host1').appctl(['dpctl/dump-conntrack', 'zone=1'])).stdout,
      ).filter((e) => e.state === 'ESTABLISHED' && e.origDst === WEB6.vip);
      t.diagnostic(
        `host1 conntrack: ${ct.length} established to the VIP, reply sources ${[...new Set(ct.map((e) => e.replySrc))].join(' ')}`,
      );
      assert.equal(ct.length, c1.perBackend['host1-b1']?.alive);
      assert.ok(ct.every((e) => e.replySrc === b1.ip6));

      // ---- backend add: host1-b2 joins web6 ----
      const sc0 = await secondChancePackets(lab);
      config = addV6Backend(config, 'host1-b2');
      const add = await ctl.change(config);
      t.diagnostic(`add: published g${add.published.join(', g')}; settled=${add.settled}`);
      assert.ok(add.published.length >= 2, 'phase 1 and phase 2');
      const moved = ctl.latest!.pools.get('web6')!;
      const newIdx = moved.members.findIndex((m) => m.address === lab.backend('host1-b2').ip6);
      const owned = moved.primary.filter((p) => p === newIdx).length;
      t.diagnostic(`host1-b2 owns ${owned} of ${moved.primary.length} slots`);
      assert.ok(owned > 0);
      await sleep(3500); // > timeoutMs: a black-holed connection would have failed by now
      const t2: Traffic = await startTraffic(lab, { ...WEB6, count: 120, rate: 150, ...exp });
      groups.push(t2);
      await t2.waitOpened(120);
      await sleep(1500);
      const c2 = await t2.report();
      t.diagnostic(`after add, new web6 connections: ${spread(c2)}`);
      assert.ok((c2.perBackend['host1-b2']?.opened ?? 0) > 0, 'the added backend takes new connections');
      const sc1 = await secondChancePackets(lab);
      t.diagnostic(`second-chance packets during the add: ${sc1 - sc0}`);
      assert.ok(sc1 - sc0 > 0, 'established connections of moved slots took the second chance');
      const end1 = await t1.report();
      assert.equal(end1.broken, 0, brokenInfo(...groups));
      assert.equal(end1.alive, 240, 'every connection opened before the add is alive');
      assert.equal(c2.broken + c2.failed, 0, brokenInfo(...groups));
      const e1 = end1.echoes;
      await sleep(2000);
      const after = await t1.report();
      assert.ok(after.echoes - e1 > 240 * 3, 'data still flows on the old connections after the add');
      const fin = await Promise.all(groups.map((g) => g.stop()));
      for (const x of fin) assert.equal(x.broken, 0, brokenInfo(...groups));
    } finally {
      await Promise.all(groups.map((g) => g.stop().catch(() => g.kill())));
    }
  });

  test('NEGATIVE CONTROL: a backend added without phases (no second chance) breaks IPv6 connections', async (t) => {
    const lab = L();
    const exp = expectAll(lab);
    const tw: Traffic = await startTraffic(lab, { ...WEB6, count: 200, rate: 150, ...exp });
    try {
      await tw.waitOpened(200);
      await sleep(1000);
      const target = addV6Backend(config, 'host2-b2');
      // The final table of the phased rollout (every step assumed acknowledged and drained), published at once.
      const fin = finalTable(ctl, target);
      const pool = fin.pools.get('web6')!;
      assert.ok(
        pool.phase.every((p) => p === 0),
        'a stable table: no second chance',
      );
      config = target;
      t.diagnostic(await publishBreaks(ctl, tw, fin, 'no phase'));
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
  });
});
