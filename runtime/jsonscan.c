/*
 * jsonscan.c: see jsonscan.h. One pass, no allocation; recursion is
 * bounded by TG_JSON_MAX_DEPTH.
 */
#include <string.h>

#include "jsonscan.h"

typedef struct {
    const unsigned char *p, *end;
} scan_t;

static int skip_value(scan_t *s, int depth);

static void ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const unsigned char *p, unsigned *v)
{
    unsigned u = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        u = u << 4 | d;
    }
    *v = u;
    return 0;
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

/* A \uXXXX escape at p (the backslash), with its low surrogate when it is
 * a high one: the code point and the escape's length, or 0. */
static size_t unicode_escape(const unsigned char *p, const unsigned char *end, unsigned *cp)
{
    unsigned u, lo;
    if (end - p < 6 || hex4(p + 2, &u))
        return 0;
    if (u >= 0xDC00 && u <= 0xDFFF)
        return 0; /* a lone low surrogate */
    if (u < 0xD800 || u > 0xDBFF) {
        *cp = u;
        return 6;
    }
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) || lo < 0xDC00 ||
        lo > 0xDFFF)
        return 0;
    *cp = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
    return 12;
}

/* At the opening quote; leaves p after the closing one. */
static int scan_string(scan_t *s)
{
    s->p++;
    while (s->p < s->end) {
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (s->end - s->p < 2)
                return -1;
            c = s->p[1];
            if (c == 'u') {
                unsigned cp;
                size_t n = unicode_escape(s->p, s->end, &cp);
                if (n == 0)
                    return -1;
                s->p += n;
                continue;
            }
            if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' &&
                c != 'r' && c != 't')
                return -1;
            s->p += 2;
            continue;
        }
        if (c < 0x80) {
            s->p++;
            continue;
        }
        size_t n = utf8_len(s->p, (size_t) (s->end - s->p));
        if (n == 0)
            return -1;
        s->p += n;
    }
    return -1;
}

static int digits(scan_t *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start ? 0 : -1;
}

static int scan_number(scan_t *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p >= s->end)
        return -1;
    if (*s->p == '0')
        s->p++;
    else if (digits(s) < 0)
        return -1;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (digits(s) < 0)
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (digits(s) < 0)
            return -1;
    }
    return 0;
}

static int literal(scan_t *s, const char *word, size_t n)
{
    if ((size_t) (s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int type_of(unsigned c)
{
    switch (c) {
    case '"': return TG_JSON_STRING;
    case '{': return TG_JSON_OBJECT;
    case '[': return TG_JSON_ARRAY;
    case 't': return TG_JSON_TRUE;
    case 'f': return TG_JSON_FALSE;
    case 'n': return TG_JSON_NULL;
    default: return c == '-' || (c >= '0' && c <= '9') ? TG_JSON_NUMBER : TG_JSON_NONE;
    }
}

/* Does the raw (escaped) member name equal name? */
static int name_is(const unsigned char *raw, size_t len, const char *name)
{
    size_t nl = strlen(name);
    if (memchr(raw, '\\', len) == NULL)
        return len == nl && memcmp(raw, name, nl) == 0;
    char buf[128];
    ssize_t n = tg_json_unescape((const char *) raw, len, buf, sizeof(buf));
    return n >= 0 && (size_t) n == nl && memcmp(buf, name, nl) == 0;
}

/* At '{'. want/nwant: the members to record (top level only). */
static int scan_object(scan_t *s, int depth, tg_json_member_t *want, int nwant)
{
    if (depth > TG_JSON_MAX_DEPTH)
        return -1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        ws(s);
        if (s->p >= s->end || *s->p != '"')
            return -1;
        const unsigned char *key = s->p + 1;
        if (scan_string(s) < 0)
            return -1;
        size_t keylen = (size_t) (s->p - 1 - key);
        ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        ws(s);
        if (s->p >= s->end)
            return -1;
        const unsigned char *val = s->p;
        int type = type_of(*val);
        if (skip_value(s, depth + 1) < 0)
            return -1;
        for (int i = 0; i < nwant; i++) {
            if (!name_is(key, keylen, want[i].name))
                continue;
            if (want[i].type != TG_JSON_NONE)
                return -1; /* given twice */
            want[i].type = type;
            want[i].raw = (const char *) val;
            want[i].len = (size_t) (s->p - val);
            if (type == TG_JSON_STRING) {
                want[i].raw++;
                want[i].len -= 2;
            }
        }
        ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
    }
}

static int scan_array(scan_t *s, int depth)
{
    if (depth > TG_JSON_MAX_DEPTH)
        return -1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        ws(s);
        if (skip_value(s, depth + 1) < 0)
            return -1;
        ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return -1;
        s->p++;
    }
}

static int skip_value(scan_t *s, int depth)
{
    if (s->p >= s->end)
        return -1;
    switch (type_of(*s->p)) {
    case TG_JSON_STRING: return scan_string(s);
    case TG_JSON_OBJECT: return scan_object(s, depth, NULL, 0);
    case TG_JSON_ARRAY: return scan_array(s, depth);
    case TG_JSON_TRUE: return literal(s, "true", 4);
    case TG_JSON_FALSE: return literal(s, "false", 5);
    case TG_JSON_NULL: return literal(s, "null", 4);
    case TG_JSON_NUMBER: return scan_number(s);
    default: return -1;
    }
}

int tg_json_scan_object(const char *text, size_t len, tg_json_member_t *want, int nwant)
{
    scan_t s = { (const unsigned char *) text, (const unsigned char *) text + len };
    for (int i = 0; i < nwant; i++) {
        want[i].type = TG_JSON_NONE;
        want[i].raw = NULL;
        want[i].len = 0;
    }
    ws(&s);
    if (s.p >= s.end || *s.p != '{' || scan_object(&s, 1, want, nwant) < 0)
        return -1;
    ws(&s);
    return s.p == s.end ? 0 : -1;
}

ssize_t tg_json_unescape(const char *raw, size_t len, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *) raw, *end = p + len;
    size_t o = 0;
    while (p < end) {
        unsigned cp;
        size_t n = 1;
        char one;
        if (*p != '\\') {
            if (o >= cap)
                return -1;
            out[o++] = (char) *p++;
            continue;
        }
        if (end - p < 2)
            return -1;
        switch (p[1]) {
        case '"': one = '"'; break;
        case '\\': one = '\\'; break;
        case '/': one = '/'; break;
        case 'b': one = '\b'; break;
        case 'f': one = '\f'; break;
        case 'n': one = '\n'; break;
        case 'r': one = '\r'; break;
        case 't': one = '\t'; break;
        case 'u':
            n = unicode_escape(p, end, &cp);
            if (n == 0)
                return -1;
            p += n;
            unsigned char u[4];
            size_t ul;
            if (cp < 0x80) {
                u[0] = (unsigned char) cp;
                ul = 1;
            } else if (cp < 0x800) {
                u[0] = (unsigned char) (0xC0 | cp >> 6);
                u[1] = (unsigned char) (0x80 | (cp & 0x3F));
                ul = 2;
            } else if (cp < 0x10000) {
                u[0] = (unsigned char) (0xE0 | cp >> 12);
                u[1] = (unsigned char) (0x80 | (cp >> 6 & 0x3F));
                u[2] = (unsigned char) (0x80 | (cp & 0x3F));
                ul = 3;
            } else {
                u[0] = (unsigned char) (0xF0 | cp >> 18);
                u[1] = (unsigned char) (0x80 | (cp >> 12 & 0x3F));
                u[2] = (unsigned char) (0x80 | (cp >> 6 & 0x3F));
                u[3] = (unsigned char) (0x80 | (cp & 0x3F));
                ul = 4;
            }
            if (ul > cap - o) /* o <= cap always */
                return -1;
            memcpy(out + o, u, ul);
            o += ul;
            continue;
        default:
            return -1;
        }
        if (o >= cap)
            return -1;
        out[o++] = one;
        p += 2;
    }
    return (ssize_t) o;
}

int tg_json_array_next(const char *raw, size_t len, size_t *pos, int *type, const char **elem,
                       size_t *elen)
{
    if (*pos >= len)
        return 0;
    scan_t s = { (const unsigned char *) raw + *pos, (const unsigned char *) raw + len };
    if (*pos == 0) {
        if (*s.p != '[')
            return 0;
        s.p++;
    }
    ws(&s);
    if (s.p < s.end && *s.p == ',') {
        s.p++;
        ws(&s);
    }
    if (s.p >= s.end || *s.p == ']') {
        *pos = len;
        return 0;
    }
    const unsigned char *start = s.p;
    *type = type_of(*s.p);
    if (skip_value(&s, 2) < 0) {
        *pos = len;
        return 0;
    }
    *elem = (const char *) start;
    *elen = (size_t) (s.p - start);
    if (*type == TG_JSON_STRING) {
        (*elem)++;
        *elen -= 2;
    }
    *pos = (size_t) ((const char *) s.p - raw);
    return 1;
}
