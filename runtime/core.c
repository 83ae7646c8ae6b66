/*
 * core.c: allocation that aborts on OOM, slices, and the error log.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tg.h"

_Atomic int tg_log_level = TG_LOG_INFO;
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

/* RFC 9110 tchar: header names, and tokens in header values. The entry is
 * the character lower-cased, 0 for a byte that is not a tchar. */
const uint8_t tg_tchar[256] = {
    ['!'] = '!', ['#'] = '#', ['$'] = '$', ['%'] = '%', ['&'] = '&', ['\''] = '\'', ['*'] = '*',
    ['+'] = '+', ['-'] = '-', ['.'] = '.', ['^'] = '^', ['_'] = '_', ['`'] = '`', ['|'] = '|',
    ['~'] = '~', ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4', ['5'] = '5',
    ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['A'] = 'a', ['B'] = 'b', ['C'] = 'c',
    ['D'] = 'd', ['E'] = 'e', ['F'] = 'f', ['G'] = 'g', ['H'] = 'h', ['I'] = 'i', ['J'] = 'j',
    ['K'] = 'k', ['L'] = 'l', ['M'] = 'm', ['N'] = 'n', ['O'] = 'o', ['P'] = 'p', ['Q'] = 'q',
    ['R'] = 'r', ['S'] = 's', ['T'] = 't', ['U'] = 'u', ['V'] = 'v', ['W'] = 'w', ['X'] = 'x',
    ['Y'] = 'y', ['Z'] = 'z', ['a'] = 'a', ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e',
    ['f'] = 'f', ['g'] = 'g', ['h'] = 'h', ['i'] = 'i', ['j'] = 'j', ['k'] = 'k', ['l'] = 'l',
    ['m'] = 'm', ['n'] = 'n', ['o'] = 'o', ['p'] = 'p', ['q'] = 'q', ['r'] = 'r', ['s'] = 's',
    ['t'] = 't', ['u'] = 'u', ['v'] = 'v', ['w'] = 'w', ['x'] = 'x', ['y'] = 'y', ['z'] = 'z',
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

typedef struct {
    void *(*fn)(void *);
    void *arg;
    int nice;
} thread_start_t;

static void *thread_main(void *p)
{
    thread_start_t st = *(thread_start_t *) p;
    free(p);
    if (st.nice) {
        id_t tid = (id_t) syscall(SYS_gettid);
        errno = 0;
        int prio = getpriority(PRIO_PROCESS, tid);
        if (errno == 0)
            setpriority(PRIO_PROCESS, tid, prio + st.nice > 19 ? 19 : prio + st.nice);
    }
    return st.fn(st.arg);
}

int tg_thread_start(pthread_t *t, size_t stack, int nice, void *(*fn)(void *), void *arg)
{
    thread_start_t *st = tg_malloc(sizeof(*st));
    pthread_attr_t attr;
    sigset_t all, old;

    *st = (thread_start_t) { fn, arg, nice };
    pthread_attr_init(&attr);
    if (stack)
        pthread_attr_setstacksize(&attr, stack);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, &attr, thread_main, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        free(st);
    return rc;
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

