/* threads100: N threads (default 100) for the thread-state sampler.
 *   threads100 [N] [sleep|mutex|cond] [seconds] [nap_ms]
 * sleep (default): each thread naps nap_ms (default 100), then does a few
 *   µs of work — mostly sleeping, never in futex; the sampler's cost
 *   benchmark target.
 * mutex: one lock held for 2 ms at a time by whoever has it, so nearly all
 *   threads are blocked in futex waits at any moment.
 * cond: an idle pool: every thread waits on a condition variable that is
 *   never signalled (futex waits that are not lock contention).
 * Runs for `seconds` (default 60) or until killed; prints "ready" once all
 * threads exist. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static int mutex_mode, cond_mode;
static long nap = 100000000; /* ns between a sleeping thread's wake-ups */
static volatile int stop;

static void nap_ns(long ns)
{
  struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
  nanosleep(&ts, NULL);
}

static void spin_us(long us)
{
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  do {
    clock_gettime(CLOCK_MONOTONIC, &b);
  } while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}

static void *worker(void *arg)
{
  (void)arg;
  if (cond_mode) {
    pthread_mutex_lock(&lock);
    while (!stop)
      pthread_cond_wait(&idle, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
  }
  while (!stop) {
    if (mutex_mode) {
      pthread_mutex_lock(&lock);
      nap_ns(2000000); /* hold the lock while sleeping: the others queue on it */
      pthread_mutex_unlock(&lock);
    } else {
      nap_ns(nap);
      spin_us(5);
    }
  }
  return NULL;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 100;
  mutex_mode = argc > 2 && strcmp(argv[2], "mutex") == 0;
  cond_mode = argc > 2 && strcmp(argv[2], "cond") == 0;
  int secs = argc > 3 ? atoi(argv[3]) : 60;
  if (argc > 4)
    nap = atol(argv[4]) * 1000000L;
  if (n < 1 || n > 10000 || nap <= 0) {
    fprintf(stderr, "threads100: N must be 1..10000, nap_ms > 0\n");
    return 2;
  }
  pthread_t *t = calloc((size_t)n, sizeof *t);
  if (!t)
    return 1;
  for (int i = 0; i < n; i++) {
    if (pthread_create(&t[i], NULL, worker, NULL) != 0) {
      perror("threads100: pthread_create");
      return 1;
    }
  }
  printf("ready\n");
  fflush(stdout);
  sleep((unsigned)secs);
  pthread_mutex_lock(&lock);
  stop = 1;
  pthread_cond_broadcast(&idle);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
  free(t);
  return 0;
}
