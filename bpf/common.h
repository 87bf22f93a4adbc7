/* Shared by every bpf/<tracer>.bpf.c.
 *
 * - The target filter: targ_tgid / targ_pid / targ_cgroup_id are `const
 *   volatile` rodata, set by user space between open and load
 *   (obj:set_config{...}); at load time the verifier sees constants and drops
 *   the checks that are not used.
 * - log2 and linear histogram slots.
 * - pm_stats: a per-CPU array of events seen / lost / missed that pm.bpf reads
 *   for every result (obj:stats(), obj:lost()), so drops are never silent.
 */
#ifndef PM_BPF_COMMON_H
#define PM_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "common/pm_types.h"

#ifndef PM_NO_FILTER
const volatile __u32 targ_tgid = 0;      /* process id; 0 = every process */
const volatile __u32 targ_pid = 0;       /* thread id; 0 = every thread */
const volatile __u64 targ_cgroup_id = 0; /* cgroup v2 id (inode of its dir); 0 = any */
#endif

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PM_STAT_NR);
  __type(key, __u32);
  __type(value, __u64);
} pm_stats SEC(".maps");

static __always_inline void pm_stat_add(__u32 which, __u64 n)
{
  __u64 *v = bpf_map_lookup_elem(&pm_stats, &which);
  if (v)
    *v += n; /* per-CPU: no atomics needed */
}

#ifndef PM_NO_FILTER
/* True when the current task is outside the target. */
static __always_inline bool pm_skip_current(void)
{
  if (targ_tgid || targ_pid) {
    __u64 id = bpf_get_current_pid_tgid();
    if (targ_tgid && (__u32)(id >> 32) != targ_tgid)
      return true;
    if (targ_pid && (__u32)id != targ_pid)
      return true;
  }
  if (targ_cgroup_id && bpf_get_current_cgroup_id() != targ_cgroup_id)
    return true;
  return false;
}

/* cgroup v2 id of any task (not only current), for wakeup-side filters */
static __always_inline __u64 pm_task_cgroup_id(struct task_struct *t)
{
  return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

/* True when task t (tgid, pid given to save reads) is outside the target. */
static __always_inline bool pm_skip_task(struct task_struct *t, __u32 tgid, __u32 pid)
{
  if (targ_tgid && tgid != targ_tgid)
    return true;
  if (targ_pid && pid != targ_pid)
    return true;
  if (targ_cgroup_id && pm_task_cgroup_id(t) != targ_cgroup_id)
    return true;
  return false;
}
#endif

/* floor(log2(v)) for 32 bits, branch-light and loop-free for the verifier */
static __always_inline __u64 pm_log2(__u32 v)
{
  __u32 shift, r;
  r = (v > 0xFFFF) << 4;
  v >>= r;
  shift = (v > 0xFF) << 3;
  v >>= shift;
  r |= shift;
  shift = (v > 0xF) << 2;
  v >>= shift;
  r |= shift;
  shift = (v > 0x3) << 1;
  v >>= shift;
  r |= shift;
  r |= (v >> 1);
  return r;
}

static __always_inline __u64 pm_log2l(__u64 v)
{
  __u32 hi = v >> 32;
  return hi ? pm_log2(hi) + 32 : pm_log2((__u32)v);
}

/* log2 slot of v, clamped into a histogram of PM_LOG2_SLOTS */
static __always_inline __u32 pm_log2_slot(__u64 v)
{
  __u64 s = pm_log2l(v);
  return s >= PM_LOG2_SLOTS ? PM_LOG2_SLOTS - 1 : (__u32)s;
}

/* linear slot: v / step, clamped into [0, nslots-1] */
static __always_inline __u32 pm_linear_slot(__u64 v, __u64 step, __u32 nslots)
{
  __u64 s = step ? v / step : v;
  return s >= nslots ? nslots - 1 : (__u32)s;
}

static __always_inline void pm_hist_add(struct pm_log2_hist *h, __u64 v)
{
  __u32 s = pm_log2_slot(v);
  if (s < PM_LOG2_SLOTS) /* bound for the verifier */
    h->slots[s]++;
}

/* for maps shared between CPUs (hash maps that are not per-CPU) */
static __always_inline void pm_hist_add_atomic(struct pm_log2_hist *h, __u64 v)
{
  __u32 s = pm_log2_slot(v);
  if (s < PM_LOG2_SLOTS)
    __sync_fetch_and_add(&h->slots[s], 1);
}

/* Reserves a ring buffer record; counts a lost event when it is full. */
static __always_inline void *pm_ringbuf_reserve(void *rb, __u64 size)
{
  void *e = bpf_ringbuf_reserve(rb, size, 0);
  if (!e)
    pm_stat_add(PM_STAT_LOST, 1);
  return e;
}

char LICENSE[] SEC("license") = "GPL";

#endif
