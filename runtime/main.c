/*
 * main.c: command line. Checks the config in the master (the same loader
 * the workers use), opens the listeners and hands over to the master.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bridge.h"
#include "master.h"
#include "shdict.h"
#include "worker.h"

#define TG_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tollgate [-t] [-w N] -c FILE\n"
            "       tollgate reload -c FILE [-p PIDFILE]\n"
            "  -c FILE   gateway config: Express Gateway's gateway.config.yml (YAML or JSON,\n"
            "            with system.config.yml beside it when present) or a Lua file\n"
            "  -t        check the config and exit (0 valid, 1 with the error)\n"
            "  -w N      worker processes (overrides the config; default one per core)\n"
            "  -p FILE   the pid file of the master to reload (default: tollgate.pidFile,\n"
            "            else the place named after the config)\n"
            "  -v        print the version\n"
            "  reload    check FILE, then tell the running gateway serving it to reload\n");
}

/* `tollgate reload`: the same check as -t, then SIGHUP to the master. */
static int reload_command(const char *config, const char *pidfile, tg_settings_t *s)
{
    const char *path = tg_master_pidfile(config, pidfile ? pidfile : s->pid_file);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f == NULL) {
        fprintf(stderr, "tollgate: cannot read %s (%s): is a gateway running with %s?\n", path,
                strerror(errno), config);
        return 1;
    }
    if (fscanf(f, "%d", &pid) != 1 || pid <= 1) {
        fclose(f);
        fprintf(stderr, "tollgate: %s does not hold a process id\n", path);
        return 1;
    }
    fclose(f);
    if (kill(pid, SIGHUP) != 0) {
        fprintf(stderr, "tollgate: cannot signal master %d (%s); remove the stale %s\n", pid,
                strerror(errno), path);
        return 1;
    }
    printf("tollgate: %s is valid; master %d is reloading it\n", config, pid);
    return 0;
}

/* Lets the worker hold as many sockets as the hard limit allows. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    const char *pidfile = NULL;
    const char *err = NULL;
    int test = 0, workers = -1, opt, reload = 0;
    tg_settings_t s;

    if (argc > 1 && strcmp(argv[1], "reload") == 0) {
        reload = 1;
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    while ((opt = getopt(argc, argv, "c:tw:p:vh")) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case 'p': pidfile = optarg; break;
        case 't': test = 1; break;
        case 'w':
            workers = atoi(optarg);
            if (workers < 1) {
                fprintf(stderr, "tollgate: -w wants a number of workers >= 1\n");
                return 1;
            }
            break;
        case 'v': printf("tollgate %s\n", TG_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (config == NULL || optind < argc) {
        usage(stderr);
        return 1;
    }

    tg_settings_defaults(&s);
    lua_State *L = tg_lua_new();
    int rc = tg_lua_load_config(L, config, &s, 0, &err);
    tg_lua_close(L);
    if (rc != TG_OK) {
        fprintf(stderr, "tollgate: %s\n", err);
        tg_settings_free(&s); /* the files a refused config named, kept for watching */
        return 1;
    }
    if (test) {
        printf("tollgate: %s is valid\n", config);
        tg_settings_free(&s);
        return 0;
    }
    if (reload) {
        rc = reload_command(config, pidfile, &s);
        tg_settings_free(&s);
        return rc;
    }
    tg_log_level = s.log_level;
    /* The master's signals are blocked from here on (it reads them from a
     * signalfd): a SIGHUP or SIGTERM that arrives as soon as the listening
     * line is logged is handled, not fatal. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2); /* a worker's: its handler is set once its config is loaded */
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise_nofile();
    if (tg_tls_tickets_init(&err) != TG_OK) {
        tg_log_error("%s", err);
        return 1;
    }
    if (tg_shdict_init(s.shared_memory, &err) != TG_OK) {
        tg_log_error("cannot map %zu bytes of shared memory: %s", s.shared_memory, err);
        return 1;
    }
    if (tg_master_listen(&s, &err) != TG_OK) {
        tg_log_error("%s", err);
        return 1;
    }
    rc = tg_master_run(&s, config, workers > 0 ? workers : 0);
    tg_settings_free(&s);
    return rc;
}
