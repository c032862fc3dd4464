/* foehn: the command-line face. Dispatches to one function per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "foehn.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", foehn_cmd_run, "start N ranks of a program here, with the rendezvous they bootstrap by"},
    {"env", foehn_cmd_env, "where this process is: launcher, scheduler, ranks, hosts, GPUs"},
    {"launch", foehn_cmd_launch, "run a program across the allocation with the right srun/mpiexec/... line"},
    {"bind-gpus", foehn_cmd_bind_gpus, "run a program with this rank's share of the accelerators"},
    {"doctor", foehn_cmd_doctor, "check what a distributed job needs here (and across its ranks)"},
    {"venv", foehn_cmd_venv, "create or reuse <workdir>/venvs/NAME on the site's Python"},
};

static void usage(FILE *to)
{
    fprintf(to, "usage: foehn <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(to, "\n'foehn <command> --help' describes a command; 'foehn --version' the build.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        printf("foehn %s\n", FOEHN_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "foehn: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
}
