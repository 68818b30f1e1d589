// Strategy 7, sluice, in the simulator: the real planner (src/rollout, `planNext`) publishes generations (slot
// table + second chance per VIP), gateways apply them after a delay, and the planner moves on only when every live
// gateway applied the last one (gating). A connection survives a generation when its slot's primary or second
// chance still reaches its backend; packets that reach it through the second chance take one extra hop.

import type { Backend, Config, LoadBalancer, Node } from '../model/types.ts';
import { planNext } from '../rollout/planner.ts';
import type { Generation } from '../rollout/types.ts';
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
  /** Per VIP: slots whose second chance the planner gave up (drain window passed); null = none. */
  readonly gaveUp: (Uint8Array | null)[];
  readonly ev: number;
}

export class SluiceStrategy extends Strategy {
  readonly #world: PlannerWorld;
  /** Per connection: the slot it was committed with (hosts mark it from the tunnel metadata). */
  readonly #committedSlot: Uint16Array;
  /** Per connection: 1 while its packets take the second-chance hop. */
  readonly #hop: Uint8Array;
  #hopCount = 0;
  #hopConnSeconds = 0;
  readonly #generations: PublishedGeneration[] = [];
  /** Per gateway: the generation it runs. */
  readonly #gatewayGeneration: Int32Array;
  #latest: Generation | null = null;
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

  /** Time passes with the current connections: accumulates their second-chance hops. */
  elapse(seconds: number): void {
    this.#hopConnSeconds += this.#hopCount * seconds;
  }

  pickNew(v: number, hash: number, _hrwHash: number, g: number): number {
    const w = this.#world;
    return this.#generations[this.#gatewayGeneration[g]].primary[v][w.gatewayHash(hash, g) & w.slotMask];
  }

  protected override noteNew(i: number, g: number): void {
    if (this.#hop[i] === 1) {
      this.#hop[i] = 0;
      this.#hopCount--;
    }
    this.checkedVersion[i] = this.#gatewayGeneration[g];
    this.#committedSlot[i] = this.#world.gatewayHash(this.#world.flowHash[i], g) & this.#world.slotMask;
  }

  override breakConn(i: number, field: number, ev: number): void {
    super.breakConn(i, field, ev);
    if (this.#hop[i] === 1) {
      this.#hop[i] = 0;
      this.#hopCount--;
    }
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
      const viaPrimary = w.reaches(gen.primary[v][slot], held[i]);
      if (!viaPrimary && !w.reaches(gen.second[v][slot], held[i])) {
        const gu = gen.gaveUp[v];
        this.breakConn(i, gu !== null && gu[slot] === 1 ? DRAIN_EXPIRED : AVOIDABLE, ev);
        continue;
      }
      const hop = viaPrimary ? 0 : 1;
      if (hop !== this.#hop[i]) {
        this.#hop[i] = hop;
        this.#hopCount += hop === 1 ? 1 : -1;
      }
      checked[i] = ver;
    }
  }

  override ecmpChanged(_t: number, ev: number, _graceful: number, all: Uint32Array): void {
    forgetMovedChecks(this.#world, this.checkedVersion);
    this.recheck(all, all.length, ev);
  }

  /** Records the most connections at once on the second-chance hop, for event `ev`. */
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
    const counts = this.#latest === null ? null : this.#secondChanceCounts();
    const step = planNext({
      config: this.#plannerConfig(),
      latest: this.#latest,
      now: t * 1000,
      connections: (lb, slot, key) => {
        const v = Number(lb.slice(3));
        const id = this.#world.backendId.get(key);
        const cur = this.#generations[this.#generations.length - 1];
        if (counts !== null && id !== undefined && cur.second[v][slot] === id) return counts[v][slot];
        // Not the slot's second chance (the planner does not ask this today): count exactly.
        return this.#countOn(v, slot, id);
      },
    });
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

  /** Live connections of VIP v committed with `slot` and held by backend `id`. */
  #countOn(v: number, slot: number, id: number | undefined): number {
    const w = this.#world;
    let n = 0;
    for (let i = 0; i < w.connections; i++) {
      if (!this.dead[i] && w.vip[i] === v && this.#committedSlot[i] === slot && this.backend[i] === id) n++;
    }
    return n;
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
    return {
      hashMode: 'dp_hash',
      slotBits: w.slotBits,
      drainWindowSeconds: w.trace.timing.drainWindowSeconds,
      nodes,
      loadBalancers: lbs,
    };
  }

  /** Live sluice connections per (VIP, slot) held by the slot's current second chance. */
  #secondChanceCounts(): Int32Array[] {
    const w = this.#world;
    const cur = this.#generations[this.#generations.length - 1];
    const out = Array.from({ length: w.vips }, () => new Int32Array(1 << w.slotBits));
    const held = this.backend;
    for (let i = 0; i < w.connections; i++) {
      if (this.dead[i]) continue;
      const v = w.vip[i];
      const s = this.#committedSlot[i];
      if (cur.second[v][s] === held[i]) out[v][s]++;
    }
    return out;
  }

  #hasSecondChances(): boolean {
    const cur = this.#generations[this.#generations.length - 1];
    return cur.second.some((a) => a.some((x) => x !== NONE));
  }

  #publish(gen: Generation, gaveUp: (Uint8Array | null)[], t: number, ev: number): void {
    const w = this.#world;
    const primary: Uint16Array[] = [];
    const second: Uint16Array[] = [];
    for (let v = 0; v < w.vips; v++) {
      const p = gen.pools.get(`vip${v}`)!;
      const ids = p.members.map((m) => w.backendId.get(m.key)!);
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
    this.#latest = gen;
    this.#generations.push({ primary, second, gaveUp, ev });
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
