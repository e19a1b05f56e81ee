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

/* The plaintext password when stored as {PLAIN} or unprefixed plaintext,
 * else NULL (APOP and CRAM-MD5 need it). Points into stored. */
const char *password_plaintext(const char *stored);

/* APOP (RFC 1939 section 7): digest is 32 hex digits of
 * MD5(timestamp + password). 1 match, 0 no match or no plaintext. */
int password_apop_verify(const char *stored, const char *timestamp, const char *digest,
			 size_t digest_len);

/* Hashes plain with a scheme: "SHA512-CRYPT" (the default), "BLF-CRYPT",
 * "YESCRYPT", "ARGON2ID", "PLAIN". Returns a malloc'd "{SCHEME}..." string,
 * or NULL with a message in err for an unknown scheme or a hashing failure. */
char *password_hash(const char *scheme, const char *plain, char *err, size_t errlen);

#define PASSWORD_DEFAULT_SCHEME "SHA512-CRYPT"

/* True when a scheme name is known (case-insensitive). */
bool password_scheme_known(const char *scheme);

#endif
