// End-to-end: the data plane on REAL Open vSwitch and real kernel TCP (root; lab prefix `slt-e2e1-`, torn down
// in `after`): the default lab (2 gateways behind the router's ECMP, 3 hosts, backends host1-b2 in both VIPs),
// programmed by the LabController (planner generation 1 -> compiler -> applier on every node).
//
// 300 long-lived connections (200 to web, 100 to api, from both clients) exchange data for several seconds:
// - they spread over every backend of each VIP (the spread is logged), and over both gateways;
// - every client socket's peer is the VIP it dialled (`ss` in the client namespaces); a reply from a backend
//   address could not even reach the socket (the client kernel resets it), so each opened connection proves it too;
// - host1-b2 (in web and api) answers each client with the VIP it dialled: host1's conntrack holds connections to
//   10.0.1.12 originally addressed to both VIPs, and the clients' sockets on it see the right VIP.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConntrack } from '../../src/agent/node-ops.ts';
import type { LabController } from '../../src/lab/controller.ts';
import { nsRun } from '../../src/lab/exec.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import { API, gatewayPackets, isRoot, labHooks, sleep, spread, TIMEOUT_MS, WEB } from './lb-common.ts';

const PREFIX = 'slt-e2e1-';
let lab: Lab;
let ctl: LabController;

describe('lb basic: spread, VIP as peer, shared backend', { skip: !isRoot && 'needs root' }, () => {
  labHooks(PREFIX, (s) => {
    ({ lab, ctl } = s);
  });

  test('300 connections spread over every backend and both gateways; peers are the VIPs', async (t) => {
    const web = lab.config.vips.find((v) => v.name === 'web')!.backends;
    const api = lab.config.vips.find((v) => v.name === 'api')!.backends;
    const gw0 = await gatewayPackets(lab);
    const tw: Traffic = await startTraffic(lab, {
      ...WEB,
      count: 200,
      rate: 150,
      timeoutMs: TIMEOUT_MS,
      expectBackends: web,
    });
    const ta: Traffic = await startTraffic(lab, {
      ...API,
      count: 100,
      rate: 100,
      timeoutMs: TIMEOUT_MS,
      expectBackends: api,
    });
    try {
      await tw.waitOpened(200);
      await ta.waitOpened(100);
      await sleep(3000); // data both ways on every connection
      const cw = await tw.report();
      const ca = await ta.report();
      t.diagnostic(`web spread (opened per backend): ${spread(cw)}`);
      t.diagnostic(`api spread (opened per backend): ${spread(ca)}`);
      assert.equal(
        cw.broken + cw.failed + ca.broken + ca.failed,
        0,
        JSON.stringify([cw.brokenByReason, ca.brokenByReason]),
      );
      assert.ok(cw.echoes > 200 && ca.echoes > 100, 'data flows on the connections');
      for (const b of web)
        assert.ok((cw.perBackend[b]?.opened ?? 0) >= 10, `web: ${b} got ${cw.perBackend[b]?.opened ?? 0}`);
      for (const b of api)
        assert.ok((ca.perBackend[b]?.opened ?? 0) >= 10, `api: ${b} got ${ca.perBackend[b]?.opened ?? 0}`);
      const gw1 = await gatewayPackets(lab);
      const perGw = Object.fromEntries(Object.entries(gw1).map(([g, n]) => [g, n - (gw0[g] ?? 0)]));
      t.diagnostic(`packets tunnelled per gateway: ${JSON.stringify(perGw)}`);
      for (const g of lab.gateways) assert.ok(perGw[g.name] > 100, `${g.name} carried traffic`);

      // The clients' sockets: every established connection's peer is a VIP (never a backend address).
      for (const c of lab.clients) {
        const r = await nsRun(c.netns, 'ss', ['-Htn', 'state', 'established']);
        const peers = r.stdout
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => l.trim().split(/\s+/).at(-1)!);
        assert.ok(peers.length >= 140, `${c.name}: ${peers.length} established`);
        const other = peers.filter((p) => p !== `${WEB.vip}:80` && p !== `${API.vip}:80`);
        assert.deepEqual(other, [], `${c.name}: peers other than the VIPs`);
      }

      // The shared backend answers each VIP with that VIP: on host1, connections DNATed to 10.0.1.12 were dialled to
      // both VIPs, and their clients hold sockets whose peer is the VIP they dialled (checked above for all).
      const shared = lab.backend('host1-b2');
      const ct = parseConntrack(
        (await lab.node('host1').appctl(['dpctl/dump-conntrack', 'zone=1'])).stdout,
      ).filter((e) => e.replySrc === shared.ip && e.state === 'ESTABLISHED');
      const byVip = {
        web: ct.filter((e) => e.origDst === WEB.vip).length,
        api: ct.filter((e) => e.origDst === API.vip).length,
      };
      t.diagnostic(`host1-b2 connections by VIP dialled: ${JSON.stringify(byVip)}`);
      assert.equal(byVip.web, cw.perBackend['host1-b2']?.alive);
      assert.equal(byVip.api, ca.perBackend['host1-b2']?.alive);
      assert.ok(byVip.web > 0 && byVip.api > 0);
      // Each client connection to a VIP that host1-b2 answered got `host1-b2` as greeting and echoes since: 0 broken.
      const end = [await tw.stop(), await ta.stop()];
      assert.equal(end[0].broken + end[1].broken, 0);
    } finally {
      await tw.kill();
      await ta.kill();
    }
    assert.equal(ctl.latest?.number, 1);
  });
});
