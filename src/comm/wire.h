/* The frames ranks exchange over their connections.
 *
 * A connection opens with a hello each way:
 *   "FOEHNCM1" | world rank (u32) | job token (16 bytes)
 * The side that accepted checks the token (in constant time) and that the rank is
 * one it expects, then answers with its own hello; anything else is closed unread.
 *
 * Then frames, each a fixed header and a payload:
 *   type (u32) | context (u32) | tag (u32) | kind (u32) | length (u64)
 * all big-endian. type DATA carries length payload bytes; BYE (no payload) says the
 * sender has finalized: its connection closing afterwards is not a death. A BYE's
 * tag, when not 0, is 1 + the world rank whose death made the sender stop: the peers
 * learn of a death from whoever saw it first, even where their own connection to
 * the dead rank has not ended yet (a process's sockets close one by one as it exits).
 */
#ifndef FOEHN_COMM_WIRE_H
#define FOEHN_COMM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define FOEHN_WIRE_MAGIC "FOEHNCM1"
#define FOEHN_WIRE_TOKEN 16
#define FOEHN_WIRE_HELLO (8 + 4 + FOEHN_WIRE_TOKEN)
#define FOEHN_WIRE_HEADER 24

enum {
    FOEHN_FRAME_DATA = 1,
    FOEHN_FRAME_BYE = 2,
    /* Same-host single copy (Linux cross-memory attach): instead of the payload, an
     * RTS carries where it lies in the sender's memory, FOEHN_WIRE_RTS_BODY bytes:
     * address (u64) | id (u32) | 0 (u32). The receiver copies it straight out of the
     * sender with process_vm_readv and answers ACK (tag = id); only then may the
     * sender reuse its buffer. CAPS, sent once after the hello, says "I can read
     * your memory": only then does the peer send RTS frames to it. */
    FOEHN_FRAME_RTS = 3,
    FOEHN_FRAME_ACK = 4,
    FOEHN_FRAME_CAPS = 5,
    /* Sent once, before the first RTS whose payload lies in the sender's staging
     * segment for this peer (shm.h): tag = the segment's memfd in the sender, kind =
     * its size in 4 KiB pages, length = its address in the sender. */
    FOEHN_FRAME_SEG = 6,
};

#define FOEHN_WIRE_RTS_BODY 16

typedef struct foehn_wire_header {
    uint32_t type, ctx, tag, kind;
    uint64_t len;
} foehn_wire_header;

static inline void foehn_wire_put32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static inline uint32_t foehn_wire_get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void foehn_wire_encode(unsigned char out[FOEHN_WIRE_HEADER],
                                     const foehn_wire_header *h)
{
    foehn_wire_put32(out, h->type);
    foehn_wire_put32(out + 4, h->ctx);
    foehn_wire_put32(out + 8, h->tag);
    foehn_wire_put32(out + 12, h->kind);
    foehn_wire_put32(out + 16, (uint32_t)(h->len >> 32));
    foehn_wire_put32(out + 20, (uint32_t)h->len);
}

static inline void foehn_wire_decode(const unsigned char in[FOEHN_WIRE_HEADER],
                                     foehn_wire_header *h)
{
    h->type = foehn_wire_get32(in);
    h->ctx = foehn_wire_get32(in + 4);
    h->tag = foehn_wire_get32(in + 8);
    h->kind = foehn_wire_get32(in + 12);
    h->len = (uint64_t)foehn_wire_get32(in + 16) << 32 | foehn_wire_get32(in + 20);
}

#endif
