/*
 * settings.h: the process-wide settings the C core needs, read once from
 * the Lua config model (tollgate.config) at start. Durations are seconds,
 * sizes bytes. Defaults and their documentation live in
 * lua/tollgate/settings.lua; this is only the C view of them.
 */
#ifndef TG_SETTINGS_H
#define TG_SETTINGS_H

#include "tg.h"
#include "tls.h"

#define TG_MAX_LISTEN 8

typedef struct tg_listen {
    char *host;       /* address to bind, e.g. "0.0.0.0" or "::1" */
    int port;         /* 0 picks a free port (tests); the bound port is logged */
    int fd;           /* opened by the master before forking workers */
    int tls;          /* the https listener */
} tg_listen_t;

typedef struct tg_settings {
    int workers;                 /* worker processes; 0 means one per core */
    tg_listen_t listen[TG_MAX_LISTEN];
    int nlisten;

    double head_timeout;         /* first byte to end of the request head */
    double body_timeout;         /* between two reads of a request body */
    double keepalive_timeout;    /* idle keep-alive connection */
    double send_timeout;         /* between two writes that make progress */
    double tunnel_timeout;       /* a WebSocket tunnel with no traffic either way */
    double shutdown_timeout;     /* graceful stop: in-flight requests get this long */
    size_t max_head_size;        /* request line + headers; larger gets 431 */
    uint64_t max_body_size;      /* 0 means no limit; larger gets 413 */
    size_t max_buffered_body;    /* a body Lua reads whole (either direction) */
    int max_connections;         /* per worker; beyond it accepting pauses */
    int max_keepalive_requests;  /* requests served on one client connection */

    double upstream_connect_timeout;
    double upstream_timeout;     /* default proxyTimeout: upstream inactivity */
    double upstream_idle_timeout;/* pooled idle upstream connection lifetime */
    int upstream_keepalive;      /* idle connections kept per upstream per worker */

    size_t shared_memory;        /* bytes of the shared dictionary (shdict.c) */
    char *access_log;            /* "stdout", "stderr", "off" or a file path */
    int watch;                   /* reload when one of files changes */
    char **files;                /* every file the config depends on */
    int nfiles;
    char *pid_file;              /* NULL: the default place (master.c) */
    tg_tls_config_t tls;         /* the https listener's certificates (ncerts 0: none) */
    struct tg_tls_server *tls_server; /* their contexts, made by a load that serves (bridge.c):
                                         the worker takes them instead of loading them again */
    int log_level;
    double reload_timeout;       /* seconds a reload's build may take (0: no limit) */
} tg_settings_t;

void tg_settings_defaults(tg_settings_t *s);
void tg_settings_free(tg_settings_t *s);
/* Whether next listens where cur does (host, port, TLS, in order). A port
 * of 0 in next, on cur's host, is first given the port cur has bound. */
int tg_settings_same_listeners(const tg_settings_t *cur, tg_settings_t *next);

#endif
