/* Reduction kernels: names and sizes, which ops are defined on which dtypes, values
 * (wraparound, NaN, infinities, MINLOC/MAXLOC ties, complex products), float16 and
 * bfloat16 rounding against an independent oracle, unaligned buffers, and the
 * dispatch to a user's op. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm/coll.h" /* foehn_reduction_apply, foehn_reduction_commutes */
#include "foehn.h"

/* MPI's pair layouts, as the C compiler lays them out. */
typedef struct { float v; int i; } float_int;
typedef struct { double v; int i; } double_int;
typedef struct { long v; int i; } long_int;
typedef struct { int v; int i; } int_int;
typedef struct { short v; int i; } short_int;

/* ---- which ops are defined on which dtypes (written out independently) ---- */

enum { K_BYTE, K_BOOL, K_INT, K_REAL, K_COMPLEX, K_PAIR };

static int kind_of(int dt)
{
    switch (dt) {
    case FOEHN_BYTE: return K_BYTE;
    case FOEHN_BOOL: return K_BOOL;
    case FOEHN_FLOAT16: case FOEHN_BFLOAT16: case FOEHN_FLOAT32: case FOEHN_FLOAT64:
    case FOEHN_LONG_DOUBLE: return K_REAL;
    case FOEHN_COMPLEX64: case FOEHN_COMPLEX128: return K_COMPLEX;
    case FOEHN_FLOAT_INT: case FOEHN_DOUBLE_INT: case FOEHN_LONG_INT: case FOEHN_2INT:
    case FOEHN_SHORT_INT: return K_PAIR;
    default: return K_INT;
    }
}

static int op_defined(int dt, int op)
{
    int k = kind_of(dt);
    switch (op) {
    case FOEHN_OP_SUM: case FOEHN_OP_PROD: return k == K_INT || k == K_REAL || k == K_COMPLEX;
    case FOEHN_OP_MIN: case FOEHN_OP_MAX: return k == K_INT || k == K_REAL;
    case FOEHN_OP_LAND: case FOEHN_OP_LOR: case FOEHN_OP_LXOR:
        return k == K_INT || k == K_BOOL;
    case FOEHN_OP_BAND: case FOEHN_OP_BOR: case FOEHN_OP_BXOR:
        return k == K_INT || k == K_BYTE;
    case FOEHN_OP_MINLOC: case FOEHN_OP_MAXLOC: return k == K_PAIR;
    default: return 1; /* REPLACE */
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fill_random(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)rnd();
}

/* ---- names and sizes ---- */

static void test_names_and_sizes(void)
{
    CHECK_INT(foehn_dtype_size(FOEHN_BYTE), 1);
    CHECK_INT(foehn_dtype_size(FOEHN_BOOL), sizeof(_Bool));
    CHECK_INT(foehn_dtype_size(FOEHN_INT8), 1);
    CHECK_INT(foehn_dtype_size(FOEHN_UINT16), 2);
    CHECK_INT(foehn_dtype_size(FOEHN_INT32), 4);
    CHECK_INT(foehn_dtype_size(FOEHN_UINT64), 8);
    CHECK_INT(foehn_dtype_size(FOEHN_FLOAT16), 2);
    CHECK_INT(foehn_dtype_size(FOEHN_BFLOAT16), 2);
    CHECK_INT(foehn_dtype_size(FOEHN_FLOAT32), 4);
    CHECK_INT(foehn_dtype_size(FOEHN_FLOAT64), 8);
    CHECK_INT(foehn_dtype_size(FOEHN_LONG_DOUBLE), sizeof(long double));
    CHECK_INT(foehn_dtype_size(FOEHN_COMPLEX64), 8);
    CHECK_INT(foehn_dtype_size(FOEHN_COMPLEX128), 16);
    CHECK_INT(foehn_dtype_size(FOEHN_FLOAT_INT), sizeof(float_int));
    CHECK_INT(foehn_dtype_size(FOEHN_DOUBLE_INT), sizeof(double_int));
    CHECK_INT(foehn_dtype_size(FOEHN_LONG_INT), sizeof(long_int));
    CHECK_INT(foehn_dtype_size(FOEHN_2INT), sizeof(int_int));
    CHECK_INT(foehn_dtype_size(FOEHN_SHORT_INT), sizeof(short_int));
    if (_Alignof(double) == 8 && sizeof(int) == 4) {
        CHECK_INT(foehn_dtype_size(FOEHN_DOUBLE_INT), 16); /* padded, as MPI_DOUBLE_INT */
        CHECK_INT(foehn_dtype_size(FOEHN_SHORT_INT), 8);
    }
    CHECK_INT(foehn_dtype_size((foehn_dtype)FOEHN_DTYPE_COUNT), 0);
    CHECK_INT(foehn_dtype_size((foehn_dtype)-1), 0);

    CHECK_STR(foehn_dtype_name(FOEHN_BYTE), "byte");
    CHECK_STR(foehn_dtype_name(FOEHN_BOOL), "bool");
    CHECK_STR(foehn_dtype_name(FOEHN_INT32), "int32");
    CHECK_STR(foehn_dtype_name(FOEHN_UINT8), "uint8");
    CHECK_STR(foehn_dtype_name(FOEHN_FLOAT64), "float64");
    CHECK_STR(foehn_dtype_name(FOEHN_FLOAT16), "float16");
    CHECK_STR(foehn_dtype_name(FOEHN_BFLOAT16), "bfloat16");
    CHECK_STR(foehn_dtype_name(FOEHN_LONG_DOUBLE), "long_double");
    CHECK_STR(foehn_dtype_name(FOEHN_COMPLEX128), "complex128");
    CHECK_STR(foehn_dtype_name(FOEHN_DOUBLE_INT), "double_int");
    CHECK_STR(foehn_dtype_name(FOEHN_2INT), "2int");
    CHECK_STR(foehn_dtype_name((foehn_dtype)99), "unknown");

    CHECK_STR(foehn_op_name(FOEHN_OP_SUM), "SUM");
    CHECK_STR(foehn_op_name(FOEHN_OP_PROD), "PROD");
    CHECK_STR(foehn_op_name(FOEHN_OP_LXOR), "LXOR");
    CHECK_STR(foehn_op_name(FOEHN_OP_BAND), "BAND");
    CHECK_STR(foehn_op_name(FOEHN_OP_MINLOC), "MINLOC");
    CHECK_STR(foehn_op_name(FOEHN_OP_MAXLOC), "MAXLOC");
    CHECK_STR(foehn_op_name(FOEHN_OP_REPLACE), "REPLACE");
    CHECK_STR(foehn_op_name((foehn_op)-1), "unknown");
    CHECK_STR(foehn_op_name((foehn_op)FOEHN_OP_COUNT), "unknown");

    for (int dt = 0; dt < FOEHN_DTYPE_COUNT; dt++) {
        CHECK(foehn_dtype_size((foehn_dtype)dt) > 0);
        CHECK(strcmp(foehn_dtype_name((foehn_dtype)dt), "unknown") != 0);
    }
    for (int op = 0; op < FOEHN_OP_COUNT; op++)
        CHECK(strcmp(foehn_op_name((foehn_op)op), "unknown") != 0);
}

/* ---- the op x dtype matrix ---- */

static void test_matrix(void)
{
    enum { N = 3, CAP = 3 * 32 + 16 };
    int valid = 0;
    for (int dt = 0; dt < FOEHN_DTYPE_COUNT; dt++) {
        size_t size = foehn_dtype_size((foehn_dtype)dt);
        for (int op = 0; op < FOEHN_OP_COUNT; op++) {
            unsigned char in[CAP], io[CAP], before[CAP];
            fill_random(in, sizeof in);
            fill_random(io, sizeof io);
            memcpy(before, io, sizeof io);
            foehn_error err = { "stale" };
            int rc = foehn_reduce_local(in, io, N, (foehn_dtype)dt, (foehn_op)op, &err);
            int rc0 = foehn_reduce_local(NULL, NULL, 0, (foehn_dtype)dt, (foehn_op)op, NULL);
            if (op_defined(dt, op)) {
                valid++;
                CHECK_INT(rc, FOEHN_OK);
                CHECK_INT(rc0, FOEHN_OK); /* count 0: nothing to do, NULL buffers fine */
                /* nothing past count elements is written */
                CHECK(memcmp(io + N * size, before + N * size, sizeof io - N * size) == 0);
                if (rc != FOEHN_OK)
                    fprintf(stderr, "  %s on %s: %s\n", foehn_op_name((foehn_op)op),
                            foehn_dtype_name((foehn_dtype)dt), err.message);
            } else {
                char want[200];
                snprintf(want, sizeof want, "MPI op %s is not defined for %s data",
                         foehn_op_name((foehn_op)op), foehn_dtype_name((foehn_dtype)dt));
                CHECK_INT(rc, FOEHN_ERR_INVALID);
                CHECK_INT(rc0, FOEHN_ERR_INVALID);
                CHECK_STR(err.message, want);
                CHECK(memcmp(io, before, sizeof io) == 0);
            }
        }
    }
    /* 4 byte + 4 bool + 8 ints x 11 + 5 reals x 5 + 2 complex x 3 + 5 pairs x 3 */
    CHECK_INT(valid, 142);

    foehn_error err;
    double a = 1, b = 2;
    CHECK_INT(foehn_reduce_local(&a, &b, 1, FOEHN_FLOAT64, FOEHN_OP_BAND, &err), FOEHN_ERR_INVALID);
    CHECK_STR(err.message, "MPI op BAND is not defined for float64 data");
    CHECK(b == 2);
    /* the standard's table, as Open MPI holds it: no logical op on reals, no bitwise
     * op on BOOL */
    CHECK_INT(foehn_reduce_local(&a, &b, 1, FOEHN_FLOAT64, FOEHN_OP_LAND, &err), FOEHN_ERR_INVALID);
    CHECK_STR(err.message, "MPI op LAND is not defined for float64 data");
    _Bool t = 1, u = 0;
    CHECK_INT(foehn_reduce_local(&t, &u, 1, FOEHN_BOOL, FOEHN_OP_BXOR, &err), FOEHN_ERR_INVALID);
    CHECK_STR(err.message, "MPI op BXOR is not defined for bool data");
    CHECK(!u);
    CHECK_INT(foehn_reduce_local(&a, &b, 1, (foehn_dtype)FOEHN_DTYPE_COUNT, FOEHN_OP_SUM, &err),
              FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "unknown dtype");
    CHECK_INT(foehn_reduce_local(&a, &b, 1, (foehn_dtype)-3, FOEHN_OP_SUM, &err),
              FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "-3");
    CHECK_INT(foehn_reduce_local(&a, &b, 1, FOEHN_FLOAT64, (foehn_op)FOEHN_OP_COUNT, &err),
              FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "unknown MPI op");
    CHECK_INT(foehn_reduce_local(&a, &b, 0, FOEHN_FLOAT64, (foehn_op)-1, NULL), FOEHN_ERR_INVALID);
    CHECK(b == 2);
    /* NULL buffers with elements to reduce */
    CHECK_INT(foehn_reduce_local(NULL, &b, 1, FOEHN_FLOAT64, FOEHN_OP_SUM, &err),
              FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "NULL");
    CHECK_INT(foehn_reduce_local(&a, NULL, 1, FOEHN_FLOAT64, FOEHN_OP_SUM, &err),
              FOEHN_ERR_INVALID);
    CHECK_INT(foehn_reduce_local(&a, &b, SIZE_MAX / 4, FOEHN_FLOAT64, FOEHN_OP_SUM, &err),
              FOEHN_ERR_INVALID);
    CHECK(b == 2);
    CHECK_INT(foehn_reduce_local(&a, &b, 1, FOEHN_FLOAT64, FOEHN_OP_SUM, NULL), FOEHN_OK);
    CHECK(b == 3);
}

/* ---- integers ---- */

/* inout = in op inout for one integer element of dt (values cut to its width). */
static int64_t red_i(foehn_dtype dt, foehn_op op, int64_t in, int64_t io)
{
    unsigned char a[8], b[8];
    size_t size = foehn_dtype_size(dt);
    /* little- or big-endian, the low `size` bytes of the value */
    int8_t i8[2]; int16_t i16[2]; int32_t i32[2]; int64_t i64[2];
    uint8_t u8[2]; uint16_t u16[2]; uint32_t u32[2]; uint64_t u64[2];
    void *p = NULL;
    switch (dt) {
    case FOEHN_INT8: i8[0] = (int8_t)in; i8[1] = (int8_t)io; p = i8; break;
    case FOEHN_INT16: i16[0] = (int16_t)in; i16[1] = (int16_t)io; p = i16; break;
    case FOEHN_INT32: i32[0] = (int32_t)in; i32[1] = (int32_t)io; p = i32; break;
    case FOEHN_INT64: i64[0] = in; i64[1] = io; p = i64; break;
    case FOEHN_UINT8: case FOEHN_BOOL: case FOEHN_BYTE:
        u8[0] = (uint8_t)in; u8[1] = (uint8_t)io; p = u8; break;
    case FOEHN_UINT16: u16[0] = (uint16_t)in; u16[1] = (uint16_t)io; p = u16; break;
    case FOEHN_UINT32: u32[0] = (uint32_t)in; u32[1] = (uint32_t)io; p = u32; break;
    default: u64[0] = (uint64_t)in; u64[1] = (uint64_t)io; p = u64; break;
    }
    memcpy(a, p, size);
    memcpy(b, (unsigned char *)p + size, size);
    int rc = foehn_reduce_local(a, b, 1, dt, op, NULL);
    CHECK_INT(rc, FOEHN_OK);
    memcpy((unsigned char *)p + size, b, size);
    switch (dt) {
    case FOEHN_INT8: return i8[1];
    case FOEHN_INT16: return i16[1];
    case FOEHN_INT32: return i32[1];
    case FOEHN_INT64: return i64[1];
    case FOEHN_UINT8: case FOEHN_BOOL: case FOEHN_BYTE: return u8[1];
    case FOEHN_UINT16: return u16[1];
    case FOEHN_UINT32: return u32[1];
    default: return (int64_t)u64[1];
    }
}

static void test_integers(void)
{
    /* wraparound, two's complement */
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_SUM, 127, 1), -128);
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_SUM, -128, -1), 127);
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_PROD, -128, -1), -128);
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_PROD, 16, 16), 0);
    CHECK_INT(red_i(FOEHN_UINT8, FOEHN_OP_SUM, 255, 1), 0);
    CHECK_INT(red_i(FOEHN_UINT8, FOEHN_OP_PROD, 16, 17), 16);
    CHECK_INT(red_i(FOEHN_INT16, FOEHN_OP_SUM, 32767, 1), -32768);
    CHECK_INT(red_i(FOEHN_INT16, FOEHN_OP_PROD, 300, 300), 90000 - 65536);
    CHECK_INT(red_i(FOEHN_INT16, FOEHN_OP_PROD, 200, -200), 65536 - 40000);
    CHECK_INT(red_i(FOEHN_UINT16, FOEHN_OP_PROD, 0xffff, 0xffff), 1);
    CHECK_INT(red_i(FOEHN_UINT16, FOEHN_OP_SUM, 0xffff, 2), 1);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_SUM, INT32_MAX, 1), INT32_MIN);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_PROD, INT32_MIN, -1), INT32_MIN);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_PROD, 65536, 65536), 0);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_PROD, -7, 6), -42);
    CHECK_INT(red_i(FOEHN_UINT32, FOEHN_OP_PROD, 0xffffffff, 0xffffffff), 1);
    CHECK_INT(red_i(FOEHN_UINT32, FOEHN_OP_SUM, 0xffffffff, 5), 4);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_SUM, INT64_MAX, 1), INT64_MIN);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_SUM, INT64_MIN, -1), INT64_MAX);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_PROD, INT64_MIN, -1), INT64_MIN);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_PROD, 1ll << 32, 1ll << 32), 0);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_PROD, -3000000000ll, 5), -15000000000ll);
    CHECK(red_i(FOEHN_UINT64, FOEHN_OP_SUM, -1, 1) == 0);
    CHECK(red_i(FOEHN_UINT64, FOEHN_OP_PROD, -1, -1) == 1);

    /* MIN/MAX: signedness matters */
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_MIN, -5, 3), -5);
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_MAX, -5, 3), 3);
    CHECK_INT(red_i(FOEHN_UINT8, FOEHN_OP_MIN, 200, 3), 3);
    CHECK_INT(red_i(FOEHN_UINT8, FOEHN_OP_MAX, 200, 3), 200);
    CHECK_INT(red_i(FOEHN_INT16, FOEHN_OP_MIN, -30000, 30000), -30000);
    CHECK_INT(red_i(FOEHN_UINT16, FOEHN_OP_MAX, 65535, 1), 65535);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_MIN, INT32_MIN, INT32_MAX), INT32_MIN);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_MAX, INT32_MIN, INT32_MAX), INT32_MAX);
    CHECK_INT(red_i(FOEHN_UINT32, FOEHN_OP_MIN, 0x80000000u, 1), 1);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_MIN, INT64_MIN, 0), INT64_MIN);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_MAX, -1, -2), -1);
    CHECK(red_i(FOEHN_UINT64, FOEHN_OP_MAX, -1, 1) == -1); /* UINT64_MAX */
    CHECK(red_i(FOEHN_UINT64, FOEHN_OP_MIN, -1, 1) == 1);

    /* logical: non-zero is true, the result is 1 or 0 */
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_LAND, 5, -7), 1);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_LAND, 5, 0), 0);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_LOR, 0, 0), 0);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_LOR, 0, 9), 1);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_LXOR, 4, 9), 0);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_LXOR, 4, 0), 1);
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_LAND, -128, 1), 1);
    CHECK_INT(red_i(FOEHN_UINT64, FOEHN_OP_LOR, 1ll << 40, 0), 1);
    CHECK_INT(red_i(FOEHN_INT64, FOEHN_OP_LXOR, 1ll << 40, 1ll << 41), 0);
    CHECK_INT(red_i(FOEHN_UINT16, FOEHN_OP_LAND, 0x100, 0x200), 1);

    /* bitwise */
    CHECK_INT(red_i(FOEHN_UINT8, FOEHN_OP_BAND, 0xf0, 0x3c), 0x30);
    CHECK_INT(red_i(FOEHN_UINT8, FOEHN_OP_BOR, 0xf0, 0x3c), 0xfc);
    CHECK_INT(red_i(FOEHN_UINT8, FOEHN_OP_BXOR, 0xf0, 0x3c), 0xcc);
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_BAND, -1, 0x5a), 0x5a);
    CHECK_INT(red_i(FOEHN_INT8, FOEHN_OP_BXOR, -1, 0x0f), -16);
    CHECK_INT(red_i(FOEHN_INT16, FOEHN_OP_BOR, 0x0f00, 0x00f0), 0x0ff0);
    CHECK_INT(red_i(FOEHN_INT32, FOEHN_OP_BXOR, -1, 0), -1);
    CHECK(red_i(FOEHN_UINT64, FOEHN_OP_BAND, -1, (int64_t)0x123456789abcdef0ull) ==
          (int64_t)0x123456789abcdef0ull);
    CHECK(red_i(FOEHN_INT64, FOEHN_OP_BOR, INT64_MIN, 1) == INT64_MIN + 1);

    /* BYTE: bitwise only; BOOL: any non-zero byte is true */
    CHECK_INT(red_i(FOEHN_BYTE, FOEHN_OP_BAND, 0xaa, 0x0f), 0x0a);
    CHECK_INT(red_i(FOEHN_BYTE, FOEHN_OP_BOR, 0xaa, 0x0f), 0xaf);
    CHECK_INT(red_i(FOEHN_BYTE, FOEHN_OP_BXOR, 0xaa, 0xff), 0x55);
    CHECK_INT(red_i(FOEHN_BOOL, FOEHN_OP_LAND, 1, 1), 1);
    CHECK_INT(red_i(FOEHN_BOOL, FOEHN_OP_LAND, 1, 0), 0);
    CHECK_INT(red_i(FOEHN_BOOL, FOEHN_OP_LOR, 0, 1), 1);
    CHECK_INT(red_i(FOEHN_BOOL, FOEHN_OP_LOR, 0, 0), 0);
    CHECK_INT(red_i(FOEHN_BOOL, FOEHN_OP_LXOR, 1, 1), 0);
    CHECK_INT(red_i(FOEHN_BOOL, FOEHN_OP_LXOR, 1, 0), 1);
    CHECK_INT(red_i(FOEHN_BOOL, FOEHN_OP_LAND, 2, 4), 1);

    /* many elements: wraparound in every lane of a vectorised loop */
    enum { M = 1000 };
    static int32_t a[M], b[M];
    static uint8_t c[M], d[M];
    for (int i = 0; i < M; i++) {
        a[i] = INT32_MAX - i;
        b[i] = i + 1;
        c[i] = (uint8_t)i;
        d[i] = (uint8_t)(3 * i);
    }
    CHECK_INT(foehn_reduce_local(a, b, M, FOEHN_INT32, FOEHN_OP_SUM, NULL), FOEHN_OK);
    int ok = 1;
    for (int i = 0; i < M; i++)
        ok &= b[i] == INT32_MIN;
    CHECK(ok);
    CHECK_INT(foehn_reduce_local(c, d, M, FOEHN_UINT8, FOEHN_OP_PROD, NULL), FOEHN_OK);
    ok = 1;
    for (int i = 0; i < M; i++)
        ok &= d[i] == (uint8_t)((unsigned)(uint8_t)i * (uint8_t)(3 * i));
    CHECK(ok);
}

/* ---- floating point ---- */

static double red_d(foehn_op op, double in, double io)
{
    CHECK_INT(foehn_reduce_local(&in, &io, 1, FOEHN_FLOAT64, op, NULL), FOEHN_OK);
    return io;
}

static float red_f(foehn_op op, float in, float io)
{
    CHECK_INT(foehn_reduce_local(&in, &io, 1, FOEHN_FLOAT32, op, NULL), FOEHN_OK);
    return io;
}

static long double red_ld(foehn_op op, long double in, long double io)
{
    CHECK_INT(foehn_reduce_local(&in, &io, 1, FOEHN_LONG_DOUBLE, op, NULL), FOEHN_OK);
    return io;
}

static void test_floats(void)
{
    CHECK(red_d(FOEHN_OP_SUM, 1.5, 2.25) == 3.75);
    CHECK(red_d(FOEHN_OP_PROD, -1.5, 4) == -6);
    CHECK(red_d(FOEHN_OP_MIN, -1.5, 4) == -1.5);
    CHECK(red_d(FOEHN_OP_MAX, -1.5, 4) == 4);
    CHECK(red_d(FOEHN_OP_SUM, 0.1, 0.2) == 0.1 + 0.2);
    CHECK(red_d(FOEHN_OP_SUM, DBL_MAX, DBL_MAX) == INFINITY);
    CHECK(isnan(red_d(FOEHN_OP_SUM, INFINITY, -INFINITY)));
    CHECK(red_d(FOEHN_OP_MIN, -INFINITY, 0) == -INFINITY);
    CHECK(red_d(FOEHN_OP_MAX, INFINITY, DBL_MAX) == INFINITY);
    /* NaN: a NaN in inout stays; a NaN coming in does not replace a number */
    CHECK(isnan(red_d(FOEHN_OP_MIN, 1, NAN)));
    CHECK(isnan(red_d(FOEHN_OP_MAX, 1, NAN)));
    CHECK(red_d(FOEHN_OP_MIN, NAN, 1) == 1);
    CHECK(red_d(FOEHN_OP_MAX, NAN, 1) == 1);
    CHECK(isnan(red_d(FOEHN_OP_SUM, NAN, 1)));
    CHECK(isnan(red_f(FOEHN_OP_MIN, 1, NAN)));
    CHECK(red_f(FOEHN_OP_MAX, NAN, 1) == 1);
    /* equal zeros: inout is kept */
    CHECK(signbit(red_d(FOEHN_OP_MIN, 0.0, -0.0)));
    CHECK(!signbit(red_d(FOEHN_OP_MIN, -0.0, 0.0)));
    CHECK(signbit(red_d(FOEHN_OP_SUM, -0.0, -0.0)));
    CHECK(red_f(FOEHN_OP_SUM, 1.5f, 2.25f) == 3.75f);
    CHECK(red_f(FOEHN_OP_PROD, 3, 1.0f / 3) == 3 * (1.0f / 3));
    CHECK(red_f(FOEHN_OP_MIN, 2, -3) == -3);
    CHECK(red_f(FOEHN_OP_MAX, FLT_MAX, INFINITY) == INFINITY);

    CHECK(red_ld(FOEHN_OP_SUM, 1.0L, LDBL_EPSILON) == 1.0L + LDBL_EPSILON);
    CHECK(red_ld(FOEHN_OP_PROD, -2.0L, 0.25L) == -0.5L);
    CHECK(red_ld(FOEHN_OP_MIN, -2.0L, 0.25L) == -2.0L);
    CHECK(red_ld(FOEHN_OP_MAX, -2.0L, 0.25L) == 0.25L);
    CHECK(red_ld(FOEHN_OP_MIN, NAN, 1) == 1);
    CHECK(isnan(red_ld(FOEHN_OP_MAX, 1, NAN)));

    /* many elements, with NaNs spread through the vector lanes */
    enum { M = 333 };
    static float a[M], b[M];
    for (int i = 0; i < M; i++) {
        a[i] = (i % 5 == 0) ? NAN : (float)i;
        b[i] = (i % 7 == 0) ? NAN : (float)(M - i);
    }
    CHECK_INT(foehn_reduce_local(a, b, M, FOEHN_FLOAT32, FOEHN_OP_MAX, NULL), FOEHN_OK);
    int ok = 1;
    for (int i = 0; i < M; i++) {
        if (i % 7 == 0)
            ok &= isnan(b[i]) != 0;
        else if (i % 5 == 0)
            ok &= b[i] == (float)(M - i);
        else
            ok &= b[i] == (float)(i > M - i ? i : M - i);
    }
    CHECK(ok);
}

static void test_complex(void)
{
    float a[4] = { 1, 2, 0.5f, -1 }, b[4] = { 3, 4, 2, 2 };
    CHECK_INT(foehn_reduce_local(a, b, 2, FOEHN_COMPLEX64, FOEHN_OP_PROD, NULL), FOEHN_OK);
    /* (1+2i)(3+4i) = -5+10i; (0.5-i)(2+2i) = 1+i-2i+2 = 3-i */
    CHECK(b[0] == -5 && b[1] == 10);
    CHECK(b[2] == 3 && b[3] == -1);
    CHECK_INT(foehn_reduce_local(a, b, 2, FOEHN_COMPLEX64, FOEHN_OP_SUM, NULL), FOEHN_OK);
    CHECK(b[0] == -4 && b[1] == 12 && b[2] == 3.5f && b[3] == -2);

    double c[2] = { 0, 1 }, d[2] = { 0, 1 };
    CHECK_INT(foehn_reduce_local(c, d, 1, FOEHN_COMPLEX128, FOEHN_OP_PROD, NULL), FOEHN_OK);
    CHECK(d[0] == -1 && d[1] == 0); /* i * i = -1 */
    double e[2] = { 1.5, -2.5 }, f[2] = { -4, 0.25 };
    CHECK_INT(foehn_reduce_local(e, f, 1, FOEHN_COMPLEX128, FOEHN_OP_PROD, NULL), FOEHN_OK);
    CHECK(f[0] == 1.5 * -4 - (-2.5 * 0.25) && f[1] == 1.5 * 0.25 + -2.5 * -4);
    CHECK_INT(foehn_reduce_local(e, f, 1, FOEHN_COMPLEX128, FOEHN_OP_SUM, NULL), FOEHN_OK);
    CHECK(f[0] == -5.375 + 1.5 && f[1] == 10.375 - 2.5);

    /* many: products in the block loop and the tail agree with the formula */
    enum { M = 150 };
    static double x[2 * M], y[2 * M], want[2 * M];
    for (int i = 0; i < M; i++) {
        x[2 * i] = i * 0.5;
        x[2 * i + 1] = 1 - i;
        y[2 * i] = 3 - i * 0.25;
        y[2 * i + 1] = i;
        want[2 * i] = x[2 * i] * y[2 * i] - x[2 * i + 1] * y[2 * i + 1];
        want[2 * i + 1] = x[2 * i] * y[2 * i + 1] + x[2 * i + 1] * y[2 * i];
    }
    CHECK_INT(foehn_reduce_local(x, y, M, FOEHN_COMPLEX128, FOEHN_OP_PROD, NULL), FOEHN_OK);
    CHECK(memcmp(y, want, sizeof y) == 0);
}

/* ---- float16 and bfloat16 ---- */

/* Decoders written as arithmetic (not bit moves, as the library's are). */
static double half_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31)
        return m ? NAN : s * INFINITY;
    if (e == 0)
        return s * ldexp(m, -24);
    return s * ldexp(m + 1024, e - 25);
}

static double bf16_value(uint16_t h)
{
    int e = (h >> 7) & 255, m = h & 127;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 255)
        return m ? NAN : s * INFINITY;
    if (e == 0)
        return s * ldexp(m, -133);
    return s * ldexp(m + 128, e - 134);
}

/* d rounded to a binary format with p significant bits, minimum exponent emin and
 * largest finite value max, nearest with ties to even. */
static double round_to_format(double d, int p, int emin, double max)
{
    if (isnan(d) || isinf(d) || d == 0)
        return d;
    int e;
    frexp(fabs(d), &e); /* |d| = f 2^e, f in [0.5, 1): the leading bit is 2^(e-1) */
    int q = (e - 1 > emin ? e - 1 : emin) - (p - 1);
    double r = ldexp(nearbyint(ldexp(fabs(d), -q)), q);
    if (r > max)
        r = INFINITY;
    return copysign(r, d);
}

static double half_round(double d)
{
    return round_to_format(d, 11, -14, 65504.0);
}

static double bf16_round(double d)
{
    return round_to_format(d, 8, -126, ldexp(255.0, 120));
}

static int same_value(double got, double want)
{
    if (isnan(want))
        return isnan(got) != 0;
    return got == want && signbit(got) == signbit(want);
}

static uint16_t red_h(foehn_dtype dt, foehn_op op, uint16_t in, uint16_t io)
{
    CHECK_INT(foehn_reduce_local(&in, &io, 1, dt, op, NULL), FOEHN_OK);
    return io;
}

#define H(op, a, b) red_h(FOEHN_FLOAT16, FOEHN_OP_##op, a, b)
#define BF(op, a, b) red_h(FOEHN_BFLOAT16, FOEHN_OP_##op, a, b)

static void test_half_known(void)
{
    /* float16 bit patterns: 1.0 0x3c00, 2.0 0x4000, 65504 0x7bff, 2^-14 0x0400 (the
     * smallest normal), 2^-24 0x0001 (the smallest subnormal), inf 0x7c00 */
    CHECK_INT(H(SUM, 0x3c00, 0x3c00), 0x4000);
    CHECK_INT(H(SUM, 0x3c00, 0xc000), 0xbc00);       /* 1 + -2 = -1 */
    CHECK_INT(H(PROD, 0x4000, 0x3555), 0x3955);      /* 2 x 0.33325 */
    CHECK_INT(H(SUM, 0x3c00, 0x1000), 0x3c00);       /* 1 + 2^-11: a tie, to even (down) */
    CHECK_INT(H(SUM, 0x3c01, 0x1000), 0x3c02);       /* a tie, to even (up) */
    CHECK_INT(H(SUM, 0x3c00, 0x1001), 0x3c01);       /* just above the tie */
    CHECK_INT(H(SUM, 0x7bff, 0x4800), 0x7bff);       /* 65504 + 8 = 65512: down */
    CHECK_INT(H(SUM, 0x7bff, 0x4c00), 0x7c00);       /* 65504 + 16 = 65520: a tie, to inf */
    CHECK_INT(H(SUM, 0xfbff, 0xcc00), 0xfc00);       /* -65520: -inf */
    CHECK_INT(H(PROD, 0x7bff, 0x4000), 0x7c00);      /* overflow */
    CHECK_INT(H(SUM, 0x0001, 0x0001), 0x0002);       /* subnormals */
    CHECK_INT(H(SUM, 0x03ff, 0x0001), 0x0400);       /* largest subnormal + 1 ulp: normal */
    CHECK_INT(H(SUM, 0x0400, 0x8001), 0x03ff);       /* and back */
    CHECK_INT(H(PROD, 0x0001, 0x3800), 0x0000);      /* 2^-25: a tie, to even (zero) */
    CHECK_INT(H(PROD, 0x8001, 0x3800), 0x8000);      /* -0 */
    CHECK_INT(H(PROD, 0x0003, 0x3800), 0x0002);      /* 1.5 x 2^-24: a tie, to even (2) */
    CHECK_INT(H(PROD, 0x0001, 0x3e00), 0x0002);      /* 1.5 x 2^-24 */
    CHECK_INT(H(PROD, 0x0001, 0x3a00), 0x0001);      /* 0.75 x 2^-24 */
    CHECK_INT(H(PROD, 0x0001, 0x3400), 0x0000);      /* 0.25 x 2^-24 */
    CHECK_INT(H(PROD, 0x0400, 0x3800), 0x0200);      /* 2^-15, subnormal */
    CHECK_INT(H(PROD, 0x0401, 0x3800), 0x0200);      /* (2^-14 + 2^-24) / 2: a tie, even */
    CHECK_INT(H(PROD, 0x0403, 0x3800), 0x0202);      /* a tie, to even (up) */
    CHECK_INT(H(PROD, 0x3c00, 0x7c00), 0x7c00);      /* 1 x inf */
    CHECK_INT(H(SUM, 0x7c00, 0xfc00) & 0x7e00, 0x7e00); /* inf - inf: a quiet NaN */
    CHECK_INT(H(SUM, 0x8000, 0x8000), 0x8000);       /* -0 + -0 */
    CHECK_INT(H(SUM, 0x8000, 0x0000), 0x0000);
    CHECK_INT(H(MIN, 0x3c00, 0xbc00), 0xbc00);
    CHECK_INT(H(MAX, 0x3c00, 0xbc00), 0x3c00);
    CHECK_INT(H(MAX, 0x3c00, 0x7e00), 0x7e00);       /* NaN in inout stays */
    CHECK_INT(H(MIN, 0x7e00, 0x3c00), 0x3c00);
    CHECK_INT(H(MAX, 0x3c00, 0x7c01), 0x7e01);       /* a signalling NaN kept by MAX: quiet */
    CHECK_INT(H(MIN, 0x3c00, 0xfd55), 0xff55);

    /* bfloat16: 1.0 0x3f80, 2^-8 0x3b80, max finite 0x7f7f, inf 0x7f80 */
    CHECK_INT(BF(SUM, 0x3f80, 0x3f80), 0x4000);
    CHECK_INT(BF(SUM, 0x3f80, 0x3b80), 0x3f80);      /* a tie, to even (down) */
    CHECK_INT(BF(SUM, 0x3f81, 0x3b80), 0x3f82);      /* a tie, to even (up) */
    CHECK_INT(BF(SUM, 0x3f80, 0x3b81), 0x3f81);      /* above the tie */
    CHECK_INT(BF(SUM, 0x7f7f, 0x7f7f), 0x7f80);      /* overflow to inf */
    CHECK_INT(BF(SUM, 0x7f7f, 0x7300), 0x7f7f);      /* + 2^103: under half an ulp */
    CHECK_INT(BF(PROD, 0xc000, 0x3fc0), 0xc040);     /* -2 x 1.5 = -3 */
    CHECK_INT(BF(SUM, 0x0001, 0x0001), 0x0002);      /* subnormals */
    CHECK_INT(BF(SUM, 0x007f, 0x0001), 0x0080);
    CHECK_INT(BF(SUM, 0x7fc1, 0x3f80), 0x7fc1);      /* a quiet NaN passes through */
    CHECK_INT(BF(SUM, 0x8000, 0x7f81) & 0x7fc0, 0x7fc0); /* a signalling NaN comes out quiet */
    CHECK_INT(BF(SUM, 0x7f80, 0xff80) & 0x7fc0, 0x7fc0);
    CHECK_INT(BF(MIN, 0x4000, 0xc000), 0xc000);
    CHECK_INT(BF(MAX, 0x4000, 0xc000), 0x4000);
    CHECK_INT(BF(MIN, 0x3f80, 0x7fc0), 0x7fc0);
    CHECK_INT(BF(MAX, 0x3f80, 0x7f81), 0x7fc1);      /* a signalling NaN kept by MAX: quiet */
    CHECK_INT(BF(MIN, 0x3f80, 0xff81), 0xffc1);
}

/* Every bit pattern through x + (-0) = x: the conversions both ways. */
static void test_half_round_trip(void)
{
    enum { N = 65536 };
    static uint16_t in[N], io[N];
    for (int dt = 0; dt < 2; dt++) {
        foehn_dtype dtype = dt ? FOEHN_BFLOAT16 : FOEHN_FLOAT16;
        uint16_t exp_mask = dt ? 0x7f80 : 0x7c00, quiet = dt ? 0x0040 : 0x0200;
        for (int i = 0; i < N; i++) {
            in[i] = 0x8000;
            io[i] = (uint16_t)i;
        }
        CHECK_INT(foehn_reduce_local(in, io, N, dtype, FOEHN_OP_SUM, NULL), FOEHN_OK);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            int nan = (i & exp_mask) == exp_mask && (i & (exp_mask ^ 0x7fff)) != 0;
            int ok = nan ? ((io[i] & exp_mask) == exp_mask && (io[i] & quiet) != 0)
                         : io[i] == (uint16_t)i;
            if (!ok && bad++ < 5)
                fprintf(stderr, "  %s 0x%04x + -0 gave 0x%04x\n", foehn_dtype_name(dtype), i,
                        io[i]);
        }
        CHECK_INT(bad, 0);
        /* NaN payloads: the top bits are kept */
        uint16_t nan_in = dt ? 0x7fd5 : 0x7e55, nan_io = 0x0000;
        nan_io = red_h(dtype, FOEHN_OP_SUM, nan_in, nan_io);
        CHECK_INT(nan_io, nan_in);
    }
}

/* Random pairs against the oracle: half and bfloat16 sums and products are exact in
 * double (products always; sums of halves always, of bfloat16 rounded once more
 * in double, harmlessly), so rounding that once gives the correctly rounded result. */
static void test_half_oracle(void)
{
    enum { N = 100000 };
    static uint16_t a[N], b[N], r[N];
    static const foehn_op ops[] = { FOEHN_OP_SUM, FOEHN_OP_PROD, FOEHN_OP_MIN, FOEHN_OP_MAX };
    for (int dt = 0; dt < 2; dt++) {
        foehn_dtype dtype = dt ? FOEHN_BFLOAT16 : FOEHN_FLOAT16;
        double (*value)(uint16_t) = dt ? bf16_value : half_value;
        double (*round)(double) = dt ? bf16_round : half_round;
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
            for (int i = 0; i < N; i++) {
                uint64_t x = rnd();
                a[i] = (uint16_t)x;
                b[i] = (uint16_t)(x >> 16);
                if (i % 3 == 0) /* nearby exponents, where rounding is busiest */
                    b[i] = (uint16_t)((a[i] & 0xfc00) ^ (b[i] & 0x83ff));
            }
            memcpy(r, b, sizeof r);
            CHECK_INT(foehn_reduce_local(a, r, N, dtype, ops[k], NULL), FOEHN_OK);
            int bad = 0;
            for (int i = 0; i < N; i++) {
                double x = value(a[i]), y = value(b[i]), want;
                switch (ops[k]) {
                case FOEHN_OP_SUM: want = round(x + y); break;
                case FOEHN_OP_PROD: want = round(x * y); break;
                case FOEHN_OP_MIN: want = x < y ? x : y; break;
                default: want = x > y ? x : y; break;
                }
                if (!same_value(value(r[i]), want) && bad++ < 5)
                    fprintf(stderr, "  %s %s 0x%04x 0x%04x gave 0x%04x (%g), want %g\n",
                            foehn_dtype_name(dtype), foehn_op_name(ops[k]), a[i], b[i], r[i],
                            value(r[i]), want);
            }
            CHECK_INT(bad, 0);
        }
    }
}

/* ---- MINLOC and MAXLOC ---- */

static void test_loc(void)
{
    float_int fa[] = { { 1, 5 }, { 3, 2 }, { 2, 7 }, { 2, 1 }, { NAN, 0 }, { 1, 9 }, { -0.0f, 4 } };
    float_int fb[] = { { 2, 9 }, { 1, 0 }, { 2, 3 }, { 2, 3 }, { 1, 6 }, { NAN, 1 }, { 0.0f, 8 } };
    CHECK_INT(foehn_reduce_local(fa, fb, 7, FOEHN_FLOAT_INT, FOEHN_OP_MINLOC, NULL), FOEHN_OK);
    CHECK(fb[0].v == 1 && fb[0].i == 5);  /* smaller value */
    CHECK(fb[1].v == 1 && fb[1].i == 0);
    CHECK(fb[2].v == 2 && fb[2].i == 3);  /* tie: smaller index */
    CHECK(fb[3].v == 2 && fb[3].i == 1);
    CHECK(fb[4].v == 1 && fb[4].i == 6);  /* NaN in: inout stays */
    CHECK(isnan(fb[5].v) && fb[5].i == 1); /* NaN in inout stays */
    CHECK(fb[6].v == 0 && fb[6].i == 4);  /* -0 == 0: a tie */

    double_int da[] = { { 1, 5 }, { 3, 2 }, { 2, 7 }, { 2, 1 } };
    double_int db[] = { { 2, 9 }, { 1, 0 }, { 2, 3 }, { 2, 3 } };
    CHECK_INT(foehn_reduce_local(da, db, 4, FOEHN_DOUBLE_INT, FOEHN_OP_MAXLOC, NULL), FOEHN_OK);
    CHECK(db[0].v == 2 && db[0].i == 9);  /* larger value */
    CHECK(db[1].v == 3 && db[1].i == 2);
    CHECK(db[2].v == 2 && db[2].i == 3);  /* tie: smaller index */
    CHECK(db[3].v == 2 && db[3].i == 1);

    long_int la = { -5000000000l + 1, 3 }, lb = { 4000000000l, 1 };
    if (sizeof(long) < 8) {
        la.v = -2000000000l;
        lb.v = 2000000000l;
    }
    long_int lc = la, ld = lb;
    CHECK_INT(foehn_reduce_local(&la, &lb, 1, FOEHN_LONG_INT, FOEHN_OP_MINLOC, NULL), FOEHN_OK);
    CHECK(lb.v == la.v && lb.i == 3);
    CHECK_INT(foehn_reduce_local(&lc, &ld, 1, FOEHN_LONG_INT, FOEHN_OP_MAXLOC, NULL), FOEHN_OK);
    CHECK(ld.v != lc.v && ld.i == 1);

    int_int ia[] = { { -1, 4 }, { 7, 8 }, { 7, 2 } }, ib[] = { { -1, 4 }, { 7, 3 }, { 7, 3 } };
    CHECK_INT(foehn_reduce_local(ia, ib, 3, FOEHN_2INT, FOEHN_OP_MAXLOC, NULL), FOEHN_OK);
    CHECK(ib[0].v == -1 && ib[0].i == 4);
    CHECK(ib[1].v == 7 && ib[1].i == 3);
    CHECK(ib[2].v == 7 && ib[2].i == 2);

    short_int sa[] = { { -300, 1 }, { 5, -2 } }, sb[] = { { 200, 0 }, { 5, 1 } };
    CHECK_INT(foehn_reduce_local(sa, sb, 2, FOEHN_SHORT_INT, FOEHN_OP_MINLOC, NULL), FOEHN_OK);
    CHECK(sb[0].v == -300 && sb[0].i == 1);
    CHECK(sb[1].v == 5 && sb[1].i == -2); /* negative indices compare as ints */

    /* a scan over many: the running minimum's first position */
    enum { M = 200 };
    static double_int run[M], acc[M];
    for (int i = 0; i < M; i++) {
        run[i].v = (i * 37) % 11;
        run[i].i = i;
        acc[i].v = 5;
        acc[i].i = 100;
    }
    CHECK_INT(foehn_reduce_local(run, acc, M, FOEHN_DOUBLE_INT, FOEHN_OP_MINLOC, NULL), FOEHN_OK);
    int ok = 1;
    for (int i = 0; i < M; i++) {
        double v = (i * 37) % 11;
        if (v < 5)
            ok &= acc[i].v == v && acc[i].i == i;
        else if (v == 5)
            ok &= acc[i].v == 5 && acc[i].i == (i < 100 ? i : 100);
        else
            ok &= acc[i].v == 5 && acc[i].i == 100;
    }
    CHECK(ok);
}

/* ---- REPLACE ---- */

static void test_replace(void)
{
    for (int dt = 0; dt < FOEHN_DTYPE_COUNT; dt++) {
        size_t size = foehn_dtype_size((foehn_dtype)dt);
        unsigned char in[5 * 32], io[5 * 32];
        fill_random(in, sizeof in);
        memset(io, 0xee, sizeof io);
        CHECK_INT(foehn_reduce_local(in, io, 4, (foehn_dtype)dt, FOEHN_OP_REPLACE, NULL), FOEHN_OK);
        CHECK(memcmp(io, in, 4 * size) == 0);
        CHECK(io[4 * size] == 0xee);
    }
}

/* ---- unaligned buffers, blocks and tails ---- */

/* Elements equal: by value where a type has padding or unused bytes. */
static int elem_equal(int dt, const unsigned char *x, const unsigned char *y)
{
    switch (dt) {
    case FOEHN_LONG_DOUBLE: {
        long double a, b;
        memcpy(&a, x, sizeof a);
        memcpy(&b, y, sizeof b);
        return a == b || (isnan(a) && isnan(b));
    }
    case FOEHN_FLOAT_INT: case FOEHN_DOUBLE_INT: case FOEHN_LONG_INT: case FOEHN_2INT:
    case FOEHN_SHORT_INT: {
        /* the value's bytes (its size is the pair's minus the int and padding) and the int */
        size_t size = foehn_dtype_size((foehn_dtype)dt);
        size_t vsize = dt == FOEHN_FLOAT_INT ? sizeof(float)
                     : dt == FOEHN_DOUBLE_INT ? sizeof(double)
                     : dt == FOEHN_LONG_INT ? sizeof(long)
                     : dt == FOEHN_2INT ? sizeof(int) : sizeof(short);
        return memcmp(x, y, vsize) == 0 &&
               memcmp(x + size - sizeof(int), y + size - sizeof(int), sizeof(int)) == 0;
    }
    default:
        return memcmp(x, y, foehn_dtype_size((foehn_dtype)dt)) == 0;
    }
}

static void test_unaligned(void)
{
    /* counts around the kernels' blocks; every valid combination at odd offsets must
     * give what it gives on aligned buffers */
    static const size_t counts[] = { 1, 7, 63, 64, 65, 130, 257 };
    enum { MAXN = 257, MAXSIZE = 32 };
    unsigned char *in_a = malloc(MAXN * MAXSIZE), *io_a = malloc(MAXN * MAXSIZE);
    unsigned char *in_u = malloc(MAXN * MAXSIZE + 16), *io_u = malloc(MAXN * MAXSIZE + 16);
    if (!in_a || !io_a || !in_u || !io_u) {
        CHECK(!"out of memory");
        goto out;
    }
    int bad = 0;
    for (int dt = 0; dt < FOEHN_DTYPE_COUNT; dt++) {
        size_t size = foehn_dtype_size((foehn_dtype)dt);
        for (int op = 0; op < FOEHN_OP_COUNT; op++) {
            if (!op_defined(dt, op))
                continue;
            for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
                size_t n = counts[c];
                size_t off_in = 1 + (size_t)(dt + op) % 7, off_io = 1 + (size_t)op % 5;
                fill_random(in_a, n * size);
                fill_random(io_a, n * size);
                memcpy(in_u + off_in, in_a, n * size);
                memcpy(io_u + off_io, io_a, n * size);
                int rc1 = foehn_reduce_local(in_a, io_a, n, (foehn_dtype)dt, (foehn_op)op, NULL);
                int rc2 = foehn_reduce_local(in_u + off_in, io_u + off_io, n, (foehn_dtype)dt,
                                             (foehn_op)op, NULL);
                CHECK_INT(rc1, FOEHN_OK);
                CHECK_INT(rc2, FOEHN_OK);
                for (size_t i = 0; i < n; i++) {
                    if (!elem_equal(dt, io_a + i * size, io_u + off_io + i * size)) {
                        if (bad++ < 5)
                            fprintf(stderr, "  %s on %s, %zu elements: element %zu differs\n",
                                    foehn_op_name((foehn_op)op), foehn_dtype_name((foehn_dtype)dt),
                                    n, i);
                        break;
                    }
                }
            }
        }
    }
    CHECK_INT(bad, 0);

    /* the hot path against plain C, at every offset */
    enum { M = 1000 };
    for (size_t off = 0; off < 8; off++) {
        unsigned char *pi = in_u + off, *po = io_u + 7 - off;
        double wd[M];
        for (size_t i = 0; i < M; i++) {
            double x = (double)i * 0.5 - 100, y = 300 - (double)i;
            memcpy(pi + i * 8, &x, 8);
            memcpy(po + i * 8, &y, 8);
            wd[i] = x + y;
        }
        CHECK_INT(foehn_reduce_local(pi, po, M, FOEHN_FLOAT64, FOEHN_OP_SUM, NULL), FOEHN_OK);
        CHECK(memcmp(po, wd, sizeof wd) == 0);

        float wf[M];
        for (size_t i = 0; i < M; i++) {
            float x = (float)i * 0.25f - 100, y = 200 - (float)i;
            memcpy(pi + i * 4, &x, 4);
            memcpy(po + i * 4, &y, 4);
            wf[i] = x > y ? x : y;
        }
        CHECK_INT(foehn_reduce_local(pi, po, M, FOEHN_FLOAT32, FOEHN_OP_MAX, NULL), FOEHN_OK);
        CHECK(memcmp(po, wf, sizeof wf) == 0);

        int64_t wl[M];
        for (size_t i = 0; i < M; i++) {
            int64_t x = INT64_MAX - (int64_t)i, y = (int64_t)i * 3 - 7;
            memcpy(pi + i * 8, &x, 8);
            memcpy(po + i * 8, &y, 8);
            wl[i] = (int64_t)((uint64_t)x + (uint64_t)y);
        }
        CHECK_INT(foehn_reduce_local(pi, po, M, FOEHN_INT64, FOEHN_OP_SUM, NULL), FOEHN_OK);
        CHECK(memcmp(po, wl, sizeof wl) == 0);

        int32_t wi[M];
        for (size_t i = 0; i < M; i++) {
            int32_t x = (int32_t)i - 500, y = 250 - (int32_t)i * 2;
            memcpy(pi + i * 4, &x, 4);
            memcpy(po + i * 4, &y, 4);
            wi[i] = x < y ? x : y;
        }
        CHECK_INT(foehn_reduce_local(pi, po, M, FOEHN_INT32, FOEHN_OP_MIN, NULL), FOEHN_OK);
        CHECK(memcmp(po, wi, sizeof wi) == 0);
    }
out:
    free(in_a);
    free(io_a);
    free(in_u);
    free(io_u);
}

/* ---- the dispatch: a user's op or a built-in ---- */

struct user_seen {
    int calls;
    const void *in;
    void *inout;
    size_t count;
    foehn_dtype dtype;
    int ret;
    const char *message; /* written to err when ret fails; NULL: none */
};

static int user_fn(const void *in, void *inout, size_t count, foehn_dtype dtype, void *ctx,
                   foehn_error *err)
{
    struct user_seen *s = ctx;
    s->calls++;
    s->in = in;
    s->inout = inout;
    s->count = count;
    s->dtype = dtype;
    if (s->ret != FOEHN_OK && s->message && err)
        snprintf(err->message, sizeof err->message, "%s", s->message);
    if (s->ret == FOEHN_OK) { /* a non-commutative op: inout = 2 in - inout */
        const int32_t *a = in;
        int32_t *b = inout;
        for (size_t i = 0; i < count; i++)
            b[i] = 2 * a[i] - b[i];
    }
    return s->ret;
}

static void test_dispatch(void)
{
    struct user_seen seen = { 0 };
    foehn_user_op user = { user_fn, &seen, 0 };
    foehn_reduction red = { FOEHN_OP_SUM, &user };
    int32_t a[3] = { 1, 2, 3 }, b[3] = { 10, 20, 30 };
    foehn_error err = { "" };

    CHECK_INT(foehn_reduction_apply(&red, a, b, 3, FOEHN_INT32, &err), FOEHN_OK);
    CHECK_INT(seen.calls, 1);
    CHECK(seen.in == a && seen.inout == b);
    CHECK_INT(seen.count, 3);
    CHECK_INT(seen.dtype, FOEHN_INT32);
    CHECK(b[0] == -8 && b[1] == -16 && b[2] == -24); /* the user's op, not SUM */
    CHECK_INT(foehn_reduction_commutes(&red), 0);
    user.commute = 1;
    CHECK_INT(foehn_reduction_commutes(&red), 1);

    /* the user's failure and message pass through */
    seen.ret = FOEHN_ERR_MISMATCH;
    seen.message = "user op: dtype not handled";
    CHECK_INT(foehn_reduction_apply(&red, a, b, 3, FOEHN_INT32, &err), FOEHN_ERR_MISMATCH);
    CHECK_STR(err.message, "user op: dtype not handled");
    CHECK(b[0] == -8);
    /* a failure without a message gets one */
    seen.message = NULL;
    err.message[0] = '\0';
    CHECK_INT(foehn_reduction_apply(&red, a, b, 3, FOEHN_INT32, &err), FOEHN_ERR_MISMATCH);
    CHECK_CONTAINS(err.message, "user");
    CHECK_INT(foehn_reduction_apply(&red, a, b, 3, FOEHN_INT32, NULL), FOEHN_ERR_MISMATCH);
    /* even for dtypes and ops the built-ins do not have: the user decides */
    seen.ret = FOEHN_OK;
    CHECK_INT(foehn_reduction_apply(&red, a, b, 0, FOEHN_BYTE, &err), FOEHN_OK);
    CHECK_INT(seen.dtype, FOEHN_BYTE);
    CHECK_INT(seen.calls, 5);

    /* a user op with no function */
    foehn_user_op empty = { NULL, NULL, 1 };
    foehn_reduction bad = { FOEHN_OP_SUM, &empty };
    CHECK_INT(foehn_reduction_apply(&bad, a, b, 3, FOEHN_INT32, &err), FOEHN_ERR_INVALID);
    CHECK_INT(foehn_reduction_apply(NULL, a, b, 3, FOEHN_INT32, &err), FOEHN_ERR_INVALID);

    /* built-ins */
    foehn_reduction sum = { FOEHN_OP_SUM, NULL };
    int32_t c[3] = { 1, 2, 3 }, d[3] = { 10, 20, 30 };
    CHECK_INT(foehn_reduction_apply(&sum, c, d, 3, FOEHN_INT32, &err), FOEHN_OK);
    CHECK(d[0] == 11 && d[1] == 22 && d[2] == 33);
    CHECK_INT(foehn_reduction_commutes(&sum), 1);
    foehn_reduction band = { FOEHN_OP_BAND, NULL };
    double e = 1, f = 2;
    CHECK_INT(foehn_reduction_apply(&band, &e, &f, 1, FOEHN_FLOAT64, &err), FOEHN_ERR_INVALID);
    CHECK_STR(err.message, "MPI op BAND is not defined for float64 data");
    CHECK(f == 2);
    for (int op = 0; op < FOEHN_OP_COUNT; op++) {
        foehn_reduction r = { (foehn_op)op, NULL };
        /* REPLACE keeps the first operand: x0 op x1 = x0, an order matters */
        CHECK_INT(foehn_reduction_commutes(&r), op != FOEHN_OP_REPLACE);
    }
}

int main(void)
{
    test_names_and_sizes();
    test_matrix();
    test_integers();
    test_floats();
    test_complex();
    test_half_known();
    test_half_round_trip();
    test_half_oracle();
    test_loc();
    test_replace();
    test_unaligned();
    test_dispatch();
    return check_summary("reduce");
}
