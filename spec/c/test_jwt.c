/*
 * Unit test for runtime/jwt.c and runtime/jwk.c: keys (tg_jwt_key_new,
 * tg_jwt_key_from_jwk) and verification (tg_jwt_verify, also against key
 * sets) with tokens minted here with OpenSSL, including the bad ones. The implementation is included so its statics are reachable.
 * Output is TAP-like ("ok N - ..."); the exit status is non-zero if any
 * case failed. Built by `make check-c` with ASan/UBSan (LeakSanitizer runs
 * at exit, so keys and results must not leak).
 *
 * Build and run by hand (from the repository root):
 *   make build/spec/test_jwt && build/spec/test_jwt
 */

#include <openssl/hmac.h>

#include "../../runtime/jwt.c"
#include "../../runtime/jsonscan.c"
#include "../../runtime/jwk.c"
#include "../../runtime/core.c"

#include <openssl/encoder.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>

/* ---- a tiny TAP harness ---------------------------------------------------- */

static int count, failures;
static const char *current;
static char diag[8192];
static size_t diaglen;

static void begin(const char *desc)
{
    current = desc;
    diag[0] = '\0';
    diaglen = 0;
}

static void note(const char *fmt, ...)
{
    va_list ap;
    if (diaglen >= sizeof(diag) - 2)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(diag + diaglen, sizeof(diag) - diaglen, fmt, ap);
    va_end(ap);
    if (n > 0)
        diaglen += (size_t) n;
    if (diaglen >= sizeof(diag))
        diaglen = sizeof(diag) - 1;
}

static void end(void)
{
    count++;
    printf("%s %d - %s\n", diaglen ? "not ok" : "ok", count, current);
    if (diaglen) {
        failures++;
        fputs(diag, stdout);
    }
    fflush(stdout);
}

#define EXPECT(c)                                                           \
    do {                                                                    \
        if (!(c))                                                           \
            note("#   %s:%d: expected %s\n", __FILE__, __LINE__, #c);       \
    } while (0)

static const char *rname(int r)
{
    static const char *names[] = { "OK", "MALFORMED", "ALG_NOT_ALLOWED", "NO_KEY",
                                   "BAD_SIGNATURE", "EXPIRED", "NOT_YET_VALID",
                                   "WRONG_AUDIENCE", "WRONG_ISSUER" };
    return r >= 0 && r < (int) tg_nelem(names) ? names[r] : "?";
}

#define EXPECT_REASON(got, want, what)                                              \
    do {                                                                            \
        int g_ = (got), w_ = (want);                                                \
        if (g_ != w_)                                                               \
            note("#   %s:%d: %s: got %s, want %s\n", __FILE__, __LINE__, (what),      \
                 rname(g_), rname(w_));                                              \
    } while (0)

/* ---- minting ----------------------------------------------------------------- */

#define NOW 1700000000.0

static char *b64url(const unsigned char *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = tg_malloc(n * 4 / 3 + 4), *o = out;
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
    *o = '\0';
    return out;
}

static char *b64s(const char *s)
{
    return b64url((const unsigned char *) s, strlen(s));
}

static const char *alg_name(int alg)
{
    for (size_t i = 0; i < tg_nelem(ALGS); i++)
        if (ALGS[i].alg == alg)
            return ALGS[i].name;
    return "none";
}

/* Tokens are kept in a pool freed at exit, so cases can use them inline. */
static char *pool[4096];
static int npool;

static char *keep(char *s)
{
    if (npool < (int) tg_nelem(pool))
        pool[npool++] = s;
    return s;
}

static char *concat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = tg_malloc(la + lb + lc + 3);
    memcpy(s, a, la);
    s[la] = '.';
    memcpy(s + la + 1, b, lb);
    s[la + 1 + lb] = '.';
    memcpy(s + la + lb + 2, c, lc);
    s[la + lb + lc + 2] = '\0';
    return s;
}

/* Signs header.payload: HMAC with `secret` (slen bytes) when pkey is NULL,
 * else RSA/ECDSA with pkey. ES signatures become JOSE r || s unless der. */
static unsigned char *raw_sign(int alg, const char *input, const char *secret, size_t slen,
                               EVP_PKEY *pkey, int der, size_t *siglen)
{
    static const EVP_MD *(*const mds[3])(void) = { EVP_sha256, EVP_sha384, EVP_sha512 };
    const EVP_MD *md = mds[digest_index(alg)]();
    unsigned char *sig;
    if (pkey == NULL) {
        unsigned int n = 0;
        sig = tg_malloc(EVP_MAX_MD_SIZE);
        HMAC(md, secret, (int) slen, (const unsigned char *) input, strlen(input), sig, &n);
        *siglen = n;
        return sig;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t n = 0;
    if (EVP_DigestSignInit(ctx, NULL, md, NULL, pkey) != 1 ||
        EVP_DigestSign(ctx, NULL, &n, (const unsigned char *) input, strlen(input)) != 1) {
        fprintf(stderr, "sign init failed\n");
        abort();
    }
    sig = tg_malloc(n);
    if (EVP_DigestSign(ctx, sig, &n, (const unsigned char *) input, strlen(input)) != 1) {
        fprintf(stderr, "sign failed\n");
        abort();
    }
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC && !der) {
        int bytes = (EVP_PKEY_get_bits(pkey) + 7) / 8;
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long) n);
        const BIGNUM *r, *s;
        ECDSA_SIG_get0(es, &r, &s);
        unsigned char *jose = tg_malloc((size_t) bytes * 2);
        BN_bn2binpad(r, jose, bytes);
        BN_bn2binpad(s, jose + bytes, bytes);
        ECDSA_SIG_free(es);
        free(sig);
        sig = jose;
        n = (size_t) bytes * 2;
    }
    *siglen = n;
    return sig;
}

/* A token from header and payload JSON. */
static char *mint_ex(const char *header, const char *payload, int alg, const char *secret,
                     size_t slen, EVP_PKEY *pkey, int der)
{
    char *h = b64s(header), *p = b64s(payload);
    size_t il = strlen(h) + strlen(p) + 2;
    char *input = tg_malloc(il);
    snprintf(input, il, "%s.%s", h, p);
    size_t siglen;
    unsigned char *sig = raw_sign(alg, input, secret, slen, pkey, der, &siglen);
    char *s = b64url(sig, siglen);
    char *tok = concat3(h, p, s);
    free(h);
    free(p);
    free(s);
    free(sig);
    free(input);
    return keep(tok);
}

static char hdrbuf[256];

static const char *std_header(int alg)
{
    snprintf(hdrbuf, sizeof(hdrbuf), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg_name(alg));
    return hdrbuf;
}

static char *mint_hs(int alg, const char *secret, const char *payload)
{
    return mint_ex(std_header(alg), payload, alg, secret, strlen(secret), NULL, 0);
}

static char *mint_pk(int alg, EVP_PKEY *pkey, const char *payload)
{
    return mint_ex(std_header(alg), payload, alg, NULL, 0, pkey, 0);
}

/* header.payload with a given raw signature part (already base64url). */
static char *mint_raw(const char *header, const char *payload, const char *sig_b64)
{
    char *h = b64s(header), *p = b64s(payload);
    char *tok = concat3(h, p, sig_b64);
    free(h);
    free(p);
    return keep(tok);
}

/* ---- keys --------------------------------------------------------------------- */

typedef struct tkey {
    EVP_PKEY *pkey;
    char *pub_pem, *priv_pem, *cert_pem, *pkcs1_pem;
} tkey_t;

static char *bio_text(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = tg_strndup(n > 0 ? data : "", n > 0 ? (size_t) n : 0);
    BIO_free(b);
    return s;
}

static void key_pems(tkey_t *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k->pkey);
    k->pub_pem = bio_text(b);

    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL);
    k->priv_pem = bio_text(b);

    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k->pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *) "test", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509_sign(x, k->pkey, EVP_PKEY_get_base_id(k->pkey) == EVP_PKEY_ED25519 ? NULL : EVP_sha256());
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    k->cert_pem = bio_text(b);
    X509_free(x);

    if (EVP_PKEY_get_base_id(k->pkey) == EVP_PKEY_RSA) {
        /* PKCS#1 "BEGIN RSA PUBLIC KEY", as openssl rsa -RSAPublicKey_out writes */
        OSSL_ENCODER_CTX *ec = OSSL_ENCODER_CTX_new_for_pkey(k->pkey, EVP_PKEY_PUBLIC_KEY, "PEM",
                                                             "type-specific", NULL);
        unsigned char *out = NULL;
        size_t outlen = 0;
        if (ec && OSSL_ENCODER_to_data(ec, &out, &outlen) == 1) {
            k->pkcs1_pem = tg_strndup((const char *) out, outlen);
            OPENSSL_free(out);
        }
        OSSL_ENCODER_CTX_free(ec);
    }
}

static void key_rsa(tkey_t *k, size_t bits, int primes)
{
    memset(k, 0, sizeof(*k));
    if (primes <= 2) {
        k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
    } else {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        EVP_PKEY_keygen_init(ctx);
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int) bits);
        EVP_PKEY_CTX_set_rsa_keygen_primes(ctx, primes);
        EVP_PKEY_keygen(ctx, &k->pkey);
        EVP_PKEY_CTX_free(ctx);
    }
    if (k->pkey == NULL) {
        fprintf(stderr, "RSA keygen failed\n");
        abort();
    }
    key_pems(k);
}

static void key_ec(tkey_t *k, const char *curve)
{
    memset(k, 0, sizeof(*k));
    k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    if (k->pkey == NULL) {
        fprintf(stderr, "EC keygen (%s) failed\n", curve);
        abort();
    }
    key_pems(k);
}

static void key_other(tkey_t *k, const char *type)
{
    memset(k, 0, sizeof(*k));
    k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, type);
    if (k->pkey == NULL) {
        fprintf(stderr, "%s keygen failed\n", type);
        abort();
    }
    key_pems(k);
}

static void tkey_free(tkey_t *k)
{
    EVP_PKEY_free(k->pkey);
    free(k->pub_pem);
    free(k->priv_pem);
    free(k->cert_pem);
    free(k->pkcs1_pem);
}

static tg_jwt_key_t *load(const char *material, char *err)
{
    err[0] = '\0';
    return tg_jwt_key_new(material, strlen(material), NULL, err, 256);
}

static tkey_t rsa, rsa2, ec256, ec384, ec521;

/* verify against one key with options (or defaults) at NOW. */
static tg_jwt_result_t res;

static int verify_with(tg_jwt_key_t *k, const char *tok, const tg_jwt_opts_t *o, double now)
{
    tg_jwt_opts_t none = { 0 };
    return tg_jwt_verify(&k, 1, tok, strlen(tok), o ? o : &none, now, &res);
}

static int verify(tg_jwt_key_t *k, const char *tok)
{
    return verify_with(k, tok, NULL, NOW);
}

#define PAYLOAD "{\"sub\":\"alice\",\"exp\":1700000100,\"scope\":\"read\"}"

/* ---- cases: keys ---------------------------------------------------------------- */

static void case_key_secret(void)
{
    char err[256];
    begin("key_new: anything that is not PEM is an HMAC secret (HS256/384/512), kid kept");
    tg_jwt_key_t *k = tg_jwt_key_new("s3cret", 6, "k1", err, sizeof(err));
    EXPECT(k != NULL);
    if (k) {
        EXPECT(tg_jwt_key_algs(k) == (TG_JWT_HS256 | TG_JWT_HS384 | TG_JWT_HS512));
        EXPECT(k->kid && strcmp(k->kid, "k1") == 0);
        EXPECT(k->pkey == NULL && k->secret_len == 6);
    }
    tg_jwt_key_free(k);
    end();

    begin("key_new: an empty secret is refused with a message");
    k = tg_jwt_key_new("", 0, NULL, err, sizeof(err));
    EXPECT(k == NULL);
    EXPECT(strstr(err, "empty") != NULL);
    tg_jwt_key_free(k);
    end();

    begin("key_new: a secret with a NUL byte is used whole (length, not strlen)");
    k = tg_jwt_key_new("a\0b", 3, NULL, err, sizeof(err));
    EXPECT(k != NULL);
    if (k) {
        char *good = mint_ex(std_header(TG_JWT_HS256), PAYLOAD, TG_JWT_HS256, "a\0b", 3, NULL, 0);
        char *bad = mint_ex(std_header(TG_JWT_HS256), PAYLOAD, TG_JWT_HS256, "a", 1, NULL, 0);
        EXPECT_REASON(verify(k, good), TG_JWT_OK, "signed with a\\0b");
        EXPECT_REASON(verify(k, bad), TG_JWT_BAD_SIGNATURE, "signed with a");
    }
    tg_jwt_key_free(k);
    end();

    begin("key_free(NULL) is a no-op");
    tg_jwt_key_free(NULL);
    end();
}

static void case_key_pem(void)
{
    char err[256];
    struct {
        const char *desc;
        const char *pem;
        int algs;
        EVP_PKEY *signer;
        int alg;
    } cases[] = {
        { "RSA public key PEM", rsa.pub_pem, TG_JWT_RS256 | TG_JWT_RS384 | TG_JWT_RS512,
          rsa.pkey, TG_JWT_RS256 },
        { "RSA certificate", rsa.cert_pem, TG_JWT_RS256 | TG_JWT_RS384 | TG_JWT_RS512, rsa.pkey,
          TG_JWT_RS384 },
        { "RSA private key (its public half)", rsa.priv_pem,
          TG_JWT_RS256 | TG_JWT_RS384 | TG_JWT_RS512, rsa.pkey, TG_JWT_RS512 },
        { "RSA PKCS#1 public key (BEGIN RSA PUBLIC KEY)", rsa.pkcs1_pem,
          TG_JWT_RS256 | TG_JWT_RS384 | TG_JWT_RS512, rsa.pkey, TG_JWT_RS256 },
        { "EC P-256 public key", ec256.pub_pem, TG_JWT_ES256, ec256.pkey, TG_JWT_ES256 },
        { "EC P-384 public key", ec384.pub_pem, TG_JWT_ES384, ec384.pkey, TG_JWT_ES384 },
        { "EC P-521 public key", ec521.pub_pem, TG_JWT_ES512, ec521.pkey, TG_JWT_ES512 },
        { "EC P-256 certificate", ec256.cert_pem, TG_JWT_ES256, ec256.pkey, TG_JWT_ES256 },
        { "EC P-521 certificate", ec521.cert_pem, TG_JWT_ES512, ec521.pkey, TG_JWT_ES512 },
        { "EC P-384 private key", ec384.priv_pem, TG_JWT_ES384, ec384.pkey, TG_JWT_ES384 },
    };
    for (size_t i = 0; i < tg_nelem(cases); i++) {
        char desc[200];
        snprintf(desc, sizeof(desc), "key_new: %s -> its algorithms; a token it signed verifies",
                 cases[i].desc);
        begin(desc);
        EXPECT(cases[i].pem != NULL);
        tg_jwt_key_t *k = cases[i].pem ? load(cases[i].pem, err) : NULL;
        if (k == NULL) {
            note("#   refused: %s\n", err);
        } else {
            EXPECT(tg_jwt_key_algs(k) == cases[i].algs);
            EXPECT_REASON(verify(k, mint_pk(cases[i].alg, cases[i].signer, PAYLOAD)), TG_JWT_OK,
                          cases[i].desc);
        }
        tg_jwt_key_free(k);
        end();
    }

    /* PEM text embedded in other text (a YAML block, comments) still parses */
    begin("key_new: PEM with text around it");
    {
        size_t n = strlen(rsa.pub_pem) + 64;
        char *m = tg_malloc(n);
        snprintf(m, n, "# the demo key\n%s\n", rsa.pub_pem);
        tg_jwt_key_t *k = load(m, err);
        EXPECT(k != NULL);
        tg_jwt_key_free(k);
        free(m);
    }
    end();
}

static void case_key_garbage(void)
{
    char err[256];
    const char *garbage[] = {
        "-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "-----BEGIN \n",
        "-----BEGIN PUBLIC KEY-----\n",
    };
    for (size_t i = 0; i < tg_nelem(garbage); i++) {
        char desc[100];
        snprintf(desc, sizeof(desc), "key_new: PEM garbage #%zu refused with a message", i + 1);
        begin(desc);
        tg_jwt_key_t *k = load(garbage[i], err);
        EXPECT(k == NULL);
        EXPECT(strstr(err, "not a PEM public key, certificate or private key") != NULL);
        tg_jwt_key_free(k);
        end();
    }

    begin("key_new: a truncated real PEM is refused");
    {
        size_t n = strlen(rsa.pub_pem) / 2;
        char *m = tg_strndup(rsa.pub_pem, n);
        tg_jwt_key_t *k = load(m, err);
        EXPECT(k == NULL);
        EXPECT(err[0] != '\0');
        tg_jwt_key_free(k);
        free(m);
    }
    end();

    begin("key_new: the error fits a small buffer (truncated, NUL-terminated)");
    {
        char small[8];
        memset(small, 'x', sizeof(small));
        tg_jwt_key_t *k = tg_jwt_key_new(garbage[0], strlen(garbage[0]), NULL, small,
                                         sizeof(small));
        EXPECT(k == NULL);
        EXPECT(memchr(small, '\0', sizeof(small)) != NULL);
        tg_jwt_key_free(k);
    }
    end();

    begin("key_new: an Ed25519 key is refused (unsupported key type)");
    {
        tkey_t ed;
        key_other(&ed, "ED25519");
        tg_jwt_key_t *k = load(ed.pub_pem, err);
        EXPECT(k == NULL);
        EXPECT(strstr(err, "unsupported key type") != NULL);
        tg_jwt_key_free(k);
        tkey_free(&ed);
    }
    end();

    /* JWT's ES256 is ECDSA on P-256 (RFC 7518 3.4). A 256-bit key on another
     * curve (secp256k1, brainpoolP256r1) is not a P-256 key. */
    begin("key_new: a 256-bit EC key on a curve other than P-256 (secp256k1) is refused");
    {
        tkey_t k1;
        key_ec(&k1, "secp256k1");
        tg_jwt_key_t *k = load(k1.pub_pem, err);
        if (k != NULL)
            note("#   accepted as algs %d (ES256); an \"ES256\" token signed on secp256k1: %s\n",
                 tg_jwt_key_algs(k), rname(verify(k, mint_pk(TG_JWT_ES256, k1.pkey, PAYLOAD))));
        tg_jwt_key_free(k);
        tkey_free(&k1);
    }
    end();
}

/* ---- cases: verification ------------------------------------------------------------ */

static void case_verify_ok(void)
{
    char err[256];
    tg_jwt_key_t *hs = load("s3cret", err);
    tg_jwt_key_t *rk = load(rsa.pub_pem, err);
    tg_jwt_key_t *e256 = load(ec256.pub_pem, err);
    tg_jwt_key_t *e384 = load(ec384.pub_pem, err);
    tg_jwt_key_t *e521 = load(ec521.pub_pem, err);
    struct {
        int alg;
        tg_jwt_key_t *key;
        EVP_PKEY *pkey;
    } cases[] = {
        { TG_JWT_HS256, hs, NULL }, { TG_JWT_HS384, hs, NULL }, { TG_JWT_HS512, hs, NULL },
        { TG_JWT_RS256, rk, rsa.pkey }, { TG_JWT_RS384, rk, rsa.pkey },
        { TG_JWT_RS512, rk, rsa.pkey }, { TG_JWT_ES256, e256, ec256.pkey },
        { TG_JWT_ES384, e384, ec384.pkey }, { TG_JWT_ES512, e521, ec521.pkey },
    };
    for (size_t i = 0; i < tg_nelem(cases); i++) {
        char desc[100];
        snprintf(desc, sizeof(desc), "verify: a valid %s token: OK, alg, claims, exp",
                 alg_name(cases[i].alg));
        begin(desc);
        char *tok = cases[i].pkey ? mint_pk(cases[i].alg, cases[i].pkey, PAYLOAD)
                                  : mint_hs(cases[i].alg, "s3cret", PAYLOAD);
        EXPECT_REASON(verify(cases[i].key, tok), TG_JWT_OK, alg_name(cases[i].alg));
        EXPECT(res.reason == TG_JWT_OK);
        EXPECT(res.alg == cases[i].alg);
        EXPECT(res.claims_len == strlen(PAYLOAD) && res.claims &&
               memcmp(res.claims, PAYLOAD, res.claims_len) == 0);
        EXPECT(res.exp == 1700000100.0);
        end();
    }

    begin("verify: a token without exp: OK with exp 0");
    EXPECT_REASON(verify(hs, mint_hs(TG_JWT_HS256, "s3cret", "{\"sub\":\"a\"}")), TG_JWT_OK, "");
    EXPECT(res.exp == 0);
    end();

    begin("verify: len is honoured (the token need not be NUL-terminated)");
    {
        char *tok = mint_hs(TG_JWT_HS256, "s3cret", PAYLOAD);
        size_t n = strlen(tok);
        char *buf = tg_malloc(n + 8);
        memcpy(buf, tok, n);
        memcpy(buf + n, "garbage!", 8);
        tg_jwt_opts_t o = { 0 };
        EXPECT_REASON(tg_jwt_verify(&hs, 1, buf, n, &o, NOW, &res), TG_JWT_OK, "");
        free(buf);
    }
    end();

    /* RFC 7519 5.1: typ is optional and its value is for the application;
     * "JOSE" is the RFC's own example, "at+jwt" is RFC 9068's access token.
     * Express Gateway (jsonwebtoken) ignores it. */
    const char *typs[] = { "{\"alg\":\"RS256\",\"typ\":\"at+jwt\"}",
                           "{\"alg\":\"RS256\",\"typ\":\"JOSE\"}", "{\"alg\":\"RS256\"}",
                           "{\"alg\":\"RS256\",\"typ\":\"jwt\"}" };
    for (size_t i = 0; i < tg_nelem(typs); i++) {
        char desc[120];
        snprintf(desc, sizeof(desc), "verify: header %s is accepted", typs[i]);
        begin(desc);
        char *tok = mint_ex(typs[i], PAYLOAD, TG_JWT_RS256, NULL, 0, rsa.pkey, 0);
        EXPECT_REASON(verify(rk, tok), TG_JWT_OK, typs[i]);
        end();
    }

    /* RFC 7515 4.1.11: no extension is implemented, so any "crit" header
     * (e.g. RFC 7797's {"b64":false,"crit":["b64"]}) is refused, signed or not. */
    begin("verify: a header with crit is refused (malformed), even well signed");
    {
        const char *crits[] = { "{\"alg\":\"RS256\",\"b64\":false,\"crit\":[\"b64\"]}",
                                "{\"alg\":\"RS256\",\"crit\":[]}" };
        for (size_t i = 0; i < tg_nelem(crits); i++) {
            char *tok = mint_ex(crits[i], PAYLOAD, TG_JWT_RS256, NULL, 0, rsa.pkey, 0);
            EXPECT_REASON(verify(rk, tok), TG_JWT_MALFORMED, crits[i]);
        }
    }
    end();

    /* An RSA-8192 signature is 1024 bytes: 1366 base64url characters. */
    begin("verify: an RS256 token from an RSA-8192 key verifies");
    {
        tkey_t big;
        key_rsa(&big, 8192, 5); /* multi-prime: seconds, not a minute, to generate */
        tg_jwt_key_t *bk = load(big.pub_pem, err);
        EXPECT(bk != NULL);
        if (bk)
            EXPECT_REASON(verify(bk, mint_pk(TG_JWT_RS256, big.pkey, PAYLOAD)), TG_JWT_OK,
                          "RSA-8192");
        tg_jwt_key_free(bk);
        tkey_free(&big);
    }
    end();

    tg_jwt_key_free(hs);
    tg_jwt_key_free(rk);
    tg_jwt_key_free(e256);
    tg_jwt_key_free(e384);
    tg_jwt_key_free(e521);
}

static void case_malformed(void)
{
    char err[256];
    tg_jwt_key_t *hs = load("s3cret", err);
    char *good = mint_hs(TG_JWT_HS256, "s3cret", PAYLOAD);
    const char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
    char *h = tg_strndup(good, (size_t) (dot1 - good));
    char *p = tg_strndup(dot1 + 1, (size_t) (dot2 - dot1 - 1));
    char *s = tg_strndup(dot2 + 1, strlen(dot2 + 1));

    struct {
        const char *desc;
        char *tok;
    } cases[] = {
        { "one part", keep(tg_strndup("abc", 3)) },
        { "four parts", keep(concat3(h, p, "a.b")) },
        { "empty header", keep(concat3("", p, s)) },
        { "empty payload", keep(concat3(h, "", s)) },
        { "header not base64url", keep(concat3("e30*", p, s)) },
        { "header base64 with padding", keep(concat3("e30=", p, s)) },
        { "header not JSON", mint_raw("not json", PAYLOAD, s) },
        { "header JSON but not an object", mint_raw("[1,2]", PAYLOAD, s) },
        { "payload not JSON", mint_hs(TG_JWT_HS256, "s3cret", "not json") },
        { "payload JSON null", mint_hs(TG_JWT_HS256, "s3cret", "null") },
        { "signature not base64url", keep(concat3(h, p, "AAA*AAA")) },
        { "signature one char too long (n % 4 == 1)", keep(concat3(h, p, "AAAAA")) },
        { "signature non-canonical trailing bits", keep(concat3(h, p, "AB")) },
        { "exp is a string", mint_hs(TG_JWT_HS256, "s3cret", "{\"exp\":\"1700000100\"}") },
        { "nbf is an object", mint_hs(TG_JWT_HS256, "s3cret", "{\"nbf\":{}}") },
    };
    for (size_t i = 0; i < tg_nelem(cases); i++) {
        char desc[120];
        snprintf(desc, sizeof(desc), "verify: malformed: %s", cases[i].desc);
        begin(desc);
        EXPECT_REASON(verify(hs, cases[i].tok), TG_JWT_MALFORMED, cases[i].desc);
        EXPECT(res.reason == TG_JWT_MALFORMED && res.claims == NULL);
        end();
    }

    begin("verify: malformed: empty token, and a NULL-free zero length");
    {
        tg_jwt_opts_t o = { 0 };
        EXPECT_REASON(tg_jwt_verify(&hs, 1, "", 0, &o, NOW, &res), TG_JWT_MALFORMED, "empty");
        EXPECT_REASON(tg_jwt_verify(&hs, 1, good, 0, &o, NOW, &res), TG_JWT_MALFORMED, "len 0");
        EXPECT_REASON(verify(hs, ".."), TG_JWT_MALFORMED, "..");
        EXPECT_REASON(verify(hs, "..."), TG_JWT_MALFORMED, "...");
    }
    end();

    begin("verify: a huge token (> 16 KiB) is malformed, without reading past len");
    {
        size_t n = 64 * 1024;
        char *big = tg_malloc(n);
        memset(big, 'A', n);
        big[100] = '.';
        big[200] = '.';
        tg_jwt_opts_t o = { 0 };
        EXPECT_REASON(tg_jwt_verify(&hs, 1, big, n, &o, NOW, &res), TG_JWT_MALFORMED, "64 KiB");
        EXPECT_REASON(tg_jwt_verify(&hs, 1, big, 16385, &o, NOW, &res), TG_JWT_MALFORMED,
                      "16385 bytes");
        free(big);
    }
    end();

    begin("verify: a token of 16 KiB exactly with a big payload still verifies");
    {
        /* payload padded so the whole token is as long as allowed */
        size_t hl = strlen(h), sl = 43; /* HS256: 32 bytes -> 43 chars */
        size_t room = 16384 - hl - sl - 2;
        size_t plen = room / 4 * 3 - 40;
        char *payload = tg_malloc(plen + 1);
        int w = snprintf(payload, plen + 1, "{\"sub\":\"big\",\"pad\":\"");
        memset(payload + w, 'x', plen - (size_t) w - 2);
        memcpy(payload + plen - 2, "\"}", 2);
        payload[plen] = '\0';
        char *tok = mint_hs(TG_JWT_HS256, "s3cret", payload);
        EXPECT(strlen(tok) <= 16384);
        EXPECT_REASON(verify(hs, tok), TG_JWT_OK, "big payload");
        EXPECT(res.claims_len == plen);
        free(payload);
    }
    end();

    begin("verify: a signature longer than any key's is refused as a bad signature");
    {
        char sig[2001];
        memset(sig, 'A', 2000);
        sig[2000] = '\0';
        EXPECT_REASON(verify(hs, keep(concat3(h, p, sig))), TG_JWT_BAD_SIGNATURE, "2000 chars");
    }
    end();

    free(h);
    free(p);
    free(s);
    tg_jwt_key_free(hs);
}

static void case_alg(void)
{
    char err[256];
    tg_jwt_key_t *hs = load("s3cret", err);
    tg_jwt_key_t *rk = load(rsa.pub_pem, err);
    tg_jwt_key_t *ek = load(ec256.pub_pem, err);
    const char *pl = "{\"sub\":\"alice\"}";

    begin("verify: alg none with an empty signature: ALG_NOT_ALLOWED (any key)");
    {
        char *tok = mint_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", pl, "");
        EXPECT_REASON(verify(hs, tok), TG_JWT_ALG_NOT_ALLOWED, "secret");
        EXPECT_REASON(verify(rk, tok), TG_JWT_ALG_NOT_ALLOWED, "RSA");
        EXPECT_REASON(verify(ek, tok), TG_JWT_ALG_NOT_ALLOWED, "EC");
    }
    end();

    begin("verify: alg none / None / NONE with a signature part: ALG_NOT_ALLOWED");
    {
        const char *hdrs[] = { "{\"alg\":\"none\"}", "{\"alg\":\"None\"}",
                               "{\"alg\":\"NONE\"}" };
        for (size_t i = 0; i < tg_nelem(hdrs); i++)
            EXPECT_REASON(verify(hs, mint_raw(hdrs[i], pl, "c2ln")), TG_JWT_ALG_NOT_ALLOWED,
                          hdrs[i]);
    }
    end();

    begin("verify: no alg at all: refused (MALFORMED: RFC 7515 requires alg)");
    EXPECT_REASON(verify(hs, mint_raw("{\"typ\":\"JWT\"}", pl, "c2ln")), TG_JWT_MALFORMED,
                  "no alg");
    end();

    /* The claims must be a JSON object (RFC 7519 7.2): anything else is
     * refused in C. */
    begin("verify: a JSON array payload is refused (MALFORMED)");
    EXPECT_REASON(verify(hs, mint_hs(TG_JWT_HS256, "s3cret", "[1,2,3]")), TG_JWT_MALFORMED,
                  "array");
    EXPECT(res.claims == NULL);
    end();

    /* A well-formed token whose algorithm tollgate does not do is not
     * "malformed" (jwt.h: MALFORMED is not three base64url parts of JSON). */
    begin("verify: an algorithm tollgate does not support (PS256, HS1): ALG_NOT_ALLOWED");
    EXPECT_REASON(verify(rk, mint_raw("{\"alg\":\"PS256\",\"typ\":\"JWT\"}", pl, "c2ln")),
                  TG_JWT_ALG_NOT_ALLOWED, "PS256");
    EXPECT_REASON(verify(hs, mint_raw("{\"alg\":\"HS1\",\"typ\":\"JWT\"}", pl, "c2ln")),
                  TG_JWT_ALG_NOT_ALLOWED, "HS1");
    end();

    begin("verify: HS256 signed with the RSA public key PEM as the secret: ALG_NOT_ALLOWED");
    EXPECT_REASON(verify(rk, mint_hs(TG_JWT_HS256, rsa.pub_pem, pl)), TG_JWT_ALG_NOT_ALLOWED,
                  "HS256/RSA PEM");
    EXPECT_REASON(verify(rk, mint_hs(TG_JWT_HS512, rsa.pub_pem, pl)), TG_JWT_ALG_NOT_ALLOWED,
                  "HS512/RSA PEM");
    end();

    begin("verify: HS256 signed with the EC public key PEM as the secret: ALG_NOT_ALLOWED");
    EXPECT_REASON(verify(ek, mint_hs(TG_JWT_HS256, ec256.pub_pem, pl)), TG_JWT_ALG_NOT_ALLOWED,
                  "HS256/EC PEM");
    end();

    begin("verify: HS256 with the PEM secret stays refused even if algorithms lists HS256");
    {
        tg_jwt_opts_t o = { .algorithms = TG_JWT_HS256 | TG_JWT_RS256 };
        EXPECT_REASON(verify_with(rk, mint_hs(TG_JWT_HS256, rsa.pub_pem, pl), &o, NOW),
                      TG_JWT_ALG_NOT_ALLOWED, "");
    }
    end();

    begin("verify: an RS256 token against an HMAC secret: ALG_NOT_ALLOWED");
    EXPECT_REASON(verify(hs, mint_pk(TG_JWT_RS256, rsa.pkey, pl)), TG_JWT_ALG_NOT_ALLOWED, "");
    end();

    begin("verify: an ES384 token against a P-256 key: ALG_NOT_ALLOWED");
    EXPECT_REASON(verify(ek, mint_pk(TG_JWT_ES384, ec384.pkey, pl)), TG_JWT_ALG_NOT_ALLOWED, "");
    end();

    begin("verify: an ES256 token against an RSA key, an RS256 token against an EC key");
    EXPECT_REASON(verify(rk, mint_pk(TG_JWT_ES256, ec256.pkey, pl)), TG_JWT_ALG_NOT_ALLOWED,
                  "ES on RSA");
    EXPECT_REASON(verify(ek, mint_pk(TG_JWT_RS256, rsa.pkey, pl)), TG_JWT_ALG_NOT_ALLOWED,
                  "RS on EC");
    end();

    begin("verify: opts.algorithms restricts: HS256 refused, HS512 accepted");
    {
        tg_jwt_opts_t o = { .algorithms = TG_JWT_HS512 };
        EXPECT_REASON(verify_with(hs, mint_hs(TG_JWT_HS256, "s3cret", pl), &o, NOW),
                      TG_JWT_ALG_NOT_ALLOWED, "HS256");
        EXPECT(res.alg == TG_JWT_HS256);
        EXPECT_REASON(verify_with(hs, mint_hs(TG_JWT_HS512, "s3cret", pl), &o, NOW), TG_JWT_OK,
                      "HS512");
    }
    end();

    begin("verify: the algorithm is checked before the signature");
    {
        tg_jwt_opts_t o = { .algorithms = TG_JWT_RS512 };
        EXPECT_REASON(verify_with(rk, mint_pk(TG_JWT_RS256, rsa2.pkey, pl), &o, NOW),
                      TG_JWT_ALG_NOT_ALLOWED, "RS256 from another key, RS512 only");
    }
    end();

    tg_jwt_key_free(hs);
    tg_jwt_key_free(rk);
    tg_jwt_key_free(ek);
}

static char *flip_sig(const char *tok)
{
    char *t = keep(tg_strndup(tok, strlen(tok)));
    char *s = strrchr(t, '.') + 1;
    /* change the first character to another one that keeps the length valid */
    s[0] = s[0] == 'A' ? 'B' : 'A';
    return t;
}

static void case_signature(void)
{
    char err[256];
    tg_jwt_key_t *hs = load("s3cret", err);
    tg_jwt_key_t *rk = load(rsa.pub_pem, err);
    tg_jwt_key_t *e256 = load(ec256.pub_pem, err);
    tg_jwt_key_t *e521 = load(ec521.pub_pem, err);
    const char *pl = "{\"sub\":\"alice\"}";

    begin("verify: bad signature: one changed byte (HS, RS, ES)");
    EXPECT_REASON(verify(hs, flip_sig(mint_hs(TG_JWT_HS256, "s3cret", pl))),
                  TG_JWT_BAD_SIGNATURE, "HS256");
    EXPECT_REASON(verify(rk, flip_sig(mint_pk(TG_JWT_RS256, rsa.pkey, pl))),
                  TG_JWT_BAD_SIGNATURE, "RS256");
    EXPECT_REASON(verify(e256, flip_sig(mint_pk(TG_JWT_ES256, ec256.pkey, pl))),
                  TG_JWT_BAD_SIGNATURE, "ES256");
    EXPECT_REASON(verify(e521, flip_sig(mint_pk(TG_JWT_ES512, ec521.pkey, pl))),
                  TG_JWT_BAD_SIGNATURE, "ES512");
    end();

    begin("verify: bad signature: payload swapped, signature kept");
    {
        char *a = mint_hs(TG_JWT_HS256, "s3cret", pl);
        char *b = mint_hs(TG_JWT_HS256, "s3cret", "{\"sub\":\"admin\"}");
        char *t = keep(tg_strndup(b, strlen(b)));
        /* b's header and payload with a's signature */
        const char *as = strrchr(a, '.');
        char *bs = strrchr(t, '.');
        if (strlen(as) == strlen(bs))
            memcpy(bs, as, strlen(as));
        EXPECT_REASON(verify(hs, t), TG_JWT_BAD_SIGNATURE, "");
    }
    end();

    begin("verify: bad signature: wrong secret, another RSA key");
    EXPECT_REASON(verify(hs, mint_hs(TG_JWT_HS256, "other", pl)), TG_JWT_BAD_SIGNATURE, "HS");
    EXPECT_REASON(verify(rk, mint_pk(TG_JWT_RS256, rsa2.pkey, pl)), TG_JWT_BAD_SIGNATURE, "RS");
    end();

    begin("verify: bad signature: truncated signature (whole base64 groups kept)");
    {
        char *tok = mint_hs(TG_JWT_HS256, "s3cret", pl);
        size_t sl = strlen(strrchr(tok, '.') + 1);
        char *cut = keep(tg_strndup(tok, strlen(tok) - sl + sl / 4 * 4 - 4));
        EXPECT_REASON(verify(hs, cut), TG_JWT_BAD_SIGNATURE, "HS256 truncated");
        tok = mint_pk(TG_JWT_RS256, rsa.pkey, pl);
        sl = strlen(strrchr(tok, '.') + 1);
        cut = keep(tg_strndup(tok, strlen(tok) - sl + sl / 4 * 4));
        EXPECT_REASON(verify(rk, cut), TG_JWT_BAD_SIGNATURE, "RS256 truncated");
    }
    end();

    begin("verify: a truncated signature that leaves stray bits is malformed");
    {
        char *tok = mint_hs(TG_JWT_HS256, "s3cret", pl);
        char *cut = keep(tg_strndup(tok, strlen(tok) - 1)); /* 42 chars: 4 stray bits */
        int r = verify(hs, cut);
        EXPECT(r == TG_JWT_MALFORMED || r == TG_JWT_BAD_SIGNATURE);
    }
    end();

    begin("verify: an ES signature in DER (not JOSE r||s) is refused");
    EXPECT_REASON(verify(e256, mint_ex(std_header(TG_JWT_ES256), pl, TG_JWT_ES256, NULL, 0,
                                       ec256.pkey, 1)),
                  TG_JWT_BAD_SIGNATURE, "DER ES256");
    end();

    begin("verify: ES256 with r = s = 0 (CVE-2022-21449 style) is refused");
    {
        unsigned char zero[64] = { 0 };
        char *z = b64url(zero, sizeof(zero));
        EXPECT_REASON(verify(e256, mint_raw("{\"alg\":\"ES256\"}", pl, z)), TG_JWT_BAD_SIGNATURE,
                      "zeros");
        free(z);
    }
    end();

    begin("verify: ES256 with r = s = n (the group order) is refused");
    {
        static const unsigned char n256[32] = {
            0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0xFF, 0xFF, 0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2,
            0xFC, 0x63, 0x25, 0x51 };
        unsigned char rs[64];
        memcpy(rs, n256, 32);
        memcpy(rs + 32, n256, 32);
        char *z = b64url(rs, sizeof(rs));
        EXPECT_REASON(verify(e256, mint_raw("{\"alg\":\"ES256\"}", pl, z)), TG_JWT_BAD_SIGNATURE,
                      "r=s=n");
        free(z);
    }
    end();

    begin("verify: the signature is checked before exp/nbf/aud/iss");
    {
        tg_jwt_opts_t o = { .audience = "api\0", .issuer = "me\0" };
        char *tok = flip_sig(mint_hs(TG_JWT_HS256, "s3cret",
                                     "{\"exp\":1,\"nbf\":9999999999,\"aud\":\"x\",\"iss\":\"y\"}"));
        EXPECT_REASON(verify_with(hs, tok, &o, NOW), TG_JWT_BAD_SIGNATURE, "");
    }
    end();

    begin("verify: no single-character change of a valid token verifies");
    {
        char *tok = mint_hs(TG_JWT_HS256, "s3cret", PAYLOAD);
        size_t n = strlen(tok);
        char *t = tg_strndup(tok, n);
        const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=";
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            for (const char *c = alphabet; *c; c++) {
                if (*c == tok[i])
                    continue;
                t[i] = *c;
                if (verify(hs, t) == TG_JWT_OK && bad++ < 3)
                    note("#   %s verified\n", t);
            }
            t[i] = tok[i];
        }
        EXPECT(bad == 0);
        free(t);
    }
    end();

    tg_jwt_key_free(hs);
    tg_jwt_key_free(rk);
    tg_jwt_key_free(e256);
    tg_jwt_key_free(e521);
}

static void case_time(void)
{
    char err[256];
    tg_jwt_key_t *hs = load("s3cret", err);
    char *t_exp = mint_hs(TG_JWT_HS256, "s3cret", "{\"exp\":1700000000}");
    char *t_nbf = mint_hs(TG_JWT_HS256, "s3cret", "{\"nbf\":1700000000}");
    tg_jwt_opts_t none = { 0 }, lee = { .leeway = 30 };

    begin("verify: exp: before it OK, after it EXPIRED");
    EXPECT_REASON(verify_with(hs, t_exp, &none, NOW - 1), TG_JWT_OK, "exp - 1");
    EXPECT_REASON(verify_with(hs, t_exp, &none, NOW + 1), TG_JWT_EXPIRED, "exp + 1");
    EXPECT_REASON(verify_with(hs, t_exp, &none, NOW + 0.001), TG_JWT_EXPIRED, "exp + 1 ms");
    end();

    /* RFC 7519 4.1.4: the current time MUST be before exp; jsonwebtoken
     * (Express Gateway) refuses when now >= exp. */
    begin("verify: exp: at exactly exp the token is expired (RFC 7519 4.1.4)");
    EXPECT_REASON(verify_with(hs, t_exp, &none, NOW), TG_JWT_EXPIRED, "now == exp");
    end();

    begin("verify: exp with leeway: accepted up to exp + leeway, refused after");
    EXPECT_REASON(verify_with(hs, t_exp, &lee, NOW + 29), TG_JWT_OK, "exp + 29, leeway 30");
    EXPECT_REASON(verify_with(hs, t_exp, &lee, NOW + 31), TG_JWT_EXPIRED, "exp + 31, leeway 30");
    end();

    begin("verify: nbf: before it NOT_YET_VALID, at and after it OK");
    EXPECT_REASON(verify_with(hs, t_nbf, &none, NOW - 1), TG_JWT_NOT_YET_VALID, "nbf - 1");
    EXPECT_REASON(verify_with(hs, t_nbf, &none, NOW), TG_JWT_OK, "nbf");
    EXPECT_REASON(verify_with(hs, t_nbf, &none, NOW + 1), TG_JWT_OK, "nbf + 1");
    end();

    begin("verify: nbf with leeway: accepted from nbf - leeway");
    EXPECT_REASON(verify_with(hs, t_nbf, &lee, NOW - 29), TG_JWT_OK, "nbf - 29, leeway 30");
    EXPECT_REASON(verify_with(hs, t_nbf, &lee, NOW - 31), TG_JWT_NOT_YET_VALID,
                  "nbf - 31, leeway 30");
    end();

    begin("verify: fractional exp and nbf");
    {
        char *t = mint_hs(TG_JWT_HS256, "s3cret", "{\"exp\":1700000000.5,\"nbf\":1699999999.5}");
        EXPECT_REASON(verify_with(hs, t, &none, NOW), TG_JWT_OK, "between");
        EXPECT(res.exp == 1700000000.5);
        EXPECT_REASON(verify_with(hs, t, &none, NOW + 0.75), TG_JWT_EXPIRED, "after");
        EXPECT_REASON(verify_with(hs, t, &none, NOW - 0.75), TG_JWT_NOT_YET_VALID, "before");
    }
    end();

    begin("verify: exp is checked before nbf, nbf before audience");
    {
        tg_jwt_opts_t o = { .audience = "api\0" };
        char *t = mint_hs(TG_JWT_HS256, "s3cret", "{\"exp\":1,\"nbf\":9999999999,\"aud\":\"x\"}");
        EXPECT_REASON(verify_with(hs, t, &o, NOW), TG_JWT_EXPIRED, "all wrong");
        t = mint_hs(TG_JWT_HS256, "s3cret", "{\"nbf\":9999999999,\"aud\":\"x\"}");
        EXPECT_REASON(verify_with(hs, t, &o, NOW), TG_JWT_NOT_YET_VALID, "nbf and aud wrong");
    }
    end();

    tg_jwt_key_free(hs);
}

static void case_claims(void)
{
    char err[256];
    tg_jwt_key_t *hs = load("s3cret", err);
    tg_jwt_opts_t aud = { .audience = "api\0https://api.example/v1\0" };
    tg_jwt_opts_t iss = { .issuer = "https://issuer.example\0other\0" };
#define T(payload) mint_hs(TG_JWT_HS256, "s3cret", payload)

    begin("verify: audience: a string claim in the list");
    EXPECT_REASON(verify_with(hs, T("{\"aud\":\"api\"}"), &aud, NOW), TG_JWT_OK, "api");
    EXPECT_REASON(verify_with(hs, T("{\"aud\":\"https:\\/\\/api.example\\/v1\"}"), &aud, NOW),
                  TG_JWT_OK, "escaped slashes");
    EXPECT_REASON(verify_with(hs, T("{\"aud\":\"https://api.example/v1\"}"), &aud, NOW), TG_JWT_OK,
                  "plain slashes");
    EXPECT_REASON(verify_with(hs, T("{\"aud\":\"ap\\u0069\"}"), &aud, NOW), TG_JWT_OK,
                  "\\u escape");
    end();

    begin("verify: audience: an array claim with one listed value");
    EXPECT_REASON(verify_with(hs, T("{\"aud\":[\"web\",\"api\"]}"), &aud, NOW), TG_JWT_OK, "");
    EXPECT_REASON(verify_with(hs, T("{\"aud\": [ \"web\" , \"api\" ]}"), &aud, NOW), TG_JWT_OK,
                  "spaces");
    end();

    begin("verify: audience: WRONG_AUDIENCE for other values, prefixes, missing, non-strings");
    {
        const char *bad[] = {
            "{\"aud\":\"web\"}", "{\"aud\":\"ap\"}", "{\"aud\":\"apix\"}", "{\"aud\":\"API\"}",
            "{\"aud\":[\"web\",\"mobile\"]}", "{\"aud\":[]}", "{}", "{\"aud\":1}",
            "{\"aud\":null}", "{\"aud\":{\"api\":true}}", "{\"aud\":\"\"}",
            "{\"aud\":\"api\\\"\"}",
        };
        for (size_t i = 0; i < tg_nelem(bad); i++)
            EXPECT_REASON(verify_with(hs, T(bad[i]), &aud, NOW), TG_JWT_WRONG_AUDIENCE, bad[i]);
    }
    end();

    begin("verify: audience: a claim with an escaped NUL is refused (not OK)");
    EXPECT(verify_with(hs, T("{\"aud\":\"api\\u0000\"}"), &aud, NOW) != TG_JWT_OK);
    end();

    begin("verify: no audience option: any aud is fine");
    EXPECT_REASON(verify(hs, T("{\"aud\":\"whatever\"}")), TG_JWT_OK, "");
    end();

    begin("verify: issuer: a listed string OK; other, missing, array: WRONG_ISSUER");
    EXPECT_REASON(verify_with(hs, T("{\"iss\":\"https:\\/\\/issuer.example\"}"), &iss, NOW),
                  TG_JWT_OK, "escaped");
    EXPECT_REASON(verify_with(hs, T("{\"iss\":\"other\"}"), &iss, NOW), TG_JWT_OK, "second");
    EXPECT_REASON(verify_with(hs, T("{\"iss\":\"https://evil.example\"}"), &iss, NOW),
                  TG_JWT_WRONG_ISSUER, "other");
    EXPECT_REASON(verify_with(hs, T("{}"), &iss, NOW), TG_JWT_WRONG_ISSUER, "missing");
    EXPECT_REASON(verify_with(hs, T("{\"iss\":[\"other\"]}"), &iss, NOW), TG_JWT_WRONG_ISSUER,
                  "array");
    end();

    begin("verify: audience is checked before issuer");
    {
        tg_jwt_opts_t both = { .audience = "api\0", .issuer = "me\0" };
        EXPECT_REASON(verify_with(hs, T("{\"aud\":\"x\",\"iss\":\"y\"}"), &both, NOW),
                      TG_JWT_WRONG_AUDIENCE, "");
        EXPECT_REASON(verify_with(hs, T("{\"aud\":\"api\",\"iss\":\"y\"}"), &both, NOW),
                      TG_JWT_WRONG_ISSUER, "");
        EXPECT_REASON(verify_with(hs, T("{\"aud\":\"api\",\"iss\":\"me\"}"), &both, NOW),
                      TG_JWT_OK, "");
    }
    end();
#undef T
    tg_jwt_key_free(hs);
}

static void case_kid(void)
{
    char err[256];
    tg_jwt_key_t *k1 = tg_jwt_key_new("secret-one", 10, "k1", err, sizeof(err));
    tg_jwt_key_t *k2 = tg_jwt_key_new("secret-two", 10, "k2", err, sizeof(err));
    tg_jwt_key_t *both[2] = { k1, k2 };
    tg_jwt_opts_t o = { 0 };
    const char *pl = "{\"sub\":\"a\"}";
    char *t1 = mint_ex("{\"alg\":\"HS256\",\"kid\":\"k1\"}", pl, TG_JWT_HS256, "secret-one", 10,
                       NULL, 0);
    char *t2 = mint_ex("{\"alg\":\"HS256\",\"kid\":\"k2\"}", pl, TG_JWT_HS256, "secret-two", 10,
                       NULL, 0);
    char *t2_by_1 = mint_ex("{\"alg\":\"HS256\",\"kid\":\"k2\"}", pl, TG_JWT_HS256, "secret-one",
                            10, NULL, 0);
    char *t3 = mint_ex("{\"alg\":\"HS256\",\"kid\":\"k3\"}", pl, TG_JWT_HS256, "secret-one", 10,
                       NULL, 0);
    char *tn = mint_ex("{\"alg\":\"HS256\"}", pl, TG_JWT_HS256, "secret-one", 10, NULL, 0);

    begin("verify: one key with a kid: matching kid or no kid OK, another kid NO_KEY");
    EXPECT_REASON(tg_jwt_verify(&k1, 1, t1, strlen(t1), &o, NOW, &res), TG_JWT_OK, "kid k1");
    EXPECT_REASON(tg_jwt_verify(&k1, 1, tn, strlen(tn), &o, NOW, &res), TG_JWT_OK, "no kid");
    EXPECT_REASON(tg_jwt_verify(&k1, 1, t3, strlen(t3), &o, NOW, &res), TG_JWT_NO_KEY, "kid k3");
    end();

    begin("verify: several keys: picked by kid; an unknown kid NO_KEY");
    EXPECT_REASON(tg_jwt_verify(both, 2, t1, strlen(t1), &o, NOW, &res), TG_JWT_OK, "k1");
    EXPECT_REASON(tg_jwt_verify(both, 2, t2, strlen(t2), &o, NOW, &res), TG_JWT_OK, "k2");
    EXPECT_REASON(tg_jwt_verify(both, 2, t2_by_1, strlen(t2_by_1), &o, NOW, &res),
                  TG_JWT_BAD_SIGNATURE, "kid k2 signed with k1's secret");
    EXPECT_REASON(tg_jwt_verify(both, 2, t3, strlen(t3), &o, NOW, &res), TG_JWT_NO_KEY, "k3");
    end();

    begin("verify: several keys, a token without kid: every key of the right type is tried");
    EXPECT_REASON(tg_jwt_verify(both, 2, tn, strlen(tn), &o, NOW, &res), TG_JWT_OK,
                  "no kid, signed with k1's secret");
    {
        tg_jwt_key_t *rev[2] = { k2, k1 };
        EXPECT_REASON(tg_jwt_verify(rev, 2, tn, strlen(tn), &o, NOW, &res), TG_JWT_OK,
                      "no kid, k1 second");
        char *other = mint_ex("{\"alg\":\"HS256\"}", pl, TG_JWT_HS256, "secret-three", 12, NULL,
                              0);
        EXPECT_REASON(tg_jwt_verify(both, 2, other, strlen(other), &o, NOW, &res),
                      TG_JWT_BAD_SIGNATURE, "no kid, signed by neither");
        /* an RS token without kid against two HMAC keys: no key of its type */
        char *rs = mint_ex("{\"alg\":\"RS256\"}", pl, TG_JWT_RS256, NULL, 0, rsa.pkey, 0);
        EXPECT_REASON(tg_jwt_verify(both, 2, rs, strlen(rs), &o, NOW, &res),
                      TG_JWT_ALG_NOT_ALLOWED, "RS256 against HMAC keys");
    }
    end();

    begin("verify: a key set with a key without kid: it serves tokens whose kid is unknown");
    {
        tg_jwt_key_t *anon = tg_jwt_key_new("secret-anon", 11, NULL, err, sizeof(err));
        tg_jwt_key_t *set[3] = { k1, anon, k2 };
        char *ta = mint_ex("{\"alg\":\"HS256\",\"kid\":\"zz\"}", pl, TG_JWT_HS256,
                           "secret-anon", 11, NULL, 0);
        EXPECT_REASON(tg_jwt_verify(set, 3, ta, strlen(ta), &o, NOW, &res), TG_JWT_OK,
                      "kid zz by the kid-less key");
        EXPECT_REASON(tg_jwt_verify(set, 3, t3, strlen(t3), &o, NOW, &res),
                      TG_JWT_BAD_SIGNATURE, "kid k3 signed with k1's secret: not k1's to verify");
        EXPECT_REASON(tg_jwt_verify(set, 3, t2, strlen(t2), &o, NOW, &res), TG_JWT_OK,
                      "kid k2 still picks k2");
        tg_jwt_key_free(anon);
    }
    end();

    tg_jwt_key_free(k1);
    tg_jwt_key_free(k2);
}

static void case_reason_text(void)
{
    begin("reason_text: a distinct text for every reason, \"unknown\" otherwise");
    const char *want[] = { "ok", "malformed token", "algorithm not allowed",
                           "no key for this token", "bad signature", "token expired",
                           "token not yet valid", "wrong audience", "wrong issuer" };
    for (int i = 0; i < (int) tg_nelem(want); i++)
        if (strcmp(tg_jwt_reason_text(i), want[i]) != 0)
            note("#   reason %d: got \"%s\", want \"%s\"\n", i, tg_jwt_reason_text(i), want[i]);
    EXPECT(strcmp(tg_jwt_reason_text(99), "unknown") == 0);
    EXPECT(strcmp(tg_jwt_reason_text(-1), "unknown") == 0);
    end();
}

/* Random inputs and mutations: nothing crashes or reads out of bounds
 * (ASan), and nothing but the original verifies. */
static void case_fuzz(void)
{
    char err[256];
    tg_jwt_key_t *hs = load("s3cret", err);
    tg_jwt_key_t *rk = load(rsa.pub_pem, err);
    tg_jwt_key_t *ek = load(ec521.pub_pem, err);
    char *seeds[] = { mint_hs(TG_JWT_HS256, "s3cret", PAYLOAD),
                      mint_pk(TG_JWT_RS256, rsa.pkey, PAYLOAD),
                      mint_pk(TG_JWT_ES512, ec521.pkey, PAYLOAD) };
    tg_jwt_key_t *keys[] = { hs, rk, ek };
    const char chars[] = "AZaz09-_.=+/ \"{}\\\x80\xff";
    unsigned seed = 12345;
    int oks = 0;

    begin("verify: 30000 random mutations: no crash, only unchanged tokens verify");
    for (int i = 0; i < 30000; i++) {
        int which = i % 3;
        const char *src = seeds[which];
        size_t n = strlen(src);
        char *t = tg_malloc(n + 64);
        memcpy(t, src, n + 1);
        int changed = 0;
        int edits = 1 + (int) ((seed = seed * 1103515245u + 12345u) >> 16) % 4;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % (n ? n : 1);
            seed = seed * 1103515245u + 12345u;
            switch ((seed >> 16) % 4) {
            case 0: { /* replace */
                char c = chars[(seed >> 4) % (sizeof(chars) - 1)];
                if (t[pos] != c) {
                    t[pos] = c;
                    changed = 1;
                }
                break;
            }
            case 1: /* truncate */
                if (pos < n) {
                    t[pos] = '\0';
                    n = pos;
                    changed = 1;
                }
                break;
            case 2: /* delete */
                if (pos < n) {
                    memmove(t + pos, t + pos + 1, n - pos);
                    n--;
                    changed = 1;
                }
                break;
            default: /* insert */
                memmove(t + pos + 1, t + pos, n - pos + 1);
                t[pos] = chars[(seed >> 4) % (sizeof(chars) - 1)];
                n++;
                changed = 1;
                break;
            }
            if (n + 2 >= strlen(src) + 64)
                break;
        }
        n = strlen(t);
        int r = tg_jwt_verify(&keys[which], 1, t, n, &(tg_jwt_opts_t) { 0 }, NOW, &res);
        if (r == TG_JWT_OK && (changed && strcmp(t, src) != 0)) {
            if (oks++ < 3)
                note("#   mutated token verified: %s\n", t);
        }
        if (r < 0 || r > TG_JWT_WRONG_ISSUER)
            note("#   reason out of range: %d\n", r);
        free(t);
    }
    EXPECT(oks == 0);
    end();

    tg_jwt_key_free(hs);
    tg_jwt_key_free(rk);
    tg_jwt_key_free(ek);
}

static void case_leaks(void)
{
    char err[256];
    begin("keys and verification do not leak (1000 key_new/free of each kind, LSan at exit)");
    for (int i = 0; i < 1000; i++) {
        tg_jwt_key_t *k = load(i % 4 == 0 ? "secret" : i % 4 == 1 ? rsa.pub_pem
                                   : i % 4 == 2 ? ec256.cert_pem : "-----BEGIN junk",
                               err);
        if (k) {
            tg_jwt_opts_t o = { .audience = "api\0" };
            tg_jwt_verify(&k, 1, "a.b.c", 5, &o, NOW, &res);
        }
        tg_jwt_key_free(k);
    }
    end();
}

/* ---- cases: JSON Web Keys (jwk.c) ------------------------------------------------ */

/* base64url of a BIGNUM, padded to `pad` bytes (0: its own size). */
static char *bn64(const BIGNUM *bn, int pad)
{
    int n = pad ? pad : BN_num_bytes(bn);
    unsigned char *buf = tg_malloc((size_t) n + 1);
    BN_bn2binpad(bn, buf, n);
    char *s = b64url(buf, (size_t) n);
    free(buf);
    return keep(s);
}

typedef struct jwk {
    char *n, *e, *x, *y;
} jwk_t;

static void jwk_rsa(EVP_PKEY *pkey, jwk_t *j)
{
    BIGNUM *n = NULL, *e = NULL;
    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e);
    j->n = bn64(n, 0);
    j->e = bn64(e, 0);
    j->x = j->y = NULL;
    BN_free(n);
    BN_free(e);
}

static void jwk_ec(EVP_PKEY *pkey, int bytes, jwk_t *j)
{
    BIGNUM *x = NULL, *y = NULL;
    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    j->x = bn64(x, bytes);
    j->y = bn64(y, bytes);
    j->n = j->e = NULL;
    BN_free(x);
    BN_free(y);
}

static tg_jwt_key_t *from_jwk(const char *kty, const char *crv, const jwk_t *j, const char *k,
                              const char *kid, const char *alg, char *err)
{
    err[0] = 'x';
    err[1] = '\0';
    return tg_jwt_key_from_jwk(kty, crv, j ? j->n : NULL, j ? j->e : NULL, j ? j->x : NULL,
                               j ? j->y : NULL, k, kid, alg, err, 256);
}

#define EXPECT_ERR(err, text)                                                             \
    do {                                                                                  \
        if (strstr((err), (text)) == NULL)                                                \
            note("#   %s:%d: error \"%s\" does not say \"%s\"\n", __FILE__, __LINE__, (err), \
                 (text));                                                                 \
    } while (0)

static void case_jwk_ok(void)
{
    char err[256];
    jwk_t j;

    begin("jwk: RSA (n, e) -> RS256/384/512; tokens its private key signed verify");
    jwk_rsa(rsa.pkey, &j);
    tg_jwt_key_t *k = from_jwk("RSA", NULL, &j, NULL, "r1", NULL, err);
    EXPECT(k != NULL);
    if (k == NULL) {
        note("#   refused: %s\n", err);
    } else {
        EXPECT(tg_jwt_key_algs(k) == RS_ALL);
        EXPECT(k->kid && strcmp(k->kid, "r1") == 0);
        EXPECT(err[0] == '\0');
        EXPECT_REASON(verify(k, mint_pk(TG_JWT_RS256, rsa.pkey, PAYLOAD)), TG_JWT_OK, "RS256");
        EXPECT_REASON(verify(k, mint_pk(TG_JWT_RS512, rsa.pkey, PAYLOAD)), TG_JWT_OK, "RS512");
        EXPECT_REASON(verify(k, mint_pk(TG_JWT_RS256, rsa2.pkey, PAYLOAD)),
                      TG_JWT_BAD_SIGNATURE, "signed by another RSA key");
    }
    tg_jwt_key_free(k);
    end();

    struct {
        tkey_t *key;
        const char *crv;
        int bytes, alg;
    } ec[] = {
        { &ec256, "P-256", 32, TG_JWT_ES256 },
        { &ec384, "P-384", 48, TG_JWT_ES384 },
        { &ec521, "P-521", 66, TG_JWT_ES512 },
    };
    for (size_t i = 0; i < tg_nelem(ec); i++) {
        char desc[120];
        snprintf(desc, sizeof(desc), "jwk: EC %s (x, y) -> %s only; its tokens verify", ec[i].crv,
                 alg_name(ec[i].alg));
        begin(desc);
        jwk_ec(ec[i].key->pkey, ec[i].bytes, &j);
        k = from_jwk("EC", ec[i].crv, &j, NULL, NULL, NULL, err);
        EXPECT(k != NULL);
        if (k == NULL) {
            note("#   refused: %s\n", err);
        } else {
            EXPECT(tg_jwt_key_algs(k) == ec[i].alg);
            EXPECT(k->ec_bytes == ec[i].bytes);
            EXPECT_REASON(verify(k, mint_pk(ec[i].alg, ec[i].key->pkey, PAYLOAD)), TG_JWT_OK,
                          ec[i].crv);
        }
        tg_jwt_key_free(k);
        end();
    }

    begin("jwk: oct (k) -> an HMAC secret of the decoded bytes, whatever they look like");
    {
        /* bytes that would look like PEM to tg_jwt_key_new stay a secret */
        const char *raw = "-----BEGIN PUBLIC KEY-----\n\x01\x02";
        char *k64 = keep(b64url((const unsigned char *) raw, strlen(raw)));
        k = from_jwk("oct", NULL, NULL, k64, "h1", NULL, err);
        EXPECT(k != NULL && k->pkey == NULL && k->secret_len == strlen(raw));
        if (k) {
            EXPECT(tg_jwt_key_algs(k) == HS_ALL);
            EXPECT_REASON(verify(k, mint_hs(TG_JWT_HS384, raw, PAYLOAD)), TG_JWT_OK, "HS384");
            EXPECT_REASON(verify(k, mint_hs(TG_JWT_HS256, "other", PAYLOAD)),
                          TG_JWT_BAD_SIGNATURE, "another secret");
        }
        tg_jwt_key_free(k);
    }
    end();

    begin("jwk: alg restricts the key to that algorithm");
    jwk_rsa(rsa.pkey, &j);
    k = from_jwk("RSA", NULL, &j, NULL, NULL, "RS384", err);
    EXPECT(k != NULL);
    if (k) {
        EXPECT(tg_jwt_key_algs(k) == TG_JWT_RS384);
        EXPECT_REASON(verify(k, mint_pk(TG_JWT_RS384, rsa.pkey, PAYLOAD)), TG_JWT_OK, "RS384");
        EXPECT_REASON(verify(k, mint_pk(TG_JWT_RS256, rsa.pkey, PAYLOAD)),
                      TG_JWT_ALG_NOT_ALLOWED, "RS256 with an RS384 key");
    }
    tg_jwt_key_free(k);
    k = from_jwk("oct", NULL, NULL, "c2VjcmV0", NULL, "HS512", err);
    EXPECT(k != NULL && tg_jwt_key_algs(k) == TG_JWT_HS512);
    tg_jwt_key_free(k);
    end();

    begin("jwk: one or two '=' of padding are tolerated; leading zeros in n are fine");
    {
        k = from_jwk("oct", NULL, NULL, "c2VjcmV0MQ==", NULL, NULL, err); /* "secret1" */
        EXPECT(k != NULL && k->secret_len == 7 && memcmp(k->secret, "secret1", 7) == 0);
        tg_jwt_key_free(k);
        BIGNUM *n = NULL;
        EVP_PKEY_get_bn_param(rsa.pkey, OSSL_PKEY_PARAM_RSA_N, &n);
        jwk_rsa(rsa.pkey, &j);
        j.n = bn64(n, BN_num_bytes(n) + 1);
        BN_free(n);
        k = from_jwk("RSA", NULL, &j, NULL, NULL, NULL, err);
        EXPECT(k != NULL);
        if (k)
            EXPECT_REASON(verify(k, mint_pk(TG_JWT_RS256, rsa.pkey, PAYLOAD)), TG_JWT_OK,
                          "n with a leading zero byte");
        tg_jwt_key_free(k);
    }
    end();
}

static void case_jwk_refused(void)
{
    char err[256];
    jwk_t r, e, bad;
    jwk_rsa(rsa.pkey, &r);
    jwk_ec(ec256.pkey, 32, &e);

    struct {
        const char *desc, *kty, *crv;
        jwk_t *j;
        const char *k, *alg, *want;
    } cases[] = {
        { "no kty", NULL, NULL, &r, NULL, NULL, "no \"kty\"" },
        { "unknown kty (OKP)", "OKP", NULL, &r, NULL, NULL, "unknown kty \"OKP\"" },
        { "kty in the wrong case", "rsa", NULL, &r, NULL, NULL, "unknown kty" },
        { "RSA without n", "RSA", NULL, &e, NULL, NULL, "RSA key without \"n\"" },
        { "EC without crv", "EC", NULL, &e, NULL, NULL, "EC key without \"crv\"" },
        { "EC on an unknown crv", "EC", "P-192", &e, NULL, NULL, "unknown crv \"P-192\"" },
        { "EC on secp256k1", "EC", "secp256k1", &e, NULL, NULL, "unknown crv" },
        { "EC without x and y", "EC", "P-256", NULL, NULL, NULL, "EC key without \"x\"" },
        { "EC P-256 coordinates given as P-384", "EC", "P-384", &e, NULL, NULL,
          "coordinates are 48 bytes" },
        { "oct without k", "oct", NULL, NULL, NULL, NULL, "oct key without \"k\"" },
        { "oct with an empty k", "oct", NULL, NULL, "", NULL, "oct key without \"k\"" },
        { "oct with k not base64url ('+')", "oct", NULL, NULL, "ab+d", NULL,
          "\"k\" is not base64url" },
        { "oct with k not base64url (one char)", "oct", NULL, NULL, "a", NULL,
          "\"k\" is not base64url" },
        { "oct with three '='", "oct", NULL, NULL, "YQ===", NULL, "\"k\" is not base64url" },
        { "unknown alg (PS256)", "RSA", NULL, &r, NULL, "PS256", "alg \"PS256\" is not" },
        { "alg none", "oct", NULL, NULL, "c2VjcmV0", "none", "alg \"none\" is not" },
        { "alg of another type (ES256 on an RSA key)", "RSA", NULL, &r, NULL, "ES256",
          "alg ES256 does not fit this RSA key" },
        { "alg of another curve (ES384 on P-256)", "EC", "P-256", &e, NULL, "ES384",
          "alg ES384 does not fit this EC P-256 key" },
        { "alg HS256 on an RSA key", "RSA", NULL, &r, NULL, "HS256", "does not fit" },
    };
    for (size_t i = 0; i < tg_nelem(cases); i++) {
        char desc[160];
        snprintf(desc, sizeof(desc), "jwk: refused with a message: %s", cases[i].desc);
        begin(desc);
        tg_jwt_key_t *k = from_jwk(cases[i].kty, cases[i].crv, cases[i].j, cases[i].k, NULL,
                                   cases[i].alg, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, cases[i].want);
        tg_jwt_key_free(k);
        end();
    }

    begin("jwk: RSA n not base64url");
    bad = r;
    bad.n = keep(tg_strndup(r.n, strlen(r.n)));
    bad.n[10] = '/';
    tg_jwt_key_t *k = from_jwk("RSA", NULL, &bad, NULL, NULL, NULL, err);
    EXPECT(k == NULL);
    EXPECT_ERR(err, "\"n\" is not base64url");
    tg_jwt_key_free(k);
    end();

    begin("jwk: an RSA modulus under 2048 bits (1024) is refused, saying its size");
    {
        tkey_t small;
        key_rsa(&small, 1024, 2);
        jwk_t s1;
        jwk_rsa(small.pkey, &s1);
        k = from_jwk("RSA", NULL, &s1, NULL, NULL, NULL, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, "RSA modulus too small: 1024 bits (at least 2048)");
        tg_jwt_key_free(k);
        tkey_free(&small);
    }
    end();

    begin("jwk: an even modulus, an even or unit exponent are refused");
    {
        bad = r;
        unsigned char nb[256];
        memset(nb, 0xff, sizeof(nb));
        nb[255] = 0xfe;
        bad.n = keep(b64url(nb, sizeof(nb)));
        k = from_jwk("RSA", NULL, &bad, NULL, NULL, NULL, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, "\"n\" is not an RSA modulus");
        tg_jwt_key_free(k);
        bad = r;
        bad.e = "AQ"; /* 1 */
        k = from_jwk("RSA", NULL, &bad, NULL, NULL, NULL, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, "\"e\" is not a usable RSA public exponent");
        tg_jwt_key_free(k);
        bad.e = "AQAA"; /* 65536 */
        k = from_jwk("RSA", NULL, &bad, NULL, NULL, NULL, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, "\"e\" is not");
        tg_jwt_key_free(k);
    }
    end();

    begin("jwk: an EC point not on the curve is refused");
    {
        bad = e;
        unsigned char yb[32];
        size_t n = (size_t) tg_jwt_b64url_decode(e.y, strlen(e.y), yb);
        EXPECT(n == 32);
        yb[31] ^= 1;
        bad.y = keep(b64url(yb, 32));
        k = from_jwk("EC", "P-256", &bad, NULL, NULL, NULL, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, "not on curve P-256");
        tg_jwt_key_free(k);
        /* (0, 0) */
        memset(yb, 0, sizeof(yb));
        bad.x = bad.y = keep(b64url(yb, 32));
        k = from_jwk("EC", "P-256", &bad, NULL, NULL, NULL, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, "not on curve P-256");
        tg_jwt_key_free(k);
    }
    end();

    begin("jwk: a member far too long is refused before decoding");
    {
        char *huge = keep(tg_malloc(10000));
        memset(huge, 'A', 9999);
        huge[9999] = '\0';
        k = from_jwk("oct", NULL, NULL, huge, NULL, NULL, err);
        EXPECT(k == NULL);
        EXPECT_ERR(err, "\"k\" is too long");
        tg_jwt_key_free(k);
    }
    end();

    begin("jwk: the error fits a small buffer");
    {
        char small[8];
        k = tg_jwt_key_from_jwk("OKP", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, small,
                                sizeof(small));
        EXPECT(k == NULL && memchr(small, '\0', sizeof(small)) != NULL);
    }
    end();
}

static void case_jwk_set(void)
{
    char err[256];
    jwk_t r, r2, e;
    jwk_rsa(rsa.pkey, &r);
    jwk_rsa(rsa2.pkey, &r2);
    jwk_ec(ec256.pkey, 32, &e);
    tg_jwt_key_t *set[3] = {
        from_jwk("RSA", NULL, &r, NULL, "rsa-1", NULL, err),
        from_jwk("RSA", NULL, &r2, NULL, "rsa-2", NULL, err),
        from_jwk("EC", "P-256", &e, NULL, "ec-1", NULL, err),
    };
    tg_jwt_opts_t o = { 0 };
    const char *pl = "{\"sub\":\"a\"}";

    begin("jwk set: RS256 and ES256 tokens pick their key by kid");
    EXPECT(set[0] && set[1] && set[2]);
    if (set[0] && set[1] && set[2]) {
        char *t1 = mint_ex("{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", pl, TG_JWT_RS256, NULL, 0,
                           rsa.pkey, 0);
        char *t2 = mint_ex("{\"alg\":\"RS256\",\"kid\":\"rsa-2\"}", pl, TG_JWT_RS256, NULL, 0,
                           rsa2.pkey, 0);
        char *t3 = mint_ex("{\"alg\":\"ES256\",\"kid\":\"ec-1\"}", pl, TG_JWT_ES256, NULL, 0,
                           ec256.pkey, 0);
        char *wrong = mint_ex("{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", pl, TG_JWT_RS256, NULL, 0,
                              rsa2.pkey, 0);
        char *unknown = mint_ex("{\"alg\":\"RS256\",\"kid\":\"rsa-3\"}", pl, TG_JWT_RS256, NULL,
                                0, rsa.pkey, 0);
        char *es_as_rs = mint_ex("{\"alg\":\"ES256\",\"kid\":\"rsa-1\"}", pl, TG_JWT_ES256, NULL,
                                 0, ec256.pkey, 0);
        char *nokid = mint_ex("{\"alg\":\"RS256\"}", pl, TG_JWT_RS256, NULL, 0, rsa2.pkey, 0);
        char *nokid_es = mint_ex("{\"alg\":\"ES256\"}", pl, TG_JWT_ES256, NULL, 0, ec256.pkey, 0);
        EXPECT_REASON(tg_jwt_verify(set, 3, t1, strlen(t1), &o, NOW, &res), TG_JWT_OK, "rsa-1");
        EXPECT_REASON(tg_jwt_verify(set, 3, t2, strlen(t2), &o, NOW, &res), TG_JWT_OK, "rsa-2");
        EXPECT_REASON(tg_jwt_verify(set, 3, t3, strlen(t3), &o, NOW, &res), TG_JWT_OK, "ec-1");
        EXPECT_REASON(tg_jwt_verify(set, 3, wrong, strlen(wrong), &o, NOW, &res),
                      TG_JWT_BAD_SIGNATURE, "kid rsa-1, signed by rsa-2");
        EXPECT_REASON(tg_jwt_verify(set, 3, unknown, strlen(unknown), &o, NOW, &res),
                      TG_JWT_NO_KEY, "kid rsa-3");
        EXPECT_REASON(tg_jwt_verify(set, 3, es_as_rs, strlen(es_as_rs), &o, NOW, &res),
                      TG_JWT_ALG_NOT_ALLOWED, "ES256 naming an RSA key");
        EXPECT_REASON(tg_jwt_verify(set, 3, nokid, strlen(nokid), &o, NOW, &res), TG_JWT_OK,
                      "RS256 without kid: the RSA keys are tried");
        EXPECT_REASON(tg_jwt_verify(set, 3, nokid_es, strlen(nokid_es), &o, NOW, &res),
                      TG_JWT_OK, "ES256 without kid");
        o.algorithms = TG_JWT_ES256;
        EXPECT_REASON(tg_jwt_verify(set, 3, t1, strlen(t1), &o, NOW, &res),
                      TG_JWT_ALG_NOT_ALLOWED, "algorithms: [ES256]");
        o.algorithms = 0;
    }
    end();
    for (int i = 0; i < 3; i++)
        tg_jwt_key_free(set[i]);

    begin("jwk: no leaks (500 keys of each type made and freed, refusals too; LSan at exit)");
    for (int i = 0; i < 500; i++) {
        tg_jwt_key_free(from_jwk("RSA", NULL, &r, NULL, "k", NULL, err));
        tg_jwt_key_free(from_jwk("EC", "P-256", &e, NULL, "k", NULL, err));
        tg_jwt_key_free(from_jwk("oct", NULL, NULL, "c2VjcmV0", "k", "HS256", err));
        tg_jwt_key_free(from_jwk("EC", "P-384", &e, NULL, NULL, NULL, err));
        tg_jwt_key_free(from_jwk("RSA", NULL, &r, NULL, NULL, "ES256", err));
    }
    end();
}

/* The base64url decoder (four characters at a time, then a tail of two or
 * three): every length round-trips, and invalid or non-canonical input is
 * refused wherever it sits. */
static void case_b64url(void)
{
    begin("b64url: round trips of 0..64 bytes; bad characters and trailing bits refused");
    unsigned char data[64], out[64];
    for (int i = 0; i < 64; i++)
        data[i] = (unsigned char) (i * 37 + 11);
    for (size_t n = 0; n <= 64; n++) {
        char *e = b64url(data, n);
        size_t el = strlen(e);
        ssize_t got = tg_jwt_b64url_decode(e, el, out);
        if (got != (ssize_t) n || memcmp(out, data, n) != 0)
            note("#   %zu bytes: decoded %zd\n", n, got);
        for (size_t k = 0; k < el; k++) {
            char saved = e[k];
            const char bad[] = { '=', '+', '/', '.', ' ', '\0', (char) 0x80 };
            for (size_t b = 0; b < sizeof(bad); b++) {
                e[k] = bad[b];
                if (tg_jwt_b64url_decode(e, el, out) != -1)
                    note("#   %zu bytes: 0x%02x at %zu accepted\n", n, (unsigned char) bad[b], k);
            }
            e[k] = saved;
        }
        free(e);
    }
    EXPECT(tg_jwt_b64url_decode("QQ", 2, out) == 1 && out[0] == 0x41);
    EXPECT(tg_jwt_b64url_decode("QR", 2, out) == -1);   /* low bits of R set */
    EXPECT(tg_jwt_b64url_decode("QUI", 3, out) == 2);
    EXPECT(tg_jwt_b64url_decode("QUJ", 3, out) == -1);
    EXPECT(tg_jwt_b64url_decode("QUJD", 4, out) == 3 && memcmp(out, "ABC", 3) == 0);
    EXPECT(tg_jwt_b64url_decode("QUJDR", 5, out) == -1); /* n % 4 == 1 */
    end();
}

int main(void)
{
    key_rsa(&rsa, 2048, 2);
    key_rsa(&rsa2, 2048, 2);
    key_ec(&ec256, "P-256");
    key_ec(&ec384, "P-384");
    key_ec(&ec521, "P-521");

    case_key_secret();
    case_key_pem();
    case_key_garbage();
    case_verify_ok();
    case_malformed();
    case_alg();
    case_signature();
    case_time();
    case_claims();
    case_kid();
    case_jwk_ok();
    case_jwk_refused();
    case_jwk_set();
    case_reason_text();
    case_b64url();
    case_fuzz();
    case_leaks();

    tkey_free(&rsa);
    tkey_free(&rsa2);
    tkey_free(&ec256);
    tkey_free(&ec384);
    tkey_free(&ec521);
    for (int i = 0; i < npool; i++)
        free(pool[i]);
    printf("1..%d\n", count);
    if (failures)
        printf("# %d of %d failed\n", failures, count);
    return failures ? 1 : 0;
}
