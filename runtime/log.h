/*
 * log.h: the access log (one JSON line per request) and rate-limited error
 * logging. Access log lines are buffered and written once per loop turn,
 * or sooner when the buffer fills, so logging costs no syscall per request.
 */
#ifndef TG_LOG_H
#define TG_LOG_H

#include "req.h"

/* target: "stdout", "stderr", "off" or a file path (opened for append). */
int tg_access_log_open(const char *target, const char **err);
void tg_access_log(tg_req_t *r);
void tg_access_log_flush(void);
void tg_access_log_close(void);

/* Logs at most a few lines a second for a recurring condition. */
void tg_log_rate_limited(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
