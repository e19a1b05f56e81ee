/* Password schemes: verification of stored passwords, hashing for the tools.
 * Stored form: "{SCHEME}data" as Dovecot writes it, or an unprefixed
 * plaintext password (rows written by the original TPOPS), or a bare
 * crypt(3) string starting with "$" ($6$, $2b$, $y$, $argon2id$). */
#ifndef TPOPS_PASSWORD_H
#define TPOPS_PASSWORD_H
#include <stdbool.h>
#include <stddef.h>

/* 1 = matches, 0 = does not, -1 = unknown scheme or malformed stored value.
 * Comparisons take time independent of where the inputs differ. */
int password_verify(const char *stored, const char *given, size_t given_len);

/* Costs what verifying against a default-scheme hash costs, and fails:
 * used for unknown users so that they answer as slowly as wrong passwords. */
void password_verify_dummy(const char *given, size_t given_len);

/* A stored password of the same scheme and cost as stored (the same
 * crypt setting, Argon2id memory/time/lanes, SCRAM iterations) for a
 * random password nobody knows: verifying against it costs what verifying
 * against stored costs, and never succeeds. malloc'd; NULL for plaintext
 * and unknown or malformed values (and when hashing fails). Costs one
 * hash: call on a worker. */
char *password_standin(const char *stored);

/* The plaintext password when stored as {PLAIN} or unprefixed plaintext,
 * else NULL (APOP and CRAM-MD5 need it). Points into stored. */
const char *password_plaintext(const char *stored);

/* APOP (RFC 1939 section 7): digest is 32 hex digits of
 * MD5(timestamp + password). 1 match, 0 no match or no plaintext. */
int password_apop_verify(const char *stored, const char *timestamp, const char *digest,
			 size_t digest_len);

/* Hashes plain with a scheme: "SHA512-CRYPT" (the default), "BLF-CRYPT",
 * "YESCRYPT", "ARGON2ID", "SCRAM-SHA-256", "PLAIN". Returns a malloc'd "{SCHEME}..." string,
 * or NULL with a message in err for an unknown scheme or a hashing failure. */
char *password_hash(const char *scheme, const char *plain, char *err, size_t errlen);

#define PASSWORD_DEFAULT_SCHEME "SHA512-CRYPT"

/* True when a scheme name is known (case-insensitive). */
bool password_scheme_known(const char *scheme);

/* SCRAM-SHA-256 (RFC 5802, RFC 7677). A stored secret is written as
 * Dovecot writes it: "{SCRAM-SHA-256}ITERATIONS,SALT,STOREDKEY,SERVERKEY"
 * with the last three in base64. It verifies plain passwords (USER/PASS,
 * AUTH PLAIN) and lets AUTH SCRAM-SHA-256 work without the plaintext. */
#define PASSWORD_SCRAM_KEY_LEN 32 /* SHA-256 */
#define PASSWORD_SCRAM_SALT_MAX 64
/* New secrets and keys derived from plaintext: RFC 7677's minimum, which
 * is also Dovecot's default, so that secrets move between the two. */
#define PASSWORD_SCRAM_ITERATIONS 4096
/* Stored secrets outside these bounds are malformed: fewer is too weak
 * (Dovecot refuses them too), more would tie up a worker for seconds. */
#define PASSWORD_SCRAM_MIN_ITERATIONS 4096
#define PASSWORD_SCRAM_MAX_ITERATIONS 10000000u

struct password_scram {
	unsigned iterations;
	size_t salt_len;
	unsigned char salt[PASSWORD_SCRAM_SALT_MAX];
	unsigned char stored_key[PASSWORD_SCRAM_KEY_LEN]; /* H(ClientKey) */
	unsigned char server_key[PASSWORD_SCRAM_KEY_LEN];
};

/* SaltedPassword = Hi(password, salt, iterations), then StoredKey and
 * ServerKey from it into out. 0, or -1 when OpenSSL fails or an argument is
 * out of range (salt_len 1..PASSWORD_SCRAM_SALT_MAX). Costs `iterations`
 * HMACs: a worker's job. */
int password_scram_derive(const char *password, size_t password_len, const unsigned char *salt,
			  size_t salt_len, unsigned iterations, struct password_scram *out);

/* The SCRAM-SHA-256 keys of a stored password: parsed from a
 * {SCRAM-SHA-256} secret, or derived from a plaintext one ({PLAIN} or
 * unprefixed) with plain_salt and PASSWORD_SCRAM_ITERATIONS (which costs a
 * PBKDF2: call on a worker). Returns 1 with out filled, 0 when the stored
 * form cannot give SCRAM keys (a crypt or Argon2 hash, an empty column),
 * -1 for a malformed SCRAM secret. out is wiped unless 1 is returned. */
int password_scram_keys(const char *stored, const unsigned char *plain_salt, size_t plain_salt_len,
			struct password_scram *out);

/* "{SCRAM-SHA-256}..." for keys, malloc'd. */
char *password_scram_format(const struct password_scram *keys);

/* Overwrites the keys. */
void password_scram_clear(struct password_scram *keys);

#endif
