/* Barrier and broadcast, and the helpers every algorithm shares. */
#include <stdint.h>
#include <stdlib.h>

#include "comm/coll_impl.h"
#include "common/error.h"

/* Broadcasts of at least this many bytes (on more than two ranks) scatter the buffer
 * down a binomial tree and finish with a ring allgather (van de Geijn): every link
 * then carries about 2 * bytes instead of the root sending bytes * log2(n). Below it
 * the tree's log2(n) latency wins; 512 KiB is where MPICH switches too. Not on one
 * host: there are no links, only memory, and the tree copies each byte n - 1 times
 * where scatter and ring copy it about 2(n - 1) times in more rounds (4 ranks on 2
 * cores: 1 MiB 1.4 -> 3.1-4.0 GB/s, 64 MiB 3.8-4.3 -> 5.4-5.6). */
#define BCAST_SCATTER_MIN ((size_t)512 * 1024)

unsigned char foehn_coll_dummy[1];

int foehn_coll_mul(foehn_coll *c, size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return foehn_fail(c->err, FOEHN_ERR_LIMIT,
                          "%s: %zu x %zu bytes do not fit in memory's address space",
                          foehn_coll_kind_name(c->kind), a, b);
    *out = a * b;
    return FOEHN_OK;
}

void *foehn_coll_alloc(foehn_coll *c, size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        foehn_fail(c->err, FOEHN_ERR_NOMEM, "%s: out of memory for %zu bytes",
                   foehn_coll_kind_name(c->kind), n);
    return p;
}

/* Dissemination: in round k every rank signals rank + 2^k and hears from rank - 2^k;
 * after ceil(log2 n) rounds everyone has (transitively) heard from everyone. */
int foehn_alg_barrier(foehn_coll *c)
{
    int n = c->size, r = c->rank;
    for (int k = 1; k < n; k <<= 1) {
        int rc = foehn_coll_sendrecv(c, (r + k) % n, foehn_coll_dummy, 0, (r - k + n) % n,
                                     foehn_coll_dummy, 0);
        if (rc != FOEHN_OK)
            return rc;
    }
    return FOEHN_OK;
}

int foehn_coll_ring_allgather(foehn_coll *c, unsigned char *buf, const foehn_coll_layout *l,
                              int shift)
{
    int n = c->size;
    int pos = (c->rank - shift + n) % n;
    int right = (c->rank + 1) % n, left = (c->rank - 1 + n) % n;
    for (int s = 0; s < n - 1; s++) {
        size_t soff, slen, roff, rlen;
        foehn_coll_block(l, (pos - s + n) % n, &soff, &slen);
        foehn_coll_block(l, (pos - s - 1 + 2 * n) % n, &roff, &rlen);
        int rc = foehn_coll_sendrecv(c, right, foehn_coll_at(buf, soff), slen, left,
                                     foehn_coll_at(buf, roff), rlen);
        if (rc != FOEHN_OK)
            return rc;
    }
    return FOEHN_OK;
}

int foehn_coll_tree_send(foehn_coll *c, int v, int root, const unsigned char *buf,
                         const foehn_coll_layout *l, int base, size_t whole)
{
    int n = c->size, rc = FOEHN_OK;
    int span = foehn_coll_span(v, n);
    int top = 1;
    while (top < span - top) /* the largest power of two below span */
        top *= 2;
    foehn_request *reqs[sizeof(int) * 8] = {NULL};
    size_t nreq = 0;
    for (int m = top; m >= 1 && rc == FOEHN_OK; m >>= 1) {
        int child = v + m;
        if (m >= span || child >= n)
            continue;
        size_t off = 0, len = whole;
        if (l)
            foehn_coll_range(l, child - base, child - base + foehn_coll_subtree(child, n), &off,
                             &len);
        rc = foehn_coll_isend(c, foehn_coll_real(child, root, n), foehn_coll_at(buf, off), len,
                              &reqs[nreq++]);
    }
    int wrc = foehn_coll_waitall(c, reqs, nreq);
    return rc != FOEHN_OK ? rc : wrc;
}

/* Receives v's part from its parent: l as above, or the whole buffer. */
static int recv_from_parent(foehn_coll *c, int v, int root, unsigned char *buf,
                            const foehn_coll_layout *l, int base, size_t whole)
{
    if (!v)
        return FOEHN_OK;
    int n = c->size;
    size_t off = 0, len = whole;
    if (l)
        foehn_coll_range(l, v - base, v - base + foehn_coll_subtree(v, n), &off, &len);
    return foehn_coll_recv(c, foehn_coll_real(v - (v & -v), root, n), foehn_coll_at(buf, off),
                           len);
}

int foehn_coll_tree_scatter(foehn_coll *c, int root, unsigned char *buf,
                            const foehn_coll_layout *l, int base)
{
    int n = c->size;
    int v = (c->rank - root + n) % n;
    int rc = recv_from_parent(c, v, root, buf, l, base, 0);
    return rc != FOEHN_OK ? rc : foehn_coll_tree_send(c, v, root, buf, l, base, 0);
}

int foehn_alg_bcast(foehn_coll *c, void *buf, size_t bytes, int root)
{
    int n = c->size;
    if (n == 1)
        return FOEHN_OK;
    if (bytes < BCAST_SCATTER_MIN || n <= 2 || c->one_host) {
        int v = (c->rank - root + n) % n;
        int rc = recv_from_parent(c, v, root, buf, NULL, 0, bytes);
        return rc != FOEHN_OK ? rc : foehn_coll_tree_send(c, v, root, buf, NULL, 0, bytes);
    }
    /* n chunks of ceil(bytes / n) (the last ones short or empty), in virtual-rank
     * order: scatter them down the tree, then ring them around. */
    foehn_coll_layout chunks = foehn_coll_uniform(bytes / (size_t)n + (bytes % (size_t)n != 0),
                                                  bytes);
    int rc = foehn_coll_tree_scatter(c, root, buf, &chunks, 0);
    return rc != FOEHN_OK ? rc : foehn_coll_ring_allgather(c, buf, &chunks, root);
}
