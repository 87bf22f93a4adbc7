/* pm.http: a small HTTP/1.1 load generator for the RED check.
 *
 * Open loop: request i is *intended* at t0 + i/rate, whatever the server
 * does; an idle keep-alive connection takes the oldest due request, and its
 * latency is counted from the intended time, so a slow server cannot hide
 * its queueing (no coordinated omission). With rate 0 every connection sends
 * again as soon as it has its answer (closed loop, wrk's mode).
 *
 * TLS (https) through OpenSSL: the handshake is part of a new connection's
 * time, as the TCP connect is; sessions are resumed on reconnects; a failed
 * handshake is its own error kind with the reason kept.
 *
 * Mechanism only: Lua parses the URL, decides what an error is and prints.
 * Latencies go into a log-linear histogram (64 linear sub-buckets per power
 * of two of microseconds: <1.6% relative error), read back as percentiles. */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <dlfcn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "pm.h"
#include "http_internal.h"

/* ---- OpenSSL, loaded when an https run needs it ----------------------
 * Debian's libssl.so.3 is opened with dlopen at the first https run, not
 * linked: linked in (statically or not) its 20,000 relocations doubled the
 * CPU time of every start of the tool (4.6 -> 10.4 ms, 105 -> 210 page
 * faults), https or not. The header gives the types; every call below goes
 * through this table (the #defines after it). */
#define OSSL_FUNCS(X) \
  X(ssl, TLS_client_method) \
  X(ssl, SSL_CTX_new) \
  X(ssl, SSL_CTX_free) \
  X(ssl, SSL_CTX_ctrl) \
  X(ssl, SSL_CTX_set_options) \
  X(ssl, SSL_CTX_sess_set_new_cb) \
  X(ssl, SSL_CTX_set_verify) \
  X(ssl, SSL_CTX_load_verify_locations) \
  X(ssl, SSL_CTX_set_default_verify_paths) \
  X(ssl, SSL_CTX_get0_param) \
  X(ssl, SSL_CTX_set_ex_data) \
  X(ssl, SSL_CTX_get_ex_data) \
  X(ssl, SSL_get_SSL_CTX) \
  X(ssl, SSL_new) \
  X(ssl, SSL_free) \
  X(ssl, SSL_set_fd) \
  X(ssl, SSL_ctrl) \
  X(ssl, SSL_set_session) \
  X(ssl, SSL_SESSION_dup) \
  X(ssl, SSL_SESSION_free) \
  X(ssl, SSL_connect) \
  X(ssl, SSL_read) \
  X(ssl, SSL_write) \
  X(ssl, SSL_get_error) \
  X(ssl, SSL_shutdown) \
  X(ssl, SSL_session_reused) \
  X(ssl, SSL_get_version) \
  X(ssl, SSL_get_current_cipher) \
  X(ssl, SSL_CIPHER_get_name) \
  X(ssl, SSL_get_verify_result) \
  X(crypto, ERR_clear_error) \
  X(crypto, ERR_peek_last_error) \
  X(crypto, ERR_get_error) \
  X(crypto, ERR_error_string_n) \
  X(crypto, X509_verify_cert_error_string) \
  X(crypto, X509_VERIFY_PARAM_set1_host) \
  X(crypto, X509_VERIFY_PARAM_set1_ip_asc)

static struct {
#define OSSL_MEMBER(lib, f) __typeof__(&f) f;
  OSSL_FUNCS(OSSL_MEMBER)
#undef OSSL_MEMBER
} ossl;

/* Loads libssl and libcrypto once: 0, or -1 with the reason in err. */
static int ossl_load(char *err, size_t errlen)
{
  static int state;           /* 0: not tried, 1: loaded, -1: failed */
  static char why[256];
  if (state == 0) {
    void *ssl = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
    void *crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
    state = 1;
    if (!ssl || !crypto) {
      snprintf(why, sizeof why, "https needs OpenSSL 3 (apt-get install libssl3): %s", dlerror());
      state = -1;
    }
#define OSSL_SYM(lib, f)                                                   \
    if (state == 1 && !(*(void **)&ossl.f = dlsym(lib, #f))) {             \
      snprintf(why, sizeof why, "https: OpenSSL has no %s: %s", #f, dlerror()); \
      state = -1;                                                          \
    }
    OSSL_FUNCS(OSSL_SYM)
#undef OSSL_SYM
  }
  if (state < 0)
    snprintf(err, errlen, "%s", why);
  return state < 0 ? -1 : 0;
}

#define TLS_client_method (ossl.TLS_client_method)
#define SSL_CTX_new (ossl.SSL_CTX_new)
#define SSL_CTX_free (ossl.SSL_CTX_free)
#define SSL_CTX_ctrl (ossl.SSL_CTX_ctrl)
#define SSL_CTX_set_options (ossl.SSL_CTX_set_options)
#define SSL_CTX_sess_set_new_cb (ossl.SSL_CTX_sess_set_new_cb)
#define SSL_CTX_set_verify (ossl.SSL_CTX_set_verify)
#define SSL_CTX_load_verify_locations (ossl.SSL_CTX_load_verify_locations)
#define SSL_CTX_set_default_verify_paths (ossl.SSL_CTX_set_default_verify_paths)
#define SSL_CTX_get0_param (ossl.SSL_CTX_get0_param)
#define SSL_CTX_set_ex_data (ossl.SSL_CTX_set_ex_data)
#define SSL_CTX_get_ex_data (ossl.SSL_CTX_get_ex_data)
#define SSL_get_SSL_CTX (ossl.SSL_get_SSL_CTX)
#define SSL_new (ossl.SSL_new)
#define SSL_free (ossl.SSL_free)
#define SSL_set_fd (ossl.SSL_set_fd)
#define SSL_ctrl (ossl.SSL_ctrl)
#define SSL_set_session (ossl.SSL_set_session)
#define SSL_SESSION_dup (ossl.SSL_SESSION_dup)
#define SSL_SESSION_free (ossl.SSL_SESSION_free)
#define SSL_connect (ossl.SSL_connect)
#define SSL_read (ossl.SSL_read)
#define SSL_write (ossl.SSL_write)
#define SSL_get_error (ossl.SSL_get_error)
#define SSL_shutdown (ossl.SSL_shutdown)
#define SSL_session_reused (ossl.SSL_session_reused)
#define SSL_get_version (ossl.SSL_get_version)
#define SSL_get_current_cipher (ossl.SSL_get_current_cipher)
#define SSL_CIPHER_get_name (ossl.SSL_CIPHER_get_name)
#define SSL_get_verify_result (ossl.SSL_get_verify_result)
#define ERR_clear_error (ossl.ERR_clear_error)
#define ERR_peek_last_error (ossl.ERR_peek_last_error)
#define ERR_get_error (ossl.ERR_get_error)
#define ERR_error_string_n (ossl.ERR_error_string_n)
#define X509_verify_cert_error_string (ossl.X509_verify_cert_error_string)
#define X509_VERIFY_PARAM_set1_host (ossl.X509_VERIFY_PARAM_set1_host)
#define X509_VERIFY_PARAM_set1_ip_asc (ossl.X509_VERIFY_PARAM_set1_ip_asc)

/* ---- histogram ------------------------------------------------------- */

int pm_hist_index(uint64_t v)
{
  if (v < 2 * H_SUB)
    return (int)v;
  int msb = 63 - __builtin_clzll(v);
  if (msb > H_MAXBIT)
    return H_BUCKETS - 1;
  int shift = msb - 6;      /* v >> shift is in [64, 127] */
  return shift * H_SUB + (int)(v >> shift);
}

uint64_t pm_hist_lower(int i)
{
  if (i < 2 * H_SUB)
    return (uint64_t)i;
  int shift = i / H_SUB - 1;
  return (uint64_t)(i % H_SUB + H_SUB) << shift;
}

uint64_t pm_hist_width(int i)
{
  if (i < 2 * H_SUB)
    return 1;
  return (uint64_t)1 << (i / H_SUB - 1);
}

void pm_hist_add(struct hist *h, uint64_t us)
{
  h->c[pm_hist_index(us)]++;
  if (h->n == 0 || us < h->min)
    h->min = us;
  if (us > h->max)
    h->max = us;
  h->n++;
  h->sum += (double)us;
}

/* The quantile rule, the same as lib/perf_manual/hist.lua's quantile (a spec
 * compares the two on recorded and made-up histograms, to the bit):
 *   rank = ceil(q n - 1e-9)  (the 1e-9 keeps q n that should be whole, like
 *                             0.07 * 100, from being rounded up a rank)
 *   rank <= 1: min;  rank >= n: max;
 *   else the middle of the bucket holding rank (max when the bucket is open:
 *   its top is unknown), kept inside [min, max].
 * Buckets hold whole numbers lo..hi; bucket(ud, i, ...) describes bucket i. */
double pm_quantile(int nb, pm_bucket_fn bucket, const void *ud, uint64_t n, double min, double max, double q)
{
  if (n == 0)
    return NAN;
  double r = ceil(q * (double)n - 1e-9);
  if (r <= 1)
    return min;
  if (r >= (double)n)
    return max;
  uint64_t rank = (uint64_t)r, seen = 0;
  for (int i = 0; i < nb; i++) {
    uint64_t count;
    double lo, hi;
    int open;
    bucket(ud, i, &count, &lo, &hi, &open);
    seen += count;
    if (seen >= rank) {
      double v = open ? max : lo + (hi - lo) / 2.0;
      if (v > max)
        v = max;
      if (v < min)
        v = min;
      return v;
    }
  }
  return max;
}

static void hist_bucket(const void *ud, int i, uint64_t *count, double *lo, double *hi, int *open)
{
  const struct hist *h = ud;
  *count = h->c[i];
  *lo = (double)pm_hist_lower(i);
  *hi = (double)(pm_hist_lower(i) + pm_hist_width(i) - 1);
  *open = i == H_BUCKETS - 1; /* also holds everything past 2^H_MAXBIT us */
}

/* Value at quantile q, by the rule above with the exact min and max. */
double pm_hist_quantile(const struct hist *h, double q)
{
  return pm_quantile(H_BUCKETS, hist_bucket, h, h->n, (double)h->min, (double)h->max, q);
}

/* ---- HTTP/1.1 response parser --------------------------------------- */

void pm_resp_reset(struct resp *r)
{
  memset(r, 0, sizeof *r);
  r->state = P_HEAD;
}

static const char *find_crlf(const char *p, size_t n)
{
  for (size_t i = 0; i + 1 < n; i++)
    if (p[i] == '\r' && p[i + 1] == '\n')
      return p + i;
  return NULL;
}

static int hdr_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen)
{
  size_t nl = strlen(name);
  if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
    return 0;
  const char *v = line + nl + 1, *end = line + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  *val = v;
  *vlen = (size_t)(end - v);
  return 1;
}

static int has_token(const char *v, size_t n, const char *tok)
{
  size_t tl = strlen(tok);
  for (size_t i = 0; i + tl <= n; i++)
    if (strncasecmp(v + i, tok, tl) == 0)
      return 1;
  return 0;
}

/* Parses the head in buf[0..n) (complete, ending with an empty line). */
static int parse_head(struct resp *r, const char *buf, size_t n)
{
  const char *eol = find_crlf(buf, n);
  if (!eol || eol - buf < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[7] < '0' || buf[7] > '9' || buf[8] != ' ') {
    r->err = "bad status line";
    return R_ERROR;
  }
  /* three digits, then the reason phrase's space or the end of the line */
  if (buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9' ||
      (eol - buf > 12 && buf[12] != ' ')) {
    r->err = "bad status code";
    return R_ERROR;
  }
  r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
  r->close = buf[7] == '0';
  int chunked = 0, have_len = 0;
  uint64_t len = 0;
  const char *p = eol + 2, *end = buf + n;
  while (p < end) {
    const char *e = find_crlf(p, (size_t)(end - p));
    if (!e || e == p)
      break;
    const char *v;
    size_t vl;
    if (hdr_is(p, (size_t)(e - p), "Content-Length", &v, &vl)) {
      if (vl == 0 || vl > 18) {
        r->err = "bad Content-Length";
        return R_ERROR;
      }
      uint64_t l = 0;
      for (size_t i = 0; i < vl; i++) {
        if (v[i] < '0' || v[i] > '9') {
          r->err = "bad Content-Length";
          return R_ERROR;
        }
        l = l * 10 + (uint64_t)(v[i] - '0');
      }
      /* two lengths that differ: the body's end is unknowable, and a
       * keep-alive connection would read the next answer out of step */
      if (have_len && l != len) {
        r->err = "conflicting Content-Length";
        return R_ERROR;
      }
      len = l;
      have_len = 1;
    } else if (hdr_is(p, (size_t)(e - p), "Transfer-Encoding", &v, &vl)) {
      chunked = has_token(v, vl, "chunked");
    } else if (hdr_is(p, (size_t)(e - p), "Connection", &v, &vl)) {
      if (has_token(v, vl, "close"))
        r->close = 1;
      else if (has_token(v, vl, "keep-alive"))
        r->close = 0;
    }
    p = e + 2;
  }
  if (r->no_body || r->status == 204 || r->status == 304 || r->status < 200) {
    r->state = P_DONE;
  } else if (chunked) {
    r->state = P_CHUNK_SIZE;
  } else if (have_len) {
    r->left = len;
    r->state = len ? P_BODY_LEN : P_DONE;
  } else {
    r->close = 1;             /* the body ends when the server closes */
    r->state = P_BODY_EOF;
  }
  return R_MORE;
}

/* Feeds buf[0..n); *used says how many bytes belong to this response.
 * Returns R_DONE when a full response was read, R_MORE, or R_ERROR. */
int pm_resp_feed(struct resp *r, const char *buf, size_t n, size_t *used)
{
  size_t off = 0;
  *used = 0;
  for (;;) {
    switch (r->state) {
    case P_HEAD: {
      const char *end = NULL;
      for (size_t i = off; i + 3 < n; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
          end = buf + i + 4;
          break;
        }
      if (!end) {
        if (n - off > 65536) {
          r->err = "response head over 64 KiB";
          return R_ERROR;
        }
        *used = off;
        return R_MORE;
      }
      if (parse_head(r, buf + off, (size_t)(end - buf - off)) == R_ERROR)
        return R_ERROR;
      off = (size_t)(end - buf);
      if (r->status < 200 && r->state == P_DONE) {
        /* 1xx interim answer: the real one follows */
        r->state = P_HEAD;
        continue;
      }
      break;
    }
    case P_BODY_LEN: {
      uint64_t take = n - off < r->left ? n - off : r->left;
      off += take;
      r->left -= take;
      r->body += take;
      if (r->left == 0)
        r->state = P_DONE;
      else {
        *used = off;
        return R_MORE;
      }
      break;
    }
    case P_CHUNK_SIZE: {
      const char *e = find_crlf(buf + off, n - off);
      if (!e) {
        if (n - off > 1024) {
          r->err = "chunk size line too long";
          return R_ERROR;
        }
        *used = off;
        return R_MORE;
      }
      uint64_t sz = 0;
      const char *q = buf + off;
      int digits = 0;
      for (; q < e; q++, digits++) {
        int d;
        if (*q >= '0' && *q <= '9') d = *q - '0';
        else if (*q >= 'a' && *q <= 'f') d = *q - 'a' + 10;
        else if (*q >= 'A' && *q <= 'F') d = *q - 'A' + 10;
        else break;
        /* below 2^60; leading zeros are fine */
        if (sz >> 56) {
          r->err = "chunk size too large";
          return R_ERROR;
        }
        sz = sz * 16 + (uint64_t)d;
      }
      if (digits == 0 || (q < e && *q != ';' && *q != ' ' && *q != '\t')) {
        r->err = "bad chunk size";
        return R_ERROR;
      }
      off = (size_t)(e - buf) + 2;
      r->left = sz;
      r->state = sz ? P_CHUNK_DATA : P_TRAILER;
      break;
    }
    case P_CHUNK_DATA: {
      uint64_t take = n - off < r->left ? n - off : r->left;
      off += take;
      r->left -= take;
      r->body += take;
      if (r->left) {
        *used = off;
        return R_MORE;
      }
      r->state = P_CHUNK_CRLF;
      break;
    }
    case P_CHUNK_CRLF:
      if (n - off < 2) {
        *used = off;
        return R_MORE;
      }
      if (buf[off] != '\r' || buf[off + 1] != '\n') {
        r->err = "missing CRLF after chunk";
        return R_ERROR;
      }
      off += 2;
      r->state = P_CHUNK_SIZE;
      break;
    case P_TRAILER: {
      const char *e = find_crlf(buf + off, n - off);
      if (!e) {
        *used = off;
        return R_MORE;
      }
      int empty = e == buf + off;
      off = (size_t)(e - buf) + 2;
      if (empty)
        r->state = P_DONE;
      break;
    }
    case P_BODY_EOF:
      r->body += n - off;
      *used = n;
      return R_MORE;
    case P_DONE:
      *used = off;
      return R_DONE;
    }
  }
}

/// _parse(chunks, head?) -> {status=, body=, close=, used=} | nil, err
/// Feeds the strings in `chunks` one after another, as reads would (head:
/// as the answer to a HEAD request); for specs.
static int pm_http_parse(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  struct resp r;
  pm_resp_reset(&r);
  r.no_body = lua_toboolean(L, 2);
  size_t nchunks = lua_objlen(L, 1);
  char *buf = NULL;
  size_t len = 0, total_used = 0;
  int rc = R_MORE;
  for (size_t i = 1; i <= nchunks && rc == R_MORE; i++) {
    lua_rawgeti(L, 1, (int)i);
    size_t cl;
    const char *c = luaL_checklstring(L, -1, &cl);
    char *nb = realloc(buf, len + cl + 1);
    if (!nb) {
      free(buf);
      return luaL_error(L, "http: parse: out of memory");
    }
    buf = nb;
    memcpy(buf + len, c, cl);
    len += cl;
    lua_pop(L, 1);
    size_t used;
    rc = pm_resp_feed(&r, buf, len, &used);
    if (rc == R_ERROR)
      break;
    memmove(buf, buf + used, len - used);
    len -= used;
    total_used += used;
  }
  free(buf);
  if (rc == R_ERROR) {
    lua_pushnil(L);
    lua_pushstring(L, r.err);
    return 2;
  }
  if (rc == R_MORE && r.state == P_BODY_EOF)
    rc = R_DONE;            /* end of input = end of an until-close body */
  if (rc != R_DONE) {
    lua_pushnil(L);
    lua_pushstring(L, "incomplete response");
    return 2;
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, r.status);
  lua_setfield(L, -2, "status");
  lua_pushnumber(L, (double)r.body);
  lua_setfield(L, -2, "body");
  lua_pushboolean(L, r.close);
  lua_setfield(L, -2, "close");
  lua_pushnumber(L, (double)(total_used));
  lua_setfield(L, -2, "used");
  lua_pushinteger(L, (lua_Integer)len);
  lua_setfield(L, -2, "left_over");
  return 1;
}

/* ---- the load loop ---------------------------------------------------- */

enum { C_DOWN, C_CONNECTING, C_HANDSHAKE, C_IDLE, C_SENDING, C_READING };

struct conn {
  int fd;
  int state;
  double intended;          /* intended send time of the request in flight */
  double started;           /* when connect or send began (timeouts) */
  size_t woff;              /* bytes of the request written */
  uint32_t events;          /* what epoll watches now (0: not registered) */
  struct resp r;
  char *buf;
  size_t blen;
  double retry_at;          /* after a failed connect: not before */
  int in_idle;              /* on the idle stack */
  SSL *ssl;                 /* https: this connection's TLS, else NULL */
  int tls_dead;             /* a fatal TLS error: no close_notify may follow */
};

#define RBUF 65536
#define SERIES_BUCKETS 32   /* per-second log2(us) latency buckets for heat maps */

struct sec {
  uint32_t responses, errors;
  uint32_t lat[SERIES_BUCKETS];
};

struct run {
  struct addrinfo *ai;
  const char *req;
  size_t reqlen;
  double rate, duration, timeout;
  int nconn;
  struct conn *c;
  struct conn **idle;       /* keep-alive connections ready for a request */
  int nidle;
  int ndown;                /* connections with no socket */
  int ep;
  double t0;
  uint64_t next_i;          /* next request index to become due */
  uint64_t backlog;         /* due but not yet sent */
  /* counters */
  uint64_t sent, responses, status[6];
  uint64_t e_connect, e_timeout, e_read, e_parse, e_closed, unfinished;
  uint64_t connects, connect_ok;
  uint64_t e_nofile;        /* of e_connect: socket() found no free descriptor */
  int last_errno;
  int head;                 /* HEAD requests: answers carry no body */
  /* https */
  SSL_CTX *tls;
  const char *sni;          /* server name sent and checked; NULL for an address */
  const char *ip;           /* the address the certificate must name, when not a name */
  SSL_SESSION *sess;        /* the newest session, offered by every new connection */
  uint64_t e_tls, handshakes, handshakes_ok, resumed;
  const char *tls_version, *tls_cipher;   /* of the first handshake (static strings) */
  char tls_err[256];        /* why the last handshake failed */
  struct hist h;
  struct sec *secs;
  int nsecs;
};

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sec_add(struct run *R, double t, int is_err, double lat)
{
  /* answers that arrive while draining after the end count in the last second */
  int last = (int)ceil(R->duration) - 1;
  int s = (int)(t - R->t0);
  if (s > last)
    s = last;
  if (s < 0 || s >= R->nsecs)
    return;
  if (is_err) {
    R->secs[s].errors++;
    return;
  }
  R->secs[s].responses++;
  uint64_t us = lat > 0 ? (uint64_t)(lat * 1e6) : 0;
  int b = us ? 64 - __builtin_clzll(us) : 0;
  if (b >= SERIES_BUCKETS)
    b = SERIES_BUCKETS - 1;
  R->secs[s].lat[b]++;
}

static void push_idle(struct run *R, struct conn *c)
{
  if (!c->in_idle) {
    c->in_idle = 1;
    R->idle[R->nidle++] = c;
  }
}

static void conn_close(struct run *R, struct conn *c)
{
  if (c->state != C_DOWN)
    R->ndown++;
  if (c->ssl) {
    /* close_notify when the connection is sound (the server may then keep
     * its session); never after a fatal error */
    if (!c->tls_dead && c->state != C_HANDSHAKE)
      SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  c->tls_dead = 0;
  if (c->fd >= 0) {
    epoll_ctl(R->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->events = 0;
  c->state = C_DOWN;
  c->blen = 0;
}

/* Changes what epoll watches only when it differs: a keep-alive request
 * then costs one write and one read, no epoll_ctl. */
static void watch(struct run *R, struct conn *c, uint32_t ev)
{
  if (c->events == ev)
    return;
  struct epoll_event e = { .events = ev, .data.ptr = c };
  epoll_ctl(R->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e);
  c->events = ev;
}

/* A request failed before any answer: count it where it belongs. */
static void fail(struct run *R, struct conn *c, uint64_t *counter, double t, int err)
{
  (*counter)++;
  if (err)
    R->last_errno = err;
  sec_add(R, t, 1, 0);
  conn_close(R, c);
}

/* Socket or TLS I/O: bytes moved (> 0), or IO_EOF, IO_AGAIN (*ev: what to
 * wait for), IO_ERR (errno in *err, 0 for a TLS protocol error). */
enum { IO_EOF = 0, IO_AGAIN = -1, IO_ERR = -2 };

static ssize_t tls_result(struct conn *c, int r, uint32_t *ev, int *err)
{
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_READ:
    *ev = EPOLLIN;
    return IO_AGAIN;
  case SSL_ERROR_WANT_WRITE:
    *ev = EPOLLOUT;
    return IO_AGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return IO_EOF;
  case SSL_ERROR_SYSCALL:
    *err = errno ? errno : EPIPE;
    break;
  default:
    *err = 0;
  }
  c->tls_dead = 1;
  ERR_clear_error();
  return IO_ERR;
}

static ssize_t io_write(struct conn *c, const char *p, size_t n, uint32_t *ev, int *err)
{
  if (c->ssl) {
    int w = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    return w > 0 ? w : tls_result(c, w, ev, err);
  }
  for (;;) {
    ssize_t w = write(c->fd, p, n);
    if (w >= 0)
      return w;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *ev = EPOLLOUT;
      return IO_AGAIN;
    }
    *err = errno;
    return IO_ERR;
  }
}

static ssize_t io_read(struct conn *c, char *p, size_t n, uint32_t *ev, int *err)
{
  if (c->ssl) {
    int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    return r > 0 ? r : tls_result(c, r, ev, err);
  }
  for (;;) {
    ssize_t r = read(c->fd, p, n);
    if (r >= 0)
      return r;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *ev = EPOLLIN;
      return IO_AGAIN;
    }
    *err = errno;
    return IO_ERR;
  }
}

static void try_write(struct run *R, struct conn *c, double t)
{
  while (c->woff < R->reqlen) {
    uint32_t ev = 0;
    int err = 0;
    ssize_t w = io_write(c, R->req + c->woff, R->reqlen - c->woff, &ev, &err);
    if (w == IO_AGAIN) {
      watch(R, c, ev);
      return;
    }
    if (w <= 0) {
      fail(R, c, &R->e_closed, t, err);
      return;
    }
    c->woff += (size_t)w;
  }
  c->state = C_READING;
  pm_resp_reset(&c->r);
  c->r.no_body = R->head;
  watch(R, c, EPOLLIN);
}

/* Why the handshake of c failed, into R->tls_err. */
static void tls_reason(struct run *R, struct conn *c, int r)
{
  long vr = SSL_get_verify_result(c->ssl);
  unsigned long e = ERR_peek_last_error();
  int kind = SSL_get_error(c->ssl, r);
  if (vr != X509_V_OK)
    snprintf(R->tls_err, sizeof R->tls_err, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
  else if (e)
    ERR_error_string_n(e, R->tls_err, sizeof R->tls_err);
  else if (kind == SSL_ERROR_SYSCALL && errno)
    snprintf(R->tls_err, sizeof R->tls_err, "handshake: %s", strerror(errno));
  else
    snprintf(R->tls_err, sizeof R->tls_err, "the server closed the connection during the handshake");
  ERR_clear_error();
}

/* Drives the TLS handshake of c; sends the request once it is done. */
static void handshake(struct run *R, struct conn *c, double t)
{
  ERR_clear_error();
  int r = SSL_connect(c->ssl);
  if (r == 1) {
    if (R->handshakes_ok++ == 0) {
      R->tls_version = SSL_get_version(c->ssl);
      R->tls_cipher = SSL_get_cipher_name(c->ssl);
    }
    if (SSL_session_reused(c->ssl))
      R->resumed++;
    c->state = C_SENDING;
    try_write(R, c, t);
    return;
  }
  int kind = SSL_get_error(c->ssl, r);
  if (kind == SSL_ERROR_WANT_READ || kind == SSL_ERROR_WANT_WRITE) {
    watch(R, c, kind == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
    return;
  }
  tls_reason(R, c, r);
  c->tls_dead = 1;
  c->retry_at = t + 0.01;
  fail(R, c, &R->e_tls, t, 0);
}

/* TCP is up: start TLS on it (or fail the request when OpenSSL cannot).
 * It offers a copy of the newest session: a TLS 1.3 client marks the session
 * it resumed as used up, and the next connection would then do a full
 * handshake though the server takes the ticket again (nginx does). */
static void tls_start(struct run *R, struct conn *c, double t)
{
  SSL_SESSION *sess = R->sess ? SSL_SESSION_dup(R->sess) : NULL;
  c->ssl = SSL_new(R->tls);
  int ok = c->ssl && SSL_set_fd(c->ssl, c->fd) && (!R->sni || SSL_set_tlsext_host_name(c->ssl, R->sni)) &&
           (!sess || SSL_set_session(c->ssl, sess));
  if (sess)
    SSL_SESSION_free(sess);  /* the connection holds its own reference */
  if (!ok) {
    ERR_error_string_n(ERR_get_error(), R->tls_err, sizeof R->tls_err);
    ERR_clear_error();
    c->tls_dead = 1;
    c->retry_at = t + 0.01;
    fail(R, c, &R->e_tls, t, 0);
    return;
  }
  R->handshakes++;
  c->state = C_HANDSHAKE;
  handshake(R, c, t);
}

/* Gives a due request to connection c (which is idle or down). */
static void start_request(struct run *R, struct conn *c, double intended, double t)
{
  c->intended = intended;
  c->started = t;
  c->woff = 0;
  R->sent++;
  if (c->state == C_IDLE) {
    c->state = C_SENDING;
    try_write(R, c, t);
    return;
  }
  /* down: connect first, then send */
  c->state = C_CONNECTING;
  R->ndown--;
  R->connects++;
  int fd = socket(R->ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    /* out of descriptors (EMFILE/ENFILE) or buffers: this connection waits
     * before it tries again, or the refill loop would hand it the next
     * request at once, forever */
    int err = errno;
    if (err == EMFILE || err == ENFILE)
      R->e_nofile++;
    c->retry_at = t + 0.05;
    fail(R, c, &R->e_connect, t, err);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  if (connect(fd, R->ai->ai_addr, R->ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
    c->retry_at = t + 0.01;
    fail(R, c, &R->e_connect, t, errno);
    return;
  }
  c->state = C_CONNECTING;
  c->events = 0;
  watch(R, c, EPOLLOUT);
}

static void on_response(struct run *R, struct conn *c, double t)
{
  double lat = t - c->intended;
  int cls = c->r.status / 100;
  if (cls >= 1 && cls <= 5)
    R->status[cls]++;
  R->responses++;
  pm_hist_add(&R->h, lat > 0 ? (uint64_t)(lat * 1e6 + 0.5) : 0);
  sec_add(R, t, cls == 5, lat);
  if (c->r.close) {
    conn_close(R, c);
  } else {
    c->state = C_IDLE;
    push_idle(R, c);
  }
}

static void on_readable(struct run *R, struct conn *c, double t)
{
  for (;;) {
    if (c->blen == RBUF) {
      /* a body with no length reading until close: drop what we hold */
      c->blen = 0;
    }
    uint32_t ev = 0;
    int err = 0;
    ssize_t n = io_read(c, c->buf + c->blen, RBUF - c->blen, &ev, &err);
    if (n == IO_AGAIN) {
      watch(R, c, ev);
      return;
    }
    if (n == IO_ERR) {
      fail(R, c, &R->e_read, t, err);
      return;
    }
    if (n == 0) {
      if (c->state == C_READING && c->r.state == P_BODY_EOF) {
        on_response(R, c, t);
        conn_close(R, c);
      } else if (c->state == C_READING) {
        fail(R, c, &R->e_closed, t, 0);
      } else {
        conn_close(R, c);      /* idle keep-alive closed by the server */
      }
      return;
    }
    c->blen += (size_t)n;
    if (c->state != C_READING) {
      c->blen = 0;             /* bytes nobody asked for */
      continue;
    }
    size_t used;
    int rc = pm_resp_feed(&c->r, c->buf, c->blen, &used);
    if (rc == R_ERROR) {
      fail(R, c, &R->e_parse, t, 0);
      return;
    }
    memmove(c->buf, c->buf + used, c->blen - used);
    c->blen -= used;
    if (rc == R_DONE) {
      on_response(R, c, t);
      if (c->state != C_IDLE)
        return;
      c->blen = 0;             /* no pipelining: leftovers are not ours */
      return;
    }
  }
}

static void on_event(struct run *R, struct conn *c, uint32_t ev, double t)
{
  if (c->state == C_CONNECTING) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err || (ev & (EPOLLERR | EPOLLHUP))) {
      c->retry_at = t + 0.01;
      fail(R, c, &R->e_connect, t, err ? err : ECONNREFUSED);
      return;
    }
    R->connect_ok++;
    if (R->tls) {
      tls_start(R, c, t);
      return;
    }
    c->state = C_SENDING;
    try_write(R, c, t);
    return;
  }
  if (c->state == C_HANDSHAKE) {
    handshake(R, c, t);
    return;
  }
  if (c->state == C_SENDING) {
    try_write(R, c, t);
    return;
  }
  /* TLS may wait for the socket to take bytes while reading */
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLOUT))
    on_readable(R, c, t);
}

/* A connection that can take a request now: an idle keep-alive one, else
 * one without a socket whose retry delay has passed. */
static struct conn *free_conn(struct run *R, double t)
{
  while (R->nidle) {
    struct conn *c = R->idle[--R->nidle];
    c->in_idle = 0;
    if (c->state == C_IDLE || (c->state == C_DOWN && c->retry_at <= t))
      return c;
  }
  if (R->ndown == 0)
    return NULL;
  for (int i = 0; i < R->nconn; i++) {
    struct conn *c = &R->c[i];
    if (c->state == C_DOWN && c->retry_at <= t)
      return c;
  }
  return NULL;
}

static void check_timeouts(struct run *R, double t)
{
  for (int i = 0; i < R->nconn; i++) {
    struct conn *c = &R->c[i];
    if (c->state == C_CONNECTING && t - c->started > R->timeout)
      fail(R, c, &R->e_connect, t, ETIMEDOUT);
    else if (c->state == C_HANDSHAKE && t - c->started > R->timeout) {
      snprintf(R->tls_err, sizeof R->tls_err, "handshake timed out");
      c->tls_dead = 1;
      fail(R, c, &R->e_tls, t, 0);
    }
    else if ((c->state == C_SENDING || c->state == C_READING) && t - c->intended > R->timeout
             && t - c->started > R->timeout)
      fail(R, c, &R->e_timeout, t, ETIMEDOUT);
  }
}

static void run_loop(struct run *R)
{
  struct epoll_event evs[256];
  double end = R->t0 + R->duration;
  double drain_end = end + (R->timeout < 2.0 ? R->timeout : 2.0);
  double last_to = R->t0;
  for (;;) {
    double t = now_s();
    if (pm_stop_requested() && end > t) {
      end = t;
      drain_end = t + 0.5;
    }
    int issuing = t < end;
    if (issuing) {
      /* each connection takes at most one request per pass, so a pass ends
       * (and the stop and deadline checks above run) whatever fails */
      int starts = 0;
      if (R->rate > 0) {
        /* every request whose intended time has come is due: counted in one
         * step, not one loop turn per request (a huge rate would spin) */
        double due_f = floor((t - R->t0) * R->rate) + 1;
        if (due_f > (double)R->next_i) {
          uint64_t due = due_f < 1.8e19 ? (uint64_t)due_f : UINT64_MAX / 2;
          R->backlog += due - R->next_i;
          R->next_i = due;
        }
        while (R->backlog && starts < R->nconn) {
          struct conn *c = free_conn(R, t);
          if (!c)
            break;
          double intended = R->t0 + (double)(R->next_i - R->backlog) / R->rate;
          R->backlog--;
          starts++;
          start_request(R, c, intended, t);
        }
      } else {
        struct conn *c;
        while (starts < R->nconn && (c = free_conn(R, t)) != NULL) {
          starts++;
          start_request(R, c, t, t);
        }
      }
    } else {
      int busy = 0;
      for (int i = 0; i < R->nconn; i++)
        if (R->c[i].state == C_CONNECTING || R->c[i].state == C_HANDSHAKE || R->c[i].state == C_SENDING ||
            R->c[i].state == C_READING)
          busy++;
      if (busy == 0 || t >= drain_end) {
        R->unfinished += (uint64_t)busy;
        break;
      }
    }
    if (t - last_to > 0.01) {
      check_timeouts(R, t);
      last_to = t;
    }
    /* sleep until the next request is due, an event, or 10 ms */
    double wait = 0.01;
    if (issuing && R->rate > 0) {
      double due = R->t0 + (double)R->next_i / R->rate - t;
      if (due < wait)
        wait = due;
    }
    if (R->backlog)
      wait = 0.001;          /* a connection may come back any moment */
    if (wait < 0)
      wait = 0;
    struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
    int n = epoll_pwait2(R->ep, evs, 256, &ts, NULL);
    if (n < 0 && errno == ENOSYS)
      n = epoll_wait(R->ep, evs, 256, (int)ceil(wait * 1000));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    t = now_s();
    for (int i = 0; i < n; i++)
      on_event(R, evs[i].data.ptr, evs[i].events, t);
  }
}

static void set_num(lua_State *L, const char *k, double v)
{
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static double opt_num(lua_State *L, const char *k, double def)
{
  lua_getfield(L, 1, k);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

static const char *opt_str(lua_State *L, const char *k)
{
  lua_getfield(L, 1, k);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1);     /* the string stays alive in the options table */
  return s;
}

/* Descriptors this process holds now. */
static long open_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return 0;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own */
}

/* Every connection needs a descriptor: makes room up to the hard limit, or
 * says why not (0 when there is room). Asking more connections than
 * descriptors would only turn into a stream of failed socket() calls. */
static int fd_room(int nconn, long *have, long *need)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return 0;
  *need = open_fds() + nconn + 8; /* epoll, resolver, a little slack */
  if (rl.rlim_cur == RLIM_INFINITY || (long)rl.rlim_cur >= *need)
    return 0;
  if (rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max >= *need) {
    struct rlimit up = { (rlim_t)*need, rl.rlim_max };
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
      return 0;
  }
  *have = (long)(rl.rlim_max == RLIM_INFINITY ? rl.rlim_cur : rl.rlim_max);
  return -1;
}

/* A session the server gave (TLS 1.3: after the handshake, with the first
 * answer): kept, so the next new connection resumes it. A copy: the
 * connection's own session is marked not resumable when it ends without
 * close_notify, and that must not spoil the one every new connection offers. */
static int tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
  struct run *R = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  SSL_SESSION *copy = SSL_SESSION_dup(sess);
  if (!copy)
    return 0;
  if (R->sess)
    SSL_SESSION_free(R->sess);
  R->sess = copy;
  return 0; /* OpenSSL keeps its own reference */
}

/* The TLS context of a run: verification against cacert (a PEM file) or
 * the system's CA store, unless insecure. NULL with the reason in err. */
static SSL_CTX *tls_context(struct run *R, const char *cacert, int insecure, char *err, size_t errlen)
{
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx)
    goto fail;
  SSL_CTX_set_app_data(ctx, R);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* a body that ends at close may end without close_notify */
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, tls_new_session);
  if (insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (cacert ? !SSL_CTX_load_verify_locations(ctx, cacert, NULL) : !SSL_CTX_set_default_verify_paths(ctx)) {
    char why[200];
    ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
    snprintf(err, errlen, "cannot load the CA certificates from %s: %s", cacert ? cacert : "the system store", why);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
  }
  X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(ctx);
  if (R->sni ? !X509_VERIFY_PARAM_set1_host(vp, R->sni, 0) : !X509_VERIFY_PARAM_set1_ip_asc(vp, R->ip))
    goto fail;
  return ctx;
fail:
  ERR_error_string_n(ERR_peek_last_error(), err, errlen);
  ERR_clear_error();
  SSL_CTX_free(ctx);
  return NULL;
}

/// run{host=, port=, request=, rate=, connections=, duration=, timeout=,
///     head=, tls=, cacert=, insecure=, ip_host=}
///   tls: https; the certificate must name host (a DNS name, also sent as
///   SNI) or, with ip_host, the address host; cacert: a PEM file of CAs
///   (default: the system store); insecure: no verification.
///   -> result table | nil, "op: strerror", errno (address resolution)
///   | nil, reason, "fd_limit" (more connections than open files allowed)
///   | nil, reason, "tls" (the TLS context could not be made: a bad cacert)
static int pm_http_run(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *host = opt_str(L, "host");
  const char *port = opt_str(L, "port");
  size_t reqlen = 0;
  lua_getfield(L, 1, "request");
  const char *req = lua_tolstring(L, -1, &reqlen);
  lua_pop(L, 1);
  luaL_argcheck(L, host && port && req && reqlen, 1, "host, port and request are required");
  struct run R;
  memset(&R, 0, sizeof R);
  R.req = req;
  R.reqlen = reqlen;
  R.rate = opt_num(L, "rate", 0);
  R.duration = opt_num(L, "duration", 1);
  R.timeout = opt_num(L, "timeout", 5);
  R.nconn = (int)opt_num(L, "connections", 10);
  luaL_argcheck(L, R.nconn >= 1 && R.nconn <= 100000, 1, "connections must be 1..100000");
  luaL_argcheck(L, R.duration > 0 && R.duration <= 86400, 1, "duration must be in (0, 86400]");
  luaL_argcheck(L, R.rate >= 0, 1, "rate must be >= 0");
  R.ep = -1;
  int result = 0;
  lua_getfield(L, 1, "head");
  R.head = lua_toboolean(L, -1);
  lua_getfield(L, 1, "tls");
  int tls = lua_toboolean(L, -1);
  lua_getfield(L, 1, "insecure");
  int insecure = lua_toboolean(L, -1);
  lua_getfield(L, 1, "ip_host");
  int ip_host = lua_toboolean(L, -1);
  lua_pop(L, 4);
  /* before the descriptors are counted: whatever OpenSSL keeps open is then
   * in the count (only https runs load it at all) */
  if (tls) {
    char err[300];
    if (ossl_load(err, sizeof err) < 0) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      lua_pushliteral(L, "tls");
      return 3;
    }
    R.sni = ip_host ? NULL : host;
    R.ip = ip_host ? host : NULL;
    R.tls = tls_context(&R, opt_str(L, "cacert"), insecure, err, sizeof err);
    if (!R.tls) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      lua_pushliteral(L, "tls");
      return 3;
    }
  }
  long have = 0, need = 0;
  if (fd_room(R.nconn, &have, &need)) {
    if (R.tls)
      SSL_CTX_free(R.tls);
    lua_pushnil(L);
    lua_pushfstring(L, "--connections %d needs about %d open files, but the limit is %d "
                       "(ulimit -n): lower --connections or raise the limit",
                    R.nconn, (int)need, (int)have);
    lua_pushliteral(L, "fd_limit");
    return 3;
  }

  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
  int gai = getaddrinfo(host, port, &hints, &R.ai);
  if (gai != 0) {
    if (R.tls)
      SSL_CTX_free(R.tls);
    lua_pushnil(L);
    lua_pushfstring(L, "resolve %s: %s", host, gai_strerror(gai));
    return 2;
  }
  R.ep = epoll_create1(EPOLL_CLOEXEC);
  if (R.ep < 0) {
    result = pm_push_errno(L, "epoll_create1", errno);
    goto cleanup;
  }
  R.c = calloc((size_t)R.nconn, sizeof *R.c);
  R.idle = calloc((size_t)R.nconn, sizeof *R.idle);
  R.ndown = R.nconn;
  R.nsecs = (int)ceil(R.duration) + 4;
  R.secs = calloc((size_t)R.nsecs, sizeof *R.secs);
  if (!R.c || !R.idle || !R.secs) {
    result = pm_push_errno(L, "calloc", ENOMEM);
    goto cleanup;
  }
  for (int i = 0; i < R.nconn; i++) {
    R.c[i].fd = -1;
    R.c[i].buf = malloc(RBUF);
    if (!R.c[i].buf) {
      result = pm_push_errno(L, "malloc", ENOMEM);
      goto cleanup;
    }
  }

  R.t0 = now_s();
  run_loop(&R);
  double elapsed = now_s() - R.t0;
  double issue_time = elapsed < R.duration ? elapsed : R.duration;

  lua_createtable(L, 0, 24);  // [res]
  set_num(L, "elapsed", elapsed);
  set_num(L, "issue_time", issue_time);
  set_num(L, "asked_rate", R.rate);
  set_num(L, "connections", R.nconn);
  set_num(L, "sent", (double)R.sent);
  set_num(L, "responses", (double)R.responses);
  set_num(L, "backlog", (double)R.backlog);
  set_num(L, "unfinished", (double)R.unfinished);
  set_num(L, "due", (double)(R.rate > 0 ? R.next_i : R.sent));
  set_num(L, "connects", (double)R.connects);
  set_num(L, "connects_ok", (double)R.connect_ok);
  if (R.last_errno) {
    lua_pushstring(L, strerror(R.last_errno));
    lua_setfield(L, -2, "last_error");
  }
  lua_createtable(L, 0, 5);  // [res, status]
  static const char *cls[] = { NULL, "1xx", "2xx", "3xx", "4xx", "5xx" };
  for (int i = 1; i <= 5; i++)
    set_num(L, cls[i], (double)R.status[i]);
  lua_setfield(L, -2, "status");
  lua_createtable(L, 0, 5);  // [res, errors]
  set_num(L, "connect", (double)R.e_connect);
  set_num(L, "timeout", (double)R.e_timeout);
  set_num(L, "read", (double)R.e_read);
  set_num(L, "parse", (double)R.e_parse);
  set_num(L, "closed", (double)R.e_closed);
  set_num(L, "no_descriptor", (double)R.e_nofile);
  if (R.tls)
    set_num(L, "tls", (double)R.e_tls);
  lua_setfield(L, -2, "errors");
  if (R.tls) {
    lua_createtable(L, 0, 6);  // [res, tls]
    set_num(L, "handshakes", (double)R.handshakes);
    set_num(L, "handshakes_ok", (double)R.handshakes_ok);
    set_num(L, "resumed", (double)R.resumed);
    lua_pushboolean(L, !insecure);
    lua_setfield(L, -2, "verified");
    if (R.tls_version) {
      lua_pushstring(L, R.tls_version);
      lua_setfield(L, -2, "version");
      lua_pushstring(L, R.tls_cipher);
      lua_setfield(L, -2, "cipher");
    }
    if (R.e_tls) {
      lua_pushstring(L, R.tls_err);
      lua_setfield(L, -2, "last_error");
    }
    lua_setfield(L, -2, "tls");
  }
  if (R.h.n) {
    lua_createtable(L, 0, 10);  // [res, latency] seconds
    set_num(L, "min", (double)R.h.min / 1e6);
    set_num(L, "max", (double)R.h.max / 1e6);
    set_num(L, "mean", R.h.sum / (double)R.h.n / 1e6);
    static const struct { const char *k; double q; } qs[] = {
      { "p50", 0.50 }, { "p75", 0.75 }, { "p90", 0.90 }, { "p99", 0.99 },
      { "p99.9", 0.999 }, { "p99.99", 0.9999 },
    };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
      set_num(L, qs[i].k, pm_hist_quantile(&R.h, qs[i].q) / 1e6);
    lua_setfield(L, -2, "latency");
    /* non-empty buckets: {lo, hi, count} in seconds */
    lua_newtable(L);  // [res, hist]
    int k = 0;
    for (int i = 0; i < H_BUCKETS; i++)
      if (R.h.c[i]) {
        lua_createtable(L, 3, 0);
        lua_pushnumber(L, (double)pm_hist_lower(i) / 1e6);
        lua_rawseti(L, -2, 1);
        lua_pushnumber(L, (double)(pm_hist_lower(i) + pm_hist_width(i)) / 1e6);
        lua_rawseti(L, -2, 2);
        lua_pushnumber(L, (double)R.h.c[i]);
        lua_rawseti(L, -2, 3);
        lua_rawseti(L, -2, ++k);
      }
    lua_setfield(L, -2, "histogram");
  }
  /* per second: responses, errors and log2(us) latency buckets */
  lua_newtable(L);  // [res, series]
  int last = (int)ceil(issue_time);
  if (last > R.nsecs)
    last = R.nsecs;
  for (int s = 0; s < last; s++) {
    lua_createtable(L, 0, 3);
    set_num(L, "t", s);
    set_num(L, "responses", R.secs[s].responses);
    set_num(L, "errors", R.secs[s].errors);
    lua_createtable(L, SERIES_BUCKETS, 0);
    for (int b = 0; b < SERIES_BUCKETS; b++) {
      lua_pushnumber(L, R.secs[s].lat[b]);
      lua_rawseti(L, -2, b + 1);
    }
    lua_setfield(L, -2, "lat_log2_us");
    lua_rawseti(L, -2, s + 1);
  }
  lua_setfield(L, -2, "series");
  result = 1;

cleanup:
  if (R.c) {
    for (int i = 0; i < R.nconn; i++) {
      if (R.c[i].ssl)
        SSL_free(R.c[i].ssl);
      if (R.c[i].fd >= 0)
        close(R.c[i].fd);
      free(R.c[i].buf);
    }
    free(R.c);
  }
  free(R.idle);
  free(R.secs);
  if (R.ep >= 0)
    close(R.ep);
  freeaddrinfo(R.ai);
  if (R.sess)
    SSL_SESSION_free(R.sess);
  if (R.tls)
    SSL_CTX_free(R.tls);
  return result;
}

/// _hist(values_us) -> {p50=, p99=, max=, buckets=n}: the histogram alone, for specs
static int pm_http_hist(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  struct hist *h = calloc(1, sizeof *h);
  if (!h)
    return luaL_error(L, "http: hist: out of memory");
  size_t n = lua_objlen(L, 1);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, (int)i);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    pm_hist_add(h, v > 0 ? (uint64_t)v : 0);
  }
  lua_createtable(L, 0, 6);
  set_num(L, "p50", pm_hist_quantile(h, 0.5));
  set_num(L, "p90", pm_hist_quantile(h, 0.9));
  set_num(L, "p99", pm_hist_quantile(h, 0.99));
  set_num(L, "p99.9", pm_hist_quantile(h, 0.999));
  set_num(L, "max", (double)h->max);
  set_num(L, "min", (double)h->min);
  int used = 0;
  for (int i = 0; i < H_BUCKETS; i++)
    used += h->c[i] != 0;
  set_num(L, "buckets", used);
  free(h);
  return 1;
}

/* Buckets read from Lua for hist_quantile */
struct lbuckets {
  int n;
  uint64_t *count;
  double *lo, *hi;
  int *open;
};

static void lbucket(const void *ud, int i, uint64_t *count, double *lo, double *hi, int *open)
{
  const struct lbuckets *b = ud;
  *count = b->count[i];
  *lo = b->lo[i];
  *hi = b->hi[i];
  *open = b->open[i];
}

/* t[k] as a number into *v; false when it is not one */
static int field_num(lua_State *L, int t, const char *k, double *v)
{
  lua_getfield(L, t, k);
  int ok = lua_isnumber(L, -1);
  *v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return ok;
}

/// hist_quantile(buckets, q, min?, max?) -> value | nil when empty: the C rule
/// (pm_quantile) on Lua buckets {lo=, hi=, count=, open=}, so specs can hold
/// lib/perf_manual/hist.lua's quantile to it. Without min/max they are the
/// lowest and highest bound of the non-empty buckets (an open top bucket:
/// its lo), as hist.lua takes them.
static int pm_http_hist_quantile(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  double q = luaL_checknumber(L, 2);
  luaL_argcheck(L, q >= 0 && q <= 1, 2, "quantile must be in [0, 1]");
  int has_min = !lua_isnoneornil(L, 3), has_max = !lua_isnoneornil(L, 4);
  double min = has_min ? luaL_checknumber(L, 3) : 0, max = has_max ? luaL_checknumber(L, 4) : 0;
  int nb = (int)lua_objlen(L, 1);
  /* nothing below raises a Lua error until the arrays are freed */
  struct lbuckets b = { nb, calloc(nb + 1, sizeof *b.count), calloc(nb + 1, sizeof *b.lo),
                        calloc(nb + 1, sizeof *b.hi), calloc(nb + 1, sizeof *b.open) };
  const char *bad = !b.count || !b.lo || !b.hi || !b.open ? "out of memory" : NULL;
  uint64_t n = 0;
  int first = -1, last = -1, where = 0;
  for (int i = 0; i < nb && !bad; i++) {
    double c;
    where = i + 1;
    lua_rawgeti(L, 1, i + 1);
    if (!lua_istable(L, -1))
      bad = "not a table";
    else if (!field_num(L, -1, "count", &c) || c < 0 || c != floor(c) || c >= 18446744073709551616.0)
      bad = "count is not a whole number >= 0";
    else if (!field_num(L, -1, "lo", &b.lo[i]) || !field_num(L, -1, "hi", &b.hi[i]))
      bad = "lo or hi is not a number";
    if (!bad) {
      lua_getfield(L, -1, "open");
      b.open[i] = lua_toboolean(L, -1);
      lua_pop(L, 1);
      b.count[i] = (uint64_t)c;
      if (b.count[i]) {
        n += b.count[i];
        if (first < 0)
          first = i;
        last = i;
      }
    }
    lua_pop(L, 1);
  }
  double v = 0;
  if (!bad && n) {
    if (!has_min)
      min = b.lo[first];
    if (!has_max)
      max = b.open[last] ? b.lo[last] : b.hi[last];
  }
  if (!bad)
    v = pm_quantile(nb, lbucket, &b, n, min, max, q);
  free(b.count), free(b.lo), free(b.hi), free(b.open);
  if (bad)
    return luaL_error(L, "http: hist_quantile: bucket %d: %s", where, bad);
  if (isnan(v))
    lua_pushnil(L);
  else
    lua_pushnumber(L, v);
  return 1;
}

static const luaL_Reg pm_http_funcs[] = {
  { "run", pm_http_run },
  { "_parse", pm_http_parse },
  { "_hist", pm_http_hist },
  { "hist_quantile", pm_http_hist_quantile },
  { NULL, NULL },
};

int luaopen_pm_http(lua_State *L)
{
  lua_newtable(L);
  luaL_register(L, NULL, pm_http_funcs);
  return 1;
}
