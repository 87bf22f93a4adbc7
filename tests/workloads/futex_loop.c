/* futex_loop [calls]: calls FUTEX_WAIT on a word whose value never matches,
 * so each call enters the kernel's wait path and returns EAGAIN at once: the
 * cheapest complete futex wait, for measuring what a tracer adds to one.
 * Prints the mean ns per call. */
#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  long calls = argc > 1 ? atol(argv[1]) : 1000000;
  if (calls <= 0) {
    fprintf(stderr, "usage: futex_loop [calls]\n");
    return 2;
  }
  static unsigned int word = 1;
  long eagain = 0;
  double t0 = now();
  for (long i = 0; i < calls; i++)
    if (syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0) < 0 && errno == EAGAIN)
      eagain++;
  double t = now() - t0;
  printf("futex_loop: %ld calls, %ld EAGAIN, %.1f ns/call\n", calls, eagain, t * 1e9 / calls);
  return eagain == calls ? 0 : 1;
}
