/* foehn doctor: checks of what a distributed job needs here, each with what was
 * found and, for a problem, the sentence that says what to do. */
#ifndef FOEHN_CLI_DOCTOR_H
#define FOEHN_CLI_DOCTOR_H

#include <stdbool.h>

#include "common/strbuf.h"
#include "foehn.h"

typedef enum { CHECK_OK, CHECK_WARN, CHECK_FAIL } check_level;

typedef struct doctor_check {
    const char *name;       /* static: "job", "libpmix", "address", ... */
    check_level level;
    char *found;            /* malloc'd */
    char *advice;           /* malloc'd; NULL when there is nothing to do */
} doctor_check;

/* One rank's view of rank 0's address (the reach check). */
typedef struct doctor_rank {
    int rank;
    char host[256];
    bool reaches;
    char detail[256];
} doctor_rank;

#define DOCTOR_MAX_CHECKS 16

typedef struct doctor_report {
    doctor_check checks[DOCTOR_MAX_CHECKS];
    int nchecks;
    int rank, size;         /* this process's, as the pm layer said (0 of 1 without one) */
    char host[256];
    doctor_rank *ranks;     /* rank 0 only, size entries; NULL elsewhere */
    foehn_strbuf interfaces; /* JSON array of {"name","address"} */
} doctor_report;

/* Adds a check (found and advice formatted; advice NULL for none). */
void doctor_add(doctor_report *r, const char *name, check_level level, const char *advice,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void doctor_report_release(doctor_report *r);

/* The checks of this process (doctor_checks.c). */
void doctor_check_job(doctor_report *r, const foehn_job *job, const char *error);
void doctor_check_libpmix(doctor_report *r, char *const *envp);
void doctor_check_interfaces(doctor_report *r);
void doctor_check_gpus(doctor_report *r, const foehn_job *job);
void doctor_check_torch(doctor_report *r);
void doctor_check_limits(doctor_report *r, int size);

/* The address this rank would publish, and whether every rank reaches rank 0's
 * (doctor_reach.c): joins the job's ranks through the pm layer. */
void doctor_check_reach(doctor_report *r, const foehn_job *job, char *const *envp);

#endif
