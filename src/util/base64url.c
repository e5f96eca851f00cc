/*
 * base64url.c - see base64url.h.
 *
 * DESIGN: the alphabet is mapped to standard base64 and padded, then OpenSSL's
 * EVP_DecodeBlock decodes it: no decoding table of tally's own. EVP_DecodeBlock
 * counts padding as zero bytes, which are taken off again.
 */
#include "util/base64url.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "util/xmalloc.h"
#include "util/banned.h"

long base64url_decode(const char *s, size_t n, unsigned char *out, size_t max)
{
    size_t padded = (n + 3) / 4 * 4, pad = padded - n;
    char *buf;
    long len = -1;

    if (n == 0 || pad == 3 || padded > (size_t)INT_MAX || padded / 4 * 3 - pad > max)
        return -1;
    buf = xmalloc(padded);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            goto out; /* '+', '/', '=' too: one spelling per value */
        buf[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    memset(buf + n, '=', pad);
    /* EVP_DecodeBlock writes padded / 4 * 3 bytes, padding included: decode aside when the
     * caller's room holds only the bytes that count. */
    if (padded / 4 * 3 <= max) {
        len = EVP_DecodeBlock(out, (const unsigned char *)buf, (int)padded);
    } else {
        unsigned char *tmp = xmalloc(padded / 4 * 3);

        len = EVP_DecodeBlock(tmp, (const unsigned char *)buf, (int)padded);
        if (len >= 0)
            memcpy(out, tmp, (size_t)len - pad);
        free(tmp);
    }
    len = len < 0 ? -1 : len - (long)pad;
out:
    free(buf);
    return len;
}
