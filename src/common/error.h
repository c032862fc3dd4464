/* Setting a foehn_error: one sentence, formatted like printf. */
#ifndef FOEHN_COMMON_ERROR_H
#define FOEHN_COMMON_ERROR_H

#include "foehn.h"

#if defined(__GNUC__)
#define FOEHN_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define FOEHN_PRINTF(fmt, args)
#endif

/* Sets err (if not NULL) and returns status, so callers can `return foehn_fail(...)`. */
int foehn_fail(foehn_error *err, int status, const char *fmt, ...) FOEHN_PRINTF(3, 4);

void foehn_error_reset(foehn_error *err);

#endif
