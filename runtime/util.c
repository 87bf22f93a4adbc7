/* Small helpers shared by the native modules. */
#include <string.h>

#include <lauxlib.h>

#include "pm.h"

int pm_push_errno(lua_State *L, const char *op, int err)
{
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", op, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

void pm_build_meta(lua_State *L, const char *name, const luaL_Reg *methods)
{
  luaL_newmetatable(L, name);  // [meta]
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  luaL_register(L, NULL, methods);
  lua_pop(L, 1);  // []
}
