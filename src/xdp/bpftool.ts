// Runs the XDP gateway program (and its ICMP error program, icmp.bpf.o beside it, when there is one) through
// `bpftool` without touching the machine's BPF state: private mount and network namespaces (`unshare --mount --net`)
// with their own bpffs, where the objects are loaded, their maps pinned and written, packets run through
// BPF_PROG_TEST_RUN and maps dumped, in one `bpftool batch`. Everything vanishes with the namespaces (the ICMP
// program's copies go out of that namespace's loopback, which drops them).
// Used by the program tests and the benchmark. Data reaches bpftool as argv and files, never a shell string.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { MapWrite, XdpMapName } from '../compile/xdp.ts';
import { SluiceError } from '../model/errors.ts';

export type { XdpMapName } from '../compile/xdp.ts';

/** XDP return codes (linux/bpf.h). */
export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;

export type XdpStep =
  | MapWrite
  | {
      readonly kind: 'run';
      readonly packet: Uint8Array;
      readonly repeat?: number;
      /** `icmp`: the tc program icmp.bpf.c (retval TC_ACT_*) instead of the XDP program. */
      readonly prog?: 'icmp';
    }
  | { readonly kind: 'dump'; readonly map: XdpMapName };

export type XdpStepResult =
  | { readonly kind: 'update' | 'delete' }
  | {
      readonly kind: 'run';
      readonly retval: number;
      readonly output: Uint8Array;
      readonly durationNs: number;
    }
  | { readonly kind: 'dump'; readonly entries: readonly DumpedEntry[] };

/** A map entry as bpftool dumps it: per-CPU maps have one value per CPU. */
export interface DumpedEntry {
  readonly key: Uint8Array;
  readonly values: readonly Uint8Array[];
}

/** tc return codes (linux/pkt_cls.h). */
export const TC_ACT = { OK: 0, SHOT: 2 } as const;

const PIN = '/sys/fs/bpf/sluice-test';
const PROG = `${PIN}/prog`;
const MAPS = `${PIN}/maps`;
const ICMP_PROG = `${PIN}/icmp`;
const ICMP_MAPS = `${PIN}/icmp-maps`;
const SCRIPT =
  'set -e; mount -t bpf bpf /sys/fs/bpf; mkdir -p "$3" "$7"; ip link set lo up; ' +
  'bpftool prog load "$1" "$4" type xdp pinmaps "$5"; ' +
  'if [ -f "$6" ]; then bpftool prog load "$6" "$8" type classifier map name sluice_active pinned "$5/sluice_active" ' +
  'map name sluice_config pinned "$5/sluice_config" pinmaps "$7"; fi; exec bpftool -j batch file "$2"';

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

function bytesOf(list: readonly string[]): Uint8Array {
  return Uint8Array.from(list.map((x) => Number.parseInt(x, 16)));
}

/** How a batch names a map: `pinned <path>` in the private bpffs, `id <n>` for a program attached to a device. */
export type MapRef = (map: XdpMapName) => string;

const privateMap: MapRef = (map) => `pinned ${map.startsWith('sluice_icmp') ? ICMP_MAPS : MAPS}/${map}`;

export function batchLine(step: XdpStep, dir: string, i: number, ref: MapRef = privateMap): string {
  switch (step.kind) {
    case 'update':
      return `map update ${ref(step.map)} key hex ${hex(step.entry.key)} value hex ${hex(step.entry.value)}`;
    case 'delete':
      return `map delete ${ref(step.map)} key hex ${hex(step.key)}`;
    case 'run': {
      writeFileSync(join(dir, `in${i}`), step.packet);
      // data_out must hold the packet plus the largest encapsulation.
      const size = step.packet.length + 256;
      return `prog run pinned ${step.prog === 'icmp' ? ICMP_PROG : PROG} data_in ${dir}/in${i} data_out ${dir}/out${i} data_size_out ${size} repeat ${step.repeat ?? 1}`;
    }
    case 'dump':
      return `map dump ${ref(step.map)}`;
  }
}

export interface BatchOutput {
  readonly command?: string[];
  readonly output?: unknown;
  readonly error?: string;
}

export function stepResult(step: XdpStep, out: BatchOutput, dir: string, i: number): XdpStepResult {
  if (step.kind === 'run') {
    const o = out.output as { retval: number; duration: number };
    return {
      kind: 'run',
      retval: o.retval,
      output: readFileSync(join(dir, `out${i}`)),
      durationNs: o.duration,
    };
  }
  if (step.kind === 'dump') {
    const rows = out.output as { key: string[]; value?: string[]; values?: { value: string[] }[] }[];
    return {
      kind: 'dump',
      entries: rows.map((r) => ({
        key: bytesOf(r.key),
        values: r.values ? r.values.map((v) => bytesOf(v.value)) : [bytesOf(r.value ?? [])],
      })),
    };
  }
  return { kind: step.kind };
}

export function execBpf(cmd: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 256 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const why = (stderr || stdout || err.message).trim().split('\n').slice(-6).join('\n');
        reject(new SluiceError('SLUICE_E_XDP', `${cmd} ${args.slice(0, 3).join(' ')}... failed: ${why}`));
      },
    );
  });
}

/** The results of `bpftool -j batch` for `steps`; SLUICE_E_XDP when a command failed or one is missing. */
export function batchResults(steps: readonly XdpStep[], stdout: string, dir: string): XdpStepResult[] {
  const outs = JSON.parse(stdout) as BatchOutput[];
  const failed = outs.find((o) => o.error !== undefined);
  if (failed || outs.length !== steps.length) {
    throw new SluiceError(
      'SLUICE_E_XDP',
      `bpftool batch: ${failed?.error ?? `${outs.length} results for ${steps.length} commands`}`,
    );
  }
  return steps.map((s, i) => stepResult(s, outs[i], dir, i));
}

/**
 * Loads `object` (a build of gateway.bpf.c) in a private bpffs and runs `steps` in order; one result per step.
 * Needs root. Throws SLUICE_E_XDP naming bpftool's complaint (a program the verifier rejects, a bad map entry).
 */
export async function runXdpSteps(
  object: string,
  steps: readonly XdpStep[],
  timeoutMs = 120_000,
): Promise<XdpStepResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-xdp-'));
  try {
    const lines = steps.map((s, i) => batchLine(s, dir, i));
    writeFileSync(join(dir, 'batch'), `${lines.join('\n')}\n`);
    const args = [
      '--mount',
      '--net',
      '--propagation',
      'private',
      'sh',
      '-c',
      SCRIPT,
      'sh',
      object,
      join(dir, 'batch'),
    ];
    const icmp = join(dirname(object), 'icmp.bpf.o');
    const stdout = await execBpf(
      'unshare',
      [...args, PIN, PROG, MAPS, icmp, ICMP_MAPS, ICMP_PROG],
      timeoutMs,
    );
    return batchResults(steps, stdout, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
