/* Unit tests of pop3_out: line ends, dot-stuffing, TOP, chunking, counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pop3_out.h"

/* A deterministic PRNG (xorshift64) so that a failure can be repeated. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static size_t rnd_below(size_t n)
{
	return n == 0 ? 0 : (size_t)(rnd() % n);
}

/* An independent, whole-message model of the rules in pop3_out.h: split
 * at LF, drop the CR of a CRLF, stuff, add CRLF to every line, count TOP
 * lines. The filter must agree with it on every input. */
static size_t reference(const char *in, size_t n, bool dot, int64_t top, char *out)
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

/* Feeds in[0..n) in the pieces given by cuts (sorted offsets), checking
 * every call against the documented bounds and against counting. */
static size_t feed_split(const char *in, size_t n, bool dot, int64_t top, const size_t *cuts,
			 size_t ncuts, char *out)
{
	struct pop3_out f, c;
	size_t o = 0;
	size_t prev = 0;

	pop3_out_init(&f, dot, top);
	pop3_out_init(&c, dot, top);
	for (size_t k = 0; k <= ncuts; k++) {
		size_t at = k < ncuts ? cuts[k] : n;
		size_t w = pop3_out_feed(&f, in + prev, at - prev, out + o);
		assert_true(w <= POP3_OUT_MAX(at - prev));
		assert_int_equal(pop3_out_count(&c, in + prev, at - prev), w);
		assert_int_equal(pop3_out_done(&f), pop3_out_done(&c));
		o += w;
		prev = at;
	}
	size_t w = pop3_out_finish(&f, out + o);
	assert_true(w <= POP3_OUT_FINISH_MAX);
	assert_int_equal(pop3_out_count_finish(&c), w);
	return o + w;
}

static size_t oneshot(const char *in, size_t n, bool dot, int64_t top, char *out)
{
	return feed_split(in, n, dot, top, NULL, 0, out);
}

static void check(const char *in, bool dot, int64_t top, const char *want)
{
	size_t n = strlen(in);
	char *out = malloc(POP3_OUT_MAX(n) + POP3_OUT_FINISH_MAX);
	char *ref = malloc(POP3_OUT_MAX(n) + POP3_OUT_FINISH_MAX);

	assert_non_null(out);
	assert_non_null(ref);
	size_t len = oneshot(in, n, dot, top, out);
	if (len != strlen(want) || memcmp(out, want, len) != 0)
		fail_msg("input \"%s\" dot %d top %lld: got \"%.*s\"", in, dot, (long long)top,
			 (int)len, out);
	size_t rlen = reference(in, n, dot, top, ref);
	assert_int_equal(rlen, len);
	assert_memory_equal(ref, out, len);
	free(out);
	free(ref);
}

static void test_line_ends(void **state)
{
	check("", false, -1, "");
	check("a", false, -1, "a\r\n");
	check("a\n", false, -1, "a\r\n");
	check("a\r\n", false, -1, "a\r\n");
	check("a\nb", false, -1, "a\r\nb\r\n");
	check("a\n\n", false, -1, "a\r\n\r\n");
	check("\n", false, -1, "\r\n");
	check("\r\n", false, -1, "\r\n");
	/* A CR without LF is content, sent as is. */
	check("a\rb\n", false, -1, "a\rb\r\n");
	check("a\r", false, -1, "a\r\r\n");
	check("\r", false, -1, "\r\r\n");
	check("\r\r", false, -1, "\r\r\r\n");
	check("\r\r\n", false, -1, "\r\r\n");
	check("a\r\r\nb", false, -1, "a\r\r\nb\r\n");
	check("\n\r\n\n", false, -1, "\r\n\r\n\r\n");
}

static void test_dot_stuffing(void **state)
{
	check("", true, -1, ".\r\n");
	check("a", true, -1, "a\r\n.\r\n");
	check(".", true, -1, "..\r\n.\r\n");
	check(".x\n..\n.", true, -1, "..x\r\n...\r\n..\r\n.\r\n");
	check(".x\n..\n.", false, -1, ".x\r\n..\r\n.\r\n");
	check("a.\n.b", true, -1, "a.\r\n..b\r\n.\r\n");
	check(".\r\n", true, -1, "..\r\n.\r\n");
	/* A line that starts with a bare CR does not start with '.'. */
	check("\r.\n", true, -1, "\r.\r\n.\r\n");
	check("a\n.\r", true, -1, "a\r\n..\r\r\n.\r\n");
}

static void test_top(void **state)
{
	const char *m = "H: 1\nH: 2\n\nb1\nb2\nb3\n";

	check(m, false, 0, "H: 1\r\nH: 2\r\n\r\n");
	check(m, false, 1, "H: 1\r\nH: 2\r\n\r\nb1\r\n");
	check(m, false, 2, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n");
	check(m, false, 3, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n");
	check(m, false, 100, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n");
	check(m, false, -1, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n");
	check(m, true, 0, "H: 1\r\nH: 2\r\n\r\n.\r\n");
	/* CRLF as the empty line. */
	check("H: 1\r\n\r\nb1\r\n", false, 0, "H: 1\r\n\r\n");
	/* "\r\r\n" holds a CR: not empty, so the header goes on. */
	check("H: 1\n\r\r\nb1\n", false, 0, "H: 1\r\n\r\r\nb1\r\n");
	/* No empty line: all header, all sent. */
	check("H\nX", false, 0, "H\r\nX\r\n");
	check("H\nX\n", true, 0, "H\r\nX\r\n.\r\n");
	/* Empty header. */
	check("\nb1\nb2", false, 1, "\r\nb1\r\n");
	check("\nb1\nb2", false, 0, "\r\n");
	/* The last body line lacks its line end. */
	check("H\n\nlast", false, 1, "H\r\n\r\nlast\r\n");
	check("H\n\nlast", false, 5, "H\r\n\r\nlast\r\n");
	/* Empty lines in the body are body lines. */
	check("H\n\n\n\nb\n", false, 2, "H\r\n\r\n\r\n\r\n");
	check("H\n\n.b\n.c\n", true, 1, "H\r\n\r\n..b\r\n.\r\n");
	/* An empty message stays empty under TOP too. */
	check("", false, 0, "");
	check("", true, 3, ".\r\n");
}

/* Feeds two pieces, for the cases where state crosses a chunk edge. */
static void check2(const char *a, const char *b, bool dot, int64_t top, const char *want)
{
	char in[256];
	char out[POP3_OUT_MAX(256) + POP3_OUT_FINISH_MAX];
	size_t na = strlen(a);
	size_t nb = strlen(b);

	assert_true(na + nb <= sizeof(in));
	memcpy(in, a, na);
	memcpy(in + na, b, nb);
	size_t cut = na;
	size_t len = feed_split(in, na + nb, dot, top, &cut, 1, out);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
}

static void test_chunk_edges(void **state)
{
	/* CR at the end of one chunk, LF at the start of the next. */
	check2("a\r", "\nb", false, -1, "a\r\nb\r\n");
	check2("a\r", "b\n", false, -1, "a\rb\r\n");
	check2("a\r", "\r\n", false, -1, "a\r\r\n");
	check2("a\r", "", false, -1, "a\r\r\n");
	/* A line start in the previous chunk, its '.' in this one. */
	check2("a\n", ".b", true, -1, "a\r\n..b\r\n.\r\n");
	check2("a\r\n", ".b", true, -1, "a\r\n..b\r\n.\r\n");
	check2("a\r", "\n.b", true, -1, "a\r\n..b\r\n.\r\n");
	check2("\r", ".", true, -1, "\r.\r\n.\r\n");
	check2("", ".", true, -1, "..\r\n.\r\n");
	/* The empty line split between CR and LF ends the header. */
	check2("H\n\r", "\nbody", false, 0, "H\r\n\r\n");
	check2("H\n\r", "x\n\nbody", false, 0, "H\r\n\rx\r\n\r\n");
}

static void test_done(void **state)
{
	struct pop3_out f;
	char out[64];

	pop3_out_init(&f, false, 0);
	assert_false(pop3_out_done(&f));
	assert_int_equal(pop3_out_feed(&f, "H\n", 2, out), 3);
	assert_false(pop3_out_done(&f));
	assert_int_equal(pop3_out_feed(&f, "\nbody\n", 6, out), 2);
	assert_true(pop3_out_done(&f));
	/* Further input is ignored, and nothing is added at the end. */
	assert_int_equal(pop3_out_feed(&f, "more\n", 5, out), 0);
	assert_int_equal(pop3_out_count(&f, "more\n", 5), 0);
	assert_int_equal(pop3_out_finish(&f, out), 0);

	pop3_out_init(&f, true, 1);
	assert_int_equal(pop3_out_feed(&f, "H\n\nb1\nb2", 8, out), 9);
	assert_true(pop3_out_done(&f));
	assert_int_equal(pop3_out_finish(&f, out), 3);
	assert_memory_equal(out, ".\r\n", 3);

	/* Without TOP, done never becomes true. */
	pop3_out_init(&f, false, -1);
	assert_int_equal(pop3_out_feed(&f, "H\n\nb\n\n\n", 7, out), 12);
	assert_false(pop3_out_done(&f));
}

static void test_wire_size(void **state)
{
	assert_int_equal(pop3_wire_size("", 0), 0);
	assert_int_equal(pop3_wire_size("a", 1), 3);
	assert_int_equal(pop3_wire_size("a\n", 2), 3);
	assert_int_equal(pop3_wire_size("a\r\n", 3), 3);
	assert_int_equal(pop3_wire_size(".a\n", 3), 4);
	assert_int_equal(pop3_wire_size("a\r", 2), 4);
	assert_int_equal(pop3_wire_size("H\n\nb\n", 5), 8);
}

/* Random text made mostly of the octets that drive the state machine. */
static void random_message(char *buf, size_t n)
{
	static const char alphabet[] = "..\r\r\n\n\n\nab .\r\n";
	for (size_t i = 0; i < n; i++) {
		if (rnd_below(8) == 0)
			buf[i] = (char)rnd_below(256);
		else
			buf[i] = alphabet[rnd_below(sizeof(alphabet) - 1)];
	}
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a;
	size_t y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static void test_random_chunking(void **state)
{
	enum { MAXN = 96, OUTMAX = POP3_OUT_MAX(MAXN) + POP3_OUT_FINISH_MAX };
	char in[MAXN];
	char one[OUTMAX], ref[OUTMAX], got[OUTMAX];
	size_t cuts[16];

	for (int iter = 0; iter < 20000; iter++) {
		size_t n = rnd_below(MAXN + 1);
		random_message(in, n);
		bool dot = rnd() & 1;
		int64_t top = (int64_t)rnd_below(6) - 1;

		size_t len = oneshot(in, n, dot, top, one);
		size_t rlen = reference(in, n, dot, top, ref);
		assert_int_equal(len, rlen);
		assert_memory_equal(one, ref, len);

		/* With dot_stuff off, counting is the STAT/LIST size. */
		if (!dot && top < 0)
			assert_int_equal(pop3_wire_size(in, n), len);

		/* Every single split position. */
		for (size_t cut = 0; cut <= n; cut++) {
			size_t glen = feed_split(in, n, dot, top, &cut, 1, got);
			assert_int_equal(glen, len);
			assert_memory_equal(got, one, len);
		}
		/* Several random splits into many pieces, empty ones included. */
		for (int r = 0; r < 4; r++) {
			size_t ncuts = rnd_below(16) + 1;
			for (size_t k = 0; k < ncuts; k++)
				cuts[k] = rnd_below(n + 1);
			qsort(cuts, ncuts, sizeof(cuts[0]), cmp_size);
			size_t glen = feed_split(in, n, dot, top, cuts, ncuts, got);
			assert_int_equal(glen, len);
			assert_memory_equal(got, one, len);
		}
		/* Byte by byte. */
		size_t every[MAXN];
		for (size_t k = 0; k < n; k++)
			every[k] = k;
		size_t glen = feed_split(in, n, dot, top, every, n, got);
		assert_int_equal(glen, len);
		assert_memory_equal(got, one, len);
	}
}

/* A bigger message in RETR-sized pieces, against the model. */
/* The RETR fast path agrees with feeding: true exactly for pieces that
 * feeding would copy unchanged, given the state at the piece's start. */
static void test_passthrough(void **state)
{
	static const struct {
		const char *piece;
		bool at_line_start, same;
	} cases[] = {
		{"Subject: x\r\n\r\nbody\r\n", true, true},
		{"no line end yet", true, true},
		{"ends in CR\r", true, false},   /* the next piece decides */
		{"bare LF\n", true, false},      /* becomes CRLF */
		{"\nLF first", false, false},
		{".dot at start\r\n", true, false},
		{".dot mid-line\r\n", false, true},
		{"a\r\n.b\r\n", true, false},
		{"a\rb\r\n", true, true}, /* a bare CR inside a line is content */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pop3_out f, g;
		pop3_out_init(&f, true, -1);
		f.at_line_start = cases[i].at_line_start;
		g = f;
		size_t n = strlen(cases[i].piece);
		assert_int_equal(pop3_out_passthrough(&f, cases[i].piece, n), cases[i].same);
		char out[POP3_OUT_MAX(64)];
		size_t w = pop3_out_feed(&g, cases[i].piece, n, out);
		if (cases[i].same) {
			assert_int_equal(w, n);
			assert_memory_equal(out, cases[i].piece, n);
			assert_int_equal(f.at_line_start, g.at_line_start);
		} else {
			assert_int_equal(f.at_line_start, cases[i].at_line_start); /* unchanged */
		}
	}
	/* never for TOP, nor after a held-back CR */
	struct pop3_out t;
	pop3_out_init(&t, true, 3);
	assert_false(pop3_out_passthrough(&t, "a\r\n", 3));
	pop3_out_init(&t, true, -1);
	t.pending_cr = true;
	assert_false(pop3_out_passthrough(&t, "\nx", 2));
}

static void test_large(void **state)
{
	size_t n = 3 * 1024 * 1024 + 17;
	char *in = malloc(n);
	char *one = malloc(POP3_OUT_MAX(n) + POP3_OUT_FINISH_MAX);
	char *ref = malloc(POP3_OUT_MAX(n) + POP3_OUT_FINISH_MAX);
	char *got = malloc(POP3_OUT_MAX(n) + POP3_OUT_FINISH_MAX);

	assert_non_null(in);
	assert_non_null(one);
	assert_non_null(ref);
	assert_non_null(got);
	/* Mostly long ordinary lines, as in real mail. */
	for (size_t i = 0; i < n; i++) {
		size_t r = rnd_below(100);
		in[i] = r < 2 ? '\n' : r < 3 ? '.' : r < 4 ? '\r' : (char)('a' + r % 26);
	}
	for (int dot = 0; dot <= 1; dot++) {
		size_t len = oneshot(in, n, dot, -1, one);
		size_t rlen = reference(in, n, dot, -1, ref);
		assert_int_equal(len, rlen);
		assert_memory_equal(one, ref, len);
		size_t cuts[64];
		size_t ncuts = 0;
		for (size_t at = 256 * 1024 - 1; at < n && ncuts < 64; at += 256 * 1024)
			cuts[ncuts++] = at;
		size_t glen = feed_split(in, n, dot, -1, cuts, ncuts, got);
		assert_int_equal(glen, len);
		assert_memory_equal(got, one, len);
		if (!dot)
			assert_int_equal(pop3_wire_size(in, n), len);
	}
	free(in);
	free(one);
	free(ref);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_chunk_edges),
		cmocka_unit_test(test_done),
		cmocka_unit_test(test_wire_size),
		cmocka_unit_test(test_random_chunking),
		cmocka_unit_test(test_passthrough),
		cmocka_unit_test(test_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
