/* fsync_writer [seconds] [dir]: writes 4 KiB and fsyncs, in a loop, to a
 * file in dir (default /var/tmp, on the real disk; never tmpfs), so the disk
 * queue is never empty. Removes its file at the end. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define TMPFS_MAGIC 0x01021994

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  const char *dir = argc > 2 ? argv[2] : "/var/tmp";
  if (seconds <= 0) {
    fprintf(stderr, "usage: fsync_writer [seconds] [dir]\n");
    return 2;
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  struct statfs sf;
  if (statfs(dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC) {
    fprintf(stderr, "fsync_writer: %s is tmpfs; pick a directory on a real disk\n", dir);
    return 2;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/fsync_writer.%d", dir, (int)getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    perror("fsync_writer: open");
    return 1;
  }
  char buf[4096];
  memset(buf, 'x', sizeof buf);
  double deadline = now() + seconds;
  long n = 0;
  int rc = 0;
  while (!stop && now() < deadline) {
    /* wrap at 64 MiB so a long run does not fill the disk */
    if (pwrite(fd, buf, sizeof buf, (off_t)(n % 16384) * (off_t)sizeof buf) != (ssize_t)sizeof buf ||
        fsync(fd) != 0) {
      perror("fsync_writer: write");
      rc = 1;
      break;
    }
    n++;
  }
  close(fd);
  unlink(path);
  return rc;
}
