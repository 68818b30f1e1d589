// Convergence of the control plane on real Open vSwitch (root): `node --import tsx bench/convergence.ts`.
// Writes its section of docs/benchmarks.md (between the bench:convergence markers) and prints it.
//
// Time from a CLI change (`sluice backend add`, run in-process through the CLI's main(), so without Node's start-up)
// to every gateway acknowledging it, through the real path: a standalone ovsdb-server on sluice's schema, one
// `sluice planner` and one `sluice agent` per lab node (child processes, started from src/cli/bin.ts), the lab
// (prefix `slb-cv-`: 2 gateways, 2 hosts x 10 backends, 1 client; each node its own userspace ovs-vswitchd).
// Two sizes: 1 VIP x 20 backends and 1000 VIPs x 20 backends (the same 20 backend addresses behind every VIP; VIPs
// in 198.18.0.0/15). The VIP v0 starts with 19 backends; the change adds the 20th (host2-b10).
//
// What is timed (wall clock, this process's monitor of the store; the agents and the planner are on this machine):
// - cli: the `sluice backend add` command (connect, read, validate, guarded transaction);
// - first ack: until every gateway acknowledged (Node_Status.applied_generation) the first generation planned from
//   the new desired_cfg (phase 1: the new backend becomes second chance of the slots it will take);
// - converged: until every gateway acknowledged the last generation of the rollout (phase 2, then second chances
//   dropped once the hosts reported no connections for them) and the planner published nothing more for 3 s;
// - per generation and gateway, from the agents' `applied` log records: apply time (bundle + verification, ms minus
//   revalidateMs), revalidator/wait, and bundle size (lines per bridge); compile time is the gateway compiler
//   (compileNode) run in this process on the same config document and generation read from the store (the agent
//   does not log its compile time separately), median of 3.
// The lab and every child process are stopped in `finally` and on SIGINT/SIGTERM (children by their own PIDs).
// Options (environment): CONV_LARGE_VIPS (default 1000), CONV_NO_WRITE=1 (print only).

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main as cliMain } from '../src/cli/main.ts';
import { compileNode } from '../src/compile/index.ts';
import { type Lab, labDown, labUp } from '../src/lab/topology.ts';
import { parseConfig } from '../src/model/schema.ts';
import type { Config } from '../src/model/types.ts';
import { type Monitor, OvsdbClient } from '../src/ovsdb/client.ts';
import { type OvsdbServerProcess, SLUICE_DB, startStandalone } from '../src/ovsdb/server.ts';
import { desiredStateOps } from '../src/ovsdb/store.ts';
import { gatewayGeneration, PLANNER_TABLES, readPlan } from '../src/planner/view.ts';
import { finish, machine, machineLine, median, say, sleep, writeSection } from './perf/common.ts';

const PREFIX = 'slb-cv-';
const ROOT = new URL('..', import.meta.url).pathname;
const LARGE = Number(process.env.CONV_LARGE_VIPS ?? 1000);
const BACKENDS_PER_HOST = 10;
const ADDED = { host: 'host2', address: `10.0.2.${10 + BACKENDS_PER_HOST}` };

let lab: Lab | undefined;
let srv: OvsdbServerProcess | undefined;
let dir: string | undefined;
let client: OvsdbClient | undefined;
const children = new Map<string, ChildProcess>();
const logs = new Map<string, Record<string, unknown>[]>();

function spawnCli(name: string, args: readonly string[]): void {
  const out = createWriteStream(join(dir!, `${name}.log`), { flags: 'a' });
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/bin.ts'), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const recs: Record<string, unknown>[] = [];
  logs.set(name, recs);
  let buf = '';
  child.stderr?.on('data', (d: Buffer) => {
    out.write(d);
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const l of parts) {
      try {
        recs.push(JSON.parse(l) as Record<string, unknown>);
      } catch {}
    }
  });
  children.set(name, child);
}

async function stopChildren(): Promise<void> {
  await Promise.all(
    [...children.values()].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const t = setTimeout(() => c.kill('SIGKILL'), 5000);
          c.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}

/** Config document: the lab's nodes, `vips` VIPs behind the lab's 20 backends; v0 without ADDED. */
function desiredDoc(vips: number, withAdded: boolean) {
  const l = lab!;
  const backends = l.backends().map((b) => ({
    address: b.ip,
    port: l.config.backendPort,
    host: b.host,
    weight: 1,
    state: 'active',
  }));
  return {
    hashMode: 'dp_hash',
    slotBits: 8,
    drainWindowSeconds: 30,
    nodes: l.nodes.map((n) => ({ name: n.name, role: n.role, tunnelIp: n.tunnelIp })),
    loadBalancers: Array.from({ length: vips }, (_, i) => ({
      name: `v${i}`,
      vip: `198.18.${(i + 1) >> 8}.${(i + 1) & 255}`,
      protocol: 'tcp',
      ports: [80],
      backends: i === 0 && !withAdded ? backends.filter((b) => b.address !== ADDED.address) : backends,
    })),
  };
}

interface StoreState {
  gen: number;
  released: number;
  acks: Map<string, number>;
  planCfg: Map<number, number>;
}

function state(m: Monitor): StoreState {
  const r = m.replica;
  return {
    gen: (r.rows('Global')[0]?.generation as number | undefined) ?? 0,
    released: gatewayGeneration(r),
    acks: new Map(r.rows('Node_Status').map((row) => [row.node as string, row.applied_generation as number])),
    planCfg: new Map(r.rows('Plan').map((p) => [p.generation as number, p.desired_cfg as number])),
  };
}

/** Waits until every node applied the latest generation, it is released, and nothing new came for `quietMs`. */
async function converged(m: Monitor, timeoutMs: number, quietMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  for (;;) {
    const s = state(m);
    const all = lab!.nodes.every((n) => s.acks.get(n.name) === s.gen) && s.released === s.gen && s.gen > 0;
    if (s.gen !== last || !all) {
      last = s.gen;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return s.gen;
    if (Date.now() > deadline)
      throw new Error(`not converged: g${s.gen} released g${s.released} acks ${JSON.stringify([...s.acks])}`);
    await sleep(100);
  }
}

interface ApplyRecord {
  node: string;
  generation: number;
  ms: number;
  revalidateMs: number;
  bundleLines: Record<string, number>;
}

function applied(node: string, fromGen: number, toGen: number): ApplyRecord[] {
  return (logs.get(`agent-${node}`) ?? [])
    .filter(
      (r) =>
        r.event === 'applied' && (r.generation as number) >= fromGen && (r.generation as number) <= toGen,
    )
    .map((r) => ({
      node,
      generation: r.generation as number,
      ms: r.ms as number,
      revalidateMs: r.revalidateMs as number,
      bundleLines: r.bundleLines as Record<string, number>,
    }));
}

interface ScenarioResult {
  vips: number;
  backendsPerVip: number;
  setupMs: number;
  cliMs: number;
  firstGen: number;
  lastGen: number;
  firstAckMs: number;
  convergedMs: number;
  gatewayAckMs: Record<string, number>;
  applies: ApplyRecord[];
  compileMs: number;
  gatewayFlows: number;
  planBytes: number;
}

async function scenario(m: Monitor, vips: number): Promise<ScenarioResult> {
  say(`[${vips} VIPs] writing the initial desired state`);
  const t0 = performance.now();
  const initial = parseConfig(desiredDoc(vips, false));
  for (let i = 0; ; i++) {
    const ops = desiredStateOps(m.schema!, m.replica, initial);
    if (ops.length === 0) break;
    try {
      await client!.transact(SLUICE_DB, ...ops);
      break;
    } catch (e) {
      if (i > 5) throw e;
      await sleep(200);
    }
  }
  await converged(m, 25 * 60_000);
  const setupMs = performance.now() - t0;
  say(`[${vips} VIPs] initial state converged in ${(setupMs / 1000).toFixed(1)} s`);
  const before = state(m);
  const cfgBefore = before.planCfg.get(before.gen) ?? 0;

  // Watch every update: when did each gateway first acknowledge a generation planned from the new desired_cfg?
  const gateways = lab!.gateways.map((g) => g.name);
  const ackAt = new Map<string, Map<number, number>>(gateways.map((g) => [g, new Map()]));
  const onUpdate = () => {
    const s = state(m);
    const now = performance.now();
    for (const g of gateways) {
      const a = s.acks.get(g) ?? 0;
      const seen = ackAt.get(g)!;
      if (!seen.has(a)) seen.set(a, now);
    }
  };
  m.on('update', onUpdate);

  const argv = [
    'backend',
    'add',
    'v0',
    ADDED.address,
    '--host',
    ADDED.host,
    '--port',
    '80',
    '--db',
    `unix:${srv!.unixPath}`,
  ];
  say(`[${vips} VIPs] sluice ${argv.join(' ')}`);
  const tCli = performance.now();
  const code = await cliMain(argv);
  const cliMs = performance.now() - tCli;
  if (code !== 0) throw new Error(`sluice backend add exited ${code}`);
  const lastGen = await converged(m, 10 * 60_000);
  m.off('update', onUpdate);

  const after = state(m);
  const newGens = [...after.planCfg].filter(([g, c]) => g > before.gen && c > cfgBefore).map(([g]) => g);
  const firstGen = Math.min(...newGens);
  const firstAt = (g: number) =>
    Math.max(
      ...gateways.map((gw) => {
        const hits = [...ackAt.get(gw)!].filter(([a]) => a >= g).map(([, t]) => t);
        return Math.min(...hits);
      }),
    );
  const gatewayAckMs = Object.fromEntries(
    gateways.map((gw) => [
      gw,
      Math.min(...[...ackAt.get(gw)!].filter(([a]) => a >= lastGen).map(([, t]) => t)) - tCli,
    ]),
  );

  // Compile time of a gateway for the last generation, on the config document the agents compiled from.
  const plan = readPlan(m.replica, lastGen)!;
  const config: Config = parseConfig(JSON.parse(plan.config!));
  const facts = lab!.compilerFacts('gw1');
  const times: number[] = [];
  let flows = 0;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const fs = compileNode(config, plan.generation, facts);
    times.push(performance.now() - t);
    flows = [...fs.bridges.values()].reduce((a, b) => a + b.flows.length, 0);
  }
  await sleep(500); // let the last `applied` log lines arrive
  return {
    vips,
    backendsPerVip: 20,
    setupMs,
    cliMs,
    firstGen,
    lastGen,
    firstAckMs: firstAt(firstGen) - tCli,
    convergedMs: firstAt(lastGen) - tCli,
    gatewayAckMs,
    applies: lab!.nodes.flatMap((n) => applied(n.name, firstGen, lastGen)),
    compileMs: median(times),
    gatewayFlows: flows,
    planBytes: plan.config!.length,
  };
}

const s1 = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

function report(results: readonly ScenarioResult[], m: ReturnType<typeof machine>): string {
  const lines: string[] = [];
  lines.push('## Convergence: from a CLI change to every gateway acknowledging it');
  lines.push('');
  lines.push(machineLine(m, 'node --import tsx bench/convergence.ts'));
  lines.push('');
  lines.push(
    'Real path: `sluice backend add` (in-process CLI main(), no Node start-up) → standalone ovsdb-server → ' +
      "`sluice planner` → one `sluice agent` per node (child processes) → each node's own userspace ovs-vswitchd in " +
      'the lab (prefix `slb-cv-`: 2 gateways, 2 hosts × 10 backends). Every VIP has the same 20 backends; the change ' +
      `adds ${ADDED.address} (${ADDED.host}) to v0, which had 19. slotBits 8 (256 slots per VIP), dp_hash. A backend ` +
      'add rolls out in phases (phase 1: the new backend is second chance of the slots it will take; phase 2: it ' +
      'takes them; then the second chances are dropped once the hosts reported no connections for them), each ' +
      'generation published to hosts first, released to gateways after every host acknowledged it, the next one ' +
      'only after every gateway acknowledged. Times are wall clock on this machine, from the start of the CLI command.',
  );
  lines.push('');
  lines.push(`| | ${results.map((r) => `${r.vips} VIP${r.vips > 1 ? 's' : ''} × 20`).join(' | ')} |`);
  lines.push(`| --- | ${results.map(() => '---:').join(' | ')} |`);
  const row = (name: string, f: (r: ScenarioResult) => string) =>
    lines.push(`| ${name} | ${results.map(f).join(' | ')} |`);
  row('`sluice backend add` (connect, validate, guarded write)', (r) => s1(r.cliMs));
  row(
    'generations the change rolled out in',
    (r) => `${r.lastGen - r.firstGen + 1} (g${r.firstGen}..g${r.lastGen})`,
  );
  row('every gateway acknowledged the first (phase 1)', (r) => s1(r.firstAckMs));
  row('every gateway acknowledged the last (converged)', (r) => s1(r.convergedMs));
  for (const gw of Object.keys(results[0]?.gatewayAckMs ?? {}))
    row(`… ${gw} acknowledged the last`, (r) => s1(r.gatewayAckMs[gw] ?? Number.NaN));
  row('gateway compile (compileNode, median of 3, this process)', (r) => s1(r.compileMs));
  row('gateway flows (all bridges)', (r) => String(r.gatewayFlows));
  const gwApplies = (r: ScenarioResult) => r.applies.filter((a) => a.node.startsWith('gw'));
  const hostApplies = (r: ScenarioResult) => r.applies.filter((a) => a.node.startsWith('host'));
  const lines2 = (a: ApplyRecord) => Object.values(a.bundleLines).reduce((x, y) => x + y, 0);
  row('gateway bundle lines per generation (median; max)', (r) => {
    const xs = gwApplies(r).map(lines2);
    return `${median(xs)}; ${Math.max(...xs)}`;
  });
  row('host bundle lines per generation (median; max)', (r) => {
    const xs = hostApplies(r).map(lines2);
    return `${median(xs)}; ${Math.max(...xs)}`;
  });
  row('gateway apply per generation, agent (median; max)', (r) => {
    const xs = gwApplies(r).map((a) => a.ms - a.revalidateMs);
    return `${s1(median(xs))}; ${s1(Math.max(...xs))}`;
  });
  row('… of which not compile (bundle, verify), approx.', (r) => {
    const xs = gwApplies(r).map((a) => a.ms - a.revalidateMs);
    return s1(Math.max(0, median(xs) - r.compileMs));
  });
  row('gateway revalidator/wait per generation (median)', (r) =>
    s1(median(gwApplies(r).map((a) => a.revalidateMs))),
  );
  row('host apply + revalidate per generation (median)', (r) => s1(median(hostApplies(r).map((a) => a.ms))));
  row('config document per plan (bytes, Plan external_ids:config)', (r) => String(r.planBytes));
  row('initial state: write + converge (for reference)', (r) => s1(r.setupMs));
  lines.push('');
  lines.push(
    "The agent's apply time (its `applied` log record: `ms` − `revalidateMs`) includes compiling the node, reading " +
      'the installed flows, the bundle and its verification; the compile row is the same compiler on the same input ' +
      'in this process, so "not compile" is an estimate. Each generation costs one host round and one gateway round ' +
      "(hosts first), plus the planner's wait for two fresh connection reports before it drops second chances.",
  );
  if (Math.max(...m.loadStart) > m.cores) {
    lines.push('');
    lines.push(
      `Caution: the load average (${m.loadStart[0]}) exceeded the core count: other work shared the machine, so ` +
        'every time above includes waiting for a CPU; bundle sizes and generation counts do not depend on it.',
    );
  }
  return lines.join('\n');
}

// ---- main: everything stopped in finally and on SIGINT/SIGTERM ----------------------------------------------

let down: Promise<void> | undefined;
function teardown(): Promise<void> {
  down ??= (async () => {
    client?.close();
    await stopChildren().catch(() => {});
    await srv?.stop().catch(() => {});
    await labDown(PREFIX).then(
      () => say('[lab] down'),
      (e: unknown) => say(`[lab] down failed: ${(e as Error).message}`),
    );
    if (dir) rmSync(dir, { recursive: true, force: true });
  })();
  return down;
}

async function main(): Promise<void> {
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      void teardown().finally(() => process.exit(130));
    });
  const m = machine();
  try {
    say('[lab] up');
    lab = await labUp(
      { prefix: PREFIX, gateways: 2, hosts: 2, backendsPerHost: BACKENDS_PER_HOST, clients: 1, udp: false },
      { replace: true, probe: false },
    );
    dir = mkdtempSync(join(tmpdir(), 'sluice-conv-'));
    for (const n of lab.nodes) {
      // Health probes run inside each backend's namespace (as in test/e2e/controlplane.test.ts).
      const probeNetns = Object.fromEntries(n.backends.map((b) => [b.ip, b.netns]));
      writeFileSync(
        join(dir, `${n.name}.json`),
        JSON.stringify({ ...lab.compilerFacts(n.name), probeNetns }),
      );
    }
    srv = await startStandalone(dir);
    const db = `unix:${srv.unixPath}`;
    client = new OvsdbClient({ remotes: [db] });
    await client.connect();
    const mon = await client.monitor(SLUICE_DB, Object.fromEntries(PLANNER_TABLES.map((t) => [t, {}])));
    spawnCli('planner', ['planner', '--db', db, '--lease', '30', '--margin', '5']);
    for (const n of lab.nodes)
      spawnCli(`agent-${n.name}`, [
        'agent',
        '--role',
        n.role,
        '--node',
        n.name,
        '--db',
        db,
        '--facts',
        join(dir, `${n.name}.json`),
        '--ovs-rundir',
        n.ovsDir,
        '--lease',
        '30',
        '--heartbeat',
        '500',
        // One TCP probe per (VIP, backend): 10,000 per host at 1000 VIPs; probe every 30 s to keep the load sane.
        '--health-interval',
        '30000',
      ]);
    const results: ScenarioResult[] = [];
    results.push(await scenario(mon, 1));
    if (LARGE > 1) results.push(await scenario(mon, LARGE));
    const section = report(results, finish(m));
    process.stdout.write(`${section}\n`);
    if (process.env.CONV_NO_WRITE !== '1') writeSection('convergence', section);
    writeFileSync(join(tmpdir(), 'sluice-convergence.json'), JSON.stringify(results, null, 2));
  } finally {
    await teardown();
  }
}

await main();
