// SPDX-License-Identifier: Apache-2.0
// sluice's gateway datapath in XDP: the same decision as the OVS gateway pipeline (src/compile/gateway.ts) in
// `fields` hash mode, so a mixed ECMP set of OVS and XDP gateways sends every packet to the same slot.
//
//   VIP:port/proto (IPv4 or IPv6, TCP or UDP)  ->  h = the OVS gateway's hash in the generation's hash mode:
//     `fields`: OVS flow_hash_symmetric_l3l4(+udp), basis 0 (multipath);
//     `dp_hash`: the userspace datapath's dp_hash, hash_int(miniflow_hash_5tuple(packet, 0), 0)
//   slot = h mod 2^bits  ->  slot entry of the generation in force (copy `active`)
//   -> Ethernet/IPv4/UDP 6081/Geneve with the three sluice options, exactly as OVS's userspace tunnel push
//      builds them (outer UDP source port from OVS's 5-tuple hash) -> XDP_TX
//
// A VIP:port packet (or echo request) in a frame addressed to another MAC than this gateway's is dropped and counted,
// as the OVS gateway's br-phy does (PHY_VIP_NOT_MINE): a switch floods a frame whose destination it has not learned
// to every port, and every gateway that got a copy would forward it. A VIP:port packet whose slot has no primary is
// dropped (the OVS gateway's catch-all drop). An ICMP or ICMPv6 echo
// request to a VIP address is answered in place (XDP_TX), as the OVS gateway's echo flow does. Everything else
// (other addresses, ports, protocols, ICMP errors, fragments, malformed headers) is XDP_PASS, untouched; ICMP errors
// to a VIP are then copied to its hosts by icmp.bpf.c on the uplink's tc ingress.
// Map layouts are mirrored by src/compile/xdp.ts; design and limits in docs/design/xdp.md.

#include "sluice.h"
SLUICE_MAP(sluice_vips, BPF_MAP_TYPE_HASH, COPIES * MAX_VIPS, struct vip_key, struct vip_value, 0);
SLUICE_MAP(sluice_slots, BPF_MAP_TYPE_HASH, MAX_SLOT_ENTRIES, struct slot_key, struct slot_value, BPF_F_NO_PREALLOC);
SLUICE_MAP(sluice_stats, BPF_MAP_TYPE_PERCPU_ARRAY, MAX_VIPS, __u32, struct vip_stats, 0);

/** Prepends Ethernet/IPv4/UDP/Geneve + options to the frame at ctx (which keeps its own Ethernet header, as
 *  OVS's tunnel push does). */
static __always_inline int encapsulate(struct xdp_md *ctx, const struct gw_config *cfg, const struct slot_value *s,
				       __u8 ecn, __u16 sport)
{
	__u32 inner_len = ctx->data_end - ctx->data;
	if (bpf_xdp_adjust_head(ctx, -OUTER_LEN))
		return -1;
	__u8 *d = (void *)(long)ctx->data;
	if ((void *)(d + OUTER_LEN) > (void *)(long)ctx->data_end)
		return -1;
	tunnel_push(d, cfg, s->dst_mac, s->dst_ip, OUTER_LEN, inner_len, ecn, sport);
#pragma unroll
	for (int i = 0; i < 3; i++)
		geneve_option(d + OUTER_LEN - 24 + 8 * i, OPT_LB_SLOT + i, s->opt[i]);
	return 0;
}

static __always_inline void count_drop_no_slot(__u32 counter)
{
	struct vip_stats *st = bpf_map_lookup_elem(&sluice_stats, &counter);
	if (st)
		st->drop_no_slot++;
}

/** lib/csum.c recalc_csum16 (RFC 1624, eqn. 3): a checksum after one 16-bit word changed from `old` to `new`.
 *  Ones-complement sums do not depend on byte order, so the words are used as loaded. */
static __always_inline __u16 csum_replace16(__u16 csum, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~csum + (__u16)~old + (__u32)new;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/** The OVS gateway's echo flow: swap the Ethernet and IP addresses, echo reply, TTL (hop limit) 64, out the port it
 *  came in. Swapping addresses leaves every checksum as it was (the same words, summed in another order); the TTL
 *  and the type are updated as OVS's packet_set_ipv4 and packet_set_icmp do. */
static __always_inline int echo_reply(struct xdp_md *ctx, const struct parsed *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *eth = data;
	__u8 *ip = data + 14;
	__u8 *icmp = data + 14 + (p->l4_off & 0x3ff);
	if ((void *)(ip + 20) > end || (void *)(icmp + 8) > end)
		return XDP_PASS;
	__u8 mac[6];
	__builtin_memcpy(mac, eth, 6);
	__builtin_memcpy(eth, eth + 6, 6);
	__builtin_memcpy(eth + 6, mac, 6);
	__u16 old_type = *(__u16 *)icmp;
	if (p->key.family == 4) {
		__u32 a = *(__u32 *)(ip + 12);
		*(__u32 *)(ip + 12) = *(__u32 *)(ip + 16);
		*(__u32 *)(ip + 16) = a;
		__u16 old_ttl = *(__u16 *)(ip + 8);
		ip[8] = 64;
		*(__u16 *)(ip + 10) = csum_replace16(*(__u16 *)(ip + 10), old_ttl, *(__u16 *)(ip + 8));
		icmp[0] = 0;
	} else {
		if ((void *)(ip + 40) > end)
			return XDP_PASS;
		__u8 a[16];
		__builtin_memcpy(a, ip + 8, 16);
		__builtin_memcpy(ip + 8, ip + 24, 16);
		__builtin_memcpy(ip + 24, a, 16);
		ip[7] = 64;
		icmp[0] = 129;
	}
	*(__u16 *)(icmp + 2) = csum_replace16(*(__u16 *)(icmp + 2), old_type, *(__u16 *)icmp);
	return XDP_TX;
}

/** Whether the frame's destination MAC is this gateway's (every byte compared: packet data may be unaligned). */
static __always_inline int frame_is_mine(const __u8 *eth, const struct gw_config *cfg)
{
	__u8 diff = 0;
#pragma unroll
	for (int i = 0; i < 6; i++)
		diff |= eth[i] ^ cfg->src_mac[i];
	return diff == 0;
}

SEC("xdp")
int sluice_gateway(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct parsed p = {};
	int rc = parse_frame(data, end, &p);
	if (rc || p.icmp_error)  // errors go to icmp.bpf.c (tc), which copies them to the VIP's hosts
		return XDP_PASS;

	int in_force = copy_in_force();
	if (in_force < 0)
		return XDP_PASS;
	__u32 copy = in_force;
	p.key.copy = copy;
	p.key.proto = p.t.proto;
	struct vip_value *vip = bpf_map_lookup_elem(&sluice_vips, &p.key);
	if (!vip)
		return XDP_PASS;
	struct gw_config *cfg = bpf_map_lookup_elem(&sluice_config, &copy);
	if (!cfg)
		return XDP_PASS;
	if (data + ETH_HLEN > end)  // parse_frame checked it; the verifier wants it on this pointer
		return XDP_PASS;
	if (!frame_is_mine(data, cfg)) {
		__u32 n = vip->counter;
		struct vip_stats *nst = bpf_map_lookup_elem(&sluice_stats, &n);
		if (nst)
			nst->drop_not_mine++;
		return XDP_DROP;
	}
	if (p.echo) {
		__u32 n = vip->counter;
		struct vip_stats *est = bpf_map_lookup_elem(&sluice_stats, &n);
		int verdict = echo_reply(ctx, &p);
		if (est && verdict == XDP_TX) {
			est->packets++;
			est->bytes += end - data;
		}
		return verdict;
	}

	// dp_hash mode: OVS's select group (selection_method=dp_hash, basis 0) runs the hash action, which in the
	// userspace datapath is hash_int(the packet's RSS hash, basis), and the RSS hash of a packet from a device
	// without one (veth, tap, AF_PACKET) is miniflow_hash_5tuple(packet, 0): the hash that also picks the outer
	// UDP source port below.
	__u32 h5 = hash_5tuple(&p.t);
	__u32 h = cfg->hash_mode == HASH_DP ? hash_int(h5, 0) : hash_symmetric_l3l4_udp(&p.t);
	__u32 slot = h & ((1u << (vip->bits & 31)) - 1);
	struct slot_key sk = {.copy = copy, .lb = vip->lb, .slot = slot};
	struct slot_value *s = bpf_map_lookup_elem(&sluice_slots, &sk);
	__u32 counter = vip->counter;
	if (!s) {
		count_drop_no_slot(counter);
		return XDP_DROP;
	}
	__u16 sport = (((__u64)h5 * (TNL_PORT_MAX - TNL_PORT_MIN)) >> 32) + TNL_PORT_MIN;
	__u32 inner_len = end - data;
	struct vip_stats *st = bpf_map_lookup_elem(&sluice_stats, &counter);
	if (encapsulate(ctx, cfg, s, p.ecn, sport)) {
		if (st)
			st->drop_no_room++;
		return XDP_DROP;
	}
	if (st) {
		st->packets++;
		st->bytes += inner_len;
	}
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
