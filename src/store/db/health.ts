// The backends the planner treats as unhealthy (Backend_Status folded per load balancer and backend: `down` or
// `gone`), kept from the replica's row changes instead of read from every row on every planner step. At 10,000 VIPs
// x 20 the table has 200,000 rows, and a host rewrites a row whenever its connection count changes, so a re-read per
// change cost the planner a walk of every row for a change that almost never touches health. Pure: no I/O.

import type { JsRow } from '../../ovsdb/protocol.ts';
import type { Replica, RowChange } from '../../ovsdb/replica.ts';
import { get, rows } from './read.ts';
import { RowIndex } from './row-index.ts';
import { type BackendStatusRow, BackendStatusTable, type Health } from './tables.ts';

/** `${lb} ${backendKey}`: how the planner names a backend's health. */
export function healthKey(row: Pick<BackendStatusRow, 'lb' | 'backend'>): string {
  return `${row.lb} ${row.backend}`;
}

/**
 * One backend's health from its rows in the replica's order (a backend can have rows from two hosts after it
 * moved): `down` if any row says so, else the last row's. The rule readStoreView has always applied.
 */
export function foldHealth(healths: Iterable<Health>): Health | undefined {
  let out: Health | undefined;
  for (const h of healths) if (out !== 'down') out = h;
  return out;
}

/** Only these change the plan (effectiveDoc): the others plan as the operator's state. */
const isUnhealthy = (h: Health | undefined): h is 'down' | 'gone' => h === 'down' || h === 'gone';

/** A changed row, as the watcher saw it; resolved against the replica when the health is next read. */
interface Pending {
  /** The row's key before the first change since the last read (undefined: the row was new). */
  readonly oldKey: string | undefined;
  /** The row was deleted at some point (a row inserted again goes last in the replica's order). */
  deleted: boolean;
}

/** More changed rows than this between two reads: read the table again instead (bounds the pending set). */
const MAX_PENDING = 50_000;

/**
 * The unhealthy backends of one replica, followed row by row (Replica.watch). Work per read is proportional to the
 * rows that changed since the last read; a change it cannot follow row by row (the table replaced after a
 * reconnect, a row moved to another backend, a malformed row) makes the next read walk the table once, which
 * also throws the decoder's error for a malformed row exactly as a full read does.
 */
export class BackendHealthIndex extends RowIndex {
  readonly #replica: Replica;
  /** Key -> the UUIDs of its rows, in the replica's order (one row almost always: a string). */
  readonly #rowsOf = new Map<string, string | string[]>();
  readonly #unhealthy = new Map<string, 'down' | 'gone'>();
  /** What unhealthy() returns: the same object until the unhealthy set changes. */
  #snapshot: ReadonlyMap<string, 'down' | 'gone'> | undefined;
  #pending = new Map<string, Pending>();

  constructor(replica: Replica) {
    super();
    this.#replica = replica;
    this.follow(replica, BackendStatusTable.name, (c) => this.#watch(c));
  }

  /** Backend key -> `down` or `gone`, for every unhealthy backend. Read-only: a new Map when the set changed. */
  unhealthy(): ReadonlyMap<string, 'down' | 'gone'> {
    this.refresh();
    this.#snapshot ??= new Map(this.#unhealthy);
    return this.#snapshot;
  }

  #watch(c: RowChange | undefined): void {
    if (this.stale) return;
    if (
      c === undefined ||
      this.#pending.size >= MAX_PENDING ||
      (c.old !== undefined && rawKey(c.old) === undefined)
    ) {
      this.stale = true;
      this.#pending.clear();
      return;
    }
    const seen = this.#pending.get(c.uuid);
    if (seen === undefined)
      this.#pending.set(c.uuid, { oldKey: rawKey(c.old), deleted: c.new === undefined });
    else if (c.new === undefined) seen.deleted = true;
    else if (c.old === undefined) {
      // Inserted again: it is last in the replica now, so it is resolved after the rows inserted before it.
      this.#pending.delete(c.uuid);
      this.#pending.set(c.uuid, seen);
    }
  }

  protected rebuild(): void {
    this.#rowsOf.clear();
    this.#unhealthy.clear();
    this.#snapshot = undefined;
    this.#pending.clear();
    this.stale = true;
    const health = new Map<string, Health>();
    for (const row of rows(this.#replica, BackendStatusTable)) {
      const k = healthKey(row);
      const ids = this.#rowsOf.get(k);
      this.#rowsOf.set(
        k,
        ids === undefined ? row._uuid : [...(typeof ids === 'string' ? [ids] : ids), row._uuid],
      );
      if (health.get(k) !== 'down') health.set(k, row.health);
    }
    for (const [k, h] of health) if (isUnhealthy(h)) this.#unhealthy.set(k, h);
    this.stale = false;
  }

  protected catchUp(): void {
    if (this.#pending.size === 0) return;
    const pending = this.#pending;
    this.#pending = new Map();
    const touched = new Set<string>();
    for (const [uuid, p] of pending) {
      const row = get(this.#replica, BackendStatusTable, uuid);
      const key = row === undefined ? undefined : healthKey(row);
      if (p.oldKey !== undefined && key !== undefined && p.oldKey !== key && !p.deleted) {
        // A row that now belongs to another backend keeps its place in the replica: read the table again.
        this.rebuild();
        return;
      }
      if (p.oldKey !== undefined && (p.deleted || key === undefined)) this.#drop(p.oldKey, uuid, touched);
      if (key !== undefined && (p.oldKey === undefined || p.deleted)) this.#append(key, uuid, touched);
      if (key !== undefined) touched.add(key);
    }
    for (const k of touched) this.#refold(k);
  }

  #drop(key: string, uuid: string, touched: Set<string>): void {
    const ids = this.#rowsOf.get(key);
    if (ids === uuid || ids === undefined) this.#rowsOf.delete(key);
    else if (typeof ids !== 'string') {
      const rest = ids.filter((x) => x !== uuid);
      this.#rowsOf.set(key, rest.length === 1 ? rest[0] : rest);
    }
    touched.add(key);
  }

  #append(key: string, uuid: string, touched: Set<string>): void {
    const ids = this.#rowsOf.get(key);
    this.#rowsOf.set(key, ids === undefined ? uuid : [...(typeof ids === 'string' ? [ids] : ids), uuid]);
    touched.add(key);
  }

  #refold(key: string): void {
    const ids = this.#rowsOf.get(key);
    const list = ids === undefined ? [] : typeof ids === 'string' ? [ids] : ids;
    const h = foldHealth(list.map((id) => get(this.#replica, BackendStatusTable, id)!.health));
    const was = this.#unhealthy.get(key);
    if (isUnhealthy(h)) {
      if (was === h) return;
      this.#unhealthy.set(key, h);
    } else if (was === undefined) return;
    else this.#unhealthy.delete(key);
    this.#snapshot = undefined;
  }
}

/** The key of a row as the replica holds it, without decoding (undefined unless both columns are strings: the read
 *  then finds the row's key through the decoder). */
function rawKey(row: JsRow | undefined): string | undefined {
  if (row === undefined) return undefined;
  const { lb, backend } = row;
  return typeof lb === 'string' && typeof backend === 'string' ? `${lb} ${backend}` : undefined;
}
