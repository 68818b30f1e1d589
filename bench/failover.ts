// Gateway failover on the lab with BGP + BFD (root): for each real fault of a gateway (kill, link cut, freeze; see
// src/lab/faults.ts), over several rounds, the time from the fault to the router's ECMP change (its kernel route to
// the VIP has one next hop fewer: `ip -j route` in the router namespace, polled every ~10 ms) and to the first
// answered retransmission of the connections the gateway carried (clients echo continuously; the round trip of the
// echo in flight at the fault). `npm run bench -- --only failover` (or `node --import tsx bench/failover.ts`). Writes
// docs/benchmarks.md between the bench:failover markers. Numbers are recorded, never asserted.
// Lab prefix `slb-fo-` (the default lab: 2 gateways, BGP + BFD at the lab's default timers) and its control plane,
// torn down in `finally` and on SIGINT/SIGTERM; traffic clients (bench/perf/client.ts tcp-rtt) are children of this
// process.
// Environment: FAILOVER_BENCH_ROUNDS (5 per fault), FAILOVER_BENCH_CONNS (40), FAILOVER_BENCH_NO_WRITE=1.

import { pathToFileURL } from 'node:url';
import { type ControlPlane, startControlPlane } from '../src/lab/control-plane.ts';
import * as faults from '../src/lab/faults.ts';
import { tcpUserTimeoutLibrary, USER_TIMEOUT_ENV } from '../src/lab/tcp-user-timeout.ts';
import { type Lab, labDown, labUp } from '../src/lab/topology.ts';
import { DEFAULT_BFD } from '../src/routing/bird.ts';
import { finish, machine, machineLine, median, say, sleep, writeSection } from './perf/common.ts';
import { type Client, killClients, nsClient } from './perf/lab.ts';

const PREFIX = 'slb-fo-';
const WEB = { vip: '203.0.113.10', port: 80 } as const;
const env = (k: string, d: string) => Number(process.env[k] ?? d);
const ROUNDS = env('FAILOVER_BENCH_ROUNDS', '5');
const CONNS = env('FAILOVER_BENCH_CONNS', '40');
/** Echo interval of every connection: the stall is measured from the send of the echo in flight, at most this early. */
const INTERVAL_MS = 20;
/** How long a round watches after the fault (every stalled echo is answered well before). */
const WATCH_MS = 5000;
/** The clients' TCP_USER_TIMEOUT: a connection whose data stays unacknowledged this long breaks. */
const USER_TIMEOUT_MS = 3000;
/** An echo slower than this took a retransmission (the lab's round trip is ~1 ms). */
const STALLED_MS = 100;

export interface FailoverRound {
  readonly kind: faults.GatewayFaultKind;
  /** Fault -> the router's route without the gateway, ms (undefined: not within WATCH_MS). */
  readonly ecmpMs: number | undefined;
  /** The slowest echo of the round: the last connection's first answered retransmission, ms. */
  readonly worstStallMs: number;
  /** Connections whose echo stalled (they went through the failed gateway). */
  readonly stalled: number;
  /** Connections that broke during the round (socket errors: the user timeout's ETIMEDOUT, a reset). */
  readonly lost: number;
}

async function oneRound(
  lab: Lab,
  cp: ControlPlane,
  client: Client,
  kind: faults.GatewayFaultKind,
  i: number,
  lostBefore: number,
) {
  await faults.waitEcmpAll(lab, WEB.vip, 120_000);
  const label = `${kind}-${i}`;
  client.send(`mark ${label}`);
  await sleep(500);
  const fault = await faults.injectGatewayFault(lab, cp, 'gw1', kind);
  const ecmpMs = await faults.waitEcmpWithout(lab, WEB.vip, 'gw1', fault.at, WATCH_MS);
  await sleep(Math.max(0, WATCH_MS - (performance.now() - fault.at)));
  client.send('report');
  const rep = await client.next();
  await fault.heal();
  const buckets = (rep.buckets as Record<string, Record<string, number[]>>)[label] ?? {};
  const rtts = Object.values(buckets).flat();
  const r: FailoverRound = {
    kind,
    ecmpMs,
    worstStallMs: Math.max(0, ...rtts),
    stalled: rtts.filter((x) => x > STALLED_MS).length,
    // The client counts socket errors since it started.
    lost: Number(rep.lost ?? 0) - lostBefore,
  };
  say(
    `[failover] ${label}: ECMP ${ecmpMs?.toFixed(0) ?? '-'} ms, worst stall ${r.worstStallMs.toFixed(0)} ms, ${r.stalled} stalled`,
  );
  return r;
}

export async function runFailover(): Promise<FailoverRound[]> {
  const lab = await labUp({ prefix: PREFIX, routing: 'bgp' }, { replace: true });
  const cp = await startControlPlane(lab, { planners: 1 });
  // Every client socket has TCP_USER_TIMEOUT 3 s, as in test/e2e/routing.test.ts: a connection black-holed that long
  // fails in the kernel (a socket error, counted as broken), as a real client with that option would see it.
  const client = await nsClient(
    lab.clients[0]!.netns,
    'tcp-rtt',
    { dst: WEB.vip, port: WEB.port, count: CONNS, intervalMs: INTERVAL_MS },
    {
      LD_PRELOAD: await tcpUserTimeoutLibrary(lab.config.runRoot),
      [USER_TIMEOUT_ENV]: String(USER_TIMEOUT_MS),
    },
  );
  const out: FailoverRound[] = [];
  try {
    for (const kind of faults.GATEWAY_FAULTS)
      for (let i = 1; i <= ROUNDS; i++) {
        const lostBefore = out.reduce((n, r) => n + r.lost, 0);
        out.push(await oneRound(lab, cp, client, kind, i, lostBefore));
      }
  } finally {
    client.send('close');
    await client.done();
  }
  return out;
}

const ms = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(0));

export function render(rounds: readonly FailoverRound[], m: ReturnType<typeof machine>): string {
  const rows = faults.GATEWAY_FAULTS.map((kind) => {
    const rs = rounds.filter((r) => r.kind === kind);
    const ecmp = rs.map((r) => r.ecmpMs).filter((x): x is number => x !== undefined);
    const stall = rs.map((r) => r.worstStallMs);
    return (
      `| ${kind} | ${rs.length} | ${ms(median(ecmp))} | ${ms(Math.max(...ecmp))} | ${rs.length - ecmp.length} | ` +
      `${ms(median(stall))} | ${ms(Math.max(...stall))} | ${rs.map((r) => r.stalled).join(', ')} | ${rs.reduce((n, r) => n + r.lost, 0)} |`
    );
  });
  return [
    '## Gateway failover with BGP + BFD (lab)',
    '',
    machineLine(m, 'npm run bench -- --only failover'),
    '',
    `The default lab with \`routing: bgp\` (BIRD 2 on the router and both gateways, BFD ${DEFAULT_BFD.intervalMs} ms x ` +
      `${DEFAULT_BFD.multiplier}: a session is down after ${DEFAULT_BFD.intervalMs * DEFAULT_BFD.multiplier} ms ` +
      `without a packet) and its control plane. ${CONNS} long-lived connections through the VIP echo every ` +
      `${INTERVAL_MS} ms; those ECMP hashes to gw1 (*stalled* below) lose their echo when gw1 fails, ${ROUNDS} times per ` +
      'kind, nothing withdrawn first: **kill** (SIGKILL of its ovs-vswitchd, agent and BIRD), **cut** (its veth down at the fabric), ' +
      "**freeze** (SIGSTOP of the same processes). Between rounds gw1 is healed, back in ECMP, and the router's BFD " +
      `session with it is Up again. Every client socket has TCP_USER_TIMEOUT ${USER_TIMEOUT_MS / 1000} s (as in ` +
      'test/e2e/routing.test.ts): a connection whose data stays unacknowledged that long fails in the kernel and ' +
      'counts as *broken*.',
    '',
    "- *ECMP change*: from the fault until the router's kernel route to the VIP has lost gw1 (`ip -j route` in the " +
      'router namespace, polled every ~10 ms).',
    '- *answered*: the slowest echo of the round, i.e. until the last connection that went through gw1 had its ' +
      `first retransmission answered (via gw2). Measured from the send of the echo in flight, at most ${INTERVAL_MS} ms ` +
      "before the fault. It includes the wait for the first retransmission the client's TCP sends after the ECMP " +
      'change: Linux resends a lone unanswered segment after ~200 ms (tail loss probe) and after ~420 ms ' +
      '(retransmission timeout), so a faster detection only helps in those steps.',
    '',
    '| fault | rounds | ECMP change, median (ms) | ECMP change, max (ms) | rounds without a change | answered, median (ms) | answered, max (ms) | stalled connections per round | connections broken |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
    ...rows,
  ].join('\n');
}

async function main(): Promise<void> {
  const m = machine();
  let rounds: FailoverRound[];
  try {
    rounds = await runFailover();
  } finally {
    killClients();
    await labDown(PREFIX).catch((e) => say(`[failover] lab down failed: ${(e as Error).message}`));
  }
  const text = render(rounds, finish(m));
  process.stdout.write(`${text}\n`);
  if (process.env.FAILOVER_BENCH_NO_WRITE !== '1') writeSection('failover', text);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      killClients();
      void labDown(PREFIX).finally(() => process.exit(130));
    });
  await main();
}
