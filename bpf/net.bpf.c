// SPDX-License-Identifier: GPL-2.0
/* net: TCP connection lifecycle (connects, accepts, closes, connect latency,
 * per-connection duration and bytes), retransmits and resets per 4-tuple,
 * packet drops per kernel drop reason, and drops at listeners whose accept
 * queue is full -- all from tracepoints (no kprobes on this kernel).
 *
 * Ownership: sock:inet_sock_set_state runs in the process for connect()
 * (-> SYN_SENT) and listen() (-> LISTEN), in softirq for most of the rest;
 * so the owner is recorded there, in `conns` keyed by the sock pointer, and
 * accepted sockets take the owner of their listener. Each hook exists as
 * tp_btf and as raw_tp; user space autoloads one set. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "net.h"

/* arguments the running kernel's tracepoints carry (set from its BTF) */
const volatile __u32 kfree_skb_nargs = 4;  /* (skb, location[, reason[, rx_sk]]) */
const volatile bool net_events = true;     /* stream closed connections */
const volatile bool held_any = false;      /* user space filled `held` */

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

enum {
  TCP_ESTABLISHED_ = 1,
  TCP_SYN_SENT_ = 2,
  TCP_SYN_RECV_ = 3,
  TCP_FIN_WAIT2_ = 5,
  TCP_CLOSE_ = 7,
  TCP_CLOSE_WAIT_ = 8,
  TCP_LAST_ACK_ = 9,
  TCP_CLOSING_ = 11,
  TCP_LISTEN_ = 10,
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NET_MAX_CONNS);
  __type(key, __u64);
  __type(value, struct pm_net_conn);
} conns SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NET_MAX_PROCS);
  __type(key, __u32);
  __type(value, struct pm_net_proc);
} procs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NET_MAX_FLOWS);
  __type(key, struct pm_net_tuple);
  __type(value, struct pm_net_flow);
} flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NET_MAX_LISTENERS);
  __type(key, struct pm_net_listen_key);
  __type(value, struct pm_net_listener);
} listeners SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NET_MAX_DROPS);
  __type(key, struct pm_net_drop_key);
  __type(value, __u64);
} drops SEC(".maps");

/* connections the target held before the start (from /proc, by 4-tuple):
 * their retransmits, resets and drops are the target's */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, NET_MAX_HELD);
  __type(key, struct pm_net_tuple);
  __type(value, struct pm_net_owner);
} held SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1024 * 1024);  /* ~8k closes between drains (every 0.1 s) */
} events SEC(".maps");

/* keep the event struct in the object's BTF for the spec that checks the
 * Lua mirror */
const struct pm_net_event *pm_net_event_btf __attribute__((unused));

/* too large for the BPF stack: new entries are copied from here */
struct pm_net_proc zero_proc = {};
struct pm_net_conn zero_conn = {};

static __always_inline bool filter_active(void)
{
  return targ_tgid || targ_pid || targ_cgroup_id;
}

static __always_inline void owner_current(struct pm_net_owner *o)
{
  __u64 id = bpf_get_current_pid_tgid();
  o->tgid = id >> 32;
  o->pid = (__u32)id;
  o->in_target = !pm_skip_current();
  bpf_get_current_comm(o->comm, sizeof o->comm);
}

static __always_inline void sk_tuple(const struct sock *sk, struct pm_net_tuple *t)
{
  t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
  t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
  t->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
  if (t->family == AF_INET6) {
    BPF_CORE_READ_INTO(&t->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    BPF_CORE_READ_INTO(&t->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
  } else {
    BPF_CORE_READ_INTO((__u32 *)t->laddr, sk, __sk_common.skc_rcv_saddr);
    BPF_CORE_READ_INTO((__u32 *)t->raddr, sk, __sk_common.skc_daddr);
  }
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
  return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline struct pm_net_proc *proc_of(struct pm_net_owner *o)
{
  __u32 key = o->tgid;
  struct pm_net_proc *p = bpf_map_lookup_elem(&procs, &key);
  if (p)
    return p;
  bpf_map_update_elem(&procs, &key, &zero_proc, BPF_NOEXIST);
  p = bpf_map_lookup_elem(&procs, &key);
  if (p)
    __builtin_memcpy(p->comm, o->comm, sizeof p->comm);
  return p;
}

static __always_inline struct pm_net_flow *flow_of(struct pm_net_tuple *t, struct pm_net_owner *o)
{
  struct pm_net_flow *f = bpf_map_lookup_elem(&flows, t);
  if (f)
    return f;
  struct pm_net_flow z = {};
  if (o) {
    z.tgid = o->tgid;
    __builtin_memcpy(z.comm, o->comm, sizeof z.comm);
  }
  if (bpf_map_update_elem(&flows, t, &z, BPF_NOEXIST) && bpf_map_lookup_elem(&flows, t) == NULL) {
    pm_stat_add(PM_STAT_LOST, 1);  /* flows map full */
    return NULL;
  }
  return bpf_map_lookup_elem(&flows, t);
}

/* The owner of a socket we follow; NULL when we do not (not the target's,
 * or opened before the tracer started and not listed by user space). */
static __always_inline struct pm_net_owner *sock_owner(const struct sock *sk)
{
  __u64 key = (__u64)sk;
  return (struct pm_net_owner *)bpf_map_lookup_elem(&conns, &key);
}

static __always_inline struct pm_net_listener *listener_of(const struct sock *sk)
{
  struct pm_net_listen_key lk = {};
  lk.netns = sk_netns(sk);
  lk.port = BPF_CORE_READ(sk, __sk_common.skc_num);
  return bpf_map_lookup_elem(&listeners, &lk);
}

/* ---- lifecycle --------------------------------------------------------- */

static __always_inline void on_connect(const struct sock *sk, __u64 now)
{
  __u64 key = (__u64)sk;
  struct pm_net_conn c = {};
  owner_current(&c.owner);
  if (filter_active() && !c.owner.in_target) {
    bpf_map_delete_elem(&conns, &key);
    return;
  }
  c.start_ns = now;
  c.dir = NET_DIR_CONNECT;
  if (bpf_map_update_elem(&conns, &key, &c, BPF_ANY))
    pm_stat_add(PM_STAT_LOST, 1);
}

static __always_inline void on_listen(const struct sock *sk)
{
  struct pm_net_listen_key lk = {};
  lk.netns = sk_netns(sk);
  lk.port = BPF_CORE_READ(sk, __sk_common.skc_num);
  struct pm_net_listener l = {};
  owner_current(&l.owner);
  if (filter_active() && !l.owner.in_target)
    return;
  l.max_backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
  bpf_map_update_elem(&listeners, &lk, &l, BPF_ANY);
}

static __always_inline void on_established(const struct sock *sk, int oldstate, __u64 now)
{
  __u64 key = (__u64)sk;
  struct pm_net_conn *c = bpf_map_lookup_elem(&conns, &key);
  if (oldstate == TCP_SYN_SENT_) {
    if (!c) {
      pm_stat_add(PM_STAT_MISSED, 1);  /* connect began before we attached */
      return;
    }
    c->est_ns = now;
    sk_tuple(sk, &c->tuple);
    c->has_tuple = 1;
    struct pm_net_proc *p = proc_of(&c->owner);
    if (p) {
      __u64 lat = now - c->start_ns;
      __u32 s = pm_log2_slot(lat / 1000);
      if (s < NET_SLOTS)
        __sync_fetch_and_add(&p->lat_slots[s], 1);
      __sync_fetch_and_add(&p->connects, 1);
      __sync_fetch_and_add(&p->lat_total_ns, lat);
      if (lat > p->lat_max_ns)
        p->lat_max_ns = lat;  /* racy max: close enough for a report */
    }
    pm_stat_add(PM_STAT_EVENTS, 1);
    return;
  }
  if (oldstate != TCP_SYN_RECV_)
    return;
  /* passive open: the child of a listener, in softirq */
  struct pm_net_listener *l = listener_of(sk);
  if (!l && filter_active())
    return;
  if (bpf_map_update_elem(&conns, &key, &zero_conn, BPF_ANY)) {
    pm_stat_add(PM_STAT_LOST, 1);
    return;
  }
  c = bpf_map_lookup_elem(&conns, &key);
  if (!c)
    return;
  c->start_ns = now;
  c->est_ns = now;
  c->dir = NET_DIR_ACCEPT;
  sk_tuple(sk, &c->tuple);
  c->has_tuple = 1;
  if (l) {
    c->owner = l->owner;
    __sync_fetch_and_add(&l->accepts, 1);
  }
  struct pm_net_proc *p = proc_of(&c->owner);
  if (p)
    __sync_fetch_and_add(&p->accepts, 1);
  pm_stat_add(PM_STAT_EVENTS, 1);
}

static __always_inline void on_close(const struct sock *sk, int oldstate, __u64 now)
{
  __u64 key = (__u64)sk;
  if (oldstate == TCP_LISTEN_) {
    struct pm_net_listen_key lk = {};
    lk.netns = sk_netns(sk);
    lk.port = BPF_CORE_READ(sk, __sk_common.skc_num);
    bpf_map_delete_elem(&listeners, &lk);
    return;
  }
  struct pm_net_conn *c = bpf_map_lookup_elem(&conns, &key);
  if (!c)
    return;
  struct pm_net_proc *p = proc_of(&c->owner);
  if (oldstate == TCP_SYN_SENT_ || oldstate == TCP_SYN_RECV_ || !c->est_ns) {
    if (p)
      __sync_fetch_and_add(c->dir == NET_DIR_CONNECT ? &p->connect_fails : &p->accept_fails, 1);
    pm_stat_add(PM_STAT_EVENTS, 1);
    bpf_map_delete_elem(&conns, &key);
    return;
  }
  struct tcp_sock *tp = (struct tcp_sock *)sk;
  /* payload, as the application wrote and read it: bytes_acked counts the
   * SYN and FIN as a byte each, bytes_received the peer's FIN; bytes_sent
   * is data only but counts retransmitted data again */
  __u64 tx;
  if (bpf_core_field_exists(tp->bytes_sent))
    tx = BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans);
  else
    tx = BPF_CORE_READ(tp, bytes_acked);
  __u64 rx = BPF_CORE_READ(tp, bytes_received);
  /* the peer's FIN arrived: LAST_ACK/CLOSING (it came first), FIN_WAIT2
   * (it ended the wait), or a CLOSE_WAIT seen on the way */
  if (rx && (oldstate == TCP_LAST_ACK_ || oldstate == TCP_CLOSING_ || oldstate == TCP_FIN_WAIT2_ || c->fin_in))
    rx--;
  if (p) {
    __sync_fetch_and_add(&p->closes, 1);
    __sync_fetch_and_add(&p->tx_bytes, tx);
    __sync_fetch_and_add(&p->rx_bytes, rx);
  }
  pm_stat_add(PM_STAT_EVENTS, 1);
  if (net_events) {
    struct pm_net_event *e = pm_ringbuf_reserve(&events, sizeof *e);
    if (e) {
      e->ts_ns = now;
      e->dur_ns = now - c->est_ns;
      e->connect_ns = c->dir == NET_DIR_CONNECT ? c->est_ns - c->start_ns : 0;
      e->tx_bytes = tx;
      e->rx_bytes = rx;
      e->tgid = c->owner.tgid;
      e->dir = c->dir;
      e->total_retrans = BPF_CORE_READ(tp, total_retrans);
      e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
      e->oldstate = oldstate;
      e->pad = 0;
      if (c->has_tuple)
        e->tuple = c->tuple;
      else
        sk_tuple(sk, &e->tuple);
      __builtin_memcpy(e->comm, c->owner.comm, sizeof e->comm);
      bpf_ringbuf_submit(e, 0);
    }
  }
  bpf_map_delete_elem(&conns, &key);
}

static __always_inline bool is_tcp(const struct sock *sk)
{
  return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

/* Half of the transitions (FIN_WAIT*, LAST_ACK...) need nothing: the new
 * state is looked at before any read. A socket of another protocol is
 * never in `conns`, so the paths that start from a lookup need no check. */
static __always_inline int on_state(__u64 *ctx)
{
  const struct sock *sk = (const struct sock *)ctx[0];
  int oldstate = (int)ctx[1];
  int newstate = (int)ctx[2];
  switch (newstate) {
  case TCP_SYN_SENT_:
    if (is_tcp(sk))
      on_connect(sk, bpf_ktime_get_ns());
    break;
  case TCP_LISTEN_:
    if (is_tcp(sk))
      on_listen(sk);
    break;
  case TCP_ESTABLISHED_:
    if (oldstate == TCP_SYN_SENT_ || is_tcp(sk))
      on_established(sk, oldstate, bpf_ktime_get_ns());
    break;
  case TCP_CLOSE_:
    if (oldstate != TCP_LISTEN_ || is_tcp(sk))
      on_close(sk, oldstate, bpf_ktime_get_ns());
    break;
  case TCP_CLOSE_WAIT_: {
    __u64 key = (__u64)sk;
    struct pm_net_conn *c = bpf_map_lookup_elem(&conns, &key);
    if (c)
      c->fin_in = 1;
    break;
  }
  }
  return 0;
}

/* ---- retransmits and resets ------------------------------------------- */

/* segments in an skb: tcp_skb_pcount(), from the TCP control block */
static __always_inline __u32 skb_pcount(const struct sk_buff *skb)
{
  struct tcp_skb_cb *cb = (struct tcp_skb_cb *)((void *)skb + bpf_core_field_offset(struct sk_buff, cb));
  __u16 segs = BPF_CORE_READ(cb, tcp_gso_segs);
  return segs ? segs : 1;
}

static __always_inline int on_retransmit(const struct sock *sk, const struct sk_buff *skb, int err)
{
  struct pm_net_owner *o = sock_owner(sk);
  struct pm_net_tuple t = {};
  sk_tuple(sk, &t);
  if (!o && held_any)
    o = bpf_map_lookup_elem(&held, &t);
  if (!o && filter_active())
    return 0;
  __u32 segs = skb_pcount(skb);
  struct pm_net_flow *f = flow_of(&t, o);
  /* 6.12+ says whether it went out: a failed one is kept apart (the
   * kernel's RetransSegs counts those that failed in the send itself, not
   * those refused before it) */
  if (err) {
    if (f)
      __sync_fetch_and_add(&f->retrans_failed, segs);
    return 0;
  }
  if (f) {
    __sync_fetch_and_add(&f->retrans_segs, segs);
    __sync_fetch_and_add(&f->retrans_skbs, 1);
  }
  if (o) {
    struct pm_net_proc *p = proc_of(o);
    if (p)
      __sync_fetch_and_add(&p->retrans_segs, segs);
  }
  pm_stat_add(PM_STAT_EVENTS, 1);
  return 0;
}

static __always_inline int on_synack_retransmit(const struct sock *sk, const struct request_sock *req)
{
  struct pm_net_listener *l = listener_of(sk);
  if (!l && filter_active())
    return 0;
  struct pm_net_tuple t = {};
  t.family = BPF_CORE_READ(req, __req_common.skc_family);
  t.lport = BPF_CORE_READ(req, __req_common.skc_num);
  t.rport = __builtin_bswap16(BPF_CORE_READ(req, __req_common.skc_dport));
  if (t.family == AF_INET6) {
    BPF_CORE_READ_INTO(&t.laddr, req, __req_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    BPF_CORE_READ_INTO(&t.raddr, req, __req_common.skc_v6_daddr.in6_u.u6_addr8);
  } else {
    BPF_CORE_READ_INTO((__u32 *)t.laddr, req, __req_common.skc_rcv_saddr);
    BPF_CORE_READ_INTO((__u32 *)t.raddr, req, __req_common.skc_daddr);
  }
  struct pm_net_flow *f = flow_of(&t, l ? &l->owner : NULL);
  if (f)
    __sync_fetch_and_add(&f->synack_retrans, 1);
  pm_stat_add(PM_STAT_EVENTS, 1);
  return 0;
}

/* the 4-tuple of a reset sent with no socket (a SYN to a closed port):
 * from the packet it answers, seen from our side */
static __always_inline bool skb_reply_tuple(const struct sk_buff *skb, struct pm_net_tuple *t)
{
  unsigned char *head = BPF_CORE_READ(skb, head);
  __u16 nh = BPF_CORE_READ(skb, network_header);
  __u16 th = BPF_CORE_READ(skb, transport_header);
  __u8 ver = 0;
  bpf_probe_read_kernel(&ver, 1, head + nh);
  struct tcphdr tcp = {};
  if (bpf_probe_read_kernel(&tcp, sizeof tcp, head + th))
    return false;
  t->lport = __builtin_bswap16(tcp.dest);
  t->rport = __builtin_bswap16(tcp.source);
  if ((ver >> 4) == 4) {
    struct iphdr ip = {};
    if (bpf_probe_read_kernel(&ip, sizeof ip, head + nh))
      return false;
    t->family = AF_INET;
    __builtin_memcpy(t->laddr, &ip.daddr, 4);
    __builtin_memcpy(t->raddr, &ip.saddr, 4);
    return true;
  }
  if ((ver >> 4) == 6) {
    struct ipv6hdr ip6 = {};
    if (bpf_probe_read_kernel(&ip6, sizeof ip6, head + nh))
      return false;
    t->family = AF_INET6;
    __builtin_memcpy(t->laddr, &ip6.daddr, 16);
    __builtin_memcpy(t->raddr, &ip6.saddr, 16);
    return true;
  }
  return false;
}

static __always_inline int on_reset(const struct sock *sk, const struct sk_buff *skb, bool sent)
{
  struct pm_net_owner *o = sk ? sock_owner(sk) : NULL;
  struct pm_net_listener *l = NULL;
  struct pm_net_tuple t = {};
  if (sk) {
    sk_tuple(sk, &t);
    if (!o && held_any)
      o = bpf_map_lookup_elem(&held, &t);
    if (!o) {
      l = listener_of(sk);
      if (l)
        o = &l->owner;
    }
  } else if (!skb || !skb_reply_tuple(skb, &t)) {
    return 0;
  }
  if (!o && filter_active())
    return 0;
  struct pm_net_flow *f = flow_of(&t, o);
  if (f)
    __sync_fetch_and_add(sent ? &f->resets_sent : &f->resets_recv, 1);
  if (o) {
    struct pm_net_proc *p = proc_of(o);
    if (p)
      __sync_fetch_and_add(sent ? &p->resets_sent : &p->resets_recv, 1);
  }
  pm_stat_add(PM_STAT_EVENTS, 1);
  return 0;
}

/* ---- drops --------------------------------------------------------------- */

static __always_inline int on_drop(__u64 *ctx)
{
  struct pm_net_drop_key k = {};
  const struct sock *rx_sk = NULL;
  if (kfree_skb_nargs >= 3)
    k.reason = (__u32)ctx[2];
  if (kfree_skb_nargs >= 4)
    rx_sk = (const struct sock *)ctx[3];
  if (rx_sk) {
    struct pm_net_owner *o = sock_owner(rx_sk);
    if (o) {
      k.owned = 1;
      struct pm_net_conn *c = (struct pm_net_conn *)o;  /* owner is its first member */
      if (c->has_tuple) {
        struct pm_net_flow *f = flow_of(&c->tuple, o);
        if (f)
          __sync_fetch_and_add(&f->drops, 1);
      }
    } else if (held_any && BPF_CORE_READ(rx_sk, __sk_common.skc_state) != TCP_LISTEN_) {
      struct pm_net_tuple t = {};
      sk_tuple(rx_sk, &t);
      struct pm_net_owner *ho = bpf_map_lookup_elem(&held, &t);
      if (ho) {
        k.owned = 1;
        struct pm_net_flow *f = flow_of(&t, ho);
        if (f)
          __sync_fetch_and_add(&f->drops, 1);
      }
    } else if (BPF_CORE_READ(rx_sk, __sk_common.skc_state) == TCP_LISTEN_) {
      struct pm_net_listener *l = listener_of(rx_sk);
      if (l) {
        k.owned = 1;
        __sync_fetch_and_add(&l->drops, 1);
        /* sk_acceptq_is_full(): the final ACK of a handshake is dropped
         * when the accept queue is full (ListenOverflows) */
        __u32 backlog = BPF_CORE_READ(rx_sk, sk_ack_backlog);
        __u32 max = BPF_CORE_READ(rx_sk, sk_max_ack_backlog);
        if (backlog > max)
          __sync_fetch_and_add(&l->overflows, 1);
        if (backlog > l->peak_backlog)
          l->peak_backlog = backlog;
        l->max_backlog = max;
      }
    }
  }
  if (!k.owned && filter_active())
    return 0;
  __u64 one = 1;
  __u64 *v = bpf_map_lookup_elem(&drops, &k);
  if (v)
    __sync_fetch_and_add(v, 1);
  else if (bpf_map_update_elem(&drops, &k, &one, BPF_NOEXIST))
    pm_stat_add(PM_STAT_LOST, 1);
  pm_stat_add(PM_STAT_EVENTS, 1);
  return 0;
}

/* ---- listeners' drop counters ---------------------------------------------
 *
 * A full accept queue drops the SYN (consume_skb, no drop reason) or the
 * handshake's last ACK inside the TCP code; what both do is tcp_listendrop():
 * the netns's ListenDrops and the listener's own sk_drops. So listeners are
 * read by walking the TCP sockets (a BPF iterator, run by user space at
 * each read), not from a tracepoint. */
SEC("iter/tcp")
int net_listen_iter(struct bpf_iter__tcp *ctx)
{
  struct sock_common *skc = ctx->sk_common;
  if (!skc || skc->skc_state != TCP_LISTEN_)
    return 0;
  struct sock *sk = (struct sock *)skc;
  struct pm_net_listen_key lk = {};
  lk.netns = BPF_CORE_READ(skc, skc_net.net, ns.inum);
  lk.port = skc->skc_num;
  struct pm_net_listener *l = bpf_map_lookup_elem(&listeners, &lk);
  if (!l) {
    if (filter_active())
      return 0;   /* not one of the target's */
    struct pm_net_listener z = {};
    bpf_map_update_elem(&listeners, &lk, &z, BPF_NOEXIST);
    l = bpf_map_lookup_elem(&listeners, &lk);
    if (!l)
      return 0;
  }
  __u64 drops = (__u32)BPF_CORE_READ(sk, sk_drops.counter);
  if (bpf_core_field_exists(sk->sk_drop_counters)) {
    struct numa_drop_counters *nd = BPF_CORE_READ(sk, sk_drop_counters);
    if (nd)
      drops += (__u32)BPF_CORE_READ(nd, drops0.counter) + (__u32)BPF_CORE_READ(nd, drops1.counter);
  }
  l->sk_drops = drops;
  l->max_backlog = BPF_CORE_READ(sk, sk_max_ack_backlog);
  __u32 q = BPF_CORE_READ(sk, sk_ack_backlog);
  l->queue = q;
  if (q > l->peak_backlog)
    l->peak_backlog = q;
  return 0;
}

/* ---- programs: each hook as tp_btf and raw_tp ---------------------------- */

#define NET_PROGS(kind, sfx)                                                            \
  SEC(kind "/inet_sock_set_state")                                                      \
  int net_state_##sfx(__u64 *ctx) { return on_state(ctx); }                             \
  SEC(kind "/tcp_retransmit_skb")                                                       \
  int net_retrans_##sfx(__u64 *ctx)                                                     \
  {                                                                                     \
    return on_retransmit((const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], 0); \
  }                                                                                     \
  SEC(kind "/tcp_retransmit_skb")                                                       \
  int net_retrans_err_##sfx(__u64 *ctx)                                                 \
  {                                                                                     \
    return on_retransmit((const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], (int)ctx[2]); \
  }                                                                                     \
  SEC(kind "/tcp_retransmit_synack")                                                    \
  int net_synack_##sfx(__u64 *ctx)                                                      \
  {                                                                                     \
    return on_synack_retransmit((const struct sock *)ctx[0], (const struct request_sock *)ctx[1]); \
  }                                                                                     \
  SEC(kind "/tcp_send_reset")                                                           \
  int net_rst_send_##sfx(__u64 *ctx)                                                    \
  {                                                                                     \
    return on_reset((const struct sock *)ctx[0], (const struct sk_buff *)ctx[1], true);   \
  }                                                                                     \
  SEC(kind "/tcp_receive_reset")                                                        \
  int net_rst_recv_##sfx(__u64 *ctx)                                                    \
  {                                                                                     \
    return on_reset((const struct sock *)ctx[0], NULL, false);                          \
  }                                                                                     \
  SEC(kind "/kfree_skb")                                                                \
  int net_drop_##sfx(__u64 *ctx) { return on_drop(ctx); }

NET_PROGS("tp_btf", btf)
NET_PROGS("raw_tp", raw)
