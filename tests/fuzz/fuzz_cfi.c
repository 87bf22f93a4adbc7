/* libFuzzer harness for the CFI compiler (runtime/cfi.c, through
 * runtime/cfi.h): the input is a .eh_frame or a .debug_frame section (the
 * first byte says which, or both halves), as an object a profiled process
 * maps could hold. It must never crash or read out of bounds, and whatever
 * table it makes must be one the walker can trust: rows strictly increasing,
 * every kind known, every row found again by lookup, a NONE row last. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  uint8_t mode = data[0] % 3;
  data++;
  size--;
  /* a copy of exactly the section's bytes: ASan sees any read past them */
  uint8_t *sec = malloc(size ? size : 1);
  if (!sec)
    abort();
  memcpy(sec, data, size);
  struct pm_cfi_input in = { 0 };
  in.eh_addr = 0x10000;
  in.text_addr = 0x1000;
  in.got_addr = 0x20000;
  if (mode == 0) {
    in.eh_frame = sec;
    in.eh_size = size;
  } else if (mode == 1) {
    in.debug_frame = sec;
    in.debug_size = size;
  } else {
    in.eh_frame = sec;
    in.eh_size = size / 2;
    in.debug_frame = sec + size / 2;
    in.debug_size = size - size / 2;
  }
  struct pm_cfi_table *t = NULL;
  int err = pm_cfi_compile_frames(&in, &t);
  if (err == 0) {
    if (!t || t->n == 0 || t->rows[t->n - 1].cfa != PM_CFI_NONE)
      abort();
    for (size_t i = 0; i < t->n; i++) {
      const struct pm_cfi_row *r = &t->rows[i];
      if (r->cfa >= PM_CFI_KINDS || r->rbp > PM_CFI_RBP_LOST)
        abort();
      if (i && r->pc <= t->rows[i - 1].pc)
        abort();
      if (pm_cfi_lookup(t, t->base + r->pc) != r)
        abort();
    }
    if (t->base && pm_cfi_lookup(t, t->base - 1) != NULL)
      abort();
    pm_cfi_free(t);
  } else if (t) {
    abort();
  }
  free(sec);
  return 0;
}
