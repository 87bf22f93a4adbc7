/* A workload with a known call tree, for profiler tests.
 *   calltree burn [SECONDS]   main -> alpha -> beta  ~60% of CPU samples,
 *                             main -> gamma          ~30%,
 *                             main -> delta          ~10%
 *   calltree block [SECONDS]  main -> snooze -> deep_sleep -> nanosleep (off-CPU)
 * Without SECONDS it runs until killed. It prints its function addresses on
 * the first line so tests can check symbol resolution against ASLR (PIE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile unsigned long sink;

void tick(void) { sink++; }

/* One unit of work: about 6 ms of integer arithmetic at -O1 (a cycle of
 * all units, ~60 ms, is several sampling periods long: no lock step with
 * 99 Hz sampling). The call to
 * tick() makes spin a non-leaf function: gcc omits the frame pointer of
 * leaf functions, which would hide spin's caller from the stacks. */
void spin(unsigned units)
{
  for (unsigned u = 0; u < units; u++) {
    for (unsigned long i = 0; i < 6000000; i++)
      sink += i ^ (sink >> 3);
    tick();
  }
}

/* the `sink++` after each call keeps it a real call (no tail call), so
 * every function has its own frame in the stacks */
void beta(void) { spin(6); sink++; }
void alpha(void) { beta(); sink++; }
void gamma_(void) { spin(3); sink++; }
void delta(void) { spin(1); sink++; }

void deep_sleep(void)
{
  struct timespec ts = { 0, 20 * 1000 * 1000 };
  nanosleep(&ts, NULL);
  sink++;
}
void snooze(void) { deep_sleep(); sink++; }

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "burn";
  double secs = argc > 2 ? atof(argv[2]) : 0;
  printf("alpha=%p beta=%p gamma=%p delta=%p snooze=%p deep_sleep=%p main=%p\n",
         (void *)alpha, (void *)beta, (void *)gamma_, (void *)delta, (void *)snooze,
         (void *)deep_sleep, (void *)main);
  fflush(stdout);
  double end = secs > 0 ? now() + secs : 0;
  int block = strcmp(mode, "block") == 0;
  if (!block && strcmp(mode, "burn") != 0) {
    fprintf(stderr, "usage: calltree burn|block [SECONDS]\n");
    return 2;
  }
  unsigned long cycles = 0;
  while (!end || now() < end) {
    cycles++;
    if (block) {
      snooze();
    } else {
      alpha();
      gamma_();
      delta();
    }
  }
  fprintf(stderr, "cycles %lu\n", cycles);
  return 0;
}
