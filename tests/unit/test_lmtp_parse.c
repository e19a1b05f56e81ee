/* Unit tests of lmtp_parse: command lines, paths, parameters, and the DATA
 * decoder (dot-unstuffing, line ends, the end line, the size bound). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lmtp_parse.h"

static enum lmtp_parse_status parse(const char *s, struct lmtp_command *c)
{
	return lmtp_parse_command(s, strlen(s), c);
}

static void test_verbs(void **state)
{
	struct lmtp_command c;
	assert_int_equal(parse("LHLO mx.example.org", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_LHLO);
	assert_int_equal(parse("lhlo [127.0.0.1]", &c), LMTP_PARSE_OK);
	assert_int_equal(parse("LHLO", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("LHLO a b", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("EHLO x", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_HELO);
	assert_int_equal(parse("DATA", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_DATA);
	assert_int_equal(parse("data  ", &c), LMTP_PARSE_OK);
	assert_int_equal(parse("DATA x", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("RSET", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_RSET);
	assert_int_equal(parse("QUIT", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_QUIT);
	assert_int_equal(parse("NOOP anything", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_NOOP);
	assert_int_equal(parse("VRFY", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("", &c), LMTP_PARSE_UNKNOWN);
	assert_int_equal(parse("DATAX", &c), LMTP_PARSE_UNKNOWN);
	assert_int_equal(parse("STARTTLS", &c), LMTP_PARSE_UNKNOWN);
	assert_int_equal(lmtp_parse_command("QUIT\0", 5, &c), LMTP_PARSE_UNKNOWN);
}

static void test_mail_rcpt(void **state)
{
	struct lmtp_command c;
	assert_int_equal(parse("MAIL FROM:<a@example.org>", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_MAIL);
	assert_string_equal(c.path, "a@example.org");
	assert_int_equal(parse("MAIL FROM:<>", &c), LMTP_PARSE_OK);
	assert_string_equal(c.path, "");
	assert_int_equal(parse("mail from: <a@b> SIZE=1234 BODY=8BITMIME", &c), LMTP_PARSE_OK);
	assert_string_equal(c.path, "a@b");
	assert_int_equal(c.size, 1234);
	assert_int_equal(c.body, LMTP_BODY_8BITMIME);
	assert_int_equal(parse("MAIL FROM:<a@b> body=7bit", &c), LMTP_PARSE_OK);
	assert_int_equal(c.body, LMTP_BODY_7BIT);
	assert_int_equal(parse("MAIL FROM:<a@b> BODY=BINARYMIME", &c), LMTP_PARSE_PARAMETER);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=12x", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> SIZE=99999999999999999999", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b> AUTH=<>", &c), LMTP_PARSE_PARAMETER);
	assert_int_equal(parse("MAIL FROM:<a@b>SIZE=1", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("MAIL FROM:a@b", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("MAIL FROM:<a@b", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("MAIL TO:<a@b>", &c), LMTP_PARSE_SYNTAX);
	assert_int_equal(parse("MAIL", &c), LMTP_PARSE_SYNTAX);

	assert_int_equal(parse("RCPT TO:<alice@example.com>", &c), LMTP_PARSE_OK);
	assert_int_equal(c.verb, LMTP_RCPT);
	assert_string_equal(c.path, "alice@example.com");
	assert_int_equal(parse("rcpt to:<@relay.example,@b.example:bob@x.example>", &c),
			 LMTP_PARSE_OK);
	assert_string_equal(c.path, "bob@x.example");
	assert_int_equal(parse("RCPT TO:<>", &c), LMTP_PARSE_PATH);
	assert_int_equal(parse("RCPT TO:<alice>", &c), LMTP_PARSE_PATH);
	assert_int_equal(parse("RCPT TO:<@x>", &c), LMTP_PARSE_PATH);
	assert_int_equal(parse("RCPT TO:<a b@x>", &c), LMTP_PARSE_PATH);
	assert_int_equal(parse("RCPT TO:<a\r@x>", &c), LMTP_PARSE_PATH);
	assert_int_equal(parse("RCPT TO:<\xc3\xa9@x>", &c), LMTP_PARSE_PATH);
	/* RCPT takes no SIZE: unknown parameter */
	assert_int_equal(parse("RCPT TO:<a@x> SIZE=1", &c), LMTP_PARSE_PARAMETER);

	char line[LMTP_MAX_LINE];
	char local[LMTP_MAX_PATH + 2];
	memset(local, 'x', sizeof local);
	local[LMTP_MAX_PATH - 2] = '\0'; /* + "@y" = LMTP_MAX_PATH */
	snprintf(line, sizeof line, "RCPT TO:<%s@y>", local);
	assert_int_equal(parse(line, &c), LMTP_PARSE_OK);
	assert_int_equal(strlen(c.path), LMTP_MAX_PATH);
	local[LMTP_MAX_PATH - 2] = 'x';
	local[LMTP_MAX_PATH - 1] = '\0'; /* one octet too many */
	snprintf(line, sizeof line, "RCPT TO:<%s@y>", local);
	assert_int_equal(parse(line, &c), LMTP_PARSE_PATH);
}

/* Feeds input in pieces of `step` octets; returns the octets used. */
static size_t decode(const char *in, size_t len, size_t step, uint64_t max, struct buf *out,
		     bool *done, struct lmtp_data *d)
{
	lmtp_data_start(d, max);
	size_t used = 0;
	*done = false;
	while (used < len && !*done) {
		size_t n = len - used < step ? len - used : step;
		used += lmtp_data_feed(d, in + used, n, out, done);
	}
	return used;
}

static void expect(const char *in, const char *want, size_t want_used)
{
	for (size_t step = 1; step <= strlen(in); step++) {
		struct buf out = BUF_INIT;
		struct lmtp_data d;
		bool done;
		size_t used = decode(in, strlen(in), step, 1 << 20, &out, &done, &d);
		assert_true(done);
		assert_int_equal(used, want_used);
		assert_int_equal(out.len, strlen(want));
		if (out.len > 0)
			assert_memory_equal(out.data, want, out.len);
		assert_int_equal(d.size, strlen(want));
		assert_false(d.too_big);
		buf_free(&out);
	}
}

static void test_data(void **state)
{
	expect(".\r\n", "", 3);
	expect("a\r\n.\r\n", "a\n", 6);
	expect("a\r\n.\r\nQUIT\r\n", "a\n", 6);
	/* dot-unstuffing */
	expect("..\r\n.\r\n", ".\n", 7);
	expect("..x\r\n...\r\n.\r\n", ".x\n..\n", 13);
	expect(".x\r\n.\r\n", "x\n", 7);
	/* bare LF ends lines, the end line too */
	expect("a\nb\n.\n", "a\nb\n", 6);
	expect("a\r\n.\nRSET\r\n", "a\n", 5);
	/* a CR without LF is kept */
	expect("a\rb\r\n.\r\n", "a\rb\n", 8);
	expect("a\r\r\n.\r\n", "a\r\n", 7);
	expect(".\rx\r\n.\r\n", "\rx\n", 8);
	/* "." inside a line is nothing special */
	expect("a.\r\n.\r\n", "a.\n", 7);
	/* an empty line */
	expect("\r\n\r\n.\r\n", "\n\n", 7);
}

static void test_data_unfinished_and_too_big(void **state)
{
	struct buf out = BUF_INIT;
	struct lmtp_data d;
	bool done;
	const char *in = "abc\r\n.x";
	assert_int_equal(decode(in, strlen(in), 3, 100, &out, &done, &d), strlen(in));
	assert_false(done);
	buf_free(&out);

	/* beyond max: counted, not kept, and the end still found */
	in = "0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";
	assert_int_equal(decode(in, strlen(in), 4, 15, &out, &done, &d), 27);
	assert_true(done);
	assert_true(d.too_big);
	assert_int_equal(d.size, 22);
	assert_true(out.len <= 15);
	buf_free(&out);

	/* exactly max fits */
	in = "0123456789\r\n.\r\n";
	decode(in, strlen(in), 100, 11, &out, &done, &d);
	assert_true(done);
	assert_false(d.too_big);
	assert_int_equal(out.len, 11);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_mail_rcpt),
		cmocka_unit_test(test_data),
		cmocka_unit_test(test_data_unfinished_and_too_big),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
