/*
 * jwt.h: JSON Web Token verification, as one call that returns the claims
 * or the reason the token was refused.
 *
 * Keys are parsed once (per config load) into tg_jwt_key_t: a PEM public
 * key or certificate becomes an EVP_PKEY (RSA or EC), anything else is an
 * HMAC secret. Parsing PEM costs ~0.5 ms with OpenSSL 3, so it must never
 * happen per request. libjwt decodes the token and reads the claims;
 * signatures are checked with OpenSSL EVP against the parsed key.
 */
#ifndef TG_JWT_H
#define TG_JWT_H

#include "tg.h"

typedef struct tg_jwt_key tg_jwt_key_t;

/* Why a token was refused (TG_JWT_OK: it was not). */
enum tg_jwt_reason {
    TG_JWT_OK = 0,
    TG_JWT_MALFORMED = 1,       /* not three base64url parts of JSON */
    TG_JWT_ALG_NOT_ALLOWED = 2, /* "none", not in `algorithms`, or wrong for the key */
    TG_JWT_NO_KEY = 3,          /* no key for this token (kid unknown) */
    TG_JWT_BAD_SIGNATURE = 4,
    TG_JWT_EXPIRED = 5,
    TG_JWT_NOT_YET_VALID = 6,
    TG_JWT_WRONG_AUDIENCE = 7,
    TG_JWT_WRONG_ISSUER = 8,
};

/* Algorithms, as bits for tg_jwt_opts_t.algorithms. */
enum tg_jwt_alg {
    TG_JWT_HS256 = 1 << 0, TG_JWT_HS384 = 1 << 1, TG_JWT_HS512 = 1 << 2,
    TG_JWT_RS256 = 1 << 3, TG_JWT_RS384 = 1 << 4, TG_JWT_RS512 = 1 << 5,
    TG_JWT_ES256 = 1 << 6, TG_JWT_ES384 = 1 << 7, TG_JWT_ES512 = 1 << 8,
};

typedef struct tg_jwt_opts {
    int algorithms;             /* allowed algorithms (bits); 0: all the key supports */
    double leeway;              /* seconds of clock skew tolerated for exp and nbf */
    const char *audience;       /* NUL-separated list ending with an empty string, or NULL */
    const char *issuer;         /* same */
} tg_jwt_opts_t;

typedef struct tg_jwt_result {
    int reason;                 /* enum tg_jwt_reason */
    int alg;                    /* enum tg_jwt_alg of the token, when known */
    const char *claims;         /* the payload JSON; valid until the next verify */
    size_t claims_len;
    double exp;                 /* the exp claim, or 0 when absent */
} tg_jwt_result_t;

/* Parses key material. kid may be NULL. Returns NULL with a message in
 * err (size errlen) when PEM-looking material does not parse. */
TG_EXPORT tg_jwt_key_t *tg_jwt_key_new(const char *material, size_t len, const char *kid,
                                       char *err, size_t errlen);
TG_EXPORT void tg_jwt_key_free(tg_jwt_key_t *k);
/* The algorithms (bits) this key can verify. */
TG_EXPORT int tg_jwt_key_algs(const tg_jwt_key_t *k);

/* Verifies token against keys (the one whose kid matches the token's, or
 * the only one). now is the Unix time. */
TG_EXPORT int tg_jwt_verify(tg_jwt_key_t **keys, int nkeys, const char *token, size_t len,
                            const tg_jwt_opts_t *opts, double now, tg_jwt_result_t *out);

TG_EXPORT const char *tg_jwt_reason_text(int reason);

#endif
