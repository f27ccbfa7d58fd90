/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ban_kern.h - the ban list's key: a frame's source address. Map-free; the
 * main file looks the bans up (before any rule) and adds them (--block).
 *
 * Compiled only with -D XDPCTL_BANS (a rule with --block).
 *
 * May include: linux UAPI headers, xdpctl_kern_user.h, parse_kern.h.
 */
#ifndef XDPCTL_BAN_KERN_H
#define XDPCTL_BAN_KERN_H

#include "xdpctl_kern_user.h"
#include "parse_kern.h"

/* The ban key of a frame's source; 0 when the frame has no IP header. */
static __always_inline int xdpctl_ban_key_of(struct xdpctl_ban_key *k, const struct xdpctl_pkt *pkt,
					     const __u8 *l3)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (!l3)
		return 0;
	k->family = pkt->ipv;
	/* Bounds: xdpctl_l3 checked the family's fixed header (20 or 40 bytes). */
	if (pkt->ipv == 4)
		__builtin_memcpy(k->addr, l3 + 12, 4);
	else
		__builtin_memcpy(k->addr, l3 + 8, 16);
	return 1;
}

#endif /* XDPCTL_BAN_KERN_H */
