// End-to-end: the data plane on REAL Open vSwitch and real kernel TCP (root; lab prefix `slt-e2e3-`, torn down
// in `after`): a skewed rollout. The change: web's host1-b1 weight 1 -> 4 (slots move to it from the other three
// backends; the member list does not change). gw1 is held back by the LabController, so at every moment it is one
// generation behind gw2: window A gw1 = g, gw2 = g+1 (phase 1: primary P, second chance N); window B gw1 = g+1,
// gw2 = g+2 (phase 2: primary N, second chance P). The gating keeps gw2 from getting further ahead: the planner
// does not publish while gw1 has not acknowledged the latest generation.
//
// During each window (several seconds) the router's ECMP set flips between {gw1}, {gw2} and both, so connections
// cross between gateways on different generations, and new connections are opened while the gateways disagree:
// 0 broken, 0 failed.
//
// NEGATIVE CONTROL: on fresh connections, the reverse change (weight 4 -> 1) published WITHOUT phases (the final
// stable table at once, no second chance) with gw1 held and the same ECMP flips must break connections.
//
// (5) At scale: 300 more VIPs (no traffic, web's backends) installed beside web and api, ~78,000 flows per gateway
// (that install is read back and verified by streamed digests); long-lived connections through web survive host2-b2's phased
// add to web: 0 broken. NEGATIVE CONTROL (5): with the 300 VIPs still there, host3-b2 added to web without phases
// breaks connections.
//
// Then the same lab in `fields` hash mode (OVS's multipath over the 5-tuple instead of the datapath's dp_hash): the
// same ECMP flips send every packet of each of 200 connections through gw1 alone, then gw2 alone, and back; both
// gateways compute the same slot for a connection, so 0 break. NEGATIVE CONTROL: gw2 hashes with another basis (a
// seed: its multipath flows rewritten in place, basis 0 -> 1) and the same crossing breaks the connections whose
// slot then names another backend.
//
// The controller programs each node as its agent does (incremental: only the changes after the first apply, no switch
// read), so a generation at 302 VIPs costs its changes, not two dumps of ~78,000 flows per gateway.
//
// The live slot audit of the host agents (src/agent/live-audit.ts, the agents' PeriodicSlotAudit run here on each
// host's real conntrack, every second as the connection report reads it): in the positive fields-mode test no
// host flags a connection; in the negative control connections opened through gw2 after the reseed are committed
// in other slots than the model's, and the hosts' metric counts them within seconds.

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Gauge, Registry } from 'prom-client';
import { PeriodicSlotAudit } from '../../src/agent/live-audit.ts';
import { readConntrack } from '../../src/agent/node-ops.ts';
import { T } from '../../src/compile/registry.ts';
import { addLabBackend, type LabController, setLabBackendWeight } from '../../src/lab/controller.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import { reseedGateway } from './helpers/hash-fault.ts';
import {
  API,
  brokenInfo,
  ecmpFlips,
  expectAll,
  finalTable,
  gatewayPackets,
  isRoot,
  labHooks,
  openTraffic,
  publishBreaks,
  secondChancePackets,
  skewedChange,
  sleep,
  WEB,
} from './lb-common.ts';

const PREFIX = 'slt-e2e3-';
let lab: Lab;
let ctl: LabController;
let config: Config;

/** ~6 s of ECMP flips: {gw1}, {gw2}, both; opens `open` new connections on `t` meanwhile. */
function skewWindow(t: Traffic, open: number): Promise<void> {
  return ecmpFlips(lab, [t], open);
}

/** The host agents' live slot audit, one per host, each with its own metric registry. */
interface HostAudit {
  readonly host: string;
  readonly audit: PeriodicSlotAudit;
  readonly registry: Registry;
}

function hostAudits(): HostAudit[] {
  return lab.hosts.map((h) => {
    const registry = new Registry();
    const gauge = new Gauge({
      name: 'sluice_agent_slot_audit_connections',
      help: 'live slot audit',
      labelNames: ['lb', 'verdict'],
      registers: [registry],
    });
    return { host: h.name, audit: new PeriodicSlotAudit(1000, gauge), registry };
  });
}

/** One audit round on every host (its conntrack read now, the latest generation): web's counts by verdict. */
async function auditRound(audits: readonly HostAudit[]): Promise<{ agree: number; disagree: number }> {
  let agree = 0;
  let disagree = 0;
  for (const a of audits) {
    const entries = await readConntrack(lab.node(a.host));
    a.audit.maybeRun(config, ctl.latest!, entries, Date.now());
    const metrics = await a.registry.metrics();
    const n = (v: string) => Number(new RegExp(`lb="web",verdict="${v}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    agree += n('agree');
    disagree += n('disagree');
  }
  return { agree, disagree };
}

let audits: HostAudit[] = [];

function gens(): string {
  return `gw1=g${ctl.acks.get('gw1')} gw2=g${ctl.acks.get('gw2')} latest=g${ctl.latest?.number}`;
}

describe('lb skew: one gateway a generation behind', { skip: !isRoot && 'needs root' }, () => {
  const log = labHooks(
    PREFIX,
    (s) => {
      ({ lab, ctl, config } = s);
    },
    {},
    { incremental: true },
  );

  test('(4) phased rollout with gw1 one generation behind, connections crossing gateways: 0 broken', async (t) => {
    const exp = expectAll(lab);
    const tw = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...exp });
    const ta = await startTraffic(lab, { ...API, count: 40, rate: 100, ...exp });
    try {
      await tw.waitOpened(200);
      await ta.waitOpened(40);
      await sleep(1000);
      const sc0 = await secondChancePackets(lab);
      let scA = 0;
      let scB = 0;
      config = setLabBackendWeight(lab, config, 'web', 'host1-b1', 4);
      const r = await skewedChange(ctl, config, async (window, g) => {
        t.diagnostic(`window ${window}: ${gens()}`);
        await skewWindow(tw, 30);
        if (window === 'A') {
          assert.equal(ctl.latest!.number, g + 1, 'gated: nothing published while gw1 lags');
          assert.equal(ctl.acks.get('gw1'), g);
          scA = await secondChancePackets(lab);
        } else {
          assert.equal(ctl.acks.get('gw1'), g + 1);
          assert.ok(ctl.latest!.number <= g + 2);
          scB = await secondChancePackets(lab);
        }
      });
      t.diagnostic(`rollout: published g${r.published.join(', g')}; settled=${r.settled}; ${gens()}`);
      assert.ok(
        log.some((l) => l.includes('gated:')),
        'the controller logged the gating',
      );
      await sleep(3500);
      const c = [await tw.report(), await ta.report()];
      t.diagnostic(`second-chance packets: window A ${scA - sc0}, window B ${scB - scA}`);
      for (const x of c) {
        assert.equal(x.broken, 0, brokenInfo(tw, ta));
        assert.equal(x.failed, 0, JSON.stringify(x.failedByReason));
      }
      assert.equal(c[0].opened, 260);
      assert.ok(scB - scA > 0, 'connections crossing to gw2 in phase 2 took the second chance');
    } finally {
      await Promise.all([tw, ta].map((x) => x.stop().catch(() => x.kill())));
    }
    // Everything closed: the rollout settles (second chances dropped).
    const s = await ctl.settle({ timeoutMs: 30_000 });
    assert.ok(s.settled);
  });

  test('NEGATIVE CONTROL: the reverse change without phases, gw1 held, breaks connections', async (t) => {
    const exp = expectAll(lab);
    const tw: Traffic = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...exp });
    try {
      await tw.waitOpened(200);
      await sleep(1000);
      const target = setLabBackendWeight(lab, config, 'web', 'host1-b1', 1);
      // The final table of the phased rollout (every step assumed acknowledged and drained), published at once.
      const fin = finalTable(ctl, target);
      const web = fin.pools.get('web')!;
      assert.ok(
        web.second.every((s, i) => s === 0xffff || web.phase[i] === 0) && web.phase.every((p) => p === 0),
      );
      ctl.holdGateway('gw1');
      await ctl.publish(
        { ...fin, number: ctl.latest!.number + 1 },
        'negative control: slots moved with no phase',
      );
      await skewWindow(tw, 0);
      await sleep(3500);
      const c = await tw.report();
      t.diagnostic(`negative control: ${c.broken} of 200 broken (${JSON.stringify(c.brokenByReason)})`);
      assert.ok(c.broken > 0, 'moving slots without phases and second chance must break connections');
      await ctl.releaseGateway('gw1');
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
  });

  /** `config` with `n` more load balancers: web's backends behind VIPs in 198.18.0.0/15 (no traffic to them). */
  function withExtraVips(base: Config, n: number): Config {
    const web = base.loadBalancers.find((l) => l.name === 'web')!;
    const extra = Array.from({ length: n }, (_, i) => ({
      ...web,
      name: `scale${i}`,
      vip: `198.18.${(i + 1) >> 8}.${(i + 1) & 255}`,
    }));
    return { ...base, loadBalancers: [...base.loadBalancers, ...extra] };
  }

  test('(5) 300 more VIPs: long-lived connections through web survive a backend add on it, 0 broken', async (t) => {
    ctl.verifyNext(); // the 78,000-flow install read back and verified (the applier's streamed digests)
    const grow = await ctl.change(withExtraVips(config, 300));
    assert.ok(grow.settled, 'the 300 VIPs are installed');
    config = withExtraVips(config, 300);
    const dump = await lab.node('gw1').ofctl('br-int', ['dump-flows']);
    const gwFlows = dump.stdout.split('\n').filter((l) => l.includes(' actions=')).length;
    t.diagnostic(`gw1 br-int flows with ${config.loadBalancers.length} load balancers: ${gwFlows}`);
    assert.ok(gwFlows > 300 * 256, 'every extra VIP has its slot flows on the gateway');
    const tw = await openTraffic(lab, WEB, 200, 150);
    try {
      await sleep(1000);
      config = addLabBackend(lab, config, 'web', 'host2-b2');
      const add = await ctl.change(config);
      t.diagnostic(`add: published g${add.published.join(', g')}; settled=${add.settled}`);
      assert.ok(add.published.length >= 2, 'phase 1 and phase 2');
      await sleep(3500); // > the echo timeout: a black-holed connection would have failed by now
      const c = await tw.report();
      assert.equal(c.broken + c.failed, 0, brokenInfo(tw));
      assert.equal(c.alive, 200, 'every connection opened before the add is alive');
      const fin = await tw.stop();
      assert.equal(fin.broken, 0, brokenInfo(tw));
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
  });

  test('NEGATIVE CONTROL (5): with the 300 VIPs, a backend added to web without phases breaks connections', async (t) => {
    const tw = await openTraffic(lab, WEB, 200, 150);
    try {
      await sleep(1000);
      const target = addLabBackend(lab, config, 'web', 'host3-b2');
      const fin = finalTable(ctl, target);
      assert.ok(
        fin.pools.get('web')!.phase.every((p) => p === 0),
        'a stable table: no second chance',
      );
      assert.equal(fin.pools.size, target.loadBalancers.length, 'the 300 VIPs stay');
      config = target;
      t.diagnostic(await publishBreaks(ctl, tw, fin, 'no phase, 302 VIPs'));
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
  });

  test('fields mode, two gateways, every connection crossing between them: 0 broken', async (t) => {
    // The hosts' audits start in dp_hash mode: connections still in conntrack keep that mode's slots.
    audits = hostAudits();
    await auditRound(audits);
    config = { ...config, hashMode: 'fields' };
    const before = ctl.latest!.number;
    await ctl.change(config);
    // The slot tables do not change with the hash mode: publish the latest generation again under the new config.
    if (ctl.latest!.number === before)
      await ctl.publish({ ...ctl.latest!, number: before + 1 }, 'hash mode fields');
    const classify = (
      await lab.node('gw1').ofctl('br-int', ['--no-stats', 'dump-flows', `table=${T.CLASSIFY}`])
    ).stdout;
    assert.match(classify, /multipath\(symmetric_l3l4\+udp,0,/, 'gw1 hashes with multipath');
    const tw = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...expectAll(lab) });
    try {
      await tw.waitOpened(200);
      await sleep(1000);
      const p0 = await gatewayPackets(lab);
      await ecmpFlips(lab, [tw], 20);
      await sleep(3500);
      const p1 = await gatewayPackets(lab);
      const c = await tw.report();
      const verdicts = await auditRound(audits);
      t.diagnostic(
        `fields mode, ECMP {gw1} -> {gw2} -> both -> {gw2} -> {gw1}: ${c.broken} of ${c.opened} broken; ` +
          `gateway slot packets gw1 +${p1.gw1! - p0.gw1!}, gw2 +${p1.gw2! - p0.gw2!}; ` +
          `live slot audit of web: ${verdicts.agree} agree, ${verdicts.disagree} disagree`,
      );
      // The control for the control: gateways that hash alike are not flagged.
      assert.equal(verdicts.disagree, 0, audits.map((a) => `${a.host}: ${a.audit.text}`).join('\n'));
      assert.ok(verdicts.agree >= 200, 'the audit saw the live connections');
      // Alive through a phase with gw1 alone and one with gw2 alone: each connection went through both.
      assert.equal(c.broken, 0, brokenInfo(tw));
      assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
      assert.equal(c.opened, 220);
      assert.ok(p1.gw1! > p0.gw1! && p1.gw2! > p0.gw2!, 'both gateways carried the connections');
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
  });

  test('NEGATIVE CONTROL: fields mode with gw2 hashing under another seed breaks crossing connections', async (t) => {
    const tw = await startTraffic(lab, { ...WEB, count: 200, rate: 150, ...expectAll(lab) });
    try {
      await tw.waitOpened(200);
      await sleep(1000);
      // gw2's multipath flows, basis 0 -> 1, in place (same match, priority and cookie: add-flow replaces them).
      await reseedGateway(lab.node('gw2'), 1, 'in-place');
      const seededAt = Date.now();
      // New connections while ECMP holds both gateways (before the flips): those gw2 takes are committed in gw2's
      // slot.
      tw.open(20, 50);
      await sleep(800);
      const flips = ecmpFlips(lab, [tw], 0);
      // The hosts' audit, every second as their connection report reads conntrack, until one flags web.
      let flagged: { agree: number; disagree: number; ms: number } | undefined;
      while (flagged === undefined && Date.now() - seededAt < 10_000) {
        await sleep(1000);
        const v = await auditRound(audits);
        if (v.disagree > 0) flagged = { ...v, ms: Date.now() - seededAt };
      }
      await flips;
      await sleep(3500);
      const c = await tw.report();
      t.diagnostic(`gw2 seeded differently: ${c.broken} of 220 broken (${JSON.stringify(c.brokenByReason)})`);
      const flaggedBy = audits.filter((a) => a.audit.text?.startsWith('DISAGREE')).map((a) => a.audit.text);
      t.diagnostic(
        `live slot audit flagged web ${flagged?.ms ?? '-'} ms after the reseed: ` +
          `${flagged?.disagree} disagree, ${flagged?.agree} agree; ${flaggedBy.join(' | ')}`,
      );
      assert.ok(c.broken > 0, 'gateways that hash differently must break crossing connections');
      assert.ok(flagged !== undefined, 'the hosts flag connections gw2 committed in other slots within 10 s');
    } finally {
      await tw.stop().catch(() => tw.kill());
    }
    // The lab is torn down after this block: gw2 keeps the rewritten flows until then.
  });
});
