// How the applier reaches one node's Open vSwitch: a Runner runs `ovs-ofctl -O OpenFlow15` / `ovs-appctl` (and, for
// the agent's node facts, `ovs-vsctl`) for that node. The lab's LabNode (src/lab/node.ts) has this exact shape and
// can be passed as a Runner; `localRunner` covers a plain machine, a private OVS_RUNDIR and/or a network namespace.

import { execFile, spawn } from 'node:child_process';
import { type ChildInput, endStdin } from '../child-input.ts';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOpts {
  /** Text for stdin (e.g. a bundle file, with `bundle -`). */
  readonly input?: ChildInput;
  /** Resolve with a non-zero `code` instead of rejecting. The applier always sets it. */
  readonly allowFail?: boolean;
}

export interface Runner {
  /** `ovs-ofctl -O OpenFlow15 <opts...> <command> <bridge> <rest...>` where args = [...opts, command, ...rest]. */
  ofctl(bridge: string, args: readonly string[], opts?: RunOpts): Promise<RunResult>;
  /** Like `ofctl`, but stdout is handed to `onLine` line by line as it arrives, never held whole (a `dump-flows` of a
   *  gateway at 10,000 VIPs prints 695 MiB: more than an output buffer or a JavaScript string holds). Optional: the
   *  applier falls back to `ofctl` and splits its output. */
  ofctlLines?(
    bridge: string,
    args: readonly string[],
    onLine: (line: string) => void,
    opts?: RunOpts,
  ): Promise<Omit<RunResult, 'stdout'>>;
  /** `ovs-appctl <args...>` against the node's ovs-vswitchd. */
  appctl(args: readonly string[], opts?: RunOpts): Promise<RunResult>;
  /** `ovs-vsctl --timeout=10 <args...>` against the node's ovsdb-server (the agent reads its node facts with it). */
  vsctl?(args: readonly string[], opts?: RunOpts): Promise<RunResult>;
}

export interface LocalRunnerOptions {
  /** Run inside this network namespace (`ip netns exec`). */
  readonly netns?: string;
  /** Extra environment, e.g. OVS_RUNDIR of a private ovs-vswitchd. */
  readonly env?: Readonly<Record<string, string>>;
  /** Per-command timeout, ms (default 30 s). */
  readonly timeoutMs?: number;
}

function exec(
  cmd: string,
  args: readonly string[],
  o: LocalRunnerOptions,
  opts: RunOpts,
): Promise<RunResult> {
  const [file, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, cmd, ...args]] : [cmd, [...args]];
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      argv,
      {
        encoding: 'utf8',
        maxBuffer: 256 * 1024 * 1024,
        timeout: o.timeoutMs ?? 30_000,
        env: { ...process.env, ...o.env },
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'number') {
          if (opts.allowFail) return resolve({ code, stdout, stderr });
          return reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${stderr.trim()}`));
        }
        reject(err);
      },
    );
    endStdin(child, opts.input);
  });
}

/** Stderr kept of a streamed command (its stdout is not kept at all). */
const STDERR_KEEP = 64 * 1024;

/** Runs a command, handing its stdout to `onLine` line by line; same timeout, netns and failure rules as exec. */
function execLines(
  cmd: string,
  args: readonly string[],
  o: LocalRunnerOptions,
  onLine: (line: string) => void,
  opts: RunOpts,
): Promise<Omit<RunResult, 'stdout'>> {
  const [file, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, cmd, ...args]] : [cmd, [...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let rest = '';
    let failure: Error | undefined;
    const timer = setTimeout(() => {
      failure = new Error(`${cmd} ${args.join(' ')}: timed out after ${o.timeoutMs ?? 30_000} ms`);
      child.kill('SIGKILL');
    }, o.timeoutMs ?? 30_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      if (failure) return;
      const lines = (rest + d).split('\n');
      rest = lines.pop() ?? '';
      try {
        for (const l of lines) onLine(l);
      } catch (e) {
        // The consumer refused a line: stop reading, report its error.
        failure = e as Error;
        child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < STDERR_KEEP) stderr += d;
    });
    child.on('error', (e) => {
      failure ??= e;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!failure && rest !== '') {
        try {
          onLine(rest);
        } catch (e) {
          failure = e as Error;
        }
      }
      if (failure) return reject(failure);
      const c = code ?? 1;
      if (c === 0 || opts.allowFail) return resolve({ code: c, stderr });
      reject(new Error(`${cmd} ${args.join(' ')}: exit ${c}: ${stderr.trim()}`));
    });
    endStdin(child, opts.input);
  });
}

/** `-O OpenFlow15 [options] <command> <bridge> [rest]` from the Runner's `args` (options first). */
function ofctlArgv(bridge: string, args: readonly string[]): string[] {
  const i = args.findIndex((a) => !a.startsWith('-'));
  if (i < 0) throw new TypeError('ofctl: args must contain an ovs-ofctl command');
  return ['-O', 'OpenFlow15', ...args.slice(0, i), args[i], bridge, ...args.slice(i + 1)];
}

export function localRunner(o: LocalRunnerOptions = {}): Required<Runner> {
  return {
    ofctl(bridge, args, opts = {}) {
      return exec('ovs-ofctl', ofctlArgv(bridge, args), o, opts);
    },
    ofctlLines(bridge, args, onLine, opts = {}) {
      return execLines('ovs-ofctl', ofctlArgv(bridge, args), o, onLine, opts);
    },
    appctl(args, opts = {}) {
      return exec('ovs-appctl', args, o, opts);
    },
    vsctl(args, opts = {}) {
      return exec('ovs-vsctl', ['--timeout=10', ...args], o, opts);
    },
  };
}
