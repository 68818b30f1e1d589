// What nodes report: fence marks in Sluice (Node_Status, with the fence records the planner and the operator add
// there), heartbeats, acknowledgements and connection reports in Sluice_Status (Node_Heartbeat, Backend_Status,
// Slot_Connections; docs/design/ovsdb.md, "Two databases"). Pure: callers run the ops with client.transact on the
// database each function names.

import type { Operation } from '../../ovsdb/protocol.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import {
  byUuid,
  insert,
  mapDelete,
  mapIncludes,
  mapInsert,
  mutate,
  update,
  waitExists,
  where,
} from './ops.ts';
import { find, rows, single } from './read.ts';
import {
  AGENT_FENCED_KEY,
  ANNOUNCED_KEY,
  FENCE_REJOIN_KEY,
  GATEWAY_GENERATION_KEY,
  GlobalTable,
  HASH_AGREEMENT_KEY,
  type NodeHeartbeatRow,
  NodeHeartbeatTable,
  type NodeStatusRow,
  NodeStatusTable,
  OPERATOR_FENCED_KEY,
  PLANNER_FENCED_KEY,
  REJOIN_KEY,
  REPORT_AT_KEY,
  ReportRoundTable,
  ROLE_KEY,
  ROUTING_KEY,
  SECOND_CHANCE_KEY,
  SLOT_AUDIT_KEY,
} from './tables.ts';

/** What an agent applied (report what was applied, not what was asked): its acknowledgement. */
export interface NodeStatusRecord {
  readonly node: string;
  readonly appliedGeneration: number;
  /** The desired_cfg the applied generation was planned from (0: nothing applied). */
  readonly appliedCfg: number;
  /** ms */
  readonly appliedAt: number;
  readonly error: string | undefined;
}

/** The node's Node_Status row, if the replica has it. */
export function nodeStatus(r: Replica, node: string): NodeStatusRow | undefined {
  return find(r, NodeStatusTable, (row) => row.node === node);
}

/** The node's Node_Heartbeat row (Sluice_Status), if the replica has it. */
export function nodeHeartbeat(r: Replica, node: string): NodeHeartbeatRow | undefined {
  return find(r, NodeHeartbeatTable, (row) => row.node === node);
}

/** The node's acknowledgement: from its Node_Heartbeat row (Sluice_Status 1.1.0), or, where that row has none (an agent
 *  before 1.1.0, during an upgrade), from its Node_Status row. Undefined: the node never acknowledged anything. */
export function nodeAck(
  row: NodeStatusRow | undefined,
  beat: NodeHeartbeatRow | undefined,
): NodeStatusRecord | undefined {
  if (beat?.applied_generation !== undefined)
    return {
      node: beat.node,
      appliedGeneration: beat.applied_generation,
      appliedCfg: beat.applied_cfg,
      appliedAt: beat.applied_at,
      error: beat.error,
    };
  if (row === undefined) return undefined;
  return {
    node: row.node,
    appliedGeneration: row.applied_generation,
    appliedCfg: row.applied_cfg,
    appliedAt: row.applied_at,
    error: row.error,
  };
}

/** Every node's acknowledgement (nodeAck), by node. */
export function nodeAcks(r: Replica): Map<string, NodeStatusRecord> {
  const marks = new Map(rows(r, NodeStatusTable).map((row) => [row.node, row]));
  const beats = new Map(rows(r, NodeHeartbeatTable).map((beat) => [beat.node, beat]));
  const out = new Map<string, NodeStatusRecord>();
  for (const node of new Set([...marks.keys(), ...beats.keys()])) {
    const ack = nodeAck(marks.get(node), beats.get(node));
    if (ack !== undefined) out.set(node, ack);
  }
  return out;
}

/** The node's acknowledgement in its Node_Status row (Sluice), inserted or updated: where agents acknowledge while the
 *  store's roles deny them Node_Heartbeat's (rbac.ts heartbeatAckDenied). `current` must replicate this node's row. */
export function nodeStatusAckOps(current: Replica, s: NodeStatusRecord): Operation[] {
  const row = {
    node: s.node,
    applied_generation: s.appliedGeneration,
    applied_cfg: s.appliedCfg,
    applied_at: Math.round(s.appliedAt),
    error: s.error,
  };
  const existing = nodeStatus(current, s.node);
  if (existing === undefined) return [insert(NodeStatusTable, row)];
  // An update leaves `node` alone: the store's RBAC lets an agent update its own row but never rename it.
  const { node: _node, ...columns } = row;
  return [update(NodeStatusTable, byUuid(existing._uuid), columns)];
}

/** The node's Node_Status row in Sluice, inserted if missing (it holds the fence marks); nothing if it exists. */
export function nodeRowOps(current: Replica, node: string): Operation[] {
  if (nodeStatus(current, node) !== undefined) return [];
  return [insertNodeRow(node, new Map())];
}

/** A new Node_Status row that acknowledges nothing (generation 0) and holds only `externalIds`. */
function insertNodeRow(node: string, externalIds: ReadonlyMap<string, string>): Operation {
  return insert(NodeStatusTable, {
    node,
    applied_generation: 0,
    applied_cfg: 0,
    applied_at: 0,
    external_ids: externalIds,
  });
}

/** Who took a node out of the upstream ECMP set, as its Node_Status row records it. */
export interface FenceMarks {
  /** Its own agent withdrew it (AGENT_FENCED_KEY = "true"). */
  readonly byAgent: boolean;
  /** When the planner's fence command took it out (ms), or undefined; only a record decided on the gateway's
   *  current rejoin (FENCE_REJOIN_KEY equals REJOIN_KEY): a record that raced a later rejoin is `plannerRaced`. */
  readonly byPlanner: string | undefined;
  /** A planner's fence record decided on a view older than the gateway's latest rejoin (ms), or undefined. It does not
   *  say the gateway is out: its fence command may have run before the rejoin's announce (then the announce put it
   *  back) or after it (then it is out, and its agent must announce again). */
  readonly plannerRaced: string | undefined;
  /** The token of the gateway's latest rejoin (REJOIN_KEY), and of the latest rejoin whose announce command ended
   *  (ANNOUNCED_KEY); undefined from agents before them, or before the first rejoin. */
  readonly rejoin: string | undefined;
  readonly announced: string | undefined;
  /** When the operator confirmed it out by hand (ms), or undefined. */
  readonly byOperator: string | undefined;
  /** The role its agent reported (ROLE_KEY). */
  readonly role: string | undefined;
  /** A gateway's BGP and BFD state as its agent reported it (ROUTING_KEY). */
  readonly routing: string | undefined;
  /** A gateway's continuous audit verdict as its agent reported it (HASH_AGREEMENT_KEY). */
  readonly hashAgreement: string | undefined;
  /** A host's live slot audit as its agent reported it (SLOT_AUDIT_KEY). */
  readonly slotAudit: string | undefined;
}

/** The marks of a node's Node_Status row (Sluice) and, for what its agent refreshes with each heartbeat (routing,
 *  hash agreement, slot audit), of its Node_Heartbeat row (Sluice_Status). */
export function fenceMarks(row: NodeStatusRow | undefined, beat?: NodeHeartbeatRow): FenceMarks {
  const ids = row?.external_ids;
  const beatIds = beat?.external_ids;
  const record = ids?.get(PLANNER_FENCED_KEY);
  const current = ids?.get(FENCE_REJOIN_KEY) === ids?.get(REJOIN_KEY);
  return {
    byAgent: ids?.get(AGENT_FENCED_KEY) === 'true',
    byPlanner: current ? record : undefined,
    plannerRaced: current ? undefined : record,
    rejoin: ids?.get(REJOIN_KEY),
    announced: ids?.get(ANNOUNCED_KEY),
    byOperator: ids?.get(OPERATOR_FENCED_KEY),
    role: ids?.get(ROLE_KEY) ?? beatIds?.get(ROLE_KEY),
    routing: beatIds?.get(ROUTING_KEY),
    hashAgreement: beatIds?.get(HASH_AGREEMENT_KEY),
    slotAudit: beatIds?.get(SLOT_AUDIT_KEY),
  };
}

/** Records a fence from outside the gateway (`key`: PLANNER_FENCED_KEY or OPERATOR_FENCED_KEY) on its Node_Status
 *  row; a gateway that never reported gets a row that says only this. The planner's record carries `rejoin`, the
 *  REJOIN_KEY token of the view it decided the fence on (absent: none), so a rejoin committed after that view makes
 *  the record one that raced it (fenceMarks). */
export function fenceRecordOp(
  r: Replica,
  node: string,
  key: typeof PLANNER_FENCED_KEY | typeof OPERATOR_FENCED_KEY,
  at: number,
  rejoin?: string,
): Operation {
  const put = { [key]: String(at), ...(rejoin === undefined ? {} : { [FENCE_REJOIN_KEY]: rejoin }) };
  if (nodeStatus(r, node) === undefined) return insertNodeRow(node, new Map(Object.entries(put)));
  // The planner's record replaces an older one's token too (a token-less record must not keep it).
  const replaced = key === PLANNER_FENCED_KEY ? [key, FENCE_REJOIN_KEY] : [key];
  return mutate(
    NodeStatusTable,
    [where(NodeStatusTable, 'node', '==', node)],
    [mapDelete(NodeStatusTable, 'external_ids', replaced), mapInsert(NodeStatusTable, 'external_ids', put)],
  );
}

/** What an agent writes on its Node_Status row (agentMarksOp). */
export interface AgentMarks {
  readonly fenced: boolean;
  readonly role: string;
  /** A rejoin: the planner's and the operator's fence records go (the acknowledgement and the announcement that
   *  follows supersede them). */
  readonly clearFenceRecords: boolean;
  /** A rejoin's new token (REJOIN_KEY), with clearFenceRecords. */
  readonly rejoin?: string;
  /** The token of the latest rejoin whose announce command ended (ANNOUNCED_KEY); undefined = left as it is. */
  readonly announced?: string;
}

/**
 * The agent's fence marks on its Node_Status row (Sluice; nodeRowOps first if it has none): withdrawn or not
 * (AGENT_FENCED_KEY), its role, and (gateways) its rejoin and announce tokens. Written when they change, not with
 * every heartbeat.
 */
export function agentMarksOp(node: string, marks: AgentMarks): Operation {
  const cleared = [AGENT_FENCED_KEY, ROLE_KEY];
  if (marks.clearFenceRecords) cleared.push(PLANNER_FENCED_KEY, FENCE_REJOIN_KEY, OPERATOR_FENCED_KEY);
  return mutate(
    NodeStatusTable,
    [where(NodeStatusTable, 'node', '==', node)],
    [
      mapDelete(NodeStatusTable, 'external_ids', [
        ...cleared,
        ...(marks.rejoin === undefined ? [] : [REJOIN_KEY]),
        ...(marks.announced === undefined ? [] : [ANNOUNCED_KEY]),
      ]),
      mapInsert(NodeStatusTable, 'external_ids', {
        [AGENT_FENCED_KEY]: String(marks.fenced),
        [ROLE_KEY]: marks.role,
        ...(marks.rejoin === undefined ? {} : { [REJOIN_KEY]: marks.rejoin }),
        ...(marks.announced === undefined ? {} : { [ANNOUNCED_KEY]: marks.announced }),
      }),
    ],
  );
}

/** Whether the node's Node_Status row already says what agentMarksOp would write (no fence record to clear, no
 *  new rejoin). */
export function agentMarksCurrent(row: NodeStatusRow | undefined, marks: AgentMarks): boolean {
  const ids = row?.external_ids;
  if (ids === undefined || marks.rejoin !== undefined) return false;
  if (marks.clearFenceRecords && (ids.has(PLANNER_FENCED_KEY) || ids.has(OPERATOR_FENCED_KEY))) return false;
  if (marks.announced !== undefined && ids.get(ANNOUNCED_KEY) !== marks.announced) return false;
  return ids.get(AGENT_FENCED_KEY) === String(marks.fenced) && ids.get(ROLE_KEY) === marks.role;
}

/** What a heartbeat carries besides its time (Node_Heartbeat.external_ids); a key left undefined keeps its value. */
export interface HeartbeatMarks {
  readonly role: string;
  /** Hosts: second-chance packets received per load balancer (SECOND_CHANCE_KEY, JSON). */
  readonly secondChance?: string;
  /** Hosts: when the connection report this heartbeat carries was read (REPORT_AT_KEY). */
  readonly reportAt?: string;
  /** Gateways with BIRD: BGP and BFD state (ROUTING_KEY). */
  readonly routing?: string;
  /** Gateways: the continuous audit's verdict (HASH_AGREEMENT_KEY): `ok (...)` or why its hash cannot agree. */
  readonly hashAgreement?: string;
  /** Hosts: the live slot audit's summary (SLOT_AUDIT_KEY). */
  readonly slotAudit?: string;
}

/** The node's heartbeat on Sluice_Status: inserts its Node_Heartbeat row or updates its time, marks and, with `ack`,
 *  its acknowledgement (`current` must replicate Node_Heartbeat, at least this node's row). */
export function heartbeatOps(
  current: Replica,
  node: string,
  at: number,
  marks: HeartbeatMarks,
  ack?: NodeStatusRecord,
): Operation[] {
  const given: Record<string, string> = {
    [ROLE_KEY]: marks.role,
    ...(marks.secondChance === undefined ? {} : { [SECOND_CHANCE_KEY]: marks.secondChance }),
    ...(marks.reportAt === undefined ? {} : { [REPORT_AT_KEY]: marks.reportAt }),
    ...(marks.routing === undefined ? {} : { [ROUTING_KEY]: marks.routing }),
    ...(marks.hashAgreement === undefined ? {} : { [HASH_AGREEMENT_KEY]: marks.hashAgreement }),
    ...(marks.slotAudit === undefined ? {} : { [SLOT_AUDIT_KEY]: marks.slotAudit }),
  };
  const acked =
    ack === undefined
      ? {}
      : {
          applied_generation: ack.appliedGeneration,
          applied_cfg: ack.appliedCfg,
          applied_at: Math.round(ack.appliedAt),
          error: ack.error,
        };
  const existing = nodeHeartbeat(current, node);
  if (existing === undefined)
    return [
      insert(NodeHeartbeatTable, {
        node,
        heartbeat_at: Math.round(at),
        ...acked,
        external_ids: new Map(Object.entries(given)),
      }),
    ];
  const me = byUuid(existing._uuid);
  return [
    update(NodeHeartbeatTable, me, { heartbeat_at: Math.round(at), ...acked }),
    mutate(NodeHeartbeatTable, me, [
      mapDelete(NodeHeartbeatTable, 'external_ids', Object.keys(given)),
      mapInsert(NodeHeartbeatTable, 'external_ids', given),
    ]),
  ];
}

/** Fails the transaction (isConflict) unless `generation` is still the one released to gateways. */
export function stillReleasedOp(generation: number): Operation {
  return waitExists(GlobalTable, [
    mapIncludes(GlobalTable, 'options', { [GATEWAY_GENERATION_KEY]: String(generation) }),
  ]);
}

// ---------------------------------------------------------------------------------------------------------
// Slot_Connections.counts: JSON {slot: {backendKey: n}}, slots ascending, zero counts left out

export function encodeSlotCounts(counts: ReadonlyMap<number, ReadonlyMap<string, number>>): string {
  const o: Record<string, Record<string, number>> = {};
  for (const [slot, perKey] of [...counts].sort((a, b) => a[0] - b[0])) {
    const k: Record<string, number> = {};
    for (const [key, n] of [...perKey].sort()) if (n > 0) k[key] = n;
    if (Object.keys(k).length > 0) o[String(slot)] = k;
  }
  return JSON.stringify(o);
}

/** Reads encodeSlotCounts output; what is not in that shape is left out (a report is advisory). */
export function decodeSlotCounts(s: string): Map<number, Map<string, number>> {
  const out = new Map<number, Map<string, number>>();
  let raw: unknown;
  try {
    raw = JSON.parse(s);
  } catch {
    return out;
  }
  if (raw === null || typeof raw !== 'object') return out;
  for (const [slot, perKey] of Object.entries(raw)) {
    if (perKey === null || typeof perKey !== 'object') continue;
    const m = new Map<string, number>();
    for (const [key, n] of Object.entries(perKey)) if (typeof n === 'number') m.set(key, n);
    out.set(Number(slot), m);
  }
  return out;
}

/** The planner's mark on Sluice_Status that the ack round of `generation` completed (Report_Round, one row). */
export function reportRoundOps(current: Replica, generation: number, at: number): Operation[] {
  const row = { generation, marked_at: Math.round(at) };
  const existing = single(current, ReportRoundTable);
  return existing === undefined
    ? [insert(ReportRoundTable, row)]
    : [update(ReportRoundTable, byUuid(existing._uuid), row)];
}
