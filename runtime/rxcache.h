/*
 * rxcache.h: compiled regular expressions shared by a process's Lua states.
 *
 * Every reload builds a new Lua state, which compiled every pattern of the
 * config again (pcre2_compile), and JIT-compiled each one again at its
 * first match, inside a request (~35 us each). Here a compiled pattern is
 * kept per process, by its options and text, while some state uses it; a
 * new generation takes the previous one's, JIT code included. The codes
 * are opaque here: tollgate.regex compiles and frees them through the
 * FFI. Locked: the master's config check runs in a thread.
 */
#ifndef TG_RXCACHE_H
#define TG_RXCACHE_H

#include "tg.h"

/* The code kept for key, with one more user, or NULL. */
TG_EXPORT void *tg_rx_find(const char *key, size_t len);
/* Keeps code for key with one user; returns what to use: code, or the one
 * another state kept first (then the caller frees its own). */
TG_EXPORT void *tg_rx_add(const char *key, size_t len, void *code);
/* One user fewer; 1 when it was the last (the caller frees the code). */
TG_EXPORT int tg_rx_release(void *code);
/* JIT-compiles code with compile (PCRE2's pcre2_jit_compile, which the
 * caller has and the C core does not link) unless some state already did:
 * at most once per code, under the lock, since a worker's loop and its
 * reload build (worker.c) may reach a shared pattern's first match at
 * once. Returns compile's result, or 0 when it had been done. */
typedef int (*tg_rx_jit_fn)(void *code, uint32_t options);
TG_EXPORT int tg_rx_jit(void *code, tg_rx_jit_fn compile, uint32_t options);

#endif
