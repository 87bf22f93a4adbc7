/* wait_objects MODE [seconds]: a process blocked on one known object, for the
 * spec that names what a blocked thread waits on
 * (tests/spec/collectors/waits_spec.lua).
 *   lock   main holds the global g_lock; a second thread blocks in
 *          pthread_mutex_lock(&g_lock), a futex wait on &g_lock
 *   unix   a socketpair across a fork: parent and child each block in
 *          read() on their end
 *   tcp    a loopback TCP connection across a fork: the parent accepts and
 *          blocks in read(), the child connects and blocks in read();
 *          prints "port N" (the listening port) once connected
 *   epoll  epoll_wait on an epoll fd watching a pipe's read end and an eventfd
 * Prints "ready" when the wait is set up. Exits after `seconds` (default 30),
 * its child with it (PR_SET_PDEATHSIG). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void *waiter(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&g_lock);
  pthread_mutex_unlock(&g_lock);
  return NULL;
}

static void on_alarm(int sig)
{
  (void)sig;
  _exit(0);
}

static void block_read(int fd)
{
  char c;
  while (read(fd, &c, 1) > 0) {
  }
}

/* the child dies with the parent, and ends at the same deadline */
static pid_t fork_child(void)
{
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(0);
  }
  return pid;
}

static int mode_lock(void)
{
  pthread_t t;
  pthread_mutex_lock(&g_lock);
  if (pthread_create(&t, NULL, waiter, NULL) != 0)
    return 1;
  printf("ready\n");
  fflush(stdout);
  for (;;)
    pause();
}

static int mode_unix(void)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return 1;
  pid_t pid = fork_child();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    close(sv[0]);
    block_read(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  printf("ready\n");
  fflush(stdout);
  block_read(sv[0]);
  return 0;
}

static int mode_tcp(void)
{
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &alen) != 0)
    return 1;
  pid_t pid = fork_child();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    close(ls);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0)
      _exit(1);
    block_read(c);
    _exit(0);
  }
  int s = accept(ls, NULL, NULL);
  if (s < 0)
    return 1;
  close(ls);
  printf("port %d\nready\n", ntohs(a.sin_port));
  fflush(stdout);
  block_read(s);
  return 0;
}

static int mode_epoll(void)
{
  int p[2];
  int efd = eventfd(0, 0);
  int ep = epoll_create1(0);
  if (pipe(p) != 0 || efd < 0 || ep < 0)
    return 1;
  struct epoll_event ev = { .events = EPOLLIN };
  ev.data.fd = p[0];
  epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
  ev.data.fd = efd;
  epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
  printf("ready\n");
  fflush(stdout);
  struct epoll_event out[4];
  for (;;)
    epoll_wait(ep, out, 4, -1);
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "";
  int seconds = argc > 2 ? atoi(argv[2]) : 30;
  if (seconds <= 0) {
    fprintf(stderr, "usage: wait_objects lock|unix|tcp|epoll [seconds]\n");
    return 2;
  }
  signal(SIGALRM, on_alarm);
  alarm((unsigned)seconds);
  if (strcmp(mode, "lock") == 0)
    return mode_lock();
  if (strcmp(mode, "unix") == 0)
    return mode_unix();
  if (strcmp(mode, "tcp") == 0)
    return mode_tcp();
  if (strcmp(mode, "epoll") == 0)
    return mode_epoll();
  fprintf(stderr, "usage: wait_objects lock|unix|tcp|epoll [seconds]\n");
  return 2;
}
