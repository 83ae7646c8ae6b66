/*
 * jwt.c: token verification against keys parsed once.
 *
 * Order of checks: shape, algorithm (against the key and the allowed
 * list), signature, then the time and audience/issuer claims, so nothing
 * about an unsigned token's claims influences the answer.
 */
#include <errno.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>

#include "jwt.h"

#define MAX_TOKEN 16384
/* {"alg":"none"}: the header under which each part is given to libjwt */
#define NONE_HEADER "eyJhbGciOiJub25lIn0."

struct tg_jwt_key {
    int algs;                   /* enum tg_jwt_alg bits this key verifies */
    EVP_PKEY *pkey;             /* RSA or EC public key; NULL for an HMAC secret */
    unsigned char *secret;      /* HMAC secret */
    size_t secret_len;
    int ec_bytes;               /* EC: bytes of r and of s in a signature */
    char *kid;                  /* key id, or NULL */
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

/* Per-process scratch: the NUL-terminated token for libjwt, and the
 * decoded payload handed back to Lua. */
static char *tokbuf;
static unsigned char *claimsbuf;
static size_t claimscap;
static EVP_MD_CTX *mdctx;

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

/* base64url without padding (RFC 7515); returns the length or -1. */
static ssize_t b64url_decode(const char *in, size_t n, unsigned char *out)
{
    static int8_t map[256];
    static int ready;
    if (!ready) {
        memset(map, -1, sizeof(map));
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (int i = 0; i < 64; i++)
            map[(unsigned char) a[i]] = (int8_t) i;
        ready = 1;
    }
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = map[(unsigned char) in[i]];
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t) v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char) (acc >> bits);
        }
    }
    /* leftover bits must be zero (canonical encoding) */
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return (ssize_t) o;
}

ssize_t tg_jwt_b64url_decode(const char *in, size_t n, unsigned char *out)
{
    return b64url_decode(in, n, out);
}

static const EVP_MD *digest_for(int alg)
{
    switch (alg) {
    case TG_JWT_HS256: case TG_JWT_RS256: case TG_JWT_ES256: return EVP_sha256();
    case TG_JWT_HS384: case TG_JWT_RS384: case TG_JWT_ES384: return EVP_sha384();
    default: return EVP_sha512();
    }
}

static int verify_hmac(const tg_jwt_key_t *k, int alg, const char *data, size_t dlen,
                       const unsigned char *sig, size_t slen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(digest_for(alg), k->secret, (int) k->secret_len, (const unsigned char *) data,
              dlen, mac, &maclen))
        return 0;
    return maclen == slen && CRYPTO_memcmp(mac, sig, slen) == 0;
}

static int verify_pkey(const tg_jwt_key_t *k, int alg, const char *data, size_t dlen,
                       const unsigned char *sig, size_t slen)
{
    unsigned char *der = NULL;
    int derlen = 0, ok = 0;

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
    if (mdctx == NULL)
        mdctx = EVP_MD_CTX_new();
    if (EVP_DigestVerifyInit(mdctx, NULL, digest_for(alg), NULL, k->pkey) == 1)
        ok = EVP_DigestVerify(mdctx, sig, slen, (const unsigned char *) data, dlen) == 1;
    EVP_MD_CTX_reset(mdctx);
    ERR_clear_error();
    OPENSSL_free(der);
    return ok;
}

/* A numeric claim: 1 and *out set, 0 when absent, -1 when not a number. */
static int num_claim(jwt_t *j, const char *name, double *out)
{
    char *js = jwt_get_grants_json(j, name);
    if (js == NULL)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(js, &end);
    int ok = end != js && *end == '\0' && errno == 0;
    free(js);
    if (!ok)
        return -1;
    *out = v;
    return 1;
}

/* Is JSON string (without quotes, raw) equal to one of the NUL-separated
 * list entries? Escapes other than \" \\ \/ never match. */
static int in_list(const char *list, const char *p, size_t n)
{
    for (const char *e = list; *e; e += strlen(e) + 1) {
        size_t i = 0, k = 0, el = strlen(e);
        int match = 1;
        while (i < n && match) {
            char c = p[i++];
            if (c == '\\' && i < n) {
                c = p[i++];
                if (c != '"' && c != '\\' && c != '/')
                    match = 0;
            }
            if (k >= el || e[k++] != c)
                match = 0;
        }
        if (match && k == el)
            return 1;
    }
    return 0;
}

/* aud/iss: a string, or (aud) an array of strings; one must be listed. */
static int claim_in(jwt_t *j, const char *name, const char *list, int allow_array)
{
    char *js = jwt_get_grants_json(j, name);
    int ok = 0;
    if (js == NULL)
        return 0;
    const char *p = js;
    while (*p == ' ')
        p++;
    if (*p == '[' && allow_array)
        p++;
    else if (*p != '"')
        goto out;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p != '"')
            break;
        const char *s = ++p;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1])
                p++;
            p++;
        }
        if (*p != '"')
            break;
        if (in_list(list, s, (size_t) (p - s))) {
            ok = 1;
            break;
        }
        p++;
    }
out:
    free(js);
    return ok;
}

/* ---- verify ----------------------------------------------------------------- */

int tg_jwt_verify(tg_jwt_key_t **keys, int nkeys, const char *token, size_t len,
                  const tg_jwt_opts_t *opts, double now, tg_jwt_result_t *out)
{
    jwt_t *j = NULL, *hj = NULL;
    const tg_jwt_key_t *key = NULL;
    unsigned char sig[1056];   /* RSA-8192: 1024 bytes */
    int reason;

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

    /* libjwt parses the JSON of both parts. Each is handed over as the
     * payload of an unsigned token, so that libjwt's own header rules
     * (it refuses a "typ" other than "JWT", an "alg" it does not know) do
     * not decide what this gateway accepts. */
    if (tokbuf == NULL)
        tokbuf = tg_malloc(MAX_TOKEN + 32);
    size_t hlen = (size_t) (d1 - token);
    /* strict base64url, a JSON object (libjwt's decoder is more lenient) */
    unsigned char head[1024];
    ssize_t hdec = hlen <= sizeof(head) * 4 / 3 ? b64url_decode(token, hlen, head) : -1;
    if (hdec < 2 || head[0] != '{')
        return out->reason = TG_JWT_MALFORMED;
    memcpy(tokbuf, NONE_HEADER, sizeof(NONE_HEADER) - 1);
    memcpy(tokbuf + sizeof(NONE_HEADER) - 1, token, hlen);
    memcpy(tokbuf + sizeof(NONE_HEADER) - 1 + hlen, ".", 2);
    if (jwt_decode(&hj, tokbuf, NULL, 0) != 0 || hj == NULL)
        return out->reason = TG_JWT_MALFORMED;
    size_t plen_b64 = (size_t) (d2 - (d1 + 1));
    memcpy(tokbuf + sizeof(NONE_HEADER) - 1, d1 + 1, plen_b64);
    memcpy(tokbuf + sizeof(NONE_HEADER) - 1 + plen_b64, ".", 2);
    if (jwt_decode(&j, tokbuf, NULL, 0) != 0 || j == NULL) {
        jwt_free(hj);
        return out->reason = TG_JWT_MALFORMED;
    }

    const char *algname = jwt_get_grant(hj, "alg");
    if (algname == NULL) { /* RFC 7515: alg is required */
        reason = TG_JWT_MALFORMED;
        goto done;
    }
    int alg = 0;
    for (size_t i = 0; algname && i < tg_nelem(ALGS); i++)
        if (strcmp(algname, ALGS[i].name) == 0)
            alg = ALGS[i].alg;
    out->alg = alg;
    if (alg == 0 || (opts->algorithms && !(opts->algorithms & alg))) {
        reason = TG_JWT_ALG_NOT_ALLOWED;
        goto done;
    }

    /* The candidate keys: those with the token's kid; when no key has it
     * (or the token has none), the keys without a kid (a lone key without
     * a kid serves every token), or every key for a token without a kid.
     * Candidates whose type fits the algorithm are tried in order (one,
     * unless a kid-less token meets a key set). */
    const char *kid = jwt_get_grant(hj, "kid");
    int by_kid = 0;
    for (int i = 0; kid && i < nkeys && !by_kid; i++)
        by_kid = keys[i]->kid && strcmp(keys[i]->kid, kid) == 0;
    int candidates = 0, fitting = 0;
    ssize_t slen = 0;
    size_t dlen = (size_t) (d2 - token);
    for (int i = 0; i < nkeys && key == NULL; i++) {
        const tg_jwt_key_t *k = keys[i];
        if (by_kid ? (k->kid == NULL || strcmp(k->kid, kid) != 0) : (kid && k->kid))
            continue;
        candidates++;
        /* The key decides the family: an RSA/EC public key is never used as
         * an HMAC secret, whatever the token's header says. */
        if (!(k->algs & alg))
            continue;
        if (fitting++ == 0) {
            slen = b64url_decode(d2 + 1, siglen_b64, sig);
            if (slen <= 0) {
                reason = TG_JWT_MALFORMED;
                goto done;
            }
        }
        if (k->pkey ? verify_pkey(k, alg, token, dlen, sig, (size_t) slen)
                    : verify_hmac(k, alg, token, dlen, sig, (size_t) slen))
            key = k;
    }
    if (key == NULL) {
        reason = candidates == 0 ? TG_JWT_NO_KEY
                 : fitting == 0  ? TG_JWT_ALG_NOT_ALLOWED
                                 : TG_JWT_BAD_SIGNATURE;
        goto done;
    }

    double exp = 0, nbf = 0;
    int has_exp = num_claim(j, "exp", &exp);
    int has_nbf = num_claim(j, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0) {
        reason = TG_JWT_MALFORMED;
        goto done;
    }
    if (has_exp && now >= exp + opts->leeway) { /* "on or after": RFC 7519 4.1.4 */
        reason = TG_JWT_EXPIRED;
        goto done;
    }
    if (has_nbf && now + opts->leeway < nbf) {
        reason = TG_JWT_NOT_YET_VALID;
        goto done;
    }
    if (opts->audience && *opts->audience && !claim_in(j, "aud", opts->audience, 1)) {
        reason = TG_JWT_WRONG_AUDIENCE;
        goto done;
    }
    if (opts->issuer && *opts->issuer && !claim_in(j, "iss", opts->issuer, 0)) {
        reason = TG_JWT_WRONG_ISSUER;
        goto done;
    }

    /* The claims, as the payload's JSON (an object). */
    size_t need = plen_b64 * 3 / 4 + 4;
    if (need > claimscap) {
        claimscap = need < 4096 ? 4096 : need;
        claimsbuf = tg_realloc(claimsbuf, claimscap);
    }
    ssize_t plen = b64url_decode(d1 + 1, plen_b64, claimsbuf);
    size_t first = 0;
    while (plen > 0 && first < (size_t) plen && strchr(" \t\r\n", claimsbuf[first]))
        first++;
    if (plen <= 0 || first >= (size_t) plen || claimsbuf[first] != '{') {
        reason = TG_JWT_MALFORMED;
        goto done;
    }
    out->claims = (const char *) claimsbuf;
    out->claims_len = (size_t) plen;
    out->exp = has_exp ? exp : 0;
    reason = TG_JWT_OK;

done:
    jwt_free(j);
    jwt_free(hj);
    return out->reason = reason;
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
