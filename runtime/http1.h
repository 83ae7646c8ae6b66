/*
 * http1.h: HTTP/1.x on the wire, both directions: parsing client request
 * heads and bodies and upstream responses with http-parser, and writing the
 * heads the gateway sends (upstream requests, client responses).
 *
 * The parse functions work on the buffers of a connection or an upstream
 * exchange and never do I/O. Their results:
 *   TG_OK     the thing asked for is complete (head, body, response);
 *   TG_AGAIN  more bytes are needed, or the consumer asked to stop;
 *   >= 400    a client error: the status to answer with (request side);
 *   TG_ERROR  the upstream sent something invalid (response side).
 */
#ifndef TG_HTTP1_H
#define TG_HTTP1_H

#include "conn.h"

void tg_http1_init(size_t max_head_size);

/* Client side. */
void tg_http1_request_begin(tg_conn_t *c);
int tg_http1_parse_head(tg_conn_t *c);
int tg_http1_parse_body(tg_conn_t *c);
const char *tg_http1_error_reason(tg_conn_t *c);

/* Upstream side. */
void tg_http1_response_begin(tg_req_t *r);
int tg_http1_parse_response(tg_req_t *r);
int tg_http1_response_eof(tg_req_t *r);
int tg_http1_response_keepalive(tg_req_t *r);

/* Heads the gateway writes. */
void tg_http1_request_head(tg_req_t *r, tg_buf_t *out);
void tg_http1_response_head(tg_req_t *r, tg_buf_t *out);
/* Appends body bytes, as one chunk when `chunked`. */
void tg_http1_body(tg_buf_t *out, const char *p, size_t n, int chunked);

const char *tg_http_reason(int status);
/* The current time as an HTTP date, refreshed once a second. */
const char *tg_http_date(void);

#endif
