// The OpenFlow applier (I/O): read what is installed on a bridge, keep only what sluice owns (flows with the sluice
// cookie tag, group ids in sluice's range), diff against the desired state and send ONE atomic
// `ovs-ofctl -O OpenFlow15 bundle <br> -` per change (src/flowset/diff.ts orders it safely).
//
// Guarantees:
// - Nothing outside sluice's cookies / group ids is modified or deleted; a desired flow that would replace a
//   foreign flow (same table, priority and match) is refused (SLUICE_E_OPENFLOW_CONFLICT) before anything is sent.
// - Idempotent: when installed == desired nothing is sent and `changed` is false.
// - Atomic: ovs-vswitchd applies the whole bundle or nothing; a rejected bundle leaves the bridge unchanged and is
//   reported as SLUICE_E_OPENFLOW_REJECTED with ovs-ofctl's stderr. One exception, a first install of more than
//   FIRST_INSTALL_BUNDLE_LINES on a bridge that holds none of sluice's flows (agent start, ovs-vswitchd restart):
//   `ovs-ofctl bundle` parses its whole input before it sends it (about 5 KiB of its memory per line, 13.9 GB for
//   a gateway at 10,000 VIPs), so it goes in several bundles, the groups in the first, the load balancers' flows
//   next and the node-wide flows (cookie lb id 0) in the last. Every state in between is a subset of the desired
//   flows added to nothing of sluice's: a packet takes its final path or meets no sluice flow, as before.
// - Groups are modified in place with their full bucket list, never deleted and re-added; a group is deleted only
//   after (in the same bundle) every flow that referenced it, and never while a foreign flow references it.
// - After an ovs-vswitchd restart (empty tables, no TLV map) the same call restores everything.
// - Verified: after a commit the bridge is read again and must equal the desired state (SLUICE_E_OPENFLOW_VERIFY);
//   this also proves the compiler's text is canonical (what OVS prints back). Above STREAM_VERIFY_FLOWS desired
//   flows every read is streamed, the one before the diff too: each printed flow goes into per-load-balancer
//   digests (src/flowset/digest.ts) and is dropped, so memory does not grow with the dump (695 MiB of text at
//   10,000 VIPs); only the load balancers whose digests differ are read again (by cookie, or picked from one more
//   dump) to be diffed, or to name the difference.
// - Meters (a host's SYN meter) are outside bundles: new or changed ones are sent before the bundle (a flow naming a
//   missing meter is refused), unwanted ones deleted after it (deleting a meter deletes the flows naming it: by then
//   the bundle removed sluice's). Only meter ids in sluice's range are read, changed or deleted.
// applyBridgeDelta is the incremental variant (no read, no verification): it trusts that the caller knows what it
// installed last; src/agent/node-ops.ts NodeProgrammer falls back to applyBridge whenever it does not.

import { isLbPart } from '../compile/incremental.ts';
import {
  cookieLb,
  cookieLbMatch,
  isSluiceCookie,
  isSluiceGroup,
  isSluiceMeter,
} from '../compile/registry.ts';
import {
  type BridgeDiff,
  bundleChunks,
  bundleLineCount,
  bundleLines,
  diffBridge,
  diffMeters,
  diffParts,
  isEmptyDiff,
  isEmptyMeterDiff,
  type MeterDiff,
  tlvMapArg,
} from '../flowset/diff.ts';
import { FlowDigest } from '../flowset/digest.ts';
import {
  meterArg,
  parseDumpFlowLine,
  parseDumpGroups,
  parseDumpMeters,
  parseDumpTlvMap,
} from '../flowset/text.ts';
import { type BridgeState, type Flow, type FlowSet, flowKey, type Meter } from '../flowset/types.ts';
import { SluiceError } from '../model/errors.ts';
import type { Runner } from './runner.ts';

export interface Installed {
  /** What sluice owns on the bridge (+ the whole TLV map). */
  readonly owned: BridgeState;
  /** Flows with other cookies: never touched. */
  readonly foreign: readonly Flow[];
}

export interface ApplyResult {
  readonly bridge: string;
  /** True when anything was sent (bundle or TLV map). */
  readonly changed: boolean;
  /** How many lines the bundle sent had (0 when nothing changed). */
  readonly bundleLines: number;
  /** Those lines, when at most BUNDLE_KEEP_LINES (for logs and tests); a larger bundle (a first install) was
   *  streamed to ovs-ofctl while it was rendered and is not kept: then empty. */
  readonly bundle: readonly string[];
  /** Meter commands sent around the bundle (`add-meter meter=...`, `mod-meter ...`, `del-meter meter=N`). */
  readonly meterCommands: readonly string[];
  readonly tlvAdded: number;
  /** Group ids sluice no longer wants but kept because a remaining flow references them. */
  readonly keptGroups: readonly number[];
  /** Flows with other cookies found on the bridge (read by applyBridge; applyBridgeDelta passes its input on). */
  readonly foreign: readonly Flow[];
}

export interface ApplyOptions {
  /** Re-read after a commit and require installed == desired (default true). */
  readonly verify?: boolean;
  /** Verify by streamed digests above this many desired flows (default STREAM_VERIFY_FLOWS). */
  readonly streamVerifyAbove?: number;
}

/** Desired flows of a bridge above which the verification after a bundle streams the dump (digests per load
 *  balancer) instead of holding every installed flow. */
export const STREAM_VERIFY_FLOWS = 50_000;

/** A first install with more lines than this is sent in several bundles of at most this many (see the top). */
export const FIRST_INSTALL_BUNDLE_LINES = 100_000;

/** An incremental apply with more lines than this sends new load balancers in bundles of about this many first
 *  (incrementalPieces). */
export const INCREMENTAL_BUNDLE_LINES = 100_000;

/** Bundles up to this many lines are kept in ApplyResult.bundle. */
export const BUNDLE_KEEP_LINES = 10_000;

function tail(s: string): string {
  return s.trim().split('\n').slice(-10).join('\n');
}

/**
 * Hands every flow `dump-flows <bridge> [filter]` prints to `onFlow`, parsed, one line at a time (through the
 * runner's ofctlLines when it has one: the text is then never held whole).
 */
async function streamFlows(
  runner: Runner,
  bridge: string,
  filter: readonly string[],
  onFlow: (f: Flow) => void,
): Promise<void> {
  const onLine = (line: string) => {
    const f = parseDumpFlowLine(line);
    if (f !== undefined) onFlow(f);
  };
  let r: { code: number; stderr: string };
  try {
    if (runner.ofctlLines)
      r = await runner.ofctlLines(bridge, ['dump-flows', ...filter], onLine, { allowFail: true });
    else {
      const out = await runner.ofctl(bridge, ['dump-flows', ...filter], { allowFail: true });
      if (out.code === 0) for (const line of out.stdout.split('\n')) onLine(line);
      r = out;
    }
  } catch (e) {
    throw new SluiceError('SLUICE_E_OPENFLOW_DUMP', `${bridge}: ${(e as Error).message}`);
  }
  if (r.code !== 0)
    throw new SluiceError(
      'SLUICE_E_OPENFLOW_DUMP',
      `ovs-ofctl dump-flows ${bridge} failed: ${tail(r.stderr)}`,
    );
}

/** Reads a bridge's groups, TLV map and meters (sluice's groups and meters as `owned`, no flows). */
async function readInstalledTables(runner: Runner, bridge: string): Promise<BridgeState> {
  const [groupsR, tlvR, metersR] = await Promise.all([
    runner.ofctl(bridge, ['dump-groups'], { allowFail: true }),
    runner.ofctl(bridge, ['dump-tlv-map'], { allowFail: true }),
    runner.ofctl(bridge, ['dump-meters'], { allowFail: true }),
  ]);
  for (const [what, r] of [
    ['dump-groups', groupsR],
    ['dump-tlv-map', tlvR],
    ['dump-meters', metersR],
  ] as const) {
    if (r.code !== 0) {
      throw new SluiceError(
        'SLUICE_E_OPENFLOW_DUMP',
        `ovs-ofctl ${what} ${bridge} failed: ${tail(r.stderr)}`,
      );
    }
  }
  let meters: Meter[];
  try {
    meters = parseDumpMeters(metersR.stdout).filter((m) => isSluiceMeter(m.meterId));
  } catch (e) {
    throw new SluiceError('SLUICE_E_OPENFLOW_DUMP', `${bridge}: ${(e as Error).message}`);
  }
  return {
    flows: [],
    groups: parseDumpGroups(groupsR.stdout).filter((g) => isSluiceGroup(g.groupId)),
    tlvMap: parseDumpTlvMap(tlvR.stdout),
    ...(meters.length > 0 ? { meters } : {}),
  };
}

/** Reads a bridge's flows, groups and TLV map. */
export async function readInstalled(runner: Runner, bridge: string): Promise<Installed> {
  const owned: Flow[] = [];
  const foreign: Flow[] = [];
  const [tables] = await Promise.all([
    readInstalledTables(runner, bridge),
    streamFlows(runner, bridge, [], (f) => (isSluiceCookie(f.cookie) ? owned : foreign).push(f)),
  ]);
  return { owned: { ...tables, flows: owned }, foreign };
}

/** What a streamed read of a bridge found: its groups, TLV map and meters, its foreign flows, how many of sluice's
 *  flows it printed, and the load balancer ids (cookie lb, 0 = node-wide) where those differ from `desired`. */
interface DigestRead {
  readonly tables: BridgeState;
  readonly foreign: Flow[];
  readonly printed: number;
  readonly unequal: number[];
}

/**
 * Reads a bridge without holding its flows: every sluice flow the switch prints goes into a digest per load balancer
 * id and is dropped, every desired flow comes out of it (src/flowset/digest.ts). A gateway at 10,000 VIPs prints
 * 2.6 M flows (695 MiB of text); held as parsed flows with a key each they took over 1 GiB.
 */
async function digestRead(runner: Runner, bridge: string, desired: BridgeState): Promise<DigestRead> {
  const digest = new FlowDigest((f) => cookieLb(f.cookie));
  const foreign: Flow[] = [];
  let printed = 0;
  const [tables] = await Promise.all([
    readInstalledTables(runner, bridge),
    streamFlows(runner, bridge, [], (f) => {
      if (!isSluiceCookie(f.cookie)) return void foreign.push(f);
      printed++;
      digest.add(f, 1);
    }),
  ]);
  for (const f of desired.flows) digest.add(f, -1);
  return { tables, foreign, printed, unequal: digest.unequal() };
}

/** Load balancers read again by cookie, one dump each, up to this many; more are picked from one more full dump. */
const READ_BY_COOKIE_MAX = 8;

/** Sluice's installed flows of the load balancer ids `lbs` (by cookie, or filtered from one more streamed dump). */
async function readLbFlows(runner: Runner, bridge: string, lbs: readonly number[]): Promise<Flow[]> {
  const out: Flow[] = [];
  if (lbs.length <= READ_BY_COOKIE_MAX) {
    for (const lb of lbs) await streamFlows(runner, bridge, [cookieLbMatch(lb)], (f) => out.push(f));
    return out;
  }
  const want = new Set(lbs);
  await streamFlows(runner, bridge, [], (f) => {
    if (isSluiceCookie(f.cookie) && want.has(cookieLb(f.cookie))) out.push(f);
  });
  return out;
}

/**
 * What applyBridge diffs above the streaming threshold: the installed state read by digests (digestRead), holding
 * only the flows of the load balancers that differ, and the desired flows of those. An agent restarted on a switch
 * that already holds its flows then keeps none of them (nothing differs), and one that missed a change holds the
 * changed load balancers' flows only. When every load balancer differs (a hash mode or slot bits change while the
 * agent was down) they are all read, as without digests.
 */
async function readDiffering(
  runner: Runner,
  bridge: string,
  desired: BridgeState,
): Promise<{ installed: Installed; desiredFlows: readonly Flow[]; ownedFlows: number }> {
  const r = await digestRead(runner, bridge, desired);
  const lbs = new Set(r.unequal);
  // Nothing of sluice's installed: every desired flow is an addition, no second read.
  const flows = r.printed === 0 ? [] : await readLbFlows(runner, bridge, r.unequal);
  const desiredFlows =
    r.printed === 0 ? desired.flows : desired.flows.filter((f) => lbs.has(cookieLb(f.cookie)));
  return {
    installed: { owned: { ...r.tables, flows }, foreign: r.foreign },
    desiredFlows,
    ownedFlows: r.printed,
  };
}

/**
 * Verification after a bundle without holding the dump (digestRead); the load balancers left unequal are read again
 * by cookie and diffed to name the first difference. Groups, the TLV map and meters are compared as in applyBridge.
 */
async function verifyStreamed(runner: Runner, bridge: string, desired: BridgeState): Promise<void> {
  const { tables, foreign, printed, unequal: lbs } = await digestRead(runner, bridge, desired);
  const m = meterCommands(diffMeters(desired.meters ?? [], tables.meters ?? []));
  const rest = [
    ...bundleLines(diffBridge({ ...desired, flows: [] }, tables, foreign)),
    ...[...m.before, ...m.after].map((c) => c.join(' ')),
  ];
  // The first few unequal load balancers, read again by cookie, name the difference.
  for (const lb of lbs.slice(0, 3)) {
    const installed = await readLbFlows(runner, bridge, [lb]);
    const want = desired.flows.filter((f) => cookieLb(f.cookie) === lb);
    rest.push(
      ...bundleLines(
        diffBridge({ ...desired, flows: want, groups: [] }, { ...tables, flows: installed, groups: [] }),
      ),
    );
  }
  if (rest.length > 0 || lbs.length > 0) {
    throw new SluiceError(
      'SLUICE_E_OPENFLOW_VERIFY',
      `${bridge}: after the bundle ${lbs.length} load balancer id(s) differ (streamed check of ${printed} flows` +
        ` against ${desired.flows.length} desired)${rest.length > 0 ? `, first difference: ${rest[0]}` : ''}`,
    );
  }
}

/** Throws SLUICE_E_OPENFLOW_CONFLICT when one of `flows` has the key (table, priority, match) of a foreign flow. */
function refuseForeignClashes(bridge: string, flows: readonly Flow[], foreign: readonly Flow[]): void {
  if (foreign.length === 0) return;
  const foreignKeys = new Set(foreign.map(flowKey));
  const clashes = flows.filter((f) => foreignKeys.has(flowKey(f)));
  if (clashes.length > 0) {
    throw new SluiceError(
      'SLUICE_E_OPENFLOW_CONFLICT',
      `${bridge}: ${clashes.length} desired flow(s) would replace flows sluice does not own, e.g. ${flowKey(clashes[0])}`,
    );
  }
}

/** Makes one bridge's sluice-owned state equal `desired`, in at most one bundle (plus a TLV map addition). */
export async function applyBridge(
  runner: Runner,
  bridge: string,
  desired: BridgeState,
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  const streamed = desired.flows.length > (opts.streamVerifyAbove ?? STREAM_VERIFY_FLOWS);
  const read = streamed
    ? await readDiffering(runner, bridge, desired)
    : await readInstalled(runner, bridge).then((installed) => ({
        installed,
        desiredFlows: desired.flows,
        ownedFlows: installed.owned.flows.length,
      }));
  const { installed } = read;
  refuseForeignClashes(bridge, desired.flows, installed.foreign);
  // Only the differing load balancers' flows on both sides; every desired flow still counts as a group reference.
  const diff = diffBridge(
    { ...desired, flows: read.desiredFlows },
    installed.owned,
    installed.foreign,
    desired.flows,
  );
  if (diff.conflictingTlv.length > 0) {
    throw new SluiceError(
      'SLUICE_E_OPENFLOW_TLV',
      `${bridge}: the TLV map already maps ${tlvMapArg(diff.conflictingTlv)} (sluice needs ${tlvMapArg(desired.tlvMap)})`,
    );
  }
  if (diff.addTlv.length > 0) {
    const r = await runner.ofctl(bridge, ['add-tlv-map', tlvMapArg(diff.addTlv)], { allowFail: true });
    if (r.code !== 0) {
      throw new SluiceError('SLUICE_E_OPENFLOW_TLV', `${bridge}: add-tlv-map failed: ${tail(r.stderr)}`);
    }
  }
  const keptGroups = diff.keptGroups.map((g) => g.groupId);
  const meters = diffMeters(desired.meters ?? [], installed.owned.meters ?? []);
  if (isEmptyDiff(diff) && isEmptyMeterDiff(meters)) {
    return {
      bridge,
      changed: diff.addTlv.length > 0,
      bundleLines: 0,
      bundle: [],
      meterCommands: [],
      tlvAdded: diff.addTlv.length,
      keptGroups,
      foreign: installed.foreign,
    };
  }
  const firstInstall = read.ownedFlows === 0 && installed.owned.groups.length === 0;
  const pieces = firstInstall ? firstInstallPieces(diff, FIRST_INSTALL_BUNDLE_LINES) : [diff];
  const sentMeters = await sendWithMeters(runner, bridge, diff, meters, pieces);
  if ((opts.verify ?? true) && streamed) {
    await verifyStreamed(runner, bridge, desired);
  } else if (opts.verify ?? true) {
    const after = await readInstalled(runner, bridge);
    const m = meterCommands(diffMeters(desired.meters ?? [], after.owned.meters ?? []));
    const rest = [
      ...bundleLines(diffBridge(desired, after.owned, after.foreign)),
      ...[...m.before, ...m.after].map((c) => c.join(' ')),
    ];
    if (rest.length > 0) {
      throw new SluiceError(
        'SLUICE_E_OPENFLOW_VERIFY',
        `${bridge}: after the bundle ${rest.length} difference(s) remain, first: ${rest[0]}`,
      );
    }
  }
  return {
    bridge,
    changed: true,
    ...sentLines(diff),
    meterCommands: sentMeters,
    tlvAdded: diff.addTlv.length,
    keptGroups,
    foreign: installed.foreign,
  };
}

/**
 * Incremental apply (ovn-controller's ofctrl: desired vs installed tables): makes one bridge equal `desired` given
 * that `installed` is exactly what this process installed there last (applyBridge, or this function, succeeded),
 * without reading the switch: diffParts skips parts that are the same object, the rest goes in at most one bundle,
 * and nothing is read back. `foreign` is what the last full read found outside sluice's cookies: a desired flow
 * clashing with one is still refused. The TLV map is not touched (it is part of the node part and constant; a full
 * applyBridge installs it). `changed`: the only part names whose states may differ between the two (the compile
 * knows them). The caller must fall back to applyBridge when it does not know what is installed (start,
 * ovs-vswitchd restart, a failed bundle): see src/agent/node-ops.ts NodeProgrammer.
 */
export async function applyBridgeDelta(
  runner: Runner,
  bridge: string,
  desired: ReadonlyMap<string, BridgeState>,
  installed: ReadonlyMap<string, BridgeState>,
  foreign: readonly Flow[],
  changed?: ReadonlySet<string>,
): Promise<ApplyResult> {
  const diff = diffParts(desired, installed, foreign, changed);
  refuseForeignClashes(bridge, diff.addFlows, foreign);
  const keptGroups = diff.keptGroups.map((g) => g.groupId);
  const meters = diffMeters(partsMeters(desired, changed), partsMeters(installed, changed));
  if (isEmptyDiff(diff) && isEmptyMeterDiff(meters))
    return {
      bridge,
      changed: false,
      bundleLines: 0,
      bundle: [],
      meterCommands: [],
      tlvAdded: 0,
      keptGroups,
      foreign,
    };
  const pieces = incrementalPieces(desired, installed, foreign, diff, INCREMENTAL_BUNDLE_LINES);
  const sentMeters = await sendWithMeters(runner, bridge, diff, meters, pieces);
  return {
    bridge,
    changed: true,
    ...sentLines(diff),
    meterCommands: sentMeters,
    tlvAdded: 0,
    keptGroups,
    foreign,
  };
}

/**
 * An incremental diff (`diff`, of `desired` against `installed` by parts) in bundles of at most about `lines`
 * lines when it is larger: `ovs-ofctl bundle` holds about 5 KiB per line it parses (a 1,000-VIP step on a gateway
 * is 261,000 lines; a slotBits change at 10,000 VIPs rewrites 7.7 M). The first bundles carry whole load balancer
 * parts, new or changed, each part's lines in one bundle (several parts per bundle, a part never split); the last one
 * is everything else as one bundle: the node part, the VIP parts, removed parts, and parts that share a flow key or group id with
 * another part's changes. Safe because each state in between is the installed state with some load balancers
 * wholly on the target and the others wholly as installed, and load balancer parts do not reference one another:
 * a part's flows match only its own VIPs and ports or its own load balancer id, and reference only its own group.
 * A new load balancer gets no traffic before the node part steers it (gateway br-phy steers a VIP to br-int only in
 * the last bundle; a host receives a VIP's packets only after the gateways apply the generation); a changed one
 * (slot bits, hash mode, a host's address) switches from its installed flows to its target ones in one bundle, as a
 * gateway that applies the generation a moment later would. A flow key or group id in two parts' changes (an id or a
 * VIP that moved between load balancers) keeps both parts in the last bundle, where the delete comes before the add.
 */
export function incrementalPieces(
  desired: ReadonlyMap<string, BridgeState>,
  installed: ReadonlyMap<string, BridgeState>,
  foreign: readonly Flow[],
  diff: BridgeDiff,
  lines: number,
): BridgeDiff[] {
  if (bundleLineCount(diff) <= lines) return [diff];
  const pieces: BridgeDiff[] = [];
  const done = new Map(installed);
  let batch: BridgeDiff[] = [];
  let batchLines = 0;
  const flush = () => {
    if (batch.length > 0) pieces.push(joinDiffs(batch));
    batch = [];
    batchLines = 0;
  };
  for (const [name, d] of earlyParts(desired, installed, foreign, diff)) {
    const n = bundleLineCount(d);
    if (batchLines > 0 && batchLines + n > lines) flush();
    batch.push(d);
    batchLines += n;
    done.set(name, desired.get(name)!);
  }
  flush();
  if (pieces.length === 0) return [diff];
  const rest = diffParts(desired, done, foreign);
  return isEmptyDiff(rest) ? pieces : [...pieces, rest];
}

/**
 * The load balancer parts that may go before the rest (incrementalPieces), each with its own diff, in name order:
 * new or changed load balancer parts (not the node part nor a VIP part), and no flow key or group id of theirs in another part's changes. Within one
 * bridge a desired flow key belongs to one part and so does an installed one, and a part's changed flow is an add
 * only, so a key two parts touch is one some part adds and another deletes: the keys `diff` both adds and deletes.
 */
function earlyParts(
  desired: ReadonlyMap<string, BridgeState>,
  installed: ReadonlyMap<string, BridgeState>,
  foreign: readonly Flow[],
  diff: BridgeDiff,
): Map<string, BridgeDiff> {
  const deleted = new Set(diff.deleteFlows.map(flowKey));
  const groupParts = new Map<number, number>();
  const own = new Map<string, BridgeDiff>();
  for (const name of [...new Set([...desired.keys(), ...installed.keys()])].sort()) {
    const d = desired.get(name);
    const i = installed.get(name);
    if (d === i) continue;
    const one = (s: BridgeState | undefined) => new Map(s === undefined ? [] : [[name, s]]);
    const part = diffParts(one(d), one(i), foreign);
    for (const id of touchedGroups(part)) groupParts.set(id, (groupParts.get(id) ?? 0) + 1);
    // The node part, VIP parts (a gateway's br-phy steers a VIP to br-int there) and removed parts go last; they
    // still count for the groups they touch.
    if (isLbPart(name) && d !== undefined && !isEmptyDiff(part)) own.set(name, part);
  }
  for (const [name, part] of own) {
    const shared =
      touchedGroups(part).some((id) => (groupParts.get(id) ?? 0) > 1) ||
      (deleted.size > 0 && part.addFlows.some((f) => deleted.has(flowKey(f))));
    if (shared) own.delete(name);
  }
  return own;
}

function touchedGroups(d: BridgeDiff): number[] {
  return [...d.addGroups, ...d.modifyGroups, ...d.deleteGroups].map((g) => g.groupId);
}

/** Diffs of disjoint parts as one (what diffParts gives for their union when no group id moves between them). */
function joinDiffs(diffs: readonly BridgeDiff[]): BridgeDiff {
  const all = <K extends keyof BridgeDiff>(k: K) => diffs.flatMap((d) => d[k] as readonly unknown[]) as never;
  return {
    deleteFlows: all('deleteFlows'),
    addFlows: all('addFlows'),
    addGroups: all('addGroups'),
    modifyGroups: all('modifyGroups'),
    deleteGroups: all('deleteGroups'),
    keptGroups: all('keptGroups'),
    addTlv: all('addTlv'),
    conflictingTlv: all('conflictingTlv'),
  };
}

/** The meters of `parts` (of those named in `only`: a part's meter ids are its own, like its flows). */
function partsMeters(parts: ReadonlyMap<string, BridgeState>, only?: ReadonlySet<string>): Meter[] {
  const out: Meter[] = [];
  const of = (p: BridgeState | undefined) => {
    if (p?.meters !== undefined) out.push(...p.meters);
  };
  if (only !== undefined) for (const name of only) of(parts.get(name));
  else for (const p of parts.values()) of(p);
  return out;
}

/** The `ovs-ofctl` arguments (after the bridge) of a meter diff: those to run before the bundle, and after it. */
function meterCommands(d: MeterDiff): { before: string[][]; after: string[][] } {
  return {
    before: [
      ...d.add.map((m) => ['add-meter', meterArg(m)]),
      ...d.modify.map((m) => ['mod-meter', meterArg(m)]),
    ],
    after: d.remove.map((m) => ['del-meter', `meter=${m.meterId}`]),
  };
}

/** ApplyResult's account of a bundle that was sent: its line count, and its lines when there are few. */
function sentLines(diff: BridgeDiff): { bundleLines: number; bundle: readonly string[] } {
  const n = bundleLineCount(diff);
  return { bundleLines: n, bundle: n <= BUNDLE_KEEP_LINES ? bundleLines(diff) : [] };
}

/** Adds/modifies meters, sends the bundle (if any line), deletes meters; returns the meter commands sent. A failed
 *  meter command throws SLUICE_E_OPENFLOW_REJECTED (meters already sent stay: the next full apply repairs them). */
async function sendWithMeters(
  runner: Runner,
  bridge: string,
  diff: BridgeDiff,
  d: MeterDiff,
  pieces: readonly BridgeDiff[] = [diff],
): Promise<string[]> {
  const cmds = meterCommands(d);
  const meter = async (args: string[]) => {
    const r = await runner.ofctl(bridge, args, { allowFail: true });
    if (r.code !== 0)
      throw new SluiceError(
        'SLUICE_E_OPENFLOW_REJECTED',
        `${bridge}: ovs-ofctl ${args.join(' ')} failed: ${tail(r.stderr)}`,
      );
  };
  for (const c of cmds.before) await meter(c);
  for (const piece of pieces) if (bundleLineCount(piece) > 0) await sendBundleDiff(runner, bridge, piece);
  for (const c of cmds.after) await meter(c);
  return [...cmds.before, ...cmds.after].map((c) => c.join(' '));
}

/**
 * A first install's diff (only additions) in pieces of at most `lines` bundle lines: every group in the first, the
 * load balancers' flows in order, the node-wide flows (cookie lb id 0) in the last (see the top of this file).
 */
export function firstInstallPieces(diff: BridgeDiff, lines: number): BridgeDiff[] {
  if (bundleLineCount(diff) <= lines) return [diff];
  const flows = [
    ...diff.addFlows.filter((f) => cookieLb(f.cookie) !== 0),
    ...diff.addFlows.filter((f) => cookieLb(f.cookie) === 0),
  ];
  const pieces: BridgeDiff[] = [];
  const none = { deleteFlows: [], modifyGroups: [], deleteGroups: [], addGroups: [] };
  let at = Math.max(0, lines - diff.addGroups.length);
  pieces.push({ ...diff, ...none, addGroups: diff.addGroups, addFlows: flows.slice(0, at) });
  for (; at < flows.length; at += lines)
    pieces.push({ ...diff, ...none, addFlows: flows.slice(at, at + lines) });
  return pieces;
}

/** Sends a diff's bundle as one atomic `ovs-ofctl bundle`, its text streamed to ovs-ofctl's stdin in chunks as it
 *  is rendered (bundleChunks): one transaction, however many lines. */
export async function sendBundleDiff(runner: Runner, bridge: string, diff: BridgeDiff): Promise<void> {
  const lines = bundleLineCount(diff);
  const r = await runner.ofctl(bridge, ['bundle', '-'], { input: bundleChunks(diff), allowFail: true });
  if (r.code !== 0) {
    throw new SluiceError(
      'SLUICE_E_OPENFLOW_REJECTED',
      `${bridge}: ovs-vswitchd rejected the bundle (${lines} lines); nothing was changed:\n${tail(r.stderr)}`,
    );
  }
}

export interface FlowSetApplyResult {
  readonly changed: boolean;
  readonly bridges: readonly ApplyResult[];
}

/** Applies every bridge of a node's FlowSet (one bundle per bridge that changed; bridges in name order). */
export async function applyFlowSet(
  runner: Runner,
  fs: FlowSet,
  opts: ApplyOptions = {},
): Promise<FlowSetApplyResult> {
  const bridges: ApplyResult[] = [];
  for (const name of [...fs.bridges.keys()].sort()) {
    bridges.push(await applyBridge(runner, name, fs.bridges.get(name)!, opts));
  }
  return { changed: bridges.some((b) => b.changed), bridges };
}

/**
 * `ovs-appctl revalidator/wait`: returns after the revalidator threads have completed a full pass that started after
 * the call, i.e. every datapath flow cached before it (translated with the old tables) has been re-translated
 * against the tables now installed, and updated or deleted. After applyFlowSet + revalidate, no cached datapath
 * flow still forwards per the previous generation (packets already queued for upcall may still be handled by the
 * old translation in that instant). This is what an acknowledgement of a generation means (docs/design/overview.md).
 */
export async function revalidate(runner: Runner): Promise<void> {
  const r = await runner.appctl(['revalidator/wait'], { allowFail: true });
  if (r.code !== 0) {
    throw new SluiceError(
      'SLUICE_E_OPENFLOW_REVALIDATE',
      `ovs-appctl revalidator/wait failed: ${tail(r.stderr)}`,
    );
  }
}
