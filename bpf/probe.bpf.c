// SPDX-License-Identifier: GPL-2.0
/* probe: one precompiled object for the probes a playbook places at run
 * time (lib/perf_manual/probe.lua). Its programs attach to a uprobe or
 * uretprobe, a USDT probe, a tracepoint or a raw tracepoint named at run
 * time (obj:attach_probe); what they measure is rodata set before load:
 *
 *   hist_*   the value a histogram counts: an argument, the return value,
 *            the entry -> return latency, or a tracepoint field
 *   key_by   what a key is made of: pid, tid, comm, user/kernel stack, a value
 *   key_*    that value
 *   filt_*   one comparison an event must pass, beside the pid/tid/cgroup
 *            filter of common.h and targ_comm
 *   paired   the entry program keeps a timestamp (and the key value) per
 *            thread, the return program records: latency, or a return value
 *            keyed by an argument
 *
 * Counts and histograms are aggregated in a per-CPU hash, stacks in a stack
 * map, as bpf/profile.bpf.c does; user space reads them once per interval.
 * User stacks are walked from DWARF CFI (common/unwind.bpf.h) unless
 * unwind_mode is 0: then frame pointers, with bpf_get_stackid. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/usdt.bpf.h>
#include "common.h"
#include "probe.h"
#include "common/fresh.bpf.h"
#include "common/unwind.bpf.h"

const volatile __u32 hist_kind = PROBE_HIST_NONE;
const volatile __u32 hist_src = PROBE_SRC_NONE;
const volatile __u32 hist_arg = 0;
const volatile __u32 hist_size = 8;
const volatile bool hist_signed = false;
const volatile __s64 lin_min = 0;
const volatile __u64 lin_step = 1;
const volatile __u32 lin_n = 62;

const volatile __u32 key_by = 0;
const volatile __u32 key_src = PROBE_SRC_NONE;
const volatile __u32 key_arg = 0;
const volatile __u32 key_size = 8;
const volatile bool key_signed = false;

const volatile __u32 filt_src = PROBE_SRC_NONE;
const volatile __u32 filt_arg = 0;
const volatile __u32 filt_size = 8;
const volatile bool filt_signed = false;
const volatile __u32 filt_op = PROBE_OP_NONE;
const volatile __s64 filt_val = 0;

const volatile char targ_comm[PROBE_COMM_LEN] = {};
const volatile bool paired = false;

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, PROBE_MAX_KEYS);
  __uint(map_flags, BPF_F_NO_PREALLOC); /* attach time: nothing to allocate up front */
  __type(key, struct pm_probe_key);
  __type(value, struct pm_probe_val);
} counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, PROBE_MAX_STACKS);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, PROBE_MAX_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u32);
  __type(value, struct pm_probe_entry);
} starts SEC(".maps");

/* a zeroed value to insert from (it does not fit on the BPF stack) */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct pm_probe_val);
} zero SEC(".maps");

enum { K_UPROBE, K_USDT, K_TP, K_RAWTP };

/* Every argument is loaded, then one chosen: with a plain switch of loads
 * the compiler folds them into one load at a computed ctx offset, which the
 * verifier refuses. The empty asm keeps each load where it is. */
#define PM_KEEP(v) asm volatile("" : "+r"(v))

static __always_inline __u64 pick(__u32 i, __u64 a0, __u64 a1, __u64 a2, __u64 a3, __u64 a4, __u64 a5)
{
  PM_KEEP(a0);
  PM_KEEP(a1);
  PM_KEEP(a2);
  PM_KEEP(a3);
  PM_KEEP(a4);
  PM_KEEP(a5);
  switch (i) {
  case 0: return a0;
  case 1: return a1;
  case 2: return a2;
  case 3: return a3;
  case 4: return a4;
  default: return a5;
  }
}

static __always_inline __u64 reg_arg(struct pt_regs *ctx, __u32 i)
{
#if defined(__TARGET_ARCH_x86)
  __u64 a5 = ctx->r9; /* this libbpf has no PT_REGS_PARM6 */
#else
  __u64 a5 = 0;
#endif
  return pick(i, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx), PT_REGS_PARM4(ctx),
              PT_REGS_PARM5(ctx), a5);
}

/* Not pick(): a raw tracepoint refuses to attach a program whose context
 * loads reach past its own arguments (sys_enter has 2), and pick() loads
 * all six. A helper read is not a context load. */
static __always_inline __u64 raw_arg(struct bpf_raw_tracepoint_args *ctx, __u32 i)
{
  __u64 v = 0;
  bpf_probe_read_kernel(&v, sizeof v, (char *)ctx + (i & 7) * sizeof(__u64));
  return v;
}

static __always_inline __u64 narrow(__u64 v, __u32 size, bool sgn)
{
  switch (size) {
  case 1: return sgn ? (__u64)(__s64)(__s8)v : (__u8)v;
  case 2: return sgn ? (__u64)(__s64)(__s16)v : (__u16)v;
  case 4: return sgn ? (__u64)(__s64)(__s32)v : (__u32)v;
  default: return v;
  }
}

/* An argument or field; for K_TP `arg` is the field's byte offset. */
static __always_inline __u64 get_arg(void *ctx, int kind, __u32 arg, __u32 size, bool sgn)
{
  __u64 v = 0;
  if (kind == K_UPROBE) {
    v = reg_arg(ctx, arg);
  } else if (kind == K_USDT) {
    long x = 0;
    bpf_usdt_arg(ctx, arg, &x);
    v = (__u64)x;
  } else if (kind == K_RAWTP) {
    v = raw_arg(ctx, arg);
  } else {
    bpf_probe_read_kernel(&v, sizeof v, (char *)ctx + arg);
  }
  return narrow(v, size, sgn);
}

static __always_inline bool comm_ok(void)
{
  if (!targ_comm[0])
    return true;
  char c[PROBE_COMM_LEN];
  bpf_get_current_comm(c, sizeof c);
  for (int i = 0; i < PROBE_COMM_LEN; i++) {
    if (c[i] != targ_comm[i])
      return false;
    if (!c[i])
      break;
  }
  return true;
}

static __always_inline bool compare(__u64 v)
{
  __s64 s = (__s64)v;
  switch (filt_op) {
  case PROBE_OP_EQ: return s == filt_val;
  case PROBE_OP_NE: return s != filt_val;
  case PROBE_OP_LT: return s < filt_val;
  case PROBE_OP_LE: return s <= filt_val;
  case PROBE_OP_GT: return s > filt_val;
  case PROBE_OP_GE: return s >= filt_val;
  default: return true;
  }
}

static __always_inline __u32 slot_of(__u64 v)
{
  if (hist_kind == PROBE_HIST_LINEAR) {
    __s64 s = (__s64)v;
    if (s < lin_min)
      return 0;
    __u64 i = (__u64)(s - lin_min) / lin_step + 1;
    return i > lin_n ? lin_n + 1 : (__u32)i;
  }
  if (hist_signed && (__s64)v < 0)
    return PROBE_SLOTS - 1; /* negative: the last slot, which no u64 below 2^63 reaches */
  return (__u32)pm_log2l(v);
}

/* uregs: the probe's own user registers (uprobes, USDT); NULL for
 * tracepoints, whose ctx is no pt_regs: the walker takes those saved at
 * kernel entry */
static __always_inline void record(void *ctx, struct pt_regs *uregs, __u64 hval, __u64 kval)
{
  struct pm_probe_key key = {};
  __u64 id = bpf_get_current_pid_tgid();
  if (key_by & PROBE_BY_PID)
    key.pid = id >> 32;
  if (key_by & PROBE_BY_TID)
    key.tid = (__u32)id;
  if (key_by & PROBE_BY_COMM)
    bpf_get_current_comm(key.comm, sizeof key.comm);
  if (key_by & PROBE_BY_USTACK) {
    if (unwind_mode) {
      key.user_stack_id = -2;
      key.user_hash = pm_unwind_user(uregs, id >> 32, &key.user_stack_id);
    } else {
      key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
    }
    pm_note_fresh(id >> 32); /* its maps are read while it lives */
  }
  if (key_by & PROBE_BY_KSTACK)
    key.kern_stack_id = bpf_get_stackid(ctx, &stacks, 0);
  if (key_by & PROBE_BY_VALUE)
    key.value = kval;

  struct pm_probe_val *v = bpf_map_lookup_elem(&counts, &key);
  if (!v) {
    __u32 z = 0;
    struct pm_probe_val *init = bpf_map_lookup_elem(&zero, &z);
    if (!init)
      return;
    bpf_map_update_elem(&counts, &key, init, BPF_NOEXIST);
    v = bpf_map_lookup_elem(&counts, &key);
    if (!v) {
      pm_stat_add(PM_STAT_LOST, 1); /* the map is full */
      return;
    }
  }
  v->count++; /* per-CPU: no atomics */
  if (hist_kind != PROBE_HIST_NONE) {
    v->sum += hval;
    __u32 s = slot_of(hval);
    if (s < PROBE_SLOTS)
      v->slots[s]++;
  }
}

static __always_inline bool target_ok(void)
{
  return !pm_skip_current() && comm_ok();
}

/* An event at a probe point: records it, or (paired) remembers its start. */
static __always_inline int on_entry(void *ctx, struct pt_regs *uregs, int kind)
{
  if (!target_ok())
    return 0;
  if (filt_src == PROBE_SRC_ARG || filt_src == PROBE_SRC_FIELD) {
    if (!compare(get_arg(ctx, kind, filt_arg, filt_size, filt_signed)))
      return 0;
  }
  __u64 kval = 0;
  if ((key_by & PROBE_BY_VALUE) && (key_src == PROBE_SRC_ARG || key_src == PROBE_SRC_FIELD))
    kval = get_arg(ctx, kind, key_arg, key_size, key_signed);
  if (paired) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct pm_probe_entry e = { .ts = bpf_ktime_get_ns(), .value = kval };
    if (bpf_map_update_elem(&starts, &tid, &e, BPF_ANY) != 0)
      pm_stat_add(PM_STAT_LOST, 1);
    return 0;
  }
  __u64 hval = 0;
  if (hist_kind != PROBE_HIST_NONE)
    hval = get_arg(ctx, kind, hist_arg, hist_size, hist_signed);
  record(ctx, uregs, hval, kval);
  return 0;
}

SEC("uprobe")
int probe_uprobe(struct pt_regs *ctx)
{
  return on_entry(ctx, ctx, K_UPROBE);
}

SEC("usdt")
int probe_usdt(struct pt_regs *ctx)
{
  return on_entry(ctx, ctx, K_USDT);
}

SEC("tp")
int probe_tp(void *ctx)
{
  return on_entry(ctx, NULL, K_TP);
}

SEC("raw_tp")
int probe_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
  return on_entry(ctx, NULL, K_RAWTP);
}

/* A function's return: latency from the paired entry, or its return value. */
SEC("uretprobe")
int probe_uretprobe(struct pt_regs *ctx)
{
  if (!target_ok())
    return 0;
  __u64 ret = PT_REGS_RC(ctx), lat = 0, kval = 0;
  if (paired) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct pm_probe_entry *e = bpf_map_lookup_elem(&starts, &tid);
    if (!e) {
      /* entered before attach (an entry the filter refused is not a miss) */
      if (filt_src != PROBE_SRC_ARG)
        pm_stat_add(PM_STAT_MISSED, 1);
      return 0;
    }
    lat = bpf_ktime_get_ns() - e->ts;
    kval = e->value;
    bpf_map_delete_elem(&starts, &tid);
  }
  __u64 r = narrow(ret, hist_src == PROBE_SRC_RETVAL ? hist_size : 8, hist_signed);
  if (filt_src == PROBE_SRC_RETVAL && !compare(narrow(ret, filt_size, filt_signed)))
    return 0;
  if (filt_src == PROBE_SRC_LATENCY && !compare(lat))
    return 0;
  if (key_src == PROBE_SRC_RETVAL)
    kval = narrow(ret, key_size, key_signed);
  record(ctx, ctx, hist_src == PROBE_SRC_LATENCY ? lat : r, kval);
  return 0;
}
