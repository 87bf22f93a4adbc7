/* Unit tests of runtime/sym.c: the symbol table, and the ELF reader on
 * small programs this test compiles (with and without frame pointers, with
 * a chosen build-id, split debug info, stripped), checked against nm and
 * readelf. Called directly through runtime/sym_internal.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "sym_internal.h"

static const char *name_at(const struct pm_symtab *t, uint64_t addr)
{
  const struct pm_sym *s = pm_symtab_find(t, addr);
  return s ? t->pool + s->name : NULL;
}

/* ---- the table ---- */

static void table_lookup(void)
{
  struct pm_symtab t = { 0 };
  /* out of order, as symbol tables are */
  CHECK_INT(pm_symtab_add(&t, 0x3000, 0x100, "third", 1), 0);
  CHECK_INT(pm_symtab_add(&t, 0x1000, 0x10, "first", 1), 0);
  CHECK_INT(pm_symtab_add(&t, 0x2000, 0, "unsized", 0), 0);
  /* at one address: the sized global symbol wins over a local alias and
   * an unsized label */
  CHECK_INT(pm_symtab_add(&t, 0x3000, 0, "third_label", 0), 0);
  CHECK_INT(pm_symtab_add(&t, 0x3000, 0x100, "third_local", 0), 0);
  CHECK_INT(pm_symtab_add(&t, 0x4000, 0x20, "clock_nanosleep@GLIBC_2.2.5", 1), 0);
  CHECK_INT(pm_symtab_add(&t, 0x5000, 0x20, "memcpy@@GLIBC_2.14", 1), 0);
  CHECK_INT(pm_symtab_add(&t, 0x6000, 0x20, "@odd", 1), 0);
  pm_symtab_finish(&t);
  CHECK_INT(t.n, 6);
  CHECK(name_at(&t, 0xfff) == NULL);           /* before the first */
  CHECK_STR(name_at(&t, 0x1000), "first");
  CHECK_STR(name_at(&t, 0x100f), "first");
  CHECK(name_at(&t, 0x1010) == NULL);          /* just past its size */
  CHECK_STR(name_at(&t, 0x2000), "unsized");
  CHECK_STR(name_at(&t, 0x2fff), "unsized");   /* runs to the next symbol */
  CHECK_STR(name_at(&t, 0x3000), "third");
  CHECK_STR(name_at(&t, 0x30ff), "third");
  CHECK(name_at(&t, 0x3100) == NULL);
  CHECK_STR(name_at(&t, 0x4010), "clock_nanosleep");
  CHECK_STR(name_at(&t, 0x5000), "memcpy");
  CHECK_STR(name_at(&t, 0x6000), "@odd");
  CHECK(name_at(&t, UINT64_MAX) == NULL);
  pm_symtab_free(&t);
  CHECK(t.syms == NULL && t.n == 0);
  /* an empty table names nothing */
  pm_symtab_finish(&t);
  CHECK(name_at(&t, 0x1000) == NULL);
}

/* Past the first symbol array (1024) and string pool (16 KiB), with
 * 64-bit kernel-style addresses. */
static void table_grows(void)
{
  struct pm_symtab t = { 0 };
  char name[64];
  enum { N = 20000 };
  const uint64_t base = 0xffffffff81000000ull;
  for (int i = N - 1; i >= 0; i--) {
    snprintf(name, sizeof name, "kernel_function_number_%d", i);
    CHECK_INT(pm_symtab_add(&t, base + (uint64_t)i * 64, 0, name, 1), 0);
  }
  pm_symtab_finish(&t);
  CHECK_INT(t.n, N);
  int wrong = 0;
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "kernel_function_number_%d", i);
    const char *a = name_at(&t, base + (uint64_t)i * 64), *b = name_at(&t, base + (uint64_t)i * 64 + 63);
    wrong += !a || !b || strcmp(a, name) != 0 || strcmp(b, name) != 0;
  }
  CHECK_INT(wrong, 0);
  pm_symtab_free(&t);
}

/* ---- ELF files made here ---- */

static char dir[] = "/tmp/pm-test-sym-XXXXXX";

static const char PROG[] =
  "#include <stdio.h>\n"
  "__attribute__((noinline)) int pm_alpha(int x) { volatile int y = x * 3; return y + 1; }\n"
  "__attribute__((noinline)) static int pm_beta(int x) { volatile int s = 0; for (int i = 0; i < x; i++) s += i; return s; }\n"
  "int main(int argc, char **argv) { (void)argv; printf(\"%d\\n\", pm_alpha(argc) + pm_beta(argc)); return 0; }\n";

#define BUILD_ID "0123456789abcdef0123456789abcdef01234567"

static int build_programs(void)
{
  if (!mkdtemp(dir))
    return -1;
  char path[256];
  snprintf(path, sizeof path, "%s/prog.c", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(PROG, f);
  fclose(f);
  if (sh("cd %s && cc -O0 -g -fno-omit-frame-pointer -Wl,--build-id=0x" BUILD_ID " -o prog prog.c", dir) ||
      sh("cd %s && cc -O0 -fomit-frame-pointer -o prog-nofp prog.c", dir) ||
      sh("cd %s && objcopy --only-keep-debug prog prog.debug && "
         "objcopy --strip-debug --add-gnu-debuglink=prog.debug prog prog.split", dir) ||
      sh("cd %s && strip -o prog.stripped prog", dir) ||
      sh("cd %s && printf 'not an elf file\\n' > text && : > empty && head -c 64 prog > truncated", dir))
    return -1;
  return 0;
}

/* address and size of `name` as nm prints them; 0 when absent */
static uint64_t nm_sym(const char *file, const char *name, uint64_t *size)
{
  char cmd[512], line[512];
  snprintf(cmd, sizeof cmd, "nm -S --defined-only %s/%s", dir, file);
  FILE *p = popen(cmd, "r");
  uint64_t addr = 0;
  *size = 0;
  while (p && fgets(line, sizeof line, p)) {
    unsigned long long a, s;
    char type, nm[256];
    if (sscanf(line, "%llx %llx %c %255s", &a, &s, &type, nm) == 4 && strcmp(nm, name) == 0) {
      addr = a;
      *size = s;
    }
  }
  if (p)
    pclose(p);
  return addr;
}

static struct pm_elf *open_in_dir(const char *file, int *err)
{
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  struct pm_elf *e = NULL;
  *err = pm_elf_open(path, &e);
  return e;
}

static void elf_symbols_match_nm(void)
{
  int err;
  struct pm_elf *e = open_in_dir("prog", &err);
  CHECK_INT(err, 0);
  if (!e)
    return;
  CHECK(e->has_symtab && e->has_dynsym);
  CHECK(e->tab.n >= 3);
  static const char *fns[] = { "pm_alpha", "pm_beta", "main" };
  for (size_t k = 0; k < 3; k++) {
    uint64_t size, addr = nm_sym("prog", fns[k], &size);
    if (!CHECK(addr && size)) {
      printf("       nm has no %s\n", fns[k]);
      continue;
    }
    CHECK_STR(name_at(&e->tab, addr), fns[k]);
    CHECK_STR(name_at(&e->tab, addr + size - 1), fns[k]);
    const char *after = name_at(&e->tab, addr + size);
    if (!CHECK(!after || strcmp(after, fns[k]) != 0))
      printf("       %s still named past its %" PRIu64 " bytes\n", fns[k], size);
  }
  pm_elf_destroy(e);
}

static void elf_build_id_and_segments(void)
{
  int err;
  struct pm_elf *e = open_in_dir("prog", &err);
  if (!CHECK(e != NULL))
    return;
  CHECK_STR(e->build_id, BUILD_ID);
  CHECK(e->debuglink[0] == 0);
  /* as many PT_LOAD segments as readelf shows, one of them executable */
  char cmd[512];
  snprintf(cmd, sizeof cmd, "readelf -lW %s/prog | grep -c ' LOAD '", dir);
  FILE *p = popen(cmd, "r");
  int loads = -1;
  if (p) {
    if (fscanf(p, "%d", &loads) != 1)
      loads = -1;
    pclose(p);
  }
  CHECK_INT(e->nloads, loads);
  int exec = 0;
  for (size_t i = 0; i < e->nloads; i++) {
    const struct pm_load *l = &e->loads[i];
    exec += (l->flags & 1) != 0; /* PF_X */
    CHECK_U64(pm_elf_offset_to_vaddr(e, l->offset), l->vaddr);
    if (l->filesz > 1)
      CHECK_U64(pm_elf_offset_to_vaddr(e, l->offset + l->filesz - 1), l->vaddr + l->filesz - 1);
  }
  CHECK_INT(exec, 1);
  CHECK_U64(pm_elf_offset_to_vaddr(e, (uint64_t)1 << 40), (uint64_t)-1);
  /* main's file offset maps back to its address (how a sampled address in
   * a mapping is named) */
  uint64_t size, addr = nm_sym("prog", "main", &size);
  for (size_t i = 0; i < e->nloads; i++) {
    const struct pm_load *l = &e->loads[i];
    if (addr >= l->vaddr && addr < l->vaddr + l->filesz) {
      uint64_t off = addr - l->vaddr + l->offset;
      CHECK_STR(name_at(&e->tab, pm_elf_offset_to_vaddr(e, off + 4)), "main");
    }
  }
  pm_elf_destroy(e);
}

static void elf_frame_pointers(void)
{
  int err1, err2;
  struct pm_elf *fp = open_in_dir("prog", &err1), *nofp = open_in_dir("prog-nofp", &err2);
  if (CHECK(fp && nofp)) {
    /* the same functions are looked at; only ours differ in prologue */
    CHECK_INT(fp->fp_checked, nofp->fp_checked);
    CHECK(fp->fp_with >= 3);
    if (!CHECK(fp->fp_with - nofp->fp_with >= 3))
      printf("       with frame pointers %u of %u, without %u of %u\n", fp->fp_with, fp->fp_checked, nofp->fp_with,
             nofp->fp_checked);
  }
  pm_elf_destroy(fp);
  pm_elf_destroy(nofp);
}

static uint32_t crc_of(const char *file)
{
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "rb");
  uLong crc = crc32(0L, Z_NULL, 0);
  unsigned char buf[4096];
  size_t r;
  while (f && (r = fread(buf, 1, sizeof buf, f)) > 0)
    crc = crc32(crc, buf, (uInt)r);
  if (f)
    fclose(f);
  return (uint32_t)crc;
}

static void elf_debuglink_and_stripped(void)
{
  int err;
  struct pm_elf *e = open_in_dir("prog.split", &err);
  if (CHECK(e != NULL)) {
    CHECK_STR(e->debuglink, "prog.debug");
    CHECK_U64(e->debuglink_crc, crc_of("prog.debug"));
    CHECK_STR(e->build_id, BUILD_ID);
    CHECK(name_at(&e->tab, nm_sym("prog", "pm_beta", &(uint64_t){ 0 })) != NULL);
  }
  pm_elf_destroy(e);
  /* the debug file alone has the symbols too */
  e = open_in_dir("prog.debug", &err);
  if (CHECK(e != NULL)) {
    uint64_t size, addr = nm_sym("prog", "pm_alpha", &size);
    CHECK_STR(name_at(&e->tab, addr), "pm_alpha");
  }
  pm_elf_destroy(e);
  /* stripped: no .symtab; the dynamic symbols do not name a static function */
  e = open_in_dir("prog.stripped", &err);
  if (CHECK(e != NULL)) {
    CHECK_INT(e->has_symtab, 0);
    CHECK_INT(e->has_dynsym, 1);
    uint64_t size, addr = nm_sym("prog", "pm_beta", &size);
    const char *n = name_at(&e->tab, addr);
    CHECK(!n || strcmp(n, "pm_beta") != 0);
    CHECK_STR(e->build_id, BUILD_ID);
  }
  pm_elf_destroy(e);
}

static void elf_errors(void)
{
  int err;
  struct pm_elf *e = open_in_dir("no-such-file", &err);
  CHECK_INT(err, ENOENT);
  CHECK(e == NULL);
  e = open_in_dir("text", &err);
  CHECK_INT(err, ENOEXEC);
  CHECK(e == NULL);
  e = open_in_dir("empty", &err);
  CHECK_INT(err, ENOEXEC);
  /* a directory is no ELF file */
  e = open_in_dir("", &err);
  CHECK(err != 0 && e == NULL);
  /* only the ELF header: read without a symbol, segment or crash */
  e = open_in_dir("truncated", &err);
  if (e) {
    CHECK_INT(e->tab.n, 0);
    CHECK_INT(e->nloads, 0);
    pm_elf_destroy(e);
  } else {
    CHECK_INT(err, ENOEXEC);
  }
}

int main(void)
{
  RUN(table_lookup);
  RUN(table_grows);
  int built = build_programs() == 0;
  if (!built)
    printf("  could not build the test programs in %s\n", dir);
  /* without them the ELF cases fail: they are not skipped */
  RUN(elf_symbols_match_nm);
  RUN(elf_build_id_and_segments);
  RUN(elf_frame_pointers);
  RUN(elf_debuglink_and_stripped);
  RUN(elf_errors);
  /* made: mkdtemp replaced the template's XXXXXX (the name may hold an X) */
  if (strcmp(dir + strlen(dir) - 6, "XXXXXX") != 0)
    sh("rm -rf %s", dir);
  return check_summary("test_sym");
}
