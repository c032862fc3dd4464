/* JSON writers for the records the CLI and the Python face print. */
#ifndef FOEHN_COMMON_JSON_H
#define FOEHN_COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "common/strbuf.h"

/* A string, escaped; NULL writes null. */
void foehn_json_string(foehn_strbuf *b, const char *s);
/* An integer; FOEHN_UNKNOWN writes null. */
void foehn_json_int(foehn_strbuf *b, int v);
/* An array of strings; a NULL array writes null when null_when_empty, else []. */
void foehn_json_strings(foehn_strbuf *b, char *const *v, size_t n, bool null_when_empty);
/* An array of integers; NULL writes null. */
void foehn_json_ints(foehn_strbuf *b, const int *v, size_t n);

#endif
