// flowset: dump parsers (on real `ovs-ofctl -O OpenFlow15` output captured from OVS 3.1), canonical text, diff and
// bundle ordering. Pure.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bundleChunks,
  bundleLineCount,
  bundleLines,
  diffBridge,
  isEmptyDiff,
  tlvMapArg,
} from '../../src/flowset/diff.ts';
import {
  meterArg,
  parseDumpFlows,
  parseDumpGroups,
  parseDumpMeters,
  parseDumpTlvMap,
  renderFlow,
} from '../../src/flowset/text.ts';
import type { BridgeState, Flow } from '../../src/flowset/types.ts';

const DUMP_FLOWS = `OFPST_FLOW reply (OF1.5) (xid=0x2):
 cookie=0x5101000100000050, duration=0.012s, table=0, n_packets=3, n_bytes=180, idle_age=0, priority=100,tcp,nw_dst=203.0.113.10,tp_dst=80 actions=set_field:0x1->reg0,group:1358954497
 cookie=0x51, duration=0.012s, table=4, n_packets=0, n_bytes=0, idle_age=0, hard_age=2, priority=90,ct_state=+new+trk,tcp,tun_metadata1=0/0x1,tun_metadata2=0xc0a8640c,tcp_flags=-syn actions=set_field:0x1/0x1->tun_metadata1,set_field:192.168.100.12->tun_dst,set_field:0->in_port,output:10
 cookie=0x5100000000000000, duration=0.012s, table=0, n_packets=0, n_bytes=0, idle_age=0, priority=0 actions=drop
 duration=5.1s, n_packets=0, n_bytes=0, idle_age=5, actions=NORMAL
`;

test('parseDumpFlows strips volatile fields and keeps cookie, table, priority, match, actions', () => {
  const flows = parseDumpFlows(DUMP_FLOWS);
  assert.equal(flows.length, 4);
  assert.deepEqual(flows[0], {
    cookie: 0x5101000100000050n,
    table: 0,
    priority: 100,
    match: 'tcp,nw_dst=203.0.113.10,tp_dst=80',
    actions: 'set_field:0x1->reg0,group:1358954497',
  });
  assert.equal(flows[1].table, 4);
  assert.equal(
    flows[1].match,
    'ct_state=+new+trk,tcp,tun_metadata1=0/0x1,tun_metadata2=0xc0a8640c,tcp_flags=-syn',
  );
  assert.equal(flows[2].match, '');
  assert.equal(flows[2].priority, 0);
  // OVS omits cookie=0, table=0 and the default priority 32768.
  assert.deepEqual(flows[3], { cookie: 0n, table: 0, priority: 32768, match: '', actions: 'NORMAL' });
});

test('parseDumpGroups and parseDumpTlvMap', () => {
  const groups = parseDumpGroups(`OFPST_GROUP_DESC reply (OF1.5) (xid=0x2):
 group_id=1358954497,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=move:NXM_NX_DP_HASH[0..7]->NXM_NX_REG1[0..7],resubmit(,2)
`);
  assert.deepEqual(groups, [
    {
      groupId: 1358954497,
      spec: 'type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=move:NXM_NX_DP_HASH[0..7]->NXM_NX_REG1[0..7],resubmit(,2)',
    },
  ]);
  const tlv = parseDumpTlvMap(`NXT_TLV_TABLE_REPLY (OF1.5) (xid=0x2):
 max option space=256 max fields=64
 allocated option space=12

 mapping table:
  class  type  length  match field
 ------  ----  ------  --------------
 0xffff  0x80       4  tun_metadata0
 0xffff  0x81       4  tun_metadata1
`);
  assert.deepEqual(tlv, [
    { optClass: 0xffff, type: 0x80, len: 4, index: 0 },
    { optClass: 0xffff, type: 0x81, len: 4, index: 1 },
  ]);
  assert.equal(
    tlvMapArg(tlv),
    '{class=0xffff,type=0x80,len=4}->tun_metadata0,{class=0xffff,type=0x81,len=4}->tun_metadata1',
  );
});

const f = (
  table: number,
  priority: number,
  match: string,
  actions: string,
  cookie = 0x5100000000000001n,
): Flow => ({
  table,
  priority,
  match,
  actions,
  cookie,
});
const empty: BridgeState = { flows: [], groups: [], tlvMap: [] };

test('diff of identical states is empty (idempotence)', () => {
  const s: BridgeState = {
    flows: [f(0, 100, 'ip', 'drop'), f(1, 0, '', 'drop')],
    groups: [{ groupId: 7, spec: 'type=select,bucket=bucket_id:0,actions=drop' }],
    tlvMap: [{ optClass: 0xffff, type: 0x80, len: 4, index: 0 }],
  };
  const d = diffBridge(s, s);
  assert.ok(isEmptyDiff(d));
  assert.deepEqual(bundleLines(d), []);
  assert.deepEqual(d.addTlv, []);
});

test('changed actions or cookie -> one flow add (replaces); removed -> delete_strict with priority and match', () => {
  const have: BridgeState = { ...empty, flows: [f(0, 100, 'ip', 'drop'), f(0, 50, 'arp', 'drop')] };
  const want: BridgeState = {
    ...empty,
    flows: [f(0, 100, 'ip', 'output:1'), f(0, 10, '', 'drop', 0x5100000000000002n)],
  };
  assert.deepEqual(bundleLines(diffBridge(want, have)), [
    'flow delete_strict cookie=0x5100000000000001/-1,table=0,priority=50,arp',
    'flow add cookie=0x5100000000000001,table=0,priority=100,ip,actions=output:1',
    'flow add cookie=0x5100000000000002,table=0,priority=10,actions=drop',
  ]);
  const recookie: BridgeState = { ...empty, flows: [f(0, 100, 'ip', 'drop', 0x5100000000000009n)] };
  assert.equal(bundleLines(diffBridge(recookie, { ...empty, flows: [f(0, 100, 'ip', 'drop')] })).length, 1);
});

test('bundle order: flow deletes, group adds, group modifies, flow adds, group deletes last', () => {
  const have: BridgeState = {
    ...empty,
    flows: [f(0, 100, 'tcp', 'group:1'), f(0, 100, 'udp', 'group:2')],
    groups: [
      { groupId: 1, spec: 'type=select,bucket=bucket_id:0,actions=drop' },
      { groupId: 2, spec: 'type=select,bucket=bucket_id:0,actions=drop' },
    ],
  };
  const want: BridgeState = {
    ...empty,
    flows: [f(0, 100, 'udp', 'group:2'), f(0, 100, 'sctp', 'group:3')],
    groups: [
      { groupId: 2, spec: 'type=select,bucket=bucket_id:0,actions=output:2' },
      { groupId: 3, spec: 'type=select,bucket=bucket_id:0,actions=drop' },
    ],
  };
  const lines = bundleLines(diffBridge(want, have));
  assert.deepEqual(
    lines.map((l) => l.split(' ').slice(0, 2).join(' ')),
    ['flow delete_strict', 'group add', 'group modify', 'flow add', 'group delete'],
  );
  assert.equal(lines[4], 'group delete group_id=1');
  assert.match(lines[2], /^group modify group_id=2,type=select,bucket=bucket_id:0,actions=output:2$/);
});

test('bundleChunks: the bundle file in whole lines, chunk by chunk, the same text as bundleLines', () => {
  const want: BridgeState = {
    ...empty,
    flows: Array.from({ length: 500 }, (_, i) => f(10, 100, `reg0=0x1,reg1=${i}`, `output:${i}`)),
    groups: [{ groupId: 3, spec: 'type=select,bucket=bucket_id:0,actions=drop' }],
  };
  const have: BridgeState = { ...empty, flows: [f(0, 100, 'tcp', 'drop')] };
  const d = diffBridge(want, have);
  const chunks = [...bundleChunks(d, 4096)].map((c) => Buffer.from(c).toString());
  assert.ok(chunks.length > 5, `${chunks.length} chunks`);
  for (const c of chunks) {
    assert.ok(c.endsWith('\n'), 'whole lines');
    assert.ok(c.length <= 4096);
  }
  assert.equal(chunks.join(''), `${bundleLines(d).join('\n')}\n`);
  const long = [...bundleChunks(d, 16)].map((c) => Buffer.from(c).toString());
  assert.ok(long.length > 100, 'lines longer than the chunk size still go out in pieces');
  assert.ok(long.every((c) => c.endsWith('\n')));
  assert.equal(long.join(''), chunks.join(''));
  assert.equal(bundleLineCount(d), 502);
});

test('a group still referenced by a remaining flow (ours or foreign) is never deleted', () => {
  const have: BridgeState = {
    ...empty,
    groups: [{ groupId: 5, spec: 'type=select,bucket=bucket_id:0,actions=drop' }],
  };
  const foreign = [f(3, 1, '', 'group:5', 0n)];
  const d = diffBridge(empty, have, foreign);
  assert.deepEqual(d.deleteGroups, []);
  assert.equal(d.keptGroups.length, 1);
  assert.deepEqual(bundleLines(d), []);
  assert.deepEqual(bundleLines(diffBridge(empty, have)), ['group delete group_id=5']);
});

test('TLV: missing mappings are listed, a different option on a desired index conflicts', () => {
  const want: BridgeState = {
    ...empty,
    tlvMap: [
      { optClass: 0xffff, type: 0x80, len: 4, index: 0 },
      { optClass: 0xffff, type: 0x81, len: 4, index: 1 },
    ],
  };
  const have: BridgeState = { ...empty, tlvMap: [{ optClass: 0x0102, type: 0x80, len: 8, index: 0 }] };
  const d = diffBridge(want, have);
  assert.deepEqual(d.addTlv, [{ optClass: 0xffff, type: 0x81, len: 4, index: 1 }]);
  assert.deepEqual(d.conflictingTlv, [{ optClass: 0x0102, type: 0x80, len: 8, index: 0 }]);
});

test('renderFlow is one line in dump order', () => {
  assert.equal(
    renderFlow(f(10, 100, 'reg0=0x1,reg1=0', 'output:2', 0x5103000100000000n)),
    'cookie=0x5103000100000000 table=10 priority=100,reg0=0x1,reg1=0 actions=output:2',
  );
});

test("parseDumpMeters joins each meter's band lines; meterArg gives add-meter its syntax back", () => {
  // What ovs-ofctl 3.1 printed on a scratch switch (docs/design/ovs-facts.md "Meters").
  const meters = parseDumpMeters(`OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):
meter=1358954497 pktps burst bands=
type=drop rate=2000 burst_size=2000

meter=2 pktps bands=
type=drop rate=100
`);
  assert.deepEqual(meters, [
    { meterId: 1358954497, spec: 'pktps burst bands=type=drop rate=2000 burst_size=2000' },
    { meterId: 2, spec: 'pktps bands=type=drop rate=100' },
  ]);
  assert.equal(meterArg(meters[0]!), 'meter=1358954497,pktps,burst,band=type=drop,rate=2000,burst_size=2000');
  assert.deepEqual(parseDumpMeters('OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):\n'), []);
  assert.throws(() => parseDumpMeters('type=drop rate=1'), /unparsable dump-meters line/);
});
