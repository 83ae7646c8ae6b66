/*
 * jsonscan.h: a strict JSON (RFC 8259) validator for one object that picks
 * out the top-level members a caller names, without building anything.
 *
 * Written for JWT headers and claims, where a full parser (libjwt's
 * jansson) cost a fifth of a token's verification. Strings must be valid
 * UTF-8 with valid escapes (no lone surrogates), numbers follow the JSON
 * grammar, nesting is limited to TG_JSON_MAX_DEPTH.
 */
#ifndef TG_JSONSCAN_H
#define TG_JSONSCAN_H

#include <stddef.h>
#include <sys/types.h>

#define TG_JSON_MAX_DEPTH 128

enum tg_json_type {
    TG_JSON_NONE = 0,           /* the member is absent */
    TG_JSON_STRING, TG_JSON_NUMBER, TG_JSON_OBJECT, TG_JSON_ARRAY,
    TG_JSON_TRUE, TG_JSON_FALSE, TG_JSON_NULL,
};

typedef struct tg_json_member {
    const char *name;           /* in: the member's name (unescaped) */
    int type;                   /* out: enum tg_json_type */
    const char *raw;            /* out: the value's text; a string's without its quotes */
    size_t len;
} tg_json_member_t;

/* Validates text (len bytes) as one JSON object, whitespace around it
 * allowed, and fills in the wanted members. A wanted name given twice is
 * an error: which one a later reader would take is not certain. Returns 0,
 * or -1 when the text is not valid JSON or not an object. */
int tg_json_scan_object(const char *text, size_t len, tg_json_member_t *want, int nwant);

/* The raw text of a string value (from tg_json_scan_object) unescaped into
 * out (cap bytes). Returns the length, or -1 when it does not fit. */
ssize_t tg_json_unescape(const char *raw, size_t len, char *out, size_t cap);

/* Iterates the elements of an array's raw text (from tg_json_scan_object):
 * *pos starts at 0. Returns 1 with the element's type and raw text (a
 * string's without its quotes), 0 after the last. */
int tg_json_array_next(const char *raw, size_t len, size_t *pos, int *type,
                       const char **elem, size_t *elen);

#endif
