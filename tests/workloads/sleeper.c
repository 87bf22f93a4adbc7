/* sleeper [seconds]: the control workload. Wakes every 100 ms, does a few
 * microseconds of work and sleeps again: no resource should look busy. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  if (seconds <= 0) {
    fprintf(stderr, "usage: sleeper [seconds]\n");
    return 2;
  }
  long ticks = (long)(seconds * 10);
  struct timespec step = { 0, 100 * 1000 * 1000 };
  for (long i = 0; i < ticks; i++) {
    for (int j = 0; j < 1000; j++)
      sink += j;
    nanosleep(&step, NULL);
  }
  return 0;
}
