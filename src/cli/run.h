/* foehn run: the embedded launcher. N local ranks, the rendezvous service they
 * bootstrap through, their output kept whole line by line, stdin to rank 0,
 * signals forwarded, and a failed rank stopping the job. */
#ifndef FOEHN_CLI_RUN_H
#define FOEHN_CLI_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/strbuf.h"

/* One output stream of one rank, forwarded line by line. */
typedef struct run_stream {
    int fd;                 /* read end of the rank's pipe; -1 once closed */
    int out;                /* where its lines go: 1 or 2 */
    foehn_strbuf partial;   /* bytes of a line not yet ended */
} run_stream;

typedef struct run_rank {
    int rank;
    pid_t pid;              /* 0 once reaped */
    run_stream streams[2];  /* stdout, stderr */
    int stdin_fd;           /* write end of rank 0's stdin; -1 elsewhere or once closed */
    int status;             /* wait status once reaped */
} run_rank;

typedef struct run_options {
    int nranks;
    bool tag_output;
    bool bind_gpus;         /* each rank its share of the accelerators (foehn_gpu_share) */
    double grace;           /* seconds between a failure and stopping the others */
    char **argv;            /* the program and its arguments */
} run_options;

/* Parses `foehn run` arguments; returns -1 on success, else the exit status
 * after printing the usage or the error. */
int run_parse(int argc, char **argv, run_options *opt);

/* Starts rank r's process with the given extra environment ("K=V" strings). */
int run_spawn(run_rank *rank, const run_options *opt, char **extra_env, bool gets_stdin);

/* Reads what is available on a stream and writes out every whole line
 * (prefixed with "[rank] " when tagging); at EOF the rest, newline added. */
void run_stream_pump(run_stream *s, int rank, bool tag);

/* Signals a rank's whole process group (the rank and what it started). */
void run_signal_rank(const run_rank *rank, int sig);

/* "exited with status 3", "was killed by signal 9 (Killed)". */
const char *run_describe_status(int status, char *buf, size_t len);

/* The exit status foehn run reports for a rank's wait status (128+N for signals). */
int run_exit_code(int status);

#endif
