/* A growable, always NUL-terminated string. A failed allocation latches: later
 * appends do nothing and foehn_strbuf_finish reports it once. */
#ifndef FOEHN_COMMON_STRBUF_H
#define FOEHN_COMMON_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

typedef struct foehn_strbuf {
    char *data;
    size_t len, cap;
    bool failed;
} foehn_strbuf;

void foehn_strbuf_init(foehn_strbuf *b);
void foehn_strbuf_append(foehn_strbuf *b, const char *s);
void foehn_strbuf_append_n(foehn_strbuf *b, const char *s, size_t n);
void foehn_strbuf_appendf(foehn_strbuf *b, const char *fmt, ...) FOEHN_PRINTF(2, 3);
/* s as one shell word in single quotes (a quote inside becomes '\''). */
void foehn_strbuf_append_quoted(foehn_strbuf *b, const char *s);
/* Hands the string to the caller (*out, malloc'd) or frees it on a failed allocation. */
int foehn_strbuf_finish(foehn_strbuf *b, char **out);
void foehn_strbuf_release(foehn_strbuf *b);

#endif
