// Latency through chains of previous owners on the lab (root): request/response RTT of connections delivered
// directly and through 1, 2 and 3 host-to-host hops, as ratios against the direct path measured over the same
// seconds, and the hosts' CHAIN flows per chain length. `npm run bench -- --only chains` (or
// `node --import tsx bench/chains.ts`). Writes docs/benchmarks.md between the bench:chains markers; the prose is
// bench/chains-report.md. Lab prefix `slb-ch-` (1 gateway, 4 hosts x 1 backend, 1 client), torn down in `finally`
// and on SIGINT/SIGTERM; traffic clients (bench/perf/client.ts tcp-rtt) are children of this process.
//
// A round: web (2^4 slots) on host1-b1 alone, CONNS long-lived echoing connections and HOLD idle ones; then three
// times "drain the owner of every slot, add the next host's backend" (rolled out by the planner with its phases and
// ack gating, src/lab/controller.ts), CONNS + HOLD new connections after each. The idle ones keep a connection of
// every owner in every slot (a previous owner without one would leave that slot's chain, and the lanes of the slot
// would shift), so every slot's lanes are host1-b1, host2-b1, host3-b1, host4-b1 (checked): host1-b1's connections
// are 1 hop from the primary's host, host2-b1's 2 and host3-b1's 3; host4-b1's are direct, and a second direct group
// opened last gives the noise floor. Numbers are recorded, never asserted.
// Environment: CHAINS_BENCH_ROUNDS (3), CHAINS_BENCH_CONNS (25 per group), CHAINS_BENCH_HOLD (160 idle per owner),
// CHAINS_BENCH_SECONDS (8), CHAINS_BENCH_NO_WRITE=1.

import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { NO_OWNER } from '../src/hashing/slots.ts';
import { addLabBackend, LabController, setLabBackendState } from '../src/lab/controller.ts';
import { packetsByKind } from '../src/lab/flow-counters.ts';
import { type Lab, labDown, labUp } from '../src/lab/topology.ts';
import type { Config } from '../src/model/types.ts';
import { LANES, planLanes } from '../src/rollout/types.ts';
import { clearBrInt } from './perf/baseline.ts';
import { finish, machine, machineLine, median, say, sleep, writeSection } from './perf/common.ts';
import { type Client, flushState, killClients, nsClient, quantile } from './perf/lab.ts';
import { blocks, f0, f2, fill, mdTable, spreadOf } from './perf/lab-report.ts';

const PREFIX = 'slb-ch-';
const WEB = { name: 'web', vip: '203.0.113.10', port: 80 } as const;
/** The owners of every slot, in the order they take it (and so in lane order). */
const OWNERS = ['host1-b1', 'host2-b1', 'host3-b1', 'host4-b1'] as const;
const env = (k: string, d: string) => Number(process.env[k] ?? d);
const ROUNDS = env('CHAINS_BENCH_ROUNDS', '3');
const CONNS = env('CHAINS_BENCH_CONNS', '25');
const SECONDS = env('CHAINS_BENCH_SECONDS', '8');
const HOLD = env('CHAINS_BENCH_HOLD', '160');
/** Few slots, so that HOLD idle connections put one of every owner in every slot. */
const SLOT_BITS = 4;
const INTERVAL_MS = 100;
const TEMPLATE = new URL('./chains-report.md', import.meta.url);

/** One group of connections: its backend and how many host-to-host hops its packets take. */
interface Group {
  readonly label: string;
  readonly backend: string;
  readonly hops: number;
}
const GROUPS: readonly Group[] = [
  { label: 'direct', backend: 'host4-b1', hops: 0 },
  { label: 'direct, second group (noise floor)', backend: 'host4-b1', hops: 0 },
  { label: '1 hop', backend: 'host1-b1', hops: 1 },
  { label: '2 hops', backend: 'host2-b1', hops: 2 },
  { label: '3 hops', backend: 'host3-b1', hops: 3 },
];

interface Rtt {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  /** Samples from another backend than the group's (must be 0: the group is where it should be). */
  readonly elsewhere: number;
  readonly lost: number;
}

export interface Round {
  /** Per GROUPS entry. */
  readonly rtt: readonly Rtt[];
  /** flows[k][h]: CHAIN flows on host h+1 with k previous owners per slot (k = 0..3). */
  readonly flows: readonly (readonly number[])[];
  readonly lanesOk: number;
  readonly slots: number;
  readonly hopPackets: number;
  readonly load1: number;
}

async function chainFlows(lab: Lab): Promise<number[]> {
  const out: number[] = [];
  for (const h of lab.hosts) out.push((await packetsByKind([h], 'br-int', 'flows')).CHAIN_HOP ?? 0);
  return out;
}

/** Slots of web whose lanes 0..3 hold OWNERS in order. */
function lanesInOrder(lab: Lab, ctl: LabController): { ok: number; slots: number } {
  const p = ctl.latest!.pools.get(WEB.name)!;
  const lanes = planLanes(p);
  const want = OWNERS.map((o) => lab.backend(o).ip);
  let ok = 0;
  for (let s = 0; s < p.primary.length; s++) {
    const got = Array.from({ length: LANES }, (_, l) => lanes[s * LANES + l]).map((m) =>
      m === NO_OWNER ? undefined : p.members[m]!.address,
    );
    if (want.every((ip, l) => got[l] === ip) && got.slice(want.length).every((x) => x === undefined)) ok++;
  }
  return { ok, slots: p.primary.length };
}

async function round(lab: Lab): Promise<Round> {
  for (const n of [...lab.hosts, ...lab.gateways]) await clearBrInt(n);
  await flushState(lab);
  const ctl = new LabController(lab, { onEvent: (e) => say(`[chains] ${e.kind}: ${e.message}`) });
  let config: Config = lab.sluiceConfig({ slotBits: SLOT_BITS });
  await ctl.start(config);
  const clients: Client[] = [];
  const holders: Client[] = [];
  const ns = lab.clients[0]!.netns;
  const open = async (hold = true) => {
    if (hold) {
      const h = await nsClient(ns, 'tcp-hold', { dst: WEB.vip, port: WEB.port, count: HOLD, rate: 300 });
      holders.push(h);
      h.send('go');
      const r = await h.next();
      if (r.opened !== HOLD) throw new Error(`idle connections: ${JSON.stringify(r)}`);
    }
    clients.push(
      await nsClient(ns, 'tcp-rtt', { dst: WEB.vip, port: WEB.port, count: CONNS, intervalMs: INTERVAL_MS }),
    );
  };
  const flows: number[][] = [];
  try {
    await open(); // on host1-b1
    flows.push(await chainFlows(lab));
    for (let i = 1; i < OWNERS.length; i++) {
      config = setLabBackendState(
        lab,
        addLabBackend(lab, config, WEB.name, OWNERS[i]!),
        WEB.name,
        OWNERS[i - 1]!,
        'draining',
      );
      const r = await ctl.change(config, { timeoutMs: 120_000 });
      say(`[chains] owner ${OWNERS[i]}: g${r.published.join(', g')}, settled ${r.settled}`);
      flows.push(await chainFlows(lab));
      await open(); // on OWNERS[i]
    }
    await open(false); // a second group on host4-b1
    const lanes = lanesInOrder(lab, ctl);
    // clients: host1-b1, host2-b1, host3-b1, host4-b1, host4-b1 (second); GROUPS order below.
    const order = [3, 4, 0, 1, 2];
    const hops0 = (await packetsByKind(lab.hosts)).CHAIN_HOP ?? 0;
    for (const c of clients) c.send('mark measure');
    await sleep(SECONDS * 1000);
    for (const c of clients) c.send('report');
    const reps = await Promise.all(clients.map((c) => c.next()));
    const hopPackets = ((await packetsByKind(lab.hosts)).CHAIN_HOP ?? 0) - hops0;
    const rtt = GROUPS.map((g, gi) => {
      const rep = reps[order[gi]!]!;
      const b = ((rep.buckets as Record<string, Record<string, number[]>>).measure ?? {}) as Record<
        string,
        number[]
      >;
      const xs = b[g.backend] ?? [];
      const elsewhere = Object.entries(b)
        .filter(([k]) => k !== g.backend)
        .reduce((n, [, v]) => n + v.length, 0);
      return {
        n: xs.length,
        p50: quantile(xs, 0.5),
        p99: quantile(xs, 0.99),
        elsewhere,
        lost: Number(rep.lost ?? 0),
      };
    });
    return { rtt, flows, lanesOk: lanes.ok, slots: lanes.slots, hopPackets, load1: loadavg()[0]! };
  } finally {
    for (const c of [...clients, ...holders]) c.send('close');
    await Promise.all([...clients, ...holders].map((c) => c.done()));
  }
}

export function render(rounds: readonly Round[], m: ReturnType<typeof machine>): string {
  const tpl = blocks(TEMPLATE);
  const rows = rounds.flatMap((r, ri) =>
    GROUPS.map((g, gi) => {
      const x = r.rtt[gi]!;
      const d = r.rtt[0]!;
      return (
        `| ${ri + 1} | ${g.label} | ${g.backend} | ${g.hops} | ${f0(x.n)} | ${f2(x.p50)} | ${f2(x.p99)} | ` +
        `${f2(x.p50 / d.p50)}x | ${f2(x.p99 / d.p99)}x | ${x.elsewhere} | ${x.lost} |`
      );
    }),
  );
  const table = mdTable(
    '| round | group | backend | hops | RTT samples | p50 (ms) | p99 (ms) | p50 / direct | p99 / direct | samples from another backend | echo errors |',
    '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    rows,
  );
  const ratios = mdTable(
    '| group | p50 / direct | p99 / direct |',
    '| --- | ---: | ---: |',
    GROUPS.slice(1).map((g, i) => {
      const gi = i + 1;
      const r = (k: 'p50' | 'p99') => spreadOf(rounds.map((x) => x.rtt[gi]![k] / x.rtt[0]![k]));
      return `| ${g.label} | ${r('p50')} | ${r('p99')} |`;
    }),
  );
  const flowRows = [0, 1, 2, 3].map((k) => {
    const f = rounds[0]!.flows[k]!;
    const owner =
      k === 0
        ? 'host1-b1, stable'
        : `${OWNERS[k]} (lane ${k}), previous owners ${OWNERS.slice(0, k).join(', ')}`;
    const all = f.reduce((a, b) => a + b, 0);
    return `| ${k} | ${owner} | ${f.map(f0).join(' | ')} | ${f0(all)} | ${f2(all / (1 << SLOT_BITS))} |`;
  });
  const flowTable = mdTable(
    '| previous owners per slot | primary | host1 | host2 | host3 | host4 | all hosts | all hosts per slot |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    flowRows,
  );
  const same = rounds.every((r) => JSON.stringify(r.flows) === JSON.stringify(rounds[0]!.flows));
  return fill(tpl, 'chains', {
    machine: machineLine(m, 'npm run bench -- --only chains'),
    conns: CONNS,
    hold: HOLD,
    intervalMs: INTERVAL_MS,
    seconds: SECONDS,
    lanesChecked: rounds.map((r) => `${r.lanesOk} of ${r.slots} in that order`).join('; '),
    rounds: rounds.length,
    loads: rounds.map((r) => r.load1.toFixed(1)).join(', '),
    table,
    ratios,
    hopPackets: f0(median(rounds.map((r) => r.hopPackets))),
    bits: SLOT_BITS,
    sameEveryRound: same ? 'checked: identical' : 'they differed between rounds; the table shows round 1',
    flowTable,
  });
}

async function teardown(): Promise<void> {
  killClients();
  await labDown(PREFIX).catch((e) => say(`[lab] down failed: ${(e as Error).message}`));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const m = machine();
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      say(`[chains] ${sig}: tearing the lab down`);
      teardown().finally(() => process.exit(130));
    });
  const rounds: Round[] = [];
  let failed = false;
  try {
    const lab = await labUp(
      {
        prefix: PREFIX,
        gateways: 1,
        hosts: 4,
        backendsPerHost: 1,
        clients: 1,
        vips: [
          { name: WEB.name, vip: WEB.vip, family: 4, protocol: 'tcp', port: WEB.port, backends: [OWNERS[0]] },
        ],
      },
      { replace: true, log: (s) => say(`[lab] ${s}`) },
    );
    for (let i = 0; i < ROUNDS; i++) rounds.push(await round(lab));
  } catch (e) {
    failed = true;
    say(`[chains] ${(e as Error).stack}`);
  } finally {
    await teardown();
  }
  finish(m);
  if (rounds.length > 0) {
    const md = render(rounds, m);
    process.stdout.write(`${md}\n`);
    if (process.env.CHAINS_BENCH_NO_WRITE !== '1') writeSection('chains', md);
  }
  process.exit(failed || rounds.length === 0 ? 1 : 0);
}
