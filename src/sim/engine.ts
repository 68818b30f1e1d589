// The strategy simulator: runs every load-balancing strategy on the same trace of connections and events.
//
// Connections are a struct of typed arrays (no per-connection objects). Every connection slot is a renewal
// process: when a connection ends, the next one starts, so concurrency is exactly `topology.connections`; the
// superposition of many independent renewal processes is close to a Poisson arrival stream (Palm-Khintchine).
// State only changes at steps (events, per-gateway application of a change, planner generations), so instead of
// simulating packets the engine evaluates, at each step, every connection the step can affect: a connection
// breaks when the packets it sends after the step, through the gateway ECMP now gives it, reach a backend (or
// host) without its state and the strategy has no rescue. Method and assumptions: docs/evaluation.md.

import { fmix32 } from '../hashing/hash.ts';
import { buildTable, NO_OWNER, type PoolMember, type SlotTable } from '../hashing/slots.ts';
import type { Backend, Config, LoadBalancer, Node } from '../model/types.ts';
import { backendKey } from '../model/types.ts';
import { planNext } from '../rollout/planner.ts';
import type { Generation } from '../rollout/types.ts';
import { Ecmp, ecmpMovedShare } from './ecmp.ts';
import { hashInt, Rng, streamSeed, tupleHash } from './hash.ts';
import { ovsHashInt } from './ovshash.ts';
import type { EventType, Trace } from './trace.ts';

export const STRATEGIES = [
  'stateful',
  'stateless_nat',
  'hash_hrw',
  'slot_table',
  'sticky',
  'ct_sync',
  'sluice',
] as const;
export type StrategyId = (typeof STRATEGIES)[number];

export const STRATEGY_TITLES: Readonly<Record<StrategyId, string>> = {
  stateful: '1 stateful gateway (OVN today)',
  stateless_nat: '2 OVN use_stateless_nat',
  hash_hrw: '3 select hash, stable bucket ids (HRW)',
  slot_table: '4 consistent slot table, no second chance',
  sticky: '5 slot table + per-gateway sticky table',
  ct_sync: '6 conntrack synced between gateways',
  sluice: '7 sluice (slot table + second chance + phases)',
};

const S_STATEFUL = 0;
const S_NAT = 1;
const S_HRW = 2;
const S_SLOT = 3;
const S_STICKY = 4;
const S_CTSYNC = 5;
const S_SLUICE = 6;
const NS = STRATEGIES.length;

// Counter fields per (event, strategy).
const F_AVOID = 0;
const F_UNAVOID = 1;
const F_DRAIN = 2;
const F_FAILED = 3;
const F_WRONGVIP = 4;
const F_HOPPEAK = 5;
const NF = 6;

/** Seeds of the two stand-in hash functions (datapath 5-tuple hash, upstream router ECMP hash). */
const SEED_DP = 0x0d9a5e11;
const SEED_ECMP = 0x7a3c0b21;
const NONE = NO_OWNER;
/** Strategy 3 only: backend not computed yet (rendezvous over ~100 buckets is the costly pick; most connections
 * never need it, so it is computed from the version they were set up on when first needed). */
const LAZY = 0xfffe;

export interface Counters {
  /** Broken although the backend holding the connection's state was alive: the strategy's fault. */
  readonly avoidable: number;
  /** Broken because the connection's backend died (failure, or removed without drain). */
  readonly unavoidable: number;
  /** Broken on purpose: the drain window ended while it was still open. */
  readonly drainExpired: number;
  /** New connections whose SYN went to a dead backend (before detection/application): never established. */
  readonly failedSetups: number;
  /** New connections answered from the wrong VIP (stateless 1:1 reverse NAT): never established. */
  readonly wrongVip: number;
  /** Most connections at once whose packets take the second-chance hop. */
  readonly secondChancePeak: number;
}

export interface EventResult {
  readonly index: number;
  readonly at: number;
  readonly type: EventType | 'steady';
  readonly label: string;
  /** Concurrent connections when the event happened. */
  readonly concurrent: number;
  /** Gateway events: share of flows ECMP sent to another gateway (measured on the connections, exact). */
  readonly ecmpMoved?: { readonly measured: number; readonly exact: number };
  readonly strategies: Readonly<Record<StrategyId, Counters>>;
}

export interface StrategyTotals extends Counters {
  readonly broken: number;
  /** Share of packets (connection-time, equal packet rates assumed) that took the second-chance hop. */
  readonly extraHopShare: number;
  /** Largest number of per-connection entries one gateway held at the end of the run. */
  readonly gatewayEntriesMax: number;
}

export interface SimResult {
  readonly trace: Trace;
  readonly seed: number;
  readonly arrivals: number;
  readonly arrivalsPerSecond: number;
  /** Mean connection lifetime (s) of the mix. */
  readonly meanLifetime: number;
  readonly events: readonly EventResult[];
  readonly totals: Readonly<Record<StrategyId, StrategyTotals>>;
  /** sluice generations published during the run. */
  readonly sluiceGenerations: number;
  /** Largest difference between the sluice generations two live gateways ran at the same time (gating: <= 1). */
  readonly sluiceMaxGenerationSpread: number;
  readonly runtimeMs: number;
}

// Step kinds.
const K_EVENT = 0;
const K_APPLY_CFG = 1;
const K_S7_APPLY = 2;
const K_S7_ACKED = 3;
const K_S7_TICK = 4;
const K_BACKEND_STOP = 5;
const K_DETECT = 6;
const K_END = 7;

interface Step {
  t: number;
  seq: number;
  kind: number;
  a: number;
  b: number;
  ev: number;
}

/** Binary min-heap of steps by (t, seq). */
class StepQueue {
  private readonly h: Step[] = [];
  private seq = 0;
  get size(): number {
    return this.h.length;
  }
  push(t: number, kind: number, a: number, b: number, ev: number): void {
    const s: Step = { t, seq: this.seq++, kind, a, b, ev };
    const h = this.h;
    h.push(s);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p], s)) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = s;
  }
  pop(): Step {
    const h = this.h;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && less(h[r], h[l]) ? r : l;
        if (less(last, h[c])) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

function less(a: Step, b: Step): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}

/** One configuration version of the pools (what ungated strategies roll out gateway by gateway). */
interface Snapshot {
  /** Per VIP: active members in operator order (OVN's backend list order). */
  readonly sel: Int32Array[];
  /** Per VIP: consistent slot table owners as backend ids (buildTable, minimal movement from the last version). */
  readonly slots: Uint16Array[];
  readonly tables: SlotTable[];
  /** Per backend: the VIP a stateless 1:1 reverse NAT answers with (lowest VIP index it serves); -1 none. */
  readonly replyVip: Int32Array;
}

/** One published sluice generation, as backend ids per VIP. */
interface S7Gen {
  readonly primary: Uint16Array[];
  readonly second: Uint16Array[];
  /** Per VIP: slots whose second chance the planner gave up (drain window passed); null = none. */
  readonly gaveUp: (Uint8Array | null)[];
  readonly ev: number;
}

const BSTATE_ACTIVE = 0;
const BSTATE_DRAINING = 1;
const BSTATE_DOWN = 2;
const BSTATE_REMOVED = 3;
/** Removed from the config while its server keeps running (backend-remove with keepServing). */
const BSTATE_DETACHED = 4;

function address(id: number): string {
  return `10.${100 + (id >> 16)}.${(id >> 8) & 255}.${id & 255}`;
}

/** OVS dp_hash select group over a positional bucket list (equal weights), with the >256 buckets fallback. */
export function dpHashPick(sel: Int32Array, h: number): number {
  const n = sel.length;
  if (n === 0) return NONE;
  if (n <= 256) {
    let nHash = 16;
    while (nHash < n) nHash *= 2;
    // Webster's method with equal weights fills the hash map round-robin: map[i] = bucket i mod n.
    return sel[(h & (nHash - 1)) % n];
  }
  // More than 256 buckets: OVS falls back to the `hash` method over *positional* bucket ids.
  let best = 0;
  let bestScore = 0;
  for (let j = 0; j < n; j++) {
    const score = hashInt(j, h) & 0xffff;
    if (score >= bestScore) {
      best = j;
      bestScore = score;
    }
  }
  return sel[best];
}

/**
 * OVS select group, selection_method=hash, bucket ids = stable backend ids: rendezvous (HRW) hashing. `score` is the
 * bucket hash: the simulator's stand-in by default, OVS's own `hash_int` in explicit mode (lab validation).
 */
export function hrwPick(
  sel: Int32Array,
  h: number,
  hashScore: (x: number, basis: number) => number = hashInt,
): number {
  let best = NONE;
  let bestScore = 0;
  for (let j = 0; j < sel.length; j++) {
    const id = sel[j];
    const score = hashScore(id, h) & 0xffff; // weight 1
    if (score >= bestScore) {
      best = id;
      bestScore = score;
    }
  }
  return best;
}

export interface RunOptions {
  readonly seed?: number;
  /** Strategies to run (default all). */
  readonly strategies?: readonly StrategyId[];
}

/** Runs `trace` and returns the per-event and per-strategy counts. Deterministic for a seed. */
export function runSim(trace: Trace, options: RunOptions = {}): SimResult {
  return new Sim(trace, options.seed ?? 1, options.strategies ?? STRATEGIES).run();
}

class Sim {
  private readonly trace: Trace;
  private readonly seed: number;
  private readonly on: Uint8Array;
  private readonly N: number;
  private readonly V: number;
  private readonly bits: number;
  private readonly mask: number;
  private readonly connRng: Rng;
  private readonly delayRng: Rng;
  // Lifetime mix.
  private readonly cumShare: Float64Array;
  private readonly mu: Float64Array;
  private readonly sigma: Float64Array;
  readonly meanLifetime: number;
  // Connections (struct of arrays).
  private readonly h: Uint32Array;
  /** Strategy 3's hash: the same array as `h`, except in explicit mode (OVS's fields hash; `h` is then the slot). */
  private readonly hh: Uint32Array;
  /** Strategy 3's bucket score: the stand-in `hashInt`, or OVS's `hash_int` in explicit mode. */
  private readonly hrwScore: (x: number, basis: number) => number;
  /** Backend addresses and ports (generated, or the explicit world's). */
  private readonly addrs: string[] = [];
  private readonly ports: (number | undefined)[] = [];
  /** Per backend: its host (backends of one host share its conntrack). Distinct per backend unless explicit. */
  private readonly hostOf: Int32Array;
  private readonly hu: Uint32Array;
  private readonly vip: Uint16Array;
  private readonly start: Float64Array;
  private readonly end: Float64Array;
  private readonly gw: Uint16Array;
  private readonly gwPrev: Uint16Array;
  private readonly fresh: Uint32Array;
  /** Scratch: the connections on one gateway. */
  private readonly onGw: Uint32Array;
  private freshCount = 0;
  private arrivals = 0;
  // Per strategy.
  private readonly be: Uint16Array[] = [];
  private readonly dead: Uint8Array[] = [];
  private readonly lastVer: Int32Array[] = [];
  private readonly sticky: Uint16Array;
  /** Strategy 7: the slot a connection was committed with (hosts mark it from the tunnel metadata). */
  private readonly slot7: Uint16Array;
  /** Each gateway hashes with its own seed (kernel datapath dp_hash) instead of one shared hash. */
  private readonly perGwHash: boolean;
  private readonly hop: Uint8Array;
  private hopCount = 0;
  private hopConnSeconds = 0;
  private connSeconds = 0;
  // World.
  private readonly alive: Uint8Array;
  private readonly bstate: Uint8Array;
  private readonly members: number[][];
  private nextBackend: number;
  private readonly keyToId = new Map<string, number>();
  private readonly gwUp: Uint8Array;
  private nextGateway: number;
  private ecmp: Ecmp;
  private activeGw = 0;
  // Ungated config versions (strategies 2-5) and sluice generations (strategy 7).
  private readonly versions: Snapshot[] = [];
  private readonly gwCfg: Int32Array;
  private readonly gens: S7Gen[] = [];
  private readonly gwGen: Int32Array;
  private latestGen: Generation | null = null;
  /** Backends that died and that health checks have not reported yet (new connections may pick them). */
  private undetectedDead = 0;
  private s7Busy = false;
  private s7MaxSpread = 0;
  private s7TickPending = false;
  private s7Ev = -1;
  /** The latest event that changed the config while a rollout was in flight (-1: none). */
  private s7PendingEv = -1;
  // Results.
  private readonly counters: Float64Array;
  private readonly evMeta: { concurrent: number; ecmpMoved?: { measured: number; exact: number } }[];
  private readonly q = new StepQueue();
  private lastEv: number;

  constructor(trace: Trace, seed: number, strategies: readonly StrategyId[]) {
    this.trace = trace;
    this.seed = seed;
    this.on = new Uint8Array(NS);
    for (const s of strategies) this.on[STRATEGIES.indexOf(s)] = 1;
    const topo = trace.topology;
    this.N = topo.connections;
    this.V = topo.vips;
    this.bits = topo.slotBits;
    this.mask = (1 << this.bits) - 1;
    this.connRng = new Rng(streamSeed(seed, 1));
    this.delayRng = new Rng(streamSeed(seed, 2));

    const lt = trace.lifetimes;
    const total = lt.reduce((s, c) => s + c.share, 0);
    this.cumShare = new Float64Array(lt.length);
    this.mu = new Float64Array(lt.length);
    this.sigma = new Float64Array(lt.length);
    let acc = 0;
    let mean = 0;
    lt.forEach((c, i) => {
      acc += c.share / total;
      this.cumShare[i] = acc;
      this.mu[i] = Math.log(c.medianSeconds);
      this.sigma[i] = c.sigma;
      mean += (c.share / total) * c.medianSeconds * Math.exp((c.sigma * c.sigma) / 2);
    });
    this.cumShare[lt.length - 1] = 1;
    this.meanLifetime = mean;

    const N = this.N;
    this.h = new Uint32Array(N);
    this.hh = trace.explicit ? new Uint32Array(N) : this.h;
    this.hrwScore = trace.explicit ? ovsHashInt : hashInt;
    this.hu = new Uint32Array(N);
    this.vip = new Uint16Array(N);
    this.start = new Float64Array(N);
    this.end = new Float64Array(N);
    this.gw = new Uint16Array(N);
    this.gwPrev = new Uint16Array(N);
    this.fresh = new Uint32Array(N);
    this.onGw = new Uint32Array(N);
    for (let s = 0; s < NS; s++) {
      const on = this.on[s] === 1;
      this.be.push(new Uint16Array(on ? N : 0));
      this.dead.push(new Uint8Array(on ? N : 0));
      this.lastVer.push(new Int32Array(on ? N : 0));
    }
    this.sticky = new Uint16Array(this.on[S_STICKY] ? N : 0);
    this.hop = new Uint8Array(this.on[S_SLUICE] ? N : 0);
    this.slot7 = new Uint16Array(this.on[S_SLUICE] ? N : 0);
    this.perGwHash = trace.datapathHash === 'per-gateway';

    const adds = trace.events.filter((e) => e.type === 'backend-add').length;
    const gAdds = trace.events.filter((e) => e.type === 'gateway-add').length;
    const bCap = topo.backends + adds;
    const gCap = topo.gateways + gAdds;
    this.alive = new Uint8Array(bCap);
    this.bstate = new Uint8Array(bCap).fill(BSTATE_REMOVED);
    this.members = Array.from({ length: this.V }, () => []);
    const ex = trace.explicit;
    this.hostOf = new Int32Array(bCap);
    const hostIds = new Map<string, number>();
    for (let b = 0; b < bCap; b++) {
      const hn = ex?.backends[b].host ?? `#${b}`;
      if (!hostIds.has(hn)) hostIds.set(hn, hostIds.size);
      this.hostOf[b] = hostIds.get(hn)!;
      this.addrs.push(ex ? ex.backends[b].address : address(b));
      this.ports.push(ex ? ex.backends[b].port : undefined);
      this.keyToId.set(this.key(b), b);
    }
    if (ex) {
      for (let b = 0; b < topo.backends; b++) {
        this.alive[b] = 1;
        this.bstate[b] = BSTATE_ACTIVE;
      }
      ex.pools.forEach((p, v) => {
        this.members[v].push(...p);
      });
    }
    for (let b = 0; b < (ex ? 0 : topo.backends); b++) {
      this.alive[b] = 1;
      this.bstate[b] = BSTATE_ACTIVE;
      this.members[b % this.V].push(b);
      const shared = (Math.imul(b + 1, 0x9e3779b1) >>> 0) / 4294967296 < topo.sharedFraction;
      if (shared && this.V > 1) this.members[(b + 1) % this.V].push(b);
    }
    this.nextBackend = topo.backends;
    this.gwUp = new Uint8Array(gCap);
    for (let g = 0; g < topo.gateways; g++) this.gwUp[g] = 1;
    this.nextGateway = topo.gateways;
    this.ecmp = new Ecmp(
      trace.ecmp,
      Array.from({ length: topo.gateways }, (_, g) => g),
    );
    this.gwCfg = new Int32Array(gCap);
    this.gwGen = new Int32Array(gCap);
    this.counters = new Float64Array((trace.events.length + 1) * NS * NF);
    this.evMeta = trace.events.map(() => ({ concurrent: N }));
    this.lastEv = trace.events.length; // the "steady" row
  }

  /**
   * Whether a packet of a connection on backend `cur` that is now sent to backend `b` still reaches its state:
   * `b` is `cur`, or another backend of the same host (its conntrack holds the entry: deferred DNAT keeps `cur`).
   */
  private reaches(b: number, cur: number): boolean {
    if (b === cur) return true;
    const n = this.hostOf.length;
    return b < n && cur < n && this.hostOf[b] === this.hostOf[cur];
  }

  private key(b: number): string {
    return backendKey({ address: this.addrs[b], port: this.ports[b] });
  }

  // ---------------------------------------------------------------- connections

  private sampleClass(): number {
    const u = this.connRng.next();
    let k = 0;
    while (u > this.cumShare[k]) k++;
    return k;
  }

  private newTuple(i: number): void {
    const r = this.connRng;
    const v = r.int(this.V);
    const src = r.u32();
    const sport = 1024 + r.int(64512);
    const dst = (0x64400000 + v) | 0;
    this.vip[i] = v;
    this.h[i] = tupleHash(src, dst, sport, 443, 6, SEED_DP);
    this.hu[i] = tupleHash(src, dst, sport, 443, 6, SEED_ECMP);
  }

  /** Connections alive at t = 0 in the stationary regime: length-biased lifetime, uniform age. */
  private initConnections(): void {
    const ex = this.trace.explicit;
    if (ex) {
      // Explicit mode: the observed connections, open before the run and through all of it.
      ex.connections.forEach((c, i) => {
        this.vip[i] = c.vip;
        this.h[i] = c.slot;
        this.hh[i] = c.hash ?? c.slot;
        this.hu[i] = this.connRng.u32();
        this.start[i] = -1;
        this.end[i] = Number.POSITIVE_INFINITY;
        this.gw[i] = this.ecmp.pick(this.hu[i]);
        this.fresh[this.freshCount++] = i;
      });
      return;
    }
    const lt = this.trace.lifetimes;
    const total = lt.reduce((s, c) => s + c.share, 0);
    // Class of a connection seen at a random instant: weighted by share * mean lifetime.
    const w = lt.map((c) => (c.share / total) * c.medianSeconds * Math.exp((c.sigma * c.sigma) / 2));
    const wsum = w.reduce((a, b) => a + b, 0);
    const cum = new Float64Array(w.length);
    let acc = 0;
    w.forEach((x, k) => {
      acc += x / wsum;
      cum[k] = acc;
    });
    cum[w.length - 1] = 1;
    const r = this.connRng;
    for (let i = 0; i < this.N; i++) {
      const u = r.next();
      let k = 0;
      while (u > cum[k]) k++;
      // Length-biased lognormal(mu, s) is lognormal(mu + s^2, s).
      const s = this.sigma[k];
      const L = Math.exp(this.mu[k] + s * s + s * r.normal());
      const age = r.next() * L;
      this.start[i] = -age;
      this.end[i] = L - age;
      this.newTuple(i);
      this.gw[i] = this.ecmp.pick(this.hu[i]);
      this.fresh[this.freshCount++] = i;
    }
  }

  /** Replaces every connection that ended by its successor(s) up to time t; lists the replaced slots. */
  private advance(t: number): void {
    const end = this.end;
    const r = this.connRng;
    const eager = this.hrwEager();
    for (let i = 0; i < this.N; i++) {
      if (end[i] > t) continue;
      let e = end[i];
      let s = e;
      for (;;) {
        s = e;
        const k = this.sampleClass();
        e = s + Math.exp(this.mu[k] + this.sigma[k] * r.normal());
        this.arrivals++;
        if (e > t) break;
        // Started and ended before this step: it never sees a change, but its setup may fail.
        this.newTuple(i);
        this.shortLived(this.vip[i], this.h[i], this.ecmp.pick(this.hu[i]), eager);
      }
      this.start[i] = s;
      end[i] = e;
      this.newTuple(i);
      this.gw[i] = this.ecmp.pick(this.hu[i]);
      this.fresh[this.freshCount++] = i;
    }
  }

  // ---------------------------------------------------------------- world state

  private snapshot(): Snapshot {
    const prev = this.versions[this.versions.length - 1];
    const sel: Int32Array[] = [];
    const slots: Uint16Array[] = [];
    const tables: SlotTable[] = [];
    const replyVip = new Int32Array(this.alive.length).fill(-1);
    for (let v = 0; v < this.V; v++) {
      const act = this.members[v].filter((b) => this.bstate[b] === BSTATE_ACTIVE);
      sel.push(Int32Array.from(act));
      for (const b of act) if (replyVip[b] < 0) replyVip[b] = v;
      const pool: PoolMember[] = act.map((b) => ({ key: this.key(b), weight: 1 }));
      const table = buildTable(pool, this.bits, prev?.tables[v]);
      tables.push(table);
      const ids = table.members.map((k) => this.keyToId.get(k)!);
      const o = new Uint16Array(table.owners.length);
      for (let s = 0; s < o.length; s++) o[s] = table.owners[s] === NONE ? NONE : ids[table.owners[s]];
      slots.push(o);
    }
    return { sel, slots, tables, replyVip };
  }

  private delay(): number {
    return this.delayRng.next() * this.trace.timing.applySpreadSeconds;
  }

  /** The backend configuration changed: a new version for the ungated strategies, a re-plan for sluice. */
  private configChanged(t: number, ev: number): void {
    this.versions.push(this.snapshot());
    const ver = this.versions.length - 1;
    for (let g = 0; g < this.nextGateway; g++) {
      if (this.gwUp[g]) this.q.push(t + this.delay(), K_APPLY_CFG, g, ver, ev);
    }
    if (!this.on[S_SLUICE]) return;
    if (this.s7Busy) {
      this.s7PendingEv = ev;
      return;
    }
    this.s7Ev = ev;
    this.s7Plan(t);
  }

  /** Computes every deferred strategy-3 pick (before anything reads be[S_HRW]). */
  private resolveLazy(): void {
    if (!this.on[S_HRW]) return;
    const be = this.be[S_HRW];
    const last = this.lastVer[S_HRW];
    for (let i = 0; i < this.N; i++) {
      if (be[i] === LAZY) be[i] = hrwPick(this.versions[last[i]].sel[this.vip[i]], this.hh[i], this.hrwScore);
    }
  }

  private kill(b: number, field: number, ev: number): void {
    this.resolveLazy();
    this.alive[b] = 0;
    for (let s = 0; s < NS; s++) {
      if (!this.on[s]) continue;
      const be = this.be[s];
      const dead = this.dead[s];
      for (let i = 0; i < this.N; i++) {
        if (be[i] === b && dead[i] === 0) this.breakConn(s, i, field, ev);
      }
    }
  }

  private breakConn(s: number, i: number, field: number, ev: number): void {
    this.dead[s][i] = 1;
    this.counters[(ev * NS + s) * NF + field]++;
    if (s === S_SLUICE && this.hop[i] === 1) {
      this.hop[i] = 0;
      this.hopCount--;
    }
  }

  private count(ev: number, s: number, field: number): void {
    this.counters[(ev * NS + s) * NF + field]++;
  }

  /**
   * The dp_hash gateway g computes for a connection whose shared 5-tuple hash is h: h itself when every gateway
   * hashes alike (userspace datapath), else a per-gateway reseeded hash (kernel datapath, per-boot seed).
   */
  private dh(h: number, g: number): number {
    return this.perGwHash ? fmix32(h ^ Math.imul(g + 1, 0x9e3779b9)) : h;
  }

  // ---------------------------------------------------------------- sluice planner (src/rollout)

  private plannerConfig(): Config {
    const nodes: Node[] = [];
    for (let g = 0; g < this.nextGateway; g++) {
      if (this.gwUp[g]) nodes.push({ name: `gw${g}`, role: 'gateway', tunnelIp: `172.16.0.${g}` });
    }
    for (let b = 0; b < this.nextBackend; b++) {
      if (this.bstate[b] !== BSTATE_REMOVED)
        nodes.push({ name: `h${b}`, role: 'host', tunnelIp: address(b) });
    }
    const lbs: LoadBalancer[] = [];
    for (let v = 0; v < this.V; v++) {
      const backends: Backend[] = [];
      for (const b of this.members[v]) {
        const st = this.bstate[b];
        if (st === BSTATE_REMOVED || st === BSTATE_DETACHED) continue;
        backends.push({
          address: this.addrs[b],
          port: this.ports[b],
          host: `h${b}`,
          weight: 1,
          state: st === BSTATE_ACTIVE ? 'active' : st === BSTATE_DRAINING ? 'draining' : 'down',
        });
      }
      lbs.push({ name: `vip${v}`, vip: `100.64.0.${v}`, family: 4, protocol: 'tcp', ports: [443], backends });
    }
    return {
      hashMode: 'dp_hash',
      slotBits: this.bits,
      drainWindowSeconds: this.trace.timing.drainWindowSeconds,
      nodes,
      loadBalancers: lbs,
    };
  }

  /** Live sluice connections per (VIP, slot) held by the slot's current second chance. */
  private secondChanceCounts(): Int32Array[] {
    const cur = this.gens[this.gens.length - 1];
    const out = Array.from({ length: this.V }, () => new Int32Array(1 << this.bits));
    const be = this.be[S_SLUICE];
    const dead = this.dead[S_SLUICE];
    for (let i = 0; i < this.N; i++) {
      if (dead[i]) continue;
      const v = this.vip[i];
      const s = this.slot7[i];
      if (cur.second[v][s] === be[i]) out[v][s]++;
    }
    return out;
  }

  private s7Plan(t: number): void {
    const counts = this.latestGen === null ? null : this.secondChanceCounts();
    const step = planNext({
      config: this.plannerConfig(),
      latest: this.latestGen,
      now: t * 1000,
      connections: (lb, slot, key) => {
        const v = Number(lb.slice(3));
        const id = this.keyToId.get(key);
        const cur = this.gens[this.gens.length - 1];
        if (counts !== null && id !== undefined && cur.second[v][slot] === id) return counts[v][slot];
        // Not the slot's second chance (the planner does not ask this today): count exactly.
        let n = 0;
        for (let i = 0; i < this.N; i++) {
          if (
            !this.dead[S_SLUICE][i] &&
            this.vip[i] === v &&
            this.slot7[i] === slot &&
            this.be[S_SLUICE][i] === id
          )
            n++;
        }
        return n;
      },
    });
    if (step.next === null) {
      this.s7Busy = false;
      if (this.hasSecondChances() && !this.s7TickPending) {
        this.s7TickPending = true;
        this.q.push(t + this.trace.timing.drainCheckSeconds, K_S7_TICK, 0, 0, this.s7Ev);
      }
      return;
    }
    const gaveUp: (Uint8Array | null)[] = Array.from({ length: this.V }, () => null);
    for (const n of step.notes) {
      if (n.kind !== 'gave-up') continue;
      const v = Number(n.lb.slice(3));
      const m = gaveUp[v] ?? new Uint8Array(1 << this.bits);
      for (const s of n.slots) m[s] = 1;
      gaveUp[v] = m;
    }
    this.publish(step.next, gaveUp, t, this.s7Ev);
  }

  private hasSecondChances(): boolean {
    const cur = this.gens[this.gens.length - 1];
    return cur.second.some((a) => a.some((x) => x !== NONE));
  }

  private publish(gen: Generation, gaveUp: (Uint8Array | null)[], t: number, ev: number): void {
    const primary: Uint16Array[] = [];
    const second: Uint16Array[] = [];
    for (let v = 0; v < this.V; v++) {
      const p = gen.pools.get(`vip${v}`)!;
      const ids = p.members.map((m) => this.keyToId.get(m.key)!);
      const size = p.primary.length;
      const pr = new Uint16Array(size);
      const se = new Uint16Array(size);
      for (let s = 0; s < size; s++) {
        pr[s] = p.primary[s] === NONE ? NONE : ids[p.primary[s]];
        se[s] = p.second[s] === NONE ? NONE : ids[p.second[s]];
      }
      primary.push(pr);
      second.push(se);
    }
    this.latestGen = gen;
    this.gens.push({ primary, second, gaveUp, ev });
    const g7 = this.gens.length - 1;
    if (g7 === 0) return; // the initial generation: every gateway starts on it
    this.s7Busy = true;
    let last = t;
    for (let g = 0; g < this.nextGateway; g++) {
      if (!this.gwUp[g]) continue;
      const at = t + this.delay();
      last = Math.max(last, at);
      this.q.push(at, K_S7_APPLY, g, g7, ev);
    }
    // Gated: the planner moves on when every live gateway applied this generation. The ungated ablation
    // (timing.sluiceGating false) moves on after ackLatencySeconds whatever the gateways did.
    const gated = this.trace.timing.sluiceGating ?? true;
    this.q.push((gated ? last : t) + this.trace.timing.ackLatencySeconds, K_S7_ACKED, g7, 0, ev);
  }

  // ---------------------------------------------------------------- assignment of new connections

  /** Strategy 3's pick may be deferred only while no gateway's version can contain a dead backend. */
  private hrwEager(): boolean {
    if (this.undetectedDead > 0) return true;
    for (let g = 0; g < this.nextGateway; g++) {
      if (this.gwUp[g] && this.gwCfg[g] < this.versions.length - 1) return true;
    }
    return false;
  }

  /** The backend a new connection (VIP v, hash h, through gateway g) gets under strategy s now. */
  private pickNew(s: number, v: number, h: number, hh: number, g: number, eager: boolean): number {
    switch (s) {
      case S_STATEFUL:
      case S_CTSYNC:
        return dpHashPick(this.versions[this.versions.length - 1].sel[v], h);
      case S_NAT:
        return dpHashPick(this.versions[this.gwCfg[g]].sel[v], this.dh(h, g));
      case S_HRW:
        return eager ? hrwPick(this.versions[this.gwCfg[g]].sel[v], hh, this.hrwScore) : LAZY;
      case S_SLOT:
      case S_STICKY:
        return this.versions[this.gwCfg[g]].slots[v][this.dh(h, g) & this.mask];
      default:
        return this.gens[this.gwGen[g]].primary[v][this.dh(h, g) & this.mask];
    }
  }

  /**
   * Counts a new connection's setup outcome under strategy s: 0 = established, F_FAILED (its SYN reached a dead
   * backend or none), F_WRONGVIP (strategy 2's reverse NAT answers from another VIP).
   */
  private setupOutcome(s: number, b: number, v: number, g: number): number {
    if (b === LAZY) return 0; // every backend of the version is alive
    if (b === NONE || this.alive[b] === 0) return F_FAILED;
    if (s === S_NAT && this.versions[this.gwCfg[g]].replyVip[b] !== v) return F_WRONGVIP;
    return 0;
  }

  /** A connection that started and ended between two steps: only its setup can fail. */
  private shortLived(v: number, h: number, g: number, eager: boolean): void {
    const ev = this.lastEv;
    for (let s = 0; s < NS; s++) {
      if (!this.on[s]) continue;
      const o = this.setupOutcome(s, this.pickNew(s, v, h, h, g, eager), v, g);
      if (o !== 0) this.count(ev, s, o);
    }
  }

  private assignFresh(): void {
    const ev = this.lastEv;
    const eager = this.hrwEager();
    for (let f = 0; f < this.freshCount; f++) {
      const i = this.fresh[f];
      const v = this.vip[i];
      const h = this.h[i];
      const g = this.gw[i];
      for (let s = 0; s < NS; s++) {
        if (!this.on[s]) continue;
        const b = this.pickNew(s, v, h, this.hh[i], g, eager);
        if (s === S_SLUICE) {
          if (this.hop[i] === 1) {
            this.hop[i] = 0;
            this.hopCount--;
          }
          this.lastVer[s][i] = this.gwGen[g];
          this.slot7[i] = this.dh(h, g) & this.mask;
        } else {
          this.lastVer[s][i] = this.gwCfg[g];
        }
        if (s === S_STICKY) this.sticky[i] = g;
        this.be[s][i] = b;
        const o = this.setupOutcome(s, b, v, g);
        this.dead[s][i] = o === 0 ? 0 : 1;
        if (o !== 0) this.count(ev, s, o);
      }
    }
    this.freshCount = 0;
  }

  // ---------------------------------------------------------------- evaluation

  /** Lists the connections ECMP sends to gateway g into `onGw` (returns the count). */
  private collectGateway(g: number): number {
    const gw = this.gw;
    const out = this.onGw;
    let n = 0;
    for (let i = 0; i < this.N; i++) if (gw[i] === g) out[n++] = i;
    return n;
  }

  /**
   * Re-checks connections whose gateway now runs another version than the one they were checked against:
   * all connections, or (count >= 0) the first `count` listed in `onGw`.
   */
  private evalVersioned(s: number, count: number, ev: number): void {
    if (!this.on[s]) return;
    const be = this.be[s];
    const dead = this.dead[s];
    const last = this.lastVer[s];
    const gwv = s === S_SLUICE ? this.gwGen : this.gwCfg;
    const gw = this.gw;
    const mask = this.mask;
    const list = this.onGw;
    const n = count >= 0 ? count : this.N;
    for (let j = 0; j < n; j++) {
      const i = count >= 0 ? list[j] : j;
      if (dead[i]) continue;
      const g = gw[i];
      if (s === S_STICKY) {
        if (g === this.sticky[i]) continue;
        // Another gateway: no sticky entry there, it uses its current table (and learns the result).
        const b = this.versions[gwv[g]].slots[this.vip[i]][this.dh(this.h[i], g) & mask];
        if (b === be[i]) this.sticky[i] = g;
        else this.breakConn(s, i, F_AVOID, ev);
        continue;
      }
      const ver = gwv[g];
      if (ver === last[i]) continue;
      const v = this.vip[i];
      const h = s === S_HRW ? this.hh[i] : this.dh(this.h[i], g);
      if (s === S_SLUICE) {
        const gen = this.gens[ver];
        const slot = h & mask;
        const p = gen.primary[v][slot];
        const ok = this.reaches(p, be[i]) || this.reaches(gen.second[v][slot], be[i]);
        if (!ok) {
          const gu = gen.gaveUp[v];
          this.breakConn(s, i, gu !== null && gu[slot] === 1 ? F_DRAIN : F_AVOID, ev);
          continue;
        }
        const hop = this.reaches(p, be[i]) ? 0 : 1;
        if (hop !== this.hop[i]) {
          this.hop[i] = hop;
          this.hopCount += hop === 1 ? 1 : -1;
        }
        last[i] = ver;
        continue;
      }
      const cfg = this.versions[ver];
      let b: number;
      if (s === S_NAT) b = dpHashPick(cfg.sel[v], h);
      else if (s === S_HRW) {
        if (be[i] === LAZY) be[i] = hrwPick(this.versions[last[i]].sel[v], h, this.hrwScore);
        b = hrwPick(cfg.sel[v], h, this.hrwScore);
      } else b = cfg.slots[v][h & mask];
      // Strategy 2 SNATs replies by backend address, so only its own backend keeps a connection.
      if (b === be[i] || (s !== S_NAT && this.reaches(b, be[i]))) last[i] = ver;
      else this.breakConn(s, i, F_AVOID, ev);
    }
  }

  private noteSpread(): void {
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    for (let g = 0; g < this.nextGateway; g++) {
      if (!this.gwUp[g]) continue;
      lo = Math.min(lo, this.gwGen[g]);
      hi = Math.max(hi, this.gwGen[g]);
    }
    if (hi - lo > this.s7MaxSpread) this.s7MaxSpread = hi - lo;
  }

  private notePeak(ev: number): void {
    const k = (ev * NS + S_SLUICE) * NF + F_HOPPEAK;
    if (this.hopCount > this.counters[k]) this.counters[k] = this.hopCount;
  }

  /** The upstream next-hop list changed: re-hash every connection, then check each strategy. */
  private ecmpChanged(t: number, ev: number, hops: number[], graceful: number): void {
    const before = this.ecmp.hops.slice();
    this.ecmp = new Ecmp(this.trace.ecmp, hops);
    this.gwPrev.set(this.gw);
    let moved = 0;
    for (let i = 0; i < this.N; i++) {
      const g = this.ecmp.pick(this.hu[i]);
      if (g !== this.gw[i]) moved++;
      this.gw[i] = g;
    }
    this.evMeta[ev].ecmpMoved = {
      measured: moved / this.N,
      exact: ecmpMovedShare(this.trace.ecmp, before, hops),
    };
    if (this.perGwHash) {
      // A connection checked on one gateway says nothing about another gateway's hash: check moved ones again.
      for (const s of [S_NAT, S_SLOT, S_SLUICE]) {
        if (!this.on[s]) continue;
        const last = this.lastVer[s];
        for (let i = 0; i < this.N; i++) if (this.gw[i] !== this.gwPrev[i]) last[i] = -1;
      }
    }
    for (const s of [S_NAT, S_HRW, S_SLOT, S_STICKY, S_SLUICE]) this.evalVersioned(s, -1, ev);
    if (this.on[S_CTSYNC]) {
      const lag = this.trace.timing.syncLagSeconds;
      const dead = this.dead[S_CTSYNC];
      for (let i = 0; i < this.N; i++) {
        if (dead[i] || this.gw[i] === this.gwPrev[i]) continue;
        if (this.gwPrev[i] === graceful) continue; // a leaving gateway resyncs its table first
        if (t - this.start[i] < lag) this.breakConn(S_CTSYNC, i, F_AVOID, ev);
      }
    }
  }

  private failover(ev: number): void {
    // The HA chassis group moves the gateway port to the next gateway by priority (lowest id up).
    let next = -1;
    for (let g = 0; g < this.nextGateway; g++) {
      if (this.gwUp[g]) {
        next = g;
        break;
      }
    }
    this.activeGw = next;
    if (!this.on[S_STATEFUL]) return;
    const dead = this.dead[S_STATEFUL];
    for (let i = 0; i < this.N; i++) if (!dead[i]) this.breakConn(S_STATEFUL, i, F_AVOID, ev);
  }

  // ---------------------------------------------------------------- the loop

  private handleEvent(t: number, ev: number): void {
    const e = this.trace.events[ev];
    switch (e.type) {
      case 'backend-add': {
        const b = this.nextBackend++;
        this.alive[b] = 1;
        this.bstate[b] = BSTATE_ACTIVE;
        this.members[e.vip ?? 0].push(b);
        this.configChanged(t, ev);
        break;
      }
      case 'backend-remove': {
        const b = e.backend!;
        if (e.keepServing) {
          // Out of the config, server still up: each strategy decides whether its connections survive.
          this.bstate[b] = BSTATE_DETACHED;
          this.configChanged(t, ev);
          break;
        }
        this.kill(b, F_UNAVOID, ev);
        this.bstate[b] = BSTATE_REMOVED;
        this.configChanged(t, ev);
        break;
      }
      case 'backend-drain': {
        const b = e.backend!;
        this.bstate[b] = BSTATE_DRAINING;
        this.configChanged(t, ev);
        this.q.push(t + this.trace.timing.drainWindowSeconds, K_BACKEND_STOP, b, 0, ev);
        break;
      }
      case 'backend-fail': {
        const b = e.backend!;
        this.kill(b, F_UNAVOID, ev);
        this.undetectedDead++;
        this.q.push(t + this.trace.timing.detectSeconds, K_DETECT, b, 0, ev);
        break;
      }
      case 'gateway-add': {
        const g = this.nextGateway++;
        this.gwUp[g] = 1;
        this.gwCfg[g] = this.versions.length - 1;
        this.gwGen[g] = this.gens.length - 1;
        this.ecmpChanged(t, ev, [...this.ecmp.hops, g], -1);
        break;
      }
      case 'gateway-remove':
      case 'gateway-crash': {
        const g = e.gateway!;
        if (!this.gwUp[g]) break;
        this.gwUp[g] = 0;
        this.ecmpChanged(
          t,
          ev,
          this.ecmp.hops.filter((x) => x !== g),
          e.type === 'gateway-remove' ? g : -1,
        );
        if (g === this.activeGw) this.failover(ev);
        break;
      }
    }
  }

  run(): SimResult {
    const t0 = performance.now();
    this.versions.push(this.snapshot());
    if (this.on[S_SLUICE]) this.s7Plan(0);
    this.initConnections();
    this.assignFresh();
    this.adoptExplicitBackends();
    this.trace.events.forEach((e, i) => {
      this.q.push(e.at, K_EVENT, i, 0, i);
    });
    const endT = this.trace.durationSeconds;
    this.q.push(endT, K_END, 0, 0, this.trace.events.length);
    let lastT = 0;
    while (this.q.size > 0) {
      const st = this.q.pop();
      if (st.t > endT) break;
      const t = st.t;
      this.hopConnSeconds += this.hopCount * (t - lastT);
      this.connSeconds += this.N * (t - lastT);
      lastT = t;
      this.advance(t);
      this.assignFresh();
      const ev = st.ev;
      this.lastEv = ev;
      switch (st.kind) {
        case K_EVENT:
          this.handleEvent(t, st.a);
          break;
        case K_APPLY_CFG:
          if (this.gwUp[st.a] && st.b > this.gwCfg[st.a]) {
            this.gwCfg[st.a] = st.b;
            const n = this.collectGateway(st.a);
            for (const s of [S_NAT, S_HRW, S_SLOT, S_STICKY]) this.evalVersioned(s, n, ev);
          }
          break;
        case K_S7_APPLY:
          if (this.gwUp[st.a] && st.b > this.gwGen[st.a]) {
            this.gwGen[st.a] = st.b;
            this.noteSpread();
            this.evalVersioned(S_SLUICE, this.collectGateway(st.a), ev);
          }
          break;
        case K_S7_ACKED:
          this.s7Busy = false;
          this.s7Ev = this.s7PendingEv >= 0 ? this.s7PendingEv : ev;
          this.s7PendingEv = -1;
          this.s7Plan(t);
          break;
        case K_S7_TICK:
          this.s7TickPending = false;
          if (!this.s7Busy) this.s7Plan(t);
          break;
        case K_BACKEND_STOP:
          this.kill(st.a, F_DRAIN, ev);
          this.bstate[st.a] = BSTATE_REMOVED;
          this.configChanged(t, ev);
          break;
        case K_DETECT:
          this.undetectedDead--;
          if (this.bstate[st.a] !== BSTATE_REMOVED) this.bstate[st.a] = BSTATE_DOWN;
          this.configChanged(t, ev);
          break;
        case K_END:
          break;
      }
      if (ev < this.trace.events.length) this.notePeak(ev);
    }
    return this.result(performance.now() - t0);
  }

  /**
   * Explicit mode: every connection is on the backend observed in the lab, whatever the model would have picked
   * (scripts/validate-sim.ts checks separately that the picks agree).
   */
  private adoptExplicitBackends(): void {
    const ex = this.trace.explicit;
    if (!ex) return;
    for (let s = 0; s < NS; s++) {
      if (!this.on[s]) continue;
      ex.connections.forEach((c, i) => {
        this.be[s][i] = c.backend;
        this.dead[s][i] = 0;
        if (s === S_STICKY) this.sticky[i] = this.gw[i];
      });
    }
    this.counters.fill(0);
  }

  private result(runtimeMs: number): SimResult {
    const nev = this.trace.events.length;
    const get = (ev: number, s: number, f: number) => this.counters[(ev * NS + s) * NF + f];
    const counters = (ev: number, s: number): Counters => ({
      avoidable: get(ev, s, F_AVOID),
      unavoidable: get(ev, s, F_UNAVOID),
      drainExpired: get(ev, s, F_DRAIN),
      failedSetups: get(ev, s, F_FAILED),
      wrongVip: get(ev, s, F_WRONGVIP),
      secondChancePeak: get(ev, s, F_HOPPEAK),
    });
    const perStrategy = (ev: number) =>
      Object.fromEntries(STRATEGIES.map((id, s) => [id, counters(ev, s)])) as Record<StrategyId, Counters>;
    const events: EventResult[] = this.trace.events.map((e, i) => ({
      index: i,
      at: e.at,
      type: e.type,
      label: e.label ?? describe(e),
      concurrent: this.evMeta[i].concurrent,
      ...(this.evMeta[i].ecmpMoved !== undefined ? { ecmpMoved: this.evMeta[i].ecmpMoved } : {}),
      strategies: perStrategy(i),
    }));
    events.push({
      index: nev,
      at: 0,
      type: 'steady',
      label: 'steady state (no event)',
      concurrent: this.N,
      strategies: perStrategy(nev),
    });
    // Per-gateway entries at the end of the run.
    const gCount = this.nextGateway;
    const liveOf = (s: number) => {
      let n = 0;
      const d = this.dead[s];
      for (let i = 0; i < d.length; i++) if (d[i] === 0) n++;
      return n;
    };
    const stickyMax = (() => {
      if (!this.on[S_STICKY]) return 0;
      const per = new Int32Array(gCount);
      const d = this.dead[S_STICKY];
      for (let i = 0; i < this.N; i++) if (d[i] === 0) per[this.sticky[i]]++;
      return Math.max(0, ...per);
    })();
    const totals = Object.fromEntries(
      STRATEGIES.map((id, s) => {
        let sum = { avoidable: 0, unavoidable: 0, drainExpired: 0, failedSetups: 0, wrongVip: 0, peak: 0 };
        for (let ev = 0; ev <= nev; ev++) {
          const c = counters(ev, s);
          sum = {
            avoidable: sum.avoidable + c.avoidable,
            unavoidable: sum.unavoidable + c.unavoidable,
            drainExpired: sum.drainExpired + c.drainExpired,
            failedSetups: sum.failedSetups + c.failedSetups,
            wrongVip: sum.wrongVip + c.wrongVip,
            peak: Math.max(sum.peak, c.secondChancePeak),
          };
        }
        const entries = !this.on[s]
          ? 0
          : s === S_STATEFUL || s === S_CTSYNC
            ? liveOf(s)
            : s === S_STICKY
              ? stickyMax
              : 0;
        const t: StrategyTotals = {
          avoidable: sum.avoidable,
          unavoidable: sum.unavoidable,
          drainExpired: sum.drainExpired,
          failedSetups: sum.failedSetups,
          wrongVip: sum.wrongVip,
          secondChancePeak: sum.peak,
          broken: sum.avoidable + sum.unavoidable + sum.drainExpired,
          extraHopShare: s === S_SLUICE && this.connSeconds > 0 ? this.hopConnSeconds / this.connSeconds : 0,
          gatewayEntriesMax: entries,
        };
        return [id, t];
      }),
    ) as Record<StrategyId, StrategyTotals>;
    return {
      trace: this.trace,
      seed: this.seed,
      arrivals: this.arrivals,
      arrivalsPerSecond: this.arrivals / this.trace.durationSeconds,
      meanLifetime: this.meanLifetime,
      events,
      totals,
      sluiceGenerations: this.gens.length,
      sluiceMaxGenerationSpread: this.s7MaxSpread,
      runtimeMs,
    };
  }
}

function describe(e: Trace['events'][number]): string {
  if (e.type === 'backend-add') return `add a backend to vip${e.vip ?? 0}`;
  if (e.type.startsWith('backend-')) return `${e.type.slice(8)} backend ${e.backend}`;
  if (e.type === 'gateway-add') return 'add a gateway';
  return `${e.type.slice(8)} gateway ${e.gateway}`;
}
