// The lab's address plan, its config file and the derived sluice config (pure: no namespaces, no root; one test
// writes a temporary file for the CLI wiring, with a fake commander Command).

import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { labUpConfig } from '../../src/lab/cli.ts';
import {
  defaultVips,
  type LabConfigInput,
  labConfigDocument,
  labNamespacePattern,
  labPlan,
  labSluiceConfig,
  parseLabConfigFile,
  planNamespaces,
  resolveLabConfig,
  validateLabConfigFile,
} from '../../src/lab/config.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { decodeConfigText } from '../../src/model/load.ts';

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

// ---------------------------------------------------------------------------------------------------------------
// The lab config file (`sluice lab up --config FILE`).

const EXAMPLE = fileURLToPath(new URL('../../examples/lab.yaml', import.meta.url));

function issuesOf(doc: unknown, overrides: LabConfigInput = {}): Array<[string, string]> {
  const r = validateLabConfigFile(doc, overrides);
  assert.equal(r.ok, false, 'expected problems');
  return r.ok ? [] : r.issues.map((i) => [i.path, i.code]);
}

function messagesOf(doc: unknown): string[] {
  const r = validateLabConfigFile(doc);
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
}

test('examples/lab.yaml is the defaults written out: the same LabConfig as no flags at all', () => {
  const doc = decodeConfigText(readFileSync(EXAMPLE, 'utf8'), 'examples/lab.yaml');
  assert.deepEqual(parseLabConfigFile(doc, 'examples/lab.yaml'), resolveLabConfig());
  // An empty file (YAML null) and an empty mapping are the defaults too.
  assert.deepEqual(parseLabConfigFile(decodeConfigText('', 'e.yaml'), 'e.yaml'), resolveLabConfig());
  assert.deepEqual(parseLabConfigFile({}, 'x'), resolveLabConfig());
});

test('a valid file gives the same LabConfig as the same values through the API/flags (YAML and JSON)', () => {
  const yaml = [
    'prefix: x-',
    'gateways: 3',
    'hosts: 2',
    'backendsPerHost: 1',
    'clients: 1',
    'backendPort: 8000',
    'udp: false',
    'vips:',
    '  - { name: shop, vip: 203.0.113.30, port: 8080, backends: [host1-b1, host2-b1] }',
    '  - { name: shop6, vip: "2001:DB8:0::30", backends: [host2-b1] }',
  ].join('\n');
  const fromYaml = parseLabConfigFile(decodeConfigText(yaml, 'l.yaml'), 'l.yaml');
  const fromJson = parseLabConfigFile(
    decodeConfigText(JSON.stringify(decodeConfigText(yaml, 'l.yaml')), 'l.json'),
    'l.json',
  );
  const viaApi = resolveLabConfig({
    prefix: 'x-',
    gateways: 3,
    hosts: 2,
    backendsPerHost: 1,
    clients: 1,
    backendPort: 8000,
    udp: false,
    vips: [
      {
        name: 'shop',
        vip: '203.0.113.30',
        family: 4,
        protocol: 'tcp',
        port: 8080,
        backends: ['host1-b1', 'host2-b1'],
      },
      // Family from the address, address canonical, protocol tcp and port backendPort by default.
      { name: 'shop6', vip: '2001:db8::30', family: 6, protocol: 'tcp', port: 8000, backends: ['host2-b1'] },
    ],
  });
  assert.deepEqual(fromYaml, viaApi);
  assert.deepEqual(fromJson, viaApi);
  // The VIPs flow into the sluice config the control plane gets: the VIP's port, the backends' own port.
  const cfg = labSluiceConfig(fromYaml);
  const shop = cfg.loadBalancers.find((lb) => lb.name === 'shop')!;
  assert.deepEqual(shop.ports, [8080]);
  assert.deepEqual(
    shop.backends.map((b) => [b.address, b.port, b.host]),
    [
      ['10.0.1.11', 8000, 'host1'],
      ['10.0.2.11', 8000, 'host2'],
    ],
  );
  const shop6 = cfg.loadBalancers.find((lb) => lb.name === 'shop6')!;
  assert.deepEqual([shop6.family, shop6.backends[0].address], [6, 'fd00:0:2::11']);
  assert.equal(cfg.nodes.filter((n) => n.role === 'gateway').length, 3);
});

test('flags the user typed override the file; defaults apply only where neither says', () => {
  const doc = {
    prefix: 'f-',
    hosts: 2,
    gateways: 1,
    vips: [{ name: 'a', vip: '198.51.100.7', backends: ['host2-b2'] }],
  };
  const c = parseLabConfigFile(doc, 'f', { hosts: 4, ipv6: true });
  assert.deepEqual(
    [c.prefix, c.gateways, c.hosts, c.backendsPerHost, c.clients, c.ipv6],
    ['f-', 1, 4, 2, 2, true],
  );
  assert.deepEqual(
    c.vips.map((v) => v.name),
    ['a'],
  );
  // An override can make a file backend unknown: reported at the file's path.
  assert.deepEqual(issuesOf(doc, { hosts: 1 }), [['vips[0].backends[0]', 'SLUICE_E_LAB_CONFIG']]);
  // The CLI wiring: only options whose commander value source is `cli` override (a fake Command).
  const file = join(mkdtempSync(join(tmpdir(), 'lab-config-')), 'lab.json');
  writeFileSync(file, JSON.stringify(doc));
  const opts = {
    config: file,
    prefix: 'sl-',
    gateways: 2,
    hosts: 3,
    backendsPerHost: 2,
    clients: 5,
    ipv6: false,
    runRoot: '/tmp/r',
  };
  const typed = new Set(['clients']);
  const fake = { getOptionValueSource: (k: string) => (typed.has(k) ? 'cli' : 'default') } as Pick<
    Command,
    'getOptionValueSource'
  >;
  const viaCli = labUpConfig(fake, opts);
  assert.deepEqual(
    [viaCli.prefix, viaCli.gateways, viaCli.hosts, viaCli.clients, viaCli.runRoot],
    ['f-', 1, 2, 5, '/tmp/r'],
  );
  // Without --config the flags alone decide (as before the file existed).
  const noFile = labUpConfig(fake, { ...opts, config: undefined });
  assert.deepEqual([noFile.prefix, noFile.hosts, noFile.vips.length], ['sl-', 3, 2]);
  // Routing: `lab up` defaults to BGP (its flag's default), a file's `routing` wins over that default, the library
  // (resolveLabConfig, used by the data-plane tests) stays static.
  assert.equal(labUpConfig(fake, { ...opts, routing: 'bgp' }).routing, 'bgp');
  assert.equal(labUpConfig(fake, { ...opts, config: undefined, routing: 'bgp' }).routing, 'bgp');
  const staticFile = join(mkdtempSync(join(tmpdir(), 'lab-config-')), 'lab.json');
  writeFileSync(staticFile, JSON.stringify({ ...doc, routing: 'static' }));
  assert.equal(labUpConfig(fake, { ...opts, config: staticFile, routing: 'bgp' }).routing, 'static');
  assert.equal(resolveLabConfig({}).routing, 'static');
  assert.throws(
    () => resolveLabConfig({ routing: 'ospf' as 'bgp' }),
    /routing: "ospf" must be one of bgp, static/,
  );
});

test('every bad case is reported with its path and code', () => {
  const vip = (v: Record<string, unknown>) => ({
    vips: [{ name: 's', vip: '203.0.113.30', backends: ['host1-b1'], ...v }],
  });
  const cases: Array<[unknown, string, string]> = [
    [{ gateways: 10 }, 'gateways', 'SLUICE_E_LAB_CONFIG'],
    [{ hosts: 0 }, 'hosts', 'SLUICE_E_LAB_CONFIG'],
    [{ backendsPerHost: 1.5 }, 'backendsPerHost', 'SLUICE_E_LAB_CONFIG'],
    [{ clients: 201 }, 'clients', 'SLUICE_E_LAB_CONFIG'],
    [{ backendPort: 70000 }, 'backendPort', 'SLUICE_E_CONFIG_PORT_RANGE'],
    [{ genevePort: 0 }, 'genevePort', 'SLUICE_E_CONFIG_PORT_RANGE'],
    [{ prefix: 'Bad Prefix' }, 'prefix', 'SLUICE_E_LAB_CONFIG'],
    [{ hosts: 'three' }, 'hosts', 'SLUICE_E_CONFIG_TYPE'],
    [{ udp: 'yes' }, 'udp', 'SLUICE_E_CONFIG_TYPE'],
    [{ gatways: 2 }, 'gatways', 'SLUICE_E_CONFIG_UNKNOWN_KEY'],
    [{ vips: {} }, 'vips', 'SLUICE_E_CONFIG_TYPE'],
    [{ vips: ['web'] }, 'vips[0]', 'SLUICE_E_CONFIG_TYPE'],
    [vip({ vip: '203.0.113.300' }), 'vips[0].vip', 'SLUICE_E_CONFIG_INVALID_IP'],
    [vip({ vip: '0.0.0.0' }), 'vips[0].vip', 'SLUICE_E_CONFIG_ADDRESS_UNUSABLE'],
    [vip({ vip: '10.200.0.50' }), 'vips[0].vip', 'SLUICE_E_LAB_CONFIG'],
    [vip({ vip: '192.168.100.77' }), 'vips[0].vip', 'SLUICE_E_LAB_CONFIG'],
    [vip({ vip: '10.0.7.1' }), 'vips[0].vip', 'SLUICE_E_LAB_CONFIG'],
    [vip({ vip: 'fd00:200::99' }), 'vips[0].vip', 'SLUICE_E_LAB_CONFIG'],
    [vip({ port: 0 }), 'vips[0].port', 'SLUICE_E_CONFIG_PORT_RANGE'],
    [vip({ port: 65536 }), 'vips[0].port', 'SLUICE_E_CONFIG_PORT_RANGE'],
    [vip({ port: '80' }), 'vips[0].port', 'SLUICE_E_CONFIG_TYPE'],
    [vip({ protocol: 'sctp' }), 'vips[0].protocol', 'SLUICE_E_CONFIG_ENUM'],
    [{ udp: false, ...vip({ protocol: 'udp' }) }, 'vips[0].protocol', 'SLUICE_E_LAB_CONFIG'],
    [vip({ name: 'no spaces' }), 'vips[0].name', 'SLUICE_E_CONFIG_NAME'],
    [vip({ name: undefined }), 'vips[0].name', 'SLUICE_E_CONFIG_MISSING'],
    [vip({ family: 4 }), 'vips[0].family', 'SLUICE_E_CONFIG_UNKNOWN_KEY'],
    [vip({ backends: [] }), 'vips[0].backends', 'SLUICE_E_LAB_CONFIG'],
    [vip({ backends: 'host1-b1' }), 'vips[0].backends', 'SLUICE_E_CONFIG_TYPE'],
    [vip({ backends: ['host9-b1'] }), 'vips[0].backends[0]', 'SLUICE_E_LAB_CONFIG'],
    [vip({ backends: ['host1-b3'] }), 'vips[0].backends[0]', 'SLUICE_E_LAB_CONFIG'],
    [vip({ backends: ['host01-b1'] }), 'vips[0].backends[0]', 'SLUICE_E_LAB_CONFIG'],
    [vip({ backends: ['gw1'] }), 'vips[0].backends[0]', 'SLUICE_E_LAB_CONFIG'],
    [vip({ backends: ['host1-b1', 'host1-b1'] }), 'vips[0].backends[1]', 'SLUICE_E_CONFIG_DUPLICATE_BACKEND'],
  ];
  for (const [doc, path, code] of cases) {
    assert.deepEqual(issuesOf(doc), [[path, code]], JSON.stringify(doc));
  }
  assert.deepEqual(
    issuesOf({
      vips: [
        { name: 'a', vip: '203.0.113.30', backends: ['host1-b1'] },
        { name: 'a', vip: '203.0.113.31', backends: ['host1-b1'] },
      ],
    }),
    [['vips[1].name', 'SLUICE_E_CONFIG_DUPLICATE_LB']],
  );
  // Same address and port: a duplicate, also when written differently; another protocol or port is not.
  const listeners = (b: Record<string, unknown>) => ({
    vips: [
      { name: 'a', vip: '2001:db8::30', port: 80, backends: ['host1-b1'] },
      { name: 'b', backends: ['host2-b1'], ...b },
    ],
  });
  assert.deepEqual(issuesOf(listeners({ vip: '2001:db8:0:0::30', port: 80 })), [
    ['vips[1].vip', 'SLUICE_E_CONFIG_DUPLICATE_LISTENER'],
  ]);
  assert.equal(validateLabConfigFile(listeners({ vip: '2001:db8::30', port: 81 })).ok, true);
  assert.equal(validateLabConfigFile(listeners({ vip: '2001:db8::30', port: 80, protocol: 'udp' })).ok, true);
  assert.deepEqual(messagesOf(vip({ backends: ['host9-b1'] })), [
    'vips[0].backends[0]: unknown backend host9-b1 (this lab has host1..host3, each with b1..b2)',
  ]);
});

test('all problems at once, in one error, and nothing valid is built from a bad file', () => {
  const doc = {
    gateways: 0,
    hosts: 2,
    colour: 'blue',
    vips: [
      { name: 'shop', vip: '203.0.113.300', port: 8080, backends: ['host1-b1', 'host9-b1'] },
      { name: 'shop', vip: '203.0.113.31', port: 0, backends: [] },
      { name: 'ok', vip: '203.0.113.32', backends: ['host2-b2'] },
      { name: 'dup', vip: '203.0.113.32', port: 80, backends: ['host3-b1'] },
    ],
  };
  assert.throws(
    () => parseLabConfigFile(doc, 'lab.yaml'),
    (e: unknown) => {
      assert.ok(e instanceof SluiceError);
      assert.equal(e.code, 'SLUICE_E_CONFIG_INVALID');
      assert.deepEqual(
        e.issues.map((i) => i.path).sort(),
        [
          'colour',
          'gateways',
          'vips[0].backends[1]',
          'vips[0].vip',
          'vips[1].backends',
          'vips[1].name',
          'vips[1].port',
          'vips[3].backends[0]',
          'vips[3].vip',
        ].sort(),
      );
      assert.match(e.message, /^invalid lab config lab\.yaml: 9 problems\n/);
      assert.match(
        e.message,
        /\n {2}vips\[0\]\.backends\[1\]: unknown backend host9-b1 .*\[SLUICE_E_LAB_CONFIG\]/,
      );
      return true;
    },
  );
});

test('the API path (resolveLabConfig) reports every problem with its path too (SLUICE_E_USAGE)', () => {
  assert.throws(
    () =>
      resolveLabConfig({
        gateways: 0,
        vips: [
          { name: 'x', vip: '203.0.113.9', family: 4, protocol: 'tcp', port: 80, backends: ['host9-b1'] },
        ],
      }),
    (e: unknown) =>
      e instanceof SluiceError &&
      e.code === 'SLUICE_E_USAGE' &&
      JSON.stringify(e.issues.map((i) => i.path)) === JSON.stringify(['gateways', 'vips[0].backends[0]']),
  );
});
