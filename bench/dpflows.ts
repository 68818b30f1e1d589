// Datapath cost of the two hash modes on real Open vSwitch (root): `node --import tsx bench/dpflows.ts`.
// Writes its section of docs/benchmarks.md (between the bench:dpflows markers) and prints it.
//
// The lab (prefix `slb-dp-`, default sizes: 2 gateways, 3 hosts x 2 backends, 2 clients), driven by the
// LabController. gw2 is withdrawn from the router's ECMP set, so every connection crosses gw1. For hash mode
// `dp_hash` and then `fields` (the same slot tables, the config's hashMode changed and every live node
// re-programmed): gw1's datapath flows are flushed, N (default 1000) TCP connections to web (203.0.113.10:80) are
// opened and kept alive (a few bytes echoed every second), then gw1 is read again:
// - datapath flows: `ovs-appctl dpctl/dump-flows` lines, and how many are in a recirculation (recirc_id != 0),
//   match dp_hash, or match a TCP source port (one flow per connection);
// - upcalls: `dpif-netdev/pmd-stats-show` "miss with success upcall" (the userspace datapath's upcall counter:
//   a packet that missed every cache and was handed to ofproto for translation, which installs a datapath flow;
//   `dpif/show` "missed" counts the same events), plus `upcall/show` flows and two coverage counters;
// before/after deltas, and per new connection.
// Then, back in dp_hash mode with gw2 in ECMP again: 300 connections through both gateways during a backend add
// (host2-b2 joins web) and a drain (host1-b1 leaves web), and the second-chance packets the hosts handed on
// (n_packets of SECOND_CHANCE cookie flows, summed over the hosts) per event.
//
// Not timed assertions: numbers are recorded as measured. The lab is torn down in `finally` and on SIGINT/SIGTERM.
// Options (environment): DPFLOWS_CONNS (default 1000), DPFLOWS_CHURN_CONNS (default 300), DPFLOWS_NO_WRITE=1 (print
// only).

import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { addLabBackend, LabController, setLabBackendState } from '../src/lab/controller.ts';
import { secondChancePackets } from '../src/lab/flow-counters.ts';
import type { LabNode } from '../src/lab/node.ts';
import { type Lab, labDown, labUp } from '../src/lab/topology.ts';
import { startTraffic, type Traffic, type TrafficCounters } from '../src/lab/traffic.ts';
import type { Config } from '../src/model/types.ts';
import { DOC, writeSection } from './perf/common.ts';

const PREFIX = 'slb-dp-';
const WEB = { vip: '203.0.113.10', port: 80 } as const;
const GW = 'gw1';
const OTHER_GW = 'gw2';
const N = Number(process.env.DPFLOWS_CONNS ?? 1000);
const CHURN_N = Number(process.env.DPFLOWS_CHURN_CONNS ?? 300);
const say = (s: string) => process.stderr.write(`${s}\n`);

type HashMode = Config['hashMode'];

/** What one gateway's datapath says at one moment. */
export interface DpSnapshot {
  readonly flows: number;
  readonly recirculated: number;
  readonly dpHash: number;
  /** Flows matching a TCP source port: one per connection. */
  readonly perConnection: number;
  /** pmd-stats-show "miss with success upcall" (cumulative). */
  readonly upcalls: number;
  readonly failedUpcalls: number;
  /** pmd-stats-show "packets received" and "packet recirculations" (cumulative). */
  readonly packets: number;
  readonly recirculations: number;
  readonly megaflowHits: number;
  readonly emcHits: number;
  /** dpif/show "missed" (cumulative). */
  readonly missed: number;
  /** upcall/show "(current N)" flows. */
  readonly upcallShowFlows: number;
  /** coverage/show totals. */
  readonly coverage: Readonly<Record<string, number>>;
}

export interface ModeResult {
  readonly mode: HashMode;
  readonly traffic: TrafficCounters;
  readonly before: DpSnapshot;
  readonly after: DpSnapshot;
  /** Seconds from the first connection attempt until every connection had its greeting. */
  readonly openSeconds: number;
  readonly sampleFlows: readonly string[];
}

export interface ChurnResult {
  readonly connections: number;
  readonly events: ReadonlyArray<{
    readonly event: string;
    readonly generations: readonly number[];
    readonly secondChancePackets: number;
    readonly broken: number;
    readonly note: string;
  }>;
  readonly final: TrafficCounters;
}

export interface DpflowsReport {
  readonly machine: {
    cpu: string;
    cores: number;
    loadStart: number[];
    loadEnd: number[];
    ovs: string;
    kernel: string;
    node: string;
    date: string;
  };
  readonly connections: number;
  readonly modes: readonly ModeResult[];
  readonly churn: ChurnResult;
}

// ---- reading a gateway ---------------------------------------------------------------------------------------

function numAfter(text: string, label: string): number {
  const m = new RegExp(`${label}\\s*:?\\s*(\\d+)`).exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** Datapath flow lines of `ovs-appctl dpctl/dump-flows` (the "flow-dump from ..." headers dropped). */
export function parseDpFlows(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('recirc_id(') || /^[a-z_]+\(/.test(l));
}

/** coverage/show `name ... total: N` lines. */
export function parseCoverage(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of text.split('\n')) {
    const m = /^(\S+)\s+.*total:\s*(\d+)\s*$/.exec(l);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

async function appctl(node: LabNode, args: string[]): Promise<string> {
  const r = await node.appctl(args);
  return r.stdout;
}

async function snapshot(node: LabNode): Promise<{ snap: DpSnapshot; lines: string[] }> {
  const lines = parseDpFlows(await appctl(node, ['dpctl/dump-flows']));
  const pmd = await appctl(node, ['dpif-netdev/pmd-stats-show']);
  const dpif = await appctl(node, ['dpif/show']);
  const upc = await appctl(node, ['upcall/show']);
  const cov = parseCoverage(await appctl(node, ['coverage/show']));
  const snap: DpSnapshot = {
    flows: lines.length,
    recirculated: lines.filter((l) => !l.startsWith('recirc_id(0),')).length,
    dpHash: lines.filter((l) => l.includes('dp_hash(')).length,
    perConnection: lines.filter((l) => /tcp\(src=\d+/.test(l)).length,
    upcalls: numAfter(pmd, 'miss with success upcall'),
    failedUpcalls: numAfter(pmd, 'miss with failed upcall'),
    packets: numAfter(pmd, 'packets received'),
    recirculations: numAfter(pmd, 'packet recirculations'),
    megaflowHits: numAfter(pmd, 'megaflow hits'),
    emcHits: numAfter(pmd, 'emc hits'),
    missed: Number(/missed:(\d+)/.exec(dpif)?.[1] ?? Number.NaN),
    upcallShowFlows: Number(/\(current (\d+)\)/.exec(upc)?.[1] ?? Number.NaN),
    coverage: cov,
  };
  return { snap, lines };
}

// ---- the measurement -----------------------------------------------------------------------------------------

/** Makes `mode` the hash mode and re-programs every live node with it (same slot tables, a new generation). */
async function setHashMode(lab: Lab, ctl: LabController, mode: HashMode): Promise<Config> {
  const config = lab.sluiceConfig({ hashMode: mode });
  if (ctl.config.hashMode === mode) return config;
  const r = await ctl.change(config); // the slot tables do not change: the planner publishes nothing
  if (r.published.length === 0) {
    await ctl.publish({ ...ctl.latest!, number: ctl.latest!.number + 1 }, `hashMode ${mode}`);
  }
  return config;
}

/** Checks that gw1's OpenFlow tables are the ones of `mode` (a dp_hash group, or multipath in the classifier). */
async function checkProgrammed(lab: Lab, mode: HashMode): Promise<void> {
  const n = lab.node(GW);
  const flows = (await n.ofctl('br-int', ['dump-flows'])).stdout;
  const groups = (await n.ofctl('br-int', ['dump-groups'])).stdout;
  const multipath = flows.includes('multipath(');
  const dpGroup = groups.includes('selection_method=dp_hash');
  const ok = mode === 'fields' ? multipath : dpGroup && !multipath;
  if (!ok)
    throw new Error(`${GW} is not programmed for ${mode} (multipath ${multipath}, dp_hash group ${dpGroup})`);
}

async function measureMode(lab: Lab, ctl: LabController, mode: HashMode): Promise<ModeResult> {
  await setHashMode(lab, ctl, mode);
  await checkProgrammed(lab, mode);
  const gw = lab.node(GW);
  await gw.appctl(['dpctl/del-flows']);
  await sleep(1000);
  const before = (await snapshot(gw)).snap;
  say(`[${mode}] before: ${before.flows} datapath flows, ${before.upcalls} upcalls`);
  const t0 = Date.now();
  const traffic: Traffic = await startTraffic(lab, {
    ...WEB,
    count: N,
    rate: 200,
    intervalMs: 1000,
    timeoutMs: 6000,
    expectBackends: lab.backends().map((b) => b.name),
  });
  try {
    await traffic.waitOpened(N, 120_000);
    const openSeconds = (Date.now() - t0) / 1000;
    await sleep(3000); // every connection exchanged data a few times
    const { snap: after, lines } = await snapshot(gw);
    const c = await traffic.report();
    say(
      `[${mode}] after: ${after.flows} datapath flows, ${after.upcalls} upcalls; ${c.alive} alive, ${c.broken} broken`,
    );
    const sampleFlows = [
      lines.find((l) => l.startsWith('recirc_id(0),') && l.includes(WEB.vip)),
      lines.find((l) => !l.startsWith('recirc_id(0),')),
      lines.find((l) => /tcp\(src=\d+/.test(l)),
    ]
      .filter((l, i, all): l is string => l !== undefined && all.indexOf(l) === i)
      .map((l) => l.replace(/actions:(.{0,60}).*$/, 'actions:$1...'));
    const final = await traffic.stop();
    return { mode, traffic: { ...final, alive: c.alive }, before, after, openSeconds, sampleFlows };
  } finally {
    await traffic.stop().catch(() => traffic.kill());
  }
}

async function measureChurn(lab: Lab, ctl: LabController): Promise<ChurnResult> {
  let config = await setHashMode(lab, ctl, 'dp_hash');
  await ctl.addGateway(OTHER_GW);
  const traffic = await startTraffic(lab, {
    ...WEB,
    count: CHURN_N,
    rate: 150,
    intervalMs: 300,
    timeoutMs: 3000,
    expectBackends: lab.backends().map((b) => b.name),
  });
  const events: Array<ChurnResult['events'][number]> = [];
  try {
    await traffic.waitOpened(CHURN_N, 60_000);
    await sleep(1000);
    let sc = await secondChancePackets(lab);
    let broken = (await traffic.report()).broken;
    const step = async (event: string, next: Config, note: () => Promise<string>) => {
      const r = await ctl.change(next);
      await sleep(5000); // traffic through the new tables (> the 3 s echo timeout)
      const sc2 = await secondChancePackets(lab);
      const c = await traffic.report();
      events.push({
        event,
        generations: r.published,
        secondChancePackets: sc2 - sc,
        broken: c.broken - broken,
        note: await note(),
      });
      say(
        `[churn] ${event}: g${r.published.join(',g')}, ${sc2 - sc} second-chance packets, ${c.broken - broken} broken`,
      );
      sc = sc2;
      broken = c.broken;
      return next;
    };
    const onB = (await traffic.report()).perBackend;
    config = await step('host2-b2 added to web', addLabBackend(lab, config, 'web', 'host2-b2'), async () => {
      const pool = ctl.latest!.pools.get('web')!;
      const idx = pool.members.findIndex((m) => m.address === lab.backend('host2-b2').ip);
      return `host2-b2 took ${pool.primary.filter((p) => p === idx).length} of ${pool.primary.length} slots`;
    });
    const drainedConns = (await traffic.report()).perBackend['host1-b1']?.alive ?? 0;
    config = await step(
      'host1-b1 drained in web',
      setLabBackendState(lab, config, 'web', 'host1-b1', 'draining'),
      async () =>
        `host1-b1 held ${drainedConns} of the live connections (${onB['host1-b1']?.opened ?? 0} opened on it)`,
    );
    const final = await traffic.stop();
    return { connections: CHURN_N, events, final };
  } finally {
    await traffic.stop().catch(() => traffic.kill());
  }
}

function machine(): DpflowsReport['machine'] {
  let ovs = 'unknown';
  try {
    ovs = execFileSync('ovs-vswitchd', ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    /* not installed: labUp would have failed first */
  }
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    loadStart: loadavg().map((x) => Math.round(x * 100) / 100),
    loadEnd: [],
    ovs,
    kernel: release(),
    node: process.version,
    date: new Date().toISOString(),
  };
}

export async function runDpflows(): Promise<DpflowsReport> {
  const m = machine();
  const lab = await labUp({ prefix: PREFIX }, { replace: true, log: (s) => say(`[lab] ${s}`) });
  const ctl = new LabController(lab, {
    onEvent: (e) => say(`[${(e.t / 1000).toFixed(1)}s] ${e.kind}: ${e.message}`),
  });
  await ctl.start(lab.sluiceConfig({ hashMode: 'dp_hash' }));
  await ctl.removeGateway(OTHER_GW);
  const modes: ModeResult[] = [];
  for (const mode of ['dp_hash', 'fields'] as const) modes.push(await measureMode(lab, ctl, mode));
  const churn = await measureChurn(lab, ctl);
  return {
    machine: { ...m, loadEnd: loadavg().map((x) => Math.round(x * 100) / 100) },
    connections: N,
    modes,
    churn,
  };
}

// ---- the report --------------------------------------------------------------------------------------------

const d = (r: ModeResult, f: (s: DpSnapshot) => number) => f(r.after) - f(r.before);
const per = (x: number, n: number) => (n > 0 ? (x / n).toFixed(3) : 'n/a');
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : a > 0 ? '∞' : '–');

export function renderMarkdown(r: DpflowsReport): string {
  const [dp, fl] = r.modes;
  const m = r.machine;
  const rows: Array<[string, (x: ModeResult) => number, boolean]> = [
    ['connections opened (kept alive)', (x) => x.traffic.opened, false],
    ['broken / failed connections', (x) => x.traffic.broken + x.traffic.failed, false],
    ['datapath flows after (`dpctl/dump-flows`)', (x) => x.after.flows, true],
    ['… in a recirculation (recirc_id ≠ 0)', (x) => x.after.recirculated, true],
    ['… matching `dp_hash`', (x) => x.after.dpHash, true],
    ['… matching a TCP source port (one per connection)', (x) => x.after.perConnection, true],
    ['upcalls (pmd-stats "miss with success upcall"), delta', (x) => d(x, (s) => s.upcalls), true],
    ['`dpif/show` missed, delta', (x) => d(x, (s) => s.missed), true],
    ['failed upcalls, delta', (x) => d(x, (s) => s.failedUpcalls), false],
    ['packets into the datapath, delta', (x) => d(x, (s) => s.packets), true],
    ['recirculations, delta', (x) => d(x, (s) => s.recirculations), true],
    ['`upcall/show` flows (current), after', (x) => x.after.upcallShowFlows, true],
    ['coverage `xlate_actions`, delta', (x) => d(x, (s) => s.coverage.xlate_actions ?? 0), true],
    ['coverage `dpif_flow_put`, delta', (x) => d(x, (s) => s.coverage.dpif_flow_put ?? 0), true],
  ];
  const lines: string[] = [];
  lines.push('## Datapath flows and upcalls per hash mode; second-chance packets during churn');
  lines.push('');
  lines.push(
    `Written by \`node --import tsx bench/dpflows.ts\` on ${m.date}: ${m.cpu}, ${m.cores} cores (shared; load ` +
      `average ${m.loadStart.join(' / ')} at start, ${m.loadEnd.join(' / ')} at end), ${m.ovs} (userspace ` +
      `datapath), kernel ${m.kernel}, Node ${m.node}.`,
  );
  lines.push('');
  lines.push(
    `The lab (2 gateways, 3 hosts x 2 backends, 2 clients) with gw2 withdrawn from the router's ECMP set: ${r.connections} ` +
      `TCP connections to web (203.0.113.10:80, 4 backends, 2^8 slots) all cross gw1, stay open and echo a few bytes ` +
      'every second. gw1 is read after `dpctl/del-flows` (before) and 3 s after the last connection opened (after). ' +
      "Same slot tables in both modes; only the config's `hashMode` differs (every node re-programmed).",
  );
  lines.push('');
  lines.push(`| gw1, ${r.connections} connections | dp_hash | fields | fields / dp_hash |`);
  lines.push('| --- | ---: | ---: | ---: |');
  for (const [label, f, withRatio] of rows) {
    lines.push(`| ${label} | ${f(dp)} | ${f(fl)} | ${withRatio ? ratio(f(fl), f(dp)) : ''} |`);
  }
  const flowsPer = (x: ModeResult) => per(x.after.flows - x.before.flows, x.traffic.opened);
  const upPer = (x: ModeResult) =>
    per(
      d(x, (s) => s.upcalls),
      x.traffic.opened,
    );
  lines.push(`| datapath flows per connection | ${flowsPer(dp)} | ${flowsPer(fl)} | |`);
  lines.push(`| upcalls per new connection | ${upPer(dp)} | ${upPer(fl)} | |`);
  lines.push(
    `| seconds to open every connection | ${dp.openSeconds.toFixed(1)} | ${fl.openSeconds.toFixed(1)} | |`,
  );
  lines.push('');
  lines.push(
    'Which counter is the upcall count: on the userspace datapath a packet that misses the EMC/SMC/megaflow caches ' +
      'is translated in the PMD (here the main) thread and its megaflow installed directly; `dpif-netdev/pmd-stats-show` ' +
      'counts it as "miss with success upcall", and `dpif/show` reports the same number as "missed". The coverage ' +
      'counter `dpif_flow_put` does not see these upcalls (it counts flow puts through the dpif interface, i.e. the ' +
      'revalidator and handler threads of the kernel datapath), and `xlate_actions` also counts revalidation passes.',
  );
  lines.push('');
  lines.push('Sample datapath flows on gw1 (actions cut):');
  lines.push('');
  for (const x of r.modes) {
    lines.push(`- ${x.mode}:`);
    for (const f of x.sampleFlows) lines.push(`  \`${f}\``);
  }
  lines.push('');
  lines.push(
    `### Second-chance packets during churn (dp_hash, both gateways, ${r.churn.connections} connections to web)`,
  );
  lines.push('');
  lines.push('| event | generations | second-chance packets (hosts) | broken | note |');
  lines.push('| --- | --- | ---: | ---: | --- |');
  for (const e of r.churn.events) {
    lines.push(
      `| ${e.event} | ${e.generations.map((g) => `g${g}`).join(', ')} | ${e.secondChancePackets} | ${e.broken} | ${e.note} |`,
    );
  }
  lines.push('');
  lines.push(
    'Each event is a planner rollout (phase 1, phase 2, gated on both gateways) followed by 5 s of traffic (one ' +
      "echo every 300 ms per connection); second-chance packets are the n_packets of the hosts' SECOND_CHANCE flows " +
      `over that time. End of the run: ${r.churn.final.opened} opened, ${r.churn.final.broken} broken, ` +
      `${r.churn.final.failed} failed.`,
  );
  if (m.loadStart[0] > m.cores || m.loadEnd[0] > m.cores) {
    lines.push('');
    lines.push(
      `Caution: the load average exceeded the core count (other work shared the machine); the flow and upcall ` +
        'counts do not depend on it, the open times do.',
    );
  }
  return lines.join('\n');
}

// ---- main: lab down in finally and on SIGINT/SIGTERM ---------------------------------------------------------

let down: Promise<unknown> | undefined;
function teardown(): Promise<unknown> {
  down ??= labDown(PREFIX).then(
    (r) => say(`[lab] down: ${JSON.stringify(r).slice(0, 200)}`),
    (e: unknown) => say(`[lab] down failed: ${(e as Error).message}`),
  );
  return down;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    say('bench/dpflows.ts needs root (it builds the lab: namespaces and ovs-vswitchd instances)');
    process.exit(2);
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      say(`[dpflows] ${sig}: tearing the lab down`);
      // labUp may still be starting things while the first pass runs: a second pass removes stragglers.
      void teardown()
        .then(() => labDown(PREFIX).catch(() => undefined))
        .then(() => process.exit(130));
    });
  }
  try {
    const r = await runDpflows();
    const md = renderMarkdown(r);
    console.log(md);
    if (process.env.DPFLOWS_NO_WRITE !== '1') {
      writeSection('dpflows', md);
      console.log(`\nwritten to ${DOC.pathname}`);
    }
  } finally {
    await teardown();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    say(`dpflows failed: ${(e as Error).stack ?? String(e)}`);
    process.exitCode = 1;
  });
}
