// The desired state (readDesiredState's result) kept from the replica's row changes instead of read from every row
// on every edit. At 10,000 VIPs x 20 a whole read decodes 10,000 Load_Balancer and 200,000 Backend rows (about a
// second on this project's machine) for an edit that changed one load balancer. Pure: no I/O.

import type { Replica, RowChange } from '../../ovsdb/replica.ts';
import {
  byName,
  type DesiredLbDoc,
  desiredLb,
  desiredNodes,
  desiredStateOf,
  readDesiredState,
  type StoredDesiredState,
} from './desired.ts';
import { get, rows, single } from './read.ts';
import { RowIndex } from './row-index.ts';
import { BackendTable, GlobalTable, LoadBalancerTable, NodeTable } from './tables.ts';

/** More changed rows than this between two reads: read everything again instead (bounds the pending set). */
const MAX_PENDING = 50_000;

interface Entry {
  readonly name: string;
  readonly doc: DesiredLbDoc;
  /** The Backend UUIDs the row names (what makes a Backend change this load balancer's). */
  readonly backends: readonly string[];
}

/**
 * The desired state of one replica, followed row by row (Replica.watch on Global, Node, Load_Balancer, Backend).
 * A read after an edit makes again only the load balancers whose row, or one of whose Backend rows, changed; the
 * others stay the very objects of the previous read (effectiveConfig reuses what it derived from them), and so does
 * `config` while only Global's other columns moved. The nodes are read again when a Node row changed (a small
 * table). A change it cannot follow (the content replaced after a reconnect, too many changes, a malformed row, two
 * load balancers with one name) makes the next read a whole one (readDesiredState's code), which also throws the
 * decoder's error for a malformed row as the whole read does.
 */
export class DesiredStateIndex extends RowIndex {
  readonly #replica: Replica;
  /** Load_Balancer UUID -> what was read from it. */
  readonly #lbs = new Map<string, Entry>();
  /** Backend UUID -> the load balancers naming it. */
  readonly #namedBy = new Map<string, Set<string>>();
  /** Load balancer UUIDs whose row or backends changed since the last read. */
  #dirty = new Set<string>();
  #nodesDirty = false;
  #globalDirty = false;
  #last: StoredDesiredState | undefined;

  constructor(replica: Replica) {
    super();
    this.#replica = replica;
    this.follow(replica, LoadBalancerTable.name, (c) => this.#note(c, () => this.#dirty.add(c!.uuid)));
    this.follow(replica, BackendTable.name, (c) =>
      this.#note(c, () => {
        for (const lb of this.#namedBy.get(c!.uuid) ?? []) this.#dirty.add(lb);
      }),
    );
    this.follow(replica, NodeTable.name, (c) => this.#note(c, () => (this.#nodesDirty = true)));
    this.follow(replica, GlobalTable.name, (c) => this.#note(c, () => (this.#globalDirty = true)));
  }

  /** The stored desired state, undefined without a Global row (nothing written yet). Read-only: the same object
   *  while nothing it is read from changed. */
  read(): StoredDesiredState | undefined {
    this.refresh();
    return single(this.#replica, GlobalTable) === undefined ? undefined : this.#last;
  }

  #note(c: RowChange | undefined, mark: () => void): void {
    if (this.stale) return;
    if (c === undefined || this.#dirty.size >= MAX_PENDING) {
      this.stale = true;
      return;
    }
    mark();
  }

  protected rebuild(): void {
    this.#lbs.clear();
    this.#namedBy.clear();
    this.#dirty.clear();
    this.stale = true;
    const r = this.#replica;
    const whole = readDesiredState(r);
    // The same documents, filed under their rows (readDesiredState decodes each row once more here: a whole read is
    // rare, after a start or a reconnect).
    const byLbName = new Map(whole.config.loadBalancers.map((lb) => [lb.name, lb]));
    for (const row of rows(r, LoadBalancerTable)) {
      const doc = byLbName.get(row.name)!;
      this.#file(row._uuid, { name: row.name, doc, backends: row.backends });
    }
    this.#last = whole;
    this.#nodesDirty = false;
    this.#globalDirty = false;
    this.stale = this.#lbs.size !== byLbName.size; // two rows with one name: never followed row by row
  }

  protected catchUp(): void {
    if (this.#dirty.size === 0 && !this.#nodesDirty && !this.#globalDirty) return;
    const r = this.#replica;
    const prev = this.#last!;
    let lbs = prev.config.loadBalancers;
    if (this.#dirty.size > 0) {
      const dirty = this.#dirty;
      this.#dirty = new Set();
      lbs = [...lbs];
      for (const uuid of dirty) {
        const old = this.#lbs.get(uuid);
        const row = get(r, LoadBalancerTable, uuid);
        if (old !== undefined) {
          this.#unfile(uuid, old);
          lbs.splice(at(lbs, old.name), 1);
        }
        if (row === undefined) continue;
        const doc = desiredLb(r, row);
        const i = at(lbs, row.name);
        if (lbs[i]?.name === row.name) {
          // Two load balancers with one name (the schema's index forbids it): leave the order to the whole read.
          this.rebuild();
          return;
        }
        lbs.splice(i, 0, doc);
        this.#file(uuid, { name: row.name, doc, backends: row.backends });
      }
    }
    const g = single(r, GlobalTable);
    const nodes = this.#nodesDirty ? desiredNodes(r) : prev.config.nodes;
    this.#nodesDirty = false;
    this.#globalDirty = false;
    const next = desiredStateOf(g, nodes, lbs);
    // Only Global's other columns (the planner's generation) moved: the previous objects.
    const sameConfig =
      lbs === prev.config.loadBalancers &&
      nodes === prev.config.nodes &&
      sameSettings(next.config, prev.config);
    if (sameConfig && next.desiredCfg === prev.desiredCfg) return;
    this.#last = sameConfig ? { desiredCfg: next.desiredCfg, config: prev.config } : next;
  }

  #file(uuid: string, e: Entry): void {
    this.#lbs.set(uuid, e);
    for (const b of e.backends) {
      const set = this.#namedBy.get(b) ?? new Set<string>();
      set.add(uuid);
      this.#namedBy.set(b, set);
    }
  }

  #unfile(uuid: string, e: Entry): void {
    this.#lbs.delete(uuid);
    for (const b of e.backends) {
      const set = this.#namedBy.get(b);
      set?.delete(uuid);
      if (set?.size === 0) this.#namedBy.delete(b);
    }
  }
}

/** Where `name` is, or goes, in a list sorted by name (byName's order). */
function at(lbs: readonly DesiredLbDoc[], name: string): number {
  let lo = 0;
  let hi = lbs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byName<{ name: string }>(lbs[mid], { name }) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

type Settings = StoredDesiredState['config'];

function sameSettings(a: Settings, b: Settings): boolean {
  return (
    a.hashMode === b.hashMode &&
    a.slotBits === b.slotBits &&
    a.drainWindowSeconds === b.drainWindowSeconds &&
    a.chainLength === b.chainLength
  );
}
