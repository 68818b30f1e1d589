// `sluice explain`: which load balancer, slot, primary backend, chain and host a packet takes in one
// generation. Pure. A packet's slot is the low k bits of the data plane's hash (docs/design/overview.md "Slot
// tables, second chance and phases"); `tupleHash` computes that hash from the 5-tuple as the gateway's OVS does
// (docs/design/hash.md), or says why it cannot be known.

import { fieldsModeHash, ovsUserspaceDpHash } from './hashing/ovs.ts';
import { NO_OWNER } from './hashing/slots.ts';
import { ipEquals, parseIp } from './model/ip.ts';
import type { Config, HashMode, LoadBalancer, Node, Protocol } from './model/types.ts';
import {
  type Generation,
  LANES,
  PHASE1,
  PHASE2,
  type PlanMember,
  type PoolPlan,
  planLanes,
} from './rollout/types.ts';

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
  /** The head of the slot's chain (the incoming owner in phase 1, else the most recent previous owner). */
  readonly second: PlanMember | undefined;
  /** Where a non-SYN packet no host on the way has a connection for goes, hop by hop from the primary's host: the
   *  owners of later lanes on other hosts (docs/design/rollout.md, "Where the chain lives"). */
  readonly chain: readonly PlanMember[];
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

/** The owners a packet can still find its connection on after the primary's host, in the order hosts walk the
 *  slot's lanes (each hands it to the first later lane whose owner lives on another host; a later visit to the
 *  primary's host finds nothing new, so it is not listed). */
function walk(plan: PoolPlan, slot: number): PlanMember[] {
  const p = plan.primary[slot];
  if (p === NO_OWNER || plan.second[slot] === NO_OWNER) return [];
  const lanes = planLanes(plan);
  const out: PlanMember[] = [];
  const first = plan.members[p].host;
  let host = first;
  for (let l = 0; l < LANES; l++) {
    const m = lanes[slot * LANES + l];
    if (m === NO_OWNER || plan.members[m].host === host) continue;
    host = plan.members[m].host;
    if (host !== first) out.push(plan.members[m]);
  }
  return out;
}

/**
 * The gateway's datapath, which decides whether the `dp_hash` of a packet can be known: `netdev` = the userspace
 * datapath on ports without a NIC RSS hash (veth, tap, AF_PACKET; sluice's lab); `netdev-rss` = the userspace
 * datapath on DPDK/AF_XDP ports whose NIC supplies the RSS hash; `system` = the Linux kernel datapath.
 */
export type Datapath = 'netdev' | 'netdev-rss' | 'system';
export const DATAPATHS: readonly Datapath[] = ['netdev', 'netdev-rss', 'system'];

export type TupleHash =
  | { readonly known: true; readonly hash: number; readonly how: string }
  | { readonly known: false; readonly why: string };

/** The hash the gateway's OVS computes for this packet in `mode` (OVS 3.1, x86-64 build without SSE4.2). */
export function tupleHash(mode: HashMode, tuple: FiveTuple, datapath: Datapath = 'netdev'): TupleHash {
  const src = parseIp(tuple.src);
  const dst = parseIp(tuple.dst);
  if (src === undefined || dst === undefined || src.family !== dst.family) {
    return { known: false, why: `${tuple.src} and ${tuple.dst} are not two addresses of one family` };
  }
  const key = { proto: tuple.proto, src: src.bytes, dst: dst.bytes, sport: tuple.sport, dport: tuple.dport };
  if (mode === 'fields') {
    return { known: true, hash: fieldsModeHash(key), how: 'multipath symmetric_l3l4+udp, any datapath' };
  }
  if (datapath === 'netdev') {
    return {
      known: true,
      hash: ovsUserspaceDpHash(key),
      how: 'dp_hash of the userspace datapath, no NIC RSS hash',
    };
  }
  return {
    known: false,
    // The fact only: what to do about it depends on who reads it (explain, the agent's status, the audit).
    why:
      datapath === 'system'
        ? 'the kernel datapath seeds its dp_hash with a random value at boot'
        : "the NIC's RSS hash (its key and function) feeds dp_hash",
  };
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
  const chain = walk(plan, slot);
  const along = chain.map((m) => `${m.key} on ${m.host}`).join(', then ');
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
      `${second.key} on ${second.host} is incoming; packets of connections ${primary.host} does not know go ` +
      `along the chain: ${along}`;
  } else {
    reason =
      `${head}: phase 2: ${primary.key} on ${primary.host} owns the slot; packets of connections ${primary.host} ` +
      `does not know go along the chain of previous owners: ${along}`;
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
    chain,
    phase,
    host: primary?.host,
    hostTunnelIp: node?.tunnelIp,
    reason,
  };
}
