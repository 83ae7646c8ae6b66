/*
 * tls.c: the plain and TLS transports, server contexts with SNI, client
 * contexts for https upstreams, and session-ticket keys.
 */
#include <errno.h>
#include <fnmatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "tls.h"

/* ---- plain ---------------------------------------------------------------- */

static ssize_t plain_recv(tg_sock_t *s, char *buf, size_t len)
{
    ssize_t n = read(s->fd, buf, len);
    s->want_read = n < 0 && errno == EAGAIN;
    return n;
}

static ssize_t plain_send(tg_sock_t *s, const char *buf, size_t len)
{
    ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
    s->want_write = n < 0 && errno == EAGAIN;
    return n;
}

static int plain_handshake(tg_sock_t *s)
{
    s->handshaken = 1;
    return TG_OK;
}

static size_t plain_pending(tg_sock_t *s)
{
    tg_unused(s);
    return 0;
}

static void plain_close(tg_sock_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

const tg_transport_t tg_plain_transport = {
    .scheme = "http", .recv = plain_recv, .send = plain_send, .handshake = plain_handshake,
    .pending = plain_pending, .close = plain_close,
};

void tg_sock_plain(tg_sock_t *s, int fd)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->t = &tg_plain_transport;
    s->handshaken = 1;
}

void tg_sock_close(tg_sock_t *s)
{
    if (s->t)
        s->t->close(s);
}

/* ---- TLS -------------------------------------------------------------------- */

/* per thread: a worker checks certificates in its build thread too */
static __thread char errbuf[256];

static const char *ssl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    if (e) {
        char detail[200];
        ERR_error_string_n(e, detail, sizeof(detail));
        snprintf(errbuf, sizeof(errbuf), "%s: %s", what, detail);
    } else {
        snprintf(errbuf, sizeof(errbuf), "%s", what);
    }
    ERR_clear_error();
    return errbuf;
}

/* Maps an SSL_* result: sets want_* for retries; returns -1 with errno. */
static ssize_t tls_result(tg_sock_t *s, int rc, const char *what)
{
    int e = SSL_get_error(s->ssl, rc);
    s->want_read = s->want_write = 0;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        s->want_read = 1;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        s->want_write = 1;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify: a clean EOF */
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0)
            return 0; /* EOF without close_notify: treated as EOF, as most servers do */
        s->error = ssl_error(what);
        if (errno == 0 || errno == EAGAIN)
            errno = ECONNRESET;
        return -1;
    default:
        s->error = ssl_error(what);
        errno = EPROTO;
        return -1;
    }
}

static ssize_t tls_recv(tg_sock_t *s, char *buf, size_t len)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(s->ssl, buf, len, &got);
    if (rc == 1) {
        s->want_read = s->want_write = 0;
        return (ssize_t) got;
    }
    return tls_result(s, 0, "TLS read");
}

/* A write that fails at the socket (EPIPE, ECONNRESET) often follows a fatal
 * alert the peer sent and then closed on: with TLS 1.3 an upstream refusing
 * our client certificate says so only after our side of the handshake is
 * done. The alert is usually still in the receive queue; reading it turns
 * "TLS write: Broken pipe" into the reason. Best effort, never blocks. */
static void tls_peer_alert(tg_sock_t *s)
{
    char scratch[256];
    size_t got = 0;
    int saved = errno;
    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(s->ssl, scratch, sizeof(scratch), &got) != 1
        && SSL_get_error(s->ssl, 0) == SSL_ERROR_SSL)
        s->error = ssl_error("TLS write: the peer refused");
    ERR_clear_error();
    errno = saved;
}

static ssize_t tls_send(tg_sock_t *s, const char *buf, size_t len)
{
    size_t put = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write_ex(s->ssl, buf, len, &put);
    if (rc == 1) {
        s->want_read = s->want_write = 0;
        return (ssize_t) put;
    }
    ssize_t r = tls_result(s, 0, "TLS write");
    if (r == 0 || (errno != EAGAIN && errno != EPROTO))
        tls_peer_alert(s);
    return r == 0 ? -1 : r; /* EOF while writing is a failure */
}

static int tls_handshake(tg_sock_t *s)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        s->handshaken = 1;
        s->want_read = s->want_write = 0;
        if (SSL_is_server(s->ssl)) {
            X509 *peer = SSL_get1_peer_certificate(s->ssl);
            s->client_verified = peer && SSL_get_verify_result(s->ssl) == X509_V_OK;
            X509_free(peer);
        }
        return TG_OK;
    }
    if (tls_result(s, rc, "TLS handshake") < 0 && errno == EAGAIN)
        return TG_AGAIN;
    if (s->error == NULL || s->error[0] == '\0')
        s->error = "TLS handshake: the peer closed the connection";
    if (!SSL_is_server(s->ssl)) {
        long v = SSL_get_verify_result(s->ssl);
        if (v != X509_V_OK) {
            snprintf(errbuf, sizeof(errbuf), "TLS: certificate verification failed: %s",
                     X509_verify_cert_error_string(v));
            s->error = errbuf;
        }
    }
    return TG_ERROR;
}

static size_t tls_pending(tg_sock_t *s)
{
    return (size_t) SSL_pending(s->ssl);
}

static void tls_close(tg_sock_t *s)
{
    if (s->ssl) {
        if (s->handshaken)
            SSL_shutdown(s->ssl); /* one close_notify, best effort, never waited for */
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

const tg_transport_t tg_tls_transport = {
    .scheme = "https", .recv = tls_recv, .send = tls_send, .handshake = tls_handshake,
    .pending = tls_pending, .close = tls_close,
};

/* ---- session tickets ---------------------------------------------------------- */

/* A secret from the master (inherited by every worker); ticket keys are
 * derived from it per hour, so workers agree without talking, and a
 * ticket stays valid for one to two hours. */
static unsigned char ticket_secret[32];
static int ticket_ready;
static EVP_CIPHER *ticket_cipher; /* AES-256-CBC, fetched once */

int tg_tls_tickets_init(const char **err)
{
    if (RAND_bytes(ticket_secret, sizeof(ticket_secret)) != 1) {
        *err = "no randomness for TLS session tickets";
        return TG_ERROR;
    }
    ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (ticket_cipher == NULL) {
        *err = "no AES-256-CBC for TLS session tickets";
        return TG_ERROR;
    }
    ticket_ready = 1;
    return TG_OK;
}

static void derive_ticket_keys(uint64_t period, unsigned char name[16], unsigned char aes[32],
                               unsigned char mac[32])
{
    unsigned char out[64];
    unsigned int len = 0;
    unsigned char msg[9];
    for (int i = 0; i < 8; i++)
        msg[i] = (unsigned char) (period >> (8 * i));
    msg[8] = 'k';
    HMAC(EVP_sha512(), ticket_secret, sizeof(ticket_secret), msg, sizeof(msg), out, &len);
    memcpy(aes, out, 32);
    memcpy(mac, out + 32, 32);
    OPENSSL_cleanse(out, sizeof(out));
    memset(name, 0, 16);
    memcpy(name, "tgtk", 4);
    for (int i = 0; i < 8; i++)
        name[4 + i] = (unsigned char) (period >> (8 * i));
}

/* The keys of an hour, derived once: every new connection issues a ticket
 * and every resumption decrypts one, so this is on the handshake path. */
static struct ticket_period {
    uint64_t period;
    int valid;
    unsigned char name[16], aes[32], mac[32];
} ticket_cache[2]; /* indexed by period parity: this hour and the last */

static void ticket_keys(uint64_t period, unsigned char name[16], unsigned char aes[32],
                        unsigned char mac[32])
{
    struct ticket_period *t = &ticket_cache[period & 1];
    if (!t->valid || t->period != period) {
        derive_ticket_keys(period, t->name, t->aes, t->mac);
        t->period = period;
        t->valid = 1;
    }
    memcpy(name, t->name, 16);
    memcpy(aes, t->aes, 32);
    memcpy(mac, t->mac, 32);
}

static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    unsigned char aes[32], mac[32], name[16];
    uint64_t now = (uint64_t) time(NULL) / 3600;
    OSSL_PARAM params[3];

    if (enc) {
        ticket_keys(now, name, aes, mac);
        memcpy(key_name, name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
            return -1;
        if (EVP_EncryptInit_ex(cctx, ticket_cipher, NULL, aes, iv) != 1)
            return -1;
    }
    int renew = 0;
    if (!enc) {
        int found = 0;
        for (uint64_t p = now; p + 1 >= now && !found; p--) {
            ticket_keys(p, name, aes, mac);
            found = memcmp(key_name, name, 16) == 0;
            renew = p != now; /* last hour's key: give a fresh ticket */
            if (p == 0)
                break;
        }
        if (!found)
            return 0; /* unknown key: a full handshake */
        if (EVP_DecryptInit_ex(cctx, ticket_cipher, NULL, aes, iv) != 1)
            return -1;
        /* TLS 1.3 clients use a ticket once: without a new one on each
         * resumption every other connection would be a full handshake */
        if (SSL_version(ssl) == TLS1_3_VERSION)
            renew = 1;
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, mac, sizeof(mac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return renew ? 2 : 1; /* 2: valid, and issue a new ticket */
}

/* ---- server contexts ------------------------------------------------------------ */

struct tg_tls_server {
    SSL_CTX **ctx;       /* one per certificate, config order */
    char **pattern;
    int n;
    int fallback;        /* index of "default", or -1 */
};

static const unsigned char ALPN_HTTP11[] = "\x08http/1.1";

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    tg_unused(ssl);
    tg_unused(arg);
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ALPN_HTTP11, sizeof(ALPN_HTTP11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no h2 here: the client falls back to HTTP/1.1 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The host name a ClientHello asks for (SNI), or NULL. */
static const char *client_hello_name(SSL *ssl, char *buf, size_t size)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
        return NULL;
    size_t list = ((size_t) p[0] << 8) | p[1];
    if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name)
        return NULL;
    size_t n = ((size_t) p[3] << 8) | p[4];
    if (n + 5 > len || n == 0 || n >= size || memchr(p + 5, 0, n))
        return NULL;
    memcpy(buf, p + 5, n);
    buf[n] = '\0';
    return buf;
}

/* Picks the certificate by SNI: the first pattern that matches, in config
 * order, then "default"; none: the handshake fails. This runs on the
 * ClientHello, before a session is resumed, so a session only resumes
 * under the context (and the client-verification settings) it was made
 * in. */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    tg_tls_server_t *srv = arg;
    char buf[256];
    const char *name = client_hello_name(ssl, buf, sizeof(buf));
    int pick = -1;
    if (name) {
        for (int i = 0; i < srv->n && pick < 0; i++) {
            if (i == srv->fallback)
                continue;
            if (fnmatch(srv->pattern[i], name, FNM_CASEFOLD) == 0)
                pick = i;
        }
    }
    if (pick < 0)
        pick = srv->fallback;
    if (pick < 0) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        tg_log_info("TLS: no certificate for %s%s%s and no default: handshake refused",
                    name ? "\"" : "", name ? name : "a client without SNI", name ? "\"" : "");
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (SSL_get_SSL_CTX(ssl) != srv->ctx[pick])
        SSL_set_SSL_CTX(ssl, srv->ctx[pick]);
    /* SSL_set_SSL_CTX does not carry the verify settings over */
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(srv->ctx[pick]),
                   SSL_CTX_get_verify_callback(srv->ctx[pick]));
    SSL_set_client_CA_list(ssl, SSL_dup_CA_list(SSL_CTX_get_client_CA_list(srv->ctx[pick])));
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* The name was handled on the ClientHello: acknowledge it. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    tg_unused(ssl);
    tg_unused(alert);
    tg_unused(arg);
    return SSL_TLSEXT_ERR_OK;
}

static int accept_any(int ok, X509_STORE_CTX *x)
{
    tg_unused(ok);
    tg_unused(x);
    return 1; /* requestCert without rejectUnauthorized: the result is only reported */
}

static void base_options(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* TLS 1.2: forward-secret AEAD suites only (TLS 1.3's defaults are all good) */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
}

tg_tls_server_t *tg_tls_server_new(const tg_tls_config_t *cfg, char *err, size_t errlen)
{
    tg_tls_server_t *srv = tg_calloc(1, sizeof(*srv));
    srv->ctx = tg_calloc((size_t) cfg->ncerts + 1, sizeof(SSL_CTX *));
    srv->pattern = tg_calloc((size_t) cfg->ncerts + 1, sizeof(char *));
    srv->fallback = -1;

    for (int i = 0; i < cfg->ncerts; i++) {
        const tg_tls_cert_t *c = &cfg->certs[i];
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        srv->ctx[i] = ctx;
        srv->pattern[i] = tg_strndup(c->pattern, strlen(c->pattern));
        srv->n = i + 1;
        if (strcmp(c->pattern, "default") == 0)
            srv->fallback = i;
        base_options(ctx);
        if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
            snprintf(err, errlen, "https.tls.%s.cert: %s", c->pattern,
                     ssl_error(c->cert));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
            snprintf(err, errlen, "https.tls.%s.key: %s", c->pattern, ssl_error(c->key));
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "https.tls.%s.key: %s", c->pattern,
                     ssl_error("the key does not match the certificate"));
            goto fail;
        }
        if (cfg->request_cert) {
            STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
            for (int k = 0; k < c->nca; k++) {
                if (SSL_CTX_load_verify_locations(ctx, c->ca[k], NULL) != 1 ||
                    SSL_add_file_cert_subjects_to_stack(names, c->ca[k]) != 1) {
                    snprintf(err, errlen, "https.tls.%s.ca: %s", c->pattern,
                             ssl_error(c->ca[k]));
                    sk_X509_NAME_pop_free(names, X509_NAME_free);
                    goto fail;
                }
            }
            SSL_CTX_set_client_CA_list(ctx, names);
            if (cfg->reject_unauthorized)
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
            else
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
        }
        SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
        SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, srv);
        SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
        /* Sessions resume from tickets, whose keys every worker shares; a
         * per-worker session-ID cache would rarely be hit (the next
         * connection lands on any worker) and costs each handshake an
         * insert and, every 255, a walk over the whole cache. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        /* A session resumes only under the same client-verification
         * settings: the same pattern, requestCert/rejectUnauthorized and
         * CA files. Otherwise a session from before a reload that turned
         * verification on, or from another pattern's CA, would skip it. */
        unsigned char sid[SHA256_DIGEST_LENGTH];
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        EVP_DigestUpdate(md, c->pattern, strlen(c->pattern) + 1);
        unsigned char flags[2] = { (unsigned char) cfg->request_cert,
                                   (unsigned char) cfg->reject_unauthorized };
        EVP_DigestUpdate(md, flags, sizeof(flags));
        for (int k = 0; cfg->request_cert && k < c->nca; k++) {
            FILE *f = fopen(c->ca[k], "rb");
            char chunk[4096];
            size_t n;
            while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                EVP_DigestUpdate(md, chunk, n);
            if (f)
                fclose(f);
        }
        EVP_DigestFinal_ex(md, sid, NULL);
        EVP_MD_CTX_free(md);
        SSL_CTX_set_session_id_context(ctx, sid, SSL_MAX_SID_CTX_LENGTH);
        if (ticket_ready)
            SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    }
    if (srv->n == 0) {
        snprintf(err, errlen, "https.tls: needs at least one certificate (a \"default\" one)");
        goto fail;
    }
    return srv;

fail:
    tg_tls_server_free(srv);
    return NULL;
}

void tg_tls_server_free(tg_tls_server_t *srv)
{
    if (srv == NULL)
        return;
    for (int i = 0; i < srv->n; i++) {
        SSL_CTX_free(srv->ctx[i]); /* connections using it hold their own reference */
        free(srv->pattern[i]);
    }
    free(srv->ctx);
    free(srv->pattern);
    free(srv);
}

void tg_tls_config_free(tg_tls_config_t *cfg)
{
    for (int i = 0; i < cfg->ncerts; i++) {
        tg_tls_cert_t *c = &cfg->certs[i];
        free(c->pattern);
        free(c->key);
        free(c->cert);
        for (int k = 0; k < c->nca; k++)
            free(c->ca[k]);
        free(c->ca);
    }
    free(cfg->certs);
    memset(cfg, 0, sizeof(*cfg));
}

int tg_sock_tls_accept(tg_sock_t *s, int fd, tg_tls_server_t *srv)
{
    /* Start with the default (or first) context; SNI may switch it. */
    SSL_CTX *ctx = srv->ctx[srv->fallback >= 0 ? srv->fallback : 0];
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->t = &tg_tls_transport;
    s->ssl = SSL_new(ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, fd) != 1) {
        s->error = ssl_error("TLS: cannot start a session");
        return TG_ERROR;
    }
    SSL_set_accept_state(s->ssl);
    return TG_OK;
}

/* ---- client contexts ----------------------------------------------------------------- */

struct tg_tls_client {
    SSL_CTX *ctx;
    int verify;
    /* what it was made from, for tg_tls_client_get */
    char *ca, *cert, *key;
    time_t mtime;                /* newest of the files' modification times */
    tg_tls_client_t *next;
};

static tg_tls_client_t *clients; /* constructors get theirs in a build thread: under a lock */
static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;

tg_tls_client_t *tg_tls_client_new(int verify, const char *ca_file, const char *cert,
                                   const char *key, char *err, size_t errlen)
{
    tg_tls_client_t *cli = tg_calloc(1, sizeof(*cli));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cli->ctx = ctx;
    cli->verify = verify;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_alpn_protos(ctx, ALPN_HTTP11, sizeof(ALPN_HTTP11) - 1);
    if (verify) {
        int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            snprintf(err, errlen, "%s", ssl_error(ca_file ? ca_file : "the system's CAs"));
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "%s", ssl_error("client certificate"));
            goto fail;
        }
    }
    return cli;

fail:
    SSL_CTX_free(ctx);
    free(cli);
    return NULL;
}

static time_t newest(const char *a, const char *b, const char *c)
{
    const char *files[] = { a, b, c };
    time_t t = 0;
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (files[i] && stat(files[i], &st) == 0 && st.st_mtime > t)
            t = st.st_mtime;
    }
    return t;
}

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

tg_tls_client_t *tg_tls_client_get(int verify, const char *ca_file, const char *cert,
                                   const char *key, char *err, size_t errlen)
{
    time_t mtime = newest(ca_file, cert, key);
    pthread_mutex_lock(&clients_lock);
    for (tg_tls_client_t *c = clients; c; c = c->next)
        if (c->verify == verify && same(c->ca, ca_file) && same(c->cert, cert) &&
            same(c->key, key) && c->mtime == mtime) {
            pthread_mutex_unlock(&clients_lock);
            return c;
        }
    tg_tls_client_t *c = tg_tls_client_new(verify, ca_file, cert, key, err, errlen);
    if (c == NULL) {
        pthread_mutex_unlock(&clients_lock);
        return NULL;
    }
    c->ca = ca_file ? tg_strndup(ca_file, strlen(ca_file)) : NULL;
    c->cert = cert ? tg_strndup(cert, strlen(cert)) : NULL;
    c->key = key ? tg_strndup(key, strlen(key)) : NULL;
    c->mtime = mtime;
    c->next = clients;
    clients = c;
    pthread_mutex_unlock(&clients_lock);
    return c;
}

int tg_sock_tls_connect(tg_sock_t *s, int fd, tg_tls_client_t *cli, const char *host)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->t = &tg_tls_transport;
    s->ssl = SSL_new(cli->ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, fd) != 1) {
        s->error = ssl_error("TLS: cannot start a session");
        return TG_ERROR;
    }
    SSL_set_connect_state(s->ssl);
    /* SNI, unless the host is an address (RFC 6066 forbids those) */
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
        SSL_set_tlsext_host_name(s->ssl, host);
    if (cli->verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
            X509_VERIFY_PARAM_set1_ip_asc(vp, host);
        else
            X509_VERIFY_PARAM_set1_host(vp, host, 0);
    }
    return TG_OK;
}
