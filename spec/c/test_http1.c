/*
 * Unit test for the head checks of runtime/http1.c that every request and
 * upstream response goes through: tg_http1_clean_head (CRLF line ends, no
 * control characters; sixteen bytes at a time, so the cases put the bytes
 * that matter on both sides of a block boundary) and tg_http1_name_kind
 * (tokens, and the names the runtime acts on). Output is TAP-like; the exit
 * status is non-zero if any case failed.
 *
 *   make build/spec/test_http1 && build/spec/test_http1
 */
#include "../../runtime/http1.c"
#include "../../runtime/core.c"

#include <stdio.h>
#include <string.h>

/* http1.c's header callbacks use this; the cases here never reach it. */
tg_header_t *tg_headers_push(tg_arena_t *a, tg_headers_t *h)
{
    (void) a;
    (void) h;
    abort();
}

#include "tap.h"

/* head with the byte at offset `at` replaced by ch (at < 0: unchanged). */
static int clean_with(const char *head, long at, char ch)
{
    char buf[512];
    size_t n = strlen(head);
    memcpy(buf, head, n);
    if (at >= 0)
        buf[at] = ch;
    return tg_http1_clean_head(buf, n);
}

static void clean_head(void)
{
    /* 15 bytes, then a line whose CR is byte 31 and LF byte 32: a CRLF
     * split across two blocks. */
    static const char split[] = "GET / HTTP/1.1\r\n"
                                "Host: abcdefghi\r\n"
                                "X-Long-Header-Name: value with\ttab \x80\xff obs-text\r\n\r\n";
    char buf[512];

    report(clean_with(split, -1, 0), "a clean head (tab, obs-text, CRLF across blocks)");
    report(split[31] == '\r' && split[32] == '\n', "the case does split a CRLF across blocks");
    report(!clean_with(split, 32, 'x'), "a CR at the end of a block without its LF");
    report(!clean_with(split, 31, 'x'), "an LF at the start of a block without its CR");
    report(!clean_with(split, 31, '\n'), "LF LF across a block boundary");
    report(!clean_with(split, 20, '\r'), "a bare CR inside a line");
    report(!clean_with(split, 20, '\n'), "a bare LF inside a line");
    report(!clean_with(split, 40, '\0'), "NUL in a value");
    report(!clean_with(split, 40, 0x7f), "DEL in a value");
    report(!clean_with(split, 40, 0x0b), "vertical tab in a value");
    report(!clean_with(split, 5, '\f'), "form feed in the request line");

    /* every offset of a longer head, in the SSE part and in the tail */
    size_t n = strlen(split);
    int all = 1;
    for (size_t i = 0; i < n - 4; i++) {
        if (split[i] == '\r' || split[i] == '\n')
            continue;
        memcpy(buf, split, n);
        buf[i] = 0x01;
        all &= !tg_http1_clean_head(buf, n);
        buf[i] = '\n';
        all &= !tg_http1_clean_head(buf, n);
        buf[i] = '\r';
        all &= !tg_http1_clean_head(buf, n);
    }
    report(all, "a control byte, bare LF or bare CR at any offset is refused");

    report(!tg_http1_clean_head("GET / HTTP/1.1\r\n\r", 17), "a head that does not end with CRLF CRLF");
    report(!tg_http1_clean_head("\r\n\r", 3), "shorter than four bytes");
    report(tg_http1_clean_head("\r\n\r\n", 4), "an empty head (tail only)");
    report(!tg_http1_clean_head("GET / HTTP/1.1\n\r\n\r\n", 19), "LF without CR in the tail");
}

static void name_kind(void)
{
    report(tg_http1_name_kind("Host", 4) == TG_HK_HOST, "Host");
    report(tg_http1_name_kind("hOsT", 4) == TG_HK_HOST, "hOsT, case-insensitive");
    report(tg_http1_name_kind("Date", 4) == TG_HK_DATE, "Date");
    report(tg_http1_name_kind("Hosts", 5) == TG_HK_OTHER, "Hosts is another header");
    report(tg_http1_name_kind("TRANSFER-ENCODING", 17) == TG_HK_TRANSFER_ENCODING,
           "TRANSFER-ENCODING");
    report(tg_http1_name_kind("X-Forwarded-Proto", 17) == TG_HK_XF_PROTO, "X-Forwarded-Proto");
    report(tg_http1_name_kind("x-forwarded-host", 16) == TG_HK_XF_HOST, "x-forwarded-host");
    report(tg_http1_name_kind("Proxy-Connection", 16) == TG_HK_PROXY_CONNECTION,
           "Proxy-Connection");
    report(tg_http1_name_kind("Keep-Alive", 10) == TG_HK_KEEP_ALIVE, "Keep-Alive");
    report(tg_http1_name_kind("Connectio\r", 10) == -1, "CR in a name");
    report(tg_http1_name_kind("Host ", 5) == -1, "a space in a name");
    report(tg_http1_name_kind("", 0) == -1, "an empty name");
    /* '\r' | 0x20 is '-': only a token check before the compare keeps
     * "keep\ralive" from reading as keep-alive */
    report(tg_http1_name_kind("keep\ralive", 10) == -1, "keep<CR>alive is no token");
    report(tg_http1_name_kind("Upgrade", 7) == TG_HK_UPGRADE &&
               tg_http1_name_kind("Trailer", 7) == TG_HK_TRAILER &&
               tg_http1_name_kind("Expect", 6) == TG_HK_EXPECT &&
               tg_http1_name_kind("TE", 2) == TG_HK_TE &&
               tg_http1_name_kind("Content-Length", 14) == TG_HK_CONTENT_LENGTH,
           "the other hop-by-hop names");
    int hop = 1;
    for (int k = TG_HK_TE; k <= TG_HK_TRANSFER_ENCODING; k++)
        hop &= (TG_HK_HOP_BITS & TG_HK_BIT(k)) != 0;
    hop &= !(TG_HK_HOP_BITS & TG_HK_BIT(TG_HK_OTHER)) && !(TG_HK_HOP_BITS & TG_HK_BIT(TG_HK_HOST));
    report(hop, "TG_HK_HOP_BITS holds exactly the hop-by-hop kinds");
}

int main(void)
{
    clean_head();
    name_kind();
    return tap_done();
}
