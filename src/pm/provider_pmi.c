/* The pmi provider: the PMI-1 and PMI-2 wire protocols, spoken natively over the
 * socket the launcher hands each rank (no libpmi). Servers it is written against:
 * MPICH Hydra (PMI-1 and PMI-2), Intel MPI, Slurm's mpi/pmi2 plugin (srun --mpi=pmi2),
 * Flux and PALS (PMI-1).
 *
 * Wire, as the servers implement it (MPICH src/pmi/simple, src/pmi/maint/pmi-1.1.txt
 * and pmi-2.0.txt; Slurm src/plugins/mpi/pmi2/{agent,client,pmi1,pmi2}.c):
 *
 *   PMI-1  one line per message, at most 1024 bytes with its '\n' (PMIU_MAXLINE),
 *          "key=value" tokens separated by single spaces, the first one "cmd=...".
 *            cmd=init pmi_version=1 pmi_subversion=1 -> cmd=response_to_init ... rc=0
 *            cmd=get_maxes      -> cmd=maxes kvsname_max=256 keylen_max=64 vallen_max=1024
 *            cmd=get_my_kvsname -> cmd=my_kvsname kvsname=...
 *            cmd=put kvsname=K key=k value=v -> cmd=put_result rc=0 msg=success
 *            cmd=barrier_in     -> cmd=barrier_out            (Slurm adds rc=, msg=)
 *            cmd=get kvsname=K key=k -> cmd=get_result rc=0 msg=success value=v
 *                                  (missing: rc=-1 msg=key_k_not_found value=unknown)
 *            cmd=finalize       -> cmd=finalize_ack
 *            cmd=abort exitcode=N [message=...]   (no answer: the launcher kills the job)
 *          Over PMI_PORT (host:port) with PMI_ID set, the connection starts with
 *            cmd=initack pmiid=ID -> cmd=initack, cmd=set size=N, cmd=set rank=N,
 *                                    cmd=set debug=N   (one line each)
 *   PMI-2  the first exchange is PMI-1 framed (Slurm reads it with a single read):
 *            cmd=init pmi_version=2 pmi_subversion=0\n -> cmd=response_to_init rc=0 ...\n
 *          then every message is a 6-character decimal length ("%-6d") and that many
 *          bytes of "key=value;" records, the first "cmd=...;" (";;" is a literal ';').
 *            cmd=fullinit;pmijobid=J;pmirank=R;threaded=FALSE;
 *                 -> cmd=fullinit-response;rc=0;rank=R;size=N;appnum=..;...
 *            cmd=job-getid;                         -> cmd=job-getid-response;rc=0;jobid=J;
 *            cmd=info-getjobattr;key=PMI_process_mapping;
 *                 -> cmd=info-getjobattr-response;rc=0;found=TRUE;value=(vector,(0,2,2));
 *            cmd=kvs-put;key=k;value=v;             -> cmd=kvs-put-response;rc=0;
 *            cmd=kvs-fence;                         -> cmd=kvs-fence-response;rc=0;
 *            cmd=kvs-get;jobid=J;srcid=-1;key=k;    -> cmd=kvs-get-response;rc=0;found=TRUE;value=v;
 *            cmd=finalize;                          -> cmd=finalize-response;rc=0;
 *            cmd=abort;isworld=TRUE;msg=...;        (no answer)
 *
 * Foehn's model is per rank (get(rank, key)) while a PMI key space is global, and
 * Foehn's values are bytes while PMI's are text: rank r's key k lives under the PMI
 * key "f<r>.<k>", its value escaped (bytes outside [A-Za-z0-9._:/@+-] become %XX)
 * and prefixed with 'v'. A value whose escaped form does not fit the server's limits
 * is split: "f<r>.<k>" holds "n<parts>.<bytes>" and the parts live under
 * "p<r>.<i>.<k>" (the leading letter keeps heads and parts apart, so no Foehn key,
 * dots and all, can collide with a part). Puts wait in memory until commit; a rank's
 * own values are read from its local copy. The library never prints; errors go to
 * foehn_error.
 */
#include "pm/pm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/error.h"
#include "discovery/env.h"
#include "net/connect.h"
#include "pm/pmi_text.h"

#define PMI1_LINE_MAX 1024        /* PMIU_MAXLINE: a PMI-1 line with its '\n' */
#define REPLY_MAX (64 * 1024)     /* longest reply accepted (PMII_MAX_COMMAND_LEN) */
#define PMI2_HEADER 6             /* PMII_COMMANDLEN_SIZE */
#define PMI2_REQUEST_MAX 4096     /* our PMI-2 requests are all shorter */
#define PMI2_VALLEN_MAX 1024      /* PMI2_MAX_VALLEN, terminator included */
#define PMI2_KEYLEN_MAX 64        /* PMI2_MAX_KEYLEN */
#define NAME_MAX_LEN 256          /* kvsname / jobid (MAXKVSNAME) */
#define MAX_PAIRS 48
#define QUOTE_MAX 160             /* how much of a bad reply an error quotes */
#define FINALIZE_TIMEOUT 10.0     /* bound on the wait for finalize's ack */
#define ABORT_GRACE 5.0           /* how long abort waits for the launcher's kill */
#define MIN_CHUNK 32              /* smallest escaped part worth splitting into */

typedef struct pmi_kv {
    char key[FOEHN_PM_KEY_MAX + 1];
    char *value; /* NUL-terminated beyond len */
    size_t len;
    struct pmi_kv *next;
} pmi_kv;

typedef struct pmi_state {
    int fd;
    int version;        /* 1 or 2 */
    bool opened;        /* we connected it (PMI_PORT) rather than inherited it */
    bool use_write;     /* the fd is no socket: write(2) instead of send(2) */
    bool initialized;   /* handshake done: finalize is owed */
    bool broken;        /* the server went away: send nothing more */
    char kvsname[NAME_MAX_LEN + 1];
    char jobid[NAME_MAX_LEN + 1];
    size_t keylen_max, vallen_max; /* as the server reports, terminator included */
    char *in;           /* received, not yet consumed */
    size_t in_len, in_cap;
    pmi_kv *pending;    /* put since the last commit, newest first */
    pmi_kv *mine;       /* committed, newest first */
} pmi_state;

/* One reply, parsed in place. */
typedef struct pmi_msg {
    char *text;  /* malloc'd: the parsed copy */
    char *raw;   /* malloc'd: as received, for quoting */
    size_t npairs;
    char *key[MAX_PAIRS], *val[MAX_PAIRS];
} pmi_msg;

/* What a blocking call waits for, for its error messages. */
typedef struct pmi_wait {
    double deadline;   /* CLOCK_MONOTONIC seconds */
    double timeout;
    const char *what;  /* "barrier_out (the end of the fence)" */
    const char *hint;  /* what to check */
} pmi_wait;

/* ---- small helpers ---------------------------------------------------- */

static pmi_wait wait_for(double timeout, const char *what, const char *hint)
{
    pmi_wait w = {foehn_now() + timeout, timeout, what, hint};
    return w;
}

static const char *ctx(const foehn_pm *pm, char *buf, size_t len)
{
    return foehn_pm_context(pm, buf, len);
}

/* A printable, truncated copy of s[0..n) for an error message. */
static const char *quote(const char *s, size_t n, char *buf, size_t len)
{
    size_t o = 0, i;
    for (i = 0; i < n && o + 4 < len && o < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : (c == '\n' ? '|' : '?');
    }
    if (i < n && o + 4 <= len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static void msg_clear(pmi_msg *m)
{
    free(m->text);
    free(m->raw);
    memset(m, 0, sizeof *m);
}

static const char *msg_get(const pmi_msg *m, const char *key)
{
    for (size_t i = 0; i < m->npairs; i++)
        if (strcmp(m->key[i], key) == 0)
            return m->val[i];
    return NULL;
}

/* The reply's rc (0 when it carries none); *ok false when rc is no integer. */
static int msg_rc(const pmi_msg *m, bool *ok)
{
    const char *rc = msg_get(m, "rc");
    *ok = true;
    if (!rc)
        return 0;
    char *end;
    long v = strtol(rc, &end, 10);
    if (end == rc || *end || v < INT_MIN || v > INT_MAX) {
        *ok = false;
        return -1;
    }
    return (int)v;
}

/* The server's own words about an error: msg= (PMI-1) or errmsg= (PMI-2). */
static const char *msg_text(const pmi_msg *m)
{
    const char *t = msg_get(m, "errmsg");
    if (!t)
        t = msg_get(m, "msg");
    return t ? t : "";
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void kv_free_all(pmi_kv *kv)
{
    while (kv) {
        pmi_kv *next = kv->next;
        free(kv->value);
        free(kv);
        kv = next;
    }
}

static pmi_kv *kv_find(pmi_kv *kv, const char *key)
{
    for (; kv; kv = kv->next)
        if (strcmp(kv->key, key) == 0)
            return kv;
    return NULL;
}

/* ---- the connection --------------------------------------------------- */

static int fail_closed(foehn_pm *pm, pmi_state *st, const pmi_wait *w, const char *doing,
                       foehn_error *err)
{
    char c[160];
    st->broken = true;
    return foehn_fail(err, FOEHN_ERR_PEER,
                      "the launcher's PMI server closed the connection while this rank was %s "
                      "%s %s: the job is being torn down, probably because a rank died",
                      doing, w->what, ctx(pm, c, sizeof c));
}

static int fail_timeout(foehn_pm *pm, const pmi_wait *w, foehn_error *err)
{
    char c[160];
    return foehn_fail(err, FOEHN_ERR_TIMEOUT,
                      "waited %g s for %s from the launcher's PMI server %s, in vain: %s "
                      "(FOEHN_TIMEOUT sets the limit)",
                      w->timeout, w->what, ctx(pm, c, sizeof c), w->hint);
}

/* Waits until fd is ready for events, within w's deadline. */
static int wait_fd(foehn_pm *pm, pmi_state *st, short events, const pmi_wait *w,
                   foehn_error *err)
{
    for (;;) {
        double left = w->deadline - foehn_now();
        if (left <= 0)
            return fail_timeout(pm, w, err);
        double ms = left * 1000.0 + 1.0;
        struct pollfd p = {.fd = st->fd, .events = events, .revents = 0};
        int n = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            char c[160];
            return foehn_fail(err, FOEHN_ERR_SYSTEM,
                              "poll on the PMI connection (fd %d) failed while waiting for %s "
                              "%s: %s",
                              st->fd, w->what, ctx(pm, c, sizeof c), strerror(errno));
        }
        if (n == 0)
            continue; /* re-check the deadline */
        if (p.revents & POLLNVAL) {
            char c[160];
            st->broken = true;
            return foehn_fail(err, FOEHN_ERR_SYSTEM,
                              "the PMI connection (fd %d) was closed inside this process while "
                              "waiting for %s %s",
                              st->fd, w->what, ctx(pm, c, sizeof c));
        }
        return FOEHN_OK; /* ready, or an error/hangup the next read or write reports */
    }
}

static int send_all(foehn_pm *pm, pmi_state *st, const char *buf, size_t len, const pmi_wait *w,
                    foehn_error *err)
{
    if (st->broken)
        return fail_closed(pm, st, w, "sending a request for", err);
    size_t off = 0;
    while (off < len) {
        int rc = wait_fd(pm, st, POLLOUT, w, err);
        if (rc != FOEHN_OK)
            return rc;
        ssize_t n;
        if (!st->use_write) {
            n = send(st->fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == ENOTSOCK) {
                st->use_write = true;
                continue;
            }
        } else {
            n = write(st->fd, buf + off, len - off);
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            if (errno == EPIPE || errno == ECONNRESET)
                return fail_closed(pm, st, w, "sending a request for", err);
            char c[160];
            return foehn_fail(err, FOEHN_ERR_SYSTEM,
                              "writing to the launcher's PMI server (fd %d) %s failed: %s",
                              st->fd, ctx(pm, c, sizeof c), strerror(errno));
        }
        off += (size_t)n;
    }
    return FOEHN_OK;
}

/* Reads whatever is there (at least one byte) into st->in. */
static int recv_some(foehn_pm *pm, pmi_state *st, const pmi_wait *w, foehn_error *err)
{
    if (st->broken)
        return fail_closed(pm, st, w, "waiting for", err);
    if (st->in_cap - st->in_len < 4096) {
        size_t cap = st->in_cap ? st->in_cap * 2 : 8192;
        char *in = realloc(st->in, cap);
        if (!in)
            return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
        st->in = in;
        st->in_cap = cap;
    }
    for (;;) {
        int rc = wait_fd(pm, st, POLLIN, w, err);
        if (rc != FOEHN_OK)
            return rc;
        ssize_t n = read(st->fd, st->in + st->in_len, st->in_cap - st->in_len - 1);
        if (n > 0) {
            st->in_len += (size_t)n;
            return FOEHN_OK;
        }
        if (n == 0)
            return fail_closed(pm, st, w, "waiting for", err);
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            continue;
        if (errno == ECONNRESET || errno == EPIPE)
            return fail_closed(pm, st, w, "waiting for", err);
        char c[160];
        return foehn_fail(err, FOEHN_ERR_SYSTEM,
                          "reading from the launcher's PMI server (fd %d) %s failed: %s", st->fd,
                          ctx(pm, c, sizeof c), strerror(errno));
    }
}

static void consume(pmi_state *st, size_t n)
{
    memmove(st->in, st->in + n, st->in_len - n);
    st->in_len -= n;
}

static int too_long(foehn_pm *pm, pmi_state *st, const pmi_wait *w, foehn_error *err)
{
    char c[160], q[QUOTE_MAX + 8];
    return foehn_fail(err, FOEHN_ERR_PROTOCOL,
                      "the launcher's PMI server sent a reply longer than %d bytes while this "
                      "rank waited for %s %s: \"%s\"",
                      REPLY_MAX, w->what, ctx(pm, c, sizeof c),
                      quote(st->in, st->in_len, q, sizeof q));
}

/* Splits a PMI-1 line into "key=value" tokens. */
static int parse_v1(pmi_msg *m)
{
    char *p = m->text;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            break;
        char *tok = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
        if (*p)
            *p++ = '\0';
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok)
            return -1;
        *eq = '\0';
        if (m->npairs < MAX_PAIRS) {
            m->key[m->npairs] = tok;
            m->val[m->npairs] = eq + 1;
            m->npairs++;
        }
    }
    return 0;
}

/* Splits a PMI-2 body into "key=value;" records (";;" is a literal ';'). */
static int parse_v2(pmi_msg *m)
{
    char *p = m->text;
    while (*p) {
        char *key = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        if (*p != '=' || p == key)
            return -1;
        *p++ = '\0';
        char *val = p, *o = p;
        for (;;) {
            if (!*p)
                return -1; /* unterminated record */
            if (*p == ';') {
                if (p[1] == ';') {
                    *o++ = ';';
                    p += 2;
                    continue;
                }
                p++;
                break;
            }
            *o++ = *p++;
        }
        *o = '\0';
        if (m->npairs < MAX_PAIRS) {
            m->key[m->npairs] = key;
            m->val[m->npairs] = val;
            m->npairs++;
        }
    }
    return 0;
}

/* Receives one reply: a line (PMI-1, and PMI-2's first exchange) or a length-prefixed
 * PMI-2 command. */
static int recv_reply(foehn_pm *pm, pmi_state *st, bool line, pmi_msg *m, const pmi_wait *w,
                      foehn_error *err)
{
    memset(m, 0, sizeof *m);
    size_t start = 0, len = 0, total = 0;
    for (;;) {
        if (line) {
            char *nl = st->in_len ? memchr(st->in, '\n', st->in_len) : NULL;
            if (nl) {
                len = (size_t)(nl - st->in);
                total = len + 1;
                break;
            }
            if (st->in_len > REPLY_MAX)
                return too_long(pm, st, w, err);
        } else if (st->in_len >= PMI2_HEADER) {
            char hdr[PMI2_HEADER + 1];
            memcpy(hdr, st->in, PMI2_HEADER);
            hdr[PMI2_HEADER] = '\0';
            char *h = hdr, *end;
            while (*h == ' ')
                h++;
            long n = strtol(h, &end, 10);
            while (*end == ' ')
                end++;
            if (h == end || *end || n < 0 || n > REPLY_MAX) {
                char c[160], q[QUOTE_MAX + 8];
                return foehn_fail(err, FOEHN_ERR_PROTOCOL,
                                  "the launcher's PMI-2 server sent \"%s\" while this rank "
                                  "waited for %s %s: not a PMI-2 message (no 6-digit length)",
                                  quote(st->in, st->in_len, q, sizeof q), w->what,
                                  ctx(pm, c, sizeof c));
            }
            if (st->in_len >= PMI2_HEADER + (size_t)n) {
                start = PMI2_HEADER;
                len = (size_t)n;
                total = PMI2_HEADER + len;
                break;
            }
        }
        int rc = recv_some(pm, st, w, err);
        if (rc != FOEHN_OK)
            return rc;
    }
    m->text = malloc(len + 1);
    m->raw = malloc(len + 1);
    if (!m->text || !m->raw) {
        msg_clear(m);
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    memcpy(m->text, st->in + start, len);
    m->text[len] = '\0';
    memcpy(m->raw, m->text, len + 1);
    consume(st, total);
    if (memchr(m->raw, '\0', len) || (line ? parse_v1(m) : parse_v2(m)) != 0 ||
        m->npairs == 0 || strcmp(m->key[0], "cmd") != 0) {
        char c[160], q[QUOTE_MAX + 8];
        foehn_fail(err, FOEHN_ERR_PROTOCOL,
                   "the launcher's PMI server sent \"%s\" while this rank waited for %s %s: "
                   "%s",
                   quote(m->raw, len, q, sizeof q), w->what, ctx(pm, c, sizeof c),
                   line ? "not a PMI line (space-separated key=value pairs, cmd= first)"
                        : "not a PMI-2 message (key=value; records, cmd= first)");
        msg_clear(m);
        return FOEHN_ERR_PROTOCOL;
    }
    return FOEHN_OK;
}

/* Sends a request and receives the reply, which must be expect_cmd. */
static int exchange(foehn_pm *pm, pmi_state *st, const char *req, size_t len, bool line,
                    const char *expect_cmd, pmi_msg *m, const pmi_wait *w, foehn_error *err)
{
    memset(m, 0, sizeof *m);
    int rc = send_all(pm, st, req, len, w, err);
    if (rc == FOEHN_OK)
        rc = recv_reply(pm, st, line, m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    if (strcmp(m->val[0], expect_cmd) != 0) {
        char c[160], q[QUOTE_MAX + 8];
        foehn_fail(err, FOEHN_ERR_PROTOCOL,
                   "the launcher's PMI server answered \"%s\" where cmd=%s was expected "
                   "(waiting for %s %s)",
                   quote(m->raw, strlen(m->raw), q, sizeof q), expect_cmd, w->what,
                   ctx(pm, c, sizeof c));
        msg_clear(m);
        return FOEHN_ERR_PROTOCOL;
    }
    return FOEHN_OK;
}

/* A reply whose rc says the server refused the request. */
static int refused(foehn_pm *pm, const pmi_msg *m, const char *request, foehn_error *err)
{
    char c[160], q[QUOTE_MAX + 8];
    return foehn_fail(err, FOEHN_ERR_PROTOCOL,
                      "the launcher's PMI server refused %s %s: \"%s\"", request,
                      ctx(pm, c, sizeof c), quote(m->raw, strlen(m->raw), q, sizeof q));
}

/* Checks the rc of a reply; FOEHN_OK when it is 0 or absent. */
static int check_rc(foehn_pm *pm, const pmi_msg *m, const char *request, foehn_error *err)
{
    bool ok;
    int rc = msg_rc(m, &ok);
    if (!ok || rc != 0)
        return refused(pm, m, request, err);
    return FOEHN_OK;
}

/* A PMI-2 request: the 6-character length, then body. */
static int v2_request(char *out, size_t cap, size_t *len, const char *fmt, ...)
    FOEHN_PRINTF(4, 5);
static int v2_request(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + PMI2_HEADER, cap - PMI2_HEADER, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - PMI2_HEADER)
        return -1;
    char hdr[PMI2_HEADER + 8];
    snprintf(hdr, sizeof hdr, "%-6d", n);
    memcpy(out, hdr, PMI2_HEADER);
    *len = PMI2_HEADER + (size_t)n;
    return 0;
}

/* ---- the process mapping ---------------------------------------------- */

static int apply_mapping(foehn_pm *pm, const char *mapping, foehn_error *err)
{
    if (!mapping || !*mapping)
        return FOEHN_OK;
    int node_index, local_rank, local_size, num_nodes;
    if (pm->rank < 0 || pm->size <= 0 ||
        foehn_pmi_parse_mapping(mapping, pm->size, pm->rank, &node_index, &local_rank, &local_size,
                      &num_nodes) != 0) {
        char c[160], q[QUOTE_MAX + 8];
        return foehn_fail(err, FOEHN_ERR_PROTOCOL,
                          "the launcher's PMI server gave PMI_process_mapping \"%s\", which "
                          "does not place rank %d of %d on a node %s",
                          quote(mapping, strlen(mapping), q, sizeof q), pm->rank, pm->size,
                          ctx(pm, c, sizeof c));
    }
    pm->node_index = node_index;
    pm->local_rank = local_rank;
    pm->local_size = local_size;
    pm->num_nodes = num_nodes;
    return FOEHN_OK;
}

/* ---- init ------------------------------------------------------------- */

static int env_int(char *const *envp, const char *name, int *out, foehn_error *err)
{
    const char *v = foehn_env_get(envp, name);
    if (!v)
        return FOEHN_ERR_NOTFOUND;
    return foehn_env_parse_count(name, v, out, err);
}

static int choose_version(foehn_pm *pm, char *const *envp, int *version, foehn_error *err)
{
    const char *forced = foehn_env_get(envp, "FOEHN_PMI_VERSION");
    if (forced && *forced) {
        if (strcmp(forced, "1") == 0 || strcmp(forced, "2") == 0) {
            *version = forced[0] - '0';
            return FOEHN_OK;
        }
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          "FOEHN_PMI_VERSION=\"%s\" is neither 1 nor 2", forced);
    }
    const char *v = foehn_env_get(envp, "PMI_VERSION");
    const char *mpi = foehn_env_get(envp, "SLURM_MPI_TYPE");
    if (v && strcmp(v, "2") == 0)
        *version = 2;
    else if (mpi && strncmp(mpi, "pmi2", 4) == 0)
        *version = 2; /* srun --mpi=pmi2 */
    else if (pm->job.launcher == FOEHN_LAUNCHER_SLURM && foehn_env_get(envp, "PMI_JOBID"))
        *version = 2;
    else
        *version = 1;
    return FOEHN_OK;
}

static int connect_port(foehn_pm *pm, pmi_state *st, const char *port_var, double timeout,
                        foehn_error *err)
{
    char hostport[512];
    if (strlen(port_var) >= sizeof hostport)
        return foehn_fail(err, FOEHN_ERR_INVALID, "PMI_PORT=\"%.64s...\" is too long", port_var);
    strcpy(hostport, port_var);
    char *colon = strrchr(hostport, ':');
    long port;
    if (!colon || colon == hostport || parse_int(colon + 1, 1, 65535, &port) != 0)
        return foehn_fail(err, FOEHN_ERR_INVALID, "PMI_PORT=\"%s\" is not host:port", port_var);
    *colon = '\0';
    char *host = hostport;
    if (host[0] == '[' && colon[-1] == ']') { /* [v6 address] */
        host++;
        colon[-1] = '\0';
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, colon + 1, &hints, &res);
    if (g != 0)
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "cannot resolve the PMI server's host in PMI_PORT=\"%s\": %s", port_var,
                          gai_strerror(g));
    int last = 0;
    double deadline = foehn_now() + timeout;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd;
        last = foehn_tcp_connect(a, deadline, &fd);
        if (last == 0) {
            /* blocking, as a PMI_FD descriptor from the launcher is (reads wait in poll
             * with the deadline first) */
            int fl = fcntl(fd, F_GETFL);
            if (fl >= 0)
                fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            freeaddrinfo(res);
            st->fd = fd;
            st->opened = true;
            return FOEHN_OK;
        }
    }
    freeaddrinfo(res);
    char c[160];
    return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                      "cannot connect to the launcher's PMI server at PMI_PORT=\"%s\" %s: %s",
                      port_var, ctx(pm, c, sizeof c), strerror(last ? last : ECONNREFUSED));
}

/* PMI_PORT with PMI_ID: "cmd=initack pmiid=ID", then cmd=set size/rank/debug. */
static int initack(foehn_pm *pm, pmi_state *st, const char *id, int *rank, int *size,
                   const pmi_wait *w, foehn_error *err)
{
    long pmiid;
    if (parse_int(id, 0, INT_MAX, &pmiid) != 0)
        return foehn_fail(err, FOEHN_ERR_INVALID, "PMI_ID=\"%s\" is not a process id", id);
    char req[64];
    int n = snprintf(req, sizeof req, "cmd=initack pmiid=%ld\n", pmiid);
    pmi_msg m;
    int rc = exchange(pm, st, req, (size_t)n, true, "initack", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    msg_clear(&m);
    for (int i = 0; i < 3; i++) {
        rc = recv_reply(pm, st, true, &m, w, err);
        if (rc != FOEHN_OK)
            return rc;
        if (strcmp(m.val[0], "set") != 0) {
            char c[160], q[QUOTE_MAX + 8];
            foehn_fail(err, FOEHN_ERR_PROTOCOL,
                       "the launcher's PMI server answered initack with \"%s\" where cmd=set "
                       "size/rank/debug was expected %s",
                       quote(m.raw, strlen(m.raw), q, sizeof q), ctx(pm, c, sizeof c));
            msg_clear(&m);
            return FOEHN_ERR_PROTOCOL;
        }
        long v;
        const char *s;
        if ((s = msg_get(&m, "size")) && parse_int(s, 1, INT_MAX, &v) == 0)
            *size = (int)v;
        if ((s = msg_get(&m, "rank")) && parse_int(s, 0, INT_MAX, &v) == 0)
            *rank = (int)v;
        msg_clear(&m);
    }
    return FOEHN_OK;
}

static int copy_name(foehn_pm *pm, const pmi_msg *m, const char *key, char *out,
                     const char *request, foehn_error *err)
{
    const char *v = msg_get(m, key);
    if (!v || !*v || strlen(v) > NAME_MAX_LEN)
        return refused(pm, m, request, err);
    strcpy(out, v);
    return FOEHN_OK;
}

static int init_v1(foehn_pm *pm, pmi_state *st, const pmi_wait *w, foehn_error *err)
{
    static const char init[] = "cmd=init pmi_version=1 pmi_subversion=1\n";
    pmi_msg m;
    int rc = exchange(pm, st, init, sizeof init - 1, true, "response_to_init", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    const char *ver = msg_get(&m, "pmi_version");
    rc = check_rc(pm, &m, "PMI-1 (cmd=init pmi_version=1)", err);
    if (rc == FOEHN_OK && ver && strcmp(ver, "1") != 0)
        rc = refused(pm, &m, "PMI-1 (cmd=init pmi_version=1)", err);
    msg_clear(&m);
    if (rc != FOEHN_OK)
        return rc;
    st->initialized = true;

    static const char maxes[] = "cmd=get_maxes\n";
    rc = exchange(pm, st, maxes, sizeof maxes - 1, true, "maxes", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    long keylen, vallen, kvsname_max;
    if (check_rc(pm, &m, "cmd=get_maxes", err) != FOEHN_OK ||
        parse_int(msg_get(&m, "keylen_max"), 8, INT_MAX, &keylen) != 0 ||
        parse_int(msg_get(&m, "vallen_max"), 8, INT_MAX, &vallen) != 0 ||
        parse_int(msg_get(&m, "kvsname_max"), 1, INT_MAX, &kvsname_max) != 0) {
        rc = refused(pm, &m, "cmd=get_maxes", err);
        msg_clear(&m);
        return rc;
    }
    msg_clear(&m);
    st->keylen_max = (size_t)keylen;
    st->vallen_max = (size_t)vallen;

    static const char kvs[] = "cmd=get_my_kvsname\n";
    rc = exchange(pm, st, kvs, sizeof kvs - 1, true, "my_kvsname", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    rc = check_rc(pm, &m, "cmd=get_my_kvsname", err);
    if (rc == FOEHN_OK)
        rc = copy_name(pm, &m, "kvsname", st->kvsname, "cmd=get_my_kvsname", err);
    msg_clear(&m);
    if (rc != FOEHN_OK)
        return rc;

    /* Where the ranks run (Hydra, Slurm and Flux publish it; optional). */
    char req[PMI1_LINE_MAX];
    int n = snprintf(req, sizeof req, "cmd=get kvsname=%s key=PMI_process_mapping\n",
                     st->kvsname);
    rc = exchange(pm, st, req, (size_t)n, true, "get_result", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    bool ok;
    const char *found = msg_get(&m, "found");
    if (msg_rc(&m, &ok) == 0 && ok && !(found && strcasecmp(found, "false") == 0))
        rc = apply_mapping(pm, msg_get(&m, "value"), err);
    msg_clear(&m);
    return rc;
}

static int init_v2(foehn_pm *pm, pmi_state *st, char *const *envp, const pmi_wait *w,
                   foehn_error *err)
{
    /* The first exchange is PMI-1 framed; Slurm reads it with one read(2). */
    static const char init[] = "cmd=init pmi_version=2 pmi_subversion=0\n";
    pmi_msg m;
    int rc = exchange(pm, st, init, sizeof init - 1, true, "response_to_init", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    const char *ver = msg_get(&m, "pmi_version");
    rc = check_rc(pm, &m, "PMI-2 (cmd=init pmi_version=2)", err);
    if (rc == FOEHN_OK && ver && strcmp(ver, "2") != 0)
        rc = refused(pm, &m, "PMI-2 (cmd=init pmi_version=2)", err);
    msg_clear(&m);
    if (rc != FOEHN_OK)
        return rc;

    char req[PMI2_REQUEST_MAX];
    size_t len;
    const char *jobid = foehn_env_get(envp, "PMI_JOBID");
    int env_rank = pm->rank;
    if (jobid && (strlen(jobid) > NAME_MAX_LEN || strpbrk(jobid, ";=\n")))
        return foehn_fail(err, FOEHN_ERR_INVALID, "PMI_JOBID=\"%.64s\" is not a PMI job id",
                          jobid);
    if (jobid)
        v2_request(req, sizeof req, &len, "cmd=fullinit;pmijobid=%s;pmirank=%d;threaded=FALSE;",
                   jobid, env_rank);
    else
        v2_request(req, sizeof req, &len, "cmd=fullinit;pmirank=%d;threaded=FALSE;", env_rank);
    rc = exchange(pm, st, req, len, false, "fullinit-response", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    st->initialized = true;
    long rank, size;
    if (check_rc(pm, &m, "cmd=fullinit", err) != FOEHN_OK ||
        parse_int(msg_get(&m, "rank"), 0, INT_MAX - 1, &rank) != 0 ||
        parse_int(msg_get(&m, "size"), 1, INT_MAX, &size) != 0 || rank >= size) {
        rc = refused(pm, &m, "cmd=fullinit", err);
        msg_clear(&m);
        return rc;
    }
    msg_clear(&m);
    pm->rank = (int)rank;
    pm->size = (int)size;
    st->keylen_max = PMI2_KEYLEN_MAX;
    st->vallen_max = PMI2_VALLEN_MAX;

    v2_request(req, sizeof req, &len, "cmd=job-getid;");
    rc = exchange(pm, st, req, len, false, "job-getid-response", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    bool ok;
    const char *id = msg_get(&m, "jobid");
    if (msg_rc(&m, &ok) == 0 && ok && id && *id && strlen(id) <= NAME_MAX_LEN &&
        !strpbrk(id, ";="))
        strcpy(st->jobid, id);
    msg_clear(&m);

    v2_request(req, sizeof req, &len, "cmd=info-getjobattr;key=PMI_process_mapping;");
    rc = exchange(pm, st, req, len, false, "info-getjobattr-response", &m, w, err);
    if (rc != FOEHN_OK)
        return rc;
    const char *found = msg_get(&m, "found");
    if (msg_rc(&m, &ok) == 0 && ok && found && strcasecmp(found, "true") == 0)
        rc = apply_mapping(pm, msg_get(&m, "value"), err);
    msg_clear(&m);
    return rc;
}

static void close_state(pmi_state *st)
{
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
    free(st->in);
    kv_free_all(st->pending);
    kv_free_all(st->mine);
    free(st);
}

static int pmi_init(foehn_pm *pm, char *const *envp, foehn_error *err)
{
    pmi_state *st = calloc(1, sizeof *st);
    if (!st)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    st->fd = -1;
    int rc = choose_version(pm, envp, &st->version, err);
    if (rc != FOEHN_OK) {
        free(st);
        return rc;
    }
    char hint[256];
    snprintf(hint, sizeof hint,
             "check that this process is the one the launcher started, and that the launcher "
             "speaks PMI-%d (FOEHN_PMI_VERSION=1 or 2 chooses the wire)",
             st->version);
    pmi_wait w = wait_for(pm->timeout, st->version == 1 ? "the answer to PMI-1 init"
                                                        : "the answer to PMI-2 init",
                          hint);

    /* Rank and size as the environment tells; PMI-2's fullinit overrides them. */
    int rank = FOEHN_UNKNOWN, size = FOEHN_UNKNOWN;
    rc = env_int(envp, "PMI_RANK", &rank, err);
    if (rc == FOEHN_OK || rc == FOEHN_ERR_NOTFOUND)
        rc = env_int(envp, "PMI_SIZE", &size, err);
    if (rc != FOEHN_OK && rc != FOEHN_ERR_NOTFOUND) {
        free(st);
        return rc;
    }
    foehn_error_reset(err);

    const char *fd_var = foehn_env_get(envp, "PMI_FD");
    const char *port_var = foehn_env_get(envp, "PMI_PORT");
    if (fd_var && *fd_var) {
        int fd;
        rc = foehn_env_parse_count("PMI_FD", fd_var, &fd, err);
        if (rc != FOEHN_OK) {
            free(st);
            return rc;
        }
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0) {
            free(st);
            return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                              "PMI_FD=%d is not an open file descriptor in this process: it "
                              "was closed, or this process inherited the variable from the "
                              "rank the launcher started without its connection",
                              fd);
        }
        fcntl(fd, F_SETFD, flags | FD_CLOEXEC); /* programs this rank starts are no ranks */
        st->fd = fd;
    } else if (port_var && *port_var) {
        rc = connect_port(pm, st, port_var, pm->timeout, err);
        if (rc != FOEHN_OK) {
            free(st);
            return rc;
        }
        const char *id = foehn_env_get(envp, "PMI_ID");
        if (id && *id) {
            rc = initack(pm, st, id, &rank, &size, &w, err);
            if (rc != FOEHN_OK) {
                close_state(st);
                return rc;
            }
        }
    } else {
        free(st);
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "FOEHN_PM=pmi, but neither PMI_FD nor PMI_PORT is set: this process "
                          "was not started by a launcher that serves PMI-1 or PMI-2");
    }
    if (rank == FOEHN_UNKNOWN && st->version == 1) {
        close_state(st);
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "the PMI-1 server gives no rank: PMI_RANK is not set (nor PMI_ID with "
                          "PMI_PORT)");
    }
    if (rank == FOEHN_UNKNOWN && st->version == 2) {
        close_state(st);
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "PMI-2 needs PMI_RANK for its fullinit, and it is not set");
    }
    pm->rank = rank;
    pm->size = size;
    pm->state = st;
    rc = st->version == 1 ? init_v1(pm, st, &w, err) : init_v2(pm, st, envp, &w, err);
    if (rc == FOEHN_OK && (pm->size == FOEHN_UNKNOWN || pm->rank >= pm->size))
        rc = foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                        "the PMI-1 server gives no job size (PMI_SIZE is %s)",
                        pm->size == FOEHN_UNKNOWN ? "not set" : "smaller than PMI_RANK");
    if (rc != FOEHN_OK) {
        /* A half-initialised connection: leave it to the launcher (closing it may read as
         * this rank's death, which is what it is). */
        pm->state = NULL;
        close_state(st);
        return rc;
    }
    return FOEHN_OK;
}

/* ---- put, commit, fence ----------------------------------------------- */

static int pmi_put(foehn_pm *pm, const char *key, const void *value, size_t len,
                   foehn_error *err)
{
    pmi_state *st = pm->state;
    pmi_kv *kv = kv_find(st->pending, key);
    char *copy = malloc(len + 1);
    if (!copy)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    if (len)
        memcpy(copy, value, len);
    copy[len] = '\0';
    if (!kv) {
        kv = calloc(1, sizeof *kv);
        if (!kv) {
            free(copy);
            return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
        }
        snprintf(kv->key, sizeof kv->key, "%s", key);
        kv->next = st->pending;
        st->pending = kv;
    } else {
        free(kv->value);
    }
    kv->value = copy;
    kv->len = len;
    return FOEHN_OK;
}

/* Sends one PMI key/value (both already wire-safe). */
static int put_raw(foehn_pm *pm, pmi_state *st, const char *name, const char *val,
                   const pmi_wait *w, foehn_error *err)
{
    char req[PMI2_REQUEST_MAX];
    size_t len;
    pmi_msg m;
    int rc;
    char what[128];
    snprintf(what, sizeof what, "the put of key %s", name);
    if (st->version == 1) {
        int n = snprintf(req, sizeof req, "cmd=put kvsname=%s key=%s value=%s\n", st->kvsname,
                         name, val);
        if (n < 0 || (size_t)n >= sizeof req)
            return foehn_fail(err, FOEHN_ERR_LIMIT, "PMI key %s does not fit one request", name);
        rc = exchange(pm, st, req, (size_t)n, true, "put_result", &m, w, err);
    } else {
        if (v2_request(req, sizeof req, &len, "cmd=kvs-put;key=%s;value=%s;", name, val) != 0)
            return foehn_fail(err, FOEHN_ERR_LIMIT, "PMI key %s does not fit one request", name);
        rc = exchange(pm, st, req, len, false, "kvs-put-response", &m, w, err);
    }
    if (rc != FOEHN_OK)
        return rc;
    rc = check_rc(pm, &m, what, err);
    msg_clear(&m);
    return rc;
}

/* The longest escaped value one PMI key may hold, for PMI keys up to keylen bytes. */
static size_t chunk_limit(const pmi_state *st, size_t keylen)
{
    size_t limit = st->vallen_max - 1; /* the server's limit counts the terminator */
    if (st->version == 1) {
        size_t overhead = strlen("cmd=put kvsname= key= value=\n") + strlen(st->kvsname) +
                          keylen;
        size_t line = overhead < PMI1_LINE_MAX ? PMI1_LINE_MAX - overhead : 0;
        if (line < limit)
            limit = line;
    } else {
        size_t overhead = strlen("cmd=kvs-put;key=;value=;") + keylen;
        size_t req = PMI2_REQUEST_MAX - PMI2_HEADER - 1 - overhead;
        if (req < limit)
            limit = req;
    }
    return limit;
}

static int commit_one(foehn_pm *pm, pmi_state *st, const pmi_kv *kv, const pmi_wait *w,
                      foehn_error *err)
{
    char head[FOEHN_PM_KEY_MAX + 32], part[FOEHN_PM_KEY_MAX + 48];
    snprintf(head, sizeof head, "f%d.%s", pm->rank, kv->key);
    /* The longest PMI key this value may use: a part key with a two-digit index. */
    snprintf(part, sizeof part, "p%d.99.%s", pm->rank, kv->key);
    if (strlen(part) + 1 > st->keylen_max) {
        char c[160];
        return foehn_fail(err, FOEHN_ERR_LIMIT,
                          "key \"%s\" of rank %d becomes PMI key \"%s\" (%zu bytes), longer than "
                          "the %zu bytes the launcher's PMI server allows %s",
                          kv->key, pm->rank, part, strlen(part), st->keylen_max - 1,
                          ctx(pm, c, sizeof c));
    }
    size_t chunk = chunk_limit(st, strlen(part));
    size_t esc_len = 0;
    for (size_t i = 0; i < kv->len; i++)
        esc_len += foehn_pmi_escaped_width((unsigned char)kv->value[i]);
    char *buf = malloc(esc_len + 2);
    if (!buf)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    int rc;
    if (esc_len + 1 <= chunk) { /* one key: "v" + escaped */
        buf[0] = 'v';
        foehn_pmi_escape((const unsigned char *)kv->value, kv->len, buf + 1);
        rc = put_raw(pm, st, head, buf, w, err);
        free(buf);
        return rc;
    }
    if (chunk < MIN_CHUNK) {
        free(buf);
        char c[160];
        return foehn_fail(err, FOEHN_ERR_LIMIT,
                          "the value of key \"%s\" (%zu bytes, %zu escaped) does not fit the "
                          "launcher's PMI server, which takes values of %zu bytes at most in "
                          "lines of %d %s",
                          kv->key, kv->len, esc_len, st->vallen_max - 1, PMI1_LINE_MAX,
                          ctx(pm, c, sizeof c));
    }
    /* Split on byte boundaries, so no %XX is cut. */
    size_t parts = 0, i = 0;
    while (i < kv->len) {
        size_t o = 0;
        while (i < kv->len && o + foehn_pmi_escaped_width((unsigned char)kv->value[i]) <= chunk) {
            o += foehn_pmi_escape((const unsigned char *)kv->value + i, 1, buf + o);
            i++;
        }
        if (parts == 99) {
            free(buf);
            return foehn_fail(err, FOEHN_ERR_LIMIT,
                              "the value of key \"%s\" (%zu bytes) needs more than 99 PMI keys",
                              kv->key, kv->len);
        }
        snprintf(part, sizeof part, "p%d.%zu.%s", pm->rank, parts, kv->key);
        rc = put_raw(pm, st, part, buf, w, err);
        if (rc != FOEHN_OK) {
            free(buf);
            return rc;
        }
        parts++;
    }
    free(buf);
    char count[64];
    snprintf(count, sizeof count, "n%zu.%zu", parts, kv->len);
    return put_raw(pm, st, head, count, w, err);
}

static int pmi_commit(foehn_pm *pm, foehn_error *err)
{
    pmi_state *st = pm->state;
    pmi_wait w = wait_for(pm->timeout, "the answer to a put",
                          "the launcher's PMI server is stuck or overloaded");
    /* Oldest first, so the server sees the puts in the order they were made. */
    pmi_kv *rev = NULL;
    while (st->pending) {
        pmi_kv *kv = st->pending;
        st->pending = kv->next;
        kv->next = rev;
        rev = kv;
    }
    int rc = FOEHN_OK;
    while (rev) {
        pmi_kv *kv = rev;
        rev = kv->next;
        if (rc == FOEHN_OK)
            rc = commit_one(pm, st, kv, &w, err);
        if (rc != FOEHN_OK) {
            free(kv->value);
            free(kv);
            continue;
        }
        pmi_kv *old = kv_find(st->mine, kv->key);
        if (old) { /* replace the committed copy in place */
            free(old->value);
            old->value = kv->value;
            old->len = kv->len;
            free(kv);
        } else {
            kv->next = st->mine;
            st->mine = kv;
        }
    }
    return rc;
}

static int pmi_fence(foehn_pm *pm, double timeout, foehn_error *err)
{
    pmi_state *st = pm->state;
    pmi_msg m;
    int rc;
    if (st->version == 1) {
        pmi_wait w = wait_for(timeout, "barrier_out (the end of the fence)",
                              "a rank may have died or not reached the fence");
        static const char req[] = "cmd=barrier_in\n";
        rc = exchange(pm, st, req, sizeof req - 1, true, "barrier_out", &m, &w, err);
    } else {
        pmi_wait w = wait_for(timeout, "kvs-fence-response (the end of the fence)",
                              "a rank may have died or not reached the fence");
        char req[64];
        size_t len;
        v2_request(req, sizeof req, &len, "cmd=kvs-fence;");
        rc = exchange(pm, st, req, len, false, "kvs-fence-response", &m, &w, err);
    }
    if (rc != FOEHN_OK)
        return rc;
    rc = check_rc(pm, &m, "the fence", err);
    msg_clear(&m);
    return rc;
}

/* ---- get -------------------------------------------------------------- */

/* One PMI key's value (malloc'd); FOEHN_ERR_NOTFOUND when the server has none. */
static int get_raw(foehn_pm *pm, pmi_state *st, const char *name, char **value,
                   const pmi_wait *w, foehn_error *err)
{
    char req[PMI2_REQUEST_MAX];
    size_t len;
    pmi_msg m;
    int rc;
    *value = NULL;
    if (st->version == 1) {
        int n = snprintf(req, sizeof req, "cmd=get kvsname=%s key=%s\n", st->kvsname, name);
        rc = exchange(pm, st, req, (size_t)n, true, "get_result", &m, w, err);
    } else {
        if (st->jobid[0])
            v2_request(req, sizeof req, &len, "cmd=kvs-get;jobid=%s;srcid=-1;key=%s;",
                       st->jobid, name);
        else
            v2_request(req, sizeof req, &len, "cmd=kvs-get;srcid=-1;key=%s;", name);
        rc = exchange(pm, st, req, len, false, "kvs-get-response", &m, w, err);
    }
    if (rc != FOEHN_OK)
        return rc;
    bool ok;
    int code = msg_rc(&m, &ok);
    const char *found = msg_get(&m, "found");
    const char *v = msg_get(&m, "value");
    if (!ok) {
        rc = refused(pm, &m, "a get", err);
    } else if (code != 0 || (found && strcasecmp(found, "true") != 0)) {
        /* PMI-1 servers say rc=-1 msg=key_..._not_found; PMI-2 ones found=FALSE. */
        rc = foehn_fail(err, FOEHN_ERR_NOTFOUND, "PMI key %s not found (%s)", name,
                        code != 0 ? msg_text(&m) : "found=FALSE");
    } else if (!v) {
        rc = refused(pm, &m, "a get", err);
    } else {
        *value = strdup(v);
        rc = *value ? FOEHN_OK : foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    }
    msg_clear(&m);
    return rc;
}

static int not_ours(foehn_pm *pm, int rank, const char *key, const char *name, const char *v,
                    foehn_error *err)
{
    char c[160], q[QUOTE_MAX + 8];
    return foehn_fail(err, FOEHN_ERR_PROTOCOL,
                      "rank %d's key \"%s\" (PMI key %s) holds \"%s\", which is not a value "
                      "Foehn wrote %s (does another program share this PMI key space?)",
                      rank, key, name, quote(v, strlen(v), q, sizeof q), ctx(pm, c, sizeof c));
}

static int pmi_get(foehn_pm *pm, int rank, const char *key, void **value, size_t *len,
                   double timeout, foehn_error *err)
{
    pmi_state *st = pm->state;
    if (rank == pm->rank) {
        pmi_kv *kv = kv_find(st->mine, key);
        if (!kv)
            return foehn_fail(err, FOEHN_ERR_NOTFOUND,
                              "rank %d (this rank) committed no key \"%s\"", rank, key);
        char *copy = malloc(kv->len + 1);
        if (!copy)
            return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
        memcpy(copy, kv->value, kv->len + 1);
        *value = copy;
        *len = kv->len;
        return FOEHN_OK;
    }
    char what[FOEHN_PM_KEY_MAX + 64];
    snprintf(what, sizeof what, "rank %d's key \"%s\"", rank, key);
    pmi_wait w = wait_for(timeout, what, "the launcher's PMI server is stuck or overloaded");
    char name[FOEHN_PM_KEY_MAX + 48];
    snprintf(name, sizeof name, "f%d.%s", rank, key);
    char *head;
    int rc = get_raw(pm, st, name, &head, &w, err);
    if (rc == FOEHN_ERR_NOTFOUND) {
        char c[160];
        return foehn_fail(err, FOEHN_ERR_NOTFOUND,
                          "rank %d put no key \"%s\" (or has not committed it before the last "
                          "fence) %s",
                          rank, key, ctx(pm, c, sizeof c));
    }
    if (rc != FOEHN_OK)
        return rc;
    unsigned char *out = NULL;
    size_t n = 0;
    if (head[0] == 'v') {
        out = malloc(strlen(head) + 1);
        if (!out) {
            free(head);
            return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
        }
        if (foehn_pmi_unescape_append(head + 1, out, &n, strlen(head)) != 0) {
            rc = not_ours(pm, rank, key, name, head, err);
            free(out);
            free(head);
            return rc;
        }
    } else if (head[0] == 'n') {
        char *dot = strchr(head + 1, '.');
        long parts, total;
        if (dot)
            *dot = '\0';
        if (!dot || parse_int(head + 1, 1, 99, &parts) != 0 ||
            parse_int(dot + 1, 0, FOEHN_PM_VALUE_MAX, &total) != 0) {
            if (dot)
                *dot = '.';
            rc = not_ours(pm, rank, key, name, head, err);
            free(head);
            return rc;
        }
        out = malloc((size_t)total + 1);
        if (!out) {
            free(head);
            return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
        }
        for (long i = 0; i < parts && rc == FOEHN_OK; i++) {
            char pname[FOEHN_PM_KEY_MAX + 48], *pv;
            snprintf(pname, sizeof pname, "p%d.%ld.%s", rank, i, key);
            rc = get_raw(pm, st, pname, &pv, &w, err);
            if (rc == FOEHN_ERR_NOTFOUND) {
                char c[160];
                rc = foehn_fail(err, FOEHN_ERR_PROTOCOL,
                                "rank %d's key \"%s\" is split over %ld PMI keys, but part %ld "
                                "(%s) is missing %s",
                                rank, key, parts, i, pname, ctx(pm, c, sizeof c));
            }
            if (rc != FOEHN_OK)
                break;
            if (foehn_pmi_unescape_append(pv, out, &n, (size_t)total) != 0)
                rc = not_ours(pm, rank, key, pname, pv, err);
            free(pv);
        }
        if (rc == FOEHN_OK && n != (size_t)total) {
            char c[160];
            rc = foehn_fail(err, FOEHN_ERR_PROTOCOL,
                            "rank %d's key \"%s\" came back with %zu of its %ld bytes %s", rank,
                            key, n, total, ctx(pm, c, sizeof c));
        }
        if (rc != FOEHN_OK) {
            free(out);
            free(head);
            return rc;
        }
    } else {
        rc = not_ours(pm, rank, key, name, head, err);
        free(head);
        return rc;
    }
    free(head);
    out[n] = '\0';
    *value = out;
    *len = n;
    return FOEHN_OK;
}

/* ---- abort, finalize -------------------------------------------------- */

/* The message, made safe for one token of the wire: separators become '_'. */
static void wire_text(const char *message, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = message ? message : ""; *p && o + 1 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        out[o++] = (c <= ' ' || c == '=' || c == ';' || c >= 0x7f) ? '_' : (char)c;
    }
    out[o] = '\0';
}

static int pmi_abort(foehn_pm *pm, int status, const char *message)
{
    pmi_state *st = pm->state;
    int code = status ? status : 1;
    if (st && st->fd >= 0 && !st->broken) {
        char text[512], req[PMI2_REQUEST_MAX];
        size_t len = 0;
        foehn_error err;
        wire_text(message, text, sizeof text);
        if (st->version == 1) {
            int n = snprintf(req, sizeof req, "cmd=abort exitcode=%d%s%s\n", code,
                             text[0] ? " message=" : "", text);
            len = n > 0 ? (size_t)n : 0;
        } else {
            v2_request(req, sizeof req, &len, "cmd=abort;isworld=TRUE;msg=%s;",
                       text[0] ? text : "foehn_abort");
        }
        pmi_wait w = wait_for(ABORT_GRACE, "the job's end after abort", "");
        if (send_all(pm, st, req, len, &w, &err) == FOEHN_OK) {
            /* No answer comes: the launcher kills the job. Give it the time to. */
            while (recv_some(pm, st, &w, &err) == FOEHN_OK)
                st->in_len = 0;
        }
    }
    exit(code);
}

static void pmi_finalize(foehn_pm *pm)
{
    pmi_state *st = pm->state;
    if (!st)
        return;
    if (st->initialized && st->fd >= 0 && !st->broken) {
        double t = pm->timeout < FINALIZE_TIMEOUT ? pm->timeout : FINALIZE_TIMEOUT;
        pmi_wait w = wait_for(t, "finalize's acknowledgement", "");
        foehn_error err;
        pmi_msg m;
        if (st->version == 1) {
            static const char req[] = "cmd=finalize\n";
            if (exchange(pm, st, req, sizeof req - 1, true, "finalize_ack", &m, &w, &err) ==
                FOEHN_OK)
                msg_clear(&m);
        } else {
            char req[64];
            size_t len;
            v2_request(req, sizeof req, &len, "cmd=finalize;");
            if (exchange(pm, st, req, len, false, "finalize-response", &m, &w, &err) ==
                FOEHN_OK)
                msg_clear(&m);
        }
    }
    close_state(st);
    pm->state = NULL;
}

const foehn_pm_provider foehn_pm_provider_pmi = {
    .name = "pmi",
    .init = pmi_init,
    .put = pmi_put,
    .commit = pmi_commit,
    .fence = pmi_fence,
    .get = pmi_get,
    .abort = pmi_abort,
    .finalize = pmi_finalize,
};
