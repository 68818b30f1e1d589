// src/store/db is the only code that touches Sluice rows. Outside it (in src/ and bench/), no code names a Sluice
// table in a string literal (the only way to reach an untyped row: replica.rows('Node_Status'), a raw
// {table: 'Plan'} operation) and no code casts a Sluice column (`row.applied_generation as number`). Comments are
// left out of the search. Pure: reads source files only.
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
type Schema = { tables: Record<string, { columns: Record<string, unknown> }> };
// Both databases of the store (Sluice, Sluice_Status).
const SCHEMAS = ['sluice.ovsschema', 'sluice-status.ovsschema'].map(
  (f) => JSON.parse(readFileSync(`${ROOT}schema/${f}`, 'utf8')) as Schema,
);
const TABLES = [...new Set(SCHEMAS.flatMap((s) => Object.keys(s.tables)))];
/** Column names with an underscore: snake_case, so they cannot be a camelCase field of some other object. */
const COLUMNS = [
  ...new Set(SCHEMAS.flatMap((s) => Object.values(s.tables).flatMap((t) => Object.keys(t.columns)))),
].filter((c) => c.includes('_'));

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = `${dir}/${name}`;
    if (statSync(p).isDirectory()) return tsFiles(p);
    return name.endsWith('.ts') ? [p] : [];
  });
}

const stripComments = (text: string) =>
  text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');

/** Lines of `text` that reach past the typed layer, each as `line: text`. */
function untypedRowAccess(text: string): string[] {
  const table = new RegExp(`['"\`](${TABLES.join('|')})['"\`]`);
  const cast = new RegExp(
    `\\.(${COLUMNS.join('|')})\\b[^;]*?\\bas\\s+(number|string|boolean|readonly|[A-Z])`,
  );
  return stripComments(text)
    .split('\n')
    .flatMap((line, i) => (table.test(line) || cast.test(line) ? [`${i + 1}: ${line.trim()}`] : []));
}

test('the search finds a raw table access, a raw operation and a column cast, and not their typed forms', () => {
  const bad = [
    "const g = r.rows('Global')[0];",
    "ops.push({ op: 'delete', table: 'Slot_Connections', where });",
    'const n = row.applied_generation as number;',
    'const ids = st.external_ids as ReadonlyMap<string, string>;',
  ];
  assert.equal(untypedRowAccess(bad.join('\n')).length, bad.length);
  const good = [
    'const g = single(r, GlobalTable);',
    'ops.push(remove(SlotConnectionsTable, byUuid(row._uuid)));',
    'const n = row.applied_generation;',
    "// r.rows('Global') in a comment",
    'const t = rec.time as number; // a log record, not a row',
  ];
  assert.deepEqual(untypedRowAccess(good.join('\n')), []);
});

test('outside src/store/db, src/ and bench/ reach Sluice rows only through it', () => {
  const files = [...tsFiles(`${ROOT}src`), ...tsFiles(`${ROOT}bench`)].filter(
    // src/ovn reads OVN's Northbound database, which has a Load_Balancer table of its own (not Sluice's).
    (f) => !f.startsWith(`${ROOT}src/store/db/`) && !f.startsWith(`${ROOT}src/ovn/`),
  );
  assert.ok(files.length > 80, `only ${files.length} files`);
  const problems = files.flatMap((f) =>
    untypedRowAccess(readFileSync(f, 'utf8')).map((l) => `${f.slice(ROOT.length)}:${l}`),
  );
  assert.deepEqual(problems, []);
});
