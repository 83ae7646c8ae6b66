/*
 * req.c: the request object: its reset between requests, request ids, and
 * the accessors and header edits Lua calls through the FFI. Accessors
 * return slices into the head buffers; Lua copies what it keeps.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/random.h>

#include "conn.h"
#include "upstream.h"
#include "worker.h"

/* ---- ids ----------------------------------------------------------------- */

static uint64_t rng[2];

static uint64_t next_random(void)
{
    /* xorshift128+: ids need to be unique and unguessable enough for logs,
     * not cryptographic. Seeded per worker from getrandom(). */
    uint64_t s1 = rng[0];
    const uint64_t s0 = rng[1];
    rng[0] = s0;
    s1 ^= s1 << 23;
    rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return rng[1] + s0;
}

static void make_id(char *id)
{
    /* 22 base62 characters, the shape of Express Gateway's uuid62 ids. */
    static const char digits[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (tg_unlikely(rng[0] == 0 && rng[1] == 0)) {
        if (getrandom(rng, sizeof(rng), 0) != sizeof(rng) || (rng[0] | rng[1]) == 0) {
            rng[0] = (uint64_t) getpid() * 0x9E3779B97F4A7C15ull;
            rng[1] = (uint64_t) (uintptr_t) &rng ^ 0xBF58476D1CE4E5B9ull;
        }
    }
    uint64_t a = next_random(), b = next_random();
    for (int i = 0; i < 11; i++) {
        id[i] = digits[a % 62];
        a /= 62;
        id[11 + i] = digits[b % 62];
        b /= 62;
    }
    id[22] = '\0';
}

/* ---- lifecycle ------------------------------------------------------------ */

void tg_req_init(tg_req_t *r, tg_conn_t *c)
{
    memset(r, 0, sizeof(*r));
    r->conn = c;
    r->co = -1;
    r->host = -1;
    r->content_length = UINT64_MAX;
    r->proxy.resp_length = UINT64_MAX;
    make_id(r->id);
}

void tg_req_reset(tg_req_t *r)
{
    tg_conn_t *c = r->conn;
    tg_buf_release(&r->proxy.wbuf);
    tg_buf_release(&r->proxy.rbuf);
    tg_buf_release(&r->body_buf);
    tg_buf_release(&r->resp_buf);
    tg_arena_free(&r->arena);
    tg_req_init(r, c);
}

tg_header_t *tg_headers_push(tg_arena_t *a, tg_headers_t *h)
{
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 16;
        tg_header_t *items = tg_arena_alloc(a, cap * sizeof(*items));
        if (h->n)
            memcpy(items, h->items, h->n * sizeof(*items));
        h->items = items;
        h->cap = cap;
    }
    return &h->items[h->n++];
}

void tg_req_local_response(tg_req_t *r, int status, const char *body)
{
    r->local = 1;
    r->status = status;
    r->resp_edits.n = 0;
    r->body = body;
    r->body_len = body ? strlen(body) : 0;
}

/* ---- request accessors (FFI) ------------------------------------------------ */

int tg_req_method(tg_req_t *r)
{
    return r->method;
}

const char *tg_req_method_name(tg_req_t *r, size_t *len)
{
    const char *m = http_method_str((enum http_method) r->method);
    *len = strlen(m);
    return m;
}

const char *tg_req_target(tg_req_t *r, size_t *len)
{
    if (r->url_len == 0) {
        *len = 1;
        return "/";
    }
    *len = r->url_len;
    return r->conn->rbuf.data + r->url;
}

const char *tg_req_path(tg_req_t *r, size_t *len)
{
    if (r->path_len == 0) {
        *len = 1;
        return "/";
    }
    *len = r->path_len;
    return r->conn->rbuf.data + r->url;
}

const char *tg_req_query(tg_req_t *r, size_t *len)
{
    if (r->path_len >= r->url_len) {
        *len = 0;
        return NULL;
    }
    *len = r->url_len - r->path_len - 1;
    return r->conn->rbuf.data + r->url + r->path_len + 1;
}

const char *tg_req_host(tg_req_t *r, size_t *len)
{
    const char *base = r->conn->rbuf.data;
    if (r->abs_host_len) {
        *len = r->abs_host_len;
        return base + r->abs_host;
    }
    if (r->host < 0) {
        *len = 0;
        return NULL;
    }
    const tg_header_t *h = &r->headers.items[r->host];
    *len = h->value_len;
    return base + h->value;
}

int tg_req_http_version(tg_req_t *r)
{
    return r->http_major * 10 + r->http_minor;
}

const char *tg_req_client_ip(tg_req_t *r, size_t *len)
{
    tg_conn_t *c = r->conn;
    if (c->ip_len == 0) {
        /* once per connection: inet_ntop costs more than the rest of a
         * rate limit keyed by the client's address */
        const struct sockaddr_in6 *sa = &c->peer;
        if (sa->sin6_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, c->ip, sizeof(c->ip));
        else
            inet_ntop(AF_INET6, &sa->sin6_addr, c->ip, sizeof(c->ip));
        c->ip_len = (uint8_t) strlen(c->ip);
    }
    *len = c->ip_len;
    return c->ip;
}

const char *tg_req_id(tg_req_t *r, size_t *len)
{
    *len = strlen(r->id);
    return r->id;
}

const char *tg_req_scheme(tg_req_t *r)
{
    return tg_conn_scheme(r->conn);
}

int tg_req_tls_verified(tg_req_t *r)
{
    return r->conn->sock.client_verified;
}

double tg_req_start_time(tg_req_t *r)
{
    return r->t_start;
}

void tg_req_set_route(tg_req_t *r, const char *name, size_t len)
{
    r->route = tg_arena_strndup(&r->arena, name, len);
}

void tg_req_set_error(tg_req_t *r, const char *msg, size_t len)
{
    r->error = tg_arena_strndup(&r->arena, msg, len);
}

/* ---- headers (FFI) ----------------------------------------------------------- */

static tg_hedits_t *edits_of(tg_req_t *r, int which)
{
    return which == TG_RESPONSE ? &r->resp_edits : &r->edits;
}

/* The original header list and its buffer; a local response has none. */
static const tg_headers_t *originals(tg_req_t *r, int which, const char **base)
{
    if (which == TG_REQUEST) {
        *base = r->conn->rbuf.data;
        return &r->headers;
    }
    if (r->local || !r->proxy.head_done)
        return NULL;
    *base = r->proxy.rbuf.data;
    return &r->proxy.headers;
}

static int replaced(const tg_hedits_t *e, const char *lname, size_t len)
{
    for (uint32_t i = 0; i < e->n; i++)
        if (e->items[i].op != TG_HDR_ADD && e->items[i].name_len == len &&
            memcmp(e->items[i].name, lname, len) == 0)
            return 1;
    return 0;
}

const char *tg_hdr_get(tg_req_t *r, int which, const char *name, size_t len, size_t *vlen)
{
    const tg_hedits_t *e = edits_of(r, which);
    const char *base;
    const tg_headers_t *hs;
    char lname[256];

    if (len == 0 || len >= sizeof(lname))
        return NULL;
    for (size_t i = 0; i < len; i++)
        lname[i] = (char) ((name[i] >= 'A' && name[i] <= 'Z') ? name[i] | 0x20 : name[i]);

    if (!replaced(e, lname, len) && (hs = originals(r, which, &base)) != NULL) {
        for (uint32_t i = 0; i < hs->n; i++) {
            const tg_header_t *h = &hs->items[i];
            if (tg_str_ieq(base + h->name, h->name_len, lname, len)) {
                *vlen = h->value_len;
                return base + h->value;
            }
        }
    }
    for (uint32_t i = 0; i < e->n; i++) {
        const tg_hedit_t *h = &e->items[i];
        if (h->op != TG_HDR_DEL && h->name_len == len && memcmp(h->name, lname, len) == 0) {
            *vlen = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

static int valid_value(const char *p, size_t len)
{
    /* no CR, LF or NUL: the one byte class test per byte the compiler can
     * turn into a bit test */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) p[i];
        if (c <= '\r' && (c == '\r' || c == '\n' || c == '\0'))
            return 0;
    }
    return 1;
}

int tg_hdr_edit(tg_req_t *r, int which, int op, const char *name, size_t len, const char *value,
                size_t vlen)
{
    tg_hedits_t *e = edits_of(r, which);

    if (op == TG_HDR_DEL)
        vlen = 0;
    else if (!valid_value(value, vlen))
        return TG_ERROR;
    if (len == 0 || len > 255)
        return TG_ERROR;
    /* one allocation: the lower-cased name, the name as given, the value;
     * the name is checked (tokens only) as it is copied */
    char *lname = tg_arena_alloc(&r->arena, 2 * len + vlen + 3);
    char *out_name = lname + len + 1, *val = out_name + len + 1;
    for (size_t i = 0; i < len; i++) {
        uint8_t lc = tg_tchar[(unsigned char) name[i]];
        if (lc == 0)
            return TG_ERROR; /* the arena space is reclaimed with the request */
        lname[i] = (char) lc;
    }
    lname[len] = '\0';
    memcpy(out_name, name, len);
    out_name[len] = '\0';
    if (vlen)
        memcpy(val, value, vlen);
    val[vlen] = '\0';

    if (op != TG_HDR_ADD) {
        /* SET and DEL supersede every earlier edit of the name. */
        uint32_t k = 0;
        for (uint32_t i = 0; i < e->n; i++) {
            const tg_hedit_t *h = &e->items[i];
            if (!(h->name_len == len && h->name[len - 1] == lname[len - 1] &&
                  memcmp(h->name, lname, len) == 0))
                e->items[k++] = *h;
        }
        e->n = k;
    }
    if (e->n == e->cap) {
        uint32_t cap = e->cap ? e->cap * 2 : 8;
        tg_hedit_t *items = tg_arena_alloc(&r->arena, cap * sizeof(*items));
        if (e->n)
            memcpy(items, e->items, e->n * sizeof(*items));
        e->items = items;
        e->cap = cap;
    }
    tg_hedit_t *h = &e->items[e->n++];
    h->name = lname;
    h->out_name = out_name;
    h->name_len = (uint32_t) len;
    h->value = op == TG_HDR_DEL ? NULL : val;
    h->value_len = (uint32_t) vlen;
    h->op = op;
    return TG_OK;
}

int tg_hdr_edit_int(tg_req_t *r, int which, int op, const char *name, size_t len, int64_t v)
{
    char buf[24], *end = buf + sizeof(buf);
    char *p = tg_u64_digits(end, v < 0 ? 0 - (uint64_t) v : (uint64_t) v);
    if (v < 0)
        *--p = '-';
    return tg_hdr_edit(r, which, op, name, len, p, (size_t) (end - p));
}

/* Iterates the effective header list: originals not replaced by an edit,
 * then the SET/ADD edits. Returns the next cursor, or -1 at the end. */
int tg_hdr_next(tg_req_t *r, int which, int i, const char **name, size_t *nlen,
                const char **value, size_t *vlen)
{
    const tg_hedits_t *e = edits_of(r, which);
    const char *base = NULL;
    const tg_headers_t *hs = originals(r, which, &base);
    int norig = hs ? (int) hs->n : 0;

    for (; i < norig; i++) {
        const tg_header_t *h = &hs->items[i];
        int skip = 0;
        for (uint32_t k = 0; k < e->n && !skip; k++)
            skip = e->items[k].op != TG_HDR_ADD &&
                   tg_str_ieq(base + h->name, h->name_len, e->items[k].name,
                              e->items[k].name_len);
        if (skip)
            continue;
        *name = base + h->name;
        *nlen = h->name_len;
        *value = base + h->value;
        *vlen = h->value_len;
        return i + 1;
    }
    for (; i - norig < (int) e->n; i++) {
        const tg_hedit_t *h = &e->items[i - norig];
        if (h->op == TG_HDR_DEL)
            continue;
        *name = h->name;
        *nlen = h->name_len;
        *value = h->value;
        *vlen = h->value_len;
        return i + 1;
    }
    return -1;
}

/* ---- response (FFI) ------------------------------------------------------------ */

int tg_resp_status(tg_req_t *r)
{
    return r->status;
}

void tg_resp_set_status(tg_req_t *r, int status)
{
    r->status = status;
}

void tg_resp_set_body(tg_req_t *r, const char *body, size_t len)
{
    /* In the response phase of a proxied request this replaces the
     * upstream's body and keeps its headers; before that (or after an
     * upstream failure) it makes the response the gateway's own. */
    if (r->proxy.head_done && !r->local && !r->proxy.error)
        r->resp_body_set = 1;
    else
        r->local = 1;
    r->body = tg_arena_strndup(&r->arena, body ? body : "", len);
    r->body_len = len;
}

/* ---- bodies for Lua (FFI) ------------------------------------------------------- */

int tg_req_read_body(tg_req_t *r)
{
    if (r->body_done)
        return (!r->body_started || r->buffer_body) ? TG_OK : TG_ERROR;
    if (r->body_started && !r->buffer_body)
        return TG_ERROR; /* already on its way upstream, or being dropped */
    /* The connection reads it once Lua has yielded (tg_conn_lua_yielded). */
    r->buffer_body = 1;
    r->body_wait = 1;
    return TG_AGAIN;
}

const char *tg_req_body(tg_req_t *r, size_t *len)
{
    *len = r->body_buf.len;
    return r->body_buf.data ? r->body_buf.data : "";
}

int tg_req_set_body(tg_req_t *r, const char *p, size_t len)
{
    if (!r->body_done || (r->body_started && !r->buffer_body) || r->proxy.state != TG_PROXY_IDLE)
        return TG_ERROR;
    r->buffer_body = 1;
    tg_buf_reset(&r->body_buf);
    tg_buf_append(&r->body_buf, p, len);
    return TG_OK;
}

int tg_resp_read_body(tg_req_t *r)
{
    if (r->local || r->resp_body_set)
        return TG_OK;
    if (!r->proxy.head_done || r->resp_started)
        return TG_ERROR;
    r->resp_buffer = 1;
    r->resp_wait = 1;
    return TG_AGAIN;
}

const char *tg_resp_body(tg_req_t *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}
