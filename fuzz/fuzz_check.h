/*
 * fuzz_check.h: FUZZ_CHECK, the targets' invariant check. A violated
 * invariant aborts with a message, which libFuzzer records as a crash, so
 * the targets check behaviour as well as memory safety.
 */
#ifndef TG_FUZZ_CHECK_H
#define TG_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                      \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__,      \
                    __LINE__, #cond);                                              \
            fprintf(stderr, "  " __VA_ARGS__);                                     \
            fputc('\n', stderr);                                                   \
            abort();                                                               \
        }                                                                          \
    } while (0)

#endif
