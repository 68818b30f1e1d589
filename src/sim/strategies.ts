// The six ungated strategy models of the simulator (strategy 7, sluice, is in sluice-strategy.ts). Each one owns its
// per-connection state (the backend holding the connection, whether it broke, the version it was last checked
// against) and its counters, and answers the engine's questions: which backend a new connection gets, whether a
// connection survives a new version or a gateway change. The engine (engine.ts) owns the world they read.

import { NO_OWNER, type SlotTable } from '../hashing/slots.ts';
import { hashInt } from './hash.ts';
import type { Trace } from './trace.ts';

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

export const NONE = NO_OWNER;
/** Strategy 3 only: backend not computed yet (rendezvous over ~100 buckets is the costly pick; most connections
 * never need it, so it is computed from the version they were set up on when first needed). */
export const LAZY = 0xfffe;

// Counter fields per (event, strategy): indexes into a strategy's `counters`.
export const AVOIDABLE = 0;
export const UNAVOIDABLE = 1;
export const DRAIN_EXPIRED = 2;
export const FAILED_SETUP = 3;
export const WRONG_VIP = 4;
export const SECOND_CHANCE_PEAK = 5;
export const COUNTER_FIELDS = 6;
/** A new connection's setup outcome: established (else one of FAILED_SETUP, WRONG_VIP). */
export const ESTABLISHED = -1;

/** One configuration version of the pools (what ungated strategies roll out gateway by gateway). */
export interface Snapshot {
  /** Per VIP: active members in operator order (OVN's backend list order). */
  readonly sel: Int32Array[];
  /** Per VIP: consistent slot table owners as backend ids (buildTable, minimal movement from the last version). */
  readonly slots: Uint16Array[];
  readonly tables: SlotTable[];
  /** Per backend: the VIP a stateless 1:1 reverse NAT answers with (lowest VIP index it serves); -1 none. */
  readonly replyVip: Int32Array;
}

/** A backend's state in the world (what the operator and health checks made of it). */
export const BACKEND_ACTIVE = 0;
export const BACKEND_DRAINING = 1;
export const BACKEND_DOWN = 2;
export const BACKEND_REMOVED = 3;
/** Removed from the config while its server keeps running (backend-remove with keepServing). */
export const BACKEND_DETACHED = 4;

/** The address of generated backend `id` (and of its host's tunnel endpoint). */
export function generatedAddress(id: number): string {
  return `10.${100 + (id >> 16)}.${(id >> 8) & 255}.${id & 255}`;
}

/** What a strategy model reads of the simulated world (the engine's `Sim` implements it). */
export interface World {
  readonly trace: Trace;
  /** Concurrent connections (every array below has this length). */
  readonly connections: number;
  readonly vips: number;
  readonly slotBits: number;
  /** Slot of a hash: `hash & slotMask`. */
  readonly slotMask: number;
  /** Per connection: its VIP. */
  readonly vip: Uint16Array;
  /** Per connection: the datapath's 5-tuple hash (in explicit mode, the slot the lab observed). */
  readonly flowHash: Uint32Array;
  /** Per connection: strategy 3's hash, `flowHash` itself except in explicit mode (OVS's fields hash). */
  readonly hrwHash: Uint32Array;
  /** Strategy 3's bucket score: the stand-in `hashInt`, or OVS's `hash_int` in explicit mode. */
  readonly hrwScore: (x: number, basis: number) => number;
  /** Per connection: start time (s). */
  readonly start: Float64Array;
  /** Per connection: the gateway upstream ECMP sends it to now, and before the last ECMP change. */
  readonly gateway: Uint16Array;
  readonly gatewayBefore: Uint16Array;
  /** Per backend: 1 while its server runs. */
  readonly alive: Uint8Array;
  /** Ungated configuration versions, and the version each gateway runs. */
  readonly versions: readonly Snapshot[];
  readonly gatewayVersion: Int32Array;
  /** Each gateway hashes with its own seed (kernel datapath dp_hash) instead of one shared hash. */
  readonly perGatewayHash: boolean;
  /** The dp_hash gateway g computes for a connection whose shared 5-tuple hash is `hash`. */
  gatewayHash(hash: number, g: number): number;
  /** Whether a packet of a connection on backend `cur` now sent to backend `b` still reaches its state. */
  reaches(b: number, cur: number): boolean;
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

/**
 * With a per-gateway hash, a connection checked on one gateway says nothing about another gateway's hash: marks the
 * connections ECMP moved as not checked against any version, so that they are checked again.
 */
export function forgetMovedChecks(w: World, checked: Int32Array): void {
  if (!w.perGatewayHash) return;
  for (let i = 0; i < checked.length; i++) if (w.gateway[i] !== w.gatewayBefore[i]) checked[i] = -1;
}

/** What every strategy model does; the defaults fit a strategy that never re-checks a connection. */
export abstract class Strategy {
  readonly id: StrategyId;
  protected readonly world: World;
  /** Per connection: the backend holding its state (or LAZY, strategy 3). */
  readonly backend: Uint16Array;
  /** Per connection: 1 once it broke (or never got established); it is not looked at again. */
  readonly dead: Uint8Array;
  /** Per connection: the version (or sluice generation) it was last checked against. */
  readonly checkedVersion: Int32Array;
  /** Per (event, counter field): the counts of this strategy. */
  readonly counters: Float64Array;

  constructor(id: StrategyId, world: World) {
    this.id = id;
    this.world = world;
    const n = world.connections;
    this.backend = new Uint16Array(n);
    this.dead = new Uint8Array(n);
    this.checkedVersion = new Int32Array(n);
    this.counters = new Float64Array((world.trace.events.length + 1) * COUNTER_FIELDS);
  }

  /** The backend a new connection (VIP v, hashes, through gateway g) gets now. */
  abstract pickNew(v: number, hash: number, hrwHash: number, g: number, eager: boolean): number;

  /** Records new connection i's bookkeeping on gateway g (before its backend is stored). */
  protected noteNew(i: number, g: number): void {
    this.checkedVersion[i] = this.world.gatewayVersion[g];
  }

  /** Sets up the first `n` connections of `list` (just started) and counts those that never get established. */
  assignNew(list: Uint32Array, n: number, eager: boolean, ev: number): void {
    const w = this.world;
    for (let j = 0; j < n; j++) {
      const i = list[j];
      const g = w.gateway[i];
      const v = w.vip[i];
      const b = this.pickNew(v, w.flowHash[i], w.hrwHash[i], g, eager);
      this.noteNew(i, g);
      this.backend[i] = b;
      const o = this.setupOutcome(b, v, g);
      this.dead[i] = o === ESTABLISHED ? 0 : 1;
      if (o !== ESTABLISHED) this.count(ev, o);
    }
  }

  /**
   * Connections that started and ended between two steps (VIP, hash and gateway of the first `n`): only their
   * setup can fail.
   */
  shortLived(
    vips: Uint16Array,
    hashes: Uint32Array,
    gateways: Uint16Array,
    n: number,
    eager: boolean,
    ev: number,
  ) {
    for (let j = 0; j < n; j++) {
      const v = vips[j];
      const o = this.setupOutcome(this.pickNew(v, hashes[j], hashes[j], gateways[j], eager), v, gateways[j]);
      if (o !== ESTABLISHED) this.count(ev, o);
    }
  }

  /** A new connection's setup outcome: ESTABLISHED, or FAILED_SETUP (its SYN reached a dead backend or none). */
  protected setupOutcome(b: number, _v: number, _g: number): number {
    if (b === LAZY) return ESTABLISHED; // every backend of the version is alive
    if (b === NONE || this.world.alive[b] === 0) return FAILED_SETUP;
    return ESTABLISHED;
  }

  /** Gateway(s) applied a new configuration version: re-checks the first `n` connections of `list`. */
  configApplied(_list: Uint32Array, _n: number, _ev: number): void {}

  /** Upstream ECMP moved connections between gateways (`graceful`: the gateway leaving gracefully, or -1). */
  ecmpChanged(_t: number, _ev: number, _graceful: number, _all: Uint32Array): void {}

  /** The HA chassis group moved the active gateway (only the stateful strategy has one). */
  activeGatewayLost(_ev: number): void {}

  /** Backend b's server stopped: every live connection it held breaks with `field`. */
  killed(b: number, field: number, ev: number): void {
    const held = this.backend;
    const dead = this.dead;
    for (let i = 0; i < held.length; i++) {
      if (held[i] === b && dead[i] === 0) this.breakConn(i, field, ev);
    }
  }

  /** Explicit mode: connection i is on the backend the lab observed. */
  adopt(i: number, b: number): void {
    this.backend[i] = b;
    this.dead[i] = 0;
  }

  /** Largest number of per-connection entries one gateway holds now. */
  gatewayEntriesMax(_gateways: number): number {
    return 0;
  }

  breakConn(i: number, field: number, ev: number): void {
    this.dead[i] = 1;
    this.counters[ev * COUNTER_FIELDS + field]++;
  }

  protected count(ev: number, field: number): void {
    this.counters[ev * COUNTER_FIELDS + field]++;
  }

  protected liveConnections(): number {
    let n = 0;
    const d = this.dead;
    for (let i = 0; i < d.length; i++) if (d[i] === 0) n++;
    return n;
  }
}

/** 1: one active gateway holds conntrack for every connection; a failover loses all of it. */
class StatefulGateway extends Strategy {
  pickNew(v: number, hash: number): number {
    const versions = this.world.versions;
    return dpHashPick(versions[versions.length - 1].sel[v], hash);
  }

  override activeGatewayLost(ev: number): void {
    const dead = this.dead;
    for (let i = 0; i < dead.length; i++) if (!dead[i]) this.breakConn(i, AVOIDABLE, ev);
  }

  override gatewayEntriesMax(): number {
    return this.liveConnections();
  }
}

/** 6: every gateway holds every connection, synced with a lag; a connection younger than the lag is lost. */
class ConntrackSync extends Strategy {
  pickNew(v: number, hash: number): number {
    const versions = this.world.versions;
    return dpHashPick(versions[versions.length - 1].sel[v], hash);
  }

  override ecmpChanged(t: number, ev: number, graceful: number): void {
    const w = this.world;
    const lag = w.trace.timing.syncLagSeconds;
    const dead = this.dead;
    for (let i = 0; i < dead.length; i++) {
      if (dead[i] || w.gateway[i] === w.gatewayBefore[i]) continue;
      if (w.gatewayBefore[i] === graceful) continue; // a leaving gateway resyncs its table first
      if (t - w.start[i] < lag) this.breakConn(i, AVOIDABLE, ev);
    }
  }

  override gatewayEntriesMax(): number {
    return this.liveConnections();
  }
}

/**
 * Strategies 2-4: each gateway picks from the configuration version it runs, with no per-connection state; a
 * connection survives a new version (or another gateway) when the pick still reaches its backend.
 */
abstract class VersionedPick extends Strategy {
  /** Whether the check depends on the gateway's own dp_hash (a moved connection is re-checked at any version). */
  protected abstract readonly hashesPerGateway: boolean;

  /** Whether connection i (VIP v) on gateway g running version `cfg` still reaches the backend holding it. */
  protected abstract keeps(i: number, v: number, g: number, cfg: Snapshot): boolean;

  override configApplied(list: Uint32Array, n: number, ev: number): void {
    const w = this.world;
    const dead = this.dead;
    const checked = this.checkedVersion;
    const gw = w.gateway;
    const gwv = w.gatewayVersion;
    for (let j = 0; j < n; j++) {
      const i = list[j];
      if (dead[i]) continue;
      const g = gw[i];
      const ver = gwv[g];
      if (ver === checked[i]) continue;
      if (this.keeps(i, w.vip[i], g, w.versions[ver])) checked[i] = ver;
      else this.breakConn(i, AVOIDABLE, ev);
    }
  }

  override ecmpChanged(_t: number, ev: number, _graceful: number, all: Uint32Array): void {
    if (this.hashesPerGateway) forgetMovedChecks(this.world, this.checkedVersion);
    this.configApplied(all, all.length, ev);
  }
}

/** 2: OVN's use_stateless_nat: dp_hash over the backend list; replies are SNATed by backend address. */
class StatelessNat extends VersionedPick {
  protected readonly hashesPerGateway = true;

  pickNew(v: number, hash: number, _hrwHash: number, g: number): number {
    const w = this.world;
    return dpHashPick(w.versions[w.gatewayVersion[g]].sel[v], w.gatewayHash(hash, g));
  }

  /** Strategy 2 SNATs replies by backend address, so only its own backend keeps a connection. */
  protected keeps(i: number, v: number, g: number, cfg: Snapshot): boolean {
    return dpHashPick(cfg.sel[v], this.world.gatewayHash(this.world.flowHash[i], g)) === this.backend[i];
  }

  /** Also WRONG_VIP: the 1:1 reverse NAT answers from another VIP than the one the client called. */
  protected override setupOutcome(b: number, v: number, g: number): number {
    const o = super.setupOutcome(b, v, g);
    if (o !== ESTABLISHED) return o;
    const w = this.world;
    return w.versions[w.gatewayVersion[g]].replyVip[b] !== v ? WRONG_VIP : ESTABLISHED;
  }
}

/** 3: select group, selection_method=hash, stable bucket ids (rendezvous hashing). */
class HashHrw extends VersionedPick {
  protected readonly hashesPerGateway = false;

  pickNew(v: number, _hash: number, hrwHash: number, g: number, eager: boolean): number {
    const w = this.world;
    return eager ? hrwPick(w.versions[w.gatewayVersion[g]].sel[v], hrwHash, w.hrwScore) : LAZY;
  }

  protected keeps(i: number, v: number, _g: number, cfg: Snapshot): boolean {
    const w = this.world;
    const h = w.hrwHash[i];
    if (this.backend[i] === LAZY) this.#resolve(i);
    return w.reaches(hrwPick(cfg.sel[v], h, w.hrwScore), this.backend[i]);
  }

  /** Computes the deferred pick of connection i from the version it was set up on. */
  #resolve(i: number): void {
    const w = this.world;
    this.backend[i] = hrwPick(w.versions[this.checkedVersion[i]].sel[w.vip[i]], w.hrwHash[i], w.hrwScore);
  }

  /** Every deferred pick is computed before anything reads which backend holds a connection. */
  override killed(b: number, field: number, ev: number): void {
    for (let i = 0; i < this.backend.length; i++) if (this.backend[i] === LAZY) this.#resolve(i);
    super.killed(b, field, ev);
  }
}

/** 4: consistent slot table (minimal movement between versions), no second chance. */
class ConsistentSlots extends VersionedPick {
  protected readonly hashesPerGateway = true;

  pickNew(v: number, hash: number, _hrwHash: number, g: number): number {
    const w = this.world;
    return w.versions[w.gatewayVersion[g]].slots[v][w.gatewayHash(hash, g) & w.slotMask];
  }

  protected keeps(i: number, v: number, g: number, cfg: Snapshot): boolean {
    const w = this.world;
    return w.reaches(cfg.slots[v][w.gatewayHash(w.flowHash[i], g) & w.slotMask], this.backend[i]);
  }
}

/** 5: slot table plus a per-gateway sticky table: a connection keeps its backend on the gateway that learnt it. */
class StickyTable extends Strategy {
  /** Per connection: the gateway whose sticky table holds it. */
  readonly stickyGateway: Uint16Array;

  constructor(id: StrategyId, world: World) {
    super(id, world);
    this.stickyGateway = new Uint16Array(world.connections);
  }

  pickNew(v: number, hash: number, _hrwHash: number, g: number): number {
    const w = this.world;
    return w.versions[w.gatewayVersion[g]].slots[v][w.gatewayHash(hash, g) & w.slotMask];
  }

  protected override noteNew(i: number, g: number): void {
    super.noteNew(i, g);
    this.stickyGateway[i] = g;
  }

  override configApplied(list: Uint32Array, n: number, ev: number): void {
    const w = this.world;
    const held = this.backend;
    for (let j = 0; j < n; j++) {
      const i = list[j];
      if (this.dead[i]) continue;
      const g = w.gateway[i];
      if (g === this.stickyGateway[i]) continue;
      // Another gateway: no sticky entry there, it uses its current table (and learns the result).
      const b = w.versions[w.gatewayVersion[g]].slots[w.vip[i]][w.gatewayHash(w.flowHash[i], g) & w.slotMask];
      if (b === held[i]) this.stickyGateway[i] = g;
      else this.breakConn(i, AVOIDABLE, ev);
    }
  }

  override ecmpChanged(_t: number, ev: number, _graceful: number, all: Uint32Array): void {
    this.configApplied(all, all.length, ev);
  }

  override adopt(i: number, b: number): void {
    super.adopt(i, b);
    this.stickyGateway[i] = this.world.gateway[i];
  }

  override gatewayEntriesMax(gateways: number): number {
    const per = new Int32Array(gateways);
    for (let i = 0; i < this.dead.length; i++) if (this.dead[i] === 0) per[this.stickyGateway[i]]++;
    return Math.max(0, ...per);
  }
}

const UNGATED: Readonly<
  Record<Exclude<StrategyId, 'sluice'>, new (id: StrategyId, world: World) => Strategy>
> = {
  stateful: StatefulGateway,
  stateless_nat: StatelessNat,
  hash_hrw: HashHrw,
  slot_table: ConsistentSlots,
  sticky: StickyTable,
  ct_sync: ConntrackSync,
};

/** The model of one ungated strategy. */
export function ungatedStrategy(id: Exclude<StrategyId, 'sluice'>, world: World): Strategy {
  return new UNGATED[id](id, world);
}
