// The Sluice database (schema/sluice.ovsschema): its name, one typed row per table, and the keys sluice keeps in
// its string maps. Column names are the schema's (snake_case) so a reader can grep a column from the schema to
// its uses; test/unit/store-db-schema.test.ts checks these definitions against the schema file both ways.

import type { AdminState, HashMode, NodeRole } from '../../model/types.ts';
import { col, type TableDef } from './columns.ts';

/** The database name, as in schema/sluice.ovsschema. */
export const DB_NAME = 'Sluice';
/** The status database (schema/sluice-status.ovsschema), served by the same ovsdb-server processes: what nodes write
 *  periodically (heartbeats, connection reports), kept apart so those writes never push the plans' transactions out of
 *  ovsdb-server's history (docs/design/ovsdb.md, "ovsdb-server's transaction history"). */
export const STATUS_DB_NAME = 'Sluice_Status';

// The schema's enums that the model already names (one definition each).
export type { AdminState, HashMode } from '../../model/types.ts';
export type Role = NodeRole;
/** `down`: its health check fails (it may still serve its connections); `gone`: its port is missing on its host. */
export type Health = 'unknown' | 'up' | 'down' | 'gone';

export interface GlobalRow {
  readonly _uuid: string;
  readonly hash_mode: HashMode;
  readonly slot_bits: number;
  /** Seconds. */
  readonly drain_window: number;
  /** Incremented by every write of the desired state (the write's guard). */
  readonly desired_cfg: number;
  /** The latest published generation. */
  readonly generation: number;
  /** The Plan row of `generation`. */
  readonly plan: string | undefined;
  /** GATEWAY_GENERATION_KEY. */
  readonly options: ReadonlyMap<string, string>;
  readonly external_ids: ReadonlyMap<string, string>;
}

export interface LoadBalancerRow {
  readonly _uuid: string;
  readonly name: string;
  readonly vip: string;
  readonly protocol: 'tcp' | 'udp';
  readonly ports: readonly number[];
  /** The config's `healthCheck` object as JSON; '' = the protocol's default check (schema 1.5.0). */
  readonly health_check: string;
  /** Backend rows. */
  readonly backends: readonly string[];
  readonly external_ids: ReadonlyMap<string, string>;
}

export interface BackendRow {
  readonly _uuid: string;
  readonly address: string;
  readonly port: number | undefined;
  /** The Node (host) the backend runs on. */
  readonly host: string;
  readonly weight: number;
  readonly admin_state: AdminState;
  /** The backend's own MAC (schema 2.2.0; config `mac`); undefined when none is given, and in older rows. */
  readonly mac: string | undefined;
  readonly external_ids: ReadonlyMap<string, string>;
}

export interface NodeRow {
  readonly _uuid: string;
  readonly name: string;
  readonly role: Role;
  readonly tunnel_ip: string;
  readonly external_ids: ReadonlyMap<string, string>;
}

export interface PlanRow {
  readonly _uuid: string;
  readonly generation: number;
  /** The desired_cfg the generation was planned from. */
  readonly desired_cfg: number;
  /** ms, the planner's clock. */
  readonly created_at: number;
  /** Plan_Pool rows. */
  readonly pools: readonly string[];
  /** The Plan_Config row (undefined in plans written before schema 1.2.0: LEGACY_PLAN_CONFIG_KEY). */
  readonly config: string | undefined;
  readonly external_ids: ReadonlyMap<string, string>;
}

/** Slot arrays encoded as in encoding.ts (poolToRow / rowToPool). */
export interface PlanPoolRow {
  readonly _uuid: string;
  readonly lb: string;
  readonly bits: number;
  readonly members: string;
  readonly primary: string;
  readonly second: string;
  readonly phase: string;
  readonly since: string;
  /** The owners' lanes of every slot that has a chain (encoding.ts); '' in rows written before schema 1.3.0. */
  readonly lanes: string;
  /** The load balancer's id (schema 2.1.0); undefined in rows written before: ids computed from names. */
  readonly lb_id: number | undefined;
}

/**
 * One load balancer's part of every generation from `from_generation` until before `until_generation` (0: it is in
 * the latest one): its pool and its config document. A generation that changes one pool ends that pool's row and
 * starts one; the other load balancers' rows carry on untouched (schema 2.0.0).
 */
export interface PlanLbRow {
  readonly _uuid: string;
  readonly lb: string;
  readonly from_generation: number;
  readonly until_generation: number;
  /** The Plan_Pool row. */
  readonly pool: string;
  /** The Plan_Config row holding the load balancer's JSON (config-file shape); undefined: planned without one. */
  readonly config: string | undefined;
}

export interface PlanConfigRow {
  readonly _uuid: string;
  /** The effective config (JSON) a generation was planned from; rows are never modified. */
  readonly document: string;
}

export interface NodeStatusRow {
  readonly _uuid: string;
  readonly node: string;
  /** The acknowledgement of agents before Sluice_Status 1.1.0 (they now write it in Node_Heartbeat): read only where
   *  the node's Node_Heartbeat row has none (nodeAck). */
  readonly applied_generation: number;
  /** The desired_cfg the applied generation was planned from (0: nothing applied yet). */
  readonly applied_cfg: number;
  /** ms */
  readonly applied_at: number;
  readonly error: string | undefined;
  /** AGENT_FENCED_KEY, ROLE_KEY, PLANNER_FENCED_KEY, OPERATOR_FENCED_KEY, REJOIN_KEY, ANNOUNCED_KEY,
   *  FENCE_REJOIN_KEY (the heartbeat's marks are in Node_Heartbeat, Sluice_Status). */
  readonly external_ids: ReadonlyMap<string, string>;
}

export interface BackendStatusRow {
  readonly _uuid: string;
  readonly node: string;
  readonly lb: string;
  /** backendKey (address and port). */
  readonly backend: string;
  readonly health: Health;
  readonly connections: number;
  /** ms */
  readonly checked_at: number;
  /** Whether the latest health probe passed (undefined: none yet, or no checker); schema 1.6.0. */
  readonly last_ok: boolean | undefined;
}

export interface SlotConnectionsRow {
  readonly _uuid: string;
  readonly node: string;
  readonly lb: string;
  readonly generation: number;
  readonly bits: number;
  /** encodeSlotCounts (JSON {slot: {backendKey: n}}). */
  readonly counts: string;
  /** ms */
  readonly reported_at: number;
}

export const GlobalTable: TableDef<GlobalRow> = {
  name: 'Global',
  columns: {
    hash_mode: col.oneOf('dp_hash', 'fields'),
    slot_bits: col.integer,
    drain_window: col.real,
    desired_cfg: col.integer,
    generation: col.integer,
    plan: col.optionalRef('Plan'),
    options: col.stringMap,
    external_ids: col.stringMap,
  },
};

export const LoadBalancerTable: TableDef<LoadBalancerRow> = {
  name: 'Load_Balancer',
  columns: {
    name: col.string,
    vip: col.string,
    protocol: col.oneOf('tcp', 'udp'),
    ports: col.integerSet(1),
    health_check: col.string,
    backends: col.refSet('Backend'),
    external_ids: col.stringMap,
  },
};

export const BackendTable: TableDef<BackendRow> = {
  name: 'Backend',
  columns: {
    address: col.string,
    port: col.optionalInteger,
    host: col.string,
    weight: col.integer,
    admin_state: col.oneOf('active', 'draining', 'down'),
    mac: col.optionalString,
    external_ids: col.stringMap,
  },
};

export const NodeTable: TableDef<NodeRow> = {
  name: 'Node',
  columns: {
    name: col.string,
    role: col.oneOf('gateway', 'host'),
    tunnel_ip: col.string,
    external_ids: col.stringMap,
  },
};

export const PlanTable: TableDef<PlanRow> = {
  name: 'Plan',
  columns: {
    generation: col.integer,
    desired_cfg: col.integer,
    created_at: col.integer,
    pools: col.refSet('Plan_Pool'),
    config: col.optionalRef('Plan_Config'),
    external_ids: col.stringMap,
  },
};

export const PlanPoolTable: TableDef<PlanPoolRow> = {
  name: 'Plan_Pool',
  columns: {
    lb: col.string,
    bits: col.integer,
    members: col.string,
    primary: col.string,
    second: col.string,
    phase: col.string,
    since: col.string,
    lanes: col.string,
    lb_id: col.optionalInteger,
  },
};

export const PlanLbTable: TableDef<PlanLbRow> = {
  name: 'Plan_LB',
  columns: {
    lb: col.string,
    from_generation: col.integer,
    until_generation: col.integer,
    pool: col.ref('Plan_Pool'),
    config: col.optionalRef('Plan_Config'),
  },
};

export const PlanConfigTable: TableDef<PlanConfigRow> = {
  name: 'Plan_Config',
  columns: { document: col.string },
};

export const NodeStatusTable: TableDef<NodeStatusRow> = {
  name: 'Node_Status',
  columns: {
    node: col.string,
    applied_generation: col.integer,
    applied_cfg: col.integer,
    applied_at: col.integer,
    error: col.optionalString,
    external_ids: col.stringMap,
  },
};

export const BackendStatusTable: TableDef<BackendStatusRow> = {
  name: 'Backend_Status',
  columns: {
    node: col.string,
    lb: col.string,
    backend: col.string,
    health: col.oneOf('unknown', 'up', 'down', 'gone'),
    connections: col.integer,
    checked_at: col.integer,
    last_ok: col.optionalBoolean,
  },
};

export const SlotConnectionsTable: TableDef<SlotConnectionsRow> = {
  name: 'Slot_Connections',
  columns: {
    node: col.string,
    lb: col.string,
    generation: col.integer,
    bits: col.integer,
    counts: col.string,
    reported_at: col.integer,
  },
};

/** Sluice_Status: a node's heartbeat (its lease) and the marks it refreshes with it. */
export interface NodeHeartbeatRow {
  readonly _uuid: string;
  readonly node: string;
  /** ms, the agent's clock: only its changes matter to the planner. */
  readonly heartbeat_at: number;
  /** The node's acknowledgement (1.1.0; what Node_Status held before): the generation its datapath obeys. Empty in the
   *  rows of agents before 1.1.0, whose acknowledgements are in Node_Status. */
  readonly applied_generation: number | undefined;
  /** The desired_cfg the applied generation was planned from (0: nothing applied yet). */
  readonly applied_cfg: number;
  /** ms */
  readonly applied_at: number;
  readonly error: string | undefined;
  /** ROLE_KEY, REPORT_AT_KEY, ROUTING_KEY, SECOND_CHANCE_KEY, HASH_AGREEMENT_KEY, SLOT_AUDIT_KEY. */
  readonly external_ids: ReadonlyMap<string, string>;
}

/** Sluice_Status: the generation whose gateway ack round the planner saw complete (written by the planner): host
 *  connection reports committed after it are newer than that round. */
export interface ReportRoundRow {
  readonly _uuid: string;
  readonly generation: number;
  /** ms, the planner's clock. */
  readonly marked_at: number;
}

export const NodeHeartbeatTable: TableDef<NodeHeartbeatRow> = {
  name: 'Node_Heartbeat',
  columns: {
    node: col.string,
    heartbeat_at: col.integer,
    applied_generation: col.optionalInteger,
    applied_cfg: col.integer,
    applied_at: col.integer,
    error: col.optionalString,
    external_ids: col.stringMap,
  },
};

export const ReportRoundTable: TableDef<ReportRoundRow> = {
  name: 'Report_Round',
  columns: { generation: col.integer, marked_at: col.integer },
};

// Access control (docs/security.md): ovsdb-server reads its TLS remotes, each with a role, from Store.connections
// and enforces RBAC_Role/RBAC_Permission on every client that came in through a remote with a role.

export interface StoreRow {
  readonly _uuid: string;
  /** Connection rows: the remotes ovsdb-server listens on (`--remote=db:Sluice,Store,connections`). */
  readonly connections: readonly string[];
}

export interface ConnectionRow {
  readonly _uuid: string;
  /** `pssl:port:address` (or any ovsdb-server remote). */
  readonly target: string;
  /** The RBAC_Role of every client that connects here ('' = none: full access). */
  readonly role: string;
  /** ms ovsdb-server lets a client of this remote send nothing before it probes it (and as long again before it
   *  drops it); 0 = never probe; unset = ovsdb-server's default, 5 s (schema 3.1.0). */
  readonly inactivity_probe: number | undefined;
}

export interface RbacRoleRow {
  readonly _uuid: string;
  readonly name: string;
  /** Table name -> its RBAC_Permission row; a table not listed is read-only for the role. */
  readonly permissions: ReadonlyMap<string, string>;
}

export interface RbacPermissionRow {
  readonly _uuid: string;
  readonly table: string;
  /** Columns (or `column:key`) whose value must equal the client's certificate CN; '' = every row. */
  readonly authorization: readonly string[];
  readonly insert_delete: boolean;
  /** Columns the role may update or mutate in the rows it is authorized for. */
  readonly update: readonly string[];
}

export const StoreTable: TableDef<StoreRow> = {
  name: 'Store',
  columns: { connections: col.refSet('Connection') },
};

export const ConnectionTable: TableDef<ConnectionRow> = {
  name: 'Connection',
  columns: { target: col.string, role: col.string, inactivity_probe: col.optionalInteger },
};

export const RbacRoleTable: TableDef<RbacRoleRow> = {
  name: 'RBAC_Role',
  columns: { name: col.string, permissions: col.refMap('RBAC_Permission') },
};

export const RbacPermissionTable: TableDef<RbacPermissionRow> = {
  name: 'RBAC_Permission',
  columns: {
    table: col.string,
    authorization: col.stringSet,
    insert_delete: col.boolean,
    update: col.stringSet,
  },
};

/** Every table, in schema order. */
export const TABLES = [
  GlobalTable,
  LoadBalancerTable,
  BackendTable,
  NodeTable,
  PlanTable,
  PlanPoolTable,
  PlanLbTable,
  PlanConfigTable,
  NodeStatusTable,
  StoreTable,
  ConnectionTable,
  RbacRoleTable,
  RbacPermissionTable,
] as const;

/** Every table of Sluice_Status, in schema order. */
export const STATUS_TABLES = [
  NodeHeartbeatTable,
  BackendStatusTable,
  SlotConnectionsTable,
  ReportRoundTable,
  RbacRoleTable,
  RbacPermissionTable,
] as const;

// ---------------------------------------------------------------------------------------------------------
// Keys sluice keeps in string maps (no new columns for them)

/** Global.options: the generation released to gateways (the planner sets it once every live host has it). */
export const GATEWAY_GENERATION_KEY = 'gateway_generation';
/** Global.options: the chain bound L (Config.chainLength); absent = DEFAULT_CHAIN_LENGTH. */
export const CHAIN_LENGTH_KEY = 'chain_length';
/** Node_Status.external_ids, set by the node's agent: "true" while the gateway withdrew itself from ECMP. */
export const AGENT_FENCED_KEY = 'fenced';
/** Node_Status.external_ids and Node_Heartbeat.external_ids, set by the node's agent: its role (a node that left the
 *  desired state keeps one). */
export const ROLE_KEY = 'role';
/** Node_Status.external_ids key the planner sets (value: when, ms) after its fence command took a gateway out of
 *  ECMP; the gateway's agent deletes it when it rejoins (acknowledges the released generation, then announces). */
export const PLANNER_FENCED_KEY = 'fenced_by_planner';
/** Node_Heartbeat.external_ids key a host's agent sets (ms, its clock) in the heartbeat that carries a connection report
 *  whose conntrack read started after the previous report was written: the planner counts reports by it. */
export const REPORT_AT_KEY = 'report_at';
/** Node_Status.external_ids key `sluice node confirm-fenced` sets (value: when, ms): the operator took the gateway
 *  out of ECMP by hand (for when the fence command cannot). Read and cleared like PLANNER_FENCED_KEY. */
export const OPERATOR_FENCED_KEY = 'fenced_by_operator';
/** Node_Status.external_ids, set by a gateway's agent in each rejoin transaction: a token new at every rejoin (also
 *  across agent restarts), so a planner sees every rejoin, even one that changes no other mark. */
export const REJOIN_KEY = 'rejoin';
/** Node_Status.external_ids, set by a gateway's agent after the announce command of a rejoin ended (succeeded or
 *  failed): that rejoin's token. Until it equals REJOIN_KEY an announce may still be running, and the planner does
 *  not fence the gateway (a fence could land before the announce and be undone by it). */
export const ANNOUNCED_KEY = 'announced';
/** Node_Status.external_ids, written by the planner with PLANNER_FENCED_KEY: the REJOIN_KEY token of the view it
 *  decided the fence on (absent: no token). A record whose token is not the row's current one raced a rejoin and
 *  does not count (docs/design/control-plane.md, "A fence that races a rejoin"). */
export const FENCE_REJOIN_KEY = 'fenced_rejoin';
/** Node_Heartbeat.external_ids, set by a host's agent: second-chance packets it received per load balancer since the
 *  agent started, JSON {lb: packets} (the status page sums them over hosts). */
/** Node_Heartbeat external_ids: a gateway's BGP and BFD state as its agent last read it from its BIRD, one line. */
export const ROUTING_KEY = 'routing';
export const SECOND_CHANCE_KEY = 'second_chance_packets';
/** Node_Heartbeat external_ids: a gateway's continuous hash audit as its agent last ran it (src/agent/datapath.ts):
 *  `ok (<mode> on <datapath>)`, `CANNOT AGREE: <why>` (the gateway stays withdrawn), or why it is unchecked. */
export const HASH_AGREEMENT_KEY = 'hash_agreement';
/** How a HASH_AGREEMENT_KEY verdict that keeps the gateway out starts. */
export const CANNOT_AGREE = 'CANNOT AGREE:';
/** Node_Heartbeat external_ids: a host's live slot audit as its agent last ran it (src/agent/live-audit.ts), one line:
 *  `ok: <n> connections agree`, `DISAGREE: <lb> <n> of <m> (e.g. <5-tuple> ...)`, `unknown: <why>` or `off`. */
export const SLOT_AUDIT_KEY = 'slot_audit';
/** How a SLOT_AUDIT_KEY summary that found connections in other slots than the model's starts. */
export const SLOT_DISAGREE = 'DISAGREE:';
/** Plan.external_ids: how the plan stores its load balancers; PLAN_LB_ROWS (schema 2.0.0: Plan_LB rows, Plan.config
 *  the base document), absent in plans written before (Plan.pools, Plan.config the whole document). */
export const PLAN_LAYOUT_KEY = 'layout';
export const PLAN_LB_ROWS = 'lb-rows';
/** Plan.external_ids (schema 2.1.0): ids of load balancers that left and when (`id:ms` separated by spaces), held
 *  by the planner before reuse (rollout/lb-ids.ts). */
export const RETIRED_LB_IDS_KEY = 'retired_lb_ids';
/** Plan.external_ids of plans written before schema 1.2.0: the config document (now a Plan_Config row). */
export const LEGACY_PLAN_CONFIG_KEY = 'config';
/** Global.external_ids, set by `sluice ovn sync`: the OVN rows it could not serve, JSON [{lb, vip?, backend?,
 *  reason}] (docs/ovn.md); absent or "[]" when it serves everything selected. `sluice status` prints them. */
export const OVN_SKIPPED_KEY = 'ovn_sync_skipped';
