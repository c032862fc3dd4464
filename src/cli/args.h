/* Command-line values shared by the foehn subcommands. */
#ifndef FOEHN_CLI_ARGS_H
#define FOEHN_CLI_ARGS_H

/* A whole number from 1 to max, nothing else around it: 0, or -1 (out untouched). */
int cli_parse_count(const char *s, long max, int *out);

#endif
