/* Password schemes: constant-time verification of stored passwords and hashing for the tools. */
#include "password.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "xalloc.h"

/* Argon2id parameters for new hashes; p=1 so that hashing stays on the
 * calling worker thread instead of spawning one thread per lane. */
#define ARGON2_T_COST 3
#define ARGON2_M_COST 65536 /* KiB */
#define ARGON2_PARALLELISM 1
#define ARGON2_SALT_LEN 16
#define ARGON2_HASH_LEN 32

/* bcrypt's library default cost (5) is too cheap for new hashes. */
#define BLF_CRYPT_COST 10

/* Salt of new SCRAM-SHA-256 secrets: Dovecot's length. */
#define SCRAM_SALT_LEN 16

/* A SHA512-CRYPT hash (default 5000 rounds) of a random password nobody
 * knows, computed offline once: verifying against it costs what verifying
 * a default-scheme hash costs, and never succeeds. */
static const char dummy_hash[] =
	"$6$uwVcSbVjAzCApyVE$5c1F1EvlwAIv6s6LXk.haUHagPFE2mxZxXJHPTyfwijbiapaHLqsVSxqsRwRN3idY"
	"Dc9F6HtjEPQkz2VWCBCH0";

enum scheme_kind { KIND_PLAIN, KIND_CRYPT, KIND_ARGON2ID, KIND_SCRAM };

/* Accepted beginnings of the data after "{SCHEME}", so that a hash filed
 * under the wrong scheme is reported as malformed rather than tried. */
static const char *const prefixes_sha512[] = {"$6$", NULL};
static const char *const prefixes_blf[] = {"$2a$", "$2b$", "$2y$", NULL};
static const char *const prefixes_yescrypt[] = {"$y$", "$7$", NULL};
static const char *const prefixes_argon2id[] = {"$argon2id$", NULL};

struct scheme {
	const char *name;
	enum scheme_kind kind;
	const char *const *prefixes; /* NULL: any data crypt(3) accepts */
	bool hashable;		     /* password_hash can produce it */
	const char *gensalt_prefix;  /* crypt schemes that password_hash writes */
	unsigned long gensalt_count; /* 0: libxcrypt's default cost */
};

static const struct scheme schemes[] = {
	{"PLAIN", KIND_PLAIN, NULL, true, NULL, 0},
	{"SHA512-CRYPT", KIND_CRYPT, prefixes_sha512, true, "$6$", 0},
	{"BLF-CRYPT", KIND_CRYPT, prefixes_blf, true, "$2b$", BLF_CRYPT_COST},
	{"YESCRYPT", KIND_CRYPT, prefixes_yescrypt, true, "$y$", 0},
	{"CRYPT", KIND_CRYPT, NULL, false, NULL, 0},
	{"ARGON2ID", KIND_ARGON2ID, prefixes_argon2id, true, NULL, 0},
	{"SCRAM-SHA-256", KIND_SCRAM, NULL, true, NULL, 0},
};

#define N_SCHEMES (sizeof(schemes) / sizeof(schemes[0]))

static const struct scheme *scheme_find(const char *name, size_t len)
{
	for (size_t i = 0; i < N_SCHEMES; i++) {
		if (strlen(schemes[i].name) == len && strncasecmp(schemes[i].name, name, len) == 0)
			return &schemes[i];
	}
	return NULL;
}

static bool has_prefix(const char *s, const char *const *prefixes)
{
	for (size_t i = 0; prefixes[i] != NULL; i++) {
		if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	}
	return false;
}

static void set_err(char *err, size_t errlen, const char *msg, const char *detail)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
}

/* Hashing both sides first makes the compare independent of where and
 * whether the contents differ; the length compare is folded in without a
 * branch so that it does not end the comparison early either. */
static int plain_compare(const char *stored, size_t stored_len, const char *given, size_t given_len)
{
	unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
	unsigned int alen = 0, blen = 0;
	int ret = -1;

	if (EVP_Digest(stored, stored_len, a, &alen, EVP_sha256(), NULL) == 1 &&
	    EVP_Digest(given, given_len, b, &blen, EVP_sha256(), NULL) == 1 && alen == blen) {
		int diff = CRYPTO_memcmp(a, b, alen);
		diff |= (stored_len != given_len);
		ret = diff == 0;
	}
	wipe(a, sizeof(a));
	wipe(b, sizeof(b));
	return ret;
}

/* crypt_rn with a heap crypt_data per call: thread-safe, and keeps its
 * 32 KiB off worker stacks that may be small. */
static int crypt_compare(const char *hash, const char *given, size_t given_len)
{
	/* crypt(3) takes a C string of bounded length: a password it cannot
	 * see whole must not match, but still costs a full hash. */
	bool unusable = memchr(given, '\0', given_len) != NULL;
	size_t phrase_len = given_len;
	if (phrase_len >= CRYPT_MAX_PASSPHRASE_SIZE) {
		phrase_len = CRYPT_MAX_PASSPHRASE_SIZE - 1;
		unusable = true;
	}
	char *phrase = xstrndup(given, phrase_len);
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	size_t hash_len = strlen(hash);
	int ret;

	const char *out = crypt_rn(phrase, hash, cd, (int)sizeof(*cd));
	/* A complete hash re-hashes to a string of its own length; any other
	 * length means the stored value was only a setting or garbage (e.g.
	 * "$6$" or a DES salt). The length depends on the stored value only. */
	if (out == NULL || out[0] == '*' || strlen(out) != hash_len)
		ret = -1;
	else
		ret = CRYPTO_memcmp(out, hash, hash_len) == 0 && !unusable;

	free_secret(phrase, phrase_len + 1);
	free_secret(cd, sizeof(*cd));
	return ret;
}

static int argon2id_compare(const char *encoded, const char *given, size_t given_len)
{
	if ((uint64_t)given_len > ARGON2_MAX_PWD_LENGTH)
		return 0;
	/* argon2id_verify compares the tags in constant time itself. */
	int rc = argon2id_verify(encoded, given, given_len);
	if (rc == ARGON2_OK)
		return 1;
	if (rc == ARGON2_VERIFY_MISMATCH)
		return 0;
	return -1;
}

/* Hi() of RFC 5802 is PBKDF2 with one block of the hash's size. */
int password_scram_derive(const char *password, size_t password_len, const unsigned char *salt,
			  size_t salt_len, unsigned iterations, struct password_scram *out)
{
	unsigned char salted[PASSWORD_SCRAM_KEY_LEN], client_key[PASSWORD_SCRAM_KEY_LEN];
	unsigned int len = 0, len2 = 0;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	if (salt_len == 0 || salt_len > PASSWORD_SCRAM_SALT_MAX || iterations == 0 ||
	    iterations > INT_MAX || password_len > INT_MAX)
		return -1;
	if (password == NULL)
		password = "";
	if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, (int)iterations,
			      EVP_sha256(), sizeof(salted), salted) == 1 &&
	    HMAC(EVP_sha256(), salted, sizeof(salted), (const unsigned char *)"Client Key", 10,
		 client_key, &len) != NULL &&
	    len == sizeof(client_key) &&
	    EVP_Digest(client_key, sizeof(client_key), out->stored_key, &len2, EVP_sha256(),
		       NULL) == 1 &&
	    len2 == sizeof(out->stored_key) &&
	    HMAC(EVP_sha256(), salted, sizeof(salted), (const unsigned char *)"Server Key", 10,
		 out->server_key, &len) != NULL &&
	    len == sizeof(out->server_key)) {
		out->iterations = iterations;
		out->salt_len = salt_len;
		memcpy(out->salt, salt, salt_len);
		ret = 0;
	} else {
		password_scram_clear(out);
	}
	wipe(salted, sizeof(salted));
	wipe(client_key, sizeof(client_key));
	return ret;
}

void password_scram_clear(struct password_scram *keys)
{
	wipe(keys, sizeof(*keys));
}

/* "ITERATIONS,SALT,STOREDKEY,SERVERKEY" (the data after the scheme). */
static int scram_parse(const char *data, struct password_scram *out)
{
	const char *f[4];
	size_t flen[4];
	const char *p = data;

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 4; i++) {
		const char *comma = strchr(p, ',');
		if ((comma == NULL) != (i == 3))
			return -1; /* not exactly four fields */
		f[i] = p;
		flen[i] = comma ? (size_t)(comma - p) : strlen(p);
		p = comma ? comma + 1 : p + flen[i];
	}

	if (flen[0] == 0 || flen[0] > 10)
		return -1;
	unsigned long long iter = 0;
	for (size_t i = 0; i < flen[0]; i++) {
		if (f[0][i] < '0' || f[0][i] > '9')
			return -1;
		iter = iter * 10 + (unsigned)(f[0][i] - '0');
	}
	if (iter < PASSWORD_SCRAM_MIN_ITERATIONS || iter > PASSWORD_SCRAM_MAX_ITERATIONS)
		return -1;
	out->iterations = (unsigned)iter;

	size_t n;
	if (base64_decode(f[1], flen[1], out->salt, sizeof(out->salt), &out->salt_len) != 0 ||
	    out->salt_len == 0 ||
	    base64_decode(f[2], flen[2], out->stored_key, sizeof(out->stored_key), &n) != 0 ||
	    n != sizeof(out->stored_key) ||
	    base64_decode(f[3], flen[3], out->server_key, sizeof(out->server_key), &n) != 0 ||
	    n != sizeof(out->server_key)) {
		password_scram_clear(out);
		return -1;
	}
	return 0;
}

static int scram_compare(const char *data, const char *given, size_t given_len)
{
	struct password_scram want, got;
	if (scram_parse(data, &want) != 0)
		return -1;
	/* HMAC pads its key with zeros, so "pw" and "pw\0" derive the same
	 * keys: a password with a NUL must not match (it still costs the
	 * full derivation, as for crypt). */
	bool unusable = memchr(given, '\0', given_len) != NULL;
	int ret = 0;
	if (password_scram_derive(given, given_len, want.salt, want.salt_len, want.iterations,
				  &got) == 0) {
		int diff = CRYPTO_memcmp(want.stored_key, got.stored_key, sizeof(got.stored_key));
		diff |= CRYPTO_memcmp(want.server_key, got.server_key, sizeof(got.server_key));
		ret = diff == 0 && !unusable;
	}
	password_scram_clear(&want);
	password_scram_clear(&got);
	return ret;
}

int password_scram_keys(const char *stored, const unsigned char *plain_salt, size_t plain_salt_len,
			struct password_scram *out)
{
	memset(out, 0, sizeof(*out));
	if (stored == NULL)
		return 0;
	if (strncasecmp(stored, "{SCRAM-SHA-256}", 15) == 0)
		return scram_parse(stored + 15, out) == 0 ? 1 : -1;
	const char *plain = password_plaintext(stored);
	if (plain == NULL)
		return 0;
	return password_scram_derive(plain, strlen(plain), plain_salt, plain_salt_len,
				     PASSWORD_SCRAM_ITERATIONS, out) == 0
		       ? 1
		       : 0;
}

char *password_scram_format(const struct password_scram *k)
{
	char salt[BASE64_ENCODED_LEN(PASSWORD_SCRAM_SALT_MAX) + 1];
	char stored[BASE64_ENCODED_LEN(PASSWORD_SCRAM_KEY_LEN) + 1];
	char server[BASE64_ENCODED_LEN(PASSWORD_SCRAM_KEY_LEN) + 1];
	size_t salt_len = k->salt_len <= PASSWORD_SCRAM_SALT_MAX ? k->salt_len : 0;

	base64_encode(k->salt, salt_len, salt);
	base64_encode(k->stored_key, sizeof(k->stored_key), stored);
	base64_encode(k->server_key, sizeof(k->server_key), server);
	size_t len = 15 + 10 + 3 + strlen(salt) + strlen(stored) + strlen(server) + 1;
	char *out = xmalloc(len);
	snprintf(out, len, "{SCRAM-SHA-256}%u,%s,%s,%s", k->iterations, salt, stored, server);
	return out;
}

int password_verify(const char *stored, const char *given, size_t given_len)
{
	if (stored == NULL)
		return -1;
	if (given == NULL) {
		if (given_len != 0)
			return -1;
		given = "";
	}

	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		if (end == NULL)
			return -1;
		const struct scheme *s = scheme_find(stored + 1, (size_t)(end - stored - 1));
		if (s == NULL)
			return -1;
		const char *data = end + 1;
		if (s->prefixes != NULL && !has_prefix(data, s->prefixes))
			return -1;
		switch (s->kind) {
		case KIND_PLAIN:
			return plain_compare(data, strlen(data), given, given_len);
		case KIND_CRYPT:
			if (data[0] == '\0')
				return -1;
			return crypt_compare(data, given, given_len);
		case KIND_ARGON2ID:
			return argon2id_compare(data, given, given_len);
		case KIND_SCRAM:
			return scram_compare(data, given, given_len);
		}
		return -1;
	}

	if (stored[0] == '$') {
		if (has_prefix(stored, prefixes_argon2id))
			return argon2id_compare(stored, given, given_len);
		if (has_prefix(stored, prefixes_sha512) || has_prefix(stored, prefixes_blf) ||
		    has_prefix(stored, prefixes_yescrypt))
			return crypt_compare(stored, given, given_len);
		return -1;
	}

	/* An empty column more likely means "no password set" than "the
	 * empty password": refuse it. "{PLAIN}" states an empty one. */
	if (stored[0] == '\0')
		return -1;
	return plain_compare(stored, strlen(stored), given, given_len);
}

void password_verify_dummy(const char *given, size_t given_len)
{
	(void)password_verify(dummy_hash, given, given_len);
}

const char *password_plaintext(const char *stored)
{
	if (stored == NULL || stored[0] == '\0')
		return NULL;
	if (strncasecmp(stored, "{PLAIN}", 7) == 0)
		return stored + 7;
	if (stored[0] == '{' || stored[0] == '$')
		return NULL;
	return stored;
}

static char hexlower(unsigned v)
{
	return "0123456789abcdef"[v & 0xf];
}

int password_apop_verify(const char *stored, const char *timestamp, const char *digest,
			 size_t digest_len)
{
	const char *plain = password_plaintext(stored);
	if (plain == NULL || timestamp == NULL || digest == NULL || digest_len != 32)
		return 0;

	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	char want[32], got[32];
	int ret = 0;

	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return 0;
	/* Two updates rather than a concatenated copy of the password. */
	int ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
		 EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
		 EVP_DigestUpdate(ctx, plain, strlen(plain)) == 1 &&
		 EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 16;
	EVP_MD_CTX_free(ctx);

	if (ok) {
		for (size_t i = 0; i < 16; i++) {
			want[2 * i] = hexlower(md[i] >> 4);
			want[2 * i + 1] = hexlower(md[i]);
		}
		/* Clients may send upper-case hex; the digest is theirs, so
		 * branching on it reveals nothing about the password. */
		for (size_t i = 0; i < 32; i++) {
			char c = digest[i];
			got[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
		}
		ret = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
	}
	wipe(md, sizeof(md));
	wipe(want, sizeof(want));
	wipe(got, sizeof(got));
	return ret;
}

/* "{NAME}" followed by data, in one exact-size allocation: the result may
 * be a plaintext password, so no realloc should leave copies behind. */
static char *with_prefix(const char *name, const char *data)
{
	size_t nlen = strlen(name), dlen = strlen(data);
	char *out = xmalloc(nlen + dlen + 3);
	out[0] = '{';
	memcpy(out + 1, name, nlen);
	out[nlen + 1] = '}';
	memcpy(out + nlen + 2, data, dlen + 1);
	return out;
}

static char *hash_crypt(const struct scheme *s, const char *plain, char *err, size_t errlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	/* NULL random bytes: libxcrypt draws them from the kernel itself. */
	if (crypt_gensalt_rn(s->gensalt_prefix, s->gensalt_count, NULL, 0, salt,
			     (int)sizeof(salt)) == NULL) {
		set_err(err, errlen, "cannot generate salt", s->name);
		return NULL;
	}
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *out = crypt_rn(plain, salt, cd, (int)sizeof(*cd));
	char *res = NULL;
	if (out == NULL || out[0] == '*')
		set_err(err, errlen, "hashing failed", s->name);
	else
		res = with_prefix(s->name, out);
	free_secret(cd, sizeof(*cd));
	return res;
}

static char *hash_argon2id(const struct scheme *s, const char *plain, char *err, size_t errlen)
{
	unsigned char salt[ARGON2_SALT_LEN];
	size_t plain_len = strlen(plain);

	if ((uint64_t)plain_len > ARGON2_MAX_PWD_LENGTH) {
		set_err(err, errlen, "password too long", NULL);
		return NULL;
	}
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		set_err(err, errlen, "cannot generate salt", s->name);
		return NULL;
	}
	size_t enc_len = argon2_encodedlen(ARGON2_T_COST, ARGON2_M_COST, ARGON2_PARALLELISM,
					   ARGON2_SALT_LEN, ARGON2_HASH_LEN, Argon2_id);
	char *enc = xmalloc(enc_len);
	int rc = argon2id_hash_encoded(ARGON2_T_COST, ARGON2_M_COST, ARGON2_PARALLELISM, plain,
				       plain_len, salt, sizeof(salt), ARGON2_HASH_LEN, enc, enc_len);
	char *res = NULL;
	if (rc != ARGON2_OK)
		set_err(err, errlen, "hashing failed", argon2_error_message(rc));
	else
		res = with_prefix(s->name, enc);
	wipe(salt, sizeof(salt));
	free_secret(enc, enc_len);
	return res;
}

static char *hash_scram(const struct scheme *s, const char *plain, char *err, size_t errlen)
{
	unsigned char salt[SCRAM_SALT_LEN];
	struct password_scram keys;

	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		set_err(err, errlen, "cannot generate salt", s->name);
		return NULL;
	}
	if (password_scram_derive(plain, strlen(plain), salt, sizeof(salt),
				  PASSWORD_SCRAM_ITERATIONS, &keys) != 0) {
		set_err(err, errlen, "hashing failed", s->name);
		return NULL;
	}
	char *res = password_scram_format(&keys);
	password_scram_clear(&keys);
	return res;
}

char *password_hash(const char *scheme, const char *plain, char *err, size_t errlen)
{
	const struct scheme *s = scheme ? scheme_find(scheme, strlen(scheme)) : NULL;
	if (s == NULL || !s->hashable) {
		set_err(err, errlen, "unknown password scheme", scheme ? scheme : "(null)");
		return NULL;
	}
	if (plain == NULL) {
		set_err(err, errlen, "no password given", NULL);
		return NULL;
	}
	switch (s->kind) {
	case KIND_PLAIN:
		return with_prefix(s->name, plain);
	case KIND_CRYPT:
		return hash_crypt(s, plain, err, errlen);
	case KIND_ARGON2ID:
		return hash_argon2id(s, plain, err, errlen);
	case KIND_SCRAM:
		return hash_scram(s, plain, err, errlen);
	}
	set_err(err, errlen, "unknown password scheme", scheme);
	return NULL;
}

bool password_scheme_known(const char *scheme)
{
	if (scheme == NULL)
		return false;
	const struct scheme *s = scheme_find(scheme, strlen(scheme));
	return s != NULL && s->hashable;
}

/* The scheme and the data after its prefix ("{SCHEME}" or none for a bare
 * crypt string); NULL for plaintext and unknown schemes. */
static const struct scheme *scheme_of(const char *stored, const char **data_r)
{
	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		if (end == NULL)
			return NULL;
		const struct scheme *s = scheme_find(stored + 1, (size_t)(end - stored - 1));
		*data_r = end + 1;
		return s;
	}
	if (stored[0] != '$')
		return NULL;
	*data_r = stored;
	return has_prefix(stored, prefixes_argon2id) ? scheme_find("ARGON2ID", 8)
						      : scheme_find("CRYPT", 5);
}

static char *standin_argon2id(const char *name, const char *data, const char *password)
{
	unsigned m = 0, t = 0, p = 0;
	const char *params = strstr(data, "$m=");
	if (params == NULL || sscanf(params, "$m=%u,t=%u,p=%u", &m, &t, &p) != 3 || m == 0 ||
	    t == 0 || p == 0)
		return NULL;
	unsigned char salt[ARGON2_SALT_LEN];
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return NULL;
	size_t enc_len = argon2_encodedlen(t, m, p, ARGON2_SALT_LEN, ARGON2_HASH_LEN, Argon2_id);
	char *enc = xmalloc(enc_len);
	char *res = NULL;
	if (argon2id_hash_encoded(t, m, p, password, strlen(password), salt, sizeof(salt),
				  ARGON2_HASH_LEN, enc, enc_len) == ARGON2_OK)
		res = name != NULL ? with_prefix(name, enc) : xstrdup(enc);
	free(enc);
	return res;
}

static char *standin_crypt(const char *name, const char *data, const char *password)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	/* crypt(3) takes the setting (scheme, cost, salt) from the front of
	 * a whole hash: the result has the same cost */
	const char *out = crypt_rn(password, data, cd, (int)sizeof(*cd));
	char *res = NULL;
	if (out != NULL && out[0] != '*' && strlen(out) == strlen(data))
		res = name != NULL ? with_prefix(name, out) : xstrdup(out);
	free(cd);
	return res;
}

char *password_standin(const char *stored)
{
	const char *data = NULL;
	const struct scheme *s = stored ? scheme_of(stored, &data) : NULL;
	if (s == NULL || data == NULL || data[0] == '\0')
		return NULL;
	unsigned char random[18];
	char password[BASE64_ENCODED_LEN(sizeof(random)) + 1];
	if (RAND_bytes(random, sizeof(random)) != 1)
		return NULL;
	base64_encode(random, sizeof(random), password);
	const char *name = stored[0] == '{' ? s->name : NULL;
	switch (s->kind) {
	case KIND_PLAIN:
		return NULL;
	case KIND_CRYPT:
		return standin_crypt(name, data, password);
	case KIND_ARGON2ID:
		return standin_argon2id(name, data, password);
	case KIND_SCRAM: {
		struct password_scram want, made;
		if (scram_parse(data, &want) != 0)
			return NULL;
		unsigned char salt[SCRAM_SALT_LEN];
		char *res = NULL;
		if (RAND_bytes(salt, sizeof(salt)) == 1 &&
		    password_scram_derive(password, strlen(password), salt, sizeof(salt),
					  want.iterations, &made) == 0)
			res = password_scram_format(&made);
		password_scram_clear(&want);
		password_scram_clear(&made);
		return res;
	}
	}
	return NULL;
}
