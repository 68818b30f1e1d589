// The planner's decision logic, free of I/O: given what the store holds (a StoreView) and the planner's clock, it
// decides the next action: publish a generation to the hosts, release the latest generation to the gateways, or
// wait (and for whom). The daemon (daemon.ts) builds StoreViews from its OVSDB replica and carries the actions out;
// unit tests drive this class with hand-made views (a fake store). Design: docs/design/control-plane.md.
//
// Publication of generation g is two-staged (hosts before gateways, as in src/lab/controller.ts: a gateway may
// only send a packet to member indices the host already knows):
//   1. publish g: Plan g + Global.generation = g              -> host agents apply it and acknowledge
//   2. every live host acknowledged g: Global.options:gateway_generation = g  -> gateway agents apply it
//   3. every live gateway acknowledged g (and, if g has second chances, every live host reported its connections
//      twice since): planNext may publish g+1.
// Live (waited for): a host whose heartbeat the planner saw (on its own clock) within lease + margin; a gateway until
// it is known to be out of ECMP (it said it withdrew, or the planner's or the operator's fence record is on its row),
// however long it is silent. A silent store or a cut-off gateway must not take the data plane down, and a gateway
// keeps forwarding on what it applied while it hears nothing (src/agent/fencing.ts), so the planner never publishes
// past a silent gateway it has not fenced.
//
// With fencing (the daemon has a --fence-cmd), a gateway silent for the lease that did not fence itself is fenced
// by the planner (decision `fence`: the daemon runs the command, then records Node_Status
// external_ids:fenced_by_planner), unless that would leave fewer gateways in ECMP than out of it: a majority going
// silent together is far more likely a fault on the planner's side (its store, its network) than in the gateways,
// so the planner holds the fence, keeps waiting, and says so (fenceHeld). It fences only a gateway whose last rejoin's
// announce is known to have ended, and records the fence with the rejoin token it decided on: a rejoin committed after
// that view voids the record (the fence and the announce raced). Docs: control-plane.md "Fencing".

import type { Config } from '../model/types.ts';
import { withLbIds } from '../rollout/lb-ids.ts';
import { PlanCache } from '../rollout/plan-cache.ts';
import type { PlanNote } from '../rollout/planner.ts';
import { type Generation, PHASE_STABLE } from '../rollout/types.ts';
import {
  DEFAULT_LEASE_MS,
  DEFAULT_MARGIN_MS,
  effectiveConfig,
  lbIdContext,
  type PlanDocs,
  plannerStep,
  type StoreView,
} from '../store/db/index.ts';

export interface PlannerCoreOptions {
  /** Lease of an agent, ms (default 10 000). A gateway agent fences itself after this long without the store. */
  readonly leaseMs?: number;
  /** The planner waits this much longer than the lease before it stops waiting for a silent host (default 5000).
   *  Gateways are waited for until they are known to be out of ECMP. */
  readonly marginMs?: number;
  /** The daemon can fence a silent gateway (--fence-cmd): silent gateways are fenced after the lease (unless that
   *  would fence a majority). Without it a silent gateway is waited for until it returns or the operator confirms
   *  it is out (`sluice node confirm-fenced`). */
  readonly fencing?: boolean;
}

export type Decision =
  | {
      readonly kind: 'publish';
      readonly generation: Generation;
      /** Effective config documents the generation was planned from: agents compile with them. */
      readonly config: PlanDocs;
      readonly notes: readonly PlanNote[];
    }
  | { readonly kind: 'release'; readonly generation: number }
  /** Write Report_Round = generation into Sluice_Status: host reports committed after it are newer than the ack round
   *  (the acks are in Sluice, the reports in Sluice_Status, and two monitors are not read atomically). */
  | { readonly kind: 'mark-round'; readonly generation: number }
  /** Take these gateways out of ECMP (they were silent for the lease and did not say they withdrew), then record it
   *  with the rejoin token each had in the view decided on (`rejoins`; a rejoin after it makes the record void). */
  | {
      readonly kind: 'fence';
      readonly nodes: readonly string[];
      readonly rejoins: ReadonlyMap<string, string | undefined>;
      readonly message: string;
    }
  | {
      readonly kind: 'wait';
      readonly on: 'hosts' | 'gateways' | 'reports';
      readonly nodes: readonly string[];
      readonly message: string;
    }
  | { readonly kind: 'idle'; readonly notes: readonly PlanNote[]; readonly message: string };

interface Seen {
  heartbeatAt: number;
  /** The node's rejoin and announce tokens (Node_Status): a change is the agent heard, like a heartbeat. */
  marks: string;
  /** Planner clock when the heartbeat last changed (or when the planner first saw the node). */
  lastSeen: number;
  /** Connection reports (heartbeats, from agents without report_at) seen since the current ack round completed. */
  beatsSinceRound: number;
  reportAt?: number;
}

/** Whether any slot of `g` is in a phase other than stable, or a member names the host it moved from (both are
 *  let go on fresh connection reports). */
function hasSecondChances(g: Generation): boolean {
  // A moved member's old host (movedFrom) is let go on a report of 0 connections, as a chain member is.
  return [...g.pools.values()].some(
    (p) => p.phase.some((x) => x !== PHASE_STABLE) || p.members.some((m) => m.movedFrom !== undefined),
  );
}

/** A node's rejoin and announce tokens, as one value to compare. */
function marksOf(s: { readonly rejoin?: string; readonly announced?: string }): string {
  return `${s.rejoin ?? ''} ${s.announced ?? ''}`;
}

export class PlannerCore {
  readonly leaseMs: number;
  readonly marginMs: number;
  readonly fencing: boolean;
  readonly #seen = new Map<string, Seen>();
  /** The generation whose gateway ack round completed, and when (planner clock). */
  #round: { generation: number; at: number } | undefined;
  #view: StoreView | undefined;
  /** What planNext remembers of this planner's earlier steps (a step then costs what changed); the status page's
   *  replans share it (a pool settles whatever the reports or the silent hosts). */
  readonly plans = new PlanCache();
  /** hasSecondChances of the latest generation, asked on every step: at 10,000 pools the scan reads 2.56 M phases,
   *  and a generation is immutable, so once per generation. */
  #chances: { generation: Generation; has: boolean } | undefined;

  constructor(opts: PlannerCoreOptions = {}) {
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.marginMs = opts.marginMs ?? DEFAULT_MARGIN_MS;
    this.fencing = opts.fencing ?? false;
  }

  /** The planner's own view was stale until `now` (its store session came back): every node gets a full lease from
   *  now, so a planner that was cut off does not take its own silence for the nodes' (and fence them all). */
  resync(now: number): void {
    for (const s of this.#seen.values()) s.lastSeen = Math.max(s.lastSeen, now);
  }

  /** Planner clock of the last heartbeat change of any node. */
  #lastAnyBeat: number | undefined;
  /** The Report_Round generation of the last view (undefined before the first). */
  #lastMark: number | undefined;

  /** Takes a fresh view of the store: tracks heartbeats on the planner's clock. When no node at all was heard for
   *  more than half a lease and then one is, the silence was the store's or the planner's (a store restarted, a
   *  Raft cluster that lost its quorum without dropping this session): every lease restarts from now (resync). */
  observe(view: StoreView, now: number): void {
    this.#view = view;
    const heard = [...view.nodeStatus].some(([n, s]) => {
      const seen = this.#seen.get(n);
      return seen !== undefined && (seen.heartbeatAt !== s.heartbeatAt || seen.marks !== marksOf(s));
    });
    if (heard) {
      if (this.#lastAnyBeat !== undefined && now - this.#lastAnyBeat > this.leaseMs / 2) this.resync(now);
      this.#lastAnyBeat = now;
    }
    this.#lastAnyBeat ??= now;
    // A node of the desired state that never reported: waited for during one lease + margin from first sight
    // (planner start, or the node's addition), then no longer.
    for (const n of view.desired?.nodes ?? []) {
      if (!view.nodeStatus.has(n.name) && !this.#seen.has(n.name))
        this.#seen.set(n.name, {
          heartbeatAt: Number.NaN,
          marks: marksOf({}),
          lastSeen: now,
          beatsSinceRound: 0,
        });
    }
    for (const [node, s] of view.nodeStatus) {
      const seen = this.#seen.get(node);
      if (seen === undefined) {
        // First sight (planner start or a new node): give it a full lease from now.
        this.#seen.set(node, {
          heartbeatAt: s.heartbeatAt,
          marks: marksOf(s),
          lastSeen: now,
          beatsSinceRound: 0,
          reportAt: s.reportAt,
        });
        continue;
      } else if (seen.heartbeatAt !== s.heartbeatAt) {
        // (NaN, a node first seen without status, differs from any heartbeat.)
        seen.heartbeatAt = s.heartbeatAt;
        seen.lastSeen = now;
        if (s.reportAt === undefined) seen.beatsSinceRound++;
      }
      // A gateway's rejoin (or the end of its announce) is heard too: its heartbeats are in the other database, and a
      // replica of Sluice_Status that lags the rejoin must not make it look silent (the lease restarts here).
      if (seen.marks !== marksOf(s)) {
        seen.marks = marksOf(s);
        seen.lastSeen = now;
      }
      // A host that reports in its own loop: only a new report counts (its heartbeats go on without one).
      if (s.reportAt !== undefined && s.reportAt !== seen.reportAt) {
        seen.reportAt = s.reportAt;
        seen.beatsSinceRound++;
      }
    }
    // The view in which the round mark appears may hold reports committed before it (reports and mark are in one
    // database, so only reports that change in a later view were committed after it): count from the next view on.
    if (view.reportRound !== this.#lastMark) {
      this.#lastMark = view.reportRound;
      for (const s of this.#seen.values()) s.beatsSinceRound = 0;
    }
  }

  /** Ms since the node's last heartbeat (planner clock); undefined = never seen. */
  silentFor(node: string, now: number): number | undefined {
    const s = this.#seen.get(node);
    return s === undefined ? undefined : now - s.lastSeen;
  }

  /** Whether the planner still waits for this node: not out of ECMP (fenced by itself, the planner or the operator);
   *  a host also only while its heartbeat is within lease + margin. A gateway is waited for however long it is
   *  silent: it may be forwarding on an old generation. */
  isLive(node: string, now: number): boolean {
    const silent = this.silentFor(node, now);
    if (silent === undefined) return false;
    if (this.#isOut(node)) return false;
    if (this.#role(node) === 'gateway') return true;
    return silent <= this.leaseMs + this.marginMs;
  }

  /** Known to be out of ECMP: withdrew itself, or a fence record (planner or operator). */
  #isOut(node: string): boolean {
    const s = this.#view?.nodeStatus.get(node);
    return (s?.fenced || s?.plannerFenced || s?.operatorFenced) ?? false;
  }

  /** Gateway names, only from the validated desired state (an unvalidated store row never reaches a fence
   *  command); with an invalid desired state there are none to fence (nothing is published either). */
  #gateways(config?: Config): string[] {
    let valid = config;
    if (valid === undefined) {
      try {
        valid = this.effective().config;
      } catch {
        return [];
      }
    }
    return valid.nodes.filter((n) => n.role === 'gateway').map((n) => n.name);
  }

  /** Whether the announce command of the gateway's latest rejoin is known to have ended (its agent wrote the rejoin's
   *  token as announced; no token at all: an agent before them, or no rejoin yet). A fence before that could land
   *  before the announce and be undone by it, with the gateway counted out. */
  #announceEnded(node: string): boolean {
    const s = this.#view?.nodeStatus.get(node);
    return s?.rejoin === s?.announced;
  }

  /** Gateways silent for more than the lease and not out of ECMP: the ones a fence would take out. */
  #silentGateways(now: number, config?: Config): string[] {
    return this.#gateways(config)
      .filter((n) => !this.#isOut(n) && (this.silentFor(n, now) ?? 0) > this.leaseMs)
      .sort();
  }

  /** Silent gateways the planner may fence: their last announce is known to have ended. */
  #fenceCandidates(now: number, config?: Config): string[] {
    return this.#silentGateways(now, config).filter((n) => this.#announceEnded(n));
  }

  /** The fence is held when the gateways left in ECMP would be fewer than those out of it: out = already out,
   *  to be fenced, or silent for more than half a lease (so gateways cut off together count together, even if
   *  their leases expire a moment apart). */
  #fenceHeldFor(now: number, candidates: readonly string[], config?: Config): boolean {
    const all = this.#gateways(config);
    const out = all.filter(
      (n) => this.#isOut(n) || candidates.includes(n) || (this.silentFor(n, now) ?? 0) > this.leaseMs / 2,
    );
    return 2 * (all.length - out.length) < all.length;
  }

  /** Gateways the planner must fence now: silent for more than the lease, not out of ECMP, and fencing them would
   *  not leave a minority of the gateways in ECMP (then none: fenceHeld says why). */
  toFence(now: number, config?: Config): string[] {
    if (!this.fencing) return [];
    const candidates = this.#fenceCandidates(now, config);
    return candidates.length > 0 && !this.#fenceHeldFor(now, candidates, config) ? candidates : [];
  }

  /** The gateways whose fence was held at the last decision. */
  #held: readonly string[] = [];

  /** When a hold ends because some of the gateways came back, the ones still silent get a fresh lease from now: they
   *  went silent together with the others, so the shared cause (a cut, a store) most likely keeps them a moment
   *  longer (reconnection back-off) rather than a fault of their own; a gateway that is really gone is fenced a
   *  lease later. */
  #updateHold(now: number, config: Config): void {
    const held = this.fenceHeld(now, config)?.nodes ?? [];
    if (held.length === 0)
      for (const n of this.#held) {
        const s = this.#seen.get(n);
        if (s !== undefined) s.lastSeen = Math.max(s.lastSeen, now);
      }
    this.#held = held;
  }

  /** Silent gateways the planner does not fence because they are too many at once, and why; undefined = none. */
  fenceHeld(
    now: number,
    config?: Config,
  ): { readonly nodes: readonly string[]; readonly message: string } | undefined {
    if (!this.fencing) return undefined;
    const candidates = this.#fenceCandidates(now, config);
    if (candidates.length === 0 || !this.#fenceHeldFor(now, candidates, config)) return undefined;
    const all = this.#gateways(config);
    const inEcmp = all.filter((n) => !this.#isOut(n) && (this.silentFor(n, now) ?? 0) <= this.leaseMs / 2);
    return {
      nodes: candidates,
      message:
        `not fencing ${candidates.join(', ')}: only ${inEcmp.length} of ${all.length} gateways would stay in ECMP ` +
        "(a majority silent at once is more likely a fault on the planner's or the store's side); waiting for " +
        'them to return (sluice node confirm-fenced <gateway> if one is really out)',
    };
  }

  #role(node: string): string | undefined {
    return this.#view?.desired?.nodes.find((n) => n.name === node)?.role;
  }

  /** Nodes of a role in the desired state, split by liveness. */
  nodes(role: 'gateway' | 'host', now: number): { live: string[]; out: string[] } {
    const names = (this.#view?.desired?.nodes ?? []).filter((n) => n.role === role).map((n) => n.name);
    const live = names.filter((n) => this.isLive(n, now)).sort();
    return { live, out: names.filter((n) => !live.includes(n)).sort() };
  }

  /** The effective config (validated), or throws SLUICE_E_CONFIG_INVALID. */
  effective(): { config: Config; doc: PlanDocs } {
    const effective = this.#view === undefined ? undefined : effectiveConfig(this.#view, 'store (effective)');
    if (effective === undefined) throw new Error('no desired state');
    return effective;
  }

  decide(now: number): Decision {
    const v = this.#view;
    if (v?.desired === undefined)
      return { kind: 'idle', notes: [], message: 'no desired state in the store' };
    // Validation first: fencing acts only on names from the validated desired state.
    const effective = this.effective();
    const { config, doc } = effective;
    // Fencing next: a silent gateway may be forwarding on an old generation; nothing waits on it once it is out.
    this.#updateHold(now, config);
    const fence = this.toFence(now, config);
    if (fence.length > 0)
      return {
        kind: 'fence',
        nodes: fence,
        rejoins: new Map(fence.map((n) => [n, v.nodeStatus.get(n)?.rejoin])),
        message: `fencing ${fence.join(', ')}: silent for more than the lease (${this.leaseMs} ms) and not withdrawn`,
      };
    const latest = v.latest;
    const applied = (n: string) => v.nodeStatus.get(n)?.appliedGeneration ?? 0;
    if (latest !== null) {
      // Stage 2: release the latest generation to the gateways once every live host has it.
      if (v.gatewayGeneration < latest.number) {
        const waiting = this.nodes('host', now).live.filter((h) => applied(h) < latest.number);
        if (waiting.length > 0)
          return {
            kind: 'wait',
            on: 'hosts',
            nodes: waiting,
            message: `g${latest.number}: waiting for hosts ${waiting.join(', ')}`,
          };
        return { kind: 'release', generation: latest.number };
      }
      // Gating: every live gateway acknowledged the latest generation.
      const waiting = this.nodes('gateway', now).live.filter((g) => applied(g) < latest.number);
      if (waiting.length > 0) {
        this.#round = undefined;
        const held = this.fenceHeld(now, config);
        const announcing = this.fencing
          ? this.#silentGateways(now, config).filter((n) => !this.#announceEnded(n))
          : [];
        return {
          kind: 'wait',
          on: 'gateways',
          nodes: waiting,
          message:
            `g${latest.number}: waiting for gateways ${waiting.join(', ')} to acknowledge` +
            (held ? ` (${held.message})` : '') +
            (announcing.length > 0
              ? ` (not fencing ${announcing.join(', ')}: silent since a rejoin whose announce command may still ` +
                'run; sluice node confirm-fenced <gateway> if one is really out)'
              : ''),
        };
      }
      if (this.#round?.generation !== latest.number) {
        this.#round = { generation: latest.number, at: now };
        for (const s of this.#seen.values()) s.beatsSinceRound = 0;
      }
      // Connection reports must be newer than the ack round (two heartbeats: the second one's conntrack read
      // started after the first was written, i.e. after the round completed). The acks are in Sluice and the reports
      // in Sluice_Status: the planner first marks the round there, and counts reports committed after its mark.
      if (this.#chances?.generation !== latest)
        this.#chances = { generation: latest, has: hasSecondChances(latest) };
      if (this.#chances.has) {
        if (v.reportRound !== latest.number) return { kind: 'mark-round', generation: latest.number };
        const stale = this.nodes('host', now).live.filter(
          (h) => (this.#seen.get(h)?.beatsSinceRound ?? 0) < 2,
        );
        if (stale.length > 0)
          return {
            kind: 'wait',
            on: 'reports',
            nodes: stale,
            message: `g${latest.number}: waiting for fresh connection reports from ${stale.join(', ')}`,
          };
      }
    }
    const hosts = this.nodes('host', now);
    // A host out of the wait set is silent, not gone: its data plane may still forward and hold connections.
    // Evidence that it is gone is in the config (its backends down, or the host removed), never its silence.
    const step = plannerStep(v, effective, now, new Set(hosts.live), new Set(hosts.out), this.plans);
    if (step.next !== null) return { kind: 'publish', generation: step.next, config: doc, notes: step.notes };
    if (latest !== null && step.configChanged) {
      // Only the config changed (a node, a VIP port, a backend's state without slot movement): same pools, new
      // generation, so agents compile with the new config through the same gating.
      return {
        kind: 'publish',
        generation: withLbIds(
          { number: latest.number + 1, createdAt: now, pools: latest.pools },
          { latest, now, ...lbIdContext(v) },
        ),
        config: doc,
        notes: step.notes,
      };
    }
    return { kind: 'idle', notes: step.notes, message: `g${latest?.number ?? 0}: up to date` };
  }
}
