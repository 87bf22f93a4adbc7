/* conn_storm HOST PORT N [parallel] [timeout_ms]: a bounded connection storm.
 * Opens N TCP connections to HOST:PORT, up to `parallel` (default 64) in
 * flight, each with non-blocking connect() and a timeout (default 1000 ms);
 * a connection that completes is closed at once by this side, so each
 * leaves a TIME_WAIT socket here holding its ephemeral port. Prints
 * "ok K refused R timeout T" (the ground truth of a test), with "stopped"
 * when a TERM ended it before all N were tried. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXPAR 1024

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
  if (argc < 4) {
    fprintf(stderr, "usage: conn_storm HOST PORT N [parallel] [timeout_ms]\n");
    return 2;
  }
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  long n = atol(argv[3]);
  int par = argc > 4 ? atoi(argv[4]) : 64;
  long long timeout = argc > 5 ? atoll(argv[5]) : 1000;
  if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || n < 1 || par < 1 || par > MAXPAR || timeout < 1) {
    fprintf(stderr, "conn_storm: bad arguments\n");
    return 2;
  }
  /* no SA_RESTART: TERM ends the storm early, and the counts so far are printed */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  struct pollfd fds[MAXPAR];
  long long started[MAXPAR];
  int inflight = 0;
  long opened = 0, ok = 0, refused = 0, timedout = 0;
  while ((opened < n || inflight > 0) && !stop) {
    while (opened < n && inflight < par && !stop) {
      int s = socket(AF_INET, SOCK_STREAM, 0);
      if (s < 0) {
        perror("conn_storm: socket");
        return 1;
      }
      fcntl(s, F_SETFL, O_NONBLOCK);
      opened++;
      if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
        ok++;
        close(s);
        continue;
      }
      if (errno != EINPROGRESS) {
        refused++;
        close(s);
        continue;
      }
      fds[inflight] = (struct pollfd){ .fd = s, .events = POLLOUT };
      started[inflight++] = now_ms();
    }
    if (inflight == 0)
      continue;
    poll(fds, inflight, 10);
    long long t = now_ms();
    for (int i = 0; i < inflight;) {
      int done = 0;
      if (fds[i].revents) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0)
          ok++;
        else
          refused++;
        done = 1;
      } else if (t - started[i] >= timeout) {
        timedout++;
        done = 1;
      }
      if (done) {
        close(fds[i].fd);
        fds[i] = fds[--inflight];
        started[i] = started[inflight];
      } else {
        i++;
      }
    }
  }
  for (int i = 0; i < inflight; i++)
    close(fds[i].fd);
  printf("ok %ld refused %ld timeout %ld%s\n", ok, refused, timedout, stop ? " stopped" : "");
  return 0;
}
