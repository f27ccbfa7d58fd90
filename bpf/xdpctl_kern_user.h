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

#define XDPCTL_ABI_VERSION 5

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

/* Verdicts, as counted (not the XDP_* return codes). Every frame is
 * counted under exactly one. A redirect whose target is missing (the
 * interface is gone, the CPU's queue was never made) is XDP_ABORTED, and
 * counted as aborted. */
#define XDPCTL_VERDICT_PASS       0
#define XDPCTL_VERDICT_DROP       1
#define XDPCTL_VERDICT_REDIRECT   2
#define XDPCTL_VERDICT_TX         3
#define XDPCTL_VERDICT_ABORTED    4
#define XDPCTL_VERDICT_MAX        5

/* Packets and bytes; bytes is the frame length as XDP sees it. */
struct xdpctl_counter {
	__u64 packets;
	__u64 bytes;
};

/* The counters map: a per-CPU array keyed by class (XDPCTL_CLASS_MAX
 * entries), each value holding the counts of every verdict. */
struct xdpctl_class_counters {
	struct xdpctl_counter verdict[XDPCTL_VERDICT_MAX];
};

/* Attach modes, as stored in struct xdpctl_meta. */
#define XDPCTL_MODE_NATIVE        1
#define XDPCTL_MODE_GENERIC       2
#define XDPCTL_MODE_OFFLOAD       3

/* Option bits, as stored in struct xdpctl_meta.options. */
#define XDPCTL_OPT_DROP_NON_IP    (1U << 0)
#define XDPCTL_OPT_POLICY_DENY    (1U << 1)

/*
 * The shape of the rule engine's tables in the program attached: the -D
 * flags it was compiled with (xdpctl/layout.py computes the same offsets).
 * tag 0 means no rule engine. Layout-dependent maps are pinned as
 * <name>_<tag> (tables) and <name>_<slots> (hits).
 */
#define XDPCTL_TRIE_SRC4_BIT      (1U << 0)
#define XDPCTL_TRIE_SRC6_BIT      (1U << 1)
#define XDPCTL_TRIE_DST4_BIT      (1U << 2)
#define XDPCTL_TRIE_DST6_BIT      (1U << 3)
#define XDPCTL_TRIE_SMAC_BIT      (1U << 4)
#define XDPCTL_TRIE_DMAC_BIT      (1U << 5)
#define XDPCTL_NKINDS             12
#define XDPCTL_NTRIES             6

struct xdpctl_layout {
	__u32 tag;
	__u32 tries;                 /* XDPCTL_TRIE_*_BIT */
	__u32 words;                 /* 64-bit words per rule bitmap */
	__u32 decisions;             /* entries of the decision array */
	__u32 slots;                 /* entries of the hits map */
	__u32 caps[XDPCTL_NKINDS];   /* class records per kind, in XDPCTL_KIND_* bit order */
	__u32 nodes[XDPCTL_NTRIES];  /* blocks per trie, in XDPCTL_TRIE_*_BIT order */
	__u32 depths[XDPCTL_NTRIES]; /* levels below the root, per trie */
	__u32 actions;               /* XDPCTL_ACTS_* compiled in (was padding) */
};

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
	__u64 features;      /* XDPCTL_KIND_* bits compiled into prog_id */
	char ifname[16];
	struct xdpctl_layout layout;
};

/* ---- The rule engine -------------------------------------------------- */

/* Actions of a rule (the interface policy has only the first two). */
#define XDPCTL_ACTION_PASS        0
#define XDPCTL_ACTION_DROP        1
#define XDPCTL_ACTION_REDIRECT    2   /* redirect --to: out of an interface (devmap) */
#define XDPCTL_ACTION_TX          3   /* back out of the interface, MACs swapped */
#define XDPCTL_ACTION_REDIRECT_CPU 4  /* redirect --cpu: on to the stack on a CPU (cpumap) */

/*
 * The actions beyond pass and drop that a program is compiled with
 * (struct xdpctl_layout.actions; -D XDPCTL_REDIRECT_DEV, XDPCTL_REDIRECT_CPU,
 * XDPCTL_TX in action_kern.h). A program whose rules use none of them
 * contains none of their code and maps.
 */
#define XDPCTL_ACTS_REDIRECT      (1U << 0)   /* the devmap and the flow hash */
#define XDPCTL_ACTS_CPU           (1U << 1)   /* the cpumap */
#define XDPCTL_ACTS_TX            (1U << 2)   /* the MAC swap */
/* Also in struct xdpctl_layout.actions, apart from the actions' bits: rate
 * limits compiled in (-D XDPCTL_LIMITS; the limits and buckets maps). */
#define XDPCTL_FEAT_LIMITS        (1U << 16)

/* Steering limits. The devmap holds both generations' targets: generation g
 * uses entries g * XDPCTL_DEVMAP_GEN .. + XDPCTL_DEVMAP_GEN - 1, a rule's
 * targets consecutive from its decision's target. */
#define XDPCTL_MAX_TARGETS        64          /* interfaces of one redirect --to */
#define XDPCTL_DEVMAP_GEN         4096        /* devmap entries per generation */
#define XDPCTL_DEVMAP_ENTRIES     8192        /* both generations */
#define XDPCTL_QUEUE_DEFAULT      2048        /* redirect --cpu: the cpumap queue */
#define XDPCTL_QUEUE_MAX          16384       /* the kernel's limit on it */

/*
 * Kinds of match. A rule carries a set of them; the program is compiled with
 * the union over all rules (each kind is a -D flag, XDPCTL_USE_<NAME>).
 */
#define XDPCTL_KIND_SRC           (1U << 0)   /* source IPv4/IPv6 prefix */
#define XDPCTL_KIND_DST           (1U << 1)   /* destination IPv4/IPv6 prefix */
#define XDPCTL_KIND_PROTO         (1U << 2)   /* IPv4 protocol / IPv6 upper layer */
#define XDPCTL_KIND_SPORT         (1U << 3)   /* TCP/UDP source port range */
#define XDPCTL_KIND_DPORT         (1U << 4)   /* TCP/UDP destination port range */
#define XDPCTL_KIND_SRC_MAC       (1U << 5)
#define XDPCTL_KIND_DST_MAC       (1U << 6)
#define XDPCTL_KIND_VLAN          (1U << 7)   /* outer VLAN id */
#define XDPCTL_KIND_ETHERTYPE     (1U << 8)   /* EtherType after the VLAN tags */
#define XDPCTL_KIND_TCP_FLAGS     (1U << 9)   /* flags set and flags clear */
#define XDPCTL_KIND_ICMP          (1U << 10)  /* ICMP/ICMPv6 type, and code */
#define XDPCTL_KIND_ESTABLISHED   (1U << 11)  /* the reversed tuple is in the flow table */

/* Bits of struct xdpctl_rule.flags. */
#define XDPCTL_RULE_PRIORITY_SET  (1U << 0)   /* the priority was given, not defaulted */
#define XDPCTL_RULE_ICMP_CODE     (1U << 1)   /* icmp_code is a match */
#define XDPCTL_RULE_SRC_V6        (1U << 2)   /* src is an IPv6 prefix */
#define XDPCTL_RULE_DST_V6        (1U << 3)   /* dst is an IPv6 prefix */

#define XDPCTL_PRIORITY_DEFAULT   1000        /* rules without a priority */

/*
 * A rule as xdpctl records it (the rules map, key struct xdpctl_rule_key).
 * Only user space reads it: the program sees rules through the tables.
 * Addresses are in network order, prefix-length first; ports are host
 * order, inclusive ranges; MACs are 6 bytes with 2 bytes of padding.
 */
struct xdpctl_rule {
	__u32 id;            /* stable identity (rule del ID) */
	__u32 seq;           /* order among rules of equal priority */
	__u32 slot;          /* index of its hits in the hits map */
	__u32 kinds;         /* XDPCTL_KIND_* */
	__u16 priority;
	__u8 action;         /* XDPCTL_ACTION_* */
	__u8 flags;          /* XDPCTL_RULE_* */
	__u8 src_len;
	__u8 dst_len;
	__u8 proto;
	__u8 tcp_set;        /* TCP flags that must be set */
	__u8 tcp_clear;      /* TCP flags that must be clear */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 _pad0;
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u16 vlan;
	__u16 ethertype;
	__u8 src[16];
	__u8 dst[16];
	__u8 src_mac[8];
	__u8 dst_mac[8];
	/* Appended with the actions beyond pass and drop (ABI 3). */
	__u16 cpu;           /* XDPCTL_ACTION_REDIRECT_CPU: the CPU */
	__u8 ntargets;       /* XDPCTL_ACTION_REDIRECT: its targets (the targets map) */
	__u8 _pad1;
	__u32 queue;         /* XDPCTL_ACTION_REDIRECT_CPU: the cpumap queue size */
	/* Appended with rate limits (ABI 4): what --over and its companions
	 * said (xdpctl/rules/limits.py). over_unit XDPCTL_UNIT_NONE: no limit. */
	__u64 over;          /* the rate: units per over_period seconds */
	__u64 burst;         /* units */
	__u64 ceiling;       /* units per ceiling_period seconds; 0: none */
	__u32 table;         /* keys of the rule's table */
	__u32 block;         /* seconds a source that goes over is banned; 0: none */
	__u16 over_period;
	__u16 ceiling_period;
	__u8 over_unit;      /* XDPCTL_UNIT_* */
	__u8 ceiling_unit;
	__u8 per;            /* XDPCTL_PER_* */
	__u8 per_v4;         /* XDPCTL_PER_SRC: the source prefix lengths (0: family not matched) */
	__u8 per_v6;
	__u8 _pad2[7];
};

/*
 * The interfaces of a redirect --to rule, in the order given (the targets
 * map: a hash keyed like the rules map, written by user space only): each
 * ifindex with the name it had when the rule was added, so that a target
 * that goes away can still be named.
 */
struct xdpctl_target_name {
	char name[16];
};

struct xdpctl_targets {
	__u32 ifindex[XDPCTL_MAX_TARGETS];
	struct xdpctl_target_name ifname[XDPCTL_MAX_TARGETS];
};

/* Key of the rules map: the generation a rule belongs to, and its id. */
struct xdpctl_rule_key {
	__u32 gen;
	__u32 id;
};

/*
 * The active generation (config map, key 0). Everything a rule change
 * touches is written to the other generation first; flipping gen is the
 * single store that makes it live (and a crash before it changes nothing).
 */
struct xdpctl_config {
	__u32 gen;           /* 0 or 1: read by the program on every frame */
	__u32 rules;         /* rules in the active generation */
	__u32 next_id;       /* the id the next added rule gets */
	__u32 next_seq;      /* the seq the next added rule gets */
	__u32 _pad0;
	__u32 _pad1;
};

/*
 * What decides a frame: one entry per rule in the tables' decision array.
 * order = priority << 32 | seq; the lowest order among matching rules wins.
 * action was a __u32 before ABI 3 (its low byte, little-endian, is the same
 * place): targets and target steer a redirect.
 */
struct xdpctl_decision {
	__u64 order;
	__u32 slot;
	__u8 action;         /* XDPCTL_ACTION_* */
	__u8 targets;        /* XDPCTL_ACTION_REDIRECT: how many (1..XDPCTL_MAX_TARGETS) */
	__u16 target;        /* REDIRECT: the first devmap entry, within the generation's;
			      * REDIRECT_CPU: the CPU (its cpumap entry) */
};

/*
 * A class record: the rules that match every value of one equivalence class
 * of one kind of match, as a bitmap over rule positions (positions sort by
 * order), with a summary bit per 64-bit word; and, for prefix kinds, the
 * best "plain" rule (a rule with that one prefix as its only match, kept out
 * of the bitmaps so that block lists of 100,000 prefixes stay small).
 * Layout, with S = (W + 63) / 64 summary words and W bitmap words:
 *   __u32 plain; __u32 _pad; __u64 summary[S]; __u64 word[W];
 */
#define XDPCTL_NO_RULE            0xffffffffU
#define XDPCTL_SUMMARY_WORDS(w)   (((w) + 63) / 64)
#define XDPCTL_CLASS_BYTES(w)     (8 + 8 * (XDPCTL_SUMMARY_WORDS(w) + (w)))

/* Multibit tries for prefixes: a 65536-entry root on the first 16 bits, then
 * blocks of 256 entries per further byte. An entry with this bit set points
 * to a block (the index in the low bits); otherwise it is a class id. */
#define XDPCTL_TRIE_CHILD         0x80000000U
#define XDPCTL_TRIE_ROOT          65536
#define XDPCTL_TRIE_BLOCK         256

/* Limits (xdpctl refuses a change past them and leaves the rules as they are). */
#define XDPCTL_MAX_RULES          131072      /* in all, plain ones included */
#define XDPCTL_MAX_GENERAL        16384       /* rules with more than one prefix match */

/*
 * Pins, relative to an attachment's directory on bpffs. The maps behind them
 * are named xdpctl_<pin> in the kernel (BCC cannot take a map's name from a
 * macro, so the declarations in *_kern.h spell them out).
 */
#define XDPCTL_PIN_COUNTERS       "counters"
#define XDPCTL_PIN_META           "meta"
#define XDPCTL_PIN_PROG           "prog"
#define XDPCTL_PIN_CONFIG         "config"
#define XDPCTL_PIN_RULES          "rules"
/* Layout-dependent maps are pinned as <name>_<layout tag>; a program with a
 * new layout gets new maps, and the old ones go once it is replaced. */
#define XDPCTL_PIN_TABLES         "tables"
#define XDPCTL_PIN_HITS           "hits"
/* Made by xdpctl (not BCC) before a program with the actions is compiled:
 * the devmap (XDPCTL_DEVMAP_ENTRIES), the cpumap (one entry per possible
 * CPU), and the targets of the redirect --to rules (user space only). */
#define XDPCTL_PIN_DEVMAP         "devmap"
#define XDPCTL_PIN_CPUMAP         "cpumap"
#define XDPCTL_PIN_TARGETS        "targets"

/* The XDP function, and so the program name the kernel lists. */
#define XDPCTL_PROG_NAME          "xdpctl_filter"

/* ---- The flow table (--established) ---------------------------------------
 *
 * A TC egress program (egress_kern.c) records the flows the host opens on an
 * interface; the XDP program's --established match looks an incoming frame's
 * reversed tuple up (flow_kern.h builds both keys). Both programs share the
 * maps below, pinned in the attachment's directory, so the table outlives
 * either program: a replace or a rule change keeps every flow.
 */

/* A flow, as the host sees it: its own address and port, and the remote
 * end's. Ports are host order; an ICMP echo's identifier stands in lport
 * (rport 0). Addresses are network order, IPv4 in the first 4 bytes (the
 * rest zero). Every byte is a field, so a key built on the stack is whole. */
struct xdpctl_flow_key {
	__u8 family;         /* 4 or 6 */
	__u8 proto;          /* IPPROTO_TCP, _UDP, _ICMP or _ICMPV6 */
	__u16 lport;         /* the host's port, or the echo identifier */
	__u16 rport;         /* the remote port (0 for ICMP) */
	__u16 _pad0;
	__u8 laddr[16];      /* the host's address */
	__u8 raddr[16];      /* the remote address */
};

/* Which timeout a flow is under: an index into timeout_ns. */
#define XDPCTL_FLOW_TCP           0
#define XDPCTL_FLOW_UDP           1
#define XDPCTL_FLOW_ICMP          2
#define XDPCTL_FLOW_CLOSING       3           /* TCP, once a FIN or RST was seen */
#define XDPCTL_FLOW_TIMEOUTS      4

/* Times are nanoseconds of CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns,
 * the last tick's time): timeouts are whole seconds, and the coarse clock
 * costs every frame a few nanoseconds where the precise ones cost tens
 * (xdpctl bench --established). It stands still while the machine sleeps. */
struct xdpctl_flow {
	__u64 first_seen;    /* the flow's first frame out */
	__u64 last_seen;     /* its last frame, either way */
	__u64 packets_in;    /* frames back (whatever the rules then decided) */
	__u64 bytes_in;
	__u32 timeout;       /* XDPCTL_FLOW_* */
	__u32 _pad0;
};

/* The flow settings of an interface (flow_cfg map, key 0): read by both
 * programs on every frame they look up; entries is the table's size, for
 * user space. */
struct xdpctl_flow_config {
	__u64 timeout_ns[XDPCTL_FLOW_TIMEOUTS];
	__u32 entries;
	__u32 _pad0;
};

#define XDPCTL_FLOW_ENTRIES_DEFAULT   262144
#define XDPCTL_FLOW_TIMEOUT_TCP_S     300
#define XDPCTL_FLOW_TIMEOUT_UDP_S     60
#define XDPCTL_FLOW_TIMEOUT_ICMP_S    30
#define XDPCTL_FLOW_TIMEOUT_CLOSING_S 10

/*
 * The egress program's record (egress map, key 0): user space only. The TC
 * filter that runs it is xdpctl's exactly when it sits at (prio, handle) on
 * the interface's clsact egress hook and runs prog_id. pending_prog_id is
 * set before the filter is added and cleared once the change is recorded,
 * as struct xdpctl_meta's. XDPCTL_EGRESS_OWN_QDISC: xdpctl created the
 * clsact qdisc (and removes it once no filter is left in it).
 */
#define XDPCTL_EGRESS_OWN_QDISC   (1U << 0)

struct xdpctl_egress {
	__u32 prog_id;
	__u32 pending_prog_id;
	__u32 prio;          /* the filter's priority (tc's "pref"), 1-65535 */
	__u32 handle;
	__u32 flags;         /* XDPCTL_EGRESS_* */
	__u32 _pad0;
	__u64 attached_at;   /* seconds since the epoch */
};

#define XDPCTL_PIN_FLOWS          "flows"
#define XDPCTL_PIN_FLOW_CONFIG    "flow_cfg"
#define XDPCTL_PIN_EGRESS         "egress"
#define XDPCTL_PIN_EGRESS_PROG    "egress_prog"

/* The TC function, and so the egress program's name. */
#define XDPCTL_EGRESS_PROG_NAME   "xdpctl_egress"

/* ---- Rate limits (--over) -------------------------------------------------
 *
 * A rule with --over matches a frame only when the frame goes over the rate
 * of its bucket (nftables' `limit rate over`); within the rate, the search
 * goes on to the next matching rule. Compiled in only for rule sets with a
 * limited rule (XDPCTL_ACTS_LIMITS, -D XDPCTL_LIMITS; limit_kern.h).
 */
#define XDPCTL_UNIT_NONE          0           /* no limit */
#define XDPCTL_UNIT_FRAMES        1
#define XDPCTL_UNIT_BYTES         2
#define XDPCTL_UNIT_BITS          3

#define XDPCTL_PER_SRC            0           /* the source address, or prefix (per_v4, per_v6) */
#define XDPCTL_PER_FLOW           1           /* addresses, protocol and ports */
#define XDPCTL_PER_RULE           2           /* one bucket for the rule */

/* Limited rules consulted per frame, at most (each within its rate lets the
 * search go on): xdpctl refuses more limited rules on an interface. */
#define XDPCTL_LIMIT_K            4

/* Bits of struct xdpctl_limit.flags. */
#define XDPCTL_LIMIT_ON           (1U << 0)   /* the rule in this slot is limited */
#define XDPCTL_LIMIT_OF_BYTES     (1U << 1)   /* a frame costs its length times cost */
#define XDPCTL_LIMIT_CEILING      (1U << 2)   /* keys not in the table share the ceiling bucket */

/*
 * A limited rule's bucket, in integers (the limits map: an array by slot,
 * written by user space). One unit (a frame, or a byte) costs cost tokens;
 * every nanosecond adds refill; the bucket holds capacity; the time since a
 * key's last frame is capped at fill_ns (an empty bucket's fill time), so
 * nothing overflows 64 bits (xdpctl/rules/limits.py checks every rate).
 */
struct xdpctl_limit {
	__u64 refill;
	__u64 cost;
	__u64 capacity;
	__u64 fill_ns;
	__u32 flags;         /* XDPCTL_LIMIT_* */
	__u8 per;            /* XDPCTL_PER_* */
	__u8 per_v4;         /* prefix lengths of XDPCTL_PER_SRC */
	__u8 per_v6;
	__u8 _pad0;
	/* The ceiling (XDPCTL_LIMIT_CEILING), as the bucket above: a frame of
	 * a key not in the table (new, or evicted: what spoofed sources are)
	 * must first fit the rule's ceiling bucket, else it goes over and its
	 * key is not added. */
	__u64 c_refill;
	__u64 c_cost;
	__u64 c_capacity;
	__u64 c_fill_ns;
	__u64 block_ns;      /* --block: a source that goes over is banned this long; 0: not */
};

/* The ceiling's bucket is the rule's key with this family. */
#define XDPCTL_LIMIT_FAMILY_CEILING 255

/* What a limited rule saw (the limit_stats map: per-CPU, by slot): frames
 * within the rate (which went on), keys added to the table, and frames of
 * keys not in the table that the ceiling stopped. Evictions are the keys
 * added less the keys in the table. */
struct xdpctl_limit_stats {
	__u64 within;
	__u64 within_bytes;
	__u64 new_keys;
	__u64 ceiling_over;
};

/* Key of a limited rule's table of buckets: the rule's slot and what its
 * --per keys by. Addresses are network order, masked to the prefix; IPv4 in
 * the first 4 bytes. Every byte is a field, so a key built on the stack is
 * whole. */
struct xdpctl_limit_key {
	__u32 slot;
	__u8 family;         /* 4, 6, or 0 (per rule; a frame that is not IP) */
	__u8 proto;          /* per flow */
	__u16 sport;         /* per flow, host order */
	__u16 dport;
	__u16 _pad0;
	__u32 _pad1;
	__u8 src[16];
	__u8 dst[16];        /* per flow */
};

/* A key's bucket (a value of a rule's table, shared by every CPU). */
struct xdpctl_bucket {
	__u64 tokens;
	__u64 last_ns;       /* bpf_ktime_get_ns of its last refill */
};

/*
 * Each limited rule has a table of its own: an LRU hash of
 * xdpctl_limit_key -> xdpctl_bucket of the rule's --table keys (a --per rule
 * rule: a few), which user space makes and puts in the buckets map, an
 * array of maps by slot, before the rule is written. One rule's churn never
 * evicts another's keys.
 */
#define XDPCTL_PIN_LIMITS         "limits"    /* + "_" + slots tag */
#define XDPCTL_PIN_BUCKETS        "lbuckets"  /* + "_" + slots tag; xdpctl_lbuckets: a kernel name */
#define XDPCTL_PIN_LIMIT_STATS    "lstats"  /* + "_" + slots tag */

/*
 * Bans (--block, `xdpctl ban`): the interface's ban list, an LRU hash of
 * source addresses checked before any rule (one lookup), compiled in with
 * -D XDPCTL_BANS (layout bit XDPCTL_FEAT_BANS) once a rule has --block.
 * A ban holds until expires_ns (bpf_ktime_get_ns, CLOCK_MONOTONIC): the
 * program drops a banned source's frames until then, counting them in
 * their class's drop and in the ban; an expired ban is ignored (and user
 * space removes it when it reads the list). Pinned: a replace keeps it.
 */
#define XDPCTL_FEAT_BANS          (1U << 17)
#define XDPCTL_BAN_ENTRIES        65536

struct xdpctl_ban_key {
	__u32 family;        /* 4 or 6 */
	__u8 addr[16];       /* network order, IPv4 in the first 4 bytes */
};

struct xdpctl_ban {
	__u64 expires_ns;
	__u64 added_ns;
	__u64 packets;       /* frames dropped since the ban */
	__u64 bytes;
	__u32 slot;          /* the rule whose --block banned it; XDPCTL_NO_RULE: ban add */
	__u32 _pad0;
};

#define XDPCTL_PIN_BANS           "bans"
/*
 * xdpctl trace (trace_kern.h): compiled in only while a trace runs (-D
 * XDPCTL_TRACE, with XDPCTL_TRACE_CAP the bytes a record holds). The trace
 * maps are made and pinned by xdpctl before the compile and removed when
 * the trace ends: trace_cfg (the selection, and who runs the trace),
 * trace_stats (per CPU), trace_ring (a BPF ring buffer of records), and
 * trace_prog (the traced program, while it is attached).
 */
#define XDPCTL_TRACE_BY_POLICY    0           /* no rule decided: the policy did */
#define XDPCTL_TRACE_BY_RULE      1           /* the rule in the record's slot */
#define XDPCTL_TRACE_BY_NON_IP    2           /* --drop-non-ip */
#define XDPCTL_TRACE_BY_BAN       3           /* the ban list (--block, xdpctl ban) */
#define XDPCTL_TRACE_ANY_SLOT     0xFFFFFFFF  /* trace_cfg.slot: any rule, or none */
#define XDPCTL_TRACE_CAP_MAX      4096        /* an XDP frame without fragments fits a page */
#define XDPCTL_TRACE_RING_BYTES   8388608     /* the ring buffer's size (a power of 2 of pages) */

/* trace_cfg, key 0: written by user space before the traced program goes in. */
struct xdpctl_trace_config {
	__u32 verdicts;      /* a bit per XDPCTL_VERDICT_* to select */
	__u32 classes;       /* a bit per XDPCTL_CLASS_* */
	__u32 deciders;      /* a bit per XDPCTL_TRACE_BY_* */
	__u32 slot;          /* the deciding rule's hit slot, or XDPCTL_TRACE_ANY_SLOT */
	__u32 sample;        /* keep one selected frame in sample, per CPU (>= 1) */
	__u32 snaplen;       /* bytes copied at most (<= XDPCTL_TRACE_CAP) */
	/* User space only: the trace's owner, for recovery. */
	__u32 pid;
	__u32 prog_id;       /* the traced program */
	__u64 pid_start;     /* the owner's start time (/proc/<pid>/stat, field 22) */
};

/* trace_stats, key 0, per CPU. */
struct xdpctl_trace_stats {
	__u64 matched;       /* frames the selection matched */
	__u64 sampled;       /* of those, the ones offered to the ring */
	__u64 lost;          /* of those, the ones the full ring refused */
	__u64 skip;          /* frames to skip before the next sample */
};

/* A ring record: this header, then caplen bytes of the frame. */
struct xdpctl_trace_record {
	__u64 ktime_ns;      /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u32 len;           /* the frame's length */
	__u32 caplen;        /* bytes that follow */
	__u32 ifindex;
	__u32 slot;          /* the deciding rule's hit slot, when by is RULE */
	__u8 verdict;        /* XDPCTL_VERDICT_* */
	__u8 class;          /* XDPCTL_CLASS_* */
	__u8 by;             /* XDPCTL_TRACE_BY_* */
	__u8 _pad0;
	__u32 _pad1;
};

#define XDPCTL_PIN_TRACE_CONFIG   "trace_cfg"
#define XDPCTL_PIN_TRACE_STATS    "trace_stats"
#define XDPCTL_PIN_TRACE_RING     "trace_ring"
#define XDPCTL_PIN_TRACE_PROG     "trace_prog"

#endif /* XDPCTL_KERN_USER_H */
