/* cpu_burn [threads] [seconds]: more runnable threads than cores, each
 * spinning on arithmetic until the deadline, so the run queue stays longer
 * than the CPU count (CPU saturation, not just utilisation). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double deadline;
static volatile double sink;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *burn(void *arg)
{
  (void)arg;
  double x = 1.0;
  while (now() < deadline) {
    for (int i = 0; i < 100000; i++)
      x = x * 1.0000001 + 0.5 / (x + 1.0);
    sink = x;
  }
  return NULL;
}

int main(int argc, char **argv)
{
  int nthreads = argc > 1 ? atoi(argv[1]) : 4;
  double seconds = argc > 2 ? atof(argv[2]) : 10;
  if (nthreads < 1 || nthreads > 1024 || seconds <= 0) {
    fprintf(stderr, "usage: cpu_burn [threads 1..1024] [seconds]\n");
    return 2;
  }
  deadline = now() + seconds;
  pthread_t *t = calloc(nthreads, sizeof *t);
  if (!t)
    return 1;
  for (int i = 1; i < nthreads; i++)
    pthread_create(&t[i], NULL, burn, NULL);
  burn(NULL);
  for (int i = 1; i < nthreads; i++)
    pthread_join(t[i], NULL);
  free(t);
  return 0;
}
