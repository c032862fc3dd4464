#include "comm/shm.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"

/* Per peer: room for two messages of FOEHN_SHM_STAGE_MAX in flight (and their
 * headers); pages are only taken as they are first written. */
#define SEGMENT_SIZE (2 * FOEHN_SHM_STAGE_MAX + 4096)
/* Parts in flight at once; more wait for a free one by going by single copy. */
#define PARTS_MAX 64
/* The largest segment a peer may announce (a garbage SEG frame maps nothing). */
#define SEGMENT_MAX ((size_t)1 << 30)

/* Each part: a header of HEAD bytes, whose first 8 count the bytes of data ready
 * (written by the sender with release order, read by the receiver with acquire
 * order), then the data. */
#define HEAD 64

/* A ring of parts, allocated at head and freed in any order; tail follows the oldest
 * part still in use. Positions grow without end (they are taken modulo the size). */
struct foehn_shm_out {
    int fd;
    unsigned char *base;
    size_t size;
    uint64_t head, tail;
    struct part {
        uint64_t start, end;
        uint32_t id;
        bool freed;
    } parts[PARTS_MAX];
    unsigned first, count; /* parts[first .. first + count) in order, circularly */
};

struct foehn_shm_in {
    unsigned char *map;
    uint64_t base;
    size_t size;
};

foehn_shm_out *foehn_shm_out_new(void)
{
    foehn_shm_out *out = calloc(1, sizeof *out);
    if (!out)
        return NULL;
    out->fd = memfd_create("foehn-stage", MFD_CLOEXEC);
    out->size = SEGMENT_SIZE;
    if (out->fd < 0 || ftruncate(out->fd, (off_t)out->size) != 0) {
        if (out->fd >= 0)
            close(out->fd);
        free(out);
        return NULL;
    }
    void *p = mmap(NULL, out->size, PROT_READ | PROT_WRITE, MAP_SHARED, out->fd, 0);
    if (p == MAP_FAILED) {
        close(out->fd);
        free(out);
        return NULL;
    }
    out->base = p;
    return out;
}

void foehn_shm_out_free(foehn_shm_out *out)
{
    if (!out)
        return;
    munmap(out->base, out->size);
    close(out->fd);
    free(out);
}

void foehn_shm_out_describe(const foehn_shm_out *out, int *fd, uint64_t *base, size_t *size)
{
    *fd = out->fd;
    *base = (uint64_t)(uintptr_t)out->base;
    *size = out->size;
}

static void publish(unsigned char *at, uint64_t ready)
{
    __atomic_store_n((uint64_t *)(void *)(at - HEAD), ready, __ATOMIC_RELEASE);
}

void *foehn_shm_stage(foehn_shm_out *out, const void *buf, size_t len, size_t first,
                      uint32_t id)
{
    if (!len || len > out->size / 2 - 2 * HEAD || out->count == PARTS_MAX)
        return NULL;
    size_t need = (len + 2 * HEAD - 1) & ~(size_t)(HEAD - 1); /* parts stay aligned */
    uint64_t start = out->head;
    size_t off = (size_t)(start % out->size);
    if (off + need > out->size)
        start += out->size - off; /* a part never wraps: skip the end */
    if (start + need - out->tail > out->size)
        return NULL;
    struct part *p = &out->parts[(out->first + out->count++) % PARTS_MAX];
    *p = (struct part){.start = start, .end = start + need, .id = id};
    out->head = start + need;
    unsigned char *at = out->base + start % out->size + HEAD;
    first = first < len ? first : len;
    memcpy(at, buf, first);
    publish(at, first);
    return at;
}

void foehn_shm_stage_rest(void *at, const void *buf, size_t len, size_t first)
{
    for (size_t done = first; done < len;) {
        size_t n = len - done < FOEHN_SHM_PIECE ? len - done : FOEHN_SHM_PIECE;
        memcpy((unsigned char *)at + done, (const unsigned char *)buf + done, n);
        done += n;
        publish(at, done);
    }
}

bool foehn_shm_release(foehn_shm_out *out, uint32_t id)
{
    bool found = false;
    for (unsigned i = 0; i < out->count && !found; i++) {
        struct part *p = &out->parts[(out->first + i) % PARTS_MAX];
        if (!p->freed && p->id == id)
            found = p->freed = true;
    }
    while (out->count && out->parts[out->first].freed) {
        out->first = (out->first + 1) % PARTS_MAX;
        out->count--;
    }
    if (!out->count) /* empty: start again at the front, whose pages are warm */
        out->head = 0;
    out->tail = out->count ? out->parts[out->first].start : out->head;
    return found;
}

foehn_shm_in *foehn_shm_in_open(int pid, int fd, uint64_t base, size_t size)
{
    if (pid <= 0 || fd < 0 || !size || size > SEGMENT_MAX || base + size < base)
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
    int mine = open(path, O_RDONLY | O_CLOEXEC);
    if (mine < 0)
        return NULL;
    struct stat st;
    void *map = MAP_FAILED;
    /* the file must be at least as large as announced, or reading it would fault */
    if (fstat(mine, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size >= size)
        map = mmap(NULL, size, PROT_READ, MAP_SHARED, mine, 0);
    close(mine);
    if (map == MAP_FAILED)
        return NULL;
    foehn_shm_in *in = calloc(1, sizeof *in);
    if (!in) {
        munmap(map, size);
        return NULL;
    }
    *in = (foehn_shm_in){.map = map, .base = base, .size = size};
    return in;
}

void foehn_shm_in_free(foehn_shm_in *in)
{
    if (!in)
        return;
    munmap(in->map, in->size);
    free(in);
}

int foehn_shm_read(const foehn_shm_in *in, void *dst, uint64_t addr, size_t len, double stall)
{
    if (!in || addr < in->base + HEAD || addr - in->base > in->size ||
        len > in->size - (addr - in->base))
        return FOEHN_SHM_OUTSIDE;
    const unsigned char *at = in->map + (addr - in->base);
    const uint64_t *ready = (const uint64_t *)(const void *)(at - HEAD);
    size_t done = 0;
    double since = 0;
    while (done < len) {
        uint64_t now = __atomic_load_n(ready, __ATOMIC_ACQUIRE);
        size_t upto = now < len ? (size_t)now : len; /* the peer's word: clamp it */
        if (upto > done) {
            memcpy((unsigned char *)dst + done, at + done, upto - done);
            done = upto;
            since = 0;
            continue;
        }
        /* the sender is copying the next piece this very moment */
        if (since == 0)
            since = foehn_now();
        else if (foehn_now() - since > stall)
            return FOEHN_SHM_STALLED;
        sched_yield();
    }
    return FOEHN_SHM_COPIED;
}
