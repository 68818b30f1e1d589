// The perf-lab sections of docs/benchmarks.md: the prose is bench/perf/lab-report.md (blocks with {{placeholders}});
// this file computes the tables and numbers from one run's LabReport and fills them in.

import { readFileSync } from 'node:fs';
import { machineLine, median, ratio } from './common.ts';
import {
  type FwdRun,
  holds,
  LABEL,
  type LabReport,
  type Mode,
  type ScResult,
  SETUP_RATES,
  SETUP_SECONDS,
  type StateRow,
  sustained,
} from './lab.ts';

const TEMPLATE = new URL('./lab-report.md', import.meta.url);

/** The template's blocks by name (`<!-- block: NAME -->` up to the next block). */
export function blocks(template: URL = TEMPLATE): Map<string, string> {
  const text = readFileSync(template, 'utf8');
  const out = new Map<string, string>();
  const parts = text.split(/^<!-- block: ([\w-]+) -->\n/m);
  for (let i = 1; i < parts.length; i += 2) out.set(parts[i]!, parts[i + 1]!.replace(/\n+$/, ''));
  return out;
}

/** Block `name` with every placeholder filled; a placeholder without a value (or a value without one) throws. */
export function fill(
  tpl: Map<string, string>,
  name: string,
  values: Record<string, string | number> = {},
): string {
  const text = tpl.get(name);
  if (text === undefined) throw new Error(`report template: no block ${name}`);
  const used = new Set<string>();
  const filled = text.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    if (!(k in values)) throw new Error(`report template block ${name}: no value for {{${k}}}`);
    used.add(k);
    return String(values[k]);
  });
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length)
    throw new Error(`report template block ${name}: no placeholder for ${unused.join(', ')}`);
  return filled;
}

export const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
export const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const loadRange = (xs: readonly number[]) =>
  xs.length
    ? `median ${median(xs).toFixed(1)}, ${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}`
    : 'n/a';
/** Median and min-max of ratios, e.g. "2.10x (1.90-2.30)". */
export const spreadOf = (xs: number[]) =>
  xs.length
    ? `${median(xs).toFixed(2)}x (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`
    : 'n/a';
export const mdTable = (head: string, align: string, rows: readonly string[]) =>
  [head, align, ...rows].join('\n');

/** The report as sections: `perf-lab` (topology) and one per part that ran (`perf-lab-state`, ...). */
export function renderLab(r: LabReport): Map<string, string> {
  const tpl = blocks();
  const machine = machineLine(r.machine, `npm run bench -- --only perf-lab --parts ${r.parts.join(',')}`);
  const out = new Map<string, string>();
  out.set(
    'perf-lab',
    [
      fill(tpl, 'topology'),
      r.errors.length ? fill(tpl, 'failed-parts', { errors: r.errors.join('; ') }) : '',
      fill(tpl, 'parts-note'),
    ]
      .filter((x) => x !== '')
      .join('\n'),
  );
  if (r.state.length) out.set('perf-lab-state', renderState(tpl, r.state, machine));
  if (r.fwd.length) out.set('perf-lab-fwd', renderFwd(tpl, r, machine));
  if (r.setup.length) out.set('perf-lab-setup', renderSetup(tpl, r, machine));
  if (r.sc.length) out.set('perf-lab-sc', renderSc(tpl, r.sc, machine));
  return out;
}

// ---- state ------------------------------------------------------------------------------------------------------

function renderState(tpl: Map<string, string>, state: readonly StateRow[], machine: string): string {
  const upcallsPerConn = (s: StateRow) => s.gwUpcalls / Math.max(1, s.opened);
  const table = mdTable(
    "| connections | mode | opened (failed) | gateway conntrack entries | gateway datapath flows | upcalls per new connection | gateway ovs-vswitchd RSS growth | hosts' conntrack entries | revalidator flow limit (dump ms) |",
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    state.map(
      (s) =>
        `| ${f0(s.conns)} | ${LABEL[s.mode]} | ${f0(s.opened)} (${s.failed}) | ${f0(s.gwCt)} | ${f0(s.gwDpFlows)} | ` +
        `${f2(upcallsPerConn(s))} | ${f0(s.gwRssGrowthKiB / 1024)} MiB | ${f0(s.hostCt)} | ` +
        `${f0(s.flowLimit ?? Number.NaN)} (${f0(s.dumpMs ?? Number.NaN)}) |`,
    ),
  );
  const parts = [fill(tpl, 'state', { machine, load: loadRange(state.map((s) => s.load1)), table })];
  const most = Math.max(...state.map((s) => s.conns));
  const fewest = Math.min(...state.map((s) => s.conns));
  const at = (m: Mode, n: number) => state.find((s) => s.mode === m && s.conns === n);
  const dp = at('dp_hash', most);
  const bl = at('baseline', most);
  const fl = at('fields', most);
  if (dp && bl && fl) {
    parts.push(
      fill(tpl, 'state-largest', {
        conns: f0(most),
        flowsBaselineVsDp: ratio(bl.gwDpFlows, dp.gwDpFlows),
        flowsFieldsVsDp: ratio(fl.gwDpFlows, dp.gwDpFlows),
        upcallsFields: f2(upcallsPerConn(fl)),
        upcallsDp: f2(upcallsPerConn(dp)),
        ctBaseline: f0(bl.gwCt),
        ctDp: f0(dp.gwCt),
        hostCtDp: f0(dp.hostCt),
      }),
    );
  }
  /** "a -> b" of one mode's figure from the fewest to the most connections. */
  const from = (m: Mode, f: (s: StateRow) => string) => {
    const a = at(m, fewest);
    const b = at(m, most);
    return a && b ? `${f(a)} -> ${f(b)}` : 'n/a';
  };
  parts.push(
    fill(tpl, 'state-reading', {
      fewest: f0(fewest),
      most: f0(most),
      baselineFlows: from('baseline', (s) => f0(s.gwDpFlows)),
      baselineCt: from('baseline', (s) => f0(s.gwCt)),
      baselineRss: from('baseline', (s) => `${f0(s.gwRssGrowthKiB / 1024)} MiB`),
      dpCt: from('dp_hash', (s) => f0(s.gwCt)),
      dpFlows: from('dp_hash', (s) => f0(s.gwDpFlows)),
      dpUpcalls: from('dp_hash', (s) => f2(upcallsPerConn(s))),
      fieldsFlowsPerConn: from('fields', (s) => f2(s.gwDpFlows / Math.max(1, s.opened))),
    }),
  );
  return parts.join('\n');
}

// ---- forwarding ---------------------------------------------------------------------------------------------------

const FWD_MODES: readonly Mode[] = ['bound', 'dp_hash', 'fields', 'baseline'];
const KINDS = ['new', 'est'] as const;
const kindLabel = (k: 'new' | 'est') => (k === 'new' ? 'new flows' : 'established');
/** Gateway CPU per client packet, µs, less the idle CPU measured before the mode. */
const costOf = (x: FwdRun) => ((x.gwCpuMs - x.gwIdleMsPerS * x.seconds) * 1000) / Math.max(1, x.sent);

function renderFwd(tpl: Map<string, string>, r: LabReport, machine: string): string {
  const cell = (m: Mode, k: 'new' | 'est') => r.fwd.filter((x) => x.mode === m && x.kind === k);
  /** a's cost / b's cost, per round (the modes of a round ran back to back). */
  const perRound = (k: 'new' | 'est', a: Mode, b: Mode) =>
    [...new Set(r.fwd.map((x) => x.round))].flatMap((round) => {
      const xa = r.fwd.find((x) => x.mode === a && x.kind === k && x.round === round);
      const xb = r.fwd.find((x) => x.mode === b && x.kind === k && x.round === round);
      return xa && xb ? [costOf(xa) / costOf(xb)] : [];
    });
  const med = (xs: FwdRun[], f: (x: FwdRun) => number) => median(xs.map(f));
  const rows: string[] = [];
  for (const k of KINDS)
    for (const m of FWD_MODES) {
      const xs = cell(m, k);
      if (!xs.length) continue;
      const us = med(xs, costOf);
      rows.push(
        `| ${kindLabel(k)} | ${LABEL[m]} | ${f0(med(xs, (x) => x.sent))} | ${f0(med(xs, (x) => x.replies))} | ` +
          `${f1(med(xs, (x) => (x.gwCpuMs * 1000) / Math.max(1, x.sent)))} | ${f1(us)} | ${f0(1e6 / us)} | ` +
          `${m === 'baseline' ? '1.00x' : spreadOf(perRound(k, 'baseline', m))} | ` +
          `${f2(med(xs, (x) => x.gwPackets / Math.max(1, x.sent)))} | ${f2(med(xs, (x) => x.gwUpcalls / Math.max(1, x.sent)))} | ` +
          `${m === 'bound' ? '–' : f1(med(xs, (x) => (x.hostCpuMs * 1000) / Math.max(1, x.sent)))} |`,
      );
    }
  const table = mdTable(
    '| traffic | mode | sent | replies received | gateway CPU µs/packet, raw | idle-corrected | gateway core-rate (pps) | vs baseline | gateway datapath packets per client packet | gateway upcalls per client packet | hosts CPU µs/packet |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    rows,
  );
  const parts = [
    fill(tpl, 'fwd', {
      pps: r.pps,
      seconds: r.seconds,
      machine,
      repeats: r.repeats,
      idleGw: f1(r.idle?.gw ?? Number.NaN),
      idleHosts: f1(r.idle?.hosts ?? Number.NaN),
      table,
    }),
  ];
  if (r.fwd.some((x) => x.mode === 'bound') && r.fwd.some((x) => x.mode === 'dp_hash'))
    parts.push(
      fill(tpl, 'fwd-bound', {
        baselineVsDp: spreadOf(perRound('est', 'baseline', 'dp_hash')),
        baselineVsBound: spreadOf(perRound('est', 'baseline', 'bound')),
        dpVsBound: spreadOf(perRound('est', 'dp_hash', 'bound')),
        fieldsVsBound: spreadOf(perRound('est', 'fields', 'bound')),
      }),
    );
  parts.push(
    fill(tpl, 'fwd-method', { load: loadRange(r.fwd.map((x) => x.load1)), lossTable: lossTable(cell) }),
  );
  const newRuns = r.fwd.filter((x) => x.kind === 'new' && x.mode !== 'bound');
  if (newRuns.length && newRuns[0]!.hops.clientVethRx !== undefined) {
    const m = (f: (x: FwdRun) => number) => f0(median(newRuns.map(f)));
    parts.push(
      fill(tpl, 'fwd-new-replies', {
        forwarded: m((x) => x.hops.routerForwarded - x.hops.clientOut),
        vethRx: m((x) => x.hops.clientVethRx),
        ipIn: m((x) => x.hops.clientIpInReceives),
        ipDelivered: m((x) => x.hops.clientIpInDelivers),
        ipDiscards: m((x) => x.hops.clientIpInDiscards),
        udpIn: m((x) => x.hops.clientIn),
        udpErrors: m((x) => x.hops.clientUdpInErrors),
        udpCsum: m((x) => x.hops.clientUdpCsumErrors),
        noPorts: m((x) => x.hops.clientNoPorts),
      }),
    );
  }
  return parts.join('\n');
}

/** Where datagrams were lost, per traffic kind and mode (medians over the rounds). */
function lossTable(cell: (m: Mode, k: 'new' | 'est') => FwdRun[]): string {
  const hop = (xs: FwdRun[], k: string) => median(xs.map((x) => x.hops[k] ?? Number.NaN));
  const med = (xs: FwdRun[], f: (x: FwdRun) => number) => f0(median(xs.map(f)));
  const rows: string[] = [];
  for (const k of KINDS)
    for (const m of FWD_MODES) {
      const xs = cell(m, k);
      if (!xs.length) continue;
      rows.push(
        `| ${kindLabel(k)} | ${LABEL[m]} | ${med(xs, (x) => x.sent)} | ${f0(hop(xs, 'backendIn'))} | ` +
          `${med(xs, (x) => x.replies)} | ${med(xs, (x) => x.hops.gwVethRx - x.hops.gwDatapathRx)} | ` +
          `${med(xs, (x) => x.hops.hostsVethRx - x.hops.hostsDatapathRx)} | ${f0(hop(xs, 'vethDropped'))} | ` +
          `${f0(hop(xs, 'backendRcvbufErrors'))} / ${f0(hop(xs, 'clientRcvbufErrors'))} | ${f0(hop(xs, 'clientNoPorts'))} | ` +
          `${med(xs, (x) => x.hops.routerForwarded - x.hops.clientOut - x.hops.clientIn)} | ` +
          `${f0(hop(xs, 'softnetDroppedMachine'))} |`,
      );
    }
  return mdTable(
    "| traffic | mode | sent | reached the backends | replies received | dropped by the gateway's AF_PACKET sockets | … by the hosts' | veth drops | socket buffer drops (backends / client) | replies after the client closed its socket | replies the router forwarded that the client did not receive | input-backlog drops, whole machine |",
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    rows,
  );
}

// ---- connection setup -----------------------------------------------------------------------------------------------

function renderSetup(tpl: Map<string, string>, r: LabReport, machine: string): string {
  const rounds = [...new Set(r.setup.map((x) => x.round))].sort((a, b) => a - b);
  const modes = (['dp_hash', 'fields', 'baseline'] as const).filter((m) => r.setup.some((x) => x.mode === m));
  const base = rounds.map((k) => sustained(r.setup, 'baseline', k));
  const cpuPerConn = (m: Mode) =>
    median(r.setup.filter((x) => x.mode === m && holds(x)).map((x) => x.gwCpuMs / Math.max(1, x.ok)));
  const rows = modes.map((m) => {
    const per = rounds.map((k) => sustained(r.setup, m, k));
    const ratios = per.map((x, i) => x / Math.max(1, base[i]!));
    const at400 = r.setup.filter((x) => x.mode === m && x.rate === 400);
    return (
      `| ${LABEL[m]} | ${per.map(f0).join(', ')} | ${f0(median(per))} | ` +
      `${m === 'baseline' ? '1.00x' : spreadOf(ratios)} | ${f2(cpuPerConn(m))} | ` +
      `${f1(median(at400.map((x) => x.p50)))} / ${f1(median(at400.map((x) => x.p99)))} |`
    );
  });
  const table = mdTable(
    '| mode | highest rate held, per round (conn/s) | median | vs baseline, median (min-max over rounds) | gateway CPU ms per connection, median | setup p50 / p99 at 400/s (ms, median) |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
    rows,
  );
  const steps = mdTable(
    `| mode | round | ${SETUP_RATES.map((x) => `${x}/s`).join(' | ')} |`,
    `| --- | ---: | ${SETUP_RATES.map(() => '---:').join(' | ')} |`,
    modes.flatMap((m) =>
      rounds.map(
        (k) =>
          `| ${LABEL[m]} | ${k + 1} | ${SETUP_RATES.map((rate) => {
            const x = r.setup.find((y) => y.mode === m && y.round === k && y.rate === rate);
            return x ? `${x.failed}/${x.started}${x.seconds > 1.2 * SETUP_SECONDS ? ' †' : ''}` : '';
          }).join(' | ')} |`,
      ),
    ),
  );
  const reasons: Record<string, number> = {};
  for (const x of r.setup) for (const [k, v] of Object.entries(x.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
  // CPU ms per connection x connections per second = ms of CPU per second, / 1000 = share of one core.
  const coreShare = modes
    .map((m) => {
      const rate = median(rounds.map((k) => sustained(r.setup, m, k)));
      return `${LABEL[m]} ${f2((cpuPerConn(m) * rate) / 1000)} at ${f0(rate)}/s`;
    })
    .join(', ');
  return fill(tpl, 'setup', {
    stepSeconds: SETUP_SECONDS,
    machine,
    rates: SETUP_RATES.join(', '),
    rounds: rounds.length,
    load: loadRange(r.setup.map((x) => x.load1)),
    table,
    lateSeconds: (1.2 * SETUP_SECONDS).toFixed(1),
    steps,
    gatewayCoreShare: coreShare,
    reasons: JSON.stringify(reasons),
  });
}

// ---- second chance ------------------------------------------------------------------------------------------------

function renderSc(tpl: Map<string, string>, sc: readonly ScResult[], machine: string): string {
  const q = (x: ScResult, backend: string, bucket: string) =>
    x.rows.find((y) => y.backend === backend && y.bucket === bucket);
  /** Moved / not moved RTT quantile in one bucket (before or after the change). */
  const rat = (x: ScResult, bucket: string, k: 'p50' | 'p99') => {
    const mv = q(x, 'host1-b1', bucket);
    const st = q(x, 'host2-b1', bucket);
    return mv && st ? mv[k] / st[k] : Number.NaN;
  };
  const rows = sc.map((x, i) => {
    const cellOf = (b: string) => {
      const u = q(x, b, 'before');
      const v = q(x, b, 'after');
      return u && v ? `${f2(u.p50)} / ${f2(u.p99)} -> ${f2(v.p50)} / ${f2(v.p99)} (n ${v.n})` : 'n/a';
    };
    return (
      `| ${i + 1} | ${cellOf('host1-b1')} | ${cellOf('host2-b1')} | ${f2(rat(x, 'after', 'p50'))}x | ` +
      `${f2(rat(x, 'after', 'p99'))}x | ${f2(rat(x, 'before', 'p50'))}x | ${f0(x.secondChancePackets)} | ${x.lost} |`
    );
  });
  const table = mdTable(
    '| round | moved (host1-b1): before p50 / p99 -> after p50 / p99 | not moved (host2-b1): before -> after | after: moved / not moved, p50 | p99 | before: moved / not moved, p50 | second-chance packets | echo errors |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    rows,
  );
  const after = sc.map((x) => rat(x, 'after', 'p50'));
  const before = sc.map((x) => rat(x, 'before', 'p50'));
  return fill(tpl, 'sc', {
    machine,
    connections: sc[0]!.connections,
    movedSlots: sc[0]!.movedSlots,
    rounds: sc.length,
    loads: sc.map((x) => x.load1.toFixed(1)).join(', '),
    table,
    afterP50: spreadOf(after),
    afterP99: spreadOf(sc.map((x) => rat(x, 'after', 'p99'))),
    beforeP50: spreadOf(before),
    verdict: overlapVerdict(after, before),
  });
}

/** Whether the after-change range of ratios overlaps the before-change one (the noise floor), in words. */
function overlapVerdict(after: readonly number[], before: readonly number[]): string {
  const a = after.filter(Number.isFinite);
  const b = before.filter(Number.isFinite);
  if (!a.length || !b.length) return 'could not be compared with the noise floor (no samples)';
  const overlaps = Math.min(...a) <= Math.max(...b) && Math.min(...b) <= Math.max(...a);
  return overlaps
    ? 'overlaps the before-change range: the extra hop is not distinguishable from noise here'
    : `lies ${Math.min(...a) > Math.max(...b) ? 'above' : 'below'} the before-change range: the hop's effect shows`;
}
