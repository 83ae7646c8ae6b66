/*
 * jwt.h: JSON Web Token verification, as one call that returns the claims
 * or the reason the token was refused.
 *
 * Keys are parsed once (per config load) into tg_jwt_key_t: a PEM public
 * key or certificate becomes an EVP_PKEY (RSA or EC), anything else is an
 * HMAC secret. Parsing PEM costs ~0.5 ms with OpenSSL 3, so it must never
 * happen per request. Keys from a JSON Web Key Set (jwksUri) are made by
 * runtime/jwk.c, once per fetched set. jsonscan.c validates the header and
 * claims and picks out the members checked here; signatures are checked
 * with OpenSSL against the parsed key, through contexts the key keeps.
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

/* Makes a key from a JSON Web Key's members (RFC 7517, 7518), each a
 * string or NULL when absent: kty "RSA" (n, e), "EC" (crv P-256, P-384 or
 * P-521; x, y) or "oct" (k), base64url-encoded. alg, when given, must be a
 * JWS algorithm of the key's type and restricts the key to it. Returns
 * NULL with a message in err when the JWK is not a usable verification
 * key (bad base64url, a point not on the curve, an RSA modulus under 2048
 * bits, an unknown kty, crv or alg...). Defined in runtime/jwk.c. */
TG_EXPORT tg_jwt_key_t *tg_jwt_key_from_jwk(const char *kty, const char *crv, const char *n,
                                            const char *e, const char *x, const char *y,
                                            const char *k, const char *kid, const char *alg,
                                            char *err, size_t errlen);

/* Verifies token against keys. The candidates are the keys whose kid is
 * the token's; when no key has it, or the token has no kid, the keys
 * without a kid; and for a token without a kid, every key. Candidates
 * whose type fits the token's algorithm are tried in order, so a token
 * without a kid against a key set costs one signature check per fitting
 * key. No candidate: TG_JWT_NO_KEY (an unknown kid); none of the right
 * type: TG_JWT_ALG_NOT_ALLOWED. now is the Unix time. */
TG_EXPORT int tg_jwt_verify(tg_jwt_key_t **keys, int nkeys, const char *token, size_t len,
                            const tg_jwt_opts_t *opts, double now, tg_jwt_result_t *out);

TG_EXPORT const char *tg_jwt_reason_text(int reason);

/* For runtime/jwk.c (not exported). */
struct evp_pkey_st;
/* A key from an EVP_PKEY, which it takes over (freed when refused). */
tg_jwt_key_t *tg_jwt_key_from_pkey(struct evp_pkey_st *pkey, const char *kid, char *err,
                                   size_t errlen);
/* An HMAC key from raw secret bytes (len > 0). */
tg_jwt_key_t *tg_jwt_key_from_secret(const void *secret, size_t len, const char *kid);
/* Keeps only the algorithms in algs; returns what is left. */
int tg_jwt_key_restrict(tg_jwt_key_t *k, int algs);
/* "RS256" -> TG_JWT_RS256; 0 for a name that is not one. */
int tg_jwt_alg_bit(const char *name);
/* Strict base64url without padding; returns the length written (out has
 * room for n * 3 / 4 bytes), or -1. */
ssize_t tg_jwt_b64url_decode(const char *in, size_t n, unsigned char *out);

#endif
