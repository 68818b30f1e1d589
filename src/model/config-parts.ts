// A config kept as parts, so that a new version in which a few load balancers changed is validated and built in
// work proportional to those few (the agents: every config change of a rollout used to re-parse the whole document,
// ~0.1 s at 1,000 load balancers and ~1 s at 10,000 on this project's 2-core machine, per agent). Pure.
//
// The parts are the ones the store keeps a plan's config in (src/store/db/plans.ts PlanDocs): `base`, the document
// with `loadBalancers` replaced by their names, and each load balancer's own JSON. When the base is the previous
// one's, only the load balancers whose JSON changed are validated (parseConfig of the base with just them: every rule
// that concerns one load balancer and the nodes), the others are taken over as the same frozen objects, and the
// rules that relate load balancers to each other (crossCheckOk) are checked for the changed ones against counts kept
// from the previous result (CrossIndex: checking the joined config took ~10 ms at 10,000). Anything that does
// not pass falls back to parseConfig of the whole document, so the error (codes, paths, messages) is exactly the full
// parse's, and whatever the full parse accepts is accepted.

import { LIMITS, parseConfig, validateConfig } from './schema.ts';
import { lbSlotBits } from './slot-bits.ts';
import type { Config, LoadBalancer } from './types.ts';

export interface ConfigParts {
  readonly base: string;
  /** Load balancer name -> the JSON it was parsed from. */
  readonly docs: ReadonlyMap<string, string>;
  readonly config: Config;
  /** Load balancers validated and built by the call that returned this (all of them on a full parse). */
  readonly parsed: number;
  /** What a partial parse after this one reuses (derived from `base` and `config`, built when first needed). */
  readonly derived?: Derived;
}

/** What the base and the config's load balancers give every partial parse after them. */
interface Derived {
  /** The base document without its load balancers, and their names in its order. */
  readonly fields: Readonly<Record<string, unknown>>;
  readonly names: readonly string[];
  /** Name -> index in config.loadBalancers (sorted by name; the same names while the base is the same). */
  readonly position: ReadonlyMap<string, number>;
  /** The cross rules' counts over config.loadBalancers, handed from one result to the next (CrossIndex). */
  readonly cross: CrossIndex;
}

function byName(config: Config): Map<string, LoadBalancer> {
  return new Map(config.loadBalancers.map((lb) => [lb.name, lb]));
}

/** The base's fields and names, or undefined when it is not an object with a list of unique names. */
function baseFields(base: string): { fields: Record<string, unknown>; names: string[] } | undefined {
  const doc = JSON.parse(base) as unknown;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const { loadBalancers: names, ...fields } = doc as Record<string, unknown>;
  if (!Array.isArray(names) || new Set(names).size !== names.length) return undefined;
  return { fields, names: names.map(String) };
}

function derive(base: string, config: Config): Derived | undefined {
  const b = baseFields(base);
  if (b === undefined) return undefined;
  const position = new Map(config.loadBalancers.map((lb, i) => [lb.name, i]));
  return { ...b, position, cross: CrossIndex.of(config) };
}

/**
 * The Config of (`base`, `docs`), reusing `prev`'s load balancers whose JSON is unchanged when `prev` has the same
 * base. `whole()` returns the whole document (config-file shape) for the full parse; it may throw (a base naming a
 * load balancer without a document). Throws what parseConfig throws (SLUICE_E_CONFIG_INVALID); `source` names the
 * config in that error. A partial parse costs the changed load balancers plus one pass comparing every document by
 * identity (or only the names in `hint`, when the caller knows which documents may have changed: the store's
 * follower, src/store/db/plan-index.ts): the base is not parsed again, the load balancers are not sorted again, and the rules between load
 * balancers are checked on the changed ones against counts kept from `prev` (CrossIndex).
 */
export function parseConfigParts(
  base: string,
  docs: ReadonlyMap<string, string>,
  whole: () => unknown,
  prev?: ConfigParts,
  source?: string,
  hint?: Iterable<string>,
): ConfigParts {
  const full = (): ConfigParts => {
    const config = parseConfig(whole(), source);
    return { base, docs, config, parsed: config.loadBalancers.length };
  };
  if (prev === undefined) return full();
  const d = prev.derived ?? derive(prev.base, prev.config);
  if (d === undefined) return full();
  if (prev.base !== base) return otherNames(base, docs, prev, d) ?? full();
  if (d.names.length !== docs.size) return full();
  const changed: string[] = [];
  // With a hint (the names whose documents may differ from prev's; every other name's is prev's, present or not),
  // only those are compared: with the same base and size, the names are still the base's.
  for (const name of hint ?? d.names) {
    if (hint !== undefined && !d.position.has(name)) continue;
    const doc = docs.get(name);
    if (doc === undefined) return full();
    if (prev.docs.get(name) !== doc) changed.push(name);
  }
  if (changed.length === 0) {
    const same: ConfigParts = { ...prev, docs, parsed: 0, derived: d };
    if (d.cross.holder === prev || d.cross.holder === undefined) d.cross.holder = same;
    return same;
  }
  const sub = validateConfig({
    ...d.fields,
    loadBalancers: changed.map((n) => JSON.parse(docs.get(n)!) as unknown),
  });
  if (!sub.ok) return full();
  const fresh = byName(sub.config);
  // Each changed document must be the load balancer it is filed under (the full parse decides otherwise).
  if (fresh.size !== changed.length || changed.some((n) => !fresh.has(n))) return full();
  // The same names in the same sorted order: each changed load balancer takes its predecessor's place.
  const lbs = [...prev.config.loadBalancers];
  const before: LoadBalancer[] = [];
  for (const n of changed) {
    const i = d.position.get(n);
    if (i === undefined) return full();
    before.push(lbs[i]!);
    lbs[i] = fresh.get(n)!;
  }
  const config: Config = Object.freeze({ ...sub.config, loadBalancers: Object.freeze(lbs) });
  // The counts belong to one result at a time: a `prev` whose counts were handed on gets its own.
  const cross =
    d.cross.holder === prev || d.cross.holder === undefined ? d.cross : CrossIndex.of(prev.config);
  if (!cross.replace(config.slotBits, before, [...fresh.values()])) return full();
  const out: ConfigParts = { base, docs, config, parsed: changed.length, derived: { ...d, cross } };
  cross.holder = out;
  return out;
}

/**
 * parseConfigParts after a change of the base that only added or removed load balancers (the same settings and
 * nodes): the added ones and those whose documents changed are validated, the others taken over as the same
 * objects, and the cross rules checked on what came and went (an operator adding 1,000 VIPs to 9,000 used to make
 * every agent parse all 10,000 again, and every load balancer a new object for the compile, the health checker
 * and the report to look at). Undefined: the full parse decides.
 */
function otherNames(
  base: string,
  docs: ReadonlyMap<string, string>,
  prev: ConfigParts,
  d: Derived,
): ConfigParts | undefined {
  const b = baseFields(base);
  if (b === undefined || b.names.length !== docs.size) return undefined;
  if (JSON.stringify(b.fields) !== JSON.stringify(d.fields)) return undefined;
  const changed: string[] = [];
  for (const name of b.names) {
    const doc = docs.get(name);
    if (doc === undefined) return undefined;
    if (!d.position.has(name) || prev.docs.get(name) !== doc) changed.push(name);
  }
  const sub = validateConfig({
    ...d.fields,
    loadBalancers: changed.map((n) => JSON.parse(docs.get(n)!) as unknown),
  });
  if (!sub.ok) return undefined;
  const fresh = byName(sub.config);
  if (fresh.size !== changed.length || changed.some((n) => !fresh.has(n))) return undefined;
  const names = new Set(b.names);
  const before: LoadBalancer[] = [];
  const lbs: LoadBalancer[] = [];
  for (const lb of prev.config.loadBalancers)
    if (!names.has(lb.name) || fresh.has(lb.name)) before.push(lb);
    else lbs.push(lb);
  lbs.push(...fresh.values());
  // The full parse's order (schema.ts buildConfig: by name, code unit order).
  lbs.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const config: Config = Object.freeze({ ...sub.config, loadBalancers: Object.freeze(lbs) });
  const cross =
    d.cross.holder === prev || d.cross.holder === undefined ? d.cross : CrossIndex.of(prev.config);
  if (!cross.replace(config.slotBits, before, [...fresh.values()])) return undefined;
  const position = new Map(lbs.map((lb, i) => [lb.name, i]));
  const out: ConfigParts = {
    base,
    docs,
    config,
    parsed: changed.length,
    derived: { fields: d.fields, names: b.names, position, cross },
  };
  cross.holder = out;
  return out;
}

/**
 * The counts behind the rules between load balancers (crossCheckOk) over one config's load balancers: listeners
 * (protocol, VIP, port), VIPs, backend addresses per host, slots. `replace` checks a change of some load balancers
 * against them in work proportional to those load balancers, and applies it only when every rule still holds. It
 * is mutable, so one result (a ConfigParts, the planner's effective config) holds it at a time (`holder`).
 */
export class CrossIndex {
  holder: unknown;
  readonly #listeners = new Map<string, number>();
  readonly #vips = new Map<string, number>();
  /** `address host` -> how many backends; address -> how many hosts have it. */
  readonly #pairs = new Map<string, number>();
  readonly #hosts = new Map<string, number>();
  #slots = 0;

  static of(config: Config): CrossIndex {
    const x = new CrossIndex();
    x.#apply(x.#delta(config.slotBits, [], config.loadBalancers));
    return x;
  }

  /** Replaces load balancers `before` by `after` if the rules hold after; false (and nothing changed) if not. */
  replace(slotBits: number, before: readonly LoadBalancer[], after: readonly LoadBalancer[]): boolean {
    const d = this.#delta(slotBits, before, after);
    const get = (m: Map<string, number>, dm: Map<string, number>, k: string) => dm.get(k) ?? m.get(k) ?? 0;
    if (this.#slots + d.slots > LIMITS.totalSlots) return false;
    // Removing load balancers breaks no rule; what the new versions add is checked.
    for (const lb of after) {
      if (get(this.#hosts, d.hosts, lb.vip) > 0) return false;
      for (const p of lb.ports) if (get(this.#listeners, d.listeners, listenerKey(lb, p)) !== 1) return false;
      for (const b of lb.backends)
        if (get(this.#vips, d.vips, b.address) > 0 || get(this.#hosts, d.hosts, b.address) !== 1)
          return false;
    }
    this.#apply(d);
    return true;
  }

  #delta(slotBits: number, before: readonly LoadBalancer[], after: readonly LoadBalancer[]): Delta {
    const d: Delta = {
      listeners: new Map<string, number>(),
      vips: new Map<string, number>(),
      pairs: new Map<string, number>(),
      hosts: new Map<string, number>(),
      slots: 0,
    };
    const bump = (m: Map<string, number>, base: Map<string, number>, k: string, by: number) => {
      const n = (m.get(k) ?? base.get(k) ?? 0) + by;
      m.set(k, n);
      return n;
    };
    const add = (lb: LoadBalancer, by: 1 | -1) => {
      for (const p of lb.ports) bump(d.listeners, this.#listeners, listenerKey(lb, p), by);
      bump(d.vips, this.#vips, lb.vip, by);
      for (const b of lb.backends) {
        const n = bump(d.pairs, this.#pairs, `${b.address} ${b.host}`, by);
        // A host gained (0 -> 1) or lost (1 -> 0) the address.
        if ((by === 1 && n === 1) || (by === -1 && n === 0)) bump(d.hosts, this.#hosts, b.address, by);
      }
      d.slots += by * 2 ** lbSlotBits(slotBits, lb.backends.length);
    };
    for (const lb of before) add(lb, -1);
    for (const lb of after) add(lb, 1);
    return d;
  }

  #apply(d: Delta): void {
    const put = (m: Map<string, number>, from: Map<string, number>) => {
      for (const [k, n] of from) {
        if (n === 0) m.delete(k);
        else m.set(k, n);
      }
    };
    put(this.#listeners, d.listeners);
    put(this.#vips, d.vips);
    put(this.#pairs, d.pairs);
    put(this.#hosts, d.hosts);
    this.#slots += d.slots;
  }
}

/** New counts of the keys a change touches (0 = gone). */
interface Delta {
  readonly listeners: Map<string, number>;
  readonly vips: Map<string, number>;
  readonly pairs: Map<string, number>;
  readonly hosts: Map<string, number>;
  slots: number;
}

function listenerKey(lb: LoadBalancer, port: number): string {
  return `${lb.protocol} ${lb.vip} ${port}`;
}

/**
 * The rules of validateConfig (schema.ts) that relate load balancers to each other, on already valid load
 * balancers: no two serve the same protocol, VIP and port; no backend address is any load balancer's VIP; a backend
 * address is on one host across all load balancers; the slots of all of them fit LIMITS.totalSlots. False = some
 * rule may fail (the caller then runs the full parse, which says which).
 */
export function crossCheckOk(config: Config): boolean {
  const listeners = new Set<string>();
  const vips = new Set<string>();
  let slots = 0;
  for (const lb of config.loadBalancers) {
    vips.add(lb.vip);
    for (const p of lb.ports) {
      const key = `${lb.protocol} ${lb.vip} ${p}`;
      if (listeners.has(key)) return false;
      listeners.add(key);
    }
    slots += 2 ** lbSlotBits(config.slotBits, lb.backends.length);
  }
  if (slots > LIMITS.totalSlots) return false;
  const hostOf = new Map<string, string>();
  for (const lb of config.loadBalancers)
    for (const b of lb.backends) {
      if (vips.has(b.address)) return false;
      const h = hostOf.get(b.address);
      if (h === undefined) hostOf.set(b.address, b.host);
      else if (h !== b.host) return false;
    }
  return true;
}
