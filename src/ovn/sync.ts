// `sluice ovn sync`'s I/O: monitors OVN's Northbound and Southbound databases with sluice's OVSDB client, reads
// the rows the translation needs (src/ovn/translate.ts, pure), and writes the result into sluice's store through the
// operator's guarded edit (editDesiredState: validated, one transaction guarded by desired_cfg), so an OVN change
// rolls out in phases like `sluice apply`. docs/ovn.md.

import { SluiceError } from '../model/errors.ts';
import { parseConfig } from '../model/schema.ts';
import type { Config } from '../model/types.ts';
import { type Monitor, OvsdbClient } from '../ovsdb/client.ts';
import type { TlsFiles } from '../ovsdb/jsonrpc.ts';
import type { JsAtom, JsRow, JsValue } from '../ovsdb/protocol.ts';
import type { Replica } from '../ovsdb/replica.ts';
import { SerialLoop } from '../serial-loop.ts';
import { type ConfigChange, diffConfigs } from '../store/config-diff.ts';
import { DB_NAME, DESIRED_STATE_MONITOR, ovnSkippedOps } from '../store/db/index.ts';
import { editDesiredState, parseRemotes, StoreSession, storedConfig } from '../store/operator.ts';
import {
  NO_UNBOUND_PORTS,
  type Note,
  type OvnLoadBalancer,
  type OvnSnapshot,
  type Skipped,
  trackUnbound,
  translate,
  UNBOUND_HOLD_MS,
  type UnboundPorts,
} from './translate.ts';

/** OVN's tables and the columns the importer reads (ovn-nb(5), ovn-sb(5)). */
export const NB_MONITOR = {
  Load_Balancer: {
    columns: [
      'name',
      'vips',
      'protocol',
      'options',
      'selection_fields',
      'ip_port_mappings',
      'health_check',
      'external_ids',
    ],
  },
  Load_Balancer_Health_Check: { columns: ['vip', 'options'] },
  Logical_Switch_Port: { columns: ['name', 'addresses', 'dynamic_addresses'] },
};
export const SB_MONITOR = {
  Port_Binding: { columns: ['logical_port', 'mac', 'chassis', 'additional_chassis'] },
  Chassis: { columns: ['name', 'encaps'] },
  Encap: { columns: ['ip'] },
};

const str = (v: JsValue): string => (typeof v === 'string' ? v : '');
const list = (v: JsValue): string[] =>
  Array.isArray(v) ? v.map(String) : v === undefined ? [] : [String(v)];
const strMap = (v: JsValue): Map<string, string> =>
  v instanceof Map ? new Map([...v].map(([k, x]: [JsAtom, JsAtom]) => [String(k), String(x)])) : new Map();
const rowsOf = (r: Replica, table: string): JsRow[] => r.rows(table);

/** The OVN rows the translation reads, from the NB and SB replicas (UUID references resolved where needed). */
export function readSnapshot(nb: Replica, sb: Replica): OvnSnapshot {
  const checks = new Map(
    rowsOf(nb, 'Load_Balancer_Health_Check').map((r) => [
      str(r._uuid),
      { vip: str(r.vip), options: strMap(r.options) },
    ]),
  );
  const loadBalancers: OvnLoadBalancer[] = rowsOf(nb, 'Load_Balancer').map((r) => ({
    uuid: str(r._uuid),
    name: str(r.name),
    vips: strMap(r.vips),
    protocol: typeof r.protocol === 'string' ? r.protocol : undefined,
    options: strMap(r.options),
    selectionFields: list(r.selection_fields),
    ipPortMappings: strMap(r.ip_port_mappings),
    healthChecks: list(r.health_check).flatMap((u) => checks.get(u) ?? []),
    externalIds: strMap(r.external_ids),
  }));
  const switchPorts = rowsOf(nb, 'Logical_Switch_Port').map((r) => ({
    name: str(r.name),
    addresses: [...list(r.addresses), ...list(r.dynamic_addresses)],
  }));
  const portBindings = rowsOf(sb, 'Port_Binding').map((r) => ({
    logicalPort: str(r.logical_port),
    mac: list(r.mac),
    chassis: typeof r.chassis === 'string' ? r.chassis : undefined,
    additionalChassis: list(r.additional_chassis),
  }));
  const encapIp = new Map(rowsOf(sb, 'Encap').map((r) => [str(r._uuid), str(r.ip)]));
  const chassis = rowsOf(sb, 'Chassis').map((r) => ({
    uuid: str(r._uuid),
    name: str(r.name),
    encapIps: list(r.encaps).flatMap((u) => encapIp.get(u) ?? []),
  }));
  return { loadBalancers, switchPorts, portBindings, chassis };
}

export interface SyncResult {
  /** Written (false: a dry run, or nothing to change). */
  readonly changed: boolean;
  readonly changes: readonly ConfigChange[];
  readonly skipped: readonly Skipped[];
  readonly notes: readonly Note[];
  readonly desiredCfg: number;
  /** A backend is kept on its host while its port is briefly unbound, until then (ms): sync again then. */
  readonly heldUntil?: number;
}

export interface OvnSyncOptions {
  readonly nb: string;
  readonly sb: string;
  readonly db: string;
  /** Deadline of connecting and of every request (default 10 s). */
  readonly timeoutMs?: number;
  /** Credentials for an ssl: store remote (else SLUICE_SSL_* from the environment). */
  readonly tls?: TlsFiles;
}

/** A connection to OVN's NB and SB and to sluice's store, each with a monitor of what the importer reads. */
export class OvnSync {
  readonly #clients: OvsdbClient[];
  readonly #nb: Monitor;
  readonly #sb: Monitor;
  readonly #store: StoreSession;
  /** The ports this process saw bound, and since when they are unbound (translate's hold). */
  #unbound: UnboundPorts = NO_UNBOUND_PORTS;

  private constructor(clients: OvsdbClient[], nb: Monitor, sb: Monitor, store: StoreSession) {
    this.#clients = clients;
    this.#nb = nb;
    this.#sb = sb;
    this.#store = store;
  }

  static async open(o: OvnSyncOptions): Promise<OvnSync> {
    const timeoutMs = o.timeoutMs ?? 10_000;
    const client = (remotes: string, database: string) =>
      new OvsdbClient({
        remotes: parseRemotes(remotes),
        database,
        probeIntervalMs: 5000,
        connectTimeoutMs: timeoutMs,
        negotiateTimeoutMs: timeoutMs,
        requestTimeoutMs: timeoutMs,
        waitConnectedMs: timeoutMs,
        backoffInitialMs: 100,
        backoffMaxMs: 2000,
      });
    const clients = [client(o.nb, 'OVN_Northbound'), client(o.sb, 'OVN_Southbound')];
    try {
      const [nbc, sbc] = clients as [OvsdbClient, OvsdbClient];
      const connect = async (c: OvsdbClient, what: string) => {
        await c.connect().catch((e: Error) => {
          throw new SluiceError('SLUICE_E_OVSDB_CONNECT', `cannot reach OVN's ${what}: ${e.message}`);
        });
      };
      await Promise.all([connect(nbc, 'Northbound (--nb)'), connect(sbc, 'Southbound (--sb)')]);
      const nb = await nbc.monitor('OVN_Northbound', NB_MONITOR);
      const sb = await sbc.monitor('OVN_Southbound', SB_MONITOR);
      const store = await StoreSession.open(o.db, DESIRED_STATE_MONITOR, timeoutMs, o.tls);
      return new OvnSync(clients, nb, sb, store);
    } catch (e) {
      for (const c of clients) c.close();
      throw e;
    }
  }

  /**
   * Translates what the replicas hold now; writes it unless `dryRun` (then reports the diff only). `holdMs` > 0:
   * a backend whose port this process saw bound and now unbound for less than that stays on its host (the daemon:
   * a live migration's moment without a chassis is one host edit, not a removal and an add).
   */
  async syncOnce(dryRun: boolean, holdMs = 0): Promise<SyncResult> {
    const snap = readSnapshot(this.#nb.replica, this.#sb.replica);
    const now = Date.now();
    this.#unbound = trackUnbound(this.#unbound, snap, now);
    const hold = holdMs > 0 ? { ports: this.#unbound, now, holdMs } : undefined;
    if (dryRun) {
      const { desiredCfg, config } = storedConfig(this.#store.replica);
      const t = translate(snap, config, hold);
      const next = parseConfig(t.doc, '(the desired state the OVN load balancers give)');
      return { changed: false, changes: diffConfigs(config, next), ...t, desiredCfg };
    }
    let last: ReturnType<typeof translate> | undefined;
    const r = await editDesiredState(this.#store, (_doc, current: Config) => {
      last = translate(snap, current, hold);
      return last.doc;
    });
    // The status entry `sluice status` shows: what is not served and why (written only when it changes).
    const status = ovnSkippedOps(this.#store.replica, last!.skipped);
    if (status.length > 0) await this.#store.client.transact(DB_NAME, ...status);
    return {
      changed: r.changed,
      changes: r.changes,
      skipped: last!.skipped,
      notes: last!.notes,
      desiredCfg: r.desiredCfg,
      ...(last!.heldUntil === undefined ? {} : { heldUntil: last!.heldUntil }),
    };
  }

  /**
   * Keeps syncing: after every change in the NB, the SB or the store (another writer), one sync step runs (a change
   * during a step runs it once more; a failed step is tried again a second later), and once more when the hold of
   * a briefly unbound port ends (`holdMs`, UNBOUND_HOLD_MS by default). Returns a stop function.
   */
  watch(
    onResult: (r: SyncResult) => void,
    onError: (e: Error) => void,
    holdMs = UNBOUND_HOLD_MS,
  ): () => void {
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    let wake: NodeJS.Timeout | undefined;
    const kick = () => loop.schedule();
    const loop = new SerialLoop(
      async () => {
        const r = await this.syncOnce(false, holdMs);
        onResult(r);
        clearTimeout(wake);
        if (r.heldUntil !== undefined) wake = setTimeout(kick, Math.max(0, r.heldUntil - Date.now()) + 20);
      },
      (e) => {
        onError(e);
        // A failed write (the store unreachable, concurrent writers) is tried again without waiting for a change.
        clearTimeout(retry);
        retry = setTimeout(kick, 1000);
      },
      () => stopped,
    );
    const monitors = [this.#nb, this.#sb, this.#store.monitor];
    for (const m of monitors) m.on('update', kick);
    kick();
    return () => {
      stopped = true;
      clearTimeout(retry);
      clearTimeout(wake);
      for (const m of monitors) m.off('update', kick);
    };
  }

  close(): void {
    for (const c of this.#clients) c.close();
    this.#store.close();
  }
}
