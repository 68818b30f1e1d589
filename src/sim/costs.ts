// Cost model: per-gateway state, datapath flows, upcalls and sync traffic of each strategy, from the trace's
// scale and the measured arrival rate. Pure. Grounding (docs/evaluation.md "Cost model"):
// - docs/design/ovs-facts.md: dp_hash groups and the slot-register copy make datapath flows match only the hash bits read
//   (<= 2^(k+1) values per recirculation for a k-bit slot copy; <= the group's hash-map size for a select group);
//   `selection_method=hash`, `multipath` and `learn` un-wildcard the 5-tuple: one datapath flow and one upcall
//   per connection (1003 flows for 1000 connections, measured).
// - The stateful strategies keep one conntrack entry per connection; conntrack is not part of the megaflow key
//   (their flows match ct_state and the dp_hash bucket), so a new connection upcalls only when its dp_hash value
//   has no live flow, as for OVN's stateless group: measured in the lab's conntrack-gateway baseline
//   (docs/benchmarks.md "Gateway state vs concurrent connections": 34 datapath flows, 0.00 upcalls per new
//   connection at 10,000 and 50,000 held connections).

import type { StrategyId } from './engine.ts';
import type { Trace } from './trace.ts';

/** Linux nf_conntrack slab object size on this machine (/proc/slabinfo objsize, measured): 256 bytes. */
export const CT_ENTRY_BYTES = 256;
/** A datapath (megaflow) entry: key + mask + actions + stats. Assumed ~1 KiB (not measured here). */
export const DP_FLOW_BYTES = 1024;
/** A learned OpenFlow rule in ovs-vswitchd (rule + classifier match + actions). Assumed ~1 KiB (not measured). */
export const LEARN_RULE_BYTES = 1024;
/** conntrackd messages per connection: NEW, four TCP state UPDATEs, DESTROY (ctnetlink events). */
export const SYNC_MSGS_PER_CONN = 6;

export interface CostRow {
  readonly strategy: StrategyId;
  /** Per-connection entries one gateway holds (the busiest gateway). */
  readonly gatewayEntries: number;
  readonly gatewayStateBytes: number;
  /** Per-connection entries on backend hosts, all hosts together (conntrack of deferred DNAT). */
  readonly hostEntries: number;
  /** Datapath flows on one gateway, expected. */
  readonly datapathFlowsPerGateway: number;
  /** Upcalls per new connection on its gateway, expected. */
  readonly upcallsPerNewConnection: number;
  /** State sync messages per second, all gateways (each received by every other gateway). */
  readonly syncMessagesPerSecond: number;
  readonly notes: string;
}

/** Expected distinct values among c uniform draws from w values: w(1 - e^(-c/w)). */
function distinct(c: number, w: number): number {
  return w * (1 - Math.exp(-c / w));
}

/**
 * Costs at the trace's starting scale. `arrivalsPerSecond` is the simulated arrival rate of new connections;
 * `poolSize` the mean backends per VIP.
 */
export function costModel(trace: Trace, arrivalsPerSecond: number, poolSize: number): CostRow[] {
  const { connections: N, gateways: G, vips: V, slotBits: k } = trace.topology;
  const perGw = N / G;
  const perGwVip = perGw / V;
  // dp_hash with the slot-register copy: flows match k+1 hash bits (docs/design/ovs-facts.md), per VIP.
  const w = 2 ** (k + 1);
  // Strategies 4 and 7 (both slot tables): no gateway state, conntrack on the backends' hosts.
  const slotCopy = {
    gatewayEntries: 0,
    gatewayStateBytes: 0,
    hostEntries: N,
    datapathFlowsPerGateway: V * distinct(perGwVip, w),
    upcallsPerNewConnection: Math.exp(-perGwVip / w),
    syncMessagesPerSecond: 0,
  };
  // OVN's select group (dp_hash): hash map of max(16, 2^ceil(log2 n)) values, <= 256; else the hash fallback.
  const fallback = poolSize > 256;
  let nHash = 16;
  while (nHash < poolSize) nHash *= 2;
  const natFlows = fallback ? perGw : V * distinct(perGwVip, nHash);
  const natUpcall = fallback ? 1 : Math.exp(-perGwVip / nHash);
  // Strategy 1 carries every connection on the one active gateway; 6 spreads them like the stateless ones.
  const activeFlows = fallback ? N : V * distinct(N / V, nHash);
  const activeUpcall = fallback ? 1 : Math.exp(-N / V / nHash);
  const rows: CostRow[] = [
    {
      strategy: 'stateful',
      gatewayEntries: N,
      gatewayStateBytes: N * CT_ENTRY_BYTES,
      hostEntries: 0,
      datapathFlowsPerGateway: activeFlows,
      upcallsPerNewConnection: activeUpcall,
      syncMessagesPerSecond: 0,
      notes: 'every connection in conntrack on the one active gateway; the others are idle standbys',
    },
    {
      strategy: 'stateless_nat',
      gatewayEntries: 0,
      gatewayStateBytes: 0,
      hostEntries: 0,
      datapathFlowsPerGateway: natFlows,
      upcallsPerNewConnection: natUpcall,
      syncMessagesPerSecond: 0,
      notes: fallback
        ? 'more than 256 buckets: OVS falls back to the hash method (a flow and an upcall per connection)'
        : `dp_hash select group, ${nHash} hash values per VIP`,
    },
    {
      strategy: 'hash_hrw',
      gatewayEntries: perGw,
      gatewayStateBytes: perGw * DP_FLOW_BYTES,
      hostEntries: N,
      datapathFlowsPerGateway: perGw,
      upcallsPerNewConnection: 1,
      syncMessagesPerSecond: 0,
      notes:
        'selection_method=hash un-wildcards the 5-tuple: one datapath flow per connection (counted as state)',
    },
    { strategy: 'slot_table', ...slotCopy, notes: `dp_hash slot copy, ${w} hash values per VIP` },
    {
      strategy: 'sticky',
      gatewayEntries: perGw,
      gatewayStateBytes: perGw * (LEARN_RULE_BYTES + DP_FLOW_BYTES),
      hostEntries: N,
      datapathFlowsPerGateway: perGw,
      upcallsPerNewConnection: 1,
      syncMessagesPerSecond: 0,
      notes: 'learn: one learned rule + one datapath flow per connection on its gateway',
    },
    {
      strategy: 'ct_sync',
      gatewayEntries: N,
      gatewayStateBytes: N * CT_ENTRY_BYTES,
      hostEntries: 0,
      datapathFlowsPerGateway: natFlows,
      upcallsPerNewConnection: natUpcall,
      syncMessagesPerSecond: arrivalsPerSecond * SYNC_MSGS_PER_CONN,
      notes: `every gateway holds every connection; ${SYNC_MSGS_PER_CONN} sync messages per connection`,
    },
    {
      strategy: 'sluice',
      ...slotCopy,
      notes: `dp_hash slot copy, ${w} hash values per VIP; conntrack on the backend's host`,
    },
  ];
  return rows;
}
