/* Unit tests of the connection limits (src/conn_limit.c): the total, the
 * count per address (an IPv6 /64 is one address), and moving a count from
 * a proxy's address to the client a PROXY header names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <cmocka.h>

#include "conn_limit.h"

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
	}
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_total_and_per_address(void **state)
{
	struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");
	assert_true(conn_limit_acquire(SA(a), 3, 2));
	assert_true(conn_limit_acquire(SA(a), 3, 2));
	assert_false(conn_limit_acquire(SA(a), 3, 2)); /* per address */
	assert_true(conn_limit_acquire(SA(b), 3, 2));
	assert_false(conn_limit_acquire(SA(b), 3, 2)); /* in total */
	assert_int_equal(conn_limit_total(), 3);
	conn_limit_release(SA(a));
	assert_true(conn_limit_acquire(SA(b), 3, 2));
	conn_limit_release(SA(a));
	conn_limit_release(SA(b));
	conn_limit_release(SA(b));
	assert_int_equal(conn_limit_total(), 0);
}

static void test_ipv6_prefix_is_one_address(void **state)
{
	struct sockaddr_storage a = addr("2001:db8:1:2::1"), b = addr("2001:db8:1:2::ffff");
	assert_true(conn_limit_acquire(SA(a), 10, 1));
	assert_false(conn_limit_acquire(SA(b), 10, 1));
	conn_limit_release(SA(a));
	assert_int_equal(conn_limit_total(), 0);
}

static void test_move_to_the_named_client(void **state)
{
	struct sockaddr_storage proxy = addr("10.0.0.1"), client = addr("203.0.113.7");
	/* two connections wait for their header under the proxy's address */
	assert_true(conn_limit_acquire(SA(proxy), 10, 2));
	assert_true(conn_limit_acquire(SA(proxy), 10, 2));
	assert_false(conn_limit_acquire(SA(proxy), 10, 2));
	/* both name one client: the proxy's address is free again */
	assert_true(conn_limit_move(SA(proxy), SA(client), 2));
	assert_true(conn_limit_move(SA(proxy), SA(client), 2));
	assert_int_equal(conn_limit_total(), 2);
	assert_true(conn_limit_acquire(SA(proxy), 10, 2));
	/* a third for the same client is over its limit: nothing moves */
	assert_false(conn_limit_move(SA(proxy), SA(client), 2));
	assert_int_equal(conn_limit_total(), 3);
	assert_true(conn_limit_acquire(SA(proxy), 10, 2));
	assert_false(conn_limit_acquire(SA(proxy), 10, 2));
	/* the same address (a LOCAL header) moves nowhere */
	assert_true(conn_limit_move(SA(proxy), SA(proxy), 2));
	conn_limit_release(SA(proxy));
	conn_limit_release(SA(proxy));
	conn_limit_release(SA(client));
	conn_limit_release(SA(client));
	assert_int_equal(conn_limit_total(), 0);
	assert_true(conn_limit_acquire(SA(client), 10, 1));
	conn_limit_release(SA(client));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_total_and_per_address),
		cmocka_unit_test(test_ipv6_prefix_is_one_address),
		cmocka_unit_test(test_move_to_the_named_client),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
