// `sluice demo` (root): the README's main command. Builds the lab (prefix `sl-`, a stale one is replaced) with its
// control plane (src/lab/control-plane.ts: a store ovsdb-server, 2 planners, one agent per node), waits until every
// backend is up by its health check (web TCP, api HTTP, dns UDP; printed as `sluice status` reads them), opens a few
// hundred long-lived TCP connections and a few UDP flows to dns through the ECMP router and both gateways, then, with live counters every
// second, walks through: a backend added, a backend drained, the drained backend removed once its connections
// closed, a gateway leaving the ECMP set, a gateway's ovs-vswitchd killed and restored, a rollout with the two
// gateways on different generations, and the store killed for 30 s (nothing may leave ECMP). Every change is written to the store the way `sluice backend add|drain|del`
// and `sluice apply` write it (editDesiredState + the CLI's edits); progress is read back from the store
// (Global.generation, gateway_generation, Node_Status.applied_generation) and the planners' and agents' logs are
// narrated. What the demo does itself is what the network around sluice would do (docs/design/lab.md "sluice demo"):
// the router's ECMP set (a maintenance withdraw, BFD noticing a dead gateway, an upstream re-hash), freezing one
// agent (SIGSTOP) to hold its gateway one generation behind, and killing the store. The lab is torn down at the end (also on Ctrl-C or an
// error). Exit 0 only if no connection broke and every step's own check held. The steps are src/lab/demo-steps.ts,
// what they work with src/lab/demo-session.ts. `runDemo` is also what scripts/measure-churn.ts runs.

import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { SluiceError } from '../model/errors.ts';
import type { Config } from '../model/types.ts';
import { terminalProgress } from '../progress.ts';
import { backendHttpPort, defaultVips, LAB_ROUTINGS, type LabRouting, type LabVip } from './config.ts';
import { type ControlPlane, startControlPlane } from './control-plane.ts';
import { counterLine } from './demo-log.ts';
import { DemoSession, type DemoStep } from './demo-session.ts';
import { demoScenarios } from './demo-steps.ts';
import { type Lab, labDown, labUp } from './topology.ts';
import type { Traffic, TrafficCounters } from './traffic.ts';

export { counterLine } from './demo-log.ts';
export type { DemoStep } from './demo-session.ts';
export { secondChancePackets } from './flow-counters.ts';

export interface DemoOptions {
  /** Namespace prefix (default `sl-`). */
  readonly prefix?: string;
  /** Long-lived connections at start, split 2:1 between web and api (default 300). */
  readonly connections?: number;
  /** Where the narration goes (default stdout). */
  readonly print?: (line: string) => void;
  /** Print live counters every second (default true). */
  readonly counters?: boolean;
  /** Seconds each step is watched with traffic after it happened (default 3). */
  readonly watchSeconds?: number;
  /** Where the lab lives (default: the lab's default run root). */
  readonly runRoot?: string;
  /** Progress of the start-up (lab, control plane) on stderr when it is a terminal (src/progress.ts). */
  readonly progress?: boolean;
  /** How the lab's router learns the gateways (default `bgp`: BIRD and BFD; docs/design/routing.md). */
  readonly routing?: LabRouting;
}

export interface DemoResult {
  readonly steps: readonly DemoStep[];
  readonly final: TrafficCounters;
  /** Connections opened in all. */
  readonly opened: number;
  readonly broken: number;
  readonly failed: number;
  /** Every generation the planners published, in order (store). */
  readonly generations: readonly number[];
  /** Generations the planners' logs say they published (the same ones, seen from the planners). */
  readonly plannerPublished: readonly number[];
  /** The UDP flows to `dns` kept open through every step (reported, not part of the verdict). */
  readonly udp: TrafficCounters | undefined;
  /** Wall time of the whole demo including lab up and down, ms. */
  readonly ms: number;
}

/** The demo's services: the lab's default web and api (TCP) and `dns`, a UDP load balancer. */
const DEMO_VIPS: readonly LabVip[] = [
  ...defaultVips({ hosts: 3, backendsPerHost: 2, backendPort: 80, ipv6: false }),
  {
    name: 'dns',
    vip: '203.0.113.53',
    family: 4,
    protocol: 'udp',
    port: 80,
    backends: ['host1-b1', 'host2-b1', 'host3-b1'],
  },
];

/** The lab's desired state with `api` probed over HTTP on the backends' health port (dns keeps its default UDP
 *  check, web its TCP one): the demo shows all three kinds of health check at work. */
function demoConfig(lab: Lab): Config {
  const base = lab.sluiceConfig();
  const http = { type: 'http', port: backendHttpPort(lab.config.backendPort), path: '/health' } as const;
  return {
    ...base,
    loadBalancers: base.loadBalancers.map((lb) => (lb.name === 'api' ? { ...lb, healthCheck: http } : lb)),
  };
}

/** Waits until every backend is up by its load balancer's check and prints each check (what `sluice status` shows). */
async function reportHealth(d: DemoSession): Promise<void> {
  await d.until(
    () => d.backendStatus().every((b) => b.health === 'up'),
    60_000,
    'every backend up by its health check',
  );
  const rows = d.backendStatus();
  for (const lb of [...new Set(rows.map((b) => b.lb))]) {
    const mine = rows.filter((b) => b.lb === lb);
    d.say(
      `  health: ${lb} (${mine[0]!.check}): ${mine.filter((b) => b.health === 'up').length} of ${mine.length} backends up ` +
        `(${mine.map((b) => `${b.backend} ${b.health}, last probe ${b.lastProbe}`).join('; ')})`,
    );
  }
}

/** Brings the lab and its control plane up and opens the session every step works with. */
async function demoUp(
  prefix: string,
  runRoot: { runRoot?: string },
  opts: { say: (l: string) => void; watchMs: number; progress: boolean; routing: LabRouting },
  started: (lab: Lab) => void,
): Promise<DemoSession> {
  const { say, watchMs } = opts;
  say(
    `lab up (prefix ${prefix}): 2 gateways behind an ECMP router (${opts.routing === 'bgp' ? 'BGP + BFD, BIRD' : 'static routes'}), 3 hosts x 2 backends, 2 clients`,
  );
  const labProgress = opts.progress ? terminalProgress('demo: lab up', 5) : undefined;
  let lab: Lab;
  try {
    lab = await labUp(
      { prefix, ...runRoot, routing: opts.routing, udp: true, vips: DEMO_VIPS },
      { replace: true, progress: labProgress },
    );
  } finally {
    labProgress?.end();
  }
  started(lab);
  say('control plane up: a store (ovsdb-server), 2 planners (one active, one standby), one agent per node');
  const cpProgress = opts.progress ? terminalProgress('demo: control plane', 4) : undefined;
  const cp: ControlPlane = await startControlPlane(lab, {
    config: demoConfig(lab),
    log: (m) => {
      cpProgress?.clear();
      say(`  ${m}`);
    },
    progress: cpProgress,
  }).finally(() => cpProgress?.end());
  const [, db, ...tls] = cp.operatorArgs();
  say(
    `  the store: DB=${db}; every change below is what \`sluice ... --db $DB\` writes as the operator ` +
      `(${tls.join(' ') || 'no TLS'}; mutual TLS and RBAC)`,
  );
  const d = await DemoSession.open(lab, cp, say, watchMs);
  await reportHealth(d);
  return d;
}

/** UDP flows to dns kept open through the whole demo. */
const UDP_FLOWS = 30;

/** Opens the long-lived connections, 2:1 between web and api; resolves with the web group. */
async function openConnections(d: DemoSession, total: number): Promise<Traffic> {
  const web = d.vip('web');
  const api = d.vip('api');
  const nWeb = Math.round((total * 2) / 3);
  d.say(`opening ${total} long-lived connections (${nWeb} to web ${web}, ${total - nWeb} to api ${api})`);
  const first = await d.traffic(web, nWeb);
  await d.traffic(api, total - nWeb);
  d.say(`opening ${UDP_FLOWS} UDP flows to dns ${d.vip('dns')} (a datagram a second each, reported apart)`);
  await d.udpFlows(d.vip('dns'), UDP_FLOWS);
  return first;
}

/** Stops the traffic and summarises the run (after the planners' logs caught up with the store). */
async function finishDemo(d: DemoSession, t0: number): Promise<DemoResult> {
  d.say('stopping traffic');
  const final = await d.stopTraffic();
  const udp = await d.stopUdp();
  // A planner logs a publication after its transaction returned, and the store's monitor update may come first
  // (or the other way round): give the two views up to 10 s to agree on the last generation.
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(100)) {
    d.pollLogs();
    if (d.plannerPublished.at(-1) === d.published.at(-1)) break;
  }
  d.say(`final: ${counterLine(final)}`);
  if (udp !== undefined)
    d.say(
      `udp flows to dns: ${udp.opened} opened, ${udp.echoes} answers, ${udp.broken} broken ${JSON.stringify(udp.brokenByReason)}`,
    );
  for (const st of d.steps)
    d.say(
      `  ${st.name}: ${st.broken} broken, ${st.secondChance} second-chance packets, generations ${st.generations.map((x) => `g${x}`).join(', ') || '-'}${st.problem === undefined ? '' : `; CHECK FAILED: ${st.problem}`}`,
    );
  return {
    steps: d.steps,
    final,
    opened: final.opened,
    broken: final.broken,
    failed: final.failed,
    udp,
    generations: [...d.published],
    plannerPublished: [...d.plannerPublished],
    ms: Date.now() - t0,
  };
}

/** Runs the demo on a fresh lab and tears it down. Resolves with what happened; throws on a setup error. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const prefix = opts.prefix ?? 'sl-';
  const print = opts.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const t0 = Date.now();
  const say = (l: string) => print(`${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${l}`);
  const runRoot = opts.runRoot === undefined ? {} : { runRoot: opts.runRoot };
  let ticker: NodeJS.Timeout | undefined;
  let lab: Lab | undefined;
  let demo: DemoSession | undefined;
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    print('\ninterrupted: tearing the lab down');
    if (ticker) clearInterval(ticker);
    void (demo?.close() ?? Promise.resolve())
      .then(() => labDown(prefix, runRoot))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const watchMs = (opts.watchSeconds ?? 3) * 1000;
    const up = { say, watchMs, progress: opts.progress === true, routing: opts.routing ?? 'bgp' } as const;
    const d = await demoUp(prefix, runRoot, up, (l) => {
      lab = l;
    });
    demo = d;
    const first = await openConnections(d, opts.connections ?? 300);
    if (opts.counters ?? true) ticker = setInterval(() => say(counterLine(d.counters())), 1000);
    for (const scenario of demoScenarios(() => first)) await d.step(scenario);
    if (ticker) clearInterval(ticker);
    return await finishDemo(d, t0);
  } catch (e) {
    // Interrupted: the signal handler tears the lab down and exits 130; what fails meanwhile is its doing.
    if (interrupted) await new Promise(() => {});
    throw e;
  } finally {
    if (ticker) clearInterval(ticker);
    await demo?.close();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (lab) {
      say('lab down (control plane, nodes, namespaces)');
      await labDown(prefix, runRoot);
    }
  }
}

/** `sluice demo`: registered on the main program by src/cli/main.ts. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'build the lab with its control plane, keep a few hundred TCP connections alive through backend and gateway ' +
        'churn and a skewed rollout (every change written to the store), print live counters, tear the lab down ' +
        '(root). Exit 0 only if no connection broke and every step did what it should.',
    )
    .option('--prefix <prefix>', 'namespace prefix of the lab', 'sl-')
    .option('--connections <n>', 'long-lived connections at start', '300')
    .option('--routing <mode>', 'bgp (BIRD + BFD) or static (a script edits the ECMP routes)', 'bgp')
    .option('--result-file <path>', "write the run's result (steps, generations, counters) there as JSON")
    .action(async (o: { prefix: string; connections: string; routing: string; resultFile?: string }) => {
      const n = Number(o.connections);
      if (!Number.isInteger(n) || n < 3 || n > 2000)
        throw new SluiceError(
          'SLUICE_E_USAGE',
          `--connections must be an integer in 3..2000, got ${o.connections}`,
        );
      if (!LAB_ROUTINGS.includes(o.routing as LabRouting))
        throw new SluiceError('SLUICE_E_USAGE', `--routing must be bgp or static, got ${o.routing}`);
      const r = await runDemo({
        prefix: o.prefix,
        connections: n,
        progress: true,
        routing: o.routing as LabRouting,
      });
      // For a test of the installed package (test/e2e/package.test.ts), which checks what runDemo returned.
      if (o.resultFile !== undefined) writeFileSync(o.resultFile, `${JSON.stringify(r)}\n`);
      const failedChecks = r.steps
        .filter((st) => st.problem !== undefined)
        .map((st) => `${st.name}: ${st.problem}`);
      const ok = r.broken === 0 && failedChecks.length === 0;
      process.stdout.write(
        ok
          ? `OK: ${r.opened} connections opened, 0 broken; generations g1..g${r.generations.at(-1)} through the store; ${(r.ms / 1000).toFixed(0)} s\n`
          : r.broken > 0
            ? `FAILED: ${r.broken} of ${r.opened} connections broke\n`
            : `FAILED: ${failedChecks.join('; ')}\n`,
      );
      process.exitCode = ok ? 0 : 1;
    });
}
