#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void foehn_strbuf_init(foehn_strbuf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

static bool reserve(foehn_strbuf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
        b->failed = true;
        return false;
    }
    b->data = grown;
    b->cap = cap;
    return true;
}

void foehn_strbuf_append_n(foehn_strbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void foehn_strbuf_append(foehn_strbuf *b, const char *s)
{
    foehn_strbuf_append_n(b, s, strlen(s));
}

void foehn_strbuf_appendf(foehn_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int foehn_strbuf_finish(foehn_strbuf *b, char **out)
{
    if (!b->failed && !b->data)
        reserve(b, 0);
    if (b->failed) {
        foehn_strbuf_release(b);
        *out = NULL;
        return FOEHN_ERR_NOMEM;
    }
    b->data[b->len] = '\0';
    *out = b->data;
    foehn_strbuf_init(b);
    return FOEHN_OK;
}

void foehn_strbuf_release(foehn_strbuf *b)
{
    free(b->data);
    foehn_strbuf_init(b);
}

void foehn_strbuf_append_quoted(foehn_strbuf *b, const char *s)
{
    foehn_strbuf_append(b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            foehn_strbuf_append(b, "'\\''");
        else
            foehn_strbuf_append_n(b, p, 1);
    }
    foehn_strbuf_append(b, "'");
}
