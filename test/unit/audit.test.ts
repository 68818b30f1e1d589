// Unit tests of the hash audit (src/audit.ts): committed slots vs explain's. Pure; the "committed" connections are
// made up here from the model itself (the e2e test in test/e2e/dataplane.test.ts takes them from a real host).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  auditCommittedSlots,
  type CommittedConnection,
  formatAudit,
  parseTracedTunnel,
  sampleTuples,
  traceFlow,
} from '../../src/audit.ts';
import { initialGeneration } from '../../src/cli/explain.ts';
import { readConfigFile } from '../../src/cli/store-commands.ts';
import { lbIds } from '../../src/compile/registry.ts';
import { tupleHash } from '../../src/explain.ts';

const config = readConfigFile('examples/lb.yaml');
const generation = initialGeneration(config);
const webId = lbIds(config.loadBalancers.map((l) => l.name)).get('web')!;

function committed(n: number, slotOf = (hash: number) => hash & 0xff): CommittedConnection[] {
  return Array.from({ length: n }, (_, i) => {
    const tuple = {
      proto: 'tcp' as const,
      src: '198.51.100.7',
      sport: 20000 + i,
      dst: '203.0.113.10',
      dport: 80,
    };
    const h = tupleHash(config.hashMode, tuple);
    assert.ok(h.known);
    return { tuple, mark: ((webId << 16) | slotOf(h.hash)) >>> 0 };
  });
}

test('connections committed in the slot explain computes all agree', () => {
  const r = auditCommittedSlots(config, generation, committed(50));
  assert.equal(r.checked, 50);
  assert.equal(r.agree, 50);
  assert.equal(r.disagree.length, 0);
  assert.match(formatAudit(r), /50 agree with explain, 0 disagree/);
});

test('a gateway that hashed differently is named, connection by connection', () => {
  const r = auditCommittedSlots(
    config,
    generation,
    committed(50, (h) => (h + 1) & 0xff),
  );
  assert.equal(r.agree, 0);
  assert.equal(r.disagree.length, 50);
  assert.match(
    formatAudit(r, 2),
    /DISAGREE tcp 198\.51\.100\.7:20000 -> 203\.0\.113\.10:80 \(web\)[^\n]*\n.*\n {2}\.\.\. and 48 more/,
  );
});

test('the kernel datapath in dp_hash mode cannot be audited, and says why', () => {
  const r = auditCommittedSlots(config, generation, committed(3), 'system');
  assert.equal(r.checked, 0);
  assert.match(formatAudit(r), /audit impossible: .*random value at boot/);
});

test('connections of a VIP the config no longer has are skipped with a reason', () => {
  const c = committed(1)[0];
  const r = auditCommittedSlots(config, generation, [{ ...c, tuple: { ...c.tuple, dst: '203.0.113.99' } }]);
  assert.equal(r.skipped, 1);
  assert.match(formatAudit(r), /skipped 1: no load balancer/);
});

test('a trace is read from the set_field actions it printed; a dropped packet has no tunnel', () => {
  const trace = ` 0. tcp,nw_dst=203.0.113.10,tp_dst=80, priority 100
    set_field:0xb349->reg0
    group:1359006844
     -> no live bucket
10. reg0=0xb349,reg1=0x5, priority 100
    set_field:0xb3490005->tun_metadata0
    set_field:0x20000->tun_metadata1
    set_field:192.168.100.11->tun_dst
    output:3

Final flow: unchanged
Datapath actions: drop`;
  assert.deepEqual(parseTracedTunnel(trace), { lbSlot: 0xb3490005, host: '192.168.100.11' });
  assert.equal(parseTracedTunnel('Datapath actions: drop'), undefined);
  assert.equal(
    traceFlow(
      { proto: 'udp', src: '2001:db8::1', sport: 5, dst: '2001:db8::10', dport: 53 },
      'int-to-phy',
      0xab,
    ),
    'in_port=int-to-phy,udp6,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::10,udp_src=5,udp_dst=53,dp_hash=0xab',
  );
});

test('sample tuples cover every VIP:port, deterministically', () => {
  const a = sampleTuples(config, 20);
  assert.deepEqual(a, sampleTuples(config, 20));
  const targets = new Set(a.map((t) => `${t.dst}:${t.dport}`));
  assert.equal(targets.size, config.loadBalancers.flatMap((l) => l.ports).length);
});

test('one generation audited against another config: the lookups kept for the generation are not reused', () => {
  // The agent audits every few seconds against the applied generation; what it looks connections up in is kept per
  // generation object, and must follow the config it was asked with.
  assert.equal(auditCommittedSlots(config, generation, committed(5)).agree, 5);
  const moved = {
    ...config,
    loadBalancers: config.loadBalancers.map((lb) =>
      lb.name === 'web' ? { ...lb, vip: '203.0.113.99' } : lb,
    ),
  };
  const r = auditCommittedSlots(moved, generation, committed(5));
  assert.equal(r.agree, 0);
  assert.equal(r.skipped, 5, 'web is no longer at 203.0.113.10');
  assert.equal(auditCommittedSlots(config, generation, committed(5)).agree, 5);
});
