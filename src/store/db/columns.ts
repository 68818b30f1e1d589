// Column definitions of the Sluice database: for each column, the OVSDB type it is declared with in
// schema/sluice.ovsschema (checked against the file by test/unit/store-db-schema.test.ts) and how its JS value
// (src/ovsdb/protocol.ts JsValue, what a Replica holds) is checked into a typed value and back. Pure: no I/O.

import { OvsdbError } from '../../ovsdb/errors.ts';
import type { JsAtom, JsRow, JsValue, Row } from '../../ovsdb/protocol.ts';
import { encodeValue, OvsdbValueError } from '../../ovsdb/protocol.ts';

type Atomic = 'integer' | 'real' | 'boolean' | 'string' | 'uuid';

/** One column: its declared OVSDB type, a decoder that rejects what the type does not allow, and an encoder. */
export interface ColumnDef<T> {
  /** As in the schema file (numeric ranges left out: ovsdb-server enforces them, readers need not). */
  readonly type: {
    readonly key: Atomic;
    readonly value?: Atomic;
    readonly min: 0 | 1;
    readonly max: 1 | 'unlimited';
    readonly enum?: readonly string[];
    readonly refTable?: string;
  };
  /** Throws an Error saying what is wrong (the table decoder adds table, column and row). */
  decode(v: JsValue): T;
  encode(v: T): JsValue;
}

function show(v: JsValue): string {
  if (v instanceof Map) return `a map of ${v.size}`;
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

function atomOk(a: JsAtom, key: Atomic): boolean {
  switch (key) {
    case 'integer':
      return typeof a === 'number' && Number.isSafeInteger(a);
    case 'real':
      return typeof a === 'number' && Number.isFinite(a);
    case 'boolean':
      return typeof a === 'boolean';
    case 'string':
    case 'uuid':
      return typeof a === 'string';
  }
}

const WORD: Record<Atomic, string> = {
  integer: 'an integer',
  real: 'a number',
  boolean: 'a boolean',
  string: 'a string',
  uuid: 'a uuid',
};

function scalar<T extends JsAtom>(key: Atomic, enumValues?: readonly T[]): ColumnDef<T> {
  return {
    type: {
      key,
      min: 1,
      max: 1,
      ...(enumValues === undefined ? {} : { enum: enumValues as readonly string[] }),
    },
    decode(v) {
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
        throw new Error(`expected ${WORD[key]}, got ${show(v)}`);
      if (!atomOk(v, key)) throw new Error(`expected ${WORD[key]}, got ${show(v)}`);
      if (enumValues !== undefined && !enumValues.includes(v as T))
        throw new Error(`expected one of ${enumValues.join(', ')}, got ${show(v)}`);
      return v as T;
    },
    encode: (v) => v,
  };
}

function optional<T extends JsAtom>(key: Atomic, refTable?: string): ColumnDef<T | undefined> {
  return {
    type: { key, min: 0, max: 1, ...(refTable === undefined ? {} : { refTable }) },
    decode(v) {
      if (v === undefined) return undefined;
      if (Array.isArray(v) || v instanceof Map || !atomOk(v as JsAtom, key))
        throw new Error(`expected ${WORD[key]} or nothing, got ${show(v)}`);
      return v as T;
    },
    encode: (v) => v,
  };
}

function set<T extends JsAtom>(key: Atomic, min: 0 | 1, refTable?: string): ColumnDef<readonly T[]> {
  return {
    type: { key, min, max: 'unlimited', ...(refTable === undefined ? {} : { refTable }) },
    decode(v) {
      if (!Array.isArray(v)) throw new Error(`expected a set of ${key}, got ${show(v)}`);
      const bad = (v as readonly JsAtom[]).find((a) => !atomOk(a, key));
      if (bad !== undefined) throw new Error(`expected a set of ${key}, it holds ${show(bad)}`);
      return v as readonly T[];
    },
    encode: (v) => v,
  };
}

/** The string -> string maps (`external_ids`, `options`). */
const stringMap: ColumnDef<ReadonlyMap<string, string>> = {
  type: { key: 'string', value: 'string', min: 0, max: 'unlimited' },
  decode(v) {
    if (!(v instanceof Map)) throw new Error(`expected a map, got ${show(v)}`);
    for (const [k, val] of v)
      if (typeof k !== 'string' || typeof val !== 'string')
        throw new Error(`expected string keys and values, got ${show(k)} -> ${show(val)}`);
    return v as ReadonlyMap<string, string>;
  },
  encode: (v) => v,
};

/** string -> row references (RBAC_Role.permissions). */
function refMap(_refTable: string): ColumnDef<ReadonlyMap<string, string>> {
  // ColumnDef.type.refTable is the key's; a value's referenced table is the schema file's business.
  return {
    type: { key: 'string', value: 'uuid', min: 0, max: 'unlimited' },
    decode(v) {
      if (!(v instanceof Map)) throw new Error(`expected a map, got ${show(v)}`);
      for (const [k, val] of v)
        if (typeof k !== 'string' || typeof val !== 'string')
          throw new Error(`expected string keys and uuid values, got ${show(k)} -> ${show(val)}`);
      return v as ReadonlyMap<string, string>;
    },
    encode: (v) => v,
  };
}

/** The column kinds the Sluice schema uses. */
export const col = {
  integer: scalar<number>('integer'),
  real: scalar<number>('real'),
  string: scalar<string>('string'),
  oneOf: <T extends string>(...values: T[]): ColumnDef<T> => scalar<T>('string', values),
  optionalInteger: optional<number>('integer'),
  optionalString: optional<string>('string'),
  optionalBoolean: optional<boolean>('boolean'),
  /** A reference to exactly one row of `table` (its UUID text). */
  ref: (table: string): ColumnDef<string> => {
    const c = scalar<string>('uuid');
    return { ...c, type: { ...c.type, refTable: table } };
  },
  /** A reference to at most one row of `table` (its UUID text). */
  optionalRef: (table: string) => optional<string>('uuid', table),
  /** A set of integers with at least `min` elements. */
  integerSet: (min: 0 | 1) => set<number>('integer', min),
  /** References to rows of `table` (their UUID texts). */
  refSet: (table: string) => set<string>('uuid', 0, table),
  stringMap,
  boolean: scalar<boolean>('boolean'),
  /** A set of strings (RBAC_Permission.authorization, update). */
  stringSet: set<string>('string', 0),
  /** string -> references to rows of `table`. */
  refMap,
};

// ---------------------------------------------------------------------------------------------------------
// Tables

/** A typed row: every column, plus `_uuid`. */
export type Columns<R> = Omit<R, '_uuid'>;

export interface TableDef<R extends { readonly _uuid: string }> {
  readonly name: string;
  readonly columns: { readonly [K in keyof Columns<R>]-?: ColumnDef<R[K]> };
}

/** Decoded rows by the replica's (frozen, replaced on change) row object: each row is checked once. */
const decoded = new WeakMap<JsRow, unknown>();

function valueError(t: { name: string }, row: JsRow, column: string, message: string): OvsdbError {
  const id = typeof row._uuid === 'string' ? row._uuid : '(no _uuid)';
  return new OvsdbError('SLUICE_E_OVSDB_VALUE', `Sluice ${t.name} row ${id}: column ${column}: ${message}`);
}

function decodeColumn<R extends { readonly _uuid: string }>(
  t: TableDef<R>,
  row: JsRow,
  column: string,
): unknown {
  const def = (t.columns as Record<string, ColumnDef<unknown>>)[column]!;
  if (!(column in row)) throw valueError(t, row, column, 'missing (is the column monitored?)');
  try {
    return def.decode(row[column]);
  } catch (e) {
    throw valueError(t, row, column, (e as Error).message);
  }
}

/**
 * A row of table `t` as the replica holds it, checked column by column: a missing column or a value its type does
 * not allow throws SLUICE_E_OVSDB_VALUE naming the table, the row's UUID and the column.
 */
export function decodeRow<R extends { readonly _uuid: string }>(t: TableDef<R>, row: JsRow): R {
  const hit = decoded.get(row);
  if (hit !== undefined) return hit as R;
  if (typeof row._uuid !== 'string')
    throw valueError(t, row, '_uuid', `expected a uuid, got ${show(row._uuid)}`);
  const out: Record<string, unknown> = { _uuid: row._uuid };
  for (const column of Object.keys(t.columns)) out[column] = decodeColumn(t, row, column);
  const r = Object.freeze(out) as unknown as R;
  decoded.set(row, r);
  return r;
}

/** Only `columns` of a row (for monitors that ask for some columns, e.g. Plan heads without their pools). */
export function decodeColumns<R extends { readonly _uuid: string }, K extends keyof Columns<R>>(
  t: TableDef<R>,
  row: JsRow,
  columns: readonly K[],
): Pick<R, K | '_uuid'> {
  const out: Record<string, unknown> = { _uuid: row._uuid };
  for (const c of columns) out[c as string] = decodeColumn(t, row, c as string);
  return out as Pick<R, K | '_uuid'>;
}

/** Some columns of a row in RFC 7047 notation (for insert, update and wait). */
export function encodeColumns<R extends { readonly _uuid: string }>(
  t: TableDef<R>,
  values: Partial<Columns<R>>,
): Row {
  const out: Record<string, Row[string]> = {};
  for (const [column, v] of Object.entries(values)) {
    const def = (t.columns as Record<string, ColumnDef<unknown> | undefined>)[column];
    if (def === undefined)
      throw new OvsdbError('SLUICE_E_OVSDB_VALUE', `Sluice ${t.name} has no column ${column}`);
    try {
      out[column] = encodeValue(def.encode(v), def.type);
    } catch (e) {
      if (!(e instanceof OvsdbValueError)) throw e;
      throw new OvsdbError('SLUICE_E_OVSDB_VALUE', `Sluice ${t.name}: column ${column}: ${e.message}`);
    }
  }
  return out;
}

export function columnDef<R extends { readonly _uuid: string }>(
  t: TableDef<R>,
  column: string,
): ColumnDef<unknown> {
  const def = (t.columns as Record<string, ColumnDef<unknown> | undefined>)[column];
  if (def === undefined)
    throw new OvsdbError('SLUICE_E_OVSDB_VALUE', `Sluice ${t.name} has no column ${column}`);
  return def;
}
