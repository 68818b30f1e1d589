// Incremental compilation: the same flows as compileNode (index.ts), grouped in parts so that the next generation
// recompiles only the load balancers whose inputs changed. Pure: the previous result is an argument, not a cache
// hidden in here (the agent keeps it: src/agent/node-ops.ts NodeProgrammer).
//
// Parts, per bridge (a part absent on a bridge has nothing there):
//   `lb:<name>`  one load balancer's flows and groups. Gateway br-int: its CLASSIFY flows, its dp_hash group, its
//                GW_SLOTS flows. Host br-int: its TUN_IN flows, its CT_IN commit flows and its CHAIN hops.
//   `node`       everything else, recompiled every time (O(load balancers), no slot flows): the catch-all drops, the
//                TLV map, a host's SYN meter, a gateway's ICMP flows and meter, br-phy (two flows per distinct VIP on a
//                gateway), host CLASSIFY, CT_IN deliver and the jump to CHAIN, CT_OUT.
// An `lb:` part is reused (the same object) when the previous result was compiled in the same context (hash mode,
// nodes, facts) and the load balancer's id, configuration and the flow-relevant part of its pool plan (bits,
// members, primary, second, lanes; not phase or since, which no flow reads) are equal. A one-backend change at 1000 VIPs
// therefore recompiles one load balancer; parts that are the same object need no diff either
// (flowset/diff.ts diffParts).

import type { BridgeState, FlowSet, Group, Meter } from '../flowset/types.ts';
import type { Config } from '../model/types.ts';
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
import { phyFlows } from './phy.ts';
import { ctZoneOf, T } from './registry.ts';

/** Name of the node-wide part. */
export const NODE_PART = 'node';

export function lbPart(name: string): string {
  return `lb:${name}`;
}

/** A node's desired state in parts (see the top of this file). */
export interface NodeParts {
  readonly node: string;
  /** What every part depends on besides its own load balancer (hash mode, nodes, facts), as JSON. */
  readonly context: string;
  /** Load balancer name -> the input its part was compiled from. */
  readonly inputs: ReadonlyMap<string, LbInput>;
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

/**
 * compileNode's result in parts, reusing `prev`'s load balancer parts whose inputs did not change. Throws what
 * compileNode throws (SLUICE_E_COMPILE_FACTS).
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
  const tlvMap = tlvMapping();
  const int = new Map<string, BridgeState>();
  const phy = new Map<string, BridgeState>();
  const inputs = new Map<string, LbInput>();
  const oldInt = old?.bridges.get(facts.bridges.int);
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  let reused = 0;
  for (const x of lbs) {
    const key = lbPart(x.lb.name);
    const before = old?.inputs.get(x.lb.name);
    const part = before !== undefined && sameInput(before, x) ? oldInt?.get(key) : undefined;
    if (part !== undefined) {
      reused++;
      int.set(key, part);
      inputs.set(x.lb.name, before!);
      continue;
    }
    inputs.set(x.lb.name, x);
    if (facts.role === 'gateway') {
      const groups: Group[] = gatewayLbGroups(config, x);
      int.set(key, {
        flows: [...gatewayClassifyLbFlows(config, x), ...gatewaySlotLbFlows(hostIp, x, facts)],
        groups,
        tlvMap: [],
      });
    } else {
      int.set(key, {
        flows: [
          ...hostTunInLbFlows(x, ctZoneOf(facts)),
          ...hostCommitLbFlows(x, facts),
          ...hostChainLbFlows(hostIp, x, facts),
          ...movedOutLbFlows(hostIp, x, facts),
          ...movedFromLbFlows(hostIp, x, facts),
        ],
        groups: [],
        tlvMap: [],
      });
    }
  }
  int.set(
    NODE_PART,
    facts.role === 'gateway'
      ? {
          flows: [...gatewayIcmpFlows(config, lbs, facts), dropFlow(T.CLASSIFY), dropFlow(T.GW_SLOTS)],
          groups: [],
          tlvMap,
          ...withMeters(gatewayIcmpMeters(facts)),
        }
      : {
          flows: [
            ...hostClassifyFlows(config, facts),
            ...hostIcmpTunInFlows(lbs, ctZoneOf(facts)),
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
        },
  );
  phy.set(NODE_PART, { flows: phyFlows(config, lbs, facts), groups: [], tlvMap: [] });
  return {
    node: facts.name,
    context,
    inputs,
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
