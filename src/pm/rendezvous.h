/* Foehn's own rendezvous service: the server `foehn run` hosts (and later the
 * executor), and the wire it speaks with provider_foehn.c.
 *
 * The server runs on its own thread with its own poll loop. Every connection must
 * first present the job's secret token (random per job, passed to ranks only
 * through their environment); anything else — a wrong token, garbage, a second
 * connection for a rank already connected — is dropped without disturbing the job.
 * A fence costs one round trip per rank: each rank sends what it committed, and
 * once all have arrived each gets everyone's. A rank whose connection closes
 * without saying goodbye, or whose death the launcher reports, makes every
 * pending and later fence fail at once with a message naming it.
 */
#ifndef FOEHN_PM_RENDEZVOUS_H
#define FOEHN_PM_RENDEZVOUS_H

#include "foehn.h"

/* Environment a rank of a rendezvous job receives. */
#define FOEHN_RDV_ADDR_VAR "FOEHN_RDV_ADDR"   /* "host:port" */
#define FOEHN_RDV_TOKEN_VAR "FOEHN_RDV_TOKEN" /* 64 hex digits */
#define FOEHN_RDV_TOKEN_LEN 64

typedef struct foehn_rdv_server foehn_rdv_server;

/* Called on the server's thread when a rank asks to abort the job
 * (foehn_pm_abort), with its status and message. */
typedef void (*foehn_rdv_abort_fn)(void *arg, int rank, int status, const char *message);

typedef struct foehn_rdv_server_options {
    int size;                 /* ranks in the job */
    const char *bind_host;    /* address to listen on; the kernel picks the port */
    const char *token;        /* FOEHN_RDV_TOKEN_LEN hex digits */
    foehn_rdv_abort_fn on_abort;
    void *arg;
} foehn_rdv_server_options;

/* Listens and starts the server's thread. */
int foehn_rdv_server_start(foehn_rdv_server **server, const foehn_rdv_server_options *options,
                           foehn_error *err);
/* The port the kernel chose. */
int foehn_rdv_server_port(const foehn_rdv_server *server);
/* The launcher saw rank end (`how`: "exited with status 3", "was killed by
 * SIGKILL"): unless it said goodbye (finalized) first, fences fail at once for
 * the others, naming it. The launcher reports every end, clean or not: a rank
 * that exits 0 without joining would otherwise leave the others waiting. Safe
 * from any thread. */
void foehn_rdv_server_rank_died(foehn_rdv_server *server, int rank, const char *how);
/* Stops the thread, closes every connection, frees the server. */
void foehn_rdv_server_stop(foehn_rdv_server *server);

/* A fresh random token (FOEHN_RDV_TOKEN_LEN hex digits + NUL) from getrandom(). */
int foehn_rdv_new_token(char token[FOEHN_RDV_TOKEN_LEN + 1], foehn_error *err);

#endif
