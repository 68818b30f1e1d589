// SPDX-License-Identifier: Apache-2.0
// What sluice's BPF programs share: the maps' key and value layouts (mirrored by src/compile/xdp.ts), OVS's hashes
// and the packet parsing that decides what the OVS gateway matches. Included by gateway.bpf.c (XDP) and icmp.bpf.c
// (tc). Design: docs/design/xdp.md.

#ifndef SLUICE_BPF_H
#define SLUICE_BPF_H

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
	__u64 drop_not_mine;  // VIP frames addressed to another MAC (a switch's flood): not this gateway's to forward
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
	__u8 icmp_error;  // an ICMP(v6) error (is_icmp_error): key.port is 0, t.ports holds type and code as OVS's
	__u16 l4_off;     // the L4 header's offset from the IP header
};

/** The ICMP errors the OVS gateway copies to a VIP's hosts (src/compile/icmp.ts ICMP_ERROR_TYPES): IPv4
 *  destination unreachable (3) and time exceeded (11); ICMPv6 destination unreachable (1), packet too big (2) and
 *  time exceeded (3). */
static __always_inline int is_icmp_error(__u8 family, __u8 type)
{
	return family == 4 ? type == 3 || type == 11 : type >= 1 && type <= 3;
}

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
		// OVS reads ICMP's type from a complete 8-byte header; echo requests and errors are ours.
		__u8 *icmp = l4;
		if (len < 8 || l4 + 8 > end)
			return -1;
		p->key.port = 0;
		if (icmp[0] == (p->key.family == 4 ? 8 : 128)) {
			p->echo = 1;
			return 0;
		}
		if (!is_icmp_error(p->key.family, icmp[0]))
			return -1;
		// OVS's flow has tp_src = htons(type), tp_dst = htons(code): the bytes 0, type, 0, code.
		p->icmp_error = 1;
		p->t.ports = ((__u32)icmp[0] << 8) | ((__u32)icmp[1] << 24);
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

// The copy in force and the gateway's config: every program of a gateway shares these two (the tc program is loaded
// with the XDP program's, by id), so one flip of `sluice_active` switches them all.
SLUICE_MAP(sluice_active, BPF_MAP_TYPE_ARRAY, 1, __u32, __u32, 0);
SLUICE_MAP(sluice_config, BPF_MAP_TYPE_ARRAY, COPIES, __u32, struct gw_config, 0);

/** The copy in force (0 or 1), read once so that a whole packet sees one generation; -1 without the map. */
static __always_inline int copy_in_force(void)
{
	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(&sluice_active, &zero);
	return active ? (int)(*active & 1) : -1;
}

/** An Ethernet frame from `data` to `end`: its IPv4 or IPv6 packet parsed into `p`; -1 when it is neither or is one
 *  the OVS gateway matches no flow with (a fragment, a short or malformed header, another L4). */
static __always_inline int parse_frame(void *data, void *end, struct parsed *p)
{
	__u8 *eth = data;
	if (data + 14 > end)
		return -1;
	__u16 type = ((__u16)eth[12] << 8) | eth[13];
	if (type == ETH_P_IP)
		return parse_ipv4(data + 14, end, p);
	if (type == ETH_P_IPV6)
		return parse_ipv6(data + 14, end, p);
	return -1;
}

/** OVS's userspace tunnel push (lib/netdev-native-tnl.c) of an `inner_len`-byte frame to `dst_ip`: the `outer_len`
 *  bytes in front of it at `d`. Ethernet from the gateway's MAC to `dst_mac`; IPv4 id 0, DF, TTL from the config,
 *  ECN inherited (CE sent as ECT(0)), no options; UDP to 6081 without checksum (the OVS gateway's geneve0 has
 *  csum=false); Geneve version 0 with (outer_len - 50) / 4 words of options and the critical bit (sluice's option
 *  types have it), Ethernet payload, VNI 0. The options are the caller's (geneve_option). */
static __always_inline void tunnel_push(__u8 *d, const struct gw_config *cfg, const __u8 *dst_mac, __u32 dst_ip,
					__u32 outer_len, __u32 inner_len, __u8 ecn, __u16 sport)
{
	__builtin_memcpy(d, dst_mac, 6);
	__builtin_memcpy(d + 6, cfg->src_mac, 6);
	d[12] = 0x08;
	d[13] = 0x00;
	__u8 *ip = d + 14;
	__u16 ip_len = inner_len + outer_len - 14;
	ip[0] = 0x45;
	ip[1] = ecn == 3 ? 2 : ecn;
	*(__u16 *)(ip + 2) = bpf_htons(ip_len);
	*(__u16 *)(ip + 4) = 0;
	*(__u16 *)(ip + 6) = bpf_htons(0x4000);
	ip[8] = cfg->ttl;
	ip[9] = IPPROTO_UDP;
	*(__u16 *)(ip + 10) = 0;
	*(__u32 *)(ip + 12) = cfg->src_ip;
	*(__u32 *)(ip + 16) = dst_ip;
	*(__u16 *)(ip + 10) = ipv4_checksum((__u16 *)ip);
	__u8 *udp = ip + 20;
	*(__u16 *)udp = bpf_htons(sport);
	*(__u16 *)(udp + 2) = bpf_htons(GENEVE_PORT);
	*(__u16 *)(udp + 4) = bpf_htons(ip_len - 20);
	*(__u16 *)(udp + 6) = 0;
	__u8 *gnv = udp + 8;
	gnv[0] = (outer_len - 50) / 4;
	gnv[1] = 0x40;
	*(__u16 *)(gnv + 2) = bpf_htons(ETH_P_TEB);
	*(__u32 *)(gnv + 4) = 0;
}

/** One sluice Geneve option at `opt`: class 0xffff, `type`, 4 bytes of `value`. */
static __always_inline void geneve_option(__u8 *opt, __u8 type, __u32 value)
{
	*(__u16 *)opt = bpf_htons(OPT_CLASS);
	opt[2] = type;
	opt[3] = 1;
	*(__u32 *)(opt + 4) = bpf_htonl(value);
}

#endif
