/* Secrets (tokens) from the kernel's random source, and hex digits. */
#ifndef FOEHN_COMMON_RANDOM_H
#define FOEHN_COMMON_RANDOM_H

#include <stdbool.h>
#include <stddef.h>

#include "foehn.h"

/* Fills buf with len bytes from getrandom(). */
int foehn_random_bytes(void *buf, size_t len, foehn_error *err);

/* Compares two secrets in time that does not depend on where they differ. */
bool foehn_secrets_equal(const unsigned char *a, const unsigned char *b, size_t len);

/* Writes 2*len lowercase hex digits of bytes and a NUL into out. */
void foehn_hex_encode(const unsigned char *bytes, size_t len, char *out);

/* The value of one hex digit (either case), or -1. */
int foehn_hex_value(char c);

#endif
