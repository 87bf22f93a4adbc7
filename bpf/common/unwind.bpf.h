/* The user-stack walker from DWARF call-frame information, for the objects
 * that take user stacks. User space (lib/perf_manual/unwind.lua) compiles
 * each mapped object's .eh_frame/.debug_frame into rows (runtime/cfi.c),
 * puts them in unwind_rows once per object, and gives each process a sorted
 * list of its executable mappings in unwind_procs. A walk takes the user
 * registers, and for each frame finds the mapping, the row of its pc and
 * from it the caller's rsp, rbp and return address; where the pc has no row
 * it takes a frame-pointer step (auto mode). The stack is kept in the kernel
 * (unwind_stacks, keyed by a hash of its addresses): the caller counts by
 * that key, as it counts by a stack id from bpf_get_stackid. */
#ifndef PM_UNWIND_BPF_H
#define PM_UNWIND_BPF_H

#include "unwind.h"

/* 0: frame pointers only (bpf_get_stackid; the maps below are not used);
 * 1: auto, CFI where the object has rows, frame pointers elsewhere;
 * 2: dwarf, CFI only (a pc without a row ends the stack) */
const volatile __u32 unwind_mode = 0;

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1); /* user space sizes the three maps when it walks */
  __type(key, __u32);
  __type(value, struct pm_unwind_row);
} unwind_rows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct pm_unwind_proc);
} unwind_procs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u64);
  __type(value, struct pm_ustack);
} unwind_stacks SEC(".maps");

/* processes whose tables are missing or miss a mapping (exec, dlopen):
 * user space reads their mappings again and clears the entry */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u8);
} unwind_stale SEC(".maps");

struct pm_unwind_scratch {
  __u64 ip, sp, bp;
  __u64 hash;
  __u32 tgid;
  __u8 exact;   /* ip is where the thread is, not a return address */
  __u8 from_fp; /* ip came from a frame-pointer step: maybe not code at all */
  __u8 stale;   /* a trusted pc outside every known mapping: reread them */
  __u8 pad;
  /* a binary search's bounds, kept here so the verifier reads them back as
   * unknown values: as locals each step's two outcomes would be separate
   * states to explore, 2^steps in all */
  __u32 lo, hi;
  __u32 rs_first, rs_rel; /* the row search: the object's first row, the pc in its table */
  struct pm_ustack st;
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct pm_unwind_scratch);
} unwind_scratch SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PM_UNWIND_C_NR);
  __type(key, __u32);
  __type(value, __u64);
} unwind_counters SEC(".maps");

static __always_inline void pm_unwind_count(__u32 which)
{
  __u64 *v = bpf_map_lookup_elem(&unwind_counters, &which);
  if (v)
    *v += 1;
}

/* One step of the binary search for the last row at or before rs_rel: its
 * own bpf_loop, so the verifier checks one step, not every path through 24 */
static long pm_unwind_row_step(__u64 i, void *ctx)
{
  __u32 zero = 0;
  struct pm_unwind_scratch *s = bpf_map_lookup_elem(&unwind_scratch, &zero);
  if (!s)
    return 1;
  __u32 lo = s->lo, hi = s->hi;
  if (lo >= hi)
    return 1;
  __u32 mid = lo + (hi - lo) / 2, idx = s->rs_first + mid;
  struct pm_unwind_row *r = bpf_map_lookup_elem(&unwind_rows, &idx);
  if (!r) {
    s->lo = 0; /* no row: nothing found */
    s->hi = 0;
    return 1;
  }
  if (r->pc <= s->rs_rel)
    s->lo = mid + 1;
  else
    s->hi = mid;
  return 0;
}

/* The row covering pc in the process's tables; *no_map when pc lies in no
 * mapping user space knows. */
static __always_inline struct pm_unwind_row *pm_unwind_row_of(struct pm_unwind_scratch *s,
                                                              struct pm_unwind_proc *p, __u64 pc, int *no_map)
{
  s->lo = 0;
  s->hi = p->n;
  for (int k = 0; k < 9; k++) {
    __u32 lo = s->lo, hi = s->hi;
    if (hi > PM_UNWIND_MAX_MAPS)
      hi = PM_UNWIND_MAX_MAPS;
    if (lo >= hi)
      break;
    __u32 mid = (lo + hi) / 2;
    if (p->maps[mid & (PM_UNWIND_MAX_MAPS - 1)].start <= pc)
      s->lo = mid + 1;
    else
      s->hi = mid;
  }
  __u32 found = s->lo;
  struct pm_unwind_map *m = &p->maps[(found - 1) & (PM_UNWIND_MAX_MAPS - 1)];
  if (found == 0 || pc >= m->end) {
    *no_map = 1;
    return NULL;
  }
  if (m->row_count == 0)
    return NULL;
  __u64 rel = pc - m->adj;
  if (rel >= 0x100000000ULL)
    return NULL;
  __u32 first = m->row_first;
  s->rs_first = first;
  s->rs_rel = (__u32)rel;
  s->lo = 0;
  s->hi = m->row_count;
  bpf_loop(PM_UNWIND_ROW_STEPS, pm_unwind_row_step, NULL, 0);
  if (s->lo == 0)
    return NULL;
  __u32 idx = first + s->lo - 1;
  return bpf_map_lookup_elem(&unwind_rows, &idx);
}

static long pm_unwind_step(__u64 i, void *ctx)
{
  __u32 zero = 0;
  struct pm_unwind_scratch *s = bpf_map_lookup_elem(&unwind_scratch, &zero);
  if (!s)
    return 1;
  struct pm_ustack *st = &s->st;
  __u32 nr = st->nr;
  if (nr >= PM_UNWIND_MAX_DEPTH) {
    st->end = PM_UNWIND_END_DEPTH;
    return 1;
  }
  __u64 ip = s->ip;
  st->ips[nr] = ip;
  st->nr = nr + 1;
  s->hash = (s->hash ^ ip) * 0x100000001b3ULL;
  /* a return address is one past the call: its row is the call's */
  __u64 pc = s->exact ? ip : ip - 1;
  __u8 from_fp = s->from_fp;
  s->exact = 0;
  s->from_fp = 0;

  struct pm_unwind_proc *p = bpf_map_lookup_elem(&unwind_procs, &s->tgid);
  struct pm_unwind_row *row = NULL;
  int no_map = 0;
  if (p)
    row = pm_unwind_row_of(s, p, pc, &no_map);
  else
    st->no_table = 1;

  if (row && row->cfa != PM_UW_NONE) {
    __u64 cfa;
    switch (row->cfa) {
    case PM_UW_RSP:
      cfa = s->sp + row->cfa_off;
      break;
    case PM_UW_RBP:
      cfa = s->bp + row->cfa_off;
      break;
    case PM_UW_PLT:
      cfa = s->sp + row->cfa_off + ((__s64)(ip & 15) >= row->rbp_off ? 8 : 0);
      break;
    case PM_UW_SIGNAL: {
      /* the kernel's rt_sigframe: the ucontext at rsp, its sigcontext's
       * rbp, rsp and rip at 120, 160 and 168 */
      __u64 nbp, nsp, nip;
      if (bpf_probe_read_user(&nbp, 8, (void *)(s->sp + 120)) ||
          bpf_probe_read_user(&nsp, 8, (void *)(s->sp + 160)) ||
          bpf_probe_read_user(&nip, 8, (void *)(s->sp + 168))) {
        st->end = PM_UNWIND_END_READ;
        return 1;
      }
      s->bp = nbp;
      s->sp = nsp;
      s->ip = nip;
      s->exact = 1;
      st->dwarf++;
      if (!nip) {
        st->end = PM_UNWIND_END_ROOT;
        return 1;
      }
      return 0;
    }
    case PM_UW_END:
      st->end = PM_UNWIND_END_ROOT;
      return 1;
    default:
      st->end = PM_UNWIND_END_UNSUPPORTED;
      return 1;
    }
    __u64 ra;
    if (bpf_probe_read_user(&ra, 8, (void *)(cfa - 8))) {
      st->end = PM_UNWIND_END_READ;
      return 1;
    }
    if (row->rbp == PM_UW_RBP_CFA) {
      if (bpf_probe_read_user(&s->bp, 8, (void *)(cfa + row->rbp_off))) {
        st->end = PM_UNWIND_END_READ;
        return 1;
      }
    } else if (row->rbp == PM_UW_RBP_LOST) {
      s->bp = 0;
    }
    s->sp = cfa;
    s->ip = ra;
    st->dwarf++;
    if (!ra) {
      st->end = PM_UNWIND_END_ROOT;
      return 1;
    }
    return 0;
  }

  /* no row here */
  if (p) {
    if (unwind_mode == 2) {
      st->end = PM_UNWIND_END_NO_CFI;
      return 1;
    }
    if (no_map) {
      st->fp_no_map++;
      /* new code (exec, dlopen), unless a frame pointer led here: there
       * the "pc" may be any word and rereading the maps would not help */
      if (!from_fp)
        s->stale = 1;
    } else
      st->fp_no_cfi++;
  }
  if (!s->bp) {
    st->end = PM_UNWIND_END_FP;
    return 1;
  }
  __u64 frame[2];
  if (bpf_probe_read_user(frame, sizeof frame, (void *)s->bp)) {
    st->end = PM_UNWIND_END_FP;
    return 1;
  }
  s->sp = s->bp + 16;
  s->bp = frame[0];
  s->ip = frame[1];
  s->from_fp = 1;
  st->fp++;
  if (!frame[1]) {
    st->end = PM_UNWIND_END_ROOT;
    return 1;
  }
  return 0;
}

/* The user registers of the current task: those of ctx_regs when they are
 * user mode (a sample that hit user code, a uprobe), else those saved when
 * it entered the kernel. -1 for a kernel thread. */
static __always_inline int pm_unwind_regs(struct pt_regs *ctx_regs, __u64 *ip, __u64 *sp, __u64 *bp)
{
  /* a whole-word load: the context allows no narrower one */
  if (ctx_regs && (*(volatile __u64 *)&ctx_regs->cs & 3) == 3) {
    *ip = *(volatile __u64 *)&ctx_regs->ip;
    *sp = *(volatile __u64 *)&ctx_regs->sp;
    *bp = *(volatile __u64 *)&ctx_regs->bp;
    return 0;
  }
  struct task_struct *t = bpf_get_current_task_btf();
  if (t->flags & 0x00200000 /* PF_KTHREAD */)
    return -1;
  struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(t);
  if (!r)
    return -1;
  *ip = r->ip;
  *sp = r->sp;
  *bp = r->bp;
  return 0;
}

/* Walks the current task's user stack into unwind_stacks. Returns its key,
 * or 0 when there is none (a kernel thread: *why = -14, as bpf_get_stackid
 * says) or it could not be kept (*why = -12). */
static __always_inline __u64 pm_unwind_user(struct pt_regs *ctx_regs, __u32 tgid, __s32 *why)
{
  __u32 zero = 0;
  struct pm_unwind_scratch *s = bpf_map_lookup_elem(&unwind_scratch, &zero);
  if (!s) {
    *why = -12;
    return 0;
  }
  if (pm_unwind_regs(ctx_regs, &s->ip, &s->sp, &s->bp) || !s->ip) {
    *why = -14;
    return 0;
  }
  s->hash = 0xcbf29ce484222325ULL;
  s->tgid = tgid;
  s->exact = 1;
  s->from_fp = 0;
  s->stale = 0;
  s->st.nr = 0;
  s->st.dwarf = 0;
  s->st.fp = 0;
  s->st.end = PM_UNWIND_END_DEPTH;
  s->st.no_table = 0;
  s->st.fp_no_cfi = 0;
  s->st.fp_no_map = 0;
  bpf_loop(PM_UNWIND_MAX_DEPTH, pm_unwind_step, NULL, 0);
  pm_unwind_count(PM_UNWIND_C_WALKS);
  if (s->st.no_table || s->stale) {
    __u8 yes = 1;
    bpf_map_update_elem(&unwind_stale, &tgid, &yes, BPF_NOEXIST);
  }
  __u64 h = s->hash ? s->hash : 1;
  if (!bpf_map_lookup_elem(&unwind_stacks, &h) &&
      bpf_map_update_elem(&unwind_stacks, &h, &s->st, BPF_NOEXIST) && !bpf_map_lookup_elem(&unwind_stacks, &h)) {
    pm_unwind_count(PM_UNWIND_C_STACK_LOST);
    *why = -12;
    return 0;
  }
  return h;
}

#endif
