/* libFuzzer target: SASL exchanges (sasl.c), the strict base64 decoder
 * (base64.c) and the SCRAM secret parser (password.c).
 *
 * Input: one control byte, then client lines separated by "\n".
 *   bits 0-1  mechanism: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256
 *   bits 2-3  what the user database answers: plaintext "pencil", the
 *             RFC 7677 SCRAM secret of "pencil", no such user, a crypt hash
 *   bit 4     the first line is the AUTH initial response
 *   bit 5     instead: base64 round trips of the rest
 *   bit 6     instead: the rest is a stored password for the SCRAM parser
 *   bit 7     lines are raw messages that the target base64-encodes (so
 *             mutations reach the mechanisms' own syntax); "*" stays "*"
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "buf.h"
#include "password.h"
#include "sasl.h"

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const mechs[] = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"};

/* RFC 7677's secret for "pencil" (salt W22ZaJ0SNY7soEsUEjb6gQ==). */
static const char *const stored_passwords[] = {
	"pencil",
	"{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	NULL,
	"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoE"
	"OfaS35inz1",
};

static const unsigned char salt_key[] = "fuzz salt key, 32 octets long..";

static void fuzz_base64(const char *in, size_t len)
{
	/* Whatever decodes re-encodes to exactly the input: one encoding
	 * per octet string, which is what "strict" means. */
	size_t cap = BASE64_DECODED_MAX(len) + 1, n = 0;
	unsigned char *dec = malloc(cap);
	CHECK(dec != NULL);
	if (base64_decode(in, len, dec, cap, &n) == 0) {
		CHECK(n <= BASE64_DECODED_MAX(len));
		char *enc = malloc(BASE64_ENCODED_LEN(n) + 1);
		CHECK(enc != NULL);
		CHECK(base64_encode(dec, n, enc) == len);
		CHECK(memcmp(enc, in, len) == 0);
		free(enc);
	} else {
		CHECK(n == 0);
	}
	free(dec);

	/* And any octets survive encoding and decoding. */
	char *enc = malloc(BASE64_ENCODED_LEN(len) + 1);
	CHECK(enc != NULL);
	size_t elen = base64_encode(in, len, enc);
	CHECK(elen == BASE64_ENCODED_LEN(len) && enc[elen] == '\0');
	unsigned char *back = malloc(len + 1);
	CHECK(back != NULL);
	CHECK(base64_decode(enc, elen, back, len, &n) == 0 && n == len);
	CHECK(len == 0 || memcmp(back, in, len) == 0);
	free(back);
	free(enc);
}

static void fuzz_stored(const char *in, size_t len)
{
	/* Only SCRAM secrets: other strings would each cost a PBKDF2. */
	char *stored = strndup(in, len);
	CHECK(stored != NULL);
	if (strncasecmp(stored, "{SCRAM-SHA-256}", 15) == 0) {
		struct password_scram k, again;
		int rc = password_scram_keys(stored, (const unsigned char *)"s", 1, &k);
		CHECK(rc == 1 || rc == -1);
		if (rc == 1) {
			CHECK(k.iterations >= PASSWORD_SCRAM_MIN_ITERATIONS &&
			      k.iterations <= PASSWORD_SCRAM_MAX_ITERATIONS);
			CHECK(k.salt_len >= 1 && k.salt_len <= PASSWORD_SCRAM_SALT_MAX);
			char *f = password_scram_format(&k);
			CHECK(password_scram_keys(f, NULL, 0, &again) == 1);
			CHECK(memcmp(&k, &again, sizeof(k)) == 0);
			free(f);
		}
	}
	free(stored);
}

/* One client line as the session would pass it. */
static const char *wire_line(const char *line, size_t len, bool raw, struct buf *tmp,
			     size_t *out_len)
{
	if (!raw || (len == 1 && line[0] == '*')) {
		*out_len = len;
		return line;
	}
	buf_truncate(tmp, 0);
	buf_reserve(tmp, BASE64_ENCODED_LEN(len));
	tmp->len = base64_encode(line, len, tmp->data);
	*out_len = tmp->len;
	return tmp->data;
}

static void check_status(struct sasl *s, enum sasl_status st, struct buf *out, unsigned mech,
			 unsigned creds)
{
	size_t n;
	const char *a = sasl_authcid(s);
	if (a != NULL) {
		CHECK(strlen(a) >= 1 && strlen(a) <= SASL_MAX_LOGIN);
		for (const char *p = a; *p; p++)
			CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
	}
	switch (st) {
	case SASL_CHALLENGE: {
		CHECK(out->data != NULL && strlen(out->data) == out->len);
		unsigned char *dec = malloc(BASE64_DECODED_MAX(out->len) + 1);
		CHECK(dec != NULL);
		CHECK(base64_decode(out->data, out->len, dec, BASE64_DECODED_MAX(out->len), &n) ==
		      0);
		free(dec);
		break;
	}
	case SASL_NEED_USER:
		CHECK(mech >= 2 && a != NULL);
		break;
	case SASL_VERIFY_PASSWORD: {
		CHECK(mech <= 1 && a != NULL);
		const char *pw = sasl_password(s, &n);
		CHECK(pw != NULL && n >= 1 && n <= SASL_MAX_PASSWORD && strlen(pw) == n);
		break;
	}
	case SASL_SUCCESS:
		/* Only with credentials the mechanism can use. */
		CHECK(mech >= 2 && a != NULL);
		CHECK(creds == 0 || (creds == 1 && mech == 3));
		CHECK(strcmp(sasl_reason(s), "") == 0);
		break;
	case SASL_FAILURE:
		CHECK(mech >= 2);
		CHECK(sasl_reason(s)[0] != '\0');
		break;
	case SASL_MALFORMED:
	case SASL_CANCELLED:
		CHECK(sasl_reason(s)[0] != '\0');
		break;
	}
	if (st != SASL_CHALLENGE)
		CHECK(out->len == 0);
	if (st != SASL_VERIFY_PASSWORD)
		CHECK(sasl_password(s, NULL) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4 * SASL_MAX_RESPONSE)
		return 0;
	unsigned ctl = data[0];
	/* A private copy without terminator: ASan sees any overread. */
	size_t len = size - 1;
	char *rest = malloc(len + 1);
	CHECK(rest != NULL);
	memcpy(rest, data + 1, len);

	if (ctl & 0x20) {
		fuzz_base64(rest, len);
		free(rest);
		return 0;
	}
	if (ctl & 0x40) {
		fuzz_stored(rest, len);
		free(rest);
		return 0;
	}

	unsigned mech = ctl & 3, creds = (ctl >> 2) & 3;
	bool initial = (ctl & 0x10) != 0, raw = (ctl & 0x80) != 0;
	struct sasl_setup setup = {
		.cram_challenge = "<1896.697170952@postoffice.reston.mci.net>",
		.scram_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		.scram_salt_key = salt_key,
		.scram_salt_key_len = sizeof(salt_key) - 1,
	};
	struct sasl *s = sasl_new(mechs[mech], &setup);
	CHECK(s != NULL);
	struct buf out = BUF_INIT, tmp = BUF_INIT;

	/* Split into lines; a missing final "\n" still ends a line. */
	const char *p = rest, *end = rest + len;
	enum sasl_status st;
	size_t wlen;
	if (initial) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		const char *w = wire_line(p, (size_t)(line_end - p), raw, &tmp, &wlen);
		st = sasl_start(s, w, wlen, &out);
		p = nl ? nl + 1 : end;
	} else {
		st = sasl_start(s, NULL, 0, &out);
	}
	check_status(s, st, &out, mech, creds);

	for (int round = 0; round < 8; round++) {
		if (st == SASL_NEED_USER) {
			CHECK(sasl_set_credentials(s, stored_passwords[creds]) == 0);
			CHECK(sasl_set_credentials(s, stored_passwords[creds]) == -1);
			st = sasl_resume(s, &out);
		} else if (st == SASL_CHALLENGE && p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *line_end = nl ? nl : end;
			const char *w = wire_line(p, (size_t)(line_end - p), raw, &tmp, &wlen);
			st = sasl_step(s, w, wlen, &out);
			p = nl ? nl + 1 : end;
		} else {
			break;
		}
		check_status(s, st, &out, mech, creds);
	}

	/* A finished exchange stays finished. */
	if (st != SASL_CHALLENGE && st != SASL_NEED_USER) {
		CHECK(sasl_step(s, "", 0, &out) == SASL_MALFORMED);
		CHECK(sasl_set_credentials(s, "x") == -1);
		CHECK(sasl_resume(s, &out) == SASL_MALFORMED);
	}

	sasl_free(s);
	buf_free(&out);
	buf_free(&tmp);
	free(rest);
	return 0;
}
