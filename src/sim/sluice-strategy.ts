// Strategy 7, sluice, in the simulator: the real planner (src/rollout, `planNext`) publishes generations (slot
// table + chains of previous owners per VIP), gateways apply them after a delay, and the planner moves on only when
// every live gateway applied the last one (gating). A connection survives a generation when the walk hosts make
// along its slot's lanes (docs/design/rollout.md, "Where the chain lives") reaches its backend; each host passed on
// the way is one extra hop. Hosts are modelled on the gateway's generation (they apply it before the gateways).

import type { Backend, Config, LoadBalancer, Node } from '../model/types.ts';
import { PlanCache } from '../rollout/plan-cache.ts';
import { planNext } from '../rollout/planner.ts';
import { type Generation, LANES, planLanes } from '../rollout/types.ts';
import { STEP } from './step-queue.ts';
import {
  AVOIDABLE,
  BACKEND_ACTIVE,
  BACKEND_DETACHED,
  BACKEND_DRAINING,
  BACKEND_REMOVED,
  COUNTER_FIELDS,
  DRAIN_EXPIRED,
  forgetMovedChecks,
  generatedAddress,
  NONE,
  SECOND_CHANCE_PEAK,
  Strategy,
  type World,
} from './strategies.ts';

/** What the sluice model reads of the world beyond what every strategy reads, and how it schedules steps. */
export interface PlannerWorld extends World {
  /** Gateways so far (ids below this), and which of them are up. */
  readonly gateways: number;
  readonly gatewayUp: Uint8Array;
  /** Backends so far (ids below this), their state (BACKEND_*), addresses, ports and ids by key. */
  readonly backends: number;
  readonly backendState: Uint8Array;
  readonly addresses: readonly string[];
  readonly ports: readonly (number | undefined)[];
  readonly backendId: ReadonlyMap<string, number>;
  /** Per VIP: member backends in operator order. */
  readonly members: readonly (readonly number[])[];
  schedule(t: number, kind: number, a: number, b: number, ev: number): void;
  /** A random delay before one gateway applies a change. */
  applyDelay(): number;
}

/** One published sluice generation, as backend ids per VIP. */
interface PublishedGeneration {
  readonly primary: Uint16Array[];
  readonly second: Uint16Array[];
  /** Per VIP: the owners' lanes (backend ids), 2^bits * LANES. */
  readonly lanes: Uint16Array[];
  /** Per VIP: slots whose previous owner the planner gave up (the operator's drain window passed); null = none. */
  readonly gaveUp: (Uint8Array | null)[];
  readonly ev: number;
}

/** Chain figures of one run (docs/evaluation.md, "Chains"). */
export interface ChainStats {
  /** Most previous owners one slot held at once. */
  readonly maxChain: number;
  /** Share of connection-time per extra hop count (index 0: straight to the backend). */
  readonly hopShare: readonly number[];
  /** Extra hops per packet, averaged over connection-time. */
  readonly meanExtraHops: number;
  /** Most CHAIN flows one host carried (a host owning none of the chained slots: the upper bound). */
  readonly peakHostFlows: number;
  /** Planner steps x slots that waited to move on a full chain, and the most slots waiting in one step. */
  readonly chainFullSlotSteps: number;
  readonly chainFullPeak: number;
}

export class SluiceStrategy extends Strategy {
  readonly #world: PlannerWorld;
  /** Per connection: the slot it was committed with (hosts mark it from the tunnel metadata). */
  readonly #committedSlot: Uint16Array;
  /** Per connection: the extra hops its packets take along the chain (0: straight to its backend). */
  readonly #hop: Uint8Array;
  #hopCount = 0;
  #hopConnSeconds = 0;
  /** Live connections per hop count, and connection-seconds per hop count. */
  readonly #hopHist = new Int32Array(LANES + 1);
  readonly #hopSeconds = new Float64Array(LANES + 1);
  /** Longest chain published, peak CHAIN flows a host carries, slot-steps that waited on a full chain. */
  #maxChain = 0;
  #peakHostFlows = 0;
  #chainFullSlotSteps = 0;
  #chainFullPeak = 0;
  readonly #generations: PublishedGeneration[] = [];
  /** Per gateway: the generation it runs. */
  readonly #gatewayGeneration: Int32Array;
  #latest: Generation | null = null;
  /** The planner's memory of its steps: each step visits the pools that changed. */
  readonly #plans = new PlanCache();
  /** A generation is published and not acknowledged by every gateway yet. */
  #busy = false;
  #maxSpread = 0;
  #tickPending = false;
  /** The event the planner's current work is a consequence of. */
  #planEv = -1;
  /** The latest event that changed the config while a rollout was in flight (-1: none). */
  #pendingEv = -1;

  constructor(world: PlannerWorld, gatewayCapacity: number) {
    super('sluice', world);
    this.#world = world;
    this.#committedSlot = new Uint16Array(world.connections);
    this.#hop = new Uint8Array(world.connections);
    this.#hopHist[0] = world.connections; // every connection slot starts with no hop
    this.#gatewayGeneration = new Int32Array(gatewayCapacity);
  }

  get generations(): number {
    return this.#generations.length;
  }

  /** Largest difference between the generations two live gateways ran at the same time (gating: <= 1). */
  get maxGenerationSpread(): number {
    return this.#maxSpread;
  }

  /** Share of packets (connection-time, equal packet rates assumed) that took the second-chance hop. */
  extraHopShare(connSeconds: number): number {
    return connSeconds > 0 ? this.#hopConnSeconds / connSeconds : 0;
  }

  /** Time passes with the current connections: accumulates their hops along the chains. */
  elapse(seconds: number): void {
    this.#hopConnSeconds += this.#hopCount * seconds;
    for (let h = 0; h <= LANES; h++) this.#hopSeconds[h] += this.#hopHist[h] * seconds;
  }

  /** Chain figures of the run (docs/evaluation.md). */
  chainStats(connSeconds: number): ChainStats {
    const share = Array.from(this.#hopSeconds, (x) => (connSeconds > 0 ? x / connSeconds : 0));
    const extra = this.#hopSeconds.reduce((t, x, h) => t + x * h, 0);
    return {
      maxChain: this.#maxChain,
      hopShare: share,
      meanExtraHops: connSeconds > 0 ? extra / connSeconds : 0,
      peakHostFlows: this.#peakHostFlows,
      chainFullSlotSteps: this.#chainFullSlotSteps,
      chainFullPeak: this.#chainFullPeak,
    };
  }

  /** Sets connection i's hop count (keeps the counters). */
  #setHop(i: number, hop: number): void {
    const before = this.#hop[i];
    if (hop === before) return;
    this.#hopHist[before]--;
    this.#hopHist[hop]++;
    if (before === 0) this.#hopCount++;
    if (hop === 0) this.#hopCount--;
    this.#hop[i] = hop;
  }

  /**
   * Extra hops from the primary's host to backend `b` along the slot's lanes (-1: not reached), as hosts walk
   * them: each hands the packet to the first lane >= the counter whose owner is on another host.
   */
  #walk(gen: PublishedGeneration, v: number, slot: number, b: number): number {
    const w = this.#world;
    let cur = gen.primary[v][slot];
    if (cur === NONE) return -1;
    if (w.reaches(cur, b)) return 0;
    const lanes = gen.lanes[v];
    const base = slot * LANES;
    let counter = 0;
    for (let hops = 1; hops <= LANES; hops++) {
      let next = -1;
      for (let l = counter; l < LANES && next < 0; l++) {
        const m = lanes[base + l];
        if (m !== NONE && !w.reaches(m, cur)) next = l;
      }
      if (next < 0) return -1;
      cur = lanes[base + next];
      counter = next + 1;
      if (w.reaches(cur, b)) return hops;
    }
    return -1;
  }

  pickNew(v: number, hash: number, _hrwHash: number, g: number): number {
    const w = this.#world;
    return this.#generations[this.#gatewayGeneration[g]].primary[v][w.gatewayHash(hash, g) & w.slotMask];
  }

  protected override noteNew(i: number, g: number): void {
    this.#setHop(i, 0);
    this.checkedVersion[i] = this.#gatewayGeneration[g];
    this.#committedSlot[i] = this.#world.gatewayHash(this.#world.flowHash[i], g) & this.#world.slotMask;
  }

  override breakConn(i: number, field: number, ev: number): void {
    super.breakConn(i, field, ev);
    this.#setHop(i, 0);
  }

  /** Re-checks the first `n` connections of `list` whose gateway now runs another generation. */
  recheck(list: Uint32Array, n: number, ev: number): void {
    const w = this.#world;
    const held = this.backend;
    const checked = this.checkedVersion;
    for (let j = 0; j < n; j++) {
      const i = list[j];
      if (this.dead[i]) continue;
      const g = w.gateway[i];
      const ver = this.#gatewayGeneration[g];
      if (ver === checked[i]) continue;
      const v = w.vip[i];
      const gen = this.#generations[ver];
      const slot = w.gatewayHash(w.flowHash[i], g) & w.slotMask;
      const hop = this.#walk(gen, v, slot, held[i]);
      if (hop < 0) {
        const gu = gen.gaveUp[v];
        this.breakConn(i, gu !== null && gu[slot] === 1 ? DRAIN_EXPIRED : AVOIDABLE, ev);
        continue;
      }
      this.#setHop(i, hop);
      checked[i] = ver;
    }
  }

  override ecmpChanged(_t: number, ev: number, _graceful: number, all: Uint32Array): void {
    forgetMovedChecks(this.#world, this.checkedVersion);
    this.recheck(all, all.length, ev);
  }

  /** Records the most connections at once reached through a chain (one hop or more), for event `ev`. */
  notePeak(ev: number): void {
    const k = ev * COUNTER_FIELDS + SECOND_CHANCE_PEAK;
    if (this.#hopCount > this.counters[k]) this.counters[k] = this.#hopCount;
  }

  /** A gateway joined: it starts on the latest generation. */
  gatewayAdded(g: number): void {
    this.#gatewayGeneration[g] = this.#generations.length - 1;
  }

  /** Gateway g applies generation `gen` if it is up and behind; true when it did (then re-check its connections). */
  applyGeneration(g: number, gen: number): boolean {
    if (!this.#world.gatewayUp[g] || gen <= this.#gatewayGeneration[g]) return false;
    this.#gatewayGeneration[g] = gen;
    this.#noteSpread();
    return true;
  }

  /** The backend configuration changed: re-plan now, or after the rollout in flight. */
  configChanged(t: number, ev: number): void {
    if (this.#busy) {
      this.#pendingEv = ev;
      return;
    }
    this.#planEv = ev;
    this.plan(t);
  }

  /** Every live gateway acknowledged the last generation (or, ungated, the ack latency passed). */
  acknowledged(t: number, ev: number): void {
    this.#busy = false;
    this.#planEv = this.#pendingEv >= 0 ? this.#pendingEv : ev;
    this.#pendingEv = -1;
    this.plan(t);
  }

  /** The planner's periodic drain check. */
  tick(t: number): void {
    this.#tickPending = false;
    if (!this.#busy) this.plan(t);
  }

  /** Runs the planner once and publishes what it decides. */
  plan(t: number): void {
    const counts = this.#latest === null ? null : this.#chainCounts();
    const step = planNext({
      config: this.#plannerConfig(),
      latest: this.#latest,
      cache: this.#plans,
      now: t * 1000,
      connections: (lb, slot, key) => {
        const id = this.#world.backendId.get(key);
        if (counts === null || id === undefined) return 0;
        return counts.get((Number(lb.slice(3)) * (1 << this.#world.slotBits) + slot) * 65536 + id) ?? 0;
      },
    });
    let waiting = 0;
    for (const n of step.notes) if (n.kind === 'chain-full') waiting += n.slots.length;
    this.#chainFullSlotSteps += waiting;
    if (waiting > this.#chainFullPeak) this.#chainFullPeak = waiting;
    if (step.next === null) {
      this.#busy = false;
      if (this.#hasSecondChances() && !this.#tickPending) {
        this.#tickPending = true;
        const at = t + this.#world.trace.timing.drainCheckSeconds;
        this.#world.schedule(at, STEP.sluiceTick, 0, 0, this.#planEv);
      }
      return;
    }
    const gaveUp: (Uint8Array | null)[] = Array.from({ length: this.#world.vips }, () => null);
    for (const n of step.notes) {
      if (n.kind !== 'gave-up') continue;
      const v = Number(n.lb.slice(3));
      const m = gaveUp[v] ?? new Uint8Array(1 << this.#world.slotBits);
      for (const s of n.slots) m[s] = 1;
      gaveUp[v] = m;
    }
    this.#publish(step.next, gaveUp, t, this.#planEv);
  }

  /** Live connections per (VIP, committed slot, backend): key (v * 2^bits + slot) * 65536 + backend. */
  #chainCounts(): Map<number, number> {
    const w = this.#world;
    const out = new Map<number, number>();
    const size = 1 << w.slotBits;
    for (let i = 0; i < w.connections; i++) {
      if (this.dead[i]) continue;
      const k = (w.vip[i] * size + this.#committedSlot[i]) * 65536 + this.backend[i];
      out.set(k, (out.get(k) ?? 0) + 1);
    }
    return out;
  }

  #noteSpread(): void {
    const w = this.#world;
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    for (let g = 0; g < w.gateways; g++) {
      if (!w.gatewayUp[g]) continue;
      lo = Math.min(lo, this.#gatewayGeneration[g]);
      hi = Math.max(hi, this.#gatewayGeneration[g]);
    }
    if (hi - lo > this.#maxSpread) this.#maxSpread = hi - lo;
  }

  #plannerConfig(): Config {
    const w = this.#world;
    const nodes: Node[] = [];
    for (let g = 0; g < w.gateways; g++) {
      if (w.gatewayUp[g]) nodes.push({ name: `gw${g}`, role: 'gateway', tunnelIp: `172.16.0.${g}` });
    }
    for (let b = 0; b < w.backends; b++) {
      if (w.backendState[b] !== BACKEND_REMOVED)
        nodes.push({ name: `h${b}`, role: 'host', tunnelIp: generatedAddress(b) });
    }
    const lbs: LoadBalancer[] = [];
    for (let v = 0; v < w.vips; v++) {
      const backends: Backend[] = [];
      for (const b of w.members[v]) {
        const st = w.backendState[b];
        if (st === BACKEND_REMOVED || st === BACKEND_DETACHED) continue;
        backends.push({
          address: w.addresses[b],
          port: w.ports[b],
          host: `h${b}`,
          weight: 1,
          state: st === BACKEND_ACTIVE ? 'active' : st === BACKEND_DRAINING ? 'draining' : 'down',
        });
      }
      lbs.push({ name: `vip${v}`, vip: `100.64.0.${v}`, family: 4, protocol: 'tcp', ports: [443], backends });
    }
    const window = w.trace.timing.sluiceDrainWindowSeconds;
    const chain = w.trace.timing.sluiceChainLength;
    return {
      hashMode: 'dp_hash',
      slotBits: w.slotBits,
      ...(window !== undefined ? { drainWindowSeconds: window } : {}),
      ...(chain !== undefined ? { chainLength: chain } : {}),
      nodes,
      loadBalancers: lbs,
    };
  }

  #hasSecondChances(): boolean {
    const cur = this.#generations[this.#generations.length - 1];
    return cur.second.some((a) => a.some((x) => x !== NONE));
  }

  #publish(gen: Generation, gaveUp: (Uint8Array | null)[], t: number, ev: number): void {
    const w = this.#world;
    const primary: Uint16Array[] = [];
    const second: Uint16Array[] = [];
    const lanes: Uint16Array[] = [];
    let hostFlows = 0;
    for (let v = 0; v < w.vips; v++) {
      const p = gen.pools.get(`vip${v}`)!;
      const ids = p.members.map((m) => w.backendId.get(m.key)!);
      const size = p.primary.length;
      const pr = new Uint16Array(size);
      const se = new Uint16Array(size);
      const pl = planLanes(p);
      const la = new Uint16Array(size * LANES);
      for (let s = 0; s < size; s++) {
        pr[s] = p.primary[s] === NONE ? NONE : ids[p.primary[s]];
        se[s] = p.second[s] === NONE ? NONE : ids[p.second[s]];
        let owners = -1;
        let last = -1;
        for (let l = 0; l < LANES; l++) {
          const m = pl[s * LANES + l];
          la[s * LANES + l] = m === NONE ? NONE : ids[m];
          if (m !== NONE) {
            owners++;
            last = l;
          }
        }
        if (owners > this.#maxChain) this.#maxChain = owners;
        // A host that owns none of the slot's lanes has one CHAIN flow per counter up to the last lane.
        if (owners > 0) hostFlows += last + 1;
      }
      primary.push(pr);
      second.push(se);
      lanes.push(la);
    }
    if (hostFlows > this.#peakHostFlows) this.#peakHostFlows = hostFlows;
    this.#latest = gen;
    this.#generations.push({ primary, second, lanes, gaveUp, ev });
    const published = this.#generations.length - 1;
    if (published === 0) return; // the initial generation: every gateway starts on it
    this.#busy = true;
    let last = t;
    for (let g = 0; g < w.gateways; g++) {
      if (!w.gatewayUp[g]) continue;
      const at = t + w.applyDelay();
      last = Math.max(last, at);
      w.schedule(at, STEP.sluiceApply, g, published, ev);
    }
    // Gated: the planner moves on when every live gateway applied this generation. The ungated ablation
    // (timing.sluiceGating false) moves on after ackLatencySeconds whatever the gateways did.
    const gated = w.trace.timing.sluiceGating ?? true;
    w.schedule((gated ? last : t) + w.trace.timing.ackLatencySeconds, STEP.sluiceAcked, published, 0, ev);
  }
}
