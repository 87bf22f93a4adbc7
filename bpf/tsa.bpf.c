// SPDX-License-Identifier: GPL-2.0
/* tsa: thread-state accounting. Every thread of the target is, at any
 * moment, on a CPU, runnable (woken or preempted, waiting for a CPU) or
 * blocked. One program, on sched_switch, and only for the thread that
 * leaves its CPU: between two of its switch-outs a thread was off its CPU
 * once, then ran once. The kernel's own counters split that interval
 * exactly: se.sum_exec_runtime says how long it ran, sched_info.run_delay
 * how long it waited on a run queue; the rest it was blocked, on what its
 * previous switch-out said (the wait key, taken there: prev is current, so
 * its syscall registers and stack are at hand).
 *
 * No wakeup program is needed (half the runs of a wakeup + switch-in +
 * switch-out design), and a scheduler event that never reaches BPF costs
 * nothing: the next switch-out's deltas cover it.
 *
 * The time before a thread's first switch-out in the window and after its
 * last one are user space's: it reads the same two counters from
 * /proc/PID/task/TID/schedstat at the window's edges (tracers/tsa.lua,
 * M.account). Programs come in two sets (tp_btf, and raw_tp as the
 * fallback); user space loads one. */
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

/* T0 of the window, written by user space once the program is attached:
 * until then events are ignored, so every thread's books start at T0 */
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
  /* a thread's switch-outs are serialised: only user space reads v */
  v->ns += ns;
  v->count += n;
  if (max > v->max_ns)
    v->max_ns = max;
}

static __always_inline bool same_wait(struct tsa_wait *a, struct tsa_wait *b)
{
  return a->syscall == b->syscall && a->arg0 == b->arg0 && a->arg1 == b->arg1 && a->kstack == b->kstack &&
         a->state == b->state;
}

/* closes a blocked period of d ns under the thread's current wait key;
 * the latest key's total stays in the record while the key repeats */
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

/* prev is current: the filter reads the cgroup through a helper */
static __always_inline bool skip_prev(__u32 tgid, __u32 tid)
{
  if (targ_tgid && tgid != targ_tgid)
    return true;
  if (targ_pid && tid != targ_pid)
    return true;
  if (targ_cgroup_id && bpf_get_current_cgroup_id() != targ_cgroup_id)
    return true;
  return false;
}

#define DEFINE_SWITCH(sfx, READ)                                                                        \
  static __always_inline int on_switch_##sfx(void *ctx, bool preempt, struct task_struct *prev,        \
                                            __u32 prev_state)                                          \
  {                                                                                                    \
    __u32 tid = READ(prev, pid);                                                                       \
    if (!tid || disarmed())                                                                            \
      return 0;                                                                                        \
    __u32 tgid = READ(prev, tgid);                                                                     \
    if (skip_prev(tgid, tid))                                                                          \
      return 0;                                                                                        \
    __u64 now = bpf_ktime_get_ns();                                                                    \
    __u64 ex = READ(prev, se.sum_exec_runtime), rd = READ(prev, sched_info.run_delay);                 \
    struct tsa_thread *th = bpf_map_lookup_elem(&threads, &tid);                                       \
    if (!th) {                                                                                         \
      /* the first switch-out: the time before it is user space's */                                  \
      bpf_map_update_elem(&threads, &tid, &zero_thread, BPF_NOEXIST);                                  \
      th = bpf_map_lookup_elem(&threads, &tid);                                                        \
      if (!th) {                                                                                       \
        pm_stat_add(PM_STAT_LOST, 1);                                                                  \
        return 0;                                                                                      \
      }                                                                                                \
      th->tgid = tgid;                                                                                 \
      th->first_ts = now;                                                                              \
      th->first_exec = ex;                                                                             \
      th->first_rdelay = rd;                                                                           \
      th->start_time = READ(prev, start_time);                                                         \
      th->wait.kstack = -1;                                                                            \
      th->wait.syscall = -1;                                                                           \
      BPF_CORE_READ_STR_INTO(&th->comm, prev, comm);                                                   \
    } else if (th->cur == TSA_DEAD) {                                                                  \
      return 0;                                                                                        \
    } else {                                                                                           \
      /* off its CPU once (in th->cur), then on it once */                                             \
      __u64 d = now - th->ts, ran = ex - th->exec, q = rd - th->rdelay;                                \
      if (ran > d) {                                                                                   \
        ran = d;                                                                                       \
        count(TSA_C_CLAMPED);                                                                          \
      }                                                                                                \
      if (q > d - ran)                                                                                 \
        q = d - ran;                                                                                   \
      th->cpu_ns += ran;                                                                               \
      if (th->cur == TSA_BLOCKED) {                                                                    \
        th->runq_ns += q;                                                                              \
        if (d - ran - q)                                                                               \
          add_blocked(th, tid, d - ran - q);                                                           \
      } else {                                                                                         \
        th->runq_ns += d - ran;                                                                        \
      }                                                                                                \
      th->events += 1;                                                                                 \
    }                                                                                                  \
    th->exec = ex;                                                                                     \
    th->rdelay = rd;                                                                                   \
    th->ts = now;                                                                                      \
    if (preempt || prev_state == TASK_RUNNING) {                                                       \
      th->cur = TSA_RUNQ;                                                                              \
    } else if (prev_state & TASK_DEAD_STATE) {                                                         \
      th->cur = TSA_DEAD;                                                                              \
    } else {                                                                                           \
      th->cur = TSA_BLOCKED;                                                                           \
      wait_key_##sfx(ctx, &th->wait, prev, prev_state);                                                \
    }                                                                                                  \
    return 0;                                                                                          \
  }

DEFINE_SWITCH(btf, READ_DIRECT)
DEFINE_SWITCH(raw, READ_PROBE)

SEC("tp_btf/sched_switch")
int BPF_PROG(tsa_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
  return on_switch_btf(ctx, preempt, prev, prev_state);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(tsa_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next,
             unsigned int prev_state)
{
  return on_switch_raw(ctx, preempt, prev, prev_state);
}
