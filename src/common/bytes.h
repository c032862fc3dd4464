/* Big-endian (network order) integers in byte buffers, for the binary wires. */
#ifndef FOEHN_COMMON_BYTES_H
#define FOEHN_COMMON_BYTES_H

#include <stdint.h>

static inline void foehn_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t foehn_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

#endif
