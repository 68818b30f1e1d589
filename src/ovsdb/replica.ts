// An in-memory replica of monitored tables (table -> row UUID -> row), kept from monitor updates. Agents read
// their desired state from it. Rows are frozen JS rows (protocol.ts JsRow) that include `_uuid`. No I/O.

import type { JsAtom, JsRow, JsValue } from './protocol.ts';

/** One row's change. Insert: `old` undefined. Delete: `new` undefined. Modify: both set. */
export interface RowChange {
  readonly table: string;
  readonly uuid: string;
  readonly old: JsRow | undefined;
  readonly new: JsRow | undefined;
}

export type ReplicaTables = ReadonlyMap<string, ReadonlyMap<string, JsRow>>;

function canonical(v: JsValue): unknown {
  if (v instanceof Map) {
    return ['m', [...v.entries()].map(([k, x]) => [canonical(k), canonical(x)]).sort(cmpJson)];
  }
  if (Array.isArray(v)) return ['s', (v as JsAtom[]).map((a) => canonical(a)).sort(cmpJson)];
  return v === undefined ? ['u'] : [typeof v, v];
}

function cmpJson(a: unknown, b: unknown): number {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Deep equality of JS column values, sets and maps compared regardless of element order. */
export function valuesEqual(a: JsValue, b: JsValue): boolean {
  if (a === b) return true;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

export function rowsEqual(a: JsRow, b: JsRow): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if (!valuesEqual(a[k], b[k])) return false;
  return true;
}

/** The changes that turn `before` into `after` (used to resync a monitor from a fresh snapshot). */
export function diffTables(before: ReplicaTables, after: ReplicaTables): RowChange[] {
  const out: RowChange[] = [];
  const tables = new Set([...before.keys(), ...after.keys()]);
  for (const table of [...tables].sort()) {
    const b = before.get(table) ?? new Map<string, JsRow>();
    const a = after.get(table) ?? new Map<string, JsRow>();
    for (const [uuid, row] of b) {
      const now = a.get(uuid);
      if (now === undefined) out.push({ table, uuid, old: row, new: undefined });
      else if (!rowsEqual(row, now)) out.push({ table, uuid, old: row, new: now });
    }
    for (const [uuid, row] of a) if (!b.has(uuid)) out.push({ table, uuid, old: undefined, new: row });
  }
  return out;
}

export class Replica {
  #tables = new Map<string, Map<string, JsRow>>();
  /** Changes applied per table: readers that derive something from a few tables redo it only when one moved. */
  #versions = new Map<string, number>();
  #replaced = 0;
  readonly #watchers = new Map<string, ((change: RowChange | undefined) => void)[]>();

  /** Calls `fn` with every change applied to `table` from now on, and with undefined when the whole content is
   *  replaced: a reader that keeps something derived from a large table follows the rows that changed instead of
   *  reading every row again. `fn` must not throw (it runs inside apply). Returns what stops it (a reader that
   *  lives shorter than the replica: one replaced by another). */
  watch(table: string, fn: (change: RowChange | undefined) => void): () => void {
    // A new list on every change: apply and replace iterate the list they started with, whatever a watcher does.
    this.#watchers.set(table, [...(this.#watchers.get(table) ?? []), fn]);
    return () => {
      const list = this.#watchers.get(table) ?? [];
      const i = list.indexOf(fn);
      if (i >= 0)
        this.#watchers.set(
          table,
          list.filter((_, j) => j !== i),
        );
    };
  }

  /** A number that changes whenever table `name` may have changed (apply touching it, or a replace). */
  version(name: string): string {
    return `${this.#replaced}.${this.#versions.get(name) ?? 0}`;
  }

  /** Tables this replica holds (every monitored table, even when empty). */
  get tables(): ReplicaTables {
    return this.#tables;
  }

  table(name: string): ReadonlyMap<string, JsRow> {
    return this.#tables.get(name) ?? new Map();
  }

  get(table: string, uuid: string): JsRow | undefined {
    return this.#tables.get(table)?.get(uuid);
  }

  rows(table: string): JsRow[] {
    return [...this.table(table).values()];
  }

  find(table: string, pred: (row: JsRow) => boolean): JsRow | undefined {
    for (const row of this.table(table).values()) if (pred(row)) return row;
    return undefined;
  }

  /** Applies changes in order. */
  apply(changes: readonly RowChange[]): void {
    for (const c of changes) {
      let t = this.#tables.get(c.table);
      if (t === undefined) {
        t = new Map();
        this.#tables.set(c.table, t);
      }
      this.#versions.set(c.table, (this.#versions.get(c.table) ?? 0) + 1);
      if (c.new === undefined) t.delete(c.uuid);
      else t.set(c.uuid, c.new);
      for (const fn of this.#watchers.get(c.table) ?? []) fn(c);
    }
  }

  /** Replaces the whole content (a fresh snapshot). */
  replace(tables: ReplicaTables): void {
    this.#tables = new Map([...tables].map(([name, rows]) => [name, new Map(rows)]));
    this.#replaced++;
    for (const list of this.#watchers.values()) for (const fn of list) fn(undefined);
  }

  /** Plain-object form, for tests and debugging: `{table: {uuid: row}}` with Maps as sorted entry lists. */
  toJSON(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const [name, rows] of [...this.#tables].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const t: Record<string, unknown> = {};
      for (const uuid of [...rows.keys()].sort()) {
        const row = rows.get(uuid)!;
        t[uuid] = Object.fromEntries(
          Object.keys(row)
            .sort()
            .map((k) => [k, canonical(row[k])]),
        );
      }
      out[name] = t;
    }
    return out;
  }
}

/**
 * Several replicas read as one (a client's monitors of two databases whose table names do not overlap): each table
 * is read from the first part that holds it. Read-only; `apply`/`replace` go to the parts (their monitors do that).
 * The parts are not read atomically: each is a consistent prefix of its own database's transactions.
 */
export class ReplicaUnion extends Replica {
  readonly parts: readonly Replica[];

  constructor(parts: readonly Replica[]) {
    super();
    this.parts = parts;
  }

  #part(table: string): { part: Replica; i: number } {
    for (const [i, part] of this.parts.entries()) if (part.tables.has(table)) return { part, i };
    return { part: this.parts[0]!, i: 0 };
  }

  override watch(table: string, fn: (change: RowChange | undefined) => void): () => void {
    // Every part: a table is watched before the snapshot that tells which part holds it.
    const stops = this.parts.map((part) => part.watch(table, fn));
    return () => {
      for (const stop of stops) stop();
    };
  }

  override version(name: string): string {
    const { part, i } = this.#part(name);
    return `${i}:${part.version(name)}`;
  }

  override get tables(): ReplicaTables {
    const out = new Map<string, ReadonlyMap<string, JsRow>>();
    for (const part of this.parts)
      for (const [name, rows] of part.tables) if (!out.has(name)) out.set(name, rows);
    return out;
  }

  override table(name: string): ReadonlyMap<string, JsRow> {
    return this.#part(name).part.table(name);
  }

  override get(table: string, uuid: string): JsRow | undefined {
    return this.#part(table).part.get(table, uuid);
  }

  override rows(table: string): JsRow[] {
    return this.#part(table).part.rows(table);
  }

  override find(table: string, pred: (row: JsRow) => boolean): JsRow | undefined {
    return this.#part(table).part.find(table, pred);
  }

  override toJSON(): Record<string, Record<string, unknown>> {
    return Object.assign({}, ...[...this.parts].reverse().map((p) => p.toJSON()));
  }

  override apply(_changes: readonly RowChange[]): void {
    throw new Error('ReplicaUnion is read-only: apply changes to its parts');
  }

  override replace(_tables: ReplicaTables): void {
    throw new Error('ReplicaUnion is read-only: replace its parts');
  }
}
