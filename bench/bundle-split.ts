// The largest OpenFlow bundle of an incremental apply that changes every load balancer at once
// (`npm run bench -- bundle-split`), this tree against the applier before such changes were split
// (BUNDLE_SPLIT_BASELINE_COMMIT, `git archive`), same run. The state: gw1's br-int of bench/perf/cp.ts's synthetic
// config (20 backends per VIP on 100 hosts, slotBits 8, dp_hash), compiled in parts as the agent does
// (src/compile/incremental.ts). Changes of every load balancer: slotBits 8 -> 9 (every pool grows), the hash mode
// dp_hash -> fields, one host's tunnel address. For each size (BUNDLE_SPLIT_VIPS, default "1000,10000") and change:
// the bundles each version's incrementalPieces makes (count, largest, total lines). Then, on a private ovs-vswitchd
// (bench/perf/private-switch.ts, dummy datapath, no root) at BUNDLE_SPLIT_OVS_VIPS (default 1000) VIPs: the state
// installed, the slotBits change applied with each version's applyBridgeDelta through a runner that counts the lines
// of every `ovs-ofctl bundle` and samples ovs-ofctl's peak RSS, then a full read of the switch that must find nothing
// to change (BUNDLE_SPLIT_OVS_VIPS=0: none). BUNDLE_SPLIT_NO_WRITE=1: print only.

import { pathToFileURL } from 'node:url';
import { compileNodeParts, joinParts } from '../src/compile/incremental.ts';
import { bundleLineCount, diffParts } from '../src/flowset/diff.ts';
import type { BridgeState } from '../src/flowset/types.ts';
import type { Config } from '../src/model/types.ts';
import { localRunner, type Runner } from '../src/openflow/runner.ts';
import { planNext } from '../src/rollout/planner.ts';
import type { Generation } from '../src/rollout/types.ts';
import { finish, machine, machineLine, n0, ofctlChildrenPeakKb, say, writeSection } from './perf/common.ts';
import { makeConfig, SCALES, syntheticFacts } from './perf/cp.ts';
import { PrivateSwitch } from './perf/private-switch.ts';
import { extractTree } from './store-fixture.ts';

const BASELINE = process.env.BUNDLE_SPLIT_BASELINE_COMMIT ?? 'c7f9b050973d28d03fd10db4de8bf7a7c9ea4b4b';
const SIZES = (process.env.BUNDLE_SPLIT_VIPS ?? '1000,10000').split(',').map(Number);
const OVS_VIPS = Number(process.env.BUNDLE_SPLIT_OVS_VIPS ?? 1000);
const BR = 'br-int';

/** What the section's figures say, whatever the run. */
const READING =
  'Reading: at these sizes only the slotBits change goes above 100,000 lines (the hash mode switch changes two lines ' +
  "per load balancer, a host's address only the slot flows of that host's backends), so only it is split. Each extra " +
  "bundle is one more commit in ovs-vswitchd (the wall column); what the split bounds is ovs-ofctl's memory, about " +
  '5 KiB per line of its bundle.';

type Applier = typeof import('../src/openflow/applier.ts');

interface Impl {
  readonly label: string;
  readonly applier: Applier;
}

async function loadImpl(label: string, tree: string): Promise<Impl> {
  return { label, applier: await import(pathToFileURL(`${tree}/src/openflow/applier.ts`).href) };
}

type Parts = ReadonlyMap<string, BridgeState>;

interface Change {
  readonly name: string;
  readonly config: Config;
  readonly gen: Generation;
}

/** gw1's br-int in parts for `config` (the agent's incremental compile). */
function gatewayParts(config: Config, gen: Generation): Parts {
  return compileNodeParts(config, gen, syntheticFacts(config, 'gw1')).bridges.get(BR)!;
}

/** The synthetic state at `vips` VIPs and the three changes of every load balancer. */
function scenario(vips: number): { base: Config; g1: Generation; changes: Change[] } {
  const scale = SCALES.find((s) => s.backends === 20)!;
  const base = { ...makeConfig(scale, vips), slotBits: 8 };
  const g1 = planNext({ config: base, latest: null, connections: () => 0, now: 0 }).next!;
  const bits = { ...base, slotBits: 9 };
  const g2 = planNext({ config: bits, latest: g1, connections: () => 0, now: 1 }).next!;
  const host = base.nodes.find((n) => n.role === 'host')!;
  const nodes = base.nodes.map((n) => (n === host ? { ...n, tunnelIp: '192.168.250.1' } : n));
  return {
    base,
    g1,
    changes: [
      { name: 'slotBits 8 -> 9', config: bits, gen: g2 },
      { name: 'hash mode dp_hash -> fields', config: { ...base, hashMode: 'fields' }, gen: g1 },
      { name: `${host.name}'s address`, config: { ...base, nodes }, gen: g1 },
    ],
  };
}

interface Split {
  readonly vips: number;
  readonly change: string;
  readonly impl: string;
  readonly bundles: number;
  readonly largest: number;
  readonly total: number;
}

function splits(impls: readonly Impl[], vips: number): Split[] {
  const { base, g1, changes } = scenario(vips);
  const have = gatewayParts(base, g1);
  const out: Split[] = [];
  for (const c of changes) {
    const want = gatewayParts(c.config, c.gen);
    const diff = diffParts(want, have);
    for (const impl of impls) {
      const pieces = impl.applier.incrementalPieces(
        want,
        have,
        [],
        diff,
        impl.applier.INCREMENTAL_BUNDLE_LINES,
      );
      const sizes = pieces.map(bundleLineCount);
      out.push({
        vips,
        change: c.name,
        impl: impl.label,
        bundles: sizes.length,
        largest: Math.max(...sizes),
        total: bundleLineCount(diff),
      });
    }
    say(
      `[bundle-split ${vips}] ${c.name}: ${out
        .slice(-impls.length)
        .map((s) => `${s.impl} ${s.bundles} bundles, largest ${s.largest}`)
        .join('; ')}`,
    );
  }
  return out;
}

/** Counts the lines of every `ovs-ofctl bundle` it runs (`bundles`), and samples ovs-ofctl's peak RSS meanwhile. */
function countingRunner(inner: Runner, bundles: number[], peakKb: { value: number }): Runner {
  const count = function* (input: Iterable<string | Uint8Array>, at: number) {
    for (const chunk of input) {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) bundles[at]!++;
      yield chunk;
    }
  };
  return {
    ...inner,
    ofctl: async (bridge, args, opts = {}) => {
      if (!args.includes('bundle') || opts.input === undefined || typeof opts.input === 'string')
        return inner.ofctl(bridge, args, opts);
      bundles.push(0);
      const timer = setInterval(() => {
        peakKb.value = Math.max(peakKb.value, ofctlChildrenPeakKb());
      }, 100);
      try {
        return await inner.ofctl(bridge, args, { ...opts, input: count(opts.input, bundles.length - 1) });
      } finally {
        clearInterval(timer);
      }
    },
  };
}

interface OnSwitch {
  readonly impl: string;
  readonly bundles: readonly number[];
  readonly ms: number;
  readonly ofctlPeakMiB: number;
  readonly leftOver: boolean;
}

/** The slotBits change applied on a private ovs-vswitchd with `impl`'s applyBridgeDelta. */
async function onSwitch(impl: Impl, vips: number): Promise<OnSwitch> {
  const { base, g1, changes } = scenario(vips);
  const change = changes[0]!;
  const have = gatewayParts(base, g1);
  const want = gatewayParts(change.config, change.gen);
  const sw = new PrivateSwitch();
  try {
    await sw.start();
    const plain = localRunner({ env: { OVS_RUNDIR: sw.dir }, timeoutMs: 600_000 });
    await impl.applier.applyBridge(plain, BR, joinParts(have), { verify: false });
    const bundles: number[] = [];
    const peak = { value: 0 };
    const t0 = performance.now();
    await impl.applier.applyBridgeDelta(countingRunner(plain, bundles, peak), BR, want, have, []);
    const ms = performance.now() - t0;
    // A full read and diff: the switch must already be the target.
    const check = await impl.applier.applyBridge(plain, BR, joinParts(want), { verify: false });
    const r = { impl: impl.label, bundles, ms, ofctlPeakMiB: peak.value / 1024, leftOver: check.changed };
    say(`[bundle-split ovs ${vips}] ${impl.label}: ${JSON.stringify(r)}`);
    return r;
  } finally {
    await sw.stop();
  }
}

function render(m: ReturnType<typeof machine>, rows: readonly Split[], ovs: readonly OnSwitch[]): string {
  const lines = ['## Incremental bundles that change every load balancer: split per load balancer', ''];
  lines.push(machineLine(m, 'npm run bench -- bundle-split'), '');
  lines.push(
    "gw1's br-int of bench/perf/cp.ts's synthetic state (20 backends per VIP on 100 hosts, slotBits 8, dp_hash) in " +
      "parts as the agent compiles it, and three changes that rewrite every load balancer's part. **before**: the " +
      `applier at ${BASELINE.slice(0, 7)} (above 100,000 lines only new load balancers went in separate bundles, so these ` +
      'changes were one bundle); **after**: this tree (new or changed load balancers in bundles of about 100,000 ' +
      "lines, each load balancer's lines in one bundle; the node part, removed load balancers and any two that " +
      'trade a flow key or group id in the last). `ovs-ofctl bundle` holds about 5 KiB per line it parses.',
    '',
    '| VIPs | change | lines | before: bundles; largest | after: bundles; largest | largest, after / before |',
    '| ---: | --- | ---: | ---: | ---: | ---: |',
  );
  for (const b of rows.filter((r) => r.impl === 'before')) {
    const a = rows.find((r) => r.impl === 'after' && r.vips === b.vips && r.change === b.change)!;
    lines.push(
      `| ${n0(b.vips)} | ${b.change} | ${n0(b.total)} | ${b.bundles}; ${n0(b.largest)} | ${a.bundles}; ` +
        `${n0(a.largest)} | ${(a.largest / b.largest).toFixed(3)}x |`,
    );
  }
  lines.push(
    '',
    `On a private ovs-vswitchd 3.1 (dummy datapath), ${n0(OVS_VIPS)} VIPs installed, the slotBits change applied ` +
      "with each version's applyBridgeDelta (the agent's incremental apply), then the switch read back whole:",
    '',
    '| | bundles sent (lines each) | apply, wall | ovs-ofctl peak RSS | switch equal to the target after |',
    '| --- | --- | ---: | ---: | --- |',
  );
  for (const o of ovs)
    lines.push(
      `| ${o.impl} | ${o.bundles.length} (${o.bundles.map(n0).join(', ')}) | ${n0(o.ms)} ms | ` +
        `${n0(o.ofctlPeakMiB)} MiB | ${o.leftOver ? 'no' : 'yes'} |`,
    );
  lines.push('', READING);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const m = machine();
  const impls = [
    await loadImpl('before', extractTree(BASELINE, 'sluice-bundle-split-baseline')),
    await loadImpl('after', new URL('..', import.meta.url).pathname),
  ];
  const rows = SIZES.flatMap((v) => splits(impls, v));
  const ovs: OnSwitch[] = [];
  if (OVS_VIPS > 0) for (const impl of impls) ovs.push(await onSwitch(impl, OVS_VIPS));
  const md = render(finish(m), rows, ovs);
  process.stdout.write(`${md}\n`);
  if (process.env.BUNDLE_SPLIT_NO_WRITE !== '1') writeSection('bundle-split', md);
}

await main();
