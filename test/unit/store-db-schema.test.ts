// The typed Sluice tables (src/store/db/tables.ts) against schema/sluice.ovsschema, both ways: every table and
// column of the schema file is defined in the module with the same OVSDB type (key/value atomic type, min, max,
// enum, referenced table), and the module defines nothing the file does not have. Also the row decoder's errors.
// Pure: reads the schema file only.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OvsdbError } from '../../src/ovsdb/errors.ts';
import type { DatabaseSchema, JsRow, Type } from '../../src/ovsdb/protocol.ts';
import { normalType } from '../../src/ovsdb/protocol.ts';
import type { ColumnDef } from '../../src/store/db/columns.ts';
import {
  DB_NAME,
  decodeRow,
  encodeColumns,
  NodeStatusTable,
  PlanTable,
  STATUS_DB_NAME,
  STATUS_TABLES,
  TABLES,
  type TableDef,
} from '../../src/store/db/index.ts';

const schemaFile = (name: string) =>
  JSON.parse(
    readFileSync(fileURLToPath(new URL(`../../schema/${name}`, import.meta.url)), 'utf8'),
  ) as DatabaseSchema;
const SCHEMA = schemaFile('sluice.ovsschema');
const STATUS_SCHEMA = schemaFile('sluice-status.ovsschema');

/** The parts of an OVSDB type the module declares, in one comparable form. */
function shape(t: Type | ColumnDef<unknown>['type']): string {
  const n = normalType(t as Type);
  const e = n.key.enum;
  const enumValues =
    e === undefined ? undefined : Array.isArray(e) && e[0] === 'set' ? [...e[1]].sort() : [e];
  const declared = t as ColumnDef<unknown>['type'];
  return JSON.stringify({
    key: n.key.type,
    value: n.value?.type,
    min: n.min,
    max: n.max === Number.POSITIVE_INFINITY ? 'unlimited' : n.max,
    enum: enumValues ?? (declared.enum === undefined ? undefined : [...declared.enum].sort()),
    refTable: n.key.refTable ?? declared.refTable,
  });
}

/** Every difference between a schema and table definitions, as sentences. */
function differences(schema: DatabaseSchema, tables: readonly TableDef<{ _uuid: string }>[]): string[] {
  const out: string[] = [];
  const defined = new Map(tables.map((t) => [t.name, t]));
  for (const [name, ts] of Object.entries(schema.tables)) {
    const def = defined.get(name);
    if (def === undefined) {
      out.push(`table ${name} is in the schema, not in src/store/db/tables.ts`);
      continue;
    }
    const cols = def.columns as Record<string, ColumnDef<unknown>>;
    for (const [c, cs] of Object.entries(ts.columns)) {
      if (cols[c] === undefined) out.push(`${name}.${c} is in the schema, not in the module`);
      else if (shape(cs.type) !== shape(cols[c].type))
        out.push(`${name}.${c}: schema ${shape(cs.type)}, module ${shape(cols[c].type)}`);
    }
    for (const c of Object.keys(cols))
      if (ts.columns[c] === undefined) out.push(`${name}.${c} is in the module, not in the schema`);
  }
  for (const name of defined.keys())
    if (schema.tables[name] === undefined) out.push(`table ${name} is in the module, not in the schema`);
  return out;
}

test('the module defines exactly the schema file: its name, tables, columns and column types', () => {
  assert.equal(DB_NAME, SCHEMA.name);
  assert.equal(TABLES.length, Object.keys(SCHEMA.tables).length);
  assert.deepEqual(differences(SCHEMA, TABLES as unknown as TableDef<{ _uuid: string }>[]), []);
});

test('the module defines exactly the status schema file (Sluice_Status), and RBAC tables in both', () => {
  assert.equal(STATUS_DB_NAME, STATUS_SCHEMA.name);
  assert.equal(STATUS_TABLES.length, Object.keys(STATUS_SCHEMA.tables).length);
  assert.deepEqual(differences(STATUS_SCHEMA, STATUS_TABLES as unknown as TableDef<{ _uuid: string }>[]), []);
  // ovsdb-server skips RBAC for a database without an RBAC_Role table (ovsdb/rbac.c: every write allowed): the
  // status database must carry its own, or any agent could write any node's rows there.
  for (const s of [SCHEMA, STATUS_SCHEMA]) assert.ok(s.tables.RBAC_Role && s.tables.RBAC_Permission, s.name);
});

test('the comparison fails for a column the module lacks, one the schema lacks, and a changed type', () => {
  const tables = { ...SCHEMA.tables };
  const nodeStatus = tables.Node_Status!;
  // A column added to the schema and not to the module.
  tables.Node_Status = {
    ...nodeStatus,
    columns: { ...nodeStatus.columns, added_later: { type: 'integer' } },
  };
  // A column the module defines and the schema dropped.
  const { error: _dropped, ...rest } = nodeStatus.columns;
  const dropped = { ...SCHEMA, tables: { ...SCHEMA.tables, Node_Status: { ...nodeStatus, columns: rest } } };
  // A type change (an optional column made mandatory).
  const plan = SCHEMA.tables.Plan!;
  const retyped = {
    ...SCHEMA,
    tables: {
      ...SCHEMA.tables,
      Plan: { ...plan, columns: { ...plan.columns, config: { type: 'uuid' as const } } },
    },
  };
  const all = TABLES as unknown as TableDef<{ _uuid: string }>[];
  assert.deepEqual(differences({ ...SCHEMA, tables }, all), [
    'Node_Status.added_later is in the schema, not in the module',
  ]);
  assert.deepEqual(differences(dropped, all), ['Node_Status.error is in the module, not in the schema']);
  assert.equal(differences(retyped, all).length, 1);
  assert.match(differences(retyped, all)[0]!, /^Plan\.config: schema .*"min":1.*module .*"min":0/);
  const { Plan_Config: _gone, ...fewer } = SCHEMA.tables;
  assert.deepEqual(differences({ ...SCHEMA, tables: fewer }, all), [
    'table Plan_Config is in the module, not in the schema',
  ]);
});

const goodStatus: JsRow = {
  _uuid: '0b0b0b0b-0000-4000-8000-000000000001',
  node: 'gw1',
  applied_generation: 3,
  applied_cfg: 2,
  applied_at: 1000,
  error: undefined,
  external_ids: new Map([['fenced', 'false']]),
};

test('decodeRow returns the typed row, and the same object for the same replica row', () => {
  const row = decodeRow(NodeStatusTable, goodStatus);
  assert.equal(row.applied_generation, 3);
  assert.equal(row.external_ids.get('fenced'), 'false');
  assert.equal(decodeRow(NodeStatusTable, goodStatus), row);
});

test('decodeRow names the table, row and column of a malformed row', () => {
  const cases: [JsRow, RegExp][] = [
    [
      { ...goodStatus, applied_generation: '3' },
      /Node_Status row 0b0b0b0b-.*: column applied_generation: expected an integer, got "3"/,
    ],
    [{ ...goodStatus, error: 7 }, /column error: expected a string or nothing, got 7/],
    [{ ...goodStatus, external_ids: ['x'] }, /column external_ids: expected a map/],
    [(({ applied_at: _a, ...r }) => r)(goodStatus), /column applied_at: missing/],
  ];
  for (const [row, re] of cases)
    assert.throws(
      () => decodeRow(NodeStatusTable, row),
      (e: unknown) => e instanceof OvsdbError && e.code === 'SLUICE_E_OVSDB_VALUE' && re.test(e.message),
    );
  assert.throws(() => decodeRow(PlanTable, { _uuid: 'u', generation: 1.5 }), /Plan row u: column generation/);
});

test('encodeColumns encodes by the declared types and rejects what they do not allow', () => {
  assert.deepEqual(encodeColumns(PlanTable, { generation: 4, config: undefined, pools: ['pool0'] }), {
    generation: 4,
    config: ['set', []],
    pools: ['set', [['named-uuid', 'pool0']]],
  });
  assert.throws(
    () => encodeColumns(NodeStatusTable, { applied_generation: 'x' as unknown as number }),
    /Node_Status: column applied_generation: expected an integer/,
  );
  assert.throws(
    () => encodeColumns(NodeStatusTable, { nope: 1 } as unknown as { node: string }),
    /Node_Status has no column nope/,
  );
});
