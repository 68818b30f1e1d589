// Typed RFC 7047 operations on the Sluice tables: callers name a table definition (tables.ts) and give typed
// values; the columns are encoded by their declared types, so no caller writes the raw notation. Also the one test
// for "a concurrent writer got there first" (isConflict). Pure: no I/O; callers run the ops with client.transact.

import { OvsdbError } from '../../ovsdb/errors.ts';
import type {
  Condition,
  ConditionFunction,
  Delete,
  Insert,
  JsValue,
  Mutate,
  Mutation,
  Update,
  Value,
  Wait,
} from '../../ovsdb/protocol.ts';
import { encodeValue, uuid } from '../../ovsdb/protocol.ts';
import { type ColumnDef, type Columns, columnDef, encodeColumns, type TableDef } from './columns.ts';

type Any = { readonly _uuid: string };
/** Columns of R whose value is a string map. */
type MapColumn<R> = {
  [K in keyof Columns<R>]: R[K] extends ReadonlyMap<string, string> ? K : never;
}[keyof Columns<R>];
/** Columns of R whose value is a set (an array). */
type SetColumn<R> = {
  [K in keyof Columns<R>]: R[K] extends readonly unknown[] ? K : never;
}[keyof Columns<R>];
/** Columns of R whose value is a number. */
type NumberColumn<R> = { [K in keyof Columns<R>]: R[K] extends number ? K : never }[keyof Columns<R>];

/** The row with UUID `id`. */
export const byUuid = (id: string): Condition[] => [['_uuid', '==', uuid(id)]];

/** `[column, fn, value]` with the value encoded by the column's type (a set column compares with a set). */
export function where<R extends Any, K extends keyof Columns<R> & string>(
  t: TableDef<R>,
  column: K,
  fn: ConditionFunction,
  value: R[K],
): Condition {
  const def = columnDef(t, column) as ColumnDef<R[K]>;
  return [column, fn, encodeValue(def.encode(value), def.type)];
}

/** `entries` as a value of map column `column`. */
function mapValue<R extends Any>(
  t: TableDef<R>,
  column: string,
  entries: Readonly<Record<string, string>>,
): Value {
  return encodeValue(new Map(Object.entries(entries)), columnDef(t, column).type);
}

/** Map column `column` includes every pair of `entries` (e.g. Global.options has gateway_generation = 7). */
export function mapIncludes<R extends Any>(
  t: TableDef<R>,
  column: MapColumn<R> & string,
  entries: Readonly<Record<string, string>>,
): Condition {
  return [column, 'includes', mapValue(t, column, entries)];
}

export function insert<R extends Any>(t: TableDef<R>, row: Partial<Columns<R>>, uuidName?: string): Insert {
  return {
    op: 'insert',
    table: t.name,
    row: encodeColumns(t, row),
    ...(uuidName === undefined ? {} : { 'uuid-name': uuidName }),
  };
}

export function update<R extends Any>(
  t: TableDef<R>,
  where: readonly Condition[],
  row: Partial<Columns<R>>,
): Update {
  return { op: 'update', table: t.name, where, row: encodeColumns(t, row) };
}

export function mutate<R extends Any>(
  t: TableDef<R>,
  where: readonly Condition[],
  mutations: readonly Mutation[],
): Mutate {
  return { op: 'mutate', table: t.name, where, mutations };
}

export function remove<R extends Any>(t: TableDef<R>, where: readonly Condition[]): Delete {
  return { op: 'delete', table: t.name, where };
}

/** Fails the transaction ("timed out") unless the rows `where` selects have exactly `columns` (one row expected). */
export function waitUnchanged<R extends Any>(
  t: TableDef<R>,
  where: readonly Condition[],
  columns: Partial<Columns<R>>,
): Wait {
  return {
    op: 'wait',
    timeout: 0,
    table: t.name,
    where,
    columns: Object.keys(columns),
    until: '==',
    rows: [encodeColumns(t, columns)],
  };
}

/** Fails the transaction ("timed out") if `where` selects any row. */
export function waitNone<R extends Any>(t: TableDef<R>, where: readonly Condition[]): Wait {
  return { op: 'wait', timeout: 0, table: t.name, where, columns: [], until: '==', rows: [] };
}

/** Fails the transaction ("timed out") unless `where` selects at least one row. */
export function waitExists<R extends Any>(t: TableDef<R>, where: readonly Condition[]): Wait {
  return { op: 'wait', timeout: 0, table: t.name, where, columns: [], until: '!=', rows: [] };
}

// Mutations (RFC 7047 5.1).

/** Sets keys of a map column: delete then insert, because a map "insert" does not overwrite an existing key. */
export function mapPut<R extends Any>(
  t: TableDef<R>,
  column: MapColumn<R> & string,
  entries: Readonly<Record<string, string>>,
): Mutation[] {
  return [mapDelete(t, column, Object.keys(entries)), mapInsert(t, column, entries)];
}

/** Adds pairs to a map column (a key already there keeps its old value: see mapPut). */
export function mapInsert<R extends Any>(
  t: TableDef<R>,
  column: MapColumn<R> & string,
  entries: Readonly<Record<string, string>>,
): Mutation {
  return [column, 'insert', mapValue(t, column, entries)];
}

/** Deletes keys (whatever their values) from a map column. */
export function mapDelete<R extends Any>(
  t: TableDef<R>,
  column: MapColumn<R> & string,
  keys: readonly string[],
): Mutation {
  columnDef(t, column);
  return [column, 'delete', ['set', [...keys]]];
}

export function setInsert<R extends Any, K extends SetColumn<R> & string>(
  t: TableDef<R>,
  column: K,
  values: R[K],
): Mutation {
  return [column, 'insert', setValue(t, column, values)];
}

export function setDelete<R extends Any, K extends SetColumn<R> & string>(
  t: TableDef<R>,
  column: K,
  values: R[K],
): Mutation {
  return [column, 'delete', setValue(t, column, values)];
}

function setValue<R extends Any>(t: TableDef<R>, column: string, values: unknown): Value {
  return encodeValue(values as JsValue, { ...columnDef(t, column).type, min: 0 });
}

export function add<R extends Any>(t: TableDef<R>, column: NumberColumn<R> & string, n: number): Mutation {
  columnDef(t, column);
  return [column, '+=', n];
}

// ---------------------------------------------------------------------------------------------------------

/**
 * A transaction that failed because another writer changed what it was guarded on: a `wait` that no longer held
 * ("timed out") or an index that a concurrent insert took first ("constraint violation"). Redo it on a fresh
 * replica. Any other failure (a lost connection, a deadline, a bad value) is not a conflict.
 */
export function isConflict(e: unknown): boolean {
  return (
    e instanceof OvsdbError &&
    e.code === 'SLUICE_E_OVSDB_TRANSACTION' &&
    (e.ovsdbError === 'timed out' || e.ovsdbError === 'constraint violation')
  );
}
