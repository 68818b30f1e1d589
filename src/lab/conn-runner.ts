// Traffic runner: runs inside a client namespace and keeps N long-lived TCP connections (or UDP flows) to VIP:port.
//
//   ip netns exec sl-c1 node --import tsx src/lab/conn-runner.ts --vip 203.0.113.10 --port 80 --count 200 --rate 100
//
// Each connection: connect, read the backend's greeting (`<name>\n`), then every --interval ms send a few bytes and
// expect them echoed back. A connection that was open is BROKEN on: a reset or socket error, the peer closing it,
// an echo not received within --timeout ms (default 3000), or a wrong/garbled greeting or echo. One that never got
// its greeting is FAILED (refused, reset, connect or greeting timeout).
//
// Why an echo timeout: a connection whose packets reach a host without state for it is usually black-holed, not
// reset, and the kernel would retransmit for minutes. Sending bytes every --interval and requiring their echo within
// --timeout is an application-level TCP_USER_TIMEOUT (stricter, even: the bytes must come back through the whole
// path, from the right backend). Node has no setsockopt, so for the kernel's own TCP_USER_TIMEOUT the controller
// starts this runner with a preloaded library that sets it on every TCP socket (tcp-user-timeout.ts); its ETIMEDOUT
// then breaks a connection (reason `timeout`) before a longer --timeout would.
//
// With --udp, a "connection" is a UDP flow: one connected socket (its own source port, so its own 5-tuple) that
// sends a datagram every --interval ms; the backend answers each with its name. The first answer opens the flow
// (its backend); it is BROKEN when an answer names another backend (`backend-changed`: the flow moved), or when no
// answer came for --timeout ms (`echo-timeout`), or on an ICMP error (`refused`). No first answer: FAILED.
//
// Control on stdin, one JSON object per line: {"cmd":"open","count":N,"rate":R} | {"cmd":"close","count":N} |
// {"cmd":"report"} | {"cmd":"stop"}. stdin closing (controller gone) = stop.
// Output on stdout, one JSON object per line: {"ev":"ready"} | {"ev":"open",...} (with --verbose) |
// {"ev":"broken",...} | {"ev":"failed",...} | {"ev":"counters",...} (every --report-ms and on "report") |
// {"ev":"summary",...} (last line).
//
// Self-contained (node: builtins only) so the lab can run it as plain JS (see scripts.ts).

import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import type { BackendCounters, TrafficCounters } from './traffic.ts';

// The counters the controller aggregates (traffic.ts), plus which runner and VIP they belong to. A type-only
// import: this file is transpiled and run on its own inside a client namespace.
interface Counters extends TrafficCounters {
  runner: string;
  vip: string;
  port: number;
}

type ConnState = 'connecting' | 'greeting' | 'alive' | 'closing' | 'done';

/** What a connection needs of its socket: a TCP socket as it is, a UDP socket through udpLink. */
interface Link {
  readonly localPort?: number | undefined;
  write(data: string): void;
  end(): void;
  destroy(): void;
}

interface Conn {
  id: number;
  sock: Link;
  state: ConnState;
  startedAt: number;
  openedAt: number;
  backend: string | undefined;
  rx: string;
  /** Sent payloads not yet echoed, oldest first, with send times. */
  pending: Array<{ data: string; at: number }>;
  nextSendAt: number;
  seq: number;
  closingAt: number;
  /** The socket's port, kept from the open: a closed socket no longer says (the broken event names it). */
  localPort: number | undefined;
}

function arg(name: string, dflt?: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
function num(name: string, dflt: number): number {
  const v = Number(arg(name, String(dflt)));
  if (!Number.isFinite(v) || v < 0) {
    process.stderr.write(`conn-runner: ${name} must be a non-negative number\n`);
    process.exit(2);
  }
  return v;
}

const vip = arg('--vip');
const port = num('--port', 80);
const intervalMs = num('--interval', 200);
const timeoutMs = num('--timeout', 3000);
const reportMs = num('--report-ms', 1000);
const runnerId = arg('--id', 'runner')!;
const verbose = process.argv.includes('--verbose');
const udp = process.argv.includes('--udp');
const expect = arg('--expect')
  ?.split(',')
  .filter((s) => s !== '');
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
if (!vip) {
  process.stderr.write(
    'usage: conn-runner --vip ADDR --port P [--count N] [--rate R] [--interval MS] [--timeout MS]\n',
  );
  process.exit(2);
}

const counters: Counters = {
  runner: runnerId,
  vip,
  port,
  attempted: 0,
  connecting: 0,
  opened: 0,
  alive: 0,
  closed: 0,
  broken: 0,
  failed: 0,
  echoes: 0,
  brokenByReason: {},
  failedByReason: {},
  perBackend: {},
};

const conns = new Map<number, Conn>();
let nextId = 1;
let toOpen = num('--count', 0);
let rate = num('--rate', 100);
let tokens = 0;
let stopping = false;

function emit(obj: object): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function backendCounters(name: string): BackendCounters {
  let b = counters.perBackend[name];
  if (!b) {
    b = { opened: 0, alive: 0, broken: 0, closed: 0 };
    counters.perBackend[name] = b;
  }
  return b;
}

function reasonOf(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'ECONNREFUSED':
      return 'refused';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return `error:${err.code ?? err.message}`;
  }
}

/** Ends a connection's life with an outcome; counts it once. */
function finish(c: Conn, outcome: 'broken' | 'failed' | 'closed', reason: string): void {
  if (c.state === 'done') return;
  const wasAlive = c.state === 'alive' || c.state === 'closing';
  if (c.state === 'connecting' || c.state === 'greeting') counters.connecting--;
  if (wasAlive) {
    counters.alive--;
    if (c.backend) backendCounters(c.backend).alive--;
  }
  c.state = 'done';
  conns.delete(c.id);
  const now = Date.now();
  if (outcome === 'closed') {
    counters.closed++;
    if (c.backend) backendCounters(c.backend).closed++;
  } else if (outcome === 'broken') {
    counters.broken++;
    counters.brokenByReason[reason] = (counters.brokenByReason[reason] ?? 0) + 1;
    if (c.backend) backendCounters(c.backend).broken++;
    emit({
      ev: 'broken',
      id: c.id,
      backend: c.backend,
      reason,
      localPort: c.localPort ?? c.sock.localPort,
      ageMs: now - c.openedAt,
      unechoed: c.pending.length,
      at: now,
      // When the oldest payload still unechoed was sent: about when the path stopped answering.
      unechoedSince: c.pending[0]?.at,
    });
  } else {
    counters.failed++;
    counters.failedByReason[reason] = (counters.failedByReason[reason] ?? 0) + 1;
    emit({ ev: 'failed', id: c.id, reason, localPort: c.sock.localPort, ms: now - c.startedAt });
  }
  if (outcome !== 'closed') c.sock.destroy();
}

function fail(c: Conn, reason: string): void {
  if (c.state === 'alive') finish(c, 'broken', reason);
  else if (c.state === 'connecting' || c.state === 'greeting') finish(c, 'failed', reason);
  else if (c.state === 'closing') finish(c, 'closed', reason);
}

function onData(c: Conn, chunk: string): void {
  if (c.state === 'done') return;
  if (c.state === 'greeting' || c.state === 'connecting') {
    c.rx += chunk;
    const nl = c.rx.indexOf('\n');
    if (nl < 0) {
      if (c.rx.length > 80) fail(c, 'bad-greeting');
      return;
    }
    const name = c.rx.slice(0, nl);
    const rest = c.rx.slice(nl + 1);
    c.rx = '';
    if (rest !== '') fail(c, 'bad-greeting');
    else opened(c, name);
    return;
  }
  // Echo: the bytes must be exactly the oldest unechoed payloads, in order.
  let data = chunk;
  while (data.length > 0) {
    const head = c.pending[0];
    if (!head) {
      fail(c, 'bad-echo');
      return;
    }
    const n = Math.min(head.data.length, data.length);
    if (head.data.slice(0, n) !== data.slice(0, n)) {
      fail(c, 'bad-echo');
      return;
    }
    data = data.slice(n);
    if (n === head.data.length) {
      c.pending.shift();
      counters.echoes++;
    } else {
      head.data = head.data.slice(n);
    }
  }
}

/** A connection got its backend's name (TCP greeting, first UDP answer): it is open. */
function opened(c: Conn, name: string): void {
  if (!NAME.test(name) || (expect && !expect.includes(name))) {
    fail(c, 'bad-greeting');
    return;
  }
  c.backend = name;
  c.localPort = c.sock.localPort;
  c.state = 'alive';
  c.openedAt = Date.now();
  c.nextSendAt = c.openedAt + Math.floor(Math.random() * intervalMs);
  counters.connecting--;
  counters.opened++;
  counters.alive++;
  const b = backendCounters(name);
  b.opened++;
  b.alive++;
  if (verbose)
    emit({
      ev: 'open',
      id: c.id,
      backend: name,
      localPort: c.sock.localPort,
      ms: c.openedAt - c.startedAt,
    });
}

/** A UDP answer: the first opens the flow; each later one must name the same backend and answers the oldest
 *  datagram still unanswered (datagrams may be lost; the timeout catches a flow that gets no answers). */
function onDatagram(c: Conn, name: string): void {
  if (c.state === 'greeting' || c.state === 'connecting') {
    opened(c, name);
    return;
  }
  if (c.state !== 'alive') return;
  if (name !== c.backend) {
    fail(c, 'backend-changed');
    return;
  }
  if (c.pending.shift() !== undefined) counters.echoes++;
}

/** A connected UDP socket as a Link, and the flow's events wired to `c`. */
function udpLink(c: () => Conn): Link {
  const s = createSocket(vip!.includes(':') ? 'udp6' : 'udp4');
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    s.close();
  };
  s.on('message', (m) => onDatagram(c(), m.toString('latin1').trim()));
  s.on('error', (err) => fail(c(), reasonOf(err)));
  s.connect(port, vip!, () => {
    const conn = c();
    if (conn.state !== 'connecting') return;
    conn.state = 'greeting';
    conn.nextSendAt = Date.now(); // tick() sends the first datagram, and again every interval until answered
  });
  return {
    get localPort() {
      try {
        return s.address().port;
      } catch {
        return undefined;
      }
    },
    write: (data) => {
      if (!closed) s.send(data);
    },
    end: () => {
      close();
      finish(c(), 'closed', 'closed');
    },
    destroy: close,
  };
}

function openOne(): void {
  const id = nextId++;
  counters.attempted++;
  counters.connecting++;
  let c: Conn | undefined;
  const sock: Link = udp ? udpLink(() => c!) : tcpLink(() => c!);
  const now = Date.now();
  c = {
    id,
    sock,
    state: 'connecting',
    startedAt: now,
    openedAt: 0,
    backend: undefined,
    rx: '',
    pending: [],
    nextSendAt: 0,
    seq: 0,
    closingAt: 0,
    localPort: undefined,
  };
  conns.set(id, c);
}

/** A TCP connection to the VIP, its events wired to `c`. */
function tcpLink(c: () => Conn): Link {
  const sock = connect({ host: vip!, port, noDelay: true });
  sock.setEncoding('latin1');
  sock.on('connect', () => {
    if (c().state === 'connecting') c().state = 'greeting';
  });
  sock.on('data', (d: string) => onData(c(), d));
  sock.on('error', (err) => fail(c(), reasonOf(err)));
  sock.on('close', () => {
    if (c().state === 'closing') finish(c(), 'closed', 'closed');
    else fail(c(), 'eof');
  });
  return sock;
}

function tick(): void {
  const now = Date.now();
  // Opens at `rate` per second.
  if (toOpen > 0 && !stopping) {
    tokens = Math.min(tokens + (rate * TICK_MS) / 1000, Math.max(1, rate));
    while (toOpen > 0 && tokens >= 1) {
      tokens -= 1;
      toOpen--;
      openOne();
    }
  }
  for (const c of conns.values()) {
    if (c.state === 'connecting') {
      if (now - c.startedAt > timeoutMs) fail(c, 'connect-timeout');
    } else if (c.state === 'greeting') {
      if (now - c.startedAt > timeoutMs) fail(c, 'greeting-timeout');
      else if (udp && now >= c.nextSendAt) {
        // A UDP client resends its request until answered (a datagram may be lost); only the first answer counts.
        c.nextSendAt = now + intervalMs;
        c.sock.write(`${c.id}.0;`);
      }
    } else if (c.state === 'alive') {
      if (c.pending.length > 0 && now - c.pending[0].at > timeoutMs) {
        fail(c, 'echo-timeout');
        continue;
      }
      if (now >= c.nextSendAt) {
        c.seq++;
        const data = `${c.id}.${c.seq};`;
        c.pending.push({ data, at: now });
        c.nextSendAt = now + intervalMs;
        c.sock.write(data);
      }
    } else if (c.state === 'closing') {
      // A close that gets no FIN back within the timeout is still a close we asked for.
      if (now - c.closingAt > timeoutMs) {
        finish(c, 'closed', 'closed');
        c.sock.destroy();
      }
    }
  }
}

function closeSome(n: number): void {
  for (const c of conns.values()) {
    if (n <= 0) break;
    if (c.state !== 'alive') continue;
    c.state = 'closing';
    c.closingAt = Date.now();
    c.sock.end();
    n--;
  }
}

function report(kind: 'counters' | 'summary'): void {
  emit({ ev: kind, at: Date.now(), toOpen, ...counters });
}

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  toOpen = 0;
  // Close every connection that is alive (counted as closed); give up on those still connecting.
  for (const c of conns.values()) {
    if (c.state === 'alive') {
      c.state = 'closing';
      c.closingAt = Date.now();
      c.sock.end();
    } else if (c.state === 'connecting' || c.state === 'greeting') {
      finish(c, 'failed', 'stopped');
    }
  }
  const deadline = Date.now() + 2000;
  while (conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const c of [...conns.values()]) {
    finish(c, 'closed', 'closed');
    c.sock.destroy();
  }
  clearInterval(timer);
  if (reporter) clearInterval(reporter);
  report('summary');
  process.stdout.write('', () => process.exit(0));
}

const TICK_MS = 20;
const timer = setInterval(tick, TICK_MS);
const reporter = reportMs > 0 ? setInterval(() => report('counters'), reportMs) : undefined;

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let msg: { cmd?: string; count?: number; rate?: number };
  try {
    msg = JSON.parse(line) as typeof msg;
  } catch {
    emit({ ev: 'error', message: `bad command: ${line.slice(0, 100)}` });
    return;
  }
  const count = Number.isInteger(msg.count) && (msg.count ?? 0) > 0 ? (msg.count as number) : 0;
  if (msg.cmd === 'open') {
    toOpen += count;
    if (typeof msg.rate === 'number' && msg.rate > 0) rate = msg.rate;
  } else if (msg.cmd === 'close') {
    closeSome(count);
  } else if (msg.cmd === 'report') {
    report('counters');
  } else if (msg.cmd === 'stop') {
    void stop();
  } else {
    emit({ ev: 'error', message: `unknown command: ${String(msg.cmd)}` });
  }
});
rl.on('close', () => void stop());
process.on('SIGTERM', () => void stop());
emit({ ev: 'ready', runner: runnerId, vip, port, pid: process.pid });
