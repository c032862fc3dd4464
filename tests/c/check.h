/* A minimal test harness: CHECK records a failure and goes on, the runner's exit
 * status says whether anything failed, and the summary line is the plain
 * "N passed, N failed" that CI reads. */
#ifndef FOEHN_TEST_CHECK_H
#define FOEHN_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond) do { \
    if (cond) { check_passed++; } \
    else { check_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_INT(got, want) do { \
    long long g_ = (long long)(got), w_ = (long long)(want); \
    if (g_ == w_) { check_passed++; } \
    else { check_failed++; fprintf(stderr, "%s:%d: %s is %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); } \
} while (0)

#define CHECK_STR(got, want) do { \
    const char *g_ = (got), *w_ = (want); \
    if ((g_ == NULL && w_ == NULL) || (g_ && w_ && strcmp(g_, w_) == 0)) { check_passed++; } \
    else { check_failed++; fprintf(stderr, "%s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got, \
                                    g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } \
} while (0)

/* Substring check, for error messages that must name a variable and its value. */
#define CHECK_CONTAINS(haystack, needle) do { \
    const char *h_ = (haystack), *n_ = (needle); \
    if (h_ && strstr(h_, n_)) { check_passed++; } \
    else { check_failed++; fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                                    h_ ? h_ : "(null)", n_); } \
} while (0)

static inline int check_summary(const char *suite)
{
    printf("%s: %d passed, %d failed\n", suite, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
