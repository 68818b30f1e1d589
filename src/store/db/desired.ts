// The desired state in the Sluice database (Global, Load_Balancer, Backend, Node): read back as a config document,
// and the smallest transaction that turns the stored state into a given config (desired -> diff -> one
// transaction, never "delete all and re-add": agents watching the tables see only what changed, and unchanged rows
// keep their UUIDs). Pure: callers run the ops with client.transact.

import type { Backend, Config, LoadBalancer, Node } from '../../model/types.ts';
import { backendKey, DEFAULT_CHAIN_LENGTH } from '../../model/types.ts';
import type { Operation, OperationResult } from '../../ovsdb/protocol.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import type { Columns } from './columns.ts';
import {
  add,
  byUuid,
  insert,
  mapPut,
  mutate,
  remove,
  setDelete,
  setInsert,
  update,
  waitNone,
  waitUnchanged,
  where,
} from './ops.ts';
import { get, replicaOf, rows, selectAll, selectedRows, single } from './read.ts';
import {
  type BackendRow,
  BackendTable,
  CHAIN_LENGTH_KEY,
  type GlobalRow,
  GlobalTable,
  type LoadBalancerRow,
  LoadBalancerTable,
  type NodeRow,
  NodeTable,
} from './tables.ts';

/** The config-file-shaped object (docs/config.md) the stored desired state describes; validate it with parseConfig. */
export interface StoredDesiredState {
  readonly desiredCfg: number;
  readonly config: {
    hashMode?: string;
    slotBits?: number;
    drainWindowSeconds?: number;
    chainLength?: number;
    nodes: { name: string; role: string; tunnelIp: string }[];
    loadBalancers: {
      name: string;
      vip: string;
      protocol: string;
      ports: number[];
      healthCheck?: unknown;
      backends: {
        address: string;
        port?: number;
        host: string;
        weight: number;
        state: string;
        mac?: string;
      }[];
    }[];
  };
}

/** The desired_cfg of the stored desired state (0: nothing written yet). */
export function storedDesiredCfg(r: Replica): number {
  return single(r, GlobalTable)?.desired_cfg ?? 0;
}

/** Reads the desired state from a replica that monitors DESIRED_STATE_MONITOR (every row; DesiredStateIndex in
 *  desired-index.ts follows the same state row by row and is checked against this). */
export function readDesiredState(r: Replica): StoredDesiredState {
  const g = single(r, GlobalTable);
  const loadBalancers = rows(r, LoadBalancerTable)
    .map((lb) => desiredLb(r, lb))
    .sort(byName);
  return desiredStateOf(g, desiredNodes(r), loadBalancers);
}

export type DesiredLbDoc = StoredDesiredState['config']['loadBalancers'][number];
type DesiredNodeDoc = StoredDesiredState['config']['nodes'][number];

/** The nodes of the desired state, by name. */
export function desiredNodes(r: Replica): DesiredNodeDoc[] {
  return rows(r, NodeTable)
    .map((n) => ({ name: n.name, role: n.role, tunnelIp: n.tunnel_ip }))
    .sort(byName);
}

/** One load balancer of the desired state: its row and the Backend rows it names (in the row's order). */
export function desiredLb(r: Replica, lb: LoadBalancerRow): DesiredLbDoc {
  return {
    name: lb.name,
    vip: lb.vip,
    protocol: lb.protocol,
    ports: [...lb.ports].sort((a, b) => a - b),
    ...healthCheckOfRow(lb),
    backends: lb.backends
      .map((u) => get(r, BackendTable, u))
      .filter((b): b is BackendRow => b !== undefined)
      .map((b) => ({
        address: b.address,
        ...(b.port === undefined ? {} : { port: b.port }),
        host: b.host,
        weight: b.weight,
        state: b.admin_state,
        ...(b.mac === undefined ? {} : { mac: b.mac }),
      })),
  };
}

/** The desired state of Global's settings, the nodes and the load balancers (sorted by name). */
export function desiredStateOf(
  g: GlobalRow | undefined,
  nodes: DesiredNodeDoc[],
  loadBalancers: DesiredLbDoc[],
): StoredDesiredState {
  const config: StoredDesiredState['config'] = { nodes, loadBalancers };
  if (g !== undefined) {
    config.hashMode = g.hash_mode;
    config.slotBits = g.slot_bits;
    // 0 = no drain window (the default: previous owners are kept while they hold connections).
    if (g.drain_window > 0) config.drainWindowSeconds = g.drain_window;
    const chain = g.options.get(CHAIN_LENGTH_KEY);
    if (chain !== undefined) config.chainLength = Number(chain);
  }
  return { desiredCfg: g?.desired_cfg ?? 0, config };
}

/** Load balancers (or nodes) by name, as the desired state lists them. */
export const byName = <T extends { name: string }>(a: T, b: T) =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

const nodeColumns = (n: Node) => ({ name: n.name, role: n.role, tunnel_ip: n.tunnelIp });
const backendColumns = (b: Backend) => ({
  address: b.address,
  port: b.port,
  host: b.host,
  weight: b.weight,
  admin_state: b.state,
  mac: b.mac,
});
const lbColumns = (lb: LoadBalancer) => ({
  vip: lb.vip,
  protocol: lb.protocol,
  ports: [...lb.ports],
  health_check: lb.healthCheck === undefined ? '' : JSON.stringify(lb.healthCheck),
});

/** The row's `healthCheck` for the config document: parsed JSON, validated with the rest by parseConfig (text that
 *  is not JSON is passed on as text, so parseConfig names the field). */
function healthCheckOfRow(lb: LoadBalancerRow): { healthCheck?: unknown } {
  if (lb.health_check === '') return {};
  try {
    return { healthCheck: JSON.parse(lb.health_check) as unknown };
  } catch {
    return { healthCheck: lb.health_check };
  }
}

/** Columns of `want` whose value differs from `row` (sets compared regardless of order). */
function changed<R, W extends Partial<Columns<R>>>(row: R, want: W): Partial<W> {
  const out: Partial<W> = {};
  for (const c of Object.keys(want) as (keyof W & keyof R)[]) {
    const v = want[c];
    const have: unknown = row[c];
    const same = Array.isArray(v)
      ? Array.isArray(have) && JSON.stringify([...have].sort()) === JSON.stringify([...v].sort())
      : have === v;
    if (!same) out[c] = v;
  }
  return out;
}

const nonEmpty = (o: object) => Object.keys(o).length > 0;

/** Deletes, updates and inserts of Node rows, matched by name. */
function nodeOps(current: Replica, config: Config): Operation[] {
  const ops: Operation[] = [];
  const wantNodes = new Map(config.nodes.map((n) => [n.name, n]));
  for (const row of rows(current, NodeTable)) {
    const want = wantNodes.get(row.name);
    if (want === undefined) {
      ops.push(remove(NodeTable, byUuid(row._uuid)));
      continue;
    }
    const diff = changed<NodeRow, ReturnType<typeof nodeColumns>>(row, nodeColumns(want));
    if (nonEmpty(diff)) ops.push(update(NodeTable, byUuid(row._uuid), diff));
    wantNodes.delete(want.name);
  }
  for (const n of wantNodes.values()) ops.push(insert(NodeTable, nodeColumns(n)));
  return ops;
}

/** The changes to one stored load balancer's own columns and its backends (matched by backendKey). */
function lbChangeOps(
  current: Replica,
  row: LoadBalancerRow,
  want: LoadBalancer,
  name: () => string,
): Operation[] {
  const ops: Operation[] = [];
  const diff = changed<LoadBalancerRow, ReturnType<typeof lbColumns>>(row, lbColumns(want));
  if (nonEmpty(diff)) ops.push(update(LoadBalancerTable, byUuid(row._uuid), diff));
  const wantBackends = new Map(want.backends.map((b) => [backendKey(b), b]));
  const drop: string[] = [];
  const added: string[] = [];
  for (const bu of row.backends) {
    const b = get(current, BackendTable, bu);
    if (b === undefined) continue;
    const key = backendKey({ address: b.address, port: b.port });
    const wb = wantBackends.get(key);
    if (wb === undefined) {
      drop.push(bu);
      continue;
    }
    wantBackends.delete(key);
    const bdiff = changed<BackendRow, ReturnType<typeof backendColumns>>(b, backendColumns(wb));
    if (nonEmpty(bdiff)) ops.push(update(BackendTable, byUuid(bu), bdiff));
  }
  for (const b of wantBackends.values()) {
    const id = name();
    ops.push(insert(BackendTable, backendColumns(b), id));
    added.push(id);
  }
  const mutations = [
    ...(drop.length > 0 ? [setDelete(LoadBalancerTable, 'backends', drop)] : []),
    ...(added.length > 0 ? [setInsert(LoadBalancerTable, 'backends', added)] : []),
  ];
  if (mutations.length > 0) ops.push(mutate(LoadBalancerTable, byUuid(row._uuid), mutations));
  return ops;
}

/** Load balancers by name, their backends by key; a new load balancer's backends are inserted with it. */
function lbOps(current: Replica, config: Config): Operation[] {
  const ops: Operation[] = [];
  let named = 0;
  const name = () => `backend${named++}`;
  const wantLbs = new Map(config.loadBalancers.map((lb) => [lb.name, lb]));
  for (const row of rows(current, LoadBalancerTable)) {
    const want = wantLbs.get(row.name);
    if (want === undefined) ops.push(remove(LoadBalancerTable, byUuid(row._uuid)));
    else {
      wantLbs.delete(want.name);
      ops.push(...lbChangeOps(current, row, want, name));
    }
  }
  for (const lb of wantLbs.values()) {
    const names = lb.backends.map((b) => {
      const id = name();
      ops.push(insert(BackendTable, backendColumns(b), id));
      return id;
    });
    ops.push(insert(LoadBalancerTable, { name: lb.name, ...lbColumns(lb), backends: names }));
  }
  return ops;
}

/**
 * The operations that turn the desired state in `current` (a replica of DESIRED_STATE_MONITOR) into `config`, or
 * `[]` when they already agree. The transaction starts with a `wait` that the stored `desired_cfg` is still the one
 * `current` saw, so a concurrent writer makes it fail (isConflict: retry with a fresh replica), and ends by
 * incrementing `desired_cfg` (like OVN's nb_cfg). Backends are matched by backendKey (address and port) within
 * their load balancer; a backend removed from every load balancer is garbage-collected by ovsdb-server.
 */
export function desiredStateOps(current: Replica, config: Config): Operation[] {
  const ops = [...nodeOps(current, config), ...lbOps(current, config)];
  const g = single(current, GlobalTable);
  const settings = {
    hash_mode: config.hashMode,
    slot_bits: config.slotBits,
    drain_window: config.drainWindowSeconds ?? 0, // 0 = none
  };
  // The chain bound lives in Global.options (absent: the default), beside the planner's keys: set by key only.
  const chain = config.chainLength ?? DEFAULT_CHAIN_LENGTH;
  const chainOp = mutate(
    GlobalTable,
    [],
    mapPut(GlobalTable, 'options', { [CHAIN_LENGTH_KEY]: String(chain) }),
  );
  if (g === undefined) {
    ops.push(insert(GlobalTable, { ...settings, desired_cfg: 1 }));
    if (chain !== DEFAULT_CHAIN_LENGTH) ops.push(chainOp);
    return ops;
  }
  const gdiff = changed(g, settings);
  if (nonEmpty(gdiff)) ops.push(update(GlobalTable, [], gdiff));
  if (Number(g.options.get(CHAIN_LENGTH_KEY) ?? DEFAULT_CHAIN_LENGTH) !== chain) ops.push(chainOp);
  if (ops.length === 0) return [];
  return [
    waitUnchanged(GlobalTable, [], { desired_cfg: g.desired_cfg }),
    ...ops,
    mutate(GlobalTable, [], [add(GlobalTable, 'desired_cfg', 1)]),
  ];
}

// ---------------------------------------------------------------------------------------------------------
// One load balancer's part of the desired state, read with `select`s instead of a monitor of every table: an edit of
// one load balancer's backends reads and validates what it changes, not the whole store (docs/design/control-plane.md).

/** First read: Global, every Node, and the Load_Balancer named `lb` (none when it does not exist). */
export function lbScopeReadOps(lb: string): Operation[] {
  return [
    selectAll(GlobalTable, []),
    selectAll(NodeTable, []),
    selectAll(LoadBalancerTable, [where(LoadBalancerTable, 'name', '==', lb)]),
  ];
}

/** Second read: the load balancer's Backend rows, behind a wait that desired_cfg is still the one the first read
 *  saw (so both reads see one state; a failed wait is a conflict: read again). */
export function lbScopeBackendOps(first: readonly OperationResult[]): Operation[] {
  const g = selectedRows(GlobalTable, first[0])[0];
  const lb = selectedRows(LoadBalancerTable, first[2])[0];
  const backends = lb === undefined ? [] : (lb.backends as readonly string[]);
  return [
    ...(g === undefined ? [] : [waitUnchanged(GlobalTable, [], { desired_cfg: g.desired_cfg as number })]),
    ...backends.map((u) => selectAll(BackendTable, byUuid(u))),
  ];
}

/** The two reads as a Replica: readDesiredState gives the one-load-balancer document, desiredStateOps the writes. */
export function lbScopeReplica(
  first: readonly OperationResult[],
  second: readonly OperationResult[],
): Replica {
  const waited = first[0] !== undefined && selectedRows(GlobalTable, first[0]).length > 0 ? 1 : 0;
  return replicaOf([
    [GlobalTable, selectedRows(GlobalTable, first[0])],
    [NodeTable, selectedRows(NodeTable, first[1])],
    [LoadBalancerTable, selectedRows(LoadBalancerTable, first[2])],
    [BackendTable, second.slice(waited).flatMap((r) => selectedRows(BackendTable, r))],
  ]);
}

/**
 * Waits that fail the transaction if a backend of `config`'s load balancer `lb` that `current` does not hold on the
 * same host conflicts with another load balancer (the rules parseConfig checks across load balancers: the address
 * is another load balancer's VIP, or it is a backend there on another host). Put after desiredStateOps' guard.
 */
export function lbScopeConflictWaits(current: Replica, config: Config, lb: string): Operation[] {
  const want = config.loadBalancers.find((l) => l.name === lb);
  if (want === undefined) return [];
  const held = new Set(rows(current, BackendTable).map((b) => `${b.address} ${b.host}`));
  const fresh = new Map<string, string>();
  for (const b of want.backends) if (!held.has(`${b.address} ${b.host}`)) fresh.set(b.address, b.host);
  return [...fresh].flatMap(([address, host]) => [
    waitNone(BackendTable, [
      where(BackendTable, 'address', '==', address),
      where(BackendTable, 'host', '!=', host),
    ]),
    waitNone(LoadBalancerTable, [
      where(LoadBalancerTable, 'vip', '==', address),
      where(LoadBalancerTable, 'name', '!=', lb),
    ]),
  ]);
}
