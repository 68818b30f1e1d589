// How often an agent writes its heartbeat. Every heartbeat is a transaction in the store, and ovsdb-server keeps only
// the last 100 transactions of a database for reconnecting clients to resume from (docs/design/ovsdb.md, "ovsdb-server's
// transaction history"): with N agents beating every second, a daemon away for more than ~99/N seconds downloads its
// whole monitor again. With an idle interval (`--idle-heartbeat`, off by default) an agent beats at `heartbeatMs`
// while the plan moves and at the longer interval once nothing it watches has changed for ACTIVE_WINDOW_MS: the
// planner's waits during a rollout (acknowledgements, two fresh connection reports after each round) keep their
// pace, and an idle store takes fewer transactions. Pure.

import {
  BackendStatusTable,
  NodeHeartbeatTable,
  NodeStatusTable,
  SlotConnectionsTable,
} from '../store/db/index.ts';

/** How long after the last change an agent keeps the fast pace: one rollout step (host ack, gateway release and
 *  acks, two host reports) takes a few seconds; each new generation is a change again. */
export const ACTIVE_WINDOW_MS = 10_000;

/** The tables an agent writes itself: its own rows there echo back on every heartbeat and are not a change. */
const OWN_TABLES: ReadonlySet<string> = new Set(
  [NodeStatusTable, NodeHeartbeatTable, BackendStatusTable, SlotConnectionsTable].map((t) => t.name),
);

export interface Cadence {
  readonly heartbeatMs: number;
  /** Undefined: always `heartbeatMs`. */
  readonly idleHeartbeatMs?: number;
}

/** The interval the next heartbeat is due after, given the time of the last change the agent saw. */
export function heartbeatInterval(c: Cadence, now: number, lastChangeAt: number): number {
  if (c.idleHeartbeatMs === undefined || now - lastChangeAt < ACTIVE_WINDOW_MS) return c.heartbeatMs;
  return Math.max(c.heartbeatMs, c.idleHeartbeatMs);
}

/** Whether a monitor update is a change of what the agent applies (plans, Global, desired state), not the echo of
 *  a status row. A fence record on its own Node_Status row counts through the fence state it changes. */
export function isPlanChange(changes: readonly { readonly table: string }[]): boolean {
  return changes.some((c) => !OWN_TABLES.has(c.table));
}

/** A heartbeat is due once 90 % of its interval passed, and the agent checks on its `heartbeatMs` tick: the interval
 *  it actually keeps is the next whole number of ticks (an idle 2,500 ms beats every 3,000 ms at a 1,000 ms tick). */
export function effectiveInterval(intervalMs: number, heartbeatMs: number): number {
  return heartbeatMs * Math.max(1, Math.ceil(Math.round((0.9 * intervalMs * 1000) / heartbeatMs) / 1000));
}

/** Why an idle interval cannot be used with this lease, or undefined: the planner must see at least four heartbeats
 *  of an idle agent per lease at the interval it actually keeps (a live agent whose beats a slow store delays still
 *  keeps its lease), and so more than one per half lease (its "nobody was heard" resync rule, src/planner/core.ts). */
export function idleHeartbeatProblem(
  idleMs: number,
  heartbeatMs: number,
  leaseMs: number,
): string | undefined {
  if (!Number.isFinite(idleMs) || idleMs < heartbeatMs)
    return `--idle-heartbeat: expected at least the heartbeat (${heartbeatMs} ms), got ${idleMs}`;
  const kept = effectiveInterval(idleMs, heartbeatMs);
  if (kept * 4 > leaseMs)
    return (
      `--idle-heartbeat: ${idleMs} ms beats every ${kept} ms on a ${heartbeatMs} ms heartbeat, more than a quarter ` +
      `of the lease (${leaseMs} ms): a live agent could lose it`
    );
  return undefined;
}
