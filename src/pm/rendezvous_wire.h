/* The wire between the rendezvous server (rendezvous.c) and its clients
 * (provider_foehn.c). Internal: both ends are built from the same tree.
 *
 * Every message is one frame, all integers in network byte order:
 *
 *     u32 length   bytes of payload that follow the type (not counting these 5)
 *     u8  type     one of rdv_frame_type
 *     ... payload  `length` bytes
 *
 * Payloads:
 *   HELLO     c->s  u32 magic, u16 version, u16 zero, 32 bytes token, u32 rank  (44 bytes)
 *   WELCOME   s->c  u32 size                          (the token was right: you are in)
 *   FENCE     c->s  u32 seq, kv-block                 (what this rank committed since its last fence)
 *   FENCE_DONE s->c u32 seq, u32 size, size x { u32 n, n bytes kv-block }   (ranks in order)
 *   DIED      s->c  u32 rank (RDV_NO_RANK: none), text   (every pending and later fence fails)
 *   ABORT     c->s  i32 status, text
 *   BYE       c->s  (empty)                           (a clean finalize, not a death)
 *   STATUS    c->s  u32 seq                           (a client that timed out asks who is missing)
 *   STATUS_REPLY s->c u32 arrived, text
 *
 *   kv-block: u32 count, count x { u8 key_len, key, u32 value_len, value }
 *
 * A connection is on probation until its HELLO: the server reads exactly one frame of
 * exactly HELLO's size from it, and nothing larger is ever allocated for it.
 */
#ifndef FOEHN_PM_RENDEZVOUS_WIRE_H
#define FOEHN_PM_RENDEZVOUS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"

#include "pm/rendezvous.h"

#define RDV_MAGIC 0x464F4548u /* "FOEH" */
#define RDV_VERSION 1u

#define RDV_HEADER_LEN 5
#define RDV_TOKEN_BYTES (FOEHN_RDV_TOKEN_LEN / 2)
#define RDV_HELLO_LEN (4 + 2 + 2 + RDV_TOKEN_BYTES + 4)

/* Largest frame a client may send (one rank's keys for one fence, or an abort). */
#define RDV_CLIENT_FRAME_MAX (1u << 20)
/* Largest sum of all ranks' FENCE payloads in one fence: the reply every rank gets. */
#define RDV_FENCE_TOTAL_MAX (64u << 20)
/* Longest ABORT / DIED / STATUS text either end sends. */
#define RDV_TEXT_MAX 900
/* A connection that has not said HELLO by then is dropped. */
#define RDV_HELLO_TIMEOUT 5.0
/* DIED's rank when no rank died (the fence failed for another reason). */
#define RDV_NO_RANK 0xFFFFFFFFu
/* The most ranks one server serves. */
#define RDV_SIZE_MAX (1 << 20)

typedef enum rdv_frame_type {
    RDV_HELLO = 1,
    RDV_WELCOME = 2,
    RDV_FENCE = 3,
    RDV_FENCE_DONE = 4,
    RDV_DIED = 5,
    RDV_ABORT = 6,
    RDV_BYE = 7,
    RDV_STATUS = 8,
    RDV_STATUS_REPLY = 9,
} rdv_frame_type;


static inline void rdv_put_header(unsigned char *p, uint32_t length, rdv_frame_type type)
{
    foehn_put_u32(p, length);
    p[4] = (unsigned char)type;
}

/* Decodes FOEHN_RDV_TOKEN_LEN hex digits (either case) into RDV_TOKEN_BYTES bytes;
 * returns 0, or -1 when hex is not exactly that. */
int rdv_token_decode(const char *hex, unsigned char out[RDV_TOKEN_BYTES]);

/* Compares two tokens in time independent of where they differ: 1 when equal. */
int rdv_token_equal(const unsigned char a[RDV_TOKEN_BYTES], const unsigned char b[RDV_TOKEN_BYTES]);

/* Checks that block[0..len) is exactly one well-formed kv-block (lengths in bounds,
 * keys within FOEHN_PM_KEY_MAX and of allowed characters, values within
 * FOEHN_PM_VALUE_MAX). Returns 0, or -1 with *why set to a static phrase. */
int rdv_kv_check(const unsigned char *block, size_t len, const char **why);

/* Walks a checked kv-block: call with *pos = 4 (past the count); each call gives one
 * entry and advances *pos. The caller stops after the block's count. */
void rdv_kv_next(const unsigned char *block, size_t *pos, const unsigned char **key,
                 size_t *key_len, const unsigned char **value, size_t *value_len);

#endif
