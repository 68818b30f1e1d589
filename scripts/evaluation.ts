// Runs the simulator's evaluation scenarios and writes the tables into docs/evaluation.md (between
// `<!-- BEGIN GENERATED: id -->` / `<!-- END GENERATED: id -->` markers) and the plots into docs/img/.
//
//   node --import tsx scripts/evaluation.ts [--scale full|small] [--seed N]
//       [--only churn,rolling,crash,ecmp,scale,window,chains]
//
// Full scale (the default, what docs/evaluation.md shows) takes several minutes on 2 cores.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EcmpMode, ecmpMovedShare } from '../src/sim/ecmp.ts';
import { runSim, type SimResult, STRATEGIES, STRATEGY_TITLES } from '../src/sim/engine.ts';
import { costs, costTable, eventTable, formatResult, pct, totalsTable } from '../src/sim/report.ts';
import { findScenario } from '../src/sim/scenarios.ts';
import { groupedLogBars, groupedShareBars, logLogLines } from '../src/sim/svg.ts';
import { type Scale, TOPOLOGIES } from '../src/sim/trace.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const docPath = join(root, 'docs', 'evaluation.md');
const imgDir = join(root, 'docs', 'img');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const scale = arg('scale', 'full') as Scale;
const seed = Number(arg('seed', '1'));
const only = arg('only', '')
  .split(',')
  .filter((x) => x !== '');
/** Whether to run a group: all by default, or those named in --only (churn,rolling,crash,ecmp,scale,window,chains). */
function want(group: string): boolean {
  return only.length === 0 || only.includes(group);
}

function log(msg: string): void {
  process.stderr.write(`[evaluation] ${msg}\n`);
}

function run(name: string): SimResult {
  const t = findScenario(name)!.build(scale);
  log(`${name} (${scale}) ...`);
  const r = runSim(t, { seed });
  log(`${name}: ${(r.runtimeMs / 1000).toFixed(1)} s`);
  return r;
}

const sections = new Map<string, string>();
const short: Record<string, string> = {
  stateful: '1 stateful',
  stateless_nat: '2 stateless_nat',
  hash_hrw: '3 hash (HRW)',
  slot_table: '4 slot table',
  sticky: '5 sticky',
  ct_sync: '6 ct sync',
  sluice: '7 sluice',
};

if (want('churn')) {
  // 1. The main comparison: every event type in one run.
  const churn = run('churn');
  const evs = churn.events.filter((e) => e.type !== 'steady');
  {
    const head = ['strategy', ...evs.map((e) => e.type), 'total avoidable'];
    const rows = STRATEGIES.map((s) => [
      STRATEGY_TITLES[s],
      ...evs.map((e) => {
        const c = e.strategies[s];
        const b = c.avoidable + c.unavoidable + c.drainExpired;
        return b === 0 ? '0' : `${b.toLocaleString('en-US')} (${pct(b, e.concurrent)})`;
      }),
      churn.totals[s].avoidable.toLocaleString('en-US'),
    ]);
    const md = [
      `| ${head.join(' | ')} |`,
      `| ${head.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ].join('\n');
    sections.set(
      'summary',
      `Broken connections per event (all causes; % of the ${churn.trace.topology.connections.toLocaleString('en-US')} concurrent connections), scenario \`churn\`, scale ${scale}, seed ${seed}:\n\n${md}`,
    );
  }
  sections.set('churn', formatResult(churn, 'markdown'));
  sections.set('costs', costTable(costs(churn), 'markdown'));

  // 6. Broken connections per event type (churn), log scale.
  {
    const svg = groupedLogBars({
      title: `Broken connections per event (${churn.trace.topology.connections.toLocaleString('en-US')} connections, ${churn.trace.topology.gateways} gateways, ${churn.trace.topology.backends} backends)`,
      categories: evs.map((e) => e.type),
      series: STRATEGIES.map((s) => ({
        name: short[s],
        values: evs.map((e) => {
          const c = e.strategies[s];
          return c.avoidable + c.unavoidable + c.drainExpired;
        }),
      })),
      yLabel: 'broken connections (log)',
    });
    writeFileSync(join(imgDir, 'sim-events.svg'), `${svg}\n`);
  }

  sections.set(
    'totals',
    totalsTable(churn, 'markdown') +
      `\n\nRun: \`node --import tsx scripts/evaluation.ts --scale ${scale} --seed ${seed}\` (or \`sluice sim churn --scale ${scale} --seed ${seed}\` for one scenario).`,
  );
}

if (want('rolling')) {
  // 2. Rolling updates with gateway churn during the rollout.
  const rolling = run('rolling-update');
  const ungatedTrace = findScenario('rolling-update-ungated')!.build(scale);
  log('rolling-update-ungated (sluice only) ...');
  const ungated = runSim(ungatedTrace, { seed, strategies: ['sluice'] });
  const u = ungated.totals.sluice;
  sections.set(
    'rolling',
    `${formatResult(rolling, 'markdown')}\n` +
      `Gating check: in this run no two live gateways ran sluice generations more than ` +
      `${rolling.sluiceMaxGenerationSpread} apart. Ablation \`rolling-update-ungated\` (the same run, sluice ` +
      `publishing each phase without waiting for acknowledgements): generation spread ` +
      `${ungated.sluiceMaxGenerationSpread}, ${u.avoidable.toLocaleString('en-US')} avoidable breaks ` +
      `(${ungated.events
        .filter((e) => e.type !== 'steady' && e.strategies.sluice.avoidable > 0)
        .map((e) => `${e.label}: ${e.strategies.sluice.avoidable}`)
        .join(', ')}).`,
  );
}

if (want('crash')) {
  // 3. Standby crash, hash-threshold vs modulo ECMP.
  const crashHt = run('gateway-crash-standby');
  const crashMod = run('gateway-crash-modulo');
  const crashKernel = run('gateway-crash-kernel');
  {
    const ev = (r: SimResult) => r.events[0];
    const text = [
      `Hash-threshold: ECMP moved ${pct(ev(crashHt).ecmpMoved!.measured, 1)} of flows (exact ${pct(ev(crashHt).ecmpMoved!.exact, 1)}).`,
      '',
      eventTable(crashHt, 0, 'markdown'),
      '',
      `Modulo-N: ECMP moved ${pct(ev(crashMod).ecmpMoved!.measured, 1)} of flows (exact ${pct(ev(crashMod).ecmpMoved!.exact, 1)}).`,
      '',
      eventTable(crashMod, 0, 'markdown'),
      '',
      `Hash-threshold, but every gateway seeds \`dp_hash\` differently (kernel datapath): ECMP moved ${pct(ev(crashKernel).ecmpMoved!.measured, 1)} of flows.`,
      '',
      eventTable(crashKernel, 0, 'markdown'),
    ].join('\n');
    sections.set('crash', text);
  }
}

if (want('ecmp')) {
  // 4. ECMP movement, exact, for the full topology's gateway count.
  {
    const G = TOPOLOGIES.full.gateways;
    const hops = Array.from({ length: G }, (_, i) => i);
    const cases: [string, number[]][] = [
      ['add a gateway (appended)', [...hops, G]],
      ['remove the last gateway', hops.slice(0, -1)],
      ['remove a middle gateway', hops.filter((g) => g !== G / 2)],
      ['remove the first gateway', hops.slice(1)],
    ];
    const modes: EcmpMode[] = ['hash-threshold', 'modulo'];
    const rows = cases.map(([name, after]) => [
      name,
      ...modes.map((m) => pct(ecmpMovedShare(m, hops, after), 1)),
    ]);
    const ideal = pct(1 / G, 1);
    sections.set(
      'ecmp',
      [
        `| change (${G} gateways) | hash-threshold | modulo-N |`,
        '| --- | ---: | ---: |',
        ...rows.map((r) => `| ${r.join(' | ')} |`),
        '',
        `A consistent (resilient) next-hop table would move ${ideal} (the flows of the gateway that left or joined).`,
      ].join('\n'),
    );
    const svg = groupedShareBars({
      title: `Flows ECMP sends to another gateway (${G} gateways)`,
      categories: cases.map(([n]) => n.replace(' gateway', '').replace(' (appended)', '')),
      series: modes.map((m) => ({
        name: m,
        values: cases.map(([, after]) => ecmpMovedShare(m, hops, after)),
      })),
      yLabel: 'share of flows moved',
    });
    writeFileSync(join(imgDir, 'sim-ecmp.svg'), `${svg}\n`);
  }
}

if (want('scale')) {
  // 5. Broken connections against scale (backend add and a standby gateway crash).
  {
    const xs = scale === 'full' ? [10_000, 100_000, 1_000_000] : [5_000, 20_000];
    const results = xs.map((n) => {
      const base = findScenario('backend-add')!.build(scale);
      const t = { ...base, topology: { ...base.topology, connections: n } };
      log(`backend-add at ${n} connections ...`);
      return runSim(t, { seed });
    });
    const rows = STRATEGIES.map((s) => [
      STRATEGY_TITLES[s],
      ...results.map((r) => {
        const c = r.events[0].strategies[s];
        const b = c.avoidable + c.unavoidable + c.drainExpired;
        return `${b.toLocaleString('en-US')} (${pct(b, r.trace.topology.connections)})`;
      }),
    ]);
    sections.set(
      'scale',
      [
        `| strategy | ${xs.map((x) => x.toLocaleString('en-US')).join(' | ')} |`,
        `| --- | ${xs.map(() => '---:').join(' | ')} |`,
        ...rows.map((r) => `| ${r.join(' | ')} |`),
      ].join('\n'),
    );
    const svg = logLogLines({
      title: 'Broken connections when one backend is added, against scale',
      x: xs,
      xLabel: 'concurrent connections',
      series: STRATEGIES.map((s) => ({
        name: short[s],
        values: results.map((r) => {
          const c = r.events[0].strategies[s];
          return c.avoidable + c.unavoidable + c.drainExpired;
        }),
      })),
      yLabel: 'broken connections',
    });
    writeFileSync(join(imgDir, 'sim-scale.svg'), `${svg}\n`);
  }
}

if (want('window')) {
  // 7. sluice's optional drain window against long-lived connections (small scale: long windows mean long runs).
  // Chain bound 1 (the design before chains) so that the window has something to drop; with the default bound and
  // no window, the same runs drop nothing (first row).
  {
    const windows: (number | undefined)[] = [undefined, 60, 300, 1800];
    const rows = windows.map((w) => {
      const base = findScenario('rapid-changes')!.build('small');
      const t = {
        ...base,
        timing: {
          ...base.timing,
          ...(w === undefined ? {} : { sluiceDrainWindowSeconds: w, sluiceChainLength: 1 }),
        },
        durationSeconds: 100 + (w ?? 300) + 120,
      };
      log(
        `rapid-changes, ${w === undefined ? 'defaults' : `chain bound 1, drain window ${w} s`} (small) ...`,
      );
      const r = runSim(t, { seed, strategies: ['slot_table', 'sluice'] });
      const s = r.totals.sluice;
      return [
        w === undefined ? 'none (defaults: L = 4)' : `${w} s, L = 1`,
        r.totals.slot_table.avoidable.toLocaleString('en-US'),
        s.drainExpired.toLocaleString('en-US'),
        s.avoidable.toLocaleString('en-US'),
        (r.sluiceChains?.chainFullSlotSteps ?? 0).toLocaleString('en-US'),
        s.secondChancePeak.toLocaleString('en-US'),
      ];
    });
    sections.set(
      'window',
      [
        '| drain window, chain bound | broken by a plain slot table (4) | sluice drain-expired | sluice avoidable | slot-steps waiting on a full chain | connections reached through a chain (peak) |',
        '| --- | ---: | ---: | ---: | ---: | ---: |',
        ...rows.map((r) => `| ${r.join(' | ')} |`),
      ].join('\n'),
    );
  }
}

if (want('chains')) {
  // 8. Chains: drain-expired, hops, host CHAIN flows and full-chain waits per chain bound (sluice only, small scale).
  const rows: string[][] = [];
  for (const name of ['churn', 'backend-add', 'rolling-update', 'rapid-changes']) {
    for (const L of [1, 2, 4]) {
      const base = findScenario(name)!.build('small');
      log(`${name}, chain bound ${L} (small, sluice) ...`);
      const r = runSim(
        { ...base, timing: { ...base.timing, sluiceChainLength: L } },
        { seed, strategies: ['sluice'] },
      );
      const s = r.totals.sluice;
      const c = r.sluiceChains!;
      const deep = c.hopShare.slice(2).reduce((t, x) => t + x, 0);
      rows.push([
        name,
        String(L),
        s.drainExpired.toLocaleString('en-US'),
        s.avoidable.toLocaleString('en-US'),
        String(c.maxChain),
        pct(c.hopShare[1] ?? 0, 1),
        pct(deep, 1),
        c.meanExtraHops.toFixed(4),
        c.peakHostFlows.toLocaleString('en-US'),
        `${c.chainFullSlotSteps.toLocaleString('en-US')} (peak ${c.chainFullPeak})`,
      ]);
    }
  }
  sections.set(
    'chains',
    [
      '| scenario | L | drain-expired | avoidable | longest chain | connection-time 1 hop | 2+ hops | extra hops per packet | peak CHAIN flows per host | slot-steps waiting on a full chain |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ].join('\n'),
  );
}

// Write the sections between their markers.
let doc = readFileSync(docPath, 'utf8');
for (const [id, body] of sections) {
  const begin = `<!-- BEGIN GENERATED: ${id} -->`;
  const end = `<!-- END GENERATED: ${id} -->`;
  const a = doc.indexOf(begin);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) {
    log(`marker ${id} missing in docs/evaluation.md; skipped`);
    continue;
  }
  doc = `${doc.slice(0, a + begin.length)}\n${body}\n${doc.slice(b)}`;
}
writeFileSync(docPath, doc);
log('docs/evaluation.md and docs/img/sim-*.svg written');
