// What the store's row-by-row indexes share (health.ts, desired-index.ts, slot-reports.ts, plan-index.ts, and the
// agent's status-index.ts): each follows some tables through Replica.watch and, on a read, either takes in the rows
// that changed or, when it cannot follow (the content replaced, too many changes, a malformed row), reads its tables
// whole. Pure: no I/O.

import type { Replica, RowChange } from '../../ovsdb/replica.ts';

export abstract class RowIndex {
  /** The next read reads the tables whole. */
  protected stale = true;
  readonly #stops: (() => void)[] = [];

  /** Replica.watch, undone by close(). */
  protected follow(replica: Replica, table: string, fn: (change: RowChange | undefined) => void): void {
    this.#stops.push(replica.watch(table, fn));
  }

  /** Stops following the replica: for an index dropped before its replica (replaced by a new one), which would
   *  otherwise be kept alive, and called, by every change for as long as the replica lives. Not read afterwards. */
  close(): void {
    for (const stop of this.#stops.splice(0)) stop();
  }

  protected abstract rebuild(): void;
  protected abstract catchUp(): void;

  /** Brings the index up to date. A malformed row throws the decoder's error and leaves the index stale: the next
   *  read is a whole one and throws it again, exactly as a whole read does. */
  protected refresh(): void {
    try {
      if (this.stale) this.rebuild();
      else this.catchUp();
    } catch (e) {
      this.stale = true;
      throw e;
    }
  }
}
