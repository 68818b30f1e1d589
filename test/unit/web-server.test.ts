// The daemons' HTTP endpoint (src/web/server.ts) on loopback: a failing handler is a 500 and the server keeps
// serving (security finding 6: one request with a malformed Plan_Pool row used to exit the planner), limits are set,
// malformed requests and unknown routes are answered without harm.

import * as assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { startMetricsServer } from '../../src/web/server.ts';

function rawRequest(address: string, text: string): Promise<string> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const s = connect(port, host, () => s.end(text));
    let out = '';
    s.on('data', (d) => {
      out += d.toString();
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
}

describe('web server', () => {
  test('a throwing /status is a 500; the server keeps serving /metrics and /status', async () => {
    const registry = new Registry();
    new Counter({ name: 'sluice_test_total', help: 'test', registers: [registry] }).inc(3);
    let broken = true;
    const errors: string[] = [];
    const web = await startMetricsServer(
      '127.0.0.1:0',
      registry,
      () => {
        if (broken) throw new TypeError("Cannot read properties of undefined (reading 'length')");
        return { ok: true };
      },
      {},
      { onError: (route) => errors.push(route) },
    );
    try {
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`http://${web.address}/status`);
        assert.equal(r.status, 500);
        assert.match(await r.text(), /internal error serving \/status: Cannot read properties/);
      }
      assert.deepEqual(errors, ['/status', '/status', '/status']);
      const m = await fetch(`http://${web.address}/metrics`);
      assert.equal(m.status, 200);
      assert.match(await m.text(), /^sluice_test_total 3$/m);
      broken = false;
      const ok = await fetch(`http://${web.address}/status`);
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { ok: true });
    } finally {
      await web.close();
    }
  });

  test('an extra route that rejects is a 500; unknown paths 404, other methods 405', async () => {
    const web = await startMetricsServer('127.0.0.1:0', new Registry(), () => ({}), {
      '/boom': async () => {
        throw new Error('boom');
      },
      '/page': () => ({ type: 'text/html; charset=utf-8', body: '<p>hi</p>' }),
    });
    try {
      assert.equal((await fetch(`http://${web.address}/boom`)).status, 500);
      const page = await fetch(`http://${web.address}/page`);
      assert.equal(page.status, 200);
      assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
      assert.equal((await fetch(`http://${web.address}/nope`)).status, 404);
      assert.equal((await fetch(`http://${web.address}/status`, { method: 'POST' })).status, 405);
      // Inherited object keys are not routes.
      assert.equal((await fetch(`http://${web.address}/constructor`)).status, 404);
    } finally {
      await web.close();
    }
  });

  test('limits are set; a malformed request is dropped and the server still answers', async () => {
    const web = await startMetricsServer(
      '127.0.0.1:0',
      new Registry(),
      () => ({ up: 1 }),
      {},
      { maxConnections: 7 },
    );
    try {
      assert.equal(web.server.maxConnections, 7);
      assert.ok(web.server.headersTimeout > 0 && web.server.headersTimeout <= 5000);
      assert.ok(web.server.requestTimeout > 0 && web.server.requestTimeout <= 10_000);
      const garbage = await rawRequest(web.address, 'GARBAGE \x00\x01 nonsense\r\n\r\n');
      assert.doesNotMatch(garbage, /200 OK/);
      const r = await fetch(`http://${web.address}/status`);
      assert.deepEqual(await r.json(), { up: 1 });
    } finally {
      await web.close();
    }
  });
});
