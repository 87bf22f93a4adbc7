/* Shared between bpf/lockhold.bpf.c and lib/perf_manual/tracers/lockhold.lua
 * (FFI cdefs; the spec checks the sizes). */
#ifndef PM_LOCKHOLD_H
#define PM_LOCKHOLD_H

#define LOCKHOLD_SLOTS 32      /* log2 hold-time histogram, microseconds */
#define LOCKHOLD_MAX_LOCKS 10240
#define LOCKHOLD_MAX_SITES 16384
#define LOCKHOLD_MAX_HELD 65536 /* (lock, thread) holds in progress */
#define LOCKHOLD_MAX_DEPTH 127

/* how the lock was taken */
enum lockhold_kind {
  LOCKHOLD_MUTEX = 0, /* pthread_mutex_lock / trylock */
  LOCKHOLD_READ = 1,  /* pthread_rwlock_rdlock */
  LOCKHOLD_WRITE = 2, /* pthread_rwlock_wrlock */
  LOCKHOLD_KIND_NR = 3,
};

/* per lock: key */
struct pm_lockhold_key {
  __u64 addr;
  __u32 tgid;
  __u32 kind;
};

/* per lock: hold times, weighted by the sampling rate */
struct pm_lockhold_stat {
  __u64 slots[LOCKHOLD_SLOTS];
  __u64 count;    /* holds, weighted */
  __u64 total_ns; /* held time, weighted */
  __u64 max_ns;
  __u64 sampled;  /* holds measured */
};

/* per (lock, holder stack): the user stack where the lock call returned */
struct pm_lockhold_site_key {
  __u64 addr;
  __u32 tgid;
  __s32 stack_id;
  __u64 ip; /* return address into the caller of the lock call */
  __u64 user_hash; /* a stack walked from CFI: its key in unwind_stacks (0: none) */
};

struct pm_lockhold_site {
  __u64 count;
  __u64 total_ns;
};

enum lockhold_counter {
  LOCKHOLD_C_CALLS = 0,      /* lock calls of the target */
  LOCKHOLD_C_SAMPLED = 1,    /* of them, sampled */
  LOCKHOLD_C_FAILED = 2,     /* sampled lock calls that returned an error (trylock busy) */
  LOCKHOLD_C_HELD_FULL = 3,  /* holds map full: a hold not measured */
  LOCKHOLD_C_STACK_LOST = 4, /* holder stack could not be stored */
  LOCKHOLD_C_NR = 5,
};

#endif
