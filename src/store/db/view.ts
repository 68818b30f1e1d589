// The store as the planner sees it (StoreView): the desired state, the latest plan, what every node reported. The
// planner decides from it (src/planner/core.ts); `sluice status` and `sluice rollout status` recompute the planner's
// next step from the same view, so they show the reasons the planner logs. Pure: no I/O.

import { CrossIndex } from '../../model/config-parts.ts';
import { parseConfig, validateConfig } from '../../model/schema.ts';
import { backendKey, type Config, type LoadBalancer } from '../../model/types.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import type { PlanCache } from '../../rollout/plan-cache.ts';
import { type ConnectionCounts, type PlanStep, planNext } from '../../rollout/planner.ts';
import type { Generation } from '../../rollout/types.ts';
import type { StoredDesiredState } from './desired.ts';
import { DesiredStateIndex } from './desired-index.ts';
import { BackendHealthIndex } from './health.ts';
import { gatewayGeneration, type PlanDocs, readPlan, samePlanDocs, splitPlanDocument } from './plans.ts';
import { rows, single } from './read.ts';
import { SlotReportIndex, type SlotReports } from './slot-reports.ts';
import { fenceMarks, nodeAck } from './status.ts';
import {
  GlobalTable,
  type Health,
  NodeHeartbeatTable,
  NodeStatusTable,
  PlanConfigTable,
  PlanLbTable,
  PlanPoolTable,
  PlanTable,
  REPORT_AT_KEY,
  ReportRoundTable,
} from './tables.ts';

/** The config-file-shaped desired state, as the store holds it. */
export type DesiredDoc = StoredDesiredState['config'];

export interface NodeStatusView {
  /** Its acknowledgement (Sluice_Status), read from another replica than the fence marks (Sluice): a lagging one
   *  shows an older acknowledgement, never a newer one, so it can only make the planner wait longer. */
  readonly appliedGeneration: number;
  /** The agent's heartbeat value (its own clock, ms): only its changes matter to the planner. */
  readonly heartbeatAt: number;
  /** A gateway that withdrew itself from the upstream ECMP set. */
  readonly fenced: boolean;
  /** The planner took this gateway out of ECMP (ran its fence command; external_ids:fenced_by_planner), deciding on
   *  the gateway's current rejoin (a record that raced a later rejoin does not count: fenceMarks). Cleared by the
   *  gateway's agent when it rejoins. */
  readonly plannerFenced: boolean;
  /** The operator confirmed the gateway is out of ECMP (`sluice node confirm-fenced`; external_ids:fenced_by_operator).
   *  Same effect as plannerFenced, cleared the same way. */
  readonly operatorFenced: boolean;
  readonly error: string | undefined;
  /** A gateway's latest rejoin token, and that of the latest rejoin whose announce command ended (Node_Status,
   *  Sluice; undefined from agents before them or before their first rejoin). While they differ an announce may be
   *  running; any change of either is the agent heard. */
  readonly rejoin?: string;
  readonly announced?: string;
  /** A host's last connection report (Node_Heartbeat external_ids:report_at); undefined from agents that report in
   *  every heartbeat (then each heartbeat counts as a report). */
  readonly reportAt?: number;
}

/** What the planner reads from the store. */
export interface StoreView {
  readonly desiredCfg: number;
  /** undefined: no Global row yet (nothing to plan). */
  readonly desired: DesiredDoc | undefined;
  /** The latest published generation and the effective config documents it was planned from. */
  readonly latest: Generation | null;
  readonly latestConfig: PlanDocs | undefined;
  /** Generation released to the gateways (Global.options:gateway_generation), 0 = none. */
  readonly gatewayGeneration: number;
  /** Every node with a Node_Status row (Sluice) or a Node_Heartbeat row (Sluice_Status): the two are read from two
   *  databases, not atomically (docs/design/ovsdb.md, "Two databases"). */
  readonly nodeStatus: ReadonlyMap<string, NodeStatusView>;
  /** The generation of the last ack round the planner marked in Sluice_Status (Report_Round), 0 if none. */
  readonly reportRound: number;
  /** `${lb} ${backendKey}` -> health reported by the backend's host agents (`down` if any says so): only `down` and
   *  `gone` change the plan (effectiveDoc), and readStoreView lists only those, in a map that stays the same object
   *  while they do not change. */
  readonly backendHealth: ReadonlyMap<string, Health>;
  /** host -> lb -> report: SlotReportIndex's own maps, current as of this view's read (they change in place at
   *  the next readStoreView of the same replica: use them within one step). */
  readonly slotReports: SlotReports;
  /** Load balancer ids of every stored plan (Plan_Pool.lb_id): no new load balancer may take one. */
  readonly storedLbIds?: ReadonlySet<number>;
}

/** What planNext needs to keep load balancer ids (rollout/lb-ids.ts): the names the latest plan's agents computed
 *  ids over when it has none stored (its config's load balancers), and the ids older stored plans still carry. */
export function lbIdContext(view: StoreView): {
  legacyLbNames?: readonly string[];
  reservedLbIds?: Iterable<number>;
} {
  return {
    ...(view.latestConfig !== undefined ? { legacyLbNames: lbNames(view.latestConfig) } : {}),
    ...(view.storedLbIds !== undefined ? { reservedLbIds: view.storedLbIds } : {}),
  };
}

/** A plan config's load balancer names, once per (immutable) config: the planner asks on every step, and at 10,000
 *  VIPs a fresh array each time was a tenth of an idle step. */
function lbNames(docs: PlanDocs): readonly string[] {
  let names = lbNamesMemo.get(docs);
  if (names === undefined) {
    names = Object.freeze([...docs.lbs.keys()]);
    lbNamesMemo.set(docs, names);
  }
  return names;
}

const lbNamesMemo = new WeakMap<PlanDocs, readonly string[]>();

/**
 * The effective config document. A failed health check is not a dead backend: a backend whose host reports it
 * `down` takes no new connections (an active one plans as `draining`: its slots move for new connections at once,
 * and it stays in the chains while its host reports connections). Only evidence that the backend itself is gone
 * (`gone`: its port is missing on its host) plans it as `down`, which drops it from the chains. The operator's
 * state otherwise.
 */
export function effectiveDoc(desired: DesiredDoc, health: ReadonlyMap<string, Health>): DesiredDoc {
  return { ...desired, loadBalancers: desired.loadBalancers.map((lb) => effectiveLb(lb, health)) };
}

type DesiredLb = DesiredDoc['loadBalancers'][number];

/** One load balancer of effectiveDoc. */
function effectiveLb(lb: DesiredLb, health: ReadonlyMap<string, Health>): DesiredLb {
  return {
    ...lb,
    backends: lb.backends.map((b) => {
      const h = health.get(`${lb.name} ${backendKey({ address: b.address, port: b.port })}`);
      if (h === 'gone') return { ...b, state: 'down' };
      if (h === 'down' && (b.state ?? 'active') === 'active') return { ...b, state: 'draining' };
      return b;
    }),
  };
}

/** The effective config validated, and as the documents a published generation carries for the agents. */
type Effective = { config: Config; doc: PlanDocs };

/** The view's effective desired state, validated (throws SLUICE_E_CONFIG_INVALID naming `source`), and as the
 *  documents a published generation carries for the agents; undefined when the store holds no desired state. */
export function effectiveConfig(view: StoreView, source: string): Effective | undefined {
  if (view.desired === undefined) return undefined;
  // Computed once per desired state and set of unhealthy backends; from the previous one (same source), again only
  // for the load balancers whose document or backends' health changed (the planner asks on every step, and at
  // 10,000 VIPs a whole parse takes a second).
  const bySource = effectiveMemo.get(view.desired) ?? new Map<string, EffectiveMemo>();
  effectiveMemo.set(view.desired, bySource);
  const hit = bySource.get(source);
  if (hit?.health === view.backendHealth) return hit.value;
  const last = hit === undefined ? lastEffective.get(source) : { desired: view.desired, memo: hit };
  const patched =
    last === undefined ? undefined : patch(last.desired, last.memo, view.desired, view.backendHealth);
  const next = patched ?? {
    health: view.backendHealth,
    value: effectiveWhole(view.desired, view.backendHealth, source),
  };
  bySource.set(source, next);
  lastEffective.set(source, { desired: view.desired, memo: next });
  return next.value;
}

function effectiveWhole(desired: DesiredDoc, health: ReadonlyMap<string, Health>, source: string): Effective {
  const doc = effectiveDoc(desired, health);
  return { config: parseConfig(doc, source), doc: splitPlanDocument(doc) };
}

interface EffectiveMemo {
  readonly health: ReadonlyMap<string, Health>;
  readonly value: Effective;
  /** Load balancer name -> its position in the desired document and in the config (built on the first patch). */
  readonly at?: ReadonlyMap<string, { readonly doc: number; readonly config: number }>;
  /** The counts of the rules between load balancers over `value.config` (built on the first edit), while this memo
   *  is its holder: an edit checks the changed load balancers against them, not every backend. */
  readonly cross?: CrossIndex;
}

const effectiveMemo = new WeakMap<DesiredDoc, Map<string, EffectiveMemo>>();
/** Per source, the last effective config computed: what the next desired state is patched from. */
const lastEffective = new Map<string, { desired: DesiredDoc; memo: EffectiveMemo }>();

/** What effectiveDoc makes of a backend's health: only `gone` and `down` change its state. */
const planned = (h: Health | undefined) => (h === 'gone' || h === 'down' ? h : undefined);

/** Names of the load balancers with a backend whose planned health differs between the two maps. */
function changedLbs(a: ReadonlyMap<string, Health>, b: ReadonlyMap<string, Health>): Set<string> {
  const out = new Set<string>();
  if (a === b) return out;
  const note = (k: string) => out.add(k.slice(0, k.indexOf(' ')));
  for (const [k, h] of a) if (planned(h) !== planned(b.get(k))) note(k);
  for (const [k, h] of b) if (!a.has(k) && planned(h) !== undefined) note(k);
  return out;
}

/** The desired state without its load balancers (nodes and settings), as text. */
const baseOf = (d: DesiredDoc) => JSON.stringify({ ...d, loadBalancers: [] });

/**
 * `prev`'s effective config (of `prevDesired`) with only the load balancers that changed made again: those whose
 * desired document is another object (DesiredStateIndex keeps the unchanged ones), that were added, or whose
 * backends' health changed. Each one's effective document is validated with the nodes and settings (validateConfig)
 * and replaces its entry; the load balancers removed go. Equal to the whole computation: the nodes and settings must
 * be the same, and when documents changed (not only health, which changes backends' `state`, a value no other rule
 * reads) the rules across load balancers are checked on the joined config (crossCheckOk).
 * test/unit/store-health.test.ts and store-desired-index.test.ts compare both over random changes. Undefined: do
 * the whole computation (a change of the nodes or settings, most load balancers changed, or a document that does
 * not validate alone, so the full parse reports it).
 */
function patch(
  prevDesired: DesiredDoc,
  prev: EffectiveMemo,
  desired: DesiredDoc,
  health: ReadonlyMap<string, Health>,
): EffectiveMemo | undefined {
  const edited = desired !== prevDesired;
  if (edited && baseOf(desired) !== baseOf(prevDesired)) return undefined;
  const prevAt = prev.at ?? positions(prevDesired, prev.value.config);
  const changed = changedLbs(prev.health, health);
  let sameNames = desired.loadBalancers.length === prevDesired.loadBalancers.length;
  if (edited && sameNames) sameNames = editedInPlace(prevDesired, desired, changed);
  if (edited && !sameNames)
    for (const lb of desired.loadBalancers) {
      const p = prevAt.get(lb.name);
      if (p === undefined) sameNames = false;
      if (p === undefined || prevDesired.loadBalancers[p.doc] !== lb) changed.add(lb.name);
    }
  if (changed.size === 0 && sameNames)
    return holding(heldBy(prev), { health, value: prev.value, at: prevAt });
  if (changed.size > desired.loadBalancers.length / 4) return undefined;
  const at = sameNames ? prevAt : docPositions(desired);
  const names = [...changed].filter((n) => at.has(n));
  const docs = new Map(names.map((n) => [n, effectiveLb(desired.loadBalancers[at.get(n)!.doc], health)]));
  const sub = validateConfig({ ...desired, loadBalancers: [...docs.values()] });
  if (!sub.ok || sub.config.loadBalancers.length !== docs.size) return undefined;
  const fresh = new Map(sub.config.loadBalancers.map((lb) => [lb.name, lb]));
  if (names.some((n) => !fresh.has(n))) return undefined;
  const prevLb = (n: string) => prev.value.config.loadBalancers[prevAt.get(n)!.config];
  let lbs: LoadBalancer[];
  let lbDocs: Map<string, string>;
  let base = prev.value.doc.base;
  if (sameNames) {
    lbs = [...prev.value.config.loadBalancers];
    lbDocs = new Map(prev.value.doc.lbs);
    for (const n of names) {
      lbs[prevAt.get(n)!.config] = fresh.get(n)!;
      lbDocs.set(n, JSON.stringify(docs.get(n)));
    }
  } else {
    lbs = desired.loadBalancers.map((d) => fresh.get(d.name) ?? prevLb(d.name));
    lbs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    lbDocs = new Map(
      desired.loadBalancers.map((d) => {
        const doc = docs.get(d.name);
        return [d.name, doc === undefined ? prev.value.doc.lbs.get(d.name)! : JSON.stringify(doc)];
      }),
    );
    base = splitPlanDocument({
      ...desired,
      loadBalancers: desired.loadBalancers.map((d) => ({ name: d.name })),
    }).base;
  }
  const config: Config = Object.freeze({ ...prev.value.config, loadBalancers: Object.freeze(lbs) });
  // Health changes only backends' `state`, which no rule between load balancers reads: the counts stay.
  let cross = heldBy(prev);
  if (edited) {
    cross ??= CrossIndex.of(prev.value.config);
    const gone = sameNames ? [] : prev.value.config.loadBalancers.filter((lb) => !at.has(lb.name));
    const before = [...names.filter((n) => prevAt.has(n)).map(prevLb), ...gone];
    if (!cross.replace(config.slotBits, before, [...fresh.values()])) return undefined;
  }
  const value = { config, doc: { base, lbs: lbDocs } };
  return holding(cross, { health, value, at: sameNames ? prevAt : positions(desired, config) });
}

/** `memo`'s cross index if it still holds it (the counts are mutable: they belong to one memo at a time). */
const heldBy = (memo: EffectiveMemo) => (memo.cross?.holder === memo ? memo.cross : undefined);

/** `next` as the holder of `cross`. */
function holding(cross: CrossIndex | undefined, next: EffectiveMemo): EffectiveMemo {
  if (cross === undefined) return next;
  const out = { ...next, cross };
  cross.holder = out;
  return out;
}

/**
 * Whether `desired` holds the load balancers of `prevDesired` by the same names at the same places (both are sorted
 * by name), adding to `changed` the ones whose document is another object: one pass comparing references.
 */
function editedInPlace(prevDesired: DesiredDoc, desired: DesiredDoc, changed: Set<string>): boolean {
  const a = prevDesired.loadBalancers;
  const b = desired.loadBalancers;
  for (let i = 0; i < b.length; i++) {
    if (a[i] === b[i]) continue;
    if (a[i]!.name !== b[i]!.name) return false;
    changed.add(b[i]!.name);
  }
  return true;
}

/** Load balancer name -> its position in the desired document (the config's is not known yet). */
function docPositions(desired: DesiredDoc): Map<string, { doc: number; config: number }> {
  return new Map(desired.loadBalancers.map((lb, i) => [lb.name, { doc: i, config: -1 }]));
}

function positions(desired: DesiredDoc, config: Config): Map<string, { doc: number; config: number }> {
  const inConfig = new Map(config.loadBalancers.map((lb, i) => [lb.name, i]));
  const out = new Map<string, { doc: number; config: number }>();
  for (const [i, lb] of desired.loadBalancers.entries()) {
    const c = inConfig.get(lb.name);
    if (c !== undefined) out.set(lb.name, { doc: i, config: c });
  }
  return out;
}

export interface PlannerStep extends PlanStep {
  /** The effective config differs from the latest plan's: the planner publishes it (same pools, new generation)
   *  even when no slot moves. */
  readonly configChanged: boolean;
}

/**
 * The planner's rollout step on a view: planNext on the effective config (effectiveConfig), the latest generation and
 * the connections the hosts reported (only `hosts`' reports when given: the planner passes the hosts it still waits
 * for; status, which cannot know the planner's clock, counts every report); `cache`: the planner's PlanCache.
 * PlannerCore.decide, `sluice status` and `sluice rollout status` all call this one function, so the waits they show
 * are the planner's own.
 */
export function plannerStep(
  view: StoreView,
  effective: { readonly config: Config; readonly doc: PlanDocs },
  now: number,
  hosts?: ReadonlySet<string>,
  silent?: ReadonlySet<string>,
  cache?: PlanCache,
): PlannerStep {
  const step = planNext({
    ...(cache !== undefined ? { cache } : {}),
    config: effective.config,
    latest: view.latest,
    connections: reportCounts(view.slotReports, hosts),
    hostConnections: hostBackendCounts(view, hosts, silent),
    now,
    ...(silent !== undefined ? { silentHosts: silent } : {}),
    ...lbIdContext(view),
  });
  return { ...step, configChanged: view.latest !== null && !samePlanDocs(view.latestConfig, effective.doc) };
}

/** plannerStep as status sees it (every report counts; hosts silent for HOST_WAIT_MS are silent hosts): undefined
 *  when the store holds no valid desired state (the planner publishes nothing then; storedConfig reports the
 *  problem). `cache`: a PlanCache kept across calls (the planner's own: what a pool settled to does not depend on
 *  the reports or the silent hosts), else every pool is stepped. */
export function observedPlannerStep(
  view: StoreView,
  now: number,
  cache?: PlanCache,
): PlannerStep | undefined {
  let effective: ReturnType<typeof effectiveConfig>;
  try {
    effective = effectiveConfig(view, '(the desired state in the store)');
  } catch {
    return undefined;
  }
  return effective === undefined
    ? undefined
    : plannerStep(view, effective, now, undefined, silentHosts(view, now), cache);
}

/** The agents' lease by default: how long a node may go without a heartbeat before it counts as silent. */
export const DEFAULT_LEASE_MS = 10_000;
/** What the planner adds to the lease by default before it stops waiting for a silent host. */
export const DEFAULT_MARGIN_MS = 5000;

/** How long a host may be silent before the planner stops waiting for it, with its default lease and margin: the
 *  status commands, which do not know the planner's flags, use it. */
export const HOST_WAIT_MS = DEFAULT_LEASE_MS + DEFAULT_MARGIN_MS;

/**
 * Hosts of the desired state whose agent has not written a heartbeat for `afterMs` by `now` (the agents' clock
 * against the reader's: the status commands' view of what the planner calls silent hosts), or never did.
 */
export function silentHosts(view: StoreView, now: number, afterMs = HOST_WAIT_MS): Set<string> {
  const out = new Set<string>();
  for (const n of view.desired?.nodes ?? []) {
    if (n.role !== 'host') continue;
    const st = view.nodeStatus.get(n.name);
    if (st === undefined || now - st.heartbeatAt > afterMs) out.add(n.name);
  }
  return out;
}

/** Sum of the hosts' reports. */
export function reportCounts(
  reports: StoreView['slotReports'],
  hosts?: ReadonlySet<string>,
): ConnectionCounts {
  return (lb, slot, key) => {
    let n = 0;
    for (const [host, perLb] of reports) {
      if (hosts !== undefined && !hosts.has(host)) continue;
      n += perLb.get(lb)?.counts.get(slot)?.get(key) ?? 0;
    }
    return n;
  };
}

/**
 * PlanInput.hostConnections from the hosts' reports: the connections one host reports for one backend of one load
 * balancer, over every slot. Unknown (undefined) for a host that is silent, out of `hosts`, or has never written
 * a status; a host with a status but no report row for the load balancer has none of its connections (a host writes
 * rows only for load balancers with connections).
 */
export function hostBackendCounts(
  view: Pick<StoreView, 'slotReports' | 'nodeStatus'>,
  hosts?: ReadonlySet<string>,
  silent?: ReadonlySet<string>,
): (host: string, lb: string, key: string) => number | undefined {
  return (host, lb, key) => {
    if ((hosts !== undefined && !hosts.has(host)) || silent?.has(host) || !view.nodeStatus.has(host))
      return undefined;
    let n = 0;
    for (const perKey of view.slotReports.get(host)?.get(lb)?.counts.values() ?? [])
      n += perKey.get(key) ?? 0;
    return n;
  };
}

function reportAt(ids: ReadonlyMap<string, string>): { reportAt?: number } {
  const v = Number(ids.get(REPORT_AT_KEY));
  return Number.isFinite(v) && v > 0 ? { reportAt: v } : {};
}

/** The index of kind `Index` of a replica, following its rows from its first read (health.ts, desired-index.ts). */
function followed<T>(r: Replica, Index: new (r: Replica) => T): T {
  const byKind = indexes.get(r) ?? new Map<unknown, unknown>();
  indexes.set(r, byKind);
  let index = byKind.get(Index) as T | undefined;
  if (index === undefined) {
    index = new Index(r);
    byKind.set(Index, index);
  }
  return index;
}

const indexes = new WeakMap<Replica, Map<unknown, unknown>>();

/** What was derived from a replica, and the stamp of what it was derived from then. */
const derived = new WeakMap<Replica, Map<string, { stamp: string; value: unknown }>>();

/** `read(r)`, computed again only when `stamp` (the versions of the tables it reads, Replica.version) differs from
 *  the last call with the same `key`: the planner reads a view on every heartbeat, and rebuilding 1,000 load
 *  balancers each time would cost it a core. */
function memo<T>(r: Replica, key: string, stamp: string, read: (r: Replica) => T): T {
  const m = derived.get(r) ?? new Map<string, { stamp: string; value: unknown }>();
  derived.set(r, m);
  const hit = m.get(key);
  if (hit?.stamp === stamp) return hit.value as T;
  const value = read(r);
  m.set(key, { stamp, value });
  return value;
}

const versions = (r: Replica, tables: readonly string[]) => tables.map((t) => r.version(t)).join(' ');

/** The tables readPlan reads besides Global. */
const PLAN_TABLES = [PlanTable.name, PlanLbTable.name, PlanPoolTable.name, PlanConfigTable.name];

/** Reads the StoreView from a replica of every table (ALL_TABLES_MONITOR). The desired state and the plan are the
 *  same objects as in the previous view while what they are read from did not change: treat them as read-only. */
export function readStoreView(r: Replica): StoreView {
  const desired = followed(r, DesiredStateIndex).read();
  // Of Global only the generation: every edit bumps desired_cfg, and a plan read again is a pass over every Plan_LB
  // row and a new Generation (which planNext and samePlanDocs then meet for the first time).
  const planStamp = `${single(r, GlobalTable)?.generation} ${versions(r, PLAN_TABLES)}`;
  const plan = memo(r, 'plan', planStamp, (x) => readPlan(x));
  // Fence marks from Node_Status (Sluice); heartbeats, acknowledgements and report marks from Node_Heartbeat
  // (Sluice_Status). The two replicas are not read atomically: docs/design/ovsdb.md, "Acknowledgements".
  const beats = new Map(rows(r, NodeHeartbeatTable).map((b) => [b.node, b]));
  const nodeStatus = new Map<string, NodeStatusView>();
  const acks = new Map(rows(r, NodeStatusTable).map((row) => [row.node, row]));
  for (const node of new Set([...acks.keys(), ...beats.keys()])) {
    const row = acks.get(node);
    const beat = beats.get(node);
    const marks = fenceMarks(row, beat);
    const ack = nodeAck(row, beat);
    nodeStatus.set(node, {
      appliedGeneration: ack?.appliedGeneration ?? 0,
      heartbeatAt: beat?.heartbeat_at ?? 0,
      fenced: marks.byAgent,
      plannerFenced: marks.byPlanner !== undefined,
      operatorFenced: marks.byOperator !== undefined,
      error: ack?.error,
      ...(marks.rejoin === undefined ? {} : { rejoin: marks.rejoin }),
      ...(marks.announced === undefined ? {} : { announced: marks.announced }),
      ...(beat === undefined ? {} : reportAt(beat.external_ids)),
    });
  }
  const backendHealth = followed(r, BackendHealthIndex).unhealthy();
  const slotReports = followed(r, SlotReportIndex).reports();
  const storedLbIds = memo(r, 'lb ids', versions(r, ['Plan_Pool']), readStoredLbIds);
  return {
    desiredCfg: desired?.desiredCfg ?? 0,
    desired: desired?.config,
    latest: plan?.generation ?? null,
    latestConfig: plan?.docs,
    gatewayGeneration: gatewayGeneration(r),
    nodeStatus,
    reportRound: single(r, ReportRoundTable)?.generation ?? 0,
    backendHealth,
    slotReports,
    storedLbIds,
  };
}

function readStoredLbIds(r: Replica): Set<number> {
  const ids = new Set<number>();
  for (const p of rows(r, PlanPoolTable)) if (p.lb_id !== undefined) ids.add(p.lb_id);
  return ids;
}
