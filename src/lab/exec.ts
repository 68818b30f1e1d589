// Process helpers for the lab: run a command (optionally inside a network namespace) with a timeout and an error
// that names the command; run a shell script in a namespace; start a background process with a pid file; kill a
// process by its pid file (only if it still looks like the program we started).

import { execFile, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ChildInput, endStdin } from '../child-input.ts';
import { SluiceError } from '../model/errors.ts';

export interface RunOptions {
  /** Milliseconds before the command is killed (SIGKILL) and reported as timed out. Default 20 s. */
  readonly timeoutMs?: number;
  /** Extra environment variables (merged over process.env). */
  readonly env?: Readonly<Record<string, string>>;
  /** Text written to the command's stdin. */
  readonly input?: ChildInput;
  /** Return normally (with `code`) instead of throwing when the command exits non-zero. */
  readonly allowFail?: boolean;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function describe(cmd: string, args: readonly string[]): string {
  const shown = args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  const full = `${cmd} ${shown}`;
  return full.length > 400 ? `${full.slice(0, 400)}…` : full;
}

/** Runs `cmd args` and resolves with its output; throws SLUICE_E_LAB_COMMAND naming the command on failure. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeout = opts.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        timeout,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ code: 0, stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & {
          code?: number | string;
          killed?: boolean;
          signal?: string;
        };
        if (e.killed || e.signal === 'SIGKILL') {
          reject(
            new SluiceError('SLUICE_E_LAB_COMMAND', `timed out after ${timeout} ms: ${describe(cmd, args)}`),
          );
          return;
        }
        if (typeof e.code === 'number') {
          if (opts.allowFail) {
            resolve({ code: e.code, stdout, stderr });
            return;
          }
          const why = (stderr || stdout).trim().split('\n').slice(-6).join('\n');
          reject(
            new SluiceError(
              'SLUICE_E_LAB_COMMAND',
              `exit code ${e.code}: ${describe(cmd, args)}${why ? `\n${why}` : ''}`,
            ),
          );
          return;
        }
        reject(new SluiceError('SLUICE_E_LAB_COMMAND', `cannot run ${describe(cmd, args)}: ${e.message}`));
      },
    );
    endStdin(child, opts.input);
  });
}

/** Runs `cmd args` inside network namespace `ns` (`ip netns exec`). */
export function nsRun(
  ns: string,
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

/**
 * Runs a list of shell commands in namespace `ns` with one `sh` process (much faster than one process per
 * command). Stops at the first failing command and throws an error naming it and the namespace.
 */
export async function nsScript(
  ns: string,
  commands: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const script = commands
    .map((c) => `${c} || { echo ${shQuote(`FAILED in ${ns}: ${c}`)} >&2; exit 1; }`)
    .join('\n');
  try {
    return await run('ip', ['netns', 'exec', ns, 'sh', '-c', script], opts);
  } catch (err) {
    if (err instanceof SluiceError) {
      const failed = /FAILED in .*$/m.exec(err.message);
      if (failed) {
        throw new SluiceError(
          'SLUICE_E_LAB_COMMAND',
          `${failed[0]}\n${err.message.split('\n').slice(1).join('\n')}`,
        );
      }
    }
    throw err;
  }
}

/** Quotes one word for sh. */
export function shQuote(s: string): string {
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface BackgroundOptions {
  readonly pidFile: string;
  readonly logFile: string;
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Starts `cmd args` in namespace `ns` as a detached background process (own session; it survives the lab process),
 * output to `logFile`, and writes its pid to `pidFile`. `ip netns exec` execs the command, so the pid is the
 * command's own. Returns the pid.
 */
export function startInNetns(
  ns: string,
  cmd: string,
  args: readonly string[],
  opts: BackgroundOptions,
): number {
  return startDetached('ip', ['netns', 'exec', ns, cmd, ...args], opts, ` in ${ns}`);
}

/**
 * Starts `cmd args` (in this process's namespace) as a detached background process: own session, output to
 * `logFile`, pid written to `pidFile`. Returns the pid.
 */
export function startDetached(
  cmd: string,
  args: readonly string[],
  opts: BackgroundOptions & { readonly cwd?: string },
  where = '',
): number {
  const fd = openSync(opts.logFile, 'a');
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    if (child.pid === undefined) {
      throw new SluiceError('SLUICE_E_LAB_COMMAND', `cannot start ${describe(cmd, args)}${where}`);
    }
    writeFileSync(opts.pidFile, `${child.pid}\n`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** Reads a pid file; undefined when missing or garbled. */
export function readPidFile(path: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The process's command line (NUL-separated argv joined by spaces), or undefined if it is gone. */
export function processCmdline(pid: number): string | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (raw === '') return undefined; // zombie or kernel thread
    return raw.split('\0').join(' ').trim();
  } catch {
    return undefined;
  }
}

/** True when `pid` is alive and its command line contains `expect` (guards against recycled pids). */
export function pidAlive(pid: number, expect?: string): boolean {
  const cmdline = processCmdline(pid);
  if (cmdline === undefined) return false;
  return expect === undefined || cmdline.includes(expect);
}

/**
 * True once `pid` has finished exiting: gone, or a zombie. Not the same as `!pidAlive(pid)`: the kernel releases a
 * dying process's memory (its cmdline reads empty) before it closes its files, so a server whose cmdline is gone can
 * still hold its listening socket; a new server started then fails with EADDRINUSE.
 */
export function pidExited(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return true;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2).charAt(0);
  return state === 'Z' || state === 'X';
}

/** When process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22): with the pid, it names one
 *  process for good (a recycled pid starts later). Undefined when it is gone. */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const v = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Inode of a network namespace: of process `pid` (`/proc/<pid>/ns/net`) or a named one (`/run/netns/<name>`). */
export function netnsInode(of: { pid: number } | { name: string }): number | undefined {
  try {
    return statSync('pid' in of ? `/proc/${of.pid}/ns/net` : `/run/netns/${of.name}`).ino;
  } catch {
    return undefined;
  }
}

/** What marks a process as one a lab started: paths under its run directory, or one of its namespaces. */
export interface LabIdentity {
  readonly runDir: string;
  /** Inodes of the lab's network namespaces (netnsInode). */
  readonly netns: ReadonlySet<number>;
}

/**
 * True when a process (its command line and network namespace inode) is one the lab started as `program`: the
 * program matches, and its command line names a path under the lab's run directory (node OVS, store, planners,
 * agents) or it runs in one of the lab's namespaces (backends, traffic runners; their scripts live in a directory
 * every lab shares). A pid file whose pid now belongs to another lab's process, or to anything else, fails both.
 */
export function startedByLab(
  p: { readonly cmdline: string | undefined; readonly netns: number | undefined },
  program: string,
  lab: LabIdentity,
): boolean {
  if (p.cmdline === undefined || !p.cmdline.includes(program)) return false;
  return p.cmdline.includes(`${lab.runDir}/`) || (p.netns !== undefined && lab.netns.has(p.netns));
}

/**
 * Kills the process named by `pidFile` if it is alive and its command line contains `expect` (and, with `owner`,
 * startedByLab says the lab started it): SIGTERM (or the given signal), then SIGKILL after `graceMs`; resolves once
 * it has exited (pidExited). Removes the pid file. Returns the pid killed, if any.
 */
export async function killPidFile(
  pidFile: string,
  expect: string,
  opts: { signal?: NodeJS.Signals; graceMs?: number; keepPidFile?: boolean; owner?: LabIdentity } = {},
): Promise<number | undefined> {
  const pid = readPidFile(pidFile);
  let killed: number | undefined;
  const owned = (p: number) =>
    opts.owner === undefined ||
    startedByLab({ cmdline: processCmdline(p), netns: netnsInode({ pid: p }) }, expect, opts.owner);
  if (pid !== undefined && pidAlive(pid, expect) && owned(pid)) {
    killed = pid;
    try {
      process.kill(pid, opts.signal ?? 'SIGTERM');
    } catch {
      /* already gone */
    }
    // Until it has really exited (pidExited), so that its sockets are closed when this resolves.
    const deadline = Date.now() + (opts.graceMs ?? 2000);
    while (!pidExited(pid) && Date.now() < deadline) await sleep(20);
    if (!pidExited(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      const hard = Date.now() + 2000;
      while (!pidExited(pid) && Date.now() < hard) await sleep(20);
    }
  }
  if (!opts.keepPidFile) rmSync(pidFile, { force: true });
  return killed;
}
