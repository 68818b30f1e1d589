// RFC 7047 (The Open vSwitch Database Management Protocol) types, named as in the RFC, and the pure helpers
// that turn JavaScript values into the RFC's JSON notation and back. No I/O.
//
// Section numbers below refer to RFC 7047; "ovsdb-server(7)" marks Open vSwitch's documented extensions
// (monitor_cond, update2, boolean conditions, result objects for wait/commit/comment).

// ---------------------------------------------------------------------------------------------------------
// 5.1 Notation: atoms, sets, maps, UUIDs

/** `["uuid", <string>]`: "a 2-element JSON array that represents a UUID" (5.1). */
export type Uuid = readonly ['uuid', string];

/**
 * `["named-uuid", <id>]`: "a 2-element JSON array that represents the UUID of a row inserted in an "insert"
 * operation within the same transaction" (5.1). The <id> is the "uuid-name" of that insert.
 */
export type NamedUuid = readonly ['named-uuid', string];

/** "<atom>: A JSON value that represents a scalar value for a column" (5.1): string, number, boolean, uuid. */
export type Atom = string | number | boolean | Uuid | NamedUuid;

/**
 * `["set", [<atom>*]]`. "A <set> may have any number of <atom> elements ... A set that contains exactly one
 * element may be represented by that atom alone" (5.1), so a bare atom is also a valid set on the wire.
 */
export type Set = readonly ['set', readonly Atom[]];

/** `["map", [[<atom>, <atom>]*]]`: "a 2-element JSON array that represents a database map value" (5.1). */
export type Map = readonly ['map', readonly (readonly [Atom, Atom])[]];

/** "<value>: A JSON value that represents the value of a column in a table row, one of <atom>, <set>, or <map>". */
export type Value = Atom | Set | Map;

/** "<row>: A JSON object that describes a table row or a subset of a table row. Each member is the name of a column". */
export type Row = { readonly [column: string]: Value };

/** "<error>: A JSON object with the following members: "error": <string> required, "details": <string> optional" (3.1). */
export interface ErrorObject {
  readonly error: string;
  readonly details?: string;
  /** ovsdb-server(7) 3.1: "syntax error or unknown column" may carry the JSON it could not parse. */
  readonly syntax?: string;
}

// ---------------------------------------------------------------------------------------------------------
// 3.2 Schema format

export type AtomicType = 'integer' | 'real' | 'boolean' | 'string' | 'uuid';

export interface BaseTypeObject {
  readonly type: AtomicType;
  readonly enum?: Value;
  readonly minInteger?: number;
  readonly maxInteger?: number;
  readonly minReal?: number;
  readonly maxReal?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly refTable?: string;
  readonly refType?: 'strong' | 'weak';
}

/** "<base-type>": an <atomic-type> or an object with "type" and constraints (3.2). */
export type BaseType = AtomicType | BaseTypeObject;

export interface TypeObject {
  readonly key: BaseType;
  readonly value?: BaseType;
  /** Default 1. */
  readonly min?: number;
  /** Default 1; `"unlimited"` allowed. */
  readonly max?: number | 'unlimited';
}

/** "<type>": an <atomic-type> or an object with "key", optional "value", "min", "max" (3.2). */
export type Type = AtomicType | TypeObject;

export interface ColumnSchema {
  readonly type: Type;
  readonly ephemeral?: boolean;
  readonly mutable?: boolean;
}

export interface TableSchema {
  readonly columns: { readonly [name: string]: ColumnSchema };
  readonly maxRows?: number;
  readonly isRoot?: boolean;
  readonly indexes?: readonly (readonly string[])[];
}

export interface DatabaseSchema {
  readonly name: string;
  readonly version: string;
  readonly cksum?: string;
  readonly tables: { readonly [name: string]: TableSchema };
}

// ---------------------------------------------------------------------------------------------------------
// 5.1 Conditions and mutations

/** "<function>": "<", "<=", "==", "!=", ">=", ">", "includes", or "excludes" (5.1). */
export type ConditionFunction = '<' | '<=' | '==' | '!=' | '>=' | '>' | 'includes' | 'excludes';

/**
 * "<condition>: A 3-element JSON array of the form [<column>, <function>, <value>]" (5.1).
 * ovsdb-server(7) 5.1: "A condition can be either a 3-element JSON array as described in the RFC or a boolean value."
 */
export type Condition = readonly [string, ConditionFunction, Value] | boolean;

/** "<mutator>": "+=", "-=", "*=", "/=", "%=", "insert", "delete" (5.1). */
export type Mutator = '+=' | '-=' | '*=' | '/=' | '%=' | 'insert' | 'delete';

/** "<mutation>: A 3-element JSON array of the form [<column>, <mutator>, <value>]" (5.1). */
export type Mutation = readonly [string, Mutator, Value];

// ---------------------------------------------------------------------------------------------------------
// 5.2 Operations

export interface Insert {
  readonly op: 'insert';
  readonly table: string;
  readonly row: Row;
  /** "uuid-name": makes the new row's UUID available as ["named-uuid", <id>] later in the transaction (5.2.1). */
  readonly 'uuid-name'?: string;
  /** ovsdb-server(7) 5.2.1 (OVS 2.13+): the UUID for the new row. */
  readonly uuid?: string;
}

export interface Select {
  readonly op: 'select';
  readonly table: string;
  readonly where: readonly Condition[];
  readonly columns?: readonly string[];
}

export interface Update {
  readonly op: 'update';
  readonly table: string;
  readonly where: readonly Condition[];
  readonly row: Row;
}

export interface Mutate {
  readonly op: 'mutate';
  readonly table: string;
  readonly where: readonly Condition[];
  readonly mutations: readonly Mutation[];
}

export interface Delete {
  readonly op: 'delete';
  readonly table: string;
  readonly where: readonly Condition[];
}

/**
 * 5.2.6: "The "wait" object contains the following members: "timeout": <integer> optional, "table", "where",
 * "columns", "until": "==" or "!=", "rows": [<row>*]". "If "timeout" is 0 and the condition is not met,
 * the operation fails with "timed out" immediately.
 */
export interface Wait {
  readonly op: 'wait';
  readonly timeout?: number;
  readonly table: string;
  readonly where: readonly Condition[];
  readonly columns: readonly string[];
  readonly until: '==' | '!=';
  readonly rows: readonly Row[];
}

export interface Commit {
  readonly op: 'commit';
  readonly durable: boolean;
}

export interface Abort {
  readonly op: 'abort';
}

export interface Comment {
  readonly op: 'comment';
  readonly comment: string;
}

/** 5.2.10: "The assert operation allows a transaction to verify that the client holds a lock". */
export interface Assert {
  readonly op: 'assert';
  readonly lock: string;
}

export type Operation = Insert | Select | Update | Mutate | Delete | Wait | Commit | Abort | Comment | Assert;

/** Result objects (5.2). ovsdb-server(7): wait, commit and comment "yield a result object with no members". */
export interface InsertResult {
  readonly uuid: Uuid;
}
export interface SelectResult {
  readonly rows: readonly Row[];
}
export interface CountResult {
  readonly count: number;
}
export type OperationResult = InsertResult | SelectResult | CountResult | Record<string, never>;

// ---------------------------------------------------------------------------------------------------------
// 4.1.5 / 4.1.6 monitor and update; ovsdb-server(7) 4.1.12 / 4.1.14 monitor_cond and update2

export interface MonitorSelect {
  readonly initial?: boolean;
  readonly insert?: boolean;
  readonly delete?: boolean;
  readonly modify?: boolean;
}

export interface MonitorRequest {
  readonly columns?: readonly string[];
  readonly select?: MonitorSelect;
}

/** ovsdb-server(7) 4.1.12: a <monitor-request> with "where": [<condition>*]. */
export interface MonitorCondRequest extends MonitorRequest {
  readonly where?: readonly Condition[];
}

/** 4.1.6: "<row-update> is an object with the following members: "old": <row> and "new": <row>". */
export interface RowUpdate {
  readonly old?: Row;
  readonly new?: Row;
}
/** 4.1.6: "<table-update> is an object that maps from the row's UUID (as a 36-byte string) to a <row-update>". */
export type TableUpdate = { readonly [uuid: string]: RowUpdate };
export type TableUpdates = { readonly [table: string]: TableUpdate };

/** ovsdb-server(7) 4.1.14: "A <row-update2> is an object with one of the following members". */
export type RowUpdate2 =
  | { readonly initial: Row }
  | { readonly insert: Row }
  | { readonly delete: null }
  | { readonly modify: Row };
export type TableUpdate2 = { readonly [uuid: string]: RowUpdate2 };
export type TableUpdates2 = { readonly [table: string]: TableUpdate2 };

// ---------------------------------------------------------------------------------------------------------
// Builders and guards for the raw notation

export const uuid = (id: string): Uuid => ['uuid', id];
export const namedUuid = (id: string): NamedUuid => ['named-uuid', id];

/** 36-character UUID text, as in "["uuid", <string>] where <string> is a UUID in the format described in RFC 4122". */
export const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** "<id>: a JSON string that matches [a-zA-Z_][a-zA-Z0-9_]*" (3.1); named-uuids are <id>s. */
export const ID_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

export function isErrorObject(x: unknown): x is ErrorObject {
  return typeof x === 'object' && x !== null && typeof (x as { error?: unknown }).error === 'string';
}

function isTagged(v: unknown, tag: string): boolean {
  return Array.isArray(v) && v.length === 2 && v[0] === tag;
}

// ---------------------------------------------------------------------------------------------------------
// JavaScript <-> OVSDB values, driven by the column's <type>
//
// The JS side ("JsValue") is what agents, the planner and the CLI handle:
//   scalar column (min 1, max 1)      -> JsAtom
//   optional column (min 0, max 1)    -> JsAtom | undefined
//   set column (max > 1)              -> readonly JsAtom[]          (order as received; sets are unordered)
//   map column (has "value")          -> ReadonlyMap<JsAtom, JsAtom>
// JsAtom is string | number | boolean; a uuid atom is its 36-character text. On encode, a string for a
// uuid-typed atom is ["uuid", s] when it is UUID text and ["named-uuid", s] when it is an <id> (a row inserted
// earlier in the same transaction).

export type JsAtom = string | number | boolean;
export type JsValue = JsAtom | readonly JsAtom[] | ReadonlyMap<JsAtom, JsAtom> | undefined;
export type JsRow = { readonly [column: string]: JsValue };

export type ColumnKind = 'scalar' | 'optional' | 'set' | 'map';

interface NormalType {
  readonly key: BaseTypeObject;
  readonly value: BaseTypeObject | undefined;
  readonly min: number;
  readonly max: number;
}

function normalBase(b: BaseType): BaseTypeObject {
  return typeof b === 'string' ? { type: b } : b;
}

/** The <type> in its long form, "max": "unlimited" as Infinity. */
export function normalType(t: Type): NormalType {
  if (typeof t === 'string') return { key: { type: t }, value: undefined, min: 1, max: 1 };
  const max = t.max === undefined ? 1 : t.max === 'unlimited' ? Number.POSITIVE_INFINITY : t.max;
  return {
    key: normalBase(t.key),
    value: t.value === undefined ? undefined : normalBase(t.value),
    min: t.min ?? 1,
    max,
  };
}

export function columnKind(t: Type): ColumnKind {
  const n = normalType(t);
  if (n.value !== undefined) return 'map';
  if (n.min === 1 && n.max === 1) return 'scalar';
  if (n.max === 1) return 'optional';
  return 'set';
}

export class OvsdbValueError extends Error {
  override readonly name = 'OvsdbValueError';
}

export function encodeAtom(a: JsAtom, base: BaseTypeObject): Atom {
  switch (base.type) {
    case 'uuid':
      if (typeof a !== 'string')
        throw new OvsdbValueError(`expected a uuid string, got ${JSON.stringify(a)}`);
      if (UUID_RE.test(a)) return uuid(a.toLowerCase());
      if (ID_RE.test(a)) return namedUuid(a);
      throw new OvsdbValueError(`not a UUID nor a named-uuid <id>: ${JSON.stringify(a)}`);
    case 'integer':
      if (typeof a !== 'number' || !Number.isSafeInteger(a)) {
        throw new OvsdbValueError(`expected an integer, got ${JSON.stringify(a)}`);
      }
      return a;
    case 'real':
      if (typeof a !== 'number' || !Number.isFinite(a)) {
        throw new OvsdbValueError(`expected a real, got ${JSON.stringify(a)}`);
      }
      return a;
    case 'boolean':
      if (typeof a !== 'boolean') throw new OvsdbValueError(`expected a boolean, got ${JSON.stringify(a)}`);
      return a;
    case 'string':
      if (typeof a !== 'string') throw new OvsdbValueError(`expected a string, got ${JSON.stringify(a)}`);
      return a;
  }
}

export function decodeAtom(a: Atom): JsAtom {
  if (typeof a === 'string' || typeof a === 'number' || typeof a === 'boolean') return a;
  if (isTagged(a, 'uuid') || isTagged(a, 'named-uuid')) return a[1];
  throw new OvsdbValueError(`not an <atom>: ${JSON.stringify(a)}`);
}

/** The elements of a <set> on the wire: `["set", [...]]` or, for one element, the bare atom (5.1). */
export function setElements(v: Value): readonly Atom[] {
  if (isTagged(v, 'set')) return (v as Set)[1];
  if (isTagged(v, 'map')) throw new OvsdbValueError(`expected a <set> or <atom>, got a <map>`);
  return [v as Atom];
}

export function mapPairs(v: Value): readonly (readonly [Atom, Atom])[] {
  if (isTagged(v, 'map')) return (v as Map)[1];
  throw new OvsdbValueError(`expected a <map>, got ${JSON.stringify(v)}`);
}

/** Encodes a JS value for a column of type `t`. */
export function encodeValue(v: JsValue, t: Type): Value {
  const n = normalType(t);
  const kind = columnKind(t);
  if (kind === 'map') {
    if (!(v instanceof globalThis.Map)) throw new OvsdbValueError('expected a Map for a map column');
    const pairs: (readonly [Atom, Atom])[] = [];
    for (const [k, val] of v) pairs.push([encodeAtom(k, n.key), encodeAtom(val, n.value!)]);
    return ['map', pairs];
  }
  if (kind === 'scalar') {
    if (v === undefined || Array.isArray(v) || v instanceof globalThis.Map) {
      throw new OvsdbValueError('expected an atom for a scalar column');
    }
    return encodeAtom(v as JsAtom, n.key);
  }
  if (kind === 'optional' && !Array.isArray(v)) {
    if (v === undefined) return ['set', []];
    if (v instanceof globalThis.Map) throw new OvsdbValueError('expected an atom or undefined');
    return ['set', [encodeAtom(v as JsAtom, n.key)]];
  }
  if (!Array.isArray(v)) throw new OvsdbValueError('expected an array for a set column');
  return ['set', (v as readonly JsAtom[]).map((a) => encodeAtom(a, n.key))];
}

/** Decodes a column value received for a column of type `t` into its JS form (see above). */
export function decodeValue(v: Value, t: Type): JsValue {
  const kind = columnKind(t);
  if (kind === 'map') {
    const m = new globalThis.Map<JsAtom, JsAtom>();
    for (const [k, val] of mapPairs(v)) m.set(decodeAtom(k), decodeAtom(val));
    return m;
  }
  const elems = setElements(v).map(decodeAtom);
  if (kind === 'scalar') {
    if (elems.length !== 1) throw new OvsdbValueError(`scalar column holds ${elems.length} values`);
    return elems[0];
  }
  if (kind === 'optional') {
    if (elems.length > 1) throw new OvsdbValueError(`optional column holds ${elems.length} values`);
    return elems[0];
  }
  return elems;
}

/** 3.2 / ovsdb(7): the default of an atomic type: 0, 0.0, false, "", or the all-zero UUID. */
export function defaultAtom(type: AtomicType): JsAtom {
  switch (type) {
    case 'integer':
    case 'real':
      return 0;
    case 'boolean':
      return false;
    case 'string':
      return '';
    case 'uuid':
      return ZERO_UUID;
  }
}

/** The default value of a column: its atom's default when scalar, otherwise empty. */
export function defaultValue(t: Type): JsValue {
  const n = normalType(t);
  switch (columnKind(t)) {
    case 'scalar':
      // As ovsdb-server: the atomic type's default even when an "enum" excludes it (such a column has to be
      // given on insert).
      return defaultAtom(n.key.type);
    case 'optional':
      return undefined;
    case 'set':
      return [];
    case 'map':
      return new globalThis.Map();
  }
}

/** A column's schema; `_uuid` and `_version` are uuid columns of every table (3.2). */
export function columnOf(table: TableSchema, column: string): ColumnSchema {
  if (column === '_uuid' || column === '_version') return { type: 'uuid' };
  const c = table.columns[column];
  if (c === undefined) throw new OvsdbValueError(`unknown column ${column}`);
  return c;
}

/** Encodes the given columns of a JS row; columns whose value is `undefined` in a scalar column are rejected. */
export function encodeRow(table: TableSchema, row: JsRow): Row {
  const out: { [c: string]: Value } = {};
  for (const [col, v] of Object.entries(row)) {
    try {
      out[col] = encodeValue(v, columnOf(table, col).type);
    } catch (e) {
      if (e instanceof OvsdbValueError) throw new OvsdbValueError(`column ${col}: ${e.message}`);
      throw e;
    }
  }
  return out;
}

/**
 * Decodes a received row. `_uuid` and `_version` (3.2: "every table has ... "_uuid" ... "_version"") decode to
 * their UUID text. With `fillDefaults`, columns the server omitted get their default value: update2 and
 * ovsdb-server's monitor "omit columns whose values equal the default value of the column type".
 */
export function decodeRow(table: TableSchema, row: Row, fillDefaults = false): JsRow {
  const out: { [c: string]: JsValue } = {};
  if (fillDefaults) {
    for (const [col, c] of Object.entries(table.columns)) out[col] = defaultValue(c.type);
  }
  for (const [col, v] of Object.entries(row)) out[col] = decodeValue(v, columnOf(table, col).type);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Applying an update2 "modify" diff (ovsdb-server(7) 4.1.14)

function atomKey(a: JsAtom): string {
  return typeof a === 'string' ? `s${a}` : typeof a === 'number' ? `n${a}` : `b${a}`;
}

/**
 * Applies one column's update2 difference to its old JS value:
 * "For columns with single value, the difference is the value of the new column. The difference between two
 * sets are all elements that only belong to one of the sets. The difference between two maps are all key-value
 * pairs whose keys appears in only one of the maps, plus the key-value pairs whose keys appear in both maps but
 * with different values. For the latter elements, <row> includes the value from the new column."
 */
export function applyColumnDiff(old: JsValue, diff: Value, t: Type): JsValue {
  const kind = columnKind(t);
  // "Single value" covers optional (min 0, max 1) columns too: ovsdb-server 3.1 sends the new value for them
  // (checked against a real server in test/e2e/ovsdb-client.test.ts), e.g. {"modify": {"error": ["set", []]}}.
  if (kind === 'scalar' || kind === 'optional') return decodeValue(diff, t);
  if (kind === 'map') {
    const m = new globalThis.Map<JsAtom, JsAtom>(old as ReadonlyMap<JsAtom, JsAtom>);
    for (const [k, v] of mapPairs(diff)) {
      const key = decodeAtom(k);
      const val = decodeAtom(v);
      if (m.has(key) && m.get(key) === val) m.delete(key);
      else m.set(key, val);
    }
    return m;
  }
  // Sets (max > 1): symmetric difference.
  const before = (old ?? []) as readonly JsAtom[];
  const toggled = new globalThis.Map<string, JsAtom>();
  for (const a of setElements(diff).map(decodeAtom)) toggled.set(atomKey(a), a);
  const after: JsAtom[] = [];
  for (const a of before) {
    if (toggled.has(atomKey(a))) toggled.delete(atomKey(a));
    else after.push(a);
  }
  after.push(...toggled.values());
  return after;
}

// ---------------------------------------------------------------------------------------------------------
// Condition and mutation builders over JS values (typed by the table schema)

/** `[column, fn, value]` with the value encoded for the column's type (`_uuid` compares as a uuid). */
export function condition(
  table: TableSchema,
  column: string,
  fn: ConditionFunction,
  value: JsValue,
): Condition {
  const t = columnOf(table, column).type;
  // "includes"/"excludes" and ==/!= on set columns take a set; a scalar comparison takes the atom.
  return [column, fn, encodeValue(value, t)];
}

export function mutation(table: TableSchema, column: string, mutator: Mutator, value: JsValue): Mutation {
  const t = columnOf(table, column).type;
  const n = normalType(t);
  // 5.1: for "+=" etc. "<value> must be ... the same type as the column's key type" (an atom); for "insert"
  // and "delete" on a set or map, "<value> must be a <set> or <map> of the column's type" (map delete may
  // also take a set of keys).
  if (mutator === 'insert' || mutator === 'delete') {
    if (columnKind(t) === 'map' && Array.isArray(value)) {
      return [column, mutator, ['set', (value as JsAtom[]).map((a) => encodeAtom(a, n.key))]];
    }
    return [column, mutator, encodeValue(value, { key: n.key, value: n.value, min: 0, max: 'unlimited' })];
  }
  return [column, mutator, encodeAtom(value as JsAtom, n.key)];
}
