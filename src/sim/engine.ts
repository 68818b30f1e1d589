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
import { buildTable, type PoolMember, type SlotTable } from '../hashing/slots.ts';
import { backendKey } from '../model/types.ts';
import { Ecmp, ecmpMovedShare } from './ecmp.ts';
import { hashInt, Rng, streamSeed, tupleHash } from './hash.ts';
import { ovsHashInt } from './ovshash.ts';
import { type ChainStats, type PlannerWorld, SluiceStrategy } from './sluice-strategy.ts';
import { STEP, StepQueue } from './step-queue.ts';
import {
  AVOIDABLE,
  BACKEND_ACTIVE,
  BACKEND_DETACHED,
  BACKEND_DOWN,
  BACKEND_DRAINING,
  BACKEND_REMOVED,
  COUNTER_FIELDS,
  DRAIN_EXPIRED,
  FAILED_SETUP,
  generatedAddress,
  NONE,
  SECOND_CHANCE_PEAK,
  type Snapshot,
  STRATEGIES,
  type Strategy,
  type StrategyId,
  UNAVOIDABLE,
  ungatedStrategy,
  WRONG_VIP,
} from './strategies.ts';
import type { EventType, Trace } from './trace.ts';

export { dpHashPick, hrwPick, STRATEGIES, type StrategyId } from './strategies.ts';

export const STRATEGY_TITLES: Readonly<Record<StrategyId, string>> = {
  stateful: '1 stateful gateway (OVN today)',
  stateless_nat: '2 OVN use_stateless_nat',
  hash_hrw: '3 select hash, stable bucket ids (HRW)',
  slot_table: '4 consistent slot table, no second chance',
  sticky: '5 slot table + per-gateway sticky table',
  ct_sync: '6 conntrack synced between gateways',
  sluice: '7 sluice (slot table + chains of previous owners + phases)',
};

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
  /** sluice's chain figures (undefined when sluice did not run). */
  readonly sluiceChains: ChainStats | undefined;
  readonly runtimeMs: number;
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

/** Seeds of the two stand-in hash functions (datapath 5-tuple hash, upstream router ECMP hash). */
const SEED_DP = 0x0d9a5e11;
const SEED_ECMP = 0x7a3c0b21;

/**
 * The simulated world (connections, backends, gateways, upstream ECMP, configuration versions) and the loop over
 * steps; the strategy models it runs read the world through `World`/`PlannerWorld` and keep their own state.
 */
class Sim implements PlannerWorld {
  readonly trace: Trace;
  readonly #seed: number;
  /** The strategies to run, in STRATEGIES order; `#sluice` is also among them when it runs. */
  readonly #models: Strategy[] = [];
  readonly #sluice: SluiceStrategy | null = null;
  readonly connections: number;
  readonly vips: number;
  readonly slotBits: number;
  readonly slotMask: number;
  readonly #connRng: Rng;
  readonly #delayRng: Rng;
  // Lifetime mix.
  readonly #cumShare: Float64Array;
  readonly #mu: Float64Array;
  readonly #sigma: Float64Array;
  readonly #meanLifetime: number;
  // Connections (struct of arrays).
  readonly vip: Uint16Array;
  readonly flowHash: Uint32Array;
  readonly hrwHash: Uint32Array;
  readonly hrwScore: (x: number, basis: number) => number;
  /** Per connection: the upstream router's ECMP hash. */
  readonly #ecmpHash: Uint32Array;
  readonly start: Float64Array;
  readonly #end: Float64Array;
  readonly gateway: Uint16Array;
  readonly gatewayBefore: Uint16Array;
  /** Every connection index in order (a re-check of all connections). */
  readonly #all: Uint32Array;
  /** Connections started since the last step (to assign in every strategy). */
  readonly #fresh: Uint32Array;
  #freshCount = 0;
  /** Connections that started and ended between two steps (only their setup is evaluated). */
  readonly #short = new ShortLived();
  /** Scratch: the connections on one gateway. */
  readonly #onGateway: Uint32Array;
  #arrivals = 0;
  #connSeconds = 0;
  readonly perGatewayHash: boolean;
  // Backends.
  readonly addresses: string[] = [];
  readonly ports: (number | undefined)[] = [];
  /** Per backend: its host (backends of one host share its conntrack). Distinct per backend unless explicit. */
  readonly #hostOf: Int32Array;
  readonly alive: Uint8Array;
  readonly backendState: Uint8Array;
  readonly members: number[][];
  backends: number;
  readonly backendId = new Map<string, number>();
  /** Backends that died and that health checks have not reported yet (new connections may pick them). */
  #undetectedDead = 0;
  // Gateways.
  readonly gatewayUp: Uint8Array;
  gateways: number;
  #ecmp: Ecmp;
  #activeGateway = 0;
  // Ungated config versions (strategies 2-5).
  readonly versions: Snapshot[] = [];
  readonly gatewayVersion: Int32Array;
  // Results.
  readonly #evMeta: { concurrent: number; ecmpMoved?: { measured: number; exact: number } }[];
  readonly #queue = new StepQueue();
  /** The event whose counters get what happens now (the "steady" row between events). */
  #lastEv: number;

  constructor(trace: Trace, seed: number, strategies: readonly StrategyId[]) {
    this.trace = trace;
    this.#seed = seed;
    const topo = trace.topology;
    const N = topo.connections;
    this.connections = N;
    this.vips = topo.vips;
    this.slotBits = topo.slotBits;
    this.slotMask = (1 << this.slotBits) - 1;
    this.#connRng = new Rng(streamSeed(seed, 1));
    this.#delayRng = new Rng(streamSeed(seed, 2));

    const lt = trace.lifetimes;
    const total = lt.reduce((s, c) => s + c.share, 0);
    this.#cumShare = new Float64Array(lt.length);
    this.#mu = new Float64Array(lt.length);
    this.#sigma = new Float64Array(lt.length);
    let acc = 0;
    let mean = 0;
    lt.forEach((c, i) => {
      acc += c.share / total;
      this.#cumShare[i] = acc;
      this.#mu[i] = Math.log(c.medianSeconds);
      this.#sigma[i] = c.sigma;
      mean += (c.share / total) * c.medianSeconds * Math.exp((c.sigma * c.sigma) / 2);
    });
    this.#cumShare[lt.length - 1] = 1;
    this.#meanLifetime = mean;

    this.flowHash = new Uint32Array(N);
    this.hrwHash = trace.explicit ? new Uint32Array(N) : this.flowHash;
    this.hrwScore = trace.explicit ? ovsHashInt : hashInt;
    this.#ecmpHash = new Uint32Array(N);
    this.vip = new Uint16Array(N);
    this.start = new Float64Array(N);
    this.#end = new Float64Array(N);
    this.gateway = new Uint16Array(N);
    this.gatewayBefore = new Uint16Array(N);
    this.#all = Uint32Array.from({ length: N }, (_, i) => i);
    this.#fresh = new Uint32Array(N);
    this.#onGateway = new Uint32Array(N);
    this.perGatewayHash = trace.datapathHash === 'per-gateway';

    const adds = trace.events.filter((e) => e.type === 'backend-add').length;
    const gAdds = trace.events.filter((e) => e.type === 'gateway-add').length;
    const bCap = topo.backends + adds;
    const gCap = topo.gateways + gAdds;
    this.alive = new Uint8Array(bCap);
    this.backendState = new Uint8Array(bCap).fill(BACKEND_REMOVED);
    this.members = Array.from({ length: this.vips }, () => []);
    this.#hostOf = new Int32Array(bCap);
    this.#initBackends(bCap);
    this.backends = topo.backends;
    this.gatewayUp = new Uint8Array(gCap);
    for (let g = 0; g < topo.gateways; g++) this.gatewayUp[g] = 1;
    this.gateways = topo.gateways;
    this.#ecmp = new Ecmp(
      trace.ecmp,
      Array.from({ length: topo.gateways }, (_, g) => g),
    );
    this.gatewayVersion = new Int32Array(gCap);
    this.#evMeta = trace.events.map(() => ({ concurrent: N }));
    this.#lastEv = trace.events.length; // the "steady" row

    for (const id of STRATEGIES) {
      if (!strategies.includes(id)) continue;
      if (id === 'sluice') {
        this.#sluice = new SluiceStrategy(this, gCap);
        this.#models.push(this.#sluice);
      } else this.#models.push(ungatedStrategy(id, this));
    }
  }

  /** Backend addresses, hosts and pools: generated, or the explicit world's. */
  #initBackends(bCap: number): void {
    const topo = this.trace.topology;
    const ex = this.trace.explicit;
    const hostIds = new Map<string, number>();
    for (let b = 0; b < bCap; b++) {
      const hn = ex?.backends[b].host ?? `#${b}`;
      if (!hostIds.has(hn)) hostIds.set(hn, hostIds.size);
      this.#hostOf[b] = hostIds.get(hn)!;
      this.addresses.push(ex ? ex.backends[b].address : generatedAddress(b));
      this.ports.push(ex ? ex.backends[b].port : undefined);
      this.backendId.set(this.#key(b), b);
    }
    if (ex) {
      for (let b = 0; b < topo.backends; b++) {
        this.alive[b] = 1;
        this.backendState[b] = BACKEND_ACTIVE;
      }
      ex.pools.forEach((p, v) => {
        this.members[v].push(...p);
      });
      return;
    }
    for (let b = 0; b < topo.backends; b++) {
      this.alive[b] = 1;
      this.backendState[b] = BACKEND_ACTIVE;
      this.members[b % this.vips].push(b);
      const shared = (Math.imul(b + 1, 0x9e3779b1) >>> 0) / 4294967296 < topo.sharedFraction;
      if (shared && this.vips > 1) this.members[(b + 1) % this.vips].push(b);
    }
  }

  /**
   * Whether a packet of a connection on backend `cur` that is now sent to backend `b` still reaches its state:
   * `b` is `cur`, or another backend of the same host (its conntrack holds the entry: deferred DNAT keeps `cur`).
   */
  reaches(b: number, cur: number): boolean {
    if (b === cur) return true;
    const n = this.#hostOf.length;
    return b < n && cur < n && this.#hostOf[b] === this.#hostOf[cur];
  }

  /**
   * The dp_hash gateway g computes for a connection whose shared 5-tuple hash is h: h itself when every gateway
   * hashes alike (userspace datapath), else a per-gateway reseeded hash (kernel datapath, per-boot seed).
   */
  gatewayHash(h: number, g: number): number {
    return this.perGatewayHash ? fmix32(h ^ Math.imul(g + 1, 0x9e3779b9)) : h;
  }

  schedule(t: number, kind: number, a: number, b: number, ev: number): void {
    this.#queue.push(t, kind, a, b, ev);
  }

  applyDelay(): number {
    return this.#delayRng.next() * this.trace.timing.applySpreadSeconds;
  }

  #key(b: number): string {
    return backendKey({ address: this.addresses[b], port: this.ports[b] });
  }

  // ---------------------------------------------------------------- connections

  #sampleClass(): number {
    const u = this.#connRng.next();
    let k = 0;
    while (u > this.#cumShare[k]) k++;
    return k;
  }

  #newTuple(i: number): void {
    const r = this.#connRng;
    const v = r.int(this.vips);
    const src = r.u32();
    const sport = 1024 + r.int(64512);
    const dst = (0x64400000 + v) | 0;
    this.vip[i] = v;
    this.flowHash[i] = tupleHash(src, dst, sport, 443, 6, SEED_DP);
    this.#ecmpHash[i] = tupleHash(src, dst, sport, 443, 6, SEED_ECMP);
  }

  /** Connections alive at t = 0 in the stationary regime: length-biased lifetime, uniform age. */
  #initConnections(): void {
    const ex = this.trace.explicit;
    if (ex) {
      // Explicit mode: the observed connections, open before the run and through all of it.
      ex.connections.forEach((c, i) => {
        this.vip[i] = c.vip;
        this.flowHash[i] = c.slot;
        this.hrwHash[i] = c.hash ?? c.slot;
        this.#ecmpHash[i] = this.#connRng.u32();
        this.start[i] = -1;
        this.#end[i] = Number.POSITIVE_INFINITY;
        this.gateway[i] = this.#ecmp.pick(this.#ecmpHash[i]);
        this.#fresh[this.#freshCount++] = i;
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
    const r = this.#connRng;
    for (let i = 0; i < this.connections; i++) {
      const u = r.next();
      let k = 0;
      while (u > cum[k]) k++;
      // Length-biased lognormal(mu, s) is lognormal(mu + s^2, s).
      const s = this.#sigma[k];
      const L = Math.exp(this.#mu[k] + s * s + s * r.normal());
      const age = r.next() * L;
      this.start[i] = -age;
      this.#end[i] = L - age;
      this.#newTuple(i);
      this.gateway[i] = this.#ecmp.pick(this.#ecmpHash[i]);
      this.#fresh[this.#freshCount++] = i;
    }
  }

  /** Replaces every connection that ended by its successor(s) up to time t; lists the replaced slots. */
  #advance(t: number): void {
    const end = this.#end;
    const r = this.#connRng;
    const eager = this.#hrwEager();
    for (let i = 0; i < this.connections; i++) {
      if (end[i] > t) continue;
      let e = end[i];
      let s = e;
      for (;;) {
        s = e;
        const k = this.#sampleClass();
        e = s + Math.exp(this.#mu[k] + this.#sigma[k] * r.normal());
        this.#arrivals++;
        if (e > t) break;
        // Started and ended before this step: it never sees a change, but its setup may fail.
        this.#newTuple(i);
        this.#noteShortLived(i);
      }
      this.start[i] = s;
      end[i] = e;
      this.#newTuple(i);
      this.gateway[i] = this.#ecmp.pick(this.#ecmpHash[i]);
      this.#fresh[this.#freshCount++] = i;
    }
    for (const m of this.#models) {
      m.shortLived(
        this.#short.vip,
        this.#short.hash,
        this.#short.gateway,
        this.#short.count,
        eager,
        this.#lastEv,
      );
    }
    this.#short.count = 0;
  }

  /** Lists connection i's current tuple as one that starts and ends before the next step. */
  #noteShortLived(i: number): void {
    const s = this.#short;
    if (s.count === s.vip.length) s.grow();
    s.vip[s.count] = this.vip[i];
    s.hash[s.count] = this.flowHash[i];
    s.gateway[s.count] = this.#ecmp.pick(this.#ecmpHash[i]);
    s.count++;
  }

  /** Sets up the connections started since the last step in every strategy. */
  #assignFresh(): void {
    const ev = this.#lastEv;
    const eager = this.#hrwEager();
    for (const m of this.#models) m.assignNew(this.#fresh, this.#freshCount, eager, ev);
    this.#freshCount = 0;
  }

  /** Strategy 3's pick may be deferred only while no gateway's version can contain a dead backend. */
  #hrwEager(): boolean {
    if (this.#undetectedDead > 0) return true;
    for (let g = 0; g < this.gateways; g++) {
      if (this.gatewayUp[g] && this.gatewayVersion[g] < this.versions.length - 1) return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- world state

  #snapshot(): Snapshot {
    const prev = this.versions[this.versions.length - 1];
    const sel: Int32Array[] = [];
    const slots: Uint16Array[] = [];
    const tables: SlotTable[] = [];
    const replyVip = new Int32Array(this.alive.length).fill(-1);
    for (let v = 0; v < this.vips; v++) {
      const act = this.members[v].filter((b) => this.backendState[b] === BACKEND_ACTIVE);
      sel.push(Int32Array.from(act));
      for (const b of act) if (replyVip[b] < 0) replyVip[b] = v;
      const pool: PoolMember[] = act.map((b) => ({ key: this.#key(b), weight: 1 }));
      const table = buildTable(pool, this.slotBits, prev?.tables[v]);
      tables.push(table);
      const ids = table.members.map((k) => this.backendId.get(k)!);
      const o = new Uint16Array(table.owners.length);
      for (let s = 0; s < o.length; s++) o[s] = table.owners[s] === NONE ? NONE : ids[table.owners[s]];
      slots.push(o);
    }
    return { sel, slots, tables, replyVip };
  }

  /** The backend configuration changed: a new version for the ungated strategies, a re-plan for sluice. */
  #configChanged(t: number, ev: number): void {
    this.versions.push(this.#snapshot());
    const ver = this.versions.length - 1;
    for (let g = 0; g < this.gateways; g++) {
      if (this.gatewayUp[g]) this.#queue.push(t + this.applyDelay(), STEP.applyCfg, g, ver, ev);
    }
    this.#sluice?.configChanged(t, ev);
  }

  #kill(b: number, field: number, ev: number): void {
    this.alive[b] = 0;
    for (const m of this.#models) m.killed(b, field, ev);
  }

  /** Lists the connections ECMP sends to gateway g into `#onGateway` (returns the count). */
  #collectGateway(g: number): number {
    const gw = this.gateway;
    const out = this.#onGateway;
    let n = 0;
    for (let i = 0; i < this.connections; i++) if (gw[i] === g) out[n++] = i;
    return n;
  }

  /** The upstream next-hop list changed: re-hash every connection, then check each strategy. */
  #ecmpChanged(t: number, ev: number, hops: number[], graceful: number): void {
    const before = this.#ecmp.hops.slice();
    this.#ecmp = new Ecmp(this.trace.ecmp, hops);
    this.gatewayBefore.set(this.gateway);
    let moved = 0;
    for (let i = 0; i < this.connections; i++) {
      const g = this.#ecmp.pick(this.#ecmpHash[i]);
      if (g !== this.gateway[i]) moved++;
      this.gateway[i] = g;
    }
    this.#evMeta[ev].ecmpMoved = {
      measured: moved / this.connections,
      exact: ecmpMovedShare(this.trace.ecmp, before, hops),
    };
    for (const m of this.#models) m.ecmpChanged(t, ev, graceful, this.#all);
  }

  #failover(ev: number): void {
    // The HA chassis group moves the gateway port to the next gateway by priority (lowest id up).
    let next = -1;
    for (let g = 0; g < this.gateways; g++) {
      if (this.gatewayUp[g]) {
        next = g;
        break;
      }
    }
    this.#activeGateway = next;
    for (const m of this.#models) m.activeGatewayLost(ev);
  }

  // ---------------------------------------------------------------- the loop

  #handleEvent(t: number, ev: number): void {
    const e = this.trace.events[ev];
    switch (e.type) {
      case 'backend-add': {
        const b = this.backends++;
        this.alive[b] = 1;
        this.backendState[b] = BACKEND_ACTIVE;
        this.members[e.vip ?? 0].push(b);
        this.#configChanged(t, ev);
        break;
      }
      case 'backend-remove': {
        const b = e.backend!;
        if (e.keepServing) {
          // Out of the config, server still up: each strategy decides whether its connections survive.
          this.backendState[b] = BACKEND_DETACHED;
          this.#configChanged(t, ev);
          break;
        }
        this.#kill(b, UNAVOIDABLE, ev);
        this.backendState[b] = BACKEND_REMOVED;
        this.#configChanged(t, ev);
        break;
      }
      case 'backend-drain': {
        const b = e.backend!;
        this.backendState[b] = BACKEND_DRAINING;
        this.#configChanged(t, ev);
        this.#queue.push(t + this.trace.timing.drainWindowSeconds, STEP.backendStop, b, 0, ev);
        break;
      }
      case 'backend-fail': {
        const b = e.backend!;
        this.#kill(b, UNAVOIDABLE, ev);
        this.#undetectedDead++;
        this.#queue.push(t + this.trace.timing.detectSeconds, STEP.detect, b, 0, ev);
        break;
      }
      case 'gateway-add': {
        const g = this.gateways++;
        this.gatewayUp[g] = 1;
        this.gatewayVersion[g] = this.versions.length - 1;
        this.#sluice?.gatewayAdded(g);
        this.#ecmpChanged(t, ev, [...this.#ecmp.hops, g], -1);
        break;
      }
      case 'gateway-remove':
      case 'gateway-crash': {
        const g = e.gateway!;
        if (!this.gatewayUp[g]) break;
        this.gatewayUp[g] = 0;
        this.#ecmpChanged(
          t,
          ev,
          this.#ecmp.hops.filter((x) => x !== g),
          e.type === 'gateway-remove' ? g : -1,
        );
        if (g === this.#activeGateway) this.#failover(ev);
        break;
      }
    }
  }

  /** One step other than a trace event. */
  #handleStep(t: number, kind: number, a: number, b: number, ev: number): void {
    switch (kind) {
      case STEP.applyCfg:
        if (this.gatewayUp[a] && b > this.gatewayVersion[a]) {
          this.gatewayVersion[a] = b;
          const n = this.#collectGateway(a);
          for (const m of this.#models) m.configApplied(this.#onGateway, n, ev);
        }
        break;
      case STEP.sluiceApply:
        if (this.#sluice?.applyGeneration(a, b)) {
          this.#sluice.recheck(this.#onGateway, this.#collectGateway(a), ev);
        }
        break;
      case STEP.sluiceAcked:
        this.#sluice?.acknowledged(t, ev);
        break;
      case STEP.sluiceTick:
        this.#sluice?.tick(t);
        break;
      case STEP.backendStop:
        // The operator stops a drained server: its remaining connections break for every strategy (the server is
        // gone: unavoidable). Drain-expired is kept for connections of live backends a strategy gives up on.
        this.#kill(a, UNAVOIDABLE, ev);
        this.backendState[a] = BACKEND_REMOVED;
        this.#configChanged(t, ev);
        break;
      case STEP.detect:
        this.#undetectedDead--;
        if (this.backendState[a] !== BACKEND_REMOVED) this.backendState[a] = BACKEND_DOWN;
        this.#configChanged(t, ev);
        break;
    }
  }

  run(): SimResult {
    const t0 = performance.now();
    this.versions.push(this.#snapshot());
    this.#sluice?.plan(0);
    this.#initConnections();
    this.#assignFresh();
    this.#adoptExplicitBackends();
    this.trace.events.forEach((e, i) => {
      this.#queue.push(e.at, STEP.event, i, 0, i);
    });
    const endT = this.trace.durationSeconds;
    this.#queue.push(endT, STEP.end, 0, 0, this.trace.events.length);
    let lastT = 0;
    while (this.#queue.size > 0) {
      const st = this.#queue.pop();
      if (st.t > endT) break;
      const t = st.t;
      this.#sluice?.elapse(t - lastT);
      this.#connSeconds += this.connections * (t - lastT);
      lastT = t;
      this.#advance(t);
      this.#assignFresh();
      const ev = st.ev;
      this.#lastEv = ev;
      if (st.kind === STEP.event) this.#handleEvent(t, st.a);
      else this.#handleStep(t, st.kind, st.a, st.b, ev);
      if (ev < this.trace.events.length) this.#sluice?.notePeak(ev);
    }
    return this.#result(performance.now() - t0);
  }

  /**
   * Explicit mode: every connection is on the backend observed in the lab, whatever the model would have picked
   * (scripts/validate-sim.ts checks separately that the picks agree).
   */
  #adoptExplicitBackends(): void {
    const ex = this.trace.explicit;
    if (!ex) return;
    for (const m of this.#models) {
      ex.connections.forEach((c, i) => {
        m.adopt(i, c.backend);
      });
      m.counters.fill(0);
    }
  }

  #result(runtimeMs: number): SimResult {
    const nev = this.trace.events.length;
    const zero = new Float64Array((nev + 1) * COUNTER_FIELDS);
    const countersOf = new Map<StrategyId, Float64Array>(STRATEGIES.map((id) => [id, zero]));
    for (const m of this.#models) countersOf.set(m.id, m.counters);
    const counters = (ev: number, id: StrategyId): Counters => {
      const c = countersOf.get(id)!;
      const at = ev * COUNTER_FIELDS;
      return {
        avoidable: c[at + AVOIDABLE],
        unavoidable: c[at + UNAVOIDABLE],
        drainExpired: c[at + DRAIN_EXPIRED],
        failedSetups: c[at + FAILED_SETUP],
        wrongVip: c[at + WRONG_VIP],
        secondChancePeak: c[at + SECOND_CHANCE_PEAK],
      };
    };
    const perStrategy = (ev: number) =>
      Object.fromEntries(STRATEGIES.map((id) => [id, counters(ev, id)])) as Record<StrategyId, Counters>;
    const events: EventResult[] = this.trace.events.map((e, i) => ({
      index: i,
      at: e.at,
      type: e.type,
      label: e.label ?? describe(e),
      concurrent: this.#evMeta[i].concurrent,
      ...(this.#evMeta[i].ecmpMoved !== undefined ? { ecmpMoved: this.#evMeta[i].ecmpMoved } : {}),
      strategies: perStrategy(i),
    }));
    events.push({
      index: nev,
      at: 0,
      type: 'steady',
      label: 'steady state (no event)',
      concurrent: this.connections,
      strategies: perStrategy(nev),
    });
    const totals = Object.fromEntries(
      STRATEGIES.map((id) => {
        const model = this.#models.find((m) => m.id === id);
        return [id, this.#totals(id, nev, counters, model)];
      }),
    ) as Record<StrategyId, StrategyTotals>;
    return {
      trace: this.trace,
      seed: this.#seed,
      arrivals: this.#arrivals,
      arrivalsPerSecond: this.#arrivals / this.trace.durationSeconds,
      meanLifetime: this.#meanLifetime,
      events,
      totals,
      sluiceGenerations: this.#sluice?.generations ?? 0,
      sluiceMaxGenerationSpread: this.#sluice?.maxGenerationSpread ?? 0,
      sluiceChains: this.#sluice?.chainStats(this.#connSeconds),
      runtimeMs,
    };
  }

  /** One strategy's totals over the events (`model` undefined: it did not run). */
  #totals(
    id: StrategyId,
    nev: number,
    counters: (ev: number, id: StrategyId) => Counters,
    model: Strategy | undefined,
  ): StrategyTotals {
    let sum = { avoidable: 0, unavoidable: 0, drainExpired: 0, failedSetups: 0, wrongVip: 0, peak: 0 };
    for (let ev = 0; ev <= nev; ev++) {
      const c = counters(ev, id);
      sum = {
        avoidable: sum.avoidable + c.avoidable,
        unavoidable: sum.unavoidable + c.unavoidable,
        drainExpired: sum.drainExpired + c.drainExpired,
        failedSetups: sum.failedSetups + c.failedSetups,
        wrongVip: sum.wrongVip + c.wrongVip,
        peak: Math.max(sum.peak, c.secondChancePeak),
      };
    }
    return {
      avoidable: sum.avoidable,
      unavoidable: sum.unavoidable,
      drainExpired: sum.drainExpired,
      failedSetups: sum.failedSetups,
      wrongVip: sum.wrongVip,
      secondChancePeak: sum.peak,
      broken: sum.avoidable + sum.unavoidable + sum.drainExpired,
      extraHopShare: model instanceof SluiceStrategy ? model.extraHopShare(this.#connSeconds) : 0,
      gatewayEntriesMax: model?.gatewayEntriesMax(this.gateways) ?? 0,
    };
  }
}

/** A growable list of (VIP, hash, gateway) of connections that started and ended between two steps. */
class ShortLived {
  vip = new Uint16Array(1024);
  hash = new Uint32Array(1024);
  gateway = new Uint16Array(1024);
  count = 0;

  grow(): void {
    const size = this.vip.length * 2;
    const vip = new Uint16Array(size);
    const hash = new Uint32Array(size);
    const gateway = new Uint16Array(size);
    vip.set(this.vip);
    hash.set(this.hash);
    gateway.set(this.gateway);
    this.vip = vip;
    this.hash = hash;
    this.gateway = gateway;
  }
}

function describe(e: Trace['events'][number]): string {
  if (e.type === 'backend-add') return `add a backend to vip${e.vip ?? 0}`;
  if (e.type.startsWith('backend-')) return `${e.type.slice(8)} backend ${e.backend}`;
  if (e.type === 'gateway-add') return 'add a gateway';
  return `${e.type.slice(8)} gateway ${e.gateway}`;
}
