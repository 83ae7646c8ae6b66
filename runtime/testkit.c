/*
 * testkit.c: requests without sockets, for Lua specs that run policies
 * outside the gateway (lua/tollgate/testing.lua, through libtollgate.so).
 *
 * A test request is a real tg_req_t in a real (socketless) tg_conn_t,
 * parsed from raw HTTP by the same http1*.c code the gateway runs, so the
 * request API, header edits and the heads written upstream and to the
 * client are the gateway's own, not a model of them.
 */
#include <arpa/inet.h>
#include <stdio.h>

#include "conn.h"
#include "http1.h"
#include "task.h"
#include "upstream.h"
#include "worker.h"

static tg_settings_t defaults;
static tg_buf_t scratch;

static void ensure_settings(void)
{
    if (tg_worker.settings == NULL) {
        tg_settings_defaults(&defaults);
        tg_worker.settings = &defaults;
    }
}

/* Parses raw (a request head, and its body if any) into a new request.
 * client is the client address ("127.0.0.1" when NULL). */
TG_EXPORT tg_req_t *tg_test_request(const char *raw, size_t len, const char *client, char *err,
                                    size_t errlen)
{
    ensure_settings();
    tg_conn_t *c = tg_calloc(1, sizeof(*c));
    tg_sock_plain(&c->sock, -1);
    c->local_port = 8080;
    struct sockaddr_in *in4 = (struct sockaddr_in *) &c->peer;
    in4->sin_family = AF_INET;
    if (inet_pton(AF_INET, client ? client : "127.0.0.1", &in4->sin_addr) != 1) {
        c->peer.sin6_family = AF_INET6;
        inet_pton(AF_INET6, client, &c->peer.sin6_addr);
    }
    tg_req_init(&c->req, c);
    tg_http1_request_begin(c);
    tg_buf_append(&c->rbuf, raw, len);
    /* room after the head, as the gateway keeps */
    tg_buf_reserve(&c->rbuf, 4096);

    int rc = tg_http1_parse_head(c);
    if (rc != TG_OK) {
        snprintf(err, errlen, "%s", rc == TG_AGAIN ? "incomplete request head"
                                                   : tg_http1_error_reason(c));
        tg_req_reset(&c->req);
        tg_buf_release(&c->rbuf);
        free(c);
        return NULL;
    }
    tg_req_t *r = &c->req;
    c->state = TG_CONN_ACTIVE;
    r->parsed = 1;
    r->head_request = r->method == HTTP_HEAD;
    r->t_start = ev_time();
    if (!r->body_done) {
        /* the body, collected as if a policy had read it */
        r->buffer_body = 1;
        r->body_started = 1;
        while (!r->body_done && c->rbuf.pos < c->rbuf.len) {
            rc = tg_http1_parse_body(c);
            if (rc >= 400) {
                snprintf(err, errlen, "%s", tg_http1_error_reason(c));
                tg_req_reset(r);
                tg_buf_release(&c->rbuf);
                free(c);
                return NULL;
            }
        }
        if (!r->body_done) {
            snprintf(err, errlen, "incomplete request body");
            tg_req_reset(r);
            tg_buf_release(&c->rbuf);
            free(c);
            return NULL;
        }
    }
    return r;
}

TG_EXPORT void tg_test_request_free(tg_req_t *r)
{
    tg_conn_t *c = r->conn;
    tg_req_reset(r);
    tg_buf_release(&c->rbuf);
    tg_buf_release(&c->wbuf);
    free(c);
}

/* The request as it would go upstream (head, then body). */
TG_EXPORT const char *tg_test_upstream_request(tg_req_t *r, size_t *len)
{
    tg_buf_reset(&scratch);
    if (r->proxy.peer == NULL)
        r->proxy.peer = tg_peer_get("upstream.test", 13, 80, NULL);
    tg_http1_request_head(r, &scratch);
    if (r->buffer_body && r->body_buf.len)
        tg_buf_append(&scratch, r->body_buf.data, r->body_buf.len);
    *len = scratch.len;
    return scratch.data;
}

/* Gives the request an upstream response (raw head and body), as if the
 * proxy had received it; its body is available to response:body(). */
TG_EXPORT int tg_test_upstream_response(tg_req_t *r, const char *raw, size_t len)
{
    tg_proxy_t *p = &r->proxy;
    tg_http1_response_begin(r);
    tg_buf_reset(&p->rbuf);
    tg_buf_append(&p->rbuf, raw, len);
    if (tg_http1_parse_response(r) != TG_OK || !p->head_done)
        return TG_ERROR;
    r->local = 0;
    r->resp_buffer = 1;
    p->state = TG_PROXY_BODY;
    while (!p->body_done && p->rbuf.pos < p->rbuf.len)
        if (tg_http1_parse_response(r) == TG_ERROR)
            return TG_ERROR;
    if (!p->body_done && tg_http1_response_eof(r) != TG_OK)
        return TG_ERROR;
    r->resp_body_set = 1;
    r->body = r->resp_buf.data ? r->resp_buf.data : "";
    r->body_len = r->resp_buf.len;
    p->state = TG_PROXY_DONE;
    return TG_OK;
}

/* The response as the client would get it (head and body). */
TG_EXPORT const char *tg_test_response(tg_req_t *r, size_t *len)
{
    tg_buf_reset(&scratch);
    if (!r->local && !r->proxy.head_done)
        tg_req_local_response(r, 500, "Internal Server Error");
    tg_http1_response_head(r, &scratch);
    *len = scratch.len;
    return scratch.data;
}

/* The HTTP call (tollgate.http) a test request's coroutine is waiting for,
 * or NULL; the kit answers it with tg_test_upstream_response() and then
 * tg_test_call_done(). */
TG_EXPORT tg_req_t *tg_test_pending_call(tg_req_t *r)
{
    return r->call;
}

TG_EXPORT void tg_test_call_done(tg_req_t *call, int status)
{
    call->call_started = 1;
    call->call_done = 1;
    call->call_status = status;
}

/* Frees what finished calls left (the gateway does it each loop turn). */
TG_EXPORT void tg_test_collect(void)
{
    tg_tasks_free_finished();
}
