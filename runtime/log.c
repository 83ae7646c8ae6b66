/*
 * log.c: the access log and rate-limited error lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "worker.h"

#define FLUSH_AT (32 * 1024)

static int log_fd = -1;      /* -1: access log off */
static int own_fd;           /* log_fd was opened here */
static tg_buf_t out;

int tg_access_log_open(const char *target, const char **err)
{
    tg_access_log_close();
    if (target == NULL || strcmp(target, "stdout") == 0) {
        log_fd = STDOUT_FILENO;
    } else if (strcmp(target, "stderr") == 0) {
        log_fd = STDERR_FILENO;
    } else if (strcmp(target, "off") == 0) {
        log_fd = -1;
    } else {
        log_fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            *err = strerror(errno);
            return TG_ERROR;
        }
        own_fd = 1;
    }
    return TG_OK;
}

void tg_access_log_flush(void)
{
    size_t off = 0;
    while (off < out.len) {
        ssize_t n = write(log_fd, out.data + off, out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk or closed pipe must not stop the gateway */
        off += (size_t) n;
    }
    tg_buf_reset(&out);
}

void tg_access_log_close(void)
{
    if (out.len && log_fd >= 0)
        tg_access_log_flush();
    tg_buf_release(&out);
    if (own_fd && log_fd >= 0)
        close(log_fd);
    log_fd = -1;
    own_fd = 0;
}

/* JSON string body: escapes quotes, backslashes, control bytes, and bytes
 * above 0x7f (as \u00XX), so a hostile path can never break the line. */
static void put_json(tg_buf_t *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    tg_buf_reserve(b, n + 2);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            if (b->len == b->cap)
                tg_buf_reserve(b, 64);
            b->data[b->len++] = (char) ch;
        } else {
            char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
            if (ch == '"' || ch == '\\') {
                char two[2] = { '\\', (char) ch };
                tg_buf_append(b, two, 2);
            } else {
                tg_buf_append(b, esc, 6);
            }
        }
    }
}

static void put_field(tg_buf_t *b, const char *name, const char *p, size_t n)
{
    tg_buf_append_str(b, name);
    tg_buf_append(b, "\"", 1);
    put_json(b, p, n);
    tg_buf_append(b, "\"", 1);
}

static const char *timestamp(double now)
{
    static char buf[40];
    static time_t last;
    time_t sec = (time_t) now;
    if (sec != last) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
        last = sec;
    }
    snprintf(buf + 19, sizeof(buf) - 19, ".%03dZ", (int) ((now - (double) sec) * 1000));
    return buf;
}

void tg_access_log(tg_req_t *r)
{
    double now;
    size_t n;
    const char *p;
    int status;

    if (log_fd < 0)
        return;
    now = ev_time();
    status = r->status;
    if (r->aborted && !r->resp_started)
        status = 499; /* the client left before the response (nginx's code) */

    tg_buf_append_str(&out, "{\"time\":\"");
    tg_buf_append_str(&out, timestamp(now));
    tg_buf_append_str(&out, "\",\"id\":\"");
    tg_buf_append_str(&out, r->id);
    tg_buf_append_str(&out, "\"");
    p = tg_req_client_ip(r, &n);
    put_field(&out, ",\"client\":", p, n);
    if (r->parsed) {
        p = tg_req_method_name(r, &n);
        put_field(&out, ",\"method\":", p, n);
        p = tg_req_host(r, &n);
        put_field(&out, ",\"host\":", p ? p : "", p ? n : 0);
        p = tg_req_target(r, &n);
        put_field(&out, ",\"path\":", p, n);
    }
    tg_buf_printf(&out, ",\"status\":%d,\"bytes\":%llu", status,
                  (unsigned long long) r->bytes_sent);
    if (r->t_upstream > 0) {
        double up = (r->t_upstream_end > 0 ? r->t_upstream_end : now) - r->t_upstream;
        tg_buf_printf(&out, ",\"upstream_ms\":%.3f", up * 1000);
    }
    if (r->t_start > 0)
        tg_buf_printf(&out, ",\"total_ms\":%.3f", (now - r->t_start) * 1000);
    if (r->route)
        put_field(&out, ",\"pipeline\":", r->route, strlen(r->route));
    if (r->error)
        put_field(&out, ",\"error\":", r->error, strlen(r->error));
    if (r->aborted)
        tg_buf_append_str(&out, ",\"aborted\":true");
    tg_buf_append_str(&out, "}\n");
    if (out.len >= FLUSH_AT)
        tg_access_log_flush();
}

void tg_log_rate_limited(int level, const char *fmt, ...)
{
    static time_t window;
    static int count;
    char msg[1024];
    va_list ap;
    time_t now = time(NULL);

    if (now != window) {
        if (count > 5)
            tg_log(level, "(%d similar lines suppressed)", count - 5);
        window = now;
        count = 0;
    }
    if (++count > 5)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tg_log(level, "%s", msg);
}
