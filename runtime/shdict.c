/*
 * shdict.c: open addressing in fixed 256-byte slots, split into segments
 * that each have their own lock, in one MAP_SHARED anonymous mapping.
 *
 * A key longer than KEY_MAX is stored as its 128-bit hash (two independent
 * 64-bit hashes), so callers need not bound their keys. Lookups probe at
 * most PROBE slots from the home slot and stop at an empty one; deleted and
 * expired entries become tombstones so chains stay intact.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include "shdict.h"

#define SLOT_SIZE 256
#define KEY_MAX 64
#define PROBE 128 /* slots looked at from a key's home; a full window evicts */
#define SEGMENTS 64
#define MAGIC 0x74676470u /* "tgdp" */

enum { EMPTY = 0, USED = 1, DEAD = 2 };
enum { NUM = 0, STR = 1 };

typedef struct slot {
    uint64_t hash;
    double expires;            /* monotonic seconds; 0 = never */
    double num;
    uint8_t state;
    uint8_t type;
    uint8_t hashed_key;        /* the key is its 128-bit hash */
    uint8_t klen;
    uint16_t vlen;
    char key[KEY_MAX];
    char val[TG_SHDICT_VAL_MAX];
} slot_t;

_Static_assert(sizeof(slot_t) <= SLOT_SIZE, "slot too big");

typedef struct segment {
    pthread_mutex_t lock;
    uint64_t used;
    uint64_t evicted;
    char pad[64];
} segment_t;

typedef struct header {
    uint32_t magic;
    uint32_t nsegments;
    uint64_t per_segment;      /* slots per segment */
    segment_t segs[SEGMENTS];
} header_t;

static header_t *hdr;
static size_t mapped;
static double skew; /* seconds added to the clock by tests (tg_shdict_advance) */

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9 + skew;
}

/* Moves this process's view of time forward, so specs can expire entries
 * without waiting (lua/tollgate/testing.lua). */
void tg_shdict_advance(double seconds)
{
    skew += seconds;
}

static uint64_t hash64(const char *p, size_t n, uint64_t seed)
{
    /* Eight bytes at a time (multiply and shift: keys are short, and FNV's
     * byte loop cost more than the lookup), the length mixed in, then a
     * final mix (splitmix64). Every worker maps the same dictionary, and
     * all run this code. */
    uint64_t h = 0xcbf29ce484222325ull ^ seed ^ ((uint64_t) n * 0x9e3779b97f4a7c15ull);
    uint64_t v;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static slot_t *slots_of(uint32_t seg)
{
    char *base = (char *) hdr + ((sizeof(header_t) + SLOT_SIZE - 1) / SLOT_SIZE) * SLOT_SIZE;
    return (slot_t *) (base + (size_t) seg * hdr->per_segment * SLOT_SIZE);
}

#define SLOT(s, i) ((slot_t *) ((char *) (s) + (size_t) (i) * SLOT_SIZE))

int tg_shdict_init(size_t bytes, const char **err)
{
    size_t head = ((sizeof(header_t) + SLOT_SIZE - 1) / SLOT_SIZE) * SLOT_SIZE;
    uint64_t per = bytes / SLOT_SIZE / SEGMENTS;
    if (per < PROBE)
        per = PROBE;
    mapped = head + (size_t) per * SEGMENTS * SLOT_SIZE;
    void *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        *err = strerror(errno);
        return TG_ERROR;
    }
    hdr = p;
    hdr->magic = MAGIC;
    hdr->nsegments = SEGMENTS;
    hdr->per_segment = per;
    for (int i = 0; i < SEGMENTS; i++) {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        pthread_mutex_init(&hdr->segs[i].lock, &a);
        pthread_mutexattr_destroy(&a);
    }
    return TG_OK;
}

void tg_shdict_destroy(void)
{
    if (hdr) {
        munmap(hdr, mapped);
        hdr = NULL;
    }
}

static void lock(segment_t *s)
{
    int rc = pthread_mutex_lock(&s->lock);
    if (rc == EOWNERDEAD) {
        /* A worker died holding it; slots are only written whole under the
         * lock, so the data is usable. */
        pthread_mutex_consistent(&s->lock);
    }
}

static void unlock(segment_t *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* The stored form of a key: itself, or its 128-bit hash when long. */
typedef struct skey {
    const char *p;
    size_t len;
    int hashed;
    char buf[16];
    uint64_t hash;
} skey_t;

static void make_key(skey_t *k, const char *key, size_t klen)
{
    k->hash = hash64(key, klen, 0);
    if (klen <= KEY_MAX) {
        k->p = key;
        k->len = klen;
        k->hashed = 0;
        return;
    }
    uint64_t h2 = hash64(key, klen, 0x9e3779b97f4a7c15ull);
    memcpy(k->buf, &k->hash, 8);
    memcpy(k->buf + 8, &h2, 8);
    k->p = k->buf;
    k->len = 16;
    k->hashed = 1;
}

static int same(const slot_t *s, const skey_t *k)
{
    return s->hash == k->hash && s->klen == k->len && s->hashed_key == k->hashed &&
           memcmp(s->key, k->p, k->len) == 0;
}

/* Finds key in its segment (locked by the caller). With `create`, returns
 * a slot to write when absent (a free, dead, expired or evicted one) and
 * sets *fresh. Expired entries found on the way become dead. */
static slot_t *find(segment_t *seg, slot_t *slots, const skey_t *k, double now, int create,
                    int *fresh)
{
    uint64_t per = hdr->per_segment;
    uint64_t home = (k->hash >> 6) % per;
    slot_t *free_slot = NULL, *victim = NULL;

    for (int i = 0; i < PROBE; i++) {
        slot_t *s = SLOT(slots, (home + (uint64_t) i) % per);
        if (s->state == EMPTY) {
            if (!free_slot)
                free_slot = s;
            break;
        }
        if (s->state == USED && s->expires > 0 && s->expires <= now) {
            s->state = DEAD;
            seg->used--;
        }
        if (s->state == DEAD) {
            if (!free_slot)
                free_slot = s;
            continue;
        }
        if (same(s, k))
            return s;
        /* the live entry closest to expiring (no-expiry ones last) */
        if (!victim || (s->expires > 0 && (victim->expires == 0 || s->expires < victim->expires)))
            victim = s;
    }
    if (!create)
        return NULL;
    *fresh = 1;
    if (free_slot) {
        seg->used++;
        return free_slot;
    }
    seg->evicted++;
    return victim;
}

static void init_slot(slot_t *s, const skey_t *k, double now, double ttl)
{
    s->state = USED;
    s->hash = k->hash;
    s->klen = (uint8_t) k->len;
    s->hashed_key = (uint8_t) k->hashed;
    memcpy(s->key, k->p, k->len);
    s->expires = ttl > 0 ? now + ttl : 0;
    s->num = 0;
    s->type = NUM;
    s->vlen = 0;
}

#define LOCATE(key, klen)                                                              \
    skey_t k;                                                                          \
    if (hdr == NULL)                                                                   \
        return TG_ERROR;                                                               \
    make_key(&k, key, klen);                                                           \
    segment_t *seg = &hdr->segs[k.hash % SEGMENTS];                                    \
    slot_t *slots = slots_of((uint32_t) (k.hash % SEGMENTS));                          \
    double now = now_mono()

int tg_shdict_incr(const char *key, size_t klen, double by, double init, double ttl,
                   double *value, double *ttl_left)
{
    int fresh = 0, rc = TG_OK;
    LOCATE(key, klen);

    lock(seg);
    slot_t *s = find(seg, slots, &k, now, 1, &fresh);
    if (fresh) {
        init_slot(s, &k, now, ttl);
        s->num = init;
    }
    if (s->type != NUM) {
        rc = TG_ERROR;
    } else {
        s->num += by;
        *value = s->num;
        *ttl_left = s->expires > 0 ? s->expires - now : -1;
    }
    unlock(seg);
    return rc;
}

int tg_shdict_get(const char *key, size_t klen, double *num, char *buf, size_t *len, int *is_str,
                  double *ttl_left)
{
    LOCATE(key, klen);

    lock(seg);
    slot_t *s = find(seg, slots, &k, now, 0, NULL);
    if (s == NULL) {
        unlock(seg);
        return TG_DECLINED;
    }
    *is_str = s->type == STR;
    *num = s->num;
    if (s->type == STR) {
        memcpy(buf, s->val, s->vlen);
        *len = s->vlen;
    }
    *ttl_left = s->expires > 0 ? s->expires - now : -1;
    unlock(seg);
    return TG_OK;
}

int tg_shdict_set(const char *key, size_t klen, double num, const char *str, size_t slen,
                  double ttl)
{
    int fresh = 0;
    if (str && slen > TG_SHDICT_VAL_MAX)
        return TG_ERROR;
    LOCATE(key, klen);

    lock(seg);
    slot_t *s = find(seg, slots, &k, now, 1, &fresh);
    init_slot(s, &k, now, ttl);
    if (str) {
        s->type = STR;
        memcpy(s->val, str, slen);
        s->vlen = (uint16_t) slen;
    } else {
        s->num = num;
    }
    unlock(seg);
    return TG_OK;
}

int tg_shdict_delete(const char *key, size_t klen)
{
    LOCATE(key, klen);

    lock(seg);
    slot_t *s = find(seg, slots, &k, now, 0, NULL);
    if (s) {
        s->state = DEAD;
        seg->used--;
    }
    unlock(seg);
    return s ? TG_OK : TG_DECLINED;
}

void tg_shdict_stats(double *used, double *capacity, double *evicted)
{
    *used = *capacity = *evicted = 0;
    if (hdr == NULL)
        return;
    for (int i = 0; i < SEGMENTS; i++) {
        *used += (double) hdr->segs[i].used;
        *evicted += (double) hdr->segs[i].evicted;
    }
    *capacity = (double) hdr->per_segment * SEGMENTS;
}
