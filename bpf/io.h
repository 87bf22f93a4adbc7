/* Shared between bpf/io.bpf.c and lib/perf_manual/tracers/io.lua (which
 * mirrors these structs with ffi.cdef; a spec checks the sizes). */
#ifndef PM_IO_H
#define PM_IO_H

#define IO_SLOTS 32        /* log2 slots: latency in us, size in bytes */
#define IO_MAX_INFLIGHT 16384
#define IO_MAX_KEYS 1024
#define IO_COMM_LEN 16

/* op classes, from the request's REQ_OP */
enum io_op {
  IO_OP_READ = 0,
  IO_OP_WRITE = 1,
  IO_OP_FLUSH = 2,
  IO_OP_DISCARD = 3,
  IO_OP_OTHER = 4,
};

/* io_event.flags / rwbs modifiers */
#define IO_F_SYNC 1u
#define IO_F_META 2u
#define IO_F_FUA 4u
#define IO_F_PREFLUSH 8u

/* hists map: one histogram per disk and op */
struct pm_io_key {
  __u32 major;
  __u32 minor;
  __u32 op;
  __u32 pad;
};

struct pm_io_hist {
  __u64 lat_slots[IO_SLOTS];   /* issue -> complete, log2(us) */
  __u64 size_slots[IO_SLOTS];  /* request bytes, log2(bytes) */
  __u64 count;
  __u64 total_ns;
  __u64 max_ns;
  __u64 bytes;
  __u64 errors;                /* completions with a non-zero blk_status_t */
  __u64 sync;                  /* requests with REQ_SYNC (a waiter behind them) */
  __u64 queue_ns;              /* insert -> issue, summed over `queued` requests */
  __u64 queued;                /* requests whose insert and issue were both seen */
};

/* events seen / lost (snoop ring buffer full) / missed (completion without
 * an issue we saw) are in common.h's pm_stats */

/* one completed request, streamed through the `events` ring buffer when
 * snoop mode is on */
struct pm_io_event {
  __u64 ts_ns;      /* completion, CLOCK_MONOTONIC */
  __u64 lat_ns;     /* issue -> complete */
  __u64 queue_ns;   /* insert -> issue (0 when not seen) */
  __u64 sector;
  __u32 bytes;
  __u32 pid;
  __u32 tgid;
  __u32 major;
  __u32 minor;
  __u32 op;
  __u32 flags;
  __s32 error;
  char comm[IO_COMM_LEN];
};

#endif
