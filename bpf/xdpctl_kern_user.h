/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xdpctl_kern_user.h - the contract between the XDP program and user space.
 *
 * Read by both sides: the BPF program includes it, and xdpctl/contract.py
 * mirrors it (tests/unit/test_contract.py fails when the two drift).
 * Everything user space reads or writes is declared here: map names, key and
 * value structs, class and verdict codes, option bits and the ABI version.
 *
 * Rules for editing:
 *   - codes are never renumbered; new ones are appended;
 *   - structs use fixed-width types with explicit padding;
 *   - any change to a map's key, value or size bumps XDPCTL_ABI_VERSION.
 *
 * May include: nothing (the includer provides the __u8..__u64 types).
 */
#ifndef XDPCTL_KERN_USER_H
#define XDPCTL_KERN_USER_H

#define XDPCTL_ABI_VERSION 1

/* Protocol classes: fixed, non-overlapping, and they sum to the total. */
#define XDPCTL_CLASS_IPV4_TCP     0
#define XDPCTL_CLASS_IPV4_UDP     1
#define XDPCTL_CLASS_IPV4_ICMP    2
#define XDPCTL_CLASS_IPV4_OTHER   3
#define XDPCTL_CLASS_IPV6_TCP     4
#define XDPCTL_CLASS_IPV6_UDP     5
#define XDPCTL_CLASS_IPV6_ICMPV6  6
#define XDPCTL_CLASS_IPV6_OTHER   7
#define XDPCTL_CLASS_ARP          8
#define XDPCTL_CLASS_OTHER        9
#define XDPCTL_CLASS_MAX          10
/* Every IPv4 and IPv6 class has a code below XDPCTL_CLASS_ARP, and every
 * other class does not: the program tells IP from non-IP with one compare. */

/* Verdicts, as counted (not the XDP_* return codes). */
#define XDPCTL_VERDICT_PASS       0
#define XDPCTL_VERDICT_DROP       1
#define XDPCTL_VERDICT_MAX        2

/* Packets and bytes; bytes is the frame length as XDP sees it. */
struct xdpctl_counter {
	__u64 packets;
	__u64 bytes;
};

/* The counters map: a per-CPU array keyed by class (XDPCTL_CLASS_MAX
 * entries), each value holding the counts of both verdicts. */
struct xdpctl_class_counters {
	struct xdpctl_counter verdict[XDPCTL_VERDICT_MAX];
};

/* Attach modes, as stored in struct xdpctl_meta. */
#define XDPCTL_MODE_NATIVE        1
#define XDPCTL_MODE_GENERIC       2
#define XDPCTL_MODE_OFFLOAD       3

/* Option bits, as stored in struct xdpctl_meta.options. */
#define XDPCTL_OPT_DROP_NON_IP    (1U << 0)

/*
 * The single entry (key 0) of the meta map: what xdpctl attached, and when.
 * The BPF program never reads it; it lives beside the program's maps so that
 * a fresh xdpctl process finds everything about an attachment on bpffs.
 * pending_prog_id is set just before a new program is attached and cleared
 * once it is, so a crash in between can be told apart from a foreign swap.
 */
struct xdpctl_meta {
	__u32 abi_version;
	__u32 ifindex;
	__u64 netns_ino;
	__u32 prog_id;
	__u32 pending_prog_id;
	__u32 mode;
	__u32 options;
	__u64 attached_at;   /* seconds since the epoch */
	__u64 features;      /* feature bits compiled into prog_id */
	char ifname[16];
};

/*
 * Pins, relative to an attachment's directory on bpffs. The maps behind them
 * are named xdpctl_<pin> in the kernel (BCC cannot take a map's name from a
 * macro, so the declarations in *_kern.h spell them out).
 */
#define XDPCTL_PIN_COUNTERS       "counters"
#define XDPCTL_PIN_META           "meta"
#define XDPCTL_PIN_PROG           "prog"

/* The XDP function, and so the program name the kernel lists. */
#define XDPCTL_PROG_NAME          "xdpctl_filter"

#endif /* XDPCTL_KERN_USER_H */
