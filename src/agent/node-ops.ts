// What one node's agent does to its own Open vSwitch (I/O edge): program a generation (compile -> one atomic bundle
// per bridge -> revalidator pass = the acknowledgement, docs/design/overview.md), and read the host's live connections per
// (load balancer, slot, backend) from userspace conntrack. The lab controller (src/lab/controller.ts) programs with
// the stateless programNode; the agent (src/agent/daemon.ts) keeps a NodeProgrammer (incremental apply).

import type { CommittedConnection } from '../audit.ts';
import { compileNodeParts, joinParts, type NodeParts, partsFlowCount } from '../compile/incremental.ts';
import type { CompileOptions, NodeFacts } from '../compile/index.ts';
import { CT_ZONE, lbIds } from '../compile/registry.ts';
import type { BridgeState, Flow } from '../flowset/types.ts';
import type { Config } from '../model/types.ts';
import { type ApplyResult, applyBridge, applyBridgeDelta, revalidate } from '../openflow/applier.ts';
import type { Runner } from '../openflow/runner.ts';
import type { ConnectionCounts } from '../rollout/planner.ts';
import type { Generation } from '../rollout/types.ts';

export interface ProgramResult {
  readonly node: string;
  readonly generation: number;
  /** True when any bridge got a bundle (or a TLV map addition). */
  readonly changed: boolean;
  /** Bundle lines sent, per bridge (0 = nothing sent for it). */
  readonly bundleLines: Readonly<Record<string, number>>;
  /** Total wall time: compile + bundles + verification + revalidator/wait, ms. */
  readonly ms: number;
  /** Of which compiling (compileNodeParts), ms. */
  readonly compileMs: number;
  /** Of which `ovs-appctl revalidator/wait`, ms. */
  readonly revalidateMs: number;
  /** 'full': the switch was read, diffed and verified (applyBridge); 'incremental': diffed against what this
   *  process installed last, no read (applyBridgeDelta). */
  readonly mode: 'full' | 'incremental';
  /** Why a full apply was chosen (undefined for incremental). */
  readonly fullReason?: string;
  /** Desired flows on all bridges, and load balancer parts reused from the previous compile. */
  readonly flows: number;
  readonly reusedLbs: number;
}

export interface ProgrammerOptions {
  /** A full read + diff + verify at least this often (ms) even when the installed state is known. 0 = every
   *  time (the stateless path). Default 15 minutes. */
  readonly fullReconcileMs?: number;
  readonly now?: () => number;
  /** Compiler switches (negative controls in tests; the agent uses the defaults). */
  readonly compile?: CompileOptions;
}

/** What this process last installed on one bridge: the parts it sent, and the foreign flows of the last read. */
interface InstalledBridge {
  readonly parts: ReadonlyMap<string, BridgeState>;
  readonly foreign: readonly Flow[];
}

export const DEFAULT_FULL_RECONCILE_MS = 15 * 60_000;

/**
 * Programs generations on one node, incrementally (cost follows what changed, like ovn-controller's ofctrl): it keeps the
 * desired state it last installed, compiles the next one reusing unchanged load balancer parts
 * (compileNodeParts), diffs in memory and sends one bundle per bridge with only the changes, without dumping the
 * switch. It reads the switch (full dump + diff + verify, applyBridge) when it does not know what is installed:
 * the first time, after `invalidate()` (the agent calls it when ovs-vswitchd restarted), after any failure, and
 * every `fullReconcileMs` as a safety net against changes made behind its back. Then revalidator/wait, as before:
 * when program() resolves the node obeys the generation.
 */
/** The load balancers whose configuration or pool may differ between two generations an agent read (undefined:
 *  not known). */
export type GenerationChanges = (from: Generation, to: Generation) => ReadonlySet<string> | undefined;

export class NodeProgrammer {
  readonly #runner: Runner;
  readonly #fullEveryMs: number;
  readonly #now: () => number;
  readonly #compile: CompileOptions;
  #compiled: NodeParts | undefined;
  /** The generation #compiled was compiled from. */
  #compiledFrom: Generation | undefined;
  #installed: Map<string, InstalledBridge> | undefined;
  #lastFull = 0;
  #invalidated: string | undefined = 'first apply';

  constructor(runner: Runner, opts: ProgrammerOptions = {}) {
    this.#runner = runner;
    this.#fullEveryMs = opts.fullReconcileMs ?? DEFAULT_FULL_RECONCILE_MS;
    this.#now = opts.now ?? Date.now;
    this.#compile = opts.compile ?? {};
  }

  /** Forget what is installed: the next program() reads the switch (e.g. ovs-vswitchd restarted). */
  invalidate(reason: string): void {
    this.#installed = undefined;
    this.#invalidated = reason;
  }

  /** Whether the periodic full reconcile is due (never with fullReconcileMs 0: every program() is full anyway). */
  fullDue(): boolean {
    return this.#fullReason() === 'periodic reconcile';
  }

  /** Why the next program() must read the switch (a full apply), or undefined: it can apply incrementally. */
  #fullReason(): string | undefined {
    if (this.#installed === undefined) return this.#invalidated ?? 'installed state unknown';
    if (this.#fullEveryMs <= 0) return 'every generation';
    return this.#now() - this.#lastFull >= this.#fullEveryMs ? 'periodic reconcile' : undefined;
  }

  /** `changes` says which load balancers' configuration or pool may differ between two generations (the store's
   *  follower: src/store/db/plan-index.ts PlanIndex.changed); without it, or when it does not know, the compile
   *  compares every load balancer's input. */
  async program(
    config: Config,
    generation: Generation,
    facts: NodeFacts,
    changes?: GenerationChanges,
  ): Promise<ProgramResult> {
    const t0 = performance.now();
    const from = this.#compiledFrom;
    const hint = from === undefined ? undefined : changes?.(from, generation);
    const parts = compileNodeParts(config, generation, facts, this.#compiled, this.#compile, hint);
    this.#compiled = parts;
    this.#compiledFrom = generation;
    const tc = performance.now();
    const fullReason = this.#fullReason();
    const installed = this.#installed;
    // Until this apply succeeds, what is installed is unknown (a failed bundle, a bridge missing).
    this.#installed = undefined;
    this.#invalidated = 'previous apply failed';
    const results: ApplyResult[] = [];
    const next = new Map<string, InstalledBridge>();
    for (const name of [...parts.bridges.keys()].sort()) {
      const want = parts.bridges.get(name)!;
      const have = installed?.get(name);
      // The compile says which parts may differ from its previous result: all there is to diff when that is what
      // is installed.
      const changed = parts.changed.get(name);
      const only = changed !== undefined && changed.from === have?.parts ? changed.names : undefined;
      const r =
        fullReason === undefined && have !== undefined
          ? await applyBridgeDelta(this.#runner, name, want, have.parts, have.foreign, only)
          : await applyBridge(this.#runner, name, joinParts(want));
      results.push(r);
      next.set(name, { parts: want, foreign: r.foreign });
    }
    this.#installed = next;
    this.#invalidated = undefined;
    if (fullReason !== undefined) this.#lastFull = this.#now();
    const t1 = performance.now();
    await revalidate(this.#runner);
    const t2 = performance.now();
    const bundleLines: Record<string, number> = {};
    for (const b of results) bundleLines[b.bridge] = b.bundleLines;
    return {
      node: facts.name,
      generation: generation.number,
      changed: results.some((b) => b.changed),
      bundleLines,
      ms: Math.round(t2 - t0),
      compileMs: Math.round(tc - t0),
      revalidateMs: Math.round(t2 - t1),
      mode: fullReason === undefined ? 'incremental' : 'full',
      ...(fullReason === undefined ? {} : { fullReason }),
      flows: partsFlowCount(parts),
      reusedLbs: parts.reused,
    };
  }
}

/**
 * Programs `generation` on one node without state: compiles its complete OpenFlow state, sends at most one atomic
 * bundle per bridge (the applier reads and diffs against what is installed: nothing is sent when nothing changed,
 * and verifies), then waits for a full revalidator pass so no cached datapath flow still forwards per an older
 * generation. When this resolves the node obeys `generation`: that is its acknowledgement. Throws the applier's
 * SluiceError (the switch is then unchanged for the bridge that failed). The agent uses a NodeProgrammer instead
 * (incremental); the lab controller uses this.
 */
export function programNode(
  runner: Runner,
  config: Config,
  generation: Generation,
  facts: NodeFacts,
  compile: CompileOptions = {},
): Promise<ProgramResult> {
  return new NodeProgrammer(runner, { fullReconcileMs: 0, compile }).program(config, generation, facts);
}

// ---- live connections per slot ------------------------------------------------------------------------------

/** One conntrack entry of the sluice zone, as `dpctl/dump-conntrack` prints it. */
export interface CtEntry {
  readonly proto: string;
  /** The client's address and the address it dialled (the VIP). */
  readonly origSrc: string;
  readonly origDst: string;
  readonly origSport: number | undefined;
  readonly origDport: number | undefined;
  /** The reply's source: the backend the connection was DNATed to. */
  readonly replySrc: string;
  readonly replySport: number | undefined;
  readonly zone: number;
  readonly mark: number;
  /** TCP state (`ESTABLISHED`, `SYN_SENT`, ...); undefined for UDP. */
  readonly state: string | undefined;
}

/** Field `name=value` inside a parenthesised group such as `orig=(src=...,dst=...)`. */
function groupFields(line: string, group: string): Map<string, string> {
  const m = new RegExp(`${group}=\\(([^)]*)\\)`).exec(line);
  const out = new Map<string, string>();
  if (!m) return out;
  for (const kv of m[1].split(',')) {
    const i = kv.indexOf('=');
    if (i > 0) out.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return out;
}

function topField(line: string, name: string): string | undefined {
  // A top-level field: preceded by a comma (not inside orig=(...)/reply=(...)).
  const m = new RegExp(`(?:^|\\),|,)${name}=([^,()]+)`).exec(line.replace(/\([^)]*\)/g, '()'));
  return m?.[1];
}

/** Parses `ovs-appctl dpctl/dump-conntrack` output (one entry per line; other lines ignored). */
export function parseConntrack(text: string): CtEntry[] {
  const out: CtEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const pm = /^([a-z0-9]+),orig=/.exec(line);
    if (!pm) continue;
    const orig = groupFields(line, 'orig');
    const reply = groupFields(line, 'reply');
    const proto = groupFields(line, 'protoinfo');
    const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
    const markText = topField(line, 'mark');
    out.push({
      proto: pm[1],
      origSrc: orig.get('src') ?? '',
      origDst: orig.get('dst') ?? '',
      origSport: num(orig.get('sport')),
      origDport: num(orig.get('dport')),
      replySrc: reply.get('src') ?? '',
      replySport: num(reply.get('sport')),
      zone: Number(topField(line, 'zone') ?? 0),
      mark: markText === undefined ? 0 : Number(markText),
      state: proto.get('state'),
    });
  }
  return out;
}

/**
 * TCP states that still carry a connection the client may send on. SYN_RECV counts too: the backend answered, the
 * connection is being set up and must keep its second chance. SYN_SENT does not: the host saw only the client's SYN
 * (the backend has not answered yet, a matter of microseconds for a real connection), and that is all a SYN flood
 * makes, so counting it would let a flood hold every second chance; such entries are counted apart (states).
 * Closing states (FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSING, CLOSED) do not count: after a FIN only
 * retransmissions remain.
 */
const LIVE_TCP_STATES = new Set(['SYN_RECV', 'ESTABLISHED']);

/** Whether an entry is a live load-balanced connection (TCP set up or established; any UDP entry still listed). */
export function isLiveEntry(e: CtEntry): boolean {
  if (e.proto === 'tcp' || e.proto === 'tcp6') return e.state !== undefined && LIVE_TCP_STATES.has(e.state);
  return e.proto === 'udp' || e.proto === 'udp6';
}

/** Live connections of one host: `counts.get(lb)?.get(slot)?.get(backendKey)`. */
export interface SlotConnections {
  readonly counts: ReadonlyMap<string, ReadonlyMap<number, ReadonlyMap<string, number>>>;
  /** Live entries counted. */
  readonly total: number;
  /** Entries in the zone with a mark that names no configured LB (e.g. an LB removed since): not counted. */
  readonly unknown: number;
  /** Every entry of the zone by state: `established`, `syn_sent` (half-open), `syn_recv`, `other` (TCP closing or
   *  UDP). */
  readonly states: Readonly<Record<'established' | 'syn_sent' | 'syn_recv' | 'other', number>>;
}

type Counts = Map<string, Map<number, Map<string, number>>>;

function addCount(counts: Counts, lb: string, slot: number, key: string, n: number): void {
  let perSlot = counts.get(lb);
  if (!perSlot) {
    perSlot = new Map();
    counts.set(lb, perSlot);
  }
  let perKey = perSlot.get(slot);
  if (!perKey) {
    perKey = new Map();
    perSlot.set(slot, perKey);
  }
  perKey.set(key, (perKey.get(key) ?? 0) + n);
}

/** Backend key as model/types.ts `backendKey` spells it, from the reply source. */
function keyOf(address: string, port: number | undefined, wildcard: boolean): string {
  const p = wildcard || port === undefined ? '*' : String(port);
  return address.includes(':') ? `[${address}]:${p}` : `${address}:${p}`;
}

/** What countSlotConnections looks entries up in: lb id -> name, and which (lb, address) have a wildcard port in the
 *  config (their key ends in ':*'). */
interface CountTables {
  readonly config: Config;
  readonly byId: ReadonlyMap<number, string>;
  readonly wildcard: ReadonlySet<string>;
}

/** The tables of the last counts per ids map: a host agent counts twice a second with the applied generation's ids
 *  (one map per generation), and building them walked every load balancer and backend each time (10,000 VIPs: a
 *  10,000-entry map per report, garbage only a full collection frees). */
const countTablesOf = new WeakMap<ReadonlyMap<string, number>, CountTables>();

function countTables(config: Config, ids: ReadonlyMap<string, number>): CountTables {
  const kept = countTablesOf.get(ids);
  if (kept?.config === config) return kept;
  const byId = new Map<number, string>();
  for (const [name, id] of ids) byId.set(id, name);
  const wildcard = new Set<string>();
  for (const lb of config.loadBalancers)
    for (const b of lb.backends) if (b.port === undefined) wildcard.add(`${lb.name} ${b.address}`);
  const t = { config, byId, wildcard };
  countTablesOf.set(ids, t);
  return t;
}

/**
 * Counts live connections per (lb, slot, backend) from conntrack entries of the sluice zone. ct_mark = lb id << 16 |
 * slot (src/compile/registry.ts); lb id -> name by `ids` (the applied generation's, registry lbIdsOf; default: computed
 * from the config's names, as for a plan without stored ids); the backend is
 * the NATed destination (the reply's source address and port), keyed like `backendKey`: `addr:port`, or `addr:*`
 * when the config's backend has no port (no port translation).
 */
export function countSlotConnections(
  entries: readonly CtEntry[],
  config: Config,
  zone: number = CT_ZONE,
  ids: ReadonlyMap<string, number> = lbIds(config.loadBalancers.map((l) => l.name)),
): SlotConnections {
  const { byId, wildcard } = countTables(config, ids);
  const counts = new Map<string, Map<number, Map<string, number>>>();
  let total = 0;
  let unknown = 0;
  const states = { established: 0, syn_sent: 0, syn_recv: 0, other: 0 };
  for (const e of entries) {
    if (e.zone !== zone) continue;
    const st =
      e.state === 'ESTABLISHED'
        ? 'established'
        : e.state === 'SYN_SENT'
          ? 'syn_sent'
          : e.state === 'SYN_RECV'
            ? 'syn_recv'
            : 'other';
    states[st]++;
    if (!isLiveEntry(e)) continue;
    const lb = byId.get(e.mark >>> 16);
    if (lb === undefined) {
      unknown++;
      continue;
    }
    const slot = e.mark & 0xffff;
    const key = keyOf(e.replySrc, e.replySport, wildcard.has(`${lb} ${e.replySrc}`));
    addCount(counts, lb, slot, key, 1);
    total++;
  }
  return { counts, total, unknown, states };
}

/** One host's conntrack entries of sluice's zone: `ovs-appctl [appctlArgs] dpctl/dump-conntrack zone=<zone>`. */
export async function readConntrack(
  runner: Runner,
  zone: number = CT_ZONE,
  appctlArgs: readonly string[] = [],
): Promise<CtEntry[]> {
  const r = await runner.appctl([...appctlArgs, 'dpctl/dump-conntrack', `zone=${zone}`]);
  return parseConntrack(r.stdout);
}

/**
 * Reads one host's live load-balanced connections per (lb, slot, backend): `readConntrack`, counted by
 * `countSlotConnections`.
 */
export async function readSlotConnections(
  runner: Runner,
  config: Config,
  zone: number = CT_ZONE,
  ids?: ReadonlyMap<string, number>,
): Promise<SlotConnections> {
  return countSlotConnections(await readConntrack(runner, zone), config, zone, ids);
}

/**
 * The connections sluice committed among `entries`, as the audit compares them (src/audit.ts): the client's
 * 5-tuple towards the VIP and the mark (lb id << 16 | slot) the gateway's tunnel metadata gave it. Entries without
 * a mark (not committed by sluice's CT_IN) and of other protocols are left out.
 */
export function committedConnections(entries: readonly CtEntry[]): CommittedConnection[] {
  const out: CommittedConnection[] = [];
  for (const e of entries) {
    const proto = e.proto.replace(/6$/, '');
    if ((proto !== 'tcp' && proto !== 'udp') || e.origSport === undefined || e.origDport === undefined)
      continue;
    if (e.mark === 0) continue;
    out.push({
      tuple: { proto, src: e.origSrc, sport: e.origSport, dst: e.origDst, dport: e.origDport },
      mark: e.mark,
    });
  }
  return out;
}

/** Every connection one host committed in the sluice zone (`committedConnections`). `appctlArgs` go before the
 *  command (e.g. `-t <ctl socket>`). */
export async function readCommittedConnections(
  runner: Runner,
  appctlArgs: readonly string[] = [],
): Promise<CommittedConnection[]> {
  return committedConnections(await readConntrack(runner, CT_ZONE, appctlArgs));
}

/** Sums several hosts' counts. */
export function mergeSlotConnections(list: readonly SlotConnections[]): SlotConnections {
  const counts = new Map<string, Map<number, Map<string, number>>>();
  let total = 0;
  let unknown = 0;
  const states = { established: 0, syn_sent: 0, syn_recv: 0, other: 0 };
  for (const c of list) {
    total += c.total;
    unknown += c.unknown;
    for (const k of Object.keys(states) as (keyof typeof states)[]) states[k] += c.states[k];
    for (const [lb, perSlot] of c.counts) {
      for (const [slot, perKey] of perSlot) {
        for (const [key, n] of perKey) addCount(counts, lb, slot, key, n);
      }
    }
  }
  return { counts, total, unknown, states };
}

/**
 * The planner's ConnectionCounts over merged host counts. An entry carries the slot as the gateway numbered it when
 * the connection was committed. After a pool's slot bits grew, an older connection is counted under its old slot
 * number only (slot s, not s + 2^k); the planner reads those marks too for pools above `slotBits` (grownCounts).
 * Known limit: after `slotBits` itself was raised, a second chance on the duplicate slot may be dropped early.
 */
export function connectionCounts(c: SlotConnections): ConnectionCounts {
  return (lb, slot, key) => c.counts.get(lb)?.get(slot)?.get(key) ?? 0;
}
