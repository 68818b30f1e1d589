// `sluice audit`: does the gateways' hash agree with the model? Pure. Every connection a host committed carries, in
// its conntrack mark, the slot a gateway put it in (lb id << 16 | slot, from the tunnel metadata); the model's slot
// for the same 5-tuple is the low k bits of `tupleHash` (explain). A connection whose two slots differ was hashed
// by a gateway that disagrees with explain (another OVS build, a kernel datapath, a NIC RSS hash, a changed flow):
// docs/design/hash.md, "The audit".

import { lbIdsOf } from './compile/registry.ts';
import { type Datapath, explain, type FiveTuple, type TupleHash, tupleHash } from './explain.ts';
import { parseIp } from './model/ip.ts';
import type { Config, HashMode, LoadBalancer } from './model/types.ts';
import type { Generation } from './rollout/types.ts';

/** One committed connection: the client's 5-tuple towards the VIP and the conntrack mark the host set. */
export interface CommittedConnection {
  readonly tuple: FiveTuple;
  readonly mark: number;
}

export interface Disagreement {
  readonly tuple: FiveTuple;
  readonly lb: string;
  readonly committedSlot: number;
  readonly modelSlot: number;
  readonly hash: number;
}

export interface AuditResult {
  /** Connections whose committed slot was compared with the model's. */
  readonly checked: number;
  readonly agree: number;
  /** `agree` per load balancer. */
  readonly agreeByLb: ReadonlyMap<string, number>;
  readonly disagree: readonly Disagreement[];
  /** Connections not compared, and why (no load balancer in the config any more, mark of another LB, ...). */
  readonly skipped: number;
  readonly skipReasons: ReadonlyMap<string, number>;
  /** Set when no hash could be computed at all (kernel datapath or NIC RSS in dp_hash mode). */
  readonly unknowable: string | undefined;
}

export type HashFunction = (mode: HashMode, tuple: FiveTuple, datapath: Datapath) => TupleHash;

/** `proto address port` with the address in one spelling (its bytes), for a map lookup. */
function endpointKey(proto: string, address: string, port: number): string {
  return `${proto} ${parseIp(address)?.bytes.join('.') ?? address} ${port}`;
}

/** The load balancer of each VIP:port, for one lookup per connection (a host may hold 200,000 connections). */
function lbIndex(config: Config): (tuple: FiveTuple) => LoadBalancer | undefined {
  const byEndpoint = new Map<string, LoadBalancer>();
  for (const lb of config.loadBalancers)
    for (const port of lb.ports) byEndpoint.set(endpointKey(lb.protocol, lb.vip, port), lb);
  return (t) => byEndpoint.get(endpointKey(t.proto, t.dst, t.dport));
}

/** The lookups of the last audit per generation object: a host audits every few seconds against the applied
 *  generation, and building them walked every load balancer each time (10,000-entry maps at 10,000 VIPs, garbage
 *  only a full collection frees). */
const tablesOf = new WeakMap<
  Generation,
  { config: Config; idOf: ReadonlyMap<string, number>; lbOf: (t: FiveTuple) => LoadBalancer | undefined }
>();

function auditTables(config: Config, generation: Generation) {
  const kept = tablesOf.get(generation);
  if (kept?.config === config) return kept;
  const t = { config, idOf: lbIdsOf(config, generation), lbOf: lbIndex(config) };
  tablesOf.set(generation, t);
  return t;
}

/**
 * Whether a connection committed in `slot` agrees with `hash`: its low bits at the pool's current size
 * (`currentBits`), or at any smaller size down to `minBits`. A connection committed before its pool grew carries
 * the smaller table's slot (the planner grows a pool, never shrinks it: src/model/slot-bits.ts).
 */
export function slotAgrees(slot: number, hash: number, minBits: number, currentBits: number): boolean {
  for (let b = Math.min(minBits, currentBits); b <= currentBits; b++)
    if (slot === (hash & ((1 << b) - 1)) >>> 0) return true;
  return false;
}

/**
 * Compares each committed connection's slot with the model's slot for its 5-tuple in `generation` (at any slot-bit
 * count between the config's `slotBits` and the pool's: `slotAgrees`). `hashOf` is the model (default: explain's
 * `tupleHash`); tests pass a deliberately wrong one as a negative control.
 */
export function auditCommittedSlots(
  config: Config,
  generation: Generation,
  connections: readonly CommittedConnection[],
  datapath: Datapath = 'netdev',
  hashOf: HashFunction = tupleHash,
): AuditResult {
  const { idOf, lbOf } = auditTables(config, generation);
  const skipReasons = new Map<string, number>();
  const skip = (why: string) => skipReasons.set(why, (skipReasons.get(why) ?? 0) + 1);
  const disagree: Disagreement[] = [];
  const agreeByLb = new Map<string, number>();
  let agree = 0;
  for (const { tuple, mark } of connections) {
    const lb = lbOf(tuple);
    const plan = lb === undefined ? undefined : generation.pools.get(lb.name);
    if (lb === undefined || plan === undefined) {
      skip('no load balancer for its VIP:port in this generation');
      continue;
    }
    if (mark >>> 16 !== idOf.get(lb.name)) {
      skip(`mark names another load balancer than ${lb.name}`);
      continue;
    }
    const h = hashOf(config.hashMode, tuple, datapath);
    if (!h.known) {
      return {
        checked: 0,
        agree: 0,
        agreeByLb: new Map(),
        disagree: [],
        skipped: connections.length,
        skipReasons,
        unknowable: h.why,
      };
    }
    const committedSlot = mark & 0xffff;
    const bits = Math.log2(plan.primary.length);
    const modelSlot = h.hash & (plan.primary.length - 1);
    if (slotAgrees(committedSlot, h.hash, config.slotBits, bits)) {
      agree++;
      agreeByLb.set(lb.name, (agreeByLb.get(lb.name) ?? 0) + 1);
    } else disagree.push({ tuple, lb: lb.name, committedSlot, modelSlot, hash: h.hash });
  }
  const skipped = [...skipReasons.values()].reduce((a, b) => a + b, 0);
  return {
    checked: agree + disagree.length,
    agree,
    agreeByLb,
    disagree,
    skipped,
    skipReasons,
    unknowable: undefined,
  };
}

// ---- the gateway's own datapath: can it agree at all? (the agent checks this continuously) -----------------------

/** Any tuple: whether the hash can be known depends on the mode and the datapath only, not on the packet. */
const ANY_TUPLE: FiveTuple = { proto: 'tcp', src: '192.0.2.1', sport: 1, dst: '192.0.2.2', dport: 1 };

/**
 * Why a gateway whose datapath is `datapath` cannot put connections in the slots the other gateways (and explain)
 * do in hash mode `mode`, or undefined when it can: the same test as `sluice audit`'s "audit impossible" (the kernel
 * datapath's per-boot dp_hash seed, a NIC's RSS hash). Such a gateway must not be in ECMP: a connection that
 * ECMP moves to it (another gateway failed, the router re-hashed) would land in another slot, on another backend.
 */
export function datapathDisagreement(mode: HashMode, datapath: Datapath): string | undefined {
  const h = tupleHash(mode, ANY_TUPLE, datapath);
  return h.known
    ? undefined
    : `hashMode ${mode} on the ${datapath} datapath cannot agree: ${h.why}; to bring this gateway back, set ` +
        "hashMode fields in the desired state (`sluice apply`) or run it on OVS's userspace datapath without NIC RSS " +
        'hashes (docs/design/hash.md)';
}

/** Operator's text: one summary line, then up to `limit` disagreements. */
export function formatAudit(r: AuditResult, limit = 10): string {
  if (r.unknowable !== undefined) return `audit impossible: ${r.unknowable}`;
  const lines = [
    `checked ${r.checked} committed connections: ${r.agree} agree with explain, ${r.disagree.length} disagree` +
      (r.skipped > 0 ? `; ${r.skipped} skipped` : ''),
  ];
  for (const [why, n] of r.skipReasons) lines.push(`  skipped ${n}: ${why}`);
  for (const d of r.disagree.slice(0, limit)) {
    const t = d.tuple;
    lines.push(
      `  DISAGREE ${t.proto} ${t.src}:${t.sport} -> ${t.dst}:${t.dport} (${d.lb}): committed in slot ` +
        `${d.committedSlot}, explain says slot ${d.modelSlot} (hash 0x${d.hash.toString(16).padStart(8, '0')})`,
    );
  }
  if (r.disagree.length > limit) lines.push(`  ... and ${r.disagree.length - limit} more`);
  return lines.join('\n');
}

// ---- the gateway side: `ovs-appctl ofproto/trace` of sample 5-tuples ----------------------------------------------

/** What a gateway's `ofproto/trace` says it does with a packet: the Geneve TUN_LB_SLOT option and tunnel target. */
export interface TracedTunnel {
  readonly lbSlot: number;
  readonly host: string;
}

/** The trace flow of a client packet to a VIP entering br-int on `inPort`; with `dpHash`, the dp_hash it carries. */
export function traceFlow(tuple: FiveTuple, inPort: string, dpHash?: number): string {
  const six = tuple.src.includes(':');
  return [
    `in_port=${inPort}`,
    six ? `${tuple.proto}6` : tuple.proto,
    `${six ? 'ipv6_src' : 'nw_src'}=${tuple.src}`,
    `${six ? 'ipv6_dst' : 'nw_dst'}=${tuple.dst}`,
    `${tuple.proto}_src=${tuple.sport}`,
    `${tuple.proto}_dst=${tuple.dport}`,
    ...(dpHash === undefined ? [] : [`dp_hash=0x${dpHash.toString(16)}`]),
  ].join(',');
}

/**
 * Reads what the trace's matched OpenFlow rules did: the last `set_field:<v>->tun_metadata0` (TUN_LB_SLOT) and
 * `set_field:<ip>->tun_dst` (the slot's host) it printed; undefined if the packet was not sent to a host.
 */
export function parseTracedTunnel(trace: string): TracedTunnel | undefined {
  const opts = [...trace.matchAll(/set_field:(0x[0-9a-f]+)->tun_metadata0\b/g)];
  const dsts = [...trace.matchAll(/set_field:([0-9a-f.:]+)->tun_dst\b/g)];
  if (opts.length === 0 || dsts.length === 0) return undefined;
  return { lbSlot: Number(opts[opts.length - 1][1]), host: dsts[dsts.length - 1][1] };
}

export interface TraceCheck {
  readonly tuple: FiveTuple;
  readonly ok: boolean;
  readonly why: string;
}

/** Compares one traced tuple with explain: the same slot (low bits of TUN_LB_SLOT) and the primary's host. */
export function checkTrace(
  config: Config,
  generation: Generation,
  tuple: FiveTuple,
  hash: number,
  traced: TracedTunnel | undefined,
): TraceCheck {
  const e = explain(config, generation, tuple, hash);
  if (!e.found) return { tuple, ok: false, why: e.reason };
  if (traced === undefined) {
    const ok = e.primary === undefined;
    return { tuple, ok, why: ok ? 'dropped, as explain says' : `not tunnelled; explain says ${e.reason}` };
  }
  const slot = traced.lbSlot & 0xffff;
  const ok = slot === e.slot && traced.host === e.hostTunnelIp;
  return {
    tuple,
    ok,
    why: `gateway: slot ${slot} -> ${traced.host}; explain: slot ${e.slot} -> ${e.hostTunnelIp ?? '(none)'}`,
  };
}

/** Deterministic sample tuples: `n` client packets spread over every VIP:port of the config (xorshift32). */
export function sampleTuples(config: Config, n: number, seed = 1): FiveTuple[] {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  const targets = config.loadBalancers.flatMap((lb) => lb.ports.map((port) => ({ lb, port })));
  if (targets.length === 0) return [];
  return Array.from({ length: n }, (_, i) => {
    const { lb, port } = targets[i % targets.length];
    const r = next();
    const src =
      lb.family === 6 ? `2001:db8:ffff::${(r & 0xffff).toString(16)}` : `198.51.100.${1 + (r % 254)}`;
    return { proto: lb.protocol, src, sport: 1024 + (next() % 64512), dst: lb.vip, dport: port };
  });
}
