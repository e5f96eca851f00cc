/*
 * base64url.h - decoding base64url (RFC 4648 section 5, no padding), the encoding of
 * every part of a JWT and of a JWK's numbers and secrets.
 */
#ifndef TALLY_BASE64URL_H
#define TALLY_BASE64URL_H

#include <stddef.h>

/*
 * Decodes the n characters at s into out (room for max bytes). The number of bytes, or -1
 * when s is empty, holds a character outside A-Z a-z 0-9 - _ (padding included), or does
 * not fit in max.
 */
long base64url_decode(const char *s, size_t n, unsigned char *out, size_t max);

#endif
