// What nodes report in the Sluice database (Node_Status, Backend_Status, Slot_Connections) and the fence records
// the planner and the operator add to Node_Status. Pure: callers run the ops with client.transact.

import type { Operation } from '../../ovsdb/protocol.ts';
import type { Replica } from '../../ovsdb/replica.ts';
import {
  byUuid,
  insert,
  mapDelete,
  mapIncludes,
  mapInsert,
  mapPut,
  mutate,
  update,
  waitExists,
  where,
} from './ops.ts';
import { find } from './read.ts';
import {
  AGENT_FENCED_KEY,
  GATEWAY_GENERATION_KEY,
  GlobalTable,
  HASH_AGREEMENT_KEY,
  type NodeStatusRow,
  NodeStatusTable,
  OPERATOR_FENCED_KEY,
  PLANNER_FENCED_KEY,
  REPORT_AT_KEY,
  ROLE_KEY,
  ROUTING_KEY,
  SECOND_CHANCE_KEY,
  SLOT_AUDIT_KEY,
} from './tables.ts';

/** What an agent applied (report what was applied, not what was asked). */
export interface NodeStatusRecord {
  readonly node: string;
  readonly appliedGeneration: number;
  /** The desired_cfg the applied generation was planned from (0: nothing applied). */
  readonly appliedCfg: number;
  /** ms */
  readonly appliedAt: number;
  /** ms: the agent's lease heartbeat. */
  readonly heartbeatAt: number;
  readonly error: string | undefined;
}

/** The node's Node_Status row, if the replica has it. */
export function nodeStatus(r: Replica, node: string): NodeStatusRow | undefined {
  return find(r, NodeStatusTable, (row) => row.node === node);
}

/** Insert or update the node's Node_Status row (`current` must replicate Node_Status, at least this node's row). */
export function nodeStatusOps(current: Replica, s: NodeStatusRecord): Operation[] {
  const row = {
    node: s.node,
    applied_generation: s.appliedGeneration,
    applied_cfg: s.appliedCfg,
    applied_at: Math.round(s.appliedAt),
    heartbeat_at: Math.round(s.heartbeatAt),
    error: s.error,
  };
  const existing = nodeStatus(current, s.node);
  if (existing === undefined) return [insert(NodeStatusTable, row)];
  // An update leaves `node` alone: the store's RBAC lets an agent update its own row but never rename it.
  const { node: _node, ...columns } = row;
  return [update(NodeStatusTable, byUuid(existing._uuid), columns)];
}

/** Who took a node out of the upstream ECMP set, as its Node_Status row records it. */
export interface FenceMarks {
  /** Its own agent withdrew it (AGENT_FENCED_KEY = "true"). */
  readonly byAgent: boolean;
  /** When the planner's fence command took it out (ms), or undefined. */
  readonly byPlanner: string | undefined;
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

export function fenceMarks(row: NodeStatusRow | undefined): FenceMarks {
  const ids = row?.external_ids;
  return {
    byAgent: ids?.get(AGENT_FENCED_KEY) === 'true',
    byPlanner: ids?.get(PLANNER_FENCED_KEY),
    byOperator: ids?.get(OPERATOR_FENCED_KEY),
    role: ids?.get(ROLE_KEY),
    routing: ids?.get(ROUTING_KEY),
    hashAgreement: ids?.get(HASH_AGREEMENT_KEY),
    slotAudit: ids?.get(SLOT_AUDIT_KEY),
  };
}

/** Records a fence from outside the gateway (`key`: PLANNER_FENCED_KEY or OPERATOR_FENCED_KEY) on its Node_Status
 *  row; a gateway that never reported gets a row that says only this. */
export function fenceRecordOp(
  r: Replica,
  node: string,
  key: typeof PLANNER_FENCED_KEY | typeof OPERATOR_FENCED_KEY,
  at: number,
): Operation {
  return nodeStatus(r, node) !== undefined
    ? mutate(
        NodeStatusTable,
        [where(NodeStatusTable, 'node', '==', node)],
        mapPut(NodeStatusTable, 'external_ids', { [key]: String(at) }),
      )
    : insert(NodeStatusTable, {
        node,
        applied_generation: 0,
        applied_cfg: 0,
        applied_at: 0,
        heartbeat_at: 0,
        external_ids: new Map([[key, String(at)]]),
      });
}

/**
 * The agent's own marks on its Node_Status row: withdrawn or not (AGENT_FENCED_KEY), its role, and (hosts) the
 * second-chance packets it received per load balancer (SECOND_CHANCE_KEY, JSON). With `clearFenceRecords` (a
 * rejoin) the planner's and the operator's fence records go too: the acknowledgement and the announcement that
 * follows supersede them.
 */
export function agentMarksOp(
  node: string,
  marks: {
    readonly fenced: boolean;
    readonly role: string;
    readonly clearFenceRecords: boolean;
    readonly secondChance?: string;
    /** Hosts: when the connection report this heartbeat carries was read (REPORT_AT_KEY). */
    readonly reportAt?: string;
    /** Gateways with BIRD: BGP and BFD state (ROUTING_KEY). */
    readonly routing?: string;
    /** Gateways: the continuous audit's verdict (HASH_AGREEMENT_KEY): `ok (...)` or why its hash cannot agree. */
    readonly hashAgreement?: string;
    /** Hosts: the live slot audit's summary (SLOT_AUDIT_KEY). */
    readonly slotAudit?: string;
  },
): Operation {
  const cleared = [AGENT_FENCED_KEY, ROLE_KEY, SECOND_CHANCE_KEY];
  if (marks.reportAt !== undefined) cleared.push(REPORT_AT_KEY);
  if (marks.routing !== undefined) cleared.push(ROUTING_KEY);
  if (marks.hashAgreement !== undefined) cleared.push(HASH_AGREEMENT_KEY);
  if (marks.slotAudit !== undefined) cleared.push(SLOT_AUDIT_KEY);
  if (marks.clearFenceRecords) cleared.push(PLANNER_FENCED_KEY, OPERATOR_FENCED_KEY);
  return mutate(
    NodeStatusTable,
    [where(NodeStatusTable, 'node', '==', node)],
    [
      mapDelete(NodeStatusTable, 'external_ids', cleared),
      mapInsert(NodeStatusTable, 'external_ids', {
        [AGENT_FENCED_KEY]: String(marks.fenced),
        [ROLE_KEY]: marks.role,
        ...(marks.secondChance === undefined ? {} : { [SECOND_CHANCE_KEY]: marks.secondChance }),
        ...(marks.reportAt === undefined ? {} : { [REPORT_AT_KEY]: marks.reportAt }),
        ...(marks.routing === undefined ? {} : { [ROUTING_KEY]: marks.routing }),
        ...(marks.hashAgreement === undefined ? {} : { [HASH_AGREEMENT_KEY]: marks.hashAgreement }),
        ...(marks.slotAudit === undefined ? {} : { [SLOT_AUDIT_KEY]: marks.slotAudit }),
      }),
    ],
  );
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
