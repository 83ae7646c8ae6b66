/*
 * Unit test for runtime/shdict.c, the shared dictionary behind rate-limit
 * counters: incr/get/set/delete/ttl semantics, expiry (tg_shdict_advance),
 * long keys, eviction when a probe window is full, and atomicity across
 * processes (fork). The implementation is included so its statics (the
 * hash, the segment layout) are reachable. Output is TAP-like; the exit
 * status is non-zero if any case failed.
 *
 *   make build/spec/test_shdict && build/spec/test_shdict
 */
#include "../../runtime/shdict.c"
#include "../../runtime/core.c"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a tiny TAP harness ---------------------------------------------------- */

static int count, failures;
static const char *current;
static char diag[8192];
static size_t diaglen;

static void begin(const char *desc)
{
    current = desc;
    diag[0] = '\0';
    diaglen = 0;
}

static void note(const char *fmt, ...)
{
    va_list ap;
    if (diaglen >= sizeof(diag) - 2)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(diag + diaglen, sizeof(diag) - diaglen, fmt, ap);
    va_end(ap);
    if (n > 0)
        diaglen += (size_t) n;
    if (diaglen >= sizeof(diag))
        diaglen = sizeof(diag) - 1;
}

static void end(void)
{
    count++;
    printf("%s %d - %s\n", diaglen ? "not ok" : "ok", count, current);
    if (diaglen) {
        failures++;
        fputs(diag, stdout);
    }
    fflush(stdout);
}

#define EXPECT(c)                                                           \
    do {                                                                    \
        if (!(c))                                                           \
            note("#   %s:%d: expected %s\n", __FILE__, __LINE__, #c);       \
    } while (0)

#define EXPECT_NUM(got, want)                                                       \
    do {                                                                            \
        double g_ = (got), w_ = (want);                                             \
        if (g_ != w_)                                                               \
            note("#   %s:%d: %s: got %.17g, want %.17g\n", __FILE__, __LINE__, #got,  \
                 g_, w_);                                                           \
    } while (0)

#define EXPECT_NEAR(got, want, eps)                                                 \
    do {                                                                            \
        double g_ = (got), w_ = (want);                                             \
        if (g_ < w_ - (eps) || g_ > w_ + (eps))                                     \
            note("#   %s:%d: %s: got %.6f, want %.6f +- %g\n", __FILE__, __LINE__, #got, \
                 g_, w_, (double) (eps));                                           \
    } while (0)

/* ---- helpers ------------------------------------------------------------------ */

static int incr(const char *key, double by, double init, double ttl, double *value,
                double *ttl_left)
{
    double v = 0, t = 0;
    int rc = tg_shdict_incr(key, strlen(key), by, init, ttl, &v, &t);
    if (value)
        *value = v;
    if (ttl_left)
        *ttl_left = t;
    return rc;
}

/* get: TG_OK / TG_DECLINED; a number in *num, or a string in str. */
static char strbuf[TG_SHDICT_VAL_MAX + 1];

static int get(const char *key, size_t klen, double *num, int *is_str, double *ttl_left)
{
    double n = 0, t = 0;
    size_t len = 0;
    int s = 0;
    memset(strbuf, 0, sizeof(strbuf));
    int rc = tg_shdict_get(key, klen, &n, strbuf, &len, &s, &t);
    if (rc == TG_OK && s)
        strbuf[len] = '\0';
    if (num)
        *num = n;
    if (is_str)
        *is_str = s;
    if (ttl_left)
        *ttl_left = t;
    return rc;
}

static int gets(const char *key, double *num)
{
    return get(key, strlen(key), num, NULL, NULL);
}

static int set_num(const char *key, double num, double ttl)
{
    return tg_shdict_set(key, strlen(key), num, NULL, 0, ttl);
}

static int set_str(const char *key, const char *s, double ttl)
{
    return tg_shdict_set(key, strlen(key), 0, s, strlen(s), ttl);
}

static void fresh(size_t bytes)
{
    const char *err = NULL;
    tg_shdict_destroy();
    if (tg_shdict_init(bytes, &err) != TG_OK) {
        fprintf(stderr, "tg_shdict_init: %s\n", err);
        exit(2);
    }
}

/* ---- cases -------------------------------------------------------------------- */

static void case_no_dict(void)
{
    double v, t;
    begin("before init every call fails (TG_ERROR), stats are zero");
    EXPECT(incr("a", 1, 0, 0, &v, &t) == TG_ERROR);
    EXPECT(gets("a", &v) == TG_ERROR);
    EXPECT(set_num("a", 1, 0) == TG_ERROR);
    EXPECT(tg_shdict_delete("a", 1) == TG_ERROR);
    double used, cap, ev;
    tg_shdict_stats(&used, &cap, &ev);
    EXPECT(used == 0 && cap == 0 && ev == 0);
    end();
}

static void case_incr(void)
{
    double v, t;
    fresh(1 << 20);

    begin("incr: an absent key starts at init + by; without ttl it never expires (-1)");
    EXPECT(incr("n", 1, 0, 0, &v, &t) == TG_OK);
    EXPECT_NUM(v, 1);
    EXPECT_NUM(t, -1);
    EXPECT(incr("n", 1, 0, 0, &v, &t) == TG_OK);
    EXPECT_NUM(v, 2);
    EXPECT(incr("m", 5, 10, 0, &v, &t) == TG_OK);
    EXPECT_NUM(v, 15);
    EXPECT(incr("m", -20, 10, 0, &v, &t) == TG_OK);
    EXPECT_NUM(v, -5);
    EXPECT(incr("f", 0.25, 0, 0, &v, &t) == TG_OK && incr("f", 0.5, 0, 0, &v, &t) == TG_OK);
    EXPECT_NUM(v, 0.75);
    end();

    begin("incr: a new key gets the ttl; a live key keeps its ttl (not extended)");
    EXPECT(incr("w", 1, 0, 60, &v, &t) == TG_OK);
    EXPECT_NEAR(t, 60, 0.1);
    tg_shdict_advance(20);
    EXPECT(incr("w", 1, 0, 60, &v, &t) == TG_OK);
    EXPECT_NUM(v, 2);
    EXPECT_NEAR(t, 40, 0.1);
    EXPECT(incr("w", 1, 0, 0, &v, &t) == TG_OK); /* ttl 0 on a live key: kept too */
    EXPECT_NEAR(t, 40, 0.1);
    end();

    begin("incr: after expiry the key starts over, with the new ttl");
    tg_shdict_advance(40.01);
    EXPECT(gets("w", &v) == TG_DECLINED);
    EXPECT(incr("w", 1, 0, 5, &v, &t) == TG_OK);
    EXPECT_NUM(v, 1);
    EXPECT_NEAR(t, 5, 0.1);
    end();

    begin("incr: a key holding a string is an error and stays a string");
    EXPECT(set_str("s", "text", 0) == TG_OK);
    EXPECT(incr("s", 1, 0, 0, &v, &t) == TG_ERROR);
    int is_str;
    EXPECT(get("s", 1, &v, &is_str, NULL) == TG_OK && is_str && strcmp(strbuf, "text") == 0);
    end();
}

static void case_get_set_delete(void)
{
    double v, t;
    int is_str;
    fresh(1 << 20);

    begin("get: absent -> TG_DECLINED");
    EXPECT(gets("nothing", &v) == TG_DECLINED);
    end();

    begin("set/get: numbers, with and without ttl");
    EXPECT(set_num("a", 42.5, 0) == TG_OK);
    EXPECT(get("a", 1, &v, &is_str, &t) == TG_OK);
    EXPECT_NUM(v, 42.5);
    EXPECT(!is_str);
    EXPECT_NUM(t, -1);
    EXPECT(set_num("b", 7, 30) == TG_OK);
    EXPECT(get("b", 1, &v, &is_str, &t) == TG_OK);
    EXPECT_NUM(v, 7);
    EXPECT_NEAR(t, 30, 0.1);
    end();

    begin("set/get: strings, empty and 160 bytes (the maximum); 161 refused");
    {
        char big[TG_SHDICT_VAL_MAX + 2];
        memset(big, 'v', sizeof(big));
        big[TG_SHDICT_VAL_MAX] = '\0';
        EXPECT(set_str("e", "", 0) == TG_OK);
        EXPECT(get("e", 1, &v, &is_str, NULL) == TG_OK && is_str && strbuf[0] == '\0');
        EXPECT(set_str("big", big, 0) == TG_OK);
        EXPECT(get("big", 3, &v, &is_str, NULL) == TG_OK && is_str &&
               strlen(strbuf) == TG_SHDICT_VAL_MAX);
        big[TG_SHDICT_VAL_MAX] = 'v';
        big[TG_SHDICT_VAL_MAX + 1] = '\0';
        EXPECT(set_str("big2", big, 0) == TG_ERROR);
        EXPECT(gets("big2", &v) == TG_DECLINED);
        EXPECT(set_str("big", big, 0) == TG_ERROR); /* the old value stays */
        EXPECT(get("big", 3, &v, &is_str, NULL) == TG_OK && strlen(strbuf) == TG_SHDICT_VAL_MAX);
    }
    end();

    begin("set/get: binary strings (NUL bytes) keep their length");
    {
        double n;
        size_t len = 0;
        int s = 0;
        char buf[TG_SHDICT_VAL_MAX];
        EXPECT(tg_shdict_set("bin", 3, 0, "a\0b", 3, 0) == TG_OK);
        EXPECT(tg_shdict_get("bin", 3, &n, buf, &len, &s, &t) == TG_OK);
        EXPECT(s && len == 3 && memcmp(buf, "a\0b", 3) == 0);
    }
    end();

    begin("set: replaces the value, the type and the ttl");
    EXPECT(set_str("x", "str", 5) == TG_OK);
    EXPECT(set_num("x", 3, 0) == TG_OK);
    EXPECT(get("x", 1, &v, &is_str, &t) == TG_OK && !is_str);
    EXPECT_NUM(v, 3);
    EXPECT_NUM(t, -1);
    EXPECT(set_num("x", 4, 100) == TG_OK);
    EXPECT(get("x", 1, &v, &is_str, &t) == TG_OK);
    EXPECT_NEAR(t, 100, 0.1);
    EXPECT(incr("x", 1, 0, 0, &v, &t) == TG_OK);
    EXPECT_NUM(v, 5);
    end();

    begin("delete: present -> TG_OK and gone; absent -> TG_DECLINED; re-creatable");
    EXPECT(tg_shdict_delete("a", 1) == TG_OK);
    EXPECT(gets("a", &v) == TG_DECLINED);
    EXPECT(tg_shdict_delete("a", 1) == TG_DECLINED);
    EXPECT(incr("a", 1, 0, 0, &v, &t) == TG_OK);
    EXPECT_NUM(v, 1);
    end();

    begin("keys are bytes: NUL inside, and case, make different keys");
    EXPECT(tg_shdict_set("k\0a", 3, 1, NULL, 0, 0) == TG_OK);
    EXPECT(tg_shdict_set("k\0b", 3, 2, NULL, 0, 0) == TG_OK);
    EXPECT(get("k\0a", 3, &v, NULL, NULL) == TG_OK);
    EXPECT_NUM(v, 1);
    EXPECT(get("k\0b", 3, &v, NULL, NULL) == TG_OK);
    EXPECT_NUM(v, 2);
    EXPECT(get("k", 1, &v, NULL, NULL) == TG_DECLINED);
    EXPECT(set_num("Key", 1, 0) == TG_OK && gets("key", &v) == TG_DECLINED);
    end();

    begin("stats: used counts live entries, delete and expiry give them back");
    {
        double used0, used1, used2, cap, ev;
        fresh(1 << 20);
        tg_shdict_stats(&used0, &cap, &ev);
        EXPECT_NUM(used0, 0);
        EXPECT(cap >= (1 << 20) / 256);
        for (int i = 0; i < 100; i++) {
            char k[32];
            snprintf(k, sizeof(k), "st-%d", i);
            set_num(k, i, i < 50 ? 10 : 0);
        }
        tg_shdict_stats(&used1, &cap, &ev);
        EXPECT_NUM(used1, 100);
        tg_shdict_delete("st-99", 5);
        tg_shdict_advance(11);
        for (int i = 0; i < 50; i++) { /* expiry is noticed when the key is looked at */
            char k[32];
            snprintf(k, sizeof(k), "st-%d", i);
            EXPECT(gets(k, &v) == TG_DECLINED);
        }
        tg_shdict_stats(&used2, &cap, &ev);
        EXPECT_NUM(used2, 49);
        EXPECT_NUM(ev, 0);
    }
    end();
}

static void case_expiry(void)
{
    double v, t;
    fresh(1 << 20);

    begin("ttl: present until the ttl has passed, gone right after (tg_shdict_advance)");
    EXPECT(set_num("t", 1, 10) == TG_OK);
    tg_shdict_advance(9.9);
    EXPECT(get("t", 1, &v, NULL, &t) == TG_OK);
    EXPECT_NEAR(t, 0.1, 0.05);
    tg_shdict_advance(0.2);
    EXPECT(gets("t", &v) == TG_DECLINED);
    end();

    begin("ttl: an expired key can be set again (fresh ttl), an expired string too");
    EXPECT(set_str("t", "again", 3) == TG_OK);
    EXPECT(get("t", 1, &v, NULL, &t) == TG_OK && strcmp(strbuf, "again") == 0);
    EXPECT_NEAR(t, 3, 0.1);
    tg_shdict_advance(3.1);
    EXPECT(gets("t", &v) == TG_DECLINED);
    EXPECT(tg_shdict_delete("t", 1) == TG_DECLINED);
    end();

    begin("ttl: entries without ttl survive any advance");
    EXPECT(set_num("forever", 1, 0) == TG_OK);
    tg_shdict_advance(1e7);
    EXPECT(gets("forever", &v) == TG_OK);
    end();

    begin("ttl: a fixed window: the counter resets exactly once per window");
    {
        int starts = 0;
        for (int i = 0; i < 100; i++) { /* one hit every 0.25 s, window 1 s */
            incr("win", 1, 0, 1, &v, &t);
            if (v == 1)
                starts++;
            tg_shdict_advance(0.25);
        }
        EXPECT(starts == 25);
    }
    end();
}

static void case_long_keys(void)
{
    double v, t;
    fresh(1 << 20);

    begin("long keys: 64, 65, 100 and 5000 bytes all work");
    {
        size_t lens[] = { 63, 64, 65, 100, 255, 256, 257, 5000 };
        char *keys[tg_nelem(lens)];
        for (size_t i = 0; i < tg_nelem(lens); i++) {
            keys[i] = tg_malloc(lens[i] + 1);
            memset(keys[i], 'k', lens[i]);
            keys[i][lens[i]] = '\0';
            EXPECT(set_num(keys[i], (double) lens[i], 0) == TG_OK);
        }
        for (size_t i = 0; i < tg_nelem(lens); i++) {
            if (gets(keys[i], &v) != TG_OK)
                note("#   key of %zu bytes not found\n", lens[i]);
            else if (v != (double) lens[i])
                note("#   key of %zu bytes: got %g\n", lens[i], v);
            free(keys[i]);
        }
    }
    end();

    begin("long keys: differing only in the last byte, or only in the first, are distinct");
    {
        char a[200], b[200], c[200];
        memset(a, 'x', sizeof(a));
        a[199] = '\0';
        memcpy(b, a, sizeof(a));
        memcpy(c, a, sizeof(a));
        b[198] = 'y';
        c[0] = 'y';
        EXPECT(incr(a, 1, 0, 0, &v, &t) == TG_OK && v == 1);
        EXPECT(incr(b, 10, 0, 0, &v, &t) == TG_OK && v == 10);
        EXPECT(incr(c, 100, 0, 0, &v, &t) == TG_OK && v == 100);
        EXPECT(incr(a, 1, 0, 0, &v, &t) == TG_OK && v == 2);
        EXPECT(gets(b, &v) == TG_OK && v == 10);
        EXPECT(tg_shdict_delete(b, strlen(b)) == TG_OK);
        EXPECT(gets(b, &v) == TG_DECLINED);
        EXPECT(gets(a, &v) == TG_OK && v == 2);
    }
    end();

    begin("long keys: a 64-byte key and its 65-byte extension are distinct");
    {
        char k[66];
        memset(k, 'p', 65);
        k[65] = '\0';
        EXPECT(set_num(k, 65, 0) == TG_OK);
        k[64] = '\0';
        EXPECT(set_num(k, 64, 0) == TG_OK);
        EXPECT(gets(k, &v) == TG_OK && v == 64);
        k[64] = 'p';
        EXPECT(gets(k, &v) == TG_OK && v == 65);
    }
    end();

    begin("long keys: a long key never matches a 16-byte key holding its hash");
    {
        char k[100];
        memset(k, 'h', 99);
        k[99] = '\0';
        skey_t sk;
        make_key(&sk, k, 99);
        EXPECT(sk.hashed && sk.len == 16);
        EXPECT(set_num(k, 1, 0) == TG_OK);
        EXPECT(tg_shdict_set(sk.buf, 16, 2, NULL, 0, 0) == TG_OK);
        EXPECT(gets(k, &v) == TG_OK && v == 1);
        EXPECT(get(sk.buf, 16, &v, NULL, NULL) == TG_OK && v == 2);
    }
    end();

    begin("many keys: 20000 distinct counters in a 16 MiB dictionary, none lost");
    {
        fresh(16 << 20);
        int lost = 0;
        for (int i = 0; i < 20000; i++) {
            char k[96];
            snprintf(k, sizeof(k), "rl:pipelines.p.policies[1].rate-limit[1]:10.0.%d.%d", i / 256,
                     i % 256);
            incr(k, 1, 0, 60, &v, &t);
            incr(k, 1, 0, 60, &v, &t);
        }
        for (int i = 0; i < 20000; i++) {
            char k[96];
            snprintf(k, sizeof(k), "rl:pipelines.p.policies[1].rate-limit[1]:10.0.%d.%d", i / 256,
                     i % 256);
            if (gets(k, &v) != TG_OK || v != 2)
                lost++;
        }
        double used, cap, ev;
        tg_shdict_stats(&used, &cap, &ev);
        if (lost)
            note("#   %d of 20000 lost (evicted %g, capacity %g)\n", lost, ev, cap);
        EXPECT_NUM(used, 20000);
    }
    end();
}

/* Keys of one segment: with the smallest dictionary a segment has exactly
 * PROBE slots, so PROBE keys fill its whole probe window. */
static int same_segment_keys(char keys[][32], int n, const char *prefix)
{
    int found = 0;
    uint64_t seg = (uint64_t) -1;
    for (int i = 0; found < n && i < 1000000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "%s-%d", prefix, i);
        uint64_t h = hash64(k, strlen(k), 0);
        if (seg == (uint64_t) -1)
            seg = h % SEGMENTS;
        if (h % SEGMENTS == seg)
            memcpy(keys[found++], k, sizeof(k));
    }
    return found;
}

static void case_eviction(void)
{
    double v, t, used, cap, ev;
    char keys[PROBE + 8][32];

    fresh(0); /* the minimum: PROBE slots per segment */
    EXPECT(hdr->per_segment == PROBE);

    begin("eviction: a full window evicts the entry closest to expiring");
    EXPECT(same_segment_keys(keys, PROBE + 8, "ev") == PROBE + 8);
    for (int i = 0; i < PROBE; i++) {
        double ttl = 100 + i;
        if (i == 7)
            ttl = 5; /* closest to expiring */
        if (i == 3 || i == 4)
            ttl = 0; /* never expires */
        EXPECT(set_num(keys[i], i, ttl) == TG_OK);
    }
    tg_shdict_stats(&used, &cap, &ev);
    EXPECT_NUM(used, PROBE);
    EXPECT_NUM(ev, 0);
    EXPECT(set_num(keys[PROBE], 1000, 1000) == TG_OK);
    EXPECT(gets(keys[7], &v) == TG_DECLINED);
    for (int i = 0; i < PROBE; i++)
        if (i != 7 && (gets(keys[i], &v) != TG_OK || v != i))
            note("#   %s (ttl %d) was lost\n", keys[i], i == 3 || i == 4 ? 0 : 100 + i);
    EXPECT(gets(keys[PROBE], &v) == TG_OK && v == 1000);
    tg_shdict_stats(&used, &cap, &ev);
    EXPECT_NUM(ev, 1);
    EXPECT_NUM(used, PROBE);
    end();

    begin("eviction: the next one goes next (ttl 100), then ttl 101; counters via incr too");
    EXPECT(incr(keys[PROBE + 1], 1, 0, 2000, &v, &t) == TG_OK && v == 1);
    EXPECT(gets(keys[0], &v) == TG_DECLINED);
    EXPECT(gets(keys[1], &v) == TG_OK);
    EXPECT(incr(keys[PROBE + 2], 1, 0, 2000, &v, &t) == TG_OK && v == 1);
    EXPECT(gets(keys[1], &v) == TG_DECLINED);
    EXPECT(gets(keys[2], &v) == TG_OK);
    tg_shdict_stats(&used, &cap, &ev);
    EXPECT_NUM(ev, 3);
    end();

    begin("eviction: an expired entry is reused before anything is evicted");
    tg_shdict_advance(102.5); /* keys[2] (ttl 102) expires; keys[3..] do not */
    EXPECT(set_num(keys[PROBE + 3], 1, 0) == TG_OK);
    tg_shdict_stats(&used, &cap, &ev);
    EXPECT_NUM(ev, 3);
    EXPECT(gets(keys[5], &v) == TG_OK);
    EXPECT(gets(keys[PROBE + 3], &v) == TG_OK);
    end();

    begin("eviction: entries without ttl go last");
    fresh(0);
    EXPECT(same_segment_keys(keys, PROBE + 8, "nt") == PROBE + 8);
    for (int i = 0; i < PROBE; i++)
        EXPECT(set_num(keys[i], i, i == 20 ? 1e6 : 0) == TG_OK);
    EXPECT(set_num(keys[PROBE], 1, 0) == TG_OK);
    EXPECT(gets(keys[20], &v) == TG_DECLINED);
    for (int i = 0; i < PROBE; i++)
        if (i != 20 && gets(keys[i], &v) != TG_OK)
            note("#   %s (no ttl) was evicted before the one with a ttl\n", keys[i]);
    end();

    begin("eviction: with only no-ttl entries one of them goes, the dictionary keeps working");
    EXPECT(set_num(keys[PROBE + 1], 2, 0) == TG_OK);
    EXPECT(gets(keys[PROBE + 1], &v) == TG_OK && v == 2);
    EXPECT(gets(keys[PROBE], &v) == TG_OK);
    {
        int present = 0;
        for (int i = 0; i < PROBE + 2; i++)
            present += gets(keys[i], &v) == TG_OK;
        EXPECT(present == PROBE);
    }
    tg_shdict_stats(&used, &cap, &ev);
    EXPECT_NUM(ev, 2);
    end();

    begin("eviction: other segments are untouched");
    {
        char other[40][32];
        EXPECT(same_segment_keys(other, 1, "zz") == 1);
        /* a key whose segment differs from keys[0]'s */
        for (int i = 0; i < 1000; i++) {
            snprintf(other[0], 32, "zz-%d", i);
            if (hash64(other[0], strlen(other[0]), 0) % SEGMENTS !=
                hash64(keys[0], strlen(keys[0]), 0) % SEGMENTS)
                break;
        }
        EXPECT(set_num(other[0], 9, 0) == TG_OK);
        tg_shdict_stats(&used, &cap, &ev);
        EXPECT_NUM(ev, 2);
    }
    end();
}

static void case_processes(void)
{
    double v;
    fresh(1 << 20);

    begin("atomicity: 4 processes x 10000 incr on one key = 40000");
    {
        pid_t pids[4];
        for (int c = 0; c < 4; c++) {
            pids[c] = fork();
            if (pids[c] == 0) {
                double cv, ct;
                for (int i = 0; i < 10000; i++)
                    if (incr("shared", 1, 0, 0, &cv, &ct) != TG_OK)
                        _exit(3);
                _exit(0);
            }
        }
        int bad = 0;
        for (int c = 0; c < 4; c++) {
            int st;
            waitpid(pids[c], &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                bad++;
        }
        EXPECT(bad == 0);
        EXPECT(gets("shared", &v) == TG_OK);
        EXPECT_NUM(v, 40000);
    }
    end();

    begin("atomicity: 4 processes x 50 keys x 200 incr (segments in parallel), each 800");
    {
        pid_t pids[4];
        for (int c = 0; c < 4; c++) {
            pids[c] = fork();
            if (pids[c] == 0) {
                double cv, ct;
                for (int i = 0; i < 200; i++)
                    for (int k = 0; k < 50; k++) {
                        char key[32];
                        snprintf(key, sizeof(key), "many-%d", (k + c * 7) % 50);
                        incr(key, 1, 0, 60, &cv, &ct);
                    }
                _exit(0);
            }
        }
        for (int c = 0; c < 4; c++)
            waitpid(pids[c], NULL, 0);
        int wrong = 0;
        for (int k = 0; k < 50; k++) {
            char key[32];
            snprintf(key, sizeof(key), "many-%d", k);
            if (gets(key, &v) != TG_OK || v != 800) {
                if (wrong++ < 3)
                    note("#   %s = %g\n", key, v);
            }
        }
        EXPECT(wrong == 0);
    }
    end();

    begin("a process dying with a segment locked does not wedge the others (robust mutex)");
    {
        skey_t k;
        make_key(&k, "victim", 6);
        segment_t *seg = &hdr->segs[k.hash % SEGMENTS];
        pid_t pid = fork();
        if (pid == 0) {
            lock(seg);
            _exit(0); /* dies holding the lock */
        }
        waitpid(pid, NULL, 0);
        pid_t guard = fork();
        if (guard == 0) {
            /* the same operation in a child with a deadline, so a wedged
             * lock fails the case instead of hanging the run */
            alarm(5);
            double cv, ct;
            if (incr("victim", 1, 0, 0, &cv, &ct) != TG_OK || cv != 1)
                _exit(1);
            if (incr("victim", 1, 0, 0, &cv, &ct) != TG_OK || cv != 2)
                _exit(1);
            _exit(0);
        }
        int st;
        waitpid(guard, &st, 0);
        EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (WIFSIGNALED(st))
            note("#   killed by signal %d (SIGALRM = wedged)\n", WTERMSIG(st));
        EXPECT(gets("victim", &v) == TG_OK && v == 2);
    }
    end();

    begin("children see the parent's entries and the parent sees theirs");
    {
        set_str("from-parent", "hello", 0);
        pid_t pid = fork();
        if (pid == 0) {
            double n;
            int ok = gets("from-parent", &n) == TG_OK && strcmp(strbuf, "hello") == 0;
            set_str("from-child", "hi", 0);
            _exit(ok ? 0 : 1);
        }
        int st;
        waitpid(pid, &st, 0);
        EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        EXPECT(gets("from-child", &v) == TG_OK && strcmp(strbuf, "hi") == 0);
    }
    end();
}

int main(void)
{
    case_no_dict();
    case_incr();
    case_get_set_delete();
    case_expiry();
    case_long_keys();
    case_eviction();
    case_processes();
    tg_shdict_destroy();
    printf("1..%d\n", count);
    if (failures)
        printf("# %d of %d failed\n", failures, count);
    return failures ? 1 : 0;
}
