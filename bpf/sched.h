/* Shared between bpf/sched.bpf.c and user space (lib/perf_manual/tracers/sched.lua). */
#ifndef PM_SCHED_H
#define PM_SCHED_H

#include "common/pm_types.h"

/* run-queue length histogram: linear slots 0..PM_RUNQ_SLOTS-1 (last = more) */
#define PM_RUNQ_SLOTS 64

/* per group (0 = everything, a CPU, or a tgid), summed over CPUs */
struct sched_hist {
  __u64 count;    /* wakeup-to-run intervals seen */
  __u64 total;    /* their sum, in the histogram's unit */
  struct pm_log2_hist hist;
};

struct runq_hist {
  __u64 slots[PM_RUNQ_SLOTS]; /* samples with rq->nr_running == slot */
};

#endif
