/*
 * master.h: the master process (listeners, workers, signals).
 */
#ifndef TG_MASTER_H
#define TG_MASTER_H

#include "settings.h"

/* Opens every listener in s; the actual port replaces a 0 port. */
int tg_master_listen(tg_settings_t *s, const char **err);
/* Forks the workers (`workers`, or when 0 the config's count) and
 * supervises them until stopped; returns the exit code. */
int tg_master_run(tg_settings_t *s, const char *config_path, int workers);
/* Where the master serving config_path writes its pid (configured: the
 * tollgate.pidFile setting, or NULL). */
const char *tg_master_pidfile(const char *config_path, const char *configured);

/* A reload starts in one worker, the lead (SIGUSR2 from the master): its
 * build of the new generation is the config check, the one `-t` makes.
 * It answers with one datagram on the report socket: this header, then
 * NUL-terminated strings: the error (REFUSED, else empty), the access
 * log, and the nfiles files the config read (the master watches them). */
enum {
    TG_RELOAD_APPLIED,   /* built and serving; the other workers may follow */
    TG_RELOAD_REFUSED,   /* the config is bad: nothing changed */
    TG_RELOAD_LISTENERS, /* good, but listens elsewhere: not applied (the master
                          * opens the sockets and starts a new set of workers) */
};

typedef struct tg_reload_report {
    int32_t pid;
    int32_t status;
    uint32_t generation;
    int32_t workers;
    int32_t watch;
    int32_t log_level;
    int32_t nfiles;
    double shutdown_timeout;
    double reload_timeout;
} tg_reload_report_t;

#define TG_RELOAD_REPORT_MAX 65536

#endif
