/* libFuzzer harness for the HTTP/1.1 response parser (runtime/http.c,
 * through runtime/http_internal.h): the input is a stream of responses on
 * one keep-alive connection, fed the way the load loop feeds it (unconsumed
 * bytes stay at the front of the buffer). It must never crash or read out of
 * bounds, never claim bytes it was not given, and reach the same verdict
 * whether the bytes arrive at once or in pieces of 1, 2, 7 or N bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"

#define MAX_RESPONSES 16

/* the load loop's stop flag lives in runtime/sys.c; the parser needs none */
int pm_stop_requested(void);
int pm_stop_requested(void) { return 0; }

struct outcome {
  int n;                         /* responses read */
  int rc;                        /* of the last feed: R_MORE, R_ERROR */
  int status[MAX_RESPONSES];
  uint64_t body[MAX_RESPONSES];
  size_t used[MAX_RESPONSES];    /* bytes of each response */
};

static struct outcome run(const uint8_t *data, size_t n, size_t step)
{
  struct outcome o;
  memset(&o, 0, sizeof o);
  char *buf = malloc(n + 1);
  if (!buf)
    abort();
  struct resp r;
  pm_resp_reset(&r);
  size_t len = 0, given = 0, cur = 0;
  int rc = R_MORE;
  while (given < n || (rc == R_DONE && len > 0)) {
    size_t k = step && n - given > step ? step : n - given;
    memcpy(buf + len, data + given, k);
    len += k;
    given += k;
    size_t used = 0;
    rc = pm_resp_feed(&r, buf, len, &used);
    if (used > len) {
      fprintf(stderr, "fuzz_http: the parser claimed %zu bytes of %zu\n", used, len);
      abort();
    }
    if (rc == R_ERROR)
      break;
    memmove(buf, buf + used, len - used);
    len -= used;
    cur += used;
    if (rc == R_DONE) {
      o.status[o.n] = r.status;
      o.body[o.n] = r.body;
      o.used[o.n] = cur;
      cur = 0;
      if (++o.n == MAX_RESPONSES || r.close)
        break;
      pm_resp_reset(&r);
    } else if (used == 0 && k == 0) {
      break; /* all given, nothing taken: it waits for more */
    }
  }
  o.rc = rc;
  free(buf);
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct outcome a = run(data, size, 0);
  size_t steps[] = { 1, 2, 7, size ? (size_t)data[0] % 61 + 1 : 1 };
  for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
    struct outcome b = run(data, size, steps[s]);
    int same = a.n == b.n && (a.rc == R_ERROR) == (b.rc == R_ERROR);
    for (int i = 0; same && i < a.n; i++)
      same = a.status[i] == b.status[i] && a.body[i] == b.body[i] && a.used[i] == b.used[i];
    if (!same) {
      fprintf(stderr, "fuzz_http: step %zu: %d responses (rc %d) at once, %d (rc %d) in pieces\n", steps[s], a.n,
              a.rc, b.n, b.rc);
      abort();
    }
  }
  return 0;
}
