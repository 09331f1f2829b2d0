/*
 * fail_socket_table.c - an LD_PRELOAD shim for review_spec.lua: the first
 * realloc(NULL, 128) made from truedy.so returns NULL.  That is the first
 * growth of the engine's socket table (16 entries of 8 bytes) in
 * CURLMOPT_SOCKETFUNCTION, when libcurl announces the first socket.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

void *realloc(void *p, size_t n);

void *realloc(void *p, size_t n) {
    static void *(*real_realloc)(void *, size_t);
    static int failed;
    Dl_info info;
    if (real_realloc == NULL)
        *(void **)&real_realloc = dlsym(RTLD_NEXT, "realloc");
    if (!failed && p == NULL && n == 128 && dladdr(__builtin_return_address(0), &info) &&
        info.dli_fname != NULL && strstr(info.dli_fname, "truedy.so") != NULL) {
        failed = 1;
        return NULL;
    }
    return real_realloc(p, n);
}
