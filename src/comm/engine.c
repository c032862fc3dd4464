/* The engine's life: joining (endpoints through pm, the full mesh of authenticated
 * connections), the progress thread, failure, and finalize. */
#include "comm/engine.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "comm/coll.h"
#include "comm/shm.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fdio.h"
#include "common/random.h"
#include "discovery/env.h"
#include "net/address.h"
#include "net/connect.h"
#include "pm/pm.h"

extern char **environ;

#define DEFAULT_COMM_TIMEOUT 1800.0
#define KEY_TOKEN "foehn.comm.token"
#define KEY_ENDPOINT "foehn.comm.ep"
/* Frames longer than this are a broken peer, not a message (1 TiB). */
#define FRAME_MAX ((uint64_t)1 << 40)

/* The one engine of the process. Static, so that requests and communicators the
 * caller still holds after finalize can be released safely (their memory is theirs,
 * the engine's lock outlives everything). */
static foehn_engine engine = {.mu = PTHREAD_MUTEX_INITIALIZER, .listen_fd = -1, .wake_fd = -1,
                              .poll_fd = -1, .dead = -1};
static bool initialized, finalized;
static unsigned char token[FOEHN_WIRE_TOKEN];
/* Random bytes a peer on this host reads out of this process (process_vm_readv) to
 * prove that single copy reaches the right process: a pid alone could name another
 * process in another pid namespace on the same kernel. */
static unsigned char probe[16];

foehn_engine *foehn_engine_get(void)
{
    return initialized && !finalized ? &engine : NULL;
}

int foehn_comm_initialized(void)
{
    return initialized && !finalized;
}

double foehn_comm_timeout(void)
{
    const char *value = getenv("FOEHN_COMM_TIMEOUT");
    char *end = NULL;
    double t = value && *value ? strtod(value, &end) : 0;
    if (value && *value && end && *end == '\0' && t > 0)
        return t;
    return DEFAULT_COMM_TIMEOUT;
}

const char *foehn_engine_host(const foehn_engine *e, int world_rank)
{
    if (e->hosts && world_rank >= 0 && world_rank < e->size && e->hosts[world_rank])
        return e->hosts[world_rank];
    return "?";
}

void foehn_engine_wake(foehn_engine *e)
{
    uint64_t one = 1;
    /* Only a progress thread asleep on the sockets needs telling: one that stands
     * aside for a waiter (progress_parked) looks at everything anew each millisecond,
     * and one that holds the lock will look before it sleeps. Waking it for nothing
     * cost a context switch per same-host message. */
    if (e->progress_watching && write(e->wake_fd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is already non-zero, the thread will wake anyway. */
    }
    foehn_engine_wake_poller(e);
}

void foehn_engine_wake_poller(foehn_engine *e)
{
    uint64_t one = 1;
    if (e->poller && write(e->poll_fd, &one, sizeof one) < 0) {
        /* EAGAIN: the same */
    }
}

int foehn_engine_check(const foehn_engine *e, foehn_error *err)
{
    if (e->failed != FOEHN_OK)
        return foehn_fail(err, e->failed, "%s", e->failure ? e->failure : "the engine failed");
    if (e->stopping)
        return foehn_fail(err, FOEHN_ERR_INVALID, "the communicator has been finalized");
    return FOEHN_OK;
}

void foehn_engine_fail(foehn_engine *e, int status, const char *fmt, ...)
{
    if (e->failed != FOEHN_OK)
        return; /* the first cause is the one worth telling */
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    e->failed = status;
    e->failure = strdup(buf);
    foehn_p2p_fail_all(e);
    pthread_cond_broadcast(&e->done_cv);
    foehn_engine_wake_poller(e);
}

/* ---- connecting ---------------------------------------------------------- */

static void tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A peer whose host vanishes (no FIN, no RST) is noticed within about 30 s. */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = 10, interval = 5, count = 4;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}


static int resolve(const char *ip, const char *port, struct addrinfo **out, foehn_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    int rc = getaddrinfo(ip, port, &hints, out);
    if (rc != 0)
        return foehn_fail(err, FOEHN_ERR_INVALID, "bad address %s port %s: %s", ip, port,
                          gai_strerror(rc));
    return FOEHN_OK;
}

static int listen_on(const char *ip, int *fd_out, int *port_out, foehn_error *err)
{
    struct addrinfo *ai;
    int rc = resolve(ip, "0", &ai, err);
    if (rc != FOEHN_OK)
        return rc;
    int e = foehn_tcp_listen(ai, SOMAXCONN, false, fd_out, port_out);
    freeaddrinfo(ai);
    if (e != 0)
        return foehn_fail(err, FOEHN_ERR_SYSTEM, "cannot listen on %s: %s", ip, strerror(e));
    return FOEHN_OK;
}

static void hello_encode(unsigned char out[FOEHN_WIRE_HELLO], int rank)
{
    memcpy(out, FOEHN_WIRE_MAGIC, 8);
    foehn_wire_put32(out + 8, (uint32_t)rank);
    memcpy(out + 12, token, FOEHN_WIRE_TOKEN);
}

/* A hello's rank, or -1 when it is not a hello of this job. */
static int hello_rank(const unsigned char in[FOEHN_WIRE_HELLO], int size)
{
    bool ok = memcmp(in, FOEHN_WIRE_MAGIC, 8) == 0;
    ok = foehn_secrets_equal(in + 12, token, FOEHN_WIRE_TOKEN) && ok;
    uint32_t rank = foehn_wire_get32(in + 8);
    return ok && rank < (uint32_t)size ? (int)rank : -1;
}

/* Reads exactly len bytes from a blocking-in-spirit fd before deadline. */
static int read_exact(int fd, unsigned char *buf, size_t len, double deadline)
{
    size_t got = 0;
    while (got < len) {
        int ready = foehn_wait_fd(fd, POLLIN, deadline);
        if (ready <= 0)
            return ready == 0 ? FOEHN_ERR_TIMEOUT : FOEHN_ERR_SYSTEM;
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return FOEHN_ERR_PEER;
        got += (size_t)n;
    }
    return FOEHN_OK;
}

static int write_exact(int fd, const unsigned char *buf, size_t len, double deadline)
{
    size_t put = 0;
    while (put < len) {
        int ready = foehn_wait_fd(fd, POLLOUT, deadline);
        if (ready <= 0)
            return ready == 0 ? FOEHN_ERR_TIMEOUT : FOEHN_ERR_SYSTEM;
        ssize_t n = send(fd, buf + put, len - put, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return FOEHN_ERR_PEER;
        put += (size_t)n;
    }
    return FOEHN_OK;
}

/* endpoint value: "<port> <ip> <hostname>" */
static int connect_to(foehn_engine *e, int peer, const char *endpoint, double deadline,
                      foehn_error *err)
{
    char ip[128] = "", port[16] = "";
    if (sscanf(endpoint, "%15s %127s", port, ip) != 2)
        return foehn_fail(err, FOEHN_ERR_PROTOCOL, "rank %d published a malformed endpoint \"%s\"",
                          peer, endpoint);
    struct addrinfo *ai;
    int rc = resolve(ip, port, &ai, err);
    if (rc != FOEHN_OK)
        return rc;
    int fd = -1;
    int cerr = foehn_tcp_connect(ai, deadline, &fd);
    freeaddrinfo(ai);
    rc = cerr == 0 ? FOEHN_OK : cerr == ETIMEDOUT ? FOEHN_ERR_TIMEOUT : FOEHN_ERR_PEER;
    errno = cerr;
    unsigned char hello[FOEHN_WIRE_HELLO];
    hello_encode(hello, e->rank);
    if (rc == FOEHN_OK)
        rc = write_exact(fd, hello, sizeof hello, deadline);
    if (rc != FOEHN_OK) {
        if (fd >= 0)
            close(fd);
        return foehn_fail(err, rc, "rank %d could not connect to rank %d (host %s) at %s port %s: "
                          "%s; check that the hosts reach each other on that network "
                          "(FOEHN_IFACE picks the interface)",
                          e->rank, peer, foehn_engine_host(e, peer), ip, port,
                          rc == FOEHN_ERR_TIMEOUT ? "timed out" : strerror(errno));
    }
    e->peers[peer].fd = fd;
    return FOEHN_OK;
}

/* Accepts until every higher rank has said hello; anything else is closed unread. */
static int accept_higher(foehn_engine *e, double deadline, foehn_error *err)
{
    int want = e->size - 1 - e->rank;
    while (want > 0) {
        int ready = foehn_wait_fd(e->listen_fd, POLLIN, deadline);
        if (ready <= 0)
            break;
        int fd = accept4(e->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            continue;
        unsigned char hello[FOEHN_WIRE_HELLO];
        /* A stranger gets little time: a hello is sent at once after connecting. */
        double hello_deadline = foehn_now() + 5.0 < deadline ? foehn_now() + 5.0 : deadline;
        int rc = read_exact(fd, hello, sizeof hello, hello_deadline);
        int r = rc == FOEHN_OK ? hello_rank(hello, e->size) : -1;
        if (r <= e->rank || e->peers[r].fd >= 0) {
            close(fd); /* not of this job, or a rank that should not call here */
            continue;
        }
        hello_encode(hello, e->rank);
        if (write_exact(fd, hello, sizeof hello, deadline) != FOEHN_OK) {
            close(fd);
            continue;
        }
        e->peers[r].fd = fd;
        want--;
    }
    if (want == 0)
        return FOEHN_OK;
    char missing[256] = "";
    size_t off = 0;
    for (int r = e->rank + 1; r < e->size && off < sizeof missing - 16; r++)
        if (e->peers[r].fd < 0)
            off += (size_t)snprintf(missing + off, sizeof missing - off, "%s%d", off ? "," : "", r);
    return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                      "rank %d waited for %d higher rank(s) to connect (ranks %s) and timed out: "
                      "are those ranks alive, and can they reach this host (%s)?",
                      e->rank, want, missing, foehn_engine_host(e, e->rank));
}

static int await_replies(foehn_engine *e, double deadline, foehn_error *err)
{
    for (int r = 0; r < e->rank; r++) {
        unsigned char hello[FOEHN_WIRE_HELLO];
        int rc = read_exact(e->peers[r].fd, hello, sizeof hello, deadline);
        if (rc == FOEHN_OK && hello_rank(hello, e->size) != r)
            rc = FOEHN_ERR_PROTOCOL;
        if (rc != FOEHN_OK)
            return foehn_fail(err, rc, "rank %d connected to rank %d (host %s) but got no valid "
                              "answer (%s)", e->rank, r, foehn_engine_host(e, r),
                              rc == FOEHN_ERR_TIMEOUT ? "timed out" : "wrong or no token");
    }
    return FOEHN_OK;
}

/* ---- publishing and learning endpoints ------------------------------------ */

static int choose_ip(foehn_engine *e, char *ip, size_t len, foehn_error *err)
{
    const foehn_job *job = &e->pm->job;
    const char **peers = calloc(job->nhosts + 1, sizeof *peers);
    if (!peers)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < job->nhosts; i++)
        if (!job->hostname || strcmp(job->hosts[i], job->hostname) != 0)
            peers[n++] = job->hosts[i];
    foehn_address addr;
    int rc = foehn_address_choose(environ, peers, n, e->pm->num_nodes == 1, &addr, err);
    free(peers);
    if (rc == FOEHN_OK)
        snprintf(ip, len, "%s", addr.ip);
    return rc;
}

/* "<port> <ip> <pid> <probe address> <probe bytes> <host>": the host name and what
 * single copy needs; connect_to reads the first two. */
static int parse_endpoint(foehn_engine *e, int r, const char *value, foehn_error *err)
{
    int port = 0, pid = 0, used = 0;
    unsigned long long addr = 0;
    char ip[128], hex[2 * sizeof probe + 2];
    if (sscanf(value, "%d %127s %d %llx %33s %n", &port, ip, &pid, &addr, hex, &used) < 5 ||
        !used || strlen(hex) != 2 * sizeof probe)
        return foehn_fail(err, FOEHN_ERR_PROTOCOL, "rank %d published a malformed endpoint "
                          "\"%s\"", r, value);
    e->hosts[r] = strdup(value + used);
    e->peers[r].pid = pid;
    e->probes[r].addr = addr;
    for (size_t i = 0; i < sizeof probe; i++)
        e->probes[r].bytes[i] = (unsigned char)(foehn_hex_value(hex[2 * i]) << 4 |
                                                foehn_hex_value(hex[2 * i + 1]));
    return e->hosts[r] ? FOEHN_OK : foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
}

static int exchange_endpoints(foehn_engine *e, char ***endpoints, double timeout, foehn_error *err)
{
    char ip[64], value[FOEHN_PM_VALUE_MAX];
    int port = 0;
    int rc = choose_ip(e, ip, sizeof ip, err);
    if (rc == FOEHN_OK)
        rc = listen_on(ip, &e->listen_fd, &port, err);
    if (rc != FOEHN_OK)
        return rc;
    char probe_hex[2 * sizeof probe + 1];
    rc = foehn_random_bytes(probe, sizeof probe, err);
    if (rc != FOEHN_OK)
        return rc;
    foehn_hex_encode(probe, sizeof probe, probe_hex);
    snprintf(value, sizeof value, "%d %s %d %llx %s %s", port, ip, (int)getpid(),
             (unsigned long long)(uintptr_t)probe, probe_hex, e->hostname ? e->hostname : "?");
    rc = foehn_pm_put(e->pm, KEY_ENDPOINT, value, strlen(value), err);
    if (rc == FOEHN_OK && e->rank == 0) {
        char hex[2 * FOEHN_WIRE_TOKEN + 1];
        rc = foehn_random_bytes(token, sizeof token, err);
        foehn_hex_encode(token, sizeof token, hex);
        if (rc == FOEHN_OK)
            rc = foehn_pm_put(e->pm, KEY_TOKEN, hex, strlen(hex), err);
    }
    if (rc == FOEHN_OK)
        rc = foehn_pm_commit(e->pm, err);
    if (rc == FOEHN_OK)
        rc = foehn_pm_fence(e->pm, timeout, err);
    if (rc != FOEHN_OK)
        return rc;
    if (e->rank != 0) {
        void *hex = NULL;
        size_t hlen = 0;
        rc = foehn_pm_get(e->pm, 0, KEY_TOKEN, &hex, &hlen, timeout, err);
        if (rc == FOEHN_OK && hlen != 2 * FOEHN_WIRE_TOKEN)
            rc = foehn_fail(err, FOEHN_ERR_PROTOCOL, "rank 0's token is malformed");
        for (size_t i = 0; rc == FOEHN_OK && i < FOEHN_WIRE_TOKEN; i++) {
            int hi = foehn_hex_value(((char *)hex)[2 * i]), lo = foehn_hex_value(((char *)hex)[2 * i + 1]);
            if (hi < 0 || lo < 0)
                rc = foehn_fail(err, FOEHN_ERR_PROTOCOL, "rank 0's token is malformed");
            else
                token[i] = (unsigned char)(hi << 4 | lo);
        }
        free(hex);
        if (rc != FOEHN_OK)
            return rc;
    }
    *endpoints = calloc((size_t)e->size, sizeof **endpoints);
    if (!*endpoints)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    for (int r = 0; r < e->size && rc == FOEHN_OK; r++) {
        void *v = NULL;
        size_t vlen = 0;
        rc = foehn_pm_get(e->pm, r, KEY_ENDPOINT, &v, &vlen, timeout, err);
        (*endpoints)[r] = v;
        if (rc == FOEHN_OK)
            rc = parse_endpoint(e, r, v, err);
    }
    return rc;
}

/* ---- the progress thread ------------------------------------------------- */

static void peer_closed(foehn_engine *e, int r, const char *why)
{
    foehn_peer *p = &e->peers[r];
    if (p->gone)
        return;
    p->gone = true;
    if (p->said_bye && !p->in_payload) {
        foehn_p2p_peer_gone(e, r);
        return;
    }
    if (e->failed == FOEHN_OK)
        e->dead = r;
    foehn_engine_fail(e, FOEHN_ERR_PEER,
                      "rank %d (host %s) died: its connection %s without a goodbye "
                      "(the process ended, was killed, or its host went away); this rank (%d) "
                      "stops communicating",
                      r, foehn_engine_host(e, r), why, e->rank);
}

/* Peer r said goodbye, naming in tag (see wire.h) a death that made it stop. */
static void peer_said_bye(foehn_engine *e, int r, uint32_t tag)
{
    int dead = (int)tag - 1;
    if (tag && tag <= (uint32_t)e->size && dead != r && dead != e->rank &&
        e->failed == FOEHN_OK) {
        e->dead = dead;
        foehn_engine_fail(e, FOEHN_ERR_PEER,
                          "rank %d (host %s) died: rank %d saw its connection end without a "
                          "goodbye and stopped; this rank (%d) stops communicating",
                          dead, foehn_engine_host(e, dead), r, e->rank);
    }
    e->peers[r].said_bye = true;
    foehn_p2p_peer_gone(e, r);
}

/* Reads what peer r has sent until the socket is dry; under e->mu. */
static void peer_read(foehn_engine *e, int r)
{
    static unsigned char scratch[65536];
    foehn_peer *p = &e->peers[r];
    while (!p->gone && !p->pulling) {
        unsigned char *to;
        size_t want;
        if (!p->in_payload) {
            if (!p->hdr_want)
                p->hdr_want = FOEHN_WIRE_HEADER;
            to = p->hdr + p->hdr_got;
            want = p->hdr_want - p->hdr_got;
        } else if (p->discard_left) {
            to = scratch;
            want = p->discard_left < sizeof scratch ? p->discard_left : sizeof scratch;
        } else {
            to = p->dst + p->dst_got;
            want = p->dst_len - p->dst_got;
        }
        ssize_t n = want ? recv(p->fd, to, want, MSG_DONTWAIT) : 0;
        if (want && n < 0 && errno == EINTR)
            continue;
        if (want && n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (want && n <= 0) {
            peer_closed(e, r, n == 0 ? "closed" : "broke");
            return;
        }
        if (!p->in_payload) {
            p->hdr_got += (size_t)n;
            if (p->hdr_got < p->hdr_want)
                continue;
            foehn_wire_header h;
            foehn_wire_decode(p->hdr, &h);
            if (h.type == FOEHN_FRAME_RTS && p->hdr_want == FOEHN_WIRE_HEADER && p->pull_ok) {
                p->hdr_want += FOEHN_WIRE_RTS_BODY; /* its body follows */
                continue;
            }
            p->hdr_got = 0;
            p->hdr_want = FOEHN_WIRE_HEADER;
            if (h.type == FOEHN_FRAME_BYE) {
                peer_said_bye(e, r, h.tag);
                continue;
            }
            if (h.type == FOEHN_FRAME_CAPS) {
                p->peer_pulls = true;
                continue;
            }
            if (h.type == FOEHN_FRAME_SEG) {
                /* unmappable: its messages are read with single copy instead */
                if (p->pull_ok && !p->shm_in)
                    p->shm_in = foehn_shm_in_open(p->pid, (int)h.tag, h.len,
                                                  (size_t)h.kind << 12);
                continue;
            }
            if (h.type == FOEHN_FRAME_ACK) {
                foehn_p2p_ack_arrived(e, r, h.tag);
                continue;
            }
            if (h.type == FOEHN_FRAME_RTS && p->pull_ok && h.len <= FRAME_MAX) {
                foehn_p2p_rts_arrived(e, r, &h, p->hdr + FOEHN_WIRE_HEADER);
                continue;
            }
            if (h.type != FOEHN_FRAME_DATA || h.len > FRAME_MAX) {
                foehn_engine_fail(e, FOEHN_ERR_PROTOCOL,
                                  "rank %d (host %s) sent a malformed frame (type %u, length "
                                  "%llu): a different Foehn version?",
                                  r, foehn_engine_host(e, r), h.type, (unsigned long long)h.len);
                return;
            }
            foehn_p2p_arrived(e, r, &h);
        } else if (p->discard_left) {
            p->discard_left -= (size_t)n;
        } else {
            p->dst_got += (size_t)n;
        }
        if (p->in_payload && !p->discard_left && p->dst_got == p->dst_len)
            foehn_p2p_payload_done(e, p);
    }
}

/* Appends to fds (and who) the peers' sockets to watch: for reading, unless a copy out
 * of that peer runs (peer->pulling); with writes, for writing what is queued. */
static nfds_t watch_peers(foehn_engine *e, struct pollfd *fds, int *who, nfds_t n, bool writes)
{
    for (int r = 0; r < e->size; r++) {
        foehn_peer *p = &e->peers[r];
        short events = (short)((p->pulling ? 0 : POLLIN) |
                               (writes && p->send_head ? POLLOUT : 0));
        if (p->fd < 0 || p->gone || !events)
            continue;
        who[n] = r;
        fds[n++] = (struct pollfd){.fd = p->fd, .events = events};
    }
    return n;
}

/* Writes and reads what poll found ready in fds[first..n). */
static void serve_peers(foehn_engine *e, const struct pollfd *fds, const int *who, nfds_t first,
                        nfds_t n)
{
    for (nfds_t i = first; i < n; i++) {
        if (fds[i].revents & POLLOUT)
            foehn_p2p_flush(e, who[i]);
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
            peer_read(e, who[i]);
    }
}

static void drain(int fd)
{
    uint64_t count;
    if (read(fd, &count, sizeof count) < 0) {
        /* EAGAIN: nothing to drain */
    }
}

/* ---- waiters that drive ------------------------------------------------------
 * A waiter that reads its own message itself saves the wake-up of the progress
 * thread, and the progress thread that is woken for a message its waiter then reads
 * costs a context switch for nothing: on a node with more ranks than cores the two
 * halve small-message rates. So while a waiter waits it drives the sockets (up to
 * DRIVE_MAX peers: a larger job's waiters leave them to the progress thread), and the
 * progress thread watches only its eventfd, looking again every millisecond; it
 * stays aside for PARK_S after the last driver left, since a program that waits in
 * a loop is back within microseconds. Anything that needs the sockets served while
 * no one waits (a large send, a death) is served within PARK_S. */
#define DRIVE_MAX 64
#define PARK_S 0.001

void foehn_engine_drive_begin(foehn_engine *e)
{
    e->drivers++;
}

void foehn_engine_drive_end(foehn_engine *e)
{
    e->driven_at = foehn_now();
    /* another waiter asleep on done_cv takes over the sockets */
    if (--e->drivers > 0)
        pthread_cond_broadcast(&e->done_cv);
}

static bool progress_parked(const foehn_engine *e)
{
    return e->size <= DRIVE_MAX && (e->drivers > 0 || foehn_now() - e->driven_at < PARK_S);
}

bool foehn_engine_poll_once(foehn_engine *e)
{
    struct pollfd fds[DRIVE_MAX];
    int who[DRIVE_MAX];
    if (e->size > DRIVE_MAX || e->stopping)
        return false;
    nfds_t n = watch_peers(e, fds, who, 0, true);
    if (!n || poll(fds, n, 0) <= 0)
        return false;
    serve_peers(e, fds, who, 0, n);
    return true;
}

/* The milliseconds poll() may sleep: until `until`, but no longer than an overdue
 * deferred message (wait_ms, -1 for none) allows. */
static int poll_ms(double until, int wait_ms)
{
    int ms = foehn_ms_until(until);
    return wait_ms >= 0 && wait_ms < ms ? wait_ms : ms;
}

bool foehn_engine_poll_wait(foehn_engine *e, double until)
{
    struct pollfd fds[DRIVE_MAX + 1];
    int who[DRIVE_MAX + 1];
    if (e->size > DRIVE_MAX)
        return false;
    /* first: it may drop e->mu while it copies, and what is watched must be chosen
     * after that */
    int overdue = foehn_p2p_pull_overdue(e);
    if (e->stopping || e->poller)
        return false;
    fds[0] = (struct pollfd){.fd = e->poll_fd, .events = POLLIN};
    nfds_t n = watch_peers(e, fds, who, 1, true);
    int ms = poll_ms(until, overdue);
    e->poller = true;
    pthread_mutex_unlock(&e->mu);
    int ready = poll(fds, n, ms);
    pthread_mutex_lock(&e->mu);
    e->poller = false;
    if (ready > 0 && fds[0].revents)
        drain(e->poll_fd);
    if (ready > 0)
        serve_peers(e, fds, who, 1, n);
    return true;
}

static void *progress_main(void *arg)
{
    foehn_engine *e = arg;
    /* named, so that top -H, perf and gdb tell it from the caller's threads */
    prctl(PR_SET_NAME, "foehn-progress", 0, 0, 0);
    struct pollfd *fds = calloc((size_t)e->size + 1, sizeof *fds);
    int *who = calloc((size_t)e->size + 1, sizeof *who);
    pthread_mutex_lock(&e->mu);
    if (!fds || !who)
        foehn_engine_fail(e, FOEHN_ERR_NOMEM, "out of memory in the progress thread");
    while (fds && who && !e->stopping) {
        fds[0] = (struct pollfd){.fd = e->wake_fd, .events = POLLIN};
        int wait_ms = foehn_p2p_pull_overdue(e);
        bool parked = progress_parked(e);
        nfds_t n = parked ? 1 : watch_peers(e, fds, who, 1, true);
        if (parked)
            wait_ms = poll_ms(foehn_now() + PARK_S, wait_ms);
        e->progress_watching = !parked;
        pthread_mutex_unlock(&e->mu);
        int ready = poll(fds, n, wait_ms);
        pthread_mutex_lock(&e->mu);
        e->progress_watching = false;
        if (ready < 0)
            continue; /* EINTR */
        if (fds[0].revents)
            drain(e->wake_fd);
        serve_peers(e, fds, who, 1, n);
    }
    pthread_mutex_unlock(&e->mu);
    free(fds);
    free(who);
    return NULL;
}

static int start_progress(foehn_engine *e, foehn_error *err)
{
    e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    e->poll_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->wake_fd < 0 || e->poll_fd < 0)
        return foehn_fail(err, FOEHN_ERR_SYSTEM, "eventfd: %s", strerror(errno));
    /* The thread takes no signals: they belong to the caller's threads (Python's
     * handlers run on its main thread). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&e->progress, NULL, progress_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return foehn_fail(err, FOEHN_ERR_SYSTEM, "cannot start the progress thread: %s",
                          strerror(rc));
    e->progress_started = true;
    return FOEHN_OK;
}

/* ---- init and finalize ------------------------------------------------------ */

static void release_sockets(foehn_engine *e)
{
    for (int r = 0; e->peers && r < e->size; r++) {
        foehn_peer *p = &e->peers[r];
        if (p->fd >= 0)
            close(p->fd);
        p->fd = -1;
        if (p->msg && p->msg->claimed) { /* off the unexpected list: only here */
            free(p->msg->data);
            free(p->msg);
        }
        p->msg = NULL;
        foehn_shm_out_free(p->shm_out);
        foehn_shm_in_free(p->shm_in);
        p->shm_out = NULL;
        p->shm_in = NULL;
    }
    if (e->listen_fd >= 0)
        close(e->listen_fd);
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    if (e->poll_fd >= 0)
        close(e->poll_fd);
    e->listen_fd = e->wake_fd = e->poll_fd = -1;
}

static void release_all(foehn_engine *e)
{
    release_sockets(e);
    foehn_comm_destroy_all(e);
    while (e->unexpected_head) {
        foehn_msg *m = e->unexpected_head;
        e->unexpected_head = m->next;
        free(m->data);
        free(m);
    }
    e->unexpected_tail = NULL;
    for (int r = 0; e->hosts && r < e->size; r++)
        free(e->hosts[r]);
    free(e->hosts);
    free(e->peers);
    free(e->probes);
    e->probes = NULL;
    free(e->hostname);
    free(e->failure);
    e->hosts = NULL;
    e->peers = NULL;
    e->hostname = e->failure = NULL;
    if (e->own_pm && e->pm)
        foehn_pm_release(e->pm);
    e->pm = NULL;
}

/* FOEHN_SINGLE_COPY=0 keeps every byte on the sockets (for comparison, or where
 * reading another process's memory is unwelcome). */
static bool single_copy_wanted(void)
{
    const char *v = getenv("FOEHN_SINGLE_COPY");
    return !(v && (strcmp(v, "0") == 0 || strcmp(v, "off") == 0 || strcmp(v, "no") == 0));
}

/* For each peer on this host whose probe this process can read, says CAPS: the peer
 * will then send its large messages as RTS frames for this process to copy out. */
static int offer_single_copy(foehn_engine *e, double deadline, foehn_error *err)
{
    if (!single_copy_wanted())
        return FOEHN_OK;
    for (int r = 0; r < e->size; r++) {
        foehn_peer *p = &e->peers[r];
        if (p->fd < 0 || strcmp(e->hosts[r], e->hosts[e->rank]) != 0)
            continue;
        unsigned char seen[sizeof probe];
        struct iovec local = {seen, sizeof seen};
        struct iovec remote = {(void *)(uintptr_t)e->probes[r].addr, sizeof seen};
        if (process_vm_readv(p->pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof seen ||
            memcmp(seen, e->probes[r].bytes, sizeof seen) != 0)
            continue; /* not permitted, or another process: the sockets carry it all */
        p->pull_ok = true;
        unsigned char caps[FOEHN_WIRE_HEADER];
        foehn_wire_encode(caps, &(foehn_wire_header){.type = FOEHN_FRAME_CAPS});
        int rc = write_exact(p->fd, caps, sizeof caps, deadline);
        if (rc != FOEHN_OK)
            return foehn_fail(err, rc, "rank %d could not write to rank %d", e->rank, r);
    }
    return FOEHN_OK;
}

/* How large a message may be staged (engine.h's stage_max), once every rank's host is
 * known. */
static size_t stage_max_for(const foehn_engine *e)
{
    int local = 0;
    for (int r = 0; r < e->size; r++)
        local += e->hosts[r] && strcmp(e->hosts[r], e->hosts[e->rank]) == 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 && local > cpus ? FOEHN_SHM_STAGE_CROWDED : FOEHN_SHM_STAGE_MAX;
}

static int join(foehn_engine *e, double timeout, foehn_error *err)
{
    e->rank = e->pm->rank;
    e->size = e->pm->size;
    e->timeout = foehn_comm_timeout();
    e->spin_us = foehn_engine_spin_us();
    e->hostname = strdup(e->pm->job.hostname ? e->pm->job.hostname : "?");
    e->peers = calloc((size_t)e->size, sizeof *e->peers);
    e->hosts = calloc((size_t)e->size, sizeof *e->hosts);
    if (!e->peers || !e->hosts || !e->hostname)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    for (int r = 0; r < e->size; r++)
        e->peers[r].fd = -1;
    int rc = FOEHN_OK;
    if (e->size > 1) {
        e->probes = calloc((size_t)e->size, sizeof *e->probes);
        if (!e->probes)
            return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
        /* Under Yama (ptrace_scope 1) only ancestors may read a process's memory: let
         * the job's other ranks (same user) do it, as MPI libraries do. */
        if (single_copy_wanted())
            prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
        foehn_fd_limit_raise((unsigned long long)e->size + 64);
        char **endpoints = NULL;
        rc = exchange_endpoints(e, &endpoints, timeout, err);
        double deadline = foehn_now() + timeout;
        for (int r = 0; rc == FOEHN_OK && r < e->rank; r++)
            rc = connect_to(e, r, endpoints[r], deadline, err);
        if (rc == FOEHN_OK)
            rc = accept_higher(e, deadline, err);
        if (rc == FOEHN_OK)
            rc = await_replies(e, deadline, err);
        for (int r = 0; endpoints && r < e->size; r++)
            free(endpoints[r]);
        free(endpoints);
        for (int r = 0; rc == FOEHN_OK && r < e->size; r++)
            if (e->peers[r].fd >= 0)
                tune_socket(e->peers[r].fd);
        if (rc == FOEHN_OK)
            rc = offer_single_copy(e, deadline, err);
        if (e->listen_fd >= 0) {
            close(e->listen_fd); /* everyone is connected: nobody else may call */
            e->listen_fd = -1;
        }
    } else {
        e->hosts[0] = strdup(e->hostname);
    }
    if (rc == FOEHN_OK)
        e->stage_max = stage_max_for(e);
    if (rc == FOEHN_OK)
        rc = start_progress(e, err);
    int *world = rc == FOEHN_OK ? malloc((size_t)e->size * sizeof *world) : NULL;
    if (rc == FOEHN_OK && !world)
        rc = foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    for (int r = 0; world && r < e->size; r++)
        world[r] = r;
    if (rc == FOEHN_OK)
        rc = foehn_comm_create(e, 0, world, e->size, &e->world, err);
    if (rc == FOEHN_OK)
        rc = foehn_comm_create(e, 2, &e->rank, 1, &e->self, err);
    free(world);
    if (rc == FOEHN_OK) {
        e->world->builtin = e->self->builtin = true;
        e->next_ctx = 4;
    }
    return rc;
}

int foehn_comm_init_pm(struct foehn_pm *pm, bool own_pm, foehn_comm **world, foehn_comm **self,
                       double timeout, foehn_error *err)
{
    foehn_error_reset(err);
    foehn_engine *e = &engine;
    pthread_mutex_lock(&e->mu);
    if (initialized) {
        int rc = finalized ? foehn_fail(err, FOEHN_ERR_INVALID,
                                        "the communicator was finalized; it cannot start again")
                           : FOEHN_OK;
        if (rc == FOEHN_OK) {
            *world = e->world;
            *self = e->self;
        }
        pthread_mutex_unlock(&e->mu);
        if (own_pm)
            foehn_pm_release(pm);
        return rc;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&e->done_cv, &attr);
    pthread_condattr_destroy(&attr);
    e->pm = pm;
    e->own_pm = own_pm;
    int rc = join(e, foehn_pm_timeout(pm, timeout), err);
    if (rc != FOEHN_OK) {
        if (e->progress_started) {
            e->stopping = true;
            foehn_engine_wake(e);
            pthread_mutex_unlock(&e->mu);
            pthread_join(e->progress, NULL);
            pthread_mutex_lock(&e->mu);
            e->progress_started = false;
        }
        e->stopping = false;
        release_all(e);
        pthread_cond_destroy(&e->done_cv);
        pthread_mutex_unlock(&e->mu);
        return rc;
    }
    initialized = true;
    *world = e->world;
    *self = e->self;
    pthread_mutex_unlock(&e->mu);
    return FOEHN_OK;
}

int foehn_comm_init(foehn_comm **world, foehn_comm **self, double timeout, foehn_error *err)
{
    *world = *self = NULL;
    pthread_mutex_lock(&engine.mu);
    bool again = initialized;
    pthread_mutex_unlock(&engine.mu);
    if (again)
        return foehn_comm_init_pm(NULL, false, world, self, timeout, err);
    foehn_pm *pm = NULL;
    int rc = foehn_pm_acquire(&pm, environ, err);
    if (rc != FOEHN_OK)
        return rc;
    return foehn_comm_init_pm(pm, true, world, self, timeout, err);
}

static bool sends_pending(const foehn_engine *e)
{
    for (int r = 0; r < e->size; r++)
        if ((e->peers[r].send_head || e->peers[r].acks) && !e->peers[r].gone)
            return true;
    return false;
}

/* Waits on done_cv until deadline; false when it passed. */
static bool wait_until(foehn_engine *e, double deadline)
{
    double now = foehn_now();
    if (now >= deadline)
        return false;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double wait = deadline - now > 0.2 ? 0.2 : deadline - now;
    long nsec = ts.tv_nsec + (long)(wait * 1e9);
    ts.tv_sec += nsec / 1000000000L;
    ts.tv_nsec = nsec % 1000000000L;
    pthread_cond_timedwait(&e->done_cv, &e->mu, &ts);
    return true;
}

void foehn_comm_finalize(void)
{
    foehn_engine *e = &engine;
    pthread_mutex_lock(&e->mu);
    if (!initialized || finalized) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    /* Everything this rank sent reaches the kernel, then a goodbye to each peer, so
     * that the connection closing is not taken for a death. Bounded: a peer that
     * reads nothing cannot keep this process alive. */
    double deadline = foehn_now() + (e->timeout < 60 ? e->timeout : 60);
    while (e->failed == FOEHN_OK && sends_pending(e) && wait_until(e, deadline)) {
    }
    for (int r = 0; r < e->size; r++) {
        foehn_peer *p = &e->peers[r];
        if (p->fd < 0 || p->gone)
            continue;
        unsigned char bye[FOEHN_WIRE_HEADER];
        uint32_t dead = e->failed == FOEHN_ERR_PEER && e->dead >= 0 ? (uint32_t)e->dead + 1 : 0;
        foehn_wire_encode(bye, &(foehn_wire_header){.type = FOEHN_FRAME_BYE, .tag = dead});
        if (!p->send_head)
            (void)!send(p->fd, bye, sizeof bye, MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(p->fd, SHUT_WR);
    }
    e->stopping = true;
    foehn_p2p_fail_all(e);
    foehn_engine_wake(e);
    pthread_mutex_unlock(&e->mu);
    if (e->progress_started)
        pthread_join(e->progress, NULL);
    pthread_mutex_lock(&e->mu);
    e->progress_started = false;
    release_all(e);
    finalized = true;
    pthread_cond_broadcast(&e->done_cv);
    pthread_mutex_unlock(&e->mu);
}
