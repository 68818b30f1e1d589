// examples/grafana/sluice-dashboard.json parses and every query names a metric the daemons really export (read from
// the registries of a planner and a host and a gateway agent that are constructed, never started: no store, no OVS).

import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { pino } from 'pino';
import { AgentDaemon } from '../../src/agent/daemon.ts';
import type { NodeFacts } from '../../src/compile/facts.ts';
import type { Runner } from '../../src/openflow/runner.ts';
import { PlannerDaemon } from '../../src/planner/daemon.ts';
import { labHost1Facts } from '../scenarios/fake-facts.ts';

const facts: NodeFacts = labHost1Facts();
const runner: Runner = {
  async ofctl() {
    return { code: 0, stdout: '', stderr: '' };
  },
  async appctl() {
    return { code: 0, stdout: '', stderr: '' };
  },
};

/** Every series name the daemons export: counters and gauges by name, histograms with their three suffixes. */
async function exported(): Promise<Set<string>> {
  const log = pino({ level: 'silent' });
  const daemons = [
    new PlannerDaemon({ remotes: ['unix:/nonexistent'], log }),
    new AgentDaemon({ role: 'host', node: 'host1', remotes: ['unix:/nonexistent'], runner, facts, log }),
  ];
  const names = new Set<string>();
  for (const d of daemons) {
    for (const m of await d.registry.getMetricsAsJSON()) {
      names.add(m.name);
      if (String(m.type) === 'histogram')
        for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
    }
    await d.stop();
  }
  return names;
}

interface Panel {
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

test('the Grafana dashboard parses and every query names a real metric', async () => {
  const dash = JSON.parse(readFileSync('examples/grafana/sluice-dashboard.json', 'utf8')) as {
    panels: Panel[];
  };
  const names = await exported();
  const panels = dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  assert.ok(panels.length >= 8, `${panels.length} panels`);
  const used = new Set<string>();
  for (const p of panels) {
    assert.ok((p.targets ?? []).length > 0, `${p.title}: no query`);
    for (const t of p.targets ?? []) {
      const metrics = t.expr.match(/\bsluice_[a-z_]+\b/g) ?? [];
      assert.ok(metrics.length > 0, `${p.title}: "${t.expr}" names no sluice metric`);
      for (const m of metrics) {
        assert.ok(names.has(m), `${p.title}: "${m}" is not a metric the daemons export`);
        used.add(m);
      }
    }
  }
  // The two the issue asks for.
  assert.ok(used.has('sluice_planner_ack_latency_seconds_bucket'));
  assert.ok(used.has('sluice_agent_second_chance_packets_total'));
  // The two hash audits: a gateway's verdict and the hosts' live slot audit.
  assert.ok(used.has('sluice_agent_hash_agrees'));
  assert.ok(used.has('sluice_agent_slot_audit_connections'));
});

test('negative control: a query naming a metric nobody exports is caught', async () => {
  const names = await exported();
  assert.equal(names.has('sluice_agent_second_chance_packets'), false, 'the old gauge name is gone');
  assert.equal(names.has('sluice_planner_ack_latency_seconds_bucket'), true);
});

test('Prometheus naming: counters end in _total, nothing else does; durations are _seconds', async () => {
  const log = pino({ level: 'silent' });
  for (const d of [
    new PlannerDaemon({ remotes: ['unix:/nonexistent'], log }),
    new AgentDaemon({ role: 'host', node: 'host1', remotes: ['unix:/nonexistent'], runner, facts, log }),
  ]) {
    for (const m of await d.registry.getMetricsAsJSON()) {
      assert.match(m.name, /^sluice_(agent|planner)_[a-z_]+$/);
      assert.equal(m.name.endsWith('_total'), String(m.type) === 'counter', `${m.name} (${m.type})`);
      if (/_(ms|millis|milliseconds)$/.test(m.name)) assert.fail(`${m.name}: use seconds`);
    }
    await d.stop();
  }
});
