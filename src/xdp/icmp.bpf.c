// SPDX-License-Identifier: Apache-2.0
// sluice's ICMP error path for XDP gateways, a tc (cls_bpf, direct action) program on the uplink's ingress: the OVS
// gateway's GW_ICMP flows (src/compile/icmp.ts) for frames gateway.bpf.c passes to the kernel. XDP returns one
// verdict per frame and cannot copy it; tc can (bpf_clone_redirect).
//
//   ICMP error to a VIP (IPv4 type 3 or 11, ICMPv6 type 1, 2 or 3; not a fragment; parsed as gateway.bpf.c parses)
//   -> one token from the gateway's meter (one bucket for every VIP: `rate` a second, `burst` deep, starting full;
//      no token: dropped and counted)
//   -> for each host of the VIP's members: Ethernet/IPv4/UDP 6081/Geneve with the one option OVS's flow sets
//      (TUN_LB_SLOT = lb id << 16), exactly as OVS's userspace tunnel push builds them, sent out of the uplink
//   -> the original is dropped.
// Everything else: TC_ACT_OK, untouched. The program shares `sluice_active` and `sluice_config` with the XDP program
// (reused by id when it is loaded), so one index flip switches both. Design: docs/design/xdp.md.

#include <linux/pkt_cls.h>
#include "sluice.h"

#define MAX_ICMP_HOSTS 64
// Outer headers: Ethernet 14 + IPv4 20 + UDP 8 + Geneve 8 + one option of 8.
#define ICMP_OUTER_LEN (14 + 20 + 8 + 8 + 8)


struct icmp_vip_key {
	__u32 copy;
	__u8 family;      // 4 or 6
	__u8 pad[3];
	__u8 addr[16];    // IPv4: first 4 bytes, rest zero
};

struct icmp_host {
	__u32 ip;         // host tunnel IPv4, network order
	__u8 mac[6];      // its next hop MAC
	__u16 pad;
};

struct icmp_vip_value {
	__u32 lb;         // the VIP's first load balancer (by name): TUN_LB_SLOT = lb << 16
	__u32 hosts;      // entries used in `host`
	struct icmp_host host[MAX_ICMP_HOSTS];
};

/** Per copy: the meter (0 = none: every error is copied). */
struct icmp_meter_conf {
	__u32 rate;       // errors per second
	__u32 burst;      // errors
};

/** The bucket, one per gateway: credit in nanoseconds of the rate (one error costs 1e9 / rate). */
struct icmp_meter {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 credit_ns;
	__u64 last_ns;    // 0: never used, the bucket starts full
};

struct icmp_stats {
	__u64 errors;     // ICMP errors to a VIP that reached the meter
	__u64 copies;     // copies sent
	__u64 dropped;    // errors dropped by the meter
	__u64 failed;     // copies the kernel refused (headroom, redirect)
};

// Map names: at most 15 characters (the kernel keeps no more, and the loader finds maps by name).
SLUICE_MAP(sluice_icmpvips, BPF_MAP_TYPE_HASH, COPIES * MAX_VIPS, struct icmp_vip_key, struct icmp_vip_value, 0);
SLUICE_MAP(sluice_icmpconf, BPF_MAP_TYPE_ARRAY, COPIES, __u32, struct icmp_meter_conf, 0);
SLUICE_MAP(sluice_icmpbkt, BPF_MAP_TYPE_ARRAY, 1, __u32, struct icmp_meter, 0);
SLUICE_MAP(sluice_icmpstat, BPF_MAP_TYPE_PERCPU_ARRAY, 1, __u32, struct icmp_stats, 0);

/** One token from the gateway's bucket (OVS's meter: pktps, burst, type=drop); 1 if the error may be copied. */
static __always_inline int meter_take(const struct icmp_meter_conf *c)
{
	if (c->rate == 0)
		return 1;
	__u32 zero = 0;
	struct icmp_meter *m = bpf_map_lookup_elem(&sluice_icmpbkt, &zero);
	if (!m)
		return 0;
	__u64 cost = 1000000000ull / c->rate;
	__u64 cap = cost * (c->burst ? c->burst : 1);
	__u64 now = bpf_ktime_get_ns();
	int ok = 0;
	bpf_spin_lock(&m->lock);
	__u64 credit = m->last_ns ? m->credit_ns + (now - m->last_ns) : cap;
	if (credit > cap)
		credit = cap;
	if (credit >= cost) {
		credit -= cost;
		ok = 1;
	}
	m->credit_ns = credit;
	m->last_ns = now;
	bpf_spin_unlock(&m->lock);
	return ok;
}

SEC("tc")
int sluice_icmp(struct __sk_buff *skb)
{
	// Headers in the linear part (an ICMP error is small; pull it all only when the head is short).
	if ((long)skb->data + 14 + 40 + 40 + 8 > (long)skb->data_end && skb->len > skb->data_end - skb->data)
		bpf_skb_pull_data(skb, 0);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct parsed p = {};
	int rc = parse_frame(data, end, &p);
	if (rc || !p.icmp_error)
		return TC_ACT_OK;

	int in_force = copy_in_force();
	if (in_force < 0)
		return TC_ACT_OK;
	__u32 copy = in_force;
	__u32 zero = 0;
	struct icmp_vip_key k = {.copy = copy, .family = p.key.family};
	__builtin_memcpy(k.addr, p.key.addr, 16);
	struct icmp_vip_value *v = bpf_map_lookup_elem(&sluice_icmpvips, &k);
	struct gw_config *cfg = bpf_map_lookup_elem(&sluice_config, &copy);
	struct icmp_meter_conf *conf = bpf_map_lookup_elem(&sluice_icmpconf, &copy);
	struct icmp_stats *st = bpf_map_lookup_elem(&sluice_icmpstat, &zero);
	if (!v || !cfg || !conf || !st)
		return TC_ACT_OK;
	st->errors++;
	if (!meter_take(conf)) {
		st->dropped++;
		return TC_ACT_SHOT;
	}
	__u32 h5 = hash_5tuple(&p.t);
	__u16 sport = (((__u64)h5 * (TNL_PORT_MAX - TNL_PORT_MIN)) >> 32) + TNL_PORT_MIN;
	// The stack wants aligned words: 2 bytes ahead of the Ethernet header put the IP header on a 4-byte boundary.
	__u8 buf[ICMP_OUTER_LEN + 6] __attribute__((aligned(8)));
	__u8 *hdr = buf + 2;
	__u32 inner_len = skb->len;
	__u32 lb = v->lb;
	if (bpf_skb_change_head(skb, ICMP_OUTER_LEN, 0)) {
		st->failed++;
		return TC_ACT_SHOT;
	}
	__u32 ifindex = skb->ifindex;
	for (__u32 i = 0; i < MAX_ICMP_HOSTS; i++) {
		if (i >= v->hosts)
			break;
		struct icmp_host *h = &v->host[i];
		tunnel_push(hdr, cfg, h->mac, h->ip, ICMP_OUTER_LEN, inner_len, p.ecn, sport);
		geneve_option(hdr + ICMP_OUTER_LEN - 8, OPT_LB_SLOT, lb << 16);
		if (bpf_skb_store_bytes(skb, 0, hdr, ICMP_OUTER_LEN, 0) || bpf_clone_redirect(skb, ifindex, 0))
			st->failed++;
		else
			st->copies++;
	}
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
