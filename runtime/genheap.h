/*
 * genheap.h: the memory of a generation's Lua state (a lua_Alloc).
 *
 * A reload builds a whole Lua state (12 MB for 1,000 routes) and closes
 * the previous one. Over LuaJIT's own allocator each state maps fresh
 * pages and unmaps them when it closes, so every reload faulted in its
 * whole heap again: a quarter of a reload's CPU was the kernel's. Here a
 * state's blocks come from runs of pages that go back to a per-process
 * pool when it closes, and the next generation takes them without a
 * fault.
 *
 * Blocks up to 32 KB are in size classes (16-byte steps to 1 KB, then four
 * a doubling), cut from the state's current run; a freed block goes on its
 * class's free list, for the next block of that class. LuaJIT passes every
 * block's size when it frees or resizes it, so blocks carry no header.
 * Larger blocks are malloc's. A heap is used by one thread at a time (the
 * worker's build thread, then its loop); the pool is shared, under a lock.
 *
 * The pool keeps at most 64 MB; a worker empties it a minute after its
 * last reload, so a gateway that is not reloading holds no spare heap.
 */
#ifndef TG_GENHEAP_H
#define TG_GENHEAP_H

#include "tg.h"

typedef struct tg_genheap tg_genheap_t;

tg_genheap_t *tg_genheap_new(void);
/* Before lua_close: the blocks it frees one by one are left where they are
 * (only malloc's are freed), since tg_genheap_free takes back their runs. */
void tg_genheap_closing(tg_genheap_t *h);
/* After lua_close of the state that used it: its runs go back to the pool. */
void tg_genheap_free(tg_genheap_t *h);
/* lua_Alloc; ud is the tg_genheap_t. */
void *tg_genheap_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Bytes in runs the pool keeps mapped for the next generation. */
size_t tg_genheap_pooled(void);
/* Unmaps the pool (a worker calls it when reloads have stopped for a while). */
void tg_genheap_trim(void);

#endif
