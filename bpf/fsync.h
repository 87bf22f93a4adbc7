/* Shared between bpf/fsync.bpf.c and user space (lib/perf_manual/runbooks/fsync_tracer.lua). */
#ifndef PM_FSYNC_H
#define PM_FSYNC_H

#include "common/pm_types.h"

/* which call: an index, not the syscall number (the same on every arch) */
#define PM_FSYNC_FSYNC 0
#define PM_FSYNC_FDATASYNC 1
#define PM_FSYNC_RANGE 2 /* sync_file_range */

/* one entry per thread, fd and call: only that thread updates it, so
 * plain adds are enough */
struct fsync_key {
  __u32 tgid;
  __u32 tid;
  __s32 fd;
  __u32 call;
};

struct fsync_stat {
  __u64 count;
  __u64 errors;
  __u64 total_ns;
  __u64 max_ns;
  struct pm_log2_hist hist; /* latency, ns */
};

/* per task, between enter and exit */
struct fsync_start {
  __u64 ts;
  __s32 fd;
  __u32 call;
};

#endif
