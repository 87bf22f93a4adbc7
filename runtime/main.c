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
#include <sys/stat.h>
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

/* Bytecode cache: `make` compiles every Lua file the tool loads (string.dump
 * with debug info, so tracebacks keep their lines) into build/lj, under the
 * file's path relative to the root (or its absolute path under _sys/ for a
 * library such as argparse). Parsing the sources was about 6 ms of a probe's
 * 30 ms start. A copy older than its source is ignored, so an edited module
 * or playbook is loaded from source until the next build. */
static int cache_path(char *out, size_t n, const char *src)
{
  size_t rl = strlen(pm_root);
  int w;
  if (strncmp(src, pm_root, rl) == 0 && src[rl] == '/')
    w = snprintf(out, n, "%s/build/lj%s", pm_root, src + rl);
  else
    w = snprintf(out, n, "%s/build/lj/_sys%s", pm_root, src);
  return w > 0 && (size_t)w < n;
}

static int newer_or_same(const struct stat *a, const struct stat *b)
{
  return a->st_mtim.tv_sec > b->st_mtim.tv_sec ||
         (a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec >= b->st_mtim.tv_nsec);
}

/* Pushes the chunk of src from the cache when a fresh copy loads; else
 * pushes nothing and returns 0. */
static int load_cached(lua_State *L, const char *src, const struct stat *sst)
{
  char cp[2 * PATH_MAX];
  struct stat cst;
  if (src[0] != '/' || !cache_path(cp, sizeof cp, src) || stat(cp, &cst) != 0 || !newer_or_same(&cst, sst))
    return 0;
  if (luaL_loadfile(L, cp) != 0) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* package.loaders[2]: the first source on package.path, as the standard
 * searcher would find it, loaded from its cached bytecode when fresh. */
static int bytecode_searcher(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  char mod[PATH_MAX];
  size_t nl = strlen(name);
  if (nl >= sizeof mod)
    return 0;
  for (size_t i = 0; i <= nl; i++)
    mod[i] = name[i] == '.' ? '/' : name[i];
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *path = lua_tostring(L, -1);
  char file[2 * PATH_MAX];
  while (path && *path) {
    const char *end = strchr(path, ';');
    size_t tl = end ? (size_t)(end - path) : strlen(path);
    size_t o = 0;
    for (size_t i = 0; i < tl && o + nl + 1 < sizeof file; i++) {
      if (path[i] == '?') {
        memcpy(file + o, mod, nl);
        o += nl;
      } else {
        file[o++] = path[i];
      }
    }
    file[o] = 0;
    struct stat sst;
    if (o > 0 && stat(file, &sst) == 0 && S_ISREG(sst.st_mode)) {
      if (load_cached(L, file, &sst))
        return 1;
      break;  /* the standard searcher loads this source */
    }
    path = end ? end + 1 : NULL;
  }
  lua_pushliteral(L, "");
  return 1;
}

/* _host.loadfile(path): loadfile through the bytecode cache (playbooks). */
static int host_loadfile(lua_State *L)
{
  const char *src = luaL_checkstring(L, 1);
  struct stat sst;
  if (stat(src, &sst) == 0 && load_cached(L, src, &sst))
    return 1;
  if (luaL_loadfile(L, src) != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

static void install_searcher(lua_State *L)
{
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaders");  // [package, loaders]
  int n = (int)lua_objlen(L, -1);
  for (int i = n; i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, bytecode_searcher);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
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
  /* LuaJIT compiles a loop after 56 turns by default: a start-up full of
   * short loops (argument parsing, module set-up, /proc parsing) spent about
   * 2 ms of a probe's start compiling traces for loops that ran a few hundred
   * times. A loop that matters runs millions of times and is compiled a
   * moment later; a measurement window, a server or a load generator sets
   * the default back for itself (perf_manual.util.long_running). */
  if (luaL_dostring(L, "require('jit.opt').start('hotloop=1000')") != 0)
    lua_pop(L, 1);
  set_paths(L);
  install_searcher(L);
  pm_modules_register(L);

  /* host facts for perf_manual.host */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");  // [package, loaded]
  lua_createtable(L, 0, 4);
  lua_pushstring(L, pm_root);
  lua_setfield(L, -2, "root");
  lua_pushstring(L, PM_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, argv[0]);
  lua_setfield(L, -2, "argv0");
  lua_pushcfunction(L, host_loadfile);
  lua_setfield(L, -2, "loadfile");
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
