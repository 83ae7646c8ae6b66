/*
 * Unit test for runtime/jsonscan.c: the strict JSON object scanner JWT
 * verification uses for headers and claims. Output is TAP-like ("ok N -
 * ..."); the exit status is non-zero if any case failed.
 *
 *   make build/spec/test_jsonscan && build/spec/test_jsonscan
 */
#include "../../runtime/jsonscan.c"

#include <stdio.h>
#include <string.h>

#include "tap.h"

static int scan(const char *text, tg_json_member_t *m, int n)
{
    return tg_json_scan_object(text, strlen(text), m, n);
}

static int valid(const char *text)
{
    return scan(text, NULL, 0) == 0;
}

static void valid_and_invalid(void)
{
    static const char *const good[] = {
        "{}", " {} ", "\t{\r\n}\n", "{\"a\":1}", "{\"a\":-0.5e+10,\"b\":0,\"c\":1E3}",
        "{\"a\":[1,\"x\",{\"b\":null},[],{}],\"t\":true,\"f\":false}",
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\ud83d\\ude00\"}",
        "{\"u\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", "{\"\":\"\"}",
    };
    static const char *const bad[] = {
        "", "[]", "\"x\"", "1", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}",
        "{\"a\":1}x", "{\"a\":1}{}", "{'a':1}", "{a:1}", "{\"a\":01}", "{\"a\":1.}",
        "{\"a\":.5}", "{\"a\":+1}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":tru}", "{\"a\":nul}",
        "{\"a\":NaN}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}",
        "{\"a\":\"tab\there\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf5\x80\x80\x80\"}", "{\"a\":\"\xe2\x82\"}", "{\"a\":\"open}",
        "{\"a\":1 \"b\":2}", "{\"a\" 1}",
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!valid(good[i])) {
            printf("#   refused: %s\n", good[i]);
            ok = 0;
        }
    report(ok, "valid objects are accepted");
    ok = 1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (valid(bad[i])) {
            printf("#   accepted: %s\n", bad[i]);
            ok = 0;
        }
    report(ok, "invalid JSON and non-objects are refused");
    /* a NUL inside the text is not JSON */
    report(tg_json_scan_object("{\"a\":1}\0", 8, NULL, 0) < 0 &&
               tg_json_scan_object("{\"a\":\"x\0y\"}", 11, NULL, 0) < 0,
           "NUL bytes are refused, inside and after the object");
}

static void depth(void)
{
    char buf[2 * (TG_JSON_MAX_DEPTH + 4) + 16];
    for (int levels = TG_JSON_MAX_DEPTH - 1; levels <= TG_JSON_MAX_DEPTH + 1; levels++) {
        /* {"a": [[...]]} : the object is level 1 */
        size_t n = 0;
        n += (size_t) sprintf(buf, "{\"a\":");
        for (int i = 0; i < levels - 1; i++)
            buf[n++] = '[';
        for (int i = 0; i < levels - 1; i++)
            buf[n++] = ']';
        buf[n++] = '}';
        buf[n] = '\0';
        int r = tg_json_scan_object(buf, n, NULL, 0);
        if ((levels <= TG_JSON_MAX_DEPTH) != (r == 0)) {
            report(0, "nesting is limited to TG_JSON_MAX_DEPTH levels");
            return;
        }
    }
    report(1, "nesting is limited to TG_JSON_MAX_DEPTH levels");
}

static void members(void)
{
    tg_json_member_t m[4] = { { .name = "alg" }, { .name = "exp" }, { .name = "aud" },
                              { .name = "kid" } };
    int r = scan("{\"x\":{\"alg\":\"inner\"},\"alg\":\"RS256\",\"exp\":  12.5e1 ,"
                 "\"aud\":[\"a\",\"b\\u0063\"]}", m, 4);
    report(r == 0 && m[0].type == TG_JSON_STRING && m[0].len == 5 &&
               memcmp(m[0].raw, "RS256", 5) == 0,
           "a top-level string member: its text without quotes (nested ones are not taken)");
    report(m[1].type == TG_JSON_NUMBER && m[1].len == 6 && memcmp(m[1].raw, "12.5e1", 6) == 0,
           "a number member: its text");
    report(m[3].type == TG_JSON_NONE && m[3].raw == NULL, "an absent member: TG_JSON_NONE");

    size_t pos = 0, elen;
    int type, seen = 0;
    const char *e;
    char out[16];
    char got[2][16];
    while (tg_json_array_next(m[2].raw, m[2].len, &pos, &type, &e, &elen)) {
        ssize_t n = tg_json_unescape(e, elen, out, sizeof(out));
        if (seen < 2 && type == TG_JSON_STRING && n >= 0) {
            memcpy(got[seen], out, (size_t) n);
            got[seen][n] = '\0';
        }
        seen++;
    }
    report(m[2].type == TG_JSON_ARRAY && seen == 2 && strcmp(got[0], "a") == 0 &&
               strcmp(got[1], "bc") == 0,
           "array elements iterate, strings unescape");

    tg_json_member_t e1[1] = { { .name = "alg" } };
    report(scan("{\"alg\":\"a\",\"alg\":\"b\"}", e1, 1) < 0 &&
               scan("{\"alg\":\"a\",\"\\u0061lg\":\"b\"}", e1, 1) < 0,
           "a wanted member given twice (also escaped) is an error");
    report(scan("{\"x\":1,\"x\":2}", e1, 1) == 0, "other duplicate members are left alone");
    report(scan("{\"\\u0061lg\":\"HS256\"}", e1, 1) == 0 && e1[0].type == TG_JSON_STRING,
           "member names are compared unescaped");
}

static void unescape(void)
{
    char out[32];
    const char *in = "a\\\"\\\\\\/\\n\\u00e9\\u20ac\\ud83d\\ude00";
    ssize_t n = tg_json_unescape(in, strlen(in), out, sizeof(out));
    report(n == 14 && memcmp(out, "a\"\\/\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 14) == 0,
           "unescape: simple escapes and \\u as UTF-8, surrogate pairs joined");
    report(tg_json_unescape("abcdef", 6, out, 5) < 0 && tg_json_unescape("\\u20ac", 6, out, 2) < 0,
           "unescape: -1 when it does not fit");
    n = tg_json_unescape("a\\u0000b", 8, out, sizeof(out));
    report(n == 3 && out[1] == '\0', "unescape: \\u0000 is a NUL byte (callers check)");
}

int main(void)
{
    valid_and_invalid();
    depth();
    members();
    unescape();
    return tap_done();
}
