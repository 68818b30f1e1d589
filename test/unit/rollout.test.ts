// Unit tests of the rollout planner (src/rollout/planner.ts): every transition of docs/design/rollout.md, the
// gating helpers, slot-bit changes, offline plans, summaries and the backend state machine. Pure; connection
// counts are given by small fake functions (said where used).

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { NO_OWNER } from '../../src/hashing/slots.ts';
import { lbSlotBits, SLOTS_PER_BACKEND } from '../../src/model/slot-bits.ts';
import type { AdminState, Backend, Config } from '../../src/model/types.ts';
import {
  BACKEND_STATES,
  BACKEND_TRANSITIONS,
  backendState,
  canTransition,
  transitionReason,
} from '../../src/rollout/backend-state.ts';
import { PlanCache } from '../../src/rollout/plan-cache.ts';
import {
  type ChainUse,
  type ConnectionCounts,
  canPublish,
  grownCounts,
  nextSlot,
  type PlanInput,
  type PlanStep,
  planNext,
  planRollout,
  planRolloutDetailed,
  type SlotStep,
  waitingGateways,
} from '../../src/rollout/planner.ts';
import { formatPool, formatRollout, summarizePool, summarizeRollout } from '../../src/rollout/summary.ts';
import {
  type Generation,
  LANES,
  PHASE_STABLE,
  PHASE1,
  PHASE2,
  type PoolPlan,
  planLanes,
} from '../../src/rollout/types.ts';
import { pick, random } from '../scenarios/random.ts';

const NODES: Config['nodes'] = [
  { name: 'gw1', role: 'gateway', tunnelIp: '192.168.0.1' },
  { name: 'h1', role: 'host', tunnelIp: '192.168.0.11' },
  { name: 'h2', role: 'host', tunnelIp: '192.168.0.12' },
];

/** Backend "A".."F" -> 10.0.1.1.. on alternating hosts. */
function be(name: string, state: AdminState = 'active', weight = 1, host?: string): Backend {
  const n = name.charCodeAt(0) - 64;
  return { address: `10.0.1.${n}`, port: 8080, host: host ?? (n % 2 === 1 ? 'h1' : 'h2'), weight, state };
}
const K = (name: string): string => `10.0.1.${name.charCodeAt(0) - 64}:8080`;

function cfg(backends: Backend[], slotBits = 4, extra: Partial<Config> = {}): Config {
  return {
    hashMode: 'dp_hash',
    slotBits,
    drainWindowSeconds: 60,
    nodes: NODES,
    loadBalancers: [
      { name: 'web', vip: '10.9.9.9', family: 4, protocol: 'tcp', ports: [80], backends },
      ...(extra.loadBalancers ?? []),
    ],
    ...(extra.drainWindowSeconds !== undefined ? { drainWindowSeconds: extra.drainWindowSeconds } : {}),
    ...(extra.chainLength !== undefined ? { chainLength: extra.chainLength } : {}),
    ...(extra.nodes !== undefined ? { nodes: extra.nodes } : {}),
  };
}

const zero: ConnectionCounts = () => 0;

function step(
  config: Config,
  latest: Generation | null,
  connections: ConnectionCounts = zero,
  now = 0,
): PlanStep {
  return planNext({ config, latest, connections, now });
}
/** step() that must publish a generation. */
function next(...args: Parameters<typeof step>): Generation {
  const r = step(...args);
  assert.ok(r.next, `expected a generation; notes: ${r.notes.map((n) => n.message).join(' | ')}`);
  return r.next;
}

/** Slot -> "P" or "P/S" with backend letters ("-" for none). */
function view(g: Generation, lb = 'web'): string[] {
  const p = g.pools.get(lb)!;
  const letter = (i: number): string =>
    i === NO_OWNER ? '-' : String.fromCharCode(64 + Number(p.members[i].address.split('.')[3]));
  return [...p.primary].map((x, s) =>
    p.second[s] === NO_OWNER ? letter(x) : `${letter(x)}/${letter(p.second[s])}`,
  );
}
function pool(g: Generation, lb = 'web'): PoolPlan {
  return g.pools.get(lb)!;
}
function slotsWhere(g: Generation, pred: (v: string) => boolean): number[] {
  return view(g).flatMap((v, s) => (pred(v) ? [s] : []));
}

/** Fake host reports: `busy` maps "slot:backendLetter" to a live connection count; everything else is 0. */
function counts(busy: Record<string, number>): ConnectionCounts {
  return (_lb, slot, key) => {
    for (const [k, n] of Object.entries(busy)) {
      const [s, b] = k.split(':');
      if (Number(s) === slot && K(b) === key) return n;
    }
    return 0;
  };
}

test('initial generation: stable tables from scratch, number 1, balanced, independent of backend order', () => {
  const g = next(cfg([be('A'), be('B'), be('C')]), null);
  assert.equal(g.number, 1);
  const p = pool(g);
  assert.equal(p.primary.length, 16);
  assert.ok(p.second.every((x) => x === NO_OWNER));
  assert.ok(p.phase.every((x) => x === PHASE_STABLE));
  const sum = summarizePool(p, cfg([be('A'), be('B'), be('C')]).loadBalancers[0]);
  assert.ok(sum.balance.maxDeviation < 1);
  assert.ok(sum.balance.spread <= 1);
  const h = next(cfg([be('C'), be('A'), be('B')]), null);
  assert.deepEqual(view(h), view(g));
});

test('nothing changed: no generation', () => {
  const c = cfg([be('A'), be('B')]);
  const g = next(c, null);
  const r = step(c, g);
  assert.equal(r.next, null);
});

test('adding a backend: stable -> phase 1 (P, N) -> phase 2 (N, P) -> stable, only the slots it takes', () => {
  const from = cfg([be('A'), be('B')]);
  const to = cfg([be('A'), be('B'), be('C')]);
  const g1 = next(from, null);
  const g2 = next(to, g1, zero, 1000);
  assert.equal(g2.number, 2);
  const moving = slotsWhere(g2, (v) => v.includes('/'));
  assert.ok(moving.length >= 5 && moving.length <= 6, `C takes ~16/3 slots, got ${moving.length}`);
  for (let s = 0; s < 16; s++) {
    if (moving.includes(s)) {
      assert.equal(view(g2)[s], `${view(g1)[s]}/C`, `slot ${s}: (old owner, C)`);
      assert.equal(pool(g2).phase[s], PHASE1);
    } else assert.equal(view(g2)[s], view(g1)[s], `slot ${s} untouched`);
  }
  const g3 = next(to, g2, zero, 2000);
  for (const s of moving) {
    assert.equal(view(g3)[s], `C/${view(g1)[s]}`);
    assert.equal(pool(g3).phase[s], PHASE2);
    assert.equal(pool(g3).since[s], 2000, 'the drain window runs from phase-2 entry');
  }
  const g4 = next(to, g3, zero, 3000);
  for (const s of moving) assert.equal(view(g4)[s], 'C');
  assert.ok(pool(g4).phase.every((x) => x === PHASE_STABLE));
  assert.equal(step(to, g4).next, null);
});

test('phase 2 waits while the previous owner reports connections, then drops the second chance', () => {
  const to = cfg([be('A'), be('B')]);
  const g1 = next(cfg([be('A')]), null);
  const g2 = next(to, g1);
  const g3 = next(to, g2);
  const moving = slotsWhere(g3, (v) => v === 'B/A');
  assert.ok(moving.length === 8);
  const s0 = moving[0];
  // Fake report: A still has 3 connections of slot s0.
  const r = step(to, g3, counts({ [`${s0}:A`]: 3 }), 5000);
  assert.ok(r.next);
  assert.equal(view(r.next)[s0], 'B/A', 'slot keeps its second chance');
  for (const s of moving.slice(1)) assert.equal(view(r.next)[s], 'B');
  const wait = r.notes.find((n) => n.kind === 'waits');
  assert.ok(wait);
  assert.deepEqual(wait.slots, [s0]);
  assert.equal(wait.connections, 3);
  assert.equal(wait.backend, K('A'));
  assert.match(
    wait.message,
    new RegExp(`web slot ${s0} keep previous owner 10\\.0\\.1\\.1:8080: it has 3 connections`),
  );
  // Still busy: nothing to publish, and the reason says why.
  const again = step(to, r.next, counts({ [`${s0}:A`]: 1 }), 6000);
  assert.equal(again.next, null);
  assert.ok(again.notes.some((n) => n.kind === 'waits' && n.connections === 1));
  // Unknown (not reported yet) also waits.
  assert.equal(step(to, r.next, () => undefined, 6000).next, null);
  const done = next(to, r.next, zero, 7000);
  assert.equal(view(done)[s0], 'B');
});

test('no drain window by default: a previous owner with connections is kept however long it lives', () => {
  const to = cfg([be('A'), be('B')]);
  const c0: Config = { ...to, drainWindowSeconds: undefined };
  const g3 = next(c0, next(c0, next(cfg([be('A')]), null), zero, 0), zero, 1000);
  const busy: ConnectionCounts = (_lb, _slot, key) => (key === K('A') ? 2 : 0); // fake: A keeps 2 per slot
  assert.equal(step(c0, g3, busy, 1e12).next, null, 'a year later: still kept, nothing dropped');
});

test('drain window: a full chain drops a previous owner only once the window passed, and reports it', () => {
  // Chain bound 1: a slot that moved once (B/A, A busy) cannot move again while A holds connections.
  const opts = { drainWindowSeconds: 10, chainLength: 1 };
  const two = cfg([be('A'), be('B')], 4, opts);
  const g3 = next(two, next(two, next(cfg([be('A')], 4, opts), null), zero, 0), zero, 1000); // phase 2 at 1000
  const moving = slotsWhere(g3, (v) => v === 'B/A');
  const busy: ConnectionCounts = (_lb, _slot, key) => (key === K('A') ? 2 : 0); // fake: A keeps 2 per slot
  // C takes slots, some of them from B's moved ones: those wait (chain full) until the window passed.
  const three = cfg([be('A'), be('B'), be('C', 'active', 4)], 4, opts);
  const early = step(three, g3, busy, 10_999);
  const full = early.notes.find((n) => n.kind === 'chain-full');
  assert.ok(full, early.notes.map((n) => n.message).join(' | '));
  assert.match(full.message, /chain full/);
  assert.ok(!early.notes.some((n) => n.kind === 'gave-up'), 'window not passed yet: nothing dropped');
  const r = step(three, g3, busy, 11_000);
  assert.ok(r.next);
  const gave = r.notes.find((n) => n.kind === 'gave-up');
  assert.ok(gave, 'the window passed: the full chain drops its previous owner, on purpose');
  assert.equal(gave.connections, 2 * gave.slots.length);
  assert.match(gave.message, /drain window passed/);
  for (const s of gave.slots) {
    assert.ok(moving.includes(s));
    assert.equal(view(r.next)[s], 'B/C', `slot ${s}: A dropped, C incoming`);
  }
});

test('chains: a slot moves again while its previous owner holds connections, and keeps both', () => {
  const two = cfg([be('A'), be('B')]);
  const g3 = next(two, next(two, next(cfg([be('A')]), null)));
  const moving = slotsWhere(g3, (v) => v === 'B/A');
  const busy: ConnectionCounts = (_lb, _slot, key) => (key === K('A') || key === K('B') ? 1 : 0); // fake
  const three = cfg([be('A'), be('B'), be('C', 'active', 4)]);
  const g4 = next(three, g3, busy);
  const again = moving.filter((s) => view(g4)[s] === 'B/C');
  assert.ok(again.length > 0, 'some of the moved slots move again');
  const g5 = next(three, g4, busy);
  const lanes = planLanes(pool(g5));
  const p5 = pool(g5);
  for (const s of again) {
    assert.equal(view(g5)[s], 'C/B', `slot ${s}: C primary, B second chance`);
    const owners = [...lanes.slice(s * LANES, s * LANES + LANES)]
      .filter((m) => m !== NO_OWNER)
      .map((m) => p5.members[m].key)
      .sort();
    assert.deepEqual(owners, [K('A'), K('B'), K('C')], `slot ${s}: A stays in the chain`);
    // Lanes are stable: A keeps the lane it had in g3.
    const laneOf = (g: Generation, key: string) => {
      const p = pool(g);
      const l = planLanes(p);
      for (let i = 0; i < LANES; i++) if (p.members[l[s * LANES + i]]?.key === key) return i;
      return -1;
    };
    assert.equal(laneOf(g5, K('A')), laneOf(g3, K('A')));
    assert.equal(laneOf(g5, K('B')), laneOf(g3, K('B')));
  }
  // A reports 0: it leaves the chain; B still busy stays.
  const onlyB: ConnectionCounts = (_lb, _slot, key) => (key === K('B') ? 1 : 0);
  const g6 = next(three, g5, onlyB);
  for (const s of again) assert.equal(view(g6)[s], 'C/B');
  const g7 = next(three, g6, zero);
  for (const s of again) assert.equal(view(g7)[s], 'C');
});

test('phase 1 retargeted: (P, N) with a new target C != N becomes (P, C); nobody sent to N yet', () => {
  const g1 = next(cfg([be('A')]), null);
  const g2 = next(cfg([be('A'), be('B')]), g1); // (A, B) on 8 slots
  const moving = slotsWhere(g2, (v) => v === 'A/B');
  assert.equal(moving.length, 8);
  // B is removed before phase 2, C added: B's incoming slots go to C.
  const g3 = next(cfg([be('A'), be('C')]), g2);
  for (const s of moving) {
    assert.equal(view(g3)[s], 'A/C');
    assert.equal(pool(g3).phase[s], PHASE1);
  }
  const b = pool(g3).members.findIndex((m) => m.key === K('B'));
  assert.ok(
    !pool(g3).primary.includes(b) && !pool(g3).second.includes(b),
    'B no longer referenced (its position stays until a new backend may reuse it)',
  );
});

test('phase 1 with the target back to P: stable (P)', () => {
  const g1 = next(cfg([be('A')]), null);
  const g2 = next(cfg([be('A'), be('B')]), g1);
  const g3 = next(cfg([be('A')]), g2);
  assert.ok(view(g3).every((v) => v === 'A'));
});

test('phase 2 with the target back to the previous owner: (N, P) -> (P, N)', () => {
  const g1 = next(cfg([be('A')]), null);
  const to = cfg([be('A'), be('B')]);
  const g3 = next(to, next(to, g1));
  const moving = slotsWhere(g3, (v) => v === 'B/A');
  const g4 = next(cfg([be('A'), be('B', 'draining')]), g3);
  for (const s of moving) {
    assert.equal(view(g4)[s], 'A/B', 'A primary again, B keeps its connections as second chance');
    assert.equal(pool(g4).phase[s], PHASE2);
  }
});

test('phase 2 (N, P) where P goes down: the second chance is dropped at once', () => {
  const g1 = next(cfg([be('A'), be('C')]), null);
  const to = cfg([be('A'), be('C'), be('B')]);
  const g3 = next(to, next(to, g1));
  const fromA = slotsWhere(g3, (v) => v === 'B/A');
  assert.ok(fromA.length > 0);
  // Fake report: A "still has" connections, but A is down: they are lost, nothing waits for them.
  const g4 = next(cfg([be('A', 'down'), be('C'), be('B')]), g3, counts({ [`${fromA[0]}:A`]: 5 }));
  for (const s of fromA) assert.equal(view(g4)[s], 'B');
});

test('phase 2 (N, P) where N goes down and P still has connections: (P, N), P takes the SYNs back', () => {
  const g1 = next(cfg([be('A'), be('C')]), null);
  const to = cfg([be('A'), be('C'), be('B')]);
  const g3 = next(to, next(to, g1));
  const inPhase2 = slotsWhere(g3, (v) => v.startsWith('B/'));
  assert.ok(inPhase2.length >= 5);
  // Fake report: every previous owner still has 1 connection in every slot.
  const busy: ConnectionCounts = (_lb, _s, key) => (key === K('B') ? 0 : 1);
  // Chain bound 1: no room for a new incoming owner, so the previous owner takes the SYNs back.
  const down = cfg([be('A'), be('C'), be('B', 'down')], 4, { chainLength: 1 });
  const g4 = next(down, g3, busy);
  for (const s of inPhase2) {
    const prevOwner = view(g3)[s].split('/')[1];
    assert.equal(
      view(g4)[s],
      `${prevOwner}/B`,
      `slot ${s}: previous owner primary, down B kept one generation`,
    );
    assert.equal(pool(g4).phase[s], PHASE2);
  }
  assert.ok(step(down, g3, busy).notes.some((n) => n.kind === 'down-primary'));
  // Next: B is down, so its second chance goes; slots whose target is their primary become stable.
  const g5 = next(down, g4, busy);
  for (const s of inPhase2) assert.ok(!view(g5)[s].endsWith('/B'));
  const final = planNext({ config: down, latest: g5, connections: zero, now: 0 });
  let g = final.next ?? g5;
  for (let i = 0; i < 5; i++) g = step(down, g).next ?? g;
  assert.ok(view(g).every((v) => v === 'A' || v === 'C'));
});

test('stable (P) with P down: (P, T) -> (T, P) -> (T); the down primary never leaves in one step', () => {
  const c0 = cfg([be('A'), be('B')]);
  const g1 = next(c0, null);
  const bSlots = slotsWhere(g1, (v) => v === 'B');
  const down = cfg([be('A'), be('B', 'down')]);
  const g2 = next(down, g1);
  for (const s of bSlots) assert.equal(view(g2)[s], 'B/A');
  for (const s of bSlots) assert.equal(pool(g2).phase[s], PHASE1);
  const g3 = next(down, g2);
  for (const s of bSlots) assert.equal(view(g3)[s], 'A/B');
  // B is down: its second chance is dropped without waiting for counts (its connections are lost).
  const g4 = next(down, g3, () => 7);
  for (const s of bSlots) assert.equal(view(g4)[s], 'A');
  assert.equal(step(down, g4).next, null);
});

test('draining: gives up its slots through the phases and waits for its connections', () => {
  const g1 = next(cfg([be('A'), be('B')]), null);
  const bSlots = slotsWhere(g1, (v) => v === 'B');
  const drain = cfg([be('A'), be('B', 'draining')]);
  const g2 = next(drain, g1);
  for (const s of bSlots) assert.equal(view(g2)[s], 'B/A');
  const g3 = next(drain, g2);
  for (const s of bSlots) assert.equal(view(g3)[s], 'A/B');
  assert.equal(step(drain, g3, () => 1).next, null, 'B keeps every second chance while it has connections');
  const g4 = next(drain, g3);
  assert.ok(view(g4).every((v) => v === 'A'));
  assert.ok(
    pool(g4).members.some((m) => m.key === K('B')),
    'a draining backend stays a member',
  );
});

test('removed backend: kept as second chance while it has connections, then leaves the plan', () => {
  const g1 = next(cfg([be('A'), be('B')]), null);
  const bSlots = slotsWhere(g1, (v) => v === 'B');
  const gone = cfg([be('A')]);
  const g3 = next(gone, next(gone, g1));
  for (const s of bSlots) assert.equal(view(g3)[s], 'A/B');
  const bm = pool(g3).members.find((m) => m.key === K('B'));
  assert.deepEqual(bm, { key: K('B'), address: '10.0.1.2', port: 8080, host: 'h2' }, 'plan member kept');
  assert.equal(step(gone, g3, () => 4).next, null);
  const g4 = next(gone, g3);
  assert.ok(view(g4).every((v) => v === 'A'));
  const b = pool(g4).members.findIndex((m) => m.key === K('B'));
  assert.ok(!pool(g4).second.includes(b), 'B left every slot');
});

test('member positions are stable across generations (Geneve metadata carries them)', () => {
  const g1 = next(cfg([be('B'), be('D')]), null);
  const before = pool(g1).members.map((m) => m.key);
  // A sorts before every existing key: it must not shift them.
  const g2 = next(cfg([be('A'), be('B'), be('D')]), g1);
  assert.deepEqual(
    pool(g2)
      .members.slice(0, before.length)
      .map((m) => m.key),
    before,
  );
  assert.equal(pool(g2).members[before.length].key, K('A'), 'a new backend takes a new position');
  // D removed while it owns nothing yet referenced by g2: it keeps its position while referenced.
  const noD = cfg([be('A'), be('B')]);
  const g3 = next(noD, g2);
  const d = before.indexOf(K('D'));
  assert.equal(pool(g3).members[d].key, K('D'));
  // Once D is referenced by neither the latest plan nor the next one, a new backend may take its position.
  let g = g3;
  for (let i = 0; i < 4; i++) g = step(noD, g).next ?? g;
  assert.ok(!pool(g).primary.includes(d) && !pool(g).second.includes(d));
  const gE = next(cfg([be('A'), be('B'), be('E')]), g);
  assert.equal(pool(gE).members[d].key, K('E'), 'E reuses the free position of D');
  assert.equal(pool(gE).members.length, pool(g).members.length, 'no new position needed');
});

test('removed backend whose host left the config: treated as down (no wait)', () => {
  const g1 = next(cfg([be('A'), be('B')]), null);
  const noH2 = cfg([be('A')], 4, { nodes: NODES.filter((n) => n.name !== 'h2') });
  const g3 = next(noH2, next(noH2, g1));
  const g4 = next(noH2, g3, () => 9);
  assert.ok(view(g4).every((v) => v === 'A'));
});

test('a slot whose chain is full is not moved again; buildTable is told to keep it', () => {
  const L1 = { chainLength: 1 };
  const g1 = next(cfg([be('A'), be('B')], 4, L1), null);
  const three = cfg([be('A'), be('B'), be('C')], 4, L1);
  const g3 = next(three, next(three, g1));
  const cSlots = slotsWhere(g3, (v) => v.startsWith('C/'));
  // Fake: every previous owner keeps connections in every slot.
  const busy: ConnectionCounts = (_lb, _s, key) => (key === K('C') ? 0 : 2);
  // Drop C's weight to 0 is not it; instead add D: D's slots must come from elsewhere where possible.
  const four = cfg([be('A'), be('B'), be('C'), be('D')], 4, L1);
  const r = step(four, g3, busy);
  assert.ok(r.next);
  for (const s of cSlots) {
    const v = view(r.next)[s];
    assert.ok(v === view(g3)[s], `slot ${s}: ${view(g3)[s]} must wait, got ${v}`);
  }
});

test('no backend takes slots (all drained): slots keep their owners, with a note', () => {
  const g1 = next(cfg([be('A'), be('B')]), null);
  const drained = cfg([be('A', 'draining'), be('B', 'draining')]);
  const r = step(drained, g1);
  assert.equal(r.next, null);
  assert.ok(r.notes.some((n) => n.kind === 'no-owner'));
  // `sluice plan` says so instead of a balance over no backend (min 0, max 0 beside slots still owned).
  const text = formatPool(summarizePool(pool(g1), drained.loadBalancers[0]));
  assert.match(text, /balance: no backend takes slots/);
  assert.doesNotMatch(text, /balance: min/);
});

test('a pool with no backend at all starts with no owner; its first backend takes every slot', () => {
  const g1 = next(cfg([]), null);
  assert.ok(pool(g1).primary.every((x) => x === NO_OWNER));
  const g2 = next(cfg([be('A')]), g1);
  assert.ok(view(g2).every((v) => v === 'A'));
});

test('slot bits up: first a generation that only grows (moves nothing), then the phases', () => {
  const g1 = next(cfg([be('A'), be('B'), be('C')], 4), null);
  const to = cfg([be('A'), be('B'), be('C'), be('D')], 5);
  const r = step(to, g1);
  assert.ok(r.next);
  assert.equal(pool(r.next).bits, 5);
  const v1 = view(g1);
  assert.deepEqual(view(r.next), [...v1, ...v1], 'slot s and s+16 keep the owner of s');
  assert.ok(r.notes.some((n) => n.kind === 'grow'));
  const g3 = next(to, r.next);
  assert.ok(slotsWhere(g3, (v) => v.endsWith('/D')).length >= 7);
});

test('slot bits down: refused with a note; the pool keeps its bits, other changes still roll out', () => {
  const g1 = next(cfg([be('A')], 5), null);
  const r = step(cfg([be('A'), be('B')], 4), g1);
  assert.ok(r.next);
  assert.equal(pool(r.next).bits, 5);
  assert.ok(r.notes.some((n) => n.kind === 'bits-decrease-refused'));
  assert.ok(slotsWhere(r.next, (v) => v === 'A/B').length === 16);
});

test('lbSlotBits: the config floor, or at least 4 slots per backend, at most 2^16', () => {
  // floor, backends -> bits
  const cases = '8,4:8 8,64:8 8,65:9 8,1000:12 4,4:4 4,5:5 4,20:7 12,4:12 8,20000:16';
  const parsed = cases.split(' ').map((c) => c.split(/[,:]/).map(Number) as [number, number, number]);
  for (const [floor, n, bits] of parsed) assert.equal(lbSlotBits(floor, n), bits, `${floor}, ${n} backends`);
  assert.equal(SLOTS_PER_BACKEND, 4);
});

test('slot bits per load balancer: a VIP with 4 backends keeps 2^slotBits whatever another has', () => {
  const many = Array.from(
    { length: 100 },
    (_, i): Backend => ({
      address: `10.0.2.${i + 1}`,
      port: 8080,
      host: i % 2 === 0 ? 'h1' : 'h2',
      weight: 1,
      state: 'active',
    }),
  );
  const big = { name: 'big', vip: '10.9.9.10', family: 4 as const, protocol: 'tcp' as const, ports: [80] };
  const g1 = next(
    cfg([be('A'), be('B'), be('C'), be('D')], 4, { loadBalancers: [{ ...big, backends: many }] }),
    null,
  );
  assert.equal(pool(g1).bits, 4);
  assert.equal(pool(g1).primary.length, 16);
  assert.equal(pool(g1, 'big').bits, 9, '100 backends x 4 slots -> 2^9');
  const per = summarizePool(
    pool(g1, 'big'),
    cfg([], 4, { loadBalancers: [{ ...big, backends: many }] }).loadBalancers[1],
  );
  assert.ok(
    per.members.every((m) => m.primary === 5 || m.primary === 6),
    'every backend within one slot of 5.12',
  );
});

test('a backend add that crosses 4 slots per backend grows the pool first (nothing moves), then the phases', () => {
  const four = [be('A'), be('B'), be('C'), be('D')];
  const g1 = next(cfg(four, 4), null);
  const to = cfg([...four, be('E')], 4);
  const r = step(to, g1);
  assert.ok(r.next);
  assert.equal(pool(r.next).bits, 5);
  assert.deepEqual(view(r.next), [...view(g1), ...view(g1)], 'slot s and s+16 keep the owner of s');
  assert.deepEqual(
    r.notes.map((n) => n.kind),
    ['grow'],
  );
  const g3 = next(to, r.next);
  assert.ok(slotsWhere(g3, (v) => v.endsWith('/E')).length >= 6, view(g3).join(' '));
  // Removing it again does not shrink the table (that would merge slots): a note says so, E's slots move back.
  const back = step(cfg(four, 4), next(to, g3));
  assert.ok(back.next);
  assert.equal(pool(back.next).bits, 5);
  assert.ok(back.notes.some((n) => n.kind === 'bits-decrease-refused' && /5 -> 4 refused/.test(n.message)));
});

test('after a growth, a connection marked with the smaller table slot holds the second chance of s + 2^k', () => {
  const four = [be('A'), be('B'), be('C'), be('D')];
  const g1 = next(cfg(four, 4), null);
  const to = cfg([...four, be('E')], 4);
  const g2 = next(to, g1); // grow to 2^5
  const g3 = next(to, g2); // phase 1
  const g4 = next(to, g3); // phase 2: E primary, the previous owner second chance
  const moved = slotsWhere(g4, (v) => v.startsWith('E/')).filter((s) => s >= 16);
  assert.ok(moved.length > 0, view(g4).join(' '));
  const s = moved[0]!;
  const prev = view(g4)[s]!.split('/')[1]!;
  // FAKE host report: one connection of the previous owner, committed before the growth: marked slot s - 16.
  const old = counts({ [`${s - 16}:${prev}`]: 1 });
  const kept = next(to, g4, old);
  assert.equal(view(kept)[s], `E/${prev}`, 'the second chance waits for the connection marked s - 16');
  // Negative control: a report read only in the grown table's numbering misses it and drops the second chance.
  const blind: ConnectionCounts = (lb, slot, key, bits) => (bits < 5 ? 0 : old(lb, slot, key, bits));
  const dropped = next(to, g4, blind);
  assert.equal(view(dropped)[s], 'E');
  // grownCounts on its own: slot s of the 2^5 table also reads mark s - 16; a pool at the floor reads only s.
  const seen: string[] = [];
  const spy: ConnectionCounts = (_lb, slot, _key, bits) => {
    seen.push(`${slot}/${bits}`);
    return 1;
  };
  assert.equal(grownCounts(spy, 4)('web', 21, K('A'), 5), 2);
  assert.deepEqual(seen, ['21/5', '5/4']);
  seen.length = 0;
  assert.equal(grownCounts(spy, 5)('web', 21, K('A'), 5), 1);
  assert.equal(
    grownCounts(spy, 4)('web', 37, K('A'), 6),
    2,
    '37 = 0b100101: marks 37 and 5 (k=5 and k=4 agree)',
  );
});

test('load balancers added and removed', () => {
  const other = { name: 'dns', vip: '10.9.9.10', family: 4 as const, protocol: 'udp' as const, ports: [53] };
  const g1 = next(cfg([be('A')]), null);
  const g2 = next(cfg([be('A')], 4, { loadBalancers: [{ ...other, backends: [be('B')] }] }), g1);
  assert.ok(view(g2, 'dns').every((v) => v === 'B'));
  const g3 = next(cfg([be('A')]), g2);
  assert.deepEqual([...g3.pools.keys()], ['web']);
});

test('canPublish: only when every live gateway acknowledged the latest generation', () => {
  assert.equal(canPublish(new Map(), null), true);
  assert.equal(canPublish(new Map(), 3), true, 'no live gateway: nothing to wait for');
  const acks = new Map([
    ['gw2', 3],
    ['gw1', 2],
    ['gw3', 3],
  ]);
  assert.equal(canPublish(acks, 3), false);
  assert.deepEqual(waitingGateways(acks, 3), ['gw1']);
  acks.set('gw1', 3);
  assert.equal(canPublish(acks, 3), true);
  const g = next(cfg([be('A')]), null);
  assert.equal(canPublish(new Map([['gw1', 0]]), g), false);
});

test('planRollout: the generations of a change, with summaries', () => {
  const from = cfg([be('A'), be('B'), be('C')]);
  const to = cfg([be('A'), be('B', 'draining'), be('C'), be('D', 'active', 2)]);
  const gens = planRollout(from, to);
  assert.deepEqual(
    gens.map((g) => g.number),
    [1, 2, 3, 4],
  );
  const last = gens[gens.length - 1];
  assert.ok(pool(last).second.every((x) => x === NO_OWNER));
  const sum = summarizePool(pool(last), to.loadBalancers[0]);
  const d = sum.members.find((m) => m.key === K('D'))!;
  assert.equal(d.share, 8);
  assert.equal(d.primary, 8);
  assert.equal(d.state, 'active');
  assert.equal(sum.members.find((m) => m.key === K('B'))!.state, 'draining');
  assert.ok(sum.balance.maxDeviation < 1);
  const steps = summarizeRollout(gens);
  assert.equal(steps[1].pools[0].moved, 0, 'phase 1 moves no primary');
  assert.ok(steps[2].pools[0].moved > 0);
  assert.equal(steps[3].pools[0].moved, 0, 'the last step only drops second chances');
  const text = formatRollout(to, gens);
  assert.match(text, /generation 3: web: \d+ slots 10\.0\.1\.2:8080 -> 10\.0\.1\.4:8080, phase 2/);
  assert.match(text, /balance: min \d+, max \d+/);
  // A mid-rollout pool: D is filling.
  const mid = summarizePool(pool(gens[1]), to.loadBalancers[0]);
  assert.equal(mid.members.find((m) => m.key === K('D'))!.state, 'filling');
  const detailed = planRolloutDetailed(from, to);
  assert.equal(detailed.notes.length, detailed.generations.length);
  assert.ok(detailed.notes[1].some((n) => n.kind === 'phase1'));
});

test('backend state machine: derived states and the transition table', () => {
  assert.equal(backendState('active', 3, 5), 'filling');
  assert.equal(backendState('active', 5, 5), 'active');
  assert.equal(backendState('draining', 5, 0), 'draining');
  assert.equal(backendState('down', 5, 0), 'down');
  assert.equal(backendState(undefined, 2, 0), 'draining');
  assert.equal(backendState(undefined, 2, 0, false), 'down');
  for (const from of BACKEND_STATES) {
    assert.equal(canTransition(from, from), true);
    for (const to of BACKEND_STATES) {
      if (from === to) continue;
      const why = BACKEND_TRANSITIONS[from][to];
      assert.equal(canTransition(from, to), why !== undefined);
      if (why !== undefined) assert.equal(transitionReason(from, to), why);
      else assert.throws(() => transitionReason(from, to));
    }
  }
});

// Safety of one step, structurally (docs/design/rollout.md "Safety"), O = a slot's owners (its lanes): for every
// slot,
//   (A) the new primary was an owner before (gateways still on the old generation reach the connections that SYNs
//       to the new primary create), unless the old primary was none;
//   (B) the old primary is still an owner (it may still get SYNs from the old generation);
//   (D) an owner in both keeps its lane, unless it is the primary in both (hosts on either generation walk the
//       lanes in order).
function checkStep(a: PoolPlan, b: PoolPlan): string | undefined {
  const key = (p: PoolPlan, i: number): string | undefined => (i === NO_OWNER ? undefined : p.members[i].key);
  const la = planLanes(a);
  const lb = planLanes(b);
  const lanesOf = (p: PoolPlan, l: Uint16Array, s: number) => {
    const m = new Map<string, number>();
    for (let i = 0; i < LANES; i++) if (l[s * LANES + i] !== NO_OWNER) m.set(key(p, l[s * LANES + i])!, i);
    return m;
  };
  for (let s = 0; s < b.primary.length; s++) {
    const sa = s & (a.primary.length - 1);
    const p0 = key(a, a.primary[sa]);
    const p1 = key(b, b.primary[s]);
    const o0 = lanesOf(a, la, sa);
    const o1 = lanesOf(b, lb, s);
    const show = `slot ${s}: (${p0}; ${[...o0.keys()]}) -> (${p1}; ${[...o1.keys()]})`;
    if (p0 !== undefined && !o0.has(p1!)) return `${show} breaks A`;
    if (p0 !== undefined && !o1.has(p0)) return `${show} breaks B`;
    for (const [k, lane] of o0) {
      if (o1.has(k) && o1.get(k) !== lane && !(k === p0 && k === p1)) return `${show}: ${k} changes lane (D)`;
    }
  }
  // (C) a member index referenced by `a` means the same backend in `b` (Geneve metadata carries indices, and
  //     hosts on `b` decode what gateways on `a` send).
  for (const i of la) {
    if (i !== NO_OWNER && b.members[i]?.key !== a.members[i].key)
      return `member index ${i}: ${a.members[i].key} -> ${b.members[i]?.key} breaks C`;
  }
  return undefined;
}

const arbBackends = fc
  .uniqueArray(
    fc.record({
      name: fc.constantFrom('A', 'B', 'C', 'D', 'E', 'F'),
      state: fc.constantFrom<AdminState>('active', 'active', 'draining', 'down'),
      weight: fc.integer({ min: 1, max: 4 }),
    }),
    { selector: (b) => b.name, minLength: 0, maxLength: 6 },
  )
  .map((list) => list.map((b) => be(b.name, b.state, b.weight)));

test('property: every offline rollout step keeps A, B, C and D, ends stable and balanced', () => {
  fc.assert(
    fc.property(
      arbBackends,
      arbBackends,
      fc.integer({ min: 4, max: 6 }),
      fc.boolean(),
      (x, y, bits, grow) => {
        const from = cfg(x, bits);
        const to = cfg(y, grow ? Math.min(bits + 1, 7) : bits);
        const gens = planRollout(from, to);
        for (let i = 1; i < gens.length; i++) {
          assert.equal(gens[i].number, gens[i - 1].number + 1);
          const bad = checkStep(pool(gens[i - 1]), pool(gens[i]));
          assert.equal(bad, undefined, bad);
        }
        const last = pool(gens[gens.length - 1]);
        assert.ok(
          last.second.every((v) => v === NO_OWNER),
          'ends with no second chance',
        );
        const taking = y.filter((b) => b.state === 'active');
        if (taking.length > 0 || x.filter((b) => b.state === 'active').length === 0) {
          const sum = summarizePool(last, to.loadBalancers[0]);
          if (taking.length > 0) {
            assert.ok(sum.balance.maxDeviation < 1, `deviation ${sum.balance.maxDeviation}`);
            assert.equal(sum.noOwner, 0);
          }
        }
        assert.ok(gens.length <= 6, `${gens.length} generations`);
      },
    ),
    { numRuns: 300, seed: 42 },
  );
});

test('property: planNext with a planner cache (settled pools skipped) plans exactly what stepping every pool plans', () => {
  const other = { name: 'api', vip: '10.9.9.8', family: 4 as const, protocol: 'tcp' as const, ports: [80] };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(arbBackends, arbBackends, fc.boolean(), fc.boolean()), {
        minLength: 2,
        maxLength: 5,
      }),
      (changes) => {
        let latest: Generation | null = null;
        let now = 0;
        const cache = new PlanCache();
        for (const [web, api, busy, silent] of changes) {
          const config = cfg(web, 4, { loadBalancers: [{ ...other, backends: api }] });
          for (let i = 0; i < 8; i++) {
            now += 1000;
            const input = {
              config,
              latest,
              connections: busy ? (_lb: string, slot: number) => slot % 3 : zero,
              now,
              ...(silent ? { silentHosts: new Set(['h2']) } : {}),
            };
            const skipping = planNext({ ...input, cache });
            const stepping = planNext(input);
            assert.deepEqual(skipping, stepping);
            if (skipping.next === null) break;
            latest = skipping.next;
          }
        }
      },
    ),
    { numRuns: 200, seed: 7 },
  );
});

test('a plan without phases or times (read back from a store that lost them) still steps safely', () => {
  const to = cfg([be('A'), be('B')], 4, { drainWindowSeconds: 10 });
  const g1 = next(cfg([be('A')], 4, { drainWindowSeconds: 10 }), null);
  const g2 = next(to, g1, zero, 1000);
  const g3 = next(to, g2, zero, 2000);
  // Strip phase and since, as if decoded from a row that does not carry them.
  const p3 = pool(g3);
  const stripped: Generation = {
    ...g3,
    pools: new Map([['web', { ...p3, phase: new Uint8Array(16), since: new Float64Array(16) }]]),
  };
  const busy: ConnectionCounts = (_lb, _s, key) => (key === K('A') ? 1 : 0); // fake: A keeps a connection
  // Long after the window: an unknown start never expires. The step only restores the phases (no owner moves)
  // and drops nothing.
  const restored = step(to, stripped, busy, 1e9);
  assert.ok(!restored.notes.some((n) => n.kind === 'gave-up'));
  if (restored.next !== null) {
    assert.deepEqual(view(restored.next), view(stripped));
    assert.equal(step(to, restored.next, busy, 1e9).next, null);
  }
  const g4 = next(to, stripped, zero, 1e9);
  assert.equal(checkStep(pool(stripped), pool(g4)), undefined);
  assert.ok(view(g4).every((v) => v === 'A' || v === 'B'));
});

// nextSlot is the transition table of docs/design/rollout.md ("Transitions"), one row per case. Members are plain
// indices here (0 = P, 1 = T, 2 = C, 3 = D); uses and counts are given directly (no planner around it).
test('nextSlot: every row of the transition table', () => {
  const P = 0;
  const Tg = 1;
  const C = 2;
  const D = 3;
  const f = (
    target: number,
    use: ChainUse[],
    extra: Partial<{ bound: number; primaryGone: boolean; conns: (number | undefined)[] }> = {},
  ) => ({
    target,
    bound: extra.bound ?? 4,
    primaryGone: extra.primaryGone ?? false,
    use,
    conns: extra.conns ?? use.map((u) => (u === 'free' ? 0 : 3)),
  });
  const kinds = (r: SlotStep) => r.events.map((e) => e.kind).sort();
  const st = (r: SlotStep) => [r.primary, [...r.chain], r.phase];
  // T = none: keep p and the kept chain; p gone with a busy member: that member takes the SYNs.
  let r = nextSlot({ primary: P, chain: [C], phase: PHASE2 }, f(NO_OWNER, ['busy']));
  assert.deepEqual(st(r), [P, [C], PHASE2]);
  assert.deepEqual(kinds(r), ['no-owner']);
  r = nextSlot({ primary: P, chain: [C], phase: PHASE2 }, f(NO_OWNER, ['busy'], { primaryGone: true }));
  assert.deepEqual(st(r), [C, [P], PHASE2]);
  assert.deepEqual(kinds(r), ['down-primary', 'no-owner']);
  // p none: the target at once.
  r = nextSlot({ primary: NO_OWNER, chain: [], phase: PHASE_STABLE }, f(Tg, []));
  assert.deepEqual(st(r), [Tg, [], PHASE_STABLE]);
  // p = T: free members leave, busy ones stay (waits); stable once empty.
  r = nextSlot({ primary: Tg, chain: [P, C], phase: PHASE2 }, f(Tg, ['free', 'busy']));
  assert.deepEqual(st(r), [Tg, [C], PHASE2]);
  assert.deepEqual(kinds(r), ['waits']);
  r = nextSlot({ primary: Tg, chain: [P], phase: PHASE2 }, f(Tg, ['free']));
  assert.deepEqual(st(r), [Tg, [], PHASE_STABLE]);
  assert.deepEqual(kinds(r), ['stable']);
  // T in the chain: phase 2, p joins the chain.
  r = nextSlot({ primary: P, chain: [Tg, C], phase: PHASE1 }, f(Tg, ['free', 'busy']));
  assert.deepEqual(st(r), [Tg, [P, C], PHASE2]);
  assert.deepEqual(kinds(r), ['phase2']);
  // T not in the chain, room: phase 1 (retarget when it replaces a free incoming owner).
  r = nextSlot({ primary: P, chain: [C], phase: PHASE2 }, f(Tg, ['busy']));
  assert.deepEqual(st(r), [P, [Tg, C], PHASE1]);
  assert.deepEqual(kinds(r), ['phase1']);
  r = nextSlot({ primary: P, chain: [C], phase: PHASE1 }, f(Tg, ['free']));
  assert.deepEqual(st(r), [P, [Tg], PHASE1]);
  assert.deepEqual(kinds(r), ['retarget']);
  // Full chain: expired members (fewest connections first) make room, on purpose.
  r = nextSlot(
    { primary: P, chain: [C, D], phase: PHASE2 },
    f(Tg, ['expired', 'expired'], { bound: 2, conns: [5, 2] }),
  );
  assert.deepEqual(st(r), [P, [Tg, C], PHASE1]);
  assert.deepEqual(kinds(r), ['gave-up', 'phase1']);
  assert.equal(r.events.find((e) => e.kind === 'gave-up')?.a, D);
  // Full, primary gone: the newest busy member takes the SYNs back.
  r = nextSlot(
    { primary: P, chain: [C, D], phase: PHASE2 },
    f(Tg, ['busy', 'busy'], { bound: 2, primaryGone: true }),
  );
  assert.deepEqual(st(r), [C, [P, D], PHASE2]);
  assert.deepEqual(kinds(r), ['down-primary']);
  // Full, primary live: wait, and say so with the connections.
  r = nextSlot({ primary: P, chain: [C, D], phase: PHASE2 }, f(Tg, ['busy', 'busy'], { bound: 2 }));
  assert.deepEqual(st(r), [P, [C, D], PHASE2]);
  assert.deepEqual(kinds(r), ['chain-full']);
  assert.equal(r.events[0].conns, 6);
});

test('a silent host: its previous owners stay, its slots do not move and say why, until evidence or its return', () => {
  const nodes: Config['nodes'] = [...NODES, { name: 'h3', role: 'host', tunnelIp: '192.168.0.13' }];
  const c = (bs: Backend[]) => cfg(bs, 4, { nodes });
  const A = be('A', 'active', 1, 'h1');
  const B = be('B', 'active', 1, 'h2');
  const C = be('C', 'active', 1, 'h3');
  const D = be('D', 'active', 2, 'h1');
  const E = be('E', 'active', 1, 'h2');
  // E added to (A, B): slots move from A (E/A: A is a previous owner on h1) and from B (E/B).
  const g3 = next(c([A, B, E]), next(c([A, B, E]), next(c([A, B]), null)));
  const moved = slotsWhere(g3, (v) => v === 'E/A');
  assert.ok(moved.length > 0 && slotsWhere(g3, (v) => v === 'E/B').length > 0);
  const silentH1 = new Set(['h1']);
  // h1's agent stopped: no fresh report (the planner core counts 0 for a host it no longer waits for).
  const silentStep = (config: Config, latest: Generation) =>
    planNext({ config, latest, connections: zero, now: 0, silentHosts: silentH1 });
  // The old behaviour, the same zero counts without the silent set: A leaves every chain (its connections break).
  for (const s of moved) assert.equal(view(next(c([A, B, E]), g3))[s], 'E');
  const kept = silentStep(c([A, B, E]), g3).next!;
  for (const s of moved) assert.equal(view(kept)[s], 'E/A', `slot ${s}: A stays, its connections unknown`);
  assert.equal(slotsWhere(kept, (v) => v === 'E/B').length, 0, 'B (h2 reported 0) leaves its chains');

  // C added on h3: slots with an owner on h1 do not move (silent-host, naming h1); the others move.
  const s4 = silentStep(c([A, B, C, E]), kept);
  const g4 = s4.next!;
  assert.ok(g4, 'slots without an owner on h1 still move');
  const held = s4.notes.filter((n) => n.kind === 'silent-host');
  assert.ok(held.length > 0, 'some slots wait on h1');
  const ownersOf = (g: Generation, s: number) => {
    const l = planLanes(pool(g));
    return [...l.slice(s * LANES, s * LANES + LANES)].map((m) =>
      m === NO_OWNER ? '-' : pool(g).members[m].key,
    );
  };
  for (const n of held) {
    assert.equal(n.host, 'h1');
    assert.match(n.message, /^web slots? .* wait on silent host h1: no move to 10\.0\.1\.3:8080/);
    for (const s of n.slots) {
      assert.deepEqual(ownersOf(g4, s), ownersOf(kept, s), `slot ${s}: same owners in the same lanes`);
      assert.ok(['A', 'E/A'].includes(view(g4)[s]), `slot ${s}: ${view(g4)[s]}`);
    }
  }
  const toC = slotsWhere(g4, (v) => v.endsWith('/C'));
  assert.ok(toC.length > 0, 'slots without an owner on h1 enter phase 1 towards C');
  for (const s of toC) assert.ok(!view(kept)[s].includes('A'), `slot ${s} had no owner on h1`);

  // A backend added on the silent host takes nothing: its host would not know the slots it owns.
  const s5 = silentStep(c([A, B, D, E]), kept);
  const toD = s5.notes.filter((n) => n.kind === 'silent-host' && n.message.includes('(it would not know'));
  assert.ok(toD.length > 0, 'slots whose target is D wait');
  assert.equal(slotsWhere(s5.next ?? kept, (v) => v.includes('D')).length, 0, 'no slot gets D');

  // Evidence that A is gone (the operator's down): A leaves the chains, silent host or not.
  const s6 = silentStep(c([{ ...A, state: 'down' }, B, E]), kept);
  const g6 = s6.next!;
  for (const s of moved) assert.equal(view(g6)[s], 'E', `slot ${s}: A dropped on evidence`);
  // ... but where A is the primary, gateways send to h1: the slot keeps A until h1 reports or leaves the config.
  const onA = slotsWhere(kept, (v) => v === 'A');
  assert.ok(onA.length > 0);
  for (const s of onA) assert.equal(view(g6)[s], 'A', `slot ${s}: a gone primary on the silent host stays`);
  assert.ok(s6.notes.some((n) => n.kind === 'silent-host' && n.slots.includes(onA[0]!)));

  // h1 reports again (0 connections for A): A leaves the chains, the slots are free to move.
  const back = next(c([A, B, C, E]), kept);
  for (const s of moved) assert.notEqual(view(back)[s], 'E/A', `slot ${s}: A left once h1 reported`);
});

test('a backend whose host changes keeps its slots and names its old host until that host reports none of its connections', () => {
  const A = be('A', 'active', 1, 'h2');
  const B = be('B', 'active', 1, 'h1');
  const g1 = next(cfg([A, B]), null);
  const movedA = { ...A, host: 'h1' };
  const onH2 = (n: number | undefined) => (host: string, _lb: string, key: string) =>
    host === 'h2' && key === K('A') ? n : 0;
  const member = (g: Generation) => pool(g).members.find((m) => m.key === K('A'))!;
  const at = (g: Generation, n: number | undefined) =>
    planNext({ config: cfg([movedA, B]), latest: g, connections: zero, now: 0, hostConnections: onH2(n) });

  // The VM moved to h1 while h2 holds 3 of its connections: same slots, same member, new host, old host named.
  const g2 = at(g1, 3).next!;
  assert.deepEqual(view(g2), view(g1), 'no slot moves: the member is the same backend');
  assert.deepEqual(member(g2), { ...member(g1), host: 'h1', movedFrom: 'h2' });
  // While h2 reports connections (or nothing: unknown), nothing changes, and the pool is not taken as settled.
  assert.equal(at(g2, 3).next, null);
  assert.equal(at(g2, undefined).next, null);
  // h2 reports none: the old host is let go in a generation of its own.
  const g3 = at(g2, 0).next!;
  assert.deepEqual(member(g3), { ...member(g1), host: 'h1' });
  assert.equal('movedFrom' in member(g3), false);
  assert.deepEqual(view(g3), view(g1));

  // Named at the move even if the old host's last report says 0 (it may predate its newest connections); a later
  // report of 0 lets it go.
  assert.equal(member(at(g1, 0).next!).movedFrom, 'h2');
  const back = planNext({
    config: cfg([A, B]),
    latest: g2,
    connections: zero,
    now: 0,
    hostConnections: () => 5,
  }).next!;
  assert.equal(member(back).host, 'h2');
  assert.equal(member(back).movedFrom, 'h1', 'back on h2: h1 holds the connections made while it was there');

  // OVN's way: unbound (removed from the load balancer), then bound on h1 (added there). The removal keeps the
  // member on h2 (it is still referenced); the add names h2 as the old host.
  const removed = next(cfg([B]), g1);
  assert.equal(member(removed).host, 'h2');
  const readded = planNext({
    config: cfg([movedA, B]),
    latest: removed,
    connections: zero,
    now: 0,
    hostConnections: onH2(2),
  }).next!;
  assert.equal(member(readded).host, 'h1');
  assert.equal(member(readded).movedFrom, 'h2');

  // The old host leaving the config lets it go (its connections are gone with it).
  const noH2 = cfg([movedA, B], 4, { nodes: NODES.filter((n) => n.name !== 'h2') });
  const g4 = planNext({ config: noH2, latest: g2, connections: zero, now: 0, hostConnections: onH2(3) })
    .next!;
  assert.equal('movedFrom' in member(g4), false);
});

test('property: a step on the config and generation of an earlier quiet step plans what a fresh step plans', () => {
  // The cache remembers, per (config, latest) that published nothing, which pools it stepped; planNext without it
  // visits every pool.
  const other = { name: 'api', vip: '10.9.9.8', family: 4 as const, protocol: 'tcp' as const, ports: [80] };
  let quietSteps = 0;
  fc.assert(
    fc.property(
      fc.array(fc.tuple(arbBackends, arbBackends), { minLength: 2, maxLength: 4 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.boolean(), fc.integer({ min: 1, max: 40 })), {
        minLength: 4,
        maxLength: 12,
      }),
      (changes, steps) => {
        let latest: Generation | null = null;
        let now = 0;
        const cache = new PlanCache();
        for (const [web, api] of changes) {
          const config = cfg(web, 4, {
            drainWindowSeconds: 30,
            loadBalancers: [{ ...other, backends: api }],
          });
          for (const [busy, silent, seconds] of steps) {
            now += seconds * 1000;
            const input = {
              connections:
                busy === 0 ? zero : busy === 1 ? (_lb: string, slot: number) => slot % 3 : (_lb: string) => 1,
              now,
              ...(silent ? { silentHosts: new Set(['h2']) } : {}),
            };
            const remembered = planNext({ ...input, config, latest, cache });
            const whole = planNext({ ...input, config, latest });
            assert.deepEqual(remembered, whole);
            if (remembered.next === null) quietSteps++;
            else latest = remembered.next;
          }
        }
      },
    ),
    { numRuns: 200, seed: 11 },
  );
  assert.ok(quietSteps > 200, `${quietSteps} quiet steps`);
});

/** Load balancer `lb<i>` with its own VIP (backend keys are compared within one pool). */
const manyLb = (i: number, backends: Backend[]) => ({
  name: `lb${i}`,
  vip: `10.9.8.${i + 1}`,
  family: 4 as const,
  protocol: 'tcp' as const,
  ports: [80],
  backends,
});

/** The generation as the store reads it back: the pools that changed since `before` are new, equal objects (decoded
 *  from their new rows); the others the very objects of `before` (decoded once per row). */
function readBack(next: Generation, before: Generation | null): Generation {
  const pools = new Map(
    [...next.pools].map(([k, p]) => [k, before?.pools.get(k) === p ? p : { ...p }] as const),
  );
  return { ...next, pools };
}

/**
 * Random edits of a few of many load balancers (the others stay the same objects), connection counts, silent hosts
 * and time, generations read back as the store gives them, now and then a load balancer added or removed (and so
 * pools that grow or would shrink): planNext with one planner's cache against planNext without one, at every step.
 * `breakIt` may tamper with each config. Returns how many steps the cache answered without a whole step.
 */
function cacheAgainstWhole(seed: number, breakIt?: (config: Config, rnd: () => number) => void): number {
  const rnd = random(seed);
  const pickOf = <T>(xs: readonly T[]): T => pick(rnd, xs);
  const states = ['active', 'active', 'active', 'draining', 'down'] as const;
  const backends = (): Backend[] =>
    ['A', 'B', 'C', 'D', 'E', 'F'].filter(() => rnd() < 0.6).map((n) => be(n, pickOf(states)));
  let lbs = Array.from({ length: 8 }, (_, i) => manyLb(i, backends()));
  let config: Config | undefined;
  let latest: Generation | null = null;
  let now = 0;
  let fast = 0;
  const cache = new PlanCache();
  for (let step = 0; step < 400; step++) {
    const roll = rnd();
    if (roll < 0.25) {
      const i = Math.floor(rnd() * lbs.length);
      lbs = lbs.map((lb, j) => (j === i ? manyLb(Number(lb.name.slice(2)), backends()) : lb));
    } else if (roll < 0.28 && lbs.length > 2) {
      const i = Math.floor(rnd() * lbs.length);
      lbs = lbs.filter((_, j) => j !== i);
    } else if (roll < 0.31) {
      const free = [8, 9, 10, 11].filter((i) => !lbs.some((lb) => lb.name === `lb${i}`));
      if (free.length > 0) lbs = [...lbs, manyLb(pickOf(free), backends())];
    }
    // Mostly a new config object (what an edit gives), else the same one again (a step on the same inputs).
    if (config === undefined || config.loadBalancers !== lbs || rnd() < 0.7)
      config = { ...cfg([], 4, { chainLength: 2 }), loadBalancers: lbs };
    const current: Config = config;
    breakIt?.(current, rnd);
    now += 1000 * (1 + Math.floor(rnd() * 20));
    const busy = rnd();
    const input: PlanInput = {
      config: current,
      latest,
      connections: busy < 0.5 ? zero : busy < 0.8 ? (_lb: string, slot: number) => slot % 2 : () => 1,
      now,
      ...(rnd() < 0.1 ? { silentHosts: new Set(['h2']) } : {}),
    };
    const remembered = planNext({ ...input, cache });
    if (cache.last?.whole === false) fast++;
    const whole = planNext(input);
    assert.deepEqual(remembered, whole, `seed ${seed} step ${step}`);
    // The same inputs again (a publication that failed, the status page's step): the same answer.
    if (rnd() < 0.3)
      assert.deepEqual(planNext({ ...input, cache }), whole, `seed ${seed} step ${step} again`);
    // Mostly published and read back; else the same latest again (a publication that failed, the status page).
    if (remembered.next !== null && rnd() < 0.8) latest = readBack(remembered.next, latest);
  }
  return fast;
}

test('a planner cache over edits of a few of many load balancers plans what a whole step plans', () => {
  for (const seed of [1, 2, 3]) {
    const fast = cacheAgainstWhole(seed);
    // Most steps are answered from the cache, visiting what changed.
    assert.ok(fast > 250, `seed ${seed}: ${fast} of 400 steps answered by the cache`);
  }
});

test('negative control: a load balancer changed behind the same object is caught by the comparison', () => {
  // The cache trusts identity: a load balancer whose backends are replaced in place is not visited again.
  assert.throws(
    () =>
      cacheAgainstWhole(4, (config, rnd) => {
        if (rnd() < 0.2) {
          const lb = config.loadBalancers[0] as unknown as { backends: Backend[] };
          lb.backends = lb.backends.length > 1 ? lb.backends.slice(1) : [be('A'), be('B'), be('C')];
        }
      }),
    assert.AssertionError,
  );
});
