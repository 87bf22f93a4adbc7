/* pingpong [rounds]: two threads pass a byte back and forth over two pipes,
 * so every round is two blocking reads and two context switches (more when
 * they run on different CPUs). Prints the mean ns per round: what an
 * off-CPU tracer adds to a blocking switch. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static long rounds;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *echo(void *arg)
{
  (void)arg;
  char c;
  for (long i = 0; i < rounds; i++)
    if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
      break;
  return NULL;
}

int main(int argc, char **argv)
{
  rounds = argc > 1 ? atol(argv[1]) : 100000;
  if (rounds <= 0 || pipe(ping) || pipe(pong)) {
    fprintf(stderr, "usage: pingpong [rounds]\n");
    return 2;
  }
  pthread_t t;
  pthread_create(&t, NULL, echo, NULL);
  char c = 'x';
  double t0 = now();
  for (long i = 0; i < rounds; i++)
    if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
      return 1;
  double el = now() - t0;
  pthread_join(t, NULL);
  printf("pingpong: %ld rounds, %.1f ns/round\n", rounds, el * 1e9 / rounds);
  return 0;
}
