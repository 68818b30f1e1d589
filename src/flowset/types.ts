// A node's complete OpenFlow state, as data. Pure.

/** One flow. `match` and `actions` are in the exact text `ovs-ofctl -O OpenFlow15 dump-flows` prints. */
export interface Flow {
  readonly table: number;
  readonly priority: number;
  /** Comma-separated match without table/priority/cookie, '' for match-all. */
  readonly match: string;
  readonly actions: string;
  readonly cookie: bigint;
}

/** One group. `spec` is what `dump-groups` prints after `group_id=N,` (type, selection method, buckets). */
export interface Group {
  readonly groupId: number;
  readonly spec: string;
}

/** A Geneve option <-> tun_metadataN mapping (one line of `dump-tlv-map`). */
export interface TlvMapping {
  readonly optClass: number;
  readonly type: number;
  readonly len: number;
  readonly index: number;
}

/** One OpenFlow meter. `spec` is what `dump-meters` prints after `meter=N `, its lines joined by one space, e.g.
 *  `pktps burst bands=type=drop rate=100 burst_size=100`. */
export interface Meter {
  readonly meterId: number;
  readonly spec: string;
}

export interface BridgeState {
  readonly flows: readonly Flow[];
  readonly groups: readonly Group[];
  readonly tlvMap: readonly TlvMapping[];
  /** Absent = none. Meters are not part of an OpenFlow bundle: the applier adds them before it and deletes them
   *  after it (src/openflow/applier.ts). */
  readonly meters?: readonly Meter[];
}

/** Desired (or installed) state of every bridge of one node, by bridge name. */
export interface FlowSet {
  readonly node: string;
  readonly bridges: ReadonlyMap<string, BridgeState>;
}

/** Identity of a flow in a table: OpenFlow's strict match (table, priority, match). */
export function flowKey(f: Pick<Flow, 'table' | 'priority' | 'match'>): string {
  return `table=${f.table},priority=${f.priority}${f.match ? `,${f.match}` : ''}`;
}
