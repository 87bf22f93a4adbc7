/* tsa_states MODE [N]: threads whose time goes to one known state, for the
 * thread-state accounting tests (tests/e2e/tsa_spec.lua).
 *   spin          one thread spinning on a CPU
 *   pipe          reads a pipe fed every 100 ms by a child process
 *                 ("feeder"), then backs off 25 ms: 75% pipe, 25% sleep
 *   convoy N      N threads taking turns on one mutex held 2 ms: lock waits
 *   fsync DIR     writes 4 KiB and fsyncs it, in a loop (DIR/tsa_fsync.dat)
 *   spinners N    N spinning threads (more than CPUs: runnable time)
 *   pingpong R    two threads pass a byte over two pipes, R rounds/s
 * Runs until killed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int ping[2], pong[2];

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
  struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };
  nanosleep(&ts, NULL);
}

static void *spin(void *arg)
{
  (void)arg;
  for (;;)
    sink++;
  return NULL;
}

static void *convoy(void *arg)
{
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    double end = now() + 0.002;
    while (now() < end)
      sink++;
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static void *echo(void *arg)
{
  (void)arg;
  char c;
  for (;;)
    if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
      return NULL;
}

static void threads(int n, void *(*fn)(void *))
{
  for (int i = 0; i < n; i++) {
    pthread_t t;
    pthread_create(&t, NULL, fn, NULL);
  }
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "spin";
  int n = argc > 2 ? atoi(argv[2]) : 0; /* fsync: a directory, not a number */
  if (!strcmp(mode, "spin")) {
    spin(NULL);
  } else if (!strcmp(mode, "pipe")) {
    int p[2];
    if (pipe(p))
      return 1;
    pid_t feeder = fork();
    if (feeder == 0) {
      prctl(PR_SET_NAME, "feeder");
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(p[0]);
      double next = now();
      for (;;) {
        next += 0.1;
        double d = next - now();
        if (d > 0)
          sleep_s(d);
        if (write(p[1], "x", 1) != 1)
          return 0;
      }
    }
    close(p[1]);
    char c;
    for (;;) {
      if (read(p[0], &c, 1) != 1)
        return 0;
      sleep_s(0.025);
    }
  } else if (!strcmp(mode, "convoy")) {
    threads(n > 0 ? n : 4, convoy);
    pause();
  } else if (!strcmp(mode, "fsync")) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tsa_fsync.dat", argc > 2 ? argv[2] : ".");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
      return 1;
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    for (long i = 0;; i++) {
      if (pwrite(fd, buf, sizeof buf, (i % 256) * sizeof buf) != sizeof buf)
        return 1;
      fsync(fd);
    }
  } else if (!strcmp(mode, "spinners")) {
    threads(n > 0 ? n - 1 : 2, spin);
    spin(NULL);
  } else if (!strcmp(mode, "pingpong")) {
    double rate = n > 0 ? n : 5000;
    if (pipe(ping) || pipe(pong))
      return 1;
    threads(1, echo);
    double next = now();
    char c = 'x';
    for (;;) {
      /* 10 rounds, then wait for the schedule */
      for (int i = 0; i < 10; i++)
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
          return 1;
      next += 10 / rate;
      double d = next - now();
      if (d > 0)
        sleep_s(d);
    }
  } else {
    fprintf(stderr, "usage: tsa_states spin|pipe|convoy N|fsync DIR|spinners N|pingpong RATE\n");
    return 2;
  }
  return 0;
}
