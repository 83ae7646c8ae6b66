/*
 * fuzz_request.c: the client request path. The input is what a client
 * sends on one connection; it reaches runtime/http1_request.c (and http1.c) the way conn.c hands
 * it over: appended to the connection's read buffer a chunk at a time,
 * tg_http1_parse_head until the head is complete, then tg_http1_parse_body
 * (the body kept whole for Lua, streamed toward the upstream re-chunked, or
 * dropped), and after a complete request the reset conn.c's finish_request
 * does before the next pipelined one.
 *
 * Input: byte 0 picks the chunk size (bits 0-3), the body mode (bits 4-5:
 * 0 buffered, 1 proxied, 2 discarded, 3 buffered), an IPv6 client (bit 6)
 * and whether maxBodySize applies (bit 7); byte 1 picks proxy flags for
 * the upstream head (bits 0-2) and header edits (bits 3-4); the rest is the
 * byte stream.
 *
 * Beyond memory safety, what the gateway derives is checked: every slice
 * of the head lies in the head, the upstream request head and the client
 * response head parse back as one well-formed head with no injected
 * CR/LF and one framing header at most, and what a proxied body becomes
 * upstream is exactly one message carrying the body's bytes.
 */
#include "fuzz.h"
#include "http1_int.h" /* tg_http1_name_kind: the kinds recorded must be the names' */

enum { MODE_BUFFER, MODE_PROXY, MODE_DISCARD };

static tg_settings_t settings;
static tg_peer_t *peer;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    tg_settings_defaults(&settings);
    settings.max_head_size = 2048;
    settings.max_body_size = 4096;
    settings.max_buffered_body = 1024;
    tg_worker.settings = &settings;
    tg_http1_init(settings.max_head_size);
    fuzz_max_head_size = (uint32_t) settings.max_head_size;
    tg_log_level = TG_LOG_ERROR;
    peer = tg_peer_get("upstream.test", 13, 8081, NULL);
    return 0;
}

static int in_head(const tg_req_t *r, uint32_t off, uint32_t len)
{
    return (uint64_t) off + len <= r->head_len;
}

/* The head's slices, as the request API reads them. */
static void check_head(tg_conn_t *c)
{
    tg_req_t *r = &c->req;
    size_t n;

    FUZZ_CHECK(r->head_len > 0 && r->head_len <= c->rbuf.len, "head_len %u of %zu",
               r->head_len, c->rbuf.len);
    FUZZ_CHECK(in_head(r, r->url, r->url_len), "url %u+%u", r->url, r->url_len);
    FUZZ_CHECK(r->path_len <= r->url_len, "path_len %u url_len %u", r->path_len, r->url_len);
    FUZZ_CHECK(in_head(r, r->abs_host, r->abs_host_len), "abs_host");
    FUZZ_CHECK(r->host >= -1 && r->host < (int) r->headers.n, "host index %d", r->host);
    FUZZ_CHECK(r->http_major == 1, "HTTP/%d accepted", r->http_major);
    for (uint32_t i = 0; i < r->headers.n; i++) {
        const tg_header_t *h = &r->headers.items[i];
        FUZZ_CHECK(h->name_len > 0 && in_head(r, h->name, h->name_len), "header %u name", i);
        FUZZ_CHECK(in_head(r, h->value, h->value_len), "header %u value", i);
        const char *v = c->rbuf.data + h->value;
        FUZZ_CHECK(!memchr(v, '\r', h->value_len) && !memchr(v, '\n', h->value_len) &&
                       !memchr(v, '\0', h->value_len),
                   "control character in header %u", i);
        for (uint32_t k = 0; k < h->value_len; k++)
            FUZZ_CHECK((unsigned char) v[k] >= 0x20 ? v[k] != 0x7f : v[k] == '\t',
                       "control byte 0x%02x in header %u", (unsigned char) v[k], i);
        FUZZ_CHECK(tg_is_token(c->rbuf.data + h->name, h->name_len), "header %u name", i);
        FUZZ_CHECK(h->kind == tg_http1_name_kind(c->rbuf.data + h->name, h->name_len),
                   "header %u kind %d", i, h->kind);
    }

    const char *t = tg_req_target(r, &n);
    FUZZ_CHECK(n > 0 && t != NULL, "target");
    const char *path = tg_req_path(r, &n);
    FUZZ_CHECK(n > 0 && path != NULL, "path");
    const char *q = tg_req_query(r, &n);
    if (q)
        FUZZ_CHECK(q >= c->rbuf.data && q + n <= c->rbuf.data + r->head_len, "query");
    const char *host = tg_req_host(r, &n);
    if (host)
        FUZZ_CHECK(host >= c->rbuf.data && host + n <= c->rbuf.data + r->head_len, "host");
    tg_req_client_ip(r, &n);
    tg_req_method_name(r, &n);

    const char *name, *value;
    size_t nl, vl;
    for (int i = 0; (i = tg_hdr_next(r, TG_REQUEST, i, &name, &nl, &value, &vl)) > 0;)
        FUZZ_CHECK(nl > 0, "empty name from tg_hdr_next");
    tg_hdr_get(r, TG_REQUEST, "Content-Type", 12, &vl);
    tg_hdr_get(r, TG_REQUEST, "x-forwarded-for", 15, &vl);
}

/* Edits a policy might make, picked by the flags byte. */
static void edit(tg_req_t *r, uint8_t flags)
{
    if (flags & 0x08) {
        tg_hdr_edit(r, TG_REQUEST, TG_HDR_SET, "X-Consumer", 10, "alice", 5);
        tg_hdr_edit(r, TG_REQUEST, TG_HDR_DEL, "authorization", 13, NULL, 0);
        tg_hdr_edit(r, TG_REQUEST, TG_HDR_ADD, "Via", 3, "1.1 tollgate", 12);
    }
    if (flags & 0x10) {
        /* refused edits: they must not reach the wire */
        FUZZ_CHECK(tg_hdr_edit(r, TG_REQUEST, TG_HDR_SET, "X-Bad", 5, "a\r\nb: c", 7) ==
                       TG_ERROR, "CRLF value accepted");
        FUZZ_CHECK(tg_hdr_edit(r, TG_REQUEST, TG_HDR_SET, "X Bad", 5, "v", 1) == TG_ERROR,
                   "space in a name accepted");
        tg_hdr_edit(r, TG_REQUEST, TG_HDR_SET, "Host", 4, "rewritten.test", 14);
    }
}

/* What goes upstream: the head, and the body as the gateway sends it, must
 * be one message with the client's body bytes. */
static void check_upstream(tg_conn_t *c, int mode, uint8_t flags)
{
    tg_req_t *r = &c->req;
    tg_buf_t out = { 0 };

    r->proxy.peer = peer;
    r->proxy.flags = flags & 7;
    tg_http1_request_head(r, &out);
    fuzz_check_head(HTTP_REQUEST, out.data, out.len, "upstream request head");
    if (mode == MODE_DISCARD) {
        tg_buf_release(&out);
        return;
    }
    uint64_t want = r->body_received;
    if (mode == MODE_BUFFER) {
        if (r->body_buf.len)
            tg_buf_append(&out, r->body_buf.data, r->body_buf.len);
        want = r->body_buf.len;
    } else if (r->proxy.wbuf.len) {
        tg_buf_append(&out, r->proxy.wbuf.data, r->proxy.wbuf.len);
    }
    fuzz_parsed_t st = fuzz_parse(HTTP_REQUEST, out.data, out.len, 0);
    int upgrade_ws = r->upgrade && (r->proxy.flags & TG_PROXY_WS);
    if (!upgrade_ws) {
        /* a body without framing (neither length nor chunked) has none */
        FUZZ_CHECK(st.error == HPE_OK && st.consumed == out.len && st.messages == 1,
                   "upstream gets %d messages (%s after %zu of %zu bytes): %.*s", st.messages,
                   http_errno_name(st.error), st.consumed, out.len, (int) out.len, out.data);
        FUZZ_CHECK(st.body == want, "upstream body %llu bytes, want %llu",
                   (unsigned long long) st.body, (unsigned long long) want);
    }
    tg_buf_release(&out);
}

/* The response the client would get for status (a local one). */
static void check_local_response(tg_conn_t *c, int status)
{
    tg_req_t *r = &c->req;
    tg_req_local_response(r, status, tg_http_reason(status));
    tg_buf_reset(&c->wbuf);
    tg_http1_response_head(r, &c->wbuf);
    fuzz_check_head(HTTP_RESPONSE, c->wbuf.data, c->wbuf.len, "local response head");
    tg_buf_reset(&c->wbuf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t sel = data[0], flags = data[1];
    fuzz_feed_t f = { data + 2, size - 2, 0, fuzz_chunk_sizes[sel & 15] };
    int mode = (sel >> 4) & 3;
    if (mode == 3)
        mode = MODE_BUFFER;
    settings.max_body_size = (sel & 0x80) ? 4096 : 0;

    tg_conn_t *c = fuzz_conn_new(sel & 0x40);
    tg_req_t *r = &c->req;
    tg_buf_t *b = &c->rbuf;
    const uint8_t *p;
    size_t n;

    for (int nreq = 0; nreq < 64; nreq++) {
        /* the head */
        int rc = TG_AGAIN;
        for (;;) {
            if (b->pos < b->len) {
                rc = tg_http1_parse_head(c);
                if (rc != TG_AGAIN)
                    break;
                if (b->len >= settings.max_head_size) {
                    rc = 431;
                    break;
                }
            }
            if ((n = fuzz_feed_next(&f, &p)) == 0)
                goto out; /* the client closed mid-head (or between requests) */
            fuzz_buf_append_exact(b, p, n);
        }
        if (rc != TG_OK) {
            FUZZ_CHECK(rc >= 400 && rc <= 599, "parse_head returned %d", rc);
            const char *why = tg_http1_error_reason(c);
            FUZZ_CHECK(why && *why, "no reason for %d", rc);
            c->close_after = 1;
            check_local_response(c, rc);
            goto out;
        }
        FUZZ_CHECK(b->pos <= b->len, "pos past len");
        check_head(c);
        uint32_t nhead = r->headers.n;
        edit(r, flags);
        r->parsed = 1;
        r->head_request = r->method == HTTP_HEAD;
        if (!r->keepalive)
            c->close_after = 1;
        if (settings.max_body_size && r->content_length != UINT64_MAX &&
            r->content_length > settings.max_body_size) {
            check_local_response(c, 413); /* start_request refuses it */
            goto out;
        }

        /* the body */
        if (!r->body_done) {
            r->body_started = 1;
            r->buffer_body = mode == MODE_BUFFER;
            r->discard_body = mode == MODE_DISCARD;
            while (!r->body_done) {
                if (b->pos < b->len) {
                    size_t before = b->pos;
                    rc = tg_http1_parse_body(c);
                    if (rc >= 400) {
                        FUZZ_CHECK(rc <= 599, "parse_body returned %d", rc);
                        c->close_after = 1;
                        check_local_response(c, rc);
                        goto out;
                    }
                    FUZZ_CHECK(b->pos > before || r->body_done,
                               "parse_body made no progress (rc %d)", rc);
                    /* as tg_conn_feed_body: keep the head, slide the rest */
                    if (b->pos > r->head_len)
                        tg_buf_compact(b, r->head_len);
                    continue;
                }
                if ((n = fuzz_feed_next(&f, &p)) == 0)
                    goto out; /* the client closed mid-body */
                fuzz_buf_append_exact(b, p, n);
            }
            /* chunked trailers are not request headers */
            FUZZ_CHECK(r->headers.n == nhead, "the body added %u header(s) to the head's %u",
                       r->headers.n - nhead, nhead);
            if (r->content_length != UINT64_MAX && !r->chunked)
                FUZZ_CHECK(r->body_received == r->content_length,
                           "body %llu bytes, Content-Length %llu",
                           (unsigned long long) r->body_received,
                           (unsigned long long) r->content_length);
            if (mode == MODE_BUFFER)
                FUZZ_CHECK(r->body_buf.len == r->body_received, "buffered %zu of %llu",
                           r->body_buf.len, (unsigned long long) r->body_received);
            if (settings.max_body_size)
                FUZZ_CHECK(r->body_received <= settings.max_body_size, "maxBodySize passed");
        }
        check_head(c); /* compaction must have kept the head */
        check_upstream(c, mode, flags);
        check_local_response(c, 200);

        /* finish_request */
        if (c->close_after || r->upgrade)
            break;
        tg_req_reset(r);
        tg_buf_compact(b, 0);
        tg_http1_request_begin(c);
    }
out:
    fuzz_conn_free(c);
    return 0;
}
