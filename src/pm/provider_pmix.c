/* The pmix provider: the system's libpmix, loaded with dlopen at run time.
 *
 * Foehn never links against PMIx and never includes <pmix.h>: one build must run
 * on any cluster, and a machine without PMIx must still load Foehn. So this file
 * declares the few PMIx types it passes across the library boundary itself, laid
 * out exactly as PMIx 4.2 and 5.0 lay them out (checked against both; the client
 * ABI of libpmix.so.2 is believed to have kept them since v3), and looks up the
 * handful of functions it calls with dlsym.
 *
 * The model maps one to one: put is PMIx_Put(PMIX_GLOBAL) of a byte object under
 * "foehn.<key>", commit is PMIx_Commit, fence is PMIx_Fence_nb over the whole
 * namespace with PMIX_COLLECT_DATA (so that every value is at hand afterwards),
 * get is PMIx_Get with PMIX_IMMEDIATE (a key that the fence did not bring is
 * missing, not something to ask the host for and wait on).
 *
 * Two things PMIx servers get wrong, which the fence works around (seen with
 * PMIx 4.2 under Open MPI 4.1 and Slurm 22.05, and PMIx 5.0 under PRRTE):
 *  - PMIX_TIMEOUT is kept only by the server whose local ranks have not all
 *    arrived; once a node's share has gone to the host (Slurm's plugin, across
 *    nodes), the ranks there wait for the host's own timeout (300 s). So the
 *    fence waits on its own clock too.
 *  - When a rank dies or never arrives, PRRTE may complete the fence for some of
 *    the others with PMIX_SUCCESS. So each rank puts a key naming the fence it
 *    enters, and a fence counts only when every rank's key for it is there.
 */
#include "pm/pm.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

#include "common/error.h"
#include "discovery/env.h"

/* ---- the PMIx ABI (what pmix_common.h declares), declared here ----------- */

typedef int pmix_status_t;
typedef uint32_t pmix_rank_t;
typedef uint16_t pmix_data_type_t;
typedef uint8_t pmix_scope_t;
typedef uint32_t pmix_info_directives_t;

#define PMIX_MAX_NSLEN 255
#define PMIX_MAX_KEYLEN 511

typedef struct pmix_proc {
    char nspace[PMIX_MAX_NSLEN + 1];
    pmix_rank_t rank;
} pmix_proc_t;

typedef struct pmix_byte_object {
    char *bytes;
    size_t size;
} pmix_byte_object_t;

/* PMIx's union has some fifty members; only its size and the offsets of the ones
 * read here matter. Its largest member is pmix_envar_t (two pointers and a char),
 * which `envar` stands for, so the union has PMIx's size and alignment. */
typedef struct pmix_value {
    pmix_data_type_t type;
    union {
        bool flag;
        uint8_t byte;
        char *string;
        size_t size;
        pid_t pid;
        int integer;
        int8_t int8;
        int16_t int16;
        int32_t int32;
        int64_t int64;
        unsigned int uint;
        uint8_t uint8;
        uint16_t uint16;
        uint32_t uint32;
        uint64_t uint64;
        float fval;
        double dval;
        struct timeval tv;
        time_t time;
        pmix_status_t status;
        pmix_rank_t rank;
        pmix_byte_object_t bo;
        void *ptr;
        struct {
            char *envar;
            char *value;
            char separator;
        } envar;
    } data;
} pmix_value_t;

typedef struct pmix_info {
    char key[PMIX_MAX_KEYLEN + 1];
    pmix_info_directives_t flags;
    pmix_value_t value;
} pmix_info_t;

/* Checked against pmix_common.h of PMIx 4.2.2 and against libpmix 5.0.11 at run
 * time (its *_construct functions clear exactly sizeof bytes); LP64 only. */
#if UINTPTR_MAX == UINT64_MAX && ULONG_MAX == UINT64_MAX
_Static_assert(sizeof(pmix_proc_t) == 260, "pmix_proc_t differs from PMIx's");
_Static_assert(sizeof(pmix_byte_object_t) == 16, "pmix_byte_object_t differs from PMIx's");
_Static_assert(sizeof(pmix_value_t) == 32, "pmix_value_t differs from PMIx's");
_Static_assert(offsetof(pmix_value_t, data) == 8, "pmix_value_t differs from PMIx's");
_Static_assert(sizeof(pmix_info_t) == 552, "pmix_info_t differs from PMIx's");
_Static_assert(offsetof(pmix_info_t, flags) == 512, "pmix_info_t differs from PMIx's");
_Static_assert(offsetof(pmix_info_t, value) == 520, "pmix_info_t differs from PMIx's");
#endif

#define PMIX_RANK_WILDCARD (UINT32_MAX - 1)
#define PMIX_RANK_VALID (UINT32_MAX - 50) /* ranks at or above are special values */
#define PMIX_GLOBAL ((pmix_scope_t)3)

/* Data types. */
#define PMIX_BOOL 1
#define PMIX_STRING 3
#define PMIX_SIZE 4
#define PMIX_INT 6
#define PMIX_INT8 7
#define PMIX_INT16 8
#define PMIX_INT32 9
#define PMIX_INT64 10
#define PMIX_UINT 11
#define PMIX_UINT8 12
#define PMIX_UINT16 13
#define PMIX_UINT32 14
#define PMIX_UINT64 15
#define PMIX_BYTE_OBJECT 27
#define PMIX_PROC_RANK 40

/* Status codes. */
#define PMIX_SUCCESS 0
#define PMIX_ERR_PROC_ABORTED (-7)
#define PMIX_ERR_PROC_REQUESTED_ABORT (-8)
#define PMIX_ERR_PROC_ABORTING (-9)
#define PMIX_ERR_PROC_ENTRY_NOT_FOUND (-17)
#define PMIX_ERR_TIMEOUT (-24)
#define PMIX_ERR_UNREACH (-25)
#define PMIX_ERR_INIT (-31)
#define PMIX_ERR_NOMEM (-32)
#define PMIX_ERR_NOT_FOUND (-46)
#define PMIX_ERR_COMM_FAILURE (-49)
#define PMIX_ERR_UNPACK_READ_PAST_END_OF_BUFFER (-50)
#define PMIX_ERR_PARTIAL_SUCCESS (-52)
#define PMIX_ERR_LOST_CONNECTION (-61)
#define PMIX_ERR_LOST_CONNECTION_TO_SERVER (-101)
#define PMIX_ERR_JOB_TERMINATED (-145)
#define PMIX_ERR_JOB_FIRST_FAILURE (-190) /* -177 .. -190: the job failed or was killed */
#define PMIX_ERR_JOB_LAST_FAILURE (-177)
#define PMIX_OPERATION_SUCCEEDED (-157) /* an _nb call finished at once: no callback */
#define PMIX_ERR_PROC_TERM_WO_SYNC (-200)
#define PMIX_EVENT_PROC_TERMINATED (-201)
#define PMIX_ERR_NODE_DOWN (-231)
#define PMIX_ERR_PROC_FIRST_FAILURE (-404) /* -400 .. -404: a process was killed or failed */
#define PMIX_ERR_PROC_LAST_FAILURE (-400)

/* Attribute keys. */
#define PMIX_JOB_SIZE "pmix.job.size"
#define PMIX_LOCAL_RANK "pmix.lrank"
#define PMIX_LOCAL_SIZE "pmix.local.size"
#define PMIX_NODEID "pmix.nodeid"
#define PMIX_NUM_NODES "pmix.num.nodes"
#define PMIX_TIMEOUT "pmix.timeout"
#define PMIX_COLLECT_DATA "pmix.collect"
#define PMIX_IMMEDIATE "pmix.immediate"

/* Foehn's keys live under their own prefix, clear of PMIx's "pmix." ones and of
 * whatever an MPI library in the same process puts. */
#define KEY_PREFIX "foehn."

/* ---- the library --------------------------------------------------------- */

typedef pmix_status_t (*pmix_init_fn)(pmix_proc_t *proc, pmix_info_t info[], size_t ninfo);
typedef pmix_status_t (*pmix_finalize_fn)(const pmix_info_t info[], size_t ninfo);
typedef pmix_status_t (*pmix_get_fn)(const pmix_proc_t *proc, const char key[],
                                     const pmix_info_t info[], size_t ninfo, pmix_value_t **val);
typedef pmix_status_t (*pmix_put_fn)(pmix_scope_t scope, const char key[], pmix_value_t *val);
typedef pmix_status_t (*pmix_commit_fn)(void);
typedef void (*pmix_op_cbfunc_t)(pmix_status_t status, void *cbdata);
typedef pmix_status_t (*pmix_fence_nb_fn)(const pmix_proc_t procs[], size_t nprocs,
                                          const pmix_info_t info[], size_t ninfo,
                                          pmix_op_cbfunc_t cbfunc, void *cbdata);
typedef pmix_status_t (*pmix_abort_fn)(int status, const char msg[], pmix_proc_t procs[],
                                       size_t nprocs);
typedef void (*pmix_value_destruct_fn)(pmix_value_t *val);
typedef const char *(*pmix_error_string_fn)(pmix_status_t status);
typedef const char *(*pmix_get_version_fn)(void);

typedef struct pmix_lib {
    void *handle;
    char name[256]; /* what dlopen was given */
    const char *version;
    pmix_init_fn init;
    pmix_finalize_fn finalize;
    pmix_get_fn get;
    pmix_put_fn put;
    pmix_commit_fn commit;
    pmix_fence_nb_fn fence_nb;
    pmix_abort_fn abort;
    pmix_value_destruct_fn value_destruct;
    pmix_error_string_fn error_string;
    pmix_get_version_fn get_version;
} pmix_lib;

/* The one process-wide state in the pm layer, and why: libpmix is a process-wide
 * singleton itself (PMIx_Init is reference-counted per process), so two foehn_pm
 * handles in one process share one loaded library. It is dlclose'd only when the
 * last of them finalizes; the mutex keeps a concurrent init from using a library
 * being closed. Everything else lives in each foehn_pm. */
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static pmix_lib lib;
static int lib_users;
/* How many fences this process has entered. Every rank makes the same sequence of
 * fences (they are collective), so the count agrees across ranks; it is never
 * reset, so a value left from an earlier session in the same namespace never
 * passes for a current one. Guarded by lib_lock. */
static uint32_t fences_entered;

typedef struct pmix_state {
    pmix_proc_t self; /* nspace and rank PMIx_Init gave */
} pmix_state;

typedef void (*any_fn)(void);

/* dlsym's result as a function pointer. ISO C has no conversion from void * to a
 * function pointer; POSIX guarantees that both have one representation, so the
 * bytes are copied (no -Wpedantic warning, no pragma). Callers convert any_fn to
 * the real type, a conversion between function pointer types ISO C allows. The
 * first missing name lands in *missing. */
static any_fn lookup(void *handle, const char *name, const char **missing)
{
    void *address = dlsym(handle, name);
    any_fn fn = NULL;
    _Static_assert(sizeof fn == sizeof address, "function and object pointers differ in size");
    if (address)
        memcpy(&fn, &address, sizeof fn);
    else if (!*missing)
        *missing = name;
    return fn;
}

/* Fills l's functions from l->handle; returns the first name missing, or NULL. */
static const char *lookup_all(pmix_lib *l)
{
    const char *missing = NULL;
    void *h = l->handle;
    l->init = (pmix_init_fn)lookup(h, "PMIx_Init", &missing);
    l->finalize = (pmix_finalize_fn)lookup(h, "PMIx_Finalize", &missing);
    l->get = (pmix_get_fn)lookup(h, "PMIx_Get", &missing);
    l->put = (pmix_put_fn)lookup(h, "PMIx_Put", &missing);
    l->commit = (pmix_commit_fn)lookup(h, "PMIx_Commit", &missing);
    l->fence_nb = (pmix_fence_nb_fn)lookup(h, "PMIx_Fence_nb", &missing);
    l->abort = (pmix_abort_fn)lookup(h, "PMIx_Abort", &missing);
    l->value_destruct = (pmix_value_destruct_fn)lookup(h, "PMIx_Value_destruct", &missing);
    l->error_string = (pmix_error_string_fn)lookup(h, "PMIx_Error_string", &missing);
    l->get_version = (pmix_get_version_fn)lookup(h, "PMIx_Get_version", &missing);
    return missing;
}

/* The major version in "OpenPMIx 4.2.2 (PMIx Standard: 4.2, ...)", or -1. */
static int version_major(const char *version)
{
    for (const char *p = version; p && *p; p++) {
        if (*p >= '0' && *p <= '9' && (p == version || p[-1] == ' ')) {
            int major = 0;
            while (*p >= '0' && *p <= '9' && major < 1000)
                major = major * 10 + (*p++ - '0');
            return *p == '.' ? major : -1;
        }
    }
    return -1;
}

/* Checks that the library just opened is one whose ABI this file declares. */
static int check_library(pmix_lib *l, foehn_error *err)
{
    const char *missing = lookup_all(l);
    if (missing)
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "%s has no %s, so it is not a PMIx client library Foehn can use; "
                          "set FOEHN_LIBPMIX to the libpmix.so.2 of the PMIx your launcher uses",
                          l->name, missing);
    l->version = l->get_version();
    int major = version_major(l->version);
    if (major >= 0 && major < 3)
        return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                          "%s is %s, older than PMIx 3, whose data layout Foehn does not speak; "
                          "set FOEHN_LIBPMIX to the libpmix.so.2 of a PMIx 3 or newer",
                          l->name, l->version);
    return FOEHN_OK;
}

/* dlopens $FOEHN_LIBPMIX when set (the user chose: no other library is tried),
 * else the first of libpmix.so.2, libpmix.so that loads.
 * RTLD_LOCAL: PMIx's own plugins link against libpmix themselves, and keeping its
 * symbols private avoids clashing with another PMIx an MPI library brought. */
static int load_library(pmix_lib *l, char *const *envp, foehn_error *err)
{
    const char *chosen = foehn_env_get(envp, "FOEHN_LIBPMIX");
    const char *names[] = {chosen && *chosen ? chosen : "libpmix.so.2",
                           chosen && *chosen ? NULL : "libpmix.so"};
    char tried[768] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!names[i] || !*names[i])
            continue;
        void *handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (handle) {
            memset(l, 0, sizeof *l);
            l->handle = handle;
            snprintf(l->name, sizeof l->name, "%s", names[i]);
            int rc = check_library(l, err);
            if (rc != FOEHN_OK) {
                dlclose(handle);
                memset(l, 0, sizeof *l);
            }
            return rc;
        }
        const char *why = dlerror();
        int n = snprintf(tried + used, sizeof tried - used, "%s%s (%s)", used ? "; " : "",
                         names[i], why ? why : "not found");
        if (n > 0)
            used = (size_t)n < sizeof tried - used ? used + (size_t)n : sizeof tried - 1;
    }
    return foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                      "the pmix provider could not load a PMIx library; tried %s. Install "
                      "libpmix2 (Debian) or set FOEHN_LIBPMIX to the libpmix.so.2 of the PMIx "
                      "your launcher uses",
                      tried);
}

int foehn_pmix_probe(char *const *envp, char *name, size_t namelen, char *version, size_t vlen,
                     foehn_error *err)
{
    pmix_lib l;
    memset(&l, 0, sizeof l);
    int rc = load_library(&l, envp, err);
    if (rc != FOEHN_OK)
        return rc;
    snprintf(name, namelen, "%s", l.name);
    snprintf(version, vlen, "%s", l.version ? l.version : "?");
    dlclose(l.handle);
    return FOEHN_OK;
}

/* ---- statuses and messages ----------------------------------------------- */

/* "PMIX_ERR_TIMEOUT (-24)"; buf must outlive the use. */
static const char *status_text(pmix_status_t status, char *buf, size_t len)
{
    const char *name = lib.error_string ? lib.error_string(status) : NULL;
    snprintf(buf, len, "%s (%d)", name ? name : "unknown PMIx status", status);
    return buf;
}

static bool is_peer_failure(pmix_status_t s)
{
    return s == PMIX_ERR_PROC_ABORTED || s == PMIX_ERR_PROC_REQUESTED_ABORT ||
           s == PMIX_ERR_PROC_ABORTING || s == PMIX_ERR_UNREACH || s == PMIX_ERR_COMM_FAILURE ||
           s == PMIX_ERR_LOST_CONNECTION || s == PMIX_ERR_LOST_CONNECTION_TO_SERVER ||
           s == PMIX_ERR_PARTIAL_SUCCESS || /* a fence some ranks left by dying */
           s == PMIX_ERR_JOB_TERMINATED || s == PMIX_ERR_PROC_TERM_WO_SYNC ||
           s == PMIX_EVENT_PROC_TERMINATED || s == PMIX_ERR_NODE_DOWN ||
           (s >= PMIX_ERR_JOB_FIRST_FAILURE && s <= PMIX_ERR_JOB_LAST_FAILURE) ||
           (s >= PMIX_ERR_PROC_FIRST_FAILURE && s <= PMIX_ERR_PROC_LAST_FAILURE);
}

static int foehn_status_of(pmix_status_t s)
{
    if (s == PMIX_ERR_TIMEOUT)
        return FOEHN_ERR_TIMEOUT;
    if (s == PMIX_ERR_NOT_FOUND || s == PMIX_ERR_PROC_ENTRY_NOT_FOUND)
        return FOEHN_ERR_NOTFOUND;
    if (s == PMIX_ERR_NOMEM)
        return FOEHN_ERR_NOMEM;
    if (s == PMIX_ERR_INIT)
        return FOEHN_ERR_UNAVAILABLE;
    if (is_peer_failure(s))
        return FOEHN_ERR_PEER;
    return FOEHN_ERR_PROTOCOL;
}

/* What to check, for a failure that is not a timeout (those name their own). */
static const char *advice_for(int code)
{
    switch (code) {
    case FOEHN_ERR_PEER:
        return "a process of the job died or the PMIx server (the launcher) went away: check "
               "the other ranks' output and the launcher's messages";
    case FOEHN_ERR_UNAVAILABLE:
        return "PMIx is not initialised in this process";
    case FOEHN_ERR_NOMEM:
        return "the PMIx library ran out of memory";
    default:
        return "check that this process loads the PMIx of its launcher (set FOEHN_LIBPMIX "
               "to choose the library)";
    }
}

/* Fails a PMIx call: names the call, PMIx's status, what it was doing or waiting
 * for (what: a noun phrase), the launcher and provider, and what to check. */
static int fail_code(const foehn_pm *pm, foehn_error *err, int code, const char *call,
                     pmix_status_t status, const char *what, int seconds,
                     const char *timeout_advice)
{
    char text[160], ctx[160];
    status_text(status, text, sizeof text);
    foehn_pm_context(pm, ctx, sizeof ctx);
    if (code == FOEHN_ERR_TIMEOUT)
        return foehn_fail(err, code, "%s gave %s: waited %d s for %s %s; %s", call, text,
                          seconds, what, ctx, timeout_advice);
    return foehn_fail(err, code, "%s gave %s during %s %s (PMIx library %s, %s); %s", call, text,
                      what, ctx, lib.name, lib.version ? lib.version : "?", advice_for(code));
}

static int fail_call(const foehn_pm *pm, foehn_error *err, const char *call,
                     pmix_status_t status, const char *what, int seconds,
                     const char *timeout_advice)
{
    return fail_code(pm, err, foehn_status_of(status), call, status, what, seconds,
                     timeout_advice);
}

/* ---- small helpers ------------------------------------------------------- */

static void info_bool(pmix_info_t *info, const char *key, bool flag)
{
    memset(info, 0, sizeof *info);
    snprintf(info->key, sizeof info->key, "%s", key);
    info->value.type = PMIX_BOOL;
    info->value.data.flag = flag;
}

static void info_int(pmix_info_t *info, const char *key, int value)
{
    memset(info, 0, sizeof *info);
    snprintf(info->key, sizeof info->key, "%s", key);
    info->value.type = PMIX_INT;
    info->value.data.integer = value;
}

/* Whole seconds for PMIX_TIMEOUT (an int, 0 meaning forever): rounded up, at least 1. */
static int timeout_seconds(double timeout)
{
    if (!(timeout > 0))
        return 1;
    if (timeout >= (double)INT_MAX)
        return INT_MAX;
    int whole = (int)timeout; /* truncates; then round up (no libm for ceil) */
    return whole < timeout ? whole + 1 : whole;
}

static void proc_of(pmix_proc_t *proc, const pmix_state *s, pmix_rank_t rank)
{
    memset(proc, 0, sizeof *proc);
    memcpy(proc->nspace, s->self.nspace, sizeof proc->nspace);
    proc->rank = rank;
}

/* "foehn.<key>" in a buffer of PMIx's key size (PMIx may copy up to that many). */
static void prefixed_key(char out[PMIX_MAX_KEYLEN + 1], const char *key)
{
    memset(out, 0, PMIX_MAX_KEYLEN + 1);
    snprintf(out, PMIX_MAX_KEYLEN + 1, KEY_PREFIX "%s", key);
}

static void release_value(pmix_value_t *value)
{
    if (value) {
        lib.value_destruct(value);
        free(value); /* PMIx allocates values with malloc (PMIX_VALUE_RELEASE does this) */
    }
}

/* Any integer data type as a long long; false for other types and for unsigned
 * values beyond LLONG_MAX. */
static bool value_as_integer(const pmix_value_t *v, long long *out)
{
    switch (v->type) {
    case PMIX_INT: *out = v->data.integer; return true;
    case PMIX_INT8: *out = v->data.int8; return true;
    case PMIX_INT16: *out = v->data.int16; return true;
    case PMIX_INT32: *out = v->data.int32; return true;
    case PMIX_INT64: *out = v->data.int64; return true;
    case PMIX_UINT: *out = v->data.uint; return true;
    case PMIX_UINT8: *out = v->data.uint8; return true;
    case PMIX_UINT16: *out = v->data.uint16; return true;
    case PMIX_UINT32: *out = v->data.uint32; return true;
    case PMIX_PROC_RANK: *out = v->data.rank; return true;
    case PMIX_UINT64:
        if (v->data.uint64 > (uint64_t)LLONG_MAX)
            return false;
        *out = (long long)v->data.uint64;
        return true;
    case PMIX_SIZE:
        if (v->data.size > (size_t)LLONG_MAX)
            return false;
        *out = (long long)v->data.size;
        return true;
    default:
        return false;
    }
}

/* ---- init: one PMIx session per foehn_pm --------------------------------- */

/* Reads one number PMIx keeps about the job, trying rank `first` then `second`
 * of our namespace (servers differ in where they file node-level values). What
 * PMIx does not have stays FOEHN_UNKNOWN; a value that is no count in int range
 * is the server's error. */
static int read_count(foehn_pm *pm, const pmix_state *s, const char *key, pmix_rank_t first,
                      pmix_rank_t second, int *out, foehn_error *err)
{
    pmix_info_t immediate; /* the server has job data from the start: never ask the host */
    info_bool(&immediate, PMIX_IMMEDIATE, true);
    pmix_rank_t ranks[2] = {first, second};
    for (int i = 0; i < 2; i++) {
        pmix_proc_t proc;
        proc_of(&proc, s, ranks[i]);
        pmix_value_t *value = NULL;
        pmix_status_t st = lib.get(&proc, key, &immediate, 1, &value);
        if (st != PMIX_SUCCESS) {
            release_value(value);
            if (foehn_status_of(st) == FOEHN_ERR_PEER)
                return fail_call(pm, err, "PMIx_Get", st, key, 0, "");
            continue;
        }
        long long n = -1;
        bool ok = value && value_as_integer(value, &n) && n >= 0 && n <= INT_MAX;
        int type = value ? value->type : -1;
        release_value(value);
        if (!ok)
            return foehn_fail(err, FOEHN_ERR_PROTOCOL,
                              "the PMIx server gave %s as data type %d, value %lld: not a count "
                              "(PMIx library %s, %s)",
                              key, type, n, lib.name, lib.version);
        *out = (int)n;
        return FOEHN_OK;
    }
    return FOEHN_OK;
}

static int read_job(foehn_pm *pm, const pmix_state *s, foehn_error *err)
{
    const pmix_rank_t me = s->self.rank, job = PMIX_RANK_WILDCARD;
    int rc = read_count(pm, s, PMIX_JOB_SIZE, job, me, &pm->size, err);
    if (rc == FOEHN_OK)
        rc = read_count(pm, s, PMIX_LOCAL_RANK, me, job, &pm->local_rank, err);
    if (rc == FOEHN_OK)
        rc = read_count(pm, s, PMIX_LOCAL_SIZE, job, me, &pm->local_size, err);
    if (rc == FOEHN_OK)
        rc = read_count(pm, s, PMIX_NODEID, me, job, &pm->node_index, err);
    if (rc == FOEHN_OK)
        rc = read_count(pm, s, PMIX_NUM_NODES, job, me, &pm->num_nodes, err);
    if (rc == FOEHN_OK && pm->size != FOEHN_UNKNOWN && pm->rank >= pm->size)
        rc = foehn_fail(err, FOEHN_ERR_PROTOCOL,
                        "PMIx says this is rank %d of namespace %s, but that the job has only %d "
                        "ranks",
                        pm->rank, s->self.nspace, pm->size);
    return rc;
}

/* PMIx_Init, loading the library first when this is its first user. Holding the
 * lock across PMIx_Init and PMIx_Finalize keeps the library's reference count and
 * ours in step. */
static int open_session(foehn_pm *pm, pmix_state *s, char *const *envp, foehn_error *err)
{
    pthread_mutex_lock(&lib_lock);
    int rc = lib_users > 0 ? FOEHN_OK : load_library(&lib, envp, err);
    if (rc == FOEHN_OK) {
        pmix_status_t st = lib.init(&s->self, NULL, 0);
        if (st == PMIX_SUCCESS) {
            lib_users++;
        } else {
            char text[160], ctx[160];
            const char *ns = foehn_env_get(envp, "PMIX_NAMESPACE");
            /* UNREACHABLE, INIT, ...: whatever PMIx says, there is no service here. */
            rc = foehn_fail(err, FOEHN_ERR_UNAVAILABLE,
                            "PMIx_Init gave %s %s (PMIX_NAMESPACE=%s; PMIx library %s, %s): "
                            "this process found no PMIx server it could talk to. If the "
                            "launcher's PMIx is another version, set FOEHN_LIBPMIX to its "
                            "libpmix.so.2; if no PMIx launcher started this process, set "
                            "FOEHN_PM to another provider",
                            status_text(st, text, sizeof text), foehn_pm_context(pm, ctx, sizeof ctx),
                            ns ? ns : "(unset)", lib.name, lib.version);
            if (lib_users == 0) {
                dlclose(lib.handle);
                memset(&lib, 0, sizeof lib);
            }
        }
    }
    pthread_mutex_unlock(&lib_lock);
    return rc;
}

static void close_session(void)
{
    pthread_mutex_lock(&lib_lock);
    lib.finalize(NULL, 0);
    if (--lib_users == 0) {
        dlclose(lib.handle);
        memset(&lib, 0, sizeof lib);
    }
    pthread_mutex_unlock(&lib_lock);
}

static int pmix_init(foehn_pm *pm, char *const *envp, foehn_error *err)
{
    pmix_state *s = calloc(1, sizeof *s);
    if (!s)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory");
    int rc = open_session(pm, s, envp, err);
    if (rc != FOEHN_OK) {
        free(s);
        return rc;
    }
    if (s->self.rank >= PMIX_RANK_VALID || s->self.rank > (pmix_rank_t)INT_MAX) {
        rc = foehn_fail(err, FOEHN_ERR_PROTOCOL,
                        "PMIx_Init gave rank %u of namespace %s, which is no rank of a job "
                        "(is this process a PMIx tool or singleton?)",
                        (unsigned)s->self.rank, s->self.nspace);
    } else {
        pm->rank = (int)s->self.rank;
        rc = read_job(pm, s, err);
    }
    if (rc != FOEHN_OK) {
        close_session();
        free(s);
        return rc;
    }
    pm->state = s;
    return FOEHN_OK;
}

/* ---- the exchange -------------------------------------------------------- */

static int pmix_put(foehn_pm *pm, const char *key, const void *value, size_t len,
                    foehn_error *err)
{
    pmix_state *s = pm->state;
    char full[PMIX_MAX_KEYLEN + 1];
    prefixed_key(full, key);
    pmix_value_t v;
    memset(&v, 0, sizeof v);
    v.type = PMIX_BYTE_OBJECT;
    v.data.bo.bytes = (char *)value; /* PMIx_Put copies; it does not write through this */
    v.data.bo.size = len;
    pmix_status_t st = lib.put(PMIX_GLOBAL, full, &v);
    if (st == PMIX_SUCCESS)
        return FOEHN_OK;
    char what[PMIX_MAX_KEYLEN + PMIX_MAX_NSLEN + 64];
    snprintf(what, sizeof what, "the put of key \"%s\" by rank %d of namespace %s", full,
             pm->rank, s->self.nspace);
    return fail_call(pm, err, "PMIx_Put", st, what, 0, "");
}

static int pmix_commit(foehn_pm *pm, foehn_error *err)
{
    pmix_state *s = pm->state;
    pmix_status_t st = lib.commit();
    if (st == PMIX_SUCCESS)
        return FOEHN_OK;
    char what[PMIX_MAX_NSLEN + 64];
    snprintf(what, sizeof what, "the commit of rank %d of namespace %s", pm->rank,
             s->self.nspace);
    return fail_call(pm, err, "PMIx_Commit", st, what, 0, "");
}

/* One outstanding PMIx_Fence_nb, shared by the waiting thread and PMIx's progress
 * thread. Whichever lets go last frees it: after our own deadline has passed,
 * PMIx may still call back (at the latest from PMIx_Finalize). */
typedef struct fence_op {
    pthread_mutex_t lock;
    pthread_cond_t finished;
    int holders; /* the waiter and, until it has run, the callback */
    bool done;
    pmix_status_t status;
    pmix_proc_t all;
    pmix_info_t info[2];
} fence_op;

/* Drops one holder; called with op->lock held, returns with it released. */
static void fence_op_release(fence_op *op)
{
    bool last = --op->holders == 0;
    pthread_mutex_unlock(&op->lock);
    if (last) {
        pthread_cond_destroy(&op->finished);
        pthread_mutex_destroy(&op->lock);
        free(op);
    }
}

static void fence_finished(pmix_status_t status, void *cbdata)
{
    fence_op *op = cbdata;
    pthread_mutex_lock(&op->lock);
    op->status = status;
    op->done = true;
    pthread_cond_signal(&op->finished);
    fence_op_release(op);
}

static fence_op *fence_op_new(const pmix_state *s, int seconds)
{
    fence_op *op = calloc(1, sizeof *op);
    pthread_condattr_t attr;
    if (!op || pthread_condattr_init(&attr) != 0) {
        free(op);
        return NULL;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&op->finished, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0 || pthread_mutex_init(&op->lock, NULL) != 0) {
        if (rc == 0)
            pthread_cond_destroy(&op->finished);
        free(op);
        return NULL;
    }
    op->holders = 2;
    proc_of(&op->all, s, PMIX_RANK_WILDCARD);
    info_bool(&op->info[0], PMIX_COLLECT_DATA, true); /* every value at hand afterwards */
    info_int(&op->info[1], PMIX_TIMEOUT, seconds);
    return op;
}

static double monotonic_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Waits for the callback until `deadline` (monotonic seconds); PMIX_ERR_TIMEOUT
 * if it has not come by then. */
static pmix_status_t fence_wait(fence_op *op, double deadline)
{
    struct timespec until;
    until.tv_sec = (time_t)deadline;
    until.tv_nsec = (long)((deadline - (double)until.tv_sec) * 1e9);
    pthread_mutex_lock(&op->lock);
    int rc = 0;
    while (!op->done && rc == 0)
        rc = pthread_cond_timedwait(&op->finished, &op->lock, &until);
    pmix_status_t status = op->done ? op->status : PMIX_ERR_TIMEOUT;
    fence_op_release(op);
    return status;
}

/* PMIx_Fence_nb over the whole namespace, waited for on our own clock: the
 * server's PMIX_TIMEOUT first, ours half a second later for the servers that do
 * not keep theirs. */
static pmix_status_t fence_collect(const pmix_state *s, double timeout, int seconds)
{
    double deadline = monotonic_now() + timeout + 0.5;
    fence_op *op = fence_op_new(s, seconds);
    if (!op)
        return PMIX_ERR_NOMEM;
    pmix_status_t st = lib.fence_nb(&op->all, 1, op->info, 2, fence_finished, op);
    if (st != PMIX_SUCCESS) {
        /* No callback will come: let go of both holds. */
        pthread_mutex_lock(&op->lock);
        op->holders--;
        fence_op_release(op);
        return st == PMIX_OPERATION_SUCCEEDED ? PMIX_SUCCESS : st;
    }
    return fence_wait(op, deadline);
}

/* Every rank puts "foehn:fence.<n>" just before fence n (no Foehn user can put
 * it: ':' is not allowed in keys). One key per fence, not one key updated: under
 * PRRTE (PMIx 5), a PMIx_Get after fence n went on returning a rank's value from
 * fence n-1, and a faster rank may already have put n+1. */
static void fence_key(char out[PMIX_MAX_KEYLEN + 1], uint32_t n)
{
    memset(out, 0, PMIX_MAX_KEYLEN + 1);
    snprintf(out, PMIX_MAX_KEYLEN + 1, "foehn:fence.%u", (unsigned)n);
}

static pmix_status_t put_fence_number(uint32_t n)
{
    pmix_value_t v;
    memset(&v, 0, sizeof v);
    v.type = PMIX_UINT32;
    v.data.uint32 = n;
    char key[PMIX_MAX_KEYLEN + 1];
    fence_key(key, n);
    pmix_status_t st = lib.put(PMIX_GLOBAL, key, &v);
    return st == PMIX_SUCCESS ? lib.commit() : st;
}

/* The first rank that never entered fence n, or -1 when all did. */
static int first_absent(const foehn_pm *pm, const pmix_state *s, uint32_t n)
{
    pmix_info_t immediate;
    info_bool(&immediate, PMIX_IMMEDIATE, true);
    char key[PMIX_MAX_KEYLEN + 1];
    fence_key(key, n);
    for (int rank = 0; rank < pm->size; rank++) {
        if (rank == pm->rank)
            continue;
        pmix_proc_t proc;
        proc_of(&proc, s, (pmix_rank_t)rank);
        pmix_value_t *v = NULL;
        pmix_status_t st = lib.get(&proc, key, &immediate, 1, &v);
        long long seen = -1;
        bool ok = st == PMIX_SUCCESS && v && value_as_integer(v, &seen) && seen >= (long long)n;
        release_value(v);
        if (!ok)
            return rank;
    }
    return -1;
}

static int pmix_fence(foehn_pm *pm, double timeout, foehn_error *err)
{
    pmix_state *s = pm->state;
    int seconds = timeout_seconds(timeout);
    char what[PMIX_MAX_NSLEN + 64];
    snprintf(what, sizeof what, "the fence of all %d ranks of namespace %s", pm->size,
             s->self.nspace);
    const char *late = "a rank may have died or not reached foehn_pm_fence: check the other "
                       "ranks' output";
    pthread_mutex_lock(&lib_lock);
    uint32_t n = ++fences_entered;
    pthread_mutex_unlock(&lib_lock);
    pmix_status_t st = put_fence_number(n);
    if (st != PMIX_SUCCESS)
        return fail_call(pm, err, "PMIx_Put", st, what, seconds, late);
    double start = monotonic_now();
    st = fence_collect(s, timeout, seconds);
    if (st == PMIX_ERR_UNPACK_READ_PAST_END_OF_BUFFER) /* Slurm's PMIx 4.2, a rank died */
        return fail_code(pm, err, FOEHN_ERR_PEER, "PMIx_Fence", st, what, seconds, late);
    if (st != PMIX_SUCCESS)
        return fail_call(pm, err, "PMIx_Fence", st, what, seconds, late);
    int absent = first_absent(pm, s, n);
    if (absent < 0)
        return FOEHN_OK;
    char ctx[160];
    double waited = monotonic_now() - start;
    return foehn_fail(err, waited + 0.1 >= timeout ? FOEHN_ERR_TIMEOUT : FOEHN_ERR_PEER,
                      "PMIx_Fence returned success after %.1f s, but rank %d never entered %s "
                      "%s (fence number %u): it died or has not reached foehn_pm_fence; check "
                      "its output",
                      waited, absent, what, foehn_pm_context(pm, ctx, sizeof ctx), (unsigned)n);
}

/* A malloc'd copy of a byte object (or string) value, NUL-terminated beyond *len. */
static int copy_value(const pmix_value_t *v, void **out, size_t *len)
{
    const char *bytes = NULL;
    size_t n = 0;
    if (v->type == PMIX_BYTE_OBJECT) {
        bytes = v->data.bo.bytes;
        n = bytes ? v->data.bo.size : 0;
    } else if (v->type == PMIX_STRING) {
        bytes = v->data.string;
        n = bytes ? strlen(bytes) : 0;
    } else {
        return FOEHN_ERR_PROTOCOL;
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return FOEHN_ERR_NOMEM;
    if (n)
        memcpy(copy, bytes, n);
    copy[n] = '\0';
    *out = copy;
    *len = n;
    return FOEHN_OK;
}

static int pmix_get(foehn_pm *pm, int rank, const char *key, void **value, size_t *len,
                    double timeout, foehn_error *err)
{
    pmix_state *s = pm->state;
    pmix_proc_t proc;
    proc_of(&proc, s, (pmix_rank_t)rank);
    char full[PMIX_MAX_KEYLEN + 1];
    prefixed_key(full, key);
    int seconds = timeout_seconds(timeout);
    /* After a fence that collected data, our PMIx server holds every rank's values.
     * PMIX_IMMEDIATE makes a key nobody put come back NOT_FOUND at once; without it
     * the server asks the host for it, and PRRTE's waits the whole timeout.
     * (PMIX_OPTIONAL, "look only in this process", is too narrow: under PRRTE the
     * collected values stay in the server, and OPTIONAL finds none of them.) */
    pmix_info_t info[2];
    info_bool(&info[0], PMIX_IMMEDIATE, true);
    info_int(&info[1], PMIX_TIMEOUT, seconds);
    pmix_value_t *v = NULL;
    pmix_status_t st = lib.get(&proc, full, info, 2, &v);
    if (st == PMIX_SUCCESS && v) {
        int type = v->type;
        int rc = copy_value(v, value, len);
        release_value(v);
        if (rc == FOEHN_ERR_NOMEM)
            return foehn_fail(err, rc, "out of memory");
        if (rc != FOEHN_OK)
            return foehn_fail(err, rc,
                              "rank %d's key \"%s\" in namespace %s came back as PMIx data type "
                              "%d, not the byte object Foehn puts: did something else put it?",
                              rank, full, s->self.nspace, type);
        return FOEHN_OK;
    }
    release_value(v);
    if (st == PMIX_SUCCESS || foehn_status_of(st) == FOEHN_ERR_NOTFOUND)
        return foehn_fail(err, FOEHN_ERR_NOTFOUND,
                          "rank %d put no key \"%s\" (or did not commit it before the last "
                          "fence)",
                          rank, key);
    char what[PMIX_MAX_KEYLEN + PMIX_MAX_NSLEN + 64];
    snprintf(what, sizeof what, "rank %d's key \"%s\" in namespace %s", rank, full,
             s->self.nspace);
    return fail_call(pm, err, "PMIx_Get", st, what, seconds,
                     "that rank may have died before its fence: check its output");
}

/* Asks the launcher to end the whole job (NULL procs: our namespace). PMIx_Abort
 * returns once the server has the request; the launcher then kills the job. */
static int pmix_abort(foehn_pm *pm, int status, const char *message)
{
    (void)pm;
    pmix_status_t st = lib.abort(status, message ? message : "foehn: abort", NULL, 0);
    return st == PMIX_SUCCESS ? FOEHN_OK : foehn_status_of(st);
}

static void pmix_finalize(foehn_pm *pm)
{
    close_session();
    free(pm->state);
    pm->state = NULL;
}

const foehn_pm_provider foehn_pm_provider_pmix = {
    .name = "pmix",
    .init = pmix_init,
    .put = pmix_put,
    .commit = pmix_commit,
    .fence = pmix_fence,
    .get = pmix_get,
    .abort = pmix_abort,
    .finalize = pmix_finalize,
};
