// End-to-end: UDP flows keep their backend through slot moves, on REAL Open vSwitch and real kernel UDP (root; lab
// prefix `slt-udp-`, torn down in `after`). The default lab's sizes (2 gateways behind the router's ECMP, 3 hosts x 2
// backends, 2 clients) with two UDP VIPs: dns = 203.0.113.53:80 (host1-b1, host2-b1, host3-b1, host1-b2) and
// dns6 = [2001:db8::53]:80 (host1-b1, host2-b1, host3-b1). Every backend answers each datagram with its name.
//
// The LabController programs each node as its agent does (incremental: only the changes after the first apply).
//
// A flow is one client socket (its own source port) sending a datagram every 200 ms (conn-runner --udp). It is
// BROKEN when an answer names another backend than its first (`backend-changed`: the flow moved), when no answer
// came for 3 s, or on an ICMP error; one that never got an answer FAILED.
//
// (1) 200 IPv4 flows and 60 IPv6 flows through: host2-b2 added to dns, host1-b1 drained in dns and dns6, host1-b1
//     removed from dns while its flows live (the planner keeps it in the chain), each change with the router's
//     ECMP set flipping between the gateways; meanwhile a request/response load opens new flows all the time and
//     closes old ones: 0 broken, 0 failed. New flows of moving slots walked the chain and were sent back to the
//     primary to be committed (UDP_WALK_RETURN packets counted).
// (2) A skewed rollout: gw1 held one generation behind gw2 (phase 1, then phase 2), ECMP flipping, new flows
//     opened meanwhile: 0 broken, 0 failed.
// (0) Health probes in the lab, from the backend's namespace as the agent runs them there (netnsProbe): UDP `reply`
//     and `no-icmp`, HTTP GET (the backends' health port) and TCP pass; a backend that refuses (SIGUSR1: TCP
//     listener and UDP socket closed, HTTP 503) fails every kind; a checker for the UDP load balancer (its default
//     check) demotes it after `fall` rounds and never opens a TCP connection to it (the backend's TCP accept count is
//     unchanged; the same count grows under a TCP check, the positive control).
// (3) Through the real control plane (store, planner, one agent per node, src/lab/control-plane.ts) taking over the
//     same lab: dns keeps its default check (UDP, no ICMP port-unreachable), dns6 gets an HTTP check on the health
//     port. A backend that refuses (SIGUSR1) is reported down by both, the planner moves its slots away, new flows
//     avoid it and the flows of every other backend keep theirs (only its own break: its UDP socket is closed); no
//     lab backend accepts a TCP connection while the agents run (their accept counts are unchanged).
// NEGATIVE CONTROL: a controller whose hosts are compiled without the UDP walk (`{ udpWalk: false }`, the pipeline
// before it: a host commits a datagram it has no entry for at once) and the same backend add: the flows of moved
// slots change backend.

import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { HealthChecker, netnsProbe } from '../../src/agent/health.ts';
import { backendHttpPort } from '../../src/lab/config.ts';
import { startControlPlane, stopControlPlane, waitConverged } from '../../src/lab/control-plane.ts';
import {
  addLabBackend,
  editBackends,
  LabController,
  removeLabBackend,
  setLabBackendState,
  setLabBackendWeight,
} from '../../src/lab/controller.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { startTraffic, type Traffic } from '../../src/lab/traffic.ts';
import { backendKey, type Config, healthCheckOf } from '../../src/model/types.ts';
import { OvsdbClient } from '../../src/ovsdb/client.ts';
import { DB_NAME, readGeneration, splitMonitor } from '../../src/store/db/index.ts';
import { STATUS_MONITOR, statusReport } from '../../src/store/operator.ts';
import {
  brokenInfo,
  ecmpFlips,
  hostPackets,
  isRoot,
  labHooks,
  skewedChange,
  sleep,
  spread,
  waitFor,
} from './lb-common.ts';

const PREFIX = 'slt-udp-';
const DNS = { vip: '203.0.113.53', port: 80, protocol: 'udp' } as const;
const DNS6 = { vip: '2001:db8::53', port: 80, protocol: 'udp' } as const;
let lab: Lab;
let ctl: LabController;
let config: Config;

/** Traffic options: UDP, one datagram every 200 ms, no answer for 3 s = broken, any lab backend may answer. */
function flows(): { intervalMs: number; timeoutMs: number; expectBackends: string[] } {
  return { intervalMs: 200, timeoutMs: 3000, expectBackends: lab.backends().map((b) => b.name) };
}

/** UDP_WALK_RETURN packets summed over the hosts: new flows of moving slots sent back to be committed. */
function walkReturns(): Promise<number> {
  return hostPackets(lab, 'UDP_WALK_RETURN');
}

/** A planner-driven change while the router's ECMP set flips (new flows opened on `ts` meanwhile). */
async function changeWithFlips(c: Config, ts: readonly Traffic[]): Promise<string> {
  config = c;
  const [r] = await Promise.all([ctl.change(c, { timeoutMs: 90_000 }), ecmpFlips(lab, ts, 20)]);
  const published = r.published.length > 0 ? `published g${r.published.join(', g')}` : 'nothing to publish';
  return `${published}; settled=${r.settled}`;
}

/** TCP connections lab backend `name` accepted so far (it prints the count on SIGUSR2). */
async function tcpAccepted(name: string): Promise<number> {
  process.kill(lab.backendPid(name)!, 'SIGUSR2');
  await sleep(300);
  const lines = readFileSync(`${lab.facts.runDir}/backend-${name}.log`, 'utf8').match(/total=\d+/g) ?? [];
  return Number(lines.at(-1)?.slice('total='.length) ?? Number.NaN);
}

/** Asserts that no group has a broken or failed flow. */
async function noneBroken(...ts: Traffic[]): Promise<void> {
  for (const x of ts) {
    const c = await x.report();
    assert.equal(c.broken, 0, brokenInfo(...ts));
    assert.equal(c.failed, 0, JSON.stringify(c.failedByReason));
  }
}

describe('lb udp: UDP flows keep their backend through slot moves', { skip: !isRoot && 'needs root' }, () => {
  labHooks(
    PREFIX,
    (s) => {
      ({ lab, ctl, config } = s);
    },
    {
      udp: true,
      vips: [
        {
          name: 'dns',
          vip: DNS.vip,
          family: 4,
          protocol: 'udp',
          port: 80,
          backends: ['host1-b1', 'host2-b1', 'host3-b1', 'host1-b2'],
        },
        {
          name: 'dns6',
          vip: DNS6.vip,
          family: 6,
          protocol: 'udp',
          port: 80,
          backends: ['host1-b1', 'host2-b1', 'host3-b1'],
        },
      ],
    },
    { incremental: true },
  );

  test('(0) UDP, HTTP and TCP health probes in the lab; a refusing UDP backend is demoted, never TCP-probed', async () => {
    const name = 'host3-b1';
    const b = lab.backend(name);
    const probe = netnsProbe((address) => (address === b.ip ? b.netns : undefined));
    const kinds = {
      'udp reply': { type: 'udp', expect: 'reply' },
      'udp no-icmp': { type: 'udp', expect: 'no-icmp' },
      http: { type: 'http', path: '/health' },
      tcp: { type: 'tcp' },
    } as const;
    const portOf = (k: keyof typeof kinds) => (k === 'http' ? backendHttpPort(lab.config.backendPort) : 80);
    const all = async () =>
      Object.fromEntries(
        await Promise.all(
          (Object.keys(kinds) as (keyof typeof kinds)[]).map(async (k) => [
            k,
            await probe(b.ip, portOf(k), 1000, kinds[k]),
          ]),
        ),
      );
    assert.deepEqual(await all(), { 'udp reply': true, 'udp no-icmp': true, http: true, tcp: true });
    const accepted = () => tcpAccepted(name);
    const checker = (check: ReturnType<typeof healthCheckOf>) => {
      const c = new HealthChecker({ rise: 1, fall: 2, timeoutMs: 800 }, probe);
      c.setTargets([{ id: `dns ${b.ip}:80`, address: b.ip, port: 80, check }]);
      return c;
    };
    const udpChecker = checker(healthCheckOf({ protocol: 'udp' }));
    const before = await accepted();
    await udpChecker.checkOnce();
    assert.equal(udpChecker.state(`dns ${b.ip}:80`), 'up');
    await lab.refuseNewConnections(name, true);
    try {
      assert.deepEqual(await all(), { 'udp reply': false, 'udp no-icmp': false, http: false, tcp: false });
      for (let i = 0; i < 2; i++) await udpChecker.checkOnce();
      assert.equal(udpChecker.state(`dns ${b.ip}:80`), 'down', 'demoted after fall = 2 failed UDP probes');
    } finally {
      await lab.refuseNewConnections(name, false);
    }
    await udpChecker.checkOnce();
    assert.equal(udpChecker.state(`dns ${b.ip}:80`), 'up');
    // The direct TCP probe above (one, before the refusal) is the only TCP connection so far; the UDP checker's 4
    // rounds opened none. Positive control: a TCP check's round is counted.
    const afterUdp = await accepted();
    assert.equal(afterUdp, before, 'the UDP load balancer is never probed with TCP');
    await checker({ type: 'tcp' }).checkOnce();
    assert.equal(await accepted(), afterUdp + 1, 'a TCP probe is counted by the backend');
  });

  test('(1) backend add, drain, remove with ECMP flips; request/response load: 0 flows changed backend', async (t) => {
    const t4 = await startTraffic(lab, { ...DNS, count: 200, rate: 150, ...flows() });
    const t6 = await startTraffic(lab, { ...DNS6, count: 60, rate: 100, ...flows() });
    const rr = await startTraffic(lab, { ...DNS, count: 0, rate: 40, ...flows() });
    const groups = [t4, t6, rr];
    // Request/response: 20 new flows a second all along, the oldest closed as the new ones come.
    const churn = setInterval(() => {
      rr.open(20, 40);
      rr.close(10);
    }, 1000);
    try {
      await t4.waitOpened(200);
      await t6.waitOpened(60);
      await sleep(1000);
      const w0 = await walkReturns();

      t.diagnostic(`add: ${await changeWithFlips(addLabBackend(lab, config, 'dns', 'host2-b2'), [t4, rr])}`);
      await noneBroken(...groups);
      const w1 = await walkReturns();

      const h11v6 = lab.backend('host1-b1').ip6;
      const drained = editBackends(
        setLabBackendState(lab, config, 'dns', 'host1-b1', 'draining'),
        'dns6',
        (bs) => bs.map((b) => (b.address === h11v6 ? { ...b, state: 'draining' } : b)),
      );
      t.diagnostic(`drain: ${await changeWithFlips(drained, [t4, t6, rr])}`);
      await noneBroken(...groups);
      const kept = (await t4.report()).perBackend['host1-b1']?.alive ?? 0;
      assert.ok(kept > 0, 'the drained backend keeps its flows');

      const removal = await changeWithFlips(removeLabBackend(lab, config, 'dns', 'host1-b1'), [t4, rr]);
      t.diagnostic(`remove while ${kept} flows live on it: ${removal}`);
      await sleep(3000);
      await noneBroken(...groups);
      const w2 = await walkReturns();

      const c = await Promise.all(groups.map((g) => g.report()));
      t.diagnostic(`dns flows: ${spread(c[0])}; dns6: ${spread(c[1])}`);
      t.diagnostic(
        `request/response: ${c[2].opened} flows opened, ${c[2].echoes} answers, failed ${c[2].failed}`,
      );
      t.diagnostic(`new flows sent back to the primary to commit: add ${w1 - w0}, drain + remove ${w2 - w1}`);
      // Every flow opened (the 200 and those opened during the flips) is alive on its first backend.
      assert.ok(
        c[0].opened >= 200 && c[0].alive === c[0].opened,
        `dns: ${c[0].alive} of ${c[0].opened} alive`,
      );
      assert.ok(
        c[1].opened >= 60 && c[1].alive === c[1].opened,
        `dns6: ${c[1].alive} of ${c[1].opened} alive`,
      );
      assert.ok(c[2].opened > 100, `request/response flows opened: ${c[2].opened}`);
      assert.ok(w2 - w0 > 0, 'new flows of moving slots walked the chain and went back to be committed');
    } finally {
      clearInterval(churn);
      await Promise.all(groups.map((g) => g.stop().catch(() => g.kill())));
    }
  });

  test('(2) skewed rollout, gw1 one generation behind, ECMP flips: 0 flows changed backend', async (t) => {
    const t4 = await startTraffic(lab, { ...DNS, count: 200, rate: 150, ...flows() });
    try {
      await t4.waitOpened(200);
      await sleep(1000);
      config = setLabBackendWeight(lab, config, 'dns', 'host2-b1', 4);
      const r = await skewedChange(ctl, config, () => ecmpFlips(lab, [t4], 30));
      t.diagnostic(`skewed rollout: published g${r.published.join(', g')}`);
      await sleep(3000);
      await noneBroken(t4);
      const c = await t4.report();
      assert.equal(c.opened, 260);
      t.diagnostic(`flows: ${spread(c)}`);
    } finally {
      await t4.stop().catch(() => t4.kill());
    }
  });

  test('NEGATIVE CONTROL: hosts without the UDP walk, the same backend add: flows change backend', async (t) => {
    const legacy = new LabController(lab, { compile: { udpWalk: false }, incremental: true });
    await legacy.start(config);
    const t4 = await startTraffic(lab, { ...DNS, count: 200, rate: 150, ...flows() });
    try {
      await t4.waitOpened(200);
      await sleep(1000);
      const added = addLabBackend(lab, config, 'dns', 'host3-b2');
      await Promise.all([legacy.change(added, { timeoutMs: 90_000 }), ecmpFlips(lab, [t4], 0)]);
      await sleep(3000);
      const c = await t4.report();
      t.diagnostic(`negative control: ${c.broken} of 200 broken (${JSON.stringify(c.brokenByReason)})`);
      assert.ok(
        (c.brokenByReason['backend-changed'] ?? 0) > 0,
        'without the walk, flows of moved slots must change backend',
      );
    } finally {
      await t4.stop().catch(() => t4.kill());
    }
  });
  test('(3) real planner and agents: a backend failing its UDP probe is demoted, never TCP-probed; HTTP too', async (t) => {
    const name = 'host3-b1';
    const b = lab.backend(name);
    // dns keeps its default check (UDP, no ICMP port-unreachable); dns6 probes the backends' HTTP health port.
    const http = { type: 'http', port: backendHttpPort(lab.config.backendPort), path: '/health' } as const;
    const cpConfig: Config = {
      ...config,
      loadBalancers: config.loadBalancers.map((lb) =>
        lb.name === 'dns6' ? { ...lb, healthCheck: http } : lb,
      ),
    };
    const backends = lab.backends().map((x) => x.name);
    const acceptedBefore = await Promise.all(backends.map(tcpAccepted));
    const cp = await startControlPlane(lab, { config: cpConfig, planners: 1, fence: false });
    const client = new OvsdbClient({ remotes: [cp.db], database: DB_NAME });
    let t4: Traffic | undefined;
    try {
      await client.connect();
      const store = (await client.monitorDatabases(splitMonitor(STATUS_MONITOR))).replica;
      /** A backend's line of `sluice status` (statusReport). */
      const row = (lb: string, address: string) =>
        statusReport(store).backends.find(
          (x) => x.lb === lb && x.backend === backendKey({ address, port: 80 }),
        );
      const healthOf = (lb: string, address: string) => row(lb, address)?.health;
      /** Slots of `lb` in the latest generation whose primary is `address`. */
      const primaries = (lb: string, address: string) => {
        const p = readGeneration(store)?.pools.get(lb);
        return p === undefined ? 0 : [...p.primary].filter((m) => p.members[m]?.address === address).length;
      };
      const probed = statusReport(store).backends;
      await waitFor(
        () => statusReport(store).backends.every((x) => x.health === 'up'),
        'every backend up by its check',
      );
      t4 = await startTraffic(lab, { ...DNS, count: 100, rate: 100, ...flows() });
      await t4.waitOpened(100);
      await sleep(1000);
      const onIt = (await t4.report()).perBackend[name]?.opened ?? 0;
      assert.ok(onIt > 0 && primaries('dns', b.ip) > 0, `${name} serves dns: ${onIt} flows`);
      const t0 = Date.now();
      await lab.refuseNewConnections(name, true);
      await waitFor(
        () => healthOf('dns', b.ip) === 'down' && healthOf('dns6', b.ip6) === 'down',
        `${name} down by its UDP (dns) and HTTP (dns6) probes`,
      );
      const tDown = Date.now() - t0;
      // `sluice status` names each backend's check and its latest probe (written with its health by its agent).
      assert.deepEqual(
        [row('dns', b.ip), row('dns6', b.ip6), row('dns', lab.backend('host2-b1').ip)].map((x) => [
          x?.check,
          x?.health,
          x?.lastProbe,
        ]),
        [
          ['udp no-icmp', 'down', 'fail'],
          [`http :${http.port}/health 200`, 'down', 'fail'],
          ['udp no-icmp', 'up', 'pass'],
        ],
      );
      await waitFor(
        () => primaries('dns', b.ip) === 0 && primaries('dns6', b.ip6) === 0,
        `the planner moves ${name}'s slots away`,
        60_000,
      );
      await waitConverged(cp, 90_000);
      t.diagnostic(
        `${name} refusing: down after ${tDown} ms, its slots moved and acknowledged after ${Date.now() - t0} ms`,
      );
      t4.open(50);
      await waitFor(
        () => t4!.counters().opened + t4!.counters().failed >= 150,
        '50 new flows answered or failed',
      );
      await sleep(3000);
      const c = await t4.report();
      // A new flow the client kernel happened to give the source port of one of the demoted backend's broken flows
      // is that flow again (same 5-tuple, its conntrack entry still alive): kept on its backend, which refuses it.
      const reused = new Set(
        t4
          .brokenEvents()
          .filter((e) => e.backend === name)
          .map((e) => `${e.runner}:${e.localPort}`),
      );
      const failedNew = t4
        .failedEvents()
        .filter((e) => !(e.reason === 'refused' && reused.has(`${e.runner}:${e.localPort}`)));
      t.diagnostic(
        `new flows failed: ${JSON.stringify(t4.failedEvents())}; ${name}'s broken flows: ${[...reused].join(' ')}`,
      );
      const brokenElsewhere = Object.entries(c.perBackend)
        .filter(([n]) => n !== name)
        .reduce((n, [, x]) => n + x.broken, 0);
      t.diagnostic(`flows: ${spread(c)}; broken ${JSON.stringify(c.brokenByReason)}`);
      assert.equal(brokenElsewhere, 0, `only ${name}'s flows may break: ${brokenInfo(t4)}`);
      assert.deepEqual(failedNew, [], 'every new flow was answered');
      assert.equal(c.perBackend[name]?.opened ?? 0, onIt, 'no new flow lands on the demoted backend');
      t.diagnostic(`backends probed: ${probed.map((x) => `${x.lb} ${x.backend}`).join(', ')}`);
    } finally {
      await lab.refuseNewConnections(name, false);
      await t4?.stop().catch(() => t4?.kill());
      client.close();
      await stopControlPlane(lab.facts.runDir);
    }
    // Every lab backend (the UDP load balancers' and the rest) accepted no TCP connection while the agents ran.
    assert.deepEqual(await Promise.all(backends.map(tcpAccepted)), acceptedBefore, 'no TCP probe was sent');
  });
});
