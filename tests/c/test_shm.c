/* The staging segment (src/comm/shm.c): parts in a ring, freed in any order, never
 * wrapping, refused when full; parts filled in pieces and read as they fill, a read
 * that waits on a sender who stopped gives up; the receiving side's mapping through
 * /proc, reads only inside the segment, and announcements it must not trust (a wrong
 * fd, size or pid map nothing). One process plays both sides: it maps its own memfd. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "comm/shm.h"

static unsigned char pattern(size_t i, int seed)
{
    return (unsigned char)(i * 131 + (size_t)seed * 7);
}

static unsigned char *filled(size_t len, int seed)
{
    unsigned char *b = malloc(len);
    for (size_t i = 0; i < len; i++)
        b[i] = pattern(i, seed);
    return b;
}

int main(void)
{
    foehn_shm_out *out = foehn_shm_out_new();
    CHECK(out != NULL);
    if (!out)
        return check_summary("shm");
    int fd;
    uint64_t base;
    size_t size;
    foehn_shm_out_describe(out, &fd, &base, &size);
    CHECK(size >= 2 * FOEHN_SHM_STAGE_MAX);

    foehn_shm_in *in = foehn_shm_in_open(getpid(), fd, base, size);
    CHECK(in != NULL);

    /* a part holds what was staged, and reads back through the mapping */
    size_t len = FOEHN_SHM_STAGE_MAX;
    unsigned char *a = filled(len, 1), *b = filled(len, 2), *got = malloc(len);
    unsigned char *pa = foehn_shm_stage(out, a, len, len, 1);
    unsigned char *pb = foehn_shm_stage(out, b, len, len, 2);
    CHECK(pa != NULL && pb != NULL && pa != pb);
    CHECK(foehn_shm_read(in, got, (uint64_t)(uintptr_t)pa, len, 1) == FOEHN_SHM_COPIED && memcmp(got, a, len) == 0);
    CHECK(foehn_shm_read(in, got, (uint64_t)(uintptr_t)pb, len, 1) == FOEHN_SHM_COPIED && memcmp(got, b, len) == 0);
    /* full: a third waits (the caller sends by single copy instead) */
    CHECK(foehn_shm_stage(out, a, 4096, 4096, 3) == NULL);
    /* freed out of order: the second's room is not free while the first is in use */
    CHECK(foehn_shm_release(out, 2));
    CHECK(foehn_shm_stage(out, a, len, len, 4) == NULL);
    CHECK(!foehn_shm_release(out, 2)); /* twice: nothing */
    CHECK(!foehn_shm_release(out, 99));
    CHECK(foehn_shm_release(out, 1));
    /* all free: staging starts again at the front */
    unsigned char *again = foehn_shm_stage(out, b, 1000, 1000, 5);
    CHECK(again == pa);
    /* a part that would cross the end goes to the front instead (once that is free) */
    unsigned char *mid = foehn_shm_stage(out, a, size - 1000 - 10, 0, 6);
    CHECK(mid == NULL); /* larger than half the segment: refused */
    CHECK(foehn_shm_release(out, 5));
    unsigned char *p1 = foehn_shm_stage(out, a, len, len, 7);
    unsigned char *p2 = foehn_shm_stage(out, b, len - 200, len - 200, 8);
    CHECK(p1 != NULL && p2 != NULL);
    CHECK(foehn_shm_release(out, 7));
    unsigned char *p3 = foehn_shm_stage(out, a, 5000, 5000, 9); /* too little left at the end */
    CHECK(p3 == pa);
    CHECK(foehn_shm_read(in, got, (uint64_t)(uintptr_t)p3, 5000, 1) == FOEHN_SHM_COPIED &&
          memcmp(got, a, 5000) == 0);
    CHECK(foehn_shm_read(in, got, (uint64_t)(uintptr_t)p2, len - 200, 1) == FOEHN_SHM_COPIED &&
          memcmp(got, b, len - 200) == 0);
    CHECK(foehn_shm_stage(out, a, 0, 0, 10) == NULL); /* nothing to stage */

    /* a part filled in pieces: read up to what is ready, then all once the rest is in;
     * a sender that stops is given up on */
    CHECK(foehn_shm_release(out, 8) && foehn_shm_release(out, 9));
    unsigned char *pp = foehn_shm_stage(out, b, len, FOEHN_SHM_PIECE, 11);
    CHECK(pp == pa);
    if (!pp)
        return check_summary("shm");
    memset(got, 0, len);
    CHECK(foehn_shm_read(in, got, (uint64_t)(uintptr_t)pp, len, 0.05) == FOEHN_SHM_STALLED);
    CHECK(memcmp(got, b, FOEHN_SHM_PIECE) == 0 && got[FOEHN_SHM_PIECE] == 0);
    foehn_shm_stage_rest(pp, b, len, FOEHN_SHM_PIECE);
    CHECK(foehn_shm_read(in, got, (uint64_t)(uintptr_t)pp, len, 1) == FOEHN_SHM_COPIED &&
          memcmp(got, b, len) == 0);

    /* reads outside the segment are not served (the caller falls back) */
    CHECK(foehn_shm_read(in, got, base - 1, 1, 1) == FOEHN_SHM_OUTSIDE);
    CHECK(foehn_shm_read(in, got, base, 1, 1) == FOEHN_SHM_OUTSIDE); /* no room for a head */
    CHECK(foehn_shm_read(in, got, base + size - 10, 11, 1) == FOEHN_SHM_OUTSIDE);
    CHECK(foehn_shm_read(in, got, UINT64_MAX - 4, 8, 1) == FOEHN_SHM_OUTSIDE);
    CHECK(foehn_shm_read(NULL, got, base + 64, 1, 1) == FOEHN_SHM_OUTSIDE);

    /* announcements not to trust */
    CHECK(foehn_shm_in_open(getpid(), 999999, base, size) == NULL);   /* no such fd */
    CHECK(foehn_shm_in_open(getpid(), fd, base, size * 2) == NULL);   /* larger than it is */
    CHECK(foehn_shm_in_open(getpid(), fd, base, (size_t)1 << 40) == NULL);
    CHECK(foehn_shm_in_open(getpid(), fd, UINT64_MAX - 10, size) == NULL);
    CHECK(foehn_shm_in_open(0, fd, base, size) == NULL);
    CHECK(foehn_shm_in_open(getpid(), 0, base, 4096) == NULL);        /* not a file */

    foehn_shm_in_free(in);
    foehn_shm_out_free(out);
    foehn_shm_in_free(NULL);
    foehn_shm_out_free(NULL);
    free(a);
    free(b);
    free(got);
    return check_summary("shm");
}
