/* The CFI compiler (runtime/cfi.c): an ELF object's call-frame information
 * (.eh_frame, .debug_frame) compiled into one sorted table of rows, each
 * saying for x86-64 how to find the caller's frame from a pc in the object.
 * The table is what a stack walker (the BPF unwinder) consults; it is also
 * saved to disk keyed by build-id. Declared here for the Lua binding in the
 * same file and for the C unit tests (tests/c/test_cfi.c). */
#ifndef PM_CFI_H
#define PM_CFI_H

#include <stddef.h>
#include <stdint.h>

/* How the canonical frame address (CFA: the caller's rsp) is found. */
enum pm_cfi_cfa {
  PM_CFI_NONE = 0,    /* no FDE covers the pc: the object says nothing */
  PM_CFI_RSP,         /* rsp + cfa_off */
  PM_CFI_RBP,         /* rbp + cfa_off */
  PM_CFI_PLT,         /* rsp + cfa_off + ((rip & 15) >= rbp_off ? 8 : 0): a PLT entry */
  PM_CFI_SIGNAL,      /* a signal trampoline: the registers are in the ucontext at rsp */
  PM_CFI_END,         /* the return address is undefined: the outermost frame */
  PM_CFI_UNSUPPORTED, /* another register or expression: not unwound from here */
  PM_CFI_KINDS
};

/* Where the caller's rbp is. */
enum pm_cfi_rbp {
  PM_CFI_RBP_SAME = 0, /* unchanged in this frame */
  PM_CFI_RBP_CFA,      /* saved at CFA + rbp_off */
  PM_CFI_RBP_LOST,     /* in a register or behind an expression: not recovered */
};

/* One row: from pc (the offset from the table's base) up to the next row's
 * pc. The return address is always at CFA - 8 (a rule that says otherwise
 * makes the row PM_CFI_UNSUPPORTED). 12 bytes, no padding. */
struct pm_cfi_row {
  uint32_t pc;
  uint8_t cfa;     /* enum pm_cfi_cfa */
  uint8_t rbp;     /* enum pm_cfi_rbp */
  int16_t rbp_off; /* PM_CFI_RBP_CFA: the offset; PM_CFI_PLT: the threshold */
  int32_t cfa_off;
};

struct pm_cfi_stats {
  uint32_t fdes;         /* FDEs read (both sections) */
  uint32_t fdes_debug;   /* of them from .debug_frame */
  uint32_t overlapping;  /* FDEs dropped: their range was covered already */
  uint32_t bad;          /* FDEs or CIEs that could not be parsed */
  uint32_t kinds[PM_CFI_KINDS]; /* rows of each enum pm_cfi_cfa */
  uint32_t rbp_lost;     /* rows whose rbp rule is PM_CFI_RBP_LOST */
};

struct pm_cfi_table {
  struct pm_cfi_row *rows;
  size_t n;
  uint64_t base;       /* link-time address of rows[0].pc == 0 */
  char build_id[65];   /* lower-case hex; "" when the object has none */
  struct pm_cfi_stats stats;
};

/// Compiles the CFI of the ELF object at path. 0 and *out, or an errno:
/// ENOEXEC not ELF (or not x86-64), ENODATA no call-frame information,
/// EFBIG a text span beyond 4 GiB, ELIBBAD libelf version mismatch.
int pm_cfi_compile(const char *path, struct pm_cfi_table **out);
void pm_cfi_free(struct pm_cfi_table *t);

/* The sections pm_cfi_compile reads out of an ELF file. */
struct pm_cfi_input {
  const uint8_t *eh_frame;
  size_t eh_size;
  uint64_t eh_addr;            /* link-time address of .eh_frame (pcrel pointers) */
  const uint8_t *debug_frame;  /* absolute addresses: no base needed */
  size_t debug_size;
  uint64_t text_addr, got_addr; /* bases of textrel and datarel pointers */
};

/// pm_cfi_compile on sections already in memory (any bytes: the fuzz
/// target feeds it). 0 and *out (no build-id), ENODATA, EFBIG or ENOMEM.
int pm_cfi_compile_frames(const struct pm_cfi_input *in, struct pm_cfi_table **out);
/// The row covering pc (a link-time address); NULL before the first row,
/// the closing PM_CFI_NONE row past the last FDE.
const struct pm_cfi_row *pm_cfi_lookup(const struct pm_cfi_table *t, uint64_t pc);
/// The build-id of the ELF object at path into buf (65 bytes): 0, or an
/// errno (ENOMSG no build-id note, ENOEXEC not ELF, ENOENT no file).
int pm_cfi_build_id(const char *path, char *buf);
/// Writes the table to path atomically (a temp file renamed): 0 or errno.
int pm_cfi_save(const struct pm_cfi_table *t, const char *path);
/// Reads a table saved by pm_cfi_save; build_id (or NULL: any) must match
/// the header's. 0 and *out, or an errno: ENOENT, ESTALE (other build-id),
/// EBADMSG (not a table, another version, truncated, rows out of order or
/// of an unknown kind).
int pm_cfi_load(const char *path, const char *build_id, struct pm_cfi_table **out);
/// Bytes the table takes (header and rows) as saved.
size_t pm_cfi_size(const struct pm_cfi_table *t);
/// "rsp", "rbp", "plt", "signal", "end", "unsupported", "none".
const char *pm_cfi_kind_name(int kind);

#endif
