#include "strv.h"

#include <stdlib.h>
#include <string.h>

#include "foehn.h"

void foehn_strv_init(foehn_strv *v)
{
    v->items = NULL;
    v->len = v->cap = 0;
}

int foehn_strv_push_n(foehn_strv *v, const char *s, size_t n)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        char **grown = realloc(v->items, cap * sizeof *grown);
        if (!grown)
            return FOEHN_ERR_NOMEM;
        v->items = grown;
        v->cap = cap;
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return FOEHN_ERR_NOMEM;
    memcpy(copy, s, n);
    copy[n] = '\0';
    v->items[v->len++] = copy;
    return FOEHN_OK;
}

int foehn_strv_push(foehn_strv *v, const char *s)
{
    return foehn_strv_push_n(v, s, strlen(s));
}

long foehn_strv_find(const foehn_strv *v, const char *s)
{
    for (size_t i = 0; i < v->len; i++)
        if (strcmp(v->items[i], s) == 0)
            return (long)i;
    return -1;
}

void foehn_strv_release(foehn_strv *v)
{
    foehn_strv_free(v->items, v->len);
    foehn_strv_init(v);
}

void foehn_strv_free(char **strings, size_t count)
{
    if (!strings)
        return;
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}
