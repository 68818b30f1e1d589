// `sluice demo` (root): the README's main command. Builds the lab (prefix `sl-`, a stale one is replaced), opens a
// few hundred long-lived TCP connections through the ECMP router and both gateways, then, with live counters every
// second, walks through: a backend added, a backend drained, the drained backend removed once its connections
// closed, a gateway leaving the ECMP set, a gateway's ovs-vswitchd killed and restored, and a rollout with one
// gateway held one generation behind. The lab is torn down at the end (also on Ctrl-C or an error). Exit 0 only if
// no connection broke. `runDemo` is also what scripts/measure-churn.ts runs (second-chance packets per step).

import type { Command } from 'commander';
import { decodeCookie } from '../compile/registry.ts';
import { SluiceError } from '../model/errors.ts';
import type { Config } from '../model/types.ts';
import { revalidate } from '../openflow/applier.ts';
import {
  addLabBackend,
  LabController,
  removeLabBackend,
  setLabBackendState,
  setLabBackendWeight,
} from './controller.ts';
import { type Lab, labDown, labUp } from './topology.ts';
import { aggregate, startTraffic, type Traffic, type TrafficCounters } from './traffic.ts';

export interface DemoOptions {
  /** Namespace prefix (default `sl-`). */
  readonly prefix?: string;
  /** Long-lived connections at start, split 2:1 between web and api (default 300). */
  readonly connections?: number;
  /** Where the narration goes (default stdout). */
  readonly print?: (line: string) => void;
  /** Print live counters every second (default true). */
  readonly counters?: boolean;
  /** Seconds each step is watched with traffic after it happened (default 4). */
  readonly watchSeconds?: number;
}

export interface DemoStep {
  readonly name: string;
  /** Wall time of the step including its watch period, ms. */
  readonly ms: number;
  /** Packets the hosts handed on by second chance during the step (SECOND_CHANCE flows' n_packets). */
  readonly secondChance: number;
  /** Generations published during the step. */
  readonly generations: readonly number[];
  /** Connections broken during the step. */
  readonly broken: number;
}

export interface DemoResult {
  readonly steps: readonly DemoStep[];
  readonly final: TrafficCounters;
  /** Connections opened in all. */
  readonly opened: number;
  readonly broken: number;
  readonly failed: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Packets handed on by second chance, summed over every host's SECOND_CHANCE flows (after a revalidator pass). */
export async function secondChancePackets(lab: Lab): Promise<number> {
  let n = 0;
  for (const h of lab.hosts) {
    await revalidate(h);
    const r = await h.ofctl('br-int', ['dump-flows']);
    for (const line of r.stdout.split('\n')) {
      const c = /cookie=(0x[0-9a-f]+)/.exec(line);
      const p = /n_packets=(\d+)/.exec(line);
      if (c && p && decodeCookie(BigInt(c[1]))?.kind === 'SECOND_CHANCE') n += Number(p[1]);
    }
  }
  return n;
}

/** One counters line: totals and alive/opened per backend. */
export function counterLine(c: TrafficCounters): string {
  const per = Object.entries(c.perBackend)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, b]) => `${k} ${b.alive}/${b.opened}${b.broken ? ` (${b.broken} broken)` : ''}`)
    .join('  ');
  return `opened ${c.opened}  alive ${c.alive}  closed ${c.closed}  broken ${c.broken}  failed ${c.failed}  |  ${per}`;
}

/** Runs the demo on a fresh lab and tears it down. Resolves with what happened; throws on a setup error. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const prefix = opts.prefix ?? 'sl-';
  const print = opts.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const watchMs = (opts.watchSeconds ?? 4) * 1000;
  const total = opts.connections ?? 300;
  const t0 = Date.now();
  const ts = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
  const say = (l: string) => print(`${ts()}  ${l}`);
  const groups: Traffic[] = [];
  let ticker: NodeJS.Timeout | undefined;
  let lab: Lab | undefined;
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    print('\ninterrupted: tearing the lab down');
    if (ticker) clearInterval(ticker);
    void Promise.all(groups.map((g) => g.kill()))
      .then(() => labDown(prefix))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    say(`lab up (prefix ${prefix}): 2 gateways behind an ECMP router, 3 hosts x 2 backends, 2 clients`);
    lab = await labUp({ prefix }, { replace: true });
    const theLab = lab;
    const ctl = new LabController(lab, { onEvent: (e) => say(`  ${e.kind}: ${e.message}`) });
    let config: Config = lab.sluiceConfig({ drainWindowSeconds: 3600 });
    await ctl.start(config);
    const counters = () => aggregate(groups.map((g) => g.counters()));
    const everyone = lab.backends().map((b) => b.name);
    const traffic = async (vip: string, count: number) => {
      const t = await startTraffic(theLab, {
        vip,
        port: theLab.config.backendPort,
        count,
        rate: 150,
        intervalMs: 300,
        timeoutMs: 3000,
        expectBackends: everyone,
      });
      groups.push(t);
      await t.waitOpened(count, 60_000);
      return t;
    };
    const web = lab.config.vips.find((v) => v.name === 'web')!.vip;
    const api = lab.config.vips.find((v) => v.name === 'api')!.vip;
    const nWeb = Math.round((total * 2) / 3);
    say(`opening ${total} long-lived connections (${nWeb} to web ${web}, ${total - nWeb} to api ${api})`);
    const first = await traffic(web, nWeb);
    await traffic(api, total - nWeb);
    if (opts.counters ?? true) ticker = setInterval(() => say(counterLine(counters())), 1000);

    const steps: DemoStep[] = [];
    const step = async (name: string, fn: () => Promise<void>) => {
      say(`=== ${name}`);
      const s0 = Date.now();
      const sc0 = await secondChancePackets(theLab);
      const g0 = ctl.latest?.number ?? 0;
      const b0 = counters().broken;
      await fn();
      await sleep(watchMs);
      const sc = (await secondChancePackets(theLab)) - sc0;
      const gens = ctl.published.map((g) => g.number).filter((n) => n > g0);
      const broken = counters().broken - b0;
      steps.push({ name, ms: Date.now() - s0, secondChance: sc, generations: gens, broken });
      say(
        `--- ${name}: ${broken} broken, ${sc} second-chance packets, generations ${gens.join(', ') || '-'}`,
      );
    };

    await step('backend added: host2-b2 joins web', async () => {
      config = addLabBackend(theLab, config, 'web', 'host2-b2');
      await ctl.change(config);
    });
    let after: Traffic | undefined;
    await step('backend drained: host1-b1 in web gives up its slots, keeps its connections', async () => {
      config = setLabBackendState(theLab, config, 'web', 'host1-b1', 'draining');
      await ctl.change(config);
      say(`  opening 150 new web connections: none may go to host1-b1`);
      after = await traffic(web, 150);
      const c = after.counters().perBackend['host1-b1']?.opened ?? 0;
      say(`  new connections on host1-b1: ${c}`);
    });
    await step('drained backend removed once its connections closed', async () => {
      config = removeLabBackend(theLab, config, 'web', 'host1-b1');
      const r = await ctl.change(config);
      if (!r.settled) {
        say('  the planner waits: host1-b1 still holds connections (second chance kept)');
        await sleep(2000);
        const alive = first.counters().alive;
        say(`  closing the ${alive} web connections opened before the drain (they hold host1-b1's)`);
        first.close(alive);
        const s = await ctl.settle({ timeoutMs: 30_000 });
        say(`  rollout settled: host1-b1 owns no slot (g${s.published.join(', g') || '-'})`);
      }
    });
    await step('gateway gw1 leaves the ECMP set (and comes back)', async () => {
      await ctl.removeGateway('gw1');
      await sleep(watchMs);
      await ctl.addGateway('gw1');
    });
    await step(
      "gateway gw2's ovs-vswitchd killed (withdrawn from ECMP with it), restarted, restored",
      async () => {
        await ctl.killGatewayVswitchd('gw2');
        await sleep(watchMs);
        await ctl.restoreGateway('gw2');
      },
    );
    await step('rollout with gw1 held one generation behind (host2-b1 weight 1 -> 3)', async () => {
      const g = ctl.latest!.number;
      ctl.holdGateway('gw1');
      config = setLabBackendWeight(theLab, config, 'web', 'host2-b1', 3);
      const rollout = ctl.change(config, { timeoutMs: 90_000 });
      rollout.catch(() => {});
      // The router's ECMP set flips so connections cross between the two generations (a re-hash upstream).
      const flips = async () => {
        for (const set of [['gw1'], ['gw2'], ['gw1', 'gw2']]) {
          await theLab.setEcmpGateways(set);
          say(`  router ECMP set: ${set.join(', ')} (connections cross between generations)`);
          await sleep(watchMs / 3);
        }
      };
      const until = async (n: number) => {
        const end = Date.now() + 30_000;
        while (ctl.acks.get('gw2') !== n && Date.now() < end) await sleep(50);
      };
      await until(g + 1);
      say(
        `  skew: gw1 on g${ctl.acks.get('gw1')}, gw2 on g${ctl.acks.get('gw2')}; the planner waits for gw1`,
      );
      await flips();
      await ctl.advanceHeld('gw1');
      await until(g + 2);
      say(`  skew: gw1 on g${ctl.acks.get('gw1')}, gw2 on g${ctl.acks.get('gw2')}`);
      await flips();
      await ctl.releaseGateway('gw1');
      await rollout;
    });

    if (ticker) clearInterval(ticker);
    say('stopping traffic');
    const final = aggregate(await Promise.all(groups.map((g) => g.stop())));
    say(`final: ${counterLine(final)}`);
    for (const s of steps) say(`  ${s.name}: ${s.broken} broken, ${s.secondChance} second-chance packets`);
    return { steps, final, opened: final.opened, broken: final.broken, failed: final.failed };
  } catch (e) {
    // Interrupted: the signal handler tears the lab down and exits 130; what fails meanwhile is its doing.
    if (interrupted) await new Promise(() => {});
    throw e;
  } finally {
    if (ticker) clearInterval(ticker);
    await Promise.all(groups.map((g) => g.kill()));
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (lab) {
      say('lab down');
      await labDown(prefix);
    }
  }
}

/** `sluice demo`: registered on the main program by src/cli/main.ts. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'build the lab, keep a few hundred TCP connections alive through backend and gateway churn and a skewed ' +
        'rollout, print live counters, tear the lab down (root). Exit 0 only if no connection broke.',
    )
    .option('--prefix <prefix>', 'namespace prefix of the lab', 'sl-')
    .option('--connections <n>', 'long-lived connections at start', '300')
    .action(async (o: { prefix: string; connections: string }) => {
      const n = Number(o.connections);
      if (!Number.isInteger(n) || n < 3 || n > 2000)
        throw new SluiceError(
          'SLUICE_E_USAGE',
          `--connections must be an integer in 3..2000, got ${o.connections}`,
        );
      const r = await runDemo({ prefix: o.prefix, connections: n });
      process.stdout.write(
        r.broken === 0
          ? `OK: ${r.opened} connections opened, 0 broken\n`
          : `FAILED: ${r.broken} of ${r.opened} connections broke\n`,
      );
      process.exitCode = r.broken === 0 ? 0 : 1;
    });
}
