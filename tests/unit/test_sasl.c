/* Unit tests for src/sasl.c (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256), the
 * SCRAM-SHA-256 password scheme in src/password.c and src/base64.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "buf.h"
#include "password.h"
#include "sasl.h"

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL_NO_PROOF "c=biws,r=" RFC_CNONCE RFC_SNONCE
#define RFC_CLIENT_FINAL                                                                           \
	RFC_CLIENT_FINAL_NO_PROOF ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* StoredKey and ServerKey of "pencil" with the RFC's salt and 4096
 * iterations, computed independently (Python hashlib/hmac). */
#define RFC_SECRET_DATA                                                                            \
	"4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"                       \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define RFC_SECRET "{SCRAM-SHA-256}" RFC_SECRET_DATA

/* RFC 2195 section 2. */
#define CRAM_CHALLENGE "<1896.697170952@postoffice.reston.mci.net>"
#define CRAM_CHALLENGE_B64 "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
#define CRAM_RESPONSE "tim b913a602c7eda7a495b4e6e7334d3890"
#define CRAM_PASSWORD "tanstaaftanstaaf"

#define SHA512_HELLO                                                                               \
	"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoE" \
	"OfaS35inz1"

static const unsigned char salt_key[33] = "0123456789abcdef0123456789abcdef";

static const struct sasl_setup setup = {
	.cram_challenge = CRAM_CHALLENGE,
	.scram_nonce = RFC_SNONCE,
	.scram_salt_key = salt_key,
	.scram_salt_key_len = 32,
};

/* base64 of a C string, in a static buffer (tests only). */
static const char *b64(const char *s, size_t len)
{
	static char out[2][4096];
	static int which;
	which ^= 1;
	assert_true(BASE64_ENCODED_LEN(len) < sizeof(out[0]));
	base64_encode(s, len, out[which]);
	return out[which];
}

static const char *b64s(const char *s)
{
	return b64(s, strlen(s));
}

/* The decoded challenge in out, NUL-terminated, in a static buffer. */
static const char *decoded(struct buf *out)
{
	static char text[4096];
	size_t n = 0;
	assert_int_equal(base64_decode(out->data ? out->data : "", out->len, (unsigned char *)text,
				       sizeof(text) - 1, &n),
			 0);
	text[n] = '\0';
	return text;
}

static enum sasl_status step_str(struct sasl *s, const char *raw, struct buf *out)
{
	const char *enc = b64s(raw);
	return sasl_step(s, enc, strlen(enc), out);
}

static enum sasl_status start_str(struct sasl *s, const char *raw, struct buf *out)
{
	const char *enc = b64s(raw);
	return sasl_start(s, enc, strlen(enc), out);
}

/* ---- base64 ---- */

static void test_base64(void **state)
{
	(void)state;
	static const struct {
		const char *plain, *enc;
	} v[] = {{"", ""},	    {"f", "Zg=="},	{"fo", "Zm8="},	      {"foo", "Zm9v"},
		 {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char enc[32];
		unsigned char dec[32];
		size_t n = 99;
		assert_int_equal(base64_encode(v[i].plain, strlen(v[i].plain), enc), strlen(v[i].enc));
		assert_string_equal(enc, v[i].enc);
		assert_int_equal(base64_decode(v[i].enc, strlen(v[i].enc), dec, sizeof(dec), &n), 0);
		assert_int_equal(n, strlen(v[i].plain));
		assert_memory_equal(dec, v[i].plain, n);
	}
	static const char *const bad[] = {
		"Zg=",	    /* length not a multiple of 4 */
		"Zg",	    /* unpadded */
		"=Zg=",	    /* pad first */
		"Zg=a",	    /* pad in the middle */
		"Zm=v",	    /* pad in the middle */
		"Zg==Zm9v", /* pad before the end */
		"====",	    /* all pad */
		"Z===",	    /* three pads */
		"Zh==",	    /* non-zero unused bits */
		"Zm9=",	    /* non-zero unused bits */
		"Zm9v\n",   /* line end */
		"Zm 9v",    /* space */
		"Zm9-",	    /* base64url alphabet */
		"Zm9_",	    /* base64url alphabet */
		"Zm\x009v", /* NUL */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned char dec[32];
		size_t n = 99, len = strlen(bad[i]);
		if (i == sizeof(bad) / sizeof(bad[0]) - 1)
			len = 5;
		assert_int_equal(base64_decode(bad[i], len, dec, sizeof(dec), &n), -1);
		assert_int_equal(n, 0);
	}
	/* Too little room. */
	unsigned char small[5];
	size_t n;
	assert_int_equal(base64_decode("Zm9vYmFy", 8, small, sizeof(small), &n), -1);
	assert_int_equal(base64_decode("Zm9vYmE=", 8, small, sizeof(small), &n), 0);
	assert_int_equal(n, 5);
}

/* ---- mechanism list ---- */

static void test_mechanisms(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	sasl_list_mechanisms(SASL_PASSWORDS_PLAINTEXT, &b);
	assert_string_equal(buf_cstr(&b), "SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN");
	buf_truncate(&b, 0);
	sasl_list_mechanisms(SASL_PASSWORDS_HASHED, &b);
	assert_string_equal(buf_cstr(&b), "PLAIN LOGIN");
	buf_truncate(&b, 0);
	sasl_list_mechanisms(SASL_PASSWORDS_SCRAM | SASL_PASSWORDS_HASHED, &b);
	assert_string_equal(buf_cstr(&b), "SCRAM-SHA-256 PLAIN LOGIN");
	buf_truncate(&b, 0);
	sasl_list_mechanisms(0, &b);
	assert_string_equal(buf_cstr(&b), "");
	buf_free(&b);

	assert_true(sasl_mechanism_known("plain"));
	assert_true(sasl_mechanism_known("Scram-Sha-256"));
	assert_false(sasl_mechanism_known("SCRAM-SHA-256-PLUS"));
	assert_false(sasl_mechanism_known("DIGEST-MD5"));
	assert_false(sasl_mechanism_known(""));
	assert_false(sasl_mechanism_known(NULL));
	assert_false(sasl_mechanism_usable("CRAM-MD5", SASL_PASSWORDS_SCRAM));
	assert_true(sasl_mechanism_usable("cram-md5", SASL_PASSWORDS_PLAINTEXT));
	assert_false(sasl_mechanism_usable("XOAUTH2", SASL_PASSWORDS_PLAINTEXT));
	for (size_t i = 0; sasl_mechanisms[i] != NULL; i++)
		assert_true(sasl_mechanism_known(sasl_mechanisms[i]));
}

static void test_new(void **state)
{
	(void)state;
	struct sasl *s;
	assert_null(sasl_new("DIGEST-MD5", &setup));
	assert_null(sasl_new("", &setup));
	assert_null(sasl_new(NULL, &setup));
	assert_null(sasl_new("PLAIN ", &setup));

	s = sasl_new("plain", NULL);
	assert_non_null(s);
	assert_string_equal(sasl_mechanism(s), "PLAIN");
	assert_string_equal(sasl_reason(s), "");
	assert_null(sasl_authcid(s));
	assert_null(sasl_password(s, NULL));
	sasl_free(s);
	s = sasl_new("login", NULL);
	assert_non_null(s);
	sasl_free(s);
	sasl_free(NULL);

	/* CRAM-MD5 needs a challenge. */
	assert_null(sasl_new("CRAM-MD5", NULL));
	struct sasl_setup su = setup;
	su.cram_challenge = "";
	assert_null(sasl_new("CRAM-MD5", &su));

	/* SCRAM needs a good nonce and a salt key. */
	assert_null(sasl_new("SCRAM-SHA-256", NULL));
	su = setup;
	su.scram_nonce = NULL;
	assert_null(sasl_new("SCRAM-SHA-256", &su));
	su.scram_nonce = "short";
	assert_null(sasl_new("SCRAM-SHA-256", &su));
	su.scram_nonce = "0123456789,abcdefghij";
	assert_null(sasl_new("SCRAM-SHA-256", &su));
	su.scram_nonce = "0123456789 abcdefghij";
	assert_null(sasl_new("SCRAM-SHA-256", &su));
	su = setup;
	su.scram_salt_key_len = 8;
	assert_null(sasl_new("SCRAM-SHA-256", &su));
	su.scram_salt_key = NULL;
	su.scram_salt_key_len = 32;
	assert_null(sasl_new("SCRAM-SHA-256", &su));
	s = sasl_new("scram-sha-256", &setup);
	assert_non_null(s);
	assert_string_equal(sasl_mechanism(s), "SCRAM-SHA-256");
	sasl_free(s);
}

/* ---- PLAIN ---- */

/* What the session does after SASL_VERIFY_PASSWORD. */
static int session_verify(struct sasl *s, const char *stored)
{
	size_t len = 0;
	const char *pw = sasl_password(s, &len);
	assert_non_null(pw);
	assert_non_null(sasl_authcid(s));
	if (stored == NULL) {
		password_verify_dummy(pw, len);
		return 0;
	}
	return password_verify(stored, pw, len);
}

static void test_plain_initial_response(void **state)
{
	(void)state;
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("PLAIN", &setup);
	static const char msg[] = "\0alice\0secret";
	const char *ir = b64(msg, sizeof(msg) - 1);
	assert_int_equal(sasl_start(s, ir, strlen(ir), &out), SASL_VERIFY_PASSWORD);
	assert_string_equal(sasl_authcid(s), "alice");
	size_t len;
	assert_string_equal(sasl_password(s, &len), "secret");
	assert_int_equal(len, 6);
	assert_int_equal(out.len, 0);
	/* right password, wrong password, another scheme, unknown user */
	assert_int_equal(session_verify(s, "{PLAIN}secret"), 1);
	assert_int_equal(session_verify(s, "{PLAIN}other"), 0);
	assert_int_equal(session_verify(s, RFC_SECRET), 0);
	assert_int_equal(session_verify(s, NULL), 0);
	/* The exchange is over. */
	assert_int_equal(step_str(s, "x", &out), SASL_MALFORMED);
	sasl_free(s);

	/* SCRAM secrets verify PLAIN passwords too. */
	s = sasl_new("PLAIN", NULL);
	static const char msg2[] = "user\0user\0pencil";
	ir = b64(msg2, sizeof(msg2) - 1);
	assert_int_equal(sasl_start(s, ir, strlen(ir), &out), SASL_VERIFY_PASSWORD);
	assert_string_equal(sasl_authcid(s), "user");
	assert_int_equal(session_verify(s, RFC_SECRET), 1);
	sasl_free(s);
	buf_free(&out);
}

static void test_plain_no_initial_response(void **state)
{
	(void)state;
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_non_null(out.data);
	assert_string_equal(out.data, ""); /* "+ " */
	static const char msg[] = "\0bob\0pw with spaces";
	const char *r = b64(msg, sizeof(msg) - 1);
	assert_int_equal(sasl_step(s, r, strlen(r), &out), SASL_VERIFY_PASSWORD);
	assert_string_equal(sasl_authcid(s), "bob");
	assert_string_equal(sasl_password(s, NULL), "pw with spaces");
	assert_int_equal(session_verify(s, "pw with spaces"), 1);
	sasl_free(s);

	/* Cancel instead of answering. */
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "*", 1, &out), SASL_CANCELLED);
	assert_string_not_equal(sasl_reason(s), "");
	assert_null(sasl_password(s, NULL));
	assert_int_equal(sasl_step(s, "*", 1, &out), SASL_MALFORMED);
	sasl_free(s);
	buf_free(&out);
}

static enum sasl_status plain_once(const char *msg, size_t len, bool initial)
{
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("PLAIN", NULL);
	const char *r = b64(msg, len);
	enum sasl_status st;
	if (initial) {
		st = sasl_start(s, r, strlen(r), &out);
	} else {
		assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
		st = sasl_step(s, r, strlen(r), &out);
	}
	if (st == SASL_MALFORMED)
		assert_string_not_equal(sasl_reason(s), "");
	sasl_free(s);
	buf_free(&out);
	return st;
}

#define PLAIN(lit, ir) plain_once(lit, sizeof(lit) - 1, ir)

static void test_plain_malformed(void **state)
{
	(void)state;
	for (int ir = 0; ir < 2; ir++) {
		assert_int_equal(PLAIN("\0alice\0secret", ir), SASL_VERIFY_PASSWORD);
		assert_int_equal(PLAIN("alice\0alice\0secret", ir), SASL_VERIFY_PASSWORD);
		assert_int_equal(PLAIN("admin\0alice\0secret", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("alicex\0alice\0secret", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("alice\0secret", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("alicesecret", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("\0\0", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("\0alice\0", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("\0\0secret", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("\0alice\0sec\0ret", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("\0ali\rce\0secret", ir), SASL_MALFORMED);
		assert_int_equal(PLAIN("\0ali\nce\0secret", ir), SASL_MALFORMED);
	}
	struct buf out = BUF_INIT;
	struct sasl *s;
	/* "=" is the empty initial response: a PLAIN message with no fields. */
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, "=", 1, &out), SASL_MALFORMED);
	sasl_free(s);
	/* Bad base64 in the initial response and in a response. */
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, "AGFsaWNlAHNlY3JldA", 18, &out), SASL_MALFORMED);
	assert_string_equal(sasl_reason(s), "bad base64");
	sasl_free(s);
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "AGFsaWNl*HNlY3JldA==", 20, &out), SASL_MALFORMED);
	sasl_free(s);
	/* "*" as an initial response is not base64. */
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, "*", 1, &out), SASL_MALFORMED);
	sasl_free(s);
	/* Too long. */
	char big[SASL_MAX_RESPONSE + 5];
	memset(big, 'A', sizeof(big));
	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, big, sizeof(big) - 1, &out), SASL_MALFORMED);
	assert_string_equal(sasl_reason(s), "response too long");
	sasl_free(s);
	/* A login over the limit, a password over the limit. */
	char msg[2 + SASL_MAX_PASSWORD + 10];
	memset(msg, 'a', sizeof(msg));
	msg[0] = '\0';
	msg[SASL_MAX_LOGIN + 2] = '\0';
	assert_int_equal(plain_once(msg, SASL_MAX_LOGIN + 4, true), SASL_MALFORMED);
	msg[SASL_MAX_LOGIN + 2] = 'a';
	msg[SASL_MAX_LOGIN + 1] = '\0';
	assert_int_equal(plain_once(msg, SASL_MAX_LOGIN + 3, true), SASL_VERIFY_PASSWORD);
	msg[6] = '\0';
	msg[SASL_MAX_LOGIN + 1] = 'a';
	assert_int_equal(plain_once(msg, 7 + SASL_MAX_PASSWORD, true), SASL_VERIFY_PASSWORD);
	assert_int_equal(plain_once(msg, 8 + SASL_MAX_PASSWORD, true), SASL_MALFORMED);
	buf_free(&out);
}

/* ---- LOGIN ---- */

static void test_login(void **state)
{
	(void)state;
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("LOGIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_string_equal(out.data, "VXNlcm5hbWU6");
	assert_int_equal(step_str(s, "alice", &out), SASL_CHALLENGE);
	assert_string_equal(out.data, "UGFzc3dvcmQ6");
	assert_string_equal(sasl_authcid(s), "alice");
	assert_null(sasl_password(s, NULL));
	assert_int_equal(step_str(s, "secret", &out), SASL_VERIFY_PASSWORD);
	assert_string_equal(sasl_password(s, NULL), "secret");
	assert_int_equal(session_verify(s, "secret"), 1);
	assert_int_equal(session_verify(s, "{SHA512-CRYPT}" SHA512_HELLO), 0);
	assert_int_equal(session_verify(s, NULL), 0);
	sasl_free(s);

	/* The user name as initial response. */
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(start_str(s, "Hello", &out), SASL_CHALLENGE);
	assert_string_equal(decoded(&out), "Password:");
	assert_int_equal(step_str(s, "world!", &out), SASL_VERIFY_PASSWORD);
	assert_string_equal(sasl_authcid(s), "Hello");
	assert_int_equal(session_verify(s, SHA512_HELLO), 0);
	sasl_free(s);

	/* Cancel at either prompt. */
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "*", 1, &out), SASL_CANCELLED);
	sasl_free(s);
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_int_equal(step_str(s, "alice", &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "*", 1, &out), SASL_CANCELLED);
	assert_null(sasl_password(s, NULL));
	sasl_free(s);

	/* Empty user name, empty password, NULs, bad base64. */
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "", 0, &out), SASL_MALFORMED);
	sasl_free(s);
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(sasl_start(s, "=", 1, &out), SASL_MALFORMED);
	sasl_free(s);
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(start_str(s, "alice", &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "", 0, &out), SASL_MALFORMED);
	sasl_free(s);
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	const char *r = b64("al\0ce", 5);
	assert_int_equal(sasl_step(s, r, strlen(r), &out), SASL_MALFORMED);
	sasl_free(s);
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(start_str(s, "alice", &out), SASL_CHALLENGE);
	r = b64("sec\0ret", 7);
	assert_int_equal(sasl_step(s, r, strlen(r), &out), SASL_MALFORMED);
	sasl_free(s);
	s = sasl_new("LOGIN", NULL);
	assert_int_equal(start_str(s, "alice", &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "c2VjcmV0=", 9, &out), SASL_MALFORMED);
	sasl_free(s);
	buf_free(&out);
}

/* ---- CRAM-MD5 ---- */

static enum sasl_status cram_run(const char *response, const char *stored, const char **reason)
{
	static char why[128];
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("CRAM-MD5", &setup);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_string_equal(out.data, CRAM_CHALLENGE_B64);
	enum sasl_status st = step_str(s, response, &out);
	if (st == SASL_NEED_USER) {
		assert_int_equal(sasl_set_credentials(s, stored), 0);
		assert_int_equal(sasl_set_credentials(s, stored), -1);
		st = sasl_resume(s, &out);
		assert_int_equal(out.len, 0);
	}
	snprintf(why, sizeof(why), "%s", sasl_reason(s));
	if (reason != NULL)
		*reason = why;
	sasl_free(s);
	buf_free(&out);
	return st;
}

static void test_cram_md5(void **state)
{
	(void)state;
	const char *why;
	/* RFC 2195's example. */
	assert_int_equal(cram_run(CRAM_RESPONSE, CRAM_PASSWORD, &why), SASL_SUCCESS);
	assert_string_equal(why, "");
	assert_int_equal(cram_run(CRAM_RESPONSE, "{PLAIN}" CRAM_PASSWORD, NULL), SASL_SUCCESS);
	assert_int_equal(cram_run("tim B913A602C7EDA7A495B4E6E7334D3890", CRAM_PASSWORD, NULL),
			 SASL_SUCCESS);
	/* Wrong password, unknown user, hashed password: the same status. */
	assert_int_equal(cram_run(CRAM_RESPONSE, "tanstaaftanstaaF", &why), SASL_FAILURE);
	assert_string_equal(why, "wrong password");
	assert_int_equal(cram_run(CRAM_RESPONSE, NULL, &why), SASL_FAILURE);
	assert_string_equal(why, "unknown user");
	assert_int_equal(cram_run(CRAM_RESPONSE, "{SHA512-CRYPT}" SHA512_HELLO, &why),
			 SASL_FAILURE);
	assert_int_equal(cram_run(CRAM_RESPONSE, RFC_SECRET, NULL), SASL_FAILURE);
	assert_int_equal(cram_run(CRAM_RESPONSE, "", NULL), SASL_FAILURE);
	assert_int_equal(cram_run("tim b913a602c7eda7a495b4e6e7334d3891", CRAM_PASSWORD, NULL),
			 SASL_FAILURE);
	/* A user name with spaces: the digest is after the last one (and
	 * does not depend on the name: the lookup gave this password). */
	assert_int_equal(cram_run("tim smith b913a602c7eda7a495b4e6e7334d3890", CRAM_PASSWORD,
				  NULL),
			 SASL_SUCCESS);

	/* Malformed responses. */
	assert_int_equal(cram_run("tim", CRAM_PASSWORD, NULL), SASL_MALFORMED);
	assert_int_equal(cram_run("", CRAM_PASSWORD, NULL), SASL_MALFORMED);
	assert_int_equal(cram_run(" b913a602c7eda7a495b4e6e7334d3890", CRAM_PASSWORD, NULL),
			 SASL_MALFORMED);
	assert_int_equal(cram_run("tim b913a602c7eda7a495b4e6e7334d389", CRAM_PASSWORD, NULL),
			 SASL_MALFORMED);
	assert_int_equal(cram_run("tim b913a602c7eda7a495b4e6e7334d38900", CRAM_PASSWORD, NULL),
			 SASL_MALFORMED);
	assert_int_equal(cram_run("tim g913a602c7eda7a495b4e6e7334d3890", CRAM_PASSWORD, NULL),
			 SASL_MALFORMED);
	assert_int_equal(cram_run("tim b913a602c7eda7a495b4e6e7334d3890 ", CRAM_PASSWORD, NULL),
			 SASL_MALFORMED);

	struct buf out = BUF_INIT;
	struct sasl *s;
	/* CRAM-MD5 is server-first: no initial response. */
	s = sasl_new("CRAM-MD5", &setup);
	assert_int_equal(start_str(s, CRAM_RESPONSE, &out), SASL_MALFORMED);
	sasl_free(s);
	s = sasl_new("CRAM-MD5", &setup);
	assert_int_equal(sasl_start(s, "=", 1, &out), SASL_MALFORMED);
	sasl_free(s);
	/* Cancel. */
	s = sasl_new("CRAM-MD5", &setup);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "*", 1, &out), SASL_CANCELLED);
	sasl_free(s);
	/* NUL inside. */
	s = sasl_new("CRAM-MD5", &setup);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	static const char nul[] = "t\0m b913a602c7eda7a495b4e6e7334d3890";
	const char *r = b64(nul, sizeof(nul) - 1);
	assert_int_equal(sasl_step(s, r, strlen(r), &out), SASL_MALFORMED);
	sasl_free(s);
	buf_free(&out);
}

/* ---- SCRAM-SHA-256 ---- */

static void test_scram_secret_format(void **state)
{
	(void)state;
	unsigned char salt[16];
	size_t n;
	struct password_scram k;
	assert_int_equal(base64_decode(RFC_SALT, strlen(RFC_SALT), salt, sizeof(salt), &n), 0);
	assert_int_equal(n, 16);
	assert_int_equal(password_scram_derive("pencil", 6, salt, n, 4096, &k), 0);
	char *f = password_scram_format(&k);
	assert_string_equal(f, RFC_SECRET);
	free(f);
	password_scram_clear(&k);

	assert_int_equal(password_verify(RFC_SECRET, "pencil", 6), 1);
	assert_int_equal(password_verify(RFC_SECRET, "pencil!", 7), 0);
	assert_int_equal(password_verify(RFC_SECRET, "pencil\0", 7), 0);
	assert_int_equal(password_verify(RFC_SECRET, "", 0), 0);
	assert_null(password_plaintext(RFC_SECRET));
	/* The scheme name is case-insensitive, as for the others. */
	assert_int_equal(password_verify("{scram-sha-256}" RFC_SECRET_DATA, "pencil", 6), 1);

	/* Malformed secrets. */
	static const char *const bad[] = {
		"{SCRAM-SHA-256}",
		"{SCRAM-SHA-256}4096",
		"{SCRAM-SHA-256}4096," RFC_SALT,
		"{SCRAM-SHA-256}4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
		"{SCRAM-SHA-256}4095," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"{SCRAM-SHA-256}99999999999," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"{SCRAM-SHA-256}+4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"{SCRAM-SHA-256}4096,,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ=,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q"
		"Y=,wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"{SCRAM-SHA-256}4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q=,"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"{SCRAM-SHA-256}4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=,",
		"{SCRAM-SHA-256}4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(password_verify(bad[i], "pencil", 6), -1);
		assert_int_equal(password_scram_keys(bad[i], salt, 16, &k), -1);
	}

	/* password_scram_keys: from a secret, from plaintext, from neither. */
	assert_int_equal(password_scram_keys(RFC_SECRET, (const unsigned char *)"x", 1, &k), 1);
	assert_int_equal(k.iterations, 4096);
	assert_int_equal(k.salt_len, 16);
	assert_memory_equal(k.salt, salt, 16);
	struct password_scram k2;
	assert_int_equal(password_scram_keys("{PLAIN}pencil", salt, 16, &k2), 1);
	assert_memory_equal(k.stored_key, k2.stored_key, sizeof(k.stored_key));
	assert_memory_equal(k.server_key, k2.server_key, sizeof(k.server_key));
	assert_int_equal(password_scram_keys("pencil", salt, 16, &k2), 1);
	assert_memory_equal(k.stored_key, k2.stored_key, sizeof(k.stored_key));
	assert_int_equal(password_scram_keys(SHA512_HELLO, salt, 16, &k2), 0);
	assert_int_equal(password_scram_keys("{ARGON2ID}$argon2id$x", salt, 16, &k2), 0);
	assert_int_equal(password_scram_keys("", salt, 16, &k2), 0);
	assert_int_equal(password_scram_keys(NULL, salt, 16, &k2), 0);
	assert_int_equal(password_scram_derive("x", 1, salt, 0, 4096, &k2), -1);
	assert_int_equal(password_scram_derive("x", 1, salt, 16, 0, &k2), -1);
	password_scram_clear(&k);
	password_scram_clear(&k2);
}

static void test_scram_hash(void **state)
{
	(void)state;
	char err[128] = "";
	assert_true(password_scheme_known("SCRAM-SHA-256"));
	assert_true(password_scheme_known("scram-sha-256"));
	char *h = password_hash("SCRAM-SHA-256", "p4ss word", err, sizeof(err));
	assert_non_null(h);
	/* Dovecot's layout: 4096, a 16-octet salt, two 32-octet keys. */
	assert_memory_equal(h, "{SCRAM-SHA-256}4096,", 20);
	assert_int_equal(strlen(h), 20 + 24 + 1 + 44 + 1 + 44);
	assert_int_equal(password_verify(h, "p4ss word", 9), 1);
	assert_int_equal(password_verify(h, "p4ss Word", 9), 0);
	char *h2 = password_hash("scram-sha-256", "p4ss word", err, sizeof(err));
	assert_string_not_equal(h, h2); /* salted */
	assert_int_equal(password_verify(h2, "p4ss word", 9), 1);
	free(h);
	free(h2);
	h = password_hash("SCRAM-SHA-256", "", err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(password_verify(h, "", 0), 1);
	assert_int_equal(password_verify(h, "x", 1), 0);
	free(h);
}

/* The RFC 7677 exchange, with the initial response or without. */
static void rfc7677_exchange(bool initial)
{
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("SCRAM-SHA-256", &setup);
	enum sasl_status st;
	if (initial) {
		st = start_str(s, RFC_CLIENT_FIRST, &out);
	} else {
		assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
		assert_string_equal(out.data, "");
		st = step_str(s, RFC_CLIENT_FIRST, &out);
	}
	assert_int_equal(st, SASL_NEED_USER);
	assert_string_equal(sasl_authcid(s), "user");
	assert_int_equal(sasl_set_credentials(s, RFC_SECRET), 0);
	assert_int_equal(sasl_resume(s, &out), SASL_CHALLENGE);
	assert_string_equal(decoded(&out), RFC_SERVER_FIRST);
	assert_int_equal(step_str(s, RFC_CLIENT_FINAL, &out), SASL_CHALLENGE);
	assert_string_equal(decoded(&out), RFC_SERVER_FINAL);
	assert_int_equal(sasl_step(s, "", 0, &out), SASL_SUCCESS);
	assert_int_equal(out.len, 0);
	assert_string_equal(sasl_reason(s), "");
	assert_null(sasl_password(s, NULL));
	assert_int_equal(sasl_step(s, "", 0, &out), SASL_MALFORMED);
	sasl_free(s);
	buf_free(&out);
}

static void test_scram_rfc7677(void **state)
{
	(void)state;
	rfc7677_exchange(false);
	rfc7677_exchange(true);
}

/* A SCRAM-SHA-256 client for the tests: computes client-final from the
 * server-first it got. */
static void scram_client_final(const char *password, const char *client_first_bare,
			       const char *server_first, const char *cbind_b64, char *final,
			       size_t final_size, char *verifier, size_t verifier_size)
{
	/* server-first: r=...,s=...,i=... */
	const char *r = strstr(server_first, "r="), *sa = strstr(server_first, ",s="),
		   *it = strstr(server_first, ",i=");
	assert_non_null(r);
	assert_non_null(sa);
	assert_non_null(it);
	unsigned char salt[64], salted[32], ck[32], sk[32], sig[32], proof[32], svk[32];
	size_t salt_len;
	unsigned int len;
	assert_int_equal(
		base64_decode(sa + 3, (size_t)(it - sa - 3), salt, sizeof(salt), &salt_len), 0);
	int iter = atoi(it + 3);
	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
					   iter, EVP_sha256(), 32, salted),
			 1);
	HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, ck, &len);
	EVP_Digest(ck, 32, sk, &len, EVP_sha256(), NULL);
	char without_proof[512];
	snprintf(without_proof, sizeof(without_proof), "c=%s,r=%.*s", cbind_b64,
		 (int)(sa - r - 2), r + 2);
	char am[2048];
	snprintf(am, sizeof(am), "%s,%s,%s", client_first_bare, server_first, without_proof);
	HMAC(EVP_sha256(), sk, 32, (const unsigned char *)am, strlen(am), sig, &len);
	for (int i = 0; i < 32; i++)
		proof[i] = ck[i] ^ sig[i];
	char proof_b64[64];
	base64_encode(proof, 32, proof_b64);
	snprintf(final, final_size, "%s,p=%s", without_proof, proof_b64);
	HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, svk, &len);
	HMAC(EVP_sha256(), svk, 32, (const unsigned char *)am, strlen(am), sig, &len);
	char sig_b64[64];
	base64_encode(sig, 32, sig_b64);
	snprintf(verifier, verifier_size, "v=%s", sig_b64);
}

struct scram_result {
	enum sasl_status st;
	char server_first[512];
	char reason[128];
};

/* One whole exchange as a client holding `password` would run it. */
static struct scram_result scram_run(const char *login, const char *password, const char *stored)
{
	struct scram_result res;
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("SCRAM-SHA-256", &setup);
	char bare[256], first[300], final[1024], verifier[128];
	snprintf(bare, sizeof(bare), "n=%s,r=fyko+d2lbbFgONRv9qkxdawL", login);
	snprintf(first, sizeof(first), "n,,%s", bare);
	assert_int_equal(start_str(s, first, &out), SASL_NEED_USER);
	assert_int_equal(sasl_set_credentials(s, stored), 0);
	assert_int_equal(sasl_resume(s, &out), SASL_CHALLENGE);
	snprintf(res.server_first, sizeof(res.server_first), "%s", decoded(&out));
	scram_client_final(password, bare, res.server_first, "biws", final, sizeof(final),
			   verifier, sizeof(verifier));
	res.st = step_str(s, final, &out);
	if (res.st == SASL_CHALLENGE) {
		assert_string_equal(decoded(&out), verifier);
		res.st = sasl_step(s, "", 0, &out);
	}
	snprintf(res.reason, sizeof(res.reason), "%s", sasl_reason(s));
	sasl_free(s);
	buf_free(&out);
	return res;
}

static void test_scram_plaintext_and_unknown(void **state)
{
	(void)state;
	struct scram_result r;
	/* Keys derived on the fly from a plaintext password. */
	r = scram_run("alice", "secret", "secret");
	assert_int_equal(r.st, SASL_SUCCESS);
	assert_non_null(strstr(r.server_first, ",i=4096"));
	char alice_first[512];
	snprintf(alice_first, sizeof(alice_first), "%s", r.server_first);
	r = scram_run("alice", "secret", "{PLAIN}secret");
	assert_int_equal(r.st, SASL_SUCCESS);
	assert_string_equal(r.server_first, alice_first); /* the same salt each time */
	r = scram_run("alice", "Secret", "secret");
	assert_int_equal(r.st, SASL_FAILURE);
	assert_string_equal(r.reason, "wrong password");

	/* An unknown user gets the same salt rule and fails at the same step
	 * as a wrong password. */
	r = scram_run("alice", "secret", NULL);
	assert_int_equal(r.st, SASL_FAILURE);
	assert_string_equal(r.reason, "unknown user");
	assert_string_equal(r.server_first, alice_first);
	r = scram_run("nobody", "secret", NULL);
	assert_int_equal(r.st, SASL_FAILURE);
	char nobody_first[512];
	snprintf(nobody_first, sizeof(nobody_first), "%s", r.server_first);
	assert_string_not_equal(nobody_first, alice_first);
	r = scram_run("nobody", "", NULL);
	assert_int_equal(r.st, SASL_FAILURE);
	assert_string_equal(r.server_first, nobody_first);

	/* A password SCRAM cannot use: like an unknown user. */
	r = scram_run("alice", "Hello world!", SHA512_HELLO);
	assert_int_equal(r.st, SASL_FAILURE);
	assert_string_equal(r.server_first, alice_first);
	/* A malformed secret. */
	r = scram_run("alice", "pencil", "{SCRAM-SHA-256}4096,xx");
	assert_int_equal(r.st, SASL_FAILURE);
	assert_string_equal(r.server_first, alice_first);

	/* A stored secret (the RFC's) with a client computing from the salt
	 * it is sent. */
	r = scram_run("user", "pencil", RFC_SECRET);
	assert_int_equal(r.st, SASL_SUCCESS);
	r = scram_run("user", "pencil2", RFC_SECRET);
	assert_int_equal(r.st, SASL_FAILURE);
	/* A secret made by password_hash. */
	char err[64];
	char *h = password_hash("SCRAM-SHA-256", "hunter2", err, sizeof(err));
	r = scram_run("carol", "hunter2", h);
	assert_int_equal(r.st, SASL_SUCCESS);
	r = scram_run("carol", "hunter3", h);
	assert_int_equal(r.st, SASL_FAILURE);
	free(h);
	/* Escaped user names. */
	r = scram_run("a=2Cb=3Dc", "pw", "pw");
	assert_int_equal(r.st, SASL_SUCCESS);
}

/* Runs client-first then, when it is accepted, the RFC secret and
 * client-final; returns the last status. */
static enum sasl_status scram_msgs(const char *first, const char *final)
{
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("SCRAM-SHA-256", &setup);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	enum sasl_status st = step_str(s, first, &out);
	if (st == SASL_NEED_USER && final != NULL) {
		assert_int_equal(sasl_set_credentials(s, RFC_SECRET), 0);
		assert_int_equal(sasl_resume(s, &out), SASL_CHALLENGE);
		st = step_str(s, final, &out);
	}
	if (st == SASL_MALFORMED || st == SASL_FAILURE)
		assert_string_not_equal(sasl_reason(s), "");
	sasl_free(s);
	buf_free(&out);
	return st;
}

#define NONCE RFC_CNONCE RFC_SNONCE
#define PROOF "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="

static void test_scram_client_first_malformed(void **state)
{
	(void)state;
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, NULL), SASL_NEED_USER);
	assert_int_equal(scram_msgs("y,,n=user,r=abc", NULL), SASL_NEED_USER);
	assert_int_equal(scram_msgs("n,a=user,n=user,r=abc", NULL), SASL_NEED_USER);
	assert_int_equal(scram_msgs("n,,n=user,r=abc,x=ext,y=a=b", NULL), SASL_NEED_USER);

	assert_int_equal(scram_msgs("p=tls-unique,,n=user,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("x,,n=user,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,n=user,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,b=user,n=user,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,a=admin,n=user,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,a=user", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,m=ext,n=user,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=us=er,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user=2,r=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user=", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user,", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user,r=", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user,r=a b", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user,x=abc", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,r=abc,n=user", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user,r=abc,", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user,r=abc,1=x", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=user,r=abc,xx", NULL), SASL_MALFORMED);
	assert_int_equal(scram_msgs("n,,n=us\ter,r=abc", NULL), SASL_MALFORMED);

	/* A NUL anywhere. */
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("SCRAM-SHA-256", &setup);
	static const char nul[] = "n,,n=us\0er,r=abc";
	const char *r = b64(nul, sizeof(nul) - 1);
	assert_int_equal(sasl_start(s, r, strlen(r), &out), SASL_MALFORMED);
	sasl_free(s);
	buf_free(&out);
}

static void test_scram_client_final_malformed(void **state)
{
	(void)state;
	/* The RFC's final message is right; any change breaks it. */
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, RFC_CLIENT_FINAL), SASL_CHALLENGE);
	/* A wrong proof of the right shape: a failed login. */
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE
						      ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVM="),
			 SASL_FAILURE);
	/* An extension changes AuthMessage, so the RFC proof no longer fits. */
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE ",x=y," PROOF),
			 SASL_FAILURE);

	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" RFC_CNONCE "," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE "x," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=X" NONCE "," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=eSws,r=" NONCE "," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biw,r=" NONCE "," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "r=" NONCE "," PROOF), SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws," PROOF), SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE), SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE ",p="), SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE ",p=dHzb"),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE "," PROOF "="),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE "," PROOF ",x=y"),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE ",1=y," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, "c=biws,r=" NONCE ",," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, ""), SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, ","), SASL_MALFORMED);
	assert_int_equal(scram_msgs(RFC_CLIENT_FIRST, ",p="), SASL_MALFORMED);
	/* "y,," must be echoed as "eSws". */
	assert_int_equal(scram_msgs("y,,n=user,r=" RFC_CNONCE, "c=biws,r=" NONCE "," PROOF),
			 SASL_MALFORMED);
	assert_int_equal(scram_msgs("y,,n=user,r=" RFC_CNONCE, "c=eSws,r=" NONCE "," PROOF),
			 SASL_FAILURE);
}

static void test_scram_final_reply(void **state)
{
	(void)state;
	struct buf out = BUF_INIT;
	for (int variant = 0; variant < 3; variant++) {
		struct sasl *s = sasl_new("SCRAM-SHA-256", &setup);
		assert_int_equal(start_str(s, RFC_CLIENT_FIRST, &out), SASL_NEED_USER);
		assert_int_equal(sasl_set_credentials(s, RFC_SECRET), 0);
		assert_int_equal(sasl_resume(s, &out), SASL_CHALLENGE);
		assert_int_equal(step_str(s, RFC_CLIENT_FINAL, &out), SASL_CHALLENGE);
		if (variant == 0)
			assert_int_equal(sasl_step(s, "*", 1, &out), SASL_CANCELLED);
		else if (variant == 1)
			assert_int_equal(step_str(s, "x", &out), SASL_MALFORMED);
		else
			assert_int_equal(sasl_step(s, "=", 1, &out), SASL_MALFORMED);
		sasl_free(s);
	}
	/* Cancel at the server-first challenge. */
	struct sasl *s = sasl_new("SCRAM-SHA-256", &setup);
	assert_int_equal(start_str(s, RFC_CLIENT_FIRST, &out), SASL_NEED_USER);
	assert_int_equal(sasl_set_credentials(s, NULL), 0);
	assert_int_equal(sasl_resume(s, &out), SASL_CHALLENGE);
	assert_int_equal(sasl_step(s, "*", 1, &out), SASL_CANCELLED);
	sasl_free(s);
	buf_free(&out);
}

/* Calls out of order end the exchange; they never crash. */
static void test_misuse(void **state)
{
	(void)state;
	struct buf out = BUF_INIT;
	struct sasl *s = sasl_new("SCRAM-SHA-256", &setup);
	assert_int_equal(sasl_step(s, "", 0, &out), SASL_MALFORMED);
	sasl_free(s);

	s = sasl_new("SCRAM-SHA-256", &setup);
	assert_int_equal(sasl_set_credentials(s, "x"), -1);
	assert_int_equal(sasl_resume(s, &out), SASL_MALFORMED);
	sasl_free(s);

	s = sasl_new("SCRAM-SHA-256", &setup);
	assert_int_equal(start_str(s, RFC_CLIENT_FIRST, &out), SASL_NEED_USER);
	assert_int_equal(step_str(s, RFC_CLIENT_FINAL, &out), SASL_MALFORMED);
	assert_int_equal(sasl_set_credentials(s, RFC_SECRET), -1);
	sasl_free(s);

	s = sasl_new("SCRAM-SHA-256", &setup);
	assert_int_equal(start_str(s, RFC_CLIENT_FIRST, &out), SASL_NEED_USER);
	assert_int_equal(sasl_resume(s, &out), SASL_MALFORMED);
	sasl_free(s);

	s = sasl_new("PLAIN", NULL);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_CHALLENGE);
	assert_int_equal(sasl_start(s, NULL, 0, &out), SASL_MALFORMED);
	assert_int_equal(sasl_set_credentials(s, "x"), -1);
	sasl_free(s);

	/* A session that frees mid-exchange (client gone) leaks nothing. */
	s = sasl_new("SCRAM-SHA-256", &setup);
	assert_int_equal(start_str(s, RFC_CLIENT_FIRST, &out), SASL_NEED_USER);
	assert_int_equal(sasl_set_credentials(s, RFC_SECRET), 0);
	sasl_free(s);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_mechanisms),
		cmocka_unit_test(test_new),
		cmocka_unit_test(test_plain_initial_response),
		cmocka_unit_test(test_plain_no_initial_response),
		cmocka_unit_test(test_plain_malformed),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_cram_md5),
		cmocka_unit_test(test_scram_secret_format),
		cmocka_unit_test(test_scram_hash),
		cmocka_unit_test(test_scram_rfc7677),
		cmocka_unit_test(test_scram_plaintext_and_unknown),
		cmocka_unit_test(test_scram_client_first_malformed),
		cmocka_unit_test(test_scram_client_final_malformed),
		cmocka_unit_test(test_scram_final_reply),
		cmocka_unit_test(test_misuse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
