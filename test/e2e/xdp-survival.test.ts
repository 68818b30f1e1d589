// End-to-end: the survival scenarios with XDP gateways (root; lab prefix `slt-xdps-`, torn down in `after`). One lab
// built with `gatewayDatapath: 'mixed'` (gw1 OVS, gw2 the XDP program on its uplink, OVS behind it; `fields` hash
// mode), driven by the LabController, which installs each generation in the XDP maps (inactive copy, then the
// flip) before it counts the acknowledgement, as the agent does (src/agent/xdp-gateway.ts), and programs each node's
// OVS as its agent does too (incremental: only the changes after the first apply). Real kernel TCP from
// two clients through the router's ECMP; a connection echoes every 300 ms and breaks on a reset or 3 s of silence.
//
// (1) Both gateways XDP (gw1 switched to XDP in service) in `fields` mode, then (2) the mixed set (gw1 back to OVS)
//     in `dp_hash` mode (OVS's userspace dp_hash against the program's copy of it): on the same connections, a
//     backend added, a skewed rollout (gw1 held one generation behind gw2, ECMP flipping between {gw1}, {gw2} and
//     both), a backend drained, then removed once its connections closed, and gw2 crashed (its ovs-vswitchd killed
//     and its XDP program detached, withdrawn from ECMP with it) and restored: 0 broken.
// NEGATIVE CONTROLS (mixed set): slots moved with no phase while gw1 is held breaks connections; gw2 crashed
// WITHOUT the ECMP withdraw black-holes the connections hashed to it.
// ICMP (mixed set): Path MTU discovery through gw2 alone, whose tc program copies the ICMP errors to the VIP's hosts
// (its OVS has no GW_ICMP flows); NEGATIVE CONTROL: without the tc program the transfer stalls.
// (3) The same lab under real `sluice agent` processes and a real planner (mixed, dp_hash): at every
//     acknowledgement of gw2 during a phased backend add, the copy in force in its XDP maps already holds that
//     generation's tables (read back with bpftool, compared with the store's plan; the previous generation's
//     differ, so the check can fail); 0 broken. Then gw1 restarted as an xdp gateway whose program cannot load:
//     withdrawn from ECMP, never announced, its status naming the failed attach.

import * as assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import { parseTnlNeigh } from '../../src/agent/xdp-gateway.ts';
import { xdpImageLines, xdpMapImage, xdpTables } from '../../src/compile/xdp.ts';
import {
  type ControlPlane,
  operatorClient,
  startAgent,
  startControlPlane,
  writeDesiredState,
} from '../../src/lab/control-plane.ts';
import {
  addLabBackend,
  removeLabBackend,
  setLabBackendState,
  setLabBackendWeight,
} from '../../src/lab/controller.ts';
import { nsRun } from '../../src/lab/exec.ts';
import { packetsByKind as flowPacketsByKind } from '../../src/lab/flow-counters.ts';
import { type Lab, labStatus } from '../../src/lab/topology.ts';
import type { Traffic } from '../../src/lab/traffic.ts';
import { labXdpInForce, setLabDatapathFacts } from '../../src/lab/xdp.ts';
import { parseConfig } from '../../src/model/schema.ts';
import type { Config } from '../../src/model/types.ts';
import type { Replica } from '../../src/ovsdb/replica.ts';
import {
  nodeAck,
  nodeHeartbeat,
  PLAN_MONITOR,
  planDocument,
  readPlan,
  splitMonitor,
} from '../../src/store/db/index.ts';
import { ICMP_TC_PREF } from '../../src/xdp/attach.ts';
import { cleanPaths, echoTransfer, flushPathMtu, lockClientMtu } from './helpers/pmtu.ts';
import { execSluice } from './helpers/sluice-children.ts';
import { waitStoreConverged } from './helpers/store-state.ts';
import {
  API,
  brokenInfo,
  ecmpFlips,
  finalTable,
  gatewayPackets,
  isRoot,
  type LabSetup,
  labHooks,
  openTraffic,
  publishBreaks,
  skewedChange,
  sleep,
  WEB,
  waitFor,
} from './lb-common.ts';

const PREFIX = 'slt-xdps-';
let lab: Lab;
let ctl: LabSetup['ctl'];
let config: Config;

/** The backends each run adds, skews, drains and removes from web (the second run undoes the first's edits). */
interface Churn {
  readonly add: string;
  readonly skew: readonly [string, number];
  readonly drain: string;
}

async function assertNoneBroken(groups: readonly Traffic[]): Promise<number> {
  let alive = 0;
  for (const g of groups) {
    const c = await g.report();
    assert.equal(c.broken, 0, brokenInfo(...groups));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
    alive += c.alive;
  }
  return alive;
}

/** Packets the XDP program of `gw` sent since it was attached (its per-VIP counters), 0 when it runs none. */
function xdpSent(gw: string): Promise<number> {
  return ctl.xdpPackets(gw);
}

/** The survival scenarios on one set of connections; returns the connections opened. */
async function survival(t: TestContext, churn: Churn): Promise<{ opened: number; broken: number }> {
  const tw = await openTraffic(lab, WEB, 120, 150);
  const ta = await openTraffic(lab, API, 40, 100);
  const groups = [tw, ta];
  try {
    await sleep(1000);
    config = addLabBackend(lab, config, 'web', churn.add);
    const add = await ctl.change(config);
    t.diagnostic(`add ${churn.add}: published g${add.published.join(', g')}`);
    await sleep(1500);
    await assertNoneBroken(groups);

    config = setLabBackendWeight(lab, config, 'web', churn.skew[0], churn.skew[1]);
    const skew = await skewedChange(ctl, config, () => ecmpFlips(lab, groups, 10));
    t.diagnostic(`skewed rollout (${churn.skew.join(' weight ')}): published g${skew.published.join(', g')}`);
    await assertNoneBroken(groups);

    config = setLabBackendState(lab, config, 'web', churn.drain, 'draining');
    await ctl.change(config);
    // Connections opened after the drain go elsewhere and stay through the removal.
    const after = await openTraffic(lab, WEB, 40, 150);
    groups.push(after);
    assert.equal(
      (await after.report()).perBackend[churn.drain]?.opened ?? 0,
      0,
      'drained: no new connection',
    );
    config = removeLabBackend(lab, config, 'web', churn.drain);
    const early = await ctl.change(config);
    assert.equal(early.settled, false, "the planner waits for the drained backend's connections");
    tw.close((await tw.report()).alive);
    const removal = await ctl.settle({ timeoutMs: 30_000 });
    t.diagnostic(`drain and remove ${churn.drain}: settled=${removal.settled}`);
    assert.ok(removal.settled);
    await assertNoneBroken(groups);

    const before = await xdpSent('gw2');
    await ctl.killGatewayVswitchd('gw2');
    await sleep(2500);
    await assertNoneBroken(groups);
    await ctl.restoreGateway('gw2');
    await sleep(2500);
    const carried = await xdpSent('gw2');
    t.diagnostic(`gw2 crashed and restored: its new program sent ${carried} packets (the old one ${before})`);
    assert.ok(carried > 50, 'the restored XDP gateway carries traffic in XDP again');
    const c = await Promise.all(groups.map((g) => g.report()));
    await assertNoneBroken(groups);
    return { opened: c.reduce((n, x) => n + x.opened, 0), broken: 0 };
  } finally {
    await Promise.all(groups.map((g) => g.stop().catch(() => g.kill())));
  }
}

/** One acknowledgement of `node` seen in the store, and what its XDP maps held right then. */
interface AckSeen {
  readonly generation: number;
  readonly copy: number;
  /** The copy in force holds exactly this generation's tables (config, VIPs, slots). */
  readonly matches: boolean;
  /** ... and not the previous generation's: the check tells the two apart (undefined for the first). */
  readonly previousDiffers: boolean | undefined;
  /** The node acknowledged something newer while the maps were read: the observation proves nothing. */
  readonly raced: boolean;
}

/**
 * Watches `node`'s acknowledgements in the store (polled every 25 ms) and, at each new one, reads the program's maps
 * on its uplink and compares the copy in force with the tables of the acknowledged generation as the store has it
 * (xdpTables of its plan, with the node's tunnel neighbours): it must already hold them, i.e. the agent wrote
 * and flipped before it acknowledged. The planner publishes the next generation only after this ack, so nothing
 * newer can be in the maps unless the read raced a later ack (recorded as `raced`).
 */
async function watchXdpAcks(cp: ControlPlane, node: string) {
  const client = await operatorClient(cp);
  const m = await client.monitorDatabases(splitMonitor({ ...PLAN_MONITOR, Node_Heartbeat: {} }));
  const n = lab.node(node);
  const facts = lab.compilerFacts(node);
  const neighbours = parseTnlNeigh((await n.appctl(['tnl/neigh/show'])).stdout);
  const image = (r: Replica, g: number, copy: 0 | 1) => {
    const plan = readPlan(r, g);
    if (plan?.docs === undefined) return undefined;
    const c = parseConfig(planDocument(plan.docs), `g${g}`);
    const t = xdpTables(c, plan.generation, { tunnelIp: facts.tunnelIp, mac: facts.phyMac, neighbours });
    return xdpImageLines(xdpMapImage(t, copy)).join('\n');
  };
  const acked = () => nodeAck(undefined, nodeHeartbeat(m.replica, node))?.appliedGeneration ?? 0;
  const seen: AckSeen[] = [];
  let stop = false;
  const loop = (async () => {
    for (let last = -1; !stop; await sleep(25)) {
      const g = acked();
      if (g === last || g === 0) continue;
      last = g;
      const f = await labXdpInForce(n);
      const copy = (f?.copy ?? 0) as 0 | 1;
      const held = f?.lines.join('\n');
      const before = seen.length === 0 ? undefined : image(m.replica, g - 1, copy);
      seen.push({
        generation: g,
        copy,
        matches: held !== undefined && held === image(m.replica, g, copy),
        previousDiffers: before === undefined ? undefined : held !== before,
        raced: acked() !== g,
      });
    }
  })();
  return {
    acked,
    replica: () => m.replica,
    async stop(): Promise<AckSeen[]> {
      stop = true;
      await loop;
      await client.close();
      return seen;
    },
  };
}

describe('XDP survival: XDP and mixed gateway sets through the scenarios', {
  skip: !isRoot && 'needs root',
}, () => {
  labHooks(
    PREFIX,
    (s) => {
      ({ lab, ctl, config } = s);
    },
    { gatewayDatapath: 'mixed' },
    { incremental: true },
  );

  test('(1) both gateways XDP: add, skewed rollout, drain, remove, gateway crash: 0 broken', async (t) => {
    assert.equal(config.hashMode, 'fields');
    const dp = async () =>
      Object.fromEntries(
        (await labStatus(PREFIX)).nodes.flatMap((n) => (n.datapath ? [[n.name, n.datapath]] : [])),
      );
    const built = await dp();
    t.diagnostic(`lab status as built: ${JSON.stringify(built)}`);
    assert.equal(built.gw1, 'ovs');
    assert.match(built.gw2, /^xdp \(program \d+ on eth0\)$/);
    await ctl.setGatewayDatapath('gw1', 'xdp');
    assert.deepEqual(ctl.xdpGateways(), ['gw1', 'gw2']);
    assert.match((await dp()).gw1, /^xdp \(program \d+ on eth0\)$/);
    const g0 = await gatewayPackets(lab);
    const r = await survival(t, { add: 'host2-b2', skew: ['host3-b1', 3], drain: 'host1-b1' });
    const g1 = await gatewayPackets(lab);
    const xdp = [await xdpSent('gw1'), await xdpSent('gw2')];
    t.diagnostic(
      `XDP set: ${r.opened} connections, ${r.broken} broken; XDP sent gw1 ${xdp[0]}, gw2 ${xdp[1]}; ` +
        `OVS GW_SLOT packets gw1 ${g1.gw1 - g0.gw1}`,
    );
    assert.ok(xdp[0] > 500 && xdp[1] > 50, 'both gateways forwarded in XDP');
    assert.ok(g1.gw1 - g0.gw1 < 50, "gw1's OVS saw (almost) no VIP packet");
  });

  test('(2) mixed set (gw1 OVS, gw2 XDP) in dp_hash mode: the same scenarios: 0 broken', async (t) => {
    await ctl.setGatewayDatapath('gw1', 'ovs');
    assert.deepEqual(ctl.xdpGateways(), ['gw2']);
    // No connection is open: the hash mode changes every connection's slot. OVS's userspace dp_hash on gw1, the
    // program's reproduction of it on gw2 (docs/design/xdp.md): the ECMP set agrees only if they are equal.
    config = { ...config, hashMode: 'dp_hash' };
    const before = ctl.latest!.number;
    await ctl.change(config);
    // The slot tables do not change with the hash mode: publish the latest generation again under the new config.
    if (ctl.latest!.number === before)
      await ctl.publish({ ...ctl.latest!, number: before + 1 }, 'hash mode dp_hash');
    const groups = (await lab.node('gw1').ofctl('br-int', ['dump-groups'])).stdout;
    assert.match(groups, /selection_method=dp_hash/, 'gw1 selects with dp_hash');
    const inForce = await labXdpInForce(lab.node('gw2'));
    assert.match(
      inForce?.lines.find((l) => l.startsWith('sluice_config')) ?? '',
      /01$/,
      "gw2's program: dp_hash",
    );
    const g0 = await gatewayPackets(lab);
    const r = await survival(t, { add: 'host1-b1', skew: ['host3-b1', 1], drain: 'host2-b2' });
    const g1 = await gatewayPackets(lab);
    t.diagnostic(
      `mixed set: ${r.opened} connections, ${r.broken} broken; OVS GW_SLOT packets gw1 ${g1.gw1 - g0.gw1}, ` +
        `XDP gw2 ${await xdpSent('gw2')}`,
    );
    assert.ok(g1.gw1 - g0.gw1 > 500, 'gw1 forwarded in OVS');
  });

  // Path MTU discovery through the XDP gateway alone (docs/design/xdp.md "ICMP errors"): the router's route to the
  // client is locked at MTU 1400, so a backend's full-size echo segments draw fragmentation-needed errors addressed to
  // the VIP, which reach gw2 only (ECMP = {gw2}). gw2's XDP program passes them to its tc program (icmp.bpf.c), which
  // copies each to the VIP's hosts; gw2's OVS has no GW_ICMP flows (it would copy them a second time). A 256 KiB echo
  // completes only if the copies arrive. NEGATIVE CONTROL first: with the tc program removed from gw2's uplink the
  // same transfer stalls.
  test('ICMP (mixed set): PMTU discovery through the XDP gateway (its tc program); without it the transfer stalls', async (t) => {
    const client = lab.clients[0];
    const gw2 = lab.node('gw2');
    const backendNs = lab.backends().map((b) => b.netns);
    const hosts = lab.hosts.map((h) => lab.node(h.name));
    const unlock = await lockClientMtu((cmd, args) => lab.routerExec(cmd, args), client);
    await lab.setEcmpGateways(['gw2']);
    try {
      const gwIcmp = (await gw2.ofctl('br-int', ['dump-flows', 'table=0,icmp'])).stdout;
      assert.ok(!gwIcmp.includes('tun_dst'), `gw2's OVS copies no ICMP error:\n${gwIcmp}`);
      await nsRun(gw2.netns, 'tc', ['filter', 'del', 'dev', 'eth0', 'ingress', 'pref', ICMP_TC_PREF]);
      await cleanPaths(backendNs, client, 'before the negative control');
      const off = await echoTransfer(client.netns, WEB.vip, 256 * 1024, 6000);
      t.diagnostic(`gw2 without its tc program: ${JSON.stringify(off)}`);
      assert.equal(off.done, false, 'the transfer must stall when the XDP gateway does not copy ICMP errors');
      await cleanPaths(backendNs, client, 'after the negative control');
      // A fresh program pair on gw2's uplink, the generation installed again.
      await ctl.setGatewayDatapath('gw2', 'ovs');
      await ctl.setGatewayDatapath('gw2', 'xdp');
      const before = await flowPacketsByKind([gw2, ...hosts], 'br-int');
      const on = await echoTransfer(client.netns, WEB.vip, 256 * 1024, 15000);
      const after = await flowPacketsByKind([gw2, ...hosts], 'br-int');
      const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      t.diagnostic(
        `through gw2 (XDP + tc): ${JSON.stringify(on)}; gw2's OVS copied ${d('GW_ICMP')}, hosts looked up ` +
          `${d('ICMP_IN')} copies, delivered ${d('ICMP_DELIVER')}`,
      );
      assert.equal(on.done, true, `PMTU discovery through the XDP gateway: ${JSON.stringify(on)}`);
      assert.equal(d('GW_ICMP'), 0, "gw2's OVS copied nothing");
      assert.ok(d('ICMP_DELIVER') >= 1, "a host delivered the tc program's copy to the backend");
    } finally {
      await unlock();
      await Promise.all(backendNs.map((ns) => flushPathMtu(ns)));
      await lab.setEcmpGateways(['gw1', 'gw2']);
    }
  });

  test('NEGATIVE CONTROLS (mixed set): slots moved with no phase; gw2 crashed without the withdraw', async (t) => {
    const tw = await openTraffic(lab, WEB, 120, 150);
    try {
      await sleep(1000);
      ctl.holdGateway('gw1');
      config = setLabBackendWeight(lab, config, 'web', 'host3-b1', 4);
      const what = 'slots moved with no phase, gw1 held';
      t.diagnostic(await publishBreaks(ctl, tw, finalTable(ctl, config), what));
      await ctl.releaseGateway('gw1');
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
    const tc = await openTraffic(lab, WEB, 120, 150);
    try {
      await sleep(1000);
      await ctl.killGatewayVswitchd('gw2', { withdraw: false });
      await sleep(4000);
      const c = await tc.report();
      t.diagnostic(`gw2 crashed, left in ECMP: ${c.broken} of ${c.opened} broken`);
      assert.ok(c.broken >= 20, 'a dead XDP gateway left in the ECMP set black-holes its connections');
      await ctl.restoreGateway('gw2');
    } finally {
      await tc.stop().catch(() => tc.kill());
    }
  });

  // The same lab handed to real agents and one real planner (the LabController is not used any more): gw2's agent
  // reads sluice-gateway-datapath=xdp from its OVSDB and replaces the controller's program with its own.
  test('(3) real agents: each generation is in the XDP maps before its ack; a program that fails to load keeps gw1 out', async (t) => {
    const cp = await startControlPlane(lab, { planners: 1, config, timeoutMs: 90_000 });
    const watch = await watchXdpAcks(cp, 'gw2');
    const tw = await openTraffic(lab, WEB, 60, 150);
    try {
      const applied = () => cp.records('agent-gw2').filter((r) => r.event === 'applied');
      type Install = { copy: number; generation: number; attached: boolean };
      assert.equal((applied()[0]!.xdp as Install).attached, true, "gw2's agent attached its own program");
      await waitFor(() => watch.acked() > 0, 'gw2 acknowledged', 10_000);
      const g0 = watch.acked();
      config = addLabBackend(lab, config, 'web', 'host2-b2');
      await writeDesiredState(cp.remoteFor('operator'), config, cp.operatorTls());
      // The whole rollout (phase 1, phase 2, ...), not just its first generation: no slot left in phase 1.
      const names = lab.nodes.map((x) => x.name);
      const g1 = await waitStoreConverged(watch.replica, names, g0, 60_000, 2000);
      const seen = (await watch.stop()).filter((x) => x.generation > g0);
      t.diagnostic(`g${g0} -> g${g1}; gw2's maps at each of its acks: ${JSON.stringify(seen)}`);
      const installs = applied()
        .map((r) => r.xdp as Install)
        .filter((x) => x.generation > g0);
      assert.deepEqual(
        seen.map((x) => x.generation),
        Array.from({ length: g1 - g0 }, (_, i) => g0 + 1 + i),
        'gw2 acknowledged every generation of the rollout',
      );
      assert.ok(g1 - g0 >= 2, `the add rolled out in phases (g${g0} -> g${g1})`);
      for (const x of seen) {
        assert.equal(x.raced, false, `g${x.generation}: read before any newer ack`);
        assert.equal(
          x.matches,
          true,
          `g${x.generation} was in force in gw2's XDP maps when it was acknowledged`,
        );
        assert.equal(
          x.previousDiffers,
          true,
          `g${x.generation}: its maps differ from g${x.generation - 1}'s`,
        );
        const log = installs.find((i) => i.generation === x.generation);
        assert.equal(log?.copy, x.copy, `g${x.generation}: the copy the agent logged is the one in force`);
      }
      for (let i = 1; i < seen.length; i++)
        assert.notEqual(seen[i]!.copy, seen[i - 1]!.copy, 'each generation went to the other copy');
      const address = cp.records('agent-gw2').find((r) => r.event === 'metrics')!.address as string;
      const metrics = await (await fetch(`http://${address}/metrics`)).text();
      const sent =
        /^sluice_agent_xdp_packets_total\{lb="web",vip="203\.0\.113\.10",proto="tcp",port="80"\} (\d+)$/m.exec(
          metrics,
        );
      t.diagnostic(`gw2 metrics: web packets sent in XDP ${sent?.[1]}`);
      assert.ok(Number(sent?.[1]) > 100, "gw2's per-VIP counters are metrics");

      // gw1 becomes an xdp gateway whose program cannot load: its agent withdraws it and says why.
      cp.signal('agent-gw1', 'SIGTERM');
      await waitFor(() => cp.pid('agent-gw1') === undefined, 'agent-gw1 stopped', 10_000);
      await setLabDatapathFacts(lab.node('gw1'), 'xdp');
      // The new agent appends to the same log as the one stopped (which announced gw1): its records are the later.
      const restart = Date.now();
      startAgent(cp, 'gw1', { agentArgs: ['--xdp-object', '/nonexistent/gateway.bpf.o'] });
      let report: string | null = null;
      for (const end = Date.now() + 30_000; !/xdp: attaching the program failed/.test(report ?? ''); ) {
        if (Date.now() > end) throw new Error(`gw1's status never named the failed load (error: ${report})`);
        await sleep(250);
        report = (await cp.status()).nodes.find((x) => x.name === 'gw1')?.error ?? null;
      }
      await sleep(1500);
      const ecmp = await lab.ecmpGateways();
      t.diagnostic(`gw1 status: ${report}; ECMP ${JSON.stringify(ecmp)}`);
      for (const gws of Object.values(ecmp)) assert.deepEqual(gws, ['gw2'], 'gw1 withdrawn');
      // What the operator sees: `sluice status` names gw1's failed attach.
      const cli = await execSluice(['status', ...cp.operatorArgs()]);
      const line = cli.stdout.split('\n').find((l) => /^\s*gw1\b/.test(l) || /gw1.*xdp: attaching/.test(l));
      t.diagnostic(`sluice status (exit ${cli.code}): ${line}`);
      assert.match(
        cli.stdout,
        /xdp: attaching the program failed/,
        `sluice status:\n${cli.stdout}${cli.stderr}`,
      );
      const since = cp.records('agent-gw1').filter((r) => (r.time as number) >= restart);
      assert.ok(
        since.some((r) => r.event === 'apply-failed'),
        'the restarted agent logged its failure',
      );
      assert.ok(!since.some((r) => r.event === 'announced'), 'never announced');
      const c = await tw.report();
      t.diagnostic(`through the agents: ${c.opened} connections, ${c.broken} broken`);
      assert.equal(c.broken, 0, brokenInfo(tw));
    } finally {
      await watch.stop().catch(() => []);
      await tw.stop().catch(() => tw.kill());
      await cp.stop();
    }
  });
});
