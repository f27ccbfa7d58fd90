/* SPDX-License-Identifier: GPL-2.0 */
/*
 * trace_kern.h - what `xdpctl trace` selects, without maps.
 *
 * Compiled in only while a trace runs (-D XDPCTL_TRACE): the program that
 * filters when no trace runs has none of this, not even a branch. The main
 * file holds the trace maps and xdpctl_trace(), which calls these after a
 * frame is counted. Without XDPCTL_TRACE the hooks below are no-ops.
 *
 * May include: linux UAPI headers, xdpctl_kern_user.h, parse_kern.h.
 */
#ifndef XDPCTL_TRACE_KERN_H
#define XDPCTL_TRACE_KERN_H

#include "xdpctl_kern_user.h"
#include "parse_kern.h"

#ifdef XDPCTL_TRACE

#ifndef XDPCTL_TRACE_CAP
#define XDPCTL_TRACE_CAP XDPCTL_TRACE_CAP_MAX
#endif /* XDPCTL_TRACE_CAP */
_Static_assert(XDPCTL_TRACE_CAP > 0 && XDPCTL_TRACE_CAP <= XDPCTL_TRACE_CAP_MAX &&
	       (XDPCTL_TRACE_CAP & (XDPCTL_TRACE_CAP - 1)) == 0, "a record's capacity is a power of 2");

/* A ring record as the program reserves it: the header and room for the frame. */
struct xdpctl_trace_frame {
	struct xdpctl_trace_record rec;
	__u8 data[XDPCTL_TRACE_CAP];
};

/* Who decided the frame (a rule, the policy, --drop-non-ip, the ban list), noted on the
 * way (pkt->trace_by is 0, the policy, until a rule or --drop-non-ip decides). */
#define XDPCTL_TRACE_NOTE_RULE(pkt, s)                                        \
	do {                                                                  \
		(pkt)->trace_by = XDPCTL_TRACE_BY_RULE;                       \
		(pkt)->trace_slot = (s);                                      \
	} while (0)
#define XDPCTL_TRACE_NOTE_NON_IP(pkt, v)                                      \
	do {                                                                  \
		if (v)                                                        \
			(pkt)->trace_by = XDPCTL_TRACE_BY_NON_IP;             \
	} while (0)
#define XDPCTL_TRACE_NOTE_BAN(pkt) ((pkt)->trace_by = XDPCTL_TRACE_BY_BAN)

/* 1 when cfg selects a frame of pkt that ends with verdict. */
static __always_inline int xdpctl_trace_selects(const struct xdpctl_trace_config *cfg,
						const struct xdpctl_pkt *pkt, __u32 verdict)
{
	if (!(cfg->verdicts & (1U << (verdict & 31))))
		return 0;
	if (!(cfg->classes & (1U << (pkt->class & 31))))
		return 0;
	if (!(cfg->deciders & (1U << (pkt->trace_by & 31))))
		return 0;
	if (cfg->slot != XDPCTL_TRACE_ANY_SLOT &&
	    (pkt->trace_by != XDPCTL_TRACE_BY_RULE || pkt->trace_slot != cfg->slot))
		return 0;
	return 1;
}

/* 1 when this selected frame is the CPU's one in cfg->sample: the first,
 * then every sample-th. A countdown: no division on the path. */
static __always_inline int xdpctl_trace_sampled(const struct xdpctl_trace_config *cfg,
						struct xdpctl_trace_stats *st)
{
	st->matched++;
	if (st->skip) {
		st->skip--;
		return 0;
	}
	st->skip = cfg->sample ? cfg->sample - 1 : 0;
	st->sampled++;
	return 1;
}

/* The bytes to copy: the frame, at most snaplen and the record's capacity. */
static __always_inline __u32 xdpctl_trace_caplen(const struct xdpctl_trace_config *cfg, __u64 bytes)
{
	__u32 len = bytes > XDPCTL_TRACE_CAP ? XDPCTL_TRACE_CAP : (__u32)bytes;

	if (len > cfg->snaplen)
		len = cfg->snaplen;
	return len;
}

#else /* !XDPCTL_TRACE */

#define XDPCTL_TRACE_NOTE_RULE(pkt, s) do { } while (0)
#define XDPCTL_TRACE_NOTE_NON_IP(pkt, v) do { } while (0)
#define XDPCTL_TRACE_NOTE_BAN(pkt) do { } while (0)
#define XDPCTL_TRACE_FRAME(ctx, pkt, verdict, bytes) do { } while (0)

#endif /* XDPCTL_TRACE */

#endif /* XDPCTL_TRACE_KERN_H */
