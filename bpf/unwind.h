/* Shared between bpf/common/unwind.bpf.h (the DWARF stack walker) and
 * lib/perf_manual/unwind.lua (which fills its tables and reads its stacks
 * through the FFI; a spec checks the sizes against the objects' BTF). */
#ifndef PM_UNWIND_H
#define PM_UNWIND_H

#define PM_UNWIND_MAX_DEPTH 127   /* frames per user stack, as the kernel's perf limit */
#define PM_UNWIND_MAX_MAPS 256    /* executable mappings per process (a power of two) */
#define PM_UNWIND_MAX_PROCS 1024  /* processes with tables at once */
#define PM_UNWIND_MAX_STACKS 8192 /* distinct user stacks kept */
#define PM_UNWIND_ROWS 1048576    /* rows of all objects (unwind.lua DEFAULT_ROWS) */
#define PM_UNWIND_ROW_STEPS 24    /* binary-search steps: 2^24 rows at most */

/* One row of an object's table: runtime/cfi.h struct pm_cfi_row, as is. */
struct pm_unwind_row {
  __u32 pc;
  __u8 cfa;
  __u8 rbp;
  __s16 rbp_off;
  __s32 cfa_off;
};

/* the rules of runtime/cfi.h enum pm_cfi_cfa / pm_cfi_rbp */
enum {
  PM_UW_NONE = 0, PM_UW_RSP, PM_UW_RBP, PM_UW_PLT, PM_UW_SIGNAL, PM_UW_END, PM_UW_UNSUPPORTED,
};
enum { PM_UW_RBP_SAME = 0, PM_UW_RBP_CFA, PM_UW_RBP_LOST };

/* An executable mapping of a process: pc - adj is the pc in the table of
 * its object, rows [row_first, row_first + row_count). row_count 0: the
 * object has no table (no CFI, JIT code): frame pointers there. */
struct pm_unwind_map {
  __u64 start, end;
  __u64 adj;
  __u32 row_first, row_count;
};

struct pm_unwind_proc {
  __u32 n;  /* mappings in use, sorted by start */
  __u32 pad;
  struct pm_unwind_map maps[PM_UNWIND_MAX_MAPS];
};

/* Why a walk ended. */
enum pm_unwind_end {
  PM_UNWIND_END_ROOT = 0,    /* the outermost frame: CFI says so, or a zero return address */
  PM_UNWIND_END_DEPTH,       /* PM_UNWIND_MAX_DEPTH frames */
  PM_UNWIND_END_FP,          /* a frame-pointer step found no frame pointer */
  PM_UNWIND_END_READ,        /* user memory could not be read (paged out, bad pointer) */
  PM_UNWIND_END_NO_CFI,      /* dwarf mode: a pc with no row (no CFI, JIT code) */
  PM_UNWIND_END_UNSUPPORTED, /* a CFI rule the walker does not follow */
  PM_UNWIND_END_NR,
};

/* A user stack, innermost first, with how each frame was found. */
struct pm_ustack {
  __u32 nr;
  __u16 dwarf;     /* frames found from CFI */
  __u16 fp;        /* frames found from frame pointers */
  __u8 end;        /* enum pm_unwind_end */
  __u8 no_table;   /* the process had no tables yet: frame pointers only */
  __u8 fp_no_cfi;  /* frame-pointer steps taken where the pc had no row */
  __u8 fp_no_map;  /* of them where the pc was in no known mapping */
  __u32 pad;
  __u64 ips[PM_UNWIND_MAX_DEPTH];
};

/* per-CPU counters */
enum pm_unwind_counter {
  PM_UNWIND_C_WALKS = 0,
  PM_UNWIND_C_STACK_LOST = 1, /* the stacks map was full */
  PM_UNWIND_C_NR = 2,
};

#endif
