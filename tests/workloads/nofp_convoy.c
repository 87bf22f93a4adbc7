/* lock_convoy built -O2 -fomit-frame-pointer (the Makefile's nofp_ rule):
 * the waiters' stacks go through code without frame pointers, theirs and
 * glibc's. Same arguments as lock_convoy. */
#include "lock_convoy.c"
