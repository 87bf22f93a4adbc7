/* Per-syscall counts, errors by errno and latency histograms
 * (raw_syscalls:sys_enter / sys_exit as raw tracepoints).
 *
 * Hot path: the target filter (rodata constants), one task-local storage
 * lookup per event and one per-CPU array slot found from the syscall number:
 * no hash maps and no string keys. The object uses no CO-RE relocation, so
 * libbpf does not need to parse the kernel's BTF at load (fast start).
 *
 * Modes: count (attach sys_enter only: calls counted when they start) or
 * latency (sys_enter + sys_exit: counts, errors and latency on exit). */
#include "common.h"
#include "syscall.h"

const volatile bool targ_latency = true;

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PM_SYSCALL_MAX / PM_SYSCALL_GROUP);
  __type(key, __u32);
  __type(value, struct syscall_stat_group);
} stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct syscall_counts);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, struct syscall_err_key);
  __type(value, __u64);
} errs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct syscall_start);
} start SEC(".maps");

SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
  if (pm_skip_current())
    return 0;
  if (!targ_latency) {
    __u32 zero = 0;
    struct syscall_counts *c = bpf_map_lookup_elem(&counts, &zero);
    if (c && (__u64)id < PM_SYSCALL_MAX)
      c->count[id & (PM_SYSCALL_MAX - 1)]++;
    else
      pm_stat_add(PM_STAT_MISSED, 1);
    return 0;
  }
  struct syscall_start *s =
      bpf_task_storage_get(&start, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!s) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  s->nr = (__u64)id;
  s->ts = bpf_ktime_get_ns();
  return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
  if (pm_skip_current())
    return 0;
  struct syscall_start *s = bpf_task_storage_get(&start, bpf_get_current_task_btf(), 0, 0);
  if (!s || !s->ts) {
    pm_stat_add(PM_STAT_MISSED, 1); /* entered before we attached */
    return 0;
  }
  __u64 delta = bpf_ktime_get_ns() - s->ts;
  __u64 nr64 = s->nr;
  s->ts = 0;
  if (nr64 >= PM_SYSCALL_MAX) {
    pm_stat_add(PM_STAT_MISSED, 1);
    return 0;
  }
  __u32 nr = (__u32)nr64, key = nr / PM_SYSCALL_GROUP;
  struct syscall_stat_group *g = bpf_map_lookup_elem(&stats, &key);
  if (!g) {
    pm_stat_add(PM_STAT_MISSED, 1);
    return 0;
  }
  struct syscall_stat *st = &g->s[nr & (PM_SYSCALL_GROUP - 1)];
  st->count++;
  st->total_ns += delta;
  pm_hist_add(&st->hist, delta);
  if (ret < 0) {
    st->errors++;
    struct syscall_err_key k = { .nr = nr, .err = (__u32)-ret };
    __u64 one = 1, *c = bpf_map_lookup_elem(&errs, &k);
    if (c) {
      __sync_fetch_and_add(c, 1);
    } else if (bpf_map_update_elem(&errs, &k, &one, BPF_NOEXIST) != 0) {
      c = bpf_map_lookup_elem(&errs, &k); /* another CPU created it, or the map is full */
      if (c)
        __sync_fetch_and_add(c, 1);
      else
        pm_stat_add(PM_STAT_LOST, 1);
    }
  }
  return 0;
}
