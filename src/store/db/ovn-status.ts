// The OVN importer's status entry (docs/ovn.md): what `sluice ovn sync` could not serve, kept in
// Global.external_ids so `sluice status` shows it beside what agents report.

import type { Operation } from '../../ovsdb/protocol.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import { mapPut, mutate } from './ops.ts';
import { single } from './read.ts';
import { GlobalTable, OVN_SKIPPED_KEY } from './tables.ts';

export interface OvnSkippedRow {
  readonly lb: string;
  readonly vip?: string;
  readonly backend?: string;
  readonly reason: string;
}

/** The stored list (empty when none or unreadable). */
export function readOvnSkipped(r: Replica): OvnSkippedRow[] {
  const text = single(r, GlobalTable)?.external_ids.get(OVN_SKIPPED_KEY);
  if (text === undefined) return [];
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? (v as OvnSkippedRow[]) : [];
  } catch {
    return [];
  }
}

/** The operation that stores `skipped`, or none when the store already holds exactly that. */
export function ovnSkippedOps(r: Replica, skipped: readonly OvnSkippedRow[]): Operation[] {
  const text = JSON.stringify(skipped);
  const g = single(r, GlobalTable);
  if (g === undefined || g.external_ids.get(OVN_SKIPPED_KEY) === text) return [];
  return [mutate(GlobalTable, [], mapPut(GlobalTable, 'external_ids', { [OVN_SKIPPED_KEY]: text }))];
}

/** `load balancer web, VIP 10.0.0.10:80, backend 10.0.1.5:8080: why`. */
export function formatOvnRow(o: {
  readonly lb: string;
  readonly vip?: string;
  readonly backend?: string;
}): string {
  const where = [`load balancer ${o.lb}`, o.vip && `VIP ${o.vip}`, o.backend && `backend ${o.backend}`];
  return where.filter(Boolean).join(', ');
}
