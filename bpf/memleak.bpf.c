// SPDX-License-Identifier: GPL-2.0
/* memleak: the memory profiler's kernel side. Uprobes on the target's
 * allocator (malloc, calloc, realloc, posix_memalign, aligned_alloc and
 * free, attached by user space to the library /proc/PID/maps names) keep
 * every sampled live allocation by address with its stack, and per stack
 * the bytes allocated and not freed yet: what is left at the end of the
 * window is the leak view (BCC memleak's accounting). mmap(2)/munmap(2)
 * outside the allocator count the same way through the syscall tracepoints;
 * brk(2) growth is counted. User page faults (exceptions:page_fault_user)
 * are counted per user stack and per 1 MiB region of the faulting address.
 * User stacks are walked from DWARF CFI (common/unwind.bpf.h) unless
 * unwind_mode is 0: then frame pointers, with bpf_get_stackid.
 *
 * Sampling: calls of at least sample_min_size bytes are always recorded;
 * smaller ones every sample_every-th call on a CPU, weighted by
 * sample_every, so the totals stay unbiased estimates. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "memleak.h"
#include "common/unwind.bpf.h"

const volatile __u64 sample_every = 1;
const volatile __u64 sample_min_size = 0; /* 0: size does not force a sample */
const volatile bool trace_faults = true;

/* thread -> allocator call in progress */
struct pending {
  __u64 size;
  __u64 weight; /* 0: not sampled */
  __u64 memptr; /* posix_memalign's out pointer */
  __u32 depth;  /* nested public allocator calls (realloc(NULL, n) -> malloc) */
  __u32 pad;
  struct pm_memleak_site site;
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, struct pending);
} inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, struct pending);
} mmap_inflight SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, MEMLEAK_MAX_ALLOCS);
  __type(key, __u64);
  __type(value, struct pm_memleak_alloc);
} allocs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, MEMLEAK_MAX_SITES);
  __type(key, struct pm_memleak_site);
  __type(value, struct pm_memleak_total);
} sites SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, MEMLEAK_MAX_SITES);
  __type(key, struct pm_memleak_fault_key);
  __type(value, __u64);
} faults SEC(".maps");

/* faults per (tgid, address >> 20) */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, MEMLEAK_MAX_SITES);
  __type(key, struct pm_memleak_fault_key);
  __type(value, __u64);
} fault_regions SEC(".maps");

/* last brk per process, for growth */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);
  __type(value, __u64);
} brks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, MEMLEAK_MAX_STACKS);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, MEMLEAK_MAX_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, MEMLEAK_C_NR);
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

static __always_inline void count(__u32 which, __u64 n)
{
  __u64 *v = bpf_map_lookup_elem(&counters, &which);
  if (v)
    *v += n;
}

static __always_inline __u64 weight_of(__u64 size)
{
  if (sample_min_size && size >= sample_min_size)
    return 1;
  if (sample_every <= 1)
    return 1;
  __u32 zero = 0;
  __u64 *t = bpf_map_lookup_elem(&tick, &zero);
  if (!t)
    return 0;
  if (++*t < sample_every)
    return 0;
  *t = 0;
  return sample_every;
}

/* The user stack: walked from CFI when unwind_mode is set (uregs: the
 * uprobe's user registers; NULL: those saved at kernel entry), else by frame
 * pointers. The caller word is kept either way: a walk that found no table
 * takes frame-pointer steps from the allocator's entry, which skip it. */
static __always_inline void take_stack(void *ctx, struct pt_regs *uregs, struct pm_memleak_site *site, __u64 sp)
{
  site->tgid = bpf_get_current_pid_tgid() >> 32;
  site->user_hash = 0;
  if (unwind_mode) {
    site->stack_id = -2;
    site->user_hash = pm_unwind_user(uregs, site->tgid, &site->stack_id);
  } else {
    site->stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
  }
  if (!site->user_hash && site->stack_id < 0 && site->stack_id != -14)
    count(MEMLEAK_C_STACK_LOST, 1);
  site->caller = 0;
  if (sp)
    bpf_probe_read_user(&site->caller, sizeof site->caller, (void *)sp);
}

static __always_inline int alloc_enter(struct pt_regs *ctx, __u64 size, __u32 kind, __u64 memptr)
{
  if (pm_skip_current())
    return 0;
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct pending *p = bpf_map_lookup_elem(&inflight, &tid);
  if (p) {
    p->depth++;
    count(MEMLEAK_C_NESTED, 1);
    return 0;
  }
  count(MEMLEAK_C_CALLS, 1);
  struct pending n = {};
  n.size = size;
  n.memptr = memptr;
  n.site.kind = kind;
  n.weight = weight_of(size);
  if (n.weight) {
    count(MEMLEAK_C_SAMPLED, 1);
    take_stack(ctx, ctx, &n.site, PT_REGS_SP(ctx));
  }
  bpf_map_update_elem(&inflight, &tid, &n, BPF_ANY);
  return 0;
}

static __always_inline void record(__u64 addr, __u64 size, __u64 weight, struct pm_memleak_site *site)
{
  struct pm_memleak_alloc a = { .size = size, .weight = weight, .site = *site };
  if (bpf_map_update_elem(&allocs, &addr, &a, BPF_ANY) != 0) {
    count(MEMLEAK_C_ALLOCS_FULL, 1);
    return;
  }
  pm_stat_add(PM_STAT_EVENTS, 1);
  struct pm_memleak_total *t = bpf_map_lookup_elem(&sites, site);
  if (!t) {
    struct pm_memleak_total z = {};
    bpf_map_update_elem(&sites, site, &z, BPF_NOEXIST);
    t = bpf_map_lookup_elem(&sites, site);
    if (!t) {
      pm_stat_add(PM_STAT_LOST, 1);
      return;
    }
  }
  __sync_fetch_and_add(&t->bytes, size * weight);
  __sync_fetch_and_add(&t->allocs, weight);
  __sync_fetch_and_add(&t->sampled, 1);
  __sync_fetch_and_add(&t->sampled_bytes, size);
}

static __always_inline int alloc_exit(__u64 addr, int from_memptr)
{
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct pending *p = bpf_map_lookup_elem(&inflight, &tid);
  if (!p)
    return 0;
  if (p->depth) {
    p->depth--;
    return 0;
  }
  struct pending n = *p;
  bpf_map_delete_elem(&inflight, &tid);
  if (!n.weight)
    return 0;
  if (from_memptr) {
    if (addr != 0) /* posix_memalign failed */
      return 0;
    addr = 0;
    bpf_probe_read_user(&addr, sizeof addr, (void *)n.memptr);
  }
  if (addr)
    record(addr, n.size, n.weight, &n.site);
  return 0;
}

static __always_inline void forget(__u64 addr)
{
  struct pm_memleak_alloc *a = bpf_map_lookup_elem(&allocs, &addr);
  if (!a)
    return;
  struct pm_memleak_alloc v = *a;
  bpf_map_delete_elem(&allocs, &addr);
  count(MEMLEAK_C_FREES_HIT, 1);
  struct pm_memleak_total *t = bpf_map_lookup_elem(&sites, &v.site);
  if (t) {
    __sync_fetch_and_add(&t->bytes, -(v.size * v.weight));
    __sync_fetch_and_add(&t->allocs, -v.weight);
  }
}

SEC("uprobe")
int BPF_KPROBE(malloc_enter, __u64 size)
{
  return alloc_enter(ctx, size, MEMLEAK_MALLOC, 0);
}

SEC("uprobe")
int BPF_KPROBE(calloc_enter, __u64 nmemb, __u64 size)
{
  return alloc_enter(ctx, nmemb * size, MEMLEAK_CALLOC, 0);
}

SEC("uprobe")
int BPF_KPROBE(realloc_enter, __u64 ptr, __u64 size)
{
  if (pm_skip_current())
    return 0;
  if (ptr) {
    count(MEMLEAK_C_FREES, 1);
    forget(ptr);
  }
  return alloc_enter(ctx, size, MEMLEAK_REALLOC, 0);
}

/* aligned_alloc(align, size), memalign(align, size) */
SEC("uprobe")
int BPF_KPROBE(aligned_alloc_enter, __u64 align, __u64 size)
{
  return alloc_enter(ctx, size, MEMLEAK_MEMALIGN, 0);
}

/* posix_memalign(&ptr, align, size): the address is written through memptr */
SEC("uprobe")
int BPF_KPROBE(posix_memalign_enter, __u64 memptr, __u64 align, __u64 size)
{
  return alloc_enter(ctx, size, MEMLEAK_MEMALIGN, memptr);
}

SEC("uretprobe")
int BPF_KRETPROBE(alloc_return, __u64 ret)
{
  return alloc_exit(ret, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(posix_memalign_return, __u64 ret)
{
  return alloc_exit(ret, 1);
}

SEC("uprobe")
int BPF_KPROBE(free_enter, __u64 ptr)
{
  if (!ptr || pm_skip_current())
    return 0;
  count(MEMLEAK_C_FREES, 1);
  forget(ptr);
  return 0;
}

/* ---- mmap / munmap / brk outside the allocator ------------------------- */

SEC("tp/syscalls/sys_enter_mmap")
int memleak_mmap_enter(struct trace_event_raw_sys_enter *ctx)
{
  if (pm_skip_current())
    return 0;
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  /* anonymous mappings only (0x20 = MAP_ANONYMOUS), and not the allocator's own */
  if (!(ctx->args[3] & 0x20) || bpf_map_lookup_elem(&inflight, &tid))
    return 0;
  struct pending n = {};
  n.size = ctx->args[1];
  n.weight = 1;
  n.site.kind = MEMLEAK_MMAP;
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
  take_stack(ctx, NULL, &n.site, regs ? BPF_CORE_READ(regs, sp) : 0);
  bpf_map_update_elem(&mmap_inflight, &tid, &n, BPF_ANY);
  return 0;
}

SEC("tp/syscalls/sys_exit_mmap")
int memleak_mmap_exit(struct trace_event_raw_sys_exit *ctx)
{
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct pending *p = bpf_map_lookup_elem(&mmap_inflight, &tid);
  if (!p)
    return 0;
  struct pending n = *p;
  bpf_map_delete_elem(&mmap_inflight, &tid);
  long ret = ctx->ret;
  if (ret < 0 && ret > -4096)
    return 0;
  count(MEMLEAK_C_MMAP_BYTES, n.size);
  record((__u64)ret, n.size, 1, &n.site);
  return 0;
}

SEC("tp/syscalls/sys_enter_munmap")
int memleak_munmap_enter(struct trace_event_raw_sys_enter *ctx)
{
  if (pm_skip_current())
    return 0;
  forget(ctx->args[0]);
  return 0;
}

SEC("tp/syscalls/sys_exit_brk")
int memleak_brk_exit(struct trace_event_raw_sys_exit *ctx)
{
  if (pm_skip_current())
    return 0;
  __u32 tgid = bpf_get_current_pid_tgid() >> 32;
  __u64 now = (__u64)ctx->ret;
  __u64 *prev = bpf_map_lookup_elem(&brks, &tgid);
  if (prev) {
    if (now > *prev)
      count(MEMLEAK_C_BRK_BYTES, now - *prev);
    *prev = now;
  } else {
    bpf_map_update_elem(&brks, &tgid, &now, BPF_ANY);
  }
  return 0;
}

/* ---- page faults ------------------------------------------------------- */

static __always_inline void add_one(void *map, struct pm_memleak_fault_key *k)
{
  __u64 *n = bpf_map_lookup_elem(map, k);
  if (n) {
    __sync_fetch_and_add(n, 1);
    return;
  }
  __u64 one = 1;
  if (bpf_map_update_elem(map, k, &one, BPF_NOEXIST) != 0) {
    n = bpf_map_lookup_elem(map, k);
    if (n)
      __sync_fetch_and_add(n, 1);
    else
      pm_stat_add(PM_STAT_LOST, 1);
  }
}

/* the tracepoint's record (its format file); not every kernel's BTF has the type */
struct fault_record {
  __u64 common;
  unsigned long address, ip, error_code;
};

SEC("tp/exceptions/page_fault_user")
int memleak_fault(struct fault_record *ctx)
{
  if (!trace_faults || pm_skip_current())
    return 0;
  count(MEMLEAK_C_FAULTS, 1);
  struct pm_memleak_fault_key k = {};
  k.tgid = bpf_get_current_pid_tgid() >> 32;
  if (unwind_mode) {
    k.stack_id = -2;
    k.user_hash = pm_unwind_user(NULL, k.tgid, &k.stack_id);
  } else {
    k.stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
  }
  if (!k.user_hash && k.stack_id < 0 && k.stack_id != -14)
    count(MEMLEAK_C_STACK_LOST, 1);
  add_one(&faults, &k);
  struct pm_memleak_fault_key r = { .tgid = k.tgid, .stack_id = (__s32)(ctx->address >> 20) };
  add_one(&fault_regions, &r); /* stack_id holds the 1 MiB region here */
  return 0;
}
