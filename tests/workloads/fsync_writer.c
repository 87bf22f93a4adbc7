/* fsync_writer [seconds] [dir] [threads] [shared]: each thread (4 by default)
 * writes 4 KiB and fsyncs, in a loop, to its own file in dir (default
 * /var/tmp, on the real disk; never tmpfs), so the disk always has flushes
 * queued and the writers spend their time waiting for it. With "shared" all
 * threads write their own 4 KiB slots of one file (a log without group
 * commit). Removes its files at the end. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define TMPFS_MAGIC 0x01021994
#define MAX_THREADS 64

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double deadline;
static const char *dir;
static int shared;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *writer(void *arg)
{
  long id = (long)arg;
  char path[4096];
  snprintf(path, sizeof path, "%s/fsync_writer.%d.%ld", dir, (int)getpid(), shared ? 0L : id);
  int fd = open(path, O_WRONLY | O_CREAT, 0644);
  if (fd < 0) {
    perror("fsync_writer: open");
    return (void *)1;
  }
  char buf[4096];
  memset(buf, 'x', sizeof buf);
  long n = 0;
  void *rc = NULL;
  while (!stop && now() < deadline) {
    /* wrap at 64 MiB so a long run does not fill the disk */
    off_t slot = shared ? (off_t)(n % 4096) * MAX_THREADS + id : (off_t)(n % 16384);
    if (pwrite(fd, buf, sizeof buf, slot * (off_t)sizeof buf) != (ssize_t)sizeof buf ||
        fsync(fd) != 0) {
      perror("fsync_writer: write");
      rc = (void *)1;
      break;
    }
    n++;
  }
  close(fd);
  unlink(path); /* shared: the first to finish removes it; the others hold it open */
  return rc;
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  dir = argc > 2 ? argv[2] : "/var/tmp";
  int nthreads = argc > 3 ? atoi(argv[3]) : 4;
  shared = argc > 4 && strcmp(argv[4], "shared") == 0;
  if (seconds <= 0 || nthreads < 1 || nthreads > MAX_THREADS) {
    fprintf(stderr, "usage: fsync_writer [seconds] [dir] [threads 1..%d] [shared]\n", MAX_THREADS);
    return 2;
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  struct statfs sf;
  if (statfs(dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC) {
    fprintf(stderr, "fsync_writer: %s is tmpfs; pick a directory on a real disk\n", dir);
    return 2;
  }
  deadline = now() + seconds;
  pthread_t t[MAX_THREADS];
  for (long i = 0; i < nthreads; i++)
    pthread_create(&t[i], NULL, writer, (void *)i);
  int rc = 0;
  for (int i = 0; i < nthreads; i++) {
    void *r;
    pthread_join(t[i], &r);
    if (r)
      rc = 1;
  }
  return rc;
}
