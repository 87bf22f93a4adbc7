/* Security events for exec-monitor: process execs (sched:sched_process_exec,
 * with the argument list from the new mm), opens of watched paths
 * (syscalls:sys_enter_openat; user space fills the `watched` LPM trie with
 * the path prefixes its rules name, so other opens cost a lookup and are not
 * sent), and outbound TCP connects (sock:inet_sock_set_state CLOSE ->
 * SYN_SENT, in the connecting process). Events go to user space through a
 * ring buffer; user space judges them with the team's Lua rules. */
#include "common.h"
#include "execmon.h"

const volatile bool watch_all_opens = false;

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1024 * 1024);
} events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, 1024);
  __type(key, struct execmon_prefix);
  __type(value, __u32);
} watched SEC(".maps");

/* keep the event struct in the object's BTF for the spec that checks the Lua mirror */
const struct execmon_event *execmon_event_btf __attribute__((unused));

/* scratch keys: 132 bytes is a large share of the 512-byte stack */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct execmon_prefix);
} scratch SEC(".maps");

static __always_inline struct execmon_event *begin(__u32 kind)
{
  struct execmon_event *e = pm_ringbuf_reserve(&events, sizeof *e);
  if (!e)
    return NULL;
  __u64 id = bpf_get_current_pid_tgid();
  struct task_struct *t = bpf_get_current_task_btf();
  e->ts_ns = bpf_ktime_get_ns();
  e->kind = kind;
  e->pid = id >> 32;
  e->tid = (__u32)id;
  e->uid = (__u32)bpf_get_current_uid_gid();
  e->ppid = BPF_CORE_READ(t, real_parent, tgid);
  e->flags = 0;
  e->family = e->dport = e->sport = e->args_len = 0;
  __builtin_memset(e->daddr, 0, sizeof e->daddr);
  e->path[0] = e->args[0] = 0;
  bpf_get_current_comm(e->comm, sizeof e->comm);
  BPF_CORE_READ_STR_INTO(&e->pcomm, t, real_parent, comm);
  pm_stat_add(PM_STAT_EVENTS, 1);
  return e;
}

SEC("tracepoint/sched/sched_process_exec")
int execmon_exec(struct trace_event_raw_sched_process_exec *ctx)
{
  if (pm_skip_current())
    return 0;
  struct execmon_event *e = begin(PM_EXECMON_EXEC);
  if (!e)
    return 0;
  unsigned off = ctx->__data_loc_filename & 0xFFFF;
  bpf_probe_read_kernel_str(e->path, sizeof e->path, (void *)ctx + off);
  struct task_struct *t = bpf_get_current_task_btf();
  unsigned long start = BPF_CORE_READ(t, mm, arg_start), end = BPF_CORE_READ(t, mm, arg_end);
  unsigned long len = end > start ? end - start : 0;
  if (len > PM_EXECMON_ARGS - 1)
    len = PM_EXECMON_ARGS - 1;
  len &= PM_EXECMON_ARGS - 1; /* a bound the verifier can see */
  if (len > 0 && bpf_probe_read_user(e->args, len, (void *)start) == 0)
    e->args_len = len;
  bpf_ringbuf_submit(e, 0);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int execmon_openat(struct trace_event_raw_sys_enter *ctx)
{
  if (pm_skip_current())
    return 0;
  const char *name = (const char *)ctx->args[1];
  if (!watch_all_opens) {
    __u32 zero = 0;
    struct execmon_prefix *k = bpf_map_lookup_elem(&scratch, &zero);
    if (!k)
      return 0;
    __builtin_memset(k->data, 0, sizeof k->data);
    if (bpf_probe_read_user_str(k->data, sizeof k->data, name) <= 0)
      return 0;
    k->prefixlen = PM_EXECMON_KEY * 8;
    if (!bpf_map_lookup_elem(&watched, k))
      return 0;
  }
  struct execmon_event *e = begin(PM_EXECMON_OPEN);
  if (!e)
    return 0;
  bpf_probe_read_user_str(e->path, sizeof e->path, name);
  e->flags = (__s32)ctx->args[2];
  bpf_ringbuf_submit(e, 0);
  return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int execmon_connect(struct trace_event_raw_inet_sock_set_state *ctx)
{
  if (ctx->protocol != IPPROTO_TCP || ctx->oldstate != 7 /* TCP_CLOSE */ || ctx->newstate != 2 /* SYN_SENT */)
    return 0;
  if (pm_skip_current())
    return 0;
  struct execmon_event *e = begin(PM_EXECMON_CONNECT);
  if (!e)
    return 0;
  e->family = ctx->family;
  e->dport = ctx->dport;
  e->sport = ctx->sport;
  /* the context cannot be read through a moved pointer: copy with a helper */
  if (ctx->family == 2 /* AF_INET */)
    bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
  else
    bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
  bpf_ringbuf_submit(e, 0);
  return 0;
}
