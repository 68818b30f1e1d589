// Packet counters of sluice's flows on lab nodes, by cookie kind (src/compile/registry.ts): what the demo, the e2e
// tests and the benchmarks read to see second chances, tunnelled requests and drops happen.

import { decodeCookie } from '../compile/registry.ts';
import { revalidate } from '../openflow/applier.ts';
import type { LabNode } from './node.ts';
import type { Lab } from './topology.ts';

/**
 * n_packets summed per cookie kind over sluice's flows on `bridge` of each node, after a revalidator pass on each
 * (datapath statistics reach the OpenFlow counters only then). Catch-all drops are also counted per table
 * (`DROP@21` = CT_IN's). Counters restart from 0 when a node's ovs-vswitchd restarts. With `what = 'flows'`, the
 * number of flows per cookie kind instead.
 */
export async function packetsByKind(
  nodes: readonly LabNode[],
  bridge = 'br-int',
  what: 'packets' | 'flows' = 'packets',
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const n of nodes) {
    await revalidate(n);
    const r = await n.ofctl(bridge, ['dump-flows']);
    for (const line of r.stdout.split('\n')) {
      const c = /cookie=(0x[0-9a-f]+)/.exec(line);
      const p = /n_packets=(\d+)/.exec(line);
      if (!c || !p) continue;
      const parts = decodeCookie(BigInt(c[1]));
      if (!parts) continue;
      const keys = parts.kind === 'DROP' ? ['DROP', `DROP@${parts.a}`] : [parts.kind];
      for (const k of keys) out[k] = (out[k] ?? 0) + (what === 'flows' ? 1 : Number(p[1]));
    }
  }
  return out;
}

/** Packets the hosts handed on by second chance (SECOND_CHANCE flows' n_packets, summed over every host). */
export async function secondChancePackets(lab: Lab): Promise<number> {
  return (await packetsByKind(lab.hosts)).SECOND_CHANCE ?? 0;
}
