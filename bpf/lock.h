/* Shared between bpf/lock.bpf.c and lib/perf_manual/tracers/lock.lua (which
 * mirrors these structs with ffi.cdef; a spec checks the sizes). */
#ifndef PM_LOCK_H
#define PM_LOCK_H

#define LOCK_SLOTS 32           /* log2(wait in us) */
#define LOCK_MAX_KLOCKS 4096
#define LOCK_MAX_FUTEXES 4096
#define LOCK_MAX_THREADS 4096
#define LOCK_MAX_STACKS 4096
#define LOCK_MAX_INFLIGHT 8192
#define LOCK_MAX_WAKERS 4096
#define LOCK_SCAN_WORDS 24      /* user stack words searched for the caller */
#define LOCK_COMM_LEN 16

/* futex wait outcomes, from the syscall's return value */
enum lock_outcome {
  LOCK_R_OK = 0,         /* woken: got the lock / the value changed */
  LOCK_R_EAGAIN = 1,     /* value already changed: no real wait */
  LOCK_R_ETIMEDOUT = 2,
  LOCK_R_EINTR = 3,
  LOCK_R_EDEADLK = 4,    /* PI futex: caller already owns it */
  LOCK_R_EOWNERDEAD = 5, /* robust futex: the owner died */
  LOCK_R_OTHER = 6,      /* any other error */
  LOCK_R_NR = 7,
};

/* wait statistics shared by every table */
struct pm_lock_stat {
  __u64 slots[LOCK_SLOTS];
  __u64 count;
  __u64 total_ns;
  __u64 max_ns;
  __u64 results[LOCK_R_NR];
};

/* kernel lock contention (lock:contention_begin/end), per lock address */
struct pm_lock_kkey {
  __u64 addr;
  __u32 flags;   /* LCB_F_* of contention_begin: spin, read, write, rt, per-cpu, mutex */
  __u32 pad;
};

/* futex wait styles, by the op of the wait (glibc: mutexes and rwlocks use
 * FUTEX_WAIT or the PI lock ops; condition variables and semaphores
 * FUTEX_WAIT_BITSET or WAIT_REQUEUE_PI) */
enum lock_fkind {
  LOCK_FK_LOCK = 1,
  LOCK_FK_WAIT = 2,
};

/* user-space futex waits per (tgid, futex address, wait style) */
struct pm_lock_fkey {
  __u64 uaddr;
  __u32 tgid;
  __u32 kind;    /* enum lock_fkind */
};

/* per waiting thread */
struct pm_lock_tkey {
  __u32 tgid;
  __u32 pid;
};

struct pm_lock_tval {
  __u64 count;
  __u64 total_ns;
  __u64 max_ns;
  __u64 errors;   /* ETIMEDOUT, EDEADLK, EOWNERDEAD, other (not EAGAIN/EINTR) */
  char comm[LOCK_COMM_LEN];
};

/* waiting user stacks per (tgid, futex), when stacks are asked for;
 * caller: the first return address on the user stack outside the mapping
 * the syscall was made from (the C library), 0 when not found. glibc has no
 * frame pointers, so the frame-pointer stack skips exactly that frame. */
struct pm_lock_skey {
  __u64 uaddr;
  __u64 caller;
  __u32 tgid;
  __s32 stack_id;   /* -ENOENT: walked from CFI, see user_hash */
  __u64 user_hash;  /* the stack's key in unwind_stacks (common/unwind.bpf.h), or 0 */
};

/* futex wake side per (futex, waking thread, call site): who releases the
 * lock (FUTEX_WAKE, WAKE_OP, WAKE_BITSET, UNLOCK_PI on the same address).
 * caller and stack_id are 0 / -1 without stacks. */
struct pm_lock_wkey {
  __u64 uaddr;
  __u64 caller;
  __u32 tgid;
  __u32 pid;
  __s32 stack_id;
  __u32 op;      /* futex command of the wake (1, 5, 7, 10) */
  __u64 user_hash;
};

struct pm_lock_wval {
  __u64 count;
  char comm[LOCK_COMM_LEN];
};

struct pm_lock_sval {
  __u64 count;
  __u64 total_ns;
};

/* counters map (array; events seen and lost are in common.h's pm_stats) */
enum lock_counter {
  LOCK_C_FUTEX_WAITS = 0,    /* futex waits completed and counted */
  LOCK_C_KLOCK_WAITS = 1,    /* kernel contentions completed and counted */
  LOCK_C_STACK_ERR = 2,      /* user stack not captured (bpf_get_stackid failed) */
  LOCK_C_CUR_WAITERS = 3,    /* futex waiters right now (gauge) */
  LOCK_C_MAX_WAITERS = 4,    /* largest gauge value seen (approximate) */
  LOCK_C_FUTEX_WAKES = 5,    /* futex wake calls counted */
  LOCK_C_NR = 6,
};

#endif
