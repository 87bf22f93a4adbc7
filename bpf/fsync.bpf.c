/* fsync, fdatasync and sync_file_range per thread and file descriptor:
 * counts, errors and latency (syscalls:sys_enter_* / sys_exit_*
 * tracepoints, which fire for these calls only, so the rest of the
 * workload's syscalls cost nothing). User space names the file from
 * /proc/PID/fd. */
#include "common.h"
#include "fsync.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, struct fsync_key);
  __type(value, struct fsync_stat);
} stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct fsync_start);
} start SEC(".maps");

static __always_inline int enter(__s32 fd, __u32 call)
{
  if (pm_skip_current())
    return 0;
  struct fsync_start *s =
      bpf_task_storage_get(&start, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!s) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  s->ts = bpf_ktime_get_ns();
  s->fd = fd;
  s->call = call;
  return 0;
}

static __always_inline int leave(long ret)
{
  if (pm_skip_current())
    return 0;
  struct fsync_start *s = bpf_task_storage_get(&start, bpf_get_current_task_btf(), 0, 0);
  if (!s || !s->ts) {
    pm_stat_add(PM_STAT_MISSED, 1); /* entered before we attached */
    return 0;
  }
  __u64 delta = bpf_ktime_get_ns() - s->ts;
  __u64 id = bpf_get_current_pid_tgid();
  struct fsync_key k = { .tgid = id >> 32, .tid = (__u32)id, .fd = s->fd, .call = s->call };
  s->ts = 0;
  struct fsync_stat *st = bpf_map_lookup_elem(&stats, &k);
  if (!st) {
    struct fsync_stat zero = {};
    if (bpf_map_update_elem(&stats, &k, &zero, BPF_NOEXIST) != 0 && !bpf_map_lookup_elem(&stats, &k)) {
      pm_stat_add(PM_STAT_LOST, 1); /* the map is full */
      return 0;
    }
    st = bpf_map_lookup_elem(&stats, &k);
    if (!st)
      return 0;
  }
  pm_stat_add(PM_STAT_EVENTS, 1);
  st->count++;
  st->total_ns += delta;
  if (delta > st->max_ns)
    st->max_ns = delta;
  if (ret < 0)
    st->errors++;
  pm_hist_add(&st->hist, delta);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_fsync")
int fsync_enter(struct trace_event_raw_sys_enter *ctx) { return enter((__s32)ctx->args[0], PM_FSYNC_FSYNC); }

SEC("tracepoint/syscalls/sys_exit_fsync")
int fsync_exit(struct trace_event_raw_sys_exit *ctx) { return leave(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_fdatasync")
int fdatasync_enter(struct trace_event_raw_sys_enter *ctx)
{
  return enter((__s32)ctx->args[0], PM_FSYNC_FDATASYNC);
}

SEC("tracepoint/syscalls/sys_exit_fdatasync")
int fdatasync_exit(struct trace_event_raw_sys_exit *ctx) { return leave(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_sync_file_range")
int range_enter(struct trace_event_raw_sys_enter *ctx) { return enter((__s32)ctx->args[0], PM_FSYNC_RANGE); }

SEC("tracepoint/syscalls/sys_exit_sync_file_range")
int range_exit(struct trace_event_raw_sys_exit *ctx) { return leave(ctx->ret); }
