// src/compile/xdp.ts: the XDP gateway's map entries for a generation (pure; no kernel). The program itself runs in
// test/e2e/xdp-program.test.ts.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewaySlotEntries } from '../../src/compile/gateway.ts';
import { gatewayIcmpFlows, gatewayIcmpMeters } from '../../src/compile/icmp.ts';
import { lbInputs } from '../../src/compile/index.ts';
import { decodeCookie } from '../../src/compile/registry.ts';
import { XDP_LIMITS, xdpFlip, xdpInstallWrites, xdpMapImage, xdpTables } from '../../src/compile/xdp.ts';
import { nodeBrPhyMac } from '../../src/lab/config.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';
import { xdpFixture } from '../scenarios/xdp-fixture.ts';

const { config, gen, hosts, facts } = xdpFixture(true);
const gwFacts = fakeFacts(config, config.nodes.find((n) => n.role === 'gateway')?.name ?? 'gw1');

test('one slot entry per slot with a primary, with the GW_SLOTS values; one VIP entry per port and per address', () => {
  const t = xdpTables(config, gen, facts);
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  const want = lbInputs(config, gen).flatMap((x) =>
    gatewaySlotEntries(hostIp, x).map((e) => [x.id, e.slot, e.options, e.dst]),
  );
  assert.deepEqual(
    t.slots.map((s) => [s.lbId, s.slot, s.options, s.dst]),
    want,
  );
  assert.equal(
    t.vips.filter((v) => v.proto !== 'icmp').length,
    config.loadBalancers.reduce((n, l) => n + l.ports.length, 0),
  );
  // Echo: one entry per VIP address, port 0.
  const addresses = new Set(config.loadBalancers.map((l) => `${l.family}/${l.vip}`));
  const echo = t.vips.filter((v) => v.proto === 'icmp');
  assert.deepEqual(new Set(echo.map((v) => `${v.family}/${v.vip}`)), addresses);
  assert.equal(echo.length, addresses.size);
  assert.ok(echo.every((v) => v.port === 0));
  assert.deepEqual(
    t.vips.map((v) => v.counter),
    t.vips.map((_, i) => i),
  );
});

test('the byte layout of gateway.bpf.c: copy first, addresses and ports in network order', () => {
  const t = xdpTables(config, gen, facts);
  const img = xdpMapImage(t, 1);
  const web6 = t.vips.findIndex((v) => v.vip === '2001:db8::10' && v.proto === 'tcp');
  const k = img.vips[web6].key;
  assert.deepEqual([...k.subarray(0, 8)], [1, 0, 0, 0, 6, 6, 0, 80]);
  assert.deepEqual([...k.subarray(8, 12)], [0x20, 0x01, 0x0d, 0xb8]);
  const echo6 = t.vips.findIndex((v) => v.vip === '2001:db8::10' && v.proto === 'icmp');
  assert.deepEqual([...img.vips[echo6].key.subarray(0, 8)], [1, 0, 0, 0, 6, 58, 0, 0]);
  const s = img.slots[0];
  assert.equal(s.value.length, 24);
  assert.deepEqual([...s.value.subarray(0, 4)], t.slots[0].dst.split('.').map(Number));
  assert.equal(new DataView(s.value.buffer).getUint32(4, true), t.slots[0].options[0]);
  assert.deepEqual([...img.config.value], [192, 168, 100, 1, 2, 0, 0xc0, 0xa8, 0x64, 1, 64, 0]);
  // The last byte of the config is the hash mode: 0 fields, 1 dp_hash (the userspace datapath's dp_hash).
  const dp = xdpMapImage(xdpTables({ ...config, hashMode: 'dp_hash' }, gen, facts), 0);
  assert.equal(dp.config.value[11], 1);
});

test('a host without a neighbour MAC: SLUICE_E_XDP naming it, no tables', () => {
  const partial = { ...facts, neighbours: new Map([[hosts[0], nodeBrPhyMac(hosts[0])]]) };
  assert.throws(
    () => xdpTables(config, gen, partial),
    (e: unknown) =>
      e instanceof SluiceError &&
      e.code === 'SLUICE_E_XDP' &&
      /no neighbour MAC for host tunnel IP 192\.168\.100\.1[23] \(lb \w+\)/.test(e.message),
  );
  assert.throws(
    () => xdpMapImage({ ...xdpTables(config, gen, facts), srcMac: '02:00' }, 0),
    /not a MAC address: 02:00/,
  );
});

test('installing a generation: every entry, the deletion of keys the copy held and the new one lacks, flip last', () => {
  const full = xdpMapImage(xdpTables(config, gen, facts), 1);
  const lessLbs = { ...config, loadBalancers: config.loadBalancers.filter((l) => l.name !== 'api') };
  const smaller = xdpMapImage(xdpTables(lessLbs, gen, facts), 1);
  const writes = xdpInstallWrites(full, smaller, 1);
  const deletes = writes.filter((w) => w.kind === 'delete');
  assert.equal(
    deletes.length,
    full.vips.length -
      smaller.vips.length +
      (full.slots.length - smaller.slots.length) +
      (full.icmpVips.length - smaller.icmpVips.length),
  );
  assert.ok(
    deletes.some((w) => w.map === 'sluice_icmpvips'),
    "api's VIP address leaves the ICMP map",
  );
  assert.equal(
    writes.filter((w) => w.kind === 'update').length,
    2 + smaller.vips.length + smaller.slots.length + smaller.icmpVips.length + 1,
  );
  assert.deepEqual(writes.at(-1), xdpFlip(1));
  assert.deepEqual(
    xdpInstallWrites(smaller, smaller, 1).filter((w) => w.kind === 'delete'),
    [],
  );
});

test("ICMP errors: per VIP address its hosts (the GW_ICMP flows' tun_dst list) and the meter, in the tc program's layout", () => {
  const tables = xdpTables(config, gen, { ...facts, icmpRate: 250 });
  const ovs = gatewayIcmpFlows(config, lbInputs(config, gen), { ...gwFacts, icmpRate: 250 }).filter(
    (f) => decodeCookie(f.cookie)?.kind === 'GW_ICMP',
  );
  for (const v of tables.icmp) {
    const flow = ovs.find((f) => f.match.includes(`=${v.vip},`));
    assert.ok(flow, `an OVS GW_ICMP flow for ${v.vip}`);
    const dsts = [...flow.actions.matchAll(/set_field:([\d.]+)->tun_dst/g)].map((m) => m[1]);
    assert.deepEqual(
      v.hosts.map((h) => h.ip),
      dsts,
      `${v.vip}: the same hosts in the same order as OVS`,
    );
    assert.ok(flow.actions.includes(`set_field:0x${((v.lbId << 16) >>> 0).toString(16)}->tun_metadata0`));
  }
  const image = xdpMapImage(tables, 1);
  assert.equal(image.icmpVips.length, tables.icmp.length);
  assert.deepEqual([...image.icmpConf.key], [1, 0, 0, 0]);
  assert.deepEqual([...image.icmpConf.value], [250, 0, 0, 0, 250, 0, 0, 0]);
  const first = image.icmpVips[0];
  assert.equal(first.value.length, 8 + 12 * XDP_LIMITS.icmpHosts);
  assert.equal(new DataView(first.value.buffer).getUint32(4, true), tables.icmp[0].hosts.length);
  // On an XDP gateway OVS gets no GW_ICMP error flows and no meter (the tc program copies), but keeps echo.
  const inXdp = { ...gwFacts, icmpErrorsInXdp: true };
  const kinds = gatewayIcmpFlows(config, lbInputs(config, gen), inXdp).map(
    (f) => decodeCookie(f.cookie)?.kind,
  );
  assert.ok(kinds.length > 0 && kinds.every((k) => k === 'GW_ICMP_ECHO'));
  assert.deepEqual(gatewayIcmpMeters(inXdp), []);
});
