/* pipe_waiter SECONDS: a process that spends its time blocked, 75% in read()
 * on a pipe from a slow peer and 25% in nanosleep. A forked feeder writes
 * one byte every 40 ms on an absolute clock; the waiter reads it, then
 * sleeps 10 ms in back_off(), so its next read() waits the other 30 ms in
 * wait_for_peer(). The waiter is the main process (its pid is the one to
 * profile); the feeder dies with it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define PERIOD_NS (40 * 1000 * 1000L)
#define SLEEP_NS (10 * 1000 * 1000L)

static void feeder(int fd, long ticks)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  for (long i = 0; i < ticks; i++) {
    t.tv_nsec += PERIOD_NS;
    if (t.tv_nsec >= 1000000000L) {
      t.tv_nsec -= 1000000000L;
      t.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
    if (write(fd, "x", 1) != 1)
      _exit(0);
  }
  _exit(0);
}

__attribute__((noinline)) static int wait_for_peer(int fd)
{
  char c;
  return (int)read(fd, &c, 1);
}

__attribute__((noinline)) static void back_off(void)
{
  struct timespec d = { 0, SLEEP_NS };
  nanosleep(&d, NULL);
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  if (seconds <= 0) {
    fprintf(stderr, "usage: pipe_waiter [seconds]\n");
    return 2;
  }
  long ticks = (long)(seconds * 1e9 / PERIOD_NS);
  int fds[2];
  if (pipe(fds) < 0) {
    perror("pipe");
    return 2;
  }
  pid_t p = fork();
  if (p == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(fds[0]);
    feeder(fds[1], ticks);
  }
  close(fds[1]);
  while (wait_for_peer(fds[0]) == 1)
    back_off();
  waitpid(p, NULL, 0);
  return 0;
}
