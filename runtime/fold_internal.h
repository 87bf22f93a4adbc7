/* Shared by the pm.fold sources: fold.c (the stack-count table, the
 * folded format, the Lua module), fold_perf.c (perf script folding) and
 * fold_svg.c (flame-graph layout). The C unit tests (tests/c/test_fold.c)
 * call the parsers directly through it. Not part of the Lua interface. */
#ifndef PM_FOLD_INTERNAL_H
#define PM_FOLD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#define MAX_ERRORS_KEPT 100
#define MAX_COUNT 9007199254740992ull /* 2^53: exact in a Lua number */
#define PM_META_PROFILE "perf_manual.profile"

/* ---- growable buffer: inline, the folding loop adds to one per frame ---- */

struct buf {
  char *p;
  size_t n, cap;
};

static inline int buf_reserve(struct buf *b, size_t extra)
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

static inline int buf_add(struct buf *b, const char *s, size_t n)
{
  if (buf_reserve(b, n))
    return -1;
  memcpy(b->p + b->n, s, n);
  b->n += n;
  return 0;
}

static inline void buf_free(struct buf *b)
{
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

/* ---- character classes by table: the folding loop looks at every byte ---- */

enum { C_WS = 1, C_WORD = 2, C_DIGIT = 4 };
#define W4(c) [c] = C_WORD, [c + 1] = C_WORD, [c + 2] = C_WORD, [c + 3] = C_WORD
#define W26(c) W4(c), W4(c + 4), W4(c + 8), W4(c + 12), W4(c + 16), W4(c + 20), [c + 24] = C_WORD, [c + 25] = C_WORD
static const unsigned char pm_fold_cls[256] = {
  [' '] = C_WS, ['\t'] = C_WS, ['\r'] = C_WS, ['\f'] = C_WS, ['\v'] = C_WS, ['\n'] = C_WS,
  W26('a'), W26('A'), ['_'] = C_WORD,
  ['0'] = C_WORD | C_DIGIT, ['1'] = C_WORD | C_DIGIT, ['2'] = C_WORD | C_DIGIT, ['3'] = C_WORD | C_DIGIT,
  ['4'] = C_WORD | C_DIGIT, ['5'] = C_WORD | C_DIGIT, ['6'] = C_WORD | C_DIGIT, ['7'] = C_WORD | C_DIGIT,
  ['8'] = C_WORD | C_DIGIT, ['9'] = C_WORD | C_DIGIT,
};
#undef W26
#undef W4

static inline int is_ws(unsigned char c) { return pm_fold_cls[c] & C_WS; }
static inline int is_digit(unsigned char c) { return pm_fold_cls[c] & C_DIGIT; }
static inline int is_word(unsigned char c) { return pm_fold_cls[c] & C_WORD; }

/* ---- the profile: stack -> count hash ---- */

struct arena_blk;

struct entry {
  const char *key;
  uint32_t len;
  uint64_t hash;
  uint64_t count;
};

/* calloc() one to start empty; pm_profile_destroy() frees it */
struct profile {
  struct entry *ents;
  size_t n, ecap;
  uint32_t *slots; /* 0 = empty, else entry index + 1 */
  size_t scap;     /* power of two */
  struct arena_blk *arena;
  uint64_t total;
  uint64_t saturated; /* adds that would have passed MAX_COUNT: capped there */
};

uint64_t pm_fold_hash(const char *s, size_t n);
/// Adds count to stack `key` (a copy is kept); -1 on out of memory. Counts
/// and the total stop at MAX_COUNT (p->saturated says how often), so the
/// folded text written always reads back.
int pm_profile_add(struct profile *p, const char *key, size_t len, uint64_t count);
/// The entry of `key` (h = pm_fold_hash(key, len)), or NULL.
struct entry *pm_profile_find(const struct profile *p, const char *key, size_t len, uint64_t h);
void pm_profile_destroy(struct profile *p);
/// The open profile at stack index idx (a Lua error when it is not one).
struct profile *pm_fold_check(lua_State *L, int idx);

/* ---- bad-line reporting ---- */

struct bad_line {
  size_t line;
  const char *reason; /* a static string */
  char text[121];
};

/* Bad lines of one pass over text (one thread's chunk): kept in C, turned
 * into Lua tables after the threads are done. free(v) when done. */
struct report {
  struct bad_line *v;
  size_t nv;
  size_t bad; /* every bad line, kept or not */
  int strict, failed;
  size_t fail_line;
  const char *fail_reason;
};

/// Records a bad line; in strict mode remembers it and returns -1.
int pm_fold_report_bad(struct report *r, size_t lineno, const char *reason, const char *line, size_t len);

/* ---- options and results on the Lua side ---- */

/// opts[name] as a boolean (false when opts is not a table).
int pm_fold_opt_bool(lua_State *L, int idx, const char *name);
/// opts[name] as a number, dflt when absent.
double pm_fold_opt_num(lua_State *L, int idx, const char *name, double dflt);
/// Pushes the stats table {samples, lines, bad, errors, filtered_events};
/// reports[i]'s line numbers are shifted by offsets[i].
void pm_fold_push_stats(lua_State *L, struct report *reps, const size_t *offsets, int nrep, uint64_t samples,
                        size_t lines, int filtered);

/* ---- perf script folding ---- */

struct perf_opts {
  int pid, tid, kernel, jit, addrs;
};

/// A sample header "comm pid[/tid] ...": comm is s[0..*comm_len), pid and
/// tid point into s (tid empty when absent). 1 when it matches.
int pm_fold_match_event(const char *s, size_t n, size_t *comm_len, const char **pid, size_t *pidn,
                        const char **tid, size_t *tidn);
/// The "...: PERIOD EVENT:" tail of a sample header (per NULL when the
/// period is absent). 1 when it matches.
int pm_fold_match_period(const char *s, size_t n, const char **per, size_t *pern, const char **ev, size_t *evn);
/// Sets stats.saturated (the table on top) when p capped a count.
void pm_fold_push_saturated(lua_State *L, const struct profile *p);
/// Whether text is folded stacks rather than perf script (a vote of its
/// first lines; fold.c).
int pm_fold_looks_folded(const char *s, size_t n);

/* One thread's share of a perf script text: it starts after a blank line,
 * where the folding state is empty, so chunks fold independently. */
struct chunk {
  struct perf_opts o;
  const char *s;
  size_t n;
  int last;                  /* the final chunk: may end mid-sample */
  const char *filter;        /* the event type to fold, found up front */
  size_t filterlen;
  int have_filter;
  struct profile *p;
  struct report r;
  size_t lines;
  uint64_t samples;
  int filtered, oom;
};

/// Folds c->s into c->p the way stackcollapse-perf.pl does (a pthread
/// start routine: arg is the struct chunk; returns NULL).
void *pm_fold_chunk(void *arg);

/// Reads folded lines "frame;frame;... COUNT" into p; bad lines go to r (in
/// strict mode the first one stops the reading). -1 on out of memory.
int pm_fold_folded(struct profile *p, const char *s, size_t n, struct report *r, uint64_t *samples,
                   size_t *lines);

/// Folds perf script text s into p with the options at stack index opts,
/// on up to one thread per CPU. Pushes stats (1) or nil, "line N: why" (2)
/// and returns how many; raises on out of memory.
int pm_fold_perf_text(lua_State *L, struct profile *p, const char *s, size_t n, int opts);

/* ---- flame graph (fold_svg.c) ---- */

/// profile:svg_frames(opts) -> text, info (a Lua method).
int pm_fold_svg_frames(lua_State *L);

#endif
