// Health checking of local backends (src/agent/health.ts) with a FAKE probe (a scripted sequence of results), and the
// real TCP, UDP and HTTP probes against loopback servers (real sockets).

import * as assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import {
  HealthChecker,
  httpProbe,
  localProbe,
  nextHealth,
  nextProbeAt,
  type Probe,
  type ProbeSpec,
  tcpProbe,
  udpProbe,
} from '../../src/agent/health.ts';
import { healthCheckOf, healthCheckText } from '../../src/model/types.ts';

describe('agent health checks', () => {
  test('transition table: rise/fall streaks', () => {
    assert.equal(nextHealth('unknown', true, 1, 2, 3), 'unknown');
    assert.equal(nextHealth('unknown', true, 2, 2, 3), 'up');
    assert.equal(nextHealth('up', false, 2, 2, 3), 'up');
    assert.equal(nextHealth('up', false, 3, 2, 3), 'down');
    assert.equal(nextHealth('down', true, 1, 2, 3), 'down');
    assert.equal(nextHealth('down', true, 2, 2, 3), 'up');
  });

  test('checker with a fake probe: up after rise, down after fall, back up after rise', async () => {
    const script = [true, true, false, false, true, false, false, false, true, true];
    let i = 0;
    const c = new HealthChecker({ rise: 2, fall: 3 }, async () => script[i++] ?? true);
    const changes: string[] = [];
    c.onChange = (id, from, to) => changes.push(`${id} ${from}->${to}`);
    c.setTargets([{ id: 'web a', address: '10.0.0.1', port: 80 }]);
    const states: string[] = [];
    const last: Array<boolean | undefined> = [c.lastOk('web a')];
    for (let k = 0; k < script.length; k++) {
      await c.checkOnce();
      states.push(c.state('web a'));
      last.push(c.lastOk('web a'));
    }
    assert.deepEqual(states, ['unknown', 'up', 'up', 'up', 'up', 'up', 'up', 'down', 'down', 'up']);
    assert.deepEqual(last, [undefined, ...script], 'the latest probe result, before the state follows it');
    assert.deepEqual(changes, ['web a unknown->up', 'web a up->down', 'web a down->up']);
  });

  test('one probe per distinct address and port per round, its result shared by every target (one per VIP)', async () => {
    const calls: string[] = [];
    const c = new HealthChecker({ rise: 1, fall: 1 }, async (address, port) => {
      calls.push(`${address}:${port}`);
      return address === '10.0.0.1';
    });
    c.setTargets([
      ...Array.from({ length: 1000 }, (_, i) => ({ id: `v${i} 10.0.0.1:80`, address: '10.0.0.1', port: 80 })),
      { id: 'v0 10.0.0.2:80', address: '10.0.0.2', port: 80 },
      { id: 'v0 10.0.0.1:81', address: '10.0.0.1', port: 81 },
    ]);
    await c.checkOnce();
    assert.deepEqual(calls.sort(), ['10.0.0.1:80', '10.0.0.1:81', '10.0.0.2:80']);
    assert.equal(c.state('v999 10.0.0.1:80'), 'up');
    assert.equal(c.state('v0 10.0.0.2:80'), 'down');
  });

  // 1,000 VIPs x 20 backends of their own: 20,000 distinct probes. The fake probe stands for the host's limits (file
  // descriptors, processes): it fails whenever more than 1,000 probes are in flight at once, as a connect fails with
  // EMFILE or a spawn with EAGAIN. Negative control: without a bound, every probe of a round is in flight at once.
  const VIPS_20K = Array.from({ length: 20_000 }, (_, i) => ({
    id: `v${i >> 4} b${i}`,
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    port: 8080,
  }));
  function limitedProbe(): { probe: Probe; maxInFlight: () => number } {
    let inFlight = 0;
    let max = 0;
    const probe: Probe = async () => {
      inFlight++;
      max = Math.max(max, inFlight);
      const starved = inFlight > 1000;
      await new Promise((r) => setImmediate(r));
      inFlight--;
      return !starved;
    };
    return { probe, maxInFlight: () => max };
  }
  async function roundsOf20k(maxInFlight: number): Promise<{ up: number; down: number; peak: number }> {
    const { probe, maxInFlight: peak } = limitedProbe();
    const c = new HealthChecker({ rise: 2, fall: 3, maxInFlight }, probe);
    c.setTargets(VIPS_20K);
    for (let r = 0; r < 3; r++) await c.checkOnce();
    const states = [...c.states().values()].map((x) => x.state);
    return {
      up: states.filter((x) => x === 'up').length,
      down: states.filter((x) => x === 'down').length,
      peak: peak(),
    };
  }

  test('20,000 distinct backends: at most maxInFlight probes at once, all stay up (negative control: unbounded)', async () => {
    const bounded = await roundsOf20k(64);
    assert.equal(bounded.peak, 64);
    assert.equal(bounded.up, 20_000);
    const unbounded = await roundsOf20k(Number.POSITIVE_INFINITY);
    assert.equal(unbounded.peak, 20_000, 'every probe of the round at once, as before the bound');
    assert.equal(unbounded.down, 19_000, 'the probes past the first 1,000 starve: their backends go down');
  });

  test('probes are spread over the interval: each tick starts a small share (negative control: now + interval)', async () => {
    const interval = 30_000;
    const tick = 100;
    /** The most probes falling due in one tick over two intervals, for a rule giving a probe's next time. */
    const busiestTick = (next: (now: number, key: string) => number): number => {
      const perTick = new Map<number, number>();
      for (const t of VIPS_20K) {
        const key = `${t.address} ${t.port}`;
        let at = next(0, key); // after the first round, all at 0
        while (at < 2 * interval) {
          const k = Math.floor(at / tick);
          perTick.set(k, (perTick.get(k) ?? 0) + 1);
          at = next(at, key);
        }
      }
      return Math.max(...perTick.values());
    };
    const even = (20_000 * tick) / interval; // 67
    const spread = busiestTick((now, key) => nextProbeAt(now, interval, key));
    assert.ok(spread < 3 * even, `busiest tick ${spread} probes, even share ${even.toFixed(0)}`);
    assert.equal(
      busiestTick((now) => now + interval),
      20_000,
    );
    // The period stays the interval, and the first wait is between half an interval and one and a half.
    const first = nextProbeAt(1000, interval, 'k');
    assert.ok(first >= 1000 + interval / 2 && first < 1000 + 1.5 * interval);
    assert.equal(nextProbeAt(first, interval, 'k'), first + interval);
  });

  test('checkDue: after the first round, a round starts only the probes due in it', async () => {
    let probes = 0;
    const c = new HealthChecker({ intervalMs: 30_000 }, async () => {
      probes++;
      return true;
    });
    c.setTargets(VIPS_20K.slice(0, 3000));
    await c.checkDue(0);
    assert.equal(probes, 3000, 'every new target at once (bounded by maxInFlight)');
    probes = 0;
    let busiest = 0;
    // First probes due in [15 s, 45 s), the next ones 30 s later: by 75 s every target was probed twice more.
    for (let t = 100; t <= 75_000; t += 100) {
      const before = probes;
      await c.checkDue(t);
      busiest = Math.max(busiest, probes - before);
    }
    assert.equal(probes, 6000, 'two more probes of each target');
    assert.ok(busiest < 30, `busiest tick ${busiest} of 3000 targets (even share 10)`);
  });

  test('targets with the same check share it; anyDown follows the states; a changed check starts over', async () => {
    let ok = true;
    const c = new HealthChecker({ rise: 1, fall: 1 }, async () => ok);
    const tcp = (i: number) => ({
      id: `v${i} a`,
      address: '10.0.0.1',
      port: 80,
      check: { type: 'tcp' } as const,
    });
    c.setTargets([tcp(0), tcp(1), { id: 'dns a', address: '10.0.0.1', port: 53, check: { type: 'udp' } }]);
    assert.equal(c.check('v0 a'), c.check('v1 a'), 'one check object for equal checks');
    assert.notEqual(c.check('v0 a'), c.check('dns a'));
    assert.equal(c.anyDown(), false);
    await c.checkOnce();
    ok = false;
    await c.checkOnce();
    assert.equal(c.anyDown(), true);
    assert.equal(c.state('v0 a'), 'down');
    // The same targets again keep their state; one with another check starts unknown.
    c.setTargets([tcp(0), { ...tcp(1), check: { type: 'tcp', rise: 3 } }]);
    assert.equal(c.state('v0 a'), 'down');
    assert.equal(c.state('v1 a'), 'unknown');
    assert.notEqual(c.check('v0 a'), c.check('v1 a'));
    c.setTargets([tcp(1)]);
    assert.equal(c.anyDown(), false, 'the down target is gone');
  });

  test('a new target shares the check of a target the call skipped as unchanged', () => {
    const c = new HealthChecker({}, async () => true);
    const kept = { id: 'v0 a', address: '10.0.0.1', port: 80, check: { type: 'tcp' } as const };
    c.setTargets([kept]);
    // The agent hands the unchanged target over as the same object: setTargets skips it, yet the new target with the
    // same check must get the very check object it holds (100,000 targets at 10,000 VIPs share a few checks).
    c.setTargets([kept, { id: 'v1 a', address: '10.0.0.2', port: 80, check: { type: 'tcp' } }]);
    assert.equal(c.check('v1 a'), c.check('v0 a'));
  });

  test('setTargets from an iterable: the same target objects keep their state, a changed one starts over, the rest go', async () => {
    // The agent hands over the targets of unchanged load balancers as the very objects it gave before (a generator
    // over them, no array of all); the checker skips those and forgets whatever the call did not name.
    let ok = false;
    const c = new HealthChecker({ rise: 1, fall: 1 }, async () => ok);
    const t = (i: number, port = 80) => ({ id: `v${i} a`, address: '10.0.0.1', port });
    const [a, b, d] = [t(0), t(1), t(2)];
    function* gen(...xs: ReturnType<typeof t>[]) {
      yield* xs;
    }
    c.setTargets(gen(a, b, d));
    await c.checkOnce();
    assert.deepEqual([c.state('v0 a'), c.state('v1 a'), c.state('v2 a')], ['down', 'down', 'down']);
    ok = true;
    const version = c.version;
    // a: the same object; b: a new object with the same fields; d: another port; v3: new; nothing else survives.
    c.setTargets(gen(a, t(1), t(2, 81), t(3)));
    assert.ok(c.version > version, 'readers see that the targets changed');
    assert.equal(c.state('v0 a'), 'down', 'the same object keeps its state');
    assert.equal(c.state('v1 a'), 'down', 'an equal target keeps its state');
    assert.equal(c.state('v2 a'), 'unknown', 'another port starts over');
    assert.equal(c.state('v3 a'), 'unknown');
    c.setTargets(gen(a));
    assert.deepEqual([...c.states().keys()], ['v0 a'], 'the targets not named are forgotten');
    await c.checkOnce();
    assert.equal(c.state('v0 a'), 'up', 'the kept target is still probed');
  });

  test('tcpProbe: a listening loopback port succeeds, a closed one fails', async () => {
    const srv = createServer((s) => s.end());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    assert.equal(await tcpProbe('127.0.0.1', port, 500), true);
    await new Promise<void>((r) => srv.close(() => r()));
    assert.equal(await tcpProbe('127.0.0.1', port, 500), false);
  });

  test("per load balancer checks: the probe gets each target's check; rise, fall and interval are its own", async () => {
    const calls: string[] = [];
    let udpOk = true;
    const c = new HealthChecker(
      { rise: 2, fall: 3, intervalMs: 1000 },
      async (address, port, timeoutMs, spec) => {
        calls.push(`${spec?.type} ${address}:${port} ${timeoutMs}`);
        return spec?.type === 'udp' ? udpOk : true;
      },
    );
    c.setTargets([
      { id: 'web a', address: '10.0.0.1', port: 80 },
      // A UDP load balancer without a check of its own: healthCheckOf gives the UDP probe, never TCP.
      { id: 'dns a', address: '10.0.0.1', port: 53, check: healthCheckOf({ protocol: 'udp' }) },
      {
        id: 'api a',
        address: '10.0.0.1',
        port: 8080,
        check: { type: 'http', path: '/h', rise: 1, intervalMs: 200, timeoutMs: 50 },
      },
    ]);
    await c.checkOnce();
    assert.deepEqual(calls.sort(), ['http 10.0.0.1:8080 50', 'tcp 10.0.0.1:80 500', 'udp 10.0.0.1:53 500']);
    assert.equal(c.state('api a'), 'up', 'its own rise: 1');
    assert.equal(c.state('web a'), 'unknown', 'the default rise: 2');
    assert.equal(c.check('dns a')?.type, 'udp');
    udpOk = false;
    for (let i = 0; i < 3; i++) await c.checkOnce();
    assert.equal(c.state('dns a'), 'down');
    assert.equal(c.state('web a'), 'up');
    // Due probes only: right after a round nothing is due; the 200 ms check is due before the 1000 ms ones.
    calls.length = 0;
    const now = Date.now();
    await c.checkDue(now);
    assert.deepEqual(calls, []);
    await c.checkDue(now + 300);
    assert.deepEqual(calls, ['http 10.0.0.1:8080 50']);
    // A changed check starts the target over.
    c.setTargets([{ id: 'dns a', address: '10.0.0.1', port: 53, check: { type: 'udp', expect: 'reply' } }]);
    assert.equal(c.state('dns a'), 'unknown');
  });

  test('udpProbe: reply and no-icmp against a loopback UDP server and a closed port', async () => {
    const srv = createSocket('udp4');
    const got: string[] = [];
    srv.on('message', (m, r) => {
      got.push(m.toString());
      srv.send('pong', r.port, r.address);
    });
    await new Promise<void>((r) => srv.bind(0, '127.0.0.1', () => r()));
    const port = srv.address().port;
    const silent = createSocket('udp4'); // bound, never answers
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    const quiet = silent.address().port;
    const reply: ProbeSpec = { type: 'udp', expect: 'reply', send: 'ping' };
    const noIcmp: ProbeSpec = { type: 'udp', expect: 'no-icmp' };
    try {
      assert.equal(await udpProbe('127.0.0.1', port, 500, reply), true, 'answered');
      assert.deepEqual(got, ['ping'], 'the configured payload');
      assert.equal(await udpProbe('127.0.0.1', quiet, 300, reply), false, 'no answer within the timeout');
      assert.equal(await udpProbe('127.0.0.1', quiet, 300, noIcmp), true, 'silent, but no ICMP error');
      srv.close();
      assert.equal(
        await localProbe('127.0.0.1', port, 500, noIcmp),
        false,
        'closed port: ICMP port-unreachable',
      );
      assert.equal(await udpProbe('127.0.0.1', port, 500, reply), false);
    } finally {
      silent.close();
    }
  });

  test('httpProbe: the expected status passes, another status or a closed port fails', async () => {
    const srv = createHttpServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? 200 : req.url === '/ready' ? 204 : 503;
      res.end();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    assert.equal(await httpProbe('127.0.0.1', port, 500, { type: 'http', path: '/healthz' }), true);
    assert.equal(
      await httpProbe('127.0.0.1', port, 500, { type: 'http', path: '/ready', status: 204 }),
      true,
    );
    assert.equal(await httpProbe('127.0.0.1', port, 500, { type: 'http', path: '/other' }), false, '503');
    assert.equal(
      await localProbe('127.0.0.1', port, 500, { type: 'https', path: '/healthz' }),
      false,
      'no TLS',
    );
    await new Promise<void>((r) => srv.close(() => r()));
    assert.equal(await httpProbe('127.0.0.1', port, 500, { type: 'http' }), false, 'closed');
  });
  test('healthCheckText: what each kind of check probes, in words (status, status page)', () => {
    assert.equal(healthCheckText(healthCheckOf({ protocol: 'udp' })), 'udp no-icmp');
    assert.equal(healthCheckText(healthCheckOf({ protocol: 'tcp' })), 'tcp');
    assert.equal(healthCheckText({ type: 'udp', port: 5353, expect: 'reply' }), 'udp:5353 reply');
    assert.equal(healthCheckText({ type: 'http', port: 8081, path: '/health' }), 'http :8081/health 200');
    assert.equal(healthCheckText({ type: 'https', status: 204 }), 'https / 204');
    assert.equal(healthCheckText({ type: 'tcp', port: 9000 }), 'tcp:9000');
  });
});
