// SPDX-License-Identifier: GPL-2.0
/* lockhold: how long a process's threads hold their pthread locks. Uprobes
 * on the target's C library (attached by user space): the entry of
 * pthread_mutex_lock / trylock and pthread_rwlock_rdlock / wrlock notes the
 * lock; their return, when it is 0, starts the hold and takes the user
 * stack there (the caller's frame: the holder); the entry of
 * pthread_mutex_unlock / pthread_rwlock_unlock ends it. Per lock: a log2
 * histogram of hold times, count, total and max; per (lock, holder stack):
 * held time.
 *
 * Sampling: every Nth lock call on a CPU is measured (N in `rate`), weighted
 * by N, so the totals stay unbiased estimates; the calls not
 * sampled cost the uprobe and a counter only. A lock taken before the
 * tracer started, or still held at the end, is not counted.
 *
 * The holder stack is walked from DWARF CFI (common/unwind.bpf.h) unless
 * unwind_mode is 0: then frame pointers, with bpf_get_stackid. Only
 * lock_return takes it, so only that program carries the walker. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "common.h"
#include "lockhold.h"
#include "common/unwind.bpf.h"

/* measure every Nth lock call per CPU: [0] = N, set by user space at start
 * and raised while running when the cost passes the budget */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} rate SEC(".maps");

/* thread -> lock call in progress (sampled ones only) */
struct pending {
  __u64 addr;
  __u32 kind;
  __u32 weight;
};

struct held_key {
  __u64 addr;
  __u32 tid;
  __u32 pad;
};

struct held {
  __u64 ts;
  __u64 ip;
  __s32 stack_id;
  __u32 kind;
  __u64 weight;    /* lock calls this sample stands for */
  __u64 user_hash; /* the walked holder stack's key in unwind_stacks (0: none) */
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, struct pending);
} inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCKHOLD_MAX_HELD);
  __type(key, struct held_key);
  __type(value, struct held);
} holds SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCKHOLD_MAX_LOCKS);
  __type(key, struct pm_lockhold_key);
  __type(value, struct pm_lockhold_stat);
} locks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCKHOLD_MAX_SITES);
  __type(key, struct pm_lockhold_site_key);
  __type(value, struct pm_lockhold_site);
} sites SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, LOCKHOLD_MAX_SITES);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, LOCKHOLD_MAX_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, LOCKHOLD_C_NR);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

/* the every-Nth sampler's position, per CPU */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} tick SEC(".maps");

static __always_inline void count(__u32 which)
{
  __u64 *v = bpf_map_lookup_elem(&counters, &which);
  if (v)
    *v += 1;
}

/* the weight of this call: 0 when not sampled */
static __always_inline __u32 sampled(void)
{
  __u32 zero = 0;
  __u64 *n = bpf_map_lookup_elem(&rate, &zero);
  __u64 every = n ? *n : 1;
  if (every <= 1)
    return 1;
  __u64 *t = bpf_map_lookup_elem(&tick, &zero);
  if (!t)
    return 0;
  if (++*t < every)
    return 0;
  *t = 0;
  return (__u32)every;
}

static __always_inline int lock_enter(__u64 addr, __u32 kind)
{
  if (pm_skip_current())
    return 0;
  count(LOCKHOLD_C_CALLS);
  __u32 w = sampled();
  if (!w)
    return 0;
  count(LOCKHOLD_C_SAMPLED);
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct pending p = { .addr = addr, .kind = kind, .weight = w };
  bpf_map_update_elem(&inflight, &tid, &p, BPF_ANY);
  return 0;
}

SEC("uprobe")
int BPF_KPROBE(mutex_enter, __u64 addr)
{
  return lock_enter(addr, LOCKHOLD_MUTEX);
}

SEC("uprobe")
int BPF_KPROBE(rdlock_enter, __u64 addr)
{
  return lock_enter(addr, LOCKHOLD_READ);
}

SEC("uprobe")
int BPF_KPROBE(wrlock_enter, __u64 addr)
{
  return lock_enter(addr, LOCKHOLD_WRITE);
}

SEC("uretprobe")
int BPF_KRETPROBE(lock_return, long ret)
{
  __u64 tid_tgid = bpf_get_current_pid_tgid();
  __u32 tid = (__u32)tid_tgid;
  struct pending *p = bpf_map_lookup_elem(&inflight, &tid);
  if (!p)
    return 0;
  struct held_key k = { .addr = p->addr, .tid = tid };
  __u32 kind = p->kind, weight = p->weight;
  bpf_map_delete_elem(&inflight, &tid);
  if (ret != 0) {
    count(LOCKHOLD_C_FAILED);
    return 0;
  }
  /* the lock is held from now: the stack walk below is held time too */
  struct held h = { .kind = kind, .ts = bpf_ktime_get_ns(), .weight = weight };
  /* here the registers are the caller's, right after its call: the
   * walk starts in the function that took the lock */
  h.ip = PT_REGS_IP(ctx);
  if (unwind_mode) {
    h.stack_id = -2;
    h.user_hash = pm_unwind_user(ctx, tid_tgid >> 32, &h.stack_id);
  } else {
    h.stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
  }
  if (!h.user_hash && h.stack_id < 0 && h.stack_id != -14)
    count(LOCKHOLD_C_STACK_LOST);
  /* a recursive mutex taken again: the outer hold goes on */
  if (bpf_map_update_elem(&holds, &k, &h, BPF_NOEXIST) != 0 && !bpf_map_lookup_elem(&holds, &k))
    count(LOCKHOLD_C_HELD_FULL);
  return 0;
}

static __always_inline void add_hold(__u64 addr, __u32 tgid, struct held *h, __u64 dt)
{
  __u64 w = h->weight;
  struct pm_lockhold_key lk = { .addr = addr, .tgid = tgid, .kind = h->kind };
  struct pm_lockhold_stat *s = bpf_map_lookup_elem(&locks, &lk);
  if (!s) {
    struct pm_lockhold_stat z = {};
    bpf_map_update_elem(&locks, &lk, &z, BPF_NOEXIST);
    s = bpf_map_lookup_elem(&locks, &lk);
    if (!s) {
      pm_stat_add(PM_STAT_LOST, 1);
      return;
    }
  }
  __u32 slot = pm_log2_slot(dt / 1000);
  if (slot < LOCKHOLD_SLOTS)
    __sync_fetch_and_add(&s->slots[slot], w);
  __sync_fetch_and_add(&s->count, w);
  __sync_fetch_and_add(&s->total_ns, dt * w);
  __sync_fetch_and_add(&s->sampled, 1);
  if (dt > s->max_ns)
    s->max_ns = dt;
  struct pm_lockhold_site_key sk = { .addr = addr, .tgid = tgid, .stack_id = h->stack_id, .ip = h->ip,
                                     .user_hash = h->user_hash };
  struct pm_lockhold_site *v = bpf_map_lookup_elem(&sites, &sk);
  if (!v) {
    struct pm_lockhold_site z = {};
    bpf_map_update_elem(&sites, &sk, &z, BPF_NOEXIST);
    v = bpf_map_lookup_elem(&sites, &sk);
    if (!v)
      return;
  }
  __sync_fetch_and_add(&v->count, w);
  __sync_fetch_and_add(&v->total_ns, dt * w);
}

SEC("uprobe")
int BPF_KPROBE(unlock_enter, __u64 addr)
{
  if (pm_skip_current())
    return 0;
  __u64 id = bpf_get_current_pid_tgid();
  struct held_key k = { .addr = addr, .tid = (__u32)id };
  struct held *h = bpf_map_lookup_elem(&holds, &k);
  if (!h)
    return 0;
  __u64 now = bpf_ktime_get_ns();
  struct held v = *h;
  bpf_map_delete_elem(&holds, &k);
  pm_stat_add(PM_STAT_EVENTS, 1);
  add_hold(addr, id >> 32, &v, now - v.ts);
  return 0;
}
