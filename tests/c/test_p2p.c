/* Point to point over the real engine, as N processes under `foehn run -n N`:
 * ping-pong of many sizes, ANY_SOURCE/ANY_TAG, self-messages, MPI's order between
 * two ranks, posted versus arrived receives, truncation, probe, allocating receives,
 * cancel, wait_any, contexts of Dup and Split kept apart.
 *
 * With --die K, rank K ends its process without finalizing after a barrier-like
 * exchange, and every other rank must see a receive from a third rank fail naming K
 * within a few seconds (run by tests/c/meson.build as its own test). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "foehn.h"

static foehn_comm *world, *self;
static int rank, size;

static void fill(unsigned char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(seed * 31u + i * 7u + (i >> 8));
}

static int filled(const unsigned char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != (unsigned char)(seed * 31u + i * 7u + (i >> 8)))
            return 0;
    return 1;
}

/* Rank 0 and the last rank bounce messages of every size. */
static void ping_pong(void)
{
    static const size_t sizes[] = {0, 1, 7, 4096, 65537, 1 << 20, 9 << 20};
    int peer = rank == 0 ? size - 1 : 0;
    if (size < 2 || (rank != 0 && rank != size - 1))
        return;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *out = malloc(n + 1), *in = malloc(n + 1);
        foehn_error err;
        foehn_msg_status st;
        fill(out, n, (unsigned)i);
        memset(in, 0xEE, n + 1);
        if (rank == 0) {
            CHECK_INT(foehn_send(world, out, n, peer, 5, &err), FOEHN_OK);
            CHECK_INT(foehn_recv(world, in, n + 1, peer, 6, &st, &err), FOEHN_OK);
        } else {
            CHECK_INT(foehn_recv(world, in, n + 1, peer, 5, &st, &err), FOEHN_OK);
            CHECK_INT(foehn_send(world, in, n, peer, 6, &err), FOEHN_OK);
        }
        CHECK(filled(in, n, (unsigned)i));
        CHECK_INT(st.bytes, n);
        CHECK_INT(st.source, peer);
        free(out);
        free(in);
    }
}

/* Two ranks both send a large message before receiving (unsafe in MPI's letter, common
 * in practice): it must not deadlock, by either path (socket or single copy). */
static void head_to_head(void)
{
    if (size < 2 || rank > 1)
        return;
    size_t n = 4u << 20;
    unsigned char *out = malloc(n), *in = malloc(n);
    foehn_error err;
    fill(out, n, (unsigned)rank + 3);
    CHECK_INT(foehn_send(world, out, n, 1 - rank, 8, &err), FOEHN_OK);
    CHECK_INT(foehn_recv(world, in, n, 1 - rank, 8, NULL, &err), FOEHN_OK);
    CHECK(filled(in, n, (unsigned)(1 - rank) + 3));
    free(out);
    free(in);
}

/* Every rank sends its rank to 0 with tag = rank; 0 takes them with ANY_SOURCE and
 * ANY_TAG, and the status tells who sent each. */
static void any_source(void)
{
    foehn_error err;
    if (rank != 0) {
        int32_t me = rank;
        CHECK_INT(foehn_send(world, &me, sizeof me, 0, 100 + rank, &err), FOEHN_OK);
        return;
    }
    int seen = 0;
    for (int i = 1; i < size; i++) {
        int32_t v = -1;
        foehn_msg_status st;
        CHECK_INT(foehn_recv(world, &v, sizeof v, FOEHN_ANY_SOURCE, FOEHN_ANY_TAG, &st, &err),
                  FOEHN_OK);
        CHECK_INT(v, st.source);
        CHECK_INT(st.tag, 100 + st.source);
        seen |= 1 << st.source;
    }
    CHECK_INT(seen, size > 1 ? ((1 << size) - 2) : 0);
}

/* Messages to oneself, received before and after they are sent; on COMM_SELF too. */
static void self_messages(void)
{
    foehn_error err;
    foehn_request *r;
    int a = 41, b = 0;
    CHECK_INT(foehn_irecv(world, &b, sizeof b, rank, 3, &r, &err), FOEHN_OK);
    CHECK_INT(foehn_send(world, &a, sizeof a, rank, 3, &err), FOEHN_OK);
    CHECK_INT(foehn_request_wait(r, 10, NULL, &err), FOEHN_OK);
    foehn_request_free(r);
    CHECK_INT(b, 41);
    a = 42;
    CHECK_INT(foehn_send(self, &a, sizeof a, 0, 4, &err), FOEHN_OK);
    CHECK_INT(foehn_recv(self, &b, sizeof b, 0, 4, NULL, &err), FOEHN_OK);
    CHECK_INT(b, 42);
    CHECK_INT(foehn_comm_size(self), 1);
    CHECK_INT(foehn_comm_rank(self), 0);
}

/* Many messages with one tag from one peer arrive in the order they were sent, also
 * when some arrive before their receives are posted. */
static void ordering(void)
{
    enum { N = 200 };
    foehn_error err;
    if (size < 2 || rank > 1)
        return;
    if (rank == 1) {
        foehn_request *reqs[N];
        int32_t vals[N];
        for (int i = 0; i < N; i++) {
            vals[i] = i;
            CHECK_INT(foehn_isend(world, &vals[i], sizeof vals[i], 0, 9, &reqs[i], &err), FOEHN_OK);
        }
        for (int i = 0; i < N; i++) {
            CHECK_INT(foehn_request_wait(reqs[i], 30, NULL, &err), FOEHN_OK);
            foehn_request_free(reqs[i]);
        }
        return;
    }
    int ok = 1;
    for (int i = 0; i < N; i++) {
        int32_t v = -1;
        if (i == N / 2)
            usleep(20000); /* let the rest arrive unexpected */
        CHECK_INT(foehn_recv(world, &v, sizeof v, 1, 9, NULL, &err), FOEHN_OK);
        ok &= v == i;
    }
    CHECK(ok);
}

/* A message too big for its buffer fails the receive with TRUNCATE, naming sizes;
 * probe sees a message before it is received; an allocating receive takes any size. */
static void truncate_probe_allocate(void)
{
    foehn_error err;
    if (size < 2 || rank > 1)
        return;
    if (rank == 1) {
        char big[100];
        memset(big, 'x', sizeof big);
        CHECK_INT(foehn_send(world, big, sizeof big, 0, 20, &err), FOEHN_OK);
        CHECK_INT(foehn_send(world, big, 77, 0, 21, &err), FOEHN_OK);
        CHECK_INT(foehn_send(world, big, 33, 0, 22, &err), FOEHN_OK);
        return;
    }
    char small[10];
    CHECK_INT(foehn_recv(world, small, sizeof small, 1, 20, NULL, &err), FOEHN_ERR_TRUNCATE);
    CHECK_CONTAINS(err.message, "100 bytes");
    foehn_msg_status st;
    CHECK_INT(foehn_probe(world, FOEHN_ANY_SOURCE, 21, 30, &st, &err), FOEHN_OK);
    CHECK_INT(st.bytes, 77);
    CHECK_INT(st.source, 1);
    int flag = 0;
    CHECK_INT(foehn_iprobe(world, 1, 21, &flag, &st, &err), FOEHN_OK);
    CHECK_INT(flag, 1);
    CHECK_INT(foehn_iprobe(world, 1, 999, &flag, &st, &err), FOEHN_OK);
    CHECK_INT(flag, 0);
    char got[77];
    CHECK_INT(foehn_recv(world, got, sizeof got, 1, 21, NULL, &err), FOEHN_OK);
    foehn_request *r;
    CHECK_INT(foehn_irecv(world, NULL, 0, 1, 22, &r, &err), FOEHN_OK);
    CHECK_INT(foehn_request_wait(r, 30, &st, &err), FOEHN_OK);
    void *data;
    size_t len;
    foehn_request_take(r, &data, &len);
    CHECK_INT(len, 33);
    CHECK(data && memcmp(data, "xxxxxxxxxx", 10) == 0);
    free(data);
    foehn_request_free(r);
}

/* Large messages on one host go by single copy, and one that arrives before its
 * receive waits in the sender a moment (see p2p.c): a receive posted late still gets
 * it (copied into a buffer by then), a send never waits on its receive for good, and
 * probe, truncation and allocating receives see such a message as any other. Rank 1
 * is late the first time, prompt the second. */
static void late_and_prompt_receives(void)
{
    static const size_t lens[] = {1u << 20, 3u << 20, 2u << 20};
    foehn_error err;
    if (size < 2 || rank > 1)
        return;
    for (int late = 1; late >= 0; late--) {
        if (rank == 0) {
            unsigned char *out[3];
            foehn_request *reqs[3];
            if (!late) /* rank 1 posts its receives right after this one arrives */
                CHECK_INT(foehn_send(world, &late, sizeof late, 1, 39, &err), FOEHN_OK);
            for (int i = 0; i < 3; i++) {
                out[i] = malloc(lens[i]);
                fill(out[i], lens[i], (unsigned)(40 + i + late));
                CHECK_INT(foehn_isend(world, out[i], lens[i], 1, 40 + i, &reqs[i], &err),
                          FOEHN_OK);
            }
            for (int i = 0; i < 3; i++) { /* complete although rank 1 has not received */
                CHECK_INT(foehn_request_wait(reqs[i], 30, NULL, &err), FOEHN_OK);
                foehn_request_free(reqs[i]);
                free(out[i]);
            }
            if (late)
                CHECK_INT(foehn_send(world, &late, sizeof late, 1, 39, &err), FOEHN_OK);
            continue;
        }
        int got = -1;
        CHECK_INT(foehn_recv(world, &got, sizeof got, 0, 39, NULL, &err), FOEHN_OK);
        CHECK_INT(got, late);
        foehn_msg_status st;
        CHECK_INT(foehn_probe(world, 0, 41, 30, &st, &err), FOEHN_OK);
        CHECK_INT(st.bytes, lens[1]);
        unsigned char *in = malloc(lens[0]);
        CHECK_INT(foehn_recv(world, in, lens[0], 0, 40, &st, &err), FOEHN_OK);
        CHECK(filled(in, lens[0], (unsigned)(40 + late)));
        foehn_request *r;
        CHECK_INT(foehn_irecv(world, NULL, 0, FOEHN_ANY_SOURCE, 41, &r, &err), FOEHN_OK);
        CHECK_INT(foehn_request_wait(r, 30, &st, &err), FOEHN_OK);
        void *data = NULL;
        size_t len = 0;
        foehn_request_take(r, &data, &len);
        CHECK(len == lens[1] && data && filled(data, len, (unsigned)(41 + late)));
        free(data);
        foehn_request_free(r);
        CHECK_INT(foehn_recv(world, in, lens[0], 0, 42, NULL, &err), FOEHN_ERR_TRUNCATE);
        CHECK_CONTAINS(err.message, "2097152 bytes");
        free(in);
    }
}

/* A receive nobody sends to can be cancelled; wait_any returns the one that completed. */
static void cancel_and_any(void)
{
    foehn_error err;
    foehn_request *reqs[2];
    int a = 0, b = 0, v = 5;
    CHECK_INT(foehn_irecv(world, &a, sizeof a, rank, 31, &reqs[0], &err), FOEHN_OK);
    CHECK_INT(foehn_irecv(world, &b, sizeof b, rank, 32, &reqs[1], &err), FOEHN_OK);
    CHECK_INT(foehn_send(world, &v, sizeof v, rank, 32, &err), FOEHN_OK);
    size_t index = 99;
    CHECK_INT(foehn_request_wait_any(reqs, 2, 10, &index, &err), FOEHN_OK);
    CHECK_INT(index, 1);
    CHECK_INT(b, 5);
    foehn_request_cancel(reqs[0]);
    foehn_msg_status st;
    CHECK_INT(foehn_request_wait(reqs[0], 10, &st, &err), FOEHN_OK);
    CHECK_INT(st.cancelled, 1);
    foehn_request_free(reqs[0]);
    foehn_request_free(reqs[1]);
    /* invalid arguments change nothing and say what was wrong */
    CHECK_INT(foehn_send(world, &v, sizeof v, size, 0, &err), FOEHN_ERR_INVALID);
    CHECK_CONTAINS(err.message, "invalid destination rank");
    CHECK_INT(foehn_send(world, &v, sizeof v, 0, -5, &err), FOEHN_ERR_INVALID);
}

/* A message on a Dup is not seen on COMM_WORLD with the same tag; Split orders by key. */
static void contexts(void)
{
    foehn_error err;
    foehn_comm *dup = NULL, *half = NULL, *none = NULL;
    CHECK_INT(foehn_comm_dup(world, &dup, &err), FOEHN_OK);
    CHECK_INT(foehn_comm_size(dup), size);
    int v = 7, w = 0, flag = 1;
    CHECK_INT(foehn_send(dup, &v, sizeof v, rank, 1, &err), FOEHN_OK);
    CHECK_INT(foehn_iprobe(world, rank, 1, &flag, NULL, &err), FOEHN_OK);
    CHECK_INT(flag, 0);
    CHECK_INT(foehn_recv(dup, &w, sizeof w, rank, 1, NULL, &err), FOEHN_OK);
    CHECK_INT(w, 7);
    /* even and odd ranks, in reverse order of rank */
    CHECK_INT(foehn_comm_split(world, rank % 2, -rank, &half, &err), FOEHN_OK);
    int members = (size + 1 - rank % 2) / 2;
    CHECK_INT(foehn_comm_size(half), members);
    CHECK_INT(foehn_comm_rank(half), members - 1 - rank / 2);
    CHECK_INT(foehn_comm_split(world, FOEHN_UNDEFINED, 0, &none, &err), FOEHN_OK);
    CHECK(none == NULL);
    /* the lowest world rank of each half sends to the highest */
    if (foehn_comm_size(half) > 1) {
        int top = foehn_comm_size(half) - 1;
        if (foehn_comm_rank(half) == top)
            CHECK_INT(foehn_send(half, &rank, sizeof rank, 0, 2, &err), FOEHN_OK);
        if (foehn_comm_rank(half) == 0) {
            int from = -1;
            CHECK_INT(foehn_recv(half, &from, sizeof from, top, 2, NULL, &err), FOEHN_OK);
            CHECK_INT(from, rank % 2);
        }
    }
    foehn_comm_free(half);
    foehn_comm_free(dup);
}

/* Ranks exchange a token in a ring: nobody leaves a phase before all have entered it. */
static void ring_sync(void)
{
    foehn_error err;
    int token = 0;
    if (size == 1)
        return;
    if (rank == 0) {
        CHECK_INT(foehn_send(world, &token, sizeof token, 1, 77, &err), FOEHN_OK);
        CHECK_INT(foehn_recv(world, &token, sizeof token, size - 1, 77, NULL, &err), FOEHN_OK);
    } else {
        CHECK_INT(foehn_recv(world, &token, sizeof token, rank - 1, 77, NULL, &err), FOEHN_OK);
        CHECK_INT(foehn_send(world, &token, sizeof token, (rank + 1) % size, 77, &err), FOEHN_OK);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rank `dead` leaves without a goodbye; the others wait for a message from a third
 * rank that never comes, and must fail fast naming the dead one. */
static int die_test(int dead)
{
    foehn_error err;
    ring_sync();
    if (rank == dead) {
        usleep(200000);
        _exit(3);
    }
    int other = (dead + 1) % size == rank ? (dead + 2) % size : (dead + 1) % size;
    int v;
    double started = now();
    int rc = foehn_recv(world, &v, sizeof v, other, 55, NULL, &err);
    double took = now() - started;
    char name[32];
    snprintf(name, sizeof name, "rank %d ", dead);
    CHECK_INT(rc, FOEHN_ERR_PEER);
    CHECK_CONTAINS(err.message, name);
    CHECK(took < 5.0);
    /* later operations fail the same way, at once */
    CHECK_INT(foehn_send(world, &v, sizeof v, other, 1, &err), FOEHN_ERR_PEER);
    foehn_comm_finalize();
    char suite[64];
    snprintf(suite, sizeof suite, "p2p death (rank %d)", rank);
    return check_summary(suite);
}

int main(int argc, char **argv)
{
    foehn_error err;
    if (foehn_comm_init(&world, &self, 60, &err) != FOEHN_OK) {
        fprintf(stderr, "foehn_comm_init: %s\n", err.message);
        return 2;
    }
    rank = foehn_comm_rank(world);
    size = foehn_comm_size(world);
    if (argc == 3 && strcmp(argv[1], "--die") == 0)
        return die_test(atoi(argv[2]));
    /* Phases are kept apart: a phase's ANY_TAG receive must not see the next one's. */
    void (*phases[])(void) = {ping_pong, head_to_head, any_source, self_messages, ordering,
                              truncate_probe_allocate, late_and_prompt_receives, cancel_and_any,
                              contexts};
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
        phases[i]();
        ring_sync();
    }
    foehn_comm_finalize();
    CHECK(!foehn_comm_initialized());
    char suite[64];
    snprintf(suite, sizeof suite, "p2p (rank %d of %d)", rank, size);
    return check_summary(suite);
}
