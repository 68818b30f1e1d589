// The pure core imports no I/O (README "How it is built", docs/design/overview.md "Shape of the system"): every import of a
// file in src/model, src/hashing, src/rollout, src/compile, src/flowset and src/explain.ts is either another
// pure-core file or one of the parsing libraries below, and no file reaches for process, fetch or require.
// Two more one-way rules of the edges: in src/ and bench/, only the planner (and the CLI command that starts it)
// imports src/planner/ (tests may: they exercise it), and src/store/db/ (the Sluice database) imports only the
// protocol layer of src/ovsdb and the core.
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = `${ROOT}src/`;
const CORE_DIRS = ['model', 'hashing', 'rollout', 'compile', 'flowset'];
const CORE_FILES = ['explain.ts', 'audit.ts'];
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

/** Files under `dir` (relative to the repository) and what each imports, as repository-relative paths. */
function importsUnder(dir: string): { file: string; targets: string[] }[] {
  return tsFiles(`${ROOT}${dir}`).map((file) => ({
    file: file.slice(ROOT.length),
    targets: importSpecifiers(readFileSync(file, 'utf8'))
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => fileURLToPath(new URL(spec, `file://${file}`)).slice(ROOT.length)),
  }));
}

/** The files that import src/planner/ without being allowed to. */
function plannerImportersNotAllowed(
  files: readonly { file: string; targets: readonly string[] }[],
): string[] {
  const allowed = (f: string) => f.startsWith('src/planner/') || f === 'src/cli/daemons.ts';
  return files
    .filter(({ file, targets }) => !allowed(file) && targets.some((t) => t.startsWith('src/planner/')))
    .map(({ file }) => file);
}

test('in src/ and bench/, only the planner imports src/planner/ (and the CLI command that starts it)', () => {
  const files = ['src', 'bench'].flatMap(importsUnder);
  assert.ok(files.length > 80, `only ${files.length} files found`);
  assert.deepEqual(plannerImportersNotAllowed(files), []);
  // Negative control: an agent reading the planner's view is reported.
  assert.deepEqual(
    plannerImportersNotAllowed([
      { file: 'src/agent/daemon.ts', targets: ['src/planner/view.ts'] },
      { file: 'src/planner/daemon.ts', targets: ['src/planner/view.ts'] },
    ]),
    ['src/agent/daemon.ts'],
  );
});

test('src/store/db imports only itself, src/ovsdb (not the client), src/model and src/rollout', () => {
  const ok = (t: string) =>
    t.startsWith('src/store/db/') ||
    (t.startsWith('src/ovsdb/') && t !== 'src/ovsdb/client.ts' && t !== 'src/ovsdb/server.ts') ||
    t.startsWith('src/model/') ||
    t.startsWith('src/rollout/');
  const files = importsUnder('src/store/db');
  assert.ok(files.length >= 5);
  const problems = files.flatMap(({ file, targets }) =>
    targets.filter((t) => !ok(t)).map((t) => `${file} imports ${t}`),
  );
  assert.deepEqual(problems, []);
});
