/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xdpctl_kern.c - the XDP program xdpctl attaches to an interface.
 *
 * Classifies every frame (parse_kern.h), decides pass or drop, and counts
 * packets and bytes for each (class, verdict) in a per-CPU array.
 *
 * Variants are chosen with -D flags (xdpctl/program.py builds them); every
 * variant is valid C, and `xdpctl attach --ebpf` prints the one compiled:
 *   XDPCTL_PIN_DIR="/sys/fs/bpf/..."  pin the maps there (reusing maps that
 *                                     are already pinned); unset: unpinned
 *   XDPCTL_DROP_NON_IP               drop frames that are neither IPv4 nor IPv6
 *
 * BCC rewrites map calls only in this file, so every map and every function
 * that touches one lives here; map-free logic lives in the *_kern.h headers.
 *
 * May include: BCC's virtual headers, linux UAPI headers, *_kern.h.
 */
#include <uapi/linux/bpf.h>
#include "xdpctl_kern_user.h"
#include "parse_kern.h"

#ifdef XDPCTL_PIN_DIR
#define XDPCTL_MAP(type, key, val, name, max, pin) \
	BPF_TABLE_PINNED(type, key, val, name, max, XDPCTL_PIN_DIR "/" pin)
#else
#define XDPCTL_MAP(type, key, val, name, max, pin) \
	BPF_TABLE(type, key, val, name, max)
#endif /* XDPCTL_PIN_DIR */

XDPCTL_MAP("percpu_array", __u32, struct xdpctl_counter, xdpctl_counters,
	   XDPCTL_COUNTERS_MAX, XDPCTL_PIN_COUNTERS);
/* Written by user space only; see struct xdpctl_meta. */
XDPCTL_MAP("array", __u32, struct xdpctl_meta, xdpctl_meta, 1, XDPCTL_PIN_META);

static __always_inline void xdpctl_count(__u32 class, __u32 verdict, __u64 bytes)
{
	__u32 key = XDPCTL_COUNTER_KEY(class, verdict);
	struct xdpctl_counter *c = xdpctl_counters.lookup(&key);

	/* Never NULL (key < XDPCTL_COUNTERS_MAX), but the verifier needs the check. */
	if (!c)
		return;
	/* Per-CPU slot: no other CPU writes it, so no atomics are needed. */
	c->packets++;
	c->bytes += bytes;
}

#ifdef XDPCTL_DROP_NON_IP
static __always_inline int xdpctl_drop_non_ip(const struct xdpctl_pkt *pkt)
{
	return !pkt->is_ip;
}
#else
static __always_inline int xdpctl_drop_non_ip(const struct xdpctl_pkt *pkt)
{
	return 0;
}
#endif /* XDPCTL_DROP_NON_IP */

int xdpctl_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdpctl_pkt pkt = {};
	__u32 verdict = XDPCTL_VERDICT_PASS;

	xdpctl_parse(&pkt, data, data_end);
	if (xdpctl_drop_non_ip(&pkt))
		verdict = XDPCTL_VERDICT_DROP;
	xdpctl_count(pkt.class, verdict, data_end - data);
	return verdict == XDPCTL_VERDICT_DROP ? XDP_DROP : XDP_PASS;
}
