/* Request latency of a server, per connection, from its own syscalls
 * (raw_syscalls:sys_enter / sys_exit as raw tracepoints).
 *
 * A connection is a (tgid, fd) in the conns map: returned by accept/accept4
 * while tracing, or put there by user space at start (inbound sockets found
 * in /proc). On a connection, a read-side call that returns > 0 bytes while
 * no request is pending starts a request (at the end of that read); the
 * first write-side call that returns > 0 ends it (at the start of that
 * write), and the time between goes into a log-linear histogram. close()
 * with a request pending counts it as closed without response.
 *
 * Hot path: every syscall of the machine enters sys_enter; a rodata table
 * (red_kind, by syscall number) turns away the ones that are not ours with
 * one load. Only then the target filter (a hash of tgids) is looked up. At
 * sys_exit, tasks that never made one of our calls have no task storage,
 * which is the cheapest "no" there is. */
#include "common.h"
#include "red.h"

const volatile __u8 red_kind[RED_SYSCALL_MAX] = {};
const volatile bool targ_all = false; /* every process (no tgid set) */

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, RED_MAX_TGIDS);
  __type(key, __u32);
  __type(value, __u32);
} tgids SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, RED_MAX_CONNS);
  __type(key, struct red_conn_key);
  __type(value, struct red_conn);
} conns SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct red_stats);
} stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct red_call);
} calls SEC(".maps");

static __always_inline bool red_skip_current(void)
{
  if (!targ_all) {
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!bpf_map_lookup_elem(&tgids, &tgid))
      return true;
  }
  if (targ_cgroup_id && bpf_get_current_cgroup_id() != targ_cgroup_id)
    return true;
  return false;
}

static __always_inline struct red_stats *red_stats_get(void)
{
  __u32 zero = 0;
  return bpf_map_lookup_elem(&stats, &zero);
}

/* log-linear slot of red.h */
static __always_inline __u32 red_slot(__u64 v)
{
  if (v < RED_SUB)
    return (__u32)v;
  __u64 e = pm_log2l(v);
  if (e >= RED_MAX_EXP)
    return RED_SLOTS - 1;
  return RED_SUB + (__u32)(e - RED_SUB_BITS) * RED_SUB + (__u32)((v >> (e - RED_SUB_BITS)) & (RED_SUB - 1));
}

static __always_inline void red_err(struct red_stats *st, __u32 kind, long ret)
{
  __u64 e = (__u64)-ret;
  if (e >= RED_ERRNO_MAX)
    e = RED_ERRNO_MAX - 1;
  if (kind < RED_K_NR)
    st->errs[kind][e & (RED_ERRNO_MAX - 1)]++;
}

static __always_inline void red_close(__u32 tgid, __s64 fd)
{
  struct red_conn_key k = { .tgid = tgid, .fd = (__u32)fd };
  struct red_conn *c = bpf_map_lookup_elem(&conns, &k);
  if (!c)
    return;
  struct red_stats *st = red_stats_get();
  if (!st)
    return;
  st->calls[RED_K_CLOSE]++;
  if (c->start_ns)
    st->closed_pending++;
  if (bpf_map_delete_elem(&conns, &k) == 0)
    st->conns_removed++;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(red_enter, struct pt_regs *regs, long id)
{
  if ((__u64)id >= RED_SYSCALL_MAX)
    return 0;
  __u32 kind = red_kind[id & (RED_SYSCALL_MAX - 1)];
  if (!kind)
    return 0;
  if (red_skip_current())
    return 0;
  pm_stat_add(PM_STAT_EVENTS, 1);
  __s64 fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs);
  if (kind == RED_K_CLOSE) {
    /* Linux frees the fd even when close fails: act on entry */
    red_close(bpf_get_current_pid_tgid() >> 32, fd);
    return 0;
  }
  struct red_call *c =
      bpf_task_storage_get(&calls, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!c) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  c->fd = fd;
  c->kind = kind;
  c->ts = bpf_ktime_get_ns();
  return 0;
}

#if defined(__TARGET_ARCH_x86)
#define RED_REG_NR(r) ((__s64)BPF_CORE_READ(r, orig_ax))
#elif defined(__TARGET_ARCH_arm64)
#define RED_REG_NR(r) ((__s64)(__s32)BPF_CORE_READ(r, syscallno))
#endif

/* An accept entered before the programs were attached (a server waiting
 * for its next client when tracing starts) has no stored call: it is known
 * by its syscall number, read only for successful returns of traced tasks. */
static __always_inline bool red_untracked_accept(struct pt_regs *regs, long ret)
{
#ifdef RED_REG_NR
  if (ret < 0)
    return false;
  __s64 nr = RED_REG_NR(regs);
  if (nr < 0 || nr >= RED_SYSCALL_MAX)
    return false;
  if (red_kind[nr & (RED_SYSCALL_MAX - 1)] != RED_K_ACCEPT)
    return false;
  return !red_skip_current();
#else
  return false;
#endif
}

SEC("raw_tp/sys_exit")
int BPF_PROG(red_exit, struct pt_regs *regs, long ret)
{
  struct red_call *c = bpf_task_storage_get(&calls, bpf_get_current_task_btf(), 0, 0);
  __u32 kind;
  __s64 fd = -1;
  __u64 t_enter = 0;
  if (c && c->kind) {
    kind = (__u32)c->kind;
    fd = c->fd;
    t_enter = c->ts;
    c->kind = RED_K_NONE;
  } else if (!c && red_untracked_accept(regs, ret)) {
    kind = RED_K_ACCEPT;
  } else {
    return 0;
  }
  struct red_stats *st = red_stats_get();
  if (!st)
    return 0;
  __u32 tgid = bpf_get_current_pid_tgid() >> 32;

  if (kind == RED_K_ACCEPT) {
    st->calls[RED_K_ACCEPT]++;
    if (ret < 0) {
      red_err(st, RED_K_ACCEPT, ret);
      return 0;
    }
    struct red_conn_key k = { .tgid = tgid, .fd = (__u32)ret };
    struct red_conn v = { .start_ns = 0, .flags = RED_CONN_ACCEPTED };
    if (bpf_map_update_elem(&conns, &k, &v, BPF_NOEXIST) == 0)
      st->conns_added++;
    else if (bpf_map_update_elem(&conns, &k, &v, BPF_ANY) != 0) /* a stale entry: fd reused */
      pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }

  if (kind != RED_K_READ && kind != RED_K_WRITE)
    return 0;
  bool is_read = kind == RED_K_READ;
  struct red_conn_key k = { .tgid = tgid, .fd = (__u32)fd };
  struct red_conn *conn = bpf_map_lookup_elem(&conns, &k);
  /* constant indexes below: the verifier cannot bound a computed one here */
  if (!conn) {
    if (is_read)
      st->other_fd[RED_K_READ]++;
    else
      st->other_fd[RED_K_WRITE]++;
    return 0;
  }
  if (is_read) {
    st->calls[RED_K_READ]++;
    if (ret < 0) {
      red_err(st, RED_K_READ, ret);
    } else if (ret == 0) {
      st->eof_reads++;
    } else if (!conn->start_ns) {
      conn->start_ns = bpf_ktime_get_ns();
      st->started++;
    }
    return 0;
  }
  st->calls[RED_K_WRITE]++;
  if (ret < 0) {
    red_err(st, RED_K_WRITE, ret);
    return 0;
  }
  if (ret == 0)
    return 0;
  __u64 start = conn->start_ns;
  if (!start) {
    st->unpaired_writes++;
    return 0;
  }
  conn->start_ns = 0;
  __u64 d = t_enter > start ? t_enter - start : 0;
  st->requests++;
  st->sum_ns += d;
  if (!st->min_ns || d < st->min_ns)
    st->min_ns = d;
  if (d > st->max_ns)
    st->max_ns = d;
  __u64 s = red_slot(d);
  barrier_var(s); /* bound the register the access uses, not a copy of it */
  if (s < RED_SLOTS)
    st->slots[s]++;
  return 0;
}

/* Children forked by a traced process are traced too (nginx's master
 * starting a new worker). Threads share the tgid: nothing to add. */
SEC("raw_tp/sched_process_fork")
int BPF_PROG(red_fork, struct task_struct *parent, struct task_struct *child)
{
  if (targ_all)
    return 0;
  __u32 ptgid = bpf_get_current_pid_tgid() >> 32;
  if (!bpf_map_lookup_elem(&tgids, &ptgid))
    return 0;
  __u32 ctgid = BPF_CORE_READ(child, tgid);
  if (ctgid == ptgid)
    return 0;
  __u32 one = 1;
  if (bpf_map_update_elem(&tgids, &ctgid, &one, BPF_ANY) != 0)
    pm_stat_add(PM_STAT_LOST, 1);
  return 0;
}
