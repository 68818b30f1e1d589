// Lab performance benchmarks (issue 6, items 1-5): sluice (dp_hash, fields) against the BASELINE fixture
// (bench/perf/baseline.ts: a stateful conntrack gateway as OVN builds it) and the lab's BOUND (one output flow),
// all on the same lab, same OVS, same run. Root. `npm run bench -- --only perf-lab` (or
// `node --import tsx bench/perf/lab.ts [state,fwd,setup,sc]`). Writes docs/benchmarks.md between the bench:perf-lab
// markers. Lab prefix `slb-pf-` (1 gateway, 2 hosts x 1 backend, 2 clients), torn down in `finally` and on
// SIGINT/SIGTERM; traffic clients are children of this process and killed by pid.
//
// Measurements (each a few seconds, repeated, medians; numbers recorded as measured, never asserted):
//   state  (3) concurrent idle TCP connections (1k, 10k): gateway conntrack entries, datapath flows, upcalls,
//              ovs-vswitchd RSS growth; per mode.
//   fwd    (1)+(5) small UDP packets (60-byte frames) at a fixed offered rate, "new" (every datagram a new 5-tuple)
//              and "established" (8 fixed 5-tuples): ovs-vswitchd CPU per client packet on the gateway and on the
//              hosts (from /proc/<pid>/stat), replies received; per mode, including the bound.
//   setup  (2) TCP connection setup (connect, greeting, close with RST) through the gateway with 8..256 loops
//              until failures appear.
//   sc     (4) echo RTT of connections whose slot moved (second-chance hop) vs ones whose slot did not.
// Environment: PERF_LAB_PPS (default 3000), PERF_LAB_SECONDS (4), PERF_LAB_REPEATS (3), PERF_LAB_CONNS
// ("1000,10000"), PERF_LAB_MODES (fwd modes, "bound,dp_hash,fields,baseline"), PERF_LAB_NO_WRITE=1.

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { programNode } from '../../src/agent/node-ops.ts';
import type { LabVip } from '../../src/lab/config.ts';
import { LabController, setLabBackendState } from '../../src/lab/controller.ts';
import type { LabNode } from '../../src/lab/node.ts';
import { type Lab, labDown, labUp } from '../../src/lab/topology.ts';
import type { Config, HashMode } from '../../src/model/types.ts';
import { planNext } from '../../src/rollout/planner.ts';
import type { Generation } from '../../src/rollout/types.ts';
import { type BaselineVip, clearBrInt, installBaseline, installBound } from './baseline.ts';
import {
  finish,
  type Machine,
  machine,
  machineLine,
  median,
  ratio,
  say,
  sleep,
  writeSection,
} from './common.ts';

export const PREFIX = 'slb-pf-';
const GW = 'gw1';
const CLIENT_SCRIPT = fileURLToPath(new URL('./client.ts', import.meta.url));
const TCP_VIP = { name: 'web', vip: '203.0.113.10', port: 80 } as const;
const UDP_VIP = { name: 'dgram', vip: '203.0.113.30', port: 80 } as const;
const BACKENDS = ['host1-b1', 'host2-b1'] as const;
const VIPS: LabVip[] = [
  {
    name: TCP_VIP.name,
    vip: TCP_VIP.vip,
    family: 4,
    protocol: 'tcp',
    port: TCP_VIP.port,
    backends: [...BACKENDS],
  },
  {
    name: UDP_VIP.name,
    vip: UDP_VIP.vip,
    family: 4,
    protocol: 'udp',
    port: UDP_VIP.port,
    backends: [...BACKENDS],
  },
];
const BASE_VIPS: BaselineVip[] = VIPS.map((v) => ({
  vip: v.vip,
  port: v.port,
  protocol: v.protocol,
  backends: v.backends,
}));

export type Mode = 'bound' | 'dp_hash' | 'fields' | 'baseline';
const LABEL: Record<Mode, string> = {
  bound: 'bound (1 output flow)',
  dp_hash: 'sluice dp_hash',
  fields: 'sluice fields',
  baseline: 'BASELINE (conntrack gateway)',
};

const env = (k: string, d: string) => process.env[k] ?? d;
const PPS = Number(env('PERF_LAB_PPS', '3000'));
const SECONDS = Number(env('PERF_LAB_SECONDS', '4'));
const REPEATS = Number(env('PERF_LAB_REPEATS', '3'));
const CONNS = env('PERF_LAB_CONNS', '1000,10000').split(',').map(Number);
const FWD_MODES = env('PERF_LAB_MODES', 'bound,dp_hash,fields,baseline').split(',') as Mode[];

// ---- reading a node ------------------------------------------------------------------------------------------

/** utime + stime of the node's ovs-vswitchd (all threads), ms. */
function cpuMs(n: LabNode): number {
  const pid = n.vswitchdPid();
  if (pid === undefined) return Number.NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // fields 14, 15; USER_HZ = 100
}

function rssKiB(n: LabNode): number {
  const pid = n.vswitchdPid();
  if (pid === undefined) return Number.NaN;
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

async function appctl(n: LabNode, args: string[]): Promise<string> {
  return (await n.appctl(args)).stdout;
}

interface NodeCounters {
  cpuMs: number;
  packets: number;
  upcalls: number;
  dpFlows: number;
  ct: number;
  rssKiB: number;
}

async function counters(n: LabNode, withCt = true): Promise<NodeCounters> {
  const pmd = await appctl(n, ['dpif-netdev/pmd-stats-show']);
  const num = (label: string) => Number(new RegExp(`${label}\\s*:?\\s*(\\d+)`).exec(pmd)?.[1] ?? Number.NaN);
  const flows = (await appctl(n, ['dpctl/dump-flows']))
    .split('\n')
    .filter((l) => l.includes('actions:')).length;
  let ct = Number.NaN;
  if (withCt)
    ct = (await appctl(n, ['dpctl/dump-conntrack'])).split('\n').filter((l) => l.trim() !== '').length;
  return {
    cpuMs: cpuMs(n),
    packets: num('packets received'),
    upcalls: num('miss with success upcall'),
    dpFlows: flows,
    ct,
    rssKiB: rssKiB(n),
  };
}

async function flushState(lab: Lab): Promise<void> {
  for (const n of [...lab.gateways, ...lab.hosts]) {
    await n.appctl(['dpctl/flush-conntrack']);
    await n.appctl(['dpctl/del-flows']);
  }
}

// ---- modes ---------------------------------------------------------------------------------------------------

let gen: Generation | null = null;

function sluiceConfig(lab: Lab, mode: HashMode): Config {
  return lab.sluiceConfig({ hashMode: mode, drainWindowSeconds: 3600 });
}

/** Programs every node of the lab for `mode` (br-int cleared first, so nothing of another mode stays). */
export async function setMode(lab: Lab, mode: Mode): Promise<void> {
  if (mode === 'baseline') {
    await installBaseline(lab, GW, BASE_VIPS);
  } else if (mode === 'bound') {
    await installBound(lab, GW, 'host1', BASE_VIPS);
  } else {
    const config = sluiceConfig(lab, mode);
    gen ??= planNext({ config, latest: null, connections: () => 0, now: Date.now() }).next!;
    for (const n of [...lab.hosts, ...lab.gateways]) {
      await clearBrInt(n);
      await programNode(n, config, gen, lab.compilerFacts(n.name));
    }
  }
  await flushState(lab);
  await sleep(300);
}

// ---- traffic clients (children of this process) ---------------------------------------------------------------

const children = new Set<ChildProcess>();

interface Client {
  readonly proc: ChildProcess;
  send(line: string): void;
  next(): Promise<Record<string, unknown>>;
  done(): Promise<Record<string, unknown>>;
}

async function client(lab: Lab, ci: number, mode: string, opts: Record<string, unknown>): Promise<Client> {
  const ns = lab.clients[ci].netns;
  const proc = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '--import', 'tsx', CLIENT_SCRIPT, mode, JSON.stringify(opts)],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  const queue: Record<string, unknown>[] = [];
  const waiters: Array<(x: Record<string, unknown>) => void> = [];
  let result: Record<string, unknown> | undefined;
  const resultWaiters: Array<(x: Record<string, unknown>) => void> = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    let x: Record<string, unknown>;
    try {
      x = JSON.parse(l) as Record<string, unknown>;
    } catch {
      return;
    }
    if ('result' in x || 'error' in x) {
      result = x;
      for (const w of resultWaiters.splice(0)) w(x);
      return;
    }
    const w = waiters.shift();
    if (w) w(x);
    else queue.push(x);
  });
  proc.on('exit', () => {
    const x = result ?? { error: `client exited (${proc.exitCode})` };
    result = x;
    for (const w of resultWaiters.splice(0)) w(x);
    for (const w of waiters.splice(0)) w(x);
  });
  const c: Client = {
    proc,
    send: (line) => proc.stdin!.write(`${line}\n`),
    next: () => {
      const q = queue.shift();
      if (q) return Promise.resolve(q);
      if (result) return Promise.resolve(result);
      return new Promise((r) => waiters.push(r));
    },
    done: () => (result ? Promise.resolve(result) : new Promise((r) => resultWaiters.push(r))),
  };
  const ready = await c.next();
  if (!('ready' in ready)) throw new Error(`client ${mode} in ${ns}: ${JSON.stringify(ready)}`);
  return c;
}

const res = (x: Record<string, unknown>) => {
  if ('error' in x) throw new Error(String(x.error));
  return x.result as Record<string, number>;
};

// ---- (3) state vs concurrent connections ------------------------------------------------------------------------

export interface StateRow {
  readonly mode: Mode;
  readonly conns: number;
  readonly opened: number;
  readonly failed: number;
  readonly openSeconds: number;
  readonly gwCt: number;
  readonly gwDpFlows: number;
  readonly gwUpcalls: number;
  readonly gwRssGrowthKiB: number;
  readonly hostCt: number;
}

async function measureState(lab: Lab, mode: Mode, conns: number): Promise<StateRow> {
  await setMode(lab, mode);
  const gw = lab.node(GW);
  const b = await counters(gw);
  const per = Math.ceil(conns / lab.clients.length);
  const cs = await Promise.all(
    lab.clients.map((_, i) =>
      client(lab, i, 'tcp-hold', { dst: TCP_VIP.vip, port: TCP_VIP.port, count: per, rate: 400 }),
    ),
  );
  for (const c of cs) c.send('go');
  const opened = await Promise.all(cs.map((c) => c.next()));
  await sleep(1500);
  const a = await counters(gw);
  let hostCt = 0;
  for (const h of lab.hosts)
    hostCt += (await appctl(h, ['dpctl/dump-conntrack'])).split('\n').filter((l) => l.trim()).length;
  for (const c of cs) c.send('close');
  await Promise.all(cs.map((c) => c.done()));
  const row: StateRow = {
    mode,
    conns: per * lab.clients.length,
    opened: opened.reduce((s, x) => s + Number(x.opened ?? 0), 0),
    failed: opened.reduce(
      (s, x) => s + Object.values((x.failures ?? {}) as Record<string, number>).reduce((p, q) => p + q, 0),
      0,
    ),
    openSeconds: Math.max(...opened.map((x) => Number(x.seconds ?? 0))),
    gwCt: a.ct,
    gwDpFlows: a.dpFlows,
    gwUpcalls: a.upcalls - b.upcalls,
    gwRssGrowthKiB: a.rssKiB - b.rssKiB,
    hostCt,
  };
  say(`[state] ${mode} ${conns}: ${JSON.stringify(row)}`);
  return row;
}

// ---- (1) + (5) forwarding CPU per packet ------------------------------------------------------------------------

export interface FwdRun {
  readonly mode: Mode;
  readonly kind: 'new' | 'est';
  readonly sent: number;
  readonly replies: number;
  readonly seconds: number;
  readonly gwCpuMs: number;
  readonly hostCpuMs: number;
  readonly gwPackets: number;
  readonly gwUpcalls: number;
  /** Gateway ovs-vswitchd CPU with no traffic just before this mode's runs, ms per second. */
  readonly gwIdleMsPerS: number;
}

let udpPort = 1024;
let udpIp = 0;
const EXTRA_IPS = Array.from({ length: 64 }, (_, i) => `10.200.0.${100 + i}`);

async function fwdRun(lab: Lab, mode: Mode, kind: 'new' | 'est', gwIdleMsPerS: number): Promise<FwdRun> {
  const gw = lab.node(GW);
  const opts =
    kind === 'est'
      ? { dst: UDP_VIP.vip, port: UDP_VIP.port, pps: PPS, seconds: SECONDS, flows: 8 }
      : {
          dst: UDP_VIP.vip,
          port: UDP_VIP.port,
          pps: PPS,
          seconds: SECONDS,
          ips: [
            ...EXTRA_IPS.slice(udpIp % EXTRA_IPS.length),
            ...EXTRA_IPS.slice(0, udpIp % EXTRA_IPS.length),
          ].join(','),
          portBase: udpPort,
        };
  const c = await client(lab, 0, kind === 'est' ? 'udp-est' : 'udp-new', opts);
  const b = await counters(gw, false);
  const hb = lab.hosts.map(cpuMs);
  c.send('go');
  const r = res(await c.done());
  const a = await counters(gw, false);
  const ha = lab.hosts.map(cpuMs);
  if (kind === 'new') {
    udpIp += Number(r.ipIndex ?? 0);
    udpPort = Number(r.nextPort ?? 1024);
    if (r.ipIndex) udpIp++;
  }
  const run: FwdRun = {
    mode,
    kind,
    sent: r.sent,
    replies: r.replies,
    seconds: r.seconds,
    gwCpuMs: a.cpuMs - b.cpuMs,
    hostCpuMs: ha.reduce((s, x, i) => s + x - hb[i], 0),
    gwPackets: a.packets - b.packets,
    gwUpcalls: a.upcalls - b.upcalls,
    gwIdleMsPerS,
  };
  say(`[fwd] ${mode} ${kind}: ${JSON.stringify(run)}`);
  if (process.env.PERF_LAB_DEBUG === '1')
    for (const n of [gw, ...lab.hosts]) {
      say(
        `--- ${n.name}\n${(await n.ofctl('br-int', ['dump-flows'])).stdout}${(await n.ofctl('br-phy', ['dump-flows'])).stdout}`,
      );
      say((await n.appctl(['dpctl/dump-flows'])).stdout);
    }
  return run;
}

/** ovs-vswitchd CPU with no traffic, ms per second (gateway, hosts summed). */
async function idleCpu(lab: Lab, seconds = SECONDS): Promise<{ gw: number; hosts: number }> {
  const gw = lab.node(GW);
  const g0 = cpuMs(gw);
  const h0 = lab.hosts.map(cpuMs);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const s = (performance.now() - t0) / 1000;
  return {
    gw: (cpuMs(gw) - g0) / s,
    hosts: lab.hosts.map(cpuMs).reduce((a, x, i) => a + x - h0[i], 0) / s,
  };
}

// ---- (2) connection setup ---------------------------------------------------------------------------------------

export interface SetupRow {
  readonly mode: Mode;
  readonly concurrency: number;
  readonly ok: number;
  readonly failed: number;
  readonly seconds: number;
  readonly p50: number;
  readonly p99: number;
  readonly gwCpuMs: number;
  readonly reasons: Record<string, number>;
}

async function setupRun(lab: Lab, mode: Mode, concurrency: number): Promise<SetupRow> {
  const gw = lab.node(GW);
  const per = Math.max(1, Math.round(concurrency / lab.clients.length));
  const cs = await Promise.all(
    lab.clients.map((_, i) =>
      client(lab, i, 'tcp-setup', {
        dst: TCP_VIP.vip,
        port: TCP_VIP.port,
        concurrency: per,
        seconds: SECONDS,
      }),
    ),
  );
  const c0 = cpuMs(gw);
  for (const c of cs) c.send('go');
  const rs = (await Promise.all(cs.map((c) => c.done()))).map(
    (x) => res(x) as unknown as Record<string, unknown>,
  );
  const gwCpu = cpuMs(gw) - c0;
  const row: SetupRow = {
    mode,
    concurrency: per * lab.clients.length,
    ok: rs.reduce((s, x) => s + Number(x.ok), 0),
    failed: rs.reduce(
      (s, x) => s + Object.values(x.failures as Record<string, number>).reduce((p, q) => p + q, 0),
      0,
    ),
    seconds: Math.max(...rs.map((x) => Number(x.seconds))),
    p50: median(rs.map((x) => Number(x.p50 ?? Number.NaN))),
    p99: Math.max(...rs.map((x) => Number(x.p99 ?? Number.NaN))),
    gwCpuMs: gwCpu,
    reasons: rs.reduce<Record<string, number>>((acc, x) => {
      for (const [k, v] of Object.entries(x.failures as Record<string, number>)) acc[k] = (acc[k] ?? 0) + v;
      return acc;
    }, {}),
  };
  say(`[setup] ${mode} c=${concurrency}: ${JSON.stringify(row)}`);
  return row;
}

// ---- (4) second-chance latency ------------------------------------------------------------------------------------

export interface ScResult {
  readonly connections: number;
  readonly lost: number;
  /** backend -> bucket -> RTT samples summary */
  readonly rows: ReadonlyArray<{ backend: string; bucket: string; n: number; p50: number; p99: number }>;
  readonly secondChancePackets: number;
  readonly movedSlots: string;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function measureSc(lab: Lab): Promise<ScResult> {
  for (const n of [...lab.hosts, ...lab.gateways]) await clearBrInt(n);
  await flushState(lab);
  const ctl = new LabController(lab, { onEvent: (e) => say(`[sc] ${e.kind}: ${e.message}`) });
  let config = sluiceConfig(lab, 'dp_hash');
  await ctl.start(config);
  const c = await client(lab, 0, 'tcp-rtt', {
    dst: TCP_VIP.vip,
    port: TCP_VIP.port,
    count: 100,
    intervalMs: 100,
  });
  c.send('go');
  c.send('mark before');
  await sleep(SECONDS * 1000);
  c.send('mark during-change');
  config = setLabBackendState(lab, config, TCP_VIP.name, 'host1-b1', 'draining');
  const r = await ctl.change(config);
  c.send('mark after');
  await sleep(SECONDS * 1000);
  c.send('report');
  const rep = await c.next();
  c.send('close');
  await c.done();
  let sc = 0;
  for (const h of lab.hosts) {
    const flows = (await h.ofctl('br-int', ['dump-flows', 'table=21'])).stdout;
    for (const l of flows.split('\n'))
      if (l.includes('priority=90')) sc += Number(/n_packets=(\d+)/.exec(l)?.[1] ?? 0);
  }
  const buckets = rep.buckets as Record<string, Record<string, number[]>>;
  const rows: Array<ScResult['rows'][number]> = [];
  for (const bucket of ['before', 'after'])
    for (const backend of BACKENDS) {
      const xs = buckets[bucket]?.[backend] ?? [];
      rows.push({ backend, bucket, n: xs.length, p50: quantile(xs, 0.5), p99: quantile(xs, 0.99) });
    }
  const opened = Object.values(buckets.before ?? {}).length;
  void opened;
  return {
    connections: 100,
    lost: Number(rep.lost ?? 0),
    rows,
    secondChancePackets: sc,
    movedSlots: `generations g${r.published.join(', g')}`,
  };
}

// ---- the run ----------------------------------------------------------------------------------------------------

export interface LabReport {
  machine: Machine;
  parts: string[];
  pps: number;
  seconds: number;
  repeats: number;
  idle?: { gw: number; hosts: number };
  state: StateRow[];
  fwd: FwdRun[];
  setup: SetupRow[];
  sc?: ScResult;
  errors: string[];
}

export async function runLabBench(parts: readonly string[], report: LabReport): Promise<LabReport> {
  const lab = await labUp(
    { prefix: PREFIX, gateways: 1, hosts: 2, backendsPerHost: 1, clients: 2, udp: true, vips: VIPS },
    { replace: true, log: (s) => say(`[lab] ${s}`) },
  );
  // Extra client addresses (udp-new: every datagram from a never-used source address and port).
  await addExtraIps(lab);
  await lab.setEcmpGateways([GW]);
  await setMode(lab, 'dp_hash'); // br-phy of every node gets sluice's flows (kept by every mode)
  for (const c of lab.clients)
    await run('ip', ['netns', 'exec', c.netns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000']);
  const step = async (name: string, fn: () => Promise<void>) => {
    if (!parts.includes(name)) return;
    try {
      await fn();
    } catch (e) {
      const msg = `${name}: ${(e as Error).message.split('\n')[0]}`;
      say(`[perf-lab] FAILED ${msg}`);
      report.errors.push(msg);
    }
  };
  await step('state', async () => {
    for (const n of CONNS)
      for (const m of ['dp_hash', 'fields', 'baseline'] as const)
        report.state.push(await measureState(lab, m, n));
  });
  await step('fwd', async () => {
    await sleep(3000); // let the previous part's connections and flows expire
    report.idle = await idleCpu(lab);
    for (let r = 0; r < REPEATS; r++)
      for (const m of FWD_MODES) {
        await setMode(lab, m);
        await sleep(1000);
        const idle = (await idleCpu(lab, 2)).gw;
        report.fwd.push(await fwdRun(lab, m, 'new', idle));
        report.fwd.push(await fwdRun(lab, m, 'est', idle));
      }
  });
  await step('setup', async () => {
    for (const m of ['dp_hash', 'fields', 'baseline'] as const) {
      await setMode(lab, m);
      for (const conc of [8, 32, 128, 256]) {
        const row = await setupRun(lab, m, conc);
        report.setup.push(row);
        await sleep(500);
      }
    }
  });
  await step('sc', async () => {
    report.sc = await measureSc(lab);
  });
  return report;
}

async function addExtraIps(lab: Lab): Promise<void> {
  const ns = lab.clients[0].netns;
  const batch = EXTRA_IPS.map((ip) => `addr add ${ip}/24 dev eth0`).join('\n');
  await run('ip', ['-n', ns, '-batch', '-'], batch);
}

function run(cmd: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d) => {
      err += d;
    });
    p.stdin!.end(input ?? '');
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: ${err}`))));
  });
}

async function teardown(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  await labDown(PREFIX).catch((e) => say(`[lab] down failed: ${(e as Error).message}`));
}

// ---- report -----------------------------------------------------------------------------------------------------

const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');

/** The report as sections: `perf-lab` (topology) and one per part that ran (`perf-lab-state`, ...). */
export function renderLab(r: LabReport): Map<string, string> {
  const out = new Map<string, string>();
  let L: string[] = [];
  const cut = (name: string) => {
    out.set(name, L.join('\n'));
    L = [];
  };
  const stamp = () => {
    L.push('');
    L.push(machineLine(r.machine, `npm run bench -- --only perf-lab --parts ${r.parts.join(',')}`));
  };
  L.push('## Lab: sluice vs the BASELINE stateful gateway, same lab, same OVS, same run');
  L.push('');
  L.push(
    'Topology (prefix `slb-pf-`): 1 gateway, 2 hosts with one backend each (host1-b1, host2-b1), 2 clients, the ' +
      'lab router. VIPs: 203.0.113.10 tcp/80 and 203.0.113.30 udp/80, both over the two backends. Each mode ' +
      're-programs br-int of every node (br-phy identical): **sluice dp_hash** and **sluice fields** (compiled by ' +
      'src/compile, direct server return from the hosts), **BASELINE** (bench/perf/baseline.ts, docs/design/baseline.md: ' +
      "conntrack + `select` group of `ct(commit,nat(dst=backend))` buckets on the gateway, OVN's ct_lb_mark shape; " +
      'hosts deliver plain; replies return through the gateway and are un-NATed there) and **bound** (the gateway ' +
      'forwards every VIP packet into one fixed Geneve tunnel with a single flow: the cheapest thing a gateway can ' +
      'do on this lab; its hosts drop the packets, so it has no replies). Every ovs-vswitchd uses the userspace ' +
      'datapath over veths (AF_PACKET), all on the same 2 shared cores as the traffic generators.',
  );
  if (r.errors.length) {
    L.push('');
    L.push(`Parts that failed in this run: ${r.errors.join('; ')}.`);
  }

  L.push('');
  L.push(
    'Each part below is written by its own run (`--parts`), with its machine line; the modes inside one part come ' +
      'from the same run.',
  );
  cut('perf-lab');
  // (3)
  if (r.state.length) {
    L.push('### Gateway state vs concurrent connections (idle TCP connections held open)');
    stamp();
    L.push('');
    L.push(
      "| connections | mode | opened (failed) | gateway conntrack entries | gateway datapath flows | upcalls per new connection | gateway ovs-vswitchd RSS growth | hosts' conntrack entries |",
    );
    L.push('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const s of r.state)
      L.push(
        `| ${f0(s.conns)} | ${LABEL[s.mode]} | ${f0(s.opened)} (${s.failed}) | ${f0(s.gwCt)} | ${f0(s.gwDpFlows)} | ` +
          `${f2(s.gwUpcalls / Math.max(1, s.opened))} | ${f0(s.gwRssGrowthKiB / 1024)} MiB | ${f0(s.hostCt)} |`,
      );
    const big = Math.max(...r.state.map((s) => s.conns));
    const at = (m: Mode) => r.state.find((s) => s.mode === m && s.conns === big);
    const dp = at('dp_hash');
    const bl = at('baseline');
    const fl = at('fields');
    if (dp && bl && fl)
      L.push(
        '',
        `At ${f0(big)} connections: datapath flows baseline / dp_hash ${ratio(bl.gwDpFlows, dp.gwDpFlows)}, fields / ` +
          `dp_hash ${ratio(fl.gwDpFlows, dp.gwDpFlows)}; gateway conntrack entries: baseline ${f0(bl.gwCt)}, sluice ` +
          `${f0(dp.gwCt)} (sluice keeps the state on the hosts: ${f0(dp.hostCt)} entries there).`,
      );
    L.push(
      '',
      "Reading: the BASELINE gateway's datapath flows stay flat too (conntrack is not part of the megaflow key: " +
        'its flows match ct_state and the dp_hash bucket), but it holds one conntrack entry per connection and its ' +
        'ovs-vswitchd grows with them; sluice `dp_hash` holds neither (flows bounded by the 2^8 slots), sluice `fields` ' +
        'holds one datapath flow per connection (megaflows also expire, so the count can be below the connections).',
    );
    cut('perf-lab-state');
  }

  // (1) + (5)
  if (r.fwd.length) {
    L.push(
      `### Small-packet forwarding: ovs-vswitchd CPU per client packet (UDP, 60-byte frames, ${r.pps} packets/s offered for ${r.seconds} s)`,
    );
    stamp();
    L.push('');
    L.push(
      `Medians of ${r.repeats} runs per cell (modes interleaved in each round). "new": every datagram has a never-used ` +
        '(source address, port), i.e. a new flow; "established": 8 fixed 5-tuples. CPU is utime+stime of the node\'s ' +
        'ovs-vswitchd from /proc/<pid>/stat (all threads) over the run, divided by the datagrams the client sent. ' +
        `Idle ovs-vswitchd CPU (no traffic, at the start of this part): gateway ${f1(r.idle?.gw ?? Number.NaN)} ms/s, hosts ` +
        `${f1(r.idle?.hosts ?? Number.NaN)} ms/s. "idle-corrected" subtracts the gateway's idle CPU measured just before ` +
        'each mode (CPU time is counted in 10 ms ticks, so single runs are coarse; medians). "core-rate" = 1 s / ' +
        'corrected CPU per packet: the packets/s one core would forward at that cost (derived, not measured at saturation).',
    );
    L.push('');
    L.push(
      '| traffic | mode | sent | replies received | gateway CPU µs/packet, raw | idle-corrected | gateway core-rate (pps) | vs baseline | gateway datapath packets per client packet | gateway upcalls per client packet | hosts CPU µs/packet |',
    );
    L.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    const cell = (m: Mode, k: 'new' | 'est') => r.fwd.filter((x) => x.mode === m && x.kind === k);
    const gwRaw = (xs: FwdRun[]) => median(xs.map((x) => (x.gwCpuMs * 1000) / Math.max(1, x.sent)));
    const gwUs = (xs: FwdRun[]) =>
      median(xs.map((x) => ((x.gwCpuMs - x.gwIdleMsPerS * x.seconds) * 1000) / Math.max(1, x.sent)));
    for (const k of ['new', 'est'] as const) {
      const base = gwUs(cell('baseline', k));
      for (const m of ['bound', 'dp_hash', 'fields', 'baseline'] as const) {
        const xs = cell(m, k);
        if (!xs.length) continue;
        const us = gwUs(xs);
        L.push(
          `| ${k === 'new' ? 'new flows' : 'established'} | ${LABEL[m]} | ${f0(median(xs.map((x) => x.sent)))} | ` +
            `${f0(median(xs.map((x) => x.replies)))} | ${f1(gwRaw(xs))} | ${f1(us)} | ${f0(1e6 / us)} | ${m === 'baseline' ? '1.00x' : ratio(base, us)} | ` +
            `${f2(median(xs.map((x) => x.gwPackets / Math.max(1, x.sent))))} | ${f2(median(xs.map((x) => x.gwUpcalls / Math.max(1, x.sent))))} | ` +
            `${m === 'bound' ? '–' : f1(median(xs.map((x) => (x.hostCpuMs * 1000) / Math.max(1, x.sent))))} |`,
        );
      }
    }
    L.push('');
    L.push(
      '"vs baseline" = baseline gateway CPU per packet / this mode\'s (higher is better for the mode). The BASELINE ' +
        "gateway also carries every reply (its datapath packets per client packet include them); sluice's replies go " +
        'from the hosts straight to the router. The hosts column is item 5 of the issue (host cost): sluice hosts run ' +
        "conntrack + DNAT (and un-DNAT of the replies) where the baseline hosts only deliver plain; the bound's hosts " +
        'drop its packets (no delivery, no replies). Compare modes within one traffic kind: the two generators differ ' +
        '("new" opens a socket per datagram and sends them one by one; "established" sends small bursts), so "new" ' +
        'and "established" rows are not comparable with each other. Before each mode\'s runs the gateway\'s idle ' +
        'ovs-vswitchd CPU is measured for 2 s and subtracted ("idle-corrected").',
    );
    cut('perf-lab-fwd');
  }

  // (2)
  if (r.setup.length) {
    L.push(
      `### TCP connection setup through one gateway (connect, greeting from the backend, close with RST; ${r.seconds} s per cell)`,
    );
    stamp();
    L.push('');
    L.push(
      '| mode | concurrent loops | connections/s | failed | setup p50 / p99 (ms) | gateway CPU ms per connection | vs baseline (conn/s) |',
    );
    L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const s of r.setup) {
      const b = r.setup.find((x) => x.mode === 'baseline' && x.concurrency === s.concurrency);
      const rate = s.ok / s.seconds;
      L.push(
        `| ${LABEL[s.mode]} | ${s.concurrency} | ${f0(rate)} | ${s.failed} | ${f1(s.p50)} / ${f1(s.p99)} | ` +
          `${f2(s.gwCpuMs / Math.max(1, s.ok))} | ${b ? ratio(rate, b.ok / b.seconds) : ''} |`,
      );
    }
    L.push('');
    L.push(
      "The connection rate is bounded by the lab (the clients' and backends' kernels and Node processes, and five " +
        'ovs-vswitchd, on the same 2 cores); the gateway CPU per connection is the figure that belongs to the gateway. ' +
        `Failures (3 s connect+greeting timeout or reset), by reason: ${
          r.setup
            .map((x) => `${x.mode}/${x.concurrency}: ${JSON.stringify(x.reasons)}`)
            .filter((x) => !x.endsWith('{}'))
            .join('; ') || 'none'
        }.`,
    );
    cut('perf-lab-setup');
  }

  // (4)
  if (r.sc) {
    L.push('### Extra latency of the second-chance hop');
    stamp();
    L.push('');
    L.push(
      `${r.sc.connections} TCP connections to 203.0.113.10:80 (sluice dp_hash), each echoing 8 bytes every 100 ms. Then ` +
        `host1-b1 is drained (${r.sc.movedSlots}): every slot it owned moves to host2-b1 with host1 as second chance, ` +
        "so each packet of host1-b1's connections goes gateway -> host2 (no conntrack entry) -> host1 (the extra " +
        'hop); host2-b1\'s connections are the unmoved control. RTT in ms; "before" is the same connections before the change.',
    );
    L.push('');
    L.push('| connections on | slot | before: n, p50 / p99 | after: n, p50 / p99 | p50 after / before |');
    L.push('| --- | --- | ---: | ---: | ---: |');
    for (const b of BACKENDS) {
      const x = r.sc.rows.find((y) => y.backend === b && y.bucket === 'before');
      const y = r.sc.rows.find((z) => z.backend === b && z.bucket === 'after');
      if (!x || !y) continue;
      L.push(
        `| ${b} | ${b === 'host1-b1' ? 'moved (second-chance hop)' : 'not moved'} | ${x.n}, ${f2(x.p50)} / ${f2(x.p99)} | ` +
          `${y.n}, ${f2(y.p50)} / ${f2(y.p99)} | ${ratio(y.p50, x.p50)} |`,
      );
    }
    const mv = r.sc.rows.find((y) => y.backend === 'host1-b1' && y.bucket === 'after');
    const st = r.sc.rows.find((y) => y.backend === 'host2-b1' && y.bucket === 'after');
    L.push('');
    L.push(
      `Second-chance packets handed on by the hosts: ${f0(r.sc.secondChancePackets)}; echo errors: ${r.sc.lost}. ` +
        `After the change, moved / not moved: p50 ${mv && st ? ratio(mv.p50, st.p50) : 'n/a'}, p99 ` +
        `${mv && st ? ratio(mv.p99, st.p99) : 'n/a'}. On this lab the extra hop (one more Geneve encapsulation and one ` +
        'more ovs-vswitchd pass, on the same machine) is within the noise of the overloaded machine; on real hosts it ' +
        "adds one network hop's latency.",
    );
    cut('perf-lab-sc');
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const parts = (process.argv[2] ?? 'state,fwd,setup,sc').split(',');
  const report: LabReport = {
    machine: machine(),
    parts,
    pps: PPS,
    seconds: SECONDS,
    repeats: REPEATS,
    state: [],
    fwd: [],
    setup: [],
    errors: [],
  };
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      say(`[perf-lab] ${sig}: tearing the lab down`);
      teardown().finally(() => process.exit(130));
    });
  try {
    await runLabBench(parts, report);
  } catch (e) {
    report.errors.push(`lab: ${(e as Error).message.split('\n')[0]}`);
    say(`[perf-lab] ${(e as Error).stack}`);
  } finally {
    await teardown();
  }
  finish(report.machine);
  for (const [name, md] of renderLab(report)) {
    process.stdout.write(`${md}\n\n`);
    if (process.env.PERF_LAB_NO_WRITE !== '1') writeSection(name, md);
  }
  process.exit(report.errors.length ? 1 : 0);
}
