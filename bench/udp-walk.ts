// The UDP walk's cost on the lab (root): the round trip of the first datagram of a new UDP flow in a MOVING slot
// (it walks the chain to the previous owner's host and back before it is committed) against one in an UNMOVED slot
// measured over the same seconds, and of the later datagrams of those flows (established), with the extra
// host-to-host hops counted on the hosts' flows. `npm run bench -- --only udp-walk` (or
// `node --import tsx bench/udp-walk.ts`). Writes docs/benchmarks.md between the bench:udp-walk markers. Lab prefix
// `slb-uw-` (1 gateway, 2 hosts x 1 backend, 1 client), torn down in `finally` and on SIGINT/SIGTERM; the traffic
// clients (bench/perf/client.ts udp-flows) are children of this process.
//
// Two UDP VIPs with 2^4 slots: `moving` starts on host1-b1 alone, HOLD long-lived flows (a datagram a second each)
// land on it; then host2-b1 is added and host1-b1 drained (the planner's phases, src/lab/controller.ts): every slot
// that holds one of them keeps host1-b1 in its chain (checked), so a new flow's first datagram goes gateway ->
// host2 (no entry) -> host1 (no entry) -> host2 (the walk ends there and commits): 2 hops more than a
// stable slot's (host1 has no lane left but host2-b1's, so the way back is a CHAIN hop, not a UDP_WALK_RETURN).
// `stable` has host2-b1 alone: the same last hop, no walk. Both get FLOWS new flows per window, at the same time,
// each sending 1 + SENDS datagrams. Hops per first datagram = (CHAIN_HOP + UDP_WALK_RETURN - the holders' own
// datagrams, each 1 hop to host1-b1) / new flows of `moving`. Numbers are recorded, never asserted.
// Environment: UDP_WALK_WINDOWS (3), UDP_WALK_FLOWS (300 per VIP and window), UDP_WALK_HOLD (100),
// UDP_WALK_NO_WRITE=1.

import { pathToFileURL } from 'node:url';
import { NO_OWNER } from '../src/hashing/slots.ts';
import { addLabBackend, LabController, setLabBackendState } from '../src/lab/controller.ts';
import { packetsByKind } from '../src/lab/flow-counters.ts';
import { type Lab, labDown, labUp } from '../src/lab/topology.ts';
import { startTraffic } from '../src/lab/traffic.ts';
import { LANES, planLanes } from '../src/rollout/types.ts';
import { finish, type Machine, machine, machineLine, median, say, writeSection } from './perf/common.ts';
import { type Client, killClients, nsClient, quantile } from './perf/lab.ts';
import { f2, mdTable } from './perf/lab-report.ts';

const PREFIX = 'slb-uw-';
const MOVING = { name: 'moving', vip: '203.0.113.53', port: 80 } as const;
const STABLE = { name: 'stable', vip: '203.0.113.54', port: 80 } as const;
const env = (k: string, d: string) => Number(process.env[k] ?? d);
const WINDOWS = env('UDP_WALK_WINDOWS', '3');
const FLOWS = env('UDP_WALK_FLOWS', '300');
const HOLD = env('UDP_WALK_HOLD', '100');
const SENDS = 5;
const RATE = 30;
const SLOT_BITS = 4;

interface Latency {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface Window {
  /** first/est x moving/stable. */
  readonly rtt: Record<'first' | 'est', Record<'moving' | 'stable', Latency>>;
  readonly lost: Record<'moving' | 'stable', number>;
  readonly walkHops: number;
  readonly walkReturns: number;
  readonly holderDatagrams: number;
  readonly newMoving: number;
}

function latency(xs: number[]): Latency {
  return {
    n: xs.length,
    p50: quantile(xs, 0.5),
    p99: quantile(xs, 0.99),
    max: xs.length ? Math.max(...xs) : NaN,
  };
}

/** Slots of `moving` whose chain is host2-b1 (primary) then host1-b1: the walk's two hosts. */
function slotsInChain(lab: Lab, ctl: LabController): { ok: number; slots: number } {
  const p = ctl.latest!.pools.get(MOVING.name)!;
  const lanes = planLanes(p);
  const [h1, h2] = [lab.backend('host1-b1').ip, lab.backend('host2-b1').ip];
  let ok = 0;
  for (let s = 0; s < p.primary.length; s++) {
    const owners = Array.from({ length: LANES }, (_, l) => lanes[s * LANES + l])
      .filter((m) => m !== NO_OWNER)
      .map((m) => p.members[m]!.address);
    if (p.members[p.primary[s]!]?.address === h2 && owners.includes(h1)) ok++;
  }
  return { ok, slots: p.primary.length };
}

async function measureWindow(lab: Lab, holders: Awaited<ReturnType<typeof startTraffic>>): Promise<Window> {
  const ns = lab.clients[0]!.netns;
  const opts = { count: FLOWS, rate: RATE, sends: SENDS, intervalMs: 100 };
  const clients: Client[] = [
    await nsClient(ns, 'udp-flows', { dst: MOVING.vip, port: MOVING.port, ...opts }),
    await nsClient(ns, 'udp-flows', { dst: STABLE.vip, port: STABLE.port, ...opts }),
  ];
  const k0 = await packetsByKind(lab.hosts);
  const e0 = (await holders.report()).echoes;
  for (const c of clients) c.send('go');
  const [m, s] = (await Promise.all(clients.map((c) => c.done()))).map(
    (r) => r.result as { buckets: Record<'first' | 'est', Record<string, number[]>>; lost: number },
  );
  const k1 = await packetsByKind(lab.hosts);
  const e1 = (await holders.report()).echoes;
  const all = (b: Record<string, number[]>) => Object.values(b).flat();
  const d = (k: string) => (k1[k] ?? 0) - (k0[k] ?? 0);
  return {
    rtt: {
      first: { moving: latency(all(m!.buckets.first)), stable: latency(all(s!.buckets.first)) },
      est: { moving: latency(all(m!.buckets.est)), stable: latency(all(s!.buckets.est)) },
    },
    lost: { moving: m!.lost, stable: s!.lost },
    walkHops: d('CHAIN_HOP'),
    walkReturns: d('UDP_WALK_RETURN'),
    holderDatagrams: e1 - e0,
    newMoving: all(m!.buckets.first).length,
  };
}

async function run(lab: Lab): Promise<{ windows: Window[]; chain: { ok: number; slots: number } }> {
  const ctl = new LabController(lab, { onEvent: (e) => say(`[udp-walk] ${e.kind}: ${e.message}`) });
  let config = lab.sluiceConfig({ slotBits: SLOT_BITS });
  await ctl.start(config);
  const names = lab.backends().map((b) => b.name);
  const holders = await startTraffic(lab, {
    vip: MOVING.vip,
    port: MOVING.port,
    protocol: 'udp',
    count: HOLD,
    rate: 100,
    intervalMs: 1000,
    timeoutMs: 5000,
    expectBackends: names,
  });
  try {
    await holders.waitOpened(HOLD);
    config = setLabBackendState(
      lab,
      addLabBackend(lab, config, MOVING.name, 'host2-b1'),
      MOVING.name,
      'host1-b1',
      'draining',
    );
    const r = await ctl.change(config, { timeoutMs: 120_000 });
    say(`[udp-walk] host2-b1 added, host1-b1 drained: g${r.published.join(', g')}`);
    const chain = slotsInChain(lab, ctl);
    const windows: Window[] = [];
    for (let i = 0; i < WINDOWS; i++) {
      windows.push(await measureWindow(lab, holders));
      say(`[udp-walk] window ${i + 1}: ${JSON.stringify(windows.at(-1)!.rtt.first)}`);
    }
    return { windows, chain };
  } finally {
    await holders.stop().catch(() => holders.kill());
  }
}

const ms = (x: number) => f2(x);

export function render(windows: readonly Window[], chain: { ok: number; slots: number }, m: Machine): string {
  const row = (label: string, kind: 'first' | 'est', vip: 'moving' | 'stable', hops: string) => {
    const xs = windows.map((w) => w.rtt[kind][vip]);
    const base = windows.map((w) => w.rtt[kind].stable);
    const r = (k: 'p50' | 'p99') => f2(median(xs.map((x, i) => x[k] / base[i]![k])));
    return (
      `| ${label} | ${hops} | ${xs.reduce((a, x) => a + x.n, 0)} | ${ms(median(xs.map((x) => x.p50)))} | ` +
      `${ms(median(xs.map((x) => x.p99)))} | ${ms(Math.max(...xs.map((x) => x.max)))} | ${r('p50')}x | ${r('p99')}x |`
    );
  };
  const hops = windows.map((w) => (w.walkHops - w.holderDatagrams + w.walkReturns) / w.newMoving);
  const table = mdTable(
    '| datagram | extra host-to-host hops | samples | p50 (ms) | p99 (ms) | max (ms) | p50 / unmoved | p99 / unmoved |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    [
      row('first of a new flow, unmoved slot', 'first', 'stable', '0'),
      row('first of a new flow, moving slot', 'first', 'moving', `${f2(median(hops))} measured, 2 by design`),
      row('established (later datagrams), unmoved slot', 'est', 'stable', '0'),
      row('established (later datagrams), moving slot', 'est', 'moving', '0'),
    ],
  );
  const lost = windows.map((w) => `${w.lost.moving} / ${w.lost.stable}`).join(', ');
  return [
    '## UDP: the first datagram of a new flow in a moving slot',
    '',
    machineLine(m, 'npm run bench -- --only udp-walk'),
    '',
    `Lab: 1 gateway, 2 hosts x 1 backend, 2^${SLOT_BITS} slots per VIP. \`moving\`: host1-b1, then host2-b1 added and ` +
      `host1-b1 drained while ${HOLD} long-lived UDP flows (one datagram a second each) hold it: ${chain.ok} of ` +
      `${chain.slots} slots kept host1-b1 in their chain behind primary host2-b1, so a new flow's first datagram ` +
      'walks host2 -> host1 -> host2 before it is committed. `stable`: host2-b1 alone, same last hop, no walk. ' +
      `${WINDOWS} windows; in each, ${FLOWS} new flows per VIP (${RATE} a second, both VIPs at once from one client ` +
      `namespace), each sending 1 + ${SENDS} datagrams 100 ms apart. Percentiles are the median over the windows, ` +
      'max the largest seen; ratios are per window against the unmoved slot of the same seconds, then the median.',
    '',
    table,
    '',
    `Extra hops per first datagram in the moving VIP, per window: ${hops.map(f2).join(', ')} (CHAIN_HOP plus ` +
      `UDP_WALK_RETURN packets on the hosts, minus the holders' own datagrams, each one hop to host1-b1, over the new ` +
      `flows). UDP_WALK_RETURN per window: ${windows.map((w) => w.walkReturns).join(', ')} for ` +
      `${windows.map((w) => w.newMoving).join(', ')} new flows: here the way back is itself a chain hop (host2-b1's ` +
      "lane comes after host1-b1's, so host1 hands the datagram on to host2, where the walk ends and commits). " +
      `Flows without an answer (moving / stable): ${lost}. ` +
      "Established datagrams of a new flow go straight to the host it was committed on (the gateway primary's): " +
      '0 extra hops; those of a flow held by a previous owner take 1 hop, as a TCP packet does (section `chains`).',
  ].join('\n');
}

async function teardown(): Promise<void> {
  killClients();
  await labDown(PREFIX).catch((e) => say(`[lab] down failed: ${(e as Error).message}`));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const m = machine();
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      say(`[udp-walk] ${sig}: tearing the lab down`);
      teardown().finally(() => process.exit(130));
    });
  let result: Awaited<ReturnType<typeof run>> | undefined;
  try {
    const vip = (v: typeof MOVING | typeof STABLE, backends: string[]) =>
      ({ name: v.name, vip: v.vip, family: 4, protocol: 'udp', port: v.port, backends }) as const;
    const lab = await labUp(
      {
        prefix: PREFIX,
        gateways: 1,
        hosts: 2,
        backendsPerHost: 1,
        clients: 1,
        udp: true,
        vips: [vip(MOVING, ['host1-b1']), vip(STABLE, ['host2-b1'])],
      },
      { replace: true, log: (s) => say(`[lab] ${s}`) },
    );
    result = await run(lab);
  } catch (e) {
    say(`[udp-walk] ${(e as Error).stack}`);
  } finally {
    await teardown();
  }
  finish(m);
  if (result) {
    const md = render(result.windows, result.chain, m);
    process.stdout.write(`${md}\n`);
    if (process.env.UDP_WALK_NO_WRITE !== '1') writeSection('udp-walk', md);
  }
  process.exit(result ? 0 : 1);
}
