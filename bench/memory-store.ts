// An in-memory stand-in for ovsdb-server, for benchmarks that measure what a reader of a replica does (not the
// server): it runs the operations sluice writes (insert with uuid-names, update, mutate of maps, delete, wait
// skipped) against a Replica, so the rows change as a monitor would deliver them (new frozen objects, the replica's
// versions and watchers moving). Conditions: `_uuid ==`, and ==, <, <=, >, >= on integer columns. Not a server: no
// constraints, no references counted, no garbage collection of unreferenced rows.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  type Condition,
  type DatabaseSchema,
  decodeAtom,
  decodeRow,
  decodeValue,
  type JsAtom,
  type JsRow,
  type JsValue,
  type Operation,
  setElements,
  type TableSchema,
  type Value,
} from '../src/ovsdb/protocol.ts';
import { Replica, type RowChange } from '../src/ovsdb/replica.ts';
import { sluiceSchemaPath } from '../src/ovsdb/server.ts';

function isTagged(v: unknown, tag: string): v is readonly [string, unknown] {
  return Array.isArray(v) && v.length === 2 && v[0] === tag;
}

/** `v` with every named-uuid replaced by the UUID this transaction gave it. */
function resolve(v: unknown, named: ReadonlyMap<string, string>): unknown {
  if (isTagged(v, 'named-uuid')) {
    const u = named.get(v[1] as string);
    if (u === undefined) throw new Error(`unknown named-uuid ${String(v[1])}`);
    return ['uuid', u];
  }
  if (Array.isArray(v)) return v.map((x) => resolve(x, named));
  if (typeof v === 'object' && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x, named)]));
  return v;
}

function matches(row: JsRow, where: readonly Condition[], table: TableSchema): boolean {
  for (const c of where) {
    if (typeof c === 'boolean') {
      if (!c) return false;
      continue;
    }
    const [column, fn, raw] = c;
    const want =
      column === '_uuid'
        ? (raw as readonly [string, string])[1]
        : decodeValue(raw, table.columns[column]!.type);
    const have = row[column];
    if (typeof want !== 'number' && typeof want !== 'string' && typeof want !== 'boolean')
      throw new Error(`memory store: condition on ${column} not supported`);
    const h = have as JsAtom;
    const ok =
      fn === '=='
        ? h === want
        : fn === '<'
          ? h < want
          : fn === '<='
            ? h <= want
            : fn === '>'
              ? h > want
              : h >= want;
    if (fn === '!=' || fn === 'includes' || fn === 'excludes')
      throw new Error(`memory store: condition ${fn} not supported`);
    if (!ok) return false;
  }
  return true;
}

function mutateMap(cur: JsValue, mutator: string, arg: JsValue): JsValue {
  const m = new Map(cur as ReadonlyMap<JsAtom, JsAtom>);
  if (mutator === 'insert') {
    for (const [k, v] of arg as ReadonlyMap<JsAtom, JsAtom>) if (!m.has(k)) m.set(k, v);
  } else if (mutator === 'delete') {
    const keys = arg instanceof Map ? [...arg.keys()] : (arg as readonly JsAtom[]);
    for (const k of keys) m.delete(k);
  } else throw new Error(`memory store: mutator ${mutator} not supported`);
  return m;
}

export class MemoryStore {
  readonly replica = new Replica();
  readonly #schema: DatabaseSchema;

  constructor(schema: DatabaseSchema = JSON.parse(readFileSync(sluiceSchemaPath(), 'utf8'))) {
    this.#schema = schema;
  }

  #table(name: string): TableSchema {
    const t = this.#schema.tables[name];
    if (t === undefined) throw new Error(`memory store: no table ${name}`);
    return t;
  }

  /** Runs `ops` as one transaction and applies its changes to the replica at once (as one monitor update). */
  transact(ops: readonly Operation[]): void {
    const named = new Map<string, string>();
    for (const op of ops) if (op.op === 'insert' && op['uuid-name']) named.set(op['uuid-name'], randomUUID());
    // Rows as this transaction leaves them (later operations see earlier ones).
    const pending = new Map<string, Map<string, JsRow | undefined>>();
    const rowsOf = (table: string): [string, JsRow][] => {
      const out = new Map(this.replica.table(table));
      for (const [u, row] of pending.get(table) ?? []) {
        if (row === undefined) out.delete(u);
        else out.set(u, row);
      }
      return [...out];
    };
    const put = (table: string, u: string, row: JsRow | undefined) => {
      const t = pending.get(table) ?? new Map<string, JsRow | undefined>();
      t.set(u, row);
      pending.set(table, t);
    };
    for (const op of ops) {
      if (op.op === 'wait' || op.op === 'assert' || op.op === 'comment') continue;
      if (op.op === 'insert') {
        const t = this.#table(op.table);
        const u = op['uuid-name'] ? named.get(op['uuid-name'])! : randomUUID();
        const row = decodeRow(t, resolve(op.row, named) as Record<string, Value>, true);
        put(op.table, u, Object.freeze({ ...row, _uuid: u }));
        continue;
      }
      if (op.op === 'update' || op.op === 'mutate' || op.op === 'delete') {
        const t = this.#table(op.table);
        for (const [u, row] of rowsOf(op.table)) {
          if (!matches(row, op.where, t)) continue;
          if (op.op === 'delete') {
            put(op.table, u, undefined);
            continue;
          }
          const next: Record<string, JsValue> = { ...row };
          if (op.op === 'update') {
            const cols = decodeRow(t, resolve(op.row, named) as Record<string, Value>);
            Object.assign(next, cols);
          } else {
            for (const [column, mutator, raw] of op.mutations) {
              const v = resolve(raw, named) as Value;
              // A map's `delete` takes a set of keys or a map.
              const arg = isTagged(v, 'map')
                ? decodeValue(v, t.columns[column]!.type)
                : setElements(v).map(decodeAtom);
              next[column] = mutateMap(next[column], mutator, arg);
            }
          }
          put(op.table, u, Object.freeze(next));
        }
        continue;
      }
      throw new Error(`memory store: operation ${op.op} not supported`);
    }
    const changes: RowChange[] = [];
    for (const [table, m] of pending)
      for (const [u, row] of m) changes.push({ table, uuid: u, old: this.replica.get(table, u), new: row });
    this.replica.apply(changes);
  }
}
