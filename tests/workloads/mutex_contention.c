/* mutex_contention [threads] [seconds]: threads (8 by default) take one
 * pthread mutex and do their work inside it, so at any moment one thread
 * works and the others sleep in futex waits. Cores are mostly idle: the
 * bottleneck is the lock, not the CPU. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static double deadline;
static volatile double shared_state = 1.0;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void critical_work(void)
{
  double x = shared_state;
  for (int i = 0; i < 20000; i++)  /* ~50-100 us inside the lock */
    x = x * 1.0000001 + 0.5 / (x + 1.0);
  shared_state = x;
}

static void *worker(void *arg)
{
  (void)arg;
  while (now() < deadline) {
    pthread_mutex_lock(&lock);
    critical_work();
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  int nthreads = argc > 1 ? atoi(argv[1]) : 8;
  double seconds = argc > 2 ? atof(argv[2]) : 10;
  if (nthreads < 2 || nthreads > 1024 || seconds <= 0) {
    fprintf(stderr, "usage: mutex_contention [threads 2..1024] [seconds]\n");
    return 2;
  }
  deadline = now() + seconds;
  pthread_t *t = calloc(nthreads, sizeof *t);
  if (!t)
    return 1;
  for (int i = 0; i < nthreads; i++)
    pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < nthreads; i++)
    pthread_join(t[i], NULL);
  free(t);
  return 0;
}
