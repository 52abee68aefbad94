/* The kernels' one way to run work on several threads: fork-join, included by every header that
 * parallelizes (bulk, datagen, json_decode, json_encode). There is no pool: a kernel call starts its
 * threads and joins them before it returns, so no thread outlives the call whose buffers it reads. */
#ifndef AF_THREADS_H
#define AF_THREADS_H

#include <pthread.h>
#include <stddef.h>

/* Threads one call runs at most, the calling thread included. */
#define AF_MAX_THREADS 64

/* Runs fn once for each of n task arguments, argument t at (char *)args + t * stride (stride 0:
 * every call gets the same argument, e.g. a shared work queue). Task 0 runs on the calling thread,
 * tasks 1 .. min(n, AF_MAX_THREADS) - 1 on threads of their own; a task whose thread could not be
 * started, or past AF_MAX_THREADS, runs on the calling thread after task 0. So every task runs
 * exactly once whatever the OS allows, and the call returns when all have. Called with the GIL
 * released: fn must not touch Python objects. */
static void af_fork_join(void *(*fn)(void *), void *args, size_t stride, int n) {
    pthread_t tids[AF_MAX_THREADS];
    int started[AF_MAX_THREADS];
    int threads = n < AF_MAX_THREADS ? n : AF_MAX_THREADS;
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tids[t], NULL, fn, (char *)args + (size_t)t * stride) == 0;
    if (n > 0) fn(args);
    for (int t = threads; t < n; t++) fn((char *)args + (size_t)t * stride);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            fn((char *)args + (size_t)t * stride);
    }
}

#endif
