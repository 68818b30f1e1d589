// Which datapath this gateway's Open vSwitch hashes packets in, read from its own OVSDB, for the continuous audit
// (src/audit.ts `datapathDisagreement`): in `dp_hash` mode only the userspace datapath without a NIC RSS hash gives
// every gateway the same hash.
//
//   Bridge <int bridge> datapath_type   "netdev" -> userspace; "" or "system" -> the Linux kernel datapath
//   Interface type dpdk / afxdp / afxdp-nonpmd (any bridge) -> the NIC supplies the RSS hash (netdev-rss)
//   Open_vSwitch . external_ids:sluice-datapath=netdev|netdev-rss|system -> the operator says so (wins): what OVSDB
//     cannot show, e.g. a NIC that hashes, or a datapath under test
//
// `datapathFromOvs` is pure; `readDatapath` runs one `ovs-vsctl --format=json` transaction (the runner's deadline).

import { datapathDisagreement } from '../audit.ts';
import { DATAPATHS, type Datapath } from '../explain.ts';
import { SluiceError } from '../model/errors.ts';
import type { HashMode } from '../model/types.ts';
import { CANNOT_AGREE } from '../store/db/tables.ts';
import { ovsMap, readVsctlTables, rows, type VsctlRunner, type VsctlTable, vsctlListArgs } from './facts.ts';

/** Open_vSwitch external_ids key: the operator's statement of the datapath (overrides what OVSDB shows). */
export const DATAPATH_KEY = 'sluice-datapath';

const RSS_TYPES = new Set(['dpdk', 'afxdp', 'afxdp-nonpmd']);

export const DATAPATH_VSCTL_ARGS: readonly string[] = vsctlListArgs([
  ['Open_vSwitch', 'external_ids'],
  ['Bridge', 'name,datapath_type'],
  ['Interface', 'type'],
]);

/** The datapath from the tables DATAPATH_VSCTL_ARGS lists, in that order. Pure; throws SLUICE_E_NODE_FACTS. */
export function datapathFromOvs(tables: readonly VsctlTable[], intBridge: string): Datapath {
  const bad = (m: string): never => {
    throw new SluiceError('SLUICE_E_NODE_FACTS', m);
  };
  if (tables.length !== 3) bad(`expected 3 tables (Open_vSwitch, Bridge, Interface), got ${tables.length}`);
  const [ovsT, bridgeT, ifaceT] = tables as [VsctlTable, VsctlTable, VsctlTable];
  const declared = ovsMap(rows(ovsT)[0]?.external_ids).get(DATAPATH_KEY)?.trim();
  if (declared !== undefined) {
    if (!(DATAPATHS as readonly string[]).includes(declared))
      bad(
        `Open_vSwitch external_ids:${DATAPATH_KEY}: ${JSON.stringify(declared)} is not one of ${DATAPATHS.join(', ')}`,
      );
    return declared as Datapath;
  }
  const bridge = rows(bridgeT).find((b) => b.name === intBridge);
  if (bridge === undefined) bad(`Bridge ${intBridge}: not in the node's OVSDB`);
  const type = typeof bridge!.datapath_type === 'string' ? bridge!.datapath_type : '';
  if (type !== 'netdev') return 'system';
  return rows(ifaceT).some((i) => RSS_TYPES.has(String(i.type))) ? 'netdev-rss' : 'netdev';
}

/** Reads the gateway's datapath from its OVSDB. Throws SLUICE_E_IO when ovs-vsctl fails. */
export async function readDatapath(runner: VsctlRunner, intBridge: string): Promise<Datapath> {
  return datapathFromOvs(await readVsctlTables(runner, DATAPATH_VSCTL_ARGS), intBridge);
}

/** What the continuous audit last found (`unchecked`: never read, or not for the hash mode applied now). */
export type AgreementVerdict =
  | { readonly state: 'unchecked'; readonly why: string }
  | { readonly state: 'agrees'; readonly datapath: Datapath }
  | { readonly state: 'cannot-agree'; readonly datapath: Datapath; readonly why: string };

/**
 * A gateway's continuous audit: after every applied generation and every few seconds the agent reads its datapath
 * and asks whether, in the hash mode it applied, its hash can agree with the other gateways'. A gateway that cannot
 * agree withdraws (fencing event `cannot-agree`) and rejoins only once a check for the applied mode says it agrees.
 * A failed read keeps the last verdict (the OVSDB being slow says nothing about the datapath).
 */
export class HashAgreement {
  readonly #read: () => Promise<Datapath>;
  #verdict: AgreementVerdict = { state: 'unchecked', why: 'not checked yet' };
  #mode: HashMode | undefined;
  #readError: string | undefined;

  constructor(read: () => Promise<Datapath>) {
    this.#read = read;
  }

  /** Checks the datapath against `mode`; resolves with the verdict when it changed, else undefined. */
  async check(mode: HashMode): Promise<AgreementVerdict | undefined> {
    let datapath: Datapath;
    try {
      datapath = await this.#read();
      this.#readError = undefined;
    } catch (e) {
      this.#readError = (e as Error).message.split('\n')[0];
      return undefined;
    }
    const why = datapathDisagreement(mode, datapath);
    const next: AgreementVerdict =
      why === undefined ? { state: 'agrees', datapath } : { state: 'cannot-agree', datapath, why };
    const changed = JSON.stringify(next) !== JSON.stringify(this.#verdict) || mode !== this.#mode;
    this.#verdict = next;
    this.#mode = mode;
    return changed ? next : undefined;
  }

  /** Why this gateway must stay out of ECMP, if it must. */
  get disagreement(): string | undefined {
    return this.#verdict.state === 'cannot-agree' ? this.#verdict.why : undefined;
  }

  /** A check for `mode` said the hash can agree. */
  mayAnnounce(mode: HashMode | undefined): boolean {
    return mode !== undefined && this.#mode === mode && this.#verdict.state === 'agrees';
  }

  /** One line for Node_Status and `sluice status`: `ok (netdev)`, the reason it cannot agree, or why unchecked. */
  text(): string {
    const v = this.#verdict;
    const base =
      v.state === 'agrees'
        ? `ok (${this.#mode} on ${v.datapath})`
        : v.state === 'cannot-agree'
          ? `${CANNOT_AGREE} ${v.why}`
          : v.why;
    return this.#readError === undefined ? base : `${base}; last read failed: ${this.#readError}`;
  }
}
