/* leaky [seconds] [kib_per_s] [counter_file]: a known memory leak beside
 * allocator churn. Every 10 ms cache_put() allocates entries that are never
 * freed (kib_per_s KiB a second in all, touched page by page so RSS grows),
 * while churn() mallocs and frees, and grow_buffer() callocs, reallocs and
 * frees. It keeps the count of bytes it leaked in counter_file (rewritten
 * every round) and prints it at exit:
 *   leaky: leaked BYTES bytes in N allocations from cache_put
 * Built with frame pointers (the Makefile's workload flags). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ENTRY 16384 /* bytes per leaked entry: below malloc's mmap threshold */

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

struct entry {
  struct entry *next;
  long key;
  char data[];
};

static struct entry *cache; /* reachable, but never trimmed: the leak */
static long leaked_bytes, leaked_allocs;
static volatile long sink;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void cache_put(long key)
{
  size_t size = ENTRY;
  struct entry *e = malloc(size);
  if (!e)
    abort();
  volatile char *p = (volatile char *)e;
  for (size_t i = 0; i < size; i += 4096)
    p[i] = (char)key; /* every page touched here: the faults land in cache_put */
  e->key = key;
  e->next = cache;
  cache = e;
  leaked_bytes += (long)size;
  leaked_allocs++;
}

void churn(int n)
{
  for (int i = 0; i < n; i++) {
    size_t size = 16 + (size_t)(i * 37) % 2048;
    char *p = malloc(size);
    p[0] = (char)i;
    sink += p[0];
    free(p);
  }
}

void grow_buffer(void)
{
  size_t cap = 64;
  char *b = calloc(1, cap);
  for (int i = 0; i < 6; i++) {
    cap *= 2;
    b = realloc(b, cap);
    b[cap - 1] = 1;
  }
  sink += b[0];
  free(b);
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
  fprintf(f, "%ld %ld\n", leaked_bytes, leaked_allocs);
  fclose(f);
  rename(tmp, path);
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  long kib_per_s = argc > 2 ? atol(argv[2]) : 2048;
  const char *counter = argc > 3 ? argv[3] : NULL;
  if (seconds <= 0 || kib_per_s < 0) {
    fprintf(stderr, "usage: leaky [seconds] [kib_per_s] [counter_file]\n");
    return 2;
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  /* entries per 10 ms round, the remainder carried so the rate is exact */
  double per_round = kib_per_s * 1024.0 / ENTRY / 100.0, owed = 0;
  long key = 0;
  double end = now() + seconds;
  while (!stop && now() < end) {
    owed += per_round;
    while (owed >= 1) {
      cache_put(key++);
      owed -= 1;
    }
    churn(200);
    grow_buffer();
    write_counter(counter);
    usleep(10000);
  }
  printf("leaky: leaked %ld bytes in %ld allocations from cache_put\n", leaked_bytes, leaked_allocs);
  return 0;
}
