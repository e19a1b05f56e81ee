/* Incremental message -> POP3 wire filter: CRLF, dot-stuffing, TOP cut. */
#include "pop3_out.h"

#include <string.h>

/* Feeding and counting share one state machine so that the size LIST
 * reports can never differ from what RETR sends. The sink either copies
 * (buf != NULL) or only counts. */
struct sink {
	char *buf;
	uint64_t len;
};

static inline void put(struct sink *s, const char *data, size_t n)
{
	if (s->buf != NULL)
		memcpy(s->buf + s->len, data, n);
	s->len += n;
}

void pop3_out_init(struct pop3_out *f, bool dot_stuff, int64_t top_lines)
{
	f->dot_stuff = dot_stuff;
	f->top_lines = top_lines < 0 ? -1 : top_lines;
	f->at_line_start = true;
	f->pending_cr = false;
	f->in_header = true;
	f->done = false;
	f->body_lines_sent = 0;
}

/* One line end goes out; the header/body bookkeeping of TOP happens here
 * because a line only counts once it is complete. */
static void end_line(struct pop3_out *f, struct sink *s)
{
	bool empty = f->at_line_start;

	put(s, "\r\n", 2);
	f->at_line_start = true;
	if (f->in_header) {
		if (empty) {
			f->in_header = false;
			if (f->top_lines == 0)
				f->done = true;
		}
	} else {
		f->body_lines_sent++;
		if (f->top_lines >= 0 && f->body_lines_sent >= f->top_lines)
			f->done = true;
	}
}

/* Line content goes out: the '.' of dot-stuffing is decided by the first
 * content octet of a line, whichever chunk held the line start. */
static void put_content(struct pop3_out *f, struct sink *s, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (f->at_line_start) {
		if (f->dot_stuff && p[0] == '.')
			put(s, ".", 1);
		f->at_line_start = false;
	}
	put(s, p, n);
}

/* Works a line at a time: memchr finds the LF, and everything before it
 * is copied in one go. A CR only matters right before an LF (then it is
 * part of the line end) or at the end of a chunk (then the next chunk
 * decides), so CRs in the middle of a line need no search of their own. */
static void run(struct pop3_out *f, const char *in, size_t n, struct sink *s)
{
	const char *p = in;
	const char *end = in + n;

	while (p < end && !f->done) {
		if (f->pending_cr) {
			f->pending_cr = false;
			if (*p == '\n') {
				p++;
				end_line(f, s);
				continue;
			}
			/* A bare CR is line content, sent as is. */
			put_content(f, s, "\r", 1);
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl != NULL ? nl : end;
		size_t len = (size_t)(stop - p);
		bool cr_last = len > 0 && stop[-1] == '\r';
		/* Before an LF the CR belongs to the CRLF; at the chunk end it
		 * is held back until the next octet shows which it is. */
		put_content(f, s, p, cr_last ? len - 1 : len);
		if (nl == NULL) {
			f->pending_cr = cr_last;
			break;
		}
		p = nl + 1;
		end_line(f, s);
	}
}

/* run() for a whole message (no TOP cut) into a buffer, in one tight
 * loop: RETR spends its time on lines of 60-80 octets, where the calls
 * and the sink of run() per line cost more than copying the line. Same
 * rules, same state (the header/body count only matters for TOP and is
 * not kept). */
static size_t feed_whole(struct pop3_out *f, const char *in, size_t n, char *out)
{
	const char *p = in;
	const char *end = in + n;
	char *o = out;

	if (f->pending_cr && p < end) {
		f->pending_cr = false;
		if (*p == '\n') {
			p++;
			*o++ = '\r';
			*o++ = '\n';
			f->at_line_start = true;
		} else { /* a bare CR is line content */
			*o++ = '\r';
			f->at_line_start = false;
		}
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *stop = nl != NULL ? nl : end;
		size_t len = (size_t)(stop - p);
		bool cr_last = len > 0 && stop[-1] == '\r';
		size_t content = cr_last ? len - 1 : len;
		if (content > 0) {
			if (f->at_line_start && f->dot_stuff && *p == '.')
				*o++ = '.';
			memcpy(o, p, content);
			o += content;
			f->at_line_start = false;
		}
		if (nl == NULL) {
			f->pending_cr = cr_last; /* the next octet tells */
			break;
		}
		*o++ = '\r';
		*o++ = '\n';
		f->at_line_start = true;
		p = nl + 1;
	}
	return (size_t)(o - out);
}

size_t pop3_out_feed(struct pop3_out *f, const char *in, size_t n, char *out)
{
	if (f->top_lines < 0)
		return feed_whole(f, in, n, out);
	struct sink s = { out, 0 };
	run(f, in, n, &s);
	return (size_t)s.len;
}

uint64_t pop3_out_count(struct pop3_out *f, const char *in, size_t n)
{
	struct sink s = { NULL, 0 };
	run(f, in, n, &s);
	return s.len;
}

static void finish(struct pop3_out *f, struct sink *s)
{
	if (!f->done) {
		/* A CR at the very end had no LF after it: it is content. */
		if (f->pending_cr) {
			f->pending_cr = false;
			put_content(f, s, "\r", 1);
		}
		if (!f->at_line_start)
			end_line(f, s);
	}
	if (f->dot_stuff)
		put(s, ".\r\n", 3);
}

size_t pop3_out_finish(struct pop3_out *f, char *out)
{
	struct sink s = { out, 0 };
	finish(f, &s);
	return (size_t)s.len;
}

uint64_t pop3_out_count_finish(struct pop3_out *f)
{
	struct sink s = { NULL, 0 };
	finish(f, &s);
	return s.len;
}

bool pop3_out_passthrough(struct pop3_out *f, const char *in, size_t n)
{
	/* TOP counts header and body lines; only whole messages qualify, so
	 * in_header and body_lines_sent need no upkeep here */
	if (n == 0 || f->done || f->top_lines >= 0 || f->pending_cr || in[n - 1] == '\r')
		return false;
	if (f->at_line_start && ((f->dot_stuff && in[0] == '.') || in[0] == '\n'))
		return false;
	const char *p = in, *end = in + n;
	while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (p == in || p[-1] != '\r')
			return false; /* a bare LF becomes CRLF */
		p++;
		if (p < end && f->dot_stuff && *p == '.')
			return false; /* a line that starts with '.' gets stuffed */
	}
	f->at_line_start = in[n - 1] == '\n';
	return true;
}

bool pop3_out_done(const struct pop3_out *f)
{
	return f->done;
}

uint64_t pop3_wire_size(const char *msg, size_t n)
{
	struct pop3_out f;

	pop3_out_init(&f, false, -1);
	return pop3_out_count(&f, msg, n) + pop3_out_count_finish(&f);
}
