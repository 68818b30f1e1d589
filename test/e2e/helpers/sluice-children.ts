// `sluice` child processes of an e2e test (planner, agents, CLI calls), run from the source tree with tsx. Each
// child's stderr (pino's JSON lines) and stdout go to `<dir>/<name>.log`; its stderr lines are kept in memory, across
// restarts under the same name, so a test can wait on a log record. Only PIDs started here are ever killed.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../../..', import.meta.url).pathname;
const SLUICE = ['--import', 'tsx', join(ROOT, 'src/cli/bin.ts')];

export class SluiceChildren {
  readonly #dir: () => string;
  readonly #children = new Map<string, ChildProcess>();
  readonly #lines = new Map<string, string[]>();
  readonly #startedAt = new Map<string, number>();

  /** `dir` is read at each start: tests create their log directory in `before`. */
  constructor(dir: () => string) {
    this.#dir = dir;
  }

  /** Starts `sluice <args>` as `name` (a restart under the same name appends to its log and lines). */
  start(name: string, args: readonly string[]): ChildProcess {
    this.#startedAt.set(name, Date.now());
    const out = createWriteStream(join(this.#dir(), `${name}.log`), { flags: 'a' });
    const child = spawn(process.execPath, [...SLUICE, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = this.#lines.get(name) ?? [];
    this.#lines.set(name, lines);
    let buf = '';
    child.stderr?.on('data', (d: Buffer) => {
      out.write(d);
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      lines.push(...parts);
    });
    child.stdout?.on('data', (d: Buffer) => out.write(d));
    this.#children.set(name, child);
    return child;
  }

  get(name: string): ChildProcess | undefined {
    return this.#children.get(name);
  }

  /** When `name` was last started (ms), if it was. */
  startedAt(name: string): number | undefined {
    return this.#startedAt.get(name);
  }

  /** Raw stderr lines of `name`, every run of it. */
  lines(name: string): readonly string[] {
    return this.#lines.get(name) ?? [];
  }

  /** JSON log records of `name` (pino lines; anything else skipped). */
  records(name: string): Array<Record<string, unknown>> {
    return this.lines(name).flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  /** Signals `name` and waits for it to exit (nothing if it is not running). */
  kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.#children.get(name);
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      c.once('exit', () => resolve());
      c.kill(signal);
    });
  }

  killAll(): Promise<void> {
    return Promise.all([...this.#children.keys()].map((n) => this.kill(n))).then(() => undefined);
  }
}

/** Runs `sluice <args>` to its end: its exit code and everything it printed. */
export function execSluice(
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...SLUICE, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** Runs `sluice <args>` to its end; resolves to its stdout, rejects with its stderr on a non-zero exit. */
export async function runSluice(args: readonly string[]): Promise<string> {
  const r = await execSluice(args);
  if (r.code !== 0) throw new Error(`sluice ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}
