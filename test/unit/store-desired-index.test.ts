// The planner's desired state and connection reports kept from the replica's changed rows (src/store/db/
// desired-index.ts, slot-reports.ts, and effectiveConfig patched per load balancer in view.ts) against the whole
// reads they replace, over random edits. Pure: a Replica filled by hand (no ovsdb-server); a seeded generator, so a
// failure repeats. Negative controls: a replica that drops one table's change notifications (a broken index) and a
// document changed behind the same object are caught by the same comparisons.

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/model/schema.ts';
import type { JsRow } from '../../src/ovsdb/protocol.ts';
import { Replica, type RowChange } from '../../src/ovsdb/replica.ts';
import { PlanCache } from '../../src/rollout/plan-cache.ts';
import type { Generation } from '../../src/rollout/types.ts';
import {
  type DesiredDoc,
  DesiredStateIndex,
  effectiveConfig,
  effectiveDoc,
  GlobalTable,
  type Health,
  plannerStep,
  readDesiredState,
  readSlotReports,
  SlotReportIndex,
  type StoreView,
  single,
  splitPlanDocument,
} from '../../src/store/db/index.ts';
import { DeafReplica } from '../scenarios/deaf-replica.ts';
import { pick, random } from '../scenarios/random.ts';
import { storeView } from '../scenarios/store-view.ts';

const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const row = (o: Record<string, unknown>) => Object.freeze(o) as JsRow;

// ---------------------------------------------------------------------------------------------------------
// Random edits of the desired-state tables, mostly valid (backend addresses keep their host), sometimes not.

const HOSTS = ['h1', 'h2'];
/** address -> host: a backend address lives on one host (so most edits keep the desired state valid). */
const ADDRESSES = Array.from(
  { length: 10 },
  (_, i) => [`10.0.${1 + (i % 2)}.${10 + i}`, HOSTS[i % 2]] as const,
);
const LB_NAMES = Array.from({ length: 8 }, (_, i) => `lb${i}`);

interface Model {
  next: number;
  lbNames: Map<string, string>;
}

function globalRow(id: string, cfg: number, gen: number, extra: Record<string, unknown> = {}): JsRow {
  return row({
    _uuid: id,
    hash_mode: 'dp_hash',
    slot_bits: 4,
    drain_window: 0,
    desired_cfg: cfg,
    generation: gen,
    plan: undefined,
    options: new Map<string, string>(),
    external_ids: new Map<string, string>(),
    ...extra,
  });
}

function backendRow(id: string, rnd: () => number, avoid: ReadonlySet<string> = new Set()): JsRow {
  const free = ADDRESSES.filter(([a]) => !avoid.has(a));
  const [address, host] =
    rnd() < 0.97 ? pick(rnd, free.length > 0 ? free : ADDRESSES) : ['10.0.9.9', pick(rnd, HOSTS)];
  return row({
    _uuid: id,
    address,
    port: rnd() < 0.8 ? 80 : undefined,
    host,
    weight: 1 + Math.floor(rnd() * 3),
    admin_state: pick(rnd, ['active', 'active', 'active', 'draining', 'down']),
    mac: undefined,
    external_ids: new Map<string, string>(),
  });
}

function lbRow(id: string, name: string, i: number, backends: readonly string[], rnd: () => number): JsRow {
  return row({
    _uuid: id,
    name,
    vip: rnd() < 0.98 ? `203.0.113.${10 + i}` : '203.0.113.99',
    protocol: 'tcp',
    ports: rnd() < 0.8 ? [80] : [80, 443],
    health_check: '',
    backends,
    external_ids: new Map<string, string>(),
  });
}

/** One random batch of changes (what one monitor update may carry). */
function edit(r: Replica, m: Model, rnd: () => number): RowChange[] {
  const out: RowChange[] = [];
  const table = (t: string) => [...r.table(t).values()];
  const change = (t: string, id: string, now: JsRow | undefined) =>
    out.push({ table: t, uuid: id, old: r.get(t, id), new: now });
  /** A new Backend row, mostly at an address the load balancer does not have yet. */
  const newBackend = (names: readonly string[]) => {
    const id = uuid(m.next++);
    const have = names.map(
      (u) => (out.find((c) => c.uuid === u)?.new ?? r.get('Backend', u))?.address as string,
    );
    change('Backend', id, backendRow(id, rnd, rnd() < 0.95 ? new Set(have) : new Set()));
    return id;
  };
  const roll = rnd();
  const lbs = table('Load_Balancer');
  const g = table('Global')[0];
  if (roll < 0.08 || lbs.length === 0) {
    const free = LB_NAMES.filter((n) => ![...m.lbNames.values()].includes(n));
    if (free.length === 0) return out;
    const name = pick(rnd, free);
    const id = uuid(m.next++);
    m.lbNames.set(id, name);
    const backends: string[] = [];
    for (let n = 1 + Math.floor(rnd() * 4); n > 0; n--) backends.push(newBackend(backends));
    change('Load_Balancer', id, lbRow(id, name, LB_NAMES.indexOf(name), backends, rnd));
  } else if (roll < 0.12) {
    const lb = pick(rnd, lbs);
    m.lbNames.delete(lb._uuid as string);
    change('Load_Balancer', lb._uuid as string, undefined);
  } else if (roll < 0.35) {
    // `sluice backend add` / `del`: a Backend row and the load balancer's set.
    const lb = pick(rnd, lbs);
    const backends = [...(lb.backends as string[])];
    if (rnd() < 0.6 || backends.length < 2) backends.push(newBackend(backends));
    else backends.splice(Math.floor(rnd() * backends.length), 1);
    change('Load_Balancer', lb._uuid as string, row({ ...lb, backends }));
  } else if (roll < 0.65) {
    // A drain, a weight, an address: one Backend row.
    const all = table('Backend');
    if (all.length === 0) return out;
    const b = pick(rnd, all);
    const fresh =
      rnd() < 0.2 ? backendRow(b._uuid as string, rnd) : row({ ...b, weight: 1 + Math.floor(rnd() * 3) });
    change('Backend', b._uuid as string, rnd() < 0.5 ? row({ ...b, admin_state: fresh.admin_state }) : fresh);
  } else if (roll < 0.68) {
    // A Backend row gone while a load balancer still names it.
    const all = table('Backend');
    if (all.length > 0) change('Backend', pick(rnd, all)._uuid as string, undefined);
  } else if (roll < 0.72) {
    const lb = pick(rnd, lbs);
    change(
      'Load_Balancer',
      lb._uuid as string,
      lbRow(
        lb._uuid as string,
        lb.name as string,
        LB_NAMES.indexOf(lb.name as string),
        lb.backends as string[],
        rnd,
      ),
    );
  } else if (roll < 0.74) {
    // A rename (to a free name, or rarely one another load balancer has: invalid, read as a whole).
    const lb = pick(rnd, lbs);
    const name = pick(rnd, LB_NAMES);
    if (name !== lb.name && [...m.lbNames.values()].includes(name) && rnd() < 0.95) return out;
    m.lbNames.set(lb._uuid as string, name);
    change('Load_Balancer', lb._uuid as string, row({ ...lb, name }));
  } else if (roll < 0.76) {
    const nodes = table('Node');
    const n = pick(rnd, nodes);
    change('Node', n._uuid as string, row({ ...n, tunnel_ip: `192.168.100.${Math.floor(rnd() * 200)}` }));
  } else if (roll < 0.79 && g !== undefined) {
    // Settings (drain window, chain length, slot bits).
    const options = new Map(g.options as Map<string, string>);
    if (rnd() < 0.5) options.set('chain_length', String(1 + Math.floor(rnd() * 4)));
    const drain = rnd() < 0.5 ? 0 : 30;
    change(
      'Global',
      g._uuid as string,
      row({ ...g, options, drain_window: drain, slot_bits: rnd() < 0.8 ? 4 : 5 }),
    );
  } else if (g !== undefined) {
    // The planner's own columns: a publication, nothing desired.
    change('Global', g._uuid as string, row({ ...g, generation: (g.generation as number) + 1 }));
  }
  if (g !== undefined && out.some((c) => c.table !== 'Global'))
    out.push({
      table: 'Global',
      uuid: g._uuid as string,
      old: g,
      new: row({ ...g, desired_cfg: (g.desired_cfg as number) + 1 }),
    });
  return out;
}

function seed(r: Replica, m: Model, withGlobal: boolean): void {
  const nodes = [['gw1', 'gateway'], ...HOSTS.map((h) => [h, 'host'])].map(([name, role], i) =>
    row({ _uuid: uuid(m.next++), name, role, tunnel_ip: `192.168.100.${i + 1}`, external_ids: new Map() }),
  );
  r.apply(nodes.map((n) => ({ table: 'Node', uuid: n._uuid as string, old: undefined, new: n })));
  if (withGlobal) {
    const id = uuid(m.next++);
    r.apply([{ table: 'Global', uuid: id, old: undefined, new: globalRow(id, 1, 0) }]);
  }
}

const wholeDesired = (r: Replica) => (single(r, GlobalTable) === undefined ? undefined : readDesiredState(r));

/** Runs random edits and compares the index with a whole read after them; the number of steps that differed. */
function desiredRun(
  r: Replica,
  seedNo: number,
  steps: number,
  check: boolean,
): { differed: number; reused: number } {
  const rnd = random(seedNo);
  const m: Model = { next: 1, lbNames: new Map() };
  seed(r, m, seedNo % 2 === 0);
  const index = new DesiredStateIndex(r);
  let differed = 0;
  let reused = 0;
  let before = index.read();
  for (let step = 0; step < steps; step++) {
    if (single(r, GlobalTable) === undefined && rnd() < 0.05) {
      const id = uuid(m.next++);
      r.apply([{ table: 'Global', uuid: id, old: undefined, new: globalRow(id, 1, 0) }]);
    }
    for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) r.apply(edit(r, m, rnd));
    if (rnd() < 0.01) r.replace(new Map([...r.tables].map(([t, rows]) => [t, new Map([...rows].reverse())])));
    if (rnd() < 0.3) continue; // several batches between two reads, too
    const got = index.read();
    const want = wholeDesired(r);
    const same = JSON.stringify(got) === JSON.stringify(want);
    if (check) {
      assert.deepEqual(got, want, `step ${step}`);
      // Key order too: the plan's base document is this object's JSON.
      assert.ok(same, `step ${step}: same JSON`);
    }
    if (!same) differed++;
    if (got !== undefined && before !== undefined)
      reused += got.config.loadBalancers.filter((lb) => before!.config.loadBalancers.includes(lb)).length;
    before = got;
  }
  return { differed, reused };
}

test('the desired-state index follows load balancer, backend, node and Global edits like a whole read', () => {
  for (const s of [1, 2, 3, 4]) {
    const { reused } = desiredRun(new Replica(), s, 600, true);
    // Row by row, not a whole read each time: unchanged load balancers stay the very objects of the read before.
    assert.ok(reused > 600, `seed ${s}: ${reused} load balancers reused`);
  }
});

test('negative control: an index that misses Backend changes is caught by the comparison', () => {
  const { differed } = desiredRun(new DeafReplica('Backend'), 1, 600, false);
  assert.ok(differed > 0, 'a drain the index never heard of must show');
  const lbs = desiredRun(new DeafReplica('Load_Balancer'), 2, 600, false);
  assert.ok(lbs.differed > 0, 'a backend add the index never heard of must show');
});

test('the desired-state index returns the same object while only the planner wrote', () => {
  const r = new Replica();
  const m: Model = { next: 1, lbNames: new Map() };
  seed(r, m, true);
  const rnd = random(9);
  for (let i = 0; i < 5; i++) r.apply(edit(r, m, () => (i === 0 ? 0 : rnd())));
  const index = new DesiredStateIndex(r);
  const first = index.read()!;
  const g = single(r, GlobalTable)!;
  const raw = r.get('Global', g._uuid)!;
  r.apply([{ table: 'Global', uuid: g._uuid, old: raw, new: row({ ...raw, generation: 7 }) }]);
  assert.equal(index.read(), first, 'a publication changes no desired state');
  r.apply([{ table: 'Global', uuid: g._uuid, old: raw, new: row({ ...raw, desired_cfg: 9 }) }]);
  const bumped = index.read()!;
  assert.equal(bumped.desiredCfg, 9);
  assert.equal(bumped.config, first.config, 'desired_cfg alone: the same config object');
});

// ---------------------------------------------------------------------------------------------------------
// effectiveConfig patched from the previous desired state: equal to the whole computation, decisions included.

/** The whole computation (what effectiveConfig did for every new desired state), or the error it throws. */
function whole(doc: DesiredDoc, health: ReadonlyMap<string, Health>, source: string) {
  try {
    const eff = effectiveDoc(doc, health);
    return { config: parseConfig(eff, source), doc: splitPlanDocument(eff) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function attempt(v: StoreView, source: string) {
  try {
    return effectiveConfig(v, source)!;
  } catch (e) {
    return { error: (e as Error).message };
  }
}

test('effectiveConfig patched over desired edits and health changes equals the whole computation', () => {
  for (const s of [11, 12, 13]) {
    const rnd = random(s);
    const r = new Replica();
    const m: Model = { next: 1, lbNames: new Map() };
    seed(r, m, true);
    const index = new DesiredStateIndex(r);
    const source = `test ${s}`;
    let health = new Map<string, Health>();
    let latest: Generation | null = null;
    let valid = 0;
    let patchedReuse = 0;
    let prev: ReturnType<typeof effectiveConfig>;
    const cache = new PlanCache();
    for (let step = 0; step < 500; step++) {
      if (rnd() < 0.7) for (let n = 1 + Math.floor(rnd() * 2); n > 0; n--) r.apply(edit(r, m, rnd));
      if (rnd() < 0.3) {
        health = new Map(health);
        const [address] = pick(rnd, ADDRESSES);
        const k = `${pick(rnd, LB_NAMES)} ${address}:${rnd() < 0.8 ? 80 : '*'}`;
        if (rnd() < 0.3) health.delete(k);
        else health.set(k, pick(rnd, ['up', 'down', 'gone'] as Health[]));
      }
      const doc = index.read()!.config;
      const v = storeView(doc, health, latest);
      const got = attempt(v, source);
      const want = whole(doc, health, source);
      assert.deepEqual(got, want, `seed ${s} step ${step}`);
      if ('error' in got || 'error' in want) continue;
      valid++;
      // The planner's step with its PlanCache (kept across the steps), against a step of every pool.
      const a = plannerStep(v, got, 1000 + step, new Set(HOSTS), undefined, cache);
      const b = plannerStep(v, want, 1000 + step, new Set(HOSTS));
      assert.deepEqual(a.next, b.next, `seed ${s} step ${step}: next generation`);
      assert.deepEqual(a.notes, b.notes, `seed ${s} step ${step}: notes`);
      // The status page's step shares the planner's cache: other hosts counted, one of them silent.
      const silent = new Set([pick(rnd, HOSTS)]);
      const c = plannerStep(v, got, 1000 + step, undefined, silent, cache);
      const d = plannerStep(v, want, 1000 + step, undefined, silent);
      assert.deepEqual([c.next, c.notes], [d.next, d.notes], `seed ${s} step ${step}: the page's step`);
      if (a.next !== null) latest = a.next;
      if (prev !== undefined)
        patchedReuse += got.config.loadBalancers.filter((lb) =>
          prev!.config.loadBalancers.includes(lb),
        ).length;
      prev = got;
    }
    assert.ok(valid > 100, `seed ${s}: ${valid} valid steps`);
    // Patched, not parsed whole: most load balancers are the very objects of the step before.
    assert.ok(patchedReuse > valid, `seed ${s}: ${patchedReuse} load balancers reused`);
  }
});

test('negative control: a document changed behind the same object is caught by the comparison', () => {
  const r = new Replica();
  const m: Model = { next: 1, lbNames: new Map() };
  seed(r, m, true);
  for (let i = 0; i < 3; i++) r.apply(edit(r, m, () => 0.01 + i * 0.001));
  const doc = readDesiredState(r).config;
  const health = new Map<string, Health>();
  const first = effectiveConfig(storeView(doc, health, null), 'negative')!;
  assert.ok(first.config.loadBalancers.length > 0);
  // A new desired state whose load balancer is the same object, edited in place: the patch trusts identity.
  const lb = doc.loadBalancers[0];
  const next = { ...doc, loadBalancers: [...doc.loadBalancers] };
  lb.backends = lb.backends.map((b) => ({ ...b, state: b.state === 'active' ? 'draining' : 'active' }));
  const got = effectiveConfig(storeView(next, health, null), 'negative')!;
  const want = whole(next, health, 'negative');
  assert.notDeepEqual(got, want, 'the comparison must see the stale load balancer');
});

// ---------------------------------------------------------------------------------------------------------
// Slot_Connections decoded from the changed rows only.

function reportRow(id: string, node: string, lb: string, rnd: () => number): JsRow {
  const counts: Record<string, Record<string, number>> = {};
  for (let n = Math.floor(rnd() * 3); n > 0; n--)
    counts[String(Math.floor(rnd() * 16))] = { [`${pick(rnd, ADDRESSES)[0]}:80`]: 1 + Math.floor(rnd() * 5) };
  return row({
    _uuid: id,
    node,
    lb,
    generation: 1,
    bits: 4,
    counts: rnd() < 0.03 ? 'not json' : JSON.stringify(counts),
    reported_at: Math.floor(rnd() * 1e6),
  });
}

const sorted = (x: ReadonlyMap<string, ReadonlyMap<string, unknown>>) =>
  new Map([...x].sort().map(([k, v]) => [k, new Map([...v].sort())]));

function slotRun(r: Replica, seedNo: number, check: boolean): { differed: number; decoded: number } {
  const rnd = random(seedNo);
  const index = new SlotReportIndex(r);
  let next = 1;
  let differed = 0;
  let reads = 0;
  for (let step = 0; step < 1500; step++) {
    const batch: RowChange[] = [];
    const rows = [...r.table('Slot_Connections').values()];
    const taken = new Set(rows.map((x) => `${x.node} ${x.lb}`));
    const roll = rnd();
    const node = pick(rnd, ['h1', 'h2', 'h3']);
    const lb = pick(rnd, LB_NAMES);
    if (rows.length === 0 || roll < 0.3) {
      // One row per host and load balancer (the table's index), rarely a second one.
      if (!taken.has(`${node} ${lb}`) || rnd() < 0.05) {
        const id = uuid(next++);
        batch.push({
          table: 'Slot_Connections',
          uuid: id,
          old: undefined,
          new: reportRow(id, node, lb, rnd),
        });
      }
    } else if (roll < 0.85) {
      const old = pick(rnd, rows);
      const now = reportRow(old._uuid as string, old.node as string, old.lb as string, rnd);
      batch.push({ table: 'Slot_Connections', uuid: old._uuid as string, old, new: now });
    } else {
      const old = pick(rnd, rows);
      batch.push({ table: 'Slot_Connections', uuid: old._uuid as string, old, new: undefined });
    }
    r.apply(batch);
    if (rnd() < 0.01)
      r.replace(new Map([['Slot_Connections', new Map([...r.table('Slot_Connections')].reverse())]]));
    if (rnd() < 0.4) continue;
    reads++;
    const got = sorted(index.reports());
    const want = sorted(readSlotReports(r));
    if (check) assert.deepEqual(got, want, `step ${step}`);
    else
      try {
        assert.deepEqual(got, want);
      } catch {
        differed++;
      }
  }
  return { differed, decoded: reads };
}

test('the connection reports index decodes changed rows like a whole read', () => {
  for (const s of [21, 22, 23]) slotRun(new Replica(), s, true);
});

test('negative control: a reports index that misses Slot_Connections changes is caught', () => {
  const { differed } = slotRun(new DeafReplica('Slot_Connections'), 21, false);
  assert.ok(differed > 0, 'missed reports must show');
});
