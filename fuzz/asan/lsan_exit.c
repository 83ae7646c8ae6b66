/*
 * lsan_exit.c: linked into the sanitized gateway only (make SAN=1, for
 * make test-asan), with -Wl,--wrap=_exit: every _exit() of the binary runs
 * LeakSanitizer's check first.
 *
 * Why: a worker ends with _exit(tg_worker_run(...)) (runtime/master.c: a
 * forked child must not run the master's atexit handlers or flush its
 * stdio buffers), and _exit skips the exit-time leak check, so without
 * this LeakSanitizer would never look at a worker, where requests are
 * served. A worker frees what it owns before it returns (tg_worker_run's
 * teardown), so what is still allocated then is a leak. The check is a no-op
 * when leak detection is off (the options in fuzz/asan/tollgate.options turn
 * it on for the gateway). Better in the source one day: calling
 * __lsan_do_leak_check() before that _exit under __SANITIZE_ADDRESS__ would
 * make this file unnecessary.
 */
#include <sanitizer/lsan_interface.h>

/* Set by a worker that stops with a reload still building in its thread (a
 * policy constructor that never returns, runtime/worker.c): that build's
 * Lua state is in use until the process ends, so the worker frees nothing
 * and there is nothing meaningful to check. */
extern int tg_worker_abandoned_build;

void __real__exit(int status) __attribute__((noreturn));
void __wrap__exit(int status) __attribute__((noreturn));

void __wrap__exit(int status)
{
    if (!tg_worker_abandoned_build)
        __lsan_do_leak_check();
    __real__exit(status);
}
