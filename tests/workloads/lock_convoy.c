/* lock_convoy threads seconds gate linger: a lock convoy on one global
 * mutex, g_lock. Waits until the file `gate` exists (so tracers can attach
 * before the first wait), then `threads` workers take g_lock in
 * critical_section() for `seconds`; after they are joined the process
 * lingers `linger` seconds, idle, so its symbols can still be read. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static double deadline;
static volatile double shared_state = 1.0;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* takes g_lock, works ~50-100 us inside it, releases it */
void critical_section(void)
{
  pthread_mutex_lock(&g_lock);
  double x = shared_state;
  for (int i = 0; i < 20000; i++)
    x = x * 1.0000001 + 0.5 / (x + 1.0);
  shared_state = x;
  pthread_mutex_unlock(&g_lock);
}

static void *worker(void *arg)
{
  (void)arg;
  while (now() < deadline)
    critical_section();
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc != 5) {
    fprintf(stderr, "usage: lock_convoy threads seconds gate linger\n");
    return 2;
  }
  int nthreads = atoi(argv[1]);
  double seconds = atof(argv[2]), linger = atof(argv[4]);
  if (nthreads < 2 || nthreads > 1024 || seconds <= 0)
    return 2;
  while (access(argv[3], F_OK) != 0)
    usleep(10000);
  deadline = now() + seconds;
  pthread_t *t = calloc(nthreads, sizeof *t);
  if (!t)
    return 1;
  for (int i = 0; i < nthreads; i++)
    pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < nthreads; i++)
    pthread_join(t[i], NULL);
  free(t);
  if (linger > 0)
    usleep((useconds_t)(linger * 1e6));
  return 0;
}
