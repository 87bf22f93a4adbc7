/* Unit tests of runtime/fold.c: the stack-count table, the perf script
 * header matchers, perf script folding (stackcollapse-perf.pl semantics)
 * and the folded-format reader, called directly (runtime/fold_internal.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fold_internal.h"

static uint64_t count_of(const struct profile *p, const char *key)
{
  size_t n = strlen(key);
  const struct entry *e = pm_profile_find(p, key, n, pm_fold_hash(key, n));
  return e ? e->count : 0;
}

/* ---- the table ---- */

static void table_adds_and_merges(void)
{
  struct profile *p = calloc(1, sizeof *p);
  char key[32];
  strcpy(key, "main;work;leaf");
  CHECK_INT(pm_profile_add(p, key, strlen(key), 3), 0);
  /* the table keeps its own copy of the key */
  strcpy(key, "main;work;LEAF");
  CHECK_INT(pm_profile_add(p, key, strlen(key), 4), 0);
  CHECK_INT(pm_profile_add(p, "main;work;leaf", 14, 5), 0);
  CHECK_U64(count_of(p, "main;work;leaf"), 8);
  CHECK_U64(count_of(p, "main;work;LEAF"), 4);
  CHECK_U64(count_of(p, "main;work"), 0);
  CHECK_U64(count_of(p, "main;work;leaf;"), 0);
  CHECK_INT(p->n, 2);
  CHECK_U64(p->total, 12);
  /* keys differing only past the first 8 bytes, or only in length */
  CHECK_INT(pm_profile_add(p, "abcdefgh1", 9, 1), 0);
  CHECK_INT(pm_profile_add(p, "abcdefgh2", 9, 2), 0);
  CHECK_INT(pm_profile_add(p, "a\0", 2, 7), 0);
  CHECK_INT(pm_profile_add(p, "a", 1, 9), 0);
  CHECK_U64(count_of(p, "abcdefgh1"), 1);
  CHECK_U64(count_of(p, "abcdefgh2"), 2);
  CHECK_U64(count_of(p, "a"), 9);
  const struct entry *e = pm_profile_find(p, "a\0", 2, pm_fold_hash("a\0", 2));
  CHECK(e && e->count == 7);
  CHECK_INT(p->n, 6);
  pm_profile_destroy(p);

  /* an empty table finds nothing */
  p = calloc(1, sizeof *p);
  CHECK(pm_profile_find(p, "x", 1, pm_fold_hash("x", 1)) == NULL);
  pm_profile_destroy(p);
}

/* Past the first slot array (1024), entry array (512) and arena block
 * (1 MiB): every stack keeps its count. */
static void table_grows(void)
{
  struct profile *p = calloc(1, sizeof *p);
  enum { N = 60000 };
  char key[64];
  uint64_t want_total = 0;
  for (int i = 0; i < N; i++) {
    int n = snprintf(key, sizeof key, "root;frame_%d;leaf_%d", i % 997, i);
    CHECK_INT(pm_profile_add(p, key, (size_t)n, (uint64_t)(i % 13 + 1)), 0);
    want_total += (uint64_t)(i % 13 + 1);
  }
  /* a second pass lands on the same entries */
  for (int i = 0; i < N; i += 3) {
    int n = snprintf(key, sizeof key, "root;frame_%d;leaf_%d", i % 997, i);
    CHECK_INT(pm_profile_add(p, key, (size_t)n, 100), 0);
    want_total += 100;
  }
  CHECK_INT(p->n, N);
  CHECK_U64(p->total, want_total);
  CHECK(p->scap >= 2 * (size_t)N);
  int wrong = 0;
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "root;frame_%d;leaf_%d", i % 997, i);
    uint64_t want = (uint64_t)(i % 13 + 1) + (i % 3 == 0 ? 100 : 0);
    wrong += count_of(p, key) != want;
  }
  CHECK_INT(wrong, 0);
  pm_profile_destroy(p);
}

/* ---- sample header matchers ---- */

static void matches_sample_headers(void)
{
  size_t cl, pidn, tidn;
  const char *pid, *tid;
  static const char h1[] = "calltree 4242/4243 [001] 12345.678901:     250000 cycles:u: ";
  CHECK(pm_fold_match_event(h1, strlen(h1), &cl, &pid, &pidn, &tid, &tidn));
  CHECK_MEM(h1, cl, "calltree");
  CHECK_MEM(pid, pidn, "4242");
  CHECK_MEM(tid, tidn, "4243");
  /* a comm with spaces; no tid */
  static const char h2[] = "Web Content 77 1.5: 1 cpu-clock: ";
  CHECK(pm_fold_match_event(h2, strlen(h2), &cl, &pid, &pidn, &tid, &tidn));
  CHECK_MEM(h2, cl, "Web Content");
  CHECK_MEM(pid, pidn, "77");
  CHECK_INT(tidn, 0);
  /* the comm is at least two characters and as short as can be */
  static const char h3[] = "x 12 34 1.0: ";
  CHECK(pm_fold_match_event(h3, strlen(h3), &cl, &pid, &pidn, &tid, &tidn));
  CHECK_MEM(h3, cl, "x 12");
  CHECK_MEM(pid, pidn, "34");
  static const char h4[] = "kworker/0:1H 17/17 ";
  CHECK(pm_fold_match_event(h4, strlen(h4), &cl, &pid, &pidn, &tid, &tidn));
  CHECK_MEM(h4, cl, "kworker/0:1H");
  /* not headers: a stack line, no pid, a pid with nothing after it */
  static const char *no[] = { "\t    401136 leaf+0x6 (/tmp/prog)", "just words here", "comm 123", "", "a" };
  for (size_t k = 0; k < sizeof no / sizeof no[0]; k++)
    if (!CHECK(!pm_fold_match_event(no[k], strlen(no[k]), &cl, &pid, &pidn, &tid, &tidn)))
      printf("       matched \"%s\"\n", no[k]);
}

static void matches_period_and_event(void)
{
  const char *per, *ev;
  size_t pern, evn;
  static const char h1[] = "calltree 4242/4243 [001] 12345.678901:     250000 cycles:u:   ";
  CHECK(pm_fold_match_period(h1, strlen(h1), &per, &pern, &ev, &evn));
  CHECK_MEM(per, pern, "250000");
  CHECK_MEM(ev, evn, "cycles:u");
  /* no period: the event alone */
  static const char h2[] = "prog 1 2.000: cpu-clock:";
  CHECK(pm_fold_match_period(h2, strlen(h2), &per, &pern, &ev, &evn));
  CHECK(per == NULL && pern == 0);
  CHECK_MEM(ev, evn, "cpu-clock");
  /* the event must end with ':'; the period must be digits */
  static const char *no[] = { "prog 1 2.000: 100 cycles", "prog 1 2.000: 1x0 cycles:", "prog 1 2.000 100 cycles:",
                              ":", "" };
  for (size_t k = 0; k < sizeof no / sizeof no[0]; k++)
    if (!CHECK(!pm_fold_match_period(no[k], strlen(no[k]), &per, &pern, &ev, &evn)))
      printf("       matched \"%s\"\n", no[k]);
}

/* ---- perf script folding ---- */

static struct chunk fold(const char *text, struct perf_opts o, int strict)
{
  struct chunk c;
  memset(&c, 0, sizeof c);
  c.o = o;
  c.s = text;
  c.n = strlen(text);
  c.last = 1;
  c.r.strict = strict;
  c.p = calloc(1, sizeof *c.p);
  pm_fold_chunk(&c);
  return c;
}

static void chunk_free(struct chunk *c)
{
  free(c->r.v);
  pm_profile_destroy(c->p);
}

static const char SCRIPT[] =
  "# a comment line\n"
  "calltree 100/100 [000] 1.000000:         10 cycles:u: \n"
  "\t          401136 leaf+0x6 (/tmp/calltree)\n"
  "\t          401200 mid+0x10 (/tmp/calltree)\n"
  "\t          401300 main+0x20 (/tmp/calltree)\n"
  "\n"
  "calltree 100/101 [001] 1.000100:         20 cycles:u: \n"
  "\t          401136 leaf+0x6 (/tmp/calltree)\n"
  "\t          401300 main+0x20 (/tmp/calltree)\n"
  "\n"
  "calltree 100/101 [001] 1.000200:          5 cycles:u: \n"
  "\tffffffff81000000 do_syscall_64+0x5 ([kernel.kallsyms])\n"
  "\t          7f0001 [unknown] (/usr/lib/libc.so.6)\n"
  "\t          401300 main+0x20 (/tmp/calltree)\n"
  "\n"
  "calltree 100/101 [001] 1.000300:        999 instructions:u: \n"
  "\t          401136 leaf+0x6 (/tmp/calltree)\n"
  "\n";

static void folds_perf_script(void)
{
  struct perf_opts o = { 0 };
  struct chunk c = fold(SCRIPT, o, 0);
  CHECK_INT(c.oom, 0);
  CHECK_U64(c.samples, 3);
  CHECK_INT(c.lines, 18);
  CHECK_INT(c.r.bad, 0);
  /* the first event type only: the instructions sample is left out */
  CHECK_INT(c.filtered, 1);
  CHECK_INT(c.p->n, 3);
  CHECK_U64(c.p->total, 35);
  CHECK_U64(count_of(c.p, "calltree;main;mid;leaf"), 10);
  CHECK_U64(count_of(c.p, "calltree;main;leaf"), 20);
  /* an unknown symbol is named by its module; no kernel suffix unless asked */
  CHECK_U64(count_of(c.p, "calltree;main;[libc.so.6];do_syscall_64"), 5);
  chunk_free(&c);

  struct perf_opts ko = { .kernel = 1, .tid = 1 };
  c = fold(SCRIPT, ko, 0);
  CHECK_U64(count_of(c.p, "calltree-100/100;main;mid;leaf"), 10);
  CHECK_U64(count_of(c.p, "calltree-100/101;main;[libc.so.6];do_syscall_64_[k]"), 5);
  chunk_free(&c);

  struct perf_opts po = { .pid = 1 };
  c = fold(SCRIPT, po, 0);
  CHECK_U64(count_of(c.p, "calltree-100;main;leaf"), 20);
  chunk_free(&c);
}

static void tidies_frames(void)
{
  static const char s[] =
    "Web Content 7 1.0: 1 cpu-clock: \n"
    "\t  1000 ns::Foo::bar(int, char const*)+0x10 (/usr/lib/libxul.so)\n"
    "\t  2000 outer->inlined (/usr/lib/libxul.so)\n"
    "\t  3000 semi;colon+0x1 (/usr/lib/libxul.so)\n"
    "\t  4000 [unknown] ([unknown])\n"
    "\n";
  struct perf_opts o = { 0 };
  struct chunk c = fold(s, o, 0);
  CHECK_U64(c.samples, 1);
  CHECK_INT(c.r.bad, 0);
  /* root first: spaces in the comm become '_', argument lists go, an
   * inline chain splits with "_[i]" on the inlined part, ';' becomes ':' */
  const char *want = "Web_Content;[unknown];semi:colon;outer;inlined_[i];ns::Foo::bar";
  if (!CHECK(count_of(c.p, want) == 1) && c.p->n == 1)
    printf("       got \"%.*s\"\n", (int)c.p->ents[0].len, c.p->ents[0].key);
  chunk_free(&c);
}

static void reports_bad_and_truncated(void)
{
  static const char s[] =
    "prog 1/1 1.0: 1 cpu-clock: \n"
    "\t  1000 f+0x1 (/bin/prog)\n"
    "this is not perf script\n"
    "\n"
    "prog 1/1 1.1: 1 cpu-clock: \n"
    "\t  1000 g+0x1 (/bin/prog)\n";
  struct perf_opts o = { 0 };
  struct chunk c = fold(s, o, 0);
  /* the bad line is skipped and named; the last sample has no blank line
   * after it, so (like stackcollapse-perf.pl) it is dropped, and said so */
  CHECK_U64(c.samples, 1);
  CHECK_U64(count_of(c.p, "prog;f"), 1);
  CHECK_U64(count_of(c.p, "prog;g"), 0);
  CHECK_INT(c.r.bad, 2);
  CHECK_INT(c.r.nv, 2);
  if (c.r.nv == 2) {
    CHECK_INT(c.r.v[0].line, 3);
    CHECK_STR(c.r.v[0].text, "this is not perf script");
    CHECK_STR(c.r.v[0].reason, "not a perf script sample header or stack line");
    CHECK_INT(c.r.v[1].line, 5);
    CHECK_STR(c.r.v[1].reason, "truncated sample at end of input (no blank line after its stack)");
  }
  chunk_free(&c);

  /* strict: the first bad line stops the pass */
  c = fold(s, o, 1);
  CHECK_INT(c.r.failed, 1);
  CHECK_INT(c.r.fail_line, 3);
  CHECK_INT(c.lines, 3);
  chunk_free(&c);

  /* binary junk: every byte value, no crash, every line bad */
  char junk[2048];
  for (size_t i = 0; i < sizeof junk - 1; i++)
    junk[i] = (char)(i * 7 % 255 + 1);
  junk[sizeof junk - 1] = 0;
  c = fold(junk, o, 0);
  CHECK_U64(c.samples, 0);
  CHECK_INT(c.p->n, 0);
  CHECK(c.r.bad > 0);
  chunk_free(&c);
}

/* ---- folded format ---- */

static void reads_folded(void)
{
  static const char s[] = "main;a;b 10\r\n"
                          "main;c 5\n"
                          "\n"
                          "main;a;b 3\n"
                          "main;zero 0\n"
                          "with space;frame 2";
  struct profile *p = calloc(1, sizeof *p);
  struct report r = { 0 };
  uint64_t samples = 0;
  size_t lines = 0;
  CHECK_INT(pm_fold_folded(p, s, strlen(s), &r, &samples, &lines), 0);
  CHECK_U64(samples, 20);
  CHECK_INT(lines, 6);
  CHECK_INT(r.bad, 0);
  CHECK_INT(p->n, 3);
  CHECK_U64(count_of(p, "main;a;b"), 13);
  CHECK_U64(count_of(p, "main;c"), 5);
  CHECK_U64(count_of(p, "with space;frame"), 2);
  CHECK_U64(count_of(p, "main;zero"), 0);
  free(r.v);
  pm_profile_destroy(p);
}

static void folded_bad_lines(void)
{
  static const char s[] = "main;ok 1\n"
                          "no count at all\n"
                          "main;glued10\n"
                          " 5\n"
                          "main;huge 9007199254740993\n"
                          "main;max 9007199254740992\n"
                          "main;ok 2\n";
  struct profile *p = calloc(1, sizeof *p);
  struct report r = { 0 };
  uint64_t samples = 0;
  size_t lines = 0;
  CHECK_INT(pm_fold_folded(p, s, strlen(s), &r, &samples, &lines), 0);
  CHECK_INT(r.bad, 4);
  CHECK_INT(r.nv, 4);
  static const struct { size_t line; const char *reason; } want[] = {
    { 2, "no sample count at the end of the line" },
    { 3, "expected \"frame;frame;... COUNT\"" },
    { 4, "empty stack" },
    { 5, "sample count too large" },
  };
  for (size_t k = 0; k < 4 && k < r.nv; k++) {
    CHECK_INT(r.v[k].line, want[k].line);
    CHECK_STR(r.v[k].reason, want[k].reason);
  }
  /* 2^53 itself is exact in a Lua number, so it is taken */
  CHECK_U64(count_of(p, "main;max"), 9007199254740992ull);
  CHECK_U64(count_of(p, "main;ok"), 3);
  free(r.v);
  pm_profile_destroy(p);

  /* strict stops at line 2 */
  p = calloc(1, sizeof *p);
  struct report rs = { .strict = 1 };
  CHECK_INT(pm_fold_folded(p, s, strlen(s), &rs, &samples, &lines), 0);
  CHECK_INT(rs.failed, 1);
  CHECK_INT(rs.fail_line, 2);
  CHECK_STR(rs.fail_reason, "no sample count at the end of the line");
  pm_profile_destroy(p);

  /* many bad lines: all counted, the first 100 kept, long ones cut to 120 */
  size_t n = 250 * 201;
  char *big = malloc(n + 1);
  for (size_t i = 0; i < 250; i++) {
    memset(big + i * 201, 'x', 200);
    big[i * 201 + 200] = '\n';
  }
  big[n] = 0;
  p = calloc(1, sizeof *p);
  struct report rb = { 0 };
  CHECK_INT(pm_fold_folded(p, big, n, &rb, &samples, &lines), 0);
  CHECK_INT(rb.bad, 250);
  CHECK_INT(rb.nv, MAX_ERRORS_KEPT);
  CHECK_INT(strlen(rb.v[99].text), 120);
  CHECK_INT(rb.v[99].line, 100);
  free(rb.v);
  free(big);
  pm_profile_destroy(p);
}


/* Counts stop at 2^53 (exact in a Lua number, what the folded reader
 * takes), with a note, so folded output always reads back. */
static void counts_saturate_at_2_53(void)
{
  const uint64_t max = 9007199254740992ull;
  struct profile *p = calloc(1, sizeof *p);
  CHECK_INT(pm_profile_add(p, "main;a", 6, max), 0);
  CHECK_U64(p->saturated, 0);
  CHECK_INT(pm_profile_add(p, "main;a", 6, max), 0);
  CHECK_U64(count_of(p, "main;a"), max);
  CHECK_U64(p->total, max);
  CHECK(p->saturated > 0);
  CHECK_INT(pm_profile_add(p, "main;b", 6, UINT64_MAX), 0);
  CHECK_U64(count_of(p, "main;b"), max);
  pm_profile_destroy(p);

  /* a perf period above 2^53 is refused like the folded count, line named */
  static const char s[] = "big 1 1.0: 9007199254740993 cycles: \n"
                          "\t  1000 leaf (/bin/big)\n"
                          "\n"
                          "big 1 2.0: 9007199254740992 cycles: \n"
                          "\t  1000 leaf (/bin/big)\n"
                          "\n"
                          "big 1 3.0: 9007199254740992 cycles: \n"
                          "\t  1000 leaf (/bin/big)\n"
                          "\n";
  struct perf_opts o = { 0 };
  struct chunk c = fold(s, o, 0);
  CHECK_INT(c.r.bad, 1);
  CHECK(c.r.nv == 1 && c.r.v[0].line == 1);
  CHECK_U64(c.samples, 2);
  CHECK_U64(count_of(c.p, "big;leaf"), max);
  CHECK(c.p->saturated > 0);
  chunk_free(&c);
}

/* Auto-detection votes over many lines: one malformed first line does not
 * turn a folded file into perf script. */
static void detects_format_by_many_lines(void)
{
  static const char *folded[] = {
    "main;work 3 \nmain;work 10\nmain;idle 5\n",
    "main;work\t3\nmain;work 10\nmain;idle 5\n",
    "main;work -1\nmain;work 10\nmain;idle 5\n",
    "main;work 1.5\nmain;work 10\nmain;idle 5\n",
    "# comment\n\nmain;work 10\n",
  };
  for (size_t i = 0; i < sizeof folded / sizeof folded[0]; i++)
    CHECK_INT(pm_fold_looks_folded(folded[i], strlen(folded[i])), 1);
  CHECK_INT(pm_fold_looks_folded(SCRIPT, strlen(SCRIPT)), 0);
  CHECK_INT(pm_fold_looks_folded("", 0), 0);
}

int main(void)
{
  RUN(table_adds_and_merges);
  RUN(table_grows);
  RUN(matches_sample_headers);
  RUN(matches_period_and_event);
  RUN(folds_perf_script);
  RUN(tidies_frames);
  RUN(reports_bad_and_truncated);
  RUN(reads_folded);
  RUN(folded_bad_lines);
  RUN(counts_saturate_at_2_53);
  RUN(detects_format_by_many_lines);
  return check_summary("test_fold");
}
