// A host agent's own status rows by key, followed change by change. Pure (no I/O): it reads a Replica.
//
// The connection report compares what it computed with the stored rows (daemon.ts #reportOps). Rebuilding these maps
// from every row whenever either table moved cost ~8 ms at 900 VIPs and ~100 ms at 10,000 (110,000 rows), and the
// tables move on every report the host writes itself (docs/benchmarks.md, `generation-compile`). Following the
// replica's changes (Replica.watch) costs what changed; a replaced replica (a reconnect's snapshot) is read again.

import type { JsRow } from '../ovsdb/protocol.ts';
import type { Replica, RowChange } from '../ovsdb/replica.ts';
import {
  type BackendStatusRow,
  BackendStatusTable,
  decodeRow,
  type SlotConnectionsRow,
  SlotConnectionsTable,
} from '../store/db/index.ts';
import { RowIndex } from '../store/db/row-index.ts';

export class StatusIndex extends RowIndex {
  /** Slot_Connections rows by load balancer. */
  readonly slots = new Map<string, SlotConnectionsRow>();
  /** Backend_Status rows by `lb backend`. */
  readonly status = new Map<string, BackendStatusRow>();
  readonly #replica: Replica;

  constructor(replica: Replica) {
    super();
    this.#replica = replica;
    this.follow(replica, SlotConnectionsTable.name, (c) => this.#follow(c, this.slots, slotOf));
    this.follow(replica, BackendStatusTable.name, (c) => this.#follow(c, this.status, statusOf));
  }

  /** The maps, up to date with the replica. */
  current(): this {
    // Two rows with one key (not written by the agent, which updates its row) make the maps smaller than the tables:
    // which row wins is then the rebuild's (the last in the replica's order), as before.
    const r = this.#replica;
    if (
      this.slots.size !== r.table(SlotConnectionsTable.name).size ||
      this.status.size !== r.table(BackendStatusTable.name).size
    )
      this.stale = true;
    this.refresh();
    return this;
  }

  protected rebuild(): void {
    this.slots.clear();
    this.status.clear();
    for (const row of this.#replica.table(SlotConnectionsTable.name).values()) {
      const [k, x] = slotOf(row);
      this.slots.set(k, x);
    }
    for (const row of this.#replica.table(BackendStatusTable.name).values()) {
      const [k, x] = statusOf(row);
      this.status.set(k, x);
    }
    this.stale = false;
  }

  /** Nothing: the maps take each change as it is applied (#follow). */
  protected catchUp(): void {}

  #follow<R extends { readonly _uuid: string }>(
    c: RowChange | undefined,
    map: Map<string, R>,
    read: (row: JsRow) => readonly [string, R],
  ): void {
    if (c === undefined || this.stale) {
      this.stale = true;
      return;
    }
    try {
      if (c.old !== undefined) {
        const [k] = read(c.old);
        if (map.get(k)?._uuid === c.uuid) map.delete(k);
      }
      if (c.new !== undefined) {
        const [k, x] = read(c.new);
        map.set(k, x);
      }
    } catch {
      // A row that does not decode: read everything again when asked (the full read throws where it belongs).
      this.stale = true;
    }
  }
}

function slotOf(row: JsRow): readonly [string, SlotConnectionsRow] {
  const x = decodeRow(SlotConnectionsTable, row);
  return [x.lb, x];
}

function statusOf(row: JsRow): readonly [string, BackendStatusRow] {
  const x = decodeRow(BackendStatusTable, row);
  return [`${x.lb} ${x.backend}`, x];
}
