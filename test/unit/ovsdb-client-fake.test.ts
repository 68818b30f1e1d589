// OvsdbClient against a FAKE ovsdb-server: a scripted JSON-RPC peer on a unix socket in a temp dir, so the
// client's corner cases happen on purpose: a notification in the same write as the monitor reply, messages cut
// into 1-byte writes, garbage on the wire, an "echo" from the server, a reconnect whose snapshot differs.
// The same behaviour against the real server: test/e2e/ovsdb-client.test.ts.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { OvsdbClient } from '../../src/ovsdb/client.ts';
import type { DatabaseSchema } from '../../src/ovsdb/protocol.ts';
import type { RowChange } from '../../src/ovsdb/replica.ts';
import { onJsonMessages } from '../scenarios/json-messages.ts';

const SCHEMA: DatabaseSchema = {
  name: 'D',
  version: '1.0.0',
  tables: {
    T: {
      columns: {
        name: { type: 'string' },
        tags: { type: { key: 'string', min: 0, max: 'unlimited' } },
        n: { type: { key: 'integer', min: 0, max: 1 } },
      },
    },
  },
};
const U1 = '00000000-0000-0000-0000-000000000001';
const U2 = '00000000-0000-0000-0000-000000000002';
const U3 = '00000000-0000-0000-0000-000000000003';

interface Peer {
  readonly socket: net.Socket;
  /** Every request the client sent, in order. */
  readonly requests: { method: string; params: unknown[]; id: unknown }[];
  readonly replies: unknown[];
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-ovsdb-fake-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `text` one byte per write, with a macrotask between writes. */
async function dribble(sock: net.Socket, text: string): Promise<void> {
  for (const b of Buffer.from(text)) {
    sock.write(Buffer.from([b]));
    await new Promise((r) => setImmediate(r));
  }
}

test('fake server: split messages, notification after the reply in one write, garbage, echo, resync', async () => {
  const path = join(dir, 'fake.sock');
  const peers: Peer[] = [];
  let snapshot: Record<string, unknown> = {
    T: { [U1]: { initial: { name: 'a', tags: ['set', ['x', 'y']], n: 1 } } },
  };
  const server = net.createServer((socket) => {
    const peer: Peer = { socket, requests: [], replies: [] };
    peers.push(peer);
    onJsonMessages(socket, async (msg) => {
      if (msg.method === undefined) {
        peer.replies.push(msg);
        return;
      }
      peer.requests.push(msg);
      const reply = (result: unknown) => JSON.stringify({ id: msg.id, result, error: null });
      if (msg.method === 'get_schema') await dribble(socket, reply(SCHEMA));
      else if (msg.method === 'monitor_cond') {
        // The reply and an update2 for the same monitor in ONE write: the update must apply after the snapshot.
        const upd = {
          method: 'update2',
          id: null,
          params: [msg.params[1], { T: { [U1]: { modify: { tags: ['set', ['x', 'z']], n: ['set', []] } } } }],
        };
        socket.write(reply(snapshot) + JSON.stringify(upd));
      } else if (msg.method === 'echo') socket.write(reply(msg.params));
      else socket.write(JSON.stringify({ id: msg.id, result: null, error: { error: 'unknown method' } }));
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  const c = new OvsdbClient({ remotes: [`unix:${path}`], backoffInitialMs: 10, probeIntervalMs: 0 });
  try {
    const m = await c.monitor('D', { T: {} });
    const updates: { changes: RowChange[]; info: { resync: boolean } }[] = [];
    m.on('update', (changes: RowChange[], info: { resync: boolean }) => updates.push({ changes, info }));
    // The monitor_cond request named every column, since the caller named none.
    const mon = peers[0]!.requests.find((r) => r.method === 'monitor_cond')!;
    assert.deepEqual((mon.params[2] as { T: { columns: string[] }[] }).T[0]!.columns, ['name', 'tags', 'n']);
    await waitFor(() => m.replica.get('T', U1)?.n === undefined);
    assert.deepEqual(m.replica.get('T', U1), { _uuid: U1, name: 'a', tags: ['y', 'z'], n: undefined });

    // The server's own echo is answered with the same params.
    peers[0]!.socket.write(JSON.stringify({ method: 'echo', params: ['ping', 1], id: 'echo' }));
    await waitFor(() => peers[0]!.replies.length > 0);
    assert.deepEqual(peers[0]!.replies[0], { id: 'echo', result: ['ping', 1], error: null });
    assert.equal(c.serverEchoes, 1);

    // Garbage on the wire: the client drops the session and reconnects; the new snapshot differs.
    snapshot = {
      T: {
        [U1]: { initial: { name: 'a', tags: ['set', ['y', 'z']] } },
        [U2]: { initial: { name: 'b' } },
      },
    };
    peers[0]!.socket.write('xyz');
    await waitFor(() => c.connects === 2 && c.state === 'connected');
    await waitFor(() => updates.some((u) => u.info.resync));
    const resync = updates.find((u) => u.info.resync)!.changes;
    // Compared with the replica before: U2 inserted; U1 unchanged until the update2 after the snapshot.
    assert.deepEqual(
      resync.map((ch) => [
        ch.uuid,
        ch.old === undefined ? 'insert' : ch.new === undefined ? 'delete' : 'modify',
      ]),
      [[U2, 'insert']],
    );
    assert.equal(m.replica.rows('T').length, 2);

    // A third session whose snapshot lost a row reports the delete.
    snapshot = { T: { [U3]: { initial: { name: 'c' } } } };
    peers[1]!.socket.destroy();
    await waitFor(() => c.connects === 3 && c.state === 'connected');
    await waitFor(() => m.replica.get('T', U3) !== undefined);
    const last = updates.filter((u) => u.info.resync).at(-1)!.changes;
    assert.deepEqual(last.map((ch) => ch.uuid).sort(), [U1, U2, U3]);
  } finally {
    c.close();
    for (const p of peers) p.socket.destroy();
    await new Promise((r) => server.close(r));
  }
});

/**
 * A FAKE store that answers get_schema and echo at once but holds every monitor reply for `holdMs` (Infinity: never)
 * and, while holding, answers nothing at all: a single-threaded ovsdb-server building a large snapshot. `silent()`
 * makes it stop answering anything from then on (a frozen server on a connected session); `insert(n)` sends an
 * update3 inserting `n` more rows (the store growing after the snapshot).
 */
async function slowSnapshotServer(path: string, holdMs: number, rows = 1) {
  const sockets: net.Socket[] = [];
  let frozen = false;
  let monitors = 0;
  let monitorId: unknown;
  const uuid = (i: number) => `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`;
  const snapshot: Record<string, unknown> = {};
  for (let i = 0; i < rows; i++) snapshot[uuid(i)] = { initial: { name: `row-${i}` } };
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    let busyUntil = 0;
    onJsonMessages(socket, (msg) => {
      if (msg.method === undefined || frozen) return;
      const reply = (result: unknown) => JSON.stringify({ id: msg.id, result, error: null });
      const send = (text: string) => {
        const wait = busyUntil - performance.now();
        if (wait === Number.POSITIVE_INFINITY) return;
        if (wait > 0) setTimeout(() => socket.writable && !frozen && socket.write(text), wait);
        else socket.write(text);
      };
      if (msg.method === 'get_schema') send(reply(SCHEMA));
      else if (msg.method === 'echo') send(reply(msg.params));
      else if (msg.method === 'monitor_cond_since' || msg.method === 'monitor_cond') {
        monitors++;
        monitorId = msg.params[1];
        if (holdMs === Number.POSITIVE_INFINITY) {
          busyUntil = Number.POSITIVE_INFINITY;
          return;
        }
        busyUntil = performance.now() + holdMs;
        const result = msg.method === 'monitor_cond' ? { T: snapshot } : [false, U1, { T: snapshot }];
        send(reply(result));
      } else send(JSON.stringify({ id: msg.id, result: null, error: { error: 'unknown method' } }));
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    monitors: () => monitors,
    insert: (n: number) => {
      const rowsIn: Record<string, unknown> = {};
      for (let i = rows; i < rows + n; i++) rowsIn[uuid(i)] = { insert: { name: `row-${i}` } };
      const params = [monitorId, U2, { T: rowsIn }];
      for (const s of sockets) s.write(JSON.stringify({ method: 'update3', id: null, params }));
    },
    silent: () => {
      frozen = true;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A client with a 100 ms probe on `sock` in the temp dir, and the reasons of every session it dropped. */
function probedClient(sock: string, negotiateTimeoutMs: number, backoffInitialMs = 10) {
  const errors: string[] = [];
  const c = new OvsdbClient({
    remotes: [`unix:${join(dir, sock)}`],
    backoffInitialMs,
    probeIntervalMs: 100,
    negotiateTimeoutMs,
  });
  c.on('disconnected', (e: Error) => errors.push(e.message));
  return { c, errors };
}

test('fake server silent for 6 probe intervals while it builds the snapshot: the session survives', async () => {
  const srv = await slowSnapshotServer(join(dir, 'slow.sock'), 600);
  const { c } = probedClient('slow.sock', 5000);
  try {
    const m = await c.monitor('D', { T: {} });
    assert.equal(m.replica.rows('T').length, 1);
    assert.equal(c.connects, 1, 'no reconnect: the pending snapshot is not silence');
    assert.equal(srv.monitors(), 1, 'the snapshot was asked for once, not restarted');
    assert.equal(c.state, 'connected');
  } finally {
    c.close();
    await srv.close();
  }
});

test('fake server that never answers the snapshot: the negotiation deadline still leaves it', async () => {
  const srv = await slowSnapshotServer(join(dir, 'hung.sock'), Number.POSITIVE_INFINITY);
  const { c, errors } = probedClient('hung.sock', 800);
  try {
    c.connect().catch(() => {});
    c.monitor('D', { T: {} }).catch(() => {});
    await waitFor(() => errors.length > 0, 5000);
    assert.match(errors[0]!, /negotiation did not finish in 800 ms/);
  } finally {
    c.close();
    await srv.close();
  }
});

test('fake server frozen while connected: the probe still drops the session within its silence limit', async () => {
  // ~1 MB of snapshot: the silence allowed grows by 0.5 s per MB over two intervals.
  const srv = await slowSnapshotServer(join(dir, 'frozen.sock'), 0, 20_000);
  const { c, errors } = probedClient('frozen.sock', 5000, 10_000);
  try {
    const m = await c.monitor('D', { T: {} });
    assert.equal(m.replica.rows('T').length, 20_000);
    assert.ok(m.snapshotBytes > 500_000, `snapshot measured: ${m.snapshotBytes} bytes`);
    assert.equal(c.silenceLimitMs(), Math.round(200 + m.snapshotBytes * 0.0005));
    // The store grows after the snapshot (set-up at scale): the allowance follows the rows held, not the snapshot.
    srv.insert(20_000);
    await waitFor(() => m.replica.rows('T').length === 40_000);
    assert.ok(Math.abs(m.sizeEstimate - 2 * m.snapshotBytes) < 1, `estimate ${m.sizeEstimate}`);
    const limit = c.silenceLimitMs();
    assert.equal(limit, Math.round(200 + 2 * m.snapshotBytes * 0.0005));
    const t0 = performance.now();
    srv.silent();
    await waitFor(() => errors.length > 0, 5000);
    const detectMs = performance.now() - t0;
    assert.match(errors[0]!, /no message for/);
    // Silence counts from the last byte (an echo reply, at most ~1.3 intervals before the freeze).
    assert.ok(
      detectMs >= limit - 300 && detectMs < limit + 1000,
      `dropped after ${detectMs} ms, limit ${limit}`,
    );
  } finally {
    c.close();
    await srv.close();
  }
});

async function waitFor(fn: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
