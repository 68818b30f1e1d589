// Which load balancers a host's connection report must look at (AgentDaemon #reportOps). Pure.
//
// A report writes Slot_Connections per load balancer and Backend_Status per local backend where they differ from the
// stored rows. Everything they are computed from is either the report's connection counts or something this scope
// records (the config object, the health checker's version, the facts' VM map): when none of those moved since the
// last committed report, a load balancer with no connections now and none in that report has nothing new to write.
// So a report looks at the load balancers with connections now or then, and those the config changed (a new config
// keeps the unchanged load balancers' objects), and at every one only when something else moved, a load balancer or
// one of its backends went, or FULL_REPORT_MS passed (rows changed behind the agent's back are then repaired). At 10,000 VIPs a host has
// 100,000 local backends: looking at all of them on every heartbeat kept its agent's core busy.

import type { NodeFacts } from '../compile/facts.ts';
import { type Backend, backendKey, type Config, type LoadBalancer } from '../model/types.ts';

/** What a report was computed from. */
export interface ReportScope {
  readonly config: Config;
  /** HealthChecker.version (0 without a checker). */
  readonly health: number;
  readonly vms: NodeFacts['vms'];
  /** Load balancers with connections in the report. */
  readonly active: ReadonlySet<string>;
  /** When the last report that looked at every load balancer was computed (ms). */
  readonly fullAt: number;
}

/** A host looks at every load balancer's report rows at least this often. */
export const FULL_REPORT_MS = 30_000;

/**
 * The scope of a report computed at `now` from these inputs, after the last committed one (`last`), and the load
 * balancers it must look at: all of them (`full`) or those with connections now or in `last`.
 */
export function reportScope(
  last: ReportScope | undefined,
  now: number,
  input: Pick<ReportScope, 'config' | 'health' | 'vms' | 'active'>,
): { scope: ReportScope; full: boolean; lbs: readonly LoadBalancer[] } {
  const { config, health, vms, active } = input;
  const changed =
    last === undefined || last.health !== health || last.vms !== vms || now - last.fullAt >= FULL_REPORT_MS
      ? undefined
      : changedLbs(last.config, config);
  const full = changed === undefined;
  const scope = { config, health, vms, active, fullAt: full ? now : last!.fullAt };
  const lbs = full
    ? config.loadBalancers
    : config.loadBalancers.filter(
        (lb) => active.has(lb.name) || last!.active.has(lb.name) || changed.has(lb.name),
      );
  return { scope, full, lbs };
}

/**
 * The load balancers of `b` that are not the very objects of `a` (a new plan config keeps the unchanged ones:
 * src/model/config-parts.ts), those that came included, or undefined when the report must look at every one:
 * another slotBits (every load balancer's bits), load balancers that went, or a backend that left one (only a full
 * report removes the rows of what is gone). One pass comparing objects, no allocation per unchanged load balancer.
 */
/** A backend and the host it is on (a backend that moved to another host left this one). */
function localKey(b: Backend): string {
  return `${backendKey(b)} ${b.host}`;
}

function changedLbs(a: Config, b: Config): ReadonlySet<string> | undefined {
  if (a === b) return new Set();
  const x = a.loadBalancers;
  const y = b.loadBalancers;
  if (a.slotBits !== b.slotBits || x.length > y.length) return undefined;
  const out = new Set<string>();
  // Both lists are sorted by name (schema.ts buildConfig): one merge pass. A load balancer of `a` missing from `b`
  // went (only a full report removes its rows); one only in `b` came (its rows are new: looked at like a change).
  let i = 0;
  for (const lb of y) {
    const old = x[i];
    if (old === lb) {
      i++;
      continue;
    }
    if (old === undefined || lb.name < old.name) {
      out.add(lb.name);
      continue;
    }
    if (old.name !== lb.name) return undefined;
    i++;
    const kept = new Set(lb.backends.map(localKey));
    if (old.backends.some((o) => !kept.has(localKey(o)))) return undefined;
    out.add(lb.name);
  }
  return i === x.length ? out : undefined;
}

/**
 * The stored report rows a full report removes: Slot_Connections of load balancers no longer in `config`, and
 * Backend_Status of backends no longer on `node` in it (keys `lb backend`). `found` counts the stored rows the report
 * met while writing every load balancer's rows: when it met all of them none is gone, and the sets of every name and
 * key are not built (a full report at 10,000 VIPs collected its 100,000 keys in one, garbage that only a full
 * collection frees).
 */
export function goneReportRows<S extends { readonly lb: string }, B>(
  config: Config,
  node: string,
  slotRows: ReadonlyMap<string, S>,
  statusRows: ReadonlyMap<string, B>,
  found: { readonly slots: number; readonly status: number },
): { slots: S[]; status: B[] } {
  const slots: S[] = [];
  const status: B[] = [];
  if (found.slots < slotRows.size) {
    const names = new Set(config.loadBalancers.map((lb) => lb.name));
    for (const row of slotRows.values()) if (!names.has(row.lb)) slots.push(row);
  }
  if (found.status < statusRows.size) {
    const local = new Set<string>();
    for (const lb of config.loadBalancers)
      for (const b of lb.backends) if (b.host === node) local.add(`${lb.name} ${backendKey(b)}`);
    for (const [key, row] of statusRows) if (!local.has(key)) status.push(row);
  }
  return { slots, status };
}
