// Config text -> validated Config. Pure: the caller reads the file and passes its text and name.
//
// `*.json` files are parsed as strict JSON; everything else as YAML 1.2 (which also reads JSON text).
// Syntax errors become SluiceError('SLUICE_E_CONFIG_PARSE') naming the file, line and column; a well-formed file
// that breaks the schema or a rule becomes SluiceError('SLUICE_E_CONFIG_INVALID') listing every problem.

import { parseDocument } from 'yaml';
import { type Issue, SluiceError } from './errors.ts';
import { parseConfig } from './schema.ts';
import type { Config } from './types.ts';

interface SyntaxProblem {
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

/** 1-based line and column of a character offset. */
function lineCol(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, col: end - start + 1 };
}

function parseError(fileName: string, text: string, problems: readonly SyntaxProblem[]): SluiceError {
  const lines = text.split('\n');
  const issues: Issue[] = problems.map((p) => ({
    code: 'SLUICE_E_CONFIG_PARSE',
    path: `${fileName}:${p.line}:${p.col}`,
    message: p.message,
  }));
  const first = problems[0];
  const src = lines[first.line - 1];
  const excerpt = src === undefined ? '' : `\n  ${src}\n  ${' '.repeat(Math.max(0, first.col - 1))}^`;
  const more = problems.length > 1 ? `\n(${problems.length - 1} more syntax error(s) follow)` : '';
  return new SluiceError(
    'SLUICE_E_CONFIG_PARSE',
    `${fileName}:${first.line}:${first.col}: ${first.message}${excerpt}${more}`,
    issues,
  );
}

/** A key seen twice in one JSON object (JSON.parse keeps the last one silently), thrown by jsonErrorOffset. */
interface DuplicateKey {
  readonly key: string;
  readonly at: number;
}

/** Offset of the first JSON syntax error (JSON.parse in Node 20 does not always say where); with `keys`, throws the
 *  first DuplicateKey found in well-formed text. */
function jsonErrorOffset(text: string, keys = false): number {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (): never => {
    throw i;
  };
  // At an opening bracket: steps over it; true when the container is empty (`close` follows, stepped over too).
  const opens = (close: string): boolean => {
    i++;
    ws();
    if (text[i] !== close) return false;
    i++;
    return true;
  };
  // After an item: a comma (more follow: false) or `close` (the container ends: true), stepped over.
  const closes = (close: string): boolean => {
    ws();
    if (text[i] === ',') {
      i++;
      return false;
    }
    if (text[i] !== close) fail();
    i++;
    return true;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      if (opens('}')) return;
      const seen = new Set<string>();
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        const start = i;
        string();
        if (keys) {
          const key = JSON.parse(text.slice(start, i)) as string;
          if (seen.has(key)) throw { key, at: start } satisfies DuplicateKey;
          seen.add(key);
        }
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        if (closes('}')) return;
      }
    }
    if (c === '[') {
      if (opens(']')) return;
      for (;;) {
        value();
        if (closes(']')) return;
      }
    }
    if (c === '"') {
      string();
      return;
    }
    const m = /^(?:true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)/.exec(
      text.slice(i, i + 400),
    );
    if (m === null) fail();
    i += m![0].length;
  };
  const string = (): void => {
    i++;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 34) {
        i++;
        return;
      }
      if (c < 0x20) fail();
      if (c === 92) {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 5;
        } else if (i < text.length && '"\\/bfnrt'.includes(text[i])) i++;
        else fail();
      } else i++;
    }
    fail();
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
  } catch (at) {
    if (typeof at === 'number') return at;
    throw at;
  }
  return text.length;
}

function parseJsonText(text: string, fileName: string): unknown {
  try {
    const value: unknown = JSON.parse(text);
    // docs/config.md: a key given twice is an error (JSON.parse would keep the last one silently).
    try {
      jsonErrorOffset(text, true);
    } catch (dup) {
      const { key, at } = dup as DuplicateKey;
      const { line, col } = lineCol(text, at);
      throw parseError(fileName, text, [
        { line, col, message: `invalid JSON: duplicate key ${JSON.stringify(key)}` },
      ]);
    }
    return value;
  } catch (e) {
    if (e instanceof SluiceError) throw e;
    const message = (e as Error).message
      .replace(/, "[\s\S]*$/, '')
      .replace(/ in JSON at position \d+[\s\S]*$/, '');
    const { line, col } = lineCol(text, jsonErrorOffset(text));
    throw parseError(fileName, text, [{ line, col, message: `invalid JSON: ${message}` }]);
  }
}

function parseYamlText(text: string, fileName: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  // Warnings (e.g. an unknown !tag) are treated as errors: a config should mean exactly what it says.
  const problems = [...doc.errors, ...doc.warnings].map((e) => {
    const pos = e.linePos?.[0] ?? lineCol(text, e.pos[0]);
    return { line: pos.line, col: pos.col, message: `invalid YAML: ${e.message.split(' at line ')[0]}` };
  });
  if (problems.length > 0) throw parseError(fileName, text, problems);
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // Alias problems (unresolved alias, alias expansion bomb) surface only here.
    throw new SluiceError('SLUICE_E_CONFIG_PARSE', `${fileName}: invalid YAML: ${(e as Error).message}`, [
      { code: 'SLUICE_E_CONFIG_PARSE', path: fileName, message: (e as Error).message },
    ]);
  }
}

/** Decodes config text (JSON for `*.json`, YAML otherwise) without validating it. */
export function decodeConfigText(text: string, fileName: string): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  return /\.json$/i.test(fileName) ? parseJsonText(body, fileName) : parseYamlText(body, fileName);
}

/**
 * Parses and validates config text. Throws SluiceError: SLUICE_E_CONFIG_PARSE (syntax; message starts with
 * `file:line:col:`) or SLUICE_E_CONFIG_INVALID (every schema and rule problem, in error.issues).
 */
export function parseConfigText(text: string, fileName: string): Config {
  return parseConfig(decodeConfigText(text, fileName), fileName);
}
