/* fault_touch [seconds] [dir] [file_mb] [anon_mb]: page faults of both kinds,
 * from two functions with their own stacks. Each pass reads every page of a
 * file of file_mb mapped from dir (default /var/tmp, 8 MiB) in read_file(),
 * then writes every page of anon_mb (default 16 MiB) of anonymous memory in
 * write_anon(); between passes it drops both (madvise MADV_DONTNEED, and
 * posix_fadvise DONTNEED for the file's page cache), so the file's pages
 * fault in again from the disk (major faults, when the cache let go) and
 * the anonymous ones as fresh zero pages (minor faults). Removes its file. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024L * 1024L)

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile unsigned long sink;

__attribute__((noinline)) static void read_file(const char *map, long len, long page)
{
  unsigned long s = 0;
  for (long off = 0; off < len; off += page)
    s += (unsigned char)map[off];
  sink += s;
}

__attribute__((noinline)) static void write_anon(char *mem, long len, long page)
{
  for (long off = 0; off < len; off += page)
    mem[off] = 1;
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  const char *dir = argc > 2 ? argv[2] : "/var/tmp";
  long file_len = (argc > 3 ? atol(argv[3]) : 8) * MIB;
  long anon_len = (argc > 4 ? atol(argv[4]) : 16) * MIB;
  if (seconds <= 0 || file_len <= 0 || anon_len <= 0) {
    fprintf(stderr, "usage: fault_touch [seconds] [dir] [file_mb] [anon_mb]\n");
    return 2;
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  long page = sysconf(_SC_PAGESIZE);
  char path[4096];
  snprintf(path, sizeof path, "%s/fault_touch.%d", dir, (int)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    perror("fault_touch: open");
    return 1;
  }
  char buf[65536];
  memset(buf, 'x', sizeof buf);
  for (long off = 0; off < file_len; off += (long)sizeof buf)
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
      perror("fault_touch: write");
      unlink(path);
      return 1;
    }
  fsync(fd); /* clean pages: fadvise DONTNEED can drop them */
  char *fmap = mmap(NULL, file_len, PROT_READ, MAP_SHARED, fd, 0);
  char *anon = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (fmap == MAP_FAILED || anon == MAP_FAILED) {
    perror("fault_touch: mmap");
    unlink(path);
    return 1;
  }
  madvise(fmap, file_len, MADV_RANDOM); /* one page per fault: no read-around */
  double deadline = now() + seconds;
  while (!stop && now() < deadline) {
    madvise(fmap, file_len, MADV_DONTNEED);
    posix_fadvise(fd, 0, file_len, POSIX_FADV_DONTNEED);
    read_file(fmap, file_len, page);
    madvise(anon, anon_len, MADV_DONTNEED);
    write_anon(anon, anon_len, page);
    usleep(20000);
  }
  munmap(fmap, file_len);
  munmap(anon, anon_len);
  close(fd);
  unlink(path);
  return 0;
}
