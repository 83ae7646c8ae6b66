/*
 * arena.h: a per-request allocator. Everything a request allocates for its
 * own lifetime (header edits, the request target for the upstream, small
 * strings handed over from Lua) comes from here and is freed at once when
 * the request ends. Allocation never fails (aborts on OOM).
 */
#ifndef TG_ARENA_H
#define TG_ARENA_H

#include "tg.h"

typedef struct tg_arena_block tg_arena_block_t;

typedef struct tg_arena {
    tg_arena_block_t *blocks; /* newest first; NULL until the first alloc */
    char *cur;                /* next free byte in blocks */
    char *end;                /* end of blocks' usable space */
} tg_arena_t;

void *tg_arena_alloc(tg_arena_t *a, size_t size);
char *tg_arena_strndup(tg_arena_t *a, const char *s, size_t len);
/* Frees every block but keeps nothing: an idle connection holds no memory. */
void tg_arena_free(tg_arena_t *a);

#endif
