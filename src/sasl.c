/* SASL mechanisms for POP3 AUTH: PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256. Pure state machines. */
#include "sasl.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "password.h"
#include "xalloc.h"

enum mech { MECH_PLAIN, MECH_LOGIN, MECH_CRAM_MD5, MECH_SCRAM_SHA_256 };

static const struct {
	const char *name;
	enum mech mech;
} mech_table[] = {
	{"SCRAM-SHA-256", MECH_SCRAM_SHA_256},
	{"CRAM-MD5", MECH_CRAM_MD5},
	{"PLAIN", MECH_PLAIN},
	{"LOGIN", MECH_LOGIN},
};

#define N_MECHS (sizeof(mech_table) / sizeof(mech_table[0]))

const char *const sasl_mechanisms[] = {"SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN", NULL};

enum state {
	ST_NEW,              /* before sasl_start */
	ST_WAIT_RESPONSE,    /* a challenge is out; sasl_step next */
	ST_WAIT_CREDENTIALS, /* SASL_NEED_USER returned */
	ST_HAVE_CREDENTIALS, /* sasl_set_credentials done; sasl_resume next */
	ST_DONE,
};

/* Size of the salt SCRAM offers for keys derived from plaintext. */
#define SCRAM_DERIVED_SALT_LEN 16
/* Domain separation for the salt HMAC, so the salt key could serve other
 * derivations later without the outputs colliding. */
#define SCRAM_SALT_LABEL "tpops SCRAM-SHA-256 salt"

struct sasl {
	enum mech mech;
	const char *name;
	enum state state;
	unsigned step; /* which client message comes next, per mechanism */
	const char *reason;

	char *authcid;
	char *password; /* PLAIN, LOGIN */
	size_t password_len;

	/* credentials, once set */
	bool creds_ok;	          /* false: fail at the end whatever the client sends */
	const char *creds_reason; /* why creds_ok is false */

	/* CRAM-MD5 */
	char *cram_challenge;
	char cram_digest[32];	/* the client's, lower-case hex */
	char cram_expected[32]; /* ours */

	/* SCRAM-SHA-256 */
	char *snonce;
	unsigned char *salt_key;
	size_t salt_key_len;
	char *gs2_header; /* as sent, e.g. "n,," */
	size_t gs2_len;
	char *client_first_bare;
	size_t cnonce_off, cnonce_len; /* the client nonce inside client_first_bare */
	char *server_first;
	struct password_scram keys;
};

static void free_string_secret(char *p)
{
	if (p != NULL)
		free_secret(p, strlen(p) + 1);
}

static int mech_lookup(const char *name)
{
	if (name == NULL)
		return -1;
	for (size_t i = 0; i < N_MECHS; i++) {
		if (strcasecmp(mech_table[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

bool sasl_mechanism_known(const char *name)
{
	return mech_lookup(name) >= 0;
}

bool sasl_mechanism_usable(const char *name, unsigned kinds)
{
	int i = mech_lookup(name);
	if (i < 0)
		return false;
	switch (mech_table[i].mech) {
	case MECH_PLAIN:
	case MECH_LOGIN:
		return (kinds & (SASL_PASSWORDS_PLAINTEXT | SASL_PASSWORDS_SCRAM |
				 SASL_PASSWORDS_HASHED)) != 0;
	case MECH_CRAM_MD5:
		return (kinds & SASL_PASSWORDS_PLAINTEXT) != 0;
	case MECH_SCRAM_SHA_256:
		return (kinds & (SASL_PASSWORDS_PLAINTEXT | SASL_PASSWORDS_SCRAM)) != 0;
	}
	return false;
}

void sasl_list_mechanisms(unsigned kinds, struct buf *out)
{
	bool first = true;
	for (size_t i = 0; sasl_mechanisms[i] != NULL; i++) {
		if (!sasl_mechanism_usable(sasl_mechanisms[i], kinds))
			continue;
		if (!first)
			buf_append_char(out, ' ');
		buf_append_str(out, sasl_mechanisms[i]);
		first = false;
	}
}

/* RFC 5802 "printable": 0x21-0x7E except ",". */
static bool is_printable_nonce(const char *p, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x21 || c > 0x7e || c == ',')
			return false;
	}
	return true;
}

struct sasl *sasl_new(const char *mech, const struct sasl_setup *setup)
{
	int i = mech_lookup(mech);
	if (i < 0)
		return NULL;
	enum mech m = mech_table[i].mech;

	if (m == MECH_CRAM_MD5 &&
	    (setup == NULL || setup->cram_challenge == NULL || setup->cram_challenge[0] == '\0'))
		return NULL;
	if (m == MECH_SCRAM_SHA_256) {
		if (setup == NULL || setup->scram_nonce == NULL || setup->scram_salt_key == NULL ||
		    setup->scram_salt_key_len < SASL_SCRAM_SALT_KEY_MIN)
			return NULL;
		size_t n = strlen(setup->scram_nonce);
		if (n < SASL_SCRAM_NONCE_MIN || n > SASL_SCRAM_NONCE_MAX ||
		    !is_printable_nonce(setup->scram_nonce, n))
			return NULL;
	}

	struct sasl *s = xcalloc(1, sizeof(*s));
	s->mech = m;
	s->name = mech_table[i].name;
	s->state = ST_NEW;
	s->reason = "";
	if (m == MECH_CRAM_MD5)
		s->cram_challenge = xstrdup(setup->cram_challenge);
	if (m == MECH_SCRAM_SHA_256) {
		s->snonce = xstrdup(setup->scram_nonce);
		s->salt_key = xmemdup(setup->scram_salt_key, setup->scram_salt_key_len);
		s->salt_key_len = setup->scram_salt_key_len;
	}
	return s;
}

void sasl_free(struct sasl *s)
{
	if (s == NULL)
		return;
	free_string_secret(s->authcid);
	if (s->password != NULL)
		free_secret(s->password, s->password_len + 1);
	free(s->cram_challenge);
	free(s->snonce);
	if (s->salt_key != NULL)
		free_secret(s->salt_key, s->salt_key_len);
	free(s->gs2_header);
	free(s->client_first_bare);
	free(s->server_first);
	password_scram_clear(&s->keys);
	free_secret(s, sizeof(*s));
}

const char *sasl_mechanism(const struct sasl *s)
{
	return s->name;
}

const char *sasl_authcid(const struct sasl *s)
{
	return s->authcid;
}

const char *sasl_password(const struct sasl *s, size_t *len)
{
	if (len != NULL)
		*len = s->password ? s->password_len : 0;
	return s->password;
}

const char *sasl_reason(const struct sasl *s)
{
	return s->reason;
}

/* Ends the exchange with a status that carries a reason. */
static enum sasl_status finish(struct sasl *s, enum sasl_status st, const char *reason)
{
	s->state = ST_DONE;
	s->reason = reason;
	return st;
}

static enum sasl_status malformed(struct sasl *s, const char *reason)
{
	return finish(s, SASL_MALFORMED, reason);
}

/* Sets out to the base64 of data[0..len). */
static void set_challenge(struct buf *out, const void *data, size_t len)
{
	buf_truncate(out, 0);
	buf_reserve(out, BASE64_ENCODED_LEN(len));
	out->len = base64_encode(data, len, out->data);
}

static enum sasl_status challenge(struct sasl *s, struct buf *out, const void *data, size_t len)
{
	set_challenge(out, data, len);
	s->state = ST_WAIT_RESPONSE;
	return SASL_CHALLENGE;
}

/* A login as the rest of tpops can take it: not empty, bounded, and no
 * control characters (it ends up in log lines and database queries). */
static const char *check_login(const char *p, size_t len)
{
	if (len == 0)
		return "empty user name";
	if (len > SASL_MAX_LOGIN)
		return "user name too long";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return "control character in user name";
	}
	return NULL;
}

static const char *check_password(const char *p, size_t len)
{
	if (len == 0)
		return "empty password";
	if (len > SASL_MAX_PASSWORD)
		return "password too long";
	if (memchr(p, '\0', len) != NULL)
		return "NUL in password";
	return NULL;
}

/* --- PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd --- */

static enum sasl_status plain_response(struct sasl *s, const char *data, size_t len,
				       struct buf *out)
{
	const char *nul1 = memchr(data, '\0', len);
	const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - data)) : NULL;
	if (nul2 == NULL)
		return malformed(s, "PLAIN message needs three fields");
	const char *authzid = data, *authcid = nul1 + 1, *pass = nul2 + 1;
	size_t authzid_len = (size_t)(nul1 - data), authcid_len = (size_t)(nul2 - authcid);
	size_t pass_len = len - (size_t)(pass - data);
	const char *why;

	if ((why = check_login(authcid, authcid_len)) != NULL)
		return malformed(s, why);
	if ((why = check_password(pass, pass_len)) != NULL)
		return malformed(s, memchr(pass, '\0', pass_len) ? "PLAIN message needs three fields"
								   : why);
	if (authzid_len != 0 &&
	    (authzid_len != authcid_len || memcmp(authzid, authcid, authcid_len) != 0))
		return malformed(s, "authorization identity differs from the user name");

	s->authcid = xstrndup(authcid, authcid_len);
	s->password = xstrndup(pass, pass_len);
	s->password_len = pass_len;
	return finish(s, SASL_VERIFY_PASSWORD, "");
}

/* --- LOGIN: "Username:" then "Password:" --- */

static enum sasl_status login_response(struct sasl *s, const char *data, size_t len,
				       struct buf *out)
{
	const char *why;
	if (s->step == 0) {
		if (memchr(data, '\0', len) != NULL)
			return malformed(s, "NUL in user name");
		if ((why = check_login(data, len)) != NULL)
			return malformed(s, why);
		s->authcid = xstrndup(data, len);
		s->step = 1;
		return challenge(s, out, "Password:", 9);
	}
	if ((why = check_password(data, len)) != NULL)
		return malformed(s, why);
	s->password = xstrndup(data, len);
	s->password_len = len;
	return finish(s, SASL_VERIFY_PASSWORD, "");
}

/* --- CRAM-MD5 (RFC 2195): "user SP 32-hex-digits" --- */

static enum sasl_status cram_response(struct sasl *s, const char *data, size_t len,
				      struct buf *out)
{
	if (memchr(data, '\0', len) != NULL)
		return malformed(s, "NUL in CRAM-MD5 response");
	/* The digest has no spaces; the user name may. */
	const char *sp = NULL;
	for (size_t i = len; i > 0; i--) {
		if (data[i - 1] == ' ') {
			sp = data + i - 1;
			break;
		}
	}
	if (sp == NULL)
		return malformed(s, "CRAM-MD5 response needs a user name and a digest");
	size_t user_len = (size_t)(sp - data), digest_len = len - user_len - 1;
	const char *why;
	if ((why = check_login(data, user_len)) != NULL)
		return malformed(s, why);
	if (digest_len != sizeof(s->cram_digest))
		return malformed(s, "CRAM-MD5 digest is not 32 hex digits");
	for (size_t i = 0; i < digest_len; i++) {
		char c = sp[1 + i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return malformed(s, "CRAM-MD5 digest is not 32 hex digits");
		s->cram_digest[i] = c;
	}
	s->authcid = xstrndup(data, user_len);
	s->state = ST_WAIT_CREDENTIALS;
	return SASL_NEED_USER;
}

static void cram_set_credentials(struct sasl *s, const char *stored)
{
	const char *plain = stored ? password_plaintext(stored) : NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	memset(s->cram_expected, 0, sizeof(s->cram_expected));
	s->creds_ok = false;
	if (stored == NULL) {
		s->creds_reason = "unknown user";
		return;
	}
	if (plain == NULL) {
		s->creds_reason = "CRAM-MD5 needs a plaintext-stored password";
		return;
	}
	size_t plain_len = strlen(plain);
	if (plain_len > INT32_MAX ||
	    HMAC(EVP_md5(), plain, (int)plain_len, (const unsigned char *)s->cram_challenge,
		 strlen(s->cram_challenge), md, &md_len) == NULL ||
	    md_len != 16) {
		s->creds_reason = "HMAC-MD5 failed";
		wipe(md, sizeof(md));
		return;
	}
	for (size_t i = 0; i < 16; i++) {
		s->cram_expected[2 * i] = "0123456789abcdef"[md[i] >> 4];
		s->cram_expected[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
	}
	wipe(md, sizeof(md));
	s->creds_ok = true;
}

static enum sasl_status cram_resume(struct sasl *s)
{
	int diff = CRYPTO_memcmp(s->cram_expected, s->cram_digest, sizeof(s->cram_digest));
	wipe(s->cram_expected, sizeof(s->cram_expected));
	if (!s->creds_ok)
		return finish(s, SASL_FAILURE, s->creds_reason);
	if (diff != 0)
		return finish(s, SASL_FAILURE, "wrong password");
	return finish(s, SASL_SUCCESS, "");
}

/* --- SCRAM-SHA-256 (RFC 5802, RFC 7677) --- */

/* The length of the attribute value starting at p: up to the next ","
 * or the end. */
static size_t attr_len(const char *p, const char *end)
{
	const char *c = memchr(p, ',', (size_t)(end - p));
	return (size_t)((c ? c : end) - p);
}

/* saslname (RFC 5802 section 5.1): "," as "=2C", "=" as "=3D", no other
 * "=". Decodes into a new string, or returns NULL. */
static char *saslname_decode(const char *p, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '=') {
			out[o++] = p[i];
			continue;
		}
		if (i + 2 < len && p[i + 1] == '2' && p[i + 2] == 'C') {
			out[o++] = ',';
		} else if (i + 2 < len && p[i + 1] == '3' && p[i + 2] == 'D') {
			out[o++] = '=';
		} else {
			free(out);
			return NULL;
		}
		i += 2;
	}
	out[o] = '\0';
	return out;
}

/* Optional extensions after the nonce: ("," ALPHA "=" value)*. Values
 * may hold "=" but not "," (RFC 5802 section 7). */
static bool extensions_ok(const char *p, const char *end)
{
	while (p < end) {
		if (*p != ',')
			return false;
		p++;
		size_t n = attr_len(p, end);
		if (n < 2 || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')) ||
		    p[1] != '=')
			return false;
		p += n;
	}
	return true;
}

/* client-first-message = gs2-header client-first-message-bare */
static enum sasl_status scram_client_first(struct sasl *s, const char *data, size_t len)
{
	const char *p = data, *end = data + len;

	if (memchr(data, '\0', len) != NULL)
		return malformed(s, "NUL in SCRAM message");
	/* gs2-cbind-flag: "n" (client cannot bind) or "y" (client could,
	 * thinks we cannot). "p=" asks for binding we do not offer. */
	if (len >= 1 && data[0] == 'p')
		return malformed(s, "SCRAM channel binding is not supported");
	if (len < 2 || (data[0] != 'n' && data[0] != 'y') || data[1] != ',')
		return malformed(s, "bad SCRAM GS2 header");
	p = data + 2;
	const char *authzid = NULL;
	size_t authzid_len = 0;
	if (p < end && *p != ',') {
		if (end - p < 2 || p[0] != 'a' || p[1] != '=')
			return malformed(s, "bad SCRAM GS2 header");
		authzid = p + 2;
		authzid_len = attr_len(authzid, end);
		p = authzid + authzid_len;
	}
	if (p >= end || *p != ',')
		return malformed(s, "bad SCRAM GS2 header");
	p++;
	size_t gs2_len = (size_t)(p - data);
	const char *bare = p;

	if (end - p >= 2 && p[0] == 'm' && p[1] == '=')
		return malformed(s, "SCRAM mandatory extension not supported");
	if (end - p < 2 || p[0] != 'n' || p[1] != '=')
		return malformed(s, "SCRAM user name missing");
	p += 2;
	size_t name_len = attr_len(p, end);
	char *user = saslname_decode(p, name_len);
	if (user == NULL)
		return malformed(s, "bad SCRAM user name encoding");
	const char *why = check_login(user, strlen(user));
	if (why != NULL) {
		free(user);
		return malformed(s, why);
	}
	p += name_len;
	if (authzid != NULL) {
		char *az = saslname_decode(authzid, authzid_len);
		bool same = az != NULL && strcmp(az, user) == 0;
		free(az);
		if (!same) {
			free(user);
			return malformed(s, "authorization identity differs from the user name");
		}
	}

	if (end - p < 3 || p[0] != ',' || p[1] != 'r' || p[2] != '=') {
		free(user);
		return malformed(s, "SCRAM nonce missing");
	}
	p += 3;
	size_t cnonce_len = attr_len(p, end);
	if (!is_printable_nonce(p, cnonce_len)) {
		free(user);
		return malformed(s, "bad SCRAM client nonce");
	}
	size_t cnonce_off = (size_t)(p - bare);
	p += cnonce_len;
	if (!extensions_ok(p, end)) {
		free(user);
		return malformed(s, "bad SCRAM extension");
	}

	s->authcid = user;
	s->gs2_header = xstrndup(data, gs2_len);
	s->gs2_len = gs2_len;
	s->client_first_bare = xstrndup(bare, (size_t)(end - bare));
	s->cnonce_off = cnonce_off;
	s->cnonce_len = cnonce_len;
	s->state = ST_WAIT_CREDENTIALS;
	return SASL_NEED_USER;
}

/* The salt offered for keys derived from plaintext (and for unknown
 * users): HMAC(salt key, label NUL login), so that one login always sees
 * the same salt and nobody can tell a derived salt from a stored one. */
static int scram_derived_salt(const struct sasl *s, unsigned char salt[SCRAM_DERIVED_SALT_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	struct buf msg = BUF_INIT;
	buf_append(&msg, SCRAM_SALT_LABEL, sizeof(SCRAM_SALT_LABEL)); /* with its NUL */
	buf_append_str(&msg, s->authcid);
	int ok = HMAC(EVP_sha256(), s->salt_key, (int)s->salt_key_len,
		      (const unsigned char *)msg.data, msg.len, md, &md_len) != NULL &&
		 md_len >= SCRAM_DERIVED_SALT_LEN;
	buf_free(&msg);
	if (ok)
		memcpy(salt, md, SCRAM_DERIVED_SALT_LEN);
	wipe(md, sizeof(md));
	return ok ? 0 : -1;
}

static void scram_set_credentials(struct sasl *s, const char *stored)
{
	unsigned char salt[SCRAM_DERIVED_SALT_LEN];
	int rc = -2;

	s->creds_ok = false;
	password_scram_clear(&s->keys);
	if (scram_derived_salt(s, salt) != 0) {
		s->creds_reason = "HMAC failed";
		return;
	}
	if (stored != NULL) {
		rc = password_scram_keys(stored, salt, sizeof(salt), &s->keys);
		if (rc == 1) {
			s->creds_ok = true;
			/* A stored secret is only parsed, where a plaintext
			 * password or an unknown user costs a PBKDF2: spend one
			 * anyway, or the time of the server-first message tells
			 * which logins have a stored SCRAM secret (and exist). */
			if (strncasecmp(stored, "{SCRAM-SHA-256}", 15) == 0) {
				struct password_scram junk;
				(void)password_scram_derive("", 0, salt, sizeof(salt),
							    PASSWORD_SCRAM_ITERATIONS, &junk);
				password_scram_clear(&junk);
			}
			return;
		}
	}
	s->creds_reason = rc == -2  ? "unknown user"
			  : rc == 0 ? "SCRAM needs a SCRAM secret or a plaintext-stored password"
				    : "stored SCRAM secret is malformed";
	/* Keys nobody can match, made the way a plaintext password's are:
	 * same salt rule, same iterations, same cost. creds_ok stays false,
	 * so even a proof that matched them would fail. */
	if (password_scram_derive("", 0, salt, sizeof(salt), PASSWORD_SCRAM_ITERATIONS,
				  &s->keys) != 0) {
		s->keys.iterations = PASSWORD_SCRAM_ITERATIONS;
		s->keys.salt_len = sizeof(salt);
		memcpy(s->keys.salt, salt, sizeof(salt));
	}
}

static enum sasl_status scram_resume(struct sasl *s, struct buf *out)
{
	char salt_b64[BASE64_ENCODED_LEN(PASSWORD_SCRAM_SALT_MAX) + 1];
	base64_encode(s->keys.salt, s->keys.salt_len, salt_b64);
	struct buf msg = BUF_INIT;
	buf_append_str(&msg, "r=");
	buf_append(&msg, s->client_first_bare + s->cnonce_off, s->cnonce_len);
	buf_printf(&msg, "%s,s=%s,i=%u", s->snonce, salt_b64, s->keys.iterations);
	s->server_first = buf_steal(&msg);
	s->step = 1;
	return challenge(s, out, s->server_first, strlen(s->server_first));
}

/* client-final-message = "c=" base64(gs2-header) ",r=" nonce
 * ["," extensions] ",p=" base64(ClientProof) */
static enum sasl_status scram_client_final(struct sasl *s, const char *data, size_t len,
					   struct buf *out)
{
	const char *end = data + len;
	if (memchr(data, '\0', len) != NULL)
		return malformed(s, "NUL in SCRAM message");

	/* The proof is the last attribute; base64 has no ",". */
	const char *last = NULL;
	for (size_t i = len; i > 0; i--) {
		if (data[i - 1] == ',') {
			last = data + i - 1;
			break;
		}
	}
	if (last == NULL || end - last < 3 || last[1] != 'p' || last[2] != '=')
		return malformed(s, "SCRAM proof missing");
	unsigned char proof[PASSWORD_SCRAM_KEY_LEN];
	size_t n;
	if (base64_decode(last + 3, (size_t)(end - last - 3), proof, sizeof(proof), &n) != 0 ||
	    n != sizeof(proof))
		return malformed(s, "bad SCRAM proof");
	size_t without_proof_len = (size_t)(last - data);

	const char *p = data;
	if (last - p < 2 || p[0] != 'c' || p[1] != '=')
		return malformed(s, "SCRAM channel binding attribute missing");
	p += 2;
	size_t cb_len = attr_len(p, last);
	unsigned char cb[BASE64_DECODED_MAX(SASL_MAX_RESPONSE)];
	if (base64_decode(p, cb_len, cb, sizeof(cb), &n) != 0 || n != s->gs2_len ||
	    memcmp(cb, s->gs2_header, n) != 0)
		return malformed(s, "SCRAM channel binding data does not match");
	p += cb_len;

	if (last - p < 3 || p[0] != ',' || p[1] != 'r' || p[2] != '=')
		return malformed(s, "SCRAM nonce missing");
	p += 3;
	size_t nonce_len = attr_len(p, last);
	size_t snonce_len = strlen(s->snonce);
	if (nonce_len != s->cnonce_len + snonce_len ||
	    memcmp(p, s->client_first_bare + s->cnonce_off, s->cnonce_len) != 0 ||
	    memcmp(p + s->cnonce_len, s->snonce, snonce_len) != 0)
		return malformed(s, "SCRAM nonce mismatch");
	p += nonce_len;
	if (!extensions_ok(p, last))
		return malformed(s, "bad SCRAM extension");

	/* AuthMessage = client-first-bare "," server-first ","
	 *               client-final-without-proof */
	struct buf am = BUF_INIT;
	buf_append_str(&am, s->client_first_bare);
	buf_append_char(&am, ',');
	buf_append_str(&am, s->server_first);
	buf_append_char(&am, ',');
	buf_append(&am, data, without_proof_len);

	unsigned char sig[EVP_MAX_MD_SIZE], client_key[PASSWORD_SCRAM_KEY_LEN];
	unsigned char stored_key[EVP_MAX_MD_SIZE];
	unsigned int sig_len = 0, sk_len = 0;
	bool ok = HMAC(EVP_sha256(), s->keys.stored_key, sizeof(s->keys.stored_key),
		       (const unsigned char *)am.data, am.len, sig, &sig_len) != NULL &&
		  sig_len == sizeof(client_key);
	if (ok) {
		for (size_t i = 0; i < sizeof(client_key); i++)
			client_key[i] = proof[i] ^ sig[i];
		ok = EVP_Digest(client_key, sizeof(client_key), stored_key, &sk_len, EVP_sha256(),
				NULL) == 1 &&
		     sk_len == sizeof(s->keys.stored_key);
	}
	int diff = ok ? CRYPTO_memcmp(stored_key, s->keys.stored_key, sizeof(s->keys.stored_key))
		      : 1;
	wipe(client_key, sizeof(client_key));
	wipe(stored_key, sizeof(stored_key));
	wipe(proof, sizeof(proof));

	enum sasl_status st;
	if (!ok) {
		st = finish(s, SASL_FAILURE, "HMAC failed");
	} else if (!s->creds_ok) {
		st = finish(s, SASL_FAILURE, s->creds_reason);
	} else if (diff != 0) {
		st = finish(s, SASL_FAILURE, "wrong password");
	} else if (HMAC(EVP_sha256(), s->keys.server_key, sizeof(s->keys.server_key),
			(const unsigned char *)am.data, am.len, sig, &sig_len) == NULL ||
		   sig_len != PASSWORD_SCRAM_KEY_LEN) {
		st = finish(s, SASL_FAILURE, "HMAC failed");
	} else {
		/* server-final-message = "v=" base64(ServerSignature) */
		char final[2 + BASE64_ENCODED_LEN(PASSWORD_SCRAM_KEY_LEN) + 1] = "v=";
		size_t flen = 2 + base64_encode(sig, sig_len, final + 2);
		s->step = 2;
		st = challenge(s, out, final, flen);
	}
	wipe(sig, sizeof(sig));
	buf_free(&am);
	password_scram_clear(&s->keys);
	return st;
}

static enum sasl_status scram_response(struct sasl *s, const char *data, size_t len,
				       struct buf *out)
{
	switch (s->step) {
	case 0:
		return scram_client_first(s, data, len);
	case 1:
		return scram_client_final(s, data, len, out);
	default:
		/* The reply to the server-final challenge must be empty. */
		if (len != 0)
			return malformed(s, "unexpected data after SCRAM server-final");
		return finish(s, SASL_SUCCESS, "");
	}
}

/* --- the driver --- */

static enum sasl_status respond(struct sasl *s, const char *data, size_t len, struct buf *out)
{
	switch (s->mech) {
	case MECH_PLAIN:
		return plain_response(s, data, len, out);
	case MECH_LOGIN:
		return login_response(s, data, len, out);
	case MECH_CRAM_MD5:
		return cram_response(s, data, len, out);
	case MECH_SCRAM_SHA_256:
		return scram_response(s, data, len, out);
	}
	return malformed(s, "unknown mechanism");
}

/* Decodes a client message and hands it to the mechanism. */
static enum sasl_status decode_and_respond(struct sasl *s, const char *b64, size_t len,
					   struct buf *out)
{
	if (len > SASL_MAX_RESPONSE)
		return malformed(s, "response too long");
	size_t cap = BASE64_DECODED_MAX(len), n = 0;
	char *data = xmalloc(cap + 1);
	enum sasl_status st;
	if (base64_decode(b64, len, (unsigned char *)data, cap, &n) != 0) {
		st = malformed(s, "bad base64");
	} else {
		data[n] = '\0';
		st = respond(s, data, n, out);
	}
	free_secret(data, cap + 1);
	return st;
}

enum sasl_status sasl_start(struct sasl *s, const char *initial, size_t len, struct buf *out)
{
	buf_truncate(out, 0);
	if (s->state != ST_NEW)
		return malformed(s, "exchange already started");
	if (initial == NULL) {
		switch (s->mech) {
		case MECH_LOGIN:
			return challenge(s, out, "Username:", 9);
		case MECH_CRAM_MD5:
			return challenge(s, out, s->cram_challenge, strlen(s->cram_challenge));
		case MECH_PLAIN:
		case MECH_SCRAM_SHA_256:
			return challenge(s, out, "", 0);
		}
		return malformed(s, "unknown mechanism");
	}
	/* RFC 5034 section 4: a server-first mechanism refuses an initial
	 * response. */
	if (s->mech == MECH_CRAM_MD5)
		return malformed(s, "CRAM-MD5 takes no initial response");
	s->state = ST_WAIT_RESPONSE;
	if (len == 1 && initial[0] == '=')
		return respond(s, "", 0, out);
	return decode_and_respond(s, initial, len, out);
}

enum sasl_status sasl_step(struct sasl *s, const char *line, size_t len, struct buf *out)
{
	buf_truncate(out, 0);
	if (s->state != ST_WAIT_RESPONSE)
		return malformed(s, "no response expected");
	if (len == 1 && line[0] == '*')
		return finish(s, SASL_CANCELLED, "cancelled by the client");
	return decode_and_respond(s, line, len, out);
}

int sasl_set_credentials(struct sasl *s, const char *stored)
{
	if (s->state != ST_WAIT_CREDENTIALS)
		return -1;
	if (s->mech == MECH_CRAM_MD5)
		cram_set_credentials(s, stored);
	else
		scram_set_credentials(s, stored);
	s->state = ST_HAVE_CREDENTIALS;
	return 0;
}

enum sasl_status sasl_resume(struct sasl *s, struct buf *out)
{
	buf_truncate(out, 0);
	if (s->state != ST_HAVE_CREDENTIALS)
		return malformed(s, "credentials not set");
	if (s->mech == MECH_CRAM_MD5)
		return cram_resume(s);
	return scram_resume(s, out);
}

void sasl_set_salt_key(struct sasl *s, const unsigned char *key, size_t len)
{
	if (s->mech != MECH_SCRAM_SHA_256 || len < SASL_SCRAM_SALT_KEY_MIN)
		return;
	if (s->salt_key != NULL)
		free_secret(s->salt_key, s->salt_key_len);
	s->salt_key = xmemdup(key, len);
	s->salt_key_len = len;
}
