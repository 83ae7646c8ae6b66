/*
 * conn.c: client connections: accept, read, the request state machine,
 * writes with backpressure, timeouts, and close.
 *
 * One function computes a connection's event mask and timer from its state
 * and buffers (conn_update), so backpressure is a consequence of buffer
 * levels, not something each code path remembers to do. A connection is
 * never freed inside its own callback: conn_close() closes the socket and
 * queues the struct, and the worker frees the queue once per loop turn.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge.h"
#include "http1.h"
#include "log.h"
#include "task.h"
#include "upstream.h"
#include "worker.h"

#define READ_AHEAD_MIN 4096      /* room kept after a head for body bytes */
#define LINGER_TIMEOUT 2.0       /* reading leftovers before closing after an error */
#define DISCARD_MAX (64 * 1024)  /* unread body we read and drop to keep the connection */

enum { T_NONE, T_FIRST, T_IDLE, T_HEAD, T_BODY, T_SEND, T_LINGER, T_TUNNEL };

static void conn_process(tg_conn_t *c);
static void tunnel_read(tg_conn_t *c);
static void conn_close(tg_conn_t *c, const char *why);
static void finish_request(tg_conn_t *c);

/* ---- events and timers ---------------------------------------------------- */

static int want_read(tg_conn_t *c)
{
    tg_req_t *r = &c->req;

    if (c->eof)
        return 0;
    if (c->rbuf.data && c->rbuf.len == c->rbuf.cap)
        return c->state == TG_CONN_CLOSING; /* lingering reads reset the buffer */
    switch (c->state) {
    case TG_CONN_HANDSHAKE:
        return 0; /* events come from the handshake's wants (tg_conn_update) */
    case TG_CONN_TUNNEL:
        return r->proxy.wbuf.len - r->proxy.wbuf.pos < TG_WBUF_HIGH;
    case TG_CONN_IDLE:
    case TG_CONN_HEAD:
    case TG_CONN_CLOSING:
        return 1;
    case TG_CONN_ACTIVE:
        if (r->body_started && !r->body_done)
            return r->discard_body || r->proxy.wbuf.len - r->proxy.wbuf.pos < TG_WBUF_HIGH;
        /* Read ahead a little (a pipelined request, or the client's FIN),
         * not a whole body that nobody has asked for yet. */
        return c->rbuf.len - c->rbuf.pos < READ_AHEAD_MIN;
    }
    return 0;
}

static void set_timer(tg_conn_t *c, int kind)
{
    tg_settings_t *s = tg_worker.settings;
    double t = 0;

    if (c->timer_kind == kind)
        return;
    c->timer_kind = kind;
    switch (kind) {
    case T_FIRST: t = s->head_timeout; break;
    case T_IDLE: t = s->keepalive_timeout; break;
    case T_HEAD: t = s->head_timeout; break;
    case T_BODY: t = s->body_timeout; break;
    case T_SEND: t = s->send_timeout; break;
    case T_LINGER: t = LINGER_TIMEOUT; break;
    case T_TUNNEL: t = s->tunnel_timeout; break;
    }
    /* 0 (none, or a timeout set to 0) stops it, and keeps the re-arms of
     * reads and writes (ev_timer_again) from starting it again with the
     * previous wait's value */
    c->timer.repeat = t > 0 ? t : 0;
    ev_timer_again(tg_worker.loop, &c->timer);
}

void tg_conn_update(tg_conn_t *c)
{
    tg_req_t *r = &c->req;
    int ev = 0;

    if (c->closed || c->internal)
        return;
    if (c->state == TG_CONN_HANDSHAKE) {
        ev = (c->sock.want_write ? EV_WRITE : 0) | (c->sock.want_read || !c->sock.want_write
                                                        ? EV_READ : 0);
    } else {
        int rd = want_read(c);
        /* TLS: a read may need a write to go out first, and a write a read */
        if (rd)
            ev |= c->rd_needs_write ? EV_WRITE : EV_READ;
        if (c->want_write)
            ev |= c->wr_needs_read ? EV_READ : EV_WRITE;
        if (rd && tg_sock_pending(&c->sock))
            ev_feed_event(tg_worker.loop, &c->io, EV_READ); /* decrypted, waiting */
    }
    if ((c->io.events & (EV_READ | EV_WRITE)) != ev || !ev_is_active(&c->io)) {
        ev_io_stop(tg_worker.loop, &c->io);
        ev_io_modify(&c->io, ev); /* same fd: no EV__IOFDSET, so no needless epoll_ctl */
        if (ev)
            ev_io_start(tg_worker.loop, &c->io);
    }

    /* The timer follows the wait the client is responsible for. The head
     * timer is not re-armed by reads: it bounds the whole head. */
    if (c->state == TG_CONN_TUNNEL)
        set_timer(c, T_TUNNEL); /* re-armed by traffic either way */
    else if (c->want_write)
        set_timer(c, T_SEND);
    else if (c->state == TG_CONN_HANDSHAKE)
        set_timer(c, T_FIRST);
    else if (c->state == TG_CONN_IDLE)
        set_timer(c, c->nrequests ? T_IDLE : T_FIRST);
    else if (c->state == TG_CONN_HEAD)
        set_timer(c, c->timer_kind == T_FIRST ? T_FIRST : T_HEAD);
    else if (c->state == TG_CONN_CLOSING)
        set_timer(c, T_LINGER);
    else if (r->body_started && !r->body_done && (ev & EV_READ))
        set_timer(c, T_BODY);
    else
        set_timer(c, T_NONE);
}

int tg_conn_wbuf_full(tg_conn_t *c)
{
    return c->wbuf.len - c->wbuf.pos >= TG_WBUF_HIGH;
}

int tg_conn_local_port(tg_conn_t *c)
{
    return c->local_port;
}

const char *tg_conn_scheme(tg_conn_t *c)
{
    return c->sock.t ? c->sock.t->scheme : "http";
}

/* ---- accept ------------------------------------------------------------------ */

void tg_conn_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    tg_settings_t *s = tg_worker.settings;
    tg_unused(revents);

    for (int i = 0; i < 64 && tg_worker.nconns < s->max_connections; i++) {
        struct sockaddr_in6 sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(w->fd, (struct sockaddr *) &sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment rather
                 * than spin on a listener that stays readable. */
                tg_log_rate_limited(TG_LOG_ERROR, "accept: %s; pausing accepts", strerror(errno));
                tg_worker_pause_accept(0.1);
            }
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        tg_conn_t *c = tg_calloc(1, sizeof(*c));
        int li = (int) (w - tg_worker.listeners);
        c->peer = sa;
        c->local_port = (uint16_t) (uintptr_t) w->data;
        if (tg_worker.listen_tls[li]) {
            if (tg_worker.tls == NULL || tg_sock_tls_accept(&c->sock, fd, tg_worker.tls) != TG_OK) {
                tg_log_rate_limited(TG_LOG_ERROR, "TLS: %s",
                                    c->sock.error ? c->sock.error : "no server context");
                tg_sock_close(&c->sock);
                free(c);
                continue;
            }
            c->state = TG_CONN_HANDSHAKE;
        } else {
            tg_sock_plain(&c->sock, fd);
            c->state = TG_CONN_IDLE;
        }
        ev_io_init(&c->io, tg_conn_on_io, fd, 0);
        ev_init(&c->timer, tg_conn_on_timer);
        tg_req_init(&c->req, c);
        tg_http1_request_begin(c);
        c->next = tg_worker.conns;
        if (c->next)
            c->next->prev = c;
        tg_worker.conns = c;
        tg_worker.nconns++;
        tg_conn_update(c);
    }
    tg_worker_check_accept();
    tg_unused(loop);
}

/* ---- reading ----------------------------------------------------------------- */

/* ---- WebSocket tunnel ------------------------------------------------------ */

static void tunnel_read(tg_conn_t *c)
{
    tg_req_t *r = &c->req;
    char buf[TG_BUF_SIZE];
    ssize_t n = tg_sock_recv(&c->sock, buf, sizeof(buf));
    c->rd_needs_write = n < 0 && errno == EAGAIN && c->sock.want_write;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* The client is gone: what it sent is on its way; end the tunnel. */
        tg_proxy_flush(r);
        conn_close(c, NULL);
        return;
    }
    tg_buf_append(&r->proxy.wbuf, buf, (size_t) n);
    ev_timer_again(tg_worker.loop, &c->timer);
    tg_proxy_flush(r);
    if (!c->closed)
        tg_conn_update(c);
}

/* The upstream answered 101: from now on bytes go both ways as they are. */
static void tunnel_start(tg_conn_t *c)
{
    tg_req_t *r = &c->req;
    tg_proxy_t *p = &r->proxy;

    c->state = TG_CONN_TUNNEL;
    p->state = TG_PROXY_TUNNEL;
    c->timer_kind = T_NONE;
    /* what either side sent right behind its head */
    if (c->rbuf.len > c->rbuf.pos)
        tg_buf_append(&p->wbuf, c->rbuf.data + c->rbuf.pos, c->rbuf.len - c->rbuf.pos);
    c->rbuf.pos = c->rbuf.len;
    if (p->rbuf.len > p->rbuf.pos)
        tg_buf_append(&c->wbuf, p->rbuf.data + p->rbuf.pos, p->rbuf.len - p->rbuf.pos);
    p->rbuf.pos = p->rbuf.len;
    tg_proxy_flush(r);
    if (!c->closed)
        tg_conn_output(c);
}

void tg_conn_tunnel_data(tg_req_t *r)
{
    tg_conn_t *c = r->conn;
    tg_proxy_t *p = &r->proxy;
    tg_buf_append(&c->wbuf, p->rbuf.data + p->rbuf.pos, p->rbuf.len - p->rbuf.pos);
    tg_buf_reset(&p->rbuf);
    ev_timer_again(tg_worker.loop, &c->timer);
    tg_conn_output(c);
}

void tg_conn_tunnel_end(tg_req_t *r)
{
    tg_conn_t *c = r->conn;
    /* the upstream closed: the client gets what is queued, then the close */
    c->close_after = 1;
    if (c->wbuf.len == c->wbuf.pos)
        conn_close(c, NULL);
    else
        tg_conn_update(c);
}

static void conn_read(tg_conn_t *c)
{
    tg_buf_t *b = &c->rbuf;

    if (c->state == TG_CONN_CLOSING) {
        /* Lingering: drop whatever arrives until the client closes. */
        char sink[4096];
        ssize_t n = tg_sock_recv(&c->sock, sink, sizeof(sink));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_close(c, NULL);
        return;
    }
    if (c->state == TG_CONN_TUNNEL) {
        tunnel_read(c);
        return;
    }
    tg_buf_reserve(b, b->data ? 0 : TG_BUF_SIZE);
    size_t room = b->cap - b->len;
    if (room == 0)
        return;
    ssize_t n = tg_sock_recv(&c->sock, b->data + b->len, room);
    c->rd_needs_write = n < 0 && errno == EAGAIN && c->sock.want_write;
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        if (c->sock.error && c->state != TG_CONN_ACTIVE)
            tg_log_debug("client %s: %s", tg_conn_peer_name(c), c->sock.error);
        conn_close(c, c->state == TG_CONN_ACTIVE ? "client connection error" : NULL);
        return;
    }
    if (n == 0) {
        c->eof = 1;
        if (c->state == TG_CONN_IDLE || c->state == TG_CONN_HEAD) {
            if (b->len == b->pos) {
                conn_close(c, NULL);
                return;
            }
        } else if (c->state == TG_CONN_ACTIVE && !c->req.body_done) {
            conn_close(c, "client closed the connection before sending the whole body");
            return;
        } else if (c->state == TG_CONN_ACTIVE && !c->req.resp_done) {
            /* The client left while its request is being served (nginx's
             * 499): stop the upstream exchange rather than finish it for
             * nobody. A client that only half-closed is treated the same,
             * as nginx does. */
            conn_close(c, "client closed the connection before the response");
            return;
        }
    } else {
        b->len += (size_t) n;
        if (c->timer_kind == T_BODY)
            ev_timer_again(tg_worker.loop, &c->timer);
    }
    conn_process(c);
}

static void respond_error(tg_conn_t *c, int status, const char *why)
{
    tg_req_t *r = &c->req;

    if (status != 408)
        tg_log_info("client %s: %d %s", tg_conn_peer_name(c), status, why);
    if (r->resp_started) {
        conn_close(c, why);
        return;
    }
    if (c->state != TG_CONN_ACTIVE) {
        c->state = TG_CONN_ACTIVE;
        r->t_start = ev_time();
    }
    if (r->lua != TG_LUA_NONE)
        tg_lua_abandon(r);
    tg_proxy_finish(r);
    c->close_after = 1;
    r->error = why;
    tg_req_local_response(r, status, tg_http_reason(status));
    tg_conn_send_head(r);
}

static void start_request(tg_conn_t *c)
{
    tg_req_t *r = &c->req;
    tg_settings_t *s = tg_worker.settings;

    c->state = TG_CONN_ACTIVE;
    c->nrequests++;
    r->parsed = 1;
    r->t_start = ev_time();
    r->head_request = r->method == HTTP_HEAD;
    r->expect_continue = 0;
    if (r->http_major == 1 && r->http_minor >= 1) {
        size_t vl;
        const char *v = tg_hdr_get(r, TG_REQUEST, "expect", 6, &vl);
        if (v) {
            if (!tg_str_ieq(v, vl, "100-continue", 12)) {
                respond_error(c, 417, "unsupported Expect");
                return;
            }
            r->expect_continue = 1;
        }
    }
    if (!r->keepalive || tg_worker.stopping || c->eof ||
        (s->max_keepalive_requests && c->nrequests >= (unsigned) s->max_keepalive_requests))
        c->close_after = 1;
    if (s->max_body_size && r->content_length != UINT64_MAX &&
        r->content_length > s->max_body_size) {
        respond_error(c, 413, "request body larger than maxBodySize");
        return;
    }
    if (!r->body_done && c->rbuf.cap - c->rbuf.len < READ_AHEAD_MIN)
        tg_buf_reserve(&c->rbuf, READ_AHEAD_MIN);
    tg_lua_start(r);
}

/* Steps through as many states as the buffered bytes allow. */
static void conn_process(tg_conn_t *c)
{
    tg_settings_t *s = tg_worker.settings;

    if (c->in_parse)
        return;
    c->in_parse = 1;
    while (!c->closed) {
        tg_req_t *r = &c->req;
        if (c->state == TG_CONN_IDLE) {
            if (c->rbuf.len == c->rbuf.pos)
                break;
            c->state = TG_CONN_HEAD;
        }
        if (c->state == TG_CONN_HEAD) {
            int rc = tg_http1_parse_head(c);
            if (rc == TG_AGAIN) {
                if (c->rbuf.len >= s->max_head_size) {
                    respond_error(c, 431, "request head larger than maxHeadSize");
                } else if (c->eof) {
                    conn_close(c, NULL);
                } else if (c->rbuf.len == c->rbuf.cap) {
                    tg_buf_reserve(&c->rbuf, c->rbuf.cap); /* grow toward maxHeadSize */
                }
                break;
            }
            if (rc != TG_OK) {
                respond_error(c, rc, tg_http1_error_reason(c));
                break;
            }
            start_request(c);
            continue; /* a request that completed at once lets the next one start */
        }
        if (c->state == TG_CONN_ACTIVE && r->body_started && !r->body_done)
            tg_conn_feed_body(c);
        break;
    }
    c->in_parse = 0;
    tg_conn_update(c);
}

/* Parses buffered request body bytes: into the upstream's write buffer
 * when proxying, or nowhere when discarding. */
void tg_conn_feed_body(tg_conn_t *c)
{
    tg_req_t *r = &c->req;
    tg_buf_t *b = &c->rbuf;

    if (!r->body_started) {
        r->body_started = 1;
        if (r->expect_continue && !r->continue_sent && !r->discard_body && b->len == b->pos) {
            tg_buf_append(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            r->continue_sent = 1;
            tg_conn_output(c);
            if (c->closed)
                return;
        }
    }
    while (!r->body_done && b->pos < b->len &&
           (r->discard_body || r->proxy.wbuf.len - r->proxy.wbuf.pos < TG_WBUF_HIGH)) {
        int rc = tg_http1_parse_body(c);
        if (rc >= 400) {
            respond_error(c, rc, tg_http1_error_reason(c));
            return;
        }
    }
    /* Keep the head; slide unparsed bytes down to it. */
    if (b->pos > r->head_len)
        tg_buf_compact(b, r->head_len);
    if (r->body_wait && r->body_done) {
        r->body_wait = 0;
        tg_conn_update(c);
        tg_lua_resume(r, 0);
        return;
    }
    if (!r->discard_body && r->proxy.state != TG_PROXY_IDLE)
        tg_proxy_flush(r);
    else if (r->discard_body && r->body_done && r->resp_done)
        tg_conn_output(c);
    if (!c->closed)
        tg_conn_update(c);
}

/* ---- writing ------------------------------------------------------------------ */

/* Writes what is queued; finishes the request when its response is out. */
void tg_conn_output(tg_conn_t *c)
{
    tg_buf_t *b = &c->wbuf;
    tg_req_t *r = &c->req;
    int progress = 0;

    if (c->closed || c->internal)
        return;
    while (b->pos < b->len) {
        ssize_t n = tg_sock_send(&c->sock, b->data + b->pos, b->len - b->pos);
        if (n > 0) {
            b->pos += (size_t) n;
            r->bytes_sent += (uint64_t) n;
            progress = 1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            conn_close(c, "client went away while receiving the response");
            return;
        }
    }
    c->wr_needs_read = b->pos < b->len && c->sock.want_read;
    if (b->pos < b->len) {
        c->want_write = 1;
        if (progress && c->timer_kind == T_SEND)
            ev_timer_again(tg_worker.loop, &c->timer);
        tg_conn_update(c);
        return;
    }
    c->want_write = 0;
    tg_buf_reset(b);
    if (c->state == TG_CONN_TUNNEL) {
        if (c->close_after) {
            conn_close(c, NULL);
            return;
        }
        if (progress)
            tg_proxy_resume_read(r); /* the upstream may send more now */
        if (!c->closed)
            tg_conn_update(c);
        return;
    }
    if (c->state != TG_CONN_ACTIVE) {
        tg_conn_update(c);
        return;
    }
    if (!r->resp_done) {
        /* The client drained: let the upstream body flow again. */
        if (progress && r->proxy.state == TG_PROXY_BODY)
            tg_proxy_resume_read(r);
    } else if (r->body_done || c->close_after) {
        finish_request(c);
        return;
    }
    if (!c->closed)
        tg_conn_update(c);
}

/* ---- request lifecycle ------------------------------------------------------- */

void tg_conn_send_head(tg_req_t *r)
{
    tg_conn_t *c = r->conn;

    if (r->resp_started || c->closed)
        return;
    if (!r->local && !r->proxy.head_done) {
        /* Lua ended without a response and without proxying. */
        tg_req_local_response(r, 500, "Internal Server Error");
    }
    r->resp_started = 1;

    if (!r->body_done && !r->body_started) {
        /* The body was never asked for: read and drop a small one to keep
         * the connection; otherwise close after the response. */
        uint64_t left = r->content_length == UINT64_MAX ? UINT64_MAX : r->content_length;
        if (r->expect_continue || r->chunked || left > DISCARD_MAX || c->close_after)
            c->close_after = 1;
        else
            r->discard_body = 1;
    } else if (!r->body_done && r->local) {
        /* Upstream exchange abandoned mid-body (a local error). */
        c->close_after = 1;
    }
    if (tg_worker.stopping)
        c->close_after = 1;

    tg_http1_response_head(r, &c->wbuf);
    if (r->local) {
        r->resp_done = 1;
        if (r->discard_body)
            tg_conn_feed_body(c);
        if (!c->closed)
            tg_conn_output(c);
        return;
    }
    if (r->resp_body_set) {
        /* the upstream body was read whole by Lua, or replaced */
        r->resp_done = 1;
        if (!r->proxy.body_done)
            tg_proxy_finish(r); /* its unread rest makes the connection unusable */
        tg_conn_output(c);
        return;
    }
    if (r->proxy.upgraded) {
        tunnel_start(c);
        return;
    }
    /* Stream the upstream body (some of it may be buffered already). */
    r->proxy.state = TG_PROXY_BODY;
    tg_proxy_resume_read(r);
}

void tg_conn_body_data(tg_req_t *r, const char *p, size_t n)
{
    if (r->resp_buffer) {
        if (r->resp_buf.len + n > tg_worker.settings->max_buffered_body)
            r->resp_overflow = 1;
        else
            tg_buf_append(&r->resp_buf, p, n);
        return;
    }
    tg_http1_body(&r->conn->wbuf, p, n, r->proxy.resp_chunked);
}

void tg_conn_body_end(tg_req_t *r)
{
    if (r->resp_buffer) {
        /* The whole upstream body is in: back to Lua's response phase. */
        r->resp_body_set = 1;
        r->body = r->resp_buf.data ? r->resp_buf.data : "";
        r->body_len = r->resp_buf.len;
        r->resp_wait = 0;
        tg_conn_resume(r, 0);
        return;
    }
    /* The upstream answered before the client finished sending: the rest
     * of the body cannot go anywhere, so the connection ends with this
     * response. */
    if (!r->body_done)
        r->conn->close_after = 1;
    if (r->proxy.resp_chunked)
        tg_buf_append(&r->conn->wbuf, "0\r\n\r\n", 5);
    r->resp_done = 1;
}

void tg_conn_abort(tg_req_t *r, const char *why)
{
    if (r->conn->internal) {
        r->proxy.error_reason = why;
        tg_call_done(r, 502);
        return;
    }
    conn_close(r->conn, why);
}

void tg_conn_resume(tg_req_t *r, int arg)
{
    if (r->conn->internal)
        tg_call_done(r, arg);
    else
        tg_lua_resume(r, arg);
}

void tg_conn_proxy_head(tg_req_t *r)
{
    if (r->conn->internal) {
        tg_call_head(r);
        return;
    }
    r->t_upstream_end = ev_time();
    if (r->lua == TG_LUA_PROXY) {
        tg_lua_resume(r, r->proxy.error);
    } else if (r->proxy.flags & TG_PROXY_LAST) {
        /* Lua finished when it asked for the proxy (TG_PROXY_LAST) */
        if (r->proxy.error)
            tg_req_proxy_failed(r);
        tg_conn_send_head(r);
    }
}

void tg_conn_lua_yielded(tg_req_t *r, int code)
{
    tg_conn_t *c = r->conn;

    if (c->internal) {
        tg_task_yielded(r, code);
        return;
    }
    switch (code) {
    case TG_YIELD_WAIT:
        r->lua = TG_LUA_WAIT;
        if (tg_call_start_pending(r)) {
            /* an HTTP call: resumed when its response is in */
        } else if (r->body_wait) {
            /* Lua wants the whole request body: read it; it resumes then. */
            tg_conn_feed_body(c);
        } else if (r->resp_wait) {
            /* Lua wants the whole upstream body. */
            r->proxy.state = TG_PROXY_BODY;
            tg_proxy_resume_read(r);
        }
        break;
    case TG_YIELD_PROXY:
        r->lua = TG_LUA_PROXY;
        tg_proxy_start(r);
        break;
    case TG_YIELD_RESPOND:
        r->lua = TG_LUA_LOG;
        r->log_pending = 1;
        tg_conn_send_head(r);
        break;
    default: /* TG_YIELD_DONE */
        r->lua = TG_LUA_NONE;
        if ((r->proxy.flags & TG_PROXY_LAST) && r->proxy.state == TG_PROXY_IDLE &&
            !r->local && !r->resp_started)
            tg_proxy_start(r); /* the rest is C's: tg_conn_proxy_head */
        else if (!r->resp_started)
            tg_conn_send_head(r);
        else if (r->resp_done && c->wbuf.len == c->wbuf.pos && !r->log_pending)
            finish_request(c); /* back from the log phase */
        break;
    }
}

static void finish_request(tg_conn_t *c)
{
    tg_req_t *r = &c->req;

    if (r->log_pending) {
        /* The last byte is out: run the log phase; it comes back through
         * tg_conn_lua_yielded(DONE). */
        r->log_pending = 0;
        tg_lua_log(r);
        return;
    }
    tg_access_log(r);
    tg_proxy_finish(r);
    tg_worker.requests++;
    if (c->close_after) {
        int unread = c->rbuf.len > c->rbuf.pos || (r->body_started && !r->body_done);
        /* The request is over (and logged): the connection is only closing. */
        tg_req_reset(r);
        c->state = TG_CONN_CLOSING;
        if (unread) {
            /* Unread bytes would make close() send a reset that can destroy
             * the response in flight: half-close and drain first. */
            shutdown(c->sock.fd, SHUT_WR);
            tg_buf_reset(&c->rbuf);
            tg_conn_update(c);
            return;
        }
        conn_close(c, NULL);
        return;
    }
    tg_req_reset(r);
    tg_buf_compact(&c->rbuf, 0); /* unparsed bytes are the next request */
    tg_http1_request_begin(c);
    c->state = TG_CONN_IDLE;
    c->timer_kind = T_NONE;
    if (c->rbuf.len == 0) {
        /* Idle keep-alive connections hold no buffers. */
        tg_buf_release(&c->rbuf);
        tg_buf_release(&c->wbuf);
        if (c->eof) {
            conn_close(c, NULL);
            return;
        }
        tg_conn_update(c);
        return;
    }
    if (!c->in_parse)
        conn_process(c);
}

/* ---- close ---------------------------------------------------------------------- */

static void conn_close(tg_conn_t *c, const char *why)
{
    tg_req_t *r = &c->req;

    if (c->closed)
        return;
    if (c->state == TG_CONN_TUNNEL) {
        tg_access_log(r); /* a WebSocket is logged when it ends: 101, bytes to the client */
        tg_proxy_finish(r);
    } else if (c->state == TG_CONN_ACTIVE) {
        if (why)
            tg_log_info("request %s: %s", r->id, why);
        if (r->lua != TG_LUA_NONE)
            tg_lua_abandon(r);
        r->log_pending = 0;
        if (!r->resp_done || c->wbuf.len > c->wbuf.pos)
            r->aborted = 1;
        tg_access_log(r);
        tg_proxy_finish(r);
    }
    ev_io_stop(tg_worker.loop, &c->io);
    ev_timer_stop(tg_worker.loop, &c->timer);
    tg_sock_close(&c->sock);
    c->closed = 1;
    tg_req_reset(r);
    tg_buf_release(&c->rbuf);
    tg_buf_release(&c->wbuf);

    if (c->prev)
        c->prev->next = c->next;
    else
        tg_worker.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = tg_worker.closed;
    tg_worker.closed = c;
    tg_worker.nconns--;
    tg_worker_conn_closed();
}

void tg_conns_free_closed(void)
{
    while (tg_worker.closed) {
        tg_conn_t *c = tg_worker.closed;
        tg_worker.closed = c->next;
        free(c);
    }
}

/* Graceful shutdown: idle connections go now; busy ones close after their
 * current response (close_after is set when its head is written). */
void tg_conns_close_idle(void)
{
    tg_conn_t *c = tg_worker.conns;
    while (c) {
        tg_conn_t *next = c->next;
        if (c->state == TG_CONN_IDLE || c->state == TG_CONN_HANDSHAKE ||
            (c->state == TG_CONN_HEAD && c->rbuf.len == 0))
            conn_close(c, NULL);
        else
            c->close_after = 1;
        c = next;
    }
}

void tg_conns_close_all(void)
{
    while (tg_worker.conns)
        conn_close(tg_worker.conns, "worker stopping");
}

/* ---- callbacks --------------------------------------------------------------------- */

static void handshake(tg_conn_t *c)
{
    int rc = c->sock.t->handshake(&c->sock);
    if (rc == TG_AGAIN) {
        tg_conn_update(c);
        return;
    }
    if (rc != TG_OK) {
        tg_log_info("client %s: %s", tg_conn_peer_name(c),
                    c->sock.error ? c->sock.error : "TLS handshake failed");
        conn_close(c, NULL);
        return;
    }
    c->state = TG_CONN_IDLE;
    c->timer_kind = T_NONE;
    conn_read(c); /* the request may have come with the last handshake flight */
}

void tg_conn_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    tg_conn_t *c = tg_container_of(w, tg_conn_t, io);
    tg_unused(loop);

    if (c->state == TG_CONN_HANDSHAKE) {
        handshake(c);
        return;
    }
    /* TLS can cross directions: a write waiting for a read to come in,
     * a read waiting for a write to go out. */
    if ((revents & EV_WRITE) || ((revents & EV_READ) && c->wr_needs_read)) {
        if (c->want_write) {
            tg_conn_output(c);
            if (c->closed)
                return;
        }
    }
    if ((revents & EV_READ) || ((revents & EV_WRITE) && c->rd_needs_write))
        conn_read(c);
}

void tg_conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_conn_t *c = tg_container_of(w, tg_conn_t, timer);
    tg_unused(loop);
    tg_unused(revents);

    switch (c->timer_kind) {
    case T_HEAD:
    case T_FIRST:
        if (c->state == TG_CONN_HEAD && c->rbuf.len > 0) {
            c->timer_kind = T_NONE;
            respond_error(c, 408, "request head not received in time");
            return;
        }
        conn_close(c, NULL);
        return;
    case T_BODY:
        c->timer_kind = T_NONE;
        respond_error(c, 408, "request body not received in time");
        return;
    case T_SEND:
        conn_close(c, "client did not read the response in time");
        return;
    default:
        conn_close(c, NULL);
        return;
    }
}

const char *tg_conn_peer_name(tg_conn_t *c)
{
    size_t n;
    return tg_req_client_ip(&c->req, &n);
}
