/*
 * rxcache.c: compiled regular expressions shared by a process's Lua
 * states (see rxcache.h). A hash of entries by key, and one by code.
 */
#include <pthread.h>

#include "rxcache.h"

#define NBUCKETS 4096

typedef struct rx {
    struct rx *next_key, *next_code;
    void *code;
    int users;
    int jitted;
    size_t len;
    char key[];
} rx_t;

static rx_t *by_key[NBUCKETS], *by_code[NBUCKETS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static size_t hash_key(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char) s[i]) * 1099511628211ULL;
    return (size_t) (h ^ (h >> 29)) & (NBUCKETS - 1);
}

static size_t hash_code(const void *code)
{
    uint64_t h = (uint64_t) (uintptr_t) code * 11400714819323198485ULL;
    return (size_t) (h >> 52) & (NBUCKETS - 1);
}

static rx_t *find_code(void *code)
{
    rx_t *e = by_code[hash_code(code)];
    while (e != NULL && e->code != code)
        e = e->next_code;
    return e;
}

TG_EXPORT void *tg_rx_find(const char *key, size_t len)
{
    void *code = NULL;
    pthread_mutex_lock(&lock);
    for (rx_t *e = by_key[hash_key(key, len)]; e != NULL; e = e->next_key) {
        if (e->len == len && memcmp(e->key, key, len) == 0) {
            e->users++;
            code = e->code;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return code;
}

TG_EXPORT void *tg_rx_add(const char *key, size_t len, void *code)
{
    size_t b = hash_key(key, len);
    pthread_mutex_lock(&lock);
    for (rx_t *e = by_key[b]; e != NULL; e = e->next_key) {
        if (e->len == len && memcmp(e->key, key, len) == 0) {
            e->users++;
            void *kept = e->code;
            pthread_mutex_unlock(&lock);
            return kept;
        }
    }
    rx_t *e = tg_malloc(sizeof(*e) + len);
    memcpy(e->key, key, len);
    e->len = len;
    e->code = code;
    e->users = 1;
    e->jitted = 0;
    e->next_key = by_key[b];
    by_key[b] = e;
    size_t c = hash_code(code);
    e->next_code = by_code[c];
    by_code[c] = e;
    pthread_mutex_unlock(&lock);
    return code;
}

TG_EXPORT int tg_rx_release(void *code)
{
    int last = 0;
    pthread_mutex_lock(&lock);
    rx_t *e = find_code(code);
    if (e == NULL) {
        last = 1; /* not kept: its owner frees it */
    } else if (--e->users == 0) {
        rx_t **pp = &by_key[hash_key(e->key, e->len)];
        while (*pp != e)
            pp = &(*pp)->next_key;
        *pp = e->next_key;
        pp = &by_code[hash_code(code)];
        while (*pp != e)
            pp = &(*pp)->next_code;
        *pp = e->next_code;
        free(e);
        last = 1;
    }
    pthread_mutex_unlock(&lock);
    return last;
}

TG_EXPORT int tg_rx_jit(void *code, tg_rx_jit_fn compile, uint32_t options)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    rx_t *e = find_code(code);
    if (e == NULL || !e->jitted) {
        rc = compile(code, options);
        if (e != NULL)
            e->jitted = 1;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}
