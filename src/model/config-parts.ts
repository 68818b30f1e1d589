// A config kept as parts, so that a new version in which a few load balancers changed is validated and built in
// work proportional to those few (the agents: every config change of a rollout used to re-parse the whole document,
// ~0.1 s at 1,000 load balancers and ~1 s at 10,000 on this project's 2-core machine, per agent). Pure.
//
// The parts are the ones the store keeps a plan's config in (src/store/db/plans.ts PlanDocs): `base`, the document
// with `loadBalancers` replaced by their names, and each load balancer's own JSON. When the base is the previous
// one's, only the load balancers whose JSON changed are validated (parseConfig of the base with just them: every rule
// that concerns one load balancer and the nodes), the others are taken over as the same frozen objects, and the
// rules that relate load balancers to each other are checked on the joined config (crossCheckOk). Anything that does
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
}

function byName(config: Config): Map<string, LoadBalancer> {
  return new Map(config.loadBalancers.map((lb) => [lb.name, lb]));
}

/**
 * The Config of (`base`, `docs`), reusing `prev`'s load balancers whose JSON is unchanged when `prev` has the same
 * base. `whole()` returns the whole document (config-file shape) for the full parse; it may throw (a base naming a
 * load balancer without a document). Throws what parseConfig throws (SLUICE_E_CONFIG_INVALID); `source` names the
 * config in that error.
 */
export function parseConfigParts(
  base: string,
  docs: ReadonlyMap<string, string>,
  whole: () => unknown,
  prev?: ConfigParts,
  source?: string,
): ConfigParts {
  const full = (): ConfigParts => {
    const config = parseConfig(whole(), source);
    return { base, docs, config, parsed: config.loadBalancers.length };
  };
  if (prev === undefined || prev.base !== base) return full();
  const names = (JSON.parse(base) as { loadBalancers?: unknown }).loadBalancers;
  if (!Array.isArray(names) || names.length !== docs.size || new Set(names).size !== names.length)
    return full();
  const changed: string[] = [];
  for (const name of names) {
    const doc = docs.get(String(name));
    if (doc === undefined) return full();
    if (prev.docs.get(String(name)) !== doc) changed.push(String(name));
  }
  if (changed.length === 0) return { ...prev, docs, parsed: 0 };
  const sub = validateConfig({
    ...(JSON.parse(base) as Record<string, unknown>),
    loadBalancers: changed.map((n) => JSON.parse(docs.get(n)!) as unknown),
  });
  if (!sub.ok) return full();
  const fresh = byName(sub.config);
  // Each changed document must be the load balancer it is filed under (the full parse decides otherwise).
  if (fresh.size !== changed.length || changed.some((n) => !fresh.has(n))) return full();
  const old = byName(prev.config);
  const lbs = (names as string[])
    .map((n) => fresh.get(n) ?? old.get(n)!)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const config: Config = Object.freeze({ ...sub.config, loadBalancers: Object.freeze(lbs) });
  if (!crossCheckOk(config)) return full();
  return { base, docs, config, parsed: changed.length };
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
