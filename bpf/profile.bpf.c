// SPDX-License-Identifier: GPL-2.0
/* profile: on-CPU stack sampling. A perf_event program on every CPU (at
 * 99 Hz by default) takes the kernel and user stacks of whatever runs and
 * counts samples per (tgid, comm, user stack id, kernel stack id) in the
 * kernel (user stacks by frame pointers, or walked from CFI:
 * common/unwind.bpf.h); user space reads the maps once, at the end. The first sample of a
 * process also lands in `fresh`, so user space can capture its mappings
 * while it is alive (its frames stay named after it exits). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "profile.h"
#include "common/fresh.bpf.h"
#include "common/unwind.bpf.h"

const volatile bool profile_user_stacks = true;
const volatile bool profile_kernel_stacks = true;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PROFILE_MAX_KEYS);
  __type(key, struct pm_profile_key);
  __type(value, __u64);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, PROFILE_MAX_STACKS);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, PROFILE_MAX_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PROFILE_C_NR);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
  __u64 *v = bpf_map_lookup_elem(&counters, &which);
  if (v)
    *v += 1;
}

/* -EFAULT means "no such stack here" (user stack of a kernel thread, kernel
 * stack of a user-mode sample); anything else lost a stack we wanted */
static __always_inline void check_stack(__s32 id)
{
  if (id < 0 && id != -14)
    count(PROFILE_C_STACK_LOST);
}

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tgid = id >> 32, pid = (__u32)id;

  if (pid == 0) {
    count(PROFILE_C_IDLE);
    return 0;
  }
  if (pm_skip_current()) {
    count(PROFILE_C_FILTERED);
    return 0;
  }

  struct pm_profile_key key = {};
  key.tgid = tgid;
  bpf_get_current_comm(&key.comm, sizeof key.comm);
  if (!profile_user_stacks) {
    key.user_stack_id = -14;
  } else if (unwind_mode) {
    key.user_stack_id = -2; /* the stack is unwind_stacks[user_hash] */
    key.user_hash = pm_unwind_user((struct pt_regs *)&ctx->regs, tgid, &key.user_stack_id);
  } else {
    key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
  }
  key.kern_stack_id = profile_kernel_stacks ? bpf_get_stackid(ctx, &stacks, 0) : -14;
  if (!key.user_hash)
    check_stack(key.user_stack_id == -2 ? -12 : key.user_stack_id);
  check_stack(key.kern_stack_id);

  __u64 *n = bpf_map_lookup_elem(&counts, &key);
  if (n) {
    __sync_fetch_and_add(n, 1);
    pm_stat_add(PM_STAT_EVENTS, 1);
    return 0;
  } else {
    __u64 one = 1;
    if (bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST) != 0) {
      /* another CPU inserted it meanwhile, or the map is full */
      n = bpf_map_lookup_elem(&counts, &key);
      if (!n) {
        pm_stat_add(PM_STAT_LOST, 1);
        return 0;
      }
      __sync_fetch_and_add(n, 1);
    }
  }
  pm_stat_add(PM_STAT_EVENTS, 1);

  /* a process's first sample always makes a new key: only then can it be new */
  pm_note_fresh(tgid);
  return 0;
}
