/* perf_manual host: creates the LuaJIT state, installs the native modules,
 * points package.path at the tool's own lib/ and playbooks/, and hands argv
 * to lib/perf_manual/cli.lua.
 *
 * Exit status: 0 success, 2 user error (one line), 70 internal error
 * (traceback). Lua raises user errors as tables {user_error = msg, status = n}
 * (see perf_manual.util.user_error); anything else is internal. */
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "pm.h"

#define PM_EXIT_USER 2
#define PM_EXIT_INTERNAL 70

static char pm_root[PATH_MAX];

static int file_exists(const char *dir, const char *rel)
{
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  return access(p, R_OK) == 0;
}

/* The tool's files sit beside the binary (dev tree: bin/../lib) or under
 * PREFIX/share/perf_manual when installed. PERF_MANUAL_ROOT overrides. */
static int find_root(void)
{
  const char *env = getenv("PERF_MANUAL_ROOT");
  if (env && *env) {
    snprintf(pm_root, sizeof pm_root, "%s", env);
    return file_exists(pm_root, "lib/perf_manual/cli.lua") ? 0 : -1;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n < 0)
    return -1;
  exe[n] = '\0';
  char *bindir = dirname(exe);
  char cand[PATH_MAX];
  snprintf(cand, sizeof cand, "%s/..", bindir);
  if (file_exists(cand, "lib/perf_manual/cli.lua")) {
    if (!realpath(cand, pm_root))
      return -1;
    return 0;
  }
  snprintf(cand, sizeof cand, "%s/../share/perf_manual", bindir);
  if (file_exists(cand, "lib/perf_manual/cli.lua")) {
    if (!realpath(cand, pm_root))
      return -1;
    return 0;
  }
  return -1;
}

static void set_paths(lua_State *L)
{
  char buf[8 * PATH_MAX];
  lua_getglobal(L, "package");  // [package]
  snprintf(buf, sizeof buf,
           "%s/lib/?.lua;%s/lib/?/init.lua;%s/playbooks/?.lua;"
           "/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;"
           "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua",
           pm_root, pm_root, pm_root);
  lua_pushstring(L, buf);
  lua_setfield(L, -2, "path");
  lua_pushstring(L,
                 "/usr/local/lib/lua/5.1/?.so;"
                 "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;"
                 "/usr/lib/lua/5.1/?.so");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);  // []
}

/* Message handler: user errors pass through untouched, everything else gets
 * a traceback. */
static int msg_handler(lua_State *L)
{
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "user_error");
    int is_user = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (is_user)
      return 1;
  }
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg = lua_istable(L, 1) ? "(error object is a table)" : "(error object is not a string)";
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs the function on the stack top with nargs arguments below it.
 * Returns the process exit status. */
static int run_protected(lua_State *L, int nargs)
{
  int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msg_handler);
  lua_insert(L, fn);  // [handler, fn, args...]
  int rc = lua_pcall(L, nargs, 1, fn);
  if (rc == 0) {
    int status = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    fflush(stdout);
    return status;
  }
  fflush(stdout);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "user_error");  // [err, msg]
    lua_getfield(L, -2, "status");      // [err, msg, status]
    int status = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : PM_EXIT_USER;
    const char *msg = lua_tostring(L, -2);
    if (msg && *msg)
      fprintf(stderr, "perf_manual: %s\n", msg);
    return status;
  }
  const char *msg = lua_tostring(L, -1);
  if (rc == LUA_ERRMEM)
    fprintf(stderr, "perf_manual: out of memory\n");
  else
    fprintf(stderr, "perf_manual: internal error: %s\n", msg ? msg : "?");
  return PM_EXIT_INTERNAL;
}

static void push_args(lua_State *L, int argc, char **argv, int first, const char *arg0)
{
  lua_createtable(L, argc - first, 1);
  lua_pushstring(L, arg0);
  lua_rawseti(L, -2, 0);
  for (int i = first; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - first + 1);
  }
}

int main(int argc, char **argv)
{
  if (find_root() < 0) {
    fprintf(stderr,
            "perf_manual: cannot find the tool's Lua files (lib/perf_manual/cli.lua) "
            "next to the binary; set PERF_MANUAL_ROOT\n");
    return PM_EXIT_USER;
  }
  pm_signals_install();
  /* libbpf parses the kernel's BTF (megabytes) once per object and frees it;
   * a fixed threshold keeps such blocks in their own mappings, returned on
   * free, instead of glibc raising the threshold and leaving them on the heap */
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);

  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "perf_manual: cannot create the Lua state\n");
    return PM_EXIT_INTERNAL;
  }
  luaL_openlibs(L);
  set_paths(L);
  pm_modules_register(L);

  /* host facts for perf_manual.host */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");  // [package, loaded]
  lua_createtable(L, 0, 3);
  lua_pushstring(L, pm_root);
  lua_setfield(L, -2, "root");
  lua_pushstring(L, PM_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, argv[0]);
  lua_setfield(L, -2, "argv0");
  lua_setfield(L, -2, "perf_manual._host");
  lua_pop(L, 2);

  int status;
  if (argc >= 3 && strcmp(argv[1], "--lua") == 0) {
    /* perf_manual --lua FILE [--] args: run a Lua file inside the host (the
     * busted runner and benchmarks use this to reach the native modules) */
    int first = 3;
    if (argc > 3 && strcmp(argv[3], "--") == 0)
      first = 4;
    push_args(L, argc, argv, first, argv[2]);
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, argv[2]) != 0) {
      fprintf(stderr, "perf_manual: %s\n", lua_tostring(L, -1));
      lua_close(L);
      return PM_EXIT_USER;
    }
    status = run_protected(L, 0);
  } else {
    lua_getglobal(L, "require");
    lua_pushstring(L, "perf_manual.cli");
    if (lua_pcall(L, 1, 1, 0) != 0) {
      fprintf(stderr, "perf_manual: internal error: %s\n", lua_tostring(L, -1));
      lua_close(L);
      return PM_EXIT_INTERNAL;
    }
    lua_getfield(L, -1, "main");  // [cli, main]
    push_args(L, argc, argv, 1, argv[0]);
    status = run_protected(L, 1);
  }
  lua_close(L);
  return status;
}
