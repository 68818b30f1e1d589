// Traffic client of the lab perf benchmarks; runs INSIDE a client namespace of a lab the benchmark created
// (`ip netns exec slb-pf-c1 node --import tsx bench/perf/client.ts <mode> <json options>`). Node builtins only.
// It prints `{"ready":true}`, waits for the line `go` on stdin, runs, prints one JSON result line and exits
// (tcp-hold: holds its connections until the line `close`; tcp-rtt: `mark <label>` starts a new sample bucket,
// `report` prints the buckets, `close` ends).
//
// Modes:
//   udp-est   {dst, port, pps, seconds, flows}: `flows` sockets (fixed 5-tuples), round robin, 18-byte payload
//             (a 60-byte frame); counts replies.
//   udp-new   {dst, port, pps, seconds, ips, portBase}: every datagram from a never-used (source ip, port) pair:
//             a socket bound to it sends once, waits up to 300 ms for the reply, closes.
//   tcp-hold  {dst, port, count, rate}: opens `count` connections at most `rate` per second, reads the greeting,
//             keeps them idle (one process holds at most ~19,000: the lab's hard RLIMIT_NOFILE is 20,000 and this
//             container lacks CAP_SYS_RESOURCE to raise it, so the benchmark runs several holders per namespace).
//   tcp-setup {dst, port, concurrency, seconds}: connect, read the greeting, close; `concurrency` loops.
//   tcp-rate  {dst, port, rate, seconds}: open loop: starts `rate` connections per second for `seconds` (connect,
//             read the greeting, close with RST), whatever the previous ones are doing; counts those that fail
//             (3 s timeout, reset, error) and setup latency.
//   hold-server {port, name} (runs in a BACKEND namespace): accepts connections on 0.0.0.0:port, greets each with
//             `<name>\n` and holds it; prints ready once listening; `reset` closes every connection it holds (RST) and
//             prints how many; `close` ends. The state part's connections
//             go to these instead of the lab's backend-server, which runs with a 24 MB heap (src/lab/topology.ts) and
//             dies of it at about 8,000 connections.
// Every close is an RST (socket.resetAndDestroy): the clients leave no TIME_WAIT behind, so a run cannot run out of
// source ports because of the runs before it.
//   udp-flows {dst, port, count, rate, sends, intervalMs}: `count` new UDP flows, `rate` a second, each from its own
//             socket: the round trip of its first datagram (bucket `first`) and of `sends` more, one every intervalMs
//             (bucket `est`), per backend (the lab backend answers its name); no answer in 1 s is lost.
//   tcp-rtt   {dst, port, count, intervalMs}: `count` connections; each sends 8 bytes every intervalMs and records
//             the round trip until they come back, per backend (greeting).

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const [mode, json] = process.argv.slice(2);
const o = JSON.parse(json ?? '{}') as Record<string, unknown>;
const num = (k: string, d?: number) => (o[k] === undefined ? (d as number) : Number(o[k]));
const str = (k: string) => String(o[k]);
const out = (x: unknown) => process.stdout.write(`${JSON.stringify(x)}\n`);
const payload = Buffer.alloc(18, 0x61);

const lines = createInterface({ input: process.stdin });
const waiters: Array<(l: string) => void> = [];
const handlers: Array<(l: string) => void> = [];
lines.on('line', (l) => {
  const w = waiters.shift();
  if (w) w(l.trim());
  else for (const h of handlers) h(l.trim());
});
lines.on('close', () => process.exit(0));
const nextLine = () => new Promise<string>((r) => waiters.push(r));

async function udpEst(): Promise<unknown> {
  const socks: UdpSocket[] = [];
  let replies = 0;
  for (let i = 0; i < num('flows', 8); i++) {
    const s = createSocket('udp4');
    s.on('message', () => replies++);
    s.on('error', () => {});
    await new Promise<void>((r) => s.bind(0, () => r()));
    socks.push(s);
  }
  out({ ready: true });
  await nextLine();
  const pps = num('pps');
  const ms = num('seconds') * 1000;
  let sent = 0;
  const t0 = performance.now();
  await new Promise<void>((done) => {
    const tick = () => {
      const el = performance.now() - t0;
      if (el >= ms) return done();
      const due = Math.min(Math.floor((el / 1000) * pps) - sent, 2000);
      for (let i = 0; i < due; i++) socks[(sent + i) % socks.length].send(payload, num('port'), str('dst'));
      sent += Math.max(0, due);
      setTimeout(tick, 2);
    };
    tick();
  });
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 500));
  for (const s of socks) s.close();
  return { sent, replies, seconds };
}

async function udpNew(): Promise<unknown> {
  const ips = String(o.ips).split(',');
  let port = num('portBase');
  let ip = 0;
  let replies = 0;
  let errors = 0;
  out({ ready: true });
  await nextLine();
  const pps = num('pps');
  const ms = num('seconds') * 1000;
  let sent = 0;
  const t0 = performance.now();
  const sendOne = () => {
    if (port > 65000) {
      port = 1024;
      ip++;
    }
    const addr = ips[ip % ips.length];
    const p = port++;
    const s = createSocket('udp4');
    let closed = false;
    const close = () => {
      if (!closed) {
        closed = true;
        s.close();
      }
    };
    s.on('error', () => {
      errors++;
      close();
    });
    s.on('message', () => {
      replies++;
      close();
    });
    s.bind({ address: addr, port: p }, () => {
      s.send(payload, num('port'), str('dst'));
      setTimeout(close, 300);
    });
  };
  await new Promise<void>((done) => {
    const tick = () => {
      const el = performance.now() - t0;
      if (el >= ms) return done();
      const due = Math.min(Math.floor((el / 1000) * pps) - sent, 500);
      for (let i = 0; i < due; i++) sendOne();
      sent += Math.max(0, due);
      setTimeout(tick, 2);
    };
    tick();
  });
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 500));
  return { sent, replies, errors, seconds, nextPort: port, ipIndex: ip };
}

/** One UDP flow: the round trip of each of `1 + sends` datagrams, the first one apart. */
function udpFlow(add: (bucket: string, backend: string, ms: number) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket(str('dst').includes(':') ? 'udp6' : 'udp4');
    let n = 0;
    let sentAt = 0;
    let timer: NodeJS.Timeout | undefined;
    const end = (ok: boolean) => {
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    const send = () => {
      sentAt = performance.now();
      s.send(payload, num('port'), str('dst'));
      timer = setTimeout(() => end(false), 1000);
    };
    s.on('error', () => end(false));
    s.on('message', (msg) => {
      clearTimeout(timer);
      add(n === 0 ? 'first' : 'est', msg.toString(), performance.now() - sentAt);
      if (++n > num('sends', 5)) end(true);
      else timer = setTimeout(send, num('intervalMs', 100));
    });
    s.bind(0, send);
  });
}

async function udpFlows(): Promise<unknown> {
  const buckets: Record<string, Record<string, number[]>> = { first: {}, est: {} };
  const add = (bucket: string, backend: string, ms: number) => {
    const b = buckets[bucket]!;
    const xs = b[backend] ?? [];
    xs.push(ms);
    b[backend] = xs;
  };
  out({ ready: true });
  await nextLine();
  const flows: Promise<boolean>[] = [];
  for (let i = 0; i < num('count'); i++) {
    flows.push(udpFlow(add));
    await new Promise((r) => setTimeout(r, 1000 / num('rate', 20)));
  }
  const lost = (await Promise.all(flows)).filter((ok) => !ok).length;
  return { buckets, lost };
}

/** Connects and resolves with the greeting (backend name), or rejects. */
function dial(timeoutMs = 5000): Promise<{ sock: Socket; backend: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock = connect({ host: str('dst'), port: num('port') });
    sock.setNoDelay(true);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('timeout'));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(timer);
      sock.off('data', onData);
      resolve({ sock, backend: buf.slice(0, i), ms: performance.now() - t0 });
    };
    sock.on('data', onData);
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new Error(e.code ?? e.message));
    });
  });
}

async function tcpHold(): Promise<unknown> {
  out({ ready: true });
  await nextLine();
  const count = num('count');
  const rate = num('rate', 300);
  const held: Socket[] = [];
  const failures: Record<string, number> = {};
  let opened = 0;
  let broken = 0;
  let pending = 0;
  const t0 = performance.now();
  await new Promise<void>((done) => {
    let started = 0;
    const tick = () => {
      const due = Math.min(Math.floor(((performance.now() - t0) / 1000) * rate), count) - started;
      for (let i = 0; i < due && pending < 2000; i++) {
        started++;
        pending++;
        dial(10_000).then(
          ({ sock }) => {
            pending--;
            opened++;
            held.push(sock);
            sock.on('close', () => broken++);
            if (opened + Object.values(failures).reduce((a, b) => a + b, 0) === count) done();
          },
          (e: Error) => {
            pending--;
            failures[e.message] = (failures[e.message] ?? 0) + 1;
            if (opened + Object.values(failures).reduce((a, b) => a + b, 0) === count) done();
          },
        );
      }
      if (started < count) setTimeout(tick, 5);
    };
    tick();
  });
  out({ opened, failures, seconds: (performance.now() - t0) / 1000 });
  await nextLine(); // close
  for (const s of held) s.removeAllListeners('close').resetAndDestroy();
  return { opened, broken, failures };
}

async function tcpSetup(): Promise<unknown> {
  out({ ready: true });
  await nextLine();
  const ms = num('seconds') * 1000;
  const t0 = performance.now();
  let ok = 0;
  const failures: Record<string, number> = {};
  const lat: number[] = [];
  const loop = async () => {
    while (performance.now() - t0 < ms) {
      try {
        const r = await dial(3000);
        ok++;
        lat.push(r.ms);
        r.sock.resetAndDestroy();
      } catch (e) {
        failures[(e as Error).message] = (failures[(e as Error).message] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: num('concurrency') }, loop));
  lat.sort((a, b) => a - b);
  const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  return { ok, failures, seconds: (performance.now() - t0) / 1000, p50: q(0.5), p99: q(0.99) };
}

async function tcpRate(): Promise<unknown> {
  out({ ready: true });
  await nextLine();
  const rate = num('rate');
  const ms = num('seconds') * 1000;
  let started = 0;
  let ok = 0;
  const failures: Record<string, number> = {};
  const lat: number[] = [];
  const pending = new Set<Promise<void>>();
  const t0 = performance.now();
  await new Promise<void>((done) => {
    const tick = () => {
      const el = performance.now() - t0;
      const due = Math.min(Math.floor((el / 1000) * rate), Math.floor((ms / 1000) * rate)) - started;
      for (let i = 0; i < due; i++) {
        started++;
        const p: Promise<void> = dial(3000).then(
          (r) => {
            ok++;
            lat.push(r.ms);
            r.sock.resetAndDestroy();
          },
          (e: Error) => {
            failures[e.message] = (failures[e.message] ?? 0) + 1;
          },
        );
        pending.add(p);
        p.finally(() => pending.delete(p));
      }
      if (el >= ms) return done();
      setTimeout(tick, 2);
    };
    tick();
  });
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(pending);
  lat.sort((a, b) => a - b);
  const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
  return { started, ok, failures, seconds, p50: q(0.5), p99: q(0.99) };
}

async function tcpRtt(): Promise<unknown> {
  const count = num('count');
  const conns: Array<{ sock: Socket; backend: string }> = [];
  const failures: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    try {
      conns.push(await dial());
    } catch (e) {
      failures[(e as Error).message] = (failures[(e as Error).message] ?? 0) + 1;
    }
  }
  let label = 'start';
  const buckets = new Map<string, Map<string, number[]>>();
  let lost = 0;
  const add = (backend: string, ms: number) => {
    const b = buckets.get(label) ?? new Map<string, number[]>();
    buckets.set(label, b);
    const a = b.get(backend) ?? [];
    b.set(backend, a);
    a.push(ms);
  };
  const timers: NodeJS.Timeout[] = [];
  for (const c of conns) {
    let sentAt = 0;
    let waiting = false;
    let got = 0;
    c.sock.on('data', (d) => {
      got += d.length;
      if (waiting && got >= 8) {
        got -= 8;
        waiting = false;
        add(c.backend, performance.now() - sentAt);
      }
    });
    c.sock.on('error', () => lost++);
    timers.push(
      setInterval(
        () => {
          if (waiting) return;
          waiting = true;
          sentAt = performance.now();
          c.sock.write('01234567');
        },
        num('intervalMs', 100),
      ),
    );
  }
  // Registered before `ready`: a `mark` that arrives in the same chunk as `go` is not lost.
  const closed = new Promise<void>((done) => {
    handlers.push((l) => {
      if (l.startsWith('mark ')) label = l.slice(5);
      else if (l === 'report') {
        const r: Record<string, Record<string, number[]>> = {};
        for (const [k, b] of buckets) r[k] = Object.fromEntries(b);
        out({ buckets: r, lost });
      } else if (l === 'close') done();
    });
  });
  out({ ready: true, opened: conns.length, failures });
  await closed;
  for (const t of timers) clearInterval(t);
  for (const c of conns) c.sock.resetAndDestroy();
  return { lost };
}

async function holdServer(): Promise<unknown> {
  const name = str('name');
  let accepted = 0;
  let open = 0;
  const socks = new Set<Socket>();
  const server = createServer({ noDelay: true }, (sock) => {
    accepted++;
    open++;
    socks.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => {
      open--;
      socks.delete(sock);
    });
    sock.write(`${name}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: num('port'), host: '0.0.0.0', backlog: 65535 }, () => resolve());
  });
  let acceptErrors = 0;
  server.on('error', () => acceptErrors++); // e.g. EMFILE: count it and keep serving
  out({ ready: true });
  for (let l = await nextLine(); l !== 'close'; l = await nextLine()) {
    if (l !== 'reset') continue;
    const n = socks.size;
    for (const s of socks) s.resetAndDestroy();
    socks.clear();
    out({ reset: n });
  }
  const peak = { accepted, open, acceptErrors };
  for (const s of socks) s.resetAndDestroy();
  server.close();
  return peak;
}

const modes: Record<string, () => Promise<unknown>> = {
  'udp-est': udpEst,
  'udp-new': udpNew,
  'tcp-hold': tcpHold,
  'tcp-setup': tcpSetup,
  'tcp-rate': tcpRate,
  'hold-server': holdServer,
  'tcp-rtt': tcpRtt,
  'udp-flows': udpFlows,
};
const fn = modes[mode];
if (!fn) {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
fn().then(
  (r) => {
    out({ result: r });
    process.exit(0);
  },
  (e) => {
    out({ error: String(e) });
    process.exit(1);
  },
);
