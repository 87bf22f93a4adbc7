/* Shared between bpf/offcpu.bpf.c and lib/perf_manual/tracers/offcpu.lua
 * (which mirrors these structs with ffi.cdef; a spec checks the sizes). */
#ifndef PM_OFFCPU_H
#define PM_OFFCPU_H

#define OFFCPU_MAX_KEYS 10240
#define OFFCPU_MAX_STACKS 10240
#define OFFCPU_MAX_INFLIGHT 10240
#define OFFCPU_COMM_LEN 16

/* blocked time per task and stack pair */
struct pm_offcpu_key {
  __u32 tgid;
  __u32 pid;
  __s32 kern_stack_id;  /* <0: not captured (-EFAULT, -EEXIST when the map is full) */
  __s32 user_stack_id;  /* also -ENOENT: walked from CFI, see user_hash */
  __u64 user_hash;      /* the stack's key in unwind_stacks (common/unwind.bpf.h), or 0 */
};

struct pm_offcpu_val {
  __u64 total_us;
  __u64 count;
  __u64 max_us;
  __u32 state;          /* prev_state at the last switch-out */
  __u32 pad;
  char comm[OFFCPU_COMM_LEN];
};

/* counters map (per-CPU array; blocks kept and dropped are in common.h's
 * pm_stats as events and lost) */
enum offcpu_counter {
  OFFCPU_C_SHORT = 0,     /* blocks outside [min_us, max_us], not kept */
  OFFCPU_C_STACK_ERR = 1, /* a stack could not be captured (stack map full...) */
  OFFCPU_C_NR = 2,
};

#endif
