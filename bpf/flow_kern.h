/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flow_kern.h - the flow table's keys, shared by the TC egress program
 * (egress_kern.c: the flow an outgoing frame belongs to) and the XDP program
 * (xdpctl_kern.c, --established: the flow an incoming frame answers), and
 * whether a flow is still live. Both sides build the key from the host's
 * point of view (its address and port first), so a reply's key is the key of
 * what the host sent.
 *
 * There are keys for TCP and UDP (addresses and ports), for ICMP and ICMPv6
 * echo (the request's identifier), and, incoming only, for ICMP errors
 * (destination unreachable, time exceeded, packet too big) that quote a
 * frame the host sent: the quote is that frame's own header, so its key is
 * read from it as on the way out. Path MTU discovery needs those errors.
 * Later fragments carry no ports, and have no key.
 *
 * Map-free: the main files look the keys up (BCC rewrites map calls only
 * there). Every read of the frame comes after its bounds check.
 *
 * May include: linux UAPI headers, xdpctl_kern_user.h, parse_kern.h.
 */
#ifndef XDPCTL_FLOW_KERN_H
#define XDPCTL_FLOW_KERN_H

#include "xdpctl_kern_user.h"
#include "parse_kern.h"

#define XDPCTL_ICMP_ECHOREPLY       0
#define XDPCTL_ICMP_DEST_UNREACH    3
#define XDPCTL_ICMP_ECHO            8
#define XDPCTL_ICMP_TIME_EXCEEDED   11
#define XDPCTL_ICMPV6_DEST_UNREACH  1
#define XDPCTL_ICMPV6_PKT_TOOBIG    2
#define XDPCTL_ICMPV6_TIME_EXCEED   3
#define XDPCTL_ICMPV6_ECHO_REQUEST  128
#define XDPCTL_ICMPV6_ECHO_REPLY    129

#define XDPCTL_TCP_FIN              0x01
#define XDPCTL_TCP_SYN              0x02
#define XDPCTL_TCP_RST              0x04
#define XDPCTL_TCP_ACK              0x10

/* An ICMP error quotes the IP header and at least 8 bytes after it. */
#define XDPCTL_QUOTED_L4            8

/* What the XDP program keeps per CPU for the lookup (never pinned). */
struct xdpctl_flow_scratch {
	__u64 answer;        /* 1: a live flow; read back through memory (xdpctl_kern.c) */
};

/* Copy an address of the family (4 or 16 bytes) into a key; an IPv4
 * address leaves the rest zero. The caller checked the bytes are in the
 * frame. */
static __always_inline void xdpctl_flow_addr(__u8 *to, const __u8 *from, __u8 family)
{
	__u32 *t = (__u32 *)to;
	const __u32 *f = (const __u32 *)from;

	t[0] = f[0];
	if (family == 6) {
		t[1] = f[1];
		t[2] = f[2];
		t[3] = f[3];
	} else {
		t[1] = 0;
		t[2] = 0;
		t[3] = 0;
	}
}

/* The fixed IP header of a parsed frame with its bounds checked, or NULL. */
static __always_inline const __u8 *xdpctl_flow_l3(const struct xdpctl_pkt *pkt, void *data, void *data_end)
{
	const __u8 *l3 = data + (pkt->l3_off & 0x3f);  /* at most 14 + two tags */

	/* Bounds: the family's fixed header. */
	if (pkt->ipv == 4 && (void *)(l3 + 20) <= data_end)
		return l3;
	if (pkt->ipv == 6 && (void *)(l3 + 40) <= data_end)
		return l3;
	return 0;
}

/* Fill a key's family, protocol and addresses; host is the offset of the
 * host's address in the IP header at ip, remote the remote end's. */
static __always_inline void xdpctl_flow_ends(struct xdpctl_flow_key *key, __u8 family, __u8 proto,
					     const __u8 *ip, int host, int remote)
{
	key->family = family;
	key->proto = proto;
	key->_pad0 = 0;
	xdpctl_flow_addr(key->laddr, ip + host, family);
	xdpctl_flow_addr(key->raddr, ip + remote, family);
}

/* An echo's identifier (bytes 4-5 of its header), host order. */
static __always_inline __u16 xdpctl_echo_id(const __u8 *icmp)
{
	return ((__u16)icmp[4] << 8) | icmp[5];
}

/*
 * The key of a frame the host sends (parsed with xdpctl_parse_l4): TCP and
 * UDP, and ICMP/ICMPv6 echo requests. 1 when there is one.
 */
static __always_inline int xdpctl_flow_key_out(struct xdpctl_flow_key *key, const struct xdpctl_pkt *pkt,
					       void *data, void *data_end)
{
	const __u8 *l3 = xdpctl_flow_l3(pkt, data, data_end);
	const __u8 *l4 = data + (pkt->l4_off & XDPCTL_L4_MAX);
	__u8 request = pkt->ipv == 4 ? XDPCTL_ICMP_ECHO : XDPCTL_ICMPV6_ECHO_REQUEST;

	if (!l3)
		return 0;
	if (pkt->has_ports) {
		key->lport = pkt->sport;
		key->rport = pkt->dport;
	} else if (pkt->has_icmp && pkt->icmp_type == request && pkt->icmp_code == 0) {
		/* Bounds: the identifier. */
		if ((void *)(l4 + 6) > data_end)
			return 0;
		key->lport = xdpctl_echo_id(l4);
		key->rport = 0;
	} else {
		return 0;
	}
	/* The source is the host. */
	if (pkt->ipv == 4)
		xdpctl_flow_ends(key, 4, pkt->l4proto, l3, 12, 16);
	else
		xdpctl_flow_ends(key, 6, pkt->l4proto, l3, 8, 24);
	return 1;
}

/*
 * The key of the frame an ICMP error quotes (a frame the host sent: its
 * source is the host), from the quoted IP header at ip. 1 when there is one.
 */
static __always_inline int xdpctl_flow_key_quoted(struct xdpctl_flow_key *key, __u8 family, const __u8 *ip,
						  void *data_end)
{
	const __u8 *t;
	__u8 proto, request;
	__u32 hlen;

	if (family == 4) {
		/* Bounds: the quoted fixed header. */
		if ((void *)(ip + 20) > data_end)
			return 0;
		/* Version 4, 5-15 words: as parse_kern.h reads the outer one. */
		if (ip[0] < 0x45 || ip[0] > 0x4f)
			return 0;
		/* A later fragment quotes no transport header. */
		if (((ip[6] & 0x1f) | ip[7]) != 0)
			return 0;
		hlen = ((__u32)ip[0] & 0x0f) * 4;  /* 20-60: bounded for the verifier */
		proto = ip[9];
		request = XDPCTL_ICMP_ECHO;
	} else {
		/* Bounds: the quoted fixed header; extension headers are not walked. */
		if ((void *)(ip + 40) > data_end)
			return 0;
		if ((ip[0] >> 4) != 6)
			return 0;
		hlen = 40;
		proto = ip[6];
		request = XDPCTL_ICMPV6_ECHO_REQUEST;
	}
	t = ip + hlen;
	/* Bounds: the 8 quoted bytes of the transport header. */
	if ((void *)(t + XDPCTL_QUOTED_L4) > data_end)
		return 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		key->lport = ((__u16)t[0] << 8) | t[1];
		key->rport = ((__u16)t[2] << 8) | t[3];
	} else if ((proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) && t[0] == request && t[1] == 0) {
		key->lport = xdpctl_echo_id(t);
		key->rport = 0;
	} else {
		return 0;
	}
	if (family == 4)
		xdpctl_flow_ends(key, 4, proto, ip, 12, 16);
	else
		xdpctl_flow_ends(key, 6, proto, ip, 8, 24);
	return 1;
}

/* An ICMP or ICMPv6 error that quotes what it is about. */
static __always_inline int xdpctl_icmp_error(__u8 family, __u8 type)
{
	if (family == 4)
		return type == XDPCTL_ICMP_DEST_UNREACH || type == XDPCTL_ICMP_TIME_EXCEEDED;
	return type == XDPCTL_ICMPV6_DEST_UNREACH || type == XDPCTL_ICMPV6_PKT_TOOBIG ||
	       type == XDPCTL_ICMPV6_TIME_EXCEED;
}

/*
 * The key of the flow a frame the host receives answers, given its fixed IP
 * header l3 (bounds checked by the caller): its reversed tuple for TCP and
 * UDP, the request's for an echo reply, the quoted frame's for an ICMP error.
 * 1 when there is one.
 */
static __always_inline int xdpctl_flow_key_in(struct xdpctl_flow_key *key, const struct xdpctl_pkt *pkt,
					      const __u8 *l3, void *data, void *data_end)
{
	const __u8 *l4 = data + (pkt->l4_off & XDPCTL_L4_MAX);
	__u8 reply = pkt->ipv == 4 ? XDPCTL_ICMP_ECHOREPLY : XDPCTL_ICMPV6_ECHO_REPLY;

	if (!l3)
		return 0;
	if (pkt->has_ports) {
		key->lport = pkt->dport;
		key->rport = pkt->sport;
	} else if (!pkt->has_icmp) {
		return 0;
	} else if (pkt->icmp_type == reply && pkt->icmp_code == 0) {
		/* Bounds: the identifier. */
		if ((void *)(l4 + 6) > data_end)
			return 0;
		key->lport = xdpctl_echo_id(l4);
		key->rport = 0;
	} else if (xdpctl_icmp_error(pkt->ipv, pkt->icmp_type)) {
		/* The quote follows the 8-byte ICMP header. */
		return xdpctl_flow_key_quoted(key, pkt->ipv, l4 + 8, data_end);
	} else {
		return 0;
	}
	/* The destination is the host. */
	if (pkt->ipv == 4)
		xdpctl_flow_ends(key, 4, pkt->l4proto, l3, 16, 12);
	else
		xdpctl_flow_ends(key, 6, pkt->l4proto, l3, 24, 8);
	return 1;
}

/* The timeout a frame the host sends puts its flow under. */
static __always_inline __u32 xdpctl_flow_timeout(const struct xdpctl_pkt *pkt)
{
	if (pkt->l4proto == IPPROTO_TCP)
		return (pkt->tcp_flags & (XDPCTL_TCP_FIN | XDPCTL_TCP_RST)) ? XDPCTL_FLOW_CLOSING : XDPCTL_FLOW_TCP;
	if (pkt->l4proto == IPPROTO_UDP)
		return XDPCTL_FLOW_UDP;
	return XDPCTL_FLOW_ICMP;
}

/* A TCP SYN without ACK: the host opens a connection (anew, on a tuple it
 * may have used before). */
static __always_inline int xdpctl_flow_opens(const struct xdpctl_pkt *pkt)
{
	return pkt->l4proto == IPPROTO_TCP &&
	       (pkt->tcp_flags & (XDPCTL_TCP_SYN | XDPCTL_TCP_ACK)) == XDPCTL_TCP_SYN;
}

/* Whether a flow's last frame is recent enough for its timeout. Signed: a
 * frame on another CPU may have stamped a time a little after now. */
static __always_inline int xdpctl_flow_live(const struct xdpctl_flow *f, const struct xdpctl_flow_config *cfg,
					    __u64 now)
{
	return (__s64)(now - f->last_seen) <= (__s64)cfg->timeout_ns[f->timeout & (XDPCTL_FLOW_TIMEOUTS - 1)];
}

#endif /* XDPCTL_FLOW_KERN_H */
