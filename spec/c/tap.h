/*
 * tap.h: the TAP-like output of the C unit tests that report one case per
 * line ("ok N - desc"); main() ends with tap_done(). Included by the
 * tests, which are single files.
 */
#ifndef TG_SPEC_TAP_H
#define TG_SPEC_TAP_H

#include <stdio.h>

static int count, failures;

static void report(int ok, const char *desc)
{
    count++;
    printf("%s %d - %s\n", ok ? "ok" : "not ok", count, desc);
    if (!ok)
        failures++;
}

/* The plan line; the exit status: 1 if any case failed. */
static int tap_done(void)
{
    printf("1..%d\n", count);
    return failures ? 1 : 0;
}

#endif
