/* Internal to runtime/http.c: its latency histogram and HTTP/1.1 response
 * parser, declared here so the C unit tests (tests/c/test_http.c) call them
 * directly. Not part of the Lua interface. */
#ifndef PM_HTTP_INTERNAL_H
#define PM_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* ---- histogram: log-linear over microseconds ---- */

#define H_SUB 64            /* linear sub-buckets per power of two */
#define H_MAXBIT 42         /* up to 2^42 us (~50 days) */
#define H_BUCKETS ((H_MAXBIT - 5) * H_SUB + 2 * H_SUB)

struct hist {
  uint64_t c[H_BUCKETS];
  uint64_t n;
  uint64_t min, max;        /* exact, in us */
  double sum;
};

/// Bucket of a value in us.
int pm_hist_index(uint64_t v);
/// Smallest value of bucket i, and how many values it holds.
uint64_t pm_hist_lower(int i);
uint64_t pm_hist_width(int i);
void pm_hist_add(struct hist *h, uint64_t us);
/// Value at quantile q (0..1); NAN when empty.
double pm_hist_quantile(const struct hist *h, double q);
/// Bucket i of some histogram: its count, smallest and largest value, and
/// whether it also holds values above hi (open).
typedef void (*pm_bucket_fn)(const void *ud, int i, uint64_t *count, double *lo, double *hi, int *open);
/// The quantile rule on nb buckets holding n values in [min, max]; NAN when n = 0.
double pm_quantile(int nb, pm_bucket_fn bucket, const void *ud, uint64_t n, double min, double max, double q);

/* ---- HTTP/1.1 response parser ---- */

enum { P_HEAD, P_BODY_LEN, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_CRLF, P_TRAILER, P_BODY_EOF, P_DONE };
enum { R_MORE = 0, R_DONE = 1, R_ERROR = -1 };

struct resp {
  int state;
  int status;
  int close;                /* server said Connection: close (or HTTP/1.0) */
  int no_body;              /* answers to HEAD: a head alone, whatever it says (set after reset) */
  uint64_t left;            /* body bytes (or chunk bytes) still to come */
  uint64_t body;            /* body bytes seen */
  const char *err;
};

void pm_resp_reset(struct resp *r);
/// Feeds buf[0..n) (all bytes not yet consumed); *used says how many belong
/// to this response. R_DONE when a full response was read, R_MORE, R_ERROR
/// (r->err says why).
int pm_resp_feed(struct resp *r, const char *buf, size_t n, size_t *used);

#endif
