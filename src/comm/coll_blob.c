/* Object collectives: every rank's blob has a length of its own, which travels as the
 * message's length (receives of any length, foehn_coll_recv_blob). Empty blobs come
 * back as NULL with length 0. On failure every output is NULL (lengths 0) and nothing
 * is left allocated. */
#include <stdlib.h>
#include <string.h>

#include "comm/coll_impl.h"
#include "common/error.h"

/* A malloc'd copy of len bytes (NULL for none). */
static int dup_blob(foehn_coll *c, const void *in, size_t len, void **out)
{
    *out = NULL;
    if (!len)
        return FOEHN_OK;
    if (!(*out = foehn_coll_alloc(c, len)))
        return FOEHN_ERR_NOMEM;
    memcpy(*out, in, len);
    return FOEHN_OK;
}

/* One array of blobs per rank, all NULL. */
static int blobs_new(foehn_coll *c, void ***outs, size_t **outlens)
{
    size_t n = (size_t)c->size;
    *outs = calloc(n, sizeof **outs);
    *outlens = calloc(n, sizeof **outlens);
    if (*outs && *outlens)
        return FOEHN_OK;
    free(*outs);
    free(*outlens);
    *outs = NULL;
    *outlens = NULL;
    return foehn_fail(c->err, FOEHN_ERR_NOMEM, "%s: out of memory",
                      foehn_coll_kind_name(c->kind));
}

/* Returns rc; on failure frees every blob and both arrays and clears them. */
static int blobs_done(foehn_coll *c, int rc, void ***outs, size_t **outlens)
{
    if (rc == FOEHN_OK || !*outs)
        return rc;
    for (int i = 0; i < c->size; i++)
        free((*outs)[i]);
    free(*outs);
    free(*outlens);
    *outs = NULL;
    *outlens = NULL;
    return rc;
}

/* Sends len bytes of out to `to` while receiving a blob from `from`. */
static int send_and_take(foehn_coll *c, int to, const void *out, size_t len, int from,
                         void **in, size_t *inlen)
{
    foehn_request *req = NULL;
    int rc = foehn_coll_isend(c, to, foehn_coll_at(out, 0), len, &req);
    if (rc == FOEHN_OK)
        rc = foehn_coll_recv_blob(c, from, in, inlen);
    int wrc = foehn_coll_waitall(c, &req, 1);
    return rc != FOEHN_OK ? rc : wrc;
}

int foehn_alg_bcast_blob(foehn_coll *c, const void *in, size_t inlen, int root, void **out,
                         size_t *outlen)
{
    int n = c->size, v = (c->rank - root + n) % n;
    void *data = NULL;
    size_t len = inlen;
    *out = NULL;
    *outlen = 0;
    int rc = v ? foehn_coll_recv_blob(c, foehn_coll_real(v - (v & -v), root, n), &data, &len)
               : dup_blob(c, in, inlen, &data);
    if (rc == FOEHN_OK)
        rc = foehn_coll_tree_send(c, v, root, data, NULL, 0, len);
    if (rc != FOEHN_OK) {
        free(data);
        return rc;
    }
    *out = data;
    *outlen = len;
    return FOEHN_OK;
}

int foehn_alg_gather_blob(foehn_coll *c, const void *in, size_t inlen, int root, void ***outs,
                          size_t **outlens)
{
    *outs = NULL;
    *outlens = NULL;
    if (c->rank != root)
        return foehn_coll_send(c, root, foehn_coll_at(in, 0), inlen);
    int rc = blobs_new(c, outs, outlens);
    if (rc == FOEHN_OK) {
        (*outlens)[root] = inlen;
        rc = dup_blob(c, in, inlen, &(*outs)[root]);
    }
    /* One at a time: what the others send meanwhile waits in the engine. */
    for (int i = 0; i < c->size && rc == FOEHN_OK; i++)
        if (i != root)
            rc = foehn_coll_recv_blob(c, i, &(*outs)[i], &(*outlens)[i]);
    return blobs_done(c, rc, outs, outlens);
}

/* Ring: in step s each rank passes on the blob it got in step s - 1 (its own first). */
int foehn_alg_allgather_blob(foehn_coll *c, const void *in, size_t inlen, void ***outs,
                             size_t **outlens)
{
    int n = c->size, rank = c->rank;
    int rc = blobs_new(c, outs, outlens);
    if (rc == FOEHN_OK) {
        (*outlens)[rank] = inlen;
        rc = dup_blob(c, in, inlen, &(*outs)[rank]);
    }
    for (int s = 0; s < n - 1 && rc == FOEHN_OK; s++) {
        int sb = (rank - s + n) % n, rb = (rank - s - 1 + n) % n;
        rc = send_and_take(c, (rank + 1) % n, (*outs)[sb], (*outlens)[sb], (rank - 1 + n) % n,
                           &(*outs)[rb], &(*outlens)[rb]);
    }
    return blobs_done(c, rc, outs, outlens);
}

int foehn_alg_scatter_blob(foehn_coll *c, const void *const *ins, const size_t *inlens,
                           int root, void **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (c->rank != root)
        return foehn_coll_recv_blob(c, root, out, outlen);
    int n = c->size;
    foehn_request **reqs = foehn_coll_alloc(c, (size_t)n * sizeof *reqs);
    if (!reqs)
        return FOEHN_ERR_NOMEM;
    int rc = FOEHN_OK;
    for (int i = 0; i < n; i++) {
        reqs[i] = NULL;
        if (i != root && rc == FOEHN_OK)
            rc = foehn_coll_isend(c, i, foehn_coll_at(ins[i], 0), inlens[i], &reqs[i]);
    }
    int wrc = foehn_coll_waitall(c, reqs, (size_t)n);
    free(reqs);
    rc = rc != FOEHN_OK ? rc : wrc;
    if (rc == FOEHN_OK && (rc = dup_blob(c, ins[root], inlens[root], out)) == FOEHN_OK)
        *outlen = inlens[root];
    return rc;
}

/* Pairwise: in step s, to rank + s and from rank - s. */
int foehn_alg_alltoall_blob(foehn_coll *c, const void *const *ins, const size_t *inlens,
                            void ***outs, size_t **outlens)
{
    int n = c->size, rank = c->rank;
    int rc = blobs_new(c, outs, outlens);
    if (rc == FOEHN_OK) {
        (*outlens)[rank] = inlens[rank];
        rc = dup_blob(c, ins[rank], inlens[rank], &(*outs)[rank]);
    }
    for (int s = 1; s < n && rc == FOEHN_OK; s++) {
        int to = (rank + s) % n, from = (rank - s + n) % n;
        rc = send_and_take(c, to, ins[to], inlens[to], from, &(*outs)[from], &(*outlens)[from]);
    }
    return blobs_done(c, rc, outs, outlens);
}
