/* Programs the foehn subcommands run for themselves (version queries, python -m venv),
 * each under a deadline. */
#ifndef FOEHN_CLI_SUBPROCESS_H
#define FOEHN_CLI_SUBPROCESS_H

#include <stdbool.h>
#include <stddef.h>

/* The path of `name` in a PATH directory into buf; false when there is none. */
bool cli_find_on_path(const char *name, char *buf, size_t cap);

/* Runs argv (argv[0] looked up on PATH) with stdin from /dev/null, its stdout and
 * stderr into out (NUL-terminated, the first cap - 1 bytes; NULL: ours), killed with
 * its process group after `seconds`. Its exit status (127: it could not start; 128+N:
 * killed by signal N), or -1 when it ran out of time or could not be started. */
int cli_run(char *const argv[], double seconds, char *out, size_t cap);

#endif
