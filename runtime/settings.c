/*
 * settings.c: defaults for the C view of the settings. The user-facing
 * names and their documentation are in lua/tollgate/settings.lua, which
 * fills every field; these defaults only matter for the master before a
 * config is read.
 */
#include "settings.h"

void tg_settings_defaults(tg_settings_t *s)
{
    memset(s, 0, sizeof(*s));
    s->workers = 0;
    s->head_timeout = 60;
    s->body_timeout = 60;
    s->keepalive_timeout = 60;
    s->send_timeout = 60;
    s->tunnel_timeout = 300;
    s->shutdown_timeout = 10;
    s->reload_timeout = 30;
    s->max_head_size = 32768;
    s->max_body_size = 0;
    s->max_buffered_body = 8 * 1024 * 1024;
    s->max_connections = 16384;
    s->max_keepalive_requests = 10000;
    s->upstream_connect_timeout = 10;
    s->upstream_timeout = 60;
    s->upstream_idle_timeout = 4;
    s->upstream_keepalive = 64;
    s->shared_memory = 16 * 1024 * 1024;
    s->watch = 1;
    s->log_level = TG_LOG_INFO;
}

void tg_settings_free(tg_settings_t *s)
{
    for (int i = 0; i < s->nlisten; i++)
        free(s->listen[i].host);
    s->nlisten = 0;
    free(s->access_log);
    s->access_log = NULL;
    for (int i = 0; i < s->nfiles; i++)
        free(s->files[i]);
    free(s->files);
    s->files = NULL;
    s->nfiles = 0;
    free(s->pid_file);
    s->pid_file = NULL;
    tg_tls_config_free(&s->tls);
    tg_tls_server_free(s->tls_server);
    s->tls_server = NULL;
}

int tg_settings_same_listeners(const tg_settings_t *cur, tg_settings_t *next)
{
    /* A port of 0 asks for any free port: the one cur has bound does. */
    for (int i = 0; i < next->nlisten && i < cur->nlisten; i++)
        if (next->listen[i].port == 0 && strcmp(next->listen[i].host, cur->listen[i].host) == 0)
            next->listen[i].port = cur->listen[i].port;
    if (cur->nlisten != next->nlisten)
        return 0;
    for (int i = 0; i < cur->nlisten; i++)
        if (cur->listen[i].port != next->listen[i].port || cur->listen[i].tls != next->listen[i].tls ||
            strcmp(cur->listen[i].host, next->listen[i].host) != 0)
            return 0;
    return 1;
}
