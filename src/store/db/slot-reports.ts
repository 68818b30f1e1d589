// The hosts' connection reports (Slot_Connections, one row per host and load balancer with connections) decoded
// from the replica's changed rows only. At 10,000 VIPs the table holds a row per host and VIP, and a host rewrites
// one whenever its counts move: decoding every row (JSON included) again on each such change cost the planner
// ~0.1 s per report. Fed by Replica.watch, so it does not matter which replica (which database) carries the table.
// Pure: no I/O.

import type { Replica, RowChange } from '../../ovsdb/replica.ts';
import { get, rows } from './read.ts';
import { RowIndex } from './row-index.ts';
import { decodeSlotCounts } from './status.ts';
import { type SlotConnectionsRow, SlotConnectionsTable } from './tables.ts';

/** Live connections one host reported for one LB: slot -> backend key -> count. */
export interface SlotReport {
  readonly bits: number;
  readonly counts: ReadonlyMap<number, ReadonlyMap<string, number>>;
}

/** host -> lb -> report. */
export type SlotReports = ReadonlyMap<string, ReadonlyMap<string, SlotReport>>;

/** Every row decoded, in the replica's order (a later row for the same host and load balancer wins). */
export function readSlotReports(r: Replica): Map<string, Map<string, SlotReport>> {
  const out = new Map<string, Map<string, SlotReport>>();
  for (const row of rows(r, SlotConnectionsTable)) put(out, row);
  return out;
}

function put(out: Map<string, Map<string, SlotReport>>, row: SlotConnectionsRow): void {
  let m = out.get(row.node);
  if (m === undefined) {
    m = new Map();
    out.set(row.node, m);
  }
  m.set(row.lb, { bits: row.bits, counts: decodeSlotCounts(row.counts) });
}

/** More changed rows than this between two reads: read the table again instead (bounds the pending set). */
const MAX_PENDING = 50_000;

/**
 * readSlotReports kept row by row: a read decodes only the rows that changed since the last one. The maps it
 * returns are its own and change in place at the next read (the planner reads them within one step). A change it
 * cannot follow (the table replaced after a reconnect, too many changes, a malformed row, two rows for one host and
 * load balancer, which the table's index forbids) makes the next read decode every row, which also throws the
 * decoder's error for a malformed row exactly as a whole read does.
 */
export class SlotReportIndex extends RowIndex {
  readonly #replica: Replica;
  #reports = new Map<string, Map<string, SlotReport>>();
  /** Row UUID -> the host and load balancer it reports for. */
  readonly #rows = new Map<string, { readonly node: string; readonly lb: string }>();
  #pending = new Set<string>();

  constructor(replica: Replica) {
    super();
    this.#replica = replica;
    this.follow(replica, SlotConnectionsTable.name, (c) => this.#watch(c));
  }

  reports(): SlotReports {
    this.refresh();
    return this.#reports;
  }

  #watch(c: RowChange | undefined): void {
    if (this.stale) return;
    if (c === undefined || this.#pending.size >= MAX_PENDING) {
      this.stale = true;
      this.#pending.clear();
      return;
    }
    this.#pending.add(c.uuid);
  }

  protected rebuild(): void {
    this.#rows.clear();
    this.#pending.clear();
    this.stale = true;
    this.#reports = new Map();
    let twice = false;
    // readSlotReports, noting each row's host and load balancer.
    for (const row of rows(this.#replica, SlotConnectionsTable)) {
      this.#rows.set(row._uuid, { node: row.node, lb: row.lb });
      twice ||= this.#reports.get(row.node)?.has(row.lb) ?? false;
      put(this.#reports, row);
    }
    // Two rows for one host and load balancer: which one wins is the replica's order, left to the whole read.
    this.stale = twice;
  }

  protected catchUp(): void {
    if (this.#pending.size === 0) return;
    const pending = this.#pending;
    this.#pending = new Set();
    for (const uuid of pending) {
      const was = this.#rows.get(uuid);
      if (was !== undefined) {
        this.#rows.delete(uuid);
        const m = this.#reports.get(was.node);
        m?.delete(was.lb);
        if (m?.size === 0) this.#reports.delete(was.node);
      }
      const row = get(this.#replica, SlotConnectionsTable, uuid);
      if (row === undefined) continue;
      if (this.#reports.get(row.node)?.has(row.lb)) {
        this.rebuild();
        return;
      }
      this.#rows.set(uuid, { node: row.node, lb: row.lb });
      put(this.#reports, row);
    }
  }
}
