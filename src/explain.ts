// `sluice explain`: which load balancer, slot, primary backend, second chance and host a packet takes in one
// generation. Pure. The hash is the data plane's (dp_hash or the fields hash); the caller supplies it: a packet's
// slot is the low k bits of that hash (docs/design/overview.md "Slot tables, second chance and phases").

import { NO_OWNER } from './hashing/slots.ts';
import { ipEquals } from './model/ip.ts';
import type { Config, LoadBalancer, Node, Protocol } from './model/types.ts';
import { type Generation, PHASE1, PHASE2, type PlanMember } from './rollout/types.ts';

export interface FiveTuple {
  readonly proto: Protocol;
  readonly src: string;
  readonly sport: number;
  readonly dst: string;
  readonly dport: number;
}

export interface Explained {
  readonly found: true;
  readonly lb: string;
  readonly generation: number;
  readonly bits: number;
  readonly hash: number;
  readonly slot: number;
  /** Where the gateway sends the packet; undefined: the slot has no owner (the packet is dropped). */
  readonly primary: PlanMember | undefined;
  /** Where the primary's host hands a non-SYN packet it has no connection for (once). */
  readonly second: PlanMember | undefined;
  readonly phase: 'stable' | 'phase1' | 'phase2';
  /** The primary's host node (undefined without a primary). */
  readonly host: string | undefined;
  /** Its tunnel endpoint, when the host is in the config. */
  readonly hostTunnelIp: string | undefined;
  readonly reason: string;
}

export interface NotExplained {
  readonly found: false;
  readonly reason: string;
}

export type ExplainResult = Explained | NotExplained;

function sameAddress(a: string, b: string): boolean {
  try {
    return ipEquals(a, b);
  } catch {
    return a === b;
  }
}

/** The load balancer that owns dst:dport/proto, if any. */
export function findLoadBalancer(config: Config, tuple: FiveTuple): LoadBalancer | undefined {
  return config.loadBalancers.find(
    (lb) => lb.protocol === tuple.proto && lb.ports.includes(tuple.dport) && sameAddress(lb.vip, tuple.dst),
  );
}

function endpoint(dst: string, port: number): string {
  return dst.includes(':') ? `[${dst}]:${port}` : `${dst}:${port}`;
}

/**
 * Explains where `generation` sends a packet with this 5-tuple and data-plane hash. `hash` is an unsigned 32-bit
 * value; its low `bits` bits are the slot.
 */
export function explain(
  config: Config,
  generation: Generation,
  tuple: FiveTuple,
  hash: number,
): ExplainResult {
  const where = `${endpoint(tuple.dst, tuple.dport)}/${tuple.proto}`;
  const lb = findLoadBalancer(config, tuple);
  if (lb === undefined) return { found: false, reason: `no load balancer for ${where}` };
  const plan = generation.pools.get(lb.name);
  if (plan === undefined) {
    return {
      found: false,
      reason: `load balancer ${lb.name} (${where}) is not in generation ${generation.number} yet`,
    };
  }
  if (!Number.isInteger(hash) || hash < 0 || hash > 0xffffffff) {
    return { found: false, reason: `hash must be an integer in 0..2^32-1, got ${hash}` };
  }
  const slot = hash & (plan.primary.length - 1);
  const p = plan.primary[slot];
  const s = plan.second[slot];
  const primary = p === NO_OWNER ? undefined : plan.members[p];
  const second = s === NO_OWNER ? undefined : plan.members[s];
  const ph = plan.phase[slot];
  const phase = ph === PHASE1 ? 'phase1' : ph === PHASE2 ? 'phase2' : 'stable';
  const node: Node | undefined =
    primary === undefined ? undefined : config.nodes.find((n) => n.name === primary.host);
  const head = `${lb.name} slot ${slot} of ${plan.primary.length} (hash 0x${hash.toString(16)}, low ${plan.bits} bits), generation ${generation.number}`;
  let reason: string;
  if (primary === undefined) {
    reason = `${head}: no owner: no backend of ${lb.name} takes slots, the packet is dropped`;
  } else if (second === undefined) {
    reason = `${head}: stable: ${primary.key} on ${primary.host}`;
  } else if (phase === 'phase1') {
    reason =
      `${head}: phase 1: SYNs go to ${primary.key} on ${primary.host} (still the owner); ` +
      `${second.key} on ${second.host} is incoming and gets packets of connections ${primary.host} does not know`;
  } else {
    reason =
      `${head}: phase 2: ${primary.key} on ${primary.host} owns the slot; packets of connections ${primary.host} ` +
      `does not know go once to the previous owner ${second.key} on ${second.host}`;
  }
  return {
    found: true,
    lb: lb.name,
    generation: generation.number,
    bits: plan.bits,
    hash,
    slot,
    primary,
    second,
    phase,
    host: primary?.host,
    hostTunnelIp: node?.tunnelIp,
    reason,
  };
}
