// Incremental compilation: the same flows as compileNode (index.ts), grouped in parts so that the next generation
// recompiles only the load balancers whose inputs changed. Pure: the previous result is an argument, not a cache
// hidden in here (the agent keeps it: src/agent/node-ops.ts NodeProgrammer).
//
// Parts, per bridge (a part absent on a bridge has nothing there):
//   `lb:<name>`  one load balancer's flows and groups. Gateway br-int: its CLASSIFY flows, its dp_hash group, its
//                GW_SLOTS flows. Host br-int: its TUN_IN flows, its CT_IN commit flows and its CHAIN hops.
//   `vip:<family>/<address>`  what the load balancers on one VIP share. Gateway br-int: its ICMP echo and error
//                flows; gateway br-phy: its two steering flows. Host br-int: its ICMP TUN_IN flow.
//   `node`       everything else (no per-VIP flows): the catch-all drops, the TLV map, the meters, br-phy's own
//                flows, host CLASSIFY, CT_IN deliver and the jump to CHAIN, CT_OUT.
// An `lb:` part is reused (the same object) when the previous result was compiled in the same context (hash mode,
// nodes, facts) and the load balancer's id, configuration and the flow-relevant part of its pool plan (bits,
// members, primary, second, lanes; not phase or since, which no flow reads) are equal; a `vip:` part when no load
// balancer on that VIP was recompiled, added or removed; the node part when the context is the same (and on a host
// the protocols that walk the chain). A one-backend change at 10,000 VIPs therefore recompiles one load balancer and
// its VIP; parts that are the same object need no diff either (flowset/diff.ts diffParts). The node part used to
// hold the per-VIP flows and was recompiled and diffed whole every time: 0.1 s per generation at 10,000 VIPs.

import type { BridgeState, Flow, FlowSet, Meter } from '../flowset/types.ts';
import { LayeredMap } from '../model/layered-map.ts';
import type { Config, LoadBalancer } from '../model/types.ts';
import { type Generation, type PoolPlan, planLanes } from '../rollout/types.ts';
import type { NodeFacts } from './facts.ts';
import {
  type CompileOptions,
  dropFlow,
  gatewayClassifyLbFlows,
  gatewayLbGroups,
  gatewaySlotLbFlows,
  type LbInput,
} from './gateway.ts';
import {
  hostChainJumpFlows,
  hostChainLbFlows,
  hostClassifyFlows,
  hostCommitLbFlows,
  hostCtOutFlows,
  hostDeliverFlows,
  hostMeters,
  hostTunInLbFlows,
} from './host.ts';
import { gatewayIcmpFlows, gatewayIcmpMeters, hostIcmpTunInFlows } from './icmp.ts';
import { checkNodeInConfig, lbInputs, tlvMapping, withMeters } from './index.ts';
import { movedFromLbFlows, movedNodeFlows, movedOutLbFlows } from './moved.ts';
import { phyNodeFlows, phyVipFlows } from './phy.ts';
import { ctZoneOf, T } from './registry.ts';

/** Name of the node-wide part. */
export const NODE_PART = 'node';

export function lbPart(name: string): string {
  return `lb:${name}`;
}

/** Whether part `name` is one load balancer's (not the node's or a VIP's). */
export function isLbPart(name: string): boolean {
  return name.startsWith('lb:');
}

/** Name of the part of the VIP with key `family/address`. */
export function vipPart(key: string): string {
  return `vip:${key}`;
}

/** A node's desired state in parts (see the top of this file). Its maps are LayeredMaps: the next result shares
 *  the entries that did not change (a copy of a 10,000-entry Map costs milliseconds). */
export interface NodeParts {
  readonly node: string;
  /** What every part depends on besides its own load balancer (hash mode, nodes, facts), as JSON. */
  readonly context: string;
  /** Load balancer name -> the input its part was compiled from. */
  readonly inputs: LayeredMap<string, LbInput>;
  /** Load balancer id -> name. */
  readonly owners: LayeredMap<number, string>;
  /** Whether the ids are the pools' own (not computed from every name: registry.ts lbIdsOf). */
  readonly idsFromPools: boolean;
  /** VIP key (`family/address`) -> the names of the load balancers on it, sorted. */
  readonly vips: LayeredMap<string, readonly string[]>;
  /** How many load balancers walk the chain per (protocol, family): tcp4, tcp6, udp4, udp6. */
  readonly walking: readonly number[];
  /** Hosts: which protocols and families walk the chain (the node part's one input besides the context). */
  readonly nodeKey: string;
  /** Bridge -> part name -> that part's state. */
  readonly bridges: ReadonlyMap<string, LayeredMap<string, BridgeState>>;
  /** Bridge -> the parts that may differ from `from`, the previous result's parts of that bridge (diffParts looks
   *  only at those when what is installed is `from`); a bridge absent: every part. */
  readonly changed: ReadonlyMap<string, PartChanges>;
  /** Load balancer parts taken over unchanged from the previous result. */
  readonly reused: number;
}

/** The parts of a bridge that may differ from `from`. */
export interface PartChanges {
  readonly from: ReadonlyMap<string, BridgeState>;
  readonly names: ReadonlySet<string>;
}

const EMPTY: BridgeState = { flows: [], groups: [], tlvMap: [] };

function sameArray(a: Uint16Array, b: Uint16Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Equal as far as the compiler is concerned (phase and since are not compiled into flows). */
export function samePlanForFlows(a: PoolPlan, b: PoolPlan): boolean {
  if (a === b) return true;
  if (a.bits !== b.bits || a.members.length !== b.members.length) return false;
  for (let i = 0; i < a.members.length; i++) {
    const x = a.members[i]!;
    const y = b.members[i]!;
    if (x.key !== y.key || x.address !== y.address || x.port !== y.port || x.host !== y.host) return false;
  }
  return (
    sameArray(a.primary, b.primary) && sameArray(a.second, b.second) && sameArray(planLanes(a), planLanes(b))
  );
}

function sameInput(a: LbInput, b: LbInput): boolean {
  return (
    a.id === b.id &&
    samePlanForFlows(a.plan, b.plan) &&
    (a.lb === b.lb || JSON.stringify(a.lb) === JSON.stringify(b.lb))
  );
}

/** The key of a load balancer's VIP (`family/address`): the load balancers on one VIP share its `vip:` part. */
function vipKey(lb: LoadBalancer): string {
  return `${lb.family}/${lb.vip}`;
}

/** `names` (sorted) with `name` added or removed, as a new array. */
function withName(names: readonly string[] | undefined, name: string, add: boolean): readonly string[] {
  const rest = (names ?? []).filter((n) => n !== name);
  return add ? [...rest, name].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) : rest;
}

/** Which of the four (protocol, family) pairs a load balancer's input makes walk the chain: tcp4, tcp6, udp4, udp6. */
function walkSlot(x: LbInput): number | undefined {
  const fam = x.lb.family === 6 ? 1 : 0;
  if (x.lb.protocol === 'tcp') return fam;
  return x.udpWalk !== false ? 2 + fam : undefined;
}

/** How many load balancers walk per pair (walkSlot), after `before` left and `after` came. */
function walkCounts(
  counts: readonly number[],
  before: Iterable<LbInput>,
  after: Iterable<LbInput>,
): readonly number[] {
  const out = [...counts];
  for (const x of before) {
    const i = walkSlot(x);
    if (i !== undefined) out[i]!--;
  }
  for (const x of after) {
    const i = walkSlot(x);
    if (i !== undefined) out[i]!++;
  }
  return out;
}

/** The host's CT_IN jumps to CHAIN depend on every load balancer only through which (protocol, family) pairs walk. */
function chainJumpKey(counts: readonly number[]): string {
  const bits = (a: number, b: number) => (counts[a]! > 0 ? 1 : 0) | (counts[b]! > 0 ? 2 : 0);
  return `${bits(0, 1)}${bits(2, 3)}`;
}

/** One load balancer's part on br-int. */
function lbState(
  config: Config,
  x: LbInput,
  facts: NodeFacts,
  hostIp: ReadonlyMap<string, string>,
): BridgeState {
  if (facts.role === 'gateway')
    return {
      flows: [...gatewayClassifyLbFlows(config, x), ...gatewaySlotLbFlows(hostIp, x, facts)],
      groups: gatewayLbGroups(config, x),
      tlvMap: [],
    };
  return {
    flows: [
      ...hostTunInLbFlows(x, ctZoneOf(facts)),
      ...hostCommitLbFlows(x, facts),
      ...hostChainLbFlows(hostIp, x, facts),
      ...movedOutLbFlows(hostIp, x, facts),
      ...movedFromLbFlows(hostIp, x, facts),
    ],
    groups: [],
    tlvMap: [],
  };
}

/** The node part of br-int: what depends on the context only (and, on a host, on chainJumpKey). */
function nodeState(config: Config, lbs: readonly LbInput[], facts: NodeFacts): BridgeState {
  const tlvMap = tlvMapping();
  if (facts.role === 'gateway')
    return {
      flows: [dropFlow(T.CLASSIFY), dropFlow(T.GW_SLOTS)],
      groups: [],
      tlvMap,
      ...withMeters(gatewayIcmpMeters(facts)),
    };
  return {
    flows: [
      ...hostClassifyFlows(config, facts),
      dropFlow(T.TUN_IN),
      ...hostDeliverFlows(facts),
      ...hostChainJumpFlows(lbs),
      dropFlow(T.CT_IN),
      dropFlow(T.CHAIN),
      ...hostCtOutFlows(facts),
      ...movedNodeFlows(facts),
    ],
    groups: [],
    tlvMap,
    ...withMeters(hostMeters(facts)),
  };
}

/** A load balancer of a config sorted by name (parseConfig's order), found by binary search. */
function lbNamed(config: Config, name: string): LoadBalancer | undefined {
  const lbs = config.loadBalancers;
  let lo = 0;
  let hi = lbs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (lbs[mid]!.name < name) lo = mid + 1;
    else hi = mid;
  }
  return lbs[lo]?.name === name ? lbs[lo] : undefined;
}

/** The inputs of the load balancers `hint` names (undefined: not configured or not planned), or undefined when the
 *  hint cannot be followed: ids computed from every name, or an id missing or held by another load balancer (the
 *  whole pass then gives lbIdsOf's answer or error). */
function hintedInputs(
  config: Config,
  gen: Generation,
  old: NodeParts,
  hint: ReadonlySet<string>,
  opts: CompileOptions,
): Map<string, LbInput | undefined> | undefined {
  if (!old.idsFromPools) return undefined;
  const out = new Map<string, LbInput | undefined>();
  const claimed = new Set<number>();
  for (const name of hint) {
    const lb = lbNamed(config, name);
    const plan = gen.pools.get(name);
    if (lb === undefined || plan === undefined) {
      out.set(name, undefined);
      continue;
    }
    const id = plan.id;
    if (id === undefined || claimed.has(id)) return undefined;
    const owner = old.owners.get(id);
    if (owner !== undefined && owner !== name && !hint.has(owner)) return undefined;
    claimed.add(id);
    out.set(name, { lb, id, plan, ...(opts.udpWalk === false ? { udpWalk: false } : {}) });
  }
  return out;
}

/**
 * compileNode's result in parts, reusing `prev`'s parts whose inputs did not change: a load balancer's when its
 * input is the same (sameInput), a VIP's when no load balancer on it changed, came or went, the node part when the
 * context (and on a host the walking protocols) did. Without `hint`, the work is proportional to what changed plus
 * one pass over the load balancers that compares their inputs by identity; with `hint`, the names of the load
 * balancers whose configuration or pool may differ from those `prev` was compiled from (the store's follower knows
 * them: src/store/db/plan-index.ts), only those are looked at. `config` must be parseConfig's (sorted by name).
 * Throws what compileNode throws (SLUICE_E_COMPILE_FACTS).
 */
export function compileNodeParts(
  config: Config,
  gen: Generation,
  facts: NodeFacts,
  prev?: NodeParts,
  opts: CompileOptions = {},
  hint?: ReadonlySet<string>,
): NodeParts {
  checkNodeInConfig(config, facts);
  const context = JSON.stringify([config.hashMode, config.nodes, facts, opts]);
  const old = prev !== undefined && prev.context === context && prev.node === facts.name ? prev : undefined;
  const hinted =
    old !== undefined && hint !== undefined ? hintedInputs(config, gen, old, hint, opts) : undefined;
  // The load balancers to look at: those the hint names, or every one (and, when some left, every one before).
  let look: Map<string, LbInput | undefined>;
  let all: LbInput[] | undefined;
  if (hinted !== undefined) look = hinted;
  else {
    all = lbInputs(config, gen, opts);
    look = new Map(all.map((x) => [x.lb.name, x]));
    if (old !== undefined && look.size - countNew(old, all) < old.inputs.size)
      for (const name of old.inputs.keys()) if (!look.has(name)) look.set(name, undefined);
  }
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  const oldInt = old?.bridges.get(facts.bridges.int);
  const oldPhy = old?.bridges.get(facts.bridges.phy);
  const int = new Pending(oldInt);
  const phy = new Pending(oldPhy);
  const inputs = new Pending(old?.inputs);
  const owners = new Pending(old?.owners);
  const vips = new Pending(old?.vips);
  const dirty = new Set<string>();
  /** The previous inputs of the load balancers looked at (hint path: what walkCounts takes off). */
  const left: LbInput[] = [];
  let recompiled = 0;
  for (const [name, x] of look) {
    const before = old?.inputs.get(name);
    if (before !== undefined) left.push(before);
    if (before !== undefined) {
      if (x !== undefined && sameInput(before, x) && oldInt?.has(lbPart(name))) continue;
      const was = vipKey(before.lb);
      vips.set(was, withName(vips.get(was), name, false));
      dirty.add(was);
      if (owners.get(before.id) === name) owners.set(before.id, undefined);
    }
    if (x === undefined) {
      inputs.set(name, undefined);
      int.set(lbPart(name), undefined);
      continue;
    }
    recompiled++;
    const key = vipKey(x.lb);
    vips.set(key, withName(vips.get(key), name, true));
    dirty.add(key);
    inputs.set(name, x);
    owners.set(x.id, name);
    int.set(lbPart(name), lbState(config, x, facts, hostIp));
  }
  for (const key of dirty) {
    const on = (vips.get(key) ?? []).map((n) => inputs.get(n)!);
    if (on.length === 0) vips.set(key, undefined);
    const part = vipPart(key);
    if (facts.role === 'gateway') {
      int.setFlows(part, gatewayIcmpFlows(config, on, facts));
      phy.setFlows(part, phyVipFlows(on, facts));
    } else int.setFlows(part, hostIcmpTunInFlows(on, ctZoneOf(facts)));
  }
  const nextInputs = inputs.done();
  const inputList = () => all ?? [...nextInputs.values()];
  const walking =
    all !== undefined
      ? walkCounts([0, 0, 0, 0], [], all)
      : walkCounts(
          old!.walking,
          left,
          [...look.values()].filter((x) => x !== undefined),
        );
  const nodeKey = facts.role === 'host' ? chainJumpKey(walking) : '';
  if (old === undefined || old.nodeKey !== nodeKey || !oldInt?.has(NODE_PART)) {
    int.set(NODE_PART, nodeState(config, inputList(), facts));
    phy.set(NODE_PART, { flows: phyNodeFlows(facts), groups: [], tlvMap: [] });
  }
  const changed = new Map<string, PartChanges>();
  if (oldInt !== undefined) changed.set(facts.bridges.int, { from: oldInt, names: int.names() });
  if (oldPhy !== undefined) changed.set(facts.bridges.phy, { from: oldPhy, names: phy.names() });
  return {
    node: facts.name,
    context,
    inputs: nextInputs,
    owners: owners.done(),
    idsFromPools: hinted !== undefined || all!.length === 0 || all!.some((x) => x.plan.id !== undefined),
    vips: vips.done(),
    walking,
    nodeKey,
    bridges: new Map([
      [facts.bridges.int, int.done()],
      [facts.bridges.phy, phy.done()],
    ]),
    changed,
    reused: nextInputs.size - recompiled,
  };
}

/** How many of `all` the previous result did not have. */
function countNew(old: NodeParts, all: readonly LbInput[]): number {
  let n = 0;
  for (const x of all) if (!old.inputs.has(x.lb.name)) n++;
  return n;
}

/** Changes to a LayeredMap gathered before its next version is made (undefined: delete). */
class Pending<K, V> {
  readonly #base: LayeredMap<K, V> | undefined;
  readonly #set = new Map<K, V | undefined>();

  constructor(base: LayeredMap<K, V> | undefined) {
    this.#base = base;
  }

  get(k: K): V | undefined {
    return this.#set.has(k) ? this.#set.get(k) : this.#base?.get(k);
  }

  set(k: K, v: V | undefined): void {
    this.#set.set(k, v);
  }

  /** Sets part `k` to `flows`, or deletes it when there are none (bridge parts only). */
  setFlows(this: Pending<K, BridgeState>, k: K, flows: Flow[]): void {
    this.set(k, flows.length === 0 ? undefined : { flows, groups: [], tlvMap: [] });
  }

  /** The keys set or deleted. */
  names(): ReadonlySet<K> {
    return new Set(this.#set.keys());
  }

  done(): LayeredMap<K, V> {
    const set: [K, V][] = [];
    const remove: K[] = [];
    for (const [k, v] of this.#set) {
      if (v === undefined) remove.push(k);
      else set.push([k, v]);
    }
    // A first compile: one map built, not a change set folded into an empty one.
    return this.#base === undefined ? LayeredMap.of(set) : this.#base.with(set, remove);
  }
}

/** One bridge's parts joined into one state. */
export function joinParts(parts: ReadonlyMap<string, BridgeState>): BridgeState {
  const flows = [];
  const groups = [];
  const tlvMap = [];
  const meters: Meter[] = [];
  for (const p of parts.values()) {
    flows.push(...p.flows);
    groups.push(...p.groups);
    tlvMap.push(...p.tlvMap);
    meters.push(...(p.meters ?? []));
  }
  if (flows.length === 0 && groups.length === 0 && tlvMap.length === 0 && meters.length === 0) return EMPTY;
  return { flows, groups, tlvMap, ...withMeters(meters) };
}

/** The whole node as a FlowSet (what compileNode returns, up to order). */
export function partsFlowSet(p: NodeParts): FlowSet {
  return { node: p.node, bridges: new Map([...p.bridges].map(([b, parts]) => [b, joinParts(parts)])) };
}

/** Flows of every bridge. */
export function partsFlowCount(p: NodeParts): number {
  let n = 0;
  for (const parts of p.bridges.values()) for (const s of parts.values()) n += s.flows.length;
  return n;
}
