/* pm.fold: stack profiles in C. This file holds the profile itself (a
 * stack -> count hash), Brendan Gregg's folded format in and out, merging,
 * reading the input (text, {path=} or {fd=}) and the Lua module; perf
 * script folding is in fold_perf.c, the flame-graph layout in fold_svg.c.
 * The Lua wrappers (perf_manual.fold, perf_manual.report.flamegraph) own
 * the wording, the palettes and the page around the frames. */
#include <errno.h>
#include <fcntl.h>
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
  if (count > MAX_COUNT) {
    count = MAX_COUNT;
    p->saturated++;
  }
  if (p->total > MAX_COUNT - count) {
    if (p->total != MAX_COUNT)
      p->saturated++;
    p->total = MAX_COUNT;
  } else
    p->total += count;
  if (e) {
    if (e->count > MAX_COUNT - count) {
      e->count = MAX_COUNT;
      p->saturated++;
    } else {
      e->count += count;
    }
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

struct profile *pm_fold_check(lua_State *L, int idx)
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

int pm_fold_report_bad(struct report *r, size_t lineno, const char *reason, const char *line, size_t len)
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

/* ---- options and stats ---------------------------------------------------- */

int pm_fold_opt_bool(lua_State *L, int idx, const char *name)
{
  if (lua_type(L, idx) != LUA_TTABLE)
    return 0;
  lua_getfield(L, idx, name);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

double pm_fold_opt_num(lua_State *L, int idx, const char *name, double dflt)
{
  if (lua_type(L, idx) != LUA_TTABLE)
    return dflt;
  lua_getfield(L, idx, name);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

void pm_fold_push_stats(lua_State *L, struct report *reps, const size_t *offsets, int nrep, uint64_t samples,
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

/* stats.saturated: how many adds were capped at 2^53 (only when some were) */
void pm_fold_push_saturated(lua_State *L, const struct profile *p)
{
  if (!p->saturated)
    return;
  lua_pushnumber(L, (lua_Number)p->saturated);
  lua_setfield(L, -2, "saturated");
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
      if (pm_fold_report_bad(r, lineno, why, line, len))
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
  struct report r = { .strict = pm_fold_opt_bool(L, opts, "strict") };
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
  pm_fold_push_stats(L, &r, &zero, 1, samples, lines, 0);
  pm_fold_push_saturated(L, p);
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
  int fd = (int)pm_fold_opt_num(L, idx, "fd", -1);
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
  struct profile *p = pm_fold_check(L, 1);
  struct input in;
  int r = get_input(L, 2, &in);
  if (r)
    return r;
  int nret = pm_fold_perf_text(L, p, in.s, in.n, 3);
  input_free(&in);
  return nret;
}

static int profile_add_folded(lua_State *L)
{
  struct profile *p = pm_fold_check(L, 1);
  struct input in;
  int r = get_input(L, 2, &in);
  if (r)
    return r;
  int nret = fold_folded_text(L, p, in.s, in.n, 3);
  input_free(&in);
  return nret;
}

/* Whether the input is folded stacks rather than perf script, by a vote of
 * its first AUTO_LINES lines that are neither blank nor comments: a folded
 * line ends in " COUNT" and starts with no whitespace; perf script has stack
 * lines that start with whitespace and sample headers ("comm pid ..."). A
 * single malformed line (the first, say) must not decide: it is reported
 * with its number by the reader chosen, and the valid lines are kept. */
#define AUTO_LINES 200
int pm_fold_looks_folded(const char *s, size_t n)
{
  size_t pos = 0, seen = 0, folded = 0, perf = 0;
  while (pos < n && seen < AUTO_LINES) {
    const char *line = s + pos;
    const char *nl = memchr(line, '\n', n - pos);
    size_t len = nl ? (size_t)(nl - line) : n - pos;
    pos += len + 1;
    if (len > 0 && line[len - 1] == '\r')
      len--;
    if (len == 0 || line[0] == '#')
      continue;
    seen++;
    if (is_ws((unsigned char)line[0])) {
      perf++;
      continue;
    }
    size_t e = len;
    while (e > 0 && is_digit((unsigned char)line[e - 1]))
      e--;
    if (e < len && e > 1 && line[e - 1] == ' ' && line[e - 2] != ':') {
      folded++;
      continue;
    }
    size_t cl, pidn, tidn;
    const char *pid, *tid;
    if (pm_fold_match_event(line, len, &cl, &pid, &pidn, &tid, &tidn))
      perf++;
  }
  return folded > perf;
}

/* Reads {path=}/{fd=}/text once and guesses its format
 * (pm_fold_looks_folded). Returns stats, format. */
static int profile_add_auto(lua_State *L)
{
  struct profile *p = pm_fold_check(L, 1);
  struct input in;
  int r = get_input(L, 2, &in);
  if (r)
    return r;
  int folded = pm_fold_looks_folded(in.s, in.n);
  int nret = folded ? fold_folded_text(L, p, in.s, in.n, 3) : pm_fold_perf_text(L, p, in.s, in.n, 3);
  input_free(&in);
  lua_pushstring(L, folded ? "folded" : "perf");
  return nret + 1;
}

static int profile_add1(lua_State *L)
{
  struct profile *p = pm_fold_check(L, 1);
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
  struct profile *p = pm_fold_check(L, 1);
  struct profile *o = pm_fold_check(L, 2);
  lua_Number scale = luaL_optnumber(L, 3, 1);
  size_t n = o->n; /* merging into itself doubles counts, safely */
  for (size_t i = 0; i < n; i++) {
    double sc = (double)o->ents[i].count * scale + 0.5;
    uint64_t c = scale == 1 ? o->ents[i].count : sc >= (double)MAX_COUNT ? MAX_COUNT + 1 : sc > 0 ? (uint64_t)sc : 0;
    if (c && pm_profile_add(p, o->ents[i].key, o->ents[i].len, c))
      return luaL_error(L, "fold: merge: out of memory");
  }
  return 0;
}

static int profile_total(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)pm_fold_check(L, 1)->total);
  return 1;
}

static int profile_saturated(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)pm_fold_check(L, 1)->saturated);
  return 1;
}

static int profile_unique(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)pm_fold_check(L, 1)->n);
  return 1;
}

static int profile_count(lua_State *L)
{
  struct profile *p = pm_fold_check(L, 1);
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

/* -> "stack count\n"... sorted by bytes */
static int profile_folded(lua_State *L)
{
  struct profile *p = pm_fold_check(L, 1);
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
  struct profile *p = pm_fold_check(L, 1);
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

/* ---- the Lua module ------------------------------------------------------- */

static const luaL_Reg profile_methods[] = {
  { "add_perf_script", profile_add_perf_script },
  { "add_folded", profile_add_folded },
  { "add_auto", profile_add_auto },
  { "add", profile_add1 },
  { "merge", profile_merge },
  { "total", profile_total },
  { "unique", profile_unique },
  { "saturated", profile_saturated },
  { "count", profile_count },
  { "folded", profile_folded },
  { "stacks", profile_stacks },
  { "svg_frames", pm_fold_svg_frames },
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
