/*
 * http1_response.c: upstream responses: the http-parser callbacks over the
 * exchange's read buffer. 1xx heads are dropped; a final head is checked as
 * a request head is (CRLF lines, token names, no control characters in
 * values; an invalid one is TG_ERROR, which the caller answers with a 502);
 * body bytes go to the client connection as they are parsed; the
 * upstream's close ends a body that has no length (tg_http1_response_eof).
 */
#include "http1_int.h"

static int resp_on_field(http_parser *p, const char *at, size_t len)
{
    tg_req_t *r = p->data;
    return tg_http1_header_piece(&r->arena, &r->proxy.headers, &r->proxy.hstate,
                                 r->proxy.rbuf.data, at, len, 1);
}

static int resp_on_value(http_parser *p, const char *at, size_t len)
{
    tg_req_t *r = p->data;
    return tg_http1_header_piece(&r->arena, &r->proxy.headers, &r->proxy.hstate,
                                 r->proxy.rbuf.data, at, len, 0);
}

static int resp_on_headers_complete(http_parser *p)
{
    tg_req_t *r = p->data;
    tg_proxy_t *px = &r->proxy;
    const char *base = px->rbuf.data;

    if (p->status_code < 100 || p->status_code > 999)
        return -1; /* not three digits (http-parser takes "2" and "000") */
    if (p->status_code == 101 && !(r->upgrade && (px->flags & TG_PROXY_WS)))
        return -1; /* switching protocols nobody asked for: an invalid response */
    if (p->status_code / 100 == 1 && p->status_code != 101) {
        /* Interim response (100 Continue, 103...): dropped, and never has
         * content (RFC 9110 15.2), whatever its framing headers say; the
         * final response follows on the same connection. */
        px->headers.n = 0;
        px->interim = 1;
        return 1;
    }
    /* As a request's (head_complete): names are tokens ("X-A : b" is not,
     * RFC 9112 5.1); values are checked with the whole head
     * (tg_http1_clean_head, in tg_http1_parse_response). */
    for (uint32_t i = 0; i < px->headers.n; i++) {
        tg_header_t *h = &px->headers.items[i];
        int kind = tg_http1_name_kind(base + h->name, h->name_len);
        if (kind < 0)
            return -1;
        h->kind = (uint8_t) kind;
    }
    tg_http1_trim_values(&px->headers, base);
    r->status = p->status_code;
    px->resp_length = (p->flags & F_CONTENTLENGTH) && !(p->flags & F_CHUNKED)
                          ? p->content_length : UINT64_MAX;
    px->upgraded = p->status_code == 101;
    px->skip_body = r->head_request || p->status_code == 204 || p->status_code == 304 ||
                    px->upgraded;
    px->head_done = 1;
    px->hstate = H_TRAILER;
    http_parser_pause(p, 1);
    return px->skip_body ? 1 : 0;
}

static int resp_on_body(http_parser *p, const char *at, size_t len)
{
    tg_req_t *r = p->data;
    if (tg_http1_body_framing(&r->proxy.framing, at, len, p->content_length))
        return 1;
    tg_conn_body_data(r, at, len);
    return 0;
}

static int resp_on_message_complete(http_parser *p)
{
    tg_req_t *r = p->data;
    if (r->proxy.interim) {
        r->proxy.interim = 0;
        r->proxy.hstate = H_NONE;
        return 0;
    }
    r->proxy.body_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static http_parser_settings response_settings = {
    .on_header_field = resp_on_field,
    .on_header_value = resp_on_value,
    .on_headers_complete = resp_on_headers_complete,
    .on_body = resp_on_body,
    .on_message_complete = resp_on_message_complete,
};

void tg_http1_response_begin(tg_req_t *r)
{
    http_parser_init(&r->proxy.parser, HTTP_RESPONSE);
    r->proxy.parser.data = r;
    r->proxy.headers.n = 0;
    r->proxy.head_done = r->proxy.body_done = r->proxy.interim = 0;
    r->proxy.hstate = H_NONE;
    r->proxy.framing = FR_BOL;
}

int tg_http1_parse_response(tg_req_t *r)
{
    tg_proxy_t *px = &r->proxy;
    tg_buf_t *b = &px->rbuf;
    int had_head = px->head_done;

    tg_http1_head_error = 0;
    tg_http1_unchecked = had_head && (px->parser.flags & F_CHUNKED) ? b->data + b->pos : NULL;
    size_t n = http_parser_execute(&px->parser, &response_settings, b->data + b->pos,
                                   b->len - b->pos);
    b->pos += n;
    if (!tg_http1_rest_framing(&px->framing, b->data + b->pos))
        return TG_ERROR;
    enum http_errno e = HTTP_PARSER_ERRNO(&px->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&px->parser, 0);
        if (!had_head && px->head_done) {
            /* As on the request side: consume the head's final LF. */
            n = http_parser_execute(&px->parser, &response_settings, b->data + b->pos, 1);
            b->pos += n;
            e = HTTP_PARSER_ERRNO(&px->parser);
            if (e == HPE_PAUSED)
                http_parser_pause(&px->parser, 0);
            else if (e != HPE_OK)
                return TG_ERROR;
            px->head_len = (uint32_t) b->pos;
            /* the head, 1xx ones before it included */
            if (!tg_http1_clean_head(b->data, px->head_len))
                return TG_ERROR;
        }
        return TG_OK;
    }
    if (e != HPE_OK)
        return TG_ERROR;
    return TG_AGAIN;
}

/* The upstream closed: completes a close-delimited body; TG_ERROR when the
 * response was cut short. */
int tg_http1_response_eof(tg_req_t *r)
{
    tg_proxy_t *px = &r->proxy;
    if (px->body_done)
        return TG_OK;
    if (!px->head_done)
        return TG_ERROR;
    http_parser_execute(&px->parser, &response_settings, NULL, 0);
    enum http_errno e = HTTP_PARSER_ERRNO(&px->parser);
    if (e == HPE_PAUSED)
        http_parser_pause(&px->parser, 0);
    return px->body_done ? TG_OK : TG_ERROR;
}

int tg_http1_response_keepalive(tg_req_t *r)
{
    return http_should_keep_alive(&r->proxy.parser);
}
