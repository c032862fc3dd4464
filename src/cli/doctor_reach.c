/* foehn doctor across the job: each rank's published address, and whether every rank
 * reaches rank 0's. Rank 0 listens on the address it would publish and puts it
 * through the pm layer; after a fence every other rank connects (a TCP handshake,
 * nothing sent: the listener never accepts, so nobody can feed it), puts what
 * happened, and after a second fence rank 0 reads every rank's answer. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/doctor.h"
#include "common/clock.h"
#include "common/fdio.h"
#include "net/address.h"
#include "net/connect.h"
#include "pm/pm.h"

#define ADDR_KEY "foehn.doctor.addr"
#define REACH_KEY "foehn.doctor.reach"
#define CONNECT_SECONDS 5.0

/* A listening socket on ip, port chosen by the kernel, into where ("ip:port"). */
static int listen_on(const char *ip, char *where, size_t len, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *ai;
    if (getaddrinfo(ip, "0", &hints, &ai) != 0) {
        snprintf(why, whylen, "'%s' is not a numeric address", ip);
        return -1;
    }
    int fd = -1, port = 0;
    int e = foehn_tcp_listen(ai, SOMAXCONN, false, &fd, &port);
    freeaddrinfo(ai);
    if (e != 0) {
        snprintf(why, whylen, "cannot listen on %s: %s", ip, strerror(e));
        return -1;
    }
    snprintf(where, len, strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
    return fd;
}

/* Connects to "ip:port" (or "[ip6]:port") within CONNECT_SECONDS; "" or why not. */
static void try_connect(const char *where, char *why, size_t whylen)
{
    char host[80];
    snprintf(host, sizeof host, "%s", where);
    char *colon = strrchr(host, ':');
    if (!colon) {
        snprintf(why, whylen, "rank 0 published '%s', not ip:port", where);
        return;
    }
    *colon = '\0';
    const char *port = colon + 1;
    char *h = host;
    if (*h == '[') {
        h++;
        h[strlen(h) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *ai;
    if (getaddrinfo(h, port, &hints, &ai) != 0) {
        snprintf(why, whylen, "rank 0 published '%s', not a numeric address", where);
        return;
    }
    int fd = -1;
    int e = foehn_tcp_connect(ai, foehn_now() + CONNECT_SECONDS, &fd);
    freeaddrinfo(ai);
    if (e == 0)
        why[0] = '\0';
    else
        snprintf(why, whylen, "%s", strerror(e));
    if (fd >= 0)
        close(fd);
}

void doctor_check_reach(doctor_report *r, const foehn_job *job, char *const *envp)
{
    foehn_pm *pm = NULL;
    foehn_error err;
    if (foehn_pm_init(&pm, envp, &err) != FOEHN_OK) {
        doctor_add(r, "reach", CHECK_FAIL, "the ranks cannot find each other: fix what the "
                   "message says (see the libpmix and job checks above)", "%s", err.message);
        return;
    }
    r->rank = pm->rank;
    r->size = pm->size;
    /* the address as foehn.pytorch and the communicator would choose it */
    const char **peers = calloc(job->nhosts + 1, sizeof *peers);
    size_t npeers = 0;
    for (size_t i = 0; peers && i < job->nhosts; i++)
        if (strcmp(job->hosts[i], job->hostname) != 0)
            peers[npeers++] = job->hosts[i];
    foehn_address addr;
    int rc = foehn_address_choose(envp, peers, npeers, pm->num_nodes == 1, &addr, &err);
    free(peers);
    if (rc != FOEHN_OK) {
        doctor_add(r, "address", CHECK_FAIL, "set FOEHN_IFACE to an interface the other hosts "
                   "reach", "%s", err.message);
        foehn_pm_finalize(pm);
        return;
    }
    doctor_add(r, "address", CHECK_OK, NULL, "%s on %s (%s)", addr.ip, addr.iface, addr.why);
    if (pm->size == 1) {
        doctor_add(r, "reach", CHECK_OK, NULL, "a job of one: no other rank to reach");
        foehn_pm_finalize(pm);
        return;
    }
    char where[128] = "", why[256] = "";
    int lfd = -1;
    double timeout = foehn_pm_timeout(pm, 0);
    if (pm->rank == 0) {
        lfd = listen_on(addr.ip, where, sizeof where, why, sizeof why);
        if (lfd >= 0)
            rc = foehn_pm_put(pm, ADDR_KEY, where, strlen(where), &err);
    }
    if (rc == FOEHN_OK)
        rc = foehn_pm_commit(pm, &err);
    if (rc == FOEHN_OK)
        rc = foehn_pm_fence(pm, timeout, &err);
    char answer[512] = "1 ";
    if (rc == FOEHN_OK && pm->rank != 0) {
        void *value = NULL;
        size_t len = 0;
        if (foehn_pm_get(pm, 0, ADDR_KEY, &value, &len, timeout, &err) != FOEHN_OK) {
            snprintf(answer, sizeof answer, "0 rank 0 published no address (%.400s)", err.message);
        } else {
            snprintf(where, sizeof where, "%s", (char *)value);
            try_connect(where, why, sizeof why);
            if (why[0])
                snprintf(answer, sizeof answer, "0 %s", why);
        }
        free(value);
    } else if (pm->rank == 0 && lfd < 0) {
        snprintf(answer, sizeof answer, "0 %s", why);
    }
    char mine[800];
    snprintf(mine, sizeof mine, "%s\n%s", answer, job->hostname);
    if (rc == FOEHN_OK)
        rc = foehn_pm_put(pm, REACH_KEY, mine, strlen(mine), &err);
    if (rc == FOEHN_OK)
        rc = foehn_pm_commit(pm, &err);
    if (rc == FOEHN_OK)
        rc = foehn_pm_fence(pm, timeout, &err);
    if (rc != FOEHN_OK) {
        doctor_add(r, "reach", CHECK_FAIL, "check that every rank runs foehn doctor (it is "
                   "collective) and that the launcher's service is healthy", "%s", err.message);
    } else if (pm->rank != 0) {
        doctor_add(r, "reach", answer[0] == '1' ? CHECK_OK : CHECK_FAIL,
                   answer[0] == '1' ? NULL : "set FOEHN_IFACE to an interface that every host "
                   "shares (foehn doctor lists them)", "rank 0 at %s: %s", where,
                   answer[0] == '1' ? "reached" : answer + 2);
    } else {
        r->ranks = calloc((size_t)pm->size, sizeof *r->ranks);
        int bad = 0, first_bad = -1;
        for (int k = 0; r->ranks && k < pm->size; k++) {
            doctor_rank *d = &r->ranks[k];
            d->rank = k;
            void *value = NULL;
            size_t len = 0;
            if (foehn_pm_get(pm, k, REACH_KEY, &value, &len, timeout, &err) != FOEHN_OK) {
                snprintf(d->detail, sizeof d->detail, "no answer: %.200s", err.message);
            } else {
                char *text = value, *nl = strchr(text, '\n');
                snprintf(d->host, sizeof d->host, "%s", nl ? nl + 1 : "?");
                if (nl)
                    *nl = '\0';
                d->reaches = text[0] == '1';
                snprintf(d->detail, sizeof d->detail, "%s", d->reaches ? "reached" : text + 2);
            }
            free(value);
            if (!d->reaches && bad++ == 0)
                first_bad = k;
        }
        if (!r->ranks)
            doctor_add(r, "reach", CHECK_FAIL, NULL, "out of memory");
        else if (bad == 0)
            doctor_add(r, "reach", CHECK_OK, NULL, "all %d ranks reach rank 0 at %s", pm->size,
                       where);
        else
            doctor_add(r, "reach", CHECK_FAIL, "set FOEHN_IFACE to an interface that every host "
                       "shares (foehn doctor lists them)",
                       "%d of %d ranks cannot reach rank 0 at %s; rank %d (host %s): %s", bad,
                       pm->size, where, first_bad, r->ranks[first_bad].host,
                       r->ranks[first_bad].detail);
    }
    if (lfd >= 0)
        close(lfd);
    foehn_pm_finalize(pm);
}
