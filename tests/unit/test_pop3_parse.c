/* Unit tests of pop3_parse: keywords, argument counts, numbers, PASS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tpops_limits.h"
#include "pop3_parse.h"

static enum pop3_parse_status parse(const char *s, struct pop3_command *c)
{
	return pop3_parse(s, strlen(s), c);
}

/* The argument i of c equals the C string want. */
static void assert_arg(const struct pop3_command *c, unsigned i, const char *want)
{
	assert_true(i < c->nargs);
	assert_int_equal(c->arg_len[i], strlen(want));
	assert_memory_equal(c->arg[i], want, strlen(want));
}

static void test_empty_and_nul(void **state)
{
	struct pop3_command c;

	assert_int_equal(pop3_parse("", 0, &c), PARSE_EMPTY);
	assert_int_equal(c.cmd, CMD_NONE);
	assert_int_equal(parse(" ", &c), PARSE_EMPTY);
	assert_int_equal(parse("      ", &c), PARSE_EMPTY);
	/* A NUL is reported before anything else, even in an empty-looking
	 * or otherwise valid line. */
	assert_int_equal(pop3_parse("\0", 1, &c), PARSE_NUL);
	assert_int_equal(pop3_parse("  \0", 3, &c), PARSE_NUL);
	assert_int_equal(pop3_parse("QUIT\0", 5, &c), PARSE_NUL);
	assert_int_equal(pop3_parse("PASS a\0b", 8, &c), PARSE_NUL);
	assert_int_equal(pop3_parse("USER\0bob", 8, &c), PARSE_NUL);
	assert_int_equal(c.cmd, CMD_NONE);
	/* The length is honoured: bytes after len are not looked at. */
	assert_int_equal(pop3_parse("QUITX", 4, &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_QUIT);
}

static void test_keywords(void **state)
{
	static const struct {
		const char *line;
		enum pop3_cmd cmd;
	} t[] = {
		{ "STLS", CMD_STLS }, { "CAPA", CMD_CAPA }, { "QUIT", CMD_QUIT },
		{ "STAT", CMD_STAT }, { "LIST", CMD_LIST }, { "NOOP", CMD_NOOP },
		{ "RSET", CMD_RSET }, { "UIDL", CMD_UIDL }, { "AUTH", CMD_AUTH },
		{ "quit", CMD_QUIT }, { "QuIt", CMD_QUIT }, { "stat", CMD_STAT },
		{ "list", CMD_LIST }, { "uIdL", CMD_UIDL }, { "capa", CMD_CAPA },
		{ "QUIT ", CMD_QUIT }, { "QUIT    ", CMD_QUIT }, { "  QUIT", CMD_QUIT },
	};
	struct pop3_command c;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(parse(t[i].line, &c), PARSE_OK);
		assert_int_equal(c.cmd, t[i].cmd);
		assert_int_equal(c.nargs, 0);
		assert_false(c.has_number);
	}
}

static void test_unknown(void **state)
{
	static const char *const t[] = {
		"QUITX", "QUI", "Q", "XTND XMIT", "HELO", "QUIT\tX", "\tQUIT",
		"TOPS 1 2", "RETRIEVE 1", "USERNAME bob", "PAS x", "\xff\xfe",
		"Q UIT", ".", "LAST",
	};
	struct pop3_command c;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(parse(t[i], &c), PARSE_UNKNOWN);
		assert_int_equal(c.cmd, CMD_NONE);
	}
}

static void test_no_arg_commands_reject_args(void **state)
{
	static const struct {
		const char *line;
		enum pop3_cmd cmd;
	} t[] = {
		{ "QUIT now", CMD_QUIT }, { "STAT 1", CMD_STAT },
		{ "NOOP x y", CMD_NOOP }, { "RSET  1 ", CMD_RSET },
		{ "CAPA x", CMD_CAPA },   { "STLS x", CMD_STLS },
	};
	struct pop3_command c;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(parse(t[i].line, &c), PARSE_BAD_ARGS);
		/* The caller still learns which command it was. */
		assert_int_equal(c.cmd, t[i].cmd);
	}
}

static void test_user(void **state)
{
	struct pop3_command c;
	const char *line = "USER bob@example.org";

	assert_int_equal(parse(line, &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_USER);
	assert_int_equal(c.nargs, 1);
	assert_arg(&c, 0, "bob@example.org");
	/* The argument points into the line. */
	assert_ptr_equal(c.arg[0], line + 5);

	assert_int_equal(parse("user   bob   ", &c), PARSE_OK);
	assert_arg(&c, 0, "bob");
	assert_int_equal(parse("USER", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_USER);
	assert_int_equal(parse("USER ", &c), PARSE_BAD_ARGS);
	assert_int_equal(parse("USER bob smith", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_USER);
	assert_int_equal(parse("USER a b c", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.nargs, 0);
}

static void test_pass(void **state)
{
	struct pop3_command c;
	const char *line = "PASS secret";

	assert_int_equal(parse(line, &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_PASS);
	assert_int_equal(c.nargs, 1);
	assert_arg(&c, 0, "secret");
	assert_ptr_equal(c.arg[0], line + 5);

	/* Verbatim: inner, leading (after the one separator) and trailing
	 * spaces are part of the password. */
	assert_int_equal(parse("PASS my secret pw", &c), PARSE_OK);
	assert_arg(&c, 0, "my secret pw");
	assert_int_equal(parse("pass  lead", &c), PARSE_OK);
	assert_arg(&c, 0, " lead");
	assert_int_equal(parse("PASS trail  ", &c), PARSE_OK);
	assert_arg(&c, 0, "trail  ");
	assert_int_equal(parse("PASS  ", &c), PARSE_OK);
	assert_arg(&c, 0, " ");
	assert_int_equal(parse("PASS \t\x01\xff", &c), PARSE_OK);
	assert_arg(&c, 0, "\t\x01\xff");

	assert_int_equal(parse("PASS", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_PASS);
	assert_int_equal(parse("PASS ", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_PASS);
	assert_int_equal(c.nargs, 0);
}

static void test_apop(void **state)
{
	struct pop3_command c;

	assert_int_equal(parse("APOP mrose c4c9334bac560ecc979e58001b3e22fb", &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_APOP);
	assert_int_equal(c.nargs, 2);
	assert_arg(&c, 0, "mrose");
	assert_arg(&c, 1, "c4c9334bac560ecc979e58001b3e22fb");
	assert_int_equal(parse("apop  a   b  ", &c), PARSE_OK);
	assert_arg(&c, 0, "a");
	assert_arg(&c, 1, "b");

	assert_int_equal(parse("APOP", &c), PARSE_BAD_ARGS);
	assert_int_equal(parse("APOP mrose", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_APOP);
	assert_int_equal(parse("APOP a b c", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_APOP);
}

static void test_auth(void **state)
{
	struct pop3_command c;

	assert_int_equal(parse("AUTH", &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_AUTH);
	assert_int_equal(c.nargs, 0);
	assert_int_equal(parse("AUTH  ", &c), PARSE_OK);
	assert_int_equal(c.nargs, 0);
	assert_int_equal(parse("AUTH PLAIN", &c), PARSE_OK);
	assert_int_equal(c.nargs, 1);
	assert_arg(&c, 0, "PLAIN");
	assert_int_equal(parse("auth PLAIN AGJvYgBzZWNyZXQ=", &c), PARSE_OK);
	assert_int_equal(c.nargs, 2);
	assert_arg(&c, 0, "PLAIN");
	assert_arg(&c, 1, "AGJvYgBzZWNyZXQ=");
	assert_int_equal(parse("AUTH PLAIN =", &c), PARSE_OK);
	assert_arg(&c, 1, "=");

	assert_int_equal(parse("AUTH PLAIN a b", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_AUTH);
}

static void test_list_uidl(void **state)
{
	struct pop3_command c;

	assert_int_equal(parse("LIST", &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_LIST);
	assert_false(c.has_number);
	assert_int_equal(parse("LIST 7", &c), PARSE_OK);
	assert_true(c.has_number);
	assert_int_equal(c.number[0], 7);
	assert_int_equal(parse("uidl   12  ", &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_UIDL);
	assert_true(c.has_number);
	assert_int_equal(c.number[0], 12);
	assert_int_equal(parse("UIDL", &c), PARSE_OK);
	assert_false(c.has_number);

	assert_int_equal(parse("LIST 1 2", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_LIST);
	assert_int_equal(parse("LIST 0", &c), PARSE_BAD_NUMBER);
	assert_int_equal(c.cmd, CMD_LIST);
	assert_false(c.has_number);
	assert_int_equal(parse("UIDL x", &c), PARSE_BAD_NUMBER);
	assert_int_equal(c.cmd, CMD_UIDL);
}

static void test_retr_dele(void **state)
{
	struct pop3_command c;

	assert_int_equal(parse("RETR 1", &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_RETR);
	assert_int_equal(c.number[0], 1);
	assert_int_equal(parse("dele 42 ", &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_DELE);
	assert_int_equal(c.number[0], 42);
	assert_int_equal(parse("RETR 007", &c), PARSE_OK);
	assert_int_equal(c.number[0], 7);

	assert_int_equal(parse("RETR", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_RETR);
	assert_int_equal(parse("RETR ", &c), PARSE_BAD_ARGS);
	assert_int_equal(parse("DELE 1 2", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_DELE);
	/* The count is checked before the form of the numbers. */
	assert_int_equal(parse("RETR x y", &c), PARSE_BAD_ARGS);
}

static void test_top(void **state)
{
	struct pop3_command c;

	assert_int_equal(parse("TOP 1 10", &c), PARSE_OK);
	assert_int_equal(c.cmd, CMD_TOP);
	assert_int_equal(c.number[0], 1);
	assert_int_equal(c.number[1], 10);
	assert_int_equal(parse("top  3   0  ", &c), PARSE_OK);
	assert_int_equal(c.number[0], 3);
	assert_int_equal(c.number[1], 0);

	assert_int_equal(parse("TOP", &c), PARSE_BAD_ARGS);
	assert_int_equal(c.cmd, CMD_TOP);
	assert_int_equal(parse("TOP 1", &c), PARSE_BAD_ARGS);
	assert_int_equal(parse("TOP 1 2 3", &c), PARSE_BAD_ARGS);
	assert_int_equal(parse("TOP 0 5", &c), PARSE_BAD_NUMBER);
	assert_int_equal(c.cmd, CMD_TOP);
	assert_int_equal(parse("TOP 1 -1", &c), PARSE_BAD_NUMBER);
	assert_int_equal(parse("TOP 1 1073741824", &c), PARSE_BAD_NUMBER);
	assert_int_equal(parse("TOP 1 1073741823", &c), PARSE_OK);
	assert_int_equal(c.number[1], POP3_MAX_NUMBER);
}

static void test_numbers(void **state)
{
	static const char *const bad[] = {
		"-1", "+1", "abc", "1x", "x1", "0", "00", "4294967297", "4294967296",
		"99999999999999999999", "1073741824", "00000000001", "1.0", "0x10",
		"\xd9\xa1", "\xef\xbc\x91",
	};
	char line[64];
	struct pop3_command c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "RETR %s", bad[i]);
		assert_int_equal(parse(line, &c), PARSE_BAD_NUMBER);
		assert_int_equal(c.cmd, CMD_RETR);
		snprintf(line, sizeof(line), "TOP %s 1", bad[i]);
		assert_int_equal(parse(line, &c), PARSE_BAD_NUMBER);
	}
	assert_int_equal(parse("RETR 1073741823", &c), PARSE_OK);
	assert_int_equal(c.number[0], POP3_MAX_NUMBER);
	assert_int_equal(parse("RETR 0000000001", &c), PARSE_OK);
	assert_int_equal(c.number[0], 1);
	assert_int_equal(parse("LIST 999999999", &c), PARSE_OK);
	assert_int_equal(c.number[0], 999999999);
}

static void test_cmd_name(void **state)
{
	assert_string_equal(pop3_cmd_name(CMD_USER), "USER");
	assert_string_equal(pop3_cmd_name(CMD_RETR), "RETR");
	assert_string_equal(pop3_cmd_name(CMD_TOP), "TOP");
	assert_string_equal(pop3_cmd_name(CMD_UIDL), "UIDL");
	assert_string_equal(pop3_cmd_name(CMD_NONE), "?");
	assert_string_equal(pop3_cmd_name((enum pop3_cmd)999), "?");

	/* Every keyword parses back to its own command. */
	for (int cmd = CMD_USER; cmd <= CMD_UIDL; cmd++) {
		struct pop3_command c;
		const char *name = pop3_cmd_name((enum pop3_cmd)cmd);
		enum pop3_parse_status st = parse(name, &c);
		assert_true(st == PARSE_OK || st == PARSE_BAD_ARGS);
		assert_int_equal(c.cmd, cmd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_and_nul),
		cmocka_unit_test(test_keywords),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_no_arg_commands_reject_args),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_pass),
		cmocka_unit_test(test_apop),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_list_uidl),
		cmocka_unit_test(test_retr_dele),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_cmd_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
