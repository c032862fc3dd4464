/* Host files for foehn launch: mpirun's ("host slots=4", "host:4"), Hydra's and
 * PALS's ("host" or "host:4"), and node files (one line per slot). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/launch.h"
#include "common/error.h"

int launch_read_hostfile(const char *path, foehn_strv *hosts, foehn_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return foehn_fail(err, FOEHN_ERR_INVALID, "cannot read the host file %s: %s", path,
                          strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int rc = FOEHN_OK;
    for (long lineno = 1; rc == FOEHN_OK && getline(&line, &cap, f) >= 0; lineno++) {
        char *p = line;
        char *hash = strchr(p, '#');
        if (hash)
            *hash = '\0';
        while (isspace((unsigned char)*p))
            p++;
        size_t n = 0;
        while (p[n] && !isspace((unsigned char)p[n]) && p[n] != ':')
            n++;
        if (n == 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (!(isalnum(c) || c == '-' || c == '.' || c == '_')) {
                rc = foehn_fail(err, FOEHN_ERR_INVALID,
                                "the host file %s, line %ld: '%.*s' is not a host name", path,
                                lineno, (int)n, p);
                break;
            }
        }
        if (rc != FOEHN_OK)
            break;
        char saved = p[n];
        p[n] = '\0';
        if (foehn_strv_find(hosts, p) < 0)
            rc = foehn_strv_push(hosts, p);
        p[n] = saved;
        if (rc != FOEHN_OK)
            rc = foehn_fail(err, rc, "out of memory");
    }
    free(line);
    fclose(f);
    return rc;
}
