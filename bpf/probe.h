/* Shared between bpf/probe.bpf.c and lib/perf_manual/probe.lua (FFI cdefs;
 * a spec checks the sizes against the object's BTF). One object serves every
 * probe spec: what to measure, how to key it and what to filter is rodata,
 * set before load. */
#ifndef PM_PROBE_H
#define PM_PROBE_H

#define PROBE_MAX_KEYS 10240
#define PROBE_MAX_STACKS 8192
#define PROBE_MAX_DEPTH 127
#define PROBE_SLOTS 64 /* log2: every u64; linear: below, up to 62 buckets, above */
#define PROBE_COMM_LEN 16

/* where a value (histogram value, key value, filter operand) comes from */
enum probe_src {
  PROBE_SRC_NONE = 0,
  PROBE_SRC_ARG = 1,     /* argument by index: registers (uprobe), bpf_usdt_arg (usdt), args[] (raw_tp) */
  PROBE_SRC_RETVAL = 2,  /* return value (uretprobe) */
  PROBE_SRC_LATENCY = 3, /* ns from entry to return, per thread */
  PROBE_SRC_FIELD = 4,   /* a tracepoint field at a byte offset */
};

/* what a key is made of (bits) */
enum probe_by {
  PROBE_BY_PID = 1,
  PROBE_BY_TID = 2,
  PROBE_BY_COMM = 4,
  PROBE_BY_USTACK = 8,
  PROBE_BY_KSTACK = 16,
  PROBE_BY_VALUE = 32,
};

enum probe_hist { PROBE_HIST_NONE = 0, PROBE_HIST_LOG2 = 1, PROBE_HIST_LINEAR = 2 };

enum probe_op { PROBE_OP_NONE = 0, PROBE_OP_EQ, PROBE_OP_NE, PROBE_OP_LT, PROBE_OP_LE, PROBE_OP_GT, PROBE_OP_GE };

/* fields not asked for by `by` stay zero */
struct pm_probe_key {
  __u32 pid;
  __u32 tid;
  __s32 user_stack_id; /* <0: none (-EFAULT) or lost */
  __s32 kern_stack_id;
  __u64 value;
  char comm[PROBE_COMM_LEN];
  __u64 user_hash; /* a user stack walked from CFI: its key in unwind_stacks (0: none) */
};

struct pm_probe_val {
  __u64 count;
  __u64 sum;
  __u64 slots[PROBE_SLOTS];
};

/* a thread inside a probed function (latency, or a key taken at entry) */
struct pm_probe_entry {
  __u64 ts;
  __u64 value;
};

#endif
