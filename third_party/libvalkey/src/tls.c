/*
 * Copyright (c) 2009-2011, Salvatore Sanfilippo <antirez at gmail dot com>
 * Copyright (c) 2010-2011, Pieter Noordhuis <pcnoordhuis at gmail dot com>
 * Copyright (c) 2019, Redis Labs
 *
 * All rights reserved.
 *
 * Redistribution and use in source and binary forms, with or without
 * modification, are permitted provided that the following conditions are met:
 *
 *   * Redistributions of source code must retain the above copyright notice,
 *     this list of conditions and the following disclaimer.
 *   * Redistributions in binary form must reproduce the above copyright
 *     notice, this list of conditions and the following disclaimer in the
 *     documentation and/or other materials provided with the distribution.
 *   * Neither the name of Redis nor the names of its contributors may be used
 *     to endorse or promote products derived from this software without
 *     specific prior written permission.
 *
 * THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
 * AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
 * IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
 * ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE
 * LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
 * CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
 * SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
 * INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
 * CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
 * ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 * POSSIBILITY OF SUCH DAMAGE.
 */

#include "async.h"
#include "net.h"
#include "valkey.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#ifdef _WIN32
/* clang-format off */
// wincrypt.h need macro defined in windows.h
#include <windows.h>
#include <wincrypt.h>
/* clang-format on */
#ifdef OPENSSL_IS_BORINGSSL
#undef X509_NAME
#undef X509_EXTENSIONS
#undef PKCS7_ISSUER_AND_SERIAL
#undef PKCS7_SIGNER_INFO
#undef OCSP_REQUEST
#undef OCSP_RESPONSE
#endif
#else
#include <pthread.h>
#endif

#include "win32.h"

#include "async_private.h"
#include "tls.h"
#include "valkey_private.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#define OPENSSL_1_1_0 0x10100000L

struct valkeyTLSContext {
    /* Associated OpenSSL SSL_CTX as created by valkeyCreateTLSContext() */
    SSL_CTX *ssl_ctx;

    /* Requested SNI, or NULL */
    char *server_name;
};

/* The TLS connection context is attached to TLS connections as a privdata. */
typedef struct valkeyTLS {
    /**
     * OpenSSL SSL object.
     */
    SSL *ssl;

    /**
     * SSL_write() requires to be called again with the same arguments it was
     * previously called with in the event of an SSL_read/SSL_write situation
     */
    size_t lastLen;

    /** Whether the SSL layer requires read (possibly before a write) */
    int wantRead;

    /**
     * Whether a write was requested prior to a read. If set, the write()
     * should resume whenever a read takes place, if possible
     */
    int pendingWrite;
} valkeyTLS;

/* Forward declaration */
static valkeyContextFuncs valkeyContextTLSFuncs;

/**
 * OpenSSL global initialization and locking handling callbacks.
 * Note that this is only required for OpenSSL < 1.1.0.
 */

#if OPENSSL_VERSION_NUMBER < OPENSSL_1_1_0
#define VALKEY_USE_CRYPTO_LOCKS
#endif

#ifdef VALKEY_USE_CRYPTO_LOCKS
#ifdef _WIN32
typedef CRITICAL_SECTION sslLockType;
static void sslLockInit(sslLockType *l) {
    InitializeCriticalSection(l);
}
static void sslLockAcquire(sslLockType *l) {
    EnterCriticalSection(l);
}
static void sslLockRelease(sslLockType *l) {
    LeaveCriticalSection(l);
}
#else
typedef pthread_mutex_t sslLockType;
static void sslLockInit(sslLockType *l) {
    pthread_mutex_init(l, NULL);
}
static void sslLockAcquire(sslLockType *l) {
    pthread_mutex_lock(l);
}
static void sslLockRelease(sslLockType *l) {
    pthread_mutex_unlock(l);
}
#endif

static sslLockType *ossl_locks;

static void opensslDoLock(int mode, int lkid, const char *f, int line) {
    sslLockType *l = ossl_locks + lkid;

    if (mode & CRYPTO_LOCK) {
        sslLockAcquire(l);
    } else {
        sslLockRelease(l);
    }

    (void)f;
    (void)line;
}

static int initOpensslLocks(void) {
    unsigned ii, nlocks;
    if (CRYPTO_get_locking_callback() != NULL) {
        /* Someone already set the callback before us. Don't destroy it! */
        return VALKEY_OK;
    }
    nlocks = CRYPTO_num_locks();
    ossl_locks = vk_malloc(sizeof(*ossl_locks) * nlocks);
    if (ossl_locks == NULL)
        return VALKEY_ERR;

    for (ii = 0; ii < nlocks; ii++) {
        sslLockInit(ossl_locks + ii);
    }
    CRYPTO_set_locking_callback(opensslDoLock);
    return VALKEY_OK;
}
#endif /* VALKEY_USE_CRYPTO_LOCKS */

int valkeyInitOpenSSL(void) {
#ifdef VALKEY_USE_CRYPTO_LOCKS
    SSL_library_init();
    initOpensslLocks();
#endif

    return VALKEY_OK;
}

/**
 * valkeyTLSContext helper context destruction.
 */

const char *valkeyTLSContextGetError(valkeyTLSContextError error) {
    switch (error) {
    case VALKEY_TLS_CTX_NONE:
        return "No Error";
    case VALKEY_TLS_CTX_CREATE_FAILED:
        return "Failed to create OpenSSL SSL_CTX";
    case VALKEY_TLS_CTX_CERT_KEY_REQUIRED:
        return "Client cert and key must both be specified or skipped";
    case VALKEY_TLS_CTX_CA_CERT_LOAD_FAILED:
        return "Failed to load CA Certificate or CA Path";
    case VALKEY_TLS_CTX_CLIENT_CERT_LOAD_FAILED:
        return "Failed to load client certificate";
    case VALKEY_TLS_CTX_PRIVATE_KEY_LOAD_FAILED:
        return "Failed to load private key";
    case VALKEY_TLS_CTX_OS_CERTSTORE_OPEN_FAILED:
        return "Failed to open system certificate store";
    case VALKEY_TLS_CTX_OS_CERT_ADD_FAILED:
        return "Failed to add CA certificates obtained from system to the TLS context";
    default:
        return "Unknown error code";
    }
}

void valkeyFreeTLSContext(valkeyTLSContext *ctx) {
    if (!ctx)
        return;

    if (ctx->server_name) {
        vk_free(ctx->server_name);
        ctx->server_name = NULL;
    }

    if (ctx->ssl_ctx) {
        SSL_CTX_free(ctx->ssl_ctx);
        ctx->ssl_ctx = NULL;
    }

    vk_free(ctx);
}

/**
 * valkeyTLSContext helper context initialization.
 */

valkeyTLSContext *valkeyCreateTLSContext(const char *cacert_filename, const char *capath,
                                         const char *cert_filename, const char *private_key_filename,
                                         const char *server_name, valkeyTLSContextError *error) {
    valkeyTLSOptions options = {
        .cacert_filename = cacert_filename,
        .capath = capath,
        .cert_filename = cert_filename,
        .private_key_filename = private_key_filename,
        .server_name = server_name,
        .verify_mode = VALKEY_TLS_VERIFY_PEER,
    };

    return valkeyCreateTLSContextWithOptions(&options, error);
}

valkeyTLSContext *valkeyCreateTLSContextWithOptions(valkeyTLSOptions *options, valkeyTLSContextError *error) {
    const char *cacert_filename = options->cacert_filename;
    const char *capath = options->capath;
    const char *cert_filename = options->cert_filename;
    const char *private_key_filename = options->private_key_filename;
    const char *server_name = options->server_name;

#ifdef _WIN32
    HCERTSTORE win_store = NULL;
    PCCERT_CONTEXT win_ctx = NULL;
#endif

    valkeyTLSContext *ctx = vk_calloc(1, sizeof(valkeyTLSContext));
    if (ctx == NULL)
        goto error;

    const SSL_METHOD *ssl_method;
#if OPENSSL_VERSION_NUMBER >= OPENSSL_1_1_0
    ssl_method = TLS_client_method();
#else
    ssl_method = SSLv23_client_method();
#endif

    ctx->ssl_ctx = SSL_CTX_new(ssl_method);
    if (!ctx->ssl_ctx) {
        if (error)
            *error = VALKEY_TLS_CTX_CREATE_FAILED;
        goto error;
    }

#if OPENSSL_VERSION_NUMBER >= OPENSSL_1_1_0
    SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION);
#else
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1);
#endif

    SSL_CTX_set_verify(ctx->ssl_ctx, options->verify_mode, NULL);

    if ((cert_filename != NULL && private_key_filename == NULL) ||
        (private_key_filename != NULL && cert_filename == NULL)) {
        if (error)
            *error = VALKEY_TLS_CTX_CERT_KEY_REQUIRED;
        goto error;
    }

    if (capath || cacert_filename) {
#ifdef _WIN32
        if (0 == strcmp(cacert_filename, "wincert")) {
            win_store = CertOpenSystemStore(NULL, "Root");
            if (!win_store) {
                if (error)
                    *error = VALKEY_TLS_CTX_OS_CERTSTORE_OPEN_FAILED;
                goto error;
            }
            X509_STORE *store = SSL_CTX_get_cert_store(ctx->ssl_ctx);
            while (win_ctx = CertEnumCertificatesInStore(win_store, win_ctx)) {
                X509 *x509 = NULL;
                x509 = d2i_X509(NULL, (const unsigned char **)&win_ctx->pbCertEncoded, win_ctx->cbCertEncoded);
                if (x509) {
                    if ((1 != X509_STORE_add_cert(store, x509)) ||
                        (1 != SSL_CTX_add_client_CA(ctx->ssl_ctx, x509))) {
                        if (error)
                            *error = VALKEY_TLS_CTX_OS_CERT_ADD_FAILED;
                        goto error;
                    }
                    X509_free(x509);
                }
            }
            CertFreeCertificateContext(win_ctx);
            CertCloseStore(win_store, 0);
        } else
#endif
            if (!SSL_CTX_load_verify_locations(ctx->ssl_ctx, cacert_filename, capath)) {
            if (error)
                *error = VALKEY_TLS_CTX_CA_CERT_LOAD_FAILED;
            goto error;
        }
    } else {
        if (!SSL_CTX_set_default_verify_paths(ctx->ssl_ctx)) {
            if (error)
                *error = VALKEY_TLS_CTX_CLIENT_DEFAULT_CERT_FAILED;
            goto error;
        }
    }

    if (cert_filename) {
        if (!SSL_CTX_use_certificate_chain_file(ctx->ssl_ctx, cert_filename)) {
            if (error)
                *error = VALKEY_TLS_CTX_CLIENT_CERT_LOAD_FAILED;
            goto error;
        }
        if (!SSL_CTX_use_PrivateKey_file(ctx->ssl_ctx, private_key_filename, SSL_FILETYPE_PEM)) {
            if (error)
                *error = VALKEY_TLS_CTX_PRIVATE_KEY_LOAD_FAILED;
            goto error;
        }
    }

    if (server_name)
        ctx->server_name = vk_strdup(server_name);

    return ctx;

error:
#ifdef _WIN32
    CertFreeCertificateContext(win_ctx);
    CertCloseStore(win_store, 0);
#endif
    valkeyFreeTLSContext(ctx);
    return NULL;
}

/**
 * TLS Connection initialization.
 */

static int valkeyTLSConnect(valkeyContext *c, SSL *ssl) {
    if (c->privctx) {
        valkeySetError(c, VALKEY_ERR_OTHER, "valkeyContext was already associated");
        return VALKEY_ERR;
    }

    valkeyTLS *rssl = vk_calloc(1, sizeof(valkeyTLS));
    if (rssl == NULL) {
        valkeySetError(c, VALKEY_ERR_OOM, "Out of memory");
        return VALKEY_ERR;
    }

    rssl->ssl = ssl;

    SSL_set_mode(rssl->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_fd(rssl->ssl, c->fd);
    SSL_set_connect_state(rssl->ssl);

    ERR_clear_error();

    int rv = SSL_connect(rssl->ssl);
    if (rv == 1) {
        c->funcs = &valkeyContextTLSFuncs;
        c->privctx = rssl;
        return VALKEY_OK;
    }

    rv = SSL_get_error(rssl->ssl, rv);
    if (((c->flags & VALKEY_BLOCK) == 0) &&
        (rv == SSL_ERROR_WANT_READ || rv == SSL_ERROR_WANT_WRITE)) {
        c->funcs = &valkeyContextTLSFuncs;
        c->privctx = rssl;
        return VALKEY_OK;
    }

    if (c->err == 0) {
        if (rv == SSL_ERROR_SYSCALL)
            valkeySetErrorFromErrno(c, VALKEY_ERR_IO, "SSL_connect failed");
        else {
            unsigned long e = ERR_peek_last_error();
            char err[512];
            snprintf(err, sizeof(err), "SSL_connect failed: %s",
                     ERR_reason_error_string(e));
            valkeySetError(c, VALKEY_ERR_IO, err);
        }
    }

    vk_free(rssl);
    return VALKEY_ERR;
}

/**
 * A wrapper around valkeyTLSConnect() for users who manage their own context and
 * create their own OpenSSL SSL object.
 */

int valkeyInitiateTLS(valkeyContext *c, SSL *ssl) {
    return valkeyTLSConnect(c, ssl);
}

/**
 * A wrapper around valkeyTLSConnect() for users who use valkeyTLSContext and don't
 * manage their own OpenSSL SSL objects.
 */

int valkeyInitiateTLSWithContext(valkeyContext *c, valkeyTLSContext *valkey_tls_ctx) {
    if (!c || !valkey_tls_ctx)
        return VALKEY_ERR;

    /* We want to verify that valkeyTLSConnect() won't fail on this, as it will
     * not own the OpenSSL SSL object in that case and we'll end up leaking.
     */
    if (c->privctx)
        return VALKEY_ERR;

    SSL *ssl = SSL_new(valkey_tls_ctx->ssl_ctx);
    if (!ssl) {
        valkeySetError(c, VALKEY_ERR_OTHER, "Couldn't create new TLS instance");
        goto error;
    }

    if (valkey_tls_ctx->server_name) {
        if (!SSL_set_tlsext_host_name(ssl, valkey_tls_ctx->server_name)) {
            valkeySetError(c, VALKEY_ERR_OTHER, "Failed to set server_name/SNI");
            goto error;
        }
    }

    if (valkeyTLSConnect(c, ssl) != VALKEY_OK) {
        goto error;
    }

    return VALKEY_OK;

error:
    if (ssl)
        SSL_free(ssl);
    return VALKEY_ERR;
}

static int maybeCheckWant(valkeyTLS *rssl, int rv) {
    /**
     * If the error is WANT_READ or WANT_WRITE, the appropriate flags are set
     * and true is returned. False is returned otherwise
     */
    if (rv == SSL_ERROR_WANT_READ) {
        rssl->wantRead = 1;
        return 1;
    } else if (rv == SSL_ERROR_WANT_WRITE) {
        rssl->pendingWrite = 1;
        return 1;
    } else {
        return 0;
    }
}

/**
 * Implementation of valkeyContextFuncs for TLS connections.
 */

static void valkeyTLSFree(void *privctx) {
    valkeyTLS *rsc = privctx;

    if (!rsc)
        return;
    if (rsc->ssl) {
        SSL_free(rsc->ssl);
        rsc->ssl = NULL;
    }
    vk_free(rsc);
}

static ssize_t valkeyTLSRead(valkeyContext *c, char *buf, size_t bufcap) {
    valkeyTLS *rssl = c->privctx;

    int nread = SSL_read(rssl->ssl, buf, bufcap);
    if (nread > 0) {
        return nread;
    } else if (nread == 0) {
        valkeySetError(c, VALKEY_ERR_EOF, "Server closed the connection");
        return -1;
    } else {
        int err = SSL_get_error(rssl->ssl, nread);
        if (c->flags & VALKEY_BLOCK) {
            /**
             * In blocking mode, we should never end up in a situation where
             * we get an error without it being an actual error, except
             * in the case of EINTR, which can be spuriously received from
             * debuggers or whatever.
             */
            if (errno == EINTR) {
                return 0;
            } else if (errno == EAGAIN) {
                valkeySetError(c, VALKEY_ERR_IO, "Resource temporarily unavailable");
                return -1;
            } else {
                valkeySetErrorFromErrno(c, VALKEY_ERR_IO, NULL);
                return -1;
            }
        }

        /**
         * We can very well get an EWOULDBLOCK/EAGAIN, however
         */
        if (maybeCheckWant(rssl, err)) {
            return 0;
        } else {
            valkeySetErrorFromErrno(c, VALKEY_ERR_IO, NULL);
            return -1;
        }
    }
}

static ssize_t valkeyTLSWrite(valkeyContext *c) {
    valkeyTLS *rssl = c->privctx;

    size_t len = rssl->lastLen ? rssl->lastLen : sdslen(c->obuf);
    int rv = SSL_write(rssl->ssl, c->obuf, len);

    if (rv > 0) {
        rssl->lastLen = 0;
    } else if (rv < 0) {
        rssl->lastLen = len;

        int err = SSL_get_error(rssl->ssl, rv);
        if ((c->flags & VALKEY_BLOCK) == 0 && maybeCheckWant(rssl, err)) {
            return 0;
        } else {
            valkeySetErrorFromErrno(c, VALKEY_ERR_IO, NULL);
            return -1;
        }
    }
    return rv;
}

static void valkeyTLSAsyncRead(valkeyAsyncContext *ac) {
    int rv;
    valkeyTLS *rssl = ac->c.privctx;
    valkeyContext *c = &ac->c;

    rssl->wantRead = 0;

    if (rssl->pendingWrite) {
        int done;

        /* This is probably just a write event */
        rssl->pendingWrite = 0;
        rv = valkeyBufferWrite(c, &done);
        if (rv == VALKEY_ERR) {
            valkeyAsyncDisconnectInternal(ac);
            return;
        } else if (!done) {
            _EL_ADD_WRITE(ac);
        }
    }

    rv = valkeyBufferRead(c);
    if (rv == VALKEY_ERR) {
        valkeyAsyncDisconnectInternal(ac);
    } else {
        _EL_ADD_READ(ac);
        valkeyProcessCallbacks(ac);
    }
}

static void valkeyTLSAsyncWrite(valkeyAsyncContext *ac) {
    int rv, done = 0;
    valkeyTLS *rssl = ac->c.privctx;
    valkeyContext *c = &ac->c;

    rssl->pendingWrite = 0;
    rv = valkeyBufferWrite(c, &done);
    if (rv == VALKEY_ERR) {
        valkeyAsyncDisconnectInternal(ac);
        return;
    }

    if (!done) {
        if (rssl->wantRead) {
            /* Need to read-before-write */
            rssl->pendingWrite = 1;
            _EL_DEL_WRITE(ac);
        } else {
            /* No extra reads needed, just need to write more */
            _EL_ADD_WRITE(ac);
        }
    } else {
        /* Already done! */
        _EL_DEL_WRITE(ac);
    }

    /* Always reschedule a read */
    _EL_ADD_READ(ac);
}

static valkeyContextFuncs valkeyContextTLSFuncs = {
    .connect = valkeyContextConnectTcp,
    .close = valkeyNetClose,
    .free_privctx = valkeyTLSFree,
    .async_read = valkeyTLSAsyncRead,
    .async_write = valkeyTLSAsyncWrite,
    .read = valkeyTLSRead,
    .write = valkeyTLSWrite,
    .set_timeout = valkeyTcpSetTimeout,
};
