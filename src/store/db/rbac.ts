// Who may write what in the store (docs/security.md): the RBAC roles ovsdb-server enforces on clients that come in
// through a TLS remote with a role, and the transaction that installs them with those remotes. Pure data and ops.
//
// A client's identity is the CN of its certificate (mutual TLS). An agent's certificate is named after its node:
// it may insert, update and delete only the Node_Status rows (Sluice) and the Node_Heartbeat (its heartbeat and
// acknowledgement), Backend_Status and Slot_Connections rows (Sluice_Status) whose `node` is that name. A planner writes plans (Plan, Plan_LB, Plan_Pool, Plan_Config, Global's generation/plan/options) and its fence
// record (Node_Status.external_ids). An operator writes the desired state (Global's settings, Load_Balancer,
// Backend, Node) and `node confirm-fenced` (Node_Status.external_ids). Every other table is read-only to all three;
// the local unix socket (no role) stays the administrator's.
//
// ovsdb-server looks permissions up in the database a transaction writes (ovsdb/rbac.c), and lets every write through
// in a database that has no RBAC_Role table: so Sluice_Status carries its own roles (STATUS_ROLES), installed by the
// same command (statusAccessOps). The session's role comes from the remote it came in through (Sluice's
// Store.connections), whichever database it then writes.

import type { Operation } from '../../ovsdb/protocol.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import { find, get } from './read.ts';
import { NodeHeartbeatTable, RbacPermissionTable, RbacRoleTable } from './tables.ts';

export type StoreRole = 'sluice-agent' | 'sluice-planner' | 'sluice-operator';

interface Permission {
  /** Columns whose value must equal the client's CN; [''] = every row. */
  readonly authorization: readonly string[];
  readonly insertDelete: boolean;
  readonly update: readonly string[];
}

const EVERY_ROW = [''] as const;

/** An agent's own connection reports (authorized by `node` = its certificate's CN). */
const OWN_BACKEND_STATUS: Permission = {
  authorization: ['node'],
  insertDelete: true,
  update: ['lb', 'backend', 'health', 'connections', 'checked_at', 'last_ok'],
};
const OWN_SLOT_CONNECTIONS: Permission = {
  authorization: ['node'],
  insertDelete: true,
  update: ['lb', 'generation', 'bits', 'counts', 'reported_at'],
};

type RoleTables = { readonly [R in StoreRole]: { readonly [table: string]: Permission } };

/** Sluice: role -> table -> what it may do there (a table not listed is read-only for the role). */
export const ROLES: RoleTables = {
  'sluice-agent': {
    Node_Status: {
      authorization: ['node'],
      insertDelete: true,
      update: ['applied_generation', 'applied_cfg', 'applied_at', 'error', 'external_ids'],
    },
  },
  'sluice-planner': {
    Global: { authorization: EVERY_ROW, insertDelete: false, update: ['generation', 'plan', 'options'] },
    Plan: {
      authorization: EVERY_ROW,
      insertDelete: true,
      update: ['generation', 'desired_cfg', 'created_at', 'pools', 'config', 'external_ids'],
    },
    Plan_Pool: {
      authorization: EVERY_ROW,
      insertDelete: true,
      update: ['lb', 'bits', 'members', 'primary', 'second', 'phase', 'since'],
    },
    Plan_LB: { authorization: EVERY_ROW, insertDelete: true, update: ['until_generation'] },
    Plan_Config: { authorization: EVERY_ROW, insertDelete: true, update: ['document'] },
    Node_Status: { authorization: EVERY_ROW, insertDelete: false, update: ['external_ids'] },
  },
  'sluice-operator': {
    Global: {
      authorization: EVERY_ROW,
      insertDelete: true,
      update: ['hash_mode', 'slot_bits', 'drain_window', 'desired_cfg', 'external_ids'],
    },
    Load_Balancer: {
      authorization: EVERY_ROW,
      insertDelete: true,
      update: ['name', 'vip', 'protocol', 'ports', 'health_check', 'backends', 'external_ids'],
    },
    Backend: {
      authorization: EVERY_ROW,
      insertDelete: true,
      update: ['address', 'port', 'host', 'weight', 'admin_state', 'external_ids'],
    },
    Node: {
      authorization: EVERY_ROW,
      insertDelete: true,
      update: ['name', 'role', 'tunnel_ip', 'external_ids'],
    },
    Node_Status: { authorization: EVERY_ROW, insertDelete: false, update: ['external_ids'] },
  },
};

/** The Node_Heartbeat columns an agent writes its acknowledgement in (Sluice_Status 1.1.0). */
export const HEARTBEAT_ACK_COLUMNS = ['applied_generation', 'applied_cfg', 'applied_at', 'error'] as const;

/** Sluice_Status: what each role may write there. An agent its own node's heartbeat and reports; the planner the
 *  report round it marks; the operator nothing (a role with no permission rows is refused every write). */
export const STATUS_ROLES: RoleTables = {
  'sluice-agent': {
    Node_Heartbeat: {
      authorization: ['node'],
      insertDelete: true,
      update: ['heartbeat_at', ...HEARTBEAT_ACK_COLUMNS, 'external_ids'],
    },
    Backend_Status: OWN_BACKEND_STATUS,
    Slot_Connections: OWN_SLOT_CONNECTIONS,
  },
  'sluice-planner': {
    Report_Round: { authorization: EVERY_ROW, insertDelete: true, update: ['generation', 'marked_at'] },
  },
  'sluice-operator': {},
};

/**
 * How long, in ms, ovsdb-server lets a client of a remote `sluice store access` writes send nothing before it probes
 * it with an `echo` (and then as long again for the answer before it drops the session). Its own default for a TCP
 * or TLS remote is 5 s: a daemon that spends longer than that in one task (a planner parsing an 86 MB snapshot and
 * stepping 10,000 VIPs) loses its session, its lock and, on a standalone store, its monitor, and repeats the work
 * on every reconnect. The price of a longer probe: a planner whose machine vanishes (no FIN, no RST) keeps the lock
 * until the probe drops its session, up to twice this (a killed process closes its socket at once).
 */
export const DEFAULT_INACTIVITY_PROBE_MS = 30_000;

/** One TLS remote of the store and the role of every client that connects through it. */
export interface StoreRemote {
  /** ovsdb-server remote, e.g. `pssl:6650:127.0.0.1`. */
  readonly target: string;
  readonly role: StoreRole;
}

/**
 * The transaction (for the administrator's unix socket) that replaces the store's roles and TLS remotes with ROLES
 * and `remotes`, each with ovsdb-server's inactivity probe `inactivityProbeMs` (0: never probe). ovsdb-server
 * started with `--remote=db:Sluice,Store,connections` opens them at once, and applies a new probe to the sessions
 * it has (a remote whose target and role stay is not reopened).
 */
export function accessControlOps(
  remotes: readonly StoreRemote[],
  inactivityProbeMs = DEFAULT_INACTIVITY_PROBE_MS,
): Operation[] {
  const ops: Operation[] = [{ op: 'delete', table: 'Store', where: [] }, ...roleOps(ROLES)];
  const conns = remotes.map((r, i) => {
    ops.push({
      op: 'insert',
      table: 'Connection',
      'uuid-name': `conn${i}`,
      row: { target: r.target, role: r.role, inactivity_probe: inactivityProbeMs },
    });
    return ['named-uuid', `conn${i}`] as const;
  });
  ops.push({ op: 'insert', table: 'Store', row: { connections: ['set', conns] } });
  return ops;
}

/** The transaction (on STATUS_DB_NAME, through the administrator's socket) that replaces its roles with STATUS_ROLES. */
export function statusAccessOps(): Operation[] {
  return roleOps(STATUS_ROLES);
}

/** Replaces a database's RBAC_Role and RBAC_Permission rows with `roles`. */
function roleOps(roles: RoleTables): Operation[] {
  const ops: Operation[] = [
    { op: 'delete', table: 'RBAC_Role', where: [] },
    { op: 'delete', table: 'RBAC_Permission', where: [] },
  ];
  let n = 0;
  for (const [role, tables] of Object.entries(roles)) {
    const perms: [string, ['named-uuid', string]][] = [];
    for (const [table, p] of Object.entries(tables)) {
      const id = `perm${n++}`;
      perms.push([table, ['named-uuid', id]]);
      ops.push({
        op: 'insert',
        table: 'RBAC_Permission',
        'uuid-name': id,
        row: {
          table,
          authorization: ['set', [...p.authorization]],
          insert_delete: p.insertDelete,
          update: ['set', [...p.update]],
        },
      });
    }
    ops.push({ op: 'insert', table: 'RBAC_Role', row: { name: role, permissions: ['map', perms] } });
  }
  return ops;
}

/** The RBAC tables of Sluice_Status, for heartbeatAckDenied: a monitor of their own (Sluice has tables of the same
 *  names, and one replica cannot hold both). Every client may read them: RBAC limits writes only. */
export const ROLES_MONITOR = { RBAC_Role: {}, RBAC_Permission: {} } as const;

/**
 * The acknowledgement columns the store's Sluice_Status roles (`r`: a replica of ROLES_MONITOR) do not let an agent
 * update. All of them after an upgrade that converted the store to Sluice_Status 1.1.0 but did not run `sluice store
 * access` again: the convert adds the columns, not the permissions, and ovsdb-server would refuse every heartbeat
 * that writes them (an insert is not checked per column, so a new node's first one would pass). Empty when they are
 * granted, or when no agent role is installed (no TLS remotes with roles: nothing is refused).
 */
export function heartbeatAckDenied(r: Replica): string[] {
  const role = find(r, RbacRoleTable, (row) => row.name === 'sluice-agent');
  if (role === undefined) return [];
  const id = role.permissions.get(NodeHeartbeatTable.name);
  const granted = id === undefined ? [] : (get(r, RbacPermissionTable, id)?.update ?? []);
  return HEARTBEAT_ACK_COLUMNS.filter((c) => !granted.includes(c));
}

/** What an agent logs and `sluice status` prints while heartbeatAckDenied is not empty: the step that was missed. */
export function ackDeniedHint(denied: readonly string[]): string {
  return (
    `the store's roles do not let agents write ${denied.map((c) => `Node_Heartbeat.${c}`).join(', ')} ` +
    '(written by a `sluice store access` before Sluice_Status 1.1.0): run `sluice store access` again through the ' +
    'store\'s unix socket (docs/deploy.md, "Upgrades"); agents acknowledge in Node_Status meanwhile'
  );
}
