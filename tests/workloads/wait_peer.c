/* A process that mostly waits on a slow peer: a child "feeder" sends one
 * byte every 40 ms over a pipe or a loopback TCP connection; the parent
 * reads it, then backs off 10 ms, so it is blocked on the peer ~75% of its
 * wall time and asleep ~25%, and on a CPU almost never.
 *
 *   wait_peer pipe|tcp SECONDS [PIDFILE]   (PIDFILE gets the feeder's pid) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void feed(int fd, double seconds)
{
  prctl(PR_SET_NAME, "feeder");
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  double end = now() + seconds + 1;
  while (now() < end) {
    if (write(fd, "x", 1) != 1)
      break;
    sleep_ms(40);
  }
  _exit(0);
}

int main(int argc, char **argv)
{
  if (argc < 3 || (strcmp(argv[1], "pipe") && strcmp(argv[1], "tcp"))) {
    fprintf(stderr, "usage: wait_peer pipe|tcp SECONDS [PIDFILE]\n");
    return 2;
  }
  double seconds = atof(argv[2]);
  int rfd;
  pid_t child;
  if (!strcmp(argv[1], "pipe")) {
    int p[2];
    if (pipe(p))
      return perror("pipe"), 1;
    child = fork();
    if (child == 0) {
      close(p[0]);
      feed(p[1], seconds);
    }
    close(p[1]);
    rfd = p[0];
  } else {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&a, &len))
      return perror("listen"), 1;
    child = fork();
    if (child == 0) {
      int c = socket(AF_INET, SOCK_STREAM, 0);
      if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
        _exit(1);
      feed(c, seconds);
    }
    rfd = accept(ls, NULL, NULL);
    if (rfd < 0)
      return perror("accept"), 1;
    close(ls);
  }
  if (child < 0)
    return perror("fork"), 1;
  if (argc > 3) {
    FILE *f = fopen(argv[3], "w");
    if (f) {
      fprintf(f, "%d\n", (int)child);
      fclose(f);
    }
  }
  double end = now() + seconds;
  char c;
  while (now() < end) {
    if (read(rfd, &c, 1) != 1)
      break;
    sleep_ms(10);
  }
  kill(child, SIGTERM);
  waitpid(child, NULL, 0);
  return 0;
}
