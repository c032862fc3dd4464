/* Reduction kernels: inout[i] = in[i] op inout[i] (MPI_Reduce_local) for every
 * built-in op and dtype, and the dispatch a collective uses (a user's op or ours).
 *
 * in and inout must not overlap (MPI's rule; the kernels' pointers are restrict).
 * Buffers may have any alignment, so every element is read and written through
 * memcpy (compilers turn it into one plain, unaligned load or store). Loops run in
 * blocks of a fixed count so that the compiler vectorises them even under its
 * cheapest cost model (gcc -O2), then a tail loop finishes the rest.
 *
 * Integers wrap (signed ones by computing in the unsigned type: two's complement,
 * never undefined behaviour). MIN and MAX are `in < inout ? in : inout` (and `>`),
 * as Open MPI's kernels: a NaN already in inout stays. float16 and bfloat16 are
 * computed in float and rounded back to nearest, ties to even (float carries more
 * than twice their precision, so the result is the correctly rounded one). */
#include <stdint.h>
#include <string.h>

#include "comm/coll.h"
#include "common/error.h"
#include "foehn.h"

/* ---- float16 and bfloat16 ------------------------------------------------ */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The conversions are written without branches (every case computed, the right one
 * picked by a mask) so that the compiler can vectorise the float16 and bfloat16 loops. */

/* All ones when c, else zero. */
static inline uint32_t mask_if(int c)
{
    return 0u - (uint32_t)(c != 0);
}

static inline uint32_t pick(uint32_t mask, uint32_t yes, uint32_t no)
{
    return (yes & mask) | (no & ~mask);
}

/* IEEE binary16 to float: exact (subnormals, infinities, NaN payloads kept). */
static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t normal = ((exp + 112u) << 23) | (man << 13);
    uint32_t special = 0x7f800000u | (man << 13);                 /* inf, NaN */
    uint32_t sub = f32_bits((float)(int32_t)man * 0x1p-24f);      /* exact; 0 too */
    uint32_t bits = pick(mask_if(exp == 0x1f), special, pick(mask_if(exp == 0), sub, normal));
    return f32_from_bits(sign | bits);
}

/* float to binary16, rounding to nearest, ties to even; NaN stays a (quiet) NaN
 * with the top of its payload. A subnormal half is rounded by one float addition:
 * |f| 2^24 (exact, below 1024) + 2^23 has a unit in the last place of 1, so the
 * addition rounds it to an integer, to nearest even under the default rounding
 * mode (the mode every float kernel here computes in). */
static inline uint16_t f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    /* a normal half (|f| >= 2^-14): rebias, round on the 13 bits dropped (a carry
     * into the exponent is still right) */
    uint32_t normal = ((ax + 0x0fffu + ((ax >> 13) & 1u)) >> 13) - (112u << 10);
    /* a subnormal one (0x400, 2^-14, comes out right too); clamped so that the
     * multiplication never overflows */
    uint32_t small = pick(mask_if(ax < 0x38800000u), ax, 0x38800000u);
    uint32_t sub = f32_bits(f32_from_bits(small) * 0x1p24f + 0x1p23f) - 0x4b000000u;
    uint32_t h = pick(mask_if(ax >= 0x38800000u), normal, sub);
    h = pick(mask_if(ax >= 0x477ff000u), 0x7c00u, h); /* >= 65520 (ties to even past 65504): inf */
    h = pick(mask_if(ax > 0x7f800000u), 0x7e00u | ((ax >> 13) & 0x3ffu), h);
    return (uint16_t)(sign | h);
}

static inline float bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

/* float to bfloat16: round to nearest, ties to even on the top 16 bits; a NaN
 * stays a NaN (quiet, sign and payload top kept). */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16, quiet = (x >> 16) | 0x0040u;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}

/* ---- kernel generators --------------------------------------------------- */

typedef void kernel_fn(const unsigned char *restrict in, unsigned char *restrict io, size_t n);

#define KBLOCK 64

#define SAME(x) (x)

/* One element k: S is the stored type, C the type computed in (LOAD: S -> C,
 * STORE: C -> S); EXPR is written in terms of a (from in) and b (from inout). */
#define KSTEP(S, C, LOAD, STORE, EXPR, k) do { \
        S sa_, sb_, sr_; \
        memcpy(&sa_, in + (k) * sizeof(S), sizeof(S)); \
        memcpy(&sb_, io + (k) * sizeof(S), sizeof(S)); \
        C a = LOAD(sa_), b = LOAD(sb_); \
        sr_ = STORE(EXPR); \
        memcpy(io + (k) * sizeof(S), &sr_, sizeof(S)); \
    } while (0)

/* Each kernel is built for AVX-512, AVX2 and the baseline, chosen when the library
 * loads (glibc's ifunc): a reduction of a cached megabyte is bound by how wide the
 * loads and stores are, and the baseline has SSE2 only. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(FOEHN_NO_CLONES)
#define KERNEL_ISA __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef KERNEL_ISA
#define KERNEL_ISA
#endif

#define KERNEL(name, S, C, LOAD, STORE, EXPR) \
    KERNEL_ISA static void name(const unsigned char *restrict in, unsigned char *restrict io, \
                                size_t n) \
    { \
        size_t i = 0; \
        for (; n - i >= KBLOCK; i += KBLOCK) \
            for (size_t j = 0; j < KBLOCK; j++) \
                KSTEP(S, C, LOAD, STORE, EXPR, i + j); \
        for (; i < n; i++) \
            KSTEP(S, C, LOAD, STORE, EXPR, i); \
    }

/* Truth values: 1 or 0 in the computed type. */
#define LAND_EXPR(C) ((C)((a != 0) && (b != 0)))
#define LOR_EXPR(C) ((C)((a != 0) || (b != 0)))
#define LXOR_EXPR(C) ((C)((a != 0) != (b != 0)))

/* An integer type T computed in the unsigned type U (at least as wide as int, so
 * nothing is promoted to a signed int that could overflow). */
#define INT_KERNELS(name, T, U) \
    KERNEL(name##_sum, T, T, SAME, SAME, (T)((U)a + (U)b)) \
    KERNEL(name##_prod, T, T, SAME, SAME, (T)((U)a * (U)b)) \
    KERNEL(name##_min, T, T, SAME, SAME, a < b ? a : b) \
    KERNEL(name##_max, T, T, SAME, SAME, a > b ? a : b) \
    KERNEL(name##_land, T, T, SAME, SAME, LAND_EXPR(T)) \
    KERNEL(name##_lor, T, T, SAME, SAME, LOR_EXPR(T)) \
    KERNEL(name##_lxor, T, T, SAME, SAME, LXOR_EXPR(T)) \
    KERNEL(name##_band, T, T, SAME, SAME, (T)(a & b)) \
    KERNEL(name##_bor, T, T, SAME, SAME, (T)(a | b)) \
    KERNEL(name##_bxor, T, T, SAME, SAME, (T)(a ^ b))

/* A real floating type stored as S, computed as C. */
#define REAL_KERNELS(name, S, C, LOAD, STORE) \
    KERNEL(name##_sum, S, C, LOAD, STORE, a + b) \
    KERNEL(name##_prod, S, C, LOAD, STORE, a * b) \
    KERNEL(name##_min, S, C, LOAD, STORE, a < b ? a : b) \
    KERNEL(name##_max, S, C, LOAD, STORE, a > b ? a : b)

INT_KERNELS(i8, int8_t, uint32_t)
INT_KERNELS(u8, uint8_t, uint32_t)
INT_KERNELS(i16, int16_t, uint32_t)
INT_KERNELS(u16, uint16_t, uint32_t)
INT_KERNELS(i32, int32_t, uint32_t)
INT_KERNELS(u32, uint32_t, uint32_t)
INT_KERNELS(i64, int64_t, uint64_t)
INT_KERNELS(u64, uint64_t, uint64_t)

REAL_KERNELS(f16, uint16_t, float, f16_to_f32, f32_to_f16)
REAL_KERNELS(bf16, uint16_t, float, bf16_to_f32, f32_to_bf16)
REAL_KERNELS(f32, float, float, SAME, SAME)
REAL_KERNELS(f64, double, double, SAME, SAME)
REAL_KERNELS(ld, long double, long double, SAME, SAME)

/* Complex numbers: {real, imaginary} pairs of R. A sum is a sum of 2n reals; a
 * product is (ar + i ai)(br + i bi) = (ar br - ai bi) + i (ar bi + ai br). */
#define COMPLEX_KERNELS(name, R, real) \
    typedef struct name##_t { R re, im; } name##_t; \
    static name##_t name##_mul(name##_t a, name##_t b) \
    { \
        name##_t r = { a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re }; \
        return r; \
    } \
    static void name##_sum(const unsigned char *restrict in, unsigned char *restrict io, size_t n) \
    { \
        real##_sum(in, io, 2 * n); \
    } \
    KERNEL(name##_prod, name##_t, name##_t, SAME, SAME, name##_mul(a, b))

COMPLEX_KERNELS(c64, float, f32)
COMPLEX_KERNELS(c128, double, f64)

/* Value-index pairs, laid out as the C struct {V v; int i;}. MINLOC keeps the
 * smaller value, MAXLOC the larger; on equal values both keep the smaller index.
 * A NaN compares neither smaller nor equal: inout stays. */
#define PAIR_KERNELS(name, V) \
    typedef struct name##_t { V v; int i; } name##_t; \
    static name##_t name##_loc(name##_t a, name##_t b, int a_wins) \
    { \
        if (a_wins) \
            return a; \
        if (a.v == b.v && a.i < b.i) \
            b.i = a.i; \
        return b; \
    } \
    KERNEL(name##_minloc, name##_t, name##_t, SAME, SAME, name##_loc(a, b, a.v < b.v)) \
    KERNEL(name##_maxloc, name##_t, name##_t, SAME, SAME, name##_loc(a, b, a.v > b.v))

PAIR_KERNELS(float_int, float)
PAIR_KERNELS(double_int, double)
PAIR_KERNELS(long_int, long)
PAIR_KERNELS(int_int, int)
PAIR_KERNELS(short_int, short)

/* ---- tables -------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} dtypes[FOEHN_DTYPE_COUNT] = {
    [FOEHN_BYTE] = { "byte", 1 },
    [FOEHN_BOOL] = { "bool", sizeof(_Bool) },
    [FOEHN_INT8] = { "int8", 1 },
    [FOEHN_UINT8] = { "uint8", 1 },
    [FOEHN_INT16] = { "int16", 2 },
    [FOEHN_UINT16] = { "uint16", 2 },
    [FOEHN_INT32] = { "int32", 4 },
    [FOEHN_UINT32] = { "uint32", 4 },
    [FOEHN_INT64] = { "int64", 8 },
    [FOEHN_UINT64] = { "uint64", 8 },
    [FOEHN_FLOAT16] = { "float16", 2 },
    [FOEHN_BFLOAT16] = { "bfloat16", 2 },
    [FOEHN_FLOAT32] = { "float32", sizeof(float) },
    [FOEHN_FLOAT64] = { "float64", sizeof(double) },
    [FOEHN_LONG_DOUBLE] = { "long_double", sizeof(long double) },
    [FOEHN_COMPLEX64] = { "complex64", sizeof(c64_t) },
    [FOEHN_COMPLEX128] = { "complex128", sizeof(c128_t) },
    [FOEHN_FLOAT_INT] = { "float_int", sizeof(float_int_t) },
    [FOEHN_DOUBLE_INT] = { "double_int", sizeof(double_int_t) },
    [FOEHN_LONG_INT] = { "long_int", sizeof(long_int_t) },
    [FOEHN_2INT] = { "2int", sizeof(int_int_t) },
    [FOEHN_SHORT_INT] = { "short_int", sizeof(short_int_t) },
};

static const char *const op_names[FOEHN_OP_COUNT] = {
    [FOEHN_OP_SUM] = "SUM", [FOEHN_OP_PROD] = "PROD",
    [FOEHN_OP_MIN] = "MIN", [FOEHN_OP_MAX] = "MAX",
    [FOEHN_OP_LAND] = "LAND", [FOEHN_OP_LOR] = "LOR", [FOEHN_OP_LXOR] = "LXOR",
    [FOEHN_OP_BAND] = "BAND", [FOEHN_OP_BOR] = "BOR", [FOEHN_OP_BXOR] = "BXOR",
    [FOEHN_OP_MINLOC] = "MINLOC", [FOEHN_OP_MAXLOC] = "MAXLOC",
    [FOEHN_OP_REPLACE] = "REPLACE",
};

#define ARITH_ROW(name) \
    [FOEHN_OP_SUM] = name##_sum, [FOEHN_OP_PROD] = name##_prod, \
    [FOEHN_OP_MIN] = name##_min, [FOEHN_OP_MAX] = name##_max
#define LOGICAL_ROW(name) \
    [FOEHN_OP_LAND] = name##_land, [FOEHN_OP_LOR] = name##_lor, [FOEHN_OP_LXOR] = name##_lxor
#define BITWISE_ROW(name) \
    [FOEHN_OP_BAND] = name##_band, [FOEHN_OP_BOR] = name##_bor, [FOEHN_OP_BXOR] = name##_bxor
#define INT_ROW(name) { ARITH_ROW(name), LOGICAL_ROW(name), BITWISE_ROW(name) }
#define REAL_ROW(name) { ARITH_ROW(name) }
#define PAIR_ROW(name) { [FOEHN_OP_MINLOC] = name##_minloc, [FOEHN_OP_MAXLOC] = name##_maxloc }

/* NULL: the op is not defined on the dtype (REPLACE, defined on all, is apart).
 * Which op goes with which dtype is the MPI standard's table (and what Open MPI
 * enforces): logical ops on integers and BOOL, bitwise ones on integers and BYTE,
 * MIN/MAX on integers and reals, SUM/PROD on complex too, MINLOC/MAXLOC on pairs.
 * BOOL is stored as a byte (any non-zero byte is true), so its kernels are uint8's. */
static kernel_fn *const kernels[FOEHN_DTYPE_COUNT][FOEHN_OP_COUNT] = {
    [FOEHN_BYTE] = { BITWISE_ROW(u8) },
    [FOEHN_BOOL] = { LOGICAL_ROW(u8) },
    [FOEHN_INT8] = INT_ROW(i8),
    [FOEHN_UINT8] = INT_ROW(u8),
    [FOEHN_INT16] = INT_ROW(i16),
    [FOEHN_UINT16] = INT_ROW(u16),
    [FOEHN_INT32] = INT_ROW(i32),
    [FOEHN_UINT32] = INT_ROW(u32),
    [FOEHN_INT64] = INT_ROW(i64),
    [FOEHN_UINT64] = INT_ROW(u64),
    [FOEHN_FLOAT16] = REAL_ROW(f16),
    [FOEHN_BFLOAT16] = REAL_ROW(bf16),
    [FOEHN_FLOAT32] = REAL_ROW(f32),
    [FOEHN_FLOAT64] = REAL_ROW(f64),
    [FOEHN_LONG_DOUBLE] = REAL_ROW(ld),
    [FOEHN_COMPLEX64] = { [FOEHN_OP_SUM] = c64_sum, [FOEHN_OP_PROD] = c64_prod },
    [FOEHN_COMPLEX128] = { [FOEHN_OP_SUM] = c128_sum, [FOEHN_OP_PROD] = c128_prod },
    [FOEHN_FLOAT_INT] = PAIR_ROW(float_int),
    [FOEHN_DOUBLE_INT] = PAIR_ROW(double_int),
    [FOEHN_LONG_INT] = PAIR_ROW(long_int),
    [FOEHN_2INT] = PAIR_ROW(int_int),
    [FOEHN_SHORT_INT] = PAIR_ROW(short_int),
};

/* ---- the API ------------------------------------------------------------- */

size_t foehn_dtype_size(foehn_dtype dtype)
{
    if ((int)dtype < 0 || (int)dtype >= FOEHN_DTYPE_COUNT)
        return 0;
    return dtypes[dtype].size;
}

const char *foehn_dtype_name(foehn_dtype dtype)
{
    if ((int)dtype < 0 || (int)dtype >= FOEHN_DTYPE_COUNT)
        return "unknown";
    return dtypes[dtype].name;
}

const char *foehn_op_name(foehn_op op)
{
    if ((int)op < 0 || (int)op >= FOEHN_OP_COUNT)
        return "unknown";
    return op_names[op];
}

int foehn_reduce_local(const void *in, void *inout, size_t count, foehn_dtype dtype,
                       foehn_op op, foehn_error *err)
{
    if ((int)dtype < 0 || (int)dtype >= FOEHN_DTYPE_COUNT)
        return foehn_fail(err, FOEHN_ERR_INVALID, "unknown dtype %d (known: 0 to %d)",
                          (int)dtype, FOEHN_DTYPE_COUNT - 1);
    if ((int)op < 0 || (int)op >= FOEHN_OP_COUNT)
        return foehn_fail(err, FOEHN_ERR_INVALID, "unknown MPI op %d (known: 0 to %d)",
                          (int)op, FOEHN_OP_COUNT - 1);
    kernel_fn *fn = kernels[dtype][op];
    if (!fn && op != FOEHN_OP_REPLACE)
        return foehn_fail(err, FOEHN_ERR_INVALID, "MPI op %s is not defined for %s data",
                          op_names[op], dtypes[dtype].name);
    if (count == 0)
        return FOEHN_OK;
    size_t size = dtypes[dtype].size;
    if (count > SIZE_MAX / size)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "a reduction of %zu %s elements is larger than memory", count,
                          dtypes[dtype].name);
    if (!in || !inout)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "MPI op %s on %zu %s elements: the %s buffer is NULL", op_names[op],
                          count, dtypes[dtype].name, in ? "inout" : "in");
    if (op == FOEHN_OP_REPLACE) {
        memmove(inout, in, count * size);
        return FOEHN_OK;
    }
    fn(in, inout, count);
    return FOEHN_OK;
}

int foehn_reduction_apply(const foehn_reduction *op, const void *in, void *inout,
                          size_t count, foehn_dtype dtype, foehn_error *err)
{
    if (!op)
        return foehn_fail(err, FOEHN_ERR_INVALID, "no reduction given (NULL)");
    if (!op->user)
        return foehn_reduce_local(in, inout, count, dtype, op->op, err);
    if (!op->user->fn)
        return foehn_fail(err, FOEHN_ERR_INVALID, "the user's reduction has no function (NULL)");
    int rc = op->user->fn(in, inout, count, dtype, op->user->ctx, err);
    if (rc != FOEHN_OK && err && err->message[0] == '\0')
        foehn_fail(err, rc, "the user's reduction on %zu %s elements failed (status %d)", count,
                   foehn_dtype_name(dtype), rc);
    return rc;
}

int foehn_reduction_commutes(const foehn_reduction *op)
{
    if (op && op->user)
        return op->user->commute != 0;
    /* REPLACE (in op inout = in) is the one built-in that does not commute. */
    return !(op && op->op == FOEHN_OP_REPLACE);
}
