// SPDX-License-Identifier: GPL-2.0
/* offcpu: time tasks spend blocked, per (tgid, pid, kernel stack, user
 * stack), the raw material of off-CPU flame graphs.
 *
 * sched_switch: the task switching out (prev) gets a timestamp and its two
 * stacks (it is still `current`, so bpf_get_stackid sees its stacks); when it
 * is switched back in (next) the blocked time is added to its key. Time is in
 * microseconds; blocks shorter than offcpu_min_us are counted, not kept. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "offcpu.h"
#include "common/unwind.bpf.h"

const volatile __u64 offcpu_min_us = 1;       /* ignore shorter blocks */
const volatile __u64 offcpu_max_us = ~0ull;   /* and longer ones */
const volatile bool offcpu_blocked_only = true;  /* skip preempted (runnable) tasks */
const volatile bool offcpu_kernel_stacks = true;
const volatile bool offcpu_user_stacks = true;
/* kernel frames of the tracing machinery above __schedule: this program and
 * bpf_trace_run4 (its return address moves when run-time stats toggle, which
 * would split one stack into two) */
const volatile __u32 offcpu_kern_skip = 2;

struct pm_ostart {
  __u64 ts;
  __u64 user_hash; /* walked from CFI: its key in unwind_stacks */
  __s32 kern_stack_id;
  __s32 user_stack_id;
  __u32 tgid;
  __u32 state;
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, OFFCPU_MAX_INFLIGHT);
  __type(key, __u32);
  __type(value, struct pm_ostart);
} starts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, OFFCPU_MAX_KEYS);
  __type(key, struct pm_offcpu_key);
  __type(value, struct pm_offcpu_val);
} blocked SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, OFFCPU_MAX_STACKS);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, OFFCPU_C_NR);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
  __u64 *v = bpf_map_lookup_elem(&counters, &which);
  if (v)
    *v += 1;
}

static __always_inline int on_switch(void *ctx, struct task_struct *prev, struct task_struct *next,
                                     __u32 prev_state)
{
  __u32 prev_pid = BPF_CORE_READ(prev, pid);
  /* prev is still current here, so the filter and the stacks are its own;
   * pid 0 is the idle task of each CPU */
  if (prev_pid && (!offcpu_blocked_only || prev_state != 0) && !pm_skip_current()) {
    struct pm_ostart s = {};
    s.ts = bpf_ktime_get_ns();
    s.tgid = BPF_CORE_READ(prev, tgid);
    s.state = prev_state;
    s.kern_stack_id = offcpu_kernel_stacks ? bpf_get_stackid(ctx, &stacks, offcpu_kern_skip & BPF_F_SKIP_FIELD_MASK) : -1;
    if (!offcpu_user_stacks) {
      s.user_stack_id = -1;
    } else if (unwind_mode) {
      s.user_stack_id = -2;
      s.user_hash = pm_unwind_user(NULL, s.tgid, &s.user_stack_id);
    } else {
      s.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
    }
    /* kernel threads have no user stack: -EFAULT is expected there */
    if ((offcpu_kernel_stacks && s.kern_stack_id < 0 && s.kern_stack_id != -14) ||
        (offcpu_user_stacks && !s.user_hash && s.user_stack_id < 0 && s.user_stack_id != -14))
      count(OFFCPU_C_STACK_ERR);
    if (bpf_map_update_elem(&starts, &prev_pid, &s, BPF_ANY))
      pm_stat_add(PM_STAT_LOST, 1);
  }

  __u32 next_pid = BPF_CORE_READ(next, pid);
  struct pm_ostart *s = bpf_map_lookup_elem(&starts, &next_pid);
  if (!s)
    return 0;
  __u64 delta_us = (bpf_ktime_get_ns() - s->ts) / 1000;
  struct pm_offcpu_key k = {
    .tgid = s->tgid,
    .pid = next_pid,
    .kern_stack_id = s->kern_stack_id,
    .user_stack_id = s->user_stack_id,
    .user_hash = s->user_hash,
  };
  __u32 state = s->state;
  bpf_map_delete_elem(&starts, &next_pid);
  if (delta_us < offcpu_min_us || delta_us > offcpu_max_us) {
    count(OFFCPU_C_SHORT);
    return 0;
  }
  struct pm_offcpu_val *v = bpf_map_lookup_elem(&blocked, &k);
  if (!v) {
    struct pm_offcpu_val zero = {};
    BPF_CORE_READ_STR_INTO(&zero.comm, next, comm);
    bpf_map_update_elem(&blocked, &k, &zero, BPF_NOEXIST);
    v = bpf_map_lookup_elem(&blocked, &k);
    if (!v) {
      pm_stat_add(PM_STAT_LOST, 1);
      return 0;
    }
  }
  __sync_fetch_and_add(&v->total_us, delta_us);
  __sync_fetch_and_add(&v->count, 1);
  if (delta_us > v->max_us)
    v->max_us = delta_us;
  v->state = state;
  pm_stat_add(PM_STAT_EVENTS, 1);
  return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
  return on_switch(ctx, prev, next, prev_state);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(offcpu_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
  return on_switch(ctx, prev, next, prev_state);
}
