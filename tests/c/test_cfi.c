/* Unit tests of runtime/cfi.c, the CFI compiler: programs this test
 * compiles (-O2 -fomit-frame-pointer with asynchronous unwind tables, frame
 * pointers, .debug_frame only, a shared library; with a signal handler, a
 * hand-written signal trampoline, alloca and stack realignment) and
 * Debian's libc.so.6, each checked row by row against
 * `readelf --debug-dump=frames-interp` (and `--debug-dump=frames` for the
 * text of the CFA expressions); then saving and loading tables. */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfi.h"
#include "check.h"

static char dir[] = "/tmp/pm-test-cfi-XXXXXX";
static int have_readelf, built;
static const char LIBC[] = "/lib/x86_64-linux-gnu/libc.so.6";

/* Functions of the shapes compilers give different CFI: a leaf, a deep
 * recursion, a large frame, many callee-saved registers, alloca (CFA on
 * rbp even without frame pointers), an over-aligned local next to alloca
 * (the stack is realigned through r10: CFA r10+0, then an expression), a signal handler, a qsort
 * callback, and a signal trampoline written the way glibc's __restore_rt
 * is (CIE augmentation "S", CFA = *(rsp + 160)). */
static const char PROG[] =
  "#include <alloca.h>\n"
  "#include <signal.h>\n"
  "#include <stdio.h>\n"
  "#include <stdlib.h>\n"
  "#include <string.h>\n"
  "static volatile int hits;\n"
  "static void on_signal(int s) { hits += s; }\n"
  "__attribute__((noinline)) int pm_leaf(int x) { return x * 7 + 1; }\n"
  "__attribute__((noinline)) int pm_deep(int n) { return n <= 0 ? pm_leaf(n) : pm_deep(n - 1) + n; }\n"
  "__attribute__((noinline)) int pm_big(int n) { volatile char b[5000]; memset((char *)b, n, sizeof b);"
  " return b[n % 5000]; }\n"
  "__attribute__((noinline)) long pm_many(long a, long b, long c, long d, long e, long f) {"
  " long s = 0; for (long i = 0; i < a; i++) s += pm_leaf((int)(i * b + c)) * d + e * pm_leaf((int)f);"
  " return s + pm_deep((int)(a % 5)); }\n"
  "__attribute__((noinline)) int pm_alloca(int n) { char *p = alloca(n + 16); memset(p, 1, n + 16);"
  " return pm_leaf(p[n]); }\n"
  "__attribute__((noinline)) int pm_use(char *p) { __asm__ volatile(\"\" : : \"r\"(p) : \"memory\"); return p[1]; }\n"
  "__attribute__((noinline)) int pm_aligned(int n) { char v[64] __attribute__((aligned(64)));"
  " char *q = alloca(n + 8); memset(q, 2, n + 8); memset(v, n, sizeof v); return pm_use(v) + pm_use(q) + v[3]; }\n"
  "static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }\n"
  "__asm__(\".text\\n.globl pm_sigtramp\\n.type pm_sigtramp,@function\\n"
  ".cfi_startproc simple\\n.cfi_signal_frame\\n"
  ".cfi_escape 0x0f,0x04,0x77,0xa0,0x01,0x06\\n"
  "nop\\npm_sigtramp:\\nmov $15, %rax\\nsyscall\\n.cfi_endproc\\n"
  ".size pm_sigtramp,.-pm_sigtramp\\n\");\n"
  "int main(int argc, char **argv) {\n"
  "  (void)argv; int v[32]; for (int i = 0; i < 32; i++) v[i] = rand();\n"
  "  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_signal;\n"
  "  sigaction(SIGUSR1, &sa, NULL); raise(SIGUSR1);\n"
  "  qsort(v, 32, sizeof v[0], cmp);\n"
  "  printf(\"%d %d %ld %d %d %d\\n\", v[0], pm_big(argc), pm_many(argc, 2, 3, 4, 5, 6),"
  " pm_alloca(argc), pm_aligned(argc), hits);\n"
  "  return 0;\n"
  "}\n";

static const char LIB[] =
  "#include <stdio.h>\n"
  "__attribute__((noinline)) int pm_lib_leaf(int x) { return x + 3; }\n"
  "int pm_lib_entry(int n) { int s = 0; for (int i = 0; i < n; i++) s += pm_lib_leaf(i); printf(\"%d\\n\", s);"
  " return s; }\n";

/* exceptions: CIEs "zPLR" (a personality routine and LSDA pointers) */
static const char CXX[] =
  "#include <stdexcept>\n"
  "#include <cstdio>\n"
  "__attribute__((noinline)) int pm_throw(int n) { if (n > 2) throw std::runtime_error(\"n\"); return n * 3; }\n"
  "__attribute__((noinline)) int pm_catch(int n) { try { return pm_throw(n); } catch (const std::exception &e) {"
  " return -1; } }\n"
  "int main(int argc, char **) { std::printf(\"%d\\n\", pm_catch(argc)); return 0; }\n";

/* writes text to file in the test directory; 0 or -1 */
static int write_source(const char *file, const char *text)
{
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  int ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok ? 0 : -1;
}

static int build_programs(void)
{
  if (!mkdtemp(dir) || write_source("prog.c", PROG) || write_source("lib.c", LIB) || write_source("cxx.cc", CXX))
    return -1;
  if (sh("cd %s && cc -O2 -fomit-frame-pointer -fasynchronous-unwind-tables -o prog-nofp prog.c", dir) ||
      sh("cd %s && cc -O2 -fno-omit-frame-pointer -fasynchronous-unwind-tables -o prog-fp prog.c", dir) ||
      sh("cd %s && cc -O0 -g -fno-asynchronous-unwind-tables -fno-unwind-tables -o prog-debug prog.c", dir) ||
      sh("cd %s && cc -O2 -fomit-frame-pointer -shared -fPIC -o lib.so lib.c", dir) ||
      sh("cd %s && c++ -O2 -fomit-frame-pointer -o cxx cxx.cc", dir) ||
      sh("cd %s && objcopy --remove-section .eh_frame --remove-section .eh_frame_hdr prog-nofp prog-nocfi", dir) ||
      sh("cd %s && printf 'not an elf file\\n' > text", dir))
    return -1;
  return 0;
}

static void path_in_dir(char *buf, size_t len, const char *file)
{
  snprintf(buf, len, "%s/%s", dir, file);
}

/* ---- readelf's view ------------------------------------------------------ */

struct xrow {
  uint64_t loc;
  char cfa[24], rbp[16], ra[16];
};

struct xfde {
  uint64_t off, cie, start, end;
  int debug;  /* from .debug_frame */
  int plt;    /* its CFA expression is the PLT form */
  int nrows;
  struct xrow *rows;
};

struct xcie {
  uint64_t off;
  int debug, signal, personality; /* augmentation S, P */
  struct xrow row; /* its initial rules */
};

struct xframes {
  struct xfde *fdes;
  int n, cap;
  struct xcie *cies;
  int ncies, capcies;
};

static void xframes_free(struct xframes *x)
{
  for (int i = 0; i < x->n; i++)
    free(x->fdes[i].rows);
  free(x->fdes);
  free(x->cies);
  memset(x, 0, sizeof *x);
}

static const char PLT_EXPR[] = "DW_CFA_def_cfa_expression (DW_OP_breg7 (rsp): 8; DW_OP_breg16 (rip): 0; "
                               "DW_OP_lit15; DW_OP_and; DW_OP_lit11; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus)";

/* Reads both of readelf's dumps of path. 0, or -1 when readelf failed. */
static int read_frames(const char *path, struct xframes *x)
{
  char cmd[512], line[4096];
  memset(x, 0, sizeof *x);
  snprintf(cmd, sizeof cmd, "readelf -wF %s 2>/dev/null", path);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  int debug = 0, ncols = 0, col_rbp = -1, col_ra = -1;
  struct xfde *cur = NULL;
  struct xcie *cur_cie = NULL;
  while (fgets(line, sizeof line, p)) {
    unsigned long long off, len, id, cie, a, b;
    char aug[64];
    if (strncmp(line, "Contents of the ", 16) == 0) {
      debug = strstr(line, ".debug_frame") != NULL;
      cur = NULL;
      cur_cie = NULL;
    } else if (sscanf(line, "%llx %llx %llx FDE cie=%llx pc=%llx..%llx", &off, &len, &id, &cie, &a, &b) == 6) {
      if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 256;
        x->fdes = realloc(x->fdes, (size_t)x->cap * sizeof *x->fdes);
      }
      cur = &x->fdes[x->n++];
      memset(cur, 0, sizeof *cur);
      cur->off = off;
      cur->cie = cie;
      cur->start = a;
      cur->end = b;
      cur->debug = debug;
      cur_cie = NULL;
    } else if (sscanf(line, "%llx %llx %llx CIE \"%63[^\"]\"", &off, &len, &id, aug) >= 3 && strstr(line, " CIE ")) {
      if (x->ncies == x->capcies) {
        x->capcies = x->capcies ? x->capcies * 2 : 16;
        x->cies = realloc(x->cies, (size_t)x->capcies * sizeof *x->cies);
      }
      cur_cie = &x->cies[x->ncies++];
      memset(cur_cie, 0, sizeof *cur_cie);
      cur_cie->off = off;
      cur_cie->debug = debug;
      if (sscanf(line, "%*x %*x %*x CIE \"%63[^\"]\"", aug) == 1) {
        cur_cie->signal = strchr(aug, 'S') != NULL;
        cur_cie->personality = strchr(aug, 'P') != NULL;
      }
      cur = NULL;
    } else if (strstr(line, " LOC ") || strncmp(line, "   LOC", 6) == 0) {
      /* the column header: which columns are rbp and ra */
      char *save, *tok = strtok_r(line, " \t\n", &save);
      ncols = 0;
      col_rbp = col_ra = -1;
      while (tok) {
        if (strcmp(tok, "rbp") == 0)
          col_rbp = ncols;
        if (strcmp(tok, "ra") == 0)
          col_ra = ncols;
        ncols++;
        tok = strtok_r(NULL, " \t\n", &save);
      }
    } else if ((cur || cur_cie) && sscanf(line, "%llx", &a) == 1 && strlen(line) > 20 && line[16] == ' ') {
      struct xrow r;
      memset(&r, 0, sizeof r);
      r.loc = a;
      char *save, *tok = strtok_r(line, " \t\n", &save);
      for (int c = 0; tok; c++, tok = strtok_r(NULL, " \t\n", &save)) {
        if (tok[0] == '(') { /* "r10 (r10)": a register's name, same column */
          c--;
          continue;
        }
        if (c == 1)
          snprintf(r.cfa, sizeof r.cfa, "%s", tok);
        else if (c == col_rbp)
          snprintf(r.rbp, sizeof r.rbp, "%s", tok);
        else if (c == col_ra)
          snprintf(r.ra, sizeof r.ra, "%s", tok);
      }
      if (cur) {
        cur->rows = realloc(cur->rows, (size_t)(cur->nrows + 1) * sizeof *cur->rows);
        cur->rows[cur->nrows++] = r;
      } else {
        cur_cie->row = r;
      }
    }
  }
  /* readelf -w exits 1 on objects without .debug_info: judge by what it printed */
  pclose(p);
  if (x->n == 0)
    return -1;
  /* the raw dump: which FDEs define their CFA by the PLT expression */
  snprintf(cmd, sizeof cmd, "readelf -wf %s 2>/dev/null", path);
  p = popen(cmd, "r");
  if (!p)
    return -1;
  cur = NULL;
  debug = 0;
  int i = 0;
  while (fgets(line, sizeof line, p)) {
    unsigned long long off, len, id, cie;
    if (strncmp(line, "Contents of the ", 16) == 0) {
      debug = strstr(line, ".debug_frame") != NULL;
    } else if (sscanf(line, "%llx %llx %llx FDE cie=%llx", &off, &len, &id, &cie) == 4) {
      cur = NULL;
      for (; i < x->n; i++)
        if (x->fdes[i].off == off && x->fdes[i].debug == debug) {
          cur = &x->fdes[i];
          break;
        }
    } else if (cur && strstr(line, "DW_CFA_def_cfa_expression")) {
      cur->plt = strstr(line, PLT_EXPR) != NULL;
    }
  }
  pclose(p);
  return 0;
}

static const struct xcie *find_cie(const struct xframes *x, const struct xfde *f)
{
  for (int i = 0; i < x->ncies; i++)
    if (x->cies[i].off == f->cie && x->cies[i].debug == f->debug)
      return &x->cies[i];
  return NULL;
}

/* The row readelf's rules mean, in the table's terms. */
static struct pm_cfi_row expected(const struct xrow *r, const struct xfde *f, const struct xcie *c)
{
  struct pm_cfi_row e = { 0 };
  long long v;
  char reg[8];
  if (c && c->signal) {
    e.cfa = PM_CFI_SIGNAL;
    return e;
  }
  if (strcmp(r->ra, "u") == 0) {
    e.cfa = PM_CFI_END;
    return e;
  }
  if (strcmp(r->ra, "c-8") != 0) {
    e.cfa = PM_CFI_UNSUPPORTED;
  } else if (strcmp(r->cfa, "exp") == 0) {
    e.cfa = f->plt ? PM_CFI_PLT : PM_CFI_UNSUPPORTED;
    if (f->plt) {
      e.cfa_off = 8;
      e.rbp_off = 11;
      return e;
    }
  } else if (sscanf(r->cfa, "%7[a-z0-9]+%lld", reg, &v) == 2 && (!strcmp(reg, "rsp") || !strcmp(reg, "rbp"))) {
    e.cfa = strcmp(reg, "rsp") == 0 ? PM_CFI_RSP : PM_CFI_RBP;
    e.cfa_off = (int32_t)v;
  } else {
    e.cfa = PM_CFI_UNSUPPORTED;
  }
  if (e.cfa == PM_CFI_UNSUPPORTED)
    return e;
  if (!r->rbp[0] || strcmp(r->rbp, "u") == 0 || strcmp(r->rbp, "s") == 0) {
    e.rbp = PM_CFI_RBP_SAME;
  } else if (sscanf(r->rbp, "c%lld", &v) == 1) {
    e.rbp = PM_CFI_RBP_CFA;
    e.rbp_off = (int16_t)v;
  } else {
    e.rbp = PM_CFI_RBP_LOST;
  }
  return e;
}

static int row_eq(const struct pm_cfi_row *a, const struct pm_cfi_row *b)
{
  return a->cfa == b->cfa && a->cfa_off == b->cfa_off && a->rbp == b->rbp && a->rbp_off == b->rbp_off;
}

struct tally {
  int fdes, rows, checked, wrong, skipped_overlap;
  int kinds[PM_CFI_KINDS];
  int exp_fdes, plt_fdes, signal_fdes, personality_fdes;
};

static int xfde_cmp(const void *a, const void *b)
{
  const struct xfde *x = a, *y = b;
  if (x->start != y->start)
    return x->start < y->start ? -1 : 1;
  if (x->debug != y->debug)
    return x->debug - y->debug;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* Every row of every FDE readelf shows, looked up at its first and last
 * byte in the compiled table. */
static void compare_with_readelf(const char *path, const struct pm_cfi_table *t, struct tally *ty)
{
  struct xframes x;
  memset(ty, 0, sizeof *ty);
  if (!CHECK(read_frames(path, &x) == 0))
    return;
  qsort(x.fdes, (size_t)x.n, sizeof *x.fdes, xfde_cmp);
  uint64_t covered = 0;
  int shown = 0;
  for (int i = 0; i < x.n; i++) {
    struct xfde *f = &x.fdes[i];
    if (f->end <= f->start || f->start == 0)
      continue;
    if (f->start < covered) {
      ty->skipped_overlap++;
      continue;
    }
    covered = f->end;
    ty->fdes++;
    const struct xcie *c = find_cie(&x, f);
    int nrows = f->nrows;
    const struct xrow *rows = f->rows;
    struct xrow from_cie;
    if (nrows == 0 && c) { /* no instructions: the CIE's rules hold */
      from_cie = c->row;
      from_cie.loc = f->start;
      rows = &from_cie;
      nrows = 1;
    }
    int has_exp = 0;
    for (int k = 0; k < nrows; k++) {
      uint64_t lo = rows[k].loc, hi = k + 1 < nrows ? rows[k + 1].loc : f->end;
      if (hi <= lo)
        continue;
      struct pm_cfi_row want = expected(&rows[k], f, c);
      has_exp |= strcmp(rows[k].cfa, "exp") == 0;
      ty->rows++;
      ty->kinds[want.cfa]++;
      uint64_t probes[2] = { lo, hi - 1 };
      for (int q = 0; q < 2; q++) {
        const struct pm_cfi_row *got = pm_cfi_lookup(t, probes[q]);
        ty->checked++;
        if (!got || !row_eq(got, &want)) {
          ty->wrong++;
          if (shown++ < 8)
            printf("       %s: fde %llx pc %llx: readelf cfa=%s rbp=%s ra=%s -> want %s%+d rbp %d%+d, got %s%+d rbp %d%+d\n",
                   path, (unsigned long long)f->off, (unsigned long long)probes[q], rows[k].cfa,
                   rows[k].rbp[0] ? rows[k].rbp : "-", rows[k].ra, pm_cfi_kind_name(want.cfa), want.cfa_off,
                   want.rbp, want.rbp_off, got ? pm_cfi_kind_name(got->cfa) : "(null)", got ? got->cfa_off : 0,
                   got ? got->rbp : 0, got ? got->rbp_off : 0);
        }
      }
    }
    ty->exp_fdes += has_exp;
    ty->plt_fdes += f->plt;
    ty->signal_fdes += c && c->signal;
    ty->personality_fdes += c && c->personality;
  }
  /* outside every FDE: nothing */
  if (x.n > 0) {
    const struct pm_cfi_row *after = pm_cfi_lookup(t, covered);
    CHECK(after && after->cfa == PM_CFI_NONE);
  }
  xframes_free(&x);
}

static void table_is_sorted_and_merged(const struct pm_cfi_table *t)
{
  int bad = 0;
  for (size_t i = 1; i < t->n; i++)
    bad += t->rows[i].pc <= t->rows[i - 1].pc || row_eq(&t->rows[i], &t->rows[i - 1]);
  CHECK_INT(bad, 0);
  CHECK(t->n > 0 && t->rows[t->n - 1].cfa == PM_CFI_NONE);
}

static struct pm_cfi_table *compile_in_dir(const char *file)
{
  char path[256];
  path_in_dir(path, sizeof path, file);
  struct pm_cfi_table *t = NULL;
  int err = pm_cfi_compile(path, &t);
  if (!CHECK(err == 0 && t))
    printf("       %s: %s\n", path, strerror(err));
  return t;
}

static void print_tally(const char *name, const struct pm_cfi_table *t, const struct tally *ty)
{
  printf("       %s: %d FDEs, %d readelf rows (%d probes, %d wrong); table %zu rows, %zu bytes:"
         " rsp %u, rbp %u, plt %u, signal %u, end %u, unsupported %u, none %u\n",
         name, ty->fdes, ty->rows, ty->checked, ty->wrong, t->n, pm_cfi_size(t), t->stats.kinds[PM_CFI_RSP],
         t->stats.kinds[PM_CFI_RBP], t->stats.kinds[PM_CFI_PLT], t->stats.kinds[PM_CFI_SIGNAL],
         t->stats.kinds[PM_CFI_END], t->stats.kinds[PM_CFI_UNSUPPORTED], t->stats.kinds[PM_CFI_NONE]);
}

/* One compiled program: every row agrees with readelf. */
static void check_program(const char *file, struct tally *ty)
{
  struct pm_cfi_table *t = compile_in_dir(file);
  if (!t)
    return;
  char path[256];
  path_in_dir(path, sizeof path, file);
  compare_with_readelf(path, t, ty);
  CHECK(ty->fdes >= 3);
  CHECK_INT(ty->wrong, 0);
  CHECK_INT(ty->skipped_overlap, (int)t->stats.overlapping);
  CHECK_INT(t->stats.bad, 0);
  table_is_sorted_and_merged(t);
  print_tally(file, t, ty);
  pm_cfi_free(t);
}

/* nm's address of a symbol in a file of the test directory; 0 if absent */
static uint64_t nm_addr(const char *file, const char *name)
{
  char cmd[512], line[512];
  snprintf(cmd, sizeof cmd, "nm --defined-only %s/%s", dir, file);
  FILE *p = popen(cmd, "r");
  uint64_t addr = 0;
  while (p && fgets(line, sizeof line, p)) {
    unsigned long long a;
    char type, nm[256];
    if (sscanf(line, "%llx %c %255s", &a, &type, nm) == 3 && strcmp(nm, name) == 0)
      addr = a;
  }
  if (p)
    pclose(p);
  return addr;
}

/* ---- cases --------------------------------------------------------------- */

static int need_readelf(void)
{
  if (!have_readelf)
    printf("  skipped: readelf is not installed (binutils)\n");
  return have_readelf;
}

static void omit_frame_pointer_program(void)
{
  if (!need_readelf())
    return;
  struct tally ty;
  check_program("prog-nofp", &ty);
  /* a PLT with its expression, the trampoline, the outermost _start, and
   * the realigned function's CFA, which the table does not follow */
  CHECK(ty.plt_fdes >= 1);
  CHECK(ty.kinds[PM_CFI_PLT] >= 1);
  CHECK_INT(ty.signal_fdes, 1);
  CHECK(ty.kinds[PM_CFI_END] >= 1);
  CHECK(ty.kinds[PM_CFI_UNSUPPORTED] >= 1);
  /* alloca: the CFA moves to rbp even without frame pointers */
  CHECK(ty.kinds[PM_CFI_RBP] >= 1);

  struct pm_cfi_table *t = compile_in_dir("prog-nofp");
  if (!t)
    return;
  /* at a function's first instruction the CFA is rsp+8, rbp untouched */
  static const char *fns[] = { "pm_leaf", "pm_deep", "pm_big", "pm_many", "main" };
  for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
    uint64_t a = nm_addr("prog-nofp", fns[i]);
    const struct pm_cfi_row *r = a ? pm_cfi_lookup(t, a) : NULL;
    if (!CHECK(r && r->cfa == PM_CFI_RSP && r->cfa_off == 8 && r->rbp == PM_CFI_RBP_SAME))
      printf("       at %s (%llx)\n", fns[i], (unsigned long long)a);
  }
  /* the big frame: somewhere inside it the CFA is 4 KiB and more above rsp
   * (the 5000 bytes less the red zone) */
  uint64_t big = nm_addr("prog-nofp", "pm_big");
  int seen = 0;
  for (uint64_t pc = big; big && pc < big + 64; pc++) {
    const struct pm_cfi_row *r = pm_cfi_lookup(t, pc);
    seen |= r && r->cfa == PM_CFI_RSP && r->cfa_off > 4096;
  }
  CHECK(seen);
  uint64_t tramp = nm_addr("prog-nofp", "pm_sigtramp");
  const struct pm_cfi_row *r = tramp ? pm_cfi_lookup(t, tramp) : NULL;
  CHECK(r && r->cfa == PM_CFI_SIGNAL);
  /* before the first row: nothing */
  CHECK(pm_cfi_lookup(t, t->base - 1) == NULL);
  CHECK(pm_cfi_lookup(t, 0) == NULL);
  pm_cfi_free(t);
}

static void frame_pointer_program(void)
{
  if (!need_readelf())
    return;
  struct tally ty;
  check_program("prog-fp", &ty);
  CHECK(ty.kinds[PM_CFI_RBP] >= 5); /* every function after its prologue */
}

static void debug_frame_program(void)
{
  if (!need_readelf())
    return;
  struct tally ty;
  check_program("prog-debug", &ty);
  struct pm_cfi_table *t = compile_in_dir("prog-debug");
  if (!t)
    return;
  /* the program's own functions are described only in .debug_frame */
  CHECK(t->stats.fdes_debug >= 5);
  uint64_t a = nm_addr("prog-debug", "pm_deep");
  const struct pm_cfi_row *r = a ? pm_cfi_lookup(t, a) : NULL;
  CHECK(r && r->cfa == PM_CFI_RSP && r->cfa_off == 8);
  r = a ? pm_cfi_lookup(t, a + 4) : NULL; /* after push %rbp; mov %rsp,%rbp */
  CHECK(r && r->cfa == PM_CFI_RBP && r->cfa_off == 16 && r->rbp == PM_CFI_RBP_CFA && r->rbp_off == -16);
  pm_cfi_free(t);
}

static void shared_library(void)
{
  if (!need_readelf())
    return;
  struct tally ty;
  check_program("lib.so", &ty);
  CHECK(ty.plt_fdes >= 1);
}

static void cxx_exceptions(void)
{
  if (!need_readelf())
    return;
  struct tally ty;
  check_program("cxx", &ty);
  CHECK(ty.personality_fdes >= 2); /* pm_catch and main at least */
}

/* Other objects every process here maps, as Debian builds them: the dynamic
 * loader, libm, zlib, and libstdc++ (with "zPLR" CIEs). */
static void system_libraries(void)
{
  if (!need_readelf())
    return;
  static const char *libs[] = { "/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/libm.so.6",
                                "/usr/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6" };
  int checked = 0;
  for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
    if (access(libs[i], R_OK) != 0) {
      printf("       (%s is not installed)\n", libs[i]);
      continue;
    }
    struct pm_cfi_table *t = NULL;
    CHECK_INT(pm_cfi_compile(libs[i], &t), 0);
    if (!t)
      continue;
    struct tally ty;
    compare_with_readelf(libs[i], t, &ty);
    CHECK(ty.fdes > 10);
    CHECK_INT(ty.wrong, 0);
    CHECK_INT(ty.skipped_overlap, (int)t->stats.overlapping);
    CHECK_INT(t->stats.bad, 0);
    table_is_sorted_and_merged(t);
    print_tally(strrchr(libs[i], '/') + 1, t, &ty);
    if (strstr(libs[i], "libstdc++"))
      CHECK(ty.personality_fdes > 100);
    pm_cfi_free(t);
    checked++;
  }
  CHECK(checked >= 2);
}

static void glibc(void)
{
  if (!need_readelf())
    return;
  if (access(LIBC, R_OK) != 0) {
    printf("  skipped: %s is not there\n", LIBC);
    return;
  }
  struct pm_cfi_table *t = NULL;
  int err = pm_cfi_compile(LIBC, &t);
  CHECK_INT(err, 0);
  if (!t)
    return;
  struct tally ty;
  compare_with_readelf(LIBC, t, &ty);
  CHECK(ty.fdes > 1000);
  CHECK_INT(ty.wrong, 0);
  CHECK_INT(t->stats.bad, 0);
  /* the forms glibc needs: its PLT and __restore_rt, each recognised */
  CHECK(ty.plt_fdes >= 1);
  CHECK_INT(ty.signal_fdes, 1);
  CHECK_INT((int)t->stats.kinds[PM_CFI_SIGNAL], 1);
  CHECK((int)t->stats.kinds[PM_CFI_PLT] >= 1);
  CHECK_INT(strlen(t->build_id), 40);
  table_is_sorted_and_merged(t);
  print_tally("libc.so.6", t, &ty);
  printf("       libc.so.6: %d FDEs use a CFA expression: %d the PLT form, %d the signal frame, %d other\n",
         ty.exp_fdes, ty.plt_fdes, ty.signal_fdes, ty.exp_fdes - ty.plt_fdes - ty.signal_fdes);
  pm_cfi_free(t);
}

static void errors(void)
{
  char path[256];
  struct pm_cfi_table *t = NULL;
  path_in_dir(path, sizeof path, "text");
  CHECK_INT(pm_cfi_compile(path, &t), ENOEXEC);
  CHECK(t == NULL);
  path_in_dir(path, sizeof path, "missing");
  CHECK_INT(pm_cfi_compile(path, &t), ENOENT);
  path_in_dir(path, sizeof path, "prog-nocfi");
  CHECK_INT(pm_cfi_compile(path, &t), ENODATA);
  CHECK(t == NULL);
  char bid[65];
  path_in_dir(path, sizeof path, "text");
  CHECK_INT(pm_cfi_build_id(path, bid), ENOEXEC);
}

/* Saved and loaded: the same rows; another build-id, a truncated or foreign
 * file are refused; no temp file is left behind. */
static void save_and_load(void)
{
  struct pm_cfi_table *t = compile_in_dir("prog-nofp"), *u = NULL;
  if (!t)
    return;
  char exe[256], tbl[256];
  path_in_dir(exe, sizeof exe, "prog-nofp");
  char bid[65];
  CHECK_INT(pm_cfi_build_id(exe, bid), 0);
  CHECK_STR(bid, t->build_id);
  CHECK_INT(strlen(bid), 40);
  snprintf(tbl, sizeof tbl, "%s/%s.tbl", dir, bid);
  CHECK_INT(pm_cfi_save(t, tbl), 0);
  struct stat st;
  CHECK(stat(tbl, &st) == 0 && (size_t)st.st_size == pm_cfi_size(t));
  CHECK_INT(sh("test -z \"$(ls %s | grep '\\.tmp\\.')\"", dir), 0);
  CHECK_INT(pm_cfi_load(tbl, bid, &u), 0);
  if (u) {
    CHECK_U64(u->n, t->n);
    CHECK_U64(u->base, t->base);
    CHECK_STR(u->build_id, t->build_id);
    CHECK(u->n == t->n && memcmp(u->rows, t->rows, t->n * sizeof *t->rows) == 0);
    CHECK_INT(u->stats.kinds[PM_CFI_PLT], t->stats.kinds[PM_CFI_PLT]);
    pm_cfi_free(u);
    u = NULL;
  }
  CHECK_INT(pm_cfi_load(tbl, NULL, &u), 0);
  pm_cfi_free(u);
  u = NULL;
  /* a rebuilt object has another build-id: the saved table is stale */
  CHECK_INT(pm_cfi_load(tbl, "00112233445566778899aabbccddeeff00112233", &u), ESTALE);
  CHECK(u == NULL);
  char bad[300];
  snprintf(bad, sizeof bad, "%s/truncated.tbl", dir);
  CHECK_INT(sh("head -c 200 %s > %s", tbl, bad), 0);
  CHECK_INT(pm_cfi_load(bad, bid, &u), EBADMSG);
  snprintf(bad, sizeof bad, "%s/prog.c", dir);
  CHECK_INT(pm_cfi_load(bad, bid, &u), EBADMSG);
  /* the right size and header, a damaged row: an unknown kind, then two
   * rows out of order */
  struct pm_cfi_row keep = t->rows[1];
  t->rows[1].cfa = 200;
  snprintf(bad, sizeof bad, "%s/damaged.tbl", dir);
  CHECK_INT(pm_cfi_save(t, bad), 0);
  CHECK_INT(pm_cfi_load(bad, bid, &u), EBADMSG);
  t->rows[1] = keep;
  t->rows[1].pc = t->rows[2].pc;
  CHECK_INT(pm_cfi_save(t, bad), 0);
  CHECK_INT(pm_cfi_load(bad, bid, &u), EBADMSG);
  t->rows[1] = keep;
  CHECK_INT(pm_cfi_save(t, bad), 0);
  CHECK_INT(pm_cfi_load(bad, bid, &u), 0);
  pm_cfi_free(u);
  u = NULL;
  snprintf(bad, sizeof bad, "%s/nothing.tbl", dir);
  CHECK_INT(pm_cfi_load(bad, bid, &u), ENOENT);
  /* a directory that does not exist: the save fails, naming why */
  snprintf(bad, sizeof bad, "%s/no/such/dir.tbl", dir);
  CHECK_INT(pm_cfi_save(t, bad), ENOENT);
  pm_cfi_free(t);
}

/* ---- a live stack walked with the tables --------------------------------- */

/* The walk the BPF unwinder is to do, in C over this process's own stack
 * (this test is built -O2: no frame pointers), through glibc's qsort and a
 * signal frame: each object's table compiled from its file, found by
 * dl_iterate_phdr; frames named with dladdr (the test is linked -Wl,-E). */

struct live_obj {
  uint64_t bias, lo, hi; /* executable range, run-time addresses */
  char path[256];
  struct pm_cfi_table *t;
};

static struct live_obj live[64];
static int nlive;

static int add_live(struct dl_phdr_info *info, size_t size, void *arg)
{
  (void)size;
  (void)arg;
  if (nlive == (int)(sizeof live / sizeof *live))
    return 1;
  const char *name = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "/proc/self/exe";
  if (strstr(name, "linux-vdso"))
    return 0; /* no file to read */
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
      continue;
    struct live_obj *o = &live[nlive++];
    o->bias = info->dlpi_addr;
    o->lo = info->dlpi_addr + ph->p_vaddr;
    o->hi = o->lo + ph->p_memsz;
    snprintf(o->path, sizeof o->path, "%s", name);
    o->t = NULL;
    if (pm_cfi_compile(o->path, &o->t) != 0)
      o->t = NULL;
    break;
  }
  return 0;
}

static const struct live_obj *live_find(uint64_t ip)
{
  for (int i = 0; i < nlive; i++)
    if (ip >= live[i].lo && ip < live[i].hi)
      return &live[i];
  return NULL;
}

struct walk {
  uint64_t ips[64];
  int n;
  int reached_end, signal_frames, libc_frames;
  const char *stop; /* why it stopped short, NULL when it reached the end */
};

static uint64_t peek(uint64_t addr)
{
  uint64_t v;
  memcpy(&v, (const void *)(uintptr_t)addr, sizeof v);
  return v;
}

static void walk_stack(uint64_t ip, uint64_t sp, uint64_t bp, struct walk *w)
{
  memset(w, 0, sizeof *w);
  uint64_t stack_lo = sp, stack_hi = sp + (8u << 20);
  int exact = 1; /* ip is where execution is, not a return address */
  while (w->n < 64) {
    w->ips[w->n++] = ip;
    const struct live_obj *o = live_find(ip);
    if (!o || !o->t) {
      w->stop = "no table for the pc";
      return;
    }
    if (strstr(o->path, "libc.so"))
      w->libc_frames++;
    /* a return address may be just past the function's last instruction
     * (a call to a noreturn function): look up the call itself */
    const struct pm_cfi_row *r = pm_cfi_lookup(o->t, ip - o->bias - (exact ? 0 : 1));
    uint64_t cfa;
    if (!r) {
      w->stop = "before the table";
      return;
    }
    switch (r->cfa) {
    case PM_CFI_RSP: cfa = sp + (uint64_t)(int64_t)r->cfa_off; break;
    case PM_CFI_RBP: cfa = bp + (uint64_t)(int64_t)r->cfa_off; break;
    case PM_CFI_PLT: cfa = sp + (uint64_t)(int64_t)r->cfa_off + ((ip & 15) >= (uint64_t)r->rbp_off ? 8 : 0); break;
    case PM_CFI_SIGNAL: /* the ucontext at rsp: gregs of the interrupted code */
      w->signal_frames++;
      ip = peek(sp + 168);
      bp = peek(sp + 120);
      sp = peek(sp + 160);
      exact = 1;
      continue;
    case PM_CFI_END: w->reached_end = 1; return;
    case PM_CFI_NONE: w->stop = "no FDE covers the pc"; return;
    default: w->stop = "an unsupported rule"; return;
    }
    if (cfa < stack_lo || cfa > stack_hi) {
      w->stop = "the CFA left the stack";
      return;
    }
    if (r->rbp == PM_CFI_RBP_CFA)
      bp = peek(cfa + (uint64_t)(int64_t)r->rbp_off);
    ip = peek(cfa - 8);
    sp = cfa;
    exact = 0;
  }
  w->stop = "64 frames";
}

#define CAPTURE(ip, sp, bp) \
  __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(ip), "=r"(sp), "=r"(bp))

static struct walk walked;

/* index of the first frame in the function called name (dladdr: its
 * exported symbols), -1 if none */
static int frame_in(const struct walk *w, const char *name)
{
  for (int i = 0; i < w->n; i++) {
    Dl_info di;
    if (dladdr((void *)(uintptr_t)(w->ips[i] - (i ? 1 : 0)), &di) && di.dli_sname && strcmp(di.dli_sname, name) == 0)
      return i;
  }
  return -1;
}

static void print_walk(const struct walk *w)
{
  for (int i = 0; i < w->n; i++) {
    Dl_info di;
    int ok = dladdr((void *)(uintptr_t)(w->ips[i] - (i ? 1 : 0)), &di);
    printf("       #%-2d %#llx %s (%s)\n", i, (unsigned long long)w->ips[i], ok && di.dli_sname ? di.dli_sname : "?",
           ok && di.dli_fname ? di.dli_fname : "?");
  }
  printf("       %s\n", w->reached_end ? "reached the outermost frame" : w->stop);
}

int pm_cfi_test_compare(const void *a, const void *b);
int pm_cfi_test_compare(const void *a, const void *b)
{
  static int done;
  if (!done) {
    done = 1;
    uint64_t ip, sp, bp;
    CAPTURE(ip, sp, bp);
    walk_stack(ip, sp, bp, &walked);
  }
  return *(const int *)a - *(const int *)b;
}

__attribute__((noinline)) int pm_cfi_test_sort(int n);
__attribute__((noinline)) int pm_cfi_test_sort(int n)
{
  int v[64];
  for (int i = 0; i < 64; i++)
    v[i] = (i * 37 + n) % 64;
  qsort(v, 64, sizeof v[0], pm_cfi_test_compare);
  __asm__ volatile("" : : "r"(v) : "memory");
  return v[0] + v[63];
}

static void live_objects(void)
{
  if (nlive == 0)
    dl_iterate_phdr(add_live, NULL);
}

/* qsort's callback -> glibc's msort (no frame pointers) -> qsort -> this
 * test -> main -> __libc_start_call_main -> ... -> _start */
static void walk_through_qsort(void)
{
  live_objects();
  volatile int r = pm_cfi_test_sort(3);
  (void)r;
  struct walk *w = &walked;
  /* glibc's qsort tail-calls qsort_r: that is the frame the stack holds */
  int cmp = frame_in(w, "pm_cfi_test_compare"), sort = frame_in(w, "pm_cfi_test_sort"), qs = frame_in(w, "qsort_r"),
      top = frame_in(w, "main");
  if (!CHECK(w->reached_end && frame_in(w, "_start") == w->n - 1 && cmp == 0 && qs > cmp && sort > qs && top > sort && w->libc_frames >= 3))
    print_walk(w);
  else
    printf("       %d frames, %d in libc, to _start\n", w->n, w->libc_frames);
}

__attribute__((noinline)) void pm_cfi_test_on_signal(int sig);
__attribute__((noinline)) void pm_cfi_test_on_signal(int sig)
{
  (void)sig;
  uint64_t ip, sp, bp;
  CAPTURE(ip, sp, bp);
  walk_stack(ip, sp, bp, &walked);
}

__attribute__((noinline)) int pm_cfi_test_raise(int sig);
__attribute__((noinline)) int pm_cfi_test_raise(int sig)
{
  int rc = raise(sig);
  __asm__ volatile("" : : : "memory");
  return rc + 1;
}

/* handler -> __restore_rt (the signal frame) -> raise's insides -> raise ->
 * this test -> main -> ... -> _start */
static void walk_through_signal(void)
{
  live_objects();
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = pm_cfi_test_on_signal;
  sigaction(SIGUSR2, &sa, &old);
  volatile int r = pm_cfi_test_raise(SIGUSR2);
  (void)r;
  sigaction(SIGUSR2, &old, NULL);
  struct walk *w = &walked;
  /* raise and gsignal are one function: dladdr may give either name */
  int h = frame_in(w, "pm_cfi_test_on_signal"), rs = frame_in(w, "raise") >= 0 ? frame_in(w, "raise") : frame_in(w, "gsignal"), caller = frame_in(w, "pm_cfi_test_raise"),
      top = frame_in(w, "main");
  if (!CHECK(w->reached_end && frame_in(w, "_start") == w->n - 1 && w->signal_frames == 1 && h == 0 && rs > h && caller > rs && top > caller))
    print_walk(w);
  else
    printf("       %d frames through 1 signal frame, to _start\n", w->n);
}

int main(void)
{
  have_readelf = system("readelf --version >/dev/null 2>&1") == 0;
  built = build_programs() == 0;
  if (!built)
    printf("  could not build the test programs in %s\n", dir);
  /* without them the cases fail: they are not skipped */
  RUN(omit_frame_pointer_program);
  RUN(frame_pointer_program);
  RUN(debug_frame_program);
  RUN(shared_library);
  RUN(cxx_exceptions);
  RUN(glibc);
  RUN(system_libraries);
  RUN(errors);
  RUN(save_and_load);
  RUN(walk_through_qsort);
  RUN(walk_through_signal);
  for (int i = 0; i < nlive; i++)
    pm_cfi_free(live[i].t);
  /* made: mkdtemp replaced the template's XXXXXX (the name may hold an X) */
  if (strcmp(dir + strlen(dir) - 6, "XXXXXX") != 0)
    sh("rm -rf %s", dir);
  return check_summary("test_cfi");
}
