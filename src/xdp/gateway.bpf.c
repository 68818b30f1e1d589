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
// A VIP:port packet whose slot has no primary is dropped (the OVS gateway's catch-all drop). An ICMP or ICMPv6 echo
// request to a VIP address is answered in place (XDP_TX), as the OVS gateway's echo flow does. Everything else
// (other addresses, ports, protocols, ICMP errors, fragments, malformed headers) is XDP_PASS, untouched.
// Map layouts are mirrored by src/xdp/maps.ts; design and limits in docs/design/xdp.md.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define COPIES 2
#define MAX_VIPS 1024
#define MAX_SLOT_ENTRIES 262144
#define GENEVE_PORT 6081
#define ETH_P_TEB 0x6558
// OVS's netdev-native-tnl.c: tunnel UDP source ports span [32768, 61000).
#define TNL_PORT_MIN 32768
#define TNL_PORT_MAX 61000
#define OPT_CLASS 0xffff
#define OPT_LB_SLOT 0x80
#define OPT_MEMBER_FLAGS 0x81
#define OPT_SECOND_HOST 0x82
#define PROTO_ICMPV6 58

// Outer headers: Ethernet 14 + IPv4 20 + UDP 8 + Geneve 8 + three options of 8.
#define OUTER_LEN (14 + 20 + 8 + 8 + 24)

/** Per copy: who this gateway is on the underlay. */
struct gw_config {
	__u32 src_ip;     // tunnel source IPv4, network order
	__u8 src_mac[6];  // MAC of the uplink (OVS: br-phy's MAC)
	__u8 ttl;         // outer TTL (OVS default 64)
	__u8 hash_mode;   // HASH_FIELDS or HASH_DP
};

#define HASH_FIELDS 0
#define HASH_DP 1

struct vip_key {
	__u32 copy;
	__u8 family;      // 4 or 6
	__u8 proto;       // IPPROTO_TCP or IPPROTO_UDP; ICMP (4) or ICMPv6 (6) with port 0: the VIP address's echo
	__u16 port;       // network order
	__u8 addr[16];    // IPv4: first 4 bytes, rest zero
};

struct vip_value {
	__u32 lb;         // load balancer id (the Geneve option's high 16 bits)
	__u32 bits;       // the slot table has 2^bits slots
	__u32 counter;    // index into sluice_stats
};

struct slot_key {
	__u32 copy;
	__u32 lb;
	__u32 slot;
};

struct slot_value {
	__u32 dst_ip;     // primary's host tunnel IPv4, network order
	__u32 opt[3];     // TUN_LB_SLOT, TUN_MEMBER_FLAGS, TUN_SECOND_HOST, host order
	__u8 dst_mac[6];  // next hop MAC for dst_ip (OVS: its tunnel neighbour table)
	__u16 pad;
};

/** Per VIP:port counters (per CPU). */
struct vip_stats {
	__u64 packets;    // encapsulated and transmitted
	__u64 bytes;      // of those, inner frame bytes
	__u64 drop_no_slot;
	__u64 drop_no_room;
};

// One BTF-defined map (libbpf's `.maps` section).
#define SLUICE_MAP(name, map_type, entries, key_type, value_type, flags) \
	struct {                                                          \
		__uint(type, map_type);                                   \
		__uint(max_entries, entries);                             \
		__uint(map_flags, flags);                                 \
		__type(key, key_type);                                    \
		__type(value, value_type);                                \
	} name SEC(".maps")

SLUICE_MAP(sluice_active, BPF_MAP_TYPE_ARRAY, 1, __u32, __u32, 0);
SLUICE_MAP(sluice_config, BPF_MAP_TYPE_ARRAY, COPIES, __u32, struct gw_config, 0);
SLUICE_MAP(sluice_vips, BPF_MAP_TYPE_HASH, COPIES * MAX_VIPS, struct vip_key, struct vip_value, 0);
SLUICE_MAP(sluice_slots, BPF_MAP_TYPE_HASH, MAX_SLOT_ENTRIES, struct slot_key, struct slot_value, BPF_F_NO_PREALLOC);
SLUICE_MAP(sluice_stats, BPF_MAP_TYPE_PERCPU_ARRAY, MAX_VIPS, __u32, struct vip_stats, 0);

// ---- OVS's hash (lib/hash.h without SSE4.2; src/hashing/ovs.ts is the same in TypeScript) ----

static __always_inline __u32 rotl32(__u32 x, int k)
{
	return (x << k) | (x >> (32 - k));
}

static __always_inline __u32 hash_add(__u32 hash, __u32 data)
{
	data *= 0xcc9e2d51;
	data = rotl32(data, 15);
	data *= 0x1b873593;
	hash ^= data;
	hash = rotl32(hash, 13);
	return hash * 5 + 0xe6546b64;
}

static __always_inline __u32 hash_finish(__u32 hash, __u32 final)
{
	hash ^= final;
	hash ^= hash >> 16;
	hash *= 0x85ebca6b;
	hash ^= hash >> 13;
	hash *= 0xc2b2ae35;
	hash ^= hash >> 16;
	return hash;
}

/** lib/hash.h hash_int(x, basis) = hash_2words(x, basis). */
static __always_inline __u32 hash_int(__u32 x, __u32 basis)
{
	return hash_finish(hash_add(hash_add(x, 0), basis), 8);
}

/** What the hashes read from a packet: address words and ports exactly as a little-endian CPU loads them. */
struct tuple {
	__u32 src[4];
	__u32 dst[4];
	__u32 ports;      // the 4 bytes at the start of the L4 header (source port, destination port)
	__u8 words;       // 1 (IPv4) or 4 (IPv6)
	__u8 proto;
};

/** lib/flow.c flow_hash_symmetric_l3l4(flow, 0, inc_udp_ports = true): sluice's `fields` mode. */
static __always_inline __u32 hash_symmetric_l3l4_udp(const struct tuple *t)
{
	__u32 h = 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i < t->words)
			h = hash_add(h, t->src[i] ^ t->dst[i]);
	h = hash_add(h, t->proto);
	h = hash_add(h, (__u16)(t->ports ^ (t->ports >> 16)));
	return hash_finish(h, 0);
}

/** lib/flow.c miniflow_hash_5tuple(flow, 0): the userspace datapath's packet hash, which picks the tunnel's UDP
 *  source port. */
static __always_inline __u32 hash_5tuple(const struct tuple *t)
{
	__u32 h = 0;
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i < t->words)
			h = hash_add(h, t->src[i]);
#pragma unroll
	for (int i = 0; i < 4; i++)
		if (i < t->words)
			h = hash_add(h, t->dst[i]);
	h = hash_add(h, t->proto);
	h = hash_add(h, t->ports);
	return hash_finish(h, 42);
}

// ---- parsing ----

struct parsed {
	struct tuple t;
	struct vip_key key;
	__u8 ecn;         // inner ECN bits
	__u8 echo;        // an ICMP(v6) echo request: key.port is 0
	__u16 l4_off;     // the L4 header's offset from the IP header
};

/** L4 of a TCP or UDP packet: OVS reads the ports only from a complete header (TCP: data offset >= 5 and the
 *  whole header present). `len` is the L4 length the IP header claims. */
static __always_inline int parse_l4(void *l4, void *end, __u32 len, struct parsed *p)
{
	if (p->t.proto == IPPROTO_TCP) {
		__u8 *tcp = l4;
		if (len < 20 || l4 + 20 > end)
			return -1;
		__u32 hlen = (tcp[12] >> 4) * 4;
		if (hlen < 20 || hlen > len)
			return -1;
	} else if (p->t.proto == IPPROTO_UDP) {
		if (len < 8 || l4 + 8 > end)
			return -1;
	} else if (p->t.proto == (p->key.family == 4 ? IPPROTO_ICMP : PROTO_ICMPV6)) {
		// OVS reads ICMP's type from a complete 8-byte header; only echo requests are ours.
		__u8 *icmp = l4;
		if (len < 8 || l4 + 8 > end || icmp[0] != (p->key.family == 4 ? 8 : 128))
			return -1;
		p->echo = 1;
		p->key.port = 0;
		return 0;
	} else {
		return -1;
	}
	p->t.ports = *(__u32 *)l4;
	p->key.port = (__u16)(p->t.ports >> 16);
	return 0;
}

/** IPv4, checked as OVS's ipv4_sanity_check; options skipped. Fragments: -1 (OVS's `normal` fragment handling
 *  looks every fragment up with ports 0, so none matches a VIP:port flow). */
static __always_inline int parse_ipv4(void *nh, void *end, struct parsed *p)
{
	__u8 *ip = nh;
	if (nh + 20 > end)
		return -1;
	__u32 ihl = (ip[0] & 0xf) * 4;
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	if ((ip[0] >> 4) != 4 || ihl < 20 || nh + ihl > end || tot < ihl || nh + tot > end)
		return -1;
	if ((ip[6] & 0x3f) | ip[7])  // MF flag or an offset
		return -1;
	p->t.words = 1;
	p->t.proto = ip[9];
	p->ecn = ip[1] & 3;
	p->t.src[0] = *(__u32 *)(ip + 12);
	p->t.dst[0] = *(__u32 *)(ip + 16);
	p->key.family = 4;
	__builtin_memcpy(p->key.addr, ip + 16, 4);
	if (ihl > 60)
		return -1;
	p->l4_off = ihl;  // from the IP header; the caller adds the Ethernet header
	return parse_l4(nh + ihl, end, tot - ihl, p);
}

/** IPv6: up to five hop-by-hop, routing or destination options headers are skipped, as OVS does; a fragment
 *  header: -1 (as IPv4 fragments). */
static __always_inline int parse_ipv6(void *nh, void *end, struct parsed *p)
{
	__u8 *ip = nh;
	if (nh + 40 > end)
		return -1;
	if ((ip[0] >> 4) != 6)
		return -1;
	__u32 len = ((__u32)ip[4] << 8) | ip[5];
	if (nh + 40 + len > end)
		return -1;
	p->t.words = 4;
	p->ecn = (ip[1] >> 4) & 3;
	__builtin_memcpy(p->t.src, ip + 8, 16);
	__builtin_memcpy(p->t.dst, ip + 24, 16);
	p->key.family = 6;
	__builtin_memcpy(p->key.addr, ip + 24, 16);
	__u8 next = ip[6];
	void *l4 = nh + 40;
#pragma unroll
	for (int i = 0; i < 5; i++) {
		__u8 *ext = l4;
		if (next == 0 || next == 43 || next == 60) {
			if (l4 + 8 > end)
				return -1;
			__u32 ext_len = ((__u32)ext[1] + 1) * 8;
			next = ext[0];
			l4 += ext_len;
			if (ext_len > len)
				return -1;
			len -= ext_len;
		} else {
			break;
		}
	}
	p->t.proto = next;
	p->l4_off = l4 - nh;
	return parse_l4(l4, end, len, p);
}

// ---- encapsulation ----

static __always_inline __u16 ipv4_checksum(__u16 *hdr)
{
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += hdr[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

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
	// Ethernet
	__builtin_memcpy(d, s->dst_mac, 6);
	__builtin_memcpy(d + 6, cfg->src_mac, 6);
	d[12] = 0x08;
	d[13] = 0x00;
	// IPv4: OVS's netdev_tnl_ip_build_header: id 0, DF, ECN inherited (CE becomes ECT(0)), no options
	__u8 *ip = d + 14;
	__u16 ip_len = inner_len + OUTER_LEN - 14;
	ip[0] = 0x45;
	ip[1] = ecn == 3 ? 2 : ecn;
	*(__u16 *)(ip + 2) = bpf_htons(ip_len);
	*(__u16 *)(ip + 4) = 0;
	*(__u16 *)(ip + 6) = bpf_htons(0x4000);
	ip[8] = cfg->ttl;
	ip[9] = IPPROTO_UDP;
	*(__u16 *)(ip + 10) = 0;
	*(__u32 *)(ip + 12) = cfg->src_ip;
	*(__u32 *)(ip + 16) = s->dst_ip;
	*(__u16 *)(ip + 10) = ipv4_checksum((__u16 *)ip);
	// UDP, no checksum (the OVS gateway's geneve0 has csum=false)
	__u8 *udp = ip + 20;
	*(__u16 *)udp = bpf_htons(sport);
	*(__u16 *)(udp + 2) = bpf_htons(GENEVE_PORT);
	*(__u16 *)(udp + 4) = bpf_htons(ip_len - 20);
	*(__u16 *)(udp + 6) = 0;
	// Geneve: version 0, 6 words of options, critical options present, Ethernet payload, VNI 0
	__u8 *gnv = udp + 8;
	gnv[0] = 6;
	gnv[1] = 0x40;
	*(__u16 *)(gnv + 2) = bpf_htons(ETH_P_TEB);
	*(__u32 *)(gnv + 4) = 0;
	__u8 *opt = gnv + 8;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		*(__u16 *)(opt + 8 * i) = bpf_htons(OPT_CLASS);
		opt[8 * i + 2] = OPT_LB_SLOT + i;
		opt[8 * i + 3] = 1;
		*(__u32 *)(opt + 8 * i + 4) = bpf_htonl(s->opt[i]);
	}
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

SEC("xdp")
int sluice_gateway(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *eth = data;
	if (data + 14 > end)
		return XDP_PASS;
	__u16 type = ((__u16)eth[12] << 8) | eth[13];
	struct parsed p = {};
	int rc;
	if (type == ETH_P_IP)
		rc = parse_ipv4(data + 14, end, &p);
	else if (type == ETH_P_IPV6)
		rc = parse_ipv6(data + 14, end, &p);
	else
		return XDP_PASS;
	if (rc)
		return XDP_PASS;

	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(&sluice_active, &zero);
	if (!active)
		return XDP_PASS;
	__u32 copy = *active & 1;  // read once: the whole packet sees one generation
	p.key.copy = copy;
	p.key.proto = p.t.proto;
	struct vip_value *vip = bpf_map_lookup_elem(&sluice_vips, &p.key);
	if (!vip)
		return XDP_PASS;
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
	struct gw_config *cfg = bpf_map_lookup_elem(&sluice_config, &copy);
	if (!cfg)
		return XDP_PASS;

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
