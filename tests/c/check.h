/* A few macros for the C unit tests: a case is a function; it passes when
 * every CHECK in it holds. A failing CHECK prints the case, file:line, the
 * expression and the values, and the case goes on (to show every failure).
 * main() ends with check_summary(), whose last line tests/run_c_tests.sh
 * reads: "<program>: N passed, N failed". */
#ifndef PM_TEST_CHECK_H
#define PM_TEST_CHECK_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed, check_case_failures;
static const char *check_case_name;

static int check_report(int ok, const char *file, int line, const char *what)
{
  if (!ok) {
    check_case_failures++;
    printf("  FAIL %s: %s:%d: %s\n", check_case_name, file, line, what);
  }
  return ok;
}

#define CHECK(cond) check_report((cond) != 0, __FILE__, __LINE__, #cond)

#define CHECK_INT(got, want)                                                                        \
  do {                                                                                               \
    long long g_ = (long long)(got), w_ = (long long)(want);                                        \
    if (!check_report(g_ == w_, __FILE__, __LINE__, #got " == " #want))                             \
      printf("       got %lld, want %lld\n", g_, w_);                                               \
  } while (0)

#define CHECK_U64(got, want)                                                                        \
  do {                                                                                               \
    uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);                                           \
    if (!check_report(g_ == w_, __FILE__, __LINE__, #got " == " #want))                             \
      printf("       got %" PRIu64 ", want %" PRIu64 "\n", g_, w_);                                 \
  } while (0)

#define CHECK_STR(got, want)                                                                        \
  do {                                                                                               \
    const char *g_ = (got), *w_ = (want);                                                           \
    if (!check_report(g_ && w_ && strcmp(g_, w_) == 0, __FILE__, __LINE__, #got " == " #want))      \
      printf("       got \"%s\", want \"%s\"\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)");          \
  } while (0)

/* got is a (pointer, length) pair, want a C string */
#define CHECK_MEM(got, gotlen, want)                                                                \
  do {                                                                                               \
    const char *g_ = (got), *w_ = (want);                                                           \
    size_t gl_ = (gotlen);                                                                           \
    if (!check_report(g_ && gl_ == strlen(w_) && memcmp(g_, w_, gl_) == 0, __FILE__, __LINE__,      \
                      #got " == " #want))                                                            \
      printf("       got \"%.*s\", want \"%s\"\n", g_ ? (int)gl_ : 6, g_ ? g_ : "(null)", w_);      \
  } while (0)

static void check_run(const char *name, void (*fn)(void))
{
  check_case_name = name;
  check_case_failures = 0;
  fn();
  if (check_case_failures) {
    check_failed++;
    printf("not ok %s\n", name);
  } else {
    check_passed++;
    printf("ok     %s\n", name);
  }
}

#define RUN(fn) check_run(#fn, fn)

/* Runs a shell command made like printf; its exit status, the command
 * printed when it is not 0 (tests that build programs with cc, objcopy...). */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int sh(const char *fmt, ...)
{
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int rc = system(cmd);
  if (rc != 0)
    printf("  command failed (%d): %s\n", rc, cmd);
  return rc;
}

static int check_summary(const char *program)
{
  printf("%s: %d passed, %d failed\n", program, check_passed, check_failed);
  return check_failed ? 1 : 0;
}

#endif
