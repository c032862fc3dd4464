/* Command-line values shared by the foehn subcommands (args.h). */
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"

int cli_parse_count(const char *s, long max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int cli_usage_error(const char *command, void (*usage)(FILE *to), const char *fmt,
                    const char *arg)
{
    fprintf(stderr, "foehn %s: ", command);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    usage(stderr);
    return 2;
}
