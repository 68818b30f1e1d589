// The perf-lab report (bench/perf/lab-report.ts + its Markdown template lab-report.md) renders every section from a
// synthetic run: every placeholder of the template is filled and every value has a placeholder (fill throws
// otherwise), and the sentences that read numbers carry this run's numbers; the same for the chains section
// (bench/chains.ts + chains-report.md). Pure: no lab.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Round as ChainsRound, render as renderChains } from '../../bench/chains.ts';
import type { FwdRun, LabReport, Mode, ScResult, SetupRow, StateRow } from '../../bench/perf/lab.ts';
import { renderLab } from '../../bench/perf/lab-report.ts';

function report(): LabReport {
  const machine = {
    cpu: 'AMD EPYC',
    cores: 2,
    loadStart: [1, 2, 3],
    loadEnd: [1, 2, 3],
    ovs: 'ovs 3.1.0',
    kernel: 'k',
    node: 'v20',
    date: '2026-12-05',
  };
  const modes: Mode[] = ['dp_hash', 'fields', 'baseline'];
  const state: StateRow[] = [];
  for (const conns of [1000, 10000])
    for (const mode of modes)
      state.push({
        mode,
        conns,
        holders: 1,
        opened: conns,
        failed: 0,
        reasons: {},
        openSeconds: 3,
        gwCt: mode === 'baseline' ? conns : 2,
        gwDpFlows: mode === 'fields' ? conns : 40 + conns / 1000,
        gwUpcalls: mode === 'fields' ? conns : 200,
        gwRssGrowthKiB: conns,
        hostCt: conns,
        flowLimit: 200000,
        dumpMs: 5,
        load1: 2.5,
      });
  const hops = {
    backendIn: 100,
    gwVethRx: 120,
    gwDatapathRx: 118,
    hostsVethRx: 100,
    hostsDatapathRx: 99,
    vethDropped: 0,
    backendRcvbufErrors: 0,
    clientRcvbufErrors: 0,
    clientNoPorts: 1,
    routerForwarded: 110,
    clientOut: 10,
    clientIn: 95,
    softnetDroppedMachine: 0,
    clientVethRx: 96,
    clientIpInReceives: 96,
    clientIpInDelivers: 95,
    clientIpInDiscards: 0,
    clientUdpInErrors: 0,
    clientUdpCsumErrors: 0,
  };
  const fwd: FwdRun[] = [];
  for (const round of [0, 1])
    for (const kind of ['new', 'est'] as const)
      for (const mode of ['bound', 'dp_hash', 'fields', 'baseline'] as const)
        fwd.push({
          mode,
          kind,
          sent: 12000,
          replies: mode === 'bound' ? 0 : 11900,
          seconds: 4,
          gwCpuMs: 400 + round * 10 + (mode === 'baseline' ? 300 : 0),
          hostCpuMs: 300,
          gwPackets: 12000,
          gwUpcalls: kind === 'new' ? 100 : 1,
          gwIdleMsPerS: 5,
          hops,
          round,
          load1: 3,
        });
  const setup: SetupRow[] = [];
  for (const round of [0, 1])
    for (const mode of modes)
      for (const rate of [100, 200, 400, 700, 1000, 1400, 2000])
        setup.push({
          mode,
          round,
          rate,
          started: rate * 3,
          ok: rate * 3 - (rate > 700 ? 100 : 0),
          failed: rate > 700 ? 100 : 0,
          seconds: rate > 1400 ? 4 : 3,
          p50: 2,
          p99: 9,
          gwCpuMs: rate * 3 * 0.2,
          reasons: rate > 700 ? { timeout: 100 } : {},
          load1: 4,
        });
  const sc: ScResult[] = [0, 1].map((i) => ({
    connections: 200,
    lost: 0,
    rows: [
      { backend: 'host1-b1', bucket: 'before', n: 100, p50: 1.0, p99: 3 },
      { backend: 'host1-b1', bucket: 'after', n: 100, p50: 1.3 + i * 0.1, p99: 4 },
      { backend: 'host2-b1', bucket: 'before', n: 100, p50: 1.0, p99: 3 },
      { backend: 'host2-b1', bucket: 'after', n: 100, p50: 1.0, p99: 3 },
    ],
    secondChancePackets: 5000,
    movedSlots: '128 of 256 slots',
    load1: 2,
  }));
  return {
    machine,
    parts: ['state', 'fwd', 'setup', 'sc'],
    pps: 3000,
    seconds: 4,
    repeats: 2,
    idle: { gw: 5, hosts: 7 },
    state,
    fwd,
    setup,
    sc,
    errors: ['x: failed'],
  };
}

test('renderLab fills every block of lab-report.md from a run', () => {
  const out = renderLab(report());
  assert.deepEqual(
    [...out.keys()],
    ['perf-lab', 'perf-lab-state', 'perf-lab-fwd', 'perf-lab-setup', 'perf-lab-sc'],
  );
  const all = [...out.values()].join('\n');
  assert.doesNotMatch(all, /\{\{|\}\}/, 'a placeholder was left');
  assert.match(out.get('perf-lab')!, /Parts that failed in this run: x: failed\./);
  // The reading of the state part is this run's figures, from the fewest to the most connections.
  assert.match(out.get('perf-lab-state')!, /its conntrack entries 1,000 -> 10,000/);
  // The second-chance verdict follows the numbers: after-change ratios 1.3-1.4 lie above the 1.0 noise floor.
  assert.match(out.get('perf-lab-sc')!, /lies above the before-change range/);
});

test('renderLab: a part that did not run has no section', () => {
  const r = { ...report(), parts: ['sc'], state: [], fwd: [], setup: [], errors: [] };
  assert.deepEqual([...renderLab(r).keys()], ['perf-lab', 'perf-lab-sc']);
});

test('the chains section (bench/chains.ts + chains-report.md) renders from a synthetic run', () => {
  const m = report().machine;
  const rtt = (p50: number) => ({ n: 80, p50, p99: 2 * p50, elsewhere: 0, lost: 0 });
  const round: ChainsRound = {
    rtt: [rtt(10), rtt(10.2), rtt(11), rtt(12), rtt(13)],
    flows: [
      [0, 0, 0, 0],
      [16, 0, 0, 16],
      [32, 16, 0, 32],
      [48, 32, 16, 48],
    ],
    lanesOk: 16,
    slots: 16,
    hopPackets: 1234,
    load1: 3.5,
  };
  const md = renderChains([round, { ...round, rtt: [rtt(10), rtt(9.9), rtt(10.5), rtt(12), rtt(14)] }], m);
  assert.match(md, /^## Latency through chains/);
  assert.match(md, /\| 3 hops \| 1\.35x \(1\.30-1\.40\) \|/);
  assert.match(md, /16 of 16 in that order/);
  assert.match(
    md,
    /\| 3 \| host4-b1 \(lane 3\), previous owners host1-b1, host2-b1, host3-b1 \| 48 \| 32 \| 16 \| 48 \| 144 \| 9\.00 \|/,
  );
  assert.doesNotMatch(md, /\{\{|n\/a/);
});
