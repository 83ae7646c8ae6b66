/*
 * fuzz.h: what the libFuzzer targets in fuzz/ share: a socketless client
 * connection (the same construction as runtime/testkit.c), chunk splits
 * derived from the input, exact-size buffers so that ASan sees any read
 * past the bytes received, and a check that a head the gateway wrote
 * parses back as exactly one well-formed HTTP head.
 *
 * A violated invariant aborts with a message (libFuzzer records it as a
 * crash), so the targets check behaviour as well as memory safety.
 */
#ifndef TG_FUZZ_H
#define TG_FUZZ_H

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

#include "conn.h"
#include "fuzz_check.h"
#include "http1.h"
#include "upstream.h"
#include "worker.h"

/* Known, not yet fixed bugs (fuzz/README.md) the harness steps over
 * when named in $FUZZ_KNOWN (comma-separated), so that fuzzing can go on
 * looking for others; by default every one of them is a crash. */
static inline int fuzz_known(const char *bug)
{
    const char *k = getenv("FUZZ_KNOWN");
    return k && strstr(k, bug) != NULL;
}

/* Chunk sizes a selector byte picks: single bytes (slowloris), odd sizes
 * that split CRLFs and chunk-size lines, and the whole input at once. */
static const size_t fuzz_chunk_sizes[16] = { 1, 2, 3, 4, 5, 7, 8, 11, 13, 16, 31, 64, 100,
                                             256, 1000, (size_t) -1 };

/* A reader over the fuzz input that hands out the next chunk. */
typedef struct fuzz_feed {
    const uint8_t *p;
    size_t len, off, chunk;
} fuzz_feed_t;

static inline size_t fuzz_feed_next(fuzz_feed_t *f, const uint8_t **out)
{
    size_t left = f->len - f->off;
    size_t n = f->chunk < left ? f->chunk : left;
    *out = f->p + f->off;
    f->off += n;
    return n;
}

/* Appends to a buffer whose allocation is exactly its content: a read past
 * len (within a bigger allocation it would be invisible) is then a
 * heap-buffer-overflow. The buffer is freed with free() (tg_buf_release
 * would only cache it when cap happens to be TG_BUF_SIZE, also fine). */
static inline void fuzz_buf_append_exact(tg_buf_t *b, const void *p, size_t n)
{
    size_t cap = b->len + n;
    if (cap == TG_BUF_SIZE)
        cap++; /* never the free-list size: released buffers are freed */
    b->data = tg_realloc(b->data, cap ? cap : 1);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->cap = cap;
}

static inline void fuzz_buf_free(tg_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->pos = b->len = b->cap = 0;
}

/* A client connection without a socket, as tg_test_request makes it. */
static inline tg_conn_t *fuzz_conn_new(int ipv6)
{
    tg_conn_t *c = tg_calloc(1, sizeof(*c));
    tg_sock_plain(&c->sock, -1);
    c->local_port = 8080;
    if (ipv6) {
        c->peer.sin6_family = AF_INET6;
        inet_pton(AF_INET6, "2001:db8::1", &c->peer.sin6_addr);
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *) &c->peer;
        in4->sin_family = AF_INET;
        inet_pton(AF_INET, "192.0.2.1", &in4->sin_addr);
    }
    tg_req_init(&c->req, c);
    tg_http1_request_begin(c);
    return c;
}

static inline void fuzz_conn_free(tg_conn_t *c)
{
    tg_req_reset(&c->req);
    fuzz_buf_free(&c->rbuf);
    tg_buf_release(&c->wbuf);
    free(c);
}

/* ---- re-parsing what the gateway wrote ----------------------------------- */

/* What the target passed to tg_http1_init (http-parser's limit is global). */
static uint32_t fuzz_max_head_size = 80 * 1024;

typedef struct fuzz_parsed {
    int headers_complete;  /* heads seen */
    int messages;          /* messages completed */
    int fields;            /* header fields (of the last head) */
    int bad;               /* a field or value with CR, LF or NUL: injection */
    int bad_name;          /* a field name that is not a token (RFC 9110 5.1) */
    int n_cl, n_te;        /* Content-Length and Transfer-Encoding fields */
    int stop_at_head;
    int skip_body;         /* a response to HEAD: no body whatever the head says */
    uint64_t body;         /* body bytes */
    size_t consumed;
    enum http_errno error;
} fuzz_parsed_t;

/* RFC 9110 tchar, for field names. */
static inline int fuzz_token(const char *p, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
              (ch && strchr(extra, ch))))
            return 0;
    }
    return n > 0;
}

static int fuzz_rp_field(http_parser *p, const char *at, size_t n)
{
    fuzz_parsed_t *st = p->data;
    st->fields++;
    if (memchr(at, '\r', n) || memchr(at, '\n', n) || memchr(at, '\0', n))
        st->bad = 1;
    if (!fuzz_token(at, n))
        st->bad_name = 1;
    if (tg_str_ieq(at, n, "content-length", 14))
        st->n_cl++;
    if (tg_str_ieq(at, n, "transfer-encoding", 17))
        st->n_te++;
    return 0;
}

static int fuzz_rp_value(http_parser *p, const char *at, size_t n)
{
    fuzz_parsed_t *st = p->data;
    if (memchr(at, '\r', n) || memchr(at, '\n', n) || memchr(at, '\0', n))
        st->bad = 1;
    return 0;
}

static int fuzz_rp_headers_complete(http_parser *p)
{
    fuzz_parsed_t *st = p->data;
    st->headers_complete++;
    if (st->stop_at_head)
        http_parser_pause(p, 1);
    return st->skip_body ? 1 : 0;
}

static int fuzz_rp_body(http_parser *p, const char *at, size_t n)
{
    fuzz_parsed_t *st = p->data;
    st->body += n;
    return 0;
}

static int fuzz_rp_message_complete(http_parser *p)
{
    fuzz_parsed_t *st = p->data;
    st->messages++;
    return 0;
}

/* Parses bytes the gateway wrote (HTTP_REQUEST or HTTP_RESPONSE) with a
 * fresh parser: up to the end of the first head when stop_at_head, else
 * everything; then the end of the stream when eof (a close-delimited body
 * ends there). skip_body: the response to a HEAD request. */
static inline fuzz_parsed_t fuzz_parse_ex(enum http_parser_type type, const char *p, size_t len,
                                          int stop_at_head, int skip_body, int eof)
{
    static http_parser_settings s = {
        .on_header_field = fuzz_rp_field,
        .on_header_value = fuzz_rp_value,
        .on_headers_complete = fuzz_rp_headers_complete,
        .on_body = fuzz_rp_body,
        .on_message_complete = fuzz_rp_message_complete,
    };
    http_parser hp;
    fuzz_parsed_t st = { 0 };
    st.stop_at_head = stop_at_head;
    st.skip_body = skip_body;
    /* http-parser 2.9.4 takes any field name that starts with
     * "Transfer-Encoding" for one (it sets the flag on the prefix), and then
     * refuses a Content-Length beside it. The gateway may forward such a
     * name (finding 7 in fuzz/README.md); the check renames it, same length, to see the
     * rest. */
    char *copy = tg_malloc(len + 1);
    if (len)
        memcpy(copy, p, len);
    for (size_t i = 0; i + 19 <= len; i++)
        if ((i == 0 || copy[i - 1] == '\n') && tg_str_ieq(copy + i, 17, "transfer-encoding", 17) &&
            copy[i + 17] != ':' && copy[i + 17] != ' ')
            copy[i] = 'X';
    p = copy;
    http_parser_init(&hp, type);
    hp.data = &st;
    /* the limit is global: not the gateway's maxHeadSize for this parser */
    http_parser_set_max_header_size(1 << 20);
    st.consumed = http_parser_execute(&hp, &s, p, len);
    if (eof && HTTP_PARSER_ERRNO(&hp) == HPE_OK)
        http_parser_execute(&hp, &s, NULL, 0);
    http_parser_set_max_header_size(fuzz_max_head_size);
    st.error = HTTP_PARSER_ERRNO(&hp);
    free(copy);
    return st;
}

static inline fuzz_parsed_t fuzz_parse(enum http_parser_type type, const char *p, size_t len,
                                       int stop_at_head)
{
    return fuzz_parse_ex(type, p, len, stop_at_head, 0, 0);
}

/* A head the gateway wrote must be one well-formed head, with no CR, LF or
 * NUL smuggled into a header and at most one framing header. Returns the
 * number of header fields. */
static inline int fuzz_check_head(enum http_parser_type type, const char *p, size_t len,
                                  const char *what)
{
    const char *end = memmem(p, len, "\r\n\r\n", 4);
    FUZZ_CHECK(end != NULL, "%s: no end of head in %zu bytes: %.*s", what, len, (int) len, p);
    size_t hlen = (size_t) (end + 4 - p);
    fuzz_parsed_t st = fuzz_parse(type, p, hlen, 1);
    FUZZ_CHECK(!st.bad_name, "%s: a field name that is not a token: %.*s", what, (int) hlen, p);
    FUZZ_CHECK(st.headers_complete == 1 && (st.error == HPE_PAUSED || st.error == HPE_OK),
               "%s does not parse back (%s at byte %zu of %zu): %.*s", what,
               http_errno_name(st.error), st.consumed, hlen, (int) hlen, p);
    FUZZ_CHECK(!st.bad, "%s: CR, LF or NUL inside a header: %.*s", what, (int) hlen, p);
    FUZZ_CHECK(st.n_cl + st.n_te <= 1, "%s: %d Content-Length and %d Transfer-Encoding: %.*s",
               what, st.n_cl, st.n_te, (int) hlen, p);
    return st.fields;
}

#endif
