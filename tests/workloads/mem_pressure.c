/* mem_pressure [seconds] [dir] [file_mb] [anon_mb]: meant to run inside a
 * memory-limited cgroup (the e2e test makes one of 64 MiB). It holds anon_mb
 * of anonymous memory (there is no swap, so it cannot be reclaimed) and keeps
 * re-reading a file of file_mb, bigger than what is left under the limit, so
 * the cgroup reclaims its page cache again and again: memory pressure, with
 * the CPU doing reclaim work in the kernel. Never run it unconfined with
 * sizes near the machine's memory. Removes its file at the end. */
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

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  const char *dir = argc > 2 ? argv[2] : "/var/tmp";
  long file_mb = argc > 3 ? atol(argv[3]) : 96;
  long anon_mb = argc > 4 ? atol(argv[4]) : 40;
  if (seconds <= 0 || file_mb < 1 || anon_mb < 0) {
    fprintf(stderr, "usage: mem_pressure [seconds] [dir] [file_mb] [anon_mb]\n");
    return 2;
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  char path[4096];
  snprintf(path, sizeof path, "%s/mem_pressure.%d", dir, (int)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    perror("mem_pressure: open");
    return 1;
  }
  int rc = 0;
  char *buf = malloc(MIB);
  char *anon = NULL;
  if (!buf) {
    rc = 1;
    goto cleanup;
  }
  memset(buf, 'm', MIB);
  for (long i = 0; i < file_mb && !stop; i++) {
    if (write(fd, buf, MIB) != MIB) {
      perror("mem_pressure: write");
      rc = 1;
      goto cleanup;
    }
  }
  if (anon_mb > 0) {
    anon = mmap(NULL, anon_mb * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) {
      anon = NULL;
      perror("mem_pressure: mmap");
      rc = 1;
      goto cleanup;
    }
  }
  long page = sysconf(_SC_PAGESIZE);
  double deadline = now() + seconds;
  unsigned char gen = 0;
  while (!stop && now() < deadline) {
    for (long i = 0; i < file_mb && !stop; i++) {
      /* twice: the second read activates the pages, so their later
       * refaults count as thrashing (memory stall), as for a real working set */
      if (pread(fd, buf, MIB, i * MIB) < 0 || pread(fd, buf, MIB, i * MIB) < 0) {
        perror("mem_pressure: read");
        rc = 1;
        goto cleanup;
      }
    }
    gen++;
    for (long off = 0; anon && off < anon_mb * MIB; off += page)
      anon[off] = (char)gen;
  }
cleanup:
  if (anon)
    munmap(anon, anon_mb * MIB);
  free(buf);
  close(fd);
  unlink(path);
  return rc;
}
