// Typed reads of the Sluice tables from a Replica (what a monitor keeps), and the monitor requests that fill one.
// Every row goes through its table's decoder (columns.ts decodeRow): a malformed row fails with its table, UUID and
// column named instead of flowing on as a wrong type. Pure: no I/O.

import type {
  Condition,
  JsRow,
  JsValue,
  MonitorCondRequest,
  OperationResult,
  Select,
} from '../../ovsdb/protocol.ts';
import { decodeValue } from '../../ovsdb/protocol.ts';
import { Replica } from '../../ovsdb/replica.ts';
import { type ColumnDef, type Columns, decodeColumns, decodeRow, type TableDef } from './columns.ts';
import {
  BackendStatusTable,
  DB_NAME,
  NodeHeartbeatTable,
  ReportRoundTable,
  SlotConnectionsTable,
  STATUS_DB_NAME,
  TABLES,
} from './tables.ts';

type Any = { readonly _uuid: string };

/** Every row of `t` the replica holds. */
export function rows<R extends Any>(r: Replica, t: TableDef<R>): R[] {
  return r.rows(t.name).map((row) => decodeRow(t, row));
}

/** The row of `t` with UUID `id`, if the replica holds it. */
export function get<R extends Any>(r: Replica, t: TableDef<R>, id: string): R | undefined {
  const row = r.get(t.name, id);
  return row === undefined ? undefined : decodeRow(t, row);
}

/** The first row of `t` that `pred` accepts. */
export function find<R extends Any>(r: Replica, t: TableDef<R>, pred: (row: R) => boolean): R | undefined {
  for (const row of r.rows(t.name)) {
    const typed = decodeRow(t, row);
    if (pred(typed)) return typed;
  }
  return undefined;
}

/** The only row of a one-row table (Global), if there is one. */
export function single<R extends Any>(r: Replica, t: TableDef<R>): R | undefined {
  const row = r.rows(t.name)[0];
  return row === undefined ? undefined : decodeRow(t, row);
}

/** `columns` of every row of `t`, from a monitor that asked for those columns only. */
export function rowsWith<R extends Any, K extends keyof Columns<R>>(
  r: Replica,
  t: TableDef<R>,
  columns: readonly K[],
): Pick<R, K | '_uuid'>[] {
  return r.rows(t.name).map((row) => decodeColumns(t, row, columns));
}

// ---------------------------------------------------------------------------------------------------------
// Reads without a monitor: `select` the rows a command needs, then read them through a Replica as above.

/** Every column (and `_uuid`) of the rows of `t` where `where` holds (conditions ANDed). */
export function selectAll<R extends Any>(t: TableDef<R>, where: readonly Condition[]): Select {
  return { op: 'select', table: t.name, where, columns: ['_uuid', ...Object.keys(t.columns)] };
}

/** The rows a `selectAll(t, ...)` returned, as a Replica holds them (decoded by the columns' declared types). */
export function selectedRows<R extends Any>(t: TableDef<R>, result: OperationResult | undefined): JsRow[] {
  const raw = (result as { rows?: readonly Record<string, unknown>[] } | undefined)?.rows ?? [];
  const defs = t.columns as Record<string, ColumnDef<unknown>>;
  return raw.map((row) => {
    const out: Record<string, JsValue> = {};
    for (const [c, v] of Object.entries(row)) {
      if (c === '_uuid') out[c] = (v as readonly [string, string])[1];
      else if (defs[c] !== undefined) out[c] = decodeValue(v as never, defs[c].type);
    }
    return Object.freeze(out) as JsRow;
  });
}

/** A replica holding just these rows (what `select`s returned), for the readers above and desiredStateOps. */
export function replicaOf(tables: readonly (readonly [TableDef<Any>, readonly JsRow[]])[]): Replica {
  const r = new Replica();
  r.replace(
    new Map(tables.map(([t, rows]) => [t.name, new Map(rows.map((row) => [row._uuid as string, row]))])),
  );
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Monitor requests. One object may name tables of both databases: splitMonitor says which go to which (a client
// then runs one monitor per database, each resuming on its own, and reads them as one ReplicaUnion).

type MonitorRequests = { readonly [table: string]: MonitorCondRequest };

/** The Sluice_Status tables a monitor reads (its RBAC tables share their names with Sluice's and stay unread). */
export const STATUS_MONITOR_TABLES: readonly string[] = [
  NodeHeartbeatTable.name,
  BackendStatusTable.name,
  SlotConnectionsTable.name,
  ReportRoundTable.name,
];

/** What a daemon of this version says to an operator whose store predates Sluice_Status (schema 3.0.0) or its
 *  acknowledgements (Sluice_Status 1.1.0). */
export const STATUS_DB_HINT =
  'this sluice needs the store at schema 3.0.0 or later with the Sluice_Status database at 1.1.0: upgrade the ' +
  'store first (docs/deploy.md, "Upgrades")';

/** The oldest schema of each database this version reads and writes (client.monitorDatabases checks them). */
export const SCHEMA_NEEDS: { readonly [db: string]: string } = { [STATUS_DB_NAME]: '1.1.0' };

/** `requests` per database: [database, its requests] for each database it names (Sluice first). */
export function splitMonitor(requests: MonitorRequests): [string, MonitorRequests][] {
  const plan: Record<string, MonitorCondRequest> = {};
  const status: Record<string, MonitorCondRequest> = {};
  for (const [table, req] of Object.entries(requests))
    (STATUS_MONITOR_TABLES.includes(table) ? status : plan)[table] = req;
  const out: [string, MonitorRequests][] = [];
  if (Object.keys(plan).length > 0) out.push([DB_NAME, plan]);
  if (Object.keys(status).length > 0) out.push([STATUS_DB_NAME, status]);
  return out;
}

/** The desired state: what the CLI writes and the planner plans from (every column). */
export const DESIRED_STATE_MONITOR: MonitorRequests = {
  Global: {},
  Load_Balancer: {},
  Backend: {},
  Node: {},
};

/** Published plans: what agents apply (every column of Global, Plan, Plan_LB, Plan_Pool, Plan_Config). */
export const PLAN_MONITOR: MonitorRequests = {
  Global: {},
  Plan: {},
  Plan_LB: {},
  Plan_Pool: {},
  Plan_Config: {},
};

/** Every table of both databases (the planner's view of the whole store). */
export const ALL_TABLES_MONITOR: MonitorRequests = Object.fromEntries(
  [...TABLES.map((t) => t.name), ...STATUS_MONITOR_TABLES].map((t) => [t, {}]),
);

/** The heads of published plans (no pools, no config): enough to say which desired_cfg a generation came from. */
export const PLAN_HEAD_COLUMNS = ['generation', 'desired_cfg', 'created_at'] as const;
export const PLAN_HEAD_MONITOR: MonitorRequests = { Plan: { columns: PLAN_HEAD_COLUMNS } };

/** What node `node`'s agent follows: published plans, and its own status rows (in both databases). */
export function agentMonitor(node: string): MonitorRequests {
  const me = [['node', '==', node]] as const;
  return {
    ...PLAN_MONITOR,
    Node_Status: { where: me },
    Node_Heartbeat: { where: me },
    Backend_Status: { where: me },
    Slot_Connections: { where: me },
  };
}
