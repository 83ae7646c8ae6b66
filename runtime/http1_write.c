/*
 * http1_write.c: the heads the gateway writes: the upstream request head
 * (forwarded headers, Lua's edits, Host, X-Forwarded-*, the request id, the
 * body's framing) and the client response head (status line, forwarded
 * headers and edits, framing, Date, Connection); the chunk framing of
 * streamed bodies; the hop-by-hop rules both heads follow; status reasons
 * and the Date value.
 */
#include <stdio.h>
#include <time.h>

#include "http1_int.h"
#include "upstream.h"

#define REQUEST_ID_HEADER "eg-request-id" /* the name Express Gateway sends */

/* ---- small writers ---------------------------------------------------- */

static inline void put(tg_buf_t *b, const char *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

#define PUT_LIT(b, s) put((b), (s), sizeof(s) - 1)

static void put_header(tg_buf_t *b, const char *n, size_t nl, const char *v, size_t vl)
{
    tg_buf_reserve(b, nl + vl + 4);
    put(b, n, nl);
    PUT_LIT(b, ": ");
    put(b, v, vl);
    PUT_LIT(b, "\r\n");
}

static void put_u64(tg_buf_t *b, uint64_t v)
{
    char tmp[24];
    char *p = tg_u64_digits(tmp + sizeof(tmp), v);
    tg_buf_append(b, p, (size_t) (tmp + sizeof(tmp) - p));
}

/* ---- header name classes ----------------------------------------------- */

/* The next token of a Connection value v[0, vl) from *i (commas and
 * whitespace between): its start in *s and its length; 0 at the end. */
static size_t next_token(const char *v, size_t vl, size_t *i, size_t *s)
{
    size_t k = *i;
    while (k < vl && (v[k] == ' ' || v[k] == '\t' || v[k] == ','))
        k++;
    *s = k;
    while (k < vl && v[k] != ',' && v[k] != ' ' && v[k] != '\t')
        k++;
    *i = k;
    return k - *s;
}

/* Is name listed as a token of the Connection header value v? */
static int in_connection(const char *v, size_t vl, const char *n, size_t nl)
{
    size_t i = 0, s, len;
    while ((len = next_token(v, vl, &i, &s)) != 0)
        if (len == nl && strncasecmp(v + s, n, nl) == 0)
            return 1;
    return 0;
}

/* Does an edit SET or DEL this name (so originals of that name are dropped)? */
static int edited(const tg_hedits_t *e, const char *n, size_t nl)
{
    for (uint32_t i = 0; i < e->n; i++) {
        const tg_hedit_t *h = &e->items[i];
        if (h->op != TG_HDR_ADD && h->name_len == nl && tg_str_ieq(n, nl, h->name, nl))
            return 1;
    }
    return 0;
}

static int edits_have(const tg_hedits_t *e, const char *lname, size_t nl)
{
    for (uint32_t i = 0; i < e->n; i++) {
        const tg_hedit_t *h = &e->items[i];
        if (h->op != TG_HDR_DEL && h->name_len == nl && memcmp(h->name, lname, nl) == 0)
            return 1;
    }
    return 0;
}

static void put_edits(tg_buf_t *b, const tg_hedits_t *e)
{
    for (uint32_t i = 0; i < e->n; i++) {
        const tg_hedit_t *h = &e->items[i];
        if (h->op != TG_HDR_DEL)
            put_header(b, h->out_name, h->name_len, h->value, h->value_len);
    }
}

/* ---- writing heads ------------------------------------------------------- */

void tg_http1_body(tg_buf_t *out, const char *p, size_t n, int chunked)
{
    if (n == 0)
        return;
    if (!chunked) {
        tg_buf_append(out, p, n);
        return;
    }
    char size[24];
    int k = snprintf(size, sizeof(size), "%zx\r\n", n);
    tg_buf_reserve(out, (size_t) k + n + 2);
    put(out, size, (size_t) k);
    put(out, p, n);
    PUT_LIT(out, "\r\n");
}

/* Does the Connection value v name anything but keep-alive (a hop-by-hop
 * header anyway)? Then headers must be checked against it. */
static int connection_names_more(const char *v, size_t vl)
{
    size_t i = 0, s, len;
    while ((len = next_token(v, vl, &i, &s)) != 0)
        if (!(len == 10 && strncasecmp(v + s, "keep-alive", 10) == 0))
            return 1;
    return 0;
}

/* Copies headers except hop-by-hop ones (RFC 9110 7.6.1) and the framing
 * headers the gateway writes itself, those named in Connection, those edits
 * replace, and the kinds in skip (TG_HK_BIT of each), which the caller
 * writes itself. */
static void put_forwarded(tg_buf_t *out, const tg_headers_t *hs, const char *base,
                          const tg_hedits_t *edits, uint32_t skip)
{
    const tg_header_t *conn = tg_http1_find_kind(hs, TG_HK_CONNECTION);
    int check_conn = conn && connection_names_more(base + conn->value, conn->value_len);

    skip |= TG_HK_HOP_BITS;
    for (uint32_t i = 0; i < hs->n; i++) {
        const tg_header_t *h = &hs->items[i];
        const char *n = base + h->name;
        if ((TG_HK_BIT(h->kind) & skip) || (edits->n && edited(edits, n, h->name_len)) ||
            (check_conn && in_connection(base + conn->value, conn->value_len, n, h->name_len)))
            continue;
        put_header(out, n, h->name_len, base + h->value, h->value_len);
    }
}

static const char *const XFWD[] = { "x-forwarded-for", "x-forwarded-port",
                                    "x-forwarded-proto" };
static const uint8_t XFWD_KIND[] = { TG_HK_XFF, TG_HK_XF_PORT, TG_HK_XF_PROTO };

/* X-Forwarded-*, as http-proxy's xfwd writes them: For, Port and Proto
 * append ",value" to what the client sent; Host keeps the client's value or
 * takes the Host header. */
static void put_xfwd(tg_buf_t *out, tg_req_t *r, const char *base)
{
    size_t iplen, hostlen;
    const char *ip = tg_req_client_ip(r, &iplen);
    const char *host = tg_req_host(r, &hostlen);
    char port[8];
    int portlen;
    const char *colon = host ? memchr(host, ':', hostlen) : NULL;

    if (host && host[0] == '[') /* IPv6 literal: the port follows "]:" */
        colon = memchr(host, ']', hostlen) ? memchr(memchr(host, ']', hostlen), ':',
                                                     hostlen - (size_t) ((const char *) memchr(host, ']', hostlen) - host)) : NULL;
    if (colon && (size_t) (host + hostlen - colon - 1) < sizeof(port) && colon + 1 < host + hostlen) {
        portlen = (int) (host + hostlen - colon - 1);
        memcpy(port, colon + 1, (size_t) portlen);
    } else {
        /* no port in Host: the scheme's */
        portlen = tg_conn_scheme(r->conn)[4] == 's' ? 3 : 2;
        memcpy(port, portlen == 3 ? "443" : "80", (size_t) portlen);
    }
    const char *scheme = tg_conn_scheme(r->conn);
    const char *vals[] = { ip, port, scheme };
    size_t lens[] = { iplen, (size_t) portlen, strlen(scheme) };

    for (int k = 0; k < 3; k++) {
        const char *name = XFWD[k];
        size_t nl = strlen(name);
        if (edits_have(&r->edits, name, nl))
            continue;
        const tg_header_t *h = tg_http1_find_kind(&r->headers, XFWD_KIND[k]);
        tg_buf_reserve(out, nl + lens[k] + (h ? h->value_len : 0) + 8);
        put(out, name, nl);
        PUT_LIT(out, ": ");
        if (h && h->value_len) {
            put(out, base + h->value, h->value_len);
            PUT_LIT(out, ",");
        }
        put(out, vals[k], lens[k]);
        PUT_LIT(out, "\r\n");
    }
    if (!edits_have(&r->edits, "x-forwarded-host", 16)) {
        const tg_header_t *h = tg_http1_find_kind(&r->headers, TG_HK_XF_HOST);
        if (h)
            put_header(out, "x-forwarded-host", 16, base + h->value, h->value_len);
        else
            put_header(out, "x-forwarded-host", 16, host ? host : "", host ? hostlen : 0);
    }
}

void tg_http1_request_head(tg_req_t *r, tg_buf_t *out)
{
    tg_conn_t *c = r->conn;
    const char *base = c->rbuf.data;
    tg_proxy_t *px = &r->proxy;
    uint32_t skip = TG_HK_BIT(TG_HK_HOST) | TG_HK_BIT(TG_HK_REQUEST_ID);
    size_t mlen;
    const char *m = tg_req_method_name(r, &mlen);

    tg_buf_reserve(out, r->head_len + 512);
    put(out, m, mlen);
    PUT_LIT(out, " ");
    if (px->target)
        tg_buf_append(out, px->target, px->target_len);
    else if (r->url_len)
        tg_buf_append(out, base + r->url, r->url_len);
    else
        tg_buf_append(out, "/", 1);
    tg_buf_append(out, " HTTP/1.1\r\n", 11);

    if (px->flags & TG_PROXY_XFWD)
        skip |= TG_HK_BIT(TG_HK_XFF) | TG_HK_BIT(TG_HK_XF_PROTO) | TG_HK_BIT(TG_HK_XF_HOST) |
                TG_HK_BIT(TG_HK_XF_PORT);
    put_forwarded(out, &r->headers, base, &r->edits, skip);
    put_edits(out, &r->edits);

    if (!edits_have(&r->edits, "host", 4)) {
        size_t hl;
        const char *h = tg_req_host(r, &hl);
        if ((px->flags & TG_PROXY_CHANGE_ORIGIN) || h == NULL)
            put_header(out, "Host", 4, px->peer->hostport, strlen(px->peer->hostport));
        else
            put_header(out, "Host", 4, h, hl);
    }
    if (px->flags & TG_PROXY_XFWD)
        put_xfwd(out, r, base);
    if (r->upgrade && (px->flags & TG_PROXY_WS)) {
        const tg_header_t *u = tg_http1_find_kind(&r->headers, TG_HK_UPGRADE);
        tg_buf_append_str(out, "Connection: upgrade\r\n");
        put_header(out, "Upgrade", 7, base + u->value, u->value_len);
    }
    if (!edits_have(&r->edits, REQUEST_ID_HEADER, sizeof(REQUEST_ID_HEADER) - 1))
        put_header(out, REQUEST_ID_HEADER, sizeof(REQUEST_ID_HEADER) - 1, r->id, strlen(r->id));

    if (r->buffer_body) {
        /* read whole by Lua (and maybe replaced): sent with its length */
        tg_buf_append(out, "Content-Length: ", 16);
        put_u64(out, r->body_buf.len);
        tg_buf_append(out, "\r\n", 2);
    } else if (r->chunked) {
        tg_buf_append(out, "Transfer-Encoding: chunked\r\n", 28);
    } else if (r->content_length != UINT64_MAX) {
        tg_buf_append(out, "Content-Length: ", 16);
        put_u64(out, r->content_length);
        tg_buf_append(out, "\r\n", 2);
    } else if (r->method == HTTP_DELETE || r->method == HTTP_OPTIONS) {
        /* As http-proxy does, so upstreams that wait for a body do not. */
        tg_buf_append(out, "Content-Length: 0\r\n", 19);
    }
    tg_buf_append(out, "\r\n", 2);
}

void tg_http1_response_head(tg_req_t *r, tg_buf_t *out)
{
    tg_conn_t *c = r->conn;
    tg_proxy_t *px = &r->proxy;
    char line[64];
    int status = r->status ? r->status : 500;
    int n;
    if (status >= 100 && status <= 999) {
        /* what snprintf would write, without its cost on every response */
        memcpy(line, "HTTP/1.1 ", 9);
        line[9] = (char) ('0' + status / 100);
        line[10] = (char) ('0' + status / 10 % 10);
        line[11] = (char) ('0' + status % 10);
        line[12] = ' ';
        n = 13;
    } else {
        n = snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    }
    const char *reason = tg_http_reason(status);
    int has_date = 0;

    tg_buf_reserve(out, (r->local ? 256 : px->head_len + 256) + r->body_len);
    put(out, line, (size_t) n);
    tg_buf_append_str(out, reason);
    tg_buf_append(out, "\r\n", 2);

    if (!r->local) {
        put_forwarded(out, &px->headers, px->rbuf.data, &r->resp_edits, 0);
        has_date = tg_http1_find_kind(&px->headers, TG_HK_DATE) != NULL;
    }
    put_edits(out, &r->resp_edits);
    has_date = has_date || edits_have(&r->resp_edits, "date", 4);

    if (r->local) {
        if (r->body_len && !edits_have(&r->resp_edits, "content-type", 12))
            tg_buf_append_str(out, "Content-Type: text/plain; charset=utf-8\r\n");
        if (status >= 200 && status != 204 && status != 304) {
            tg_buf_append(out, "Content-Length: ", 16);
            put_u64(out, r->body_len);
            tg_buf_append(out, "\r\n", 2);
        }
    } else if (r->resp_body_set) {
        /* the upstream's body, replaced or read whole by Lua */
        if (!px->skip_body) {
            tg_buf_append(out, "Content-Length: ", 16);
            put_u64(out, r->body_len);
            tg_buf_append(out, "\r\n", 2);
        }
    } else if (px->upgraded) {
        const tg_header_t *u = tg_http1_find_kind(&px->headers, TG_HK_UPGRADE);
        tg_buf_append_str(out, "Connection: upgrade\r\n");
        if (u)
            put_header(out, "Upgrade", 7, px->rbuf.data + u->value, u->value_len);
        has_date = 1;
    } else if (px->skip_body) {
        const tg_header_t *cl = tg_http1_find_kind(&px->headers, TG_HK_CONTENT_LENGTH);
        if (cl && r->head_request)
            put_header(out, "Content-Length", 14, px->rbuf.data + cl->value, cl->value_len);
    } else if (px->resp_length != UINT64_MAX) {
        tg_buf_append(out, "Content-Length: ", 16);
        put_u64(out, px->resp_length);
        tg_buf_append(out, "\r\n", 2);
    } else if (r->http_minor >= 1) {
        tg_buf_append(out, "Transfer-Encoding: chunked\r\n", 28);
        px->resp_chunked = 1;
    } else {
        c->close_after = 1; /* HTTP/1.0 client: the close ends the body */
    }

    if (!has_date) {
        tg_buf_append(out, "Date: ", 6);
        tg_buf_append(out, tg_http_date(), 29);
        tg_buf_append(out, "\r\n", 2);
    }
    if (px->upgraded && !r->local)
        ; /* Connection: upgrade above */
    else if (c->close_after)
        tg_buf_append(out, "Connection: close\r\n", 19);
    else if (r->http_minor == 0)
        tg_buf_append(out, "Connection: keep-alive\r\n", 24);
    tg_buf_append(out, "\r\n", 2);
    if ((r->local || (r->resp_body_set && !px->skip_body)) && !r->head_request && r->body_len)
        tg_buf_append(out, r->body, r->body_len);
}

const char *tg_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a Teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Entity";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 511: return "Network Authentication Required";
    default: return "Unknown";
    }
}

const char *tg_http_date(void)
{
    static char buf[32];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}
