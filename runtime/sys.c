/* pm.sys: what the runtime loop needs that luaposix does not give cleanly:
 * clocks, the stop flag set by SIGINT/SIGTERM, interruptible sleep, spawning
 * and reaping workloads, the process's own resource usage, and the few file
 * and syscall facts the samplers use (file descriptors re-read with pread,
 * the calling thread's CPU time, syscall numbers of this architecture). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "pm.h"

static volatile sig_atomic_t stop_count;

static void on_signal(int sig)
{
  if (++stop_count >= 2) {
    /* second signal: leave now, with the conventional status */
    signal(sig, SIG_DFL);
    raise(sig);
  }
}

void pm_signals_install(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  /* no SA_RESTART: a sleep or poll in progress returns at once */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int pm_stop_requested(void) { return stop_count > 0; }

static double ts_sec(const struct timespec *ts) { return ts->tv_sec + ts->tv_nsec / 1e9; }

/// now() -> monotonic seconds (float)
static int pm_sys_now(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, ts_sec(&ts));
  return 1;
}

/// realtime() -> seconds since the epoch (float)
static int pm_sys_realtime(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, ts_sec(&ts));
  return 1;
}

/// monotonic_ns() -> nanoseconds as a float (exact below 2^53)
static int pm_sys_monotonic_ns(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec);
  return 1;
}

/// sleep(seconds) -> true when slept fully, false when a stop was requested
static int pm_sys_sleep(lua_State *L)
{
  double s = luaL_checknumber(L, 1);
  if (s < 0)
    s = 0;
  struct timespec req = { (time_t)s, (long)((s - (time_t)s) * 1e9) }, rem;
  while (!pm_stop_requested() && nanosleep(&req, &rem) < 0 && errno == EINTR)
    req = rem;
  lua_pushboolean(L, !pm_stop_requested());
  return 1;
}

static int pm_sys_stop_requested(lua_State *L)
{
  lua_pushboolean(L, pm_stop_requested());
  return 1;
}

/// request_stop(): as if SIGINT arrived once (tests, --max-overhead)
static int pm_sys_request_stop(lua_State *L)
{
  (void)L;
  if (stop_count == 0)
    stop_count = 1;
  return 0;
}

static int pm_sys_clear_stop(lua_State *L)
{
  (void)L;
  stop_count = 0;
  return 0;
}

static int pm_sys_isatty(lua_State *L)
{
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
  return 1;
}

static int pm_sys_getpid(lua_State *L)
{
  lua_pushinteger(L, getpid());
  return 1;
}

/// rusage([who]) -> {utime=, stime=, maxrss_kb=, minflt=, majflt=, nvcsw=, nivcsw=}
/// who: "self" (default) or "children"
static int pm_sys_rusage(lua_State *L)
{
  const char *who = luaL_optstring(L, 1, "self");
  struct rusage ru;
  if (getrusage(strcmp(who, "children") == 0 ? RUSAGE_CHILDREN : RUSAGE_SELF, &ru) < 0)
    return pm_push_errno(L, "getrusage", errno);
  lua_createtable(L, 0, 7);
  lua_pushnumber(L, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6);
  lua_setfield(L, -2, "utime");
  lua_pushnumber(L, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
  lua_setfield(L, -2, "stime");
  lua_pushinteger(L, ru.ru_maxrss);
  lua_setfield(L, -2, "maxrss_kb");
  lua_pushinteger(L, ru.ru_minflt);
  lua_setfield(L, -2, "minflt");
  lua_pushinteger(L, ru.ru_majflt);
  lua_setfield(L, -2, "majflt");
  lua_pushinteger(L, ru.ru_nvcsw);
  lua_setfield(L, -2, "nvcsw");
  lua_pushinteger(L, ru.ru_nivcsw);
  lua_setfield(L, -2, "nivcsw");
  return 1;
}

#ifndef PM_CLOSE_RANGE_CLOEXEC
#define PM_CLOSE_RANGE_CLOEXEC (1U << 2)  /* linux/close_range.h, not in every libc's headers */
#endif

/* What the launched child needs; it runs in this process's memory (see
 * pm_sys_spawn), so it calls nothing that allocates or takes a lock, and
 * reports a failure in `error` before it exits. */
struct spawn_child {
  const char **av;
  const char *join, *out, *err, *in;
  int setpg, deathsig, logfd;
  pid_t parent;
  sigset_t mask;
  int error;
};

static int open_dup(const char *path, int flags, int target)
{
  int fd = open(strcmp(path, "null") == 0 ? "/dev/null" : path, flags, 0644);
  if (fd < 0 || dup2(fd, target) < 0)
    return errno;
  if (fd != target)
    close(fd);
  return 0;
}

static int spawn_child_main(void *arg)
{
  struct spawn_child *c = arg;
  /* a handler of this process must not run in the child: back to defaults */
  struct sigaction dfl, cur;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP)
      continue;
    if (sigaction(sig, NULL, &cur) == 0 && cur.sa_handler != SIG_DFL &&
        (cur.sa_handler != SIG_IGN || sig == SIGPIPE))
      sigaction(sig, &dfl, NULL);
  }
  int e = 0;
  if (c->setpg && setpgid(0, 0) < 0)
    e = errno;
  if (!e && c->deathsig) {
    if (prctl(PR_SET_PDEATHSIG, c->deathsig) < 0)
      e = errno;
    else if (getppid() != c->parent)
      _exit(127);  /* the launcher died before the prctl: nobody to report to */
  }
  if (!e && c->logfd >= 0 && (dup2(c->logfd, 1) < 0 || dup2(c->logfd, 2) < 0))
    e = errno;
  if (!e && c->in)
    e = open_dup(c->in, O_RDONLY, 0);
  if (!e && c->join) {
    /* the pid in decimal, by hand: no stdio here */
    char buf[16];
    int n = sizeof buf;
    buf[--n] = '\n';
    for (long v = syscall(SYS_getpid); v > 0 && n > 0; v /= 10)
      buf[--n] = (char)('0' + v % 10);
    int fd = open(c->join, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf + n, sizeof buf - n) != (ssize_t)(sizeof buf - n))
      e = errno ? errno : EIO;
    if (fd >= 0)
      close(fd);
  }
  if (!e && c->out)
    e = open_dup(c->out, O_WRONLY | O_CREAT | O_TRUNC, 1);
  if (!e && c->err && c->out && strcmp(c->err, c->out) == 0) {
    /* one file, one offset: two opens would write over each other */
    if (dup2(1, 2) < 0)
      e = errno;
  } else if (!e && c->err) {
    e = open_dup(c->err, O_WRONLY | O_CREAT | O_TRUNC, 2);
  }
  /* none of this process's files (a Lua file not yet collected, a
     socket) reach the command: a program with a fixed-size table of its
     own descriptors fails when inherited ones push its numbers past it */
  if (!e && syscall(SYS_close_range, 3, ~0U, PM_CLOSE_RANGE_CLOEXEC) < 0 && errno != ENOSYS)
    e = errno;
  if (!e) {
    pthread_sigmask(SIG_SETMASK, &c->mask, NULL);
    execvp(c->av[0], (char *const *)c->av);
    e = errno;
  }
  c->error = e ? e : EIO;
  _exit(127);
}

/// spawn(argv[, opts]) -> pid[, logger_pid] | nil, err, errno
/// opts.join = path of a cgroup.procs / tasks file the child writes its own
/// pid into before exec (so the workload never runs outside it);
/// opts.stdout / opts.stderr = file path (or "null") to redirect to;
/// opts.stdin = "null" reads /dev/null;
/// opts.setpgid = true puts the child in a process group of its own (so
/// kill(-pid) reaches what it starts);
/// opts.pdeathsig = signal the child gets when this process dies (kill -9
/// included: the workload never outlives its launcher);
/// opts.log = path, opts.log_cap = bytes: stdout and stderr go through a
/// pipe to a small logger process that keeps the first log_cap bytes in
/// the file, then one "[output cut ...]" line, and reads and drops the
/// rest (the workload never blocks, the disk never fills; a file-size
/// rlimit would cap the workload's own files too). The logger exits when
/// the last writer closes the pipe, or when this process dies; its pid is
/// the second result (reap it with wait). The child keeps only fds 0-2.
static int pm_sys_spawn(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_objlen(L, 1);
  luaL_argcheck(L, n > 0, 1, "expected 'spawn(argv table, opts?)' with a non-empty argv");
  const char **av = calloc(n + 1, sizeof *av);
  if (!av)
    return luaL_error(L, "spawn: out of memory");
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    av[i] = lua_tostring(L, -1);
    lua_pop(L, 1);  /* strings stay alive: they are referenced by argv */
    if (!av[i]) {
      free(av);
      return luaL_argerror(L, 1, "argv entries must be strings");
    }
  }
  const char *join = NULL, *out = NULL, *err = NULL, *in = NULL;
  int setpg = 0, deathsig = 0;
  lua_Number log_cap = -1;
  const char *log = NULL;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "join");
    join = lua_tostring(L, -1);
    lua_getfield(L, 2, "stdout");
    out = lua_tostring(L, -1);
    lua_getfield(L, 2, "stderr");
    err = lua_tostring(L, -1);
    lua_getfield(L, 2, "stdin");
    in = lua_tostring(L, -1);
    lua_pop(L, 4);  /* still referenced by the opts table */
    lua_getfield(L, 2, "setpgid");
    setpg = lua_toboolean(L, -1);
    lua_getfield(L, 2, "pdeathsig");
    deathsig = (int)lua_tointeger(L, -1);
    lua_getfield(L, 2, "log_cap");
    if (lua_isnumber(L, -1))
      log_cap = lua_tonumber(L, -1);
    lua_getfield(L, 2, "log");
    log = lua_tostring(L, -1);
    lua_pop(L, 4);
    if (deathsig < 0 || deathsig >= NSIG) {
      free(av);
      return luaL_argerror(L, 2, "pdeathsig must be a signal number");
    }
  }
  pid_t parent = getpid();
  int logpipe[2] = { -1, -1 };
  pid_t logger = 0;
  if (log) {
    int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (lfd < 0) {
      int e = errno;
      free(av);
      lua_pushnil(L);
      lua_pushfstring(L, "cannot open %s: %s", log, strerror(e));
      lua_pushinteger(L, e);
      return 3;
    }
    if (pipe2(logpipe, O_CLOEXEC) < 0) {
      int e = errno;
      close(lfd);
      free(av);
      return pm_push_errno(L, "spawn: pipe", e);
    }
    logger = fork();
    if (logger < 0) {
      int e = errno;
      close(lfd);
      close(logpipe[0]);
      close(logpipe[1]);
      free(av);
      return pm_push_errno(L, "spawn: fork", e);
    }
    if (logger == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      signal(SIGINT, SIG_IGN);  /* Ctrl-C is the launcher's to handle */
      signal(SIGTERM, SIG_DFL);
      if (getppid() != parent)
        _exit(0);
      close(logpipe[1]);
      /* nothing of the launcher's (BPF links, sockets) stays open here */
      if (dup2(logpipe[0], 0) < 0 || dup2(lfd, 1) < 0)
        _exit(1);
      syscall(SYS_close_range, 3, ~0U, 0);
      double left = log_cap < 0 ? 1e18 : log_cap;
      int cut = 0;
      char buf[65536];
      for (;;) {
        ssize_t r = read(0, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
          continue;
        if (r <= 0)
          break;
        size_t keep = (double)r < left ? (size_t)r : (size_t)left;
        if (keep > 0) {
          (void)!write(1, buf, keep);
          left -= (double)keep;
        }
        if (keep < (size_t)r && !cut) {
          cut = 1;
          char msg[128];
          int m = snprintf(msg, sizeof msg, "\n[perf_manual: output cut at %.0f bytes; the rest was dropped]\n",
                           log_cap);
          (void)!write(1, msg, (size_t)m);
        }
      }
      _exit(0);
    }
    close(lfd);
    close(logpipe[0]);
  }
  struct spawn_child c = { .av = av, .join = join, .out = out, .err = err, .in = in, .setpg = setpg,
                            .deathsig = deathsig, .parent = parent, .logfd = log ? logpipe[1] : -1 };
  /* the child shares this memory and runs on its own stack until it execs
   * (as posix_spawn does): no page tables copied, which took 2-4 ms of every
   * launch with a grown Lua heap. Signals stay blocked until it has reset
   * the handlers it shares with this process. */
  size_t stack_size = 256 * 1024;
  void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    int e = errno;
    free(av);
    if (log) {
      close(logpipe[1]);
      waitpid(logger, NULL, 0);
    }
    return pm_push_errno(L, "spawn: stack", e);
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  c.mask = old;
  pid_t pid = clone(spawn_child_main, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  munmap(stack, stack_size);
  free(av);
  if (log)
    close(logpipe[1]);  /* the logger sees EOF when the workload's side closes */
  if (pid < 0) {
    if (log)
      waitpid(logger, NULL, 0);
    return pm_push_errno(L, "spawn: clone", fork_errno);
  }
  if (c.error) {
    waitpid(pid, NULL, 0);
    if (log)
      waitpid(logger, NULL, 0);
    lua_rawgeti(L, 1, 1);
    const char *prog = lua_tostring(L, -1);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot start %s: %s", prog, strerror(c.error));
    lua_pushinteger(L, c.error);
    return 3;
  }
  lua_pushinteger(L, pid);
  if (log) {
    lua_pushinteger(L, logger);
    return 2;
  }
  return 1;
}

/// wait(pid[, nohang]) -> "running" | "exited", code | "signaled", signo
static int pm_sys_wait(lua_State *L)
{
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int nohang = lua_toboolean(L, 2);
  int st;
  pid_t r;
  do
    r = waitpid(pid, &st, nohang ? WNOHANG : 0);
  while (r < 0 && errno == EINTR && !pm_stop_requested());
  if (r < 0)
    return pm_push_errno(L, "wait", errno);
  if (r == 0) {
    lua_pushstring(L, "running");
    return 1;
  }
  if (WIFEXITED(st)) {
    lua_pushstring(L, "exited");
    lua_pushinteger(L, WEXITSTATUS(st));
  } else {
    lua_pushstring(L, "signaled");
    lua_pushinteger(L, WTERMSIG(st));
  }
  return 2;
}

/// kill(pid, signo) -> true | nil, err, errno
static int pm_sys_kill(lua_State *L)
{
  if (kill((pid_t)luaL_checkinteger(L, 1), (int)luaL_optinteger(L, 2, SIGTERM)) < 0)
    return pm_push_errno(L, "kill", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/// sysconf facts: {clk_tck=, page_size=, ncpu=, ncpu_conf=}
static int pm_sys_info(lua_State *L)
{
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, sysconf(_SC_CLK_TCK));
  lua_setfield(L, -2, "clk_tck");
  lua_pushinteger(L, sysconf(_SC_PAGESIZE));
  lua_setfield(L, -2, "page_size");
  lua_pushinteger(L, sysconf(_SC_NPROCESSORS_ONLN));
  lua_setfield(L, -2, "ncpu");
  lua_pushinteger(L, sysconf(_SC_NPROCESSORS_CONF));
  lua_setfield(L, -2, "ncpu_conf");
  return 1;
}

/// geteuid() -> uid
static int pm_sys_geteuid(lua_State *L)
{
  lua_pushinteger(L, geteuid());
  return 1;
}

/// flock(path) -> fd: waits for an exclusive flock on path (created if
/// needed); the same lock that `flock(1)` takes in the shell scripts.
static int pm_sys_flock(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0)
    return pm_push_errno(L, "flock: open", errno);
  while (flock(fd, LOCK_EX) < 0) {
    if (errno != EINTR) {
      int e = errno;
      close(fd);
      return pm_push_errno(L, "flock", e);
    }
  }
  lua_pushinteger(L, fd);
  return 1;
}

/// unlock(fd): releases a lock taken by flock()
static int pm_sys_unlock(lua_State *L)
{
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

/// thread_cpu() -> CPU seconds used by the calling thread (float)
static int pm_sys_thread_cpu(lua_State *L)
{
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
    return pm_push_errno(L, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)", errno);
  lua_pushnumber(L, ts_sec(&ts));
  return 1;
}

/// open(path) -> fd | nil, "open PATH: why", errno: read-only, close-on-exec
/// (for files re-read in place with pread, e.g. /proc/PID/task/TID/stat)
static int pm_sys_open(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return pm_push_errno(L, lua_pushfstring(L, "open %s", path), e);
  }
  lua_pushinteger(L, fd);
  return 1;
}

#define PREAD_STACK 4096
#define PREAD_MAX (1 << 24)

/// pread(fd, max[, offset]) -> text (up to max bytes read at offset, 0 by
/// default; "" at end of file) | nil, "pread: why", errno
static int pm_sys_pread(lua_State *L)
{
  int fd = (int)luaL_checkinteger(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  lua_Number off = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, max >= 0 && max <= PREAD_MAX, 2, "expected 0..16 MiB");
  luaL_argcheck(L, off >= 0, 3, "expected an offset >= 0");
  char stack[PREAD_STACK];
  char *b = max <= PREAD_STACK ? stack : malloc((size_t)max);
  if (!b)
    return luaL_error(L, "pread: out of memory");
  ssize_t n;
  do
    n = pread(fd, b, (size_t)max, (off_t)off);
  while (n < 0 && errno == EINTR);
  int e = errno;
  if (n >= 0)
    lua_pushlstring(L, b, (size_t)n);
  if (b != stack)
    free(b);
  if (n < 0)
    return pm_push_errno(L, "pread", e);
  return 1;
}

/// close(fd) -> true | nil, "close: why", errno
static int pm_sys_close(lua_State *L)
{
  if (close((int)luaL_checkinteger(L, 1)) < 0)
    return pm_push_errno(L, "close", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* the syscalls the Lua side recognises by number (in /proc/PID/task/TID/syscall) */
static const struct {
  const char *name;
  long nr;
} syscall_nrs[] = {
#ifdef SYS_futex
  { "futex", SYS_futex },
#endif
#ifdef SYS_futex_waitv
  { "futex_waitv", SYS_futex_waitv },
#endif
  { NULL, 0 },
};

/// syscall_nr(name) -> the syscall's number on this architecture | nil when
/// it has none (known: futex, futex_waitv)
static int pm_sys_syscall_nr(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  for (int i = 0; syscall_nrs[i].name; i++) {
    if (strcmp(syscall_nrs[i].name, name) == 0) {
      lua_pushinteger(L, syscall_nrs[i].nr);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

static const luaL_Reg pm_sys_funcs[] = {
  { "flock", pm_sys_flock },
  { "unlock", pm_sys_unlock },
  { "now", pm_sys_now },
  { "realtime", pm_sys_realtime },
  { "monotonic_ns", pm_sys_monotonic_ns },
  { "sleep", pm_sys_sleep },
  { "stop_requested", pm_sys_stop_requested },
  { "request_stop", pm_sys_request_stop },
  { "clear_stop", pm_sys_clear_stop },
  { "isatty", pm_sys_isatty },
  { "getpid", pm_sys_getpid },
  { "geteuid", pm_sys_geteuid },
  { "rusage", pm_sys_rusage },
  { "spawn", pm_sys_spawn },
  { "wait", pm_sys_wait },
  { "kill", pm_sys_kill },
  { "info", pm_sys_info },
  { "thread_cpu", pm_sys_thread_cpu },
  { "open", pm_sys_open },
  { "pread", pm_sys_pread },
  { "close", pm_sys_close },
  { "syscall_nr", pm_sys_syscall_nr },
  { NULL, NULL },
};

int luaopen_pm_sys(lua_State *L)
{
  lua_newtable(L);
  luaL_register(L, NULL, pm_sys_funcs);
  return 1;
}
