/* LMTP (RFC 2033) input -> commands and message octets. Pure: no I/O, no
 * allocation but the message buffer the caller hands in. Both parsers take
 * outside input (whatever connects to the LMTP socket) and are fuzzed
 * (fuzz/fuzz_lmtp_parse.c). */
#ifndef TPOPS_LMTP_PARSE_H
#define TPOPS_LMTP_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Longest command line, without its line end. RFC 5321 4.5.3.1.4 allows
 * 512 octets; MAIL FROM with parameters may be longer, so some room. */
#define LMTP_MAX_LINE 2048
/* Longest forward or reverse path inside its angle brackets (RFC 5321
 * 4.5.3.1.3: 256 octets with the brackets). */
#define LMTP_MAX_PATH 254
/* Recipients of one transaction (RFC 5321 4.5.3.1.8: at least 100). */
#define LMTP_MAX_RECIPIENTS 1000

enum lmtp_verb {
	LMTP_NONE = 0,
	LMTP_LHLO,
	LMTP_MAIL,
	LMTP_RCPT,
	LMTP_DATA,
	LMTP_RSET,
	LMTP_NOOP,
	LMTP_QUIT,
	LMTP_VRFY,
	LMTP_HELO, /* HELO or EHLO: not LMTP (RFC 2033 4.1) */
};

enum lmtp_parse_status {
	LMTP_PARSE_OK = 0,
	LMTP_PARSE_UNKNOWN,   /* not a command: 500 5.5.2 */
	LMTP_PARSE_SYNTAX,    /* a command with bad arguments: 501 5.5.4 */
	LMTP_PARSE_PATH,      /* a path that is malformed or too long: 501 5.1.3 / 5.1.7 */
	LMTP_PARSE_PARAMETER, /* an unknown MAIL/RCPT parameter: 555 5.5.4 */
};

enum lmtp_body { LMTP_BODY_7BIT = 0, LMTP_BODY_8BITMIME };

struct lmtp_command {
	enum lmtp_verb verb;
	/* MAIL and RCPT: the path inside the angle brackets, NUL-terminated,
	 * any source route removed; empty for MAIL FROM:<>. Only printable
	 * ASCII without spaces, so it is safe to log and to put in a header. */
	char path[LMTP_MAX_PATH + 1];
	uint64_t size; /* MAIL SIZE=, 0 when absent */
	enum lmtp_body body;
};

/* One command line (line end removed). */
enum lmtp_parse_status lmtp_parse_command(const char *line, size_t len, struct lmtp_command *cmd);
const char *lmtp_verb_name(enum lmtp_verb verb);

/* The message after DATA's 354, as it arrives: dot-unstuffed (RFC 5321
 * 4.5.2), line ends made LF (the form tpops-store gets from Postfix's
 * pipe and a Maildir keeps), until the line "." that ends it. A bare LF
 * ends a line as CRLF does, the "." line included (as Dovecot's LMTP
 * does); a CR that no LF follows is kept. Octets past max are counted,
 * not kept (too_big). Data lines have no length limit: nothing is held
 * per line. */
struct lmtp_data {
	int state;
	uint64_t max;   /* the most octets kept */
	uint64_t size;  /* octets of the message, kept or not */
	bool too_big;   /* size went past max: what was kept is incomplete */
};

void lmtp_data_start(struct lmtp_data *d, uint64_t max);
/* Consumes input up to and including the end line: returns the octets
 * of in used (fewer than len only when the message ended: what follows
 * is the next command) and sets *done then. Message octets are appended
 * to out. */
size_t lmtp_data_feed(struct lmtp_data *d, const char *in, size_t len, struct buf *out,
		      bool *done);

#endif
