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

#endif
