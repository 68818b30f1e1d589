// A Replica that never tells watchers about one table: an index built on Replica.watch that misses that table's
// changes (the negative controls of the row-following indexes' tests).

import { Replica, type RowChange } from '../../src/ovsdb/replica.ts';

export class DeafReplica extends Replica {
  readonly #deaf: string;
  constructor(deaf: string) {
    super();
    this.#deaf = deaf;
  }
  override watch(table: string, fn: (change: RowChange | undefined) => void): () => void {
    return table === this.#deaf ? () => {} : super.watch(table, fn);
  }
}
