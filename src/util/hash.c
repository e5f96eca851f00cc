/*
 * hash.c - see hash.h.
 */
#include "util/hash.h"

#include <openssl/evp.h>
#include <string.h>

#include "util/xmalloc.h"
#include "util/banned.h"

uint64_t hash64(const char *kind, const void *p, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint64_t h = 0;

    TALLY_ASSERT(ctx);
    TALLY_ASSERT(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                 EVP_DigestUpdate(ctx, kind, strlen(kind) + 1) == 1 &&
                 EVP_DigestUpdate(ctx, p, n) == 1 && EVP_DigestFinal_ex(ctx, md, &len) == 1);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 8; i++)
        h = h << 8 | md[i];
    return h ? h : 1;
}
