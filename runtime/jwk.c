/*
 * jwk.c: verification keys from JSON Web Keys (RFC 7517, RFC 7518 6).
 *
 * Lua decodes the key set's JSON (tollgate.jwks) and passes each key's
 * members as strings; here they are base64url-decoded and made into the
 * same tg_jwt_key_t a PEM key becomes (jwt.c), with OpenSSL 3's
 * OSSL_PARAM_BLD + EVP_PKEY_fromdata. Nothing is trusted: every length,
 * the curve point and the RSA modulus size are checked, and a refusal says
 * which member is wrong.
 */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>

#include "jwt.h"

#define RSA_MIN_BITS 2048
/* jwt.c's signature buffer holds RSA-8192 signatures */
#define RSA_MAX_BITS 8192
/* the longest member worth decoding (an RSA-8192 modulus is 1366 chars) */
#define MAX_MEMBER 4096

/* A member, decoded into a fresh buffer (*len bytes). NULL with a message
 * when it is absent, empty, too long or not base64url. One or two "="
 * of padding (not allowed by RFC 7515, written by a few libraries) are
 * tolerated; anything else must be canonical. */
static unsigned char *member(const char *kty, const char *name, const char *v, size_t *len,
                             char *err, size_t errlen)
{
    if (v == NULL || *v == '\0') {
        snprintf(err, errlen, "%s key without \"%s\"", kty, name);
        return NULL;
    }
    size_t n = strlen(v);
    if (n > MAX_MEMBER) {
        snprintf(err, errlen, "\"%s\" is too long (%zu characters)", name, n);
        return NULL;
    }
    if (n >= 1 && v[n - 1] == '=')
        n--;
    if (n >= 1 && v[n - 1] == '=')
        n--;
    unsigned char *out = tg_malloc(n * 3 / 4 + 1);
    ssize_t got = n ? tg_jwt_b64url_decode(v, n, out) : -1;
    if (got <= 0) {
        free(out);
        snprintf(err, errlen, "\"%s\" is not base64url", name);
        return NULL;
    }
    *len = (size_t) got;
    return out;
}

/* The message for an OpenSSL failure, with OpenSSL's reason when it has one. */
static void ossl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char detail[200] = "";
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", detail);
}

static EVP_PKEY *fromdata(const char *type, OSSL_PARAM_BLD *bld, char *err, size_t errlen,
                          const char *what)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
        ossl_error(err, errlen, what);
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_key(const char *n64, const char *e64, char *err, size_t errlen)
{
    size_t nlen = 0, elen = 0;
    unsigned char *nb = NULL, *eb = NULL;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;

    if ((nb = member("RSA", "n", n64, &nlen, err, errlen)) == NULL ||
        (eb = member("RSA", "e", e64, &elen, err, errlen)) == NULL)
        goto out;
    n = BN_bin2bn(nb, (int) nlen, NULL);
    e = BN_bin2bn(eb, (int) elen, NULL);
    if (n == NULL || e == NULL) {
        ossl_error(err, errlen, "RSA key");
        goto out;
    }
    int bits = BN_num_bits(n);
    if (bits < RSA_MIN_BITS) {
        snprintf(err, errlen, "RSA modulus too small: %d bits (at least %d)", bits,
                 RSA_MIN_BITS);
        goto out;
    }
    if (bits > RSA_MAX_BITS) {
        snprintf(err, errlen, "RSA modulus too large: %d bits (at most %d)", bits,
                 RSA_MAX_BITS);
        goto out;
    }
    if (!BN_is_odd(n)) {
        snprintf(err, errlen, "\"n\" is not an RSA modulus (even)");
        goto out;
    }
    /* an odd public exponent above 1 that fits 64 bits (65537 in practice) */
    if (!BN_is_odd(e) || BN_is_one(e) || BN_num_bits(e) > 64 || BN_cmp(e, n) >= 0) {
        snprintf(err, errlen, "\"e\" is not a usable RSA public exponent");
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
        ossl_error(err, errlen, "RSA key");
        goto out;
    }
    pkey = fromdata("RSA", bld, err, errlen, "RSA key refused");

out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(nb);
    free(eb);
    return pkey;
}

static EVP_PKEY *ec_key(const char *crv, const char *x64, const char *y64, char *err,
                        size_t errlen)
{
    static const struct {
        const char *jwk, *group;
        size_t bytes;
    } CURVES[] = {
        { "P-256", "prime256v1", 32 },
        { "P-384", "secp384r1", 48 },
        { "P-521", "secp521r1", 66 },
    };
    size_t c = 0, xlen = 0, ylen = 0;
    unsigned char *xb = NULL, *yb = NULL, *point = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *check = NULL;

    if (crv == NULL || *crv == '\0') {
        snprintf(err, errlen, "EC key without \"crv\"");
        return NULL;
    }
    while (c < tg_nelem(CURVES) && strcmp(CURVES[c].jwk, crv) != 0)
        c++;
    if (c == tg_nelem(CURVES)) {
        snprintf(err, errlen, "unknown crv \"%.40s\" (P-256, P-384 and P-521 are supported)",
                 crv);
        return NULL;
    }
    size_t bytes = CURVES[c].bytes;
    if ((xb = member("EC", "x", x64, &xlen, err, errlen)) == NULL ||
        (yb = member("EC", "y", y64, &ylen, err, errlen)) == NULL)
        goto out;
    /* RFC 7518 6.2.1.2: the full coordinate size, leading zeros kept */
    if (xlen != bytes || ylen != bytes) {
        snprintf(err, errlen, "%s coordinates are %zu bytes each (x has %zu, y %zu)", crv, bytes,
                 xlen, ylen);
        goto out;
    }
    point = tg_malloc(1 + 2 * bytes);
    point[0] = 0x04; /* uncompressed */
    memcpy(point + 1, xb, bytes);
    memcpy(point + 1 + bytes, yb, bytes);
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, CURVES[c].group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * bytes)) {
        ossl_error(err, errlen, "EC key");
        goto out;
    }
    pkey = fromdata("EC", bld, err, errlen, "EC key refused");
    if (pkey == NULL) {
        /* EVP_PKEY_fromdata decodes the point: off the curve, it fails here */
        snprintf(err, errlen, "the point (x, y) is not on curve %s", crv);
        goto out;
    }
    /* and once more explicitly: on the curve, not the point at infinity */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        ERR_clear_error();
        EVP_PKEY_free(pkey);
        pkey = NULL;
        snprintf(err, errlen, "the point (x, y) is not on curve %s", crv);
    }

out:
    EVP_PKEY_CTX_free(check);
    OSSL_PARAM_BLD_free(bld);
    free(point);
    free(xb);
    free(yb);
    return pkey;
}

static int key_is_ec(const char *kty)
{
    return strcmp(kty, "EC") == 0;
}

tg_jwt_key_t *tg_jwt_key_from_jwk(const char *kty, const char *crv, const char *n,
                                  const char *e, const char *x, const char *y, const char *k,
                                  const char *kid, const char *alg, char *err, size_t errlen)
{
    tg_jwt_key_t *key = NULL;
    int alg_bit = 0;

    err[0] = '\0';
    if (alg && *alg) {
        alg_bit = tg_jwt_alg_bit(alg);
        if (alg_bit == 0) {
            snprintf(err, errlen, "alg \"%.40s\" is not a signature algorithm tollgate verifies "
                     "(HS, RS and ES 256/384/512)", alg);
            return NULL;
        }
    }
    if (kty == NULL || *kty == '\0') {
        snprintf(err, errlen, "no \"kty\"");
        return NULL;
    }
    if (strcmp(kty, "RSA") == 0) {
        EVP_PKEY *pkey = rsa_key(n, e, err, errlen);
        if (pkey == NULL)
            return NULL;
        key = tg_jwt_key_from_pkey(pkey, kid, err, errlen);
    } else if (strcmp(kty, "EC") == 0) {
        EVP_PKEY *pkey = ec_key(crv, x, y, err, errlen);
        if (pkey == NULL)
            return NULL;
        key = tg_jwt_key_from_pkey(pkey, kid, err, errlen);
    } else if (strcmp(kty, "oct") == 0) {
        size_t len = 0;
        unsigned char *secret = member("oct", "k", k, &len, err, errlen);
        if (secret == NULL)
            return NULL;
        key = tg_jwt_key_from_secret(secret, len, kid);
        OPENSSL_cleanse(secret, len);
        free(secret);
    } else {
        snprintf(err, errlen, "unknown kty \"%.40s\" (RSA, EC and oct are supported)", kty);
        return NULL;
    }
    if (key && alg_bit && tg_jwt_key_restrict(key, alg_bit) == 0) {
        snprintf(err, errlen, "alg %s does not fit this %s%s%s key", alg, kty,
                 key_is_ec(kty) ? " " : "", key_is_ec(kty) ? crv : "");
        tg_jwt_key_free(key);
        return NULL;
    }
    return key;
}
