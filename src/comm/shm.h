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
 * speed, never correctness. The part is free again on the receiver's ACK. */
#ifndef FOEHN_COMM_SHM_H
#define FOEHN_COMM_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FOEHN_SHM_STAGE_MAX ((size_t)4 << 20)

/* The sending side: one per peer, made on first use. */
typedef struct foehn_shm_out foehn_shm_out;
/* The receiving side: the peer's segment as mapped here. */
typedef struct foehn_shm_in foehn_shm_in;

/* A segment for one peer, or NULL (no memfd, no memory: the caller sends as before). */
foehn_shm_out *foehn_shm_out_new(void);
void foehn_shm_out_free(foehn_shm_out *out);
/* What a SEG frame tells the peer: the memfd's number, its address here, its size. */
void foehn_shm_out_describe(const foehn_shm_out *out, int *fd, uint64_t *base, size_t *size);
/* Copies len bytes of buf into a free part, for the message with RTS id `id`; the
 * part's address, or NULL when no part is free (too many or too large in flight). */
void *foehn_shm_stage(foehn_shm_out *out, const void *buf, size_t len, uint32_t id);
/* The message `id` was acknowledged: its part is free. Whether it had one. */
bool foehn_shm_release(foehn_shm_out *out, uint32_t id);

/* Maps segment fd of process pid (base and size as its SEG frame said); NULL when
 * that cannot be done (then the peer's messages are read with single copy). */
foehn_shm_in *foehn_shm_in_open(int pid, int fd, uint64_t base, size_t size);
void foehn_shm_in_free(foehn_shm_in *in);
/* Copies len bytes at the peer's address addr into dst when they lie in its
 * segment; false when they do not (the caller reads them with single copy). */
bool foehn_shm_read(const foehn_shm_in *in, void *dst, uint64_t addr, size_t len);

#endif
