/* hot_thread [spinners] [idlers] [seconds]: `spinners` threads named hot0,
 * hot1, ... spin on arithmetic; `idlers` threads named idle0, ... sleep; the
 * main thread only waits. With one spinner on a multi-core machine it is the
 * single hot thread: CPU-bound although the other cores idle. The spinners
 * are never the main thread, so a tool must name the thread, not the pid. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double deadline;
static volatile double sink;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *spin(void *arg)
{
  char name[16];
  snprintf(name, sizeof name, "hot%ld", (long)arg);
  pthread_setname_np(pthread_self(), name);
  double x = 1.0;
  while (now() < deadline) {
    for (int i = 0; i < 100000; i++)
      x = x * 1.0000001 + 0.5 / (x + 1.0);
    sink = x;
  }
  return NULL;
}

static void *idle(void *arg)
{
  char name[16];
  snprintf(name, sizeof name, "idle%ld", (long)arg);
  pthread_setname_np(pthread_self(), name);
  while (now() < deadline)
    usleep(100000);
  return NULL;
}

int main(int argc, char **argv)
{
  int spinners = argc > 1 ? atoi(argv[1]) : 1;
  int idlers = argc > 2 ? atoi(argv[2]) : 3;
  double seconds = argc > 3 ? atof(argv[3]) : 10;
  if (spinners < 0 || spinners > 256 || idlers < 0 || idlers > 256 || seconds <= 0) {
    fprintf(stderr, "usage: hot_thread [spinners 0..256] [idlers 0..256] [seconds]\n");
    return 2;
  }
  deadline = now() + seconds;
  int n = spinners + idlers;
  pthread_t *t = calloc(n ? n : 1, sizeof *t);
  if (!t)
    return 1;
  for (long i = 0; i < spinners; i++)
    pthread_create(&t[i], NULL, spin, (void *)i);
  for (long i = 0; i < idlers; i++)
    pthread_create(&t[spinners + i], NULL, idle, (void *)i);
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
  free(t);
  return 0;
}
