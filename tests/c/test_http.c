/* Unit tests of runtime/http.c: the latency histogram and the HTTP/1.1
 * response parser, called directly (runtime/http_internal.h). Every
 * response is also fed one byte at a time, as a slow socket would. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http_internal.h"

/* ---- histogram ---- */

static void hist_exact_below_128(void)
{
  for (uint64_t v = 0; v < 128; v++) {
    CHECK_INT(pm_hist_index(v), v);
    CHECK_U64(pm_hist_lower((int)v), v);
    CHECK_U64(pm_hist_width((int)v), 1);
  }
  CHECK_INT(pm_hist_index(128), 128);
  CHECK_U64(pm_hist_width(128), 2);
}

/* Each value lies in its bucket, buckets are at most 1/64 of their lower
 * bound wide, and the index never goes down as the value goes up. */
static void check_bucket(uint64_t v)
{
  int i = pm_hist_index(v);
  if (!CHECK(i >= 0 && i < H_BUCKETS)) {
    printf("       v=%" PRIu64 " index %d\n", v, i);
    return;
  }
  uint64_t lo = pm_hist_lower(i), w = pm_hist_width(i);
  if (!CHECK(lo <= v && v - lo < w))
    printf("       v=%" PRIu64 " bucket %d = [%" PRIu64 ", +%" PRIu64 ")\n", v, i, lo, w);
  if (v >= 128 && !CHECK(w * 64 <= lo))
    printf("       v=%" PRIu64 " bucket %d is %" PRIu64 " wide from %" PRIu64 "\n", v, i, w, lo);
}

static void hist_buckets_hold_their_values(void)
{
  /* every power of two up to 2^42 us and its neighbours */
  for (int b = 7; b <= H_MAXBIT; b++) {
    uint64_t p = (uint64_t)1 << b;
    check_bucket(p - 1);
    check_bucket(p);
    check_bucket(p + 1);
    CHECK(pm_hist_index(p - 1) < pm_hist_index(p));
  }
  check_bucket(((uint64_t)1 << (H_MAXBIT + 1)) - 1);
  /* and a pseudo-random spread (fixed seed: the same values every run) */
  uint64_t x = 88172645463325252ull;
  for (int k = 0; k < 200000; k++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    check_bucket(x >> (64 - 1 - H_MAXBIT + (k % 36))); /* below 2^7 up to 2^43 */
  }
  /* monotonic over a dense stretch across several bucket boundaries */
  int prev = pm_hist_index(1000);
  for (uint64_t v = 1001; v < 300000; v++) {
    int i = pm_hist_index(v);
    if (!CHECK(i == prev || i == prev + 1)) {
      printf("       index jumps from %d to %d at %" PRIu64 "\n", prev, i, v);
      break;
    }
    prev = i;
  }
}

/* Far beyond 2^42 us (the load generator never times that long) values
 * share the last bucket and the array is never overrun. */
static void hist_overflow_goes_to_last_bucket(void)
{
  CHECK_INT(pm_hist_index((uint64_t)1 << (H_MAXBIT + 1)), H_BUCKETS - 1);
  CHECK_INT(pm_hist_index(UINT64_MAX), H_BUCKETS - 1);
  struct hist *h = calloc(1, sizeof *h);
  pm_hist_add(h, UINT64_MAX);
  pm_hist_add(h, 5);
  CHECK_U64(h->c[H_BUCKETS - 1], 1);
  CHECK_U64(h->max, UINT64_MAX);
  /* past the range the value is only known to be large */
  double top = pm_hist_quantile(h, 1.0);
  CHECK(top >= (double)((uint64_t)1 << H_MAXBIT) && top <= (double)UINT64_MAX);
  CHECK(pm_hist_quantile(h, 0.5) == 5.0);
  free(h);
}

static void hist_quantiles(void)
{
  struct hist *h = calloc(1, sizeof *h);
  CHECK(isnan(pm_hist_quantile(h, 0.5)));
  for (uint64_t v = 1; v <= 100000; v++)
    pm_hist_add(h, v);
  CHECK_U64(h->n, 100000);
  CHECK_U64(h->min, 1);
  CHECK_U64(h->max, 100000);
  CHECK(h->sum == 100000.0 * 100001.0 / 2.0);
  static const double qs[] = { 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999 };
  for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
    double exact = ceil(qs[k] * 100000), got = pm_hist_quantile(h, qs[k]);
    if (!CHECK(fabs(got - exact) / exact < 1.0 / 64))
      printf("       q=%g got %g, exact %g\n", qs[k], got, exact);
  }
  /* the ends are the exact min and max, not a bucket's middle */
  CHECK(pm_hist_quantile(h, 0.0) == 1.0);
  CHECK(pm_hist_quantile(h, 1.0) == 100000.0);
  free(h);

  /* one value: every quantile is that value exactly */
  h = calloc(1, sizeof *h);
  pm_hist_add(h, 123457);
  CHECK(pm_hist_quantile(h, 0.01) == 123457.0);
  CHECK(pm_hist_quantile(h, 0.99) == 123457.0);
  free(h);

  /* two clusters: the median falls in the lower one, p99 in the upper */
  h = calloc(1, sizeof *h);
  for (int k = 0; k < 900; k++)
    pm_hist_add(h, 200);
  for (int k = 0; k < 100; k++)
    pm_hist_add(h, 50000);
  double p50 = pm_hist_quantile(h, 0.5), p90 = pm_hist_quantile(h, 0.9), p91 = pm_hist_quantile(h, 0.91);
  CHECK(fabs(p50 - 200) <= 2);
  CHECK(fabs(p90 - 200) <= 2);
  CHECK(fabs(p91 - 50000) <= 50000 / 64.0);
  free(h);
}

/* ---- response parser ---- */

struct parsed {
  int rc;               /* R_DONE, R_MORE or R_ERROR */
  int status, close, state;
  uint64_t body, left;
  size_t used;          /* bytes consumed by the response */
  const char *err;
};

/* Feeds text in pieces of `step` bytes (0: all at once) the way the load
 * loop does: unconsumed bytes stay at the front of the buffer. */
static struct parsed feed(const char *text, size_t n, size_t step)
{
  struct resp r;
  pm_resp_reset(&r);
  char *buf = malloc(n + 1);
  size_t len = 0, given = 0, total = 0;
  int rc = R_MORE;
  while (rc == R_MORE && given < n) {
    size_t k = step && n - given > step ? step : n - given;
    memcpy(buf + len, text + given, k);
    len += k;
    given += k;
    size_t used = 0;
    rc = pm_resp_feed(&r, buf, len, &used);
    if (rc == R_ERROR)
      break;
    if (!(used <= len)) {
      rc = 99; /* the parser claimed bytes it was not given */
      break;
    }
    memmove(buf, buf + used, len - used);
    len -= used;
    total += used;
  }
  free(buf);
  struct parsed p = { rc, r.status, r.close, r.state, r.body, r.left, total, r.err };
  return p;
}

#define S(lit) lit, sizeof(lit) - 1

/* The same outcome whether the bytes arrive at once, one by one or in 7s. */
static struct parsed feed_all_ways(const char *text, size_t n)
{
  struct parsed a = feed(text, n, 0);
  static const size_t steps[] = { 1, 2, 7 };
  for (size_t k = 0; k < 3; k++) {
    struct parsed b = feed(text, n, steps[k]);
    /* after an error only the verdict matters: the bytes eaten before it vary */
    int same = a.rc == R_ERROR ? b.rc == R_ERROR
                               : a.rc == b.rc && a.status == b.status && a.close == b.close && a.body == b.body &&
                                   a.left == b.left && a.used == b.used;
    if (!CHECK(same)) {
      printf("       step %zu: rc %d/%d status %d/%d body %" PRIu64 "/%" PRIu64 " used %zu/%zu\n", steps[k],
             a.rc, b.rc, a.status, b.status, a.body, b.body, a.used, b.used);
    }
    if (a.err || b.err)
      CHECK_STR(b.err, a.err);
  }
  return a;
}

static void parses_content_length(void)
{
  static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
  struct parsed p = feed_all_ways(S(ok));
  CHECK_INT(p.rc, R_DONE);
  CHECK_INT(p.status, 200);
  CHECK_U64(p.body, 5);
  CHECK_INT(p.close, 0);
  CHECK_INT(p.used, sizeof ok - 1);
  /* header names in any case, blanks around the value */
  p = feed_all_ways(S("HTTP/1.1 404 Not Found\r\ncontent-LENGTH: \t 3 \r\n\r\nabc"));
  CHECK_INT(p.rc, R_DONE);
  CHECK_INT(p.status, 404);
  CHECK_U64(p.body, 3);
  /* no reason phrase at all */
  p = feed_all_ways(S("HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n"));
  CHECK_INT(p.rc, R_DONE);
  CHECK_INT(p.status, 503);
  CHECK_U64(p.body, 0);
  /* the same length twice is one length */
  p = feed_all_ways(S("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"));
  CHECK_INT(p.rc, R_DONE);
  CHECK_U64(p.body, 2);
}

static void stops_at_the_end_of_one_response(void)
{
  static const char two[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                            "HTTP/1.1 500 Oops\r\nContent-Length: 1\r\n\r\nx";
  struct parsed p = feed_all_ways(S(two));
  CHECK_INT(p.rc, R_DONE);
  CHECK_INT(p.status, 200);
  CHECK_INT(p.used, 40);
  /* the rest is the second response, whole */
  p = feed_all_ways(two + 40, sizeof two - 1 - 40);
  CHECK_INT(p.rc, R_DONE);
  CHECK_INT(p.status, 500);
  CHECK_U64(p.body, 1);
}

static void connection_close_and_keep_alive(void)
{
  struct parsed p = feed_all_ways(S("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"));
  CHECK_INT(p.rc, R_DONE);
  CHECK_INT(p.close, 1);
  p = feed_all_ways(S("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"));
  CHECK_INT(p.close, 1);
  p = feed_all_ways(S("HTTP/1.0 200 OK\r\nCONNECTION: Keep-Alive\r\nContent-Length: 1\r\n\r\nx"));
  CHECK_INT(p.close, 0);
  /* a token among others */
  p = feed_all_ways(S("HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 0\r\n\r\n"));
  CHECK_INT(p.close, 1);
}

static void no_body_statuses(void)
{
  /* 204 and 304 have no body whatever their headers say */
  static const char nm[] = "HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n";
  struct parsed p = feed_all_ways(S(nm));
  CHECK_INT(p.rc, R_DONE);
  CHECK_U64(p.body, 0);
  CHECK_INT(p.used, sizeof nm - 1);
  p = feed_all_ways(S("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"));
  CHECK_INT(p.rc, R_DONE);
  CHECK_U64(p.body, 0);
  /* 100 Continue is an interim answer: the real one follows */
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nid";
  p = feed_all_ways(S(cont));
  CHECK_INT(p.rc, R_DONE);
  CHECK_INT(p.status, 201);
  CHECK_U64(p.body, 2);
  CHECK_INT(p.used, sizeof cont - 1);
}

static void body_until_close(void)
{
  /* neither length nor chunks: the body is everything until the server
   * closes, so the parser never says done and marks the connection closing */
  struct parsed p = feed_all_ways(S("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabcdefghij"));
  CHECK_INT(p.rc, R_MORE);
  CHECK_INT(p.state, P_BODY_EOF);
  CHECK_INT(p.close, 1);
  CHECK_U64(p.body, 10);
}

static void chunked(void)
{
  struct parsed p = feed_all_ways(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "5\r\nhello\r\n"
                                    "6;name=value\r\n world\r\n"
                                    "A \r\n0123456789\r\n"
                                    "00000000000000000001\r\n!\r\n"
                                    "0\r\n\r\n"));
  CHECK_INT(p.rc, R_DONE);
  CHECK_U64(p.body, 22);
  CHECK_INT(p.close, 0);
  /* trailer fields after the last chunk, then the next response */
  static const char t[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                          "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\nHTTP/1.1";
  p = feed_all_ways(S(t));
  CHECK_INT(p.rc, R_DONE);
  CHECK_U64(p.body, 3);
  CHECK_INT(p.used, sizeof t - 1 - 8);
  /* chunked wins over a Content-Length sent beside it */
  p = feed_all_ways(S("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "2\r\nok\r\n0\r\n\r\n"));
  CHECK_INT(p.rc, R_DONE);
  CHECK_U64(p.body, 2);
  /* 15 hex digits is the largest size taken: 2^60 - 1 bytes still to come */
  p = feed_all_ways(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFF\r\nab"));
  CHECK_INT(p.rc, R_MORE);
  CHECK_INT(p.state, P_CHUNK_DATA);
  CHECK_U64(p.left, ((uint64_t)1 << 60) - 1 - 2);
}

static void truncated_responses_wait_for_more(void)
{
  static const char *cases[] = {
    "",
    "HTTP/1.1 200 OK",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n",
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    struct parsed p = feed_all_ways(cases[k], strlen(cases[k]));
    if (!CHECK(p.rc == R_MORE))
      printf("       case %zu: rc %d (%s)\n", k, p.rc, p.err ? p.err : "");
  }
  /* a truncated body keeps count of what is missing */
  struct parsed p = feed(S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd"), 1);
  CHECK_U64(p.body, 4);
  CHECK_U64(p.left, 6);
}

static void absurd_content_length(void)
{
  /* 18 digits is taken (and read exactly, no overflow); 19 is refused */
  struct parsed p = feed_all_ways(S("HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\nab"));
  CHECK_INT(p.rc, R_MORE);
  CHECK_INT(p.state, P_BODY_LEN);
  CHECK_U64(p.left, 999999999999999999ull - 2);
  p = feed_all_ways(S("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551617\r\n\r\nab"));
  CHECK_INT(p.rc, R_ERROR);
  CHECK_STR(p.err, "bad Content-Length");
  p = feed_all_ways(S("HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n"));
  CHECK_INT(p.rc, R_ERROR);
}

static void rejects_malformed(void)
{
  static const struct { const char *text, *err; } cases[] = {
    { "HTTP/2 200 OK\r\n\r\n", "bad status line" },
    { "ICY 200 OK\r\n\r\n", "bad status line" },
    { "HTTP/1.1 20\r\n\r\n", "bad status line" },
    { "HTTP/1.x 200 OK\r\n\r\n", "bad status line" },
    { "HTTP/1.1  200 OK\r\n\r\n", "bad status code" },
    { "HTTP/1.1 2x0 OK\r\n\r\n", "bad status code" },
    { "HTTP/1.1 600 Nope\r\n\r\n", "bad status code" },
    { "HTTP/1.1 099 Nope\r\n\r\n", "bad status code" },
    { "HTTP/1.1 2000 OK\r\n\r\n", "bad status code" },
    { "\r\n\r\n", "bad status line" },
    { "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "bad Content-Length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", "bad Content-Length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "bad Content-Length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "bad Content-Length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "conflicting Content-Length" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "bad chunk size" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "bad chunk size" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\n", "bad chunk size" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", "chunk size too large" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n", "chunk size too large" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY", "missing CRLF after chunk" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n", "missing CRLF after chunk" },
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    struct parsed p = feed_all_ways(cases[k].text, strlen(cases[k].text));
    if (!CHECK(p.rc == R_ERROR))
      printf("       case %zu: rc %d status %d\n", k, p.rc, p.status);
    CHECK_STR(p.err, cases[k].err);
  }
}

/* Unbounded input is cut off: a head that never ends, a chunk size line
 * that never ends. */
static void limits(void)
{
  size_t n = 70000;
  char *big = malloc(n);
  memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
  for (size_t i = 17; i < n; i++)
    big[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'h';
  struct parsed p = feed(big, n, 0);
  CHECK_INT(p.rc, R_ERROR);
  CHECK_STR(p.err, "response head over 64 KiB");
  p = feed(big, n, 4096);
  CHECK_STR(p.err, "response head over 64 KiB");
  static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  memcpy(big, head, sizeof head - 1);
  memset(big + sizeof head - 1, '0', 2000);
  p = feed(big, sizeof head - 1 + 2000, 100);
  CHECK_INT(p.rc, R_ERROR);
  CHECK_STR(p.err, "chunk size line too long");
  free(big);
}

int main(void)
{
  RUN(hist_exact_below_128);
  RUN(hist_buckets_hold_their_values);
  RUN(hist_overflow_goes_to_last_bucket);
  RUN(hist_quantiles);
  RUN(parses_content_length);
  RUN(stops_at_the_end_of_one_response);
  RUN(connection_close_and_keep_alive);
  RUN(no_body_statuses);
  RUN(body_until_close);
  RUN(chunked);
  RUN(truncated_responses_wait_for_more);
  RUN(absurd_content_length);
  RUN(rejects_malformed);
  RUN(limits);
  return check_summary("test_http");
}
