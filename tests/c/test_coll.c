/* Collectives over the real engine, as N processes under `foehn run -n N` (N = 1..8):
 * every collective against values computed here, for empty, single-element, odd and
 * large buffers (around each algorithm's switch), every root, FOEHN_IN_PLACE, several
 * dtypes and ops, a non-commutative user reduction (rank order matters), vector forms
 * with uneven and zero counts, object collectives with empty objects, nonblocking
 * collectives several at a time, on COMM_WORLD, a Split (even/odd ranks, reversed)
 * and a Dup; then mismatches: a rank calling another collective, and buffers of
 * other sizes, each on a Dup of its own (a failed collective leaves its communicator
 * unusable). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "foehn.h"

static foehn_comm *world, *self;
static int wrank, wsize;
static foehn_error err;
static char where[200]; /* the case being checked, for failure lines */

#define SAY(...) snprintf(where, sizeof where, __VA_ARGS__)

#define EXPECT(cond) do { \
    if (cond) { check_passed++; } \
    else { check_failed++; fprintf(stderr, "rank %d: %s:%d: [%s] failed: %s\n", wrank, __FILE__, \
                                    __LINE__, where, #cond); } \
} while (0)

#define EXPECT_RC(call, want) do { \
    int rc_ = (call); \
    if (rc_ == (want)) { check_passed++; } \
    else { check_failed++; fprintf(stderr, "rank %d: %s:%d: [%s] %s returned %d, want %d: %s\n", \
                                    wrank, __FILE__, __LINE__, where, #call, rc_, (int)(want), \
                                    err.message); } \
} while (0)

#define EXPECT_OK(call) EXPECT_RC(call, FOEHN_OK)

/* The communicator under test. */
typedef struct ctx {
    foehn_comm *comm;
    const char *name;
    int rank, size;
    int big; /* also the multi-MiB sizes */
} ctx;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "rank %d: out of memory for %zu bytes\n", wrank, n);
        exit(2);
    }
    return p;
}

static unsigned char pat(int r, size_t i, unsigned salt)
{
    return (unsigned char)(r * 131 + i * 7 + (i >> 9) + salt * 17 + 1);
}

static void fill(unsigned char *buf, size_t n, int r, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pat(r, i, salt);
}

static int filled(const unsigned char *buf, size_t n, int r, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != pat(r, i, salt))
            return 0;
    return 1;
}

static int all_bytes(const unsigned char *buf, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != v)
            return 0;
    return 1;
}

/* ---- reductions: cases, inputs and the expected folds ---------------------- */

#define MOD 1000003LL

/* inout = in x inout for 2x2 matrices (int64 groups of 4), mod MOD: rank order shows. */
static int matmul(const void *in, void *inout, size_t count, foehn_dtype dtype, void *ctx_,
                  foehn_error *e)
{
    (void)ctx_;
    if (dtype != FOEHN_INT64 || count % 4)
        return foehn_reduce_local(in, inout, 0, FOEHN_BYTE, FOEHN_OP_MINLOC, e); /* fails */
    const int64_t *a = in;
    int64_t *b = inout;
    for (size_t g = 0; g < count; g += 4) {
        int64_t r0 = (a[g] * b[g] + a[g + 1] * b[g + 2]) % MOD;
        int64_t r1 = (a[g] * b[g + 1] + a[g + 1] * b[g + 3]) % MOD;
        int64_t r2 = (a[g + 2] * b[g] + a[g + 3] * b[g + 2]) % MOD;
        int64_t r3 = (a[g + 2] * b[g + 1] + a[g + 3] * b[g + 3]) % MOD;
        b[g] = r0, b[g + 1] = r1, b[g + 2] = r2, b[g + 3] = r3;
    }
    return FOEHN_OK;
}

/* A commutative user reduction: sum mod MOD. */
static int summod(const void *in, void *inout, size_t count, foehn_dtype dtype, void *ctx_,
                  foehn_error *e)
{
    (void)ctx_, (void)dtype, (void)e;
    const int64_t *a = in;
    int64_t *b = inout;
    for (size_t i = 0; i < count; i++)
        b[i] = (a[i] + b[i]) % MOD;
    return FOEHN_OK;
}

static const foehn_user_op matmul_op = {.fn = matmul, .commute = 0};
static const foehn_user_op summod_op = {.fn = summod, .commute = 1};

typedef struct red_case {
    const char *name;
    foehn_dtype dtype;
    foehn_reduction op;
    size_t group; /* counts are multiples of this */
} red_case;

static const red_case red_cases[] = {
    {"int32 sum", FOEHN_INT32, {FOEHN_OP_SUM, NULL}, 1},
    {"int32 max", FOEHN_INT32, {FOEHN_OP_MAX, NULL}, 1},
    {"float64 sum", FOEHN_FLOAT64, {FOEHN_OP_SUM, NULL}, 1},
    {"float16 sum", FOEHN_FLOAT16, {FOEHN_OP_SUM, NULL}, 1},
    {"2int minloc", FOEHN_2INT, {FOEHN_OP_MINLOC, NULL}, 1},
    {"user matmul (non-commutative)", FOEHN_INT64, {FOEHN_OP_SUM, &matmul_op}, 4},
    {"user summod (commutative)", FOEHN_INT64, {FOEHN_OP_SUM, &summod_op}, 1},
};
#define NCASES (sizeof red_cases / sizeof red_cases[0])

/* IEEE binary16 bits of a small non-negative integer (exact up to 2048). */
static uint16_t half_of(unsigned v)
{
    if (!v)
        return 0;
    unsigned e = 0;
    while ((v >> (e + 1)) != 0)
        e++;
    return (uint16_t)(((e + 15) << 10) | ((v << (10 - e)) & 0x3ff));
}

/* Rank r's input for a case: count elements, the i-th also depending on salt. */
static void red_input(const red_case *k, int r, size_t count, unsigned salt, void *out)
{
    for (size_t i = 0; i < count; i++) {
        size_t j = i + salt;
        switch (k->dtype) {
        case FOEHN_INT32:
            ((int32_t *)out)[i] = (int32_t)(((r + 1) * 1000 + (int)(j % 1013) - 500) *
                                            (j % 2 ? 1 : -1));
            break;
        case FOEHN_FLOAT64:
            ((double *)out)[i] = (double)(r * 3 + (int)(j % 17)) - 8;
            break;
        case FOEHN_FLOAT16:
            ((uint16_t *)out)[i] = half_of((unsigned)r + (unsigned)(j % 5));
            break;
        case FOEHN_2INT: {
            int *p = (int *)out + 2 * i;
            p[0] = (int)((j * 7 + (size_t)r * 3) % 5);
            p[1] = r;
            break;
        }
        default: { /* int64: matrices (groups of 4) or plain numbers */
            int64_t *p = out;
            size_t g = j / 4;
            switch (k->group == 4 ? i % 4 : 4) {
            case 0: p[i] = 1 + (int64_t)((size_t)r + g) % 3; break;
            case 1: p[i] = (int64_t)((size_t)r * 7 + g) % 11; break;
            case 2: p[i] = (int64_t)(g * 5 + (size_t)r) % 7; break;
            case 3: p[i] = 1 + (int64_t)((size_t)r * 3 + g * 2) % 5; break;
            default: p[i] = ((int64_t)r * 99991 + (int64_t)j * 7) % MOD;
            }
        }
        }
    }
}

static size_t esize(const red_case *k)
{
    return foehn_dtype_size(k->dtype);
}

/* out = x[from] op x[from + 1] op ... op x[to - 1] (to > from), each rank's input
 * shifted by block * count elements (for reduce_scatter_block's blocks). */
static void red_fold(const red_case *k, int from, int to, size_t count, unsigned salt, void *out)
{
    size_t bytes = count * esize(k);
    unsigned char *x = xmalloc(bytes);
    red_input(k, from, count, salt, out);
    for (int r = from + 1; r < to; r++) {
        red_input(k, r, count, salt, x);
        /* acc op x: the accumulator is the lower part, so apply(acc, x), then take x */
        foehn_error e;
        int rc = k->op.user ? k->op.user->fn(out, x, count, k->dtype, k->op.user->ctx, &e)
                            : foehn_reduce_local(out, x, count, k->dtype, k->op.op, &e);
        if (rc != FOEHN_OK)
            fprintf(stderr, "rank %d: local fold failed: %s\n", wrank, e.message);
        memcpy(out, x, bytes);
    }
    free(x);
}

/* Element counts to try: empty, one, odd, around the 64 KiB switch, and (big) 3 MiB;
 * rounded up to the case's group. */
static size_t red_counts(const ctx *t, const red_case *k, size_t *out)
{
    size_t e = esize(k), g = k->group;
    size_t elems[] = {0, 1, 7, 65536 / e - 1, 65536 / e + 3, ((size_t)3 << 20) / e};
    size_t n = t->big ? 6 : 5;
    for (size_t i = 0; i < n; i++)
        out[i] = (elems[i] + g - 1) / g * g;
    return n;
}

static void test_reduce_allreduce(const ctx *t)
{
    int n = t->size, me = t->rank;
    for (size_t ki = 0; ki < NCASES; ki++) {
        const red_case *k = &red_cases[ki];
        size_t counts[8], nc = red_counts(t, k, counts);
        for (size_t ci = 0; ci < nc; ci++) {
            size_t count = counts[ci], bytes = count * esize(k);
            int large = bytes > (1 << 20);
            /* large ones: only the sums and the ordered product, fewer roots */
            if (large && ki != 0 && ki != 5)
                continue;
            unsigned char *in = xmalloc(bytes), *out = xmalloc(bytes), *want = xmalloc(bytes);
            unsigned salt = (unsigned)(ci * 3 + ki);
            red_input(k, me, count, salt, in);
            red_fold(k, 0, n, count, salt, want);
            for (int root = 0; root < n; root++) {
                if (large && root != n - 1 && root != 0)
                    continue;
                int inplace = (root + (int)ci) % 2 == 1;
                SAY("%s: reduce %s count %zu root %d%s", t->name, k->name, count, root,
                    inplace ? " in place" : "");
                memset(out, 0xEE, bytes);
                if (inplace && me == root)
                    memcpy(out, in, bytes);
                /* recvbuf means nothing off the root: sometimes NULL there */
                void *dst = me == root || ci % 2 ? out : NULL;
                EXPECT_OK(foehn_reduce(t->comm, inplace && me == root ? FOEHN_IN_PLACE : in, dst,
                                       count, k->dtype, k->op, root, &err));
                if (me == root)
                    EXPECT(memcmp(out, want, bytes) == 0);
                else
                    EXPECT(all_bytes(out, bytes, 0xEE));
            }
            for (int inplace = 0; inplace < 2; inplace++) {
                SAY("%s: allreduce %s count %zu%s", t->name, k->name, count,
                    inplace ? " in place" : "");
                memset(out, 0xEE, bytes);
                if (inplace)
                    memcpy(out, in, bytes);
                EXPECT_OK(foehn_allreduce(t->comm, inplace ? FOEHN_IN_PLACE : in, out, count,
                                          k->dtype, k->op, &err));
                EXPECT(memcmp(out, want, bytes) == 0);
            }
            free(in);
            free(out);
            free(want);
        }
    }
}

static void test_scans(const ctx *t)
{
    int me = t->rank;
    for (size_t ki = 0; ki < NCASES; ki++) {
        const red_case *k = &red_cases[ki];
        size_t counts[8], nc = red_counts(t, k, counts);
        for (size_t ci = 0; ci < nc && ci < 5; ci++) {
            size_t count = counts[ci], bytes = count * esize(k);
            unsigned salt = (unsigned)(ci + 5 * ki);
            unsigned char *in = xmalloc(bytes), *out = xmalloc(bytes), *want = xmalloc(bytes);
            red_input(k, me, count, salt, in);
            for (int ex = 0; ex < 2; ex++) {
                int inplace = (int)(ci + ki + (size_t)ex) % 2;
                SAY("%s: %s %s count %zu%s", t->name, ex ? "exscan" : "scan", k->name, count,
                    inplace ? " in place" : "");
                memset(out, 0xEE, bytes);
                if (inplace)
                    memcpy(out, in, bytes);
                const void *send = inplace ? FOEHN_IN_PLACE : in;
                EXPECT_OK(ex ? foehn_exscan(t->comm, send, out, count, k->dtype, k->op, &err)
                             : foehn_scan(t->comm, send, out, count, k->dtype, k->op, &err));
                if (ex && me == 0) {
                    /* untouched: still the input (in place) or the fill */
                    if (inplace)
                        EXPECT(memcmp(out, in, bytes) == 0);
                    else
                        EXPECT(all_bytes(out, bytes, 0xEE));
                } else {
                    red_fold(k, 0, ex ? me : me + 1, count, salt, want);
                    EXPECT(memcmp(out, want, bytes) == 0);
                }
            }
            free(in);
            free(out);
            free(want);
        }
    }
}

static void test_reduce_scatter(const ctx *t)
{
    int n = t->size, me = t->rank;
    for (size_t ki = 0; ki < NCASES; ki++) {
        const red_case *k = &red_cases[ki];
        size_t counts[] = {0, k->group, 5 * k->group, (20000 / k->group) * k->group};
        for (size_t ci = 0; ci < 4; ci++) {
            size_t count = counts[ci], bytes = count * esize(k), all = bytes * (size_t)n;
            unsigned salt = (unsigned)(ci * 7 + ki);
            unsigned char *in = xmalloc(all), *out = xmalloc(all), *want = xmalloc(bytes);
            /* block b of rank r's input is red_input(r, salt + b * count) */
            for (int b = 0; b < n; b++)
                red_input(k, me, count, salt + (unsigned)((size_t)b * count), in + (size_t)b * bytes);
            red_fold(k, 0, n, count, salt + (unsigned)((size_t)me * count), want);
            for (int inplace = 0; inplace < 2; inplace++) {
                SAY("%s: reduce_scatter_block %s count %zu%s", t->name, k->name, count,
                    inplace ? " in place" : "");
                memset(out, 0xEE, all);
                if (inplace)
                    memcpy(out, in, all);
                EXPECT_OK(foehn_reduce_scatter_block(t->comm, inplace ? FOEHN_IN_PLACE : in, out,
                                                     count, k->dtype, k->op, &err));
                EXPECT(memcmp(out, want, bytes) == 0);
                if (!inplace)
                    EXPECT(all_bytes(out + bytes, all - bytes, 0xEE));
            }
            free(in);
            free(out);
            free(want);
        }
    }
}

/* ---- data movement ----------------------------------------------------------- */

static void test_barrier_bcast(const ctx *t)
{
    int n = t->size, me = t->rank;
    SAY("%s: barrier", t->name);
    for (int i = 0; i < 3; i++)
        EXPECT_OK(foehn_barrier(t->comm, &err));
    size_t sizes[] = {0, 1, 13, (512 << 10) - 1, 512 << 10, (512 << 10) + 7, (3 << 20) + 5};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t bytes = sizes[si];
        if (bytes > (1 << 20) && !t->big)
            continue;
        unsigned char *buf = xmalloc(bytes + 1);
        for (int root = 0; root < n; root++) {
            SAY("%s: bcast %zu bytes root %d", t->name, bytes, root);
            if (me == root)
                fill(buf, bytes, root, (unsigned)si);
            else
                memset(buf, 0xEE, bytes);
            buf[bytes] = 0x5A;
            EXPECT_OK(foehn_bcast(t->comm, buf, bytes, root, &err));
            EXPECT(filled(buf, bytes, root, (unsigned)si) && buf[bytes] == 0x5A);
        }
        free(buf);
    }
}

static const size_t block_sizes[] = {0, 1, 7, 8191, 8193, 9400, 70000};
#define NBLOCKS (sizeof block_sizes / sizeof block_sizes[0])

static void test_gather_scatter(const ctx *t)
{
    int n = t->size, me = t->rank;
    for (size_t si = 0; si < NBLOCKS; si++) {
        size_t bytes = block_sizes[si], all = bytes * (size_t)n;
        unsigned char *mine = xmalloc(bytes), *big = xmalloc(all), *one = xmalloc(bytes);
        unsigned salt = (unsigned)si;
        fill(mine, bytes, me, salt);
        for (int root = 0; root < n; root++) {
            int inplace = (root + (int)si) % 2;
            SAY("%s: gather %zu bytes root %d%s", t->name, bytes, root, inplace ? " in place" : "");
            memset(big, 0xEE, all);
            if (inplace && me == root)
                memcpy(big + (size_t)me * bytes, mine, bytes);
            EXPECT_OK(foehn_gather(t->comm, inplace && me == root ? FOEHN_IN_PLACE : mine, big,
                                   bytes, root, &err));
            int ok = 1;
            for (int r = 0; r < n && me == root; r++)
                ok &= filled(big + (size_t)r * bytes, bytes, r, salt);
            EXPECT(ok && (me == root || all_bytes(big, all, 0xEE)));

            SAY("%s: scatter %zu bytes root %d%s", t->name, bytes, root,
                inplace ? " in place" : "");
            for (int r = 0; r < n && me == root; r++)
                fill(big + (size_t)r * bytes, bytes, r, salt + 1);
            memset(one, 0xEE, bytes);
            EXPECT_OK(foehn_scatter(t->comm, big, inplace && me == root ? (void *)FOEHN_IN_PLACE : one,
                                    bytes, root, &err));
            if (inplace && me == root)
                EXPECT(all_bytes(one, bytes, 0xEE) && filled(big + (size_t)me * bytes, bytes, me,
                                                             salt + 1));
            else
                EXPECT(filled(one, bytes, me, salt + 1));
        }
        for (int inplace = 0; inplace < 2; inplace++) {
            SAY("%s: allgather %zu bytes%s", t->name, bytes, inplace ? " in place" : "");
            memset(big, 0xEE, all);
            if (inplace)
                memcpy(big + (size_t)me * bytes, mine, bytes);
            EXPECT_OK(foehn_allgather(t->comm, inplace ? FOEHN_IN_PLACE : mine, big, bytes, &err));
            int ok = 1;
            for (int r = 0; r < n; r++)
                ok &= filled(big + (size_t)r * bytes, bytes, r, salt);
            EXPECT(ok);
        }
        free(mine);
        free(big);
        free(one);
    }
}

static void test_alltoall(const ctx *t)
{
    int n = t->size, me = t->rank;
    for (size_t si = 0; si < NBLOCKS; si++) {
        size_t bytes = block_sizes[si], all = bytes * (size_t)n;
        unsigned char *send = xmalloc(all), *recv = xmalloc(all);
        for (int inplace = 0; inplace < 2; inplace++) {
            SAY("%s: alltoall %zu bytes%s", t->name, bytes, inplace ? " in place" : "");
            /* the block for rank j: pattern of (me * 16 + j) */
            for (int j = 0; j < n; j++)
                fill((inplace ? recv : send) + (size_t)j * bytes, bytes, me * 16 + j, (unsigned)si);
            if (!inplace)
                memset(recv, 0xEE, all);
            EXPECT_OK(foehn_alltoall(t->comm, inplace ? FOEHN_IN_PLACE : send, recv, bytes, &err));
            int ok = 1;
            for (int j = 0; j < n; j++)
                ok &= filled(recv + (size_t)j * bytes, bytes, j * 16 + me, (unsigned)si);
            EXPECT(ok);
        }
        free(send);
        free(recv);
    }
}

/* ---- vector forms ------------------------------------------------------------ */

/* Bytes rank a contributes (to b): uneven, every third one empty; big adds 100 KB. */
static size_t vcount(int a, int b, unsigned salt, int big)
{
    if ((a * 5 + b * 3 + (int)salt) % 3 == 1)
        return 0;
    return (size_t)((a * 37 + b * 11 + (int)salt * 13) % 61) + (big ? 100000 : 0);
}

/* Blocks laid out in reverse rank order with 3-byte gaps: the total. */
static size_t layout(const size_t *counts, size_t *displs, int n)
{
    size_t at = 0;
    for (int i = n - 1; i >= 0; i--) {
        displs[i] = at;
        at += counts[i] + 3;
    }
    return at;
}

static int blocks_ok(const unsigned char *buf, const size_t *counts, const size_t *displs, int n,
                     int skip, int salt_of_rank_me, unsigned salt)
{
    int ok = 1;
    for (int i = 0; i < n; i++) {
        if (i == skip)
            continue;
        int who = salt_of_rank_me >= 0 ? i * 16 + salt_of_rank_me : i;
        ok &= filled(buf + displs[i], counts[i], who, salt);
        ok &= buf[displs[i] + counts[i]] == 0xEE; /* the gap after each block is untouched */
    }
    return ok;
}

static void test_vectors(const ctx *t)
{
    int n = t->size, me = t->rank;
    size_t *counts = xmalloc(4 * (size_t)n * sizeof *counts);
    size_t *displs = counts + n, *rcounts = counts + 2 * n, *rdispls = counts + 3 * n;
    for (unsigned salt = 0; salt < 4; salt++) {
        int big = salt == 3;
        for (int i = 0; i < n; i++)
            counts[i] = vcount(i, 0, salt, big);
        size_t total = layout(counts, displs, n);
        unsigned char *buf = xmalloc(total), *mine = xmalloc(counts[me]);
        unsigned char *one = xmalloc(counts[me] + 1);
        fill(mine, counts[me], me, salt);
        for (int root = 0; root < n; root++) {
            int inplace = (root + (int)salt) % 2;
            int ip = inplace && me == root;
            SAY("%s: gatherv salt %u root %d%s", t->name, salt, root, inplace ? " in place" : "");
            memset(buf, 0xEE, total);
            if (ip)
                memcpy(buf + displs[me], mine, counts[me]);
            EXPECT_OK(foehn_gatherv(t->comm, ip ? FOEHN_IN_PLACE : mine, ip ? 0 : counts[me], buf,
                                    me == root ? counts : NULL, me == root ? displs : NULL, root,
                                    &err));
            EXPECT(me == root ? blocks_ok(buf, counts, displs, n, -1, -1, salt)
                              : all_bytes(buf, total, 0xEE));

            SAY("%s: scatterv salt %u root %d%s", t->name, salt, root, inplace ? " in place" : "");
            memset(buf, 0xEE, total);
            for (int i = 0; i < n && me == root; i++)
                fill(buf + displs[i], counts[i], i, salt + 9);
            memset(one, 0xEE, counts[me] + 1);
            EXPECT_OK(foehn_scatterv(t->comm, buf, me == root ? counts : NULL,
                                     me == root ? displs : NULL, ip ? (void *)FOEHN_IN_PLACE : one,
                                     counts[me], root, &err));
            EXPECT(ip ? all_bytes(one, counts[me] + 1, 0xEE)
                      : filled(one, counts[me], me, salt + 9) && one[counts[me]] == 0xEE);
        }
        for (int inplace = 0; inplace < 2; inplace++) {
            SAY("%s: allgatherv salt %u%s", t->name, salt, inplace ? " in place" : "");
            memset(buf, 0xEE, total);
            if (inplace)
                memcpy(buf + displs[me], mine, counts[me]);
            EXPECT_OK(foehn_allgatherv(t->comm, inplace ? FOEHN_IN_PLACE : mine, counts[me], buf,
                                       counts, displs, &err));
            EXPECT(blocks_ok(buf, counts, displs, n, -1, -1, salt));
        }
        free(buf);
        free(mine);
        free(one);

        /* alltoallv: me sends vcount(me, j) to j and gets vcount(j, me) from j; in
         * place the counts must be symmetric, so both directions use the pair's sum. */
        for (int inplace = 0; inplace < 2; inplace++) {
            SAY("%s: alltoallv salt %u%s", t->name, salt, inplace ? " in place" : "");
            for (int j = 0; j < n; j++) {
                counts[j] = inplace ? vcount(me + j, 0, salt, big) : vcount(me, j, salt, big);
                rcounts[j] = inplace ? vcount(j + me, 0, salt, big) : vcount(j, me, salt, big);
            }
            size_t stotal = 0;
            for (int j = 0; j < n; j++) { /* forward, 1-byte gaps */
                displs[j] = stotal;
                stotal += counts[j] + 1;
            }
            size_t rtotal = layout(rcounts, rdispls, n);
            unsigned char *s = xmalloc(stotal), *r = xmalloc(rtotal);
            memset(r, 0xEE, rtotal);
            for (int j = 0; j < n; j++)
                fill(inplace ? r + rdispls[j] : s + displs[j], counts[j], me * 16 + j, salt);
            EXPECT_OK(foehn_alltoallv(t->comm, inplace ? FOEHN_IN_PLACE : s, counts, displs, r,
                                      rcounts, rdispls, &err));
            EXPECT(blocks_ok(r, rcounts, rdispls, n, -1, me, salt));
            free(s);
            free(r);
        }
    }
    free(counts);
}

/* ---- object collectives ------------------------------------------------------ */

static size_t blob_len(int r, int salt)
{
    return (r + salt) % 3 == 0 ? 0 : (size_t)(r * 1000 + salt * 7) + (salt == 2 ? 150000 : 1);
}

static int blob_ok(const void *data, size_t len, size_t want, int r, unsigned salt)
{
    return len == want && (len ? data != NULL && filled(data, len, r, salt) : 1);
}

static void free_blobs(void **outs, size_t *outlens, int n)
{
    for (int i = 0; outs && i < n; i++)
        free(outs[i]);
    free(outs);
    free(outlens);
}

static void test_blobs(const ctx *t)
{
    int n = t->size, me = t->rank;
    for (int salt = 0; salt < 3; salt++) {
        size_t mylen = blob_len(me, salt);
        unsigned char *mine = xmalloc(mylen);
        fill(mine, mylen, me, (unsigned)salt);
        /* per-destination blobs for scatter and alltoall */
        void **ins = xmalloc((size_t)n * sizeof *ins);
        size_t *inlens = xmalloc((size_t)n * sizeof *inlens);
        for (int j = 0; j < n; j++) {
            inlens[j] = blob_len(me + j, salt);
            ins[j] = inlens[j] ? xmalloc(inlens[j]) : NULL;
            fill(ins[j], inlens[j], me * 16 + j, (unsigned)salt);
        }
        for (int root = 0; root < n; root++) {
            void *out = (void *)1, **outs = (void **)1;
            size_t outlen = 99, *outlens = (size_t *)1;
            SAY("%s: bcast_blob salt %d root %d", t->name, salt, root);
            EXPECT_OK(foehn_bcast_blob(t->comm, me == root ? mine : NULL, me == root ? mylen : 0,
                                       root, &out, &outlen, &err));
            EXPECT(blob_ok(out, outlen, blob_len(root, salt), root, (unsigned)salt));
            EXPECT(out != mine || !out);
            free(out);

            SAY("%s: gather_blob salt %d root %d", t->name, salt, root);
            EXPECT_OK(foehn_gather_blob(t->comm, mine, mylen, root, &outs, &outlens, &err));
            int ok = me == root ? outs != NULL && outlens != NULL : outs == NULL && outlens == NULL;
            for (int i = 0; i < n && me == root && ok; i++)
                ok &= blob_ok(outs[i], outlens[i], blob_len(i, salt), i, (unsigned)salt);
            EXPECT(ok);
            free_blobs(outs, outlens, n);

            SAY("%s: scatter_blob salt %d root %d", t->name, salt, root);
            EXPECT_OK(foehn_scatter_blob(t->comm, me == root ? (const void *const *)ins : NULL,
                                         me == root ? inlens : NULL, root, &out, &outlen, &err));
            EXPECT(blob_ok(out, outlen, blob_len(root + me, salt), root * 16 + me, (unsigned)salt));
            free(out);
        }
        void **outs = NULL;
        size_t *outlens = NULL;
        SAY("%s: allgather_blob salt %d", t->name, salt);
        EXPECT_OK(foehn_allgather_blob(t->comm, mine, mylen, &outs, &outlens, &err));
        int ok = outs && outlens;
        for (int i = 0; i < n && ok; i++)
            ok &= blob_ok(outs[i], outlens[i], blob_len(i, salt), i, (unsigned)salt);
        EXPECT(ok);
        free_blobs(outs, outlens, n);

        SAY("%s: alltoall_blob salt %d", t->name, salt);
        EXPECT_OK(foehn_alltoall_blob(t->comm, (const void *const *)ins, inlens, &outs, &outlens,
                                      &err));
        ok = outs && outlens;
        for (int i = 0; i < n && ok; i++)
            ok &= blob_ok(outs[i], outlens[i], blob_len(i + me, salt), i * 16 + me, (unsigned)salt);
        EXPECT(ok);
        free_blobs(outs, outlens, n);

        /* nonblocking: all five at once, waited for in reverse; each fills its
         * outputs when it completes */
        SAY("%s: nonblocking blobs salt %d", t->name, salt);
        int root = (salt + 1) % n;
        foehn_request *reqs[5];
        void *bout, *sout, **gouts, **aouts, **touts;
        size_t boutlen, soutlen, *goutlens, *aoutlens, *toutlens;
        EXPECT_OK(foehn_ibcast_blob(t->comm, me == root ? mine : NULL, me == root ? mylen : 0,
                                    root, &bout, &boutlen, &reqs[0], &err));
        EXPECT_OK(foehn_igather_blob(t->comm, mine, mylen, root, &gouts, &goutlens, &reqs[1],
                                     &err));
        EXPECT_OK(foehn_iscatter_blob(t->comm, me == root ? (const void *const *)ins : NULL,
                                      me == root ? inlens : NULL, root, &sout, &soutlen, &reqs[2],
                                      &err));
        EXPECT_OK(foehn_iallgather_blob(t->comm, mine, mylen, &aouts, &aoutlens, &reqs[3], &err));
        EXPECT_OK(foehn_ialltoall_blob(t->comm, (const void *const *)ins, inlens, &touts,
                                       &toutlens, &reqs[4], &err));
        for (int i = 4; i >= 0; i--) {
            EXPECT_OK(foehn_request_wait(reqs[i], -1, NULL, &err));
            foehn_request_free(reqs[i]);
        }
        EXPECT(blob_ok(bout, boutlen, blob_len(root, salt), root, (unsigned)salt));
        EXPECT(blob_ok(sout, soutlen, blob_len(root + me, salt), root * 16 + me, (unsigned)salt));
        ok = me == root ? gouts != NULL : gouts == NULL;
        for (int i = 0; i < n && ok; i++) {
            ok &= aouts && blob_ok(aouts[i], aoutlens[i], blob_len(i, salt), i, (unsigned)salt);
            ok &= touts && blob_ok(touts[i], toutlens[i], blob_len(i + me, salt), i * 16 + me,
                                   (unsigned)salt);
            if (me == root)
                ok &= blob_ok(gouts[i], goutlens[i], blob_len(i, salt), i, (unsigned)salt);
        }
        EXPECT(ok);
        free(bout);
        free(sout);
        free_blobs(gouts, goutlens, n);
        free_blobs(aouts, aoutlens, n);
        free_blobs(touts, toutlens, n);
        for (int j = 0; j < n; j++)
            free(ins[j]);
        free(ins);
        free(inlens);
        free(mine);
    }
}

/* ---- objects in pieces ------------------------------------------------------- */

/* Rank `from`'s object for rank `to`: 0 to 3 pieces, piece 0 small (in the table) or
 * not, an empty piece, and a large one (single copy). */
static size_t piece_count(int from, int to, int salt)
{
    return (size_t)((from + 2 * to + salt) % 4);
}

static size_t piece_len(int from, int to, int salt, size_t k)
{
    static const size_t lens[] = {100, 0, 300000, 5000, 1, 70000};
    return lens[((size_t)(from + to + salt) + k) % 6];
}

static unsigned piece_salt(int from, int to, size_t k)
{
    return (unsigned)(from * 64 + to * 8 + (int)k);
}

static int pieces_ok(const foehn_pieces *got, int from, int to, int salt)
{
    if (got->n != piece_count(from, to, salt))
        return 0;
    for (size_t k = 0; k < got->n; k++) {
        size_t len = piece_len(from, to, salt, k);
        if (got->lens[k] != len || (len && !got->data[k]) ||
            !filled(got->data[k], len, from, piece_salt(from, to, k)))
            return 0;
    }
    return 1;
}

/* This rank's objects for every rank, as piece_count and piece_len say. */
static foehn_pieces *pieces_make(int n, int me, int salt)
{
    foehn_pieces *ins = xmalloc((size_t)n * sizeof *ins);
    for (int j = 0; j < n; j++) {
        size_t k = piece_count(me, j, salt);
        ins[j].n = k;
        ins[j].data = xmalloc((k + 1) * sizeof *ins[j].data);
        ins[j].lens = xmalloc((k + 1) * sizeof *ins[j].lens);
        for (size_t i = 0; i < k; i++) {
            size_t len = piece_len(me, j, salt, i);
            unsigned char *p = len ? xmalloc(len) : NULL;
            fill(p, len, me, piece_salt(me, j, i));
            ins[j].data[i] = p;
            ins[j].lens[i] = len;
        }
    }
    return ins;
}

static void pieces_drop(foehn_pieces *ins, int n)
{
    for (int j = 0; j < n; j++) {
        for (size_t i = 0; i < ins[j].n; i++)
            free((void *)ins[j].data[i]);
        free((void *)ins[j].data);
        free(ins[j].lens);
    }
    free(ins);
}

/* Whether outs holds what every rank sent this one with salt. */
static int pieces_all_ok(const foehn_pieces *outs, int n, int me, int salt)
{
    int ok = outs != NULL;
    for (int i = 0; i < n && ok; i++)
        ok &= pieces_ok(&outs[i], i, me, salt);
    return ok;
}

static void test_pieces(const ctx *t)
{
    int n = t->size, me = t->rank;
    for (int salt = 0; salt < 4; salt++) {
        foehn_pieces *ins = pieces_make(n, me, salt);
        int nonblocking = salt % 2;
        SAY("%s: alltoall in pieces salt %d%s", t->name, salt, nonblocking ? " (nonblocking)" : "");
        foehn_pieces *outs = (foehn_pieces *)1;
        if (nonblocking) {
            foehn_request *req = NULL;
            EXPECT_OK(foehn_ialltoall_pieces(t->comm, ins, &outs, &req, &err));
            EXPECT_OK(foehn_request_wait(req, -1, NULL, &err));
            foehn_request_free(req);
        } else {
            EXPECT_OK(foehn_alltoall_pieces(t->comm, ins, &outs, &err));
        }
        EXPECT(pieces_all_ok(outs, n, me, salt));
        foehn_pieces_free(outs, (size_t)n);
        pieces_drop(ins, n);
    }
    SAY("%s: alltoall in pieces, a piece NULL", t->name);
    foehn_pieces *bad = xmalloc((size_t)n * sizeof *bad), *outs = NULL;
    const void *none[1] = {NULL};
    size_t len[1] = {8};
    for (int j = 0; j < n; j++)
        bad[j] = (foehn_pieces){1, none, len};
    EXPECT_RC(foehn_alltoall_pieces(t->comm, bad, &outs, &err), FOEHN_ERR_INVALID);
    EXPECT(outs == NULL);
    free(bad);
}

/* Many nonblocking alltoalls in pieces at once, small ones (which begin ahead of their
 * turn) between big ones (which do not) and barriers, waited for last to first: each
 * gets its own objects, and none waits for one behind it. */
static void test_pieces_in_flight(const ctx *t)
{
    enum { CALLS = 40 };
    int n = t->size, me = t->rank;
    foehn_pieces *ins[CALLS], *outs[CALLS];
    foehn_request *reqs[CALLS], *bars[CALLS];
    SAY("%s: %d nonblocking alltoalls in pieces in flight", t->name, CALLS);
    for (int i = 0; i < CALLS; i++) {
        ins[i] = pieces_make(n, me, i);
        outs[i] = NULL;
        reqs[i] = bars[i] = NULL;
        EXPECT_OK(foehn_ialltoall_pieces(t->comm, ins[i], &outs[i], &reqs[i], &err));
        if (i % 8 == 7)
            EXPECT_OK(foehn_ibarrier(t->comm, &bars[i], &err));
    }
    int ok = 1;
    for (int i = CALLS - 1; i >= 0; i--) {
        EXPECT_OK(foehn_request_wait(reqs[i], -1, NULL, &err));
        foehn_request_free(reqs[i]);
        if (bars[i]) {
            EXPECT_OK(foehn_request_wait(bars[i], -1, NULL, &err));
            foehn_request_free(bars[i]);
        }
        ok &= pieces_all_ok(outs[i], n, me, i);
        foehn_pieces_free(outs[i], (size_t)n);
        pieces_drop(ins[i], n);
    }
    EXPECT(ok);
}

/* ---- nonblocking ------------------------------------------------------------- */

static void test_nonblocking(const ctx *t)
{
    int n = t->size, me = t->rank;
    enum { NB = 1 << 17, NR = 20001 };
    size_t vb = 3000;
    unsigned char *bc = xmalloc(NB), *ag = xmalloc(vb * (size_t)n), *a2s = xmalloc(vb * (size_t)n);
    unsigned char *a2r = xmalloc(vb * (size_t)n);
    int32_t *ar = xmalloc(NR * sizeof *ar), *arw = xmalloc(NR * sizeof *arw);
    int64_t *sc = xmalloc(64 * sizeof *sc), *scw = xmalloc(64 * sizeof *scw);
    int64_t *mm = xmalloc(8 * sizeof *mm), *mmw = xmalloc(8 * sizeof *mmw);
    size_t *counts = xmalloc(2 * (size_t)n * sizeof *counts), *displs = counts + n;
    for (int i = 0; i < n; i++) {
        counts[i] = vb;
        displs[i] = (size_t)(n - 1 - i) * vb;
    }
    const red_case *sum = &red_cases[0], *ordered = &red_cases[5], *um = &red_cases[6];
    int root = n - 1;
    if (me == root % n)
        fill(bc, NB, root, 77);
    else
        memset(bc, 0, NB);
    red_input(sum, me, NR, 3, ar);
    red_input(um, me, 64, 4, sc);
    red_input(ordered, me, 8, 5, mm);
    fill(ag + displs[me], vb, me, 78);
    for (int j = 0; j < n; j++)
        fill(a2s + (size_t)j * vb, vb, me * 16 + j, 79);

    foehn_request *reqs[8] = {NULL};
    SAY("%s: nonblocking, several at once", t->name);
    EXPECT_OK(foehn_ibarrier(t->comm, &reqs[0], &err));
    EXPECT_OK(foehn_ibcast(t->comm, bc, NB, root, &reqs[1], &err));
    EXPECT_OK(foehn_iallreduce(t->comm, FOEHN_IN_PLACE, ar, NR, sum->dtype, sum->op, &reqs[2], &err));
    /* the user's op and its struct: copied at the call, so a local one may go away */
    {
        foehn_user_op local = *um->op.user;
        foehn_reduction op = {FOEHN_OP_SUM, &local};
        EXPECT_OK(foehn_iscan(t->comm, FOEHN_IN_PLACE, sc, 64, um->dtype, op, &reqs[3], &err));
        memset(&local, 0, sizeof local);
    }
    EXPECT_OK(foehn_iallgatherv(t->comm, FOEHN_IN_PLACE, vb, ag, counts, displs, &reqs[4], &err));
    EXPECT_OK(foehn_ialltoall(t->comm, a2s, a2r, vb, &reqs[5], &err));
    EXPECT_OK(foehn_ireduce(t->comm, mm, mmw, 8, ordered->dtype, ordered->op, 0, &reqs[6], &err));
    /* a blocking one in between runs after those started before it */
    EXPECT_OK(foehn_barrier(t->comm, &err));
    EXPECT_OK(foehn_iexscan(t->comm, FOEHN_IN_PLACE, scw, 0, um->dtype, um->op, &reqs[7], &err));
    for (int i = 7; i >= 0; i--) {
        SAY("%s: nonblocking request %d", t->name, i);
        EXPECT_OK(foehn_request_wait(reqs[i], -1, NULL, &err));
        foehn_request_free(reqs[i]);
    }
    SAY("%s: nonblocking results", t->name);
    EXPECT(filled(bc, NB, root, 77));
    red_fold(sum, 0, n, NR, 3, arw);
    EXPECT(memcmp(ar, arw, NR * sizeof *ar) == 0);
    red_fold(um, 0, me + 1, 64, 4, scw);
    EXPECT(memcmp(sc, scw, 64 * sizeof *sc) == 0);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        ok &= filled(ag + displs[i], vb, i, 78);
        ok &= filled(a2r + (size_t)i * vb, vb, i * 16 + me, 79);
    }
    EXPECT(ok);
    if (me == 0) {
        int64_t want[8];
        red_fold(ordered, 0, n, 8, 5, want);
        EXPECT(memcmp(mmw, want, sizeof want) == 0);
    }
    SAY("%s: nonblocking without a request", t->name);
    EXPECT_RC(foehn_ibarrier(t->comm, NULL, &err), FOEHN_ERR_INVALID);
    free(bc), free(ag), free(a2s), free(a2r), free(ar), free(arw), free(sc), free(scw);
    free(mm), free(mmw), free(counts);
}

/* Bad arguments fail on every rank alike, before any message. */
static void test_invalid(const ctx *t)
{
    int32_t v = 1;
    SAY("%s: invalid arguments", t->name);
    EXPECT_RC(foehn_bcast(t->comm, &v, sizeof v, t->size, &err), FOEHN_ERR_INVALID);
    EXPECT(strstr(err.message, "root") != NULL);
    EXPECT_RC(foehn_allreduce(t->comm, &v, &v, 1, FOEHN_FLOAT32, (foehn_reduction){FOEHN_OP_BAND, NULL},
                              &err), FOEHN_ERR_INVALID);
    EXPECT_RC(foehn_allreduce(t->comm, &v, &v, 1, FOEHN_DTYPE_COUNT,
                              (foehn_reduction){FOEHN_OP_SUM, NULL}, &err), FOEHN_ERR_INVALID);
    EXPECT_RC(foehn_allgather(t->comm, &v, NULL, sizeof v, &err), FOEHN_ERR_INVALID);
    void *out = (void *)1;
    size_t len = 5;
    EXPECT_RC(foehn_bcast_blob(t->comm, NULL, 3, 0, &out, &len, &err), FOEHN_ERR_INVALID);
    EXPECT(out == NULL && len == 0);
    /* and the communicator still works */
    EXPECT_OK(foehn_allreduce(t->comm, FOEHN_IN_PLACE, &v, 1, FOEHN_INT32,
                              (foehn_reduction){FOEHN_OP_SUM, NULL}, &err));
    EXPECT(v == t->size);
}

static void suite(const ctx *t)
{
    test_barrier_bcast(t);
    test_reduce_allreduce(t);
    test_scans(t);
    test_reduce_scatter(t);
    test_gather_scatter(t);
    test_alltoall(t);
    test_vectors(t);
    test_blobs(t);
    test_pieces(t);
    test_pieces_in_flight(t);
    test_nonblocking(t);
    test_invalid(t);
}

/* ---- mismatches ------------------------------------------------------------- */

/* The last rank calls allreduce where the others call bcast from rank n - 2, whose
 * message the last rank's allreduce takes first (its first partner in recursive
 * doubling is always n - 2): it must fail naming both; the others' bcast, which never
 * waits on the last rank (a leaf of the tree), completes. */
static void test_kind_mismatch(void)
{
    static int32_t buf[4];
    foehn_comm *d = NULL;
    SAY("mismatch: bcast against allreduce");
    EXPECT_OK(foehn_comm_dup(world, &d, &err));
    EXPECT_OK(foehn_barrier(d, &err)); /* collective number 1 on d, then number 2: */
    int rc;
    if (wrank == wsize - 1)
        rc = foehn_allreduce(d, FOEHN_IN_PLACE, buf, 1, FOEHN_INT32,
                             (foehn_reduction){FOEHN_OP_SUM, NULL}, &err);
    else
        rc = foehn_bcast(d, buf, sizeof buf, wsize - 2, &err);
    if (wrank == wsize - 1) {
        EXPECT(rc == FOEHN_ERR_MISMATCH);
        EXPECT(strstr(err.message, "bcast") && strstr(err.message, "allreduce"));
        EXPECT(strstr(err.message, "collective number"));
    } else {
        EXPECT(rc == FOEHN_OK);
    }
    foehn_comm_free(d);
}

/* Rank 0 passes 3 elements, the others 4: rank 1 hears from rank 0 first (fold or
 * first partner) and must fail naming the sizes; others fail too or time out (the
 * collective is broken), never succeed with a wrong answer. */
static void test_size_mismatch(void)
{
    static int32_t buf[4];
    foehn_comm *d = NULL;
    SAY("mismatch: allreduce of different sizes");
    EXPECT_OK(foehn_comm_dup(world, &d, &err));
    for (int i = 0; i < 4; i++)
        buf[i] = 1;
    int rc = foehn_allreduce(d, FOEHN_IN_PLACE, buf, wrank == 0 ? 3 : 4, FOEHN_INT32,
                             (foehn_reduction){FOEHN_OP_SUM, NULL}, &err);
    EXPECT(rc == FOEHN_ERR_MISMATCH || rc == FOEHN_ERR_TIMEOUT);
    if (rc == FOEHN_ERR_MISMATCH)
        EXPECT(strstr(err.message, "allreduce") && strstr(err.message, "size") &&
               strstr(err.message, "12") && strstr(err.message, "16"));
    if (wrank == 1)
        EXPECT(rc == FOEHN_ERR_MISMATCH);
    foehn_comm_free(d);
}

int main(void)
{
    if (foehn_comm_init(&world, &self, 60, &err) != FOEHN_OK) {
        fprintf(stderr, "foehn_comm_init: %s\n", err.message);
        return 2;
    }
    wrank = foehn_comm_rank(world);
    wsize = foehn_comm_size(world);

    ctx w = {world, "world", wrank, wsize, 1};
    suite(&w);

    ctx s = {self, "self", 0, 1, 0};
    test_barrier_bcast(&s);
    test_reduce_allreduce(&s);
    test_blobs(&s);

    /* even and odd ranks apart, each in reverse order */
    foehn_comm *half = NULL, *dup = NULL;
    SAY("split");
    EXPECT_OK(foehn_comm_split(world, wrank % 2, -wrank, &half, &err));
    if (half) {
        ctx h = {half, wrank % 2 ? "odd ranks" : "even ranks", foehn_comm_rank(half),
                 foehn_comm_size(half), 0};
        EXPECT(h.rank == (wsize - 1 - wrank) / 2);
        suite(&h);
        foehn_comm_free(half);
    }
    SAY("dup");
    EXPECT_OK(foehn_comm_dup(world, &dup, &err));
    if (dup) {
        ctx d = {dup, "dup", wrank, wsize, 0};
        suite(&d);
        foehn_comm_free(dup);
    }

    if (wsize > 1) {
        /* A broken collective may leave ranks waiting for what never comes: keep it short. */
        setenv("FOEHN_COMM_TIMEOUT", "3", 1);
        test_kind_mismatch();
        test_size_mismatch();
        unsetenv("FOEHN_COMM_TIMEOUT");
    }
    SAY("final barrier");
    EXPECT_OK(foehn_barrier(world, &err));
    foehn_comm_finalize();
    char name[64];
    snprintf(name, sizeof name, "coll (rank %d of %d)", wrank, wsize);
    return check_summary(name);
}
