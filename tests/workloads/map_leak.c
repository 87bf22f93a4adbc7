/* map_leak [seconds] [counter_file]: leaks that do not go through small
 * mallocs. Every 10 ms:
 *   map_keep()   mmap(2)s 256 KiB of anonymous memory, touches it, keeps it
 *   map_churn()  mmap(2)s 64 KiB, touches it, munmap(2)s it
 *   big_keep()   mallocs 512 KiB (glibc serves it with its own mmap), keeps it
 *   big_churn()  mallocs 512 KiB and frees it
 * It keeps what it kept in counter_file (rewritten every round) and prints
 * it at exit:
 *   map_leak: mmap BYTES bytes in N maps, malloc BYTES bytes in N blocks
 * Built with frame pointers (the Makefile's workload flags). */
#include <signal.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAP_KEEP (256 * 1024)
#define MAP_CHURN (64 * 1024)
#define BIG (512 * 1024) /* above glibc's default mmap threshold (128 KiB) */

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static long map_bytes, maps, big_bytes, bigs;
static void *kept[4096];
static int nkept;
static volatile long sink;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void touch(volatile char *p, size_t size)
{
  for (size_t i = 0; i < size; i += 4096)
    p[i] = 1;
}

void map_keep(void)
{
  void *p = mmap(NULL, MAP_KEEP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    abort();
  touch(p, MAP_KEEP);
  if (nkept < 4096)
    kept[nkept++] = p;
  map_bytes += MAP_KEEP;
  maps++;
}

void map_churn(void)
{
  void *p = mmap(NULL, MAP_CHURN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    abort();
  touch(p, MAP_CHURN);
  sink += ((char *)p)[0];
  munmap(p, MAP_CHURN);
}

void big_keep(void)
{
  char *p = malloc(BIG);
  if (!p)
    abort();
  touch(p, BIG);
  if (nkept < 4096)
    kept[nkept++] = p;
  big_bytes += BIG;
  bigs++;
}

void big_churn(void)
{
  char *p = malloc(BIG);
  if (!p)
    abort();
  touch(p, BIG);
  sink += p[0];
  free(p);
}

static void write_counter(const char *path)
{
  if (!path)
    return;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return;
  fprintf(f, "%ld %ld %ld %ld\n", map_bytes, maps, big_bytes, bigs);
  fclose(f);
  rename(tmp, path);
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  const char *counter = argc > 2 ? argv[2] : NULL;
  if (seconds <= 0) {
    fprintf(stderr, "usage: map_leak [seconds] [counter_file]\n");
    return 2;
  }
  /* a fixed threshold: glibc would otherwise raise it when big_churn frees,
     and serve the big blocks from the heap */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  double end = now() + seconds;
  struct timespec tick = { 0, 10 * 1000 * 1000 };
  while (!stop && now() < end && nkept < 4094) {
    map_keep();
    map_churn();
    big_keep();
    big_churn();
    write_counter(counter);
    nanosleep(&tick, NULL);
  }
  printf("map_leak: mmap %ld bytes in %ld maps, malloc %ld bytes in %ld blocks\n", map_bytes, maps, big_bytes, bigs);
  return 0;
}
