/* The foehn provider: a rank of `foehn run` talking to its rendezvous service
 * (rendezvous.c; the wire is in rendezvous_wire.h).
 *
 * One connection per rank, opened at init. put/commit only stage bytes locally;
 * a fence is one round trip that sends this rank's committed keys and brings back
 * every rank's, which are kept in a local table so that get never touches the
 * network. Every wait is a poll() with a deadline.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/error.h"
#include "common/fdio.h"
#include "discovery/env.h"
#include "net/connect.h"
#include "pm/pm.h"
#include "pm/rendezvous.h"
#include "pm/rendezvous_wire.h"

/* How long init keeps retrying a refused connection: the server is up before the
 * ranks start, so this only covers a launcher that is a little late. */
#define CONNECT_WINDOW 10.0
/* After a fence timed out, how long to wait for the server's list of missing ranks. */
#define STATUS_WAIT 2.0
/* After ABORT, how long to wait for the launcher to act before exiting anyway. */
#define ABORT_WAIT 10.0
#define BYE_WAIT 1.0

typedef struct bytes {
    unsigned char *data;
    size_t len, cap;
} bytes;

/* One rank's value for one key; points into a retained FENCE_DONE payload. */
typedef struct kv_entry {
    const unsigned char *key, *value;
    size_t key_len, value_len;
} kv_entry;

typedef struct rank_table {
    kv_entry *items; /* oldest first: a lookup scans from the end so the newest wins */
    size_t len, cap;
} rank_table;

typedef struct client {
    int fd;
    char addr[256];       /* FOEHN_RDV_ADDR as given */
    int rank, size;
    uint32_t seq;         /* fences completed */
    bytes staged, committed; /* kv entries without the count */
    uint32_t staged_count, committed_count;
    rank_table *tables;   /* [size] */
    unsigned char **replies; /* FENCE_DONE payloads the tables point into */
    size_t nreplies, replies_cap;
    size_t frame_max;     /* largest frame the server may send us */
    /* The frame being read, kept across calls so a timeout never loses sync. */
    unsigned char hdr[RDV_HEADER_LEN];
    size_t hdr_got;
    unsigned char *payload;
    size_t payload_len, payload_got;
    /* A fence that failed leaves this rank out of later ones: they fail the same way. */
    int failed;
    char failure[sizeof(((foehn_error *)0)->message)];
} client;

static int bytes_append(bytes *b, const void *data, size_t len)
{
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < len)
            cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown)
            return FOEHN_ERR_NOMEM;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return FOEHN_OK;
}

/* ---- the connection ------------------------------------------------------ */

/* Sends all of buf by deadline: FOEHN_OK, FOEHN_ERR_TIMEOUT, or FOEHN_ERR_PEER (gone). */
static int send_all(client *c, const unsigned char *buf, size_t len, double deadline)
{
    while (len > 0) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return FOEHN_ERR_PEER;
        int ready = foehn_wait_fd(c->fd, POLLOUT, deadline);
        if (ready == 0)
            return FOEHN_ERR_TIMEOUT;
        if (ready < 0)
            return FOEHN_ERR_PEER;
    }
    return FOEHN_OK;
}

static int send_frame(client *c, rdv_frame_type type, const void *payload, size_t len,
                      double deadline)
{
    unsigned char hdr[RDV_HEADER_LEN];
    rdv_put_header(hdr, (uint32_t)len, type);
    int rc = send_all(c, hdr, sizeof hdr, deadline);
    return rc == FOEHN_OK ? send_all(c, payload, len, deadline) : rc;
}

/* Reads one frame by deadline into *payload (malloc'd, the caller frees).
 * FOEHN_OK, FOEHN_ERR_TIMEOUT (a partial frame stays buffered for the next call),
 * FOEHN_ERR_PEER (the server closed), FOEHN_ERR_PROTOCOL (too large), FOEHN_ERR_NOMEM. */
static int read_frame(client *c, double deadline, unsigned *type, unsigned char **payload,
                      size_t *len)
{
    for (;;) {
        bool in_header = c->hdr_got < RDV_HEADER_LEN;
        if (!in_header && c->payload_got == c->payload_len) {
            *type = c->hdr[4];
            *payload = c->payload;
            *len = c->payload_len;
            c->payload = NULL;
            c->hdr_got = 0;
            return FOEHN_OK;
        }
        unsigned char *dst = in_header ? c->hdr + c->hdr_got : c->payload + c->payload_got;
        size_t want = in_header ? RDV_HEADER_LEN - c->hdr_got : c->payload_len - c->payload_got;
        ssize_t n = recv(c->fd, dst, want, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            return FOEHN_ERR_PEER;
        if (n < 0) {
            int ready = errno == EINTR ? 1 : foehn_wait_fd(c->fd, POLLIN, deadline);
            if (ready == 0)
                return FOEHN_ERR_TIMEOUT;
            if (ready < 0)
                return FOEHN_ERR_PEER;
            continue;
        }
        if (!in_header) {
            c->payload_got += (size_t)n;
            continue;
        }
        c->hdr_got += (size_t)n;
        if (c->hdr_got < RDV_HEADER_LEN)
            continue;
        c->payload_len = foehn_get_u32(c->hdr);
        if (c->payload_len > c->frame_max)
            return FOEHN_ERR_PROTOCOL;
        c->payload = malloc(c->payload_len ? c->payload_len : 1);
        if (!c->payload) {
            c->hdr_got = 0; /* this stream is lost anyway */
            return FOEHN_ERR_NOMEM;
        }
        c->payload_got = 0;
    }
}

/* Splits "host:port" or "[v6]:port". */
static int parse_addr(const char *addr, char *host, size_t host_cap, char *port, foehn_error *err)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t hlen = colon ? (size_t)(colon - addr) : 0;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    int p = 0;
    if (colon && foehn_env_parse_count(FOEHN_RDV_ADDR_VAR, colon + 1, &p, NULL) != FOEHN_OK)
        p = 0;
    if (!colon || hlen == 0 || hlen >= host_cap || p < 1 || p > 65535)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          FOEHN_RDV_ADDR_VAR "=\"%s\" is not host:port (foehn run sets it)", addr);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, 6, "%d", p);
    return FOEHN_OK;
}

/* One connect to a, finished by deadline: 0, or an errno. */
static int connect_once(const struct addrinfo *a, double deadline, int *fd_out)
{
    int e = foehn_tcp_connect(a, deadline, fd_out);
    if (e != 0)
        return e;
    int one = 1; /* fences are small request/reply exchanges: never wait for Nagle */
    setsockopt(*fd_out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

/* Connects, retrying for a short while: the launcher may be a moment late to listen. */
static int connect_server(client *c, double window, foehn_error *err)
{
    char host[256], port[6];
    int rc = parse_addr(c->addr, host, sizeof host, port, err);
    if (rc != FOEHN_OK)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0)
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "cannot resolve the host of foehn run's rendezvous " FOEHN_RDV_ADDR_VAR
                          "=\"%s\": %s",
                          c->addr, gai_strerror(gai));
    double start = foehn_now(), deadline = start + window, pause = 0.005;
    int e = ETIMEDOUT;
    for (;;) {
        for (struct addrinfo *a = ai; a; a = a->ai_next)
            if ((e = connect_once(a, deadline, &c->fd)) == 0)
                break;
        if (e == 0 || foehn_now() + pause > deadline)
            break;
        poll(NULL, 0, (int)(pause * 1000));
        pause = pause * 2 > 0.2 ? 0.2 : pause * 2;
    }
    freeaddrinfo(ai);
    if (e != 0)
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "cannot reach foehn run's rendezvous at %s (" FOEHN_RDV_ADDR_VAR
                          "): %s, still after %.1f s; check that foehn run is still running "
                          "and that this host can reach that address (a firewall?)",
                          c->addr, strerror(e), foehn_now() - start);
    return FOEHN_OK;
}

/* HELLO, then wait for WELCOME: the server closes on us if anything was wrong. */
static int introduce(client *c, const unsigned char token[RDV_TOKEN_BYTES], double timeout,
                     foehn_error *err)
{
    unsigned char hello[RDV_HELLO_LEN] = {0};
    foehn_put_u32(hello, RDV_MAGIC);
    hello[4] = (unsigned char)(RDV_VERSION >> 8);
    hello[5] = (unsigned char)RDV_VERSION;
    memcpy(hello + 8, token, RDV_TOKEN_BYTES);
    foehn_put_u32(hello + 8 + RDV_TOKEN_BYTES, (uint32_t)c->rank);
    double deadline = foehn_now() + timeout;
    unsigned type = 0;
    unsigned char *payload = NULL;
    size_t len = 0;
    int rc = send_frame(c, RDV_HELLO, hello, sizeof hello, deadline);
    if (rc == FOEHN_OK)
        rc = read_frame(c, deadline, &type, &payload, &len);
    if (rc == FOEHN_ERR_PEER)
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "foehn run's rendezvous at %s turned rank %d away: "
                          FOEHN_RDV_TOKEN_VAR " is not this job's, or another process already "
                          "connected as rank %d",
                          c->addr, c->rank, c->rank);
    if (rc == FOEHN_ERR_TIMEOUT)
        return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                          "waited %g s for foehn run's rendezvous at %s to answer rank %d's hello",
                          timeout, c->addr, c->rank);
    if (rc == FOEHN_OK && (type != RDV_WELCOME || len != 4))
        rc = FOEHN_ERR_PROTOCOL;
    uint32_t size = rc == FOEHN_OK ? foehn_get_u32(payload) : 0;
    free(payload);
    if (rc != FOEHN_OK)
        return foehn_fail(err, rc, "foehn run's rendezvous at %s answered rank %d's hello "
                          "with something unexpected", c->addr, c->rank);
    if (size != (uint32_t)c->size)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "FOEHN_SIZE=%d, but foehn run's rendezvous at %s serves a job of %u "
                          "ranks", c->size, c->addr, size);
    return FOEHN_OK;
}

/* ---- init: the environment foehn run sets ------------------------------ */

static int env_count(char *const *envp, const char *name, int *out, foehn_error *err)
{
    const char *value = foehn_env_get(envp, name);
    if (!value)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "%s is not set (FOEHN_PM=foehn expects the variables foehn run sets)",
                          name);
    return foehn_env_parse_count(name, value, out, err);
}

/* Reads and checks every variable; fills pm's numbers, c's rank/size/addr and token. */
static int read_env(foehn_pm *pm, client *c, char *const *envp,
                    unsigned char token[RDV_TOKEN_BYTES], foehn_error *err)
{
    const struct {
        const char *name;
        int *value;
    } counts[] = {{"FOEHN_RANK", &pm->rank},         {"FOEHN_SIZE", &pm->size},
                  {"FOEHN_LOCAL_RANK", &pm->local_rank}, {"FOEHN_LOCAL_SIZE", &pm->local_size},
                  {"FOEHN_NODE_INDEX", &pm->node_index}, {"FOEHN_NUM_NODES", &pm->num_nodes}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        int rc = env_count(envp, counts[i].name, counts[i].value, err);
        if (rc != FOEHN_OK)
            return rc;
    }
    /* Each index must lie below its count (pairs in the table above). */
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i += 2)
        if (*counts[i + 1].value < 1 || *counts[i].value >= *counts[i + 1].value ||
            *counts[i + 1].value > RDV_SIZE_MAX)
            return foehn_fail(err, FOEHN_ERR_INVALID, "%s=%d does not fit %s=%d",
                              counts[i].name, *counts[i].value, counts[i + 1].name,
                              *counts[i + 1].value);
    if (!foehn_env_get(envp, "FOEHN_JOB_ID"))
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "FOEHN_JOB_ID is not set (FOEHN_PM=foehn expects the variables foehn "
                          "run sets)");
    const char *addr = foehn_env_get(envp, FOEHN_RDV_ADDR_VAR);
    if (!addr || strlen(addr) >= sizeof c->addr)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          FOEHN_RDV_ADDR_VAR " is %s (foehn run sets it to host:port)",
                          addr ? "too long" : "not set");
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    const char *hex = foehn_env_get(envp, FOEHN_RDV_TOKEN_VAR);
    if (rdv_token_decode(hex, token) != 0)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          FOEHN_RDV_TOKEN_VAR " is %s: expected %d hex digits (foehn run sets it)",
                          hex ? "malformed" : "not set", FOEHN_RDV_TOKEN_LEN);
    c->rank = pm->rank;
    c->size = pm->size;
    return FOEHN_OK;
}

static void client_free(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->staged.data);
    free(c->committed.data);
    if (c->tables)
        for (int r = 0; r < c->size; r++)
            free(c->tables[r].items);
    free(c->tables);
    for (size_t i = 0; i < c->nreplies; i++)
        free(c->replies[i]);
    free(c->replies);
    free(c->payload);
    free(c);
}

static int foehn_init(foehn_pm *pm, char *const *envp, foehn_error *err)
{
    client *c = calloc(1, sizeof *c);
    if (!c)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    c->fd = -1;
    unsigned char token[RDV_TOKEN_BYTES];
    int rc = read_env(pm, c, envp, token, err);
    if (rc == FOEHN_OK) {
        c->frame_max = (size_t)RDV_FENCE_TOTAL_MAX + 8 + 4 * (size_t)c->size;
        c->tables = calloc((size_t)c->size, sizeof *c->tables);
        if (!c->tables)
            rc = foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    if (rc == FOEHN_OK)
        rc = connect_server(c, pm->timeout < CONNECT_WINDOW ? pm->timeout : CONNECT_WINDOW, err);
    if (rc == FOEHN_OK)
        rc = introduce(c, token, pm->timeout, err);
    memset(token, 0, sizeof token);
    if (rc != FOEHN_OK) {
        client_free(c);
        return rc;
    }
    pm->state = c;
    return FOEHN_OK;
}

/* ---- put, commit, get ----------------------------------------------------- */

static int foehn_put(foehn_pm *pm, const char *key, const void *value, size_t len,
                     foehn_error *err)
{
    client *c = pm->state;
    size_t key_len = strlen(key); /* pm.c checked key and len */
    if (c->staged.len + c->committed.len + 1 + key_len + 4 + len + 64 > RDV_CLIENT_FRAME_MAX)
        return foehn_fail(err, FOEHN_ERR_LIMIT,
                          "rank %d's keys and values for one fence would exceed %u KiB",
                          c->rank, RDV_CLIENT_FRAME_MAX >> 10);
    unsigned char head[1], vlen[4];
    head[0] = (unsigned char)key_len;
    foehn_put_u32(vlen, (uint32_t)len);
    size_t undo = c->staged.len;
    if (bytes_append(&c->staged, head, 1) || bytes_append(&c->staged, key, key_len) ||
        bytes_append(&c->staged, vlen, 4) || bytes_append(&c->staged, value, len)) {
        c->staged.len = undo;
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    c->staged_count++;
    return FOEHN_OK;
}

static int foehn_commit(foehn_pm *pm, foehn_error *err)
{
    client *c = pm->state;
    if (bytes_append(&c->committed, c->staged.data, c->staged.len) != FOEHN_OK)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    c->committed_count += c->staged_count;
    c->staged.len = 0;
    c->staged_count = 0;
    return FOEHN_OK;
}

static int foehn_get(foehn_pm *pm, int rank, const char *key, void **value, size_t *len,
                     double timeout, foehn_error *err)
{
    (void)timeout; /* everything is local by now */
    client *c = pm->state;
    size_t key_len = strlen(key);
    const rank_table *t = &c->tables[rank];
    for (size_t i = t->len; i-- > 0;) {
        const kv_entry *e = &t->items[i];
        if (e->key_len != key_len || memcmp(e->key, key, key_len) != 0)
            continue;
        char *copy = malloc(e->value_len + 1);
        if (!copy)
            return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
        memcpy(copy, e->value, e->value_len);
        copy[e->value_len] = '\0';
        *value = copy;
        *len = e->value_len;
        return FOEHN_OK;
    }
    if (c->seq == 0)
        return foehn_fail(err, FOEHN_ERR_NOTFOUND,
                          "rank %d's key \"%s\" is not known: no fence has run yet (values "
                          "become visible after put, commit and fence)",
                          rank, key);
    return foehn_fail(err, FOEHN_ERR_NOTFOUND, "rank %d put no key \"%s\" (as of fence %u)", rank,
                      key, c->seq);
}

/* ---- fence --------------------------------------------------------------- */

static int table_add(rank_table *t, const kv_entry *e)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 4;
        kv_entry *grown = realloc(t->items, cap * sizeof *grown);
        if (!grown)
            return FOEHN_ERR_NOMEM;
        t->items = grown;
        t->cap = cap;
    }
    t->items[t->len++] = *e;
    return FOEHN_OK;
}

/* Is p a well-formed FENCE_DONE for this job? */
static int absorb_check(const client *c, const unsigned char *p, size_t len)
{
    if (len < 8 || foehn_get_u32(p + 4) != (uint32_t)c->size)
        return FOEHN_ERR_PROTOCOL;
    size_t pos = 8;
    const char *why;
    for (int r = 0; r < c->size; r++) {
        if (len - pos < 4 || len - pos - 4 < foehn_get_u32(p + pos))
            return FOEHN_ERR_PROTOCOL;
        size_t n = foehn_get_u32(p + pos);
        if (rdv_kv_check(p + pos + 4, n, &why) != 0)
            return FOEHN_ERR_PROTOCOL;
        pos += 4 + n;
    }
    return pos == len ? FOEHN_OK : FOEHN_ERR_PROTOCOL;
}

/* How many entries a checked FENCE_DONE holds. */
static size_t entries_in(const client *c, const unsigned char *p)
{
    size_t pos = 8, entries = 0;
    for (int r = 0; r < c->size; r++) {
        entries += foehn_get_u32(p + pos + 4);
        pos += 4 + foehn_get_u32(p + pos);
    }
    return entries;
}

/* Checks a whole FENCE_DONE payload, then files its entries. Takes p: keeps it when
 * any entry points into it (barriers carry none and are dropped at once). */
static int absorb(client *c, unsigned char *p, size_t len)
{
    int rc = absorb_check(c, p, len);
    if (rc != FOEHN_OK || entries_in(c, p) == 0) {
        free(p);
        return rc;
    }
    if (c->nreplies == c->replies_cap) {
        size_t cap = c->replies_cap ? 2 * c->replies_cap : 4;
        unsigned char **grown = realloc(c->replies, cap * sizeof *grown);
        if (!grown) {
            free(p);
            return FOEHN_ERR_NOMEM;
        }
        c->replies = grown;
        c->replies_cap = cap;
    }
    c->replies[c->nreplies++] = p;
    size_t pos = 8;
    for (int r = 0; r < c->size; r++) {
        const unsigned char *block = p + pos + 4;
        size_t n = foehn_get_u32(p + pos), at = 4;
        for (uint32_t i = foehn_get_u32(block); i > 0; i--) {
            kv_entry e;
            rdv_kv_next(block, &at, &e.key, &e.key_len, &e.value, &e.value_len);
            if (table_add(&c->tables[r], &e) != FOEHN_OK)
                return FOEHN_ERR_NOMEM;
        }
        pos += 4 + n;
    }
    return FOEHN_OK;
}
/* Records a failure that takes this rank out of later fences. */
static int fence_fail(client *c, foehn_error *err, int status, const char *fmt, ...)
    FOEHN_PRINTF(4, 5);
static int fence_fail(client *c, foehn_error *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->failure, sizeof c->failure, fmt, ap);
    va_end(ap);
    c->failed = status;
    return foehn_fail(err, status, "%s", c->failure);
}

/* The fence timed out: ask the server who is missing, for a message that helps.
 * The fence may also complete while we ask. */
static int fence_timed_out(foehn_pm *pm, double timeout, foehn_error *err)
{
    client *c = pm->state;
    char ctx[128], missing[RDV_TEXT_MAX + 64] = "";
    foehn_pm_context(pm, ctx, sizeof ctx);
    unsigned char seq[4];
    foehn_put_u32(seq, c->seq + 1);
    double deadline = foehn_now() + STATUS_WAIT;
    int rc = send_frame(c, RDV_STATUS, seq, sizeof seq, deadline);
    while (rc == FOEHN_OK) {
        unsigned type;
        unsigned char *p;
        size_t len;
        rc = read_frame(c, deadline, &type, &p, &len);
        if (rc != FOEHN_OK)
            break;
        if (type == RDV_FENCE_DONE && len >= 4 && foehn_get_u32(p) == c->seq + 1) {
            if ((rc = absorb(c, p, len)) != FOEHN_OK)
                return fence_fail(c, err, rc, "foehn run's rendezvous at %s sent a malformed "
                                  "fence reply", c->addr);
            c->seq++;
            return FOEHN_OK;
        }
        if (type == RDV_DIED && len >= 4) {
            char text[RDV_TEXT_MAX + 1];
            snprintf(text, sizeof text, "%.*s", (int)(len - 4), (const char *)p + 4);
            free(p);
            return fence_fail(c, err, FOEHN_ERR_PEER, "%s (%s)", text, ctx);
        }
        if (type == RDV_STATUS_REPLY && len >= 4) {
            snprintf(missing, sizeof missing, "; %u of %d ranks arrived; ranks not arrived: %.*s",
                     foehn_get_u32(p), c->size, (int)(len - 4), (const char *)p + 4);
            free(p);
            break;
        }
        free(p);
    }
    return fence_fail(c, err, FOEHN_ERR_TIMEOUT,
                      "waited %g s for fence %u of all %d ranks at foehn run's rendezvous %s "
                      "(%s)%s; every rank must call the fence, and foehn run's output names "
                      "any rank that died",
                      timeout, c->seq + 1, c->size, c->addr, ctx, missing);
}

static int fence_lost(foehn_pm *pm, int rc, foehn_error *err)
{
    client *c = pm->state;
    char ctx[128];
    foehn_pm_context(pm, ctx, sizeof ctx);
    if (rc == FOEHN_ERR_PEER)
        return fence_fail(c, err, rc,
                          "the rendezvous service (foehn run) at %s went away during fence %u (%s)",
                          c->addr, c->seq + 1, ctx);
    if (rc == FOEHN_ERR_NOMEM)
        return fence_fail(c, err, rc, "out of memory reading fence %u", c->seq + 1);
    return fence_fail(c, err, FOEHN_ERR_PROTOCOL,
                      "foehn run's rendezvous at %s sent something malformed during fence %u (%s)",
                      c->addr, c->seq + 1, ctx);
}

/* Waits for this fence's reply; DIED ends it at once. */
static int fence_wait(foehn_pm *pm, double deadline, double timeout, foehn_error *err)
{
    client *c = pm->state;
    for (;;) {
        unsigned type;
        unsigned char *p;
        size_t len;
        int rc = read_frame(c, deadline, &type, &p, &len);
        if (rc == FOEHN_ERR_TIMEOUT)
            return fence_timed_out(pm, timeout, err);
        if (rc != FOEHN_OK)
            return fence_lost(pm, rc, err);
        if (type == RDV_FENCE_DONE && len >= 4 && foehn_get_u32(p) == c->seq + 1) {
            rc = absorb(c, p, len);
            if (rc != FOEHN_OK)
                return fence_lost(pm, rc, err);
            c->seq++;
            return FOEHN_OK;
        }
        if (type == RDV_DIED && len >= 4) {
            char ctx[128], text[RDV_TEXT_MAX + 1];
            uint32_t rank = foehn_get_u32(p);
            snprintf(text, sizeof text, "%.*s", (int)(len - 4), (const char *)p + 4);
            free(p);
            return fence_fail(c, err, rank == RDV_NO_RANK ? FOEHN_ERR_LIMIT : FOEHN_ERR_PEER,
                              "%s (fence %u, %s)", text, c->seq + 1,
                              foehn_pm_context(pm, ctx, sizeof ctx));
        }
        free(p);
        if (type != RDV_STATUS_REPLY) /* a late answer to an earlier question is harmless */
            return fence_lost(pm, FOEHN_ERR_PROTOCOL, err);
    }
}

static int foehn_fence(foehn_pm *pm, double timeout, foehn_error *err)
{
    client *c = pm->state;
    if (c->failed)
        return foehn_fail(err, c->failed, "%s", c->failure);
    double deadline = foehn_now() + timeout;
    /* One frame: seq, count, entries. */
    size_t len = 8 + c->committed.len;
    unsigned char *frame = malloc(RDV_HEADER_LEN + len);
    if (!frame)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    rdv_put_header(frame, (uint32_t)len, RDV_FENCE);
    foehn_put_u32(frame + RDV_HEADER_LEN, c->seq + 1);
    foehn_put_u32(frame + RDV_HEADER_LEN + 4, c->committed_count);
    if (c->committed.len)
        memcpy(frame + RDV_HEADER_LEN + 8, c->committed.data, c->committed.len);
    int rc = send_all(c, frame, RDV_HEADER_LEN + len, deadline);
    free(frame);
    if (rc == FOEHN_ERR_TIMEOUT)
        return fence_timed_out(pm, timeout, err);
    if (rc != FOEHN_OK)
        return fence_lost(pm, rc, err);
    c->committed.len = 0;
    c->committed_count = 0;
    return fence_wait(pm, deadline, timeout, err);
}

/* ---- abort, finalize ----------------------------------------------------- */

/* Reads and drops whatever arrives until the server closes or deadline passes. */
static void drain(client *c, double deadline)
{
    unsigned char sink[512];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            return;
        if (n < 0 && errno != EINTR && foehn_wait_fd(c->fd, POLLIN, deadline) <= 0)
            return;
    }
}

static int foehn_abort(foehn_pm *pm, int status, const char *message)
{
    client *c = pm->state;
    const char *text = message ? message : "";
    size_t n = strnlen(text, RDV_TEXT_MAX);
    unsigned char payload[4 + RDV_TEXT_MAX];
    foehn_put_u32(payload, (uint32_t)status);
    memcpy(payload + 4, text, n);
    double deadline = foehn_now() + ABORT_WAIT;
    /* The server closes this connection once the launcher has the message; waiting for
     * that makes the launcher hear the abort before it sees this process exit. */
    if (send_frame(c, RDV_ABORT, payload, 4 + n, deadline) == FOEHN_OK)
        drain(c, deadline);
    else
        fprintf(stderr, "foehn: abort (foehn run could not be told): %s\n", text);
    exit(status ? status : 1);
}

static void foehn_finalize(foehn_pm *pm)
{
    client *c = pm->state;
    if (!c)
        return;
    if (c->fd >= 0) {
        /* BYE tells the server this is a finish, not a death. Unread bytes at close()
         * would turn our FIN into a reset, so read what is there first. */
        double deadline = foehn_now() + BYE_WAIT;
        send_frame(c, RDV_BYE, NULL, 0, deadline);
        shutdown(c->fd, SHUT_WR);
        drain(c, foehn_now()); /* what is already here, without waiting */
    }
    client_free(c);
    pm->state = NULL;
}

const foehn_pm_provider foehn_pm_provider_foehn = {
    .name = "foehn",
    .init = foehn_init,
    .put = foehn_put,
    .commit = foehn_commit,
    .fence = foehn_fence,
    .get = foehn_get,
    .abort = foehn_abort,
    .finalize = foehn_finalize,
};
