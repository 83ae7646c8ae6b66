/*
 * req.h: one HTTP exchange as the rest of the runtime and Lua see it: the
 * parsed request head, edits Lua made to the request and response headers,
 * the response status and local body, and the upstream exchange.
 *
 * Ownership: a request is embedded in its client connection (one request is
 * active per connection at a time; pipelined requests wait in the read
 * buffer). Header slices are offsets into the connection's read buffer
 * (request) or the upstream exchange's read buffer (response); both buffers
 * keep the head bytes until the request ends. Everything else the request
 * allocates comes from its arena, freed in tg_req_reset().
 */
#ifndef TG_REQ_H
#define TG_REQ_H

#include <ev.h>
#include <http_parser.h>

#include "arena.h"
#include "buf.h"
#include "tg.h"

typedef struct tg_conn tg_conn_t;
typedef struct tg_req tg_req_t;
typedef struct tg_peer tg_peer_t;
typedef struct tg_upconn tg_upconn_t;

/* The header names the runtime itself acts on, recognised once when a head
 * is parsed (tg_header_t.kind), so writing and checking a head never
 * compares names again. TG_HK_TE .. TG_HK_TRANSFER_ENCODING are the
 * hop-by-hop and framing headers that are never forwarded. */
enum tg_hkind {
    TG_HK_OTHER = 0,
    TG_HK_TE, TG_HK_EXPECT, TG_HK_UPGRADE, TG_HK_TRAILER, TG_HK_CONNECTION,
    TG_HK_KEEP_ALIVE, TG_HK_CONTENT_LENGTH, TG_HK_PROXY_CONNECTION,
    TG_HK_TRANSFER_ENCODING,
    TG_HK_HOST, TG_HK_DATE, TG_HK_REQUEST_ID, TG_HK_XFF, TG_HK_XF_PORT, TG_HK_XF_PROTO,
    TG_HK_XF_HOST,
};
#define TG_HK_BIT(k) (1u << (k))
#define TG_HK_HOP_BITS (((TG_HK_BIT(TG_HK_TRANSFER_ENCODING) << 1) - 1) & ~1u)

/* A header as offsets into the buffer holding the head it came from. */
typedef struct tg_header {
    uint32_t name, name_len;
    uint32_t value, value_len;
    uint8_t kind; /* enum tg_hkind, set when the whole head is in */
} tg_header_t;

typedef struct tg_headers {
    tg_header_t *items; /* arena */
    uint32_t n, cap;
} tg_headers_t;

/* Edits Lua makes to a header list; applied when the head is written.
 * SET replaces every original header of that name, ADD appends one more,
 * DEL removes the name (originals and earlier edits). Names are stored
 * lower-cased. */
enum tg_hedit_op { TG_HDR_SET = 0, TG_HDR_ADD = 1, TG_HDR_DEL = 2 };

typedef struct tg_hedit {
    const char *name, *value;  /* arena copies; name lower-cased */
    const char *out_name;      /* the name as Lua spelled it, for the wire */
    uint32_t name_len, value_len;
    int op;
} tg_hedit_t;

typedef struct tg_hedits {
    tg_hedit_t *items; /* arena */
    uint32_t n, cap;
} tg_hedits_t;

/* Which header list an FFI call works on. */
enum { TG_REQUEST = 0, TG_RESPONSE = 1 };

/* Where the Lua side of a request stands. */
enum tg_lua_state {
    TG_LUA_NONE,      /* no coroutine attached */
    TG_LUA_RUNNING,   /* inside lua_resume */
    TG_LUA_WAIT,      /* suspended on a timer or other async operation */
    TG_LUA_PROXY,     /* suspended until the upstream answers (or fails) */
    TG_LUA_LOG,       /* suspended until the last byte is written, for the log phase */
};

/* Flags for tg_req_proxy(). */
#define TG_PROXY_CHANGE_ORIGIN 0x1 /* Host becomes the upstream's */
#define TG_PROXY_XFWD          0x2 /* add X-Forwarded-For/-Proto/-Host/-Port */
#define TG_PROXY_WS            0x4 /* a WebSocket upgrade may go through (a tunnel) */
/* Lua is done with the request once it asked for the proxy: it yields DONE
 * instead of PROXY, the exchange starts then and is never reported back to
 * Lua; a failure before the response head gets tg_req_proxy_failed's answer. */
#define TG_PROXY_LAST          0x8

/* Upstream exchange states, in order. */
enum tg_proxy_state {
    TG_PROXY_IDLE,        /* no upstream involved */
    TG_PROXY_RESOLVE,     /* waiting for the peer's address */
    TG_PROXY_CONNECT,     /* non-blocking connect in progress */
    TG_PROXY_HANDSHAKE,   /* TLS handshake with an https upstream */
    TG_PROXY_SEND,        /* sending the head and streaming the body; reading the response head */
    TG_PROXY_BODY,        /* response head handed to Lua/client; streaming the response body */
    TG_PROXY_DONE,        /* response complete (upstream connection released) */
    TG_PROXY_TUNNEL,      /* after 101: bytes relayed both ways (WebSocket) */
};

/* Why an upstream exchange failed: the status the client gets. */
enum tg_proxy_error {
    TG_UPSTREAM_OK = 0,
    TG_UPSTREAM_FAILED = 502,   /* refused, reset, invalid response */
    TG_UPSTREAM_TIMEOUT = 504,
};

typedef struct tg_proxy {
    enum tg_proxy_state state;
    tg_peer_t *peer;
    tg_upconn_t *uc;            /* the connection in use; NULL when none */
    http_parser parser;         /* upstream response */
    tg_buf_t wbuf;              /* request bytes not yet written upstream */
    tg_buf_t rbuf;              /* response bytes; the head stays until the request ends */
    uint32_t head_len;          /* bytes of rbuf that are the response head */
    tg_headers_t headers;       /* response headers, offsets into rbuf */
    const char *target;         /* request-target sent upstream (arena); NULL: the client's */
    uint32_t target_len;
    int flags;                  /* TG_PROXY_* */
    double timeout;             /* upstream inactivity limit, seconds */
    int tries;                  /* connections attempted for this request */
    int error;                  /* enum tg_proxy_error once failed */
    const char *error_reason;   /* static string for the log */
    unsigned head_done:1;       /* response head parsed */
    unsigned body_done:1;       /* response complete */
    unsigned sent_any:1;        /* some request bytes reached the upstream socket */
    unsigned resp_chunked:1;    /* the client gets the body chunked */
    unsigned resp_close_delimited:1; /* no length: the client connection closes at the end */
    unsigned skip_body:1;       /* HEAD request or 1xx/204/304: no body */
    unsigned interim:1;         /* parsing a 1xx interim response, which is dropped */
    unsigned upgraded:1;        /* the upstream switched protocols (101): a tunnel follows */
    unsigned eof:1;             /* the upstream closed its side */
    unsigned in_flush:1;        /* guards tg_proxy_flush() against re-entry */
    uint8_t hstate;             /* header parse state (http1.c) */
    uint8_t framing;            /* chunked body framing check state (http1.c) */
    uint64_t resp_length;       /* Content-Length from upstream, or UINT64_MAX */
} tg_proxy_t;

struct tg_req {
    tg_conn_t *conn;
    tg_arena_t arena;

    /* Request head, offsets into conn->rbuf. */
    uint32_t head_len;          /* the head's bytes at the start of conn->rbuf */
    uint32_t url, url_len;      /* request-target */
    uint32_t path_len;          /* bytes of the target before '?' */
    uint32_t abs_host, abs_host_len; /* host of an absolute-form target, if any */
    uint8_t hstate;             /* header parse state (http1.c) */
    uint8_t framing;            /* chunked body framing check state (http1.c) */
    tg_headers_t headers;
    int host;                   /* index in headers of Host, or -1 */
    uint8_t method;             /* enum http_method */
    uint8_t http_major, http_minor;
    unsigned keepalive:1;       /* the client wants the connection kept */
    unsigned chunked:1;         /* request body is chunked */
    unsigned expect_continue:1; /* Expect: 100-continue */
    unsigned continue_sent:1;
    unsigned body_started:1;    /* the request body is being read (proxied or discarded) */
    unsigned body_done:1;       /* request body fully parsed */
    unsigned discard_body:1;    /* body bytes are read and dropped */
    unsigned resp_started:1;    /* response head queued to the client */
    unsigned resp_done:1;       /* whole response queued to the client */
    unsigned local:1;           /* the response was made by the gateway, not an upstream */
    unsigned head_request:1;
    unsigned upgrade:1;         /* a WebSocket upgrade request (GET, Upgrade: websocket) */
    unsigned log_pending:1;     /* a log phase waits for the end of the response */
    unsigned parsed:1;          /* the head was parsed (the log can trust its fields) */
    unsigned buffer_body:1;     /* the request body is collected in body_buf (Lua read it) */
    unsigned body_wait:1;       /* Lua waits for the whole request body */
    unsigned resp_buffer:1;     /* the upstream body is collected in resp_buf (Lua reads it) */
    unsigned resp_wait:1;       /* Lua waits for the whole upstream body */
    unsigned resp_body_set:1;   /* the proxied response's body was replaced (r->body) */
    unsigned resp_overflow:1;   /* the upstream body outgrew maxBufferedBody */
    unsigned call_started:1;    /* an HTTP call (task.c): started */
    unsigned call_done:1;       /* ... and finished (call_status) */
    unsigned aborted:1;         /* the client connection ended before the response did */
    uint64_t content_length;    /* request Content-Length, or UINT64_MAX */
    uint64_t body_received;     /* request body bytes parsed so far */

    tg_buf_t body_buf;          /* the request body, when buffered for Lua */
    tg_buf_t resp_buf;          /* the upstream body, when buffered for Lua */

    tg_hedits_t edits;          /* request header edits for the upstream */
    tg_hedits_t resp_edits;     /* response header edits */
    int status;                 /* response status; 0 until known */
    const char *body;           /* local response body (arena) */
    size_t body_len;

    /* Lua */
    enum tg_lua_state lua;
    struct tg_gen *gen;         /* the Lua generation the request runs in */
    int co;                     /* coroutine slot in that generation, or -1 */
    ev_timer lua_timer;         /* sleep() */

    tg_proxy_t proxy;

    /* HTTP calls from Lua (task.c) */
    tg_req_t *call;             /* the call this request's coroutine waits for, or NULL */
    tg_req_t *parent;           /* for a call: the request (or timer run) waiting for it */
    int call_status;            /* 0, or 502/504 */

    /* Log */
    ev_tstamp t_start;          /* head complete */
    ev_tstamp t_upstream;       /* upstream request started */
    ev_tstamp t_upstream_end;   /* upstream head received */
    uint64_t bytes_sent;        /* response bytes written to the client, head included */
    const char *route;          /* "pipeline" name for the log (arena), or NULL */
    const char *error;          /* why the gateway answered with an error (static or arena), or NULL */
    char id[33];                /* request id, hex */
};

/* Lifecycle, called by conn.c. */
void tg_req_init(tg_req_t *r, tg_conn_t *c);
void tg_req_reset(tg_req_t *r);

/* Header lists. */
tg_header_t *tg_headers_push(tg_arena_t *a, tg_headers_t *h);
int tg_headers_find(const tg_headers_t *h, const char *base, const char *lname, size_t len);

/* Local responses from C (errors before or instead of Lua). */
void tg_req_local_response(tg_req_t *r, int status, const char *body);

/* Request and response views for Lua (FFI). */
TG_EXPORT int tg_req_method(tg_req_t *r);
TG_EXPORT const char *tg_req_method_name(tg_req_t *r, size_t *len);
TG_EXPORT const char *tg_req_target(tg_req_t *r, size_t *len);
TG_EXPORT const char *tg_req_path(tg_req_t *r, size_t *len);
TG_EXPORT const char *tg_req_query(tg_req_t *r, size_t *len);
TG_EXPORT const char *tg_req_host(tg_req_t *r, size_t *len);
TG_EXPORT int tg_req_http_version(tg_req_t *r);
TG_EXPORT const char *tg_req_client_ip(tg_req_t *r, size_t *len);
TG_EXPORT const char *tg_req_id(tg_req_t *r, size_t *len);
TG_EXPORT double tg_req_start_time(tg_req_t *r);
TG_EXPORT const char *tg_req_scheme(tg_req_t *r);     /* "http" or "https" */
TG_EXPORT int tg_req_tls_verified(tg_req_t *r);       /* the client's certificate was verified */
TG_EXPORT const char *tg_hdr_get(tg_req_t *r, int which, const char *name, size_t len,
                                 size_t *vlen);
TG_EXPORT int tg_hdr_edit(tg_req_t *r, int which, int op, const char *name, size_t len,
                          const char *value, size_t vlen);
/* An edit whose value is the integer v in decimal (what Lua's tostring gives
 * for integers below 1e14), without making a Lua string for it. */
TG_EXPORT int tg_hdr_edit_int(tg_req_t *r, int which, int op, const char *name, size_t len,
                              int64_t v);
TG_EXPORT int tg_hdr_next(tg_req_t *r, int which, int i, const char **name, size_t *nlen,
                          const char **value, size_t *vlen);
TG_EXPORT int tg_resp_status(tg_req_t *r);
TG_EXPORT void tg_resp_set_status(tg_req_t *r, int status);
TG_EXPORT void tg_resp_set_body(tg_req_t *r, const char *body, size_t len);
TG_EXPORT void tg_req_set_route(tg_req_t *r, const char *name, size_t len);
/* Why the request was refused or failed, for the access log's "error". */
TG_EXPORT void tg_req_set_error(tg_req_t *r, const char *msg, size_t len);
TG_EXPORT int tg_req_proxy(tg_req_t *r, tg_peer_t *peer, const char *target, size_t len,
                           int flags, double timeout);
TG_EXPORT const char *tg_req_proxy_error(tg_req_t *r);
/* Makes the response the gateway's 502/504 for a failed proxy (upstream.c). */
TG_EXPORT void tg_req_proxy_failed(tg_req_t *r);

/* Bodies for Lua. read: TG_OK when the whole body is in (then body gives
 * it), TG_AGAIN when Lua must yield WAIT (resumed with 0, or with a status
 * when reading failed), TG_ERROR when it is too late to read it. set
 * replaces the body sent on (Content-Length adjusted). */
TG_EXPORT int tg_req_read_body(tg_req_t *r);
TG_EXPORT const char *tg_req_body(tg_req_t *r, size_t *len);
TG_EXPORT int tg_req_set_body(tg_req_t *r, const char *p, size_t len);
TG_EXPORT int tg_resp_read_body(tg_req_t *r);
TG_EXPORT const char *tg_resp_body(tg_req_t *r, size_t *len);

#endif
