// Golden tests of the OpenFlow compiler (one reviewable text per scenario): each test/scenarios/*.yaml holds a config and a list of
// generation steps; the expected canonical flow text of every node at every step, and the bundle that takes a node
// from one step to the next, live in test/scenarios/<name>.golden. `UPDATE_GOLDEN=1` rewrites the golden files.
//
// Node facts (OpenFlow port numbers, MACs) are FAKE here, made up deterministically by test/scenarios/fake-facts.ts (the
// same port numbers the lab requests); the real-OVS test (test/e2e/dataplane.test.ts) uses real ones.

import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { compileNode } from '../../src/compile/index.ts';
import { T } from '../../src/compile/registry.ts';
import { bundleLines, diffBridge } from '../../src/flowset/diff.ts';
import { parseFlowSet, renderFlowSet } from '../../src/flowset/text.ts';
import type { FlowSet } from '../../src/flowset/types.ts';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import type { Config, LoadBalancer } from '../../src/model/types.ts';
import type { Generation, PlanMember, PoolPlan } from '../../src/rollout/types.ts';
import { fakeFacts } from '../scenarios/fake-facts.ts';

const DIR = path.join(import.meta.dirname, '..', 'scenarios');
const UPDATE = process.env.UPDATE_GOLDEN === '1';

interface RawPool {
  bits: number;
  members: { key?: string; address: string; port?: number | null; host: string }[];
  primary: string;
  second?: string;
}
interface RawStep {
  name: string;
  /** Full pools (replace the previous step's). */
  pools?: Record<string, RawPool>;
  /** Slot edits on the previous step: lb -> ["slot:primary/second", ...] ('-' = NO_OWNER). */
  set?: Record<string, string[]>;
  /** Replaces the config's load balancers from this step on (e.g. an LB added). */
  loadBalancers?: unknown[];
  hashMode?: 'dp_hash' | 'fields';
}
interface RawScenario {
  description: string;
  config: Record<string, unknown> & { loadBalancers: unknown[] };
  steps: RawStep[];
}

function slotsOf(s: string, size: number): Uint16Array {
  const parts = s.trim().split(/\s+/);
  assert.equal(parts.length, size, `slot list has ${parts.length} entries, want ${size}`);
  return Uint16Array.from(parts.map((p) => (p === '-' ? NO_OWNER : Number(p))));
}

function toConfig(raw: Record<string, unknown>, lbsRaw: unknown[]): Config {
  const lbs = (lbsRaw as Record<string, unknown>[]).map((l) => ({
    ...l,
    backends: (l.backends as Record<string, unknown>[]).map((b) => ({
      weight: 1,
      state: 'active',
      ...b,
      port: b.port ?? undefined,
    })),
  })) as unknown as LoadBalancer[];
  return { drainWindowSeconds: 30, ...raw, loadBalancers: lbs } as unknown as Config;
}

function toPool(lb: string, raw: RawPool): PoolPlan {
  const size = 2 ** raw.bits;
  const members: PlanMember[] = raw.members.map((m) => ({
    key: m.key ?? `${m.address}:${m.port ?? '*'}`,
    address: m.address,
    port: m.port ?? undefined,
    host: m.host,
  }));
  return {
    lb,
    bits: raw.bits,
    members,
    primary: slotsOf(raw.primary, size),
    second: raw.second ? slotsOf(raw.second, size) : new Uint16Array(size).fill(NO_OWNER),
    // The compiler reads neither phase nor since.
    phase: new Uint8Array(size),
    since: new Float64Array(size),
  };
}

interface StepResult {
  name: string;
  config: Config;
  gen: Generation;
  sets: Map<string, FlowSet>;
}

function runScenario(raw: RawScenario): StepResult[] {
  const out: StepResult[] = [];
  let pools = new Map<string, PoolPlan>();
  let lbsRaw = raw.config.loadBalancers;
  let hashMode = raw.config.hashMode;
  raw.steps.forEach((step, i) => {
    if (step.loadBalancers) lbsRaw = step.loadBalancers;
    if (step.hashMode) hashMode = step.hashMode;
    if (step.pools) pools = new Map(Object.entries(step.pools).map(([lb, p]) => [lb, toPool(lb, p)]));
    if (step.set) {
      pools = new Map(pools);
      for (const [lb, edits] of Object.entries(step.set)) {
        const p = pools.get(lb)!;
        const primary = p.primary.slice();
        const second = p.second.slice();
        for (const e of edits) {
          const m = /^(\d+):(-|\d+)\/(-|\d+)$/.exec(e);
          if (!m) throw new Error(`bad slot edit ${e}`);
          primary[Number(m[1])] = m[2] === '-' ? NO_OWNER : Number(m[2]);
          second[Number(m[1])] = m[3] === '-' ? NO_OWNER : Number(m[3]);
        }
        pools.set(lb, { ...p, primary, second });
      }
    }
    const config = toConfig({ ...raw.config, hashMode }, lbsRaw);
    const gen: Generation = { number: i + 1, createdAt: 0, pools };
    const sets = new Map(
      config.nodes.map((n) => [n.name, compileNode(config, gen, fakeFacts(config, n.name))]),
    );
    out.push({ name: step.name, config, gen, sets });
  });
  return out;
}

function bundleBetween(a: FlowSet, b: FlowSet): string[] {
  const lines: string[] = [];
  for (const [br, want] of b.bridges) {
    const have = a.bridges.get(br) ?? { flows: [], groups: [], tlvMap: [] };
    for (const l of bundleLines(diffBridge(want, have))) lines.push(`${br}: ${l}`);
  }
  return lines;
}

function render(results: StepResult[]): string {
  const parts: string[] = [];
  results.forEach((r, i) => {
    for (const [node, fs] of [...r.sets].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (i === 0) {
        parts.push(`=== step ${r.name}: ${node} (complete state)\n${renderFlowSet(fs)}`);
      } else {
        const lines = bundleBetween(results[i - 1].sets.get(node)!, fs);
        parts.push(
          `=== step ${r.name}: ${node} bundle (${lines.length} lines)\n${lines.map((l) => `${l}\n`).join('')}`,
        );
      }
    }
  });
  return parts.join('');
}

/** Slots whose gateway-visible content (primary, second) changed, per LB, between two generations. */
function changedSlots(a: Generation, b: Generation): number {
  let n = 0;
  for (const [lb, pb] of b.pools) {
    const pa = a.pools.get(lb);
    if (!pa) return Number.NaN;
    for (let s = 0; s < pb.primary.length; s++) {
      if (pa.primary[s] !== pb.primary[s] || pa.second[s] !== pb.second[s]) n++;
    }
  }
  return n;
}

const files = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

test('there are scenario files', () => {
  assert.ok(files.length >= 3, `found ${files.length}`);
});

for (const file of files) {
  const name = file.replace(/\.yaml$/, '');
  test(`golden: ${name}`, () => {
    const raw = parseYaml(readFileSync(path.join(DIR, file), 'utf8')) as RawScenario;
    const results = runScenario(raw);
    const text = `# ${raw.description.trim().replace(/\n/g, '\n# ')}\n${render(results)}`;
    const goldenPath = path.join(DIR, `${name}.golden`);
    if (UPDATE) writeFileSync(goldenPath, text);
    const golden = readFileSync(goldenPath, 'utf8');
    assert.equal(
      text,
      golden,
      `${name}: compiler output differs from ${name}.golden (UPDATE_GOLDEN=1 to accept)`,
    );

    // The canonical text round-trips.
    for (const r of results) {
      for (const fs of r.sets.values())
        assert.equal(renderFlowSet(parseFlowSet(renderFlowSet(fs))), renderFlowSet(fs));
    }
    // A slot-only step costs exactly one gateway bundle line per changed slot, and on hosts only CHAIN flows.
    for (let i = 1; i < results.length; i++) {
      const prev = results[i - 1];
      const cur = results[i];
      const slotOnly =
        JSON.stringify(prev.config) === JSON.stringify(cur.config) &&
        [...cur.gen.pools].every(
          ([lb, p]) =>
            JSON.stringify(prev.gen.pools.get(lb)?.members) === JSON.stringify(p.members) &&
            prev.gen.pools.get(lb)?.bits === p.bits,
        );
      if (!slotOnly) continue;
      const moved = changedSlots(prev.gen, cur.gen);
      for (const n of cur.config.nodes) {
        const lines = bundleBetween(prev.sets.get(n.name)!, cur.sets.get(n.name)!);
        if (n.role === 'gateway') {
          assert.equal(lines.length, moved, `${name}/${cur.name}/${n.name}: ${moved} slots changed`);
          assert.ok(
            lines.every((l) => l.startsWith('br-int: flow add ') && l.includes(`table=${T.GW_SLOTS},`)),
          );
        } else {
          // Hosts depend on slots only through the chains: CHAIN flows of the slots whose owners changed.
          assert.ok(
            lines.every((l) => l.includes(`table=${T.CHAIN},`)),
            `${name}/${cur.name}/${n.name}: a host's slot-only change is in CHAIN only: ${lines.join(' | ')}`,
          );
        }
      }
    }
  });
}
