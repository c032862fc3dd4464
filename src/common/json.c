/* JSON writers (json.h). */
#include "common/json.h"
#include "foehn.h"

void foehn_json_string(foehn_strbuf *b, const char *s)
{
    if (!s) {
        foehn_strbuf_append(b, "null");
        return;
    }
    foehn_strbuf_append(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': foehn_strbuf_append(b, "\\\""); break;
        case '\\': foehn_strbuf_append(b, "\\\\"); break;
        case '\n': foehn_strbuf_append(b, "\\n"); break;
        case '\t': foehn_strbuf_append(b, "\\t"); break;
        case '\r': foehn_strbuf_append(b, "\\r"); break;
        default:
            if (*p < 0x20)
                foehn_strbuf_appendf(b, "\\u%04x", *p);
            else
                foehn_strbuf_append_n(b, (const char *)p, 1);
        }
    }
    foehn_strbuf_append(b, "\"");
}

void foehn_json_int(foehn_strbuf *b, int v)
{
    if (v == FOEHN_UNKNOWN)
        foehn_strbuf_append(b, "null");
    else
        foehn_strbuf_appendf(b, "%d", v);
}

void foehn_json_strings(foehn_strbuf *b, char *const *v, size_t n, bool null_when_empty)
{
    if (!v && null_when_empty) {
        foehn_strbuf_append(b, "null");
        return;
    }
    foehn_strbuf_append(b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            foehn_strbuf_append(b, ",");
        foehn_json_string(b, v[i]);
    }
    foehn_strbuf_append(b, "]");
}

void foehn_json_ints(foehn_strbuf *b, const int *v, size_t n)
{
    if (!v) {
        foehn_strbuf_append(b, "null");
        return;
    }
    foehn_strbuf_append(b, "[");
    for (size_t i = 0; i < n; i++)
        foehn_strbuf_appendf(b, i ? ",%d" : "%d", v[i]);
    foehn_strbuf_append(b, "]");
}
