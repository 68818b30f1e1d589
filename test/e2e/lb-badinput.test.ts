// End-to-end: the data plane under live traffic, on REAL Open vSwitch and real kernel TCP (root; lab
// prefix `slt-e2e7-`, torn down in `after`). 200 long-lived connections exchange data before, during and after:
// (7) bundles with an invalid flow (a jump to a group that does not exist, an unparsable action) sent by the
//     applier to a gateway and a host: rejected with SLUICE_E_OPENFLOW_REJECTED, the switch unchanged flow for flow;
// (8) crafted Geneve packets (all three sluice options, inner SYNs to the VIP) from an address that is not a
//     configured node, sent to a host's tunnel endpoint: counted by the unknown-source drop flow, nothing committed;
//     and bare ACKs in Geneve from a known gateway's address, which no host has state for, for a slot without a
//     chain: dropped by the first host, never handed on, whatever their hop counter.
// Every connection stays alive: bad input changes nothing. (dataplane.test.ts shows both on a small lab too, with a
// positive control for the unknown-source drop and a check that nothing was committed.)

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileNode } from '../../src/compile/index.ts';
import { lbIds, T } from '../../src/compile/registry.ts';
import type { LabController } from '../../src/lab/controller.ts';
import { nsRun } from '../../src/lab/exec.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { SluiceError } from '../../src/model/errors.ts';
import type { Config } from '../../src/model/types.ts';
import { applyBridge } from '../../src/openflow/applier.ts';
import { bridgeSnapshot, sendGeneve, withForeignFlow } from './helpers/geneve.ts';
import { isRoot, labHooks, openTraffic, packetsByKind, sleep, WEB } from './lb-common.ts';

const PREFIX = 'slt-e2e7-';
let lab: Lab;
let ctl: LabController;
let config: Config;

describe('lb bad input: rejected bundles and untrusted Geneve change nothing under traffic', {
  skip: !isRoot && 'needs root',
}, () => {
  labHooks(PREFIX, (s) => {
    ({ lab, ctl, config } = s);
  });

  test('(7) invalid bundles rejected, switch unchanged; (8) Geneve from an unknown address dropped; 0 broken', async (t) => {
    const tw = await openTraffic(lab, WEB, 200, 150);
    try {
      await sleep(1000);
      assert.equal((await tw.report()).alive, 200);
      const gen = ctl.latest!;

      // (7) For a gateway and a host: the node's own desired state plus one invalid flow, two ways.
      for (const node of ['gw1', 'host1']) {
        const want = compileNode(config, gen, lab.compilerFacts(node)).bridges.get('br-int')!;
        for (const bad of [
          withForeignFlow(want, 'group:1359999999'),
          withForeignFlow(want, 'output:nonsense'),
        ]) {
          const before = await bridgeSnapshot(lab.node(node), 'br-int');
          await assert.rejects(applyBridge(lab.node(node), 'br-int', bad), (e: unknown) => {
            assert.ok(e instanceof SluiceError, String(e));
            assert.equal(e.code, 'SLUICE_E_OPENFLOW_REJECTED');
            return true;
          });
          assert.equal(await bridgeSnapshot(lab.node(node), 'br-int'), before, `${node}: switch unchanged`);
        }
      }
      t.diagnostic('(7) 4 invalid bundles rejected, gw1 and host1 unchanged');

      // (8) Ten crafted SYNs in Geneve from 192.168.100.99 (no node has it) to host1.
      const fabric = lab.facts.fabricNetns;
      const lbId = lbIds(config.loadBalancers.map((l) => l.name)).get('web')!;
      await nsRun(fabric, 'ip', ['addr', 'add', '192.168.100.99/24', 'dev', 'br0']);
      try {
        await nsRun(fabric, 'ping', ['-c', '1', '-W', '2', '192.168.100.11'], { allowFail: true });
        const before = await packetsByKind(lab, ['host1']);
        const syn = { lbId, counter: 0, flags: 0x02, firstPort: 40000 };
        await sendGeneve(fabric, '192.168.100.99', '192.168.100.11', syn);
        await sleep(500);
        const after = await packetsByKind(lab, ['host1']);
        const rejected = (after.TUN_REJECT ?? 0) - (before.TUN_REJECT ?? 0);
        t.diagnostic(`(8) unknown-source Geneve packets dropped on host1: ${rejected}`);
        assert.ok(rejected >= 10, `dropped by the unknown-source flow: ${JSON.stringify({ before, after })}`);
        // No connection opens meanwhile (all 200 are open): a SYN that got through would be a commit.
        assert.equal(after.CT_COMMIT ?? 0, before.CT_COMMIT ?? 0, 'nothing committed');
      } finally {
        await nsRun(fabric, 'ip', ['addr', 'del', '192.168.100.99/24', 'dev', 'br0'], { allowFail: true });
      }

      // (8) No hop for a slot without a chain, and the hop counter only grows, on the live lab: ten bare ACKs nobody
      // has state for, in Geneve from gw1's own tunnel address (a known gateway: its kernel sends them out by
      // br-phy's LOCAL port) to host2, for slot 0. Nothing moves in this test, so slot 0 has no chain: host2 drops
      // them (CHAIN's catch-all) whatever the counter, and hands nothing on. Inner source ports below the clients'
      // ephemeral range: no live connection has these tuples.
      const gw1 = lab.node('gw1');
      const [h1, h2] = ['host1', 'host2'].map((h) => lab.node(h).tunnelIp);
      const ack = async (counter: number) => {
        const firstPort = 20000 + counter * 100;
        await sendGeneve(gw1.netns, gw1.tunnelIp, h2, {
          lbId,
          counter,
          secondHost: h1,
          flags: 0x10,
          firstPort,
        });
        await sleep(500);
        return [await packetsByKind(lab, ['host1']), await packetsByKind(lab, ['host2'])];
      };
      const CHAIN_DROP = `DROP@${T.CHAIN}`;
      const n = (c: Record<string, number>, k: string) => c[k] ?? 0;
      const [b1, b2] = [await packetsByKind(lab, ['host1']), await packetsByKind(lab, ['host2'])];
      const [c1, c2] = await ack(0);
      const hops = { b1, b2, c1, c2 };
      assert.equal(n(c2, 'CHAIN_HOP'), n(b2, 'CHAIN_HOP'), `host2 handed nothing on ${JSON.stringify(hops)}`);
      assert.ok(n(c2, CHAIN_DROP) - n(b2, CHAIN_DROP) >= 10, `host2 dropped them ${JSON.stringify(hops)}`);
      assert.equal(n(c1, CHAIN_DROP), n(b1, CHAIN_DROP), 'nothing reached host1');
      const [d1, d2] = await ack(8);
      assert.equal(n(d2, 'CHAIN_HOP'), n(c2, 'CHAIN_HOP'), 'counter at the last lane: not handed on');
      assert.ok(n(d2, CHAIN_DROP) - n(c2, CHAIN_DROP) >= 10, 'counter at the last lane: host2 dropped them');
      assert.equal(n(d1, CHAIN_DROP), n(b1, CHAIN_DROP));
      t.diagnostic(
        `(8) no chain: ${n(c2, CHAIN_DROP) - n(b2, CHAIN_DROP)} dropped by host2 at counter 0, ${n(d2, CHAIN_DROP) - n(c2, CHAIN_DROP)} at counter 8; none handed on`,
      );

      // The connections never noticed.
      await sleep(3000);
      const end = await tw.report();
      t.diagnostic(`after: alive ${end.alive}, broken ${end.broken} ${JSON.stringify(end.brokenByReason)}`);
      assert.equal(end.broken, 0);
      assert.equal(end.alive, 200);
    } finally {
      await tw.stop();
    }
  });
});
