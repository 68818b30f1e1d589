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
  /** When it last wrote to a client (performance.now()): a silence starts there, not when the test froze it. */
  let lastWrite = 0;
  const write = (socket: net.Socket, text: string) => {
    lastWrite = performance.now();
    socket.write(text);
  };
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
        if (wait > 0) setTimeout(() => socket.writable && !frozen && write(socket, text), wait);
        else write(socket, text);
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
      for (const s of sockets) write(s, JSON.stringify({ method: 'update3', id: null, params }));
    },
    /** Answers nothing from now on; returns when it last wrote. */
    silent: () => {
      frozen = true;
      return lastWrite;
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
    // Silence counts from the last byte the server wrote (an echo reply, or the insert itself when applying it kept
    // the client from probing: on a loaded machine that is hundreds of ms before the freeze).
    const t0 = srv.silent();
    await waitFor(() => errors.length > 0, 5000);
    const detectMs = performance.now() - t0;
    assert.match(errors[0]!, /no message for/);
    assert.ok(
      detectMs >= limit - 50 && detectMs < limit + 1000,
      `dropped ${detectMs} ms after the last byte, limit ${limit}`,
    );
  } finally {
    c.close();
    await srv.close();
  }
});

/**
 * A FAKE store that answers one request at a time, in order, as ovsdb-server does on a session: get_schema and echo at
 * once; a monitor after `holdMs` (Infinity: never, and nothing after it either), followed in the same write by an
 * update3 for that monitor inserting U2; monitor_cancel of a monitor it set up with {}, else an error. It records
 * every request when it arrives and which monitors are set up.
 */
async function orderedServer(path: string, holdMs: number) {
  const requests: { method: string; params: unknown[] }[] = [];
  const active = new Set<unknown>();
  let setUp = 0;
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    let queue = Promise.resolve();
    onJsonMessages(socket, (msg) => {
      if (msg.method === undefined) return;
      requests.push({ method: msg.method, params: msg.params });
      queue = queue.then(async () => {
        const reply = (result: unknown, error: unknown = null) =>
          JSON.stringify({ id: msg.id, result, error });
        if (msg.method === 'get_schema') socket.write(reply(SCHEMA));
        else if (msg.method === 'echo') socket.write(reply(msg.params));
        else if (msg.method === 'monitor_cond_since') {
          if (holdMs === Number.POSITIVE_INFINITY) await new Promise(() => {});
          await new Promise((r) => setTimeout(r, holdMs));
          const id = msg.params[1];
          active.add(id);
          setUp++;
          const update = {
            method: 'update3',
            id: null,
            params: [id, U3, { T: { [U2]: { insert: { name: 'b' } } } }],
          };
          const snapshot = { T: { [U1]: { initial: { name: 'a' } } } };
          if (socket.writable) socket.write(reply([false, U1, snapshot]) + JSON.stringify(update));
        } else if (msg.method === 'monitor_cancel') {
          const known = active.delete(msg.params[0]);
          socket.write(known ? reply({}) : reply(null, { error: 'unknown monitor' }));
        } else socket.write(reply(null, { error: 'unknown method' }));
      });
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    requests,
    active,
    /** Monitors set up so far (cancelled or not). */
    setUp: () => setUp,
    /** The json-value ids of the monitors the client asked for, and of those it cancelled. */
    asked: () => requests.filter((r) => r.method === 'monitor_cond_since').map((r) => r.params[1]),
    cancelled: () => requests.filter((r) => r.method === 'monitor_cancel').map((r) => r.params[0]),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** What `p` settled to within `ms` ('pending' if it did not). */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((r) => {
    timer = setTimeout(() => r('pending'), ms);
  });
  try {
    return await Promise.race([
      p.then(
        () => 'resolved',
        (e: Error) => e,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test('fake server: a monitor added while connected (no probe) whose reply never comes fails at its own deadline and is cancelled', async () => {
  const srv = await orderedServer(join(dir, 'never.sock'), Number.POSITIVE_INFINITY);
  const c = new OvsdbClient({
    remotes: [`unix:${join(dir, 'never.sock')}`],
    probeIntervalMs: 0,
    waitConnectedMs: 300,
    negotiateTimeoutMs: 300,
  });
  try {
    await c.connect();
    const out = await settledWithin(c.monitor('D', { T: {} }), 3000);
    assert.ok(out instanceof Error, `monitor() ${String(out)} after 3 s: no deadline of its own`);
    assert.match(out.message, /monitor_cond_since got no reply in 600 ms/);
    // The server may still set it up (it answers in order, so the cancel comes after it): cancelled.
    await waitFor(() => srv.cancelled().length > 0);
    assert.deepEqual(srv.cancelled(), srv.asked());
  } finally {
    c.close();
    await srv.close();
  }
});

test('fake server: a monitor given up while its request is pending is cancelled when set up, and its update ignored', async () => {
  // The reply comes after the caller gave up: during the negotiation (waitConnectedMs), and while connected (the
  // monitor's own deadline, waitConnectedMs + negotiateTimeoutMs).
  for (const [what, opts] of [
    ['during the negotiation', { waitConnectedMs: 150, negotiateTimeoutMs: 5000 }],
    ['while connected', { waitConnectedMs: 100, negotiateTimeoutMs: 100 }],
  ] as const) {
    const sock = join(dir, 'late.sock');
    const srv = await orderedServer(sock, 400);
    const c = new OvsdbClient({ remotes: [`unix:${sock}`], probeIntervalMs: 0, ...opts });
    try {
      if (what === 'while connected') await c.connect();
      const out = await settledWithin(c.monitor('D', { T: {} }), 3000);
      assert.ok(out instanceof Error, `${what}: monitor() ${String(out)}`);
      await waitFor(() => c.state === 'connected' && srv.setUp() === 1);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(srv.asked().length, 1, what);
      assert.deepEqual(srv.cancelled(), srv.asked(), `${what}: the monitor set up late was cancelled`);
      assert.equal(srv.active.size, 0, `${what}: no monitor left on the server`);
      // Its update (sent with the late reply) was ignored, not taken as a protocol error: the session stayed.
      assert.equal(c.connects, 1, what);
    } finally {
      c.close();
      await srv.close();
    }
  }
});

test('fake server negative control: a monitor answered in time is not cancelled and gets its update; cancel() cancels it', async () => {
  const srv = await orderedServer(join(dir, 'prompt.sock'), 50);
  const c = new OvsdbClient({
    remotes: [`unix:${join(dir, 'prompt.sock')}`],
    probeIntervalMs: 0,
    negotiateTimeoutMs: 2000,
  });
  try {
    const m = await c.monitor('D', { T: {} });
    await waitFor(() => m.replica.get('T', U2) !== undefined);
    assert.deepEqual(srv.cancelled(), []);
    assert.equal(srv.active.size, 1);
    await m.cancel();
    assert.deepEqual(srv.cancelled(), srv.asked());
    assert.equal(srv.active.size, 0);
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

/**
 * A FAKE store serving databases D and S (SCHEMA under both names): list_dbs, get_schema, monitor_cond_since (never
 * "found": a snapshot each time) and echo. `refuse(db)`: the next get_schema of `db` is answered with an error (a
 * member that cannot serve that database right now); `insert(db, uuid)`: an update3 inserting a row on the latest
 * monitor of `db`.
 */
async function twoDatabaseServer(path: string) {
  const sockets: net.Socket[] = [];
  const monitorIds = new Map<string, unknown>();
  const refusals = new Set<string>();
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onJsonMessages(socket, (msg) => {
      if (msg.method === undefined) return;
      const reply = (result: unknown) => JSON.stringify({ id: msg.id, result, error: null });
      const error = (e: string) => JSON.stringify({ id: msg.id, result: null, error: { error: e } });
      if (msg.method === 'list_dbs') socket.write(reply(['_Server', 'D', 'S']));
      else if (msg.method === 'get_schema') {
        const db = msg.params[0] as string;
        if (refusals.delete(db)) socket.write(error('unknown database'));
        else socket.write(reply({ ...SCHEMA, name: db }));
      } else if (msg.method === 'monitor_cond_since') {
        monitorIds.set(msg.params[0], msg.params[1]);
        socket.write(reply([false, U1, { T: {} }]));
      } else if (msg.method === 'echo') socket.write(reply(msg.params));
      else socket.write(error('unknown method'));
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    refuse: (db: string) => refusals.add(db),
    insert: (db: string, uuid: string) => {
      const params = [monitorIds.get(db), U2, { T: { [uuid]: { insert: { name: db } } } }];
      sockets.at(-1)!.write(JSON.stringify({ method: 'update3', id: null, params }));
    },
    /** Drops every session (ovsdb-server/reconnect). */
    drop: () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

test('fake server: a monitor of a set refused on a reconnect leaves that member; it is not dropped', async () => {
  const srv = await twoDatabaseServer(join(dir, 'two.sock'));
  const { c, errors } = probedClient('two.sock', 2000);
  try {
    const set = await c.monitorDatabases([
      ['D', { T: {} }],
      ['S', { T: {} }],
    ]);
    // The first request of a monitor refused: it fails alone (the caller hears it), the session stays.
    srv.refuse('S');
    await assert.rejects(c.monitor('S', { T: {} }), /unknown database/);
    assert.equal(c.connects, 1);
    // Refused on a reconnect, a monitor that served its caller makes the client leave this member and try again.
    srv.refuse('S');
    srv.drop();
    await waitFor(() => errors.length === 2 && c.state === 'connected');
    assert.equal(c.connects, 2);
    assert.ok(
      errors.some((e) => /monitor of S refused: .*unknown database/.test(e)),
      JSON.stringify(errors),
    );
    // Both monitors are live: an update of each reaches its replica (a dropped monitor would ignore it).
    srv.insert('S', U3);
    srv.insert('D', U2);
    await waitFor(
      () =>
        set.of('S')!.replica.get('T', U3)?.name === 'S' && set.of('D')!.replica.get('T', U2)?.name === 'D',
    );
  } finally {
    c.close();
    await srv.close();
  }
});
