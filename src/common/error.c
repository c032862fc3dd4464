#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int foehn_fail(foehn_error *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

void foehn_error_reset(foehn_error *err)
{
    if (err)
        err->message[0] = '\0';
}
