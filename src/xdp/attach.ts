// The XDP gateway program on a real device: load it and attach it (native XDP) to an interface inside a network
// namespace, with its ICMP error program (icmp.bpf.o beside it, tc ingress, sharing the copy index and the gateway
// config), find their maps, write them, detach them. The load runs under `ip netns exec`, whose private mount
// namespace gets its own bpffs for the pin that `bpftool net attach` needs; the pin vanishes with it, the
// attachment keeps the program (and the program its maps) alive, and later writes name the maps by id.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { MapWrite, XdpMapName } from '../compile/xdp.ts';
import { SluiceError } from '../model/errors.ts';
import { batchLine, batchResults, execBpf, type XdpStep, type XdpStepResult } from './bpftool.ts';

export interface XdpAttachment {
  readonly netns: string | undefined;
  readonly dev: string;
  readonly progId: number;
  readonly maps: Readonly<Record<XdpMapName, number>>;
}

const MAP_NAMES: readonly XdpMapName[] = [
  'sluice_active',
  'sluice_config',
  'sluice_vips',
  'sluice_slots',
  'sluice_stats',
  'sluice_icmpvips',
  'sluice_icmpconf',
  'sluice_icmpstat',
];
/** The tc filter's preference on the uplink's ingress (an unusual one, so that detaching removes only ours). */
export const ICMP_TC_PREF = '20819';
const ATTACH =
  'set -e; mount -t bpf bpf /sys/fs/bpf; mkdir /sys/fs/bpf/m; ' +
  'bpftool prog load "$1" /sys/fs/bpf/sluice-gw type xdp pinmaps /sys/fs/bpf/m; ' +
  'bpftool prog load "$3" /sys/fs/bpf/sluice-icmp type classifier ' +
  'map name sluice_active pinned /sys/fs/bpf/m/sluice_active map name sluice_config pinned /sys/fs/bpf/m/sluice_config; ' +
  'tc qdisc replace dev "$2" clsact; ' +
  `tc filter replace dev "$2" ingress pref ${ICMP_TC_PREF} handle 1 bpf direct-action object-pinned /sys/fs/bpf/sluice-icmp; ` +
  'bpftool net attach xdpdrv pinned /sys/fs/bpf/sluice-gw dev "$2" overwrite; ' +
  'bpftool -j prog show pinned /sys/fs/bpf/sluice-gw; echo; exec bpftool -j prog show pinned /sys/fs/bpf/sluice-icmp';
const DETACH = `ip link set dev "$1" xdp off; tc filter del dev "$1" ingress pref ${ICMP_TC_PREF} 2>/dev/null || true`;

/** `cmd args` inside `netns` (`ip netns exec`: a private mount namespace too), or, with no netns, in a private mount
 *  namespace of the caller's network namespace (the bpffs mount must not leak into the machine's). */
function inNetns(netns: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return netns === undefined
    ? ['unshare', ['--mount', '--propagation', 'private', cmd, ...args]]
    : ['ip', ['netns', 'exec', netns, cmd, ...args]];
}

/** Loads `object` and attaches it to `dev` in `netns` (undefined: the caller's) as native XDP, replacing a program
 *  left attached (a restarted agent's), and `icmp.bpf.o` from the same directory on the tc ingress of `dev`.
 *  Throws SLUICE_E_XDP (the verifier's or the driver's complaint). */
export async function attachXdp(
  netns: string | undefined,
  dev: string,
  object: string,
  timeoutMs = 60_000,
): Promise<XdpAttachment> {
  const icmp = join(dirname(object), 'icmp.bpf.o');
  const out = await execBpf(...inNetns(netns, 'sh', ['-c', ATTACH, 'sh', object, dev, icmp]), timeoutMs);
  const [prog, tc] = out
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { id: number; map_ids: number[] });
  const maps: Partial<Record<XdpMapName, number>> = {};
  for (const id of [...prog.map_ids, ...tc.map_ids]) {
    const m = JSON.parse(await execBpf('bpftool', ['-j', 'map', 'show', 'id', String(id)], timeoutMs)) as {
      name: string;
    };
    if ((MAP_NAMES as readonly string[]).includes(m.name)) maps[m.name as XdpMapName] = id;
  }
  const missing = MAP_NAMES.filter((n) => maps[n] === undefined);
  if (missing.length > 0) {
    await detachXdp(netns, dev);
    throw new SluiceError(
      'SLUICE_E_XDP',
      `program ${prog.id} on ${dev} (${netns ?? 'this namespace'}) has no map ${missing.join(', ')}`,
    );
  }
  return { netns, dev, progId: prog.id, maps: maps as Record<XdpMapName, number> };
}

/** Attaches pass.bpf.o (every frame XDP_PASS) to `dev` in `netns`: the peer of a veth whose other end runs the
 *  gateway, which the kernel delivers XDP_TX'd frames to only when it runs XDP itself. */
export async function attachXdpPass(
  netns: string,
  dev: string,
  object: string,
  timeoutMs = 30_000,
): Promise<void> {
  const args = [
    'netns',
    'exec',
    netns,
    'ip',
    'link',
    'set',
    'dev',
    dev,
    'xdpdrv',
    'obj',
    object,
    'sec',
    'xdp',
  ];
  await execBpf('ip', args, timeoutMs);
}

export async function detachXdp(netns: string | undefined, dev: string, timeoutMs = 30_000): Promise<void> {
  await execBpf(...inNetns(netns, 'sh', ['-c', DETACH, 'sh', dev]), timeoutMs);
}

/** Runs map writes and dumps against the attached program's maps, in order, in one `bpftool batch`. */
export async function attachedSteps(
  att: XdpAttachment,
  steps: readonly (MapWrite | Extract<XdpStep, { kind: 'dump' }>)[],
  timeoutMs = 60_000,
): Promise<XdpStepResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-xdp-'));
  try {
    const lines = steps.map((s, i) => batchLine(s, dir, i, (m) => `id ${att.maps[m]}`));
    writeFileSync(join(dir, 'batch'), `${lines.join('\n')}\n`);
    return batchResults(
      steps,
      await execBpf('bpftool', ['-j', 'batch', 'file', join(dir, 'batch')], timeoutMs),
      dir,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Per-VIP counters summed over the CPUs, by counter index (struct vip_stats of gateway.bpf.c). */
export interface XdpVipCounters {
  readonly packets: number;
  readonly bytes: number;
  readonly dropNoSlot: number;
  readonly dropNoRoom: number;
  /** VIP frames addressed to another MAC than the gateway's. */
  readonly dropNotMine: number;
}

/** The ICMP program's counters summed over the CPUs (struct icmp_stats of icmp.bpf.c). */
export interface XdpIcmpCounters {
  /** ICMP errors to a VIP that reached the meter. */
  readonly errors: number;
  /** Copies sent to hosts. */
  readonly copies: number;
  /** Errors the meter dropped. */
  readonly dropped: number;
  /** Copies the kernel refused (headroom, redirect). */
  readonly refused: number;
}

export function sumIcmpCounters(
  entries: Extract<XdpStepResult, { kind: 'dump' }>['entries'],
): XdpIcmpCounters {
  const sum = (i: number) =>
    entries.reduce(
      (n, e) =>
        n +
        e.values.reduce((m, v) => m + Number(new DataView(v.buffer, v.byteOffset).getBigUint64(i, true)), 0),
      0,
    );
  return { errors: sum(0), copies: sum(8), dropped: sum(16), refused: sum(24) };
}

export function sumCounters(
  entries: Extract<XdpStepResult, { kind: 'dump' }>['entries'],
): Map<number, XdpVipCounters> {
  const out = new Map<number, XdpVipCounters>();
  for (const e of entries) {
    const at = (v: Uint8Array, i: number) =>
      Number(new DataView(v.buffer, v.byteOffset).getBigUint64(i, true));
    const sum = (i: number) => e.values.reduce((n, v) => n + at(v, i), 0);
    const index = new DataView(e.key.buffer, e.key.byteOffset).getUint32(0, true);
    const c = {
      packets: sum(0),
      bytes: sum(8),
      dropNoSlot: sum(16),
      dropNoRoom: sum(24),
      dropNotMine: sum(32),
    };
    if (Object.values(c).some((n) => n > 0)) out.set(index, c);
  }
  return out;
}

/** The ids of the sluice maps that loaded program `progId` uses, by name (read-only; the lab's read-back). */
export async function programMaps(
  progId: number,
  timeoutMs = 30_000,
): Promise<Partial<Record<XdpMapName, number>>> {
  const show = async (args: string[]) => JSON.parse(await execBpf('bpftool', ['-j', ...args], timeoutMs));
  const ids = new Set(
    ((await show(['prog', 'show', 'id', String(progId)])) as { map_ids?: number[] }).map_ids,
  );
  const all = (await show(['map', 'show'])) as { id: number; name?: string }[];
  return Object.fromEntries(
    all
      .filter((m) => ids.has(m.id) && (MAP_NAMES as readonly string[]).includes(m.name ?? ''))
      .map((m) => [m.name, m.id]),
  );
}
