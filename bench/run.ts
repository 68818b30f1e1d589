// Runs the benchmarks in bench/ and lets each write its section of docs/benchmarks.md.
//
//   npm run bench                          # every benchmark (the lab ones need root and OVS)
//   npm run bench -- --only perf-cp        # a subset, comma-separated: slots, cli-edit, plan-store, planner-step, reconnect, reconnect-window, health-probes, agent-start, generation-compile, agent-start-ovs, bundle-split, vswitchd-scale, sim-engine, dpflows, perf-cp, perf-lab, perf-xdp, chains, udp-walk, failover
//   npm run bench -- --skip dpflows,perf-lab
//   npm run bench -- --list
//   npm run bench -- --only perf-lab --parts state,fwd      # perf-lab parts: state, fwd, setup, sc
//
// Each benchmark runs as its own child process (`node --import tsx <file>`): a crash or a lab teardown in one
// cannot take the others down, perf-cp gets the large heap it needs, and each sees a fresh JIT and heap.
// Environment variables of the individual benchmarks pass through (see each file's header).

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

interface Bench {
  readonly name: string;
  readonly file: string;
  readonly nodeArgs: readonly string[];
  readonly root: boolean;
  readonly what: string;
}

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

export const BENCHES: readonly Bench[] = [
  {
    name: 'slots',
    file: here('./slots.bench.ts'),
    nodeArgs: [],
    root: false,
    what: 'slot tables vs Maglev (pure)',
  },
  {
    name: 'perf-cp',
    file: here('./perf/cp.ts'),
    nodeArgs: ['--max-old-space-size=8000'],
    root: false,
    what: 'control plane at scale: compile, memory, bundle of one change (pure)',
  },
  {
    name: 'cli-edit',
    file: here('./cli-edit.ts'),
    nodeArgs: [],
    root: false,
    what: '`sluice backend add`/`del` against a store of 1 and 10,000 VIPs x 20 (ovsdb-server, no lab)',
  },
  {
    name: 'plan-store',
    file: here('./plan-store.ts'),
    nodeArgs: ['--max-old-space-size=6000'],
    root: false,
    what: 'planner CPU and store growth per generation at 1, 1,000, 10,000 VIPs, before/after (ovsdb-server, no lab)',
  },
  {
    name: 'planner-step',
    file: here('./planner-step.ts'),
    nodeArgs: ['--max-old-space-size=6000'],
    root: false,
    what: 'planner CPU per step on a heartbeat, a connection count, a health change, a slot report, a backend add/del, a no-op at 1, 1,000 and 10,000 VIPs, before/after (ovsdb-server, no lab)',
  },
  {
    name: 'reconnect',
    file: here('./reconnect.ts'),
    nodeArgs: ['--max-old-space-size=6000'],
    root: false,
    what: 'store reconnect at 1,000 and 10,000 VIPs: monitor_cond_since resume vs a fresh full monitor (ovsdb-server, no lab)',
  },
  {
    name: 'reconnect-window',
    file: here('./reconnect-window.ts'),
    nodeArgs: ['--max-old-space-size=6000'],
    root: false,
    what: 'how long a daemon can be away and still resume, 10,000 VIPs, 4 and 100 simulated agents, per layout (ovsdb-server, no lab)',
  },
  {
    name: 'health-probes',
    file: here('./health-probes.ts'),
    nodeArgs: [],
    root: false,
    what: "a host agent's health probes of 20,000 distinct backends, bounded vs unbounded (loopback, no lab)",
  },
  {
    name: 'agent-start',
    file: here('./agent-start.ts'),
    nodeArgs: [],
    root: false,
    what: 'gateway agent start at 10,000 VIPs: compile CPU, retained heap, streamed first bundle, peak RSS (pure)',
  },
  {
    name: 'generation-compile',
    file: here('./generation-compile.ts'),
    nodeArgs: [],
    root: false,
    what: "an agent's cost per generation (read, config, compile, diff) at 1, 1,000 and 10,000 VIPs (pure)",
  },
  {
    name: 'bundle-split',
    file: here('./bundle-split.ts'),
    nodeArgs: ['--max-old-space-size=8000'],
    root: false,
    what: 'largest incremental bundle when every load balancer changes (slotBits, hash mode, a host address) at 1,000 and 10,000 VIPs, before/after, and on a private ovs-vswitchd',
  },
  {
    name: 'vswitchd-scale',
    file: here('./vswitchd-scale.ts'),
    nodeArgs: [],
    root: false,
    what: 'ovs-vswitchd at 10,000 VIPs x 20: rules, RSS, install, revalidation per slot layout (private ovs-vswitchd)',
  },
  {
    name: 'agent-start-ovs',
    file: here('./agent-start-ovs.ts'),
    nodeArgs: [],
    root: true,
    what: 'gateway agent start at 10,000 VIPs on real OVS: compile + install + streamed verify, RSS of agent and OVS',
  },
  {
    name: 'sim-engine',
    file: here('./sim-engine.ts'),
    nodeArgs: [],
    root: false,
    what: 'simulator engine: strategies as objects vs the integer-code version, same numbers (pure)',
  },
  {
    name: 'dpflows',
    file: here('./dpflows.ts'),
    nodeArgs: [],
    root: true,
    what: 'datapath flows/upcalls per hash mode, second-chance packets (lab)',
  },
  {
    name: 'perf-lab',
    file: here('./perf/lab.ts'),
    nodeArgs: [],
    root: true,
    what: 'sluice vs the BASELINE stateful gateway: state, forwarding CPU, setup rate, second-chance RTT (lab)',
  },
  {
    name: 'perf-xdp',
    file: here('./perf/xdp.ts'),
    nodeArgs: [],
    root: true,
    what: 'XDP gateway vs OVS gateway vs BASELINE: gateway CPU per packet, highest XDP rate under a flood (lab)',
  },
  {
    name: 'udp-walk',
    file: here('./udp-walk.ts'),
    nodeArgs: [],
    root: true,
    what: 'first datagram of a new UDP flow in a moving vs an unmoved slot: extra hops, RTT (lab)',
  },
  {
    name: 'chains',
    file: here('./chains.ts'),
    nodeArgs: [],
    root: true,
    what: 'RTT through 0-3 chain hops against the direct path, host CHAIN flows per chain length (lab)',
  },
  {
    name: 'failover',
    file: here('./failover.ts'),
    nodeArgs: [],
    root: true,
    what: 'BGP + BFD: fault (kill, link cut, freeze) to ECMP change and to the first answered retransmission (lab)',
  },
];

function parseArgs(argv: readonly string[]): {
  only?: string[];
  skip: string[];
  list: boolean;
  parts?: string;
} {
  const out: { only?: string[]; skip: string[]; list: boolean; parts?: string } = { skip: [], list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--list') out.list = true;
    else if (a.startsWith('--only')) out.only = val().split(',');
    else if (a.startsWith('--skip')) out.skip = val().split(',');
    else if (a.startsWith('--parts')) out.parts = val();
    else throw new Error(`unknown argument ${a} (--only a,b | --skip a,b | --parts p,q | --list)`);
  }
  return out;
}

function runOne(b: Bench, extra: readonly string[]): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [...b.nodeArgs, '--import', 'tsx', b.file, ...extra], {
      stdio: 'inherit',
    });
    const forward = (sig: NodeJS.Signals) => () => p.kill(sig); // the child tears its lab down itself
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    p.on('exit', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    for (const b of BENCHES)
      process.stdout.write(`${b.name.padEnd(10)} ${b.root ? '(root) ' : ''}${b.what}\n`);
    return;
  }
  const unknown = [...(args.only ?? []), ...args.skip].filter((n) => !BENCHES.some((b) => b.name === n));
  if (unknown.length) throw new Error(`unknown benchmark(s): ${unknown.join(', ')} (see --list)`);
  const chosen = BENCHES.filter(
    (b) => (args.only ? args.only.includes(b.name) : true) && !args.skip.includes(b.name),
  );
  const isRoot = process.getuid?.() === 0;
  const results: Array<[string, string]> = [];
  const start = Date.now();
  for (const [i, b] of chosen.entries()) {
    if (b.root && !isRoot) {
      results.push([b.name, 'skipped (needs root)']);
      continue;
    }
    // How far along: the benchmark's place in the run and the time spent so far (each bench prints its own steps).
    process.stderr.write(
      `\n=== bench ${b.name} [${i + 1}/${chosen.length}, ${((Date.now() - start) / 1000).toFixed(0)} s so far]: ${b.what}\n`,
    );
    const t0 = Date.now();
    const code = await runOne(b, b.name === 'perf-lab' && args.parts ? [args.parts] : []);
    results.push([
      b.name,
      `${code === 0 ? 'ok' : `FAILED (exit ${code})`} in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    ]);
  }
  process.stderr.write('\n');
  for (const [n, r] of results) process.stderr.write(`bench ${n}: ${r}\n`);
  if (results.some(([, r]) => r.startsWith('FAILED'))) process.exitCode = 1;
}

await main();
