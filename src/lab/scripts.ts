// Resolves the small programs the lab runs inside namespaces (backend-server, conn-runner) to a plain-JS file that
// `node` starts in ~60 ms and ~40 MB. From dist/ the compiled sibling .js is used. From src/ (tsx), the .ts file is
// transpiled once with TypeScript's transpileModule (a dev dependency, present whenever src/ runs) and cached;
// `node --import tsx` would cost ~0.7 s and ~85 MB per process. These programs import only node: builtins.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_RUN_ROOT } from './config.ts';

export type LabProgram = 'backend-server' | 'conn-runner';

/** Absolute path of a JS file runnable with plain `node`. */
export async function runnableScript(
  name: LabProgram,
  cacheRoot: string = DEFAULT_RUN_ROOT,
): Promise<string> {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith('.js')) return fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const src = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const text = readFileSync(src, 'utf8');
  const digest = createHash('sha256').update(text).digest('hex').slice(0, 12);
  const dir = `${cacheRoot}/bin`;
  const out = `${dir}/${name}-${digest}.mjs`;
  if (existsSync(out)) return out;
  const ts = await import('typescript');
  const js = ts.transpileModule(text, {
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: true,
    },
    fileName: src,
  }).outputText;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, js);
  renameSync(tmp, out);
  return out;
}
