/*
 * fuzz_lua.h: a LuaJIT state for the targets that fuzz Lua code (config,
 * template), set up by the gateway's own tg_lua_open (runtime/bridge.c:
 * package.path to lua/, "tollgate.cyaml" registered), and
 * a harness function in it that each input is handed to.
 *
 * One difference: the state allocates with malloc (lua_newstate with an
 * allocator; LuaJIT's GC64 mode allows it) instead of LuaJIT's own mmap
 * arena, so ASan sees C code overrun Lua strings, and LeakSanitizer scans
 * the Lua heap: memory only a Lua object points to (a PCRE2 pattern, a JWT
 * key, a lua-cjson buffer) is not taken for a leak. It is closed at exit.
 *
 * The state is kept across inputs (building it costs milliseconds); a
 * little garbage is collected after each one. What the fuzzed code could
 * do to the machine is taken away: no processes, no exits, no files
 * written, removed or renamed (a fuzzed config may name any directory as
 * policyPaths, and any .lua file there would be loaded as a policy).
 *
 * A Lua error that escapes the harness function is a finding: the target
 * prints it with a traceback and aborts.
 */
#ifndef TG_FUZZ_LUA_H
#define TG_FUZZ_LUA_H

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>

#include "bridge.h"

#ifndef TG_FUZZ_HOME
#define TG_FUZZ_HOME "." /* the Makefile passes the repository */
#endif

/* Blocks the Lua state allocates: LuaJIT (GC64) keeps its references to
 * them as tagged values, which LeakSanitizer does not recognise as
 * pointers, so every live Lua object would be taken for a leak. Suppressed,
 * they count as reachable, and so does what they point to; what is left is
 * C memory nothing points to. (Set in the binary: no LSAN_OPTIONS needed.) */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:fuzz_lua_alloc\n";
}

static const char FUZZ_SANDBOX[] =
    "local function refused(what) return function() error(what .. ': not while fuzzing', 2) end end\n"
    "os.execute = refused('os.execute')\n"
    "os.exit = refused('os.exit')\n"
    "os.remove = refused('os.remove')\n"
    "os.rename = refused('os.rename')\n"
    "os.tmpname = refused('os.tmpname')\n"
    "io.popen = refused('io.popen')\n"
    "io.output = refused('io.output')\n"
    "local open = io.open\n"
    "io.open = function(path, mode)\n"
    "  if mode ~= nil and mode ~= 'r' and mode ~= 'rb' then return nil, 'read-only while fuzzing' end\n"
    "  return open(path, mode)\n"
    "end\n";

/* Lua coverage for libFuzzer: the C code it instruments is a small part of
 * what these targets run, so a line hook feeds (previous line, line) pairs
 * of Lua code into libFuzzer's extra counters, and inputs that reach new
 * Lua code are kept as well. (Hooks keep LuaJIT in its interpreter.) */
#define FUZZ_LUA_COUNTERS (1 << 16)
__attribute__((used, section("__libfuzzer_extra_counters")))
uint8_t fuzz_lua_counters[FUZZ_LUA_COUNTERS];

static uintptr_t fuzz_lua_prev;

static void fuzz_lua_hook(lua_State *L, lua_Debug *ar)
{
    if (lua_getinfo(L, "S", ar) == 0)
        return;
    uintptr_t here = (uintptr_t) ar->source * 2654435761u + (uintptr_t) ar->currentline;
    uintptr_t i = (here ^ (fuzz_lua_prev >> 1)) & (FUZZ_LUA_COUNTERS - 1);
    fuzz_lua_prev = here;
    if (fuzz_lua_counters[i] != 255)
        fuzz_lua_counters[i]++;
}

static int fuzz_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

/* A state with the sandbox, and chunk (returning the harness function)
 * loaded; the function is kept in the registry under fuzz_ref. */
static int fuzz_ref = LUA_NOREF;

static void *fuzz_lua_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, nsize);
}

static lua_State *fuzz_L;

static void fuzz_lua_close(void)
{
    if (fuzz_L)
        lua_close(fuzz_L);
    fuzz_L = NULL;
}

static lua_State *fuzz_lua_new(const char *chunk, const char *name)
{
    const char *home = getenv("TOLLGATE_HOME");
    if (home == NULL || *home == '\0')
        home = TG_FUZZ_HOME;
    lua_State *L = lua_newstate(fuzz_lua_alloc, NULL);
    if (L == NULL) {
        fprintf(stderr, "fuzz harness: lua_newstate failed\n");
        abort();
    }
    tg_lua_open(L, home);
    fuzz_L = L;
    atexit(fuzz_lua_close);
    if (luaL_loadbuffer(L, FUZZ_SANDBOX, sizeof(FUZZ_SANDBOX) - 1, "=sandbox") != 0 ||
        lua_pcall(L, 0, 0, 0) != 0 ||
        luaL_loadbuffer(L, chunk, strlen(chunk), name) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        fprintf(stderr, "fuzz harness: %s\n", lua_tostring(L, -1));
        abort();
    }
    fuzz_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_sethook(L, fuzz_lua_hook, LUA_MASKLINE, 0);
    return L;
}

/* Calls the harness function with (input, mode); aborts on a Lua error. */
static void fuzz_lua_run(lua_State *L, const uint8_t *data, size_t size, int mode)
{
    int top = lua_gettop(L);
    fuzz_lua_prev = 0;
    lua_pushcfunction(L, fuzz_traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_ref);
    lua_pushlstring(L, (const char *) data, size);
    lua_pushinteger(L, mode);
    if (lua_pcall(L, 2, 0, top + 1) != 0) {
        fprintf(stderr, "fuzz: Lua error: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, top);
    lua_gc(L, LUA_GCSTEP, 64);
}

#endif
