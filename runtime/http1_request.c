/*
 * http1_request.c: client requests: the http-parser callbacks for the head
 * and body, the body limits (maxBodySize, maxBufferedBody: 413), the checks
 * a whole head gets (CRLF lines, names and values, Host, Transfer-Encoding,
 * the request-target's form), and the path normalized in place before
 * routing. Body bytes go to the upstream request (re-chunked when chunked),
 * to the buffer a policy reads, or nowhere when the body is discarded.
 */
#include "http1_int.h"
#include "worker.h"

static int req_on_url(http_parser *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    tg_req_t *r = &c->req;
    uint32_t off = (uint32_t) (at - c->rbuf.data);
    if (r->url_len == 0)
        r->url = off;
    r->url_len += (uint32_t) len;
    return 0;
}

static int req_on_field(http_parser *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    return tg_http1_header_piece(&c->req.arena, &c->req.headers, &c->req.hstate, c->rbuf.data,
                                 at, len, 1);
}

static int req_on_value(http_parser *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    return tg_http1_header_piece(&c->req.arena, &c->req.headers, &c->req.hstate, c->rbuf.data,
                                 at, len, 0);
}

static int req_on_headers_complete(http_parser *p)
{
    tg_conn_t *c = p->data;
    tg_req_t *r = &c->req;

    r->method = (uint8_t) p->method;
    r->http_major = (uint8_t) p->http_major;
    r->http_minor = (uint8_t) p->http_minor;
    r->keepalive = http_should_keep_alive(p) ? 1 : 0;
    r->chunked = (p->flags & F_CHUNKED) ? 1 : 0;
    r->content_length = (p->flags & F_CONTENTLENGTH) ? p->content_length : UINT64_MAX;
    r->hstate = H_TRAILER;
    http_parser_pause(p, 1);
    return 0;
}

static int req_on_body(http_parser *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    tg_req_t *r = &c->req;
    uint64_t max = tg_worker.settings->max_body_size;

    if (tg_http1_body_framing(&r->framing, at, len, p->content_length)) {
        tg_http1_head_error = 400;
        tg_http1_error_text = "invalid chunked framing (a line end that is not CRLF)";
        return 1;
    }
    r->body_received += len;
    if (max && r->body_received > max) {
        tg_http1_head_error = 413;
        tg_http1_error_text = "request body larger than maxBodySize";
        return 1;
    }
    if (r->buffer_body) {
        if (r->body_buf.len + len > tg_worker.settings->max_buffered_body) {
            tg_http1_head_error = 413;
            tg_http1_error_text =
                "request body larger than maxBufferedBody (a policy reads it whole)";
            return 1;
        }
        tg_buf_append(&r->body_buf, at, len);
    } else if (!r->discard_body) {
        tg_http1_body(&r->proxy.wbuf, at, len, r->chunked);
    }
    return 0;
}

static int req_on_message_complete(http_parser *p)
{
    tg_conn_t *c = p->data;
    tg_req_t *r = &c->req;
    if (r->body_started && r->chunked && !r->discard_body && !r->buffer_body)
        tg_buf_append(&r->proxy.wbuf, "0\r\n\r\n", 5);
    r->body_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static http_parser_settings request_settings = {
    .on_url = req_on_url,
    .on_header_field = req_on_field,
    .on_header_value = req_on_value,
    .on_headers_complete = req_on_headers_complete,
    .on_body = req_on_body,
    .on_message_complete = req_on_message_complete,
};

void tg_http1_request_begin(tg_conn_t *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->req.hstate = H_NONE;
    c->req.framing = FR_BOL;
}

static int status_for(enum http_errno e)
{
    return e == HPE_HEADER_OVERFLOW ? 431 : 400;
}

const char *tg_http1_error_reason(tg_conn_t *c)
{
    if (tg_http1_error_text)
        return tg_http1_error_text;
    return http_errno_description(HTTP_PARSER_ERRNO(&c->parser));
}

/* A Host value: reg-name, IPv4 or [IPv6], and an optional port (RFC 3986:
 * unreserved, pct-encoded, sub-delims, ":" and the IPv6 brackets). */
static int valid_host(const char *p, size_t n)
{
    static const char extra[] = "-._~%!$&'()*+,;=:[]";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
              (ch && strchr(extra, ch))))
            return 0;
    }
    return 1;
}

static int count_chunked(const char *p, size_t n)
{
    int k = 0;
    for (size_t i = 0; i + 7 <= n; i++)
        if (tg_str_ieq(p + i, 7, "chunked", 7))
            k++;
    return k;
}

/* Is p[s, e) ".", ".." or one of their %2e spellings? 1, 2, or 0. */
static int dot_segment(const char *p, uint32_t s, uint32_t e)
{
    int dots = 0;
    uint32_t k = s;
    while (k < e) {
        if (p[k] == '.')
            k++;
        else if (e - k >= 3 && p[k] == '%' && p[k + 1] == '2' && (p[k + 2] | 0x20) == 'e')
            k += 3;
        else
            return 0;
        if (++dots > 2)
            return 0;
    }
    return dots;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char) (ch | 0x20);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Decodes, in place, the escapes of unreserved characters but ".": ALPHA,
 * DIGIT, "-", "_", "~" (RFC 3986 6.2.2.2: "/%61dmin" is "/admin"). A "."
 * matters only in dot segments, which dot_segment() reads in both
 * spellings; elsewhere "%2e" stays, as every other escape does (reserved
 * ones such as "%2f" change the path's meaning; "%25" is a "%"). Returns
 * the new length. */
static uint32_t decode_unreserved(char *p, uint32_t n)
{
    uint32_t i = 0, o = 0;
    while (i < n) {
        int hi = p[i] == '%' && i + 2 < n ? hex_value(p[i + 1]) : -1;
        int lo = hi >= 0 ? hex_value(p[i + 2]) : -1;
        if (lo >= 0) {
            char ch = (char) (hi << 4 | lo);
            if ((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
                ch == '-' || ch == '_' || ch == '~') {
                p[o++] = ch;
                i += 3;
                continue;
            }
        }
        p[o++] = p[i++];
    }
    return o;
}

/* Normalizes the path part of a request target in place, so that routing
 * and the upstream see the same path (RFC 3986 6.2.2): escaped unreserved
 * characters are decoded (decode_unreserved), "." and ".." segments are
 * resolved (also spelled "%2e"; never above the root), and runs of "/" are
 * one. The query moves down behind the shorter path; *path_len and
 * *url_len shrink. */
static void normalize_path(char *p, uint32_t *path_len, uint32_t *url_len)
{
    uint32_t end = *path_len, n = end, i = 0, o = 0;
    int special = memchr(p, '%', n) != NULL;

    for (uint32_t k = 0; k + 1 < n && !special; k++)
        special = p[k] == '/' && (p[k + 1] == '/' || p[k + 1] == '.');
    if (!special)
        return; /* the common case: nothing to do */
    n = decode_unreserved(p, n);
    while (i < n) {
        /* p[i] is '/'; the segment after it is p[s, e) */
        uint32_t s = i + 1, e = s;
        while (e < n && p[e] != '/')
            e++;
        int d = dot_segment(p, s, e);
        if (e == s || d == 1) {
            /* "//" merges; "." goes; at the end they leave a directory's "/" */
            if (e == n && (o == 0 || p[o - 1] != '/'))
                p[o++] = '/';
        } else if (d == 2) {
            /* "..": drop the previous segment (never above the root) */
            while (o > 0 && p[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            if (e == n)
                p[o++] = '/';
        } else {
            p[o++] = '/';
            memmove(p + o, p + s, e - s);
            o += e - s;
        }
        i = e;
    }
    if (o == 0)
        p[o++] = '/';
    uint32_t qlen = *url_len - end; /* the query follows the path */
    memmove(p + o, p + end, qlen);
    *path_len = o;
    *url_len = o + qlen;
}

/* An absolute-form target (u parsed from it): its authority, host and
 * port as written (IPv6 brackets too), becomes the request's host (RFC
 * 9112 3.2.2), and the target what follows it. Without a path, "/" comes
 * before the query: the host and port move one byte to the left, over the
 * "/" or "@" before them, to make room for it in place. */
static void absolute_form(tg_conn_t *c, const struct http_parser_url *u)
{
    tg_req_t *r = &c->req;
    char *t = c->rbuf.data + r->url;
    uint32_t hs = u->field_data[UF_HOST].off;
    uint32_t he = hs + u->field_data[UF_HOST].len;

    if (hs > 0 && t[hs - 1] == '[' && he < r->url_len && t[he] == ']') {
        hs--;
        he++;
    }
    if (u->field_set & (1 << UF_PORT))
        he = u->field_data[UF_PORT].off + u->field_data[UF_PORT].len;
    else if (he < r->url_len && t[he] == ':')
        he++; /* "host:" (an empty port) */
    if (u->field_set & (1 << UF_PATH)) {
        uint32_t off = u->field_data[UF_PATH].off;
        r->abs_host = r->url + hs;
        r->abs_host_len = he - hs;
        r->url += off;
        r->url_len -= off;
        return;
    }
    memmove(t + hs - 1, t + hs, he - hs);
    t[he - 1] = '/';
    r->abs_host = r->url + hs - 1;
    r->abs_host_len = he - hs;
    r->url_len -= he - 1;
    r->url += he - 1;
}

/* Checks and derived fields once the whole head is in. */
static int head_complete(tg_conn_t *c)
{
    tg_req_t *r = &c->req;
    const char *base = c->rbuf.data;
    struct http_parser_url u;
    int nhost = 0, nte = 0;

    if (!tg_http1_clean_head(base, r->head_len)) {
        tg_http1_error_text = "a line of the head does not end with CRLF, or holds a control character";
        return 400;
    }
    if (r->http_major != 1) {
        tg_http1_error_text = "unsupported HTTP version";
        return 505;
    }
    tg_http1_trim_values(&r->headers, base);
    r->host = -1;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *h = &r->headers.items[i];
        int kind = tg_http1_name_kind(base + h->name, h->name_len);
        if (kind < 0) {
            /* Also catches "Content-Length : 5": whitespace before the
             * colon (RFC 9112 5.1) */
            tg_http1_error_text = h->name_len ? "invalid character in a header name"
                                              : "invalid header";
            return 400;
        }
        h->kind = (uint8_t) kind;
        if (kind == TG_HK_HOST) {
            if (nhost++ == 0)
                r->host = (int) i;
            if (!valid_host(base + h->value, h->value_len)) {
                tg_http1_error_text = "invalid Host header";
                return 400;
            }
        } else if (kind == TG_HK_TRANSFER_ENCODING) {
            /* Only "chunked", once: any other coding would reach the
             * upstream decoded but still labelled (RFC 9112 6.1). */
            if (++nte > 1 || count_chunked(base + h->value, h->value_len) > 1) {
                tg_http1_error_text = "chunked applied more than once";
                return 400;
            }
            if (!tg_str_ieq(base + h->value, h->value_len, "chunked", 7)) {
                tg_http1_error_text = "unsupported transfer coding";
                return 501;
            }
        }
    }
    if (nhost > 1) {
        tg_http1_error_text = "more than one Host header";
        return 400;
    }
    if (r->host < 0 && r->http_major == 1 && r->http_minor >= 1) {
        tg_http1_error_text = "HTTP/1.1 request without Host";
        return 400;
    }
    if (r->method == HTTP_CONNECT) {
        tg_http1_error_text = "CONNECT is not supported";
        return 405;
    }
    if (c->parser.upgrade && r->method == HTTP_GET) {
        /* A WebSocket upgrade (other protocols, such as h2c, are ignored:
         * the request is served as plain HTTP/1.1). */
        const tg_header_t *up = tg_http1_find_kind(&r->headers, TG_HK_UPGRADE);
        r->upgrade = up && memmem(base + up->value, up->value_len, "ebsocket", 8) &&
                     r->http_major == 1 && r->http_minor >= 1;
    }
    if (r->chunked && r->http_major == 1 && r->http_minor == 0) {
        tg_http1_error_text = "chunked request body from an HTTP/1.0 client";
        return 400;
    }
    /* The path starts at the first '/'; absolute-form targets carry the
     * host themselves (RFC 9112 3.2.2). */
    r->path_len = r->url_len;
    if (r->url_len && base[r->url] != '/') {
        if (base[r->url] == '*' && r->url_len == 1) {
            /* asterisk-form: nothing routes on it; OPTIONS only (3.2.4) */
            if (r->method != HTTP_OPTIONS) {
                tg_http1_error_text = "asterisk-form target with a method other than OPTIONS";
                return 400;
            }
        } else if (http_parser_parse_url(base + r->url, r->url_len, 0, &u) == 0 &&
                   (u.field_set & (1 << UF_HOST))) {
            absolute_form(c, &u);
        } else {
            tg_http1_error_text = "invalid request target";
            return 400;
        }
    }
    const char *q = memchr(base + r->url, '?', r->url_len);
    r->path_len = q ? (uint32_t) (q - (base + r->url)) : r->url_len;
    if (memchr(base + r->url, '#', r->url_len)) {
        tg_http1_error_text = "fragment in request target";
        return 400;
    }
    if (r->path_len && base[r->url] == '/')
        normalize_path(c->rbuf.data + r->url, &r->path_len, &r->url_len);
    return TG_OK;
}

int tg_http1_parse_head(tg_conn_t *c)
{
    tg_buf_t *b = &c->rbuf;
    size_t n;

    tg_http1_head_error = 0;
    tg_http1_error_text = NULL;
    n = http_parser_execute(&c->parser, &request_settings, b->data + b->pos, b->len - b->pos);
    b->pos += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_OK)
        return TG_AGAIN;
    if (e != HPE_PAUSED)
        return tg_http1_head_error ? tg_http1_head_error : status_for(e);

    /* Paused in on_headers_complete, before the head's final LF; one more
     * byte moves the parser to the body (or completes a body-less message,
     * which pauses again in on_message_complete). */
    http_parser_pause(&c->parser, 0);
    n = http_parser_execute(&c->parser, &request_settings, b->data + b->pos, 1);
    b->pos += n;
    e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED)
        http_parser_pause(&c->parser, 0);
    else if (e != HPE_OK)
        return tg_http1_head_error ? tg_http1_head_error : status_for(e);
    c->req.head_len = (uint32_t) b->pos;
    return head_complete(c);
}

int tg_http1_parse_body(tg_conn_t *c)
{
    tg_buf_t *b = &c->rbuf;
    tg_req_t *r = &c->req;

    if (r->body_done)
        return TG_OK;
    tg_http1_head_error = 0;
    tg_http1_error_text = NULL;
    tg_http1_unchecked = r->chunked ? b->data + b->pos : NULL;
    size_t n = http_parser_execute(&c->parser, &request_settings, b->data + b->pos,
                                   b->len - b->pos);
    b->pos += n;
    int framed = tg_http1_rest_framing(&r->framing, b->data + b->pos);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (!framed && (e == HPE_OK || e == HPE_PAUSED)) {
        tg_http1_error_text = "invalid chunked framing (a line end that is not CRLF)";
        return 400;
    }
    if (e == HPE_PAUSED) {
        http_parser_pause(&c->parser, 0);
        return TG_OK;
    }
    if (e != HPE_OK)
        return tg_http1_head_error ? tg_http1_head_error : 400;
    return TG_AGAIN;
}
