/*
 * fuzz_config.c: the config loader, YAML to model to generation. The input
 * is a gateway.config.yml. Each one goes through:
 *
 *   1. the C YAML loader alone (tg_yaml_load_string, as tollgate.cyaml's
 *      load_string): it returns nil, err for any bad input and raises
 *      nothing;
 *   2. the whole load the gateway does at start, `tollgate -t` and reloads:
 *      tg_lua_load_config (runtime/bridge.c) on the input saved as a file,
 *      which runs tollgate.runtime's load (tollgate.config: ${VAR}
 *      substitution, cyaml, compile; tollgate.generation's build: settings,
 *      policies and their constructors, conditions, router) and reads the
 *      settings into C.
 *
 * A config error must come back as nil, err (a sentence naming file, line
 * and key). A finding is: a Lua error raised by config or generation code
 * (tollgate.runtime's load is wrapped to tell), or a Lua runtime error
 * caught by a pcall on the way and handed back as if it were the config's
 * fault ("x.lua:12: attempt to index..."); and, as everywhere, anything
 * ASan or UBSan sees, in the C loader or in bridge.c reading the settings.
 */
#include <unistd.h>

#include "fuzz_lua.h"
#include "settings.h"

static lua_State *L;
static char path[64];

/* The harness: step 1 (load_string on the input; errors must be strings,
 * returned) is the function it returns. For step 2 it wraps
 * tollgate.runtime's load, which bridge.c calls, to tell a raised error
 * from a returned one (the checks are in Lua, where libFuzzer does not see
 * the comparisons: it would learn to write the words they look for). */
static const char HARNESS[] =
    "local cyaml = require 'tollgate.cyaml'\n"
    "local runtime = require 'tollgate.runtime'\n"
    "local RUNTIME = { ': attempt to ', ': bad argument #', ': stack overflow',\n"
    "  ': table index is ', ': invalid value %(at index', ': not enough memory' }\n"
    "local function runtime_error(err)\n"
    "  local at = err:find('%.lua:%d+: ')\n"
    "  if not at then return false end\n"
    "  for _, w in ipairs(RUNTIME) do if err:find(w, at) then return true end end\n"
    "  return false\n"
    "end\n"
    "local load = runtime.load\n"
    "runtime.load = function(path, serve)\n"
    "  local ok, s, err, files = xpcall(load, debug.traceback, path, serve)\n"
    "  if not ok then\n"
    "    FUZZ_FINDING = 'a Lua error was raised while loading the config: ' .. tostring(s)\n"
    "    error(s, 0)\n"
    "  end\n"
    "  if s == nil then\n"
    "    if type(err) ~= 'string' or err == '' then\n"
    "      FUZZ_FINDING = 'the config was refused without a message'\n"
    "    elseif runtime_error(err) then\n"
    "      FUZZ_FINDING = 'a Lua runtime error came back as the config error: ' .. err\n"
    "    end\n"
    "  end\n"
    "  return s, err, files\n"
    "end\n"
    "return function(text)\n"
    "  local doc, marks = cyaml.load_string(text, 'alone.yml')\n"
    "  if doc == nil then\n"
    "    assert(type(marks) == 'string', 'load_string: the error is not a string')\n"
    "    assert(marks:find('^alone%.yml:%d+:%d+: '), 'load_string: error without a place: ' .. marks)\n"
    "  else\n"
    "    assert(type(marks) == 'table', 'load_string: no marks')\n"
    "  end\n"
    "end\n";

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    tg_log_level = TG_LOG_ERROR;
    L = fuzz_lua_new(HARNESS, "=fuzz_config");
    snprintf(path, sizeof(path), "/tmp/tollgate-fuzz-config-%d.yml", (int) getpid());
    atexit(remove_file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_lua_run(L, data, size, 0); /* resets the Lua coverage's previous line too */

    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        abort();
    }
    tg_settings_t s;
    const char *err = NULL;
    tg_settings_defaults(&s);
    int rc = tg_lua_load_config(L, path, &s, 0, &err);
    lua_getglobal(L, "FUZZ_FINDING");
    if (lua_isstring(L, -1)) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
    if (rc != TG_OK && (err == NULL || *err == '\0')) {
        fprintf(stderr, "fuzz: the config was refused without a message\n");
        abort();
    }
    if (rc == TG_OK && (s.nlisten < 0 || s.nlisten > TG_MAX_LISTEN)) {
        fprintf(stderr, "fuzz: %d listeners\n", s.nlisten);
        abort();
    }
    tg_settings_free(&s);
    lua_gc(L, LUA_GCSTEP, 256);
    return 0;
}
