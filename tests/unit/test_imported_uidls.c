/* Imported UIDLs: the tpops-uidls file (parse, append, repair) and the
 * parser of a POP3 server's answers that tpops-import uses. */
#include <setjmp.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "imported_uidls.h"
#include "pop3_client.h"
#include "xalloc.h"

static void parse(struct imported_uidls *u, const char *text)
{
	imported_uidls_parse(u, xstrdup(text), strlen(text));
}

static const char *uidl_of(const struct imported_uidls *u, const char *base)
{
	static char out[POP3_MAX_UIDL + 1];
	const struct imported_uidl *e = imported_uidls_find(u, base, strlen(base));
	if (e == NULL)
		return NULL;
	memcpy(out, e->uidl, e->uidl_len);
	out[e->uidl_len] = '\0';
	return out;
}

static void test_last_line_counts_first_line_orders(void **state)
{
	struct imported_uidls u;
	parse(&u, "tpops-uidls 1\n? b U2\n+ a U1\n+ b U2\n? c U3\n");
	assert_int_equal(u.count, 3);
	assert_int_equal(u.bad_line, 0);
	assert_string_equal(uidl_of(&u, "b"), "U2");
	const struct imported_uidl *b = imported_uidls_find(&u, "b", 1);
	assert_true(b->done);
	assert_int_equal(b->order, 0);
	assert_int_equal(imported_uidls_find(&u, "a", 1)->order, 1);
	assert_false(imported_uidls_find(&u, "c", 1)->done);
	assert_null(uidl_of(&u, "d"));
	imported_uidls_free(&u);
}

static void test_torn_and_damaged(void **state)
{
	struct imported_uidls u;
	/* an append cut short: ignored, and parsed_len says where to cut */
	parse(&u, "tpops-uidls 1\n+ a U1\n+ b U");
	assert_int_equal(u.count, 1);
	assert_int_equal(u.bad_line, 0);
	assert_int_equal(u.parsed_len, strlen("tpops-uidls 1\n+ a U1\n"));
	imported_uidls_free(&u);
	/* a damaged line: what came before counts */
	parse(&u, "tpops-uidls 1\n+ a U1\n+ b has space\n+ c U3\n");
	assert_int_equal(u.count, 1);
	assert_int_equal(u.bad_line, 3);
	imported_uidls_free(&u);
	/* a UIDL longer than 70 octets is refused */
	char line[200];
	snprintf(line, sizeof line, "tpops-uidls 1\n+ a %071d\n", 0);
	parse(&u, line);
	assert_int_equal(u.count, 0);
	assert_int_equal(u.bad_line, 2);
	imported_uidls_free(&u);
	/* not our file */
	parse(&u, "something else\n");
	assert_int_equal(u.bad_line, 1);
	imported_uidls_free(&u);
}

static void test_append_and_repair(void **state)
{
	char dir[] = "/tmp/tpops-uidls-XXXXXX";
	assert_non_null(mkdtemp(dir));
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(mkdirat(fd, "tmp", 0700), 0);
	assert_int_equal(imported_uidls_append(fd, '?', "a", "U1"), 0);
	assert_int_equal(imported_uidls_append(fd, '+', "a", "U1"), 0);
	assert_int_equal(imported_uidls_append(fd, '+', "bad base", "U1"), -1);
	/* a torn append, repaired before the next one */
	int f = openat(fd, IMPORTED_UIDLS_FILE, O_WRONLY | O_APPEND);
	assert_int_equal(write(f, "+ b U", 5), 5);
	close(f);
	struct imported_uidls u;
	char err[128];
	assert_int_equal(imported_uidls_load(fd, &u, err, sizeof err), 0);
	assert_int_equal(u.count, 1);
	assert_int_equal(imported_uidls_truncate(fd, &u), 0);
	imported_uidls_free(&u);
	assert_int_equal(imported_uidls_append(fd, '+', "b", "U2"), 0);
	assert_int_equal(imported_uidls_load(fd, &u, err, sizeof err), 0);
	assert_int_equal(u.count, 2);
	assert_int_equal(u.bad_line, 0);
	assert_string_equal(uidl_of(&u, "b"), "U2");
	imported_uidls_free(&u);
	unlinkat(fd, IMPORTED_UIDLS_FILE, 0);
	unlinkat(fd, "tmp", AT_REMOVEDIR);
	close(fd);
	rmdir(dir);
}

static void test_avoid(void **state)
{
	char a[POP3_MAX_UIDL + 1], b[POP3_MAX_UIDL + 1];
	imported_uidl_avoid("1.2.20250101000000", a);
	imported_uidl_avoid("1.2.20250101000000", b);
	assert_string_equal(a, b); /* stable */
	assert_int_equal(a[0], 'Z');
	assert_int_equal(strlen(a), 65);
	assert_true(imported_uidl_valid(a, strlen(a)));
}

static void test_pop3_client_lines(void **state)
{
	const char *text;
	assert_int_equal(pop3c_status("+OK ready", 9, &text), POP3C_OK);
	assert_string_equal(text, "ready");
	assert_int_equal(pop3c_status("-ERR", 4, &text), POP3C_ERR);
	assert_int_equal(pop3c_status("+OKAY", 5, &text), POP3C_BAD);
	unsigned n;
	char uidl[POP3_MAX_UIDL + 1];
	assert_true(pop3c_uidl_line("12 00000001692a6d00", 19, &n, uidl));
	assert_int_equal(n, 12);
	assert_string_equal(uidl, "00000001692a6d00");
	assert_false(pop3c_uidl_line("0 x", 3, &n, uidl));
	assert_false(pop3c_uidl_line("1 a b", 5, &n, uidl));
	assert_false(pop3c_uidl_line("1 ", 2, &n, uidl));
	uint64_t size;
	assert_true(pop3c_list_line("3 20040", 7, &n, &size));
	assert_int_equal(size, 20040);
	assert_false(pop3c_list_line("3 x", 3, &n, &size));
	assert_int_equal(pop3c_line_length("ab\r\ncd", 6), 4);
	assert_int_equal(pop3c_line_length("abcd", 4), 0);
}

static void test_pop3_client_multiline(void **state)
{
	struct pop3c_multiline ml = {.max = 1000};
	assert_false(pop3c_multiline_line(&ml, "Subject: x\r\n", 12));
	assert_false(pop3c_multiline_line(&ml, "\r\n", 2));
	assert_false(pop3c_multiline_line(&ml, "..dot\r\n", 7));
	/* a long line in parts: a dot after the first part is no stuffing */
	pop3c_multiline_part(&ml, ".abc", 4);
	pop3c_multiline_part(&ml, ".def", 4);
	assert_false(pop3c_multiline_line(&ml, "\r\n", 2));
	assert_false(pop3c_multiline_line(&ml, "bare lf\n", 8));
	assert_true(pop3c_multiline_line(&ml, ".\r\n", 3));
	assert_true(ml.done);
	const char want[] = "Subject: x\r\n\r\n.dot\r\nabc.def\r\nbare lf\r\n";
	assert_int_equal(ml.out.len, strlen(want));
	assert_memory_equal(ml.out.data, want, strlen(want));
	buf_free(&ml.out);
	struct pop3c_multiline small = {.max = 5};
	assert_false(pop3c_multiline_line(&small, "too long\r\n", 10));
	assert_true(small.too_large);
	assert_true(pop3c_multiline_line(&small, ".\r\n", 3));
	buf_free(&small.out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_last_line_counts_first_line_orders),
		cmocka_unit_test(test_torn_and_damaged),
		cmocka_unit_test(test_append_and_repair),
		cmocka_unit_test(test_avoid),
		cmocka_unit_test(test_pop3_client_lines),
		cmocka_unit_test(test_pop3_client_multiline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
