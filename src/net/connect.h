/* TCP sockets as Foehn's services use them (the rendezvous, the watchdog, a
 * launcher's PMI server, the communicator's peers, `foehn doctor`): one connection
 * attempt with a deadline, and a listening socket on a port the kernel picks. */
#ifndef FOEHN_NET_CONNECT_H
#define FOEHN_NET_CONNECT_H

#include <netdb.h>
#include <stdbool.h>

/* Connects a new non-blocking, close-on-exec socket to a, waiting until deadline
 * (foehn_now() seconds): 0 with the socket in *fd, or the errno that ended the
 * attempt (ETIMEDOUT at the deadline), with nothing left open. */
int foehn_tcp_connect(const struct addrinfo *a, double deadline, int *fd);

/* A close-on-exec socket (non-blocking when asked) bound to a and listening with
 * backlog: 0 with it in *fd and its port (the kernel's choice when a's is 0) in
 * *port, or the errno that stopped it, with nothing left open. */
int foehn_tcp_listen(const struct addrinfo *a, int backlog, bool nonblock, int *fd, int *port);

#endif
