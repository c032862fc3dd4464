/* Host tables: where a job's ranks or an allocation's slots are, from hostlists,
 * node files and host/slot pairs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "discovery/discovery.h"

/* Node files beyond this are refused rather than read into memory. */
#define NODEFILE_MAX_BYTES (64u << 20)

void foehn_host_table_init(foehn_host_table *t)
{
    foehn_strv_init(&t->hosts);
    t->counts = NULL;
    t->has_counts = false;
}

void foehn_host_table_release(foehn_host_table *t)
{
    foehn_strv_release(&t->hosts);
    free(t->counts);
    foehn_host_table_init(t);
}

/* Length of the short name: up to the first dot. */
static size_t short_len(const char *host, size_t len)
{
    const char *dot = memchr(host, '.', len);
    return dot ? (size_t)(dot - host) : len;
}

static long find_n(const foehn_host_table *t, const char *host, size_t len)
{
    size_t want = short_len(host, len);
    for (size_t i = 0; i < t->hosts.len; i++) {
        const char *h = t->hosts.items[i];
        if (short_len(h, strlen(h)) == want && strncmp(h, host, want) == 0)
            return (long)i;
    }
    return -1;
}

long foehn_host_table_find(const foehn_host_table *t, const char *host)
{
    return find_n(t, host, strlen(host));
}

int foehn_host_table_add(foehn_host_table *t, const char *host, size_t hostlen, int count)
{
    long at = find_n(t, host, hostlen);
    if (at < 0) {
        size_t old_cap = t->hosts.cap;
        if (foehn_strv_push_n(&t->hosts, host, hostlen) != FOEHN_OK)
            return FOEHN_ERR_NOMEM;
        if (t->hosts.cap != old_cap || !t->counts) {
            int *grown = realloc(t->counts, t->hosts.cap * sizeof *grown);
            if (!grown) {
                /* Keep hosts and counts the same length. */
                free(t->hosts.items[--t->hosts.len]);
                return FOEHN_ERR_NOMEM;
            }
            t->counts = grown;
        }
        at = (long)t->hosts.len - 1;
        t->counts[at] = 0;
    }
    t->counts[at] += count;
    return FOEHN_OK;
}

int foehn_host_table_export(foehn_host_table *t, char ***hosts, int **counts, size_t *n)
{
    *hosts = NULL;
    *counts = NULL;
    *n = 0;
    if (t->hosts.len == 0)
        return FOEHN_OK;
    if (t->has_counts) {
        *counts = malloc(t->hosts.len * sizeof **counts);
        if (!*counts)
            return FOEHN_ERR_NOMEM;
        memcpy(*counts, t->counts, t->hosts.len * sizeof **counts);
    }
    /* The strings move to the record; the table keeps nothing. */
    *hosts = t->hosts.items;
    *n = t->hosts.len;
    foehn_strv_init(&t->hosts);
    return FOEHN_OK;
}

int foehn_hosts_from_slurm(foehn_host_table *t, const char *hostlist_var, const char *hostlist,
                           const char *counts_var, const char *counts, foehn_error *err)
{
    char **hosts = NULL;
    size_t nhosts = 0;
    int *values = NULL;
    size_t nvalues = 0;
    foehn_error inner;
    int rc = foehn_hostlist_expand(hostlist, &hosts, &nhosts, &inner);
    if (rc != FOEHN_OK)
        return foehn_fail(err, rc, "%s: %s", hostlist_var, inner.message);
    if (counts) {
        rc = foehn_counts_expand(counts, &values, &nvalues, &inner);
        if (rc != FOEHN_OK) {
            foehn_strv_free(hosts, nhosts);
            return foehn_fail(err, rc, "%s: %s", counts_var, inner.message);
        }
        if (nvalues != nhosts) {
            rc = foehn_fail(err, FOEHN_ERR_INVALID,
                            "%s=\"%s\" gives %zu counts but %s=\"%s\" names %zu hosts",
                            counts_var, counts, nvalues, hostlist_var, hostlist, nhosts);
            goto out;
        }
    }
    for (size_t i = 0; i < nhosts && rc == FOEHN_OK; i++)
        rc = foehn_host_table_add(t, hosts[i], strlen(hosts[i]), counts ? values[i] : 0);
    t->has_counts = counts != NULL;
out:
    foehn_strv_free(hosts, nhosts);
    free(values);
    return rc;
}

/* Reads a whole file into a malloc'd NUL-terminated buffer. */
static int slurp(const char *var, const char *path, char **out, foehn_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return foehn_fail(err, FOEHN_ERR_IO, "%s=\"%s\": cannot open: %s", var, path,
                          strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc = FOEHN_OK;
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
        if (len + 1 == cap) {
            if (cap >= NODEFILE_MAX_BYTES) {
                rc = foehn_fail(err, FOEHN_ERR_LIMIT, "%s=\"%s\": file larger than %u bytes",
                                var, path, NODEFILE_MAX_BYTES);
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    if (rc == FOEHN_OK && buf && ferror(f))
        rc = foehn_fail(err, FOEHN_ERR_IO, "%s=\"%s\": read error", var, path);
    fclose(f);
    if (!buf)
        return foehn_fail(err, FOEHN_ERR_NOMEM, "out of memory reading %s", path);
    if (rc != FOEHN_OK) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    return FOEHN_OK;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A host name as node files hold them: no spaces, no control characters. */
static bool host_token_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

/* One line per slot; blank lines and '#' comments are ignored. */
static int read_nodefile(foehn_host_table *t, const char *var, const char *path, foehn_error *err)
{
    char *text = NULL;
    int rc = slurp(var, path, &text, err);
    if (rc != FOEHN_OK)
        return rc;
    size_t lineno = 0;
    for (char *line = text; *line && rc == FOEHN_OK;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        lineno++;
        while (len && is_space(line[len - 1]))
            len--;
        while (len && is_space(*line)) {
            line++;
            len--;
        }
        if (len && *line != '#') {
            /* Some node files append slot counts or attributes after the name. */
            size_t name = 0;
            while (name < len && !is_space(line[name]))
                name++;
            if (!host_token_ok(line, name))
                rc = foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\": line %zu is not a host name",
                                var, path, lineno);
            else
                rc = foehn_host_table_add(t, line, name, 1);
        }
        line = end ? end + 1 : line + len;
    }
    free(text);
    if (rc == FOEHN_OK && t->hosts.len == 0)
        rc = foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\": the file names no hosts", var, path);
    t->has_counts = true;
    return rc;
}

/* "host slots host slots ..." as in LSB_MCPU_HOSTS. */
static int read_host_slots(foehn_host_table *t, const char *var, const char *value,
                           foehn_error *err)
{
    const char *p = value;
    int rc = FOEHN_OK;
    while (rc == FOEHN_OK) {
        while (is_space(*p))
            p++;
        if (!*p)
            break;
        const char *host = p;
        while (*p && !is_space(*p))
            p++;
        size_t hostlen = (size_t)(p - host);
        while (is_space(*p))
            p++;
        const char *num = p;
        while (*p && !is_space(*p))
            p++;
        char buf[16];
        size_t numlen = (size_t)(p - num);
        int slots = 0;
        if (numlen == 0 || numlen >= sizeof buf || !host_token_ok(host, hostlen))
            return foehn_fail(err, FOEHN_ERR_INVALID,
                              "%s=\"%s\": expected pairs of a host name and a slot count", var,
                              value);
        memcpy(buf, num, numlen);
        buf[numlen] = '\0';
        if (foehn_env_parse_count(var, buf, &slots, NULL) != FOEHN_OK || slots == 0)
            return foehn_fail(err, FOEHN_ERR_INVALID,
                              "%s=\"%s\": \"%s\" is not a positive slot count", var, value, buf);
        rc = foehn_host_table_add(t, host, hostlen, slots);
    }
    if (rc == FOEHN_OK && t->hosts.len == 0)
        rc = foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\" names no hosts", var, value);
    t->has_counts = true;
    return rc;
}

/* LSF lists its launch node first; it runs no ranks when compute hosts follow. */
static void drop_first_host(foehn_host_table *t)
{
    if (t->hosts.len < 2)
        return;
    free(t->hosts.items[0]);
    memmove(t->hosts.items, t->hosts.items + 1, (t->hosts.len - 1) * sizeof *t->hosts.items);
    memmove(t->counts, t->counts + 1, (t->hosts.len - 1) * sizeof *t->counts);
    t->hosts.len--;
}

/* A count variable that must agree with the number of hosts read. */
static int check_node_count(const foehn_scheduler_row *row, char *const *envp,
                            const foehn_host_table *t, const char *var, const char *value,
                            foehn_error *err)
{
    const char *count_var = NULL;
    const char *count = foehn_env_first(envp, row->node_count, &count_var);
    int n = 0;
    if (!count)
        return FOEHN_OK;
    int rc = foehn_env_parse_count(count_var, count, &n, err);
    if (rc == FOEHN_OK && (size_t)n != t->hosts.len)
        rc = foehn_fail(err, FOEHN_ERR_INVALID, "%s=\"%s\" but %s=\"%s\" names %zu hosts",
                        count_var, count, var, value, t->hosts.len);
    return rc;
}

int foehn_allocation_read(const foehn_scheduler_row *row, char *const *envp, foehn_host_table *t,
                          foehn_error *err)
{
    const char *var = NULL, *counts_var = NULL;
    const char *value;
    int rc;
    if ((value = foehn_env_first(envp, row->nodefile, &var)) && *value) {
        rc = read_nodefile(t, var, value, err);
    } else if ((value = foehn_env_first(envp, row->host_slots, &var)) && *value) {
        rc = read_host_slots(t, var, value, err);
    } else if ((value = foehn_env_first(envp, row->hostlist, &var))) {
        const char *counts = foehn_env_first(envp, row->step, NULL)
                                 ? NULL
                                 : foehn_env_first(envp, row->counts, &counts_var);
        rc = foehn_hosts_from_slurm(t, var, value, counts_var, counts, err);
        if (rc == FOEHN_OK)
            rc = check_node_count(row, envp, t, var, value, err);
    } else {
        return FOEHN_OK;
    }
    if (rc == FOEHN_OK && row->first_host_is_launch_node)
        drop_first_host(t);
    if (rc != FOEHN_OK)
        foehn_host_table_release(t);
    return rc;
}
