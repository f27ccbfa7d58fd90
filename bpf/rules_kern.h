/* SPDX-License-Identifier: GPL-2.0 */
/*
 * rules_kern.h - the rule engine's lookups, given the tables of the active
 * generation (the main file fetches them: BCC rewrites map calls only there).
 *
 * Every kind of match in use maps a frame's field to an equivalence class:
 * through an array indexed by the field (protocol, ports, VLAN id, EtherType,
 * TCP flags, ICMP type and code; whether a frame answers a flow the host
 * opened, which the main file looks up), or through a multibit trie (prefixes and
 * MACs: a 65536-entry root on the first 16 bits, then 256-entry blocks). A
 * class record holds, as a bitmap over rule positions (which sort by
 * priority, then insertion), the rules that class allows. ANDing the records
 * of all kinds gives the matching rules, and the lowest set bit the winner:
 * the cost depends on the kinds in use, not on how many rules there are.
 *
 * Layout parameters come as -D flags from xdpctl/layout.py, which computes
 * the same offsets to fill the tables (every array is a multiple of 8 bytes,
 * so the struct has no padding):
 *   XDPCTL_USE_<NAME>         a kind of match in use (XDPCTL_KIND_<NAME>)
 *   XDPCTL_TRIE_<T>           a trie in use: SRC4 SRC6 DST4 DST6 SMAC DMAC
 *   XDPCTL_NODES_<T>          its blocks (a power of two)
 *   XDPCTL_DEPTH_<T>          its levels below the root (the longest prefix's)
 *   XDPCTL_CAP_<NAME>         class records of a kind (a power of two)
 *   XDPCTL_WORDS              64-bit words per bitmap (rules / 64, rounded up)
 *   XDPCTL_DECISIONS          entries of the decision array (a power of two)
 *   XDPCTL_NDIMS              kinds in use; XDPCTL_GENERAL: general rules exist
 *
 *   XDPCTL_LIMITS             limited rules exist (limit_kern.h; the main file's buckets)
 *
 * May include: linux UAPI headers, xdpctl_kern_user.h, parse_kern.h.
 */
#ifndef XDPCTL_RULES_KERN_H
#define XDPCTL_RULES_KERN_H

#include "xdpctl_kern_user.h"
#include "parse_kern.h"

#define XDPCTL_SUMMARY            XDPCTL_SUMMARY_WORDS(XDPCTL_WORDS)
#ifdef XDPCTL_LIMITS
/* A record's last word: the limited rules it allows, bit k for limited[k]. */
#define XDPCTL_LIMIT_WORDS        1
#else
#define XDPCTL_LIMIT_WORDS        0
#endif /* XDPCTL_LIMITS */
#define XDPCTL_CW                 (1 + XDPCTL_SUMMARY + XDPCTL_WORDS + XDPCTL_LIMIT_WORDS)  /* u64 per record */

/* Declares a kind's class records, or nothing. */
#define XDPCTL_RECORDS(name, cap) __u64 cls_##name[(cap) * XDPCTL_CW];

struct xdpctl_tables {
	/* De Bruijn table for xdpctl_ctz64 (filled by user space). */
	__u8 ctz[64];
	/* Field-indexed arrays of class ids. */
#ifdef XDPCTL_USE_PROTO
	__u32 proto[256];
#endif
#ifdef XDPCTL_USE_SPORT
	__u32 sport[65536];
#endif
#ifdef XDPCTL_USE_DPORT
	__u32 dport[65536];
#endif
#ifdef XDPCTL_USE_VLAN
	__u32 vlan[4096];
#endif
#ifdef XDPCTL_USE_ETHERTYPE
	__u32 ethertype[65536];
#endif
#ifdef XDPCTL_USE_TCP_FLAGS
	__u32 tcp_flags[256];
#endif
#ifdef XDPCTL_USE_ICMP
	__u32 icmp[65536];
#endif
#ifdef XDPCTL_USE_ESTABLISHED
	__u32 established[2];        /* by pkt->established: a live flow or not */
#endif
	/* Tries: root, then blocks. */
#ifdef XDPCTL_TRIE_SRC4
	__u32 src4_root[XDPCTL_TRIE_ROOT];
	__u32 src4_node[XDPCTL_NODES_SRC4 * XDPCTL_TRIE_BLOCK];
#endif
#ifdef XDPCTL_TRIE_SRC6
	__u32 src6_root[XDPCTL_TRIE_ROOT];
	__u32 src6_node[XDPCTL_NODES_SRC6 * XDPCTL_TRIE_BLOCK];
#endif
#ifdef XDPCTL_TRIE_DST4
	__u32 dst4_root[XDPCTL_TRIE_ROOT];
	__u32 dst4_node[XDPCTL_NODES_DST4 * XDPCTL_TRIE_BLOCK];
#endif
#ifdef XDPCTL_TRIE_DST6
	__u32 dst6_root[XDPCTL_TRIE_ROOT];
	__u32 dst6_node[XDPCTL_NODES_DST6 * XDPCTL_TRIE_BLOCK];
#endif
#ifdef XDPCTL_TRIE_SMAC
	__u32 smac_root[XDPCTL_TRIE_ROOT];
	__u32 smac_node[XDPCTL_NODES_SMAC * XDPCTL_TRIE_BLOCK];
#endif
#ifdef XDPCTL_TRIE_DMAC
	__u32 dmac_root[XDPCTL_TRIE_ROOT];
	__u32 dmac_node[XDPCTL_NODES_DMAC * XDPCTL_TRIE_BLOCK];
#endif
	/* Class records, in XDPCTL_KIND_* bit order. */
#ifdef XDPCTL_USE_SRC
	XDPCTL_RECORDS(src, XDPCTL_CAP_SRC)
#endif
#ifdef XDPCTL_USE_DST
	XDPCTL_RECORDS(dst, XDPCTL_CAP_DST)
#endif
#ifdef XDPCTL_USE_PROTO
	XDPCTL_RECORDS(proto, XDPCTL_CAP_PROTO)
#endif
#ifdef XDPCTL_USE_SPORT
	XDPCTL_RECORDS(sport, XDPCTL_CAP_SPORT)
#endif
#ifdef XDPCTL_USE_DPORT
	XDPCTL_RECORDS(dport, XDPCTL_CAP_DPORT)
#endif
#ifdef XDPCTL_USE_SRC_MAC
	XDPCTL_RECORDS(src_mac, XDPCTL_CAP_SRC_MAC)
#endif
#ifdef XDPCTL_USE_DST_MAC
	XDPCTL_RECORDS(dst_mac, XDPCTL_CAP_DST_MAC)
#endif
#ifdef XDPCTL_USE_VLAN
	XDPCTL_RECORDS(vlan, XDPCTL_CAP_VLAN)
#endif
#ifdef XDPCTL_USE_ETHERTYPE
	XDPCTL_RECORDS(ethertype, XDPCTL_CAP_ETHERTYPE)
#endif
#ifdef XDPCTL_USE_TCP_FLAGS
	XDPCTL_RECORDS(tcp_flags, XDPCTL_CAP_TCP_FLAGS)
#endif
#ifdef XDPCTL_USE_ICMP
	XDPCTL_RECORDS(icmp, XDPCTL_CAP_ICMP)
#endif
#ifdef XDPCTL_USE_ESTABLISHED
	XDPCTL_RECORDS(established, XDPCTL_CAP_ESTABLISHED)
#endif
#ifdef XDPCTL_LIMITS
	/* The decision index of each limited rule, in decision order
	 * (XDPCTL_NO_RULE past the last). */
	__u32 limited[XDPCTL_LIMIT_K];
#endif /* XDPCTL_LIMITS */
	struct xdpctl_decision decision[XDPCTL_DECISIONS];
};

/* A class record's first u64: the best plain rule (decision index) or none. */
static __always_inline __u32 xdpctl_plain(const __u64 *rec)
{
	return (__u32)rec[0];
}


/*
 * The verifier walks every path through the parser separately (each VLAN
 * and extension-header layout gives its own constants), and would walk the
 * rule search once per path, past its limit. A value stored to map memory
 * and loaded back is unknown to it, with no history for its precision
 * tracking to follow back (as it would through arithmetic), so paths that
 * differ only in such values merge. The scratch is per CPU; the barrier
 * (on that one slot, so nothing else is reloaded) keeps LLVM from
 * forwarding the store to the load.
 */
struct xdpctl_scratch {
	__u64 v;
};

#define XDPCTL_MERGE(x, sc)                                        \
	({                                                         \
		(sc)->v = (x);                                     \
		asm volatile("" : "+m"((sc)->v));                  \
		(typeof(x))(sc)->v;                                \
	})

/*
 * Walk a trie: the root by the first two key bytes, then one block per
 * further byte while the entry points to a block, at most `depth` blocks
 * (the deepest any prefix in it needs: the layout's XDPCTL_DEPTH_<T>).
 * The key is in the packet, all of it checked by the caller; every index is
 * masked to its array. Each exit is its own path for the verifier: the
 * caller merges the result.
 */
static __always_inline __u32 xdpctl_trie(const __u32 *root, const __u32 *node, __u32 nodes,
					 const __u8 *key, const int depth)
{
	/* Verifier: 6.1 loses the bounds of an OR of two unknown values: add (opaque, or LLVM ORs; 64-bit, no zext). */
	__u32 e = root[xdpctl_opaque64((__u64)key[0] << 8) + key[1]];
	int i;

#pragma unroll
	for (i = 0; i < depth; i++) {
		if (!(e & XDPCTL_TRIE_CHILD))
			return e;
		/* Verifier: as for the root; the mask goes first, or LLVM moves it before an OR. */
		e = node[xdpctl_opaque(((e & ~XDPCTL_TRIE_CHILD) << 8) & (nodes * XDPCTL_TRIE_BLOCK - 1)) + key[2 + i]];
	}
	/* A well-built trie ends in a class id; a pointer here means class 0.
	 * Masked without a branch: every exit then returns an unknown value
	 * with bit 31 clear, the same state, and the verifier merges them. */
	return e & ~XDPCTL_ALL(e >> 31);
}

/* The record of class c among cap records. */
static __always_inline const __u64 *xdpctl_record(const __u64 *records, __u32 cap, __u32 c)
{
	return records + (c & (cap - 1)) * XDPCTL_CW;
}

/*
 * Index of the lowest set bit of x (x != 0): BPF has no ctz instruction,
 * and BCC cannot place the table LLVM would emit, so the de Bruijn table
 * lives in the tables map (XDPCTL_DEBRUIJN is its multiplier).
 */
#define XDPCTL_DEBRUIJN 0x03f79d71b4cb0a89ULL

static __always_inline __u32 xdpctl_ctz64(const struct xdpctl_tables *t, __u64 x)
{
	return t->ctz[((x & -x) * XDPCTL_DEBRUIJN) >> 58];
}

/*
 * The L3 header from its offset, with the bounds check of its family's fixed
 * header, or NULL when the frame has none (ipv is then 0).
 */
static __always_inline const __u8 *xdpctl_l3(struct xdpctl_pkt *pkt, void *data, void *data_end)
{
	const __u8 *l3 = data + (pkt->l3_off & 0x3f);  /* at most 14 + two tags */

	/* Bounds: the fixed header of the family. */
	if (pkt->ipv == 6) {
		if ((void *)(l3 + 40) > data_end)
			goto none;
		return l3;
	}
	if (pkt->ipv == 4) {
		if ((void *)(l3 + 20) > data_end)
			goto none;
		return l3;
	}
none:
	pkt->ipv = 0;
	return 0;
}

/* An order no rule has: the best so far before any candidate. */
#define XDPCTL_NO_ORDER (1ULL << 62)

#ifdef XDPCTL_LIMITS
/* The main file's (it looks the buckets up): 1 when the rule in slot is
 * limited and the frame is within its rate, so that rule does not match. */
static __always_inline int xdpctl_limit_within(__u32 slot, const struct xdpctl_pkt *pkt, const __u8 *l3);
#endif /* XDPCTL_LIMITS */

/*
 * Keep the best plain rule of a prefix class if it beats the best so far,
 * without a branch (see XDPCTL_ALL): orders are below 2^48, so the sign of
 * their difference is their comparison.
 */
static __always_inline void xdpctl_take_plain(const struct xdpctl_tables *t, const __u64 *rec,
					      __u32 *best, __u64 *best_order)
{
	__u32 p = xdpctl_plain(rec);
	__u64 order = t->decision[p & (XDPCTL_DECISIONS - 1)].order;
	__u64 take = -(__u64)(xdpctl_nonzero(p ^ XDPCTL_NO_RULE) & ((order - *best_order) >> 63));

	take = xdpctl_opaque64(take);
	*best = (p & take) | (*best & ~take);
	*best_order = (order & take) | (*best_order & ~take);
}

/* The class of a field-indexed kind: class 0 when the frame lacks the field
 * (present is 0 or 1), without a branch. */
/* Verifier: mask behind a barrier; LLVM drops it after an OR or a byte swap, which 6.1/6.12 do not bound. */
#define XDPCTL_VALUE(t, field, present, index, size) \
	((t)->field[xdpctl_opaque(index) & ((size) - 1)] & XDPCTL_ALL(present))

/*
 * The decision index of the rule that decides the frame, or XDPCTL_NO_RULE.
 * Kinds the frame lacks (ports of an ICMP frame, addresses of ARP) take
 * class 0, whose record holds exactly the rules that do not use that kind.
 */
static __always_inline __u32 xdpctl_match(const struct xdpctl_tables *t, const struct xdpctl_pkt *pkt,
					  const __u8 *l3, void *data, struct xdpctl_scratch *sc)
{
	const __u64 *rec[XDPCTL_NDIMS > 0 ? XDPCTL_NDIMS : 1];
	__u64 best_order = XDPCTL_NO_ORDER;
	__u32 best = XDPCTL_NO_RULE;
	int nd = 0;
	__u32 c;

	(void)l3;
#ifdef XDPCTL_USE_SRC
	c = 0;
#ifdef XDPCTL_TRIE_SRC4
	if (l3 && pkt->ipv == 4)
		c = xdpctl_trie(t->src4_root, t->src4_node, XDPCTL_NODES_SRC4, l3 + 12, XDPCTL_DEPTH_SRC4);
#endif /* XDPCTL_TRIE_SRC4 */
#ifdef XDPCTL_TRIE_SRC6
	if (l3 && pkt->ipv == 6)
		c = xdpctl_trie(t->src6_root, t->src6_node, XDPCTL_NODES_SRC6, l3 + 8, XDPCTL_DEPTH_SRC6);
#endif /* XDPCTL_TRIE_SRC6 */
	rec[nd] = xdpctl_record(t->cls_src, XDPCTL_CAP_SRC, c);
	xdpctl_take_plain(t, rec[nd], &best, &best_order);
	nd++;
#endif /* XDPCTL_USE_SRC */
#ifdef XDPCTL_USE_DST
	c = 0;
#ifdef XDPCTL_TRIE_DST4
	if (l3 && pkt->ipv == 4)
		c = xdpctl_trie(t->dst4_root, t->dst4_node, XDPCTL_NODES_DST4, l3 + 16, XDPCTL_DEPTH_DST4);
#endif /* XDPCTL_TRIE_DST4 */
#ifdef XDPCTL_TRIE_DST6
	if (l3 && pkt->ipv == 6)
		c = xdpctl_trie(t->dst6_root, t->dst6_node, XDPCTL_NODES_DST6, l3 + 24, XDPCTL_DEPTH_DST6);
#endif /* XDPCTL_TRIE_DST6 */
	rec[nd] = xdpctl_record(t->cls_dst, XDPCTL_CAP_DST, c);
	xdpctl_take_plain(t, rec[nd], &best, &best_order);
	nd++;
#endif /* XDPCTL_USE_DST */
#ifdef XDPCTL_USE_PROTO
	/* l4 is set once the protocol field (or the upper layer) is known. */
	c = XDPCTL_VALUE(t, proto, pkt->has_proto, pkt->l4proto, 256);
	rec[nd++] = xdpctl_record(t->cls_proto, XDPCTL_CAP_PROTO, c);
#endif /* XDPCTL_USE_PROTO */
#ifdef XDPCTL_USE_SPORT
	c = XDPCTL_VALUE(t, sport, pkt->has_ports, pkt->sport, 65536);
	rec[nd++] = xdpctl_record(t->cls_sport, XDPCTL_CAP_SPORT, c);
#endif /* XDPCTL_USE_SPORT */
#ifdef XDPCTL_USE_DPORT
	c = XDPCTL_VALUE(t, dport, pkt->has_ports, pkt->dport, 65536);
	rec[nd++] = xdpctl_record(t->cls_dport, XDPCTL_CAP_DPORT, c);
#endif /* XDPCTL_USE_DPORT */
	/* The MACs: the caller checked that the Ethernet header is in the frame. */
#ifdef XDPCTL_USE_SRC_MAC
	c = xdpctl_trie(t->smac_root, t->smac_node, XDPCTL_NODES_SMAC, (const __u8 *)data + 6, XDPCTL_DEPTH_SMAC);
	rec[nd++] = xdpctl_record(t->cls_src_mac, XDPCTL_CAP_SRC_MAC, c);
#endif /* XDPCTL_USE_SRC_MAC */
#ifdef XDPCTL_USE_DST_MAC
	c = xdpctl_trie(t->dmac_root, t->dmac_node, XDPCTL_NODES_DMAC, (const __u8 *)data, XDPCTL_DEPTH_DMAC);
	rec[nd++] = xdpctl_record(t->cls_dst_mac, XDPCTL_CAP_DST_MAC, c);
#endif /* XDPCTL_USE_DST_MAC */
#ifdef XDPCTL_USE_VLAN
	c = XDPCTL_VALUE(t, vlan, xdpctl_nonzero(pkt->nvlan), pkt->vlan_id, 4096);
	rec[nd++] = xdpctl_record(t->cls_vlan, XDPCTL_CAP_VLAN, c);
#endif /* XDPCTL_USE_VLAN */
#ifdef XDPCTL_USE_ETHERTYPE
	c = XDPCTL_VALUE(t, ethertype, 1, bpf_ntohs(pkt->ethertype), 65536);
	rec[nd++] = xdpctl_record(t->cls_ethertype, XDPCTL_CAP_ETHERTYPE, c);
#endif /* XDPCTL_USE_ETHERTYPE */
#ifdef XDPCTL_USE_TCP_FLAGS
	c = XDPCTL_VALUE(t, tcp_flags, pkt->has_tcp_flags, pkt->tcp_flags, 256);
	rec[nd++] = xdpctl_record(t->cls_tcp_flags, XDPCTL_CAP_TCP_FLAGS, c);
#endif /* XDPCTL_USE_TCP_FLAGS */
#ifdef XDPCTL_USE_ICMP
	c = XDPCTL_VALUE(t, icmp, pkt->has_icmp, ((__u32)pkt->icmp_type << 8) | pkt->icmp_code, 65536);
	rec[nd++] = xdpctl_record(t->cls_icmp, XDPCTL_CAP_ICMP, c);
#endif /* XDPCTL_USE_ICMP */
#ifdef XDPCTL_USE_ESTABLISHED
	/* Looked up by the main file (the flow table is a map): 0 or 1. */
	c = XDPCTL_VALUE(t, established, 1, pkt->established, 2);
	rec[nd++] = xdpctl_record(t->cls_established, XDPCTL_CAP_ESTABLISHED, c);
#endif /* XDPCTL_USE_ESTABLISHED */
	(void)nd;
	(void)c;

#ifdef XDPCTL_GENERAL
	{
		/*
		 * The general rules. A record's summary marks the bitmap words
		 * holding a rule for which this kind is the most selective one
		 * (its "primary" kind) and which this class allows: a rule can
		 * match only if its primary kind allows it, so the OR of the
		 * summaries names every word that may hold a match. Within one,
		 * the AND of the records' bitmaps is exactly the matching rules,
		 * and the lowest set bit the first in decision order.
		 */
		__u32 pos = XDPCTL_NO_RULE;
		int s, i, d;

#pragma unroll
		for (s = 0; s < XDPCTL_SUMMARY; s++) {
			__u64 m = XDPCTL_NDIMS ? 0 : ~0ULL;

#pragma unroll
			for (d = 0; d < XDPCTL_NDIMS; d++)
				m |= rec[d][1 + s];
			if (pos != XDPCTL_NO_RULE)
				m = 0;  /* found in an earlier summary word */
			for (i = 0; i < 64 && m; i++) {
				__u32 w = s * 64 + xdpctl_ctz64(t, m);
				__u64 x = ~0ULL;

#pragma unroll
				for (d = 0; d < XDPCTL_NDIMS; d++)
					x &= rec[d][1 + XDPCTL_SUMMARY + (w & (XDPCTL_WORDS - 1))];
				if (x) {
					pos = w * 64 + xdpctl_ctz64(t, x);
					break;
				}
				m &= m - 1;
			}
			/* Every exit from the loop above is its own path: merge them
			 * before the next summary word (after the last, only a short
			 * tail follows). */
			if (s + 1 < XDPCTL_SUMMARY)
				pos = XDPCTL_MERGE(pos, sc);
		}
		if (pos != XDPCTL_NO_RULE) {
			__u64 order = t->decision[pos & (XDPCTL_DECISIONS - 1)].order;

			if (order < best_order) {
				best = pos;
				best_order = order;
			}
		}
	}
#endif /* XDPCTL_GENERAL */
#ifdef XDPCTL_LIMITS
	{
		/*
		 * The limited rules (nftables' `limit rate over`): kept out of the
		 * bitmaps above, each is a bit of every record's last word. The AND
		 * of those words is the limited rules the frame meets; in decision
		 * order, the first that orders before the winner so far and whose
		 * bucket the frame goes over decides. One within its rate does not
		 * match, and the next is consulted: at most XDPCTL_LIMIT_K, the
		 * most an interface holds, each its own bucket lookup.
		 */
		__u64 lm = ~0ULL;
		int k;

#pragma unroll
		for (k = 0; k < XDPCTL_NDIMS; k++)
			lm &= rec[k][XDPCTL_CW - 1];
#pragma unroll
		for (k = 0; k < XDPCTL_LIMIT_K; k++) {
			__u32 p = t->limited[k];
			const struct xdpctl_decision *dec;

			if (p == XDPCTL_NO_RULE)
				break;
			if (!(lm & (1ULL << k)))
				continue;
			dec = &t->decision[p & (XDPCTL_DECISIONS - 1)];
			if (dec->order >= best_order)
				break;  /* it and the rest order after the winner: their buckets do not pay */
			if (!xdpctl_limit_within(dec->slot, pkt, l3)) {
				best = p;
				break;
			}
		}
	}
#endif /* XDPCTL_LIMITS */
	return best;
}

#endif /* XDPCTL_RULES_KERN_H */
