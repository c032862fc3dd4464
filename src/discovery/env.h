/* Reading an environment snapshot: a NULL-terminated array of "KEY=VALUE". */
#ifndef FOEHN_DISCOVERY_ENV_H
#define FOEHN_DISCOVERY_ENV_H

#include <stdbool.h>

#include "foehn.h"

/* The value of name in envp, or NULL when absent. */
const char *foehn_env_get(char *const *envp, const char *name);

/* Up to this many candidate names for one value, tried in order. */
#define FOEHN_ENV_CANDIDATES 3

/* The value of the first candidate name that is set (NULL entries end the list);
 * *found, if not NULL, receives that name. NULL when none is set. */
const char *foehn_env_first(char *const *envp, const char *const names[FOEHN_ENV_CANDIDATES],
                            const char **found);

/* Parses a non-negative decimal int (no sign, no spaces, no trailing text).
 * A malformed value is an error that names the variable and quotes the value. */
int foehn_env_parse_count(const char *name, const char *value, int *out, foehn_error *err);

#endif
