/* fork_kids N MODE AMOUNT STATUS: a command whose work is done by its
 * children, for `-- COMMAND` tests. It forks N children and waits for them,
 * then exits with STATUS. MODE burn: each child spins AMOUNT seconds of CPU
 * in kid_burn(); MODE syscalls: each child makes exactly AMOUNT getppid
 * syscalls (raw syscall, never cached by libc). The parent itself makes no
 * getppid call and burns no CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static volatile unsigned long sink;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void kid_burn(double seconds)
{
  double end = now() + seconds;
  while (now() < end)
    for (int i = 0; i < 100000; i++)
      sink += (unsigned long)i * 7;
}

__attribute__((noinline)) static void kid_syscalls(long n)
{
  for (long i = 0; i < n; i++)
    sink += (unsigned long)syscall(SYS_getppid);
}

int main(int argc, char **argv)
{
  if (argc != 5 || (strcmp(argv[2], "burn") != 0 && strcmp(argv[2], "syscalls") != 0)) {
    fprintf(stderr, "usage: fork_kids N burn|syscalls AMOUNT STATUS\n");
    return 2;
  }
  int n = atoi(argv[1]);
  double amount = atof(argv[3]);
  for (int i = 0; i < n; i++) {
    pid_t p = fork();
    if (p < 0) {
      perror("fork");
      return 2;
    }
    if (p == 0) {
      if (argv[2][0] == 'b')
        kid_burn(amount);
      else
        kid_syscalls((long)amount);
      _exit(0);
    }
  }
  while (wait(NULL) > 0)
    ;
  return atoi(argv[4]);
}
