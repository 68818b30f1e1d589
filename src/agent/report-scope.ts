// Which load balancers a host's connection report must look at (AgentDaemon #reportOps). Pure.
//
// A report writes Slot_Connections per load balancer and Backend_Status per local backend where they differ from the
// stored rows. Everything they are computed from is either the report's connection counts or something this scope
// records (the config object, the health checker's version, the facts' VM map): when none of those moved since the
// last committed report, a load balancer with no connections now and none in that report has nothing new to write.
// So a report looks at the load balancers with connections now or then, and at every one only when something else
// moved or FULL_REPORT_MS passed (rows changed behind the agent's back are then repaired). At 10,000 VIPs a host has
// 100,000 local backends: looking at all of them on every heartbeat kept its agent's core busy.

import type { NodeFacts } from '../compile/facts.ts';
import type { Config, LoadBalancer } from '../model/types.ts';

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
  const full =
    last === undefined ||
    last.config !== config ||
    last.health !== health ||
    last.vms !== vms ||
    now - last.fullAt >= FULL_REPORT_MS;
  const scope = { config, health, vms, active, fullAt: full ? now : last.fullAt };
  const lbs = full
    ? config.loadBalancers
    : config.loadBalancers.filter((lb) => active.has(lb.name) || last.active.has(lb.name));
  return { scope, full, lbs };
}
