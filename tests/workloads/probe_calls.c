/* probe_calls [calls] [naps] [nap_us]: a program that knows its own counts,
 * for the probe e2e tests and bench. Calls pm_probe_work(size, tag) `calls`
 * times (default 12000) with size = 2^(i % 12) (every log2 slot 0..11
 * gets calls/12, one more for the first calls%12 slots) and tag = i % 4,
 * then pm_probe_nap(nap_us) `naps` times (default 0), each sleeping nap_us
 * microseconds (default 2000). Prints what it did:
 *   calls N
 *   size 2^k N_k          (one line per slot)
 *   tag t N_t
 *   naps M
 *   ns_per_call X         (wall time of the calls loop / calls: the bench's figure) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

__attribute__((noinline, used)) long pm_probe_work(long size, int tag)
{
  sink += (unsigned long)size + (unsigned long)tag;
  return size * 2 + tag;
}

__attribute__((noinline, used)) int pm_probe_nap(long us)
{
  struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
  while (nanosleep(&ts, &ts) != 0)
    ;
  return 0;
}

int main(int argc, char **argv)
{
  long calls = argc > 1 ? atol(argv[1]) : 12000;
  long naps = argc > 2 ? atol(argv[2]) : 0;
  long nap_us = argc > 3 ? atol(argv[3]) : 2000;
  long per_size[12] = { 0 }, per_tag[4] = { 0 };
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < calls; i++) {
    pm_probe_work(1L << (i % 12), (int)(i % 4));
    per_size[i % 12]++;
    per_tag[i % 4]++;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  for (long i = 0; i < naps; i++)
    pm_probe_nap(nap_us);
  printf("calls %ld\n", calls);
  for (int k = 0; k < 12; k++)
    printf("size 2^%d %ld\n", k, per_size[k]);
  for (int t = 0; t < 4; t++)
    printf("tag %d %ld\n", t, per_tag[t]);
  printf("naps %ld\n", naps);
  double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
  printf("ns_per_call %.1f\n", calls > 0 ? ns / calls : 0.0);
  return 0;
}
