/* A call tree built -O2 -fomit-frame-pointer (as distributions build), for
 * the DWARF unwinder's tests; each caller is kept out of line (noinline).
 *   nofp_tree [SECONDS]   main -> work -> sorter -> qsort (glibc) -> by_value  ~50%
 *                         main -> work -> hasher -> mix                         ~30%
 *                         main -> work -> reader -> read (glibc, /dev/zero)      ~20%
 * Without SECONDS it runs until killed. */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

__attribute__((noinline)) static int by_value(const void *a, const void *b)
{
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return (x > y) - (x < y);
}

__attribute__((noinline)) static void sorter(unsigned *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    v[i] = (unsigned)rand();
  qsort(v, n, sizeof *v, by_value);
  sink += v[n / 2];
}

__attribute__((noinline)) static unsigned long mix(unsigned long h, unsigned long i)
{
  h ^= i * 0x9e3779b97f4a7c15UL;
  return (h << 13) | (h >> 51);
}

__attribute__((noinline)) static void hasher(unsigned long rounds)
{
  unsigned long h = sink;
  for (unsigned long i = 0; i < rounds; i++)
    h = mix(h, i);
  sink += h;
}

__attribute__((noinline)) static void reader(int fd, char *buf, size_t len, int times)
{
  for (int i = 0; i < times; i++)
    sink += (unsigned long)read(fd, buf, len);
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void work(unsigned *v, int fd, char *buf)
{
  sorter(v, 20000);
  hasher(6000000);
  reader(fd, buf, 1 << 20, 12);
}

int main(int argc, char **argv)
{
  double secs = argc > 1 ? atof(argv[1]) : 0, t0 = now();
  static unsigned v[20000];
  static char buf[1 << 20];
  int fd = open("/dev/zero", O_RDONLY);
  if (fd < 0)
    return 1;
  while (secs <= 0 || now() - t0 < secs)
    work(v, fd, buf);
  return 0;
}
