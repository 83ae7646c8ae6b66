/*
 * tg.h: what every runtime file shares: return codes, string slices,
 * allocation that never returns NULL, container_of, and the log calls.
 */
#ifndef TG_H
#define TG_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* One return-code vocabulary, in C and across the FFI. */
#define TG_OK        0
#define TG_ERROR    -1
#define TG_AGAIN    -2
#define TG_DONE     -4
#define TG_DECLINED -5

/* Functions Lua reaches through the FFI. The binary is linked with -rdynamic
 * so they are visible to ffi.C. */
#define TG_EXPORT __attribute__((visibility("default")))

#define tg_container_of(ptr, type, member) \
    ((type *) ((char *) (ptr) - offsetof(type, member)))

#define tg_unused(x) ((void) (x))
#define tg_likely(x) __builtin_expect(!!(x), 1)
#define tg_unlikely(x) __builtin_expect(!!(x), 0)
#define tg_nelem(a) (sizeof(a) / sizeof((a)[0]))

/* A slice of bytes; never assumed NUL-terminated. */
typedef struct tg_str {
    const char *p;
    size_t len;
} tg_str_t;

#define tg_str_lit(s) ((tg_str_t) { (s), sizeof(s) - 1 })

/* Allocation: out of memory aborts, so call sites never test for NULL. */
void *tg_malloc(size_t size);
void *tg_calloc(size_t n, size_t size);
void *tg_realloc(void *p, size_t size);
char *tg_strndup(const char *s, size_t len);

/* Case-insensitive comparison of an ASCII slice against a lower-case name. */
int tg_str_ieq(const char *p, size_t len, const char *lower, size_t lower_len);

/* Starts fn(arg) in a new thread (*t) with every signal blocked (they are
 * the loop's, or the master's signalfd's), a stack of `stack` bytes (0: the
 * default), and `nice` nice levels below its creator (Linux: a thread's
 * nice value is its own), for work done beside a loop that serves: reload
 * builds, closing old generations, the master's check. Returns
 * pthread_create's result (0: started). */
int tg_thread_start(pthread_t *t, size_t stack, int nice, void *(*fn)(void *), void *arg);
/* Writes v in decimal backwards so that it ends just before end; returns
 * where it starts (at most 20 bytes before end). */
static inline char *tg_u64_digits(char *end, uint64_t v)
{
    do {
        *--end = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* By byte: the tchar (RFC 9110) lower-cased, or 0 for any other byte. Is
 * p[0, n) all tchar? */
extern const uint8_t tg_tchar[256];
static inline int tg_is_token(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!tg_tchar[(unsigned char) p[i]])
            return 0;
    return 1;
}

/* Log levels; messages go to stderr, one line each. */
enum tg_log_level { TG_LOG_ERROR, TG_LOG_WARN, TG_LOG_INFO, TG_LOG_DEBUG };

extern _Atomic int tg_log_level; /* read by the threads beside a worker's loop too */
extern const char *tg_process_role; /* "master" or "worker" */

void tg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define tg_log_error(...) tg_log(TG_LOG_ERROR, __VA_ARGS__)
#define tg_log_warn(...)  tg_log(TG_LOG_WARN, __VA_ARGS__)
#define tg_log_info(...)  tg_log(TG_LOG_INFO, __VA_ARGS__)
#define tg_log_debug(...) do { if (tg_log_level >= TG_LOG_DEBUG) tg_log(TG_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
