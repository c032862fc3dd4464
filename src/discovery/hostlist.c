/* Slurm's hostlist grammar ("n[001-004,010],gpu[1-2]-ib,r[1-2]n[1-2]") and its
 * task-count grammar ("2(x3),1"), both ways.
 *
 * Expansion parses the whole value first (so a syntax error anywhere is reported
 * before any host is produced), then counts the hosts with saturating arithmetic
 * (so "n[0-99999999]" is refused before anything big is allocated), and only then
 * writes the names out.
 *
 * Padding follows Slurm: every range carries the width of its written start
 * number, and each value is printed zero-padded to that width ("%0*llu"), so
 * "[8-11]" gives 8,9,10,11, "[08-11]" gives 08,09,10,11 and "[1-010]" gives
 * 1..10. Compression relies on exactly that rule to guarantee round trips. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "foehn.h"

/* Longest host name we accept (a DNS name is at most 253; Slurm's limit is similar). */
#define HOSTLIST_NAME_MAX 255

/* Host counts saturate here: anything at this value is "too many". */
#define HOSTLIST_CAP ((unsigned long long)FOEHN_HOSTLIST_MAX + 1)

/* ---- small helpers ---------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Characters a host name part may hold: letters, digits, '.', '_' and '-'. */
static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' ||
           c == '-';
}

/* a * b, or HOSTLIST_CAP when the product reaches it (never overflows). */
static unsigned long long sat_mul(unsigned long long a, unsigned long long b)
{
    if (a != 0 && b >= HOSTLIST_CAP / a + 1)
        return HOSTLIST_CAP;
    unsigned long long p = a * b;
    return p > HOSTLIST_CAP ? HOSTLIST_CAP : p;
}

/* a + b, or HOSTLIST_CAP when the sum reaches it; both are <= HOSTLIST_CAP. */
static unsigned long long sat_add(unsigned long long a, unsigned long long b)
{
    unsigned long long s = a + b;
    return s > HOSTLIST_CAP ? HOSTLIST_CAP : s;
}

static size_t decimal_digits(unsigned long long v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* A character for an error sentence: 'x', or a byte value when unprintable. */
static const char *describe_char(char c, char buf[16])
{
    if (c > ' ' && c < 127)
        snprintf(buf, 16, "'%c'", c);
    else if (c == ' ')
        snprintf(buf, 16, "a space");
    else
        snprintf(buf, 16, "byte 0x%02x", (unsigned)(unsigned char)c);
    return buf;
}

/* Trims whitespace around s into [*begin, *end). */
static void trim(const char *s, size_t *begin, size_t *end)
{
    size_t b = 0, e = strlen(s);
    while (b < e && is_space(s[b]))
        b++;
    while (e > b && is_space(s[e - 1]))
        e--;
    *begin = b;
    *end = e;
}

/* Reads the digit run at s[*pos] (at least one digit must be there) into *value;
 * false when it does not fit an unsigned long long. *pos moves past the digits. */
static bool read_number(const char *s, size_t *pos, size_t end, unsigned long long *value)
{
    unsigned long long v = 0;
    bool ok = true;
    while (*pos < end && is_digit(s[*pos])) {
        unsigned d = (unsigned)(s[*pos] - '0');
        if (v > (ULLONG_MAX - d) / 10)
            ok = false;
        else
            v = v * 10 + d;
        (*pos)++;
    }
    *value = v;
    return ok;
}

/* ---- hostlist parsing ------------------------------------------------- */

/* One item of a bracket group: lo..hi, each printed zero-padded to width. */
typedef struct hl_range {
    unsigned long long lo, hi;
    size_t width;
} hl_range;

/* A piece of an entry: literal text (nranges == 0) or a bracket group. */
typedef struct hl_segment {
    size_t text, len;           /* literal: offsets into the input */
    size_t first_range, nranges; /* group: ranges[first_range ..+ nranges) */
} hl_segment;

/* One comma-separated entry: segments[first_segment ..+ nsegments). */
typedef struct hl_entry {
    size_t start; /* position in the input, for messages */
    size_t first_segment, nsegments;
} hl_entry;

/* The parsed value. The arrays are sized by a pre-scan of the input that bounds
 * how many of each the parser can possibly store, so pushes need no growing. */
typedef struct hl_parse {
    const char *input; /* the whole value as given, for messages */
    size_t end;        /* end of the trimmed value */
    hl_range *ranges;
    hl_segment *segments;
    hl_entry *entries;
    size_t nranges, nsegments, nentries;
    foehn_error *err;
} hl_parse;

static int parse_fail(const hl_parse *p, size_t pos, const char *what)
{
    return foehn_fail(p->err, FOEHN_ERR_INVALID, "hostlist \"%s\": %s at position %zu", p->input, what, pos);
}

/* Parses "a" or "a-b" at *pos inside a bracket group opened at `open`. */
static int parse_range(hl_parse *p, size_t *pos, size_t open)
{
    const char *s = p->input;
    char cbuf[16], msg[96];
    size_t start = *pos;
    if (*pos >= p->end)
        return parse_fail(p, open, "unclosed '['");
    if (!is_digit(s[*pos])) {
        if (s[*pos] == ',' || s[*pos] == ']' || s[*pos] == '-')
            return parse_fail(p, *pos, "empty range");
        if (s[*pos] == '[')
            return parse_fail(p, *pos, "nested '['");
        snprintf(msg, sizeof msg, "unexpected %s in a range", describe_char(s[*pos], cbuf));
        return parse_fail(p, *pos, msg);
    }
    hl_range r;
    if (!read_number(s, pos, p->end, &r.lo))
        return parse_fail(p, start, "number too large");
    r.width = *pos - start; /* Slurm: the written start number sets the width */
    r.hi = r.lo;
    if (*pos < p->end && s[*pos] == '-') {
        (*pos)++;
        size_t hi_start = *pos;
        if (*pos >= p->end)
            return parse_fail(p, open, "unclosed '['");
        if (!is_digit(s[*pos])) {
            if (s[*pos] == ',' || s[*pos] == ']')
                return parse_fail(p, *pos, "range without an end");
            if (s[*pos] == '[')
                return parse_fail(p, *pos, "nested '['");
            snprintf(msg, sizeof msg, "unexpected %s in a range", describe_char(s[*pos], cbuf));
            return parse_fail(p, *pos, msg);
        }
        if (!read_number(s, pos, p->end, &r.hi))
            return parse_fail(p, hi_start, "number too large");
        if (r.hi < r.lo) {
            snprintf(msg, sizeof msg, "reversed range %llu-%llu", r.lo, r.hi);
            return parse_fail(p, start, msg);
        }
    }
    p->ranges[p->nranges++] = r;
    return FOEHN_OK;
}

/* Parses a bracket group "[...]" at *pos (which is at the '['). */
static int parse_group(hl_parse *p, size_t *pos)
{
    const char *s = p->input;
    char cbuf[16], msg[96];
    size_t open = *pos;
    hl_segment g = {0, 0, p->nranges, 0};
    (*pos)++;
    for (;;) {
        int rc = parse_range(p, pos, open);
        if (rc != FOEHN_OK)
            return rc;
        g.nranges++;
        if (*pos >= p->end)
            return parse_fail(p, open, "unclosed '['");
        char c = s[*pos];
        (*pos)++;
        if (c == ']')
            break;
        if (c == ',')
            continue;
        if (c == '[')
            return parse_fail(p, *pos - 1, "nested '['");
        snprintf(msg, sizeof msg, "unexpected %s in a range", describe_char(c, cbuf));
        return parse_fail(p, *pos - 1, msg);
    }
    p->segments[p->nsegments++] = g;
    return FOEHN_OK;
}

/* Parses one entry (name parts and bracket groups) up to a top-level ',' or the end. */
static int parse_entry(hl_parse *p, size_t *pos)
{
    const char *s = p->input;
    char cbuf[16], msg[96];
    hl_entry e = {*pos, p->nsegments, 0};
    while (*pos < p->end && s[*pos] != ',') {
        char c = s[*pos];
        if (c == '[') {
            int rc = parse_group(p, pos);
            if (rc != FOEHN_OK)
                return rc;
        } else if (c == ']') {
            return parse_fail(p, *pos, "unexpected ']'");
        } else if (is_name_char(c)) {
            hl_segment lit = {*pos, 0, 0, 0};
            while (*pos < p->end && is_name_char(s[*pos]))
                (*pos)++;
            lit.len = *pos - lit.text;
            p->segments[p->nsegments++] = lit;
        } else {
            snprintf(msg, sizeof msg, "%s is not allowed in a host name", describe_char(c, cbuf));
            return parse_fail(p, *pos, msg);
        }
    }
    e.nsegments = p->nsegments - e.first_segment;
    if (e.nsegments == 0)
        return parse_fail(p, *pos, "empty entry");
    p->entries[p->nentries++] = e;
    return FOEHN_OK;
}

/* Sizes the arrays from the input: every entry but the last ends at a ',', every
 * range ends at a ',' or a ']', and an entry holds at most one literal more than
 * it has groups (each group starts at a '['). */
static int parse_alloc(hl_parse *p, size_t begin)
{
    size_t commas = 0, opens = 0, closes = 0;
    for (size_t i = begin; i < p->end; i++) {
        commas += p->input[i] == ',';
        opens += p->input[i] == '[';
        closes += p->input[i] == ']';
    }
    p->ranges = malloc((commas + closes + 1) * sizeof *p->ranges);
    p->segments = malloc((2 * opens + commas + 1) * sizeof *p->segments);
    p->entries = malloc((commas + 1) * sizeof *p->entries);
    if (!p->ranges || !p->segments || !p->entries)
        return foehn_fail(p->err, FOEHN_ERR_NOMEM, "out of memory parsing hostlist \"%s\"", p->input);
    return FOEHN_OK;
}

static void parse_release(hl_parse *p)
{
    free(p->ranges);
    free(p->segments);
    free(p->entries);
}

static int parse_hostlist(hl_parse *p, const char *hostlist, foehn_error *err)
{
    size_t begin, pos;
    memset(p, 0, sizeof *p);
    p->input = hostlist;
    p->err = err;
    trim(hostlist, &begin, &p->end);
    if (begin == p->end)
        return foehn_fail(err, FOEHN_ERR_INVALID, "hostlist \"%s\" is empty", hostlist);
    int rc = parse_alloc(p, begin);
    if (rc != FOEHN_OK)
        return rc;
    pos = begin;
    for (;;) {
        rc = parse_entry(p, &pos);
        if (rc != FOEHN_OK)
            return rc;
        if (pos >= p->end)
            return FOEHN_OK;
        pos++; /* the ',' ; a trailing one makes the next entry empty, an error */
    }
}

/* ---- hostlist expansion ----------------------------------------------- */

/* How many hosts entry e gives (saturated at HOSTLIST_CAP) and its longest name:
 * groups are independent, so the longest name takes the longest number of each. */
static void measure_entry(const hl_parse *p, const hl_entry *e, unsigned long long *hosts, size_t *longest)
{
    unsigned long long n = 1;
    size_t len = 0;
    for (size_t i = 0; i < e->nsegments; i++) {
        const hl_segment *g = &p->segments[e->first_segment + i];
        if (g->nranges == 0) {
            len += g->len;
            continue;
        }
        unsigned long long in_group = 0;
        size_t widest = 0;
        for (size_t k = 0; k < g->nranges; k++) {
            const hl_range *r = &p->ranges[g->first_range + k];
            unsigned long long span = r->hi - r->lo; /* +1 could wrap at ULLONG_MAX */
            in_group = sat_add(in_group, span >= HOSTLIST_CAP ? HOSTLIST_CAP : span + 1);
            size_t w = decimal_digits(r->hi);
            if (r->width > w)
                w = r->width;
            if (w > widest)
                widest = w;
        }
        n = sat_mul(n, in_group);
        len += widest;
    }
    *hosts = n;
    *longest = len;
}

/* The odometer over an entry's groups: the range each group is in, and its value. */
typedef struct hl_cursor {
    size_t range;
    unsigned long long value;
} hl_cursor;

/* Writes v in decimal, zero-padded to width; returns its length. Runs once per
 * host, where snprintf's format parsing would dominate a large expansion. */
static size_t format_padded(char *out, unsigned long long v, size_t width)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    size_t pad = n < width ? width - n : 0;
    memset(out, '0', pad);
    for (size_t i = 0; i < n; i++)
        out[pad + i] = digits[n - 1 - i];
    return pad + n;
}

/* Writes the name the cursors point at into buf (big enough: measured before). */
static size_t format_name(const hl_parse *p, const hl_entry *e, const hl_cursor *cur, char *buf)
{
    size_t len = 0;
    for (size_t i = 0; i < e->nsegments; i++) {
        const hl_segment *g = &p->segments[e->first_segment + i];
        if (g->nranges == 0) {
            memcpy(buf + len, p->input + g->text, g->len);
            len += g->len;
        } else {
            const hl_range *r = &p->ranges[cur[i].range];
            len += format_padded(buf + len, cur[i].value, r->width);
        }
    }
    buf[len] = '\0';
    return len;
}

/* Steps the odometer, last group fastest (Slurm's cartesian order); false at the end. */
static bool advance(const hl_parse *p, const hl_entry *e, hl_cursor *cur)
{
    for (size_t i = e->nsegments; i-- > 0;) {
        const hl_segment *g = &p->segments[e->first_segment + i];
        if (g->nranges == 0)
            continue;
        if (cur[i].value < p->ranges[cur[i].range].hi) {
            cur[i].value++;
            return true;
        }
        if (cur[i].range + 1 < g->first_range + g->nranges) {
            cur[i].range++;
            cur[i].value = p->ranges[cur[i].range].lo;
            return true;
        }
        cur[i].range = g->first_range; /* wrap, and carry into the group before */
        cur[i].value = p->ranges[g->first_range].lo;
    }
    return false;
}

/* Appends every name of entry e to hosts[*filled ...]. */
static int expand_entry(const hl_parse *p, const hl_entry *e, hl_cursor *cur, char **hosts, size_t *filled)
{
    char name[HOSTLIST_NAME_MAX + 1];
    for (size_t i = 0; i < e->nsegments; i++) {
        const hl_segment *g = &p->segments[e->first_segment + i];
        cur[i].range = g->first_range;
        cur[i].value = g->nranges ? p->ranges[g->first_range].lo : 0;
    }
    do {
        size_t n = format_name(p, e, cur, name) + 1;
        char *copy = malloc(n);
        if (!copy)
            return foehn_fail(p->err, FOEHN_ERR_NOMEM, "out of memory expanding hostlist \"%s\"", p->input);
        memcpy(copy, name, n);
        hosts[(*filled)++] = copy;
    } while (advance(p, e, cur));
    return FOEHN_OK;
}

/* Counts all hosts and checks name lengths before anything is expanded. */
static int measure_hostlist(const hl_parse *p, size_t *total)
{
    unsigned long long sum = 0;
    for (size_t i = 0; i < p->nentries; i++) {
        unsigned long long n;
        size_t longest;
        measure_entry(p, &p->entries[i], &n, &longest);
        if (longest > HOSTLIST_NAME_MAX)
            return parse_fail(p, p->entries[i].start, "host name longer than 255 characters");
        sum = sat_add(sum, n);
    }
    if (sum > FOEHN_HOSTLIST_MAX)
        return foehn_fail(p->err, FOEHN_ERR_LIMIT, "hostlist \"%s\" expands to more than %d hosts", p->input,
                          FOEHN_HOSTLIST_MAX);
    *total = (size_t)sum;
    return FOEHN_OK;
}

int foehn_hostlist_expand(const char *hostlist, char ***hosts, size_t *count, foehn_error *err)
{
    foehn_error_reset(err);
    if (!hosts || !count)
        return foehn_fail(err, FOEHN_ERR_INVALID, "foehn_hostlist_expand: no place for the result");
    *hosts = NULL;
    *count = 0;
    if (!hostlist)
        return foehn_fail(err, FOEHN_ERR_INVALID, "no hostlist given");

    hl_parse p;
    size_t total = 0, filled = 0;
    char **out = NULL;
    hl_cursor *cur = NULL;
    int rc = parse_hostlist(&p, hostlist, err);
    if (rc == FOEHN_OK)
        rc = measure_hostlist(&p, &total);
    if (rc == FOEHN_OK) {
        out = malloc(total * sizeof *out);
        cur = malloc((p.nsegments ? p.nsegments : 1) * sizeof *cur);
        if (!out || !cur)
            rc = foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory expanding hostlist \"%s\"", hostlist);
    }
    /* cursors are indexed by segment within the entry, so one array serves all */
    for (size_t i = 0; rc == FOEHN_OK && i < p.nentries; i++)
        rc = expand_entry(&p, &p.entries[i], cur, out, &filled);
    free(cur);
    parse_release(&p);
    if (rc != FOEHN_OK) {
        foehn_strv_free(out, filled);
        return rc;
    }
    *hosts = out;
    *count = filled;
    return FOEHN_OK;
}

/* ---- hostlist compression --------------------------------------------- */

/* Longest trailing number compression will bracket: 19 digits always fit an
 * unsigned long long (and so does that value + 1); longer ones stay plain. */
#define COMPRESS_DIGITS_MAX 19

/* A host split as prefix + trailing digit run, and whether it may go in a bracket. */
typedef struct hl_name {
    const char *s;
    size_t prefix, digits; /* lengths */
    unsigned long long value;
    bool bracketable;
} hl_name;

/* Checks that the name expands back to itself when written plain, and splits it. */
static int split_name(const char *s, size_t index, hl_name *n, foehn_error *err)
{
    char cbuf[16];
    if (!s)
        return foehn_fail(err, FOEHN_ERR_INVALID, "host %zu is missing (NULL)", index);
    size_t len = strlen(s);
    if (len == 0)
        return foehn_fail(err, FOEHN_ERR_INVALID, "host %zu is an empty name", index);
    if (len > HOSTLIST_NAME_MAX)
        return foehn_fail(err, FOEHN_ERR_INVALID, "host \"%s\" is longer than 255 characters", s);
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(s[i]))
            return foehn_fail(err, FOEHN_ERR_INVALID, "host \"%s\": %s cannot be written in a hostlist", s,
                              describe_char(s[i], cbuf));
    n->s = s;
    n->prefix = len;
    while (n->prefix > 0 && is_digit(s[n->prefix - 1]))
        n->prefix--;
    n->digits = len - n->prefix;
    n->value = 0;
    /* An all-digit name stays plain: "[1-2]" with no prefix reads oddly elsewhere. */
    n->bracketable = n->prefix > 0 && n->digits > 0 && n->digits <= COMPRESS_DIGITS_MAX;
    if (n->bracketable) {
        size_t pos = n->prefix;
        read_number(s, &pos, len, &n->value); /* cannot overflow: <= 19 digits */
    }
    return FOEHN_OK;
}

static bool same_prefix(const hl_name *a, const hl_name *b)
{
    return a->bracketable && b->bracketable && a->prefix == b->prefix && memcmp(a->s, b->s, a->prefix) == 0;
}

/* Whether `next` is exactly what a range started by `start` prints after `last`:
 * the expander prints every value of a range zero-padded to the start's written
 * width, so both the value and the printed form must match, or it would not
 * round-trip (n08,n9 cannot be "n[08-9]", which expands to n08,n09). */
static bool continues_range(const hl_name *start, const hl_name *last, const hl_name *next)
{
    char want[32];
    if (last->value == ULLONG_MAX || next->value != last->value + 1)
        return false;
    int n = snprintf(want, sizeof want, "%0*llu", (int)start->digits, next->value);
    return n > 0 && (size_t)n == next->digits && memcmp(want, next->s + next->prefix, next->digits) == 0;
}

/* Writes names[0..n), which share one prefix, as "prefix[a-b,c,...]" (or plain for one). */
static void write_group(foehn_strbuf *b, const hl_name *names, size_t n)
{
    if (n == 1) {
        foehn_strbuf_append(b, names[0].s);
        return;
    }
    foehn_strbuf_append_n(b, names[0].s, names[0].prefix);
    foehn_strbuf_append(b, "[");
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && continues_range(&names[i], &names[j - 1], &names[j]))
            j++;
        if (i > 0)
            foehn_strbuf_append(b, ",");
        foehn_strbuf_append(b, names[i].s + names[i].prefix);
        if (j - i > 1) {
            foehn_strbuf_append(b, "-");
            foehn_strbuf_append(b, names[j - 1].s + names[j - 1].prefix);
        }
        i = j;
    }
    foehn_strbuf_append(b, "]");
}

int foehn_hostlist_compress(const char *const *hosts, size_t count, char **out, foehn_error *err)
{
    foehn_error_reset(err);
    if (!out)
        return foehn_fail(err, FOEHN_ERR_INVALID, "foehn_hostlist_compress: no place for the result");
    *out = NULL;
    if (count > 0 && !hosts)
        return foehn_fail(err, FOEHN_ERR_INVALID, "no hosts given");
    if (count > FOEHN_HOSTLIST_MAX) /* the result could not be expanded again */
        return foehn_fail(err, FOEHN_ERR_LIMIT, "%zu hosts are more than a hostlist may hold (%d)", count,
                          FOEHN_HOSTLIST_MAX);
    hl_name *names = malloc((count ? count : 1) * sizeof *names);
    if (!names)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory compressing %zu hosts", count);
    for (size_t i = 0; i < count; i++) {
        int rc = split_name(hosts[i], i, &names[i], err);
        if (rc != FOEHN_OK) {
            free(names);
            return rc;
        }
    }
    foehn_strbuf b;
    foehn_strbuf_init(&b);
    for (size_t i = 0; i < count;) {
        size_t j = i + 1; /* only neighbours merge: the order is never changed */
        while (j < count && same_prefix(&names[i], &names[j]))
            j++;
        if (i > 0)
            foehn_strbuf_append(&b, ",");
        write_group(&b, &names[i], j - i);
        i = j;
    }
    free(names);
    if (foehn_strbuf_finish(&b, out) != FOEHN_OK)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory compressing %zu hosts", count);
    return FOEHN_OK;
}

/* ---- task counts ("2(x3),1") ------------------------------------------ */

/* Reads a decimal number at s[*pos]; false when there is no digit there. The
 * value saturates at ULLONG_MAX, which every caller treats as too large. */
static bool read_count(const char *s, size_t *pos, size_t end, unsigned long long *value)
{
    if (*pos >= end || !is_digit(s[*pos]))
        return false;
    if (!read_number(s, pos, end, value))
        *value = ULLONG_MAX;
    return true;
}

typedef struct counts_parse {
    const char *input;
    size_t begin, end;
    foehn_error *err;
} counts_parse;

static int counts_fail(const counts_parse *c, int status, size_t pos, const char *what)
{
    return foehn_fail(c->err, status, "task counts \"%s\": %s at position %zu", c->input, what, pos);
}

/* What is wrong where a number should start. */
static int counts_no_number(const counts_parse *c, size_t pos)
{
    char cbuf[16], msg[64];
    if (pos >= c->end)
        return counts_fail(c, FOEHN_ERR_INVALID, pos, "missing number");
    if (c->input[pos] == '-')
        return counts_fail(c, FOEHN_ERR_INVALID, pos, "negative number");
    if (c->input[pos] == ',')
        return counts_fail(c, FOEHN_ERR_INVALID, pos, "empty entry");
    snprintf(msg, sizeof msg, "unexpected %s", describe_char(c->input[pos], cbuf));
    return counts_fail(c, FOEHN_ERR_INVALID, pos, msg);
}

/* Parses one "v" or "v(xN)" at *pos. */
static int counts_item(const counts_parse *c, size_t *pos, unsigned long long *value, unsigned long long *repeat)
{
    const char *s = c->input;
    size_t start = *pos;
    if (!read_count(s, pos, c->end, value))
        return counts_no_number(c, *pos);
    if (*value > INT_MAX)
        return counts_fail(c, FOEHN_ERR_INVALID, start, "number larger than INT_MAX");
    *repeat = 1;
    if (*pos >= c->end || s[*pos] != '(')
        return FOEHN_OK;
    size_t open = (*pos)++;
    if (*pos >= c->end || s[*pos] != 'x')
        return counts_fail(c, FOEHN_ERR_INVALID, *pos, "expected 'x' after '('");
    (*pos)++;
    size_t rstart = *pos;
    if (!read_count(s, pos, c->end, repeat))
        return counts_no_number(c, *pos);
    if (*pos >= c->end || s[*pos] != ')')
        return counts_fail(c, FOEHN_ERR_INVALID, open, "unclosed '('");
    (*pos)++;
    if (*repeat == 0)
        return counts_fail(c, FOEHN_ERR_INVALID, rstart, "repeat count 0");
    if (*repeat > FOEHN_HOSTLIST_MAX)
        return counts_fail(c, FOEHN_ERR_LIMIT, rstart, "repeat count above the limit");
    return FOEHN_OK;
}

/* Walks the whole value; counts the values into *total (saturated), and stores
 * them too when values is not NULL (the second pass, once the total is known). */
static int counts_walk(const counts_parse *c, int *values, unsigned long long *total)
{
    char cbuf[16], msg[64];
    size_t pos = c->begin;
    unsigned long long n = 0;
    for (;;) {
        unsigned long long value = 0, repeat = 0;
        int rc = counts_item(c, &pos, &value, &repeat);
        if (rc != FOEHN_OK)
            return rc;
        if (values)
            for (unsigned long long k = 0; k < repeat; k++)
                values[n + k] = (int)value;
        n = sat_add(n, repeat);
        if (n > FOEHN_HOSTLIST_MAX)
            return foehn_fail(c->err, FOEHN_ERR_LIMIT, "task counts \"%s\" expand to more than %d values",
                              c->input, FOEHN_HOSTLIST_MAX);
        if (pos >= c->end)
            break;
        if (c->input[pos] != ',') {
            snprintf(msg, sizeof msg, "unexpected %s", describe_char(c->input[pos], cbuf));
            return counts_fail(c, FOEHN_ERR_INVALID, pos, msg);
        }
        pos++; /* a trailing ',' leaves a missing number: an error */
    }
    *total = n;
    return FOEHN_OK;
}

int foehn_counts_expand(const char *counts, int **values, size_t *count, foehn_error *err)
{
    foehn_error_reset(err);
    if (!values || !count)
        return foehn_fail(err, FOEHN_ERR_INVALID, "foehn_counts_expand: no place for the result");
    *values = NULL;
    *count = 0;
    if (!counts)
        return foehn_fail(err, FOEHN_ERR_INVALID, "no task counts given");
    counts_parse c = {counts, 0, 0, err};
    trim(counts, &c.begin, &c.end);
    if (c.begin == c.end)
        return foehn_fail(err, FOEHN_ERR_INVALID, "task counts \"%s\" are empty", counts);
    unsigned long long total;
    int rc = counts_walk(&c, NULL, &total);
    if (rc != FOEHN_OK)
        return rc;
    int *out = malloc((size_t)total * sizeof *out);
    if (!out)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory expanding task counts \"%s\"", counts);
    counts_walk(&c, out, &total); /* the same walk succeeded already */
    *values = out;
    *count = (size_t)total;
    return FOEHN_OK;
}
