// Gateway agent start at scale on real Open vSwitch (root): `npm run bench -- --only agent-start-ovs`.
//
// What a gateway agent does when it starts (src/agent/node-ops.ts NodeProgrammer, first program(): compile, full
// apply = read the switch, diff, one bundle per bridge streamed to `ovs-ofctl bundle`, verify, revalidator/wait),
// run in-process against the userspace ovs-vswitchd of a lab gateway (prefix `slb-as-`: 1 gateway, 2 hosts x 10
// backends, 1 client). 1 VIP, then AGENT_START_OVS_VIPS (default 10,000) x 20 backends, 2^8 slots, dp_hash; each
// size in its own child process (its peak RSS is its own). Measured: the whole start (wall, this process's CPU, its
// peak RSS), each phase (compile, the bundle, the verification's dump, revalidator/wait) from the runner's own
// timing of every command, the peak RSS of every `ovs-ofctl` child (sampled from /proc every 100 ms) and of
// ovs-vswitchd. Writes docs/benchmarks.md between the bench:agent-start-ovs markers. AGENT_START_OVS_NO_WRITE=1:
// print only. The lab is taken down in `finally` and on SIGINT/SIGTERM.

import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ChildInput } from '../src/child-input.ts';
import type { NodeFacts } from '../src/compile/index.ts';
import { COOKIE_TAG } from '../src/compile/registry.ts';
import { ovsEnv } from '../src/lab/node.ts';
import { labDown, labUp } from '../src/lab/topology.ts';
import { parseConfig } from '../src/model/schema.ts';
import { localRunner, type Runner } from '../src/openflow/runner.ts';
import { planNext } from '../src/rollout/planner.ts';
import {
  finish,
  labVipsDoc,
  machine,
  machineLine,
  n0,
  ofctlChildrenPeakKb,
  ratio,
  runJsonChild,
  say,
  statusKb,
  writeSection,
} from './perf/common.ts';
import { extractTree } from './store-fixture.ts';

const PREFIX = 'slb-as-';
const LARGE = Number(process.env.AGENT_START_OVS_VIPS ?? 10_000);
/** AGENT_START_OVS_RESTART=0: only the starts on a new switch. */
const RESTARTS = process.env.AGENT_START_OVS_RESTART !== '0';
/** AGENT_START_OVS_BEFORE=1: the restarts also with the code of AGENT_START_OVS_BASELINE_COMMIT (on this loaded
 *  machine the whole run then takes more than 15 minutes). */
const BEFORE = process.env.AGENT_START_OVS_BEFORE === '1';
/** The code the restarts are compared with: before the read of a populated bridge was streamed. */
const BASELINE = process.env.AGENT_START_OVS_BASELINE_COMMIT ?? 'b92dad20e12e4544257e860209753f7771b6be56';

interface Input {
  /** Column label. */
  readonly label: string;
  readonly vips: number;
  /** A tree with the code to run (`git archive` of a baseline commit), or undefined: this one. */
  readonly tree?: string;
  readonly doc: Record<string, unknown>;
  readonly facts: NodeFacts;
  readonly ovsDir: string;
  readonly vswitchdPid: number;
}

interface SizeResult {
  readonly label: string;
  readonly vips: number;
  /** Bytes written to `ovs-ofctl bundle`'s stdin. */
  readonly bundleBytes: number;
  /** Largest V8 heap used seen (sampled every 100 ms), MiB. */
  readonly peakHeapMiB: number;
  readonly flows: number;
  readonly mode: string;
  readonly bundleLines: number;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly compileMs: number;
  readonly bundleMs: number;
  readonly verifyDumpMs: number;
  readonly revalidateMs: number;
  readonly peakRssMiB: number;
  readonly ofctlPeakMiB: number;
  readonly vswitchdBeforeMiB: number;
  readonly vswitchdAfterMiB: number;
  readonly error?: string;
}

/** The runner, timing each command by its first word (`bundle`, `dump-flows`, `revalidator/wait`...) and counting
 *  the bytes written to the commands' stdin (the bundles). */
function timedRunner(inner: Required<Runner>, times: Map<string, number>, bytes: { n: number }): Runner {
  const timed = async <T>(what: string, p: Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await p;
    } finally {
      times.set(what, (times.get(what) ?? 0) + performance.now() - t);
    }
  };
  const counted = (input: ChildInput | undefined): ChildInput | undefined => {
    if (input === undefined) return undefined;
    if (typeof input === 'string') {
      bytes.n += Buffer.byteLength(input);
      return input;
    }
    return (function* () {
      for (const c of input) {
        bytes.n += typeof c === 'string' ? Buffer.byteLength(c) : c.byteLength;
        yield c;
      }
    })();
  };
  return {
    ofctl: (br, args, opts) =>
      timed(
        args.find((a) => !a.startsWith('-'))!,
        inner.ofctl(br, args, opts?.input === undefined ? opts : { ...opts, input: counted(opts.input) }),
      ),
    ofctlLines: (br, args, onLine, opts) =>
      timed(`${args.find((a) => !a.startsWith('-'))!} (streamed)`, inner.ofctlLines(br, args, onLine, opts)),
    appctl: (args, opts) => timed(args[0]!, inner.appctl(args, opts)),
  };
}

async function measureSize(input: Input): Promise<SizeResult> {
  const config = parseConfig(input.doc);
  const gen = planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
  const times = new Map<string, number>();
  const bytes = { n: 0 };
  const runner = timedRunner(
    localRunner({ env: ovsEnv(input.ovsDir), timeoutMs: 30 * 60_000 }),
    times,
    bytes,
  );
  const { NodeProgrammer } = (
    input.tree === undefined
      ? await import('../src/agent/node-ops.ts')
      : await import(pathToFileURL(join(input.tree, 'src/agent/node-ops.ts')).href)
  ) as typeof import('../src/agent/node-ops.ts');
  let ofctlPeakKb = 0;
  let heapPeak = 0;
  const sampler = setInterval(() => {
    ofctlPeakKb = Math.max(ofctlPeakKb, ofctlChildrenPeakKb());
    heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
  }, 100);
  const vswitchdBeforeMiB = statusKb(input.vswitchdPid, 'VmRSS') / 1024;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let error: string | undefined;
  let r: Awaited<ReturnType<InstanceType<typeof NodeProgrammer>['program']>> | undefined;
  try {
    r = await new NodeProgrammer(runner).program(config, gen, input.facts);
  } catch (e) {
    error = (e as Error).message.split('\n')[0];
  }
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  clearInterval(sampler);
  return {
    label: input.label,
    vips: input.vips,
    bundleBytes: bytes.n,
    peakHeapMiB: heapPeak / 2 ** 20,
    flows: r?.flows ?? 0,
    mode: r?.mode ?? '–',
    bundleLines: Object.values(r?.bundleLines ?? {}).reduce((a, b) => a + b, 0),
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    compileMs: r?.compileMs ?? 0,
    bundleMs: times.get('bundle') ?? 0,
    verifyDumpMs: times.get('dump-flows (streamed)') ?? 0,
    revalidateMs: r?.revalidateMs ?? 0,
    peakRssMiB: statusKb('self', 'VmHWM') / 1024,
    ofctlPeakMiB: ofctlPeakKb / 1024,
    vswitchdBeforeMiB,
    vswitchdAfterMiB: statusKb(input.vswitchdPid, 'VmRSS') / 1024,
    ...(error !== undefined ? { error } : {}),
  };
}

function runChild(input: Input): Promise<SizeResult> {
  const file = join(tmpdir(), `sluice-agent-start-ovs-${input.vips}.json`);
  writeFileSync(file, JSON.stringify(input));
  return runJsonChild(fileURLToPath(import.meta.url), { AGENT_START_OVS_CHILD: file }, input.label);
}

const sec = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${n0(ms)} ms`);

const RESTART_NOTE =
  'Before (this file, 2026-12-05 09:55 UTC, measured once with the 1-VIP flows left on the switch): one bundle of ' +
  '2,619,738 lines, `ovs-ofctl` peak 13,586 MiB, agent peak RSS 1,771 MiB (the diff against a non-empty bridge ' +
  'rendered a key per desired flow).';

function render(m: ReturnType<typeof machine>, cols: readonly SizeResult[], baseline: string): string {
  const one = cols[0]!;
  const row = (what: string, f: (r: SizeResult) => string) => `| ${what} | ${cols.map(f).join(' | ')} |`;
  const L = [
    '## Gateway agent start at scale on real Open vSwitch: compile + install + verify',
    '',
    machineLine(m, 'npm run bench -- --only agent-start-ovs'),
    '',
    "A gateway agent's first program() (src/agent/node-ops.ts NodeProgrammer: compile, read the switch, diff, one " +
      'bundle per bridge streamed to `ovs-ofctl bundle -`, verify, `revalidator/wait`), in-process against the ' +
      'userspace ovs-vswitchd of a lab gateway (prefix `slb-as-`, 2 hosts × 10 backends), each column in its own ' +
      'process, one after the other on the same switch. 20 backends per VIP, 2^8 slots, dp_hash. **new switch**: ' +
      "cleared of sluice's flows and groups first (a first install: bundles of at most 100,000 lines; at 10,000 " +
      `VIPs v0 has 19 backends). **restart**: an agent started on the switch the column before left, holding the ` +
      '10,000-VIP flows: **1 LB differs** wants v0 with its 20th backend (the switch holds 19: an agent that missed ' +
      'a change while it was down), **same** wants exactly what is installed. With AGENT_START_OVS_BEFORE=1 each ' +
      `restart also runs with **before**: the code of the baseline commit ${baseline.slice(0, 7)} (\`git archive\`: ` +
      'the read of every installed flow and a key per flow; the switch is then put back to 19 backends by an ' +
      'unmeasured start); **after** or no label: this tree (the read streamed into per-load-balancer digests; only ' +
      'the load balancers that differ are read and diffed: src/openflow/applier.ts). Above 50,000 flows the ' +
      'verification after a bundle streams the dump into ' +
      'digests too. Phases are the runner’s own timing of each command; `ovs-ofctl` peak is the largest VmHWM of its ' +
      'children, sampled every 100 ms; peak heap is V8 heapUsed sampled every 100 ms. Wall is the time to the first ' +
      'consistent state: installed, verified and revalidated.',
    '',
    `| | ${cols.map((c) => c.label).join(' | ')} |`,
    `| --- | ${cols.map(() => '---:').join(' | ')} |`,
    row('gateway flows (all bridges)', (r) => n0(r.flows)),
    row('apply mode; bundle lines', (r) => `${r.mode}; ${n0(r.bundleLines)}`),
    row('bytes sent to `ovs-ofctl bundle`', (r) => `${(r.bundleBytes / 2 ** 20).toFixed(1)} MiB`),
    row('**agent start, wall**', (r) => `**${sec(r.wallMs)}**`),
    row('agent start, CPU of the agent process', (r) => sec(r.cpuMs)),
    row('… compile', (r) => sec(r.compileMs)),
    row('… bundle (`ovs-ofctl bundle`: parse, send, commit)', (r) => sec(r.bundleMs)),
    row('… dump-flows, streamed (the read before the diff, the verification after)', (r) =>
      sec(r.verifyDumpMs),
    ),
    row('… revalidator/wait', (r) => sec(r.revalidateMs)),
    row('**agent process peak RSS**', (r) => `**${n0(r.peakRssMiB)} MiB**`),
    row('… ratio to 1 VIP', (r) => ratio(r.peakRssMiB, one.peakRssMiB, 1)),
    row('agent peak V8 heap used', (r) => `${n0(r.peakHeapMiB)} MiB`),
    row('largest `ovs-ofctl` child peak RSS (0: none lived 100 ms)', (r) => `${n0(r.ofctlPeakMiB)} MiB`),
    row(
      'ovs-vswitchd RSS before → after',
      (r) => `${n0(r.vswitchdBeforeMiB)} → ${n0(r.vswitchdAfterMiB)} MiB`,
    ),
    row('result', (r) => r.error ?? (r.bundleLines > 0 ? 'installed and verified' : 'nothing to change')),
    '',
    RESTART_NOTE,
  ];
  return L.join('\n');
}

async function main(): Promise<void> {
  const child = process.env.AGENT_START_OVS_CHILD;
  if (child !== undefined) {
    process.stdout.write(JSON.stringify(await measureSize(JSON.parse(readFileSync(child, 'utf8')) as Input)));
    return;
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      void labDown(PREFIX).finally(() => process.exit(130));
    });
  const m = machine();
  try {
    say('[lab] up');
    const lab = await labUp(
      { prefix: PREFIX, gateways: 1, hosts: 2, backendsPerHost: 10, clients: 1, udp: false },
      { replace: true, probe: false },
    );
    const gw = lab.gateways[0]!;
    const input = (label: string, vips: number, omit?: string, tree?: string): Input => ({
      label,
      vips,
      ...(tree === undefined ? {} : { tree }),
      doc: labVipsDoc(lab, vips, omit),
      facts: lab.compilerFacts(gw.name),
      ovsDir: gw.ovsDir,
      vswitchdPid: gw.vswitchdPid()!,
    });
    // A new switch: without sluice's flows and groups, as a new gateway (or one whose ovs-vswitchd restarted) has.
    const clear = async () => {
      for (const br of ['br-int', 'br-phy']) {
        await gw.ofctl(br, ['del-flows', `cookie=0x${(COOKIE_TAG << 56n).toString(16)}/0xff00000000000000`]);
        await gw.ofctl(br, ['del-groups']);
      }
    };
    const big = n0(LARGE);
    const cols: SizeResult[] = [];
    const run = async (i: Input) => {
      say(`[agent-start-ovs] ${i.label}`);
      const r = await runChild(i);
      say(`  ${JSON.stringify(r)}`);
      return r;
    };
    await clear();
    cols.push(await run(input('1 VIP, new switch', 1)));
    await clear();
    // v0 with 19 backends on the switch: the `1 LB differs` restarts want 20.
    const omit = lab.backends().at(-1)!.ip;
    cols.push(await run(input(`${big} VIPs, new switch`, LARGE, omit)));
    if (RESTARTS) {
      const tree = BEFORE ? extractTree(BASELINE, 'sluice-agent-start-ovs-baseline') : undefined;
      if (tree !== undefined) {
        cols.push(await run(input(`${big}, restart, 1 LB differs: before`, LARGE, undefined, tree)));
        await run(input('(back to 19 backends, not measured)', LARGE, omit));
      }
      cols.push(await run(input(`${big}, restart, 1 LB differs${tree ? ': after' : ''}`, LARGE)));
      if (tree !== undefined)
        cols.push(await run(input(`${big}, restart, same: before`, LARGE, undefined, tree)));
      cols.push(await run(input(`${big}, restart, same${tree ? ': after' : ''}`, LARGE)));
    }
    const md = render(finish(m), cols, BASELINE);
    process.stdout.write(`${md}\n`);
    if (process.env.AGENT_START_OVS_NO_WRITE !== '1') writeSection('agent-start-ovs', md);
  } finally {
    await labDown(PREFIX).catch(() => {});
  }
}

await main();
