// SPDX-License-Identifier: GPL-2.0
/* tsa: thread-state accounting. Every thread of the target is, at any
 * moment, on a CPU, runnable (woken or preempted, waiting for a CPU) or
 * blocked; the scheduler tracepoints mark each change, and the time between
 * two changes goes to the state left. Measured, not sampled.
 *
 *   sched_switch   prev: CPU -> RUNQ (preempted, or prev_state 0) or BLOCKED
 *                        (the wait key is taken here: prev is current, so
 *                        its syscall registers and stack are at hand)
 *                  next: RUNQ -> CPU
 *   sched_wakeup   BLOCKED -> RUNQ: the blocked time goes to (tid, wait key)
 *   sched_wakeup_new  a thread is born runnable
 *   sched_process_exit  closes the thread's books
 *
 * The first event of a thread records what it implies about the time before
 * it (user space attributes the start of the window); user space also closes
 * the state in progress at the end. Programs come in two sets (tp_btf, and
 * raw_tp as the fallback); user space loads one. */
#include "common.h"
#include "tsa.h"

const volatile bool tsa_kernel_stacks = true;
/* frames of the tracing machinery above __schedule (this program, bpf_trace_run4) */
const volatile __u32 tsa_kern_skip = 2;

#define TASK_RUNNING 0
#define TASK_DEAD_STATE 0x80
#define TASK_REPORT_MASK 0x3 /* TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE */

/* futex(2) */
#define NR_FUTEX_X86 202
#define NR_FUTEX_ARM64 98

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, TSA_MAX_THREADS);
  __type(key, __u32);
  __type(value, struct tsa_thread);
} threads SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, TSA_MAX_WAITS);
  __type(key, struct tsa_wkey);
  __type(value, struct tsa_wval);
} waits SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, TSA_MAX_STACKS);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TSA_C_NR);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

/* tp_btf only: a per-task verdict of the filter ("not a target"), so a
 * cgroup target does not walk task->cgroups->dfl_cgrp->kn on every switch
 * of every other task. Values: 1 = outside, 2 = inside. */
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, __u8);
} verdict SEC(".maps");

/* T0 of the window, written by user space once every program is attached:
 * until then events are ignored, so no thread's books start half-way
 * through the attach (a switch-out seen without its wakeup program) */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} armed SEC(".maps");

static __always_inline bool disarmed(void)
{
  __u32 zero = 0;
  __u64 *t0 = bpf_map_lookup_elem(&armed, &zero);
  return !t0 || !*t0;
}

static __always_inline void count(__u32 which)
{
  __u64 *v = bpf_map_lookup_elem(&counters, &which);
  if (v)
    *v += 1;
}

static struct tsa_thread zero_thread;

/* A new thread entry: `first` is what the first event says about the time
 * before it. */
static __always_inline struct tsa_thread *new_thread(struct task_struct *t, __u32 tid, __u32 tgid,
                                                     __u8 first, __u8 cur, __u64 now)
{
  bpf_map_update_elem(&threads, &tid, &zero_thread, BPF_NOEXIST);
  struct tsa_thread *th = bpf_map_lookup_elem(&threads, &tid);
  if (!th) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  if (th->first_ts) /* raced with another CPU: it is set up */
    return th;
  th->tgid = tgid;
  th->first = first;
  th->cur = cur;
  th->ts = now;
  th->first_ts = now;
  th->wait.kstack = -1;
  th->wait.syscall = -1;
  th->exec = BPF_CORE_READ(t, se.sum_exec_runtime);
  th->rdelay = BPF_CORE_READ(t, sched_info.run_delay);
  BPF_CORE_READ_STR_INTO(&th->comm, t, comm);
  return th;
}

/* closes a blocked period: its time goes to (tid, its wait key) */
/* adds blocked time to the waits map under (tid, key) */
static __always_inline void flush_wait(__u32 tid, struct tsa_wait *w, __u64 ns, __u64 n, __u64 max)
{
  struct tsa_wkey k = { .tid = tid };
  k.wait = *w;
  struct tsa_wval *v = bpf_map_lookup_elem(&waits, &k);
  if (!v) {
    struct tsa_wval z = {};
    bpf_map_update_elem(&waits, &k, &z, BPF_NOEXIST);
    v = bpf_map_lookup_elem(&waits, &k);
    if (!v) {
      pm_stat_add(PM_STAT_LOST, 1);
      return;
    }
  }
  __sync_fetch_and_add(&v->ns, ns);
  __sync_fetch_and_add(&v->count, n);
  if (max > v->max_ns)
    v->max_ns = max;
}

static __always_inline bool same_wait(struct tsa_wait *a, struct tsa_wait *b)
{
  return a->syscall == b->syscall && a->arg0 == b->arg0 && a->arg1 == b->arg1 && a->kstack == b->kstack &&
         a->state == b->state;
}

/* closes a blocked period of d ns under the thread's current wait key (its
 * wakeups are serialised by the kernel: no atomics on the record) */
static __always_inline void add_blocked(struct tsa_thread *th, __u32 tid, __u64 d)
{
  if (th->acc_count && same_wait(&th->acc_wait, &th->wait)) {
    th->acc_ns += d;
    th->acc_count += 1;
    if (d > th->acc_max)
      th->acc_max = d;
    return;
  }
  if (th->acc_count)
    flush_wait(tid, &th->acc_wait, th->acc_ns, th->acc_count, th->acc_max);
  th->acc_wait = th->wait;
  th->acc_ns = d;
  th->acc_count = 1;
  th->acc_max = d;
}

static __always_inline void close_blocked(struct tsa_thread *th, __u32 tid, __u64 now)
{
  add_blocked(th, tid, now - th->ts);
}

/* The syscall the current task sleeps in, from its user registers. prev
 * is current at switch-out; tp_btf reads it and its registers directly
 * (trusted pointers), raw_tp through probe reads. */
#if defined(__TARGET_ARCH_x86)
#define REG_NR(r, READ) ((__s64)READ(r, orig_ax))
#define REG_A0(r, READ) READ(r, di)
#define REG_A1(r, READ) READ(r, si)
#define NR_FUTEX NR_FUTEX_X86
#elif defined(__TARGET_ARCH_arm64)
#define REG_NR(r, READ) ((__s64)(__s32)READ(r, syscallno))
#define REG_A0(r, READ) READ(r, orig_x0)
#define REG_A1(r, READ) READ(r, regs[1])
#define NR_FUTEX NR_FUTEX_ARM64
#endif

#define DEFINE_WAIT_KEY(sfx, READ, TASK)                                                                \
  static __always_inline void wait_key_##sfx(void *ctx, struct tsa_wait *w, struct task_struct *prev,  \
                                            __u32 prev_state)                                          \
  {                                                                                                    \
    __s64 nr = -1;                                                                                     \
    __u64 a0 = 0, a1 = 0;                                                                              \
    if (READ(prev, flags) & 0x00200000 /* PF_KTHREAD: no syscall, no page fault */) {                 \
      nr = -2;                                                                                         \
    } else {                                                                                           \
      struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(TASK);                                 \
      if (regs) {                                                                                      \
        nr = REG_NR(regs, READ);                                                                       \
        if (nr >= 0) {                                                                                 \
          a0 = REG_A0(regs, READ);                                                                     \
          if (nr == NR_FUTEX)                                                                          \
            a1 = REG_A1(regs, READ);                                                                   \
        } else {                                                                                       \
          nr = -1;                                                                                     \
        }                                                                                              \
      }                                                                                                \
    }                                                                                                  \
    w->syscall = nr;                                                                                   \
    w->arg0 = a0;                                                                                      \
    w->arg1 = a1;                                                                                      \
    w->state = prev_state & TASK_REPORT_MASK;                                                          \
    w->kstack = -1;                                                                                    \
    if (prev_state & 0x2) { /* D: the stack says what it waits for */                                  \
      if (BPF_CORE_READ_BITFIELD_PROBED(prev, in_iowait))                                              \
        w->state |= 0x100;                                                                             \
      if (tsa_kernel_stacks) {                                                                         \
        w->kstack = bpf_get_stackid(ctx, &stacks, tsa_kern_skip & BPF_F_SKIP_FIELD_MASK);              \
        if (w->kstack < 0)                                                                             \
          count(TSA_C_STACK_ERR);                                                                      \
      }                                                                                                \
    }                                                                                                  \
  }

#define READ_DIRECT(p, f) ((p)->f)
#define READ_PROBE(p, f) BPF_CORE_READ(p, f)

DEFINE_WAIT_KEY(btf, READ_DIRECT, prev)
DEFINE_WAIT_KEY(raw, READ_PROBE, bpf_get_current_task_btf())

/* the filter with its verdict cached in task storage (tp_btf) */
static __always_inline bool skip_cached(struct task_struct *t, __u32 tgid, __u32 tid)
{
  if (!targ_cgroup_id)
    return pm_skip_task(t, tgid, tid);
  __u8 *v = bpf_task_storage_get(&verdict, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (v && *v)
    return *v == 1;
  bool skip = pm_skip_task(t, tgid, tid);
  if (v)
    *v = skip ? 1 : 2;
  return skip;
}

static __always_inline bool skip_plain(struct task_struct *t, __u32 tgid, __u32 tid)
{
  return pm_skip_task(t, tgid, tid);
}

#define DEFINE_HANDLERS(sfx, READ, SKIP)                                                                \
  static __always_inline int on_switch_##sfx(void *ctx, bool preempt, struct task_struct *prev,        \
                                            struct task_struct *next, __u32 prev_state)                 \
  {                                                                                                    \
    if (disarmed())                                                                                    \
      return 0;                                                                                        \
    __u64 now = bpf_ktime_get_ns();                                                                    \
    __u32 tid = READ(prev, pid), tgid = READ(prev, tgid);                                              \
    if (tid && !SKIP(prev, tgid, tid)) {                                                               \
      struct tsa_thread *th = bpf_map_lookup_elem(&threads, &tid);                                     \
      if (!th)                                                                                         \
        th = new_thread(prev, tid, tgid, TSA_CPU, TSA_CPU, now);                                       \
      if (th && th->cur != TSA_DEAD) {                                                                 \
        __u64 ex = READ(prev, se.sum_exec_runtime), rd = READ(prev, sched_info.run_delay);               \
        if (th->cur == TSA_CPU) {                                                                      \
          th->cpu_ns += now - th->ts;                                                                  \
        } else {                                                                                       \
          /* a switch-in (and maybe a wakeup) the programs did not see: the                            \
           * kernel's own run time and run-queue wait split the interval */                            \
          __u64 d = now - th->ts, ran = ex - th->exec, q = rd - th->rdelay;                            \
          if (ran > d)                                                                                 \
            ran = d;                                                                                   \
          if (q > d - ran)                                                                             \
            q = d - ran;                                                                               \
          th->cpu_ns += ran;                                                                           \
          if (th->cur == TSA_BLOCKED) {                                                                \
            th->runq_ns += q;                                                                          \
            add_blocked(th, tid, d - ran - q);                                                         \
          } else {                                                                                     \
            th->runq_ns += d - ran;                                                                    \
          }                                                                                            \
          count(TSA_C_MISSED_IN);                                                                      \
        }                                                                                              \
        th->exec = ex;                                                                                 \
        th->rdelay = rd;                                                                               \
        th->ts = now;                                                                                  \
        if (preempt || prev_state == TASK_RUNNING) {                                                   \
          th->cur = TSA_RUNQ;                                                                          \
        } else if (prev_state & TASK_DEAD_STATE) {                                                     \
          th->cur = TSA_DEAD;                                                                          \
          th->end_ts = now;                                                                            \
        } else {                                                                                       \
          th->cur = TSA_BLOCKED;                                                                       \
          wait_key_##sfx(ctx, &th->wait, prev, prev_state);                                                  \
        }                                                                                              \
        pm_stat_add(PM_STAT_EVENTS, 1);                                                                \
      }                                                                                                \
    }                                                                                                  \
    tid = READ(next, pid);                                                                             \
    tgid = READ(next, tgid);                                                                           \
    if (!tid || SKIP(next, tgid, tid))                                                                 \
      return 0;                                                                                        \
    struct tsa_thread *th = bpf_map_lookup_elem(&threads, &tid);                                       \
    if (!th) {                                                                                         \
      new_thread(next, tid, tgid, TSA_RUNQ, TSA_CPU, now);                                             \
      return 0;                                                                                        \
    }                                                                                                  \
    if (th->cur == TSA_RUNQ) {                                                                         \
      th->runq_ns += now - th->ts;                                                                     \
    } else if (th->cur == TSA_BLOCKED) {                                                               \
      /* no wakeup came: a signal kept it runnable (it never slept) */                                 \
      th->runq_ns += now - th->ts;                                                                     \
      count(TSA_C_SPURIOUS);                                                                           \
    } else if (th->cur == TSA_DEAD) {                                                                  \
      return 0;                                                                                        \
    } else if (th->cur == TSA_CPU) {                                                                   \
      /* its switch-out was not seen: it ran for what the kernel says, then waited */                  \
      __u64 d = now - th->ts, ran = READ(next, se.sum_exec_runtime) - th->exec;                          \
      if (ran > d)                                                                                     \
        ran = d;                                                                                       \
      th->cpu_ns += ran;                                                                               \
      th->runq_ns += d - ran;                                                                          \
      count(TSA_C_SPURIOUS);                                                                           \
    }                                                                                                  \
    th->exec = READ(next, se.sum_exec_runtime);                                                        \
    th->rdelay = READ(next, sched_info.run_delay);                                                     \
    th->cur = TSA_CPU;                                                                                 \
    th->ts = now;                                                                                      \
    pm_stat_add(PM_STAT_EVENTS, 1);                                                                    \
    return 0;                                                                                          \
  }                                                                                                    \
  static __always_inline int on_wakeup_##sfx(struct task_struct *p, bool born)                         \
  {                                                                                                    \
    if (disarmed())                                                                                    \
      return 0;                                                                                        \
    __u32 tid = READ(p, pid), tgid = READ(p, tgid);                                                    \
    if (!tid || SKIP(p, tgid, tid))                                                                    \
      return 0;                                                                                        \
    __u64 now = bpf_ktime_get_ns();                                                                    \
    struct tsa_thread *th = bpf_map_lookup_elem(&threads, &tid);                                       \
    if (!th) {                                                                                         \
      /* a wakeup of a thread still on its CPU (woken before it slept) */                              \
      if (!born && READ(p, on_cpu))                                                                    \
        new_thread(p, tid, tgid, TSA_CPU, TSA_CPU, now);                                               \
      else                                                                                             \
        new_thread(p, tid, tgid, born ? TSA_NONE : TSA_BLOCKED, TSA_RUNQ, now);                        \
      return 0;                                                                                        \
    }                                                                                                  \
    if (th->cur != TSA_BLOCKED)                                                                        \
      return 0; /* running or runnable already: nothing changes */                                     \
    close_blocked(th, tid, now);                                                                       \
    th->cur = TSA_RUNQ;                                                                                \
    th->ts = now;                                                                                      \
    pm_stat_add(PM_STAT_EVENTS, 1);                                                                    \
    return 0;                                                                                          \
  }                                                                                                    \
  static __always_inline int on_exit_##sfx(struct task_struct *p)                                      \
  {                                                                                                    \
    __u32 tid = READ(p, pid);                                                                          \
    struct tsa_thread *th = bpf_map_lookup_elem(&threads, &tid);                                       \
    if (!th || th->cur == TSA_DEAD)                                                                    \
      return 0;                                                                                        \
    __u64 now = bpf_ktime_get_ns();                                                                    \
    if (th->cur == TSA_CPU)                                                                            \
      th->cpu_ns += now - th->ts;                                                                      \
    th->ts = now;                                                                                      \
    th->cur = TSA_DEAD;                                                                                \
    th->end_ts = now;                                                                                  \
    return 0;                                                                                          \
  }

DEFINE_HANDLERS(btf, READ_DIRECT, skip_cached)
DEFINE_HANDLERS(raw, READ_PROBE, skip_plain)

SEC("tp_btf/sched_switch")
int BPF_PROG(tsa_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
  return on_switch_btf(ctx, preempt, prev, next, prev_state);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(tsa_wakeup_btf, struct task_struct *p)
{
  return on_wakeup_btf(p, false);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(tsa_wakeup_new_btf, struct task_struct *p)
{
  return on_wakeup_btf(p, true);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tsa_exit_btf, struct task_struct *p)
{
  return on_exit_btf(p);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(tsa_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
  return on_switch_raw(ctx, preempt, prev, next, prev_state);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(tsa_wakeup_raw, struct task_struct *p)
{
  return on_wakeup_raw(p, false);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(tsa_wakeup_new_raw, struct task_struct *p)
{
  return on_wakeup_raw(p, true);
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(tsa_exit_raw, struct task_struct *p)
{
  return on_exit_raw(p);
}
