/* Shared between bpf/memleak.bpf.c and lib/perf_manual/profilers/memory.lua
 * (FFI cdefs; a spec checks the sizes against the object's BTF). */
#ifndef PM_MEMLEAK_H
#define PM_MEMLEAK_H

#define MEMLEAK_MAX_ALLOCS 1000000 /* live sampled allocations */
#define MEMLEAK_MAX_SITES 16384    /* distinct allocation / fault stacks */
#define MEMLEAK_MAX_STACKS 16384
#define MEMLEAK_MAX_DEPTH 127
#define MEMLEAK_COMM_LEN 16

/* which allocator call made an allocation */
enum memleak_kind {
  MEMLEAK_MALLOC = 0,
  MEMLEAK_CALLOC = 1,
  MEMLEAK_REALLOC = 2,
  MEMLEAK_MEMALIGN = 3, /* posix_memalign, aligned_alloc, memalign */
  MEMLEAK_MMAP = 4,     /* mmap(2) outside the allocator */
  MEMLEAK_KIND_NR = 5,
};

/* one allocation site: the user stack, plus the caller's return address
 * read at the allocator's entry (the frame-pointer walk from there skips
 * the immediate caller: it has not pushed a frame for the callee yet) */
struct pm_memleak_site {
  __u64 caller;
  __s32 stack_id; /* <0: none, lost, or walked from CFI (-ENOENT, user_hash set) */
  __u32 tgid;
  __u32 kind; /* enum memleak_kind */
  __u32 pad;
  __u64 user_hash; /* walked from CFI: its key in unwind_stacks; 0: not walked */
};

/* a live allocation, by address */
struct pm_memleak_alloc {
  __u64 size;
  __u64 weight; /* how many calls this sample stands for (sample_every, or 1) */
  struct pm_memleak_site site;
};

/* per site: outstanding (allocated in the window, not freed yet), weighted */
struct pm_memleak_total {
  __u64 bytes;    /* outstanding bytes x weight */
  __u64 allocs;   /* outstanding allocations x weight */
  __u64 sampled;  /* allocations sampled here in the window (freed or not) */
  __u64 sampled_bytes;
};

/* page faults per (process, user stack); also per (process, 1 MiB region
 * of the faulting address), the region in stack_id's place */
struct pm_memleak_fault_key {
  __u32 tgid;
  __s32 stack_id;
  __u64 user_hash; /* as in pm_memleak_site; 0 in fault_regions */
};

/* per-CPU counters beside common.h's pm_stats */
enum memleak_counter {
  MEMLEAK_C_CALLS = 0,       /* allocator calls seen (target only) */
  MEMLEAK_C_SAMPLED = 1,     /* of them, sampled (recorded) */
  MEMLEAK_C_FREES = 2,       /* free calls seen */
  MEMLEAK_C_FREES_HIT = 3,   /* frees of a sampled allocation */
  MEMLEAK_C_STACK_LOST = 4,  /* stack could not be stored */
  MEMLEAK_C_ALLOCS_FULL = 5, /* live-allocation map full: allocation not tracked */
  MEMLEAK_C_FAULTS = 6,      /* user page faults of the target */
  MEMLEAK_C_BRK_BYTES = 7,   /* heap growth by brk(2) (most of it from inside malloc) */
  MEMLEAK_C_MMAP_BYTES = 8,  /* mmap(2) bytes outside the allocator */
  MEMLEAK_C_NESTED = 9,     /* allocator calls made by the allocator itself (not counted again) */
  MEMLEAK_C_NR = 10,
};

#endif
