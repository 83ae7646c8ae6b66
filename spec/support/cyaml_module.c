/*
 * spec/support/cyaml_module.c: "tollgate.cyaml" as a loadable Lua C module,
 * for the unit specs that run in plain busted (no gateway binary).
 * spec/support/unit.lua builds it with runtime/yamlcfg.c into
 * build/cyaml.so and loads it with package.loadlib; the gateway itself
 * registers the same functions in runtime/bridge.c.
 */
#include <lua.h>
#include <lauxlib.h>

#include "yamlcfg.h"

int luaopen_tollgate_cyaml(lua_State *L);

int luaopen_tollgate_cyaml(lua_State *L)
{
    lua_newtable(L);
    tg_yaml_register(L);
    return 1;
}
