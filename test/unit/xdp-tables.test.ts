// src/compile/xdp.ts: the XDP gateway's map entries for a generation (pure; no kernel). The program itself runs in
// test/e2e/xdp-program.test.ts.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewaySlotEntries } from '../../src/compile/gateway.ts';
import { lbInputs } from '../../src/compile/index.ts';
import { xdpFlip, xdpInstallWrites, xdpMapImage, xdpTables } from '../../src/compile/xdp.ts';
import { nodeBrPhyMac } from '../../src/lab/config.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { xdpFixture } from '../scenarios/xdp-fixture.ts';

const { config, gen, hosts, facts } = xdpFixture(true);

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
    full.vips.length - smaller.vips.length + (full.slots.length - smaller.slots.length),
  );
  assert.ok(deletes.length > 0);
  assert.equal(
    writes.filter((w) => w.kind === 'update').length,
    1 + smaller.vips.length + smaller.slots.length + 1,
  );
  assert.deepEqual(writes.at(-1), xdpFlip(1));
  assert.deepEqual(
    xdpInstallWrites(smaller, smaller, 1).filter((w) => w.kind === 'delete'),
    [],
  );
});
