/*
 * bridge.h: the Lua side of the worker. One LuaJIT state per worker; one
 * coroutine per request, taken from a pool and given back when the request's
 * Lua work is done. Lua talks to C through FFI calls that only record
 * intentions on the request; after every resume the bridge reports the
 * yield code to the connection, which acts on it. So no C object is ever
 * freed under a running coroutine.
 */
#ifndef TG_BRIDGE_H
#define TG_BRIDGE_H

#include <lua.h>

#include "req.h"
#include "settings.h"

/* Yield codes from the request coroutine (also in lua/tollgate/core.lua). */
enum tg_yield {
    TG_YIELD_DONE = 0,     /* Lua is done with the request: send what it set */
    TG_YIELD_WAIT = 1,     /* an async operation was armed; resume later */
    TG_YIELD_PROXY = 2,    /* proxy to the upstream set by tg_req_proxy() */
    TG_YIELD_RESPOND = 3,  /* response is final; resume for the log phase at the end */
};

/* Creates a Lua state with the framework on its path. */
lua_State *tg_lua_new(void);
/* The same over the allocator f (ud its data), with a panic handler that
 * logs and aborts; NULL if LuaJIT takes no allocator (64-bit without GC64). */
lua_State *tg_lua_new_alloc(lua_Alloc f, void *ud);
/* What tg_lua_new does to a state made elsewhere (the fuzz targets use
 * their own allocator): standard libraries, package.path under home (NULL:
 * $TOLLGATE_HOME, the build tree, or the install prefix), tollgate.cyaml. */
void tg_lua_open(lua_State *L, const char *home);
/* Loads and validates the config; fills settings. On error returns TG_ERROR
 * with a message in err (the calling thread's buffer, until its next load:
 * a thread that ends copies it), settings untouched. When
 * `serve` is set the state is kept ready to handle requests. */
int tg_lua_load_config(lua_State *L, const char *path, tg_settings_t *s, int serve,
                       const char **err);
void tg_lua_close(lua_State *L);

/* Generations: loads the config into a new Lua state that serves new
 * requests from then on (the previous one finishes its requests and is
 * closed by tg_lua_collect). Fills s with the config's settings. On error
 * the current generation stays and err says why. */
typedef struct tg_gen tg_gen_t;
int tg_lua_generation_load(const char *path, tg_settings_t *s, const char **err);
/* The same in two steps, for a reload that looks at the settings before
 * the generation serves: build returns the new generation, or NULL (err
 * says why). Either way s holds what the config set (on failure, at
 * least the files it read), for the caller to tg_settings_free. Then
 * commit makes the generation current, or discard drops it. */
tg_gen_t *tg_lua_generation_build(const char *path, tg_settings_t *s, const char **err);
void tg_lua_generation_commit(tg_gen_t *g);
void tg_lua_generation_discard(tg_gen_t *g);
unsigned tg_lua_generation(void);    /* id of the current generation */
void tg_lua_collect(void);           /* closes retired generations with no requests */
/* From now on tg_lua_collect hands them to a thread that closes them beside
 * the loop (a worker's); tg_lua_shutdown waits for it. */
void tg_lua_close_beside(void);
void tg_lua_shutdown(void);
/* The generation being loaded (its policies' constructors may start timers). */
tg_gen_t *tg_lua_loading_gen(void);
/* Runs callback `id` of tollgate.timer in a coroutine of gen, for the
 * socketless request r (task.c). */
void tg_lua_start_task(tg_req_t *r, tg_gen_t *gen, int id);

/* Per request. */
void tg_lua_start(tg_req_t *r);                 /* route + access phase */
void tg_lua_resume(tg_req_t *r, int arg);       /* after WAIT/PROXY */
void tg_lua_log(tg_req_t *r);                   /* after RESPOND: log phase */
void tg_lua_abandon(tg_req_t *r);               /* the request is gone mid-coroutine */

#endif
