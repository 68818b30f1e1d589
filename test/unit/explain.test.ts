// Unit tests of explain (src/explain.ts): the slot, primary, second chance and host a packet takes. Pure; the
// generations come from the real planner.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { explain, type FiveTuple } from '../../src/explain.ts';
import type { Config } from '../../src/model/types.ts';
import { planNext } from '../../src/rollout/planner.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { activeBackend, testConfig, testLb, testNodes } from '../scenarios/configs.ts';

function config(withB: boolean): Config {
  const a = activeBackend('10.0.1.1', 'h1', 8080);
  const b = activeBackend('10.0.1.2', 'h2', 8080);
  return testConfig(
    testNodes(['gw1'], ['h1', 'h2']),
    [
      testLb('web', '10.9.9.9', 'tcp', [80, 443], withB ? [a, b] : [a]),
      testLb('v6', '2001:db8::10', 'udp', [53], [activeBackend('2001:db8::1:1', 'h2')]),
    ],
    60,
  );
}

const zero = (): number => 0;
const g1 = planNext({ config: config(false), latest: null, connections: zero, now: 0 }).next!;
const g2 = planNext({ config: config(true), latest: g1, connections: zero, now: 1 }).next!; // phase 1
const g3 = planNext({ config: config(true), latest: g2, connections: zero, now: 2 }).next!; // phase 2

const tcp = (dport: number, dst = '10.9.9.9'): FiveTuple => ({
  proto: 'tcp',
  src: '203.0.113.7',
  sport: 40000,
  dst,
  dport,
});

function movingSlot(g: Generation): number {
  const p = g.pools.get('web')!;
  return p.second.findIndex((x) => x !== 0xffff);
}

test('stable slot: the slot is the low k bits of the hash; primary, host and no second chance', () => {
  const r = explain(config(false), g1, tcp(80), 0xabcdef13);
  assert.ok(r.found);
  assert.equal(r.lb, 'web');
  assert.equal(r.slot, 3);
  assert.equal(r.bits, 4);
  assert.equal(r.primary?.key, '10.0.1.1:8080');
  assert.equal(r.second, undefined);
  assert.equal(r.phase, 'stable');
  assert.equal(r.host, 'h1');
  assert.equal(r.hostTunnelIp, '192.168.100.11');
  assert.match(r.reason, /web slot 3 of 16 .*stable: 10\.0\.1\.1:8080 on h1/);
});

test('phase 1 and phase 2 slots name both backends', () => {
  const s = movingSlot(g2);
  assert.ok(s >= 0);
  const r2 = explain(config(true), g2, tcp(443), 0x100 + s);
  assert.ok(r2.found);
  assert.equal(r2.slot, s);
  assert.equal(r2.phase, 'phase1');
  assert.equal(r2.primary?.key, '10.0.1.1:8080');
  assert.equal(r2.second?.key, '10.0.1.2:8080');
  assert.match(r2.reason, /phase 1/);
  const r3 = explain(config(true), g3, tcp(443), 0x100 + s);
  assert.ok(r3.found);
  assert.equal(r3.phase, 'phase2');
  assert.equal(r3.primary?.key, '10.0.1.2:8080');
  assert.equal(r3.host, 'h2');
  assert.equal(r3.second?.key, '10.0.1.1:8080');
  assert.match(r3.reason, /chain of previous owners: 10\.0\.1\.1:8080 on h1/);
  assert.deepEqual(
    r3.chain.map((m) => m.key),
    ['10.0.1.1:8080'],
    'the walk from the primary host: the previous owner',
  );
  assert.deepEqual(
    r2.chain.map((m) => m.key),
    ['10.0.1.2:8080'],
  );
});

test('IPv6 VIP in another spelling; a hash above 2^31 still takes its low bits', () => {
  const t: FiveTuple = { proto: 'udp', src: '2001:db8::99', sport: 5353, dst: '2001:DB8:0::10', dport: 53 };
  const r = explain(config(false), g1, t, 0xfffffffe);
  assert.ok(r.found);
  assert.equal(r.lb, 'v6');
  assert.equal(r.slot, 14);
  assert.equal(r.primary?.key, '[2001:db8::1:1]:*');
});

test('no load balancer: a clear reason', () => {
  const r = explain(config(false), g1, tcp(8443), 1);
  assert.equal(r.found, false);
  assert.equal(r.reason, 'no load balancer for 10.9.9.9:8443/tcp');
  const u = explain(config(false), g1, { ...tcp(80), proto: 'udp' }, 1);
  assert.equal(u.reason, 'no load balancer for 10.9.9.9:80/udp');
  const v6 = explain(config(false), g1, { ...tcp(80), dst: '2001:db8::11' }, 1);
  assert.equal(v6.reason, 'no load balancer for [2001:db8::11]:80/tcp');
});

test('a load balancer not yet published, and a bad hash, are explained', () => {
  const c = config(false);
  const extra: Config = {
    ...c,
    loadBalancers: [...c.loadBalancers, { ...c.loadBalancers[0], name: 'new', vip: '10.9.9.20' }],
  };
  const r = explain(extra, g1, tcp(80, '10.9.9.20'), 1);
  assert.equal(r.found, false);
  assert.match(r.reason, /new .* is not in generation 1 yet/);
  const bad = explain(c, g1, tcp(80), -1);
  assert.equal(bad.found, false);
  assert.match(bad.reason, /hash must be an integer/);
});
