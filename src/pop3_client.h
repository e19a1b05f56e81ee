/* The client side of POP3 (RFC 1939), as tpops-import speaks it to another
 * server: a pure parser of what a server sends, with no I/O, so that it can
 * be fuzzed. Everything here is outside input and bounded.
 *
 * Lines end in CRLF; a bare LF is taken as a line end too (old servers). */
#ifndef TPOPS_POP3_CLIENT_H
#define TPOPS_POP3_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "tpops_limits.h"

/* A status line longer than this is not POP3 (RFC 2449: 512 octets). */
#define POP3C_MAX_STATUS 512
/* Lines of UIDL and LIST answers are short; this allows any RFC 1939
 * unique-id and a 20-digit size. */
#define POP3C_MAX_LISTING_LINE 256

/* The length of the first line of data (with its line end), or 0 when
 * data holds no whole line yet. */
size_t pop3c_line_length(const char *data, size_t len);

/* The line without its CRLF or LF. */
size_t pop3c_line_content(const char *line, size_t len);

enum pop3c_status { POP3C_OK, POP3C_ERR, POP3C_BAD };
/* "+OK ..." or "-ERR ..." (line without its end); *text_r points to the
 * text after the status word (may be empty). */
enum pop3c_status pop3c_status(const char *line, size_t len, const char **text_r);

/* One line of a UIDL answer: "NUMBER UIDL" (without its end). False when
 * it is not one (a number 1..POP3_MAX_NUMBER, one space or more, a unique-id
 * of 1-70 octets 0x21-0x7E, nothing after it but spaces). */
bool pop3c_uidl_line(const char *line, size_t len, unsigned *number_r,
		     char uidl_r[POP3_MAX_UIDL + 1]);

/* One line of a LIST answer: "NUMBER SIZE" (RFC 1939 allows more after it). */
bool pop3c_list_line(const char *line, size_t len, unsigned *number_r, uint64_t *size_r);

/* A multi-line answer's data, line by line: lines (without their end, as
 * the server sent them) go into out with CRLF after each, a leading '.' is
 * taken off (dot-stuffing), and the line "." ends it. max: the most octets
 * out may hold. */
struct pop3c_multiline {
	struct buf out;
	size_t max;
	bool done;
	bool too_large;
	bool in_line; /* a part of a longer line was fed: no line start yet */
};
/* Feeds one whole line (with its line end), or the rest of one that was
 * fed in parts. true when the answer ended. */
bool pop3c_multiline_line(struct pop3c_multiline *ml, const char *line, size_t len);
/* Feeds a part of a line too long to hold whole (no line end in it). */
void pop3c_multiline_part(struct pop3c_multiline *ml, const char *part, size_t len);

#endif
