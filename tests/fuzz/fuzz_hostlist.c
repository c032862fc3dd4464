/* libFuzzer target for the hostlist and task-count grammars.
 *
 * Properties: nothing crashes, leaks or hits undefined behaviour on any input;
 * and whatever expands also survives a round trip: compress(expand(x)) expands
 * to exactly the same hosts, in the same order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "foehn.h"

/* Expands the compressed form of hosts and aborts unless it gives them back. */
static void check_round_trip(char **hosts, size_t count)
{
    char *list = NULL;
    foehn_error err;
    int rc = foehn_hostlist_compress((const char *const *)hosts, count, &list, &err);
    if (rc == FOEHN_ERR_NOMEM)
        return;
    if (rc != FOEHN_OK)
        abort(); /* every expanded name is writable in a hostlist */
    char **back = NULL;
    size_t nback = 0;
    rc = foehn_hostlist_expand(list, &back, &nback, &err);
    if (rc == FOEHN_ERR_NOMEM) {
        free(list);
        return;
    }
    if (rc != FOEHN_OK || nback != count)
        abort();
    for (size_t i = 0; i < count; i++)
        if (strcmp(back[i], hosts[i]) != 0)
            abort();
    foehn_strv_free(back, nback);
    free(list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* stops at the first NUL inside, as a C string would */

    char **hosts = NULL;
    size_t count = 0;
    foehn_error err;
    if (foehn_hostlist_expand(text, &hosts, &count, &err) == FOEHN_OK) {
        check_round_trip(hosts, count);
        foehn_strv_free(hosts, count);
    } else if (hosts != NULL || count != 0 || err.message[0] == '\0') {
        abort(); /* a failure must leave nothing behind and say why */
    }

    int *values = NULL;
    size_t nvalues = 0;
    if (foehn_counts_expand(text, &values, &nvalues, &err) == FOEHN_OK)
        free(values);
    else if (values != NULL || nvalues != 0 || err.message[0] == '\0')
        abort();

    free(text);
    return 0;
}
