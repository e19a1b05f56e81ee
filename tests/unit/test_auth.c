/* Unit tests of the brute-force records (src/auth_penalty.c), the login
 * rule (src/auth_login.c) and the escaping of client text in logs
 * (log_field in src/log.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "auth_login.h"
#include "auth_penalty.h"
#include "log.h"
#include "password.h"

static void network_of(const char *address, char *out)
{
	struct sockaddr_storage ss = {0};
	if (strchr(address, ':') != NULL) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, address, &in6->sin6_addr), 1);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, address, &in->sin_addr), 1);
	}
	auth_penalty_network((struct sockaddr *)&ss, out, AUTH_NETWORK_SIZE);
}

static void test_network_keys(void **state)
{
	char a[AUTH_NETWORK_SIZE], b[AUTH_NETWORK_SIZE];
	network_of("192.0.2.7", a);
	assert_string_equal(a, "192.0.2.7");
	network_of("192.0.2.8", b);
	assert_string_not_equal(a, b); /* IPv4: each address alone */
	network_of("::ffff:192.0.2.7", b);
	assert_string_equal(b, "192.0.2.7"); /* mapped: the IPv4 address */
	/* IPv6: the /64, whatever the interface identifier */
	network_of("2001:db8:1:2::5", a);
	assert_string_equal(a, "2001:db8:1:2::/64");
	network_of("2001:db8:1:2:ffff:eeee:dddd:cccc", b);
	assert_string_equal(a, b);
	network_of("2001:db8:1:3::5", b);
	assert_string_not_equal(a, b);
}

static void test_login_rule(void **state)
{
	char *c = auth_login_canonical("AlIcE@Example.COM", 17);
	assert_string_equal(c, "alice@example.com");
	free(c);
	c = auth_login_canonical("\xc3\x84LICE", 6); /* Ä: left alone */
	assert_string_equal(c, "\xc3\x84lice");
	free(c);
	assert_true(auth_login_same("alice", "ALICE"));
	assert_true(auth_login_same("Alice", "aLICE"));
	assert_false(auth_login_same("alice", "alice "));
	assert_false(auth_login_same("alice", "alic"));
	assert_false(auth_login_same("alice", "\xc3\xa4lice"));
	assert_false(auth_login_same("\xc3\x84lice", "\xc3\xa4lice"));
	assert_false(auth_login_same("alice", NULL));
}

static void test_log_field(void **state)
{
	char out[LOG_FIELD_SIZE];
	assert_string_equal(log_field_str(out, sizeof out, "alice"), "alice");
	assert_string_equal(log_field_str(out, sizeof out, "x from=203.0.113.9 method=X"),
			    "x\\x20from=203.0.113.9\\x20method=X");
	assert_string_equal(log_field(out, sizeof out, "a\nb\r\0\"\\\x7f\xc3", 9),
			    "a\\x0ab\\x0d\\x00\\x22\\x5c\\x7f\\xc3");
	assert_string_equal(log_field_str(out, sizeof out, NULL), "");
	/* cut, never inside an escape, and marked */
	char small[12];
	assert_string_equal(log_field_str(small, sizeof small, "abcdefghijklmnop"), "abcdefgh...");
	assert_string_equal(log_field_str(small, sizeof small, "abcdef   "), "abcdef...");
	assert_string_equal(log_field_str(small, sizeof small, "abcdefghijk"), "abcdefghijk");
	/* no space survives, however long */
	char big[5000];
	memset(big, ' ', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	log_field_str(out, sizeof out, big);
	assert_null(strchr(out, ' '));
	assert_true(strlen(out) < sizeof out);
}

/* Records without sleeping: a check that may start takes its slot at once. */
static void test_records(void **state)
{
	auth_penalty_reset();
	struct auth_attempt a;
	/* three checks go through at once (the grace), the fourth waits for
	 * the slot the third took */
	for (int i = 0; i < AUTH_PENALTY_GRACE; i++) {
		auth_attempt_init(&a, "192.0.2.1", "alice");
		assert_int_equal(auth_attempt_start(&a, 2, 30), 0);
		assert_int_not_equal(auth_attempt_end(&a, AUTH_OUTCOME_FAILURE, 2, 30), 0);
	}
	auth_attempt_init(&a, "192.0.2.1", "alice");
	long wait = auth_attempt_start(&a, 2, 30);
	assert_true(wait > 1000 && wait <= 8000);
	/* the same login from elsewhere waits too (the login's record) */
	auth_attempt_init(&a, "198.51.100.1", "alice");
	assert_true(auth_attempt_start(&a, 2, 30) > 1000);
	/* another login from elsewhere does not */
	auth_attempt_init(&a, "198.51.100.1", "bob");
	assert_int_equal(auth_attempt_start(&a, 2, 30), 0);
	assert_int_equal(auth_attempt_end(&a, AUTH_OUTCOME_SUCCESS, 2, 30), 0);
	/* defence off */
	auth_attempt_init(&a, "192.0.2.1", "alice");
	assert_int_equal(auth_attempt_start(&a, 0, 30), 0);
	assert_int_equal(auth_attempt_end(&a, AUTH_OUTCOME_FAILURE, 0, 30), 0);
}

/* Parallel attempts (none ended yet) queue: the grace covers pending
 * checks too. */
static void test_pending_checks_queue(void **state)
{
	auth_penalty_reset();
	struct auth_attempt a[AUTH_PENALTY_GRACE + 1];
	for (int i = 0; i < AUTH_PENALTY_GRACE; i++) {
		auth_attempt_init(&a[i], "192.0.2.2", "carol");
		assert_int_equal(auth_attempt_start(&a[i], 1, 30), 0);
	}
	auth_attempt_init(&a[AUTH_PENALTY_GRACE], "192.0.2.3", "carol");
	assert_true(auth_attempt_start(&a[AUTH_PENALTY_GRACE], 1, 30) > 0);
	for (int i = 0; i < AUTH_PENALTY_GRACE; i++)
		auth_attempt_end(&a[i], AUTH_OUTCOME_NONE, 1, 30);
}

/* A known pair skips the login's and the network's records. */
static void test_known_pair(void **state)
{
	auth_penalty_reset();
	struct auth_attempt a;
	auth_attempt_init(&a, "2001:db8:1:2::/64", "dave");
	assert_int_equal(auth_attempt_start(&a, 2, 30), 0);
	auth_attempt_end(&a, AUTH_OUTCOME_SUCCESS, 2, 30);
	/* an attack on dave from many networks, and on many logins from
	 * dave's network */
	for (int i = 0; i < 10; i++) {
		char net[32];
		snprintf(net, sizeof net, "203.0.113.%d", i);
		auth_attempt_init(&a, net, "dave");
		if (auth_attempt_start(&a, 2, 30) == 0)
			auth_attempt_end(&a, AUTH_OUTCOME_FAILURE, 2, 30);
		char login[32];
		snprintf(login, sizeof login, "user%d", i);
		auth_attempt_init(&a, "2001:db8:1:2::/64", login);
		if (auth_attempt_start(&a, 2, 30) == 0)
			auth_attempt_end(&a, AUTH_OUTCOME_FAILURE, 2, 30);
	}
	auth_attempt_init(&a, "203.0.113.99", "dave");
	assert_true(auth_attempt_start(&a, 2, 30) > 0); /* the login is held */
	auth_attempt_init(&a, "2001:db8:1:2::/64", "user99");
	assert_true(auth_attempt_start(&a, 2, 30) > 0); /* the network is held */
	auth_attempt_init(&a, "2001:db8:1:2::/64", "dave");
	assert_true(a.known);
	assert_int_equal(auth_attempt_start(&a, 2, 30), 0); /* the owner is not */
	assert_int_equal(auth_attempt_end(&a, AUTH_OUTCOME_SUCCESS, 2, 30), 0);
}

/* A stand-in keeps the scheme and the cost of what it stands for, and no
 * password verifies against it. */
static void test_password_standin(void **state)
{
	static const char *const schemes[] = {"SHA512-CRYPT", "BLF-CRYPT", "YESCRYPT", "ARGON2ID",
					      "SCRAM-SHA-256"};
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
		char err[128];
		char *stored = password_hash(schemes[i], "right", err, sizeof err);
		assert_non_null(stored);
		char *standin = password_standin(stored);
		assert_non_null(standin);
		assert_string_not_equal(standin, stored);
		/* the same scheme prefix and cost parameters */
		size_t same = strcspn(stored, ",");
		if (strcmp(schemes[i], "ARGON2ID") == 0)
			same = (size_t)(strstr(stored, "p=1$") - stored) + 4;
		else if (strcmp(schemes[i], "SCRAM-SHA-256") != 0)
			same = (size_t)(strchr(stored + strlen(schemes[i]) + 3, '$') - stored);
		assert_memory_equal(standin, stored, same);
		assert_int_equal(password_verify(standin, "right", 5), 0);
		assert_int_equal(password_verify(standin, "", 0), 0);
		free(standin);
		free(stored);
	}
	assert_null(password_standin("{PLAIN}pw"));
	assert_null(password_standin("plaintext"));
	assert_null(password_standin("{NOSUCH}x"));
	assert_null(password_standin("$6$"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_network_keys),
		cmocka_unit_test(test_login_rule),
		cmocka_unit_test(test_log_field),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_pending_checks_queue),
		cmocka_unit_test(test_known_pair),
		cmocka_unit_test(test_password_standin),
	};
	return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
