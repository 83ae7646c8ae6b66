/*
 * task.c: HTTP calls from Lua and timers, on socketless connections.
 *
 * Nothing here is freed under a callback that may still use it: finished
 * calls and timer runs go on a list freed at the end of the loop turn.
 */
#include <pthread.h>
#include <stdio.h>

#include "bridge.h"
#include "conn.h"
#include "http1.h"
#include "task.h"
#include "upstream.h"
#include "worker.h"

typedef struct task {
    tg_conn_t conn;             /* conn.internal: no socket */
    struct task *next;          /* the finished list */
    struct task *live_prev, *live_next; /* the runs and calls not finished yet */
} task_t;

typedef struct timer {
    ev_timer w;
    tg_gen_t *gen;
    int id;                     /* the callback in tollgate.timer's table */
    double every;               /* seconds; 0: once */
    int stopped;
    int started;                /* on the loop (not waiting for its generation to serve) */
    struct timer *next;
} timer_tt;

static task_t *finished;
static task_t *live;            /* for the worker's teardown */
static timer_tt *timers;        /* of generations that serve or did: the loop's */
/* Started by the constructors of a generation being built, in the worker's
 * build thread: they go on the loop when it is committed (a discarded one
 * never runs them). */
static timer_tt *starting;
static pthread_mutex_t starting_lock = PTHREAD_MUTEX_INITIALIZER;

static task_t *task_of(tg_req_t *r)
{
    return tg_container_of(r->conn, task_t, conn);
}

static task_t *task_new(void)
{
    task_t *t = tg_calloc(1, sizeof(*t));
    tg_sock_plain(&t->conn.sock, -1);
    t->conn.internal = 1;
    t->conn.state = TG_CONN_ACTIVE;
    tg_req_init(&t->conn.req, &t->conn);
    t->live_next = live;
    if (live)
        live->live_prev = t;
    live = t;
    return t;
}

static void task_finish(task_t *t)
{
    if (t->live_prev)
        t->live_prev->live_next = t->live_next;
    else if (live == t)
        live = t->live_next;
    if (t->live_next)
        t->live_next->live_prev = t->live_prev;
    t->live_prev = t->live_next = NULL;
    t->next = finished;
    finished = t;
}

/* The worker's teardown: timer runs still waiting (a sleep, an HTTP call)
 * are abandoned, their calls with them, and everything is freed. Client
 * requests' calls went with their connections (tg_conns_close_all). */
void tg_tasks_abandon_all(void)
{
    while (live) {
        task_t *t = live;
        tg_req_t *r = &t->conn.req;
        if (r->parent == NULL) {
            tg_lua_abandon(r); /* cancels its call, if any */
            task_finish(t);
        } else {
            tg_call_free(r); /* a call whose parent is gone */
        }
    }
    tg_tasks_free_finished();
}

void tg_tasks_free_finished(void)
{
    while (finished) {
        task_t *t = finished;
        finished = t->next;
        tg_req_reset(&t->conn.req);
        tg_buf_release(&t->conn.rbuf);
        tg_buf_release(&t->conn.wbuf);
        free(t);
    }
}

/* ---- calls ------------------------------------------------------------------ */

tg_req_t *tg_call_new(tg_req_t *parent, tg_peer_t *peer, const char *raw, size_t len,
                      double timeout, char *err, size_t errlen)
{
    if (parent == NULL) {
        snprintf(err, errlen, "HTTP calls run inside a request or a timer (not at load)");
        return NULL;
    }
    if (parent->call) {
        snprintf(err, errlen, "one call at a time per request");
        return NULL;
    }
    if (peer == NULL) {
        snprintf(err, errlen, "no such upstream");
        return NULL;
    }
    task_t *t = task_new();
    tg_conn_t *c = &t->conn;
    tg_req_t *r = &c->req;
    tg_http1_request_begin(c);
    tg_buf_append(&c->rbuf, raw, len);
    tg_buf_reserve(&c->rbuf, 1024);
    int rc = tg_http1_parse_head(c);
    if (rc == TG_OK && !r->body_done) {
        r->buffer_body = 1;
        r->body_started = 1;
        while (!r->body_done && c->rbuf.pos < c->rbuf.len && rc == TG_OK)
            if (tg_http1_parse_body(c) >= 400)
                rc = TG_ERROR;
        if (!r->body_done)
            rc = TG_ERROR;
    }
    if (rc != TG_OK) {
        snprintf(err, errlen, "invalid request: %s", tg_http1_error_reason(c));
        task_finish(t);
        return NULL;
    }
    r->parsed = 1;
    r->head_request = r->method == HTTP_HEAD;
    r->t_start = ev_time();
    r->parent = parent;
    r->resp_buffer = 1;         /* the whole response, then the caller resumes */
    r->proxy.peer = peer;
    r->proxy.timeout = timeout;
    parent->call = r;
    return r;
}

int tg_call_start_pending(tg_req_t *r)
{
    tg_req_t *call = r->call;
    if (call == NULL || call->call_started)
        return 0;
    call->call_started = 1;
    tg_proxy_start(call);
    return 1;
}

void tg_call_head(tg_req_t *call)
{
    if (call->proxy.error) {
        tg_call_done(call, call->proxy.error);
        return;
    }
    call->proxy.state = TG_PROXY_BODY;
    tg_proxy_resume_read(call);
}

void tg_call_done(tg_req_t *call, int status)
{
    tg_req_t *parent = call->parent;
    if (call->call_done)
        return;
    call->call_done = 1;
    call->call_status = status;
    if (parent && parent->lua == TG_LUA_WAIT)
        tg_lua_resume(parent, status);
}

int tg_call_status(tg_req_t *call, const char **reason)
{
    *reason = call->proxy.error_reason ? call->proxy.error_reason
                                       : call->resp_overflow ? "response larger than maxBufferedBody"
                                                             : "upstream failed";
    return call->call_status;
}

void tg_call_free(tg_req_t *call)
{
    if (call->parent && call->parent->call == call)
        call->parent->call = NULL;
    call->parent = NULL;
    tg_proxy_finish(call);
    task_finish(task_of(call));
}

void tg_call_cancel(tg_req_t *r)
{
    if (r->call)
        tg_call_free(r->call);
}

/* ---- timers ------------------------------------------------------------------- */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    timer_tt *t = tg_container_of(w, timer_tt, w);
    tg_unused(loop);
    tg_unused(revents);
    if (t->stopped || tg_worker.stopping)
        return;
    if (t->every <= 0)
        t->stopped = 1; /* a one-shot: done after this run */
    task_t *task = task_new();
    tg_lua_start_task(&task->conn.req, t->gen, t->id);
}

/* The handle of a timer that never runs: shared, never written. */
static timer_tt idle = { .stopped = 1 };

void *tg_timer_start(tg_req_t *r, double after, double every, int id)
{
    tg_gen_t *gen = r ? r->gen : tg_lua_loading_gen();
    if (gen == NULL || tg_worker.loop == NULL)
        return &idle; /* checking a config (tollgate -t, the master): nothing runs */
    if (r != NULL && tg_worker.stopping) /* (a constructor's: tg_timers_start_gen checks) */
        return &idle;
    timer_tt *t = tg_calloc(1, sizeof(*t));
    t->gen = gen;
    t->id = id;
    t->every = every;
    ev_timer_init(&t->w, on_timer, after < 0 ? 0 : after, every > 0 ? every : 0);
    if (r == NULL) { /* a constructor's: it runs once its generation serves */
        pthread_mutex_lock(&starting_lock);
        t->next = starting;
        starting = t;
        pthread_mutex_unlock(&starting_lock);
        return t;
    }
    t->next = timers;
    timers = t;
    t->started = 1;
    ev_timer_start(tg_worker.loop, &t->w);
    return t;
}

void tg_timer_stop(void *handle)
{
    timer_tt *t = handle;
    if (t == &idle)
        return;
    if (t->started)
        ev_timer_stop(tg_worker.loop, &t->w);
    t->started = 0;
    t->stopped = 1;
}

/* Takes gen's timers off the starting list: onto `to`, or freed. */
static void take_starting(tg_gen_t *gen, timer_tt **to)
{
    pthread_mutex_lock(&starting_lock);
    timer_tt **pp = &starting;
    while (*pp) {
        timer_tt *t = *pp;
        if (t->gen != gen) {
            pp = &t->next;
            continue;
        }
        *pp = t->next;
        if (to) {
            t->next = *to;
            *to = t;
        } else {
            free(t);
        }
    }
    pthread_mutex_unlock(&starting_lock);
}

void tg_timers_start_gen(tg_gen_t *gen)
{
    timer_tt *list = NULL;
    take_starting(gen, &list);
    while (list) {
        timer_tt *t = list;
        list = t->next;
        t->next = timers;
        timers = t;
        if (!t->stopped && !tg_worker.stopping) {
            t->started = 1;
            ev_timer_start(tg_worker.loop, &t->w);
        }
    }
}

void tg_timers_drop_gen(tg_gen_t *gen)
{
    take_starting(gen, NULL);
}

void tg_timers_stop_gen(tg_gen_t *gen)
{
    for (timer_tt *t = timers; t; t = t->next)
        if (t->gen == gen)
            tg_timer_stop(t);
}

/* Frees the timers of a generation whose Lua state is gone (nothing can
 * call tg_timer_stop on them any more). */
void tg_timers_free_gen(tg_gen_t *gen)
{
    timer_tt **pp = &timers;
    while (*pp) {
        timer_tt *t = *pp;
        if (t->gen == gen) {
            tg_timer_stop(t);
            *pp = t->next;
            free(t);
        } else {
            pp = &t->next;
        }
    }
}

void tg_timers_stop_all(void)
{
    for (timer_tt *t = timers; t; t = t->next)
        tg_timer_stop(t);
}

/* ---- a timer run's coroutine -------------------------------------------------- */

void tg_task_yielded(tg_req_t *r, int code)
{
    if (r->parent) {
        /* a call: its own coroutine never runs (only the parent's does) */
        return;
    }
    switch (code) {
    case TG_YIELD_WAIT:
        r->lua = TG_LUA_WAIT;
        tg_call_start_pending(r);
        break;
    default:
        /* DONE (PROXY/RESPOND mean nothing outside a request) */
        if (code != TG_YIELD_DONE)
            tg_lua_abandon(r);
        r->lua = TG_LUA_NONE;
        tg_call_cancel(r);
        task_finish(task_of(r));
        break;
    }
}
