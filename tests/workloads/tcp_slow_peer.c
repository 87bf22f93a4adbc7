/* tcp_slow_peer [seconds] [read_bytes_per_s] [mss] [sndbuf]: a TCP sender to a slow local
 * receiver. The process forks a receiver that accepts one connection on
 * 127.0.0.1 and reads read_bytes_per_s (default 32 KiB/s) in small bites;
 * the parent (the target) writes as fast as it can, so its send queue and
 * the receiver's receive queue stay full and the sender blocks in write().
 * Both exit after `seconds` or on SIGTERM (the parent kills the child).
 * mss > 0 caps the sender's segments (loopback's are 64 KiB: a test that
 * drops some wants many segments, as on a real link). sndbuf > 0 sets the
 * sender's SO_SNDBUF (with a fast receiver: a sender held back by its own
 * send buffer). */
#include <arpa/inet.h>
#include <netinet/tcp.h>
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

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void receiver(int lfd, double deadline, long rate)
{
  int c = accept(lfd, NULL, NULL);
  if (c < 0) _exit(1);
  char buf[4096];
  long bite = rate / 10 < (long)sizeof buf ? rate / 10 : (long)sizeof buf;
  if (bite < 1) bite = 1;
  while (!stop && now() < deadline) {
    long got = 0;
    while (got < rate / 10) {
      ssize_t n = read(c, buf, bite);
      if (n <= 0) _exit(0);
      got += n;
    }
    usleep(100000);
  }
  _exit(0);
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  long rate = argc > 2 ? atol(argv[2]) : 32768;
  int mss = argc > 3 ? atoi(argv[3]) : 0;
  int sndbuf = argc > 4 ? atoi(argv[4]) : 0;
  if (seconds <= 0 || rate < 1 || mss < 0 || sndbuf < 0) {
    fprintf(stderr, "usage: tcp_slow_peer [seconds] [read_bytes_per_s] [mss] [sndbuf]\n");
    return 2;
  }
  /* no SA_RESTART: a TERM ends a write() blocked on the full queue */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  double deadline = now() + seconds;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &len) < 0) {
    perror("tcp_slow_peer: listen");
    return 1;
  }
  pid_t kid = fork();
  if (kid < 0) {
    perror("tcp_slow_peer: fork");
    return 1;
  }
  if (kid == 0) {
    /* the receiver never outlives the sender */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(0);
    receiver(lfd, deadline, rate);
  }
  close(lfd);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s >= 0 && mss > 0)
    setsockopt(s, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
  if (s >= 0 && sndbuf > 0)
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
    perror("tcp_slow_peer: connect");
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    return 1;
  }
  char buf[65536];
  memset(buf, 'n', sizeof buf);
  while (!stop && now() < deadline) {
    if (write(s, buf, sizeof buf) < 0) break;
  }
  close(s);
  kill(kid, SIGTERM);
  waitpid(kid, NULL, 0);
  return 0;
}
