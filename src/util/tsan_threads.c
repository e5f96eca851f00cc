/*
 * tsan_threads.c - C11 threads over pthreads, in ThreadSanitizer builds only.
 *
 * librdkafka starts its threads and takes its locks through C11 <threads.h>
 * (thrd_create, mtx_lock, cnd_wait, call_once). glibc implements those by
 * calling its pthread functions internally, where no interceptor can see
 * them, and GCC 12's libtsan has no interceptors of its own for them. So
 * under TSan a librdkafka thread is one TSan never registered (its first
 * malloc dereferences an empty allocator cache: SIGSEGV in getaddrinfo on
 * the broker thread), and were it registered its locks would be invisible
 * (every hand-over through them a false race).
 *
 * DESIGN: the executable defines the C11 functions librdkafka imports, each
 * a forward to the pthread function TSan intercepts. A definition in the
 * executable comes first in symbol lookup, so librdkafka's calls land here
 * (an unversioned definition satisfies its GLIBC_2.34 references). The types
 * are glibc's: thrd_t is a pthread_t, mtx_t, cnd_t and once_flag have the
 * pthread objects' layout (asserted below). A thread's int result travels as
 * a pointer, as glibc's thrd_join expects. No header and no tally dependency:
 * nothing calls these by name, and tools/produce.c links this file alone.
 * Outside a TSan build it compiles to nothing.
 */
#if defined(__SANITIZE_THREAD__)

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

#include "util/banned.h"

_Static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is a pthread_t");
_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is a pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is a pthread_cond_t");
_Static_assert(sizeof(once_flag) == sizeof(pthread_once_t), "once_flag is a pthread_once_t");

/* glibc's mapping of pthread errors onto C11 results (thrd_err_map). */
static int result(int err)
{
    switch (err) {
    case 0: return thrd_success;
    case ENOMEM:
    case EAGAIN: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
    }
}

/* What a new thread runs; freed by the thread once read. */
struct start {
    thrd_start_t fn;
    void *arg;
};

static void *run(void *p)
{
    struct start s = *(struct start *)p;

    free(p);
    return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    struct start *s = malloc(sizeof(*s));
    int err;

    if (!s)
        return thrd_nomem;
    s->fn = fn;
    s->arg = arg;
    if ((err = pthread_create(thr, NULL, run, s)) != 0)
        free(s);
    return result(err);
}

int thrd_join(thrd_t thr, int *res)
{
    void *v;
    int err = pthread_join(thr, &v);

    if (err == 0 && res)
        *res = (int)(intptr_t)v;
    return result(err);
}

int thrd_detach(thrd_t thr)
{
    return result(pthread_detach(thr));
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t attr;
    int err;

    pthread_mutexattr_init(&attr);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    err = pthread_mutex_init((pthread_mutex_t *)m, &attr);
    pthread_mutexattr_destroy(&attr);
    return result(err);
}

int mtx_lock(mtx_t *m)
{
    return result(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
    return result(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_unlock(mtx_t *m)
{
    return result(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict deadline)
{
    return result(pthread_mutex_timedlock((pthread_mutex_t *)m, deadline));
}

int cnd_init(cnd_t *c)
{
    return result(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
    return result(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return result(pthread_cond_broadcast((pthread_cond_t *)c));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

/* C11's clock for cnd_timedwait is CLOCK_REALTIME, pthread_cond_t's default. */
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict deadline)
{
    return result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, deadline));
}

void call_once(once_flag *flag, void (*fn)(void))
{
    pthread_once((pthread_once_t *)flag, fn);
}

#endif
