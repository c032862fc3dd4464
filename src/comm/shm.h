/* Staging through shared memory, for same-host messages of up to FOEHN_SHM_STAGE_MAX
 * bytes.
 *
 * A single copy with process_vm_readv moves ~10 GB/s whatever the size: the kernel
 * pins and maps every 4 KiB page of both sides. memcpy on a cached megabyte runs at
 * ~50 GB/s, so two of them, the sender's into memory the receiver has mapped and
 * the receiver's out of it, beat the one single copy up to a few MiB (measured on
 * 2 cores: 1 MiB 100 -> ~40 us). So a sender keeps, per peer on its host, a segment
 * (a memfd) that the peer maps read-only through /proc/<pid>/fd (the same
 * permission single copy needs); it copies a message into a free part, and the RTS
 * (wire.h) names that part's address instead of the user's buffer. The receiver
 * copies from its mapping when the address lies in the segment it was told of
 * (frame SEG), and with process_vm_readv otherwise: a segment it cannot map costs
 * speed, never correctness. The part is free again on the receiver's ACK.
 *
 * A large part is filled in pieces after its RTS has gone, and the receiver copies
 * each piece as it lands (a counter of the bytes ready heads the part), so that the
 * two copies overlap instead of adding up. */
#ifndef FOEHN_COMM_SHM_H
#define FOEHN_COMM_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FOEHN_SHM_STAGE_MAX ((size_t)4 << 20)
/* On a host with more of the job's ranks than cores, every copy takes a core another
 * rank needs: staging's second copy then pays only while both stay in cache. Above
 * this, single copy (measured on 4 ranks over 2 cores: ring allgather of 16 MiB, 4 MiB
 * per step, 3.2 -> 5.3 GB/s; 1 MiB steps stay faster staged). */
#define FOEHN_SHM_STAGE_CROWDED ((size_t)1 << 20)
/* Staged before the RTS goes; the rest follows in pieces of this size. */
#define FOEHN_SHM_PIECE ((size_t)256 << 10)

/* The sending side: one per peer, made on first use. */
typedef struct foehn_shm_out foehn_shm_out;
/* The receiving side: the peer's segment as mapped here. */
typedef struct foehn_shm_in foehn_shm_in;

/* A segment for one peer, or NULL (no memfd, no memory: the caller sends as before). */
foehn_shm_out *foehn_shm_out_new(void);
void foehn_shm_out_free(foehn_shm_out *out);
/* What a SEG frame tells the peer: the memfd's number, its address here, its size. */
void foehn_shm_out_describe(const foehn_shm_out *out, int *fd, uint64_t *base, size_t *size);
/* Takes a free part for the len bytes of buf, the message with RTS id `id`, and
 * copies the first `first` of them (all when first >= len); the address of its data,
 * or NULL when no part is free (too many or too large in flight). */
void *foehn_shm_stage(foehn_shm_out *out, const void *buf, size_t len, size_t first,
                      uint32_t id);
/* Copies the rest (from `first` on) into a part staged with less than all of it, a
 * piece at a time, each ready for the receiver once copied. */
void foehn_shm_stage_rest(void *at, const void *buf, size_t len, size_t first);
/* The message `id` was acknowledged: its part is free. Whether it had one. */
bool foehn_shm_release(foehn_shm_out *out, uint32_t id);

/* Maps segment fd of process pid (base and size as its SEG frame said); NULL when
 * that cannot be done (then the peer's messages are read with single copy). */
foehn_shm_in *foehn_shm_in_open(int pid, int fd, uint64_t base, size_t size);
void foehn_shm_in_free(foehn_shm_in *in);
enum { FOEHN_SHM_COPIED, FOEHN_SHM_OUTSIDE, FOEHN_SHM_STALLED };
/* Copies the len bytes of the part at the peer's address addr into dst as they are
 * ready: FOEHN_SHM_COPIED; FOEHN_SHM_OUTSIDE when addr is not a part of its segment
 * (the caller reads it with single copy); FOEHN_SHM_STALLED when the sender added
 * nothing for `stall` seconds (it stopped: killed while it copied). */
int foehn_shm_read(const foehn_shm_in *in, void *dst, uint64_t addr, size_t len, double stall);

#endif
