// What the planner's status page shows, read from the planner's replica of the store: only what agents reported
// and what the planner published, never what was asked. Plain JSON for the page's script
// (GET /api/state); the page itself (page.ts) only draws it.

import { NO_OWNER } from '../hashing/slots.ts';
import type { Replica } from '../ovsdb/replica.ts';
import type { PlanCache } from '../rollout/plan-cache.ts';
import { describeGeneration } from '../rollout/summary.ts';
import {
  CANNOT_AGREE,
  NodeHeartbeatTable,
  readPlan,
  rows,
  SECOND_CHANCE_KEY,
  SLOT_DISAGREE,
} from '../store/db/index.ts';
import { type StatusReport, statusReport } from '../store/operator.ts';
import { rolloutProgress } from '../store/rollout-progress.ts';

export interface PagePool {
  readonly lb: string;
  readonly bits: number;
  readonly members: readonly { readonly key: string; readonly host: string }[];
  /** Per slot: member index, or -1 (no owner). Only the first `shown` slots. */
  readonly primary: readonly number[];
  readonly second: readonly number[];
  readonly phase: readonly number[];
  /** Slots of the table (2^bits); `primary` etc. hold the first min(slots, MAX_SLOTS_SHOWN). */
  readonly slots: number;
  /** Slots waiting for connections to end (their second chance is kept). */
  readonly waiting: readonly number[];
}

export interface PageNode {
  readonly name: string;
  readonly role: string;
  readonly appliedGeneration: number | null;
  readonly lag: number | null;
  readonly heartbeatAgeMs: number | null;
  readonly fenced: boolean;
  /** Where the node stands with the upstream router: announced, withdrawn by its agent, fenced, or n/a (hosts). */
  readonly routing: string;
  readonly error: string | null;
  /** Behind the generation the rollout waits on (the node the rollout is late for). */
  readonly late: boolean;
}

export interface PageState {
  readonly at: number;
  readonly planner: { readonly active: boolean; readonly lastDecision: string };
  readonly desiredCfg: number;
  readonly plannedCfg: number | null;
  readonly generation: number;
  readonly gatewayGeneration: number;
  readonly rollout: {
    /** Settled: every live node applied the latest generation and no slot is in phase 1 or 2 or waits. */
    readonly settled: boolean;
    /** What the latest generation moved against the one before it. */
    readonly moves: readonly string[];
    readonly waitingGateways: readonly string[];
    readonly waitingHosts: readonly string[];
    readonly waitingSlots: readonly string[];
    /** What the rollout waits for, in words ('' when settled): `sluice rollout status`'s words. */
    readonly waitingFor: string;
    /** Nodes whose agent went silent (no heartbeat for a few seconds). */
    readonly silent: readonly string[];
  };
  readonly nodes: readonly PageNode[];
  readonly backends: StatusReport['backends'];
  readonly pools: readonly PagePool[];
  /** Second-chance packets per load balancer, summed over the hosts that reported (null: no host reported). */
  readonly secondChance: readonly { readonly lb: string; readonly packets: number | null }[];
}

/** Cells drawn per table: 4096 keeps the page light at slotBits 12; larger tables show their first 4096 slots. */
export const MAX_SLOTS_SHOWN = 4096;

/** A node's routing cell: n/a for hosts; announced, withdrawn by its agent (with the hash audit's reason when that
 *  is why) or fenced by the planner/operator for gateways. */
export function routingCell(role: string, fencedBy: string | null, hashAgreement: string | null): string {
  if (role !== 'gateway') return 'n/a';
  if (fencedBy === null) return 'announced';
  if (fencedBy !== 'agent') return `fenced (${fencedBy})`;
  // The continuous audit's reason, when that is why its agent keeps it out.
  return hashAgreement?.startsWith(CANNOT_AGREE)
    ? `withdrawn (by its agent): hash ${hashAgreement}`
    : 'withdrawn (by its agent)';
}

/** A host's live slot audit, when it found connections in another slot than the model's: shown in its error cell
 *  (the page's node warning), as `sluice status` prints it under the nodes. */
export function slotAuditWarning(slotAudit: string | null): string | null {
  return slotAudit?.startsWith(SLOT_DISAGREE) === true
    ? `WARNING: a gateway's hash disagrees with the model: ${slotAudit.slice(SLOT_DISAGREE.length).trim()}`
    : null;
}

/** Second-chance counters the hosts reported, per load balancer. */
export function secondChanceCounts(r: Replica): Map<string, number> {
  const out = new Map<string, number>();
  for (const row of rows(r, NodeHeartbeatTable)) {
    const text = row.external_ids.get(SECOND_CHANCE_KEY);
    if (text === undefined) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      continue; // a malformed report is ignored, never fatal
    }
    if (parsed === null || typeof parsed !== 'object') continue;
    for (const [lb, n] of Object.entries(parsed as Record<string, unknown>))
      if (typeof n === 'number' && Number.isFinite(n)) out.set(lb, (out.get(lb) ?? 0) + n);
  }
  return out;
}

export function pageState(
  r: Replica,
  planner: { active: boolean; lastDecision: string },
  now = Date.now(),
  cache?: PlanCache,
): PageState {
  const st = statusReport(r, now, cache);
  const latest = readPlan(r);
  const previous = latest === undefined ? undefined : readPlan(r, latest.generation.number - 1);
  const waitSlots = new Map<string, Set<number>>();
  for (const w of st.waitingSlots) {
    const set = waitSlots.get(w.lb) ?? new Set<number>();
    for (const s of w.slots) set.add(s);
    waitSlots.set(w.lb, set);
  }
  const pools: PagePool[] = [];
  let inPhase = false;
  for (const p of latest?.generation.pools.values() ?? []) {
    const shown = Math.min(p.primary.length, MAX_SLOTS_SHOWN);
    const idx = (a: Uint16Array) => Array.from(a.subarray(0, shown), (x) => (x === NO_OWNER ? -1 : x));
    if (p.phase.some((x) => x !== 0)) inPhase = true;
    pools.push({
      lb: p.lb,
      bits: p.bits,
      members: p.members.map((m) => ({ key: m.key, host: m.host })),
      primary: idx(p.primary),
      second: idx(p.second),
      phase: Array.from(p.phase.subarray(0, shown)),
      slots: p.primary.length,
      waiting: [...(waitSlots.get(p.lb) ?? [])].sort((a, b) => a - b),
    });
  }
  const progress = rolloutProgress(r, now, cache);
  const late = new Set([...st.waiting.gateways, ...st.waiting.hosts, ...progress.silent.map((n) => n.name)]);
  const counts = secondChanceCounts(r);
  const reported = rows(r, NodeHeartbeatTable).some(
    (row) => row.external_ids.get(SECOND_CHANCE_KEY) !== undefined,
  );
  return {
    at: now,
    planner,
    desiredCfg: st.desiredCfg,
    plannedCfg: st.plannedCfg,
    generation: st.generation,
    gatewayGeneration: st.gatewayGeneration,
    rollout: {
      settled: progress.done && !inPhase,
      // The previous generation may have been pruned: then nothing is said rather than "everything is new".
      moves:
        latest === undefined || (previous === undefined && latest.generation.number > 1)
          ? []
          : describeGeneration(previous?.generation, latest.generation),
      waitingGateways: st.waiting.gateways,
      waitingHosts: st.waiting.hosts,
      waitingSlots: st.waitingSlots.map((w) => w.message),
      waitingFor: progress.waitingFor,
      silent: progress.silent.map((n) => n.name),
    },
    nodes: st.nodes.map((n) => ({
      name: n.name,
      role: n.role,
      appliedGeneration: n.appliedGeneration,
      lag: n.lag,
      heartbeatAgeMs: n.heartbeatAgeMs,
      fenced: n.fenced,
      routing: routingCell(n.role, n.fencedBy, n.hashAgreement),
      error: n.error ?? slotAuditWarning(n.slotAudit),
      late: late.has(n.name),
    })),
    backends: st.backends,
    pools,
    secondChance: pools.map((p) => ({ lb: p.lb, packets: reported ? (counts.get(p.lb) ?? 0) : null })),
  };
}
