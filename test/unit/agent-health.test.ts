// Health checking of local backends (src/agent/health.ts) with a FAKE probe (a scripted sequence of results), and the
// real TCP probe against a loopback listener.

import * as assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { HealthChecker, nextHealth, tcpProbe } from '../../src/agent/health.ts';

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
    for (let k = 0; k < script.length; k++) {
      await c.checkOnce();
      states.push(c.state('web a'));
    }
    assert.deepEqual(states, ['unknown', 'up', 'up', 'up', 'up', 'up', 'up', 'down', 'down', 'up']);
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

  test('tcpProbe: a listening loopback port succeeds, a closed one fails', async () => {
    const srv = createServer((s) => s.end());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    assert.equal(await tcpProbe('127.0.0.1', port, 500), true);
    await new Promise<void>((r) => srv.close(() => r()));
    assert.equal(await tcpProbe('127.0.0.1', port, 500), false);
  });
});
