// The OVN patch's backend list, derived from the config. Pure.
//
// On an OVN chassis sluice delivers to its VMs through OVN's localnet patch, each with the VM's own MAC (OVN's
// logical switch takes the frame on to the VM's port). A host whose facts name that patch (`ovnPatch`, the agent's
// `sluice-ovn-patch`) gets one delivery entry per backend the config places on it with a `mac` (which
// `sluice ovn sync` writes from the backend's logical port), as if the patch's `sluice-backend-ips` listed
// `ip=mac` for each: the compiler then builds the same flows as for entries written by hand (docs/ovn.md "The
// patch's backend list").
//
// - The node's own entries win: an address its OVSDB lists (`vms`) keeps that port and MAC (e.g. a VM behind an
//   OVN router, delivered to the router leg's MAC).
// - Only backends placed on this host: a host commits new connections only for those, and a move rewrites the
//   config, so no chassis needs an entry for a VM bound elsewhere (and flows grow with the host's own backends).
// - An entry derived before (`previous`) stays while a plan still has its address as a member: a backend removed
//   from the config (a removed backend keeps its connections, rollout.md; a VM unbound during a migration) keeps its
//   delivery for its established connections, as a hand-written entry would.

import type { Config } from '../model/types.ts';
import type { Generation } from '../rollout/types.ts';
import type { NodeFacts, VmPort } from './facts.ts';

export type DeliveryEntries = Readonly<Record<string, VmPort>>;

/** The entries derived for this host's OVN patch (none without one), address -> the patch and the backend's MAC. */
export function ovnPatchEntries(
  config: Config,
  gen: Generation,
  facts: NodeFacts,
  previous: DeliveryEntries = {},
): DeliveryEntries {
  const ofport = facts.ovnPatch;
  if (facts.role !== 'host' || ofport === undefined) return {};
  const out = new Map<string, VmPort>();
  for (const lb of config.loadBalancers)
    for (const b of lb.backends)
      if (b.host === facts.name && b.mac !== undefined && !out.has(b.address))
        out.set(b.address, { ofport, mac: b.mac });
  // Only entries that left the config are looked up in the plan (at 10,000 VIPs its members are 200,000).
  const left = Object.entries(previous).filter(([address]) => !out.has(address));
  if (left.length > 0) {
    const members = new Set<string>();
    for (const plan of gen.pools.values()) for (const m of plan.members) members.add(m.address);
    for (const [address, vm] of left) if (members.has(address)) out.set(address, { ofport, mac: vm.mac });
  }
  return Object.fromEntries([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** `facts` with the derived entries under its own (`vms` wins for an address both name). */
export function withDeliveryEntries(facts: NodeFacts, entries: DeliveryEntries): NodeFacts {
  if (Object.keys(entries).length === 0) return facts;
  return { ...facts, vms: { ...entries, ...facts.vms } };
}
