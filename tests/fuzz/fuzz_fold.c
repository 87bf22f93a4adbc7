/* libFuzzer harness for the pm.fold parsers: the input goes through the
 * same Lua-facing calls the tool makes — perf script folding (every option,
 * one and two threads), folded parsing, format auto-detection, folded output
 * re-read (also after merging and scaling), and the SVG layout (plain,
 * inverted, differential). It must never crash, leak or read out of bounds
 * (built with ASan/UBSan by build.sh). Seeds: tests/fuzz/corpus/fold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "pm.h"

int luaopen_pm_fold(lua_State *L);

static lua_State *L;

static const char *SCRIPT =
  "local c, data, flags = ...\n"
  "local o = { pid = flags % 2 == 1, tid = flags % 4 >= 2, kernel = flags % 8 >= 4, jit = flags % 16 >= 8,\n"
  "            all = flags % 32 >= 16, addrs = flags % 64 >= 32, threads = flags % 128 >= 64 and 2 or 1 }\n"
  "local p = c.new()\n"
  "local st = p:add_perf_script(data, o)\n"
  "assert(st and st.bad >= 0)\n"
  "local q = c.new()\n"
  "q:add_folded(data, {})\n"
  "local again = c.new()\n"
  "local s2 = again:add_folded(p:folded(), { strict = true })\n"
  "assert(s2, 'folded output must re-read cleanly')\n"
  "assert(again:total() == p:total())\n"
  "local strict = c.new()\n"
  "strict:add_perf_script(data, { strict = true })\n"
  "q:merge(p)\n"
  "q:merge(q, flags % 3 + 0.5)\n"
  "local merged = c.new()\n"
  "assert(merged:add_folded(q:folded(), { strict = true }), 'merged output must re-read cleanly')\n"
  "merged:close()\n"
  "local kind = { root = { 200, 200, 200 }, rules = { { kinds = 'k', r = { 225, 30, 1 }, g = { 160, 50, 2 },\n"
  "  b = { 0, 40, 3 } }, { contains = 'a', r = { 0, 40, 1 }, g = { 90, 90, 2 }, b = { 190, 65, 3 } },\n"
  "  { r = { 205, 50, 3 }, g = { 40, 90, 1 }, b = { 30, 50, 2 } } } }\n"
  "local diff = { root = { 200, 200, 200 }, diff = { grow = { 255, 45, 45 }, shrink = { 45, 45, 255 }, fade = 210 } }\n"
  "local svg = q:svg_frames({ minwidth = flags % 3, inverted = flags % 5 == 0, palette = kind })\n"
  "q:svg_frames({ palette = diff, before = p, minwidth = 0 })\n"
  "local auto = c.new()\n"
  "auto:add_auto(data, {})\n"
  "p:close(); q:close(); again:close(); strict:close(); auto:close()\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
  }
  if (luaL_loadstring(L, SCRIPT))
    abort();
  lua_pushcfunction(L, luaopen_pm_fold);
  lua_call(L, 0, 1);
  lua_pushlstring(L, (const char *)data, size);
  lua_pushnumber(L, size ? data[0] : 0);
  if (lua_pcall(L, 3, 0, 0)) {
    /* out-of-memory is the only error the C side may raise */
    const char *msg = lua_tostring(L, -1);
    if (!msg || !strstr(msg, "out of memory")) {
      fprintf(stderr, "fuzz: %s\n", msg ? msg : "?");
      abort();
    }
    lua_pop(L, 1);
  }
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
