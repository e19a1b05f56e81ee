/* Allocators that never return NULL: out of memory ends the process. */
#ifndef TPOPS_XALLOC_H
#define TPOPS_XALLOC_H
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
/* free() after overwriting len bytes with zeros the compiler keeps. */
void free_secret(void *p, size_t len);
void wipe(void *p, size_t len);

#endif
