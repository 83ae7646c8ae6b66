/*
 * upstream.c: peers, keep-alive pools, and the proxied exchange:
 *
 *   resolve -> connect -> send (head, then body as the client sends it)
 *           -> read head -> [Lua response phase] -> stream body -> release
 *
 * Failures before the response head become the request's proxy error
 * (502/504), which the Lua proxy policy turns into a response. Failures
 * after the head cut the client connection, since its response has begun.
 * A pooled connection that turns out closed is retried once on another
 * connection when the request is idempotent and has no body.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "conn.h"
#include "http1.h"
#include "log.h"
#include "bridge.h"
#include "resolver.h"
#include "upstream.h"
#include "worker.h"

#define RESOLVE_TTL 30.0 /* seconds a lookup is trusted (getaddrinfo gives no TTL) */
#define MAX_TRIES 4

/* Upstream peers live as long as the process. A policy's constructor gets
 * its peers in the worker's build thread (worker.c), so the list is under
 * a lock; a peer's pool and lookups are the loop's alone. */
static tg_peer_t *peers;
static pthread_mutex_t peers_lock = PTHREAD_MUTEX_INITIALIZER;
static tg_upconn_t *dead; /* closed this loop turn; freed by tg_upstream_free_closed() */

static void on_io(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void on_idle_io(struct ev_loop *loop, ev_io *w, int revents);
static void connect_upstream(tg_req_t *r);
static void up_update(tg_req_t *r);

/* ---- peers ------------------------------------------------------------------ */

tg_peer_t *tg_peer_get(const char *host, size_t len, int port, tg_tls_client_t *tls)
{
    char name[256];
    char buf[300];

    if (len == 0 || len >= sizeof(name) || port <= 0 || port > 65535)
        return NULL;
    for (size_t i = 0; i < len; i++)
        name[i] = (char) ((host[i] >= 'A' && host[i] <= 'Z') ? host[i] | 0x20 : host[i]);
    name[len] = '\0';
    /* URL hosts carry IPv6 literals in brackets. */
    char *bare = name;
    if (name[0] == '[' && name[len - 1] == ']') {
        name[len - 1] = '\0';
        bare = name + 1;
    }
    pthread_mutex_lock(&peers_lock);
    for (tg_peer_t *p = peers; p; p = p->next)
        if (p->port == port && p->tls == tls && strcmp(p->host, bare) == 0) {
            pthread_mutex_unlock(&peers_lock);
            return p;
        }

    tg_peer_t *p = tg_calloc(1, sizeof(*p));
    p->host = tg_strndup(bare, strlen(bare));
    p->port = port;
    p->tls = tls;
    if (port == (tls ? 443 : 80))
        snprintf(buf, sizeof(buf), "%s", name);
    else
        snprintf(buf, sizeof(buf), "%s:%d", name, port);
    p->hostport = tg_strndup(buf, strlen(buf));

    struct sockaddr_in *in4 = (struct sockaddr_in *) &p->addrs[0];
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &p->addrs[0];
    if (inet_pton(AF_INET, bare, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t) port);
        p->addrlens[0] = sizeof(*in4);
        p->naddrs = 1;
        p->is_ip = 1;
    } else if (inet_pton(AF_INET6, bare, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t) port);
        p->addrlens[0] = sizeof(*in6);
        p->naddrs = 1;
        p->is_ip = 1;
    }
    p->next = peers;
    peers = p;
    pthread_mutex_unlock(&peers_lock);
    return p;
}

static void fail(tg_req_t *r, int status, const char *reason);

void tg_peer_resolved(tg_peer_t *peer, struct sockaddr_storage *addrs, socklen_t *lens, int n,
                      const char *error)
{
    peer->resolving = 0;
    if (n > 0) {
        if (n > TG_PEER_MAX_ADDRS)
            n = TG_PEER_MAX_ADDRS;
        memcpy(peer->addrs, addrs, (size_t) n * sizeof(*addrs));
        memcpy(peer->addrlens, lens, (size_t) n * sizeof(*lens));
        peer->naddrs = n;
        peer->expires = ev_now(tg_worker.loop) + RESOLVE_TTL;
        peer->resolve_error = NULL;
    } else {
        peer->resolve_error = error;
        tg_log_warn("could not resolve upstream %s: %s%s", peer->host, error,
                    peer->naddrs ? " (keeping the previous addresses)" : "");
    }
    /* Requests waiting for this lookup go on (or fail) now. */
    int nw = peer->nwaiting;
    tg_req_t **waiting = peer->waiting;
    peer->waiting = NULL;
    peer->nwaiting = peer->capwaiting = 0;
    for (int i = 0; i < nw; i++) {
        tg_req_t *r = waiting[i];
        if (r == NULL || r->proxy.state != TG_PROXY_RESOLVE)
            continue;
        if (peer->naddrs)
            connect_upstream(r);
        else
            fail(r, 502, "could not resolve the upstream host");
    }
    free(waiting);
}

static void wait_resolve(tg_req_t *r)
{
    tg_peer_t *peer = r->proxy.peer;
    if (peer->nwaiting == peer->capwaiting) {
        peer->capwaiting = peer->capwaiting ? peer->capwaiting * 2 : 8;
        peer->waiting = tg_realloc(peer->waiting, (size_t) peer->capwaiting * sizeof(tg_req_t *));
    }
    peer->waiting[peer->nwaiting++] = r;
    r->proxy.state = TG_PROXY_RESOLVE;
    if (!peer->resolving) {
        peer->resolving = 1;
        tg_resolve(peer);
    }
}

/* ---- connections ---------------------------------------------------------------- */

static void close_uc(tg_upconn_t *uc)
{
    ev_io_stop(tg_worker.loop, &uc->io);
    ev_timer_stop(tg_worker.loop, &uc->timer);
    tg_sock_close(&uc->sock);
    uc->req = NULL;
    uc->next = dead;
    dead = uc;
}

void tg_upstream_free_closed(void)
{
    while (dead) {
        tg_upconn_t *uc = dead;
        dead = uc->next;
        free(uc);
    }
}

static void pool_unlink(tg_upconn_t *uc)
{
    tg_peer_t *p = uc->peer;
    for (tg_upconn_t **pp = &p->idle; *pp; pp = &(*pp)->next) {
        if (*pp == uc) {
            *pp = uc->next;
            p->nidle--;
            return;
        }
    }
}

static void pool_put(tg_upconn_t *uc)
{
    tg_peer_t *p = uc->peer;
    uc->req = NULL;
    uc->reused = 0;
    ev_io_stop(tg_worker.loop, &uc->io);
    ev_set_cb(&uc->io, on_idle_io);
    ev_io_modify(&uc->io, EV_READ);
    ev_io_start(tg_worker.loop, &uc->io);
    uc->timer.repeat = tg_worker.settings->upstream_idle_timeout;
    ev_timer_again(tg_worker.loop, &uc->timer);
    uc->next = p->idle;
    p->idle = uc;
    p->nidle++;
}

static tg_upconn_t *pool_take(tg_peer_t *p)
{
    tg_upconn_t *uc = p->idle;
    if (uc == NULL)
        return NULL;
    p->idle = uc->next;
    p->nidle--;
    uc->next = NULL;
    ev_io_stop(tg_worker.loop, &uc->io);
    ev_set_cb(&uc->io, on_io);
    ev_timer_stop(tg_worker.loop, &uc->timer);
    return uc;
}

/* A pooled connection became readable or timed out: the upstream closed
 * it, or sent bytes nobody asked for; either way it is done. */
static void on_idle_io(struct ev_loop *loop, ev_io *w, int revents)
{
    tg_upconn_t *uc = tg_container_of(w, tg_upconn_t, io);
    tg_unused(loop);
    tg_unused(revents);
    if (uc->sock.ssl) {
        /* TLS 1.3 servers send session tickets after the handshake: the
         * connection is still good if that was all. */
        char b;
        ssize_t n = tg_sock_recv(&uc->sock, &b, 1);
        if (n < 0 && errno == EAGAIN && !uc->sock.want_write)
            return;
    }
    pool_unlink(uc);
    close_uc(uc);
}

void tg_peers_close_idle(void)
{
    pthread_mutex_lock(&peers_lock);
    tg_peer_t *list = peers;
    pthread_mutex_unlock(&peers_lock);
    for (tg_peer_t *p = list; p; p = p->next) {
        while (p->idle) {
            tg_upconn_t *uc = p->idle;
            p->idle = uc->next;
            close_uc(uc);
        }
        p->nidle = 0;
    }
}

void tg_peers_free(void)
{
    tg_peers_close_idle();
    tg_upstream_free_closed();
    pthread_mutex_lock(&peers_lock);
    while (peers) {
        tg_peer_t *p = peers;
        peers = p->next;
        free(p->host);
        free(p->hostport);
        free(p->waiting);
        free(p);
    }
    pthread_mutex_unlock(&peers_lock);
}

/* ---- the exchange ---------------------------------------------------------------- */

static int idempotent(int method)
{
    switch (method) {
    case HTTP_GET: case HTTP_HEAD: case HTTP_PUT: case HTTP_DELETE: case HTTP_OPTIONS:
    case HTTP_TRACE:
        return 1;
    default:
        return 0;
    }
}

static void release(tg_req_t *r, int reusable)
{
    tg_proxy_t *p = &r->proxy;
    tg_upconn_t *uc = p->uc;
    if (uc == NULL)
        return;
    p->uc = NULL;
    if (reusable && p->peer->nidle < tg_worker.settings->upstream_keepalive &&
        !tg_worker.stopping)
        pool_put(uc);
    else
        close_uc(uc);
}

/* A failure before the response head reached the client. */
static void fail(tg_req_t *r, int status, const char *reason)
{
    tg_proxy_t *p = &r->proxy;

    release(r, 0);
    if (p->state == TG_PROXY_BODY || r->resp_started) {
        tg_log_warn("request %s: upstream %s:%d: %s", r->id, p->peer->host, p->peer->port,
                    reason);
        tg_conn_abort(r, reason);
        return;
    }
    tg_log_warn("request %s: upstream %s:%d: %s", r->id, p->peer->host, p->peer->port, reason);
    reason = tg_arena_strndup(&r->arena, reason, strlen(reason)); /* may be a shared buffer */
    p->error = status;
    p->error_reason = reason;
    r->error = reason;
    p->state = TG_PROXY_DONE;
    tg_conn_proxy_head(r);
}

/* Another connection for the same request, when that is safe. */
static int retry(tg_req_t *r, int reused_failed)
{
    tg_proxy_t *p = &r->proxy;

    if (p->tries >= MAX_TRIES || p->head_done || p->rbuf.len)
        return 0;
    if (reused_failed) {
        /* The request reached a pooled connection the upstream had closed. */
        if (!idempotent(r->method) || (!r->buffer_body && (r->chunked ||
            (r->content_length != UINT64_MAX && r->content_length != 0))))
            return 0;
        tg_buf_reset(&p->wbuf);
        tg_http1_request_head(r, &p->wbuf);
        if (r->buffer_body)
            tg_buf_append(&p->wbuf, r->body_buf.data ? r->body_buf.data : "", r->body_buf.len);
    } else if (p->sent_any) {
        return 0;
    }
    release(r, 0);
    tg_log_debug("request %s: retrying upstream %s:%d", r->id, p->peer->host, p->peer->port);
    connect_upstream(r);
    return 1;
}

static void connect_failed(tg_req_t *r, int err)
{
    tg_proxy_t *p = &r->proxy;
    /* A refused address: the next one (localhost may be ::1 and 127.0.0.1). */
    if (p->tries < p->peer->naddrs && retry(r, 0))
        return;
    tg_log_debug("connect: %s", strerror(err));
    fail(r, 502, err == ECONNREFUSED ? "upstream refused the connection"
                                     : "could not connect to the upstream");
}

/* TLS handshake with an https upstream; the connect timer bounds it. */
static void handshake(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_upconn_t *uc = p->uc;
    int rc = uc->sock.t->handshake(&uc->sock);
    if (rc == TG_AGAIN) {
        up_update(r);
        return;
    }
    if (rc != TG_OK) {
        fail(r, 502, uc->sock.error ? uc->sock.error : "TLS handshake with the upstream failed");
        return;
    }
    ev_timer_stop(tg_worker.loop, &uc->timer);
    p->state = TG_PROXY_SEND;
    tg_proxy_flush(r);
}

/* The TCP connection is up: TLS first for https, then the request. */
static void connected(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_upconn_t *uc = p->uc;
    uc->connected = 1;
    if (p->peer->tls) {
        uc->timer.repeat = tg_worker.settings->upstream_connect_timeout;
        ev_timer_again(tg_worker.loop, &uc->timer);
        if (tg_sock_tls_connect(&uc->sock, uc->sock.fd, p->peer->tls, p->peer->host) != TG_OK) {
            fail(r, 502, uc->sock.error ? uc->sock.error : "cannot start TLS");
            return;
        }
        p->state = TG_PROXY_HANDSHAKE;
        handshake(r);
        return;
    }
    ev_timer_stop(tg_worker.loop, &uc->timer);
    p->state = TG_PROXY_SEND;
    tg_proxy_flush(r);
}

static void connect_upstream(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_peer_t *peer = p->peer;
    tg_upconn_t *uc = pool_take(peer);

    if (uc) {
        uc->req = r;
        uc->reused = 1;
        uc->nrequests++;
        p->uc = uc;
        p->state = TG_PROXY_SEND;
        tg_proxy_flush(r);
        return;
    }

    unsigned k = peer->next_addr++ % (unsigned) peer->naddrs;
    struct sockaddr *sa = (struct sockaddr *) &peer->addrs[k];
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    p->tries++;
    if (fd < 0) {
        tg_log_rate_limited(TG_LOG_ERROR, "socket: %s", strerror(errno));
        fail(r, 502, "could not create a socket for the upstream");
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    uc = tg_calloc(1, sizeof(*uc));
    tg_sock_plain(&uc->sock, fd);
    uc->peer = peer;
    uc->req = r;
    uc->nrequests = 1;
    ev_io_init(&uc->io, on_io, fd, 0);
    ev_init(&uc->timer, on_timer);
    p->uc = uc;

    if (connect(fd, sa, peer->addrlens[k]) == 0) {
        connected(r);
        return;
    }
    if (errno != EINPROGRESS) {
        connect_failed(r, errno);
        return;
    }
    p->state = TG_PROXY_CONNECT;
    uc->timer.repeat = tg_worker.settings->upstream_connect_timeout;
    ev_timer_again(tg_worker.loop, &uc->timer);
    up_update(r);
}

void tg_proxy_start(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_peer_t *peer = p->peer;

    r->t_upstream = ev_time();
    p->tries = 0;
    p->error = 0;
    tg_buf_reset(&p->wbuf);
    tg_http1_request_head(r, &p->wbuf);
    if (r->buffer_body)
        tg_buf_append(&p->wbuf, r->body_buf.data ? r->body_buf.data : "", r->body_buf.len);
    tg_http1_response_begin(r);
    p->state = TG_PROXY_CONNECT;
    /* Body bytes the client already sent go right behind the head. */
    if (!r->body_done)
        tg_conn_feed_body(r->conn);
    if (r->conn->closed || p->state != TG_PROXY_CONNECT)
        return; /* the body was refused (413, bad chunking) and answered */

    if (!peer->is_ip) {
        ev_tstamp now = ev_now(tg_worker.loop);
        if (peer->naddrs == 0) {
            wait_resolve(r);
            return;
        }
        if (now > peer->expires && !peer->resolving) {
            /* Serve with the addresses we have while refreshing them. */
            peer->resolving = 1;
            tg_resolve(peer);
        }
    }
    connect_upstream(r);
}

void tg_proxy_flush(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_upconn_t *uc = p->uc;
    tg_buf_t *b = &p->wbuf;
    int progress = 0;

    if (uc == NULL || p->state == TG_PROXY_CONNECT || p->state == TG_PROXY_RESOLVE ||
        p->state == TG_PROXY_HANDSHAKE)
        return;
    while (b->pos < b->len) {
        ssize_t n = tg_sock_send(&uc->sock, b->data + b->pos, b->len - b->pos);
        if (n > 0) {
            b->pos += (size_t) n;
            progress = 1;
            p->sent_any = 1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else {
            if (p->state == TG_PROXY_TUNNEL) {
                release(r, 0);
                tg_conn_tunnel_end(r);
                return;
            }
            int reused = uc->reused;
            const char *why = uc->sock.error ? uc->sock.error
                                             : "upstream connection failed while sending the request";
            if (!retry(r, reused))
                fail(r, 502, why);
            return;
        }
    }
    uc->want_write = b->pos < b->len;
    uc->wr_needs_read = uc->want_write && uc->sock.want_read;
    if (progress)
        ev_timer_stop(tg_worker.loop, &uc->timer); /* up_update re-arms it */
    if (!uc->want_write) {
        tg_buf_reset(b);
        tg_conn_t *c = r->conn;
        /* Room again: parse more of the client's body, if it is waiting. */
        if (r->body_started && !r->body_done && c->rbuf.pos < c->rbuf.len && !p->in_flush) {
            p->in_flush = 1;
            tg_conn_feed_body(c);
            p->in_flush = 0;
            if (c->closed || p->uc != uc)
                return;
        } else {
            tg_conn_update(c);
        }
    }
    up_update(r);
}

static void up_update(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_upconn_t *uc = p->uc;
    int ev = 0;

    if (uc == NULL)
        return;
    if (p->state == TG_PROXY_CONNECT) {
        ev = EV_WRITE;
    } else if (p->state == TG_PROXY_HANDSHAKE) {
        ev = uc->sock.want_write ? EV_WRITE : EV_READ;
    } else if (p->state == TG_PROXY_TUNNEL) {
        if (uc->want_write)
            ev |= uc->wr_needs_read ? EV_READ : EV_WRITE;
        if (!p->eof && !tg_conn_wbuf_full(r->conn)) {
            ev |= uc->rd_needs_write ? EV_WRITE : EV_READ;
            if (tg_sock_pending(&uc->sock))
                ev_feed_event(tg_worker.loop, &uc->io, EV_READ);
        }
    } else {
        if (uc->want_write)
            ev |= uc->wr_needs_read ? EV_READ : EV_WRITE;
        int room = p->rbuf.data == NULL || p->rbuf.len < p->rbuf.cap;
        if (!p->body_done && !p->eof && room &&
            (p->state == TG_PROXY_SEND ? !p->head_done : !tg_conn_wbuf_full(r->conn))) {
            ev |= uc->rd_needs_write ? EV_WRITE : EV_READ;
            if (tg_sock_pending(&uc->sock))
                ev_feed_event(tg_worker.loop, &uc->io, EV_READ); /* decrypted, waiting */
        }
    }
    if ((uc->io.events & (EV_READ | EV_WRITE)) != ev || !ev_is_active(&uc->io)) {
        ev_io_stop(tg_worker.loop, &uc->io);
        ev_io_modify(&uc->io, ev);
        if (ev)
            ev_io_start(tg_worker.loop, &uc->io);
    }
    if (p->state == TG_PROXY_CONNECT || p->state == TG_PROXY_HANDSHAKE)
        return; /* the connect timer runs from connect_upstream() */
    if (p->state == TG_PROXY_TUNNEL) {
        ev_timer_stop(tg_worker.loop, &uc->timer); /* the client's tunnel timer rules */
        return;
    }
    if (ev) {
        if (!ev_is_active(&uc->timer)) {
            uc->timer.repeat = p->timeout > 0 ? p->timeout
                                              : tg_worker.settings->upstream_timeout;
            ev_timer_again(tg_worker.loop, &uc->timer);
        }
    } else {
        ev_timer_stop(tg_worker.loop, &uc->timer);
    }
}

/* Parses buffered response body into the client's buffer, as far as the
 * client keeps up; releases the upstream connection at the end. */
void tg_proxy_resume_read(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_conn_t *c = r->conn;
    tg_buf_t *b = &p->rbuf;

    size_t queued = c->wbuf.len;

    if (p->state == TG_PROXY_TUNNEL) {
        up_update(r);
        return;
    }
    if (p->state != TG_PROXY_BODY)
        return;
    while (!p->body_done && b->pos < b->len && !tg_conn_wbuf_full(c)) {
        if (tg_http1_parse_response(r) == TG_ERROR) {
            release(r, 0);
            tg_conn_abort(r, "invalid response body from the upstream");
            return;
        }
    }
    if (b->pos > p->head_len)
        tg_buf_compact(b, p->head_len);
    if (!p->body_done && p->eof && b->pos == b->len) {
        if (tg_http1_response_eof(r) != TG_OK) {
            release(r, 0);
            tg_conn_abort(r, "upstream closed the connection in the middle of the body");
            return;
        }
    }
    if (r->resp_overflow) {
        /* Too big for the policy that wanted it whole: a 502 instead. */
        release(r, 0);
        p->state = TG_PROXY_DONE;
        r->resp_wait = 0;
        r->error = "upstream response larger than maxBufferedBody";
        tg_req_local_response(r, 502, "Bad gateway.");
        tg_conn_resume(r, 502);
        return;
    }
    if (p->body_done && p->state == TG_PROXY_BODY) {
        int reusable = !p->eof && tg_http1_response_keepalive(r) && r->body_done &&
                       p->wbuf.pos == p->wbuf.len && b->pos == b->len;
        int buffering = r->resp_buffer;
        release(r, reusable);
        p->state = TG_PROXY_DONE;
        tg_conn_body_end(r);
        if (buffering)
            return; /* Lua has the body and sends the response */
    } else {
        up_update(r);
        /* Nothing new, and nothing waiting that the write watcher will not
         * send; a head queued by tg_conn_send_head goes out now, without
         * waiting for the first body bytes. */
        if (c->wbuf.len == queued && (c->want_write || c->wbuf.pos == c->wbuf.len))
            return;
    }
    tg_conn_output(c);
}

static void tunnel_read(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_upconn_t *uc = p->uc;
    tg_buf_t *b = &p->rbuf;

    tg_buf_reset(b);
    tg_buf_reserve(b, TG_BUF_SIZE);
    ssize_t n = tg_sock_recv(&uc->sock, b->data, b->cap);
    uc->rd_needs_write = n < 0 && errno == EAGAIN && uc->sock.want_write;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        up_update(r);
        return;
    }
    if (n <= 0) {
        p->eof = 1;
        release(r, 0);
        tg_conn_tunnel_end(r);
        return;
    }
    b->len = (size_t) n;
    tg_conn_tunnel_data(r);
    if (p->uc == uc)
        up_update(r);
}

static void up_read(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;
    tg_upconn_t *uc = p->uc;
    tg_buf_t *b = &p->rbuf;

    if (p->state == TG_PROXY_TUNNEL) {
        tunnel_read(r);
        return;
    }

    if (b->data == NULL)
        tg_buf_reserve(b, TG_BUF_SIZE);
    if (b->len == b->cap) {
        if (!p->head_done)
            fail(r, 502, "upstream response head too large");
        return;
    }
    ssize_t n = tg_sock_recv(&uc->sock, b->data + b->len, b->cap - b->len);
    uc->rd_needs_write = n < 0 && errno == EAGAIN && uc->sock.want_write;
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            up_update(r);
            return;
        }
        if (!p->head_done) {
            /* TLS says why (with TLS 1.3 a refused client certificate only
             * shows on the first read) */
            const char *why = uc->sock.error ? uc->sock.error
                              : errno == ECONNRESET ? "upstream reset the connection"
                                                    : "upstream connection failed";
            if (!retry(r, uc->reused))
                fail(r, 502, why);
            return;
        }
        release(r, 0);
        tg_conn_abort(r, "upstream connection failed in the middle of the body");
        return;
    }
    ev_timer_again(tg_worker.loop, &uc->timer);
    if (n == 0) {
        p->eof = 1;
        if (!p->head_done) {
            if (b->len == 0 && retry(r, uc->reused))
                return;
            if (tg_http1_parse_response(r) == TG_OK && p->head_done) {
                /* head complete at EOF: fall through to deliver it */
            } else {
                fail(r, 502, b->len ? "upstream closed the connection in the middle of the head"
                                    : "upstream closed the connection without answering");
                return;
            }
        }
    } else {
        b->len += (size_t) n;
    }

    if (!p->head_done) {
        if (tg_http1_parse_response(r) == TG_ERROR) {
            fail(r, 502, "invalid response from the upstream");
            return;
        }
        if (!p->head_done) {
            if (b->len == b->cap)
                fail(r, 502, "upstream response head too large");
            else
                up_update(r);
            return;
        }
        /* The head is in: Lua's response phase, then tg_conn_send_head(). */
        ev_timer_stop(tg_worker.loop, &uc->timer);
        up_update(r);
        tg_conn_proxy_head(r);
        return;
    }
    if (p->state == TG_PROXY_BODY)
        tg_proxy_resume_read(r);
    else
        up_update(r);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    tg_upconn_t *uc = tg_container_of(w, tg_upconn_t, io);
    tg_req_t *r = uc->req;
    tg_proxy_t *p = &r->proxy;
    tg_unused(loop);

    if (p->state == TG_PROXY_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(uc->sock.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            connect_failed(r, err);
            return;
        }
        connected(r);
        return;
    }
    if (p->state == TG_PROXY_HANDSHAKE) {
        handshake(r);
        return;
    }
    /* TLS can cross directions (see conn.c) */
    if ((revents & EV_WRITE) || ((revents & EV_READ) && uc->wr_needs_read)) {
        if (uc->want_write) {
            tg_proxy_flush(r);
            if (p->uc != uc)
                return;
        }
    }
    if ((revents & EV_READ) || ((revents & EV_WRITE) && uc->rd_needs_write))
        up_read(r);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_upconn_t *uc = tg_container_of(w, tg_upconn_t, timer);
    tg_req_t *r = uc->req;
    tg_unused(loop);
    tg_unused(revents);

    if (r == NULL) { /* pooled and idle too long */
        pool_unlink(uc);
        close_uc(uc);
        return;
    }
    if (r->proxy.state == TG_PROXY_CONNECT)
        fail(r, 504, "timed out connecting to the upstream");
    else if (r->proxy.state == TG_PROXY_HANDSHAKE)
        fail(r, 504, "timed out in the TLS handshake with the upstream");
    else if (!r->proxy.head_done)
        fail(r, 504, "upstream timed out");
    else {
        release(r, 0);
        tg_conn_abort(r, "upstream timed out in the middle of the body");
    }
}

void tg_proxy_finish(tg_req_t *r)
{
    tg_proxy_t *p = &r->proxy;

    if (p->state == TG_PROXY_RESOLVE) {
        for (int i = 0; i < p->peer->nwaiting; i++)
            if (p->peer->waiting[i] == r)
                p->peer->waiting[i] = NULL;
    }
    /* An exchange cut short leaves the connection in an unknown state. */
    release(r, 0);
    p->state = TG_PROXY_IDLE;
}

int tg_req_proxy(tg_req_t *r, tg_peer_t *peer, const char *target, size_t len, int flags,
                 double timeout)
{
    tg_proxy_t *p = &r->proxy;
    if (peer == NULL)
        return TG_ERROR;
    p->peer = peer;
    p->flags = flags;
    p->timeout = timeout;
    if (target) {
        p->target = tg_arena_strndup(&r->arena, target, len);
        p->target_len = (uint32_t) len;
    } else {
        p->target = NULL;
    }
    return TG_OK;
}

/* The gateway's answer when proxying failed before a response head, as
 * Express Gateway's proxy policy gives it: 504 "Gateway timeout." after a
 * timeout, 502 "Bad gateway." otherwise, as text/html. Header edits made
 * before (rate-limit headers...) stay. */
void tg_req_proxy_failed(tg_req_t *r)
{
    static const char ct[] = "text/html; charset=utf-8";
    int status = r->proxy.error == 504 ? 504 : 502;
    const char *body = status == 504 ? "Gateway timeout." : "Bad gateway.";

    tg_resp_set_status(r, status);
    tg_resp_set_body(r, body, strlen(body));
    tg_hdr_edit(r, TG_RESPONSE, TG_HDR_SET, "Content-Type", 12, ct, sizeof(ct) - 1);
}

const char *tg_req_proxy_error(tg_req_t *r)
{
    return r->proxy.error_reason;
}
