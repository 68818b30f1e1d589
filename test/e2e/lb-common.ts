// Shared by the lb-*.test.ts end-to-end tests (not a test file itself): lab + LabController setup, second-chance
// and slot-table packet counters read from the hosts' and gateways' flows, and a wait helper. Root, real OVS.

import { decodeCookie } from '../../src/compile/registry.ts';
import { LabController } from '../../src/lab/controller.ts';
import type { Lab } from '../../src/lab/topology.ts';
import { labUp } from '../../src/lab/topology.ts';
import type { Traffic, TrafficCounters } from '../../src/lab/traffic.ts';
import type { Config } from '../../src/model/types.ts';
import { revalidate } from '../../src/openflow/applier.ts';

export const isRoot = process.getuid?.() === 0;
export { setTimeout as sleep } from 'node:timers/promises';
export const WEB = { vip: '203.0.113.10', port: 80 } as const;
export const API = { vip: '203.0.113.20', port: 80 } as const;
/** Echo timeout of the harness: a black-holed connection fails within it. */
export const TIMEOUT_MS = 2000;

/** The default lab (2 gateways, 3 hosts x 2 backends, 2 clients, VIPs web + api) and a controller on generation 1.
 *  Drain window long enough that no second chance is ever given up during a test. */
export async function setup(
  prefix: string,
  log: (s: string) => void,
): Promise<{ lab: Lab; ctl: LabController; config: Config }> {
  const lab = await labUp({ prefix }, { replace: true });
  const ctl = new LabController(lab, {
    onEvent: (e) => log(`[${(e.t / 1000).toFixed(1)}s] ${e.kind}: ${e.message}`),
  });
  const config = lab.sluiceConfig({ drainWindowSeconds: 3600 });
  await ctl.start(config);
  return { lab, ctl, config };
}

/** n_packets summed per cookie kind over the given nodes' br-int (after a revalidator pass on each). Catch-all
 *  drops are also counted per table (`DROP@21` = CT_IN's). */
export async function packetsByKind(lab: Lab, nodes: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of nodes) {
    const n = lab.node(name);
    await revalidate(n);
    const r = await n.ofctl('br-int', ['dump-flows']);
    for (const line of r.stdout.split('\n')) {
      const c = /cookie=(0x[0-9a-f]+)/.exec(line);
      const p = /n_packets=(\d+)/.exec(line);
      if (!c || !p) continue;
      const parts = decodeCookie(BigInt(c[1]));
      if (!parts) continue;
      const keys = parts.kind === 'DROP' ? ['DROP', `DROP@${parts.a}`] : [parts.kind];
      for (const k of keys) out[k] = (out[k] ?? 0) + Number(p[1]);
    }
  }
  return out;
}

/** Packets handed on by second chance, summed over every host (SECOND_CHANCE flows' n_packets). Counters restart
 *  from 0 when a host's ovs-vswitchd restarts (not done in these tests). */
export async function secondChancePackets(lab: Lab): Promise<number> {
  return (
    (
      await packetsByKind(
        lab,
        lab.hosts.map((h) => h.name),
      )
    ).SECOND_CHANCE ?? 0
  );
}

/** Packets each gateway tunnelled (GW_SLOT flows' n_packets). Reset by an ovs-vswitchd restart. */
export async function gatewayPackets(lab: Lab): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const g of lab.gateways) out[g.name] = (await packetsByKind(lab, [g.name])).GW_SLOT ?? 0;
  return out;
}

/** Aggregated fresh counters of several traffic groups. */
export async function report(...ts: Traffic[]): Promise<TrafficCounters[]> {
  return Promise.all(ts.map((t) => t.report()));
}

export function spread(c: TrafficCounters): string {
  return Object.entries(c.perBackend)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, b]) => `${k} ${b.opened}`)
    .join(', ');
}

/** Broken connections with their reasons and backends, for assertion messages. */
export function brokenInfo(...ts: Traffic[]): string {
  return JSON.stringify(ts.flatMap((t) => t.brokenEvents()).map((e) => `${e.backend}:${e.reason}`)).slice(
    0,
    800,
  );
}
