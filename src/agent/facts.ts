// The agent's NodeFacts read from the node's own Open vSwitch database, the way ovn-controller reads
// `Open_vSwitch . external_ids:ovn-*` and `Interface external_ids:iface-id/attached-mac`. The convention (what an
// operator or the lab writes into the local OVSDB) is in docs/design/control-plane.md "Node facts from the local
// OVSDB"; in short:
//
//   Open_vSwitch . external_ids:
//     sluice-node=<name>            (default: system-id)      sluice-role=gateway|host
//     sluice-tunnel-ip=<IPv4>                                  sluice-int-bridge=<br> (br-int)  sluice-phy-bridge=<br> (br-phy)
//     sluice-router-ip=<IPv4> sluice-router-mac=<mac>          (hosts: next hop of direct return)
//     sluice-vm-router-mac=<mac>                               (hosts: MAC backends use as their default router)
//     sluice-underlay-iface=<name>  (default: the only plain interface on the phy bridge)
//     sluice-ct-zone=<1..65535>     (hosts: sluice's conntrack zone, default 1; 65535 beside ovn-controller, docs/ovn.md)
//     sluice-follow-moves=true|false (hosts: keep a moved backend's connections, compile/moved.ts; default false)
//     sluice-ovn-patch=<interface>  (hosts on an OVN chassis: the localnet patch ovn-controller makes on the int bridge;
//                                    the backends the config places here with a `mac` are delivered through it,
//                                    compile/ovn-patch.ts; absent until ovn-controller makes it)
//     sluice-probe-netns=<ip>=<netns>,...  (node-wide probe namespaces, for addresses no interface lists: the lab)
//   Interface (on the int bridge, one per backend, or one for several VMs behind a port with their own MACs):
//     external_ids:sluice-backend-ips=<ip>[,<ip6>]  external_ids:attached-mac=<mac>  [external_ids:sluice-probe-netns=<netns>]
//     external_ids:sluice-backend-ips=<ip>=<mac>,...                               [external_ids:sluice-probe-netns=<ip>=<netns>,...]
//
// Ports are found by structure: the patch pair between the two bridges (options:peer), the one `geneve` interface on
// the int bridge; OpenFlow numbers from Interface.ofport; br-phy's MAC from mac_in_use of its LOCAL interface.
//
// `parseVsctlTables` and `nodeFactsFromOvs` are pure (tested with fake input in test/unit/agent-facts.test.ts);
// `readNodeFacts` runs one `ovs-vsctl --format=json` transaction through the node's runner.

import type { NodeFacts, VmPort } from '../compile/facts.ts';
import { SluiceError } from '../model/errors.ts';
import { formatIp, parseIp } from '../model/ip.ts';
import type { RunOpts, RunResult } from '../openflow/runner.ts';

/** Open_vSwitch external_ids keys (and Interface external_ids keys) sluice reads. */
export const OVS_KEYS = {
  node: 'sluice-node',
  role: 'sluice-role',
  tunnelIp: 'sluice-tunnel-ip',
  intBridge: 'sluice-int-bridge',
  phyBridge: 'sluice-phy-bridge',
  routerIp: 'sluice-router-ip',
  routerMac: 'sluice-router-mac',
  vmRouterMac: 'sluice-vm-router-mac',
  underlayIface: 'sluice-underlay-iface',
  ctZone: 'sluice-ct-zone',
  followMoves: 'sluice-follow-moves',
  /** Open_vSwitch: the name of the OVN localnet patch interface on the int bridge (docs/ovn.md). */
  ovnPatch: 'sluice-ovn-patch',
  /** Interface: the backend addresses behind this port, comma separated (one per family at most). */
  backendIps: 'sluice-backend-ips',
  /** Interface: the backend's own MAC (OVN's name). */
  attachedMac: 'attached-mac',
  /** Interface: network namespace to run the backend's health probe in (the lab). */
  probeNetns: 'sluice-probe-netns',
} as const;

export const DEFAULT_BRIDGES = { int: 'br-int', phy: 'br-phy' } as const;
const ZERO_MAC = '00:00:00:00:00:00';

/** NodeFacts plus where to run each backend's health probe (backend address -> netns; empty off the lab). */
export interface OvsNodeFacts {
  readonly facts: NodeFacts;
  readonly probeNetns: Readonly<Record<string, string>>;
}

/** One table as `ovs-vsctl --format=json list` prints it: cells in RFC 7047 JSON notation. */
export interface VsctlTable {
  readonly headings: readonly string[];
  readonly data: readonly (readonly unknown[])[];
}

/** The four `list` commands readNodeFacts runs, in this order, in one ovs-vsctl transaction. */
export const VSCTL_ARGS: readonly string[] = vsctlListArgs([
  ['Open_vSwitch', 'external_ids'],
  ['Bridge', 'name,ports'],
  ['Port', '_uuid,name,interfaces'],
  ['Interface', '_uuid,name,type,ofport,mac_in_use,options,external_ids'],
]);

/** `ovs-vsctl --format=json` arguments that list these columns of each table, in order, in one transaction. */
export function vsctlListArgs(tables: readonly (readonly [table: string, columns: string])[]): string[] {
  return ['--format=json', ...tables.flatMap(([t, c]) => ['--', `--columns=${c}`, 'list', t])];
}

function fail(message: string): never {
  throw new SluiceError('SLUICE_E_NODE_FACTS', message);
}

/** Splits ovs-vsctl's multi-command JSON output (one object per line) into tables. */
export function parseVsctlTables(stdout: string): VsctlTable[] {
  const out: VsctlTable[] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    let t: unknown;
    try {
      t = JSON.parse(line);
    } catch (e) {
      fail(`ovs-vsctl --format=json printed something that is not JSON: ${(e as Error).message}`);
    }
    const o = t as Partial<VsctlTable>;
    if (!Array.isArray(o.headings) || !Array.isArray(o.data))
      fail(`ovs-vsctl --format=json printed an object without headings/data: ${line.slice(0, 200)}`);
    out.push(o as VsctlTable);
  }
  return out;
}

type Row = Readonly<Record<string, unknown>>;

/** A table's rows as heading -> cell objects. */
export function rows(t: VsctlTable): Row[] {
  return t.data.map((cells) => Object.fromEntries(t.headings.map((h, i) => [h, cells[i]])));
}

/** RFC 7047 <map> -> Map (string keys and values only: external_ids, options). */
export function ovsMap(v: unknown): Map<string, string> {
  const m = new Map<string, string>();
  if (Array.isArray(v) && v[0] === 'map' && Array.isArray(v[1]))
    for (const pair of v[1] as unknown[]) {
      if (Array.isArray(pair) && pair.length === 2) m.set(String(pair[0]), String(pair[1]));
    }
  return m;
}

/** RFC 7047 <set> (or a single atom, which is a set of one) -> its atoms; `["uuid", x]` atoms become x. */
function ovsSet(v: unknown): unknown[] {
  const atom = (a: unknown) => (Array.isArray(a) && a[0] === 'uuid' ? a[1] : a);
  if (Array.isArray(v) && v[0] === 'set' && Array.isArray(v[1])) return (v[1] as unknown[]).map(atom);
  return [atom(v)];
}

/** An optional scalar column (`[]` = `["set", []]` = no value). */
function optional(v: unknown): unknown {
  const s = ovsSet(v);
  return s.length === 0 ? undefined : s[0];
}

function mac(text: string, where: string): string {
  const m = text.trim().toLowerCase();
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m))
    fail(`${where}: ${JSON.stringify(text)} is not a MAC address`);
  return m;
}

function ipv4(text: string, where: string): string {
  const p = parseIp(text.trim());
  if (p?.family !== 4) fail(`${where}: ${JSON.stringify(text)} is not an IPv4 address`);
  return formatIp(p);
}

interface Iface {
  readonly uuid: string;
  readonly name: string;
  readonly type: string;
  readonly ofport: number | undefined;
  readonly macInUse: string | undefined;
  readonly options: Map<string, string>;
  readonly externalIds: Map<string, string>;
  /** Bridge holding it (through its Port), undefined if no bridge does. */
  readonly bridge: string | undefined;
}

/**
 * NodeFacts from a snapshot of the node's OVSDB (the tables VSCTL_ARGS lists, in that order). Every problem is a
 * SluiceError(SLUICE_E_NODE_FACTS) naming the row and key, e.g. `Interface vm-host1-b1: external_ids:attached-mac
 * missing`. Pure.
 */
export function nodeFactsFromOvs(tables: readonly VsctlTable[]): OvsNodeFacts {
  if (tables.length !== 4)
    fail(`expected 4 tables (Open_vSwitch, Bridge, Port, Interface), got ${tables.length}`);
  const [ovsT, bridgeT, portT, ifaceT] = tables as [VsctlTable, VsctlTable, VsctlTable, VsctlTable];
  const ovs = rows(ovsT);
  if (ovs.length !== 1) fail(`Open_vSwitch: expected one row, got ${ovs.length}`);
  const ext = ovsMap(ovs[0]!.external_ids);
  const key = (k: string) => {
    const v = ext.get(k)?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const where = (k: string) => `Open_vSwitch . external_ids:${k}`;
  const need = (k: string, why = '') => key(k) ?? fail(`${where(k)} missing${why}`);

  const name =
    key(OVS_KEYS.node) ?? key('system-id') ?? fail(`${where(OVS_KEYS.node)} (or system-id) missing`);
  const role = need(OVS_KEYS.role);
  if (role !== 'gateway' && role !== 'host')
    fail(`${where(OVS_KEYS.role)}: expected gateway or host, got "${role}"`);
  const tunnelIp = ipv4(need(OVS_KEYS.tunnelIp), where(OVS_KEYS.tunnelIp));
  const bridges = {
    int: key(OVS_KEYS.intBridge) ?? DEFAULT_BRIDGES.int,
    phy: key(OVS_KEYS.phyBridge) ?? DEFAULT_BRIDGES.phy,
  };

  const bridgeNames = new Set(rows(bridgeT).map((b) => String(b.name)));
  for (const [k, br] of [
    [OVS_KEYS.intBridge, bridges.int],
    [OVS_KEYS.phyBridge, bridges.phy],
  ] as const)
    if (!bridgeNames.has(br)) fail(`Bridge ${br} (${where(k)}) does not exist`);

  const ifaces = interfaces(bridgeT, portT, ifaceT);
  const on = (br: string) => ifaces.filter((i) => i.bridge === br);
  const ofport = (i: Iface): number => {
    if (i.ofport === undefined) fail(`Interface ${i.name}: no ofport yet (is ovs-vswitchd running?)`);
    if (!Number.isInteger(i.ofport) || i.ofport <= 0 || i.ofport >= 0xff00)
      fail(`Interface ${i.name}: ofport ${i.ofport} (ovs-vswitchd could not open it)`);
    return i.ofport;
  };

  // br-phy's LOCAL interface: its MAC is eth_src of direct-return frames.
  const phyLocal = on(bridges.phy).find((i) => i.name === bridges.phy);
  if (phyLocal === undefined) fail(`Bridge ${bridges.phy}: no interface ${bridges.phy} (its LOCAL port)`);
  if (phyLocal.macInUse === undefined)
    fail(`Interface ${bridges.phy}: mac_in_use empty (is ovs-vswitchd running?)`);
  const phyMac = mac(phyLocal.macInUse, `Interface ${bridges.phy}: mac_in_use`);

  const { phyToInt, intToPhy } = patchPair(on(bridges.phy), on(bridges.int), bridges);
  const geneve = geneveOf(on(bridges.int), bridges.int);

  const underlayName = key(OVS_KEYS.underlayIface);
  let underlay: Iface;
  if (underlayName !== undefined) {
    const u = on(bridges.phy).find((i) => i.name === underlayName);
    if (u === undefined)
      fail(`${where(OVS_KEYS.underlayIface)}: no interface ${underlayName} on bridge ${bridges.phy}`);
    underlay = u;
  } else {
    const plain = on(bridges.phy).filter((i) => i.name !== bridges.phy && i.type !== 'patch');
    if (plain.length !== 1)
      fail(
        `Bridge ${bridges.phy}: cannot tell the underlay NIC (${plain.length} candidates${plain.length ? `: ${plain.map((i) => i.name).join(', ')}` : ''}); set ${where(OVS_KEYS.underlayIface)}`,
      );
    underlay = plain[0]!;
  }

  const { vms, probeNetns } = backendPorts(ifaces, bridges.int, ofport);
  const ovnPatch = ovnPatchOf(ifaces, key(OVS_KEYS.ovnPatch), bridges.int, ofport);
  const nodeProbes = key(OVS_KEYS.probeNetns);
  const probes = nodeProbes === undefined ? probeNetns : { ...nodeNamespaces(nodeProbes), ...probeNetns };

  // Hosts send direct return to the router and rewrite eth_src towards backends; gateways use neither.
  const hostNeed = (k: string) => (role === 'host' ? need(k, ' (hosts need it)') : key(k));
  const routerIp = hostNeed(OVS_KEYS.routerIp);
  const routerMac = hostNeed(OVS_KEYS.routerMac);
  if ((routerIp === undefined) !== (routerMac === undefined))
    fail(
      `${where(routerIp === undefined ? OVS_KEYS.routerIp : OVS_KEYS.routerMac)} missing (the other is set)`,
    );
  const vmRouterMac = hostNeed(OVS_KEYS.vmRouterMac);
  const ctZoneText = key(OVS_KEYS.ctZone);
  const ctZone = ctZoneText === undefined ? undefined : Number(ctZoneText);
  if (ctZoneText !== undefined && !validZone(ctZone))
    fail(`${where(OVS_KEYS.ctZone)}: ${JSON.stringify(ctZoneText)} is not a conntrack zone (1..65535)`);
  const followText = key(OVS_KEYS.followMoves);
  if (followText !== undefined && followText !== 'true' && followText !== 'false')
    fail(`${where(OVS_KEYS.followMoves)}: ${JSON.stringify(followText)} is not true or false`);

  return {
    facts: checkNodeFacts(
      {
        name,
        role,
        tunnelIp,
        bridges,
        phyMac,
        ports: {
          eth0: ofport(underlay),
          phyToInt: ofport(phyToInt),
          intToPhy: ofport(intToPhy),
          geneve: ofport(geneve),
        },
        vms,
        vmRouterMac: vmRouterMac ? mac(vmRouterMac, where(OVS_KEYS.vmRouterMac)) : ZERO_MAC,
        router: {
          ip: routerIp ? ipv4(routerIp, where(OVS_KEYS.routerIp)) : '0.0.0.0',
          mac: routerMac ? mac(routerMac, where(OVS_KEYS.routerMac)) : ZERO_MAC,
        },
        ...(ctZone === undefined ? {} : { ctZone }),
        ...(followText === 'true' ? { followMoves: true } : {}),
        ...(ovnPatch === undefined ? {} : { ovnPatch }),
      },
      'the OVSDB',
    ),
    probeNetns: probes,
  };
}

/** Every interface with the bridge that holds it (through its Port). */
function interfaces(bridgeT: VsctlTable, portT: VsctlTable, ifaceT: VsctlTable): Iface[] {
  const portBridge = new Map<string, string>();
  for (const b of rows(bridgeT)) for (const p of ovsSet(b.ports)) portBridge.set(String(p), String(b.name));
  const ifaceBridge = new Map<string, string>();
  for (const p of rows(portT)) {
    const br = portBridge.get(String(optional(p._uuid)));
    if (br !== undefined) for (const i of ovsSet(p.interfaces)) ifaceBridge.set(String(i), br);
  }
  return rows(ifaceT).map((r): Iface => {
    const uuid = String(optional(r._uuid));
    const ofport = optional(r.ofport);
    const macInUse = optional(r.mac_in_use);
    return {
      uuid,
      name: String(r.name),
      type: String(optional(r.type) ?? ''),
      ofport: typeof ofport === 'number' ? ofport : undefined,
      macInUse: typeof macInUse === 'string' ? macInUse : undefined,
      options: ovsMap(r.options),
      externalIds: ovsMap(r.external_ids),
      bridge: ifaceBridge.get(uuid),
    };
  });
}

/** The patch port pair between the two bridges (`phy`, `int`: their interfaces). */
function patchPair(
  phy: Iface[],
  int: Iface[],
  bridges: { int: string; phy: string },
): { phyToInt: Iface; intToPhy: Iface } {
  const pairs = phy
    .filter((i) => i.type === 'patch')
    .flatMap((p) => {
      const peer = int.find(
        (i) => i.type === 'patch' && i.name === p.options.get('peer') && i.options.get('peer') === p.name,
      );
      return peer ? [{ phyToInt: p, intToPhy: peer }] : [];
    });
  if (pairs.length !== 1)
    fail(
      `expected one patch port pair between ${bridges.phy} and ${bridges.int} (type=patch, options:peer naming each other), found ${pairs.length}`,
    );
  return pairs[0]!;
}

/** The one Geneve interface of br-int (`int`: its interfaces), with remote_ip and key from the flow. */
function geneveOf(int: Iface[], bridge: string): Iface {
  const geneves = int.filter((i) => i.type === 'geneve');
  if (geneves.length !== 1)
    fail(
      `Bridge ${bridge}: expected one interface of type geneve, found ${geneves.length}${geneves.length ? ` (${geneves.map((g) => g.name).join(', ')})` : ''}`,
    );
  const geneve = geneves[0]!;
  for (const o of ['remote_ip', 'key'])
    if (geneve.options.get(o) !== 'flow')
      fail(`Interface ${geneve.name}: options:${o} must be flow (got ${geneve.options.get(o) ?? 'nothing'})`);
  return geneve;
}

/**
 * The OVN patch's OpenFlow port: the interface `name` (sluice-ovn-patch) when it exists. ovn-controller makes the
 * localnet patch only while a port of that switch is bound on the chassis, so a missing one is no error (nothing
 * to deliver through yet); one that exists must be a patch on the int bridge.
 */
function ovnPatchOf(
  ifaces: readonly Iface[],
  name: string | undefined,
  bridge: string,
  ofport: (i: Iface) => number,
): number | undefined {
  if (name === undefined) return undefined;
  const i = ifaces.find((x) => x.name === name);
  if (i === undefined) return undefined;
  const at = `Interface ${name} (Open_vSwitch . external_ids:${OVS_KEYS.ovnPatch})`;
  if (i.bridge !== bridge)
    fail(`${at}: is on ${i.bridge ? `bridge ${i.bridge}` : 'no bridge'}, not ${bridge}`);
  if (i.type !== 'patch') fail(`${at}: is of type ${i.type || 'system'}, not patch`);
  return ofport(i);
}

/** Open_vSwitch . external_ids:sluice-probe-netns: `ip=netns` entries, each naming its namespace. */
function nodeNamespaces(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [ip, ns] of entries(text)) {
    const a = parseIp(ip);
    const where = `Open_vSwitch . external_ids:${OVS_KEYS.probeNetns}`;
    if (a === undefined) fail(`${where}: "${ip}" is not an IP address`);
    if (ns === undefined || ns === '') fail(`${where}: "${ip}" has no namespace (ip=netns)`);
    out[formatIp(a)] = ns;
  }
  return out;
}

/** `a=b` pairs of a comma-separated list; an entry without `=` has `b` undefined. */
function entries(text: string): Array<[string, string | undefined]> {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      const eq = s.indexOf('=');
      return eq < 0 ? [s, undefined] : [s.slice(0, eq).trim(), s.slice(eq + 1).trim()];
    });
}

/**
 * Backends: interfaces of br-int carrying sluice-backend-ips, by backend address (and their probe namespaces). An
 * entry `ip=mac` is a backend with its own MAC behind the port (several VMs behind one port: OVN's localnet patch,
 * docs/ovn.md); a plain `ip` has the port's attached-mac. One address per family per MAC. sluice-probe-netns is one
 * namespace for every address of the port, or `ip=netns` entries.
 */
function backendPorts(
  ifaces: readonly Iface[],
  bridge: string,
  ofport: (i: Iface) => number,
): { vms: Record<string, VmPort>; probeNetns: Record<string, string> } {
  const vms: Record<string, VmPort> = {};
  const probeNetns: Record<string, string> = {};
  const owner = new Map<string, string>();
  for (const i of ifaces) {
    const ips = i.externalIds.get(OVS_KEYS.backendIps);
    if (ips === undefined) continue;
    const at = `Interface ${i.name}`;
    const key = `${at}: external_ids:${OVS_KEYS.backendIps}`;
    if (i.bridge !== bridge)
      fail(
        `${at}: has external_ids:${OVS_KEYS.backendIps} but is on ${i.bridge ? `bridge ${i.bridge}` : 'no bridge'}, not ${bridge}`,
      );
    const list = entries(ips);
    if (list.length === 0) fail(`${key} is empty`);
    const attached = i.externalIds.get(OVS_KEYS.attachedMac);
    const portMac = () =>
      attached === undefined
        ? fail(`${at}: external_ids:${OVS_KEYS.attachedMac} missing`)
        : mac(attached, `${at}: external_ids:${OVS_KEYS.attachedMac}`);
    const families = new Set<string>();
    const here: string[] = [];
    for (const [text, ownMac] of list) {
      const p = parseIp(text);
      if (p === undefined) fail(`${key}: "${text}" is not an IP address`);
      const vmMac = ownMac === undefined ? portMac() : mac(ownMac, `${key}: MAC of ${text}`);
      if (families.has(`${vmMac}/${p.family}`))
        fail(`${key} has two IPv${p.family} addresses${ownMac === undefined ? '' : ` for MAC ${vmMac}`}`);
      families.add(`${vmMac}/${p.family}`);
      const a = formatIp(p);
      const prev = owner.get(a);
      if (prev !== undefined) fail(`backend ${a} is on two interfaces: ${prev} and ${i.name}`);
      owner.set(a, i.name);
      vms[a] = { ofport: ofport(i), mac: vmMac };
      here.push(a);
    }
    Object.assign(probeNetns, probeNamespaces(i.externalIds.get(OVS_KEYS.probeNetns), here, at));
  }
  return { vms, probeNetns };
}

/** sluice-probe-netns of one port: one namespace for all its addresses, or `ip=netns` entries (each one of them). */
function probeNamespaces(
  text: string | undefined,
  addresses: readonly string[],
  at: string,
): Record<string, string> {
  const list = entries(text ?? '');
  if (list.length === 1 && list[0]![1] === undefined)
    return Object.fromEntries(addresses.map((a) => [a, list[0]![0]]));
  const out: Record<string, string> = {};
  for (const [ip, ns] of list) {
    const a = parseIp(ip);
    const where = `${at}: external_ids:${OVS_KEYS.probeNetns}`;
    if (ns === undefined || ns === '') fail(`${where}: "${ip}" has no namespace (ip=netns)`);
    if (a === undefined || !addresses.includes(formatIp(a)))
      fail(`${where}: "${ip}" is not one of this port's backend addresses`);
    out[formatIp(a)] = ns;
  }
  return out;
}

/** A conntrack zone sluice may use: 1..65535 (zone 0 is the default zone of everything that names none). */
function validZone(z: unknown): z is number {
  return typeof z === 'number' && Number.isInteger(z) && z >= 1 && z <= 0xffff;
}

/** Bridge and node names as OVS and the config allow them: nothing a command line or flow text could misread. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/**
 * The one check every NodeFacts passes before the compiler sees it, whether read from the node's OVS
 * (nodeFactsFromOvs) or from an agent's --facts file (`where` names the source): the same types, addresses, MACs,
 * ofports and names, and nothing else (an unknown key is refused: it is a typo or an injection, never meant).
 * Returns canonical facts (addresses and MACs as the compiler writes them). Throws SLUICE_E_NODE_FACTS.
 */
export function checkNodeFacts(raw: unknown, where: string): NodeFacts {
  const at = (k: string) => `${where}: ${k}`;
  const obj = (v: unknown, k: string, keys: readonly string[]): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${at(k)}: expected an object`);
    const extra = Object.keys(v).filter((x) => !keys.includes(x));
    if (extra.length > 0) fail(`${at(k)}: unknown key ${JSON.stringify(extra[0])}`);
    return v as Record<string, unknown>;
  };
  const str = (v: unknown, k: string): string => {
    if (typeof v !== 'string') fail(`${at(k)}: expected a string`);
    return v;
  };
  const name = (v: unknown, k: string): string => {
    const t = str(v, k);
    if (!SAFE_NAME.test(t))
      fail(`${at(k)}: ${JSON.stringify(t)} is not a valid name ([A-Za-z0-9_.-], 1..63)`);
    return t;
  };
  const port = (v: unknown, k: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v >= 0xff00)
      fail(`${at(k)}: ${JSON.stringify(v)} is not an OpenFlow port number (1..65279)`);
    return v;
  };
  const ovnPort = (v: unknown): number => port(v, 'ovnPatch');
  const flag = (v: unknown): boolean => {
    if (typeof v !== 'boolean') fail(`${at('followMoves')}: expected true or false`);
    return v;
  };
  const zone = (v: unknown): number => {
    if (!validZone(v)) fail(`${at('ctZone')}: ${JSON.stringify(v)} is not a conntrack zone (1..65535)`);
    return v;
  };
  const f = obj(raw, '(root)', [
    'name',
    'role',
    'tunnelIp',
    'bridges',
    'phyMac',
    'ports',
    'vms',
    'vmRouterMac',
    'router',
    'ctZone',
    'followMoves',
    'ovnPatch',
  ]);
  const role = str(f.role, 'role');
  if (role !== 'gateway' && role !== 'host') fail(`${at('role')}: expected gateway or host, got "${role}"`);
  const bridges = obj(f.bridges, 'bridges', ['int', 'phy']);
  const ports = obj(f.ports, 'ports', ['eth0', 'phyToInt', 'intToPhy', 'geneve']);
  const router = obj(f.router, 'router', ['ip', 'mac']);
  const vms: Record<string, VmPort> = {};
  for (const [addr, v] of Object.entries(obj(f.vms, 'vms', Object.keys(f.vms ?? {})))) {
    const p = parseIp(addr);
    if (p === undefined) fail(`${at(`vms.${addr}`)}: not an IP address`);
    const vm = obj(v, `vms.${addr}`, ['ofport', 'mac']);
    vms[formatIp(p)] = {
      ofport: port(vm.ofport, `vms.${addr}.ofport`),
      mac: mac(str(vm.mac, `vms.${addr}.mac`), at(`vms.${addr}.mac`)),
    };
  }
  return {
    name: name(f.name, 'name'),
    role,
    tunnelIp: ipv4(str(f.tunnelIp, 'tunnelIp'), at('tunnelIp')),
    bridges: { int: name(bridges.int, 'bridges.int'), phy: name(bridges.phy, 'bridges.phy') },
    phyMac: mac(str(f.phyMac, 'phyMac'), at('phyMac')),
    ports: {
      eth0: port(ports.eth0, 'ports.eth0'),
      phyToInt: port(ports.phyToInt, 'ports.phyToInt'),
      intToPhy: port(ports.intToPhy, 'ports.intToPhy'),
      geneve: port(ports.geneve, 'ports.geneve'),
    },
    vms,
    vmRouterMac: mac(str(f.vmRouterMac, 'vmRouterMac'), at('vmRouterMac')),
    router: {
      ip: ipv4(str(router.ip, 'router.ip'), at('router.ip')),
      mac: mac(str(router.mac, 'router.mac'), at('router.mac')),
    },
    ...(f.ctZone === undefined ? {} : { ctZone: zone(f.ctZone) }),
    ...(f.followMoves === undefined ? {} : { followMoves: flag(f.followMoves) }),
    ...(f.ovnPatch === undefined ? {} : { ovnPatch: ovnPort(f.ovnPatch) }),
  };
}

/** Runs `ovs-vsctl <args>` against the node's ovsdb-server (LabNode has this shape; so has localRunner's). */
export interface VsctlRunner {
  vsctl(args: readonly string[], opts?: RunOpts): Promise<RunResult>;
}

/** Reads the node's facts from its local OVSDB (one ovs-vsctl transaction). Throws SLUICE_E_NODE_FACTS, or
 * SLUICE_E_IO when ovs-vsctl fails (ovsdb-server unreachable). */
export async function readNodeFacts(runner: VsctlRunner): Promise<OvsNodeFacts> {
  return nodeFactsFromOvs(await readVsctlTables(runner, VSCTL_ARGS));
}

/** Runs one `ovs-vsctl --format=json` transaction and splits its tables. Throws SLUICE_E_IO when ovs-vsctl fails. */
export async function readVsctlTables(runner: VsctlRunner, args: readonly string[]): Promise<VsctlTable[]> {
  const r = await runner.vsctl(args, { allowFail: true }).catch((e: unknown) => ({
    code: -1,
    stdout: '',
    stderr: (e as Error).message,
  }));
  if (r.code !== 0)
    throw new SluiceError('SLUICE_E_IO', `cannot read the node's OVSDB with ovs-vsctl: ${r.stderr.trim()}`);
  return parseVsctlTables(r.stdout);
}

/**
 * `next` as the agent should keep it after reading the facts again: `prev` itself when nothing changed, and `prev`'s
 * `vms` object when only other facts did. Readers that follow the facts by identity (the host's report scope,
 * src/agent/report-scope.ts) then see a change only when there is one: a re-read on every apply used to make every
 * host report look at all its load balancers (100,000 backends at 10,000 VIPs).
 */
export function keepUnchangedFacts(prev: NodeFacts, next: NodeFacts): NodeFacts {
  const vms = sameVms(prev.vms, next.vms) ? prev.vms : next.vms;
  const rest = (f: NodeFacts) => JSON.stringify({ ...f, vms: undefined });
  if (vms === prev.vms && rest(prev) === rest(next)) return prev;
  return vms === next.vms ? next : { ...next, vms };
}

function sameVms(a: NodeFacts['vms'], b: NodeFacts['vms']): boolean {
  if (a === b) return true;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) {
    const x = a[k]!;
    const y = b[k];
    if (y === undefined || x.ofport !== y.ofport || x.mac !== y.mac) return false;
  }
  return true;
}
