/* Shared between bpf/syscall.bpf.c and user space (lib/perf_manual/tracers/syscall.lua). */
#ifndef PM_SYSCALL_H
#define PM_SYSCALL_H

#include "common/pm_types.h"

/* syscall numbers at or above this are counted in pm_stats "missed" */
#define PM_SYSCALL_MAX 512
/* latency stats are grouped 8 syscalls per map entry: a per-CPU array
 * allocates per entry at creation, and 512 entries took milliseconds */
#define PM_SYSCALL_GROUP 8

/* per syscall number, per CPU; every field a u64 so per-CPU copies sum */
struct syscall_stat {
  __u64 count;    /* calls completed (latency mode) or started (count mode) */
  __u64 errors;   /* returned < 0 */
  __u64 total_ns; /* time inside the syscall (latency mode) */
  struct pm_log2_hist hist; /* latency, ns */
};

struct syscall_stat_group {
  struct syscall_stat s[PM_SYSCALL_GROUP]; /* syscall nr = key * 8 + index */
};

/* count mode: one per-CPU entry holding every counter */
struct syscall_counts {
  __u64 count[PM_SYSCALL_MAX];
};

struct syscall_err_key {
  __u32 nr;
  __u32 err; /* errno, positive */
};

/* per task, between sys_enter and sys_exit */
struct syscall_start {
  __u64 ts;
  __u64 nr;
};

#endif
