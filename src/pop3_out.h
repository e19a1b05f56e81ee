/* Message bytes -> POP3 wire bytes: CRLF line ends, dot-stuffing, the TOP
 * cut, and the final CRLF. Pure and incremental: a message may be fed in
 * pieces of any size, split anywhere (even between CR and LF). */
#ifndef TPOPS_POP3_OUT_H
#define TPOPS_POP3_OUT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rules, the same for feeding and for counting:
 * - LF and CRLF both become CRLF; a CR not followed by LF is sent as is.
 * - A last line without a line end gets CRLF; an empty message stays empty.
 * - With dot_stuff, a line that starts with '.' gets one more '.' in front.
 * - The header ends at the first empty line. With top_lines >= 0 (TOP n k),
 *   output stops after the header, the empty line and k body lines; a
 *   message without an empty line is all header.
 * The size of a message as STAT/LIST report it is what the filter produces
 * with dot_stuff off and top_lines -1. */
struct pop3_out {
	bool dot_stuff;
	int64_t top_lines; /* -1: whole message */
	/* state */
	bool at_line_start;
	bool pending_cr;  /* a CR seen, not yet known whether LF follows */
	bool in_header;
	bool done;        /* TOP limit reached: further input is ignored */
	int64_t body_lines_sent;
};

/* Worst-case output of pop3_out_feed for n input octets. */
#define POP3_OUT_MAX(n) (2 * (size_t)(n) + 8)
/* Worst-case output of pop3_out_finish. */
#define POP3_OUT_FINISH_MAX 8

void pop3_out_init(struct pop3_out *f, bool dot_stuff, int64_t top_lines);

/* Converts n input octets; out must have room for POP3_OUT_MAX(n).
 * Returns the number of octets written. */
size_t pop3_out_feed(struct pop3_out *f, const char *in, size_t n, char *out);

/* Ends the message: a pending CR, the final CRLF a last line lacks, and
 * with dot_stuff the terminating ".\r\n". Returns octets written. */
size_t pop3_out_finish(struct pop3_out *f, char *out);

/* The fast path of RETR: when feeding in[0..n) would produce exactly the
 * same octets (CRLF line ends only, no line starting with '.', no CR at
 * the end, no TOP cut), advances the state as feeding would and returns
 * true, so that the caller sends its buffer as is; else changes nothing
 * and returns false. */
bool pop3_out_passthrough(struct pop3_out *f, const char *in, size_t n);

/* True once a TOP limit is reached and no more input can change output. */
bool pop3_out_done(const struct pop3_out *f);

/* Counting without output: the octets pop3_out_feed/finish would write. */
uint64_t pop3_out_count(struct pop3_out *f, const char *in, size_t n);
uint64_t pop3_out_count_finish(struct pop3_out *f);

/* The STAT/LIST size of a whole message held in memory. */
uint64_t pop3_wire_size(const char *msg, size_t n);

#endif
