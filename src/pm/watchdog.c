/* The watchdog (see watchdog.h): a star of TCP connections to rank 0.
 *
 * The wire. Every message is one frame, integers in network byte order:
 *
 *     u32 length   bytes of payload after the 5-byte header
 *     u8  type     one of wd_type
 *     ... payload
 *
 *   HELLO   k->0  u32 magic "FWDG", u16 version, u16 zero, 16 bytes token, u32 rank,
 *                 u8 n, n bytes host name                       (29 + n bytes)
 *   WELCOME 0->k  u8 n, n bytes rank 0's host name               (the token was right)
 *   BYE     k->0  (empty)    rank k ends cleanly: rank 0 forgets it
 *   END     0->k  (empty)    rank 0 ends cleanly: nobody is watched any more
 *   DIED    0->k  u32 rank, u8 n, n bytes its host name          (stop this process)
 *   FAIL    0->k  u8 n, n bytes text                             (rank 0 gave up starting)
 *
 * A connection to rank 0 is on probation until its HELLO: rank 0 reads at most one
 * HELLO's worth of bytes from it and closes it at the first byte that cannot be the
 * HELLO of a rank that has not said hello yet, with the job's token.
 */
#include "pm/watchdog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fdio.h"
#include "common/random.h"
#include "net/connect.h"

#define WD_MAGIC 0x46574447u /* "FWDG" */
#define WD_VERSION 1u
#define WD_HEADER 5
#define WD_TOKEN_BYTES 16
#define WD_TOKEN_HEX (2 * WD_TOKEN_BYTES)
#define WD_HOST_MAX 255
#define WD_HELLO_FIXED (4 + 2 + 2 + WD_TOKEN_BYTES + 4 + 1)
#define WD_FRAME_MAX (WD_HEADER + WD_HELLO_FIXED + WD_HOST_MAX)
/* Most connections on probation rank 0 holds at once; more wait in the backlog. */
#define WD_STRANGERS_MAX 1024

typedef enum wd_type {
    WD_HELLO = 1,
    WD_WELCOME = 2,
    WD_BYE = 3,
    WD_END = 4,
    WD_DIED = 5,
    WD_FAIL = 6,
} wd_type;

/* Rank 0's view of one rank. */
typedef enum peer_state {
    PEER_WAITING = 0, /* no hello yet */
    PEER_WATCHED,     /* hello'd, connected: its EOF is a death */
    PEER_FINISHED,    /* said BYE (or was dropped): forgotten */
} peer_state;

typedef struct wd_peer {
    int fd;
    peer_state state;
    unsigned char buf[8]; /* a watched rank sends only BYE (5 bytes) */
    size_t have;
    char *host;
} wd_peer;

/* A connection on probation (rank 0, during start). */
typedef struct wd_stranger {
    int fd;
    size_t have;
    unsigned char buf[WD_FRAME_MAX];
} wd_stranger;

struct foehn_watchdog {
    int rank, size;
    char host[WD_HOST_MAX + 1];
    unsigned char token[WD_TOKEN_BYTES];

    /* rank 0 */
    int listen_fd;
    char where[FOEHN_WATCHDOG_PUBLISH_MAX]; /* "ip:port", for messages */
    wd_peer *peers;                         /* size entries; [0] unused */
    wd_stranger *strangers;
    size_t nstrangers, strangers_cap;
    struct pollfd *pfds;
    int *pmap;

    /* other ranks */
    int up_fd; /* to rank 0 */
    unsigned char up_buf[WD_FRAME_MAX];
    size_t up_have;
    char host0[WD_HOST_MAX + 1];

    int wake[2]; /* stop -> watching thread */
    pthread_t thread;
    bool running;
    bool inherited; /* this process is a child of fork(): the watchdog is its parent's */
};

/* ---- small helpers ------------------------------------------------------ */

static void put_header(unsigned char *p, uint32_t length, wd_type type)
{
    foehn_put_u32(p, length);
    p[4] = (unsigned char)type;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Only printable ASCII from the wire reaches a terminal (dst holds n + 2 bytes). */
static void copy_printable(char *dst, const unsigned char *src, size_t n, bool spaces)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] > 0x20 || (spaces && src[i] == 0x20)) && src[i] < 0x7f ? (char)src[i]
                                                                                : '?';
    dst[n] = '\0';
    if (n == 0)
        strcpy(dst, "?");
}

static void copy_host(char *dst, const unsigned char *src, size_t n)
{
    copy_printable(dst, src, n, false);
}

/* A whole frame is sent at once or not at all worth waiting for: the socket's buffer
 * is empty in every state where one is sent. */
static void send_quietly(int fd, const void *buf, size_t len)
{
    ssize_t n;
    do
        n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
}

/* Frame parsing: 1 and the frame when buf starts with a whole frame no longer than
 * max, 0 when it needs more bytes, -1 when the header is impossible. */
static int frame_next(const unsigned char *buf, size_t have, size_t max, wd_type *type,
                      const unsigned char **payload, size_t *len)
{
    if (have < WD_HEADER)
        return 0;
    uint32_t n = foehn_get_u32(buf);
    if (n > max - WD_HEADER)
        return -1;
    if (have < WD_HEADER + (size_t)n)
        return 0;
    *type = (wd_type)buf[4];
    *payload = buf + WD_HEADER;
    *len = n;
    return 1;
}

static void frame_consume(unsigned char *buf, size_t *have, size_t len)
{
    size_t used = WD_HEADER + len;
    memmove(buf, buf + used, *have - used);
    *have -= used;
}

/* Reads what is there: >0 bytes, 0 the peer closed (or reset), -1 nothing yet. */
static ssize_t read_some(int fd, unsigned char *buf, size_t room)
{
    for (;;) {
        if (room == 0)
            return -1;
        ssize_t n = recv(fd, buf, room, MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        return 0; /* ECONNRESET, ETIMEDOUT, ...: the connection is gone */
    }
}

/* ---- ending this process ----------------------------------------------- */

static void say(const char *line)
{
    foehn_write_all(2, line, strlen(line));
}

static _Noreturn void stop_process(const char *line)
{
    foehn_write_all(2, line, strlen(line));
    /* C's stdout, if no stuck thread holds it (Python's own buffers are out of reach). */
    if (ftrylockfile(stdout) == 0) {
        fflush_unlocked(stdout);
        funlockfile(stdout);
    }
    _exit(FOEHN_WATCHDOG_EXIT);
}

static _Noreturn void stop_for_death(int dead, const char *host, int me)
{
    char line[512];
    snprintf(line, sizeof line, "foehn: rank %d (host %s) died without finishing; stopping rank %d\n",
             dead, host, me);
    stop_process(line);
}

/* ---- rank 0 ------------------------------------------------------------- */

/* Tells every watched rank but `except` that rank `dead` died. */
static void r0_tell_died(foehn_watchdog *wd, int dead)
{
    const char *host = wd->peers[dead].host ? wd->peers[dead].host : "?";
    size_t n = strlen(host);
    unsigned char frame[WD_HEADER + 4 + 1 + WD_HOST_MAX];
    put_header(frame, (uint32_t)(4 + 1 + n), WD_DIED);
    foehn_put_u32(frame + WD_HEADER, (uint32_t)dead);
    frame[WD_HEADER + 4] = (unsigned char)n;
    memcpy(frame + WD_HEADER + 5, host, n);
    for (int k = 1; k < wd->size; k++)
        if (k != dead && wd->peers[k].state == PEER_WATCHED)
            send_quietly(wd->peers[k].fd, frame, WD_HEADER + 5 + n);
}

static void r0_tell_fail(foehn_watchdog *wd, const char *text)
{
    size_t n = strlen(text);
    if (n > 255)
        n = 255;
    unsigned char frame[WD_HEADER + 1 + 255];
    put_header(frame, (uint32_t)(1 + n), WD_FAIL);
    frame[WD_HEADER] = (unsigned char)n;
    memcpy(frame + WD_HEADER + 1, text, n);
    for (int k = 1; k < wd->size; k++)
        if (wd->peers[k].state == PEER_WATCHED)
            send_quietly(wd->peers[k].fd, frame, WD_HEADER + 1 + n);
}

static void r0_forget(foehn_watchdog *wd, int k)
{
    close_fd(&wd->peers[k].fd);
    wd->peers[k].state = PEER_FINISHED;
}

/* Services a watched rank whose socket is ready: returns false when it died. */
static bool r0_service_peer(foehn_watchdog *wd, int k)
{
    wd_peer *p = &wd->peers[k];
    ssize_t n = read_some(p->fd, p->buf + p->have, sizeof p->buf - p->have);
    if (n < 0)
        return true;
    if (n > 0)
        p->have += (size_t)n;
    wd_type type;
    const unsigned char *payload;
    size_t len;
    int got = frame_next(p->buf, p->have, sizeof p->buf, &type, &payload, &len);
    if (got > 0 && type == WD_BYE && len == 0) {
        r0_forget(wd, k);
        return true;
    }
    if (got != 0) {
        char line[160];
        snprintf(line, sizeof line,
                 "foehn: watchdog: rank %d sent a malformed message; no longer watching it\n", k);
        foehn_write_all(2, line, strlen(line));
        r0_forget(wd, k);
        return true;
    }
    return n > 0; /* EOF without BYE: died */
}

static void *r0_watch(void *arg)
{
    foehn_watchdog *wd = arg;
    for (;;) {
        nfds_t n = 0;
        wd->pfds[n++] = (struct pollfd){.fd = wd->wake[0], .events = POLLIN};
        for (int k = 1; k < wd->size; k++) {
            if (wd->peers[k].state != PEER_WATCHED)
                continue;
            wd->pmap[n] = k;
            wd->pfds[n++] = (struct pollfd){.fd = wd->peers[k].fd, .events = POLLIN};
        }
        if (poll(wd->pfds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            say("foehn: watchdog: poll failed; no longer watching\n");
            return NULL;
        }
        if (wd->pfds[0].revents)
            return NULL;
        for (nfds_t i = 1; i < n; i++) {
            int k = wd->pmap[i];
            if (wd->pfds[i].revents && !r0_service_peer(wd, k)) {
                r0_tell_died(wd, k);
                stop_for_death(k, wd->peers[k].host, 0);
            }
        }
    }
}

static void r0_drop_stranger(foehn_watchdog *wd, size_t i)
{
    close(wd->strangers[i].fd);
    wd->strangers[i] = wd->strangers[--wd->nstrangers];
}

/* Reads from a connection on probation. Returns true when it stays (incomplete, or
 * promoted to rank k's watched connection, then it is no longer a stranger). */
static bool r0_service_stranger(foehn_watchdog *wd, size_t i, int *hellos)
{
    wd_stranger *s = &wd->strangers[i];
    ssize_t n = read_some(s->fd, s->buf + s->have, sizeof s->buf - s->have);
    if (n == 0)
        return false;
    if (n > 0)
        s->have += (size_t)n;
    /* Judge the header as soon as it is there: garbage is closed at once. */
    if (s->have >= WD_HEADER) {
        uint32_t len = foehn_get_u32(s->buf);
        if (s->buf[4] != WD_HELLO || len < WD_HELLO_FIXED || len > WD_HELLO_FIXED + WD_HOST_MAX)
            return false;
    }
    if (s->have >= WD_HEADER + 4 && foehn_get_u32(s->buf + WD_HEADER) != WD_MAGIC)
        return false;
    wd_type type;
    const unsigned char *p;
    size_t len;
    int got = frame_next(s->buf, s->have, sizeof s->buf, &type, &p, &len);
    if (got <= 0)
        return got == 0;
    if (s->have != WD_HEADER + len) /* a rank says nothing more before WELCOME */
        return false;
    uint32_t version = (uint32_t)p[4] << 8 | p[5];
    uint32_t rank = foehn_get_u32(p + 8 + WD_TOKEN_BYTES);
    size_t host_len = p[WD_HELLO_FIXED - 1];
    if (version != WD_VERSION || p[6] || p[7] || !foehn_secrets_equal(p + 8, wd->token, WD_TOKEN_BYTES) ||
        len != WD_HELLO_FIXED + host_len || rank == 0 || rank >= (uint32_t)wd->size ||
        wd->peers[rank].state != PEER_WAITING)
        return false;
    wd_peer *peer = &wd->peers[rank];
    peer->host = malloc(host_len + 2);
    if (!peer->host)
        return false; /* it will fail to start, and say so */
    copy_host(peer->host, p + WD_HELLO_FIXED, host_len);

    size_t n0 = strlen(wd->host);
    unsigned char welcome[WD_HEADER + 1 + WD_HOST_MAX];
    put_header(welcome, (uint32_t)(1 + n0), WD_WELCOME);
    welcome[WD_HEADER] = (unsigned char)n0;
    memcpy(welcome + WD_HEADER + 1, wd->host, n0);
    send_quietly(s->fd, welcome, WD_HEADER + 1 + n0);

    peer->fd = s->fd;
    peer->state = PEER_WATCHED;
    peer->have = 0;
    (*hellos)++;
    wd->strangers[i] = wd->strangers[--wd->nstrangers];
    return true;
}

/* Takes new connections on probation while there is room (the rest wait in the
 * kernel's backlog). Returns 0, or the errno that stopped accept (EMFILE, ...). */
static int r0_accept(foehn_watchdog *wd)
{
    while (wd->nstrangers < wd->strangers_cap) {
        int fd = accept4(wd->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            wd->strangers[wd->nstrangers++] = (wd_stranger){.fd = fd, .have = 0};
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM)
            continue; /* that connection is gone; others may wait */
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno;
    }
    return 0;
}

/* "ranks 2, 5 and 3 more" for the ranks that have not said hello. */
static void missing_ranks(const foehn_watchdog *wd, char *buf, size_t len)
{
    size_t used = 0;
    int listed = 0, more = 0;
    for (int k = 1; k < wd->size; k++) {
        if (wd->peers[k].state != PEER_WAITING)
            continue;
        if (listed < 8) {
            int w = snprintf(buf + used, len - used, "%s%d", listed ? ", " : "", k);
            if (w > 0 && (size_t)w < len - used)
                used += (size_t)w;
            listed++;
        } else {
            more++;
        }
    }
    if (more)
        snprintf(buf + used, len - used, " and %d more", more);
}

static void r0_close_all(foehn_watchdog *wd)
{
    close_fd(&wd->listen_fd);
    while (wd->nstrangers)
        r0_drop_stranger(wd, wd->nstrangers - 1);
    for (int k = 1; k < wd->size; k++)
        close_fd(&wd->peers[k].fd);
}

static int r0_start(foehn_watchdog *wd, double timeout, foehn_error *err)
{
    double deadline = foehn_now() + timeout;
    int hellos = 0;
    bool paused = false; /* accept failed (out of descriptors): wait for a stranger to go */
    while (hellos < wd->size - 1) {
        int wait = foehn_ms_until(deadline);
        if (wait == 0) {
            char missing[128], text[600];
            missing_ranks(wd, missing, sizeof missing);
            snprintf(text, sizeof text,
                     "rank 0 (host %s) gave up after %g s waiting for rank%s %s to join the watchdog",
                     wd->host, timeout, wd->size - 1 - hellos > 1 ? "s" : "", missing);
            r0_tell_fail(wd, text);
            r0_close_all(wd);
            return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                              "%s at %s (%d of %d connected); check that every rank started "
                              "Foehn, or set FOEHN_WATCHDOG=0",
                              text, wd->where, hellos, wd->size - 1);
        }
        nfds_t n = 0;
        bool listening = !paused && wd->nstrangers < wd->strangers_cap;
        wd->pfds[n] = (struct pollfd){.fd = listening ? wd->listen_fd : -1, .events = POLLIN};
        wd->pmap[n++] = 0;
        for (size_t i = 0; i < wd->nstrangers; i++) {
            wd->pfds[n] = (struct pollfd){.fd = wd->strangers[i].fd, .events = POLLIN};
            wd->pmap[n++] = -1 - (int)i;
        }
        for (int k = 1; k < wd->size; k++) {
            if (wd->peers[k].state != PEER_WATCHED)
                continue;
            wd->pfds[n] = (struct pollfd){.fd = wd->peers[k].fd, .events = POLLIN};
            wd->pmap[n++] = k;
        }
        if (poll(wd->pfds, n, wait) < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            r0_tell_fail(wd, "rank 0 could not start the watchdog");
            r0_close_all(wd);
            return foehn_fail(err, FOEHN_ERR_SYSTEM, "watchdog: poll: %s", strerror(e));
        }
        /* Watched ranks first (their indices do not move), then strangers from the
         * last (dropping one moves the last into its place), then new connections. */
        for (nfds_t i = 1; i < n; i++) {
            int k = wd->pmap[i];
            if (k <= 0 || !wd->pfds[i].revents || r0_service_peer(wd, k))
                continue;
            r0_tell_died(wd, k);
            r0_close_all(wd);
            return foehn_fail(err, FOEHN_ERR_PEER,
                              "rank %d (host %s) died without finishing while the watchdog "
                              "was starting",
                              k, wd->peers[k].host);
        }
        for (nfds_t i = n; i-- > 1;) {
            if (wd->pmap[i] >= 0 || !wd->pfds[i].revents)
                continue;
            size_t s = (size_t)(-1 - wd->pmap[i]);
            if (!r0_service_stranger(wd, s, &hellos))
                r0_drop_stranger(wd, s);
            paused = false; /* a descriptor may be free again */
        }
        if (!wd->pfds[0].revents)
            continue;
        int e = r0_accept(wd);
        if (e && wd->nstrangers == 0) {
            char text[400];
            snprintf(text, sizeof text, "rank 0 (host %s) could not accept connections to its "
                     "watchdog", wd->host);
            r0_tell_fail(wd, text);
            r0_close_all(wd);
            return foehn_fail(err, FOEHN_ERR_SYSTEM, "%s: %s (%d of %d ranks connected)", text,
                              strerror(e), hellos, wd->size - 1);
        }
        paused = e != 0;
    }
    /* Everyone is here: nobody else may connect; those still on probation go. */
    close_fd(&wd->listen_fd);
    while (wd->nstrangers)
        r0_drop_stranger(wd, wd->nstrangers - 1);
    return FOEHN_OK;
}

/* ---- other ranks -------------------------------------------------------- */

/* Handles the frames buffered from rank 0. Returns true while watching goes on. */
static bool up_frames(foehn_watchdog *wd)
{
    for (;;) {
        wd_type type;
        const unsigned char *p;
        size_t len;
        int got = frame_next(wd->up_buf, wd->up_have, sizeof wd->up_buf, &type, &p, &len);
        if (got == 0)
            return true;
        if (got > 0 && type == WD_END && len == 0)
            return false;
        if (got > 0 && type == WD_DIED && len >= 5 && len == 5u + p[4]) {
            char host[WD_HOST_MAX + 1];
            copy_host(host, p + 5, p[4]);
            uint32_t dead = foehn_get_u32(p);
            stop_for_death(dead > INT32_MAX ? -1 : (int)dead, host, wd->rank);
        }
        if (got > 0 && type == WD_FAIL && len >= 1 && len == 1u + p[0]) {
            char text[257], line[400];
            copy_printable(text, p + 1, p[0], true);
            snprintf(line, sizeof line, "foehn: %s; stopping rank %d\n", text, wd->rank);
            stop_process(line);
        }
        char line[160];
        snprintf(line, sizeof line,
                 "foehn: watchdog: rank 0 sent a malformed message; rank %d no longer watched\n",
                 wd->rank);
        foehn_write_all(2, line, strlen(line));
        return false;
    }
}

static void *up_watch(void *arg)
{
    foehn_watchdog *wd = arg;
    for (;;) {
        if (!up_frames(wd))
            return NULL;
        struct pollfd pfds[2] = {{.fd = wd->wake[0], .events = POLLIN},
                                 {.fd = wd->up_fd, .events = POLLIN}};
        if (poll(pfds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            say("foehn: watchdog: poll failed; no longer watching\n");
            return NULL;
        }
        if (pfds[0].revents)
            return NULL;
        if (!pfds[1].revents)
            continue;
        ssize_t n = read_some(wd->up_fd, wd->up_buf + wd->up_have, sizeof wd->up_buf - wd->up_have);
        if (n > 0) {
            wd->up_have += (size_t)n;
            continue;
        }
        if (n == 0) {
            /* Whatever complete frames came before the end count first. */
            if (!up_frames(wd))
                return NULL;
            stop_for_death(0, wd->host0, wd->rank);
        }
    }
}

/* "ip:port:token" (ip may hold colons, or brackets) into its parts. */
static int parse_value(const char *value, char *ip, size_t ip_len, char *port, size_t port_len,
                       unsigned char token[WD_TOKEN_BYTES], foehn_error *err)
{
    const char *colon2 = value ? strrchr(value, ':') : NULL;
    const char *colon1 = NULL;
    if (colon2)
        for (const char *c = colon2; c-- > value;)
            if (*c == ':') {
                colon1 = c;
                break;
            }
    if (!colon1 || colon1 == value || colon2 - colon1 - 1 < 1 ||
        (size_t)(colon2 - colon1 - 1) >= port_len || strlen(colon2 + 1) != WD_TOKEN_HEX)
        goto bad;
    const char *ip_start = value, *ip_end = colon1;
    if (*ip_start == '[' && ip_end[-1] == ']') {
        ip_start++;
        ip_end--;
    }
    if (ip_end <= ip_start || (size_t)(ip_end - ip_start) >= ip_len)
        goto bad;
    memcpy(ip, ip_start, (size_t)(ip_end - ip_start));
    ip[ip_end - ip_start] = '\0';
    memcpy(port, colon1 + 1, (size_t)(colon2 - colon1 - 1));
    port[colon2 - colon1 - 1] = '\0';
    for (const char *c = port; *c; c++)
        if (*c < '0' || *c > '9')
            goto bad;
    for (int i = 0; i < WD_TOKEN_BYTES; i++) {
        unsigned int byte;
        char pair[3] = {colon2[1 + 2 * i], colon2[2 + 2 * i], '\0'};
        if (!((pair[0] >= '0' && pair[0] <= '9') || (pair[0] >= 'a' && pair[0] <= 'f')) ||
            !((pair[1] >= '0' && pair[1] <= '9') || (pair[1] >= 'a' && pair[1] <= 'f')) ||
            sscanf(pair, "%2x", &byte) != 1)
            goto bad;
        token[i] = (unsigned char)byte;
    }
    return FOEHN_OK;
bad:
    return foehn_fail(err, FOEHN_ERR_INVALID,
                      "rank 0's watchdog address \"%s\" is not \"ip:port:token\" (%d hex digits)",
                      value ? value : "(none)", WD_TOKEN_HEX);
}

static int up_start(foehn_watchdog *wd, const char *value, double timeout, foehn_error *err)
{
    char ip[FOEHN_WATCHDOG_PUBLISH_MAX], port[16];
    int rc = parse_value(value, ip, sizeof ip, port, sizeof port, wd->token, err);
    if (rc != FOEHN_OK)
        return rc;
    double deadline = foehn_now() + timeout;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(ip, port, &hints, &ai);
    if (g != 0)
        return foehn_fail(err, FOEHN_ERR_INVALID, "rank 0's watchdog address %s:%s: %s", ip,
                          port, gai_strerror(g));
    int e = foehn_tcp_connect(ai, deadline, &wd->up_fd);
    freeaddrinfo(ai);
    if (e == ETIMEDOUT)
        return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                          "rank %d could not reach rank 0's watchdog at %s:%s within %g s",
                          wd->rank, ip, port, timeout);
    if (e != 0)
        return foehn_fail(err, e == ECONNREFUSED ? FOEHN_ERR_PEER : FOEHN_ERR_SYSTEM,
                          "rank %d could not connect to rank 0's watchdog at %s:%s: %s",
                          wd->rank, ip, port, strerror(e));

    size_t host_len = strlen(wd->host);
    unsigned char hello[WD_FRAME_MAX];
    put_header(hello, (uint32_t)(WD_HELLO_FIXED + host_len), WD_HELLO);
    unsigned char *p = hello + WD_HEADER;
    foehn_put_u32(p, WD_MAGIC);
    p[4] = (unsigned char)(WD_VERSION >> 8);
    p[5] = (unsigned char)WD_VERSION;
    p[6] = p[7] = 0;
    memcpy(p + 8, wd->token, WD_TOKEN_BYTES);
    foehn_put_u32(p + 8 + WD_TOKEN_BYTES, (uint32_t)wd->rank);
    p[WD_HELLO_FIXED - 1] = (unsigned char)host_len;
    memcpy(p + WD_HELLO_FIXED, wd->host, host_len);
    size_t total = WD_HEADER + WD_HELLO_FIXED + host_len, sent = 0;
    while (sent < total) {
        ssize_t n = send(wd->up_fd, hello + sent, total - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = foehn_wait_fd(wd->up_fd, POLLOUT, deadline);
            if (r > 0)
                continue;
            if (r == 0)
                return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                                  "rank %d could not say hello to rank 0's watchdog at %s:%s "
                                  "within %g s",
                                  wd->rank, ip, port, timeout);
        }
        return foehn_fail(err, FOEHN_ERR_PEER,
                          "rank %d lost its connection to rank 0's watchdog at %s:%s: %s",
                          wd->rank, ip, port, strerror(errno));
    }

    for (;;) {
        wd_type type;
        const unsigned char *w;
        size_t len;
        int got = frame_next(wd->up_buf, wd->up_have, sizeof wd->up_buf, &type, &w, &len);
        if (got > 0 && type == WD_WELCOME && len >= 1 && len == 1u + w[0]) {
            copy_host(wd->host0, w + 1, w[0]);
            frame_consume(wd->up_buf, &wd->up_have, len);
            return FOEHN_OK;
        }
        if (got != 0)
            return foehn_fail(err, FOEHN_ERR_PROTOCOL,
                              "rank 0's watchdog at %s:%s answered rank %d's hello with "
                              "something else than a welcome",
                              ip, port, wd->rank);
        int r = foehn_wait_fd(wd->up_fd, POLLIN, deadline);
        if (r == 0)
            return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                              "rank 0's watchdog at %s:%s did not welcome rank %d within %g s",
                              ip, port, wd->rank, timeout);
        ssize_t n = r < 0 ? 0
                          : read_some(wd->up_fd, wd->up_buf + wd->up_have,
                                      sizeof wd->up_buf - wd->up_have);
        if (n == 0)
            return foehn_fail(err, FOEHN_ERR_PEER,
                              "rank 0's watchdog at %s:%s closed rank %d's connection without "
                              "a welcome (a token from another job?)",
                              ip, port, wd->rank);
        if (n > 0)
            wd->up_have += (size_t)n;
    }
}

/* ---- a clean exit without stop ----------------------------------------- */

/* The watchdog a successful exit() ends as if stopped, and a fork()'s child lets go
 * of (one per process: the first started). */
/* How long a failing exit waits for news of a dead peer (rank 0 relays it in
 * milliseconds). */
#define FAILING_EXIT_WAIT_NS 300000000L

static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static foehn_watchdog *exit_wd;
static bool exit_hooked;

static void stop_now(foehn_watchdog *wd);

#ifdef __GLIBC__
static void at_exit(int status, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&exit_lock);
    foehn_watchdog *wd = exit_wd;
    exit_wd = NULL;
    pthread_mutex_unlock(&exit_lock);
    if (wd && status == 0) {
        stop_now(wd);
    } else if (wd && wd->running) {
        /* Failing: no goodbye, so the others learn that this rank failed. But it
         * may fail because a peer died (gloo's "Connection closed by peer" often
         * beats rank 0's word): give the watching thread a moment to hear which
         * rank died and end this process saying so. */
        struct timespec moment = {0, FAILING_EXIT_WAIT_NS};
        while (nanosleep(&moment, &moment) != 0 && errno == EINTR)
            ;
    }
}
#endif

/* In a child of fork() (a DataLoader worker, ...): the watchdog belongs to the parent.
 * The child lets go of its copies of the connections, so that the parent's death is
 * seen at once, not when its last child ends, and never says goodbye for the parent.
 * Only close() here: the child of a threaded process may call nothing else safely. */
static void at_fork_child(void)
{
    foehn_watchdog *wd = exit_wd;
    exit_wd = NULL;
    if (!wd)
        return;
    wd->inherited = true;
    wd->running = false;
    close_fd(&wd->listen_fd);
    close_fd(&wd->up_fd);
    close_fd(&wd->wake[0]);
    close_fd(&wd->wake[1]);
    for (size_t i = 0; i < wd->nstrangers; i++)
        close(wd->strangers[i].fd);
    wd->nstrangers = 0;
    if (wd->peers)
        for (int k = 1; k < wd->size; k++)
            close_fd(&wd->peers[k].fd);
}

static void exit_watch(foehn_watchdog *wd)
{
    pthread_mutex_lock(&exit_lock);
    if (!exit_wd)
        exit_wd = wd;
    if (!exit_hooked) {
        exit_hooked = true;
#ifdef __GLIBC__
        on_exit(at_exit, NULL);
#endif
        pthread_atfork(NULL, NULL, at_fork_child);
    }
    pthread_mutex_unlock(&exit_lock);
}

static void exit_forget(foehn_watchdog *wd)
{
    pthread_mutex_lock(&exit_lock);
    if (exit_wd == wd)
        exit_wd = NULL;
    pthread_mutex_unlock(&exit_lock);
}

/* ---- the interface ------------------------------------------------------ */

static int enabled(bool *on, foehn_error *err)
{
    const char *v = getenv("FOEHN_WATCHDOG");
    *on = true;
    if (!v || !*v || strcmp(v, "1") == 0 || strcasecmp(v, "on") == 0 ||
        strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0)
        return FOEHN_OK;
    if (strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0 || strcasecmp(v, "no") == 0 ||
        strcasecmp(v, "false") == 0) {
        *on = false;
        return FOEHN_OK;
    }
    return foehn_fail(err, FOEHN_ERR_INVALID,
                      "FOEHN_WATCHDOG=\"%s\" is neither 0/off/no/false nor 1/on/yes/true", v);
}

/* Rank 0 holds one descriptor per rank: make room under the hard limit. */
static int ensure_descriptors(int size, foehn_error *err)
{
    unsigned long long need = (unsigned long long)size + WD_STRANGERS_MAX + 64;
    unsigned long long have = foehn_fd_limit_raise(need);
    if (have < need)
        return foehn_fail(err, FOEHN_ERR_LIMIT,
                          "the watchdog on rank 0 needs %llu open files for %d ranks, but "
                          "`ulimit -n` allows %llu; raise it, or set FOEHN_WATCHDOG=0",
                          need, size, have);
    return FOEHN_OK;
}

static int r0_listen(foehn_watchdog *wd, const char *ip, char *publish, size_t publish_len,
                     foehn_error *err)
{
    int rc = ensure_descriptors(wd->size, err);
    if (rc != FOEHN_OK)
        return rc;
    size_t n = (size_t)wd->size;
    wd->peers = calloc(n, sizeof *wd->peers);
    wd->strangers_cap = n < WD_STRANGERS_MAX ? n + 64 : WD_STRANGERS_MAX;
    wd->strangers = calloc(wd->strangers_cap, sizeof *wd->strangers);
    wd->pfds = calloc(n + wd->strangers_cap + 1, sizeof *wd->pfds);
    wd->pmap = calloc(n + wd->strangers_cap + 1, sizeof *wd->pmap);
    if (!wd->peers || !wd->strangers || !wd->pfds || !wd->pmap)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory for the watchdog of %d ranks",
                          wd->size);
    for (size_t k = 0; k < n; k++)
        wd->peers[k].fd = -1;

    rc = foehn_random_bytes(wd->token, sizeof wd->token, err);
    if (rc != FOEHN_OK)
        return rc;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int g = ip && *ip ? getaddrinfo(ip, "0", &hints, &ai) : EAI_NONAME;
    if (g != 0)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "the watchdog cannot listen on \"%s\": not a numeric address (%s)",
                          ip ? ip : "(none)", gai_strerror(g));
    int port = 0;
    int e = foehn_tcp_listen(ai, SOMAXCONN, true, &wd->listen_fd, &port);
    freeaddrinfo(ai);
    if (e)
        return foehn_fail(err, FOEHN_ERR_SYSTEM, "the watchdog cannot listen on %s: %s", ip,
                          strerror(e));
    snprintf(wd->where, sizeof wd->where, "%s:%d", ip, port);

    char hex[WD_TOKEN_HEX + 1];
    for (int i = 0; i < WD_TOKEN_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", wd->token[i]);
    int w = snprintf(publish, publish_len, "%s:%d:%s", ip, port, hex);
    if (w < 0 || (size_t)w >= publish_len)
        return foehn_fail(err, FOEHN_ERR_LIMIT,
                          "the watchdog's address needs %d bytes; the caller gave %zu", w + 1,
                          publish_len);
    return FOEHN_OK;
}

static void release(foehn_watchdog *wd)
{
    if (wd->rank == 0 && wd->peers) {
        r0_close_all(wd);
        for (int k = 0; k < wd->size; k++)
            free(wd->peers[k].host);
    }
    close_fd(&wd->listen_fd);
    close_fd(&wd->up_fd);
    close_fd(&wd->wake[0]);
    close_fd(&wd->wake[1]);
    free(wd->peers);
    free(wd->strangers);
    free(wd->pfds);
    free(wd->pmap);
    free(wd);
}

int foehn_watchdog_listen(foehn_watchdog **out, int rank, int size, const char *ip,
                          char *publish, size_t publish_len, foehn_error *err)
{
    foehn_error_reset(err);
    *out = NULL;
    if (publish && publish_len)
        publish[0] = '\0';
    bool on;
    int rc = enabled(&on, err);
    if (rc != FOEHN_OK)
        return rc;
    if (size < 1 || size > FOEHN_WATCHDOG_SIZE_MAX || rank < 0 || rank >= size)
        return foehn_fail(err, FOEHN_ERR_INVALID, "watchdog: rank %d of %d ranks is no rank",
                          rank, size);
    if (!on || size == 1)
        return FOEHN_OK;
    if (rank == 0 && (!publish || publish_len == 0))
        return foehn_fail(err, FOEHN_ERR_INVALID, "watchdog: rank 0 needs room to publish");
    foehn_watchdog *wd = calloc(1, sizeof *wd);
    if (!wd)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    wd->rank = rank;
    wd->size = size;
    wd->listen_fd = wd->up_fd = wd->wake[0] = wd->wake[1] = -1;
    if (rank == 0) {
        rc = r0_listen(wd, ip, publish, publish_len, err);
        if (rc != FOEHN_OK) {
            publish[0] = '\0';
            release(wd);
            return rc;
        }
    }
    *out = wd;
    return FOEHN_OK;
}

int foehn_watchdog_start(foehn_watchdog *wd, const char *rank0_value, const char *hostname,
                         double timeout, foehn_error *err)
{
    foehn_error_reset(err);
    if (!wd)
        return FOEHN_OK;
    if (wd->running || (wd->rank == 0 ? wd->listen_fd < 0 : wd->up_fd >= 0))
        return foehn_fail(err, FOEHN_ERR_INVALID, "watchdog: started twice");
    if (!(timeout > 0) || !isfinite(timeout))
        return foehn_fail(err, FOEHN_ERR_INVALID, "watchdog: timeout %g is not a positive number",
                          timeout);
    if (hostname && *hostname) {
        snprintf(wd->host, sizeof wd->host, "%s", hostname);
    } else if (gethostname(wd->host, sizeof wd->host) != 0 || !wd->host[0]) {
        strcpy(wd->host, "?");
    }
    wd->host[WD_HOST_MAX] = '\0';
    copy_host(wd->host, (const unsigned char *)wd->host, strlen(wd->host));

    int rc = wd->rank == 0 ? r0_start(wd, timeout, err) : up_start(wd, rank0_value, timeout, err);
    if (rc != FOEHN_OK)
        return rc;
    if (pipe2(wd->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        goto fail;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&wd->thread, NULL, wd->rank == 0 ? r0_watch : up_watch, wd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        errno = e;
        goto fail;
    }
    pthread_setname_np(wd->thread, "foehn-watchdog");
    wd->running = true;
    exit_watch(wd);
    return FOEHN_OK;
fail:
    rc = errno;
    if (wd->rank == 0)
        r0_tell_fail(wd, "rank 0 could not start its watchdog thread");
    return foehn_fail(err, FOEHN_ERR_SYSTEM, "watchdog: cannot start its thread: %s",
                      strerror(rc));
}

void foehn_watchdog_stop(foehn_watchdog *wd)
{
    if (!wd)
        return;
    exit_forget(wd);
    stop_now(wd);
}

static void stop_now(foehn_watchdog *wd)
{
    if (wd->inherited) { /* a child of fork(): nothing to say, nothing to join */
        release(wd);
        return;
    }
    if (wd->running) {
        ssize_t n;
        do
            n = write(wd->wake[1], "x", 1);
        while (n < 0 && errno == EINTR);
        pthread_join(wd->thread, NULL);
        wd->running = false;
    }
    if (wd->rank == 0 && wd->peers) {
        unsigned char end[WD_HEADER];
        put_header(end, 0, WD_END);
        for (int k = 1; k < wd->size; k++)
            if (wd->peers[k].state == PEER_WATCHED)
                send_quietly(wd->peers[k].fd, end, sizeof end);
    } else if (wd->up_fd >= 0) {
        unsigned char bye[WD_HEADER];
        put_header(bye, 0, WD_BYE);
        send_quietly(wd->up_fd, bye, sizeof bye);
        /* Read what rank 0 sent (an END), so that closing sends FIN, not a reset that
         * could overtake the BYE. */
        shutdown(wd->up_fd, SHUT_WR);
        unsigned char sink[64];
        while (read_some(wd->up_fd, sink, sizeof sink) > 0)
            ;
    }
    release(wd);
}
