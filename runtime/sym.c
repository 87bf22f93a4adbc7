/* pm.sym: the mechanism of symbol resolution. ELF symbol tables (.symtab and
 * .dynsym) read with libelf into a sorted array we own, the facts needed for
 * load-bias maths (PT_LOAD segments), build-id and .gnu_debuglink, a frame
 * pointer check on function prologues, and /proc/kallsyms. Which files to
 * open and how frames are named is policy: lib/perf_manual/sym.lua. */
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
#include <zlib.h>

#include <lauxlib.h>

#include "pm.h"
#include "sym_internal.h"

#define PM_META_ELF "perf_manual.sym.elf"
#define PM_META_KSYMS "perf_manual.sym.ksyms"
#define KSYMS_MAGIC "PMKSYM1" /* binary table written by ksyms:save() */

struct pm_ksyms {
  struct pm_symtab tab;
  int restricted;  /* every address read as 0: kptr_restrict */
  uint64_t etext;  /* end of the core kernel's text (0: unknown) */
  int core_only;   /* a saved table: nothing at or above etext (BPF, modules) */
};

/* ---- symbol table --------------------------------------------------------- */

int pm_symtab_add(struct pm_symtab *t, uint64_t addr, uint64_t size, const char *name, int global)
{
  /* "clock_nanosleep@GLIBC_2.2.5": the symbol version is not part of the
   * function's name in a stack */
  const char *at = name[0] ? strchr(name + 1, '@') : NULL;
  size_t len = (at ? (size_t)(at - name) : strlen(name)) + 1;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    struct pm_sym *s = realloc(t->syms, cap * sizeof *s);
    if (!s)
      return -ENOMEM;
    t->syms = s;
    t->cap = cap;
  }
  if (t->pool_len + len > t->pool_cap) {
    size_t cap = t->pool_cap ? t->pool_cap * 2 : 16384;
    while (cap < t->pool_len + len)
      cap *= 2;
    char *p = realloc(t->pool, cap);
    if (!p)
      return -ENOMEM;
    t->pool = p;
    t->pool_cap = cap;
  }
  memcpy(t->pool + t->pool_len, name, len - 1);
  t->pool[t->pool_len + len - 1] = 0;
  t->syms[t->n].addr = addr;
  t->syms[t->n].size = size;
  t->syms[t->n].name = (uint32_t)t->pool_len;
  t->syms[t->n].global = (uint8_t)global;
  t->n++;
  t->pool_len += len;
  return 0;
}

static int sym_cmp(const void *a, const void *b)
{
  const struct pm_sym *x = a, *y = b;
  if (x->addr != y->addr)
    return x->addr < y->addr ? -1 : 1;
  /* at one address, prefer the sized, global symbol: it sorts first */
  if ((x->size != 0) != (y->size != 0))
    return x->size ? -1 : 1;
  if (x->global != y->global)
    return x->global ? -1 : 1;
  return 0;
}

/* Sorts and keeps one symbol per address. */
void pm_symtab_finish(struct pm_symtab *t)
{
  if (t->n == 0)
    return;
  size_t i = 1;
  while (i < t->n && sym_cmp(&t->syms[i - 1], &t->syms[i]) <= 0)
    i++;
  if (i < t->n)  /* a saved table comes back sorted: skip the sort */
    qsort(t->syms, t->n, sizeof *t->syms, sym_cmp);
  size_t w = 1;
  for (size_t r = 1; r < t->n; r++)
    if (t->syms[r].addr != t->syms[w - 1].addr)
      t->syms[w++] = t->syms[r];
  t->n = w;
}

void pm_symtab_free(struct pm_symtab *t)
{
  free(t->syms);
  free(t->pool);
  memset(t, 0, sizeof *t);
}

/* The symbol covering addr: inside [addr, addr+size) of a sized symbol, or
 * the nearest preceding unsized one. NULL when none. */
const struct pm_sym *pm_symtab_find(const struct pm_symtab *t, uint64_t addr)
{
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->syms[mid].addr <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return NULL;
  const struct pm_sym *s = &t->syms[lo - 1];
  if (s->size == 0 || addr - s->addr < s->size)
    return s;
  return NULL;
}

/* ---- addresses from Lua ----------------------------------------------------- */

/* A number (exact below 2^53, enough for user space) or a "0x..." string
 * (kernel addresses need all 64 bits). */
static uint64_t check_addr(lua_State *L, int idx)
{
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    if (errno || *end || end == s)
      luaL_argerror(L, idx, "expected an address (number or hex string)");
    return v;
  }
  lua_Number n = luaL_checknumber(L, idx);
  if (n < 0)
    luaL_argerror(L, idx, "expected a non-negative address");
  return (uint64_t)n;
}

static void push_addr(lua_State *L, uint64_t a)
{
  if (a < (1ULL << 53)) {
    lua_pushnumber(L, (lua_Number)a);
  } else {
    char buf[24];
    snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)a);
    lua_pushstring(L, buf);
  }
}

/// unpack(bytes [, max]) -> list of addresses from a packed array of native
/// u64 (a BPF stack-trace map value); stops at the first 0. Addresses at or
/// above 2^53 come back as "0x..." strings so no bit is lost.
static int pm_sym_unpack(lua_State *L)
{
  size_t len;
  const char *b = luaL_checklstring(L, 1, &len);
  lua_Integer max = luaL_optinteger(L, 2, (lua_Integer)(len / 8));
  lua_createtable(L, (int)(len / 8), 0);
  int n = 0;
  for (size_t i = 0; i + 8 <= len && n < max; i += 8) {
    uint64_t a;
    memcpy(&a, b + i, 8);
    if (a == 0)
      break;
    push_addr(L, a);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* ---- ELF files -------------------------------------------------------------- */

static int read_symbols(struct pm_elf *e, Elf *elf, Elf_Scn *scn, GElf_Shdr *sh)
{
  Elf_Data *data = elf_getdata(scn, NULL);
  if (!data || sh->sh_entsize == 0)
    return 0;
  size_t count = sh->sh_size / sh->sh_entsize;
  for (size_t i = 0; i < count; i++) {
    GElf_Sym s;
    if (!gelf_getsym(data, (int)i, &s))
      continue;
    int type = GELF_ST_TYPE(s.st_info);
    if (type != STT_FUNC && type != STT_GNU_IFUNC)
      continue;
    if (s.st_shndx == SHN_UNDEF || s.st_value == 0)
      continue;
    const char *name = elf_strptr(elf, sh->sh_link, s.st_name);
    if (!name || !*name)
      continue;
    int bind = GELF_ST_BIND(s.st_info);
    if (pm_symtab_add(&e->tab, s.st_value, s.st_size, name, bind == STB_GLOBAL || bind == STB_WEAK))
      return -ENOMEM;
  }
  return 0;
}

static void read_build_id(struct pm_elf *e, Elf_Data *data)
{
  size_t off = 0, name_off, desc_off;
  GElf_Nhdr nh;
  while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
    if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
        memcmp((char *)data->d_buf + name_off, "GNU", 4) == 0 && nh.n_descsz <= 32) {
      const unsigned char *d = (const unsigned char *)data->d_buf + desc_off;
      for (size_t i = 0; i < nh.n_descsz; i++)
        snprintf(e->build_id + 2 * i, 3, "%02x", d[i]);
      return;
    }
  }
}

static void read_debuglink(struct pm_elf *e, Elf_Data *data)
{
  const char *p = data->d_buf;
  size_t n = strnlen(p, data->d_size);
  if (n == 0 || n >= sizeof e->debuglink || n >= data->d_size)
    return;
  memcpy(e->debuglink, p, n);
  e->debuglink[n] = 0;
  size_t crc_off = (n + 4) & ~(size_t)3;  /* name, NUL, pad to 4 */
  if (crc_off + 4 <= data->d_size)
    memcpy(&e->debuglink_crc, p + crc_off, 4);
}

/* x86-64 prologue: [endbr64] push %rbp; mov %rsp,%rbp. Counts how many of the
 * sized functions in executable sections start that way. */
static void check_frame_pointers(struct pm_elf *e, Elf *elf)
{
  if (e->tab.n == 0)
    return;
  Elf_Scn *scn = NULL;
  GElf_Shdr sh;
  while ((scn = elf_nextscn(elf, scn)) != NULL) {
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS || !(sh.sh_flags & SHF_EXECINSTR))
      continue;
    Elf_Data *d = elf_getdata(scn, NULL);
    if (!d || !d->d_buf)
      continue;
    for (size_t i = 0; i < e->tab.n && e->fp_checked < 4000; i++) {
      const struct pm_sym *s = &e->tab.syms[i];
      /* tiny functions (stubs, thunks) rarely set up a frame either way */
      if (s->size < 16 || s->addr < sh.sh_addr || s->addr + 8 > sh.sh_addr + d->d_size)
        continue;
      const unsigned char *c = (const unsigned char *)d->d_buf + (s->addr - sh.sh_addr);
      if (c[0] == 0xf3 && c[1] == 0x0f && c[2] == 0x1e && c[3] == 0xfa)
        c += 4;
      e->fp_checked++;
      if (c[0] == 0x55 && c[1] == 0x48 && c[2] == 0x89 && c[3] == 0xe5)
        e->fp_with++;
    }
  }
}

void pm_elf_destroy(struct pm_elf *e)
{
  if (!e)
    return;
  pm_symtab_free(&e->tab);
  free(e->loads);
  free(e->path);
  free(e);
}

static struct pm_elf *elf_check(lua_State *L, int idx)
{
  struct pm_elf **ud = luaL_checkudata(L, idx, PM_META_ELF);
  luaL_argcheck(L, *ud != NULL, idx, "elf is closed");
  return *ud;
}

int pm_elf_open(const char *path, struct pm_elf **out)
{
  int fd = -1, err = 0;
  Elf *elf = NULL;
  struct pm_elf *e = NULL;

  *out = NULL;
  if (elf_version(EV_CURRENT) == EV_NONE)
    return ELIBBAD;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
    goto cleanup;
  }
  elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
  GElf_Ehdr eh;
  if (!elf || elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh)) {
    err = ENOEXEC;
    goto cleanup;
  }
  e = calloc(1, sizeof *e);
  if (!e || !(e->path = strdup(path))) {
    err = ENOMEM;
    goto cleanup;
  }
  e->type = eh.e_type;

  size_t nph = 0;
  elf_getphdrnum(elf, &nph);
  e->loads = calloc(nph ? nph : 1, sizeof *e->loads);
  if (!e->loads) {
    err = ENOMEM;
    goto cleanup;
  }
  for (size_t i = 0; i < nph; i++) {
    GElf_Phdr ph;
    if (!gelf_getphdr(elf, (int)i, &ph))
      continue;
    if (ph.p_type == PT_LOAD) {
      struct pm_load *l = &e->loads[e->nloads++];
      l->vaddr = ph.p_vaddr;
      l->offset = ph.p_offset;
      l->filesz = ph.p_filesz;
      l->memsz = ph.p_memsz;
      l->flags = ph.p_flags;
    }
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
    if (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM) {
      if (sh.sh_type == SHT_SYMTAB)
        e->has_symtab = 1;
      else
        e->has_dynsym = 1;
      if (read_symbols(e, elf, scn, &sh)) {
        err = ENOMEM;
        goto cleanup;
      }
    } else if (sh.sh_type == SHT_NOTE && !e->build_id[0]) {
      Elf_Data *d = elf_getdata(scn, NULL);
      if (d)
        read_build_id(e, d);
    } else if (name && strcmp(name, ".gnu_debuglink") == 0) {
      Elf_Data *d = elf_getdata(scn, NULL);
      if (d && d->d_buf)
        read_debuglink(e, d);
    }
  }
  pm_symtab_finish(&e->tab);
  if (eh.e_machine == EM_X86_64)
    check_frame_pointers(e, elf);

cleanup:
  if (elf)
    elf_end(elf);
  if (fd >= 0)
    close(fd);
  if (err) {
    pm_elf_destroy(e);
    return err;
  }
  *out = e;
  return 0;
}

/// open_elf(path) -> elf | nil, err, errno
static int pm_sym_open_elf(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  struct pm_elf *e;
  int err = pm_elf_open(path, &e);
  if (err) {
    lua_pushnil(L);
    if (err == ELIBBAD)
      lua_pushstring(L, "elf: libelf version mismatch");
    else if (err == ENOEXEC)
      lua_pushfstring(L, "elf: %s: not an ELF file", path);
    else
      lua_pushfstring(L, "elf: %s: %s", path, strerror(err));
    lua_pushinteger(L, err);
    return err == ELIBBAD ? 2 : 3;
  }
  struct pm_elf **ud = lua_newuserdata(L, sizeof *ud);
  *ud = e;
  luaL_getmetatable(L, PM_META_ELF);
  lua_setmetatable(L, -2);
  return 1;
}

static int elf_close(lua_State *L)
{
  struct pm_elf **ud = luaL_checkudata(L, 1, PM_META_ELF);
  if (*ud) {
    pm_elf_destroy(*ud);
    *ud = NULL;
  }
  return 0;
}

static int elf_tostring(lua_State *L)
{
  struct pm_elf **ud = luaL_checkudata(L, 1, PM_META_ELF);
  if (*ud)
    lua_pushfstring(L, "<" PM_META_ELF " %s>", (*ud)->path);
  else
    lua_pushstring(L, "<" PM_META_ELF " closed>");
  return 1;
}

/// elf:info() -> {path, type = "exec"|"dyn"|..., build_id, debuglink,
/// debuglink_crc, has_symtab, has_dynsym, nsyms, loads = {{vaddr, offset,
/// filesz, memsz, exec}}, fp_checked, fp_with}
static int elf_info(lua_State *L)
{
  struct pm_elf *e = elf_check(L, 1);
  lua_newtable(L);
  lua_pushstring(L, e->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, e->type == ET_EXEC ? "exec" : e->type == ET_DYN ? "dyn" : e->type == ET_REL ? "rel" : "other");
  lua_setfield(L, -2, "type");
  if (e->build_id[0]) {
    lua_pushstring(L, e->build_id);
    lua_setfield(L, -2, "build_id");
  }
  if (e->debuglink[0]) {
    lua_pushstring(L, e->debuglink);
    lua_setfield(L, -2, "debuglink");
    lua_pushnumber(L, e->debuglink_crc);
    lua_setfield(L, -2, "debuglink_crc");
  }
  lua_pushboolean(L, e->has_symtab);
  lua_setfield(L, -2, "has_symtab");
  lua_pushboolean(L, e->has_dynsym);
  lua_setfield(L, -2, "has_dynsym");
  lua_pushnumber(L, (lua_Number)e->tab.n);
  lua_setfield(L, -2, "nsyms");
  lua_pushnumber(L, e->fp_checked);
  lua_setfield(L, -2, "fp_checked");
  lua_pushnumber(L, e->fp_with);
  lua_setfield(L, -2, "fp_with");
  lua_createtable(L, (int)e->nloads, 0);  // [info, loads]
  for (size_t i = 0; i < e->nloads; i++) {
    lua_createtable(L, 0, 5);
    lua_pushnumber(L, (lua_Number)e->loads[i].vaddr);
    lua_setfield(L, -2, "vaddr");
    lua_pushnumber(L, (lua_Number)e->loads[i].offset);
    lua_setfield(L, -2, "offset");
    lua_pushnumber(L, (lua_Number)e->loads[i].filesz);
    lua_setfield(L, -2, "filesz");
    lua_pushnumber(L, (lua_Number)e->loads[i].memsz);
    lua_setfield(L, -2, "memsz");
    lua_pushboolean(L, (e->loads[i].flags & PF_X) != 0);
    lua_setfield(L, -2, "exec");
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "loads");  // [info]
  return 1;
}

/* File offset -> link-time virtual address through the PT_LOAD segment
 * that holds it; (uint64_t)-1 when no segment does. */
uint64_t pm_elf_offset_to_vaddr(const struct pm_elf *e, uint64_t off)
{
  for (size_t i = 0; i < e->nloads; i++) {
    const struct pm_load *l = &e->loads[i];
    if (off >= l->offset && off < l->offset + (l->memsz > l->filesz ? l->memsz : l->filesz))
      return off - l->offset + l->vaddr;
  }
  return (uint64_t)-1;
}

/// elf:vaddr(file_offset) -> link-time address, or nil when no PT_LOAD holds it
static int elf_vaddr(lua_State *L)
{
  struct pm_elf *e = elf_check(L, 1);
  uint64_t v = pm_elf_offset_to_vaddr(e, check_addr(L, 2));
  if (v == (uint64_t)-1)
    return 0;
  push_addr(L, v);
  return 1;
}

static int push_lookup(lua_State *L, const struct pm_symtab *t, uint64_t addr)
{
  const struct pm_sym *s = pm_symtab_find(t, addr);
  if (!s)
    return 0;
  lua_pushstring(L, t->pool + s->name);
  lua_pushnumber(L, (lua_Number)(addr - s->addr));
  return 2;
}

/// elf:lookup(vaddr) -> name, offset | nil   (vaddr: link-time address)
static int elf_lookup(lua_State *L)
{
  struct pm_elf *e = elf_check(L, 1);
  return push_lookup(L, &e->tab, check_addr(L, 2));
}

/// elf:resolve(offsets [, via]) -> names: the batch form for a list of *file
/// offsets* inside the mapped file (address - map start + map offset). Each
/// entry is the symbol name, or false when no symbol covers it. `via` is the
/// elf whose PT_LOAD segments turn offsets into addresses (the mapped binary,
/// when `elf` is its separate debug file: their segment offsets differ).
static int elf_resolve(lua_State *L)
{
  struct pm_elf *e = elf_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const struct pm_elf *via = lua_isnoneornil(L, 3) ? e : elf_check(L, 3);
  int n = (int)lua_objlen(L, 2);
  lua_createtable(L, n, 0);  // [elf, offsets, names]
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    uint64_t off = check_addr(L, -1);
    lua_pop(L, 1);
    uint64_t v = pm_elf_offset_to_vaddr(via, off);
    const struct pm_sym *s = v == (uint64_t)-1 ? NULL : pm_symtab_find(&e->tab, v);
    if (s)
      lua_pushstring(L, e->tab.pool + s->name);
    else
      lua_pushboolean(L, 0);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/// elf:lookup_data(vaddr) -> name | false, offset, section: the data object
/// (STT_OBJECT, STT_COMMON) covering a link-time address, as a futex or
/// lock's address names a global, and the section holding it (".bss").
/// The loaded table keeps functions only; data lookups are rare (a few per
/// report), so this reads the file's symbols again instead of keeping them.
static int elf_lookup_data(lua_State *L)
{
  struct pm_elf *e = elf_check(L, 1);
  uint64_t v = check_addr(L, 2);
  int fd = open(e->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return pm_push_errno(L, e->path, errno);
  Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
  size_t shstrndx = 0;
  if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
    shstrndx = 0;
  char best[256] = "", section[64] = "";
  uint64_t best_addr = 0;
  int best_rank = -1;  /* sized beats unsized, .symtab beats .dynsym */
  Elf_Scn *scn = NULL;
  GElf_Shdr sh;
  while (elf && (scn = elf_nextscn(elf, scn)) != NULL) {
    if (!gelf_getshdr(scn, &sh))
      continue;
    const char *sname = shstrndx ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
    if ((sh.sh_flags & SHF_ALLOC) && sh.sh_type != SHT_NULL && v >= sh.sh_addr &&
        v < sh.sh_addr + sh.sh_size && sname)
      snprintf(section, sizeof section, "%s", sname);
    if (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM)
      continue;
    Elf_Data *data = elf_getdata(scn, NULL);
    if (!data || sh.sh_entsize == 0)
      continue;
    size_t count = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < count; i++) {
      GElf_Sym s;
      if (!gelf_getsym(data, (int)i, &s))
        continue;
      int type = GELF_ST_TYPE(s.st_info);
      if ((type != STT_OBJECT && type != STT_COMMON) || s.st_shndx == SHN_UNDEF)
        continue;
      if (v < s.st_value || (s.st_size ? v - s.st_value >= s.st_size : v != s.st_value))
        continue;
      int rank = (s.st_size ? 2 : 0) + (sh.sh_type == SHT_SYMTAB);
      if (rank <= best_rank)
        continue;
      const char *name = elf_strptr(elf, sh.sh_link, s.st_name);
      if (!name || !*name)
        continue;
      size_t len = strcspn(name, "@");  /* "environ@GLIBC_2.2.5" */
      if (len >= sizeof best)
        len = sizeof best - 1;
      memcpy(best, name, len);
      best[len] = 0;
      best_addr = s.st_value;
      best_rank = rank;
    }
  }
  if (elf)
    elf_end(elf);
  close(fd);
  if (best_rank >= 0)
    lua_pushstring(L, best);
  else
    lua_pushboolean(L, 0);
  lua_pushnumber(L, best_rank >= 0 ? (lua_Number)(v - best_addr) : 0);
  if (section[0])
    lua_pushstring(L, section);
  else
    lua_pushnil(L);
  return 3;
}

/// crc32_file(path) -> crc (the .gnu_debuglink checksum) | nil, err, errno
static int pm_sym_crc32_file(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return pm_push_errno(L, path, errno);
  unsigned char buf[65536];
  uLong crc = crc32(0L, Z_NULL, 0);
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0)
    crc = crc32(crc, buf, (uInt)r);
  int err = r < 0 ? errno : 0;
  close(fd);
  if (err)
    return pm_push_errno(L, path, err);
  lua_pushnumber(L, (lua_Number)crc);
  return 1;
}

/* ---- kallsyms ---------------------------------------------------------------- */

static void ksyms_destroy(struct pm_ksyms *k)
{
  if (!k)
    return;
  pm_symtab_free(&k->tab);
  free(k);
}

static int ksyms_read_binary(FILE *f, struct pm_ksyms *k);

/// load_kallsyms([path]) -> ksyms | nil, err, errno   (text symbols only)
static int pm_sym_load_kallsyms(lua_State *L)
{
  const char *path = luaL_optstring(L, 1, "/proc/kallsyms");
  FILE *f = fopen(path, "re");
  if (!f)
    return pm_push_errno(L, path, errno);
  setvbuf(f, NULL, _IOFBF, 1 << 20);
  struct pm_ksyms *k = calloc(1, sizeof *k);
  int err = 0, nonzero = 0;
  char line[512];
  if (!k) {
    err = ENOMEM;
    goto cleanup;
  }
  int c = fgetc(f);
  ungetc(c, f);
  if (c == KSYMS_MAGIC[0]) {
    err = ksyms_read_binary(f, k);
    goto cleanup;
  }
  while (fgets(line, sizeof line, f)) {
    char *end;
    unsigned long long a = strtoull(line, &end, 16);
    if (end == line || end[0] != ' ' || !end[1] || end[2] != ' ')
      continue;
    char type = end[1];
    if (type != 't' && type != 'T' && type != 'w' && type != 'W')
      continue;
    char *name = end + 3;
    name[strcspn(name, "\t\n")] = 0;
    if (a)
      nonzero = 1;
    if (strcmp(name, "_etext") == 0)
      k->etext = a;
    if (pm_symtab_add(&k->tab, a, 0, name, type == 'T' || type == 'W')) {
      err = ENOMEM;
      goto cleanup;
    }
  }
  if (ferror(f))
    err = EIO;
  pm_symtab_finish(&k->tab);
  k->restricted = k->tab.n > 0 && !nonzero;

cleanup:
  fclose(f);
  if (err) {
    ksyms_destroy(k);
    return pm_push_errno(L, path, err);
  }
  struct pm_ksyms **ud = lua_newuserdata(L, sizeof *ud);
  *ud = k;
  luaL_getmetatable(L, PM_META_KSYMS);
  lua_setmetatable(L, -2);
  return 1;
}

static struct pm_ksyms *ksyms_check(lua_State *L, int idx)
{
  struct pm_ksyms **ud = luaL_checkudata(L, idx, PM_META_KSYMS);
  luaL_argcheck(L, *ud != NULL, idx, "ksyms is closed");
  return *ud;
}

static int ksyms_close(lua_State *L)
{
  struct pm_ksyms **ud = luaL_checkudata(L, 1, PM_META_KSYMS);
  if (*ud) {
    ksyms_destroy(*ud);
    *ud = NULL;
  }
  return 0;
}

static int ksyms_tostring(lua_State *L)
{
  struct pm_ksyms **ud = luaL_checkudata(L, 1, PM_META_KSYMS);
  lua_pushfstring(L, "<" PM_META_KSYMS " %d symbols>", *ud ? (int)(*ud)->tab.n : 0);
  return 1;
}

/// ksyms:save(path) -> true | nil, err, errno: writes the table in a binary
/// form load_kallsyms reads back in a few ms (mode 0600: kernel addresses
/// are sensitive), a cache that spares the next run the kernel's slow
/// /proc/kallsyms generation and our parse of it.
static int ksyms_save(lua_State *L)
{
  struct pm_ksyms *k = ksyms_check(L, 1);
  const char *path = luaL_checkstring(L, 2);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return pm_push_errno(L, path, errno);
  luaL_argcheck(L, k->etext != 0, 1, "no _etext in this table: nothing to save");
  /* only the core kernel: BPF programs and modules come and go */
  size_t n = 0;
  while (n < k->tab.n && k->tab.syms[n].addr < k->etext)
    n++;
  uint64_t hdr[3] = { n, k->tab.pool_len, k->etext };
  struct iovec {
    const void *p;
    size_t n;
  } parts[] = {
    { KSYMS_MAGIC, 8 }, { hdr, sizeof hdr },
    { k->tab.syms, n * sizeof *k->tab.syms }, { k->tab.pool, k->tab.pool_len },
  };
  int err = 0;
  for (size_t i = 0; i < sizeof parts / sizeof parts[0] && !err; i++) {
    const char *p = parts[i].p;
    size_t left = parts[i].n;
    while (left > 0) {
      ssize_t w = write(fd, p, left);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        err = errno;
        break;
      }
      p += w;
      left -= (size_t)w;
    }
  }
  if (close(fd) != 0 && !err)
    err = errno;
  if (err)
    return pm_push_errno(L, path, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Reads a table written by ksyms_save; 0, or an errno (EINVAL: not one). */
static int ksyms_read_binary(FILE *f, struct pm_ksyms *k)
{
  char magic[8];
  uint64_t hdr[3];
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, KSYMS_MAGIC, 8) != 0)
    return EINVAL;
  if (fread(hdr, sizeof hdr, 1, f) != 1 || hdr[0] > (1u << 26) || hdr[1] > (1u << 30))
    return EINVAL;
  k->tab.syms = malloc((hdr[0] ? hdr[0] : 1) * sizeof *k->tab.syms);
  k->tab.pool = malloc(hdr[1] ? hdr[1] : 1);
  if (!k->tab.syms || !k->tab.pool)
    return ENOMEM;
  k->tab.n = k->tab.cap = hdr[0];
  k->tab.pool_len = k->tab.pool_cap = hdr[1];
  if (fread(k->tab.syms, sizeof *k->tab.syms, hdr[0], f) != hdr[0] ||
      fread(k->tab.pool, 1, hdr[1], f) != hdr[1])
    return EINVAL;
  for (size_t i = 0; i < k->tab.n; i++)
    if (k->tab.syms[i].name >= hdr[1] || (i && k->tab.syms[i].addr < k->tab.syms[i - 1].addr))
      return EINVAL;
  if (hdr[1] && k->tab.pool[hdr[1] - 1] != 0)
    return EINVAL;
  k->etext = hdr[2];
  k->core_only = 1;
  return 0;
}

/// ksyms:info() -> {nsyms, restricted, core_only}
static int ksyms_info(lua_State *L)
{
  struct pm_ksyms *k = ksyms_check(L, 1);
  lua_newtable(L);
  lua_pushnumber(L, (lua_Number)k->tab.n);
  lua_setfield(L, -2, "nsyms");
  lua_pushboolean(L, k->restricted);
  lua_setfield(L, -2, "restricted");
  lua_pushboolean(L, k->core_only);
  lua_setfield(L, -2, "core_only");
  return 1;
}

/// ksyms:lookup(addr) -> name, offset | nil   (addr: number or "0x..." string)
static int ksyms_lookup(lua_State *L)
{
  struct pm_ksyms *k = ksyms_check(L, 1);
  uint64_t a = check_addr(L, 2);
  if (k->restricted || (k->core_only && a >= k->etext))
    return 0;
  return push_lookup(L, &k->tab, a);
}

/// ksyms:resolve_packed(bytes) -> names, beyond: a packed u64 stack (BPF
/// stack map value) to names, innermost first, stopping at the first 0; false
/// for an address no symbol covers. `beyond` counts addresses past the core
/// kernel that a saved (core-only) table cannot name: load the full table.
static int ksyms_resolve_packed(lua_State *L)
{
  struct pm_ksyms *k = ksyms_check(L, 1);
  size_t len;
  const char *b = luaL_checklstring(L, 2, &len);
  lua_createtable(L, (int)(len / 8), 0);
  int n = 0, beyond = 0;
  for (size_t i = 0; i + 8 <= len; i += 8) {
    uint64_t a;
    memcpy(&a, b + i, 8);
    if (a == 0)
      break;
    const struct pm_sym *s = NULL;
    if (k->core_only && a >= k->etext)
      beyond++;
    else if (!k->restricted)
      s = pm_symtab_find(&k->tab, a);
    if (s)
      lua_pushstring(L, k->tab.pool + s->name);
    else
      lua_pushboolean(L, 0);
    lua_rawseti(L, -2, ++n);
  }
  lua_pushinteger(L, beyond);
  return 2;
}

static const luaL_Reg elf_methods[] = {
  { "info", elf_info },
  { "lookup", elf_lookup },
  { "lookup_data", elf_lookup_data },
  { "resolve", elf_resolve },
  { "vaddr", elf_vaddr },
  { "close", elf_close },
  { "__gc", elf_close },
  { "__tostring", elf_tostring },
  { NULL, NULL },
};

static const luaL_Reg ksyms_methods[] = {
  { "info", ksyms_info },
  { "lookup", ksyms_lookup },
  { "resolve_packed", ksyms_resolve_packed },
  { "save", ksyms_save },
  { "close", ksyms_close },
  { "__gc", ksyms_close },
  { "__tostring", ksyms_tostring },
  { NULL, NULL },
};

static const luaL_Reg pm_sym_funcs[] = {
  { "open_elf", pm_sym_open_elf },
  { "load_kallsyms", pm_sym_load_kallsyms },
  { "unpack", pm_sym_unpack },
  { "crc32_file", pm_sym_crc32_file },
  { NULL, NULL },
};

int luaopen_pm_sym(lua_State *L)
{
  pm_build_meta(L, PM_META_ELF, elf_methods);
  pm_build_meta(L, PM_META_KSYMS, ksyms_methods);
  lua_newtable(L);
  luaL_register(L, NULL, pm_sym_funcs);
  return 1;
}
