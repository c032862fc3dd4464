/* glibc's malloc, set for message passing from Python when foehn.MPI starts.
 *
 * By default glibc serves every block above a moving threshold (128 KiB at first)
 * with a fresh mmap and gives freed memory at the top of the heap back to the
 * system. A process that pickles and receives megabyte messages in a loop then
 * faults in every page of every message anew: pickle.dumps of a 1 MiB array costs
 * ~20x its copy (pickle's buffer grows by realloc). Message-passing libraries keep
 * such memory instead (MVAPICH and Open MPI's registration caches turn trimming and
 * mmap off altogether; UCX keeps its own pools). Here: blocks up to 1 GiB come from
 * the heap, up to 512 MiB freed at its top stays, and every thread allocates from
 * the one main heap. The last matters as much as the first two: the engine's own
 * threads (progress, nonblocking collectives) receive most messages, and glibc gives
 * each thread an arena of its own whose heaps are at most 64 MiB, are unmapped as soon
 * as they are empty, and cannot serve a larger block at all except by a fresh mmap.
 * In one heap, what one message freed serves the next, whatever its size (pympi's
 * mixed iops workload, 2 ranks: 100k page faults per rank -> 71k). A user's own
 * MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ / MALLOC_ARENA_MAX / GLIBC_TUNABLES
 * malloc settings win, and FOEHN_MALLOC_TUNE=0 leaves malloc alone. */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "python/module.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void foehn_py_malloc_tune(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD) && \
    defined(M_ARENA_MAX)
    const char *off = getenv("FOEHN_MALLOC_TUNE");
    if (off && strcmp(off, "0") == 0)
        return;
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") ||
        getenv("MALLOC_ARENA_MAX") || (tunables && strstr(tunables, "glibc.malloc.")))
        return;
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    /* threads that have not allocated yet (the engine's, started after this) share
     * the main arena; those that have keep theirs */
    mallopt(M_ARENA_MAX, 1);
#endif
}
