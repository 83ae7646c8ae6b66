/*
 * bridge.c: the worker's LuaJIT state and the request coroutines.
 *
 * A coroutine runs tollgate.runtime's request loop: it receives a request
 * pointer, handles it (yielding codes from enum tg_yield), and yields DONE
 * when it is ready for the next request. Coroutines are pooled; one that
 * failed or was abandoned mid-request is dropped for the GC to collect.
 * Every resume ends by handing the yield code to the connection, and the
 * bridge touches nothing after that, since the connection may have moved
 * on to the next request (and this coroutine with it).
 *
 * Generations: each config load (start-up, every reload) gets its own Lua
 * state with its own coroutines. A request stays in the generation it
 * started in; new requests go to the current one. A replaced generation is
 * closed (lua_close: everything it allocated goes) once its last request
 * is done, at the end of a loop turn.
 */
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "bridge.h"
#include "conn.h"
#include "genheap.h"
#include "task.h"
#include "worker.h"
#include "yamlcfg.h"

#ifndef TG_DATADIR
#define TG_DATADIR "/usr/local/share/tollgate"
#endif

typedef struct slot {
    lua_State *co;   /* NULL: empty, a coroutine is made on next use */
    int ref;         /* registry reference anchoring co */
} slot_t;

struct tg_gen {
    lua_State *L;
    tg_genheap_t *heap;  /* its memory (NULL: LuaJIT's own allocator) */
    int main_ref;        /* tollgate.runtime.main */
    slot_t *slots;
    int nslots, capslots;
    int *freelist;
    int nfree;
    int active;          /* requests with a coroutine in this generation */
    unsigned id;
    tg_gen_t *next;      /* the retired list */
};

static tg_gen_t *current;
static tg_gen_t *retired;
static unsigned gen_ids;
/* A worker builds a new generation in a thread of its own while its loop
 * serves (worker.c), so what a load sets is the loading thread's. */
static __thread tg_gen_t *loading;        /* while its config loads (constructors may start timers) */
static __thread int main_ref = LUA_NOREF; /* set by tg_lua_load_config(serve) */
static __thread char errbuf[4096];

/* ---- the state ------------------------------------------------------------ */

/* Where lua/ and policies/ live: $TOLLGATE_HOME, the build tree the binary
 * sits in, or the install prefix. */
static const char *home_dir(void)
{
    static char home[PATH_MAX];
    const char *env = getenv("TOLLGATE_HOME");
    if (env && *env)
        return env;
    ssize_t n = readlink("/proc/self/exe", home, sizeof(home) - 32);
    if (n > 0) {
        home[n] = '\0';
        char *slash = strrchr(home, '/');
        if (slash) {
            *slash = '\0';
            slash = strrchr(home, '/');
            if (slash) {
                *slash = '\0';
                char probe[PATH_MAX + 40];
                snprintf(probe, sizeof(probe), "%s/lua/tollgate/runtime.lua", home);
                if (access(probe, R_OK) == 0)
                    return home;
            }
        }
    }
    return TG_DATADIR;
}

void tg_lua_open(lua_State *L, const char *home)
{
    luaL_openlibs(L);
    if (home == NULL)
        home = home_dir();
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", home, home);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");

    /* The C YAML loader, as module "tollgate.cyaml". */
    lua_getfield(L, -1, "loaded");
    lua_newtable(L);
    tg_yaml_register(L);
    lua_pushstring(L, home);
    lua_setfield(L, -2, "home");
    lua_setfield(L, -2, "tollgate.cyaml");
    lua_pop(L, 2);
}

lua_State *tg_lua_new(void)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        tg_log_error("cannot create a Lua state (out of memory)");
        abort();
    }
    tg_lua_open(L, NULL);
    return L;
}

static int panic(lua_State *L)
{
    tg_log_error("unprotected Lua error: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

lua_State *tg_lua_new_alloc(lua_Alloc f, void *ud)
{
    lua_State *L = lua_newstate(f, ud);
    if (L == NULL) /* a LuaJIT without GC64 takes no allocator on 64-bit */
        return NULL;
    lua_atpanic(L, panic);
    tg_lua_open(L, NULL);
    return L;
}

void tg_lua_close(lua_State *L)
{
    lua_close(L);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = "(error object is not a string)";
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static double num_field(lua_State *L, int idx, const char *name, double dflt)
{
    lua_getfield(L, idx, name);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

static char *str_field(lua_State *L, int idx, const char *name, const char *dflt)
{
    lua_getfield(L, idx, name);
    const char *v = lua_isstring(L, -1) ? lua_tostring(L, -1) : dflt;
    char *copy = v ? tg_strndup(v, strlen(v)) : NULL;
    lua_pop(L, 1);
    return copy;
}

/* A list of file names at idx (anything else: none) into s->files. */
static void read_files(lua_State *L, int idx, tg_settings_t *s)
{
    if (!lua_istable(L, idx))
        return;
    int n = (int) lua_objlen(L, idx);
    s->files = tg_calloc((size_t) n + 1, sizeof(char *));
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (lua_isstring(L, -1))
            s->files[s->nfiles++] = tg_strndup(lua_tostring(L, -1), lua_objlen(L, -1));
        lua_pop(L, 1);
    }
}

static void read_settings(lua_State *L, int idx, tg_settings_t *s)
{
    tg_settings_free(s);
    tg_settings_defaults(s);
    s->workers = (int) num_field(L, idx, "workers", s->workers);
    s->head_timeout = num_field(L, idx, "head_timeout", s->head_timeout);
    s->body_timeout = num_field(L, idx, "body_timeout", s->body_timeout);
    s->keepalive_timeout = num_field(L, idx, "keepalive_timeout", s->keepalive_timeout);
    s->send_timeout = num_field(L, idx, "send_timeout", s->send_timeout);
    s->tunnel_timeout = num_field(L, idx, "tunnel_timeout", s->tunnel_timeout);
    s->shutdown_timeout = num_field(L, idx, "shutdown_timeout", s->shutdown_timeout);
    s->reload_timeout = num_field(L, idx, "reload_timeout", s->reload_timeout);
    s->max_head_size = (size_t) num_field(L, idx, "max_head_size", (double) s->max_head_size);
    s->max_body_size = (uint64_t) num_field(L, idx, "max_body_size", (double) s->max_body_size);
    s->max_buffered_body =
        (size_t) num_field(L, idx, "max_buffered_body", (double) s->max_buffered_body);
    s->max_connections = (int) num_field(L, idx, "max_connections", s->max_connections);
    s->max_keepalive_requests =
        (int) num_field(L, idx, "max_keepalive_requests", s->max_keepalive_requests);
    s->upstream_connect_timeout =
        num_field(L, idx, "upstream_connect_timeout", s->upstream_connect_timeout);
    s->upstream_timeout = num_field(L, idx, "upstream_timeout", s->upstream_timeout);
    s->upstream_idle_timeout = num_field(L, idx, "upstream_idle_timeout", s->upstream_idle_timeout);
    s->upstream_keepalive = (int) num_field(L, idx, "upstream_keepalive", s->upstream_keepalive);
    s->log_level = (int) num_field(L, idx, "log_level", s->log_level);
    s->shared_memory = (size_t) num_field(L, idx, "shared_memory", (double) s->shared_memory);
    free(s->access_log);
    s->access_log = str_field(L, idx, "access_log", "stdout");
    s->pid_file = str_field(L, idx, "pid_file", NULL);
    lua_getfield(L, idx, "watch");
    s->watch = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : 1;
    lua_pop(L, 1);
    lua_getfield(L, idx, "tls");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        tg_tls_config_t *c = &s->tls;
        lua_getfield(L, t, "request_cert");
        c->request_cert = lua_toboolean(L, -1);
        lua_getfield(L, t, "reject_unauthorized");
        c->reject_unauthorized = lua_toboolean(L, -1);
        lua_getfield(L, t, "certs");
        int n = lua_istable(L, -1) ? (int) lua_objlen(L, -1) : 0;
        c->certs = tg_calloc((size_t) n + 1, sizeof(*c->certs));
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            tg_tls_cert_t *cert = &c->certs[c->ncerts++];
            cert->pattern = str_field(L, -1, "pattern", "default");
            cert->key = str_field(L, -1, "key", "");
            cert->cert = str_field(L, -1, "cert", "");
            lua_getfield(L, -1, "ca");
            int nca = lua_istable(L, -1) ? (int) lua_objlen(L, -1) : 0;
            cert->ca = tg_calloc((size_t) nca + 1, sizeof(char *));
            for (int k = 1; k <= nca; k++) {
                lua_rawgeti(L, -1, k);
                cert->ca[cert->nca++] = tg_strndup(lua_tostring(L, -1), lua_objlen(L, -1));
                lua_pop(L, 1);
            }
            lua_pop(L, 2);
        }
        lua_settop(L, t);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "files");
    read_files(L, lua_gettop(L), s);
    lua_pop(L, 1);

    lua_getfield(L, idx, "listen");
    if (lua_istable(L, -1)) {
        int n = (int) lua_objlen(L, -1);
        for (int i = 1; i <= n && s->nlisten < TG_MAX_LISTEN; i++) {
            lua_rawgeti(L, -1, i);
            tg_listen_t *l = &s->listen[s->nlisten++];
            l->host = str_field(L, -1, "host", "0.0.0.0");
            l->port = (int) num_field(L, -1, "port", 8080);
            l->fd = -1;
            lua_getfield(L, -1, "tls");
            l->tls = lua_toboolean(L, -1);
            lua_pop(L, 1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

static int load_config(lua_State *L, const char *path, tg_settings_t *s, int serve,
                       const char **err)
{
    int top = lua_gettop(L);
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tollgate.runtime");
    if (lua_pcall(L, 1, 1, top + 1) != 0)
        goto failed;
    lua_getfield(L, -1, "load");
    lua_pushstring(L, path);
    lua_pushboolean(L, serve);
    if (lua_pcall(L, 2, 3, top + 1) != 0)
        goto failed;
    if (lua_isnil(L, -3)) {
        /* An expected failure: a config error, already a clear sentence;
         * the files it read still matter to the master's watching. */
        snprintf(errbuf, sizeof(errbuf), "%s", lua_tostring(L, -2));
        *err = errbuf;
        read_files(L, lua_gettop(L), s);
        lua_settop(L, top);
        return TG_ERROR;
    }
    lua_pop(L, 2);
    read_settings(L, lua_gettop(L), s);
    if (s->nlisten == 0) { /* start-up, -t and every reload refuse it alike */
        snprintf(errbuf, sizeof(errbuf), "%s has no http or https section: nothing to listen on",
                 path);
        *err = errbuf;
        lua_settop(L, top);
        return TG_ERROR;
    }
    if (s->tls.ncerts) {
        /* certificates and keys must load and match: -t and reloads check it */
        char msg[600];
        tg_tls_server_t *srv = tg_tls_server_new(&s->tls, msg, sizeof(msg));
        if (srv == NULL) {
            snprintf(errbuf, sizeof(errbuf), "%s: %s", path, msg);
            *err = errbuf;
            lua_settop(L, top);
            return TG_ERROR;
        }
        if (serve) /* the worker serves with them (made here, in its build thread) */
            s->tls_server = srv;
        else
            tg_tls_server_free(srv);
    }
    if (serve) {
        lua_getfield(L, -2, "main"); /* the request loop of tollgate.runtime */
        if (main_ref != LUA_NOREF)
            luaL_unref(L, LUA_REGISTRYINDEX, main_ref);
        main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_settop(L, top);
    return TG_OK;

failed:
    snprintf(errbuf, sizeof(errbuf), "%s", lua_tostring(L, -1));
    *err = errbuf;
    lua_settop(L, top);
    return TG_ERROR;
}

/* A config load builds a whole state from nothing, as one burst: with the
 * collector running, the heap's growth from zero sets off cycle after cycle
 * over tables that all stay alive (half the load's time for 1,000 routes).
 * So it is stopped for the load, and restarted with its next cycle due
 * once the heap has grown by the pause (LuaJIT's -1), as after a full
 * cycle: a cycle started at once would only mark what the load just made
 * (7 % of what a reload of 1,000 routes costs a worker, counted in
 * instructions, paid while requests are served).
 *
 * (Turning the JIT off for the load costs more than it saves: 25 % more
 * instructions in a worker's reload.) */
int tg_lua_load_config(lua_State *L, const char *path, tg_settings_t *s, int serve,
                       const char **err)
{
    lua_gc(L, LUA_GCSTOP, 0);
    int rc = load_config(L, path, s, serve, err);
    lua_gc(L, LUA_GCRESTART, -1);
    return rc;
}

/* ---- generations ------------------------------------------------------------ */

/* A generation's Lua state and memory go (any thread: its finalizers
 * only release what is shared under locks, such as cached regexes). */
static void gen_close(tg_gen_t *g)
{
    double t0 = ev_time();
    unsigned id = g->id;
    tg_genheap_closing(g->heap);
    lua_close(g->L);
    tg_genheap_free(g->heap);
    free(g->slots);
    free(g->freelist);
    free(g);
    if (id)
        tg_log_debug("generation %u closed in %.1f ms", id, (ev_time() - t0) * 1000);
}

/* ---- closing retired generations beside the loop -------------------------------
 *
 * Closing a generation walks every object of its state (a few ms for 1,000
 * routes). A worker hands the generations it is done with (retired ones
 * whose last request has ended, and dropped builds) to a closer thread,
 * ten nice levels below its loop, as it does with builds (worker.c), so
 * neither half of a reload stalls requests. */

static pthread_mutex_t close_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t close_wake = PTHREAD_COND_INITIALIZER;
static tg_gen_t *to_close;    /* waiting for the closer, linked through next */
static int closer_on;         /* tg_lua_close_beside: the closer thread runs */
static int closer_stop;
static pthread_t closer;

static void *closer_main(void *arg)
{
    tg_unused(arg);
    pthread_mutex_lock(&close_lock);
    for (;;) {
        while (to_close == NULL && !closer_stop)
            pthread_cond_wait(&close_wake, &close_lock);
        tg_gen_t *g = to_close;
        if (g == NULL)
            break; /* stopping, and nothing left */
        to_close = g->next;
        pthread_mutex_unlock(&close_lock);
        gen_close(g);
        pthread_mutex_lock(&close_lock);
    }
    pthread_mutex_unlock(&close_lock);
    return NULL;
}

void tg_lua_close_beside(void)
{
    if (closer_on)
        return;
    closer_stop = 0;
    closer_on = tg_thread_start(&closer, 0, 10, closer_main, NULL) == 0;
    if (!closer_on)
        tg_log_warn("cannot start a thread to close old configurations; the loop closes them");
}

/* Waits for the closer to close what it was given, and stops it. */
static void closer_end(void)
{
    if (!closer_on)
        return;
    pthread_mutex_lock(&close_lock);
    closer_stop = 1;
    pthread_cond_signal(&close_wake);
    pthread_mutex_unlock(&close_lock);
    pthread_join(closer, NULL);
    closer_on = 0;
}

/* A generation goes: its timers (the loop's if it served, else those
 * waiting for its commit), then its state, by the closer when it runs. */
static void gen_free(tg_gen_t *g)
{
    if (g->id)
        tg_timers_free_gen(g);
    else
        tg_timers_drop_gen(g);
    if (!closer_on) {
        gen_close(g);
        return;
    }
    pthread_mutex_lock(&close_lock);
    g->next = to_close;
    to_close = g;
    pthread_cond_signal(&close_wake);
    pthread_mutex_unlock(&close_lock);
}

/* A generation's state, over its own heap (genheap.h). */
static lua_State *gen_state(tg_gen_t *g)
{
    g->heap = tg_genheap_new();
    lua_State *L = tg_lua_new_alloc(tg_genheap_alloc, g->heap);
    if (L == NULL) {
        tg_genheap_free(g->heap);
        g->heap = NULL;
        return tg_lua_new();
    }
    return L;
}

tg_gen_t *tg_lua_generation_build(const char *path, tg_settings_t *s, const char **err)
{
    tg_gen_t *g = tg_calloc(1, sizeof(*g));
    lua_State *L = gen_state(g);

    g->L = L;
    tg_settings_defaults(s);
    main_ref = LUA_NOREF;
    loading = g;
    int rc = tg_lua_load_config(L, path, s, 1, err);
    loading = NULL;
    if (rc != TG_OK) {
        gen_free(g);
        return NULL;
    }
    g->main_ref = main_ref;
    return g;
}

void tg_lua_generation_commit(tg_gen_t *g)
{
    g->id = ++gen_ids;
    if (current) {
        tg_timers_stop_gen(current); /* its runs in progress finish */
        current->next = retired;
        retired = current;
    }
    current = g;
    tg_timers_start_gen(g);
}

void tg_lua_generation_discard(tg_gen_t *g)
{
    gen_free(g); /* no request ever ran in it; timers its constructors started go too */
}

int tg_lua_generation_load(const char *path, tg_settings_t *s, const char **err)
{
    tg_settings_t loaded;
    tg_gen_t *g = tg_lua_generation_build(path, &loaded, err);
    if (g == NULL) {
        tg_settings_free(&loaded);
        return TG_ERROR;
    }
    tg_lua_generation_commit(g);
    *s = loaded;
    return TG_OK;
}

tg_gen_t *tg_lua_loading_gen(void)
{
    return loading;
}

unsigned tg_lua_generation(void)
{
    return current ? current->id : 0;
}

void tg_lua_collect(void)
{
    tg_gen_t **pp = &retired;
    while (*pp) {
        tg_gen_t *g = *pp;
        if (g->active != 0) {
            pp = &g->next;
            continue;
        }
        *pp = g->next;
        gen_free(g);
    }
}

void tg_lua_shutdown(void)
{
    closer_end();
    while (retired) {
        tg_gen_t *g = retired;
        retired = g->next;
        gen_free(g);
    }
    if (current) {
        gen_free(current);
        current = NULL;
    }
}

/* ---- coroutines --------------------------------------------------------------- */

static int take_slot(tg_gen_t *g)
{
    int i;

    if (g->nfree) {
        i = g->freelist[--g->nfree];
    } else {
        if (g->nslots == g->capslots) {
            g->capslots = g->capslots ? g->capslots * 2 : 64;
            g->slots = tg_realloc(g->slots, (size_t) g->capslots * sizeof(*g->slots));
            g->freelist = tg_realloc(g->freelist, (size_t) g->capslots * sizeof(*g->freelist));
        }
        i = g->nslots++;
        g->slots[i].co = NULL;
    }
    if (g->slots[i].co == NULL) {
        lua_State *co = lua_newthread(g->L);
        g->slots[i].ref = luaL_ref(g->L, LUA_REGISTRYINDEX);
        g->slots[i].co = co;
        lua_rawgeti(g->L, LUA_REGISTRYINDEX, g->main_ref);
        lua_xmove(g->L, co, 1);
    }
    g->active++;
    return i;
}

/* The request's Lua work is over: its coroutine goes back to the pool
 * (drop: it failed or was cut short, so it is discarded). */
static void release_slot(tg_req_t *r, int drop)
{
    tg_gen_t *g = r->gen;
    int i = r->co;
    if (drop) {
        luaL_unref(g->L, LUA_REGISTRYINDEX, g->slots[i].ref);
        g->slots[i].co = NULL;
    }
    g->freelist[g->nfree++] = i;
    g->active--;
    r->co = -1;
    r->gen = NULL;
}

/* The request (or timer run) whose coroutine is running, for
 * tg_lua_current: the loop thread's (a constructor running in a build
 * thread has none). */
static __thread tg_req_t *running;

/* Lua takes its request from here rather than from the resume's arguments:
 * a light userdata cannot be cast to a pointer in compiled code, and the
 * trace of the request loop would abort on every request. */
TG_EXPORT tg_req_t *tg_lua_current(void)
{
    return running;
}

static void resume(tg_req_t *r, int nargs)
{
    lua_State *co = r->gen->slots[r->co].co;
    tg_req_t *outer = running;
    int code;

    r->lua = TG_LUA_RUNNING;
    running = r;
    int rc = lua_resume(co, nargs);
    running = outer;
    if (rc == LUA_YIELD) {
        code = (int) lua_tointeger(co, -1);
        lua_settop(co, 0);
        if (code == TG_YIELD_DONE)
            release_slot(r, 0);
    } else {
        /* Policy errors are caught in Lua; this is a framework error. */
        const char *msg = lua_tostring(co, -1);
        tg_log_error("request %s: Lua error: %s", r->id, msg ? msg : "(no message)");
        release_slot(r, 1);
        if (!r->resp_started) {
            r->error = "Lua error";
            tg_req_local_response(r, 500, "Internal Server Error");
        }
        code = TG_YIELD_DONE;
    }
    tg_conn_lua_yielded(r, code);
}

void tg_lua_start(tg_req_t *r)
{
    r->gen = current;
    r->co = take_slot(current);
    resume(r, 0);
}

void tg_lua_start_task(tg_req_t *r, tg_gen_t *gen, int id)
{
    r->gen = gen;
    r->co = take_slot(gen);
    lua_pushinteger(gen->slots[r->co].co, id);
    resume(r, 1);
}

void tg_lua_resume(tg_req_t *r, int arg)
{
    if (r->co < 0)
        return;
    lua_pushinteger(r->gen->slots[r->co].co, arg);
    resume(r, 1);
}

void tg_lua_log(tg_req_t *r)
{
    if (r->co < 0) {
        tg_conn_lua_yielded(r, TG_YIELD_DONE);
        return;
    }
    resume(r, 0);
}

void tg_lua_abandon(tg_req_t *r)
{
    ev_timer_stop(tg_worker.loop, &r->lua_timer);
    tg_call_cancel(r);
    if (r->co >= 0 && r->lua != TG_LUA_RUNNING)
        release_slot(r, 1);
    r->lua = TG_LUA_NONE;
}

/* ---- FFI: async operations ------------------------------------------------------ */

static void on_sleep(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_req_t *r = tg_container_of(w, tg_req_t, lua_timer);
    tg_unused(loop);
    tg_unused(revents);
    tg_lua_resume(r, 0);
}

TG_EXPORT int tg_req_sleep(tg_req_t *r, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    ev_timer_init(&r->lua_timer, on_sleep, seconds, 0);
    ev_timer_start(tg_worker.loop, &r->lua_timer);
    return TG_OK;
}

/* Unix time: the loop's time in a worker, the clock outside one (Lua
 * through libtollgate.so). */
TG_EXPORT double tg_now(void)
{
    return tg_worker.loop ? ev_now(tg_worker.loop) : ev_time();
}

TG_EXPORT int tg_worker_id(void)
{
    return tg_worker.id;
}

TG_EXPORT void tg_log_line(int level, const char *msg)
{
    tg_log(level, "%s", msg);
}
