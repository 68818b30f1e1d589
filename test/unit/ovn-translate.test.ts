// The OVN -> sluice translation (src/ovn/translate.ts) and the reading of OVN rows (readSnapshot), pure: hand-built OVN rows (fakes of what the NB and SB
// databases hold, in the shape src/ovn/sync.ts reads them) against a desired state with gateways and hosts.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/model/schema.ts';
import { readSnapshot } from '../../src/ovn/sync.ts';
import {
  formatSkipped,
  NO_UNBOUND_PORTS,
  type OvnLoadBalancer,
  type OvnSnapshot,
  parseEndpoint,
  sluiceLbName,
  trackUnbound,
  translate,
} from '../../src/ovn/translate.ts';
import type { JsRow } from '../../src/ovsdb/protocol.ts';
import { Replica } from '../../src/ovsdb/replica.ts';
import { diffConfigs, formatChanges } from '../../src/store/config-diff.ts';

const current = parseConfig({
  nodes: [
    ['gw1', 'gateway', 1],
    ['host1', 'host', 11],
    ['host2', 'host', 12],
  ].map(([name, role, n]) => ({ name, role, tunnelIp: `192.168.100.${n}` })),
  loadBalancers: [
    { name: 'handmade', vip: '203.0.113.50', ports: [80], backends: [] },
    { name: 'ovn-stale-10.0.0.99-80', vip: '10.0.0.99', ports: [80], backends: [] },
  ],
});

function lb(
  name: string,
  vips: Record<string, string>,
  more: Partial<OvnLoadBalancer> = {},
): OvnLoadBalancer {
  return {
    uuid: `uuid-${name}`,
    name,
    vips: new Map(Object.entries(vips)),
    protocol: undefined,
    options: new Map(),
    selectionFields: [],
    ipPortMappings: new Map(),
    healthChecks: [],
    externalIds: new Map([['sluice', 'true']]),
    ...more,
  };
}

const base: OvnSnapshot = {
  loadBalancers: [],
  switchPorts: [
    { name: 'vm1', addresses: ['00:00:00:00:01:01 10.0.1.11'] },
    { name: 'vm2', addresses: ['00:00:00:00:01:02 10.0.1.12 2001:db8::12'] },
    { name: 'vm3', addresses: ['00:00:00:00:01:03 10.0.1.13'] },
    { name: 'rtr', addresses: ['router'] },
  ],
  portBindings: [
    { logicalPort: 'vm1', mac: ['00:00:00:00:01:01 10.0.1.11'], chassis: 'c1', additionalChassis: [] },
    { logicalPort: 'vm2', mac: ['00:00:00:00:01:02 10.0.1.12'], chassis: 'c2', additionalChassis: [] },
    { logicalPort: 'vm3', mac: ['00:00:00:00:01:03 10.0.1.13'], chassis: undefined, additionalChassis: [] },
    { logicalPort: 'vm4', mac: ['00:00:00:00:01:04 10.0.1.14'], chassis: 'c9', additionalChassis: [] },
  ],
  chassis: [
    { uuid: 'c1', name: 'chassis-1', encapIps: ['192.168.100.11'] },
    { uuid: 'c2', name: 'chassis-2', encapIps: ['192.168.100.12'] },
    { uuid: 'c9', name: 'chassis-9', encapIps: ['192.168.200.9'] },
  ],
};

const snap = (...lbs: OvnLoadBalancer[]): OvnSnapshot => ({ ...base, loadBalancers: lbs });

test('parseEndpoint reads OVN VIP and backend text, IPv6 in brackets, and says what is wrong', () => {
  assert.deepEqual(parseEndpoint('10.0.0.10:80'), { address: '10.0.0.10', port: 80 });
  assert.deepEqual(parseEndpoint(' [2001:DB8::1]:443 '), { address: '2001:db8::1', port: 443 });
  assert.deepEqual(parseEndpoint('10.0.0.10'), { address: '10.0.0.10', port: undefined });
  assert.deepEqual(parseEndpoint('2001:db8::1'), { address: '2001:db8::1', port: undefined });
  assert.match(String(parseEndpoint('10.0.0.10:70000')), /out of range/);
  assert.match(String(parseEndpoint('web:80')), /not an address/);
});

test('a selected load balancer becomes one sluice load balancer per VIP, hosts from port bindings', () => {
  const t = translate(
    snap(lb('web', { '10.0.0.10:80': '10.0.1.11:8080,10.0.1.12:8080', '10.0.0.10:443': '10.0.1.11:8443' })),
    current,
  );
  const ovn = t.doc.loadBalancers.filter((l) => l.name.startsWith('ovn-'));
  assert.deepEqual(
    ovn.map((l) => [l.name, l.vip, l.ports, l.backends.map((b) => `${b.address}:${b.port}@${b.host}`)]),
    [
      ['ovn-web-10.0.0.10-443', '10.0.0.10', [443], ['10.0.1.11:8443@host1']],
      ['ovn-web-10.0.0.10-80', '10.0.0.10', [80], ['10.0.1.11:8080@host1', '10.0.1.12:8080@host2']],
    ],
  );
  // The hand-made load balancer stays; the importer's stale one goes; nodes are untouched.
  assert.deepEqual(
    t.doc.loadBalancers.map((l) => l.name).filter((n) => !n.startsWith('ovn-web')),
    ['handmade'],
  );
  assert.deepEqual(t.doc.nodes, parseConfig(t.doc).nodes);
  assert.deepEqual(t.skipped, []);
  const diff = formatChanges(diffConfigs(current, parseConfig(t.doc)));
  assert.match(diff, /\+ load balancer ovn-web-10.0.0.10-80 added/);
  assert.match(diff, /- load balancer ovn-stale-10.0.0.99-80 removed/);
  assert.match(diff, /\+ backend ovn-web-10.0.0.10-80 10.0.1.12:8080 added/);
});

test('only load balancers with external_ids:sluice=true are served', () => {
  const t = translate(
    snap(lb('other', { '10.0.0.20:80': '10.0.1.11:80' }, { externalIds: new Map() })),
    current,
  );
  assert.deepEqual(
    t.doc.loadBalancers.map((l) => l.name),
    ['handmade'],
  );
});

test('a port that moves to another chassis moves its backend to that host; additional_chassis is noted', () => {
  const web = lb('web', { '10.0.0.10:80': '10.0.1.11:8080' });
  const moving = {
    ...base,
    loadBalancers: [web],
    portBindings: base.portBindings.map((b) =>
      b.logicalPort === 'vm1' ? { ...b, additionalChassis: ['c2'] } : b,
    ),
  };
  const during = translate(moving, current);
  assert.equal(
    during.doc.loadBalancers.find((l) => l.name === 'ovn-web-10.0.0.10-80')?.backends[0]?.host,
    'host1',
  );
  assert.match(
    during.notes.map((n) => n.message).join('\n'),
    /vm1 is migrating \(additional_chassis chassis-2\)/,
  );
  const moved = {
    ...moving,
    portBindings: base.portBindings.map((b) => (b.logicalPort === 'vm1' ? { ...b, chassis: 'c2' } : b)),
  };
  const after = translate(moved, current);
  assert.equal(
    after.doc.loadBalancers.find((l) => l.name === 'ovn-web-10.0.0.10-80')?.backends[0]?.host,
    'host2',
  );
});

test('a port that loses its chassis for a moment (a migration switching over) keeps its backend, bounded', () => {
  const web = lb('web', { '10.0.0.10:80': '10.0.1.11:8080' });
  const bind = (chassis: string | undefined): OvnSnapshot => ({
    ...base,
    loadBalancers: [web],
    portBindings: base.portBindings.map((b) => (b.logicalPort === 'vm1' ? { ...b, chassis } : b)),
  });
  const hostOf = (doc: ReturnType<typeof translate>['doc']) =>
    doc.loadBalancers.find((l) => l.name === 'ovn-web-10.0.0.10-80')?.backends[0]?.host;
  const served = parseConfig(translate(bind('c1'), current).doc); // vm1 on host1, as the store has it
  // The daemon saw vm1 bound at t=0, unbound at t=1000.
  const seen = trackUnbound(NO_UNBOUND_PORTS, bind('c1'), 0);
  const gone = trackUnbound(seen, bind(undefined), 1000);
  assert.equal(gone.since.get('vm1'), 1000);
  assert.equal(
    trackUnbound(gone, bind(undefined), 3000).since.get('vm1'),
    1000,
    'unbound since the first sight',
  );
  // Within the hold: kept on host1, noted, and the daemon is told when to look again.
  const during = translate(bind(undefined), served, { ports: gone, now: 3000, holdMs: 5000 });
  assert.equal(hostOf(during.doc), 'host1');
  assert.equal(
    during.doc.loadBalancers.find((l) => l.name === 'ovn-web-10.0.0.10-80')?.backends[0]?.mac,
    '00:00:00:00:01:01',
    'its MAC from the port, as when bound',
  );
  assert.deepEqual(during.skipped, []);
  assert.equal(during.heldUntil, 6000);
  assert.match(
    during.notes.map((n) => n.message).join('\n'),
    /vm1 lost its chassis 2000 ms ago: kept on host1/,
  );
  // Bound on chassis-2 within the hold: one host edit, no removal.
  const moved = translate(bind('c2'), served, {
    ports: trackUnbound(gone, bind('c2'), 3500),
    now: 3500,
    holdMs: 5000,
  });
  assert.equal(hostOf(moved.doc), 'host2');
  assert.equal(
    formatChanges(diffConfigs(served, parseConfig(moved.doc))),
    '~ backend ovn-web-10.0.0.10-80 10.0.1.11:8080 changed: host host1 -> host2',
  );
  // The hold ends: the backend is skipped (removed), as without it.
  const after = translate(bind(undefined), served, { ports: gone, now: 6000, holdMs: 5000 });
  assert.equal(hostOf(after.doc), undefined);
  assert.match(formatSkipped(after.skipped[0]!), /logical port vm1 is not bound to a chassis/);
  assert.equal(after.heldUntil, undefined);
  // Nothing is held without the daemon's hold (--once, --dry-run), nor for a port never seen bound (vm3).
  assert.equal(hostOf(translate(bind(undefined), served).doc), undefined);
  assert.equal(trackUnbound(NO_UNBOUND_PORTS, bind('c1'), 0).since.has('vm3'), false);
});

test('ip_port_mappings names the logical port of a backend before addresses do', () => {
  const web = lb(
    'web',
    { '10.0.0.10:80': '10.0.1.99:80' },
    { ipPortMappings: new Map([['10.0.1.99', 'vm2:10.0.1.1']]) },
  );
  const t = translate(snap(web), current);
  assert.equal(t.doc.loadBalancers.find((l) => l.name.startsWith('ovn-web'))?.backends[0]?.host, 'host2');
});

test("each backend carries its logical port's MAC (config mac): NB addresses, SB mac, ip_port_mappings", () => {
  const only = (snapshot: OvnSnapshot, vips: Record<string, string>, more: Partial<OvnLoadBalancer> = {}) =>
    translate({ ...snapshot, loadBalancers: [lb('web', vips, more)] }, current)
      .doc.loadBalancers.filter((l) => l.name.startsWith('ovn-web'))
      .flatMap((l) => l.backends.map((b) => `${b.address}=${b.mac ?? 'none'}`));
  // NB addresses (vm1), and an IPv6 address of a port with several (vm2's entry lists both families).
  assert.deepEqual(only(base, { '10.0.0.10:80': '10.0.1.11:80,10.0.1.12:80' }), [
    '10.0.1.11=00:00:00:00:01:01',
    '10.0.1.12=00:00:00:00:01:02',
  ]);
  assert.deepEqual(only(base, { '[2001:db8::10]:80': '[2001:db8::12]:80' }), [
    '2001:db8::12=00:00:00:00:01:02',
  ]);
  // A port only the SB describes (no Logical_Switch_Port row): its Port_Binding.mac; written as OVN spells it, lowercase.
  const sbOnly: OvnSnapshot = {
    ...base,
    switchPorts: [],
    portBindings: [
      { logicalPort: 'vm5', mac: ['0A:00:00:00:01:05 10.0.1.15'], chassis: 'c1', additionalChassis: [] },
    ],
  };
  assert.deepEqual(only(sbOnly, { '10.0.0.10:80': '10.0.1.15:80' }), ['10.0.1.15=0a:00:00:00:01:05']);
  // ip_port_mappings names vm2 for an address vm2 does not list: vm2's one MAC.
  assert.deepEqual(
    only(
      base,
      { '10.0.0.10:80': '10.0.1.99:80' },
      { ipPortMappings: new Map([['10.0.1.99', 'vm2:10.0.1.1']]) },
    ),
    ['10.0.1.99=00:00:00:00:01:02'],
  );
  // A port whose addresses give no unicast MAC ("unknown", a multicast MAC): served, without a mac.
  const noMac: OvnSnapshot = {
    ...base,
    switchPorts: [{ name: 'vm6', addresses: ['unknown', '01:00:5e:00:00:06 10.0.1.16'] }],
    portBindings: [{ logicalPort: 'vm6', mac: [], chassis: 'c1', additionalChassis: [] }],
  };
  assert.deepEqual(only(noMac, { '10.0.0.10:80': '10.0.1.16:80' }), ['10.0.1.16=none']);
  // The document validates, and a changed MAC is a changed backend in the diff.
  const t = translate(snap(lb('web', { '10.0.0.10:80': '10.0.1.11:80' })), current);
  const before = parseConfig(t.doc);
  const moved: OvnSnapshot = {
    ...snap(lb('web', { '10.0.0.10:80': '10.0.1.11:80' })),
    switchPorts: [{ name: 'vm1', addresses: ['00:00:00:00:0a:01 10.0.1.11'] }],
    portBindings: [
      { logicalPort: 'vm1', mac: ['00:00:00:00:0a:01 10.0.1.11'], chassis: 'c1', additionalChassis: [] },
    ],
  };
  assert.match(
    formatChanges(diffConfigs(before, parseConfig(translate(moved, before).doc))),
    /~ backend ovn-web-10\.0\.0\.10-80 10\.0\.1\.11:80 changed: mac 00:00:00:00:01:01 -> 00:00:00:00:0a:01/,
  );
});

test('rows sluice cannot serve are skipped with the row and the reason; the rest is served', () => {
  const t = translate(
    snap(
      lb('web', {
        '10.0.0.10:80': '10.0.1.11:80,10.0.1.13:80,10.0.1.14:80,10.0.1.77:80,bogus',
        '10.0.0.11': '10.0.1.11',
        '^vip:^port': '^backends',
      }),
      lb('sctp', { '10.0.0.12:80': '10.0.1.11:80' }, { protocol: 'sctp' }),
      lb('tmpl', { '10.0.0.13:80': '10.0.1.11:80' }, { options: new Map([['template', 'true']]) }),
      lb('clash', { '203.0.113.50:80': '10.0.1.12:80' }),
    ),
    current,
  );
  const lines = t.skipped.map(formatSkipped);
  const expect = [
    /load balancer clash, VIP 203.0.113.50:80: not valid in sluice: .*SLUICE_E_CONFIG_DUPLICATE_LISTENER/,
    /load balancer sctp: protocol sctp is not served/,
    /load balancer tmpl: template load balancers are not served/,
    /load balancer web, VIP \^vip:\^port: template VIPs are not served/,
    /load balancer web, VIP 10.0.0.10:80, backend 10.0.1.13:80: logical port vm3 is not bound to a chassis/,
    /load balancer web, VIP 10.0.0.10:80, backend 10.0.1.14:80: chassis chassis-9 \(encap 192.168.200.9\) is not a sluice host node/,
    /load balancer web, VIP 10.0.0.10:80, backend 10.0.1.77:80: no logical port has this address/,
    /load balancer web, VIP 10.0.0.10:80, backend bogus: "bogus" is not an address/,
    /load balancer web, VIP 10.0.0.11: a VIP without a port is not served/,
  ];
  for (const re of expect)
    assert.ok(
      lines.some((l) => re.test(l)),
      `${re} in\n${lines.join('\n')}`,
    );
  assert.equal(lines.length, expect.length, lines.join('\n'));
  const web = t.doc.loadBalancers.find((l) => l.name === 'ovn-web-10.0.0.10-80');
  assert.deepEqual(
    web?.backends.map((b) => b.address),
    ['10.0.1.11'],
  );
  parseConfig(t.doc); // what is written is valid
});

test('a backend the whole desired state cannot take is dropped alone, naming it', () => {
  // 10.0.1.12 is on host2 through its binding, but a hand-made load balancer has it on host1.
  const withHandmade = parseConfig({
    ...current,
    loadBalancers: [
      {
        name: 'handmade',
        vip: '203.0.113.50',
        ports: [80],
        backends: [{ address: '10.0.1.12', host: 'host1' }],
      },
    ],
  });
  const t = translate(snap(lb('web', { '10.0.0.10:80': '10.0.1.11:80,10.0.1.12:80' })), withHandmade);
  assert.deepEqual(
    t.doc.loadBalancers.find((l) => l.name.startsWith('ovn-web'))?.backends.map((b) => b.address),
    ['10.0.1.11'],
  );
  assert.match(t.skipped.map(formatSkipped).join('\n'), /backend 10.0.1.12:80: .*BACKEND_HOST_CONFLICT/);
});

test('options, selection_fields and health checks that sluice does not honour are noted, not fatal', () => {
  const t = translate(
    snap(
      lb(
        'web',
        { '[2001:db8::10]:80': '[2001:db8::12]:8080' },
        {
          options: new Map([['affinity_timeout', '60']]),
          selectionFields: ['ip_src', 'ip_dst'],
          healthChecks: [{ vip: '[2001:db8::10]:80', options: new Map() }],
        },
      ),
    ),
    current,
  );
  const six = t.doc.loadBalancers.find((l) => l.vip === '2001:db8::10');
  assert.equal(six?.name, 'ovn-web-2001_db8__10-80');
  assert.equal(six?.backends[0]?.host, 'host2');
  assert.deepEqual(
    t.notes.map((n) => n.message.split(' ')[0]),
    ['options:affinity_timeout=60', 'selection_fields', "OVN's"],
  );
});

test('names that do not fit sluice get a stable hashed name', () => {
  const long = sluiceLbName('a load balancer name with spaces', '10.0.0.10', 80);
  assert.match(long, /^ovn-a_load_balancer_name_with_spaces-[0-9a-f]{8}$/);
  assert.equal(long, sluiceLbName('a load balancer name with spaces', '10.0.0.10', 80));
  assert.notEqual(long, sluiceLbName('a load balancer name with spaces', '10.0.0.10', 81));
});

test('translation is idempotent: translating its own result changes nothing', () => {
  const s = snap(lb('web', { '10.0.0.10:80': '10.0.1.11:8080,10.0.1.12:8080' }));
  const once = parseConfig(translate(s, current).doc);
  const twice = parseConfig(translate(s, once).doc);
  assert.deepEqual(diffConfigs(once, twice), []);
});

test('readSnapshot reads OVN rows from replicas and resolves health-check and encap references', () => {
  // Fake replicas: rows as the OVSDB client decodes them (maps as Map, sets as arrays, optional as value/undefined).
  const nb = new Replica();
  const sb = new Replica();
  const row = (table: string, uuid: string, cols: Record<string, unknown>) => ({
    table,
    uuid,
    old: undefined,
    new: { _uuid: uuid, ...cols } as JsRow,
  });
  nb.apply([
    row('Load_Balancer_Health_Check', 'hc1', { vip: '10.0.0.10:80', options: new Map([['interval', '5']]) }),
    row('Load_Balancer', 'lb1', {
      name: 'web',
      vips: new Map([['10.0.0.10:80', '10.0.1.11:8080']]),
      protocol: undefined,
      options: new Map(),
      selection_fields: ['ip_src'],
      ip_port_mappings: new Map(),
      health_check: ['hc1'],
      external_ids: new Map([['sluice', 'true']]),
    }),
    row('Logical_Switch_Port', 'p1', {
      name: 'vm1',
      addresses: ['dynamic'],
      dynamic_addresses: '00:00:00:00:01:01 10.0.1.11',
    }),
  ]);
  sb.apply([
    row('Encap', 'e1', { ip: '192.168.100.11' }),
    row('Chassis', 'c1', { name: 'ch1', encaps: ['e1'] }),
    row('Port_Binding', 'b1', { logical_port: 'vm1', mac: [], chassis: 'c1', additional_chassis: [] }),
  ]);
  const s = readSnapshot(nb, sb);
  assert.deepEqual(s.chassis, [{ uuid: 'c1', name: 'ch1', encapIps: ['192.168.100.11'] }]);
  assert.deepEqual(s.loadBalancers[0]?.healthChecks, [
    { vip: '10.0.0.10:80', options: new Map([['interval', '5']]) },
  ]);
  assert.deepEqual(s.switchPorts[0]?.addresses, ['dynamic', '00:00:00:00:01:01 10.0.1.11']);
  const t = translate(s, current);
  assert.equal(
    t.doc.loadBalancers.find((l) => l.name === 'ovn-web-10.0.0.10-80')?.backends[0]?.host,
    'host1',
  );
});
