/*
 * jwt.c: token verification against keys parsed once.
 *
 * libjwt is not used: its jwt_decode parses each part with jansson into a
 * tree and checks its own header rules; that cost a fifth of a token's
 * verification. jsonscan.c validates the two JSON objects in one pass
 * and picks out alg/kid and exp/nbf/aud/iss; the claims go to Lua as
 * their JSON text. Signatures are verified with contexts each key keeps
 * (OpenSSL 3 fetches the algorithm on every EVP_DigestVerifyInit).
 *
 * Order of checks: shape, algorithm (against the key and the allowed
 * list), signature, then the time and audience/issuer claims, so nothing
 * about an unsigned token's claims influences the answer.
 */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>

#include "jsonscan.h"
#include "jwt.h"

#define MAX_TOKEN 16384

struct tg_jwt_key {
    int algs;                   /* enum tg_jwt_alg bits this key verifies */
    EVP_PKEY *pkey;             /* RSA or EC public key; NULL for an HMAC secret */
    unsigned char *secret;      /* HMAC secret */
    size_t secret_len;
    int ec_bytes;               /* EC: bytes of r and of s in a signature */
    char *kid;                  /* key id, or NULL */
    /* Made on first use, per digest (SHA-256/384/512) and kept with the key:
     * OpenSSL 3's EVP_DigestVerifyInit and HMAC() fetch the algorithm from
     * the provider store (locks, hash lookups) on every call, which costs
     * as much as the RSA verification itself. */
    EVP_PKEY_CTX *vctx[3];      /* RSA/EC: verify_init'd, padding and digest set */
    EVP_MAC_CTX *mctx[3];       /* HMAC: the digest set; keyed again per token */
};

static const struct {
    const char *name;
    int alg;
} ALGS[] = {
    { "HS256", TG_JWT_HS256 }, { "HS384", TG_JWT_HS384 }, { "HS512", TG_JWT_HS512 },
    { "RS256", TG_JWT_RS256 }, { "RS384", TG_JWT_RS384 }, { "RS512", TG_JWT_RS512 },
    { "ES256", TG_JWT_ES256 }, { "ES384", TG_JWT_ES384 }, { "ES512", TG_JWT_ES512 },
};

#define HS_ALL (TG_JWT_HS256 | TG_JWT_HS384 | TG_JWT_HS512)
#define RS_ALL (TG_JWT_RS256 | TG_JWT_RS384 | TG_JWT_RS512)

/* Per-process scratch: the decoded payload handed back to Lua. */
static unsigned char *claimsbuf;
static size_t claimscap;
static EVP_MAC *hmac;

/* ---- keys ----------------------------------------------------------------- */

static void key_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "";
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", detail);
}

/* Takes pkey over (freed when refused): its algorithms by type and curve. */
tg_jwt_key_t *tg_jwt_key_from_pkey(EVP_PKEY *pkey, const char *kid, char *err, size_t errlen)
{
    tg_jwt_key_t *k = tg_calloc(1, sizeof(*k));

    if (kid)
        k->kid = tg_strndup(kid, strlen(kid));
    k->pkey = pkey;
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        k->algs = RS_ALL;
        break;
    case EVP_PKEY_EC: {
        /* by curve, not size: secp256k1 is 256 bits but not ES256's */
        char curve[64] = "";
        size_t clen = 0;
        EVP_PKEY_get_group_name(pkey, curve, sizeof(curve), &clen);
        if (strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0) {
            k->algs = TG_JWT_ES256;
            k->ec_bytes = 32;
        } else if (strcmp(curve, "secp384r1") == 0 || strcmp(curve, "P-384") == 0) {
            k->algs = TG_JWT_ES384;
            k->ec_bytes = 48;
        } else if (strcmp(curve, "secp521r1") == 0 || strcmp(curve, "P-521") == 0) {
            k->algs = TG_JWT_ES512;
            k->ec_bytes = 66;
        } else {
            snprintf(err, errlen, "EC key on curve %s: JWT uses P-256, P-384 and P-521",
                     curve[0] ? curve : "(unknown)");
            tg_jwt_key_free(k);
            return NULL;
        }
        break;
    }
    default:
        snprintf(err, errlen, "unsupported key type (RSA and EC keys are)");
        tg_jwt_key_free(k);
        return NULL;
    }
    return k;
}

tg_jwt_key_t *tg_jwt_key_from_secret(const void *secret, size_t len, const char *kid)
{
    tg_jwt_key_t *k = tg_calloc(1, sizeof(*k));

    if (kid)
        k->kid = tg_strndup(kid, strlen(kid));
    k->secret = (unsigned char *) tg_strndup(secret, len);
    k->secret_len = len;
    k->algs = HS_ALL;
    return k;
}

int tg_jwt_key_restrict(tg_jwt_key_t *k, int algs)
{
    k->algs &= algs;
    return k->algs;
}

int tg_jwt_alg_bit(const char *name)
{
    for (size_t i = 0; i < tg_nelem(ALGS); i++)
        if (strcmp(name, ALGS[i].name) == 0)
            return ALGS[i].alg;
    return 0;
}

tg_jwt_key_t *tg_jwt_key_new(const char *material, size_t len, const char *kid, char *err,
                             size_t errlen)
{
    if (len >= 11 && memmem(material, len, "-----BEGIN ", 11)) {
        BIO *bio = BIO_new_mem_buf(material, (int) len);
        EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        if (pkey == NULL) {
            /* A certificate: its public key. */
            BIO_reset(bio);
            ERR_clear_error();
            X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
            if (x) {
                pkey = X509_get_pubkey(x);
                X509_free(x);
            }
        }
        if (pkey == NULL) {
            /* A private key works for verifying too (its public half). */
            BIO_reset(bio);
            ERR_clear_error();
            pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        }
        BIO_free(bio);
        if (pkey == NULL) {
            key_error(err, errlen, "not a PEM public key, certificate or private key");
            return NULL;
        }
        return tg_jwt_key_from_pkey(pkey, kid, err, errlen);
    }
    if (len == 0) {
        snprintf(err, errlen, "empty secret");
        return NULL;
    }
    return tg_jwt_key_from_secret(material, len, kid);
}

void tg_jwt_key_free(tg_jwt_key_t *k)
{
    if (k == NULL)
        return;
    for (int i = 0; i < 3; i++) {
        EVP_PKEY_CTX_free(k->vctx[i]);
        EVP_MAC_CTX_free(k->mctx[i]);
    }
    EVP_PKEY_free(k->pkey);
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    free(k->kid);
    free(k);
}

int tg_jwt_key_algs(const tg_jwt_key_t *k)
{
    return k->algs;
}

/* ---- helpers --------------------------------------------------------------- */

/* base64url digit values; 255: not a base64url character. */
static const uint8_t B64URL[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,  62, 255, 255,
     52,  53,  54,  55,  56,  57,  58,  59,  60,  61, 255, 255, 255, 255, 255, 255,
    255,   0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,
     15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25, 255, 255, 255, 255,  63,
    255,  26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,
     41,  42,  43,  44,  45,  46,  47,  48,  49,  50,  51, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
};

/* base64url without padding (RFC 7515); returns the length or -1. Four
 * characters (three bytes) at a time: one OR of the four digit values
 * tells whether any of them was invalid. */
static ssize_t b64url_decode(const char *in, size_t n, unsigned char *out)
{
    const unsigned char *p = (const unsigned char *) in;
    size_t i = 0, o = 0;

    if (n % 4 == 1)
        return -1;
    for (; i + 4 <= n; i += 4) {
        uint32_t a = B64URL[p[i]], b = B64URL[p[i + 1]], c = B64URL[p[i + 2]],
                 d = B64URL[p[i + 3]];
        if ((a | b | c | d) & 0x80)
            return -1;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        out[o] = (unsigned char) (v >> 16);
        out[o + 1] = (unsigned char) (v >> 8);
        out[o + 2] = (unsigned char) v;
        o += 3;
    }
    if (i < n) {
        /* two or three characters left: one or two bytes, and the bits
         * past them must be zero (canonical encoding) */
        uint32_t a = B64URL[p[i]], b = B64URL[p[i + 1]], c = n - i == 3 ? B64URL[p[i + 2]] : 0;
        if ((a | b | c) & 0x80)
            return -1;
        uint32_t v = a << 18 | b << 12 | c << 6;
        out[o++] = (unsigned char) (v >> 16);
        if (n - i == 3)
            out[o++] = (unsigned char) (v >> 8);
        if (v & (n - i == 3 ? 0xffu : 0xffffu))
            return -1;
    }
    return (ssize_t) o;
}

ssize_t tg_jwt_b64url_decode(const char *in, size_t n, unsigned char *out)
{
    return b64url_decode(in, n, out);
}

/* The digest of an algorithm: 0 SHA-256, 1 SHA-384, 2 SHA-512. */
static int digest_index(int alg)
{
    switch (alg) {
    case TG_JWT_HS256: case TG_JWT_RS256: case TG_JWT_ES256: return 0;
    case TG_JWT_HS384: case TG_JWT_RS384: case TG_JWT_ES384: return 1;
    default: return 2;
    }
}

static const char *const DIGEST_NAMES[3] = { "SHA256", "SHA384", "SHA512" };

/* The data's digest with the low-level one-shot functions (no provider
 * fetch); returns its length. */
static size_t digest(int di, const char *data, size_t dlen, unsigned char *md)
{
    const unsigned char *d = (const unsigned char *) data;
    switch (di) {
    case 0: SHA256(d, dlen, md); return SHA256_DIGEST_LENGTH;
    case 1: SHA384(d, dlen, md); return SHA384_DIGEST_LENGTH;
    default: SHA512(d, dlen, md); return SHA512_DIGEST_LENGTH;
    }
}

static int verify_hmac(tg_jwt_key_t *k, int alg, const char *data, size_t dlen,
                       const unsigned char *sig, size_t slen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    int di = digest_index(alg), ok = 0;

    if (k->mctx[di] == NULL) {
        if (hmac == NULL && (hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
            goto out;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string("digest", (char *) DIGEST_NAMES[di], 0),
            OSSL_PARAM_construct_end(),
        };
        EVP_MAC_CTX *m = EVP_MAC_CTX_new(hmac);
        if (m == NULL || !EVP_MAC_CTX_set_params(m, params)) {
            EVP_MAC_CTX_free(m);
            goto out;
        }
        k->mctx[di] = m;
    }
    /* the same context for every token: init with the key starts over */
    EVP_MAC_CTX *m = k->mctx[di];
    ok = EVP_MAC_init(m, k->secret, k->secret_len, NULL) &&
         EVP_MAC_update(m, (const unsigned char *) data, dlen) &&
         EVP_MAC_final(m, mac, &maclen, sizeof(mac)) && maclen == slen &&
         CRYPTO_memcmp(mac, sig, slen) == 0;
out:
    ERR_clear_error();
    return ok;
}

/* The key's verification context for a digest, made once: the same
 * EVP_PKEY_CTX verifies any number of signatures. */
static EVP_PKEY_CTX *verify_ctx(tg_jwt_key_t *k, int di)
{
    if (k->vctx[di])
        return k->vctx[di];
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    EVP_MD *md = EVP_MD_fetch(NULL, DIGEST_NAMES[di], NULL);
    int ok = c && md && EVP_PKEY_verify_init(c) == 1 &&
             (EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_RSA ||
              EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1) &&
             EVP_PKEY_CTX_set_signature_md(c, md) == 1;
    EVP_MD_free(md);
    if (!ok) {
        EVP_PKEY_CTX_free(c);
        return NULL;
    }
    return k->vctx[di] = c;
}

static int verify_pkey(tg_jwt_key_t *k, int alg, const char *data, size_t dlen,
                       const unsigned char *sig, size_t slen)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    int derlen = 0, ok = 0, di = digest_index(alg);

    if (alg & (TG_JWT_ES256 | TG_JWT_ES384 | TG_JWT_ES512)) {
        /* JWS carries r || s; OpenSSL verifies DER. */
        if (slen != (size_t) (2 * k->ec_bytes))
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, k->ec_bytes, NULL);
        BIGNUM *s = BN_bin2bn(sig + k->ec_bytes, k->ec_bytes, NULL);
        if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return 0;
        }
        derlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (derlen <= 0)
            return 0;
        sig = der;
        slen = (size_t) derlen;
    }
    EVP_PKEY_CTX *c = verify_ctx(k, di);
    if (c) {
        size_t mdlen = digest(di, data, dlen, md);
        ok = EVP_PKEY_verify(c, sig, slen, md, mdlen) == 1;
    }
    ERR_clear_error();
    OPENSSL_free(der);
    return ok;
}

/* A numeric claim: 1 and *out set, 0 when absent, -1 when not a number. */
static int num_claim(const tg_json_member_t *m, double *out)
{
    char buf[64];
    if (m->type == TG_JSON_NONE)
        return 0;
    if (m->type != TG_JSON_NUMBER || m->len >= sizeof(buf))
        return -1;
    memcpy(buf, m->raw, m->len);
    buf[m->len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + m->len || errno != 0)
        return -1;
    *out = v;
    return 1;
}

/* Is the string (raw, escaped) one of the NUL-separated list's entries? */
static int in_list(const char *list, const char *raw, size_t len)
{
    char buf[1024];
    ssize_t n = tg_json_unescape(raw, len, buf, sizeof(buf));
    if (n < 0)
        return 0;
    for (const char *e = list; *e; e += strlen(e) + 1)
        if (strlen(e) == (size_t) n && memcmp(e, buf, (size_t) n) == 0)
            return 1;
    return 0;
}

/* aud/iss: a string, or (aud) an array of strings; one must be listed. */
static int claim_in(const tg_json_member_t *m, const char *list, int allow_array)
{
    if (m->type == TG_JSON_STRING)
        return in_list(list, m->raw, m->len);
    if (m->type != TG_JSON_ARRAY || !allow_array)
        return 0;
    size_t pos = 0, elen;
    int type;
    const char *elem;
    while (tg_json_array_next(m->raw, m->len, &pos, &type, &elem, &elen))
        if (type == TG_JSON_STRING && in_list(list, elem, elen))
            return 1;
    return 0;
}

/* ---- verify ----------------------------------------------------------------- */

enum { H_ALG, H_KID, H_CRIT, H_N };
enum { C_EXP, C_NBF, C_AUD, C_ISS, C_N };

int tg_jwt_verify(tg_jwt_key_t **keys, int nkeys, const char *token, size_t len,
                  const tg_jwt_opts_t *opts, double now, tg_jwt_result_t *out)
{
    tg_jwt_key_t *key = NULL;
    unsigned char sig[1056];   /* RSA-8192: 1024 bytes */
    unsigned char head[1024];
    char algname[16], kid[256];
    tg_json_member_t hm[H_N] = { [H_ALG] = { .name = "alg" }, [H_KID] = { .name = "kid" },
                                 [H_CRIT] = { .name = "crit" } };
    tg_json_member_t cm[C_N] = { [C_EXP] = { .name = "exp" }, [C_NBF] = { .name = "nbf" },
                                 [C_AUD] = { .name = "aud" }, [C_ISS] = { .name = "iss" } };

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > MAX_TOKEN)
        return out->reason = TG_JWT_MALFORMED;
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t) (d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || d1 == token || d2 == d1 + 1 ||
        memchr(d2 + 1, '.', len - (size_t) (d2 + 1 - token)))
        return out->reason = TG_JWT_MALFORMED;
    size_t siglen_b64 = len - (size_t) (d2 + 1 - token);
    if (siglen_b64 == 0) /* alg "none" carries no signature: never accepted */
        return out->reason = TG_JWT_ALG_NOT_ALLOWED;
    if (siglen_b64 > (sizeof(sig) * 4 + 2) / 3)
        return out->reason = TG_JWT_BAD_SIGNATURE;

    /* Both parts: strict base64url of a JSON object (jsonscan.c validates
     * the whole text and picks out the members checked here). */
    size_t hlen = (size_t) (d1 - token);
    ssize_t hdec = hlen <= sizeof(head) * 4 / 3 ? b64url_decode(token, hlen, head) : -1;
    if (hdec < 2 || tg_json_scan_object((const char *) head, (size_t) hdec, hm, H_N) < 0)
        return out->reason = TG_JWT_MALFORMED;
    size_t plen_b64 = (size_t) (d2 - (d1 + 1));
    size_t need = plen_b64 * 3 / 4 + 4;
    if (need > claimscap) {
        claimscap = need < 4096 ? 4096 : need;
        claimsbuf = tg_realloc(claimsbuf, claimscap);
    }
    ssize_t plen = b64url_decode(d1 + 1, plen_b64, claimsbuf);
    if (plen < 2 || tg_json_scan_object((const char *) claimsbuf, (size_t) plen, cm, C_N) < 0)
        return out->reason = TG_JWT_MALFORMED;

    /* RFC 7515 4.1.11: "crit" names extensions the recipient must
     * understand; this verifier implements none (e.g. RFC 7797's unencoded
     * payload), so such a token cannot be verified as meant. */
    if (hm[H_CRIT].type != TG_JSON_NONE)
        return out->reason = TG_JWT_MALFORMED;
    /* RFC 7515: alg is required, a string */
    ssize_t an = hm[H_ALG].type == TG_JSON_STRING
                     ? tg_json_unescape(hm[H_ALG].raw, hm[H_ALG].len, algname, sizeof(algname) - 1)
                     : -1;
    if (an < 0)
        return out->reason = TG_JWT_MALFORMED;
    algname[an] = '\0';
    int alg = memchr(algname, '\0', (size_t) an) ? 0 : tg_jwt_alg_bit(algname);
    out->alg = alg;
    if (alg == 0 || (opts->algorithms && !(opts->algorithms & alg)))
        return out->reason = TG_JWT_ALG_NOT_ALLOWED;

    /* The candidate keys: those with the token's kid; when no key has it
     * (or the token has none), the keys without a kid (a lone key without
     * a kid serves every token), or every key for a token without a kid.
     * Candidates whose type fits the algorithm are tried in order (one,
     * unless a kid-less token meets a key set). A kid that is not a string
     * (or has a NUL, or is too long for any key) is no kid. */
    const char *kidp = NULL;
    if (hm[H_KID].type == TG_JSON_STRING) {
        ssize_t kn = tg_json_unescape(hm[H_KID].raw, hm[H_KID].len, kid, sizeof(kid) - 1);
        if (kn >= 0 && memchr(kid, '\0', (size_t) kn) == NULL) {
            kid[kn] = '\0';
            kidp = kid;
        }
    }
    int by_kid = 0;
    for (int i = 0; kidp && i < nkeys && !by_kid; i++)
        by_kid = keys[i]->kid && strcmp(keys[i]->kid, kidp) == 0;
    int candidates = 0, fitting = 0;
    ssize_t slen = 0;
    size_t dlen = (size_t) (d2 - token);
    for (int i = 0; i < nkeys && key == NULL; i++) {
        tg_jwt_key_t *k = keys[i];
        if (by_kid ? (k->kid == NULL || strcmp(k->kid, kidp) != 0) : (kidp && k->kid))
            continue;
        candidates++;
        /* The key decides the family: an RSA/EC public key is never used as
         * an HMAC secret, whatever the token's header says. */
        if (!(k->algs & alg))
            continue;
        if (fitting++ == 0) {
            slen = b64url_decode(d2 + 1, siglen_b64, sig);
            if (slen <= 0)
                return out->reason = TG_JWT_MALFORMED;
        }
        if (k->pkey ? verify_pkey(k, alg, token, dlen, sig, (size_t) slen)
                    : verify_hmac(k, alg, token, dlen, sig, (size_t) slen))
            key = k;
    }
    if (key == NULL)
        return out->reason = candidates == 0 ? TG_JWT_NO_KEY
                             : fitting == 0  ? TG_JWT_ALG_NOT_ALLOWED
                                             : TG_JWT_BAD_SIGNATURE;

    double exp = 0, nbf = 0;
    int has_exp = num_claim(&cm[C_EXP], &exp);
    int has_nbf = num_claim(&cm[C_NBF], &nbf);
    if (has_exp < 0 || has_nbf < 0)
        return out->reason = TG_JWT_MALFORMED;
    if (has_exp && now >= exp + opts->leeway) /* "on or after": RFC 7519 4.1.4 */
        return out->reason = TG_JWT_EXPIRED;
    if (has_nbf && now + opts->leeway < nbf)
        return out->reason = TG_JWT_NOT_YET_VALID;
    if (opts->audience && *opts->audience && !claim_in(&cm[C_AUD], opts->audience, 1))
        return out->reason = TG_JWT_WRONG_AUDIENCE;
    if (opts->issuer && *opts->issuer && !claim_in(&cm[C_ISS], opts->issuer, 0))
        return out->reason = TG_JWT_WRONG_ISSUER;

    /* The claims, as the payload's JSON (an object). */
    out->claims = (const char *) claimsbuf;
    out->claims_len = (size_t) plen;
    out->exp = has_exp ? exp : 0;
    return out->reason = TG_JWT_OK;
}

const char *tg_jwt_reason_text(int reason)
{
    switch (reason) {
    case TG_JWT_OK: return "ok";
    case TG_JWT_MALFORMED: return "malformed token";
    case TG_JWT_ALG_NOT_ALLOWED: return "algorithm not allowed";
    case TG_JWT_NO_KEY: return "no key for this token";
    case TG_JWT_BAD_SIGNATURE: return "bad signature";
    case TG_JWT_EXPIRED: return "token expired";
    case TG_JWT_NOT_YET_VALID: return "token not yet valid";
    case TG_JWT_WRONG_AUDIENCE: return "wrong audience";
    case TG_JWT_WRONG_ISSUER: return "wrong issuer";
    default: return "unknown";
    }
}
