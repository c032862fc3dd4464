#include "net/address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.h"
#include "discovery/env.h"

static bool numeric(const struct sockaddr *sa, char *ip, size_t len)
{
    socklen_t salen = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in);
    return getnameinfo(sa, salen, ip, (socklen_t)len, NULL, 0, NI_NUMERICHOST) == 0;
}

/* The interface holding address ip (to name it for gloo and NCCL). */
static void iface_of(const char *ip, char *iface, size_t len)
{
    struct ifaddrs *all, *a;
    iface[0] = '\0';
    if (getifaddrs(&all) != 0)
        return;
    for (a = all; a; a = a->ifa_next) {
        char here[64];
        if (a->ifa_addr && (a->ifa_addr->sa_family == AF_INET || a->ifa_addr->sa_family == AF_INET6) &&
            numeric(a->ifa_addr, here, sizeof here) && strcmp(here, ip) == 0) {
            snprintf(iface, len, "%s", a->ifa_name);
            break;
        }
    }
    freeifaddrs(all);
}

/* FOEHN_IFACE: its first IPv4 address, else its first IPv6 one. */
static int from_iface(const char *name, foehn_address *out, foehn_error *err)
{
    struct ifaddrs *all, *a;
    if (getifaddrs(&all) != 0)
        return foehn_fail(err, FOEHN_ERR_SYSTEM, "cannot list network interfaces");
    bool found_iface = false, found = false;
    for (int family = AF_INET; !found; family = AF_INET6) {
        for (a = all; a && !found; a = a->ifa_next) {
            if (strcmp(a->ifa_name, name) != 0)
                continue;
            found_iface = true;
            if (a->ifa_addr && a->ifa_addr->sa_family == family &&
                numeric(a->ifa_addr, out->ip, sizeof out->ip))
                found = true;
        }
        if (family == AF_INET6)
            break;
    }
    freeifaddrs(all);
    if (!found)
        return foehn_fail(err, FOEHN_ERR_INVALID,
                          found_iface ? "FOEHN_IFACE=\"%s\": the interface has no IP address"
                                      : "FOEHN_IFACE=\"%s\": no such network interface here",
                          name);
    snprintf(out->iface, sizeof out->iface, "%s", name);
    out->why = "FOEHN_IFACE";
    return FOEHN_OK;
}

/* The source address the kernel picks to reach host (no packet is sent). */
static bool route_to(const char *host, foehn_address *out)
{
    struct addrinfo hints, *res, *r;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, "9", &hints, &res) != 0)
        return false;
    bool ok = false;
    for (r = res; r && !ok; r = r->ai_next) {
        int fd = socket(r->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        struct sockaddr_storage local;
        socklen_t len = sizeof local;
        if (connect(fd, r->ai_addr, r->ai_addrlen) == 0 &&
            getsockname(fd, (struct sockaddr *)&local, &len) == 0 &&
            numeric((struct sockaddr *)&local, out->ip, sizeof out->ip) &&
            strcmp(out->ip, "127.0.0.1") != 0 && strcmp(out->ip, "::1") != 0)
            ok = true;
        close(fd);
    }
    freeaddrinfo(res);
    return ok;
}

static bool first_up_ipv4(foehn_address *out)
{
    struct ifaddrs *all, *a;
    if (getifaddrs(&all) != 0)
        return false;
    bool ok = false;
    for (a = all; a && !ok; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || !(a->ifa_flags & IFF_UP) ||
            (a->ifa_flags & IFF_LOOPBACK))
            continue;
        ok = numeric(a->ifa_addr, out->ip, sizeof out->ip);
        if (ok)
            snprintf(out->iface, sizeof out->iface, "%s", a->ifa_name);
    }
    freeifaddrs(all);
    return ok;
}

int foehn_address_choose(char *const *envp, const char *const *peers, size_t npeers,
                         bool single_host, foehn_address *out, foehn_error *err)
{
    memset(out, 0, sizeof *out);
    const char *iface = foehn_env_get(envp, "FOEHN_IFACE");
    if (iface && *iface)
        return from_iface(iface, out, err);
    if (single_host) {
        snprintf(out->ip, sizeof out->ip, "127.0.0.1");
        iface_of(out->ip, out->iface, sizeof out->iface);
        out->why = "all ranks on this host: loopback";
        return FOEHN_OK;
    }
    for (size_t i = 0; i < npeers; i++) {
        if (peers[i] && route_to(peers[i], out)) {
            iface_of(out->ip, out->iface, sizeof out->iface);
            out->why = "the route to another host of the job";
            return FOEHN_OK;
        }
    }
    if (first_up_ipv4(out)) {
        out->why = "the first interface that is up (no other host's name resolves)";
        return FOEHN_OK;
    }
    return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                      "no network address reaches the other hosts of this job: no interface "
                      "other than loopback is up; set FOEHN_IFACE to the interface to use");
}
