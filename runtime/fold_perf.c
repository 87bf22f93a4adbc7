/* pm.fold, perf script folding: `perf script` text folded into a profile
 * the way FlameGraph's stackcollapse-perf.pl folds it, the input cut at
 * blank lines and folded on several threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "fold_internal.h"

/* ---- perf script folding (stackcollapse-perf.pl semantics) --------------- */

struct perf_state {
  struct perf_opts o;
  struct buf pname;
  int have_pname;
  uint64_t period;
  struct buf filter;
  int have_filter, filtered_events;
  /* the folded stack grows leftwards: perf prints the leaf first, the
   * folded line starts at the root; stack = pre[pos..cap) */
  char *pre;
  size_t pos, cap;
  struct buf tmp;
  uint64_t samples;
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static inline int has_byte_below(uint64_t v, unsigned n) { return ((v - ONES * n) & ~v & HIGHS) != 0; }
static inline int has_byte(uint64_t v, unsigned char c) { return has_byte_below(v ^ (ONES * c), 1); }

/* The regex `^(\S.+?)\s+(\d+)/?(\d+)?\s+` (slashes repeat): the shortest comm (2+ chars) followed by
 * "pid" or "pid/tid" and whitespace. */
int pm_fold_match_event(const char *s, size_t n, size_t *comm_len, const char **pid, size_t *pidn,
                       const char **tid, size_t *tidn)
{
  if (n < 2 || is_ws((unsigned char)s[0]))
    return 0;
  for (size_t i = 2; i < n; i++) {
    if (!is_ws((unsigned char)s[i]))
      continue;
    size_t k = i;
    while (k < n && is_ws((unsigned char)s[k]))
      k++;
    if (k >= n || !is_digit((unsigned char)s[k]))
      continue;
    size_t d1 = k;
    while (k < n && is_digit((unsigned char)s[k]))
      k++;
    size_t d1e = k;
    while (k < n && s[k] == '/')
      k++;
    size_t d2 = k;
    while (k < n && is_digit((unsigned char)s[k]))
      k++;
    if (k >= n || !is_ws((unsigned char)s[k]))
      continue;
    *comm_len = i;
    *pid = s + d1;
    *pidn = d1e - d1;
    *tid = s + d2;
    *tidn = k - d2;
    return 1;
  }
  return 0;
}

/* `:\s*(\d+)*\s+(\S+):\s*$` at the leftmost ':' where it matches. */
int pm_fold_match_period(const char *s, size_t n, const char **per, size_t *pern, const char **ev, size_t *evn)
{
  size_t end = n;
  while (end > 0 && is_ws((unsigned char)s[end - 1]))
    end--;
  /* the event token: the last whitespace-free run, ending with ':' */
  if (end < 2 || s[end - 1] != ':')
    return 0;
  size_t tok = end;
  while (tok > 0 && !is_ws((unsigned char)s[tok - 1]))
    tok--;
  if (end - tok < 2)
    return 0;
  for (size_t c = 0; c < tok; c++) {
    if (s[c] != ':')
      continue;
    size_t k = c + 1, ws0 = k;
    while (k < tok && is_ws((unsigned char)s[k]))
      k++;
    if (k == tok) {
      if (k > ws0) { /* ": EVENT:" without a period */
        *per = NULL;
        *pern = 0;
        *ev = s + tok;
        *evn = end - 1 - tok;
        return 1;
      }
      continue;
    }
    if (!is_digit((unsigned char)s[k]))
      continue;
    size_t d = k;
    while (k < tok && is_digit((unsigned char)s[k]))
      k++;
    size_t de = k;
    while (k < tok && is_ws((unsigned char)s[k]))
      k++;
    if (k == tok && k > de) {
      *per = s + d;
      *pern = de - d;
      *ev = s + tok;
      *evn = end - 1 - tok;
      return 1;
    }
  }
  /* the token itself may hold ':' — e.g. "...: cycles:u:" is one token */
  return 0;
}

/* Puts ";" + frame in front of the stack being built. */
static int push_frame(struct perf_state *st, const char *f, size_t n)
{
  if (st->pos < n + 1) {
    size_t used = st->cap - st->pos;
    size_t cap = st->cap ? st->cap * 2 : 65536;
    while (cap - used < n + 1)
      cap *= 2;
    char *np = malloc(cap);
    if (!np)
      return -1;
    if (used)
      memcpy(np + cap - used, st->pre + st->pos, used);
    free(st->pre);
    st->pre = np;
    st->pos = cap - used;
    st->cap = cap;
  }
  st->pos -= n + 1;
  st->pre[st->pos] = ';';
  memcpy(st->pre + st->pos + 1, f, n);
  return 0;
}

/* bytes that send a symbol down the slow path: ';' '(' quotes, "->" */
static const unsigned char special[256] = { [';'] = 1, ['('] = 1, ['"'] = 1, ['\''] = 1, ['-'] = 1 };

/* any of ; ( " ' in s — the bytes the generic tidying acts on */
static int has_special(const char *s, size_t n)
{
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, s + i, 8);
    if (has_byte(v, ';') || has_byte(v, '(') || has_byte(v, '"') || has_byte(v, '\''))
      return 1;
  }
  for (; i < n; i++)
    if (s[i] == ';' || s[i] == '(' || s[i] == '"' || s[i] == '\'')
      return 1;
  return 0;
}

static int has_suffix(const char *s, size_t n, const char *suf)
{
  size_t m = strlen(suf);
  return n >= m && memcmp(s + n - m, suf, m) == 0;
}

static int contains(const char *s, size_t n, const char *needle)
{
  size_t m = strlen(needle);
  if (m > n)
    return 0;
  for (size_t i = 0; i + m <= n; i++)
    if (s[i] == needle[0] && memcmp(s + i, needle, m) == 0)
      return 1;
  return 0;
}

/* The suffix a frame gets for its module: kernel "_[k]" (with --kernel),
 * JIT "_[j]" (with --jit, a /tmp/perf-N.map module), or none. */
static const char *annotation(const struct perf_state *st, const char *s, size_t n, const char *mod, size_t modn)
{
  if (st->o.kernel && ((modn > 0 && mod[0] == '[' && !contains(mod, modn, "unknown")) || has_suffix(mod, modn, "vmlinux")))
    return "_[k]";
  if (st->o.jit && modn > 10 && memcmp(mod, "/tmp/perf-", 10) == 0) {
    size_t i = 10;
    while (i < modn && is_digit((unsigned char)mod[i]))
      i++;
    if (i > 10 && modn - i >= 4 && memcmp(mod + i, ".map", 4) == 0 && !contains(s, n, "_[j]"))
      return "_[j]";
  }
  return NULL;
}

/* One function name of a stack line, tidied and annotated into st->tmp. */
static int tidy_func(struct perf_state *st, const char *func, size_t fn, const char *pc, size_t pcn,
                     const char *mod, size_t modn, int inlined)
{
  struct buf *t = &st->tmp;
  t->n = 0;
  if (fn == 9 && memcmp(func, "[unknown]", 9) == 0) {
    if (buf_add(t, "[", 1))
      return -1;
    if (!(modn == 9 && memcmp(mod, "[unknown]", 9) == 0)) {
      /* the module's base name stands in for the unknown symbol */
      const char *b = mod;
      for (size_t i = 0; i < modn; i++)
        if (mod[i] == '/')
          b = mod + i + 1;
      if (buf_add(t, b, modn - (size_t)(b - mod)))
        return -1;
    } else if (buf_add(t, "unknown", 7)) {
      return -1;
    }
    if (st->o.addrs && (buf_add(t, " <", 2) || buf_add(t, pc, pcn) || buf_add(t, ">", 1)))
      return -1;
    if (buf_add(t, "]", 1))
      return -1;
  } else if (buf_add(t, func, fn)) {
    return -1;
  }
  /* generic tidy: ';' would split the frame; drop argument lists unless the
   * name looks like JavaScript "a.(b).c"; drop quotes */
  char *s = t->p;
  size_t n = t->n;
  if (!has_special(s, n))
    goto java; /* nothing to tidy: the usual case, "[unknown]" included */
  for (size_t i = 0; i < n; i++)
    if (s[i] == ';')
      s[i] = ':';
  int js = 0;
  for (size_t i = 0; i + 1 < n && !js; i++) {
    if (s[i] == '.' && s[i + 1] == '(') {
      for (size_t j = n; j-- > i + 2;)
        if (s[j] == '.' && s[j - 1] == ')') {
          js = 1;
          break;
        }
    }
  }
  if (!js) {
    static const char anon[] = "anonymous namespace)";
    for (size_t i = 0; i < n; i++) {
      if (s[i] != '(')
        continue;
      if (n - i - 1 >= sizeof anon - 1 && memcmp(s + i + 1, anon, sizeof anon - 1) == 0)
        continue;
      n = i;
      break;
    }
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] != '"' && s[i] != '\'')
      s[w++] = s[i];
  n = w;
java:
  /* Java: "Lorg/x/Y:.m" -> "org/x/Y:.m" when the process is plain "java" */
  if (st->pname.n == 4 && memcmp(st->pname.p, "java", 4) == 0 && n > 0 && s[0] == 'L' &&
      memchr(s, '/', n)) {
    memmove(s, s + 1, n - 1);
    n--;
  }
  t->n = n;
  if (inlined) {
    if (!contains(s, n, "_[i]") && buf_add(t, "_[i]", 4))
      return -1;
    return 0;
  }
  const char *suf = annotation(st, s, n, mod, modn);
  if (suf && buf_add(t, suf, 4))
    return -1;
  return 0;
}

/* `^\s*(\w+)\s*(.+) \((\S*)\)`; returns 1 and the pieces when it matches. */
static int match_stack_line(const char *s, size_t n, const char **pc, size_t *pcn, const char **fn,
                            size_t *fnn, const char **mod, size_t *modn)
{
  size_t w0 = 0;
  if (n > 0 && s[0] == '\t')
    w0 = 1;
  /* perf pads addresses with runs of spaces: skip them 8 at a time */
  while (w0 + 8 <= n) {
    uint64_t v;
    memcpy(&v, s + w0, 8);
    if (v != 0x2020202020202020ull)
      break;
    w0 += 8;
  }
  while (w0 < n && is_ws((unsigned char)s[w0]))
    w0++;
  size_t w1 = w0;
  while (w1 < n && is_word((unsigned char)s[w1]))
    w1++;
  if (w1 == w0)
    return 0;
  size_t f = w1;
  while (f < n && is_ws((unsigned char)s[f]))
    f++;
  /* rightmost " (" whose following non-space run holds a ')' */
  for (size_t p = n; p > 1;) {
    const char *o = memrchr(s + 1, '(', p - 1);
    if (!o)
      break;
    p = (size_t)(o - s);
    if (s[p - 1] != ' ')
      continue;
    size_t q = p + 1, last = 0;
    /* 8 bytes at a time while none of them can be whitespace (<= 0x20) */
    while (q + 8 <= n) {
      uint64_t v;
      memcpy(&v, s + q, 8);
      if (has_byte_below(v, 0x21))
        break;
      q += 8;
    }
    while (q < n && !is_ws((unsigned char)s[q]))
      q++;
    const char *cl = memrchr(s + p + 1, ')', q - (p + 1));
    if (cl)
      last = (size_t)(cl - s);
    if (!last)
      continue;
    size_t sp = p - 1; /* the ' ' before '(' */
    size_t start = f < sp ? f : sp - 1;
    if (sp < 1 || start < w0 + 1 || start >= sp)
      return 0;
    if (start < w1) /* \w+ gave back characters to .+ */
      *pcn = start - w0;
    else
      *pcn = w1 - w0;
    *pc = s + w0;
    *fn = s + start;
    *fnn = sp - start;
    *mod = s + p + 1;
    *modn = last - (p + 1);
    return 1;
  }
  return 0;
}

static int perf_stack_line(struct perf_state *st, const char *s, size_t n, int *matched)
{
  const char *pc, *fn, *mod;
  size_t pcn, fnn, modn;
  *matched = match_stack_line(s, n, &pc, &pcn, &fn, &fnn, &mod, &modn);
  if (!*matched || !st->have_pname)
    return 0;
  /* "sym+0x1f" -> "sym" */
  for (size_t i = fnn; i-- > 0;) {
    unsigned char c = (unsigned char)fn[i];
    if (is_digit(c) || (c >= 'a' && c <= 'f'))
      continue;
    if (c == 'x' && i >= 2 && fn[i - 1] == '0' && fn[i - 2] == '+' && i + 1 < fnn)
      fnn = i - 2;
    break;
  }
  if (fnn > 0 && fn[0] == '(')
    return 0; /* a process name in parentheses, not a frame */
  /* the common case: a plain symbol that needs no tidying or annotation */
  if (!(st->pname.n == 4 && fnn > 0 && fn[0] == 'L')) {
    int plain = fnn > 0 && fn[0] != '[';
    size_t i = 0;
    for (; plain && i + 8 <= fnn; i += 8) {
      uint64_t v;
      memcpy(&v, fn + i, 8);
      if (has_byte(v, ';') || has_byte(v, '(') || has_byte(v, '"') || has_byte(v, '\'') || has_byte(v, '-'))
        break;
    }
    for (; plain && i < fnn; i++)
      plain = !special[(unsigned char)fn[i]];
    if (plain) {
      const char *suf = annotation(st, fn, fnn, mod, modn);
      if (!suf)
        return push_frame(st, fn, fnn);
      st->tmp.n = 0;
      if (buf_add(&st->tmp, fn, fnn) || buf_add(&st->tmp, suf, 4))
        return -1;
      return push_frame(st, st->tmp.p, st->tmp.n);
    }
  }
  /* inlined frames "a->b->c"; trailing empty pieces vanish like Perl's split */
  const char *pieces[64];
  size_t plen[64];
  size_t np = 0, a = 0;
  for (size_t i = 0; i <= fnn; i++) {
    if (i == fnn || (i + 1 < fnn && fn[i] == '-' && fn[i + 1] == '>')) {
      if (np < 64) {
        pieces[np] = fn + a;
        plen[np] = i - a;
        np++;
      }
      if (i < fnn) {
        a = i + 2;
        i++;
      }
    }
  }
  while (np > 0 && plen[np - 1] == 0)
    np--;
  /* the first piece is the outermost of the inline chain: it ends up
   * left of the others, so it goes in last */
  for (size_t k = np; k-- > 0;) {
    if (tidy_func(st, pieces[k], plen[k], pc, pcn, mod, modn, k > 0))
      return -1;
    if (push_frame(st, st->tmp.p, st->tmp.n))
      return -1;
  }
  return 0;
}

static int perf_end_sample(struct perf_state *st, struct profile *p)
{
  if (!st->have_pname) {
    st->pos = st->cap;
    return 0;
  }
  /* the process name is the root frame: push it, then drop its ';' */
  if (push_frame(st, st->pname.p, st->pname.n))
    return -1;
  if (pm_profile_add(p, st->pre + st->pos + 1, st->cap - st->pos - 1, st->period))
    return -1;
  st->samples++;
  st->pos = st->cap;
  st->have_pname = 0;
  return 0;
}

static int perf_event_line(struct perf_state *st, const char *s, size_t n)
{
  size_t cl, pidn, tidn;
  const char *pid, *tid;
  if (!pm_fold_match_event(s, n, &cl, &pid, &pidn, &tid, &tidn))
    return 0;
  const char *per = NULL, *ev;
  size_t pern = 0, evn;
  if (pm_fold_match_period(s, n, &per, &pern, &ev, &evn)) {
    if (!st->have_filter) {
      /* only the first event type: mixing cycles and instructions misleads */
      if (buf_add(&st->filter, ev, evn))
        return -1;
      st->have_filter = 1;
    } else if (evn != st->filter.n || memcmp(ev, st->filter.p, evn) != 0) {
      st->filtered_events++;
      return 1;
    }
  }
  uint64_t period = 0;
  for (size_t i = 0; i < pern; i++) {
    period = period * 10 + (uint64_t)(per[i] - '0');
    if (period > MAX_COUNT) {
      /* the folded reader refuses such a count: the sample is skipped and
       * reported the same way (its stack lines are read, not added) */
      st->have_pname = 0;
      return 2;
    }
  }
  st->period = period ? period : 1;
  /* a missing or "0" tid means the number seen was the tid */
  const char *rpid = pid, *rtid = tid;
  size_t rpidn = pidn, rtidn = tidn;
  if (tidn == 0 || (tidn == 1 && tid[0] == '0')) {
    rtid = pid;
    rtidn = pidn;
    rpid = "?";
    rpidn = 1;
  }
  struct buf *pn = &st->pname;
  pn->n = 0;
  if (buf_add(pn, s, cl))
    return -1;
  if (st->o.tid) {
    if (buf_add(pn, "-", 1) || buf_add(pn, rpid, rpidn) || buf_add(pn, "/", 1) || buf_add(pn, rtid, rtidn))
      return -1;
  } else if (st->o.pid) {
    if (buf_add(pn, "-", 1) || buf_add(pn, rpid, rpidn))
      return -1;
  }
  for (size_t i = 0; i < pn->n; i++)
    if (pn->p[i] == ' ')
      pn->p[i] = '_';
  st->have_pname = 1;
  return 1;
}

void *pm_fold_chunk(void *arg)
{
  struct chunk *c = arg;
  struct perf_state st;
  memset(&st, 0, sizeof st);
  st.o = c->o;
  if (c->have_filter) {
    if (buf_add(&st.filter, c->filter, c->filterlen)) {
      c->oom = 1;
      return NULL;
    }
    st.have_filter = 1;
  }
  const char *s = c->s;
  size_t n = c->n, lineno = 0, pos = 0, sample_line = 0;
  int in_sample = 0;
  while (pos < n) {
    const char *line = s + pos;
    const char *nl = memchr(line, '\n', n - pos);
    size_t len = nl ? (size_t)(nl - line) : n - pos;
    pos += len + (nl ? 1 : 0);
    lineno++;
    if (len > 0 && line[0] == '#')
      continue;
    if (len > 0 && line[len - 1] == '\r')
      len--;
    if (len == 0) {
      if (perf_end_sample(&st, c->p)) {
        c->oom = 1;
        break;
      }
      in_sample = 0;
      continue;
    }
    int ev = perf_event_line(&st, line, len);
    if (ev < 0) {
      c->oom = 1;
      break;
    }
    if (ev == 2) {
      in_sample = 0;
      if (pm_fold_report_bad(&c->r, lineno, "sample period above 2^53", line, len))
        break;
      continue;
    }
    if (ev) {
      in_sample = 1;
      sample_line = lineno;
      continue;
    }
    int matched;
    if (perf_stack_line(&st, line, len, &matched)) {
      c->oom = 1;
      break;
    }
    if (!matched && pm_fold_report_bad(&c->r, lineno, "not a perf script sample header or stack line", line, len))
      break;
  }
  /* stackcollapse-perf.pl drops a last sample with no blank line after it;
   * so do we, but we say so */
  if (!c->oom && !c->r.failed && in_sample && st.have_pname)
    pm_fold_report_bad(&c->r, sample_line, "truncated sample at end of input (no blank line after its stack)", "", 0);
  c->lines = lineno;
  c->samples = st.samples;
  c->filtered = st.filtered_events;
  buf_free(&st.pname);
  buf_free(&st.filter);
  buf_free(&st.tmp);
  free(st.pre);
  return NULL;
}

/* The event type stackcollapse folds: that of the first sample header
 * which names one. */
static int first_event(const char *s, size_t n, const char **ev, size_t *evn)
{
  size_t pos = 0;
  while (pos < n) {
    const char *line = s + pos;
    const char *nl = memchr(line, '\n', n - pos);
    size_t len = nl ? (size_t)(nl - line) : n - pos;
    pos += len + 1;
    if (len == 0 || line[0] == '#' || is_ws((unsigned char)line[0]))
      continue;
    if (line[len - 1] == '\r')
      len--;
    size_t cl, pidn, tidn, pern;
    const char *pid, *tid, *per;
    if (pm_fold_match_event(line, len, &cl, &pid, &pidn, &tid, &tidn) &&
        pm_fold_match_period(line, len, &per, &pern, ev, evn))
      return 1;
  }
  return 0;
}

#define MAX_THREADS 8
#define MIN_CHUNK (4u << 20)

int pm_fold_perf_text(lua_State *L, struct profile *p, const char *s, size_t n, int opts)
{
  struct perf_opts o = { 0 };
  o.pid = pm_fold_opt_bool(L, opts, "pid");
  o.tid = pm_fold_opt_bool(L, opts, "tid");
  o.kernel = pm_fold_opt_bool(L, opts, "kernel") || pm_fold_opt_bool(L, opts, "all");
  o.jit = pm_fold_opt_bool(L, opts, "jit") || pm_fold_opt_bool(L, opts, "all");
  o.addrs = pm_fold_opt_bool(L, opts, "addrs");
  int strict = pm_fold_opt_bool(L, opts, "strict");
  int threads = (int)pm_fold_opt_num(L, opts, "threads", 0);
  if (threads <= 0) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    threads = ncpu > 0 ? (int)ncpu : 1;
  }
  if (threads > MAX_THREADS)
    threads = MAX_THREADS;
  if ((size_t)threads > n / MIN_CHUNK + 1)
    threads = (int)(n / MIN_CHUNK + 1);
  const char *ev = NULL;
  size_t evn = 0;
  int have_filter = first_event(s, n, &ev, &evn);

  struct chunk c[MAX_THREADS];
  memset(c, 0, sizeof c);
  int nc = 0;
  size_t start = 0;
  for (int i = 0; i < threads && start < n; i++) {
    size_t end = n;
    if (i < threads - 1) {
      /* cut after the next blank line past an even share */
      size_t want = start + (n - start) / (size_t)(threads - i);
      const char *q = want < n ? memmem(s + want, n - want, "\n\n", 2) : NULL;
      end = q ? (size_t)(q - s) + 2 : n;
    }
    c[nc].o = o;
    c[nc].s = s + start;
    c[nc].n = end - start;
    c[nc].filter = ev;
    c[nc].filterlen = evn;
    c[nc].have_filter = have_filter;
    c[nc].r.strict = strict;
    c[nc].p = nc == 0 ? p : calloc(1, sizeof(struct profile));
    if (!c[nc].p)
      break;
    nc++;
    start = end;
  }
  int oom = start < n;
  if (nc > 0)
    c[nc - 1].last = 1;
  pthread_t tid[MAX_THREADS];
  int started[MAX_THREADS] = { 0 };
  for (int i = 1; i < nc && !oom; i++)
    started[i] = pthread_create(&tid[i], NULL, pm_fold_chunk, &c[i]) == 0;
  for (int i = 1; i < nc; i++)
    if (!started[i])
      pm_fold_chunk(&c[i]); /* no thread: fold it here */
  if (nc > 0)
    pm_fold_chunk(&c[0]);
  for (int i = 1; i < nc; i++)
    if (started[i])
      pthread_join(tid[i], NULL);

  size_t offsets[MAX_THREADS] = { 0 }, lines = 0;
  uint64_t samples = 0;
  int filtered = 0, failed = -1;
  for (int i = 0; i < nc; i++) {
    offsets[i] = lines;
    lines += c[i].lines;
    samples += c[i].samples;
    filtered += c[i].filtered;
    oom |= c[i].oom;
    if (failed < 0 && c[i].r.failed)
      failed = i;
    /* a strict failure hides what later chunks saw */
    if (failed >= 0)
      break;
  }
  for (int i = 1; i < nc && !oom && failed < 0; i++) {
    struct profile *q = c[i].p;
    p->saturated += q->saturated;
    for (size_t k = 0; k < q->n; k++)
      if (pm_profile_add(p, q->ents[k].key, q->ents[k].len, q->ents[k].count)) {
        oom = 1;
        break;
      }
  }
  int nret;
  if (oom) {
    nret = -1;
  } else if (failed >= 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "line %d: %s", (int)(c[failed].r.fail_line + offsets[failed]), c[failed].r.fail_reason);
    nret = 2;
  } else {
    struct report reps[MAX_THREADS];
    for (int i = 0; i < nc; i++)
      reps[i] = c[i].r;
    pm_fold_push_stats(L, reps, offsets, nc, samples, lines, filtered);
    pm_fold_push_saturated(L, p);
    nret = 1;
  }
  for (int i = 0; i < nc; i++) {
    free(c[i].r.v);
    if (i > 0)
      pm_profile_destroy(c[i].p);
  }
  if (nret < 0)
    return luaL_error(L, "fold: perf script: out of memory");
  return nret;
}
