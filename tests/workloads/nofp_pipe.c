/* pipe_waiter built as distributions build (-O2 -fomit-frame-pointer): its
 * off-CPU stacks go through glibc's read() and nanosleep(), which have no frame
 * pointers either. */
#include "pipe_waiter.c"
