// A gateway agent's XDP datapath (`sluice-gateway-datapath=xdp` in the node's OVSDB, docs/design/xdp.md "In the agent"):
// which datapath the node runs and where its uplink is (node facts), the next-hop MAC of every host (the same
// tunnel neighbour table the OVS gateway encapsulates with: `ovs-appctl tnl/neigh/show`), the install of each
// generation through src/xdp/datapath.ts after the node's OVS flows, and the program's per-VIP counters as metrics.
// `datapathFactsFromIds` and `parseTnlNeigh` are pure (test/unit/xdp-datapath.test.ts).

import { Counter, Gauge, type Registry } from 'prom-client';
import type { NodeFacts } from '../compile/facts.ts';
import { SluiceError } from '../model/errors.ts';
import type { Config } from '../model/types.ts';
import type { Runner } from '../openflow/runner.ts';
import type { Generation } from '../rollout/types.ts';
import {
  deviceOps,
  XdpDatapath,
  XdpDatapathError,
  type XdpInstall,
  type XdpVipStats,
} from '../xdp/datapath.ts';
import { ReadingCounters } from './flow-counts.ts';

export type GatewayDatapath = 'ovs' | 'xdp';
export const GATEWAY_DATAPATHS: readonly GatewayDatapath[] = ['ovs', 'xdp'];

/** Open_vSwitch external_ids keys of the datapath facts. */
export const DATAPATH_KEYS = {
  datapath: 'sluice-gateway-datapath',
  /** The uplink the program attaches to (also the underlay NIC of the phy bridge). */
  uplink: 'sluice-underlay-iface',
  /** Network namespace of the uplink when it is not the agent's own (the lab: one namespace per node). */
  netns: 'sluice-xdp-netns',
} as const;

export interface DatapathFacts {
  readonly datapath: GatewayDatapath;
  readonly uplink?: string;
  readonly netns?: string;
}

/** The datapath facts from external_ids values (absent = ''); SLUICE_E_USAGE naming the key on a bad value. */
export function datapathFactsFromIds(get: (key: string) => string): DatapathFacts {
  const dp = get(DATAPATH_KEYS.datapath) || 'ovs';
  if (!(GATEWAY_DATAPATHS as readonly string[]).includes(dp))
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `Open_vSwitch external_ids:${DATAPATH_KEYS.datapath}: expected ovs or xdp, got ${JSON.stringify(dp)}`,
    );
  if (dp === 'ovs') return { datapath: 'ovs' };
  const uplink = get(DATAPATH_KEYS.uplink);
  if (uplink === '')
    throw new SluiceError(
      'SLUICE_E_USAGE',
      `Open_vSwitch external_ids:${DATAPATH_KEYS.uplink}: an xdp gateway must name its uplink`,
    );
  const netns = get(DATAPATH_KEYS.netns);
  return { datapath: 'xdp', uplink, ...(netns ? { netns } : {}) };
}

/** Reads the datapath facts from the node's OVSDB (one `ovs-vsctl get` per key). */
export async function readDatapathFacts(runner: Runner): Promise<DatapathFacts> {
  if (runner.vsctl === undefined) return { datapath: 'ovs' };
  const ids = new Map<string, string>();
  for (const key of Object.values(DATAPATH_KEYS)) {
    const r = await runner.vsctl(['--if-exists', 'get', 'Open_vSwitch', '.', `external_ids:${key}`]);
    ids.set(key, r.stdout.trim().replace(/^"(.*)"$/, '$1'));
  }
  return datapathFactsFromIds((k) => ids.get(k) ?? '');
}

/** `ovs-appctl tnl/neigh/show`: IPv4 address -> MAC (IPv6 entries and headings skipped). */
export function parseTnlNeigh(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+\.\d+\.\d+\.\d+)\s+([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\b/.exec(line);
    if (m) out.set(m[1]!, m[2]!.toLowerCase());
  }
  return out;
}

function xdpMetrics(registry: Registry, collect: () => Promise<void>) {
  const perVip = (name: string, help: string, extra: readonly string[] = []) =>
    new Counter({
      name: `sluice_agent_xdp_${name}`,
      help: `xdp gateways: ${help}`,
      labelNames: ['lb', 'vip', 'proto', 'port', ...extra],
      registers: [registry],
      collect,
    });
  return {
    attached: new Gauge({
      name: 'sluice_agent_xdp_attached',
      help: 'xdp gateways: 1 while the program is attached to the uplink with a generation installed',
      registers: [registry],
    }),
    packets: perVip('packets_total', 'packets the program encapsulated and sent, per VIP port'),
    bytes: perVip('bytes_total', 'bytes of the received frames the program encapsulated, per VIP port'),
    drops: perVip(
      'drops_total',
      'VIP packets the program dropped, per VIP port and reason (no_slot: the slot has no primary; no_headroom: no room for the outer headers; not_mine: a frame addressed to another MAC)',
      ['reason'],
    ),
    icmp: new Counter({
      name: 'sluice_agent_xdp_icmp_total',
      help: 'xdp gateways: ICMP errors to VIPs in the tc program (what=errors: reached its meter; copies: copies sent to hosts; dropped: over the meter rate; refused: copies the kernel refused)',
      labelNames: ['what'],
      registers: [registry],
      collect,
    }),
  };
}

/** The XDP half of a gateway agent's apply, and its metrics. */
export class XdpGateway {
  readonly #runner: Runner;
  readonly #dp: XdpDatapath;
  readonly #readings = new ReadingCounters();
  #m: ReturnType<typeof xdpMetrics> | undefined;
  #last: XdpInstall | undefined;
  #scrape: Promise<void> | undefined;

  constructor(runner: Runner, datapath: XdpDatapath) {
    this.#runner = runner;
    this.#dp = datapath;
  }

  registerMetrics(registry: Registry): void {
    // prom-client collects the three counters concurrently: one map dump serves them.
    this.#m = xdpMetrics(registry, () => {
      this.#scrape ??= this.#collect().finally(() => {
        this.#scrape = undefined;
      });
      return this.#scrape;
    });
  }

  /** What the status shows: the program, the copy in force and the generation in it. */
  status(): Record<string, unknown> {
    const att = this.#dp.attachment;
    return {
      datapath: 'xdp',
      program: att === undefined ? undefined : { id: att.progId, dev: att.dev, netns: att.netns },
      copy: att === undefined ? undefined : this.#last?.copy,
      generation: att === undefined ? undefined : this.#last?.generation,
    };
  }

  /**
   * Installs `gen` after the node's OVS flows: neighbours from OVS's tunnel table, tables (refused before any
   * write), attach if needed, the inactive copy, the flip. Throws XdpDatapathError when the program or a map
   * failed (the gateway must leave ECMP), SluiceError SLUICE_E_XDP when the generation does not fit (refused).
   */
  async install(config: Config, gen: Generation, facts: NodeFacts): Promise<XdpInstall> {
    const neigh = await this.#runner.appctl(['tnl/neigh/show'], { allowFail: true });
    if (neigh.code !== 0)
      throw new XdpDatapathError(`xdp: ovs-appctl tnl/neigh/show failed: ${neigh.stderr.trim()}`);
    try {
      this.#last = await this.#dp.install(config, gen, {
        tunnelIp: facts.tunnelIp,
        mac: facts.phyMac,
        neighbours: parseTnlNeigh(neigh.stdout),
        ...(facts.icmpRate === undefined ? {} : { icmpRate: facts.icmpRate }),
      });
      this.#m?.attached.set(1);
      return this.#last;
    } catch (e) {
      if (e instanceof XdpDatapathError) this.#m?.attached.set(0);
      throw e;
    }
  }

  /** The program's per-VIP counters (since it was attached). */
  counters(): Promise<XdpVipStats[]> {
    return this.#dp.counters();
  }

  /** Detaches the program (the uplink falls back to the kernel and the node's OVS). */
  async detach(): Promise<void> {
    this.#m?.attached.set(0);
    await this.#dp.detach();
  }

  async #collect(): Promise<void> {
    const m = this.#m;
    if (m === undefined) return;
    const read = await this.#dp.readCounters().catch(() => ({ vips: [], icmp: undefined }));
    for (const [what, n] of Object.entries(read.icmp ?? {})) this.#readings.advance(m.icmp, { what }, n);
    for (const c of read.vips) {
      const labels = { lb: c.lb, vip: c.vip, proto: c.proto, port: String(c.port) };
      this.#readings.advance(m.packets, labels, c.packets);
      this.#readings.advance(m.bytes, labels, c.bytes);
      this.#readings.advance(m.drops, { ...labels, reason: 'no_slot' }, c.dropNoSlot);
      this.#readings.advance(m.drops, { ...labels, reason: 'no_headroom' }, c.dropNoRoom);
      this.#readings.advance(m.drops, { ...labels, reason: 'not_mine' }, c.dropNotMine);
    }
  }
}

/**
 * The XDP part of a gateway agent when its node facts say `sluice-gateway-datapath=xdp` (undefined: an OVS gateway).
 * Without `object` (the agent's --xdp-object) every attach fails with that reason: the gateway stays withdrawn.
 */
export async function agentXdpGateway(
  runner: Runner,
  object: string | undefined,
): Promise<XdpGateway | undefined> {
  const f = await readDatapathFacts(runner);
  if (f.datapath !== 'xdp') return undefined;
  const ops = deviceOps(f.uplink!, object ?? '', f.netns);
  if (object === undefined)
    ops.attach = () =>
      Promise.reject(new Error('no --xdp-object: the agent has no program to attach (scripts/build-xdp.sh)'));
  return new XdpGateway(runner, new XdpDatapath(ops));
}
