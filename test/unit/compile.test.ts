// The compiler's registry and builders: cookies, LB ids, and properties the golden files cannot state. Pure.
// Node facts are fake (test/scenarios/fake-facts.ts).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_ICMP_RATE } from '../../src/compile/icmp.ts';
import { compileNodeParts, joinParts } from '../../src/compile/incremental.ts';
import { compileNode, type NodeFacts } from '../../src/compile/index.ts';
import {
  COOKIE_KINDS,
  type CookieKind,
  cookie,
  decodeCookie,
  ICMP_METER_ID,
  isSluiceCookie,
  lbIds,
  PRIO,
  T,
} from '../../src/compile/registry.ts';
import type { BridgeState } from '../../src/flowset/types.ts';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import { SluiceError } from '../../src/model/errors.ts';
import type { Config } from '../../src/model/types.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { activeBackend, testConfig, testLb, testNodes } from '../scenarios/configs.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';

test('cookies round-trip and carry the sluice tag', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...(Object.keys(COOKIE_KINDS) as CookieKind[])),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      (kind, lb, a, b) => {
        const c = cookie(kind, lb, a, b);
        assert.ok(isSluiceCookie(c));
        assert.deepEqual(decodeCookie(c), { kind, lb, a, b });
      },
    ),
  );
  assert.equal(decodeCookie(0x1234n), undefined);
  assert.equal(isSluiceCookie(0n), false);
});

test('LB ids: in 1..0xfffe, unique, independent of input order, stable when other LBs come and go', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 40 }),
      (names) => {
        const ids = lbIds(names);
        const rev = lbIds([...names].reverse());
        assert.deepEqual([...ids].sort(), [...rev].sort());
        const values = [...ids.values()];
        assert.equal(new Set(values).size, values.length);
        for (const v of values) assert.ok(v >= 1 && v <= 0xfffe);
      },
    ),
  );
  // Pinned: ids must not change between releases (they travel in Geneve metadata between nodes).
  const pinned = lbIds(['web', 'web6', 'dns']);
  assert.deepEqual(Object.fromEntries(pinned), { dns: 0x32d7, web: 0xb349, web6: 0x6027 });
  const more = lbIds(['web', 'web6', 'dns', 'alpha', 'zeta']);
  for (const [n, id] of pinned) assert.equal(more.get(n), id);
});

const config: Config = testConfig(testNodes(['gw1'], ['host1', 'host2']), [
  testLb('dns', '203.0.113.53', 'udp', [53], [activeBackend('10.0.1.11', 'host1')]),
]);
const gen: Generation = {
  number: 1,
  createdAt: 0,
  pools: new Map([
    [
      'dns',
      {
        lb: 'dns',
        bits: 4,
        members: [{ key: '10.0.1.11:*', address: '10.0.1.11', port: undefined, host: 'host1' }],
        primary: new Uint16Array(16).fill(0).map((_, i) => (i === 3 ? NO_OWNER : 0)),
        second: new Uint16Array(16).fill(NO_OWNER),
        phase: new Uint8Array(16),
        since: new Float64Array(16),
      },
    ],
  ]),
};

test('every flow carries a sluice cookie that decodes', () => {
  for (const n of config.nodes) {
    for (const b of compileNode(config, gen, fakeFacts(config, n.name)).bridges.values()) {
      for (const f of b.flows) assert.ok(decodeCookie(f.cookie), `${f.match} ${f.cookie.toString(16)}`);
    }
  }
});

test('a slot without a primary has no flow (its packets hit the drop); UDP walks the chain before it commits', () => {
  const gw = compileNode(config, gen, fakeFacts(config, 'gw1')).bridges.get('br-int')!;
  const slots = gw.flows.filter((f) => f.table === T.GW_SLOTS && decodeCookie(f.cookie)?.kind === 'GW_SLOT');
  assert.equal(slots.length, 15);
  assert.ok(!slots.some((f) => f.match.endsWith('reg1=0x3')));
  const host = compileNode(config, gen, fakeFacts(config, 'host1')).bridges.get('br-int')!;
  assert.ok(!host.flows.some((f) => decodeCookie(f.cookie)?.kind === 'SECOND_CHANCE'), 'no TCP LB');
  const jumps = host.flows.filter((f) => decodeCookie(f.cookie)?.kind === 'UDP_WALK');
  assert.deepEqual(
    jumps.map((f) => f.match),
    ['ct_state=+new+trk,udp,reg3=0/0x10'],
    'a new UDP datagram without FLAG_COMMIT walks the chain',
  );
  const commit = host.flows.find((f) => decodeCookie(f.cookie)?.kind === 'CT_COMMIT')!;
  assert.ok(!commit.match.includes('tcp_flags'), 'no SYN in UDP');
  assert.ok(commit.match.includes('reg3=0x10/0xffff0010'), `UDP commits only FLAG_COMMIT: ${commit.match}`);
  // The end of the walk: on the primary member's host it commits (a stable slot takes no hop); on another host
  // the datagram goes back to the member's host with FLAG_COMMIT.
  const ends = (h: typeof host, kind: CookieKind) =>
    h.flows.filter(
      (f) => f.table === T.CHAIN && f.priority === PRIO.WALK_END && decodeCookie(f.cookie)?.kind === kind,
    );
  const local = ends(host, 'UDP_WALK_COMMIT');
  assert.equal(local.length, 1);
  assert.ok(local[0].actions.startsWith('ct(commit,'), local[0].actions);
  assert.equal(ends(host, 'UDP_WALK_RETURN').length, 0);
  const host2 = compileNode(config, gen, fakeFacts(config, 'host2')).bridges.get('br-int')!;
  assert.equal(ends(host2, 'UDP_WALK_COMMIT').length, 0);
  const back = ends(host2, 'UDP_WALK_RETURN');
  assert.equal(back.length, 1);
  assert.equal(
    back[0].actions,
    'set_field:0x10/0x10->tun_metadata1,set_field:192.168.100.11->tun_dst,set_field:0->in_port,output:' +
      back[0].actions.split('output:')[1],
  );
});

test('compileNode rejects facts that do not fit the config', () => {
  assert.throws(
    () => compileNode(config, gen, { ...fakeFacts(config, 'host1'), role: 'gateway' }),
    (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_COMPILE_FACTS',
  );
  assert.throws(
    () => compileNode(config, gen, { ...fakeFacts(config, 'host1'), vms: {} }),
    (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_COMPILE_FACTS',
  );
});

test('a member that left the config and lost its VM is skipped on its host (its plan position outlives it)', () => {
  const pool = gen.pools.get('dns')!;
  const gone = { key: '10.0.1.99:*', address: '10.0.1.99', port: undefined, host: 'host1' };
  const withGone: Generation = {
    ...gen,
    pools: new Map([['dns', { ...pool, members: [...pool.members, gone] }]]),
  };
  const host = compileNode(config, withGone, fakeFacts(config, 'host1')).bridges.get('br-int')!;
  const commits = host.flows.filter((f) => decodeCookie(f.cookie)?.kind === 'CT_COMMIT');
  assert.equal(commits.length, 1, 'only the configured member is committed to');
});

test('a host whose facts name a conntrack zone uses it in every ct() and nothing else changes', () => {
  const facts = fakeFacts(config, 'host1');
  const zoned = { ...facts, ctZone: 65535 };
  const text = (f: typeof facts) =>
    compileNode(config, gen, f)
      .bridges.get('br-int')!
      .flows.map((x) => `${x.table} ${x.priority} ${x.match} ${x.actions}`);
  const plain = text(facts);
  const other = text(zoned);
  const cts = other.filter((l) => l.includes('ct('));
  assert.ok(cts.length >= 3, 'CT_OUT lookup, TUN_IN lookup and commit');
  for (const l of cts) assert.match(l, /zone=65535[,)]/, l);
  assert.ok(!other.some((l) => /zone=1[,)]/.test(l)), 'no flow left in zone 1');
  assert.deepEqual(
    other.map((l) => l.replace(/zone=65535/g, 'zone=1')),
    plain,
    'only the zone differs from the default',
  );
  // The incremental compiler (the agent's path) agrees with the full one.
  const parts = compileNodeParts(config, gen, zoned);
  const inc = joinParts(parts.bridges.get('br-int')!);
  assert.deepEqual(
    inc.flows.map((x) => `${x.table} ${x.priority} ${x.match} ${x.actions}`).sort(),
    [...other].sort(),
  );
});

test("sluice-follow-moves: a host hands over a moved backend's connections; off, nothing changes", () => {
  const text = (f: NodeFacts) =>
    compileNode(config, gen, f)
      .bridges.get('br-int')!
      .flows.map((x) => `${x.table} ${x.priority} ${x.match} ${x.actions}`);
  const ip = (n: string) => config.nodes.find((x) => x.name === n)!.tunnelIp;
  for (const name of ['host1', 'host2']) {
    const plain = text(fakeFacts(config, name));
    const on = { ...fakeFacts(config, name), followMoves: true };
    const moved = text(on);
    // Only additions: every flow of the plain host is still there, the same.
    assert.deepEqual(
      moved.filter((l) => plain.includes(l)),
      plain,
    );
    const added = moved.filter((l) => !plain.includes(l));
    // The incremental compiler (the agent's path) agrees with the full one.
    const inc = joinParts(compileNodeParts(config, gen, on).bridges.get('br-int')!);
    assert.deepEqual(
      inc.flows.map((x) => `${x.table} ${x.priority} ${x.match} ${x.actions}`).sort(),
      [...moved].sort(),
    );
    // Both hosts: a reply handed back (VNI 0x5102) is looked up with NAT; CT_OUT sends what has no connection to
    // MOVED_BACK (learned flows only, else dropped); a new non-SYN TCP packet looks in MOVED_FWD before the chain.
    assert.ok(added.includes(`${T.TUN_IN} ${PRIO.HIGH} ip,tun_id=0x5102 ct(table=${T.CT_OUT},zone=1,nat)`));
    assert.ok(added.includes(`${T.CT_OUT} ${PRIO.LOW} ct_state=-est+trk,ip resubmit(,${T.MOVED_BACK})`));
    assert.ok(added.includes(`${T.MOVED_BACK} ${PRIO.DROP}  drop`));
    assert.ok(
      added.includes(
        `${T.CT_IN} ${PRIO.MOVED_LOOKUP} ct_state=+new+trk,tcp,tcp_flags=-syn resubmit(,${T.MOVED_FWD})`,
      ),
    );
    assert.ok(added.includes(`${T.MOVED_FWD} ${PRIO.DROP}  resubmit(,${T.CHAIN})`));
    const out = added.filter((l) => l.startsWith(`${T.CT_IN} ${PRIO.MOVED} `));
    const learn = added.filter((l) => l.includes('tun_id=0x5101'));
    if (name === 'host2') {
      // dns's backend 10.0.1.11 is on host1: host2's established connections to it (were it to have any) go there.
      assert.deepEqual(out, [
        `${T.CT_IN} ${PRIO.MOVED} ct_state=-new+est+trk,ct_mark=0x32d70000/0xffff0000,ip,nw_dst=10.0.1.11 ` +
          `set_field:0x5101->tun_id,set_field:${ip('host1')}->tun_dst,set_field:0->in_port,output:${on.ports.geneve}`,
      ]);
      assert.deepEqual(learn, [], 'host2 has no backend to hand packets to');
    } else {
      assert.deepEqual(out, [], 'host1 keeps its own backend');
      // Its backend's handed-over packets (TCP and UDP) learn the way back to the sender and are delivered.
      assert.equal(learn.filter((l) => l.includes('nw_dst=10.0.1.11')).length, 2);
      const tcp = learn.find((l) => l.startsWith(`${T.TUN_IN} ${PRIO.HIGH} tcp,`))!;
      assert.match(
        tcp,
        /learn\(table=31,.*NXM_OF_IP_SRC\[\]=NXM_OF_IP_DST\[\].*load:0x5102->NXM_NX_TUN_ID\[\],load:NXM_NX_TUN_IPV4_SRC\[\]->NXM_NX_TUN_IPV4_DST\[\]/,
      );
      assert.match(tcp, /learn\(table=23,.*NXM_NX_REG2\[16\.\.31\]=NXM_NX_TUN_METADATA0\[16\.\.31\]/);
      assert.match(tcp, /output:\d+$/);
    }
  }
});

test("sluice-follow-moves: a moved member's packets without state on its new host go to its old host", () => {
  // web's backend 10.0.1.12 moved from host2 to host1 (the plan names its old host while that host may hold its
  // connections); web is TCP, so host1 sends what the gateway gives it for that member, unknown here, back to host2.
  const web = testLb('web', '203.0.113.10', 'tcp', [80], [activeBackend('10.0.1.12', 'host1', 80)]);
  const cfg = testConfig(testNodes(['gw1'], ['host1', 'host2']), [web]);
  const member = { key: '10.0.1.12:80', address: '10.0.1.12', port: 80, host: 'host1' };
  const pool = (m: typeof member & { movedFrom?: string }) => ({
    lb: 'web',
    bits: 4,
    members: [m],
    primary: new Uint16Array(16),
    second: new Uint16Array(16).fill(NO_OWNER),
    phase: new Uint8Array(16),
    since: new Float64Array(16),
  });
  const g = (m: typeof member & { movedFrom?: string }): Generation => ({
    number: 1,
    createdAt: 0,
    pools: new Map([['web', pool(m)]]),
  });
  const movedG = g({ ...member, movedFrom: 'host2' });
  const fromFlows = (facts: NodeFacts, gg: Generation) =>
    compileNode(cfg, gg, facts)
      .bridges.get('br-int')!
      .flows.filter((f) => decodeCookie(f.cookie)?.kind === 'MOVED_FROM')
      .map((x) => `${x.table} ${x.priority} ${x.match} ${x.actions}`);
  const on = (name: string) => ({ ...fakeFacts(cfg, name), followMoves: true });
  const host2Ip = cfg.nodes.find((x) => x.name === 'host2')!.tunnelIp;
  const expected = [
    `${T.MOVED_FWD} ${PRIO.LOW} reg2=0xb3490000/0xffff0000,reg3=0/0xffff0000 ` +
      `set_field:${host2Ip}->tun_dst,set_field:0->in_port,output:${on('host1').ports.geneve}`,
  ];
  assert.deepEqual(fromFlows(on('host1'), movedG), expected);
  // The incremental compiler (the agent's path) agrees.
  const inc = joinParts(compileNodeParts(cfg, movedG, on('host1')).bridges.get('br-int')!);
  assert.deepEqual(
    inc.flows
      .filter((f) => decodeCookie(f.cookie)?.kind === 'MOVED_FROM')
      .map((x) => `${x.table} ${x.priority} ${x.match} ${x.actions}`),
    expected,
  );
  assert.deepEqual(fromFlows(on('host2'), movedG), [], 'the old host keeps its MOVED_OUT flows only');
  assert.deepEqual(fromFlows(fakeFacts(cfg, 'host1'), movedG), [], 'only with sluice-follow-moves');
  assert.deepEqual(fromFlows(on('host1'), g(member)), [], 'a member that did not move has none');
});

test("a gateway's ICMP error copies pass one meter first (default 1000/s, facts.icmpRate, 0 = none); echo does not", () => {
  const gw = fakeFacts(config, 'gw1');
  const int = (f: NodeFacts) => compileNode(config, gen, f).bridges.get('br-int')!;
  const kinds = (b: BridgeState, kind: string) =>
    b.flows.filter((f) => decodeCookie(f.cookie)?.kind === kind);
  const meterSpec = (rate: number) => `pktps burst bands=type=drop rate=${rate} burst_size=${rate}`;
  for (const [facts, rate] of [
    [gw, DEFAULT_ICMP_RATE],
    [{ ...gw, icmpRate: 50 }, 50],
  ] as const) {
    const b = int(facts);
    assert.deepEqual(b.meters, [{ meterId: ICMP_METER_ID, spec: meterSpec(rate) }]);
    const copies = kinds(b, 'GW_ICMP');
    assert.equal(copies.length, 2, 'IPv4 destination unreachable and time exceeded');
    for (const f of copies) assert.ok(f.actions.startsWith(`meter:${ICMP_METER_ID},set_field:`), f.actions);
    for (const f of kinds(b, 'GW_ICMP_ECHO')) assert.ok(!f.actions.includes('meter:'), f.actions);
    // The incremental compiler (the agent's path) installs the same meter and flows.
    const inc = joinParts(compileNodeParts(config, gen, facts).bridges.get('br-int')!);
    assert.deepEqual(inc.meters, b.meters);
    assert.deepEqual(kinds(inc, 'GW_ICMP'), copies);
  }
  const off = int({ ...gw, icmpRate: 0 });
  assert.equal(off.meters, undefined, 'icmpRate 0: no meter');
  for (const f of kinds(off, 'GW_ICMP')) assert.ok(f.actions.startsWith('set_field:'), f.actions);
  const host = int({ ...fakeFacts(config, 'host1'), icmpRate: 50 });
  assert.ok(!(host.meters ?? []).some((m) => m.meterId === ICMP_METER_ID), 'hosts have no ICMP meter');
});

test("a gateway's br-phy sends a VIP to br-int only in frames addressed to its own MAC; other MACs are dropped", () => {
  const two = testConfig(testNodes(['gw1', 'gw2'], ['host1']), [
    testLb('web', '203.0.113.10', 'tcp', [80, 443], [activeBackend('10.0.1.11', 'host1')]),
    testLb('web6', '2001:db8::10', 'tcp', [80], [activeBackend('fd00:0:1::11', 'host1')]),
  ]);
  const plan = (members: readonly { address: string }[]) => ({
    bits: 1,
    members: members.map((m) => ({
      key: `${m.address}:*`,
      address: m.address,
      port: undefined,
      host: 'host1',
    })),
    primary: new Uint16Array(2),
    second: new Uint16Array(2).fill(NO_OWNER),
    phase: new Uint8Array(2),
    since: new Float64Array(2),
  });
  const g: Generation = {
    number: 1,
    createdAt: 0,
    pools: new Map(two.loadBalancers.map((l) => [l.name, { lb: l.name, ...plan(l.backends) }])),
  };
  const macs = new Set<string>();
  for (const name of ['gw1', 'gw2']) {
    const facts = fakeFacts(two, name);
    macs.add(facts.phyMac);
    const phy = compileNode(two, g, facts).bridges.get('br-phy')!.flows;
    const vip = phy.filter((f) => decodeCookie(f.cookie)?.kind === 'PHY_VIP');
    const other = phy.filter((f) => decodeCookie(f.cookie)?.kind === 'PHY_VIP_NOT_MINE');
    assert.deepEqual(
      vip.map((f) => `${f.priority} ${f.match} ${f.actions}`),
      [
        `100 ip,in_port=${facts.ports.eth0},dl_dst=${facts.phyMac},nw_dst=203.0.113.10 actions`,
        `100 ipv6,in_port=${facts.ports.eth0},dl_dst=${facts.phyMac},ipv6_dst=2001:db8::10 actions`,
      ].map((s) => s.replace('actions', `output:${facts.ports.phyToInt}`)),
      'one flow per VIP (not per port), for frames to this gateway only',
    );
    // The same VIP in a frame for any other MAC (a switch flooding an unknown unicast): dropped, below the above.
    assert.deepEqual(
      other.map((f) => `${f.priority} ${f.match} ${f.actions}`),
      vip.map((f) => `${PRIO.LOW} ${f.match.replace(`dl_dst=${facts.phyMac},`, '')} drop`),
    );
    assert.ok(PRIO.LOW < PRIO.NORMAL && PRIO.LOW > PRIO.PHY_DEFAULT, 'above NORMAL switching, below ours');
  }
  assert.equal(macs.size, 2, 'each gateway matches its own MAC');
});
