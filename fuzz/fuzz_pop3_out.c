/* libFuzzer target: pop3_out invariants (chunking, counting, bounds, wire form). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_out.h"

#include "fuzz_check.h"

/* An independent whole-message model of the rules in pop3_out.h. */
static size_t reference(const uint8_t *in, size_t n, bool dot, int64_t top, char *out)
{
	size_t o = 0;
	size_t i = 0;
	bool header = true;
	int64_t body = 0;

	while (i < n) {
		size_t j = i;
		while (j < n && in[j] != '\n')
			j++;
		bool has_lf = j < n;
		size_t clen = j - i;
		if (has_lf && clen > 0 && in[j - 1] == '\r')
			clen--;
		if (dot && clen > 0 && in[i] == '.')
			out[o++] = '.';
		memcpy(out + o, in + i, clen);
		o += clen;
		out[o++] = '\r';
		out[o++] = '\n';
		i = has_lf ? j + 1 : n;
		if (header) {
			if (clen == 0) {
				header = false;
				if (top == 0)
					break;
			}
		} else {
			body++;
			if (top >= 0 && body >= top)
				break;
		}
	}
	if (dot) {
		memcpy(out + o, ".\r\n", 3);
		o += 3;
	}
	return o;
}

/* Feeds msg in pieces of sizes from a small generator seeded by seed
 * (seed 0: one piece), checking the per-call bounds and that counting
 * with a twin filter gives the same lengths. */
static size_t run_chunked(const uint8_t *msg, size_t n, bool dot, int64_t top, unsigned seed,
			  char *out)
{
	struct pop3_out f, c;
	size_t o = 0;
	size_t pos = 0;
	unsigned x = seed;

	pop3_out_init(&f, dot, top);
	pop3_out_init(&c, dot, top);
	while (pos < n) {
		size_t piece = n - pos;
		if (seed != 0) {
			x = x * 1103515245u + 12345u;
			piece = (x >> 16) % ((seed & 31) + 2); /* 0 .. 32: empty pieces too */
			if (piece > n - pos)
				piece = n - pos;
		}
		const char *p = (const char *)msg + pos;
		bool was_done = pop3_out_done(&f);
		/* The RETR fast path: when it says the piece passes unchanged,
		 * feeding must indeed copy it, and its state must be the one
		 * feeding leaves (the run goes on from either). */
		struct pop3_out probe = f;
		bool same = pop3_out_passthrough(&probe, p, piece);
		size_t w = pop3_out_feed(&f, p, piece, out + o);
		if (same) {
			CHECK(w == piece && memcmp(out + o, p, piece) == 0);
			CHECK(probe.at_line_start == f.at_line_start && !f.pending_cr && !f.done);
			if (x & 1)
				f = probe;
		}
		CHECK(w <= POP3_OUT_MAX(piece));
		CHECK(pop3_out_count(&c, p, piece) == w);
		CHECK(pop3_out_done(&f) == pop3_out_done(&c));
		/* Once done, input must not change the output any more. */
		if (was_done)
			CHECK(w == 0);
		if (pop3_out_done(&f))
			CHECK(top >= 0);
		o += w;
		pos += piece;
	}
	size_t w = pop3_out_finish(&f, out + o);
	CHECK(w <= POP3_OUT_FINISH_MAX);
	CHECK(pop3_out_count_finish(&c) == w);
	return o + w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* data[0]: bit 0 dot_stuff, bits 1-3 TOP line count (7: whole
	 * message); data[1]: chunking seed. The rest is the message. */
	bool dot = data[0] & 1;
	unsigned t = (data[0] >> 1) & 7;
	int64_t top = t == 7 ? -1 : (int64_t)t;
	unsigned seed = data[1];
	const uint8_t *msg = data + 2;
	size_t n = size - 2;
	size_t cap = POP3_OUT_MAX(n) + POP3_OUT_FINISH_MAX;
	char *one = malloc(cap);
	char *got = malloc(cap);
	char *ref = malloc(cap);
	CHECK(one != NULL && got != NULL && ref != NULL);

	size_t len = run_chunked(msg, n, dot, top, 0, one);
	CHECK(len <= cap);
	size_t rlen = reference(msg, n, dot, top, ref);
	CHECK(rlen == len && memcmp(ref, one, len) == 0);

	size_t glen = run_chunked(msg, n, dot, top, seed ? seed : 1, got);
	CHECK(glen == len && memcmp(got, one, len) == 0);

	/* A single split at a position chosen by the seed: a CR/LF pair
	 * or a line start across the edge is the interesting case. */
	{
		size_t cut = n * seed / 256;
		struct pop3_out f;
		pop3_out_init(&f, dot, top);
		size_t o = pop3_out_feed(&f, (const char *)msg, cut, got);
		o += pop3_out_feed(&f, (const char *)msg + cut, n - cut, got + o);
		o += pop3_out_finish(&f, got + o);
		CHECK(o == len && memcmp(got, one, len) == 0);
	}

	if (!dot && top < 0)
		CHECK(pop3_wire_size((const char *)msg, n) == len);

	/* Wire form: every LF is part of a CRLF, a non-empty output ends
	 * with CRLF, and with dot_stuff the only line "." is the last. */
	for (size_t i = 0; i < len; i++)
		if (one[i] == '\n')
			CHECK(i > 0 && one[i - 1] == '\r');
	if (len > 0)
		CHECK(len >= 2 && one[len - 2] == '\r' && one[len - 1] == '\n');
	if (dot) {
		CHECK(len >= 3 && memcmp(one + len - 3, ".\r\n", 3) == 0);
		size_t start = 0;
		for (size_t i = 0; i + 1 < len; i++) {
			if (one[i] == '\r' && one[i + 1] == '\n') {
				if (i - start == 1 && one[start] == '.')
					CHECK(i + 2 == len);
				start = i + 2;
			}
		}
	} else if (top < 0) {
		/* Without TOP nothing is dropped: at least the input size. */
		CHECK(len >= n);
	}

	free(one);
	free(got);
	free(ref);
	return 0;
}
