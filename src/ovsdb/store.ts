// sluice's desired state in the Sluice database: reading it back as a config, and the smallest transaction that
// turns the stored state into a given config (desired -> diff -> one transaction, never "delete all and
// re-add": agents watching the tables see only what changed, and unchanged rows keep their UUIDs).
// Pure apart from the types it shares with the client: no I/O here; callers run the ops with client.transact.

import type { Backend, Config, LoadBalancer, Node } from '../model/types.ts';
import { backendKey } from '../model/types.ts';
import {
  type DatabaseSchema,
  encodeRow,
  type JsRow,
  type Mutation,
  type Operation,
  type TableSchema,
  uuid,
} from './protocol.ts';
import type { Replica } from './replica.ts';

/** Tables holding the desired state (what the CLI writes, the planner reads). */
export const DESIRED_TABLES = ['Global', 'Load_Balancer', 'Backend', 'Node'] as const;

/** `client.monitor(db, desiredStateMonitor())`: every column of the desired-state tables. */
export function desiredStateMonitor(): { [table: string]: Record<string, never> } {
  return Object.fromEntries(DESIRED_TABLES.map((t) => [t, {}]));
}

/** The config-file-shaped object (docs/config.md) the stored desired state describes; validate it with parseConfig. */
export interface StoredDesiredState {
  readonly desiredCfg: number;
  readonly config: {
    hashMode?: string;
    slotBits?: number;
    drainWindowSeconds?: number;
    nodes: { name: string; role: string; tunnelIp: string }[];
    loadBalancers: {
      name: string;
      vip: string;
      protocol: string;
      ports: number[];
      backends: { address: string; port?: number; host: string; weight: number; state: string }[];
    }[];
  };
}

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Reads the desired state from a replica that monitors DESIRED_TABLES. */
export function readDesiredState(r: Replica): StoredDesiredState {
  const g = r.rows('Global')[0];
  const nodes = r
    .rows('Node')
    .map((n) => ({ name: n.name as string, role: n.role as string, tunnelIp: n.tunnel_ip as string }))
    .sort(byName);
  const loadBalancers = r
    .rows('Load_Balancer')
    .map((lb) => ({
      name: lb.name as string,
      vip: lb.vip as string,
      protocol: lb.protocol as string,
      ports: [...(lb.ports as number[])].sort((a, b) => a - b),
      backends: (lb.backends as string[])
        .map((u) => r.get('Backend', u))
        .filter((b): b is JsRow => b !== undefined)
        .map((b) => ({
          address: b.address as string,
          ...(b.port === undefined ? {} : { port: b.port as number }),
          host: b.host as string,
          weight: b.weight as number,
          state: b.admin_state as string,
        })),
    }))
    .sort(byName);
  const config: StoredDesiredState['config'] = { nodes, loadBalancers };
  if (g !== undefined) {
    config.hashMode = g.hash_mode as string;
    config.slotBits = g.slot_bits as number;
    config.drainWindowSeconds = g.drain_window as number;
  }
  return { desiredCfg: g === undefined ? 0 : (g.desired_cfg as number), config };
}

function table(schema: DatabaseSchema, name: string): TableSchema {
  const t = schema.tables[name];
  if (t === undefined) throw new Error(`schema ${schema.name} has no table ${name}`);
  return t;
}

const nodeColumns = (n: Node) => ({ name: n.name, role: n.role, tunnel_ip: n.tunnelIp });
const backendColumns = (b: Backend) => ({
  address: b.address,
  port: b.port,
  host: b.host,
  weight: b.weight,
  admin_state: b.state,
});
const lbColumns = (lb: LoadBalancer) => ({ vip: lb.vip, protocol: lb.protocol, ports: [...lb.ports] });

/** Columns of `want` whose value differs from `row` (sets compared regardless of order). */
function changed(row: JsRow, want: { [c: string]: string | number | readonly number[] | undefined }): JsRow {
  const out: { [c: string]: string | number | readonly number[] | undefined } = {};
  for (const [c, v] of Object.entries(want)) {
    const have = row[c];
    const same = Array.isArray(v)
      ? Array.isArray(have) && JSON.stringify([...have].sort()) === JSON.stringify([...v].sort())
      : have === v;
    if (!same) out[c] = v;
  }
  return out as JsRow;
}

/**
 * The operations that turn the desired state in `current` (a replica of DESIRED_TABLES) into `config`, or `[]`
 * when they already agree. The transaction starts with a `wait` that the stored `desired_cfg` is still the one
 * `current` saw, so a concurrent writer makes it fail with "timed out" (retry with a fresh replica), and ends by
 * incrementing `desired_cfg` (like OVN's nb_cfg). Backends are matched by backendKey (address and port) within
 * their load balancer; a backend removed from every load balancer is garbage-collected by ovsdb-server.
 */
export function desiredStateOps(schema: DatabaseSchema, current: Replica, config: Config): Operation[] {
  const ops: Operation[] = [];
  const gT = table(schema, 'Global');
  const nodeT = table(schema, 'Node');
  const lbT = table(schema, 'Load_Balancer');
  const beT = table(schema, 'Backend');
  const byUuid = (u: string) => ['_uuid', '==', uuid(u)] as const;

  // Nodes, by name.
  const wantNodes = new Map(config.nodes.map((n) => [n.name, n]));
  for (const row of current.rows('Node')) {
    const want = wantNodes.get(row.name as string);
    if (want === undefined) ops.push({ op: 'delete', table: 'Node', where: [byUuid(row._uuid as string)] });
    else {
      const diff = changed(row, nodeColumns(want));
      if (Object.keys(diff).length > 0) {
        ops.push({
          op: 'update',
          table: 'Node',
          where: [byUuid(row._uuid as string)],
          row: encodeRow(nodeT, diff),
        });
      }
      wantNodes.delete(want.name);
    }
  }
  for (const n of wantNodes.values())
    ops.push({ op: 'insert', table: 'Node', row: encodeRow(nodeT, nodeColumns(n)) });

  // Load balancers, by name; their backends by key.
  let named = 0;
  const wantLbs = new Map(config.loadBalancers.map((lb) => [lb.name, lb]));
  for (const row of current.rows('Load_Balancer')) {
    const lbUuid = row._uuid as string;
    const want = wantLbs.get(row.name as string);
    if (want === undefined) {
      ops.push({ op: 'delete', table: 'Load_Balancer', where: [byUuid(lbUuid)] });
      continue;
    }
    wantLbs.delete(want.name);
    const diff = changed(row, lbColumns(want));
    if (Object.keys(diff).length > 0) {
      ops.push({ op: 'update', table: 'Load_Balancer', where: [byUuid(lbUuid)], row: encodeRow(lbT, diff) });
    }
    const wantBackends = new Map(want.backends.map((b) => [backendKey(b), b]));
    const drop: string[] = [];
    const add: string[] = [];
    for (const bu of row.backends as string[]) {
      const b = current.get('Backend', bu);
      if (b === undefined) continue;
      const key = backendKey({ address: b.address as string, port: b.port as number | undefined });
      const wb = wantBackends.get(key);
      if (wb === undefined) {
        drop.push(bu);
        continue;
      }
      wantBackends.delete(key);
      const bdiff = changed(b, backendColumns(wb));
      if (Object.keys(bdiff).length > 0) {
        ops.push({ op: 'update', table: 'Backend', where: [byUuid(bu)], row: encodeRow(beT, bdiff) });
      }
    }
    for (const b of wantBackends.values()) {
      const name = `backend${named++}`;
      ops.push({ op: 'insert', table: 'Backend', row: encodeRow(beT, backendColumns(b)), 'uuid-name': name });
      add.push(name);
    }
    const mutations: Mutation[] = [];
    if (drop.length > 0) mutations.push(['backends', 'delete', ['set', drop.map((u) => uuid(u))]]);
    if (add.length > 0)
      mutations.push(['backends', 'insert', ['set', add.map((n) => ['named-uuid', n] as const)]]);
    if (mutations.length > 0)
      ops.push({ op: 'mutate', table: 'Load_Balancer', where: [byUuid(lbUuid)], mutations });
  }
  for (const lb of wantLbs.values()) {
    const names = lb.backends.map(() => `backend${named++}`);
    lb.backends.forEach((b, i) => {
      ops.push({
        op: 'insert',
        table: 'Backend',
        row: encodeRow(beT, backendColumns(b)),
        'uuid-name': names[i]!,
      });
    });
    ops.push({
      op: 'insert',
      table: 'Load_Balancer',
      row: {
        ...encodeRow(lbT, { name: lb.name, ...lbColumns(lb) }),
        backends: ['set', names.map((n) => ['named-uuid', n] as const)],
      },
    });
  }

  // Global settings and the change counter.
  const g = current.rows('Global')[0];
  const settings = {
    hash_mode: config.hashMode,
    slot_bits: config.slotBits,
    drain_window: config.drainWindowSeconds,
  };
  if (g === undefined) {
    ops.push({ op: 'insert', table: 'Global', row: encodeRow(gT, { ...settings, desired_cfg: 1 }) });
    return ops;
  }
  const gdiff = changed(g, settings);
  if (Object.keys(gdiff).length > 0)
    ops.push({ op: 'update', table: 'Global', where: [], row: encodeRow(gT, gdiff) });
  if (ops.length === 0) return [];
  return [
    {
      op: 'wait',
      timeout: 0,
      table: 'Global',
      where: [],
      columns: ['desired_cfg'],
      until: '==',
      rows: [{ desired_cfg: g.desired_cfg as number }],
    },
    ...ops,
    { op: 'mutate', table: 'Global', where: [], mutations: [['desired_cfg', '+=', 1]] },
  ];
}
