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

#define MAX_HEADERS 256

/* Set by callbacks during one parse call, read right after it. */
int tg_http1_head_error;         /* status a callback wants the client to get */
const char *tg_http1_error_text; /* why, for tg_http1_error_reason() */
/* The first byte of the current parse call's span that is neither checked
 * chunk framing nor body; NULL when the body is not chunked. */
const char *tg_http1_unchecked;

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
    for (size_t i = 0; i < n; i++)
        if (!TOKEN[(unsigned char) p[i]])
            return 0;
    return 1;
}

/* Is the head p[0, n) made of CRLF-terminated lines, ending with an empty
 * one? Every LF follows a CR, and there are as many CRs as LFs, so every
 * CR is followed by an LF. */
int tg_http1_crlf_head(const char *p, size_t n)
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
