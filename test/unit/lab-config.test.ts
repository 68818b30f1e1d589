// The lab's address plan and derived sluice config (pure: no namespaces, no root).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  defaultVips,
  labConfigDocument,
  labNamespacePattern,
  labPlan,
  labSluiceConfig,
  planNamespaces,
  resolveLabConfig,
} from '../../src/lab/config.ts';
import { SluiceError } from '../../src/model/errors.ts';

test('defaults: 2 gateways, 3 hosts, 2 backends per host, 2 clients, prefix sl-', () => {
  const cfg = resolveLabConfig();
  assert.deepEqual(
    [cfg.prefix, cfg.gateways, cfg.hosts, cfg.backendsPerHost, cfg.clients],
    ['sl-', 2, 3, 2, 2],
  );
  const plan = labPlan(cfg);
  assert.deepEqual(
    plan.nodes.map((n) => [n.netns, n.tunnelIp]),
    [
      ['sl-gw1', '192.168.100.1'],
      ['sl-gw2', '192.168.100.2'],
      ['sl-host1', '192.168.100.11'],
      ['sl-host2', '192.168.100.12'],
      ['sl-host3', '192.168.100.13'],
    ],
  );
  const b = plan.nodes[3].backends[1];
  assert.deepEqual(
    [b.name, b.netns, b.ip, b.ip6, b.gatewayIp, b.gatewayMac, b.vmPort],
    ['host2-b2', 'sl-host2-b2', '10.0.2.12', 'fd00:0:2::12', '10.0.2.1', '02:00:00:00:02:01', 'vm-host2-b2'],
  );
  assert.equal(planNamespaces(plan).length, 15);
});

test('every MAC and address in the plan is unique; interface names fit IFNAMSIZ', () => {
  const plan = labPlan(resolveLabConfig({ gateways: 9, hosts: 20, backendsPerHost: 12, clients: 5 }));
  const macs = plan.nodes.flatMap((n) => [n.brPhyMac, n.eth0Mac, ...n.backends.map((b) => b.mac)]);
  assert.equal(new Set(macs).size, macs.length);
  const ips = plan.nodes.flatMap((n) => [n.tunnelIp, ...n.backends.flatMap((b) => [b.ip, b.ip6])]);
  assert.equal(new Set(ips).size, ips.length);
  for (const n of plan.nodes) for (const b of n.backends) assert.ok(b.vmPort.length <= 15, b.vmPort);
});

test('default VIPs: 203.0.113.10 with 4 backends, 203.0.113.20 with 3, exactly one shared', () => {
  const [web, api] = defaultVips({ hosts: 3, backendsPerHost: 2, backendPort: 80, ipv6: false });
  assert.equal(web.backends.length, 4);
  assert.equal(api.backends.length, 3);
  assert.deepEqual(
    web.backends.filter((b) => api.backends.includes(b)),
    ['host1-b2'],
  );
  assert.equal(defaultVips({ hosts: 3, backendsPerHost: 2, backendPort: 80, ipv6: true }).length, 3);
});

test('the derived sluice config passes the model validation (IPv4 and IPv6 VIPs)', () => {
  const cfg = labSluiceConfig(resolveLabConfig({ ipv6: true }));
  assert.equal(cfg.nodes.length, 5);
  const v6 = cfg.loadBalancers.find((lb) => lb.vip === '2001:db8::10');
  assert.equal(v6?.family, 6);
  assert.deepEqual(
    v6?.backends.map((b) => b.address),
    ['fd00:0:1::11', 'fd00:0:2::11', 'fd00:0:3::11'],
  );
  const doc = labConfigDocument(resolveLabConfig(), { hashMode: 'fields', slotBits: 6 });
  assert.equal(doc.hashMode, 'fields');
  assert.equal(labSluiceConfig(resolveLabConfig(), { slotBits: 6 }).slotBits, 6);
});

test('bad sizes and prefixes are rejected with every problem listed', () => {
  assert.throws(
    () => resolveLabConfig({ gateways: 0, hosts: 1.5, prefix: 'Bad Prefix' }),
    (e: unknown) =>
      e instanceof SluiceError &&
      e.code === 'SLUICE_E_USAGE' &&
      /prefix/.test(e.message) &&
      /gateways/.test(e.message) &&
      /hosts/.test(e.message),
  );
  assert.throws(
    () =>
      resolveLabConfig({
        vips: [
          { name: 'x', vip: '203.0.113.9', family: 4, protocol: 'tcp', port: 80, backends: ['host9-b1'] },
        ],
      }),
    /unknown backend host9-b1/,
  );
});

test('the namespace pattern matches exactly the names of that prefix', () => {
  const re = labNamespacePattern('sl-');
  for (const n of ['sl-fabric', 'sl-router', 'sl-gw1', 'sl-host12', 'sl-host3-b2', 'sl-c1'])
    assert.ok(re.test(n), n);
  for (const n of ['sl-x-gw1', 'slt-lab-gw1', 'sl-gw', 'sl-scratch', 'xsl-gw1', 'sl-host1-b'])
    assert.ok(!re.test(n), n);
});
