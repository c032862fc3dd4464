/* glibc's malloc, set for message passing from Python when foehn.MPI starts.
 *
 * By default glibc serves every block above a moving threshold (128 KiB at first)
 * with a fresh mmap and gives freed memory at the top of the heap back to the
 * system. A process that pickles and receives megabyte messages in a loop then
 * faults in every page of every message anew: pickle.dumps of a 1 MiB array costs
 * ~20x its copy (pickle's buffer grows by realloc). Message-passing libraries keep
 * such memory instead (Open MPI's and MVAPICH's memory hooks, UCX); here: blocks up
 * to 64 MiB come from the heap, and up to 128 MiB freed at its top stays. A
 * user's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ / GLIBC_TUNABLES
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
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
    const char *off = getenv("FOEHN_MALLOC_TUNE");
    if (off && strcmp(off, "0") == 0)
        return;
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") ||
        (tunables && strstr(tunables, "glibc.malloc.")))
        return;
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}
