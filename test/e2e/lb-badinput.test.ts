// End-to-end tests (7) and (8) of issue 3 under live traffic, on REAL Open vSwitch and real kernel TCP (root; lab
// prefix `slt-e2e7-`, torn down in `after`). 200 long-lived connections exchange data before, during and after:
// (7) bundles with an invalid flow (a jump to a group that does not exist, an unparsable action) sent by the
//     applier to a gateway and a host: rejected with SLUICE_E_OPENFLOW_REJECTED, the switch unchanged flow for flow;
// (8) crafted Geneve packets (all three sluice options, inner SYNs to the VIP) from an address that is not a
//     configured node, sent to a host's tunnel endpoint: counted by the unknown-source drop flow, nothing committed.
// Every connection stays alive: bad input changes nothing. (The one-hop limit is shown in dataplane.test.ts.)

import * as assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { compileNode } from '../../src/compile/index.ts';
import { lbIds } from '../../src/compile/registry.ts';
import type { LabController } from '../../src/lab/controller.ts';
import { nsRun } from '../../src/lab/exec.ts';
import { type Lab, labDown } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import { SluiceError } from '../../src/model/errors.ts';
import type { Config } from '../../src/model/types.ts';
import { applyBridge } from '../../src/openflow/applier.ts';
import { bridgeSnapshot, GENEVE_SENDER } from './helpers/geneve.ts';
import { isRoot, packetsByKind, setup, sleep, WEB } from './lb-common.ts';

const PREFIX = 'slt-e2e7-';
let lab: Lab;
let ctl: LabController;
let config: Config;
const log: string[] = [];

describe('lb bad input: rejected bundles and untrusted Geneve change nothing under traffic', {
  skip: !isRoot && 'needs root',
}, () => {
  before(async () => {
    ({ lab, ctl, config } = await setup(PREFIX, (s) => log.push(s)));
  });
  after(async () => {
    if (process.env.SLUICE_E2E_LOG) console.log(log.join('\n'));
    await labDown(PREFIX);
  });

  test('(7) invalid bundles rejected, switch unchanged; (8) Geneve from an unknown address dropped; 0 broken', async (t) => {
    const exp = { expectBackends: lab.backends().map((b) => b.name), intervalMs: 300, timeoutMs: 3000 };
    const tw: Traffic = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...exp });
    try {
      await tw.waitOpened(200);
      await sleep(1000);
      assert.equal((await tw.report()).alive, 200);
      const gen = ctl.latest!;

      // (7) For a gateway and a host: the node's own desired state plus one invalid flow, two ways.
      for (const node of ['gw1', 'host1']) {
        const want = compileNode(config, gen, lab.compilerFacts(node)).bridges.get('br-int')!;
        const extra = (actions: string) => ({
          ...want,
          flows: [
            ...want.flows,
            { ...want.flows[0], table: 40 /* unused by sluice */, match: 'ip', actions },
          ],
        });
        for (const bad of [extra('group:1359999999'), extra('output:nonsense')]) {
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
        const opts = [String(lbId * 0x10000), '0', '0', String(0x02), '40000'];
        await nsRun(fabric, process.execPath, [
          '-e',
          GENEVE_SENDER,
          '192.168.100.99',
          '192.168.100.11',
          ...opts,
        ]);
        await sleep(500);
        const after = await packetsByKind(lab, ['host1']);
        const rejected = (after.TUN_REJECT ?? 0) - (before.TUN_REJECT ?? 0);
        t.diagnostic(`(8) unknown-source Geneve packets dropped on host1: ${rejected}`);
        assert.ok(rejected >= 10, `dropped by the unknown-source flow: ${JSON.stringify({ before, after })}`);
      } finally {
        await nsRun(fabric, 'ip', ['addr', 'del', '192.168.100.99/24', 'dev', 'br0'], { allowFail: true });
      }

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
