// An agent's memory through the convergence bench's set-up, without a lab (`node --import tsx bench/agent-mem.ts`).
//
// The real daemons' code on a real store: a standalone ovsdb-server on sluice's schemas (a temp unix socket, no lab),
// the `sluice planner` (child process, src/cli/bin.ts), and one AgentDaemon per node of bench/store-fixture.ts's
// desired state (gw1, host1, host2; each in its own child process of this file) whose Open vSwitch is FAKE: the first
// apply (1 VIP) goes to an in-memory switch (test/scenarios/fake-switch.ts), every later bundle is read and dropped
// (the agents apply incrementally after their first apply, so they never read the switch again), conntrack is empty
// and every health probe passes at once. So what is measured is the agent's own memory: its replica, plans, compiled
// parts, reports, health targets and the garbage they make, not ovs-ofctl's or the switch's.
//
// Phases, as bench/convergence.ts at CONV_SIZES=1,10000: 1 VIP (the baseline, same run, same processes); then the
// desired state grown in ten steps of 1,000 VIPs (each converged before the next, as the convergence bench does);
// then one backend add on v0 (its 20th backend) and its rollout. For each phase and agent: peak RSS (VmHWM, reset
// between phases through /proc/self/clear_refs), the highest V8 heap used and large-object space sampled every 20 ms,
// and at the end heap used before and after a full GC. AGENT_MEM_PROFILE=1: a sampling heap profile of every
// allocation (collected ones included) during the set-up, its top allocating functions by bytes printed per agent.
// Env: AGENT_MEM_VIPS (default 10000), AGENT_MEM_NODES (default gw1,host1,host2), AGENT_MEM_DIR (keep files there).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';
import { pino } from 'pino';
import { AgentDaemon } from '../src/agent/daemon.ts';
import { cookie } from '../src/compile/registry.ts';
import { hex } from '../src/flowset/text.ts';
import { parseConfig } from '../src/model/schema.ts';
import type { Runner, RunOpts, RunResult } from '../src/openflow/runner.ts';
import { OvsdbClient } from '../src/ovsdb/client.ts';
import { type OvsdbServerProcess, startStandalone } from '../src/ovsdb/server.ts';
import {
  ALL_TABLES_MONITOR,
  DB_NAME,
  desiredStateOps,
  gatewayGeneration,
  nodeAcks,
  PlanTable,
  publishedGeneration,
  rows,
  splitMonitor,
  storedDesiredCfg,
} from '../src/store/db/index.ts';
import { fakeFacts } from '../test/scenarios/fake-facts.ts';
import { FakeSwitch } from '../test/scenarios/fake-switch.ts';
import { say, sleep } from './perf/common.ts';
import { syntheticDesiredDoc } from './store-fixture.ts';

const mib = (x: unknown) => Math.round((x as number) / 2 ** 20);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VIPS = Number(process.env.AGENT_MEM_VIPS ?? 10_000);
/** Heap profile sampling interval, bytes. */
const INTERVAL = 64 * 1024;
const NODES = (process.env.AGENT_MEM_NODES ?? 'gw1,host1,host2').split(',');

/** One phase's memory of one agent, bytes. */
interface PhaseMem {
  readonly hwm: number;
  readonly heapMax: number;
  readonly largeMax: number;
  readonly rssEnd: number;
  readonly heapEnd: number;
}

// ---------------------------------------------------------------------------------------------------------------
// The agent child.

function vm(field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function agentChild(node: string, db: string): Promise<void> {
  const config = parseConfig(syntheticDesiredDoc(2));
  const facts = fakeFacts(config, node);
  const role = config.nodes.find((n) => n.name === node)!.role;
  const sw = new FakeSwitch();
  const ok = (stdout = ''): RunResult => ({ code: 0, stdout, stderr: '' });
  let daemon: AgentDaemon | undefined;
  // Flows per bridge after the first apply, counted from the bundles' add and delete lines: the agent's flow
  // counters read the bridges every few seconds (a host's heartbeat), so their dumps are printed at that size.
  const flows = new Map<string, number>();
  const count = (chunk: Uint8Array, what: string) => {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let n = 0;
    for (let i = b.indexOf(what); i >= 0; i = b.indexOf(what, i + what.length)) n++;
    return n;
  };
  const line = ` cookie=${hex(cookie('SECOND_CHANCE', 1))}, duration=12.345s, table=40, n_packets=0, n_bytes=0, idle_age=12, priority=100,tcp,reg0=0x1,nw_dst=198.18.0.1,tp_dst=80 actions=ct(commit,zone=7,nat(dst=10.0.1.10:80)),output:11`;
  const dumpOf = (bridge: string) => flows.get(bridge) ?? 0;
  const runner: Runner = {
    async ofctl(bridge: string, args: readonly string[], opts?: RunOpts) {
      const after = (daemon?.applied ?? 0) > 0;
      if (!after || !(args.includes('bundle') || args.includes('dump-flows')))
        return sw.ofctl(bridge, args, opts);
      if (!flows.has(bridge)) flows.set(bridge, sw.flows.get(bridge)?.size ?? 0);
      if (args.includes('bundle')) {
        // Read and dropped (incremental applies never read the switch).
        const input = opts?.input;
        if (input !== undefined && typeof input !== 'string')
          for (const c of input)
            if (typeof c !== 'string')
              flows.set(bridge, dumpOf(bridge) + count(c, '\nflow add ') - count(c, '\nflow delete'));
        return ok();
      }
      return ok(`OFPST_FLOW reply (OF1.5):\n${`${line}\n`.repeat(dumpOf(bridge))}`);
    },
    async ofctlLines(bridge, args, onLine, opts) {
      if ((daemon?.applied ?? 0) === 0 || !args.includes('dump-flows')) {
        const r = await runner.ofctl(bridge, args, opts);
        for (const l of r.stdout.split('\n')) onLine(l);
        return r;
      }
      if (!flows.has(bridge)) flows.set(bridge, sw.flows.get(bridge)?.size ?? 0);
      onLine('OFPST_FLOW reply (OF1.5):');
      for (let i = dumpOf(bridge); i > 0; i--) onLine(line);
      return { code: 0, stderr: '' };
    },
    async appctl() {
      return ok();
    },
  };
  daemon = new AgentDaemon({
    role,
    node,
    remotes: [db],
    runner,
    facts,
    log: pino({ level: 'warn' }, pino.destination(2)),
    leaseMs: 30_000,
    heartbeatMs: 500,
    health: { intervalMs: 3_600_000 },
    probe: async () => true,
  });
  // Sampled maxima since the last mark.
  let heapMax = 0;
  let largeMax = 0;
  const sample = () => {
    for (const s of v8.getHeapSpaceStatistics())
      if (s.space_name === 'large_object_space') largeMax = Math.max(largeMax, s.space_used_size);
    heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
  };
  setInterval(sample, 20).unref();
  const session = new Session();
  session.connect();
  const profiling = process.env.AGENT_MEM_PROFILE === '1';
  process.on('message', async (msg: { cmd: string }) => {
    if (msg.cmd === 'peek') {
      sample();
      process.send!({ cmd: 'peek', hwm: vm('VmHWM'), heapMax, largeMax });
    } else if (msg.cmd === 'mark') {
      sample();
      const out: PhaseMem = {
        hwm: vm('VmHWM'),
        heapMax,
        largeMax,
        rssEnd: vm('VmRSS'),
        heapEnd: process.memoryUsage().heapUsed,
      };
      writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM
      heapMax = 0;
      largeMax = 0;
      process.send!({ cmd: 'mark', mem: out, applied: daemon.applied, flows: Object.fromEntries(flows) });
    } else if (msg.cmd === 'profile-start' && profiling) {
      await session.post('HeapProfiler.startSampling', {
        samplingInterval: INTERVAL,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      } as never);
      process.send!({ cmd: 'profile-start' });
    } else if (msg.cmd === 'profile-start') process.send!({ cmd: 'profile-start' });
    else if (msg.cmd === 'end') {
      const before = process.memoryUsage().heapUsed;
      (globalThis as { gc?: () => void }).gc?.();
      const after = process.memoryUsage().heapUsed;
      let top: [string, number][] = [];
      let large: [string, number][] = [];
      if (profiling) {
        const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as {
          profile: { head: ProfileNode; samples: { size: number; nodeId: number }[] };
        };
        // Every node's name: its innermost frame in sluice's own code, with that frame's caller.
        const names = new Map<number, string>();
        const walk = (n: ProfileNode, stack: string[]) => {
          const f = n.callFrame;
          const here = `${f.functionName || '(anon)'} ${f.url.replace(/^.*\/(src|bench|test|node_modules)\//, '$1/')}`;
          const s = [...stack, here];
          const own = s.filter((x) => /^\S+ (src|bench)\//.test(x));
          names.set(n.id, own.length === 0 ? here : own.slice(-2).join(' < '));
          for (const c of n.children) walk(c, s);
        };
        walk(profile.head, []);
        const all = new Map<string, number>();
        const big = new Map<string, number>();
        for (const x of profile.samples) {
          const k = names.get(x.nodeId) ?? '?';
          // What the sampler saw of this allocation: its size, or the sampling interval for a smaller one.
          all.set(k, (all.get(k) ?? 0) + Math.max(x.size, INTERVAL));
          // Large-object space: objects above 128 KiB, freed only by a full collection.
          if (x.size > 128 * 1024) big.set(k, (big.get(k) ?? 0) + x.size);
        }
        top = [...all].sort((a, b) => b[1] - a[1]).slice(0, 15);
        large = [...big].sort((a, b) => b[1] - a[1]).slice(0, 15);
      }
      process.send!({ cmd: 'end', before, after, top, large });
    }
  });
  // The parent gone (stopped, or killed at a lock's time limit): stop too.
  process.on('disconnect', () => process.exit(0));
  await daemon.start();
  process.send!({ cmd: 'up' });
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

// ---------------------------------------------------------------------------------------------------------------
// The parent.

class Agent {
  readonly #c: ChildProcess;
  readonly #waiting = new Map<string, (m: Record<string, unknown>) => void>();

  readonly node: string;

  constructor(node: string, db: string) {
    this.node = node;
    this.#c = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', fileURLToPath(import.meta.url)], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, AGENT_MEM_CHILD: node, AGENT_MEM_DB: db },
    });
    this.#c.on('message', (m: Record<string, unknown>) => {
      const f = this.#waiting.get(m.cmd as string);
      this.#waiting.delete(m.cmd as string);
      f?.(m);
    });
  }

  ask(cmd: string, answer = cmd): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.#waiting.set(answer, resolve);
      if (cmd !== 'up') this.#c.send({ cmd });
    });
  }

  kill(): void {
    this.#c.kill('SIGTERM');
  }
}

async function parent(): Promise<void> {
  const dir = process.env.AGENT_MEM_DIR ?? mkdtempSync(join(tmpdir(), 'sluice-agent-mem-'));
  let srv: OvsdbServerProcess | undefined;
  let planner: ChildProcess | undefined;
  const agents: Agent[] = [];
  let c: OvsdbClient | undefined;
  const stop = () => {
    for (const a of agents) a.kill();
    planner?.kill('SIGTERM');
    void srv?.stop();
  };
  process.once('SIGTERM', () => {
    stop();
    setTimeout(() => process.exit(143), 2000);
  });
  try {
    srv = await startStandalone(dir);
    const db = `unix:${srv.unixPath}`;
    const store = new OvsdbClient({ remotes: [db] });
    c = store;
    await store.connect();
    const m = await store.monitorDatabases(splitMonitor(ALL_TABLES_MONITOR));
    planner = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(ROOT, 'src/cli/bin.ts'),
        'planner',
        '--db',
        db,
        '--lease',
        '30',
        '--margin',
        '5',
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'ignore'] },
    );
    for (const n of NODES) agents.push(new Agent(n, db));
    await Promise.all(agents.map((a) => a.ask('up')));
    const doc = syntheticDesiredDoc(VIPS);
    const write = async (k: number, d = doc) => {
      const config = parseConfig({ ...d, loadBalancers: d.loadBalancers.slice(0, k) });
      for (let i = 0; ; i++) {
        const ops = desiredStateOps(m.replica, config);
        if (ops.length === 0) return;
        try {
          await store.transact(DB_NAME, ...ops);
          return;
        } catch (e) {
          if (i > 5) throw e;
          await sleep(200);
        }
      }
    };
    const converged = async (): Promise<number> => {
      let since = Date.now();
      let last = -1;
      const deadline = Date.now() + 20 * 60_000;
      for (;;) {
        const r = m.replica;
        const gen = publishedGeneration(r);
        const planCfg = rows(r, PlanTable).find((p) => p.generation === gen)?.desired_cfg ?? 0;
        const acks = new Map([...nodeAcks(r)].map(([node, ack]) => [node, ack.appliedGeneration]));
        const all =
          gen > 0 &&
          planCfg >= storedDesiredCfg(r) &&
          NODES.every((n) => acks.get(n) === gen) &&
          gatewayGeneration(r) === gen;
        if (gen !== last || !all) {
          last = gen;
          since = Date.now();
        } else if (Date.now() - since >= 3000) return gen;
        if (Date.now() > deadline)
          throw new Error(`not converged: g${gen} acks ${JSON.stringify([...acks])}`);
        await sleep(100);
      }
    };
    const phases: { name: string; mem: Map<string, PhaseMem>; ms: number }[] = [];
    const mark = async (name: string, t0: number) => {
      const mem = new Map<string, PhaseMem>();
      for (const a of agents) {
        const r = await a.ask('mark');
        mem.set(a.node, r.mem as PhaseMem);
        say(`[agent-mem] ${name} ${a.node}: flows on the fake switch ${JSON.stringify(r.flows)}`);
      }
      phases.push({ name, mem, ms: performance.now() - t0 });
      const mb = (x: number) => Math.round(x / 2 ** 20);
      for (const [n, x] of mem)
        say(
          `[agent-mem] ${name} ${n}: peak RSS ${mb(x.hwm)} MiB, heap max ${mb(x.heapMax)} MiB, large-object max ${mb(x.largeMax)} MiB, end RSS ${mb(x.rssEnd)} heap ${mb(x.heapEnd)}`,
        );
    };
    let t0 = performance.now();
    await write(1);
    await converged();
    await mark('1 VIP', t0);
    await Promise.all(agents.map((a) => a.ask('profile-start')));
    t0 = performance.now();
    for (let k = Math.min(1000, VIPS); ; k = Math.min(k + 1000, VIPS)) {
      await write(k);
      const g = await converged();
      // The peaks so far (a run stopped at a lock's time limit keeps them in its output).
      const peeks: string[] = [];
      for (const a of agents) {
        const p = await a.ask('peek');
        peeks.push(`${a.node} ${mib(p.hwm)}/${mib(p.heapMax)}/${mib(p.largeMax)}`);
      }
      say(
        `[agent-mem] ${k} VIPs converged at g${g}, ${Math.round((performance.now() - t0) / 1000)} s; peak RSS/heap/large MiB: ${peeks.join(', ')}`,
      );
      if (k === VIPS) break;
    }
    await mark(`set-up to ${VIPS} VIPs`, t0);
    t0 = performance.now();
    const add = structuredClone(doc);
    add.loadBalancers[0]!.backends = syntheticDesiredDoc(2).loadBalancers[1]!.backends;
    await write(VIPS, add);
    await converged();
    await mark('backend add', t0);
    for (const a of agents) {
      const e = await a.ask('end');
      const mb = (x: unknown) => Math.round((x as number) / 2 ** 20);
      say(`[agent-mem] ${a.node}: heap used ${mb(e.before)} -> ${mb(e.after)} MiB after a full GC`);
      say('  allocated (sampled, collected objects included):');
      for (const [k, v] of e.top as [string, number][]) say(`    ${mb(v)} MiB  ${k}`);
      say('  of which large objects (> 128 KiB):');
      for (const [k, v] of e.large as [string, number][]) say(`    ${mb(v)} MiB  ${k}`);
    }
    writeFileSync(
      join(dir, 'agent-mem.json'),
      JSON.stringify(phases.map((p) => ({ ...p, mem: [...p.mem] }))),
    );
    say(`[agent-mem] results in ${join(dir, 'agent-mem.json')}`);
  } finally {
    for (const a of agents) a.kill();
    planner?.kill('SIGTERM');
    c?.close();
    await srv?.stop();
    if (process.env.AGENT_MEM_DIR === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

const child = process.env.AGENT_MEM_CHILD;
if (child !== undefined) await agentChild(child, process.env.AGENT_MEM_DB!);
else {
  await parent();
  process.exit(0);
}
