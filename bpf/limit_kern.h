/* SPDX-License-Identifier: GPL-2.0 */
/*
 * limit_kern.h - rate limits (--over): a limited rule's bucket key and its
 * token bucket arithmetic. Map-free; the main file looks the buckets up.
 *
 * Semantics are nftables' `limit rate over`: a limited rule matches a frame
 * only when the frame goes over its bucket's rate. Within the rate it does
 * not match, and the rule search goes on (rules_kern.h consults at most
 * XDPCTL_LIMIT_K limited rules a frame; xdpctl refuses more on an interface).
 *
 * The bucket is integers (struct xdpctl_limit; xdpctl/rules/limits.py holds
 * the same arithmetic as the reference, and checks that no rate can overflow
 * it): one unit costs cost tokens, each nanosecond adds refill, the bucket
 * holds capacity and starts full; the time since a key's last frame is capped
 * at fill_ns. A frame within the rate takes its cost; a frame over takes
 * nothing.
 *
 * Compiled only with -D XDPCTL_LIMITS (a rule set with a limited rule).
 *
 * May include: linux UAPI headers, xdpctl_kern_user.h, parse_kern.h.
 */
#ifndef XDPCTL_LIMIT_KERN_H
#define XDPCTL_LIMIT_KERN_H

#include "xdpctl_kern_user.h"
#include "parse_kern.h"

/* Keep the first len bits of a 16-byte address, zero the rest. */
static __always_inline void xdpctl_limit_mask(__u8 *addr, __u32 len)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		int bits = (int)len - 8 * i;

		if (bits <= 0)
			addr[i] = 0;
		else if (bits < 8)
			addr[i] &= (__u8)(0xff << (8 - bits));
	}
}

/*
 * The bucket key of a frame for the rule in slot: its source address or
 * prefix (per src), its addresses, protocol and ports (per flow), or nothing
 * (per rule). A frame without an IP header (l3 NULL) shares the rule's
 * family-0 bucket.
 */
static __always_inline void xdpctl_limit_key_of(struct xdpctl_limit_key *k, __u32 slot,
						const struct xdpctl_limit *lim, const struct xdpctl_pkt *pkt,
						const __u8 *l3)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->slot = slot;
	if (lim->per == XDPCTL_PER_RULE || !l3)
		return;
	k->family = pkt->ipv;
	/* Bounds: xdpctl_l3 checked the family's fixed header (20 or 40 bytes). */
	if (pkt->ipv == 4) {
		__builtin_memcpy(k->src, l3 + 12, 4);
		if (lim->per == XDPCTL_PER_FLOW)
			__builtin_memcpy(k->dst, l3 + 16, 4);
		else
			xdpctl_limit_mask(k->src, lim->per_v4);
	} else {
		__builtin_memcpy(k->src, l3 + 8, 16);
		if (lim->per == XDPCTL_PER_FLOW)
			__builtin_memcpy(k->dst, l3 + 24, 16);
		else
			xdpctl_limit_mask(k->src, lim->per_v6);
	}
	if (lim->per == XDPCTL_PER_FLOW) {
		k->proto = pkt->l4proto;
		if (pkt->has_ports) {
			k->sport = pkt->sport;
			k->dport = pkt->dport;
		}
	}
}

/*
 * 1 when a frame of this many bytes goes over a bucket of these parameters:
 * refill it to now, then take the frame's cost if the bucket holds it (0),
 * else take nothing. Another CPU may have stamped a later time: time never
 * runs back.
 */
static __always_inline int xdpctl_tokens_over(struct xdpctl_bucket *b, __u64 refill, __u64 unit, __u64 capacity,
					      __u64 fill_ns, __u32 of_bytes, __u64 now, __u64 bytes)
{
	__u64 elapsed = now > b->last_ns ? now - b->last_ns : 0;
	__u64 cost = of_bytes ? unit * bytes : unit;
	__u64 tokens;

	if (elapsed > fill_ns)
		elapsed = fill_ns;  /* a long idle fills the bucket, and cannot overflow the product */
	tokens = b->tokens + elapsed * refill;
	if (tokens > capacity)
		tokens = capacity;
	if (now > b->last_ns)
		b->last_ns = now;
	if (tokens >= cost) {
		b->tokens = tokens - cost;
		return 0;
	}
	b->tokens = tokens;
	return 1;
}

/* The rule's own bucket (a key's). */
static __always_inline int xdpctl_bucket_over(struct xdpctl_bucket *b, const struct xdpctl_limit *lim, __u64 now,
					      __u64 bytes)
{
	return xdpctl_tokens_over(b, lim->refill, lim->cost, lim->capacity, lim->fill_ns,
				  lim->flags & XDPCTL_LIMIT_OF_BYTES, now, bytes);
}

/* The rule's ceiling bucket: what keys not in the table share. */
static __always_inline int xdpctl_ceiling_over(struct xdpctl_bucket *b, const struct xdpctl_limit *lim, __u64 now,
					       __u64 bytes)
{
	return xdpctl_tokens_over(b, lim->c_refill, lim->c_cost, lim->c_capacity, lim->c_fill_ns,
				  lim->flags & XDPCTL_LIMIT_OF_BYTES, now, bytes);
}

#endif /* XDPCTL_LIMIT_KERN_H */
