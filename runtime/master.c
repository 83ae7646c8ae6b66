/*
 * master.c: the master process. It opens the listening sockets, forks the
 * workers, restarts a worker that dies, reloads the configuration, and on
 * SIGTERM/SIGINT asks every worker to stop gracefully and exits 0 once
 * they have.
 *
 * The master runs no event loop and no Lua state of its own (it makes a
 * short-lived one to check a config): it blocks its signals, reads them
 * from a signalfd, and polls that and an inotify descriptor, so signal
 * handling is plain sequential code.
 *
 * Reload (SIGHUP, `tollgate reload`, or a watched file changing): one
 * worker, the lead, builds the new generation first (SIGUSR2) and reports
 * on a socket. Its build is the check `tollgate -t` makes, so the config
 * is built once per worker and never by the master as well: a reload
 * costs the serving cores half as much. If the config is bad, the master
 * logs why and nothing changes. If it is good and only the pipelines,
 * policies, timeouts... changed, the lead already serves it and the other
 * workers follow (SIGHUP). If the listeners or the number of workers
 * changed, the master checks the config itself (it needs the listeners),
 * opens the new ones and starts a new set of workers, then stops the old
 * ones gracefully. With no worker running, the master checks it itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"
#include "master.h"
#include "worker.h"

#define MAX_WORKERS 256
#define RESTART_DELAY_MAX 30.0
#define DEBOUNCE 0.3 /* seconds of quiet after a file change before reloading */
/* Seconds the master waits for the lead worker's report: the lead gives its
 * build reloadTimeout and then answers itself (refused), so this is a
 * margin over it, or the whole wait when reloadTimeout is 0 (no limit). */
#define LEAD_MARGIN 5.0
#define LEAD_WAIT_UNLIMITED 60.0

typedef struct child {
    pid_t pid;         /* 0 when not running */
    double started;    /* monotonic seconds */
    double restart_at; /* when a crashed worker is due to restart, or 0 */
    double delay;      /* backoff for a worker that keeps dying young */
} child_t;

static child_t children[MAX_WORKERS];
static int nchildren;
static pid_t draining[MAX_WORKERS * 4]; /* workers of a previous set, stopping */
static int ndraining;
static int sigfd = -1, inofd = -1;
static int repfd[2] = { -1, -1 }; /* reload reports: [0] the master's end, [1] the workers' */
static int stopping;                 /* SIGTERM/SIGINT/SIGQUIT: the workers are stopping */
/* A reload the lead worker is building (see reload()) */
static struct {
    pid_t pid;       /* the lead worker building the new config, or 0 */
    int lead;        /* its index */
    double deadline; /* when the master stops waiting for it */
    int again;       /* a trigger came meanwhile: reload again once it answers */
} pending;
static tg_settings_t *settings;
static const char *config;
static int workers_wanted; /* -w, or 0: the config decides */
static char pidfile[PATH_MAX];

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ---- listeners ------------------------------------------------------------ */

static int open_listener(tg_listen_t *l, const char **err)
{
    static char msg[512];
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
    tg_log_info("listening on %s://%s:%d", l->tls ? "https" : "http", l->host, l->port);
    return TG_OK;
}

int tg_master_listen(tg_settings_t *s, const char **err)
{
    for (int i = 0; i < s->nlisten; i++)
        if (open_listener(&s->listen[i], err) != TG_OK)
            return TG_ERROR;
    return TG_OK;
}

static void close_listeners(tg_settings_t *s)
{
    for (int i = 0; i < s->nlisten; i++) {
        if (s->listen[i].fd >= 0)
            close(s->listen[i].fd);
        s->listen[i].fd = -1;
    }
}

/* ---- pid file --------------------------------------------------------------- */

const char *tg_master_pidfile(const char *config_path, const char *configured)
{
    static char path[PATH_MAX];
    char real[PATH_MAX];

    if (configured && *configured) {
        snprintf(path, sizeof(path), "%s", configured);
        return path;
    }
    /* Named after the config's absolute path, so `tollgate reload -c FILE`
     * finds the master serving FILE without any setting. */
    if (realpath(config_path, real) == NULL)
        snprintf(real, sizeof(real), "%s", config_path);
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = real; *p; p++) {
        h ^= (unsigned char) *p;
        h *= 0x100000001b3ull;
    }
    const char *dir = getenv("XDG_RUNTIME_DIR");
    snprintf(path, sizeof(path), "%s/tollgate-%016llx.pid", dir && *dir ? dir : "/tmp",
             (unsigned long long) h);
    return path;
}

static void write_pidfile(void)
{
    snprintf(pidfile, sizeof(pidfile), "%s", tg_master_pidfile(config, settings->pid_file));
    FILE *f = fopen(pidfile, "w");
    if (f == NULL) {
        tg_log_warn("cannot write the pid file %s: %s (tollgate reload will not find this "
                    "master; SIGHUP still reloads)", pidfile, strerror(errno));
        pidfile[0] = '\0';
        return;
    }
    fprintf(f, "%d\n", (int) getpid());
    fclose(f);
}

/* ---- watching ----------------------------------------------------------------- */

typedef struct watch {
    int wd;
    char dir[PATH_MAX * 2];
} watch_t;

static watch_t *watches;
static int nwatches;
static char **watched;  /* absolute paths of the files that trigger a reload */
static int nwatched;

static void watch_files(const tg_settings_t *s);

/* After a refused reload: the current files, plus the ones the refused
 * config read (fixing any of them reloads). */
static void watch_also(const tg_settings_t *cur, const tg_settings_t *refused)
{
    tg_settings_t both = *cur;
    both.nfiles = 0;
    both.files = tg_calloc((size_t) (cur->nfiles + refused->nfiles) + 1, sizeof(char *));
    for (int i = 0; i < cur->nfiles; i++)
        both.files[both.nfiles++] = cur->files[i];
    for (int i = 0; i < refused->nfiles; i++)
        both.files[both.nfiles++] = refused->files[i];
    watch_files(&both);
    free(both.files);
}

static void watch_files(const tg_settings_t *s)
{
    for (int i = 0; i < nwatches; i++)
        inotify_rm_watch(inofd, watches[i].wd);
    for (int i = 0; i < nwatched; i++)
        free(watched[i]);
    nwatches = nwatched = 0;
    free(watches);
    free(watched);
    watches = NULL;
    watched = NULL;
    if (!s->watch || inofd < 0)
        return;

    watches = tg_calloc((size_t) s->nfiles + 1, sizeof(*watches));
    watched = tg_calloc((size_t) s->nfiles + 1, sizeof(*watched));
    for (int i = 0; i < s->nfiles; i++) {
        char abs[PATH_MAX * 2], dir[PATH_MAX * 2];
        const char *f = s->files[i];
        if (f[0] == '/') {
            snprintf(abs, sizeof(abs), "%s", f);
        } else {
            char cwd[PATH_MAX];
            if (getcwd(cwd, sizeof(cwd)) == NULL)
                continue;
            snprintf(abs, sizeof(abs), "%s/%s", cwd, f);
        }
        watched[nwatched++] = tg_strndup(abs, strlen(abs));
        /* Watch the directory: editors replace files by renaming. */
        snprintf(dir, sizeof(dir), "%s", abs);
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            continue;
        *slash = '\0';
        int seen = 0;
        for (int k = 0; k < nwatches && !seen; k++)
            seen = strcmp(watches[k].dir, dir) == 0;
        if (seen)
            continue;
        int wd = inotify_add_watch(inofd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
                                                   IN_DELETE | IN_ATTRIB);
        if (wd < 0) {
            tg_log_warn("cannot watch %s: %s", dir, strerror(errno));
            continue;
        }
        watches[nwatches].wd = wd;
        snprintf(watches[nwatches].dir, sizeof(watches[nwatches].dir), "%s", dir);
        nwatches++;
    }
}

/* Reads inotify events; true when one concerns a watched file. */
static int files_changed(void)
{
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    for (;;) {
        ssize_t n = read(inofd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *) p;
            p += sizeof(*ev) + ev->len;
            if (ev->len == 0)
                continue;
            for (int i = 0; i < nwatches; i++) {
                if (watches[i].wd != ev->wd)
                    continue;
                char path[PATH_MAX * 3];
                snprintf(path, sizeof(path), "%s/%s", watches[i].dir, ev->name);
                for (int k = 0; k < nwatched; k++)
                    if (strcmp(watched[k], path) == 0)
                        hit = 1;
            }
        }
    }
    return hit;
}

/* ---- workers -------------------------------------------------------------------- */

static void spawn(int id)
{
    pid_t pid = fork();
    if (pid < 0) {
        tg_log_error("fork: %s", strerror(errno));
        children[id].restart_at = now_mono() + 1;
        return;
    }
    if (pid == 0) {
        close(sigfd);
        if (inofd >= 0)
            close(inofd);
        if (repfd[0] >= 0)
            close(repfd[0]);
        _exit(tg_worker_run(settings, config, id, repfd[1]));
    }
    children[id].pid = pid;
    children[id].started = now_mono();
    children[id].restart_at = 0;
}

static void lead_done(void);

static void reap(void)
{
    int status, lead_died = 0;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int found = 0;
        for (int i = 0; i < ndraining && !found; i++) {
            if (draining[i] == pid) {
                draining[i] = draining[--ndraining];
                found = 1;
            }
        }
        for (int i = 0; i < nchildren && !found; i++) {
            child_t *c = &children[i];
            if (c->pid != pid)
                continue;
            found = 1;
            c->pid = 0;
            if (pending.pid == pid && !stopping) {
                tg_log_error("worker %d (pid %d) died while building the new configuration; "
                             "the reload did not happen", i, (int) pid);
                lead_died = 1;
            }
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
        }
    }
    if (lead_died)
        lead_done();
}

static int running(void)
{
    int n = ndraining;
    for (int i = 0; i < nchildren; i++)
        n += children[i].pid != 0;
    return n;
}

static void signal_all(int sig)
{
    for (int i = 0; i < nchildren; i++)
        if (children[i].pid)
            kill(children[i].pid, sig);
    for (int i = 0; i < ndraining; i++)
        kill(draining[i], sig);
}

static int worker_count(const tg_settings_t *s)
{
    int n = workers_wanted > 0 ? workers_wanted : s->workers;
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int) cpus : 1;
    }
    return n > MAX_WORKERS ? MAX_WORKERS : n;
}

/* ---- reload ----------------------------------------------------------------------- */

/* ---- the check's memory -------------------------------------------------------
 *
 * The check builds a whole Lua state, with the collector stopped, and
 * closes it: nothing is freed until the end, when everything is. So its
 * state takes memory from an arena: an allocation is a pointer bump, a
 * free does nothing (the arena is reset once the state is closed), and
 * the arena's pages stay mapped from one check to the next, so a check
 * does not fault in 12 MB of fresh pages (1,000 routes) and closing the
 * state frees nothing one by one. About a third of a check's CPU. Only
 * for this state: one that serves requests frees garbage as it goes. */

#define ARENA_CHUNK ((size_t) 8 << 20)
#define ARENA_KEEP ((size_t) 64 << 20) /* mapped between checks, at most */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
} arena_chunk_t;

static struct {
    arena_chunk_t *head, *cur; /* cur: the chunk being filled (in head's list) */
    void *last;                /* the latest block: it may grow in place */
} arena;

#define ARENA_ALIGN(n) (((n) + 15) & ~(size_t) 15)

/* Makes the next chunk of the list (or a new one) with room for n bytes
 * the current one. */
static int arena_next_chunk(size_t n)
{
    size_t head = ARENA_ALIGN(sizeof(arena_chunk_t));
    arena_chunk_t **pp = arena.cur ? &arena.cur->next : &arena.head;
    while (*pp && (*pp)->size - head < n)
        pp = &(*pp)->next;
    if (*pp == NULL) {
        size_t size = n + head > ARENA_CHUNK ? (n + head + 4095) & ~(size_t) 4095 : ARENA_CHUNK;
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        arena_chunk_t *c = p;
        c->size = size;
        c->next = NULL;
        *pp = c;
    }
    arena_chunk_t *c = *pp;
    if (c != (arena.cur ? arena.cur->next : arena.head)) {
        /* a big enough chunk further down the list: move it up */
        *pp = c->next;
        arena_chunk_t **at = arena.cur ? &arena.cur->next : &arena.head;
        c->next = *at;
        *at = c;
    }
    c->used = head;
    arena.cur = c;
    return 0;
}

/* lua_Alloc over the arena. */
static void *arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void) ud;
    if (nsize == 0)
        return NULL;
    size_t n = ARENA_ALIGN(nsize);
    arena_chunk_t *c = arena.cur;
    if (ptr != NULL) {
        if (ptr == arena.last && (size_t) ((char *) ptr - (char *) c) + n <= c->size) {
            c->used = (size_t) ((char *) ptr - (char *) c) + n; /* the latest block grows */
            return ptr;
        }
        if (nsize <= osize)
            return ptr;
    }
    if (c == NULL || c->size - c->used < n) {
        if (arena_next_chunk(n) != 0)
            return NULL; /* Lua's out-of-memory error */
        c = arena.cur;
    }
    void *p = (char *) c + c->used;
    c->used += n;
    if (ptr != NULL)
        memcpy(p, ptr, osize);
    arena.last = p;
    return p;
}

/* After the state is closed: everything is free again; chunks past
 * ARENA_KEEP are unmapped. */
static void arena_reset(void)
{
    size_t kept = 0;
    arena_chunk_t **pp = &arena.head;
    while (*pp) {
        arena_chunk_t *c = *pp;
        if (kept + c->size > ARENA_KEEP) {
            *pp = c->next;
            munmap(c, c->size);
        } else {
            kept += c->size;
            pp = &c->next;
        }
    }
    arena.cur = NULL;
    arena.last = NULL;
}

/* The check a reload starts with: the whole load, as `-t` does. */
typedef struct {
    tg_settings_t *next;
    const char *err;
    char errmsg[4096]; /* err is the check thread's, gone with it: copied here */
    int rc;
} check_t;

static void *check_config(void *arg)
{
    check_t *c = arg;
    lua_State *L = tg_lua_new_alloc(arena_alloc, NULL);
    if (L == NULL)
        L = tg_lua_new(); /* LuaJIT's own allocator then */
    c->rc = tg_lua_load_config(L, config, c->next, 0, &c->err);
    if (c->err) {
        snprintf(c->errmsg, sizeof(c->errmsg), "%s", c->err);
        c->err = c->errmsg;
    }
    tg_lua_close(L);
    arena_reset();
    return NULL;
}

static int check(tg_settings_t *next, const char **err)
{
    static check_t c; /* 4 KB: not on the stack */
    c = (check_t) { .next = next, .err = NULL, .rc = TG_ERROR };
    pthread_t t;
    /* At a lower priority than the workers: on a machine whose cores are
     * all serving, the check (tens of ms for thousands of routes) takes
     * what they leave instead of a slice of one worker's core. */
    if (tg_thread_start(&t, 0, 10, check_config, &c) != 0) {
        check_config(&c); /* no thread: check here, at the master's priority */
    } else {
        pthread_join(t, NULL);
    }
    *err = c.err;
    return c.rc;
}

/* The reload the master checks itself: when no worker can, or when the
 * config needs new sockets or a new set of workers. `what` says why. */
static void reload_checked(const char *what)
{
    tg_settings_t next;
    const char *err = NULL;

    tg_log_info("%s: the master checks %s", what, config);
    tg_settings_defaults(&next);
    int rc = check(&next, &err);
    if (rc != TG_OK) {
        tg_log_error("reload refused, still serving the previous configuration: %s", err);
        watch_also(settings, &next);
        tg_settings_free(&next);
        return;
    }

    if (tg_settings_same_listeners(settings, &next) && worker_count(&next) == nchildren) {
        /* Same sockets and processes: every worker swaps generations. */
        for (int i = 0; i < next.nlisten; i++)
            next.listen[i].fd = settings->listen[i].fd;
        for (int i = 0; i < settings->nlisten; i++)
            free(settings->listen[i].host);
        settings->nlisten = 0; /* the fds now belong to next */
        tg_settings_free(settings);
        *settings = next;
        watch_files(settings);
        for (int i = 0; i < nchildren; i++)
            if (children[i].pid)
                kill(children[i].pid, SIGHUP);
        tg_log_info("reloading %d worker%s", nchildren, nchildren == 1 ? "" : "s");
        return;
    }

    /* New listeners or worker count: a new set of workers. Listeners that
     * stay keep their socket (nothing queued on them is lost). */
    for (int i = 0; i < next.nlisten; i++) {
        next.listen[i].fd = -1;
        for (int k = 0; k < settings->nlisten; k++) {
            tg_listen_t *old = &settings->listen[k];
            if (old->fd >= 0 && old->port == next.listen[i].port &&
                strcmp(old->host, next.listen[i].host) == 0) {
                next.listen[i].fd = old->fd;
                old->fd = -1;
            }
        }
        if (next.listen[i].fd < 0 && open_listener(&next.listen[i], &err) != TG_OK) {
            tg_log_error("reload refused, still serving the previous configuration: %s", err);
            for (int k = 0; k < i; k++) {
                /* give the reused sockets back; close the new ones */
                int given = 0;
                for (int j = 0; j < settings->nlisten && !given; j++) {
                    tg_listen_t *old = &settings->listen[j];
                    if (old->fd < 0 && old->port == next.listen[k].port &&
                        strcmp(old->host, next.listen[k].host) == 0) {
                        old->fd = next.listen[k].fd;
                        given = 1;
                    }
                }
                if (!given)
                    close(next.listen[k].fd);
                next.listen[k].fd = -1;
            }
            tg_settings_free(&next);
            return;
        }
    }
    for (int i = 0; i < nchildren; i++) {
        if (children[i].pid) {
            kill(children[i].pid, SIGTERM);
            draining[ndraining++] = children[i].pid;
        }
        children[i].pid = 0;
    }
    close_listeners(settings); /* the ones no longer used; old workers keep theirs */
    tg_settings_free(settings);
    *settings = next;
    watch_files(settings);
    nchildren = worker_count(settings);
    tg_log_info("new listeners or worker count: starting %d worker%s, stopping the previous "
                "ones gracefully", nchildren, nchildren == 1 ? "" : "s");
    for (int i = 0; i < nchildren; i++) {
        children[i].delay = 0;
        spawn(i);
    }
}

/* ---- reload through the lead worker ------------------------------------------- */

static double lead_wait(void)
{
    return settings->reload_timeout > 0 ? settings->reload_timeout + LEAD_MARGIN
                                        : LEAD_WAIT_UNLIMITED;
}

static void reload(const char *why)
{
    if (pending.pid) {
        if (!pending.again)
            tg_log_info("%s: a reload is under way; another follows it", why);
        pending.again = 1;
        return;
    }
    int lead = -1;
    for (int i = 0; i < nchildren && lead < 0; i++)
        if (children[i].pid)
            lead = i;
    if (lead < 0 || repfd[0] < 0) {
        reload_checked(lead < 0 ? "no worker is running" : why);
        return;
    }
    tg_log_info("%s: checking %s (worker %d builds it first)", why, config, lead);
    pending.pid = children[lead].pid;
    pending.lead = lead;
    pending.deadline = now_mono() + lead_wait();
    pending.again = 0;
    kill(pending.pid, SIGUSR2);
}

/* The lead is done (answered, died or too slow): a trigger that came
 * meanwhile reloads again. */
static void lead_done(void)
{
    pending.pid = 0;
    if (pending.again && !stopping) {
        pending.again = 0;
        reload("a change during the previous reload");
    }
}

/* The next NUL-terminated string of a report's tail, or NULL. */
static const char *report_next(const char **p, const char *end)
{
    const char *s = *p;
    const char *nul = s < end ? memchr(s, '\0', (size_t) (end - s)) : NULL;
    if (nul == NULL)
        return NULL;
    *p = nul + 1;
    return s;
}

static void on_report(const char *buf, size_t n)
{
    tg_reload_report_t r;
    if (n < sizeof(r))
        return;
    memcpy(&r, buf, sizeof(r));
    if (pending.pid == 0 || r.pid != pending.pid) {
        /* No reload waits for it: a lead that answered after the master stopped waiting, or
         * a worker sent SIGUSR2 by hand. If it applied a config, the other
         * workers follow it, as they would have. */
        int from = -1;
        for (int i = 0; i < nchildren && from < 0; i++)
            if (children[i].pid == (pid_t) r.pid)
                from = i;
        if (pending.pid != 0 || stopping || from < 0 || r.status != TG_RELOAD_APPLIED) {
            tg_log_debug("a reload report from worker pid %d that no reload waits for: ignored",
                         (int) r.pid);
            return;
        }
        tg_log_info("worker %d applied a configuration no reload waited for; the others follow",
                    from);
        pending.pid = (pid_t) r.pid;
        pending.lead = from;
        pending.again = 0;
    }
    const char *p = buf + sizeof(r), *end = buf + n;
    if (r.nfiles < 0 || (size_t) r.nfiles > n)
        r.nfiles = 0; /* (each file takes a byte at least) */
    const char *err = report_next(&p, end);
    const char *access_log = report_next(&p, end);
    tg_settings_t got;
    tg_settings_defaults(&got);
    got.files = tg_calloc((size_t) r.nfiles + 1, sizeof(char *));
    for (int i = 0; i < r.nfiles; i++) {
        const char *f = report_next(&p, end);
        if (f == NULL)
            break;
        got.files[got.nfiles++] = tg_strndup(f, strlen(f));
    }
    int lead = pending.lead;

    switch (r.status) {
    case TG_RELOAD_REFUSED:
        tg_log_error("reload refused, still serving the previous configuration: %s",
                     err && *err ? err : "(no reason given)");
        watch_also(settings, &got);
        break;
    case TG_RELOAD_LISTENERS:
        reload_checked("new listeners");
        break;
    case TG_RELOAD_APPLIED: {
        /* What the master keeps of a config: watching, its log level,
         * the stop timeout, and what a restarted worker starts with. */
        for (int i = 0; i < settings->nfiles; i++)
            free(settings->files[i]);
        free(settings->files);
        settings->files = got.files;
        settings->nfiles = got.nfiles;
        got.files = NULL;
        got.nfiles = 0;
        settings->watch = r.watch;
        settings->log_level = r.log_level;
        tg_log_level = r.log_level;
        settings->shutdown_timeout = r.shutdown_timeout;
        settings->reload_timeout = r.reload_timeout;
        settings->workers = r.workers;
        if (access_log) {
            free(settings->access_log);
            settings->access_log = tg_strndup(access_log, strlen(access_log));
        }
        watch_files(settings);
        if (worker_count(settings) != nchildren) {
            reload_checked("a new worker count");
            break;
        }
        int others = 0;
        for (int i = 0; i < nchildren; i++) {
            if (i != lead && children[i].pid) {
                kill(children[i].pid, SIGHUP);
                others++;
            }
        }
        tg_log_info("worker %d checked and applied it (generation %u); reloading %d other "
                    "worker%s", lead, r.generation, others, others == 1 ? "" : "s");
        break;
    }
    default:
        tg_log_error("reload: worker %d sent a report of unknown status %d", lead, (int) r.status);
        break;
    }
    tg_settings_free(&got);
    lead_done();
}

static void read_reports(void)
{
    static char buf[TG_RELOAD_REPORT_MAX];
    for (;;) {
        ssize_t n = recv(repfd[0], buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        on_report(buf, (size_t) n);
    }
}

/* ---- main loop ---------------------------------------------------------------------- */

int tg_master_run(tg_settings_t *s, const char *config_path, int workers)
{
    sigset_t set;
    double deadline = 0, reload_at = 0;

    settings = s;
    config = config_path;
    workers_wanted = workers;
    nchildren = worker_count(s);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2); /* blocked for the workers until they handle it; ignored here */
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    /* One datagram per report, whole, from any worker (they share [1]). */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, repfd) != 0) {
        tg_log_warn("socketpair: %s; reloads will be checked by the master", strerror(errno));
        repfd[0] = repfd[1] = -1;
    } else {
        int size = TG_RELOAD_REPORT_MAX * 2;
        setsockopt(repfd[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        setsockopt(repfd[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        fcntl(repfd[0], F_SETFL, O_NONBLOCK);
    }
    inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inofd < 0)
        tg_log_warn("inotify: %s; config changes will need SIGHUP", strerror(errno));
    watch_files(s);
    write_pidfile();

    tg_log_info("starting %d worker%s", nchildren, nchildren == 1 ? "" : "s");
    for (int i = 0; i < nchildren; i++)
        spawn(i);

    for (;;) {
        double now = now_mono();
        double wait = 1.0;
        for (int i = 0; i < nchildren && !stopping; i++) {
            child_t *c = &children[i];
            if (c->pid == 0 && c->restart_at > 0) {
                if (c->restart_at <= now)
                    spawn(i);
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
        } else {
            if (pending.pid) {
                if (now >= pending.deadline) {
                    tg_log_error("worker %d has not finished building the new configuration "
                                 "after %.0f s; no longer waiting for it", pending.lead,
                                 lead_wait());
                    lead_done();
                } else if (pending.deadline - now < wait) {
                    wait = pending.deadline - now;
                }
            }
            if (reload_at > 0) {
                if (now >= reload_at) {
                    reload_at = 0;
                    reload("a configuration file changed");
                } else if (reload_at - now < wait) {
                    wait = reload_at - now;
                }
            }
        }

        struct pollfd pfd[3] = { { sigfd, POLLIN, 0 }, { repfd[0], POLLIN, 0 },
                                 { inofd, POLLIN, 0 } };
        int n = poll(pfd, inofd >= 0 ? 3 : 2, (int) (wait * 1000) + 1);
        if (n <= 0)
            continue;
        if (repfd[0] >= 0 && (pfd[1].revents & POLLIN))
            read_reports();
        if (inofd >= 0 && (pfd[2].revents & POLLIN) && files_changed() && !stopping)
            reload_at = now_mono() + DEBOUNCE; /* an editor's burst gives one reload */

        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof(si)) == (ssize_t) sizeof(si)) {
            int sig = (int) si.ssi_signo;
            switch (sig) {
            case SIGCHLD:
                reap();
                break;
            case SIGTERM:
            case SIGINT:
            case SIGQUIT:
                if (!stopping) {
                    tg_log_info("%s: stopping workers",
                                sig == SIGQUIT ? "SIGQUIT" : sig == SIGINT ? "SIGINT" : "SIGTERM");
                    stopping = 1;
                    pending.pid = 0; /* a lead's late report is ignored */
                    deadline = now_mono() + s->shutdown_timeout + 5;
                    close_listeners(s);
                }
                signal_all(sig == SIGQUIT ? SIGQUIT : SIGTERM);
                break;
            case SIGHUP:
                if (!stopping)
                    reload("SIGHUP");
                break;
            }
        }
    }
    close_listeners(s);
    if (pidfile[0])
        unlink(pidfile);
    tg_log_info("stopped");
    return 0;
}
