/*
 * chunkcache.c: Lua files a config loads (modules, policy files), compiled
 * once per process while they are unchanged; cyaml.loadfile (registered by
 * yamlcfg.c) is tg_chunk_loadfile.
 */

/* fstat's st_mtim needs POSIX 2008; before every system header. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "chunkcache.h"

#include <lauxlib.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>


/* Every config load is a new Lua state, which loads the same modules and
 * policy files again: compiling their source is a tenth of a reload of
 * 1,000 routes, loading their bytecode a fraction of that.  A file's
 * bytecode is kept per process while the file is unchanged: same device,
 * inode, size, modification and change time.  A file changed in the last
 * two seconds is not kept (timestamps are coarser than writes: a quick
 * second edit of the same size could keep both times), so an edit always
 * takes effect at the next load.  The master's check runs in a thread:
 * the list is locked. */

#define CHUNK_SETTLED 2     /* seconds since a change before keeping it */

struct chunk {
    struct chunk *next;
    char *path;
    struct stat st;
    char *bc;
    size_t len;
};

static struct chunk *chunks;
static pthread_mutex_t chunks_lock = PTHREAD_MUTEX_INITIALIZER;

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
           a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
           a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

struct dump {
    char *p;
    size_t n, cap;
};

static int dump_write(lua_State *L, const void *p, size_t sz, void *ud)
{
    struct dump *d = ud;

    (void)L;
    if (d->cap - d->n < sz) {
        size_t cap = d->cap ? d->cap : 4096;
        char *np;
        while (cap - d->n < sz)
            cap *= 2;
        np = realloc(d->p, cap);
        if (!np)
            return 1;
        d->p = np;
        d->cap = cap;
    }
    memcpy(d->p + d->n, p, sz);
    d->n += sz;
    return 0;
}

/* Lua: loadfile(path) -> function | nil, err (Lua's loadfile, cached) */
int tg_chunk_loadfile(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    struct chunk *c;
    struct timespec now;
    struct dump d = { NULL, 0, 0 };
    int status;

    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        pthread_mutex_lock(&chunks_lock);
        for (c = chunks; c; c = c->next) {
            if (strcmp(c->path, path) == 0 && same_file(&c->st, &st)) {
                /* lua_load is protected: it returns, never raises */
                status = luaL_loadbuffer(L, c->bc, c->len, path);
                pthread_mutex_unlock(&chunks_lock);
                if (status == 0)
                    return 1;
                lua_pop(L, 1);
                break;
            }
        }
        if (!c)
            pthread_mutex_unlock(&chunks_lock);
    }
    if (luaL_loadfile(L, path) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    /* keep it, unless the file changed a moment ago (or is not a file) */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
        clock_gettime(CLOCK_REALTIME, &now) != 0 ||
        now.tv_sec - st.st_mtim.tv_sec < CHUNK_SETTLED ||
        now.tv_sec - st.st_ctim.tv_sec < CHUNK_SETTLED)
        return 1;
    if (lua_dump(L, dump_write, &d) != 0) {
        free(d.p);
        return 1;
    }
    pthread_mutex_lock(&chunks_lock);
    for (c = chunks; c; c = c->next)
        if (strcmp(c->path, path) == 0)
            break;
    if (!c && (c = calloc(1, sizeof *c)) != NULL) {
        c->path = strdup(path);
        if (!c->path) {
            free(c);
            c = NULL;
        } else {
            c->next = chunks;
            chunks = c;
        }
    }
    if (c) {
        free(c->bc);
        c->bc = d.p;
        c->len = d.n;
        c->st = st;
        d.p = NULL;
    }
    pthread_mutex_unlock(&chunks_lock);
    free(d.p);
    return 1;
}
