// The rollout planner core: from the desired config and the latest published generation, the next generation
// (or nothing: done, or waiting). Pure: the caller gates publication on acknowledgements (canPublish), supplies
// live connection counts and the clock. Design, transition table and safety argument: docs/design/rollout.md.

import {
  buildTable,
  NO_OWNER as NO_OWNER_IMPORT,
  type PoolMember,
  type SlotTable,
} from '../hashing/slots.ts';
import { lbSlotBits } from '../model/slot-bits.ts';
import type { Backend, Config, LoadBalancer } from '../model/types.ts';
import { backendKey, DEFAULT_CHAIN_LENGTH } from '../model/types.ts';
import { RETIRED_LB_ID_HOLD_MS, withLbIds } from './lb-ids.ts';
import { changedSince, type LastStep, type PlanCache } from './plan-cache.ts';
import * as T from './types.ts';
import { type Generation, LANES, type PlanMember, type PoolPlan, planLanes } from './types.ts';

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
  /**
   * Hosts whose agent stopped reporting (silent past its lease) without evidence that they are gone: their data
   * plane may still forward, on the last generation they applied, and hold connections. Their backends' counts
   * are unknown (kept in the chains), and a slot with an owner there, or moving onto one, does not move
   * (`silent-host`): docs/design/rollout.md, "A host that is alive but silent".
   */
  readonly silentHosts?: ReadonlySet<string>;
  /**
   * Live connections `host` reports for backend `key` of load balancer `lb` (all slots); undefined = not known (no
   * report, or a silent host). It decides how long a backend whose host changed keeps its old host
   * (PlanMember.movedFrom); without it the old host is kept while the backend stays where it went.
   */
  readonly hostConnections?: (host: string, lb: string, key: string) => number | undefined;
  /** Load balancer ids across an upgrade and older stored plans (rollout/lb-ids.ts LbIdInput). */
  readonly legacyLbNames?: readonly string[];
  readonly reservedLbIds?: Iterable<number>;
  /**
   * The caller's memory of its earlier steps (rollout/plan-cache.ts): with it a step visits the load balancers that
   * changed and the pools still in flight; without it every pool is stepped. The answer is the same.
   */
  readonly cache?: PlanCache;
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
  | 'waits' // slots that keep a previous owner: it still has connections
  | 'chain-full' // slots that cannot move yet: their chain of previous owners is full (all in use)
  | 'gave-up' // previous owners dropped with connections: the drain window passed and the slot needed room
  | 'silent-host' // slots that cannot move: an owner (or the target) is on a host whose agent went silent
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
  /** The silent host a `silent-host` note waits on. */
  readonly host?: string;
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
  const plan = {
    lb,
    bits,
    members,
    primary,
    second: new Uint16Array(size).fill(NO_OWNER),
    phase: new Uint8Array(size),
    since: new Float64Array(size),
  };
  return { ...plan, lanes: planLanes(plan) };
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
    for (let len = a.length; len < out.length; len *= 2) out.copyWithin(len, 0, len);
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
    lanes: grow(planLanes(plan), new Uint16Array(size * LANES)),
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
  'chain-full',
  'gave-up',
  'silent-host',
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

  /** `hosts[i]`: the host of key `keys[i]`. */
  flush(keys: readonly string[], hosts: readonly string[]): PlanNote[] {
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
          detail = `keep previous owner ${a}: it has ${connText(g.conns)}`;
          break;
        case 'chain-full':
          detail = `wait to move ${a} -> ${b}: chain full, its previous owners have ${connText(g.conns)}`;
          backend = b;
          break;
        case 'gave-up':
          detail = `drop previous owner ${a} with ${connText(g.conns)}: the drain window passed`;
          break;
        case 'silent-host':
          detail =
            `wait on silent host ${hosts[ai]}: no move${b ? ` to ${b}` : ''} while its agent does not report ` +
            (a === b ? '(it would not know its new owner)' : `(${a} there may hold connections)`);
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
        ...(kind === 'waits' || kind === 'gave-up' || kind === 'chain-full' ? { connections: g.conns } : {}),
        ...(kind === 'silent-host' ? { host: hosts[ai] } : {}),
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

/** The unified key space of one step: the previous plan's members and the configured backends, sorted. */
interface KeySpace {
  readonly keys: readonly string[];
  readonly statusOf: readonly MemberStatus[];
  /** 1 = gone (its connections are lost: never kept in a chain). */
  readonly gone: Uint8Array;
  /** 1 = on a silent host (PlanInput.silentHosts): its slots do not move; connections unknown unless gone. */
  readonly silent: Uint8Array;
  /** Previous plan's member index -> key space index. */
  readonly fromPrev: Uint16Array;
  readonly index: ReadonlyMap<string, number>;
}

function keySpace(
  prev: PoolPlan,
  lb: LoadBalancer,
  status: ReadonlyMap<string, MemberStatus>,
  config: Config,
  silentHosts: ReadonlySet<string> | undefined,
): KeySpace {
  const prevKeys = prev.members.map((m) => m.key);
  const keySet = new Set<string>(prevKeys);
  for (const b of lb.backends) keySet.add(backendKey(b));
  const keys = [...keySet].sort(compareKeys);
  const index = new Map<string, number>();
  for (let i = 0; i < keys.length; i++) index.set(keys[i], i);
  const statusOf = keys.map((k): MemberStatus => {
    const st = status.get(k);
    if (st !== undefined) return st;
    // Removed from the config: still referenced by the latest plan. Gone only if its host left the config too.
    const pm = prev.members.find((m) => m.key === k)!;
    const hostKnown = config.nodes.some((n) => n.name === pm.host);
    return { member: pm, admin: undefined, down: !hostKnown };
  });
  const gone = Uint8Array.from(statusOf, (st) => (st.down ? 1 : 0));
  const silent = Uint8Array.from(statusOf, (st) => (silentHosts?.has(st.member.host) ? 1 : 0));
  const fromPrev = Uint16Array.from(prevKeys, (k) => index.get(k)!);
  return { keys, statusOf, gone, silent, fromPrev, index };
}

/** How a chain member stands: it may hold connections of the slot (`busy`), and may be dropped for room
 *  (`expired`: busy, but the operator's drain window since the slot's last move passed), or not (`free`). */
export type ChainUse = 'free' | 'busy' | 'expired';

/** One slot as nextSlot sees it, in one index space (NO_OWNER = none). */
export interface SlotView {
  readonly primary: number;
  /** Second chance first, then the older previous owners (lane order). Empty for a stable slot. */
  readonly chain: readonly number[];
  readonly phase: number;
}

export interface SlotFacts {
  /** The target owner (buildTable), NO_OWNER when no backend takes slots. */
  readonly target: number;
  /** The chain bound L. */
  readonly bound: number;
  readonly primaryGone: boolean;
  /** Per chain member, same order as SlotView.chain. */
  readonly use: readonly ChainUse[];
  readonly conns: readonly (number | undefined)[];
}

/** What happened to a slot, for the notes: kind, the two members the note names, connections concerned. */
export interface SlotEvent {
  readonly kind: NoteKind;
  readonly a: number;
  readonly b: number;
  readonly conns?: number | undefined;
}

export interface SlotStep extends SlotView {
  readonly events: readonly SlotEvent[];
}

function chained(primary: number, chain: readonly number[], events: SlotEvent[], phase = PHASE2): SlotStep {
  return { primary, chain, phase: chain.length === 0 ? PHASE_STABLE : phase, events };
}

/**
 * One slot's transition: the rows of the table in docs/design/rollout.md ("Transitions"), in order. Pure.
 * The chain keeps every member that may hold connections (busy or expired); free ones leave it.
 *   T none:            keep p, keep the chain; p gone and a chain member in use: it takes the SYNs (down-primary)
 *   p none:            (T)
 *   p = T:             (T, chain)                           stable once the chain is empty
 *   T in the chain:    (T, p, chain - T)                    phase 2
 *   else, room:        (p, T, chain)                        phase 1 (retarget when T replaces a free incoming)
 *   else, full:        drop expired members (fewest connections first, gave-up) to make room, then phase 1;
 *                      else p gone: (c1, p, rest)           down-primary: the newest chain member takes the SYNs
 *                      else wait                            chain-full
 * The previous primary is never dropped in one step, even when gone: a gateway still on the previous generation
 * may send it a SYN and it may be up again by then.
 */
export function nextSlot(cur: SlotView, f: SlotFacts): SlotStep {
  const p = cur.primary;
  const t = f.target;
  const s = cur.chain.length > 0 ? cur.chain[0] : NO_OWNER;
  const events: SlotEvent[] = [];
  const kept: number[] = [];
  const keptAt: number[] = [];
  for (let i = 0; i < cur.chain.length; i++) {
    if (f.use[i] === 'free') continue;
    kept.push(cur.chain[i]);
    keptAt.push(i);
  }
  const waits = (members: readonly number[], at: readonly number[]) => {
    for (let i = 0; i < members.length; i++)
      events.push({ kind: 'waits', a: members[i], b: NO_OWNER, conns: f.conns[at[i]] });
  };

  if (t === NO_OWNER && p !== NO_OWNER) {
    events.push({ kind: 'no-owner', a: NO_OWNER, b: NO_OWNER });
    if (f.primaryGone && kept.length > 0) {
      events.push({ kind: 'down-primary', a: p, b: kept[0] });
      return chained(kept[0], [p, ...kept.slice(1)], events);
    }
    return chained(p, kept, events);
  }
  if (p === NO_OWNER) return chained(t, [], events);
  if (p === t) {
    if (kept.length === 0 && s !== NO_OWNER) events.push({ kind: 'stable', a: p, b: s });
    waits(kept, keptAt);
    return chained(p, kept, events);
  }
  const inChain = cur.chain.indexOf(t);
  if (inChain >= 0) {
    events.push({ kind: 'phase2', a: t, b: p });
    return chained(t, [p, ...kept.filter((m) => m !== t)], events);
  }
  // Phase 1: T becomes the incoming owner. A free incoming owner of an earlier phase 1 is simply replaced.
  const room = f.bound - kept.length;
  if (room < 1) {
    const expired = keptAt
      .map((at, i) => ({ i, at, n: f.conns[at] ?? Number.POSITIVE_INFINITY }))
      .filter((x) => f.use[x.at] === 'expired')
      .sort((x, y) => x.n - y.n || x.at - y.at);
    const need = 1 - room;
    if (expired.length >= need) {
      const drop = new Set(expired.slice(0, need).map((x) => x.i));
      for (const i of drop)
        events.push({ kind: 'gave-up', a: kept[i], b: NO_OWNER, conns: f.conns[keptAt[i]] });
      const rest = kept.filter((_, i) => !drop.has(i));
      events.push({ kind: 'phase1', a: p, b: t });
      return chained(p, [t, ...rest], events, PHASE1);
    }
    if (f.primaryGone) {
      events.push({ kind: 'down-primary', a: p, b: kept[0] });
      return chained(kept[0], [p, ...kept.slice(1)], events);
    }
    let total: number | undefined = 0;
    for (const at of keptAt)
      total = total === undefined || f.conns[at] === undefined ? undefined : total + f.conns[at]!;
    events.push({ kind: 'chain-full', a: p, b: t, conns: total });
    return chained(p, kept, events);
  }
  const retarget = cur.phase === PHASE1 && s !== NO_OWNER && !kept.includes(s);
  events.push(retarget ? { kind: 'retarget', a: s, b: t } : { kind: 'phase1', a: p, b: t });
  return chained(p, [t, ...kept], events, PHASE1);
}

/**
 * A slot with an owner on a silent host (or moving onto one), `silent` being that member: it does not move. The
 * silent host forwards on the last generation it applied, so a new owner would be unknown to it: a packet of the
 * new owner's connections that reaches it (from a gateway one phase behind, or walking the lanes after a later
 * move) finds no lane and is dropped. Only free members leave (gone ones included, even on the silent host); every
 * owner keeps its lane, so the stale host's tables and the current ones still agree on every connection (the
 * one-step argument). A gone primary on the silent host stays primary: gateways still send to that host.
 */
export function holdForSilentHost(cur: SlotView, f: SlotFacts, silent: number): SlotStep {
  const kept = cur.chain.filter((_, i) => f.use[i] !== 'free');
  const phase = kept.length > 0 && kept[0] === cur.chain[0] ? cur.phase : PHASE2;
  return chained(cur.primary, kept, [{ kind: 'silent-host', a: silent, b: f.target }], phase);
}

/** The first owner of the slot (primary, then chain), or else the target, on a silent host; NO_OWNER if none. */
function silentOwner(space: KeySpace, p: number, chain: readonly number[], t: number): number {
  for (const m of [p, ...chain, t]) if (m !== NO_OWNER && space.silent[m] === 1) return m;
  return NO_OWNER;
}

/** Per slot and chain position (s * LANES + i, i over SlotView.chain), the use of each chain member of `prev`. */
interface ChainState {
  /** 0 free, 1 busy, 2 expired (USE_CODES). */
  readonly use: Uint8Array;
  /** Reported connections; NaN = not reported. */
  readonly conns: Float64Array;
  /** Slots that keep a member that may hold connections: buildTable moves other slots first. */
  readonly holding: Uint8Array;
}

const USE_CODES: readonly ChainUse[] = ['free', 'busy', 'expired'];

const NO_CHAIN: readonly number[] = [];

/** The chain (unified indices) of slot `s` of a plan: second chance first, then older owners in lane order. */
function chainOf(plan: PoolPlan, lanes: Uint16Array, s: number, u: (i: number) => number): readonly number[] {
  const sec = plan.second[s];
  if (sec === NO_OWNER) return NO_CHAIN;
  const out = [u(sec)];
  for (let l = 0; l < LANES; l++) {
    const m = lanes[s * LANES + l];
    if (m !== NO_OWNER && m !== sec && m !== plan.primary[s]) out.push(u(m));
  }
  return out;
}

function chainState(
  prev: PoolPlan,
  chains: readonly (readonly number[])[],
  space: KeySpace,
  lbName: string,
  input: PlanInput,
): ChainState {
  const size = prev.primary.length;
  const use = new Uint8Array(size * LANES);
  const conns = new Float64Array(size * LANES);
  const holding = new Uint8Array(size);
  const window = input.config.drainWindowSeconds;
  const windowMs = window === undefined ? Number.POSITIVE_INFINITY : window * 1000;
  for (let s = 0; s < size; s++) {
    const chain = chains[s];
    if (chain.length === 0) continue;
    // since 0 = not known (e.g. a plan read back from a store that does not keep it): never expires.
    const from = prev.since[s];
    const expired = from > 0 && input.now - from >= windowMs;
    for (let i = 0; i < chain.length; i++) {
      if (space.gone[chain[i]] === 1) continue; // free: its connections are lost
      // A silent host's report is stale: unknown, so in use (and never expired: see holdForSilentHost).
      const n =
        space.silent[chain[i]] === 1
          ? undefined
          : input.connections(lbName, s, space.statusOf[chain[i]].member.key, prev.bits);
      conns[s * LANES + i] = n ?? Number.NaN;
      if (n === 0) continue;
      use[s * LANES + i] = expired && space.silent[chain[i]] === 0 ? 2 : 1;
      holding[s] = 1;
    }
  }
  return { use, conns, holding };
}

/**
 * Lanes of the next plan for one slot: owners that stay keep their lane, new ones take the lowest free lane; a
 * stable slot has its primary in lane 0 (its lane does not matter: every gateway sends its packets there).
 */
function assignLanes(
  prevLanes: Uint16Array,
  s: number,
  u: (i: number) => number,
  next: SlotView,
  out: Uint16Array,
): void {
  const base = s * LANES;
  if (next.chain.length === 0) {
    out[base] = next.primary;
    return;
  }
  const owners = [next.primary, ...next.chain];
  const placed = new Set<number>();
  for (let l = 0; l < LANES; l++) {
    const m = prevLanes[base + l];
    if (m === NO_OWNER) continue;
    const k = u(m);
    if (owners.includes(k) && !placed.has(k)) {
      out[base + l] = k;
      placed.add(k);
    }
  }
  let free = 0;
  for (const k of owners) {
    if (placed.has(k)) continue;
    while (out[base + free] !== NO_OWNER) free++;
    out[base + free] = k;
    placed.add(k);
  }
}

/**
 * Members keep their positions across generations: the Geneve metadata carries a member's index, and a gateway
 * one generation behind must mean the same backend by it as the hosts do. New backends take the position of a
 * member that is neither configured nor referenced by `prev` or by this plan (nobody can still send that index),
 * else a new position at the end. Unreferenced removed members stay until reused. Returns the members and the
 * key space index -> position map.
 */
function reuseMembers(
  prev: PoolPlan,
  prevLanes: Uint16Array,
  lanes: Uint16Array,
  space: KeySpace,
  status: ReadonlyMap<string, MemberStatus>,
): { members: PlanMember[]; position: Uint16Array } {
  const { keys, fromPrev, statusOf } = space;
  const used = new Uint8Array(keys.length);
  for (const m of lanes) if (m !== NO_OWNER) used[m] = 1;
  const usedPrev = new Uint8Array(prev.members.length);
  for (const m of prevLanes) if (m !== NO_OWNER && m < usedPrev.length) usedPrev[m] = 1;
  const position = new Uint16Array(keys.length).fill(NO_OWNER);
  const members: PlanMember[] = [];
  const reusable: number[] = [];
  for (let i = 0; i < prev.members.length; i++) {
    const k = fromPrev[i];
    position[k] = i;
    members.push(statusOf[k].member);
    if (status.get(prev.members[i].key) === undefined && usedPrev[i] === 0 && used[k] === 0) reusable.push(i);
  }
  let nextFree = 0;
  for (let k = 0; k < keys.length; k++) {
    if (position[k] !== NO_OWNER || status.get(keys[k]) === undefined) continue;
    const at = nextFree < reusable.length ? reusable[nextFree++] : members.length;
    position[k] = at;
    members[at] = statusOf[k].member;
  }
  return { members, position };
}

/**
 * One planner step for one existing pool (same bits as `prev`). Returns the next plan, or `prev` itself when
 * nothing changes: the key space, each chain member's use, the target table, nextSlot per slot, lanes, then
 * member positions.
 */
function stepPool(
  prev: PoolPlan,
  lb: LoadBalancer,
  status: ReadonlyMap<string, MemberStatus>,
  input: PlanInput,
  out: PlanNote[],
): PoolPlan {
  const notes = new Notes(lb.name);
  const size = prev.primary.length;
  const bound = input.config.chainLength ?? DEFAULT_CHAIN_LENGTH;
  const space = keySpace(prev, lb, status, input.config, input.silentHosts);
  const u = (i: number): number => (i === NO_OWNER ? NO_OWNER : space.fromPrev[i]);
  const prevLanes = planLanes(prev);
  const chains = Array.from({ length: size }, (_, s) => chainOf(prev, prevLanes, s, u));
  const use = chainState(prev, chains, space, lb.name, input);

  const target = buildTable(desiredPool(lb), prev.bits, effectiveOwners(prev), { keepSlots: use.holding });
  const fromTarget = Uint16Array.from(target.members, (k) => space.index.get(k)!);

  const primary = new Uint16Array(size);
  const second = new Uint16Array(size);
  const phase = new Uint8Array(size);
  const since = new Float64Array(size);
  const lanes = new Uint16Array(size * LANES).fill(NO_OWNER);
  let decided = false;
  for (let s = 0; s < size; s++) {
    const p = u(prev.primary[s]);
    const t = target.owners[s] === NO_OWNER ? NO_OWNER : fromTarget[target.owners[s]];
    const chain = chains[s];
    const cur: SlotView = { primary: p, chain, phase: prev.phase[s] };
    let next: SlotView = cur; // stable and staying: the common case, nothing to decide
    if (chain.length > 0 || p !== t || p === NO_OWNER) {
      decided = true;
      const facts: SlotFacts = {
        target: t,
        bound,
        primaryGone: p !== NO_OWNER && space.gone[p] === 1,
        use: Array.from(use.use.subarray(s * LANES, s * LANES + chain.length), (c) => USE_CODES[c]),
        conns: Array.from(use.conns.subarray(s * LANES, s * LANES + chain.length), (n) =>
          Number.isNaN(n) ? undefined : n,
        ),
      };
      const silent = p === t ? NO_OWNER : silentOwner(space, p, chain, t);
      next = silent === NO_OWNER ? nextSlot(cur, facts) : holdForSilentHost(cur, facts, silent);
    }
    if (next !== cur) for (const e of (next as SlotStep).events) notes.add(e.kind, s, e.a, e.b, e.conns);
    const ns = next.chain.length > 0 ? next.chain[0] : NO_OWNER;
    const sec = chain.length > 0 ? chain[0] : NO_OWNER;
    primary[s] = next.primary;
    second[s] = ns;
    phase[s] = next.phase;
    since[s] = ns === NO_OWNER ? 0 : ns === sec ? prev.since[s] : input.now;
    assignLanes(prevLanes, s, u, next, lanes);
  }

  const reused = reuseMembers(prev, prevLanes, lanes, space, status);
  const members = withMovedFrom(prev, reused.members, lb.name, input);
  const position = reused.position;
  const pos = (i: number): number => (i === NO_OWNER ? NO_OWNER : position[i]);
  for (let s = 0; s < size; s++) {
    primary[s] = pos(primary[s]);
    second[s] = pos(second[s]);
  }
  for (let i = 0; i < lanes.length; i++) lanes[i] = pos(lanes[i]);
  out.push(
    ...notes.flush(
      space.keys,
      space.statusOf.map((st) => st.member.host),
    ),
  );
  const next: PoolPlan = { lb: lb.name, bits: prev.bits, members, primary, second, phase, since, lanes };
  if (!samePlan(prev, next)) return next;
  // A moved member's old host is let go on a report, not on a change of the backends: such a pool is never settled.
  if (!decided && !prev.members.some((m) => m.movedFrom !== undefined))
    input.cache?.settled.set(prev, input.cache.backendsKey(lb));
  return prev;
}

/**
 * A backend whose host changed (same address and port, another host: a live-migrated VM) keeps its old host as
 * `movedFrom` while that host may hold its connections: sluice's conntrack entry for a connection stays on the host
 * that committed it, and the new host sends the packets it has no state for back there (compile/moved.ts, hosts
 * with sluice-follow-moves). Its slots do not move (the member is the same), so no chain would name the old host.
 * Let go once the old host reports none of the backend's connections in this load balancer (the planner core waits
 * for fresh reports while a member names one, as for second chances), or leaves the config.
 */
function withMovedFrom(
  prev: PoolPlan,
  members: readonly PlanMember[],
  lb: string,
  input: PlanInput,
): PlanMember[] {
  return members.map((m, i) => {
    const was = prev.members[i];
    const same = was !== undefined && was.key === m.key;
    const moved = same && was.host !== m.host;
    const from = moved ? was.host : same ? was.movedFrom : undefined;
    // Named at the move whatever the old host last reported (a report may predate its newest connections); let go
    // on a later step, on a report taken after that generation was in force.
    const keep =
      from !== undefined &&
      from !== m.host &&
      input.config.nodes.some((n) => n.name === from) &&
      (moved || input.hostConnections?.(from, lb, m.key) !== 0);
    if (keep) return m.movedFrom === from ? m : { ...m, movedFrom: from };
    if (m.movedFrom === undefined) return m;
    const { movedFrom: _, ...rest } = m;
    return rest;
  });
}

function sameMember(a: PlanMember, b: PlanMember): boolean {
  return (
    a.key === b.key &&
    a.address === b.address &&
    a.port === b.port &&
    a.host === b.host &&
    a.movedFrom === b.movedFrom
  );
}

function sameArray(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Same slots, phases, lanes and members (ignores `since`, which only changes with the second chance). */
export function samePlan(a: PoolPlan, b: PoolPlan): boolean {
  return (
    a.bits === b.bits &&
    a.members.length === b.members.length &&
    a.members.every((m, i) => sameMember(m, b.members[i])) &&
    sameArray(a.primary, b.primary) &&
    sameArray(a.second, b.second) &&
    sameArray(a.phase, b.phase) &&
    sameArray(planLanes(a), planLanes(b))
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
 * - Every load balancer has its own slot bits, `lbSlotBits(config.slotBits, its backend count)`. A pool whose bits
 *   are below that first gets a generation that only grows every such pool (duplicates slots, second chances and
 *   lanes included: nothing moves); the phases follow. Slot bits never shrink: the pool keeps its bits and a
 *   `bits-decrease-refused` note says so on every step.
 * - New load balancers start stable from scratch; removed ones are dropped (their connections end).
 * - Every pool carries its load balancer's id: kept from the latest generation, a new one for a new load balancer,
 *   the ids of removed ones held (rollout/lb-ids.ts).
 */
export function planNext(input: PlanInput): PlanStep {
  const { latest, cache } = input;
  if (latest !== null && cache?.last !== undefined) {
    const step = stepChanged(input, latest, cache, cache.last);
    if (step !== undefined) return step;
  }
  const step = planPools(input);
  if (step.next === null) return step;
  return { ...step, next: withLbIds(step.next, input) };
}

/** planNext without the ids. */
function planPools(input: PlanInput): PlanStep {
  const { config, latest } = input;
  const bitsOf = (lb: LoadBalancer): number => lbSlotBits(config.slotBits, lb.backends.length);
  const notes: PlanNote[] = [];
  if (latest === null) {
    const pools = new Map<string, PoolPlan>();
    for (const lb of config.loadBalancers) {
      const bits = bitsOf(lb);
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

  if (input.cache !== undefined) input.cache.last = undefined;
  const byName = new Map(config.loadBalancers.map((lb) => [lb.name, lb]));
  const growing: [PoolPlan, number][] = [];
  const refused = new Map<number, PlanNote>();
  for (const [i, lb] of config.loadBalancers.entries()) {
    const plan = latest.pools.get(lb.name);
    if (plan === undefined) continue;
    const bits = bitsOf(lb);
    if (plan.bits < bits) growing.push([plan, bits]);
    const note = refusal(plan, bits);
    if (note !== undefined) {
      notes.push(note);
      refused.set(i, note);
    }
  }

  // Growing first, alone: a generation that moves nothing.
  if (growing.length > 0) {
    const pools = new Map(latest.pools);
    for (const [p, bits] of growing) {
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

  const counted = { ...input, connections: grownCounts(input.connections, config.slotBits) };
  let changed = false;
  let aligned = true;
  const pools = new Map<string, PoolPlan>();
  const stepped: number[] = [];
  for (const name of latest.pools.keys()) {
    if (!byName.has(name)) {
      changed = true;
      aligned = false;
      notes.push({ lb: name, kind: 'removed-lb', slots: [], message: `${name}: removed from the config` });
    }
  }
  for (const [i, lb] of config.loadBalancers.entries()) {
    const prev = latest.pools.get(lb.name);
    if (prev === undefined) {
      const bits = bitsOf(lb);
      pools.set(lb.name, initialPool(lb, bits));
      notes.push({ lb: lb.name, kind: 'initial', slots: [], message: `${lb.name}: new, ${1 << bits} slots` });
      changed = true;
      aligned = false;
      continue;
    }
    if (prev.id === undefined) aligned = false;
    if (input.cache?.isSettled(prev, lb)) {
      pools.set(lb.name, prev);
      continue;
    }
    const next = stepPool(prev, lb, statusMap(lb), counted, notes);
    if (next !== prev) changed = true;
    stepped.push(i);
    pools.set(lb.name, next);
  }
  // A step that added or removed load balancers is not remembered: the same (config, latest) again must plan it again.
  if (input.cache !== undefined)
    input.cache.last = changed && !aligned ? undefined : lastStep(config, latest, stepped, refused, aligned);
  if (!changed) return { next: null, notes };
  return { next: { number: latest.number + 1, createdAt: input.now, pools }, notes };
}

/** The note of a pool whose load balancer now wants fewer slot bits than it has (they never shrink). */
function refusal(plan: PoolPlan, bits: number): PlanNote | undefined {
  if (plan.bits <= bits) return undefined;
  return {
    lb: plan.lb,
    kind: 'bits-decrease-refused',
    slots: [],
    message: `${plan.lb}: slot bits ${plan.bits} -> ${bits} refused (shrinking would move connections); keeps ${plan.bits}`,
  };
}

function lastStep(
  config: Config,
  latest: Generation,
  stepped: readonly number[],
  refused: ReadonlyMap<number, PlanNote>,
  aligned: boolean,
): LastStep {
  const index = aligned ? new Map(config.loadBalancers.map((lb, i) => [lb.name, i])) : undefined;
  return { config, latest, stepped, refused, aligned, index, whole: true };
}

/**
 * planPools and the ids (planNext) from the cache's last step, visiting only the load balancers that changed since
 * and the pools still in flight (changedSince): every other pool was settled, and a settled pool steps to itself
 * with no notes whatever the connections or the clock (PlanCache.settled), so a step costs what changed, not every
 * load balancer. The same config and latest as the last step visit the pools it stepped (its notes of slot-bits
 * refusals kept). Undefined where only the whole step can answer: a pool that grows or would shrink, load
 * balancers added or removed, a change after a step that was not aligned.
 */
function stepChanged(
  input: PlanInput,
  latest: Generation,
  cache: PlanCache,
  last: LastStep,
): PlanStep | undefined {
  const { config } = input;
  const same = config === last.config && latest === last.latest;
  const since = same ? undefined : changedSince(last, config, latest);
  if (!same && since === undefined) return undefined;
  const visit = since === undefined ? last.stepped : [...since].sort((a, b) => a - b);
  const refused = same ? last.refused : new Map(last.refused);
  const counted = { ...input, connections: grownCounts(input.connections, config.slotBits) };
  const stepNotes: PlanNote[] = [];
  const stepped: number[] = [];
  const changed: PoolPlan[] = [];
  for (const i of visit) {
    const lb = config.loadBalancers[i]!;
    const prev = latest.pools.get(lb.name)!;
    if (!same) {
      const bits = lbSlotBits(config.slotBits, lb.backends.length);
      if (prev.bits < bits) return undefined; // grows: a generation of its own
      const note = refusal(prev, bits);
      if (note === undefined) (refused as Map<number, PlanNote>).delete(i);
      else (refused as Map<number, PlanNote>).set(i, note);
    }
    if (cache.isSettled(prev, lb)) continue;
    const next = stepPool(prev, lb, statusMap(lb), counted, stepNotes);
    stepped.push(i);
    if (next !== prev) changed.push(next);
  }
  if (changed.length > 0 && !last.aligned) return undefined;
  cache.last = { ...last, config, latest, stepped, refused, whole: false };
  // The whole step's order: the refusals in config order, then each pool's notes.
  const notes = [...[...refused].sort((a, b) => a[0] - b[0]).map(([, n]) => n), ...stepNotes];
  if (changed.length === 0) return { next: null, notes };
  // withLbIds on a generation whose load balancers are the latest's: each keeps its id, the retired ones are held.
  const pools = new Map(latest.pools);
  for (const p of changed) pools.set(p.lb, { ...p, id: latest.pools.get(p.lb)!.id });
  const retired = new Map<number, number>();
  for (const [id, at] of latest.retiredLbIds ?? [])
    if (input.now - at < RETIRED_LB_ID_HOLD_MS) retired.set(id, at);
  const next: Generation = {
    number: latest.number + 1,
    createdAt: input.now,
    pools,
    ...(retired.size > 0 ? { retiredLbIds: retired } : {}),
  };
  return { next, notes };
}

/**
 * Counts for pools whose table grew past the config's `floorBits`. A host marks a connection with the slot the gateway
 * numbered it with when it was committed; one committed before a growth carries the slot of the smaller table (the low
 * bits of today's slot), so slot s of a 2^bits table also counts the marks s mod 2^j for every j from `floorBits` to
 * bits - 1. Conservative: a connection committed since in slot s mod 2^j of the grown table counts too, which only
 * holds a second chance longer (within the drain window); pools at `floorBits` count exactly as before.
 */
export function grownCounts(connections: ConnectionCounts, floorBits: number): ConnectionCounts {
  return (lb, slot, key, bits) => {
    let n = connections(lb, slot, key, bits);
    let last = slot;
    for (let j = bits - 1; j >= floorBits && n !== undefined; j--) {
      const alias = slot & ((1 << j) - 1);
      if (alias === last) continue;
      last = alias;
      const m = connections(lb, alias, key, j);
      n = m === undefined ? undefined : n + m;
    }
    return n;
  };
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
