// The live slot audit of a host agent: every `slotAuditMs` the host compares the slot each live connection was
// committed in (its conntrack mark, set from the gateway's tunnel metadata) with the model's slot for its 5-tuple
// in the applied generation's hash mode (src/audit.ts `auditCommittedSlots`). A gateway whose hash disagrees with
// the model (another seed, another OVS build, a changed flow) shows as connections in other slots. LiveSlotAudit is
// pure (the caller passes the clock); PeriodicSlotAudit adds the period and the metric. The daemon feeds it the
// conntrack entries its connection report already read.
// Design: docs/design/hash.md, "The live audit in the host agent".

import type { Gauge } from 'prom-client';
import { auditCommittedSlots, type CommittedConnection, type Disagreement } from '../audit.ts';
import { type Datapath, type FiveTuple, findLoadBalancer } from '../explain.ts';
import type { Config, HashMode } from '../model/types.ts';
import type { Generation } from '../rollout/types.ts';
import { SLOT_DISAGREE } from '../store/db/tables.ts';
import { type CtEntry, committedConnections, isLiveEntry } from './node-ops.ts';

/** One load balancer's live connections by verdict. `unknown`: the model's hash cannot be known (never flagged). */
export interface LbVerdicts {
  readonly agree: number;
  readonly disagree: number;
  readonly unknown: number;
  /** The first disagreeing connection, for the operator. */
  readonly example: Disagreement | undefined;
}

export interface LiveAuditSummary {
  readonly state: 'ok' | 'disagree' | 'unknown';
  readonly perLb: ReadonlyMap<string, LbVerdicts>;
  /** Why the hash cannot be known (state `unknown`). */
  readonly why: string | undefined;
}

/** How long after the applied hash mode changed a connection may still carry the previous mode's slot: the
 *  gateways apply a generation after the hosts, so connections they hash meanwhile use the old mode. */
export const MODE_CHANGE_GRACE_MS = 60_000;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function tupleKey(t: FiveTuple): string {
  return `${t.proto} ${t.src} ${t.sport} ${t.dst} ${t.dport}`;
}

/**
 * The audit's state across runs: only what a hash-mode change needs. After a change, a disagreeing connection that
 * agrees with the previous mode is accepted during MODE_CHANGE_GRACE_MS, and afterwards only if it was live then
 * (it was committed before the gateways switched); new connections must agree with the current mode. The first run
 * treats the other mode as the previous one (see run).
 */
export class LiveSlotAudit {
  #mode: HashMode | undefined;
  #previous: { mode: HashMode; until: number; keys: Set<string> | undefined } | undefined;

  readonly datapath: Datapath;

  constructor(datapath: Datapath = 'netdev') {
    this.datapath = datapath;
  }

  run(config: Config, generation: Generation, entries: readonly CtEntry[], now: number): LiveAuditSummary {
    // The first run (an agent just started) cannot know whether the mode changed shortly before, or long ago with
    // connections of the old mode still live: it grants the other mode the same grace as a change it saw. Otherwise
    // a restarted agent would flag those connections until they close, though no gateway hashes wrong.
    const previous = this.#mode ?? (config.hashMode === 'fields' ? 'dp_hash' : 'fields');
    if (previous !== config.hashMode)
      this.#previous = { mode: previous, until: now + MODE_CHANGE_GRACE_MS, keys: undefined };
    this.#mode = config.hashMode;
    const conns = committedConnections(entries.filter(isLiveEntry));
    const r = auditCommittedSlots(config, generation, conns, this.datapath);
    const perLb = new Map<string, Mutable<LbVerdicts>>();
    const of = (lb: string) => {
      const v = perLb.get(lb) ?? { agree: 0, disagree: 0, unknown: 0, example: undefined };
      perLb.set(lb, v);
      return v;
    };
    if (r.unknowable !== undefined) {
      for (const c of conns) {
        const lb = findLoadBalancer(config, c.tuple)?.name;
        if (lb !== undefined) of(lb).unknown++;
      }
      return { state: 'unknown', perLb: freeze(perLb), why: r.unknowable };
    }
    for (const [lb, n] of r.agreeByLb) of(lb).agree += n;
    const prev = this.#previous;
    const byTuple = new Map<FiveTuple, CommittedConnection>(conns.map((c) => [c.tuple, c]));
    const accepted = new Set<string>();
    for (const d of r.disagree) {
      const v = of(d.lb);
      if (prev !== undefined && (now < prev.until || prev.keys?.has(tupleKey(d.tuple)))) {
        const old = auditCommittedSlots({ ...config, hashMode: prev.mode }, generation, [
          byTuple.get(d.tuple)!,
        ]);
        if (old.agree === 1) {
          accepted.add(tupleKey(d.tuple));
          v.agree++;
          continue;
        }
      }
      v.disagree++;
      v.example ??= d;
    }
    // The old-mode connections live now; past the grace only these stay accepted, until none is left.
    if (prev !== undefined) {
      prev.keys = accepted;
      if (now >= prev.until && accepted.size === 0) this.#previous = undefined;
    }
    return {
      state: r.disagree.length > accepted.size ? 'disagree' : 'ok',
      perLb: freeze(perLb),
      why: undefined,
    };
  }
}

function freeze(m: Map<string, LbVerdicts>): ReadonlyMap<string, LbVerdicts> {
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The summary as one line for Node_Status (SLOT_AUDIT_KEY) and `sluice status`. */
export function formatLiveAudit(s: LiveAuditSummary): string {
  const sum = (k: 'agree' | 'disagree' | 'unknown') => [...s.perLb.values()].reduce((a, v) => a + v[k], 0);
  if (s.state === 'unknown') return `unknown: ${sum('unknown')} connections not checked: ${s.why}`;
  if (s.state === 'ok') return `ok: ${sum('agree')} connections agree with the model`;
  const parts = [...s.perLb]
    .filter(([, v]) => v.disagree > 0)
    .map(([lb, v]) => {
      const d = v.example!;
      const t = d.tuple;
      return (
        `${lb} ${v.disagree} of ${v.agree + v.disagree} connections in another slot than the model's ` +
        `(e.g. ${t.proto} ${t.src}:${t.sport} -> ${t.dst}:${t.dport} committed in slot ${d.committedSlot}, ` +
        `model slot ${d.modelSlot})`
      );
    });
  return `${SLOT_DISAGREE} ${parts.join('; ')}`;
}

/**
 * The host agent's schedule and metric around LiveSlotAudit: `maybeRun` audits when `everyMs` passed since the last
 * run (0 = never), sets `sluice_agent_slot_audit_connections{lb,verdict}` and keeps the summary line.
 */
export class PeriodicSlotAudit {
  readonly #audit: LiveSlotAudit;
  #at = Number.NEGATIVE_INFINITY;
  /** The last summary as one line (formatLiveAudit), undefined before the first run. */
  text: string | undefined;

  readonly everyMs: number;
  readonly gauge: Gauge<'lb' | 'verdict'>;

  constructor(everyMs: number, gauge: Gauge<'lb' | 'verdict'>, datapath: Datapath = 'netdev') {
    this.everyMs = everyMs;
    this.gauge = gauge;
    this.#audit = new LiveSlotAudit(datapath);
  }

  maybeRun(
    config: Config,
    generation: Generation,
    entries: readonly CtEntry[],
    now: number,
  ): LiveAuditSummary | undefined {
    if (this.everyMs <= 0 || now - this.#at < this.everyMs) return undefined;
    this.#at = now;
    const summary = this.#audit.run(config, generation, entries, now);
    this.gauge.reset();
    for (const [lb, v] of summary.perLb)
      for (const verdict of ['agree', 'disagree', 'unknown'] as const)
        this.gauge.set({ lb, verdict }, v[verdict]);
    this.text = formatLiveAudit(summary);
    return summary;
  }
}
