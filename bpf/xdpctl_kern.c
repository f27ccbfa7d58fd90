/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xdpctl_kern.c - the XDP program xdpctl attaches to an interface.
 *
 * Classifies every frame (parse_kern.h), decides pass or drop, and counts
 * packets and bytes for each class and verdict in a per-CPU array.
 *
 * Variants are chosen with -D flags (xdpctl/program.py builds them); every
 * variant is valid C, and `xdpctl attach --ebpf` prints the one compiled:
 *   XDPCTL_PIN_DIR="/sys/fs/bpf/..."  pin the maps there (reusing maps that
 *                                     are already pinned); unset: unpinned
 *   XDPCTL_DROP_NON_IP               drop frames that are neither IPv4 nor IPv6
 *   XDPCTL_POLICY_DENY               drop what no rule decides (default: pass)
 *   XDPCTL_RULES, XDPCTL_LAYOUT_TAG  the rule engine and its layout (rules_kern.h)
 *   XDPCTL_REDIRECT_DEV, XDPCTL_REDIRECT_CPU, XDPCTL_TX
 *                                    actions beyond pass and drop (action_kern.h)
 *   XDPCTL_USE_ESTABLISHED           (of the layout) the flow table's lookup (flow_kern.h)
 *   XDPCTL_LIMITS                    (of the layout) rate limits: the buckets (limit_kern.h)
 *   XDPCTL_BANS                      (of the layout) the ban list, before any rule (ban_kern.h)
 *   XDPCTL_TRACE, XDPCTL_TRACE_CAP   xdpctl trace's capture path, only while a
 *                                    trace runs (trace_kern.h)
 *
 * BCC rewrites map calls only in this file, so every map and every function
 * that touches one lives here; map-free logic lives in the *_kern.h headers.
 *
 * May include: BCC's virtual headers, linux UAPI headers, *_kern.h.
 */
#include <uapi/linux/bpf.h>
#include "xdpctl_kern_user.h"
#include "parse_kern.h"
#ifdef XDPCTL_RULES
#include "rules_kern.h"
#endif /* XDPCTL_RULES */
#include "action_kern.h"
#ifdef XDPCTL_USE_ESTABLISHED
#include "flow_kern.h"
#endif /* XDPCTL_USE_ESTABLISHED */
#ifdef XDPCTL_LIMITS
#include "limit_kern.h"
#endif /* XDPCTL_LIMITS */
#ifdef XDPCTL_BANS
#include "ban_kern.h"
#endif /* XDPCTL_BANS */
#include "trace_kern.h"

#ifdef XDPCTL_PIN_DIR
#define XDPCTL_MAP(type, key, val, name, max, pin) \
	BPF_TABLE_PINNED(type, key, val, name, max, XDPCTL_PIN_DIR "/" pin)
#define XDPCTL_MAP_F(type, key, val, name, max, pin, flags) \
	BPF_TABLE_PINNED(type, key, val, name, max, XDPCTL_PIN_DIR "/" pin, flags)
#else
#define XDPCTL_MAP(type, key, val, name, max, pin) \
	BPF_TABLE(type, key, val, name, max)
#define XDPCTL_MAP_F(type, key, val, name, max, pin, flags) \
	BPF_F_TABLE(type, key, val, name, max, flags)
#endif /* XDPCTL_PIN_DIR */

XDPCTL_MAP("percpu_array", __u32, struct xdpctl_class_counters, xdpctl_counters,
	   XDPCTL_CLASS_MAX, XDPCTL_PIN_COUNTERS);
/* Written by user space only; see struct xdpctl_meta. */
XDPCTL_MAP("array", __u32, struct xdpctl_meta, xdpctl_meta, 1, XDPCTL_PIN_META);

/* verdict is an XDPCTL_VERDICT_* (pass or drop: 0 or 1, without the actions). */
static __always_inline void xdpctl_count(__u32 class, __u32 verdict, __u64 bytes)
{
	struct xdpctl_class_counters *cc = xdpctl_counters.lookup(&class);
	struct xdpctl_counter *c;

	/* Never NULL (class < XDPCTL_CLASS_MAX), but the verifier needs the check. */
	if (!cc)
		return;
	c = &cc->verdict[XDPCTL_VERDICT_INDEX(verdict)];
	/* Per-CPU slot: no other CPU writes it, so no atomics are needed. */
	c->packets++;
	c->bytes += bytes;
}

#ifdef XDPCTL_TRACE
/*
 * xdpctl trace: its maps, made and pinned by xdpctl before the compile (BCC
 * opens the pins), and the capture of a counted frame. The ring is declared
 * as BCC's BPF_RINGBUF_OUTPUT declares one, at its pin.
 */
struct xdpctl_tring_table_t {
	int key;
	u32 leaf;
	void *(*ringbuf_reserve)(u64);        /* map.ringbuf_reserve(size) */
	void (*ringbuf_submit)(void *, u64);  /* map.ringbuf_submit(data, flags) */
	u32 max_entries;
};
__attribute__((section("maps/ringbuf:" XDPCTL_PIN_DIR "/" XDPCTL_PIN_TRACE_RING)))
struct xdpctl_tring_table_t xdpctl_tring = { .max_entries = XDPCTL_TRACE_RING_BYTES };
BPF_TABLE_PINNED("array", __u32, struct xdpctl_trace_config, xdpctl_tcfg, 1,
		 XDPCTL_PIN_DIR "/" XDPCTL_PIN_TRACE_CONFIG);
BPF_TABLE_PINNED("percpu_array", __u32, struct xdpctl_trace_stats, xdpctl_tstats, 1,
		 XDPCTL_PIN_DIR "/" XDPCTL_PIN_TRACE_STATS);

/* Copy a frame the selection takes (one in cfg->sample per CPU) to the ring,
 * with the verdict it was counted under and who decided it. */
static __always_inline void xdpctl_trace(struct xdp_md *ctx, const struct xdpctl_pkt *pkt, __u32 verdict,
					 __u64 bytes)
{
	struct xdpctl_trace_config *cfg;
	struct xdpctl_trace_stats *st;
	struct xdpctl_trace_frame *f;
	__u32 zero = 0, len;

	cfg = xdpctl_tcfg.lookup(&zero);
	st = xdpctl_tstats.lookup(&zero);
	if (!cfg || !st || !xdpctl_trace_selects(cfg, pkt, verdict) || !xdpctl_trace_sampled(cfg, st))
		return;
	f = xdpctl_tring.ringbuf_reserve(sizeof(*f));
	if (!f) {
		st->lost++;  /* the ring is full: user space reads too slowly */
		return;
	}
	len = xdpctl_trace_caplen(cfg, bytes);
	if (len) {
		/* 1..capacity as the verifier sees it (the helper refuses 0 bytes):
		 * the same number for every len from 1 to the capacity. */
		len = ((len - 1) & (XDPCTL_TRACE_CAP - 1)) + 1;
		if (bpf_xdp_load_bytes(ctx, 0, f->data, len))
			len = 0;
	}
	f->rec.ktime_ns = bpf_ktime_get_ns();
	f->rec.len = bytes;
	f->rec.caplen = len;
	f->rec.ifindex = ctx->ingress_ifindex;
	f->rec.slot = pkt->trace_slot;
	f->rec.verdict = verdict;
	f->rec.class = pkt->class;
	f->rec.by = pkt->trace_by;
	f->rec._pad0 = 0;
	f->rec._pad1 = 0;
	xdpctl_tring.ringbuf_submit(f, 0);
}
#define XDPCTL_TRACE_FRAME(ctx, pkt, verdict, bytes) xdpctl_trace(ctx, pkt, verdict, bytes)
#endif /* XDPCTL_TRACE */

#ifdef XDPCTL_RULES
/* The active generation, and the rules of both (user space only reads them). */
XDPCTL_MAP("array", __u32, struct xdpctl_config, xdpctl_config, 1, XDPCTL_PIN_CONFIG);
XDPCTL_MAP_F("hash", struct xdpctl_rule_key, struct xdpctl_rule, xdpctl_rules, 2 * XDPCTL_MAX_RULES,
	     XDPCTL_PIN_RULES, BPF_F_NO_PREALLOC);
/*
 * Both generations' tables. xdpctl creates and pins this map itself, sized
 * for struct xdpctl_tables, before compiling: BCC generates code for every
 * element of a map's value type, which takes seconds per megabyte, so here
 * the map is declared with a stand-in type and BCC just opens the pin. The
 * verifier checks every access against the real map.
 */
struct xdpctl_tables_pin {
	__u64 first;
};
BPF_TABLE_PINNED("array", __u32, struct xdpctl_tables_pin, xdpctl_tables, 2,
		 XDPCTL_PIN_DIR "/" XDPCTL_PIN_TABLES "_" XDPCTL_LAYOUT_TAG);
/* Per-CPU scratch for XDPCTL_MERGE (the program's own: never pinned). */
BPF_TABLE("percpu_array", __u32, struct xdpctl_scratch, xdpctl_scratch, 1);
/* The per-rule hits, by slot. */
XDPCTL_MAP("percpu_array", __u32, struct xdpctl_counter, xdpctl_hits, XDPCTL_SLOTS,
	   XDPCTL_PIN_HITS "_" XDPCTL_SLOTS_TAG);

#ifdef XDPCTL_USE_ESTABLISHED
/*
 * The flow table the TC egress program (egress_kern.c) fills, and the
 * interface's flow settings. xdpctl creates both at their pins before it
 * compiles (the table's size is the interface's), so these declarations
 * only open them; the table outlives every program that uses it.
 */
XDPCTL_MAP("lru_hash", struct xdpctl_flow_key, struct xdpctl_flow, xdpctl_flows, XDPCTL_FLOW_ENTRIES_DEFAULT,
	   XDPCTL_PIN_FLOWS);
XDPCTL_MAP("array", __u32, struct xdpctl_flow_config, xdpctl_flow_cfg, 1, XDPCTL_PIN_FLOW_CONFIG);
BPF_TABLE("percpu_array", __u32, struct xdpctl_flow_scratch, xdpctl_flow_scr, 1);

/* 1 when the frame answers a live flow, which it then refreshes and counts. */
static __always_inline __u64 xdpctl_flow_answer(const struct xdpctl_pkt *pkt, const __u8 *l3, void *data,
						void *data_end, __u64 bytes)
{
	struct xdpctl_flow_config *cfg;
	struct xdpctl_flow_key key;
	struct xdpctl_flow *f;
	__u32 zero = 0;
	__u64 now;

	if (!xdpctl_flow_key_in(&key, pkt, l3, data, data_end))
		return 0;
	f = xdpctl_flows.lookup(&key);
	cfg = xdpctl_flow_cfg.lookup(&zero);
	if (!f || !cfg)
		return 0;
	now = bpf_ktime_get_coarse_ns();  /* the clock of struct xdpctl_flow */
	if (!xdpctl_flow_live(f, cfg, now))
		return 0;
	f->last_seen = now;
	/* The table is shared by every CPU. */
	__sync_fetch_and_add(&f->packets_in, 1);
	__sync_fetch_and_add(&f->bytes_in, bytes);
	if (pkt->tcp_flags & (XDPCTL_TCP_FIN | XDPCTL_TCP_RST))  /* only TCP frames have flags */
		f->timeout = XDPCTL_FLOW_CLOSING;
	return 1;
}

/*
 * pkt->established, for the rule engine. The answer goes through per-CPU
 * memory, as XDPCTL_MERGE's values do: every path through the lookup (each
 * kind of key, found or not, live or not) then reaches the rule search with
 * the same unknown 0-or-1, and the verifier walks that search once.
 */
static __always_inline void xdpctl_established(struct xdpctl_pkt *pkt, const __u8 *l3, void *data,
					       void *data_end, __u64 bytes)
{
	struct xdpctl_flow_scratch *sc;
	__u32 zero = 0;

	sc = xdpctl_flow_scr.lookup(&zero);
	if (!sc)
		return;
	sc->answer = xdpctl_flow_answer(pkt, l3, data, data_end, bytes);
	asm volatile("" : "+m"(sc->answer));
	pkt->established = sc->answer & 1;
}
#endif /* XDPCTL_USE_ESTABLISHED */

#ifdef XDPCTL_BANS
/* The interface's ban list (struct xdpctl_ban): written by --block here and
 * by `xdpctl ban`; bounded, and pinned, so a replace keeps it. */
XDPCTL_MAP("lru_hash", struct xdpctl_ban_key, struct xdpctl_ban, xdpctl_bans, XDPCTL_BAN_ENTRIES, XDPCTL_PIN_BANS);

/* 1 when the frame's source is banned (until its ban expires): counted in the ban. */
static __always_inline int xdpctl_banned(const struct xdpctl_pkt *pkt, const __u8 *l3, __u64 bytes)
{
	struct xdpctl_ban_key key;
	struct xdpctl_ban *b;

	if (!xdpctl_ban_key_of(&key, pkt, l3))
		return 0;
	b = xdpctl_bans.lookup(&key);
	if (!b || bpf_ktime_get_ns() >= b->expires_ns)
		return 0;
	/* Shared by every CPU. */
	__sync_fetch_and_add(&b->packets, 1);
	__sync_fetch_and_add(&b->bytes, bytes);
	return 1;
}

/* Ban the frame's source for block_ns from now (--block). */
static __always_inline void xdpctl_ban(const struct xdpctl_pkt *pkt, const __u8 *l3, __u32 slot, __u64 now,
				       __u64 block_ns)
{
	struct xdpctl_ban_key key;
	struct xdpctl_ban ban = {};

	if (!xdpctl_ban_key_of(&key, pkt, l3))
		return;
	ban.expires_ns = now + block_ns;
	ban.added_ns = now;
	ban.slot = slot;
	xdpctl_bans.update(&key, &ban);
}
#endif /* XDPCTL_BANS */

#ifdef XDPCTL_LIMITS
/*
 * The limited rules, by slot (written by user space), and each one's table
 * of buckets: the buckets map holds, by slot, an LRU hash of the rule's own
 * size that user space made (xdpctl_kern_user.h), bounded whatever arrives.
 * An array of maps: its lookup is an index, inlined. Pinned: a replace keeps
 * every table. xdpctl_bucket_tmpl is never used: BCC makes it for the
 * buckets map's inner map type (LRU hash, key, value).
 */
XDPCTL_MAP("array", __u32, struct xdpctl_limit, xdpctl_limits, XDPCTL_SLOTS,
	   XDPCTL_PIN_LIMITS "_" XDPCTL_SLOTS_TAG);
BPF_TABLE("lru_hash", struct xdpctl_limit_key, struct xdpctl_bucket, xdpctl_bucket_tmpl, 1);
XDPCTL_MAP("array_of_maps$xdpctl_bucket_tmpl", __u32, int, xdpctl_buckets, XDPCTL_SLOTS,
	   XDPCTL_PIN_BUCKETS "_" XDPCTL_SLOTS_TAG);

/* What each limited rule saw, by slot (per CPU: no atomics). */
XDPCTL_MAP("percpu_array", __u32, struct xdpctl_limit_stats, xdpctl_lstats, XDPCTL_SLOTS,
	   XDPCTL_PIN_LIMIT_STATS "_" XDPCTL_SLOTS_TAG);

/*
 * A frame of a key not in the table: 1 when the rule's ceiling lets it in
 * (or the rule has none), taking the ceiling's tokens. The ceiling is the
 * rule's bucket under the key of family XDPCTL_LIMIT_FAMILY_CEILING.
 */
static __always_inline int xdpctl_ceiling_admits(void *table, __u32 slot, const struct xdpctl_limit *lim,
						 __u64 now, __u64 bytes)
{
	struct xdpctl_limit_key key;
	struct xdpctl_bucket *b, fresh;
	int over;

	if (!(lim->flags & XDPCTL_LIMIT_CEILING))
		return 1;
	__builtin_memset(&key, 0, sizeof(key));
	key.slot = slot;
	key.family = XDPCTL_LIMIT_FAMILY_CEILING;
	b = bpf_map_lookup_elem(table, &key);
	if (b)
		return !xdpctl_ceiling_over(b, lim, now, bytes);
	fresh.tokens = lim->c_capacity;
	fresh.last_ns = now;
	over = xdpctl_ceiling_over(&fresh, lim, now, bytes);
	bpf_map_update_elem(table, &key, &fresh, BPF_ANY);
	return !over;
}

static __always_inline int xdpctl_limit_within(__u32 slot, const struct xdpctl_pkt *pkt, const __u8 *l3)
{
	struct xdpctl_limit_stats *st;
	struct xdpctl_limit_key key;
	struct xdpctl_bucket *b, fresh;
	struct xdpctl_limit *lim;
	void *table;
	__u64 now;
	int within;

	lim = xdpctl_limits.lookup(&slot);
	if (!lim || !(lim->flags & XDPCTL_LIMIT_ON))
		return 0;  /* not limited: it matches */
	table = xdpctl_buckets.lookup(&slot);
	if (!table)
		return 0;  /* user space puts the table in before the rule: never */
	/* The statistics (st) are looked up only where they change: a frame
	 * over its key's rate, a flood's, pays no lookup for them. */
	xdpctl_limit_key_of(&key, slot, lim, pkt, l3);
	/* The precise clock: a coarse one would let a burst through in steps of a tick. */
	now = bpf_ktime_get_ns();
	b = bpf_map_lookup_elem(table, &key);
	if (b) {
		/* Shared by every CPU without a lock: two CPUs at once may both
		 * take the same tokens (docs/rules.md, the accuracy). */
		within = !xdpctl_bucket_over(b, lim, now, pkt->bytes);
	} else if (!xdpctl_ceiling_admits(table, slot, lim, now, pkt->bytes)) {
		/* Not in the table and over the ceiling: over, and the key is
		 * not added (a spoofed flood cannot churn the table past it). */
		st = xdpctl_lstats.lookup(&slot);
		if (st)
			st->ceiling_over++;
		return 0;
	} else {
		/* A full bucket (the LRU evicts the oldest key to make room). */
		fresh.tokens = lim->capacity;
		fresh.last_ns = now;
		within = !xdpctl_bucket_over(&fresh, lim, now, pkt->bytes);
		bpf_map_update_elem(table, &key, &fresh, BPF_ANY);
		st = xdpctl_lstats.lookup(&slot);
		if (st)
			st->new_keys++;
	}
	if (within) {
		st = xdpctl_lstats.lookup(&slot);
		if (st) {
			st->within++;
			st->within_bytes += pkt->bytes;
		}
	}
#ifdef XDPCTL_BANS
	else if (lim->block_ns) {
		xdpctl_ban(pkt, l3, slot, now, lim->block_ns);  /* over its own rate: --block */
	}
#endif /* XDPCTL_BANS */
	return within;
}
#endif /* XDPCTL_LIMITS */

_Static_assert(XDPCTL_ACTION_PASS == XDPCTL_VERDICT_PASS && XDPCTL_ACTION_DROP == XDPCTL_VERDICT_DROP,
	       "a rule's action is its verdict");

/* 1 and the winning rule's action when a rule decides the frame, else 0;
 * st gets what steers a redirect. */
static __always_inline int xdpctl_decide(struct xdp_md *ctx, struct xdpctl_pkt *pkt, __u64 bytes,
					 __u32 *verdict, struct xdpctl_steer *st)
{
	const struct xdpctl_decision *win;
	struct xdpctl_counter *hits;
	struct xdpctl_tables *t;
	struct xdpctl_config *cfg;
	__u32 zero = 0, gen, d, slot;
	void *data, *data_end;

	struct xdpctl_scratch *sc;
	const __u8 *l3;

	cfg = xdpctl_config.lookup(&zero);
	if (!cfg)
		return 0;
#if XDPCTL_SUMMARY > 1
	/* Only the search across several summary words merges (XDPCTL_MERGE). */
	sc = xdpctl_scratch.lookup(&zero);
	if (!sc)
		return 0;
#else
	sc = 0;
#endif
	/* Frames shorter than an Ethernet header are left to the policy. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct ethhdr) > data_end)
		return 0;
	l3 = xdpctl_l3(pkt, data, data_end);
#ifdef XDPCTL_NEED_L4
	xdpctl_parse_l4(pkt, data, data_end);
#endif /* XDPCTL_NEED_L4 */
#ifdef XDPCTL_USE_ESTABLISHED
	xdpctl_established(pkt, l3, data, data_end, bytes);
#endif /* XDPCTL_USE_ESTABLISHED */
#ifdef XDPCTL_LIMITS
	pkt->bytes = bytes;
#endif /* XDPCTL_LIMITS */
#ifdef XDPCTL_BANS
	/* The ban list comes before any rule: one lookup. */
	if (xdpctl_banned(pkt, l3, bytes)) {
		XDPCTL_TRACE_NOTE_BAN(pkt);
		*verdict = XDPCTL_VERDICT_DROP;
		return 1;
	}
#endif /* XDPCTL_BANS */
	gen = cfg->gen & 1;
	t = (struct xdpctl_tables *)xdpctl_tables.lookup(&gen);
	if (!t)
		return 0;
	d = xdpctl_match(t, pkt, l3, data, sc);
	if (d == XDPCTL_NO_RULE)
		return 0;
	win = &t->decision[d & (XDPCTL_DECISIONS - 1)];
	slot = win->slot;
	XDPCTL_TRACE_NOTE_RULE(pkt, slot);
	hits = xdpctl_hits.lookup(&slot);
	if (hits) {
		/* Per-CPU slot: no atomics needed. */
		hits->packets++;
		hits->bytes += bytes;
	}
	*verdict = xdpctl_take_action(win, gen, st);
	return 1;
}
#endif /* XDPCTL_RULES */

#ifdef XDPCTL_POLICY_DENY
#define XDPCTL_POLICY_VERDICT XDPCTL_VERDICT_DROP
#else
#define XDPCTL_POLICY_VERDICT XDPCTL_VERDICT_PASS
#endif /* XDPCTL_POLICY_DENY */

/* The action of the rules, or the policy's verdict when none decides. */
static __always_inline __u32 xdpctl_rules_verdict(struct xdp_md *ctx, struct xdpctl_pkt *pkt, __u64 bytes,
						  struct xdpctl_steer *st)
{
#ifdef XDPCTL_RULES
	__u32 verdict;

	if (xdpctl_decide(ctx, pkt, bytes, &verdict, st))
		return verdict;
#endif /* XDPCTL_RULES */
	return XDPCTL_POLICY_VERDICT;
}

/*
 * The verdicts as XDP return codes, without a branch: XDP_PASS - verdict.
 * A branch on the hot path costs more than this arithmetic (xdpctl bench).
 */
_Static_assert(XDP_PASS - XDPCTL_VERDICT_PASS == XDP_PASS &&
	       XDP_PASS - XDPCTL_VERDICT_DROP == XDP_DROP, "verdict to XDP action");

#ifdef XDPCTL_DROP_NON_IP
_Static_assert(XDPCTL_CLASS_ARP == 8 && XDPCTL_CLASS_MAX <= 16,
	       "non-IP classes are 8 and up, below 16");

static __always_inline __u32 xdpctl_drop_non_ip(const struct xdpctl_pkt *pkt)
{
	/* class >= XDPCTL_CLASS_ARP, as arithmetic: 1 for the non-IP classes. */
	return (pkt->class + 8) >> 4;
}
#else
static __always_inline __u32 xdpctl_drop_non_ip(const struct xdpctl_pkt *pkt)
{
	return XDPCTL_VERDICT_PASS;
}
#endif /* XDPCTL_DROP_NON_IP */

#ifdef XDPCTL_ACTIONS
/* Made by xdpctl before the compile (BCC opens the pins): the devmap sized
 * for both generations' targets, the cpumap with an entry per possible CPU
 * (the size declared here is only the declaration's; the map's is real). */
#define XDPCTL_REDIRECT_MAP(type, name, max, pin)                                 \
	struct name##_table_t {                                                    \
		u32 key;                                                           \
		u32 leaf;                                                          \
		/* xdp = map.redirect_map(key, flags), as BCC's BPF_DEVMAP */      \
		u64 (*redirect_map)(int, int);                                     \
		u32 max_entries;                                                   \
	};                                                                         \
	__attribute__((section("maps/" type ":" XDPCTL_PIN_DIR "/" pin)))         \
	struct name##_table_t name = { .max_entries = (max) }
#endif /* XDPCTL_ACTIONS */
#ifdef XDPCTL_REDIRECT_DEV
XDPCTL_REDIRECT_MAP("devmap", xdpctl_devmap, XDPCTL_DEVMAP_ENTRIES, XDPCTL_PIN_DEVMAP);
#endif /* XDPCTL_REDIRECT_DEV */
#ifdef XDPCTL_REDIRECT_CPU
XDPCTL_REDIRECT_MAP("cpumap", xdpctl_cpumap, 1, XDPCTL_PIN_CPUMAP);
#endif /* XDPCTL_REDIRECT_CPU */

#ifdef XDPCTL_ACTIONS
/*
 * Carry out the action and count the verdict the frame ends with. A redirect
 * whose entry is missing (its interface went away; a CPU whose queue is not
 * there) returns the fallback in its flags, XDP_ABORTED: counted as aborted.
 */
static __always_inline int xdpctl_act(struct xdp_md *ctx, const struct xdpctl_pkt *pkt, __u32 action,
				      const struct xdpctl_steer *st, __u64 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	long xdp = XDP_ABORTED;

	/* pass and drop as the program without the actions does them. */
	if (action <= XDPCTL_ACTION_DROP) {
		xdpctl_count(pkt->class, action, bytes);
		XDPCTL_TRACE_FRAME(ctx, pkt, action, bytes);
		return XDP_PASS - action;
	}
#ifdef XDPCTL_REDIRECT_DEV
	if (action == XDPCTL_ACTION_REDIRECT)
		xdp = xdpctl_devmap.redirect_map(xdpctl_devmap_key(pkt, st, data, data_end), XDP_ABORTED);
#endif /* XDPCTL_REDIRECT_DEV */
#ifdef XDPCTL_REDIRECT_CPU
	if (action == XDPCTL_ACTION_REDIRECT_CPU)
		xdp = xdpctl_cpumap.redirect_map(st->target, XDP_ABORTED);
#endif /* XDPCTL_REDIRECT_CPU */
#ifdef XDPCTL_TX
	if (action == XDPCTL_ACTION_TX)
		xdp = xdpctl_macswap(data, data_end);
#endif /* XDPCTL_TX */
	xdpctl_count(pkt->class, xdpctl_verdict_of(xdp), bytes);
	XDPCTL_TRACE_FRAME(ctx, pkt, xdpctl_verdict_of(xdp), bytes);
	return xdp;
}
#endif /* XDPCTL_ACTIONS */

int xdpctl_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct xdpctl_pkt pkt = {};
	struct xdpctl_steer st = {};
	__u32 verdict;

	xdpctl_parse(&pkt, data, data_end);
	/* --drop-non-ip comes first; the rules see only what it lets through. */
	verdict = xdpctl_drop_non_ip(&pkt);
	XDPCTL_TRACE_NOTE_NON_IP(&pkt, verdict);
	if (!verdict)
		verdict = xdpctl_rules_verdict(ctx, &pkt, bytes, &st);
#ifdef XDPCTL_ACTIONS
	return xdpctl_act(ctx, &pkt, verdict, &st, bytes);
#else
	xdpctl_count(pkt.class, verdict, bytes);
	XDPCTL_TRACE_FRAME(ctx, &pkt, verdict, bytes);
	return XDP_PASS - verdict;
#endif /* XDPCTL_ACTIONS */
}
