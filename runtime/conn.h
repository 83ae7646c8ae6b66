/*
 * conn.h: a client connection. It owns the socket, the read buffer the
 * request heads live in, the write buffer responses are queued in, one
 * timer for whichever client-side wait is current, and the request being
 * served (embedded: one at a time; pipelined requests wait in rbuf).
 */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <netinet/in.h>

#include "req.h"
#include "tls.h"

/* The connection's lifecycle. */
enum tg_conn_state {
    TG_CONN_HANDSHAKE,/* TLS handshake in progress */
    TG_CONN_IDLE,     /* keep-alive, between requests; holds no buffers */
    TG_CONN_HEAD,     /* reading a request head */
    TG_CONN_ACTIVE,   /* a request is being served (Lua, upstream, response) */
    TG_CONN_CLOSING,  /* flushing the last response, then close */
    TG_CONN_TUNNEL,   /* a WebSocket: bytes relayed with the upstream until one side closes */
};

struct tg_conn {
    tg_sock_t sock;             /* the socket and its transport (plain or TLS) */
    enum tg_conn_state state;
    ev_io io;                   /* events computed by update_events() */
    ev_timer timer;             /* head, body, keep-alive or send timeout */
    http_parser parser;         /* requests */
    tg_buf_t rbuf;              /* [0, req.head_len) the head; [pos, len) unparsed */
    tg_buf_t wbuf;              /* response bytes not yet written */
    struct sockaddr_in6 peer;   /* client address (v4 as AF_INET in the same room) */
    char ip[INET6_ADDRSTRLEN];  /* peer's address as text, made on first use (ip_len 0 before) */
    uint8_t ip_len;
    tg_conn_t *prev, *next;     /* the worker's list of connections */
    unsigned nrequests;         /* requests started on this connection */
    uint16_t local_port;        /* the port the client connected to */
    unsigned eof:1;             /* the client sent FIN */
    unsigned close_after:1;     /* close once the current response is written */
    unsigned want_write:1;      /* the last write stopped short */
    unsigned closed:1;          /* socket closed; the struct is freed at end of loop turn */
    unsigned internal:1;        /* no socket: an HTTP call or a timer run (task.c) */
    unsigned rd_needs_write:1;  /* TLS: the last read waits for the socket to be writable */
    unsigned wr_needs_read:1;   /* TLS: the last write waits for it to be readable */
    unsigned in_parse:1;        /* guards against re-entering the parser */
    uint8_t timer_kind;         /* which wait the timer measures (conn.c) */
    tg_req_t req;
};

/* Accepts connections on a listening socket (the listener's callback;
 * w->data carries the listening port). */
void tg_conn_accept(struct ev_loop *loop, ev_io *w, int revents);
void tg_conn_on_io(struct ev_loop *loop, ev_io *w, int revents);
void tg_conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents);
/* Writes queued bytes; finishes the request once its response is out. */
void tg_conn_output(tg_conn_t *c);
const char *tg_conn_peer_name(tg_conn_t *c);

/* Called by the upstream side and the Lua bridge when the request moved on. */
void tg_conn_proxy_head(tg_req_t *r);      /* upstream head parsed (or upstream failed) */
void tg_conn_lua_yielded(tg_req_t *r, int code); /* the coroutine stopped with code */
void tg_conn_send_head(tg_req_t *r);       /* response is final: queue its head */
void tg_conn_body_data(tg_req_t *r, const char *p, size_t n); /* response body bytes */
void tg_conn_body_end(tg_req_t *r);        /* response body complete */
void tg_conn_abort(tg_req_t *r, const char *why); /* cut the client connection now */
void tg_conn_resume(tg_req_t *r, int arg);   /* what Lua waited for (a whole body) is there */
void tg_conn_update(tg_conn_t *c);         /* recompute events after buffers changed */
int tg_conn_wbuf_full(tg_conn_t *c);
int tg_conn_local_port(tg_conn_t *c);
/* "https" on a TLS connection, "http" otherwise. */
const char *tg_conn_scheme(tg_conn_t *c);       /* true while the client is not draining */
void tg_conn_feed_body(tg_conn_t *c);      /* parse buffered request body bytes (for the upstream) */
void tg_conn_tunnel_data(tg_req_t *r);     /* the upstream sent tunnel bytes (in proxy.rbuf) */
void tg_conn_tunnel_end(tg_req_t *r);      /* the upstream side of the tunnel closed */

/* Shutdown and housekeeping for the worker. */
void tg_conns_close_idle(void);
void tg_conns_close_all(void);
void tg_conns_free_closed(void);
int tg_conns_active(void);

#define TG_WBUF_HIGH (256 * 1024) /* stop producing for a socket past this */

#endif
