// The pure core imports no I/O (README "How it is built", docs/design/overview.md "Shape of the system"): every import of a
// file in src/model, src/hashing, src/rollout, src/compile, src/flowset and src/explain.ts is either another
// pure-core file or one of the parsing libraries below, and no file reaches for process, fetch or require.
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const CORE_DIRS = ['model', 'hashing', 'rollout', 'compile', 'flowset'];
const CORE_FILES = ['explain.ts'];
/** Packages the core may use: pure parsers/validators, no I/O. */
const ALLOWED_PACKAGES = new Set(['zod', 'yaml']);

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = `${dir}/${name}`;
    if (statSync(p).isDirectory()) return tsFiles(p);
    return name.endsWith('.ts') ? [p] : [];
  });
}

function isCore(rel: string): boolean {
  return CORE_FILES.includes(rel) || CORE_DIRS.some((d) => rel.startsWith(`${d}/`));
}

/** Specifiers of static imports/exports (single- or multi-line), side-effect imports and dynamic imports. */
function importSpecifiers(text: string): string[] {
  const out: string[] = [];
  for (const re of [
    /\bfrom\s+['"]([^'"]+)['"]/g,
    /\bimport\s+['"]([^'"]+)['"]/g,
    /\bimport\(\s*['"]([^'"]+)['"]/g,
  ])
    for (const m of text.matchAll(re)) out.push(m[1]);
  return out;
}

test('importSpecifiers finds static, multi-line, side-effect and dynamic imports', () => {
  const text = [
    "import { a } from './a.ts';",
    'import {',
    '  b,',
    "} from 'node:fs';",
    "import 'node:net';",
    "export * from '../c.ts';",
    "const x = await import('node:child_process');",
  ].join('\n');
  assert.deepEqual(importSpecifiers(text).sort(), [
    '../c.ts',
    './a.ts',
    'node:child_process',
    'node:fs',
    'node:net',
  ]);
});

test('the pure core imports only pure-core files and parsing libraries, and touches no process/fetch/require', () => {
  const files = [...CORE_DIRS.flatMap((d) => tsFiles(`${SRC}${d}`)), ...CORE_FILES.map((f) => `${SRC}${f}`)];
  assert.ok(files.length > 20, `only ${files.length} files found under ${SRC}`);
  const problems: string[] = [];
  for (const file of files) {
    const rel = file.slice(SRC.length);
    const text = readFileSync(file, 'utf8');
    for (const spec of importSpecifiers(text)) {
      if (spec.startsWith('.')) {
        const target = fileURLToPath(new URL(spec, `file://${file}`)).slice(SRC.length);
        if (!isCore(target)) problems.push(`${rel} imports ${spec} (${target}: not pure core)`);
      } else if (!ALLOWED_PACKAGES.has(spec)) {
        problems.push(`${rel} imports ${spec}`);
      }
    }
    const code = text.replace(/\/\/.*$/gm, '');
    for (const m of code.matchAll(/\b(process\.|fetch\(|require\()/g)) problems.push(`${rel} uses ${m[1]}`);
  }
  assert.deepEqual(problems, []);
});
