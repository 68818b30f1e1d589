// What the compiler needs to know about the node it compiles for, beyond the config and the generation.
// Pure data; the lab (src/lab) or the agent fills it from the node's OVS (ofport numbers) and addresses.

import type { NodeRole } from '../model/types.ts';

/** A backend's veth on a host's br-int. */
export interface VmPort {
  readonly ofport: number;
  /** MAC of the backend's own interface (eth_dst of packets delivered to it). */
  readonly mac: string;
}

export interface NodeFacts {
  /** Node name, as in Config.nodes. */
  readonly name: string;
  readonly role: NodeRole;
  /** Underlay tunnel endpoint IPv4 (held by br-phy's LOCAL port). */
  readonly tunnelIp: string;
  /** Bridge names. */
  readonly bridges: { readonly int: string; readonly phy: string };
  /** MAC of br-phy's LOCAL port: eth_src of direct-return frames. */
  readonly phyMac: string;
  readonly ports: {
    /** br-phy: the underlay NIC. */
    readonly eth0: number;
    /** br-phy: patch port towards br-int (`phy-to-int`). */
    readonly phyToInt: number;
    /** br-int: patch port towards br-phy (`int-to-phy`). */
    readonly intToPhy: number;
    /** br-int: the Geneve port (remote_ip=flow, key=flow). */
    readonly geneve: number;
  };
  /** Hosts: backend ports on br-int, keyed by backend address (an address of each family may name the same port). */
  readonly vms: Readonly<Record<string, VmPort>>;
  /** Hosts: the MAC backends use for their default router (static neighbour): eth_src of frames to backends. */
  readonly vmRouterMac: string;
  /** Hosts: next hop of direct return (the upstream router on the underlay). */
  readonly router: { readonly ip: string; readonly mac: string };
  /** Hosts: TCP SYNs per second this host commits to conntrack, over all its load balancers (one OpenFlow meter,
   *  burst one second's worth; SYNs above it are dropped before conntrack). Absent or 0: unmetered. Not read from
   *  OVS: the agent's `--syn-rate` (docs/security.md "Floods"). */
  readonly synRate?: number;
  /** Gateways: ICMP errors per second to all VIPs that the gateway copies to hosts (one OpenFlow meter, burst one
   *  second's worth, in front of every GW_ICMP flow; errors over the rate are dropped before they are copied).
   *  Absent: DEFAULT_ICMP_RATE; 0: unmetered. The agent's `--icmp-rate` (docs/design/icmp.md "The meter"). */
  readonly icmpRate?: number;
  /** Gateways: the XDP datapath's tc program copies ICMP errors to the hosts (src/xdp/icmp.bpf.c, with the meter
   *  above), so OVS gets no GW_ICMP error flows and no meter: OVS sees every frame the XDP program passes (its
   *  AF_PACKET socket reads them before tc does) and would send a second set of copies. */
  readonly icmpErrorsInXdp?: boolean;
  /** Hosts: the conntrack zone of sluice's connections (CT_ZONE when absent). Another zone on a node where another
   *  controller allocates zones in the same datapath (OVN's ovn-controller: docs/ovn.md). */
  readonly ctZone?: number;
  /** Hosts: hand over the connections of a backend that moved to another host (live migration) instead of losing
   *  them: this host forwards its established connections of a backend configured elsewhere to that host, and
   *  sends a local backend's replies it has no connection for back to the host that forwarded them
   *  (compile/moved.ts). Off when absent. The agent's `sluice-follow-moves=true` (docs/ovn.md). */
  readonly followMoves?: boolean;
  /** Hosts on an OVN chassis: the OpenFlow port of OVN's localnet patch on the int bridge. Every backend the config
   *  places on this host with a `mac` is delivered through it (compile/ovn-patch.ts, ovnPatchFacts), unless `vms`
   *  names the address. The agent's `sluice-ovn-patch=<interface>` (docs/ovn.md). */
  readonly ovnPatch?: number;
}
