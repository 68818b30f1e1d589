// The node-facts reader of src/agent/facts.ts on output CAPTURED from a real lab host (OVS 3.1.0, `ovs-vsctl
// --format=json` with VSCTL_ARGS on host1 of `sluice lab --gateways 1 --hosts 1 --backends-per-host 2`, prefix
// slt-afx-, 2026-11-26: test/fixtures/ovs-facts-host1.vsctl.jsonl), and FAKE variants of it edited by the helpers
// below (a key removed, an ofport changed, ...) to check every error names the row and key. Pure: no OVS is run here;
// `readNodeFacts` is exercised with a fake runner that returns the captured text.

import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  checkNodeFacts,
  nodeFactsFromOvs,
  parseVsctlTables,
  readNodeFacts,
  VSCTL_ARGS,
  type VsctlTable,
} from '../../src/agent/facts.ts';
import type { NodeFacts } from '../../src/compile/facts.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { labHost1Facts } from '../scenarios/fake-facts.ts';

const CAPTURED = readFileSync(new URL('../fixtures/ovs-facts-host1.vsctl.jsonl', import.meta.url), 'utf8');

const HOST1: NodeFacts = labHost1Facts({
  '10.0.1.11': { ofport: 11, mac: '02:00:0a:00:01:0b' },
  'fd00:0:1::11': { ofport: 11, mac: '02:00:0a:00:01:0b' },
  '10.0.1.12': { ofport: 12, mac: '02:00:0a:00:01:0c' },
  'fd00:0:1::12': { ofport: 12, mac: '02:00:0a:00:01:0c' },
});

type Mutable = { headings: string[]; data: unknown[][] };

/** A fresh deep copy of the captured tables: [Open_vSwitch, Bridge, Port, Interface]. */
function tables(): Mutable[] {
  return JSON.parse(JSON.stringify(parseVsctlTables(CAPTURED))) as Mutable[];
}

function col(t: Mutable, name: string): number {
  const i = t.headings.indexOf(name);
  assert.ok(i >= 0, `column ${name}`);
  return i;
}

function mapOf(cell: unknown): Array<[string, string]> {
  return (cell as ['map', Array<[string, string]>])[1];
}

/** Sets (value) or removes (undefined) one Open_vSwitch external_ids key. */
function setOvsKey(ts: Mutable[], key: string, value: string | undefined): Mutable[] {
  const ovs = ts[0]!;
  const pairs = mapOf(ovs.data[0]![col(ovs, 'external_ids')]).filter(([k]) => k !== key);
  if (value !== undefined) pairs.push([key, value]);
  ovs.data[0]![col(ovs, 'external_ids')] = ['map', pairs];
  return ts;
}

function ifaceRow(ts: Mutable[], name: string): unknown[] {
  const t = ts[3]!;
  const row = t.data.find((r) => r[col(t, 'name')] === name);
  assert.ok(row, `interface ${name}`);
  return row;
}

function setIface(ts: Mutable[], name: string, column: string, value: unknown): Mutable[] {
  ifaceRow(ts, name)[col(ts[3]!, column)] = value;
  return ts;
}

/** Sets (value) or removes (undefined) one Interface external_ids key. */
function setIfaceKey(ts: Mutable[], name: string, key: string, value: string | undefined): Mutable[] {
  const i = col(ts[3]!, 'external_ids');
  const row = ifaceRow(ts, name);
  const pairs = mapOf(row[i]).filter(([k]) => k !== key);
  if (value !== undefined) pairs.push([key, value]);
  row[i] = ['map', pairs];
  return ts;
}

function throwsFacts(ts: readonly VsctlTable[], message: RegExp): void {
  assert.throws(
    () => nodeFactsFromOvs(ts),
    (e: unknown) => {
      assert.ok(e instanceof SluiceError, String(e));
      assert.equal(e.code, 'SLUICE_E_NODE_FACTS');
      assert.match(e.message, message);
      return true;
    },
  );
}

test('captured host1: the facts the lab computes, and the probe namespaces', () => {
  const r = nodeFactsFromOvs(parseVsctlTables(CAPTURED));
  assert.deepEqual(r.facts, HOST1);
  assert.deepEqual(r.probeNetns, {
    '10.0.1.11': 'slt-afx-host1-b1',
    'fd00:0:1::11': 'slt-afx-host1-b1',
    '10.0.1.12': 'slt-afx-host1-b2',
    'fd00:0:1::12': 'slt-afx-host1-b2',
  });
});

test('readNodeFacts runs one ovs-vsctl transaction (fake runner returning the captured text)', async () => {
  const calls: (readonly string[])[] = [];
  const r = await readNodeFacts({
    vsctl: async (args) => {
      calls.push(args);
      return { code: 0, stdout: CAPTURED, stderr: '' };
    },
  });
  assert.deepEqual(calls, [VSCTL_ARGS]);
  assert.deepEqual(r.facts, HOST1);
});

test('readNodeFacts: ovs-vsctl failing is SLUICE_E_IO with its message (fake runner)', async () => {
  const stderr = 'ovs-vsctl: unix:/x/db.sock: database connection failed (No such file or directory)\n';
  await assert.rejects(readNodeFacts({ vsctl: async () => ({ code: 1, stdout: '', stderr }) }), {
    code: 'SLUICE_E_IO',
    message:
      /cannot read the node's OVSDB with ovs-vsctl: ovs-vsctl: unix:\/x\/db.sock: database connection failed/,
  });
});

test('a missing key is named with its row: node facts', () => {
  throwsFacts(
    setOvsKey(tables(), 'sluice-role', undefined),
    /^Open_vSwitch \. external_ids:sluice-role missing$/,
  );
  throwsFacts(
    setOvsKey(tables(), 'sluice-role', 'router'),
    /sluice-role: expected gateway or host, got "router"/,
  );
  throwsFacts(setOvsKey(tables(), 'sluice-tunnel-ip', undefined), /external_ids:sluice-tunnel-ip missing/);
  throwsFacts(
    setOvsKey(tables(), 'sluice-tunnel-ip', 'fd00::1'),
    /sluice-tunnel-ip: "fd00::1" is not an IPv4 address/,
  );
  throwsFacts(
    setOvsKey(tables(), 'sluice-router-mac', undefined),
    /external_ids:sluice-router-mac missing \(hosts need it\)/,
  );
  throwsFacts(setOvsKey(tables(), 'sluice-vm-router-mac', 'zz'), /sluice-vm-router-mac: "zz" is not a MAC/);
  throwsFacts(
    setOvsKey(setOvsKey(tables(), 'sluice-node', undefined), 'system-id', undefined),
    /external_ids:sluice-node \(or system-id\) missing/,
  );
});

test('sluice-node defaults to system-id (ovn-controller names its chassis so); keys override defaults', () => {
  const ts = setOvsKey(setOvsKey(tables(), 'sluice-node', undefined), 'system-id', 'h-one');
  assert.equal(nodeFactsFromOvs(ts).facts.name, 'h-one');
  // An explicit bridge name that does not exist.
  throwsFacts(
    setOvsKey(tables(), 'sluice-int-bridge', 'br-x'),
    /Bridge br-x \(Open_vSwitch \. external_ids:sluice-int-bridge\) does not exist/,
  );
});

test('a gateway needs no router or VM router MAC (zeros); a host does', () => {
  let ts = setOvsKey(tables(), 'sluice-role', 'gateway');
  for (const k of ['sluice-router-ip', 'sluice-router-mac', 'sluice-vm-router-mac'])
    ts = setOvsKey(ts, k, undefined);
  const f = nodeFactsFromOvs(ts).facts;
  assert.equal(f.role, 'gateway');
  assert.deepEqual(f.router, { ip: '0.0.0.0', mac: '00:00:00:00:00:00' });
  assert.equal(f.vmRouterMac, '00:00:00:00:00:00');
  // Half a router is an error even on a gateway.
  throwsFacts(
    setOvsKey(setOvsKey(tables(), 'sluice-role', 'gateway'), 'sluice-router-ip', undefined),
    /sluice-router-ip missing \(the other is set\)/,
  );
});

test('backend interfaces: missing attached-mac, bad or duplicate addresses, wrong bridge', () => {
  throwsFacts(
    setIfaceKey(tables(), 'vm-host1-b1', 'attached-mac', undefined),
    /^Interface vm-host1-b1: external_ids:attached-mac missing$/,
  );
  throwsFacts(
    setIfaceKey(tables(), 'vm-host1-b1', 'sluice-backend-ips', '10.0.1.11,10.0.1.13'),
    /Interface vm-host1-b1: external_ids:sluice-backend-ips has two IPv4 addresses/,
  );
  throwsFacts(
    setIfaceKey(tables(), 'vm-host1-b1', 'sluice-backend-ips', '10.0.1.300'),
    /"10\.0\.1\.300" is not an IP address/,
  );
  throwsFacts(
    setIfaceKey(tables(), 'vm-host1-b2', 'sluice-backend-ips', 'fd00:0:1::11'),
    /backend fd00:0:1::11 is on two interfaces: vm-host1-b1 and vm-host1-b2/,
  );
  throwsFacts(
    setIfaceKey(tables(), 'eth0', 'sluice-backend-ips', '10.0.9.9'),
    /Interface eth0: has external_ids:sluice-backend-ips but is on bridge br-phy, not br-int/,
  );
});

test('backend addresses and MACs are taken in canonical form', () => {
  let ts = setIfaceKey(tables(), 'vm-host1-b1', 'sluice-backend-ips', ' 10.0.1.11 , FD00:0:1:0:0:0:0:11 ');
  ts = setIfaceKey(ts, 'vm-host1-b1', 'attached-mac', '02:00:0A:00:01:0B');
  const f = nodeFactsFromOvs(ts).facts;
  assert.deepEqual(f.vms, HOST1.vms);
  // Without sluice-probe-netns there is no probe namespace.
  const p = nodeFactsFromOvs(
    setIfaceKey(tables(), 'vm-host1-b2', 'sluice-probe-netns', undefined),
  ).probeNetns;
  assert.deepEqual(Object.keys(p).sort(), ['10.0.1.11', 'fd00:0:1::11']);
});

test('several VMs behind one port (ip=mac entries: OVN localnet patch): own MACs, probe namespaces per address', () => {
  // host1-b2's addresses moved behind vm-host1-b1 (as both VMs behind one localnet patch), each with its own MAC.
  let ts = setIfaceKey(tables(), 'vm-host1-b2', 'sluice-backend-ips', undefined);
  ts = setIfaceKey(
    ts,
    'vm-host1-b1',
    'sluice-backend-ips',
    '10.0.1.11=02:00:0a:00:01:0b, 10.0.1.12=02:00:0A:00:01:0C, fd00:0:1::12=02:00:0a:00:01:0c',
  );
  ts = setIfaceKey(ts, 'vm-host1-b1', 'attached-mac', undefined); // not needed when every entry has its MAC
  ts = setIfaceKey(ts, 'vm-host1-b1', 'sluice-probe-netns', '10.0.1.11=ns-a,10.0.1.12=ns-b');
  const r = nodeFactsFromOvs(ts);
  assert.deepEqual(r.facts.vms, {
    '10.0.1.11': { ofport: 11, mac: '02:00:0a:00:01:0b' },
    '10.0.1.12': { ofport: 11, mac: '02:00:0a:00:01:0c' },
    'fd00:0:1::12': { ofport: 11, mac: '02:00:0a:00:01:0c' },
  });
  assert.deepEqual(r.probeNetns, { '10.0.1.11': 'ns-a', '10.0.1.12': 'ns-b' });
  // (setIfaceKey edits `ts` in place.) A plain entry beside ip=mac ones takes attached-mac (here absent: named).
  throwsFacts(
    setIfaceKey(ts, 'vm-host1-b1', 'sluice-backend-ips', '10.0.1.11=02:00:0a:00:01:0b,10.0.1.12'),
    /^Interface vm-host1-b1: external_ids:attached-mac missing$/,
  );
  throwsFacts(
    setIfaceKey(
      ts,
      'vm-host1-b1',
      'sluice-backend-ips',
      '10.0.1.11=02:00:0a:00:01:0b,10.0.1.12=02:00:0a:00:01:0b',
    ),
    /sluice-backend-ips has two IPv4 addresses for MAC 02:00:0a:00:01:0b/,
  );
  throwsFacts(
    setIfaceKey(ts, 'vm-host1-b1', 'sluice-backend-ips', '10.0.1.11=zz'),
    /Interface vm-host1-b1: external_ids:sluice-backend-ips: MAC of 10\.0\.1\.11/,
  );
  setIfaceKey(
    ts,
    'vm-host1-b1',
    'sluice-backend-ips',
    '10.0.1.11=02:00:0a:00:01:0b,10.0.1.12=02:00:0a:00:01:0c',
  );
  throwsFacts(
    setIfaceKey(ts, 'vm-host1-b1', 'sluice-probe-netns', '10.0.1.11=ns-a,10.0.1.99=ns-b'),
    /external_ids:sluice-probe-netns: "10\.0\.1\.99" is not one of this port's backend addresses/,
  );
  throwsFacts(
    setIfaceKey(ts, 'vm-host1-b1', 'sluice-probe-netns', '10.0.1.11=ns-a,10.0.1.12'),
    /sluice-probe-netns: "10\.0\.1\.12" has no namespace/,
  );
});

test('ofports: not assigned yet, failed, and changed (read again after a vswitchd restart)', () => {
  throwsFacts(
    setIface(tables(), 'geneve0', 'ofport', ['set', []]),
    /Interface geneve0: no ofport yet \(is ovs-vswitchd running\?\)/,
  );
  throwsFacts(setIface(tables(), 'vm-host1-b2', 'ofport', -1), /Interface vm-host1-b2: ofport -1/);
  const f = nodeFactsFromOvs(
    setIface(setIface(tables(), 'eth0', 'ofport', 7), 'vm-host1-b1', 'ofport', 31),
  ).facts;
  assert.equal(f.ports.eth0, 7);
  assert.deepEqual(f.vms['10.0.1.11'], { ofport: 31, mac: '02:00:0a:00:01:0b' });
  throwsFacts(
    setIface(tables(), 'br-phy', 'mac_in_use', ['set', []]),
    /Interface br-phy: mac_in_use empty \(is ovs-vswitchd running\?\)/,
  );
});

test('ports found by structure: patch pair, one geneve, one underlay NIC (or sluice-underlay-iface)', () => {
  throwsFacts(
    setIface(tables(), 'int-to-phy', 'options', ['map', [['peer', 'elsewhere']]]),
    /expected one patch port pair between br-phy and br-int .* found 0/,
  );
  throwsFacts(
    setIface(tables(), 'geneve0', 'type', 'vxlan'),
    /Bridge br-int: expected one interface of type geneve, found 0/,
  );
  throwsFacts(
    setIface(tables(), 'geneve0', 'options', ['map', [['remote_ip', '192.168.100.1']]]),
    /Interface geneve0: options:remote_ip must be flow \(got 192\.168\.100\.1\)/,
  );
  // A second plain interface on br-phy: move vm-host1-b2's port there (a fake: Port rows are edited).
  const ts = tables();
  const bridgeT = ts[1]!;
  const portT = ts[2]!;
  const b2Port = portT.data.find((r) => r[col(portT, 'name')] === 'vm-host1-b2')!;
  const b2Uuid = (b2Port[col(portT, '_uuid')] as [string, string])[1];
  for (const row of bridgeT.data) {
    const cell = row[col(bridgeT, 'ports')] as ['set', Array<[string, string]>];
    const kept = cell[1].filter(([, u]) => u !== b2Uuid);
    if (row[col(bridgeT, 'name')] === 'br-phy') kept.push(['uuid', b2Uuid]);
    row[col(bridgeT, 'ports')] = ['set', kept];
  }
  setIfaceKey(ts, 'vm-host1-b2', 'sluice-backend-ips', undefined);
  throwsFacts(
    ts,
    /Bridge br-phy: cannot tell the underlay NIC \(2 candidates: .*\); set Open_vSwitch \. external_ids:sluice-underlay-iface/,
  );
  assert.equal(nodeFactsFromOvs(setOvsKey(ts, 'sluice-underlay-iface', 'vm-host1-b2')).facts.ports.eth0, 12);
  throwsFacts(
    setOvsKey(tables(), 'sluice-underlay-iface', 'eth9'),
    /sluice-underlay-iface: no interface eth9 on bridge br-phy/,
  );
});

test('output that is not ovs-vsctl JSON is rejected with SLUICE_E_NODE_FACTS', () => {
  assert.throws(() => parseVsctlTables('ovs-vsctl: unix:/x/db.sock: database connection failed'), {
    code: 'SLUICE_E_NODE_FACTS',
  });
  assert.throws(() => parseVsctlTables('{"rows": []}'), { code: 'SLUICE_E_NODE_FACTS' });
  throwsFacts(parseVsctlTables(CAPTURED).slice(0, 3), /expected 4 tables/);
});

test('sluice-follow-moves: true or false, absent = off; another value named', () => {
  assert.equal(nodeFactsFromOvs(tables()).facts.followMoves, undefined);
  assert.equal(nodeFactsFromOvs(setOvsKey(tables(), 'sluice-follow-moves', 'true')).facts.followMoves, true);
  assert.equal(
    nodeFactsFromOvs(setOvsKey(tables(), 'sluice-follow-moves', 'false')).facts.followMoves,
    undefined,
  );
  throwsFacts(
    setOvsKey(tables(), 'sluice-follow-moves', 'yes'),
    /Open_vSwitch \. external_ids:sluice-follow-moves: "yes" is not true or false/,
  );
  const f = nodeFactsFromOvs(tables()).facts;
  assert.equal(checkNodeFacts({ ...f, followMoves: true }, 'file').followMoves, true);
  assert.throws(
    () => checkNodeFacts({ ...f, followMoves: 1 } as never, 'file'),
    /file: followMoves: expected true or false/,
  );
});

test('sluice-ct-zone: the host zone beside ovn-controller (1..65535), absent = the default; bad values named', () => {
  assert.equal(nodeFactsFromOvs(tables()).facts.ctZone, undefined);
  assert.equal(nodeFactsFromOvs(setOvsKey(tables(), 'sluice-ct-zone', '65535')).facts.ctZone, 65535);
  for (const bad of ['0', '65536', '1.5', 'one', '-3'])
    throwsFacts(
      setOvsKey(tables(), 'sluice-ct-zone', bad),
      new RegExp(
        `Open_vSwitch \\. external_ids:sluice-ct-zone: "${bad.replace('.', '\\.')}" is not a conntrack zone \\(1\\.\\.65535\\)`,
      ),
    );
  // A facts file says the same thing with the same check.
  const f = nodeFactsFromOvs(tables()).facts;
  assert.equal(checkNodeFacts({ ...f, ctZone: 7 }, 'file').ctZone, 7);
  assert.throws(() => checkNodeFacts({ ...f, ctZone: 0 }, 'file'), /file: ctZone: 0 is not a conntrack zone/);
});

test('sluice-ovn-patch: the named patch on the int bridge, absent until it exists; probe namespaces for the node', () => {
  assert.equal(nodeFactsFromOvs(tables()).facts.ovnPatch, undefined, 'not set: no OVN patch');
  // (The fixture's int-to-phy stands in for ovn-controller's patch-ln-to-br-ovn: a patch on br-int.)
  const on = (name: string) => setOvsKey(tables(), 'sluice-ovn-patch', name);
  assert.equal(nodeFactsFromOvs(on('int-to-phy')).facts.ovnPatch, 1);
  assert.equal(
    nodeFactsFromOvs(on('patch-ln-to-br-ovn')).facts.ovnPatch,
    undefined,
    'named but not made yet (no port of the switch bound here): no error, nothing to deliver through',
  );
  throwsFacts(
    on('phy-to-int'),
    /^Interface phy-to-int \(Open_vSwitch \. external_ids:sluice-ovn-patch\): is on bridge br-phy, not br-int$/,
  );
  throwsFacts(on('vm-host1-b1'), /Interface vm-host1-b1 .*: is of type system, not patch$/);
  const f = nodeFactsFromOvs(on('int-to-phy')).facts;
  assert.equal(checkNodeFacts(f, 'file').ovnPatch, 1, 'a facts file may carry it');
  assert.throws(
    () => checkNodeFacts({ ...f, ovnPatch: 0 }, 'file'),
    /file: ovnPatch: 0 is not an OpenFlow port/,
  );
  // Node-wide probe namespaces (for addresses no interface lists, as the OVN patch's derived ones); an
  // interface's own entry wins.
  const p = nodeFactsFromOvs(setOvsKey(tables(), 'sluice-probe-netns', '10.0.1.21=ns-x, 10.0.1.11=ns-y'));
  assert.equal(p.probeNetns['10.0.1.21'], 'ns-x');
  assert.notEqual(p.probeNetns['10.0.1.11'], 'ns-y', "the interface's own namespace wins");
  throwsFacts(
    setOvsKey(tables(), 'sluice-probe-netns', 'ns-x'),
    /^Open_vSwitch \. external_ids:sluice-probe-netns: "ns-x" is not an IP address$/,
  );
  throwsFacts(setOvsKey(tables(), 'sluice-probe-netns', '10.0.1.21'), /"10\.0\.1\.21" has no namespace/);
});
