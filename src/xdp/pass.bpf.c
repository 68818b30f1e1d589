// SPDX-License-Identifier: Apache-2.0
// Passes every frame. Attached to the far end of a veth whose near end runs the gateway program: a veth delivers
// XDP_TX'd frames only to a peer that runs XDP itself (the lab's fabric side of an XDP gateway's uplink).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int sluice_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
