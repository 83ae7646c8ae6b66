/*
 * task.h: work that runs Lua or talks HTTP without a client connection:
 *
 *   calls   an HTTP request a coroutine makes to another service
 *           (tollgate.http): it goes through the same upstream code as the
 *           proxy (pool, TLS, timeouts), and its whole response is read
 *           before the waiting coroutine resumes;
 *   timers  Lua functions run after a delay or periodically
 *           (tollgate.timer), each run in its own coroutine, so they can
 *           sleep and make calls like a policy.
 *
 * Both are requests on a socketless connection (conn->internal): the rest
 * of the runtime treats them as requests, and conn.c hands their events
 * here instead of to a client socket.
 *
 * Timers belong to the Lua generation that made them: a reload stops the
 * old generation's timers (a run in progress finishes), and so does the
 * worker's shutdown.
 */
#ifndef TG_TASK_H
#define TG_TASK_H

#include "req.h"

typedef struct tg_gen tg_gen_t;

/* ---- calls ------------------------------------------------------------------ */

/* Prepares a call for the coroutine of parent: raw is the whole request
 * (head and body); the call starts when the coroutine yields WAIT. NULL
 * with err when raw does not parse. */
TG_EXPORT tg_req_t *tg_call_new(tg_req_t *parent, tg_peer_t *peer, const char *raw,
                                size_t len, double timeout, char *err, size_t errlen);
/* After the coroutine resumed: 0, or 502/504 and the reason. */
TG_EXPORT int tg_call_status(tg_req_t *call, const char **reason);
TG_EXPORT void tg_call_free(tg_req_t *call);

/* conn.c hooks for socketless requests */
void tg_task_yielded(tg_req_t *r, int code);   /* the coroutine of a timer run stopped */
void tg_call_head(tg_req_t *call);             /* a call's response head is in (or it failed) */
void tg_call_done(tg_req_t *call, int status); /* a call's response is complete (or failed) */
/* The coroutine of r is being dropped: cancel its call, if any. */
void tg_call_cancel(tg_req_t *r);
/* Starts the call r's coroutine is waiting for, if any; true if it did. */
int tg_call_start_pending(tg_req_t *r);

/* ---- timers ------------------------------------------------------------------- */

/* Runs Lua callback `id` (tollgate.timer's table of the generation of r,
 * or of the generation being loaded when r is NULL) after `after`
 * seconds, then every `every` seconds (0: once). Returns a handle. */
TG_EXPORT void *tg_timer_start(tg_req_t *r, double after, double every, int id);
TG_EXPORT void tg_timer_stop(void *handle);

/* A constructor's timers wait for their generation: started when it is
 * committed, dropped when it is discarded (either may be called from the
 * thread that built it, or the loop's). */
void tg_timers_start_gen(tg_gen_t *gen);       /* a generation is committed (the loop's thread) */
void tg_timers_drop_gen(tg_gen_t *gen);        /* a generation is discarded */
void tg_timers_stop_gen(tg_gen_t *gen);        /* a generation is retired */
void tg_timers_free_gen(tg_gen_t *gen);        /* a generation's Lua state is closed */
void tg_timers_stop_all(void);                 /* the worker is stopping */
void tg_tasks_abandon_all(void);               /* the worker's teardown */
void tg_tasks_free_finished(void);             /* end of a loop turn */

#endif
