/* Shared between bpf/tsa.bpf.c and lib/perf_manual/tracers/tsa.lua (which
 * mirrors these structs with ffi.cdef; a spec checks the sizes). */
#ifndef PM_TSA_H
#define PM_TSA_H

#define TSA_MAX_THREADS 16384
#define TSA_MAX_WAITS 16384
#define TSA_MAX_STACKS 4096
#define TSA_COMM_LEN 16

/* the state a thread left its CPU for (tsa_thread.cur) */
enum tsa_state {
  TSA_NONE = 0,
  TSA_CPU = 1,     /* (user space: on a CPU) */
  TSA_RUNQ = 2,    /* runnable: preempted, or yielded */
  TSA_BLOCKED = 3, /* asleep; the wait key says on what */
  TSA_DEAD = 4,    /* exited at ts */
};

/* what a blocked period waited for, taken at switch-out */
struct tsa_wait {
  __s64 syscall;  /* syscall number; -1: not in a syscall (page fault); -2: kernel thread */
  __u64 arg0;     /* its first argument (an fd, a futex address ...) */
  __u64 arg1;     /* futex: the op; else 0 */
  __s32 kstack;   /* kernel stack id, D-state sleeps only; else -1 */
  __u32 state;    /* bit 0: S, bit 1: D (prev_state & 3); bit 8: in_iowait */
};

/* per thread (key: tid), from its first switch-out in the window on */
struct tsa_thread {
  __u64 cpu_ns;       /* on CPU, between its first and latest switch-outs */
  __u64 runq_ns;      /* runnable, same span */
  __u64 ts;           /* the latest switch-out */
  __u64 first_ts;     /* the first one */
  __u64 exec;         /* the kernel's run time (se.sum_exec_runtime) at ts */
  __u64 rdelay;       /* the kernel's run-queue wait (sched_info.run_delay) at ts */
  __u64 first_exec;   /* the same two at first_ts */
  __u64 first_rdelay;
  __u64 start_time;   /* the task's birth (CLOCK_MONOTONIC ns) */
  __u64 events;       /* switch-outs after the first */
  __u32 tgid;
  __u8 cur;           /* enum tsa_state, since ts */
  __u8 pad1;
  __u16 pad2;
  struct tsa_wait wait; /* the key of the blocked period since ts (cur == TSA_BLOCKED) */
  /* blocked time of the latest key, kept here while the key repeats (a
   * thread mostly waits on the same thing): the waits map is written only
   * when the key changes */
  struct tsa_wait acc_wait;
  __u64 acc_ns;
  __u64 acc_count;
  __u64 acc_max;
  char comm[TSA_COMM_LEN];
};

/* blocked time per (tid, wait) */
struct tsa_wkey {
  __u32 tid;
  __u32 pad;
  struct tsa_wait wait;
};

struct tsa_wval {
  __u64 ns;
  __u64 count;
  __u64 max_ns;
};

enum tsa_counter {
  TSA_C_STACK_ERR = 0,
  TSA_C_CLAMPED = 1, /* a run longer than its interval (clock skew between the two clocks) */
  TSA_C_NR = 2,
};

#endif
