/*
 * http1_int.h: internal to http1*.c: what the client request parser
 * (http1_request.c), the upstream response parser (http1_response.c) and
 * the writer (http1_write.c) share, defined in http1.c. The rest of the
 * runtime uses http1.h.
 */
#ifndef TG_HTTP1_INT_H
#define TG_HTTP1_INT_H

#include "http1.h"

/* Header parse states (tg_req_t.hstate, tg_proxy_t.hstate); H_TRAILER: the
 * head is over, so header callbacks are a chunked body's trailer section
 * (checked, then dropped: RFC 9110 6.5.1; they are never forwarded, and
 * recording them would add headers to the head after the policies saw it). */
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
extern int tg_http1_head_error;         /* status a callback wants the client to get */
extern const char *tg_http1_error_text; /* why, for tg_http1_error_reason() */
/* The first byte of the current parse call's span that is neither checked
 * chunk framing nor body; NULL when the body is not chunked. */
extern const char *tg_http1_unchecked;

/* What field names (RFC 9110 tokens) and values may hold. */
int tg_http1_valid_name(const char *p, size_t n);
int tg_http1_valid_value(const char *p, size_t n);
/* A head's field name: -1 when it is not a token, else its enum tg_hkind. */
int tg_http1_name_kind(const char *n, size_t len);

/* A whole head (client request, or upstream response with any 1xx heads
 * before it) is CRLF lines holding no control character but HTAB: this
 * covers every field value. A chunked body's framing is checked in on_body
 * (body_framing) and after each parse call (rest_framing). */
int tg_http1_clean_head(const char *p, size_t n);
int tg_http1_body_framing(uint8_t *st, const char *at, size_t len, uint64_t left);
int tg_http1_rest_framing(uint8_t *st, const char *end);

/* on_header_field (field) and on_header_value pieces as offsets from base
 * into hs; 1 (with tg_http1_head_error set) stops the parser. */
int tg_http1_header_piece(tg_arena_t *a, tg_headers_t *hs, uint8_t *state, const char *base,
                          const char *at, size_t len, int field);
void tg_http1_trim_values(tg_headers_t *hs, const char *base);

/* The first header named lname (lower case), or NULL. */
const tg_header_t *tg_http1_find(const tg_headers_t *hs, const char *base, const char *lname,
                                 size_t len);
/* The first header of that kind (set by the head checks), or NULL. */
const tg_header_t *tg_http1_find_kind(const tg_headers_t *hs, int kind);

#endif
