/* The communicator's engine: one per process.
 *
 * A full mesh of TCP connections (rank i connects to every rank below it and accepts
 * every rank above it; each side proves it holds the job's token), one progress
 * thread that reads every byte and writes what the callers could not, and one lock
 * over all of the state below. Requests complete under the lock and wake waiters
 * through one condition variable.
 *
 * Matching follows MPI: a message matches the first posted receive with the same
 * context, a compatible source and a compatible tag; a receive matches the first
 * arrived ("unexpected") message the same way. Messages from one peer arrive in the
 * order it sent them (one TCP stream), so MPI's non-overtaking rule holds.
 *
 * Who owns what: whoever holds the lock may read from the sockets (the progress
 * thread, or a waiter while it spins) and so owns each peer's receive state. A
 * same-host copy out of a peer's memory runs without the lock (peer->pulling keeps
 * everyone off that peer's socket meanwhile); its destination (a posted receive's
 * buffer or an unexpected message's) stays put because a matched receive cannot be
 * cancelled and requests are reference counted. One writer at a time per peer (peer->writing), the caller first, the
 * progress thread for what is left.
 */
#ifndef FOEHN_COMM_ENGINE_H
#define FOEHN_COMM_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "comm/wire.h"
#include "foehn.h"

struct foehn_pm;

typedef struct foehn_engine foehn_engine;

/* An arrived message nobody has asked for yet (or one whose receive was posted while
 * its payload was still streaming in: then waiter is that receive). */
typedef struct foehn_msg {
    struct foehn_msg *next, *prev;
    uint32_t ctx, kind;
    int src;            /* world rank */
    int tag;
    size_t len;
    unsigned char *data;
    size_t got;         /* payload bytes arrived so far */
    bool complete;
    bool claimed;       /* taken off the unexpected list while streaming in */
    foehn_request *waiter;
    /* An RTS whose receive was not posted yet: its payload still lies in the sender
     * (rts_addr), to be copied straight into the receive when it is posted, or into
     * data by the progress thread once rts_deadline has passed (p2p.c). */
    bool rts;
    uint64_t rts_addr;
    uint32_t rts_id;
    double rts_deadline;
} foehn_msg;

typedef enum { REQ_SEND = 1, REQ_RECV, REQ_COLL, REQ_DONE } foehn_req_type;

struct foehn_request {
    foehn_req_type type;
    int refs;               /* the caller's and the engine's holds */
    foehn_comm *comm;       /* held (comm->refs) until the request is freed */
    bool complete, matched, cancelled;
    int result;             /* FOEHN_OK or a failure, with message */
    char *message;          /* malloc'd sentence when result != FOEHN_OK */

    /* a send: the frame and how much of it is written */
    unsigned char header[FOEHN_WIRE_HEADER];
    const unsigned char *payload;
    size_t len;
    const unsigned char *wire; /* what follows the header: the payload, or an RTS body */
    size_t wire_len, sent;  /* sent counts header + wire bytes */
    bool rts;               /* complete on the receiver's ACK, not once written */
    bool hold, written;     /* hold: not complete before the sender lets go, even once
                             * written (a part still being staged from its buffer) */
    uint32_t rts_id;
    unsigned char rts_body[FOEHN_WIRE_RTS_BODY];
    int dest;               /* world rank */
    foehn_request *next_send;

    /* a receive */
    uint32_t ctx, kind;     /* kind: 0 for user messages; a collective's otherwise */
    int src, tag;           /* world rank or FOEHN_ANY_SOURCE; tag or FOEHN_ANY_TAG */
    unsigned char *buf;
    size_t cap;
    bool exact;             /* a collective's receive: the length must be cap */
    bool allocate;          /* buf NULL: the message's own buffer is handed over */
    unsigned char *taken;   /* an allocating receive's data until foehn_request_take */
    foehn_request *next_posted, *prev_posted;
    foehn_msg_status status;    /* source as a world rank until completion */
};

typedef struct foehn_peer {
    int fd;                 /* -1 for this process itself */
    bool said_bye, gone;
    /* sending */
    foehn_request *send_head, *send_tail;
    foehn_request *acks;    /* RTS sends waiting for their ACK */
    uint32_t next_rts;
    /* same-host single copy (see wire.h) */
    int pid;
    bool pull_ok;           /* this process can read the peer's memory */
    bool pulling;           /* a thread copies this peer's message without the lock:
                             * nobody reads its socket meanwhile */
    bool peer_pulls;        /* the peer said it can read this process's memory */
    struct foehn_shm_out *shm_out; /* staging for messages to it (shm.h), made on use */
    bool shm_out_failed;    /* no segment could be made: do not try again */
    struct foehn_shm_in *shm_in;   /* its staging segment, mapped here */
    /* receiving (the progress thread's own) */
    unsigned char hdr[FOEHN_WIRE_HEADER + FOEHN_WIRE_RTS_BODY];
    size_t hdr_got, hdr_want;
    bool in_payload;
    unsigned char *dst;     /* where the payload goes (NULL: discard) */
    size_t dst_len, dst_got;
    foehn_msg *msg;         /* the unexpected message it fills, or NULL */
    foehn_request *req;     /* the receive it fills, or NULL */
    size_t discard_left;    /* bytes of a payload to skip (a failed receive) */
} foehn_peer;

struct foehn_comm {
    foehn_engine *engine;
    uint32_t ctx;           /* user messages; ctx + 1 for collectives */
    int rank, size;
    int *world_of;          /* comm rank -> world rank */
    int *rank_of;           /* world rank -> comm rank, -1 for outsiders */
    uint32_t coll_seq;      /* the next collective's number */
    int refs;               /* the caller's hold and one per pending request */
    bool freed;             /* the caller let go */
    bool builtin;           /* COMM_WORLD or COMM_SELF */
    /* every member names the same host: collectives then choose algorithms for shared
     * memory (the same choice on every rank, since every rank knows every host) */
    bool one_host;
    /* the worker thread of nonblocking collectives, started on first use */
    pthread_t worker;
    bool worker_started, worker_stop;
    bool job_running;           /* a job runs, on the worker or on a waiter (comm.c) */
    struct foehn_coll_job *jobs_head, *jobs_tail; /* comm.c's */
    pthread_cond_t jobs_cv;
    struct foehn_comm *next_comm, *prev_comm; /* the engine's list of live communicators */
};

/* A nonblocking collective waiting for, or running on, its communicator's worker. */
struct foehn_coll_job;

struct foehn_engine {
    pthread_mutex_t mu;
    pthread_cond_t done_cv;     /* a request completed, or the engine failed */
    struct foehn_pm *pm;
    bool own_pm;
    int rank, size;
    char *hostname;
    char **hosts;               /* each rank's host name, for messages */
    foehn_peer *peers;          /* one per world rank */
    struct { unsigned long long addr; unsigned char bytes[16]; } *probes; /* engine.c's */
    int listen_fd;
    int wake_fd;                /* eventfd: wakes the progress thread */
    int poll_fd;                /* eventfd: wakes a waiter asleep in poll() (its own, so
                                 * that the progress thread cannot drain its wake-up) */
    pthread_t progress;
    bool progress_started, stopping;
    foehn_request *posted_head, *posted_tail;
    foehn_msg *unexpected_head, *unexpected_tail;
    int deferred;               /* unexpected RTS messages not copied yet */
    uint32_t next_ctx;
    int failed;                 /* FOEHN_OK, or why every operation now fails */
    char *failure;              /* its sentence */
    int dead;                   /* the world rank whose death failed the engine, or -1 */
    foehn_comm *world, *self;
    foehn_comm *comms;          /* every communicator not yet released */
    int workers;                /* worker threads still running */
    double timeout;             /* foehn_comm_timeout() */
    size_t stage_max;           /* the largest message staged through shared memory
                                 * (shm.h): FOEHN_SHM_STAGE_MAX, or _CROWDED where this
                                 * host has more ranks than cores */
    int spin_us;                /* how long a waiter watches before it sleeps (request.c) */
    int spin_debt;              /* how far waits ran long, to stop spinning (request.c) */
    /* Waiters that drive the sockets themselves (foehn_engine_drive_*): while there is
     * one, and for a moment after, the progress thread leaves the sockets to them. */
    int drivers;
    double driven_at;           /* when the last driver left */
    bool poller;                /* a driver sleeps in poll(), without e->mu */
    bool progress_watching;     /* the progress thread sleeps in poll() on the sockets */
};

/* The process's engine, or NULL before init and after finalize. */
foehn_engine *foehn_engine_get(void);

/* Joins through pm; own_pm: finalize releases it (foehn_pm_release: it came from
 * foehn_pm_acquire, shared with foehn.init and torch's bootstrap). */
int foehn_comm_init_pm(struct foehn_pm *pm, bool own_pm, foehn_comm **world, foehn_comm **self,
                       double timeout, foehn_error *err);

/* Under e->mu: wakes the progress thread (when it sleeps on the sockets) and a waiter
 * asleep in poll(); the second wakes only the waiter. */
void foehn_engine_wake(foehn_engine *e);
void foehn_engine_wake_poller(foehn_engine *e);
/* Reads whatever has arrived on the sockets, without waiting; whether anything had. */
bool foehn_engine_poll_once(foehn_engine *e);
/* A waiter's part in progress, between drive_begin and drive_end: it reads and writes
 * the sockets itself, with poll_once while it spins and poll_wait when it would sleep,
 * and the progress thread stands aside. poll_wait sleeps in poll() until something
 * comes or until `until`; false when it cannot (another waiter already polls, the
 * engine is stopping, or the job is too large), and the caller sleeps on done_cv. */
void foehn_engine_drive_begin(foehn_engine *e);
void foehn_engine_drive_end(foehn_engine *e);
bool foehn_engine_poll_wait(foehn_engine *e, double until);
void foehn_engine_fail(foehn_engine *e, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The process rank's host, for messages ("?" when unknown). */
const char *foehn_engine_host(const foehn_engine *e, int world_rank);

/* Requests (request.c), under e->mu. */
foehn_request *foehn_request_new(foehn_comm *comm, foehn_req_type type);
void foehn_request_complete(foehn_engine *e, foehn_request *r, int result, const char *message);
void foehn_request_failf(foehn_engine *e, foehn_request *r, int result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void foehn_request_unref(foehn_engine *e, foehn_request *r);
/* How long a waiter watches its request before it sleeps: FOEHN_SPIN_US, else 1000
 * (request.c). */
int foehn_engine_spin_us(void);
/* Waits on e->done_cv until r completes or deadline passes; under e->mu. */
int foehn_request_wait_locked(foehn_engine *e, foehn_request *r, double deadline,
                              const char *what, foehn_error *err);
/* The sentence for a wait that ran out: what it waited for. */
void foehn_request_describe(const foehn_request *r, char *buf, size_t len);

/* Point to point (p2p.c), under e->mu. */
int foehn_p2p_isend_locked(foehn_comm *comm, uint32_t ctx, uint32_t kind, const void *buf,
                           size_t len, int dest, int tag, foehn_request **req, foehn_error *err);
int foehn_p2p_irecv_locked(foehn_comm *comm, uint32_t ctx, uint32_t kind, void *buf, size_t cap,
                           bool exact, int source, int tag, foehn_request **req, foehn_error *err);
/* A header arrived from peer src: decides where its payload goes (progress thread). */
void foehn_p2p_arrived(foehn_engine *e, int src, const foehn_wire_header *h);
/* The payload of peer's current message is all in. */
void foehn_p2p_payload_done(foehn_engine *e, foehn_peer *peer);
/* An RTS arrived from src: copy the payload out of src's memory, answer ACK. */
void foehn_p2p_rts_arrived(foehn_engine *e, int src, const foehn_wire_header *h,
                           const unsigned char *body);
/* Copies the deferred RTS messages whose time is up into buffers of their own;
 * returns how many ms until the next one's is (-1: none). Progress thread. */
int foehn_p2p_pull_overdue(foehn_engine *e);
/* src's ACK for RTS id: that send is complete. */
void foehn_p2p_ack_arrived(foehn_engine *e, int src, uint32_t id);
/* Every pending request fails (the engine failed). */
void foehn_p2p_fail_all(foehn_engine *e);
/* A peer said goodbye or vanished: receives that can only come from it fail. */
void foehn_p2p_peer_gone(foehn_engine *e, int world_rank);
/* Writes what the socket takes of peer's queue; called by whoever set peer->writing. */
void foehn_p2p_flush(foehn_engine *e, int world_rank);

/* Communicators (comm.c). */
int foehn_comm_create(foehn_engine *e, uint32_t ctx, const int *world_of, int size,
                      foehn_comm **out, foehn_error *err);
void foehn_comm_unref_locked(foehn_comm *comm);
void foehn_comm_destroy_all(foehn_engine *e);
/* Under e->mu. A waiter for one of comm's nonblocking collectives runs the next
 * queued job itself when none is running (foehn_comm_help: whether it ran one), so
 * that a program waiting on its ialltoalls does not hand every message to the worker
 * thread; foehn_comm_helped, when it stops waiting, gives what is left back to the
 * worker. */
bool foehn_comm_help(foehn_comm *comm);
void foehn_comm_helped(foehn_comm *comm);

/* The error sentence when the engine is unusable (failed, finalized): FOEHN_OK or the
 * failure with err set. Under e->mu. */
int foehn_engine_check(const foehn_engine *e, foehn_error *err);

#endif
