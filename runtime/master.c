/*
 * master.c: the master process. It opens the listening sockets, forks the
 * workers, restarts a worker that dies, and on SIGTERM/SIGINT asks every
 * worker to stop gracefully and exits 0 once they have.
 *
 * The master runs no event loop and no Lua: it blocks its signals and
 * waits for them with sigtimedwait(), so signal handling is plain
 * sequential code.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "master.h"
#include "worker.h"

#define MAX_WORKERS 256
#define RESTART_DELAY_MAX 30.0

typedef struct child {
    pid_t pid;         /* 0 when not running */
    double started;    /* monotonic seconds */
    double restart_at; /* when a crashed worker is due to restart, or 0 */
    double delay;      /* backoff for a worker that keeps dying young */
} child_t;

static child_t children[MAX_WORKERS];
static int nchildren;

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int tg_master_listen(tg_settings_t *s, const char **err)
{
    static char msg[512];

    for (int i = 0; i < s->nlisten; i++) {
        tg_listen_t *l = &s->listen[i];
        struct addrinfo hints = { 0 }, *res;
        char port[8];
        snprintf(port, sizeof(port), "%d", l->port);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        int rc = getaddrinfo(strcmp(l->host, "*") == 0 ? NULL : l->host, port, &hints, &res);
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "cannot listen on %s:%d: %s", l->host, l->port,
                     gai_strerror(rc));
            *err = msg;
            return TG_ERROR;
        }
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (res->ai_family == AF_INET6) {
                int zero = 0; /* "::" takes IPv4 too, as Node does */
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
            }
        }
        if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
            snprintf(msg, sizeof(msg), "cannot listen on %s:%d: %s", l->host, l->port,
                     strerror(errno));
            if (fd >= 0)
                close(fd);
            freeaddrinfo(res);
            *err = msg;
            return TG_ERROR;
        }
        freeaddrinfo(res);
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        getsockname(fd, (struct sockaddr *) &ss, &len);
        l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                                 : ((struct sockaddr_in *) &ss)->sin_port);
        l->fd = fd;
        tg_log_info("listening on http://%s:%d", l->host, l->port);
    }
    return TG_OK;
}

static void spawn(tg_settings_t *s, const char *config_path, int id)
{
    pid_t pid = fork();
    if (pid < 0) {
        tg_log_error("fork: %s", strerror(errno));
        children[id].restart_at = now_mono() + 1;
        return;
    }
    if (pid == 0)
        _exit(tg_worker_run(s, config_path, id));
    children[id].pid = pid;
    children[id].started = now_mono();
    children[id].restart_at = 0;
}

static void reap(int stopping)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < nchildren; i++) {
            child_t *c = &children[i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            if (stopping) {
                if (WIFSIGNALED(status))
                    tg_log_warn("worker %d (pid %d) killed by signal %d while stopping", i,
                                (int) pid, WTERMSIG(status));
                break;
            }
            double lived = now_mono() - c->started;
            /* A worker that dies young is restarted with a growing delay,
             * so a crash loop does not become a fork storm. */
            c->delay = lived < 2 ? (c->delay ? c->delay * 2 : 0.1) : 0;
            if (c->delay > RESTART_DELAY_MAX)
                c->delay = RESTART_DELAY_MAX;
            c->restart_at = now_mono() + c->delay;
            if (WIFSIGNALED(status))
                tg_log_error("worker %d (pid %d) killed by signal %d; restarting", i, (int) pid,
                             WTERMSIG(status));
            else
                tg_log_error("worker %d (pid %d) exited with status %d; restarting", i,
                             (int) pid, WEXITSTATUS(status));
            break;
        }
    }
}

static int running(void)
{
    int n = 0;
    for (int i = 0; i < nchildren; i++)
        n += children[i].pid != 0;
    return n;
}

static void signal_all(int sig)
{
    for (int i = 0; i < nchildren; i++)
        if (children[i].pid)
            kill(children[i].pid, sig);
}

static void close_listeners(tg_settings_t *s)
{
    for (int i = 0; i < s->nlisten; i++) {
        if (s->listen[i].fd >= 0)
            close(s->listen[i].fd);
        s->listen[i].fd = -1;
    }
}

int tg_master_run(tg_settings_t *s, const char *config_path, int workers)
{
    sigset_t set;
    int stopping = 0;
    double deadline = 0;

    if (workers > MAX_WORKERS)
        workers = MAX_WORKERS;
    nchildren = workers;
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);

    tg_log_info("starting %d worker%s", workers, workers == 1 ? "" : "s");
    for (int i = 0; i < workers; i++)
        spawn(s, config_path, i);

    for (;;) {
        double now = now_mono();
        double wait = 1.0;
        for (int i = 0; i < nchildren && !stopping; i++) {
            child_t *c = &children[i];
            if (c->pid == 0 && c->restart_at > 0) {
                if (c->restart_at <= now)
                    spawn(s, config_path, i);
                else if (c->restart_at - now < wait)
                    wait = c->restart_at - now;
            }
        }
        if (stopping) {
            if (running() == 0)
                break;
            if (now >= deadline) {
                tg_log_error("workers did not stop in time; killing them");
                signal_all(SIGKILL);
                deadline = now + 5;
            }
        }

        struct timespec ts = { (time_t) wait, (long) ((wait - (double) (time_t) wait) * 1e9) };
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        if (sig < 0)
            continue; /* timeout or EINTR */
        switch (sig) {
        case SIGCHLD:
            reap(stopping);
            break;
        case SIGTERM:
        case SIGINT:
        case SIGQUIT:
            if (!stopping) {
                tg_log_info("%s: stopping workers",
                            sig == SIGQUIT ? "SIGQUIT" : sig == SIGINT ? "SIGINT" : "SIGTERM");
                stopping = 1;
                deadline = now_mono() + s->shutdown_timeout + 5;
                close_listeners(s);
            }
            signal_all(sig == SIGQUIT ? SIGQUIT : SIGTERM);
            break;
        case SIGHUP:
            tg_log_warn("SIGHUP: configuration reload is not available in this version; "
                        "restart the gateway to apply changes");
            break;
        }
    }
    close_listeners(s);
    tg_log_info("stopped");
    return 0;
}
