/* lock_loop [pairs] [result_file] [gate]: uncontended pthread_mutex_lock/
 * unlock pairs as fast as it can, from a few frames down (so a stack walk
 * has something to walk), and the time each pair took: "ns_per_pair N" in
 * result_file (or on stdout). With a gate it first waits until that file
 * exists (a tracer attaches to its pid meanwhile). The program of the
 * lock-hold tracer's benchmark. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static volatile long counter;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void lock_pair(void)
{
  pthread_mutex_lock(&m);
  counter++;
  pthread_mutex_unlock(&m);
}

void batch(long n)
{
  for (long i = 0; i < n; i++)
    lock_pair();
}

void run(long n) { batch(n); }

int main(int argc, char **argv)
{
  long pairs = argc > 1 ? atol(argv[1]) : 1000000;
  if (pairs <= 0) {
    fprintf(stderr, "usage: lock_loop [pairs] [result_file]\n");
    return 2;
  }
  if (argc > 3)
    while (access(argv[3], F_OK) != 0)
      usleep(2000);
  batch(100);
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
