/* Which address of this host the other ranks can reach. */
#ifndef FOEHN_NET_ADDRESS_H
#define FOEHN_NET_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "foehn.h"

typedef struct foehn_address {
    char ip[64];        /* numeric IPv4 or IPv6 address */
    char iface[64];     /* the interface that holds it */
    const char *why;    /* how it was chosen, for `foehn doctor` and error messages */
} foehn_address;

/* Chooses the address to publish:
 *   1. FOEHN_IFACE (from envp) when set: that interface's address, or an error;
 *   2. a job on one host: loopback;
 *   3. otherwise the address the kernel would use to reach another host of the
 *      job (a UDP "connect" sends nothing), found for the first peer whose name
 *      resolves;
 *   4. else the first interface that is up, not loopback, with an IPv4 address.
 * peers are the job's other hosts (may be NULL/0). */
int foehn_address_choose(char *const *envp, const char *const *peers, size_t npeers,
                         bool single_host, foehn_address *out, foehn_error *err);

#endif
