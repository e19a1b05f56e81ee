/* Unit tests for src/password.c: every scheme, malformed values, plaintext access and APOP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "password.h"

/* Published vectors (Drepper's SHA-crypt spec, OpenWall's bcrypt tests)
 * so that verification is checked against something libxcrypt did not
 * just produce; yescrypt/scrypt/argon2id ones were generated with fixed
 * salts and cheap parameters to keep the tests fast. */
#define SHA512_HELLO                                                                               \
	"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoE" \
	"OfaS35inz1"
#define BLF_2B_UU "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
#define BLF_2A_UU "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
#define YESCRYPT_SECRET "$y$j9T$abcdefghijklmnopqrstu.$7uryFExhLbAhrpK1WytVzeNObCUVaK3VoKccP3fJEIB"
#define SCRYPT_SECRET "$7$CU..../....abcdefghijklmnop$XFPPWJganQ6Nq0QhVHxk/yHxMXizE0OJDowAsO4.RIA"
#define ARGON2ID_SECRET                                                                            \
	"$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$azfZBd5qxhOl2u4YH28/7xKwTHeWsd0r8eHso4B" \
	"rzb4"

static int verify(const char *stored, const char *given)
{
	return password_verify(stored, given, strlen(given));
}

static void test_plain_unprefixed(void **state)
{
	(void)state;
	assert_int_equal(verify("secret", "secret"), 1);
	assert_int_equal(verify("secret", "Secret"), 0);
	assert_int_equal(verify("secret", "secre"), 0);
	assert_int_equal(verify("secret", "secret1"), 0);
	assert_int_equal(verify("secret", ""), 0);
	/* Only the given length counts: trailing bytes beyond it are ignored. */
	assert_int_equal(password_verify("secret", "secretXYZ", 6), 1);
	/* An embedded NUL must not truncate the given password. */
	assert_int_equal(password_verify("secret", "secret\0x", 8), 0);
}

static void test_plain_prefixed(void **state)
{
	(void)state;
	assert_int_equal(verify("{PLAIN}secret", "secret"), 1);
	assert_int_equal(verify("{PLAIN}secret", "secreT"), 0);
	assert_int_equal(verify("{plain}secret", "secret"), 1);
	assert_int_equal(verify("{Plain}secret", "{PLAIN}secret"), 0);
	/* The data may itself start with "{" or "$" once prefixed. */
	assert_int_equal(verify("{PLAIN}{x}$6$", "{x}$6$"), 1);
}

static void test_empty_password(void **state)
{
	(void)state;
	/* "{PLAIN}" explicitly stores the empty password. */
	assert_int_equal(verify("{PLAIN}", ""), 1);
	assert_int_equal(verify("{PLAIN}", "x"), 0);
	assert_int_equal(password_verify("{PLAIN}", NULL, 0), 1);
	/* An empty column is not a password. */
	assert_int_equal(verify("", ""), -1);
	assert_int_equal(verify("", "x"), -1);
	/* Empty given password against every hashing scheme. */
	assert_int_equal(verify(SHA512_HELLO, ""), 0);
	assert_int_equal(verify(BLF_2B_UU, ""), 0);
	assert_int_equal(verify(YESCRYPT_SECRET, ""), 0);
	assert_int_equal(verify(ARGON2ID_SECRET, ""), 0);
}

static void test_sha512_crypt(void **state)
{
	(void)state;
	assert_int_equal(verify("{SHA512-CRYPT}" SHA512_HELLO, "Hello world!"), 1);
	assert_int_equal(verify("{SHA512-CRYPT}" SHA512_HELLO, "Hello world"), 0);
	assert_int_equal(verify("{sha512-crypt}" SHA512_HELLO, "Hello world!"), 1);
	assert_int_equal(verify(SHA512_HELLO, "Hello world!"), 1);
	assert_int_equal(verify(SHA512_HELLO, "hello world!"), 0);
	assert_int_equal(verify("{CRYPT}" SHA512_HELLO, "Hello world!"), 1);
	assert_int_equal(verify("{CRYPT}" SHA512_HELLO, "Hello"), 0);
	/* crypt(3) sees C strings: a NUL in the given password cannot match. */
	assert_int_equal(password_verify(SHA512_HELLO, "Hello world!\0", 13), 0);
}

static void test_blf_crypt(void **state)
{
	(void)state;
	assert_int_equal(verify("{BLF-CRYPT}" BLF_2B_UU, "U*U"), 1);
	assert_int_equal(verify("{BLF-CRYPT}" BLF_2B_UU, "U*V"), 0);
	assert_int_equal(verify("{blf-crypt}" BLF_2A_UU, "U*U"), 1);
	assert_int_equal(verify(BLF_2B_UU, "U*U"), 1);
	assert_int_equal(verify(BLF_2B_UU, "U*"), 0);
	assert_int_equal(verify(BLF_2A_UU, "U*U"), 1);
}

static void test_yescrypt(void **state)
{
	(void)state;
	assert_int_equal(verify("{YESCRYPT}" YESCRYPT_SECRET, "secret"), 1);
	assert_int_equal(verify("{YESCRYPT}" YESCRYPT_SECRET, "Secret"), 0);
	assert_int_equal(verify("{yescrypt}" YESCRYPT_SECRET, "secret"), 1);
	assert_int_equal(verify(YESCRYPT_SECRET, "secret"), 1);
	assert_int_equal(verify(YESCRYPT_SECRET, "secrets"), 0);
	assert_int_equal(verify(SCRYPT_SECRET, "secret"), 1);
	assert_int_equal(verify(SCRYPT_SECRET, "secreT"), 0);
}

static void test_argon2id(void **state)
{
	(void)state;
	assert_int_equal(verify("{ARGON2ID}" ARGON2ID_SECRET, "secret"), 1);
	assert_int_equal(verify("{ARGON2ID}" ARGON2ID_SECRET, "secrer"), 0);
	assert_int_equal(verify("{argon2id}" ARGON2ID_SECRET, "secret"), 1);
	assert_int_equal(verify(ARGON2ID_SECRET, "secret"), 1);
	assert_int_equal(verify(ARGON2ID_SECRET, "secret "), 0);
	assert_int_equal(password_verify(ARGON2ID_SECRET, "secret\0", 7), 0);
}

static void test_unknown_scheme(void **state)
{
	(void)state;
	assert_int_equal(verify("{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69", "secret"), -1);
	assert_int_equal(verify("{}secret", "secret"), -1);
	assert_int_equal(verify("{PLAIN", "secret"), -1);
	assert_int_equal(verify("{PLAINX}secret", "secret"), -1);
	assert_int_equal(verify("$1$abc$def", "secret"), -1);
	assert_int_equal(verify("$foo", "$foo"), -1);
	assert_int_equal(password_verify(NULL, "x", 1), -1);
	assert_false(password_scheme_known("MD5"));
	assert_false(password_scheme_known(""));
	assert_false(password_scheme_known(NULL));
	/* CRYPT verifies but is not something password_hash writes. */
	assert_false(password_scheme_known("CRYPT"));
	assert_true(password_scheme_known("SHA512-CRYPT"));
	assert_true(password_scheme_known("blf-crypt"));
	assert_true(password_scheme_known("YESCRYPT"));
	assert_true(password_scheme_known("Argon2ID"));
	assert_true(password_scheme_known("PLAIN"));
	assert_true(password_scheme_known(PASSWORD_DEFAULT_SCHEME));
}

static void test_malformed(void **state)
{
	(void)state;
	assert_int_equal(verify("{SHA512-CRYPT}garbage", "garbage"), -1);
	assert_int_equal(verify("{SHA512-CRYPT}", ""), -1);
	assert_int_equal(verify("$6$", "x"), -1);
	assert_int_equal(verify("$6$saltstring", "Hello world!"), -1);
	assert_int_equal(verify("$6$saltstring$", "Hello world!"), -1);
	/* A hash filed under another scheme's name. */
	assert_int_equal(verify("{SHA512-CRYPT}" BLF_2B_UU, "U*U"), -1);
	assert_int_equal(verify("{BLF-CRYPT}" SHA512_HELLO, "Hello world!"), -1);
	assert_int_equal(verify("{ARGON2ID}" SHA512_HELLO, "Hello world!"), -1);
	assert_int_equal(verify("{BLF-CRYPT}$2b$", "x"), -1);
	assert_int_equal(verify("$2b$05$short", "x"), -1);
	assert_int_equal(verify("$y$", "x"), -1);
	assert_int_equal(verify("$7$", "x"), -1);
	assert_int_equal(verify("{CRYPT}*", "x"), -1);
	assert_int_equal(verify("{CRYPT}", "x"), -1);
	assert_int_equal(verify("{ARGON2ID}$argon2id$garbage", "x"), -1);
	assert_int_equal(verify("$argon2id$v=19$m=1024,t=2,p=1$c2FsdA", "x"), -1);
}

static void check_round_trip(const char *scheme, const char *canonical, const char *pw)
{
	char err[256] = "";
	char *h = password_hash(scheme, pw, err, sizeof(err));
	assert_non_null(h);
	assert_string_equal(err, "");
	size_t n = strlen(canonical);
	assert_true(strlen(h) >= n + 2);
	assert_int_equal(h[0], '{');
	assert_memory_equal(h + 1, canonical, n);
	assert_int_equal(h[n + 1], '}');
	assert_int_equal(verify(h, pw), 1);
	assert_int_equal(verify(h, "not the password"), 0);
	/* Salted schemes give a new hash each time; PLAIN does not. */
	char *h2 = password_hash(scheme, pw, err, sizeof(err));
	assert_non_null(h2);
	if (strcmp(canonical, "PLAIN") == 0)
		assert_string_equal(h, h2);
	else
		assert_string_not_equal(h, h2);
	assert_int_equal(verify(h2, pw), 1);
	free(h);
	free(h2);
}

static void test_hash_round_trip(void **state)
{
	(void)state;
	check_round_trip("SHA512-CRYPT", "SHA512-CRYPT", "p4ss word");
	check_round_trip("sha512-crypt", "SHA512-CRYPT", "");
	check_round_trip("BLF-CRYPT", "BLF-CRYPT", "p4ss word");
	check_round_trip("YESCRYPT", "YESCRYPT", "p4ss word");
	check_round_trip("ARGON2ID", "ARGON2ID", "p4ss word");
	check_round_trip("PLAIN", "PLAIN", "p4ss word");
	check_round_trip("plain", "PLAIN", "");
	check_round_trip(PASSWORD_DEFAULT_SCHEME, "SHA512-CRYPT", "x");
}

static void test_hash_formats(void **state)
{
	(void)state;
	char err[256] = "";
	char *h;

	/* Default rounds: no "rounds=" parameter in the setting. */
	h = password_hash("SHA512-CRYPT", "pw", err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "{SHA512-CRYPT}$6$", 17);
	assert_null(strstr(h, "rounds="));
	free(h);

	h = password_hash("BLF-CRYPT", "pw", err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "{BLF-CRYPT}$2b$10$", 18);
	free(h);

	h = password_hash("YESCRYPT", "pw", err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "{YESCRYPT}$y$", 13);
	free(h);

	h = password_hash("ARGON2ID", "pw", err, sizeof(err));
	assert_non_null(h);
	assert_memory_equal(h, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$", 41);
	free(h);

	h = password_hash("PLAIN", "pw", err, sizeof(err));
	assert_string_equal(h, "{PLAIN}pw");
	free(h);
}

static void test_hash_unknown_scheme(void **state)
{
	(void)state;
	char err[256] = "";
	assert_null(password_hash("MD5", "pw", err, sizeof(err)));
	assert_true(err[0] != '\0');
	err[0] = '\0';
	assert_null(password_hash("CRYPT", "pw", err, sizeof(err)));
	assert_true(err[0] != '\0');
	assert_null(password_hash("", "pw", err, sizeof(err)));
	/* No room for a message must not crash. */
	assert_null(password_hash("MD5", "pw", NULL, 0));
}

static void test_plaintext(void **state)
{
	(void)state;
	const char *s = "{PLAIN}secret";
	assert_ptr_equal(password_plaintext(s), s + 7);
	s = "{plain}secret";
	assert_ptr_equal(password_plaintext(s), s + 7);
	s = "{PLAIN}";
	assert_string_equal(password_plaintext(s), "");
	s = "secret";
	assert_ptr_equal(password_plaintext(s), s);
	assert_null(password_plaintext("{SHA512-CRYPT}" SHA512_HELLO));
	assert_null(password_plaintext(SHA512_HELLO));
	assert_null(password_plaintext("{ARGON2ID}" ARGON2ID_SECRET));
	assert_null(password_plaintext("{UNKNOWN}x"));
	assert_null(password_plaintext(""));
	assert_null(password_plaintext(NULL));
}

#define RFC_TS "<1896.697170952@dbc.mtview.ca.us>"
#define RFC_DIGEST "c4c9334bac560ecc979e58001b3e22fb"

static void test_apop(void **state)
{
	(void)state;
	assert_int_equal(password_apop_verify("tanstaaf", RFC_TS, RFC_DIGEST, 32), 1);
	assert_int_equal(password_apop_verify("{PLAIN}tanstaaf", RFC_TS, RFC_DIGEST, 32), 1);
	assert_int_equal(
		password_apop_verify("tanstaaf", RFC_TS, "C4C9334BAC560ECC979E58001B3E22FB", 32), 1);
	assert_int_equal(password_apop_verify("tanstaaF", RFC_TS, RFC_DIGEST, 32), 0);
	assert_int_equal(password_apop_verify("tanstaaf", "<1896.697170953@dbc.mtview.ca.us>",
					      RFC_DIGEST, 32),
			 0);
	assert_int_equal(
		password_apop_verify("tanstaaf", RFC_TS, "c4c9334bac560ecc979e58001b3e22fc", 32), 0);
	/* Wrong lengths, including a correct prefix. */
	assert_int_equal(password_apop_verify("tanstaaf", RFC_TS, RFC_DIGEST, 31), 0);
	assert_int_equal(password_apop_verify("tanstaaf", RFC_TS, RFC_DIGEST "0", 33), 0);
	assert_int_equal(password_apop_verify("tanstaaf", RFC_TS, "", 0), 0);
	/* No plaintext to compute with. */
	assert_int_equal(password_apop_verify(SHA512_HELLO, RFC_TS, RFC_DIGEST, 32), 0);
	assert_int_equal(password_apop_verify("", RFC_TS, RFC_DIGEST, 32), 0);
}

static void test_dummy(void **state)
{
	(void)state;
	password_verify_dummy("anything", 8);
	password_verify_dummy("", 0);
	password_verify_dummy(NULL, 0);
	password_verify_dummy("with\0nul", 8);
}

/* Several workers verify at once in the server: results must not mix. */
struct thread_case {
	const char *stored;
	const char *good;
	int failures;
};

static void *thread_main(void *arg)
{
	struct thread_case *c = arg;
	for (int i = 0; i < 10; i++) {
		if (verify(c->stored, c->good) != 1)
			c->failures++;
		if (verify(c->stored, "wrong") != 0)
			c->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct thread_case cases[] = {
		{SHA512_HELLO, "Hello world!", 0}, {BLF_2B_UU, "U*U", 0},
		{YESCRYPT_SECRET, "secret", 0},	   {ARGON2ID_SECRET, "secret", 0},
		{SHA512_HELLO, "Hello world!", 0}, {"{PLAIN}abc", "abc", 0},
	};
	enum { N = sizeof(cases) / sizeof(cases[0]) };
	pthread_t th[N];
	for (size_t i = 0; i < N; i++)
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &cases[i]), 0);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(cases[i].failures, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_unprefixed), cmocka_unit_test(test_plain_prefixed),
		cmocka_unit_test(test_empty_password),	 cmocka_unit_test(test_sha512_crypt),
		cmocka_unit_test(test_blf_crypt),	 cmocka_unit_test(test_yescrypt),
		cmocka_unit_test(test_argon2id),	 cmocka_unit_test(test_unknown_scheme),
		cmocka_unit_test(test_malformed),	 cmocka_unit_test(test_hash_round_trip),
		cmocka_unit_test(test_hash_formats),	 cmocka_unit_test(test_hash_unknown_scheme),
		cmocka_unit_test(test_plaintext),	 cmocka_unit_test(test_apop),
		cmocka_unit_test(test_dummy),		 cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
