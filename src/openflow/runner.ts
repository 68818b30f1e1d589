// How the applier reaches one node's Open vSwitch: a Runner runs `ovs-ofctl -O OpenFlow15` / `ovs-appctl` (and, for
// the agent's node facts, `ovs-vsctl`) for that node. The lab's LabNode (src/lab/node.ts) has this exact shape and
// can be passed as a Runner; `localRunner` covers a plain machine, a private OVS_RUNDIR and/or a network namespace.

import { execFile } from 'node:child_process';
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

export function localRunner(o: LocalRunnerOptions = {}): Required<Runner> {
  return {
    ofctl(bridge, args, opts = {}) {
      const i = args.findIndex((a) => !a.startsWith('-'));
      if (i < 0) throw new TypeError('ofctl: args must contain an ovs-ofctl command');
      const argv = ['-O', 'OpenFlow15', ...args.slice(0, i), args[i], bridge, ...args.slice(i + 1)];
      return exec('ovs-ofctl', argv, o, opts);
    },
    appctl(args, opts = {}) {
      return exec('ovs-appctl', args, o, opts);
    },
    vsctl(args, opts = {}) {
      return exec('ovs-vsctl', ['--timeout=10', ...args], o, opts);
    },
  };
}
