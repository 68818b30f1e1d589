// `sluice demo` (root): the README's main command. Builds the lab (prefix `sl-`, a stale one is replaced) with its
// control plane (src/lab/control-plane.ts: a store ovsdb-server, 2 planners, one agent per node), opens a few
// hundred long-lived TCP connections through the ECMP router and both gateways, then, with live counters every
// second, walks through: a backend added, a backend drained, the drained backend removed once its connections
// closed, a gateway leaving the ECMP set, a gateway's ovs-vswitchd killed and restored, and a rollout with the two
// gateways on different generations. Every change is written to the store the way `sluice backend add|drain|del`
// and `sluice apply` write it (editDesiredState + the CLI's edits); progress is read back from the store
// (Global.generation, gateway_generation, Node_Status.applied_generation) and the planners' and agents' logs are
// narrated. What the demo does itself is what the network around sluice would do (docs/design/lab.md "sluice demo"):
// the router's ECMP set (a maintenance withdraw, BFD noticing a dead gateway, an upstream re-hash) and freezing one
// agent (SIGSTOP) to hold its gateway one generation behind. The lab is torn down at the end (also on Ctrl-C or an
// error). Exit 0 only if no connection broke. `runDemo` is also what scripts/measure-churn.ts runs.

import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { decodeCookie } from '../compile/registry.ts';
import { SluiceError } from '../model/errors.ts';
import { revalidate } from '../openflow/applier.ts';
import { DESIRED_TABLES } from '../ovsdb/store.ts';
import { gatewayGeneration } from '../planner/view.ts';
import { terminalProgress } from '../progress.ts';
import { type EditableDocument, editDesiredState, edits, StoreSession } from '../store/operator.ts';
import { type ControlPlane, startControlPlane } from './control-plane.ts';
import { labEcmpCommand } from './ecmp.ts';
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
  /** Seconds each step is watched with traffic after it happened (default 3). */
  readonly watchSeconds?: number;
  /** Where the lab lives (default: the lab's default run root). */
  readonly runRoot?: string;
  /** Progress of the start-up (lab, control plane) on stderr when it is a terminal (src/progress.ts). */
  readonly progress?: boolean;
}

export interface DemoStep {
  readonly name: string;
  /** Wall time of the step including its watch period, ms. */
  readonly ms: number;
  /** Packets the hosts handed on by second chance during the step (SECOND_CHANCE flows' n_packets). */
  readonly secondChance: number;
  /** Generations published during the step (read from the store's Global.generation). */
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
  /** Every generation the planners published, in order (store). */
  readonly generations: readonly number[];
  /** Generations the planners' logs say they published (the same ones, seen from the planners). */
  readonly plannerPublished: readonly number[];
  /** Wall time of the whole demo including lab up and down, ms. */
  readonly ms: number;
}

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

/** The log records of the control plane worth narrating, one line each (undefined: not shown). */
function describeRecord(proc: string, r: Record<string, unknown>): string | undefined {
  const msg = String(r.msg ?? '');
  if (proc.startsWith('planner-')) {
    switch (r.event) {
      case 'publish':
      case 'release':
      case 'fence':
      case 'fenced':
      case 'fence-failed':
        return `${proc}: ${msg}`;
      case 'wait':
        // Hosts acknowledge within a second and connection reports come every second: only gateways are news.
        return r.on === 'gateways' ? `${proc}: ${msg}` : undefined;
      case 'idle': {
        const waits = (r.waits as string[] | undefined) ?? [];
        return `${proc}: ${msg}${waits.length ? `; waiting for connections to close: ${waits.join('; ')}` : ''}`;
      }
      case 'lock':
        return r.state === 'held' ? `${proc}: holds the planner lock (active)` : undefined;
      default:
        return undefined;
    }
  }
  switch (r.event) {
    case 'applied':
      // A host whose generation moved no slot of its own changes nothing: not news either.
      return proc.startsWith('agent-host') && r.changed === false
        ? undefined
        : `${proc.replace(/^agent-/, '')} agent: ${msg}`;
    case 'apply-failed':
    case 'fence':
    case 'withdrawn':
    case 'announced':
    case 'vswitchd-restart':
    case 'vswitchd-down':
    case 'rejoin-retry':
      return `${proc.replace(/^agent-/, '')} agent: ${msg}`;
    default:
      return undefined;
  }
}

/** Reads the planners' and agents' JSON logs as they grow and hands each new record on. */
class LogFollower {
  readonly cp: ControlPlane;
  readonly onRecord: (proc: string, r: Record<string, unknown>) => void;
  readonly #offsets = new Map<string, number>();

  constructor(cp: ControlPlane, onRecord: (proc: string, r: Record<string, unknown>) => void) {
    this.cp = cp;
    this.onRecord = onRecord;
  }

  poll(): void {
    for (const p of this.cp.processes()) {
      if (p.name === 'store') continue;
      const from = this.#offsets.get(p.name) ?? 0;
      let size: number;
      try {
        size = statSync(p.logFile).size;
      } catch {
        continue;
      }
      if (size <= from) continue;
      const text = readFileSync(p.logFile).subarray(from, size).toString('utf8');
      const end = text.lastIndexOf('\n');
      if (end < 0) continue;
      this.#offsets.set(p.name, from + Buffer.byteLength(text.slice(0, end + 1)));
      for (const line of text.slice(0, end).split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          this.onRecord(p.name, JSON.parse(line) as Record<string, unknown>);
        } catch {
          /* not a record */
        }
      }
    }
  }
}

/** Runs the demo on a fresh lab and tears it down. Resolves with what happened; throws on a setup error. */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const prefix = opts.prefix ?? 'sl-';
  const print = opts.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const watchMs = (opts.watchSeconds ?? 3) * 1000;
  const total = opts.connections ?? 300;
  const t0 = Date.now();
  const ts = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
  const say = (l: string) => print(`${ts()}  ${l}`);
  const groups: Traffic[] = [];
  const frozen = new Set<string>();
  let ticker: NodeJS.Timeout | undefined;
  let follow: NodeJS.Timeout | undefined;
  let lab: Lab | undefined;
  let cp: ControlPlane | undefined;
  let session: StoreSession | undefined;
  let interrupted = false;
  const runRoot = opts.runRoot === undefined ? {} : { runRoot: opts.runRoot };
  const thawAll = () => {
    for (const a of frozen) {
      try {
        cp?.signal(a, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    frozen.clear();
  };
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    print('\ninterrupted: tearing the lab down');
    if (ticker) clearInterval(ticker);
    if (follow) clearInterval(follow);
    thawAll();
    session?.close();
    void Promise.all(groups.map((g) => g.kill()))
      .then(() => labDown(prefix, runRoot))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    say(`lab up (prefix ${prefix}): 2 gateways behind an ECMP router, 3 hosts x 2 backends, 2 clients`);
    const labProgress = opts.progress ? terminalProgress('demo: lab up', 5) : undefined;
    try {
      lab = await labUp({ prefix, ...runRoot }, { replace: true, progress: labProgress });
    } finally {
      labProgress?.end();
    }
    const theLab = lab;
    say('control plane up: a store (ovsdb-server), 2 planners (one active, one standby), one agent per node');
    const cpProgress = opts.progress ? terminalProgress('demo: control plane', 4) : undefined;
    const theCp = await startControlPlane(lab, {
      config: lab.sluiceConfig({ drainWindowSeconds: 3600 }),
      log: (m) => {
        cpProgress?.clear();
        say(`  ${m}`);
      },
      progress: cpProgress,
    }).finally(() => cpProgress?.end());
    cp = theCp;
    const DB = '$DB';
    say(`  the store: DB=${theCp.db}; every change below is what \`sluice ... --db $DB\` writes`);

    // ---- the store, read like `sluice status` does ----------------------------------------------------------
    const s = await StoreSession.open(theCp.db, {
      ...Object.fromEntries(DESIRED_TABLES.map((t) => [t, {}])),
      Plan: { columns: ['generation', 'desired_cfg'] },
      Node_Status: {},
    });
    session = s;
    const r = () => s.replica;
    const generation = () => (r().rows('Global')[0]?.generation as number | undefined) ?? 0;
    const released = () => gatewayGeneration(r());
    const status = (node: string) => r().find('Node_Status', (x) => x.node === node);
    const applied = (node: string) => (status(node)?.applied_generation as number | undefined) ?? 0;
    const nodeError = (node: string) => status(node)?.error as string | undefined;
    const plannedCfg = () =>
      (r().find('Plan', (p) => p.generation === generation())?.desired_cfg as number | undefined) ?? 0;
    const published: number[] = [];
    const notePublished = () => {
      const g = generation();
      if (g > (published.at(-1) ?? 0)) published.push(g);
    };
    notePublished();
    s.monitor.on('update', notePublished);
    const skew = () => theLab.gateways.map((g) => `${g.name} on g${applied(g.name)}`).join(', ');

    // ---- the planners' and agents' logs ---------------------------------------------------------------------
    const decisions: Array<Record<string, unknown>> = [];
    const plannerPublished: number[] = [];
    let narrate = false; // start-up records are summarised by startControlPlane's lines above
    const follower = new LogFollower(theCp, (proc, rec) => {
      if (proc.startsWith('planner-') && ['publish', 'release', 'wait', 'idle'].includes(String(rec.event))) {
        decisions.push(rec);
        if (rec.event === 'publish') plannerPublished.push(rec.generation as number);
      }
      const line = describeRecord(proc, rec);
      if (line !== undefined && narrate) say(`  ${line}`);
    });
    follower.poll();
    narrate = true;
    follow = setInterval(() => follower.poll(), 250);

    const until = async (cond: () => boolean, timeoutMs: number, what: string) => {
      const deadline = Date.now() + timeoutMs;
      while (!cond()) {
        if (Date.now() > deadline)
          throw new SluiceError('SLUICE_E_LAB_COMMAND', `timed out waiting: ${what}`);
        await sleep(100);
      }
    };
    /**
     * Until the planner published a generation for desired_cfg >= `cfg`, every node applied it, it was released to
     * gateways, and the planner's latest decision is `idle`. Resolves with what it still waits for (connections).
     */
    const settled = async (cfg: number, o: { noWaits?: boolean; timeoutMs?: number } = {}) => {
      let waits: string[] = [];
      await until(
        () => {
          follower.poll();
          const g = generation();
          const last = decisions.at(-1);
          const publishedAt = decisions.find((d) => d.event === 'publish' && d.generation === g)?.time as
            | number
            | undefined;
          const done =
            plannedCfg() >= cfg &&
            released() === g &&
            theLab.nodes.every((n) => applied(n.name) === g) &&
            last?.event === 'idle' &&
            (publishedAt === undefined || (last.time as number) >= publishedAt);
          waits = done ? ((last?.waits as string[] | undefined) ?? []) : [];
          return done && (!o.noWaits || waits.length === 0);
        },
        o.timeoutMs ?? 90_000,
        `rollout of desired_cfg ${cfg} (g${generation()}, released g${released()}, ${skew()})`,
      );
      return waits;
    };
    /** One operator edit, as the CLI makes it (read, edit, validate, guarded write). */
    const edit = async (cli: string, fn: (doc: EditableDocument) => EditableDocument) => {
      say(`  $ sluice ${cli} --db ${DB}`);
      const e = await editDesiredState(s, fn);
      say(`    desired_cfg ${e.desiredCfg}`);
      return e.desiredCfg;
    };
    const ecmp = async (gw: string, action: 'withdraw' | 'announce') => {
      await new Promise<void>((resolve, reject) =>
        execFile('sh', ['-c', labEcmpCommand(theLab, gw, action)], (err) => (err ? reject(err) : resolve())),
      );
      const set = [...new Set(Object.values(await theLab.ecmpGateways()).flat())].sort();
      say(`  router ECMP set: ${set.join(', ') || '(none)'}`);
    };
    const freeze = (gw: string) => {
      theCp.signal(`agent-${gw}`, 'SIGSTOP');
      frozen.add(`agent-${gw}`);
    };
    const thaw = (gw: string) => {
      theCp.signal(`agent-${gw}`, 'SIGCONT');
      frozen.delete(`agent-${gw}`);
    };

    // ---- traffic ------------------------------------------------------------------------------------------
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
      const g0 = generation();
      const b0 = counters().broken;
      await fn();
      await sleep(watchMs);
      const sc = (await secondChancePackets(theLab)) - sc0;
      const gens = published.filter((n) => n > g0);
      const broken = counters().broken - b0;
      steps.push({ name, ms: Date.now() - s0, secondChance: sc, generations: gens, broken });
      say(
        `--- ${name}: ${broken} broken, ${sc} second-chance packets, generations ${gens.map((g) => `g${g}`).join(', ') || '-'}`,
      );
    };
    const ip = (name: string) => theLab.backend(name).ip;
    const port = theLab.config.backendPort;

    await step('backend added: host2-b2 joins web', async () => {
      const cfg = await edit(`backend add web ${ip('host2-b2')} --host host2 --port ${port}`, (d) =>
        edits.backendAdd('web', ip('host2-b2'), 'host2', port, 1)(d),
      );
      await settled(cfg);
    });
    await step('backend drained: host1-b1 in web gives up its slots, keeps its connections', async () => {
      const cfg = await edit(`backend drain web ${ip('host1-b1')}`, (d) =>
        edits.backendState('web', ip('host1-b1'), 'draining')(d),
      );
      await settled(cfg);
      say(`  opening 150 new web connections: none may go to host1-b1`);
      const after = await traffic(web, 150);
      say(`  new connections on host1-b1: ${after.counters().perBackend['host1-b1']?.opened ?? 0}`);
    });
    await step('drained backend removed once its connections closed', async () => {
      const cfg = await edit(`backend del web ${ip('host1-b1')}`, (d) =>
        edits.backendDel('web', ip('host1-b1'))(d),
      );
      const waits = await settled(cfg);
      if (waits.length > 0) {
        say('  the planner waits: host1-b1 still holds connections (their slots keep its second chance)');
        await sleep(2000);
        const alive = first.counters().alive;
        say(`  closing the ${alive} web connections opened before the drain (they hold host1-b1's)`);
        first.close(alive);
        await settled(cfg, { noWaits: true });
        say(`  rollout settled at g${generation()}: host1-b1 owns no slot`);
      }
    });
    await step('gateway gw1 leaves the ECMP set (and comes back)', async () => {
      say(
        '  maintenance: the router stops sending to gw1 (scripts/lab-ecmp.sh withdraw, what its agent runs to fence)',
      );
      await ecmp('gw1', 'withdraw');
      say(`  gw1's connections re-hash to gw2, which runs the same generation (${skew()})`);
      await sleep(watchMs);
      await ecmp('gw1', 'announce');
    });
    await step("gateway gw2's ovs-vswitchd killed, restarted, its agent restores every flow", async () => {
      say('  the router withdraws gw2 as its BFD session goes down with the switch (lab-ecmp.sh withdraw)');
      await ecmp('gw2', 'withdraw');
      const pid = await theLab.node('gw2').killVswitchd('SIGKILL');
      say(`  gw2: ovs-vswitchd (pid ${pid}) killed`);
      await until(() => nodeError('gw2') !== undefined, 20_000, 'gw2 reports its switch down');
      say(`  store: gw2 reports "${nodeError('gw2')}"`);
      await sleep(watchMs);
      const npid = await theLab.node('gw2').restartVswitchd();
      say(`  gw2: ovs-vswitchd restarted (pid ${npid}; the lab restores its TLV map and tunnel neighbours)`);
      await until(
        () => nodeError('gw2') === undefined && applied('gw2') === released(),
        60_000,
        'gw2 re-applied its generation',
      );
      say(`  store: gw2 applied g${applied('gw2')} again, no error; the router's BFD comes up: announce`);
      await ecmp('gw2', 'announce');
    });
    await step('rollout with the gateways on different generations (host2-b1 weight 1 -> 3)', async () => {
      const flips = async () => {
        for (const set of [['gw1'], ['gw2'], ['gw1', 'gw2']]) {
          await theLab.setEcmpGateways(set);
          say(
            `  router ECMP set: ${set.join(', ')} (an upstream re-hash: connections cross between generations)`,
          );
          await sleep(800);
        }
      };
      /** Freezes gw1's agent until gw2 applied a generation gw1 has not, then flips ECMP; about `maxMs` at most: below
       *  the 10 s lease, so neither gw1 fences itself on resume nor the planner fences it. */
      const window = async (maxMs: number) => {
        const from = applied('gw1');
        freeze('gw1');
        const tf = Date.now();
        say(
          `  gw1's agent frozen (SIGSTOP): gw1 forwards on g${from}, cannot apply or acknowledge (lease 10 s)`,
        );
        try {
          await until(() => applied('gw2') > from || Date.now() - tf > maxMs - 3500, maxMs, 'gw2 ahead');
          if (applied('gw2') > from) {
            say(`  store: ${skew()}; the planner waits for gw1 before it publishes more`);
            await flips();
          }
        } finally {
          thaw('gw1');
          say(`  gw1's agent continued (frozen ${((Date.now() - tf) / 1000).toFixed(1)} s)`);
        }
      };
      const g = generation();
      // The write and the freeze race the planner on purpose: the first window starts at once.
      const cfg = await edit('apply -f lb.yaml   # `sluice show` with host2-b1 weight 3 in web', (d) => {
        const b = d.loadBalancers
          .find((l) => l.name === 'web')
          ?.backends.find((x) => x.address === ip('host2-b1'));
        if (b === undefined) throw new SluiceError('SLUICE_E_STORE_NOT_FOUND', 'host2-b1 is not in web');
        b.weight = 3;
        return d;
      });
      await window(6500);
      await until(() => applied('gw1') > g, 30_000, 'gw1 acknowledged');
      // A second window if the rollout goes on (phase 2 after phase 1).
      if (decisions.at(-1)?.event !== 'idle' || generation() > applied('gw1')) await window(6500);
      await settled(cfg);
      say(`  rollout done: ${skew()}`);
    });

    if (ticker) clearInterval(ticker);
    say('stopping traffic');
    const final = aggregate(await Promise.all(groups.map((g) => g.stop())));
    // A planner logs a publication after its transaction returned, and the store's monitor update may come first
    // (or the other way round): give the two views up to 10 s to agree on the last generation.
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(100)) {
      follower.poll();
      if (plannerPublished.at(-1) === published.at(-1)) break;
    }
    say(`final: ${counterLine(final)}`);
    for (const st of steps)
      say(
        `  ${st.name}: ${st.broken} broken, ${st.secondChance} second-chance packets, generations ${st.generations.map((x) => `g${x}`).join(', ') || '-'}`,
      );
    return {
      steps,
      final,
      opened: final.opened,
      broken: final.broken,
      failed: final.failed,
      generations: [...published],
      plannerPublished: [...plannerPublished],
      ms: Date.now() - t0,
    };
  } catch (e) {
    // Interrupted: the signal handler tears the lab down and exits 130; what fails meanwhile is its doing.
    if (interrupted) await new Promise(() => {});
    throw e;
  } finally {
    if (ticker) clearInterval(ticker);
    if (follow) clearInterval(follow);
    thawAll();
    session?.close();
    await Promise.all(groups.map((g) => g.kill()));
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
        '(root). Exit 0 only if no connection broke.',
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
      const r = await runDemo({ prefix: o.prefix, connections: n, progress: true });
      process.stdout.write(
        r.broken === 0
          ? `OK: ${r.opened} connections opened, 0 broken; generations g1..g${r.generations.at(-1)} through the store; ${(r.ms / 1000).toFixed(0)} s\n`
          : `FAILED: ${r.broken} of ${r.opened} connections broke\n`,
      );
      process.exitCode = r.broken === 0 ? 0 : 1;
    });
}
