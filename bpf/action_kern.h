/* SPDX-License-Identifier: GPL-2.0 */
/*
 * action_kern.h - the actions beyond pass and drop: redirect out of other
 * interfaces (a devmap, with a flow hash to spread over several), redirect
 * to another CPU (a cpumap), and tx (back out, MACs swapped); and the count
 * of every XDP verdict a frame ends with.
 *
 * Each action is compiled in only when a rule uses it (-D flags from
 * xdpctl/datapath/layout.py):
 *   XDPCTL_REDIRECT_DEV   redirect --to: the devmap and the flow hash
 *   XDPCTL_REDIRECT_CPU   redirect --cpu: the cpumap
 *   XDPCTL_TX             tx: the MAC swap
 * With none of them XDPCTL_ACTIONS stays undefined, the macros below are the
 * pass/drop program's own expressions, and xdpctl_kern.c keeps its
 * branch-free pass/drop return: a program whose rules use no other action
 * is the program it was before they existed.
 *
 * The maps and the helper calls on them live in xdpctl_kern.c (BCC rewrites
 * map calls only there); this header holds what needs no map.
 *
 * May include: linux UAPI headers, xdpctl_kern_user.h, parse_kern.h.
 */
#ifndef XDPCTL_ACTION_KERN_H
#define XDPCTL_ACTION_KERN_H

#include <linux/ip.h>
#include "xdpctl_kern_user.h"
#include "parse_kern.h"

#if defined(XDPCTL_REDIRECT_DEV) || defined(XDPCTL_REDIRECT_CPU) || defined(XDPCTL_TX)
#define XDPCTL_ACTIONS
#endif

/* What the deciding rule says beyond its action (struct xdpctl_decision),
 * and the generation it was decided in (each has its own devmap entries). */
struct xdpctl_steer {
	__u32 targets;
	__u32 target;
	__u32 gen;
};

#ifdef XDPCTL_ACTIONS

/* The rule's action (0..4), its steering kept for xdpctl_act. */
static __always_inline __u32 xdpctl_take_action(const struct xdpctl_decision *win, __u32 gen,
						struct xdpctl_steer *st)
{
	st->targets = win->targets;
	st->target = win->target;
	st->gen = gen;
	return win->action;
}

/* The counters' index of a verdict: anything past the last is aborted (the
 * bound also tells the verifier the index fits the array). */
#define XDPCTL_VERDICT_INDEX(v) ((v) < XDPCTL_VERDICT_MAX ? (v) : XDPCTL_VERDICT_ABORTED)

/*
 * The verdict an XDP return code is counted under, from a table of 4-bit
 * fields indexed by the code: ABORTED(0) aborted, DROP(1) drop, PASS(2)
 * pass, TX(3) tx, REDIRECT(4) redirect, and 5-7 (never returned) aborted.
 */
#define XDPCTL_VERDICT_OF_XDP                                                           \
	((XDPCTL_VERDICT_ABORTED << 0) | (XDPCTL_VERDICT_DROP << 4) | (XDPCTL_VERDICT_PASS << 8) | \
	 (XDPCTL_VERDICT_TX << 12) | (XDPCTL_VERDICT_REDIRECT << 16) |                   \
	 (XDPCTL_VERDICT_ABORTED << 20) | (XDPCTL_VERDICT_ABORTED << 24) | (XDPCTL_VERDICT_ABORTED << 28))

_Static_assert(XDP_ABORTED == 0 && XDP_DROP == 1 && XDP_PASS == 2 && XDP_TX == 3 && XDP_REDIRECT == 4,
	       "the XDP return codes the table above is indexed by");

static __always_inline __u32 xdpctl_verdict_of(long xdp)
{
	return (XDPCTL_VERDICT_OF_XDP >> (((__u32)xdp & 7) * 4)) & 7;
}

#else /* !XDPCTL_ACTIONS */

/* pass or drop: the low bit, as the program has always read it. */
#define xdpctl_take_action(win, gen, st) ((win)->action & 1)
#define XDPCTL_VERDICT_INDEX(v) ((v) & 1)

#endif /* XDPCTL_ACTIONS */

#ifdef XDPCTL_REDIRECT_DEV
/*
 * The flow hash that picks one of a rule's targets: a 32-bit MurmurHash3
 * (x86_32, seed 0) over the frame's addresses, then its protocol and ports,
 * as 32-bit words loaded from the frame (so in the machine's byte order;
 * xdpctl/datapath/flow_hash.py computes the same, and the tests check it).
 * Every frame of a flow has the same words, so it leaves by one target.
 *
 * Ports are hashed only when every frame of the datagram has them: TCP and
 * UDP, not an IPv4 fragment (first or later), and IPv6 only without
 * extension headers (a fragment header among them); the others are hashed
 * by their addresses alone, so the fragments of one datagram stay together.
 * Frames without addresses (ARP, headers cut short) all hash alike.
 */
#define XDPCTL_MM_C1 0xcc9e2d51U
#define XDPCTL_MM_C2 0x1b873593U

static __always_inline __u32 xdpctl_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 xdpctl_mm_mix(__u32 h, __u32 k)
{
	k *= XDPCTL_MM_C1;
	k = xdpctl_rotl32(k, 15);
	k *= XDPCTL_MM_C2;
	h ^= k;
	h = xdpctl_rotl32(h, 13);
	return h * 5 + 0xe6546b64U;
}

static __always_inline __u32 xdpctl_mm_final(__u32 h, __u32 nwords)
{
	h ^= nwords * 4;  /* the length in bytes */
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 xdpctl_flow_hash(const struct xdpctl_pkt *pkt, void *data, void *data_end)
{
	const __u8 *l3 = data + (pkt->l3_off & 0x3f);  /* at most 14 + two tags */
	__u32 h = 0, n = 0;
	int i;

	if (pkt->ipv == 4) {
		const struct iphdr *iph = (const void *)l3;

		/* Bounds: the fixed header (the parser checked it; the verifier needs it here). */
		if ((void *)(iph + 1) > data_end)
			return 0;
		h = xdpctl_mm_mix(h, iph->saddr);
		h = xdpctl_mm_mix(h, iph->daddr);
		n = 2;
		if (pkt->has_ports && !(iph->frag_off & __constant_htons(XDPCTL_IP_MF | XDPCTL_IP_OFFSET))) {
			h = xdpctl_mm_mix(h, pkt->l4proto);
			h = xdpctl_mm_mix(h, ((__u32)pkt->sport << 16) | pkt->dport);
			n = 4;
		}
	} else if (pkt->ipv == 6) {
		const __u32 *addrs = (const void *)(l3 + 8);

		/* Bounds: the fixed 40-byte header, both addresses in it. */
		if ((void *)(l3 + 40) > data_end)
			return 0;
#pragma unroll
		for (i = 0; i < 8; i++)
			h = xdpctl_mm_mix(h, addrs[i]);
		n = 8;
		if (pkt->has_ports && pkt->l4_off == pkt->l3_off + 40) {
			h = xdpctl_mm_mix(h, pkt->l4proto);
			h = xdpctl_mm_mix(h, ((__u32)pkt->sport << 16) | pkt->dport);
			n = 10;
		}
	}
	return xdpctl_mm_final(h, n);
}

/* The devmap entry a redirect --to frame leaves by: the generation's part of
 * the devmap, the rule's first target, and with several targets the flow
 * hash scaled to their number (a multiply, not a modulo). */
static __always_inline __u32 xdpctl_devmap_key(const struct xdpctl_pkt *pkt, const struct xdpctl_steer *st,
					       void *data, void *data_end)
{
	__u32 pick = 0;

	if (st->targets > 1)
		pick = ((__u64)xdpctl_flow_hash(pkt, data, data_end) * st->targets) >> 32;
	return (st->gen & 1) * XDPCTL_DEVMAP_GEN + st->target + pick;
}
#endif /* XDPCTL_REDIRECT_DEV */

#ifdef XDPCTL_TX
/* Swap the Ethernet source and destination, as testpmd's macswap does, and
 * send the frame back out (XDP_TX). */
static __always_inline int xdpctl_macswap(void *data, void *data_end)
{
	__u16 *mac = data;
	__u16 a, b, c;

	/* Bounds: both MACs (rules decide only frames of 14 bytes or more). */
	if (data + 12 > data_end)
		return XDP_ABORTED;
	a = mac[0];
	b = mac[1];
	c = mac[2];
	mac[0] = mac[3];
	mac[1] = mac[4];
	mac[2] = mac[5];
	mac[3] = a;
	mac[4] = b;
	mac[5] = c;
	return XDP_TX;
}
#endif /* XDPCTL_TX */

#endif /* XDPCTL_ACTION_KERN_H */
