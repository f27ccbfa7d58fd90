/* SPDX-License-Identifier: GPL-2.0 */
/*
 * egress_kern.c - the TC egress program xdpctl attaches beside the XDP
 * program of an interface that has an --established rule. It records the
 * flows the host opens there (TCP, UDP, ICMP and ICMPv6 echo; flow_kern.h
 * builds the key) in the flow table the XDP program looks replies up in.
 *
 * It never changes or drops a frame: it returns TC_ACT_UNSPEC, so the
 * filters after it on the hook still run, and the frame leaves as if it
 * were not there.
 *
 *   XDPCTL_PIN_DIR="/sys/fs/bpf/..."  the attachment's directory: the flow
 *                                     table and settings are opened there
 *                                     (unset: made fresh, for benchmarks)
 *
 * BCC rewrites map calls only in a main file: this one, for this program.
 *
 * May include: BCC's virtual headers, linux UAPI headers, *_kern.h.
 */
#include <uapi/linux/bpf.h>
#include "xdpctl_kern_user.h"
#include "parse_kern.h"
#include "flow_kern.h"

#define XDPCTL_TC_ACT_UNSPEC      (-1)   /* linux/pkt_cls.h: on to the next filter */
#define XDPCTL_PULL_MAX           128    /* bytes made linear when the headers are not */

#ifdef XDPCTL_PIN_DIR
#define XDPCTL_MAP(type, key, val, name, max, pin) \
	BPF_TABLE_PINNED(type, key, val, name, max, XDPCTL_PIN_DIR "/" pin)
#else
#define XDPCTL_MAP(type, key, val, name, max, pin) \
	BPF_TABLE(type, key, val, name, max)
#endif /* XDPCTL_PIN_DIR */

/* The maps the XDP program opens too (see xdpctl_kern.c): xdpctl creates
 * them at their pins before either program is compiled. */
XDPCTL_MAP("lru_hash", struct xdpctl_flow_key, struct xdpctl_flow, xdpctl_flows, XDPCTL_FLOW_ENTRIES_DEFAULT,
	   XDPCTL_PIN_FLOWS);
XDPCTL_MAP("array", __u32, struct xdpctl_flow_config, xdpctl_flow_cfg, 1, XDPCTL_PIN_FLOW_CONFIG);

/* Record a frame the host sends on its flow: a new flow, or the last frame
 * of a known one. */
static __always_inline void xdpctl_flow_record(struct xdpctl_flow_key *key, const struct xdpctl_pkt *pkt)
{
	struct xdpctl_flow_config *cfg;
	struct xdpctl_flow *f;
	__u32 zero = 0, timeout;
	__u64 now;

	cfg = xdpctl_flow_cfg.lookup(&zero);
	if (!cfg)
		return;
	now = bpf_ktime_get_coarse_ns();  /* the clock of struct xdpctl_flow */
	timeout = xdpctl_flow_timeout(pkt);
	f = xdpctl_flows.lookup(key);
	if (!f) {
		struct xdpctl_flow fresh = {.first_seen = now, .last_seen = now, .timeout = timeout};

		/* No overwrite: when two CPUs open the same flow, the first one's stays. */
		xdpctl_flows.insert(key, &fresh);
		return;
	}
	if (!xdpctl_flow_live(f, cfg, now) || xdpctl_flow_opens(pkt)) {
		/* A new flow on the tuple of one that expired or closed. */
		f->first_seen = now;
		f->packets_in = 0;
		f->bytes_in = 0;
		f->timeout = timeout;
	} else if (timeout == XDPCTL_FLOW_CLOSING) {
		f->timeout = XDPCTL_FLOW_CLOSING;
	}
	f->last_seen = now;
}

int xdpctl_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct xdpctl_flow_key key;
	struct xdpctl_pkt pkt = {};
	__u32 len;

	xdpctl_parse(&pkt, data, data_end);
	xdpctl_parse_l4(&pkt, data, data_end);
	if (!xdpctl_flow_key_out(&key, &pkt, data, data_end)) {
		/*
		 * The stack builds the headers of what it sends in the linear
		 * part of the buffer; should a transport header lie past it,
		 * pull it in (this may copy the buffer, so only then) and look
		 * again.
		 */
		if (!pkt.has_proto || pkt.frag_later || skb->len <= (__u32)(data_end - data))
			return XDPCTL_TC_ACT_UNSPEC;
		len = skb->len < XDPCTL_PULL_MAX ? skb->len : XDPCTL_PULL_MAX;
		if (bpf_skb_pull_data(skb, len))
			return XDPCTL_TC_ACT_UNSPEC;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		__builtin_memset(&pkt, 0, sizeof(pkt));
		xdpctl_parse(&pkt, data, data_end);
		xdpctl_parse_l4(&pkt, data, data_end);
		if (!xdpctl_flow_key_out(&key, &pkt, data, data_end))
			return XDPCTL_TC_ACT_UNSPEC;
	}
	xdpctl_flow_record(&key, &pkt);
	return XDPCTL_TC_ACT_UNSPEC;
}
