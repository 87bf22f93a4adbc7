/* alloc_loop [pairs] [result_file]: malloc/free pairs as fast as it can,
 * from a few frames down (so a stack walk has something to walk), and the
 * time each pair took: "ns_per_pair N" in result_file (or on stdout). The
 * allocation-heavy program of the memory profiler's benchmark. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile long sink;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void alloc_pair(long i)
{
  char *p = malloc(16 + (size_t)(i & 255));
  p[0] = (char)i;
  sink += p[0];
  free(p);
}

void batch(long n)
{
  for (long i = 0; i < n; i++)
    alloc_pair(i);
}

void run(long n) { batch(n); }

int main(int argc, char **argv)
{
  long pairs = argc > 1 ? atol(argv[1]) : 1000000;
  if (pairs <= 0) {
    fprintf(stderr, "usage: alloc_loop [pairs] [result_file]\n");
    return 2;
  }
  batch(1000); /* warm: first-touch of the heap is not an allocator cost */
  double t0 = now();
  run(pairs);
  double ns = (now() - t0) * 1e9 / (double)pairs;
  FILE *f = argc > 2 ? fopen(argv[2], "w") : stdout;
  if (!f)
    return 1;
  fprintf(f, "ns_per_pair %.1f\n", ns);
  if (f != stdout)
    fclose(f);
  return 0;
}
