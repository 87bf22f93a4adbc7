// SPDX-License-Identifier: GPL-2.0
/* lock: who waits, where and for how long.
 *
 * Kernel locks: lock:contention_begin/end per lock address (tp_btf, raw_tp
 * fallback). User-space locks: futex wait operations, timed from the futex
 * syscall's entry to its exit, per (tgid, futex address) and per thread,
 * with the waiting user stack when asked. The wake side (FUTEX_WAKE and
 * friends on the same address) is counted per waking thread and, with
 * stacks, per call site: the threads that release the lock. The futex hooks exist on
 * syscalls:sys_{enter,exit}_futex (fires only for futex) and on
 * raw_syscalls (every syscall, filtered on the futex number) for kernels
 * without per-syscall tracepoints; user space autoloads one set. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "lock.h"
#include "common/unwind.bpf.h"

const volatile bool lock_user_stacks = false;  /* record the waiting user stack */
const volatile bool lock_kernel = true;        /* kernel lock contention */
const volatile bool lock_futex = true;         /* futex waits */

#if defined(__TARGET_ARCH_arm64)
#define FUTEX_NR 98
#else
#define FUTEX_NR 202
#endif

#define FUTEX_CMD_MASK (~(128 | 256))  /* without PRIVATE and CLOCK_REALTIME */

struct pm_futex_start {
  __u64 ts;
  __u64 uaddr;
  __u64 caller;
  __u64 user_hash;
  __s32 stack_id;
  __u16 active;  /* a wait is in progress */
  __u16 kind;    /* enum lock_fkind */
};

struct pm_kstart_key {
  __u64 addr;
  __u32 pid;
  __u32 pad;
};

struct pm_kstart {
  __u64 ts;
  __u32 flags;
  __u32 pad;
};

/* per-task storage, not a hash keyed by tid: no hashing and no insert or
 * delete on the futex hot path */
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct pm_futex_start);
} fstarts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCK_MAX_INFLIGHT);
  __type(key, struct pm_kstart_key);
  __type(value, struct pm_kstart);
} kstarts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCK_MAX_KLOCKS);
  __type(key, struct pm_lock_kkey);
  __type(value, struct pm_lock_stat);
} klocks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCK_MAX_FUTEXES);
  __type(key, struct pm_lock_fkey);
  __type(value, struct pm_lock_stat);
} futexes SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCK_MAX_THREADS);
  __type(key, struct pm_lock_tkey);
  __type(value, struct pm_lock_tval);
} threads SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCK_MAX_STACKS);
  __type(key, struct pm_lock_skey);
  __type(value, struct pm_lock_sval);
} fstacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LOCK_MAX_WAKERS);
  __type(key, struct pm_lock_wkey);
  __type(value, struct pm_lock_wval);
} wakers SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, LOCK_MAX_STACKS);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

/* plain array: the waiter gauge must be shared between CPUs */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, LOCK_C_NR);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

static __always_inline __u64 *counter(__u32 which)
{
  return bpf_map_lookup_elem(&counters, &which);
}

static __always_inline void count(__u32 which)
{
  __u64 *v = counter(which);
  if (v)
    __sync_fetch_and_add(v, 1);
}

static __always_inline __u32 outcome(long ret)
{
  switch (ret) {
  case 0: return LOCK_R_OK;
  case -11: return LOCK_R_EAGAIN;
  case -110: return LOCK_R_ETIMEDOUT;
  case -4: return LOCK_R_EINTR;
  case -35: return LOCK_R_EDEADLK;
  case -130: return LOCK_R_EOWNERDEAD;
  default: return ret > 0 ? LOCK_R_OK : LOCK_R_OTHER;
  }
}

static __always_inline void stat_add(struct pm_lock_stat *s, __u64 delta, __u32 res)
{
  __u32 slot = pm_log2_slot(delta / 1000);
  if (slot < LOCK_SLOTS)
    __sync_fetch_and_add(&s->slots[slot], 1);
  __sync_fetch_and_add(&s->count, 1);
  __sync_fetch_and_add(&s->total_ns, delta);
  if (delta > s->max_ns)
    s->max_ns = delta;  /* racy max: fine for a report */
  if (res < LOCK_R_NR)
    __sync_fetch_and_add(&s->results[res], 1);
}

/* ---- the caller of the C library ---------------------------------------- */

struct scan_ctx {
  struct file *skip;  /* the file the syscall was made from */
  __u32 found;
};

static long ip_file_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
  ((struct scan_ctx *)data)->skip = BPF_CORE_READ(vma, vm_file);
  return 0;
}

static long text_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
  struct scan_ctx *c = data;
  struct file *f = BPF_CORE_READ(vma, vm_file);
  if ((BPF_CORE_READ(vma, vm_flags) & 0x4 /* VM_EXEC */) && f && f != c->skip)
    c->found = 1;
  return 0;
}

/* The first word on the user stack (from the syscall's sp up) that points
 * into executable code of another file than the syscall's own: the return
 * address into the code that called the C library (pthread_mutex_lock or
 * unlock). glibc is built without frame pointers, so the frame-pointer
 * walk skips exactly this frame. 0 when none is found. */
static __always_inline __u64 user_caller(void)
{
  struct task_struct *task = bpf_get_current_task_btf();
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
  if (!regs)
    return 0;
  __u64 ip = PT_REGS_IP_CORE(regs), sp = PT_REGS_SP_CORE(regs);
  struct scan_ctx c = {};
  if (bpf_find_vma(task, ip, ip_file_cb, &c, 0) || !c.skip)
    return 0;
  __u64 words[LOCK_SCAN_WORDS];
  if (bpf_probe_read_user(words, sizeof words, (void *)sp))
    return 0;
  for (int i = 0; i < LOCK_SCAN_WORDS; i++) {
    __u64 w = words[i];
    /* not code: small numbers, kernel halves, pointers into this stack */
    if (w < 0x10000 || w >= 0x800000000000ull || w - sp < (8u << 20))
      continue;
    c.found = 0;
    if (!bpf_find_vma(task, w, text_cb, &c, 0) && c.found)
      return w;
  }
  return 0;
}

/* The current task's user stack: walked from CFI (*hash, stack id -ENOENT)
 * or by frame pointers into `stacks`. Counts a stack that was not kept. */
static __always_inline __s32 user_stack(void *ctx, __u64 *hash)
{
  __s32 id;
  *hash = 0;
  if (unwind_mode) {
    id = -2;
    *hash = pm_unwind_user(NULL, bpf_get_current_pid_tgid() >> 32, &id);
  } else {
    id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
  }
  if (!*hash && id < 0)
    count(LOCK_C_STACK_ERR);
  return id;
}

/* ---- futex waits ---------------------------------------------------------- */

/* 0 when the op is not a wait, else its style (enum lock_fkind) */
static __always_inline __u16 futex_wait_kind(int op)
{
  switch (op & FUTEX_CMD_MASK) {
  case 0:   /* FUTEX_WAIT */
  case 6:   /* FUTEX_LOCK_PI */
  case 13:  /* FUTEX_LOCK_PI2 */
    return LOCK_FK_LOCK;
  case 9:   /* FUTEX_WAIT_BITSET */
  case 11:  /* FUTEX_WAIT_REQUEUE_PI */
    return LOCK_FK_WAIT;
  }
  return 0;
}

/* a wake that releases waiters of uaddr: FUTEX_WAKE, WAKE_OP, UNLOCK_PI,
 * WAKE_BITSET (glibc's mutex unlock, cond signal, semaphore post) */
static __always_inline int futex_wake(void *ctx, __u64 uaddr, __u32 cmd)
{
  if (pm_skip_current())
    return 0;
  __u64 id = bpf_get_current_pid_tgid();
  struct pm_lock_wkey k = { .uaddr = uaddr, .tgid = id >> 32, .pid = (__u32)id, .stack_id = -1, .op = cmd };
  if (lock_user_stacks) {
    k.stack_id = user_stack(ctx, &k.user_hash);
    k.caller = user_caller();
  }
  struct pm_lock_wval *v = bpf_map_lookup_elem(&wakers, &k);
  if (!v) {
    struct pm_lock_wval zero = {};
    bpf_get_current_comm(zero.comm, sizeof zero.comm);
    bpf_map_update_elem(&wakers, &k, &zero, BPF_NOEXIST);
    v = bpf_map_lookup_elem(&wakers, &k);
  }
  if (!v) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  __sync_fetch_and_add(&v->count, 1);
  count(LOCK_C_FUTEX_WAKES);
  return 0;
}

static __always_inline int futex_enter(void *ctx, __u64 uaddr, int op)
{
  __u16 kind = futex_wait_kind(op);
  if (!lock_futex)
    return 0;
  if (!kind) {
    __u32 cmd = op & FUTEX_CMD_MASK;
    if (cmd == 1 || cmd == 5 || cmd == 7 || cmd == 10)
      return futex_wake(ctx, uaddr, cmd);
    return 0;
  }
  if (pm_skip_current())
    return 0;
  struct pm_futex_start *s = bpf_task_storage_get(&fstarts, bpf_get_current_task_btf(), 0,
                                                   BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!s) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  s->uaddr = uaddr;
  s->stack_id = -1;
  s->caller = 0;
  s->user_hash = 0;
  if (lock_user_stacks) {
    s->stack_id = user_stack(ctx, &s->user_hash);
    s->caller = user_caller();
  }
  s->active = 1;
  s->kind = kind;
  s->ts = bpf_ktime_get_ns();
  __u64 *cur = counter(LOCK_C_CUR_WAITERS);
  if (cur) {
    __sync_fetch_and_add(cur, 1);
    __u64 *max = counter(LOCK_C_MAX_WAITERS);
    __u64 now = *cur;   /* gauge read after the add: approximate under races */
    if (max && now > *max && now < (1ull << 32))
      *max = now;
  }
  return 0;
}

static __always_inline int futex_exit(long ret)
{
  struct pm_futex_start *s = bpf_task_storage_get(&fstarts, bpf_get_current_task_btf(), 0, 0);
  if (!s || !s->active)
    return 0;
  s->active = 0;
  __u64 delta = bpf_ktime_get_ns() - s->ts;
  __u64 id = bpf_get_current_pid_tgid();
  __u32 pid = (__u32)id;
  __u32 res = outcome(ret);
  struct pm_futex_start st = *s;
  __u64 *cur = counter(LOCK_C_CUR_WAITERS);
  if (cur)
    __sync_fetch_and_add(cur, -1);

  struct pm_lock_fkey fk = { .uaddr = st.uaddr, .tgid = id >> 32, .kind = st.kind };
  struct pm_lock_stat *fs = bpf_map_lookup_elem(&futexes, &fk);
  if (!fs) {
    struct pm_lock_stat zero = {};
    bpf_map_update_elem(&futexes, &fk, &zero, BPF_NOEXIST);
    fs = bpf_map_lookup_elem(&futexes, &fk);
  }
  if (!fs) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  stat_add(fs, delta, res);
  pm_stat_add(PM_STAT_EVENTS, 1);
  count(LOCK_C_FUTEX_WAITS);

  struct pm_lock_tkey tk = { .tgid = id >> 32, .pid = pid };
  struct pm_lock_tval *tv = bpf_map_lookup_elem(&threads, &tk);
  if (!tv) {
    struct pm_lock_tval zero = {};
    bpf_get_current_comm(zero.comm, sizeof zero.comm);
    bpf_map_update_elem(&threads, &tk, &zero, BPF_NOEXIST);
    tv = bpf_map_lookup_elem(&threads, &tk);
  }
  if (tv) {
    __sync_fetch_and_add(&tv->count, 1);
    __sync_fetch_and_add(&tv->total_ns, delta);
    if (delta > tv->max_ns)
      tv->max_ns = delta;
    if (res == LOCK_R_ETIMEDOUT || res == LOCK_R_EDEADLK || res == LOCK_R_EOWNERDEAD ||
        res == LOCK_R_OTHER)
      __sync_fetch_and_add(&tv->errors, 1);
  }

  if (lock_user_stacks && (st.stack_id >= 0 || st.caller || st.user_hash)) {
    struct pm_lock_skey sk = { .uaddr = st.uaddr, .caller = st.caller, .tgid = id >> 32, .stack_id = st.stack_id,
                               .user_hash = st.user_hash };
    struct pm_lock_sval *sv = bpf_map_lookup_elem(&fstacks, &sk);
    if (!sv) {
      struct pm_lock_sval zero = {};
      bpf_map_update_elem(&fstacks, &sk, &zero, BPF_NOEXIST);
      sv = bpf_map_lookup_elem(&fstacks, &sk);
    }
    if (sv) {
      __sync_fetch_and_add(&sv->count, 1);
      __sync_fetch_and_add(&sv->total_ns, delta);
    }
  }
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_futex")
int futex_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
  return futex_enter(ctx, ctx->args[0], (int)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_futex")
int futex_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
  return futex_exit(ctx->ret);
}

SEC("raw_tp/sys_enter")
int BPF_PROG(futex_enter_raw, struct pt_regs *regs, long id)
{
  if (id != FUTEX_NR)
    return 0;
  return futex_enter(ctx, PT_REGS_PARM1_CORE_SYSCALL(regs), (int)PT_REGS_PARM2_CORE_SYSCALL(regs));
}

SEC("raw_tp/sys_exit")
int BPF_PROG(futex_exit_raw, struct pt_regs *regs, long ret)
{
  return futex_exit(ret);
}

/* ---- kernel lock contention --------------------------------------------- */

static __always_inline int kbegin(void *lock, __u32 flags)
{
  if (!lock_kernel || pm_skip_current())
    return 0;
  struct pm_kstart_key k = { .addr = (__u64)lock, .pid = (__u32)bpf_get_current_pid_tgid() };
  struct pm_kstart *s = bpf_map_lookup_elem(&kstarts, &k);
  if (s) {
    /* a mutex spins, then begins again before sleeping: keep the first
     * timestamp, note the latest kind */
    s->flags = flags;
    return 0;
  }
  struct pm_kstart n = { .ts = bpf_ktime_get_ns(), .flags = flags };
  if (bpf_map_update_elem(&kstarts, &k, &n, BPF_ANY))
    pm_stat_add(PM_STAT_LOST, 1);
  return 0;
}

static __always_inline int kend(void *lock, int ret)
{
  if (!lock_kernel)
    return 0;
  struct pm_kstart_key k = { .addr = (__u64)lock, .pid = (__u32)bpf_get_current_pid_tgid() };
  struct pm_kstart *s = bpf_map_lookup_elem(&kstarts, &k);
  if (!s)
    return 0;
  __u64 delta = bpf_ktime_get_ns() - s->ts;
  struct pm_lock_kkey kk = { .addr = (__u64)lock, .flags = s->flags };
  bpf_map_delete_elem(&kstarts, &k);
  struct pm_lock_stat *st = bpf_map_lookup_elem(&klocks, &kk);
  if (!st) {
    struct pm_lock_stat zero = {};
    bpf_map_update_elem(&klocks, &kk, &zero, BPF_NOEXIST);
    st = bpf_map_lookup_elem(&klocks, &kk);
  }
  if (!st) {
    pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  stat_add(st, delta, outcome(ret));
  pm_stat_add(PM_STAT_EVENTS, 1);
  count(LOCK_C_KLOCK_WAITS);
  return 0;
}

SEC("tp_btf/contention_begin")
int BPF_PROG(klock_begin_btf, void *lock, unsigned int flags) { return kbegin(lock, flags); }

SEC("tp_btf/contention_end")
int BPF_PROG(klock_end_btf, void *lock, int ret) { return kend(lock, ret); }

SEC("raw_tp/contention_begin")
int BPF_PROG(klock_begin_raw, void *lock, unsigned int flags) { return kbegin(lock, flags); }

SEC("raw_tp/contention_end")
int BPF_PROG(klock_end_raw, void *lock, int ret) { return kend(lock, ret); }
