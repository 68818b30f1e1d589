// The data plane on REAL Open vSwitch (root): compiler + applier driving a small lab (src/lab `labUp`, namespace
// prefix `slt-dp-`): 1 gateway, 2 hosts with one backend each, 1 client, an ECMP router. Real kernel TCP from the
// client namespace (the lab's conn-runner) to the VIP: gateway -> Geneve -> host -> conntrack + DNAT -> backend, and
// replies from the VIP straight back through the underlay (direct return). The lab is torn down at the end (only
// its own namespaces and PIDs); traffic stays inside the lab's namespaces.
//
// What is shown:
// - TCP over IPv4 and IPv6 VIPs reaches the backend the slot table names; replies come from the VIP; the host's
//   direct-return flow carries them (the gateway never sees a reply).
// - A move of every slot A -> B through the phases (P,N) -> (N,P) keeps established connections alive by second
//   chance (the second-chance flow counts packets); the negative control (same move without a second chance)
//   breaks them.
// - Geneve from an address that is not a configured node is dropped; a host hands a packet it has no state for to
//   the owner of a later lane only (the hop counter grows; a packet at the last lane is dropped).
// - The applier: idempotent (changed: false), a change of slot bits modifies the dp_hash groups in place (group
//   modify with the full bucket list; same group ids; connections live through it), a rejected bundle leaves the
//   switch exactly as it was, foreign flows and groups are untouched, and everything is restored after an
//   ovs-vswitchd restart.

import * as assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseMeterStats } from '../../src/agent/flow-counts.ts';
import { readCommittedConnections } from '../../src/agent/node-ops.ts';
import { auditCommittedSlots, formatAudit, type HashFunction } from '../../src/audit.ts';
import { auditGateway, auditHost, initialGeneration } from '../../src/cli/explain.ts';
import { compileNode } from '../../src/compile/index.ts';
import { decodeCookie, ICMP_METER_ID, lbIds, T } from '../../src/compile/registry.ts';
import { explain, tupleHash } from '../../src/explain.ts';
import type { Flow, FlowSet } from '../../src/flowset/types.ts';
import { ovsHashSymmetricL3L4, ovsUserspaceDpHash } from '../../src/hashing/ovs.ts';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import { nsRun } from '../../src/lab/exec.ts';
import { packetsByKind as flowPacketsByKind } from '../../src/lab/flow-counters.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { labDown, labUp } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import { SluiceError } from '../../src/model/errors.ts';
import { parseIp } from '../../src/model/ip.ts';
import { backendKey, type Config } from '../../src/model/types.ts';
import { applyBridge, applyFlowSet, readInstalled, revalidate } from '../../src/openflow/applier.ts';
import type { Runner } from '../../src/openflow/runner.ts';
import type { Generation, PlanMember, PoolPlan } from '../../src/rollout/types.ts';
import { bridgeSnapshot, sendGeneve, withForeignFlow } from './helpers/geneve.ts';
import { cleanPaths, echoTransfer, flushPathMtu, lockClientMtu, pathState } from './helpers/pmtu.ts';

const PREFIX = 'slt-dp-';
const BITS = 4;
const SIZE = 2 ** BITS;
const A = 'host1-b1';
const B = 'host2-b1';
/** packetsByKind key of CHAIN's catch-all drop (a packet no lane is left for). */
const CHAIN_DROP = `DROP@${T.CHAIN}`;
const isRoot = process.getuid?.() === 0;

let lab: Lab;
let config: Config;
let genNo = 0;

/** Plan members of a load balancer, in canonical (backend key) order. */
function members(lb: string): PlanMember[] {
  const l = config.loadBalancers.find((x) => x.name === lb)!;
  return l.backends
    .map((b) => ({ key: backendKey(b), address: b.address, port: b.port, host: b.host }))
    .sort((x, y) => (x.key < y.key ? -1 : 1));
}

/** Index of a lab backend (by name) in a load balancer's members. */
function idx(lb: string, backend: string): number {
  const b = lab.backend(backend);
  return members(lb).findIndex((m) => m.address === b.ip || m.address === b.ip6);
}

/** A generation where every slot of every LB has the same (primary, second) backends; `primary` may depend on the
 *  slot. */
function gen(primary: string | ((slot: number) => string), second: string | undefined): Generation {
  const pools = new Map<string, PoolPlan>();
  for (const l of config.loadBalancers) {
    const owner = typeof primary === 'string' ? () => primary : primary;
    pools.set(l.name, {
      lb: l.name,
      bits: BITS,
      members: members(l.name),
      primary: Uint16Array.from({ length: SIZE }, (_, s) => idx(l.name, owner(s))),
      second: new Uint16Array(SIZE).fill(second ? idx(l.name, second) : NO_OWNER),
      phase: new Uint8Array(SIZE).fill(second ? 1 : 0),
      since: new Float64Array(SIZE),
    });
  }
  genNo += 1;
  return { number: genNo, createdAt: Date.now(), pools };
}

function nodes(): string[] {
  return config.nodes.map((n) => n.name);
}

function compile(name: string, g: Generation): FlowSet {
  return compileNode(config, g, lab.compilerFacts(name));
}

/** Applies a generation on every node (hosts first, then gateways), then revalidates. Returns per node `changed`. */
async function applyAll(g: Generation): Promise<Record<string, boolean>> {
  const out: Record<string, boolean> = {};
  const order = [...config.nodes].sort((a, b) => (a.role === b.role ? 0 : a.role === 'host' ? -1 : 1));
  for (const n of order) {
    const r = await applyFlowSet(lab.node(n.name), compile(n.name, g));
    out[n.name] = r.changed;
  }
  await Promise.all(nodes().map((n) => revalidate(lab.node(n))));
  return out;
}

/** n_packets summed per cookie kind on one bridge (sluice flows only), after a revalidator pass. */
function packetsByKind(node: string, bridge = 'br-int'): Promise<Record<string, number>> {
  return flowPacketsByKind([lab.node(node)], bridge);
}

/** Long-lived connections to web (A or B answers), echoing every 100 ms: one black-holed fails within 2 s. */
function webTraffic(count: number): Promise<Traffic> {
  return startTraffic(lab, {
    vip: '203.0.113.10',
    port: 80,
    count,
    intervalMs: 100,
    timeoutMs: 2000,
    expectBackends: [A, B],
  });
}

/** `fs` without the flows whose cookie kind `drop` names (the negative controls' switched-off features). */
function withoutFlows(fs: FlowSet, drop: (kind: string) => boolean): FlowSet {
  const keep = (f: Flow) => !drop(decodeCookie(f.cookie)?.kind ?? '');
  return {
    ...fs,
    bridges: new Map([...fs.bridges].map(([br, st]) => [br, { ...st, flows: st.flows.filter(keep) }])),
  };
}

async function snapshot(node: string, bridge: string): Promise<string> {
  return bridgeSnapshot(lab.node(node), bridge);
}

describe('data plane on real OVS', { skip: !isRoot && 'needs root' }, () => {
  before(async () => {
    lab = await labUp(
      {
        prefix: PREFIX,
        gateways: 1,
        hosts: 2,
        backendsPerHost: 1,
        clients: 1,
        ipv6: true,
        vips: [
          { name: 'web', vip: '203.0.113.10', family: 4, protocol: 'tcp', port: 80, backends: [A, B] },
          { name: 'web6', vip: '2001:db8::10', family: 6, protocol: 'tcp', port: 80, backends: [A, B] },
          { name: 'dgram', vip: '203.0.113.53', family: 4, protocol: 'udp', port: 80, backends: [A, B] },
        ],
      },
      { replace: true },
    );
    config = lab.sluiceConfig({ hashMode: 'dp_hash', slotBits: BITS });
  });

  after(async () => {
    if (lab) await labDown(PREFIX);
  });

  test('applier installs the complete state; applying it again sends nothing', async () => {
    const g = gen(A, undefined);
    const first = await applyAll(g);
    assert.deepEqual(first, { gw1: true, host1: true, host2: true });
    const again = await applyAll(g);
    assert.deepEqual(again, { gw1: false, host1: false, host2: false });
    // Installed == compiled, per bridge.
    for (const n of nodes()) {
      for (const [br, want] of compile(n, g).bridges) {
        const have = await readInstalled(lab.node(n), br);
        assert.equal(have.owned.flows.length, want.flows.length, `${n} ${br}`);
        assert.equal(have.owned.groups.length, want.groups.length, `${n} ${br}`);
      }
    }
  });

  test('TCP to IPv4 and IPv6 VIPs: gateway -> Geneve -> host -> DNAT -> backend; replies by direct return', async () => {
    await applyAll(gen(A, undefined));
    const before4 = await packetsByKind('host1');
    const gwBefore = await packetsByKind('gw1');
    const gwPhyBefore = await packetsByKind('gw1', 'br-phy');
    const t4 = await startTraffic(lab, { vip: '203.0.113.10', port: 80, count: 10, expectBackends: [A, B] });
    const t6 = await startTraffic(lab, { vip: '2001:db8::10', port: 80, count: 5, expectBackends: [A, B] });
    try {
      await t4.waitOpened(10);
      await t6.waitOpened(5);
      await sleep(1000); // a few echoes on every connection
      const c4 = await t4.report();
      const c6 = await t6.report();
      assert.equal(c4.broken + c4.failed + c6.broken + c6.failed, 0);
      assert.ok(c4.echoes > 0 && c6.echoes > 0, 'data flows both ways');
      // Every slot names A: every connection is on A.
      assert.equal(c4.perBackend[A]?.opened, 10);
      assert.equal(c6.perBackend[A]?.opened, 5);
      const after4 = await packetsByKind('host1');
      const gwAfter = await packetsByKind('gw1');
      assert.ok(after4.CT_COMMIT - (before4.CT_COMMIT ?? 0) >= 15, 'each connection committed on host1');
      assert.ok(after4.DIRECT_RETURN - (before4.DIRECT_RETURN ?? 0) > 15, 'replies left by direct return');
      assert.ok(
        gwAfter.GW_SLOT - (gwBefore.GW_SLOT ?? 0) > 15,
        'requests went through the gateway slot table',
      );
    } finally {
      await t4.stop();
      await t6.stop();
    }
    // Replies never pass the gateway: its br-phy sends VIP-bound packets to br-int and what LOCAL sends (the
    // tunnelled requests) to eth0; a reply routed through the gateway would cross its NORMAL flow (ARP aside).
    const gwPhyAll = await packetsByKind('gw1', 'br-phy');
    const normal = (gwPhyAll.PHY_NORMAL ?? 0) - (gwPhyBefore.PHY_NORMAL ?? 0);
    assert.ok(normal < 10, `${normal} packets other than requests crossed the gateway`);
    assert.ok(
      (gwPhyAll.PHY_LOCAL_OUT ?? 0) - (gwPhyBefore.PHY_LOCAL_OUT ?? 0) > 30,
      'tunnelled requests left by eth0',
    );
    const returned = (await packetsByKind('host1')).DIRECT_RETURN - (before4.DIRECT_RETURN ?? 0);
    assert.ok(returned > 30, `${returned} replies left host1 by direct return`);
  });

  test('slots moved A -> B with (P,N) -> (N,P) phases: established connections survive by second chance', async () => {
    await applyAll(gen(A, undefined));
    const t = await webTraffic(20);
    try {
      await t.waitOpened(20);
      const sc0 = (await packetsByKind('host2')).SECOND_CHANCE ?? 0;
      await applyAll(gen(A, B)); // phase 1: primary A, second chance B
      await sleep(500);
      await applyAll(gen(B, A)); // phase 2: primary B, second chance A
      await sleep(4000); // > timeoutMs: a black-holed connection would have failed by now
      const c = await t.report();
      assert.equal(c.broken, 0, `broken: ${JSON.stringify(c.brokenByReason)}`);
      assert.equal(c.perBackend[A]?.alive, 20);
      const sc = ((await packetsByKind('host2')).SECOND_CHANCE ?? 0) - sc0;
      assert.ok(sc > 20, `host2 handed ${sc} packets to host1 by second chance`);
      // New connections go to the new primary.
      t.open(5);
      await t.waitOpened(25);
      const c2 = await t.report();
      assert.equal(c2.perBackend[B]?.opened, 5);
      assert.equal(c2.broken, 0);
    } finally {
      await t.stop();
    }
  });

  test('negative control: the same move without a second chance breaks established connections', async () => {
    await applyAll(gen(B, undefined));
    const t = await webTraffic(10);
    try {
      await t.waitOpened(10);
      assert.equal((await t.report()).perBackend[B]?.opened, 10);
      await applyAll(gen(A, undefined)); // straight to A, no second chance
      await sleep(4000);
      const c = await t.report();
      assert.equal(c.broken, 10, `every connection on B breaks: ${JSON.stringify(c.brokenByReason)}`);
    } finally {
      await t.stop();
    }
  });

  test('Geneve from an address that is not a configured node is dropped; the hop counter only grows', async () => {
    await applyAll(gen(A, undefined));
    const fabric = lab.facts.fabricNetns;
    const lbId = lbIds(config.loadBalancers.map((l) => l.name)).get('web')!;
    const send = async () => {
      // Ten crafted Geneve packets (all three sluice options, inner TCP SYN to the VIP for member A's slot 0) from
      // 192.168.100.99 in the fabric namespace to host1's tunnel endpoint.
      const syn = { lbId, counter: 0, flags: 0x02, firstPort: 40000 }; // member 0, no second chance
      await sendGeneve(fabric, '192.168.100.99', '192.168.100.11', syn);
      await sleep(300);
      return packetsByKind('host1');
    };
    await nsRun(fabric, 'ip', ['addr', 'add', '192.168.100.99/24', 'dev', 'br0']);
    try {
      // Resolve host1's MAC first: packets queued behind an unresolved neighbour are mostly dropped.
      await nsRun(fabric, 'ping', ['-c', '1', '-W', '2', '192.168.100.11']);
      const before = await packetsByKind('host1');
      const after = await send();
      assert.ok(
        (after.TUN_REJECT ?? 0) - (before.TUN_REJECT ?? 0) >= 10,
        `dropped by the unknown-source flow: ${JSON.stringify({ before, after })}`,
      );
      assert.equal(after.CT_COMMIT ?? 0, before.CT_COMMIT ?? 0, 'nothing committed');
      // Positive control: the same packets from an address that IS a configured node get through to conntrack.
      const saved = config;
      config = {
        ...config,
        nodes: [...config.nodes, { name: 'trusted99', role: 'gateway', tunnelIp: '192.168.100.99' }],
      };
      try {
        await applyFlowSet(lab.node('host1'), compile('host1', gen(A, undefined)));
        const before2 = await packetsByKind('host1');
        const after2 = await send();
        assert.ok(
          (after2.CT_COMMIT ?? 0) - (before2.CT_COMMIT ?? 0) >= 1,
          'a trusted source reaches conntrack',
        );
        assert.equal(after2.TUN_REJECT ?? 0, before2.TUN_REJECT ?? 0);
        // The hop counter only grows. Slot 0 has primary B (host2) in lane 0 and previous owner A (host1) in lane 1.
        // Bare ACKs nobody has state for, sent to host2 with counter 0: host2 hands them to lane 1's host (host1)
        // with counter 2; host1 (no state, no lane >= 2) drops them. With counter 2, host2 drops them itself.
        for (const h of ['host1', 'host2']) await applyFlowSet(lab.node(h), compile(h, gen(B, A)));
        const ack = async (counter: number) => {
          // Source ports nobody has used: no conntrack entry anywhere.
          const firstPort = 41000 + counter * 100;
          const ack = { lbId, counter, secondHost: '192.168.100.11', flags: 0x10, firstPort };
          await sendGeneve(fabric, '192.168.100.99', '192.168.100.12', ack);
          await sleep(300);
          return [await packetsByKind('host1'), await packetsByKind('host2')];
        };
        const hop = (c: Record<string, number>) => c.CHAIN_HOP ?? 0;
        const [b1, b2] = [await packetsByKind('host1'), await packetsByKind('host2')];
        const [c1, c2] = await ack(0);
        assert.ok(hop(c2) - hop(b2) >= 10, `host2 handed the ACKs on ${JSON.stringify({ b2, c2 })}`);
        assert.equal(hop(c1), hop(b1), 'host1 did not hand them on again (no lane after its own)');
        assert.ok(
          (c1[CHAIN_DROP] ?? 0) - (b1[CHAIN_DROP] ?? 0) >= 10,
          `host1 dropped them ${JSON.stringify({ b1, c1 })}`,
        );
        const [, d2] = await ack(2);
        assert.equal(
          hop(d2),
          hop(c2),
          `counter past the last lane: not handed on ${JSON.stringify({ c2, d2 })}`,
        );
        assert.ok((d2[CHAIN_DROP] ?? 0) - (c2[CHAIN_DROP] ?? 0) >= 10, 'counter past the last lane: dropped');
      } finally {
        config = saved;
        await applyFlowSet(lab.node('host1'), compile('host1', gen(A, undefined)));
        await applyFlowSet(lab.node('host2'), compile('host2', gen(A, undefined)));
      }
    } finally {
      await nsRun(fabric, 'ip', ['addr', 'del', '192.168.100.99/24', 'dev', 'br0'], { allowFail: true });
    }
  });

  // A gateway forwards only frames addressed to it (br-phy's PHY_VIP flows match its MAC): the router is given a wrong
  // MAC for gw1, so the fabric switch floods those frames (unknown unicast) to every node, and gw1 must drop its copy
  // (PHY_VIP_NOT_MINE counts it) instead of answering or forwarding it. With the right MAC the VIP answers again.
  test('gateway: VIP frames addressed to another MAC (flooded by the switch) are dropped, not forwarded', async (t) => {
    await applyAll(gen(A, undefined));
    const gw = lab.node('gw1');
    const ping = async () =>
      (
        await nsRun(lab.clients[0].netns, 'ping', ['-n', '-c', '3', '-i', '0.2', '-w', '2', '203.0.113.10'], {
          allowFail: true,
        })
      ).code;
    const notMine = async () => (await packetsByKind('gw1', 'br-phy')).PHY_VIP_NOT_MINE ?? 0;
    const routerMac = (mac: string) =>
      lab.routerExec('ip', [
        'neigh',
        'replace',
        gw.tunnelIp,
        'lladdr',
        mac,
        'dev',
        'eth0',
        'nud',
        'permanent',
      ]);
    try {
      const n0 = await notMine();
      await routerMac('02:00:00:00:99:99');
      const wrong = await ping();
      const dropped = (await notMine()) - n0;
      await routerMac(gw.brPhyMac);
      const right = await ping();
      t.diagnostic(
        `ping with a wrong MAC: exit ${wrong}, ${dropped} frames dropped by gw1; right MAC: exit ${right}`,
      );
      assert.equal(wrong, 1, 'a frame for another MAC is not answered');
      assert.ok(dropped >= 3, `gw1 dropped the flooded copies (${dropped})`);
      assert.equal(right, 0, 'frames for its own MAC are');
    } finally {
      await routerMac(gw.brPhyMac);
    }
  });

  test('UDP VIP: datagrams reach the slot owner through host conntrack; answers come from the VIP', async () => {
    await applyAll(gen((slot) => (slot % 2 === 0 ? A : B), undefined));
    const client = lab.clients[0].netns;
    // 40 sockets, one datagram each; connect() makes the kernel accept answers only from the VIP:port.
    const script = `
      const dgram = require('node:dgram');
      const seen = {};
      let left = 40;
      for (let i = 0; i < 40; i++) {
        const s = dgram.createSocket('udp4');
        const done = (what) => { seen[what] = (seen[what] ?? 0) + 1; s.close(); if (--left === 0) console.log(JSON.stringify(seen)); };
        const timer = setTimeout(() => done('timeout'), 3000);
        s.on('message', (m) => { clearTimeout(timer); done(m.toString().trim()); });
        s.connect(80, '203.0.113.53', () => s.send('hello'));
      }`;
    const before = await packetsByKind('host1');
    const r = await nsRun(client, process.execPath, ['-e', script]);
    const seen = JSON.parse(r.stdout.trim()) as Record<string, number>;
    assert.equal(seen.timeout ?? 0, 0, JSON.stringify(seen));
    assert.ok((seen[A] ?? 0) >= 5 && (seen[B] ?? 0) >= 5, `spread ${JSON.stringify(seen)}`);
    const after = await packetsByKind('host1');
    // A stable slot's new UDP flow is committed where its (empty) chain walk ends, on the primary's host.
    const commits = (c: Record<string, number>) => (c.CT_COMMIT ?? 0) + (c.UDP_WALK_COMMIT ?? 0);
    assert.equal(commits(after) - commits(before), seen[A], 'one commit per UDP flow on host1');
    assert.equal((after.UDP_WALK_RETURN ?? 0) - (before.UDP_WALK_RETURN ?? 0), 0, 'stable slots: no hop');
  });

  // The gateway's datapath flows: in dp_hash mode they match only the hash bits a slot reads, so they stay bounded by
  // the slot count (at most 2^(bits+1) per recirculation, docs/design/ovs-facts.md) whatever the number of
  // connections: 1,000 connections over 16 slots must leave at most 2 x 16 + 8. Negative control: fields mode hashes
  // in userspace, one datapath flow per connection, so the same count exceeds the bound (300 connections).
  for (const mode of ['fields', 'dp_hash'] as const) {
    test(`${mode} mode: connections spread over the slot owners; datapath flows on the gateway`, async (t) => {
      config = { ...config, hashMode: mode };
      const count = mode === 'dp_hash' ? 1000 : 300;
      const bound = 2 * SIZE + 8;
      try {
        await applyAll(gen((slot) => (slot % 2 === 0 ? A : B), undefined));
        await lab.node('gw1').appctl(['dpctl/del-flows']);
        // Conntrack entries of earlier tests (TIME_WAIT) would blur the ct_mark check below.
        await lab.node('host1').appctl(['dpctl/flush-conntrack']);
        const tr = await startTraffic(lab, {
          vip: '203.0.113.10',
          port: 80,
          count,
          rate: 400,
          expectBackends: [A, B],
        });
        try {
          await tr.waitOpened(count);
          await sleep(500);
          const c = await tr.report();
          assert.equal(c.broken + c.failed, 0);
          const a = c.perBackend[A]?.opened ?? 0;
          const b = c.perBackend[B]?.opened ?? 0;
          assert.ok(a >= 10 && b >= 10, `spread ${A}=${a} ${B}=${b}`);
          const dp = (await lab.node('gw1').appctl(['dpctl/dump-flows'])).stdout
            .split('\n')
            .filter((l) => l.includes('recirc_id'));
          const tcpFlows = dp.filter((l) => l.includes('proto=6')).length;
          // Every connection host1 committed is marked lb id << 16 | slot, with slots host1's backend owns (even).
          const ct = (await lab.node('host1').appctl(['dpctl/dump-conntrack'])).stdout
            .split('\n')
            .filter((l) => l.includes('dst=203.0.113.10') && l.includes('zone=1'));
          const marks = ct.map((l) => Number(/mark=(\w+)/.exec(l)?.[1] ?? Number.NaN));
          const webId = lbIds(config.loadBalancers.map((l) => l.name)).get('web')!;
          assert.ok(marks.length >= a, `${marks.length} conntrack entries for ${a} connections`);
          assert.ok(
            marks.every((m) => m >>> 16 === webId && (m & 0xffff) % 2 === 0 && (m & 0xffff) < SIZE),
            `marks ${marks}`,
          );
          assert.ok(new Set(marks).size > 1, 'marks carry the slot of each connection');
          t.diagnostic(
            `${mode}: ${count} connections -> ${A}=${a} ${B}=${b}; gateway datapath flows ${dp.length} ` +
              `(TCP ${tcpFlows}), bound for ${SIZE} slots ${bound}`,
          );
          if (mode === 'dp_hash') assert.ok(dp.length <= bound, `${dp.length} datapath flows > ${bound}`);
          else
            assert.ok(tcpFlows >= count && tcpFlows > bound, `fields: one flow per connection (${tcpFlows})`);
        } finally {
          await tr.stop();
        }
      } finally {
        config = { ...config, hashMode: 'dp_hash' };
        await applyAll(gen(A, undefined));
      }
    });
  }

  // explain = the switch, on real connections (docs/design/hash.md): a planner-made 256-slot generation, 200 IPv4
  // and 100 IPv6 connections per hash mode. Each connection's backend (its greeting) must be the one explain names
  // for its 5-tuple, and the slot its host committed it in (conntrack mark, set from the gateway's tunnel
  // metadata) explain's slot: `sluice audit`'s own code path, against both hosts. Negative control: the same
  // audit with a hash whose basis is off by one must disagree.
  for (const mode of ['fields', 'dp_hash'] as const) {
    test(`${mode} mode: explain predicts the backend and slot of 300 real connections`, async (t) => {
      const saved = config;
      config = lab.sluiceConfig({ hashMode: mode, slotBits: 8 });
      try {
        const g = initialGeneration(config);
        await applyAll(g);
        await Promise.all(['host1', 'host2'].map((h) => lab.node(h).appctl(['dpctl/flush-conntrack'])));
        const opened: { vip: string; backend: string; localPort: number }[] = [];
        for (const [vip, count] of [
          ['203.0.113.10', 200],
          ['2001:db8::10', 100],
        ] as const) {
          const tr = await startTraffic(lab, {
            vip,
            port: 80,
            count,
            rate: 300,
            verbose: true,
            expectBackends: [A, B],
          });
          try {
            await tr.waitOpened(count);
            opened.push(...tr.runners.flatMap((r) => r.openEvents.map((e) => ({ vip, ...e }))));
          } finally {
            await tr.stop();
          }
        }
        assert.equal(opened.length, 300);
        const client = lab.clients[0];
        let agreeBackend = 0;
        for (const o of opened) {
          const src = o.vip.includes(':') ? client.ip6 : client.ip;
          const tuple = { proto: 'tcp' as const, src, sport: o.localPort, dst: o.vip, dport: 80 };
          const h = tupleHash(mode, tuple);
          assert.ok(h.known);
          const e = explain(config, g, tuple, h.hash);
          assert.ok(e.found);
          const b = lab.backend(o.backend);
          if (e.primary?.address === b.ip || e.primary?.address === b.ip6) agreeBackend++;
        }
        const audits = await Promise.all(
          ['host1', 'host2'].map((h) => auditHost(lab.node(h), config, g, 'netdev')),
        );
        const checked = audits.reduce((n, a) => n + a.checked, 0);
        const agree = audits.reduce((n, a) => n + a.agree, 0);
        const offByOne: HashFunction = (m, tuple) => {
          const k = {
            proto: tuple.proto,
            src: parseIp(tuple.src)!.bytes,
            dst: parseIp(tuple.dst)!.bytes,
            sport: tuple.sport,
            dport: tuple.dport,
          };
          const hash = m === 'fields' ? ovsHashSymmetricL3L4(k, 1) : ovsUserspaceDpHash(k, 1);
          return { known: true, hash, how: 'basis 1 (wrong on purpose)' };
        };
        const wrong = await Promise.all(
          ['host1', 'host2'].map(async (h) =>
            auditCommittedSlots(config, g, await readCommittedConnections(lab.node(h)), 'netdev', offByOne),
          ),
        );
        const wrongAgree = wrong.reduce((n, a) => n + a.agree, 0);
        t.diagnostic(
          `${mode}: backend as explained ${agreeBackend}/300; committed slot = explain's slot ${agree}/${checked}; ` +
            `basis off by one: ${wrongAgree}/${checked}`,
        );
        assert.equal(agreeBackend, 300, 'every connection reached the backend explain names');
        assert.equal(checked, 300, 'the hosts committed every connection with a slot');
        assert.equal(agree, 300, audits.map((a) => formatAudit(a)).join('\n'));
        assert.ok(wrongAgree < 30, `a wrong hash must disagree: ${wrongAgree}/${checked} agree`);
        // The gateway side: `sluice audit --gateway` traces 100 sample packets through gw1 (ofproto/trace).
        const traced = await auditGateway(lab.node('gw1'), config, g, 'netdev', {
          bridge: 'br-int',
          inPort: 'int-to-phy',
          sample: 100,
        });
        const tracedOk = traced.checks.filter((c) => c.ok).length;
        t.diagnostic(`${mode}: gateway trace as explained ${tracedOk}/${traced.checks.length}`);
        assert.equal(tracedOk, 100, traced.checks.find((c) => !c.ok)?.why);
      } finally {
        config = saved;
        await applyAll(gen(A, undefined));
      }
    });
  }

  // Path MTU discovery through a VIP (docs/design/icmp.md). The router's route to the client is locked at a smaller
  // MTU (1400 IPv4, 1280 IPv6) than the backends' 1500, so the router answers the backend's full-size echo segments
  // with fragmentation-needed / packet-too-big addressed to the VIP. A 256 KiB echo completes only if the gateway
  // copies that error to the hosts and the right host's conntrack hands it, rewritten, to the backend. Negative
  // control first (the backends would otherwise remember the smaller MTU): without the gateway's ICMP flows it stalls.
  // Each transfer ends with a reset: a stalled echo server left in CLOSE-WAIT keeps retransmitting full-size segments
  // for minutes, and once the ICMP flows are back the next of those learns the path MTU for the backend before the
  // transfer under test starts (seen in about half of the runs before the reset: the transfers then needed no
  // discovery at all). Before each half the backends must hold no socket with the client and no cached path MTU.
  test('ICMP: PMTU discovery and ping of the VIP work for IPv4 and IPv6; without the ICMP flows they fail', async (t) => {
    const g = gen((slot) => (slot % 2 === 0 ? A : B), undefined);
    await applyAll(g);
    const client = lab.clients[0];
    const unlock = await lockClientMtu((cmd, args) => lab.routerExec(cmd, args), client);
    const backendNs = [A, B].map((b) => lab.backend(b).netns);
    const paths = () => Promise.all(backendNs.map((ns) => pathState(ns, client.ip, client.ip6)));
    const clean = (when: string) => cleanPaths(backendNs, client, when);
    const transfer = (vip: string, total: number, ms: number) => echoTransfer(client.netns, vip, total, ms);
    const vips = ['203.0.113.10', '2001:db8::10'];
    const gw = lab.node('gw1');
    /** Exit codes of one ping (2 requests, 2 s deadline) to each VIP from the client. */
    const ping = () =>
      Promise.all(
        vips.map(async (vip) => {
          const r = await nsRun(client.netns, 'ping', ['-n', '-c', '2', '-i', '0.2', '-w', '2', vip], {
            allowFail: true,
          });
          return r.code;
        }),
      );
    try {
      const full = compile('gw1', g);
      const withoutIcmp = withoutFlows(full, (kind) => kind.startsWith('GW_ICMP'));
      await applyFlowSet(gw, withoutIcmp);
      await revalidate(gw);
      await clean('before the negative control');
      assert.deepEqual(await ping(), [1, 1], 'without the echo flows the VIPs do not answer ping');
      // Both at once: each waits out its 6 s (IPv4 and IPv6 to their own VIP, no shared path state).
      const stalled = await Promise.all(vips.map((vip) => transfer(vip, 256 * 1024, 6000)));
      for (const [i, vip] of vips.entries()) {
        const r = stalled[i]!;
        t.diagnostic(`without ICMP flows ${vip}: ${JSON.stringify(r)}`);
        assert.equal(r.done, false, `${vip}: the transfer must stall without the ICMP path`);
      }
      await clean('after the negative control');
      await applyFlowSet(gw, full);
      await revalidate(gw);
      const gwBefore = await packetsByKind('gw1');
      const hostsBefore = await flowPacketsByKind([lab.node('host1'), lab.node('host2')], 'br-int');
      for (const vip of vips) {
        const r = await transfer(vip, 256 * 1024, 15000);
        t.diagnostic(`with ICMP flows ${vip}: ${JSON.stringify(r)}`);
        assert.equal(
          r.done,
          true,
          `${vip}: PMTU discovery must let the transfer complete: ${JSON.stringify(r)}`,
        );
      }
      // The backend that served each transfer learned the router's MTU from the delivered error (none had one).
      const learned = await paths();
      t.diagnostic(`path MTU cached by ${A}, ${B}: ${JSON.stringify(learned.map((p) => [p.mtu4, p.mtu6]))}`);
      assert.ok(learned.some((p) => p.mtu4 === 1400) && learned.some((p) => p.mtu6 === 1280), 'PMTU learned');
      assert.deepEqual(await ping(), [0, 0], 'the gateway answers ping for its VIPs (IPv4 and IPv6)');
      const gwAfter = await packetsByKind('gw1');
      const hostsAfter = await flowPacketsByKind([lab.node('host1'), lab.node('host2')], 'br-int');
      const delta = (a: Record<string, number>, b: Record<string, number>, k: string) =>
        (a[k] ?? 0) - (b[k] ?? 0);
      t.diagnostic(
        `gateway ICMP errors copied ${delta(gwAfter, gwBefore, 'GW_ICMP')}, hosts looked up ` +
          `${delta(hostsAfter, hostsBefore, 'ICMP_IN')}, delivered ${delta(hostsAfter, hostsBefore, 'ICMP_DELIVER')}`,
      );
      assert.ok(delta(gwAfter, gwBefore, 'GW_ICMP') >= 2, 'the gateway forwarded the ICMP errors');
      assert.ok(delta(hostsAfter, hostsBefore, 'ICMP_DELIVER') >= 2, 'a host delivered them to the backend');
    } finally {
      await unlock();
      await Promise.all(backendNs.map((ns) => flushPathMtu(ns)));
      await applyAll(gen(A, undefined));
    }
  });

  // The gateway's ICMP meter (docs/design/icmp.md "The meter"): hping3 in the client namespace sends ICMP
  // fragmentation-needed to a VIP at ~1000/s for ~2 s, through a gateway whose meter is set to 100/s. The meter must
  // drop the excess before the copies (its band counts them) and each host may receive at most rate x (seconds + 2)
  // copies (the bucket starts full). Positive side: some copies pass.
  test('ICMP: a flood of errors to a VIP is limited by the gateway meter before it is copied to the hosts', async (t) => {
    const RATE = 100;
    const g = gen(A, undefined);
    await applyAll(g);
    const gw = lab.node('gw1');
    await applyFlowSet(gw, compileNode(config, g, { ...lab.compilerFacts('gw1'), icmpRate: RATE }));
    const hosts = [lab.node('host1'), lab.node('host2')];
    const meter = async () =>
      parseMeterStats((await gw.ofctl('br-int', ['meter-stats', `meter=${ICMP_METER_ID}`])).stdout).get(
        ICMP_METER_ID,
      ) ?? { packets: 0, dropped: 0 };
    try {
      const m0 = await meter();
      const in0 = await Promise.all(hosts.map((h) => flowPacketsByKind([h], 'br-int')));
      const t0 = Date.now();
      const args = ['-1', '-C', '3', '-K', '4', '-c', '2000', '-i', 'u1000', '-q', '203.0.113.10'];
      await nsRun(lab.clients[0].netns, 'hping3', args, { allowFail: true, timeoutMs: 30_000 });
      const seconds = (Date.now() - t0) / 1000;
      const m1 = await meter();
      const in1 = await Promise.all(hosts.map((h) => flowPacketsByKind([h], 'br-int')));
      const copies = in1.map((c, i) => (c.ICMP_IN ?? 0) - (in0[i].ICMP_IN ?? 0));
      const seen = m1.packets - m0.packets;
      const dropped = m1.dropped - m0.dropped;
      t.diagnostic(
        `ICMP flood ${seconds.toFixed(1)} s: ${seen} errors reached the meter (rate ${RATE}/s), ${dropped} dropped; ` +
          `copies per host ${copies.join(', ')} (bound ${Math.round(RATE * (seconds + 2))})`,
      );
      assert.ok(seen >= 1000, `the flood reached the gateway's meter: ${seen}`);
      assert.ok(
        dropped >= seen - RATE * (seconds + 2),
        `the meter dropped the excess: ${dropped} of ${seen}`,
      );
      for (const c of copies) {
        assert.ok(
          c > 0 && c <= RATE * (seconds + 2),
          `copies per host within rate x (seconds + 2): ${copies}`,
        );
      }
    } finally {
      await applyAll(gen(A, undefined));
    }
  });

  // ICMP errors from backends go back to the client by direct return (host CT_OUT, ICMP_RETURN): the UDP VIP is
  // pointed at port 9 of its backend, where nothing listens, so the backend answers a datagram with port
  // unreachable; conntrack relates it to the flow and restores the VIP:80 in the outer source and the embedded header,
  // and the client's connected socket gets ECONNREFUSED (the kernel matches the embedded header to the socket).
  // Negative control: without the hosts' ICMP_RETURN flows the error is dropped and the client only times out.
  test('ICMP from a backend: port unreachable reaches the client from the VIP; without ICMP_RETURN it does not', async (t) => {
    const saved = config;
    config = {
      ...config,
      loadBalancers: config.loadBalancers.map((l) =>
        l.name === 'dgram' ? { ...l, backends: l.backends.map((b) => ({ ...b, port: 9 })) } : l,
      ),
    };
    const client = lab.clients[0];
    /** One datagram from a connected socket to the UDP VIP: 'refused', 'answer' or 'timeout' (1.5 s). */
    const probe = async () => {
      const script = `const s=require('dgram').createSocket('udp4');
        const done=(w)=>{console.log(w);process.exit(0)};setTimeout(()=>done('timeout'),1500);
        s.on('error',(e)=>done(e.code==='ECONNREFUSED'?'refused':e.code));s.on('message',()=>done('answer'));
        s.connect(80,'203.0.113.53',()=>s.send('hello'));`;
      return (await nsRun(client.netns, process.execPath, ['-e', script])).stdout.trim();
    };
    const icmpReturn = async () => (await flowPacketsByKind([lab.node('host1')], 'br-int')).ICMP_RETURN ?? 0;
    // What reaches the client: tcpdump's one ICMP line (source and type) while a probe runs.
    const captured = async (run: () => Promise<string>) => {
      const cap = nsRun(client.netns, 'timeout', ['2.5', 'tcpdump', '-n', '-c', '1', '-i', 'eth0', 'icmp'], {
        allowFail: true,
      });
      await sleep(500);
      const got = await run();
      return { got, line: (await cap).stdout.trim() };
    };
    try {
      const g = gen(A, undefined);
      await applyAll(g);
      const host = lab.node('host1');
      const full = compile('host1', g);
      const withoutReturn = withoutFlows(full, (kind) => kind === 'ICMP_RETURN');
      await applyFlowSet(host, withoutReturn);
      const off = await captured(probe);
      await applyFlowSet(host, full);
      const r0 = await icmpReturn();
      const on = await captured(probe);
      const returned = (await icmpReturn()) - r0;
      t.diagnostic(
        `without ICMP_RETURN: ${JSON.stringify(off)}; with it: ${JSON.stringify(on)}, ${returned} returned`,
      );
      assert.equal(off.got, 'timeout', 'without the ICMP_RETURN flows no error reaches the client');
      assert.equal(on.got, 'refused', "the backend's port unreachable reaches the client's socket");
      assert.ok(
        on.line.includes(`IP 203.0.113.53 > ${client.ip}: ICMP 203.0.113.53 udp port 80 unreachable`),
        `the error comes from the VIP and names VIP:80: ${on.line}`,
      );
      assert.ok(returned >= 1, `host1 returned it by direct return (ICMP_RETURN counted ${returned})`);
    } finally {
      config = saved;
      await applyAll(gen(A, undefined));
    }
  });

  test('applier: slot bits 4 -> 5 -> 4 modify the dp_hash group in place (full bucket list) under traffic', async () => {
    await applyAll(gen(A, undefined));
    /** Every slot on A, with 2^bits slots. */
    const genBits = (bits: number): Generation => {
      const g = gen(A, undefined);
      const pools = new Map<string, PoolPlan>();
      for (const [lb, p] of g.pools) {
        const size = 2 ** bits;
        pools.set(lb, {
          ...p,
          bits,
          primary: new Uint16Array(size).fill(p.primary[0]),
          second: new Uint16Array(size).fill(NO_OWNER),
          phase: new Uint8Array(size),
          since: new Float64Array(size),
        });
      }
      return { ...g, pools };
    };
    const gw = lab.node('gw1');
    const groupIds = async () =>
      (await readInstalled(gw, 'br-int')).owned.groups.map((g) => g.groupId).sort((a, b) => a - b);
    const ids = await groupIds();
    assert.ok(ids.length >= 2, `one dp_hash group per LB: ${ids}`);
    const t = await webTraffic(10);
    try {
      await t.waitOpened(10);
      for (const bits of [5, BITS]) {
        const r = await applyFlowSet(gw, compile('gw1', genBits(bits)));
        await revalidate(gw);
        const lines = r.bridges.find((b) => b.bridge === 'br-int')!.bundle;
        const groupLines = lines.filter((l) => l.startsWith('group '));
        assert.equal(groupLines.length, ids.length, JSON.stringify(groupLines));
        assert.ok(
          groupLines.every(
            (l) => l.startsWith('group modify ') && l.includes(`NXM_NX_DP_HASH[0..${bits - 1}]`),
          ),
          JSON.stringify(groupLines),
        );
        assert.deepEqual(await groupIds(), ids, 'same groups, none re-created');
        const dump = (await gw.ofctl('br-int', ['dump-groups'])).stdout;
        assert.match(dump, new RegExp(`NXM_NX_DP_HASH\\[0\\.\\.${bits - 1}\\]`));
        await sleep(2500); // > timeoutMs
        assert.equal((await t.report()).broken, 0, `bits ${bits}`);
      }
      t.open(5);
      await t.waitOpened(15);
      assert.equal((await t.report()).broken + (await t.report()).failed, 0);
    } finally {
      await t.stop();
      await applyAll(gen(A, undefined));
    }
  });

  test('applier: a rejected bundle leaves the switch exactly as it was and says why', async () => {
    const g = gen(A, undefined);
    await applyAll(g);
    const want = compile('gw1', gen(B, undefined)).bridges.get('br-int')!; // 32 changed slot flows ...
    // ... plus a flow that jumps to a group that does not exist (ovs-vswitchd rejects it), or one it cannot parse.
    const badGroup = withForeignFlow(want, 'group:1359999999');
    const badSyntax = withForeignFlow(want, 'output:nonsense');
    for (const bad of [badGroup, badSyntax]) {
      const before = await snapshot('gw1', 'br-int');
      await assert.rejects(applyBridge(lab.node('gw1'), 'br-int', bad), (e: unknown) => {
        assert.ok(e instanceof SluiceError);
        assert.equal(e.code, 'SLUICE_E_OPENFLOW_REJECTED');
        assert.match(e.message, /ovs-ofctl|OFPBAC|group|nonsense|bundle/i);
        return true;
      });
      assert.equal(await snapshot('gw1', 'br-int'), before, 'switch unchanged');
      assert.ok(lab.node('gw1').vswitchdPid() !== undefined, 'ovs-vswitchd still running');
    }
  });

  test('applier: nothing outside sluice cookies and group ids is touched; clashes are refused', async () => {
    const gw = lab.node('gw1') as Runner & Lab['gateways'][number];
    await gw.ofctl('br-int', ['add-group', 'group_id=77,type=select,bucket=actions=drop']);
    await gw.ofctl('br-int', ['add-flow', 'cookie=0x1234,table=50,priority=7,ip,actions=group:77']);
    const foreign = async () =>
      (await snapshot('gw1', 'br-int'))
        .split('\n')
        .filter((l) => !l.startsWith('51') && !/group_id=135\d{7}/.test(l))
        .join('\n');
    const before = await foreign();
    assert.match(before, /^1234 50 7 ip group:77$/m);
    assert.match(before, /^0 0 0 {2}NORMAL$/m, "the bridge's own default flow");
    // A change, then removing every sluice LB (all sluice flows and groups go), then back.
    await applyAll(gen(B, undefined));
    const empty = compileNode(
      { ...config, loadBalancers: [] },
      { number: 99, createdAt: 0, pools: new Map() },
      lab.compilerFacts('gw1'),
    );
    const r = await applyFlowSet(gw, empty);
    assert.ok(r.changed);
    assert.equal(await foreign(), before);
    const ids = lbIds(config.loadBalancers.map((l) => l.name));
    assert.equal(
      (await readInstalled(gw, 'br-int')).owned.groups.length,
      0,
      `groups of ${[...ids.values()]} deleted`,
    );
    await applyAll(gen(A, undefined));
    assert.equal(await foreign(), before);
    // A desired flow with the same table/priority/match as a foreign one is refused before anything is sent.
    const clash = compile('gw1', gen(A, undefined)).bridges.get('br-int')!;
    const snap = await snapshot('gw1', 'br-int');
    await assert.rejects(
      applyBridge(gw, 'br-int', {
        ...clash,
        flows: [...clash.flows, { ...clash.flows[0], table: 50, priority: 7, match: 'ip', actions: 'drop' }],
      }),
      (e: unknown) => e instanceof SluiceError && e.code === 'SLUICE_E_OPENFLOW_CONFLICT',
    );
    assert.equal(await snapshot('gw1', 'br-int'), snap);
    await gw.ofctl('br-int', ['--strict', 'del-flows', 'cookie=0x1234/-1,table=50,priority=7,ip']);
    await gw.ofctl('br-int', ['del-groups', 'group_id=77']);
  });

  test('applier: after an ovs-vswitchd restart everything is restored and traffic flows again', async () => {
    const g = gen(A, undefined);
    await applyAll(g);
    const gw = lab.node('gw1');
    await gw.restartVswitchd();
    const lost = await readInstalled(gw, 'br-int');
    assert.equal(lost.owned.flows.length, 0, 'a restarted ovs-vswitchd has no sluice flows');
    const r = await applyAll(g);
    assert.equal(r.gw1, true);
    assert.deepEqual(await applyAll(g), { gw1: false, host1: false, host2: false });
    const t = await startTraffic(lab, { vip: '203.0.113.10', port: 80, count: 5, expectBackends: [A, B] });
    try {
      await t.waitOpened(5);
      assert.equal((await t.report()).broken, 0);
    } finally {
      await t.stop();
    }
  });
});
