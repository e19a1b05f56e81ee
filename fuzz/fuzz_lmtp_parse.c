/* libFuzzer target: the LMTP command parser and the DATA decoder on
 * arbitrary input. The first octet picks the parser; for DATA, the
 * second picks the piece size, and the result must not depend on how the
 * input is cut. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lmtp_parse.h"

#include "fuzz_check.h"

static void check_command(const char *line, size_t len)
{
	struct lmtp_command c;
	enum lmtp_parse_status st = lmtp_parse_command(line, len, &c);
	CHECK(st <= LMTP_PARSE_PARAMETER);
	CHECK((c.verb == LMTP_NONE) == (st == LMTP_PARSE_UNKNOWN));
	size_t n = strnlen(c.path, sizeof c.path);
	CHECK(n <= LMTP_MAX_PATH);
	if (st != LMTP_PARSE_OK)
		return;
	CHECK(strncasecmp(line, lmtp_verb_name(c.verb), 4) == 0 ||
	      (c.verb == LMTP_HELO && strncasecmp(line, "EHLO", 4) == 0));
	/* a path is printable ASCII without spaces: safe in logs and headers */
	for (size_t i = 0; i < n; i++)
		CHECK(c.path[i] > ' ' && c.path[i] < 0x7f);
	if (c.verb == LMTP_RCPT)
		CHECK(n > 0 && strchr(c.path, '@') != NULL);
	if (c.verb != LMTP_MAIL && c.verb != LMTP_RCPT)
		CHECK(n == 0);
}

static void check_data(const char *in, size_t len, size_t step)
{
	struct lmtp_data whole, cut;
	struct buf a = BUF_INIT, b = BUF_INIT;
	bool done_a, done_b = false;
	uint64_t max = len / 2 + 1;
	lmtp_data_start(&whole, max);
	size_t used_a = lmtp_data_feed(&whole, in, len, &a, &done_a);
	CHECK(used_a <= len);
	CHECK(done_a || used_a == len);

	lmtp_data_start(&cut, max);
	size_t used_b = 0;
	while (used_b < len && !done_b) {
		size_t n = len - used_b < step ? len - used_b : step;
		size_t got = lmtp_data_feed(&cut, in + used_b, n, &b, &done_b);
		CHECK(got <= n);
		CHECK(done_b || got == n);
		used_b += got;
	}
	CHECK(done_a == done_b && used_a == used_b);
	CHECK(whole.size == cut.size && whole.too_big == cut.too_big);
	CHECK(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
	CHECK(a.len == (whole.too_big ? max : whole.size));
	/* the output never grows: CRs and dots only go */
	CHECK(whole.size <= used_a);
	/* a finished message ends with a line end, or is empty */
	if (done_a && !whole.too_big && a.len > 0)
		CHECK(a.data[a.len - 1] == '\n');
	/* with no CR in the input, every input LF but the end line's is kept */
	if (done_a && !whole.too_big && memchr(in, '\r', used_a) == NULL) {
		size_t lf_in = 0, lf_out = 0;
		for (size_t i = 0; i < used_a; i++)
			lf_in += in[i] == '\n';
		for (size_t i = 0; i < a.len; i++)
			lf_out += a.data[i] == '\n';
		CHECK(lf_out + 1 == lf_in);
	}
	buf_free(&a);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > 4 * LMTP_MAX_LINE)
		return 0;
	/* a private copy with no terminator, so ASan catches reads past len */
	size_t len = size - 2;
	char *in = malloc(len ? len : 1);
	CHECK(in != NULL);
	memcpy(in, data + 2, len);
	if (data[0] & 1)
		check_command(in, len);
	else
		check_data(in, len, (size_t)data[1] % 16 + 1);
	free(in);
	return 0;
}
