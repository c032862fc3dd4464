/* Text on the PMI wires: Foehn's %-escaping of values, and MPICH's process
 * mapping ("(vector,(0,2,2))"). Pure functions, kept apart to be tested alone. */
#include "pm/pmi_text.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/random.h"

bool foehn_pmi_plain_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == ':' || c == '/' || c == '@' || c == '+' || c == '-';
}

size_t foehn_pmi_escaped_width(unsigned char c)
{
    return foehn_pmi_plain_byte(c) ? 1 : 3;
}

size_t foehn_pmi_escape(const unsigned char *v, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (foehn_pmi_plain_byte(v[i])) {
            out[o++] = (char)v[i];
        } else {
            out[o++] = '%';
            out[o++] = hex[v[i] >> 4];
            out[o++] = hex[v[i] & 15];
        }
    }
    out[o] = '\0';
    return o;
}

int foehn_pmi_unescape_append(const char *s, unsigned char *out, size_t *len, size_t cap)
{
    for (const char *p = s; *p; p++) {
        if (*len >= cap)
            return -1;
        if (*p == '%') {
            int hi = foehn_hex_value(p[1]), lo = hi < 0 ? -1 : foehn_hex_value(p[2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[(*len)++] = (unsigned char)(hi * 16 + lo);
            p += 2;
        } else if (foehn_pmi_plain_byte((unsigned char)*p)) {
            out[(*len)++] = (unsigned char)*p;
        } else {
            return -1;
        }
    }
    return 0;
}

/* ---- the process mapping ---------------------------------------------- */

static int parse_blocks(const char *s, long (*blocks)[3], size_t cap);
static int place_rank(const long (*blocks)[3], size_t nblocks, int size, int rank,
                      int *node_index, int *local_rank, int *local_size, int *num_nodes);

int foehn_pmi_parse_mapping(const char *s, int size, int rank, int *node_index, int *local_rank,
                            int *local_size, int *num_nodes)
{
    /* At most one block per '(' in s. */
    size_t cap = 1;
    for (const char *q = s; (q = strchr(q, '(')) != NULL; q++)
        cap++;
    long (*blocks)[3] = malloc(cap * sizeof *blocks);
    if (!blocks)
        return -1;
    int rc = parse_blocks(s, blocks, cap);
    if (rc <= 0) {
        free(blocks);
        return -1;
    }
    rc = place_rank((const long(*)[3])blocks, (size_t)rc, size, rank, node_index, local_rank,
                    local_size, num_nodes);
    free(blocks);
    return rc;
}

/* The blocks of a mapping, as (node, nodes, ranks per node); their count, or -1. */
static int parse_blocks(const char *s, long (*blocks)[3], size_t cap)
{
    size_t nblocks = 0;
    const char *p = s;
#define SKIP_WS() while (*p == ' ' || *p == '\t') p++
#define EXPECT(ch)             \
    do {                       \
        SKIP_WS();             \
        if (*p != (ch))        \
            return -1;         \
        p++;                   \
    } while (0)
    EXPECT('(');
    SKIP_WS();
    if (strncmp(p, "vector", 6) != 0)
        return -1;
    p += 6;
    for (;;) {
        SKIP_WS();
        if (*p == ')')
            break;
        EXPECT(',');
        SKIP_WS();
        if (*p == ')') /* MPICH accepts a trailing comma */
            break;
        EXPECT('(');
        if (nblocks == cap || nblocks == INT_MAX)
            return -1;
        for (int f = 0; f < 3; f++) {
            if (f)
                EXPECT(',');
            SKIP_WS();
            if (*p < '0' || *p > '9')
                return -1;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (errno || v > INT_MAX)
                return -1;
            blocks[nblocks][f] = v;
            p = end;
        }
        EXPECT(')');
        nblocks++;
    }
    p++;
    SKIP_WS();
    if (*p || nblocks == 0)
        return -1;
#undef SKIP_WS
#undef EXPECT
    return (int)nblocks;
}

/* Deals ranks to nodes block by block, reusing the blocks cyclically until every rank
 * has a node (as MPICH reads the mapping), and reports rank's place. */
static int place_rank(const long (*blocks)[3], size_t nblocks, int size, int rank,
                      int *node_index, int *local_rank, int *local_size, int *num_nodes)
{
    long r = 0, before = 0, here = 0, max_node = -1, my_node = -1;
    /* First pass: my node. Second pass: count ranks per node. */
    for (int pass = 0; pass < 2; pass++) {
        r = 0;
        while (r < size) {
            long assigned = r;
            for (size_t b = 0; b < nblocks && r < size; b++) {
                if (blocks[b][2] == 0)
                    continue; /* nodes without ranks */
                for (long n = 0; n < blocks[b][1] && r < size; n++) {
                    long node = blocks[b][0] + n;
                    if (node > INT_MAX)
                        return -1;
                    for (long k = 0; k < blocks[b][2] && r < size; k++, r++) {
                        if (pass == 0) {
                            if (r == rank)
                                my_node = node;
                            if (node > max_node)
                                max_node = node;
                        } else if (node == my_node) {
                            if (r < rank)
                                before++;
                            here++;
                        }
                    }
                }
            }
            if (r == assigned)
                return -1; /* no block holds any rank */
        }
        if (pass == 0 && my_node < 0)
            return -1;
    }
    *node_index = (int)my_node;
    *local_rank = (int)before;
    *local_size = (int)here;
    *num_nodes = (int)(max_node + 1);
    return 0;
}

