/* Command-line values shared by the foehn subcommands. */
#ifndef FOEHN_CLI_ARGS_H
#define FOEHN_CLI_ARGS_H

#include <stdio.h>

/* A whole number from 1 to max, nothing else around it: 0, or -1 (out untouched). */
int cli_parse_count(const char *s, long max, int *out);

/* "foehn <command>: " fmt (with arg) on stderr, a blank line, then the command's
 * usage; returns 2, the exit status of a usage error. */
int cli_usage_error(const char *command, void (*usage)(FILE *to), const char *fmt,
                    const char *arg);

#endif
