/* Gather, scatter and allgather, uniform and vector forms. */
#include <stdlib.h>
#include <string.h>

#include "comm/coll_impl.h"
#include "common/error.h"

/* Uniform gathers and scatters of at most this many bytes in all run down a binomial
 * tree (log2(n) steps); larger ones go straight between the root and each rank, since
 * the tree's inner ranks would copy and forward whole subtrees (bandwidth and memory)
 * to save latency that no longer matters. */
#define TREE_TOTAL_MAX ((size_t)64 * 1024)

/* Uniform allgathers below this many bytes in all use Bruck's algorithm (ceil(log2 n)
 * steps, any n, one extra copy); larger ones the ring (n - 1 steps, each link busy
 * with one block at a time, no copies). */
#define ALLGATHER_RING_MIN ((size_t)64 * 1024)

/* dst block (i + shift) mod n = src block i, for n blocks of `block` bytes. */
static void rotate(unsigned char *dst, const unsigned char *src, size_t block, int n, int shift)
{
    size_t head = (size_t)(n - shift) * block;
    foehn_coll_copy(foehn_coll_at(dst, (size_t)shift * block), src, head);
    foehn_coll_copy(dst, foehn_coll_at(src, head), (size_t)shift * block);
}

/* Checks that a rank's own contribution has the size its block says. */
static int own_size(foehn_coll *c, size_t mine, size_t block)
{
    if (mine == block)
        return FOEHN_OK;
    return foehn_fail(c->err, FOEHN_ERR_MISMATCH,
                      "%s: rank %d contributes %zu bytes but its own block is %zu bytes",
                      foehn_coll_kind_name(c->kind), c->rank, mine, block);
}

int foehn_coll_root_exchange(foehn_coll *c, unsigned char *buf, const foehn_coll_layout *l, int recv)
{
    int n = c->size;
    foehn_request **reqs = foehn_coll_alloc(c, (size_t)n * sizeof *reqs);
    if (!reqs)
        return FOEHN_ERR_NOMEM;
    int rc = FOEHN_OK;
    for (int i = 0; i < n; i++) {
        reqs[i] = NULL;
        if (i == c->rank || rc != FOEHN_OK)
            continue;
        size_t off, len;
        foehn_coll_block(l, i, &off, &len);
        rc = recv ? foehn_coll_irecv(c, i, foehn_coll_at(buf, off), len, &reqs[i])
                  : foehn_coll_isend(c, i, foehn_coll_at(buf, off), len, &reqs[i]);
    }
    int wrc = foehn_coll_waitall(c, reqs, (size_t)n);
    free(reqs);
    return rc != FOEHN_OK ? rc : wrc;
}

/* Binomial gather of uniform blocks: v collects its subtree's blocks (in virtual-rank
 * order) from its children, then hands them to its parent. */
static int tree_gather(foehn_coll *c, const void *mine, size_t bytes, void *recvbuf, int root)
{
    int n = c->size;
    int v = (c->rank - root + n) % n, sub = foehn_coll_subtree(v, n);
    unsigned char *buf = (unsigned char *)mine, *tmp = NULL;
    if (sub > 1 && v == 0 && root == 0) {
        buf = recvbuf;
    } else if (sub > 1) {
        buf = tmp = foehn_coll_alloc(c, (size_t)sub * bytes);
        if (!tmp)
            return FOEHN_ERR_NOMEM;
    }
    foehn_coll_copy(buf, mine, bytes);
    foehn_request *reqs[sizeof(int) * 8] = {NULL};
    size_t nreq = 0;
    int rc = FOEHN_OK, span = foehn_coll_span(v, n);
    for (int m = 1; m < span && v + m < n && rc == FOEHN_OK; m <<= 1)
        rc = foehn_coll_irecv(c, foehn_coll_real(v + m, root, n),
                              foehn_coll_at(buf, (size_t)m * bytes),
                              (size_t)foehn_coll_subtree(v + m, n) * bytes, &reqs[nreq++]);
    int wrc = foehn_coll_waitall(c, reqs, nreq);
    rc = rc != FOEHN_OK ? rc : wrc;
    if (rc == FOEHN_OK && v)
        rc = foehn_coll_send(c, foehn_coll_real(v - (v & -v), root, n), foehn_coll_at(buf, 0),
                             (size_t)sub * bytes);
    else if (rc == FOEHN_OK && buf != recvbuf)
        rotate(recvbuf, buf, bytes, n, root);
    free(tmp);
    return rc;
}

int foehn_alg_gather(foehn_coll *c, const void *sendbuf, size_t sendbytes, void *recvbuf,
                     const size_t *counts, const size_t *displs, int root)
{
    int n = c->size;
    size_t total;
    int rc = foehn_coll_mul(c, sendbytes, (size_t)n, &total);
    if (rc != FOEHN_OK)
        return rc;
    foehn_coll_layout l = {.counts = counts, .displs = displs, .block = sendbytes, .total = total};
    size_t off = 0, len = sendbytes;
    if (c->rank == root)
        foehn_coll_block(&l, root, &off, &len);
    const void *mine = sendbuf == FOEHN_IN_PLACE ? foehn_coll_at(recvbuf, off) : sendbuf;
    if (c->rank == root && sendbuf != FOEHN_IN_PLACE &&
        (rc = own_size(c, sendbytes, len)) != FOEHN_OK)
        return rc;
    if (c->kind != FOEHN_COLL_GATHERV && total <= TREE_TOTAL_MAX)
        return tree_gather(c, mine, sendbytes, recvbuf, root);
    if (c->rank != root)
        return foehn_coll_send(c, root, foehn_coll_at(sendbuf, 0), sendbytes);
    foehn_coll_copy(foehn_coll_at(recvbuf, off), mine, len);
    return foehn_coll_root_exchange(c, recvbuf, &l, 1);
}

int foehn_alg_scatter(foehn_coll *c, const void *sendbuf, const size_t *counts,
                      const size_t *displs, void *recvbuf, size_t recvbytes, int root)
{
    int n = c->size, v = (c->rank - root + n) % n;
    size_t total;
    int rc = foehn_coll_mul(c, recvbytes, (size_t)n, &total);
    if (rc != FOEHN_OK)
        return rc;
    int keep = recvbuf == (void *)FOEHN_IN_PLACE; /* the root's block stays where it is */
    foehn_coll_layout l = {.counts = counts, .displs = displs, .block = recvbytes, .total = total};
    size_t off = 0, len = recvbytes;
    if (c->rank == root) {
        foehn_coll_block(&l, root, &off, &len);
        if (!keep && (rc = own_size(c, recvbytes, len)) != FOEHN_OK)
            return rc;
    }
    if (c->kind == FOEHN_COLL_SCATTERV || total > TREE_TOTAL_MAX) {
        if (c->rank != root)
            return foehn_coll_recv(c, root, foehn_coll_at(recvbuf, 0), recvbytes);
        if (!keep)
            foehn_coll_copy(recvbuf, foehn_coll_at(sendbuf, off), len);
        return foehn_coll_root_exchange(c, (unsigned char *)sendbuf, &l, 0);
    }
    /* The tree works in virtual-rank order: the root rotates its buffer unless it is
     * rank 0; an inner rank receives its subtree's blocks into a buffer of its own. */
    int sub = foehn_coll_subtree(v, n);
    unsigned char *buf = v ? recvbuf : (unsigned char *)sendbuf, *tmp = NULL;
    if ((v && sub > 1) || (!v && root)) {
        buf = tmp = foehn_coll_alloc(c, (size_t)sub * recvbytes);
        if (!tmp)
            return FOEHN_ERR_NOMEM;
        if (!v)
            rotate(tmp, sendbuf, recvbytes, n, n - root);
    }
    foehn_coll_layout tree = foehn_coll_uniform(recvbytes, (size_t)sub * recvbytes);
    rc = foehn_coll_tree_scatter(c, root, buf, &tree, v);
    if (rc == FOEHN_OK && !keep)
        foehn_coll_copy(recvbuf, buf, recvbytes);
    free(tmp);
    return rc;
}

/* Bruck: after the step with distance k, tmp holds the blocks of ranks rank .. rank +
 * 2k - 1 (mod n) in that order; a final rotation puts them in place. */
static int bruck(foehn_coll *c, unsigned char *recvbuf, size_t bytes)
{
    int n = c->size, rank = c->rank;
    unsigned char *tmp = foehn_coll_alloc(c, (size_t)n * bytes);
    if (!tmp)
        return FOEHN_ERR_NOMEM;
    foehn_coll_copy(tmp, foehn_coll_at(recvbuf, (size_t)rank * bytes), bytes);
    int rc = FOEHN_OK;
    for (int k = 1; k < n && rc == FOEHN_OK; k <<= 1) {
        size_t len = (size_t)(k < n - k ? k : n - k) * bytes;
        rc = foehn_coll_sendrecv(c, (rank - k + n) % n, tmp, len, (rank + k) % n,
                                 tmp + (size_t)k * bytes, len);
    }
    if (rc == FOEHN_OK)
        rotate(recvbuf, tmp, bytes, n, rank);
    free(tmp);
    return rc;
}

/* Neighbor exchange (Chen et al.), for an even number of ranks: pairs swap their own
 * blocks, then each step passes the two blocks just received to the neighbor on the
 * other side, so n/2 steps instead of a ring's n - 1. Each step waits for a neighbor;
 * on a host with more ranks than cores that wait is a scheduling round, and fewer
 * steps (of twice the bytes) cost less. */
static int neighbor_exchange(foehn_coll *c, unsigned char *recvbuf, size_t bytes)
{
    int n = c->size, rank = c->rank, even = rank % 2 == 0;
    int neighbor[2], from[2], step[2];
    neighbor[0] = even ? (rank + 1) % n : (rank - 1 + n) % n;
    neighbor[1] = even ? (rank - 1 + n) % n : (rank + 1) % n;
    from[0] = from[1] = even ? rank : neighbor[0];
    step[0] = even ? 2 : -2;
    step[1] = -step[0];
    int rc = foehn_coll_sendrecv(c, neighbor[0], foehn_coll_at(recvbuf, (size_t)rank * bytes),
                                 bytes, neighbor[0],
                                 foehn_coll_at(recvbuf, (size_t)neighbor[0] * bytes), bytes);
    /* blocks from and from + 1 travel together: the pair that swapped at step 0 */
    int send_from = from[0];
    for (int i = 1; i < n / 2 && rc == FOEHN_OK; i++) {
        int p = i % 2;
        from[p] = (from[p] + step[p] + n) % n;
        rc = foehn_coll_sendrecv(c, neighbor[p], foehn_coll_at(recvbuf, (size_t)send_from * bytes),
                                 2 * bytes, neighbor[p],
                                 foehn_coll_at(recvbuf, (size_t)from[p] * bytes), 2 * bytes);
        send_from = from[p];
    }
    return rc;
}

int foehn_alg_allgather(foehn_coll *c, const void *sendbuf, size_t sendbytes, void *recvbuf,
                        const size_t *counts, const size_t *displs)
{
    int n = c->size;
    size_t total, off, len;
    int rc = foehn_coll_mul(c, sendbytes, (size_t)n, &total);
    if (rc != FOEHN_OK)
        return rc;
    foehn_coll_layout l = {.counts = counts, .displs = displs, .block = sendbytes, .total = total};
    foehn_coll_block(&l, c->rank, &off, &len);
    if (sendbuf != FOEHN_IN_PLACE) {
        if ((rc = own_size(c, sendbytes, len)) != FOEHN_OK)
            return rc;
        foehn_coll_copy(foehn_coll_at(recvbuf, off), sendbuf, len);
    }
    if (!counts && total < ALLGATHER_RING_MIN)
        return bruck(c, recvbuf, sendbytes);
    if (!counts && n % 2 == 0 && n > 2)
        return neighbor_exchange(c, recvbuf, sendbytes);
    return foehn_coll_ring_allgather(c, recvbuf, &l, 0);
}
