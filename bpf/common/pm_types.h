/* Constants and structs shared by the BPF programs and user space (Lua reads
 * them through FFI cdefs; specs check the sizes against the objects' BTF).
 * Plain __u32/__u64 types only, so both sides can include it. */
#ifndef PM_TYPES_H
#define PM_TYPES_H

/* log2 histogram: slot i counts values in [2^i, 2^(i+1)-1], slot 0 holds 0
 * and 1 (the BCC convention); the last slot also holds everything above. */
#define PM_LOG2_SLOTS 32

/* indexes into the per-CPU pm_stats map every object carries */
#define PM_STAT_EVENTS 0 /* events the programs accepted (after the filter) */
#define PM_STAT_LOST 1   /* events dropped: ring buffer full, map full */
#define PM_STAT_MISSED 2 /* pairs whose start was not seen (e.g. began before attach) */
#define PM_STAT_NR 4

struct pm_log2_hist {
  __u64 slots[PM_LOG2_SLOTS];
};

#endif
