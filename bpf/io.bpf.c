// SPDX-License-Identifier: GPL-2.0
/* io: block I/O latency and size per disk and op, plus an optional
 * biosnoop-style stream of completed requests.
 *
 * block_io_start (submitter's context) records who owns a request,
 * block_rq_insert when it entered the scheduler queue, block_rq_issue when
 * the driver got it; block_rq_complete closes it. Requests are keyed by their
 * struct request pointer. Each hook exists as tp_btf and as raw_tp; user space
 * autoloads one set (tp_btf when the kernel has BTF for it). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"
#include "io.h"

const volatile bool io_snoop = false;     /* stream events to the ring buffer */
const volatile bool io_queued = false;    /* latency from insert, not issue */

struct pm_io_start {
  __u64 start_ns;
  __u64 insert_ns;
  __u64 issue_ns;
  __u32 pid;
  __u32 tgid;
  __u32 owned;   /* pid/tgid/comm were recorded in the submitter's context */
  __u32 pad;
  char comm[IO_COMM_LEN];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, IO_MAX_INFLIGHT);
  __type(key, __u64);
  __type(value, struct pm_io_start);
} starts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, IO_MAX_KEYS);
  __type(key, struct pm_io_key);
  __type(value, struct pm_io_hist);
} hists SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1024 * 1024);  /* ~10k events: 1 s of a busy disk between polls */
} events SEC(".maps");

/* keeps struct pm_io_event in the object's BTF, where a spec checks the
 * Lua mirror against it */
const struct pm_io_event *pm_io_event_btf __attribute__((unused));

/* too large for the BPF stack: new histograms are copied from here */
struct pm_io_hist zero_hist = {};

/* kernels before 5.17 kept the disk in the request itself */
struct request___old {
  struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline bool filter_active(void)
{
  return targ_tgid || targ_pid || targ_cgroup_id;
}

static __always_inline struct gendisk *rq_disk(struct request *rq)
{
  if (bpf_core_field_exists(rq->q->disk))
    return BPF_CORE_READ(rq, q, disk);
  return BPF_CORE_READ((struct request___old *)rq, rq_disk);
}

static __always_inline __u32 rq_op(__u32 cmd_flags)
{
  switch (cmd_flags & 0xff) {  /* REQ_OP_MASK: low 8 bits since 4.10 */
  case 0: return IO_OP_READ;
  case 1: return IO_OP_WRITE;
  case 2: return IO_OP_FLUSH;
  case 3: return IO_OP_DISCARD;
  default: return IO_OP_OTHER;
  }
}

static __always_inline __u32 rq_flags(__u32 cmd_flags)
{
  __u32 f = 0;
  if (cmd_flags & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_SYNC)))
    f |= IO_F_SYNC;
  if (cmd_flags & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_META)))
    f |= IO_F_META;
  if (cmd_flags & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_FUA)))
    f |= IO_F_FUA;
  if (cmd_flags & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_PREFLUSH)))
    f |= IO_F_PREFLUSH;
  return f;
}

/* submitter's context: owner of the request, and the filter decision */
static __always_inline int on_start(struct request *rq)
{
  __u64 key = (__u64)rq;
  if (pm_skip_current()) {
    bpf_map_delete_elem(&starts, &key);
    return 0;
  }
  struct pm_io_start s = {};
  __u64 id = bpf_get_current_pid_tgid();
  s.pid = (__u32)id;
  s.tgid = id >> 32;
  s.owned = 1;
  s.start_ns = bpf_ktime_get_ns();
  bpf_get_current_comm(s.comm, sizeof s.comm);
  bpf_map_update_elem(&starts, &key, &s, BPF_ANY);
  return 0;
}

static __always_inline int on_insert(struct request *rq)
{
  __u64 key = (__u64)rq;
  struct pm_io_start *s = bpf_map_lookup_elem(&starts, &key);
  if (s) {
    s->insert_ns = bpf_ktime_get_ns();
    return 0;
  }
  if (filter_active())
    return 0;   /* not started by a task that passed the filter */
  struct pm_io_start n = {};
  n.insert_ns = bpf_ktime_get_ns();
  bpf_map_update_elem(&starts, &key, &n, BPF_ANY);
  return 0;
}

static __always_inline int on_issue(struct request *rq)
{
  __u64 key = (__u64)rq;
  struct pm_io_start *s = bpf_map_lookup_elem(&starts, &key);
  if (s) {
    s->issue_ns = bpf_ktime_get_ns();
    if (!s->owned && !s->tgid) {
      /* seen from the insert only: the issuing task is the best owner */
      __u64 id = bpf_get_current_pid_tgid();
      s->pid = (__u32)id;
      s->tgid = id >> 32;
      bpf_get_current_comm(s->comm, sizeof s->comm);
    }
    return 0;
  }
  if (filter_active())
    return 0;
  /* no start seen (flush, requeue, tracer attached mid-flight): the issuing
   * task is the best owner we have */
  struct pm_io_start n = {};
  __u64 id = bpf_get_current_pid_tgid();
  n.issue_ns = bpf_ktime_get_ns();
  n.pid = (__u32)id;
  n.tgid = id >> 32;
  bpf_get_current_comm(n.comm, sizeof n.comm);
  bpf_map_update_elem(&starts, &key, &n, BPF_ANY);
  return 0;
}

static __always_inline int on_complete(struct request *rq, int error, __u32 nr_bytes)
{
  __u64 key = (__u64)rq;
  struct pm_io_start *s = bpf_map_lookup_elem(&starts, &key);
  if (!s)
    return 0;
  __u64 from = io_queued && s->insert_ns ? s->insert_ns : s->issue_ns;
  /* a request the target started that is never issued itself (an empty
   * flush served by the flush machinery) is timed from its start; only with
   * a filter, since system-wide the flush request issued for it is counted */
  if (!from && filter_active() && s->owned)
    from = s->start_ns;
  if (!from) {
    /* completed without an issue we saw (merged away, or started before us) */
    bpf_map_delete_elem(&starts, &key);
    pm_stat_add(PM_STAT_MISSED, 1);
    return 0;
  }
  __u64 now = bpf_ktime_get_ns();
  __u64 lat = now - from;
  __u32 cmd_flags = BPF_CORE_READ(rq, cmd_flags);
  struct gendisk *disk = rq_disk(rq);
  struct pm_io_key k = {};
  k.major = BPF_CORE_READ(disk, major);
  k.minor = BPF_CORE_READ(disk, first_minor);
  k.op = rq_op(cmd_flags);
  /* __data_len is already consumed at completion; the tracepoint's nr_bytes
   * is what this completion covered */
  __u32 bytes = nr_bytes;
  /* an empty write is a preflush (fsync's cache flush): count it as one */
  if (k.op == IO_OP_WRITE && bytes == 0)
    k.op = IO_OP_FLUSH;

  struct pm_io_hist *h = bpf_map_lookup_elem(&hists, &k);
  if (!h) {
    bpf_map_update_elem(&hists, &k, &zero_hist, BPF_NOEXIST);
    h = bpf_map_lookup_elem(&hists, &k);
    if (!h)
      goto done;
  }
  __u32 ls = pm_log2_slot(lat / 1000);
  if (ls < IO_SLOTS)
    __sync_fetch_and_add(&h->lat_slots[ls], 1);
  __u32 ss = pm_log2_slot(bytes);
  if (ss < IO_SLOTS)
    __sync_fetch_and_add(&h->size_slots[ss], 1);
  __sync_fetch_and_add(&h->count, 1);
  __sync_fetch_and_add(&h->total_ns, lat);
  __sync_fetch_and_add(&h->bytes, bytes);
  if (error)
    __sync_fetch_and_add(&h->errors, 1);
  if (rq_flags(cmd_flags) & IO_F_SYNC)
    __sync_fetch_and_add(&h->sync, 1);
  if (s->insert_ns && s->issue_ns > s->insert_ns) {
    __sync_fetch_and_add(&h->queue_ns, s->issue_ns - s->insert_ns);
    __sync_fetch_and_add(&h->queued, 1);
  }
  if (lat > h->max_ns)
    h->max_ns = lat;   /* racy max: close enough for a report */
  pm_stat_add(PM_STAT_EVENTS, 1);

  if (io_snoop) {
    struct pm_io_event *e = pm_ringbuf_reserve(&events, sizeof *e);
    if (!e)
      goto done;
    e->ts_ns = now;
    e->lat_ns = lat;
    e->queue_ns = s->insert_ns && s->issue_ns > s->insert_ns ? s->issue_ns - s->insert_ns : 0;
    e->sector = BPF_CORE_READ(rq, __sector);
    e->bytes = bytes;
    e->pid = s->pid;
    e->tgid = s->tgid;
    e->major = k.major;
    e->minor = k.minor;
    e->op = k.op;
    e->flags = rq_flags(cmd_flags);
    e->error = error;
    __builtin_memcpy(e->comm, s->comm, sizeof e->comm);
    bpf_ringbuf_submit(e, 0);
  }
done:
  bpf_map_delete_elem(&starts, &key);
  return 0;
}

SEC("tp_btf/block_io_start")
int BPF_PROG(io_start_btf, struct request *rq) { return on_start(rq); }

SEC("tp_btf/block_rq_insert")
int BPF_PROG(io_insert_btf, struct request *rq) { return on_insert(rq); }

SEC("tp_btf/block_rq_issue")
int BPF_PROG(io_issue_btf, struct request *rq) { return on_issue(rq); }

SEC("tp_btf/block_rq_complete")
int BPF_PROG(io_complete_btf, struct request *rq, int error, unsigned int nr_bytes)
{
  return on_complete(rq, error, nr_bytes);
}

SEC("raw_tp/block_io_start")
int BPF_PROG(io_start_raw, struct request *rq) { return on_start(rq); }

SEC("raw_tp/block_rq_insert")
int BPF_PROG(io_insert_raw, struct request *rq) { return on_insert(rq); }

SEC("raw_tp/block_rq_issue")
int BPF_PROG(io_issue_raw, struct request *rq) { return on_issue(rq); }

SEC("raw_tp/block_rq_complete")
int BPF_PROG(io_complete_raw, struct request *rq, int error, unsigned int nr_bytes)
{
  return on_complete(rq, error, nr_bytes);
}
