/* The collective algorithms (coll_*.c) and what they share.
 *
 * Each algorithm is blocking code over coll.h's point-to-point inside one numbered
 * collective c; coll_api.c checks the arguments, takes the number and calls them.
 * Every algorithm exchanges messages even when buffers are empty (zero-length
 * messages), so that ranks which disagree on sizes or on the collective get
 * FOEHN_ERR_MISMATCH instead of waiting for each other.
 *
 * Within one collective, messages between two ranks are matched in the order they
 * were sent; algorithms that run in phases (reduce then bcast, scatter then ring)
 * rely on it.
 */
#ifndef FOEHN_COMM_COLL_IMPL_H
#define FOEHN_COMM_COLL_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "comm/coll.h"
#include "foehn.h"

/* When a rank sends at most this many bytes in all, an alltoall posts every receive
 * and send at once (one round of latency; the engine buffers what arrives early).
 * Above it, pairwise exchange (step s: to rank + s, from rank - s) keeps one block in
 * flight each way, so that n ranks do not flood each other's buffers at once. */
#define FOEHN_ALLTOALL_BURST_MAX ((size_t)64 * 1024)

/* ---- helpers (coll_sync.c) ---- */

/* a * b, or FOEHN_ERR_LIMIT (set in c->err) when it does not fit in a size_t. */
int foehn_coll_mul(foehn_coll *c, size_t a, size_t b, size_t *out);
/* malloc(n) (at least 1 byte), or NULL with FOEHN_ERR_NOMEM in c->err. */
void *foehn_coll_alloc(foehn_coll *c, size_t n);

/* buf + off, for handing the engine: a NULL buffer (only ever with nothing in it)
 * becomes a dummy, since a NULL receive buffer means "allocate one". */
extern unsigned char foehn_coll_dummy[1];
static inline unsigned char *foehn_coll_at(const void *buf, size_t off)
{
    return buf ? (unsigned char *)buf + off : foehn_coll_dummy;
}

/* memmove that does nothing for an empty or identical range (NULL allowed then). */
static inline void foehn_coll_copy(void *dst, const void *src, size_t len)
{
    if (len && dst != src)
        memmove(dst, src, len);
}

/* Binomial trees over virtual ranks v = (rank - root) mod n: v's parent is
 * v - lowbit(v); its children are v + m for m = 1, 2, 4, ... below
 * foehn_coll_span(v, n) with v + m < n; its subtree holds min(span, n - v) nodes. */
static inline int foehn_coll_span(int v, int n)
{
    return v ? (v & -v) : n;
}
static inline int foehn_coll_subtree(int v, int n)
{
    int span = foehn_coll_span(v, n);
    return span < n - v ? span : n - v;
}
static inline int foehn_coll_real(int v, int root, int n)
{
    return (v + root) % n;
}

/* Where block i of a buffer lies: per-block counts and displacements (bytes), or
 * (counts NULL) uniform blocks of `block` bytes clamped to `total` bytes, so that the
 * last blocks of a chunked buffer may be short or empty. */
typedef struct foehn_coll_layout {
    const size_t *counts, *displs;
    size_t block, total;
} foehn_coll_layout;

static inline void foehn_coll_block(const foehn_coll_layout *l, int i, size_t *off, size_t *len)
{
    if (l->counts) {
        *off = l->displs[i];
        *len = l->counts[i];
        return;
    }
    size_t start = l->block && (size_t)i > l->total / l->block ? l->total : (size_t)i * l->block;
    *off = start < l->total ? start : l->total;
    *len = l->total - *off < l->block ? l->total - *off : l->block;
}

/* n blocks of `block` bytes each, chunked as above (total = n * block checked). */
static inline foehn_coll_layout foehn_coll_uniform(size_t block, size_t total)
{
    return (foehn_coll_layout){.block = block, .total = total};
}

/* Blocks [a, b) of a uniform layout as one byte range (b may be the block count). */
static inline void foehn_coll_range(const foehn_coll_layout *l, int a, int b, size_t *off,
                                    size_t *len)
{
    size_t end, ignored;
    foehn_coll_block(l, a, off, &ignored);
    foehn_coll_block(l, b, &end, &ignored);
    *len = end - *off;
}

/* Ring allgather over blocks laid out in buf: rank r sits at ring position
 * (r - shift) mod size and starts with block (its position) in place. */
int foehn_coll_ring_allgather(foehn_coll *c, unsigned char *buf, const foehn_coll_layout *l,
                              int shift);

/* Sends each child of virtual rank v (largest subtree first) its subtree's blocks of
 * buf, laid out by l in virtual-rank order less base; l NULL: all of buf (whole
 * bytes) to every child. */
int foehn_coll_tree_send(foehn_coll *c, int v, int root, const unsigned char *buf,
                         const foehn_coll_layout *l, int base, size_t whole);

/* Binomial-tree scatter of a uniform layout in virtual-rank order: every non-root
 * receives its subtree's blocks from its parent into buf (block i at l's block
 * i - base), then passes each child its part. */
int foehn_coll_tree_scatter(foehn_coll *c, int root, unsigned char *buf,
                            const foehn_coll_layout *l, int base);

/* The root's side of a linear gather (recv 1) or scatter (recv 0): one receive or
 * send per other rank of its block of buf, all posted at once, then waited for. */
int foehn_coll_root_exchange(foehn_coll *c, unsigned char *buf, const foehn_coll_layout *l,
                             int recv);

/* ---- the algorithms ---- */

int foehn_alg_barrier(foehn_coll *c);
int foehn_alg_bcast(foehn_coll *c, void *buf, size_t bytes, int root);

int foehn_alg_reduce(foehn_coll *c, const void *sendbuf, void *recvbuf, size_t count,
                     foehn_dtype dtype, const foehn_reduction *op, int root);
int foehn_alg_allreduce(foehn_coll *c, const void *sendbuf, void *recvbuf, size_t count,
                        foehn_dtype dtype, const foehn_reduction *op);
int foehn_alg_reduce_scatter_block(foehn_coll *c, const void *sendbuf, void *recvbuf,
                                   size_t count, foehn_dtype dtype, const foehn_reduction *op);
/* Inclusive (exclusive 0) or exclusive scan. */
int foehn_alg_scan(foehn_coll *c, const void *sendbuf, void *recvbuf, size_t count,
                   foehn_dtype dtype, const foehn_reduction *op, int exclusive);

/* Gather/scatter: counts NULL for the uniform forms (blocks of `bytes`); the vector
 * forms (c->kind GATHERV/SCATTERV) always go straight to the root, since only the
 * root has the counts. */
int foehn_alg_gather(foehn_coll *c, const void *sendbuf, size_t sendbytes, void *recvbuf,
                     const size_t *counts, const size_t *displs, int root);
int foehn_alg_scatter(foehn_coll *c, const void *sendbuf, const size_t *counts,
                      const size_t *displs, void *recvbuf, size_t recvbytes, int root);
int foehn_alg_allgather(foehn_coll *c, const void *sendbuf, size_t sendbytes, void *recvbuf,
                        const size_t *counts, const size_t *displs);
int foehn_alg_alltoall(foehn_coll *c, const void *sendbuf, const size_t *scounts,
                       const size_t *sdispls, void *recvbuf, const size_t *rcounts,
                       const size_t *rdispls, size_t bytes);

int foehn_alg_bcast_blob(foehn_coll *c, const void *in, size_t inlen, int root, void **out,
                         size_t *outlen);
int foehn_alg_gather_blob(foehn_coll *c, const void *in, size_t inlen, int root, void ***outs,
                          size_t **outlens);
int foehn_alg_allgather_blob(foehn_coll *c, const void *in, size_t inlen, void ***outs,
                             size_t **outlens);
int foehn_alg_scatter_blob(foehn_coll *c, const void *const *ins, const size_t *inlens,
                           int root, void **out, size_t *outlen);
int foehn_alg_alltoall_blob(foehn_coll *c, const void *const *ins, const size_t *inlens,
                            void ***outs, size_t **outlens);
int foehn_alg_alltoall_pieces(foehn_coll *c, const foehn_pieces *ins, foehn_pieces **outs);
/* The same, in two halves when it bursts (bursts: whether this rank's objects are
 * small enough): start posts every send and every receive it can and never blocks,
 * so that a nonblocking one may start while earlier collectives still run
 * (foehn_coll_start's begin); finish receives the rest, waits, fills *outs and frees
 * the flight (NULL after a failed start: it then reports the start's failure). */
typedef struct foehn_pieces_flight foehn_pieces_flight;
bool foehn_alg_alltoall_pieces_bursts(foehn_coll *c, const foehn_pieces *ins);
int foehn_alg_alltoall_pieces_start(foehn_coll *c, const foehn_pieces *ins,
                                    foehn_pieces_flight **flight);
int foehn_alg_alltoall_pieces_finish(foehn_coll *c, foehn_pieces_flight *f, foehn_pieces **outs);

#endif
