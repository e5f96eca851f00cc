/*
 * fuzz_url.c - libFuzzer target for the adapters' URL parser and its
 * redaction, which read whatever an operator (or a file named by @PATH) gives.
 *
 * Beyond "no crash, no leak": whenever the parser finds a password, or a
 * user without one (which may be a password in the wrong place), the
 * redacted form hides it, and every option whose name says secret shows
 * "***" for its value.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/strbuf.h"
#include "util/url.h"
#include "util/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = xstrndup((const char *)data, size);
    struct strbuf shown = STRBUF_INIT, want = STRBUF_INIT;
    struct url u;
    const char *why;
    int rc = url_parse((const char *)data, size, &u, &why);

    url_redact(&shown, s);
    if (rc == 0 && u.password && !strstr(shown.buf, ":***@"))
        __builtin_trap();
    if (rc == 0 && u.user && !u.password && !strstr(shown.buf, "://***@"))
        __builtin_trap(); /* a user alone may be a password written in its place */
    for (size_t i = 0; rc == 0 && i < u.nopts; i++) {
        if (!url_is_secret_key(u.opts[i].key, strlen(u.opts[i].key)))
            continue;
        strbuf_reset(&want);
        strbuf_addf(&want, "%s=***", u.opts[i].key);
        if (!strstr(shown.buf, want.buf))
            __builtin_trap();
    }
    url_release(&u);
    strbuf_release(&shown);
    strbuf_release(&want);
    free(s);
    return 0;
}
