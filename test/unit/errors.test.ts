// docs/errors.md documents exactly the codes in ERROR_CODES; the source uses no undefined code. Reads files only.
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exitCodeFor } from '../../src/cli/store-commands.ts';
import { ERROR_CODES, type ErrorCode, SluiceError } from '../../src/model/errors.ts';
import { isOvsdbErrorCode, OVSDB_ERROR_CODES } from '../../src/ovsdb/errors.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Codes in the first column of the tables in docs/errors.md, in order (duplicates kept). */
function documentedCodes(): string[] {
  const text = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
  const codes: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\|\s*`?(SLUICE_E_[A-Z0-9_]+)`?\s*\|\s*(.*?)\s*\|\s*$/.exec(line);
    if (m) {
      assert.ok(m[2].length > 0, `docs/errors.md: ${m[1]} has no meaning`);
      codes.push(m[1]);
    }
  }
  return codes;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

test('every code is well formed and has a one-line meaning', () => {
  for (const [code, meaning] of Object.entries(ERROR_CODES)) {
    assert.match(code, /^SLUICE_E_[A-Z0-9]+(?:_[A-Z0-9]+)*$/);
    assert.ok(meaning.length > 10 && !meaning.includes('\n'), code);
  }
});

test('docs/errors.md lists every code in ERROR_CODES', () => {
  const documented = new Set(documentedCodes());
  const missing = Object.keys(ERROR_CODES).filter((c) => !documented.has(c));
  assert.deepEqual(missing, [], `add these to docs/errors.md: ${missing.join(', ')}`);
});

test('docs/errors.md lists nothing unknown, and nothing twice', () => {
  const codes = documentedCodes();
  const unknown = codes.filter((c) => !(c in ERROR_CODES));
  assert.deepEqual(unknown, [], `not in ERROR_CODES: ${unknown.join(', ')}`);
  const twice = codes.filter((c, i) => codes.indexOf(c) !== i);
  assert.deepEqual(twice, [], `listed twice: ${twice.join(', ')}`);
});

test('every SLUICE_E_* code named in src/ is defined in ERROR_CODES', () => {
  const unknown = new Set<string>();
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/SLUICE_E_[A-Z0-9_]*[A-Z0-9]/g)) {
      if (!(m[0] in ERROR_CODES)) unknown.add(`${m[0]} (${file.slice(ROOT.length)})`);
    }
  }
  assert.deepEqual([...unknown], []);
});

test('SluiceError carries its code and issues', () => {
  const issues = [
    { code: 'SLUICE_E_CONFIG_WEIGHT', path: 'loadBalancers[0].backends[0].weight', message: 'x' },
  ];
  const e = new SluiceError('SLUICE_E_CONFIG_INVALID', 'invalid config', issues);
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'SluiceError');
  assert.equal(e.code, 'SLUICE_E_CONFIG_INVALID');
  assert.deepEqual(e.issues, issues);
  assert.deepEqual(new SluiceError('SLUICE_E_IO', 'x').issues, []);
});

test('OVSDB_ERROR_CODES is exactly the SLUICE_E_OVSDB_* codes, and only they are OVSDB failures (exit code 1)', () => {
  const ovsdb = Object.keys(ERROR_CODES).filter((c) => c.startsWith('SLUICE_E_OVSDB_'));
  assert.deepEqual([...OVSDB_ERROR_CODES].sort(), ovsdb.sort());
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[])
    assert.equal(isOvsdbErrorCode(code), ovsdb.includes(code), code);
  assert.equal(exitCodeFor('SLUICE_E_OVSDB_TIMEOUT'), 1);
  assert.equal(exitCodeFor('SLUICE_E_CONFIG_INVALID'), 2);
});
