/*
 * tls.h: sockets as the HTTP code sees them, plain or TLS.
 *
 * A tg_sock_t pairs a socket with its transport. conn.c and upstream.c
 * read, write and close through it and never ask whether it is encrypted;
 * the only TLS-specific thing they see is that a read may need the socket
 * to be writable (and a write readable), which the want_* flags say, and
 * that a connection may have a handshake to finish first.
 *
 * Server contexts (the https listener) are built per config load from the
 * settings: one SSL_CTX per certificate, picked by SNI (first matching
 * pattern in config order, then "default"); TLS 1.2 and 1.3 only; ALPN
 * http/1.1; session tickets with keys shared by all workers and rotated.
 * Client contexts (https upstreams) verify the peer by default.
 */
#ifndef TG_TLS_H
#define TG_TLS_H

#include <openssl/ssl.h>

#include "tg.h"

typedef struct tg_sock tg_sock_t;

typedef struct tg_transport {
    const char *scheme;         /* "http" or "https" */
    /* > 0 bytes, 0 at EOF, -1 with errno (EAGAIN: wait, see want_*) */
    ssize_t (*recv)(tg_sock_t *s, char *buf, size_t len);
    ssize_t (*send)(tg_sock_t *s, const char *buf, size_t len);
    /* TG_OK done, TG_AGAIN in progress (see want_*), TG_ERROR failed */
    int (*handshake)(tg_sock_t *s);
    /* bytes already decrypted and waiting (no event will say so) */
    size_t (*pending)(tg_sock_t *s);
    void (*close)(tg_sock_t *s);
} tg_transport_t;

struct tg_sock {
    int fd;
    const tg_transport_t *t;
    SSL *ssl;                   /* TLS only */
    unsigned want_read:1;       /* the last operation needs the socket readable */
    unsigned want_write:1;      /* ... writable */
    unsigned handshaken:1;
    unsigned client_verified:1; /* server side: the client sent a certificate we verified */
    const char *error;          /* why the last operation failed (static or per-process buffer) */
};

extern const tg_transport_t tg_plain_transport;
extern const tg_transport_t tg_tls_transport;

static inline ssize_t tg_sock_recv(tg_sock_t *s, char *buf, size_t len)
{
    return s->t->recv(s, buf, len);
}

static inline ssize_t tg_sock_send(tg_sock_t *s, const char *buf, size_t len)
{
    return s->t->send(s, buf, len);
}

static inline size_t tg_sock_pending(tg_sock_t *s)
{
    return s->t->pending(s);
}

void tg_sock_plain(tg_sock_t *s, int fd);
void tg_sock_close(tg_sock_t *s);

/* ---- server side --------------------------------------------------------- */

typedef struct tg_tls_cert {
    char *pattern;              /* "default", "api.company.com", "*.company.com" */
    char *key, *cert;           /* PEM files */
    char **ca;                  /* CA files for client certificates */
    int nca;
} tg_tls_cert_t;

typedef struct tg_tls_config {
    tg_tls_cert_t *certs;
    int ncerts;
    int request_cert;           /* ask clients for a certificate */
    int reject_unauthorized;    /* refuse the handshake without a valid one */
} tg_tls_config_t;

typedef struct tg_tls_server tg_tls_server_t;

/* Builds the server contexts. NULL with a message naming the key
 * (https.tls.<pattern>.cert...) on error. */
tg_tls_server_t *tg_tls_server_new(const tg_tls_config_t *cfg, char *err, size_t errlen);
void tg_tls_server_free(tg_tls_server_t *srv);
/* Starts TLS on an accepted socket. */
int tg_sock_tls_accept(tg_sock_t *s, int fd, tg_tls_server_t *srv);
void tg_tls_config_free(tg_tls_config_t *cfg);

/* Ticket keys shared by every worker: the master calls this before
 * forking (the keys live in shared memory and rotate hourly). */
int tg_tls_tickets_init(const char **err);

/* ---- client side (https upstreams) ------------------------------------------ */

typedef struct tg_tls_client tg_tls_client_t;

/* verify: check the certificate chain and the host name; ca_file: trusted
 * CAs (NULL: the system's); cert/key: a client certificate (mTLS). */
TG_EXPORT tg_tls_client_t *tg_tls_client_new(int verify, const char *ca_file, const char *cert,
                                             const char *key, char *err, size_t errlen);
/* The same, shared: an existing context made from the same arguments and
 * files (unchanged since), else a new one. Contexts live as long as the
 * process, as the peers that use them do. */
TG_EXPORT tg_tls_client_t *tg_tls_client_get(int verify, const char *ca_file, const char *cert,
                                             const char *key, char *err, size_t errlen);
/* Starts TLS on a connected socket to host. */
int tg_sock_tls_connect(tg_sock_t *s, int fd, tg_tls_client_t *cli, const char *host);

#endif
