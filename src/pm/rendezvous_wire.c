/* The parts of the rendezvous wire both ends share: tokens and kv-blocks. */
#include "pm/rendezvous_wire.h"

#include "common/random.h"
#include "pm/pm.h"

int rdv_token_decode(const char *hex, unsigned char out[RDV_TOKEN_BYTES])
{
    if (!hex)
        return -1;
    for (size_t i = 0; i < RDV_TOKEN_BYTES; i++) {
        int hi = foehn_hex_value(hex[2 * i]);
        int lo = hi < 0 ? -1 : foehn_hex_value(hex[2 * i + 1]);
        if (lo < 0)
            return -1; /* also stops at a NUL: never reads past a short string */
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return hex[FOEHN_RDV_TOKEN_LEN] == '\0' ? 0 : -1;
}

int rdv_token_equal(const unsigned char a[RDV_TOKEN_BYTES], const unsigned char b[RDV_TOKEN_BYTES])
{
    return foehn_secrets_equal(a, b, RDV_TOKEN_BYTES);
}

static int key_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

int rdv_kv_check(const unsigned char *block, size_t len, const char **why)
{
    if (len < 4) {
        *why = "a key/value block shorter than its count";
        return -1;
    }
    uint32_t count = foehn_get_u32(block);
    size_t pos = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < 1) {
            *why = "a key/value block that ends inside an entry";
            return -1;
        }
        size_t key_len = block[pos++];
        if (key_len == 0 || key_len > FOEHN_PM_KEY_MAX || len - pos < key_len + 4) {
            *why = "a key of a bad length";
            return -1;
        }
        for (size_t k = 0; k < key_len; k++)
            if (!key_char_ok(block[pos + k])) {
                *why = "a key with a character keys may not hold";
                return -1;
            }
        pos += key_len;
        uint32_t value_len = foehn_get_u32(block + pos);
        pos += 4;
        if (value_len > FOEHN_PM_VALUE_MAX || len - pos < value_len) {
            *why = "a value of a bad length";
            return -1;
        }
        pos += value_len;
    }
    if (pos != len) {
        *why = "bytes after the last key/value entry";
        return -1;
    }
    return 0;
}

void rdv_kv_next(const unsigned char *block, size_t *pos, const unsigned char **key,
                 size_t *key_len, const unsigned char **value, size_t *value_len)
{
    size_t p = *pos;
    *key_len = block[p++];
    *key = block + p;
    p += *key_len;
    *value_len = foehn_get_u32(block + p);
    p += 4;
    *value = block + p;
    *pos = p + *value_len;
}
