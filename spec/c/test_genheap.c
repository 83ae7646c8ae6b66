/*
 * Unit test for runtime/genheap.c, the heap of a generation's Lua state:
 * size classes (big enough, 16-byte multiples, bounded waste), blocks that
 * never overlap and keep their bytes, resizing across classes and to and
 * from malloc'd sizes, freed blocks reused, runs pooled when a heap is
 * freed and taken by the next one, blocks left alone while closing, and a
 * real LuaJIT state over it.
 *
 *   make build/spec/test_genheap && build/spec/test_genheap
 */
#include "../../runtime/genheap.c"
#include "../../runtime/core.c"

#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>

#include "tap.h"

static void classes(void)
{
    int ok = 1;
    unsigned prev = 0;
    for (size_t n = 1; n <= MEDIUM_MAX && ok; n++) {
        size_t size;
        unsigned c = size_class(n, &size);
        ok = c > 0 && c < NCLASS && size >= n && size % 16 == 0 && c >= prev &&
             size <= n + n / 4 + 16;
        /* the same class, the same size */
        size_t again;
        ok = ok && size_class(size, &again) == c && again == size;
        prev = c;
    }
    report(ok, "size classes: big enough, 16-byte multiples, ordered, at most 25 % waste");
}

static uint32_t rnd = 12345;
static uint32_t next_rand(void)
{
    rnd = rnd * 1103515245 + 12345;
    return rnd >> 8;
}

#define NBLK 4000

static void blocks(void)
{
    tg_genheap_t *h = tg_genheap_new();
    static unsigned char *p[NBLK];
    static size_t n[NBLK];
    int ok = 1;
    for (int i = 0; i < NBLK; i++) {
        n[i] = 1 + next_rand() % (i % 50 == 0 ? 70000 : 600);
        p[i] = tg_genheap_alloc(h, NULL, 0, n[i]);
        ok = ok && p[i] != NULL && ((uintptr_t) p[i] & 15) == 0;
        if (p[i])
            memset(p[i], i & 0xff, n[i]);
    }
    report(ok, "blocks of 1 byte to 70 KB: 16-aligned");
    /* every block still holds its own pattern: none overlaps another */
    for (int i = 0; i < NBLK && ok; i++)
        for (size_t k = 0; k < n[i] && ok; k++)
            ok = p[i][k] == (i & 0xff);
    report(ok, "no block overlaps another");

    /* free every other one, allocate again, check all once more */
    for (int i = 0; i < NBLK; i += 2)
        tg_genheap_alloc(h, p[i], n[i], 0);
    for (int i = 0; i < NBLK; i += 2) {
        n[i] = 1 + next_rand() % 900;
        p[i] = tg_genheap_alloc(h, NULL, 0, n[i]);
        memset(p[i], i & 0xff, n[i]);
    }
    for (int i = 0; i < NBLK && ok; i++)
        for (size_t k = 0; k < n[i] && ok; k++)
            ok = p[i][k] == (i & 0xff);
    report(ok, "after freeing half and allocating again, still no overlap");

    /* a freed block is the next one of its class */
    void *a = tg_genheap_alloc(h, NULL, 0, 100);
    tg_genheap_alloc(h, a, 100, 0);
    void *b = tg_genheap_alloc(h, NULL, 0, 97); /* same class (112) */
    report(a == b, "a freed block is reused for the next block of its class");

    /* resizing keeps the bytes: within a class, across classes, to and
     * from a malloc'd size */
    unsigned char *r = tg_genheap_alloc(h, NULL, 0, 20);
    for (int k = 0; k < 20; k++)
        r[k] = (unsigned char) k;
    unsigned char *same = tg_genheap_alloc(h, r, 20, 30);
    ok = same == r;
    size_t sizes[] = { 30, 700, 5000, 40000, 90000, 3000, 24 };
    size_t cur = 30;
    for (size_t i = 1; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        r = tg_genheap_alloc(h, r, cur, sizes[i]);
        ok = ok && r != NULL;
        for (int k = 0; k < 20 && ok; k++)
            ok = r[k] == k;
        cur = sizes[i];
    }
    tg_genheap_alloc(h, r, cur, 0);
    report(ok, "resizing within a class keeps the block; across classes and malloc the bytes");

    for (int i = 0; i < NBLK; i++)
        tg_genheap_alloc(h, p[i], n[i], 0);
    tg_genheap_alloc(h, b, 97, 0);
    tg_genheap_free(h);
}

static void pool_reuse(void)
{
    tg_genheap_trim();
    tg_genheap_t *h = tg_genheap_new();
    for (int i = 0; i < 20000; i++)
        tg_genheap_alloc(h, NULL, 0, 64); /* 1.25 MB: five runs */
    tg_genheap_free(h);
    size_t pooled_after = tg_genheap_pooled();
    report(pooled_after >= 5 * RUN_SIZE, "a freed heap's runs are pooled");

    tg_genheap_t *h2 = tg_genheap_new();
    for (int i = 0; i < 20000; i++)
        tg_genheap_alloc(h2, NULL, 0, 64);
    report(tg_genheap_pooled() < pooled_after, "the next heap takes its runs from the pool");
    tg_genheap_free(h2);
    tg_genheap_trim();
    report(tg_genheap_pooled() == 0, "trim unmaps the pool");
}

static void closing(void)
{
    tg_genheap_t *h = tg_genheap_new();
    void *small = tg_genheap_alloc(h, NULL, 0, 48);
    void *big = tg_genheap_alloc(h, NULL, 0, 100000);
    tg_genheap_closing(h);
    tg_genheap_alloc(h, small, 48, 0);
    tg_genheap_alloc(h, big, 100000, 0); /* still freed: LeakSanitizer would say so */
    void *again = tg_genheap_alloc(h, NULL, 0, 48);
    report(again != small, "while closing, a freed block is left alone (not reused)");
    tg_genheap_free(h);
}

static void lua_state(void)
{
    for (int round = 0; round < 3; round++) {
        tg_genheap_t *h = tg_genheap_new();
        lua_State *L = lua_newstate(tg_genheap_alloc, h);
        if (L == NULL) {
            report(0, "a LuaJIT state over the heap (lua_newstate refused the allocator)");
            tg_genheap_free(h);
            return;
        }
        luaL_openlibs(L);
        const char *chunk =
            "local t = {}\n"
            "for i = 1, 50000 do t[i] = { i, tostring(i) .. string.rep('x', i % 300) } end\n"
            "for i = 1, 50000, 2 do t[i] = nil end\n"
            "collectgarbage()\n"
            "local big = {}\n"
            "for i = 1, 100000 do big[i] = i end\n"
            "local s = 0\n"
            "for i = 2, 50000, 2 do s = s + t[i][1] end\n"
            "return s + #big\n";
        int ok = luaL_dostring(L, chunk) == 0 && lua_tonumber(L, -1) == 625025000.0 + 100000;
        char desc[80];
        snprintf(desc, sizeof(desc), "a LuaJIT state over the heap: tables, strings, GC (round %d)",
                 round + 1);
        report(ok, desc);
        if (!ok)
            fprintf(stderr, "# %s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        if (round > 0)
            tg_genheap_closing(h); /* as bridge.c closes a generation */
        lua_close(L);
        tg_genheap_free(h);
    }
    tg_genheap_trim();
}

int main(void)
{
    classes();
    blocks();
    pool_reuse();
    closing();
    lua_state();
    return tap_done();
}
