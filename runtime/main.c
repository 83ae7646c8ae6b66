/*
 * main.c: command line. Checks the config in the master (the same loader
 * the workers use), opens the listeners and hands over to the master.
 */
#include <errno.h>
#include <getopt.h>
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
            "  -c FILE   gateway config: Express Gateway's gateway.config.yml (YAML or JSON,\n"
            "            with system.config.yml beside it when present) or a Lua file\n"
            "  -t        check the config and exit (0 valid, 1 with the error)\n"
            "  -w N      worker processes (overrides the config; default one per core)\n"
            "  -v        print the version\n");
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
    const char *err = NULL;
    int test = 0, workers = -1, opt;
    tg_settings_t s;

    while ((opt = getopt(argc, argv, "c:tw:vh")) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
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
        return 1;
    }
    if (test) {
        printf("tollgate: %s is valid\n", config);
        tg_settings_free(&s);
        return 0;
    }
    tg_log_level = s.log_level;
    if (s.nlisten == 0) {
        fprintf(stderr, "tollgate: %s has no http section: nothing to listen on\n", config);
        return 1;
    }
    raise_nofile();
    if (tg_shdict_init(s.shared_memory, &err) != TG_OK) {
        tg_log_error("cannot map %zu bytes of shared memory: %s", s.shared_memory, err);
        return 1;
    }
    if (tg_master_listen(&s, &err) != TG_OK) {
        tg_log_error("%s", err);
        return 1;
    }
    if (workers < 0)
        workers = s.workers;
    if (workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        workers = n > 0 ? (int) n : 1;
    }
    rc = tg_master_run(&s, config, workers);
    tg_settings_free(&s);
    return rc;
}
