/* Alltoall and alltoallv: every rank exchanges one block with every other. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm/coll_impl.h"
#include "common/error.h"


/* How many bytes of buf the layout's blocks reach. */
static int extent(foehn_coll *c, const foehn_coll_layout *l, size_t *out)
{
    *out = l->counts ? 0 : l->total;
    for (int i = 0; l->counts && i < c->size; i++) {
        if (l->counts[i] > SIZE_MAX - l->displs[i])
            return foehn_fail(c->err, FOEHN_ERR_LIMIT,
                              "%s: block %d (%zu bytes at %zu) ends past the address space",
                              foehn_coll_kind_name(c->kind), i, l->counts[i], l->displs[i]);
        size_t end = l->displs[i] + l->counts[i];
        *out = end > *out ? end : *out;
    }
    return FOEHN_OK;
}

static int exchange(foehn_coll *c, const unsigned char *src, const foehn_coll_layout *sl,
                    unsigned char *dst, const foehn_coll_layout *rl)
{
    int n = c->size, rank = c->rank;
    size_t soff, slen, roff, rlen, sent = 0;
    foehn_coll_block(sl, rank, &soff, &slen);
    foehn_coll_block(rl, rank, &roff, &rlen);
    if (slen != rlen)
        return foehn_fail(c->err, FOEHN_ERR_MISMATCH,
                          "%s: rank %d sends itself %zu bytes but expects %zu from itself",
                          foehn_coll_kind_name(c->kind), rank, slen, rlen);
    size_t self_off = roff, self_src = soff, self_len = slen;
    for (int i = 0; i < n; i++) {
        foehn_coll_block(sl, i, &soff, &slen);
        if (i != rank)
            sent = sent + slen < sent ? SIZE_MAX : sent + slen;
    }
    int burst = sent <= FOEHN_ALLTOALL_BURST_MAX;
    foehn_request **reqs = foehn_coll_alloc(c, 2 * (size_t)n * sizeof *reqs);
    if (!reqs)
        return FOEHN_ERR_NOMEM;
    int rc = FOEHN_OK;
    size_t nreq = 0;
    for (int s = 1; s < n && rc == FOEHN_OK; s++) {
        int to = (rank + s) % n, from = (rank - s + n) % n;
        foehn_coll_block(rl, from, &roff, &rlen);
        foehn_coll_block(sl, to, &soff, &slen);
        reqs[nreq] = reqs[nreq + 1] = NULL;
        rc = foehn_coll_irecv(c, from, foehn_coll_at(dst, roff), rlen, &reqs[nreq]);
        if (rc == FOEHN_OK)
            rc = foehn_coll_isend(c, to, foehn_coll_at(src, soff), slen, &reqs[nreq + 1]);
        nreq += 2;
        if (s == 1) /* this rank's own block while the first exchange is under way */
            foehn_coll_copy(foehn_coll_at(dst, self_off), foehn_coll_at(src, self_src),
                            self_len);
        if (!burst) {
            int wrc = foehn_coll_waitall(c, reqs + nreq - 2, 2);
            rc = rc != FOEHN_OK ? rc : wrc;
        }
    }
    if (n == 1)
        foehn_coll_copy(foehn_coll_at(dst, self_off), foehn_coll_at(src, self_src), self_len);
    int wrc = foehn_coll_waitall(c, reqs, nreq);
    free(reqs);
    return rc != FOEHN_OK ? rc : wrc;
}

int foehn_alg_alltoall(foehn_coll *c, const void *sendbuf, const size_t *scounts,
                       const size_t *sdispls, void *recvbuf, const size_t *rcounts,
                       const size_t *rdispls, size_t bytes)
{
    size_t total, size;
    int rc = foehn_coll_mul(c, bytes, (size_t)c->size, &total);
    if (rc != FOEHN_OK)
        return rc;
    foehn_coll_layout sl = {.counts = scounts, .displs = sdispls, .block = bytes, .total = total};
    foehn_coll_layout rl = {.counts = rcounts, .displs = rdispls, .block = bytes, .total = total};
    if (sendbuf != FOEHN_IN_PLACE)
        return exchange(c, sendbuf, &sl, recvbuf, &rl);
    /* In place: what goes out is a copy of recvbuf, laid out as what comes in. */
    if ((rc = extent(c, &rl, &size)) != FOEHN_OK)
        return rc;
    unsigned char *copy = foehn_coll_alloc(c, size);
    if (!copy)
        return FOEHN_ERR_NOMEM;
    foehn_coll_copy(copy, recvbuf, size);
    rc = exchange(c, copy, &rl, recvbuf, &rl);
    free(copy);
    return rc;
}
