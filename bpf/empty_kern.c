/* SPDX-License-Identifier: GPL-2.0 */
/*
 * empty_kern.c - the empty XDP program: the baseline every benchmark ratio
 * is measured against. It passes every frame and does nothing else.
 *
 * May include: BCC's virtual headers, linux UAPI headers.
 */
#include <uapi/linux/bpf.h>

int xdpctl_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}
