/* Reductions: reduce, allreduce, reduce_scatter_block, scan and exscan.
 *
 * Non-commutative reductions keep rank order (x0 op x1 op ... op x(n-1)), with the
 * engine's inout = in op inout: combining a lower part `lo` with a higher part `hi`
 * is apply(lo, hi) and the result is in hi's buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "comm/coll_impl.h"
#include "common/error.h"

/* Allreduce of at least this many bytes (and at least one element per rank) runs as a
 * ring reduce-scatter and a ring allgather: each rank sends about 2 * bytes in total
 * instead of bytes * log2(n), at the price of 2 (n - 1) steps of latency. Below 64 KiB
 * recursive doubling's log2(n) steps win (MPICH and gloo switch in the same range).
 * Non-commutative reductions this large reduce to rank 0 in order and broadcast. */
#define ALLREDUCE_RING_MIN ((size_t)64 * 1024)

/* Commutative reduces of at least this many bytes (and an element per rank) run as a
 * ring reduce-scatter and a gather of the reduced blocks to the root: about 2 * bytes
 * per link instead of the tree's bytes * log2(n) into the root, which also does every
 * log2(n) full-buffer reduction itself. Same crossover as allreduce's ring. */
#define REDUCE_SPLIT_MIN ALLREDUCE_RING_MIN

typedef struct red {
    foehn_coll *c;
    const foehn_reduction *op;
    foehn_dtype dtype;
    size_t dsize;
    size_t count, bytes; /* of one whole buffer */
    int commute;
} red;

static int red_init(red *r, foehn_coll *c, size_t count, foehn_dtype dtype,
                    const foehn_reduction *op)
{
    *r = (red){.c = c, .op = op, .dtype = dtype, .dsize = foehn_dtype_size(dtype),
               .count = count, .commute = foehn_reduction_commutes(op)};
    return foehn_coll_mul(c, count, r->dsize, &r->bytes);
}

/* inout = in op inout over len bytes. */
static int apply(const red *r, const void *in, void *inout, size_t len)
{
    if (!len)
        return FOEHN_OK;
    return foehn_reduction_apply(r->op, in, inout, len / r->dsize, r->dtype, r->c->err);
}

static void swap(unsigned char **a, unsigned char **b)
{
    unsigned char *t = *a;
    *a = *b;
    *b = t;
}

/* Two scratch buffers of r->bytes; freed by the caller (free both, NULL or not). */
static int scratch2(const red *r, unsigned char **a, unsigned char **b)
{
    *a = foehn_coll_alloc(r->c, r->bytes);
    *b = *a ? foehn_coll_alloc(r->c, r->bytes) : NULL;
    return *b ? FOEHN_OK : FOEHN_ERR_NOMEM;
}

/* Binomial-tree reduction of in (r->bytes) to root. With root 0 the tree keeps rank
 * order: after the step with mask m, virtual rank v holds x[v, v + 2m). At root,
 * *result is in or s[0] (s[0], s[1] scratch the caller frees). */
static int tree_reduce(const red *r, const void *in, int root, unsigned char *s[2],
                       const unsigned char **result)
{
    foehn_coll *c = r->c;
    int n = c->size;
    int v = (c->rank - root + n) % n;
    *result = in;
    for (int m = 1; m < n; m <<= 1) {
        if (v & m)
            return foehn_coll_send(c, foehn_coll_real(v - m, root, n), foehn_coll_at(*result, 0),
                                   r->bytes);
        if (v + m >= n)
            continue;
        int rc = FOEHN_OK;
        if (!s[0]) {
            rc = scratch2(r, &s[0], &s[1]);
            if (rc == FOEHN_OK)
                foehn_coll_copy(s[0], in, r->bytes);
        }
        if (rc == FOEHN_OK)
            rc = foehn_coll_recv(c, foehn_coll_real(v + m, root, n), s[1], r->bytes);
        if (rc == FOEHN_OK)
            rc = apply(r, s[0], s[1], r->bytes);
        if (rc != FOEHN_OK)
            return rc;
        swap(&s[0], &s[1]);
        *result = s[0];
    }
    return FOEHN_OK;
}

/* Reduce of r->bytes from in (any rank) into out (root only). */
static int reduce_to(const red *r, const void *in, void *out, int root)
{
    foehn_coll *c = r->c;
    /* A commutative reduction runs its tree from the root itself; an ordered one from
     * rank 0, which hands the result on. */
    int troot = r->commute ? root : 0;
    unsigned char *s[2] = {NULL, NULL};
    const unsigned char *result = NULL;
    int rc = tree_reduce(r, in, troot, s, &result);
    if (rc == FOEHN_OK && c->rank == troot) {
        if (troot == root)
            foehn_coll_copy(out, result, r->bytes);
        else
            rc = foehn_coll_send(c, root, foehn_coll_at(result, 0), r->bytes);
    } else if (rc == FOEHN_OK && c->rank == root) {
        rc = foehn_coll_recv(c, troot, foehn_coll_at(out, 0), r->bytes);
    }
    free(s[0]);
    free(s[1]);
    return rc;
}

static int ring_reduce_scatter(const red *r, const unsigned char *in, unsigned char *work,
                               const foehn_coll_layout *l);

/* n blocks of ceil(count / n) elements, the last ones short or empty. */
static foehn_coll_layout element_blocks(const red *r, int n)
{
    size_t per = r->count / (size_t)n + (r->count % (size_t)n != 0);
    return foehn_coll_uniform(per * r->dsize, r->bytes);
}

int foehn_alg_reduce(foehn_coll *c, const void *sendbuf, void *recvbuf, size_t count,
                     foehn_dtype dtype, const foehn_reduction *op, int root)
{
    red r;
    int rc = red_init(&r, c, count, dtype, op);
    if (rc != FOEHN_OK)
        return rc;
    const void *in = sendbuf == FOEHN_IN_PLACE ? recvbuf : sendbuf;
    int n = c->size;
    if (!r.commute || r.bytes < REDUCE_SPLIT_MIN || count < (size_t)n)
        return reduce_to(&r, in, recvbuf, root);
    /* Ring reduce-scatter into scratch (at the root: recvbuf itself), then every rank
     * sends its reduced block to the root. */
    foehn_coll_layout l = element_blocks(&r, n);
    unsigned char *work = c->rank == root ? recvbuf : foehn_coll_alloc(c, r.bytes);
    if (!work)
        return FOEHN_ERR_NOMEM;
    rc = ring_reduce_scatter(&r, work == in ? NULL : in, work, &l);
    if (rc == FOEHN_OK && c->rank == root) {
        rc = foehn_coll_root_exchange(c, work, &l, 1);
    } else if (rc == FOEHN_OK) {
        size_t off, len;
        foehn_coll_block(&l, c->rank, &off, &len);
        rc = foehn_coll_send(c, root, foehn_coll_at(work, off), len);
    }
    if (work != recvbuf)
        free(work);
    return rc;
}

/* Recursive doubling on buf (which holds this rank's input), keeping rank order. With
 * n not a power of two, the first 2 * rem ranks fold pairwise (even into odd) first
 * and get the result back from their partner at the end. */
static int recursive_doubling(const red *r, unsigned char *buf)
{
    foehn_coll *c = r->c;
    int n = c->size, rank = c->rank;
    int pof2 = 1;
    while (pof2 <= n - pof2)
        pof2 *= 2;
    int rem = n - pof2;
    unsigned char *acc = buf, *tmp = foehn_coll_alloc(c, r->bytes);
    if (!tmp)
        return FOEHN_ERR_NOMEM;
    int rc = FOEHN_OK, newrank = rank - rem;
    if (rank < 2 * rem) {
        newrank = rank % 2 ? rank / 2 : -1;
        if (rank % 2 == 0)
            rc = foehn_coll_send(c, rank + 1, acc, r->bytes);
        else if ((rc = foehn_coll_recv(c, rank - 1, tmp, r->bytes)) == FOEHN_OK)
            rc = apply(r, tmp, acc, r->bytes);
    }
    for (int m = 1; m < pof2 && newrank >= 0 && rc == FOEHN_OK; m <<= 1) {
        int nd = newrank ^ m;
        int dst = nd < rem ? nd * 2 + 1 : nd + rem;
        rc = foehn_coll_sendrecv(c, dst, acc, r->bytes, dst, tmp, r->bytes);
        if (rc != FOEHN_OK)
            break;
        if (dst < rank || r->commute) {
            rc = apply(r, tmp, acc, r->bytes);
        } else {
            rc = apply(r, acc, tmp, r->bytes);
            swap(&acc, &tmp);
        }
    }
    if (rc == FOEHN_OK && rank < 2 * rem)
        rc = rank % 2 ? foehn_coll_send(c, rank - 1, acc, r->bytes)
                      : foehn_coll_recv(c, rank + 1, acc, r->bytes);
    if (rc == FOEHN_OK)
        foehn_coll_copy(buf, acc, r->bytes);
    free(acc == buf ? tmp : acc);
    return rc;
}

/* Ring reduce-scatter over the blocks of work (layout l): in step s rank r passes
 * block r - s - 1 on to the right and folds block r - s - 2 from the left into its
 * own copy, so that after n - 1 steps block r holds the reduction of every rank's.
 * in NULL: work holds this rank's input, and each block received is folded in from a
 * scratch block. Otherwise in is the input (apart from work) and work starts as
 * nothing: a block received lands in work and in's block is folded into it, and the
 * first block sent comes from in, so that in is never copied first (a block a rank
 * folds is one it has not touched before; the one it sends first it never folds). */
static int ring_reduce_scatter(const red *r, const unsigned char *in, unsigned char *work,
                               const foehn_coll_layout *l)
{
    foehn_coll *c = r->c;
    int n = c->size, rank = c->rank;
    size_t most = 0;
    for (int b = 0; b < n && !in; b++) {
        size_t off, len;
        foehn_coll_block(l, b, &off, &len);
        most = len > most ? len : most;
    }
    if (in && n == 1) { /* no step: the reduction is the input */
        size_t off, len;
        foehn_coll_block(l, 0, &off, &len);
        foehn_coll_copy(work + off, in + off, len);
        return FOEHN_OK;
    }
    unsigned char *tmp = in ? NULL : foehn_coll_alloc(c, most);
    if (!in && !tmp)
        return FOEHN_ERR_NOMEM;
    int rc = FOEHN_OK;
    for (int s = 0; s < n - 1 && rc == FOEHN_OK; s++) {
        size_t soff, slen, roff, rlen;
        foehn_coll_block(l, (rank - s - 1 + n) % n, &soff, &slen);
        foehn_coll_block(l, (rank - s - 2 + 2 * n) % n, &roff, &rlen);
        const unsigned char *from = in && s == 0 ? in : work;
        rc = foehn_coll_sendrecv(c, (rank + 1) % n, foehn_coll_at(from, soff), slen,
                                 (rank - 1 + n) % n, in ? foehn_coll_at(work, roff) : tmp, rlen);
        if (rc == FOEHN_OK)
            rc = apply(r, in ? in + roff : tmp, work + roff, rlen);
    }
    free(tmp);
    return rc;
}

int foehn_alg_allreduce(foehn_coll *c, const void *sendbuf, void *recvbuf, size_t count,
                        foehn_dtype dtype, const foehn_reduction *op)
{
    red r;
    int rc = red_init(&r, c, count, dtype, op);
    if (rc != FOEHN_OK)
        return rc;
    int n = c->size;
    int ring = n > 1 && r.commute && r.bytes >= ALLREDUCE_RING_MIN && count >= (size_t)n;
    /* the ring reads sendbuf where it lies; everything else starts from a copy */
    const unsigned char *in = ring && sendbuf != FOEHN_IN_PLACE && sendbuf != recvbuf
                                  ? sendbuf : NULL;
    if (sendbuf != FOEHN_IN_PLACE && !in)
        foehn_coll_copy(recvbuf, sendbuf, r.bytes);
    if (n == 1)
        return FOEHN_OK;
    if (ring) {
        foehn_coll_layout l = element_blocks(&r, n);
        rc = ring_reduce_scatter(&r, in, recvbuf, &l);
        return rc != FOEHN_OK ? rc : foehn_coll_ring_allgather(c, recvbuf, &l, 0);
    }
    if (r.bytes < ALLREDUCE_RING_MIN || r.commute) /* small, or fewer elements than ranks */
        return recursive_doubling(&r, recvbuf);
    rc = reduce_to(&r, recvbuf, recvbuf, 0);
    return rc != FOEHN_OK ? rc : foehn_alg_bcast(c, recvbuf, r.bytes, 0);
}

int foehn_alg_reduce_scatter_block(foehn_coll *c, const void *sendbuf, void *recvbuf,
                                   size_t count, foehn_dtype dtype, const foehn_reduction *op)
{
    int n = c->size;
    red r, all;
    size_t total = 0;
    int rc = red_init(&r, c, count, dtype, op);
    if (rc == FOEHN_OK)
        rc = foehn_coll_mul(c, count, (size_t)n, &total);
    if (rc == FOEHN_OK)
        rc = red_init(&all, c, total, dtype, op);
    if (rc != FOEHN_OK)
        return rc;
    const void *in = sendbuf == FOEHN_IN_PLACE ? recvbuf : sendbuf;
    if (!all.commute) {
        /* In order to rank 0, which scatters the blocks. */
        unsigned char *sum = c->rank == 0 ? foehn_coll_alloc(c, all.bytes) : NULL;
        if (c->rank == 0 && !sum)
            return FOEHN_ERR_NOMEM;
        rc = reduce_to(&all, in, sum, 0);
        if (rc == FOEHN_OK)
            rc = foehn_alg_scatter(c, sum, NULL, NULL, recvbuf, r.bytes, 0);
        free(sum);
        return rc;
    }
    unsigned char *work = sendbuf == FOEHN_IN_PLACE ? recvbuf : foehn_coll_alloc(c, all.bytes);
    if (!work)
        return FOEHN_ERR_NOMEM;
    foehn_coll_layout l = foehn_coll_uniform(r.bytes, all.bytes);
    rc = ring_reduce_scatter(&all, work == in ? NULL : in, work, &l);
    if (rc == FOEHN_OK)
        foehn_coll_copy(recvbuf, foehn_coll_at(work, (size_t)c->rank * r.bytes), r.bytes);
    if (work != recvbuf)
        free(work);
    return rc;
}

/* Recursive doubling as MPICH does it: `partial` holds the reduction of this rank's
 * aligned block of 2m ranks, recvbuf of the ranks from that block's start up to this
 * one (inclusive) or before it (exclusive: untouched until a lower rank is heard). */
int foehn_alg_scan(foehn_coll *c, const void *sendbuf, void *recvbuf, size_t count,
                   foehn_dtype dtype, const foehn_reduction *op, int exclusive)
{
    red r;
    int rc = red_init(&r, c, count, dtype, op);
    unsigned char *partial = NULL, *tmp = NULL;
    if (rc == FOEHN_OK)
        rc = scratch2(&r, &partial, &tmp);
    if (rc != FOEHN_OK) {
        free(partial);
        return rc;
    }
    foehn_coll_copy(partial, sendbuf == FOEHN_IN_PLACE ? recvbuf : sendbuf, r.bytes);
    int have = !exclusive; /* recvbuf holds a result */
    if (have)
        foehn_coll_copy(recvbuf, partial, r.bytes);
    int n = c->size, rank = c->rank;
    for (int m = 1; m < n && rc == FOEHN_OK; m <<= 1) {
        int dst = rank ^ m;
        if (dst >= n)
            continue;
        rc = foehn_coll_sendrecv(c, dst, partial, r.bytes, dst, tmp, r.bytes);
        if (rc != FOEHN_OK)
            break;
        if (dst < rank) {
            rc = apply(&r, tmp, partial, r.bytes);
            if (rc == FOEHN_OK && have)
                rc = apply(&r, tmp, recvbuf, r.bytes);
            else if (rc == FOEHN_OK)
                foehn_coll_copy(recvbuf, tmp, r.bytes);
            have = 1;
        } else if (r.commute) {
            rc = apply(&r, tmp, partial, r.bytes);
        } else {
            rc = apply(&r, partial, tmp, r.bytes);
            swap(&partial, &tmp);
        }
    }
    free(partial);
    free(tmp);
    return rc;
}
