/* Run-queue latency (time from wakeup, or from being preempted, until the
 * task runs), like runqlat, and run-queue length sampling, like runqlen.
 *
 * Programs come in two sets; user space loads one (obj:autoload):
 *   tp_btf/sched_wakeup, sched_wakeup_new, sched_switch  (preferred)
 *   raw_tp/...                                            (fallback)
 * and runq_sample is a perf_event program attached per CPU at a low rate. */
#include "common.h"
#include "sched.h"

const volatile bool targ_per_cpu = false;     /* group by CPU the task ran on */
const volatile bool targ_per_process = false; /* group by tgid */
const volatile bool targ_ns = false;          /* histogram unit: ns (default us) */

#define TASK_RUNNING 0

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 10240);
  __type(key, __u32); /* tid */
  __type(value, __u64); /* enqueue time, ns */
} start SEC(".maps");

/* tp_btf programs keep the enqueue time in task-local storage instead
 * (trusted task pointers): cheaper than the hash on every wakeup */
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, __u64);
} start_task SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);
  __type(value, struct sched_hist);
} hists SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct runq_hist);
} runq SEC(".maps");

/* older kernels: task_struct.state */
struct task_struct___o {
  volatile long state;
} __attribute__((preserve_access_index));

/* Two copies of the handlers: tp_btf programs get trusted task pointers and
 * read fields directly (one load each); raw_tp programs must use
 * bpf_probe_read (BPF_CORE_READ), which costs far more per field on VMs. */
#define READ_DIRECT(p, f) ((p)->f)
#define READ_PROBE(p, f) BPF_CORE_READ(p, f)

static struct sched_hist zero_hist;

static __always_inline void account(__u32 key, __u64 delta)
{
  struct sched_hist *h = bpf_map_lookup_elem(&hists, &key);
  if (!h) {
    bpf_map_update_elem(&hists, &key, &zero_hist, BPF_NOEXIST);
    h = bpf_map_lookup_elem(&hists, &key);
    if (!h) {
      pm_stat_add(PM_STAT_LOST, 1);
      return;
    }
  }
  h->count++;
  h->total += delta;
  pm_hist_add(&h->hist, delta);
  pm_stat_add(PM_STAT_EVENTS, 1);
}

static __always_inline int put_start_hash(struct task_struct *p, __u32 pid, __u64 ts)
{
  return bpf_map_update_elem(&start, &pid, &ts, BPF_ANY);
}

static __always_inline __u64 take_start_hash(struct task_struct *p, __u32 pid)
{
  __u64 *tsp = bpf_map_lookup_elem(&start, &pid);
  if (!tsp)
    return 0;
  __u64 ts = *tsp;
  bpf_map_delete_elem(&start, &pid);
  return ts;
}

static __always_inline int put_start_task(struct task_struct *p, __u32 pid, __u64 ts)
{
  __u64 *s = bpf_task_storage_get(&start_task, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!s)
    return -1;
  *s = ts;
  return 0;
}

static __always_inline __u64 take_start_task(struct task_struct *p, __u32 pid)
{
  __u64 *s = bpf_task_storage_get(&start_task, p, 0, 0);
  if (!s)
    return 0;
  __u64 ts = *s;
  *s = 0;
  return ts;
}

#define DEFINE_HANDLERS(sfx, READ, STORE)                                                                  \
  static __always_inline long task_state_##sfx(struct task_struct *t)                               \
  {                                                                                                 \
    if (bpf_core_field_exists(t->__state))                                                          \
      return READ(t, __state);                                                                      \
    return READ((struct task_struct___o *)t, state);                                                \
  }                                                                                                 \
  static __always_inline int enqueue_##sfx(struct task_struct *p)                                   \
  {                                                                                                 \
    __u32 tgid = READ(p, tgid), pid = READ(p, pid);                                                 \
    if (!pid || pm_skip_task(p, tgid, pid))                                                         \
      return 0;                                                                                     \
    if (put_start_##STORE(p, pid, bpf_ktime_get_ns()))                                            \
      pm_stat_add(PM_STAT_LOST, 1);                                                                 \
    return 0;                                                                                       \
  }                                                                                                 \
  static __always_inline int on_switch_##sfx(struct task_struct *prev, struct task_struct *next)    \
  {                                                                                                 \
    /* a task preempted while runnable goes back on the run queue */                                \
    if (task_state_##sfx(prev) == TASK_RUNNING)                                                     \
      enqueue_##sfx(prev);                                                                          \
    __u32 pid = READ(next, pid);                                                                    \
    __u64 ts = take_start_##STORE(next, pid);                                                       \
    if (!ts)                                                                                        \
      return 0; /* not a target, or enqueued before we attached */                                  \
    __u64 delta = bpf_ktime_get_ns() - ts;                                                          \
    if ((__s64)delta < 0)                                                                           \
      return 0;                                                                                     \
    if (!targ_ns)                                                                                   \
      delta /= 1000;                                                                                \
    __u32 key = 0;                                                                                  \
    if (targ_per_process)                                                                           \
      key = READ(next, tgid);                                                                       \
    else if (targ_per_cpu)                                                                          \
      key = bpf_get_smp_processor_id();                                                             \
    account(key, delta);                                                                            \
    return 0;                                                                                       \
  }

DEFINE_HANDLERS(btf, READ_DIRECT, task)
DEFINE_HANDLERS(raw, READ_PROBE, hash)

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p)
{
  return enqueue_btf(p);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)
{
  return enqueue_btf(p);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
  return on_switch_btf(prev, next);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup_raw, struct task_struct *p)
{
  return enqueue_raw(p);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p)
{
  return enqueue_raw(p);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
  return on_switch_raw(prev, next);
}

SEC("perf_event")
int runq_sample(struct bpf_perf_event_data *ctx)
{
  __u32 zero = 0, n;
  /* the per-CPU `runqueues` symbol is not resolvable without KALLSYMS_ALL:
   * reach this CPU's rq through the current task's CFS run queue */
  /* 99 Hz per CPU: probe reads are cheap enough here */
  struct task_struct *t = (struct task_struct *)bpf_get_current_task();
  if (bpf_core_field_exists(((struct cfs_rq *)0)->rq)) {
    struct cfs_rq *cfs = BPF_CORE_READ(t, se.cfs_rq);
    n = BPF_CORE_READ(cfs, rq, nr_running);
  } else {
    pm_stat_add(PM_STAT_MISSED, 1);
    return 0;
  }
  struct runq_hist *h = bpf_map_lookup_elem(&runq, &zero);
  if (!h)
    return 0;
  if (n >= PM_RUNQ_SLOTS)
    n = PM_RUNQ_SLOTS - 1;
  h->slots[n]++;
  return 0;
}
