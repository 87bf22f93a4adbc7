/* leaky (same arguments, same counter file) built -O2 -fomit-frame-pointer,
 * as distributions build, for the memory profiler's DWARF-unwinding test.
 * Its functions are kept out of line so the leak's stack still names
 * main -> cache_put -> malloc. */
__attribute__((noinline)) void cache_put(long key);
__attribute__((noinline)) void churn(int n);
__attribute__((noinline)) void grow_buffer(void);

#include "leaky.c"
