// OVN's load balancers as sluice's desired state. Pure: OVN rows (already read from the Northbound and Southbound
// databases, src/ovn/sync.ts) and the current desired state in, the next desired-state document, what was skipped
// and why, and what was noted out. No I/O. docs/ovn.md describes the mapping.
//
// One sluice load balancer per selected OVN load balancer and VIP entry (`vips` key "VIP:port"), named
// `ovn-<lb>-<vip>-<port>`. Every sluice load balancer whose name starts with `ovn-` belongs to the importer: it is
// replaced by what OVN says; the rest of the desired state (nodes, settings, hand-made load balancers) is kept.
// A backend's host is the sluice host node whose tunnelIp is an encap IP of the chassis its logical port is bound to.

import { formatIp, parseIp } from '../model/ip.ts';
import { validateConfig } from '../model/schema.ts';
import type { Config } from '../model/types.ts';
import { type ConfigDocument, configDocument } from '../store/config-diff.ts';
import { formatOvnRow } from '../store/db/ovn-status.ts';

/** The prefix of every load balancer the importer owns. */
export const OVN_LB_PREFIX = 'ovn-';
/** Load_Balancer external_ids key that selects a load balancer for sluice (value "true"). */
export const SELECT_KEY = 'sluice';

export interface OvnLoadBalancer {
  readonly uuid: string;
  readonly name: string;
  readonly vips: ReadonlyMap<string, string>;
  /** undefined: OVN's default, tcp. */
  readonly protocol: string | undefined;
  readonly options: ReadonlyMap<string, string>;
  readonly selectionFields: readonly string[];
  readonly ipPortMappings: ReadonlyMap<string, string>;
  /** Load_Balancer_Health_Check rows it refers to. */
  readonly healthChecks: readonly { readonly vip: string; readonly options: ReadonlyMap<string, string> }[];
  readonly externalIds: ReadonlyMap<string, string>;
}

export interface OvnSwitchPort {
  readonly name: string;
  /** Logical_Switch_Port.addresses entries ("MAC IP...", "router", "unknown", "dynamic") plus dynamic_addresses. */
  readonly addresses: readonly string[];
}

export interface OvnPortBinding {
  readonly logicalPort: string;
  /** Port_Binding.mac entries ("MAC IP..."). */
  readonly mac: readonly string[];
  /** Chassis row UUID, undefined when unbound. */
  readonly chassis: string | undefined;
  readonly additionalChassis: readonly string[];
}

export interface OvnChassis {
  readonly uuid: string;
  readonly name: string;
  /** Encap.ip of each of its encaps. */
  readonly encapIps: readonly string[];
}

/** What the importer reads from OVN: the NB load balancers and ports, the SB bindings and chassis. */
export interface OvnSnapshot {
  readonly loadBalancers: readonly OvnLoadBalancer[];
  readonly switchPorts: readonly OvnSwitchPort[];
  readonly portBindings: readonly OvnPortBinding[];
  readonly chassis: readonly OvnChassis[];
}

/** Something OVN asks for that sluice does not serve: the row (load balancer, VIP, backend) and why. */
export interface Skipped {
  readonly lb: string;
  readonly vip?: string;
  readonly backend?: string;
  readonly reason: string;
}

/** Served, but with a difference worth saying (an option sluice ignores, a port in live migration). */
export interface Note {
  readonly lb: string;
  readonly vip?: string;
  readonly backend?: string;
  readonly message: string;
}

export interface Translation {
  readonly doc: ConfigDocument;
  readonly skipped: readonly Skipped[];
  readonly notes: readonly Note[];
  /** The earliest end of a hold of an unbound port (ms): the daemon syncs again then. */
  readonly heldUntil?: number;
}

export const isSelected = (lb: OvnLoadBalancer): boolean => lb.externalIds.get(SELECT_KEY) === 'true';
export const isOwned = (name: string): boolean => name.startsWith(OVN_LB_PREFIX);

/** "1.2.3.4:80", "[2001:db8::1]:80", "1.2.3.4", "2001:db8::1" -> canonical address and port, or a reason. */
export function parseEndpoint(text: string): { address: string; port: number | undefined } | string {
  const t = text.trim();
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(t) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(t);
  const bare = m === null && t.includes(':') && !t.includes('[') ? t : undefined; // IPv6 without a port
  const addr = bare ?? m?.[1];
  const ip = addr === undefined ? undefined : parseIp(addr);
  if (ip === undefined) return `"${t}" is not an address, address:port or [IPv6]:port`;
  const port = bare === undefined && m?.[2] !== undefined ? Number(m[2]) : undefined;
  if (port !== undefined && (port < 1 || port > 65535)) return `"${t}": port ${port} is out of range`;
  return { address: formatIp(ip), port };
}

const canonicalIp = (text: string): string | undefined => {
  const t = text.replace(/^\[|\]$/g, '');
  const ip = parseIp(t);
  return ip === undefined ? undefined : formatIp(ip);
};

/** The addresses of "MAC IP IP..." entries (anything that is not an address is left out). */
function entryIps(entries: readonly string[]): string[] {
  return entries.flatMap((e) =>
    e
      .split(/\s+/)
      .map((w) => canonicalIp(w.replace(/\/\d+$/, '')))
      .filter((x): x is string => x !== undefined),
  );
}

/** address -> logical port names that claim it. */
function addressOwners(snap: OvnSnapshot): Map<string, Set<string>> {
  const owners = new Map<string, Set<string>>();
  const add = (ip: string, port: string) => owners.set(ip, (owners.get(ip) ?? new Set()).add(port));
  for (const p of snap.switchPorts) for (const ip of entryIps(p.addresses)) add(ip, p.name);
  for (const b of snap.portBindings) for (const ip of entryIps(b.mac)) add(ip, b.logicalPort);
  return owners;
}

/** A unicast MAC as OVN writes them (the first word of an addresses entry), lowercase; undefined otherwise. */
function unicastMac(word: string | undefined): string | undefined {
  const m = word?.toLowerCase();
  if (m === undefined || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m)) return undefined;
  return (Number.parseInt(m.slice(0, 2), 16) & 1) === 0 ? m : undefined;
}

/**
 * The MAC of `address` on a logical port, from its "MAC IP..." entries (NB addresses and dynamic_addresses, SB
 * Port_Binding.mac): the entry that lists the address, else the port's one MAC if it has exactly one (a port named
 * by ip_port_mappings need not list the address); undefined when neither says.
 */
function portMac(entries: readonly string[], address: string): string | undefined {
  const parsed = entries.map((e) => e.trim().split(/\s+/));
  const listing = parsed.find((w) => entryIps([w.slice(1).join(' ')]).includes(address));
  if (listing !== undefined) return unicastMac(listing[0]);
  const macs = new Set(parsed.map((w) => unicastMac(w[0])).filter((m) => m !== undefined));
  return macs.size === 1 ? [...macs][0] : undefined;
}

interface Placement {
  readonly host?: string;
  readonly reason?: string;
  readonly note?: string;
  /** The backend's MAC on its logical port (config `mac`), when the port's addresses give one. */
  readonly mac?: string;
  /** Held on its host while its port is briefly unbound (UnboundHold): until when (ms). */
  readonly heldUntil?: number;
}

/**
 * How long the daemon keeps a backend on its host after its logical port lost its chassis. A live migration that
 * moves the VM's interface unbinds the port for a moment before the destination claims it; removing the backend
 * then and adding it on the new host is two edits with a generation in between. Held, the move is one
 * `~ backend ...: host A -> B` edit. Bounded: a port that stays unbound is let go after this (its backend removed).
 */
export const UNBOUND_HOLD_MS = 5000;

/** Logical ports the daemon saw bound, and since when each port it saw bound has been unbound (ms). */
export interface UnboundPorts {
  readonly bound: ReadonlySet<string>;
  readonly since: ReadonlyMap<string, number>;
}

export const NO_UNBOUND_PORTS: UnboundPorts = { bound: new Set(), since: new Map() };

/** The next UnboundPorts after reading `snap` at `now`: only a port seen bound before can be held; a port whose
 *  binding row is gone (deleted) is not held. */
export function trackUnbound(prev: UnboundPorts, snap: OvnSnapshot, now: number): UnboundPorts {
  const bound = new Set<string>();
  const since = new Map<string, number>();
  for (const b of snap.portBindings) {
    if (b.chassis !== undefined) bound.add(b.logicalPort);
    else if (prev.bound.has(b.logicalPort) || prev.since.has(b.logicalPort))
      since.set(b.logicalPort, prev.since.get(b.logicalPort) ?? now);
  }
  return { bound, since };
}

/** translate's hold of briefly unbound ports (the daemon's; `--once` and `--dry-run` hold nothing). */
export interface UnboundHold {
  readonly ports: UnboundPorts;
  readonly now: number;
  readonly holdMs: number;
}

/** The host `current` places an importer-owned backend with this address on, if any. */
function currentHost(current: Config, address: string): string | undefined {
  for (const lb of current.loadBalancers) {
    if (!isOwned(lb.name)) continue;
    const b = lb.backends.find((x) => x.address === address);
    if (b !== undefined) return b.host;
  }
  return undefined;
}

/** A backend whose port `port` lost its chassis less than holdMs ago stays where `current` has it. */
function held(
  current: Config,
  hold: UnboundHold | undefined,
  port: string,
  address: string,
): Placement | undefined {
  const since = hold?.ports.since.get(port);
  if (hold === undefined || since === undefined || hold.now - since >= hold.holdMs) return undefined;
  const host = currentHost(current, address);
  if (host === undefined) return undefined;
  return {
    host,
    heldUntil: since + hold.holdMs,
    note: `logical port ${port} lost its chassis ${hold.now - since} ms ago: kept on ${host} for up to ${hold.holdMs} ms (a live migration binds it again)`,
  };
}

/** Which sluice host serves `address`: its logical port, that port's chassis, the chassis' encap IP. */
function placer(
  snap: OvnSnapshot,
  current: Config,
  hold?: UnboundHold,
): (lb: OvnLoadBalancer, address: string) => Placement {
  const owners = addressOwners(snap);
  const bindings = new Map(snap.portBindings.map((b) => [b.logicalPort, b]));
  const switchPorts = new Map(snap.switchPorts.map((p) => [p.name, p]));
  const chassis = new Map(snap.chassis.map((c) => [c.uuid, c]));
  const hostByIp = new Map(
    current.nodes.filter((n) => n.role === 'host').map((n) => [canonicalIp(n.tunnelIp), n.name]),
  );
  const chassisName = (uuid: string) => chassis.get(uuid)?.name ?? uuid;
  return (lb, address) => {
    const mapped = [...lb.ipPortMappings].find(([k]) => canonicalIp(k) === address)?.[1];
    let port = mapped?.split(':')[0];
    if (port === undefined) {
      const ports = [...(owners.get(address) ?? [])].sort();
      if (ports.length === 0) return { reason: 'no logical port has this address' };
      if (ports.length > 1)
        return { reason: `the address belongs to several logical ports: ${ports.join(', ')}` };
      port = ports[0]!;
    }
    const binding = bindings.get(port);
    if (binding === undefined) return { reason: `logical port ${port} has no Port_Binding` };
    const mac = portMac([...(switchPorts.get(port)?.addresses ?? []), ...binding.mac], address);
    const withMac = (p: Placement): Placement => (mac === undefined ? p : { ...p, mac });
    if (binding.chassis === undefined) {
      const h = held(current, hold, port, address);
      return h === undefined ? { reason: `logical port ${port} is not bound to a chassis` } : withMac(h);
    }
    const ch = chassis.get(binding.chassis);
    if (ch === undefined) return { reason: `logical port ${port} is bound to an unknown chassis` };
    const host = ch.encapIps.map((ip) => hostByIp.get(canonicalIp(ip))).find((h) => h !== undefined);
    if (host === undefined)
      return {
        reason: `chassis ${ch.name} (encap ${ch.encapIps.join(', ') || 'none'}) is not a sluice host node`,
      };
    const extra = binding.additionalChassis.map(chassisName);
    const note =
      extra.length === 0
        ? undefined
        : `logical port ${port} is migrating (additional_chassis ${extra.join(', ')}): it stays on ${host} until its chassis changes`;
    return withMac({ host, note });
  };
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** FNV-1a, 32 bits, as 8 hex digits: a short stable suffix for names that do not fit. */
function fnv(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** `ovn-<lb>-<vip>-<port>` (IPv6 colons as `_`); a name that would not be valid gets a hash suffix instead. */
export function sluiceLbName(lbName: string, address: string, port: number): string {
  const plain = `${OVN_LB_PREFIX}${lbName}-${address.replace(/:/g, '_')}-${port}`;
  if (NAME_RE.test(plain)) return plain;
  const stem = lbName.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40);
  return `${OVN_LB_PREFIX}${stem}-${fnv(`${lbName} ${address} ${port}`)}`;
}

type LbDoc = ConfigDocument['loadBalancers'][number];

interface Candidate {
  readonly ovn: string;
  readonly vip: string;
  readonly doc: LbDoc;
}

/** Load-balancer-wide reasons not to serve it at all, or undefined. */
function lbProblem(lb: OvnLoadBalancer): string | undefined {
  const proto = lb.protocol ?? 'tcp';
  if (proto !== 'tcp' && proto !== 'udp')
    return `protocol ${proto} is not served (sluice serves tcp and udp)`;
  if (lb.options.get('template') === 'true') return 'template load balancers are not served';
  return undefined;
}

/** Served-but-different notes for a load balancer's options, selection fields and health checks. */
function lbNotes(lb: OvnLoadBalancer): Note[] {
  const notes: Note[] = [];
  for (const [k, v] of [...lb.options].sort(([a], [b]) => (a < b ? -1 : 1)))
    if (k !== 'template') notes.push({ lb: lb.name, message: `options:${k}=${v} is ignored by sluice` });
  if (lb.selectionFields.length > 0)
    notes.push({
      lb: lb.name,
      message: `selection_fields ${[...lb.selectionFields].sort().join(',')} ignored: sluice's gateways hash the 5-tuple`,
    });
  for (const hc of lb.healthChecks)
    notes.push({
      lb: lb.name,
      vip: hc.vip,
      message: "OVN's health check is not used: sluice's host agents check their backends themselves",
    });
  return notes;
}

/** Candidates of one OVN load balancer, one per VIP entry, with what it skipped and noted. */
function candidates(
  lb: OvnLoadBalancer,
  place: ReturnType<typeof placer>,
  skipped: Skipped[],
  notes: Note[],
  holds: number[],
): Candidate[] {
  const problem = lbProblem(lb);
  if (problem !== undefined) {
    skipped.push({ lb: lb.name, reason: problem });
    return [];
  }
  notes.push(...lbNotes(lb));
  const out: Candidate[] = [];
  for (const [key, value] of [...lb.vips].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const skip = (reason: string, backend?: string) =>
      skipped.push({ lb: lb.name, vip: key, ...(backend === undefined ? {} : { backend }), reason });
    if (key.includes('^') || value.includes('^')) {
      skip('template VIPs are not served');
      continue;
    }
    const vip = parseEndpoint(key);
    if (typeof vip === 'string') {
      skip(vip);
      continue;
    }
    if (vip.port === undefined) {
      skip('a VIP without a port is not served (sluice balances given ports)');
      continue;
    }
    const backends: LbDoc['backends'] = [];
    for (const text of value.split(',').filter((s) => s.trim() !== '')) {
      const be = parseEndpoint(text);
      if (typeof be === 'string') {
        skip(be, text.trim());
        continue;
      }
      const where = place(lb, be.address);
      if (where.host === undefined) {
        skip(where.reason ?? 'no host', text.trim());
        continue;
      }
      if (where.note !== undefined)
        notes.push({ lb: lb.name, vip: key, backend: text.trim(), message: where.note });
      if (where.heldUntil !== undefined) holds.push(where.heldUntil);
      if (backends.some((b) => b.address === be.address && b.port === be.port)) continue;
      backends.push({
        address: be.address,
        ...(be.port === undefined ? {} : { port: be.port }),
        host: where.host,
        weight: 1,
        state: 'active',
        ...(where.mac === undefined ? {} : { mac: where.mac }),
      });
    }
    const name = sluiceLbName(lb.name, vip.address, vip.port);
    const protocol = (lb.protocol ?? 'tcp') as 'tcp';
    out.push({
      ovn: lb.name,
      vip: key,
      doc: { name, vip: vip.address, protocol, ports: [vip.port], backends },
    });
  }
  return out;
}

/** Issues of `doc` with a path into load balancer `index`, as "path: message". */
function issuesOf(
  doc: ConfigDocument,
  index: number,
): { lb: string[]; backends: Map<number, string[]> } | undefined {
  const r = validateConfig(doc);
  if (r.ok) return undefined;
  const lb: string[] = [];
  const backends = new Map<number, string[]>();
  const prefix = `loadBalancers[${index}]`;
  for (const i of r.issues) {
    const m = /^loadBalancers\[(\d+)\](?:\.backends\[(\d+)\])?/.exec(i.path);
    const text = `${i.message} [${i.code}]`;
    if (m !== null && Number(m[1]) === index && m[2] !== undefined)
      backends.set(Number(m[2]), [...(backends.get(Number(m[2])) ?? []), text]);
    else lb.push(i.path.startsWith(prefix) ? text : `${i.path}: ${text}`);
  }
  return { lb, backends };
}

/**
 * Adds `c` to `doc` if the whole desired state stays valid; backends that make it invalid (a backend address that
 * lives on another host elsewhere, one that is a VIP) are dropped and reported; a load balancer that is invalid on
 * its own (its listener taken by another load balancer, no gateway) is skipped.
 */
function admit(doc: ConfigDocument, c: Candidate, skipped: Skipped[]): void {
  const index = doc.loadBalancers.length;
  let lb: LbDoc = c.doc;
  for (let round = 0; round < 3; round++) {
    doc.loadBalancers.push(lb);
    const issues = issuesOf(doc, index);
    if (issues === undefined) return;
    doc.loadBalancers.pop();
    if (issues.backends.size === 0 || round === 2) {
      skipped.push({ lb: c.ovn, vip: c.vip, reason: `not valid in sluice: ${issues.lb.join('; ')}` });
      return;
    }
    for (const [i, texts] of issues.backends) {
      const b = lb.backends[i]!;
      const text = b.port === undefined ? b.address : `${b.address}:${b.port}`;
      skipped.push({ lb: c.ovn, vip: c.vip, backend: text, reason: texts.join('; ') });
    }
    lb = { ...lb, backends: lb.backends.filter((_, i) => !issues.backends.has(i)) };
  }
}

/**
 * The desired state that serves the selected OVN load balancers: `current` without the importer's load balancers,
 * plus one per selected, servable OVN VIP. Everything left out is in `skipped` with its reason.
 */
export function translate(snap: OvnSnapshot, current: Config, hold?: UnboundHold): Translation {
  const skipped: Skipped[] = [];
  const notes: Note[] = [];
  const holds: number[] = [];
  const place = placer(snap, current, hold);
  const doc = configDocument(current);
  doc.loadBalancers = doc.loadBalancers.filter((lb) => !isOwned(lb.name));
  const selected = snap.loadBalancers
    .filter(isSelected)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.uuid < b.uuid ? -1 : 1));
  const all = selected.flatMap((lb) => candidates(lb, place, skipped, notes, holds));
  const seen = new Map<string, Candidate>();
  for (const c of all) {
    const first = seen.get(c.doc.name);
    if (first !== undefined) {
      skipped.push({ lb: c.ovn, vip: c.vip, reason: `the same VIP and port as load balancer ${first.ovn}` });
      continue;
    }
    seen.set(c.doc.name, c);
    admit(doc, c, skipped);
  }
  return { doc, skipped, notes, ...(holds.length > 0 ? { heldUntil: Math.min(...holds) } : {}) };
}

/** One line per skipped row: `skipped: load balancer web, VIP 10.0.0.10:80, backend 10.0.1.5:8080: why`. */
export function formatSkipped(s: Skipped): string {
  return `skipped: ${formatOvnRow(s)}: ${s.reason}`;
}

export function formatNote(n: Note): string {
  return `note: ${formatOvnRow(n)}: ${n.message}`;
}
