/*
 * worker.h: the state of one worker process: its event loop, its Lua
 * state, its settings, and its connection accounting. There is one per
 * process; tg_worker is that instance.
 */
#ifndef TG_WORKER_H
#define TG_WORKER_H

#include <ev.h>

#include "settings.h"

typedef struct tg_conn tg_conn_t;

typedef struct tg_worker {
    struct ev_loop *loop;
    tg_settings_t *settings;
    const char *config_path;
    int id;                     /* 0..workers-1 */
    int nconns;                 /* open client connections */
    tg_conn_t *conns;           /* all open client connections */
    tg_conn_t *closed;          /* closed this loop turn; freed in the prepare watcher */
    ev_io listeners[TG_MAX_LISTEN];
    int listen_tls[TG_MAX_LISTEN];  /* the listener speaks TLS */
    struct tg_tls_server *tls;      /* server contexts of the current config */
    int accepting;              /* listeners started */
    ev_timer accept_retry;      /* after EMFILE/ENFILE or at max_connections */
    ev_timer heap_trim;         /* a while after the last reload: the spare Lua heap goes */
    ev_signal sigterm, sigint, sigquit, sighup, sigusr2;
    int report_fd;              /* reload reports to the master (master.h), or -1 */
    ev_timer shutdown_timer;
    ev_prepare prepare;         /* end of each loop turn: free closed conns, flush logs */
    int stopping;               /* graceful shutdown started */
    uint64_t requests;          /* served by this worker */
} tg_worker_t;

extern tg_worker_t tg_worker;

/* Runs a worker until it stops; returns the process exit code. report_fd:
 * where it answers a reload it leads (master.h), or -1. */
int tg_worker_run(tg_settings_t *s, const char *config_path, int id, int report_fd);
/* A connection closed: the worker may resume accepting or finish shutdown. */
void tg_worker_conn_closed(void);
/* Stops accepting when too many connections are open. */
void tg_worker_check_accept(void);
/* Stops accepting for a while (out of file descriptors). */
void tg_worker_pause_accept(double seconds);

#endif
