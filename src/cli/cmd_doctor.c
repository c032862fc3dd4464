/* foehn doctor [--json]: what a distributed job needs, checked here and, inside a
 * job of several ranks, across it (run it on every rank, as the program of the
 * launch line). Rank 0 reports for the job; the others print only their problems.
 * Exits 1 when something would stop a distributed job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/doctor.h"
#include "common/fdio.h"
#include "common/json.h"

extern char **environ;

static const char *level_name(check_level l)
{
    return l == CHECK_OK ? "ok" : l == CHECK_WARN ? "warn" : "FAIL";
}

static int failures(const doctor_report *r)
{
    int n = 0;
    for (int i = 0; i < r->nchecks; i++)
        n += r->checks[i].level == CHECK_FAIL;
    return n;
}

static void print_human(const doctor_report *r)
{
    printf("foehn doctor: rank %d of %d on %s\n", r->rank, r->size, r->host);
    for (int i = 0; i < r->nchecks; i++) {
        const doctor_check *c = &r->checks[i];
        printf("  %-4s  %-10s  %s\n", level_name(c->level), c->name, c->found ? c->found : "");
        if (c->advice && c->level != CHECK_OK)
            printf("        %-10s  -> %s\n", "", c->advice);
    }
    if (r->ranks) {
        for (int k = 0; k < r->size; k++)
            if (!r->ranks[k].reaches)
                printf("        rank %d (host %s) cannot reach rank 0: %s\n", k,
                       r->ranks[k].host, r->ranks[k].detail);
    }
    int n = failures(r);
    printf(n ? "%d problem%s would stop a distributed job\n" : "nothing stops a distributed job "
           "here\n", n, n == 1 ? "" : "s");
}

static void print_json(const doctor_report *r)
{
    foehn_strbuf b;
    foehn_strbuf_init(&b);
    foehn_strbuf_appendf(&b, "{\"schema\":\"foehn.doctor/1\",\"ok\":%s,\"rank\":%d,\"size\":%d,"
                         "\"host\":", failures(r) ? "false" : "true", r->rank, r->size);
    foehn_json_string(&b, r->host);
    foehn_strbuf_append(&b, ",\"checks\":[");
    for (int i = 0; i < r->nchecks; i++) {
        const doctor_check *c = &r->checks[i];
        foehn_strbuf_append(&b, i ? ",{\"name\":" : "{\"name\":");
        foehn_json_string(&b, c->name);
        foehn_strbuf_append(&b, ",\"level\":");
        foehn_json_string(&b, c->level == CHECK_OK ? "ok" : c->level == CHECK_WARN ? "warn" : "fail");
        foehn_strbuf_append(&b, ",\"found\":");
        foehn_json_string(&b, c->found);
        foehn_strbuf_append(&b, ",\"advice\":");
        foehn_json_string(&b, c->level == CHECK_OK ? NULL : c->advice);
        foehn_strbuf_append(&b, "}");
    }
    foehn_strbuf_append(&b, "],\"ranks\":");
    if (!r->ranks) {
        foehn_strbuf_append(&b, "null");
    } else {
        foehn_strbuf_append(&b, "[");
        for (int k = 0; k < r->size; k++) {
            foehn_strbuf_appendf(&b, "%s{\"rank\":%d,\"host\":", k ? "," : "", k);
            foehn_json_string(&b, r->ranks[k].host);
            foehn_strbuf_appendf(&b, ",\"reaches_rank0\":%s,\"detail\":",
                                 r->ranks[k].reaches ? "true" : "false");
            foehn_json_string(&b, r->ranks[k].detail);
            foehn_strbuf_append(&b, "}");
        }
        foehn_strbuf_append(&b, "]");
    }
    foehn_strbuf_appendf(&b, ",\"interfaces\":%s}\n",
                         r->interfaces.data ? r->interfaces.data : "[]");
    char *text = NULL;
    if (foehn_strbuf_finish(&b, &text) == FOEHN_OK) {
        /* one write: launchers forward a rank's output in the pieces it comes in, and
         * a line split by stdio's buffer may be interleaved with their own messages */
        fflush(stdout);
        foehn_write_all(1, text, strlen(text));
        free(text);
    }
}

int foehn_cmd_doctor(int argc, char **argv)
{
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: foehn doctor [--json]\n\n"
                   "Checks what a distributed job needs: the launcher and scheduler found, "
                   "libpmix,\nthe network interfaces and the address Foehn would publish, "
                   "whether every rank\nreaches rank 0 (run it on every rank of a job), the "
                   "accelerators and masks,\ntorch, and the open-file and process limits. "
                   "Exits 1 when something would stop\na distributed job.\n");
            return 0;
        } else {
            fprintf(stderr, "foehn doctor: unknown option '%s'\nusage: foehn doctor [--json]\n",
                    argv[i]);
            return 2;
        }
    }
    doctor_report r;
    memset(&r, 0, sizeof r);
    foehn_strbuf_init(&r.interfaces);
    r.size = 1;
    foehn_job job;
    foehn_error err;
    bool have_job = foehn_job_discover(&job, environ, NULL, &err) == FOEHN_OK;
    snprintf(r.host, sizeof r.host, "%s", have_job ? job.hostname : "?");
    doctor_check_job(&r, have_job ? &job : NULL, have_job ? NULL : err.message);
    doctor_check_libpmix(&r, environ);
    doctor_check_interfaces(&r);
    if (have_job) {
        doctor_check_reach(&r, &job, environ);
        doctor_check_gpus(&r, &job);
    }
    doctor_check_torch(&r);
    doctor_check_limits(&r, r.size);
    int status = failures(&r) ? 1 : 0;
    if (r.rank == 0) {
        if (json)
            print_json(&r);
        else
            print_human(&r);
    } else {
        for (int i = 0; i < r.nchecks; i++)
            if (r.checks[i].level == CHECK_FAIL)
                fprintf(stderr, "foehn doctor: rank %d (host %s): %s: %s%s%s\n", r.rank, r.host,
                        r.checks[i].name, r.checks[i].found,
                        r.checks[i].advice ? " -> " : "",
                        r.checks[i].advice ? r.checks[i].advice : "");
    }
    /* rank 0 fails for the job: every rank's answer reached it */
    if (r.ranks)
        for (int k = 0; k < r.size; k++)
            if (!r.ranks[k].reaches)
                status = 1;
    if (have_job)
        foehn_job_clear(&job);
    doctor_report_release(&r);
    return status;
}
