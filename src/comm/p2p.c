/* Point to point: sending (the caller writes what the socket takes, the progress
 * thread the rest), matching arrived messages against posted receives, and the
 * public send/receive/probe calls. Everything here runs under the engine's lock. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <stdint.h>

#include "comm/coll.h"
#include "comm/engine.h"
#include "comm/shm.h"
#include "common/clock.h"
#include "common/error.h"

/* Messages this long to a peer on the same host go by single copy (RTS, see
 * wire.h): below it, one TCP write is cheaper than the RTS-copy-ACK round. */
#define FOEHN_SINGLE_COPY_MIN (64 * 1024)

/* ---- matching ------------------------------------------------------------- */

static bool matches(uint32_t ctx, int src, int tag, uint32_t mctx, int msrc, int mtag)
{
    return ctx == mctx && (src == FOEHN_ANY_SOURCE || src == msrc) &&
           (tag == FOEHN_ANY_TAG || tag == mtag);
}

static void posted_unlink(foehn_engine *e, foehn_request *r)
{
    if (r->prev_posted)
        r->prev_posted->next_posted = r->next_posted;
    else
        e->posted_head = r->next_posted;
    if (r->next_posted)
        r->next_posted->prev_posted = r->prev_posted;
    else
        e->posted_tail = r->prev_posted;
    r->next_posted = r->prev_posted = NULL;
}

static void unexpected_unlink(foehn_engine *e, foehn_msg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        e->unexpected_head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        e->unexpected_tail = m->prev;
    m->next = m->prev = NULL;
}

/* Why message (kind, len) cannot satisfy receive r, or NULL when it can. A
 * collective's receive wants the same collective and exactly the expected length. */
static int refuse(foehn_engine *e, const foehn_request *r, int src, uint32_t kind, size_t len,
                  char *why, size_t whylen)
{
    if (r->kind != kind) {
        snprintf(why, whylen,
                 "collective mismatch: rank %d (host %s) called %s as collective number %d on "
                 "this communicator, where this rank (%d) called %s",
                 r->comm->rank_of[src], foehn_engine_host(e, src), foehn_coll_kind_name((int)kind),
                 r->tag, r->comm->rank, foehn_coll_kind_name((int)r->kind));
        return FOEHN_ERR_MISMATCH;
    }
    if (r->exact && len != r->cap) {
        snprintf(why, whylen,
                 "size mismatch in %s (collective number %d): rank %d sent %zu bytes where this "
                 "rank (%d) expected %zu; do all ranks pass buffers of the same size and type?",
                 foehn_coll_kind_name((int)kind), r->tag, r->comm->rank_of[src], len,
                 r->comm->rank, r->cap);
        return FOEHN_ERR_MISMATCH;
    }
    if (!r->allocate && len > r->cap) {
        snprintf(why, whylen,
                 "message truncated: rank %d sent %zu bytes (tag %d) to a receive buffer of %zu "
                 "bytes on rank %d",
                 r->comm->rank_of[src], len, r->tag == FOEHN_ANY_TAG ? -1 : r->tag, r->cap,
                 r->comm->rank);
        return FOEHN_ERR_TRUNCATE;
    }
    return FOEHN_OK;
}

static void set_status(foehn_request *r, int src, int tag, size_t len)
{
    r->status.source = r->comm->rank_of[src];
    r->status.tag = tag;
    r->status.bytes = len;
}

static int pull_deferred(foehn_engine *e, foehn_msg *m, unsigned char *dst, char *why,
                         size_t whylen);
static void ack(foehn_engine *e, const foehn_msg *m);

/* Hands a complete unexpected message to receive r (or fails r) and frees it. */
static void deliver(foehn_engine *e, foehn_request *r, foehn_msg *m)
{
    char why[512];
    set_status(r, m->src, m->tag, m->len);
    int rc = refuse(e, r, m->src, m->kind, m->len, why, sizeof why);
    if (rc == FOEHN_OK && m->rts) {
        /* still in the sender: straight into the receive */
        unsigned char *dst = r->allocate && m->len ? malloc(m->len) : r->buf;
        if (!dst && m->len)
            rc = FOEHN_ERR_NOMEM, snprintf(why, sizeof why, "out of memory for a message");
        else
            rc = pull_deferred(e, m, dst, why, sizeof why);
        if (r->allocate && rc == FOEHN_OK)
            r->taken = dst;
        else if (r->allocate)
            free(dst);
    } else if (rc == FOEHN_OK) {
        if (r->allocate) {
            r->taken = m->data;
            m->data = NULL;
        } else if (m->len) {
            memcpy(r->buf, m->data, m->len);
        }
    }
    if (m->rts) { /* refused (or no memory): the sender's send still completes */
        m->rts = false;
        e->deferred--;
        ack(e, m);
    }
    free(m->data);
    free(m);
    foehn_request_complete(e, r, rc, rc == FOEHN_OK ? NULL : why);
}

/* defer: an RTS, whose payload stays in the sender unless a receive is posted. */
static void arrived(foehn_engine *e, int src, const foehn_wire_header *h, bool defer)
{
    foehn_peer *p = &e->peers[src];
    size_t len = (size_t)h->len;
    int tag = (int)h->tag;
    p->in_payload = true;
    p->dst = NULL;
    p->dst_len = p->dst_got = p->discard_left = 0;
    p->msg = NULL;
    p->req = NULL;
    for (foehn_request *r = e->posted_head; r; r = r->next_posted) {
        if (!matches(r->ctx, r->src, r->tag, h->ctx, src, tag))
            continue;
        posted_unlink(e, r);
        r->matched = true;
        char why[512];
        set_status(r, src, tag, len);
        int rc = refuse(e, r, src, h->kind, len, why, sizeof why);
        if (rc == FOEHN_OK && r->allocate && len && !(r->taken = malloc(len)))
            rc = FOEHN_ERR_NOMEM, snprintf(why, sizeof why, "out of memory for a message");
        if (rc != FOEHN_OK) {
            foehn_request_complete(e, r, rc, why);
            foehn_request_unref(e, r); /* the posted list's hold */
            p->discard_left = len;
        } else if (r->allocate) {
            {
                p->req = r;
                p->dst = r->taken;
                p->dst_len = len;
            }
        } else {
            p->req = r;
            p->dst = r->buf;
            p->dst_len = len;
        }
        return;
    }
    foehn_msg *m = calloc(1, sizeof *m);
    unsigned char *data = len && !defer ? malloc(len) : NULL;
    if (!m || (len && !defer && !data)) {
        free(m);
        free(data);
        foehn_engine_fail(e, FOEHN_ERR_NOMEM,
                          "out of memory for a message of %zu bytes from rank %d", len, src);
        p->discard_left = len;
        return;
    }
    *m = (foehn_msg){.ctx = h->ctx, .kind = h->kind, .src = src, .tag = tag, .len = len,
                     .data = data, .prev = e->unexpected_tail};
    if (e->unexpected_tail)
        e->unexpected_tail->next = m;
    else
        e->unexpected_head = m;
    e->unexpected_tail = m;
    p->msg = m;
    p->dst = data;
    p->dst_len = len;
    /* A prober may be waiting for exactly this header. */
    pthread_cond_broadcast(&e->done_cv);
}

void foehn_p2p_arrived(foehn_engine *e, int src, const foehn_wire_header *h)
{
    arrived(e, src, h, false);
}

/* Unexpected message m has all its payload now: the receive that claimed it while
 * it streamed in gets it, or a prober may be waiting for it. */
static void msg_whole(foehn_engine *e, foehn_msg *m)
{
    m->complete = true;
    foehn_request *waiter = m->waiter;
    if (waiter) {
        deliver(e, waiter, m);
        foehn_request_unref(e, waiter);
    } else {
        pthread_cond_broadcast(&e->done_cv);
    }
}

void foehn_p2p_payload_done(foehn_engine *e, foehn_peer *p)
{
    p->in_payload = false;
    if (p->req) {
        foehn_request_complete(e, p->req, FOEHN_OK, NULL);
        foehn_request_unref(e, p->req); /* the posted list's hold */
    } else if (p->msg) {
        msg_whole(e, p->msg);
    }
    p->req = NULL;
    p->msg = NULL;
    p->dst = NULL;
}

/* ---- sending -------------------------------------------------------------- */

void foehn_p2p_flush(foehn_engine *e, int dest)
{
    foehn_peer *p = &e->peers[dest];
    while (p->send_head && !p->gone) {
        foehn_request *r = p->send_head;
        struct iovec iov[2];
        int n = 0;
        size_t total = FOEHN_WIRE_HEADER + r->wire_len;
        if (r->sent < FOEHN_WIRE_HEADER)
            iov[n++] = (struct iovec){r->header + r->sent, FOEHN_WIRE_HEADER - r->sent};
        size_t off = r->sent > FOEHN_WIRE_HEADER ? r->sent - FOEHN_WIRE_HEADER : 0;
        if (r->wire_len > off)
            iov[n++] = (struct iovec){(void *)(r->wire + off), r->wire_len - off};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t put = sendmsg(p->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            foehn_engine_wake(e); /* the progress thread waits for room */
            return;
        }
        if (put < 0) {
            /* The reading side notices too; this names the cause if it has not yet. */
            p->gone = true;
            foehn_engine_fail(e, FOEHN_ERR_PEER,
                              "rank %d (host %s) died: sending to it failed (%s); this rank (%d) "
                              "stops communicating",
                              dest, foehn_engine_host(e, dest), strerror(errno), e->rank);
            return;
        }
        r->sent += (size_t)put;
        if (r->sent < total)
            continue;
        p->send_head = r->next_send;
        if (!p->send_head)
            p->send_tail = NULL;
        r->next_send = NULL;
        if (r->rts) { /* the receiver copies it out of this buffer: wait for its ACK */
            r->next_send = p->acks;
            p->acks = r;
            continue;
        }
        r->written = true;
        if (!r->hold)
            foehn_request_complete(e, r, FOEHN_OK, NULL);
        foehn_request_unref(e, r); /* the queue's hold */
    }
}

static void enqueue(foehn_engine *e, int dest, foehn_request *r)
{
    foehn_peer *p = &e->peers[dest];
    bool idle = p->send_head == NULL;
    if (p->send_tail)
        p->send_tail->next_send = r;
    else
        p->send_head = r;
    p->send_tail = r;
    if (idle)
        foehn_p2p_flush(e, dest);
}

/* A frame of the engine's own, header only (ACK, SEG), queued to dest: the queue holds
 * its only reference. false when out of memory. */
static bool send_frame(foehn_engine *e, int dest, const foehn_wire_header *h)
{
    foehn_request *r = foehn_request_new(e->world, REQ_SEND);
    if (!r)
        return false;
    r->dest = dest;
    foehn_wire_encode(r->header, h);
    enqueue(e, dest, r);
    return true;
}

static void send_control(foehn_engine *e, int dest, uint32_t type, uint32_t tag)
{
    if (!send_frame(e, dest, &(foehn_wire_header){.type = type, .tag = tag}))
        foehn_engine_fail(e, FOEHN_ERR_NOMEM, "out of memory for a control frame");
}

/* The staging segment for messages to dest, made (and announced: SEG, ahead of the
 * RTS that first uses it) on first use; NULL when none can be had. */
static foehn_shm_out *staging_for(foehn_engine *e, int dest)
{
    foehn_peer *p = &e->peers[dest];
    if (p->shm_out || p->shm_out_failed)
        return p->shm_out;
    foehn_shm_out *out = foehn_shm_out_new();
    int fd = -1;
    uint64_t base = 0;
    size_t size = 0;
    if (out)
        foehn_shm_out_describe(out, &fd, &base, &size);
    if (!out || !send_frame(e, dest, &(foehn_wire_header){.type = FOEHN_FRAME_SEG,
                                                         .tag = (uint32_t)fd,
                                                         .kind = (uint32_t)(size >> 12),
                                                         .len = base})) {
        foehn_shm_out_free(out);
        p->shm_out_failed = true;
        return NULL;
    }
    return p->shm_out = out;
}

/* A sender fills a staged part within microseconds of its RTS; one that adds nothing
 * for this long is gone (killed while it copied). */
#define SHM_STALL_S 5.0

/* Copies len bytes at addr in peer p's memory into dst: out of its staging segment
 * when they lie there, else with one process_vm_readv (no socket either way). */
static int pull(const foehn_peer *p, unsigned char *dst, uint64_t addr, size_t len)
{
    int staged = foehn_shm_read(p->shm_in, dst, addr, len, SHM_STALL_S);
    if (staged == FOEHN_SHM_COPIED)
        return 0;
    if (staged == FOEHN_SHM_STALLED) {
        errno = ETIMEDOUT;
        return -1;
    }
    int pid = p->pid;
    size_t done = 0;
    while (done < len) {
        struct iovec local = {dst + done, len - done};
        struct iovec remote = {(void *)(uintptr_t)(addr + done), len - done};
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* pull() without e->mu: the peer's socket is left alone meanwhile (peer->pulling),
 * and the progress thread is told when it may watch that socket again. Returns 0 or
 * -1 with errno set. */
static int pull_unlocked(foehn_engine *e, int src, unsigned char *dst, uint64_t addr,
                         size_t len)
{
    foehn_peer *p = &e->peers[src];
    p->pulling = true;
    pthread_mutex_unlock(&e->mu);
    int rc = pull(p, dst, addr, len);
    int saved = errno;
    pthread_mutex_lock(&e->mu);
    p->pulling = false;
    foehn_engine_wake(e);
    errno = saved;
    return rc;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)foehn_wire_get32(p) << 32 | foehn_wire_get32(p + 4);
}

/* How long an RTS nobody has asked for waits for its receive before the progress
 * thread copies it anyway: a receive posted by then (a ping-pong's, a collective's
 * next step) gets the payload straight from the sender, with no buffer in between;
 * after it the send completes as an eager one would, so a sender never waits on a
 * receive that comes late or never. */
#define RTS_WAIT_S 0.005

static void ack(foehn_engine *e, const foehn_msg *m)
{
    send_control(e, m->src, FOEHN_FRAME_ACK, m->rts_id);
}

/* Copies deferred RTS message m into dst (m->len bytes) and answers its sender. */
static int pull_deferred(foehn_engine *e, foehn_msg *m, unsigned char *dst, char *why,
                         size_t whylen)
{
    foehn_peer *p = &e->peers[m->src];
    m->rts = false;
    e->deferred--;
    if (m->len && pull_unlocked(e, m->src, dst, m->rts_addr, m->len) != 0) {
        snprintf(why, whylen, "copying a message of %zu bytes out of rank %d (host %s, pid %d) "
                 "failed: %s%s", m->len, m->src, foehn_engine_host(e, m->src), p->pid,
                 strerror(errno), p->said_bye || p->gone ? " (it has ended)" : "");
        return FOEHN_ERR_PEER;
    }
    ack(e, m);
    return FOEHN_OK;
}

/* The deferred RTS message with the earliest deadline, or NULL. */
static foehn_msg *first_deferred(foehn_engine *e)
{
    foehn_msg *first = NULL;
    for (foehn_msg *m = e->unexpected_head; m; m = m->next)
        if (m->rts && (!first || m->rts_deadline < first->rts_deadline))
            first = m;
    return first;
}

int foehn_p2p_pull_overdue(foehn_engine *e)
{
    foehn_msg *m;
    /* The list may change while a copy runs without the lock: look again each time. */
    while (e->deferred && e->failed == FOEHN_OK && (m = first_deferred(e)) &&
           m->rts_deadline <= foehn_now()) {
        char why[512];
        unsigned char *data = m->len ? malloc(m->len) : NULL;
        if (m->len && !data) {
            foehn_engine_fail(e, FOEHN_ERR_NOMEM, "out of memory for a message of %zu bytes "
                              "from rank %d", m->len, m->src);
            return -1;
        }
        /* Streaming in, as far as the others can tell: a receive that matches it now
         * waits for it (m->waiter) and gets it once whole. */
        m->complete = false;
        m->data = data;
        int rc = pull_deferred(e, m, data, why, sizeof why);
        if (rc == FOEHN_OK) {
            msg_whole(e, m);
            continue;
        }
        m->complete = true;
        if (m->waiter) { /* claimed meanwhile, so off the list: nobody else ends it */
            foehn_request_complete(e, m->waiter, rc, why);
            foehn_request_unref(e, m->waiter);
            free(m->data);
            free(m);
        }
        foehn_engine_fail(e, FOEHN_ERR_PEER, "%s", why);
        return -1;
    }
    m = e->deferred && e->failed == FOEHN_OK ? first_deferred(e) : NULL;
    return m ? (int)((m->rts_deadline - foehn_now()) * 1000) + 1 : -1;
}

void foehn_p2p_rts_arrived(foehn_engine *e, int src, const foehn_wire_header *h,
                           const unsigned char *body)
{
    foehn_peer *p = &e->peers[src];
    uint64_t addr = get64(body);
    uint32_t id = foehn_wire_get32(body + 8);
    arrived(e, src, h, true); /* chooses the destination, as for a payload */
    if (p->msg) {
        /* Nobody asked for it yet: it waits in the sender for its receive. */
        foehn_msg *m = p->msg;
        m->rts = true;
        m->rts_addr = addr;
        m->rts_id = id;
        m->rts_deadline = foehn_now() + RTS_WAIT_S;
        m->complete = true;
        p->msg = NULL;
        p->dst = NULL;
        p->dst_len = 0;
        p->in_payload = false;
        if (e->deferred++ == 0)
            foehn_engine_wake(e); /* the progress thread now has a deadline to keep */
        return;
    }
    if (p->discard_left) {
        p->discard_left = 0; /* a refused receive: nothing to copy */
    } else if (p->dst_len && pull_unlocked(e, src, p->dst, addr, p->dst_len) != 0) {
        foehn_engine_fail(e, FOEHN_ERR_PEER,
                          "reading a message of %zu bytes out of rank %d (host %s, pid %d) "
                          "failed: %s",
                          p->dst_len, src, foehn_engine_host(e, src), p->pid, strerror(errno));
        return;
    }
    p->dst_got = p->dst_len;
    foehn_p2p_payload_done(e, p);
    send_control(e, src, FOEHN_FRAME_ACK, id);
}

void foehn_p2p_ack_arrived(foehn_engine *e, int src, uint32_t id)
{
    foehn_peer *p = &e->peers[src];
    if (p->shm_out && foehn_shm_release(p->shm_out, id))
        return; /* a staged message: its send completed when it was written */
    for (foehn_request **at = &p->acks; *at; at = &(*at)->next_send) {
        foehn_request *r = *at;
        if (r->rts_id != id)
            continue;
        *at = r->next_send;
        r->next_send = NULL;
        foehn_request_complete(e, r, FOEHN_OK, NULL);
        foehn_request_unref(e, r); /* the queue's hold */
        return;
    }
    foehn_engine_fail(e, FOEHN_ERR_PROTOCOL, "rank %d (host %s) acknowledged a message it was "
                      "never sent (id %u)", src, foehn_engine_host(e, src), id);
}

/* A message to this process itself: straight into a posted receive, or kept. */
static int send_self(foehn_engine *e, foehn_request *s, uint32_t ctx, uint32_t kind,
                     const void *buf, size_t len, int tag, foehn_error *err)
{
    foehn_wire_header h = {.type = FOEHN_FRAME_DATA, .ctx = ctx, .tag = (uint32_t)tag,
                           .kind = kind, .len = len};
    foehn_peer *p = &e->peers[e->rank];
    foehn_p2p_arrived(e, e->rank, &h);
    if (p->discard_left) {
        p->discard_left = 0;
    } else if (p->dst == NULL && len) {
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    } else if (len) {
        memcpy(p->dst, buf, len);
    }
    foehn_p2p_payload_done(e, p);
    foehn_request_complete(e, s, FOEHN_OK, NULL);
    return FOEHN_OK;
}

int foehn_p2p_isend_locked(foehn_comm *comm, uint32_t ctx, uint32_t kind, const void *buf,
                           size_t len, int dest, int tag, foehn_request **req, foehn_error *err)
{
    foehn_engine *e = comm->engine;
    *req = NULL;
    int rc = foehn_engine_check(e, err);
    if (rc != FOEHN_OK)
        return rc;
    foehn_request *r = foehn_request_new(comm, REQ_SEND);
    if (!r)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    *req = r;
    if (dest == FOEHN_PROC_NULL) {
        foehn_request_complete(e, r, FOEHN_OK, NULL);
        return FOEHN_OK;
    }
    int world = comm->world_of[dest];
    r->dest = world;
    r->payload = buf;
    r->len = len;
    if (world == e->rank)
        return send_self(e, r, ctx, kind, buf, len, tag, err);
    foehn_peer *p = &e->peers[world];
    if (p->gone || p->said_bye) {
        foehn_request_failf(e, r, FOEHN_ERR_PEER, "cannot send to rank %d (host %s): it has %s",
                            dest, foehn_engine_host(e, world),
                            p->said_bye ? "finalized" : "gone");
        return FOEHN_OK;
    }
    uint32_t type = FOEHN_FRAME_DATA;
    void *staged = NULL;
    r->wire = buf;
    r->wire_len = len;
    if (len >= FOEHN_SINGLE_COPY_MIN && p->peer_pulls) {
        type = FOEHN_FRAME_RTS;
        r->rts = true;
        r->rts_id = ++p->next_rts;
        uint64_t addr = (uint64_t)(uintptr_t)buf;
        foehn_shm_out *staging = len <= e->stage_max ? staging_for(e, world) : NULL;
        staged = staging ? foehn_shm_stage(staging, buf, len, FOEHN_SHM_PIECE, r->rts_id)
                         : NULL;
        if (staged) {
            /* the payload is safe in the segment once staged: the send completes when
             * that is done and its RTS written, as a small message's does; the ACK
             * only frees the part */
            addr = (uint64_t)(uintptr_t)staged;
            r->rts = false;
            r->hold = len > FOEHN_SHM_PIECE;
        }
        foehn_wire_put32(r->rts_body, (uint32_t)(addr >> 32));
        foehn_wire_put32(r->rts_body + 4, (uint32_t)addr);
        foehn_wire_put32(r->rts_body + 8, r->rts_id);
        r->wire = r->rts_body;
        r->wire_len = sizeof r->rts_body;
    }
    foehn_wire_encode(r->header, &(foehn_wire_header){.type = type, .ctx = ctx,
                                                      .tag = (uint32_t)tag, .kind = kind,
                                                      .len = len});
    r->refs++; /* the queue's hold */
    enqueue(e, world, r);
    if (r->hold) { /* the RTS is (most likely) out: the rest, as the receiver copies */
        foehn_shm_stage_rest(staged, buf, len, FOEHN_SHM_PIECE);
        r->hold = false;
        if (r->written)
            foehn_request_complete(e, r, FOEHN_OK, NULL);
    }
    return FOEHN_OK;
}

int foehn_p2p_irecv_locked(foehn_comm *comm, uint32_t ctx, uint32_t kind, void *buf, size_t cap,
                           bool exact, int source, int tag, foehn_request **req, foehn_error *err)
{
    foehn_engine *e = comm->engine;
    *req = NULL;
    int rc = foehn_engine_check(e, err);
    if (rc != FOEHN_OK)
        return rc;
    foehn_request *r = foehn_request_new(comm, REQ_RECV);
    if (!r)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    *req = r;
    r->ctx = ctx;
    r->kind = kind;
    r->buf = buf;
    r->cap = cap;
    r->allocate = buf == NULL; /* a message of any length, into its own buffer */
    r->exact = exact && buf != NULL;
    r->tag = tag;
    if (source == FOEHN_PROC_NULL) {
        r->status.source = FOEHN_PROC_NULL;
        r->status.tag = FOEHN_ANY_TAG;
        foehn_request_complete(e, r, FOEHN_OK, NULL);
        return FOEHN_OK;
    }
    r->src = source == FOEHN_ANY_SOURCE ? FOEHN_ANY_SOURCE : comm->world_of[source];
    for (foehn_msg *m = e->unexpected_head; m; m = m->next) {
        if (!matches(ctx, r->src, tag, m->ctx, m->src, m->tag))
            continue;
        unexpected_unlink(e, m);
        r->matched = true;
        if (m->complete)
            deliver(e, r, m);
        else {
            m->waiter = r; /* still streaming in: delivered when it is whole */
            m->claimed = true;
            r->refs++;
        }
        return FOEHN_OK;
    }
    if (r->src != FOEHN_ANY_SOURCE && r->src != e->rank &&
        (e->peers[r->src].gone || e->peers[r->src].said_bye)) {
        foehn_request_failf(e, r, FOEHN_ERR_PEER,
                            "cannot receive from rank %d (host %s): it has %s and will send "
                            "nothing more",
                            source, foehn_engine_host(e, r->src),
                            e->peers[r->src].said_bye ? "finalized" : "gone");
        return FOEHN_OK;
    }
    r->refs++; /* the posted list's hold */
    r->prev_posted = e->posted_tail;
    if (e->posted_tail)
        e->posted_tail->next_posted = r;
    else
        e->posted_head = r;
    e->posted_tail = r;
    return FOEHN_OK;
}

/* ---- failure -------------------------------------------------------------- */

void foehn_p2p_fail_all(foehn_engine *e)
{
    int status = e->failed != FOEHN_OK ? e->failed : FOEHN_ERR_CANCELLED;
    const char *why = e->failure ? e->failure
                                 : "the communicator was finalized while this request was pending";
    while (e->posted_head) {
        foehn_request *r = e->posted_head;
        posted_unlink(e, r);
        foehn_request_complete(e, r, status, why);
        foehn_request_unref(e, r);
    }
    for (int w = 0; e->peers && w < e->size; w++) {
        foehn_peer *p = &e->peers[w];
        /* A receive whose payload a thread copies without the lock right now is left to
         * that thread: failing it here would let its owner reuse the buffer the copy
         * is still writing. It completes when the copy is done. */
        if (p->req && !p->pulling) {
            foehn_request_complete(e, p->req, status, why);
            foehn_request_unref(e, p->req);
            p->req = NULL;
            p->dst = NULL;
            p->discard_left = p->dst_len - p->dst_got;
            p->dst_len = p->dst_got;
        }
        if (p->msg && p->msg->waiter) {
            foehn_request_complete(e, p->msg->waiter, status, why);
            foehn_request_unref(e, p->msg->waiter);
            p->msg->waiter = NULL;
        }
        foehn_request **lists[] = {&p->send_head, &p->acks};
        for (size_t l = 0; l < 2; l++)
            while (*lists[l]) {
                foehn_request *r = *lists[l];
                *lists[l] = r->next_send;
                r->next_send = NULL;
                foehn_request_complete(e, r, status, why);
                foehn_request_unref(e, r);
            }
        p->send_tail = NULL;
    }
}

void foehn_p2p_peer_gone(foehn_engine *e, int w)
{
    foehn_request *next;
    for (foehn_request *r = e->posted_head; r; r = next) {
        next = r->next_posted;
        if (r->src != w)
            continue;
        posted_unlink(e, r);
        foehn_request_failf(e, r, FOEHN_ERR_PEER,
                            "rank %d (host %s) has finalized and will send nothing more; this "
                            "receive (tag %d) on rank %d cannot complete",
                            r->comm->rank_of[w], foehn_engine_host(e, w), r->tag, r->comm->rank);
        foehn_request_unref(e, r);
    }
}

/* ---- the public calls ------------------------------------------------------- */

static int comm_ok(const foehn_comm *comm, foehn_error *err)
{
    if (!comm || !comm->engine || comm->freed)
        return foehn_fail(err, FOEHN_ERR_INVALID, "invalid communicator (freed, or never made)");
    if (!foehn_engine_get())
        return foehn_fail(err, FOEHN_ERR_INVALID, "the communicator is not initialized "
                          "(foehn_comm_init) or was finalized");
    return FOEHN_OK;
}

static int peer_ok(const foehn_comm *comm, int peer, bool any, const char *what, foehn_error *err)
{
    if (peer == FOEHN_PROC_NULL || (any && peer == FOEHN_ANY_SOURCE) ||
        (peer >= 0 && peer < comm->size))
        return FOEHN_OK;
    return foehn_fail(err, FOEHN_ERR_INVALID, "invalid %s rank %d: the communicator has %d rank%s",
                      what, peer, comm->size, comm->size == 1 ? "" : "s");
}

static int tag_ok(int tag, bool any, foehn_error *err)
{
    if ((any && tag == FOEHN_ANY_TAG) || tag >= 0)
        return FOEHN_OK;
    return foehn_fail(err, FOEHN_ERR_INVALID, "invalid tag %d: tags are 0 to %d", tag,
                      FOEHN_TAG_MAX);
}

int foehn_isend(foehn_comm *comm, const void *buf, size_t len, int dest, int tag,
                foehn_request **req, foehn_error *err)
{
    *req = NULL;
    int rc = comm_ok(comm, err);
    if (rc == FOEHN_OK)
        rc = peer_ok(comm, dest, false, "destination", err);
    if (rc == FOEHN_OK)
        rc = tag_ok(tag, false, err);
    if (rc != FOEHN_OK)
        return rc;
    pthread_mutex_lock(&comm->engine->mu);
    rc = foehn_p2p_isend_locked(comm, comm->ctx, 0, buf, len, dest, tag, req, err);
    pthread_mutex_unlock(&comm->engine->mu);
    return rc;
}

int foehn_irecv(foehn_comm *comm, void *buf, size_t cap, int source, int tag,
                foehn_request **req, foehn_error *err)
{
    *req = NULL;
    int rc = comm_ok(comm, err);
    if (rc == FOEHN_OK)
        rc = peer_ok(comm, source, true, "source", err);
    if (rc == FOEHN_OK)
        rc = tag_ok(tag, true, err);
    if (rc != FOEHN_OK)
        return rc;
    pthread_mutex_lock(&comm->engine->mu);
    rc = foehn_p2p_irecv_locked(comm, comm->ctx, 0, buf, cap, false, source, tag, req, err);
    pthread_mutex_unlock(&comm->engine->mu);
    return rc;
}

static int wait_and_free(foehn_request *req, foehn_msg_status *status, foehn_error *err)
{
    int rc = foehn_request_wait(req, -1, status, err);
    foehn_request_free(req);
    return rc;
}

int foehn_send(foehn_comm *comm, const void *buf, size_t len, int dest, int tag, foehn_error *err)
{
    foehn_request *req;
    int rc = foehn_isend(comm, buf, len, dest, tag, &req, err);
    return rc == FOEHN_OK ? wait_and_free(req, NULL, err) : rc;
}

int foehn_recv(foehn_comm *comm, void *buf, size_t cap, int source, int tag,
               foehn_msg_status *status, foehn_error *err)
{
    foehn_request *req;
    int rc = foehn_irecv(comm, buf, cap, source, tag, &req, err);
    return rc == FOEHN_OK ? wait_and_free(req, status, err) : rc;
}

/* The first arrived message (whole or streaming) that (source, tag) would match. */
static const foehn_msg *find_arrived(const foehn_comm *comm, int source, int tag)
{
    const foehn_engine *e = comm->engine;
    int src = source == FOEHN_ANY_SOURCE ? FOEHN_ANY_SOURCE : comm->world_of[source];
    for (const foehn_msg *m = e->unexpected_head; m; m = m->next)
        if (matches(comm->ctx, src, tag, m->ctx, m->src, m->tag))
            return m;
    return NULL;
}

static void probe_status(const foehn_comm *comm, const foehn_msg *m, foehn_msg_status *status)
{
    if (status)
        *status = (foehn_msg_status){.source = comm->rank_of[m->src], .tag = m->tag, .bytes = m->len};
}

int foehn_iprobe(foehn_comm *comm, int source, int tag, int *flag, foehn_msg_status *status,
                 foehn_error *err)
{
    *flag = 0;
    int rc = comm_ok(comm, err);
    if (rc == FOEHN_OK)
        rc = peer_ok(comm, source, true, "source", err);
    if (rc != FOEHN_OK)
        return rc;
    if (source == FOEHN_PROC_NULL) {
        *flag = 1;
        if (status)
            *status = (foehn_msg_status){.source = FOEHN_PROC_NULL, .tag = FOEHN_ANY_TAG};
        return FOEHN_OK;
    }
    pthread_mutex_lock(&comm->engine->mu);
    const foehn_msg *m = find_arrived(comm, source, tag);
    if (m) {
        *flag = 1;
        probe_status(comm, m, status);
    } else {
        rc = foehn_engine_check(comm->engine, err);
    }
    pthread_mutex_unlock(&comm->engine->mu);
    return rc;
}

int foehn_probe(foehn_comm *comm, int source, int tag, double timeout, foehn_msg_status *status,
                foehn_error *err)
{
    int flag = 0;
    int rc = foehn_iprobe(comm, source, tag, &flag, status, err);
    if (rc != FOEHN_OK || flag)
        return rc;
    foehn_engine *e = comm->engine;
    double deadline = foehn_now() + (timeout < 0 ? foehn_comm_timeout() : timeout);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        const foehn_msg *m = find_arrived(comm, source, tag);
        if (m) {
            probe_status(comm, m, status);
            break;
        }
        rc = foehn_engine_check(e, err);
        if (rc != FOEHN_OK)
            break;
        if (source != FOEHN_ANY_SOURCE && e->peers[comm->world_of[source]].said_bye) {
            rc = foehn_fail(err, FOEHN_ERR_PEER, "probe: rank %d has finalized and will send "
                            "nothing more", source);
            break;
        }
        struct timespec ts;
        double left = deadline - foehn_now();
        if (left <= 0) {
            rc = foehn_fail(err, FOEHN_ERR_TIMEOUT,
                            "probe on rank %d timed out after %.0f s waiting for a message from "
                            "%s%d with tag %d (FOEHN_COMM_TIMEOUT sets the bound)",
                            comm->rank, timeout < 0 ? foehn_comm_timeout() : timeout,
                            source == FOEHN_ANY_SOURCE ? "any rank " : "rank ", source, tag);
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)((left < 0.5 ? left : 0.5) * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&e->done_cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}
