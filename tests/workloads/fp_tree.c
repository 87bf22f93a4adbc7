/* nofp_tree (same arguments, same call tree) built -O2 with frame pointers,
 * as a program built for profiling is: its own frames walk by frame
 * pointer, glibc's (qsort, read) have none, so only CFI gets past them. */
#include "nofp_tree.c"
