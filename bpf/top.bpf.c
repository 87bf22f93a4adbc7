/* Syscalls per process for `perf_manual top`: one counter per tgid, bumped
 * at raw_syscalls:sys_enter. The syscall tracer counts per syscall number
 * (for one target or the whole system); top needs the other axis (which
 * process makes the calls), and only a count, so one per-CPU hash slot per
 * call: no timestamps, no exit program. */
#include "common.h"

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);   /* tgid */
  __type(value, __u64); /* syscalls entered */
} calls SEC(".maps");

SEC("raw_tp/sys_enter")
int BPF_PROG(top_sys_enter, struct pt_regs *regs, long id)
{
  if (pm_skip_current())
    return 0;
  __u32 tgid = bpf_get_current_pid_tgid() >> 32;
  __u64 *c = bpf_map_lookup_elem(&calls, &tgid);
  if (c) {
    (*c)++;
    return 0;
  }
  __u64 one = 1;
  if (bpf_map_update_elem(&calls, &tgid, &one, BPF_NOEXIST))
    pm_stat_add(PM_STAT_LOST, 1); /* the map is full: a process uncounted */
  return 0;
}
