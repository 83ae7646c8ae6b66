/*
 * buf.c: growable buffers with a small free list of TG_BUF_SIZE blocks.
 */
#include <stdarg.h>
#include <stdio.h>

#include "buf.h"

#define CACHE_MAX 256 /* free blocks kept per process: 4 MB at most */

static char *cache[CACHE_MAX];
static int ncache;

static void grow(tg_buf_t *b, size_t want)
{
    if (b->data == NULL && want <= TG_BUF_SIZE) {
        b->data = ncache ? cache[--ncache] : tg_malloc(TG_BUF_SIZE);
        b->cap = TG_BUF_SIZE;
        return;
    }
    size_t cap = b->cap ? b->cap : TG_BUF_SIZE;
    while (cap < want)
        cap *= 2;
    if (b->data != NULL && b->cap == TG_BUF_SIZE) {
        /* A cached block must not be realloc'd out from under the cache. */
        char *d = tg_malloc(cap);
        memcpy(d, b->data, b->len);
        if (ncache < CACHE_MAX)
            cache[ncache++] = b->data;
        else
            free(b->data);
        b->data = d;
    } else {
        b->data = tg_realloc(b->data, cap);
    }
    b->cap = cap;
}

void tg_buf_reserve(tg_buf_t *b, size_t need)
{
    if (b->len + need > b->cap)
        grow(b, b->len + need);
}

void tg_buf_append(tg_buf_t *b, const void *p, size_t n)
{
    tg_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void tg_buf_append_str(tg_buf_t *b, const char *s)
{
    tg_buf_append(b, s, strlen(s));
}

void tg_buf_printf(tg_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    tg_buf_reserve(b, 64);
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->data + b->len, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t) n < room) {
            b->len += (size_t) n;
            return;
        }
        tg_buf_reserve(b, (size_t) n + 1);
    }
}

void tg_buf_compact(tg_buf_t *b, size_t keep)
{
    if (b->pos == keep)
        return;
    size_t n = b->len - b->pos;
    if (n)
        memmove(b->data + keep, b->data + b->pos, n);
    b->pos = keep;
    b->len = keep + n;
}

void tg_buf_release(tg_buf_t *b)
{
    if (b->data) {
        if (b->cap == TG_BUF_SIZE && ncache < CACHE_MAX)
            cache[ncache++] = b->data;
        else
            free(b->data);
    }
    b->data = NULL;
    b->pos = b->len = b->cap = 0;
}

void tg_buf_drain_cache(void)
{
    while (ncache)
        free(cache[--ncache]);
}
