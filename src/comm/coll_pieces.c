/* Alltoall of objects in pieces (foehn_alltoall_pieces): each object a list of
 * pieces (a pickle and the buffers it refers to out of band) that travel from where
 * they lie, so that a large array is never copied into one blob first.
 *
 * To each peer: a table, then one message per piece not in the table.
 *   table: count (u64) | length of each piece (u64 each) | piece 0 when it is small
 * Piece 0 (the pickle) rides in the table when it is at most INLINE_MAX bytes, the
 * common case; the flag in the count's top bit says so. Messages from one peer
 * arrive in order, so the pieces follow their table. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm/coll_impl.h"
#include "comm/wire.h"
#include "common/error.h"

#define INLINE_MAX 4096
#define INLINE_FLAG ((uint64_t)1 << 63)
/* More pieces than this in one object is not something a pickle makes. */
#define PIECES_MAX (1u << 20)

static void put64(unsigned char *p, uint64_t v)
{
    foehn_wire_put32(p, (uint32_t)(v >> 32));
    foehn_wire_put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)foehn_wire_get32(p) << 32 | foehn_wire_get32(p + 4);
}

void foehn_pieces_free(foehn_pieces *objs, size_t count)
{
    for (size_t i = 0; objs && i < count; i++) {
        for (size_t k = 0; objs[i].data && k < objs[i].n; k++)
            free((void *)objs[i].data[k]);
        free((void *)objs[i].data);
        free(objs[i].lens);
    }
    free(objs);
}

/* An object with n pieces, all NULL. */
static int pieces_new(foehn_coll *c, foehn_pieces *o, size_t n)
{
    o->n = n;
    o->data = calloc(n ? n : 1, sizeof *o->data);
    o->lens = calloc(n ? n : 1, sizeof *o->lens);
    if (o->data && o->lens)
        return FOEHN_OK;
    return foehn_fail(c->err, FOEHN_ERR_NOMEM, "%s: out of memory",
                      foehn_coll_kind_name(c->kind));
}

/* This rank's own object: a copy of every piece. */
static int pieces_dup(foehn_coll *c, const foehn_pieces *in, foehn_pieces *out)
{
    int rc = pieces_new(c, out, in->n);
    for (size_t k = 0; rc == FOEHN_OK && k < in->n; k++) {
        out->lens[k] = in->lens[k];
        if (!in->lens[k])
            continue;
        void *p = foehn_coll_alloc(c, in->lens[k]);
        if (!p)
            return FOEHN_ERR_NOMEM;
        memcpy(p, in->data[k], in->lens[k]);
        out->data[k] = p;
    }
    return rc;
}

/* Starts the table and every piece to `to`; *table and reqs (in->n + 1) are the
 * caller's to wait for and free. */
static int send_pieces(foehn_coll *c, int to, const foehn_pieces *in, unsigned char **table,
                       foehn_request **reqs)
{
    size_t n = in->n;
    int inline0 = n && in->lens[0] <= INLINE_MAX;
    size_t tlen = 8 * (1 + n) + (inline0 ? in->lens[0] : 0);
    if (n > PIECES_MAX)
        return foehn_fail(c->err, FOEHN_ERR_LIMIT, "%s: an object of %zu pieces (at most %u)",
                          foehn_coll_kind_name(c->kind), n, PIECES_MAX);
    if (!(*table = foehn_coll_alloc(c, tlen)))
        return FOEHN_ERR_NOMEM;
    put64(*table, (uint64_t)n | (inline0 ? INLINE_FLAG : 0));
    for (size_t k = 0; k < n; k++)
        put64(*table + 8 * (1 + k), in->lens[k]);
    if (inline0 && in->lens[0])
        memcpy(*table + 8 * (1 + n), in->data[0], in->lens[0]);
    int rc = foehn_coll_isend(c, to, *table, tlen, &reqs[0]);
    for (size_t k = inline0 ? 1 : 0; k < n && rc == FOEHN_OK; k++)
        rc = foehn_coll_isend(c, to, foehn_coll_at(in->data[k], 0), in->lens[k], &reqs[1 + k]);
    return rc;
}

/* Receives the table (that of treq when it is not NULL: an allocating receive already
 * posted) and every piece from `from` into out. */
static int recv_pieces(foehn_coll *c, int from, foehn_request *treq, foehn_pieces *out)
{
    void *tv = NULL;
    size_t tlen = 0;
    int rc = treq ? foehn_coll_wait_take(c, treq, &tv, &tlen)
                  : foehn_coll_recv_blob(c, from, &tv, &tlen);
    if (rc != FOEHN_OK)
        return rc;
    unsigned char *t = tv;
    uint64_t head = tlen >= 8 ? get64(t) : 0;
    size_t n = (size_t)(head & ~INLINE_FLAG);
    int inline0 = (head & INLINE_FLAG) != 0;
    size_t inline_len = n && tlen >= 16 ? (size_t)get64(t + 8) : 0;
    if (tlen < 8 || n > PIECES_MAX || tlen != 8 * (1 + n) + (inline0 ? inline_len : 0) ||
        (inline0 && (!n || inline_len > INLINE_MAX))) {
        free(tv);
        return foehn_fail(c->err, FOEHN_ERR_PROTOCOL, "%s on rank %d: rank %d sent a malformed "
                          "table of pieces (%zu bytes)", foehn_coll_kind_name(c->kind), c->rank,
                          from, tlen);
    }
    rc = pieces_new(c, out, n);
    for (size_t k = 0; rc == FOEHN_OK && k < n; k++)
        out->lens[k] = (size_t)get64(t + 8 * (1 + k));
    if (rc == FOEHN_OK && inline0 && inline_len) {
        void *p = foehn_coll_alloc(c, inline_len);
        if (p)
            memcpy(p, t + 8 * (1 + n), inline_len);
        out->data[0] = p;
        rc = p ? FOEHN_OK : FOEHN_ERR_NOMEM;
    }
    free(tv);
    for (size_t k = inline0 ? 1 : 0; k < n && rc == FOEHN_OK; k++) {
        void *p = NULL;
        size_t len = 0;
        rc = foehn_coll_recv_blob(c, from, &p, &len);
        out->data[k] = p;
        if (rc == FOEHN_OK && len != out->lens[k])
            rc = foehn_fail(c->err, FOEHN_ERR_PROTOCOL, "%s on rank %d: piece %zu from rank %d "
                            "has %zu bytes, its table said %zu", foehn_coll_kind_name(c->kind),
                            c->rank, k, from, len, out->lens[k]);
    }
    return rc;
}

static size_t pieces_bytes(const foehn_pieces *o)
{
    size_t sum = 0;
    for (size_t k = 0; k < o->n; k++)
        sum = sum + o->lens[k] < sum ? SIZE_MAX : sum + o->lens[k];
    return sum;
}

/* What this rank sends to the others, in bytes (SIZE_MAX when it overflows), and in
 * how many messages. */
static size_t bytes_out(const foehn_coll *c, const foehn_pieces *ins, size_t *messages)
{
    size_t sent = 0;
    *messages = 0;
    for (int j = 0; j < c->size; j++) {
        if (j == c->rank)
            continue;
        size_t b = pieces_bytes(&ins[j]);
        sent = sent + b < sent ? SIZE_MAX : sent + b;
        *messages += ins[j].n + 1;
    }
    return sent;
}

/* A burst alltoall between its start and its finish. */
struct foehn_pieces_flight {
    foehn_pieces *outs;         /* calloc'd, size entries */
    foehn_request **sreqs;      /* every table and piece sent */
    foehn_request **treqs;      /* each peer's table, received */
    unsigned char **tables;     /* the tables sent */
    size_t at;                  /* sends posted */
    int rc;                     /* the first failure of the start */
};

static foehn_pieces_flight *flight_new(foehn_coll *c, size_t sends)
{
    size_t n = (size_t)c->size;
    foehn_pieces_flight *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->outs = calloc(n, sizeof *f->outs);
    f->sreqs = calloc(sends + 1, sizeof *f->sreqs);
    f->treqs = calloc(n, sizeof *f->treqs);
    f->tables = calloc(n, sizeof *f->tables);
    if (f->outs && f->sreqs && f->treqs && f->tables)
        return f;
    free(f->outs);
    free(f->sreqs);
    free(f->treqs);
    free(f->tables);
    free(f);
    return NULL;
}

bool foehn_alg_alltoall_pieces_bursts(foehn_coll *c, const foehn_pieces *ins)
{
    size_t messages;
    return bytes_out(c, ins, &messages) <= FOEHN_ALLTOALL_BURST_MAX;
}

int foehn_alg_alltoall_pieces_start(foehn_coll *c, const foehn_pieces *ins,
                                    foehn_pieces_flight **flight)
{
    size_t sends;
    bytes_out(c, ins, &sends);
    foehn_pieces_flight *f = *flight = flight_new(c, sends);
    if (!f)
        return foehn_fail(c->err, FOEHN_ERR_NOMEM, "%s: out of memory",
                          foehn_coll_kind_name(c->kind));
    int n = c->size, rank = c->rank;
    int rc = pieces_dup(c, &ins[rank], &f->outs[rank]);
    for (int s = 1; s < n && rc == FOEHN_OK; s++) {
        int to = (rank + s) % n, from = (rank - s + n) % n;
        rc = send_pieces(c, to, &ins[to], &f->tables[to], f->sreqs + f->at);
        f->at += ins[to].n + 1;
        if (rc == FOEHN_OK)
            rc = foehn_coll_irecv(c, from, NULL, 0, &f->treqs[from]);
    }
    f->rc = rc;
    return rc;
}

int foehn_alg_alltoall_pieces_finish(foehn_coll *c, foehn_pieces_flight *f, foehn_pieces **outs)
{
    int n = c->size, rank = c->rank;
    int rc = f ? f->rc : FOEHN_ERR_NOMEM;
    *outs = NULL;
    for (int s = 1; f && s < n; s++) {
        int from = (rank - s + n) % n;
        foehn_request *treq = f->treqs[from];
        f->treqs[from] = NULL;
        if (rc == FOEHN_OK && treq)
            rc = recv_pieces(c, from, treq, &f->outs[from]);
        else if (treq)
            foehn_coll_waitall(c, &treq, 1); /* after a failure: let it end, and free it */
    }
    if (f) {
        int wrc = foehn_coll_waitall(c, f->sreqs, f->at);
        rc = rc != FOEHN_OK ? rc : wrc;
        for (int j = 0; j < n; j++)
            free(f->tables[j]);
        free(f->tables);
        free(f->treqs);
        free(f->sreqs);
        *outs = f->outs;
        free(f);
    }
    if (rc != FOEHN_OK) {
        foehn_pieces_free(*outs, (size_t)n);
        *outs = NULL;
    }
    return rc;
}

/* Big objects: pairwise, in step s to rank + s and from rank - s, one object in
 * flight each way, so that n ranks do not flood each other's memory at once. */
static int alltoall_pairwise(foehn_coll *c, const foehn_pieces *ins, foehn_pieces **outs)
{
    int n = c->size, rank = c->rank;
    size_t most = 0;
    for (int j = 0; j < n; j++)
        most = ins[j].n + 1 > most ? ins[j].n + 1 : most;
    *outs = calloc((size_t)n, sizeof **outs);
    foehn_request **sreqs = calloc(most, sizeof *sreqs);
    unsigned char *table = NULL;
    int rc = *outs && sreqs ? pieces_dup(c, &ins[rank], &(*outs)[rank])
                            : foehn_fail(c->err, FOEHN_ERR_NOMEM, "%s: out of memory",
                                         foehn_coll_kind_name(c->kind));
    for (int s = 1; s < n && rc == FOEHN_OK; s++) {
        int to = (rank + s) % n, from = (rank - s + n) % n;
        rc = send_pieces(c, to, &ins[to], &table, sreqs);
        if (rc == FOEHN_OK)
            rc = recv_pieces(c, from, NULL, &(*outs)[from]);
        int wrc = foehn_coll_waitall(c, sreqs, ins[to].n + 1);
        rc = rc != FOEHN_OK ? rc : wrc;
        free(table);
        table = NULL;
    }
    free(table);
    free(sreqs);
    if (rc != FOEHN_OK) {
        foehn_pieces_free(*outs, (size_t)n);
        *outs = NULL;
    }
    return rc;
}

/* Small objects (FOEHN_ALLTOALL_BURST_MAX in all from this rank): every table and
 * piece out, every table's receive posted, at once; one round of latency. The pieces
 * from a peer follow its table, so their receives are posted once it is in. Big
 * ones: pairwise. Whether to burst is this rank's own choice: the messages are the
 * same either way. */
int foehn_alg_alltoall_pieces(foehn_coll *c, const foehn_pieces *ins, foehn_pieces **outs)
{
    if (!foehn_alg_alltoall_pieces_bursts(c, ins))
        return alltoall_pairwise(c, ins, outs);
    foehn_pieces_flight *f = NULL;
    foehn_alg_alltoall_pieces_start(c, ins, &f);
    return foehn_alg_alltoall_pieces_finish(c, f, outs);
}
