/*
 * fuzz_response.c: the upstream response path. The input is what an
 * upstream answers to a proxied request; it reaches runtime/http1_response.c (and http1.c) the
 * way upstream.c hands it over: appended to the exchange's read buffer a
 * chunk at a time, tg_http1_parse_response until the head is complete (at
 * EOF once more, as up_read does), then the client's head
 * (tg_http1_response_head) and the body, streamed into the client's buffer
 * (re-chunked for an HTTP/1.1 client when the upstream gave no length) or
 * read whole for Lua, with tg_http1_response_eof when the upstream closes.
 *
 * Input: byte 0 picks the chunk size (bits 0-3), a HEAD request (bit 4), an
 * HTTP/1.0 client (bit 5), the body read whole by Lua (bit 6), and a
 * WebSocket request proxied with TG_PROXY_WS (bit 7); byte 1 picks
 * response header edits (bit 0) and a body replaced by Lua (bit 1); the
 * rest is the upstream's byte stream.
 *
 * Checked beyond memory safety: the head's slices lie in the head, the
 * status is a final one (or 101 when a tunnel was asked for), the client
 * head parses back as one well-formed head with no injected CR/LF and one
 * framing header at most, and a complete response reaches the client as
 * exactly one message carrying the body a plain parser finds upstream.
 */
#include "fuzz.h"
#include "http1_int.h" /* tg_http1_name_kind: the kinds recorded must be the names' */

/* runtime/testkit.c (exported for Lua, no header) */
tg_req_t *tg_test_request(const char *raw, size_t len, const char *client, char *err,
                          size_t errlen);
void tg_test_request_free(tg_req_t *r);

static tg_settings_t settings;
static tg_peer_t *peer;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    tg_settings_defaults(&settings);
    settings.max_buffered_body = 2048;
    tg_worker.settings = &settings;
    tg_http1_init(settings.max_head_size);
    fuzz_max_head_size = (uint32_t) settings.max_head_size;
    tg_log_level = TG_LOG_ERROR;
    peer = tg_peer_get("upstream.test", 13, 8081, NULL);
    return 0;
}

/* ---- a reference parse of the upstream's bytes ----------------------------- */

typedef struct ref {
    int status;       /* of the final response */
    int done;         /* the final response completed */
    int skip;         /* HEAD */
    uint64_t body;
} ref_t;

static int ref_headers_complete(http_parser *p)
{
    ref_t *rf = p->data;
    rf->status = p->status_code;
    if (p->status_code / 100 == 1 && p->status_code != 101)
        return 1; /* an interim response has no content (RFC 9110 15.2) */
    /* no body after HEAD, 204 and 304, whatever the head says (RFC 9112 6.3) */
    return rf->skip || p->status_code == 204 || p->status_code == 304 ? 1 : 0;
}

static int ref_body(http_parser *p, const char *at, size_t n)
{
    ref_t *rf = p->data;
    rf->body += n;
    return 0;
}

static int ref_message_complete(http_parser *p)
{
    ref_t *rf = p->data;
    if (rf->status / 100 == 1 && rf->status != 101)
        return 0; /* interim: the final response follows */
    rf->done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static ref_t reference(const uint8_t *p, size_t n, int head_request, int eof)
{
    static http_parser_settings s = {
        .on_headers_complete = ref_headers_complete,
        .on_body = ref_body,
        .on_message_complete = ref_message_complete,
    };
    http_parser hp;
    ref_t rf = { 0 };
    rf.skip = head_request;
    http_parser_init(&hp, HTTP_RESPONSE);
    hp.data = &rf;
    http_parser_execute(&hp, &s, (const char *) p, n);
    if (eof && !rf.done && HTTP_PARSER_ERRNO(&hp) == HPE_OK)
        http_parser_execute(&hp, &s, NULL, 0);
    return rf;
}

/* ---- the exchange ------------------------------------------------------------ */

static void check_head(tg_req_t *r)
{
    tg_proxy_t *px = &r->proxy;
    FUZZ_CHECK(px->head_len > 0 && px->head_len <= px->rbuf.len, "head_len %u of %zu",
               px->head_len, px->rbuf.len);
    FUZZ_CHECK(r->status >= 100 && r->status <= 999, "status %d (not three digits)", r->status);
    FUZZ_CHECK(r->status / 100 != 1 || (r->status == 101 && r->upgrade &&
                                        (px->flags & TG_PROXY_WS)),
               "interim status %d given as the response", r->status);
    for (uint32_t i = 0; i < px->headers.n; i++) {
        const tg_header_t *h = &px->headers.items[i];
        FUZZ_CHECK((uint64_t) h->name + h->name_len <= px->head_len, "header %u name", i);
        FUZZ_CHECK((uint64_t) h->value + h->value_len <= px->head_len, "header %u value", i);
        const char *v = px->rbuf.data + h->value;
        for (uint32_t k = 0; k < h->value_len; k++)
            FUZZ_CHECK((unsigned char) v[k] >= 0x20 ? v[k] != 0x7f : v[k] == '\t',
                       "control byte 0x%02x in header %u", (unsigned char) v[k], i);
        FUZZ_CHECK(h->kind == tg_http1_name_kind(px->rbuf.data + h->name, h->name_len),
                   "header %u kind %d", i, h->kind);
    }
    const char *name, *value;
    size_t nl, vl;
    for (int i = 0; (i = tg_hdr_next(r, TG_RESPONSE, i, &name, &nl, &value, &vl)) > 0;)
        ;
    tg_hdr_get(r, TG_RESPONSE, "content-type", 12, &vl);
}

/* The client's bytes (head and body) must be one message; complete: the
 * body the reference parse found. */
static void check_client(tg_req_t *r, const tg_buf_t *out, int complete, const ref_t *rf)
{
    tg_conn_t *c = r->conn;
    if (out->len == 0 && !complete)
        return; /* cut before a head was queued (a body read whole for Lua) */
    fuzz_check_head(HTTP_RESPONSE, out->data, out->len, "client response head");
    if (!complete || r->proxy.upgraded)
        return;
    int close_delimited = c->close_after && !r->resp_body_set;
    fuzz_parsed_t st = fuzz_parse_ex(HTTP_RESPONSE, out->data, out->len, 0, r->head_request,
                                     close_delimited);
    FUZZ_CHECK(st.error == HPE_OK && st.messages == 1 && st.consumed == out->len,
               "client gets %d messages (%s after %zu of %zu bytes): %.*s", st.messages,
               http_errno_name(st.error), st.consumed, out->len, (int) out->len, out->data);
    uint64_t want = r->resp_body_set ? r->body_len : rf->body;
    if (r->head_request || r->status == 204 || r->status == 304)
        want = 0;
    FUZZ_CHECK(st.body == want, "client body %llu bytes, want %llu",
               (unsigned long long) st.body, (unsigned long long) want);
}

static void local_502(tg_req_t *r)
{
    tg_conn_t *c = r->conn;
    tg_req_local_response(r, 502, "Bad gateway.");
    tg_buf_reset(&c->wbuf);
    tg_http1_response_head(r, &c->wbuf);
    fuzz_check_head(HTTP_RESPONSE, c->wbuf.data, c->wbuf.len, "502 head");
}

static const char *const REQUESTS[4] = {
    "GET /menu HTTP/1.1\r\nHost: shop.test\r\nAccept: */*\r\n\r\n",
    "HEAD /menu HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    "GET /menu HTTP/1.0\r\nHost: shop.test\r\n\r\n",
    "HEAD /menu HTTP/1.0\r\n\r\n",
};

static const char WS_REQUEST[] =
    "GET /ws HTTP/1.1\r\nHost: shop.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t sel = data[0], flags = data[1];
    fuzz_feed_t f = { data + 2, size - 2, 0, fuzz_chunk_sizes[sel & 15] };
    int ws = (sel & 0x80) != 0;
    const char *raw = ws ? WS_REQUEST : REQUESTS[(sel >> 4) & 3];
    char err[256];

    tg_req_t *r = tg_test_request(raw, strlen(raw), NULL, err, sizeof(err));
    FUZZ_CHECK(r != NULL, "request: %s", err);
    tg_conn_t *c = r->conn;
    tg_proxy_t *px = &r->proxy;
    tg_buf_t *b = &px->rbuf;
    const uint8_t *p;
    size_t n;
    int complete = 0;

    if (!r->keepalive)
        c->close_after = 1;
    px->peer = peer;
    px->flags = TG_PROXY_XFWD | (ws ? TG_PROXY_WS : 0);
    px->state = TG_PROXY_SEND;
    tg_http1_response_begin(r);
    fuzz_buf_append_exact(b, "", 0); /* up_read allocates before the first read */

    /* the head, as up_read */
    while (!px->head_done) {
        if (b->pos < b->len) {
            size_t before = b->pos;
            if (tg_http1_parse_response(r) == TG_ERROR) {
                local_502(r); /* invalid response from the upstream */
                goto out;
            }
            if (px->head_done)
                break;
            FUZZ_CHECK(b->pos > before, "parse_response made no progress");
        }
        if (b->len >= TG_BUF_SIZE) {
            local_502(r); /* upstream response head too large */
            goto out;
        }
        if ((n = fuzz_feed_next(&f, &p)) == 0) {
            px->eof = 1;
            if (tg_http1_parse_response(r) == TG_OK && px->head_done)
                break; /* head complete at EOF */
            local_502(r);
            goto out;
        }
        fuzz_buf_append_exact(b, p, n);
    }
    check_head(r);
    px->state = TG_PROXY_BODY;
    if (flags & 1) {
        tg_hdr_edit(r, TG_RESPONSE, TG_HDR_SET, "X-Gateway", 9, "tollgate", 8);
        tg_hdr_edit(r, TG_RESPONSE, TG_HDR_DEL, "server", 6, NULL, 0);
        tg_hdr_edit(r, TG_RESPONSE, TG_HDR_ADD, "Set-Cookie", 10, "a=b", 3);
    }
    if (px->upgraded) {
        /* a tunnel follows: only the client's head matters */
        tg_http1_response_head(r, &c->wbuf);
        check_client(r, &c->wbuf, 0, NULL);
        goto out;
    }

    uint32_t nhead = px->headers.n;
    int buffer = (sel & 0x40) != 0;
    if (buffer)
        r->resp_buffer = 1;
    else
        tg_http1_response_head(r, &c->wbuf); /* streamed: the head goes first */

    /* the body, as tg_proxy_resume_read */
    while (!px->body_done) {
        if (b->pos < b->len) {
            size_t before = b->pos;
            if (tg_http1_parse_response(r) == TG_ERROR)
                goto aborted;
            FUZZ_CHECK(b->pos > before || px->body_done, "parse_response made no progress");
            if (b->pos > px->head_len)
                tg_buf_compact(b, px->head_len);
            continue;
        }
        if (px->eof) {
            if (tg_http1_response_eof(r) != TG_OK)
                goto aborted;
            break;
        }
        if ((n = fuzz_feed_next(&f, &p)) == 0)
            px->eof = 1;
        else
            fuzz_buf_append_exact(b, p, n);
    }
    FUZZ_CHECK(px->body_done, "body not done");
    /* chunked trailers are not response headers */
    FUZZ_CHECK(px->headers.n == nhead, "the body added %u header(s) to the head's %u",
               px->headers.n - nhead, nhead);
    complete = 1;
    check_head(r); /* compaction kept the head */
    if (buffer) {
        if (r->resp_overflow) {
            local_502(r); /* larger than maxBufferedBody */
            goto out;
        }
        r->resp_body_set = 1;
        r->body = r->resp_buf.data ? r->resp_buf.data : "";
        r->body_len = r->resp_buf.len;
    }
    if (flags & 2)
        tg_resp_set_body(r, "replaced", 8);
    if (buffer || (flags & 2)) {
        tg_buf_reset(&c->wbuf);
        tg_http1_response_head(r, &c->wbuf);
    } else {
        tg_conn_body_end(r);
    }
    tg_http1_response_keepalive(r);
    goto check;

aborted:
    /* the client connection is cut: what it got is not checked whole */
    complete = 0;
check:;
    ref_t rf = reference(data + 2, size - 2, r->head_request, 1);
    if (complete && !r->resp_body_set)
        FUZZ_CHECK(rf.done, "the gateway completed a response a plain parser does not");
    check_client(r, &c->wbuf, complete, &rf);
out:
    tg_buf_release(&c->wbuf);
    fuzz_buf_free(b);
    tg_test_request_free(r);
    return 0;
}
