#include "env.h"

#include <limits.h>
#include <string.h>

#include "common/error.h"

const char *foehn_env_get(char *const *envp, const char *name)
{
    if (!envp)
        return NULL;
    size_t n = strlen(name);
    /* The last definition wins, as getenv would see after putenv/setenv. */
    const char *value = NULL;
    for (char *const *e = envp; *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            value = *e + n + 1;
    return value;
}

const char *foehn_env_first(char *const *envp, const char *const names[FOEHN_ENV_CANDIDATES],
                            const char **found)
{
    for (int i = 0; i < FOEHN_ENV_CANDIDATES && names[i]; i++) {
        const char *value = foehn_env_get(envp, names[i]);
        if (value) {
            if (found)
                *found = names[i];
            return value;
        }
    }
    return NULL;
}

int foehn_env_parse_count(const char *name, const char *value, int *out, foehn_error *err)
{
    if (!value || !*value)
        return foehn_fail(err, FOEHN_ERR_INVALID, "%s is empty: expected a non-negative integer",
                          name);
    long long v = 0;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9')
            return foehn_fail(err, FOEHN_ERR_INVALID,
                              "%s=\"%s\" is not a non-negative integer", name, value);
        v = v * 10 + (*p - '0');
        if (v > INT_MAX)
            return foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\" is too large", name, value);
    }
    *out = (int)v;
    return FOEHN_OK;
}
