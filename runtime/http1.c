/*
 * http1.c: what parsing both directions shares (client requests:
 * http1_request.c; upstream responses: http1_response.c): the state of one
 * parse call, what field names and values may hold, the line-end checks,
 * the header callbacks' offsets, header lookup. Writing is http1_write.c.
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
#include "http1_int.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_HEADERS 256

/* Set by callbacks during one parse call, read right after it. */
int tg_http1_head_error;         /* status a callback wants the client to get */
const char *tg_http1_error_text; /* why, for tg_http1_error_reason() */
/* The first byte of the current parse call's span that is neither checked
 * chunk framing nor body; NULL when the body is not chunked. */
const char *tg_http1_unchecked;

/* ---- what lines and fields may hold ---------------------------------------- */

/* Field values: visible characters, obs-text, space and tab; no other
 * control characters (NUL, DEL...). Trailer fields only: a head's values
 * are covered by tg_http1_clean_head. */
int tg_http1_valid_value(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0;
    }
    return 1;
}

int tg_http1_valid_name(const char *p, size_t n)
{
    return tg_is_token(p, n);
}

/* Does the token p[0, n) equal lower (lower-case letters and '-')? For a
 * token, setting bit 0x20 lower-cases a letter and changes nothing that
 * could turn into a letter or '-'. */
static inline int token_is(const char *p, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char) p[i] | 0x20) != (unsigned char) lower[i])
            return 0;
    return 1;
}

int tg_http1_name_kind(const char *n, size_t len)
{
    if (len == 0 || !tg_http1_valid_name(n, len))
        return -1;
#define IS(lit) token_is(n, lit, sizeof(lit) - 1)
    switch (len) {
    case 2: return IS("te") ? TG_HK_TE : TG_HK_OTHER;
    case 4: return IS("host") ? TG_HK_HOST : IS("date") ? TG_HK_DATE : TG_HK_OTHER;
    case 6: return IS("expect") ? TG_HK_EXPECT : TG_HK_OTHER;
    case 7: return IS("upgrade") ? TG_HK_UPGRADE : IS("trailer") ? TG_HK_TRAILER : TG_HK_OTHER;
    case 10:
        return IS("connection") ? TG_HK_CONNECTION
               : IS("keep-alive") ? TG_HK_KEEP_ALIVE : TG_HK_OTHER;
    case 13: return IS("eg-request-id") ? TG_HK_REQUEST_ID : TG_HK_OTHER;
    case 14: return IS("content-length") ? TG_HK_CONTENT_LENGTH : TG_HK_OTHER;
    case 15: return IS("x-forwarded-for") ? TG_HK_XFF : TG_HK_OTHER;
    case 16:
        return IS("proxy-connection") ? TG_HK_PROXY_CONNECTION
               : IS("x-forwarded-host") ? TG_HK_XF_HOST
               : IS("x-forwarded-port") ? TG_HK_XF_PORT : TG_HK_OTHER;
    case 17:
        return IS("transfer-encoding") ? TG_HK_TRANSFER_ENCODING
               : IS("x-forwarded-proto") ? TG_HK_XF_PROTO : TG_HK_OTHER;
    default: return TG_HK_OTHER;
    }
#undef IS
}

/* Is the head p[0, n) made of CRLF-terminated lines, ending with an empty
 * one, with no control character but HTAB in any line? Every LF must
 * follow a CR and every CR be followed by an LF. Sixteen bytes at a time
 * where SSE2 is there (x86-64 always): most blocks hold no control byte
 * at all, and in the others the LFs must be exactly the CRs moved one
 * place on. */
int tg_http1_clean_head(const char *p, size_t n)
{
    unsigned cr_before = 0; /* the byte before p[i] is a CR */
    size_t i = 0;

    if (n < 4 || memcmp(p + n - 4, "\r\n\r\n", 4) != 0)
        return 0;
#ifdef __SSE2__
    const __m128i us = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n'), tab = _mm_set1_epi8('\t');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *) (const void *) (p + i));
        __m128i ctl = _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(v, us), us), _mm_cmpeq_epi8(v, del));
        unsigned m = (unsigned) _mm_movemask_epi8(ctl);
        if (m == 0) {
            if (cr_before)
                return 0;
            continue;
        }
        unsigned mcr = (unsigned) _mm_movemask_epi8(_mm_cmpeq_epi8(v, cr));
        unsigned mlf = (unsigned) _mm_movemask_epi8(_mm_cmpeq_epi8(v, lf));
        unsigned mtab = (unsigned) _mm_movemask_epi8(_mm_cmpeq_epi8(v, tab));
        if ((m & ~(mcr | mlf | mtab)) || mlf != (((mcr << 1) | cr_before) & 0xffff))
            return 0;
        cr_before = mcr >> 15;
    }
#endif
    for (; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if (cr_before) {
            if (ch != '\n')
                return 0;
            cr_before = 0;
        } else if (ch == '\r') {
            cr_before = 1;
        } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return 0; /* LF without CR included */
        }
    }
    return 1;
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
int tg_http1_body_framing(uint8_t *st, const char *at, size_t len, uint64_t left)
{
    if (tg_http1_unchecked == NULL)
        return 0;
    if (!framing_ok(st, tg_http1_unchecked, (size_t) (at - tg_http1_unchecked)))
        return 1;
    tg_http1_unchecked = at + len;
    if (left == 0)
        *st = FR_DATA;
    return 0;
}

/* After a parse call over a chunked body: the framing bytes after the last
 * data bytes, up to end. */
int tg_http1_rest_framing(uint8_t *st, const char *end)
{
    const char *p = tg_http1_unchecked;
    tg_http1_unchecked = NULL;
    return p == NULL || framing_ok(st, p, (size_t) (end - p));
}

/* ---- header callbacks shared by both directions -------------------------- */

int tg_http1_header_piece(tg_arena_t *a, tg_headers_t *hs, uint8_t *state, const char *base,
                          const char *at, size_t len, int field)
{
    uint8_t hstate = *state;
    uint32_t off = (uint32_t) (at - base);
    tg_header_t *h = hs->n ? &hs->items[hs->n - 1] : NULL;

    if (hstate == H_TRAILER) {
        if (field ? tg_http1_valid_name(at, len) : tg_http1_valid_value(at, len))
            return 0;
        tg_http1_head_error = 400;
        tg_http1_error_text = "invalid trailer field in a chunked body";
        return 1;
    }
    if (field) {
        if (hstate != H_FIELD) {
            if (hs->n >= MAX_HEADERS) {
                tg_http1_head_error = 431;
                tg_http1_error_text = "too many headers";
                return 1;
            }
            h = tg_headers_push(a, hs);
            h->name = off;
            h->name_len = 0;
            h->value = h->value_len = 0;
            h->kind = TG_HK_OTHER;
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
    tg_http1_head_error = 400;
    tg_http1_error_text = "obsolete line folding in a header";
    return 1;
}

/* Trims trailing whitespace http-parser leaves in values. */
void tg_http1_trim_values(tg_headers_t *hs, const char *base)
{
    for (uint32_t i = 0; i < hs->n; i++) {
        tg_header_t *h = &hs->items[i];
        while (h->value_len && (base[h->value + h->value_len - 1] == ' ' ||
                                base[h->value + h->value_len - 1] == '\t'))
            h->value_len--;
    }
}

/* ---- header lookup and setup ---------------------------------------------- */

const tg_header_t *tg_http1_find(const tg_headers_t *hs, const char *base, const char *lname,
                                 size_t len)
{
    for (uint32_t i = 0; i < hs->n; i++)
        if (tg_str_ieq(base + hs->items[i].name, hs->items[i].name_len, lname, len))
            return &hs->items[i];
    return NULL;
}

const tg_header_t *tg_http1_find_kind(const tg_headers_t *hs, int kind)
{
    for (uint32_t i = 0; i < hs->n; i++)
        if (hs->items[i].kind == kind)
            return &hs->items[i];
    return NULL;
}

int tg_headers_find(const tg_headers_t *hs, const char *base, const char *lname, size_t len)
{
    const tg_header_t *h = tg_http1_find(hs, base, lname, len);
    return h ? (int) (h - hs->items) : -1;
}

void tg_http1_init(size_t max_head_size)
{
    /* The parser's own limit backs up the buffer-size check in conn.c. */
    http_parser_set_max_header_size((uint32_t) max_head_size);
}
