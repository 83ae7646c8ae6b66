/*
 * buf.h: a growable byte buffer. Readers consume from `pos`, writers append
 * at `len`; `cap` is the allocation. Buffers of the common size are kept on
 * a per-process free list so that a connection can drop its buffers while
 * idle and get one back cheaply when bytes arrive.
 */
#ifndef TG_BUF_H
#define TG_BUF_H

#include "tg.h"

typedef struct tg_buf {
    char *data;       /* NULL while the buffer holds nothing */
    size_t pos;       /* first unconsumed byte */
    size_t len;       /* one past the last byte written */
    size_t cap;       /* bytes allocated at data */
} tg_buf_t;

#define TG_BUF_SIZE 16384 /* the size kept on the free list */

/* Makes sure `need` more bytes fit after len (allocating or growing). */
void tg_buf_reserve(tg_buf_t *b, size_t need);
void tg_buf_append(tg_buf_t *b, const void *p, size_t n);
void tg_buf_append_str(tg_buf_t *b, const char *s);
void tg_buf_printf(tg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Moves unconsumed bytes [pos, len) to `keep` (bytes before keep stay). */
void tg_buf_compact(tg_buf_t *b, size_t keep);
/* Gives the memory back (to the free list when it has the common size). */
void tg_buf_release(tg_buf_t *b);
/* Drops the content, keeping the memory. */
static inline void tg_buf_reset(tg_buf_t *b) { b->pos = b->len = 0; }
static inline size_t tg_buf_unread(const tg_buf_t *b) { return b->len - b->pos; }
/* Frees the free list (at exit, so leak checkers see a clean heap). */
void tg_buf_drain_cache(void);

#endif
