/* false_sharing MODE [threads] [iterations]: each thread adds 1 to its own
 * counter `iterations` times (default 2 threads, 50 million). MODE packed:
 * the counters sit side by side in one 64-byte cache line, so every add by
 * one thread takes the line from the others' cores (false sharing); padded:
 * each counter has a cache line of its own. Prints one line:
 *   MODE threads N iterations I elapsed_s E cpu_s C ns_per_add X
 * where ns_per_add is the wall time over iterations (per thread) and cpu_s
 * the process's CPU time (all threads). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define LINE 64

struct padded { volatile long v; char pad[LINE - sizeof(long)]; };

static volatile long packed[MAX_THREADS] __attribute__((aligned(LINE)));
static struct padded padded[MAX_THREADS] __attribute__((aligned(LINE)));
static long iterations = 50000000;
static int use_padded;

static double clock_s(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *add(void *arg)
{
  long i = (long)arg;
  volatile long *c = use_padded ? &padded[i].v : &packed[i];
  for (long n = 0; n < iterations; n++)
    (*c)++;
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc < 2 || (strcmp(argv[1], "packed") && strcmp(argv[1], "padded"))) {
    fprintf(stderr, "usage: false_sharing packed|padded [threads] [iterations]\n");
    return 2;
  }
  use_padded = !strcmp(argv[1], "padded");
  int threads = argc > 2 ? atoi(argv[2]) : 2;
  if (argc > 3) iterations = atol(argv[3]);
  if (threads < 1 || threads > MAX_THREADS || iterations < 1) {
    fprintf(stderr, "false_sharing: threads 1..%d, iterations >= 1\n", MAX_THREADS);
    return 2;
  }
  pthread_t t[MAX_THREADS];
  double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
  for (long i = 0; i < threads; i++)
    pthread_create(&t[i], NULL, add, (void *)i);
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  double el = clock_s(CLOCK_MONOTONIC) - t0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
  printf("%s threads %d iterations %ld elapsed_s %.6f cpu_s %.6f ns_per_add %.3f\n", argv[1], threads, iterations,
         el, cpu, el / iterations * 1e9);
  return 0;
}
