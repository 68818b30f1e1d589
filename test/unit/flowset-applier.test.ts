// The applier's logic against a FAKE Runner (no OVS): an in-memory bridge that prints dumps in ovs-ofctl's format
// and applies bundle lines all-or-nothing, rejecting a bundle that references a missing group. The same behaviour
// on real OVS is tested in test/e2e/dataplane.test.ts.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileNode } from '../../src/compile/index.ts';
import { cookieLb } from '../../src/compile/registry.ts';
import { bundleLineCount, bundleLines, diffBridge } from '../../src/flowset/diff.ts';
import { SluiceError } from '../../src/model/errors.ts';
import type { Config } from '../../src/model/types.ts';
import {
  applyBridge,
  applyFlowSet,
  BUNDLE_KEEP_LINES,
  firstInstallPieces,
  readInstalled,
} from '../../src/openflow/applier.ts';
import type { Generation, PoolPlan } from '../../src/rollout/types.ts';
import { activeBackend, testConfig, testLb, testNodes } from '../scenarios/configs.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';
import { FakeSwitch } from '../scenarios/fake-switch.ts';

const config: Config = testConfig(testNodes(['gw1'], ['host1']), [
  testLb('web', '203.0.113.10', 'tcp', [80], [activeBackend('10.0.1.11', 'host1')]),
]);

function gen(n: number, owner: (slot: number) => number, bits = 4): Generation {
  const slots = 2 ** bits;
  return {
    number: n,
    createdAt: 0,
    pools: new Map([
      [
        'web',
        {
          lb: 'web',
          bits,
          members: [{ key: '10.0.1.11:*', address: '10.0.1.11', port: undefined, host: 'host1' }],
          primary: Uint16Array.from({ length: slots }, (_, s) => owner(s)),
          second: new Uint16Array(slots).fill(0xffff),
          phase: new Uint8Array(slots),
          since: new Float64Array(slots),
        },
      ],
    ]),
  };
}

const gwState = (g: Generation) => compileNode(config, g, fakeFacts(config, 'gw1'));

test('install, then idempotent: the second apply sends nothing', async () => {
  const sw = new FakeSwitch();
  const first = await applyFlowSet(sw, gwState(gen(1, () => 0)));
  assert.equal(first.changed, true);
  assert.equal(sw.bundles.length, 2, 'one bundle per bridge');
  const again = await applyFlowSet(sw, gwState(gen(1, () => 0)));
  assert.equal(again.changed, false);
  assert.equal(sw.bundles.length, 2, 'nothing sent');
});

test('a bundle larger than BUNDLE_KEEP_LINES is streamed in one bundle, counted but not kept', async () => {
  const sw = new FakeSwitch();
  const r = await applyFlowSet(sw, gwState(gen(1, () => 0, 14)));
  const br = r.bridges.find((b) => b.bridge === 'br-int')!;
  assert.ok(br.bundleLines > BUNDLE_KEEP_LINES, `${br.bundleLines} lines`);
  assert.deepEqual(br.bundle, [], 'the lines are not kept');
  const sent = sw.bundles.find((b) => b.length === br.bundleLines);
  assert.ok(sent, 'every line went to the switch in a single bundle');
  assert.equal(
    sw.flows.get('br-int')!.size,
    br.bundleLines - 1,
    'every line but the group add is an installed flow',
  );
});

test('a change sends one bundle proportional to the change', async () => {
  const sw = new FakeSwitch();
  await applyFlowSet(sw, gwState(gen(1, () => 0)));
  // Slots 3 and 9 lose their owner: their two flows are deleted, nothing else.
  const r = await applyFlowSet(sw, gwState(gen(2, (s) => (s === 3 || s === 9 ? 0xffff : 0))));
  const br = r.bridges.find((b) => b.bridge === 'br-int')!;
  assert.equal(br.bundle.length, 2);
  assert.ok(br.bundle.every((l) => l.startsWith('flow delete_strict ')));
});

test('a rejected bundle changes nothing and reports SLUICE_E_OPENFLOW_REJECTED with stderr', async () => {
  const sw = new FakeSwitch();
  await applyFlowSet(sw, gwState(gen(1, () => 0)));
  const before = JSON.stringify([...sw.flows.get('br-int')!.keys()]);
  const want = gwState(gen(2, (s) => (s < 8 ? 0 : 0xffff))).bridges.get('br-int')!;
  const bad = { ...want, flows: [...want.flows, { ...want.flows[0], table: 40, actions: 'group:424242' }] };
  await assert.rejects(applyBridge(sw, 'br-int', bad), (e: unknown) => {
    assert.ok(e instanceof SluiceError);
    assert.equal(e.code, 'SLUICE_E_OPENFLOW_REJECTED');
    assert.match(e.message, /UNKNOWN_GROUP 424242/);
    return true;
  });
  assert.equal(JSON.stringify([...sw.flows.get('br-int')!.keys()]), before);
});

test('foreign flows are never touched; a desired flow clashing with one is refused before sending', async () => {
  const sw = new FakeSwitch();
  const foreign = { cookie: 0n, table: 0, priority: 0, match: '', actions: 'NORMAL' };
  sw.flows.set('br-int', new Map([['0/0/', foreign]]));
  await applyFlowSet(sw, gwState(gen(1, () => 0)));
  assert.deepEqual(sw.flows.get('br-int')!.get('0/0/'), foreign);
  const want = gwState(gen(1, () => 0)).bridges.get('br-int')!;
  const clash = {
    ...want,
    flows: [...want.flows, { ...want.flows[0], priority: 0, match: '', actions: 'drop' }],
  };
  const sent = sw.bundles.length;
  await assert.rejects(
    applyBridge(sw, 'br-int', clash),
    (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_OPENFLOW_CONFLICT',
  );
  assert.equal(sw.bundles.length, sent);
});

test('removing the LB deletes its flows before its group, in one bundle; TLV map installed once', async () => {
  const sw = new FakeSwitch();
  await applyFlowSet(sw, gwState(gen(1, () => 0)));
  assert.equal(sw.tlv.get('br-int')!.length, 3);
  const none = compileNode(
    { ...config, loadBalancers: [] },
    { number: 2, createdAt: 0, pools: new Map() },
    fakeFacts(config, 'gw1'),
  );
  await applyFlowSet(sw, none);
  const last = sw.bundles.find((b) => b.some((l) => l.startsWith('group delete')))!;
  assert.equal(last.at(-1)!.startsWith('group delete'), true);
  assert.equal(sw.groups.get('br-int')!.size, 0);
  assert.equal(sw.tlv.get('br-int')!.length, 3);
});

test('a change of slot bits modifies the dp_hash group in place with its full bucket list, never delete + add', async () => {
  const sw = new FakeSwitch();
  await applyFlowSet(sw, gwState(gen(1, () => 0)));
  const [id] = [...sw.groups.get('br-int')!.keys()];
  // The same LB with 2^5 slots: the group's bucket copies 5 hash bits now.
  const p = gen(2, () => 0).pools.get('web')!;
  const g5: Generation = {
    number: 2,
    createdAt: 0,
    pools: new Map([
      [
        'web',
        {
          ...p,
          bits: 5,
          primary: new Uint16Array(32),
          second: new Uint16Array(32).fill(0xffff),
          phase: new Uint8Array(32),
          since: new Float64Array(32),
        },
      ],
    ]),
  };
  const r = await applyFlowSet(sw, gwState(g5));
  const lines = r.bridges.find((b) => b.bridge === 'br-int')!.bundle;
  const groupLines = lines.filter((l) => l.startsWith('group '));
  assert.deepEqual(groupLines, [
    `group modify group_id=${id},type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=move:NXM_NX_DP_HASH[0..4]->NXM_NX_REG1[0..4],resubmit(,10)`,
  ]);
  assert.deepEqual(sw.bundles.at(-1), lines, 'in the same single bundle as the slot flows');
  assert.ok(lines.some((l) => l.startsWith('flow add ')));
  assert.deepEqual([...sw.groups.get('br-int')!.keys()], [id]);
});

// ---- meters (a host's SYN meter, --syn-rate) --------------------------------------------------------------------

const hostState = (synRate?: number) =>
  compileNode(
    config,
    gen(1, () => 0),
    { ...fakeFacts(config, 'host1'), ...(synRate ? { synRate } : {}) },
  );

test('a SYN meter is added before the bundle that names it, changed in place, deleted after its flows', async () => {
  const sw = new FakeSwitch();
  const first = await applyFlowSet(sw, hostState(2000));
  const int = first.bridges.find((b) => b.bridge === 'br-int')!;
  assert.deepEqual(int.meterCommands, [
    'add-meter meter=1358954497,pktps,burst,band=type=drop,rate=2000,burst_size=2000',
  ]);
  const commit = [...sw.flows.get('br-int')!.values()].filter((f) => f.actions.includes('ct(commit'));
  assert.ok(commit.length > 0);
  for (const f of commit) assert.match(f.actions, /^meter:1358954497,ct\(commit/);
  // Idempotent, then a new rate is a mod-meter and no bundle (the flows do not change).
  assert.equal((await applyFlowSet(sw, hostState(2000))).changed, false);
  const bundles = sw.bundles.length;
  const r = await applyFlowSet(sw, hostState(500));
  assert.deepEqual(r.bridges.find((b) => b.bridge === 'br-int')!.meterCommands, [
    'mod-meter meter=1358954497,pktps,burst,band=type=drop,rate=500,burst_size=500',
  ]);
  assert.equal(sw.bundles.length, bundles);
  // Off: the bundle takes the meter out of the commit flows, then the meter goes; the commit flows stay.
  await applyFlowSet(sw, hostState());
  assert.deepEqual(sw.meterLog.slice(-1), ['br-int del-meter meter=1358954497']);
  const after = [...sw.flows.get('br-int')!.values()].filter((f) => f.actions.includes('ct(commit'));
  assert.equal(after.length, commit.length);
  for (const f of after) assert.match(f.actions, /^ct\(commit/);
  assert.equal(sw.meters.get('br-int')!.size, 0);
});

test('meters are restored after the switch lost them (restart) and foreign meters are never touched', async () => {
  const sw = new FakeSwitch();
  await applyFlowSet(sw, hostState(2000));
  // An ovs-vswitchd restart: empty tables, no meters; a foreign meter (another controller's id 7) appears.
  sw.flows.clear();
  sw.groups.clear();
  sw.meters.clear();
  sw.meters.set('br-int', new Map([[7, 'pktps bands=type=drop rate=10']]));
  await applyFlowSet(sw, hostState(2000));
  assert.deepEqual(
    [...sw.meters.get('br-int')!.keys()].sort((a, b) => a - b),
    [7, 1358954497],
  );
  assert.equal((await applyFlowSet(sw, hostState(2000))).changed, false, 'verified and idempotent');
  await applyFlowSet(sw, hostState());
  assert.deepEqual([...sw.meters.get('br-int')!.keys()], [7]);
});

test('streamed verification: a correct install passes, a flow changed behind the bundle is named', async () => {
  const want = gwState(gen(1, () => 0)).bridges.get('br-int')!;
  const streamed = { streamVerifyAbove: 0 };
  const ok = new FakeSwitch();
  const r = await applyBridge(ok, 'br-int', want, streamed);
  assert.equal(r.changed, true);
  assert.equal((await readInstalled(ok, 'br-int')).owned.flows.length, want.flows.length);
  // Negative control: the switch keeps one slot flow with other actions than the bundle said.
  const bad = new FakeSwitch();
  bad.afterBundle = (br) => {
    const flows = bad.flows.get(br)!;
    const [k, f] = [...flows].find(([, x]) => x.table === 10)!;
    flows.set(k, { ...f, actions: 'drop' });
  };
  await assert.rejects(applyBridge(bad, 'br-int', want, streamed), (e: unknown) => {
    assert.ok(e instanceof SluiceError);
    assert.equal(e.code, 'SLUICE_E_OPENFLOW_VERIFY');
    assert.match(e.message, /1 load balancer id\(s\) differ/);
    assert.match(e.message, /first difference: flow add cookie=0x51[0-9a-f]+,table=10,/);
    return true;
  });
  // A flow missing from the switch is found too.
  const missing = new FakeSwitch();
  missing.afterBundle = (br) => {
    const flows = missing.flows.get(br)!;
    flows.delete([...flows].find(([, x]) => x.table === 10)![0]);
  };
  await assert.rejects(
    applyBridge(missing, 'br-int', want, streamed),
    (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_OPENFLOW_VERIFY',
  );
});

test('a large first install is cut in bundles: groups first, node-wide flows last, every line once', () => {
  const want = gwState(gen(1, () => 0, 14)).bridges.get('br-int')!;
  const diff = diffBridge(want, { flows: [], groups: [], tlvMap: [] });
  const pieces = firstInstallPieces(diff, 1000);
  assert.equal(pieces.length, Math.ceil(bundleLineCount(diff) / 1000));
  assert.ok(pieces.every((p) => bundleLineCount(p) <= 1000));
  assert.deepEqual(pieces[0]!.addGroups, diff.addGroups, 'every group in the first bundle');
  assert.ok(pieces.slice(1).every((p) => p.addGroups.length === 0));
  const nodeWide = pieces.map((p) => p.addFlows.filter((f) => cookieLb(f.cookie) === 0).length);
  assert.ok(
    nodeWide.at(-1)! > 0 && nodeWide.slice(0, -1).every((n) => n === 0),
    `node-wide last: ${nodeWide}`,
  );
  assert.deepEqual(pieces.flatMap(bundleLines).sort(), bundleLines(diff).sort(), 'the same lines, each once');
  assert.deepEqual(firstInstallPieces(diff, bundleLineCount(diff)), [diff], 'small enough: one bundle');
});

test('streamed read of a populated switch: only the load balancers that differ are diffed, same bundle', async () => {
  // Two load balancers, so one can differ while the other is equal.
  const two: Config = testConfig(testNodes(['gw1'], ['host1']), [
    testLb('web', '203.0.113.10', 'tcp', [80], [activeBackend('10.0.1.11', 'host1')]),
    testLb('api', '203.0.113.20', 'tcp', [443], [activeBackend('10.0.1.11', 'host1')]),
  ]);
  const pool = (lb: string, owner: number): PoolPlan => ({ ...gen(1, () => owner).pools.get('web')!, lb });
  const state = (apiOwner: number) =>
    compileNode(
      two,
      {
        number: 1,
        createdAt: 0,
        pools: new Map([
          ['web', pool('web', 0)],
          ['api', pool('api', apiOwner)],
        ]),
      },
      fakeFacts(two, 'gw1'),
    ).bridges.get('br-int')!;
  const streamed = { streamVerifyAbove: 0 };
  const populated = async () => {
    const sw = new FakeSwitch();
    await applyBridge(sw, 'br-int', state(0));
    return sw;
  };
  // The same state: one dump, nothing sent.
  const same = await populated();
  const reads = same.reads;
  const r0 = await applyBridge(same, 'br-int', state(0), streamed);
  assert.equal(r0.changed, false);
  assert.equal(same.reads, reads + 1, 'one streamed dump, no read by cookie');
  // api lost its backend: the streamed read sends what the read of every flow sends (api's slot flows only).
  const a = await populated();
  const b = await populated();
  const viaDigest = await applyBridge(a, 'br-int', state(0xffff), streamed);
  const viaKeys = await applyBridge(b, 'br-int', state(0xffff));
  assert.ok(viaDigest.bundleLines > 0);
  assert.deepEqual(viaDigest.bundle, viaKeys.bundle);
  assert.deepEqual([...a.flows.get('br-int')!.keys()].sort(), [...b.flows.get('br-int')!.keys()].sort());
  // Negative control: a flow of the equal load balancer changed behind the agent's back is found and restored.
  const c = await populated();
  const flows = c.flows.get('br-int')!;
  const [k, f] = [...flows].find(([, x]) => x.table === 10)!;
  flows.set(k, { ...f, actions: 'drop' });
  const fixed = await applyBridge(c, 'br-int', state(0), streamed);
  assert.equal(fixed.bundleLines, 1);
  assert.match(fixed.bundle[0]!, /^flow add cookie=0x51[0-9a-f]+,table=10,/);
  assert.notEqual(c.flows.get('br-int')!.get(k)!.actions, 'drop');
});
