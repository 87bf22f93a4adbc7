/* syscall_loop N [wait]: makes exactly N getppid() system calls (raw
 * syscall(2), so no libc caching), then prints the time per call.
 * With "wait" it first blocks until SIGUSR1, so a tracer can attach to its
 * pid before the loop starts. Used by the syscall tracer's e2e test and the
 * trace benchmark. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  if (n < 0) {
    fprintf(stderr, "usage: syscall_loop N [wait]\n");
    return 2;
  }
  if (argc > 2 && strcmp(argv[2], "wait") == 0) {
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    sigwait(&set, &sig);
  }
  double t0 = now();
  for (long i = 0; i < n; i++)
    syscall(SYS_getppid);
  double dt = now() - t0;
  printf("getppid %ld calls %.1f ns/call\n", n, n ? dt * 1e9 / n : 0.0);
  return 0;
}
