/* tcp_churn: TCP connection churn with known counts, for the net tracer.
 *
 *   tcp_churn server PORT [RESP_BYTES [BACKLOG [noaccept|delay=MS]]]
 *       listens on PORT (all addresses); for each connection reads until
 *       EOF, then writes RESP_BYTES (default 1000) and closes. Prints
 *       "listening PORT" once ready; on SIGTERM "served K rx R tx T".
 *       noaccept: listen with BACKLOG and never accept (a stuck listener).
 *       delay=MS: answer each request MS ms after reading it (a slow peer).
 *   tcp_churn client HOST PORT N [REQ_BYTES [MSS]]
 *       N times: connect, write REQ_BYTES (default 100), shut down the
 *       write side, read to EOF, close. Prints
 *       "ok K fail F median_connect_ns M tx T rx R" (fail: connect refused
 *       or timed out).
 *   tcp_churn flood HOST PORT BYTES [MSS]
 *       one connection that sends BYTES (then reads the reply): many
 *       segments, for retransmit tests. MSS > 0 caps the segment size.
 * The counts it prints are the ground truth the tracer is checked against. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static long long now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char buf[65536];

static long long write_all(int fd, long long n)
{
  long long done = 0;
  while (done < n) {
    size_t want = n - done > (long long)sizeof buf ? sizeof buf : (size_t)(n - done);
    ssize_t w = write(fd, buf, want);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    done += w;
  }
  return done;
}

static long long read_eof(int fd)
{
  long long got = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR && !stop)
      continue;
    if (r <= 0)
      return r < 0 ? -1 : got;
    got += r;
  }
}

static int server(int port, long long resp, int backlog, int noaccept, long delay_ms)
{
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, backlog)) {
    perror("tcp_churn server");
    return 1;
  }
  struct sigaction sa = { .sa_handler = on_term };
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  printf("listening %d\n", port);
  fflush(stdout);
  long long served = 0, rx = 0, tx = 0;
  while (!stop) {
    if (noaccept) {
      pause();
      continue;
    }
    int c = accept(ls, NULL, NULL);
    if (c < 0)
      continue;
    long long r = read_eof(c);
    if (r >= 0) {
      rx += r;
      if (delay_ms > 0)
        usleep(delay_ms * 1000);
      long long w = write_all(c, resp);
      if (w > 0)
        tx += w;
      served++;
    }
    close(c);
  }
  printf("served %lld rx %lld tx %lld\n", served, rx, tx);
  return 0;
}

static int connect_to(const char *host, int port, int mss, long long *lat_ns)
{
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "tcp_churn: bad IPv4 address %s\n", host);
    exit(2);
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (mss > 0)
    setsockopt(s, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
  long long t0 = now_ns();
  if (connect(s, (struct sockaddr *)&a, sizeof a)) {
    close(s);
    return -1;
  }
  *lat_ns = now_ns() - t0;
  return s;
}

static int cmp_ll(const void *a, const void *b)
{
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

static int client(const char *host, int port, int n, long long req, int mss)
{
  long long *lat = calloc(n > 0 ? n : 1, sizeof *lat);
  long long tx = 0, rx = 0;
  int ok = 0, fail = 0;
  for (int i = 0; i < n; i++) {
    long long l;
    int s = connect_to(host, port, mss, &l);
    if (s < 0) {
      fail++;
      continue;
    }
    lat[ok++] = l;
    long long w = write_all(s, req);
    if (w > 0)
      tx += w;
    shutdown(s, SHUT_WR);
    long long r = read_eof(s);
    if (r > 0)
      rx += r;
    close(s);
  }
  qsort(lat, ok, sizeof *lat, cmp_ll);
  printf("ok %d fail %d median_connect_ns %lld tx %lld rx %lld\n", ok, fail, ok ? lat[ok / 2] : 0, tx, rx);
  free(lat);
  return 0;
}

int main(int argc, char **argv)
{
  memset(buf, 'x', sizeof buf);
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 3 && strcmp(argv[1], "server") == 0)
    return server(atoi(argv[2]), argc > 3 ? atoll(argv[3]) : 1000, argc > 4 ? atoi(argv[4]) : 128,
                  argc > 5 && strcmp(argv[5], "noaccept") == 0,
                  argc > 5 && strncmp(argv[5], "delay=", 6) == 0 ? atol(argv[5] + 6) : 0);
  if (argc >= 5 && strcmp(argv[1], "client") == 0)
    return client(argv[2], atoi(argv[3]), atoi(argv[4]), argc > 5 ? atoll(argv[5]) : 100, argc > 6 ? atoi(argv[6]) : 0);
  if (argc >= 5 && strcmp(argv[1], "flood") == 0)
    return client(argv[2], atoi(argv[3]), 1, atoll(argv[4]), argc > 5 ? atoi(argv[5]) : 0);
  fprintf(stderr, "usage: tcp_churn server PORT [RESP [BACKLOG [noaccept|delay=MS]]] | client HOST PORT N [REQ [MSS]] | "
                  "flood HOST PORT BYTES [MSS]\n");
  return 2;
}
