/* Internal to runtime/fold.c: the stack-count table, the perf script line
 * matchers, one pass of perf script folding and the folded-format reader,
 * declared here so the C unit tests (tests/c/test_fold.c) call them
 * directly. Not part of the Lua interface. */
#ifndef PM_FOLD_INTERNAL_H
#define PM_FOLD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define MAX_ERRORS_KEPT 100
#define MAX_COUNT 9007199254740992ull /* 2^53: exact in a Lua number */

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
};

uint64_t pm_fold_hash(const char *s, size_t n);
/// Adds count to stack `key` (a copy is kept); -1 on out of memory.
int pm_profile_add(struct profile *p, const char *key, size_t len, uint64_t count);
/// The entry of `key` (h = pm_fold_hash(key, len)), or NULL.
struct entry *pm_profile_find(const struct profile *p, const char *key, size_t len, uint64_t h);
void pm_profile_destroy(struct profile *p);

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

#endif
