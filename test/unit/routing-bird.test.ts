// BIRD configuration text (src/routing/bird.ts): what a gateway and the upstream router get, the checks on bad input,
// and the parsing of real `birdc` replies (captured from BIRD 2.0.12). Pure: the lab runs these configs in BIRD
// (src/lab); here `bird -p` (parse only) also checks them when BIRD is installed.

import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import {
  gatewayBirdConfig,
  parseBfdSessions,
  parseBirdProtocols,
  routerBirdConfig,
  VIP_PROTOCOLS,
} from '../../src/routing/bird.ts';

const VIPS = [
  { vip: '203.0.113.10', family: 4 as const },
  { vip: '2001:db8::10', family: 6 as const },
];
const GW = {
  localIp: '192.168.100.11',
  localIp6: 'fd00:100::11',
  localAs: 65001,
  routerIp: '192.168.100.254',
  routerAs: 65000,
  vips: VIPS,
};
const ROUTER = {
  routerId: '192.168.100.254',
  localAs: 65000,
  peers: [
    { name: 'gw1', ip: '192.168.100.11', as: 65001 },
    { name: 'gw2', ip: '192.168.100.12', as: 65001 },
  ],
  vips: VIPS,
};

test('a gateway starts with its VIP routes disabled and exports only them, with BFD 100 ms x 3', () => {
  const c = gatewayBirdConfig(GW);
  assert.match(
    c,
    /protocol static sluice_vips4 \{\n {2}disabled yes;\n {2}ipv4;\n {2}route 203\.0\.113\.10\/32 blackhole;/,
  );
  assert.match(
    c,
    /protocol static sluice_vips6 \{\n {2}disabled yes;\n {2}ipv6;\n {2}route 2001:db8::10\/128 blackhole;/,
  );
  assert.match(c, /min rx interval 100 ms; min tx interval 100 ms; multiplier 3;/);
  assert.match(c, /bfd on;/);
  assert.match(c, /export where proto = "sluice_vips4"; next hop self;/);
  assert.match(c, /export where proto = "sluice_vips6"; next hop address fd00:100::11;/);
  assert.deepEqual(VIP_PROTOCOLS, { 4: 'sluice_vips4', 6: 'sluice_vips6' });
  assert.doesNotMatch(c, /protocol kernel/, 'a gateway installs nothing in its kernel');
});

test('the router merges the learnt routes into ECMP and accepts only the VIPs', () => {
  const c = routerBirdConfig(ROUTER);
  assert.equal((c.match(/merge paths on/g) ?? []).length, 2);
  assert.match(c, /import where net ~ \[ 203\.0\.113\.10\/32 \]; export none;/);
  assert.match(c, /import where net ~ \[ 2001:db8::10\/128 \]; export none;/);
  assert.match(c, /protocol bgp gw2 from sluice_gateway \{ neighbor 192\.168\.100\.12 as 65001; \}/);
});

test('BFD off and custom timers', () => {
  assert.match(gatewayBirdConfig({ ...GW, bfd: false }), /bfd off;/);
  assert.doesNotMatch(gatewayBirdConfig({ ...GW, bfd: false }), /protocol bfd/);
  assert.match(
    routerBirdConfig({ ...ROUTER, bfd: { intervalMs: 50, multiplier: 5 } }),
    /interval 50 ms;.*multiplier 5;/,
  );
});

test('bad input is refused, naming what and where', () => {
  assert.throws(
    () => gatewayBirdConfig({ ...GW, localIp: '192.168.100' }),
    /not an IPv4 address: 192\.168\.100 \(localIp\)/,
  );
  assert.throws(
    () => gatewayBirdConfig({ ...GW, localIp6: undefined }),
    /localIp6 \(needed for the IPv6 VIPs\)/,
  );
  assert.throws(
    () => gatewayBirdConfig({ ...GW, vips: [{ vip: '::1', family: 4 }] }),
    /not an IPv4 address: ::1 \(vip ::1\)/,
  );
  assert.throws(() => gatewayBirdConfig({ ...GW, localAs: 0 }), /not an AS number: 0 \(localAs\)/);
  assert.throws(() => gatewayBirdConfig({ ...GW, bfd: { intervalMs: 1, multiplier: 3 } }), /BFD interval/);
  assert.throws(() => gatewayBirdConfig({ ...GW, logFile: '/tmp/a";b' }), /log file path/);
  const peers = [{ name: 'gw1; protocol x', ip: '192.168.100.11', as: 65001 }];
  assert.throws(() => routerBirdConfig({ ...ROUTER, peers }), /not a protocol name/);
  assert.throws(
    () => routerBirdConfig({ ...ROUTER, peers: [ROUTER.peers[0]!, ROUTER.peers[0]!] }),
    /two peers named gw1/,
  );
});

test('BIRD itself accepts both configs (bird -p), when installed', (t) => {
  try {
    execFileSync('bird', ['--version'], { stdio: 'ignore' });
  } catch {
    t.skip('bird is not installed (scripts/ensure-deps.sh installs it)');
    return;
  }
  const dir = mkdtempSync(`${tmpdir()}/sluice-bird-`);
  try {
    for (const [name, text] of [
      ['gw.conf', gatewayBirdConfig(GW)],
      ['router.conf', routerBirdConfig(ROUTER)],
      ['nobfd.conf', gatewayBirdConfig({ ...GW, bfd: false })],
    ] as const) {
      writeFileSync(`${dir}/${name}`, text);
      execFileSync('bird', ['-p', '-c', `${dir}/${name}`], { timeout: 10_000 });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('birdc replies parse (captured from BIRD 2.0.12)', () => {
  const protocols = [
    'BIRD 2.0.12 ready.',
    'Name       Proto      Table      State  Since         Info',
    'device1    Device     ---        up     03:00:54.458  ',
    'bfd1       BFD        ---        up     03:00:54.458  ',
    'sluice_vips4 Static     master4    up     03:00:57.475  ',
    'gw1        BGP        ---        start  03:01:01.811  Active        Socket: Connection closed',
    'gw2        BGP        ---        up     2026-12-05 03:00:55  Established   ',
  ].join('\n');
  assert.deepEqual(parseBirdProtocols(protocols), [
    { name: 'device1', proto: 'Device', state: 'up', info: '' },
    { name: 'bfd1', proto: 'BFD', state: 'up', info: '' },
    { name: 'sluice_vips4', proto: 'Static', state: 'up', info: '' },
    { name: 'gw1', proto: 'BGP', state: 'start', info: 'Active        Socket: Connection closed' },
    { name: 'gw2', proto: 'BGP', state: 'up', info: 'Established' },
  ]);
  const bfd = [
    'BIRD 2.0.12 ready.',
    'bfd1:',
    'IP address                Interface  State      Since         Interval  Timeout',
    '192.168.100.11            br0        Down       03:01:01.802    1.000    0.000',
    '192.168.100.12            br0        Up         03:00:55.213    0.100    0.300',
  ].join('\n');
  assert.deepEqual(parseBfdSessions(bfd), [
    { ip: '192.168.100.11', iface: 'br0', state: 'Down' },
    { ip: '192.168.100.12', iface: 'br0', state: 'Up' },
  ]);
});
