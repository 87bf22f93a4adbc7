/* nofp_dlopen [SECONDS]: code that appears during a capture. For the first
 * two seconds main spins in warm_up(); then it dlopen()s zlib, which was not
 * mapped before, and spends the rest in squeeze() -> compress (zlib).
 * Built -O2 -fomit-frame-pointer (the Makefile's nofp_ rule); zlib is
 * Debian's, without frame pointers too. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int (*compress_fn)(unsigned char *, unsigned long *, const unsigned char *, unsigned long);

static volatile unsigned long sink;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void warm_up(double until)
{
  while (now() < until)
    for (int i = 0; i < 100000; i++)
      sink += (unsigned long)i * 2654435761u;
}

__attribute__((noinline)) static void squeeze(compress_fn fn, const unsigned char *in, unsigned long n,
                                              unsigned char *out, unsigned long cap)
{
  unsigned long len = cap;
  fn(out, &len, in, n);
  sink += len;
}

int main(int argc, char **argv)
{
  double secs = argc > 1 ? atof(argv[1]) : 10, t0 = now();
  warm_up(t0 + 2);
  void *z = dlopen("libz.so.1", RTLD_NOW);
  compress_fn fn = z ? (compress_fn)dlsym(z, "compress") : NULL;
  if (!fn) {
    fprintf(stderr, "nofp_dlopen: no zlib: %s\n", dlerror());
    return 1;
  }
  enum { N = 1 << 20 };
  static unsigned char in[N], out[N + N / 100 + 64];
  for (unsigned long i = 0; i < N; i++)
    in[i] = (unsigned char)((i * 7919) % 251 ^ (i >> 9));
  while (now() - t0 < secs)
    squeeze(fn, in, N, out, sizeof out);
  return 0;
}
