/* Shared between bpf/net.bpf.c and lib/perf_manual/tracers/net.lua (which
 * mirrors these structs with ffi.cdef; a spec checks the sizes). */
#ifndef PM_NET_H
#define PM_NET_H

#define NET_SLOTS 32          /* log2 slots of connect latency, in us */
#define NET_COMM_LEN 16
#define NET_MAX_CONNS 65536   /* connections tracked at once */
#define NET_MAX_PROCS 4096
#define NET_MAX_FLOWS 8192
#define NET_MAX_LISTENERS 1024
#define NET_MAX_DROPS 1024
#define NET_MAX_HELD 4096     /* target's connections from before the start */

/* how a connection began */
#define NET_DIR_CONNECT 1
#define NET_DIR_ACCEPT 2

/* a 4-tuple; IPv4 addresses in the first 4 bytes of laddr/raddr */
struct pm_net_tuple {
  __u16 family;  /* AF_INET / AF_INET6 */
  __u16 lport;   /* host order */
  __u16 rport;   /* host order */
  __u16 pad;
  __u8 laddr[16];
  __u8 raddr[16];
};

/* who owns a socket: recorded where the kernel runs in the process
 * (connect(), listen()); accepted sockets inherit their listener's owner */
struct pm_net_owner {
  __u32 tgid;
  __u32 pid;
  __u32 in_target;  /* passed the target filter when recorded */
  __u32 pad;
  char comm[NET_COMM_LEN];
};

/* procs map: per process (tgid) */
struct pm_net_proc {
  __u64 lat_slots[NET_SLOTS];  /* connect latency SYN_SENT -> ESTABLISHED, log2(us) */
  __u64 connects;              /* connects that completed */
  __u64 connect_fails;         /* SYN_SENT -> CLOSE (refused, timed out) */
  __u64 accepts;               /* SYN_RECV -> ESTABLISHED on its listeners */
  __u64 accept_fails;          /* SYN_RECV -> CLOSE */
  __u64 closes;                /* established connections that closed */
  __u64 lat_total_ns;
  __u64 lat_max_ns;
  __u64 tx_bytes;              /* payload sent by closed connections */
  __u64 rx_bytes;              /* payload received by closed connections */
  __u64 retrans_segs;
  __u64 resets_sent;
  __u64 resets_recv;
  char comm[NET_COMM_LEN];
};

/* flows map: per 4-tuple */
struct pm_net_flow {
  __u64 retrans_segs;   /* segments, as the kernel's RetransSegs counts them */
  __u64 retrans_skbs;
  __u64 synack_retrans;
  __u64 resets_sent;
  __u64 resets_recv;
  __u64 drops;          /* packets dropped with this socket as receiver */
  __u64 retrans_failed; /* segments of retransmits that returned an error */
  __u32 tgid;
  __u32 pad;
  char comm[NET_COMM_LEN];
};

/* drops map */
struct pm_net_drop_key {
  __u32 reason;   /* enum skb_drop_reason */
  __u32 owned;    /* 1 when the receiving socket is one the tracer follows */
};

/* listeners map key: the listening socket */
struct pm_net_listen_key {
  __u32 netns;    /* network namespace inode */
  __u16 port;
  __u16 pad;
};

struct pm_net_listener {
  struct pm_net_owner owner;
  __u64 overflows;        /* kfree_skb drops at it while its accept queue was full */
  __u64 drops;            /* kfree_skb drops with it as receiver */
  __u64 accepts;
  __u64 sk_drops;         /* its drop counter (tcp_listendrop: full accept queue...), by the iterator */
  __u32 max_backlog;      /* sk_max_ack_backlog */
  __u32 peak_backlog;     /* largest accept queue seen */
  __u32 queue;            /* accept queue at the last walk */
  __u32 pad;
};

/* conns map value: one live connection */
struct pm_net_conn {
  struct pm_net_owner owner;  /* first: &c->owner is c (the verifier wants no
                               * arithmetic on a maybe-NULL lookup) */
  __u64 start_ns;   /* SYN_SENT (connect) or ESTABLISHED (accept) */
  __u64 est_ns;
  struct pm_net_tuple tuple;  /* taken at ESTABLISHED: at CLOSE lport can be 0 */
  __u32 dir;
  __u16 has_tuple;
  __u16 fin_in;     /* the peer's FIN arrived (went through CLOSE_WAIT) */
};

/* one closed connection, streamed through the `events` ring buffer */
struct pm_net_event {
  __u64 ts_ns;       /* close, CLOCK_MONOTONIC */
  __u64 dur_ns;      /* ESTABLISHED -> CLOSE */
  __u64 connect_ns;  /* SYN_SENT -> ESTABLISHED (0 for accepted) */
  __u64 tx_bytes;
  __u64 rx_bytes;
  __u32 tgid;
  __u32 dir;
  __u32 total_retrans;
  __u32 srtt_us;
  __u32 oldstate;    /* state it closed from */
  __u32 pad;
  struct pm_net_tuple tuple;
  char comm[NET_COMM_LEN];
};

#endif
