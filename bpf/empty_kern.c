/* SPDX-License-Identifier: GPL-2.0 */
/*
 * empty_kern.c - the empty programs every benchmark ratio is measured
 * against: an XDP program that passes every frame, and a TC program that
 * hands every frame on (TC_ACT_UNSPEC), doing nothing else. BCC loads one
 * function at a time; each is compiled and loaded alone.
 *
 * May include: BCC's virtual headers, linux UAPI headers.
 */
#include <uapi/linux/bpf.h>

int xdpctl_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* For the egress program (egress_kern.c): -1 is TC_ACT_UNSPEC, as it returns. */
int xdpctl_empty_tc(struct __sk_buff *skb)
{
	return -1;
}
