/* SASL mechanisms for POP3 AUTH (RFC 5034): PLAIN (RFC 4616), LOGIN
 * (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195) and SCRAM-SHA-256
 * (RFC 5802, RFC 7677; no channel binding). Pure: no I/O, no threads, no
 * database. The session drives one exchange and does the blocking parts
 * (user lookup, password hashing) on a worker between the steps.
 *
 * How a session drives it (every buffer is base64 text as on the wire):
 *
 *   s = sasl_new(mech, &setup)      NULL: unknown mechanism -> -ERR
 *   st = sasl_start(s, ir, ir_len, &out)
 *                                   ir: the AUTH argument after the
 *                                   mechanism ("=" for an empty one), or
 *                                   NULL when the client gave none
 *   loop on st:
 *     SASL_CHALLENGE       send "+ " out CRLF (out may be empty: "+ "),
 *                          read one line (without CRLF) and
 *                          st = sasl_step(s, line, len, &out)
 *     SASL_NEED_USER       (CRAM-MD5, SCRAM) on a worker: look up
 *                          sasl_authcid(s), then
 *                          sasl_set_credentials(s, stored or NULL);
 *                          back on the I/O thread: st = sasl_resume(s, &out)
 *     SASL_VERIFY_PASSWORD (PLAIN, LOGIN) the exchange is over: check
 *                          sasl_authcid(s) and sasl_password(s) exactly as
 *                          USER/PASS does (password_verify on a worker,
 *                          password_verify_dummy for an unknown user)
 *     SASL_SUCCESS         the user is authenticated (lock the maildrop,
 *                          +OK); nothing more to send first
 *     SASL_FAILURE         wrong credentials or unknown user, which look
 *                          the same to the client: log sasl_reason(s),
 *                          delay, -ERR [AUTH]
 *     SASL_MALFORMED       the client broke the exchange (bad base64, bad
 *                          fields, nonce mismatch...): -ERR, session goes on
 *     SASL_CANCELLED       the client sent "*": -ERR
 *   sasl_free(s)
 *
 * The session touches s from one thread at a time: while a worker runs
 * sasl_set_credentials, the I/O thread leaves s alone.
 *
 * SCRAM's additional data with success (the server-final "v=...") comes as
 * a last SASL_CHALLENGE; the client answers with an empty line and only
 * then does sasl_step return SASL_SUCCESS. RFC 5034 has no room for data in
 * the +OK, so this is how POP3 carries it (Cyrus popd does the same).
 *
 * An unknown user (credentials NULL) or a stored password the mechanism
 * cannot use goes through the whole exchange like a wrong password and
 * fails at the same step with the same status; only sasl_reason (for the
 * log) tells them apart. For SCRAM an unknown user is offered a salt
 * derived from the login and setup.scram_salt_key, stable across logins,
 * and the 4096 iterations of a plaintext-derived secret. */
#ifndef TPOPS_SASL_H
#define TPOPS_SASL_H
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Longest client response line, in base64 characters (without CRLF):
 * RFC 5034 lets responses exceed the 255-octet command line, so the
 * session must read lines up to this long while an exchange runs. It fits
 * the longest PLAIN message below with room for SCRAM extensions. */
#define SASL_MAX_RESPONSE 4096
/* Longest user name and password accepted inside an exchange. */
#define SASL_MAX_LOGIN 255
#define SASL_MAX_PASSWORD 1024
/* SCRAM server nonce length bounds (characters). */
#define SASL_SCRAM_NONCE_MIN 16
#define SASL_SCRAM_NONCE_MAX 128
/* The SCRAM salt key must have at least this many octets. */
#define SASL_SCRAM_SALT_KEY_MIN 16

enum sasl_status {
	SASL_CHALLENGE,       /* send "+ " out, then sasl_step with the reply */
	SASL_NEED_USER,       /* sasl_set_credentials (worker), then sasl_resume */
	SASL_VERIFY_PASSWORD, /* verify sasl_authcid + sasl_password (worker) */
	SASL_SUCCESS,         /* authenticated */
	SASL_FAILURE,         /* wrong password or unknown user */
	SASL_MALFORMED,       /* protocol error by the client */
	SASL_CANCELLED,       /* the client sent "*" */
};

/* What the session supplies per exchange. */
struct sasl_setup {
	/* CRAM-MD5: the challenge, unique per exchange, in RFC 2195's
	 * "<random.time@hostname>" form, like the APOP timestamp. */
	const char *cram_challenge;
	/* SCRAM-SHA-256: the server nonce, SASL_SCRAM_NONCE_MIN to _MAX
	 * printable ASCII characters other than "," (RFC 5802 "printable");
	 * e.g. base64_encode of 18 RAND_bytes. Fresh for every exchange. */
	const char *scram_nonce;
	/* SCRAM-SHA-256: a per-server secret that salts the keys derived from
	 * plaintext passwords and the fake keys of unknown users. Keep it the
	 * same across restarts (and across servers sharing a database), or a
	 * restart changes every derived salt, which tells an observer those
	 * logins have no stored SCRAM secret. */
	const unsigned char *scram_salt_key;
	size_t scram_salt_key_len;
};

/* The mechanisms, strongest first; NULL-terminated. */
extern const char *const sasl_mechanisms[];

/* True when name (case-insensitive) is one of sasl_mechanisms. */
bool sasl_mechanism_known(const char *name);

/* Which kinds of stored password the user database may hold. */
enum {
	SASL_PASSWORDS_PLAINTEXT = 1, /* {PLAIN} or unprefixed */
	SASL_PASSWORDS_SCRAM = 2,     /* {SCRAM-SHA-256} */
	SASL_PASSWORDS_HASHED = 4,    /* crypt(3), Argon2 */
};

/* True when mechanism name can succeed for some user of a database that
 * holds the given kinds: PLAIN and LOGIN with any, CRAM-MD5 only with
 * plaintext, SCRAM-SHA-256 with plaintext or SCRAM secrets. For CAPA. */
bool sasl_mechanism_usable(const char *name, unsigned password_kinds);

/* Appends the usable mechanisms, space-separated, to out (CAPA's "SASL"
 * line without the keyword); appends nothing when none is usable. */
void sasl_list_mechanisms(unsigned password_kinds, struct buf *out);

/* A new exchange, or NULL when the mechanism is unknown or setup lacks
 * what it needs (CRAM-MD5: a challenge; SCRAM: a valid nonce and a salt
 * key). setup may be NULL for PLAIN and LOGIN; its strings are copied. */
struct sasl *sasl_new(const char *mech, const struct sasl_setup *setup);

/* The mechanism's canonical name, e.g. "SCRAM-SHA-256", for the log. */
const char *sasl_mechanism(const struct sasl *s);

/* The first step. initial is the AUTH command's initial response ("=" is
 * the empty one), or NULL for none. out receives the challenge. */
enum sasl_status sasl_start(struct sasl *s, const char *initial, size_t len, struct buf *out);

/* The client's reply to a SASL_CHALLENGE: one line without CRLF. "*"
 * cancels. out receives the next challenge. */
enum sasl_status sasl_step(struct sasl *s, const char *line, size_t len, struct buf *out);

/* After SASL_NEED_USER: the user's stored password as the database holds
 * it, or NULL when there is no such user. May cost a PBKDF2 (SCRAM keys
 * from a plaintext password, or fake keys for an unknown user): call it on
 * a worker. Returns 0, or -1 when the exchange is not waiting for
 * credentials (nothing changes then). */
int sasl_set_credentials(struct sasl *s, const char *stored);

/* Replaces the SCRAM salt key of sasl_new (on the worker, before
 * sasl_set_credentials): the key the database holds, which the I/O thread
 * has no way to read. Ignored below SASL_SCRAM_SALT_KEY_MIN octets and for
 * other mechanisms. */
void sasl_set_salt_key(struct sasl *s, const unsigned char *key, size_t len);

/* After sasl_set_credentials: the next status (SCRAM: the server-first
 * challenge; CRAM-MD5: SASL_SUCCESS or SASL_FAILURE). */
enum sasl_status sasl_resume(struct sasl *s, struct buf *out);

/* The authentication identity (login) once the client has sent it
 * (from SASL_NEED_USER or SASL_VERIFY_PASSWORD on), else NULL. */
const char *sasl_authcid(const struct sasl *s);

/* PLAIN and LOGIN after SASL_VERIFY_PASSWORD: the password (no NUL inside)
 * and its length; else NULL. Wiped by sasl_free. */
const char *sasl_password(const struct sasl *s, size_t *len);

/* Why the exchange ended in SASL_FAILURE, SASL_MALFORMED or
 * SASL_CANCELLED: a short phrase for the log, never for the client (it
 * tells an unknown user from a wrong password). "" otherwise. */
const char *sasl_reason(const struct sasl *s);

/* Frees s and overwrites every secret it held. NULL is fine. */
void sasl_free(struct sasl *s);

#endif
