/* Descriptors: waiting on one with a deadline, writing all of a buffer, and the
 * open-file limit that jobs of many ranks run into. */
#ifndef FOEHN_COMMON_FDIO_H
#define FOEHN_COMMON_FDIO_H

#include <stddef.h>

/* poll() on fd for events until deadline (foehn_now() seconds), riding out EINTR:
 * 1 ready, 0 timed out, -1 error. Checks once more at a deadline already past. */
int foehn_wait_fd(int fd, short events, double deadline);

/* Writes all of buf to a blocking fd, riding out EINTR and short writes; gives up
 * quietly when the fd fails (a closed stdout has nowhere better to go). */
void foehn_write_all(int fd, const char *buf, size_t len);

/* Raises the soft open-file limit to at least need (never past the hard limit):
 * jobs of many ranks hold a descriptor or more per rank, and the usual soft limit
 * (1024) is below that. Returns the soft limit in force afterwards. */
unsigned long long foehn_fd_limit_raise(unsigned long long need);

#endif
