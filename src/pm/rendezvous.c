/* The rendezvous server: one thread, one poll() loop, every socket non-blocking.
 *
 * The loop owns all state below "loop-only" in foehn_rdv_server; other threads
 * reach it only through the mutex-guarded inbox (launcher death reports, stop),
 * and wake the loop by writing to an eventfd. Nothing the loop does may block:
 * reads take what is there, and writes go to per-connection output queues that
 * drain as the sockets accept them, so one slow client never holds up the rest.
 *
 * A connection starts on probation: it must send one HELLO of exactly the right
 * size within RDV_HELLO_TIMEOUT, with the job's token. Until then it can cost the
 * server at most 5 + RDV_HELLO_LEN bytes, and whatever it does wrong only closes it.
 */
#include "pm/rendezvous.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/fdio.h"
#include "common/random.h"
#include "net/connect.h"
#include "pm/rendezvous_wire.h"

/* When a connection drops without BYE, how long to wait for the launcher to say how
 * the rank died ("exited with status 9" beats "its connection closed"). */
#define DEATH_GRACE 0.25
/* Out of descriptors: stop accepting for this long rather than spin on the listener. */
#define ACCEPT_PAUSE 0.1
/* Bounds on work per wake-up, so one busy socket cannot starve the others. */
#define ACCEPTS_PER_WAKE 256
#define FRAMES_PER_WAKE 16
#define IOV_BATCH 64

/* One encoded frame, shared by every connection it is queued on: the fence reply is
 * built once and the same bytes go to all ranks. */
typedef struct rdv_buf {
    size_t refs, len;
    unsigned char data[];
} rdv_buf;

typedef struct rdv_out {
    rdv_buf *buf;
    size_t off;
    struct rdv_out *next;
} rdv_out;

typedef enum conn_state { CONN_PROBATION, CONN_RANK, CONN_CLOSED } conn_state;

typedef struct rdv_conn {
    int fd;
    conn_state state;
    int rank;              /* once CONN_RANK */
    double hello_deadline; /* while CONN_PROBATION */
    unsigned char hdr[RDV_HEADER_LEN];
    size_t hdr_got;
    unsigned char *payload; /* the frame being read, once its header is in */
    size_t payload_len, payload_got;
    rdv_out *out_head, *out_tail;
} rdv_conn;

typedef enum slot_state {
    SLOT_EMPTY,     /* not connected yet */
    SLOT_CONNECTED, /* said HELLO */
    SLOT_LEFT,      /* said BYE: finalized */
    SLOT_GONE,      /* died, aborted or broke the protocol: never again */
} slot_state;

typedef struct rdv_slot {
    slot_state state;
    rdv_conn *conn;
    bool arrived;          /* sent FENCE for the current seq */
    unsigned char *fence;  /* that FENCE's payload: u32 seq, kv-block */
    size_t fence_len;
} rdv_slot;

typedef struct rdv_death {
    int rank;
    char *how;
    struct rdv_death *next;
} rdv_death;

struct foehn_rdv_server {
    int size;
    unsigned char token[RDV_TOKEN_BYTES];
    foehn_rdv_abort_fn on_abort;
    void *arg;
    int listen_fd, wake_fd, port;
    pthread_t thread;

    pthread_mutex_t lock; /* guards the inbox: */
    bool stopping;
    rdv_death *deaths;    /* newest first */

    /* loop-only */
    rdv_conn **conns;
    size_t nconns, conns_cap;
    struct pollfd *pfds;
    size_t pfds_cap;
    rdv_slot *slots;
    uint32_t seq;         /* the fence being gathered */
    int arrived;
    size_t fence_bytes;
    int first_left;       /* a rank that said BYE, or -1 */
    rdv_buf *died;        /* the DIED frame, once the job has failed */
    int grace_rank;       /* a rank whose connection dropped, awaiting the launcher's word */
    double grace_deadline;
    double accept_resume; /* 0 unless accepting is paused */
};

/* ---- frames and output queues ------------------------------------------ */

static rdv_buf *buf_new(rdv_frame_type type, size_t payload_len)
{
    rdv_buf *b = malloc(sizeof *b + RDV_HEADER_LEN + payload_len);
    if (!b)
        return NULL;
    b->refs = 1;
    b->len = RDV_HEADER_LEN + payload_len;
    rdv_put_header(b->data, (uint32_t)payload_len, type);
    return b;
}

static void buf_unref(rdv_buf *b)
{
    if (b && --b->refs == 0)
        free(b);
}

/* A frame of a u32 and some text (DIED, STATUS_REPLY). */
static rdv_buf *buf_u32_text(rdv_frame_type type, uint32_t value, const char *text)
{
    size_t n = strlen(text);
    rdv_buf *b = buf_new(type, 4 + n);
    if (b) {
        foehn_put_u32(b->data + RDV_HEADER_LEN, value);
        memcpy(b->data + RDV_HEADER_LEN + 4, text, n);
    }
    return b;
}

/* Writes what the socket takes now; the rest waits for POLLOUT. A write error drops
 * the queue: the socket then reads as closed, and the read path decides what it means. */
static void conn_flush(rdv_conn *c)
{
    while (c->out_head && c->fd >= 0) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (rdv_out *o = c->out_head; o && n < IOV_BATCH; o = o->next, n++) {
            iov[n].iov_base = o->buf->data + o->off;
            iov[n].iov_len = o->buf->len - o->off;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t sent = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            sent = -1;
        }
        size_t left = sent < 0 ? SIZE_MAX : (size_t)sent;
        while (c->out_head && left > 0) {
            rdv_out *o = c->out_head;
            size_t rest = o->buf->len - o->off;
            if (left < rest) {
                o->off += left;
                break;
            }
            left -= rest;
            c->out_head = o->next;
            buf_unref(o->buf);
            free(o);
        }
        if (!c->out_head)
            c->out_tail = NULL;
    }
}

/* Queues b (taking a reference) and tries to send at once. */
static void conn_send(rdv_conn *c, rdv_buf *b)
{
    if (!b || c->fd < 0)
        return;
    rdv_out *o = malloc(sizeof *o);
    if (!o)
        return; /* the peer times out and says so; nothing better to do without memory */
    b->refs++;
    *o = (rdv_out){.buf = b};
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    conn_flush(c);
}

/* ---- connections --------------------------------------------------------- */

static void conn_close(foehn_rdv_server *srv, rdv_conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_RANK && srv->slots[c->rank].conn == c)
        srv->slots[c->rank].conn = NULL;
    close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
    free(c->payload);
    c->payload = NULL;
    while (c->out_head) {
        rdv_out *o = c->out_head;
        c->out_head = o->next;
        buf_unref(o->buf);
        free(o);
    }
    c->out_tail = NULL;
}

/* Frees the connections closed during this turn of the loop (never mid-turn, so
 * pointers taken at the top of the turn stay valid). */
static void conns_sweep(foehn_rdv_server *srv)
{
    size_t kept = 0;
    for (size_t i = 0; i < srv->nconns; i++) {
        if (srv->conns[i]->state == CONN_CLOSED)
            free(srv->conns[i]);
        else
            srv->conns[kept++] = srv->conns[i];
    }
    srv->nconns = kept;
}

static void conn_add(foehn_rdv_server *srv, int fd)
{
    if (srv->nconns == srv->conns_cap) {
        size_t cap = srv->conns_cap ? 2 * srv->conns_cap : 64;
        rdv_conn **grown = realloc(srv->conns, cap * sizeof *grown);
        if (!grown) {
            close(fd);
            return;
        }
        srv->conns = grown;
        srv->conns_cap = cap;
    }
    rdv_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = CONN_PROBATION;
    c->rank = -1;
    c->hello_deadline = foehn_now() + RDV_HELLO_TIMEOUT;
    srv->conns[srv->nconns++] = c;
}

static void accept_all(foehn_rdv_server *srv)
{
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_add(srv, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            srv->accept_resume = foehn_now() + ACCEPT_PAUSE; /* probation timeouts free some */
        return;
    }
}

/* ---- the job's fate ---------------------------------------------------- */

/* Text from a peer, made safe to print: control bytes become '?'. */
static void sanitize(char *dst, size_t cap, const unsigned char *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] < 0x20 || src[i] == 0x7f) ? '?' : (char)src[i];
    dst[n] = '\0';
}

static void fence_reset(foehn_rdv_server *srv)
{
    for (int r = 0; r < srv->size; r++) {
        rdv_slot *s = &srv->slots[r];
        free(s->fence);
        s->fence = NULL;
        s->fence_len = 0;
        s->arrived = false;
    }
    srv->arrived = 0;
    srv->fence_bytes = 0;
}

/* The job cannot go on: every rank waiting at the fence, and every rank that comes to
 * a fence later, gets DIED with this sentence. The first failure is the one told. */
static void FOEHN_PRINTF(3, 4) job_fail(foehn_rdv_server *srv, uint32_t rank, const char *fmt, ...)
{
    if (srv->died)
        return;
    char text[RDV_TEXT_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    srv->died = buf_u32_text(RDV_DIED, rank, text);
    if (!srv->died)
        return;
    srv->grace_rank = -1;
    for (int r = 0; r < srv->size; r++)
        if (srv->slots[r].arrived && srv->slots[r].conn)
            conn_send(srv->slots[r].conn, srv->died);
    fence_reset(srv);
}

/* rank is gone for good; how == NULL when only its connection told us so. */
static void rank_gone(foehn_rdv_server *srv, int rank, const char *how)
{
    rdv_slot *s = &srv->slots[rank];
    if (how && (s->state == SLOT_LEFT || srv->died))
        return; /* it finalized first (its end is no news), or the job already failed */
    if (how) {
        s->state = SLOT_GONE;
        job_fail(srv, (uint32_t)rank, "rank %d died (%s) before the fence: stopping", rank, how);
        return;
    }
    if (s->state != SLOT_CONNECTED)
        return; /* it said BYE, or the launcher already told */
    s->state = SLOT_GONE;
    if (!srv->died && srv->grace_rank < 0) {
        srv->grace_rank = rank;
        srv->grace_deadline = foehn_now() + DEATH_GRACE;
    }
}

static void grace_expired(foehn_rdv_server *srv)
{
    int rank = srv->grace_rank;
    srv->grace_rank = -1;
    job_fail(srv, (uint32_t)rank,
             "rank %d died (its connection to foehn run closed without a goodbye) before the "
             "fence: stopping",
             rank);
}

/* A rank that sends what the protocol forbids is a bug, not an attacker (it knew the
 * token): the job cannot fence without it, so say so rather than hang. */
static void rank_broke(foehn_rdv_server *srv, rdv_conn *c, const char *why)
{
    int rank = c->rank;
    srv->slots[rank].state = SLOT_GONE;
    conn_close(srv, c);
    job_fail(srv, (uint32_t)rank, "rank %d broke the rendezvous protocol (%s): stopping", rank,
             why);
}

/* ---- frames from ranks ------------------------------------------------- */

static void complete_fence(foehn_rdv_server *srv)
{
    size_t len = 8;
    for (int r = 0; r < srv->size; r++)
        len += 4 + (srv->slots[r].fence_len - 4);
    rdv_buf *b = buf_new(RDV_FENCE_DONE, len);
    if (!b) {
        job_fail(srv, RDV_NO_RANK, "foehn run ran out of memory gathering fence %u", srv->seq);
        return;
    }
    unsigned char *p = b->data + RDV_HEADER_LEN;
    foehn_put_u32(p, srv->seq);
    foehn_put_u32(p + 4, (uint32_t)srv->size);
    p += 8;
    for (int r = 0; r < srv->size; r++) {
        size_t n = srv->slots[r].fence_len - 4;
        foehn_put_u32(p, (uint32_t)n);
        memcpy(p + 4, srv->slots[r].fence + 4, n);
        p += 4 + n;
    }
    for (int r = 0; r < srv->size; r++)
        if (srv->slots[r].conn)
            conn_send(srv->slots[r].conn, b);
    buf_unref(b);
    fence_reset(srv);
    srv->seq++;
}

static void on_fence(foehn_rdv_server *srv, rdv_conn *c, unsigned char *payload, size_t len)
{
    rdv_slot *s = &srv->slots[c->rank];
    const char *why = NULL;
    if (len < 4)
        why = "a fence without its number";
    else if (rdv_kv_check(payload + 4, len - 4, &why) != 0)
        ; /* why says what was wrong */
    else if (!srv->died && (foehn_get_u32(payload) != srv->seq || s->arrived))
        why = "a fence out of step with the others'"; /* after a failure, steps don't matter */
    if (why) {
        free(payload);
        rank_broke(srv, c, why);
        return;
    }
    if (!srv->died && srv->first_left >= 0)
        job_fail(srv, (uint32_t)srv->first_left,
                 "rank %d finalized and left before the fence: stopping", srv->first_left);
    if (!srv->died && srv->fence_bytes + len > RDV_FENCE_TOTAL_MAX)
        job_fail(srv, RDV_NO_RANK, "fence %u carries more than %u MiB of keys and values in all",
                 srv->seq, RDV_FENCE_TOTAL_MAX >> 20);
    if (srv->died) {
        free(payload);
        conn_send(c, srv->died);
        return;
    }
    s->arrived = true;
    s->fence = payload;
    s->fence_len = len;
    srv->fence_bytes += len;
    if (++srv->arrived == srv->size)
        complete_fence(srv);
}

static void on_abort(foehn_rdv_server *srv, rdv_conn *c, const unsigned char *payload, size_t len)
{
    if (len < 4) {
        rank_broke(srv, c, "an abort without a status");
        return;
    }
    int rank = c->rank;
    int status = (int)(int32_t)foehn_get_u32(payload);
    char message[RDV_TEXT_MAX + 1];
    sanitize(message, sizeof message, payload + 4, len - 4);
    srv->slots[rank].state = SLOT_GONE;
    conn_close(srv, c); /* the rank waits for this EOF, then exits */
    if (srv->on_abort)
        srv->on_abort(srv->arg, rank, status, message);
    job_fail(srv, (uint32_t)rank, "rank %d aborted the job (status %d): %s", rank, status,
             message);
}

static void on_bye(foehn_rdv_server *srv, rdv_conn *c)
{
    int rank = c->rank;
    srv->slots[rank].state = SLOT_LEFT;
    conn_close(srv, c);
    if (srv->first_left < 0)
        srv->first_left = rank;
    /* Ranks already waiting at a fence this one never joined would wait forever. */
    if (srv->arrived > 0 && !srv->slots[rank].arrived)
        job_fail(srv, (uint32_t)rank, "rank %d finalized and left before the fence: stopping",
                 rank);
}

/* Appends "a, b-c, ..." for the ranks where missing(slot) holds; truncates politely. */
static void append_ranks(const foehn_rdv_server *srv, char *out, size_t cap, bool never_connected)
{
    size_t len = strlen(out);
    int listed = 0;
    for (int r = 0; r < srv->size && len + 24 < cap; r++) {
        const rdv_slot *s = &srv->slots[r];
        bool want = never_connected ? s->state == SLOT_EMPTY : !s->arrived;
        if (!want)
            continue;
        int end = r;
        while (end + 1 < srv->size && (never_connected ? srv->slots[end + 1].state == SLOT_EMPTY
                                                       : !srv->slots[end + 1].arrived))
            end++;
        int n = end > r ? snprintf(out + len, cap - len, "%s%d-%d", listed ? ", " : "", r, end)
                        : snprintf(out + len, cap - len, "%s%d", listed ? ", " : "", r);
        len += (size_t)n < cap - len ? (size_t)n : cap - len - 1;
        listed++;
        r = end;
    }
    if (len + 24 >= cap)
        snprintf(out + len, cap - len, ", ...");
}

static void on_status(foehn_rdv_server *srv, rdv_conn *c)
{
    if (c->out_head)
        return; /* it has not read what we sent before: asking again must not grow the queue */
    char text[RDV_TEXT_MAX + 1] = "";
    append_ranks(srv, text, sizeof text / 2, false);
    bool unconnected = false;
    for (int r = 0; r < srv->size && !unconnected; r++)
        unconnected = srv->slots[r].state == SLOT_EMPTY;
    if (unconnected) {
        strcat(text, " (never connected: ");
        append_ranks(srv, text, sizeof text - 2, true);
        strcat(text, ")");
    }
    rdv_buf *b = buf_u32_text(RDV_STATUS_REPLY, (uint32_t)srv->arrived, text);
    conn_send(c, b);
    buf_unref(b);
}

static void on_hello(foehn_rdv_server *srv, rdv_conn *c, const unsigned char *p)
{
    uint32_t magic = foehn_get_u32(p), rank = foehn_get_u32(p + 8 + RDV_TOKEN_BYTES);
    unsigned version = (unsigned)p[4] << 8 | p[5];
    /* Token first, and always: how far the checks get says nothing about it. */
    if (!rdv_token_equal(p + 8, srv->token) || magic != RDV_MAGIC || version != RDV_VERSION ||
        rank >= (uint32_t)srv->size || srv->slots[rank].state != SLOT_EMPTY) {
        conn_close(srv, c);
        return;
    }
    c->state = CONN_RANK;
    c->rank = (int)rank;
    srv->slots[rank].state = SLOT_CONNECTED;
    srv->slots[rank].conn = c;
    rdv_buf *b = buf_new(RDV_WELCOME, 4);
    if (b)
        foehn_put_u32(b->data + RDV_HEADER_LEN, (uint32_t)srv->size);
    conn_send(c, b);
    buf_unref(b);
}

/* Takes ownership of payload. */
static void on_frame(foehn_rdv_server *srv, rdv_conn *c, unsigned type, unsigned char *payload,
                     size_t len)
{
    if (c->state == CONN_PROBATION) {
        on_hello(srv, c, payload);
        free(payload);
        return;
    }
    switch (type) {
    case RDV_FENCE:
        on_fence(srv, c, payload, len);
        return;
    case RDV_ABORT:
        on_abort(srv, c, payload, len);
        break;
    case RDV_BYE:
        on_bye(srv, c);
        break;
    case RDV_STATUS:
        on_status(srv, c);
        break;
    default:
        rank_broke(srv, c, "a frame of an unknown type");
        break;
    }
    free(payload);
}

/* The header is in: is the frame one this connection may send? */
static bool header_ok(const rdv_conn *c, unsigned *type, size_t *len)
{
    *len = foehn_get_u32(c->hdr);
    *type = c->hdr[4];
    if (c->state == CONN_PROBATION)
        return *type == RDV_HELLO && *len == RDV_HELLO_LEN;
    return *len <= RDV_CLIENT_FRAME_MAX;
}

static void conn_lost(foehn_rdv_server *srv, rdv_conn *c)
{
    int rank = c->state == CONN_RANK ? c->rank : -1;
    conn_close(srv, c);
    if (rank >= 0)
        rank_gone(srv, rank, NULL);
}

/* Reads whatever the socket holds, a few frames at most. */
static void conn_read(foehn_rdv_server *srv, rdv_conn *c)
{
    for (int frames = 0; frames < FRAMES_PER_WAKE && c->state != CONN_CLOSED;) {
        bool in_header = c->hdr_got < RDV_HEADER_LEN;
        unsigned char *dst = in_header ? c->hdr + c->hdr_got : c->payload + c->payload_got;
        size_t want = in_header ? RDV_HEADER_LEN - c->hdr_got : c->payload_len - c->payload_got;
        if (want > 0) {
            ssize_t n = recv(c->fd, dst, want, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            if (n <= 0) {
                conn_lost(srv, c);
                return;
            }
            if (in_header)
                c->hdr_got += (size_t)n;
            else
                c->payload_got += (size_t)n;
        }
        if (in_header && c->hdr_got == RDV_HEADER_LEN) {
            unsigned type;
            size_t len;
            if (!header_ok(c, &type, &len)) {
                if (c->state == CONN_RANK)
                    rank_broke(srv, c, "a frame larger than the protocol allows");
                else
                    conn_close(srv, c);
                return;
            }
            c->payload = malloc(len ? len : 1);
            if (!c->payload) {
                conn_lost(srv, c);
                return;
            }
            c->payload_len = len;
            c->payload_got = 0;
        }
        if (c->hdr_got == RDV_HEADER_LEN && c->payload_got == c->payload_len) {
            unsigned char *payload = c->payload;
            c->payload = NULL;
            c->hdr_got = 0;
            frames++;
            on_frame(srv, c, c->hdr[4], payload, c->payload_len);
        }
    }
}

/* ---- the loop ------------------------------------------------------------ */

/* Takes what other threads left in the inbox; true when asked to stop. */
static bool take_inbox(foehn_rdv_server *srv)
{
    uint64_t drained;
    while (read(srv->wake_fd, &drained, sizeof drained) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&srv->lock);
    bool stopping = srv->stopping;
    rdv_death *deaths = srv->deaths;
    srv->deaths = NULL;
    pthread_mutex_unlock(&srv->lock);

    rdv_death *ordered = NULL; /* oldest first */
    while (deaths) {
        rdv_death *d = deaths;
        deaths = d->next;
        d->next = ordered;
        ordered = d;
    }
    while (ordered) {
        rdv_death *d = ordered;
        ordered = d->next;
        rank_gone(srv, d->rank, d->how);
        free(d->how);
        free(d);
    }
    return stopping;
}

/* Milliseconds until the next deadline (a probation, a death's grace, accepting again). */
static int next_timeout(const foehn_rdv_server *srv, double t)
{
    double next = -1;
    for (size_t i = 0; i < srv->nconns; i++)
        if (srv->conns[i]->state == CONN_PROBATION &&
            (next < 0 || srv->conns[i]->hello_deadline < next))
            next = srv->conns[i]->hello_deadline;
    if (srv->grace_rank >= 0 && (next < 0 || srv->grace_deadline < next))
        next = srv->grace_deadline;
    if (srv->accept_resume > 0 && (next < 0 || srv->accept_resume < next))
        next = srv->accept_resume;
    if (next < 0)
        return -1;
    double ms = (next - t) * 1000.0 + 1;
    return ms <= 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

static void expire(foehn_rdv_server *srv, double t)
{
    for (size_t i = 0; i < srv->nconns; i++)
        if (srv->conns[i]->state == CONN_PROBATION && srv->conns[i]->hello_deadline <= t)
            conn_close(srv, srv->conns[i]);
    if (srv->grace_rank >= 0 && srv->grace_deadline <= t)
        grace_expired(srv);
    if (srv->accept_resume > 0 && srv->accept_resume <= t)
        srv->accept_resume = 0;
}

static bool pfds_fit(foehn_rdv_server *srv, size_t n)
{
    if (n <= srv->pfds_cap)
        return true;
    size_t cap = n + n / 2;
    struct pollfd *grown = realloc(srv->pfds, cap * sizeof *grown);
    if (!grown)
        return false;
    srv->pfds = grown;
    srv->pfds_cap = cap;
    return true;
}

/* One pollfd per connection, after the eventfd [0] and the listener [1]. */
static struct pollfd *fill_pollfds(foehn_rdv_server *srv, size_t nconns)
{
    if (!pfds_fit(srv, 2 + nconns))
        return NULL;
    struct pollfd *pfds = srv->pfds;
    pfds[0] = (struct pollfd){.fd = srv->wake_fd, .events = POLLIN};
    pfds[1] = (struct pollfd){.fd = srv->accept_resume > 0 ? -1 : srv->listen_fd,
                              .events = POLLIN};
    for (size_t i = 0; i < nconns; i++) {
        const rdv_conn *c = srv->conns[i];
        pfds[2 + i] = (struct pollfd){.fd = c->fd,
                                      .events = (short)(POLLIN | (c->out_head ? POLLOUT : 0))};
    }
    return pfds;
}

static void dispatch(foehn_rdv_server *srv, const struct pollfd *pfds, size_t nconns)
{
    for (size_t i = 0; i < nconns; i++) {
        rdv_conn *c = srv->conns[i];
        short revents = pfds[2 + i].revents;
        if (revents & POLLOUT)
            conn_flush(c);
        if (revents & (POLLIN | POLLERR | POLLHUP) && c->state != CONN_CLOSED)
            conn_read(srv, c);
    }
    if (pfds[1].revents & POLLIN)
        accept_all(srv); /* last: the new connections have no pollfd this turn */
}

static void *server_main(void *arg)
{
    foehn_rdv_server *srv = arg;
    for (;;) {
        size_t nconns = srv->nconns;
        struct pollfd *pfds = fill_pollfds(srv, nconns);
        if (!pfds) { /* out of memory: let the world move on, then retry */
            if (take_inbox(srv))
                break;
            poll(NULL, 0, 10);
            continue;
        }
        int ready = poll(pfds, 2 + nconns, next_timeout(srv, foehn_now()));
        if (ready < 0 && errno != EINTR)
            poll(NULL, 0, 10);
        if (ready > 0 && (pfds[0].revents & POLLIN) && take_inbox(srv))
            break;
        if (ready > 0)
            dispatch(srv, pfds, nconns);
        expire(srv, foehn_now());
        conns_sweep(srv);
    }
    return NULL;
}

/* ---- starting and stopping --------------------------------------------- */

static int listen_on(foehn_rdv_server *srv, const char *host, foehn_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    int gai = getaddrinfo(host, "0", &hints, &ai);
    if (gai != 0)
        return foehn_fail(err, FOEHN_ERR_INVALID, "cannot listen on \"%s\": %s", host,
                          gai_strerror(gai));
    int saved = 0;
    /* The kernel caps the backlog at net.core.somaxconn; ask for the whole job. */
    int backlog = srv->size + 128 > SOMAXCONN ? srv->size + 128 : SOMAXCONN;
    for (struct addrinfo *a = ai; a && srv->listen_fd < 0; a = a->ai_next)
        saved = foehn_tcp_listen(a, backlog, true, &srv->listen_fd, &srv->port);
    freeaddrinfo(ai);
    if (srv->listen_fd < 0)
        return foehn_fail(err, FOEHN_ERR_SYSTEM, "cannot listen on %s: %s", host,
                          strerror(saved));
    return FOEHN_OK;
}

static void server_free(foehn_rdv_server *srv)
{
    for (size_t i = 0; i < srv->nconns; i++) {
        conn_close(srv, srv->conns[i]);
        free(srv->conns[i]);
    }
    if (srv->slots)
        fence_reset(srv);
    while (srv->deaths) {
        rdv_death *d = srv->deaths;
        srv->deaths = d->next;
        free(d->how);
        free(d);
    }
    buf_unref(srv->died);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->wake_fd >= 0)
        close(srv->wake_fd);
    pthread_mutex_destroy(&srv->lock);
    free(srv->conns);
    free(srv->pfds);
    free(srv->slots);
    free(srv);
}

/* Runs the loop with every signal blocked: they belong to the launcher's main thread. */
static int start_thread(foehn_rdv_server *srv)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&srv->thread, NULL, server_main, srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int foehn_rdv_server_start(foehn_rdv_server **out, const foehn_rdv_server_options *options,
                           foehn_error *err)
{
    *out = NULL;
    foehn_error_reset(err);
    if (options->size < 1 || options->size > RDV_SIZE_MAX)
        return foehn_fail(err, FOEHN_ERR_INVALID, "a rendezvous for %d ranks: expected 1 to %d",
                          options->size, RDV_SIZE_MAX);
    foehn_rdv_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    srv->listen_fd = srv->wake_fd = -1;
    pthread_mutex_init(&srv->lock, NULL);
    srv->size = options->size;
    srv->on_abort = options->on_abort;
    srv->arg = options->arg;
    srv->seq = 1;
    srv->first_left = srv->grace_rank = -1;
    int rc = FOEHN_OK;
    if (rdv_token_decode(options->token, srv->token) != 0)
        rc = foehn_fail(err, FOEHN_ERR_INVALID, "the rendezvous token must be %d hex digits",
                        FOEHN_RDV_TOKEN_LEN);
    if (rc == FOEHN_OK && !(srv->slots = calloc((size_t)srv->size, sizeof *srv->slots)))
        rc = foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    if (rc == FOEHN_OK) {
        /* A job of n ranks holds n descriptors here at once. */
        foehn_fd_limit_raise((unsigned long long)srv->size + 128);
        rc = listen_on(srv, options->bind_host ? options->bind_host : "127.0.0.1", err);
    }
    if (rc == FOEHN_OK && (srv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        rc = foehn_fail(err, FOEHN_ERR_SYSTEM, "eventfd: %s", strerror(errno));
    if (rc == FOEHN_OK && (errno = start_thread(srv)) != 0)
        rc = foehn_fail(err, FOEHN_ERR_SYSTEM, "cannot start the rendezvous thread: %s",
                        strerror(errno));
    if (rc != FOEHN_OK) {
        server_free(srv);
        return rc;
    }
    *out = srv;
    return FOEHN_OK;
}

int foehn_rdv_server_port(const foehn_rdv_server *server)
{
    return server->port;
}

static void wake(foehn_rdv_server *srv)
{
    uint64_t one = 1;
    while (write(srv->wake_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void foehn_rdv_server_rank_died(foehn_rdv_server *server, int rank, const char *how)
{
    if (!server || rank < 0 || rank >= server->size)
        return;
    rdv_death *d = malloc(sizeof *d);
    char *copy = strdup(how && *how ? how : "reason unknown");
    if (!d || !copy) {
        free(d);
        free(copy);
        return;
    }
    d->rank = rank;
    d->how = copy;
    pthread_mutex_lock(&server->lock);
    d->next = server->deaths;
    server->deaths = d;
    pthread_mutex_unlock(&server->lock);
    wake(server);
}

void foehn_rdv_server_stop(foehn_rdv_server *server)
{
    if (!server)
        return;
    pthread_mutex_lock(&server->lock);
    server->stopping = true;
    pthread_mutex_unlock(&server->lock);
    wake(server);
    pthread_join(server->thread, NULL);
    server_free(server);
}

int foehn_rdv_new_token(char token[FOEHN_RDV_TOKEN_LEN + 1], foehn_error *err)
{
    unsigned char raw[RDV_TOKEN_BYTES];
    int rc = foehn_random_bytes(raw, sizeof raw, err);
    if (rc == FOEHN_OK)
        foehn_hex_encode(raw, sizeof raw, token);
    return rc;
}
