/*
 * http1.c: HTTP/1.x parsing (http-parser) and head writing.
 *
 * Heads are parsed in place: the parser runs over the connection's (or the
 * upstream exchange's) read buffer, and header callbacks record offsets into
 * it. Bytes arrive by appending to that buffer and a head is never moved
 * while it is being parsed, so the pieces of one header that the parser
 * reports across two reads are contiguous; a piece that is not contiguous
 * can only be an obs-fold continuation line, which is refused.
 *
 * The Debian http-parser is built non-strict: it takes any byte after a CR
 * for the LF, a bare LF for a line end, and skips the two bytes after a
 * chunk's data unchecked. So the bytes it reads as line ends are checked
 * here (RFC 9112 2.2, 7.1): a whole head once it is in, and the framing of
 * a chunked body (size lines, the CRLF after each chunk's data, trailer
 * lines) as it goes by.
 */
#include <stdio.h>
#include <time.h>

#include "http1.h"
#include "upstream.h"
#include "worker.h"

#define MAX_HEADERS 256
#define REQUEST_ID_HEADER "eg-request-id" /* the name Express Gateway sends */

/* Header parse states; H_TRAILER: the head is over, so header callbacks
 * are a chunked body's trailer section (checked, then dropped: RFC 9110
 * 6.5.1; they are never forwarded, and recording them would add headers to
 * the head after the policies saw it). */
enum { H_NONE, H_FIELD, H_VALUE, H_TRAILER };

/* Where the framing of a chunked body stands (tg_req_t.framing,
 * tg_proxy_t.framing). */
enum {
    FR_BOL,   /* at the start of a line */
    FR_LINE,  /* inside a size, extension or trailer line */
    FR_CR,    /* after a CR: an LF must follow */
    FR_DATA,  /* a chunk's data ended: CRLF must follow at once */
};

/* Set by callbacks during one parse call, read right after it. */
static int head_error;      /* status a callback wants the client to get */
static const char *error_reason;
/* The first byte of the current parse call's span that is neither checked
 * chunk framing nor body; NULL when the body is not chunked. */
static const char *unchecked;

static const tg_header_t *find(const tg_headers_t *hs, const char *base, const char *lname,
                               size_t len);

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
    int i = sizeof(tmp);
    do {
        tmp[--i] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    tg_buf_append(b, tmp + i, sizeof(tmp) - (size_t) i);
}

/* ---- header name classes ----------------------------------------------- */

/* Hop-by-hop headers (RFC 9110 7.6.1) and the framing headers the gateway
 * writes itself; never forwarded in either direction. */
static int is_hop(const char *n, size_t len)
{
    switch (len) {
    case 2: return tg_str_ieq(n, len, "te", 2);
    case 6: return tg_str_ieq(n, len, "expect", 6);
    case 7: return tg_str_ieq(n, len, "upgrade", 7) || tg_str_ieq(n, len, "trailer", 7);
    case 10: return tg_str_ieq(n, len, "connection", 10) || tg_str_ieq(n, len, "keep-alive", 10);
    case 14: return tg_str_ieq(n, len, "content-length", 14);
    case 16: return tg_str_ieq(n, len, "proxy-connection", 16);
    case 17: return tg_str_ieq(n, len, "transfer-encoding", 17);
    default: return 0;
    }
}

/* Is name listed as a token of the Connection header value v? */
static int in_connection(const char *v, size_t vl, const char *n, size_t nl)
{
    size_t i = 0;
    while (i < vl) {
        while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vl && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - s == nl && strncasecmp(v + s, n, nl) == 0)
            return 1;
    }
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

/* ---- what lines and fields may hold ---------------------------------------- */

/* RFC 9110 tchar, for field names. */
static const uint8_t TOKEN[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* Field values: visible characters, obs-text, space and tab; no other
 * control characters (NUL, DEL...). */
static int valid_value(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

static int valid_name(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!TOKEN[(unsigned char) p[i]])
            return 0;
    return 1;
}

/* Is the head p[0, n) made of CRLF-terminated lines, ending with an empty
 * one? Every LF follows a CR, and there are as many CRs as LFs, so every
 * CR is followed by an LF. */
static int crlf_head(const char *p, size_t n)
{
    const char *end = p + n;
    size_t ncr = 0, nlf = 0;

    for (const char *q = p; (q = memchr(q, '\n', (size_t) (end - q))) != NULL; q++, nlf++)
        if (q == p || q[-1] != '\r')
            return 0;
    for (const char *q = p; (q = memchr(q, '\r', (size_t) (end - q))) != NULL; q++)
        ncr++;
    return ncr == nlf && n >= 4 && memcmp(end - 4, "\r\n\r\n", 4) == 0;
}

/* Checks framing bytes p[0, n) of a chunked body, from state *st: lines
 * end with CRLF, a chunk's data is followed by CRLF, and no line starts
 * with whitespace (" 5" is no size; a trailer line would be obs-fold). */
static int framing_ok(uint8_t *st, const char *p, size_t n)
{
    uint8_t s = *st;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        switch (s) {
        case FR_DATA:
            if (ch != '\r')
                return 0;
            s = FR_CR;
            break;
        case FR_CR:
            if (ch != '\n')
                return 0;
            s = FR_BOL;
            break;
        case FR_BOL:
            if (ch == ' ' || ch == '\t')
                return 0;
            /* fall through */
        default:
            if (ch == '\n')
                return 0;
            s = ch == '\r' ? FR_CR : FR_LINE;
            break;
        }
    }
    *st = s;
    return 1;
}

/* on_body of a chunked body: the framing bytes before these data bytes are
 * checked; left is what the chunk still has to come. */
static int body_framing(uint8_t *st, const char *at, size_t len, uint64_t left)
{
    if (unchecked == NULL)
        return 0;
    if (!framing_ok(st, unchecked, (size_t) (at - unchecked)))
        return 1;
    unchecked = at + len;
    if (left == 0)
        *st = FR_DATA;
    return 0;
}

/* After a parse call over a chunked body: the framing bytes after the last
 * data bytes, up to end. */
static int rest_framing(uint8_t *st, const char *end)
{
    const char *p = unchecked;
    unchecked = NULL;
    return p == NULL || framing_ok(st, p, (size_t) (end - p));
}

/* ---- header callbacks shared by both directions -------------------------- */

static int header_piece(tg_arena_t *a, tg_headers_t *hs, uint8_t *state, const char *base,
                        const char *at, size_t len, int field)
{
    uint8_t hstate = *state;
    uint32_t off = (uint32_t) (at - base);
    tg_header_t *h = hs->n ? &hs->items[hs->n - 1] : NULL;

    if (hstate == H_TRAILER) {
        if (field ? valid_name(at, len) : valid_value(at, len))
            return 0;
        head_error = 400;
        error_reason = "invalid trailer field in a chunked body";
        return 1;
    }
    if (field) {
        if (hstate != H_FIELD) {
            if (hs->n >= MAX_HEADERS) {
                head_error = 431;
                error_reason = "too many headers";
                return 1;
            }
            h = tg_headers_push(a, hs);
            h->name = off;
            h->name_len = 0;
            h->value = h->value_len = 0;
            *state = H_FIELD;
        } else if (off != h->name + h->name_len) {
            goto fold;
        }
        h->name_len += (uint32_t) len;
        return 0;
    }
    if (hstate != H_VALUE) {
        h->value = off;
        h->value_len = 0;
        *state = H_VALUE;
    } else if (off != h->value + h->value_len) {
        goto fold;
    }
    h->value_len += (uint32_t) len;
    return 0;

fold:
    head_error = 400;
    error_reason = "obsolete line folding in a header";
    return 1;
}

/* Trims trailing whitespace http-parser leaves in values. */
static void trim_values(tg_headers_t *hs, const char *base)
{
    for (uint32_t i = 0; i < hs->n; i++) {
        tg_header_t *h = &hs->items[i];
        while (h->value_len && (base[h->value + h->value_len - 1] == ' ' ||
                                base[h->value + h->value_len - 1] == '\t'))
            h->value_len--;
    }
}

/* ---- client requests -------------------------------------------------- */

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
    return header_piece(&c->req.arena, &c->req.headers, &c->req.hstate, c->rbuf.data, at, len, 1);
}

static int req_on_value(http_parser *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    return header_piece(&c->req.arena, &c->req.headers, &c->req.hstate, c->rbuf.data, at, len, 0);
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

    if (body_framing(&r->framing, at, len, p->content_length)) {
        head_error = 400;
        error_reason = "invalid chunked framing (a line end that is not CRLF)";
        return 1;
    }
    r->body_received += len;
    if (max && r->body_received > max) {
        head_error = 413;
        error_reason = "request body larger than maxBodySize";
        return 1;
    }
    if (r->buffer_body) {
        if (r->body_buf.len + len > tg_worker.settings->max_buffered_body) {
            head_error = 413;
            error_reason = "request body larger than maxBufferedBody (a policy reads it whole)";
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

void tg_http1_init(size_t max_head_size)
{
    /* The parser's own limit backs up the buffer-size check in conn.c. */
    http_parser_set_max_header_size((uint32_t) max_head_size);
}

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
    if (error_reason)
        return error_reason;
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

    if (!crlf_head(base, r->head_len)) {
        error_reason = "a line of the head does not end with CRLF";
        return 400;
    }
    if (r->http_major != 1) {
        error_reason = "unsupported HTTP version";
        return 505;
    }
    trim_values(&r->headers, base);
    r->host = -1;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        const tg_header_t *h = &r->headers.items[i];
        const char *name = base + h->name;
        for (uint32_t k = 0; k < h->name_len; k++) {
            if (!TOKEN[(unsigned char) name[k]]) {
                /* Also catches "Content-Length : 5": whitespace before the
                 * colon (RFC 9112 5.1) */
                error_reason = "invalid character in a header name";
                return 400;
            }
        }
        if (h->name_len == 0 || !valid_value(base + h->value, h->value_len)) {
            error_reason = "invalid header";
            return 400;
        }
        if (tg_str_ieq(name, h->name_len, "host", 4)) {
            if (nhost++ == 0)
                r->host = (int) i;
            if (!valid_host(base + h->value, h->value_len)) {
                error_reason = "invalid Host header";
                return 400;
            }
        } else if (tg_str_ieq(name, h->name_len, "transfer-encoding", 17)) {
            /* Only "chunked", once: any other coding would reach the
             * upstream decoded but still labelled (RFC 9112 6.1). */
            if (++nte > 1 || count_chunked(base + h->value, h->value_len) > 1) {
                error_reason = "chunked applied more than once";
                return 400;
            }
            if (!tg_str_ieq(base + h->value, h->value_len, "chunked", 7)) {
                error_reason = "unsupported transfer coding";
                return 501;
            }
        }
    }
    if (nhost > 1) {
        error_reason = "more than one Host header";
        return 400;
    }
    if (r->host < 0 && r->http_major == 1 && r->http_minor >= 1) {
        error_reason = "HTTP/1.1 request without Host";
        return 400;
    }
    if (r->method == HTTP_CONNECT) {
        error_reason = "CONNECT is not supported";
        return 405;
    }
    if (c->parser.upgrade && r->method == HTTP_GET) {
        /* A WebSocket upgrade (other protocols, such as h2c, are ignored:
         * the request is served as plain HTTP/1.1). */
        const tg_header_t *up = find(&r->headers, base, "upgrade", 7);
        r->upgrade = up && memmem(base + up->value, up->value_len, "ebsocket", 8) &&
                     r->http_major == 1 && r->http_minor >= 1;
    }
    if (r->chunked && r->http_major == 1 && r->http_minor == 0) {
        error_reason = "chunked request body from an HTTP/1.0 client";
        return 400;
    }
    /* The path starts at the first '/'; absolute-form targets carry the
     * host themselves (RFC 9112 3.2.2). */
    r->path_len = r->url_len;
    if (r->url_len && base[r->url] != '/') {
        if (base[r->url] == '*' && r->url_len == 1) {
            /* asterisk-form: nothing routes on it; OPTIONS only (3.2.4) */
            if (r->method != HTTP_OPTIONS) {
                error_reason = "asterisk-form target with a method other than OPTIONS";
                return 400;
            }
        } else if (http_parser_parse_url(base + r->url, r->url_len, 0, &u) == 0 &&
                   (u.field_set & (1 << UF_HOST))) {
            absolute_form(c, &u);
        } else {
            error_reason = "invalid request target";
            return 400;
        }
    }
    const char *q = memchr(base + r->url, '?', r->url_len);
    r->path_len = q ? (uint32_t) (q - (base + r->url)) : r->url_len;
    if (memchr(base + r->url, '#', r->url_len)) {
        error_reason = "fragment in request target";
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

    head_error = 0;
    error_reason = NULL;
    n = http_parser_execute(&c->parser, &request_settings, b->data + b->pos, b->len - b->pos);
    b->pos += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_OK)
        return TG_AGAIN;
    if (e != HPE_PAUSED)
        return head_error ? head_error : status_for(e);

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
        return head_error ? head_error : status_for(e);
    c->req.head_len = (uint32_t) b->pos;
    return head_complete(c);
}

int tg_http1_parse_body(tg_conn_t *c)
{
    tg_buf_t *b = &c->rbuf;
    tg_req_t *r = &c->req;

    if (r->body_done)
        return TG_OK;
    head_error = 0;
    error_reason = NULL;
    unchecked = r->chunked ? b->data + b->pos : NULL;
    size_t n = http_parser_execute(&c->parser, &request_settings, b->data + b->pos,
                                   b->len - b->pos);
    b->pos += n;
    int framed = rest_framing(&r->framing, b->data + b->pos);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (!framed && (e == HPE_OK || e == HPE_PAUSED)) {
        error_reason = "invalid chunked framing (a line end that is not CRLF)";
        return 400;
    }
    if (e == HPE_PAUSED) {
        http_parser_pause(&c->parser, 0);
        return TG_OK;
    }
    if (e != HPE_OK)
        return head_error ? head_error : 400;
    return TG_AGAIN;
}

/* ---- upstream responses --------------------------------------------------- */

static int resp_on_field(http_parser *p, const char *at, size_t len)
{
    tg_req_t *r = p->data;
    return header_piece(&r->arena, &r->proxy.headers, &r->proxy.hstate, r->proxy.rbuf.data, at, len, 1);
}

static int resp_on_value(http_parser *p, const char *at, size_t len)
{
    tg_req_t *r = p->data;
    return header_piece(&r->arena, &r->proxy.headers, &r->proxy.hstate, r->proxy.rbuf.data, at, len, 0);
}

static int resp_on_headers_complete(http_parser *p)
{
    tg_req_t *r = p->data;
    tg_proxy_t *px = &r->proxy;
    const char *base = px->rbuf.data;

    if (p->status_code < 100 || p->status_code > 999)
        return -1; /* not three digits (http-parser takes "2" and "000") */
    if (p->status_code == 101 && !(r->upgrade && (px->flags & TG_PROXY_WS)))
        return -1; /* switching protocols nobody asked for: an invalid response */
    if (p->status_code / 100 == 1 && p->status_code != 101) {
        /* Interim response (100 Continue, 103...): dropped, and never has
         * content (RFC 9110 15.2), whatever its framing headers say; the
         * final response follows on the same connection. */
        px->headers.n = 0;
        px->interim = 1;
        return 1;
    }
    /* As a request's (head_complete): names are tokens ("X-A : b" is not,
     * RFC 9112 5.1), values hold no control characters. */
    for (uint32_t i = 0; i < px->headers.n; i++) {
        const tg_header_t *h = &px->headers.items[i];
        if (h->name_len == 0 || !valid_name(base + h->name, h->name_len) ||
            !valid_value(base + h->value, h->value_len))
            return -1;
    }
    trim_values(&px->headers, base);
    r->status = p->status_code;
    px->resp_length = (p->flags & F_CONTENTLENGTH) && !(p->flags & F_CHUNKED)
                          ? p->content_length : UINT64_MAX;
    px->upgraded = p->status_code == 101;
    px->skip_body = r->head_request || p->status_code == 204 || p->status_code == 304 ||
                    px->upgraded;
    px->head_done = 1;
    px->hstate = H_TRAILER;
    http_parser_pause(p, 1);
    return px->skip_body ? 1 : 0;
}

static int resp_on_body(http_parser *p, const char *at, size_t len)
{
    tg_req_t *r = p->data;
    if (body_framing(&r->proxy.framing, at, len, p->content_length))
        return 1;
    tg_conn_body_data(r, at, len);
    return 0;
}

static int resp_on_message_complete(http_parser *p)
{
    tg_req_t *r = p->data;
    if (r->proxy.interim) {
        r->proxy.interim = 0;
        r->proxy.hstate = H_NONE;
        return 0;
    }
    r->proxy.body_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static http_parser_settings response_settings = {
    .on_header_field = resp_on_field,
    .on_header_value = resp_on_value,
    .on_headers_complete = resp_on_headers_complete,
    .on_body = resp_on_body,
    .on_message_complete = resp_on_message_complete,
};

void tg_http1_response_begin(tg_req_t *r)
{
    http_parser_init(&r->proxy.parser, HTTP_RESPONSE);
    r->proxy.parser.data = r;
    r->proxy.headers.n = 0;
    r->proxy.head_done = r->proxy.body_done = r->proxy.interim = 0;
    r->proxy.hstate = H_NONE;
    r->proxy.framing = FR_BOL;
}

int tg_http1_parse_response(tg_req_t *r)
{
    tg_proxy_t *px = &r->proxy;
    tg_buf_t *b = &px->rbuf;
    int had_head = px->head_done;

    head_error = 0;
    unchecked = had_head && (px->parser.flags & F_CHUNKED) ? b->data + b->pos : NULL;
    size_t n = http_parser_execute(&px->parser, &response_settings, b->data + b->pos,
                                   b->len - b->pos);
    b->pos += n;
    if (!rest_framing(&px->framing, b->data + b->pos))
        return TG_ERROR;
    enum http_errno e = HTTP_PARSER_ERRNO(&px->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&px->parser, 0);
        if (!had_head && px->head_done) {
            /* As on the request side: consume the head's final LF. */
            n = http_parser_execute(&px->parser, &response_settings, b->data + b->pos, 1);
            b->pos += n;
            e = HTTP_PARSER_ERRNO(&px->parser);
            if (e == HPE_PAUSED)
                http_parser_pause(&px->parser, 0);
            else if (e != HPE_OK)
                return TG_ERROR;
            px->head_len = (uint32_t) b->pos;
            /* the head, 1xx ones before it included */
            if (!crlf_head(b->data, px->head_len))
                return TG_ERROR;
        }
        return TG_OK;
    }
    if (e != HPE_OK)
        return TG_ERROR;
    return TG_AGAIN;
}

/* The upstream closed: completes a close-delimited body; TG_ERROR when the
 * response was cut short. */
int tg_http1_response_eof(tg_req_t *r)
{
    tg_proxy_t *px = &r->proxy;
    if (px->body_done)
        return TG_OK;
    if (!px->head_done)
        return TG_ERROR;
    http_parser_execute(&px->parser, &response_settings, NULL, 0);
    enum http_errno e = HTTP_PARSER_ERRNO(&px->parser);
    if (e == HPE_PAUSED)
        http_parser_pause(&px->parser, 0);
    return px->body_done ? TG_OK : TG_ERROR;
}

int tg_http1_response_keepalive(tg_req_t *r)
{
    return http_should_keep_alive(&r->proxy.parser);
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

static const tg_header_t *find(const tg_headers_t *hs, const char *base, const char *lname,
                               size_t len)
{
    for (uint32_t i = 0; i < hs->n; i++)
        if (tg_str_ieq(base + hs->items[i].name, hs->items[i].name_len, lname, len))
            return &hs->items[i];
    return NULL;
}

int tg_headers_find(const tg_headers_t *hs, const char *base, const char *lname, size_t len)
{
    const tg_header_t *h = find(hs, base, lname, len);
    return h ? (int) (h - hs->items) : -1;
}

/* Copies headers except hop-by-hop ones, those named in Connection, those
 * edits replace, and any the caller writes itself (skip, lower-case). */
static void put_forwarded(tg_buf_t *out, const tg_headers_t *hs, const char *base,
                          const tg_hedits_t *edits, const char *const *skip, int nskip)
{
    const tg_header_t *conn = find(hs, base, "connection", 10);

    for (uint32_t i = 0; i < hs->n; i++) {
        const tg_header_t *h = &hs->items[i];
        const char *n = base + h->name;
        int drop = is_hop(n, h->name_len) || edited(edits, n, h->name_len);
        for (int k = 0; !drop && k < nskip; k++)
            drop = tg_str_ieq(n, h->name_len, skip[k], strlen(skip[k]));
        if (!drop && conn)
            drop = in_connection(base + conn->value, conn->value_len, n, h->name_len);
        if (!drop)
            put_header(out, n, h->name_len, base + h->value, h->value_len);
    }
}

static const char *const XFWD[] = { "x-forwarded-for", "x-forwarded-port",
                                    "x-forwarded-proto" };

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
        const tg_header_t *h = find(&r->headers, base, name, nl);
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
        const tg_header_t *h = find(&r->headers, base, "x-forwarded-host", 16);
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
    static const char *const skip_plain[] = { "host", REQUEST_ID_HEADER };
    static const char *const skip_xfwd[] = { "host", REQUEST_ID_HEADER, "x-forwarded-for",
                                             "x-forwarded-proto", "x-forwarded-host",
                                             "x-forwarded-port" };
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
        put_forwarded(out, &r->headers, base, &r->edits, skip_xfwd, tg_nelem(skip_xfwd));
    else
        put_forwarded(out, &r->headers, base, &r->edits, skip_plain, tg_nelem(skip_plain));
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
        const tg_header_t *u = find(&r->headers, base, "upgrade", 7);
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
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    const char *reason = tg_http_reason(status);
    int has_date = 0;

    tg_buf_reserve(out, (r->local ? 256 : px->head_len + 256) + r->body_len);
    put(out, line, (size_t) n);
    tg_buf_append_str(out, reason);
    tg_buf_append(out, "\r\n", 2);

    if (!r->local) {
        put_forwarded(out, &px->headers, px->rbuf.data, &r->resp_edits, NULL, 0);
        has_date = find(&px->headers, px->rbuf.data, "date", 4) != NULL;
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
        const tg_header_t *u = find(&px->headers, px->rbuf.data, "upgrade", 7);
        tg_buf_append_str(out, "Connection: upgrade\r\n");
        if (u)
            put_header(out, "Upgrade", 7, px->rbuf.data + u->value, u->value_len);
        has_date = 1;
    } else if (px->skip_body) {
        const tg_header_t *cl = find(&px->headers, px->rbuf.data, "content-length", 14);
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
