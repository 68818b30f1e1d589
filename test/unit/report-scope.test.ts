// reportScope (src/agent/report-scope.ts): which load balancers a host's connection report looks at. Configs are
// built by hand (no store, no agent).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { keepUnchangedFacts } from '../../src/agent/facts.ts';
import { FULL_REPORT_MS, goneReportRows, reportScope } from '../../src/agent/report-scope.ts';
import { parseConfig } from '../../src/model/schema.ts';
import { labHost1Facts } from '../scenarios/fake-facts.ts';

const config = parseConfig({
  nodes: [
    { name: 'gw1', role: 'gateway', tunnelIp: '192.0.2.1' },
    { name: 'host1', role: 'host', tunnelIp: '192.0.2.11' },
  ],
  loadBalancers: Array.from({ length: 5 }, (_, i) => ({
    name: `v${i}`,
    vip: `198.18.0.${i + 1}`,
    protocol: 'tcp',
    ports: [80],
    backends: [{ address: '10.0.1.11', port: 80, host: 'host1' }],
  })),
});
const vms = {};
const names = (lbs: readonly { name: string }[]) => lbs.map((lb) => lb.name);

test('first report, then only the load balancers with connections now or in the last report', () => {
  const first = reportScope(undefined, 1000, { config, health: 0, vms, active: new Set(['v1']) });
  assert.equal(first.full, true);
  assert.deepEqual(names(first.lbs), ['v0', 'v1', 'v2', 'v3', 'v4']);
  // v1's connections ended (its row must go back to none), v3's started (its row must say so): both are looked at.
  const next = reportScope(first.scope, 1500, { config, health: 0, vms, active: new Set(['v3']) });
  assert.equal(next.full, false);
  assert.deepEqual(names(next.lbs), ['v1', 'v3']);
  const quiet = reportScope(next.scope, 2000, { config, health: 0, vms, active: new Set() });
  assert.deepEqual(names(quiet.lbs), ['v3']);
  const idle = reportScope(quiet.scope, 2500, { config, health: 0, vms, active: new Set() });
  assert.deepEqual(names(idle.lbs), []);
});

test('anything else the rows depend on moved: every load balancer (negative controls)', () => {
  const { scope } = reportScope(undefined, 1000, { config, health: 0, vms, active: new Set() });
  const lbs = config.loadBalancers;
  const edited = (i: number, lb: Partial<(typeof lbs)[number]>) =>
    ({ ...config, loadBalancers: lbs.map((x, j) => (j === i ? { ...x, ...lb } : x)) }) as typeof config;
  const b = lbs[2]!.backends[0]!;
  for (const [what, input] of [
    ['another slotBits', { config: { ...config, slotBits: 9 }, health: 0, vms, active: new Set<string>() }],
    [
      'a load balancer gone',
      { config: { ...config, loadBalancers: lbs.slice(1) }, health: 0, vms, active: new Set<string>() },
    ],
    ['a backend gone', { config: edited(2, { backends: [] }), health: 0, vms, active: new Set<string>() }],
    [
      'a backend moved to another host',
      {
        config: edited(2, { backends: [{ ...b, host: 'host2' }] }),
        health: 0,
        vms,
        active: new Set<string>(),
      },
    ],
    ['a health result changed', { config, health: 1, vms, active: new Set<string>() }],
    ['the VMs changed', { config, health: 0, vms: {}, active: new Set<string>() }],
  ] as const) {
    const r = reportScope(scope, 1500, input);
    assert.equal(r.full, true, what);
    assert.deepEqual(names(r.lbs), names(input.config.loadBalancers), what);
  }
  const late = reportScope(scope, 1000 + FULL_REPORT_MS, { config, health: 0, vms, active: new Set() });
  assert.equal(late.full, true, 'FULL_REPORT_MS after the last full report');
  assert.equal(late.scope.fullAt, 1000 + FULL_REPORT_MS);
  const soon = reportScope(scope, 1000 + FULL_REPORT_MS - 1, { config, health: 0, vms, active: new Set() });
  assert.equal(soon.full, false);
  assert.equal(soon.scope.fullAt, 1000);
});

test('a new config: the load balancers it changed (not the same objects) and those with connections', () => {
  const { scope } = reportScope(undefined, 1000, { config, health: 0, vms, active: new Set(['v0']) });
  const lbs = config.loadBalancers;
  const same = { ...config };
  const r0 = reportScope(scope, 1500, { config: same, health: 0, vms, active: new Set() });
  assert.equal(r0.full, false, 'the same load balancers in a new config object');
  assert.deepEqual(names(r0.lbs), ['v0']);
  // v3 gained a backend, v1 changed its port: both looked at, with v0 (connections in the last report).
  const more = {
    ...lbs[3]!,
    backends: [...lbs[3]!.backends, { ...lbs[3]!.backends[0]!, address: '10.0.1.12' }],
  };
  const port = { ...lbs[1]!, ports: [81] };
  const next = { ...config, loadBalancers: lbs.map((lb, i) => (i === 3 ? more : i === 1 ? port : lb)) };
  const r1 = reportScope(r0.scope, 2000, {
    config: next as typeof config,
    health: 0,
    vms,
    active: new Set(),
  });
  assert.equal(r1.full, false);
  assert.deepEqual(names(r1.lbs), ['v1', 'v3']);
});

test('load balancers added (the others the same objects): only the new ones, not a full report', () => {
  const { scope } = reportScope(undefined, 1000, { config, health: 0, vms, active: new Set() });
  const lbs = config.loadBalancers;
  const added = (name: string) => ({ ...lbs[0]!, name, vip: `198.18.1.${name.length}` });
  // Sorted by name as a parsed config is: v00 and v10 fall between the old ones, v9 after them.
  const more = [lbs[0]!, added('v00'), ...lbs.slice(1), added('v10'), added('v9')].sort((a, b) =>
    a.name < b.name ? -1 : 1,
  );
  const r = reportScope(scope, 1500, {
    config: { ...config, loadBalancers: more } as typeof config,
    health: 0,
    vms,
    active: new Set(),
  });
  assert.equal(r.full, false);
  assert.deepEqual(names(r.lbs), ['v00', 'v10', 'v9']);
  // Negative control: a load balancer gone (v2) makes the report full (only a full report removes its rows).
  const swap = [...more.filter((lb) => lb.name !== 'v2')];
  const r2 = reportScope(r.scope, 2000, {
    config: { ...config, loadBalancers: swap } as typeof config,
    health: 0,
    vms,
    active: new Set(),
  });
  assert.equal(r2.full, true);
});

test('facts read again unchanged keep their objects, so the next report is not full; a changed port makes it full', () => {
  // Each read of the node's OVS gives fresh objects (labHost1Facts: a new object per call).
  const read = (ofport: number) => labHost1Facts({ '10.0.1.11': { ofport, mac: '02:00:0a:00:01:0b' } });
  const f0 = read(21);
  const first = reportScope(undefined, 1000, { config, health: 0, vms: f0.vms, active: new Set() });
  const f1 = keepUnchangedFacts(f0, read(21));
  assert.equal(f1, f0);
  assert.equal(
    reportScope(first.scope, 1500, { config, health: 0, vms: f1.vms, active: new Set() }).full,
    false,
  );
  // Negative control: the fresh read itself (what the agent kept before) makes every report a full one.
  assert.equal(
    reportScope(first.scope, 1500, { config, health: 0, vms: read(21).vms, active: new Set() }).full,
    true,
  );
  // A backend port that changed is a change: a full report (its health may now be `gone` or back).
  const f2 = keepUnchangedFacts(f1, read(22));
  assert.notEqual(f2.vms, f0.vms);
  assert.equal(
    reportScope(first.scope, 1500, { config, health: 0, vms: f2.vms, active: new Set() }).full,
    true,
  );
  // Other facts changed, the backends not: a new facts object with the same vms object.
  const f3 = keepUnchangedFacts(f1, { ...read(21), synRate: 5 });
  assert.notEqual(f3, f1);
  assert.equal(f3.vms, f1.vms);
});

test('goneReportRows: rows of load balancers and local backends no longer in the config, when not all were found', () => {
  const slotRows = new Map(['v0', 'v4', 'old'].map((lb) => [lb, { lb }]));
  const statusRows = new Map(
    ['v0 10.0.1.11:80', 'v4 10.0.1.11:80', 'v4 10.0.1.99:80', 'old 10.0.1.11:80'].map((k) => [k, { k }]),
  );
  // The report met v0 and v4 (2 of 3 slot rows) and their one local backend each (2 of 4 status rows).
  const gone = goneReportRows(config, 'host1', slotRows, statusRows, { slots: 2, status: 2 });
  assert.deepEqual(gone.slots, [{ lb: 'old' }]);
  assert.deepEqual(gone.status, [{ k: 'v4 10.0.1.99:80' }, { k: 'old 10.0.1.11:80' }]);
  // Another host's view of the same rows: none of these backends is on host2, so every status row is gone.
  assert.equal(
    goneReportRows(config, 'host2', slotRows, statusRows, { slots: 2, status: 0 }).status.length,
    4,
  );
  // Every stored row found: nothing is gone, nothing is looked up.
  const all = goneReportRows(config, 'host1', slotRows, statusRows, { slots: 3, status: 4 });
  assert.deepEqual(all, { slots: [], status: [] });
});
