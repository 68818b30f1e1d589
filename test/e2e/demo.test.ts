// End-to-end: `sluice demo` (runDemo) on its own prefix (slt-demo-) with fewer connections (root, real OVS,
// namespaces, the lab's real control plane: a store ovsdb-server, 2 planners and 5 agents as processes). Every change
// of the demo goes through the store; this checks that no connection broke, that each change step published
// generations (the store and the planners' logs agree), that the two gateways really ran different generations
// during the skewed rollout, that every backend was up by its check first (web TCP, api HTTP, dns UDP), that the
// UDP flows to dns kept their backends, and that nothing of the prefix is left afterwards (namespaces, processes, run dir).

import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { DEFAULT_RUN_ROOT, labNamespacePattern } from '../../src/lab/config.ts';
import { type DemoResult, runDemo } from '../../src/lab/demo.ts';
import { labDown, listNamespaces } from '../../src/lab/topology.ts';

const PREFIX = 'slt-demo-';
const isRoot = process.getuid?.() === 0;

/** Pids of processes whose command line names this lab's run directory (agents, planners, OVS, backends). */
function processesOfPrefix(): number[] {
  const mark = `${DEFAULT_RUN_ROOT}/${PREFIX}`;
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').join(' ').includes(mark))
        out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

describe('sluice demo through the control plane', { skip: !isRoot && 'needs root', timeout: 900_000 }, () => {
  let r: DemoResult;
  const lines: string[] = [];

  after(async () => {
    await labDown(PREFIX).catch(() => {});
  });

  test('runs every step with 0 broken connections; each change is published through the store', async (t) => {
    const t0 = Date.now();
    r = await runDemo({ prefix: PREFIX, connections: 90, counters: false, print: (l) => lines.push(l) });
    t.diagnostic(`demo: ${r.opened} opened, ${r.broken} broken, ${r.failed} failed in ${Date.now() - t0} ms`);
    for (const s of r.steps)
      t.diagnostic(
        `${s.name}: g${s.generations.join(', g') || ' -'}, ${s.secondChance} second-chance packets, ${s.broken} broken`,
      );
    if (r.broken > 0 || process.env.SLUICE_E2E_LOG) process.stderr.write(`${lines.join('\n')}\n`);
    assert.equal(r.broken, 0, `broken: ${JSON.stringify(r.final.brokenByReason)}`);
    assert.equal(r.failed, 0, `failed: ${JSON.stringify(r.final.failedByReason)}`);
    assert.ok(r.opened >= 90 + 150 + 30, `opened ${r.opened}`);
    assert.deepEqual(
      r.steps.map((s) => s.broken),
      [0, 0, 0, 0, 0, 0, 0],
    );
    // Each step's own check (what must hold once it settled) held.
    assert.deepEqual(
      r.steps.filter((s) => s.problem !== undefined).map((s) => `${s.name}: ${s.problem}`),
      [],
    );
    // The four desired-state changes (add, drain, remove, weight) each published generations; the gateway events
    // (ECMP withdraw, ovs-vswitchd killed) changed nothing in the store.
    const [add, drain, remove, leave, kill, skew, storeDown] = r.steps;
    for (const s of [add!, drain!, remove!, skew!])
      assert.ok(s.generations.length > 0, `${s.name}: no generation`);
    assert.ok(add!.generations.length >= 2, 'the add rolled out in phases');
    assert.deepEqual([leave!.generations, kill!.generations], [[], []]);
    // The store down for 30 s: its own check held (both gateways stayed in ECMP past the lease, the 30 connections
    // opened meanwhile did open). A rollout still in progress from the step before may publish around it.
    assert.equal(storeDown!.problem, undefined, storeDown!.problem);
    assert.ok(lines.some((l) => /past the agents' 10 s lease: router ECMP set gw1, gw2$/.test(l)));
    // Before the steps, every backend was reported up by its load balancer's check (what `sluice status` shows):
    // dns by UDP probes, api by HTTP GETs on the health port, web by TCP connects.
    for (const [lb, check, n] of [
      ['dns', 'udp no-icmp', 3],
      ['api', 'http :8081/health 200', 3],
      ['web', 'tcp', 4],
    ] as const)
      assert.ok(
        lines.some((l) => l.includes(`health: ${lb} (${check}): ${n} of ${n} backends up`)),
        `${lb}: no "${check}" line with ${n} backends up`,
      );
    t.diagnostic(`udp flows to dns: ${JSON.stringify(r.udp)}`);
    assert.ok((r.udp?.opened ?? 0) >= 30, `udp flows opened: ${r.udp?.opened}`);
    // Every change of the demo leaves the UDP flows on their first backend (none answered by another one).
    assert.equal(r.udp?.brokenByReason['backend-changed'] ?? 0, 0, JSON.stringify(r.udp?.brokenByReason));
    // What the store showed is what the planners logged they published.
    assert.deepEqual(r.plannerPublished, r.generations);
    assert.deepEqual(
      r.generations,
      r.generations.map((_, i) => i + 1),
      'generations 1, 2, 3, ... with no gap',
    );
    // Every change was an edit of the desired state, as the CLI makes it.
    for (const cli of ['backend add web', 'backend drain web', 'backend del web', 'apply -f'])
      assert.ok(
        lines.some((l) => l.includes(`$ sluice ${cli}`)),
        `no "${cli}" edit in the narration`,
      );
    // The skewed rollout: the store showed the two gateways on different generations.
    const skewed = lines
      .map((l) => /store: gw1 on g(\d+), gw2 on g(\d+)/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [Number(m[1]), Number(m[2])]);
    assert.ok(skewed.length >= 1, 'no skew seen in the store');
    for (const [g1, g2] of skewed) assert.equal(g2, g1! + 1, `gw1 on g${g1}, gw2 on g${g2}`);
    // The gateway whose ovs-vswitchd was killed: its agent reported it and re-applied every flow.
    assert.ok(lines.some((l) => /store: gw2 reports "ovs-vswitchd is not running"/.test(l)));
    const restored = lines
      .slice(lines.findIndex((l) => l.includes('gw2 reports "ovs-vswitchd is not running"')))
      .map((l) => /gw2 agent: applied g\d+ \(br-int (\d+) lines/.exec(l))
      .find((m) => m !== null);
    assert.ok(Number(restored?.[1] ?? 0) > 100, `gw2 re-installed every flow: ${restored?.[0]}`);
  });

  test('the lab and its control plane are gone afterwards', async () => {
    assert.ok(r !== undefined, 'the demo did not run');
    const pattern = labNamespacePattern(PREFIX);
    assert.deepEqual(
      (await listNamespaces()).filter((n) => pattern.test(n)),
      [],
    );
    assert.deepEqual(processesOfPrefix(), []);
    assert.equal(existsSync(`${DEFAULT_RUN_ROOT}/${PREFIX}`), false);
  });
});
