#include "net/connect.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fdio.h"

int foehn_tcp_connect(const struct addrinfo *a, double deadline, int *fd_out)
{
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0)
        return errno;
    int e = 0;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        e = errno;
        if (e == EINPROGRESS || e == EINTR) {
            int ready = foehn_wait_fd(fd, POLLOUT, deadline);
            socklen_t elen = sizeof e;
            if (ready <= 0)
                e = ready == 0 ? ETIMEDOUT : errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) != 0)
                e = errno;
        }
    }
    if (e != 0) {
        close(fd);
        return e;
    }
    *fd_out = fd;
    return 0;
}

int foehn_tcp_listen(const struct addrinfo *a, int backlog, bool nonblock, int *fd_out,
                     int *port_out)
{
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
                    a->ai_protocol);
    if (fd < 0)
        return errno;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        int e = errno;
        close(fd);
        return e;
    }
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, &bound, sizeof in6);
        *port_out = ntohs(in6.sin6_port);
    } else {
        struct sockaddr_in in4;
        memcpy(&in4, &bound, sizeof in4);
        *port_out = ntohs(in4.sin_port);
    }
    *fd_out = fd;
    return 0;
}
