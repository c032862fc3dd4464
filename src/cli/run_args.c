/* foehn run's command line, in mpirun's habits: -n/-np N, --tag-output, and
 * everything from the program name (or after --) belongs to the program. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/run.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: foehn run -n N [options] [--] program [args...]\n\n"
            "Starts N ranks of program on this machine, with the rendezvous service they\n"
            "bootstrap through (foehn.init(), foehn.pytorch.init_process_group()).\n\n"
            "  -n, -np, --np N    number of ranks (at least 1)\n"
            "  --tag-output       prefix every output line with its rank: \"[3] ...\"\n"
            "  --grace SECONDS    after a rank fails, how long the others may take to\n"
            "                     notice before they are stopped (default 3)\n"
            "  --bind-gpus        each rank its share of the accelerators this process\n"
            "                     sees (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES or\n"
            "                     ZE_AFFINITY_MASK, never wider than a mask already set)\n"
            "  -h, --help         this text\n\n"
            "Each rank gets FOEHN_RANK, FOEHN_SIZE, FOEHN_LOCAL_RANK, FOEHN_LOCAL_SIZE,\n"
            "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. Standard input goes to\n"
            "rank 0. SIGINT and SIGTERM are forwarded to every rank. When a rank fails,\n"
            "the others are stopped and foehn run exits with that rank's status.\n");
}

static int bad(const char *fmt, const char *arg)
{
    return cli_usage_error("run", usage, fmt, arg);
}

int run_parse(int argc, char **argv, run_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->grace = 3.0;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "-n") == 0 || strcmp(a, "-np") == 0 || strcmp(a, "--np") == 0 ||
            strcmp(a, "--n") == 0) {
            if (i + 1 >= argc)
                return bad("%s needs a number of ranks", a);
            if (cli_parse_count(argv[++i], 1000000, &opt->nranks) != 0)
                return bad("-n takes a whole number of ranks of at least 1, not '%s'", argv[i]);
        } else if (strcmp(a, "--tag-output") == 0) {
            opt->tag_output = true;
        } else if (strcmp(a, "--bind-gpus") == 0) {
            opt->bind_gpus = true;
        } else if (strcmp(a, "--grace") == 0) {
            char *end;
            if (i + 1 >= argc)
                return bad("%s needs a number of seconds", a);
            opt->grace = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(opt->grace >= 0 && opt->grace <= 3600))
                return bad("--grace takes seconds between 0 and 3600, not '%s'", argv[i]);
        } else {
            return bad("unknown option '%s'", a);
        }
    }
    if (opt->nranks == 0)
        return bad("%s", "how many ranks? give -n N");
    if (i >= argc)
        return bad("%s", "no program to run");
    opt->argv = argv + i;
    return -1;
}
