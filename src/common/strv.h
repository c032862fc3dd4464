/* A growable array of owned strings (what foehn_strv_free releases). */
#ifndef FOEHN_COMMON_STRV_H
#define FOEHN_COMMON_STRV_H

#include <stddef.h>

typedef struct foehn_strv {
    char **items;
    size_t len, cap;
} foehn_strv;

void foehn_strv_init(foehn_strv *v);
/* Appends a copy of s[0..n); returns FOEHN_OK or FOEHN_ERR_NOMEM. */
int foehn_strv_push_n(foehn_strv *v, const char *s, size_t n);
int foehn_strv_push(foehn_strv *v, const char *s);
/* Index of s in v, or -1. */
long foehn_strv_find(const foehn_strv *v, const char *s);
void foehn_strv_release(foehn_strv *v);

#endif
