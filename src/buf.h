/* The one growable byte buffer of tpops: bounded appends, printf, wipe. */
#ifndef TPOPS_BUF_H
#define TPOPS_BUF_H
#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data; /* always NUL-terminated after data[len] once allocated */
	size_t len;
	size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_append_char(struct buf *b, char c);
__attribute__((format(printf, 2, 3))) void buf_printf(struct buf *b, const char *fmt, ...);
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_truncate(struct buf *b, size_t len);
/* Returns the string and leaves b empty; the caller frees it. */
char *buf_steal(struct buf *b);
/* Frees the storage; buf_wipe first overwrites it (passwords). */
void buf_free(struct buf *b);
void buf_wipe(struct buf *b);
const char *buf_cstr(struct buf *b);

/* Formats into a fixed array; truncates and returns -1 when it does not fit. */
__attribute__((format(printf, 3, 4))) int str_format(char *dst, size_t size, const char *fmt, ...);
/* Copies with truncation check: -1 when src does not fit. */
int str_copy(char *dst, size_t size, const char *src);

#endif
