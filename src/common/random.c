#include "common/random.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "common/error.h"

int foehn_random_bytes(void *buf, size_t len, foehn_error *err)
{
    unsigned char *p = buf;
    for (size_t got = 0; got < len;) {
        ssize_t n = getrandom(p + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return foehn_fail(err, FOEHN_ERR_SYSTEM, "getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    return FOEHN_OK;
}

bool foehn_secrets_equal(const unsigned char *a, const unsigned char *b, size_t len)
{
    /* volatile keeps the compiler from turning the loop into an early-exit memcmp. */
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < len; i++)
        diff = (unsigned char)(diff | (a[i] ^ b[i]));
    return diff == 0;
}

void foehn_hex_encode(const unsigned char *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

int foehn_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
