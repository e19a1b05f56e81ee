/* Unit tests of the MySQL_Server host list (src/db_mysql_hosts.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "db_mysql_hosts.h"

static void expect_host(const struct mysql_hosts *h, size_t i, const char *name,
			unsigned int port)
{
	assert_true(i < h->count);
	if (name == NULL)
		assert_null(h->host[i].name);
	else
		assert_string_equal(h->host[i].name, name);
	assert_int_equal(h->host[i].port, port);
}

static void test_one_host(void **state)
{
	(void)state;
	struct mysql_hosts h;
	char err[256];
	assert_int_equal(mysql_hosts_parse("db.example.com", 3306, &h, err, sizeof err), 0);
	assert_int_equal(h.count, 1);
	expect_host(&h, 0, "db.example.com", 3306);
	mysql_hosts_free(&h);
}

static void test_empty_is_the_default(void **state)
{
	(void)state;
	struct mysql_hosts h;
	char err[256];
	assert_int_equal(mysql_hosts_parse(NULL, 3307, &h, err, sizeof err), 0);
	assert_int_equal(h.count, 1);
	expect_host(&h, 0, NULL, 3307);
	mysql_hosts_free(&h);
	assert_int_equal(mysql_hosts_parse("  , ", 3306, &h, err, sizeof err), 0);
	assert_int_equal(h.count, 1);
	expect_host(&h, 0, NULL, 3306);
	mysql_hosts_free(&h);
}

static void test_list_with_ports(void **state)
{
	(void)state;
	struct mysql_hosts h;
	char err[256];
	assert_int_equal(mysql_hosts_parse("db1 db2:3307,\t10.0.0.3:13306 [2001:db8::1]:3308 "
					   "[::1] fe80::1",
					   3306, &h, err, sizeof err),
			 0);
	assert_int_equal(h.count, 6);
	expect_host(&h, 0, "db1", 3306);
	expect_host(&h, 1, "db2", 3307);
	expect_host(&h, 2, "10.0.0.3", 13306);
	expect_host(&h, 3, "2001:db8::1", 3308);
	expect_host(&h, 4, "::1", 3306);
	expect_host(&h, 5, "fe80::1", 3306);
	mysql_hosts_free(&h);
}

static void test_bad_items(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"db1:",     "db1:0",     "db1:65536", "db1:33a",  ":3306",   "[::1",
		"[]:3306",  "[::1]3306", "[::1]:",    "a]b",      "db1:123456",
		"db1 db2:x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mysql_hosts h;
		char err[256] = "";
		if (mysql_hosts_parse(bad[i], 3306, &h, err, sizeof err) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(strstr(err, "MySQL_Server"));
		assert_int_equal(h.count, 0);
	}
}

static void test_too_many(void **state)
{
	(void)state;
	char spec[1024] = "";
	for (int i = 0; i <= MYSQL_HOSTS_MAX; i++)
		strcat(spec, "db ");
	struct mysql_hosts h;
	char err[256];
	assert_int_equal(mysql_hosts_parse(spec, 3306, &h, err, sizeof err), -1);
	assert_non_null(strstr(err, "more than"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_host),     cmocka_unit_test(test_empty_is_the_default),
		cmocka_unit_test(test_list_with_ports), cmocka_unit_test(test_bad_items),
		cmocka_unit_test(test_too_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
