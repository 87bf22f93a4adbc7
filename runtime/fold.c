/* pm.fold: stack profiles in C — fold `perf script` text the way FlameGraph's
 * stackcollapse-perf.pl does, read/write/merge Brendan Gregg's folded format,
 * and lay a profile out as flame-graph SVG frames. The Lua wrapper
 * (perf_manual.fold, perf_manual.report.flamegraph) owns the wording, the
 * palette choice and the page around the frames. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "pm.h"
#include "fold_internal.h"

#define PM_META_PROFILE "perf_manual.profile"

/* ---- growable buffer --------------------------------------------------- */

struct buf {
  char *p;
  size_t n, cap;
};

static int buf_reserve(struct buf *b, size_t extra)
{
  if (b->n + extra <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + extra)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p)
    return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static int buf_add(struct buf *b, const char *s, size_t n)
{
  if (buf_reserve(b, n))
    return -1;
  memcpy(b->p + b->n, s, n);
  b->n += n;
  return 0;
}

static void buf_free(struct buf *b)
{
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ---- the profile: stack -> count hash ---------------------------------- */

struct arena_blk {
  struct arena_blk *next;
  size_t used, cap;
  char data[];
};

uint64_t pm_fold_hash(const char *s, size_t n)
{
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    s += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  return h;
}

static char *arena_copy(struct profile *p, const char *s, size_t n)
{
  struct arena_blk *a = p->arena;
  if (!a || a->cap - a->used < n) {
    size_t cap = n > (1u << 20) ? n : (1u << 20);
    a = malloc(sizeof *a + cap);
    if (!a)
      return NULL;
    a->next = p->arena;
    a->used = 0;
    a->cap = cap;
    p->arena = a;
  }
  char *d = a->data + a->used;
  memcpy(d, s, n);
  a->used += n;
  return d;
}

static int slots_grow(struct profile *p)
{
  size_t cap = p->scap ? p->scap * 2 : 1024;
  uint32_t *s = calloc(cap, sizeof *s);
  if (!s)
    return -1;
  for (size_t i = 0; i < p->n; i++) {
    size_t j = p->ents[i].hash & (cap - 1);
    while (s[j])
      j = (j + 1) & (cap - 1);
    s[j] = (uint32_t)(i + 1);
  }
  free(p->slots);
  p->slots = s;
  p->scap = cap;
  return 0;
}

struct entry *pm_profile_find(const struct profile *p, const char *key, size_t len, uint64_t h)
{
  if (!p->scap)
    return NULL;
  size_t j = h & (p->scap - 1);
  while (p->slots[j]) {
    struct entry *e = &p->ents[p->slots[j] - 1];
    if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
      return e;
    j = (j + 1) & (p->scap - 1);
  }
  return NULL;
}

/* Adds count to stack `key`; -1 on out of memory. */
int pm_profile_add(struct profile *p, const char *key, size_t len, uint64_t count)
{
  uint64_t h = pm_fold_hash(key, len);
  struct entry *e = pm_profile_find(p, key, len, h);
  p->total += count;
  if (e) {
    e->count += count;
    return 0;
  }
  if (len > UINT32_MAX || p->n >= UINT32_MAX - 1)
    return -1;
  if ((p->n + 1) * 2 > p->scap && slots_grow(p))
    return -1;
  if (p->n == p->ecap) {
    size_t cap = p->ecap ? p->ecap * 2 : 512;
    struct entry *ne = realloc(p->ents, cap * sizeof *ne);
    if (!ne)
      return -1;
    p->ents = ne;
    p->ecap = cap;
  }
  char *k = arena_copy(p, key, len);
  if (!k)
    return -1;
  e = &p->ents[p->n];
  e->key = k;
  e->len = (uint32_t)len;
  e->hash = h;
  e->count = count;
  size_t j = h & (p->scap - 1);
  while (p->slots[j])
    j = (j + 1) & (p->scap - 1);
  p->slots[j] = (uint32_t)(++p->n);
  return 0;
}

void pm_profile_destroy(struct profile *p)
{
  free(p->ents);
  free(p->slots);
  struct arena_blk *a = p->arena;
  while (a) {
    struct arena_blk *next = a->next;
    free(a);
    a = next;
  }
  free(p);
}

static struct profile *profile_check(lua_State *L, int idx)
{
  struct profile **ud = luaL_checkudata(L, idx, PM_META_PROFILE);
  luaL_argcheck(L, *ud != NULL, idx, "profile is closed");
  return *ud;
}

static int pm_fold_new(lua_State *L)
{
  struct profile **ud = lua_newuserdata(L, sizeof *ud);
  *ud = calloc(1, sizeof **ud);
  if (!*ud)
    return luaL_error(L, "fold: new: out of memory");
  luaL_getmetatable(L, PM_META_PROFILE);
  lua_setmetatable(L, -2);
  return 1;
}

static int profile_close(lua_State *L)
{
  struct profile **ud = luaL_checkudata(L, 1, PM_META_PROFILE);
  if (*ud) {
    pm_profile_destroy(*ud);
    *ud = NULL;
  }
  return 0;
}

static int profile_tostring(lua_State *L)
{
  struct profile **ud = luaL_checkudata(L, 1, PM_META_PROFILE);
  if (*ud)
    lua_pushfstring(L, "<perf_manual.profile %d stacks>", (int)(*ud)->n);
  else
    lua_pushstring(L, "<perf_manual.profile closed>");
  return 1;
}

/* ---- bad-line reporting ------------------------------------------------- */

/* Records a bad line; in strict mode remembers it and returns -1. */
static int report_bad(struct report *r, size_t lineno, const char *reason, const char *line, size_t len)
{
  r->bad++;
  if (r->strict) {
    r->failed = 1;
    r->fail_line = lineno;
    r->fail_reason = reason;
    return -1;
  }
  if (r->nv < MAX_ERRORS_KEPT) {
    if (!r->v)
      r->v = malloc(MAX_ERRORS_KEPT * sizeof *r->v);
    if (r->v) {
      struct bad_line *b = &r->v[r->nv++];
      b->line = lineno;
      b->reason = reason;
      size_t k = len > 120 ? 120 : len;
      memcpy(b->text, line, k);
      b->text[k] = 0;
    }
  }
  return 0;
}

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

/* character classes by table: the folding loop looks at every byte */
enum { C_WS = 1, C_WORD = 2, C_DIGIT = 4 };
#define W4(c) [c] = C_WORD, [c + 1] = C_WORD, [c + 2] = C_WORD, [c + 3] = C_WORD
#define W26(c) W4(c), W4(c + 4), W4(c + 8), W4(c + 12), W4(c + 16), W4(c + 20), [c + 24] = C_WORD, [c + 25] = C_WORD
static const unsigned char cls[256] = {
  [' '] = C_WS, ['\t'] = C_WS, ['\r'] = C_WS, ['\f'] = C_WS, ['\v'] = C_WS, ['\n'] = C_WS,
  W26('a'), W26('A'), ['_'] = C_WORD,
  ['0'] = C_WORD | C_DIGIT, ['1'] = C_WORD | C_DIGIT, ['2'] = C_WORD | C_DIGIT, ['3'] = C_WORD | C_DIGIT,
  ['4'] = C_WORD | C_DIGIT, ['5'] = C_WORD | C_DIGIT, ['6'] = C_WORD | C_DIGIT, ['7'] = C_WORD | C_DIGIT,
  ['8'] = C_WORD | C_DIGIT, ['9'] = C_WORD | C_DIGIT,
};
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static inline int has_byte_below(uint64_t v, unsigned n) { return ((v - ONES * n) & ~v & HIGHS) != 0; }
static inline int has_byte(uint64_t v, unsigned char c) { return has_byte_below(v ^ (ONES * c), 1); }

static inline int is_ws(unsigned char c) { return cls[c] & C_WS; }
static inline int is_digit(unsigned char c) { return cls[c] & C_DIGIT; }
static inline int is_word(unsigned char c) { return cls[c] & C_WORD; }

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
    if (period > MAX_COUNT)
      period = MAX_COUNT;
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

static int opt_bool(lua_State *L, int idx, const char *name)
{
  if (lua_type(L, idx) != LUA_TTABLE)
    return 0;
  lua_getfield(L, idx, name);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static double opt_num(lua_State *L, int idx, const char *name, double dflt)
{
  if (lua_type(L, idx) != LUA_TTABLE)
    return dflt;
  lua_getfield(L, idx, name);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

/* Pushes the stats table {samples, lines, bad, errors, filtered_events};
 * reports[i]'s line numbers are shifted by offsets[i]. */
static void push_stats(lua_State *L, struct report *reps, const size_t *offsets, int nrep, uint64_t samples,
                       size_t lines, int filtered)
{
  lua_createtable(L, 0, 5);
  lua_newtable(L);
  size_t k = 0, bad = 0;
  for (int i = 0; i < nrep; i++) {
    bad += reps[i].bad;
    for (size_t j = 0; j < reps[i].nv && k < MAX_ERRORS_KEPT; j++) {
      lua_createtable(L, 0, 3);
      lua_pushnumber(L, (lua_Number)(reps[i].v[j].line + offsets[i]));
      lua_setfield(L, -2, "line");
      lua_pushstring(L, reps[i].v[j].reason);
      lua_setfield(L, -2, "reason");
      lua_pushstring(L, reps[i].v[j].text);
      lua_setfield(L, -2, "text");
      lua_rawseti(L, -2, (int)++k);
    }
  }
  lua_setfield(L, -2, "errors");
  lua_pushnumber(L, (lua_Number)samples);
  lua_setfield(L, -2, "samples");
  lua_pushnumber(L, (lua_Number)lines);
  lua_setfield(L, -2, "lines");
  lua_pushnumber(L, (lua_Number)bad);
  lua_setfield(L, -2, "bad");
  lua_pushnumber(L, filtered);
  lua_setfield(L, -2, "filtered_events");
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
    if (!matched && report_bad(&c->r, lineno, "not a perf script sample header or stack line", line, len))
      break;
  }
  /* stackcollapse-perf.pl drops a last sample with no blank line after it;
   * so do we, but we say so */
  if (!c->oom && !c->r.failed && in_sample && st.have_pname)
    report_bad(&c->r, sample_line, "truncated sample at end of input (no blank line after its stack)", "", 0);
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

static int fold_perf_text(lua_State *L, struct profile *p, const char *s, size_t n, int opts)
{
  struct perf_opts o = { 0 };
  o.pid = opt_bool(L, opts, "pid");
  o.tid = opt_bool(L, opts, "tid");
  o.kernel = opt_bool(L, opts, "kernel") || opt_bool(L, opts, "all");
  o.jit = opt_bool(L, opts, "jit") || opt_bool(L, opts, "all");
  o.addrs = opt_bool(L, opts, "addrs");
  int strict = opt_bool(L, opts, "strict");
  int threads = (int)opt_num(L, opts, "threads", 0);
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
    push_stats(L, reps, offsets, nc, samples, lines, filtered);
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

/* ---- folded format -------------------------------------------------------- */

int pm_fold_folded(struct profile *p, const char *s, size_t n, struct report *r, uint64_t *samples,
                   size_t *lines)
{
  size_t lineno = 0, pos = 0;
  *samples = 0;
  while (pos < n) {
    const char *line = s + pos;
    const char *nl = memchr(line, '\n', n - pos);
    size_t len = nl ? (size_t)(nl - line) : n - pos;
    pos += len + (nl ? 1 : 0);
    lineno++;
    if (len > 0 && line[len - 1] == '\r')
      len--;
    if (len == 0)
      continue;
    size_t e = len;
    while (e > 0 && is_digit((unsigned char)line[e - 1]))
      e--;
    const char *why = NULL;
    if (e == len)
      why = "no sample count at the end of the line";
    else if (e == 0 || line[e - 1] != ' ')
      why = "expected \"frame;frame;... COUNT\"";
    else if (e == 1)
      why = "empty stack";
    uint64_t c = 0;
    if (!why) {
      for (size_t i = e; i < len; i++) {
        c = c * 10 + (uint64_t)(line[i] - '0');
        if (c > MAX_COUNT) {
          why = "sample count too large";
          break;
        }
      }
    }
    if (why) {
      if (report_bad(r, lineno, why, line, len))
        break;
      continue;
    }
    size_t kl = e - 1;
    if (c == 0)
      continue;
    if (pm_profile_add(p, line, kl, c))
      return -1;
    *samples += c;
  }
  *lines = lineno;
  return 0;
}

static int fold_folded_text(lua_State *L, struct profile *p, const char *s, size_t n, int opts)
{
  struct report r = { .strict = opt_bool(L, opts, "strict") };
  uint64_t samples;
  size_t lines, zero = 0;
  if (pm_fold_folded(p, s, n, &r, &samples, &lines)) {
    free(r.v);
    return luaL_error(L, "fold: folded: out of memory");
  }
  if (r.failed) {
    free(r.v);
    lua_pushnil(L);
    lua_pushfstring(L, "line %d: %s", (int)r.fail_line, r.fail_reason);
    return 2;
  }
  push_stats(L, &r, &zero, 1, samples, lines, 0);
  free(r.v);
  return 1;
}

/* Input: the text itself, or {path=} / {fd=0} to read it here (keeps a
 * 100 MB capture out of the Lua heap). */
struct input {
  const char *s;
  size_t n;
  char *owned;
  void *map; /* a regular file is mapped, not copied */
  size_t maplen;
};

static void input_free(struct input *in)
{
  free(in->owned);
  if (in->map)
    munmap(in->map, in->maplen);
}

static int read_all(int fd, struct input *in)
{
  size_t cap = 1 << 20, n = 0;
  struct stat sb;
  if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (m != MAP_FAILED) {
      madvise(m, (size_t)sb.st_size, MADV_SEQUENTIAL);
      in->map = m;
      in->maplen = (size_t)sb.st_size;
      in->s = m;
      in->n = (size_t)sb.st_size;
      return 0;
    }
    cap = (size_t)sb.st_size + 1;
  }
  char *p = malloc(cap);
  if (!p)
    return ENOMEM;
  for (;;) {
    if (n == cap) {
      char *np = realloc(p, cap * 2);
      if (!np) {
        free(p);
        return ENOMEM;
      }
      p = np;
      cap *= 2;
    }
    ssize_t r = read(fd, p + n, cap - n);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      int err = errno;
      free(p);
      return err;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  in->s = in->owned = p;
  in->n = n;
  return 0;
}

/* Returns 0, or pushes nil, message (2 values) and returns 2. */
static int get_input(lua_State *L, int idx, struct input *in)
{
  memset(in, 0, sizeof *in);
  if (lua_type(L, idx) == LUA_TSTRING) {
    in->s = lua_tolstring(L, idx, &in->n);
    return 0;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "path");
  const char *path = lua_tostring(L, -1);
  lua_pop(L, 1);
  int fd = (int)opt_num(L, idx, "fd", -1);
  if (path) {
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      lua_pushnil(L);
      lua_pushfstring(L, "cannot read %s: %s", path, strerror(err));
      return 2;
    }
  }
  if (fd < 0)
    luaL_argerror(L, idx, "expected text, {path=} or {fd=}");
  int err = read_all(fd, in);
  if (path)
    close(fd);
  if (err) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot read %s: %s", path ? path : "input", strerror(err));
    return 2;
  }
  return 0;
}

/* text | {path=} | {fd=}, opts -> stats | nil, "line N: why" */
static int profile_add_perf_script(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  struct input in;
  int r = get_input(L, 2, &in);
  if (r)
    return r;
  int nret = fold_perf_text(L, p, in.s, in.n, 3);
  input_free(&in);
  return nret;
}

static int profile_add_folded(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  struct input in;
  int r = get_input(L, 2, &in);
  if (r)
    return r;
  int nret = fold_folded_text(L, p, in.s, in.n, 3);
  input_free(&in);
  return nret;
}

/* Reads {path=}/{fd=}/text once and guesses its format: folded when the first
 * line that is neither blank nor a comment ends in " COUNT" and does not start
 * with whitespace. Returns stats, format. */
static int profile_add_auto(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  struct input in;
  int r = get_input(L, 2, &in);
  if (r)
    return r;
  int folded = 0;
  size_t pos = 0;
  while (pos < in.n) {
    const char *line = in.s + pos;
    const char *nl = memchr(line, '\n', in.n - pos);
    size_t len = nl ? (size_t)(nl - line) : in.n - pos;
    pos += len + 1;
    if (len > 0 && line[len - 1] == '\r')
      len--;
    if (len == 0 || line[0] == '#')
      continue;
    size_t e = len;
    while (e > 0 && is_digit((unsigned char)line[e - 1]))
      e--;
    folded = e < len && e > 1 && line[e - 1] == ' ' && !is_ws((unsigned char)line[0]) && line[e - 2] != ':';
    break;
  }
  int nret = folded ? fold_folded_text(L, p, in.s, in.n, 3) : fold_perf_text(L, p, in.s, in.n, 3);
  input_free(&in);
  lua_pushstring(L, folded ? "folded" : "perf");
  return nret + 1;
}

static int profile_add1(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  size_t n;
  const char *k = luaL_checklstring(L, 2, &n);
  lua_Number c = luaL_optnumber(L, 3, 1);
  luaL_argcheck(L, c >= 0 && c <= (lua_Number)MAX_COUNT && c == (lua_Number)(uint64_t)c, 3,
                "expected a non-negative integer count");
  luaL_argcheck(L, n > 0, 2, "empty stack");
  if (c > 0 && pm_profile_add(p, k, n, (uint64_t)c))
    return luaL_error(L, "fold: add: out of memory");
  return 0;
}

static int profile_merge(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  struct profile *o = profile_check(L, 2);
  lua_Number scale = luaL_optnumber(L, 3, 1);
  size_t n = o->n; /* merging into itself doubles counts, safely */
  for (size_t i = 0; i < n; i++) {
    uint64_t c = scale == 1 ? o->ents[i].count : (uint64_t)(o->ents[i].count * scale + 0.5);
    if (c && pm_profile_add(p, o->ents[i].key, o->ents[i].len, c))
      return luaL_error(L, "fold: merge: out of memory");
  }
  return 0;
}

static int profile_total(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)profile_check(L, 1)->total);
  return 1;
}

static int profile_unique(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)profile_check(L, 1)->n);
  return 1;
}

static int profile_count(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  size_t n;
  const char *k = luaL_checklstring(L, 2, &n);
  struct entry *e = pm_profile_find(p, k, n, pm_fold_hash(k, n));
  lua_pushnumber(L, e ? (lua_Number)e->count : 0);
  return 1;
}

/* byte order, like Perl's sort: what stackcollapse prints */
static int cmp_bytes(const void *a, const void *b)
{
  const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
  size_t m = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->key, y->key, m);
  if (c)
    return c;
  return (x->len > y->len) - (x->len < y->len);
}

static struct entry **sorted(struct profile *p, int (*cmp)(const void *, const void *))
{
  struct entry **v = malloc((p->n ? p->n : 1) * sizeof *v);
  if (!v)
    return NULL;
  for (size_t i = 0; i < p->n; i++)
    v[i] = &p->ents[i];
  qsort(v, p->n, sizeof *v, cmp);
  return v;
}

/* Frame order by plain memcmp: each key copied with ';' turned into 0x00,
 * the smallest byte, so libc's vectorised memcmp does the work (stacks share
 * long prefixes). A NUL inside a name then ties with ';': the layout stays
 * valid, such a frame may just be drawn in two pieces. */
struct fkey {
  const char *k;
  size_t len;
  struct entry *e;
};

static int cmp_fkeys(const void *a, const void *b)
{
  const struct fkey *x = a, *y = b;
  size_t m = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->k, y->k, m);
  if (c)
    return c;
  return (x->len > y->len) - (x->len < y->len);
}

static struct entry **sorted_frames(struct profile *p)
{
  size_t bytes = 0;
  for (size_t i = 0; i < p->n; i++)
    bytes += p->ents[i].len;
  struct fkey *fk = malloc((p->n ? p->n : 1) * sizeof *fk);
  char *t = malloc(bytes ? bytes : 1);
  struct entry **v = malloc((p->n ? p->n : 1) * sizeof *v);
  if (!fk || !t || !v) {
    free(fk);
    free(t);
    free(v);
    return NULL;
  }
  size_t off = 0;
  for (size_t i = 0; i < p->n; i++) {
    const struct entry *e = &p->ents[i];
    char *d = t + off;
    memcpy(d, e->key, e->len);
    for (char *q = memchr(d, ';', e->len); q; q = memchr(q + 1, ';', e->len - (size_t)(q + 1 - d)))
      *q = 0;
    fk[i].k = d;
    fk[i].len = e->len;
    fk[i].e = &p->ents[i];
    off += e->len;
  }
  qsort(fk, p->n, sizeof *fk, cmp_fkeys);
  for (size_t i = 0; i < p->n; i++)
    v[i] = fk[i].e;
  free(fk);
  free(t);
  return v;
}

/* -> "stack count\n"... sorted by bytes */
static int profile_folded(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  struct entry **v = sorted(p, cmp_bytes);
  struct buf b = { 0 };
  if (!v)
    return luaL_error(L, "fold: folded: out of memory");
  char num[32];
  for (size_t i = 0; i < p->n; i++) {
    int k = snprintf(num, sizeof num, " %llu\n", (unsigned long long)v[i]->count);
    if (buf_add(&b, v[i]->key, v[i]->len) || buf_add(&b, num, (size_t)k)) {
      free(v);
      buf_free(&b);
      return luaL_error(L, "fold: folded: out of memory");
    }
  }
  free(v);
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  buf_free(&b);
  return 1;
}

/* -> { {stack, count}, ... } sorted by bytes */
static int profile_stacks(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  struct entry **v = sorted(p, cmp_bytes);
  if (!v)
    return luaL_error(L, "fold: stacks: out of memory");
  lua_createtable(L, (int)p->n, 0);
  for (size_t i = 0; i < p->n; i++) {
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, v[i]->key, v[i]->len);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, (lua_Number)v[i]->count);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (int)i + 1);
  }
  free(v);
  return 1;
}

/* ---- flame graph layout --------------------------------------------------- */

struct open_frame {
  const char *name;
  uint32_t len;
  uint64_t start;   /* first sample under this frame */
  uint64_t self;    /* samples of stacks ending here */
  const char *path; /* the stack this frame's path was read from */
  uint32_t pathlen; /* bytes of `path` up to and including this frame */
};

enum palette { PAL_KIND, PAL_HOT, PAL_OFFCPU, PAL_MEM, PAL_DIFF };

struct layout {
  double width, xpad, frameh, top, fontsize, fontwidth, minwidth, scale;
  int inverted, palette, maxdepth, pass;
  uint64_t total;
  size_t frames, pruned_frames;
  uint64_t pruned_samples;
  struct buf out;
  struct profile *before;      /* differential: the before profile */
  struct profile *before_incl; /* its inclusive counts per path prefix */
  double before_total;
  double maxdelta;
  char unit[32]; /* what a count is: "samples", "us", ... */
  int oom;
};

/* XML text: escapes markup, turns control bytes and broken UTF-8 into '?' so
 * the SVG always parses. Returns bytes of `s` consumed (<= max_chars chars). */
static int xml_escape(struct buf *b, const char *s, size_t n)
{
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    const char *rep = NULL;
    switch (c) {
    case '&': rep = "&amp;"; break;
    case '<': rep = "&lt;"; break;
    case '>': rep = "&gt;"; break;
    case '"': rep = "&quot;"; break;
    case '\'': rep = "&#39;"; break;
    default: break;
    }
    if (rep) {
      if (buf_add(b, rep, strlen(rep)))
        return -1;
      i++;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      if (buf_add(b, "?", 1))
        return -1;
      i++;
      continue;
    }
    if (c < 0x80) {
      if (buf_add(b, s + i, 1))
        return -1;
      i++;
      continue;
    }
    size_t need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (c > 0xf4)
      need = 0;
    int ok = need && i + need <= n;
    for (size_t k = 1; ok && k < need; k++)
      if (((unsigned char)s[i + k] & 0xc0) != 0x80)
        ok = 0;
    if (ok && need == 3) {
      unsigned char d = (unsigned char)s[i + 1];
      if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d >= 0xa0))
        ok = 0;
    }
    if (ok && need == 4) {
      unsigned char d = (unsigned char)s[i + 1];
      if ((c == 0xf0 && d < 0x90) || (c == 0xf4 && d >= 0x90))
        ok = 0;
    }
    if (!ok) {
      if (buf_add(b, "?", 1))
        return -1;
      i++;
      continue;
    }
    if (buf_add(b, s + i, need))
      return -1;
    i += need;
  }
  return 0;
}

static uint32_t name_hash(const char *s, size_t n)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static int frame_kind(const char *s, size_t n)
{
  if (n >= 4 && s[n - 4] == '_' && s[n - 3] == '[' && s[n - 1] == ']') {
    switch (s[n - 2]) {
    case 'k': return 'k';
    case 'j': return 'j';
    case 'i': return 'i';
    case 'o': return 'o';
    default: break;
    }
  }
  return 'u';
}

static void frame_color(struct layout *ly, const char *s, size_t n, int kind, double delta, int *r, int *g,
                        int *b)
{
  uint32_t h = name_hash(s, n);
  double v1 = (h & 0xff) / 255.0, v2 = ((h >> 8) & 0xff) / 255.0, v3 = ((h >> 16) & 0xff) / 255.0;
  if (ly->palette == PAL_DIFF) {
    /* white = unchanged; saturation by |delta| relative to the largest */
    double m = ly->maxdelta > 0 ? delta / ly->maxdelta : 0;
    if (m > 1)
      m = 1;
    if (m < -1)
      m = -1;
    int fade = (int)(210 * (1 - (m < 0 ? -m : m)));
    if (m >= 0) {
      *r = 255; *g = 45 + fade; *b = 45 + fade;
    } else {
      *r = 45 + fade; *g = 45 + fade; *b = 255;
    }
    if (*g > 255) *g = 255;
    if (*r > 255) *r = 255;
    if (*b > 255) *b = 255;
    return;
  }
  if (ly->palette == PAL_OFFCPU || kind == 'o') {
    *r = (int)(40 * v1); *g = (int)(90 + 90 * v2); *b = (int)(190 + 65 * v3);
    return;
  }
  if (ly->palette == PAL_MEM) {
    *r = (int)(30 * v1); *g = (int)(190 + 65 * v2); *b = (int)(60 * v3);
    return;
  }
  if (ly->palette == PAL_KIND) {
    if (kind == 'k') { *r = (int)(225 + 30 * v1); *g = (int)(160 + 50 * v2); *b = (int)(40 * v3); return; }
    if (kind == 'j') { *r = (int)(60 + 60 * v1); *g = (int)(190 + 55 * v2); *b = (int)(60 + 50 * v3); return; }
    if (kind == 'i') { *r = (int)(70 + 50 * v1); *g = (int)(200 + 55 * v2); *b = (int)(200 + 55 * v3); return; }
  }
  if (ly->palette == PAL_KIND) { /* user code: reds, apart from the kernel's amber */
    *r = (int)(205 + 50 * v3); *g = (int)(40 + 90 * v1); *b = (int)(30 + 50 * v2);
    return;
  }
  *r = (int)(205 + 50 * v3); *g = (int)(230 * v1); *b = (int)(55 * v2);
}

static void fmt_count(char *out, size_t cap, uint64_t v)
{
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
  size_t o = 0;
  for (int i = 0; i < n && o + 2 < cap; i++) {
    if (i > 0 && (n - i) % 3 == 0)
      out[o++] = ',';
    out[o++] = tmp[i];
  }
  out[o] = 0;
}

static void emit_frame(struct layout *ly, const struct open_frame *f, int depth, uint64_t end)
{
  uint64_t samples = end - f->start;
  double w = (double)samples * ly->scale;
  if (w < ly->minwidth) {
    /* pruned: count only the top of each pruned subtree, whose parent is drawn */
    if (ly->pass == 1) {
      ly->pruned_frames++;
      ly->pruned_samples += f->self; /* still inside every drawn ancestor */
    }
    return;
  }
  if (ly->pass == 1) {
    if (depth > ly->maxdepth)
      ly->maxdepth = depth;
    return;
  }
  ly->frames++;
  double x = ly->xpad + (double)f->start * ly->scale;
  double y = ly->inverted ? ly->top + depth * ly->frameh
                          : ly->top + (ly->maxdepth - depth) * ly->frameh;
  int kind = depth == 0 ? 'a' : frame_kind(f->name, f->len);
  double delta = 0, bincl = 0;
  if (ly->palette == PAL_DIFF && depth > 0) {
    double aself = ly->total ? (double)f->self / (double)ly->total : 0;
    struct entry *be = pm_profile_find(ly->before, f->path, f->pathlen, pm_fold_hash(f->path, f->pathlen));
    double bself = be && ly->before_total > 0 ? (double)be->count / ly->before_total : 0;
    delta = aself - bself;
    struct entry *bi = pm_profile_find(ly->before_incl, f->path, f->pathlen, pm_fold_hash(f->path, f->pathlen));
    bincl = bi ? (double)bi->count : 0;
  }
  int r, g, b;
  if (depth == 0) {
    r = g = b = 200;
  } else {
    frame_color(ly, f->name, f->len, kind, delta, &r, &g, &b);
  }
  struct buf *o = &ly->out;
  char tmp[400], cnt[40];
  fmt_count(cnt, sizeof cnt, samples);
  if (buf_add(o, "<g><title>", 10))
    goto oom;
  if (depth == 0) {
    if (buf_add(o, "all", 3))
      goto oom;
  } else if (xml_escape(o, f->name, f->len)) {
    goto oom;
  }
  double pct = ly->total ? 100.0 * (double)samples / (double)ly->total : 0;
  int k;
  if (ly->palette == PAL_DIFF && depth > 0) {
    double bpct = ly->before_total > 0 ? 100.0 * bincl / ly->before_total : 0;
    k = snprintf(tmp, sizeof tmp, " (%s %s, %.2f%%; before %.2f%%, %+.2f pts; self %+.2f pts)",
                 cnt, ly->unit, pct, bpct, pct - bpct, 100.0 * delta);
  } else {
    k = snprintf(tmp, sizeof tmp, " (%s %s, %.2f%%)", cnt, ly->unit, pct);
  }
  if (buf_add(o, tmp, (size_t)k))
    goto oom;
  k = snprintf(tmp, sizeof tmp,
               "</title><rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\" "
               "data-n=\"%llu\" data-k=\"%c\"/><text x=\"%.2f\" y=\"%.1f\">",
               x, y, w, ly->frameh - 1, r, g, b, (unsigned long long)samples, kind, x + 3,
               y + ly->frameh - 4.5);
  if (buf_add(o, tmp, (size_t)k))
    goto oom;
  /* label: as many characters as fit, ".." when cut */
  double cw = ly->fontsize * ly->fontwidth;
  size_t fit = cw > 0 ? (size_t)((w - 3) / cw) : 0;
  const char *nm = depth == 0 ? "all" : f->name;
  size_t nl = depth == 0 ? 3 : f->len;
  if (fit >= 3) {
    if (nl <= fit) {
      if (xml_escape(o, nm, nl))
        goto oom;
    } else {
      size_t cut = fit - 2;
      while (cut > 0 && ((unsigned char)nm[cut] & 0xc0) == 0x80)
        cut--; /* do not split a UTF-8 character */
      if (xml_escape(o, nm, cut) || buf_add(o, "..", 2))
        goto oom;
    }
  }
  if (buf_add(o, "</text></g>\n", 12))
    goto oom;
  return;
oom:
  ly->oom = 1;
}

/* Walks stacks in frame order, emitting each frame when it closes. */
static int layout_pass(struct layout *ly, struct entry **v, size_t n)
{
  struct open_frame *open = NULL;
  size_t depth = 0, cap = 0;
  uint64_t x = 0;
  struct open_frame root = { "all", 3, 0, 0, "", 0 };
  for (size_t i = 0; i < n; i++) {
    const char *s = v[i]->key;
    size_t len = v[i]->len;
    /* walk the frames of s, keeping the common prefix with the open path */
    size_t d = 0, a = 0;
    int diverged = 0;
    while (a <= len) {
      const char *semi = memchr(s + a, ';', len - a);
      size_t e = semi ? (size_t)(semi - s) : len;
      if (!diverged && d < depth && open[d].len == e - a && memcmp(open[d].name, s + a, e - a) == 0) {
        d++;
      } else {
        if (!diverged) {
          /* close everything from depth d on, deepest first */
          for (size_t k = depth; k-- > d;)
            emit_frame(ly, &open[k], (int)k + 1, x);
          depth = d;
          diverged = 1;
        }
        if (depth == cap) {
          size_t nc = cap ? cap * 2 : 64;
          struct open_frame *no = realloc(open, nc * sizeof *no);
          if (!no) {
            free(open);
            return -1;
          }
          open = no;
          cap = nc;
        }
        open[depth] = (struct open_frame){ s + a, (uint32_t)(e - a), x, 0, s, (uint32_t)e };
        depth++;
        d++;
      }
      if (!semi)
        break;
      a = e + 1;
    }
    if (!diverged) {
      for (size_t k = depth; k-- > d;)
        emit_frame(ly, &open[k], (int)k + 1, x);
      depth = d;
    }
    if (depth > 0)
      open[depth - 1].self += v[i]->count;
    x += v[i]->count;
  }
  for (size_t k = depth; k-- > 0;)
    emit_frame(ly, &open[k], (int)k + 1, x);
  root.start = 0;
  if (x > 0)
    emit_frame(ly, &root, 0, x);
  free(open);
  return ly->oom ? -1 : 0;
}

/* profile:svg_frames(opts) -> text, info
 * opts: width, xpad, frame_height, top, font_size, font_width, minwidth (px),
 *       inverted, palette ("kind"|"hot"|"offcpu"|"mem"|"diff"), before (profile) */
static int profile_svg_frames(lua_State *L)
{
  struct profile *p = profile_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  struct layout ly;
  memset(&ly, 0, sizeof ly);
  ly.width = opt_num(L, 2, "width", 1200);
  ly.xpad = opt_num(L, 2, "xpad", 10);
  ly.frameh = opt_num(L, 2, "frame_height", 16);
  ly.top = opt_num(L, 2, "top", 60);
  ly.fontsize = opt_num(L, 2, "font_size", 12);
  ly.fontwidth = opt_num(L, 2, "font_width", 0.59);
  ly.minwidth = opt_num(L, 2, "minwidth", 0.1);
  ly.inverted = opt_bool(L, 2, "inverted");
  lua_getfield(L, 2, "unit");
  const char *unit = lua_tostring(L, -1);
  /* a plain word: it sits inside the XML title unescaped */
  size_t ui = 0;
  for (; unit && unit[ui] && ui + 1 < sizeof ly.unit; ui++) {
    unsigned char ch = (unsigned char)unit[ui];
    ly.unit[ui] = is_word(ch) || ch == ' ' || ch == '-' || ch == '/' ? (char)ch : '?';
  }
  ly.unit[ui] = 0;
  lua_pop(L, 1);
  if (!ly.unit[0])
    strcpy(ly.unit, "samples");
  lua_getfield(L, 2, "palette");
  const char *pal = lua_tostring(L, -1);
  lua_pop(L, 1);
  ly.palette = !pal || !strcmp(pal, "kind") ? PAL_KIND
               : !strcmp(pal, "hot")        ? PAL_HOT
               : !strcmp(pal, "offcpu")     ? PAL_OFFCPU
               : !strcmp(pal, "mem")        ? PAL_MEM
               : !strcmp(pal, "diff")       ? PAL_DIFF
                                            : -1;
  luaL_argcheck(L, ly.palette >= 0, 2, "unknown palette");
  ly.total = p->total;
  double plot = ly.width - 2 * ly.xpad;
  ly.scale = p->total ? plot / (double)p->total : 0;
  struct profile *incl = NULL;
  if (ly.palette == PAL_DIFF) {
    lua_getfield(L, 2, "before");
    ly.before = profile_check(L, -1);
    lua_pop(L, 1);
    ly.before_total = (double)ly.before->total;
    incl = calloc(1, sizeof *incl);
    if (!incl)
      return luaL_error(L, "fold: svg: out of memory");
    for (size_t i = 0; i < ly.before->n; i++) {
      const struct entry *e = &ly.before->ents[i];
      for (size_t k = 0; k <= e->len; k++)
        if ((k == e->len || e->key[k] == ';') && pm_profile_add(incl, e->key, k, e->count)) {
          pm_profile_destroy(incl);
          return luaL_error(L, "fold: svg: out of memory");
        }
    }
    ly.before_incl = incl;
    /* the largest |self delta| sets full colour */
    for (size_t i = 0; i < p->n; i++) {
      struct entry *be = pm_profile_find(ly.before, p->ents[i].key, p->ents[i].len, p->ents[i].hash);
      double a = p->total ? (double)p->ents[i].count / (double)p->total : 0;
      double b = be && ly.before_total > 0 ? (double)be->count / ly.before_total : 0;
      double d = a > b ? a - b : b - a;
      if (d > ly.maxdelta)
        ly.maxdelta = d;
    }
    for (size_t i = 0; i < ly.before->n; i++) {
      struct entry *ae = pm_profile_find(p, ly.before->ents[i].key, ly.before->ents[i].len, ly.before->ents[i].hash);
      if (!ae && ly.before_total > 0) {
        double d = (double)ly.before->ents[i].count / ly.before_total;
        if (d > ly.maxdelta)
          ly.maxdelta = d;
      }
    }
  }
  struct entry **v = sorted_frames(p);
  if (!v) {
    if (incl)
      pm_profile_destroy(incl);
    return luaL_error(L, "fold: svg: out of memory");
  }
  ly.pass = 1;
  int err = layout_pass(&ly, v, p->n);
  if (!err) {
    ly.pass = 2;
    err = layout_pass(&ly, v, p->n);
  }
  free(v);
  if (incl)
    pm_profile_destroy(incl);
  if (err) {
    buf_free(&ly.out);
    return luaL_error(L, "fold: svg: out of memory");
  }
  lua_pushlstring(L, ly.out.p ? ly.out.p : "", ly.out.n);
  buf_free(&ly.out);
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, (lua_Number)ly.frames);
  lua_setfield(L, -2, "frames");
  lua_pushnumber(L, (lua_Number)ly.pruned_frames);
  lua_setfield(L, -2, "pruned_frames");
  lua_pushnumber(L, (lua_Number)ly.pruned_samples);
  lua_setfield(L, -2, "pruned_samples");
  lua_pushnumber(L, ly.frames ? ly.maxdepth : -1);
  lua_setfield(L, -2, "max_depth");
  lua_pushnumber(L, (lua_Number)p->total);
  lua_setfield(L, -2, "total");
  lua_pushnumber(L, ly.frames ? ly.top + (ly.maxdepth + 1) * ly.frameh : ly.top);
  lua_setfield(L, -2, "bottom");
  return 2;
}

static const luaL_Reg profile_methods[] = {
  { "add_perf_script", profile_add_perf_script },
  { "add_folded", profile_add_folded },
  { "add_auto", profile_add_auto },
  { "add", profile_add1 },
  { "merge", profile_merge },
  { "total", profile_total },
  { "unique", profile_unique },
  { "count", profile_count },
  { "folded", profile_folded },
  { "stacks", profile_stacks },
  { "svg_frames", profile_svg_frames },
  { "close", profile_close },
  { "__gc", profile_close },
  { "__tostring", profile_tostring },
  { NULL, NULL },
};

static const luaL_Reg pm_fold_funcs[] = {
  { "new", pm_fold_new },
  { NULL, NULL },
};

int luaopen_pm_fold(lua_State *L)
{
  pm_build_meta(L, PM_META_PROFILE, profile_methods);
  luaL_newlib(L, pm_fold_funcs);
  return 1;
}
