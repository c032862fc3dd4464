/* foehn launch: builds the launch line that fills this allocation (launch_plan.c)
 * and runs it, or with --dry-run prints it and why each part was chosen. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/launch.h"
#include "cli/launch_probe.h"
#include "common/json.h"
#include "common/strbuf.h"

extern char **environ;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: foehn launch [options] [--] program [args...]\n\n"
            "Inside an allocation, builds and runs the launch line that fills it: one rank\n"
            "per accelerator on every host (one per host without accelerators), through\n"
            "the scheduler's launcher: srun (Slurm), mpiexec (PBS: PALS, Hydra or Open\n"
            "MPI), flux run (Flux), jsrun (LSF); without a scheduler prterun or Open MPI's\n"
            "mpirun when on PATH, else foehn run on this machine.\n\n"
            "  -n, -np N        ranks in all\n"
            "  --ppn P          ranks per host\n"
            "  --nhosts H       use the first H hosts\n"
            "  --hostfile F     hosts from F (\"host\", \"host:4\", \"host slots=4\", node files)\n"
            "  --cpu-bind B     the launcher's own CPU binding (srun --cpu-bind, mpiexec\n"
            "                   --cpu-bind / -bind-to, mpirun --bind-to, jsrun --bind)\n"
            "  --bind-gpus      each rank its own accelerators, by its local rank\n"
            "  --dry-run        print the line and why each part was chosen; run nothing\n"
            "  --json           with --dry-run: one line of JSON (schema foehn.launch/1)\n"
            "  -h, --help       this text\n\n"
            "The exit status is the launcher's.\n");
}

static int bad(const char *fmt, const char *arg)
{
    return cli_usage_error("launch", usage, fmt, arg);
}

typedef struct launch_cli {
    launch_options opt;
    bool dry_run, json;
} launch_cli;

/* -1 when parsed, else the exit status. */
static int parse(int argc, char **argv, launch_cli *c)
{
    memset(c, 0, sizeof *c);
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-')
            break;
        int *count = NULL;
        const char **text = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "-np") == 0 || strcmp(a, "--np") == 0) {
            count = &c->opt.n;
        } else if (strcmp(a, "--ppn") == 0 || strcmp(a, "-ppn") == 0) {
            count = &c->opt.ppn;
        } else if (strcmp(a, "--nhosts") == 0) {
            count = &c->opt.nhosts;
        } else if (strcmp(a, "--hostfile") == 0) {
            text = &c->opt.hostfile;
        } else if (strcmp(a, "--cpu-bind") == 0) {
            text = &c->opt.cpu_bind;
        } else if (strcmp(a, "--bind-gpus") == 0) {
            c->opt.bind_gpus = true;
        } else if (strcmp(a, "--dry-run") == 0) {
            c->dry_run = true;
        } else if (strcmp(a, "--json") == 0) {
            c->json = true;
        } else {
            return bad("unknown option '%s'", a);
        }
        if (count || text) {
            if (i + 1 >= argc)
                return bad("%s needs a value", a);
            const char *v = argv[++i];
            if (count && cli_parse_count(v, 10000000, count) != 0)
                return bad("a whole number of at least 1 is needed, not '%s'", v);
            if (text) {
                if (!*v)
                    return bad("%s needs a value, not an empty one", a);
                *text = v;
            }
        }
    }
    if (i >= argc)
        return bad("%s", "no program to launch");
    if (c->json && !c->dry_run)
        return bad("%s", "--json goes with --dry-run");
    c->opt.argv = argv + i;
    return -1;
}

static void shell_word(foehn_strbuf *b, const char *s)
{
    bool plain = *s != '\0';
    for (const char *p = s; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@%+",
                    *p))
            plain = false;
    if (plain)
        foehn_strbuf_append(b, s);
    else
        foehn_strbuf_append_quoted(b, s);
}

static char *command_line(const launch_plan *p)
{
    foehn_strbuf b;
    foehn_strbuf_init(&b);
    for (size_t i = 0; i < p->argv.len; i++) {
        if (i)
            foehn_strbuf_append(&b, " ");
        shell_word(&b, p->argv.items[i]);
    }
    char *out = NULL;
    foehn_strbuf_finish(&b, &out);
    return out;
}

static int print_plan(const launch_plan *p, bool json)
{
    char *text = NULL;
    if (json) {
        foehn_strbuf b;
        foehn_strbuf_init(&b);
        foehn_strbuf_append(&b, "{\"schema\":\"foehn.launch/1\",\"launcher\":");
        foehn_json_string(&b, p->launcher);
        foehn_strbuf_appendf(&b, ",\"n\":%d,\"ppn\":%d,\"nhosts\":%d,\"hosts\":", p->n, p->ppn,
                             p->nhosts);
        foehn_json_strings(&b, p->hosts.items, (size_t)p->nhosts, false);
        foehn_strbuf_appendf(&b, ",\"gpus_per_host\":%d,\"gpus_per_rank\":%d,\"argv\":",
                             p->gpus_per_host, p->gpus_per_rank);
        foehn_json_strings(&b, p->argv.items, p->argv.len, false);
        foehn_strbuf_append(&b, ",\"why\":");
        foehn_json_strings(&b, p->why.items, p->why.len, false);
        foehn_strbuf_append(&b, "}\n");
        if (foehn_strbuf_finish(&b, &text) != FOEHN_OK)
            return 1;
        fputs(text, stdout);
    } else {
        text = command_line(p);
        if (!text)
            return 1;
        printf("%s\n\nwhy:\n", text);
        for (size_t i = 0; i < p->why.len; i++)
            printf("  %s\n", p->why.items[i]);
    }
    free(text);
    return 0;
}

/* Runs the line; its exit status is ours. A launcher that cannot start, or that
 * fails, is named with its whole line. */
static int run_plan(const launch_plan *p)
{
    char *line = command_line(p);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "foehn launch: cannot start %s: %s\n", line ? line : p->launcher,
                strerror(errno));
        free(line);
        return 1;
    }
    if (pid == 0) {
        execvp(p->argv.items[0], p->argv.items);
        fprintf(stderr, "foehn launch: cannot run %s: %s\n", p->argv.items[0], strerror(errno));
        _exit(127);
    }
    /* The terminal's SIGINT reaches the launcher too (one process group); we wait for
     * it to stop its ranks and report its status. SIGTERM is passed on. */
    struct sigaction ignore = {.sa_handler = SIG_IGN}, old_int, old_term;
    sigaction(SIGINT, &ignore, &old_int);
    sigaction(SIGTERM, &ignore, &old_term);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    int code;
    if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
        if (code != 0 && code != 127)
            fprintf(stderr, "foehn launch: %s exited with status %d\n", line ? line : "", code);
    } else {
        code = 128 + WTERMSIG(status);
        fprintf(stderr, "foehn launch: %s was killed by signal %d (%s)\n", line ? line : "",
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    }
    free(line);
    return code;
}

int foehn_cmd_launch(int argc, char **argv)
{
    launch_cli c;
    int status = parse(argc, argv, &c);
    if (status >= 0)
        return status;
    foehn_job job;
    foehn_error err;
    if (foehn_job_discover(&job, environ, NULL, &err) != FOEHN_OK) {
        fprintf(stderr, "foehn launch: %s\n", err.message);
        return 1;
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        snprintf(self, sizeof self, "foehn");
    else
        self[len] = '\0';
    launch_facts facts = {.root = geteuid() == 0, .self = self};
    /* Only the probes this scheduler's branch reads: each runs a program. */
    if (job.scheduler == FOEHN_SCHEDULER_PBS) {
        facts.mpiexec = launch_mpiexec_flavour();
    } else if (job.scheduler == FOEHN_SCHEDULER_NONE || job.scheduler == FOEHN_SCHEDULER_COBALT) {
        facts.prterun = launch_on_path("prterun");
        facts.openmpi_mpirun = !facts.prterun && launch_openmpi_mpirun();
    }
    launch_plan plan;
    int rc = launch_plan_make(&job, environ, &c.opt, &facts, &plan, &err);
    foehn_job_clear(&job);
    if (rc != FOEHN_OK) {
        fprintf(stderr, "foehn launch: %s\n", err.message);
        launch_plan_release(&plan);
        return 1;
    }
    status = c.dry_run ? print_plan(&plan, c.json) : run_plan(&plan);
    launch_plan_release(&plan);
    return status;
}
