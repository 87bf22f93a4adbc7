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

static __always_inline long task_state(struct task_struct *t)
{
  if (bpf_core_field_exists(t->__state))
    return BPF_CORE_READ(t, __state);
  return BPF_CORE_READ((struct task_struct___o *)t, state);
}

static __always_inline int enqueue(struct task_struct *p)
{
  __u32 tgid = BPF_CORE_READ(p, tgid), pid = BPF_CORE_READ(p, pid);
  if (!pid || pm_skip_task(p, tgid, pid))
    return 0;
  __u64 ts = bpf_ktime_get_ns();
  if (bpf_map_update_elem(&start, &pid, &ts, BPF_ANY))
    pm_stat_add(PM_STAT_LOST, 1);
  return 0;
}

static struct sched_hist zero_hist;

static __always_inline int on_switch(struct task_struct *prev, struct task_struct *next)
{
  /* a task preempted while runnable goes back on the run queue */
  if (task_state(prev) == TASK_RUNNING)
    enqueue(prev);

  __u32 pid = BPF_CORE_READ(next, pid);
  __u64 *tsp = bpf_map_lookup_elem(&start, &pid);
  if (!tsp)
    return 0; /* not a target, or enqueued before we attached */
  __u64 delta = bpf_ktime_get_ns() - *tsp;
  bpf_map_delete_elem(&start, &pid);
  if ((__s64)delta < 0)
    return 0;
  if (!targ_ns)
    delta /= 1000;

  __u32 key = 0;
  if (targ_per_process)
    key = BPF_CORE_READ(next, tgid);
  else if (targ_per_cpu)
    key = bpf_get_smp_processor_id();
  struct sched_hist *h = bpf_map_lookup_elem(&hists, &key);
  if (!h) {
    bpf_map_update_elem(&hists, &key, &zero_hist, BPF_NOEXIST);
    h = bpf_map_lookup_elem(&hists, &key);
    if (!h) {
      pm_stat_add(PM_STAT_LOST, 1);
      return 0;
    }
  }
  h->count++;
  h->total += delta;
  pm_hist_add(&h->hist, delta);
  pm_stat_add(PM_STAT_EVENTS, 1);
  return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p)
{
  return enqueue(p);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)
{
  return enqueue(p);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
  return on_switch(prev, next);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup_raw, struct task_struct *p)
{
  return enqueue(p);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p)
{
  return enqueue(p);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
  return on_switch(prev, next);
}

/* Sampled per CPU (perf event, ~99 Hz): how many tasks this CPU's run queue
 * holds, the running one included. */
SEC("perf_event")
int runq_sample(void *ctx)
{
  __u32 zero = 0, n;
  struct task_struct *t = (struct task_struct *)bpf_get_current_task();
  /* the per-CPU `runqueues` symbol is not resolvable without KALLSYMS_ALL:
   * reach this CPU's rq through the current task's CFS run queue */
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
