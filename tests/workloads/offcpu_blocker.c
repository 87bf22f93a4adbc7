/* offcpu_blocker [seconds] [period_ms]: one thread blocks in a known call
 * chain, main -> blocker_wait -> blocker_read, reading a pipe that a second
 * thread writes to every period_ms (20 by default). The off-CPU tracer must
 * show the reader's blocked time with blocker_read and blocker_wait in its
 * user stack. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int fds[2];
static volatile int done;
static long period_ms = 20;

/* the read is issued from this function itself (x86-64: inline syscall), so
 * the user stack at the block starts here and the frame-pointer chain above
 * it is intact; libc's read() would put an unwalkable frame first */
__attribute__((noinline)) static long blocker_read(int fd)
{
  char c;
#if defined(__x86_64__)
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(0L), "D"((long)fd), "S"(&c), "d"(1L)
                   : "rcx", "r11", "memory");
  return ret;
#else
  return read(fd, &c, 1);
#endif
}

__attribute__((noinline)) static long blocker_wait(int fd)
{
  long n = blocker_read(fd);
  __asm__ volatile("" ::: "memory");  /* keep this frame: no tail call */
  return n;
}

static void *ticker(void *arg)
{
  (void)arg;
  struct timespec ts = { period_ms / 1000, (period_ms % 1000) * 1000000L };
  while (!done) {
    nanosleep(&ts, NULL);
    if (write(fds[1], "x", 1) != 1)
      break;
  }
  return NULL;
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 5;
  if (argc > 2)
    period_ms = atol(argv[2]);
  if (seconds <= 0 || period_ms <= 0) {
    fprintf(stderr, "usage: offcpu_blocker [seconds] [period_ms]\n");
    return 2;
  }
  if (pipe(fds) != 0) {
    perror("offcpu_blocker: pipe");
    return 1;
  }
  pthread_t t;
  pthread_create(&t, NULL, ticker, NULL);
  long wakeups = (long)(seconds * 1000 / period_ms);
  long got = 0;
  for (long i = 0; i < wakeups; i++)
    got += blocker_wait(fds[0]) > 0;
  done = 1;
  pthread_join(t, NULL);
  printf("offcpu_blocker: %ld wakeups\n", got);
  return 0;
}
