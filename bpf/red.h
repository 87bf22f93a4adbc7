/* Shared between bpf/red.bpf.c and lib/perf_manual/tracers/red.lua (which
 * mirrors these structs with ffi.cdef; a spec checks them against the BTF). */
#ifndef PM_RED_H
#define PM_RED_H

#include "common/pm_types.h"

/* connections tracked at once (LRU: the oldest idle one goes first) */
#define RED_MAX_CONNS 65536
/* processes of the target (a server and its children) */
#define RED_MAX_TGIDS 1024
/* syscall numbers classified by the rodata table red_kind[] */
#define RED_SYSCALL_MAX 512
/* errno counters per kind; larger errnos land in the last one */
#define RED_ERRNO_MAX 256

/* syscall kinds (red_kind[nr]); 0 = not ours */
#define RED_K_NONE 0
#define RED_K_ACCEPT 1 /* accept accept4 */
#define RED_K_READ 2   /* read readv recvfrom recvmsg */
#define RED_K_WRITE 3  /* write writev sendto sendmsg sendfile */
#define RED_K_CLOSE 4  /* close */
#define RED_K_NR 5

/* Latency histogram, log-linear: RED_SUB linear sub-buckets per power of two
 * (every bucket is at most 1/32 of its lower bound wide); values below
 * RED_SUB ns are exact; then powers 2^RED_SUB_BITS .. 2^(RED_MAX_EXP-1); the last slot also
 * holds everything at or above 2^RED_MAX_EXP ns (68.7 s). */
#define RED_SUB_BITS 5
#define RED_SUB (1 << RED_SUB_BITS)
#define RED_MAX_EXP 36
#define RED_SLOTS (RED_SUB + (RED_MAX_EXP - RED_SUB_BITS) * RED_SUB)

/* conns key: a file descriptor of one process */
struct red_conn_key {
  __u32 tgid;
  __u32 fd;
};

/* conns value */
#define RED_CONN_ACCEPTED 1 /* returned by accept/accept4 while tracing */
#define RED_CONN_AT_START 2 /* an inbound socket found in /proc at start */
struct red_conn {
  __u64 start_ns; /* end of the read that began the pending request; 0 = none */
  __u64 flags;
};

/* one per-CPU entry; every field a u64 so per-CPU copies sum (except
 * min_ns/max_ns, which user space folds) */
struct red_stats {
  __u64 calls[RED_K_NR];    /* accept: every call; read/write/close: on connections */
  __u64 other_fd[RED_K_NR]; /* read/write calls on fds that are not connections */
  __u64 requests;           /* paired: read began it, a write answered it */
  __u64 started;            /* reads that began a request */
  __u64 closed_pending;     /* close() while a request was pending */
  __u64 unpaired_writes;    /* write-side calls with no request pending */
  __u64 eof_reads;          /* reads that returned 0 (peer closed) */
  __u64 conns_added;        /* conns entries created by the programs */
  __u64 conns_removed;      /* conns entries deleted by close() */
  __u64 sum_ns;
  __u64 min_ns;
  __u64 max_ns;
  __u64 slots[RED_SLOTS];                  /* request latency, ns */
  __u64 errs[RED_K_NR][RED_ERRNO_MAX];     /* failed calls by errno */
};

/* per thread, between sys_enter and sys_exit */
struct red_call {
  __s64 fd;
  __u64 kind;
  __u64 ts; /* sys_enter time */
};

#endif
