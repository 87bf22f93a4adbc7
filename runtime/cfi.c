/* pm.cfi: the CFI compiler. Reads .eh_frame and .debug_frame with libelf,
 * runs each FDE's DW_CFA_* program (after its CIE's initial instructions)
 * and keeps, for every pc range, the three rules an x86-64 stack walker
 * needs: the CFA, the caller's rbp and the return address. The rows of all
 * FDEs go into one table sorted by pc, consecutive equal rows merged, gaps
 * between FDEs marked PM_CFI_NONE. Saving and loading a table (the on-disk
 * cache) is here too; where the cache lives is policy: lib/perf_manual/cfi.lua. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "cfi.h"
#include "pm.h"

#define PM_META_CFI "perf_manual.cfi.table"
#define CFI_MAGIC "PMCFI\0\0\0"
#define CFI_VERSION 1u

/* DWARF register numbers on x86-64 */
enum { REG_RBP = 6, REG_RSP = 7, REG_RA = 16 };

/* ---- byte reader ------------------------------------------------------------ */

struct rd {
  const uint8_t *p, *end;
  int bad;
};

static uint64_t rd_u(struct rd *r, int n)
{
  if (r->end - r->p < n) {
    r->bad = 1;
    r->p = r->end;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)r->p[i] << (8 * i);
  r->p += n;
  return v;
}

static uint64_t rd_uleb(struct rd *r)
{
  uint64_t v = 0;
  int shift = 0;
  while (r->p < r->end) {
    uint8_t b = *r->p++;
    if (shift < 64)
      v |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
    if (!(b & 0x80))
      return v;
  }
  r->bad = 1;
  return v;
}

static int64_t rd_sleb(struct rd *r)
{
  int64_t v = 0;
  int shift = 0;
  while (r->p < r->end) {
    uint8_t b = *r->p++;
    if (shift < 64)
      v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
    shift += 7;
    if (!(b & 0x80)) {
      if (shift < 64 && (b & 0x40))
        v |= (int64_t)(~(uint64_t)0 << shift);
      return v;
    }
  }
  r->bad = 1;
  return v;
}

/* A factored offset: n times the CIE's alignment factor, wrapping (not
 * undefined) on absurd input; such a value fails the row's range checks. */
static int64_t scaled(uint64_t n, int64_t factor)
{
  return (int64_t)(n * (uint64_t)factor);
}

/* Bases a pointer encoding can be relative to. */
struct bases {
  uint64_t sec_addr; /* link-time address of the section being read */
  const uint8_t *sec_start;
  uint64_t text, data;
};

/* A DW_EH_PE_* encoded pointer. Indirect pointers (0x80) would need the
 * loaded image: their value is read but not followed (they are only used
 * for personality routines, which the table does not need). */
static uint64_t rd_ptr(struct rd *r, uint8_t enc, const struct bases *b)
{
  if (enc == 0xff)
    return 0;
  uint64_t field = b->sec_addr + (uint64_t)(r->p - b->sec_start), v;
  switch (enc & 0x0f) {
  case 0x00: v = rd_u(r, 8); break;
  case 0x01: v = rd_uleb(r); break;
  case 0x02: v = rd_u(r, 2); break;
  case 0x03: v = rd_u(r, 4); break;
  case 0x04: v = rd_u(r, 8); break;
  case 0x09: v = (uint64_t)rd_sleb(r); break;
  case 0x0a: v = (uint64_t)(int64_t)(int16_t)rd_u(r, 2); break;
  case 0x0b: v = (uint64_t)(int64_t)(int32_t)rd_u(r, 4); break;
  case 0x0c: v = rd_u(r, 8); break;
  default: r->bad = 1; return 0;
  }
  switch (enc & 0x70) {
  case 0x00: break;
  case 0x10: v += field; break;
  case 0x20: v += b->text; break;
  case 0x30: v += b->data; break;
  default: r->bad = 1; break; /* funcrel, aligned: not used for FDE addresses */
  }
  return v;
}

/* ---- CFA program state ------------------------------------------------------ */

enum rule { R_SAME = 0, R_UNDEF, R_OFFSET, R_OTHER };

enum cfa_form { CFA_REG = 0, CFA_PLT, CFA_EXPR };

struct state {
  uint8_t cfa_form; /* enum cfa_form */
  uint64_t cfa_reg;
  int64_t cfa_off;
  int plt_threshold;
  uint8_t rbp, ra;  /* enum rule */
  int64_t rbp_off, ra_off;
};

struct cie {
  uint64_t off;          /* in its section */
  uint64_t code_align;
  int64_t data_align;
  uint64_t ra_reg;
  uint8_t fde_enc;
  uint8_t has_z, signal;
  const uint8_t *insns, *insns_end;
  struct state init;
  int ok;
};

/* The PLT form: DW_OP_breg7 N; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and;
 * DW_OP_litK; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus. Returns 1 and
 * N, K when the expression is exactly that. */
static int match_plt(const uint8_t *p, const uint8_t *end, int64_t *off, int *threshold)
{
  struct rd r = { p, end, 0 };
  if (rd_u(&r, 1) != 0x77)
    return 0;
  *off = rd_sleb(&r);
  if (rd_u(&r, 1) != 0x80 || rd_sleb(&r) != 0 || rd_u(&r, 1) != 0x3f || rd_u(&r, 1) != 0x1a)
    return 0;
  uint64_t lit = rd_u(&r, 1);
  if (lit < 0x30 || lit > 0x4f)
    return 0;
  *threshold = (int)(lit - 0x30);
  if (rd_u(&r, 1) != 0x2a || rd_u(&r, 1) != 0x33 || rd_u(&r, 1) != 0x24 || rd_u(&r, 1) != 0x22)
    return 0;
  return !r.bad && r.p == end;
}

static void set_rule(struct state *s, uint64_t reg, uint8_t rule, int64_t off)
{
  if (reg == REG_RBP) {
    s->rbp = rule;
    s->rbp_off = off;
  } else if (reg == REG_RA) {
    s->ra = rule;
    s->ra_off = off;
  }
}

static void restore_rule(struct state *s, const struct state *init, uint64_t reg)
{
  if (reg == REG_RBP) {
    s->rbp = init->rbp;
    s->rbp_off = init->rbp_off;
  } else if (reg == REG_RA) {
    s->ra = init->ra;
    s->ra_off = init->ra_off;
  }
}

/* ---- rows being built ------------------------------------------------------- */

struct raw_row {
  uint64_t pc;
  struct pm_cfi_row row; /* pc unset */
};

struct fde_rows {
  uint64_t start, end;
  size_t first, n; /* in the raw row array */
  uint32_t order;  /* reading order: the earlier wins on overlap */
};

struct builder {
  struct raw_row *raw;
  size_t nraw, capraw;
  struct fde_rows *fdes;
  size_t nfdes, capfdes;
  struct pm_cfi_stats stats;
  int nomem;
};

static struct pm_cfi_row to_row(const struct state *s, const struct cie *c)
{
  struct pm_cfi_row row = { 0 };
  if (c->signal) {
    row.cfa = PM_CFI_SIGNAL;
    return row;
  }
  if (s->ra == R_UNDEF) {
    row.cfa = PM_CFI_END;
    return row;
  }
  if (s->rbp == R_OFFSET && s->rbp_off >= INT16_MIN && s->rbp_off <= INT16_MAX) {
    row.rbp = PM_CFI_RBP_CFA;
    row.rbp_off = (int16_t)s->rbp_off;
  } else if (s->rbp == R_OFFSET || s->rbp == R_OTHER) {
    row.rbp = PM_CFI_RBP_LOST;
  }
  if (s->ra != R_OFFSET || s->ra_off != -8) {
    row.cfa = PM_CFI_UNSUPPORTED;
  } else if (s->cfa_form == CFA_PLT && s->cfa_off >= 0 && s->cfa_off <= INT32_MAX) {
    row.cfa = PM_CFI_PLT;
    row.cfa_off = (int32_t)s->cfa_off;
    row.rbp = PM_CFI_RBP_SAME;
    row.rbp_off = (int16_t)s->plt_threshold;
  } else if (s->cfa_form == CFA_REG && (s->cfa_reg == REG_RSP || s->cfa_reg == REG_RBP) &&
             s->cfa_off >= INT32_MIN && s->cfa_off <= INT32_MAX) {
    row.cfa = s->cfa_reg == REG_RSP ? PM_CFI_RSP : PM_CFI_RBP;
    row.cfa_off = (int32_t)s->cfa_off;
  } else {
    row.cfa = PM_CFI_UNSUPPORTED;
  }
  if (row.cfa == PM_CFI_UNSUPPORTED) {
    row.rbp = PM_CFI_RBP_SAME;
    row.rbp_off = 0;
  }
  return row;
}

static int add_raw(struct builder *b, uint64_t pc, const struct state *s, const struct cie *c)
{
  if (b->nraw == b->capraw) {
    size_t cap = b->capraw ? b->capraw * 2 : 4096;
    struct raw_row *p = realloc(b->raw, cap * sizeof *p);
    if (!p)
      return b->nomem = 1, -1;
    b->raw = p;
    b->capraw = cap;
  }
  struct raw_row *r = &b->raw[b->nraw];
  r->pc = pc;
  r->row = to_row(s, c);
  b->nraw++;
  return 0;
}

/* Runs a CFA program from loc. With fde == NULL it is a CIE's initial
 * program: it only sets *s. Otherwise each advance closes a row. Returns 0,
 * or -1 for an instruction it cannot parse. */
static int run_program(struct builder *b, const struct cie *c, struct fde_rows *fde, const uint8_t *p,
                       const uint8_t *end, const struct bases *bases, struct state *s)
{
  enum { STACK = 32 };
  struct state stack[STACK];
  int depth = 0;
  uint64_t loc = fde ? fde->start : 0;
  struct rd r = { p, end, 0 };
  int unsupported = 0;

  while (r.p < r.end && !r.bad) {
    uint8_t op = (uint8_t)rd_u(&r, 1);
    uint64_t reg, next = loc;
    int advance = 0;
    switch (op & 0xc0) {
    case 0x40:
      next = loc + (op & 0x3f) * c->code_align;
      advance = 1;
      break;
    case 0x80:
      set_rule(s, op & 0x3f, R_OFFSET, scaled(rd_uleb(&r), c->data_align));
      break;
    case 0xc0:
      restore_rule(s, &c->init, op & 0x3f);
      break;
    default:
      switch (op) {
      case 0x00: break; /* nop */
      case 0x01: next = rd_ptr(&r, c->fde_enc, bases); advance = 1; break;
      case 0x02: next = loc + rd_u(&r, 1) * c->code_align; advance = 1; break;
      case 0x03: next = loc + rd_u(&r, 2) * c->code_align; advance = 1; break;
      case 0x04: next = loc + rd_u(&r, 4) * c->code_align; advance = 1; break;
      case 0x05: /* offset_extended */
        reg = rd_uleb(&r);
        set_rule(s, reg, R_OFFSET, scaled(rd_uleb(&r), c->data_align));
        break;
      case 0x06: restore_rule(s, &c->init, rd_uleb(&r)); break;
      case 0x07: set_rule(s, rd_uleb(&r), R_UNDEF, 0); break;
      case 0x08: set_rule(s, rd_uleb(&r), R_SAME, 0); break;
      case 0x09: /* register: saved in another register */
        reg = rd_uleb(&r);
        rd_uleb(&r);
        set_rule(s, reg, R_OTHER, 0);
        break;
      case 0x0a:
        if (depth == STACK)
          return -1;
        stack[depth++] = *s;
        break;
      case 0x0b:
        if (depth == 0)
          return -1;
        {
          /* restore_state brings back register rules and the CFA alike */
          *s = stack[--depth];
        }
        break;
      case 0x0c: /* def_cfa */
        s->cfa_reg = rd_uleb(&r);
        s->cfa_off = (int64_t)rd_uleb(&r);
        s->cfa_form = CFA_REG;
        break;
      case 0x0d: s->cfa_reg = rd_uleb(&r); s->cfa_form = CFA_REG; break;
      case 0x0e: s->cfa_off = (int64_t)rd_uleb(&r); break;
      case 0x0f: { /* def_cfa_expression */
        uint64_t len = rd_uleb(&r);
        if ((uint64_t)(r.end - r.p) < len)
          return -1;
        int64_t off;
        int th;
        if (match_plt(r.p, r.p + len, &off, &th)) {
          s->cfa_form = CFA_PLT;
          s->cfa_off = off;
          s->plt_threshold = th;
        } else {
          s->cfa_form = CFA_EXPR;
        }
        r.p += len;
        break;
      }
      case 0x10:   /* expression */
      case 0x16: { /* val_expression */
        reg = rd_uleb(&r);
        uint64_t len = rd_uleb(&r);
        if ((uint64_t)(r.end - r.p) < len)
          return -1;
        r.p += len;
        set_rule(s, reg, R_OTHER, 0);
        break;
      }
      case 0x11: /* offset_extended_sf */
        reg = rd_uleb(&r);
        set_rule(s, reg, R_OFFSET, scaled((uint64_t)rd_sleb(&r), c->data_align));
        break;
      case 0x12: /* def_cfa_sf */
        s->cfa_reg = rd_uleb(&r);
        s->cfa_off = scaled((uint64_t)rd_sleb(&r), c->data_align);
        s->cfa_form = CFA_REG;
        break;
      case 0x13: s->cfa_off = scaled((uint64_t)rd_sleb(&r), c->data_align); break;
      case 0x14: /* val_offset: the value is CFA+N, not saved at it */
        reg = rd_uleb(&r);
        rd_uleb(&r);
        set_rule(s, reg, R_OTHER, 0);
        break;
      case 0x15:
        reg = rd_uleb(&r);
        rd_sleb(&r);
        set_rule(s, reg, R_OTHER, 0);
        break;
      case 0x2e: rd_uleb(&r); break; /* GNU_args_size: nothing for the CFA */
      case 0x2f: /* GNU_negative_offset_extended */
        reg = rd_uleb(&r);
        set_rule(s, reg, R_OFFSET, scaled(0 - rd_uleb(&r), c->data_align));
        break;
      default:
        unsupported = 1;
        r.p = r.end;
        break;
      }
    }
    if (advance && fde) {
      if (next > loc && loc < fde->end) {
        if (add_raw(b, loc, s, c))
          return -1;
        fde->n = b->nraw - fde->first;
      }
      if (next > loc)
        loc = next;
    }
  }
  if (r.bad || unsupported)
    return -1;
  if (fde && loc < fde->end) {
    if (add_raw(b, loc, s, c))
      return -1;
    fde->n = b->nraw - fde->first;
  }
  return 0;
}

/* ---- sections --------------------------------------------------------------- */

struct cie_cache {
  struct cie *v;
  size_t n, cap;
};

static int parse_cie(struct cie *c, struct rd *r, const struct bases *bases)
{
  uint8_t version = (uint8_t)rd_u(r, 1);
  if (version != 1 && version != 3 && version != 4)
    return -1;
  const char *aug = (const char *)r->p;
  size_t alen = strnlen(aug, (size_t)(r->end - r->p));
  if (alen == (size_t)(r->end - r->p))
    return -1;
  r->p += alen + 1;
  if (version == 4) {
    uint8_t asz = (uint8_t)rd_u(r, 1);
    rd_u(r, 1);
    if (asz != 8)
      return -1;
  }
  c->code_align = rd_uleb(r);
  c->data_align = rd_sleb(r);
  c->ra_reg = version == 1 ? rd_u(r, 1) : rd_uleb(r);
  const uint8_t *aug_end = NULL;
  for (size_t i = 0; i < alen; i++) {
    char ch = aug[i];
    if (i == 0 && ch == 'z') {
      uint64_t len = rd_uleb(r);
      if ((uint64_t)(r->end - r->p) < len)
        return -1;
      c->has_z = 1;
      aug_end = r->p + len;
    } else if (ch == 'R') {
      c->fde_enc = (uint8_t)rd_u(r, 1);
    } else if (ch == 'P') {
      uint8_t enc = (uint8_t)rd_u(r, 1);
      rd_ptr(r, enc, bases); /* indirect (0x80): the pointer's size is the same */
    } else if (ch == 'L') {
      rd_u(r, 1);
    } else if (ch == 'S') {
      c->signal = 1;
    } else if (ch == 'B' || ch == 'G') {
      /* AArch64 pointer keys, MTE tags: nothing to read */
    } else if (!c->has_z) {
      return -1; /* "eh" and other pre-'z' forms: layout unknown */
    }
  }
  if (aug_end)
    r->p = aug_end;
  if (r->bad || c->ra_reg != REG_RA)
    return -1;
  c->insns = r->p;
  c->insns_end = r->end;
  return 0;
}

static struct cie *get_cie(struct builder *b, struct cie_cache *cc, const uint8_t *sec, size_t size,
                           uint64_t off, int eh, const struct bases *bases)
{
  for (size_t i = 0; i < cc->n; i++)
    if (cc->v[i].off == off)
      return cc->v[i].ok ? &cc->v[i] : NULL;
  if (cc->n == cc->cap) {
    size_t cap = cc->cap ? cc->cap * 2 : 16;
    struct cie *v = realloc(cc->v, cap * sizeof *v);
    if (!v)
      return b->nomem = 1, NULL;
    cc->v = v;
    cc->cap = cap;
  }
  struct cie *c = &cc->v[cc->n++];
  memset(c, 0, sizeof *c);
  c->off = off;
  if (off + 4 > size)
    return NULL;
  struct rd r = { sec + off, sec + size, 0 };
  uint64_t len = rd_u(&r, 4);
  int dw64 = len == 0xffffffffu;
  if (dw64)
    len = rd_u(&r, 8);
  if (len > (uint64_t)(r.end - r.p))
    return NULL;
  r.end = r.p + len;
  uint64_t id = eh ? rd_u(&r, 4) : rd_u(&r, dw64 ? 8 : 4);
  uint64_t want = eh ? 0 : dw64 ? UINT64_MAX : 0xffffffffu;
  if (id != want || parse_cie(c, &r, bases) != 0) {
    b->stats.bad++;
    return NULL;
  }
  /* the initial state: CFA undefined until the program says */
  memset(&c->init, 0, sizeof c->init);
  c->init.cfa_form = CFA_EXPR;
  if (run_program(b, c, NULL, c->insns, c->insns_end, bases, &c->init) != 0) {
    b->stats.bad++;
    return NULL;
  }
  c->ok = 1;
  return c;
}

/* Reads every FDE of one section (eh: .eh_frame, else .debug_frame). */
static int read_section(struct builder *b, const uint8_t *sec, size_t size, uint64_t sec_addr, int eh,
                        const struct bases *base0)
{
  struct bases bases = *base0;
  bases.sec_addr = sec_addr;
  bases.sec_start = sec;
  struct cie_cache cc = { 0 };
  size_t off = 0;
  while (off + 4 <= size) {
    struct rd r = { sec + off, sec + size, 0 };
    uint64_t len = rd_u(&r, 4);
    if (len == 0) {
      if (eh)
        break; /* the terminator */
      off += 4;
      continue;
    }
    int dw64 = len == 0xffffffffu;
    if (dw64)
      len = rd_u(&r, 8);
    if (r.bad || len > (uint64_t)(r.end - r.p))
      break;
    const uint8_t *rec_end = r.p + len;
    size_t next = (size_t)(rec_end - sec);
    r.end = rec_end;
    const uint8_t *id_at = r.p;
    uint64_t id = eh ? rd_u(&r, 4) : rd_u(&r, dw64 ? 8 : 4);
    int is_cie = eh ? id == 0 : id == (dw64 ? UINT64_MAX : 0xffffffffu);
    if (!is_cie) {
      uint64_t cie_off = eh ? (uint64_t)(id_at - sec) - id : id;
      b->stats.fdes++;
      if (!eh)
        b->stats.fdes_debug++;
      struct cie *c = cie_off < size ? get_cie(b, &cc, sec, size, cie_off, eh, &bases) : NULL;
      if (b->nomem)
        break;
      if (!c) {
        b->stats.bad++;
        off = next;
        continue;
      }
      uint64_t start, range;
      if (eh) {
        start = rd_ptr(&r, c->fde_enc, &bases);
        range = rd_ptr(&r, c->fde_enc & 0x0f, &bases);
        if (c->has_z) {
          uint64_t alen = rd_uleb(&r);
          if ((uint64_t)(r.end - r.p) < alen)
            r.bad = 1;
          else
            r.p += alen;
        }
      } else {
        start = rd_u(&r, 8);
        range = rd_u(&r, 8);
      }
      if (r.bad) {
        b->stats.bad++;
        off = next;
        continue;
      }
      if (start + range < start) {
        b->stats.bad++;
        off = next;
        continue;
      }
      if (range == 0 || start == 0) { /* discarded (a start of 0: unrelocated or removed) */
        off = next;
        continue;
      }
      if (b->nfdes == b->capfdes) {
        size_t cap = b->capfdes ? b->capfdes * 2 : 1024;
        struct fde_rows *f = realloc(b->fdes, cap * sizeof *f);
        if (!f) {
          b->nomem = 1;
          break;
        }
        b->fdes = f;
        b->capfdes = cap;
      }
      struct fde_rows *f = &b->fdes[b->nfdes++];
      f->start = start;
      f->end = start + range;
      f->first = b->nraw;
      f->n = 0;
      f->order = (uint32_t)(b->nfdes - 1);
      struct state s = c->init;
      if (run_program(b, c, f, r.p, r.end, &bases, &s) != 0) {
        if (b->nomem)
          break;
        /* an instruction it cannot read: the whole FDE is unsupported */
        b->stats.bad++;
        struct state u = c->init;
        u.cfa_form = CFA_EXPR;
        b->nraw = f->first;
        f->n = 0;
        if (add_raw(b, f->start, &u, c) != 0)
          break;
        f->n = 1;
      }
    }
    off = next;
  }
  free(cc.v);
  return b->nomem ? -ENOMEM : 0;
}

static int fde_cmp(const void *a, const void *b)
{
  const struct fde_rows *x = a, *y = b;
  if (x->start != y->start)
    return x->start < y->start ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int same_row(const struct pm_cfi_row *a, const struct pm_cfi_row *b)
{
  return a->cfa == b->cfa && a->rbp == b->rbp && a->rbp_off == b->rbp_off && a->cfa_off == b->cfa_off;
}

/* FDEs in pc order into the final table: gaps marked NONE, equal
 * neighbours merged, an FDE overlapping an earlier one dropped. */
static int build_table(struct builder *b, struct pm_cfi_table *t)
{
  qsort(b->fdes, b->nfdes, sizeof *b->fdes, fde_cmp);
  size_t cap = b->nraw + b->nfdes + 1;
  t->rows = malloc(cap * sizeof *t->rows);
  if (!t->rows)
    return -ENOMEM;
  t->n = 0;
  t->base = b->nfdes ? b->fdes[0].start : 0;
  uint64_t last_end = t->base;
  struct pm_cfi_row none = { 0 };
  for (size_t i = 0; i < b->nfdes; i++) {
    const struct fde_rows *f = &b->fdes[i];
    if (f->start < last_end) {
      b->stats.overlapping++;
      continue;
    }
    if (f->end - t->base > UINT32_MAX)
      return -EFBIG;
    if (f->start > last_end) {
      none.pc = (uint32_t)(last_end - t->base);
      if (!t->n || !same_row(&t->rows[t->n - 1], &none))
        t->rows[t->n++] = none;
    }
    for (size_t k = 0; k < f->n; k++) {
      struct pm_cfi_row row = b->raw[f->first + k].row;
      row.pc = (uint32_t)(b->raw[f->first + k].pc - t->base);
      if (t->n && same_row(&t->rows[t->n - 1], &row))
        continue;
      t->rows[t->n++] = row;
    }
    last_end = f->end;
  }
  if (b->nfdes) {
    none.pc = (uint32_t)(last_end - t->base);
    t->rows[t->n++] = none;
  }
  for (size_t i = 0; i < t->n; i++) {
    b->stats.kinds[t->rows[i].cfa]++;
    if (t->rows[i].rbp == PM_CFI_RBP_LOST)
      b->stats.rbp_lost++;
  }
  return 0;
}

/* ---- ELF -------------------------------------------------------------------- */

static void read_build_id(Elf_Data *data, char *out)
{
  size_t off = 0, name_off, desc_off;
  GElf_Nhdr nh;
  while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
    if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
        memcmp((char *)data->d_buf + name_off, "GNU", 4) == 0 && nh.n_descsz <= 32) {
      const unsigned char *d = (const unsigned char *)data->d_buf + desc_off;
      for (size_t i = 0; i < nh.n_descsz; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
      return;
    }
  }
}

static int open_elf(const char *path, int *fd, Elf **elf)
{
  *elf = NULL;
  if (elf_version(EV_CURRENT) == EV_NONE)
    return ELIBBAD;
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0)
    return errno;
  *elf = elf_begin(*fd, ELF_C_READ_MMAP, NULL);
  if (!*elf || elf_kind(*elf) != ELF_K_ELF)
    return ENOEXEC;
  return 0;
}

static void close_elf(int fd, Elf *elf)
{
  if (elf)
    elf_end(elf);
  if (fd >= 0)
    close(fd);
}

int pm_cfi_build_id(const char *path, char *buf)
{
  int fd = -1, err;
  Elf *elf;
  buf[0] = 0;
  if ((err = open_elf(path, &fd, &elf)) == 0) {
    Elf_Scn *scn = NULL;
    GElf_Shdr sh;
    while (!buf[0] && (scn = elf_nextscn(elf, scn)) != NULL)
      if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_NOTE) {
        Elf_Data *d = elf_getdata(scn, NULL);
        if (d)
          read_build_id(d, buf);
      }
    err = buf[0] ? 0 : ENOMSG;
  }
  close_elf(fd, elf);
  return err;
}

int pm_cfi_compile_frames(const struct pm_cfi_input *in, struct pm_cfi_table **out)
{
  struct builder b = { 0 };
  struct bases bases = { 0 };
  int err = 0;
  *out = NULL;
  struct pm_cfi_table *t = calloc(1, sizeof *t);
  if (!t)
    return ENOMEM;
  bases.text = in->text_addr;
  bases.data = in->got_addr;
  /* .eh_frame first: where both describe a pc, it is the one the program
   * itself unwinds with */
  if ((in->eh_size && read_section(&b, in->eh_frame, in->eh_size, in->eh_addr, 1, &bases) != 0) ||
      (in->debug_size && read_section(&b, in->debug_frame, in->debug_size, 0, 0, &bases) != 0)) {
    err = ENOMEM;
    goto cleanup;
  }
  if (b.nfdes == 0) {
    err = ENODATA;
    goto cleanup;
  }
  int rc = build_table(&b, t);
  if (rc) {
    err = -rc;
    goto cleanup;
  }
  t->stats = b.stats;
cleanup:
  free(b.raw);
  free(b.fdes);
  if (err) {
    pm_cfi_free(t);
    return err;
  }
  *out = t;
  return 0;
}

int pm_cfi_compile(const char *path, struct pm_cfi_table **out)
{
  int fd = -1, err;
  Elf *elf = NULL;
  struct pm_cfi_input in = { 0 };
  char build_id[65] = "";
  *out = NULL;
  if ((err = open_elf(path, &fd, &elf)) != 0)
    goto cleanup;
  GElf_Ehdr eh;
  if (!gelf_getehdr(elf, &eh) || eh.e_machine != EM_X86_64 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
    err = ENOEXEC;
    goto cleanup;
  }
  size_t shstrndx;
  if (elf_getshdrstrndx(elf, &shstrndx) != 0)
    shstrndx = 0;
  Elf_Scn *scn = NULL;
  GElf_Shdr sh;
  while ((scn = elf_nextscn(elf, scn)) != NULL) {
    if (!gelf_getshdr(scn, &sh))
      continue;
    const char *name = shstrndx ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
    if (sh.sh_type == SHT_NOTE && !build_id[0]) {
      Elf_Data *d = elf_getdata(scn, NULL);
      if (d)
        read_build_id(d, build_id);
    }
    if (!name)
      continue;
    int is_eh = strcmp(name, ".eh_frame") == 0, is_dbg = strcmp(name, ".debug_frame") == 0;
    if ((is_eh || is_dbg) && sh.sh_type == SHT_PROGBITS) {
      if ((sh.sh_flags & SHF_COMPRESSED) && elf_compress(scn, 0, 0) < 0)
        continue;
      Elf_Data *d = elf_getdata(scn, NULL);
      if (!d || !d->d_buf)
        continue;
      if (is_eh) {
        in.eh_frame = d->d_buf;
        in.eh_size = d->d_size;
        in.eh_addr = sh.sh_addr;
      } else {
        in.debug_frame = d->d_buf;
        in.debug_size = d->d_size;
      }
    } else if (strcmp(name, ".text") == 0) {
      in.text_addr = sh.sh_addr;
    } else if (strcmp(name, ".got") == 0) {
      in.got_addr = sh.sh_addr;
    }
  }
  err = pm_cfi_compile_frames(&in, out);
  if (!err)
    memcpy((*out)->build_id, build_id, sizeof build_id);
cleanup:
  close_elf(fd, elf);
  return err;
}

void pm_cfi_free(struct pm_cfi_table *t)
{
  if (!t)
    return;
  free(t->rows);
  free(t);
}

const struct pm_cfi_row *pm_cfi_lookup(const struct pm_cfi_table *t, uint64_t pc)
{
  if (t->n == 0 || pc < t->base)
    return NULL;
  if (pc - t->base > UINT32_MAX)
    return &t->rows[t->n - 1]; /* past the last FDE: the closing NONE row */
  uint32_t off = (uint32_t)(pc - t->base);
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->rows[mid].pc <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo ? &t->rows[lo - 1] : NULL;
}

const char *pm_cfi_kind_name(int kind)
{
  static const char *names[PM_CFI_KINDS] = { "none", "rsp", "rbp", "plt", "signal", "end", "unsupported" };
  return kind >= 0 && kind < PM_CFI_KINDS ? names[kind] : "?";
}

/* ---- on disk ---------------------------------------------------------------- */

/* The saved form: this header, then n rows as in memory (little-endian
 * x86-64 only, like the tables themselves). */
struct file_header {
  char magic[8];
  uint32_t version;
  uint32_t row_size;
  uint64_t n;
  uint64_t base;
  char build_id[72];
  struct pm_cfi_stats stats;
};

size_t pm_cfi_size(const struct pm_cfi_table *t)
{
  return sizeof(struct file_header) + t->n * sizeof *t->rows;
}

int pm_cfi_save(const struct pm_cfi_table *t, const char *path)
{
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32);
  if (!tmp)
    return ENOMEM;
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
  int err = 0;
  FILE *f = fopen(tmp, "wbe");
  if (!f) {
    err = errno;
    free(tmp);
    return err;
  }
  struct file_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, CFI_MAGIC, 8);
  h.version = CFI_VERSION;
  h.row_size = sizeof *t->rows;
  h.n = t->n;
  h.base = t->base;
  memcpy(h.build_id, t->build_id, strlen(t->build_id));
  h.stats = t->stats;
  if (fwrite(&h, sizeof h, 1, f) != 1 || (t->n && fwrite(t->rows, sizeof *t->rows, t->n, f) != t->n))
    err = errno ? errno : EIO;
  if (fflush(f) != 0 && !err)
    err = errno;
  if (fclose(f) != 0 && !err)
    err = errno;
  if (!err && rename(tmp, path) != 0)
    err = errno;
  if (err)
    unlink(tmp);
  free(tmp);
  return err;
}

int pm_cfi_load(const char *path, const char *build_id, struct pm_cfi_table **out)
{
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno;
  struct file_header h;
  struct stat st;
  int err = 0;
  struct pm_cfi_table *t = NULL;
  if (fstat(fd, &st) != 0 || read(fd, &h, sizeof h) != (ssize_t)sizeof h || memcmp(h.magic, CFI_MAGIC, 8) != 0 ||
      h.version != CFI_VERSION || h.row_size != sizeof(struct pm_cfi_row) || h.build_id[sizeof h.build_id - 1] ||
      (uint64_t)st.st_size < sizeof h || (st.st_size - sizeof h) % sizeof(struct pm_cfi_row) != 0 ||
      h.n != (st.st_size - sizeof h) / sizeof(struct pm_cfi_row)) {
    err = EBADMSG;
    goto cleanup;
  }
  if (build_id && strcmp(build_id, h.build_id) != 0) {
    err = ESTALE;
    goto cleanup;
  }
  t = calloc(1, sizeof *t);
  if (!t || !(t->rows = malloc(h.n ? h.n * sizeof *t->rows : 1))) {
    err = ENOMEM;
    goto cleanup;
  }
  size_t want = h.n * sizeof *t->rows;
  if (want && read(fd, t->rows, want) != (ssize_t)want) {
    err = EBADMSG;
    goto cleanup;
  }
  /* rows the walker can trust, or none: a damaged file is compiled again */
  for (uint64_t i = 0; i < h.n; i++) {
    const struct pm_cfi_row *r = &t->rows[i];
    if (r->cfa >= PM_CFI_KINDS || r->rbp > PM_CFI_RBP_LOST || (i && r->pc <= t->rows[i - 1].pc) ||
        (i == h.n - 1 && r->cfa != PM_CFI_NONE)) {
      err = EBADMSG;
      goto cleanup;
    }
  }
  t->n = h.n;
  t->base = h.base;
  memcpy(t->build_id, h.build_id, sizeof t->build_id - 1);
  t->stats = h.stats;
cleanup:
  close(fd);
  if (err) {
    pm_cfi_free(t);
    return err;
  }
  *out = t;
  return 0;
}

/* ---- Lua -------------------------------------------------------------------- */

static struct pm_cfi_table *cfi_check(lua_State *L, int idx)
{
  struct pm_cfi_table **ud = luaL_checkudata(L, idx, PM_META_CFI);
  luaL_argcheck(L, *ud != NULL, idx, "cfi table is closed");
  return *ud;
}

static void push_table(lua_State *L, struct pm_cfi_table *t)
{
  struct pm_cfi_table **ud = lua_newuserdata(L, sizeof *ud);
  *ud = t;
  luaL_getmetatable(L, PM_META_CFI);
  lua_setmetatable(L, -2);
}

static int push_error(lua_State *L, const char *what, const char *path, int err)
{
  lua_pushnil(L);
  const char *why = err == ENOEXEC ? "not an x86-64 ELF file"
                    : err == ENODATA ? "no call-frame information (.eh_frame, .debug_frame)"
                    : err == EFBIG ? "code spans more than 4 GiB"
                    : err == ELIBBAD ? "libelf version mismatch"
                    : err == ESTALE ? "saved for another build-id"
                    : err == EBADMSG ? "not a CFI table of this version"
                    : err == ENOMSG ? "no GNU build-id note"
                    : strerror(err);
  lua_pushfstring(L, "cfi: %s %s: %s", what, path, why);
  lua_pushinteger(L, err);
  return 3;
}

/// compile(path) -> table | nil, err, errno
static int pm_cfi_l_compile(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  struct pm_cfi_table *t;
  int err = pm_cfi_compile(path, &t);
  if (err)
    return push_error(L, "compile", path, err);
  push_table(L, t);
  return 1;
}

/// load(path [, build_id]) -> table | nil, err, errno (ESTALE: another
/// build-id; EBADMSG: not a table of this version; ENOENT)
static int pm_cfi_l_load(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  const char *bid = luaL_optstring(L, 2, NULL);
  struct pm_cfi_table *t;
  int err = pm_cfi_load(path, bid, &t);
  if (err)
    return push_error(L, "load", path, err);
  push_table(L, t);
  return 1;
}

/// build_id(path) -> hex string | nil, err, errno
static int pm_cfi_l_build_id(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  char bid[65];
  int err = pm_cfi_build_id(path, bid);
  if (err)
    return push_error(L, "build-id of", path, err);
  lua_pushstring(L, bid);
  return 1;
}

/// loads(path) -> {{offset, vaddr, size, exec}, ...}: the object's PT_LOAD
/// segments, what turns a mapping's file offset into the table's addresses
static int pm_cfi_l_loads(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int fd = -1, err;
  Elf *elf;
  size_t n = 0;
  if ((err = open_elf(path, &fd, &elf)) == 0 && elf_getphdrnum(elf, &n) != 0)
    err = ENOEXEC;
  if (err) {
    close_elf(fd, elf);
    return push_error(L, "segments of", path, err);
  }
  lua_createtable(L, 4, 0);
  int k = 0;
  for (size_t i = 0; i < n; i++) {
    GElf_Phdr ph;
    if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
      continue;
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, (lua_Number)ph.p_offset);
    lua_setfield(L, -2, "offset");
    lua_pushnumber(L, (lua_Number)ph.p_vaddr);
    lua_setfield(L, -2, "vaddr");
    lua_pushnumber(L, (lua_Number)(ph.p_memsz > ph.p_filesz ? ph.p_memsz : ph.p_filesz));
    lua_setfield(L, -2, "size");
    lua_pushboolean(L, (ph.p_flags & PF_X) != 0);
    lua_setfield(L, -2, "exec");
    lua_rawseti(L, -2, ++k);
  }
  close_elf(fd, elf);
  return 1;
}

/// t:save(path) -> true | nil, err, errno (written to a temp file, renamed)
static int cfi_save(lua_State *L)
{
  struct pm_cfi_table *t = cfi_check(L, 1);
  const char *path = luaL_checkstring(L, 2);
  int err = pm_cfi_save(t, path);
  if (err)
    return push_error(L, "save", path, err);
  lua_pushboolean(L, 1);
  return 1;
}

static void set_num(lua_State *L, const char *k, double v)
{
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/// t:info() -> {rows, bytes, base, build_id, fdes, fdes_debug, overlapping,
/// bad, rbp_lost, kinds = {rsp=, rbp=, plt=, signal=, end=, unsupported=, none=}}
static int cfi_info(lua_State *L)
{
  struct pm_cfi_table *t = cfi_check(L, 1);
  lua_createtable(L, 0, 10);
  set_num(L, "rows", (double)t->n);
  set_num(L, "bytes", (double)pm_cfi_size(t));
  set_num(L, "base", (double)t->base);
  lua_pushstring(L, t->build_id);
  lua_setfield(L, -2, "build_id");
  set_num(L, "fdes", t->stats.fdes);
  set_num(L, "fdes_debug", t->stats.fdes_debug);
  set_num(L, "overlapping", t->stats.overlapping);
  set_num(L, "bad", t->stats.bad);
  set_num(L, "rbp_lost", t->stats.rbp_lost);
  lua_createtable(L, 0, PM_CFI_KINDS); // [info, kinds]
  for (int k = 0; k < PM_CFI_KINDS; k++)
    set_num(L, pm_cfi_kind_name(k), t->stats.kinds[k]);
  lua_setfield(L, -2, "kinds"); // [info]
  return 1;
}

/// t:lookup(pc) -> {pc, cfa = kind name, cfa_offset, rbp = "same"|"cfa"|"lost",
/// rbp_offset, plt_threshold} | nil (before the table). pc: link-time address.
static int cfi_lookup(lua_State *L)
{
  struct pm_cfi_table *t = cfi_check(L, 1);
  lua_Number pc = luaL_checknumber(L, 2);
  const struct pm_cfi_row *r = pc < 0 ? NULL : pm_cfi_lookup(t, (uint64_t)pc);
  if (!r) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 6);
  set_num(L, "pc", (double)(t->base + r->pc));
  lua_pushstring(L, pm_cfi_kind_name(r->cfa));
  lua_setfield(L, -2, "cfa");
  set_num(L, "cfa_offset", r->cfa_off);
  if (r->cfa == PM_CFI_PLT) {
    set_num(L, "plt_threshold", r->rbp_off);
  } else {
    lua_pushstring(L, r->rbp == PM_CFI_RBP_CFA ? "cfa" : r->rbp == PM_CFI_RBP_LOST ? "lost" : "same");
    lua_setfield(L, -2, "rbp");
    if (r->rbp == PM_CFI_RBP_CFA)
      set_num(L, "rbp_offset", r->rbp_off);
  }
  return 1;
}

/// t:rows() -> the rows as packed bytes (struct pm_cfi_row, 12 bytes each),
/// what a BPF map is filled from
static int cfi_rows(lua_State *L)
{
  struct pm_cfi_table *t = cfi_check(L, 1);
  lua_pushlstring(L, (const char *)t->rows, t->n * sizeof *t->rows);
  return 1;
}

static int cfi_close(lua_State *L)
{
  struct pm_cfi_table **ud = luaL_checkudata(L, 1, PM_META_CFI);
  if (*ud) {
    pm_cfi_free(*ud);
    *ud = NULL;
  }
  return 0;
}

static int cfi_tostring(lua_State *L)
{
  struct pm_cfi_table **ud = luaL_checkudata(L, 1, PM_META_CFI);
  if (*ud)
    lua_pushfstring(L, "<" PM_META_CFI " %s, %d rows>", (*ud)->build_id[0] ? (*ud)->build_id : "no build-id",
                    (int)(*ud)->n);
  else
    lua_pushstring(L, "<" PM_META_CFI " closed>");
  return 1;
}

static const luaL_Reg cfi_methods[] = {
  { "info", cfi_info },
  { "lookup", cfi_lookup },
  { "rows", cfi_rows },
  { "save", cfi_save },
  { "close", cfi_close },
  { "__gc", cfi_close },
  { "__tostring", cfi_tostring },
  { NULL, NULL },
};

static const luaL_Reg pm_cfi_funcs[] = {
  { "compile", pm_cfi_l_compile },
  { "load", pm_cfi_l_load },
  { "build_id", pm_cfi_l_build_id },
  { "loads", pm_cfi_l_loads },
  { NULL, NULL },
};

int luaopen_pm_cfi(lua_State *L)
{
  pm_build_meta(L, PM_META_CFI, cfi_methods);
  lua_newtable(L);
  luaL_register(L, NULL, pm_cfi_funcs);
  lua_pushinteger(L, (lua_Integer)sizeof(struct pm_cfi_row));
  lua_setfield(L, -2, "row_size");
  return 1;
}
