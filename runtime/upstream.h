/*
 * upstream.h: upstream peers, their keep-alive pools, and the proxied
 * exchange of one request: resolve -> connect -> send head and stream body
 * -> read head -> stream body -> release (pool) or close.
 *
 * Ownership: peers live for the worker's lifetime (a config names a bounded
 * set). A pooled connection belongs to its peer; while in use it belongs to
 * the request (req->proxy.uc) and goes back to the pool only after a chain
 * of checks (complete response, keep-alive allowed, pool not full).
 */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <sys/socket.h>

#include "req.h"
#include "tls.h"

#define TG_PEER_MAX_ADDRS 8

struct tg_peer {
    char *host;                 /* as configured, lower-cased */
    char *hostport;             /* Host header value for changeOrigin */
    int port;
    tg_tls_client_t *tls;       /* https upstream: the client context; NULL for http */
    int is_ip;                  /* host is a literal address: never resolved again */
    struct sockaddr_storage addrs[TG_PEER_MAX_ADDRS];
    socklen_t addrlens[TG_PEER_MAX_ADDRS];
    int naddrs;
    unsigned next_addr;         /* round robin over the resolved addresses */
    ev_tstamp expires;          /* resolved addresses are good until then */
    int resolving;
    const char *resolve_error;  /* last failure, for the log */
    tg_req_t **waiting;         /* requests waiting for the resolver */
    int nwaiting, capwaiting;
    tg_upconn_t *idle;          /* pooled connections, most recent first */
    int nidle;
    tg_peer_t *next;            /* the worker's peer list */
};

struct tg_upconn {
    tg_sock_t sock;             /* the socket and its transport (plain or TLS) */
    ev_io io;
    ev_timer timer;             /* connect, inactivity, or pooled idle */
    tg_peer_t *peer;
    tg_req_t *req;              /* the request using it; NULL while pooled */
    tg_upconn_t *next;          /* pool list */
    unsigned nrequests;         /* requests sent on this connection */
    unsigned connected:1;
    unsigned want_write:1;      /* the last write stopped short */
    unsigned rd_needs_write:1;  /* TLS: the last read waits for writability */
    unsigned wr_needs_read:1;   /* TLS: the last write waits for readability */
    unsigned reused:1;          /* taken from the pool for the current request */
};

/* Finds or creates the peer for host:port (https when tls is not NULL). */
TG_EXPORT tg_peer_t *tg_peer_get(const char *host, size_t len, int port, tg_tls_client_t *tls);

/* Starts the upstream exchange of r (after Lua asked to proxy). */
void tg_proxy_start(tg_req_t *r);
/* More request body is queued in r->proxy.wbuf: write it. */
void tg_proxy_flush(tg_req_t *r);
/* The client drained its buffer: resume reading the upstream. */
void tg_proxy_resume_read(tg_req_t *r);
/* The request is over or aborted: release or close the upstream side. */
void tg_proxy_finish(tg_req_t *r);
/* Called by the resolver when a peer's lookup completed. */
void tg_peer_resolved(tg_peer_t *peer, struct sockaddr_storage *addrs, socklen_t *lens,
                      int n, const char *error);
/* Closes every pooled connection (shutdown). */
void tg_peers_close_idle(void);
/* Frees connections closed during this loop turn. */
void tg_upstream_free_closed(void);
void tg_peers_free(void);

#endif
