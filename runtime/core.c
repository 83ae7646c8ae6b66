/*
 * core.c: allocation that aborts on OOM, slices, and the error log.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "tg.h"

int tg_log_level = TG_LOG_INFO;
const char *tg_process_role = "master";

void *tg_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (tg_unlikely(p == NULL)) {
        fprintf(stderr, "tollgate: out of memory (%zu bytes)\n", size);
        abort();
    }
    return p;
}

void *tg_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (tg_unlikely(p == NULL)) {
        fprintf(stderr, "tollgate: out of memory (%zu bytes)\n", n * size);
        abort();
    }
    return p;
}

void *tg_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (tg_unlikely(q == NULL)) {
        fprintf(stderr, "tollgate: out of memory (%zu bytes)\n", size);
        abort();
    }
    return q;
}

char *tg_strndup(const char *s, size_t len)
{
    char *d = tg_malloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* RFC 9110 tchar: header names, and tokens in header values. */
const uint8_t tg_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

int tg_str_ieq(const char *p, size_t len, const char *lower, size_t lower_len)
{
    if (len != lower_len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) p[i];
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != (unsigned char) lower[i])
            return 0;
    }
    return 1;
}

void tg_log(int level, const char *fmt, ...)
{
    static const char *names[] = { "error", "warn", "info", "debug" };
    char line[4096];
    struct timespec ts;
    struct tm tm;
    size_t n;
    va_list ap;

    if (level > tg_log_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - n, ".%03ldZ [%s] %s %d: ",
                  ts.tv_nsec / 1000000, names[level], tg_process_role, (int) getpid());
    va_start(ap, fmt);
    int w = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (w < 0)
        w = 0;
    n += (size_t) w;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line so lines from several workers never interleave. */
    ssize_t rc;
    do
        rc = write(STDERR_FILENO, line, n);
    while (rc < 0 && errno == EINTR);
}

