// Renders simulator results: plain-text tables for the terminal, Markdown tables for docs, JSON. Pure.

import { type CostRow, costModel } from './costs.ts';
import { type SimResult, STRATEGIES, STRATEGY_TITLES, type StrategyId } from './engine.ts';

export type Format = 'text' | 'markdown';

function table(head: string[], rows: string[][], format: Format): string {
  if (format === 'markdown') {
    const line = (r: string[]) => `| ${r.join(' | ')} |`;
    return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
  }
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function pct(n: number, of: number): string {
  if (of === 0) return '0%';
  const p = (100 * n) / of;
  if (p === 0) return '0%';
  if (p < 0.01) return '<0.01%';
  return `${p < 10 ? p.toFixed(2) : p.toFixed(1)}%`;
}

function num(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function bytes(n: number): string {
  if (n === 0) return '0';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 ? n.toFixed(1) : n.toFixed(0)} ${u[i]}`;
}

/** Broken connections per strategy for one event (avoidable + unavoidable + drain-expired). */
export function eventTable(r: SimResult, index: number, format: Format): string {
  const e = r.events[index];
  const rows = STRATEGIES.map((s) => {
    const c = e.strategies[s];
    const broken = c.avoidable + c.unavoidable + c.drainExpired;
    return [
      STRATEGY_TITLES[s],
      num(broken),
      pct(broken, e.concurrent),
      num(c.unavoidable),
      num(c.avoidable),
      num(c.drainExpired),
      num(c.failedSetups),
      s === 'sluice' ? num(c.secondChancePeak) : '-',
    ];
  });
  return table(
    [
      'strategy',
      'broken',
      '% of conns',
      'unavoidable',
      'avoidable',
      'drain-expired',
      'failed setups',
      '2nd-chance peak',
    ],
    rows,
    format,
  );
}

export function totalsTable(r: SimResult, format: Format): string {
  const n = r.trace.topology.connections;
  const rows = STRATEGIES.map((s) => {
    const t = r.totals[s];
    return [
      STRATEGY_TITLES[s],
      num(t.broken),
      pct(t.broken, n),
      num(t.unavoidable),
      num(t.avoidable),
      num(t.drainExpired),
      num(t.failedSetups),
      s === 'stateless_nat' ? `${num(t.wrongVip)} (${pct(t.wrongVip, r.arrivals + n)})` : '0',
      s === 'sluice' ? pct(t.extraHopShare, 1) : '0%',
    ];
  });
  return table(
    [
      'strategy',
      'broken',
      '% of concurrent',
      'unavoidable',
      'avoidable',
      'drain-expired',
      'failed setups',
      'wrong-VIP replies',
      'extra-hop packets',
    ],
    rows,
    format,
  );
}

export function meanPoolSize(r: SimResult): number {
  const t = r.trace.topology;
  return (t.backends * (1 + (t.vips > 1 ? t.sharedFraction : 0))) / t.vips;
}

export function costs(r: SimResult): CostRow[] {
  return costModel(r.trace, r.arrivalsPerSecond, meanPoolSize(r));
}

export function costTable(rows: readonly CostRow[], format: Format): string {
  return table(
    [
      'strategy',
      'entries / gateway',
      'state / gateway',
      'host conntrack (all hosts)',
      'dp flows / gateway',
      'upcalls / new conn',
      'sync msgs/s',
    ],
    rows.map((c) => [
      STRATEGY_TITLES[c.strategy],
      num(c.gatewayEntries),
      bytes(c.gatewayStateBytes),
      num(c.hostEntries),
      num(c.datapathFlowsPerGateway),
      c.upcallsPerNewConnection.toFixed(2),
      num(c.syncMessagesPerSecond),
    ]),
    format,
  );
}

/** The whole report of one run. */
export function formatResult(r: SimResult, format: Format = 'text'): string {
  const t = r.trace.topology;
  const h = format === 'markdown' ? '#### ' : '== ';
  const out: string[] = [];
  out.push(
    `${h}${r.trace.name}: ${r.trace.description}`,
    '',
    `${num(t.connections)} concurrent connections, ${t.gateways} gateways, ${t.backends} backends in ${t.vips} VIPs ` +
      `(${Math.round(t.sharedFraction * 100)}% also in a second VIP), ${2 ** t.slotBits} slots per VIP, ` +
      `ECMP ${r.trace.ecmp}; ${num(r.arrivalsPerSecond)} new connections/s (mean lifetime ${r.meanLifetime.toFixed(1)} s); ` +
      `seed ${r.seed}; ${(r.runtimeMs / 1000).toFixed(1)} s.`,
    '',
  );
  for (const e of r.events) {
    if (e.type === 'steady') continue;
    const moved =
      e.ecmpMoved === undefined
        ? ''
        : ` (ECMP moved ${pct(e.ecmpMoved.measured, 1)} of flows; exact ${pct(e.ecmpMoved.exact, 1)})`;
    out.push(`${h}t=${e.at}s ${e.label}${moved}`, '', eventTable(r, e.index, format), '');
  }
  out.push(
    `${h}whole run`,
    '',
    totalsTable(r, format),
    '',
    `${h}cost model`,
    '',
    costTable(costs(r), format),
    '',
  );
  return out.join('\n');
}

/** JSON for machines: the result without the trace's repeated topology noise, plus the cost rows. */
export function resultJson(r: SimResult): unknown {
  return {
    scenario: r.trace.name,
    description: r.trace.description,
    seed: r.seed,
    topology: r.trace.topology,
    ecmp: r.trace.ecmp,
    timing: r.trace.timing,
    durationSeconds: r.trace.durationSeconds,
    arrivals: r.arrivals,
    arrivalsPerSecond: r.arrivalsPerSecond,
    meanLifetimeSeconds: r.meanLifetime,
    sluiceGenerations: r.sluiceGenerations,
    sluiceMaxGenerationSpread: r.sluiceMaxGenerationSpread,
    runtimeMs: Math.round(r.runtimeMs),
    events: r.events,
    totals: r.totals,
    costs: costs(r),
  };
}

export type { StrategyId };
