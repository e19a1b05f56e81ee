/* The POP3 commands of a session: AUTHORIZATION (pop3_auth.c,
 * pop3_sasl.c), TRANSACTION and UPDATE (pop3_trans.c), RETR/TOP output
 * (pop3_stream.c). Each runs on the session's I/O thread. */
#ifndef TPOPS_POP3_H
#define TPOPS_POP3_H
#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pop3_parse.h"

struct session;

bool pop3_auth_dispatch(struct session *s, const struct pop3_command *c);

enum login_method {
	LOGIN_USER_PASS,      /* USER/PASS: check the password */
	LOGIN_APOP,           /* secret is the APOP digest */
	LOGIN_SASL_PASSWORD,  /* SASL PLAIN/LOGIN: check the password */
	LOGIN_SASL_VERIFIED,  /* SASL CRAM-MD5/SCRAM already proved it */
};
/* Runs the login job: user lookup, credential check, lock, maildrop. */
void pop3_login_start(struct session *s, enum login_method method, const char *mechanism,
		      const char *login, size_t login_len, const char *secret, size_t secret_len);
/* The brute-force gate before a credential check: go(s, arg) runs once the
 * attempt's slot in the records of auth_penalty.h is taken (at once, or
 * after a hold during which the session reads nothing); when the session
 * closes during the hold, cancel(arg) runs instead and nothing is checked.
 * In a SASL exchange whose check began already, go runs at once. */
void pop3_attempt_gate(struct session *s, const char *login, size_t login_len,
		       void (*go)(struct session *s, void *arg), void (*cancel)(void *arg),
		       void *arg);
/* Ends the session's attempt without a verdict (an abandoned exchange, a
 * database failure, the session's end). */
void pop3_attempt_abandon(struct session *s);
/* A failed login: logged, answered with -ERR [AUTH] after the growing delay. */
void pop3_login_failed(struct session *s, const char *login, const char *method,
		       const char *reason);
/* False when RequireTLS forbids authentication on this connection now. */
bool pop3_auth_allowed(const struct session *s);
void pop3_auth_command(struct session *s, const struct pop3_command *c);
void pop3_sasl_response(struct session *s, const char *line, size_t len);
bool pop3_trans_dispatch(struct session *s, const struct pop3_command *c);
void pop3_capa(struct session *s);
void pop3_trans_begin(struct session *s);

/* RETR (top_lines -1) or TOP of message n (1-based, not deleted). */
void pop3_stream_start(struct session *s, uint32_t n, int64_t top_lines);
/* The client took in output: the next piece, if one is due. */
void pop3_stream_resume(struct session *s);
/* The client is gone in the middle of a stream: the piece in flight is
 * dropped when it comes back, and the session waits no more for it. */
void pop3_stream_abandon(struct session *s);
void pop3_stream_free(struct session *s);

void pop3_release_lock(struct session *s);
/* The lease renewal timer's callback. */
void pop3_lease_tick(evutil_socket_t fd, short what, void *arg);

#endif
