/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xdpctl_kern.c - the XDP program xdpctl attaches to an interface.
 *
 * Classifies every frame (parse_kern.h), decides pass or drop, and counts
 * packets and bytes for each class and verdict in a per-CPU array.
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

XDPCTL_MAP("percpu_array", __u32, struct xdpctl_class_counters, xdpctl_counters,
	   XDPCTL_CLASS_MAX, XDPCTL_PIN_COUNTERS);
/* Written by user space only; see struct xdpctl_meta. */
XDPCTL_MAP("array", __u32, struct xdpctl_meta, xdpctl_meta, 1, XDPCTL_PIN_META);

/* verdict is XDPCTL_VERDICT_PASS or XDPCTL_VERDICT_DROP (0 or 1). */
static __always_inline void xdpctl_count(__u32 class, __u32 verdict, __u64 bytes)
{
	struct xdpctl_class_counters *cc = xdpctl_counters.lookup(&class);
	struct xdpctl_counter *c;

	/* Never NULL (class < XDPCTL_CLASS_MAX), but the verifier needs the check. */
	if (!cc)
		return;
	c = &cc->verdict[verdict & 1];
	/* Per-CPU slot: no other CPU writes it, so no atomics are needed. */
	c->packets++;
	c->bytes += bytes;
}

/*
 * The verdicts as XDP return codes, without a branch: XDP_PASS - verdict.
 * A branch on the hot path costs more than this arithmetic (xdpctl bench).
 */
_Static_assert(XDP_PASS - XDPCTL_VERDICT_PASS == XDP_PASS &&
	       XDP_PASS - XDPCTL_VERDICT_DROP == XDP_DROP, "verdict to XDP action");

#ifdef XDPCTL_DROP_NON_IP
_Static_assert(XDPCTL_CLASS_ARP == 8 && XDPCTL_CLASS_MAX <= 16,
	       "non-IP classes are 8 and up, below 16");

static __always_inline __u32 xdpctl_drop_non_ip(const struct xdpctl_pkt *pkt)
{
	/* class >= XDPCTL_CLASS_ARP, as arithmetic: 1 for the non-IP classes. */
	return (pkt->class + 8) >> 4;
}
#else
static __always_inline __u32 xdpctl_drop_non_ip(const struct xdpctl_pkt *pkt)
{
	return XDPCTL_VERDICT_PASS;
}
#endif /* XDPCTL_DROP_NON_IP */

int xdpctl_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xdpctl_pkt pkt = {};
	__u32 verdict;

	xdpctl_parse(&pkt, data, data_end);
	verdict = xdpctl_drop_non_ip(&pkt);
	xdpctl_count(pkt.class, verdict, data_end - data);
	return XDP_PASS - verdict;
}
