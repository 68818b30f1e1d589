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

/** A node's desired state in parts (see the top of this file). */
export interface NodeParts {
  readonly node: string;
  /** What every part depends on besides its own load balancer (hash mode, nodes, facts), as JSON. */
  readonly context: string;
  /** Load balancer name -> the input its part was compiled from. */
  readonly inputs: ReadonlyMap<string, LbInput>;
  /** VIP key (`family/address`) -> the names of the load balancers on it, sorted. */
  readonly vips: ReadonlyMap<string, readonly string[]>;
  /** Hosts: which protocols and families walk the chain (the node part's one input besides the context). */
  readonly nodeKey: string;
  /** Bridge -> part name -> that part's state. */
  readonly bridges: ReadonlyMap<string, ReadonlyMap<string, BridgeState>>;
  /** Load balancer parts taken over unchanged from the previous result. */
  readonly reused: number;
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

/** The host's CT_IN jumps to CHAIN depend on every load balancer only through which (protocol, family) pairs walk. */
function chainJumpKey(lbs: readonly LbInput[]): string {
  let tcp = 0;
  let udp = 0;
  for (const x of lbs) {
    const bit = x.lb.family === 6 ? 2 : 1;
    if (x.lb.protocol === 'tcp') tcp |= bit;
    else if (x.udpWalk !== false) udp |= bit;
  }
  return `${tcp}${udp}`;
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

/** Sets (or, when it has no flows, deletes) part `name` of a bridge. */
function setPart(parts: Map<string, BridgeState>, name: string, flows: Flow[]): void {
  if (flows.length === 0) parts.delete(name);
  else parts.set(name, { flows, groups: [], tlvMap: [] });
}

/**
 * compileNode's result in parts, reusing `prev`'s parts whose inputs did not change: a load balancer's when its
 * input is the same (sameInput), a VIP's when no load balancer on it changed, came or went, the node part when the
 * context (and on a host the walking protocols) did. The work is proportional to what changed, plus one pass over
 * the load balancers that compares their inputs by identity. Throws what compileNode throws (SLUICE_E_COMPILE_FACTS).
 */
export function compileNodeParts(
  config: Config,
  gen: Generation,
  facts: NodeFacts,
  prev?: NodeParts,
  opts: CompileOptions = {},
): NodeParts {
  checkNodeInConfig(config, facts);
  const context = JSON.stringify([config.hashMode, config.nodes, facts, opts]);
  const old = prev !== undefined && prev.context === context && prev.node === facts.name ? prev : undefined;
  const lbs = lbInputs(config, gen, opts);
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  const oldInt = old?.bridges.get(facts.bridges.int);
  const oldPhy = old?.bridges.get(facts.bridges.phy);
  // Copies of the previous maps, changed where something changed (a copy of a map is cheap next to its parts).
  const int = new Map(oldInt ?? []);
  const phy = new Map(oldPhy ?? []);
  const inputs = new Map(old?.inputs ?? []);
  const vips = new Map(old?.vips ?? []);
  const dirty = new Set<string>();
  let reused = 0;
  let seenOld = 0;
  for (const x of lbs) {
    const name = x.lb.name;
    const before = old?.inputs.get(name);
    if (before !== undefined) {
      seenOld++;
      if (sameInput(before, x) && oldInt?.has(lbPart(name))) {
        reused++;
        continue;
      }
      const was = vipKey(before.lb);
      vips.set(was, withName(vips.get(was), name, false));
      dirty.add(was);
    }
    const key = vipKey(x.lb);
    vips.set(key, withName(vips.get(key), name, true));
    dirty.add(key);
    inputs.set(name, x);
    int.set(lbPart(name), lbState(config, x, facts, hostIp));
  }
  // Load balancers that left (only looked for when some did).
  if (old !== undefined && seenOld < old.inputs.size) {
    const names = new Set(lbs.map((x) => x.lb.name));
    for (const [name, before] of old.inputs) {
      if (names.has(name)) continue;
      const was = vipKey(before.lb);
      vips.set(was, withName(vips.get(was), name, false));
      dirty.add(was);
      inputs.delete(name);
      int.delete(lbPart(name));
    }
  }
  for (const key of dirty) {
    const on = (vips.get(key) ?? []).map((n) => inputs.get(n)!);
    if (on.length === 0) vips.delete(key);
    const part = vipPart(key);
    if (facts.role === 'gateway') {
      setPart(int, part, gatewayIcmpFlows(config, on, facts));
      setPart(phy, part, phyVipFlows(on, facts));
    } else setPart(int, part, hostIcmpTunInFlows(on, ctZoneOf(facts)));
  }
  const nodeKey = facts.role === 'host' ? chainJumpKey(lbs) : '';
  if (old === undefined || old.nodeKey !== nodeKey || !oldInt?.has(NODE_PART)) {
    int.set(NODE_PART, nodeState(config, lbs, facts));
    phy.set(NODE_PART, { flows: phyNodeFlows(facts), groups: [], tlvMap: [] });
  }
  return {
    node: facts.name,
    context,
    inputs,
    vips,
    nodeKey,
    bridges: new Map([
      [facts.bridges.int, int],
      [facts.bridges.phy, phy],
    ]),
    reused,
  };
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
