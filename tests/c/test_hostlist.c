/* Hostlist and task-count grammars: expansion, compression, round trips, errors. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "foehn.h"

/* The expansion of hostlist joined by spaces, or "ERR" on failure. */
static char joined[1 << 16];

static const char *expand_joined(const char *hostlist)
{
    char **hosts = NULL;
    size_t n = 0;
    foehn_error err;
    if (foehn_hostlist_expand(hostlist, &hosts, &n, &err) != FOEHN_OK) {
        fprintf(stderr, "  expand(\"%s\") failed: %s\n", hostlist, err.message);
        return "ERR";
    }
    size_t len = 0;
    joined[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(joined + len, sizeof joined - len, "%s%s", i ? " " : "", hosts[i]);
        if (w > 0 && (size_t)w < sizeof joined - len)
            len += (size_t)w;
    }
    foehn_strv_free(hosts, n);
    return joined;
}

#define EXPANDS(list, want) CHECK_STR(expand_joined(list), want)

/* Checks that expanding list fails with status and a message quoting the list. */
static void check_expand_error(const char *list, int status, const char *words)
{
    char **hosts = (char **)(uintptr_t)1;
    size_t n = 99;
    foehn_error err;
    int rc = foehn_hostlist_expand(list, &hosts, &n, &err);
    CHECK_INT(rc, status);
    CHECK(hosts == NULL);
    CHECK_INT(n, 0);
    CHECK_CONTAINS(err.message, list);
    CHECK_CONTAINS(err.message, words);
    if (rc == FOEHN_OK)
        foehn_strv_free(hosts, n);
}

/* Compresses the space-separated names and returns the hostlist (static), or "ERR". */
static char compressed[1 << 16];

static const char *compress_words(const char *words)
{
    char copy[4096];
    const char *hosts[256];
    size_t n = 0;
    snprintf(copy, sizeof copy, "%s", words);
    for (char *t = strtok(copy, " "); t && n < 256; t = strtok(NULL, " "))
        hosts[n++] = t;
    char *out = NULL;
    foehn_error err;
    if (foehn_hostlist_compress(hosts, n, &out, &err) != FOEHN_OK) {
        fprintf(stderr, "  compress(\"%s\") failed: %s\n", words, err.message);
        return "ERR";
    }
    snprintf(compressed, sizeof compressed, "%s", out);
    free(out);
    return compressed;
}

#define COMPRESSES(words, want) do { \
    CHECK_STR(compress_words(words), want); \
    EXPANDS(want, words); \
} while (0)

static void test_expand(void)
{
    /* plain names and lists */
    EXPANDS("n1", "n1");
    EXPANDS("login", "login");
    EXPANDS("a,b,c", "a b c");
    EXPANDS("a.example.org,b_1", "a.example.org b_1");
    /* Slurm documentation examples */
    EXPANDS("tux[0-3,8]", "tux0 tux1 tux2 tux3 tux8");
    EXPANDS("linux[00-15]",
            "linux00 linux01 linux02 linux03 linux04 linux05 linux06 linux07 linux08 linux09 "
            "linux10 linux11 linux12 linux13 linux14 linux15");
    EXPANDS("rack[0-1]-node[01-02]", "rack0-node01 rack0-node02 rack1-node01 rack1-node02");
    EXPANDS("n[1-2],m[3-4]", "n1 n2 m3 m4");
    /* padding: the written start number sets the width */
    EXPANDS("n[001-003]", "n001 n002 n003");
    EXPANDS("n[8-11]", "n8 n9 n10 n11");
    EXPANDS("n[08-11]", "n08 n09 n10 n11");
    EXPANDS("n[1-010]", "n1 n2 n3 n4 n5 n6 n7 n8 n9 n10");
    EXPANDS("n[098-101]", "n098 n099 n100 n101");
    EXPANDS("n[1,01,001]", "n1 n01 n001");
    EXPANDS("n[7]", "n7");
    EXPANDS("n[007]", "n007");
    /* cartesian products, in order, and suffixes */
    EXPANDS("r[1-2]n[1-2]", "r1n1 r1n2 r2n1 r2n2");
    EXPANDS("a[1-2]b[3,5]c[7-8]", "a1b3c7 a1b3c8 a1b5c7 a1b5c8 a2b3c7 a2b3c8 a2b5c7 a2b5c8");
    EXPANDS("gpu[1-2]-ib", "gpu1-ib gpu2-ib");
    EXPANDS("x[1-2]y", "x1y x2y");
    EXPANDS("[1-3]", "1 2 3");
    EXPANDS("node[001-004,010],gpu[1-2]-ib,r[1-2]n[1-2]",
            "node001 node002 node003 node004 node010 gpu1-ib gpu2-ib r1n1 r1n2 r2n1 r2n2");
    /* duplicates kept, order kept */
    EXPANDS("n[3,1,1],n1", "n3 n1 n1 n1");
    EXPANDS("n[2-3,1-2]", "n2 n3 n1 n2");
    /* whitespace around the whole value is trimmed */
    EXPANDS("  n[1-2]\n", "n1 n2");
    /* large numbers near the top of unsigned long long */
    EXPANDS("n[18446744073709551614-18446744073709551615]", "n18446744073709551614 n18446744073709551615");
    /* a 255-character name is fine */
    {
        char list[300];
        memset(list, 'a', 252);
        strcpy(list + 252, "[1]");
        char **hosts;
        size_t n;
        CHECK_INT(foehn_hostlist_expand(list, &hosts, &n, NULL), FOEHN_OK);
        CHECK_INT(n, 1);
        if (n == 1)
            CHECK_INT(strlen(hosts[0]), 253);
        foehn_strv_free(hosts, n);
    }
    /* err may be NULL; success leaves an empty message */
    {
        char **hosts;
        size_t n;
        foehn_error err;
        strcpy(err.message, "stale");
        CHECK_INT(foehn_hostlist_expand("n[1-4]", &hosts, &n, &err), FOEHN_OK);
        CHECK_STR(err.message, "");
        CHECK_INT(n, 4);
        foehn_strv_free(hosts, n);
    }
}

static void test_expand_errors(void)
{
    check_expand_error("n[1-3", FOEHN_ERR_INVALID, "unclosed '[' at position 1");
    check_expand_error("n[1-3,", FOEHN_ERR_INVALID, "unclosed '['");
    check_expand_error("n[", FOEHN_ERR_INVALID, "unclosed '['");
    check_expand_error("n1-3]", FOEHN_ERR_INVALID, "unexpected ']' at position 4");
    check_expand_error("n[1-[2]]", FOEHN_ERR_INVALID, "nested '[' at position 4");
    check_expand_error("n[1,[2]]", FOEHN_ERR_INVALID, "nested '[' at position 4");
    check_expand_error("n[1[2]]", FOEHN_ERR_INVALID, "nested '[' at position 3");
    check_expand_error("a,,b", FOEHN_ERR_INVALID, "empty entry at position 2");
    check_expand_error("a,b,", FOEHN_ERR_INVALID, "empty entry at position 4");
    check_expand_error(",a", FOEHN_ERR_INVALID, "empty entry at position 0");
    check_expand_error("n[]", FOEHN_ERR_INVALID, "empty range at position 2");
    check_expand_error("n[1,]", FOEHN_ERR_INVALID, "empty range");
    check_expand_error("n[,1]", FOEHN_ERR_INVALID, "empty range");
    check_expand_error("n[-3]", FOEHN_ERR_INVALID, "empty range");
    check_expand_error("n[1-]", FOEHN_ERR_INVALID, "range without an end");
    check_expand_error("n[5-3]", FOEHN_ERR_INVALID, "reversed range 5-3");
    check_expand_error("n[a-b]", FOEHN_ERR_INVALID, "unexpected 'a' in a range");
    check_expand_error("n[1-b]", FOEHN_ERR_INVALID, "unexpected 'b' in a range");
    check_expand_error("n[1-2-3]", FOEHN_ERR_INVALID, "unexpected '-' in a range");
    check_expand_error("n[1 -2]", FOEHN_ERR_INVALID, "a space in a range");
    check_expand_error("n[18446744073709551616]", FOEHN_ERR_INVALID, "number too large");
    check_expand_error("n[1-99999999999999999999999]", FOEHN_ERR_INVALID, "number too large");
    check_expand_error("n 1", FOEHN_ERR_INVALID, "a space is not allowed in a host name at position 1");
    check_expand_error("a, b", FOEHN_ERR_INVALID, "not allowed");
    check_expand_error("n/1", FOEHN_ERR_INVALID, "'/' is not allowed");
    check_expand_error("n\x01", FOEHN_ERR_INVALID, "byte 0x01");
    check_expand_error("n[1-2]:x", FOEHN_ERR_INVALID, "':'");
    check_expand_error("", FOEHN_ERR_INVALID, "empty");
    check_expand_error("   ", FOEHN_ERR_INVALID, "empty");
    {
        char list[300];
        memset(list, 'a', 256);
        list[256] = '\0';
        check_expand_error(list, FOEHN_ERR_INVALID, "longer than 255");
        memset(list, 'a', 253);
        strcpy(list + 253, "[1-100]"); /* n100 is 256 long */
        check_expand_error(list, FOEHN_ERR_INVALID, "longer than 255");
        strcpy(list + 253, "[0001]");
        check_expand_error(list, FOEHN_ERR_INVALID, "longer than 255");
    }
    /* limits: refused before anything big is allocated, so quickly */
    clock_t t0 = clock();
    check_expand_error("n[0-99999999]", FOEHN_ERR_LIMIT, "more than 1048576 hosts");
    check_expand_error("n[0-18446744073709551615]", FOEHN_ERR_LIMIT, "more than");
    check_expand_error("a[0-1023]b[0-1024]", FOEHN_ERR_LIMIT, "more than");
    check_expand_error("a[0-4294967295]b[0-4294967295]c[0-4294967295]", FOEHN_ERR_LIMIT, "more than");
    check_expand_error("a[0-524287],b[0-524288]", FOEHN_ERR_LIMIT, "more than");
    CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
    /* exactly the limit is allowed */
    {
        char **hosts;
        size_t n;
        CHECK_INT(foehn_hostlist_expand("a[0-1023]b[0-1023]", &hosts, &n, NULL), FOEHN_OK);
        CHECK_INT(n, FOEHN_HOSTLIST_MAX);
        if (n == FOEHN_HOSTLIST_MAX) {
            CHECK_STR(hosts[0], "a0b0");
            CHECK_STR(hosts[n - 1], "a1023b1023");
        }
        foehn_strv_free(hosts, n);
    }
    /* NULL arguments */
    {
        char **hosts;
        size_t n;
        CHECK_INT(foehn_hostlist_expand(NULL, &hosts, &n, NULL), FOEHN_ERR_INVALID);
        CHECK(hosts == NULL);
    }
}

static void test_compress(void)
{
    COMPRESSES("n1", "n1");
    COMPRESSES("n1 n2 n3", "n[1-3]");
    COMPRESSES("n001 n002 n003 n010", "n[001-003,010]");
    COMPRESSES("n9 n10 n11", "n[9-11]");
    COMPRESSES("n09 n10 n11", "n[09-11]");
    COMPRESSES("n08 n9", "n[08,9]");
    COMPRESSES("n8 n09", "n[8,09]");
    COMPRESSES("n99 n100", "n[99-100]");
    COMPRESSES("n099 n100", "n[099-100]");
    COMPRESSES("n1 n01 n001", "n[1,01,001]");
    COMPRESSES("n3 n2 n1", "n[3,2,1]");
    COMPRESSES("n1 n1 n2", "n[1,1-2]");
    COMPRESSES("n1 m1 n2", "n1,m1,n2");
    COMPRESSES("r1n1 r1n2 r2n1 r2n2", "r1n[1-2],r2n[1-2]");
    COMPRESSES("login n1 n2 login", "login,n[1-2],login");
    COMPRESSES("gpu1-ib gpu2-ib", "gpu1-ib,gpu2-ib");
    COMPRESSES("1 2 3", "1,2,3");
    COMPRESSES("a.b1 a.b2 a_c3", "a.b[1-2],a_c3");
    COMPRESSES("n0 n1 n3 n4 n5 n7", "n[0-1,3-5,7]");
    COMPRESSES("n99999999999999999999 n100000000000000000000",
               "n99999999999999999999,n100000000000000000000");
    COMPRESSES("n9999999999999999999 n10000000000000000000", "n9999999999999999999,n10000000000000000000");
    COMPRESSES("n1234567890123456788 n1234567890123456789", "n[1234567890123456788-1234567890123456789]");

    char *out = NULL;
    CHECK_INT(foehn_hostlist_compress(NULL, 0, &out, NULL), FOEHN_OK);
    CHECK_STR(out, "");
    free(out);

    const char *bad[][2] = {{"n[1]", "n[1]"}, {"a,b", "a,b"}, {"has space", "has space"}, {"", "empty"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *hosts[] = {"ok1", bad[i][0]};
        foehn_error err;
        out = (char *)(uintptr_t)1;
        CHECK_INT(foehn_hostlist_compress(hosts, 2, &out, &err), FOEHN_ERR_INVALID);
        CHECK(out == NULL);
        CHECK_CONTAINS(err.message, bad[i][1]);
    }
    {
        char longname[300];
        memset(longname, 'a', 256);
        longname[256] = '\0';
        const char *hosts[] = {longname};
        foehn_error err;
        CHECK_INT(foehn_hostlist_compress(hosts, 1, &out, &err), FOEHN_ERR_INVALID);
        CHECK_CONTAINS(err.message, "longer than 255");
        const char *nulls[] = {NULL};
        CHECK_INT(foehn_hostlist_compress(nulls, 1, &out, NULL), FOEHN_ERR_INVALID);
    }
}

/* A deterministic generator (xorshift), so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* One random host name: a prefix, an optional padded number, an optional suffix. */
static void random_name(char *buf, size_t size, unsigned *last)
{
    static const char *prefixes[] = {"n", "node", "gpu", "r1n", "x-", "a.b", "c_", "nid0", ""};
    static const char *suffixes[] = {"", "", "", "-ib", ".local", "x"};
    const char *prefix = prefixes[rnd(9)];
    const char *suffix = suffixes[rnd(6)];
    unsigned v;
    switch (rnd(4)) {
    case 0: v = *last + 1; break; /* runs are common in real lists */
    case 1: v = *last; break;
    case 2: v = rnd(20) + (rnd(2) ? 95 : 0); break; /* width changes around 99/100 */
    default: v = rnd(100000); break;
    }
    *last = v;
    int width = (int)rnd(5);
    if (!*prefix && !*suffix && rnd(2) == 0)
        prefix = "z";
    if (rnd(10) == 0)
        snprintf(buf, size, "%s%s", prefix[0] ? prefix : "plain", suffix);
    else
        snprintf(buf, size, "%s%0*u%s", prefix, width, v, suffix);
}

static void test_round_trip(void)
{
    int failures = 0;
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + rnd(round % 10 == 0 ? 200 : 20);
        char names[200][64];
        const char *hosts[200];
        unsigned last = rnd(120);
        for (size_t i = 0; i < n; i++) {
            random_name(names[i], sizeof names[i], &last);
            hosts[i] = names[i];
        }
        char *list = NULL;
        char **back = NULL;
        size_t nback = 0;
        foehn_error err;
        int ok = foehn_hostlist_compress(hosts, n, &list, &err) == FOEHN_OK &&
                 foehn_hostlist_expand(list, &back, &nback, &err) == FOEHN_OK && nback == n;
        for (size_t i = 0; ok && i < n; i++)
            ok = strcmp(back[i], hosts[i]) == 0;
        if (!ok && failures++ < 5)
            fprintf(stderr, "  round trip %d failed: %s (%s)\n", round, list ? list : "-", err.message);
        CHECK(ok);
        free(list);
        foehn_strv_free(back, nback);
    }
    /* and the other way: compressing an expansion expands to the same hosts */
    const char *lists[] = {"tux[0-3,8]", "linux[00-15]", "rack[0-1]-node[01-02]", "n[8-11,08-11,1-010]",
                           "r[1-2]n[1-2]", "n[3,1,1],n1,m[097-103]"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        char **hosts = NULL, *list = NULL;
        size_t n = 0;
        CHECK_INT(foehn_hostlist_expand(lists[i], &hosts, &n, NULL), FOEHN_OK);
        CHECK_INT(foehn_hostlist_compress((const char *const *)hosts, n, &list, NULL), FOEHN_OK);
        char want[4096];
        snprintf(want, sizeof want, "%s", expand_joined(lists[i]));
        CHECK_STR(expand_joined(list ? list : ""), want);
        free(list);
        foehn_strv_free(hosts, n);
    }
}

/* The counts expansion joined by spaces, or "ERR". */
static const char *counts_joined(const char *counts)
{
    int *values = NULL;
    size_t n = 0;
    foehn_error err;
    if (foehn_counts_expand(counts, &values, &n, &err) != FOEHN_OK) {
        fprintf(stderr, "  counts(\"%s\") failed: %s\n", counts, err.message);
        return "ERR";
    }
    size_t len = 0;
    joined[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(joined + len, sizeof joined - len, "%s%d", i ? " " : "", values[i]);
        if (w > 0 && (size_t)w < sizeof joined - len)
            len += (size_t)w;
    }
    free(values);
    return joined;
}

static void check_counts_error(const char *counts, int status, const char *words)
{
    int *values = (int *)(uintptr_t)1;
    size_t n = 99;
    foehn_error err;
    int rc = foehn_counts_expand(counts, &values, &n, &err);
    CHECK_INT(rc, status);
    CHECK(values == NULL);
    CHECK_INT(n, 0);
    CHECK_CONTAINS(err.message, counts);
    CHECK_CONTAINS(err.message, words);
    if (rc == FOEHN_OK)
        free(values);
}

static void test_counts(void)
{
    CHECK_STR(counts_joined("2(x3),1"), "2 2 2 1");
    CHECK_STR(counts_joined("4"), "4");
    CHECK_STR(counts_joined("1(x2)"), "1 1");
    CHECK_STR(counts_joined("0"), "0");
    CHECK_STR(counts_joined("8,4(x2),8(x1)"), "8 4 4 8");
    CHECK_STR(counts_joined(" 3(x2)\n"), "3 3");
    CHECK_STR(counts_joined("2147483647"), "2147483647");
    {
        int *values;
        size_t n;
        CHECK_INT(foehn_counts_expand("1(x1048575),2", &values, &n, NULL), FOEHN_OK);
        CHECK_INT(n, FOEHN_HOSTLIST_MAX);
        if (n == FOEHN_HOSTLIST_MAX)
            CHECK_INT(values[n - 1], 2);
        free(values);
    }
    check_counts_error("2(x", FOEHN_ERR_INVALID, "missing number");
    check_counts_error("2(x3", FOEHN_ERR_INVALID, "unclosed '('");
    check_counts_error("2(3)", FOEHN_ERR_INVALID, "expected 'x'");
    check_counts_error("2(", FOEHN_ERR_INVALID, "expected 'x'");
    check_counts_error("(x3)", FOEHN_ERR_INVALID, "unexpected '('");
    check_counts_error("2(x0)", FOEHN_ERR_INVALID, "repeat count 0");
    check_counts_error("-1", FOEHN_ERR_INVALID, "negative");
    check_counts_error("2(x-1)", FOEHN_ERR_INVALID, "negative");
    check_counts_error("abc", FOEHN_ERR_INVALID, "unexpected 'a'");
    check_counts_error("2x", FOEHN_ERR_INVALID, "unexpected 'x'");
    check_counts_error("2(x3)4", FOEHN_ERR_INVALID, "unexpected '4'");
    check_counts_error("1,,2", FOEHN_ERR_INVALID, "empty entry");
    check_counts_error("1,", FOEHN_ERR_INVALID, "missing number");
    check_counts_error("1, 2", FOEHN_ERR_INVALID, "a space");
    check_counts_error("2147483648", FOEHN_ERR_INVALID, "INT_MAX");
    check_counts_error("99999999999999999999999", FOEHN_ERR_INVALID, "INT_MAX");
    check_counts_error("", FOEHN_ERR_INVALID, "empty");
    check_counts_error("1(x1048577)", FOEHN_ERR_LIMIT, "above the limit");
    check_counts_error("1(x99999999999999999999999)", FOEHN_ERR_LIMIT, "above the limit");
    check_counts_error("1(x1048576),1", FOEHN_ERR_LIMIT, "more than 1048576");
    int *values;
    size_t n;
    CHECK_INT(foehn_counts_expand(NULL, &values, &n, NULL), FOEHN_ERR_INVALID);
}

int main(void)
{
    test_expand();
    test_expand_errors();
    test_compress();
    test_round_trip();
    test_counts();
    return check_summary("hostlist");
}
