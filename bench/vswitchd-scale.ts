// What ovs-vswitchd itself costs at 10,000 VIPs x 20 backends (`npm run bench -- --only vswitchd-scale`).
//
// Each layout runs against its own private ovs-vswitchd 3.1 (`--enable-dummy`, a `dummy` userspace datapath, one
// `dummy` port: no kernel state, nothing outside its temporary directory), started and stopped by this file by pid.
// The gateway's br-int (src/compile, gw1 of bench/perf/cp.ts's synthetic state) is installed through `ovs-ofctl
// -O OpenFlow15 bundle br-int -`, in bundles of BATCH lines (one bundle of 2.6 M lines makes ovs-ofctl alone take
// 13.9 GB: docs/benchmarks.md, agent-start). Measured per layout:
//   - install: wall time of all the bundles, ovs-vswitchd's CPU over them (utime+stime of /proc/<pid>/stat), the
//     largest ovs-ofctl peak RSS (/usr/bin/time %M);
//   - ovs-vswitchd RSS after the install (VmRSS) and its peak (VmHWM), OpenFlow rules (dump-aggregate);
//   - its idle CPU over IDLE_S seconds after the install (periodic work over the rules);
//   - revalidation: 1,000 TCP SYNs to VIP 0 injected (netdev-dummy/receive) make datapath flows; then one slot flow
//     of VIP 0 is modified in a bundle and `ovs-appctl revalidator/wait` timed (median of 5).
// Layouts: 1 VIP at 2^8 slots (the baseline), 10,000 VIPs at 2^8 (slotBits 8: today's tables; lbSlotBits gives 20
// backends 2^8 at that floor), 10,000 VIPs with slotBits 4 (lbSlotBits: 2^7 for 20 backends), and an experiment
// that is not what src/compile emits: the same 2^8 slot entries as ONE select group per VIP of 256 dp_hash buckets
// (bucket i = slot i: OVS picks bucket dp_hash & 0xff when a group has exactly 256 equal buckets) instead of 256
// flows. Env: VSW_VIPS (default 10000), VSW_BATCH (default 100000), VSW_IDLE_S (default 10), VSW_NO_WRITE=1.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { gatewaySlotEntries, type LbInput } from '../src/compile/gateway.ts';
import { compileNodeParts, joinParts } from '../src/compile/incremental.ts';
import { lbInputs } from '../src/compile/index.ts';
import { T, TUN_LB_SLOT, TUN_MEMBER_FLAGS, TUN_SECOND_HOST } from '../src/compile/registry.ts';
import { bundleLineIter, diffBridge } from '../src/flowset/diff.ts';
import type { Config } from '../src/model/types.ts';
import { planNext } from '../src/rollout/planner.ts';
import type { Generation } from '../src/rollout/types.ts';
import { finish, machine, machineLine, median, n0, ratio, say, sleep, writeSection } from './perf/common.ts';
import { makeConfig, syntheticFacts } from './perf/cp.ts';
import { PrivateSwitch } from './perf/private-switch.ts';

const _run = promisify(execFile);
const VIPS = Number(process.env.VSW_VIPS ?? 10_000);
const BATCH = Number(process.env.VSW_BATCH ?? 100_000);
const IDLE_S = Number(process.env.VSW_IDLE_S ?? 10);
const SYNS = 1000;
const MiB = 2 ** 20;

interface Layout {
  readonly name: string;
  readonly vips: number;
  readonly slotBits: number;
  readonly groups: boolean;
}

interface Result {
  readonly layout: Layout;
  readonly slotsPerVip: number;
  readonly bundleLines: number;
  readonly rules: number;
  readonly installMs: number;
  readonly vswitchdCpuMs: number;
  readonly ofctlPeakMiB: number;
  readonly rssMiB: number;
  readonly hwmMiB: number;
  readonly rssBeforeMiB: number;
  readonly idleCpuMsPerS: number;
  readonly dpFlows: number;
  readonly revalidateMs: number;
}

function generation(config: Config): Generation {
  return planNext({ config, latest: null, connections: () => 0, now: 0 }).next!;
}

/** The gateway's br-int as bundle lines: what the agent's first install sends (src/openflow/applier.ts). */
function* flowLayoutLines(config: Config, gen: Generation): Generator<string> {
  const parts = compileNodeParts(config, gen, syntheticFacts(config, 'gw1'));
  yield* bundleLineIter(
    diffBridge(joinParts(parts.bridges.get('br-int')!), { flows: [], groups: [], tlvMap: [] }),
  );
}

/** The experiment: per VIP one select group of 2^k dp_hash buckets carrying the slot flows' actions, and one
 *  CLASSIFY flow that jumps to it. Only for measuring ovs-vswitchd; src/compile does not emit it. */
function* groupLayoutLines(config: Config, gen: Generation): Generator<string> {
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  const geneve = syntheticFacts(config, 'gw1').ports.geneve;
  const inputs: LbInput[] = lbInputs(config, gen);
  for (const input of inputs) {
    const buckets = gatewaySlotEntries(hostIp, input).map(
      (e) =>
        `bucket=bucket_id:${e.slot},actions=set_field:${e.options[0]}->${TUN_LB_SLOT.field},` +
        `set_field:${e.options[1]}->${TUN_MEMBER_FLAGS.field},set_field:${e.options[2]}->${TUN_SECOND_HOST.field},` +
        `set_field:${e.dst}->tun_dst,output:${geneve}`,
    );
    yield `group add group_id=${input.id + 1},type=select,selection_method=dp_hash,${buckets.join(',')}`;
  }
  for (const { lb, id } of inputs)
    yield `flow add table=${T.CLASSIFY},priority=100,tcp,nw_dst=${lb.vip},tp_dst=${lb.ports[0]},actions=group:${id + 1}`;
}

async function install(
  sw: PrivateSwitch,
  lines: Iterable<string>,
): Promise<{ n: number; ms: number; ofctl: number }> {
  let batch: string[] = [];
  let n = 0;
  let ofctl = 0;
  const t0 = performance.now();
  for (const line of lines) {
    batch.push(line);
    n++;
    if (batch.length >= BATCH) {
      ofctl = Math.max(ofctl, await sw.bundle(batch));
      batch = [];
    }
  }
  if (batch.length > 0) ofctl = Math.max(ofctl, await sw.bundle(batch));
  return { n, ms: performance.now() - t0, ofctl };
}

/** 1,000 TCP SYNs from distinct sources to VIP 0, 100 per appctl call, through the dummy port. */
async function injectSyns(sw: PrivateSwitch, vip: string): Promise<void> {
  for (let i = 0; i < SYNS; i += 100) {
    const pkts: string[] = [];
    for (let j = i; j < i + 100; j++)
      pkts.push(
        `in_port(1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02),eth_type(0x0800),` +
          `ipv4(src=10.${1 + (j >> 16)}.${(j >> 8) & 255}.${j & 255},dst=${vip},proto=6,tos=0,ttl=64,frag=no),` +
          `tcp(src=${1024 + j},dst=80),tcp_flags(syn)`,
      );
    await sw.appctl(['netdev-dummy/receive', 'p0', ...pkts]);
  }
}

async function measure(layout: Layout): Promise<Result> {
  const config = makeConfig({
    name: '',
    vips: layout.vips,
    backends: 20,
    hosts: 100,
    slotBits: layout.slotBits,
  });
  const gen = generation(config);
  const slotsPerVip = gen.pools.values().next().value!.primary.length;
  const sw = new PrivateSwitch();
  try {
    await sw.start();
    const rssBefore = sw.status('VmRSS');
    const cpu0 = sw.cpuMs();
    const lines = layout.groups ? groupLayoutLines(config, gen) : flowLayoutLines(config, gen);
    const inst = await install(sw, lines);
    const vswitchdCpuMs = sw.cpuMs() - cpu0;
    const agg = await sw.cmd('ovs-ofctl', ['-O', 'OpenFlow15', 'dump-aggregate', 'br-int']);
    const rules = Number(/flow_count=(\d+)/.exec(agg)?.[1] ?? Number.NaN);
    const rssMiB = sw.status('VmRSS');
    const hwmMiB = sw.status('VmHWM');
    const idle0 = sw.cpuMs();
    await sleep(IDLE_S * 1000);
    const idleCpuMsPerS = (sw.cpuMs() - idle0) / IDLE_S;
    const vip0 = config.loadBalancers[0]!.vip;
    await injectSyns(sw, vip0);
    await sw.appctl(['revalidator/wait']);
    const dpFlows = (await sw.appctl(['dpctl/dump-flows'])).split('\n').filter((l) => l.trim() !== '').length;
    // One change to VIP 0 per round: its slot 0 (or bucket 0) gets another second-chance host, then back.
    const lb0 = lbInputs(config, gen)[0]!;
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const second = i % 2 === 0 ? '0xc0a80063' : '0';
      const change = layout.groups
        ? [...groupLayoutLines(config, gen)][0]!
            .replace('group add', 'group modify')
            .replace(/set_field:\d+->tun_metadata2/, `set_field:${second}->tun_metadata2`)
        : `flow add table=${T.GW_SLOTS},priority=100,reg0=${lb0.id},reg1=0,actions=set_field:${lb0.id << 16}->${TUN_LB_SLOT.field},` +
          `set_field:0->${TUN_MEMBER_FLAGS.field},set_field:${second}->${TUN_SECOND_HOST.field},set_field:192.168.0.99->tun_dst,output:3`;
      await sw.bundle([change]);
      const t0 = performance.now();
      await sw.appctl(['revalidator/wait']);
      times.push(performance.now() - t0);
    }
    return {
      layout,
      slotsPerVip,
      bundleLines: inst.n,
      rules,
      installMs: inst.ms,
      vswitchdCpuMs,
      ofctlPeakMiB: inst.ofctl,
      rssMiB,
      hwmMiB,
      rssBeforeMiB: rssBefore,
      idleCpuMsPerS,
      dpFlows,
      revalidateMs: median(times),
    };
  } finally {
    await sw.stop();
  }
}

type NumKey = { [K in keyof Result]: Result[K] extends number ? K : never }[keyof Result];
const perRule = (r: Result) => ((r.rssMiB - r.rssBeforeMiB) * MiB) / (r.layout.vips * r.slotsPerVip);
/** Table rows: label, cell, and the field a ratio to the baseline is taken of (none: no ratio). */
const ROWS: readonly (readonly [string, (r: Result) => string, NumKey?])[] = [
  ['slots per VIP', (r) => n0(r.slotsPerVip)],
  ['bundle lines', (r) => n0(r.bundleLines), 'bundleLines'],
  ['OpenFlow rules in br-int', (r) => n0(r.rules), 'rules'],
  ['**install, wall (all bundles)**', (r) => `${n0(r.installMs)} ms`, 'installMs'],
  ['ovs-vswitchd CPU during the install', (r) => `${n0(r.vswitchdCpuMs)} ms`, 'vswitchdCpuMs'],
  ['ovs-ofctl peak RSS (largest bundle)', (r) => `${n0(r.ofctlPeakMiB)} MiB`],
  ['**ovs-vswitchd RSS after the install**', (r) => `${n0(r.rssMiB)} MiB`, 'rssMiB'],
  ['ovs-vswitchd peak RSS (VmHWM)', (r) => `${n0(r.hwmMiB)} MiB`, 'hwmMiB'],
  ['… growth per slot (rule or bucket)', (r) => `${n0(perRule(r))} B`],
  ['ovs-vswitchd idle CPU after the install', (r) => `${r.idleCpuMsPerS.toFixed(1)} ms/s`],
  ['datapath flows (1,000 SYNs to VIP 0)', (r) => n0(r.dpFlows)],
  ['**revalidator/wait after one slot changed**', (r) => `${n0(r.revalidateMs)} ms`, 'revalidateMs'],
];

function render(m: ReturnType<typeof machine>, rs: readonly Result[]): string {
  const base = rs[0]!;
  const col = (f: (r: Result) => string) => rs.map(f).join(' | ');
  const row = (what: string, f: (r: Result) => string, r?: (x: Result) => number) =>
    `| ${what} | ${col(f)} |${
      r
        ? ` ${rs
            .slice(1)
            .map((x) => ratio(r(x), r(base), 1))
            .join(', ')} |`
        : ' |'
    }`;
  return [
    '## ovs-vswitchd at 10,000 VIPs: rules, memory, install and revalidation per slot layout',
    '',
    machineLine(m, 'npm run bench -- --only vswitchd-scale'),
    '',
    'Each layout against its own private ovs-vswitchd (`--enable-dummy`, `dummy` userspace datapath, one dummy port), ' +
      "gw1's br-int of bench/perf/cp.ts's synthetic state (20 backends per VIP, 100 hosts, dp_hash) installed " +
      `through \`ovs-ofctl bundle\` in bundles of ${n0(BATCH)} lines (one bundle of 2.6 M lines makes ovs-ofctl take ` +
      '13.9 GB). "groups" is an experiment, not what src/compile emits: per VIP one select group of 256 dp_hash ' +
      "buckets (bucket i carries slot i's actions) instead of 256 slot flows. Revalidation: 1,000 SYNs to VIP 0 " +
      `made the datapath flows counted; then one slot of VIP 0 changed in a bundle and \`revalidator/wait\` timed ` +
      `(median of 5). Idle CPU: ovs-vswitchd's utime+stime over ${IDLE_S} s after the install. Ratios: against the ` +
      'first column, same run.',
    '',
    `| | ${col((r) => r.layout.name)} | ratio to ${base.layout.name} |`,
    `| --- |${rs.map(() => ' ---: |').join('')} --- |`,
    ...ROWS.map(([what, show, key]) => row(what, show, key && ((r) => r[key]))),
  ].join('\n');
}

async function main(): Promise<void> {
  const m = machine();
  const layouts: Layout[] = [
    { name: '1 VIP, 2^8 flows', vips: 1, slotBits: 8, groups: false },
    { name: `${n0(VIPS)} VIPs, 2^8 flows`, vips: VIPS, slotBits: 8, groups: false },
    { name: `${n0(VIPS)} VIPs, slotBits 4: 2^7 flows`, vips: VIPS, slotBits: 4, groups: false },
    { name: `${n0(VIPS)} VIPs, groups of 2^8 buckets`, vips: VIPS, slotBits: 8, groups: true },
  ];
  const rs: Result[] = [];
  for (const l of layouts) {
    say(`[vswitchd-scale] ${l.name}`);
    const r = await measure(l);
    say(`[vswitchd-scale] ${JSON.stringify(r)}`);
    rs.push(r);
  }
  const md = render(finish(m), rs);
  process.stdout.write(`${md}\n`);
  if (process.env.VSW_NO_WRITE !== '1') writeSection('vswitchd-scale', md);
}

await main();
