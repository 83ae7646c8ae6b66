/*
 * worker.c: one worker process: its loop, its Lua state, accepting on the
 * listeners the master opened, and graceful shutdown.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge.h"
#include "conn.h"
#include "genheap.h"
#include "http1.h"
#include "log.h"
#include "master.h"
#include "resolver.h"
#include "task.h"
#include "upstream.h"
#include "worker.h"

tg_worker_t tg_worker;
int tg_worker_abandoned_build; /* stopped with a build running: nothing freed (lsan_exit.c) */

static void start_listeners(void)
{
    if (tg_worker.accepting || tg_worker.stopping)
        return;
    for (int i = 0; i < tg_worker.settings->nlisten; i++)
        ev_io_start(tg_worker.loop, &tg_worker.listeners[i]);
    tg_worker.accepting = 1;
}

static void stop_listeners(void)
{
    if (!tg_worker.accepting)
        return;
    for (int i = 0; i < tg_worker.settings->nlisten; i++)
        ev_io_stop(tg_worker.loop, &tg_worker.listeners[i]);
    tg_worker.accepting = 0;
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_unused(loop);
    tg_unused(w);
    tg_unused(revents);
    if (tg_worker.nconns < tg_worker.settings->max_connections)
        start_listeners();
}

void tg_worker_pause_accept(double seconds)
{
    stop_listeners();
    ev_timer_stop(tg_worker.loop, &tg_worker.accept_retry);
    ev_timer_set(&tg_worker.accept_retry, seconds, 0);
    ev_timer_start(tg_worker.loop, &tg_worker.accept_retry);
}

void tg_worker_check_accept(void)
{
    if (tg_worker.nconns >= tg_worker.settings->max_connections && tg_worker.accepting) {
        tg_log_rate_limited(TG_LOG_WARN, "%d connections open (maxConnections); pausing accepts",
                            tg_worker.nconns);
        stop_listeners();
    }
}

void tg_worker_conn_closed(void)
{
    if (tg_worker.stopping) {
        if (tg_worker.nconns == 0)
            ev_break(tg_worker.loop, EVBREAK_ALL);
        return;
    }
    if (!tg_worker.accepting && !ev_is_active(&tg_worker.accept_retry) &&
        tg_worker.nconns < tg_worker.settings->max_connections)
        start_listeners();
}

static void on_shutdown_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_unused(w);
    tg_unused(revents);
    tg_log_warn("shutdown timeout: closing %d connections still busy", tg_worker.nconns);
    tg_conns_close_all();
    ev_break(loop, EVBREAK_ALL);
}

static void copy_runtime_settings(tg_settings_t *dst, tg_settings_t *src);

/* The calling thread's CPU time: a reload's own cost, apart from waiting
 * for a core other threads and processes hold. */
static double cpu_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The lead's answer to the master (master.h): one datagram. */
static void report(int status, const tg_settings_t *loaded, const char *err)
{
    static char buf[TG_RELOAD_REPORT_MAX];
    tg_reload_report_t r = {
        .pid = (int32_t) getpid(),
        .status = status,
        .generation = tg_lua_generation(),
        .workers = loaded->workers,
        .watch = loaded->watch,
        .log_level = loaded->log_level,
        .shutdown_timeout = loaded->shutdown_timeout,
        .reload_timeout = loaded->reload_timeout,
    };
    size_t n = sizeof(r);
    const char *head[2] = { err ? err : "", loaded->access_log ? loaded->access_log : "" };
    for (int i = 0; i < 2; i++) {
        size_t len = strnlen(head[i], 4096);
        memcpy(buf + n, head[i], len);
        n += len;
        buf[n++] = '\0';
    }
    for (int i = 0; i < loaded->nfiles; i++) {
        size_t len = strlen(loaded->files[i]);
        if (n + len + 1 > sizeof(buf)) {
            tg_log_warn("reload: %d of the config's %d files are too many to report; the "
                        "rest are not watched", loaded->nfiles - i, loaded->nfiles);
            break;
        }
        memcpy(buf + n, loaded->files[i], len + 1);
        n += len + 1;
        r.nfiles++;
    }
    memcpy(buf, &r, sizeof(r));
    while (send(tg_worker.report_fd, buf, n, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR) {
            tg_log_error("reload: cannot report to the master: %s", strerror(errno));
            return;
        }
    }
}

/* ---- reloads ------------------------------------------------------------------
 *
 * A reload builds the new generation in a thread of its own, beside the
 * loop, which goes on serving the current one: the build (tens of ms for a
 * thousand routes, at a lower priority) stalls no request, and a policy
 * constructor that never returns hangs the build, not the worker. When
 * the build ends the loop commits it (or drops it) and, if the master
 * asked this worker first, answers the master. A trigger during a build gives one more build after
 * it. A build that runs longer than reloadTimeout is given up: the worker
 * answers or logs that it is refused, and serves on; its thread is left
 * to end on its own (it cannot be stopped) and what it built is dropped.
 * What a build touches besides its own Lua state is thread-safe: the
 * genheap pool, the regex and chunk caches, peers and TLS clients are
 * under locks; the timers its constructors start wait for the commit
 * (task.c); what the load sets is the thread's (bridge.c). */

#define HEAP_TRIM_AFTER 60.0 /* seconds without a reload before the heap pool is unmapped */
#define BUILD_SLOW 10.0 /* seconds: a build this long is logged, and again as often */

typedef struct build {
    pthread_t thread;
    int lead;                /* the master asked this worker first: answer it */
    double t0;               /* when it started (wall clock) */
    double cpu;              /* its thread's CPU, seconds */
    tg_gen_t *gen;           /* what it built, or NULL */
    tg_settings_t loaded;    /* what the config sets */
    char err[4096];          /* why it failed */
    atomic_int finished;
    struct build *next;      /* the abandoned list */
} build_t;

static build_t *building;     /* the build in progress */
static build_t *abandoned;    /* given up (reloadTimeout), their threads still running */
static int build_again;       /* triggered during it: one more after it */
static int build_again_lead;  /* ... and that one answers the master */
static ev_async build_done;
static ev_timer build_slow;   /* every BUILD_SLOW seconds of a build: logged */
static ev_timer build_stuck;  /* reloadTimeout: the build is given up */

static void *build_main(void *arg)
{
    build_t *b = arg;
    const char *err = NULL;
    double c0 = cpu_time();

    b->gen = tg_lua_generation_build(tg_worker.config_path, &b->loaded, &err);
    if (b->gen == NULL)
        snprintf(b->err, sizeof(b->err), "%s", err ? err : "the build failed");
    b->cpu = cpu_time() - c0;
    atomic_store(&b->finished, 1);
    ev_async_send(tg_worker.loop, &build_done);
    return NULL;
}

static void build_start(int lead)
{
    build_t *b = tg_calloc(1, sizeof(*b));

    b->lead = lead && tg_worker.report_fd >= 0;
    b->t0 = ev_time();
    /* Ten nice levels below the loop: on a core that serves, the build
     * takes what serving leaves, and still gets a tenth or so of it; on an
     * idle core it runs at full speed. */
    int rc = tg_thread_start(&b->thread, (size_t) 8 << 20, 10, build_main, b);
    if (rc != 0) {
        /* no thread to be had: build here, as a worker did before it had one */
        tg_log_warn("reload: cannot start a build thread (%s); building in the loop", strerror(rc));
        build_main(b);
        b->thread = pthread_self();
    }
    building = b;
    ev_timer_set(&build_slow, BUILD_SLOW, BUILD_SLOW);
    ev_timer_start(tg_worker.loop, &build_slow);
    if (tg_worker.settings->reload_timeout > 0) {
        ev_timer_set(&build_stuck, tg_worker.settings->reload_timeout, 0);
        ev_timer_start(tg_worker.loop, &build_stuck);
    }
}

static void build_finish(build_t *b);

static void build_join(build_t *b)
{
    if (!pthread_equal(b->thread, pthread_self()))
        pthread_join(b->thread, NULL);
}

/* Abandoned builds that have ended after all: what they built is dropped. */
static void reap_abandoned(void)
{
    build_t **pp = &abandoned;
    while (*pp) {
        build_t *b = *pp;
        if (!atomic_load(&b->finished)) {
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        build_join(b);
        tg_log_info("reload: the build given up %.0f s after it started has ended; what it "
                    "built is dropped", ev_time() - b->t0);
        if (b->gen)
            tg_lua_generation_discard(b->gen);
        tg_settings_free(&b->loaded);
        free(b);
    }
}

static void build_next(void)
{
    if (build_again && !tg_worker.stopping) {
        int lead = build_again_lead;
        build_again = build_again_lead = 0;
        build_start(lead);
    }
}

static void on_build_done(struct ev_loop *loop, ev_async *w, int revents)
{
    tg_unused(w);
    tg_unused(revents);
    reap_abandoned();
    build_t *b = building;
    if (b == NULL || !atomic_load(&b->finished))
        return;
    build_join(b);
    building = NULL;
    ev_timer_stop(loop, &build_slow);
    ev_timer_stop(loop, &build_stuck);
    build_finish(b);
    free(b);
    build_next();
}

/* reloadTimeout: the build is given up. Its thread cannot be stopped (a
 * constructor in an endless loop never yields), so it is left to end on
 * its own, and the worker answers now: the reload is refused. */
static void on_build_stuck(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_unused(w);
    tg_unused(revents);
    build_t *b = building;
    if (b == NULL || atomic_load(&b->finished))
        return; /* it has just ended: on_build_done takes it */
    building = NULL;
    ev_timer_stop(loop, &build_slow);
    b->next = abandoned;
    abandoned = b;
    char err[600];
    snprintf(err, sizeof(err), "%s: the new configuration was still building after %.0f s "
             "(tollgate.reloadTimeout; a policy constructor that does not return?): given up",
             tg_worker.config_path, ev_time() - b->t0);
    if (b->lead) {
        tg_settings_t none; /* what the config sets is the build thread's still */
        tg_settings_defaults(&none);
        report(TG_RELOAD_REFUSED, &none, err);
    } else {
        tg_log_error("reload failed, still serving the previous configuration: %s", err);
    }
    build_next();
}

static void on_build_slow(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_unused(loop);
    tg_unused(w);
    tg_unused(revents);
    if (building)
        tg_log_warn("reload: the new configuration has been building for %.0f s (a policy "
                    "constructor that does not return?); the previous one serves meanwhile",
                    ev_time() - building->t0);
}

/* The loop's half of a reload: a failure leaves everything as it was;
 * requests in flight finish in the old generation. The lead does not apply
 * a config that listens elsewhere (the master starts new workers). */
static void build_finish(build_t *b)
{
    tg_settings_t *loaded = &b->loaded;
    const char *err = NULL;
    double c0 = cpu_time();

    if (tg_worker.stopping) { /* too late to serve it */
        if (b->gen)
            tg_lua_generation_discard(b->gen);
        tg_settings_free(loaded);
        return;
    }
    if (b->gen == NULL) {
        if (b->lead)
            report(TG_RELOAD_REFUSED, loaded, b->err); /* the master logs it */
        else
            tg_log_error("reload failed, still serving the previous configuration: %s", b->err);
        tg_settings_free(loaded);
        return;
    }
    if (b->lead && !tg_settings_same_listeners(tg_worker.settings, loaded)) {
        tg_lua_generation_discard(b->gen);
        report(TG_RELOAD_LISTENERS, loaded, NULL);
        tg_settings_free(loaded);
        return;
    }
    tg_lua_generation_commit(b->gen);
    if (b->lead)
        report(TG_RELOAD_APPLIED, loaded, NULL);
    tg_settings_t *s = tg_worker.settings;
    int reopen = (loaded->access_log == NULL) != (s->access_log == NULL) ||
                 (loaded->access_log && strcmp(loaded->access_log, s->access_log) != 0);
    char *access_log = loaded->access_log;
    loaded->access_log = NULL;
    for (int i = 0; i < loaded->nlisten; i++)
        free(loaded->listen[i].host);
    loaded->nlisten = 0;
    copy_runtime_settings(s, loaded);
    if (reopen) {
        if (tg_access_log_open(access_log, &err) != TG_OK) {
            tg_log_error("cannot open the access log %s: %s; keeping the previous one",
                         access_log, err);
            tg_access_log_open(s->access_log, &err);
            free(access_log);
        } else {
            free(s->access_log);
            s->access_log = access_log;
        }
    } else {
        free(access_log);
    }
    tg_log_level = s->log_level;
    tg_http1_init(s->max_head_size);
    tg_log_info("configuration reloaded (generation %u) in %.1f ms (%.1f ms CPU)",
                tg_lua_generation(), (ev_time() - b->t0) * 1000,
                (b->cpu + cpu_time() - c0) * 1000);
    /* the old generation's heap is pooled when it closes: unmapped if no reload follows */
    ev_timer_stop(tg_worker.loop, &tg_worker.heap_trim);
    ev_timer_set(&tg_worker.heap_trim, HEAP_TRIM_AFTER, 0);
    ev_timer_start(tg_worker.loop, &tg_worker.heap_trim);
}

static void on_heap_trim(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_unused(loop);
    tg_unused(w);
    tg_unused(revents);
    tg_log_debug("no reload for %.0f s: unmapping %zu KB of spare Lua heap", HEAP_TRIM_AFTER,
                 tg_genheap_pooled() >> 10);
    tg_genheap_trim();
    /* and what malloc keeps free: the large blocks of the states the build
     * and closer threads handled sit in those threads' arenas */
    malloc_trim(0);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    tg_unused(loop);
    tg_unused(revents);
    int lead = w->signum == SIGUSR2;
    if (tg_worker.stopping)
        return;
    if (building) {
        tg_log_debug("reload: a build is under way; another follows it");
        build_again = 1;
        build_again_lead |= lead;
        return;
    }
    build_start(lead);
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
    tg_unused(revents);
    if (w->signum == SIGQUIT) {
        tg_conns_close_all();
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (tg_worker.stopping)
        return;
    tg_worker.stopping = 1;
    tg_timers_stop_all();
    stop_listeners();
    /* Close them too (the master does the same with its copies): new
     * clients are refused at once and can go elsewhere, instead of
     * waiting in the backlog of a gateway that is leaving. */
    for (int i = 0; i < tg_worker.settings->nlisten; i++) {
        close(tg_worker.settings->listen[i].fd);
        tg_worker.settings->listen[i].fd = -1;
    }
    ev_timer_stop(loop, &tg_worker.accept_retry);
    ev_timer_stop(loop, &tg_worker.heap_trim);
    tg_conns_close_idle();
    tg_peers_close_idle();
    if (tg_worker.nconns == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    tg_log_info("stopping: waiting for %d connections", tg_worker.nconns);
    ev_timer_init(&tg_worker.shutdown_timer, on_shutdown_timeout,
                  tg_worker.settings->shutdown_timeout, 0);
    ev_timer_start(loop, &tg_worker.shutdown_timer);
}

/* End of each loop turn: free what was closed, flush the access log. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    tg_unused(loop);
    tg_unused(w);
    tg_unused(revents);
    tg_conns_free_closed();
    tg_upstream_free_closed();
    tg_tasks_free_finished();
    tg_lua_collect();
    tg_access_log_flush();
}

/* The https listener's contexts for a config (kept in tg_worker.tls): the
 * ones its load made, or made here. */
static int use_tls(tg_settings_t *src)
{
    char msg[600];
    tg_tls_server_t *srv = src->tls_server;
    src->tls_server = NULL;
    if (src->tls.ncerts == 0) {
        tg_tls_server_free(srv);
        return TG_OK;
    }
    if (srv == NULL)
        srv = tg_tls_server_new(&src->tls, msg, sizeof(msg));
    if (srv == NULL) {
        tg_log_error("TLS: %s", msg);
        return TG_ERROR;
    }
    tg_tls_server_free(tg_worker.tls); /* connections keep their own reference */
    tg_worker.tls = srv;
    return TG_OK;
}

static void copy_runtime_settings(tg_settings_t *dst, tg_settings_t *src)
{
    /* Everything but the listeners (the master opened them), the access
     * log (reopened by the caller when it changed) and what only the
     * master uses (watched files, pid file); src's copies are freed. */
    tg_settings_t keep = *dst;
    for (int i = 0; i < src->nfiles; i++)
        free(src->files[i]);
    free(src->files);
    free(src->pid_file);
    use_tls(src); /* a failure keeps the previous certificates */
    tg_tls_config_free(&src->tls);
    *dst = *src;
    memcpy(dst->listen, keep.listen, sizeof(keep.listen));
    dst->nlisten = keep.nlisten;
    dst->access_log = keep.access_log;
    dst->files = keep.files;
    dst->nfiles = keep.nfiles;
    dst->pid_file = keep.pid_file;
    dst->tls = keep.tls;
}

int tg_worker_run(tg_settings_t *s, const char *config_path, int id, int report_fd)
{
    sigset_t none;
    const char *err = NULL;
    tg_settings_t loaded;

    tg_process_role = "worker";
    tg_worker.id = id;
    tg_worker.settings = s;
    tg_worker.report_fd = report_fd;
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the master */

    tg_worker.loop = ev_loop_new(EVFLAG_AUTO);
    if (tg_worker.loop == NULL) {
        tg_log_error("cannot create an event loop");
        return 2;
    }
    tg_worker.config_path = config_path;
    if (tg_lua_generation_load(config_path, &loaded, &err) != TG_OK) {
        tg_log_error("%s", err);
        return 2;
    }
    for (int i = 0; i < loaded.nlisten; i++)
        free(loaded.listen[i].host);
    free(loaded.access_log);
    loaded.access_log = NULL;
    loaded.nlisten = 0;
    copy_runtime_settings(s, &loaded);
    tg_log_level = s->log_level;
    if (tg_access_log_open(s->access_log, &err) != TG_OK) {
        tg_log_error("cannot open the access log %s: %s", s->access_log, err);
        return 2;
    }
    tg_http1_init(s->max_head_size);

    for (int i = 0; i < s->nlisten; i++) {
        ev_io_init(&tg_worker.listeners[i], tg_conn_accept, s->listen[i].fd, EV_READ);
        tg_worker.listeners[i].data = (void *) (uintptr_t) s->listen[i].port;
        tg_worker.listen_tls[i] = s->listen[i].tls;
    }
    ev_init(&tg_worker.accept_retry, on_accept_retry);
    ev_init(&tg_worker.heap_trim, on_heap_trim);
    ev_init(&build_slow, on_build_slow);
    ev_init(&build_stuck, on_build_stuck);
    ev_async_init(&build_done, on_build_done);
    ev_async_start(tg_worker.loop, &build_done);
    ev_signal_init(&tg_worker.sigterm, on_stop, SIGTERM);
    ev_signal_init(&tg_worker.sigint, on_stop, SIGINT);
    ev_signal_init(&tg_worker.sigquit, on_stop, SIGQUIT);
    ev_signal_init(&tg_worker.sighup, on_hup, SIGHUP);
    ev_signal_init(&tg_worker.sigusr2, on_hup, SIGUSR2);
    ev_signal_start(tg_worker.loop, &tg_worker.sighup);
    ev_signal_start(tg_worker.loop, &tg_worker.sigusr2);
    ev_signal_start(tg_worker.loop, &tg_worker.sigterm);
    ev_signal_start(tg_worker.loop, &tg_worker.sigint);
    ev_signal_start(tg_worker.loop, &tg_worker.sigquit);
    /* signals stay blocked (from main) until their watchers exist: a
     * SIGHUP or SIGTERM sent while the config loads waits, it does not kill */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    tg_lua_close_beside(); /* old generations are closed in a thread of their own */
    ev_prepare_init(&tg_worker.prepare, on_prepare);
    ev_prepare_start(tg_worker.loop, &tg_worker.prepare);
    start_listeners();

    if (getppid() == 1) /* the master died before prctl took effect */
        return 0;
    tg_log_debug("worker %d ready", id);
    ev_run(tg_worker.loop, 0);

    tg_worker.stopping = 1;
    on_build_done(tg_worker.loop, &build_done, 0); /* what has ended is discarded */
    build_t *running = building ? building : abandoned;
    if (running) {
        /* a build that does not end (a constructor that never returns): it
         * may still use what the teardown would free, so nothing is freed */
        tg_log_warn("stopping with a reload still building (for %.0f s); it is abandoned",
                    ev_time() - running->t0);
        tg_worker_abandoned_build = 1;
        return 0;
    }
    tg_timers_stop_all();
    tg_conns_close_all();
    tg_conns_free_closed();
    tg_tasks_abandon_all();
    tg_resolver_stop();
    tg_peers_free();
    tg_access_log_close();
    tg_lua_shutdown();
    tg_genheap_trim();
    tg_tls_server_free(tg_worker.tls);
    tg_worker.tls = NULL;
    ev_loop_destroy(tg_worker.loop);
    tg_worker.loop = NULL;
    tg_buf_drain_cache();
    return 0;
}
