// Summaries of plans for people (`sluice plan`, status pages): slots per backend, balance against the weighted
// share, phases, and what each generation of a rollout moves. Pure.

import { NO_OWNER, quotas } from '../hashing/slots.ts';
import type { AdminState, Config, LoadBalancer } from '../model/types.ts';
import { backendKey } from '../model/types.ts';
import { type BackendState, backendState } from './backend-state.ts';
import { desiredPool } from './planner.ts';
import { type Generation, PHASE1, PHASE2, type PoolPlan } from './types.ts';

export interface MemberSummary {
  readonly key: string;
  readonly host: string;
  /** Admin state from the config; 'removed' = not in the config any more (the plan still refers to it). */
  readonly admin: AdminState | 'removed';
  readonly state: BackendState;
  /** Weight that takes slots: the configured weight if active, else 0. */
  readonly weight: number;
  /** Slots where it is the primary. */
  readonly primary: number;
  /** Slots where it is the second chance. */
  readonly second: number;
  /** Slots it holds once the rollout completes (hashing/slots.ts quotas). */
  readonly quota: number;
  /** Exact weighted share: 2^bits * weight / total weight. */
  readonly share: number;
}

export interface PoolSummary {
  readonly lb: string;
  readonly bits: number;
  readonly slots: number;
  readonly members: readonly MemberSummary[];
  readonly stable: number;
  readonly phase1: number;
  readonly phase2: number;
  /** Slots with no primary (packets dropped). */
  readonly noOwner: number;
  /**
   * Over the members that take slots (weight > 0): fewest and most primary slots, their difference, and the
   * largest |primary slots - share| (below 1 once a rollout completed; hashing/slots.ts guarantee).
   */
  readonly balance: {
    readonly min: number;
    readonly max: number;
    readonly spread: number;
    readonly maxDeviation: number;
  };
}

/** Summary of one pool plan; `lb` (the load balancer in the desired config) gives weights, states and quotas. */
export function summarizePool(plan: PoolPlan, lb?: LoadBalancer): PoolSummary {
  const size = plan.primary.length;
  const n = plan.members.length;
  const prim = new Int32Array(n);
  const sec = new Int32Array(n);
  let phase1 = 0;
  let phase2 = 0;
  let noOwner = 0;
  for (let s = 0; s < size; s++) {
    if (plan.primary[s] === NO_OWNER) noOwner++;
    else prim[plan.primary[s]]++;
    if (plan.second[s] !== NO_OWNER) sec[plan.second[s]]++;
    if (plan.phase[s] === PHASE1) phase1++;
    else if (plan.phase[s] === PHASE2) phase2++;
  }
  const backends = new Map((lb?.backends ?? []).map((b) => [backendKey(b), b]));
  const pool = lb === undefined ? [] : desiredPool(lb);
  const q = pool.length > 0 ? quotas(pool, plan.bits) : new Map<string, number>();
  const totalWeight = pool.reduce((t, m) => t + m.weight, 0);
  const members: MemberSummary[] = plan.members.map((m, i) => {
    const b = backends.get(m.key);
    const weight = b !== undefined && b.state === 'active' ? b.weight : 0;
    const quota = q.get(m.key) ?? 0;
    return {
      key: m.key,
      host: m.host,
      admin: b?.state ?? 'removed',
      state: backendState(b?.state, prim[i], quota),
      weight,
      primary: prim[i],
      second: sec[i],
      quota,
      share: totalWeight > 0 ? (size * weight) / totalWeight : 0,
    };
  });
  const taking = members.filter((m) => m.weight > 0);
  const counts = taking.map((m) => m.primary);
  const min = counts.length > 0 ? Math.min(...counts) : 0;
  const max = counts.length > 0 ? Math.max(...counts) : 0;
  const maxDeviation = taking.reduce((d, m) => Math.max(d, Math.abs(m.primary - m.share)), 0);
  return {
    lb: plan.lb,
    bits: plan.bits,
    slots: size,
    members,
    stable: size - phase1 - phase2,
    phase1,
    phase2,
    noOwner,
    balance: { min, max, spread: max - min, maxDeviation },
  };
}

export interface PoolStepSummary {
  readonly lb: string;
  /** Slots whose primary changed from the previous generation (slot s against s mod size when bits grew). */
  readonly moved: number;
  /** Slots whose second chance changed. */
  readonly secondChanged: number;
  readonly phase1: number;
  readonly phase2: number;
  readonly bits: number;
}

export interface GenerationSummary {
  readonly number: number;
  readonly pools: readonly PoolStepSummary[];
}

function keyAt(plan: PoolPlan | undefined, arr: 'primary' | 'second', slot: number): string | undefined {
  if (plan === undefined) return undefined;
  const i = plan[arr][slot & (plan[arr].length - 1)];
  return i === NO_OWNER ? undefined : plan.members[i].key;
}

/** What each generation changes against the one before it (the first against nothing). */
export function summarizeRollout(generations: readonly Generation[]): GenerationSummary[] {
  return generations.map((g, gi) => {
    const before = gi > 0 ? generations[gi - 1] : undefined;
    const pools: PoolStepSummary[] = [];
    for (const plan of g.pools.values()) {
      const prev = before?.pools.get(plan.lb);
      let moved = 0;
      let secondChanged = 0;
      let phase1 = 0;
      let phase2 = 0;
      for (let s = 0; s < plan.primary.length; s++) {
        if (keyAt(plan, 'primary', s) !== keyAt(prev, 'primary', s)) moved++;
        if (keyAt(plan, 'second', s) !== keyAt(prev, 'second', s)) secondChanged++;
        if (plan.phase[s] === PHASE1) phase1++;
        else if (plan.phase[s] === PHASE2) phase2++;
      }
      pools.push({ lb: plan.lb, moved, secondChanged, phase1, phase2, bits: plan.bits });
    }
    return { number: g.number, pools };
  });
}

// ---------------------------------------------------------------------------------------------------------
// What a generation moves, by name: "web: 21 slots 10.0.1.11:80 -> 10.0.2.12:80, phase 1"

/**
 * Where a group of slots stands after a generation:
 * - `phase 1`: `from` is still the primary, `to` is its second chance (new connections still go to `from`);
 * - `phase 2`: `to` is the primary, `from` its second chance (keeps `from`'s connections alive);
 * - `at once`: the primary changed with no second chance (a down backend, or nothing to keep);
 * - `done`: `from`'s second chance was dropped (no connections left, or the drain window passed).
 */
export type MoveStep = 'phase 1' | 'phase 2' | 'at once' | 'done';

export interface SlotMove {
  readonly lb: string;
  /** Backend key the slots leave (null: they had no owner). */
  readonly from: string | null;
  /** Backend key the slots go to (null: no owner, packets dropped). */
  readonly to: string | null;
  readonly step: MoveStep;
  readonly slots: number;
}

const STEP_ORDER: Record<MoveStep, number> = { 'phase 1': 0, 'phase 2': 1, 'at once': 2, done: 3 };

/** One slot's state, keys instead of indices; `size` of the plan's table folds a grown slot onto its origin. */
function slotState(plan: PoolPlan | undefined, s: number): string {
  if (plan === undefined) return '';
  return `${keyAt(plan, 'primary', s) ?? ''} ${keyAt(plan, 'second', s) ?? ''} ${plan.phase[s & (plan.phase.length - 1)]}`;
}

/** The slots whose primary, second chance or phase changed between `prev` and `next`, grouped by what moved. */
export function describeMoves(prev: PoolPlan | undefined, next: PoolPlan): SlotMove[] {
  if (prev === undefined) return [];
  const groups = new Map<string, SlotMove>();
  for (let s = 0; s < next.primary.length; s++) {
    if (slotState(prev, s) === slotState(next, s)) continue;
    const primary = keyAt(next, 'primary', s) ?? null;
    const second = keyAt(next, 'second', s) ?? null;
    const before = keyAt(prev, 'primary', s) ?? null;
    let from: string | null;
    let to: string | null;
    let step: MoveStep;
    if (next.phase[s] === PHASE1) [from, to, step] = [primary, second, 'phase 1'];
    else if (next.phase[s] === PHASE2) [from, to, step] = [second, primary, 'phase 2'];
    else if (primary !== before) [from, to, step] = [before, primary, 'at once'];
    else [from, to, step] = [keyAt(prev, 'second', s) ?? null, primary, 'done'];
    const k = `${from} ${to} ${step}`;
    const g = groups.get(k);
    groups.set(k, { lb: next.lb, from, to, step, slots: (g?.slots ?? 0) + 1 });
  }
  return [...groups.values()].sort(
    (a, b) =>
      STEP_ORDER[a.step] - STEP_ORDER[b.step] ||
      b.slots - a.slots ||
      String(a.from).localeCompare(String(b.from)),
  );
}

/** "web: 21 slots 10.0.1.11:80 -> 10.0.2.12:80, phase 1" */
export function formatMove(m: SlotMove): string {
  const n = `${m.slots} slot${m.slots === 1 ? '' : 's'}`;
  const from = m.from ?? '(no owner)';
  const to = m.to ?? '(no owner)';
  if (m.step === 'done') return `${m.lb}: ${n} on ${to}, second chance ${from} dropped`;
  return `${m.lb}: ${n} ${from} -> ${to}, ${m.step}`;
}

/**
 * What generation `next` moves against `prev`, one phrase per group of slots (pools in `next` order); new and
 * removed load balancers and grown tables named too. Empty: only the config changed (no slot moved).
 */
export function describeGeneration(prev: Generation | null | undefined, next: Generation): string[] {
  const out: string[] = [];
  for (const plan of next.pools.values()) {
    const before = prev?.pools.get(plan.lb);
    if (before === undefined) {
      out.push(`${plan.lb}: new, ${plan.primary.length} slots`);
      continue;
    }
    if (before.bits !== plan.bits)
      out.push(`${plan.lb}: ${before.primary.length} -> ${plan.primary.length} slots`);
    out.push(...describeMoves(before, plan).map(formatMove));
  }
  for (const lb of prev?.pools.keys() ?? []) if (!next.pools.has(lb)) out.push(`${lb}: removed`);
  return out;
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}

/** Text for one pool: a line per member, then the balance. */
export function formatPool(summary: PoolSummary): string {
  const lines: string[] = [];
  const s = summary;
  lines.push(
    `${s.lb}: ${s.slots} slots (k=${s.bits}); stable ${s.stable}, phase 1 ${s.phase1}, phase 2 ${s.phase2}` +
      (s.noOwner > 0 ? `, no owner ${s.noOwner}` : ''),
  );
  const width = Math.max(8, ...s.members.map((m) => m.key.length));
  for (const m of s.members) {
    lines.push(
      `  ${m.key.padEnd(width)}  ${m.host.padEnd(8)} ${m.state.padEnd(8)} weight ${String(m.weight).padStart(3)}  ` +
        `slots ${String(m.primary).padStart(5)} (quota ${m.quota}, share ${fmt(m.share)})` +
        (m.second > 0 ? `  second chance of ${m.second}` : ''),
    );
  }
  const taking = s.members.filter((m) => m.weight > 0 && m.share > 0);
  if (taking.length === 0) {
    lines.push('  balance: no backend takes slots (none active)');
  } else {
    // Slots per weighted share, fewest and most: 1 is exact; the meaningful figure when weights differ.
    const ratios = taking.map((m) => m.primary / m.share);
    lines.push(
      `  balance: min ${s.balance.min}, max ${s.balance.max} (spread ${s.balance.spread}); ` +
        `slots/share ${Math.min(...ratios).toFixed(3)}..${Math.max(...ratios).toFixed(3)}; ` +
        `max |slots - share| ${fmt(s.balance.maxDeviation)}`,
    );
  }
  return lines.join('\n');
}

/**
 * Text for a rollout (`sluice plan --from`): the final tables, then one line per generation with what it moves.
 * `config` is the desired (target) config.
 */
export function formatRollout(config: Config, generations: readonly Generation[]): string {
  const lines: string[] = [];
  const last = generations[generations.length - 1];
  if (last !== undefined) {
    for (const plan of last.pools.values()) {
      lines.push(
        formatPool(
          summarizePool(
            plan,
            config.loadBalancers.find((lb) => lb.name === plan.lb),
          ),
        ),
      );
    }
  }
  lines.push(
    `generations: ${generations.length} (each published once every gateway acknowledged the previous one; ` +
      "offline plan: assumes the previous owners' connections have drained by then)",
  );
  for (const [i, g] of generations.entries()) {
    if (i === 0) {
      const pools = [...g.pools.values()].map((p) => `${p.lb} (${p.primary.length} slots)`).join(', ');
      lines.push(`  generation ${g.number}: initial: ${pools || 'no pools'}`);
      continue;
    }
    const moves = describeGeneration(generations[i - 1], g);
    lines.push(`  generation ${g.number}: ${moves.length === 0 ? 'no slot moves' : moves.join('; ')}`);
  }
  return lines.join('\n');
}
