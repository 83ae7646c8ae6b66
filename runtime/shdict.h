/*
 * shdict.h: a dictionary in shared memory, the same for every worker of a
 * node and untouched by config reloads (rate-limit counters and other
 * state that must be shared or must outlive a config generation).
 *
 * The master maps it before forking, so workers (and restarted workers)
 * inherit it. Entries have a key, a number or a short string, and an
 * optional time to live. Operations are atomic across workers (a robust
 * process-shared mutex per segment: a worker dying with the lock held does
 * not wedge the others). When a probe window is full, the entry closest
 * to expiring is evicted.
 */
#ifndef TG_SHDICT_H
#define TG_SHDICT_H

#include "tg.h"

#define TG_SHDICT_VAL_MAX 160  /* bytes of a string value */

/* Maps `bytes` of shared memory (rounded to whole slots). */
TG_EXPORT int tg_shdict_init(size_t bytes, const char **err);
void tg_shdict_destroy(void);

/* Adds `by` to the number at key; an absent or expired key starts at
 * `init` + by with time to live `ttl` (seconds, 0 = none); the ttl of a
 * live key is kept. *value gets the new value, *ttl_left the seconds left
 * (-1 without expiry). TG_ERROR if the key holds a string or there is no
 * dictionary. */
TG_EXPORT int tg_shdict_incr(const char *key, size_t klen, double by, double init, double ttl,
                             double *value, double *ttl_left);
/* TG_OK with the value (a number, or a string copied to buf with its length
 * in len when is_str is set),
 * TG_DECLINED when absent or expired. buf holds TG_SHDICT_VAL_MAX bytes. */
TG_EXPORT int tg_shdict_get(const char *key, size_t klen, double *num, char *buf, size_t *len,
                            int *is_str, double *ttl_left);
/* Sets a number (str NULL) or a string; ttl 0 = no expiry. */
TG_EXPORT int tg_shdict_set(const char *key, size_t klen, double num, const char *str,
                            size_t slen, double ttl);
TG_EXPORT int tg_shdict_delete(const char *key, size_t klen);
/* Tests only: moves this process's clock for expiry forward. */
TG_EXPORT void tg_shdict_advance(double seconds);
/* Entries in use and capacity, for tests and monitoring. */
TG_EXPORT void tg_shdict_stats(double *used, double *capacity, double *evicted);

#endif
