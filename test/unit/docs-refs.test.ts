// The repository stands alone: every file its docs, code, tests, benchmarks and scripts point a reader at is in
// the repository. Checks Markdown links (file and heading), repository paths named in text (`docs/...`,
// `src/...`, ...), any `*.md` file named anywhere, relative paths that climb out of the repository, notes cited
// by name and item ("NAME item 4"), and citations of the issue tracker ("issue N"): none of which a reader of the
// repository can follow. Reads files only.

import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SCANNED_DIRS = ['docs', 'src', 'test', 'bench', 'scripts', 'examples'];
const SCANNED_EXT = /\.(md|ts|sh|ya?ml)$/;
/** Test inputs that are data, not prose. */
const SKIPPED_DIRS = new Set(['test/fixtures']);
/** This file's negative controls are made-up dangling references. */
const SELF = relative(ROOT, fileURLToPath(import.meta.url));

function walk(dir: string, out: string[]): void {
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (SKIPPED_DIRS.has(rel)) continue;
    if (statSync(join(ROOT, rel)).isDirectory()) walk(rel, out);
    else if (SCANNED_EXT.test(name)) out.push(rel);
  }
}

function scannedFiles(): string[] {
  const out = readdirSync(ROOT).filter((f) => f.endsWith('.md'));
  for (const d of SCANNED_DIRS) walk(d, out);
  return out.filter((f) => f !== SELF);
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N} -]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(mdText: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of mdText.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = /^#{1,6}\s+(.*)$/.exec(line);
    if (!fenced && m) out.add(slug(m[1]));
  }
  return out;
}

/** Whether relative path `p`, named in `file`, resolves outside the repository. */
function leavesRepo(file: string, p: string): boolean {
  const rel = relative(ROOT, resolve(ROOT, dirname(file), p));
  return rel === '..' || rel.startsWith('../');
}

/** The comment part of a line of code (TypeScript `//` and block-comment lines; `#` in shell and YAML). */
function commentOf(file: string, line: string): string {
  const t = line.trimStart();
  if (file.endsWith('.ts')) {
    if (t.startsWith('*') || t.startsWith('/*')) return line;
    const i = line.indexOf('// ');
    return i >= 0 ? line.slice(i) : '';
  }
  const i = line.indexOf('#');
  return i >= 0 ? line.slice(i) : '';
}

export interface Repo {
  /** Whether a repository-relative path (file or folder) exists. */
  exists(path: string): boolean;
  /** Text of a repository-relative file. */
  read(path: string): string;
  /** Base names of every Markdown file in the repository. */
  readonly markdownNames: ReadonlySet<string>;
}

/** Problems with the references in one file's text (`file` repository-relative), as "file:line: what". */
export function badReferences(file: string, text: string, repo: Repo): string[] {
  const out: string[] = [];
  const lines = text.split('\n');
  lines.forEach((line, n) => {
    const at = `${file}:${n + 1}`;
    // In code, only comments are prose: a string literal may name a file a test expects to be missing.
    const prose = file.endsWith('.md') ? line : commentOf(file, line);
    if (/\bissue\s+#?\d+/i.test(line))
      out.push(`${at}: cites the issue tracker ("${/\bissue\s+#?\d+/i.exec(line)![0]}")`);
    for (const m of prose.matchAll(/(?<![\w/.])((?:\.\.\/)+[\w./-]*)/g))
      if (leavesRepo(file, m[1])) out.push(`${at}: names ${m[1]}, outside the repository`);
      else if (!repo.exists(relative(ROOT, resolve(ROOT, dirname(file), m[1]))))
        out.push(`${at}: names ${m[1]}, which is not in the repository`);
    const note = /\b([A-Z][A-Z0-9-]{2,})\s+(?:item|notes)\b/.exec(prose);
    if (note) out.push(`${at}: cites the ${note[1]} notes, which are not in the repository`);
    for (const m of prose.matchAll(/(?<![\w/.-])([\w.-]+\.md)\b/g)) {
      if (!repo.markdownNames.has(m[1])) out.push(`${at}: names ${m[1]}, which is not in the repository`);
    }
    for (const m of prose.matchAll(
      /(?<![\w/.-])((?:docs|src|test|bench|scripts|schema|examples)\/[\w./-]*)/g,
    )) {
      const after = prose[m.index! + m[0].length] ?? '';
      if (after !== '' && '*{<$'.includes(after)) continue; // a glob or a placeholder, not a file
      const named = m[1].replace(/\.+$/, '');
      // A file (it has an extension) or a folder (trailing slash); `src/dst` in prose is neither.
      if (!/\.\w+$/.test(named) && !named.endsWith('/')) continue;
      const path = named.replace(/\/+$/, '');
      if (!repo.exists(path)) out.push(`${at}: names ${path}, which is not in the repository`);
    }
    if (!file.endsWith('.md')) return;
    for (const m of line.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1];
      if (/^[a-z]+:/i.test(target)) continue; // http:, https:, mailto:
      const [path, anchor] = target.split('#');
      const rel = path === '' ? file : relative(ROOT, resolve(ROOT, dirname(file), path));
      if (leavesRepo(file, path) || !repo.exists(rel)) {
        out.push(`${at}: links to ${target}, which is not in the repository`);
        continue;
      }
      if (anchor !== undefined && rel.endsWith('.md') && !anchorsOf(repo.read(rel)).has(anchor)) {
        out.push(`${at}: links to ${target}: ${rel} has no heading #${anchor}`);
      }
    }
  });
  return out;
}

function realRepo(): Repo {
  const names = new Set<string>();
  const all: string[] = readdirSync(ROOT).filter((f) => f.endsWith('.md'));
  for (const d of SCANNED_DIRS) walk(d, all);
  for (const f of all) if (f.endsWith('.md')) names.add(f.split('/').pop()!);
  return {
    exists: (p) => existsSync(join(ROOT, p)),
    read: (p) => readFileSync(join(ROOT, p), 'utf8'),
    markdownNames: names,
  };
}

test('every file, heading and repository path the repository refers to is in it; no issue-tracker citations', () => {
  const repo = realRepo();
  const files = scannedFiles();
  assert.ok(files.length > 100, `scanned only ${files.length} files`);
  const bad = files.flatMap((f) => badReferences(f, repo.read(f), repo));
  assert.deepEqual(bad, []);
});

test('negative control: each kind of dangling reference is reported', () => {
  const repo: Repo = {
    exists: (p) => ['docs', 'docs/a.md', 'src', 'src/x.ts'].includes(p),
    read: () => '# Title\n\n## Hash modes\n',
    markdownNames: new Set(['a.md']),
  };
  const cases: [string, string, RegExp][] = [
    ['docs/b.md', 'see GUIDE.md "Hash modes"', /names GUIDE\.md/],
    ['src/y.ts', '// report what was applied (GUIDE item 14)', /the GUIDE notes/],
    ['src/y.ts', '// LAB-NOTES.md: stale bytes', /names LAB-NOTES\.md/],
    ['src/y.ts', '// as issue 4 asks', /issue tracker/],
    ['docs/b.md', 'read ../../elsewhere/notes', /outside the repository/],
    ['docs/b.md', 'read ../elsewhere/notes', /names \.\.\/elsewhere\/notes, which is not/],
    ['docs/b.md', 'see [the notes](../../elsewhere/)', /links to \.\.\/\.\.\/elsewhere/],
    ['docs/b.md', 'see [the plan](plan.md)', /names plan\.md|links to plan\.md/],
    ['docs/b.md', 'see [a](a.md#no-such-heading)', /no heading #no-such-heading/],
    ['src/y.ts', '// built by src/gone.ts', /names src\/gone\.ts/],
  ];
  for (const [file, text, want] of cases) {
    const bad = badReferences(file, text, repo);
    assert.ok(
      bad.some((b) => want.test(b)),
      `${JSON.stringify(text)} should be reported (${want}); got ${JSON.stringify(bad)}`,
    );
  }
  // And what is there passes.
  assert.deepEqual(badReferences('docs/b.md', 'see [a](a.md#hash-modes) and src/x.ts, src/*.ts', repo), []);
});
