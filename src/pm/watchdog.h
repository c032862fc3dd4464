/* The watchdog: a rank that dies must never leave the others hanging.
 *
 * Under a launcher that does not stop a job when one of its ranks dies (srun without
 * --kill-on-bad-exit, ...), the surviving ranks can sit in a collective for a long
 * time. The watchdog is a star of TCP connections to rank 0, each watched by a thread
 * of its own in every process:
 *
 *   - rank 0 sees a rank's connection close without a goodbye (the process died: the
 *     kernel closes its sockets): it tells every other rank (DIED), prints
 *       foehn: rank K (host H) died without finishing; stopping rank 0
 *     and ends its own process;
 *   - every other rank that hears DIED, or sees rank 0's connection close without a
 *     goodbye, prints the same line (naming rank K, or rank 0) with its own rank, and
 *     ends its process.
 *
 * How a process ends: write(2) of the line to stderr (no stdio: the stuck main thread
 * may hold stderr's lock), a best-effort flush of C's stdout when its lock is free,
 * then _exit(FOEHN_WATCHDOG_EXIT). Not a signal: the main thread may be stuck inside a
 * C++ collective (holding the GIL or not); a Python handler for SIGTERM (Lightning,
 * elastic agents, user code) would only set a flag that the stuck interpreter never
 * looks at, and the process would go on hanging. _exit always works, runs no atexit
 * handlers and no Python code, and loses what Python still buffers in sys.stdout.
 *
 * A clean end is not a death: a rank that finishes calls foehn_watchdog_stop, which
 * says BYE (rank 0 forgets it). Rank 0's own stop says END to everyone still
 * connected: from then on nobody is watched, so ranks may finish at any time.
 * A process that ends with exit(0) (Python's normal end, sys.exit(0)) while its
 * watchdog runs is stopped the same way by an on_exit handler (glibc). exit with any
 * other status (Python's uncaught exception: 1), _exit, or a signal is a death.
 * A child of fork() (a DataLoader worker, ...) closes its copies of the watchdog's
 * connections at once (pthread_atfork), so that it never hides its parent's death
 * nor says goodbye for it; foehn_watchdog_stop in such a child only frees memory.
 *
 * Only connections that present the job's token (a fresh random one, published
 * through the process-management layer) count; anything else is closed unread.
 *
 * FOEHN_WATCHDOG (read with getenv by foehn_watchdog_listen): "0", "off", "no" or
 * "false" turn the watchdog off; unset, empty, "1", "on", "yes" or "true" leave it on;
 * anything else is an error. A job of one rank has no watchdog.
 *
 * Threads: each function is called from one thread at a time (the caller's); the
 * watching thread shares nothing with the caller until foehn_watchdog_stop joins it.
 * The watching thread blocks every signal, so signals go to the caller's threads.
 */
#ifndef FOEHN_PM_WATCHDOG_H
#define FOEHN_PM_WATCHDOG_H

#include <stddef.h>

#include "foehn.h"

/* The exit status of a process the watchdog stopped: sysexits' EX_SOFTWARE. Distinct
 * from Python's 1 (an uncaught exception) and 2 (usage), from a shell's 126/127, and
 * from 128+N (killed by signal N), so that a launcher's report tells "stopped because
 * another rank died" apart from the rank that died. */
#define FOEHN_WATCHDOG_EXIT 70

/* Room enough for any value foehn_watchdog_listen publishes ("ip:port:token"). */
#define FOEHN_WATCHDOG_PUBLISH_MAX 128

/* Most ranks one watchdog serves (rank 0 holds one descriptor per rank). */
#define FOEHN_WATCHDOG_SIZE_MAX (1 << 20)

typedef struct foehn_watchdog foehn_watchdog;

/* Before the bootstrap's fence. Rank 0 listens on ip (numeric IPv4 or IPv6; the kernel
 * picks the port) and writes into publish the value the other ranks need
 * ("ip:port:token", token 32 hex digits from getrandom()); rank 0 may raise its soft
 * RLIMIT_NOFILE to hold size descriptors. Other ranks publish nothing (empty string).
 * *wd is NULL (and FOEHN_OK returned) when the watchdog is off or size is 1: every
 * other function accepts a NULL watchdog and does nothing. */
int foehn_watchdog_listen(foehn_watchdog **wd, int rank, int size, const char *ip,
                          char *publish, size_t publish_len, foehn_error *err);

/* After the fence. Ranks other than 0 connect to rank0_value (what rank 0 published),
 * say HELLO and wait for rank 0's WELCOME; rank 0 waits until all size-1 ranks have
 * said hello. Every wait is bounded by timeout (seconds, > 0). hostname names this
 * process in the messages the others print (NULL: gethostname()). On success the
 * watching thread runs. On failure nothing is watched; rank 0 first tells the ranks
 * that did connect (they stop, as above), so that a rank 0 that gives up cannot leave
 * them hanging either. Call foehn_watchdog_stop in both cases. */
int foehn_watchdog_start(foehn_watchdog *wd, const char *rank0_value, const char *hostname,
                         double timeout, foehn_error *err);

/* This rank's normal end (destroy_process_group, exit): stops the watching thread,
 * says BYE (rank 0: END), closes and frees. Never blocks on the network. Call once;
 * NULL is fine. */
void foehn_watchdog_stop(foehn_watchdog *wd);

#endif
