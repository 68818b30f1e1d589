// compileNode: config + generation + node facts -> the node's complete desired OpenFlow state. Pure.

import type { BridgeState, FlowSet, Meter, TlvMapping } from '../flowset/types.ts';
import { SluiceError } from '../model/errors.ts';
import type { Config } from '../model/types.ts';
import type { Generation } from '../rollout/types.ts';
import type { NodeFacts } from './facts.ts';
import {
  type CompileOptions,
  gatewayClassifyFlows,
  gatewayGroups,
  gatewaySlotFlows,
  type LbInput,
} from './gateway.ts';
import {
  hostChainFlows,
  hostClassifyFlows,
  hostCtInFlows,
  hostCtOutFlows,
  hostMeters,
  hostTunInFlows,
} from './host.ts';
import { gatewayIcmpFlows, gatewayIcmpMeters, hostIcmpTunInFlows } from './icmp.ts';
import { movedFromLbFlows, movedNodeFlows, movedOutLbFlows } from './moved.ts';
import { phyFlows } from './phy.ts';
import { ctZoneOf, lbIdsOf, TLV_OPTIONS } from './registry.ts';

export type { NodeFacts, VmPort } from './facts.ts';
export type { CompileOptions, LbInput } from './gateway.ts';

/** The load balancers that are both configured and planned, with their ids, sorted by name. */
export function lbInputs(config: Config, gen: Generation, opts: CompileOptions = {}): LbInput[] {
  const ids = lbIdsOf(config, gen);
  return [...config.loadBalancers]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((lb) => {
      const plan = gen.pools.get(lb.name);
      if (!plan) return [];
      return [{ lb, id: ids.get(lb.name)!, plan, ...(opts.udpWalk === false ? { udpWalk: false } : {}) }];
    });
}

/** Throws SLUICE_E_COMPILE_FACTS unless the config has this node with this role (compileNode, compileNodeParts). */
export function checkNodeInConfig(config: Config, facts: NodeFacts): void {
  const node = config.nodes.find((n) => n.name === facts.name);
  if (!node || node.role !== facts.role) {
    throw new SluiceError(
      'SLUICE_E_COMPILE_FACTS',
      `node ${facts.name} (${facts.role}) is not a ${facts.role} in the config`,
    );
  }
}

/** The TLV map sluice installs on the int bridge (registry TLV_OPTIONS). */
export function tlvMapping(): TlvMapping[] {
  return TLV_OPTIONS.map((t) => ({ optClass: t.optClass, type: t.type, len: t.len, index: t.index }));
}

/** `{ meters }` when there are any: a bridge without meters has no `meters` key (canonical text stays the same). */
export function withMeters(meters: readonly Meter[]): { meters?: readonly Meter[] } {
  return meters.length > 0 ? { meters } : {};
}

/** A host's moved-backend flows (compile/moved.ts): every load balancer's, then the node-wide ones. */
function movedFlows(config: Config, lbs: readonly LbInput[], facts: NodeFacts) {
  const hostIp = new Map(config.nodes.map((n) => [n.name, n.tunnelIp]));
  return [
    ...lbs.flatMap((x) => [...movedOutLbFlows(hostIp, x, facts), ...movedFromLbFlows(hostIp, x, facts)]),
    ...movedNodeFlows(facts),
  ];
}

export function compileNode(
  config: Config,
  gen: Generation,
  facts: NodeFacts,
  opts: CompileOptions = {},
): FlowSet {
  checkNodeInConfig(config, facts);
  const lbs = lbInputs(config, gen, opts);
  const tlvMap = tlvMapping();
  const int: BridgeState =
    facts.role === 'gateway'
      ? {
          flows: [
            ...gatewayClassifyFlows(config, lbs),
            ...gatewayIcmpFlows(config, lbs, facts),
            ...gatewaySlotFlows(config, lbs, facts),
          ],
          groups: gatewayGroups(config, lbs),
          tlvMap,
          ...withMeters(gatewayIcmpMeters(facts)),
        }
      : {
          flows: [
            ...hostClassifyFlows(config, facts),
            ...hostTunInFlows(lbs, ctZoneOf(facts)),
            ...hostIcmpTunInFlows(lbs, ctZoneOf(facts)),
            ...hostCtInFlows(lbs, facts),
            ...hostChainFlows(config, lbs, facts),
            ...hostCtOutFlows(facts),
            ...movedFlows(config, lbs, facts),
          ],
          groups: [],
          tlvMap,
          ...withMeters(hostMeters(facts)),
        };
  const phy: BridgeState = { flows: phyFlows(config, lbs, facts), groups: [], tlvMap: [] };
  return {
    node: facts.name,
    bridges: new Map([
      [facts.bridges.int, int],
      [facts.bridges.phy, phy],
    ]),
  };
}
