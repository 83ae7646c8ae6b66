/*
 * genheap.c: the memory of a generation's Lua state (see genheap.h).
 */
#include <pthread.h>
#include <sys/mman.h>

#include "genheap.h"

#define RUN_SIZE ((size_t) 256 << 10)  /* a run: bump space, then blocks on free lists */
#define RUN_HEAD 16                   /* the run's link, keeping blocks 16-aligned */
#define POOL_KEEP ((size_t) 64 << 20) /* runs kept mapped between generations, at most */
#define SMALL_MAX 1024                /* 16-byte steps up to here: classes 1..64 */
#define MEDIUM_MAX 32768              /* four classes a doubling up to here: 65..84 */
#define NCLASS 85

typedef struct run {
    struct run *next;
} run_t;

struct tg_genheap {
    void *free[NCLASS]; /* freed blocks of each class, linked through their first word */
    char *cur, *end;    /* what is left of the newest run */
    run_t *runs;        /* every run of this heap */
    int closing;        /* its state is being closed: blocks need not be freed one by one */
};

/* Runs of closed generations, still mapped and faulted in. A heap is one
 * thread's, but the pool is the process's: a worker builds a generation in
 * a thread while its loop closes old ones. */
static run_t *pool;
static size_t pooled;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* The class of an n-byte block (0 < n <= MEDIUM_MAX) and its real size. */
static inline unsigned size_class(size_t n, size_t *size)
{
    if (n <= SMALL_MAX) {
        unsigned c = (unsigned) ((n + 15) >> 4);
        *size = (size_t) c << 4;
        return c;
    }
    unsigned lg = 63 - (unsigned) __builtin_clzll((unsigned long long) (n - 1)); /* 10..14 */
    size_t base = (size_t) 1 << lg, step = base >> 2;
    unsigned idx = (unsigned) ((n - 1 - base) / step); /* 0..3 */
    *size = base + (idx + 1) * step;
    return 65 + (lg - 10) * 4 + idx;
}

/* A new run for h; the old one's tail is cut into blocks for the free lists. */
static int heap_grow(tg_genheap_t *h)
{
    size_t left = (size_t) (h->end - h->cur);
    while (left >= 16) {
        size_t s = left < SMALL_MAX ? left & ~(size_t) 15 : SMALL_MAX;
        *(void **) h->cur = h->free[s >> 4];
        h->free[s >> 4] = h->cur;
        h->cur += s;
        left -= s;
    }
    pthread_mutex_lock(&pool_lock);
    run_t *r = pool;
    if (r != NULL) {
        pool = r->next;
        pooled -= RUN_SIZE;
    }
    pthread_mutex_unlock(&pool_lock);
    if (r == NULL) {
        void *p = mmap(NULL, RUN_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        r = p;
    }
    r->next = h->runs;
    h->runs = r;
    h->cur = (char *) r + RUN_HEAD;
    h->end = (char *) r + RUN_SIZE;
    return 0;
}

static void *heap_get(tg_genheap_t *h, size_t n)
{
    if (n > MEDIUM_MAX)
        return malloc(n);
    size_t size;
    unsigned c = size_class(n, &size);
    void *p = h->free[c];
    if (p != NULL) {
        h->free[c] = *(void **) p;
        return p;
    }
    if ((size_t) (h->end - h->cur) < size && heap_grow(h) != 0)
        return NULL;
    p = h->cur;
    h->cur += size;
    return p;
}

static void heap_put(tg_genheap_t *h, void *p, size_t n)
{
    if (n > MEDIUM_MAX) {
        free(p);
        return;
    }
    size_t size;
    unsigned c = size_class(n, &size);
    *(void **) p = h->free[c];
    h->free[c] = p;
}

void *tg_genheap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    tg_genheap_t *h = ud;
    if (nsize == 0) {
        if (ptr != NULL && (!h->closing || osize > MEDIUM_MAX))
            heap_put(h, ptr, osize);
        return NULL;
    }
    if (ptr == NULL)
        return heap_get(h, nsize);
    if (osize > MEDIUM_MAX && nsize > MEDIUM_MAX)
        return realloc(ptr, nsize);
    if (osize <= MEDIUM_MAX && nsize <= MEDIUM_MAX) {
        size_t a, b;
        if (size_class(osize, &a) == size_class(nsize, &b))
            return ptr;
    }
    void *p = heap_get(h, nsize);
    if (p == NULL)
        return NULL; /* Lua's memory error; ptr stays valid */
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    heap_put(h, ptr, osize);
    return p;
}

tg_genheap_t *tg_genheap_new(void)
{
    return tg_calloc(1, sizeof(tg_genheap_t));
}

void tg_genheap_closing(tg_genheap_t *h)
{
    if (h != NULL)
        h->closing = 1;
}

void tg_genheap_free(tg_genheap_t *h)
{
    if (h == NULL)
        return;
    run_t *r = h->runs, *unmap = NULL;
    pthread_mutex_lock(&pool_lock);
    while (r != NULL) {
        run_t *next = r->next;
        if (pooled + RUN_SIZE <= POOL_KEEP) {
            r->next = pool;
            pool = r;
            pooled += RUN_SIZE;
        } else {
            r->next = unmap;
            unmap = r;
        }
        r = next;
    }
    pthread_mutex_unlock(&pool_lock);
    for (; unmap != NULL; unmap = r) {
        r = unmap->next;
        munmap(unmap, RUN_SIZE);
    }
    free(h);
}

size_t tg_genheap_pooled(void)
{
    pthread_mutex_lock(&pool_lock);
    size_t n = pooled;
    pthread_mutex_unlock(&pool_lock);
    return n;
}

void tg_genheap_trim(void)
{
    pthread_mutex_lock(&pool_lock);
    run_t *r = pool;
    pool = NULL;
    pooled = 0;
    pthread_mutex_unlock(&pool_lock);
    while (r != NULL) {
        run_t *next = r->next;
        munmap(r, RUN_SIZE);
        r = next;
    }
}
