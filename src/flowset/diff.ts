// diff(desired, installed) -> the minimal bundle that turns installed into desired. Pure.
//
// Ordering inside the one bundle (ovs-ofctl applies it atomically; one bad line rolls everything back):
//   1. flow delete_strict  installed sluice flows that are not desired (by table+priority+match)
//   2. group add           new groups (before any flow that references them)
//   3. group modify        changed groups, always with their FULL bucket list (never delete+add: docs/design/ovs-facts.md)
//   4. flow add            new flows and changed flows (an add with the same table+priority+match replaces)
//   5. group delete        groups no longer desired, only if no remaining flow references them: deleting a
//                          referenced group in a bundle can crash ovs-vswitchd 3.1 (docs/design/ovs-facts.md "Bundles")
// TLV mappings cannot go in a bundle: missing ones are listed for the applier to add first. Nor can meters
// (`ovs-ofctl bundle` refuses them): diffMeters lists them for the applier to add or modify before the bundle (a
// flow naming a missing meter is refused) and delete after it (deleting a meter deletes every flow naming it).

import { hex, renderGroup } from './text.ts';
import { type BridgeState, type Flow, flowKey, type Group, type Meter, type TlvMapping } from './types.ts';

export interface BridgeDiff {
  readonly deleteFlows: readonly Flow[];
  readonly addFlows: readonly Flow[];
  readonly addGroups: readonly Group[];
  readonly modifyGroups: readonly Group[];
  readonly deleteGroups: readonly Group[];
  /** Groups not desired but kept because a flow that stays still references them. */
  readonly keptGroups: readonly Group[];
  /** Desired mappings missing on the switch. */
  readonly addTlv: readonly TlvMapping[];
  /** Installed mappings that occupy a desired tun_metadataN with another option (cannot be fixed in place). */
  readonly conflictingTlv: readonly TlvMapping[];
}

export function groupRefs(actions: string): number[] {
  return [...actions.matchAll(/group:(\d+)/g)].map((m) => Number(m[1]));
}

/**
 * @param desired   the compiled state of one bridge
 * @param installed what is installed and owned by sluice (flows with sluice cookies, sluice group ids), + TLV map
 * @param foreign   installed flows that are not sluice's: never touched, but their group references are honoured
 * @param staying   the desired flows whose group references keep an unwanted group (default desired.flows; the
 *                  applier diffs only the load balancers that differ and passes every desired flow here)
 */
export function diffBridge(
  desired: BridgeState,
  installed: BridgeState,
  foreign: readonly Flow[] = [],
  staying: readonly Flow[] = desired.flows,
): BridgeDiff {
  // Keys of the installed side only: a first install (nothing installed) holds no key per desired flow, whose
  // match text a compact flow renders on demand (src/compile/gateway.ts).
  const inst = new Map(installed.flows.map((f) => [flowKey(f), f]));
  const kept = new Set<string>();
  const addFlows: Flow[] = inst.size === 0 ? [...desired.flows] : [];
  for (const f of inst.size === 0 ? [] : desired.flows) {
    const k = flowKey(f);
    const i = inst.get(k);
    if (i !== undefined) kept.add(k);
    if (!i || i.actions !== f.actions || i.cookie !== f.cookie) addFlows.push(f);
  }
  const deleteFlows: Flow[] = [];
  for (const [k, f] of inst) if (!kept.has(k)) deleteFlows.push(f);

  const instG = new Map(installed.groups.map((g) => [g.groupId, g]));
  const wantG = new Map(desired.groups.map((g) => [g.groupId, g]));
  const addGroups: Group[] = [];
  const modifyGroups: Group[] = [];
  const deleteGroups: Group[] = [];
  const keptGroups: Group[] = [];
  for (const [id, g] of wantG) {
    const i = instG.get(id);
    if (!i) addGroups.push(g);
    else if (i.spec !== g.spec) modifyGroups.push(g);
  }
  // Which groups flows still reference is only asked when a group is to go (it reads every flow's actions).
  const unwanted = [...instG.values()].filter((g) => !wantG.has(g.groupId));
  const stillReferenced = new Set<number>();
  if (unwanted.length > 0)
    for (const flows of [staying, foreign])
      for (const f of flows) for (const id of groupRefs(f.actions)) stillReferenced.add(id);
  for (const g of unwanted) {
    if (stillReferenced.has(g.groupId)) keptGroups.push(g);
    else deleteGroups.push(g);
  }

  const instT = new Map(installed.tlvMap.map((t) => [t.index, t]));
  const addTlv: TlvMapping[] = [];
  const conflictingTlv: TlvMapping[] = [];
  for (const t of desired.tlvMap) {
    const i = instT.get(t.index);
    if (!i) addTlv.push(t);
    else if (i.optClass !== t.optClass || i.type !== t.type || i.len !== t.len) conflictingTlv.push(i);
  }
  // Same option mapped to another index also conflicts (OVS refuses a duplicate option).
  for (const i of installed.tlvMap) {
    const clash = desired.tlvMap.find(
      (t) => t.optClass === i.optClass && t.type === i.type && t.index !== i.index,
    );
    if (clash && !conflictingTlv.includes(i)) conflictingTlv.push(i);
  }
  return { deleteFlows, addFlows, addGroups, modifyGroups, deleteGroups, keptGroups, addTlv, conflictingTlv };
}

/** True when the bundle would be empty (TLV additions are outside the bundle and counted separately). */
export function isEmptyDiff(d: BridgeDiff): boolean {
  return (
    d.deleteFlows.length === 0 &&
    d.addFlows.length === 0 &&
    d.addGroups.length === 0 &&
    d.modifyGroups.length === 0 &&
    d.deleteGroups.length === 0
  );
}

function matchPart(f: Flow): string {
  return `table=${f.table},priority=${f.priority}${f.match ? `,${f.match}` : ''}`;
}

/** `ovs-ofctl bundle` file lines, in the safe order described at the top of this file. */
export function bundleLines(d: BridgeDiff): string[] {
  return [...bundleLineIter(d)];
}

/** The lines of bundleLines, rendered one at a time (a first install at 10,000 VIPs has 2.6 M of them). */
export function* bundleLineIter(d: BridgeDiff): Generator<string> {
  for (const f of d.deleteFlows) yield `flow delete_strict cookie=${hex(f.cookie)}/-1,${matchPart(f)}`;
  for (const g of d.addGroups) yield `group add ${renderGroup(g)}`;
  for (const g of d.modifyGroups) yield `group modify ${renderGroup(g)}`;
  for (const f of d.addFlows) yield `flow add cookie=${hex(f.cookie)},${matchPart(f)},actions=${f.actions}`;
  for (const g of d.deleteGroups) yield `group delete group_id=${g.groupId}`;
}

/** How many lines bundleLines would give, without rendering them. */
export function bundleLineCount(d: BridgeDiff): number {
  return (
    d.deleteFlows.length +
    d.addGroups.length +
    d.modifyGroups.length +
    d.addFlows.length +
    d.deleteGroups.length
  );
}

/** Default size of one chunk of bundle text streamed to ovs-ofctl (bytes). */
export const BUNDLE_CHUNK_BYTES = 1 << 20;

const encoder = new TextEncoder();

/**
 * The bundle file (every line ending in a newline) as UTF-8 chunks of at most `chunkBytes` each (more only for a
 * single longer line), rendered while they are consumed: never the whole text at once (570 MiB for a first install
 * at 10,000 VIPs, more than a JavaScript string can hold). Each line is copied into the chunk as soon as it is
 * rendered, so line strings die young instead of piling up in the heap until their chunk is complete.
 */
export function* bundleChunks(d: BridgeDiff, chunkBytes = BUNDLE_CHUNK_BYTES): Generator<Uint8Array> {
  let buf = new Uint8Array(chunkBytes);
  let pos = 0;
  for (const line of bundleLineIter(d)) {
    const text = `${line}\n`;
    let r = encoder.encodeInto(text, buf.subarray(pos));
    if (r.read < text.length) {
      if (pos > 0) yield buf.subarray(0, pos);
      buf = new Uint8Array(Math.max(chunkBytes, text.length * 3));
      pos = 0;
      r = encoder.encodeInto(text, buf);
    }
    pos += r.written;
  }
  if (pos > 0) yield buf.subarray(0, pos);
}

/** `add-tlv-map` argument for a list of mappings. */
export function tlvMapArg(ts: readonly TlvMapping[]): string {
  return ts
    .map((t) => `{class=${hex(t.optClass)},type=${hex(t.type)},len=${t.len}}->tun_metadata${t.index}`)
    .join(',');
}

const NOTHING: BridgeState = { flows: [], groups: [], tlvMap: [] };

/**
 * diffBridge over a bridge split in parts (compile/incremental.ts): `desired` and `installed` map part names to
 * states. A part that is the same object on both sides is unchanged and skipped without looking at its flows; the
 * others are diffed part by part and the results joined, so the cost is O(changed parts), not O(bridge); with
 * `changed` (every part name whose state may differ between the two sides), only those are looked at. Correct as
 * long as no flow key or group id appears in two parts of one side (flows of different load balancers differ in
 * their match). A flow that moves from one part to another becomes a delete and an add of the same key: the bundle
 * lists every delete before any add, so it ends up installed.
 */
export function diffParts(
  desired: ReadonlyMap<string, BridgeState>,
  installed: ReadonlyMap<string, BridgeState>,
  foreign: readonly Flow[] = [],
  changed?: Iterable<string>,
): BridgeDiff {
  const out = {
    deleteFlows: [] as Flow[],
    addFlows: [] as Flow[],
    addGroups: [] as Group[],
    modifyGroups: [] as Group[],
    deleteGroups: [] as Group[],
    keptGroups: [] as Group[],
    addTlv: [] as TlvMapping[],
    conflictingTlv: [] as TlvMapping[],
  };
  const add = (d: BridgeState, i: BridgeState) => {
    const p = diffBridge(d, i, foreign);
    for (const k of Object.keys(out) as (keyof typeof out)[]) {
      const from = p[k] as readonly never[];
      for (const x of from) (out[k] as never[]).push(x);
    }
  };
  if (changed !== undefined)
    for (const name of changed) {
      const d = desired.get(name) ?? NOTHING;
      const i = installed.get(name) ?? NOTHING;
      if (d !== i) add(d, i);
    }
  else {
    // One pass over each side's entries (10,000 load balancers: no list or set of every name is built).
    for (const [name, d] of desired) {
      const i = installed.get(name) ?? NOTHING;
      if (d !== i) add(d, i);
    }
    for (const [name, i] of installed) if (!desired.has(name)) add(NOTHING, i);
  }
  // A group id that leaves one part and enters another (a load balancer id taken over by another load balancer
  // when ids are reassigned on a hash collision) is one modify: an add would come before the delete of the same
  // id in the bundle (groups go after the flows that reference them) and ovs-vswitchd refuses it (GROUP_EXISTS).
  const leaving = new Set(out.deleteGroups.map((g) => g.groupId));
  const moved = out.addGroups.filter((g) => leaving.has(g.groupId));
  if (moved.length > 0) {
    const ids = new Set(moved.map((g) => g.groupId));
    out.addGroups = out.addGroups.filter((g) => !ids.has(g.groupId));
    out.deleteGroups = out.deleteGroups.filter((g) => !ids.has(g.groupId));
    out.modifyGroups.push(...moved);
  }
  return out;
}

export interface MeterDiff {
  /** New meters and changed ones (`add-meter` / `mod-meter`), before the bundle. */
  readonly add: readonly Meter[];
  readonly modify: readonly Meter[];
  /** Meters no longer desired (`del-meter`), after the bundle removed the flows that named them. */
  readonly remove: readonly Meter[];
}

/** The meter changes that turn `installed` (sluice's meter ids only) into `desired`. */
export function diffMeters(desired: readonly Meter[], installed: readonly Meter[]): MeterDiff {
  const inst = new Map(installed.map((m) => [m.meterId, m]));
  const want = new Map(desired.map((m) => [m.meterId, m]));
  return {
    add: desired.filter((m) => !inst.has(m.meterId)),
    modify: desired.filter((m) => inst.has(m.meterId) && inst.get(m.meterId)!.spec !== m.spec),
    remove: installed.filter((m) => !want.has(m.meterId)),
  };
}

export function isEmptyMeterDiff(d: MeterDiff): boolean {
  return d.add.length === 0 && d.modify.length === 0 && d.remove.length === 0;
}
