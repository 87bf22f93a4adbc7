/* Internal to runtime/sym.c: the symbol table and the ELF reader without
 * their Lua wrappers, declared here so the C unit tests
 * (tests/c/test_sym.c) call them directly. Not part of the Lua interface. */
#ifndef PM_SYM_INTERNAL_H
#define PM_SYM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct pm_sym {
  uint64_t addr;
  uint64_t size;
  uint32_t name;  /* offset into the string pool */
  uint8_t global;
};

/* zero it to start empty */
struct pm_symtab {
  struct pm_sym *syms;
  size_t n, cap;
  char *pool;
  size_t pool_len, pool_cap;
};

struct pm_load {
  uint64_t vaddr, offset, filesz, memsz;
  uint32_t flags;
};

struct pm_elf {
  struct pm_symtab tab;
  struct pm_load *loads;
  size_t nloads;
  char *path;
  char build_id[65];
  char debuglink[256];
  uint32_t debuglink_crc;
  int has_symtab, has_dynsym, type;
  /* frame pointer check over function prologues in executable sections */
  unsigned fp_checked, fp_with;
};

/// Adds a symbol (its "@VERSION" suffix dropped); -ENOMEM on failure.
int pm_symtab_add(struct pm_symtab *t, uint64_t addr, uint64_t size, const char *name, int global);
/// Sorts and keeps one symbol per address (the sized, global one).
void pm_symtab_finish(struct pm_symtab *t);
/// The symbol covering addr: inside a sized symbol, or the nearest
/// preceding unsized one; NULL when none. Name: t->pool + sym->name.
const struct pm_sym *pm_symtab_find(const struct pm_symtab *t, uint64_t addr);
void pm_symtab_free(struct pm_symtab *t);

/// Reads an ELF file's function symbols, PT_LOAD segments, build-id,
/// .gnu_debuglink and frame pointer use. 0 and *out, or an errno (ENOEXEC:
/// not ELF, ELIBBAD: libelf version mismatch).
int pm_elf_open(const char *path, struct pm_elf **out);
void pm_elf_destroy(struct pm_elf *e);
/// File offset -> link-time address through the PT_LOAD segment holding
/// it; (uint64_t)-1 when none does.
uint64_t pm_elf_offset_to_vaddr(const struct pm_elf *e, uint64_t off);

#endif
