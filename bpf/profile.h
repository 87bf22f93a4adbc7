/* Shared between bpf/profile.bpf.c and lib/perf_manual/profilers/oncpu.lua
 * (which decodes the key with string.unpack-style offsets; a spec checks the
 * size against the object's BTF). */
#ifndef PM_PROFILE_H
#define PM_PROFILE_H

#define PROFILE_MAX_KEYS 16384
#define PROFILE_MAX_STACKS 16384
#define PROFILE_MAX_DEPTH 127 /* the kernel's perf stack depth limit */
#define PROFILE_COMM_LEN 16

/* samples per (process, thread name, user stack, kernel stack) */
struct pm_profile_key {
  __u32 tgid;
  __s32 user_stack_id; /* <0: none (kernel thread: -EFAULT), lost (-EEXIST, -ENOMEM),
                          or -ENOENT: walked from CFI, see user_hash */
  __s32 kern_stack_id; /* <0: none (sample in user mode: -EFAULT) or lost */
  __u32 pad;
  char comm[PROFILE_COMM_LEN];
  __u64 user_hash; /* the key of the stack in unwind_stacks, or 0 */
};

/* per-CPU counters beside common.h's pm_stats (events = samples kept,
 * lost = samples dropped because the counts map was full) */
enum profile_counter {
  PROFILE_C_IDLE = 0,       /* samples of the idle task, not kept */
  PROFILE_C_STACK_LOST = 1, /* a stack could not be stored (stack map full or collision) */
  PROFILE_C_FILTERED = 2,   /* samples outside the target */
  PROFILE_C_NR = 3,
};

#endif
