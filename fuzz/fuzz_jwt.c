/*
 * fuzz_jwt.c: the JWT verification entry point, tg_jwt_verify (runtime/
 * jwt.c), against an HMAC secret, an RSA key, an EC (P-256) key and a set
 * of keys picked by kid, with and without allowed algorithms, audience,
 * issuer and leeway. The keys are made once, at start, with OpenSSL.
 *
 * Input: byte 0 picks the mode (bits 0-2) and byte 1 the options; the rest
 * is the material.
 *   mode 0, 6, 7 the rest is a token, verified as it is;
 *   mode 1, 2, 3 the rest is a header and a payload (split at the first NUL;
 *                without one, the payload under a standard header), signed
 *                here with the HMAC (1), RSA (2) or EC (3) key, so that the
 *                checks after the signature (exp, nbf, aud, iss, claims) see
 *                fuzzed JSON;
 *   mode 4       the rest is key material for tg_jwt_key_new;
 *   mode 5       the rest is a JSON Web Key's members (kty, crv, n, e, x, y,
 *                k, kid, alg, separated by NULs; empty means absent) for
 *                tg_jwt_key_from_jwk (runtime/jwk.c: JWKS keys fetched
 *                from a URL), and tokens of every algorithm are verified
 *                against the key it makes.
 *
 * Checked: the reason is a known one; OK only with a signature this
 * harness made (a token taken as it is can never verify: the keys are new
 * each run), an allowed algorithm of the key's family, the claims (a JSON
 * object), the audience and issuer asked for, and an exp still ahead.
 */
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "jwt.h"

#define NOW 1700000000.0
#define SECRET "fuzz-secret-0123456789"

static EVP_PKEY *rsa_pkey, *ec_pkey;
static tg_jwt_key_t *hmac_key, *rsa_key, *ec_key;
static tg_jwt_key_t *keyset[3]; /* kids "h", "r", "e" */

static char *pem_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = tg_strndup(data, (size_t) n);
    BIO_free(b);
    return s;
}

static tg_jwt_key_t *key(const char *material, const char *kid)
{
    char err[256];
    tg_jwt_key_t *k = tg_jwt_key_new(material, strlen(material), kid, err, sizeof(err));
    FUZZ_CHECK(k != NULL, "key: %s", err);
    return k;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rsa_pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    ec_pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FUZZ_CHECK(rsa_pkey && ec_pkey, "keygen failed");
    char *rsa_pem = pem_of(rsa_pkey), *ec_pem = pem_of(ec_pkey);
    hmac_key = key(SECRET, NULL);
    rsa_key = key(rsa_pem, NULL);
    ec_key = key(ec_pem, NULL);
    keyset[0] = key(SECRET, "h");
    keyset[1] = key(rsa_pem, "r");
    keyset[2] = key(ec_pem, "e");
    free(rsa_pem);
    free(ec_pem);
    return 0;
}

/* ---- minting --------------------------------------------------------------- */

static size_t b64url(const unsigned char *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
        *o++ = a[v >> 18];
        *o++ = a[(v >> 12) & 63];
        *o++ = a[(v >> 6) & 63];
        *o++ = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t) p[i] << 16;
        *o++ = a[v >> 18];
        *o++ = a[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;
        *o++ = a[v >> 18];
        *o++ = a[(v >> 12) & 63];
        *o++ = a[(v >> 6) & 63];
    }
    return (size_t) (o - out);
}

/* header.payload.signature, signed with the mode's key (SHA-256). */
static char *mint(int mode, const char *h, size_t hl, const char *p, size_t pl, size_t *len)
{
    char *tok = tg_malloc((hl + pl) * 4 / 3 + 2048);
    size_t n = b64url((const unsigned char *) h, hl, tok);
    tok[n++] = '.';
    n += b64url((const unsigned char *) p, pl, tok + n);
    unsigned char sig[1024];
    size_t siglen = 0;
    if (mode == 1) {
        unsigned int sl = 0;
        HMAC(EVP_sha256(), SECRET, (int) strlen(SECRET), (unsigned char *) tok, n, sig, &sl);
        siglen = sl;
    } else {
        EVP_PKEY *k = mode == 2 ? rsa_pkey : ec_pkey;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char der[1024];
        size_t dl = sizeof(der);
        FUZZ_CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k) == 1 &&
                       EVP_DigestSign(ctx, der, &dl, (unsigned char *) tok, n) == 1,
                   "sign failed");
        EVP_MD_CTX_free(ctx);
        if (mode == 2) {
            memcpy(sig, der, dl);
            siglen = dl;
        } else { /* JOSE: r || s */
            const unsigned char *q = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long) dl);
            const BIGNUM *r, *s;
            ECDSA_SIG_get0(es, &r, &s);
            BN_bn2binpad(r, sig, 32);
            BN_bn2binpad(s, sig + 32, 32);
            ECDSA_SIG_free(es);
            siglen = 64;
        }
    }
    tok[n++] = '.';
    n += b64url(sig, siglen, tok + n);
    *len = n;
    return tok;
}

/* ---- verification --------------------------------------------------------------- */

static int signed_by_us;

/* The claims with JSON escapes of ASCII characters decoded ("\u002e" is
 * ".", "\/" is "/"), as a JSON parser reads them. */
static char *unescaped(const char *p, size_t n, size_t *outlen)
{
    char *out = tg_malloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (p[i] == '\\' && i + 5 < n && p[i + 1] == 'u' && sscanf(p + i + 2, "%4x", &v) == 1 &&
            v > 0 && v < 0x80) {
            *o++ = (char) v;
            i += 5;
        } else if (p[i] == '\\' && i + 1 < n && (p[i + 1] == '/' || p[i + 1] == '\\')) {
            *o++ = p[++i];
        } else {
            *o++ = p[i];
        }
    }
    *outlen = (size_t) (o - out);
    return out;
}

static void verify(tg_jwt_key_t **keys, int nkeys, const char *tok, size_t len,
                   const tg_jwt_opts_t *o, int family)
{
    tg_jwt_result_t res;
    int reason = tg_jwt_verify(keys, nkeys, tok, len, o, NOW, &res);
    FUZZ_CHECK(reason == res.reason && reason >= TG_JWT_OK && reason <= TG_JWT_WRONG_ISSUER,
               "reason %d", reason);
    FUZZ_CHECK(tg_jwt_reason_text(reason) != NULL, "no reason text");
    if (reason != TG_JWT_OK)
        return;
    FUZZ_CHECK(signed_by_us, "a token this run did not sign verified: %.*s", (int) len, tok);
    FUZZ_CHECK(res.alg & family, "alg %x verified with a key for %x", res.alg, family);
    FUZZ_CHECK(!o->algorithms || (o->algorithms & res.alg), "alg %x not allowed", res.alg);
    FUZZ_CHECK(res.claims != NULL && res.claims_len > 0, "OK without claims");
    size_t i = 0;
    while (i < res.claims_len && strchr(" \t\r\n", res.claims[i]))
        i++;
    FUZZ_CHECK(i < res.claims_len && res.claims[i] == '{', "claims are not an object: %.*s",
               (int) res.claims_len, res.claims);
    size_t ul;
    char *u = unescaped(res.claims, res.claims_len, &ul);
    if (o->audience && *o->audience)
        FUZZ_CHECK(memmem(u, ul, "\"api.test\"", 10) || memmem(u, ul, "\"other\"", 7),
                   "audience not in the claims: %.*s", (int) res.claims_len, res.claims);
    if (o->issuer && *o->issuer)
        FUZZ_CHECK(memmem(u, ul, "\"https://issuer.test/\"", 22),
                   "issuer not in the claims: %.*s", (int) res.claims_len, res.claims);
    free(u);
    if (res.exp != 0)
        FUZZ_CHECK(NOW < res.exp + o->leeway, "expired token accepted (exp %f)", res.exp);
}

/* Tokens with a signature of each algorithm's size, made with no key the
 * fuzzer can give: none may verify against a key from a fuzzed JWK. */
static char *jwk_tokens[9];

static void jwk_tokens_make(void)
{
    static const char *const algs[9] = { "HS256", "HS384", "HS512", "RS256", "RS384",
                                         "RS512", "ES256", "ES384", "ES512" };
    static const size_t sizes[9] = { 32, 48, 64, 256, 256, 256, 64, 96, 132 };
    unsigned char sig[256];
    memset(sig, 0x5a, sizeof(sig));
    for (int i = 0; i < 9; i++) {
        char h[64];
        int hl = snprintf(h, sizeof(h), "{\"alg\":\"%s\"}", algs[i]);
        const char *p = "{\"sub\":\"x\"}";
        char *t = tg_malloc(1024);
        size_t n = b64url((const unsigned char *) h, (size_t) hl, t);
        t[n++] = '.';
        n += b64url((const unsigned char *) p, strlen(p), t + n);
        t[n++] = '.';
        n += b64url(sig, sizes[i], t + n);
        t[n] = '\0';
        jwk_tokens[i] = t;
    }
}

static void jwk(const char *in, size_t inlen, int opt)
{
    char *copy = tg_strndup(in, inlen), *f[9] = { 0 };
    char *p = copy, *end = copy + inlen;
    for (int i = 0; i < 9 && p <= end; i++) {
        char *nul = memchr(p, '\0', (size_t) (end - p));
        f[i] = *p ? p : NULL; /* empty: absent */
        if (nul == NULL)
            break;
        p = nul + 1;
    }
    char err[256] = "";
    tg_jwt_key_t *k = tg_jwt_key_from_jwk(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7],
                                          f[8], err, sizeof(err));
    if (k == NULL) {
        FUZZ_CHECK(err[0] != '\0', "a JWK refused without a message");
    } else {
        int algs = tg_jwt_key_algs(k);
        FUZZ_CHECK(algs != 0 && (algs & ~0x1ff) == 0, "JWK key algs %x", algs);
        if (jwk_tokens[0] == NULL)
            jwk_tokens_make();
        tg_jwt_opts_t o = { 0 };
        if (opt & 1)
            o.algorithms = algs;
        for (int i = 0; i < 9; i++) {
            tg_jwt_result_t res;
            int reason = tg_jwt_verify(&k, 1, jwk_tokens[i], strlen(jwk_tokens[i]), &o, NOW, &res);
            FUZZ_CHECK(reason > TG_JWT_OK && reason <= TG_JWT_WRONG_ISSUER,
                       "reason %d for a token no JWK signed", reason);
        }
    }
    tg_jwt_key_free(k);
    free(copy);
}

static const char *const STD_HEADERS[4] = {
    NULL,
    "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"h\"}",
    "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"r\"}",
    "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"e\"}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int mode = data[0] & 7, opt = data[1];
    const char *in = (const char *) data + 2;
    size_t inlen = size - 2;

    if (mode == 4) {
        char err[256];
        tg_jwt_key_t *k = tg_jwt_key_new(in, inlen, (opt & 1) ? "kid" : NULL, err, sizeof(err));
        if (k) {
            int algs = tg_jwt_key_algs(k);
            FUZZ_CHECK(algs != 0 && (algs & ~0x1ff) == 0, "key algs %x", algs);
        } else {
            FUZZ_CHECK(err[0] != '\0', "no message for a refused key");
        }
        tg_jwt_key_free(k);
        return 0;
    }

    if (mode == 5) {
        jwk(in, inlen, opt);
        return 0;
    }

    char *tok;
    size_t len;
    signed_by_us = mode >= 1 && mode <= 3;
    if (signed_by_us) {
        const char *nul = memchr(in, '\0', inlen);
        if (nul)
            tok = mint(mode, in, (size_t) (nul - in), nul + 1, inlen - (size_t) (nul + 1 - in),
                       &len);
        else
            tok = mint(mode, STD_HEADERS[mode], strlen(STD_HEADERS[mode]), in, inlen, &len);
    } else {
        tok = tg_strndup(in, inlen);
        len = inlen;
    }

    tg_jwt_opts_t o = { 0 };
    if (opt & 1)
        o.audience = "api.test\0other\0";
    if (opt & 2)
        o.issuer = "https://issuer.test/\0";
    if (opt & 4)
        o.leeway = 30;
    if (opt & 8)
        o.algorithms = TG_JWT_HS256 | TG_JWT_RS256 | TG_JWT_ES256;
    if (opt & 16)
        o.algorithms = TG_JWT_HS512; /* none of the signatures made here */

    verify(&hmac_key, 1, tok, len, &o, TG_JWT_HS256 | TG_JWT_HS384 | TG_JWT_HS512);
    verify(&rsa_key, 1, tok, len, &o, TG_JWT_RS256 | TG_JWT_RS384 | TG_JWT_RS512);
    verify(&ec_key, 1, tok, len, &o, TG_JWT_ES256);
    /* a key set: the kid picks; the family check above does not apply */
    tg_jwt_result_t res;
    int reason = tg_jwt_verify(keyset, 3, tok, len, &o, NOW, &res);
    FUZZ_CHECK(reason >= TG_JWT_OK && reason <= TG_JWT_WRONG_ISSUER, "reason %d", reason);
    FUZZ_CHECK(reason != TG_JWT_OK || signed_by_us, "forged token verified against the set");
    free(tok);
    return 0;
}
