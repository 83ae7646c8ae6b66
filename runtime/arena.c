/*
 * arena.c: bump allocation in 4 KB blocks; large requests get their own.
 */
#include "arena.h"

#define BLOCK_SIZE 4096

struct tg_arena_block {
    tg_arena_block_t *next;
    size_t size;
    /* data follows, aligned as max_align_t */
    max_align_t data[];
};

void *tg_arena_alloc(tg_arena_t *a, size_t size)
{
    size = (size + 15) & ~(size_t) 15;
    if ((size_t) (a->end - a->cur) < size || a->cur == NULL) {
        size_t bsize = size > BLOCK_SIZE / 2 ? size : BLOCK_SIZE - sizeof(tg_arena_block_t);
        tg_arena_block_t *b = tg_malloc(sizeof(*b) + bsize);
        b->size = bsize;
        if (size > BLOCK_SIZE / 2 && a->blocks != NULL) {
            /* A big allocation gets a block of its own behind the current
             * one, so the rest of the current block stays usable. */
            b->next = a->blocks->next;
            a->blocks->next = b;
            return b->data;
        }
        b->next = a->blocks;
        a->blocks = b;
        a->cur = (char *) b->data;
        a->end = a->cur + bsize;
    }
    void *p = a->cur;
    a->cur += size;
    return p;
}

char *tg_arena_strndup(tg_arena_t *a, const char *s, size_t len)
{
    char *d = tg_arena_alloc(a, len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void tg_arena_free(tg_arena_t *a)
{
    tg_arena_block_t *b = a->blocks;
    while (b) {
        tg_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    a->blocks = NULL;
    a->cur = a->end = NULL;
}
