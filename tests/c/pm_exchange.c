/* pm_exchange: one rank of a key/value exchange through the process-management
 * layer, run by the tests under each real engine. Every rank puts two values
 * (a text one and one holding all 256 byte values, which providers with text
 * wires must escape), fences, reads every rank's values back and checks them,
 * then does a second round and a barrier. Prints one JSON line on success.
 *
 * With --nested, all that runs through a second initialisation while a first is
 * still open, and then the first is used again (PMIx counts references: both must
 * work), and finally a third init after both were finalized. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pm/pm.h"

extern char **environ;

static int fail(int rank, const char *what, const foehn_error *err)
{
    fprintf(stderr, "pm_exchange rank %d: %s: %s\n", rank, what, err ? err->message : "");
    return 1;
}

static void binary_value(int rank, unsigned char *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)(i + (size_t)rank);
}

static int check_value(foehn_pm *pm, int peer, const char *key, const void *want, size_t want_len)
{
    void *value = NULL;
    size_t len = 0;
    foehn_error err;
    if (foehn_pm_get(pm, peer, key, &value, &len, 0, &err) != FOEHN_OK)
        return fail(pm->rank, key, &err);
    int bad = len != want_len || memcmp(value, want, len) != 0 || ((char *)value)[len] != '\0';
    free(value);
    if (bad) {
        fprintf(stderr, "pm_exchange rank %d: rank %d's %s came back wrong (%zu bytes)\n",
                pm->rank, peer, key, len);
        return 1;
    }
    return 0;
}

static int exchange(void);

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--nested") != 0)
        return exchange();
    foehn_pm *outer;
    foehn_error err;
    if (foehn_pm_init(&outer, environ, &err) != FOEHN_OK)
        return fail(-1, "outer init", &err);
    int rc = exchange();
    if (rc == 0 && foehn_pm_barrier(outer, 0, &err) != FOEHN_OK)
        rc = fail(outer->rank, "barrier through the outer handle", &err);
    foehn_pm_finalize(outer);
    if (rc == 0) {
        foehn_pm *again;
        if (foehn_pm_init(&again, environ, &err) != FOEHN_OK ||
            foehn_pm_barrier(again, 0, &err) != FOEHN_OK)
            return fail(-1, "init after finalize", &err);
        foehn_pm_finalize(again);
    }
    return rc;
}

static int exchange(void)
{
    foehn_pm *pm;
    foehn_error err;
    if (foehn_pm_init(&pm, environ, &err) != FOEHN_OK)
        return fail(-1, "init", &err);
    int rank = pm->rank, size = pm->size;
    char text[64];
    unsigned char bin[256];
    snprintf(text, sizeof text, "rank %d of %d = ok", rank, size);
    binary_value(rank, bin, sizeof bin);
    if (foehn_pm_put(pm, "text", text, strlen(text), &err) != FOEHN_OK ||
        foehn_pm_put(pm, "bin", bin, sizeof bin, &err) != FOEHN_OK ||
        foehn_pm_commit(pm, &err) != FOEHN_OK || foehn_pm_fence(pm, 0, &err) != FOEHN_OK)
        return fail(rank, "first round", &err);
    for (int peer = 0; peer < size; peer++) {
        snprintf(text, sizeof text, "rank %d of %d = ok", peer, size);
        binary_value(peer, bin, sizeof bin);
        if (check_value(pm, peer, "text", text, strlen(text)) ||
            check_value(pm, peer, "bin", bin, sizeof bin))
            return 1;
    }
    /* A second round: later fences carry new keys too. */
    snprintf(text, sizeof text, "second %d", rank * 7);
    if (foehn_pm_put(pm, "round2", text, strlen(text), &err) != FOEHN_OK ||
        foehn_pm_commit(pm, &err) != FOEHN_OK || foehn_pm_fence(pm, 0, &err) != FOEHN_OK)
        return fail(rank, "second round", &err);
    int peer = (rank + 1) % size;
    snprintf(text, sizeof text, "second %d", peer * 7);
    if (check_value(pm, peer, "round2", text, strlen(text)))
        return 1;
    void *missing = NULL;
    size_t missing_len;
    if (foehn_pm_get(pm, peer, "never-put", &missing, &missing_len, 5, &err) != FOEHN_ERR_NOTFOUND) {
        free(missing);
        fprintf(stderr, "pm_exchange rank %d: a key nobody put did not give FOEHN_ERR_NOTFOUND\n",
                rank);
        return 1;
    }
    if (foehn_pm_barrier(pm, 0, &err) != FOEHN_OK)
        return fail(rank, "barrier", &err);
    printf("{\"rank\":%d,\"size\":%d,\"local_rank\":%d,\"local_size\":%d,\"node_index\":%d,"
           "\"num_nodes\":%d,\"provider\":\"%s\",\"ok\":true}\n",
           rank, size, pm->local_rank, pm->local_size, pm->node_index, pm->num_nodes,
           pm->provider->name);
    fflush(stdout);
    foehn_pm_finalize(pm);
    return 0;
}
