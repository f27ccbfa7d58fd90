/* SPDX-License-Identifier: GPL-2.0 */
/*
 * parse_kern.h - header parsing for the xdpctl XDP program.
 *
 * Walks Ethernet, up to two VLAN tags (802.1Q and 802.1ad, in any order),
 * IPv4 (options honoured) and IPv6 (extension headers walked), and fills a
 * struct xdpctl_pkt: the protocol class, and the pointers later stages use.
 * It never touches a map (BCC rewrites map calls only in the main file), and
 * it never reads a byte past data_end: every read is preceded by a check.
 *
 * A header that is cut short or invalid classes the frame as <family>/other,
 * the family being the one its EtherType names.
 *
 * May include: linux UAPI headers, xdpctl_kern_user.h.
 */
#ifndef XDPCTL_PARSE_KERN_H
#define XDPCTL_PARSE_KERN_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include "xdpctl_kern_user.h"

#define XDPCTL_IPV6_EXT_MAX 8   /* extension headers walked before giving up */

#define XDPCTL_IP_MF        0x2000
#define XDPCTL_IP_OFFSET    0x1fff

/* linux/if_vlan.h is a kernel-internal header; this is its on-wire tag. */
struct xdpctl_vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct xdpctl_pkt {
	void *l2;            /* Ethernet header */
	void *l3;            /* IPv4 or IPv6 header, when is_ip */
	void *l4;            /* transport header, when l4proto is known */
	__u32 class;         /* XDPCTL_CLASS_* */
	__be16 ethertype;    /* innermost EtherType, network order */
	__u16 vlan_id;       /* outer VLAN id, when nvlan > 0 */
	__u8 nvlan;          /* VLAN tags looked through */
	__u8 is_ip;          /* EtherType IPv4 or IPv6 */
	__u8 l4proto;        /* IPv4 protocol or IPv6 upper-layer header */
	__u8 frag_later;     /* a non-first fragment: no transport header */
	__u8 ipv;            /* 4 or 6 once the fixed IP header is known good */
	/* Transport fields, read by xdpctl_parse_l4() for the rule engine. */
	__u8 has_proto;      /* l4proto is known */
	__u8 has_ports;      /* TCP or UDP, not a later fragment, ports in the frame */
	__u8 has_tcp_flags;
	__u8 has_icmp;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 sport;         /* host order */
	__u16 dport;
	__u16 l3_off;        /* l3 - l2, for the rule engine */
	__u16 l4_off;        /* l4 - l2, for the rule engine */
#ifdef XDPCTL_USE_ESTABLISHED
	/* The reversed tuple is a live flow (the main file's lookup). Only in
	 * programs with --established: the others' bytecode stays as it was. */
	__u8 established;
#endif /* XDPCTL_USE_ESTABLISHED */
#ifdef XDPCTL_LIMITS
	/* The frame's length, for the buckets of byte rates (limit_kern.h).
	 * Only in programs with a limited rule. */
	__u32 bytes;
#endif /* XDPCTL_LIMITS */
#ifdef XDPCTL_TRACE
	/* Who decided the frame, for xdpctl trace (trace_kern.h). Only in the
	 * traced program: the others' bytecode stays as it was. */
	__u32 trace_slot;    /* the winning rule's hit slot */
	__u8 trace_by;       /* XDPCTL_TRACE_BY_* */
#endif /* XDPCTL_TRACE */
};

/*
 * IPv4 protocol to class without a chain of branches (each shows in the
 * per-packet cost): a 2-bit class code per protocol below 32, in one constant.
 * Protocol 1 (ICMP) is ICMP, 6 TCP, 17 UDP, and every other one "other".
 */
#define XDPCTL_V4_FIELD(proto, class) ((__u64)(class) << ((proto) * 2))
#define XDPCTL_V4_CLASSES                                                     \
	(~(XDPCTL_V4_FIELD(IPPROTO_ICMP, 3) | XDPCTL_V4_FIELD(IPPROTO_TCP, 3) | \
	   XDPCTL_V4_FIELD(IPPROTO_UDP, 3)) |                                   \
	 XDPCTL_V4_FIELD(IPPROTO_ICMP, XDPCTL_CLASS_IPV4_ICMP) |               \
	 XDPCTL_V4_FIELD(IPPROTO_TCP, XDPCTL_CLASS_IPV4_TCP) |                 \
	 XDPCTL_V4_FIELD(IPPROTO_UDP, XDPCTL_CLASS_IPV4_UDP))

_Static_assert(XDPCTL_CLASS_IPV4_TCP <= 3 && XDPCTL_CLASS_IPV4_UDP <= 3 &&
	       XDPCTL_CLASS_IPV4_ICMP <= 3 && XDPCTL_CLASS_IPV4_OTHER == 3,
	       "the IPv4 classes must be the 2-bit codes 0-3");

/*
 * Branch-free building blocks. BPF has no conditional move or set-on-
 * compare, so LLVM lowers `a == b ? x : y` to a branch, and every branch
 * doubles the paths the verifier walks through the code after it. Where
 * that multiplies (loops, and the rule engine behind the parser), these
 * compute the same with arithmetic; the empty asm keeps LLVM from
 * recognising the select and branching after all.
 */
static __always_inline __u32 xdpctl_opaque(__u32 x)
{
	asm volatile("" : "+r"(x));
	return x;
}

static __always_inline __u64 xdpctl_opaque64(__u64 x)
{
	asm volatile("" : "+r"(x));
	return x;
}

/* All ones when the low bit of x is set, else zero. */
#define XDPCTL_ALL(x) xdpctl_opaque(-(__u32)((x) & 1))

/* 1 when x is not zero, else 0. (The barrier sits on the intermediate:
 * LLVM knows (x | -x) >> 63 as x != 0, and would branch on it.) */
static __always_inline __u32 xdpctl_nonzero(__u64 x)
{
	return xdpctl_opaque64(x | -x) >> 63;
}

/* 1 when x == y, else 0. */
static __always_inline __u32 xdpctl_eq(__u64 x, __u64 y)
{
	return 1 ^ xdpctl_nonzero(x ^ y);
}

static __always_inline __u32 xdpctl_class_ipv4(__u8 proto)
{
	if (proto >= 32)
		return XDPCTL_CLASS_IPV4_OTHER;
	return (XDPCTL_V4_CLASSES >> (proto * 2)) & 3;
}

static __always_inline __u32 xdpctl_class_ipv6(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return XDPCTL_CLASS_IPV6_TCP;
	case IPPROTO_UDP:
		return XDPCTL_CLASS_IPV6_UDP;
	case IPPROTO_ICMPV6:
		return XDPCTL_CLASS_IPV6_ICMPV6;
	default:
		return XDPCTL_CLASS_IPV6_OTHER;
	}
}

static __always_inline void xdpctl_parse_ipv4(struct xdpctl_pkt *pkt, void *data_end)
{
	struct iphdr *iph = pkt->l3;
	__u32 hlen;
	__u8 vihl;

	pkt->class = XDPCTL_CLASS_IPV4_OTHER;
	/* Bounds: the fixed 20-byte header must be in the frame. */
	if ((void *)(iph + 1) > data_end)
		return;
	/* Version 4 and at least 5 header words, read as one byte: 0x45-0x4f. */
	vihl = *(__u8 *)iph;
	if (vihl < 0x45 || vihl > 0x4f)
		return;
	hlen = (vihl & 0x0f) * 4;
	/* Bounds: options, when present, must be in the frame too. */
	if ((void *)iph + hlen > data_end)
		return;
	pkt->ipv = 4;
	pkt->has_proto = 1;
	pkt->l4proto = iph->protocol;
	pkt->l4 = (void *)iph + hlen;
	pkt->l4_off = pkt->l4 - pkt->l2;
	pkt->frag_later = (iph->frag_off & __constant_htons(XDPCTL_IP_OFFSET)) != 0;
	/* Fragments are classed by their protocol field, like first ones. */
	pkt->class = xdpctl_class_ipv4(iph->protocol);
}

/* The extension headers xdpctl walks; all others end the walk. */
static __always_inline int xdpctl_ipv6_is_ext(__u8 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
	       nexthdr == IPPROTO_FRAGMENT || nexthdr == IPPROTO_DSTOPTS ||
	       nexthdr == IPPROTO_AH;
}

static __always_inline void xdpctl_parse_ipv6(struct xdpctl_pkt *pkt, void *data_end)
{
	struct ipv6hdr *ip6h = pkt->l3;
	struct ipv6_opt_hdr *opt;
	void *cur = ip6h + 1;
	__u8 nexthdr;
	int i;

	pkt->class = XDPCTL_CLASS_IPV6_OTHER;
	/* Bounds: the fixed 40-byte header must be in the frame. */
	if (cur > data_end)
		return;
	pkt->ipv = 6;
	nexthdr = ip6h->nexthdr;

#pragma unroll
	for (i = 0; i < XDPCTL_IPV6_EXT_MAX; i++) {
		__u32 frag, ah, other;
		__u64 len;

		if (!xdpctl_ipv6_is_ext(nexthdr))
			break;
		opt = cur;
		/* Bounds: every extension header starts with 8 bytes or more. */
		if ((void *)opt + 8 > data_end)
			return;
		/*
		 * The header's length, without a branch per header type (each
		 * would double the paths the verifier walks, per header): the
		 * fragment header is 8 bytes, AH (hdrlen + 2) * 4, the others
		 * (hdrlen + 1) * 8: that is 8 + hdrlen * 4 for AH, 8 + hdrlen * 8
		 * for the others. A fragment header with an offset (bits 3..15 of
		 * its third and fourth bytes) marks a later fragment.
		 */
		frag = XDPCTL_ALL(xdpctl_eq(nexthdr, IPPROTO_FRAGMENT));
		ah = XDPCTL_ALL(xdpctl_eq(nexthdr, IPPROTO_AH));
		/* Verifier: 6.1 loses the bounds of an OR of unknowns (cur += len failed): add; opaque, or LLVM ORs. */
		other = xdpctl_opaque(~(frag | ah));
		len = 8 + (((__u64)opt->hdrlen << 3) & other) + (((__u64)opt->hdrlen << 2) & ah);
		/* Bounds: the whole header, as its length gives it, must be in the
		 * frame; cut short, the frame is ipv6/other (not its upper layer). */
		if ((void *)opt + len > data_end)
			return;
		pkt->frag_later |= frag & xdpctl_nonzero(*(__be16 *)((void *)opt + 2) & __constant_htons(0xfff8));
		nexthdr = opt->nexthdr;
		cur += len;
	}
	/* Still an extension header: more than we walk, so no transport. */
	if (xdpctl_ipv6_is_ext(nexthdr))
		return;
	pkt->has_proto = 1;
	pkt->l4proto = nexthdr;
	pkt->l4 = cur;
	pkt->l4_off = cur - pkt->l2;
	pkt->class = xdpctl_class_ipv6(nexthdr);
}

/* A VLAN tag's TPID: 802.1Q (inner or single) or 802.1ad (QinQ outer). */
static __always_inline int xdpctl_is_vlan(__be16 proto)
{
	return proto == __constant_htons(ETH_P_8021Q) || proto == __constant_htons(ETH_P_8021AD);
}

/*
 * The common case (untagged IPv4) is laid out first and tags are the
 * unlikely branch: this function runs for every frame, and each extra
 * compare on the hot path shows in the per-packet cost (xdpctl bench).
 */
static __always_inline void xdpctl_parse(struct xdpctl_pkt *pkt, void *data, void *data_end)
{
	struct xdpctl_vlan_hdr *vh;
	void *cur = data + sizeof(struct ethhdr);
	__be16 proto;

	pkt->l2 = data;
	pkt->class = XDPCTL_CLASS_OTHER;
	/* Bounds: a frame shorter than an Ethernet header is "other". */
	if (cur > data_end)
		return;
	/* struct ethhdr is packed: read the EtherType as one 16-bit load. */
	proto = *(__be16 *)(data + 12);

	if (__builtin_expect(xdpctl_is_vlan(proto), 0)) {
		vh = cur;
		/* Bounds: a cut-short tag leaves the frame "other". */
		if ((void *)(vh + 1) > data_end)
			return;
		pkt->vlan_id = bpf_ntohs(vh->tci) & 0x0fff;
		pkt->nvlan = 1;
		proto = vh->encapsulated_proto;
		cur = vh + 1;
		if (xdpctl_is_vlan(proto)) {
			vh = cur;
			/* Bounds: as above, for the inner tag of QinQ. */
			if ((void *)(vh + 1) > data_end)
				return;
			pkt->nvlan = 2;
			proto = vh->encapsulated_proto;
			cur = vh + 1;
		}
		/* A third tag is not looked through: the frame stays "other". */
	}
	pkt->ethertype = proto;

	pkt->l3_off = cur - data;
	if (__builtin_expect(proto == __constant_htons(ETH_P_IP), 1)) {
		pkt->is_ip = 1;
		pkt->l3 = cur;
		xdpctl_parse_ipv4(pkt, data_end);
	} else if (proto == __constant_htons(ETH_P_IPV6)) {
		pkt->is_ip = 1;
		pkt->l3 = cur;
		xdpctl_parse_ipv6(pkt, data_end);
	} else if (proto == __constant_htons(ETH_P_ARP)) {
		pkt->class = XDPCTL_CLASS_ARP;
	}
	/* Anything else (802.3 length fields, LLDP, ...) stays "other". */
}

/*
 * The transport fields rules match on, read from l2 + l4_off (the rule
 * engine calls this on merged state: see XDPCTL_MERGE in rules_kern.h).
 * Ports and flags never come from a later fragment, which carries no
 * transport header: a port rule cannot match one. A transport header cut
 * short, or starting past XDPCTL_L4_MAX bytes into the frame, is not read.
 */
#define XDPCTL_L4_MAX 511

static __always_inline void xdpctl_parse_l4(struct xdpctl_pkt *pkt, void *data, void *data_end)
{
	__u8 *l4 = data + (pkt->l4_off & XDPCTL_L4_MAX);

	if (!pkt->has_proto || pkt->frag_later || pkt->l4_off > XDPCTL_L4_MAX)
		return;
	if (pkt->l4proto == IPPROTO_TCP) {
		/* Bounds: ports and the flags byte (offset 13). */
		if ((void *)(l4 + 14) > data_end)
			return;
		pkt->sport = ((__u16)l4[0] << 8) | l4[1];
		pkt->dport = ((__u16)l4[2] << 8) | l4[3];
		pkt->tcp_flags = l4[13];
		pkt->has_ports = 1;
		pkt->has_tcp_flags = 1;
	} else if (pkt->l4proto == IPPROTO_UDP) {
		/* Bounds: the two ports. */
		if ((void *)(l4 + 4) > data_end)
			return;
		pkt->sport = ((__u16)l4[0] << 8) | l4[1];
		pkt->dport = ((__u16)l4[2] << 8) | l4[3];
		pkt->has_ports = 1;
	} else if ((pkt->ipv == 4 && pkt->l4proto == IPPROTO_ICMP) ||
		   (pkt->ipv == 6 && pkt->l4proto == IPPROTO_ICMPV6)) {
		/* Bounds: type and code. */
		if ((void *)(l4 + 2) > data_end)
			return;
		pkt->icmp_type = l4[0];
		pkt->icmp_code = l4[1];
		pkt->has_icmp = 1;
	}
}

#endif /* XDPCTL_PARSE_KERN_H */
