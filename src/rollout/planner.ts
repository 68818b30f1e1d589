// The rollout planner core: from the desired config and the latest published generation, the next generation
// (or nothing: done, or waiting). Pure: the caller gates publication on acknowledgements (canPublish), supplies
// live connection counts and the clock. Design, transition table and safety argument: docs/design/rollout.md.

import {
  buildTable,
  NO_OWNER as NO_OWNER_IMPORT,
  type PoolMember,
  type SlotTable,
} from '../hashing/slots.ts';
import type { Backend, Config, LoadBalancer } from '../model/types.ts';
import { backendKey } from '../model/types.ts';
import type { Generation, PlanMember, PoolPlan } from './types.ts';
import * as T from './types.ts';

/**
 * Live connections that `key` holds for `slot` of load balancer `lb` (slot numbered with `bits` bits), from host
 * reports taken after every live gateway acknowledged the latest generation. `undefined` = not known yet: the
 * planner then treats the second chance as still in use (it waits).
 */
export type ConnectionCounts = (lb: string, slot: number, key: string, bits: number) => number | undefined;

export interface PlanInput {
  readonly config: Config;
  /** The latest published generation; null: none yet (the result is the initial generation). */
  readonly latest: Generation | null;
  readonly connections: ConnectionCounts;
  /** The planner's clock, ms. */
  readonly now: number;
}

export type NoteKind =
  | 'initial' // a pool built from scratch (first generation, or a new load balancer)
  | 'removed-lb' // a load balancer left the config: its pool is gone (its connections too)
  | 'grow' // slot bits grew: every slot duplicated, nothing moves
  | 'bits-decrease-refused' // slot bits would shrink: refused, the pool keeps its bits
  | 'phase1' // slots enter phase 1 (P, N)
  | 'phase2' // slots enter phase 2 (N, P)
  | 'retarget' // a phase-1 slot's incoming owner changed before anyone sent to it
  | 'stable' // slots drop a second chance nobody uses any more
  | 'down-primary' // slots whose primary is down are handed to a live owner
  | 'waits' // slots that cannot move yet: their second chance still has connections
  | 'gave-up' // second chances dropped with connections: the drain window passed
  | 'no-owner'; // the pool has no backend that takes slots: slots keep their owners

export interface PlanNote {
  readonly lb: string;
  readonly kind: NoteKind;
  /** Slots concerned (ascending). */
  readonly slots: readonly number[];
  /** The backend the note is about (the second chance that waits or was given up, ...). */
  readonly backend?: string;
  /** Connections concerned (waits, gave-up); undefined when not reported. */
  readonly connections?: number;
  readonly message: string;
}

export interface PlanStep {
  /** The generation to publish next, or null: nothing to do, or every remaining change waits. */
  readonly next: Generation | null;
  readonly notes: readonly PlanNote[];
}

/** How a backend key stands in the desired config of one load balancer. */
interface MemberStatus {
  readonly member: PlanMember;
  /** Admin state; undefined = removed from the config (still referenced by the latest plan). */
  readonly admin: Backend['state'] | undefined;
  /** Down: admin down, or removed together with its host. Its connections are gone. */
  readonly down: boolean;
}

/** A module-local copy: an imported binding may be a getter under some loaders, and the slot loops are hot. */
const NO_OWNER: number = NO_OWNER_IMPORT;
const PHASE_STABLE: number = T.PHASE_STABLE;
const PHASE1: number = T.PHASE1;
const PHASE2: number = T.PHASE2;

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function planMember(b: Backend): PlanMember {
  return { key: backendKey(b), address: b.address, port: b.port, host: b.host };
}

/** The pool buildTable balances: active backends with their weight, draining/down with 0, removed ones absent. */
export function desiredPool(lb: LoadBalancer): PoolMember[] {
  return lb.backends.map((b) => ({ key: backendKey(b), weight: b.state === 'active' ? b.weight : 0 }));
}

function emptyPlan(lb: string, bits: number, members: PlanMember[], primary: Uint16Array): PoolPlan {
  const size = 1 << bits;
  return {
    lb,
    bits,
    members,
    primary,
    second: new Uint16Array(size).fill(NO_OWNER),
    phase: new Uint8Array(size),
    since: new Float64Array(size),
  };
}

/** A pool from scratch: stable, no second chances. */
function initialPool(lb: LoadBalancer, bits: number): PoolPlan {
  const members = lb.backends.map(planMember).sort((a, b) => compareKeys(a.key, b.key));
  const table = buildTable(desiredPool(lb), bits);
  // buildTable's members are the same keys in the same canonical order.
  return emptyPlan(lb.name, bits, members, table.owners.slice());
}

/** Duplicates every slot up to `bits` (slot s + j*2^old keeps everything slot s has): moves nothing. */
export function growPool(plan: PoolPlan, bits: number): PoolPlan {
  const size = 1 << bits;
  const grow = <T extends Uint16Array | Uint8Array | Float64Array>(a: T, out: T): T => {
    out.set(a);
    for (let len = a.length; len < size; len *= 2) out.copyWithin(len, 0, len);
    return out;
  };
  return {
    lb: plan.lb,
    bits,
    members: plan.members,
    primary: grow(plan.primary, new Uint16Array(size)),
    second: grow(plan.second, new Uint16Array(size)),
    phase: grow(plan.phase, new Uint8Array(size)),
    since: grow(plan.since, new Float64Array(size)),
  };
}

/** The table of effective owners: the incoming owner N for phase-1 slots, the primary otherwise. */
export function effectiveOwners(plan: PoolPlan): SlotTable {
  const owners = new Uint16Array(plan.primary.length);
  for (let s = 0; s < owners.length; s++) {
    owners[s] = plan.phase[s] === PHASE1 ? plan.second[s] : plan.primary[s];
  }
  return { bits: plan.bits, members: plan.members.map((m) => m.key), owners };
}

const NOTE_KINDS: readonly NoteKind[] = [
  'phase1',
  'retarget',
  'phase2',
  'stable',
  'down-primary',
  'waits',
  'gave-up',
  'no-owner',
];

/**
 * Groups per-slot events into notes, one per (kind, a, b) where a and b are member indices (or NO_OWNER); the
 * message is written once per group, at flush.
 */
class Notes {
  readonly #lb: string;
  readonly #groups = new Map<number, { slots: number[]; conns: number | undefined }>();
  constructor(lb: string) {
    this.#lb = lb;
  }

  add(kind: NoteKind, slot: number, a: number, b: number, conns?: number): void {
    const id = (NOTE_KINDS.indexOf(kind) * 0x10000 + a) * 0x10000 + b;
    let g = this.#groups.get(id);
    if (g === undefined) {
      g = { slots: [], conns: 0 };
      this.#groups.set(id, g);
    }
    g.slots.push(slot);
    if (conns === undefined || g.conns === undefined) g.conns = undefined;
    else g.conns += conns;
  }

  flush(keys: readonly string[]): PlanNote[] {
    const out: PlanNote[] = [];
    const ids = [...this.#groups.keys()].sort((x, y) => x - y);
    for (const id of ids) {
      const g = this.#groups.get(id)!;
      const kind = NOTE_KINDS[Math.floor(id / 0x100000000)];
      const ai = Math.floor(id / 0x10000) % 0x10000;
      const bi = id % 0x10000;
      const a = ai === NO_OWNER ? '' : keys[ai];
      const b = bi === NO_OWNER ? '' : keys[bi];
      const shown =
        g.slots.slice(0, 8).join(', ') + (g.slots.length > 8 ? `, ... (${g.slots.length} slots)` : '');
      const which = g.slots.length === 1 ? `slot ${shown}` : `slots ${shown}`;
      let detail: string;
      let backend: string | undefined = a;
      switch (kind) {
        case 'phase1':
          detail = `enter phase 1: ${a} primary, ${b} incoming`;
          backend = b;
          break;
        case 'retarget':
          detail = `change incoming owner ${a} -> ${b} (nobody sent to ${a} yet)`;
          backend = b;
          break;
        case 'phase2':
          detail = `enter phase 2: ${a} primary, ${b} second chance`;
          break;
        case 'stable':
          detail = `stable on ${a}: second chance ${b} dropped (no connections left)`;
          break;
        case 'down-primary':
          detail = `primary ${a} is down, second chance ${b} in use: ${b} takes them back`;
          break;
        case 'waits':
          detail = `wait: second chance ${a} has ${connText(g.conns)}`;
          break;
        case 'gave-up':
          detail = `drop second chance ${a} with ${connText(g.conns)}: the drain window passed`;
          break;
        default:
          detail = 'keep their owners: no backend of the pool takes slots';
          backend = undefined;
      }
      out.push({
        lb: this.#lb,
        kind,
        slots: g.slots,
        ...(backend !== undefined ? { backend } : {}),
        ...(kind === 'waits' || kind === 'gave-up' ? { connections: g.conns } : {}),
        message: `${this.#lb} ${which} ${detail}`,
      });
    }
    this.#groups.clear();
    return out;
  }
}

function connText(n: number | undefined): string {
  return n === undefined ? 'unreported connections' : n === 1 ? '1 connection' : `${n} connections`;
}

/**
 * One planner step for one existing pool (same bits as `prev`). Returns the next plan, or `prev` itself when
 * nothing changes. Rules (docs/design/rollout.md, "Transitions"), per slot (p, s) with T the target owner:
 *   p == T:                  drop the second chance if it is free, else keep waiting.
 *   s == T:                  (T, p) phase 2  [phase1 (P,T) -> (T,P); phase2 (N,P) with target P -> (P,N)]
 *   s != T, s free:          (p, T) phase 1  [stable -> phase 1; phase1 (P,N) retargeted -> (P,C)]
 *   s in use, p down:        (s, p) phase 2  (the second chance takes the SYNs back)
 *   s in use, p up:          wait.
 *   p none (never owned):    (T, none)
 *   T none (no backend takes slots): keep p; drop a free second chance; p down and s in use: (s, p).
 * "s free" = no second chance, or it is down, or it reports 0 connections, or its drain window passed.
 * The previous primary is never dropped in one step, even when down: a gateway still on `prev` may send it a SYN
 * and it may be up again by then.
 */
function stepPool(
  prev: PoolPlan,
  lb: LoadBalancer,
  status: ReadonlyMap<string, MemberStatus>,
  input: PlanInput,
  out: PlanNote[],
): PoolPlan {
  const notes = new Notes(lb.name);
  const { connections, now } = input;
  const bits = prev.bits;
  const size = 1 << bits;
  const windowMs = input.config.drainWindowSeconds * 1000;
  const prevKeys = prev.members.map((m) => m.key);

  // Unified key space: previous members and configured backends.
  const keySet = new Set<string>(prevKeys);
  for (const b of lb.backends) keySet.add(backendKey(b));
  const keys = [...keySet].sort(compareKeys);
  const index = new Map<string, number>();
  for (let i = 0; i < keys.length; i++) index.set(keys[i], i);
  const statusOf = keys.map((k): MemberStatus => {
    const st = status.get(k);
    if (st !== undefined) return st;
    // Removed from the config: still referenced by the latest plan.
    const pm = prev.members.find((m) => m.key === k)!;
    const hostKnown = input.config.nodes.some((n) => n.name === pm.host);
    return { member: pm, admin: undefined, down: !hostKnown };
  });
  const down = Uint8Array.from(statusOf, (st) => (st.down ? 1 : 0));
  const fromPrev = Uint16Array.from(prevKeys, (k) => index.get(k)!);
  const u = (i: number): number => (i === NO_OWNER ? NO_OWNER : fromPrev[i]);

  // The second chance of each slot: in use (must be kept), and its connections.
  const conns = new Array<number | undefined>(size);
  const secondBusy = new Uint8Array(size); // 1 = in use, 2 = in use but its drain window passed
  for (let s = 0; s < size; s++) {
    const sec = prev.second[s];
    if (sec === NO_OWNER) continue;
    const st = statusOf[u(sec)];
    if (st.down) continue;
    const n = connections(lb.name, s, st.member.key, bits);
    conns[s] = n;
    if (n === 0) continue;
    // since 0 = not known (e.g. a plan read back from a store that does not keep it): never expires.
    const from = prev.since[s];
    secondBusy[s] = from > 0 && now - from >= windowMs ? 2 : 1;
  }
  const keep = new Uint8Array(size);
  for (let s = 0; s < size; s++) if (secondBusy[s] === 1 && prev.phase[s] === PHASE2) keep[s] = 1;

  const target = buildTable(desiredPool(lb), bits, effectiveOwners(prev), { keepSlots: keep });
  const fromTarget = Uint16Array.from(target.members, (k) => index.get(k)!);

  const primary = new Uint16Array(size);
  const second = new Uint16Array(size);
  const phase = new Uint8Array(size);
  const since = new Float64Array(size);

  for (let s = 0; s < size; s++) {
    const p = u(prev.primary[s]);
    const sec = u(prev.second[s]);
    const t = target.owners[s] === NO_OWNER ? NO_OWNER : fromTarget[target.owners[s]];
    const pDown = p !== NO_OWNER && down[p] === 1;
    const busy = secondBusy[s] === 1;
    const free = !busy; // no second chance, down, 0 connections, or its drain window passed
    let np = p;
    let ns = sec;
    let nph = prev.phase[s];

    if (t === NO_OWNER && p !== NO_OWNER) {
      // No backend takes slots: keep the owner (packets keep reaching it, or its host drops them).
      if (pDown && busy) {
        np = sec;
        ns = p;
        nph = PHASE2;
        notes.add('down-primary', s, p, sec);
      } else if (sec !== NO_OWNER && free) {
        ns = NO_OWNER;
      }
      notes.add('no-owner', s, NO_OWNER, NO_OWNER);
    } else if (p === NO_OWNER) {
      np = t;
      ns = NO_OWNER;
    } else if (p === t) {
      if (sec !== NO_OWNER) {
        if (free) ns = NO_OWNER;
        else notes.add('waits', s, sec, NO_OWNER, conns[s]);
      }
    } else if (sec === t) {
      np = t;
      ns = p;
      nph = PHASE2;
    } else if (free) {
      np = p;
      ns = t;
      nph = PHASE1;
    } else if (pDown) {
      // The primary is down, its second chance still in use: the second chance takes the SYNs back; the down
      // primary stays as second chance for one generation (it may come back while gateways still send to it).
      np = sec;
      ns = p;
      nph = PHASE2;
      notes.add('down-primary', s, p, sec);
    } else {
      notes.add('waits', s, sec, NO_OWNER, conns[s]);
    }

    if (ns === NO_OWNER) nph = PHASE_STABLE;
    primary[s] = np;
    second[s] = ns;
    phase[s] = nph;
    since[s] = ns === NO_OWNER ? 0 : ns === sec ? prev.since[s] : now;

    // A second chance dropped (or replaced) while still reporting connections: given up on purpose.
    if (sec !== NO_OWNER && ns !== sec && np !== sec && secondBusy[s] === 2) {
      notes.add('gave-up', s, sec, NO_OWNER, conns[s]);
    }
    if (np !== p || ns !== sec) {
      if (nph === PHASE1 && p === np && sec !== NO_OWNER && sec !== ns) {
        notes.add('retarget', s, sec, ns);
      } else if (nph === PHASE1 && p === np) {
        notes.add('phase1', s, p, ns);
      } else if (nph === PHASE2) {
        notes.add('phase2', s, np, ns);
      } else if (ns === NO_OWNER && np === p) {
        notes.add('stable', s, p, sec);
      }
    }
  }

  // Members keep their positions across generations: the Geneve metadata carries a member's index, and a
  // gateway one generation behind must mean the same backend by it as the hosts do. New backends take the
  // position of a member that is neither configured nor referenced by `prev` or by this plan (nobody can
  // still send that index), else a new position at the end. Unreferenced removed members stay until reused.
  const used = new Uint8Array(keys.length);
  for (let s = 0; s < size; s++) {
    if (primary[s] !== NO_OWNER) used[primary[s]] = 1;
    if (second[s] !== NO_OWNER) used[second[s]] = 1;
  }
  const usedPrev = new Uint8Array(prevKeys.length);
  for (let s = 0; s < size; s++) {
    if (prev.primary[s] !== NO_OWNER) usedPrev[prev.primary[s]] = 1;
    if (prev.second[s] !== NO_OWNER) usedPrev[prev.second[s]] = 1;
  }
  const position = new Uint16Array(keys.length).fill(NO_OWNER);
  const members: PlanMember[] = [];
  const reusable: number[] = [];
  for (let i = 0; i < prevKeys.length; i++) {
    const k = fromPrev[i];
    position[k] = i;
    members.push(statusOf[k].member);
    if (status.get(prevKeys[i]) === undefined && usedPrev[i] === 0 && used[k] === 0) reusable.push(i);
  }
  let nextFree = 0;
  for (let k = 0; k < keys.length; k++) {
    if (position[k] !== NO_OWNER || status.get(keys[k]) === undefined) continue;
    const at = nextFree < reusable.length ? reusable[nextFree++] : members.length;
    position[k] = at;
    members[at] = statusOf[k].member;
  }
  for (let s = 0; s < size; s++) {
    if (primary[s] !== NO_OWNER) primary[s] = position[primary[s]];
    if (second[s] !== NO_OWNER) second[s] = position[second[s]];
  }
  out.push(...notes.flush(keys));
  const next: PoolPlan = { lb: lb.name, bits, members, primary, second, phase, since };
  return samePlan(prev, next) ? prev : next;
}

function sameMember(a: PlanMember, b: PlanMember): boolean {
  return a.key === b.key && a.address === b.address && a.port === b.port && a.host === b.host;
}

function sameArray(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Same slots, phases and members (ignores `since`, which only changes with the second chance). */
export function samePlan(a: PoolPlan, b: PoolPlan): boolean {
  return (
    a.bits === b.bits &&
    a.members.length === b.members.length &&
    a.members.every((m, i) => sameMember(m, b.members[i])) &&
    sameArray(a.primary, b.primary) &&
    sameArray(a.second, b.second) &&
    sameArray(a.phase, b.phase)
  );
}

function statusMap(lb: LoadBalancer): Map<string, MemberStatus> {
  const out = new Map<string, MemberStatus>();
  for (const b of lb.backends) {
    out.set(backendKey(b), { member: planMember(b), admin: b.state, down: b.state === 'down' });
  }
  return out;
}

/**
 * The next generation to publish after `input.latest`, or null (nothing to do, or everything left waits), with
 * notes saying what moves, what waits and why. Call it only when every live gateway acknowledged
 * `input.latest` (canPublish), with connection counts reported after that.
 *
 * - No latest: the initial generation, every pool stable from scratch.
 * - A pool whose slot bits are below `config.slotBits` first gets a generation that only grows every such pool
 *   (duplicates slots: nothing moves); the phases follow. Slot bits never shrink: the pool keeps its bits and a
 *   `bits-decrease-refused` note says so on every step.
 * - New load balancers start stable from scratch; removed ones are dropped (their connections end).
 */
export function planNext(input: PlanInput): PlanStep {
  const { config, latest } = input;
  const bits = config.slotBits;
  const notes: PlanNote[] = [];
  if (latest === null) {
    const pools = new Map<string, PoolPlan>();
    for (const lb of config.loadBalancers) {
      pools.set(lb.name, initialPool(lb, bits));
      notes.push({
        lb: lb.name,
        kind: 'initial',
        slots: [],
        message: `${lb.name}: initial table, ${1 << bits} slots`,
      });
    }
    return { next: { number: 1, createdAt: input.now, pools }, notes };
  }

  const byName = new Map(config.loadBalancers.map((lb) => [lb.name, lb]));
  for (const [name, plan] of latest.pools) {
    if (byName.has(name) && plan.bits > bits) {
      notes.push({
        lb: name,
        kind: 'bits-decrease-refused',
        slots: [],
        message: `${name}: slot bits ${plan.bits} -> ${bits} refused (shrinking would move connections); keeps ${plan.bits}`,
      });
    }
  }

  // Growing first, alone: a generation that moves nothing.
  const growing = [...latest.pools.values()].filter((p) => byName.has(p.lb) && p.bits < bits);
  if (growing.length > 0) {
    const pools = new Map(latest.pools);
    for (const p of growing) {
      pools.set(p.lb, growPool(p, bits));
      notes.push({
        lb: p.lb,
        kind: 'grow',
        slots: [],
        message: `${p.lb}: slot bits ${p.bits} -> ${bits}, every slot duplicated (nothing moves)`,
      });
    }
    return { next: { number: latest.number + 1, createdAt: input.now, pools }, notes };
  }

  let changed = false;
  const pools = new Map<string, PoolPlan>();
  for (const name of latest.pools.keys()) {
    if (!byName.has(name)) {
      changed = true;
      notes.push({ lb: name, kind: 'removed-lb', slots: [], message: `${name}: removed from the config` });
    }
  }
  for (const lb of config.loadBalancers) {
    const prev = latest.pools.get(lb.name);
    if (prev === undefined) {
      pools.set(lb.name, initialPool(lb, bits));
      notes.push({ lb: lb.name, kind: 'initial', slots: [], message: `${lb.name}: new, ${1 << bits} slots` });
      changed = true;
      continue;
    }
    const next = stepPool(prev, lb, statusMap(lb), input, notes);
    if (next !== prev) changed = true;
    pools.set(lb.name, next);
  }
  if (!changed) return { next: null, notes };
  return { next: { number: latest.number + 1, createdAt: input.now, pools }, notes };
}

/**
 * Whether the next generation may be published: every live gateway acknowledged `latest` (so no gateway can
 * end up two generations apart from another). `acks`: live gateway name -> the generation it applied.
 */
export function canPublish(acks: ReadonlyMap<string, number>, latest: Generation | number | null): boolean {
  return waitingGateways(acks, latest).length === 0;
}

/** The live gateways that have not acknowledged `latest` yet (sorted). */
export function waitingGateways(
  acks: ReadonlyMap<string, number>,
  latest: Generation | number | null,
): string[] {
  if (latest === null) return [];
  const n = typeof latest === 'number' ? latest : latest.number;
  return [...acks]
    .filter(([, g]) => g < n)
    .map(([gw]) => gw)
    .sort(compareKeys);
}

/** The offline plan of a change and the notes of every step. */
export interface RolloutPlan {
  /** The generation of `from` (number 1) followed by each step towards `to`. */
  readonly generations: readonly Generation[];
  /** notes[i]: the notes of the step that made generations[i]. */
  readonly notes: readonly (readonly PlanNote[])[];
}

/** Steps more than this mean a planner bug (a normal change needs at most grow + 3 phases + a retarget). */
const MAX_OFFLINE_STEPS = 64;

/**
 * Plans a whole change offline (`sluice plan --from`), assuming every acknowledgement arrives and every
 * connection drains (counts 0) between steps.
 */
export function planRolloutDetailed(from: Config, to: Config): RolloutPlan {
  const zero: ConnectionCounts = () => 0;
  const first = planNext({ config: from, latest: null, connections: zero, now: 0 });
  const generations: Generation[] = [first.next!];
  const notes: (readonly PlanNote[])[] = [first.notes];
  for (let i = 1; ; i++) {
    if (i > MAX_OFFLINE_STEPS)
      throw new Error(`planRollout: no fixed point after ${MAX_OFFLINE_STEPS} steps`);
    const step = planNext({
      config: to,
      latest: generations[generations.length - 1],
      connections: zero,
      now: i,
    });
    if (step.next === null) break;
    generations.push(step.next);
    notes.push(step.notes);
  }
  return { generations, notes };
}

/** The generations a change rolls out in: `from`'s generation first, then each step towards `to`. */
export function planRollout(from: Config, to: Config): Generation[] {
  return [...planRolloutDetailed(from, to).generations];
}
